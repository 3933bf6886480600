//! Updates: admitted into mutable state, carried to the worker by a (speculative) workflow
//! task, and written to history only once accepted.

mod support;

use dura_history::{
    HistoryError,
    api::{
        updates::{AdmitUpdateRequest, UpdateState, admit_update},
        workflow_task::{
            FailWorkflowTaskRequest, WorkflowTaskStartedReply, WorkflowTaskToken,
            fail_workflow_task,
        },
    },
    tasks::{TimerKind, WorkflowTaskTimeoutKind},
};
use prost::Message as _;
use support::*;
use temporalio_protos::temporal::api::{
    command::v1::{Command, ProtocolMessageCommandAttributes, command::Attributes as CA},
    enums::v1::{CommandType, EventType, TimeoutType, WorkflowTaskFailedCause},
    history::v1::history_event::Attributes,
    protocol::v1::{Message, message::SequencingId},
    update::v1::{Acceptance, Input, Meta, Outcome, Rejection, Request, Response, outcome},
};

fn request(update_id: &str) -> Request {
    Request {
        meta: Some(Meta {
            update_id: update_id.into(),
            identity: "client".into(),
        }),
        input: Some(Input {
            name: "set".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn admit(h: &mut Harness, update_id: &str) -> Result<UpdateState, HistoryError> {
    h.run(|ms, now| {
        admit_update(
            ms,
            AdmitUpdateRequest {
                update_id: update_id.into(),
                request: request(update_id),
                now,
            },
        )
    })
}

fn message(update_id: &str, id: &str, type_name: &str, body: Vec<u8>) -> Message {
    Message {
        id: id.into(),
        protocol_instance_id: update_id.into(),
        body: Some(prost_types::Any {
            type_url: format!("type.googleapis.com/temporal.api.update.v1.{type_name}"),
            value: body,
        }),
        sequencing_id: None,
    }
}

fn protocol_command(message_id: &str) -> Command {
    Command {
        command_type: CommandType::ProtocolMessage as i32,
        attributes: Some(CA::ProtocolMessageCommandAttributes(
            ProtocolMessageCommandAttributes {
                message_id: message_id.into(),
            },
        )),
        ..Default::default()
    }
}

/// A running workflow with no pending task (its first task completed without commands).
fn idle_workflow() -> Harness {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    h.complete_wt(&wt, vec![]).unwrap();
    h
}

fn accept_and_respond(h: &mut Harness, wt: &WorkflowTaskStartedReply, update_id: &str) {
    let accept = message(
        update_id,
        "accept",
        "Acceptance",
        Acceptance {
            accepted_request_message_id: format!("{update_id}/request"),
            accepted_request_sequencing_event_id: wt.started_event_id - 1,
            accepted_request: Some(request(update_id)),
        }
        .encode_to_vec(),
    );
    let respond = message(
        update_id,
        "respond",
        "Response",
        Response {
            meta: request(update_id).meta,
            outcome: Some(Outcome {
                value: Some(outcome::Value::Success(payloads("done"))),
            }),
        }
        .encode_to_vec(),
    );
    h.complete_wt_with(
        wt,
        vec![protocol_command("accept"), protocol_command("respond")],
        |r| r.messages = vec![accept, respond],
    )
    .unwrap();
}

#[test]
fn an_accepted_update_is_written_with_its_speculative_task() {
    let mut h = idle_workflow();
    let len = h.history.len();
    assert!(matches!(
        admit(&mut h, "u1").unwrap(),
        UpdateState::Admitted { .. }
    ));
    // Admitting again is idempotent; a speculative task writes nothing yet.
    admit(&mut h, "u1").unwrap();
    assert_eq!(h.history.len(), len);
    assert!(h.ms.workflow_task.as_ref().unwrap().speculative);

    let wt = h.poll_wt();
    assert_eq!(
        h.history.len(),
        len,
        "Scheduled/Started travel with the task only"
    );
    assert_eq!(wt.transient_events.len(), 2);
    assert_eq!(wt.messages.len(), 1);
    assert_eq!(wt.messages[0].id, "u1/request");
    assert_eq!(
        wt.messages[0].sequencing_id,
        Some(SequencingId::EventId(wt.started_event_id - 1))
    );
    accept_and_respond(&mut h, &wt, "u1");
    let types: Vec<_> = h.history[len..].iter().map(|e| e.event_type()).collect();
    assert_eq!(
        types,
        vec![
            EventType::WorkflowTaskScheduled,
            EventType::WorkflowTaskStarted,
            EventType::WorkflowTaskCompleted,
            EventType::WorkflowExecutionUpdateAccepted,
            EventType::WorkflowExecutionUpdateCompleted,
        ]
    );
    assert!(matches!(
        &h.ms.updates["u1"],
        UpdateState::Completed { outcome } if matches!(outcome.value, Some(outcome::Value::Success(_)))
    ));
}

#[test]
fn a_rejected_update_leaves_no_trace_in_history() {
    let mut h = idle_workflow();
    let len = h.history.len();
    let next_event_id = h.ms.next_event_id;
    admit(&mut h, "u1").unwrap();
    let wt = h.poll_wt();
    let reject = message(
        "u1",
        "reject",
        "Rejection",
        Rejection {
            rejected_request_message_id: "u1/request".into(),
            failure: Some(app_failure("no", "Invalid", true)),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let reply = h
        .complete_wt_with(&wt, vec![], |r| r.messages = vec![reject])
        .unwrap();
    assert_eq!(
        reply.reset_history_event_id,
        h.ms.last_completed_wt_started_event_id
    );
    assert_eq!(h.history.len(), len);
    assert_eq!(h.ms.next_event_id, next_event_id);
    assert!(h.ms.workflow_task.is_none());
    assert!(matches!(
        &h.ms.updates["u1"],
        UpdateState::Completed { outcome } if matches!(outcome.value, Some(outcome::Value::Failure(_)))
    ));
}

#[test]
fn an_update_admitted_during_a_task_gets_the_next_one() {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    admit(&mut h, "u1").unwrap();
    // The running task did not carry it, so its completion schedules a task that will.
    h.complete_wt(&wt, vec![]).unwrap();
    let next = h.poll_wt();
    assert_eq!(next.messages.len(), 1);
    accept_and_respond(&mut h, &next, "u1");
    assert_eq!(
        h.events_of(EventType::WorkflowExecutionUpdateCompleted)
            .len(),
        1
    );
}

#[test]
fn a_closed_workflow_admits_no_update() {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    h.complete_wt(&wt, vec![complete_workflow("x")]).unwrap();
    assert!(matches!(
        admit(&mut h, "u1"),
        Err(HistoryError::NotFound(_))
    ));
}

#[test]
fn a_speculative_task_that_new_events_overtook_becomes_a_normal_one() {
    let mut h = idle_workflow();
    admit(&mut h, "u1").unwrap();
    // A signal lands while the speculative task waits for a poller.
    h.signal("s", "sig-1").unwrap();
    let wt = h.poll_wt();
    assert!(wt.transient_events.is_empty());
    assert!(!h.ms.workflow_task.as_ref().unwrap().speculative);
    let started = h.events_of(EventType::WorkflowTaskStarted);
    assert_eq!(started.last().unwrap().event_id, wt.started_event_id);
    accept_and_respond(&mut h, &wt, "u1");
    let types: Vec<_> = h.history.iter().map(|e| e.event_type()).collect();
    assert!(
        types.ends_with(&[
            EventType::WorkflowExecutionSignaled,
            EventType::WorkflowTaskScheduled,
            EventType::WorkflowTaskStarted,
            EventType::WorkflowTaskCompleted,
            EventType::WorkflowExecutionUpdateAccepted,
            EventType::WorkflowExecutionUpdateCompleted,
        ]),
        "{}",
        h.history_text()
    );
}

/// The event types from `from` on.
fn types_from(h: &Harness, from: usize) -> Vec<EventType> {
    h.history[from..].iter().map(|e| e.event_type()).collect()
}

/// Like the real server (`AddWorkflowTaskFailedEvent`): the failed speculative task is
/// written after all, Scheduled and Started with the failure, and the update it carried goes
/// to the next attempt.
#[test]
fn a_speculative_task_that_fails_is_written_and_its_update_retried() {
    let mut h = idle_workflow();
    let len = h.history.len();
    admit(&mut h, "u1").unwrap();
    let wt = h.poll_wt();
    let req = FailWorkflowTaskRequest {
        token: WorkflowTaskToken::of(&wt),
        cause: WorkflowTaskFailedCause::WorkflowWorkerUnhandledFailure as i32,
        failure: Some(app_failure("update handler panicked", "Panic", false)),
        identity: "worker-1".into(),
        now: h.now,
    };
    h.run(|ms, _| fail_workflow_task(ms, req)).unwrap();
    assert_eq!(
        types_from(&h, len),
        [
            EventType::WorkflowTaskScheduled,
            EventType::WorkflowTaskStarted,
            EventType::WorkflowTaskFailed,
        ],
        "{}",
        h.history_text()
    );
    let started = &h.history[len + 1];
    let Some(Attributes::WorkflowTaskStartedEventAttributes(attrs)) = &started.attributes else {
        panic!("{started:?}");
    };
    assert_eq!(attrs.scheduled_event_id, h.history[len].event_id);
    assert_eq!(attrs.identity, "worker-1");
    let failed = h.last_event();
    let Some(Attributes::WorkflowTaskFailedEventAttributes(attrs)) = &failed.attributes else {
        panic!("{failed:?}");
    };
    assert_eq!(
        (attrs.scheduled_event_id, attrs.started_event_id),
        (h.history[len].event_id, started.event_id)
    );
    assert_eq!(attrs.identity, "worker-1");

    // The update is still admitted: the next, transient, attempt carries it.
    assert!(matches!(&h.ms.updates["u1"], UpdateState::Admitted { .. }));
    let retry = h.poll_wt();
    assert_eq!(retry.attempt, 2);
    assert_eq!(retry.messages.len(), 1);
    assert_eq!(retry.messages[0].id, "u1/request");
}

/// Like the real server (`AddWorkflowTaskTimedOutEvent`): a started speculative task that
/// times out is written with an empty identity and a START_TO_CLOSE timeout.
#[test]
fn a_speculative_task_that_times_out_is_written_with_its_timeout() {
    let mut h = idle_workflow();
    let len = h.history.len();
    admit(&mut h, "u1").unwrap();
    let wt = h.poll_wt();
    let timeout = h.timer(|k| {
        matches!(
            k,
            TimerKind::WorkflowTaskTimeout {
                timeout: WorkflowTaskTimeoutKind::StartToClose,
                ..
            }
        )
    });
    h.fire_when_due(timeout);
    assert_eq!(
        types_from(&h, len),
        [
            EventType::WorkflowTaskScheduled,
            EventType::WorkflowTaskStarted,
            EventType::WorkflowTaskTimedOut,
        ],
        "{}",
        h.history_text()
    );
    let Some(Attributes::WorkflowTaskStartedEventAttributes(started)) =
        &h.history[len + 1].attributes
    else {
        panic!("{:?}", h.history[len + 1]);
    };
    assert_eq!(started.identity, "");
    let Some(Attributes::WorkflowTaskTimedOutEventAttributes(timed_out)) =
        &h.last_event().attributes
    else {
        panic!("{:?}", h.last_event());
    };
    assert_eq!(timed_out.timeout_type, TimeoutType::StartToClose as i32);
    assert_eq!(timed_out.started_event_id, wt.started_event_id);
    assert!(matches!(&h.ms.updates["u1"], UpdateState::Admitted { .. }));
    assert_eq!(h.poll_wt().attempt, 2);
}
