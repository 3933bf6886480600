//! `dura bench`: a load generator that measures a Temporal-API server, not an SDK. It speaks the
//! raw WorkflowService gRPC API as both starter and worker, so it runs unchanged against Dura and
//! against the real `temporal server start-dev`.
//!
//! `dura bench run` drives one server at a fixed concurrency (closed loop) or a fixed rate (open
//! loop); `dura bench compare` starts the real dev server and Dura one after the other and runs
//! the same workload against each, reporting Dura ÷ Temporal ratios.

mod compare;
mod driver;
mod procstat;
mod report;
mod stats;
mod workload;

use std::{path::PathBuf, time::Duration};

use clap::{Args, Subcommand};

use self::{
    driver::{Load, Plan},
    workload::{Workload, WorkloadKind},
};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Run one workload against one server.
    Run(RunArgs),
    /// Start the real Temporal dev server and Dura in turn and run the same workload on each.
    Compare(CompareArgs),
}

/// Flags shared by `run` and `compare`: what to run and how the bench's own worker behaves.
#[derive(Debug, Clone, Args)]
pub struct WorkloadArgs {
    #[arg(long, value_enum)]
    pub workload: WorkloadKind,
    /// Activities per workflow for the chain workload.
    #[arg(long, default_value_t = 10)]
    pub chain_length: u32,
    /// Signals per workflow for the signal workload.
    #[arg(long, default_value_t = 3)]
    pub signal_count: u32,
    /// Length of the measurement window (per phase for compare), e.g. "20s".
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Load before the window that is not measured, e.g. "5s".
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Concurrent PollWorkflowTaskQueue loops of the bench's worker.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub wf_pollers: u32,
    /// Concurrent PollActivityTaskQueue loops of the bench's worker.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub act_pollers: u32,
    /// gRPC connections the bench spreads its calls over.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub connections: u32,
    /// Print one JSON object as the last line of output, after the table.
    #[arg(long)]
    pub json: bool,
}

impl WorkloadArgs {
    fn plan(
        &self,
        addresses: Vec<String>,
        namespace: String,
        load: Load,
        server_pid: Option<u32>,
    ) -> anyhow::Result<Plan> {
        if addresses.is_empty() {
            anyhow::bail!("no --address to send load to");
        }
        Ok(Plan {
            addresses,
            namespace,
            workload: Workload::new(self.workload, self.chain_length, self.signal_count)?,
            load,
            warmup: self.warmup,
            duration: self.duration,
            wf_pollers: self.wf_pollers,
            act_pollers: self.act_pollers,
            connections: self.connections,
            server_pid,
        })
    }
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("load").required(true).args(["rate", "concurrency"]))]
pub struct RunArgs {
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// The server's frontend, host:port; a cluster's nodes as a comma-separated list (or the
    /// flag repeated), over which the bench spreads its connections.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:7233")]
    pub address: Vec<String>,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Open loop: start this many workflows per second.
    #[arg(long, value_parser = positive_rate)]
    pub rate: Option<f64>,
    /// Closed loop: keep this many workflows in flight.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
    /// Report this process's CPU time and peak memory (the server's, on this machine).
    #[arg(long)]
    pub server_pid: Option<u32>,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Concurrency of the saturation (throughput) phase.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,
    /// Rate of the fixed-rate (latency) phase; default half of Temporal's saturated throughput.
    #[arg(long, value_parser = positive_rate)]
    pub rate: Option<f64>,
    /// The `temporal` CLI; default: found on PATH.
    #[arg(long)]
    pub temporal: Option<PathBuf>,
    /// The `dura` binary; default: this executable.
    #[arg(long)]
    pub dura: Option<PathBuf>,
    /// Give Temporal a SQLite file instead of its default in-memory store. Dura always runs
    /// on disk with every acknowledged write fsynced.
    #[arg(long)]
    pub temporal_db_file: bool,
    /// Also measure a cluster of this many local `dura server start` nodes (every group
    /// replicated on all of them), the load spread over every node.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=7))]
    pub cluster_nodes: Option<u32>,
    /// Rewrite this benchmarks document's machine block and this workload's table row.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
}

fn positive_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        Ok(_) => Err("must be a positive number of workflows per second".into()),
        Err(e) => Err(e.to_string()),
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Run(args) => {
            let load = match (args.rate, args.concurrency) {
                (Some(rate), _) => Load::Open { rate },
                (None, Some(concurrency)) => Load::Closed { concurrency },
                (None, None) => unreachable!("clap requires --rate or --concurrency"),
            };
            let plan = args
                .workload
                .plan(args.address, args.namespace, load, args.server_pid)?;
            if plan.addresses.len() > 1 && plan.server_pid.is_some() {
                anyhow::bail!("--server-pid measures one server: give one --address with it");
            }
            let report = driver::run(&plan).await?;
            print!("{}", report::run_table(&report));
            if args.workload.json {
                println!("{}", serde_json::to_string(&report)?);
            }
            Ok(())
        }
        BenchCommand::Compare(args) => compare::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &str) -> Result<BenchCommand, String> {
        let args = std::iter::once("bench").chain(args.split_whitespace());
        Cli::try_parse_from(args)
            .map(|c| c.bench.command)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn run_parses_the_documented_shape() {
        let command = "run --workload chain --chain-length 4 --address 127.0.0.1:7399 --concurrency 20 \
                       --duration 1m --warmup 500ms --json";
        let BenchCommand::Run(run) = parse(command).unwrap() else {
            panic!("not a run command")
        };
        assert_eq!(run.concurrency, Some(20));
        assert_eq!(run.workload.duration, Duration::from_secs(60));
        assert_eq!(run.workload.warmup, Duration::from_millis(500));
        let plan = run
            .workload
            .plan(
                run.address,
                run.namespace,
                Load::Closed { concurrency: 20 },
                None,
            )
            .unwrap();
        assert_eq!(
            plan.workload,
            Workload::Chain {
                length: 4,
                echo: false
            }
        );
        assert_eq!(plan.namespace, "default");
    }

    #[test]
    fn run_spreads_over_every_address_given() {
        let BenchCommand::Run(run) =
            parse("run --workload echo --rate 5 --address a:1,b:2 --address c:3").unwrap()
        else {
            panic!("not a run command")
        };
        assert_eq!(run.address, ["a:1", "b:2", "c:3"]);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let err = |args: &str| parse(args).unwrap_err();
        assert!(err("run --workload nope --rate 1").contains("invalid value 'nope'"));
        assert!(err("run --workload echo --concurrency 0").contains("not in 1.."));
        assert!(err("run --workload echo --rate 0").contains("positive"));
        assert!(err("run --workload echo").contains("--rate"));
        assert!(err("run --workload echo --rate 1 --concurrency 2").contains("cannot be used"));
        assert!(err("run --workload echo --rate 1 --duration fast").contains("--duration"));
        assert!(err("compare --workload echo --wf-pollers 0").contains("not in 1.."));
    }
}
