//! The per-run state every replica keeps in lockstep: everything needed to decide the next
//! transition without reading history. One `MutableState` is stored per run (bincode; proto
//! fields go through [`crate::pb`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use temporalio_protos::temporal::api::{
    common::v1::{ActivityType, Header, Memo, Payloads, Priority, RetryPolicy, SearchAttributes},
    enums::v1::WorkflowExecutionStatus,
    failure::v1::Failure,
    history::v1::HistoryEvent,
};

use crate::{tasks::TaskQueueRef, time::Nanos};

/// How a run ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkflowStatus {
    Running,
    Completed,
    Failed,
    Canceled,
    Terminated,
    ContinuedAsNew,
    TimedOut,
}

impl WorkflowStatus {
    pub fn to_proto(self) -> WorkflowExecutionStatus {
        match self {
            WorkflowStatus::Running => WorkflowExecutionStatus::Running,
            WorkflowStatus::Completed => WorkflowExecutionStatus::Completed,
            WorkflowStatus::Failed => WorkflowExecutionStatus::Failed,
            WorkflowStatus::Canceled => WorkflowExecutionStatus::Canceled,
            WorkflowStatus::Terminated => WorkflowExecutionStatus::Terminated,
            WorkflowStatus::ContinuedAsNew => WorkflowExecutionStatus::ContinuedAsNew,
            WorkflowStatus::TimedOut => WorkflowExecutionStatus::TimedOut,
        }
    }

    /// Statuses `ALLOW_DUPLICATE_FAILED_ONLY` lets a new run replace.
    pub fn is_failed_like(self) -> bool {
        matches!(
            self,
            WorkflowStatus::Failed
                | WorkflowStatus::Canceled
                | WorkflowStatus::Terminated
                | WorkflowStatus::TimedOut
        )
    }
}

/// The worker's sticky queue, set by the last successful workflow task completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StickyQueue {
    pub name: String,
    pub schedule_to_start_timeout: Nanos,
}

/// The one workflow task a run may have (scheduled, then started).
///
/// A *transient* task (attempt > 1, after a failure or timeout) has no events in history:
/// `scheduled_event_id`/`started_event_id` are the ids its events will get if it completes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowTaskInfo {
    pub scheduled_event_id: i64,
    /// 0 until started.
    pub started_event_id: i64,
    pub attempt: i32,
    /// Unique per scheduled task instance; tokens and timers carry it to detect staleness.
    pub stamp: i32,
    pub task_queue: TaskQueueRef,
    pub start_to_close_timeout: Nanos,
    pub scheduled_time: Nanos,
    pub started_time: Nanos,
    pub request_id: String,
    pub identity: String,
    pub history_size_bytes: i64,
    /// Scheduled only to carry updates (`api::updates`): written like a transient task, and
    /// dropped without a trace if the worker only rejects them.
    pub speculative: bool,
}

impl WorkflowTaskInfo {
    pub fn is_started(&self) -> bool {
        self.started_event_id > 0
    }

    /// No Scheduled/Started events in history yet (a retry attempt or a speculative task).
    pub fn is_transient(&self) -> bool {
        self.attempt > 1 || self.speculative
    }
}

