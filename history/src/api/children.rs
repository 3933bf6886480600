//! Child workflows, parent side and child side (temporalio/temporal
//! `service/history/api/respondworkflowtaskcompleted` `handleCommandStartChildWorkflow`,
//! `api/recordchildworkflowcompleted`, the transfer queue's start-child and close tasks).
//!
//! A StartChildWorkflowExecution command records StartChildWorkflowExecutionInitiated and a
//! `StartChild` task. The shard leader starts the child (in the child's shard) and reports back
//! with [`ChildStartedRequest`] or [`ChildStartFailedRequest`]. When a child run closes for good
//! (not into a retry or continue-as-new) it emits `NotifyParent`, which becomes a
//! [`ChildClosedRequest`] to the parent. When a parent closes, each started child whose
//! parent close policy is TERMINATE or REQUEST_CANCEL gets a `ParentClosePolicy` task.

// `namespace` and `control` are deprecated in the protos, but the real server still reads and
// writes them, and the SDKs replay histories that carry them.
#![allow(deprecated)]

use serde::{Deserialize, Serialize};
use temporalio_protos::temporal::api::{
    command::v1::StartChildWorkflowExecutionCommandAttributes,
    common::v1::{Header, Payloads, WorkflowExecution, WorkflowType},
    enums::v1::{
        ParentClosePolicy, StartChildWorkflowExecutionFailedCause, WorkflowIdReusePolicy,
        WorkflowTaskFailedCause,
    },
    failure::v1::Failure,
    history::v1::{
        ChildWorkflowExecutionCanceledEventAttributes,
        ChildWorkflowExecutionCompletedEventAttributes,
        ChildWorkflowExecutionFailedEventAttributes, ChildWorkflowExecutionStartedEventAttributes,
        ChildWorkflowExecutionTerminatedEventAttributes,
        ChildWorkflowExecutionTimedOutEventAttributes,
        StartChildWorkflowExecutionFailedEventAttributes,
        StartChildWorkflowExecutionInitiatedEventAttributes, history_event::Attributes,
    },
};

use super::{
    command_limits::payloads_size,
    commands::{CommandContext, CommandFailure},
};
use crate::{
    error::{HistoryError, Result},
    limits::Limit,
    mutable_state::{ChildInfo, MutableState},
    retry,
    tasks::{ParentClosePolicyTask, Task, TaskQueueRef},
    time::{Nanos, from_duration, to_duration},
    transition::{Transition, Tx, run},
};

use super::start::{DEFAULT_WORKFLOW_TASK_TIMEOUT, normalized_timeouts};

