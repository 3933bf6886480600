//! Whole-workflow scenarios against the state machine, asserting the exact histories the real
//! Temporal server writes (temporalio/temporal `tests/activity_test.go`, the conformance suite).

mod support;

use dura_history::{
    api::{
        lifecycle::{TerminateRequest, terminate_workflow},
        workflow_task::{
            FailWorkflowTaskRequest, StickyAttributes, WorkflowTaskToken, fail_workflow_task,
        },
    },
    describe,
    error::HistoryError,
    mutable_state::WorkflowStatus,
    pending_tasks,
    tasks::{Task, TimerKind, WorkflowTaskTimeoutKind},
    time::{SECOND, from_duration},
};
use support::*;
use temporalio_protos::temporal::api::{
    command::v1::{Command, command::Attributes as CA},
    enums::v1::{CommandType, EventType, TaskQueueKind, WorkflowTaskFailedCause},
    history::v1::history_event::Attributes,
    sdk::v1::WorkflowTaskCompletedMetadata,
};

#[test]
fn workflow_without_activities() {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    assert_eq!(
        (wt.scheduled_event_id, wt.started_event_id, wt.attempt),
        (2, 3, 1)
    );
    assert_eq!(wt.previous_started_event_id, 0);
    assert_eq!(wt.next_event_id, 4);
    h.complete_wt(&wt, vec![complete_workflow("Hello, World!")])
        .unwrap();
    assert_eq!(
        h.history_text(),
        lines(
            "1 WorkflowExecutionStarted
             2 WorkflowTaskScheduled
             3 WorkflowTaskStarted
             4 WorkflowTaskCompleted
             5 WorkflowExecutionCompleted"
        )
    );
    assert_eq!(h.ms.status, WorkflowStatus::Completed);
    assert!(pending_tasks(&h.ms).is_empty());
    let d = describe(&h.ms);
    assert_eq!(d.workflow_execution_info.history_length, 5);
    assert!(d.workflow_execution_info.close_time.is_some());
}

#[test]
fn hello_world_one_activity_is_eleven_events() {
    let mut h = Harness::new();
    let started = match &h.event(1).attributes {
        Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => a.clone(),
        _ => panic!(),
    };
    assert_eq!(started.original_execution_run_id, "run-1");
    assert_eq!(started.first_execution_run_id, "run-1");
    assert_eq!(started.attempt, 1);
    assert_eq!(started.workflow_id, "wf");
    assert_eq!(
        started.task_queue.as_ref().unwrap().kind,
        TaskQueueKind::Normal as i32
    );
    assert_eq!(
        from_duration(started.workflow_task_timeout.as_ref()),
        10 * SECOND
    );
    assert!(matches!(h.tasks[0], Task::WorkflowTask(_)));

    let wt = h.poll_wt();
    h.advance(SECOND / 10);
    let metadata = WorkflowTaskCompletedMetadata {
        core_used_flags: vec![1, 2],
        ..Default::default()
    };
    h.complete_wt_with(&wt, vec![schedule_activity("1", "say_hello", 30)], |r| {
        r.sdk_metadata = Some(metadata.clone())
    })
    .unwrap();
    match &h.event(4).attributes {
        Some(Attributes::WorkflowTaskCompletedEventAttributes(a)) => {
            assert_eq!(a.sdk_metadata.as_ref(), Some(&metadata));
            assert_eq!((a.scheduled_event_id, a.started_event_id), (2, 3));
        }
        _ => panic!("event 4"),
    }
    let scheduled = match &h.event(5).attributes {
        Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => a.clone(),
        _ => panic!("event 5"),
    };
    // The server always sets a retry policy (defaults) and fills timeouts.
    let rp = scheduled.retry_policy.unwrap();
    assert_eq!(from_duration(rp.initial_interval.as_ref()), SECOND);
    assert_eq!(rp.backoff_coefficient, 2.0);
    assert_eq!(from_duration(rp.maximum_interval.as_ref()), 100 * SECOND);
    assert_eq!(rp.maximum_attempts, 0);
    assert_eq!(scheduled.task_queue.unwrap().name, TQ);
    assert_eq!(
        from_duration(scheduled.start_to_close_timeout.as_ref()),
        30 * SECOND
    );
    assert_eq!(scheduled.workflow_task_completed_event_id, 4);

    let act = h.poll_activity(5);
    assert_eq!(act.attempt, 1);
    assert_eq!(act.activity_type, "say_hello");
    // Starting an activity with a retry policy writes no event.
    assert_eq!(h.history.len(), 5);
    h.advance(SECOND / 10);
    h.complete_activity(&act, "Hello, Temporal!").unwrap();
    match &h.event(7).attributes {
        Some(Attributes::ActivityTaskCompletedEventAttributes(a)) => {
            assert_eq!((a.scheduled_event_id, a.started_event_id), (5, 6));
        }
        _ => panic!("event 7"),
    }
    let wt = h.poll_wt();
    assert_eq!(wt.previous_started_event_id, 3);
    h.complete_wt(&wt, vec![complete_workflow("Hello, Temporal!")])
        .unwrap();
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
             8 WorkflowTaskScheduled
             9 WorkflowTaskStarted
             10 WorkflowTaskCompleted
             11 WorkflowExecutionCompleted"
        )
    );
    let times: Vec<_> = h.history.iter().map(|e| e.event_time.unwrap()).collect();
    assert!(
        times
            .windows(2)
            .all(|w| (w[0].seconds, w[0].nanos) <= (w[1].seconds, w[1].nanos))
    );
}

