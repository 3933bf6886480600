//! The real server's limits on what a workflow task's commands carry and leave pending
//! (`respondworkflowtaskcompleted/workflow_size_checker.go` and its calls in
//! `workflow_task_completed_handler.go`): a payload, memo or search attributes over their size
//! limit terminate the run (the task is failed, then the run terminated with the failure's
//! message); a pending count at its limit fails the task, which the worker retries.

use std::collections::HashMap;

use prost::Message as _;
use temporalio_protos::temporal::api::{
    common::v1::{Memo, Payload, Payloads, SearchAttributes},
    enums::v1::WorkflowTaskFailedCause,
    protocol::v1::Message,
};

use super::commands::{CommandContext, CommandFailure};
use crate::limits::Limit;

type CommandResult = Result<(), CommandFailure>;

impl CommandContext {
    /// `size` bytes of payload against `limit.blobSize.error`; `what` names the field as the
    /// real server's message does ("ScheduleActivityTaskCommandAttributes.Input").
    pub(crate) fn check_payload(
        &self,
        size: usize,
        cause: WorkflowTaskFailedCause,
        what: &str,
    ) -> CommandResult {
        refused_over(self.limits.blob_refused(size), cause, what)
    }

    /// A memo against `limit.memoSize.error`.
    pub(crate) fn check_memo(
        &self,
        memo: Option<&Memo>,
        cause: WorkflowTaskFailedCause,
        what: &str,
    ) -> CommandResult {
        let size = memo.map_or(0, |m| m.encoded_len());
        refused_over(self.limits.memo_refused(size), cause, what)
    }

    /// Search attributes against the value and total size limits.
    pub(crate) fn check_search_attribute_sizes(
        &self,
        attributes: Option<&SearchAttributes>,
        cause: WorkflowTaskFailedCause,
    ) -> CommandResult {
        let Some(attributes) = attributes else {
            return Ok(());
        };
        crate::visibility::check_search_attribute_sizes(attributes, &self.limits)
            .map_err(|message| terminating(cause, message))
    }

    /// A protocol message's body against `limit.blobSize.error` (`handleMessage`).
    pub(crate) fn check_message(&self, message: &Message) -> CommandResult {
        let Some(body) = &message.body else {
            return Ok(());
        };
        let kind = body
            .type_url
            .rsplit_once('/')
            .map_or(body.type_url.as_str(), |(_, name)| name);
        self.check_payload(
            body.encoded_len(),
            WorkflowTaskFailedCause::BadUpdateWorkflowExecutionMessage,
            &format!("Message type {kind}"),
        )
    }

    /// One more of something pending (activities, children) when `pending` already are.
    pub(crate) fn check_pending(
        &self,
        pending: usize,
        limit: Limit,
        cause: WorkflowTaskFailedCause,
        description: &str,
    ) -> CommandResult {
        match self.limits.get(limit) {
            Some(max) if self.limits.reached(limit, pending) => Err(CommandFailure::new(
                cause,
                format!(
                    "the number of {description}, {pending}, has reached the per-workflow limit of {max}"
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// The run-terminating failure of a size limit `what` broke, if `refused`.
fn refused_over(refused: bool, cause: WorkflowTaskFailedCause, what: &str) -> CommandResult {
    if refused {
        return Err(terminating(cause, format!("{what} exceeds size limit.")));
    }
    Ok(())
}

fn terminating(cause: WorkflowTaskFailedCause, detail: String) -> CommandFailure {
    CommandFailure {
        terminate: true,
        ..CommandFailure::new(cause, detail)
    }
}

/// The real server's `payloadsMapSize`: keys and payload data, not their encoding.
pub(crate) fn payload_map_size(fields: &HashMap<String, Payload>) -> usize {
    fields.iter().map(|(k, v)| k.len() + v.data.len()).sum()
}

/// The real server's `common.GetPayloadsMapSize`: keys and the encoded `Payloads`.
pub(crate) fn payloads_map_size(fields: &HashMap<String, Payloads>) -> usize {
    fields.iter().map(|(k, v)| k.len() + v.encoded_len()).sum()
}

/// The encoded size of optional payloads (`Payloads.Size()` of a nil message is 0).
pub(crate) fn payloads_size(payloads: Option<&Payloads>) -> usize {
    payloads.map_or(0, |p| p.encoded_len())
}
