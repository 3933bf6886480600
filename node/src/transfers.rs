//! The child-workflow tasks of the outbox: work one shard's leader does in another shard (or
//! another workflow of the same shard) on behalf of a committed transition.
//!
//! - `StartChild`: start the child the parent's initiated event describes, then report
//!   `ChildStarted` (or `ChildStartFailed`) to the parent; that apply removes the record.
//! - `NotifyParent`: report a closed child's outcome to its parent (`ChildClosed`).
//! - `ParentClosePolicy`: terminate or cancel a closed parent's child.
//!
//! Each is retried while proposals fail (the outbox record is its only trigger) and is idempotent:
//! the child start reuses a request id derived from the initiation, and the parent ignores
//! reports about children it no longer waits for. A report the target refuses as stale
//! (closed parent, child already gone) ends the task; the record is then acknowledged.

use std::time::Duration;

use dura_history::{
    HistoryError, RunRequest, Task,
    api::{
        children::{
            ChildClosedRequest, ChildStartFailedRequest, ChildStartedRequest,
            outcome_of_close_event,
        },
        lifecycle::{RequestCancelRequest, TerminateRequest},
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
    enums::v1::ParentClosePolicy,
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