#[test]
fn three_activities_scheduled_by_one_task() {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    h.complete_wt(
        &wt,
        vec![
            schedule_activity("1", "activity_1", 10),
            schedule_activity("2", "activity_2", 10),
            schedule_activity("3", "activity_3", 10),
        ],
    )
    .unwrap();
    let names: Vec<_> = h.history[3..].iter().map(event_name).collect();
    assert_eq!(
        names,
        [
            "WorkflowTaskCompleted",
            "ActivityTaskScheduled",
            "ActivityTaskScheduled",
            "ActivityTaskScheduled"
        ]
    );
    // Duplicate activity id fails the task.
    let mut h2 = Harness::new();
    let wt = h2.poll_wt();
    let reply = h2
        .complete_wt(
            &wt,
            vec![
                schedule_activity("1", "a", 10),
                schedule_activity("1", "a", 10),
            ],
        )
        .unwrap();
    assert!(
        matches!(reply.task_failed, Some(HistoryError::InvalidArgument(m)) if m.starts_with("ScheduleActivityDuplicateId"))
    );
}

#[test]
fn activity_completion_during_running_task_is_buffered_and_reordered() {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    h.complete_wt(
        &wt,
        vec![schedule_activity("1", "a", 10), start_timer("t", 60_000)],
    )
    .unwrap();
    let act = h.poll_activity(5);
    h.signal("first", "sig-1").unwrap();
    // WT 7 scheduled by the signal; the worker starts it, then the activity completes.
    let wt = h.poll_wt();
    assert_eq!(wt.started_event_id, 9);
    h.complete_activity(&act, "done").unwrap();
    h.signal("second", "sig-2").unwrap();
    assert_eq!(h.history.len(), 9, "both are buffered");
    assert_eq!(h.ms.buffered_events.len(), 3);
    h.complete_wt(&wt, vec![]).unwrap();
    assert_eq!(
        h.history_text(),
        lines(
            "1 WorkflowExecutionStarted
             2 WorkflowTaskScheduled
             3 WorkflowTaskStarted
             4 WorkflowTaskCompleted
             5 ActivityTaskScheduled
             6 TimerStarted
             7 WorkflowExecutionSignaled
             8 WorkflowTaskScheduled
             9 WorkflowTaskStarted
             10 WorkflowTaskCompleted
             11 ActivityTaskStarted
             12 WorkflowExecutionSignaled
             13 ActivityTaskCompleted
             14 WorkflowTaskScheduled"
        )
    );
    match &h.event(13).attributes {
        Some(Attributes::ActivityTaskCompletedEventAttributes(a)) => {
            assert_eq!((a.scheduled_event_id, a.started_event_id), (5, 11))
        }
        _ => panic!(),
    }
}

