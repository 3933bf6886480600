//! Validated configuration of a node, built from the command line: `server start-dev` (one
//! node, one voter per group, no peers) and `server start` (a member of a cluster) both come
//! down to a [`NodeConfig`].

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use dura_raft_store::Durability;

use crate::{
    cli::{DurabilityArg, StartArgs, StartDevArgs, StartTestArgs},
    dynamic_config::DynamicConfig,
    namespace::{DEFAULT_NAMESPACE, SearchAttributeType},
};

/// Entries applied between a group's snapshots (after which the log behind it is purged).
pub(crate) const DEFAULT_SNAPSHOT_EVERY: u64 = 10_000;
/// start-dev's default: the test server is the same engine.
const DEFAULT_TEST_SERVER_SHARDS: u32 = 4;

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: u64,
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    /// Where Temporal's HTTP API listens (`--http-port`); `None`: not served.
    pub http_listen: Option<SocketAddr>,
    /// Where the node-to-node service listens; `None` for start-dev, which has no peers.
    pub peer_listen: Option<SocketAddr>,
    /// This node's peer address as the other nodes reach it.
    pub advertise_peer: String,
    /// This node's client address, registered for `dura cluster status` (and where forwarded
    /// calls reach a node of an earlier build, which took them on its client port only).
    pub advertise_client: String,
    /// The members of a cluster created from scratch (empty: this node alone).
    pub initial_members: BTreeMap<u64, String>,
    /// How many of the members hold each shard's replicas (see `placement`).
    pub replication: usize,
    /// `None`: a temporary directory removed on exit.
    pub data_dir: Option<PathBuf>,
    pub namespaces: Vec<String>,
    pub search_attributes: Vec<(String, SearchAttributeType)>,
    pub shards: u32,
    pub durability: Durability,
    /// The real server's dynamic-config keys Dura acts on.
    pub dynamic: DynamicConfig,
    /// Whether the peer service takes fault-injection rules (tests only).
    pub fault_injection: bool,
    /// Entries applied between a group's snapshots.
    pub snapshot_every: u64,
    /// `server start-test`: the engine runs on a time-skipping clock, unlocked at start when
    /// `Some(true)` (`--enable-time-skipping`). `None`: the wall clock.
    pub time_skipping: Option<bool>,
    /// TLS on the client port (`None`: plaintext).
    pub client_tls: Option<ClientPortTls>,
    /// Mutual TLS on the peer port and the node's channels to its peers (`None`: plaintext,
    /// start-dev's only choice and a cluster's only with `--peer-plaintext`).
    pub peer_tls: Option<PeerTls>,
    /// `--auth-jwks`: authorize calls with JWTs signed by these keys (`None`: no checks).
    pub auth_jwks: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPortTls {
    pub identity: dura_tls::Identity,
    /// Mutual TLS: the CA a client's certificate must be signed by.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTls {
    pub identity: dura_tls::Identity,
    /// The cluster's CA: signs every node's certificate.
    pub ca: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "invalid --dynamic-config-value {0:?}: expected KEY=VALUE, VALUE JSON of the key's type"
    )]
    DynamicConfig(String),
    #[error(
        "invalid --search-attribute {0:?}: expected KEY=TYPE, TYPE one of Text, Keyword, Int, Double, Bool, Datetime, KeywordList"
    )]
    SearchAttribute(String),
    #[error("--shards must be between 1 and 1024")]
    Shards,
    #[error(
        "no --node-id, and the hostname {0:?} ends in no ordinal (like dura-0) to take it from"
    )]
    NodeId(String),
    #[error("invalid --initial-cluster {0:?}: expected ID=HOST:PORT,ID=HOST:PORT,...")]
    InitialCluster(String),
    #[error("--initial-cluster does not name this node (id {0})")]
    NotAMember(u64),
    #[error(
        "--replication {replication} with {members} initial members: a group needs at least \
         one replica and at most one per member"
    )]
    Replication { replication: usize, members: usize },
    #[error(
        "--enable-fault-injection is for tests on one machine: refused with the non-loopback \
         peer address {0}"
    )]
    FaultInjection(IpAddr),
    #[error(
        "the peer port carries every workflow's data: give --peer-tls-cert, --peer-tls-key and \
         --peer-tls-ca, or --peer-plaintext on a network no one else reaches"
    )]
    PeerSecurity,
}

