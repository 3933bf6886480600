//! The human-readable tables `run` and `compare` print before their JSON line.

use std::fmt::Write;

use super::{driver::RunReport, procstat::ProcessUsage, stats::LatencySummary};

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
