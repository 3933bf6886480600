//! Request handlers, one module per request family. Every handler is a pure function of the
//! mutable state and the request (which carries `now` and any generated ids).

pub mod activity;
pub mod children;
mod command_limits;
pub(crate) mod commands;
pub mod external;
pub mod lifecycle;
pub mod signal;
pub mod start;
pub mod timer;
pub mod updates;
pub mod workflow_task;

use serde::{Deserialize, Serialize};
use temporalio_protos::temporal::api::enums::v1::EventType;

use crate::{
    error::Result,
    limits::{Limit, Limits},
    mutable_state::MutableState,
    transition::Transition,
};

/// Every request addressed to one existing run, for callers that log requests as one type.
/// Starts are separate ([`start::start_workflow`]) because they decide between runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RunRequest {
    RecordWorkflowTaskStarted(workflow_task::RecordWorkflowTaskStartedRequest),
    CompleteWorkflowTask(workflow_task::CompleteWorkflowTaskRequest),
    FailWorkflowTask(workflow_task::FailWorkflowTaskRequest),
    RecordActivityTaskStarted(activity::RecordActivityTaskStartedRequest),
    CompleteActivityTask(activity::CompleteActivityTaskRequest),
    FailActivityTask(activity::FailActivityTaskRequest),
    CancelActivityTask(activity::CancelActivityTaskRequest),
    HeartbeatActivityTask(activity::HeartbeatActivityTaskRequest),
    Signal(signal::SignalRequest),
    Terminate(lifecycle::TerminateRequest),
    RequestCancel(lifecycle::RequestCancelRequest),
    FireTimer(timer::FireTimerRequest),
    ChildStarted(children::ChildStartedRequest),
    ChildStartFailed(children::ChildStartFailedRequest),
    ChildClosed(children::ChildClosedRequest),
    AdmitUpdate(updates::AdmitUpdateRequest),
    // Requests of the external-workflow commands: written only in log entries of version 3
    // (`node::shard::entry`), so they stay last.
    SignalFromWorkflow(external::SignalFromWorkflowRequest),
    CancelFromWorkflow(external::CancelFromWorkflowRequest),
    ExternalReported(external::ExternalReportRequest),
}

/// The reply matching a [`RunRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RunReply {
    WorkflowTaskStarted(workflow_task::WorkflowTaskStartedReply),
    WorkflowTaskCompleted(workflow_task::CompleteWorkflowTaskReply),
    ActivityTaskStarted(activity::ActivityTaskStartedReply),
    Heartbeat(activity::HeartbeatReply),
    Update(updates::UpdateState),
    Empty,
    /// The request was refused, yet its transition must be committed (the run was terminated
    /// in its place): the caller is answered with this error.
    Refused(crate::HistoryError),
}

fn map<R>(t: Result<Transition<R>>, f: impl FnOnce(R) -> RunReply) -> Result<Transition<RunReply>> {
    t.map(|t| Transition {
        events: t.events,
        tasks: t.tasks,
        reply: f(t.reply),
        continuation: t.continuation,
    })
}

impl RunRequest {
    /// The time the request happens at (its proposer's clock).
    fn now(&self) -> crate::time::Nanos {
        use RunRequest as R;
        match self {
            R::RecordWorkflowTaskStarted(r) => r.now,
            R::CompleteWorkflowTask(r) => r.now,
            R::FailWorkflowTask(r) => r.now,
            R::RecordActivityTaskStarted(r) => r.now,
            R::CompleteActivityTask(r) => r.now,
            R::FailActivityTask(r) => r.now,
            R::CancelActivityTask(r) => r.now,
            R::HeartbeatActivityTask(r) => r.now,
            R::Signal(r) => r.now,
            R::Terminate(r) => r.now,
            R::RequestCancel(r) => r.now,
            R::FireTimer(r) => r.now,
            R::ChildStarted(r) => r.now,
            R::ChildStartFailed(r) => r.now,
            R::ChildClosed(r) => r.now,
            R::AdmitUpdate(r) => r.now,
            R::SignalFromWorkflow(r) => r.signal.now,
            R::CancelFromWorkflow(r) => r.cancel.now,
            R::ExternalReported(r) => r.now,
        }
    }
}

/// Why the real server terminates a run whose history grew too big (`common/util.go`).
const HISTORY_SIZE_EXCEEDED: &str = "Workflow history size exceeds limit.";
const HISTORY_COUNT_EXCEEDED: &str = "Workflow history count exceeds limit.";

