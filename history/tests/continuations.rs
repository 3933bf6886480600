//! Runs that continue as a new run of the same workflow id, through the store: a retry (failure
//! or run timeout under a retry policy) and continue-as-new. The closed run points at the new
//! one, the current run moves, and a retry chain stops at the policy's limits.

mod support;

use dura_history::limits::Limits;
use dura_history::{
    api::{
        RunReply, RunRequest,
        timer::FireTimerRequest,
        workflow_task::{CompleteWorkflowTaskRequest, RecordWorkflowTaskStartedRequest},
    },
    keys::RunKey,
    mutable_state::WorkflowStatus,
    store::{self, MemKv, RunApplied},
    tasks::{Task, TaskQueueRef, TimerKind, TimerTask},
    time::{SECOND, to_duration},
};
use support::*;
use temporalio_protos::temporal::api::{
    command::v1::{
        Command, ContinueAsNewWorkflowExecutionCommandAttributes, command::Attributes as CA,
    },
    common::v1::RetryPolicy,
    enums::v1::{CommandType, ContinueAsNewInitiator, EventType, RetryState},
    history::v1::history_event::Attributes,
};

/// The timer of `kind` among a transition's tasks.
fn timer(tasks: &[Task], kind: TimerKind) -> Option<TimerTask> {
    tasks.iter().find_map(|t| match t {
        Task::Timer(t) if t.kind == kind => Some(t.clone()),
        _ => None,
    })
}

/// Polls the current run's workflow task and answers it with FailWorkflowExecution.
fn fail_current_run(kv: &mut MemKv, new_run_id: &str, now: i64) -> RunApplied {
    let failure = fail_workflow_with(app_failure("boom", "Flaky", false));
    complete_current_run(kv, failure, new_run_id, now)
}

/// Polls the current run's workflow task and completes it with `command`.
fn complete_current_run(
    kv: &mut MemKv,
    command: Command,
    new_run_id: &str,
    now: i64,
) -> RunApplied {
    let (_, ms) = store::resolve_run(kv, "ns", "wf", "").unwrap();
    let wt = ms.workflow_task.expect("a scheduled workflow task");
    let started = store::apply_to_run(
        kv,
        "ns",
        "wf",
        "",
        RunRequest::RecordWorkflowTaskStarted(RecordWorkflowTaskStartedRequest {
            scheduled_event_id: wt.scheduled_event_id,
            stamp: wt.stamp,
            request_id: format!("poll-{new_run_id}"),
            identity: "w".into(),
            poll_task_queue: TaskQueueRef::normal(TQ),
            now,
        }),
        &Limits::temporal(),
    )
    .unwrap();
    let RunReply::WorkflowTaskStarted(started) = started.transition.reply else {
        panic!()
    };
    store::apply_to_run(
        kv,
        "ns",
        "wf",
        "",
        RunRequest::CompleteWorkflowTask(CompleteWorkflowTaskRequest {
            new_run_id: new_run_id.into(),
            ..complete_request(&started, vec![command], now)
        }),
        &Limits::temporal(),
    )
    .unwrap()
}

