//! Activity retries, timeouts, heartbeats and cancellation.

mod support;

use dura_history::{
    api::activity::{
        ActivityRef, CancelActivityTaskRequest, HeartbeatActivityTaskRequest, cancel_activity_task,
        heartbeat_activity_task,
    },
    describe,
    error::HistoryError,
    tasks::{ActivityTimeoutKind, Task, TimerKind},
    time::{SECOND, to_duration},
};
use support::*;
use temporalio_protos::temporal::api::{
    enums::v1::{EventType, PendingActivityState, RetryState, TimeoutType},
    failure::v1::failure::FailureInfo,
    history::v1::history_event::Attributes,
};

/// A workflow that scheduled one activity (event 5) with `edit`ed attributes.
fn with_activity(
    edit: impl FnOnce(
        &mut temporalio_protos::temporal::api::command::v1::ScheduleActivityTaskCommandAttributes,
    ),
) -> Harness {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    h.complete_wt(&wt, vec![schedule_activity_with("1", "flaky", edit)])
        .unwrap();
    h
}

fn fire_retry(h: &mut Harness) {
    let t = h.timer(|k| matches!(k, TimerKind::ActivityRetry { .. }));
    h.fire_when_due(t);
}

#[test]
fn retry_then_success_writes_one_started_and_completed() {
    let mut h = with_activity(|a| {
        a.start_to_close_timeout = Some(to_duration(30 * SECOND));
        a.retry_policy = Some(retry_policy(5, 200, 1000));
    });
    let a1 = h.poll_activity(5);
    h.fail_activity(
        &a1,
        app_failure("transient failure on attempt 1", "RuntimeError", false),
    )
    .unwrap();
    assert_eq!(h.history.len(), 5, "a retried failure writes no event");
    let retry = h.timer(|k| matches!(k, TimerKind::ActivityRetry { .. }));
    assert_eq!(retry.fire_at, h.now + SECOND / 5);
    // The next attempt is not dispatched before the backoff elapsed.
    assert!(
        !h.tasks
            .iter()
            .any(|t| matches!(t, Task::ActivityTask(d) if d.attempt == 2))
    );
    fire_retry(&mut h);
    assert!(
        h.tasks
            .iter()
            .any(|t| matches!(t, Task::ActivityTask(d) if d.attempt == 2))
    );
    let a2 = h.poll_activity(5);
    assert_eq!(a2.attempt, 2);
    // The stale attempt-1 token can no longer report.
    let before = h.ms.clone();
    assert!(matches!(
        h.complete_activity(&a1, "late"),
        Err(HistoryError::NotFound(_))
    ));
    assert_eq!(h.ms, before);
    h.fail_activity(
        &a2,
        app_failure("transient failure on attempt 2", "RuntimeError", false),
    )
    .unwrap();
    assert_eq!(
        h.timer(|k| matches!(k, TimerKind::ActivityRetry { .. }))
            .fire_at,
        h.now + 2 * SECOND / 5
    );
    fire_retry(&mut h);
    let a3 = h.poll_activity(5);
    h.complete_activity(&a3, "ok on attempt 3").unwrap();
    assert_eq!(
        h.history_text(),
        lines(
            "1 WorkflowExecutionStarted
             2 WorkflowTaskScheduled
             3 WorkflowTaskStarted
             4 WorkflowTaskCompleted
             5 ActivityTaskScheduled
             6 ActivityTaskStarted
             7 ActivityTaskCompleted
             8 WorkflowTaskScheduled"
        )
    );
    match &h.event(6).attributes {
        Some(Attributes::ActivityTaskStartedEventAttributes(a)) => {
            assert_eq!(a.attempt, 3);
            assert_eq!(
                a.last_failure.as_ref().unwrap().message,
                "transient failure on attempt 2"
            );
        }
        _ => panic!(),
    }
}

