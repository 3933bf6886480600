//! TerminateWorkflowExecution and RequestCancelWorkflowExecution.

use serde::{Deserialize, Serialize};
use temporalio_protos::temporal::api::{
    common::v1::Payloads,
    history::v1::{WorkflowExecutionCancelRequestedEventAttributes, history_event::Attributes},
};

use super::external::{Caller, CancelFromWorkflowRequest};
use crate::{
    error::Result,
    mutable_state::MutableState,
    time::Nanos,
    transition::{Transition, Tx, run},
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TerminateRequest {
    pub reason: String,
    #[serde(with = "crate::pb::opt")]
    pub details: Option<Payloads>,
    pub identity: String,
    pub now: Nanos,
}

/// Closes the run as TERMINATED; a started workflow task is failed first (FORCE_CLOSE_COMMAND).
pub fn terminate_workflow(ms: &mut MutableState, req: TerminateRequest) -> Result<Transition<()>> {
    run(ms, req.now, |tx| {
        tx.ensure_running()?;
        super::start::terminate(tx, req.reason, req.details, req.identity);
        Ok(())
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestCancelRequest {
    pub reason: String,
    pub identity: String,
    pub request_id: String,
    pub now: Nanos,
}

/// Records WorkflowExecutionCancelRequested once and wakes the workflow; the workflow code
/// decides what cancellation means (it usually answers with CancelWorkflowExecution).
pub fn request_cancel_workflow(
    ms: &mut MutableState,
    req: RequestCancelRequest,
) -> Result<Transition<()>> {
    run(ms, req.now, |tx| {
        // As on the real server (`api/requestcancelworkflow/api.go`), a run already closed
        // takes the request as done.
        if tx.ms.is_running() {
            add_cancel_request(tx, &req, None);
        }
        Ok(())
    })
}

/// A cancellation request from another workflow: a child-only request reaches only the
/// caller's child.
pub fn cancel_from_workflow(
    ms: &mut MutableState,
    req: CancelFromWorkflowRequest,
) -> Result<Transition<()>> {
    run(ms, req.cancel.now, |tx| {
        // Closed: done, as for any cancellation request.
        if !tx.ms.is_running() {
            return Ok(());
        }
        req.caller.check_parent_of(&tx.ms)?;
        add_cancel_request(tx, &req.cancel, Some(&req.caller));
        Ok(())
    })
}

fn add_cancel_request(tx: &mut Tx, req: &RequestCancelRequest, caller: Option<&Caller>) {
    if tx.ms.cancel_requested {
        // Repeats (same or different request id) are accepted without a second event.
        return;
    }
    tx.ms.cancel_requested = true;
    tx.ms.cancel_request_id = req.request_id.clone();
    tx.add(Attributes::WorkflowExecutionCancelRequestedEventAttributes(
        WorkflowExecutionCancelRequestedEventAttributes {
            cause: req.reason.clone(),
            identity: req.identity.clone(),
            external_initiated_event_id: caller.map_or(0, |c| c.initiated_event_id),
            external_workflow_execution: caller.map(Caller::execution),
        },
    ));
    if !tx.ms.start_delay_pending {
        tx.schedule_workflow_task();
    }
}
