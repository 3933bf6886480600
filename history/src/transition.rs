//! The transaction every handler runs in: a private copy of the mutable state plus the events
//! and tasks produced so far. Only a handler that returns `Ok` commits its copy, which is what
//! makes a refused request change nothing.

use serde::{Deserialize, Serialize};
use temporalio_protos::temporal::api::{
    command::v1::ContinueAsNewWorkflowExecutionCommandAttributes,
    enums::v1::WorkflowTaskFailedCause,
    failure::v1::Failure,
    history::v1::{
        HistoryEvent, WorkflowTaskFailedEventAttributes, WorkflowTaskScheduledEventAttributes,
        WorkflowTaskStartedEventAttributes, history_event::Attributes,
    },
};

use crate::{
    error::{HistoryError, Result},
    events::{event_type_of, is_bufferable, is_close_event, is_reordered_completion, new_event},
    mutable_state::{MutableState, WorkflowStatus, WorkflowTaskInfo},
    tasks::{
        ActivityTaskDispatch, Task, TimerKind, TimerTask, WorkflowTaskDispatch,
        WorkflowTaskTimeoutKind,
    },
    time::{Nanos, SECOND, to_duration},
};

/// What applying one request produced. Events carry their final ids; the caller appends them to
/// the run's history (in order) and dispatches the tasks after the entry is committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition<R> {
    #[serde(with = "crate::pb::vec")]
    pub events: Vec<HistoryEvent>,
    pub tasks: Vec<Task>,
    pub reply: R,
    /// The run closed and hands over to a new run of the same workflow id; the store creates
    /// it (`api::start::continue_run`) from this and the closed run's start event.
    pub continuation: Option<Continuation>,
}

/// What a new run continuing a closed one needs beyond the closed run's start event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Continuation {
    pub new_run_id: String,
    /// `ContinueAsNewInitiator` as i32: RETRY, or WORKFLOW for continue-as-new.
    pub initiator: i32,
    /// The workflow's ContinueAsNewWorkflowExecution command, its defaults filled in; None for
    /// a retry, which restarts the closed run's own start.
    #[serde(with = "crate::pb::opt")]
    pub continue_as_new: Option<ContinueAsNewWorkflowExecutionCommandAttributes>,
    /// Delay before the new run's first workflow task.
    pub backoff: Nanos,
    /// The failure that made the closed run retry.
    #[serde(with = "crate::pb::opt")]
    pub failure: Option<Failure>,
    pub now: Nanos,
}

/// Workflow task retries back off: attempts beyond this get a growing start-to-close timeout.
const WORKFLOW_TASK_RETRY_BACKOFF_MIN_ATTEMPTS: i32 = 3;
const WORKFLOW_TASK_RETRY_INITIAL_INTERVAL: Nanos = 5 * SECOND;
const WORKFLOW_TASK_RETRY_MAX_INTERVAL: Nanos = 600 * SECOND;

pub(crate) struct Tx {
    pub ms: MutableState,
    pub now: Nanos,
    pub events: Vec<HistoryEvent>,
    pub tasks: Vec<Task>,
    pub continuation: Option<Continuation>,
}

/// Runs `f` on a copy of `ms`; commits the copy only if `f` succeeds.
pub(crate) fn run<R>(
    ms: &mut MutableState,
    now: Nanos,
    f: impl FnOnce(&mut Tx) -> Result<R>,
) -> Result<Transition<R>> {
    let mut tx = Tx::new(ms.clone(), now);
    let reply = f(&mut tx)?;
    if ms.is_running() && !tx.ms.is_running() {
        crate::api::children::close_tasks(&mut tx);
    }
    *ms = tx.ms;
    Ok(Transition {
        events: tx.events,
        tasks: tx.tasks,
        reply,
        continuation: tx.continuation,
    })
}

impl Tx {
    pub fn new(ms: MutableState, now: Nanos) -> Self {
        Tx {
            ms,
            now,
            events: Vec::new(),
            tasks: Vec::new(),
            continuation: None,
        }
    }