/// Applies a run-scoped request, holding the run to `limits`. On error `ms` is unchanged.
///
/// Like the real server before it saves any update of a running workflow
/// (`workflow/context.go`, `enforceHistorySizeCheck`/`enforceHistoryCountCheck`), a run whose
/// history is over the size or count limit is terminated instead, the request's own changes
/// dropped, and the caller refused (`RunReply::Refused`). Both limits look at the history as
/// the real server has it at that point: its size as last saved, its events as numbered so
/// far, which includes the events of this request only up to a workflow task it scheduled
/// (the real server numbers events when it schedules a task, others when it saves).
pub fn apply(
    ms: &mut MutableState,
    req: RunRequest,
    limits: &Limits,
) -> Result<Transition<RunReply>> {
    let now = req.now();
    let checked = ms.is_running() && held_to_history_limits(&req);
    if checked && limits.exceeded(Limit::HistorySize, ms.history_size_bytes) {
        return terminate_over_limit(ms, now, HISTORY_SIZE_EXCEEDED);
    }
    if checked && limits.exceeded(Limit::HistoryCount, ms.history_length()) {
        return terminate_over_limit(ms, now, HISTORY_COUNT_EXCEEDED);
    }
    let before = (checked && limits.get(Limit::HistoryCount).is_some()).then(|| ms.clone());
    let applied = dispatch(ms, req, limits)?;
    let numbered = applied
        .events
        .iter()
        .rev()
        .find(|e| e.event_type() == EventType::WorkflowTaskScheduled)
        .map(|e| e.event_id);
    match (before, numbered) {
        (Some(before), Some(numbered))
            if ms.is_running() && limits.exceeded(Limit::HistoryCount, numbered) =>
        {
            *ms = before;
            terminate_over_limit(ms, now, HISTORY_COUNT_EXCEEDED)
        }
        _ => Ok(applied),
    }
}

/// Every request but a poll's Record*Started, which must hand out its task or refuse it: the
/// task's completion meets the limit instead.
fn held_to_history_limits(req: &RunRequest) -> bool {
    !matches!(
        req,
        RunRequest::RecordWorkflowTaskStarted(_) | RunRequest::RecordActivityTaskStarted(_)
    )
}

fn terminate_over_limit(
    ms: &mut MutableState,
    now: crate::time::Nanos,
    reason: &str,
) -> Result<Transition<RunReply>> {
    let terminated = lifecycle::terminate_workflow(
        ms,
        lifecycle::TerminateRequest {
            reason: reason.to_string(),
            details: None,
            identity: crate::events::HISTORY_SERVICE_IDENTITY.to_string(),
            now,
        },
    )?;
    Ok(Transition {
        events: terminated.events,
        tasks: terminated.tasks,
        reply: RunReply::Refused(crate::HistoryError::InvalidArgument(reason.to_string())),
        continuation: terminated.continuation,
    })
}

fn dispatch(
    ms: &mut MutableState,
    req: RunRequest,
    limits: &Limits,
) -> Result<Transition<RunReply>> {
    use RunRequest as R;
    match req {
        R::RecordWorkflowTaskStarted(r) => map(
            workflow_task::record_workflow_task_started(ms, r, limits),
            RunReply::WorkflowTaskStarted,
        ),
        R::CompleteWorkflowTask(r) => map(
            workflow_task::complete_workflow_task(ms, r, limits),
            RunReply::WorkflowTaskCompleted,
        ),
        R::FailWorkflowTask(r) => map(workflow_task::fail_workflow_task(ms, r), |_| {
            RunReply::Empty
        }),
        R::RecordActivityTaskStarted(r) => map(
            activity::record_activity_task_started(ms, r),
            RunReply::ActivityTaskStarted,
        ),
        R::CompleteActivityTask(r) => {
            map(activity::complete_activity_task(ms, r), |_| RunReply::Empty)
        }
        R::FailActivityTask(r) => map(activity::fail_activity_task(ms, r), |_| RunReply::Empty),
        R::CancelActivityTask(r) => map(activity::cancel_activity_task(ms, r), |_| RunReply::Empty),
        R::HeartbeatActivityTask(r) => map(
            activity::heartbeat_activity_task(ms, r),
            RunReply::Heartbeat,
        ),
        R::Signal(r) => map(signal::signal_workflow(ms, r), |_| RunReply::Empty),
        R::Terminate(r) => map(lifecycle::terminate_workflow(ms, r), |_| RunReply::Empty),
        R::RequestCancel(r) => map(lifecycle::request_cancel_workflow(ms, r), |_| {
            RunReply::Empty
        }),
        R::FireTimer(r) => map(timer::fire_timer(ms, r), |_| RunReply::Empty),
        R::ChildStarted(r) => map(children::child_started(ms, r), |_| RunReply::Empty),
        R::ChildStartFailed(r) => map(children::child_start_failed(ms, r), |_| RunReply::Empty),
        R::ChildClosed(r) => map(children::child_closed(ms, r), |_| RunReply::Empty),
        R::AdmitUpdate(r) => map(updates::admit_update(ms, r), RunReply::Update),
        R::SignalFromWorkflow(r) => map(signal::signal_from_workflow(ms, r), |_| RunReply::Empty),
        R::CancelFromWorkflow(r) => {
            map(lifecycle::cancel_from_workflow(ms, r), |_| RunReply::Empty)
        }
        R::ExternalReported(r) => map(external::external_reported(ms, r), |_| RunReply::Empty),
    }
}
