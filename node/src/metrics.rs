//! Prometheus metrics and the health checks an orchestrator probes, on the metrics port:
//! - `GET /metrics`: Temporal's metric names and labels where Temporal has one
//!   (`service_requests`, `service_latency`, `service_errors`, `service_errors_*`,
//!   `service_error_with_type`, `workflow_success`…, `poll_success`…,
//!   `task_schedule_to_start_latency`, and the storage's `persistence_requests`,
//!   `persistence_latency`), Dura's own under `dura_` (per Raft group, group commit, fsyncs,
//!   proposals, snapshots: `dura_raft_store::metrics`; RocksDB), and the process's;
//! - `GET /healthz`: the process is up;
//! - `GET /readyz`: every group this node hosts has a known leader and this node has applied
//!   up to the group's commit index but for the entries in flight, so a node catching up
//!   after a restart is not ready until it is current.
//!
//! Per-group and RocksDB values are read from the store at scrape time (a collector), not
//! pushed on every change. Label values are bounded: operations, group ids, outcomes,
//! registered namespaces (a request naming none that exists counts as `_unknown_`, as in
//! Temporal), never a workflow id.

use std::{
    net::SocketAddr,
    sync::{Arc, LazyLock, OnceLock},
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use dura_matching::{Matcher, TaskKind, TaskQueueKey};
use dura_raft_store::{GroupView, RaftStore};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
    core::{Collector, Desc},
    proto::MetricFamily,
};
use tokio::net::TcpListener;

use crate::engine::QueuedTask;

pub static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let registry = Registry::new();
    registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("registered once");
    registry
});

fn register<T: Collector + Clone + 'static>(metric: T) -> T {
    REGISTRY
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

fn counter(opts: Opts, labels: &[&str]) -> IntCounterVec {
    register(IntCounterVec::new(opts, labels).expect("valid metric"))
}

/// Latency buckets in seconds, from a sub-millisecond sync match to a minute-long poll.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];

fn histogram(opts: Opts, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::from(opts).buckets(LATENCY_BUCKETS.to_vec());
    register(HistogramVec::new(opts, labels).expect("valid metric"))
}

/// Temporal's frontend metrics carry `service_name="frontend"`; its dashboards filter on it.
fn frontend_opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).const_label("service_name", "frontend")
}

/// gRPC requests handled by the frontend, by RPC (Temporal's `service_requests`).
pub static SERVICE_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        frontend_opts("service_requests", "gRPC requests handled by the frontend"),
        &["operation", "namespace"],
    )
});

/// Time from request to response, by RPC (Temporal's `service_latency`), in seconds.
pub static SERVICE_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram(
        frontend_opts(
            "service_latency",
            "seconds from a gRPC request to its response",
        ),
        &["operation", "namespace"],
    )
});

/// Failed requests by RPC (Temporal's `service_errors`).
pub static SERVICE_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        frontend_opts("service_errors", "gRPC requests answered with an error"),
        &["operation", "namespace"],
    )
});

/// Failed requests by RPC and gRPC status (Temporal's `service_error_with_type`).
pub static SERVICE_ERRORS_BY_TYPE: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        frontend_opts(
            "service_error_with_type",
            "gRPC requests answered with an error, by status code",
        ),
        &["operation", "namespace", "error_type"],
    )
});

/// Temporal's per-kind error counters (`service_errors_entity_not_found`, …), by RPC.
static SERVICE_ERROR_KINDS: LazyLock<[(tonic::Code, IntCounterVec); 5]> = LazyLock::new(|| {
    use tonic::Code;
    [
        (Code::NotFound, "service_errors_entity_not_found"),
        (
            Code::AlreadyExists,
            "service_errors_execution_already_started",
        ),
        (Code::ResourceExhausted, "service_errors_resource_exhausted"),
        (Code::InvalidArgument, "service_errors_invalid_argument"),
        (Code::DeadlineExceeded, "service_errors_context_timeout"),
    ]
    .map(|(code, name)| {
        (
            code,
            counter(
                frontend_opts(name, "gRPC requests answered with this error"),
                &["operation", "namespace"],
            ),
        )
    })
});

/// The label of metrics about no namespace, or about one that does not exist (Temporal's).
pub const UNKNOWN_NAMESPACE: &str = "_unknown_";