/// A scheduled activity that has not closed yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityInfo {
    pub scheduled_event_id: i64,
    pub activity_id: String,
    #[serde(with = "crate::pb::msg")]
    pub activity_type: ActivityType,
    pub task_queue: String,
    #[serde(with = "crate::pb::opt")]
    pub header: Option<Header>,
    #[serde(with = "crate::pb::opt")]
    pub input: Option<Payloads>,
    pub schedule_to_close_timeout: Nanos,
    pub schedule_to_start_timeout: Nanos,
    pub start_to_close_timeout: Nanos,
    pub heartbeat_timeout: Nanos,
    /// Always set: the server defaults a missing policy.
    #[serde(with = "crate::pb::msg")]
    pub retry_policy: RetryPolicy,
    #[serde(with = "crate::pb::opt")]
    pub priority: Option<Priority>,
    /// Time of the ActivityTaskScheduled event.
    pub first_scheduled_time: Nanos,
    /// When the current attempt became (or becomes, during a retry backoff) dispatchable.
    pub scheduled_time: Nanos,
    pub attempt: i32,
    /// The current attempt waits for its retry timer; it has not been dispatched yet.
    pub retry_backoff: bool,
    /// 0 when the current attempt is not started.
    pub started_time: Nanos,
    pub started_request_id: String,
    pub started_identity: String,
    #[serde(with = "crate::pb::opt")]
    pub last_failure: Option<Failure>,
    pub last_worker_identity: String,
    #[serde(with = "crate::pb::opt")]
    pub heartbeat_details: Option<Payloads>,
    pub last_heartbeat_time: Nanos,
    pub cancel_requested: bool,
    pub cancel_requested_event_id: i64,
    pub last_attempt_complete_time: Nanos,
}

impl ActivityInfo {
    pub fn is_started(&self) -> bool {
        self.started_time > 0
    }

    /// Deadline after which no further attempt may start (schedule-to-close), if any.
    pub fn expiration_time(&self) -> Option<Nanos> {
        (self.schedule_to_close_timeout > 0).then(|| {
            self.first_scheduled_time
                .saturating_add(self.schedule_to_close_timeout)
        })
    }
}

/// A started user timer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerInfo {
    pub timer_id: String,
    pub started_event_id: i64,
    pub expiry_time: Nanos,
}

/// The parent of a child workflow; every run of the child's chain carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentInfo {
    /// The parent's namespace name (history events carry names as well as ids).
    pub namespace: String,
    pub namespace_id: String,
    pub workflow_id: String,
    pub run_id: String,
    /// The parent's StartChildWorkflowExecutionInitiated event.
    pub initiated_event_id: i64,
    /// The first workflow of the parent chain (the parent itself when it has no parent).
    pub root_workflow_id: String,
    pub root_run_id: String,
}

/// A child workflow this run initiated that has not closed (as far as the parent knows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildInfo {
    pub initiated_event_id: i64,
    /// The WorkflowTaskCompleted event of the task whose command initiated the child.
    pub workflow_task_completed_event_id: i64,
    pub namespace: String,
    pub namespace_id: String,
    pub workflow_id: String,
    pub workflow_type: String,
    /// `ParentClosePolicy` as i32 (defaulted to TERMINATE).
    pub parent_close_policy: i32,
    /// Empty until the child is started.
    pub run_id: String,
    /// 0 until ChildWorkflowExecutionStarted has an id (it may wait in the buffer).
    pub started_event_id: i64,
}

impl ChildInfo {
    pub fn is_started(&self) -> bool {
        !self.run_id.is_empty()
    }
}