#[test]
fn signal_during_task_blocks_completion_with_unhandled_command() {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    h.signal("release", "sig-1").unwrap();
    assert_eq!(h.history.len(), 3);
    let reply = h.complete_wt(&wt, vec![complete_workflow("done")]).unwrap();
    assert_eq!(
        reply.task_failed,
        Some(HistoryError::InvalidArgument("UnhandledCommand".into()))
    );
    assert!(h.ms.is_running());
    let wt = h.poll_wt();
    assert_eq!(wt.attempt, 1);
    h.complete_wt(&wt, vec![complete_workflow("done")]).unwrap();
    assert_eq!(
        h.history_text(),
        lines(
            "1 WorkflowExecutionStarted
             2 WorkflowTaskScheduled
             3 WorkflowTaskStarted
             4 WorkflowTaskFailed
             5 WorkflowExecutionSignaled
             6 WorkflowTaskScheduled
             7 WorkflowTaskStarted
             8 WorkflowTaskCompleted
             9 WorkflowExecutionCompleted"
        )
    );
    match &h.event(4).attributes {
        Some(Attributes::WorkflowTaskFailedEventAttributes(a)) => {
            assert_eq!(a.cause, WorkflowTaskFailedCause::UnhandledCommand as i32);
            assert_eq!(a.failure.as_ref().unwrap().message, "UnhandledCommand");
        }
        _ => panic!(),
    }
}

#[test]
fn signal_request_ids_are_deduplicated() {
    let mut h = Harness::new();
    h.signal("s", "same").unwrap();
    h.signal("s", "same").unwrap();
    assert_eq!(h.events_of(EventType::WorkflowExecutionSignaled).len(), 1);
    // A retry that arrives after the signal let the workflow finish (a failover in between)
    // finds the first attempt's success, as on the real server; a new signal is refused.
    let wt = h.poll_wt();
    h.complete_wt(&wt, vec![complete_workflow("done")]).unwrap();
    let before = h.ms.clone();
    h.signal("s", "same").unwrap();
    assert_eq!(h.ms, before);
    assert!(matches!(
        h.signal("s", "other").unwrap_err(),
        HistoryError::NotFound(_)
    ));
}

#[test]
fn workflow_task_failure_then_transient_retries() {
    let mut h = Harness::new();
    let fail = |h: &mut Harness,
                wt: &dura_history::api::workflow_task::WorkflowTaskStartedReply| {
        let req = FailWorkflowTaskRequest {
            token: WorkflowTaskToken::of(wt),
            cause: WorkflowTaskFailedCause::WorkflowWorkerUnhandledFailure as i32,
            failure: Some(app_failure("bug in workflow code", "Exception", false)),
            identity: "worker".into(),
            now: h.now,
        };
        h.run(|ms, _| fail_workflow_task(ms, req)).unwrap();
    };
    let wt = h.poll_wt();
    fail(&mut h, &wt);
    assert_eq!(h.last_event().event_type(), EventType::WorkflowTaskFailed);
    let len = h.history.len();
    // Attempt 2 is transient: polled without events, synthetic events in the response.
    let wt2 = h.poll_wt();
    assert_eq!(wt2.attempt, 2);
    assert_eq!(h.history.len(), len);
    let ids: Vec<_> = wt2
        .transient_events
        .iter()
        .map(|e| (e.event_id, event_name(e)))
        .collect();
    assert_eq!(
        ids,
        [
            (5, "WorkflowTaskScheduled".to_string()),
            (6, "WorkflowTaskStarted".to_string())
        ]
    );
    fail(&mut h, &wt2);
    assert_eq!(h.history.len(), len, "repeated failures write nothing");
    let wt3 = h.poll_wt();
    assert_eq!(wt3.attempt, 3);
    h.complete_wt(&wt3, vec![complete_workflow("ok")]).unwrap();
    assert_eq!(
        h.history_text(),
        lines(
            "1 WorkflowExecutionStarted
             2 WorkflowTaskScheduled
             3 WorkflowTaskStarted
             4 WorkflowTaskFailed
             5 WorkflowTaskScheduled
             6 WorkflowTaskStarted
             7 WorkflowTaskCompleted
             8 WorkflowExecutionCompleted"
        )
    );
    match &h.event(5).attributes {
        Some(Attributes::WorkflowTaskScheduledEventAttributes(a)) => assert_eq!(a.attempt, 3),
        _ => panic!(),
    }
    // The stale token of attempt 2 is rejected.
    let mut h = Harness::new();
    let wt = h.poll_wt();
    fail(&mut h, &wt);
    let before = h.ms.clone();
    let err = h.complete_wt(&wt, vec![]).unwrap_err();
    assert!(matches!(err, HistoryError::NotFound(_)));
    assert_eq!(h.ms, before);
}