tokio::task_local! {
    /// The namespace the request being served resolved, once its handler has (set by the
    /// namespace registry, read by the RPC edge for the request's metrics).
    static REQUEST_NAMESPACE: RequestNamespace;
}

/// Where a request's handler notes the namespace it resolved.
pub type RequestNamespace = Arc<OnceLock<String>>;

/// `handler` run in a request's scope, and where to find the namespace it resolved once done.
pub fn in_request_scope<F: Future>(
    handler: F,
) -> (
    RequestNamespace,
    tokio::task::futures::TaskLocalFuture<RequestNamespace, F>,
) {
    let noted = RequestNamespace::default();
    (noted.clone(), REQUEST_NAMESPACE.scope(noted, handler))
}

/// Records that the request being served (if any: background work has none) is about
/// namespace `name`, which exists. The first namespace a request resolves is its label.
pub fn note_request_namespace(name: &str) {
    let _ = REQUEST_NAMESPACE.try_with(|noted| {
        noted.get_or_init(|| name.to_string());
    });
}

/// Counts one answered request.
pub fn request_served(
    operation: &str,
    namespace: &str,
    code: tonic::Code,
    latency: std::time::Duration,
) {
    let labels = [operation, namespace];
    SERVICE_REQUESTS.with_label_values(&labels).inc();
    SERVICE_LATENCY
        .with_label_values(&labels)
        .observe(latency.as_secs_f64());
    if code == tonic::Code::Ok {
        return;
    }
    SERVICE_ERRORS.with_label_values(&labels).inc();
    SERVICE_ERRORS_BY_TYPE
        .with_label_values(&[operation, namespace, &format!("{code:?}")])
        .inc();
    if let Some((_, counter)) = SERVICE_ERROR_KINDS.iter().find(|(c, _)| *c == code) {
        counter.with_label_values(&labels).inc();
    }
}

/// Workflow/activity tasks moved from an outbox to their queue, by how they got there: `sync`
/// (handed to a waiting poller), `backlog` (written to the partition's backlog) or `sticky`.
pub static TASK_DISPATCH: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        Opts::new(
            "task_dispatch",
            "tasks moved from an outbox to their task queue",
        ),
        &["path"],
    )
});

/// Polls that got a task (Temporal's `poll_success`), by task type.
pub static POLL_SUCCESS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        Opts::new("poll_success", "polls answered with a task"),
        &["task_type"],
    )
});

/// Polls that got a task no backlog write came between (Temporal's `poll_success_sync`).
pub static POLL_SUCCESS_SYNC: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        Opts::new(
            "poll_success_sync",
            "polls answered with a task that never waited in a backlog",
        ),
        &["task_type"],
    )
});

/// Polls that ended empty at their deadline (Temporal's `poll_timeouts`).
pub static POLL_TIMEOUTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        Opts::new("poll_timeouts", "polls that ended without a task"),
        &["task_type"],
    )
});

/// From a task's scheduling to its poller (Temporal's `task_schedule_to_start_latency`).
pub static TASK_SCHEDULE_TO_START: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram(
        Opts::new(
            "task_schedule_to_start_latency",
            "seconds from a task's scheduling to a poller taking it",
        ),
        &["task_type"],
    )
});

/// Runs closed, counted by the leader of their shard under Temporal's names
/// (`workflow_success`, `workflow_failed`, `workflow_timeout`, `workflow_terminate`,
/// `workflow_cancel`, `workflow_continued_as_new`).
pub static WORKFLOW_CLOSED: LazyLock<[IntCounterVec; 6]> = LazyLock::new(|| {
    [
        ("workflow_success", "runs completed"),
        ("workflow_failed", "runs failed"),
        ("workflow_timeout", "runs timed out"),
        ("workflow_terminate", "runs terminated"),
        ("workflow_cancel", "runs cancelled"),
        ("workflow_continued_as_new", "runs continued as new"),
    ]
    .map(|(name, help)| {
        // Temporal's completion counters carry `operation="CompletionStats"`.
        let opts = Opts::new(name, help).const_label("operation", "CompletionStats");
        counter(opts, &["namespace"])
    })
});

