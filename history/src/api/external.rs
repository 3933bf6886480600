//! Signals and cancellation requests a workflow sends another (temporalio/temporal
//! `handleCommandSignalExternalWorkflow`, `handleCommandRequestCancelExternalWorkflow`,
//! `api/command_attr_validator.go`, the transfer queue's signal and cancel executions).
//!
//! The caller's command records an initiated event, the target in `signals_external` /
//! `cancels_external`, and a `SignalExternal` / `CancelExternal` task. The shard leader
//! delivers it to the target ([`SignalFromWorkflowRequest`], [`CancelFromWorkflowRequest`],
//! deduplicated there by a request id derived from the caller's run and initiated event, so a
//! delivery repeated after a failover applies once) and reports the outcome to the caller
//! ([`ExternalReportRequest`]): ExternalWorkflowExecutionSignaled /
//! ExternalWorkflowExecutionCancelRequested, or the Failed event with the real server's cause.
//! That report removes the outbox record; a report about a target no longer pending changes
//! nothing.

// `control` is deprecated in the protos, but the real server still carries it and the SDKs
// replay histories holding it.
#![allow(deprecated)]

use serde::{Deserialize, Serialize};
use temporalio_protos::temporal::api::{
    command::v1::{
        RequestCancelExternalWorkflowExecutionCommandAttributes,
        SignalExternalWorkflowExecutionCommandAttributes,
    },
    common::v1::WorkflowExecution,
    enums::v1::WorkflowTaskFailedCause,
    history::v1::{
        ExternalWorkflowExecutionCancelRequestedEventAttributes,
        ExternalWorkflowExecutionSignaledEventAttributes,
        RequestCancelExternalWorkflowExecutionFailedEventAttributes,
        RequestCancelExternalWorkflowExecutionInitiatedEventAttributes,
        SignalExternalWorkflowExecutionFailedEventAttributes,
        SignalExternalWorkflowExecutionInitiatedEventAttributes, history_event::Attributes,
    },
};

use super::{
    command_limits::payloads_size,
    commands::{CommandContext, CommandFailure},
};
use crate::{
    error::{HistoryError, Result},
    limits::Limit,
    mutable_state::{ExternalTarget, MutableState},
    tasks::Task,
    time::Nanos,
    transition::{Transition, Tx, run},
};

/// Longest namespace or workflow id a command may name.
const MAX_ID_LENGTH: usize = 1000;

/// Which of the two a task or report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExternalKind {
    Signal,
    Cancel,
}

/// The request id a delivery carries to its target: the same for every attempt, so the target
/// applies it once.
pub fn delivery_request_id(
    caller_run_id: &str,
    kind: ExternalKind,
    initiated_event_id: i64,
) -> String {
    let tag = match kind {
        ExternalKind::Signal => "signal",
        ExternalKind::Cancel => "cancel",
    };
    format!("{caller_run_id}:{tag}:{initiated_event_id}")
}

/// The initiating run, as a delivery names it to the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub workflow_id: String,
    pub run_id: String,
    pub initiated_event_id: i64,
    /// The target must be a child of the caller, else it is "not found".
    pub child_workflow_only: bool,
}

impl Caller {
    pub(crate) fn execution(&self) -> WorkflowExecution {
        WorkflowExecution {
            workflow_id: self.workflow_id.clone(),
            run_id: self.run_id.clone(),
        }
    }

    /// `ErrWorkflowParent`: the target of a child-only delivery is not the caller's child.
    pub(crate) fn check_parent_of(&self, target: &MutableState) -> Result<()> {
        let parent = target.parent.as_ref();
        if self.child_workflow_only
            && parent.is_none_or(|p| p.workflow_id != self.workflow_id || p.run_id != self.run_id)
        {
            return Err(HistoryError::NotFound(
                "workflow parent does not match".into(),
            ));
        }
        Ok(())
    }
}

/// The target namespace of a command: this run's (Dura does not carry commands across
/// namespaces yet).
fn same_namespace(
    ctx: &CommandContext,
    namespace: &str,
    bad: impl Fn(String) -> CommandFailure,
    command: &str,
) -> std::result::Result<(), CommandFailure> {
    if !namespace.is_empty() && namespace != ctx.namespace {
        return Err(bad(format!(
            "Dura does not support {command} commands to another namespace yet. Namespace={namespace}"
        )));
    }
    Ok(())
}