#[test]
fn retries_exhausted() {
    let mut h = with_activity(|a| {
        a.start_to_close_timeout = Some(to_duration(30 * SECOND));
        a.retry_policy = Some(retry_policy(3, 100, 1000));
    });
    for attempt in 1..=3 {
        let a = h.poll_activity(5);
        assert_eq!(a.attempt, attempt);
        h.fail_activity(&a, app_failure("boom", "RuntimeError", false))
            .unwrap();
        if attempt < 3 {
            fire_retry(&mut h);
        }
    }
    let failed = h.events_of(EventType::ActivityTaskFailed);
    assert_eq!(failed.len(), 1);
    match &failed[0].attributes {
        Some(Attributes::ActivityTaskFailedEventAttributes(a)) => {
            assert_eq!(a.retry_state, RetryState::MaximumAttemptsReached as i32);
            assert_eq!(a.started_event_id, 6);
            assert_eq!(a.failure.as_ref().unwrap().message, "boom");
        }
        _ => panic!(),
    }
    assert_eq!(
        h.last_event().event_type(),
        EventType::WorkflowTaskScheduled
    );
}

#[test]
fn non_retryable_failures() {
    let mut h = with_activity(|a| a.start_to_close_timeout = Some(to_duration(30 * SECOND)));
    let a = h.poll_activity(5);
    h.fail_activity(&a, app_failure("card declined", "PaymentDeclined", true))
        .unwrap();
    match &h.event(7).attributes {
        Some(Attributes::ActivityTaskFailedEventAttributes(a)) => {
            assert_eq!(a.retry_state, RetryState::NonRetryableFailure as i32)
        }
        _ => panic!("{}", h.history_text()),
    }

    let mut h = with_activity(|a| {
        a.start_to_close_timeout = Some(to_duration(30 * SECOND));
        let mut p = retry_policy(0, 1000, 10_000);
        p.non_retryable_error_types = vec!["ValueError".into()];
        a.retry_policy = Some(p);
    });
    let a = h.poll_activity(5);
    h.fail_activity(&a, app_failure("bad value", "ValueError", false))
        .unwrap();
    assert_eq!(h.events_of(EventType::ActivityTaskFailed).len(), 1);
}

#[test]
fn start_to_close_timeout_without_retries() {
    let mut h = with_activity(|a| {
        a.start_to_close_timeout = Some(to_duration(SECOND));
        a.retry_policy = Some(retry_policy(1, 1000, 1000));
    });
    h.poll_activity(5);
    let t = h.timer(|k| {
        matches!(
            k,
            TimerKind::ActivityTimeout {
                timeout: ActivityTimeoutKind::StartToClose,
                ..
            }
        )
    });
    h.fire_when_due(t);
    let names: Vec<_> = h.history[5..].iter().map(event_name).collect();
    assert_eq!(
        names,
        [
            "ActivityTaskStarted",
            "ActivityTaskTimedOut",
            "WorkflowTaskScheduled"
        ]
    );
    match &h.event(7).attributes {
        Some(Attributes::ActivityTaskTimedOutEventAttributes(a)) => {
            assert_eq!(a.retry_state, RetryState::MaximumAttemptsReached as i32);
            let f = a.failure.as_ref().unwrap();
            assert_eq!(f.message, "activity StartToClose timeout");
            assert!(
                matches!(&f.failure_info, Some(FailureInfo::TimeoutFailureInfo(i)) if i.timeout_type() == TimeoutType::StartToClose)
            );
        }
        _ => panic!(),
    }
}

#[test]
fn start_to_close_timeout_is_retried() {
    let mut h = with_activity(|a| {
        a.start_to_close_timeout = Some(to_duration(SECOND));
        a.retry_policy = Some(retry_policy(2, 100, 100));
    });
    h.poll_activity(5);
    let t = h.timer(|k| {
        matches!(
            k,
            TimerKind::ActivityTimeout {
                timeout: ActivityTimeoutKind::StartToClose,
                ..
            }
        )
    });
    h.fire_when_due(t.clone());
    assert_eq!(h.history.len(), 5);
    assert_eq!(h.ms.activities[&5].attempt, 2);
    // The timer of attempt 1 firing again changes nothing.
    let before = h.ms.clone();
    h.fire(t);
    assert_eq!(h.ms, before);
}

