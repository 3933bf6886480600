//! What a run measures while it runs: HDR latency histograms per RPC and for whole workflows,
//! completion and event counters, errors by gRPC status code. Everything recorded here falls
//! inside the measurement window; warmup and drain traffic only feed the progress counters.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use hdrhistogram::Histogram;
use serde::Serialize;

/// The RPCs a run makes, each with its own latency histogram.
#[derive(Debug, Clone, Copy)]
pub enum Rpc {
    StartWorkflowExecution,
    SignalWorkflowExecution,
    PollWorkflowTaskQueue,
    RespondWorkflowTaskCompleted,
    GetWorkflowExecutionHistory,
    PollActivityTaskQueue,
    RespondActivityTaskCompleted,
}

impl Rpc {
    const ALL: [Rpc; 7] = [
        Rpc::StartWorkflowExecution,
        Rpc::SignalWorkflowExecution,
        Rpc::PollWorkflowTaskQueue,
        Rpc::RespondWorkflowTaskCompleted,
        Rpc::GetWorkflowExecutionHistory,
        Rpc::PollActivityTaskQueue,
        Rpc::RespondActivityTaskCompleted,
    ];

    fn name(self) -> &'static str {
        match self {
            Rpc::StartWorkflowExecution => "StartWorkflowExecution",
            Rpc::SignalWorkflowExecution => "SignalWorkflowExecution",
            Rpc::PollWorkflowTaskQueue => "PollWorkflowTaskQueue",
            Rpc::RespondWorkflowTaskCompleted => "RespondWorkflowTaskCompleted",
            Rpc::GetWorkflowExecutionHistory => "GetWorkflowExecutionHistory",
            Rpc::PollActivityTaskQueue => "PollActivityTaskQueue",
            Rpc::RespondActivityTaskCompleted => "RespondActivityTaskCompleted",
        }
    }
}

/// Error key for a closed-loop workflow whose completion never reached the bench's worker.
pub const COMPLETION_TIMEOUT: &str = "client: completion wait timed out";

fn histogram() -> Histogram<u64> {
    // Microseconds from 1 µs to 1 h at 3 significant digits: every latency a run can see.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

pub struct Recorder {
    recording: AtomicBool,
    workflow_latency: Mutex<Histogram<u64>>,
    rpc_latency: [Mutex<Histogram<u64>>; Rpc::ALL.len()],
    errors: Mutex<BTreeMap<String, u64>>,
    /// The first message seen for each code: a count alone does not say what went wrong.
    error_examples: Mutex<BTreeMap<String, String>>,
    started: AtomicU64,
    completed: AtomicU64,
    events: AtomicU64,
    /// All completions and errors, window or not, for the progress line.
    completed_total: AtomicU64,
    errors_total: AtomicU64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            recording: AtomicBool::new(false),
            workflow_latency: Mutex::new(histogram()),
            rpc_latency: std::array::from_fn(|_| Mutex::new(histogram())),
            errors: Mutex::default(),
            error_examples: Mutex::default(),
            started: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            events: AtomicU64::new(0),
            completed_total: AtomicU64::new(0),
            errors_total: AtomicU64::new(0),
        }
    }
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, 3_600_000_000)
}

impl Recorder {
    /// Opens or closes the measurement window.
    pub fn set_recording(&self, on: bool) {
        self.recording.store(on, Ordering::SeqCst);
    }

    fn recording(&self) -> bool {
        self.recording.load(Ordering::Relaxed)
    }

    pub fn rpc(&self, rpc: Rpc, latency: Duration) {
        if self.recording() {
            // Discriminants are 0.. in declaration order, the order of ALL.
            self.rpc_latency[rpc as usize]
                .lock()
                .unwrap()
                .saturating_record(micros(latency));
        }
    }

    pub fn error(&self, code: &str, message: &str) {
        self.errors_total.fetch_add(1, Ordering::Relaxed);
        if self.recording() {
            *self
                .errors
                .lock()
                .unwrap()
                .entry(code.to_string())
                .or_default() += 1;
            self.error_examples
                .lock()
                .unwrap()
                .entry(code.to_string())
                .or_insert_with(|| message.to_string());
        }
    }