impl NodeConfig {
    pub fn from_args(args: &StartDevArgs) -> Result<Self, ConfigError> {
        let dynamic = DynamicConfig::parse(&args.dynamic_config_values)?;
        let search_attributes = args
            .search_attributes
            .iter()
            .map(|sa| {
                let (key, kind) = sa
                    .split_once('=')
                    .ok_or_else(|| ConfigError::SearchAttribute(sa.clone()))?;
                let kind = SearchAttributeType::parse(kind)
                    .ok_or_else(|| ConfigError::SearchAttribute(sa.clone()))?;
                if key.is_empty() {
                    return Err(ConfigError::SearchAttribute(sa.clone()));
                }
                Ok((key.to_string(), kind))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !(1..=1024).contains(&args.shards) {
            return Err(ConfigError::Shards);
        }
        let mut namespaces = vec![DEFAULT_NAMESPACE.to_string()];
        for ns in &args.namespaces {
            if !namespaces.contains(ns) {
                namespaces.push(ns.clone());
            }
        }
        Ok(Self {
            node_id: 1,
            listen: SocketAddr::new(args.ip, args.port),
            metrics_listen: SocketAddr::new(args.ip, args.metrics_port.unwrap_or(0)),
            // As the real dev server: always served, on a free port unless given one.
            http_listen: Some(SocketAddr::new(args.ip, args.http_port.unwrap_or(0))),
            peer_listen: None,
            advertise_peer: SocketAddr::new(args.ip, args.port).to_string(),
            advertise_client: SocketAddr::new(args.ip, args.port).to_string(),
            initial_members: BTreeMap::new(),
            replication: 1,
            data_dir: args.db_filename.clone(),
            namespaces,
            search_attributes,
            shards: args.shards,
            durability: match args.durability {
                DurabilityArg::Fsync => Durability::Fsync,
                DurabilityArg::Relaxed => Durability::Relaxed,
            },
            dynamic,
            fault_injection: false,
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            time_skipping: None,
            client_tls: None,
            peer_tls: None,
            auth_jwks: None,
        })
    }

    /// `server start-test`: start-dev's node (namespace `default`, state in a temporary
    /// directory) on a time-skipping clock. Relaxed durability: its state dies with it anyway.
    pub fn from_test_args(args: &StartTestArgs) -> Self {
        let listen = SocketAddr::new(args.ip, args.port);
        Self {
            node_id: 1,
            listen,
            metrics_listen: SocketAddr::new(args.ip, 0),
            // The Java test server it stands in for has no HTTP API.
            http_listen: None,
            peer_listen: None,
            advertise_peer: listen.to_string(),
            advertise_client: listen.to_string(),
            initial_members: BTreeMap::new(),
            replication: 1,
            data_dir: None,
            namespaces: vec![DEFAULT_NAMESPACE.to_string()],
            search_attributes: Vec::new(),
            shards: DEFAULT_TEST_SERVER_SHARDS,
            durability: Durability::Relaxed,
            dynamic: DynamicConfig::default(),
            fault_injection: false,
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            time_skipping: Some(args.enable_time_skipping),
            client_tls: None,
            peer_tls: None,
            auth_jwks: None,
        }
    }

    /// `server start`: one member of a cluster.
    pub fn from_start_args(args: &StartArgs, hostname: &str) -> Result<Self, ConfigError> {
        let node_id = match args.node_id {
            Some(0) => return Err(ConfigError::NodeId(hostname.to_string())),
            Some(id) => id,
            None => node_id_of_hostname(hostname)
                .ok_or_else(|| ConfigError::NodeId(hostname.to_string()))?,
        };
        if !(1..=1024).contains(&args.shards) {
            return Err(ConfigError::Shards);
        }
        let peer_ip = args.peer_ip.unwrap_or(args.ip);
        let advertise_host = args
            .advertise_host
            .clone()
            .unwrap_or_else(|| host_text(args.ip));
        let advertise_peer = format!("{advertise_host}:{}", args.peer_port);
        let advertise_client = format!("{advertise_host}:{}", args.port);
        let initial_members = match &args.initial_cluster {
            Some(text) => parse_initial_cluster(text)?,
            None => BTreeMap::from([(node_id, advertise_peer.clone())]),
        };
        if !initial_members.contains_key(&node_id) {
            return Err(ConfigError::NotAMember(node_id));
        }
        if args.replication == 0 || args.replication > initial_members.len() {
            return Err(ConfigError::Replication {
                replication: args.replication,
                members: initial_members.len(),
            });
        }
        if args.enable_fault_injection && !peer_ip.is_loopback() {
            return Err(ConfigError::FaultInjection(peer_ip));
        }
        // clap has paired the files; what is left is the choice between TLS and plaintext.
        let peer_tls = match (&args.peer_tls_cert, &args.peer_tls_key, &args.peer_tls_ca) {
            (Some(cert), Some(key), Some(ca)) => Some(PeerTls {
                identity: dura_tls::Identity {
                    cert: cert.clone(),
                    key: key.clone(),
                },
                ca: ca.clone(),
            }),
            _ if args.peer_plaintext => None,
            _ => return Err(ConfigError::PeerSecurity),
        };
        let client_tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(ClientPortTls {
                identity: dura_tls::Identity {
                    cert: cert.clone(),
                    key: key.clone(),
                },
                client_ca: args.tls_client_ca.clone(),
            }),
            _ => None,
        };
        let http_listen = args.http_port.map(|port| SocketAddr::new(args.ip, port));
        Ok(Self {
            node_id,
            listen: SocketAddr::new(args.ip, args.port),
            metrics_listen: SocketAddr::new(args.ip, args.metrics_port),
            http_listen,
            peer_listen: Some(SocketAddr::new(peer_ip, args.peer_port)),
            advertise_peer,
            advertise_client,
            initial_members,
            replication: args.replication,
            data_dir: Some(args.data_dir.clone()),
            namespaces: vec![DEFAULT_NAMESPACE.to_string()],
            search_attributes: Vec::new(),
            shards: args.shards,
            durability: match args.durability {
                DurabilityArg::Fsync => Durability::Fsync,
                DurabilityArg::Relaxed => Durability::Relaxed,
            },
            dynamic: DynamicConfig::parse(&args.dynamic_config_values)?,
            fault_injection: args.enable_fault_injection,
            snapshot_every: args.raft_snapshot_every,
            time_skipping: None,
            client_tls,
            peer_tls,
            auth_jwks: args.auth_jwks.clone(),
        })
    }
}

fn host_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// `dura-0` → 1: a StatefulSet's pod ordinal (from 0) as a node id (from 1).
fn node_id_of_hostname(hostname: &str) -> Option<u64> {
    let (_, ordinal) = hostname.trim().rsplit_once('-')?;
    ordinal.parse::<u64>().ok()?.checked_add(1)
}

fn parse_initial_cluster(text: &str) -> Result<BTreeMap<u64, String>, ConfigError> {
    let bad = || ConfigError::InitialCluster(text.to_string());
    let mut members = BTreeMap::new();
    for member in text.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let (id, addr) = member.split_once('=').ok_or_else(bad)?;
        let id: u64 = id.trim().parse().map_err(|_| bad())?;
        let addr = addr.trim();
        let port_ok = addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if id == 0 || !port_ok || members.insert(id, addr.to_string()).is_some() {
            return Err(bad());
        }
    }
    if members.is_empty() {
        return Err(bad());
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command, ServerCommand};