#[test]
fn signal_converts_a_transient_task_to_a_normal_one() {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    let req = FailWorkflowTaskRequest {
        token: WorkflowTaskToken::of(&wt),
        cause: WorkflowTaskFailedCause::WorkflowWorkerUnhandledFailure as i32,
        failure: None,
        identity: "worker".into(),
        now: h.now,
    };
    h.run(|ms, _| fail_workflow_task(ms, req)).unwrap();
    h.signal("s", "sig").unwrap();
    let wt = h.poll_wt();
    assert_eq!(wt.attempt, 1);
    assert!(wt.transient_events.is_empty());
    assert_eq!(
        h.history_text(),
        lines(
            "1 WorkflowExecutionStarted
             2 WorkflowTaskScheduled
             3 WorkflowTaskStarted
             4 WorkflowTaskFailed
             5 WorkflowExecutionSignaled
             6 WorkflowTaskScheduled
             7 WorkflowTaskStarted"
        )
    );
}

#[test]
fn workflow_task_start_to_close_timeout() {
    let mut h = Harness::new();
    h.poll_wt();
    let timer = h.timer(|k| {
        matches!(
            k,
            TimerKind::WorkflowTaskTimeout {
                timeout: WorkflowTaskTimeoutKind::StartToClose,
                ..
            }
        )
    });
    assert_eq!(timer.fire_at, h.now + 10 * SECOND);
    h.fire_when_due(timer.clone());
    assert_eq!(h.last_event().event_type(), EventType::WorkflowTaskTimedOut);
    // Firing it again is a no-op.
    let len = h.history.len();
    h.fire(timer);
    assert_eq!(h.history.len(), len);
    let wt = h.poll_wt();
    assert_eq!(wt.attempt, 2);
}

#[test]
fn sticky_queue_and_schedule_to_start_fallback() {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    h.complete_wt_with(&wt, vec![start_timer("t", 1000)], |r| {
        r.sticky_attributes = Some(StickyAttributes {
            worker_task_queue: "sticky-1".into(),
            schedule_to_start_timeout: 10 * SECOND,
        })
    })
    .unwrap();
    h.advance(SECOND);
    let t = h.timer(|k| matches!(k, TimerKind::User { .. }));
    h.fire(t);
    let wt = h.ms.workflow_task.clone().unwrap();
    assert!(wt.task_queue.sticky);
    assert_eq!(wt.task_queue.name, "sticky-1");
    let s2s = h.timer(|k| {
        matches!(
            k,
            TimerKind::WorkflowTaskTimeout {
                timeout: WorkflowTaskTimeoutKind::ScheduleToStart,
                ..
            }
        )
    });
    h.fire_when_due(s2s);
    let wt = h.ms.workflow_task.clone().unwrap();
    assert!(!wt.task_queue.sticky);
    assert_eq!(wt.attempt, 1);
    assert_eq!(
        h.history_text(),
        lines(
            "1 WorkflowExecutionStarted
             2 WorkflowTaskScheduled
             3 WorkflowTaskStarted
             4 WorkflowTaskCompleted
             5 TimerStarted
             6 TimerFired
             7 WorkflowTaskScheduled
             8 WorkflowTaskTimedOut
             9 WorkflowTaskScheduled"
        )
    );
    match &h.event(7).attributes {
        Some(Attributes::WorkflowTaskScheduledEventAttributes(a)) => {
            let tq = a.task_queue.as_ref().unwrap();
            assert_eq!(
                (tq.name.as_str(), tq.kind, tq.normal_name.as_str()),
                ("sticky-1", TaskQueueKind::Sticky as i32, TQ)
            );
        }
        _ => panic!(),
    }
}

