//! The outbox tasks that act on another workflow: work one shard's leader does in another
//! shard (or another workflow of the same shard) on behalf of a committed transition.
//!
//! - `StartChild`: start the child the parent's initiated event describes, then report
//!   `ChildStarted` (or `ChildStartFailed`) to the parent; that apply removes the record.
//! - `NotifyParent`: report a closed child's outcome to its parent (`ChildClosed`).
//! - `ParentClosePolicy`: terminate or cancel a closed parent's child.
//! - `SignalExternal` / `CancelExternal`: deliver a workflow's signal or cancellation request
//!   to its target, then report the outcome to the caller (`ExternalReported`), which removes
//!   the record.
//!
//! Each is retried while proposals fail (the outbox record is its only trigger) and is idempotent:
//! the child start and the deliveries reuse a request id derived from the initiation, and the
//! caller ignores reports about what it no longer waits for. A report the target refuses as stale
//! (closed parent, child already gone) ends the task; the record is then acknowledged.

use std::time::Duration;

use dura_history::{
    HistoryError, RunRequest, Task,
    api::{
        children::{
            ChildClosedRequest, ChildStartFailedRequest, ChildStartedRequest,
            outcome_of_close_event,
        },
        external::{
            Caller, CancelFromWorkflowRequest, ExternalKind, ExternalOutcome,
            ExternalReportRequest, SignalFromWorkflowRequest, delivery_request_id,
        },
        lifecycle::{RequestCancelRequest, TerminateRequest},
        signal::SignalRequest,
        start::StartWorkflowRequest,
    },
    keys::RunKey,
    mutable_state::ParentInfo,
    outbox::{OutboxEntry, OutboxRecord},
    store,
    tasks::ParentClosePolicyTask,
    time::from_duration,
};
use temporalio_protos::temporal::api::{
    enums::v1::{ParentClosePolicy, SignalExternalWorkflowExecutionFailedCause},
    history::v1::{HistoryEvent, history_event::Attributes},
};

use crate::{
    engine::Engine,
    error::{ApiError, ApiResult},
    leader::Fence,
    shard::{ReaderKv, ShardCommand, ShardOutcome},
};

const RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// Carries out one child-workflow outbox record of `shard`, then acknowledges it.
pub async fn run(engine: Engine, fence: Fence, record: OutboxRecord) {
    let Some(entry) = OutboxEntry::of(&record.run, &record.task) else {
        return;
    };
    loop {
        let attempt = match &record.task {
            Task::StartChild { initiated_event_id } => {
                start_child(&engine, fence, &record.run, *initiated_event_id).await
            }
            Task::NotifyParent {
                completion_event_id,
            } => notify_parent(&engine, fence, &record.run, *completion_event_id).await,
            Task::ParentClosePolicy(task) => parent_close_policy(&engine, fence, task).await,
            Task::SignalExternal { initiated_event_id }
            | Task::CancelExternal { initiated_event_id } => {
                let kind = match record.task {
                    Task::SignalExternal { .. } => ExternalKind::Signal,
                    _ => ExternalKind::Cancel,
                };
                deliver_external(&engine, fence, &record.run, kind, *initiated_event_id).await
            }
            _ => Ok(()),
        };
        let workflow_id = &record.run.workflow_id;
        match Verdict::of(&attempt, || engine.is_current(fence)) {
            Verdict::Done => break,
            Verdict::Unwanted => {
                tracing::debug!(%workflow_id, error = ?attempt, "child workflow task no longer wanted");
                break;
            }
            Verdict::Refused => {
                tracing::error!(%workflow_id, error = ?attempt, "child workflow task refused; dropped");
                break;
            }
            Verdict::Deposed => return,
            Verdict::Retry => {
                tracing::debug!(%workflow_id, error = ?attempt, "child workflow task not done yet; retrying");
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
        }
    }
    engine.ack_outbox_later(fence.shard, entry);
}

/// What one attempt's outcome means for the outbox record.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Carried out: acknowledge the record.
    Done,
    /// The target does not (or no longer) want this report, and repeating it would get the
    /// same answer: acknowledge.
    Unwanted,
    /// The target refused it for another reason, final too: acknowledge, loudly.
    Refused,
    /// This leadership ended: leave the record to the next leader, which carries it out from
    /// state.
    Deposed,
    /// Not yet (the child closed before its start was recorded in the parent), or the proposal
    /// itself failed (no leader, storage): the record is the only trigger, so try again.
    Retry,
}

