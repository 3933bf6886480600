//! Workflow RPCs: translate requests into history requests, run them through the engine and
//! translate the results back. All timing and ids are decided here, before the log.

use std::time::Duration;

use dura_codec::Persisted;
use dura_history::{
    MutableState, RunReply,
    api::{
        RunRequest,
        activity::{
            ActivityRef, ActivityTaskStartedReply, CancelActivityTaskRequest,
            CompleteActivityTaskRequest, FailActivityTaskRequest, HeartbeatActivityTaskRequest,
            RecordActivityTaskStartedRequest,
        },
        lifecycle::{RequestCancelRequest, TerminateRequest},
        signal::SignalRequest,
        start::StartWorkflowRequest,
        updates::{AdmitUpdateRequest, UpdateState, update_state},
        workflow_task::{
            CompleteWorkflowTaskRequest, FailWorkflowTaskRequest, RecordWorkflowTaskStartedRequest,
            StickyAttributes, WorkflowTaskStartedReply, WorkflowTaskToken,
        },
    },
    describe,
    keys::RunKey,
    limits::Limits,
    store,
    tasks::TaskQueueRef,
    time::{from_duration, from_timestamp, to_duration, to_timestamp},
    tokens::{TaskToken, decode_event_cursor, encode_event_cursor},
};
use dura_matching::{Polled, TaskKind, TaskQueueKey};
use dura_raft_store::GroupId;
use temporalio_protos::temporal::api::{
    common::v1::{
        ActivityType, Header, Memo, Payloads, Priority, RetryPolicy, SearchAttributes,
        WorkflowExecution, WorkflowType,
    },
    enums::v1::{
        HistoryEventFilterType, QueryRejectCondition, TaskQueueKind, WorkflowExecutionStatus,
    },
    failure::v1::Failure,
    history::v1::History,
    sdk::v1::UserMetadata,
    taskqueue::v1::{PollerInfo, TaskQueue},
    update::v1::{Outcome as UpdateOutcome, UpdateRef},
    workflowservice::v1 as pb,
};
use tokio::time::Instant;

use super::{limits::ActivityReport, queries::QueryRegistry, search_attributes};
use crate::{
    engine::{Engine, QueuedTask, TaskOrigin},
    error::{ApiError, ApiResult},
    metrics,
    namespace::NamespaceRegistry,
    shard::{ReaderKv, ShardCommand, ShardOutcome},
};

/// Temporal answers an empty poll after a minute; SDKs give polls a 70 s deadline.
pub(super) const LONG_POLL: Duration = Duration::from_secs(60);
/// What a long poll keeps back of its caller's gRPC deadline, so its answer arrives in time.
pub(super) const POLL_MARGIN: Duration = Duration::from_millis(500);
/// GetWorkflowExecutionHistory(wait_new_event) returns an empty page after this long.
const HISTORY_LONG_POLL: Duration = Duration::from_secs(20);
/// Update waits answer the stage reached after this long (Temporal's history long poll).
const UPDATE_LONG_POLL: Duration = HISTORY_LONG_POLL;
/// How often a wait on a workflow whose shard this node holds no replica of looks again (it
/// sees none of the shard's changes applied).
const REMOTE_RECHECK: Duration = Duration::from_millis(100);
const DEFAULT_HISTORY_PAGE: usize = 1000;

/// Everything the workflow handlers need.
#[derive(Clone)]
pub struct Workflows {
    pub engine: Engine,
    pub namespaces: NamespaceRegistry,
    pub queries: std::sync::Arc<QueryRegistry>,
    /// `system.enableEagerWorkflowStart`: honour `request_eager_execution`.
    pub eager_workflow_start: bool,
    /// The real server's limits (`limit.*`), checked here or handed to the state machine with
    /// the requests they govern.
    pub limits: Limits,
    /// Cancelled when the node stops: task-queue polls stop waiting and answer empty.
    pub stopping: tokio_util::sync::CancellationToken,
}

/// The start options StartWorkflowExecution and SignalWithStartWorkflowExecution share, under
/// the same field names in two unrelated message types; `start_fields!` moves them out of
/// either, and `Workflows::start_request` validates them in one place.
struct StartFields {
    workflow_id: String,
    workflow_type: Option<WorkflowType>,
    task_queue: Option<TaskQueue>,
    request_id: String,
    identity: String,
    input: Option<Payloads>,
    execution_timeout: Option<prost_types::Duration>,
    run_timeout: Option<prost_types::Duration>,
    task_timeout: Option<prost_types::Duration>,
    retry_policy: Option<RetryPolicy>,
    memo: Option<Memo>,
    search_attributes: Option<SearchAttributes>,
    header: Option<Header>,
    priority: Option<Priority>,
    id_reuse_policy: i32,
    id_conflict_policy: i32,
    start_delay: Option<prost_types::Duration>,
    user_metadata: Option<UserMetadata>,
}

macro_rules! start_fields {
    ($req:ident, header: $header:expr) => {
        StartFields {
            workflow_id: $req.workflow_id,
            workflow_type: $req.workflow_type,
            task_queue: $req.task_queue,
            request_id: $req.request_id,
            identity: $req.identity.clone(),
            input: $req.input,
            execution_timeout: $req.workflow_execution_timeout,
            run_timeout: $req.workflow_run_timeout,
            task_timeout: $req.workflow_task_timeout,
            retry_policy: $req.retry_policy,
            memo: $req.memo,
            search_attributes: $req.search_attributes,
            header: $header,
            priority: $req.priority,
            id_reuse_policy: $req.workflow_id_reuse_policy,
            id_conflict_policy: $req.workflow_id_conflict_policy,
            start_delay: $req.workflow_start_delay,
            user_metadata: $req.user_metadata,
        }
    };
}

/// The start options both start RPCs carry that Dura cannot honour yet, as (field, set).
macro_rules! unsupported_start_options {
    ($req:ident) => {
        [
            ("cron_schedule", !$req.cron_schedule.is_empty()),
            ("links", !$req.links.is_empty()),
            ("versioning_override", $req.versioning_override.is_some()),
        ]
    };
}

/// Answers UNIMPLEMENTED naming the first set field Dura cannot honour yet, rather than start
/// a workflow that silently lacks what the caller asked for.
fn reject_unsupported(rpc: &str, fields: &[(&str, bool)]) -> ApiResult<()> {
    match fields.iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(ApiError::Unimplemented(format!(
            "{rpc}: {field} is not implemented by Dura yet"
        ))),
        None => Ok(()),
    }
}

/// The `*ById` activity RPCs name the activity instead of passing its task token.
pub struct ActivityById {
    pub namespace: String,
    pub workflow_id: String,
    pub run_id: String,
    pub activity_id: String,
}

pub(super) fn required<'a>(value: &'a str, what: &str) -> ApiResult<&'a str> {
    if value.is_empty() {
        return Err(ApiError::InvalidArgument(format!(
            "{what} is not set on request."
        )));
    }
    Ok(value)
}

fn task_queue_name(tq: Option<&TaskQueue>) -> ApiResult<&TaskQueue> {
    match tq {
        Some(tq) if !tq.name.is_empty() => Ok(tq),
        _ => Err(ApiError::InvalidArgument("Missing task queue name.".into())),
    }
}

fn execution(e: Option<&WorkflowExecution>) -> ApiResult<(&str, &str)> {
    let e =
        e.ok_or_else(|| ApiError::InvalidArgument("Execution is not set on request.".into()))?;
    Ok((required(&e.workflow_id, "WorkflowId")?, e.run_id.as_str()))
}