/// StartChildWorkflowExecution: validates and defaults the command like the real server, then
/// records the initiated event and the task that starts the child.
pub(crate) fn start_child(
    tx: &mut Tx,
    ctx: &CommandContext,
    mut a: StartChildWorkflowExecutionCommandAttributes,
) -> std::result::Result<(), CommandFailure> {
    let bad = |m: String| {
        CommandFailure::new(WorkflowTaskFailedCause::BadStartChildExecutionAttributes, m)
    };
    let workflow_type = a
        .workflow_type
        .as_ref()
        .map(|t| t.name.clone())
        .unwrap_or_default();
    if a.namespace.is_empty() {
        a.namespace = ctx.namespace.clone();
    } else if a.namespace != ctx.namespace {
        return Err(bad(format!(
            "Dura does not support child workflows in another namespace yet. WorkflowId={} \
             Namespace={}",
            a.workflow_id, a.namespace
        )));
    }
    if a.workflow_id.is_empty() {
        return Err(bad(format!(
            "Required field WorkflowId is not set on StartChildWorkflowExecutionCommand. \
             WorkflowType={workflow_type} Namespace={}",
            a.namespace
        )));
    }
    if workflow_type.is_empty() {
        return Err(bad(format!(
            "Required field WorkflowType is not set on StartChildWorkflowExecutionCommand. \
             WorkflowId={} Namespace={}",
            a.workflow_id, a.namespace
        )));
    }
    ctx.check_search_attributes(a.search_attributes.as_ref())?;
    if !a.cron_schedule.is_empty() {
        return Err(bad(
            "Dura does not support cron schedules on child workflows yet.".into(),
        ));
    }
    for (d, what) in [
        (&a.workflow_execution_timeout, "WorkflowExecutionTimeout"),
        (&a.workflow_run_timeout, "WorkflowRunTimeout"),
        (&a.workflow_task_timeout, "WorkflowTaskTimeout"),
    ] {
        if from_duration(d.as_ref()) < 0 {
            return Err(bad(format!(
                "Invalid {what} on StartChildWorkflowExecutionCommand: negative duration. \
                 WorkflowId={} WorkflowType={workflow_type} Namespace={}",
                a.workflow_id, a.namespace
            )));
        }
    }
    if let Some(policy) = a.retry_policy.as_mut() {
        retry::ensure_defaults(policy);
        retry::validate(policy).map_err(|e| {
            bad(format!(
                "invalid WorkflowRetryPolicy on StartChildWorkflowExecutionCommand: {e}. \
                 WorkflowId={} WorkflowType={workflow_type} Namespace={}",
                a.workflow_id, a.namespace
            ))
        })?;
    }
    let cause = WorkflowTaskFailedCause::BadStartChildExecutionAttributes;
    ctx.check_payload(
        payloads_size(a.input.as_ref()),
        cause,
        "StartChildWorkflowExecutionCommandAttributes. Input",
    )?;
    ctx.check_memo(
        a.memo.as_ref(),
        cause,
        "StartChildWorkflowExecutionCommandAttributes.Memo",
    )?;
    ctx.check_search_attribute_sizes(a.search_attributes.as_ref(), cause)?;
    ctx.check_pending(
        tx.ms.children.len(),
        Limit::PendingChildExecutions,
        WorkflowTaskFailedCause::PendingChildWorkflowsLimitExceeded,
        "pending child workflow executions",
    )?;
    let tq = a.task_queue.get_or_insert_with(Default::default);
    if tq.name.is_empty() {
        *tq = TaskQueueRef::normal(tx.ms.task_queue.clone()).to_proto();
    }
    let (run_timeout, task_timeout) = normalized_timeouts(
        from_duration(a.workflow_execution_timeout.as_ref()),
        from_duration(a.workflow_run_timeout.as_ref()),
        from_duration(a.workflow_task_timeout.as_ref()),
        DEFAULT_WORKFLOW_TASK_TIMEOUT,
    );
    a.workflow_run_timeout = Some(to_duration(run_timeout));
    a.workflow_task_timeout = Some(to_duration(task_timeout));
    if a.parent_close_policy == ParentClosePolicy::Unspecified as i32 {
        a.parent_close_policy = ParentClosePolicy::Terminate as i32;
    }
    if a.workflow_id_reuse_policy == WorkflowIdReusePolicy::Unspecified as i32 {
        a.workflow_id_reuse_policy = WorkflowIdReusePolicy::AllowDuplicate as i32;
    }

    let initiated = StartChildWorkflowExecutionInitiatedEventAttributes {
        workflow_task_completed_event_id: ctx.completed_event_id,
        namespace: a.namespace.clone(),
        namespace_id: tx.ms.namespace_id.clone(),
        workflow_id: a.workflow_id.clone(),
        workflow_type: a.workflow_type.clone(),
        task_queue: a.task_queue.clone(),
        header: a.header.clone(),
        input: a.input.clone(),
        workflow_execution_timeout: a.workflow_execution_timeout,
        workflow_run_timeout: a.workflow_run_timeout,
        workflow_task_timeout: a.workflow_task_timeout,
        control: a.control.clone(),
        workflow_id_reuse_policy: a.workflow_id_reuse_policy,
        retry_policy: a.retry_policy.clone(),
        cron_schedule: String::new(),
        // Like the real server's FilterNilMemo/FilterNilSearchAttributes: empty maps vanish.
        memo: a.memo.clone().filter(|m| !m.fields.is_empty()),
        search_attributes: a
            .search_attributes
            .clone()
            .filter(|s| !s.indexed_fields.is_empty()),
        parent_close_policy: a.parent_close_policy,
        inherit_build_id: a.inherit_build_id,
        priority: a.priority.clone(),
        ..Default::default()
    };
    let id = tx
        .add(Attributes::StartChildWorkflowExecutionInitiatedEventAttributes(initiated))
        .expect("command events are never buffered");
    tx.ms.children.insert(
        id,
        ChildInfo {
            initiated_event_id: id,
            workflow_task_completed_event_id: ctx.completed_event_id,
            namespace: a.namespace,
            namespace_id: tx.ms.namespace_id.clone(),
            workflow_id: a.workflow_id,
            workflow_type,
            parent_close_policy: a.parent_close_policy,
            run_id: String::new(),
            started_event_id: 0,
        },
    );
    tx.tasks.push(Task::StartChild {
        initiated_event_id: id,
    });
    Ok(())
}