/// The first check of a command's target ids that fails; each command words it as the real
/// server does (the two word them differently).
enum BadIds {
    NoWorkflowId,
    NamespaceTooLong,
    WorkflowIdTooLong,
    InvalidRunId,
}

fn check_ids(namespace: &str, workflow_id: &str, run_id: &str) -> Option<BadIds> {
    if workflow_id.is_empty() {
        Some(BadIds::NoWorkflowId)
    } else if namespace.len() > MAX_ID_LENGTH {
        Some(BadIds::NamespaceTooLong)
    } else if workflow_id.len() > MAX_ID_LENGTH {
        Some(BadIds::WorkflowIdTooLong)
    } else if !run_id.is_empty() && uuid::Uuid::parse_str(run_id).is_err() {
        Some(BadIds::InvalidRunId)
    } else {
        None
    }
}

/// SignalExternalWorkflowExecution: validated like the real server, then initiated.
pub(crate) fn signal_external(
    tx: &mut Tx,
    ctx: &CommandContext,
    a: &SignalExternalWorkflowExecutionCommandAttributes,
) -> std::result::Result<(), CommandFailure> {
    const COMMAND: &str = "SignalExternalWorkflowExecutionCommand";
    let cause = WorkflowTaskFailedCause::BadSignalWorkflowExecutionAttributes;
    let bad = |m: String| CommandFailure::new(cause, m);
    let Some(execution) = &a.execution else {
        return Err(bad(format!("Execution is not set on {COMMAND}.")));
    };
    same_namespace(ctx, &a.namespace, bad, "SignalExternalWorkflowExecution")?;
    let (ns, id, run, name) = (
        &a.namespace,
        &execution.workflow_id,
        &execution.run_id,
        &a.signal_name,
    );
    if let Some(bad_ids) = check_ids(ns, id, run) {
        let (ns_len, id_len, limit) = (ns.len(), id.len(), MAX_ID_LENGTH);
        return Err(bad(match bad_ids {
            BadIds::NoWorkflowId => format!(
                "WorkflowId is not set on {COMMAND}. Namespace={ns} RunId={run} SignalName={name}"
            ),
            BadIds::NamespaceTooLong => format!(
                "Namespace on {COMMAND} exceeds length limit. WorkflowId={id} Namespace={ns} Length={ns_len} Limit={limit} RunId={run} SignalName={name}"
            ),
            BadIds::WorkflowIdTooLong => format!(
                "WorkflowId on {COMMAND} exceeds length limit. WorkflowId={id} Length={id_len} Limit={limit} Namespace={ns} RunId={run} SignalName={name}"
            ),
            BadIds::InvalidRunId => format!(
                "Invalid RunId set on {COMMAND}. WorkflowId={id} Namespace={ns} RunId={run} SignalName={name}"
            ),
        }));
    }
    if a.signal_name.is_empty() {
        return Err(bad(format!(
            "SignalName is not set on {COMMAND}. WorkflowId={} Namespace={} RunId={}",
            execution.workflow_id, a.namespace, execution.run_id
        )));
    }
    ctx.check_pending(
        tx.ms.signals_external.len(),
        Limit::PendingSignals,
        WorkflowTaskFailedCause::PendingSignalsLimitExceeded,
        "pending signals to external workflows",
    )?;
    ctx.check_payload(
        payloads_size(a.input.as_ref()),
        cause,
        "SignalExternalWorkflowExecutionCommandAttributes.Input",
    )?;
    let initiated = Attributes::SignalExternalWorkflowExecutionInitiatedEventAttributes(
        SignalExternalWorkflowExecutionInitiatedEventAttributes {
            workflow_task_completed_event_id: ctx.completed_event_id,
            namespace: a.namespace.clone(),
            namespace_id: tx.ms.namespace_id.clone(),
            workflow_execution: Some(execution.clone()),
            signal_name: a.signal_name.clone(),
            input: a.input.clone(),
            control: a.control.clone(),
            child_workflow_only: a.child_workflow_only,
            header: a.header.clone(),
        },
    );
    initiate(
        tx,
        ctx,
        ExternalKind::Signal,
        initiated,
        execution,
        &a.control,
        a.child_workflow_only,
    );
    Ok(())
}