    /// Adds an event at `now`; returns its id, or None when it went to the buffer.
    pub fn add(&mut self, attrs: Attributes) -> Option<i64> {
        self.add_at(self.now, attrs)
    }

    pub fn add_at(&mut self, time: Nanos, attrs: Attributes) -> Option<i64> {
        let event = new_event(time, attrs);
        if self.ms.has_started_workflow_task() && is_bufferable(event.event_type()) {
            self.ms.buffered_events.push(event);
            None
        } else {
            Some(self.append(event))
        }
    }

    /// Appends directly to history, assigning the next event id.
    pub fn append(&mut self, mut event: HistoryEvent) -> i64 {
        let id = self.ms.next_event_id;
        event.event_id = id;
        self.ms.next_event_id += 1;
        self.ms.history_size_bytes += prost::Message::encoded_len(&event) as i64;
        self.events.push(event);
        id
    }

    pub fn timer(&mut self, fire_at: Nanos, kind: TimerKind) {
        self.tasks.push(Task::Timer(TimerTask { fire_at, kind }));
    }

    /// Moves buffered events into history: activity and child completions go last (as the
    /// real server reorders them), then ids are assigned and completion events learn the id of
    /// the started event that was buffered with them.
    pub fn flush_buffer(&mut self) {
        if self.ms.buffered_events.is_empty() {
            return;
        }
        let buffered = std::mem::take(&mut self.ms.buffered_events);
        if !self.ms.is_running() {
            // Nothing may follow a close event.
            return;
        }
        let (completions, others): (Vec<_>, Vec<_>) = buffered
            .into_iter()
            .partition(|e| is_reordered_completion(e.event_type()));
        let mut started_ids = StartedIds::default();
        for mut event in others.into_iter().chain(completions) {
            let id = self.ms.next_event_id;
            match &event.attributes {
                Some(Attributes::ActivityTaskStartedEventAttributes(a)) => {
                    started_ids.activities.insert(a.scheduled_event_id, id);
                }
                Some(Attributes::ChildWorkflowExecutionStartedEventAttributes(a)) => {
                    started_ids.children.insert(a.initiated_event_id, id);
                    if let Some(child) = self.ms.children.get_mut(&a.initiated_event_id) {
                        child.started_event_id = id;
                    }
                }
                _ => {}
            }
            wire_started_event_id(&mut event, &started_ids);
            self.append(event);
        }
    }

    /// Schedules a workflow task unless one is pending (the real server's
    /// `AddWorkflowTaskScheduledEvent`). Buffered events are flushed first and make the task a
    /// normal (non-transient) one, since the worker has new events to see.
    pub fn schedule_workflow_task(&mut self) {
        self.schedule_workflow_task_inner(false);
    }

    /// A workflow task only to carry updates; see `WorkflowTaskInfo::speculative`.
    pub fn schedule_speculative_workflow_task(&mut self) {
        self.schedule_workflow_task_inner(true);
    }

    fn schedule_workflow_task_inner(&mut self, speculative: bool) {
        if self.ms.workflow_task.is_some() || !self.ms.is_running() {
            return;
        }
        if !self.ms.buffered_events.is_empty() {
            self.ms.workflow_task_attempt = 1;
            self.flush_buffer();
        }
        let attempt = self.ms.workflow_task_attempt.max(1);
        let task_queue = self.ms.current_task_queue();
        let timeout = workflow_task_timeout(self.ms.default_workflow_task_timeout, attempt);
        self.ms.workflow_task_stamp += 1;
        let stamp = self.ms.workflow_task_stamp;
        let scheduled_event_id = if attempt > 1 || speculative {
            // Transient: its Scheduled event is only written if the attempt completes.
            self.ms.next_event_id
        } else {
            self.append(new_event(
                self.now,
                Attributes::WorkflowTaskScheduledEventAttributes(
                    WorkflowTaskScheduledEventAttributes {
                        task_queue: Some(task_queue.to_proto()),
                        start_to_close_timeout: Some(to_duration(timeout)),
                        attempt,
                    },
                ),
            ))
        };
        self.ms.workflow_task = Some(WorkflowTaskInfo {
            scheduled_event_id,
            started_event_id: 0,
            attempt,
            stamp,
            task_queue: task_queue.clone(),
            start_to_close_timeout: timeout,
            scheduled_time: self.now,
            started_time: 0,
            request_id: String::new(),
            identity: String::new(),
            history_size_bytes: 0,
            speculative,
        });
        self.tasks.extend(workflow_task_tasks(&self.ms));
    }

