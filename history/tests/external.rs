//! Signals and cancellation requests between workflows: the caller's events, tasks and pending
//! state; the target's events; what a refused or repeated delivery or report does.

// The SDKs still set the deprecated `namespace` of these commands, so the tests do too.
#![allow(deprecated)]

mod support;

use dura_codec::Persisted;
use dura_history::{
    HistoryError, MutableState, Task,
    api::{
        external::{
            Caller, CancelFromWorkflowRequest, ExternalKind, ExternalOutcome,
            ExternalReportRequest, SignalFromWorkflowRequest, external_reported,
        },
        lifecycle::{RequestCancelRequest, cancel_from_workflow},
        signal::{SignalRequest, signal_from_workflow},
        workflow_task::complete_workflow_task,
    },
    limits::{Limit, Limits},
    mutable_state::ParentInfo,
};
use support::*;
use temporalio_protos::temporal::api::{
    command::v1::{
        Command, RequestCancelExternalWorkflowExecutionCommandAttributes,
        SignalExternalWorkflowExecutionCommandAttributes, command::Attributes as CA,
    },
    common::v1::WorkflowExecution,
    enums::v1::{
        CommandType, EventType, SignalExternalWorkflowExecutionFailedCause, WorkflowTaskFailedCause,
    },
    history::v1::history_event::Attributes,
};

