//! Start policies, timers, workflow timeouts, determinism and the storage layer.

mod support;

use dura_history::limits::Limits;
use dura_history::{
    MutableState,
    api::{
        self, RunReply, RunRequest,
        signal::SignalRequest,
        start::{signal_with_start, start_workflow},
        timer::FireTimerRequest,
        workflow_task::RecordWorkflowTaskStartedRequest,
    },
    error::HistoryError,
    keys::RunKey,
    mutable_state::WorkflowStatus,
    store::{self, KvRead, MemKv},
    tasks::{Task, TimerKind},
    time::{SECOND, from_duration},
};
use support::*;
use temporalio_protos::temporal::api::{
    enums::v1::{EventType, WorkflowIdConflictPolicy, WorkflowIdReusePolicy},
    history::v1::history_event::Attributes,
};

fn running() -> MutableState {
    Harness::new().ms
}

fn closed() -> MutableState {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    h.complete_wt(&wt, vec![complete_workflow("x")]).unwrap();
    h.ms
}

#[test]
fn start_conflict_policies() {
    // FAIL (default) reports the running run and its start request id.
    let mut cur = running();
    let before = cur.clone();
    let err = start_workflow(Some(&mut cur), start_request("wf", "run-2", "req-2")).unwrap_err();
    assert_eq!(
        err,
        HistoryError::WorkflowAlreadyStarted {
            message: "Workflow execution is already running. WorkflowId: wf, RunId: run-1.".into(),
            start_request_id: "req-1".into(),
            run_id: "run-1".into(),
        }
    );
    assert_eq!(cur, before);

    // Same request id: the original start's answer.
    let out = start_workflow(Some(&mut cur), start_request("wf", "run-2", "req-1")).unwrap();
    assert_eq!(
        (out.reply.run_id.as_str(), out.reply.started),
        ("run-1", true)
    );
    assert!(out.new_run.is_none());

    // USE_EXISTING attaches.
    let mut req = start_request("wf", "run-2", "req-3");
    req.id_conflict_policy = WorkflowIdConflictPolicy::UseExisting as i32;
    let out = start_workflow(Some(&mut cur), req).unwrap();
    assert_eq!(
        (out.reply.run_id.as_str(), out.reply.started),
        ("run-1", false)
    );
    assert_eq!(cur, before);

    // TERMINATE_EXISTING closes the running run and starts a new one.
    let mut req = start_request("wf", "run-2", "req-4");
    req.id_conflict_policy = WorkflowIdConflictPolicy::TerminateExisting as i32;
    let out = start_workflow(Some(&mut cur), req).unwrap();
    assert_eq!(
        (out.reply.run_id.as_str(), out.reply.started),
        ("run-2", true)
    );
    assert_eq!(cur.status, WorkflowStatus::Terminated);
    let prev = out.previous_run.unwrap();
    assert_eq!(prev.events.len(), 1);
    match &prev.events[0].attributes {
        Some(Attributes::WorkflowExecutionTerminatedEventAttributes(a)) => {
            assert_eq!(a.reason, "TerminateIfRunning WorkflowIdReusePolicy");
            assert_eq!(a.identity, "history-service");
        }
        _ => panic!(),
    }
    assert_eq!(prev.events[0].event_id, 3);
    let new_run = out.new_run.unwrap();
    assert_eq!(new_run.state.run_id, "run-2");
    assert!(new_run.state.workflow_task_stamp > before.workflow_task_stamp);
}

#[test]
fn start_reuse_policies() {
    let mut cur = closed();
    // ALLOW_DUPLICATE (default).
    let out = start_workflow(Some(&mut cur), start_request("wf", "run-2", "req-2")).unwrap();
    assert_eq!(out.reply.run_id, "run-2");
    // REJECT_DUPLICATE.
    let mut req = start_request("wf", "run-2", "req-2");
    req.id_reuse_policy = WorkflowIdReusePolicy::RejectDuplicate as i32;
    assert!(matches!(
        start_workflow(Some(&mut cur), req),
        Err(HistoryError::WorkflowAlreadyStarted { run_id, .. }) if run_id == "run-1"
    ));
    // ALLOW_DUPLICATE_FAILED_ONLY after a success.
    let mut req = start_request("wf", "run-2", "req-2");
    req.id_reuse_policy = WorkflowIdReusePolicy::AllowDuplicateFailedOnly as i32;
    assert!(matches!(
        start_workflow(Some(&mut cur), req.clone()),
        Err(HistoryError::WorkflowAlreadyStarted { run_id, .. }) if run_id == "run-1"
    ));
    // ... and after a termination.
    let mut failed = running();
    api::lifecycle::terminate_workflow(
        &mut failed,
        api::lifecycle::TerminateRequest {
            reason: "x".into(),
            details: None,
            identity: "c".into(),
            now: T0,
        },
    )
    .unwrap();
    assert!(
        start_workflow(Some(&mut failed), req)
            .unwrap()
            .reply
            .started
    );
}

