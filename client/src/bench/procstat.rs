//! Resource use read from /proc: the server's CPU time and peak memory next to its throughput,
//! and the bench's own CPU, since the two share the machine's cores. Also the machine
//! description the reports carry, so numbers are never read without knowing where they came from.

use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

/// `pid` is a number or "self".
pub fn cpu_time(pid: &str) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_cpu_ticks(&stat)
        .map(|ticks| Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second()))
}

/// utime + stime from a /proc/<pid>/stat line, in clock ticks.
fn parse_cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    // The command name (field 2) is in parentheses and may hold spaces and ')', so fields are
    // counted from the last ')': state is field 3, utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("no ')' in /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        fields
            .get(n - 3)
            .context("short /proc stat line")?
            .parse()
            .context("non-numeric /proc stat field")
    };
    Ok(field(14)? + field(15)?)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        ticks if ticks > 0 => ticks as f64,
        _ => 100.0,
    }
}

/// VmHWM: the process's peak resident set, in MiB.
pub fn peak_rss_mib(pid: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_kib_field(&status, "VmHWM:").map(|kib| kib as f64 / 1024.0)
}

fn parse_kib_field(text: &str, key: &str) -> anyhow::Result<u64> {
    let line = text
        .lines()
        .find(|l| l.starts_with(key))
        .with_context(|| format!("no {key} line"))?;
    match line[key.len()..].split_whitespace().collect::<Vec<_>>()[..] {
        [value, "kB"] => value.parse().with_context(|| format!("bad {key} value")),
        _ => bail!("unexpected {key} line: {line}"),
    }
}

/// CPU used by a process over the measurement window, and its peak memory.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProcessUsage {
    pub pid: u32,
    pub cpu_s: f64,
    /// cpu_s ÷ window: how many cores it kept busy on average.
    pub cores: f64,
    pub peak_rss_mib: f64,
}

/// Samples one process's CPU time at the window's start, to report the difference at its end.
pub struct CpuMeter {
    pid: String,
    start: Duration,
}

impl CpuMeter {
    pub fn start(pid: &str) -> anyhow::Result<Self> {
        Ok(Self {
            pid: pid.to_string(),
            start: cpu_time(pid)?,
        })
    }

    pub fn finish(&self, window: Duration) -> anyhow::Result<ProcessUsage> {
        let cpu_s = (cpu_time(&self.pid)? - self.start).as_secs_f64();
        let pid = if self.pid == "self" {
            std::process::id()
        } else {
            self.pid.parse()?
        };
        Ok(ProcessUsage {
            pid,
            cpu_s,
            cores: if window.is_zero() {
                0.0
            } else {
                cpu_s / window.as_secs_f64()
            },
            peak_rss_mib: peak_rss_mib(&self.pid)?,
        })
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
}

impl Machine {
    pub fn current() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let memory_kib = parse_kib_field(&read("/proc/meminfo"), "MemTotal:").unwrap_or(0);
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: memory_kib as f64 / (1024.0 * 1024.0),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_from_the_last_paren() {
        let line = "4242 (tokio) runtime) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 8 0 100 2000 300";
        assert_eq!(parse_cpu_ticks(line).unwrap(), 300);
        assert!(parse_cpu_ticks("4242 (x) S 1").is_err());
    }

    #[test]
    fn kib_fields_parse() {
        let status = "Name:\tdura\nVmPeak:\t  900 kB\nVmHWM:\t  204800 kB\n";
        assert_eq!(parse_kib_field(status, "VmHWM:").unwrap(), 204_800);
        assert!(parse_kib_field(status, "VmRSS:").is_err());
    }

    #[test]
    fn own_process_is_measurable() {
        let meter = CpuMeter::start("self").unwrap();
        let usage = meter.finish(Duration::from_secs(1)).unwrap();
        assert_eq!(usage.pid, std::process::id());
        assert!(usage.cpu_s >= 0.0 && usage.peak_rss_mib > 0.0);
        assert!(Machine::current().cores >= 1);
    }
}