/// RequestCancelExternalWorkflowExecution: validated like the real server, then initiated.
pub(crate) fn cancel_external(
    tx: &mut Tx,
    ctx: &CommandContext,
    a: &RequestCancelExternalWorkflowExecutionCommandAttributes,
) -> std::result::Result<(), CommandFailure> {
    const COMMAND: &str = "RequestCancelExternalWorkflowExecutionCommand";
    let cause = WorkflowTaskFailedCause::BadRequestCancelExternalWorkflowExecutionAttributes;
    let bad = |m: String| CommandFailure::new(cause, m);
    same_namespace(
        ctx,
        &a.namespace,
        bad,
        "RequestCancelExternalWorkflowExecution",
    )?;
    let (ns, id, run) = (&a.namespace, &a.workflow_id, &a.run_id);
    if let Some(bad_ids) = check_ids(ns, id, run) {
        let (ns_len, id_len, limit) = (ns.len(), id.len(), MAX_ID_LENGTH);
        return Err(bad(match bad_ids {
            BadIds::NoWorkflowId => {
                format!("WorkflowId is not set on {COMMAND}. Namespace={ns} RunId={run}")
            }
            BadIds::NamespaceTooLong => format!(
                "Namespace on {COMMAND} exceeds length limit. WorkflowId={id} RunId={run} Namespace={ns} Length={ns_len} Limit={limit}"
            ),
            BadIds::WorkflowIdTooLong => format!(
                "WorkflowId on {COMMAND} exceeds length limit. WorkflowId={id} Length={id_len} Limit={limit} RunId={run} Namespace={ns}"
            ),
            BadIds::InvalidRunId => format!(
                "Invalid RunId set on {COMMAND}. WorkflowId={id} RunId={run} Namespace={ns}"
            ),
        }));
    }
    // A child initiated by this same completion has no run to cancel yet.
    let initiated_now = tx.ms.children.values().any(|c| {
        c.workflow_id == a.workflow_id
            && c.workflow_task_completed_event_id == ctx.completed_event_id
    });
    if initiated_now {
        return Err(bad(format!(
            "Start and RequestCancel for child workflow is not allowed in same workflow task. WorkflowId={} RunId={} Namespace={}",
            a.workflow_id, a.run_id, a.namespace
        )));
    }
    ctx.check_pending(
        tx.ms.cancels_external.len(),
        Limit::PendingCancelRequests,
        WorkflowTaskFailedCause::PendingRequestCancelLimitExceeded,
        "pending requests to cancel external workflows",
    )?;
    let execution = WorkflowExecution {
        workflow_id: a.workflow_id.clone(),
        run_id: a.run_id.clone(),
    };
    let initiated = Attributes::RequestCancelExternalWorkflowExecutionInitiatedEventAttributes(
        RequestCancelExternalWorkflowExecutionInitiatedEventAttributes {
            workflow_task_completed_event_id: ctx.completed_event_id,
            namespace: a.namespace.clone(),
            namespace_id: tx.ms.namespace_id.clone(),
            workflow_execution: Some(execution.clone()),
            control: a.control.clone(),
            child_workflow_only: a.child_workflow_only,
            reason: a.reason.clone(),
        },
    );
    initiate(
        tx,
        ctx,
        ExternalKind::Cancel,
        initiated,
        &execution,
        &a.control,
        a.child_workflow_only,
    );
    Ok(())
}