fn signal_external(workflow_id: &str, run_id: &str) -> Command {
    Command {
        command_type: CommandType::SignalExternalWorkflowExecution as i32,
        attributes: Some(CA::SignalExternalWorkflowExecutionCommandAttributes(
            SignalExternalWorkflowExecutionCommandAttributes {
                namespace: "default".into(),
                execution: Some(WorkflowExecution {
                    workflow_id: workflow_id.into(),
                    run_id: run_id.into(),
                }),
                signal_name: "poke".into(),
                input: Some(payloads("hi")),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

fn cancel_external(workflow_id: &str, child_workflow_only: bool) -> Command {
    Command {
        command_type: CommandType::RequestCancelExternalWorkflowExecution as i32,
        attributes: Some(CA::RequestCancelExternalWorkflowExecutionCommandAttributes(
            RequestCancelExternalWorkflowExecutionCommandAttributes {
                namespace: "default".into(),
                workflow_id: workflow_id.into(),
                child_workflow_only,
                reason: "no longer needed".into(),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// A caller whose first workflow task completed with `command`; returns the initiated event id.
fn caller_with(command: Command) -> (Harness, i64) {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    h.tasks.clear();
    h.complete_wt(&wt, vec![command]).unwrap();
    let initiated = h.history.last().unwrap().event_id;
    (h, initiated)
}

fn report(h: &mut Harness, kind: ExternalKind, id: i64, outcome: ExternalOutcome) {
    h.run(|ms, now| {
        external_reported(
            ms,
            ExternalReportRequest {
                kind,
                initiated_event_id: id,
                outcome,
                now,
            },
        )
    })
    .unwrap();
}

fn caller(initiated_event_id: i64, child_workflow_only: bool) -> Caller {
    Caller {
        workflow_id: "caller".into(),
        run_id: "caller-run".into(),
        initiated_event_id,
        child_workflow_only,
    }
}

#[test]
fn a_signal_is_initiated_then_reported_signalled_once() {
    let (mut h, initiated) = caller_with(signal_external("target", ""));
    assert_eq!(
        h.event(initiated).event_type(),
        EventType::SignalExternalWorkflowExecutionInitiated
    );
    assert_eq!(
        h.tasks,
        vec![Task::SignalExternal {
            initiated_event_id: initiated
        }]
    );
    assert!(h.ms.signals_external.contains_key(&initiated));
    assert!(
        h.ms.owes_work(),
        "a time-skipping clock waits for the delivery"
    );

    report(
        &mut h,
        ExternalKind::Signal,
        initiated,
        ExternalOutcome::Delivered,
    );
    let signaled = h.events_of(EventType::ExternalWorkflowExecutionSignaled);
    let Some(Attributes::ExternalWorkflowExecutionSignaledEventAttributes(a)) =
        &signaled[0].attributes
    else {
        panic!("{}", h.history_text())
    };
    assert_eq!(a.initiated_event_id, initiated);
    assert_eq!(a.namespace, "default");
    assert_eq!(a.workflow_execution.as_ref().unwrap().workflow_id, "target");
    assert!(h.ms.signals_external.is_empty());
    assert_eq!(
        h.last_event().event_type(),
        EventType::WorkflowTaskScheduled,
        "the caller is woken"
    );

    // Reported twice (the leader retried): nothing more is written.
    let len = h.history.len();
    report(
        &mut h,
        ExternalKind::Signal,
        initiated,
        ExternalOutcome::Delivered,
    );
    assert_eq!(h.history.len(), len);
}

#[test]
fn a_failed_signal_carries_its_cause() {
    let (mut h, initiated) = caller_with(signal_external("nobody", ""));
    let cause = SignalExternalWorkflowExecutionFailedCause::ExternalWorkflowExecutionNotFound;
    report(
        &mut h,
        ExternalKind::Signal,
        initiated,
        ExternalOutcome::Failed {
            cause: cause as i32,
        },
    );
    let failed = h.events_of(EventType::SignalExternalWorkflowExecutionFailed);
    let Some(Attributes::SignalExternalWorkflowExecutionFailedEventAttributes(a)) =
        &failed[0].attributes
    else {
        panic!("{}", h.history_text())
    };
    assert_eq!((a.cause, a.initiated_event_id), (cause as i32, initiated));
    // As on the real server, which leaves it unset.
    assert_eq!(a.workflow_task_completed_event_id, 0);
}

#[test]
fn a_cancel_request_is_initiated_then_reported_and_buffered_during_a_task() {
    let (mut h, initiated) = caller_with(cancel_external("target", false));
    let Some(Attributes::RequestCancelExternalWorkflowExecutionInitiatedEventAttributes(a)) =
        &h.event(initiated).attributes
    else {
        panic!("{}", h.history_text())
    };
    assert_eq!(a.reason, "no longer needed");
    assert_eq!(
        h.tasks,
        vec![Task::CancelExternal {
            initiated_event_id: initiated
        }]
    );

    // The report lands while the caller's next task runs: it waits in the buffer.
    h.run(|ms, now| {
        dura_history::api::signal::signal_workflow(
            ms,
            SignalRequest {
                signal_name: "wake".into(),
                input: None,
                identity: "client".into(),
                header: None,
                request_id: "wake-1".into(),
                now,
            },
        )
    })
    .unwrap();
    let wt = h.poll_wt();
    report(
        &mut h,
        ExternalKind::Cancel,
        initiated,
        ExternalOutcome::Delivered,
    );
    assert_eq!(h.ms.buffered_events.len(), 1);
    h.complete_wt(&wt, vec![]).unwrap();
    assert_eq!(
        h.events_of(EventType::ExternalWorkflowExecutionCancelRequested)
            .len(),
        1
    );
}

#[test]
fn bad_commands_fail_the_task_with_the_real_servers_causes() {
    let cases = [
        (
            signal_external("", ""),
            WorkflowTaskFailedCause::BadSignalWorkflowExecutionAttributes,
            "WorkflowId is not set on SignalExternalWorkflowExecutionCommand.",
        ),
        (
            signal_external("target", "not-a-uuid"),
            WorkflowTaskFailedCause::BadSignalWorkflowExecutionAttributes,
            "Invalid RunId set on SignalExternalWorkflowExecutionCommand.",
        ),
        (
            cancel_external("", false),
            WorkflowTaskFailedCause::BadRequestCancelExternalWorkflowExecutionAttributes,
            "WorkflowId is not set on RequestCancelExternalWorkflowExecutionCommand.",
        ),
    ];
    for (command, cause, message) in cases {
        let mut h = Harness::new();
        let wt = h.poll_wt();
        h.complete_wt(&wt, vec![command]).unwrap();
        let failed = h.events_of(EventType::WorkflowTaskFailed);
        let Some(Attributes::WorkflowTaskFailedEventAttributes(a)) = &failed[0].attributes else {
            panic!("{}", h.history_text())
        };
        assert_eq!(a.cause, cause as i32);
        let text = &a.failure.as_ref().unwrap().message;
        assert!(text.contains(message), "{text}");
        assert!(h.ms.signals_external.is_empty() && h.ms.cancels_external.is_empty());
    }
}

#[test]
fn the_pending_signal_limit_fails_the_task() {
    let mut limits = Limits::temporal();
    limits.set(Limit::PendingSignals, 1);
    let (mut h, _) = caller_with(signal_external("target", ""));
    h.signal("wake", "wake-1").unwrap();
    let wt = h.poll_wt();
    let req = complete_request(&wt, vec![signal_external("other", "")], h.now);
    h.run(|ms, _| complete_workflow_task(ms, req, &limits))
        .unwrap();
    let failed = h.events_of(EventType::WorkflowTaskFailed);
    let Some(Attributes::WorkflowTaskFailedEventAttributes(a)) = &failed[0].attributes else {
        panic!("{}", h.history_text())
    };
    assert_eq!(
        a.cause,
        WorkflowTaskFailedCause::PendingSignalsLimitExceeded as i32
    );
    assert_eq!(h.ms.signals_external.len(), 1);
}

#[test]
fn until_every_member_reads_them_the_commands_fail_as_disabled() {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    let req = complete_request(&wt, vec![signal_external("target", "")], h.now);
    let limits = Limits::temporal().refusing_external_commands();
    h.run(|ms, _| complete_workflow_task(ms, req, &limits))
        .unwrap();
    let failed = h.events_of(EventType::WorkflowTaskFailed);
    let Some(Attributes::WorkflowTaskFailedEventAttributes(a)) = &failed[0].attributes else {
        panic!("{}", h.history_text())
    };
    assert_eq!(a.cause, WorkflowTaskFailedCause::FeatureDisabled as i32);
    assert!(h.ms.signals_external.is_empty());
}

#[test]
fn the_target_records_who_signalled_once_and_child_only_reaches_children() {
    let mut target = Harness::new();
    let signal = |request_id: &str, child_workflow_only: bool| SignalFromWorkflowRequest {
        signal: SignalRequest {
            signal_name: "poke".into(),
            input: Some(payloads("hi")),
            identity: "history-service".into(),
            header: None,
            request_id: request_id.into(),
            now: T0,
        },
        caller: caller(5, child_workflow_only),
    };
    target
        .run(|ms, _| signal_from_workflow(ms, signal("caller-run:signal:5", false)))
        .unwrap();
    let signaled = target.events_of(EventType::WorkflowExecutionSignaled);
    let Some(Attributes::WorkflowExecutionSignaledEventAttributes(a)) = &signaled[0].attributes
    else {
        panic!("{}", target.history_text())
    };
    assert_eq!(
        a.external_workflow_execution.as_ref().unwrap().workflow_id,
        "caller"
    );
    // Delivered again after a failover: applied once.
    let len = target.history.len();
    target
        .run(|ms, _| signal_from_workflow(ms, signal("caller-run:signal:5", false)))
        .unwrap();
    assert_eq!(target.history.len(), len);

    let refused = target.run(|ms, _| signal_from_workflow(ms, signal("other", true)));
    assert!(
        matches!(refused, Err(HistoryError::NotFound(_))),
        "{refused:?}"
    );
}

/// A child workflow of `caller`'s run `caller-run`.
fn kid_of_caller() -> Harness {
    let mut req = start_request("kid", "kid-run", "kid-req");
    req.parent = Some(ParentInfo {
        namespace: "default".into(),
        namespace_id: "ns".into(),
        workflow_id: "caller".into(),
        run_id: "caller-run".into(),
        initiated_event_id: 7,
        root_workflow_id: "caller".into(),
        root_run_id: "caller-run".into(),
    });
    Harness::start(req)
}

fn cancel_from(caller: Caller) -> CancelFromWorkflowRequest {
    CancelFromWorkflowRequest {
        cancel: RequestCancelRequest {
            reason: String::new(),
            identity: "history-service".into(),
            request_id: "caller-run:cancel:7".into(),
            now: T0,
        },
        caller,
    }
}

#[test]
fn a_cancel_request_reaches_a_child_of_the_caller_and_a_closed_run_takes_it_as_done() {
    let mut kid = kid_of_caller();
    kid.run(|ms, _| cancel_from_workflow(ms, cancel_from(caller(7, true))))
        .unwrap();
    let requested = kid.events_of(EventType::WorkflowExecutionCancelRequested);
    let Some(Attributes::WorkflowExecutionCancelRequestedEventAttributes(a)) =
        &requested[0].attributes
    else {
        panic!("{}", kid.history_text())
    };
    assert_eq!(a.external_initiated_event_id, 7);
    assert_eq!(
        a.external_workflow_execution.as_ref().unwrap().run_id,
        "caller-run"
    );

    // Not the caller's child: "not found", nothing recorded.
    let mut other = Harness::new();
    let refused = other.run(|ms, _| cancel_from_workflow(ms, cancel_from(caller(7, true))));
    assert!(
        matches!(refused, Err(HistoryError::NotFound(_))),
        "{refused:?}"
    );
    assert!(!other.ms.cancel_requested);

    let wt = other.poll_wt();
    other
        .complete_wt(&wt, vec![complete_workflow("done")])
        .unwrap();
    let len = other.history.len();
    other
        .run(|ms, _| cancel_from_workflow(ms, cancel_from(caller(7, false))))
        .unwrap();
    assert_eq!(other.history.len(), len, "a closed run takes it as done");
}

#[test]
fn mutable_state_is_written_as_version_1_unless_it_holds_external_targets() {
    let plain = Harness::new().ms;
    let bytes = plain.encode();
    assert_eq!(bytes[2], 1, "readable by builds before version 2");
    assert_eq!(MutableState::decode(&bytes).unwrap(), plain);

    let (h, _) = caller_with(signal_external("target", ""));
    let bytes = h.ms.encode();
    assert_eq!(bytes[2], 2);
    assert_eq!(MutableState::decode(&bytes).unwrap(), h.ms);
}
