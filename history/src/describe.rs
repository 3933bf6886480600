//! Read-only views derived from mutable state: DescribeWorkflowExecution and the list of
//! tasks a (new) leader must re-arm.

use serde::{Deserialize, Serialize};
use temporalio_protos::temporal::api::{
    common::v1::{WorkflowExecution, WorkflowType},
    enums::v1::{PendingActivityState, PendingWorkflowTaskState},
    workflow::v1::{
        PendingActivityInfo, PendingChildExecutionInfo, PendingWorkflowTaskInfo,
        WorkflowExecutionConfig, WorkflowExecutionInfo,
    },
};

use crate::{
    mutable_state::MutableState,
    tasks::{Task, TaskQueueRef, TimerKind, TimerTask},
    time::{opt_duration, to_duration, to_timestamp},
    transition::{activity_tasks, workflow_task_tasks},
};

/// Every task the run still wants: dispatches of unstarted workflow/activity tasks and all
/// armed timers. A leader rebuilds its outbox and timer index from this after a restart or
/// election; re-dispatching an already dispatched task is harmless (start is idempotent, a
/// second poller gets `TaskAlreadyStarted`).
pub fn pending_tasks(ms: &MutableState) -> Vec<Task> {
    if !ms.is_running() {
        return Vec::new();
    }
    let mut out = workflow_task_tasks(ms);
    for id in ms.activities.keys() {
        out.extend(activity_tasks(ms, *id));
    }
    for t in ms.timers.values() {
        out.push(Task::Timer(TimerTask {
            fire_at: t.expiry_time,
            kind: TimerKind::User {
                timer_id: t.timer_id.clone(),
                started_event_id: t.started_event_id,
            },
        }));
    }
    if ms.start_delay_pending {
        out.push(Task::Timer(TimerTask {
            fire_at: ms.execution_time,
            kind: TimerKind::WorkflowStartDelay,
        }));
    }
    if ms.run_expiration_time > 0 {
        out.push(Task::Timer(TimerTask {
            fire_at: ms.run_expiration_time,
            kind: TimerKind::WorkflowRunTimeout,
        }));
    }
    if ms.execution_expiration_time > 0 && ms.execution_expiration_time != ms.run_expiration_time {
        out.push(Task::Timer(TimerTask {
            fire_at: ms.execution_expiration_time,
            kind: TimerKind::WorkflowExecutionTimeout,
        }));
    }
    out
}

/// The parts of a DescribeWorkflowExecutionResponse that come from the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Description {
    #[serde(with = "crate::pb::msg")]
    pub execution_config: WorkflowExecutionConfig,
    #[serde(with = "crate::pb::msg")]
    pub workflow_execution_info: WorkflowExecutionInfo,
    #[serde(with = "crate::pb::vec")]
    pub pending_activities: Vec<PendingActivityInfo>,
    #[serde(with = "crate::pb::opt")]
    pub pending_workflow_task: Option<PendingWorkflowTaskInfo>,
    #[serde(with = "crate::pb::vec")]
    pub pending_children: Vec<PendingChildExecutionInfo>,
}