fn pending_child(tx: &Tx, initiated_event_id: i64) -> Result<ChildInfo> {
    tx.ensure_running()?;
    tx.ms
        .children
        .get(&initiated_event_id)
        .cloned()
        .ok_or_else(|| HistoryError::NotFound("Pending child execution not found.".into()))
}

fn workflow_type(child: &ChildInfo) -> Option<WorkflowType> {
    Some(WorkflowType {
        name: child.workflow_type.clone(),
    })
}

/// The child was started (or already had been, by this same initiation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildStartedRequest {
    pub initiated_event_id: i64,
    pub run_id: String,
    /// The initiated event's header, repeated on the started event.
    #[serde(with = "crate::pb::opt")]
    pub header: Option<Header>,
    pub now: Nanos,
}

pub fn child_started(ms: &mut MutableState, req: ChildStartedRequest) -> Result<Transition<()>> {
    run(ms, req.now, |tx| {
        let child = pending_child(tx, req.initiated_event_id)?;
        if child.is_started() {
            // A repeated report (the leader retried after a crash) changes nothing.
            return Ok(());
        }
        let started = tx.add(Attributes::ChildWorkflowExecutionStartedEventAttributes(
            ChildWorkflowExecutionStartedEventAttributes {
                namespace: child.namespace.clone(),
                namespace_id: child.namespace_id.clone(),
                initiated_event_id: child.initiated_event_id,
                workflow_execution: Some(WorkflowExecution {
                    workflow_id: child.workflow_id.clone(),
                    run_id: req.run_id.clone(),
                }),
                workflow_type: workflow_type(&child),
                header: req.header,
            },
        ));
        let info = tx
            .ms
            .children
            .get_mut(&req.initiated_event_id)
            .expect("checked above");
        info.run_id = req.run_id;
        // A buffered started event gets its id when the buffer is flushed.
        info.started_event_id = started.unwrap_or(0);
        tx.schedule_workflow_task();
        Ok(())
    })
}

/// The child could not be started: its workflow id is taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildStartFailedRequest {
    pub initiated_event_id: i64,
    pub now: Nanos,
}

pub fn child_start_failed(
    ms: &mut MutableState,
    req: ChildStartFailedRequest,
) -> Result<Transition<()>> {
    run(ms, req.now, |tx| {
        let child = pending_child(tx, req.initiated_event_id)?;
        if child.is_started() {
            return Err(HistoryError::FailedPrecondition(
                "The child workflow was already started.".into(),
            ));
        }
        tx.add(
            Attributes::StartChildWorkflowExecutionFailedEventAttributes(
                StartChildWorkflowExecutionFailedEventAttributes {
                    namespace: child.namespace.clone(),
                    namespace_id: child.namespace_id.clone(),
                    workflow_id: child.workflow_id.clone(),
                    workflow_type: workflow_type(&child),
                    cause: StartChildWorkflowExecutionFailedCause::WorkflowAlreadyExists as i32,
                    initiated_event_id: child.initiated_event_id,
                    workflow_task_completed_event_id: child.workflow_task_completed_event_id,
                    ..Default::default()
                },
            ),
        );
        tx.ms.children.remove(&req.initiated_event_id);
        tx.schedule_workflow_task();
        Ok(())
    })
}

/// How a child run ended, from its close event.
// Built once per child close and consumed right away; boxing the failure buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ChildOutcome {
    Completed(#[serde(with = "crate::pb::opt")] Option<Payloads>),
    Failed {
        #[serde(with = "crate::pb::opt")]
        failure: Option<Failure>,
        retry_state: i32,
    },
    Canceled(#[serde(with = "crate::pb::opt")] Option<Payloads>),
    Terminated,
    TimedOut {
        retry_state: i32,
    },
}

/// A started child closed (its last run, for a chain of retries or continue-as-new).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildClosedRequest {
    pub initiated_event_id: i64,
    /// The run that closed.
    pub run_id: String,
    pub outcome: ChildOutcome,
    pub now: Nanos,
}