/// Everything Dura knows about one workflow run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MutableState {
    pub namespace_id: String,
    pub workflow_id: String,
    pub run_id: String,
    pub first_execution_run_id: String,
    pub workflow_type: String,
    /// The workflow's normal task queue.
    pub task_queue: String,
    pub start_request_id: String,
    pub start_time: Nanos,
    /// start_time + first workflow task backoff.
    pub execution_time: Nanos,
    pub close_time: Nanos,
    pub status: WorkflowStatus,
    pub execution_timeout: Nanos,
    pub run_timeout: Nanos,
    pub default_workflow_task_timeout: Nanos,
    /// Absolute deadlines (0 = none).
    pub execution_expiration_time: Nanos,
    pub run_expiration_time: Nanos,
    #[serde(with = "crate::pb::opt")]
    pub retry_policy: Option<RetryPolicy>,
    pub attempt: i32,
    #[serde(with = "crate::pb::opt")]
    pub memo: Option<Memo>,
    #[serde(with = "crate::pb::opt")]
    pub search_attributes: Option<SearchAttributes>,
    #[serde(with = "crate::pb::opt")]
    pub priority: Option<Priority>,

    /// Id the next appended event gets; history holds events `1..next_event_id`.
    pub next_event_id: i64,
    /// Sum of the encoded sizes of all events in history.
    pub history_size_bytes: i64,
    /// `previous_started_event_id` of the next poll response.
    pub last_completed_wt_started_event_id: i64,
    /// The first workflow task waits for `workflow_start_delay`.
    pub start_delay_pending: bool,

    pub workflow_task: Option<WorkflowTaskInfo>,
    /// Attempt the next workflow task gets: > 1 after consecutive failures/timeouts.
    pub workflow_task_attempt: i32,
    /// Source of `WorkflowTaskInfo::stamp`; bumped for every scheduled workflow task.
    pub workflow_task_stamp: i32,
    pub sticky: Option<StickyQueue>,

    /// Keyed by scheduled event id.
    pub activities: BTreeMap<i64, ActivityInfo>,
    /// Keyed by timer id.
    pub timers: BTreeMap<String, TimerInfo>,
    /// Child workflows not closed yet, keyed by initiated event id.
    pub children: BTreeMap<i64, ChildInfo>,
    /// Set when this run is (a continuation of) a child workflow.
    pub parent: Option<ParentInfo>,
    /// Updates by id, from admission to outcome.
    pub updates: BTreeMap<String, crate::api::updates::UpdateState>,
    /// Events that arrived while a workflow task was started; they get ids when flushed after
    /// that task completes (or fails).
    #[serde(with = "crate::pb::vec")]
    pub buffered_events: Vec<HistoryEvent>,

    /// Request ids of applied signals, so client retries are idempotent.
    pub signal_request_ids: BTreeSet<String>,
    pub cancel_requested: bool,
    pub cancel_request_id: String,
    /// Id of the event that closed the run (0 while running).
    pub completion_event_id: i64,

    // Version 2 of the encoding: these two stay last (see `store`'s `Persisted` impl).
    /// Signals to other workflows not yet delivered, keyed by initiated event id.
    pub signals_external: BTreeMap<i64, ExternalTarget>,
    /// Cancellation requests to other workflows not yet delivered, keyed by initiated event id.
    pub cancels_external: BTreeMap<i64, ExternalTarget>,
}

/// The workflow a SignalExternal or RequestCancelExternal command names, as its outcome
/// event repeats it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalTarget {
    pub namespace: String,
    pub namespace_id: String,
    pub workflow_id: String,
    /// Empty: whatever run is current when it is delivered.
    pub run_id: String,
    pub control: String,
    /// The target must be a child of this run.
    pub child_workflow_only: bool,
}

impl MutableState {
    pub fn is_running(&self) -> bool {
        self.status == WorkflowStatus::Running
    }

    pub fn has_started_workflow_task(&self) -> bool {
        self.workflow_task
            .as_ref()
            .is_some_and(|wt| wt.is_started())
    }

    pub fn activity_by_id(&self, activity_id: &str) -> Option<&ActivityInfo> {
        self.activities
            .values()
            .find(|a| a.activity_id == activity_id)
    }

    /// The queue the next workflow task goes to.
    pub fn current_task_queue(&self) -> TaskQueueRef {
        match &self.sticky {
            Some(s) => TaskQueueRef {
                name: s.name.clone(),
                sticky: true,
                normal_name: self.task_queue.clone(),
            },
            None => TaskQueueRef::normal(self.task_queue.clone()),
        }
    }

    /// Whether the server owes the run work that a time-skipping clock must wait for before
    /// it jumps (Temporal's Java test server locks time skipping for the same things): a
    /// workflow task scheduled or running, an activity scheduled or running (not one waiting
    /// out its retry backoff), a child whose start is in flight, a signal or cancellation
    /// request to another workflow not yet delivered.
    pub fn owes_work(&self) -> bool {
        self.is_running()
            && (self.workflow_task.is_some()
                || self.activities.values().any(|a| !a.retry_backoff)
                || self.children.values().any(|c| !c.is_started())
                || !self.signals_external.is_empty()
                || !self.cancels_external.is_empty())
    }

    /// Number of events in history.
    pub fn history_length(&self) -> i64 {
        self.next_event_id - 1
    }
}