    /// Drops the current workflow task after a failure or timeout (the real server's
    /// `failWorkflowTask`): the next attempt becomes transient, except that a failure on a
    /// sticky queue first falls back to the normal queue without counting as an attempt.
    pub fn drop_failed_workflow_task(&mut self, increment_attempt: bool) {
        self.ms.workflow_task = None;
        let mut increment = increment_attempt;
        if self.ms.sticky.is_some() {
            increment = false;
            self.ms.sticky = None;
        }
        self.ms.workflow_task_attempt = if increment {
            self.ms.workflow_task_attempt.max(1) + 1
        } else {
            1
        };
    }

    /// A speculative task that fails or times out is written after all, as the real server
    /// does (`workflow_task_state_machine.go`, AddWorkflowTaskFailedEvent and
    /// AddWorkflowTaskTimedOutEvent): its Scheduled event, its Started event (with `identity`)
    /// when it was started; from then on it is a normal task whose failure is recorded.
    pub fn write_speculative_workflow_task(&mut self, identity: &str) {
        let Some(mut wt) = self.ms.workflow_task.clone().filter(|wt| wt.speculative) else {
            return;
        };
        wt.speculative = false;
        wt.scheduled_event_id = self.append(scheduled_event(&wt));
        if wt.is_started() {
            wt.started_event_id = self.append(started_event(&wt, identity));
        }
        self.ms.workflow_task = Some(wt);
    }

    /// Writes WorkflowTaskFailed for the started task (not for transient attempts) and drops it.
    pub fn fail_started_workflow_task(
        &mut self,
        cause: WorkflowTaskFailedCause,
        failure: Option<Failure>,
        identity: &str,
    ) {
        self.write_speculative_workflow_task(identity);
        let Some(wt) = self.ms.workflow_task.clone() else {
            return;
        };
        if !wt.is_transient() {
            self.append(new_event(
                self.now,
                Attributes::WorkflowTaskFailedEventAttributes(WorkflowTaskFailedEventAttributes {
                    scheduled_event_id: wt.scheduled_event_id,
                    started_event_id: wt.started_event_id,
                    cause: cause as i32,
                    failure,
                    identity: identity.to_string(),
                    ..Default::default()
                }),
            ));
        }
        self.drop_failed_workflow_task(true);
    }

    /// Before a run closes for reasons outside the worker (terminate, timeout), a started
    /// workflow task is failed with FORCE_CLOSE_COMMAND and buffered events are flushed.
    pub fn force_close_workflow_task(&mut self) {
        if self.ms.has_started_workflow_task() {
            self.fail_started_workflow_task(
                WorkflowTaskFailedCause::ForceCloseCommand,
                None,
                crate::events::HISTORY_SERVICE_IDENTITY,
            );
        }
        self.flush_buffer();
        self.ms.workflow_task = None;
    }

    /// Appends a close event and retires everything that was pending on the run.
    pub fn close(&mut self, status: WorkflowStatus, attrs: Attributes) -> i64 {
        debug_assert!(is_close_event(event_type_of(&attrs)));
        let id = self.append(new_event(self.now, attrs));
        self.ms.status = status;
        self.ms.close_time = self.now;
        self.ms.completion_event_id = id;
        self.ms.workflow_task = None;
        self.ms.activities.clear();
        self.ms.timers.clear();
        // Children stay until the transition ends: `children::close_tasks` reads them.
        self.ms.buffered_events.clear();
        self.ms.sticky = None;
        self.ms.start_delay_pending = false;
        id
    }