#[test]
fn failed_run_retries_until_maximum_attempts() {
    let mut kv = MemKv::default();
    let mut req = start_request("wf", "run-1", "r1");
    req.retry_policy = Some(RetryPolicy {
        initial_interval: Some(to_duration(SECOND)),
        backoff_coefficient: 2.0,
        maximum_attempts: 2,
        ..Default::default()
    });
    store::start_workflow(&mut kv, req).unwrap();

    // Attempt 1 fails: the run closes pointing at run-2, which waits out the 1 s backoff.
    let applied = fail_current_run(&mut kv, "run-2", T0 + SECOND);
    let failed = applied.transition.events.last().unwrap();
    let Some(Attributes::WorkflowExecutionFailedEventAttributes(a)) = &failed.attributes else {
        panic!()
    };
    assert_eq!(a.new_execution_run_id, "run-2");
    assert_eq!(a.retry_state(), RetryState::InProgress);
    let (new_key, new_run) = applied.new_run.expect("a retry run");
    assert_eq!(new_key, RunKey::new("ns", "wf", "run-2"));
    assert_eq!(new_run.state.attempt, 2);
    assert_eq!(new_run.state.first_execution_run_id, "run-1");
    let Some(Attributes::WorkflowExecutionStartedEventAttributes(s)) =
        &new_run.events[0].attributes
    else {
        panic!()
    };
    assert_eq!(s.continued_execution_run_id, "run-1");
    assert_eq!(s.initiator(), ContinueAsNewInitiator::Retry);
    assert_eq!(s.attempt, 2);
    assert_eq!(s.first_workflow_task_backoff, Some(to_duration(SECOND)));
    assert_eq!(s.continued_failure.as_ref().unwrap().message, "boom");
    assert_eq!(s.input, Some(payloads("Temporal")));
    assert_eq!(
        new_run.events.len(),
        1,
        "no workflow task before the backoff"
    );
    let backoff = timer(&new_run.tasks, TimerKind::WorkflowStartDelay).expect("a backoff timer");
    assert_eq!(backoff.fire_at, T0 + 2 * SECOND);
    assert_eq!(
        store::read_current(&kv, "ns", "wf")
            .unwrap()
            .unwrap()
            .run_id,
        "run-2"
    );
    let old = store::read_run(&kv, &RunKey::new("ns", "wf", "run-1"))
        .unwrap()
        .unwrap();
    assert_eq!(old.status, WorkflowStatus::Failed);

    // The backoff fires, the first task of attempt 2 is scheduled; it fails too: no attempt 3.
    let fired = store::apply_to_run(
        &mut kv,
        "ns",
        "wf",
        "run-2",
        RunRequest::FireTimer(FireTimerRequest {
            new_run_id: "retry-run".into(),
            timer: backoff,
            now: T0 + 2 * SECOND,
        }),
        &Limits::temporal(),
    )
    .unwrap();
    let names: Vec<_> = fired.transition.events.iter().map(event_name).collect();
    assert_eq!(names, ["WorkflowTaskScheduled"]);
    let applied = fail_current_run(&mut kv, "run-3", T0 + 3 * SECOND);
    assert!(applied.new_run.is_none());
    let failed = applied.transition.events.last().unwrap();
    assert_eq!(failed.event_type(), EventType::WorkflowExecutionFailed);
    let Some(Attributes::WorkflowExecutionFailedEventAttributes(a)) = &failed.attributes else {
        panic!()
    };
    assert_eq!(a.retry_state(), RetryState::MaximumAttemptsReached);
    assert!(a.new_execution_run_id.is_empty());
    assert_eq!(
        store::read_current(&kv, "ns", "wf")
            .unwrap()
            .unwrap()
            .run_id,
        "run-2"
    );
}