#[test]
fn sticky_poll_gets_partial_history_and_inline_next_task() {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    let reply = h
        .complete_wt_with(&wt, vec![], |r| {
            r.force_create_new_workflow_task = true;
            r.return_new_workflow_task = true;
            r.sticky_attributes = Some(StickyAttributes {
                worker_task_queue: "sticky-1".into(),
                schedule_to_start_timeout: 10 * SECOND,
            });
        })
        .unwrap();
    let next = reply.new_workflow_task.expect("inline task");
    assert!(next.sticky_execution_enabled);
    assert_eq!(next.first_event_id(), 4);
    assert_eq!((next.scheduled_event_id, next.started_event_id), (5, 6));
    // No dispatch for a task that was handed out inline.
    assert!(
        !h.tasks
            .iter()
            .any(|t| matches!(t, Task::WorkflowTask(d) if d.stamp == next.stamp))
    );
    h.complete_wt(&next, vec![complete_workflow("x")]).unwrap();
    assert_eq!(h.ms.status, WorkflowStatus::Completed);
}

#[test]
fn bad_command_fails_the_task() {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    let reply = h
        .complete_wt(
            &wt,
            vec![
                start_timer("t", 1000),
                schedule_activity_with("", "a", |_| {}),
            ],
        )
        .unwrap();
    assert_eq!(
        reply.task_failed,
        Some(HistoryError::InvalidArgument(
            "BadScheduleActivityAttributes: activityId is not set".into()
        ))
    );
    // The timer of the same completion was discarded with it.
    assert!(h.ms.timers.is_empty());
    assert_eq!(
        h.history_text(),
        lines(
            "1 WorkflowExecutionStarted
             2 WorkflowTaskScheduled
             3 WorkflowTaskStarted
             4 WorkflowTaskFailed"
        )
    );
    match &h.event(4).attributes {
        Some(Attributes::WorkflowTaskFailedEventAttributes(a)) => {
            assert_eq!(
                a.cause,
                WorkflowTaskFailedCause::BadScheduleActivityAttributes as i32
            )
        }
        _ => panic!(),
    }
    // Missing timeouts are rejected too.
    let mut h = Harness::new();
    let wt = h.poll_wt();
    let reply = h
        .complete_wt(&wt, vec![schedule_activity_with("1", "a", |_| {})])
        .unwrap();
    assert!(
        matches!(reply.task_failed, Some(HistoryError::InvalidArgument(m)) if m.contains("StartToCloseTimeout or ScheduleToCloseTimeout"))
    );
}