/// Creates every outcome counter of `namespace` at zero once the node knows the namespace,
/// so a dashboard's panel reads 0 rather than no data.
pub fn namespace_known(namespace: &str) {
    for counter in WORKFLOW_CLOSED.iter() {
        counter.with_label_values(&[namespace]);
    }
}

/// Counts one closed run of `namespace` under its Temporal name.
pub fn workflow_closed(namespace: &str, status: dura_history::mutable_state::WorkflowStatus) {
    use dura_history::mutable_state::WorkflowStatus as S;
    let index = match status {
        S::Running => return,
        S::Completed => 0,
        S::Failed => 1,
        S::TimedOut => 2,
        S::Terminated => 3,
        S::Canceled => 4,
        S::ContinuedAsNew => 5,
    };
    WORKFLOW_CLOSED[index].with_label_values(&[namespace]).inc();
}

/// What the schedules' leader work did, under the names of Temporal's scheduler:
/// `schedule_action_success` / `schedule_action_errors` (`schedule_action="start_workflow"`),
/// `schedule_missed_catchup_window` (`reason="not_buffered"`), `schedule_overlap_skipped`
/// (`schedule_overlap_policy`) and `schedule_action_delay` (seconds from a scheduled action's
/// nominal time to its start; triggered actions are not counted, as on the real server).
pub struct ScheduleMetrics {
    action_success: IntCounterVec,
    action_errors: IntCounterVec,
    missed_catchup_window: IntCounterVec,
    overlap_skipped: IntCounterVec,
    action_delay: HistogramVec,
}

pub static SCHEDULES: LazyLock<ScheduleMetrics> = LazyLock::new(|| {
    let action = |name, help| {
        counter(
            Opts::new(name, help).const_label("schedule_action", "start_workflow"),
            &["namespace"],
        )
    };
    ScheduleMetrics {
        action_success: action("schedule_action_success", "workflows started by a schedule"),
        action_errors: action(
            "schedule_action_errors",
            "failed attempts to start a schedule's workflow",
        ),
        missed_catchup_window: counter(
            Opts::new(
                "schedule_missed_catchup_window",
                "schedule actions missed for the catch-up window",
            )
            .const_label("reason", "not_buffered"),
            &["namespace"],
        ),
        overlap_skipped: counter(
            Opts::new(
                "schedule_overlap_skipped",
                "schedule actions skipped for the overlap policy",
            ),
            &["namespace", "schedule_overlap_policy"],
        ),
        action_delay: histogram(
            Opts::new(
                "schedule_action_delay",
                "seconds from a scheduled action's nominal time to its start",
            ),
            &["namespace"],
        ),
    }
});

impl ScheduleMetrics {
    pub fn started(&self, namespace: &str, delay: Option<std::time::Duration>) {
        self.action_success.with_label_values(&[namespace]).inc();
        if let Some(delay) = delay {
            self.action_delay
                .with_label_values(&[namespace])
                .observe(delay.as_secs_f64());
        }
    }

    pub fn start_failed(&self, namespace: &str) {
        self.action_errors.with_label_values(&[namespace]).inc();
    }

    pub fn missed_catchup_window(&self, namespace: &str) {
        self.missed_catchup_window
            .with_label_values(&[namespace])
            .inc();
    }

    /// `policy`: the enum's Go name (`Skip`), as Temporal's label carries it.
    pub fn overlap_skipped(&self, namespace: &str, policy: &str) {
        self.overlap_skipped
            .with_label_values(&[namespace, policy])
            .inc();
    }
}

/// Per-group Raft state, RocksDB's own numbers and the task-queue backlogs, read at each
/// scrape into gauges that hold nothing else (reset first, so a group or queue that went
/// away disappears).
struct StoreCollector {
    store: RaftStore,
    matcher: Matcher<QueuedTask>,
    /// One per [`GROUP_GAUGES`] entry, by `group`.
    groups: Vec<GaugeVec>,
    rocksdb: GaugeVec,
    backlog: GaugeVec,
    /// Two scrapes at once would reset each other's gauges half-way.
    collecting: std::sync::Mutex<()>,
}

/// Task queues shown one by one in `approximate_backlog_count`, the longest first; the rest
/// are summed under `task_queue="_other_"`, so a namespace with many queues cannot blow up
/// the series count.
const BACKLOG_QUEUES_SHOWN: usize = 20;