pub fn child_closed(ms: &mut MutableState, req: ChildClosedRequest) -> Result<Transition<()>> {
    run(ms, req.now, |tx| {
        let child = pending_child(tx, req.initiated_event_id)?;
        if !child.is_started() {
            // The child closed before its start was recorded here; the report is retried.
            return Err(HistoryError::FailedPrecondition(
                "Pending child workflow not started yet.".into(),
            ));
        }
        let namespace = child.namespace.clone();
        let namespace_id = child.namespace_id.clone();
        let initiated_event_id = child.initiated_event_id;
        let started_event_id = child.started_event_id;
        let workflow_execution = Some(WorkflowExecution {
            workflow_id: child.workflow_id.clone(),
            run_id: req.run_id.clone(),
        });
        let workflow_type = workflow_type(&child);
        let attrs = match req.outcome {
            ChildOutcome::Completed(result) => {
                Attributes::ChildWorkflowExecutionCompletedEventAttributes(
                    ChildWorkflowExecutionCompletedEventAttributes {
                        result,
                        namespace,
                        namespace_id,
                        workflow_execution,
                        workflow_type,
                        initiated_event_id,
                        started_event_id,
                    },
                )
            }
            ChildOutcome::Failed {
                failure,
                retry_state,
            } => Attributes::ChildWorkflowExecutionFailedEventAttributes(
                ChildWorkflowExecutionFailedEventAttributes {
                    failure,
                    namespace,
                    namespace_id,
                    workflow_execution,
                    workflow_type,
                    initiated_event_id,
                    started_event_id,
                    retry_state,
                },
            ),
            ChildOutcome::Canceled(details) => {
                Attributes::ChildWorkflowExecutionCanceledEventAttributes(
                    ChildWorkflowExecutionCanceledEventAttributes {
                        details,
                        namespace,
                        namespace_id,
                        workflow_execution,
                        workflow_type,
                        initiated_event_id,
                        started_event_id,
                    },
                )
            }
            ChildOutcome::Terminated => {
                Attributes::ChildWorkflowExecutionTerminatedEventAttributes(
                    ChildWorkflowExecutionTerminatedEventAttributes {
                        namespace,
                        namespace_id,
                        workflow_execution,
                        workflow_type,
                        initiated_event_id,
                        started_event_id,
                    },
                )
            }
            ChildOutcome::TimedOut { retry_state } => {
                Attributes::ChildWorkflowExecutionTimedOutEventAttributes(
                    ChildWorkflowExecutionTimedOutEventAttributes {
                        namespace,
                        namespace_id,
                        workflow_execution,
                        workflow_type,
                        initiated_event_id,
                        started_event_id,
                        retry_state,
                    },
                )
            }
        };
        tx.add(attrs);
        tx.ms.children.remove(&req.initiated_event_id);
        tx.schedule_workflow_task();
        Ok(())
    })
}

/// The cross-shard work a run's close leaves behind: each started child's parent close policy
/// and, for a child whose chain ends here, the report to its parent.
pub(crate) fn close_tasks(tx: &mut Tx) {
    for child in std::mem::take(&mut tx.ms.children).into_values() {
        let policy = child.parent_close_policy;
        let acts = policy == ParentClosePolicy::Terminate as i32
            || policy == ParentClosePolicy::RequestCancel as i32;
        if acts && child.is_started() {
            tx.tasks
                .push(Task::ParentClosePolicy(ParentClosePolicyTask {
                    initiated_event_id: child.initiated_event_id,
                    namespace_id: child.namespace_id,
                    workflow_id: child.workflow_id,
                    run_id: child.run_id,
                    policy,
                }));
        }
    }
    if tx.ms.parent.is_some() && tx.continuation.is_none() {
        tx.tasks.push(Task::NotifyParent {
            completion_event_id: tx.ms.completion_event_id,
        });
    }
}

/// The report a closed child run owes its parent, from the run's close event.
pub fn outcome_of_close_event(attrs: &Attributes) -> Option<ChildOutcome> {
    Some(match attrs {
        Attributes::WorkflowExecutionCompletedEventAttributes(a) => {
            ChildOutcome::Completed(a.result.clone())
        }
        Attributes::WorkflowExecutionFailedEventAttributes(a) => ChildOutcome::Failed {
            failure: a.failure.clone(),
            retry_state: a.retry_state,
        },
        Attributes::WorkflowExecutionCanceledEventAttributes(a) => {
            ChildOutcome::Canceled(a.details.clone())
        }
        Attributes::WorkflowExecutionTerminatedEventAttributes(_) => ChildOutcome::Terminated,
        Attributes::WorkflowExecutionTimedOutEventAttributes(a) => ChildOutcome::TimedOut {
            retry_state: a.retry_state,
        },
        _ => return None,
    })
}