#[test]
fn start_validation_and_defaults() {
    let mut req = start_request("wf", "run-1", "");
    assert!(matches!(
        start_workflow(None, req.clone()),
        Err(HistoryError::InvalidArgument(_))
    ));
    req.request_id = "r".into();
    req.execution_timeout = 2 * SECOND;
    req.task_timeout = 500 * SECOND;
    let out = start_workflow(None, req).unwrap();
    let run = out.new_run.unwrap();
    match &run.events[0].attributes {
        Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => {
            assert_eq!(
                from_duration(a.workflow_execution_timeout.as_ref()),
                2 * SECOND
            );
            assert_eq!(from_duration(a.workflow_run_timeout.as_ref()), 2 * SECOND);
            // Capped at 120 s, then by the run timeout.
            assert_eq!(from_duration(a.workflow_task_timeout.as_ref()), 2 * SECOND);
            assert!(a.workflow_execution_expiration_time.is_some());
        }
        _ => panic!(),
    }
}

#[test]
fn start_delay_defers_the_first_task() {
    let mut req = start_request("wf", "run-1", "r");
    req.start_delay = 5 * SECOND;
    let mut h = Harness::start(req);
    assert_eq!(h.history_text(), "1 WorkflowExecutionStarted");
    h.signal("early", "s").unwrap();
    assert!(h.ms.workflow_task.is_none(), "signals wait for the delay");
    let t = h.timer(|k| matches!(k, TimerKind::WorkflowStartDelay));
    assert_eq!(t.fire_at, T0 + 5 * SECOND);
    h.fire_when_due(t);
    assert_eq!(
        h.history_text(),
        lines(
            "1 WorkflowExecutionStarted
             2 WorkflowExecutionSignaled
             3 WorkflowTaskScheduled"
        )
    );
}

/// An eager start hands the first workflow task to the caller already started: its events are
/// written in the start, it is never offered to matching, its start-to-close timer is armed, and
/// a retry of the start hands it back again. A start delay declines eagerness.
#[test]
fn eager_start_returns_the_started_first_task() {
    let mut req = start_request("wf", "run-1", "req-1");
    req.eager = true;
    let out = start_workflow(None, req.clone()).unwrap();
    let run = out.new_run.expect("new run");
    let task = out.reply.eager_task.expect("eager task");
    assert_eq!(
        (task.scheduled_event_id, task.started_event_id, task.attempt),
        (2, 3, 1)
    );
    let names: Vec<_> = run.events.iter().map(event_name).collect();
    assert_eq!(
        names,
        [
            "WorkflowExecutionStarted",
            "WorkflowTaskScheduled",
            "WorkflowTaskStarted"
        ]
    );
    match &run.events[2].attributes {
        Some(Attributes::WorkflowTaskStartedEventAttributes(a)) => {
            assert_eq!(
                (a.identity.as_str(), a.request_id.as_str()),
                ("client", "req-1")
            );
        }
        _ => panic!(),
    }
    assert!(!run.tasks.iter().any(|t| matches!(t, Task::WorkflowTask(_))));
    assert!(run.tasks.iter().any(|t| matches!(
        t,
        Task::Timer(timer) if matches!(timer.kind, TimerKind::WorkflowTaskTimeout { .. })
    )));

    let mut cur = run.state;
    let retried = start_workflow(Some(&mut cur), req.clone()).unwrap();
    assert_eq!(retried.reply.eager_task, Some(task));

    let mut delayed = start_request("wf", "run-2", "req-2");
    delayed.eager = true;
    delayed.start_delay = 5 * SECOND;
    let out = start_workflow(None, delayed).unwrap();
    assert!(out.reply.eager_task.is_none());
    assert!(out.new_run.unwrap().state.workflow_task.is_none());
}

