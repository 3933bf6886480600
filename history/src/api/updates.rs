//! Workflow updates (temporalio/temporal `service/history/workflow/update`,
//! `docs/architecture/message-protocol.md`).
//!
//! An admitted update waits in mutable state until a workflow task carries it to the worker as
//! a protocol message. If no task is pending, the update gets a *speculative* one: like a
//! transient task its Scheduled/Started events are not written, and if the worker only rejects
//! the update, nothing of the task reaches history — as on the real server, only accepted
//! updates leave events (WorkflowExecutionUpdateAccepted, then ...Completed). The worker's
//! acceptance, rejection and response messages come back with the task's completion.

use serde::{Deserialize, Serialize};
use temporalio_protos::temporal::api::{
    history::v1::{
        WorkflowExecutionUpdateAcceptedEventAttributes,
        WorkflowExecutionUpdateCompletedEventAttributes, history_event::Attributes,
    },
    protocol::v1::{Message, message::SequencingId},
    update::v1::{Acceptance, Outcome, Rejection, Request, Response, outcome},
};

use super::commands::CommandFailure;
use crate::{
    error::{HistoryError, Result},
    mutable_state::MutableState,
    time::Nanos,
    transition::{Transition, Tx, run},
};

const REQUEST_TYPE: &str = "temporal.api.update.v1.Request";
const ACCEPTANCE_TYPE: &str = "temporal.api.update.v1.Acceptance";
const REJECTION_TYPE: &str = "temporal.api.update.v1.Rejection";
const RESPONSE_TYPE: &str = "temporal.api.update.v1.Response";

/// Where an update stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UpdateState {
    /// Waiting for the worker's decision; `order` keeps delivery in admission order.
    Admitted {
        order: u64,
        #[serde(with = "crate::pb::msg")]
        request: Request,
    },
    Accepted {
        accepted_event_id: i64,
    },
    /// Completed, or rejected (the outcome then holds the rejection's failure).
    Completed {
        #[serde(with = "crate::pb::msg")]
        outcome: Outcome,
    },
}