    pub fn workflow_started(&self) {
        if self.recording() {
            self.started.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `events` is the workflow's history length once closed: its count of state transitions.
    pub fn workflow_completed(&self, latency: Duration, events: u64) {
        self.completed_total.fetch_add(1, Ordering::Relaxed);
        if self.recording() {
            self.completed.fetch_add(1, Ordering::Relaxed);
            self.events.fetch_add(events, Ordering::Relaxed);
            self.workflow_latency
                .lock()
                .unwrap()
                .saturating_record(micros(latency));
        }
    }

    pub fn progress(&self) -> (u64, u64) {
        (
            self.completed_total.load(Ordering::Relaxed),
            self.errors_total.load(Ordering::Relaxed),
        )
    }

    pub fn summary(&self, window: Duration) -> Summary {
        let seconds = window.as_secs_f64();
        let completed = self.completed.load(Ordering::Relaxed);
        let events = self.events.load(Ordering::Relaxed);
        let per_second = |n: u64| {
            if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            }
        };
        Summary {
            window_s: seconds,
            started: self.started.load(Ordering::Relaxed),
            completed,
            throughput_wf_s: per_second(completed),
            events,
            events_per_s: per_second(events),
            latency_ms: LatencySummary::of(&self.workflow_latency.lock().unwrap()),
            rpc_latency_ms: Rpc::ALL
                .iter()
                .zip(&self.rpc_latency)
                .map(|(rpc, h)| {
                    (
                        rpc.name().to_string(),
                        LatencySummary::of(&h.lock().unwrap()),
                    )
                })
                .filter(|(_, s)| s.count > 0)
                .collect(),
            errors: self.errors.lock().unwrap().clone(),
            error_examples: self.error_examples.lock().unwrap().clone(),
        }
    }
}

/// The measurement window's results, as they appear in the JSON report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub window_s: f64,
    pub started: u64,
    pub completed: u64,
    pub throughput_wf_s: f64,
    /// History events of the workflows completed in the window (state transitions).
    pub events: u64,
    pub events_per_s: f64,
    /// Start (just before StartWorkflowExecution) to completion (the OK answer to the
    /// RespondWorkflowTaskCompleted that carried CompleteWorkflowExecution).
    pub latency_ms: LatencySummary,
    pub rpc_latency_ms: BTreeMap<String, LatencySummary>,
    /// gRPC status code name → count.
    pub errors: BTreeMap<String, u64>,
    /// gRPC status code name → the first message seen with it.
    pub error_examples: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl LatencySummary {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_recorded_outside_the_window() {
        let r = Recorder::default();
        r.workflow_started();
        r.workflow_completed(Duration::from_millis(5), 11);
        r.rpc(Rpc::StartWorkflowExecution, Duration::from_millis(1));
        r.error("Unavailable", "down");
        let s = r.summary(Duration::from_secs(1));
        assert_eq!((s.started, s.completed, s.events), (0, 0, 0));
        assert!(s.rpc_latency_ms.is_empty() && s.errors.is_empty());
        assert_eq!(r.progress(), (1, 1), "progress counts everything");
    }

    #[test]
    fn summary_has_percentiles_rates_and_error_codes() {
        let r = Recorder::default();
        r.set_recording(true);
        for ms in 1..=100 {
            r.workflow_started();
            r.workflow_completed(Duration::from_millis(ms), 10);
        }
        r.rpc(Rpc::PollActivityTaskQueue, Duration::from_micros(2500));
        r.error("Unavailable", "first");
        r.error("Unavailable", "second");
        r.error("NotFound", "gone");
        let s = r.summary(Duration::from_secs(4));
        assert_eq!((s.started, s.completed, s.events), (100, 100, 1000));
        assert_eq!(s.throughput_wf_s, 25.0);
        assert_eq!(s.events_per_s, 250.0);
        // HDR buckets at 3 significant digits: within 0.1% of the exact value.
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001;
        assert_eq!(s.latency_ms.count, 100);
        assert!(close(s.latency_ms.p50, 50.0), "{:?}", s.latency_ms);
        assert!(close(s.latency_ms.p90, 90.0), "{:?}", s.latency_ms);
        assert!(close(s.latency_ms.p99, 99.0), "{:?}", s.latency_ms);
        assert!(close(s.latency_ms.max, 100.0), "{:?}", s.latency_ms);
        assert_eq!(
            s.rpc_latency_ms.keys().collect::<Vec<_>>(),
            ["PollActivityTaskQueue"]
        );
        assert!(close(s.rpc_latency_ms["PollActivityTaskQueue"].p50, 2.5));
        assert_eq!(
            s.errors,
            BTreeMap::from([("NotFound".into(), 1), ("Unavailable".into(), 2)])
        );
        assert_eq!(s.error_examples["Unavailable"], "first");
    }

    #[test]
    fn empty_window_reports_zeros_not_nan() {
        let s = Recorder::default().summary(Duration::ZERO);
        assert_eq!(s.throughput_wf_s, 0.0);
        assert_eq!(s.latency_ms, LatencySummary::default());
    }
}
