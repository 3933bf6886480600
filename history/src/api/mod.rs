//! Request handlers, one module per request family. Every handler is a pure function of the
//! mutable state and the request (which carries `now` and any generated ids).

pub mod activity;
pub mod children;
pub(crate) mod commands;
pub mod lifecycle;
pub mod signal;
pub mod start;
pub mod timer;
pub mod updates;
pub mod workflow_task;

use serde::{Deserialize, Serialize};

use crate::{error::Result, mutable_state::MutableState, transition::Transition};

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
}

fn map<R>(t: Result<Transition<R>>, f: impl FnOnce(R) -> RunReply) -> Result<Transition<RunReply>> {
    t.map(|t| Transition {
        events: t.events,
        tasks: t.tasks,
        reply: f(t.reply),
        continuation: t.continuation,
    })
}

/// Applies a run-scoped request. On error `ms` is unchanged.
pub fn apply(ms: &mut MutableState, req: RunRequest) -> Result<Transition<RunReply>> {
    use RunRequest as R;
    match req {
        R::RecordWorkflowTaskStarted(r) => map(
            workflow_task::record_workflow_task_started(ms, r),
            RunReply::WorkflowTaskStarted,
        ),
        R::CompleteWorkflowTask(r) => map(
            workflow_task::complete_workflow_task(ms, r),
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
    }
}
