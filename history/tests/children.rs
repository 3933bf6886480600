//! Child workflows: the parent's events and tasks, the child's link to its parent, and what
//! each side owes the other when it closes.

mod support;

use dura_history::{
    HistoryError, Task,
    api::{
        children::{
            ChildClosedRequest, ChildOutcome, ChildStartFailedRequest, ChildStartedRequest,
            child_closed, child_start_failed, child_started,
        },
        lifecycle::{TerminateRequest, terminate_workflow},
    },
    mutable_state::ParentInfo,
    tasks::ParentClosePolicyTask,
};
use support::*;
use temporalio_protos::temporal::api::{
    command::v1::{
        Command, StartChildWorkflowExecutionCommandAttributes, command::Attributes as CA,
    },
    common::v1::WorkflowType,
    enums::v1::{CommandType, EventType, ParentClosePolicy},
    history::v1::history_event::Attributes,
};

fn start_child(workflow_id: &str, policy: ParentClosePolicy) -> Command {
    Command {
        command_type: CommandType::StartChildWorkflowExecution as i32,
        attributes: Some(CA::StartChildWorkflowExecutionCommandAttributes(
            StartChildWorkflowExecutionCommandAttributes {
                workflow_id: workflow_id.into(),
                workflow_type: Some(WorkflowType { name: "Kid".into() }),
                parent_close_policy: policy as i32,
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// A parent whose first workflow task initiated one child; returns the initiated event id.
fn parent_with_child(policy: ParentClosePolicy) -> (Harness, i64) {
    let mut h = Harness::new();
    let wt = h.poll_wt();
    h.tasks.clear();
    h.complete_wt(&wt, vec![start_child("kid", policy)])
        .unwrap();
    let initiated = h.events_of(EventType::StartChildWorkflowExecutionInitiated)[0].event_id;
    (h, initiated)
}

fn report_started(h: &mut Harness, initiated_event_id: i64) -> Result<(), HistoryError> {
    h.run(|ms, now| {
        child_started(
            ms,
            ChildStartedRequest {
                initiated_event_id,
                run_id: "kid-run".into(),
                header: None,
                now,
            },
        )
    })
}

fn report_closed(
    h: &mut Harness,
    initiated_event_id: i64,
    outcome: ChildOutcome,
) -> Result<(), HistoryError> {
    h.run(|ms, now| {
        child_closed(
            ms,
            ChildClosedRequest {
                initiated_event_id,
                run_id: "kid-run".into(),
                outcome,
                now,
            },
        )
    })
}

#[test]
fn a_child_is_initiated_started_and_completed_in_the_parents_history() {
    let (mut h, initiated) = parent_with_child(ParentClosePolicy::Unspecified);
    let Some(Attributes::StartChildWorkflowExecutionInitiatedEventAttributes(a)) =
        &h.event(initiated).attributes
    else {
        panic!("{}", h.history_text())
    };
    // The server's defaults: the parent's namespace and queue, TERMINATE, 10 s task timeout.
    #[allow(deprecated)]
    let namespace = a.namespace.clone();
    assert_eq!(namespace, "default");
    assert_eq!(a.task_queue.as_ref().unwrap().name, TQ);
    assert_eq!(a.parent_close_policy, ParentClosePolicy::Terminate as i32);
    assert_eq!(a.workflow_task_timeout.unwrap().seconds, 10);
    assert_eq!(
        h.tasks,
        vec![Task::StartChild {
            initiated_event_id: initiated
        }]
    );

    // A child closing before its start is recorded is refused, to be reported again later.
    assert!(matches!(
        report_closed(&mut h, initiated, ChildOutcome::Terminated),
        Err(HistoryError::FailedPrecondition(_))
    ));
    report_started(&mut h, initiated).unwrap();
    // Reported twice (the leader retried): nothing more is written.
    let len = h.history.len();
    report_started(&mut h, initiated).unwrap();
    assert_eq!(h.history.len(), len);

    let wt = h.poll_wt();
    h.complete_wt(&wt, vec![]).unwrap();
    report_closed(
        &mut h,
        initiated,
        ChildOutcome::Completed(Some(payloads("A"))),
    )
    .unwrap();
    let completed = h.events_of(EventType::ChildWorkflowExecutionCompleted);
    let Some(Attributes::ChildWorkflowExecutionCompletedEventAttributes(c)) =
        &completed[0].attributes
    else {
        panic!()
    };
    let started = h.events_of(EventType::ChildWorkflowExecutionStarted)[0].event_id;
    assert_eq!(
        (c.initiated_event_id, c.started_event_id),
        (initiated, started)
    );
    assert!(h.ms.children.is_empty());
    assert_eq!(
        h.last_event().event_type(),
        EventType::WorkflowTaskScheduled
    );
    // The child is no longer pending: a late report is stale.
    assert!(matches!(
        report_closed(&mut h, initiated, ChildOutcome::Terminated),
        Err(HistoryError::NotFound(_))
    ));
}

#[test]
fn child_events_arriving_during_a_task_are_buffered_and_wired_on_flush() {
    let (mut h, initiated) = parent_with_child(ParentClosePolicy::Abandon);
    h.signal("wake", "s1").unwrap();
    let wt = h.poll_wt();
    // Started and closed while the parent's task runs: both wait in the buffer.
    report_started(&mut h, initiated).unwrap();
    report_closed(&mut h, initiated, ChildOutcome::Terminated).unwrap();
    assert_eq!(h.ms.buffered_events.len(), 2);
    h.complete_wt(&wt, vec![]).unwrap();
    let started = h.events_of(EventType::ChildWorkflowExecutionStarted)[0].event_id;
    let Some(Attributes::ChildWorkflowExecutionTerminatedEventAttributes(t)) =
        &h.events_of(EventType::ChildWorkflowExecutionTerminated)[0].attributes
    else {
        panic!("{}", h.history_text())
    };
    assert_eq!(t.started_event_id, started);
}

#[test]
fn a_taken_workflow_id_fails_the_start() {
    let (mut h, initiated) = parent_with_child(ParentClosePolicy::Terminate);
    h.run(|ms, now| {
        child_start_failed(
            ms,
            ChildStartFailedRequest {
                initiated_event_id: initiated,
                now,
            },
        )
    })
    .unwrap();
    assert_eq!(
        h.events_of(EventType::StartChildWorkflowExecutionFailed)
            .len(),
        1
    );
    assert!(h.ms.children.is_empty());
}

#[test]
fn closing_parent_applies_the_close_policy_to_started_children_only() {
    for (policy, acts) in [
        (ParentClosePolicy::Terminate, true),
        (ParentClosePolicy::RequestCancel, true),
        (ParentClosePolicy::Abandon, false),
    ] {
        let (mut h, initiated) = parent_with_child(policy);
        report_started(&mut h, initiated).unwrap();
        h.tasks.clear();
        h.run(|ms, now| {
            terminate_workflow(
                ms,
                TerminateRequest {
                    reason: "done".into(),
                    details: None,
                    identity: "test".into(),
                    now,
                },
            )
        })
        .unwrap();
        let expected = ParentClosePolicyTask {
            initiated_event_id: initiated,
            namespace_id: "ns".into(),
            workflow_id: "kid".into(),
            run_id: "kid-run".into(),
            policy: policy as i32,
        };
        assert_eq!(
            h.tasks.contains(&Task::ParentClosePolicy(expected)),
            acts,
            "{policy:?}: {:?}",
            h.tasks
        );
        assert!(h.ms.children.is_empty());
    }
}

#[test]
fn a_child_knows_its_parent_and_reports_its_close() {
    let parent = ParentInfo {
        namespace: "default".into(),
        namespace_id: "ns".into(),
        workflow_id: "dad".into(),
        run_id: "dad-run".into(),
        initiated_event_id: 5,
        root_workflow_id: "dad".into(),
        root_run_id: "dad-run".into(),
    };
    let mut req = start_request("kid", "kid-run", "r");
    req.parent = Some(parent.clone());
    let mut h = Harness::start(req);
    let Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) = &h.event(1).attributes
    else {
        panic!()
    };
    assert_eq!(
        a.parent_workflow_execution.as_ref().unwrap().workflow_id,
        "dad"
    );
    assert_eq!(a.parent_initiated_event_id, 5);
    assert_eq!(
        a.root_workflow_execution.as_ref().unwrap().run_id,
        "dad-run"
    );
    assert_eq!(h.ms.parent, Some(parent));

    let wt = h.poll_wt();
    h.tasks.clear();
    h.complete_wt(&wt, vec![complete_workflow("A")]).unwrap();
    assert_eq!(
        h.tasks,
        vec![Task::NotifyParent {
            completion_event_id: h.ms.completion_event_id
        }]
    );
}