    pub fn ensure_running(&self) -> Result<()> {
        if self.ms.is_running() {
            Ok(())
        } else {
            Err(HistoryError::workflow_completed())
        }
    }
}

/// Ids given to started events during one flush: activities by scheduled event id, children by
/// initiated event id.
#[derive(Default)]
struct StartedIds {
    activities: std::collections::BTreeMap<i64, i64>,
    children: std::collections::BTreeMap<i64, i64>,
}

fn wire_started_event_id(event: &mut HistoryEvent, started: &StartedIds) {
    let lookup = |scheduled: i64| started.activities.get(&scheduled).copied();
    let child = |initiated: i64| started.children.get(&initiated).copied();
    match &mut event.attributes {
        Some(Attributes::ChildWorkflowExecutionCompletedEventAttributes(a)) => {
            if let Some(id) = child(a.initiated_event_id) {
                a.started_event_id = id;
            }
        }
        Some(Attributes::ChildWorkflowExecutionFailedEventAttributes(a)) => {
            if let Some(id) = child(a.initiated_event_id) {
                a.started_event_id = id;
            }
        }
        Some(Attributes::ChildWorkflowExecutionCanceledEventAttributes(a)) => {
            if let Some(id) = child(a.initiated_event_id) {
                a.started_event_id = id;
            }
        }
        Some(Attributes::ChildWorkflowExecutionTimedOutEventAttributes(a)) => {
            if let Some(id) = child(a.initiated_event_id) {
                a.started_event_id = id;
            }
        }
        Some(Attributes::ChildWorkflowExecutionTerminatedEventAttributes(a)) => {
            if let Some(id) = child(a.initiated_event_id) {
                a.started_event_id = id;
            }
        }
        Some(Attributes::ActivityTaskCompletedEventAttributes(a)) => {
            if let Some(id) = lookup(a.scheduled_event_id) {
                a.started_event_id = id;
            }
        }
        Some(Attributes::ActivityTaskFailedEventAttributes(a)) => {
            if let Some(id) = lookup(a.scheduled_event_id) {
                a.started_event_id = id;
            }
        }
        Some(Attributes::ActivityTaskTimedOutEventAttributes(a)) => {
            if let Some(id) = lookup(a.scheduled_event_id) {
                a.started_event_id = id;
            }
        }
        Some(Attributes::ActivityTaskCanceledEventAttributes(a)) => {
            if let Some(id) = lookup(a.scheduled_event_id) {
                a.started_event_id = id;
            }
        }
        _ => {}
    }
}

/// Start-to-close timeout of a workflow task attempt: the default, plus an exponential backoff
/// once the task keeps failing, so a broken worker is not hammered.
fn workflow_task_timeout(default: Nanos, attempt: i32) -> Nanos {
    if attempt <= WORKFLOW_TASK_RETRY_BACKOFF_MIN_ATTEMPTS {
        return default;
    }
    let backoff = crate::retry::exponential_backoff(
        WORKFLOW_TASK_RETRY_INITIAL_INTERVAL,
        2.0,
        attempt - WORKFLOW_TASK_RETRY_BACKOFF_MIN_ATTEMPTS,
    )
    .min(WORKFLOW_TASK_RETRY_MAX_INTERVAL);
    default.saturating_add(backoff)
}