impl UpdateState {
    /// `UpdateWorkflowExecutionLifecycleStage` as i32: ADMITTED 1, ACCEPTED 2, COMPLETED 3.
    pub fn stage(&self) -> i32 {
        match self {
            UpdateState::Admitted { .. } => 1,
            UpdateState::Accepted { .. } => 2,
            UpdateState::Completed { .. } => 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdmitUpdateRequest {
    pub update_id: String,
    #[serde(with = "crate::pb::msg")]
    pub request: Request,
    pub now: Nanos,
}

/// Admits an update once per id (a retried admission returns the update's current state) and
/// makes sure a workflow task will carry it to the worker.
pub fn admit_update(
    ms: &mut MutableState,
    req: AdmitUpdateRequest,
) -> Result<Transition<UpdateState>> {
    run(ms, req.now, |tx| {
        if let Some(state) = tx.ms.updates.get(&req.update_id) {
            return Ok(state.clone());
        }
        tx.ensure_running()?;
        let order = tx.ms.updates.len() as u64;
        let state = UpdateState::Admitted {
            order,
            request: req.request,
        };
        tx.ms.updates.insert(req.update_id, state.clone());
        if tx.ms.workflow_task.is_none() && !tx.ms.start_delay_pending {
            tx.schedule_speculative_workflow_task();
        }
        Ok(state)
    })
}

/// The admitted updates a workflow task starting now carries, in admission order.
pub(crate) fn request_messages(ms: &MutableState, started_event_id: i64) -> Vec<Message> {
    let mut admitted: Vec<(u64, &String, &Request)> = ms
        .updates
        .iter()
        .filter_map(|(id, s)| match s {
            UpdateState::Admitted { order, request } => Some((*order, id, request)),
            _ => None,
        })
        .collect();
    admitted.sort_by_key(|(order, _, _)| *order);
    admitted
        .into_iter()
        .map(|(_, id, request)| Message {
            id: format!("{id}/request"),
            protocol_instance_id: id.clone(),
            body: Some(any(REQUEST_TYPE, request)),
            sequencing_id: Some(SequencingId::EventId(started_event_id - 1)),
        })
        .collect()
}

fn any(type_name: &str, message: &impl prost::Message) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("type.googleapis.com/{type_name}"),
        value: message.encode_to_vec(),
    }
}

pub(crate) fn has_admitted(ms: &MutableState) -> bool {
    ms.updates
        .values()
        .any(|s| matches!(s, UpdateState::Admitted { .. }))
}

/// A worker's message about an update, decoded.
pub(crate) enum UpdateMessage {
    Acceptance(Acceptance),
    Rejection(Rejection),
    Response(Response),
}

fn bad(detail: String) -> CommandFailure {
    CommandFailure::new(
        temporalio_protos::temporal::api::enums::v1::WorkflowTaskFailedCause::BadUpdateWorkflowExecutionMessage,
        detail,
    )
}

pub(crate) fn decode(message: &Message) -> std::result::Result<UpdateMessage, CommandFailure> {
    let body = message
        .body
        .as_ref()
        .ok_or_else(|| bad(format!("message {} has no body", message.id)))?;
    let name = body.type_url.rsplit('/').next().unwrap_or_default();
    let undecodable = |e: prost::DecodeError| bad(format!("message {}: {e}", message.id));
    use prost::Message as _;
    Ok(match name {
        ACCEPTANCE_TYPE => UpdateMessage::Acceptance(
            Acceptance::decode(body.value.as_slice()).map_err(undecodable)?,
        ),
        REJECTION_TYPE => {
            UpdateMessage::Rejection(Rejection::decode(body.value.as_slice()).map_err(undecodable)?)
        }
        RESPONSE_TYPE => {
            UpdateMessage::Response(Response::decode(body.value.as_slice()).map_err(undecodable)?)
        }
        other => {
            return Err(bad(format!(
                "message {} carries an unknown protocol message {other}",
                message.id
            )));
        }
    })
}

/// Whether the completion of a speculative task may vanish: it only rejects updates.
pub(crate) fn only_rejections(messages: &[Message]) -> bool {
    messages
        .iter()
        .all(|m| matches!(decode(m), Ok(UpdateMessage::Rejection(_))))
}

/// Applies one worker message about update `message.protocol_instance_id`.
pub(crate) fn apply_message(
    tx: &mut Tx,
    message: &Message,
) -> std::result::Result<(), CommandFailure> {
    let update_id = message.protocol_instance_id.clone();
    let state = tx
        .ms
        .updates
        .get(&update_id)
        .cloned()
        .ok_or_else(|| bad(format!("update {update_id} is not known to the workflow")))?;
    match (decode(message)?, state) {
        (UpdateMessage::Acceptance(a), UpdateState::Admitted { request, .. }) => {
            let id = tx
                .add(Attributes::WorkflowExecutionUpdateAcceptedEventAttributes(
                    WorkflowExecutionUpdateAcceptedEventAttributes {
                        protocol_instance_id: update_id.clone(),
                        accepted_request_message_id: a.accepted_request_message_id,
                        accepted_request_sequencing_event_id: a
                            .accepted_request_sequencing_event_id,
                        accepted_request: Some(a.accepted_request.unwrap_or(request)),
                    },
                ))
                .unwrap_or(0);
            tx.ms.updates.insert(
                update_id,
                UpdateState::Accepted {
                    accepted_event_id: id,
                },
            );
        }
        (UpdateMessage::Rejection(r), UpdateState::Admitted { .. }) => {
            tx.ms.updates.insert(
                update_id,
                UpdateState::Completed {
                    outcome: Outcome {
                        value: r.failure.map(outcome::Value::Failure),
                    },
                },
            );
        }
        (UpdateMessage::Response(r), UpdateState::Accepted { accepted_event_id }) => {
            let outcome = r.outcome.unwrap_or_default();
            tx.add(Attributes::WorkflowExecutionUpdateCompletedEventAttributes(
                WorkflowExecutionUpdateCompletedEventAttributes {
                    meta: r.meta,
                    accepted_event_id,
                    outcome: Some(outcome.clone()),
                },
            ));
            tx.ms
                .updates
                .insert(update_id, UpdateState::Completed { outcome });
        }
        (_, state) => {
            return Err(bad(format!(
                "message {} does not fit update {update_id} in stage {}",
                message.id,
                state.stage()
            )));
        }
    }
    Ok(())
}

/// The state of an update, for callers waiting on it.
pub fn update_state(ms: &MutableState, update_id: &str) -> Result<UpdateState> {
    ms.updates
        .get(update_id)
        .cloned()
        .ok_or_else(|| HistoryError::NotFound(format!("update {update_id} not found")))
}
