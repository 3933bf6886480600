//! The transactional outbox: every workflow/activity task a transition emits is recorded in
//! the same write as the transition, and leaves when it is started or acknowledged.

mod support;

use dura_history::limits::Limits;
use dura_history::{
    RunReply, RunRequest, Task,
    api::{
        activity::RecordActivityTaskStartedRequest, workflow_task::RecordWorkflowTaskStartedRequest,
    },
    keys::RunKey,
    outbox::{self, OutboxEntry, OutboxKind, OutboxRecord},
    store::{self, MemKv},
};
use support::*;

fn record_wt_started(kv: &mut MemKv, scheduled_event_id: i64, stamp: i32, now: i64) -> RunReply {
    store::apply_to_run(
        kv,
        "ns",
        "wf",
        "",
        RunRequest::RecordWorkflowTaskStarted(RecordWorkflowTaskStartedRequest {
            scheduled_event_id,
            stamp,
            request_id: format!("poll-{scheduled_event_id}"),
            identity: "w".into(),
            poll_task_queue: normal(TQ),
            now,
        }),
        &Limits::temporal(),
    )
    .unwrap()
    .transition
    .reply
}

fn only_record(kv: &MemKv) -> OutboxRecord {
    let mut records = outbox::scan(kv).unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    records.remove(0)
}

#[test]
fn tasks_enter_the_outbox_with_their_transition_and_leave_when_started() {
    let mut kv = MemKv::default();
    let out = store::start_workflow(&mut kv, start_request("wf", "run-1", "r1")).unwrap();
    let run = RunKey::new("ns", "wf", "run-1");
    let first_wt = out.new_run.unwrap().tasks[0].clone();
    assert!(matches!(first_wt, Task::WorkflowTask(_)));
    assert_eq!(
        only_record(&kv),
        OutboxRecord {
            run: run.clone(),
            task: first_wt
        }
    );

    // Taken by a poller: the start and the record's removal are one write.
    let RunReply::WorkflowTaskStarted(started) = record_wt_started(&mut kv, 2, 1, T0 + 1) else {
        panic!("not started")
    };
    assert!(outbox::scan(&kv).unwrap().is_empty());

    // The completion schedules an activity: its task is in the outbox.
    store::apply_to_run(
        &mut kv,
        "ns",
        "wf",
        "run-1",
        RunRequest::CompleteWorkflowTask(complete_request(
            &started,
            vec![schedule_activity("a1", "act", 10)],
            T0 + 2,
        )),
        &Limits::temporal(),
    )
    .unwrap();
    let record = only_record(&kv);
    let Task::ActivityTask(activity) = &record.task else {
        panic!("{record:?}")
    };
    store::apply_to_run(
        &mut kv,
        "ns",
        "wf",
        "run-1",
        RunRequest::RecordActivityTaskStarted(RecordActivityTaskStartedRequest {
            scheduled_event_id: activity.scheduled_event_id,
            attempt: activity.attempt,
            request_id: "act-poll".into(),
            identity: "w".into(),
            now: T0 + 3,
        }),
        &Limits::temporal(),
    )
    .unwrap();
    assert!(outbox::scan(&kv).unwrap().is_empty());
}

#[test]
fn an_acknowledgement_removes_only_the_attempt_it_names() {
    let mut kv = MemKv::default();
    store::start_workflow(&mut kv, start_request("wf", "run-1", "r1")).unwrap();
    let record = only_record(&kv);
    let entry = OutboxEntry::of(&record.run, &record.task).unwrap();
    assert_eq!(entry.kind, OutboxKind::WorkflowTask);

    // A stale acknowledgement (an earlier attempt of the same task) leaves the record.
    let stale = OutboxEntry {
        attempt: entry.attempt + 1,
        ..entry.clone()
    };
    assert_eq!(outbox::ack(&mut kv, &[stale]).unwrap(), 0);
    assert_eq!(only_record(&kv), record);

    assert_eq!(
        outbox::ack(&mut kv, std::slice::from_ref(&entry)).unwrap(),
        1
    );
    assert!(outbox::scan(&kv).unwrap().is_empty());
    // Acknowledging twice is harmless.
    assert_eq!(outbox::ack(&mut kv, &[entry]).unwrap(), 0);
}
