//! Activity task lifecycle: RecordActivityTaskStarted, RespondActivityTask{Completed,Failed,
//! Canceled}, RecordActivityTaskHeartbeat, and the retry/timeout rules they share
//! (temporalio/temporal `api/recordactivitytaskstarted`, `api/respondactivitytask*`,
//! `workflow/mutable_state_impl.go` `RetryActivity`, `timer_queue_active_task_executor.go`).
//!
//! With a retry policy (always, see `commands`) an attempt writes no event when it starts or
//! fails and is retried: ActivityTaskStarted is written together with the closing event.

use serde::{Deserialize, Serialize};
use temporalio_protos::temporal::api::{
    common::v1::{Header, Payloads, Priority, RetryPolicy},
    enums::v1::{RetryState, TimeoutType},
    failure::v1::{Failure, failure::FailureInfo},
    history::v1::{
        ActivityTaskCanceledEventAttributes, ActivityTaskCompletedEventAttributes,
        ActivityTaskFailedEventAttributes, ActivityTaskStartedEventAttributes,
        ActivityTaskTimedOutEventAttributes, history_event::Attributes,
    },
};

use crate::{
    error::{HistoryError, Result},
    events::{go_enum_name, timeout_failure},
    mutable_state::MutableState,
    tasks::{ActivityTimeoutKind, Task, TimerKind},
    time::Nanos,
    transition::{Transition, Tx, activity_tasks, run},
};