    /// A node's flags; plaintext peers unless `args` say otherwise.
    fn start_args(args: &[&str]) -> StartArgs {
        let secured = args.iter().any(|a| a.starts_with("--peer-tls"));
        let plaintext: &[&str] = if secured { &[] } else { &["--peer-plaintext"] };
        try_start_args(&[plaintext, args].concat()).unwrap()
    }

    fn try_start_args(args: &[&str]) -> Result<StartArgs, clap::Error> {
        let cli = Cli::try_parse_from(
            ["dura", "server", "start", "--data-dir", "/tmp/d"]
                .iter()
                .chain(args),
        )?;
        Ok(match cli.command {
            Command::Server(ServerCommand::Start(args)) => args,
            other => panic!("{other:?}"),
        })
    }

    const CLUSTER: &str = "1=a:7234,2=b:7234,3=c:7234";

    #[test]
    fn a_statefulset_pod_takes_its_node_id_from_its_hostname() {
        let config =
            NodeConfig::from_start_args(&start_args(&["--initial-cluster", CLUSTER]), "dura-2")
                .unwrap();
        assert_eq!(config.node_id, 3);
        assert_eq!(config.initial_members.len(), 3);
        assert_eq!(config.advertise_peer, "127.0.0.1:7234");
        assert!(matches!(
            NodeConfig::from_start_args(&start_args(&["--initial-cluster", CLUSTER]), "laptop"),
            Err(ConfigError::NodeId(_))
        ));
    }

