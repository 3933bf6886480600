//! Command line: `dura server start-dev` takes the same flags as `temporal server start-dev`,
//! so SDK test helpers that spawn the real dev server can spawn Dura instead.

use std::{
    ffi::OsString,
    net::IpAddr,
    path::{Path, PathBuf},
};

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "dura",
    version,
    about = "A durable-execution cluster that speaks Temporal's gRPC API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a Dura server.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Measure any Temporal-API server with a raw-gRPC load generator, or compare Dura with
    /// the real Temporal dev server.
    Bench(dura_client::bench::BenchArgs),
    /// Look at a running cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Nodes (reachable or not) and every Raft group: leader, term, voters, applied index and
    /// each follower's lag, as the nodes report them.
    Status(ClusterStatusArgs),
    /// Move a Raft group's leadership to another of its voters; the node keeps it from the
    /// leader balancer (until it restarts).
    TransferLeader(TransferLeaderArgs),
    /// Test only: make a node (started with --enable-fault-injection) drop or delay its
    /// traffic to and from chosen peers. With no rule, heal it.
    Fault(FaultArgs),
}

/// Where the `dura cluster` commands connect, with the `temporal` CLI's TLS flags.
#[derive(Debug, Clone, Args)]
pub struct ClientConnection {
    /// The client gRPC address of any node.
    #[arg(long, default_value = "127.0.0.1:7233")]
    pub address: String,
    /// Connect over TLS, verifying the server against this CA (PEM).
    #[arg(long, env = "TEMPORAL_TLS_SERVER_CA_CERT_PATH")]
    pub tls_ca_path: Option<PathBuf>,
    /// The client certificate (PEM) for a server that requires mutual TLS.
    #[arg(long, env = "TEMPORAL_TLS_CLIENT_CERT_PATH", requires_all = ["tls_key_path", "tls_ca_path"])]
    pub tls_cert_path: Option<PathBuf>,
    /// The private key of --tls-cert-path (PEM).
    #[arg(long, env = "TEMPORAL_TLS_CLIENT_KEY_PATH", requires = "tls_cert_path")]
    pub tls_key_path: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the address's host).
    #[arg(long, env = "TEMPORAL_TLS_SERVER_NAME", requires = "tls_ca_path")]
    pub tls_server_name: Option<String>,
    /// A token sent as `authorization: Bearer <KEY>`, for a node started with --auth-jwks
    /// (the cluster commands need `system:admin`).
    #[arg(long, env = "TEMPORAL_API_KEY")]
    pub api_key: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct TransferLeaderArgs {
    #[command(flatten)]
    pub connection: ClientConnection,
    /// The group (0 is the metadata group, shards from 1).
    #[arg(long)]
    pub group: u32,
    /// The node to lead it.
    #[arg(long)]
    pub to: u64,
}

#[derive(Debug, Clone, Args)]
pub struct FaultArgs {
    /// The *peer* gRPC address of the node whose traffic to disturb.
    #[arg(long)]
    pub peer_address: String,
    /// Peers its messages to are lost.
    #[arg(long, value_delimiter = ',')]
    pub drop_to: Vec<u64>,
    /// Peers whose messages to it are lost.
    #[arg(long, value_delimiter = ',')]
    pub drop_from: Vec<u64>,
    /// Peers traffic to and from is delayed by --delay-ms.
    #[arg(long, value_delimiter = ',')]
    pub delay: Vec<u64>,
    /// Peers its messages to (its Raft replication included) are delayed by --delay-ms, while
    /// their requests to it are answered at once.
    #[arg(long, value_delimiter = ',')]
    pub delay_to: Vec<u64>,
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ClusterStatusArgs {
    #[command(flatten)]
    pub connection: ClientConnection,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Run a single-node development server (one replica per Raft group).
    StartDev(StartDevArgs),
    /// Run one node of a cluster. Every flag is also an environment variable `DURA_<FLAG>`
    /// and a key of the --config file (flag > variable > file > default).
    Start(StartArgs),
    /// Run a time-skipping test server, a drop-in for Temporal's Java test server: the same
    /// services as start-dev plus `temporal.api.testservice.v1.TestService`, on a virtual
    /// clock, with its state in a temporary directory. Invoked as `temporal-test-server*`
    /// (a symlink or copy an SDK runs), `dura PORT [--enable-time-skipping]` means this.
    StartTest(StartTestArgs),
}

/// sdk-core runs the Java test server as `<executable> <port> [extra args]`. That command line
/// (no dura command starts with a port), or `dura` run under the Java server's name (a symlink
/// or copy at an SDK's cache path), is `dura server start-test`.
pub fn as_test_server(argv: Vec<OsString>) -> Vec<OsString> {
    let named_as_test_server = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|name| name.to_string_lossy().starts_with("temporal-test-server"));
    let port_first = argv
        .get(1)
        .is_some_and(|a| a.to_string_lossy().parse::<u16>().is_ok());
    if !named_as_test_server && !port_first {
        return argv;
    }
    let mut args = argv.into_iter();
    let mut rewritten: Vec<OsString> = vec![
        args.next().unwrap_or_default(),
        "server".into(),
        "start-test".into(),
    ];
    let mut args = args.peekable();
    if let Some(port) = args.next_if(|a| !a.to_string_lossy().starts_with('-')) {
        rewritten.extend(["--port".into(), port]);
    }
    rewritten.extend(args);
    rewritten
}

#[derive(Debug, Clone, Args)]
pub struct StartTestArgs {
    /// Port for the front-end gRPC service.
    #[arg(short = 'p', long, default_value_t = 7233)]
    pub port: u16,
    /// IP address to bind the front-end service to.
    #[arg(long, default_value = "127.0.0.1")]
    pub ip: IpAddr,
    /// Start with time skipping unlocked (the Java server's flag); without it time skipping
    /// is locked once, and the SDKs unlock it while they wait for a workflow's result.
    #[arg(long)]
    pub enable_time_skipping: bool,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[arg(long, value_enum, default_value_t = LogLevel::Warn)]
    pub log_level: LogLevel,
}

#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// A TOML file whose keys are these flags' names (`node-id = 2`, `initial-cluster = "…"`);
    /// a flag or its environment variable wins over the file.
    #[arg(long, env = "DURA_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's id (≥ 1). Default: the trailing ordinal of the hostname plus one
    /// (`dura-0` → 1), so a Kubernetes StatefulSet needs no per-pod arguments.
    #[arg(long, env = "DURA_NODE_ID")]
    pub node_id: Option<u64>,
    /// RocksDB directory of this node.
    #[arg(long, env = "DURA_DATA_DIR")]
    pub data_dir: PathBuf,
    /// IP address bound to the client gRPC service.
    #[arg(long, env = "DURA_IP", default_value = "127.0.0.1")]
    pub ip: IpAddr,
    /// Port of the client gRPC service.
    #[arg(long, env = "DURA_PORT", default_value_t = 7233)]
    pub port: u16,
    /// IP address bound to the node-to-node service (default: --ip).
    #[arg(long, env = "DURA_PEER_IP")]
    pub peer_ip: Option<IpAddr>,
    /// Port of the node-to-node service.
    #[arg(long, env = "DURA_PEER_PORT", default_value_t = 7234)]
    pub peer_port: u16,
    /// The host other nodes use to reach this one (default: the bind ip).
    #[arg(long, env = "DURA_ADVERTISE_HOST")]
    pub advertise_host: Option<String>,
    /// Port for the Prometheus `/metrics` endpoint.
    #[arg(long, env = "DURA_METRICS_PORT", default_value_t = 9090)]
    pub metrics_port: u16,
    /// Port for Temporal's HTTP API (JSON over HTTP/1.1, `/api/v1/...`) on --ip, with the
    /// client port's TLS when it has one; absent: not served.
    #[arg(long, env = "DURA_HTTP_PORT")]
    pub http_port: Option<u16>,
    /// The members that bootstrap an empty cluster, `1=HOST:PEERPORT,2=HOST:PEERPORT,...`
    /// (etcd-style). Ignored once the data directory holds a cluster. Absent: a cluster of this
    /// node alone.
    #[arg(long, env = "DURA_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Number of history shards — fixed when the cluster is bootstrapped.
    #[arg(long, env = "DURA_SHARDS", default_value_t = 16)]
    pub shards: u32,
    /// Replicas of every Raft group (≤ the number of initial members).
    #[arg(long, env = "DURA_REPLICATION", default_value_t = 3)]
    pub replication: usize,
    /// How committed writes reach the disk.
    #[arg(long, env = "DURA_DURABILITY", value_enum, default_value_t = DurabilityArg::Fsync)]
    pub durability: DurabilityArg,
    #[arg(long, env = "DURA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[arg(long, env = "DURA_LOG_LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    /// Serve the client port over TLS with this certificate chain (PEM). Re-read when the
    /// file changes.
    #[arg(long, env = "DURA_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "DURA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS on the client port: a client must present a certificate signed by this CA
    /// (PEM) or is refused at the handshake.
    #[arg(long, env = "DURA_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Mutual TLS between nodes: this node's certificate (PEM), valid for its advertised host,
    /// presented both as the peer port's server and as a client of the other nodes.
    #[arg(long, env = "DURA_PEER_TLS_CERT", requires_all = ["peer_tls_key", "peer_tls_ca"])]
    pub peer_tls_cert: Option<PathBuf>,
    /// The private key of --peer-tls-cert (PEM).
    #[arg(long, env = "DURA_PEER_TLS_KEY", requires = "peer_tls_cert")]
    pub peer_tls_key: Option<PathBuf>,
    /// The cluster's CA (PEM): a node whose certificate it did not sign can neither join nor
    /// send Raft traffic.
    #[arg(long, env = "DURA_PEER_TLS_CA", requires = "peer_tls_cert")]
    pub peer_tls_ca: Option<PathBuf>,
    /// Authorize every call as Temporal's default JWT claim mapper and authorizer do: the
    /// `authorization: Bearer <JWT>` header, signed by a key of this JWKS file (RS256 or
    /// ES256), its `permissions` claim granting `<namespace>:<read|write|worker|admin>` (and
    /// `system:<role>` over all). Without it every caller may do everything.
    #[arg(long, env = "DURA_AUTH_JWKS")]
    pub auth_jwks: Option<PathBuf>,
    /// Dynamic configuration KEY=VALUE (VALUE is JSON), as `temporal server start-dev`
    /// takes it; keys Dura does not use are ignored. Every node should be given the same.
    #[arg(long = "dynamic-config-value", value_name = "KEY=VALUE")]
    pub dynamic_config_values: Vec<String>,
    /// Run the node-to-node port without TLS. Whoever reaches that port can read and change
    /// every workflow: only for a network no one else reaches. A node needs this or the
    /// --peer-tls-* flags.
    #[arg(long, env = "DURA_PEER_PLAINTEXT", conflicts_with = "peer_tls_cert")]
    pub peer_plaintext: bool,
    /// Test only: let `dura cluster fault` drop or delay this node's peer traffic. Refused
    /// with a non-loopback peer address.
    #[arg(long, env = "DURA_ENABLE_FAULT_INJECTION")]
    pub enable_fault_injection: bool,
    /// Entries applied between a group's snapshots (tests lower it to force snapshot
    /// catch-up).
    #[arg(long, env = "DURA_RAFT_SNAPSHOT_EVERY", default_value_t = crate::config::DEFAULT_SNAPSHOT_EVERY, hide = true)]
    pub raft_snapshot_every: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
    Pretty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// Every acknowledged write is fsynced (default).
    Fsync,
    /// Relaxed: writes reach the OS but are not fsynced; an OS crash can lose acknowledged work.
    Relaxed,
}

