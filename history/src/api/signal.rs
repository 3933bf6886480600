//! SignalWorkflowExecution (temporalio/temporal `service/history/api/signalworkflow/api.go`).

use serde::{Deserialize, Serialize};
use temporalio_protos::temporal::api::{
    common::v1::{Header, Payloads, WorkflowExecution},
    history::v1::{WorkflowExecutionSignaledEventAttributes, history_event::Attributes},
};

use super::external::{Caller, SignalFromWorkflowRequest};
use crate::{
    error::Result,
    mutable_state::MutableState,
    time::Nanos,
    transition::{Transition, Tx, run},
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalRequest {
    pub signal_name: String,
    #[serde(with = "crate::pb::opt")]
    pub input: Option<Payloads>,
    pub identity: String,
    #[serde(with = "crate::pb::opt")]
    pub header: Option<Header>,
    /// Client-chosen id; a retried signal with the same id is applied once.
    pub request_id: String,
    pub now: Nanos,
}

/// Appends WorkflowExecutionSignaled (buffered while a workflow task runs) and schedules a
/// workflow task if none is pending.
pub fn signal_workflow(ms: &mut MutableState, req: SignalRequest) -> Result<Transition<()>> {
    signal(ms, req, None)
}

/// A signal from another workflow: the event names it, and a child-only signal reaches only
/// the caller's child (temporalio/temporal `api/signalworkflow/api.go`).
pub fn signal_from_workflow(
    ms: &mut MutableState,
    req: SignalFromWorkflowRequest,
) -> Result<Transition<()>> {
    signal(ms, req.signal, Some(&req.caller))
}

fn signal(
    ms: &mut MutableState,
    req: SignalRequest,
    caller: Option<&Caller>,
) -> Result<Transition<()>> {
    run(ms, req.now, |tx| {
        // A retried signal that already took effect succeeds, also once the run closed (the
        // real server checks the request id first too).
        if !req.request_id.is_empty() && tx.ms.signal_request_ids.contains(&req.request_id) {
            return Ok(());
        }
        tx.ensure_running()?;
        if let Some(caller) = caller {
            caller.check_parent_of(&tx.ms)?;
        }
        add_signal(tx, &req, caller.map(Caller::execution));
        // During a start delay the first workflow task waits for its timer.
        if !tx.ms.start_delay_pending {
            tx.schedule_workflow_task();
        }
        Ok(())
    })
}

pub(crate) fn add_signal(
    tx: &mut Tx,
    req: &SignalRequest,
    external_workflow_execution: Option<WorkflowExecution>,
) {
    if !req.request_id.is_empty() {
        tx.ms.signal_request_ids.insert(req.request_id.clone());
    }
    tx.add(Attributes::WorkflowExecutionSignaledEventAttributes(
        WorkflowExecutionSignaledEventAttributes {
            signal_name: req.signal_name.clone(),
            input: req.input.clone(),
            identity: req.identity.clone(),
            header: req.header.clone(),
            request_id: req.request_id.clone(),
            external_workflow_execution,
            ..Default::default()
        },
    ));
}