/// Records the initiated event, the target as pending, and the task that delivers it.
fn initiate(
    tx: &mut Tx,
    ctx: &CommandContext,
    kind: ExternalKind,
    initiated: Attributes,
    execution: &WorkflowExecution,
    control: &str,
    child_workflow_only: bool,
) {
    let id = tx
        .add(initiated)
        .expect("command events are never buffered");
    let target = ExternalTarget {
        namespace: ctx.namespace.clone(),
        namespace_id: tx.ms.namespace_id.clone(),
        workflow_id: execution.workflow_id.clone(),
        run_id: execution.run_id.clone(),
        control: control.to_string(),
        child_workflow_only,
    };
    let (pending, task) = match kind {
        ExternalKind::Signal => (
            &mut tx.ms.signals_external,
            Task::SignalExternal {
                initiated_event_id: id,
            },
        ),
        ExternalKind::Cancel => (
            &mut tx.ms.cancels_external,
            Task::CancelExternal {
                initiated_event_id: id,
            },
        ),
    };
    pending.insert(id, target);
    tx.tasks.push(task);
}

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExternalOutcome {
    Delivered,
    /// `SignalExternalWorkflowExecutionFailedCause` or
    /// `CancelExternalWorkflowExecutionFailedCause` as i32 (the two share their numbers).
    Failed {
        cause: i32,
    },
}

/// The leader's report of a delivery to the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalReportRequest {
    pub kind: ExternalKind,
    pub initiated_event_id: i64,
    pub outcome: ExternalOutcome,
    pub now: Nanos,
}

/// Records the delivery's outcome event and wakes the caller (the real server schedules a
/// workflow task for both outcomes).
pub fn external_reported(
    ms: &mut MutableState,
    req: ExternalReportRequest,
) -> Result<Transition<()>> {
    run(ms, req.now, |tx| {
        tx.ensure_running()?;
        let pending = match req.kind {
            ExternalKind::Signal => tx.ms.signals_external.remove(&req.initiated_event_id),
            ExternalKind::Cancel => tx.ms.cancels_external.remove(&req.initiated_event_id),
        };
        // Reported before (the leader retried after a crash): nothing more to record.
        let Some(target) = pending else {
            return Ok(());
        };
        let execution = Some(WorkflowExecution {
            workflow_id: target.workflow_id.clone(),
            run_id: target.run_id.clone(),
        });
        let initiated_event_id = req.initiated_event_id;
        let event = match (req.kind, req.outcome) {
            (ExternalKind::Signal, ExternalOutcome::Delivered) => {
                Attributes::ExternalWorkflowExecutionSignaledEventAttributes(
                    ExternalWorkflowExecutionSignaledEventAttributes {
                        initiated_event_id,
                        namespace: target.namespace,
                        namespace_id: target.namespace_id,
                        workflow_execution: execution,
                        control: target.control,
                    },
                )
            }
            (ExternalKind::Signal, ExternalOutcome::Failed { cause }) => {
                Attributes::SignalExternalWorkflowExecutionFailedEventAttributes(
                    SignalExternalWorkflowExecutionFailedEventAttributes {
                        cause,
                        // The real server leaves it unset on this event.
                        workflow_task_completed_event_id: 0,
                        namespace: target.namespace,
                        namespace_id: target.namespace_id,
                        workflow_execution: execution,
                        initiated_event_id,
                        control: target.control,
                    },
                )
            }
            (ExternalKind::Cancel, ExternalOutcome::Delivered) => {
                Attributes::ExternalWorkflowExecutionCancelRequestedEventAttributes(
                    ExternalWorkflowExecutionCancelRequestedEventAttributes {
                        initiated_event_id,
                        namespace: target.namespace,
                        namespace_id: target.namespace_id,
                        workflow_execution: execution,
                    },
                )
            }
            (ExternalKind::Cancel, ExternalOutcome::Failed { cause }) => {
                Attributes::RequestCancelExternalWorkflowExecutionFailedEventAttributes(
                    RequestCancelExternalWorkflowExecutionFailedEventAttributes {
                        cause,
                        // The real server leaves it unset on this event.
                        workflow_task_completed_event_id: 0,
                        namespace: target.namespace,
                        namespace_id: target.namespace_id,
                        workflow_execution: execution,
                        initiated_event_id,
                        // Empty here on the real server too.
                        control: String::new(),
                    },
                )
            }
        };
        tx.add(event);
        tx.schedule_workflow_task();
        Ok(())
    })
}

/// A signal delivered from another workflow's SignalExternal command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalFromWorkflowRequest {
    pub signal: super::signal::SignalRequest,
    pub caller: Caller,
}

/// A cancellation request delivered from another workflow's RequestCancelExternal command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelFromWorkflowRequest {
    pub cancel: super::lifecycle::RequestCancelRequest,
    pub caller: Caller,
}
