//! `dura`: one binary for every node of a Dura cluster and for its dev server.

mod admin;
mod app;
mod auth;
mod cleanup;
mod cli;
mod clock;
mod config;
mod config_file;
mod dynamic_config;
mod engine;
mod error;
#[cfg(test)]
mod failpoint_tests;
mod frontend;
mod grpc;
mod leader;
mod logging;
mod metrics;
mod namespace;
mod once_ready;
mod placement;
mod router;
mod scheduler;
mod server;
mod shard;
mod test_server;
mod timers;
mod transfers;

use anyhow::Context;
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
};

use crate::cli::{ClusterCommand, Command, OutputFormat, ServerCommand};

fn main() -> anyhow::Result<()> {
    let cli = config_file::parse_cli()?;
    match cli.command {
        Command::Server(ServerCommand::StartDev(args)) => {
            logging::init(args.log_format, args.log_level);
            run(config::NodeConfig::from_args(&args)?)
        }
        Command::Server(ServerCommand::StartTest(args)) => {
            logging::init(args.log_format, args.log_level);
            run(config::NodeConfig::from_test_args(&args))
        }
        Command::Server(ServerCommand::Start(args)) => {
            logging::init(args.log_format, args.log_level);
            // $HOSTNAME first, as container runtimes set it (a pod's is its name); the
            // kernel's name when nothing set it.
            let hostname = std::env::var("HOSTNAME")
                .or_else(|_| std::fs::read_to_string("/proc/sys/kernel/hostname"))
                .unwrap_or_default();
            run(config::NodeConfig::from_start_args(&args, hostname.trim())?)
        }
        Command::Cluster(ClusterCommand::Status(args)) => {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(admin::print_status(
                    &args.connection,
                    args.output == OutputFormat::Json,
                ))
        }
        Command::Cluster(ClusterCommand::TransferLeader(args)) => {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(admin::transfer_leader(
                    &args.connection,
                    args.group,
                    args.to,
                ))
        }
        Command::Cluster(ClusterCommand::Fault(args)) => {
            let rules = dura_raft_store::FaultRules {
                drop_to: args.drop_to.into_iter().collect(),
                drop_from: args.drop_from.into_iter().collect(),
                delay: args.delay.into_iter().collect(),
                delay_to: args.delay_to.into_iter().collect(),
                delay_ms: args.delay_ms,
            };
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(dura_raft_store::set_peer_faults(
                    &args.peer_address,
                    &rules,
                    std::time::Duration::from_secs(5),
                ))
                .map_err(|status| anyhow::anyhow!("{}: {}", args.peer_address, status.message()))
        }
        Command::Bench(args) => {
            // RUST_LOG=debug shows each failed RPC's status message.
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_writer(std::io::stderr)
                .init();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(dura_client::bench::run(args))
        }
    }
}

/// Runs one node until SIGINT or SIGTERM.
fn run(config: config::NodeConfig) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("binding {}", config.listen))?;
            server::run_node(config, listener, shutdown_signal()).await
        })
}

/// Resolves on the first SIGINT or SIGTERM, so both stop the server cleanly.
async fn shutdown_signal() {
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