#[test]
fn heartbeat_timeout_and_details() {
    let mut h = with_activity(|a| {
        a.start_to_close_timeout = Some(to_duration(60 * SECOND));
        a.heartbeat_timeout = Some(to_duration(2 * SECOND));
        a.retry_policy = Some(retry_policy(1, 1000, 1000));
    });
    let act = h.poll_activity(5);
    let hb_timer = h.timer(|k| {
        matches!(
            k,
            TimerKind::ActivityTimeout {
                timeout: ActivityTimeoutKind::Heartbeat,
                ..
            }
        )
    });
    h.advance(SECOND);
    let reply = h
        .run(|ms, now| {
            heartbeat_activity_task(
                ms,
                HeartbeatActivityTaskRequest {
                    activity: token(&act),
                    details: Some(payloads("Processed 3/3")),
                    identity: "w".into(),
                    now,
                },
            )
        })
        .unwrap();
    assert!(!reply.cancel_requested);
    let d = describe(&h.ms);
    assert_eq!(
        d.pending_activities[0].state,
        PendingActivityState::Started as i32
    );
    assert_eq!(
        d.pending_activities[0].heartbeat_details,
        Some(payloads("Processed 3/3"))
    );
    assert!(d.pending_activities[0].last_heartbeat_time.is_some());
    // The original deadline passed, but the heartbeat moved it: the timer re-arms.
    h.fire_when_due(hb_timer);
    assert_eq!(h.history.len(), 5);
    let rearmed = h.timer(|k| {
        matches!(
            k,
            TimerKind::ActivityTimeout {
                timeout: ActivityTimeoutKind::Heartbeat,
                ..
            }
        )
    });
    assert_eq!(rearmed.fire_at, h.now - SECOND + 2 * SECOND);
    h.fire_when_due(rearmed);
    match &h.event(7).attributes {
        Some(Attributes::ActivityTaskTimedOutEventAttributes(a)) => {
            let f = a.failure.as_ref().unwrap();
            match &f.failure_info {
                Some(FailureInfo::TimeoutFailureInfo(i)) => {
                    assert_eq!(i.timeout_type(), TimeoutType::Heartbeat);
                    assert_eq!(i.last_heartbeat_details, Some(payloads("Processed 3/3")));
                }
                _ => panic!(),
            }
        }
        _ => panic!("{}", h.history_text()),
    }
}

#[test]
fn heartbeat_details_survive_a_retry() {
    let mut h = with_activity(|a| {
        a.start_to_close_timeout = Some(to_duration(60 * SECOND));
        a.retry_policy = Some(retry_policy(3, 100, 100));
    });
    let act = h.poll_activity(5);
    h.run(|ms, now| {
        heartbeat_activity_task(
            ms,
            HeartbeatActivityTaskRequest {
                activity: token(&act),
                details: Some(payloads("3")),
                identity: "w".into(),
                now,
            },
        )
    })
    .unwrap();
    h.fail_activity(&act, app_failure("died", "RuntimeError", false))
        .unwrap();
    fire_retry(&mut h);
    let act2 = h.poll_activity(5);
    assert_eq!(act2.attempt, 2);
    assert_eq!(act2.heartbeat_details, Some(payloads("3")));
}

#[test]
fn schedule_to_start_timeout_never_started() {
    let mut h = with_activity(|a| {
        a.start_to_close_timeout = Some(to_duration(10 * SECOND));
        a.schedule_to_start_timeout = Some(to_duration(SECOND));
        a.task_queue = Some(normal("nobody-polls").to_proto());
    });
    assert!(
        h.tasks
            .iter()
            .any(|t| matches!(t, Task::ActivityTask(d) if d.task_queue.name == "nobody-polls"))
    );
    let t = h.timer(|k| {
        matches!(
            k,
            TimerKind::ActivityTimeout {
                timeout: ActivityTimeoutKind::ScheduleToStart,
                ..
            }
        )
    });
    h.fire_when_due(t);
    let names: Vec<_> = h.history[5..].iter().map(event_name).collect();
    assert_eq!(names, ["ActivityTaskTimedOut", "WorkflowTaskScheduled"]);
    match &h.event(6).attributes {
        Some(Attributes::ActivityTaskTimedOutEventAttributes(a)) => {
            assert_eq!(a.started_event_id, 0);
            assert_eq!(a.retry_state, RetryState::Timeout as i32);
            assert!(
                matches!(&a.failure.as_ref().unwrap().failure_info, Some(FailureInfo::TimeoutFailureInfo(i)) if i.timeout_type() == TimeoutType::ScheduleToStart)
            );
        }
        _ => panic!(),
    }
}