/// `(labels, length)` of the longest backlogs, then one for all the others.
fn backlog_points(
    mut lengths: Vec<(TaskQueueKey, usize)>,
) -> Vec<(Vec<(&'static str, String)>, f64)> {
    lengths.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.name.cmp(&b.0.name)));
    let labels = |key: &TaskQueueKey, name: String| {
        let task_type = match key.kind {
            TaskKind::Workflow => "workflow",
            TaskKind::Activity => "activity",
        };
        vec![
            ("namespace_id", key.namespace_id.clone()),
            ("task_queue", name),
            ("task_type", task_type.to_string()),
        ]
    };
    let mut points: Vec<_> = lengths
        .iter()
        .take(BACKLOG_QUEUES_SHOWN)
        .map(|(key, n)| (labels(key, key.name.clone()), *n as f64))
        .collect();
    let mut others: std::collections::BTreeMap<_, f64> = Default::default();
    for (key, n) in lengths.iter().skip(BACKLOG_QUEUES_SHOWN) {
        *others.entry(labels(key, "_other_".into())).or_default() += *n as f64;
    }
    points.extend(others);
    points
}

/// A per-group gauge: its name, help and value from this node's view of the group.
type GroupGauge = (&'static str, &'static str, fn(&GroupView, u64) -> u64);

const GROUP_GAUGES: &[GroupGauge] = &[
    (
        "dura_raft_term",
        "the group's current Raft term as this node knows it",
        |v, _| v.term,
    ),
    (
        "dura_raft_leader",
        "1 if this node leads the group, else 0",
        |v, me| u64::from(v.leader == Some(me)),
    ),
    (
        "dura_raft_commit_index",
        "the group's committed log index as this node knows it",
        |v, _| v.committed,
    ),
    (
        "dura_raft_applied_index",
        "the last log index this node applied",
        |v, _| v.applied,
    ),
    (
        "dura_raft_apply_lag",
        "committed entries this node has not applied yet",
        |v, _| v.committed.saturating_sub(v.applied),
    ),
    (
        "dura_raft_last_log_index",
        "the last log index in this node's log",
        |v, _| v.last_log,
    ),
    (
        "dura_raft_snapshot_index",
        "the log index of this node's last snapshot",
        |v, _| v.snapshot,
    ),
];

fn gauge(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    GaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
}

impl StoreCollector {
    fn new(store: RaftStore, matcher: Matcher<QueuedTask>) -> Self {
        StoreCollector {
            store,
            matcher,
            groups: GROUP_GAUGES
                .iter()
                .map(|(name, help, _)| gauge(name, help, &["group"]))
                .collect(),
            rocksdb: gauge(
                "dura_rocksdb",
                "RocksDB's own numbers for this node's database, summed over its column families",
                &["property"],
            ),
            backlog: gauge(
                "approximate_backlog_count",
                "tasks waiting in the task-queue partitions this node leads",
                &["namespace_id", "task_queue", "task_type"],
            ),
            collecting: Default::default(),
        }
    }

    fn gauges(&self) -> impl Iterator<Item = &GaugeVec> {
        self.groups.iter().chain([&self.rocksdb, &self.backlog])
    }
}

impl Collector for StoreCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.gauges().flat_map(|g| g.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one_at_a_time = self.collecting.lock().unwrap_or_else(|e| e.into_inner());
        self.gauges().for_each(GaugeVec::reset);
        let me = self.store.node_id();
        for view in self.store.group_views() {
            let group = view.group.0.to_string();
            for ((_, _, value), gauge) in GROUP_GAUGES.iter().zip(&self.groups) {
                gauge
                    .with_label_values(&[&group])
                    .set(value(&view, me) as f64);
            }
        }
        for (property, value) in self.store.rocksdb_properties() {
            self.rocksdb
                .with_label_values(&[property])
                .set(value as f64);
        }
        for (labels, length) in backlog_points(self.matcher.backlog_lengths()) {
            let values: Vec<&str> = labels.iter().map(|(_, v)| v.as_str()).collect();
            self.backlog.with_label_values(&values).set(length);
        }
        self.gauges().flat_map(|g| g.collect()).collect()
    }
}

