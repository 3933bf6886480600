//! Side effects a transition asks for. The caller (the shard leader) dispatches them: workflow
//! and activity tasks go to matching, timers go to the timer wheel and come back as
//! `FireTimer`, child-workflow tasks become requests to the child's or the parent's shard.
//! Everything but timers passes through the shard's outbox (`crate::outbox`). Each task names the exact instance it was made for (event id + attempt/stamp),
//! so a task that outlived its purpose is recognised as stale and ignored on the way back.

use serde::{Deserialize, Serialize};
use temporalio_protos::temporal::api::{enums::v1::TaskQueueKind, taskqueue::v1::TaskQueue};

use crate::time::Nanos;

/// A task queue as the state machine routes to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskQueueRef {
    pub name: String,
    /// True for a worker's sticky queue; `normal_name` is then the workflow's normal queue.
    pub sticky: bool,
    pub normal_name: String,
}

impl TaskQueueRef {
    pub fn normal(name: impl Into<String>) -> Self {
        TaskQueueRef {
            name: name.into(),
            sticky: false,
            normal_name: String::new(),
        }
    }

    pub fn to_proto(&self) -> TaskQueue {
        TaskQueue {
            name: self.name.clone(),
            kind: if self.sticky {
                TaskQueueKind::Sticky as i32
            } else {
                TaskQueueKind::Normal as i32
            },
            normal_name: self.normal_name.clone(),
        }
    }
}

/// Something the caller must do after committing a transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Task {
    /// Offer a workflow task to matching; the poller answers with `RecordWorkflowTaskStarted`.
    WorkflowTask(WorkflowTaskDispatch),
    /// Offer an activity task to matching; the poller answers with `RecordActivityTaskStarted`.
    ActivityTask(ActivityTaskDispatch),
    /// Feed `FireTimer` back at (or after) `fire_at`.
    Timer(TimerTask),
    /// Start the child workflow this run's event `initiated_event_id` initiated, then tell this
    /// run (`ChildStarted` / `ChildStartFailed`).
    StartChild { initiated_event_id: i64 },
    /// This child run closed (event `completion_event_id`): tell the parent (`ChildClosed`).
    NotifyParent { completion_event_id: i64 },
    /// This run closed: carry out a started child's parent close policy.
    ParentClosePolicy(ParentClosePolicyTask),
    /// Deliver the signal this run's event `initiated_event_id` initiated, then tell this run
    /// (`ExternalReported`).
    SignalExternal { initiated_event_id: i64 },
    /// Deliver the cancellation request this run's event `initiated_event_id` initiated, then
    /// tell this run (`ExternalReported`).
    CancelExternal { initiated_event_id: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentClosePolicyTask {
    pub initiated_event_id: i64,
    pub namespace_id: String,
    pub workflow_id: String,
    /// The child run the parent started; the policy reaches the chain it began.
    pub run_id: String,
    /// `ParentClosePolicy` as i32: TERMINATE or REQUEST_CANCEL.
    pub policy: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowTaskDispatch {
    pub task_queue: TaskQueueRef,
    pub scheduled_event_id: i64,
    pub attempt: i32,
    pub stamp: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityTaskDispatch {
    pub task_queue: TaskQueueRef,
    pub scheduled_event_id: i64,
    pub attempt: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerTask {
    pub fire_at: Nanos,
    pub kind: TimerKind,
}

/// Which activity timeout a timer enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ActivityTimeoutKind {
    ScheduleToStart,
    StartToClose,
    ScheduleToClose,
    Heartbeat,
}

/// Which workflow task timeout a timer enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WorkflowTaskTimeoutKind {
    /// Only armed for sticky queues: the sticky worker did not pick the task up in time.
    ScheduleToStart,
    StartToClose,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimerKind {
    /// A workflow timer (`StartTimer` command).
    User {
        timer_id: String,
        started_event_id: i64,
    },
    ActivityTimeout {
        scheduled_event_id: i64,
        attempt: i32,
        timeout: ActivityTimeoutKind,
    },
    /// The backoff of an activity retry elapsed: dispatch the next attempt.
    ActivityRetry {
        scheduled_event_id: i64,
        attempt: i32,
    },
    WorkflowTaskTimeout {
        scheduled_event_id: i64,
        attempt: i32,
        stamp: i32,
        timeout: WorkflowTaskTimeoutKind,
    },
    WorkflowRunTimeout,
    WorkflowExecutionTimeout,
    /// `workflow_start_delay` elapsed: schedule the first workflow task.
    WorkflowStartDelay,
}