#[test]
fn signal_with_start_new_and_existing() {
    let sig = SignalRequest {
        signal_name: "go".into(),
        input: None,
        identity: "c".into(),
        header: None,
        request_id: "s1".into(),
        now: T0,
    };
    let out = signal_with_start(None, start_request("wf", "run-1", "r1"), sig.clone()).unwrap();
    let run = out.new_run.unwrap();
    let names: Vec<_> = run.events.iter().map(event_name).collect();
    assert_eq!(
        names,
        [
            "WorkflowExecutionStarted",
            "WorkflowExecutionSignaled",
            "WorkflowTaskScheduled"
        ]
    );

    let mut cur = run.state;
    let mut sig2 = sig;
    sig2.request_id = "s2".into();
    let out = signal_with_start(Some(&mut cur), start_request("wf", "run-2", "r2"), sig2).unwrap();
    assert_eq!(
        (out.reply.run_id.as_str(), out.reply.started),
        ("run-1", false)
    );
    assert_eq!(
        out.previous_run.unwrap().events[0].event_type(),
        EventType::WorkflowExecutionSignaled
    );
}

#[test]
fn timer_fires_and_stale_fire_is_noop() {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    h.complete_wt(&wt, vec![start_timer("1", 1500)]).unwrap();
    let t = h.timer(|k| matches!(k, TimerKind::User { .. }));
    assert_eq!(t.fire_at, h.now + 1500 * 1_000_000);
    h.fire_when_due(t.clone());
    let names: Vec<_> = h.history[4..].iter().map(event_name).collect();
    assert_eq!(
        names,
        ["TimerStarted", "TimerFired", "WorkflowTaskScheduled"]
    );
    match &h.event(6).attributes {
        Some(Attributes::TimerFiredEventAttributes(a)) => {
            assert_eq!((a.timer_id.as_str(), a.started_event_id), ("1", 5))
        }
        _ => panic!(),
    }
    let before = h.ms.clone();
    let len = h.history.len();
    h.fire(t);
    assert_eq!((h.ms.clone(), h.history.len()), (before, len));
}

#[test]
fn timer_cancel_and_duplicate_id() {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    h.complete_wt(&wt, vec![start_timer("t", 60_000)]).unwrap();
    let timer = h.timer(|k| matches!(k, TimerKind::User { .. }));
    h.signal("finish", "s").unwrap();
    let wt = h.poll_wt();
    // Starting a timer with a pending id fails the task.
    let reply = h.complete_wt(&wt, vec![start_timer("t", 10)]).unwrap();
    assert!(
        matches!(reply.task_failed, Some(HistoryError::InvalidArgument(m)) if m.starts_with("StartTimerDuplicateId"))
    );
    let wt = h.poll_wt();
    h.complete_wt(&wt, vec![cancel_timer("t"), complete_workflow("signalled")])
        .unwrap();
    let names: Vec<_> = h.history.iter().map(event_name).collect();
    assert!(names.ends_with(&[
        "WorkflowTaskCompleted".into(),
        "TimerCanceled".into(),
        "WorkflowExecutionCompleted".into()
    ]));
    assert!(!names.contains(&"TimerFired".to_string()));
    let len = h.history.len();
    h.fire_when_due(timer);
    assert_eq!(h.history.len(), len);
}

#[test]
fn timer_fired_while_task_runs_can_still_be_canceled() {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    h.complete_wt(&wt, vec![start_timer("t", 1000)]).unwrap();
    let timer = h.timer(|k| matches!(k, TimerKind::User { .. }));
    h.signal("s", "s1").unwrap();
    let wt = h.poll_wt();
    h.fire_when_due(timer);
    assert_eq!(h.ms.buffered_events.len(), 1);
    h.complete_wt(&wt, vec![cancel_timer("t"), complete_workflow("x")])
        .unwrap();
    assert_eq!(h.ms.status, WorkflowStatus::Completed);
    assert!(h.events_of(EventType::TimerFired).is_empty());
}

#[test]
fn timer_fires_with_no_worker() {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    h.complete_wt(&wt, vec![start_timer("1", 1000)]).unwrap();
    let t = h.timer(|k| matches!(k, TimerKind::User { .. }));
    h.fire_when_due(t);
    let names: Vec<_> = h.history.iter().map(event_name).collect();
    assert_eq!(
        &names[names.len() - 2..],
        ["TimerFired", "WorkflowTaskScheduled"]
    );
}

#[test]
fn workflow_execution_timeout() {
    let mut req = start_request("wf", "run-1", "r");
    req.execution_timeout = 2 * SECOND;
    let mut h = Harness::start(req);
    let wt = h.poll_wt();
    h.complete_wt(&wt, vec![start_timer("sleep", 3_600_000)])
        .unwrap();
    let t = h.timer(|k| matches!(k, TimerKind::WorkflowRunTimeout));
    assert_eq!(t.fire_at, T0 + 2 * SECOND);
    h.fire_when_due(t);
    assert_eq!(
        h.last_event().event_type(),
        EventType::WorkflowExecutionTimedOut
    );
    assert_eq!(h.ms.status, WorkflowStatus::TimedOut);
    assert!(h.ms.timers.is_empty());
    assert!(dura_history::pending_tasks(&h.ms).is_empty());
}

