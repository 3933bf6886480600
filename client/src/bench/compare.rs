//! `dura bench compare`: the real Temporal dev server and Dura, each started fresh (own port,
//! own data directory) one after the other on this machine, each given the same two phases:
//! a closed loop at saturation for throughput, then an open loop at a rate both sustain for
//! latency. Temporal runs first because the default rate is half its saturated throughput.

use std::{
    net::TcpListener,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde::Serialize;

use super::{
    CompareArgs,
    driver::{self, Load, RunReport},
    procstat::Machine,
    report,
};

const NAMESPACE: &str = "default";
/// The real dev server needs a few seconds to start; a debug build of Dura can need more.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Both phases on one server, plus the headline numbers lifted out of them.
#[derive(Debug, Clone, Serialize)]
pub struct ServerResult {
    pub version: String,
    /// Saturation phase.
    pub throughput_wf_s: f64,
    /// Fixed-rate phase.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub saturation: RunReport,
    pub fixed_rate: RunReport,
}

impl ServerResult {
    fn new(version: String, saturation: RunReport, fixed_rate: RunReport) -> Self {
        Self {
            version,
            throughput_wf_s: saturation.summary.throughput_wf_s,
            p50_ms: fixed_rate.summary.latency_ms.p50,
            p99_ms: fixed_rate.summary.latency_ms.p99,
            saturation,
            fixed_rate,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    pub workload: String,
    pub machine: Machine,
    pub date: String,
    pub concurrency: u32,
    pub rate_wf_s: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub temporal: ServerResult,
    pub dura: ServerResult,
    /// Dura ÷ Temporal; above 1 means Dura completed more workflows per second.
    pub throughput_ratio: Option<f64>,
    /// Dura ÷ Temporal; below 1 means Dura's latency was lower.
    pub p50_ratio: Option<f64>,
    pub p99_ratio: Option<f64>,
    /// With `--cluster-nodes N`: N local `dura server start` nodes, every group on all.
    pub cluster_nodes: Option<u32>,
    pub dura_cluster: Option<ServerResult>,
    /// Cluster ÷ Temporal, like `throughput_ratio` and `p99_ratio`.
    pub cluster_throughput_ratio: Option<f64>,
    pub cluster_p99_ratio: Option<f64>,
}

/// Dura ÷ Temporal, or none when Temporal's number is zero (nothing completed).
fn ratio(dura: f64, temporal: f64) -> Option<f64> {
    (temporal > 0.0).then(|| dura / temporal)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A dev server this process started; killed on drop so an error never leaves one behind.
struct ServerProcess {
    name: &'static str,
    child: Option<Child>,
    address: String,
    log: PathBuf,
}

impl ServerProcess {
    async fn start(
        name: &'static str,
        command: Command,
        port: u16,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let mut server = Self::spawn(name, command, port, log)?;
        server.wait_ready().await?;
        Ok(server)
    }

    /// Starts the process without waiting for it to serve (a cluster's nodes wait for each
    /// other).
    fn spawn(
        name: &'static str,
        mut command: Command,
        port: u16,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let log_file = std::fs::File::create(&log)?;
        // SAFETY: prctl is async-signal-safe and touches no memory of this process. It makes
        // the kernel kill the server if the bench dies without running its cleanup (SIGKILL,
        // SIGTERM from a CI timeout), so no orphaned server keeps the cores busy afterwards.
        unsafe {
            command.pre_exec(
                || match libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                },
            );
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {name} ({command:?})"))?;
        let server = Self {
            name,
            child: Some(child),
            address: format!("127.0.0.1:{port}"),
            log,
        };
        eprintln!(
            "bench: started {name} (pid {}) on {}",
            server.pid(),
            server.address
        );
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().transpose()) {
                bail!(
                    "{} exited during startup ({status:?}); log tail:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            let probe = driver::probe(&self.address, NAMESPACE).await;
            if probe.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after {STARTUP_TIMEOUT:?} ({probe:?}); log tail:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM, then SIGKILL if the server has not exited within STOP_TIMEOUT.
    async fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SAFETY: kill(2) on a child we spawned and have not reaped; no memory is involved.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                eprintln!(
                    "bench: {} ignored SIGTERM for {STOP_TIMEOUT:?}; killing it",
                    self.name
                );
                child.kill()?;
                child.wait()?;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("bench: stopped {}", self.name);
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// First line of `<binary> --version`, for the report; "unknown" rather than failing a run.
fn version(binary: &Path) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn temporal_binary(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = flag {
        return Ok(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("temporal"))
        .find(|candidate| candidate.is_file())
        .context("no `temporal` on PATH; pass --temporal /path/to/temporal")
}

/// Runs both phases against one freshly started server. `rate` None means "half of this
/// server's saturated throughput", which is only asked of Temporal.
async fn bench_server(
    args: &CompareArgs,
    name: &'static str,
    binary: &Path,
    data_dir: &Path,
    rate: Option<f64>,
) -> anyhow::Result<ServerResult> {
    let port = free_port()?;
    let mut command = Command::new(binary);
    command.args([
        "server",
        "start-dev",
        "--headless",
        "--ip",
        "127.0.0.1",
        "--log-level",
        "warn",
    ]);
    command.args(["--port", &port.to_string()]);
    // By default Temporal runs as users run its dev server, in memory (nothing survives a
    // crash), while Dura keeps its durable default: RocksDB on disk, fsynced.
    if name == "dura" || args.temporal_db_file {
        command
            .arg("--db-filename")
            .arg(data_dir.join(format!("{name}.db")));
    }
    let server =
        ServerProcess::start(name, command, port, data_dir.join(format!("{name}.log"))).await?;
    let result = measure(
        args,
        name,
        vec![server.address.clone()],
        Some(server.pid()),
        rate,
    )
    .await?;
    server.stop().await?;
    Ok(ServerResult::new(version(binary), result.0, result.1))
}

/// Both phases against servers already serving at `addresses`: (saturation, fixed rate).
async fn measure(
    args: &CompareArgs,
    name: &str,
    addresses: Vec<String>,
    pid: Option<u32>,
    rate: Option<f64>,
) -> anyhow::Result<(RunReport, RunReport)> {
    let plan = |load| {
        args.workload
            .plan(addresses.clone(), NAMESPACE.into(), load, pid)
    };

    eprintln!(
        "bench: {name}: saturation phase, concurrency {}",
        args.concurrency
    );
    let saturation = driver::run(&plan(Load::Closed {
        concurrency: args.concurrency,
    })?)
    .await?;
    let rate = match rate {
        Some(rate) => rate,
        None if saturation.summary.throughput_wf_s > 0.0 => {
            saturation.summary.throughput_wf_s / 2.0
        }
        None => bail!(
            "{name} completed no workflows at saturation, so there is no rate to derive; pass --rate"
        ),
    };
    eprintln!("bench: {name}: fixed-rate phase, {rate:.1} wf/s");
    let fixed_rate = driver::run(&plan(Load::Open { rate })?).await?;
    Ok((saturation, fixed_rate))
}

/// Both phases against a cluster of `nodes` local `dura server start` processes, every
/// group replicated on all of them, the load spread over every node.
async fn bench_cluster(
    args: &CompareArgs,
    binary: &Path,
    data_dir: &Path,
    nodes: u32,
    rate: f64,
) -> anyhow::Result<ServerResult> {
    let ports: Vec<(u16, u16, u16)> = (0..nodes)
        .map(|_| Ok((free_port()?, free_port()?, free_port()?)))
        .collect::<anyhow::Result<_>>()?;
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer, _))| format!("{}=127.0.0.1:{peer}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut servers = Vec::new();
    for (i, (port, peer, metrics)) in ports.iter().enumerate() {
        let id = i + 1;
        let mut command = Command::new(binary);
        command
            .args([
                "server",
                "start",
                "--ip",
                "127.0.0.1",
                "--log-level",
                "warn",
            ])
            .args(["--node-id", &id.to_string()])
            .arg("--data-dir")
            .arg(data_dir.join(format!("dura-cluster-{id}")))
            .args(["--port", &port.to_string()])
            .args(["--peer-port", &peer.to_string()])
            .args(["--metrics-port", &metrics.to_string()])
            .args(["--initial-cluster", &initial])
            .args(["--replication", &nodes.to_string()]);
        let log = data_dir.join(format!("dura-cluster-{id}.log"));
        servers.push(ServerProcess::spawn("dura node", command, *port, log)?);
    }
    for server in &mut servers {
        server.wait_ready().await?;
    }
    let addresses = servers.iter().map(|s| s.address.clone()).collect();
    // No one process to measure: the cluster's CPU and memory are not reported.
    let (saturation, fixed_rate) =
        measure(args, "dura cluster", addresses, None, Some(rate)).await?;
    for server in servers {
        server.stop().await?;
    }
    Ok(ServerResult::new(version(binary), saturation, fixed_rate))
}

pub async fn run(args: CompareArgs) -> anyhow::Result<()> {
    // Bad input fails here, not after a minute spent starting the first server.
    args.workload.plan(
        vec![String::new()],
        NAMESPACE.into(),
        Load::Closed { concurrency: 1 },
        None,
    )?;
    let temporal_bin = temporal_binary(args.temporal.clone())?;
    let dura_bin = match &args.dura {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("locating the dura binary; pass --dura")?,
    };
    for binary in [&temporal_bin, &dura_bin] {
        if !binary.is_file() {
            bail!("{} does not exist", binary.display());
        }
    }
    let data_dir = tempfile::tempdir()?;

    let temporal =
        bench_server(&args, "temporal", &temporal_bin, data_dir.path(), args.rate).await?;
    let rate = temporal
        .fixed_rate
        .rate_wf_s
        .expect("the fixed-rate phase is an open loop");
    let dura = bench_server(&args, "dura", &dura_bin, data_dir.path(), Some(rate)).await?;
    let dura_cluster = match args.cluster_nodes {
        Some(nodes) => Some(bench_cluster(&args, &dura_bin, data_dir.path(), nodes, rate).await?),
        None => None,
    };

    let report = CompareReport {
        workload: temporal.saturation.workload.clone(),
        machine: Machine::current(),
        date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        concurrency: args.concurrency,
        rate_wf_s: rate,
        duration_s: args.workload.duration.as_secs_f64(),
        warmup_s: args.workload.warmup.as_secs_f64(),
        throughput_ratio: ratio(dura.throughput_wf_s, temporal.throughput_wf_s),
        p50_ratio: ratio(dura.p50_ms, temporal.p50_ms),
        p99_ratio: ratio(dura.p99_ms, temporal.p99_ms),
        cluster_nodes: args.cluster_nodes,
        cluster_throughput_ratio: dura_cluster
            .as_ref()
            .and_then(|c| ratio(c.throughput_wf_s, temporal.throughput_wf_s)),
        cluster_p99_ratio: dura_cluster
            .as_ref()
            .and_then(|c| ratio(c.p99_ms, temporal.p99_ms)),
        dura_cluster,
        temporal,
        dura,
    };
    if let Some(path) = &args.markdown {
        let doc =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        std::fs::write(path, update_markdown(&doc, &report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("bench: updated {}", path.display());
    }
    print!("{}", report::compare_table(&report));
    if args.workload.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

const MACHINE_BEGIN: &str = "<!-- bench:machine -->";
const MACHINE_END: &str = "<!-- /bench:machine -->";
const RESULTS_BEGIN: &str = "<!-- bench:results -->";
const RESULTS_END: &str = "<!-- /bench:results -->";

/// The text between `begin` and `end` markers (exclusive), as a byte range of `doc`.
fn section(doc: &str, begin: &str, end: &str) -> anyhow::Result<std::ops::Range<usize>> {
    let start = doc
        .find(begin)
        .with_context(|| format!("no {begin} marker"))?
        + begin.len();
    let stop = doc[start..]
        .find(end)
        .with_context(|| format!("no {end} marker after {begin}"))?
        + start;
    Ok(start..stop)
}

/// One row of the results table: `dura` (start-dev, or the cluster) next to Temporal.
fn markdown_row(
    r: &CompareReport,
    label: &str,
    dura: &ServerResult,
    throughput_ratio: Option<f64>,
    p99_ratio: Option<f64>,
) -> String {
    let ratio = |x: Option<f64>| x.map_or_else(|| "-".into(), |x| format!("{x:.2}"));
    let usage = |s: &ServerResult| {
        s.saturation.server.as_ref().map_or_else(
            || "-".into(),
            |u| format!("{:.2} / {:.0}", u.cores, u.peak_rss_mib),
        )
    };
    format!(
        "| {} | {:.1} | {:.1} | {} | {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {} | {} | {} |",
        label,
        r.temporal.throughput_wf_s,
        dura.throughput_wf_s,
        ratio(throughput_ratio),
        r.rate_wf_s,
        r.temporal.p50_ms,
        r.temporal.p99_ms,
        dura.p50_ms,
        dura.p99_ms,
        ratio(p99_ratio),
        usage(&r.temporal),
        usage(dura),
    )
}

/// Rewrites the machine block and this workload's row of the results table (appending the row
/// when the table has none for it); the rest of the document is left as written.
fn update_markdown(doc: &str, r: &CompareReport) -> anyhow::Result<String> {
    let machine = format!(
        "\n- CPU: {} ({} cores as seen by the bench)\n- Memory: {:.1} GiB\n- Kernel: {}\n- Last run: {}; \
         {} vs {}\n",
        r.machine.cpu,
        r.machine.cores,
        r.machine.memory_gib,
        r.machine.kernel,
        r.date,
        r.temporal.version,
        r.dura.version
    );
    let range = section(doc, MACHINE_BEGIN, MACHINE_END)?;
    let doc = format!("{}{machine}{}", &doc[..range.start], &doc[range.end..]);

    let range = section(&doc, RESULTS_BEGIN, RESULTS_END)?;
    let mut rows: Vec<String> = doc[range.clone()].lines().map(str::to_string).collect();
    let mut lines = vec![(
        r.workload.clone(),
        markdown_row(r, &r.workload, &r.dura, r.throughput_ratio, r.p99_ratio),
    )];
    if let (Some(cluster), Some(nodes)) = (&r.dura_cluster, r.cluster_nodes) {
        let label = format!("{} (dura, {nodes} nodes)", r.workload);
        let row = markdown_row(
            r,
            &label,
            cluster,
            r.cluster_throughput_ratio,
            r.cluster_p99_ratio,
        );
        lines.push((label, row));
    }
    for (label, line) in lines {
        let prefix = format!("| {label} |");
        match rows.iter_mut().find(|row| row.starts_with(&prefix)) {
            Some(row) => *row = line,
            None => {
                let last_table_row = rows
                    .iter()
                    .rposition(|row| row.starts_with('|'))
                    .context("no table in results")?;
                rows.insert(last_table_row + 1, line);
            }
        }
    }
    Ok(format!(
        "{}{}\n{}",
        &doc[..range.start],
        rows.join("\n"),
        &doc[range.end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{
        procstat::ProcessUsage,
        stats::{LatencySummary, Summary},
    };

    #[test]
    fn ratios_are_dura_over_temporal_and_undefined_at_zero() {
        assert_eq!(ratio(300.0, 150.0), Some(2.0));
        assert_eq!(ratio(5.0, 20.0), Some(0.25));
        assert_eq!(ratio(10.0, 0.0), None);
    }

    fn run_report(throughput: f64, p50: f64, p99: f64, rate: Option<f64>) -> RunReport {
        RunReport {
            workload: "echo".into(),
            address: "127.0.0.1:1".into(),
            namespace: NAMESPACE.into(),
            task_queue: "bench-x".into(),
            mode: if rate.is_some() { "open" } else { "closed" },
            concurrency: rate.is_none().then_some(100),
            rate_wf_s: rate,
            warmup_s: 5.0,
            summary: Summary {
                window_s: 20.0,
                started: 10,
                completed: 10,
                throughput_wf_s: throughput,
                events: 110,
                events_per_s: throughput * 11.0,
                latency_ms: LatencySummary {
                    count: 10,
                    p50,
                    p90: p99,
                    p99,
                    max: p99,
                },
                rpc_latency_ms: Default::default(),
                errors: Default::default(),
                error_examples: Default::default(),
            },
            unfinished: 0,
            server: Some(ProcessUsage {
                pid: 7,
                cpu_s: 30.0,
                cores: 1.5,
                peak_rss_mib: 120.0,
            }),
            client: ProcessUsage {
                pid: 8,
                cpu_s: 10.0,
                cores: 0.5,
                peak_rss_mib: 30.0,
            },
        }
    }

    fn report() -> CompareReport {
        let server = |throughput, p50, p99| {
            ServerResult::new(
                "v".into(),
                run_report(throughput, 9.0, 9.0, None),
                run_report(50.0, p50, p99, Some(50.0)),
            )
        };
        let (temporal, dura) = (server(100.0, 4.0, 20.0), server(250.0, 2.0, 5.0));
        CompareReport {
            workload: "echo".into(),
            machine: Machine {
                cpu: "Test CPU".into(),
                cores: 2,
                memory_gib: 24.0,
                kernel: "6.1".into(),
            },
            date: "2025-01-01T00:00:00Z".into(),
            concurrency: 100,
            rate_wf_s: 50.0,
            duration_s: 20.0,
            warmup_s: 5.0,
            throughput_ratio: ratio(dura.throughput_wf_s, temporal.throughput_wf_s),
            p50_ratio: ratio(dura.p50_ms, temporal.p50_ms),
            p99_ratio: ratio(dura.p99_ms, temporal.p99_ms),
            cluster_nodes: None,
            dura_cluster: None,
            cluster_throughput_ratio: None,
            cluster_p99_ratio: None,
            temporal,
            dura,
        }
    }

    #[test]
    fn json_has_the_documented_keys() {
        let json = serde_json::to_value(report()).unwrap();
        assert_eq!(json["workload"], "echo");
        assert_eq!(json["throughput_ratio"], 2.5);
        assert_eq!(json["p99_ratio"], 0.25);
        for server in ["temporal", "dura"] {
            for key in ["throughput_wf_s", "p50_ms", "p99_ms"] {
                assert!(json[server][key].is_f64(), "{server}.{key}");
            }
            assert_eq!(json[server]["fixed_rate"]["mode"], "open");
            assert_eq!(
                json[server]["saturation"]["latency_ms"]["count"], 10,
                "summary is flattened"
            );
        }
        assert_eq!(json["temporal"]["p99_ms"], 20.0);
        let text = report::compare_table(&report());
        assert!(text.contains("2.50×") && text.contains("0.25×"), "{text}");
    }

    const DOC: &str = "# Benchmarks\n\n<!-- bench:machine -->\nnot yet run\n<!-- /bench:machine -->\n\n\
        <!-- bench:results -->\n| workload | a |\n| --- | --- |\n| echo | not yet run |\n| timer-1s | not yet run |\n\
        <!-- /bench:results -->\n\nMethod.\n";

    #[test]
    fn markdown_replaces_the_workloads_row_and_the_machine() {
        let doc = update_markdown(DOC, &report()).unwrap();
        assert!(doc.contains("- CPU: Test CPU (2 cores"), "{doc}");
        assert!(!doc.contains("| echo | not yet run |"), "{doc}");
        assert!(
            doc.contains("| echo | 100.0 | 250.0 | 2.50 | 50.0 | 4.0 / 20.0 | 2.0 / 5.0 | 0.25 |"),
            "{doc}"
        );
        assert!(
            doc.contains("| timer-1s | not yet run |\n<!-- /bench:results -->\n\nMethod.\n"),
            "{doc}"
        );
        assert_eq!(
            update_markdown(&doc, &report()).unwrap(),
            doc,
            "rerunning is stable"
        );
    }

    #[test]
    fn a_cluster_run_adds_its_row_and_ratios() {
        let mut r = report();
        r.cluster_nodes = Some(3);
        r.dura_cluster = Some(r.dura.clone());
        r.cluster_throughput_ratio = ratio(r.dura.throughput_wf_s, r.temporal.throughput_wf_s);
        r.cluster_p99_ratio = ratio(r.dura.p99_ms, r.temporal.p99_ms);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["cluster_throughput_ratio"], 2.5);
        assert_eq!(json["cluster_p99_ratio"], 0.25);
        assert_eq!(json["dura_cluster"]["p99_ms"], 5.0);
        let doc = update_markdown(DOC, &r).unwrap();
        assert!(doc.contains("| echo | 100.0 | 250.0 | 2.50 |"), "{doc}");
        assert!(
            doc.contains("| echo (dura, 3 nodes) | 100.0 | 250.0 | 2.50 | 50.0 |"),
            "{doc}"
        );
        assert_eq!(
            update_markdown(&doc, &r).unwrap(),
            doc,
            "rerunning is stable"
        );
        assert!(report::compare_table(&r).contains("3-node cluster"));
    }

    #[test]
    fn markdown_appends_a_new_workload_and_needs_markers() {
        let mut r = report();
        r.workload = "chain-3".into();
        let doc = update_markdown(DOC, &r).unwrap();
        assert!(
            doc.contains("| timer-1s | not yet run |\n| chain-3 | 100.0"),
            "{doc}"
        );
        assert!(
            update_markdown("# nothing here", &r)
                .unwrap_err()
                .to_string()
                .contains("marker")
        );
    }
}
