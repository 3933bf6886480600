//! TerminateWorkflowExecution and RequestCancelWorkflowExecution.

use serde::{Deserialize, Serialize};
use temporalio_protos::temporal::api::{
    common::v1::Payloads,
    history::v1::{WorkflowExecutionCancelRequestedEventAttributes, history_event::Attributes},
};

use crate::{
    error::Result,
    mutable_state::MutableState,
    time::Nanos,
    transition::{Transition, run},
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
        tx.ensure_running()?;
        if tx.ms.cancel_requested {
            // Repeats (same or different request id) are accepted without a second event.
            return Ok(());
        }
        tx.ms.cancel_requested = true;
        tx.ms.cancel_request_id = req.request_id.clone();
        tx.add(Attributes::WorkflowExecutionCancelRequestedEventAttributes(
            WorkflowExecutionCancelRequestedEventAttributes {
                cause: req.reason.clone(),
                identity: req.identity.clone(),
                ..Default::default()
            },
        ));
        if !tx.ms.start_delay_pending {
            tx.schedule_workflow_task();
        }
        Ok(())
    })
}
