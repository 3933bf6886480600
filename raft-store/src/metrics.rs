//! The storage's own Prometheus metrics, in a registry of this crate that the node's
//! `/metrics` serves next to its own: group-commit batches and their fsyncs (also under
//! Temporal's `persistence_requests` / `persistence_latency`), proposals, snapshot builds and
//! installs. Counted where the work happens; label values are bounded (none per key).

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn register<T: prometheus::core::Collector + Clone + 'static>(metric: T) -> T {
    REGISTRY
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    register(
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
            .expect("valid metric"),
    )
}

fn counter_vec(name: &str, help: &str, label: &str) -> IntCounterVec {
    register(IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric"))
}

fn seconds_vec(name: &str, help: &str, label: &str) -> HistogramVec {
    register(
        HistogramVec::new(
            HistogramOpts::new(name, help).buckets(SECONDS.to_vec()),
            &[label],
        )
        .expect("valid metric"),
    )
}

/// Requests (log appends, state writes, snapshots' marks) written by the group-commit writer,
/// Temporal's `persistence_requests`.
pub static PERSISTENCE_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "persistence_requests",
        "writes to the node's RocksDB",
        "operation",
    )
});

/// Requests whose batch failed to write, Temporal's `persistence_errors`.
pub static PERSISTENCE_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "persistence_errors",
        "failed writes to the node's RocksDB",
        "operation",
    )
});

/// One group-commit batch's write (and fsync), Temporal's `persistence_latency`.
pub static PERSISTENCE_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    seconds_vec(
        "persistence_latency",
        "seconds to write one batch to RocksDB",
        "operation",
    )
});

/// Requests merged into one batch (many groups' appends share one fsync).
pub static BATCH_SIZE: LazyLock<Histogram> = LazyLock::new(|| {
    histogram(
        "dura_raft_write_batch_requests",
        "requests merged into one group-commit batch",
        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
    )
});

/// Batches written with `sync`, and how long the write with its fsync took.
pub static FSYNC_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    histogram(
        "dura_raft_fsync_seconds",
        "seconds to write and fsync one group-commit batch",
        SECONDS,
    )
});

/// From a proposal to its applied reply on this node.
pub static PROPOSAL_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    histogram(
        "dura_raft_proposal_seconds",
        "seconds from proposing a command to its applied reply",
        SECONDS,
    )
});

/// Snapshots built / installed, their bytes and durations, by `kind` (build, install).
pub static SNAPSHOTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "dura_raft_snapshots",
        "snapshots built or installed",
        "kind",
    )
});
pub static SNAPSHOT_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "dura_raft_snapshot_bytes",
        "bytes of snapshots built or installed",
        "kind",
    )
});
pub static SNAPSHOT_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    seconds_vec(
        "dura_raft_snapshot_seconds",
        "seconds to build or install a snapshot",
        "kind",
    )
});

/// Times this node took the leadership of a group, by group.
pub static LEADERSHIPS_TAKEN: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "dura_raft_leader_changes",
        "times this node became a group's leader",
        "group",
    )
});

/// A snapshot of `kind` done: its size and how long it took.
pub(crate) fn snapshot_done(kind: &str, bytes: u64, took: std::time::Duration) {
    SNAPSHOTS.with_label_values(&[kind]).inc();
    SNAPSHOT_BYTES.with_label_values(&[kind]).inc_by(bytes);
    SNAPSHOT_SECONDS
        .with_label_values(&[kind])
        .observe(took.as_secs_f64());
}

/// Every metric of this crate, including the ones nothing counted yet (at zero).
pub fn gather() -> Vec<prometheus::proto::MetricFamily> {
    PERSISTENCE_REQUESTS.with_label_values(&["write"]);
    PERSISTENCE_ERRORS.with_label_values(&["write"]);
    PERSISTENCE_LATENCY.with_label_values(&["write"]);
    LazyLock::force(&BATCH_SIZE);
    LazyLock::force(&FSYNC_SECONDS);
    LazyLock::force(&PROPOSAL_SECONDS);
    for kind in ["build", "install"] {
        SNAPSHOTS.with_label_values(&[kind]);
        SNAPSHOT_BYTES.with_label_values(&[kind]);
        SNAPSHOT_SECONDS.with_label_values(&[kind]);
    }
    LazyLock::force(&LEADERSHIPS_TAKEN);
    REGISTRY.gather()
}