#[test]
fn run_timeout_with_started_task_fails_it_first() {
    let mut req = start_request("wf", "run-1", "r");
    req.run_timeout = SECOND;
    let mut h = Harness::start(req);
    h.poll_wt();
    h.signal("s", "s").unwrap();
    let t = h.timer(|k| matches!(k, TimerKind::WorkflowRunTimeout));
    h.fire_when_due(t);
    let names: Vec<_> = h.history[3..].iter().map(event_name).collect();
    assert_eq!(
        names,
        [
            "WorkflowTaskFailed",
            "WorkflowExecutionSignaled",
            "WorkflowExecutionTimedOut"
        ]
    );
}

/// Drives a fixed request script; used to show apply is a pure function of (state, request).
fn script(ms: &mut MutableState) -> Vec<u8> {
    let mut out = Vec::new();
    let mut record = |t: Vec<u8>| out.extend(t);
    let wt = ms.workflow_task.clone().unwrap();
    let r = api::apply(
        ms,
        RunRequest::RecordWorkflowTaskStarted(RecordWorkflowTaskStartedRequest {
            scheduled_event_id: wt.scheduled_event_id,
            stamp: wt.stamp,
            request_id: "p".into(),
            identity: "w".into(),
            poll_task_queue: normal(TQ),
            now: T0 + 1,
        }),
        &Limits::temporal(),
    )
    .unwrap();
    record(bincode::serialize(&r).unwrap());
    let RunReply::WorkflowTaskStarted(started) = r.reply else {
        panic!()
    };
    let r = api::apply(
        ms,
        RunRequest::CompleteWorkflowTask(complete_request(
            &started,
            vec![schedule_activity("1", "a", 10), start_timer("t", 100)],
            T0 + 2,
        )),
        &Limits::temporal(),
    )
    .unwrap();
    record(bincode::serialize(&r).unwrap());
    let timer = r
        .tasks
        .iter()
        .find_map(|t| match t {
            Task::Timer(t) if matches!(t.kind, TimerKind::User { .. }) => Some(t.clone()),
            _ => None,
        })
        .unwrap();
    let r = api::apply(
        ms,
        RunRequest::FireTimer(FireTimerRequest {
            new_run_id: "retry-run".into(),
            timer,
            now: T0 + SECOND,
        }),
        &Limits::temporal(),
    )
    .unwrap();
    record(bincode::serialize(&r).unwrap());
    record(bincode::serialize(ms).unwrap());
    out
}

#[test]
fn apply_is_deterministic_and_state_round_trips_through_bincode() {
    let base = running();
    let mut a = base.clone();
    let mut b = base.clone();
    let out_a = script(&mut a);
    let out_b = script(&mut b);
    assert_eq!(out_a, out_b);
    assert_eq!(
        bincode::serialize(&a).unwrap(),
        bincode::serialize(&b).unwrap()
    );

    // Through bincode and back: equal state, and it keeps working identically.
    let decoded: MutableState = bincode::deserialize(&bincode::serialize(&a).unwrap()).unwrap();
    assert_eq!(decoded, a);
    let mut c: MutableState = bincode::deserialize(&bincode::serialize(&base).unwrap()).unwrap();
    assert_eq!(c, base);
    assert_eq!(script(&mut c), out_a);
}

/// Mutable state is stored in its versioned envelope, and state written by a build from before
/// envelopes (bare bincode) still reads back.
#[test]
fn stored_state_is_versioned_and_old_state_still_decodes() {
    use dura_codec::{Kind, MAGIC, Persisted};
    let ms = running();
    let stored = ms.encode();
    assert_eq!(&stored[..3], &[MAGIC, Kind::MutableState as u8, 1]);
    assert_eq!(MutableState::decode(&stored).unwrap(), ms);
    let before_envelopes = bincode::serialize(&ms).unwrap();
    assert_eq!(MutableState::decode(&before_envelopes).unwrap(), ms);
}

#[test]
fn requests_and_replies_round_trip_through_bincode() {
    let req = RunRequest::Signal(SignalRequest {
        signal_name: "s".into(),
        input: Some(payloads("x")),
        identity: "c".into(),
        header: None,
        request_id: "r".into(),
        now: T0,
    });
    let back: RunRequest = bincode::deserialize(&bincode::serialize(&req).unwrap()).unwrap();
    assert_eq!(back, req);
    let err = HistoryError::WorkflowAlreadyStarted {
        message: "m".into(),
        start_request_id: "a".into(),
        run_id: "b".into(),
    };
    let back: HistoryError = bincode::deserialize(&bincode::serialize(&err).unwrap()).unwrap();
    assert_eq!(back, err);
}