    #[test]
    fn the_initial_cluster_must_parse_and_name_this_node() {
        let args = |cluster: &str| start_args(&["--node-id", "1", "--initial-cluster", cluster]);
        for bad in ["", "1=a", "x=a:1", "1=a:1,1=b:2", "0=a:1", "1=:7"] {
            assert!(
                matches!(
                    NodeConfig::from_start_args(&args(bad), "h"),
                    Err(ConfigError::InitialCluster(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            NodeConfig::from_start_args(&args("2=b:1,3=c:1,4=d:1"), "h"),
            Err(ConfigError::NotAMember(1))
        ));
        assert!(matches!(
            NodeConfig::from_start_args(
                &start_args(&[
                    "--node-id",
                    "1",
                    "--initial-cluster",
                    "1=a:1",
                    "--replication",
                    "3"
                ]),
                "h"
            ),
            Err(ConfigError::Replication {
                replication: 3,
                members: 1
            })
        ));
        // Fewer replicas than members: each shard is held by some of them.
        let five = start_args(&[
            "--node-id",
            "1",
            "--initial-cluster",
            "1=a:1,2=b:1,3=c:1,4=d:1,5=e:1",
        ]);
        assert_eq!(
            NodeConfig::from_start_args(&five, "h").unwrap().replication,
            3
        );
    }

    #[test]
    fn fault_injection_is_refused_on_a_reachable_peer_address() {
        let args = |ip: &str| {
            start_args(&[
                "--node-id",
                "1",
                "--initial-cluster",
                "1=a:1",
                "--replication",
                "1",
                "--peer-ip",
                ip,
                "--enable-fault-injection",
            ])
        };
        assert!(matches!(
            NodeConfig::from_start_args(&args("0.0.0.0"), "h"),
            Err(ConfigError::FaultInjection(_))
        ));
        assert!(
            NodeConfig::from_start_args(&args("127.0.0.1"), "h")
                .unwrap()
                .fault_injection
        );
    }

    #[test]
    fn flags_win_over_their_environment_variables() {
        // SAFETY: this test alone reads or writes DURA_SHARDS.
        unsafe { std::env::set_var("DURA_SHARDS", "8") };
        assert_eq!(start_args(&[]).shards, 8);
        assert_eq!(start_args(&["--shards", "4"]).shards, 4);
        unsafe { std::env::remove_var("DURA_SHARDS") };
    }

    #[test]
    fn a_cluster_node_runs_its_peer_port_over_mutual_tls_or_says_it_will_not() {
        let bare = try_start_args(&["--initial-cluster", CLUSTER]).unwrap();
        assert!(matches!(
            NodeConfig::from_start_args(&bare, "dura-0"),
            Err(ConfigError::PeerSecurity)
        ));
        let plaintext =
            NodeConfig::from_start_args(&start_args(&["--initial-cluster", CLUSTER]), "dura-0");
        assert_eq!(plaintext.unwrap().peer_tls, None);
        let tls = [
            "--initial-cluster",
            CLUSTER,
            "--peer-tls-cert",
            "n.crt",
            "--peer-tls-key",
            "n.key",
            "--peer-tls-ca",
            "ca.crt",
        ];
        let secured = NodeConfig::from_start_args(&start_args(&tls), "dura-0").unwrap();
        assert_eq!(secured.peer_tls.unwrap().ca, PathBuf::from("ca.crt"));
        // Half a configuration, or both choices at once, is refused by the parser.
        assert!(try_start_args(&tls[..6]).is_err());
        assert!(try_start_args(&[&tls[..], &["--peer-plaintext"]].concat()).is_err());
    }

    #[test]
    fn the_client_port_serves_tls_when_given_a_certificate_and_its_key() {
        let plain = start_args(&["--initial-cluster", CLUSTER]);
        assert_eq!(
            NodeConfig::from_start_args(&plain, "dura-0")
                .unwrap()
                .client_tls,
            None
        );
        let mutual = start_args(&[
            "--initial-cluster",
            CLUSTER,
            "--tls-cert",
            "s.crt",
            "--tls-key",
            "s.key",
            "--tls-client-ca",
            "ca.crt",
        ]);
        let config = NodeConfig::from_start_args(&mutual, "dura-0").unwrap();
        assert_eq!(
            config.client_tls.unwrap().client_ca,
            Some(PathBuf::from("ca.crt"))
        );
        assert!(try_start_args(&["--peer-plaintext", "--tls-cert", "s.crt"]).is_err());
        assert!(try_start_args(&["--peer-plaintext", "--tls-client-ca", "ca.crt"]).is_err());
    }
}