/// The tasks still wanted for the run's current workflow task.
pub(crate) fn workflow_task_tasks(ms: &MutableState) -> Vec<Task> {
    let Some(wt) = &ms.workflow_task else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if wt.is_started() {
        out.push(Task::Timer(TimerTask {
            fire_at: wt.started_time.saturating_add(wt.start_to_close_timeout),
            kind: TimerKind::WorkflowTaskTimeout {
                scheduled_event_id: wt.scheduled_event_id,
                attempt: wt.attempt,
                stamp: wt.stamp,
                timeout: WorkflowTaskTimeoutKind::StartToClose,
            },
        }));
    } else {
        out.push(Task::WorkflowTask(WorkflowTaskDispatch {
            task_queue: wt.task_queue.clone(),
            scheduled_event_id: wt.scheduled_event_id,
            attempt: wt.attempt,
            stamp: wt.stamp,
        }));
        if wt.task_queue.sticky {
            let timeout = ms
                .sticky
                .as_ref()
                .map(|s| s.schedule_to_start_timeout)
                .unwrap_or(0);
            if timeout > 0 {
                out.push(Task::Timer(TimerTask {
                    fire_at: wt.scheduled_time.saturating_add(timeout),
                    kind: TimerKind::WorkflowTaskTimeout {
                        scheduled_event_id: wt.scheduled_event_id,
                        attempt: wt.attempt,
                        stamp: wt.stamp,
                        timeout: WorkflowTaskTimeoutKind::ScheduleToStart,
                    },
                }));
            }
        }
    }
    out
}

/// The dispatch task and timers an activity's current attempt needs.
pub(crate) fn activity_tasks(ms: &MutableState, scheduled_event_id: i64) -> Vec<Task> {
    use crate::tasks::ActivityTimeoutKind as K;
    let Some(ai) = ms.activities.get(&scheduled_event_id) else {
        return Vec::new();
    };
    let timeout = |fire_at: Nanos, kind: K| {
        Task::Timer(TimerTask {
            fire_at,
            kind: TimerKind::ActivityTimeout {
                scheduled_event_id,
                attempt: ai.attempt,
                timeout: kind,
            },
        })
    };
    let mut out = Vec::new();
    if ai.retry_backoff {
        out.push(Task::Timer(TimerTask {
            fire_at: ai.scheduled_time,
            kind: TimerKind::ActivityRetry {
                scheduled_event_id,
                attempt: ai.attempt,
            },
        }));
    } else if ai.is_started() {
        if ai.start_to_close_timeout > 0 {
            out.push(timeout(
                ai.started_time.saturating_add(ai.start_to_close_timeout),
                K::StartToClose,
            ));
        }
        if ai.heartbeat_timeout > 0 {
            let last = ai.started_time.max(ai.last_heartbeat_time);
            out.push(timeout(
                last.saturating_add(ai.heartbeat_timeout),
                K::Heartbeat,
            ));
        }
    } else {
        out.push(Task::ActivityTask(ActivityTaskDispatch {
            task_queue: crate::tasks::TaskQueueRef::normal(ai.task_queue.clone()),
            scheduled_event_id,
            attempt: ai.attempt,
        }));
        if ai.schedule_to_start_timeout > 0 {
            out.push(timeout(
                ai.scheduled_time
                    .saturating_add(ai.schedule_to_start_timeout),
                K::ScheduleToStart,
            ));
        }
    }
    if let Some(exp) = ai.expiration_time() {
        out.push(timeout(exp, K::ScheduleToClose));
    }
    out
}

/// A workflow task's Scheduled event, as it is written when the task was not (transient or
/// speculative attempts are written only when they complete or fail).
pub(crate) fn scheduled_event(wt: &WorkflowTaskInfo) -> HistoryEvent {
    new_event(
        wt.scheduled_time,
        Attributes::WorkflowTaskScheduledEventAttributes(WorkflowTaskScheduledEventAttributes {
            task_queue: Some(wt.task_queue.to_proto()),
            start_to_close_timeout: Some(to_duration(wt.start_to_close_timeout)),
            attempt: wt.attempt,
        }),
    )
}

/// A workflow task's Started event, likewise.
pub(crate) fn started_event(wt: &WorkflowTaskInfo, identity: &str) -> HistoryEvent {
    new_event(
        wt.started_time,
        Attributes::WorkflowTaskStartedEventAttributes(WorkflowTaskStartedEventAttributes {
            scheduled_event_id: wt.scheduled_event_id,
            identity: identity.to_string(),
            request_id: wt.request_id.clone(),
            history_size_bytes: wt.history_size_bytes,
            ..Default::default()
        }),
    )
}