#[test]
fn store_start_apply_and_page_history() {
    let mut kv = MemKv::default();
    let out = store::start_workflow(&mut kv, start_request("wf", "run-1", "r1")).unwrap();
    assert!(out.reply.started);
    let cur = store::read_current(&kv, "ns", "wf").unwrap().unwrap();
    assert_eq!(cur.run_id, "run-1");

    // Duplicate start through the store is refused and writes nothing.
    let snapshot = kv.0.clone();
    assert!(matches!(
        store::start_workflow(&mut kv, start_request("wf", "run-2", "r2")),
        Err(HistoryError::WorkflowAlreadyStarted { run_id, .. }) if run_id == "run-1"
    ));
    assert_eq!(kv.0, snapshot);

    // Drive the run through the store (empty run id = current run).
    let (_, ms) = store::resolve_run(&kv, "ns", "wf", "").unwrap();
    let wt = ms.workflow_task.unwrap();
    let store::RunApplied {
        run: key,
        transition: t,
        ..
    } = store::apply_to_run(
        &mut kv,
        "ns",
        "wf",
        "",
        RunRequest::RecordWorkflowTaskStarted(RecordWorkflowTaskStartedRequest {
            scheduled_event_id: wt.scheduled_event_id,
            stamp: wt.stamp,
            request_id: "p".into(),
            identity: "w".into(),
            poll_task_queue: normal(TQ),
            now: T0 + 1,
        }),
        &Limits::temporal(),
    )
    .unwrap();
    assert_eq!(key, RunKey::new("ns", "wf", "run-1"));
    let RunReply::WorkflowTaskStarted(started) = t.reply else {
        panic!()
    };
    for i in 0..5 {
        store::apply_to_run(
            &mut kv,
            "ns",
            "wf",
            "run-1",
            RunRequest::Signal(SignalRequest {
                signal_name: "s".into(),
                input: None,
                identity: "c".into(),
                header: None,
                request_id: format!("s{i}"),
                now: T0 + 2,
            }),
            &Limits::temporal(),
        )
        .unwrap();
    }
    let store::RunApplied { transition: t, .. } = store::apply_to_run(
        &mut kv,
        "ns",
        "wf",
        "run-1",
        RunRequest::CompleteWorkflowTask(complete_request(&started, vec![], T0 + 3)),
        &Limits::temporal(),
    )
    .unwrap();
    assert_eq!(t.events.len(), 7);
    let ms = store::read_run(&kv, &key).unwrap().unwrap();
    assert_eq!(ms.next_event_id, 11);
    assert_eq!(store::scan_runs(&kv).unwrap().len(), 1);

    // Forward pages of 4: 1-4, 5-8, 9-10.
    let mut ids = Vec::new();
    let mut from = 1;
    loop {
        let page = store::read_history(&kv, &key, from, ms.next_event_id, 4, false).unwrap();
        assert!(page.events.len() <= 4);
        ids.extend(page.events.iter().map(|e| e.event_id));
        match page.next_cursor {
            Some(c) => from = c,
            None => break,
        }
    }
    assert_eq!(ids, (1..=10).collect::<Vec<_>>());
    // Reverse pages: 10-7, 6-3, 2-1.
    let mut ids = Vec::new();
    let mut to = ms.next_event_id;
    loop {
        let page = store::read_history(&kv, &key, 1, to, 4, true).unwrap();
        ids.extend(page.events.iter().map(|e| e.event_id));
        match page.next_cursor {
            Some(c) => to = c,
            None => break,
        }
    }
    assert_eq!(ids, (1..=10).rev().collect::<Vec<_>>());
    // Stored events decode to what the transition returned.
    let page = store::read_history(&kv, &key, 4, 11, 100, false).unwrap();
    assert_eq!(page.events, t.events);
    // The default (prefix-filtering) range scan agrees with MemKv's own.
    struct PrefixOnly<'a>(&'a MemKv);
    impl KvRead for PrefixOnly<'_> {
        fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
            self.0.get(key)
        }
        fn scan_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
            self.0.scan_prefix(prefix)
        }
    }
    let a = store::read_history(&PrefixOnly(&kv), &key, 2, 9, 3, true).unwrap();
    let b = store::read_history(&kv, &key, 2, 9, 3, true).unwrap();
    assert_eq!(a, b);
    assert!(matches!(
        store::resolve_run(&kv, "ns", "nope", ""),
        Err(HistoryError::NotFound(_))
    ));
}