impl Verdict {
    fn of(attempt: &ApiResult<()>, still_leading: impl FnOnce() -> bool) -> Self {
        match attempt {
            Ok(()) => Verdict::Done,
            Err(ApiError::History(HistoryError::FailedPrecondition(_))) => Verdict::Retry,
            Err(ApiError::History(
                HistoryError::NotFound(_) | HistoryError::WorkflowAlreadyStarted { .. },
            )) => Verdict::Unwanted,
            Err(ApiError::History(_)) => Verdict::Refused,
            Err(ApiError::NotLeader { .. }) if !still_leading() => Verdict::Deposed,
            Err(_) => Verdict::Retry,
        }
    }
}

fn read_event(reader: &ReaderKv, run: &RunKey, event_id: i64) -> ApiResult<HistoryEvent> {
    store::read_history(reader, run, event_id, event_id + 1, 1, false)?
        .events
        .pop()
        .ok_or_else(|| {
            ApiError::Internal(format!("event {event_id} of run {} missing", run.run_id))
        })
}

fn read_run(engine: &Engine, run: &RunKey) -> ApiResult<(ReaderKv, dura_history::MutableState)> {
    let reader = engine.reader(engine.shard_for(&run.namespace_id, &run.workflow_id))?;
    let ms = store::read_run(&reader, run)?
        .ok_or_else(|| HistoryError::NotFound(format!("run {} not found", run.run_id)))?;
    Ok((reader, ms))
}

async fn start_child(
    engine: &Engine,
    fence: Fence,
    parent: &RunKey,
    initiated_event_id: i64,
) -> ApiResult<()> {
    let (reader, ms) = read_run(engine, parent)?;
    if ms
        .children
        .get(&initiated_event_id)
        .is_none_or(|c| c.is_started())
    {
        return Ok(());
    }
    let Some(Attributes::StartChildWorkflowExecutionInitiatedEventAttributes(a)) =
        read_event(&reader, parent, initiated_event_id)?.attributes
    else {
        return Err(ApiError::Internal(format!(
            "event {initiated_event_id} does not initiate a child"
        )));
    };
    let (root_workflow_id, root_run_id) = match &ms.parent {
        Some(p) => (p.root_workflow_id.clone(), p.root_run_id.clone()),
        None => (parent.workflow_id.clone(), parent.run_id.clone()),
    };
    let now = engine.now();
    #[allow(deprecated)] // the real server still fills the initiated event's namespace
    let namespace = a.namespace.clone();
    let start = StartWorkflowRequest {
        namespace_id: a.namespace_id.clone(),
        workflow_id: a.workflow_id.clone(),
        run_id: uuid::Uuid::new_v4().to_string(),
        // The same for every attempt, so a start retried after a crash finds its own run.
        request_id: format!("{}:{initiated_event_id}", parent.run_id),
        workflow_type: a.workflow_type.map(|t| t.name).unwrap_or_default(),
        task_queue: a.task_queue.map(|q| q.name).unwrap_or_default(),
        input: a.input,
        execution_timeout: from_duration(a.workflow_execution_timeout.as_ref()),
        run_timeout: from_duration(a.workflow_run_timeout.as_ref()),
        task_timeout: from_duration(a.workflow_task_timeout.as_ref()),
        retry_policy: a.retry_policy,
        memo: a.memo,
        search_attributes: a.search_attributes,
        header: a.header.clone(),
        priority: a.priority,
        identity: String::new(),
        id_reuse_policy: a.workflow_id_reuse_policy,
        id_conflict_policy: 0,
        start_delay: 0,
        user_metadata: None,
        parent: Some(ParentInfo {
            namespace,
            namespace_id: parent.namespace_id.clone(),
            workflow_id: parent.workflow_id.clone(),
            run_id: parent.run_id.clone(),
            initiated_event_id,
            root_workflow_id,
            root_run_id,
        }),
        eager: false,
        now,
    };
    let child_shard = engine.shard_for(&a.namespace_id, &a.workflow_id);
    let report = match engine
        .execute_as(fence, child_shard, ShardCommand::Start(start))
        .await
    {
        Ok(ShardOutcome::Started { reply, .. }) => RunRequest::ChildStarted(ChildStartedRequest {
            initiated_event_id,
            run_id: reply.run_id,
            header: a.header,
            now,
        }),
        Err(ApiError::History(HistoryError::WorkflowAlreadyStarted { .. })) => {
            RunRequest::ChildStartFailed(ChildStartFailedRequest {
                initiated_event_id,
                now,
            })
        }
        Ok(other) => {
            return Err(ApiError::Internal(format!(
                "unexpected outcome of a child start: {other:?}"
            )));
        }
        Err(e) => return Err(e),
    };
    engine
        .execute_run_as(fence, parent, report)
        .await
        .map(|_| ())
}