#[derive(Debug, Clone, Args)]
pub struct StartDevArgs {
    /// Port for the front-end gRPC service.
    #[arg(short = 'p', long, default_value_t = 7233)]
    pub port: u16,
    /// IP address bound to the front-end service.
    #[arg(long, default_value = "127.0.0.1")]
    pub ip: IpAddr,
    /// Namespaces to create at launch; "default" is always created.
    #[arg(short = 'n', long = "namespace")]
    pub namespaces: Vec<String>,
    /// RocksDB directory for persistent state. Without it, state lives in a temporary
    /// directory removed on exit, like the real dev server's in-memory default.
    #[arg(short = 'f', long = "db-filename")]
    pub db_filename: Option<PathBuf>,
    /// Disable the Web UI (Dura has none; accepted for compatibility).
    #[arg(long)]
    pub headless: bool,
    /// Port for the Web UI (accepted for compatibility; Dura serves no UI).
    #[arg(long)]
    pub ui_port: Option<u16>,
    /// IP address for the Web UI (accepted for compatibility).
    #[arg(long)]
    pub ui_ip: Option<String>,
    /// Port for Temporal's HTTP API (`/api/v1/...`); absent or 0 picks a free port.
    #[arg(long)]
    pub http_port: Option<u16>,
    /// Port for the Prometheus `/metrics` endpoint; 0 or absent picks a free port.
    #[arg(long)]
    pub metrics_port: Option<u16>,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    /// Dynamic configuration KEY=VALUE (VALUE is JSON); keys Dura does not use are ignored.
    #[arg(long = "dynamic-config-value", value_name = "KEY=VALUE")]
    pub dynamic_config_values: Vec<String>,
    /// Custom search attributes KEY=TYPE registered in every namespace created at launch.
    #[arg(long = "search-attribute", value_name = "KEY=TYPE")]
    pub search_attributes: Vec<String>,
    /// Number of history shards (Raft groups) — fixed when the database is created.
    #[arg(long, default_value_t = 4)]
    pub shards: u32,
    /// How committed writes reach the disk.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Fsync)]
    pub durability: DurabilityArg,
    /// Accepted for compatibility with the real CLI (Dura stores in RocksDB, not SQLite).
    #[arg(long = "sqlite-pragma", hide = true)]
    pub sqlite_pragma: Vec<String>,
    /// Accepted for compatibility with the real CLI.
    #[arg(long, hide = true)]
    pub log_config: bool,
    #[arg(long, hide = true)]
    pub ui_asset_path: Option<String>,
    #[arg(long, hide = true)]
    pub ui_codec_endpoint: Option<String>,
    #[arg(long, hide = true)]
    pub ui_public_path: Option<String>,
    #[arg(long, hide = true)]
    pub ui_disable_news_fetch: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_flags_sdk_test_helpers_pass() {
        let cli = Cli::try_parse_from([
            "dura",
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            "7300",
            "--namespace",
            "ns1",
            "--ui-port",
            "8300",
            "--headless",
            "--log-format",
            "pretty",
            "--log-level",
            "warn",
            "--db-filename",
            "/tmp/x",
            "--dynamic-config-value",
            "frontend.enableUpdateWorkflowExecution=true",
            "--dynamic-config-value",
            "system.forceSearchAttributesCacheRefreshOnRead=true",
            "--search-attribute",
            "Tag=Keyword",
            "--http-port",
            "0",
            "--metrics-port",
            "0",
        ])
        .unwrap();
        let Command::Server(ServerCommand::StartDev(args)) = cli.command else {
            panic!("not start-dev");
        };
        assert_eq!(args.port, 7300);
        assert_eq!(args.namespaces, vec!["ns1"]);
        assert_eq!(args.dynamic_config_values.len(), 2);
        assert_eq!(args.search_attributes, vec!["Tag=Keyword"]);
        assert!(args.headless);
    }