#[test]
fn schedule_to_close_timeout() {
    let mut h = with_activity(|a| {
        a.schedule_to_close_timeout = Some(to_duration(2 * SECOND));
    });
    let scheduled = match &h.event(5).attributes {
        Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => a.clone(),
        _ => panic!(),
    };
    // Start-to-close and schedule-to-start were filled from schedule-to-close.
    assert_eq!(
        scheduled.start_to_close_timeout,
        Some(to_duration(2 * SECOND))
    );
    assert_eq!(
        scheduled.schedule_to_start_timeout,
        Some(to_duration(2 * SECOND))
    );
    h.poll_activity(5);
    let t = h.timer(|k| {
        matches!(
            k,
            TimerKind::ActivityTimeout {
                timeout: ActivityTimeoutKind::ScheduleToClose,
                ..
            }
        )
    });
    h.fire_when_due(t);
    let timed_out = h.events_of(EventType::ActivityTaskTimedOut);
    assert_eq!(timed_out.len(), 1);
    match &timed_out[0].attributes {
        Some(Attributes::ActivityTaskTimedOutEventAttributes(a)) => {
            assert!(
                matches!(&a.failure.as_ref().unwrap().failure_info, Some(FailureInfo::TimeoutFailureInfo(i)) if i.timeout_type() == TimeoutType::ScheduleToClose)
            );
            assert_eq!(a.started_event_id, 6);
        }
        _ => panic!(),
    }
}

#[test]
fn all_timeouts_recorded_and_capped() {
    let h = with_activity(|a| {
        a.start_to_close_timeout = Some(to_duration(30 * SECOND));
        a.schedule_to_start_timeout = Some(to_duration(300 * SECOND));
        a.schedule_to_close_timeout = Some(to_duration(600 * SECOND));
        a.heartbeat_timeout = Some(to_duration(5 * SECOND));
    });
    match &h.event(5).attributes {
        Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => {
            assert_eq!(a.start_to_close_timeout, Some(to_duration(30 * SECOND)));
            assert_eq!(a.schedule_to_start_timeout, Some(to_duration(300 * SECOND)));
            assert_eq!(a.schedule_to_close_timeout, Some(to_duration(600 * SECOND)));
            assert_eq!(a.heartbeat_timeout, Some(to_duration(5 * SECOND)));
        }
        _ => panic!(),
    }
}

/// The TypeScript SDK refuses an activity task whose schedule-to-close timeout is missing, so
/// like the real server every timeout is stated, zero meaning unlimited (no run timeout here).
#[test]
fn unset_timeouts_are_stated_as_zero() {
    let h = with_activity(|a| {
        a.start_to_close_timeout = Some(to_duration(30 * SECOND));
        a.schedule_to_start_timeout = None;
        a.schedule_to_close_timeout = None;
        a.heartbeat_timeout = None;
    });
    match &h.event(5).attributes {
        Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => {
            assert_eq!(a.start_to_close_timeout, Some(to_duration(30 * SECOND)));
            assert_eq!(a.schedule_to_close_timeout, Some(to_duration(0)));
            assert_eq!(a.schedule_to_start_timeout, Some(to_duration(0)));
            assert_eq!(a.heartbeat_timeout, Some(to_duration(0)));
        }
        _ => panic!(),
    }
}

#[test]
fn cancel_started_activity_goes_through_heartbeat() {
    let mut h = with_activity(|a| a.start_to_close_timeout = Some(to_duration(60 * SECOND)));
    let act = h.poll_activity(5);
    let wt = {
        h.signal("cancel_activity", "s1").unwrap();
        h.poll_wt()
    };
    h.complete_wt(&wt, vec![request_cancel_activity(5)])
        .unwrap();
    let hb = h
        .run(|ms, now| {
            heartbeat_activity_task(
                ms,
                HeartbeatActivityTaskRequest {
                    activity: token(&act),
                    details: None,
                    identity: "w".into(),
                    now,
                },
            )
        })
        .unwrap();
    assert!(hb.cancel_requested);
    h.run(|ms, now| {
        cancel_activity_task(
            ms,
            CancelActivityTaskRequest {
                activity: token(&act),
                details: None,
                identity: "w".into(),
                now,
            },
        )
    })
    .unwrap();
    assert_eq!(
        h.history_text(),
        lines(
            "1 WorkflowExecutionStarted
             2 WorkflowTaskScheduled
             3 WorkflowTaskStarted
             4 WorkflowTaskCompleted
             5 ActivityTaskScheduled
             6 WorkflowExecutionSignaled
             7 WorkflowTaskScheduled
             8 WorkflowTaskStarted
             9 WorkflowTaskCompleted
             10 ActivityTaskCancelRequested
             11 ActivityTaskStarted
             12 ActivityTaskCanceled
             13 WorkflowTaskScheduled"
        )
    );
    match &h.event(12).attributes {
        Some(Attributes::ActivityTaskCanceledEventAttributes(a)) => {
            assert_eq!(
                (
                    a.scheduled_event_id,
                    a.started_event_id,
                    a.latest_cancel_requested_event_id
                ),
                (5, 11, 10)
            )
        }
        _ => panic!(),
    }
}