/// How a worker or client names the activity it reports on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActivityRef {
    /// From a task token: must match the current, started attempt.
    Token {
        scheduled_event_id: i64,
        attempt: i32,
    },
    /// `...ById` APIs: whatever attempt is current.
    ById { activity_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordActivityTaskStartedRequest {
    pub scheduled_event_id: i64,
    pub attempt: i32,
    pub request_id: String,
    pub identity: String,
    pub now: Nanos,
}

/// What a PollActivityTaskQueueResponse needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityTaskStartedReply {
    pub namespace_id: String,
    pub workflow_id: String,
    pub run_id: String,
    pub workflow_type: String,
    pub scheduled_event_id: i64,
    pub activity_id: String,
    pub activity_type: String,
    pub task_queue: String,
    #[serde(with = "crate::pb::opt")]
    pub input: Option<Payloads>,
    #[serde(with = "crate::pb::opt")]
    pub header: Option<Header>,
    pub attempt: i32,
    /// Time of ActivityTaskScheduled.
    pub scheduled_time: Nanos,
    pub current_attempt_scheduled_time: Nanos,
    pub started_time: Nanos,
    pub schedule_to_close_timeout: Nanos,
    pub start_to_close_timeout: Nanos,
    pub heartbeat_timeout: Nanos,
    /// Details of the last heartbeat (of any attempt), so a retry can resume.
    #[serde(with = "crate::pb::opt")]
    pub heartbeat_details: Option<Payloads>,
    #[serde(with = "crate::pb::msg")]
    pub retry_policy: RetryPolicy,
    #[serde(with = "crate::pb::opt")]
    pub priority: Option<Priority>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompleteActivityTaskRequest {
    pub activity: ActivityRef,
    #[serde(with = "crate::pb::opt")]
    pub result: Option<Payloads>,
    pub identity: String,
    pub now: Nanos,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailActivityTaskRequest {
    pub activity: ActivityRef,
    #[serde(with = "crate::pb::opt")]
    pub failure: Option<Failure>,
    #[serde(with = "crate::pb::opt")]
    pub last_heartbeat_details: Option<Payloads>,
    pub identity: String,
    pub now: Nanos,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelActivityTaskRequest {
    pub activity: ActivityRef,
    #[serde(with = "crate::pb::opt")]
    pub details: Option<Payloads>,
    pub identity: String,
    pub now: Nanos,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatActivityTaskRequest {
    pub activity: ActivityRef,
    #[serde(with = "crate::pb::opt")]
    pub details: Option<Payloads>,
    pub identity: String,
    pub now: Nanos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    pub cancel_requested: bool,
}

/// A poller got the activity task: mark the attempt started (no event).
pub fn record_activity_task_started(
    ms: &mut MutableState,
    req: RecordActivityTaskStartedRequest,
) -> Result<Transition<ActivityTaskStartedReply>> {
    run(ms, req.now, |tx| {
        tx.ensure_running()?;
        let Some(ai) = tx.ms.activities.get(&req.scheduled_event_id) else {
            return Err(HistoryError::activity_not_found());
        };
        if ai.attempt != req.attempt || ai.retry_backoff {
            return Err(HistoryError::ObsoleteTask(
                "Activity task attempt mismatch".into(),
            ));
        }
        if ai.is_started() {
            if ai.started_request_id == req.request_id {
                return Ok(started_reply(&tx.ms, req.scheduled_event_id));
            }
            return Err(HistoryError::TaskAlreadyStarted(
                "Activity task already started.".into(),
            ));
        }
        let now = tx.now;
        let ai = tx
            .ms
            .activities
            .get_mut(&req.scheduled_event_id)
            .expect("checked above");
        ai.started_time = now;
        ai.started_request_id = req.request_id.clone();
        ai.started_identity = req.identity.clone();
        ai.last_worker_identity = req.identity.clone();
        // Only the timers that begin with the start; schedule-to-close is already armed.
        let tasks: Vec<Task> = activity_tasks(&tx.ms, req.scheduled_event_id)
            .into_iter()
            .filter(|t| !is_schedule_to_close(t))
            .collect();
        tx.tasks.extend(tasks);
        Ok(started_reply(&tx.ms, req.scheduled_event_id))
    })
}

fn is_schedule_to_close(t: &Task) -> bool {
    matches!(
        t,
        Task::Timer(crate::tasks::TimerTask {
            kind: TimerKind::ActivityTimeout {
                timeout: ActivityTimeoutKind::ScheduleToClose,
                ..
            },
            ..
        })
    )
}

fn started_reply(ms: &MutableState, scheduled_event_id: i64) -> ActivityTaskStartedReply {
    let ai = &ms.activities[&scheduled_event_id];
    ActivityTaskStartedReply {
        namespace_id: ms.namespace_id.clone(),
        workflow_id: ms.workflow_id.clone(),
        run_id: ms.run_id.clone(),
        workflow_type: ms.workflow_type.clone(),
        scheduled_event_id,
        activity_id: ai.activity_id.clone(),
        activity_type: ai.activity_type.name.clone(),
        task_queue: ai.task_queue.clone(),
        input: ai.input.clone(),
        header: ai.header.clone(),
        attempt: ai.attempt,
        scheduled_time: ai.first_scheduled_time,
        current_attempt_scheduled_time: ai.scheduled_time,
        started_time: ai.started_time,
        schedule_to_close_timeout: ai.schedule_to_close_timeout,
        start_to_close_timeout: ai.start_to_close_timeout,
        heartbeat_timeout: ai.heartbeat_timeout,
        heartbeat_details: ai.heartbeat_details.clone(),
        retry_policy: ai.retry_policy.clone(),
        priority: ai.priority.clone(),
    }
}

/// Resolves the activity a report is about. Stale tokens (other attempt, not started) are
/// NotFound, which is what makes result recording exactly-once.
fn resolve(
    tx: &mut Tx,
    activity: &ActivityRef,
    identity: &str,
    require_started: bool,
) -> Result<i64> {
    tx.ensure_running()?;
    let id = match activity {
        ActivityRef::Token {
            scheduled_event_id,
            attempt,
        } => {
            let ai = tx
                .ms
                .activities
                .get(scheduled_event_id)
                .ok_or_else(HistoryError::activity_not_found)?;
            if !ai.is_started() || ai.attempt != *attempt {
                return Err(HistoryError::activity_not_found());
            }
            *scheduled_event_id
        }
        ActivityRef::ById { activity_id } => {
            if activity_id.is_empty() {
                return Err(HistoryError::InvalidArgument(
                    "activityID cannot be empty".into(),
                ));
            }
            let ai = tx.ms.activity_by_id(activity_id).ok_or_else(|| {
                HistoryError::NotFound(format!(
                    "cannot find pending activity with ActivityID {activity_id}, check workflow execution history for more details"
                ))
            })?;
            let id = ai.scheduled_event_id;
            if !ai.is_started() {
                if require_started {
                    return Err(HistoryError::activity_not_found());
                }
                // Completing by id an attempt no worker started: it counts as started now.
                let now = tx.now;
                let ai = tx.ms.activities.get_mut(&id).expect("found above");
                ai.started_time = now;
                ai.started_identity = identity.to_string();
                ai.retry_backoff = false;
            }
            id
        }
    };
    Ok(id)
}

/// Writes the deferred ActivityTaskStarted of the current attempt; returns its id (None when
/// buffered: the close event is wired to it on flush).
fn add_started_event(tx: &mut Tx, scheduled_event_id: i64) -> i64 {
    let ai = &tx.ms.activities[&scheduled_event_id];
    if !ai.is_started() {
        return 0;
    }
    let attrs =
        Attributes::ActivityTaskStartedEventAttributes(ActivityTaskStartedEventAttributes {
            scheduled_event_id,
            identity: ai.started_identity.clone(),
            request_id: ai.started_request_id.clone(),
            attempt: ai.attempt,
            last_failure: ai.last_failure.clone(),
            ..Default::default()
        });
    let time = ai.started_time;
    tx.add_at(time, attrs).unwrap_or(0)
}

/// Retires the activity after its close event and wakes the workflow.
fn finish(tx: &mut Tx, scheduled_event_id: i64) {
    tx.ms.activities.remove(&scheduled_event_id);
    tx.schedule_workflow_task();
}

pub fn complete_activity_task(
    ms: &mut MutableState,
    req: CompleteActivityTaskRequest,
) -> Result<Transition<()>> {
    run(ms, req.now, |tx| {
        let id = resolve(tx, &req.activity, &req.identity, false)?;
        let started = add_started_event(tx, id);
        tx.add(Attributes::ActivityTaskCompletedEventAttributes(
            ActivityTaskCompletedEventAttributes {
                result: req.result.clone(),
                scheduled_event_id: id,
                started_event_id: started,
                identity: req.identity.clone(),
                ..Default::default()
            },
        ));
        finish(tx, id);
        Ok(())
    })
}

pub fn fail_activity_task(
    ms: &mut MutableState,
    req: FailActivityTaskRequest,
) -> Result<Transition<()>> {
    run(ms, req.now, |tx| {
        let id = resolve(tx, &req.activity, &req.identity, false)?;
        if let Some(details) = &req.last_heartbeat_details {
            tx.ms
                .activities
                .get_mut(&id)
                .expect("resolved")
                .heartbeat_details = Some(details.clone());
        }
        let failure = req.failure.clone().unwrap_or_default();
        let retry_state = retry_activity(tx, id, &failure);
        if retry_state == RetryState::InProgress {
            return Ok(());
        }
        let started = add_started_event(tx, id);
        tx.add(Attributes::ActivityTaskFailedEventAttributes(
            ActivityTaskFailedEventAttributes {
                failure: Some(failure),
                scheduled_event_id: id,
                started_event_id: started,
                identity: req.identity.clone(),
                retry_state: retry_state as i32,
                ..Default::default()
            },
        ));
        finish(tx, id);
        Ok(())
    })
}

pub fn cancel_activity_task(
    ms: &mut MutableState,
    req: CancelActivityTaskRequest,
) -> Result<Transition<()>> {
    run(ms, req.now, |tx| {
        let id = resolve(tx, &req.activity, &req.identity, false)?;
        let ai = &tx.ms.activities[&id];
        if !ai.cancel_requested {
            return Err(HistoryError::InvalidArgument(
                "unable to mark activity as canceled without activity being request canceled first"
                    .into(),
            ));
        }
        let requested = ai.cancel_requested_event_id;
        let started = add_started_event(tx, id);
        tx.add(Attributes::ActivityTaskCanceledEventAttributes(
            ActivityTaskCanceledEventAttributes {
                details: req.details.clone(),
                latest_cancel_requested_event_id: requested,
                scheduled_event_id: id,
                started_event_id: started,
                identity: req.identity.clone(),
                ..Default::default()
            },
        ));
        finish(tx, id);
        Ok(())
    })
}

pub fn heartbeat_activity_task(
    ms: &mut MutableState,
    req: HeartbeatActivityTaskRequest,
) -> Result<Transition<HeartbeatReply>> {
    run(ms, req.now, |tx| {
        let id = resolve(tx, &req.activity, &req.identity, true)?;
        let now = tx.now;
        let ai = tx.ms.activities.get_mut(&id).expect("resolved");
        ai.heartbeat_details = req.details.clone();
        ai.last_heartbeat_time = now;
        Ok(HeartbeatReply {
            cancel_requested: ai.cancel_requested,
        })
    })
}

/// Decides whether the failed attempt is retried; if so, moves the activity to its next
/// attempt (no event) behind a retry timer.
fn retry_activity(tx: &mut Tx, id: i64, failure: &Failure) -> RetryState {
    let now = tx.now;
    let ai = tx
        .ms
        .activities
        .get_mut(&id)
        .expect("retry of a pending activity");
    if ai.cancel_requested {
        return RetryState::CancelRequested;
    }
    // Server-enforced deadlines are not failures of the attempt: they end the activity.
    if let Some(FailureInfo::TimeoutFailureInfo(info)) = &failure.failure_info
        && matches!(
            info.timeout_type(),
            TimeoutType::ScheduleToStart | TimeoutType::ScheduleToClose
        )
    {
        return RetryState::Timeout;
    }
    let (state, backoff) = crate::retry::next_retry(
        &ai.retry_policy,
        ai.attempt,
        failure,
        now,
        ai.expiration_time(),
    );
    if state != RetryState::InProgress {
        return state;
    }
    ai.attempt += 1;
    ai.last_failure = Some(failure.clone());
    ai.started_time = 0;
    ai.started_request_id.clear();
    ai.started_identity.clear();
    ai.last_attempt_complete_time = now;
    ai.scheduled_time = now.saturating_add(backoff);
    ai.retry_backoff = true;
    let (fire_at, attempt) = (ai.scheduled_time, ai.attempt);
    tx.timer(
        fire_at,
        TimerKind::ActivityRetry {
            scheduled_event_id: id,
            attempt,
        },
    );
    RetryState::InProgress
}

/// The retry backoff elapsed: dispatch the next attempt.
pub(crate) fn fire_retry(tx: &mut Tx, id: i64, attempt: i32) {
    let Some(ai) = tx.ms.activities.get_mut(&id) else {
        return;
    };
    if ai.attempt != attempt || !ai.retry_backoff || ai.is_started() {
        return;
    }
    ai.retry_backoff = false;
    let tasks: Vec<Task> = activity_tasks(&tx.ms, id)
        .into_iter()
        .filter(|t| !is_schedule_to_close(t))
        .collect();
    tx.tasks.extend(tasks);
}

/// An activity timeout timer fired: retry (timeouts other than schedule-to-start/close are
/// retryable) or close the activity with ActivityTaskTimedOut.
pub(crate) fn fire_timeout(tx: &mut Tx, id: i64, attempt: i32, kind: ActivityTimeoutKind) {
    let now = tx.now;
    let Some(ai) = tx.ms.activities.get(&id) else {
        return;
    };
    let same_attempt = ai.attempt == attempt;
    let deadline = match kind {
        ActivityTimeoutKind::ScheduleToStart
            if same_attempt && !ai.is_started() && !ai.retry_backoff =>
        {
            ai.scheduled_time
                .saturating_add(ai.schedule_to_start_timeout)
        }
        ActivityTimeoutKind::StartToClose if same_attempt && ai.is_started() => {
            ai.started_time.saturating_add(ai.start_to_close_timeout)
        }
        ActivityTimeoutKind::Heartbeat if same_attempt && ai.is_started() => ai
            .started_time
            .max(ai.last_heartbeat_time)
            .saturating_add(ai.heartbeat_timeout),
        ActivityTimeoutKind::ScheduleToClose if ai.schedule_to_close_timeout > 0 => ai
            .first_scheduled_time
            .saturating_add(ai.schedule_to_close_timeout),
        _ => return,
    };
    if now < deadline {
        // Fired early (a heartbeat moved the deadline, or clocks differ): re-arm.
        tx.timer(
            deadline,
            TimerKind::ActivityTimeout {
                scheduled_event_id: id,
                attempt,
                timeout: kind,
            },
        );
        return;
    }
    let timeout_type = match kind {
        ActivityTimeoutKind::ScheduleToStart => TimeoutType::ScheduleToStart,
        ActivityTimeoutKind::StartToClose => TimeoutType::StartToClose,
        ActivityTimeoutKind::ScheduleToClose => TimeoutType::ScheduleToClose,
        ActivityTimeoutKind::Heartbeat => TimeoutType::Heartbeat,
    };
    let mut failure = timeout_failure(
        format!(
            "activity {} timeout",
            go_enum_name(timeout_type.as_str_name(), "TIMEOUT_TYPE_")
        ),
        timeout_type,
    );
    let retry_state = retry_activity(tx, id, &failure);
    if retry_state == RetryState::InProgress {
        return;
    }
    if retry_state == RetryState::Timeout && timeout_type != TimeoutType::ScheduleToStart {
        // Historical convention: no time left for another attempt reads as schedule-to-close.
        failure = timeout_failure(
            "Not enough time to schedule next retry before activity ScheduleToClose timeout, giving up retrying",
            TimeoutType::ScheduleToClose,
        );
    }
    let ai = &tx.ms.activities[&id];
    if let Some(FailureInfo::TimeoutFailureInfo(info)) = failure.failure_info.as_mut() {
        info.last_heartbeat_details = ai.heartbeat_details.clone();
    }
    failure.cause = ai.last_failure.clone().map(Box::new);
    let started = add_started_event(tx, id);
    tx.add(Attributes::ActivityTaskTimedOutEventAttributes(
        ActivityTaskTimedOutEventAttributes {
            failure: Some(failure),
            scheduled_event_id: id,
            started_event_id: started,
            retry_state: retry_state as i32,
        },
    ));
    finish(tx, id);
}