    #[test]
    fn a_binary_named_like_the_java_test_server_takes_its_command_line() {
        let argv = |words: &[&str]| words.iter().map(OsString::from).collect::<Vec<_>>();
        let rewritten = as_test_server(argv(&[
            "/tmp/temporal-test-server-sdk-python-1.35.0",
            "7401",
            "--enable-time-skipping",
        ]));
        let cli = Cli::try_parse_from(rewritten).unwrap();
        let Command::Server(ServerCommand::StartTest(args)) = cli.command else {
            panic!("not start-test");
        };
        assert_eq!(args.port, 7401);
        assert!(args.enable_time_skipping);
        // The same command line given to `dura` itself.
        assert_eq!(
            as_test_server(argv(&["dura", "7401"])),
            argv(&["dura", "server", "start-test", "--port", "7401"])
        );
        // Every other command line is left alone.
        let dev = argv(&["dura", "server", "start-dev"]);
        assert_eq!(as_test_server(dev.clone()), dev);
    }

    #[test]
    fn start_test_takes_the_java_servers_flag() {
        let cli = Cli::try_parse_from([
            "dura",
            "server",
            "start-test",
            "--port",
            "7400",
            "--enable-time-skipping",
        ])
        .unwrap();
        let Command::Server(ServerCommand::StartTest(args)) = cli.command else {
            panic!("not start-test");
        };
        assert_eq!(args.port, 7400);
        assert!(args.enable_time_skipping);
    }

    #[test]
    fn defaults_match_the_real_dev_server() {
        let cli = Cli::try_parse_from(["dura", "server", "start-dev"]).unwrap();
        let Command::Server(ServerCommand::StartDev(args)) = cli.command else {
            panic!("not start-dev");
        };
        assert_eq!(args.port, 7233);
        assert_eq!(args.ip.to_string(), "127.0.0.1");
        assert!(args.db_filename.is_none());
    }
}