#[test]
fn cancel_unstarted_activity_is_immediate() {
    let mut h = with_activity(|a| a.start_to_close_timeout = Some(to_duration(60 * SECOND)));
    h.signal("go", "s1").unwrap();
    let wt = h.poll_wt();
    h.complete_wt(&wt, vec![request_cancel_activity(5)])
        .unwrap();
    let names: Vec<_> = h.history[8..].iter().map(event_name).collect();
    assert_eq!(
        names,
        [
            "WorkflowTaskCompleted",
            "ActivityTaskCancelRequested",
            "ActivityTaskCanceled",
            "WorkflowTaskScheduled"
        ]
    );
    assert!(h.ms.activities.is_empty());
    // Canceling without a cancel request is refused.
    let mut h = with_activity(|a| a.start_to_close_timeout = Some(to_duration(60 * SECOND)));
    let act = h.poll_activity(5);
    let err = h
        .run(|ms, now| {
            cancel_activity_task(
                ms,
                CancelActivityTaskRequest {
                    activity: token(&act),
                    details: None,
                    identity: "w".into(),
                    now,
                },
            )
        })
        .unwrap_err();
    assert!(matches!(err, HistoryError::InvalidArgument(_)));
}

#[test]
fn record_started_is_idempotent_and_exclusive() {
    use dura_history::api::activity::{
        RecordActivityTaskStartedRequest, record_activity_task_started,
    };
    let mut h = with_activity(|a| a.start_to_close_timeout = Some(to_duration(60 * SECOND)));
    let req = |id: &str, now| RecordActivityTaskStartedRequest {
        scheduled_event_id: 5,
        attempt: 1,
        request_id: id.into(),
        identity: "w".into(),
        now,
    };
    let r1 = h
        .run(|ms, now| record_activity_task_started(ms, req("a", now)))
        .unwrap();
    let r2 = h
        .run(|ms, now| record_activity_task_started(ms, req("a", now)))
        .unwrap();
    assert_eq!(r1, r2);
    assert!(matches!(
        h.run(|ms, now| record_activity_task_started(ms, req("b", now))),
        Err(HistoryError::TaskAlreadyStarted(_))
    ));
    // Completing by id works without a token.
    let c = dura_history::api::activity::CompleteActivityTaskRequest {
        activity: ActivityRef::ById {
            activity_id: "1".into(),
        },
        result: None,
        identity: "client".into(),
        now: h.now,
    };
    h.run(|ms, _| dura_history::api::activity::complete_activity_task(ms, c))
        .unwrap();
    assert_eq!(h.events_of(EventType::ActivityTaskCompleted).len(), 1);
}

#[test]
fn cancel_request_racing_a_buffered_completion() {
    let mut h = with_activity(|a| a.start_to_close_timeout = Some(to_duration(60 * SECOND)));
    let act = h.poll_activity(5);
    h.signal("go", "s1").unwrap();
    let wt = h.poll_wt();
    h.complete_activity(&act, "done").unwrap();
    let reply = h
        .complete_wt(&wt, vec![request_cancel_activity(5)])
        .unwrap();
    assert_eq!(reply.task_failed, None);
    let names: Vec<_> = h.history[8..].iter().map(event_name).collect();
    assert_eq!(
        names,
        [
            "WorkflowTaskCompleted",
            "ActivityTaskCancelRequested",
            "ActivityTaskStarted",
            "ActivityTaskCompleted",
            "WorkflowTaskScheduled"
        ]
    );
}
