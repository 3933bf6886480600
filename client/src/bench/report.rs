//! The human-readable tables `run` and `compare` print before their JSON line.

use std::fmt::Write;

use super::{
    compare::{CompareReport, ServerResult},
    driver::RunReport,
    procstat::ProcessUsage,
    stats::LatencySummary,
};

fn latency_row(out: &mut String, name: &str, s: &LatencySummary) {
    let _ = writeln!(
        out,
        "  {name:<30} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
        s.count, s.p50, s.p90, s.p99, s.max
    );
}

fn usage_line(out: &mut String, who: &str, u: &ProcessUsage) {
    let _ = writeln!(
        out,
        "{who} (pid {}): {:.1} CPU s ({:.2} cores), peak RSS {:.0} MiB",
        u.pid, u.cpu_s, u.cores, u.peak_rss_mib
    );
}

pub fn run_table(r: &RunReport) -> String {
    let s = &r.summary;
    let load = match (r.concurrency, r.rate_wf_s) {
        (Some(c), _) => format!("closed loop, concurrency {c}"),
        (_, Some(rate)) => format!("open loop, {rate:.1} wf/s"),
        _ => String::new(),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "workload {} ({load}) on {} namespace {}: {:.1} s measured after {:.1} s warmup",
        r.workload, r.address, r.namespace, s.window_s, r.warmup_s
    );
    let _ = writeln!(
        out,
        "  completed       {:>10} workflows {:>10.1} wf/s",
        s.completed, s.throughput_wf_s
    );
    let _ = writeln!(
        out,
        "  history events  {:>10} events    {:>10.1} events/s",
        s.events, s.events_per_s
    );
    let _ = writeln!(
        out,
        "  started         {:>10}    unfinished after drain {}",
        s.started, r.unfinished
    );
    let _ = writeln!(
        out,
        "  {:<30} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "latency (ms)", "count", "p50", "p90", "p99", "max"
    );
    latency_row(&mut out, "workflow start → completion", &s.latency_ms);
    for (rpc, latency) in &s.rpc_latency_ms {
        latency_row(&mut out, rpc, latency);
    }
    if s.errors.is_empty() {
        let _ = writeln!(out, "errors: none");
    } else {
        let _ = writeln!(out, "errors:");
        for (code, n) in &s.errors {
            let example = s.error_examples.get(code).map_or("", String::as_str);
            let _ = writeln!(out, "  {code:<30} {n:>8}  first: {example}");
        }
    }
    if let Some(server) = &r.server {
        usage_line(&mut out, "server", server);
    }
    usage_line(&mut out, "bench client", &r.client);
    out
}

fn ratio_cell(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}×"))
}

pub fn compare_table(c: &CompareReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "compare {}: saturation at concurrency {}, then fixed rate {:.1} wf/s; {:.0} s windows after {:.0} s warmup",
        c.workload, c.concurrency, c.rate_wf_s, c.duration_s, c.warmup_s
    );
    let _ = writeln!(
        out,
        "machine: {}, {} cores, {:.1} GiB",
        c.machine.cpu, c.machine.cores, c.machine.memory_gib
    );
    let row =
        |out: &mut String, name: &str, f: &dyn Fn(&ServerResult) -> String, ratio: Option<f64>| {
            let _ = writeln!(
                out,
                "  {name:<34} {:>14} {:>14} {:>14}",
                f(&c.temporal),
                f(&c.dura),
                ratio_cell(ratio)
            );
        };
    let _ = writeln!(
        out,
        "  {:<34} {:>14} {:>14} {:>14}",
        "", "temporal", "dura", "dura/temporal"
    );
    row(
        &mut out,
        "throughput (wf/s)",
        &|s| format!("{:.1}", s.throughput_wf_s),
        c.throughput_ratio,
    );
    row(
        &mut out,
        "history events/s",
        &|s| format!("{:.1}", s.saturation.summary.events_per_s),
        None,
    );
    row(
        &mut out,
        "fixed-rate p50 (ms)",
        &|s| format!("{:.2}", s.p50_ms),
        c.p50_ratio,
    );
    row(
        &mut out,
        "fixed-rate p99 (ms)",
        &|s| format!("{:.2}", s.p99_ms),
        c.p99_ratio,
    );
    let cores = |s: &ServerResult| {
        s.saturation
            .server
            .as_ref()
            .map_or("-".into(), |u| format!("{:.2}", u.cores))
    };
    row(&mut out, "server cores at saturation", &cores, None);
    let rss = |s: &ServerResult| {
        s.saturation
            .server
            .as_ref()
            .map_or("-".into(), |u| format!("{:.0}", u.peak_rss_mib))
    };
    row(&mut out, "server peak RSS (MiB)", &rss, None);
    let client = |s: &ServerResult| format!("{:.2}", s.saturation.client.cores);
    row(&mut out, "bench client cores at saturation", &client, None);
    let errors = |s: &ServerResult| {
        let n: u64 = [&s.saturation, &s.fixed_rate]
            .iter()
            .flat_map(|r| r.summary.errors.values())
            .sum();
        n.to_string()
    };
    row(&mut out, "errors (both phases)", &errors, None);
    if let (Some(cluster), Some(nodes)) = (&c.dura_cluster, c.cluster_nodes) {
        let _ = writeln!(
            out,
            "  dura, {nodes}-node cluster: {:.1} wf/s ({}), p50 {:.2} ms, p99 {:.2} ms ({}), {} errors",
            cluster.throughput_wf_s,
            ratio_cell(c.cluster_throughput_ratio),
            cluster.p50_ms,
            cluster.p99_ms,
            ratio_cell(c.cluster_p99_ratio),
            errors(cluster)
        );
    }
    out
}