pub fn describe(ms: &MutableState) -> Description {
    let execution_info = WorkflowExecutionInfo {
        execution: Some(WorkflowExecution {
            workflow_id: ms.workflow_id.clone(),
            run_id: ms.run_id.clone(),
        }),
        r#type: Some(WorkflowType {
            name: ms.workflow_type.clone(),
        }),
        start_time: Some(to_timestamp(ms.start_time)),
        close_time: (!ms.is_running()).then(|| to_timestamp(ms.close_time)),
        status: ms.status.to_proto() as i32,
        history_length: ms.history_length(),
        execution_time: Some(to_timestamp(ms.execution_time)),
        // Present even when empty, as the real server answers.
        memo: Some(ms.memo.clone().unwrap_or_default()),
        search_attributes: Some(ms.search_attributes.clone().unwrap_or_default()),
        task_queue: ms.task_queue.clone(),
        history_size_bytes: ms.history_size_bytes,
        execution_duration: (!ms.is_running())
            .then(|| to_duration(ms.close_time.saturating_sub(ms.execution_time).max(0))),
        first_run_id: ms.first_execution_run_id.clone(),
        priority: ms.priority.clone(),
        parent_namespace_id: ms
            .parent
            .as_ref()
            .map(|p| p.namespace_id.clone())
            .unwrap_or_default(),
        parent_execution: ms.parent.as_ref().map(|p| WorkflowExecution {
            workflow_id: p.workflow_id.clone(),
            run_id: p.run_id.clone(),
        }),
        // A run started by no parent is its own root.
        root_execution: Some(match &ms.parent {
            Some(p) => WorkflowExecution {
                workflow_id: p.root_workflow_id.clone(),
                run_id: p.root_run_id.clone(),
            },
            None => WorkflowExecution {
                workflow_id: ms.workflow_id.clone(),
                run_id: ms.run_id.clone(),
            },
        }),
        ..Default::default()
    };
    let pending_children = ms
        .children
        .values()
        .map(|c| PendingChildExecutionInfo {
            workflow_id: c.workflow_id.clone(),
            run_id: c.run_id.clone(),
            workflow_type_name: c.workflow_type.clone(),
            initiated_id: c.initiated_event_id,
            parent_close_policy: c.parent_close_policy,
        })
        .collect();
    let pending_activities = ms
        .activities
        .values()
        .map(|ai| {
            let state = if ai.cancel_requested {
                PendingActivityState::CancelRequested
            } else if ai.is_started() {
                PendingActivityState::Started
            } else {
                PendingActivityState::Scheduled
            };
            PendingActivityInfo {
                activity_id: ai.activity_id.clone(),
                activity_type: Some(ai.activity_type.clone()),
                state: state as i32,
                heartbeat_details: ai.heartbeat_details.clone(),
                last_heartbeat_time: (ai.last_heartbeat_time > 0)
                    .then(|| to_timestamp(ai.last_heartbeat_time)),
                last_started_time: ai.is_started().then(|| to_timestamp(ai.started_time)),
                attempt: ai.attempt,
                maximum_attempts: ai.retry_policy.maximum_attempts,
                scheduled_time: Some(to_timestamp(ai.scheduled_time)),
                expiration_time: ai.expiration_time().map(to_timestamp),
                last_failure: ai.last_failure.clone(),
                last_worker_identity: ai.last_worker_identity.clone(),
                last_attempt_complete_time: (ai.last_attempt_complete_time > 0)
                    .then(|| to_timestamp(ai.last_attempt_complete_time)),
                next_attempt_schedule_time: ai
                    .retry_backoff
                    .then(|| to_timestamp(ai.scheduled_time)),
                priority: ai.priority.clone(),
                ..Default::default()
            }
        })
        .collect();
    let pending_workflow_task = ms.workflow_task.as_ref().map(|wt| PendingWorkflowTaskInfo {
        state: if wt.is_started() {
            PendingWorkflowTaskState::Started as i32
        } else {
            PendingWorkflowTaskState::Scheduled as i32
        },
        scheduled_time: Some(to_timestamp(wt.scheduled_time)),
        original_scheduled_time: Some(to_timestamp(wt.scheduled_time)),
        started_time: wt.is_started().then(|| to_timestamp(wt.started_time)),
        attempt: wt.attempt,
    });
    Description {
        execution_config: WorkflowExecutionConfig {
            task_queue: Some(TaskQueueRef::normal(ms.task_queue.clone()).to_proto()),
            workflow_execution_timeout: opt_duration(ms.execution_timeout),
            workflow_run_timeout: opt_duration(ms.run_timeout),
            default_workflow_task_timeout: opt_duration(ms.default_workflow_task_timeout),
            user_metadata: None,
        },
        workflow_execution_info: execution_info,
        pending_activities,
        pending_workflow_task,
        pending_children,
    }
}