#[test]
fn a_command_this_server_cannot_carry_out_fails_the_task_visibly() {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    let cmd = Command {
        command_type: CommandType::ScheduleNexusOperation as i32,
        attributes: Some(CA::ScheduleNexusOperationCommandAttributes(
            Default::default(),
        )),
        ..Default::default()
    };
    let reply = h.complete_wt(&wt, vec![start_timer("t", 10), cmd]).unwrap();
    let message = "FeatureDisabled: ScheduleNexusOperation commands are not supported \
                   by this server (Dura) yet";
    assert_eq!(
        reply.task_failed,
        Some(HistoryError::InvalidArgument(message.into()))
    );
    // Nothing of the completion stays; the failure is in history, and a new (transient)
    // attempt of the task follows.
    assert!(h.ms.timers.is_empty());
    assert_eq!(h.ms.workflow_task.as_ref().map(|t| t.attempt), Some(2));
    assert_eq!(
        h.history_text(),
        lines(
            "1 WorkflowExecutionStarted
             2 WorkflowTaskScheduled
             3 WorkflowTaskStarted
             4 WorkflowTaskFailed"
        )
    );
    match &h.event(4).attributes {
        Some(Attributes::WorkflowTaskFailedEventAttributes(a)) => {
            assert_eq!(a.cause, WorkflowTaskFailedCause::FeatureDisabled as i32);
            assert_eq!(a.failure.as_ref().unwrap().message, message);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unknown_command_type_or_a_misplaced_close_changes_nothing() {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    let before = h.ms.clone();
    let unknown = Command {
        command_type: CommandType::Unspecified as i32,
        ..Default::default()
    };
    let err = h
        .complete_wt(&wt, vec![start_timer("t", 10), unknown])
        .unwrap_err();
    assert_eq!(
        err,
        HistoryError::InvalidArgument("Unknown command type: 0".into())
    );
    assert_eq!(h.ms, before);
    // A close command that is not last is refused outright.
    let err = h
        .complete_wt(&wt, vec![complete_workflow("x"), start_timer("t", 10)])
        .unwrap_err();
    assert!(
        matches!(err, HistoryError::InvalidArgument(m) if m.contains("must be the last command"))
    );
    assert_eq!(h.ms, before);
}

#[test]
fn fail_workflow_records_failure() {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    h.complete_wt(&wt, vec![fail_workflow("invalid order")])
        .unwrap();
    assert_eq!(h.ms.status, WorkflowStatus::Failed);
    match &h.last_event().attributes {
        Some(Attributes::WorkflowExecutionFailedEventAttributes(a)) => {
            assert_eq!(a.failure.as_ref().unwrap().message, "invalid order");
            assert_eq!(a.workflow_task_completed_event_id, 4);
        }
        _ => panic!(),
    }
}

#[test]
fn terminate_fails_started_task_and_closes() {
    let mut h = Harness::new();
    h.poll_wt();
    h.signal("s", "x").unwrap();
    let req = TerminateRequest {
        reason: "Manual termination".into(),
        details: None,
        identity: "client".into(),
        now: h.now,
    };
    h.run(|ms, _| terminate_workflow(ms, req.clone())).unwrap();
    assert_eq!(
        h.history_text(),
        lines(
            "1 WorkflowExecutionStarted
             2 WorkflowTaskScheduled
             3 WorkflowTaskStarted
             4 WorkflowTaskFailed
             5 WorkflowExecutionSignaled
             6 WorkflowExecutionTerminated"
        )
    );
    assert_eq!(h.ms.status, WorkflowStatus::Terminated);
    assert!(matches!(
        h.run(|ms, _| terminate_workflow(ms, req)),
        Err(HistoryError::NotFound(_))
    ));
    assert!(matches!(h.signal("s", "y"), Err(HistoryError::NotFound(_))));
}

#[test]
fn cancel_workflow_request_and_command() {
    use dura_history::api::lifecycle::{RequestCancelRequest, request_cancel_workflow};
    let mut h = Harness::new();
    let wt = h.poll_wt();
    h.complete_wt(&wt, vec![start_timer("sleep", 3_600_000)])
        .unwrap();
    let req = RequestCancelRequest {
        reason: String::new(),
        identity: "client".into(),
        request_id: "c1".into(),
        now: h.now,
    };
    h.run(|ms, _| request_cancel_workflow(ms, req.clone()))
        .unwrap();
    h.run(|ms, _| request_cancel_workflow(ms, req)).unwrap();
    let wt = h.poll_wt();
    let cancel = Command {
        command_type: CommandType::CancelWorkflowExecution as i32,
        attributes: Some(CA::CancelWorkflowExecutionCommandAttributes(
            Default::default(),
        )),
        ..Default::default()
    };
    h.complete_wt(&wt, vec![cancel_timer("sleep"), cancel])
        .unwrap();
    assert_eq!(
        h.history_text(),
        lines(
            "1 WorkflowExecutionStarted
             2 WorkflowTaskScheduled
             3 WorkflowTaskStarted
             4 WorkflowTaskCompleted
             5 TimerStarted
             6 WorkflowExecutionCancelRequested
             7 WorkflowTaskScheduled
             8 WorkflowTaskStarted
             9 WorkflowTaskCompleted
             10 TimerCanceled
             11 WorkflowExecutionCanceled"
        )
    );
    assert_eq!(h.ms.status, WorkflowStatus::Canceled);
    // Asked again once closed: done, as on the real server, and nothing is written.
    let len = h.history.len();
    let again = RequestCancelRequest {
        reason: String::new(),
        identity: "client".into(),
        request_id: "c2".into(),
        now: h.now,
    };
    h.run(|ms, _| request_cancel_workflow(ms, again)).unwrap();
    assert_eq!(h.history.len(), len);
}

#[test]
fn pending_tasks_rebuild_matches_state() {
    let mut h = Harness::new();
    assert_eq!(pending_tasks(&h.ms), h.tasks);
    let wt = h.poll_wt();
    h.complete_wt(
        &wt,
        vec![
            schedule_activity_with("1", "a", |a| {
                a.start_to_close_timeout = Some(dura_history::time::to_duration(30 * SECOND));
                a.schedule_to_close_timeout = Some(dura_history::time::to_duration(600 * SECOND));
            }),
            start_timer("t", 5000),
        ],
    )
    .unwrap();
    let pending = pending_tasks(&h.ms);
    assert!(
        pending
            .iter()
            .any(|t| matches!(t, Task::ActivityTask(d) if d.scheduled_event_id == 5))
    );
    assert!(
        pending
            .iter()
            .any(|t| matches!(t, Task::Timer(t) if matches!(t.kind, TimerKind::User { .. })))
    );
    assert_eq!(
        pending
            .iter()
            .filter(|t| matches!(t, Task::Timer(_)))
            .count(),
        3,
        "{pending:?}"
    );
    // Every pending task was emitted by some transition.
    for t in &pending {
        assert!(h.tasks.contains(t), "{t:?}");
    }
}

#[test]
fn upserted_search_attributes_are_checked_like_the_real_server() {
    use temporalio_protos::temporal::api::{
        command::v1::UpsertWorkflowSearchAttributesCommandAttributes,
        common::v1::{Payload, SearchAttributes},
    };
    let upsert = |name: &str, json: &str| Command {
        command_type: CommandType::UpsertWorkflowSearchAttributes as i32,
        attributes: Some(CA::UpsertWorkflowSearchAttributesCommandAttributes(
            UpsertWorkflowSearchAttributesCommandAttributes {
                search_attributes: Some(SearchAttributes {
                    indexed_fields: [(
                        name.to_string(),
                        Payload {
                            data: json.as_bytes().to_vec(),
                            ..Default::default()
                        },
                    )]
                    .into(),
                }),
            },
        )),
        ..Default::default()
    };
    let mut h = Harness::new();
    let wt = h.poll_wt();
    let reply = h
        .complete_wt(&wt, vec![upsert("NotThere", r#""x""#)])
        .unwrap();
    assert!(matches!(
        reply.task_failed,
        Some(HistoryError::InvalidArgument(m)) if m == "BadSearchAttributes: Namespace default has no mapping defined for search attribute NotThere"
    ));
    let failed = h.events_of(EventType::WorkflowTaskFailed);
    assert!(matches!(
        &failed[0].attributes,
        Some(Attributes::WorkflowTaskFailedEventAttributes(a))
            if a.cause == WorkflowTaskFailedCause::BadSearchAttributes as i32
    ));

    // Registered attributes of the right type, and the SDK's patch marker, are accepted.
    let wt = h.poll_wt();
    h.complete_wt_with(
        &wt,
        vec![
            upsert("Customer", r#""acme""#),
            upsert("TemporalChangeVersion", r#"["p-1"]"#),
        ],
        |r| {
            r.custom_search_attributes = [(
                "Customer".to_string(),
                dura_history::visibility::SearchAttributeType::Keyword,
            )]
            .into()
        },
    )
    .unwrap();
    assert_eq!(
        h.events_of(EventType::UpsertWorkflowSearchAttributes).len(),
        2
    );
}