async fn notify_parent(
    engine: &Engine,
    fence: Fence,
    child: &RunKey,
    completion_event_id: i64,
) -> ApiResult<()> {
    let (reader, ms) = read_run(engine, child)?;
    let Some(parent) = ms.parent else {
        return Ok(());
    };
    let event = read_event(&reader, child, completion_event_id)?;
    let Some(outcome) = event.attributes.as_ref().and_then(outcome_of_close_event) else {
        return Err(ApiError::Internal(format!(
            "event {completion_event_id} does not close run {}",
            child.run_id
        )));
    };
    let parent_run = RunKey::new(&parent.namespace_id, &parent.workflow_id, &parent.run_id);
    let report = RunRequest::ChildClosed(ChildClosedRequest {
        initiated_event_id: parent.initiated_event_id,
        run_id: child.run_id.clone(),
        outcome,
        now: engine.now(),
    });
    engine
        .execute_run_as(fence, &parent_run, report)
        .await
        .map(|_| ())
}

/// Like the real server, the policy reaches the child's chain as it is now (it may have
/// continued as new), but never an unrelated later workflow with the same id.
async fn parent_close_policy(
    engine: &Engine,
    fence: Fence,
    task: &ParentClosePolicyTask,
) -> ApiResult<()> {
    // The child's shard, which this node may hold no replica of.
    let (run, ms) = engine
        .read_run_anywhere(&task.namespace_id, &task.workflow_id, "")
        .await?;
    if ms.first_execution_run_id != task.run_id || !ms.is_running() {
        return Ok(());
    }
    let now = engine.now();
    let request = if task.policy == ParentClosePolicy::Terminate as i32 {
        RunRequest::Terminate(TerminateRequest {
            reason: "by parent close policy".into(),
            details: None,
            identity: dura_history::events::HISTORY_SERVICE_IDENTITY.into(),
            now,
        })
    } else {
        RunRequest::RequestCancel(RequestCancelRequest {
            reason: String::new(),
            identity: dura_history::events::HISTORY_SERVICE_IDENTITY.into(),
            request_id: uuid::Uuid::new_v4().to_string(),
            now,
        })
    };
    engine
        .execute_run_as(fence, &run, request)
        .await
        .map(|_| ())
}

/// Delivers the signal or cancellation request the caller's event `initiated_event_id`
/// initiated, then reports the outcome to the caller (temporalio/temporal
/// `transferQueueActiveTaskExecutor.processSignalExecution`/`processCancelExecution`).
async fn deliver_external(
    engine: &Engine,
    fence: Fence,
    caller: &RunKey,
    kind: ExternalKind,
    initiated_event_id: i64,
) -> ApiResult<()> {
    let (reader, ms) = read_run(engine, caller)?;
    let pending = match kind {
        ExternalKind::Signal => ms.signals_external.get(&initiated_event_id),
        ExternalKind::Cancel => ms.cancels_external.get(&initiated_event_id),
    };
    // Reported already, or the caller closed: the real server drops the delivery then.
    let Some(target) = pending.filter(|_| ms.is_running()).cloned() else {
        return Ok(());
    };
    let now = engine.now();
    let from = Caller {
        workflow_id: caller.workflow_id.clone(),
        run_id: caller.run_id.clone(),
        initiated_event_id,
        child_workflow_only: target.child_workflow_only,
    };
    let request_id = delivery_request_id(&caller.run_id, kind, initiated_event_id);
    let delivery = match (
        kind,
        read_event(&reader, caller, initiated_event_id)?.attributes,
    ) {
        (
            ExternalKind::Signal,
            Some(Attributes::SignalExternalWorkflowExecutionInitiatedEventAttributes(a)),
        ) => RunRequest::SignalFromWorkflow(SignalFromWorkflowRequest {
            signal: SignalRequest {
                signal_name: a.signal_name,
                input: a.input,
                identity: dura_history::events::HISTORY_SERVICE_IDENTITY.into(),
                header: a.header,
                request_id,
                now,
            },
            caller: from,
        }),
        (
            ExternalKind::Cancel,
            Some(Attributes::RequestCancelExternalWorkflowExecutionInitiatedEventAttributes(a)),
        ) => RunRequest::CancelFromWorkflow(CancelFromWorkflowRequest {
            cancel: RequestCancelRequest {
                reason: a.reason,
                identity: dura_history::events::HISTORY_SERVICE_IDENTITY.into(),
                request_id,
                now,
            },
            caller: from,
        }),
        _ => {
            return Err(ApiError::Internal(format!(
                "event {initiated_event_id} does not initiate a {kind:?} of another workflow"
            )));
        }
    };
    // A workflow is never its own external target, whatever run the command names.
    let itself =
        target.namespace_id == caller.namespace_id && target.workflow_id == caller.workflow_id;
    let outcome = if itself {
        not_found()
    } else {
        let target_run = RunKey::new(&target.namespace_id, &target.workflow_id, &target.run_id);
        match engine.execute_run_as(fence, &target_run, delivery).await {
            Ok(_) => ExternalOutcome::Delivered,
            // No such run, closed (for a signal), or not the caller's child.
            Err(ApiError::History(HistoryError::NotFound(_))) => not_found(),
            Err(ApiError::History(HistoryError::InvalidArgument(_)))
                if kind == ExternalKind::Signal =>
            {
                ExternalOutcome::Failed {
                    cause: SignalExternalWorkflowExecutionFailedCause::SignalCountLimitExceeded
                        as i32,
                }
            }
            Err(e) => return Err(e),
        }
    };
    let report = RunRequest::ExternalReported(ExternalReportRequest {
        kind,
        initiated_event_id,
        outcome,
        now: engine.now(),
    });
    engine
        .execute_run_as(fence, caller, report)
        .await
        .map(|_| ())
}