#[test]
fn run_timeout_retries_but_execution_timeout_does_not() {
    let mut kv = MemKv::default();
    let mut req = start_request("wf", "run-1", "r1");
    req.run_timeout = 5 * SECOND;
    req.execution_timeout = 60 * SECOND;
    req.retry_policy = Some(RetryPolicy {
        initial_interval: Some(to_duration(SECOND)),
        backoff_coefficient: 1.0,
        ..Default::default()
    });
    let started = store::start_workflow(&mut kv, req).unwrap();
    let run_timeout = timer(
        &started.new_run.unwrap().tasks,
        TimerKind::WorkflowRunTimeout,
    )
    .expect("a run timeout timer");
    let fire = |kv: &mut MemKv, run_id: &str, timer, new_run_id: &str, now| {
        store::apply_to_run(
            kv,
            "ns",
            "wf",
            run_id,
            RunRequest::FireTimer(FireTimerRequest {
                timer,
                new_run_id: new_run_id.into(),
                now,
            }),
            &Limits::temporal(),
        )
        .unwrap()
    };
    let applied = fire(&mut kv, "run-1", run_timeout, "run-2", T0 + 5 * SECOND);
    let closed = applied.transition.events.last().unwrap();
    let Some(Attributes::WorkflowExecutionTimedOutEventAttributes(a)) = &closed.attributes else {
        panic!()
    };
    assert_eq!(a.retry_state(), RetryState::InProgress);
    assert_eq!(a.new_execution_run_id, "run-2");
    let (_, run2) = applied.new_run.expect("a retry run");
    let Some(Attributes::WorkflowExecutionStartedEventAttributes(s)) = &run2.events[0].attributes
    else {
        panic!()
    };
    assert_eq!(
        s.continued_failure.as_ref().unwrap().message,
        "workflow timeout"
    );
    // The chain keeps the first run's execution deadline: T0 + 60 s.
    assert_eq!(run2.state.execution_expiration_time, T0 + 60 * SECOND);

    // The execution deadline closes the whole chain: no further run.
    let expiry = timer(&run2.tasks, TimerKind::WorkflowExecutionTimeout)
        .expect("an execution timeout timer");
    let applied = fire(&mut kv, "run-2", expiry, "run-3", T0 + 60 * SECOND);
    assert!(applied.new_run.is_none());
    let closed = applied.transition.events.last().unwrap();
    let Some(Attributes::WorkflowExecutionTimedOutEventAttributes(a)) = &closed.attributes else {
        panic!()
    };
    assert_eq!(a.retry_state(), RetryState::Timeout);
}

#[test]
fn continue_as_new_starts_the_requested_run() {
    let mut kv = MemKv::default();
    let mut req = start_request("wf", "run-1", "r1");
    req.execution_timeout = 600 * SECOND;
    store::start_workflow(&mut kv, req).unwrap();
    let command = Command {
        command_type: CommandType::ContinueAsNewWorkflowExecution as i32,
        attributes: Some(CA::ContinueAsNewWorkflowExecutionCommandAttributes(
            ContinueAsNewWorkflowExecutionCommandAttributes {
                input: Some(payloads("next")),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    let applied = complete_current_run(&mut kv, command, "run-2", T0 + 5 * SECOND);
    let closed = applied.transition.events.last().unwrap();
    let Some(Attributes::WorkflowExecutionContinuedAsNewEventAttributes(a)) = &closed.attributes
    else {
        panic!()
    };
    assert_eq!(a.new_execution_run_id, "run-2");
    // Defaults come from the closing run; the initiator stays as the command left it.
    assert_eq!(a.workflow_type.as_ref().unwrap().name, "SayHello");
    assert_eq!(a.task_queue.as_ref().unwrap().name, TQ);
    assert_eq!(a.workflow_task_timeout, Some(to_duration(10 * SECOND)));
    assert_eq!(a.initiator, 0);
    let old = store::read_run(&kv, &RunKey::new("ns", "wf", "run-1"))
        .unwrap()
        .unwrap();
    assert_eq!(old.status, WorkflowStatus::ContinuedAsNew);

    let (_, run2) = applied.new_run.expect("the continued run");
    assert_eq!(run2.state.attempt, 1);
    assert_eq!(run2.state.first_execution_run_id, "run-1");
    assert_eq!(run2.state.execution_expiration_time, T0 + 600 * SECOND);
    let Some(Attributes::WorkflowExecutionStartedEventAttributes(s)) = &run2.events[0].attributes
    else {
        panic!()
    };
    assert_eq!(s.input, Some(payloads("next")));
    assert_eq!(s.initiator(), ContinueAsNewInitiator::Workflow);
    assert_eq!(s.continued_execution_run_id, "run-1");
    // Started 5 s after the first run: no minimum backoff applies, the first task is due now.
    assert_eq!(s.first_workflow_task_backoff, None);
    let names: Vec<_> = run2.events.iter().map(event_name).collect();
    assert_eq!(names, ["WorkflowExecutionStarted", "WorkflowTaskScheduled"]);
    assert_eq!(
        store::read_current(&kv, "ns", "wf")
            .unwrap()
            .unwrap()
            .run_id,
        "run-2"
    );
}