/// The poll deadline: a minute, or less when the caller's gRPC deadline is shorter.
pub(super) fn poll_deadline(grpc_timeout: Option<Duration>, cap: Duration) -> Instant {
    let budget = grpc_timeout
        .map(|t| t.saturating_sub(POLL_MARGIN))
        .unwrap_or(cap)
        .min(cap);
    Instant::now() + budget
}

/// Parses the `grpc-timeout` header ("<digits><unit>").
pub fn grpc_timeout<T>(request: &tonic::Request<T>) -> Option<Duration> {
    let raw = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = raw.split_at(raw.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn is_stale(err: &ApiError) -> bool {
    use dura_history::HistoryError as H;
    matches!(
        err,
        ApiError::History(H::NotFound(_) | H::TaskAlreadyStarted(_) | H::ObsoleteTask(_))
    )
}

impl Workflows {
    pub(super) fn namespace_id(&self, name: &str) -> ApiResult<String> {
        if name.is_empty() {
            return Err(ApiError::InvalidArgument(
                "Namespace not set on request.".into(),
            ));
        }
        self.namespaces.id_of(name)
    }

    fn validate_search_attributes(
        &self,
        namespace: &str,
        attributes: Option<&SearchAttributes>,
    ) -> ApiResult<()> {
        match attributes {
            Some(sa) if !sa.indexed_fields.is_empty() => {
                search_attributes::validate(&self.namespaces.by_name(namespace)?, sa, &self.limits)
            }
            _ => Ok(()),
        }
    }

    /// The queue a poll of `task_queue` polls; `None` for a request the local handler will
    /// refuse anyway.
    pub(super) fn poll_queue(
        &self,
        namespace: &str,
        task_queue: Option<&TaskQueue>,
        kind: TaskKind,
    ) -> Option<TaskQueueKey> {
        let namespace_id = self.namespace_id(namespace).ok()?;
        let name = task_queue.filter(|q| !q.name.is_empty())?.name.clone();
        Some(TaskQueueKey::new(namespace_id, name, kind))
    }

    /// The node a call about `task_queue` must be served by, when it is not this one: the
    /// leader of the queue's partition shard, whose matcher holds its tasks. `None` for a
    /// request the local handler will refuse anyway, or while no other leader is known.
    pub(super) async fn remote_poll_owner(
        &self,
        namespace: &str,
        task_queue: Option<&TaskQueue>,
        kind: TaskKind,
    ) -> Option<u64> {
        let queue = self.poll_queue(namespace, task_queue, kind)?;
        self.engine.remote_partition_leader(&queue).await
    }

    /// The node a query of this workflow must be served by, when it is not this one: the
    /// leader of the partition of the queue its query task would go to (whose matcher its
    /// pollers reach). `None` when the request or the run is invalid (the local handler says
    /// so precisely) or no other leader is known.
    pub(super) async fn remote_query_owner(&self, req: &pb::QueryWorkflowRequest) -> Option<u64> {
        let (workflow_id, run_id) = execution(req.execution.as_ref()).ok()?;
        let namespace_id = self.namespace_id(&req.namespace).ok()?;
        let (_, _, ms) = self.read_run(&namespace_id, workflow_id, run_id).ok()?;
        let (key, _) = self
            .engine
            .workflow_queue(&namespace_id, &ms.current_task_queue());
        self.engine.remote_partition_leader(&key).await
    }

    /// The next task of `key` for a poller, or `None` at the deadline or once the node is
    /// stopping. Only the wait is cut short: a task already taken is recorded started and
    /// handed out, not dropped to wait for its timeout. `NotLeader` when this node does not
    /// (or no longer) lead the queue's partition: the poll belongs to its new leader.
    async fn next_task(
        &self,
        key: &TaskQueueKey,
        identity: &str,
        deadline: Instant,
    ) -> ApiResult<Option<QueuedTask>> {
        let engine = &self.engine;
        let polled = engine
            .matcher()
            .poll_served(key, identity, deadline, || engine.leads_partition(key));
        let task_type = match key.kind {
            TaskKind::Workflow => "workflow",
            TaskKind::Activity => "activity",
        };
        tokio::select! {
            polled = polled => match polled {
                Polled::Task(task) => {
                    metrics::POLL_SUCCESS.with_label_values(&[task_type]).inc();
                    if matches!(task.origin, TaskOrigin::Outbox(_)) {
                        metrics::POLL_SUCCESS_SYNC.with_label_values(&[task_type]).inc();
                    }
                    Ok(Some(task))
                }
                Polled::Deadline => {
                    metrics::POLL_TIMEOUTS.with_label_values(&[task_type]).inc();
                    Ok(None)
                }
                Polled::NotServed => Err(engine.partition_moved(key)),
            },
            () = self.stopping.cancelled() => Ok(None),
        }
    }

    /// Whether the workflow changed before `deadline`; `false` at once when the node stops, so
    /// a long poll answers as when its wait ends (the caller polls again, maybe elsewhere)
    /// instead of holding the stop until the grace period runs out.
    async fn changed_by(
        &self,
        changed: &mut crate::leader::WorkflowWatch,
        deadline: Instant,
    ) -> bool {
        tokio::select! {
            waited = tokio::time::timeout_at(deadline, changed.changed()) => waited.is_ok(),
            () = self.stopping.cancelled() => false,
        }
    }

    /// The shard of the workflow a call names, when it names a valid namespace and a
    /// workflow id (otherwise the handler says what is wrong, wherever it runs).
    pub(super) fn shard_of(&self, namespace: &str, workflow_id: &str) -> Option<GroupId> {
        let namespace_id = self.namespace_id(namespace).ok()?;
        (!workflow_id.is_empty()).then(|| self.engine.shard_for(&namespace_id, workflow_id))
    }

    /// The shard of the run a workflow or activity task token names. Every token RPC asks it
    /// first, so this is also where it learns its namespace (the token's) for its metrics.
    pub(super) fn shard_of_token(&self, token: &[u8]) -> Option<GroupId> {
        match TaskToken::parse(token).ok()? {
            TaskToken::Workflow { run, .. } | TaskToken::Activity { run, .. } => {
                self.namespaces.note_request_namespace_id(&run.namespace_id);
                Some(self.engine.shard_for(&run.namespace_id, &run.workflow_id))
            }
            TaskToken::Query { .. } | TaskToken::QueryOn { .. } => None,
        }
    }

    /// The shard of a schedule (its scheduler workflow's).
    pub(super) fn shard_of_schedule(&self, namespace: &str, schedule_id: &str) -> Option<GroupId> {
        if schedule_id.is_empty() {
            return None;
        }
        self.shard_of(
            namespace,
            &dura_history::schedules::scheduler_workflow_id(schedule_id),
        )
    }

    /// The node waiting for the answer to the query task `token` names, when it is not this one.
    pub(super) fn remote_query_waiter(&self, token: &[u8]) -> Option<u64> {
        match TaskToken::parse(token).ok()? {
            TaskToken::QueryOn { node, .. } if node != self.engine.node_id() => Some(node),
            _ => None,
        }
    }

    /// Brings this node's replica of the workflow's shard up to every acknowledged write (see
    /// `router::read_barrier`) before a read. A request naming no valid namespace or workflow
    /// is left to its handler, which says precisely what is wrong.
    pub(super) async fn fresh_workflow(&self, namespace: &str, workflow_id: &str) -> ApiResult<()> {
        let Ok(namespace_id) = self.namespace_id(namespace) else {
            return Ok(());
        };
        let shard = self.engine.shard_for(&namespace_id, workflow_id);
        // A node holding no replica reads through one that does (`Engine::read_run_anywhere`).
        if workflow_id.is_empty() || !self.engine.holds(shard) {
            return Ok(());
        }
        self.engine.read_barrier(shard).await
    }

    /// Reads a run (the current one when `run_id` is empty) from its shard's applied state,
    /// returning the shard's reader too for the history reads that follow.
    pub(super) fn read_run(
        &self,
        namespace_id: &str,
        workflow_id: &str,
        run_id: &str,
    ) -> ApiResult<(ReaderKv, RunKey, MutableState)> {
        let reader = self
            .engine
            .reader(self.engine.shard_for(namespace_id, workflow_id))?;
        let (run, ms) = store::resolve_run(&reader, namespace_id, workflow_id, run_id)?;
        Ok((reader, run, ms))
    }

    fn run_key(&self, namespace: &str, workflow_id: &str, run_id: &str) -> ApiResult<RunKey> {
        Ok(RunKey::new(
            self.namespace_id(namespace)?,
            workflow_id,
            run_id,
        ))
    }

    fn start_request(
        &self,
        namespace_id: String,
        f: StartFields,
    ) -> ApiResult<StartWorkflowRequest> {
        required(&f.workflow_id, "WorkflowId")?;
        let workflow_type = f
            .workflow_type
            .filter(|t| !t.name.is_empty())
            .ok_or_else(|| {
                ApiError::InvalidArgument("WorkflowType is not set on request.".into())
            })?;
        let task_queue = task_queue_name(f.task_queue.as_ref())?.name.clone();
        Ok(StartWorkflowRequest {
            namespace_id,
            workflow_id: f.workflow_id,
            run_id: uuid::Uuid::new_v4().to_string(),
            request_id: if f.request_id.is_empty() {
                uuid::Uuid::new_v4().to_string()
            } else {
                f.request_id
            },
            workflow_type: workflow_type.name,
            task_queue,
            input: f.input,
            execution_timeout: from_duration(f.execution_timeout.as_ref()),
            run_timeout: from_duration(f.run_timeout.as_ref()),
            task_timeout: from_duration(f.task_timeout.as_ref()),
            retry_policy: f.retry_policy,
            memo: f.memo,
            search_attributes: f.search_attributes,
            header: f.header,
            priority: f.priority,
            identity: f.identity,
            id_reuse_policy: f.id_reuse_policy,
            id_conflict_policy: f.id_conflict_policy,
            start_delay: from_duration(f.start_delay.as_ref()),
            user_metadata: f.user_metadata,
            parent: None,
            eager: false,
            now: self.engine.now(),
        })
    }

    pub async fn start(
        &self,
        req: pb::StartWorkflowExecutionRequest,
    ) -> ApiResult<pb::StartWorkflowExecutionResponse> {
        reject_unsupported(
            "StartWorkflowExecution",
            &[
                &unsupported_start_options!(req)[..],
                &[
                    ("completion_callbacks", !req.completion_callbacks.is_empty()),
                    ("on_conflict_options", req.on_conflict_options.is_some()),
                    ("continued_failure", req.continued_failure.is_some()),
                    (
                        "last_completion_result",
                        req.last_completion_result.is_some(),
                    ),
                ],
            ]
            .concat(),
        )?;
        let ns = self.namespace_id(&req.namespace)?;
        self.validate_search_attributes(&req.namespace, req.search_attributes.as_ref())?;
        self.check_blob(req.input.as_ref())?;
        self.check_memo(req.memo.as_ref())?;
        let eager = req.request_eager_execution && self.eager_workflow_start;
        let mut start = self.start_request(ns, start_fields!(req, header: req.header))?;
        start.eager = eager;
        let run = RunKey::new(start.namespace_id.clone(), &start.workflow_id, "");
        let shard = self
            .engine
            .shard_for(&start.namespace_id, &start.workflow_id);
        match self
            .engine
            .execute(shard, ShardCommand::Start(start))
            .await?
        {
            ShardOutcome::Started { reply, .. } => Ok(pb::StartWorkflowExecutionResponse {
                eager_workflow_task: match reply.eager_task {
                    Some(task) => Some(
                        self.workflow_task_response(
                            &RunKey {
                                run_id: reply.run_id.clone(),
                                ..run
                            },
                            task,
                        )
                        .await?,
                    ),
                    None => None,
                },
                run_id: reply.run_id,
                started: reply.started,
                ..Default::default()
            }),
            other => Err(ApiError::Internal(format!(
                "unexpected outcome of a start: {other:?}"
            ))),
        }
    }

    pub async fn signal_with_start(
        &self,
        req: pb::SignalWithStartWorkflowExecutionRequest,
    ) -> ApiResult<pb::SignalWithStartWorkflowExecutionResponse> {
        reject_unsupported(
            "SignalWithStartWorkflowExecution",
            &unsupported_start_options!(req),
        )?;
        let ns = self.namespace_id(&req.namespace)?;
        required(&req.signal_name, "SignalName")?;
        self.validate_search_attributes(&req.namespace, req.search_attributes.as_ref())?;
        self.check_blob(req.signal_input.as_ref())?;
        self.check_blob(req.input.as_ref())?;
        self.check_memo(req.memo.as_ref())?;
        let signal_header = req.header.clone();
        let start = self.start_request(ns, start_fields!(req, header: req.header))?;
        let signal = SignalRequest {
            signal_name: req.signal_name,
            input: req.signal_input,
            identity: req.identity,
            header: signal_header,
            request_id: start.request_id.clone(),
            now: start.now,
        };
        let shard = self
            .engine
            .shard_for(&start.namespace_id, &start.workflow_id);
        match self
            .engine
            .execute(shard, ShardCommand::SignalWithStart(start, signal))
            .await?
        {
            ShardOutcome::Started { reply, .. } => {
                Ok(pb::SignalWithStartWorkflowExecutionResponse {
                    run_id: reply.run_id,
                    started: reply.started,
                    ..Default::default()
                })
            }
            other => Err(ApiError::Internal(format!(
                "unexpected outcome of a signal-with-start: {other:?}"
            ))),
        }
    }

    pub async fn signal(&self, req: pb::SignalWorkflowExecutionRequest) -> ApiResult<()> {
        let (workflow_id, run_id) = execution(req.workflow_execution.as_ref())?;
        required(&req.signal_name, "SignalName")?;
        self.check_blob(req.input.as_ref())?;
        let run = self.run_key(&req.namespace, workflow_id, run_id)?;
        let request = RunRequest::Signal(SignalRequest {
            signal_name: req.signal_name,
            input: req.input,
            identity: req.identity,
            header: req.header,
            request_id: if req.request_id.is_empty() {
                uuid::Uuid::new_v4().to_string()
            } else {
                req.request_id
            },
            now: self.engine.now(),
        });
        self.engine.execute_run(&run, request).await?;
        Ok(())
    }

    pub async fn terminate(&self, req: pb::TerminateWorkflowExecutionRequest) -> ApiResult<()> {
        let (workflow_id, run_id) = execution(req.workflow_execution.as_ref())?;
        let run = self.run_key(&req.namespace, workflow_id, run_id)?;
        let request = RunRequest::Terminate(TerminateRequest {
            reason: req.reason,
            details: req.details,
            identity: req.identity,
            now: self.engine.now(),
        });
        self.engine.execute_run(&run, request).await?;
        Ok(())
    }

    pub async fn request_cancel(
        &self,
        req: pb::RequestCancelWorkflowExecutionRequest,
    ) -> ApiResult<()> {
        let (workflow_id, run_id) = execution(req.workflow_execution.as_ref())?;
        let run = self.run_key(&req.namespace, workflow_id, run_id)?;
        let request = RunRequest::RequestCancel(RequestCancelRequest {
            reason: req.reason,
            identity: req.identity,
            request_id: if req.request_id.is_empty() {
                uuid::Uuid::new_v4().to_string()
            } else {
                req.request_id
            },
            now: self.engine.now(),
        });
        self.engine.execute_run(&run, request).await?;
        Ok(())
    }

    // ------------------------------------------------------------------ workflow tasks

    pub async fn poll_workflow_task(
        &self,
        req: pb::PollWorkflowTaskQueueRequest,
        grpc_timeout: Option<Duration>,
    ) -> ApiResult<pb::PollWorkflowTaskQueueResponse> {
        let ns = self.namespace_id(&req.namespace)?;
        let tq = task_queue_name(req.task_queue.as_ref())?.clone();
        let sticky = tq.kind == TaskQueueKind::Sticky as i32;
        let poll_queue = TaskQueueRef {
            name: tq.name.clone(),
            sticky,
            normal_name: tq.normal_name.clone(),
        };
        let key = TaskQueueKey {
            namespace_id: ns,
            name: tq.name.clone(),
            kind: TaskKind::Workflow,
        };
        let deadline = poll_deadline(grpc_timeout, LONG_POLL);
        loop {
            let Some(task) = self.next_task(&key, &req.identity, deadline).await? else {
                return Ok(pb::PollWorkflowTaskQueueResponse::default());
            };
            if let TaskOrigin::Query(query_id) = task.origin {
                match self
                    .query_task_response(&task, query_id, &poll_queue)
                    .await?
                {
                    Some(response) => return Ok(response),
                    None => continue, // its caller gave up
                }
            }
            let request = RunRequest::RecordWorkflowTaskStarted(RecordWorkflowTaskStartedRequest {
                scheduled_event_id: task.scheduled_event_id,
                stamp: task.stamp,
                request_id: uuid::Uuid::new_v4().to_string(),
                identity: req.identity.clone(),
                poll_task_queue: poll_queue.clone(),
                now: self.engine.now(),
            });
            match self.record_started(&key, task, request).await? {
                Some((task, RunReply::WorkflowTaskStarted(started))) => {
                    let response = self.workflow_task_response(&task.run, started).await?;
                    task_started("workflow", &response.scheduled_time, &response.started_time);
                    return Ok(response);
                }
                Some(_) => {
                    return Err(ApiError::Internal(
                        "unexpected reply to RecordWorkflowTaskStarted".into(),
                    ));
                }
                None => continue,
            }
        }
    }

    /// Records a task a poller just took as started. The proposal runs detached from the
    /// poll: when the client goes away mid-proposal the handler is dropped, but the task must
    /// not vanish with it — it either ends up started (its start-to-close timeout covers the
    /// missing worker) or, when the proposal fails, back at the front of its queue. A started
    /// or stale task's durable copy (backlog entry, outbox record) is released.
    /// `None`: the task was stale (already started, or no longer wanted); poll again.
    async fn record_started(
        &self,
        key: &TaskQueueKey,
        task: QueuedTask,
        request: RunRequest,
    ) -> ApiResult<Option<(QueuedTask, RunReply)>> {
        let engine = self.engine.clone();
        let key = key.clone();
        tokio::spawn(async move {
            match engine.execute_run(&task.run, request).await {
                Ok(ShardOutcome::Run { reply, .. }) => {
                    engine.release(&key, &task, true);
                    Ok(Some((task, reply)))
                }
                Ok(other) => Err(ApiError::Internal(format!(
                    "unexpected outcome of a run request: {other:?}"
                ))),
                Err(e) if is_stale(&e) => {
                    engine.release(&key, &task, false);
                    Ok(None)
                }
                Err(e) => {
                    engine.matcher().requeue_front(&key, task);
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| ApiError::Internal(format!("record-started task failed: {e}")))?
    }

    async fn workflow_task_response(
        &self,
        run: &RunKey,
        started: WorkflowTaskStartedReply,
    ) -> ApiResult<pb::PollWorkflowTaskQueueResponse> {
        let shard = self.engine.shard_for(&run.namespace_id, &run.workflow_id);
        // The task was recorded started by the shard's leader, which may be another node (and
        // this node, leading the task queue's partition, may hold no replica of the shard).
        let reader = self
            .engine
            .fresh_view(shard, &dura_history::keys::events_prefix(run))
            .await?;
        // The whole history up to the started event travels with the task.
        let first = started.first_event_id();
        let page_size = (started.next_event_id - first).max(1) as usize;
        let page =
            store::read_history(&reader, run, first, started.next_event_id, page_size, false)?;
        let mut events = page.events;
        events.extend(started.transient_events.iter().cloned());
        let token = TaskToken::Workflow {
            run: run.clone(),
            scheduled_event_id: started.scheduled_event_id,
            started_event_id: started.started_event_id,
            attempt: started.attempt,
            stamp: started.stamp,
        };
        Ok(pb::PollWorkflowTaskQueueResponse {
            task_token: token.encode(),
            workflow_execution: Some(WorkflowExecution {
                workflow_id: run.workflow_id.clone(),
                run_id: run.run_id.clone(),
            }),
            workflow_type: Some(WorkflowType {
                name: started.workflow_type.clone(),
            }),
            previous_started_event_id: started.previous_started_event_id,
            started_event_id: started.started_event_id,
            attempt: started.attempt,
            history: Some(History { events }),
            workflow_execution_task_queue: Some(started.task_queue.to_proto()),
            scheduled_time: Some(to_timestamp(started.scheduled_time)),
            started_time: Some(to_timestamp(started.started_time)),
            messages: started.messages,
            ..Default::default()
        })
    }

    fn workflow_token(bytes: &[u8]) -> ApiResult<(RunKey, WorkflowTaskToken)> {
        match TaskToken::parse(bytes)? {
            TaskToken::Workflow {
                run,
                scheduled_event_id,
                started_event_id,
                attempt,
                stamp,
            } => Ok((
                run,
                WorkflowTaskToken {
                    scheduled_event_id,
                    started_event_id,
                    attempt,
                    stamp,
                },
            )),
            _ => Err(ApiError::InvalidArgument(
                "Not a workflow task token.".into(),
            )),
        }
    }

    pub async fn complete_workflow_task(
        &self,
        req: pb::RespondWorkflowTaskCompletedRequest,
    ) -> ApiResult<pb::RespondWorkflowTaskCompletedResponse> {
        let (run, token) = Self::workflow_token(&req.task_token)?;
        let sticky_attributes = req.sticky_attributes.as_ref().and_then(|s| {
            let queue = s.worker_task_queue.as_ref()?;
            (!queue.name.is_empty()).then(|| StickyAttributes {
                worker_task_queue: queue.name.clone(),
                schedule_to_start_timeout: from_duration(s.schedule_to_start_timeout.as_ref()),
            })
        });
        // Commands that set search attributes are checked against the namespace's registry.
        let custom_search_attributes = if req.commands.iter().any(sets_search_attributes) {
            self.namespaces
                .by_name(&req.namespace)?
                .custom_search_attributes
        } else {
            Default::default()
        };
        let request = RunRequest::CompleteWorkflowTask(CompleteWorkflowTaskRequest {
            token,
            namespace: req.namespace.clone(),
            custom_search_attributes,
            commands: req.commands,
            messages: req.messages,
            identity: req.identity,
            sticky_attributes,
            sdk_metadata: req.sdk_metadata,
            metering_metadata: req.metering_metadata,
            // Deprecated by Temporal but still sent by older SDKs; kept for the event.
            #[allow(deprecated)]
            binary_checksum: req.binary_checksum,
            #[allow(deprecated)]
            worker_version: req.worker_version_stamp,
            force_create_new_workflow_task: req.force_create_new_workflow_task,
            return_new_workflow_task: req.return_new_workflow_task,
            new_run_id: uuid::Uuid::new_v4().to_string(),
            now: self.engine.now(),
        });
        let reply = match self.engine.execute_run(&run, request).await? {
            ShardOutcome::Run {
                reply: RunReply::WorkflowTaskCompleted(reply),
                ..
            } => reply,
            _ => {
                return Err(ApiError::Internal(
                    "unexpected reply to RespondWorkflowTaskCompleted".into(),
                ));
            }
        };
        // The completion was turned into a WorkflowTaskFailed that is now committed; the
        // worker still learns why (e.g. `UnhandledCommand`).
        if let Some(err) = reply.task_failed {
            return Err(err.into());
        }
        let workflow_task = match reply.new_workflow_task {
            Some(started) => Some(self.workflow_task_response(&run, started).await?),
            None => None,
        };
        Ok(pb::RespondWorkflowTaskCompletedResponse {
            workflow_task,
            reset_history_event_id: reply.reset_history_event_id,
            ..Default::default()
        })
    }

    pub async fn fail_workflow_task(
        &self,
        req: pb::RespondWorkflowTaskFailedRequest,
    ) -> ApiResult<()> {
        let (run, token) = Self::workflow_token(&req.task_token)?;
        let request = RunRequest::FailWorkflowTask(FailWorkflowTaskRequest {
            token,
            cause: req.cause,
            failure: req.failure,
            identity: req.identity,
            now: self.engine.now(),
        });
        self.engine.execute_run(&run, request).await?;
        Ok(())
    }

    // ------------------------------------------------------------------ updates

    /// UpdateWorkflowExecution: admits the update (once per update id), then waits until it
    /// reaches the requested stage or the long poll ends, answering the stage it reached.
    pub async fn update(
        &self,
        req: pb::UpdateWorkflowExecutionRequest,
        grpc_timeout: Option<Duration>,
    ) -> ApiResult<pb::UpdateWorkflowExecutionResponse> {
        let ns = self.namespace_id(&req.namespace)?;
        let execution = req.workflow_execution.unwrap_or_default();
        required(&execution.workflow_id, "WorkflowId")?;
        let request = req.request.ok_or_else(|| {
            ApiError::InvalidArgument("Update request is not set on request.".into())
        })?;
        if request.input.as_ref().is_none_or(|i| i.name.is_empty()) {
            return Err(ApiError::InvalidArgument(
                "Update name is not set on request.".into(),
            ));
        }
        let update_id = request
            .meta
            .as_ref()
            .map(|m| m.update_id.clone())
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ApiError::InvalidArgument("Update id is not set on request.".into()))?;
        let shard = self.engine.shard_for(&ns, &execution.workflow_id);
        self.engine.read_barrier(shard).await?;
        let (_, run, ms) = self.read_run(&ns, &execution.workflow_id, &execution.run_id)?;
        if !req.first_execution_run_id.is_empty()
            && req.first_execution_run_id != ms.first_execution_run_id
        {
            return Err(ApiError::NotFound(format!(
                "workflow execution not found for workflow ID \"{}\" and first run ID \"{}\"",
                execution.workflow_id, req.first_execution_run_id
            )));
        }
        let admit = RunRequest::AdmitUpdate(AdmitUpdateRequest {
            update_id: update_id.clone(),
            request,
            now: self.engine.now(),
        });
        self.engine.execute_run(&run, admit).await?;
        // The admission applied on the shard's leader, maybe another node: wait for it here.
        self.engine.read_barrier(shard).await?;
        let stage = req.wait_policy.map_or(0, |p| p.lifecycle_stage);
        let (outcome, stage) = self
            .wait_for_update(&run, &update_id, stage, grpc_timeout)
            .await?;
        Ok(pb::UpdateWorkflowExecutionResponse {
            update_ref: Some(UpdateRef {
                workflow_execution: Some(WorkflowExecution {
                    workflow_id: run.workflow_id,
                    run_id: run.run_id,
                }),
                update_id,
            }),
            outcome,
            stage,
            ..Default::default()
        })
    }

    /// PollWorkflowExecutionUpdate: waits for an admitted update like `update` does.
    pub async fn poll_update(
        &self,
        req: pb::PollWorkflowExecutionUpdateRequest,
        grpc_timeout: Option<Duration>,
    ) -> ApiResult<pb::PollWorkflowExecutionUpdateResponse> {
        let ns = self.namespace_id(&req.namespace)?;
        let update_ref = req.update_ref.unwrap_or_default();
        let execution = update_ref.workflow_execution.unwrap_or_default();
        required(&execution.workflow_id, "WorkflowId")?;
        required(&update_ref.update_id, "UpdateId")?;
        let (_, run, _) = self.read_run(&ns, &execution.workflow_id, &execution.run_id)?;
        let stage = req.wait_policy.map_or(0, |p| p.lifecycle_stage);
        let (outcome, stage) = self
            .wait_for_update(&run, &update_ref.update_id, stage, grpc_timeout)
            .await?;
        Ok(pb::PollWorkflowExecutionUpdateResponse {
            outcome,
            stage,
            update_ref: Some(UpdateRef {
                workflow_execution: Some(WorkflowExecution {
                    workflow_id: run.workflow_id,
                    run_id: run.run_id,
                }),
                update_id: update_ref.update_id,
            }),
        })
    }

    /// Waits until the update reaches `stage` (unset: ADMITTED), for at most the long poll.
    /// Answers the outcome (once completed) and the stage reached.
    async fn wait_for_update(
        &self,
        run: &RunKey,
        update_id: &str,
        stage: i32,
        grpc_timeout: Option<Duration>,
    ) -> ApiResult<(Option<UpdateOutcome>, i32)> {
        let deadline = poll_deadline(grpc_timeout, UPDATE_LONG_POLL);
        let mut changed = self
            .engine
            .watch_workflow(&run.namespace_id, &run.workflow_id);
        loop {
            changed.mark_seen();
            let (_, _, ms) = self.read_run(&run.namespace_id, &run.workflow_id, &run.run_id)?;
            let state = update_state(&ms, update_id)?;
            let reached = state.stage();
            if let UpdateState::Completed { outcome } = state {
                return Ok((Some(outcome), reached));
            }
            if reached >= stage.max(1) {
                return Ok((None, reached));
            }
            if !ms.is_running() {
                return Err(ApiError::NotFound(
                    "workflow execution already completed".into(),
                ));
            }
            if !self.changed_by(&mut changed, deadline).await {
                return Ok((None, reached));
            }
        }
    }

    // ------------------------------------------------------------------ queries

    /// The poll response for a query task, like the real matching engine builds it: no
    /// started event, history after the last completed task for the sticky worker, else all.
    async fn query_task_response(
        &self,
        task: &QueuedTask,
        query_id: u64,
        poll_queue: &TaskQueueRef,
    ) -> ApiResult<Option<pb::PollWorkflowTaskQueueResponse>> {
        let Some(query) = self.queries.query(query_id) else {
            return Ok(None);
        };
        let (run, ms) = self
            .engine
            .read_run_anywhere(
                &task.run.namespace_id,
                &task.run.workflow_id,
                &task.run.run_id,
            )
            .await?;
        let reader = self
            .engine
            .fresh_view(task.shard, &dura_history::keys::events_prefix(&run))
            .await?;
        let sticky = poll_queue.sticky
            && ms
                .sticky
                .as_ref()
                .is_some_and(|s| s.name == poll_queue.name);
        let first = if sticky {
            ms.last_completed_wt_started_event_id + 1
        } else {
            1
        };
        let page_size = (ms.next_event_id - first).max(1) as usize;
        let page = store::read_history(&reader, &run, first, ms.next_event_id, page_size, false)?;
        Ok(Some(pb::PollWorkflowTaskQueueResponse {
            task_token: TaskToken::QueryOn {
                node: self.engine.node_id(),
                run: run.clone(),
                query_id,
            }
            .encode(),
            workflow_execution: Some(WorkflowExecution {
                workflow_id: run.workflow_id.clone(),
                run_id: run.run_id.clone(),
            }),
            workflow_type: Some(WorkflowType {
                name: ms.workflow_type.clone(),
            }),
            previous_started_event_id: ms.last_completed_wt_started_event_id,
            started_event_id: 0,
            attempt: 1,
            history: Some(History {
                events: page.events,
            }),
            query: Some(query),
            workflow_execution_task_queue: Some(
                TaskQueueRef::normal(ms.task_queue.clone()).to_proto(),
            ),
            ..Default::default()
        }))
    }

    pub async fn query(
        &self,
        req: pb::QueryWorkflowRequest,
        grpc_timeout: Option<Duration>,
    ) -> ApiResult<pb::QueryWorkflowResponse> {
        let (workflow_id, run_id) = execution(req.execution.as_ref())?;
        let reject_condition = req.query_reject_condition();
        let query = req
            .query
            .filter(|q| !q.query_type.is_empty())
            .ok_or_else(|| ApiError::InvalidArgument("QueryType is not set on request.".into()))?;
        let ns = self.namespace_id(&req.namespace)?;
        let deadline = poll_deadline(grpc_timeout, HISTORY_LONG_POLL);
        let mut changed = self.engine.watch_workflow(&ns, workflow_id);
        // This node leads the query's task queue partition; it may hold no replica of the
        // workflow's shard, and then sees none of its changes applied: it looks again.
        let held = self.engine.holds(self.engine.shard_for(&ns, workflow_id));
        // Like the real server's direct dispatch: only when no workflow task is in flight, so
        // the worker answers from a consistent state. Otherwise wait for the task to finish.
        let (run, ms) = loop {
            changed.mark_seen();
            let (run, ms) = self
                .engine
                .read_run_anywhere(&ns, workflow_id, run_id)
                .await?;
            if ms.workflow_task.is_none() || !ms.is_running() {
                break (run, ms);
            }
            let change = async {
                match held {
                    true => changed.changed().await,
                    false => tokio::time::sleep(REMOTE_RECHECK).await,
                }
            };
            if tokio::time::timeout_at(deadline, change).await.is_err() {
                return Err(ApiError::DeadlineExceeded(
                    "query timed out waiting for the running workflow task".into(),
                ));
            }
        };
        let status = ms.status.to_proto();
        if query_rejected(reject_condition, status) {
            return Ok(pb::QueryWorkflowResponse {
                query_rejected: Some(temporalio_protos::temporal::api::query::v1::QueryRejected {
                    status: status as i32,
                }),
                ..Default::default()
            });
        }
        let task_queue = ms.current_task_queue();
        let (queue, sticky) = self.engine.workflow_queue(&ns, &task_queue);
        let (query_id, answer) = self.queries.register(query);
        let task = QueuedTask {
            shard: self.engine.shard_for(&ns, workflow_id),
            run,
            scheduled_event_id: 0,
            attempt: 0,
            stamp: 0,
            origin: TaskOrigin::Query(query_id),
            normal_queue: sticky.then_some(task_queue.normal_name),
        };
        self.engine.matcher().add(&queue, task);
        let answer = match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(answer)) => answer,
            _ => {
                self.queries.forget(query_id);
                return Err(ApiError::DeadlineExceeded(
                    "query timed out: no worker answered".into(),
                ));
            }
        };
        // QUERY_RESULT_TYPE_ANSWERED = 1; anything else is the workflow's query failure.
        if answer.completed_type == 1 {
            return Ok(pb::QueryWorkflowResponse {
                query_result: answer.query_result,
                ..Default::default()
            });
        }
        Err(ApiError::QueryFailed {
            message: answer.error_message,
            failure: answer.failure.map(Box::new),
        })
    }

    pub fn respond_query(&self, req: pb::RespondQueryTaskCompletedRequest) -> ApiResult<()> {
        match TaskToken::parse(&req.task_token)? {
            TaskToken::Query { query_id, .. } | TaskToken::QueryOn { query_id, .. } => {
                if !self.queries.answer(query_id, req) {
                    return Err(ApiError::NotFound(
                        "query not found or already timed out".into(),
                    ));
                }
                Ok(())
            }
            _ => Err(ApiError::InvalidArgument("Not a query task token.".into())),
        }
    }

    // ------------------------------------------------------------------ activity tasks

    pub async fn poll_activity_task(
        &self,
        req: pb::PollActivityTaskQueueRequest,
        grpc_timeout: Option<Duration>,
    ) -> ApiResult<pb::PollActivityTaskQueueResponse> {
        let ns = self.namespace_id(&req.namespace)?;
        let tq = task_queue_name(req.task_queue.as_ref())?;
        let key = TaskQueueKey {
            namespace_id: ns,
            name: tq.name.clone(),
            kind: TaskKind::Activity,
        };
        let deadline = poll_deadline(grpc_timeout, LONG_POLL);
        loop {
            let Some(task) = self.next_task(&key, &req.identity, deadline).await? else {
                return Ok(pb::PollActivityTaskQueueResponse::default());
            };
            let request = RunRequest::RecordActivityTaskStarted(RecordActivityTaskStartedRequest {
                scheduled_event_id: task.scheduled_event_id,
                attempt: task.attempt,
                request_id: uuid::Uuid::new_v4().to_string(),
                identity: req.identity.clone(),
                now: self.engine.now(),
            });
            match self.record_started(&key, task, request).await? {
                Some((task, RunReply::ActivityTaskStarted(started))) => {
                    let response = activity_task_response(&req.namespace, &task, started);
                    task_started("activity", &response.scheduled_time, &response.started_time);
                    return Ok(response);
                }
                Some(_) => {
                    return Err(ApiError::Internal(
                        "unexpected reply to RecordActivityTaskStarted".into(),
                    ));
                }
                None => continue,
            }
        }
    }

    /// Resolves an activity from a task token or from (namespace, workflow, run, activity id).
    fn activity_target(
        &self,
        token: &[u8],
        by_id: Option<ActivityById>,
    ) -> ApiResult<(RunKey, ActivityRef)> {
        if let Some(a) = by_id {
            required(&a.workflow_id, "WorkflowId")?;
            required(&a.activity_id, "ActivityId")?;
            let run = self.run_key(&a.namespace, &a.workflow_id, &a.run_id)?;
            return Ok((
                run,
                ActivityRef::ById {
                    activity_id: a.activity_id,
                },
            ));
        }
        match TaskToken::parse(token)? {
            TaskToken::Activity {
                run,
                scheduled_event_id,
                attempt,
                ..
            } => Ok((
                run,
                ActivityRef::Token {
                    scheduled_event_id,
                    attempt,
                },
            )),
            _ => Err(ApiError::InvalidArgument(
                "Not an activity task token.".into(),
            )),
        }
    }

    pub async fn complete_activity(
        &self,
        token: &[u8],
        by_id: Option<ActivityById>,
        result: Option<temporalio_protos::temporal::api::common::v1::Payloads>,
        identity: String,
    ) -> ApiResult<()> {
        let (run, activity) = self.activity_target(token, by_id)?;
        let request = match self.completed_activity(result.as_ref()) {
            ActivityReport::Kept => RunRequest::CompleteActivityTask(CompleteActivityTaskRequest {
                activity,
                result,
                identity,
                now: self.engine.now(),
            }),
            ActivityReport::Failed(failure) => self.failing(activity, failure, identity),
        };
        self.engine.execute_run(&run, request).await?;
        Ok(())
    }

    /// The activity fails with `failure`, in place of what its worker reported.
    fn failing(&self, activity: ActivityRef, failure: Failure, identity: String) -> RunRequest {
        RunRequest::FailActivityTask(FailActivityTaskRequest {
            activity,
            failure: Some(failure),
            last_heartbeat_details: None,
            identity,
            now: self.engine.now(),
        })
    }

    pub async fn fail_activity(
        &self,
        token: &[u8],
        by_id: Option<ActivityById>,
        mut failure: Option<Failure>,
        mut last_heartbeat_details: Option<temporalio_protos::temporal::api::common::v1::Payloads>,
        identity: String,
    ) -> ApiResult<Vec<Failure>> {
        let (run, activity) = self.activity_target(token, by_id)?;
        let told = self.failed_activity(&mut failure, &mut last_heartbeat_details);
        let request = RunRequest::FailActivityTask(FailActivityTaskRequest {
            activity,
            failure,
            last_heartbeat_details,
            identity,
            now: self.engine.now(),
        });
        self.engine.execute_run(&run, request).await?;
        Ok(told)
    }

    pub async fn cancel_activity(
        &self,
        token: &[u8],
        by_id: Option<ActivityById>,
        details: Option<temporalio_protos::temporal::api::common::v1::Payloads>,
        identity: String,
    ) -> ApiResult<()> {
        let (run, activity) = self.activity_target(token, by_id)?;
        let request = match self.canceled_activity(details.as_ref()) {
            ActivityReport::Kept => RunRequest::CancelActivityTask(CancelActivityTaskRequest {
                activity,
                details,
                identity,
                now: self.engine.now(),
            }),
            ActivityReport::Failed(failure) => self.failing(activity, failure, identity),
        };
        self.engine.execute_run(&run, request).await?;
        Ok(())
    }

    pub async fn heartbeat(
        &self,
        token: &[u8],
        by_id: Option<ActivityById>,
        details: Option<temporalio_protos::temporal::api::common::v1::Payloads>,
        identity: String,
    ) -> ApiResult<bool> {
        let (run, activity) = self.activity_target(token, by_id)?;
        if let ActivityReport::Failed(failure) = self.heartbeat_details(details.as_ref()) {
            // As the real server: the activity is failed, and its worker told to stop.
            self.engine
                .execute_run(&run, self.failing(activity, failure, identity))
                .await?;
            return Ok(true);
        }
        let request = RunRequest::HeartbeatActivityTask(HeartbeatActivityTaskRequest {
            activity,
            details,
            identity,
            now: self.engine.now(),
        });
        match self.engine.execute_run(&run, request).await? {
            ShardOutcome::Run {
                reply: RunReply::Heartbeat(reply),
                ..
            } => Ok(reply.cancel_requested),
            _ => Err(ApiError::Internal(
                "unexpected reply to RecordActivityTaskHeartbeat".into(),
            )),
        }
    }

    // ------------------------------------------------------------------ reads

    pub async fn history(
        &self,
        req: pb::GetWorkflowExecutionHistoryRequest,
        grpc_timeout: Option<Duration>,
    ) -> ApiResult<pb::GetWorkflowExecutionHistoryResponse> {
        let (workflow_id, run_id) = execution(req.execution.as_ref())?;
        let ns = self.namespace_id(&req.namespace)?;
        let close_only = req.history_event_filter_type == HistoryEventFilterType::CloseEvent as i32;
        let page_size = if req.maximum_page_size > 0 {
            req.maximum_page_size as usize
        } else {
            DEFAULT_HISTORY_PAGE
        };
        let from = decode_event_cursor(&req.next_page_token)?.unwrap_or(1);
        let deadline = poll_deadline(grpc_timeout, HISTORY_LONG_POLL);
        let mut changed = self.engine.watch_workflow(&ns, workflow_id);
        loop {
            // Marked seen before reading, so a change after the read always wakes the wait.
            changed.mark_seen();
            let (reader, run, ms) = self.read_run(&ns, workflow_id, run_id)?;
            let closed = !ms.is_running();
            if close_only && closed {
                let last = store::read_history(
                    &reader,
                    &run,
                    ms.next_event_id - 1,
                    ms.next_event_id,
                    1,
                    false,
                )?;
                return Ok(history_response(last.events, None));
            }
            if !close_only && from < ms.next_event_id {
                let page =
                    store::read_history(&reader, &run, from, ms.next_event_id, page_size, false)?;
                // While the run is open, a caller following it resumes after the last event.
                let next = page
                    .next_cursor
                    .or((req.wait_new_event && !closed).then_some(ms.next_event_id));
                return Ok(history_response(page.events, next));
            }
            if closed || !req.wait_new_event {
                return Ok(history_response(Vec::new(), None));
            }
            if !self.changed_by(&mut changed, deadline).await {
                // Nothing new in time: an empty page and a token to continue from.
                return Ok(history_response(Vec::new(), Some(from)));
            }
        }
    }

    pub fn history_reverse(
        &self,
        req: pb::GetWorkflowExecutionHistoryReverseRequest,
    ) -> ApiResult<pb::GetWorkflowExecutionHistoryReverseResponse> {
        let (workflow_id, run_id) = execution(req.execution.as_ref())?;
        let ns = self.namespace_id(&req.namespace)?;
        let (reader, run, ms) = self.read_run(&ns, workflow_id, run_id)?;
        let page_size = if req.maximum_page_size > 0 {
            req.maximum_page_size as usize
        } else {
            DEFAULT_HISTORY_PAGE
        };
        let to = decode_event_cursor(&req.next_page_token)?.unwrap_or(ms.next_event_id);
        let page = store::read_history(&reader, &run, 1, to, page_size, true)?;
        Ok(pb::GetWorkflowExecutionHistoryReverseResponse {
            history: Some(History {
                events: page.events,
            }),
            next_page_token: page
                .next_cursor
                .map(encode_event_cursor)
                .unwrap_or_default(),
        })
    }

    pub fn describe(
        &self,
        req: pb::DescribeWorkflowExecutionRequest,
    ) -> ApiResult<pb::DescribeWorkflowExecutionResponse> {
        let (workflow_id, run_id) = execution(req.execution.as_ref())?;
        let ns = self.namespace_id(&req.namespace)?;
        let (reader, run, ms) = self.read_run(&ns, workflow_id, run_id)?;
        let mut d = describe(&ms);
        // Like the real server: the static summary/details live on the start event only.
        d.execution_config.user_metadata = store::read_start_event(&reader, &run)?.user_metadata;
        Ok(pb::DescribeWorkflowExecutionResponse {
            execution_config: Some(d.execution_config),
            workflow_execution_info: Some(d.workflow_execution_info),
            pending_activities: d.pending_activities,
            pending_workflow_task: d.pending_workflow_task,
            pending_children: d.pending_children,
            ..Default::default()
        })
    }

    pub fn describe_task_queue(
        &self,
        req: pb::DescribeTaskQueueRequest,
    ) -> ApiResult<pb::DescribeTaskQueueResponse> {
        let ns = self.namespace_id(&req.namespace)?;
        let tq = task_queue_name(req.task_queue.as_ref())?;
        // TASK_QUEUE_TYPE_ACTIVITY = 2; anything else describes the workflow queue.
        let kind = if req.task_queue_type == 2 {
            TaskKind::Activity
        } else {
            TaskKind::Workflow
        };
        let key = TaskQueueKey {
            namespace_id: ns,
            name: tq.name.clone(),
            kind,
        };
        let description = self.engine.matcher().describe(&key);
        Ok(pb::DescribeTaskQueueResponse {
            pollers: description
                .pollers
                .into_iter()
                .map(|p| PollerInfo {
                    identity: p.identity,
                    last_access_time: Some(to_timestamp(
                        p.last_access_time
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_nanos() as i64)
                            .unwrap_or(0),
                    )),
                    rate_per_second: 100_000.0,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    /// Unloads the worker's sticky queue so its pending tasks move to the normal queue now
    /// instead of after the sticky schedule-to-start timeout.
    pub fn shutdown_worker(&self, req: pb::ShutdownWorkerRequest) -> ApiResult<()> {
        if req.sticky_task_queue.is_empty() {
            return Ok(());
        }
        let ns = self.namespace_id(&req.namespace)?;
        let sticky = TaskQueueKey {
            namespace_id: ns.clone(),
            name: req.sticky_task_queue,
            kind: TaskKind::Workflow,
        };
        for task in self.engine.matcher().unload(&sticky) {
            self.engine.to_normal_queue(&sticky, task);
        }
        Ok(())
    }
}

fn sets_search_attributes(
    command: &temporalio_protos::temporal::api::command::v1::Command,
) -> bool {
    use temporalio_protos::temporal::api::command::v1::command::Attributes as A;
    match &command.attributes {
        Some(A::UpsertWorkflowSearchAttributesCommandAttributes(a)) => {
            a.search_attributes.is_some()
        }
        Some(A::StartChildWorkflowExecutionCommandAttributes(a)) => a.search_attributes.is_some(),
        Some(A::ContinueAsNewWorkflowExecutionCommandAttributes(a)) => {
            a.search_attributes.is_some()
        }
        _ => false,
    }
}

fn history_response(
    events: Vec<temporalio_protos::temporal::api::history::v1::HistoryEvent>,
    next: Option<i64>,
) -> pb::GetWorkflowExecutionHistoryResponse {
    pb::GetWorkflowExecutionHistoryResponse {
        history: Some(History { events }),
        next_page_token: next.map(encode_event_cursor).unwrap_or_default(),
        ..Default::default()
    }
}

fn activity_task_response(
    namespace: &str,
    task: &QueuedTask,
    started: ActivityTaskStartedReply,
) -> pb::PollActivityTaskQueueResponse {
    let token = TaskToken::Activity {
        run: task.run.clone(),
        scheduled_event_id: started.scheduled_event_id,
        attempt: started.attempt,
        activity_id: started.activity_id.clone(),
    };
    pb::PollActivityTaskQueueResponse {
        task_token: token.encode(),
        workflow_namespace: namespace.to_string(),
        workflow_type: Some(WorkflowType {
            name: started.workflow_type,
        }),
        workflow_execution: Some(WorkflowExecution {
            workflow_id: started.workflow_id,
            run_id: started.run_id,
        }),
        activity_type: Some(ActivityType {
            name: started.activity_type,
        }),
        activity_id: started.activity_id,
        header: started.header,
        input: started.input,
        heartbeat_details: started.heartbeat_details,
        scheduled_time: Some(to_timestamp(started.scheduled_time)),
        current_attempt_scheduled_time: Some(to_timestamp(started.current_attempt_scheduled_time)),
        started_time: Some(to_timestamp(started.started_time)),
        attempt: started.attempt,
        // Stated even when zero (unlimited), as the real server does: the TypeScript SDK
        // rejects an activity task without a schedule-to-close timeout.
        schedule_to_close_timeout: Some(to_duration(started.schedule_to_close_timeout)),
        start_to_close_timeout: Some(to_duration(started.start_to_close_timeout)),
        heartbeat_timeout: Some(to_duration(started.heartbeat_timeout)),
        retry_policy: Some(started.retry_policy),
        priority: started.priority,
        ..Default::default()
    }
}

/// Whether a query of a run in `status` is refused under the caller's reject condition, as the
/// real server decides it: only a closed run is ever refused.
fn query_rejected(condition: QueryRejectCondition, status: WorkflowExecutionStatus) -> bool {
    if status == WorkflowExecutionStatus::Running {
        return false;
    }
    match condition {
        QueryRejectCondition::Unspecified | QueryRejectCondition::None => false,
        QueryRejectCondition::NotOpen => true,
        QueryRejectCondition::NotCompletedCleanly => status != WorkflowExecutionStatus::Completed,
    }
}

/// `task_schedule_to_start_latency` of a task handed to its poller.
fn task_started(
    task_type: &str,
    scheduled: &Option<prost_types::Timestamp>,
    started: &Option<prost_types::Timestamp>,
) {
    if let (Some(scheduled), Some(started)) = (scheduled, started) {
        let waited = from_timestamp(started) - from_timestamp(scheduled);
        metrics::TASK_SCHEDULE_TO_START
            .with_label_values(&[task_type])
            .observe(waited.max(0) as f64 / 1e9);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_reject_conditions_follow_the_enum() {
        use QueryRejectCondition as C;
        use WorkflowExecutionStatus as S;
        for condition in [C::Unspecified, C::None, C::NotOpen, C::NotCompletedCleanly] {
            assert!(!query_rejected(condition, S::Running), "{condition:?}");
        }
        // NONE (what the TypeScript client sends by default) never refuses a closed run.
        assert!(!query_rejected(C::None, S::Completed));
        assert!(!query_rejected(C::Unspecified, S::Failed));
        assert!(query_rejected(C::NotOpen, S::Completed));
        assert!(!query_rejected(C::NotCompletedCleanly, S::Completed));
        assert!(query_rejected(C::NotCompletedCleanly, S::Failed));
        assert!(query_rejected(C::NotCompletedCleanly, S::Terminated));
    }
}