/// `EXTERNAL_WORKFLOW_EXECUTION_NOT_FOUND`, the same number for signals and cancels.
fn not_found() -> ExternalOutcome {
    ExternalOutcome::Failed {
        cause: SignalExternalWorkflowExecutionFailedCause::ExternalWorkflowExecutionNotFound as i32,
    }
}

#[cfg(test)]
mod tests {
    use dura_raft_store::GroupId;

    use super::*;

    fn verdict(attempt: ApiResult<()>, still_leading: bool) -> Verdict {
        Verdict::of(&attempt, || still_leading)
    }

    fn history(e: HistoryError) -> ApiResult<()> {
        Err(ApiError::History(e))
    }

    #[test]
    fn carried_out_and_unwanted_reports_are_acknowledged() {
        assert_eq!(verdict(Ok(()), true), Verdict::Done);
        let gone = history(HistoryError::NotFound(
            "workflow execution already completed".into(),
        ));
        assert_eq!(verdict(gone, true), Verdict::Unwanted);
        let started = history(HistoryError::WorkflowAlreadyStarted {
            message: "already started".into(),
            start_request_id: "r".into(),
            run_id: "run".into(),
        });
        assert_eq!(verdict(started, true), Verdict::Unwanted);
    }

    #[test]
    fn other_verdicts_of_the_target_are_final() {
        for refusal in [
            HistoryError::InvalidArgument("bad".into()),
            HistoryError::Internal("broken".into()),
            HistoryError::Unimplemented("no".into()),
            HistoryError::ObsoleteTask("stale".into()),
        ] {
            assert_eq!(verdict(history(refusal), true), Verdict::Refused);
        }
    }

    #[test]
    fn an_early_report_and_a_failed_proposal_are_retried() {
        let early = history(HistoryError::FailedPrecondition(
            "child start not recorded".into(),
        ));
        assert_eq!(verdict(early, true), Verdict::Retry);
        let failed = Err(ApiError::Unavailable("no quorum".into()));
        assert_eq!(verdict(failed, true), Verdict::Retry);
        let deadline = Err(ApiError::DeadlineExceeded("slow".into()));
        assert_eq!(verdict(deadline, true), Verdict::Retry);
    }

    #[test]
    fn a_refused_proposal_is_left_to_the_next_leader_only_once_deposed() {
        let not_leader = || {
            Err(ApiError::NotLeader {
                group: GroupId(2),
                leader: Some(3),
            })
        };
        assert_eq!(verdict(not_leader(), false), Verdict::Deposed);
        // The target shard's leader moved, not ours: the report still has to be made.
        assert_eq!(verdict(not_leader(), true), Verdict::Retry);
    }
}