fn render() -> Vec<u8> {
    LazyLock::force(&SERVICE_REQUESTS);
    LazyLock::force(&SERVICE_LATENCY);
    LazyLock::force(&SERVICE_ERRORS);
    LazyLock::force(&SERVICE_ERRORS_BY_TYPE);
    LazyLock::force(&SERVICE_ERROR_KINDS);
    // Series of a bounded label set are shown from the start, at zero.
    for task_type in ["workflow", "activity"] {
        POLL_SUCCESS.with_label_values(&[task_type]);
        POLL_SUCCESS_SYNC.with_label_values(&[task_type]);
        POLL_TIMEOUTS.with_label_values(&[task_type]);
        TASK_SCHEDULE_TO_START.with_label_values(&[task_type]);
    }
    for path in ["sync", "backlog", "sticky"] {
        TASK_DISPATCH.with_label_values(&[path]);
    }
    LazyLock::force(&WORKFLOW_CLOSED);
    let mut families = REGISTRY.gather();
    families.extend(dura_raft_store::metrics::gather());
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&families, &mut buf)
        .expect("text encoding cannot fail");
    buf
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        render(),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// How far a group's applied index may trail its commit index on a ready node. Under load
/// every follower trails by the entries in flight; a node catching up after a restart trails
/// by far more, and is not ready until it is within this.
const READY_APPLY_LAG: u64 = 1000;

/// Why `group` keeps this node from being ready, if it does.
fn not_ready(view: &dura_raft_store::GroupView) -> Option<String> {
    let group = view.group.0;
    if view.leader.is_none() {
        return Some(format!("group {group}: no known leader"));
    }
    let lag = view.committed.saturating_sub(view.applied);
    (lag > READY_APPLY_LAG).then(|| {
        format!(
            "group {group}: applied {} of {} committed",
            view.applied, view.committed
        )
    })
}

/// Ready once every hosted group has a leader and this node has applied (nearly) all it knows
/// committed.
async fn readyz(State(store): State<RaftStore>) -> impl IntoResponse {
    let not_ready: Vec<String> = store.group_views().iter().filter_map(not_ready).collect();
    match not_ready.is_empty() {
        true => (StatusCode::OK, "ready\n".to_string()),
        false => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{}\n", not_ready.join("\n")),
        ),
    }
}

/// Binds the metrics port; the server task runs until the runtime stops. The store's numbers
/// join the registry here, once per process.
pub async fn serve(
    addr: SocketAddr,
    store: RaftStore,
    matcher: Matcher<QueuedTask>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    // A second node in one process (tests) keeps the first one's collector.
    let _ = REGISTRY.register(Box::new(StoreCollector::new(store.clone(), matcher)));
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(store);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_without_leader_or_far_behind_keeps_the_node_unready() {
        let view = |leader: Option<u64>, applied: u64, committed: u64| dura_raft_store::GroupView {
            group: dura_raft_store::GroupId(3),
            leader,
            term: 2,
            voters: vec![1, 2, 3],
            applied,
            committed,
            last_log: committed,
            snapshot: 0,
            lag: None,
        };
        assert_eq!(
            not_ready(&view(Some(1), 500, 510)),
            None,
            "in-flight entries"
        );
        assert!(
            not_ready(&view(None, 10, 10))
                .unwrap()
                .contains("no known leader")
        );
        assert!(
            not_ready(&view(Some(1), 10, 5000))
                .unwrap()
                .contains("applied 10 of 5000")
        );
    }

    #[test]
    fn backlogs_beyond_the_longest_are_summed_per_namespace_and_type() {
        let lengths: Vec<_> = (0..25)
            .map(|i| {
                (
                    TaskQueueKey::new("ns", format!("q{i:02}"), TaskKind::Activity),
                    i + 1,
                )
            })
            .collect();
        let points = backlog_points(lengths);
        assert_eq!(points.len(), BACKLOG_QUEUES_SHOWN + 1);
        assert_eq!(points[0].0[1], ("task_queue", "q24".to_string()));
        assert_eq!(points[0].1, 25.0);
        let other = points.last().unwrap();
        assert_eq!(other.0[1], ("task_queue", "_other_".to_string()));
        assert_eq!(other.1, (1 + 2 + 3 + 4 + 5) as f64);
    }
}
