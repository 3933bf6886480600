//! The size limits the real server checks before a request reaches a workflow
//! (`service/frontend/workflow_handler.go`, `history/api/create_workflow_util.go`): a start or
//! a signal too big is refused and changes nothing; an activity's result, failure, details or
//! heartbeat too big fails the activity instead, with the real server's non-retryable server
//! failure. The limits on what a workflow task's commands carry are the state machine's
//! (`dura_history::limits`), which every replica must apply alike.

use dura_history::{events::server_failure, limits::Limit};
use prost::Message as _;
use temporalio_protos::temporal::api::{
    common::v1::{Memo, Payloads},
    failure::v1::{ApplicationFailureInfo, Failure, failure::FailureInfo},
};

use super::workflows::Workflows;
use crate::error::{ApiError, ApiResult};

/// The real server's failures for activity payloads over the limit (`common/util.go`).
const COMPLETE_RESULT_EXCEEDED: &str = "Complete result exceeds size limit.";
const FAILURE_EXCEEDED: &str = "Failure exceeds size limit.";
const CANCEL_DETAILS_EXCEEDED: &str = "Cancel details exceed size limit.";
const HEARTBEAT_DETAILS_EXCEEDED: &str = "Heartbeat details exceed size limit.";

/// What an activity's report becomes once its payloads are held to the limits.
pub(super) enum ActivityReport {
    /// As sent.
    Kept,
    /// Over the limit: the activity fails with this failure instead.
    Failed(Failure),
}

impl Workflows {
    fn over_blob_limit(&self, payloads: Option<&Payloads>) -> bool {
        self.limits
            .blob_refused(payloads.map_or(0, |p| p.encoded_len()))
    }

    /// A start's or signal's payload: refused over `limit.blobSize.error`.
    pub(super) fn check_blob(&self, payloads: Option<&Payloads>) -> ApiResult<()> {
        if self.over_blob_limit(payloads) {
            return Err(ApiError::InvalidArgument(
                "Blob data size exceeds limit.".into(),
            ));
        }
        Ok(())
    }

    /// A start's memo: refused over `limit.memoSize.error`.
    pub(super) fn check_memo(&self, memo: Option<&Memo>) -> ApiResult<()> {
        if self
            .limits
            .memo_refused(memo.map_or(0, |m| m.encoded_len()))
        {
            return Err(ApiError::InvalidArgument("Memo size exceeds limit.".into()));
        }
        Ok(())
    }

    /// RespondActivityTaskCompleted's result.
    pub(super) fn completed_activity(&self, result: Option<&Payloads>) -> ActivityReport {
        self.failing_over(result, COMPLETE_RESULT_EXCEEDED)
    }

    /// RespondActivityTaskCanceled's details.
    pub(super) fn canceled_activity(&self, details: Option<&Payloads>) -> ActivityReport {
        self.failing_over(details, CANCEL_DETAILS_EXCEEDED)
    }

    /// RecordActivityTaskHeartbeat's details.
    pub(super) fn heartbeat_details(&self, details: Option<&Payloads>) -> ActivityReport {
        self.failing_over(details, HEARTBEAT_DETAILS_EXCEEDED)
    }

    fn failing_over(&self, payloads: Option<&Payloads>, reason: &str) -> ActivityReport {
        if self.over_blob_limit(payloads) {
            ActivityReport::Failed(server_failure(reason, true))
        } else {
            ActivityReport::Kept
        }
    }

    /// RespondActivityTaskFailed's failure and last heartbeat details, as the real server
    /// passes them on: details over the limit are dropped, a failure over it is replaced by a
    /// server failure whose cause is the original cut down to `limit.blobSize.warn`. Returns
    /// the failures the caller is told of (the response's `failures`).
    pub(super) fn failed_activity(
        &self,
        failure: &mut Option<Failure>,
        last_heartbeat_details: &mut Option<Payloads>,
    ) -> Vec<Failure> {
        let mut told = Vec::new();
        if last_heartbeat_details.is_some() && self.over_blob_limit(last_heartbeat_details.as_ref())
        {
            told.push(server_failure(HEARTBEAT_DETAILS_EXCEEDED, true));
            *last_heartbeat_details = None;
        }
        if self
            .limits
            .blob_refused(failure.as_ref().map_or(0, |f| f.encoded_len()))
        {
            let warn = self
                .limits
                .get(Limit::BlobSizeWarn)
                .and_then(|w| usize::try_from(w).ok())
                .unwrap_or(usize::MAX);
            let mut replaced = server_failure(FAILURE_EXCEEDED, true);
            replaced.cause = failure.as_ref().map(|f| Box::new(truncate(f, warn, 20)));
            told.push(replaced.clone());
            *failure = Some(replaced);
        }
        told
    }
}

/// A failure cut down to about `budget` bytes, keeping what matters first (the real server's
/// `failure.TruncateWithDepth`): its kind, source, message, stack trace, then its causes.
fn truncate(f: &Failure, mut budget: usize, depth: usize) -> Failure {
    let failure_info = match &f.failure_info {
        Some(FailureInfo::ApplicationFailureInfo(info)) => {
            let kind = take(&info.r#type, &mut budget);
            budget = budget.saturating_sub(8);
            Some(FailureInfo::ApplicationFailureInfo(
                ApplicationFailureInfo {
                    non_retryable: info.non_retryable,
                    r#type: kind,
                    ..Default::default()
                },
            ))
        }
        Some(FailureInfo::ServerFailureInfo(info)) => {
            budget = budget.saturating_sub(4);
            Some(FailureInfo::ServerFailureInfo(info.clone()))
        }
        _ => None,
    };
    let source = take(&f.source, &mut budget);
    let message = take(&f.message, &mut budget);
    let stack_trace = take(&f.stack_trace, &mut budget);
    let cause = match &f.cause {
        Some(cause) if budget > 4 && depth > 0 => {
            Some(Box::new(truncate(cause, budget - 4, depth - 1)))
        }
        _ => None,
    };
    Failure {
        failure_info,
        source,
        message,
        stack_trace,
        cause,
        ..Default::default()
    }
}

/// As much of `s` as `budget` allows; the budget pays for it and its field's encoding.
fn take(s: &str, budget: &mut usize) -> String {
    let cut = truncate_utf8(s, *budget);
    *budget = budget.saturating_sub(cut.len());
    if !cut.is_empty() {
        *budget = budget.saturating_sub(4);
    }
    cut
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_the_kind_and_cuts_on_character_boundaries() {
        let failure = Failure {
            message: "é".repeat(100),
            stack_trace: "x".repeat(1000),
            failure_info: Some(FailureInfo::ApplicationFailureInfo(
                ApplicationFailureInfo {
                    r#type: "MyErr".into(),
                    non_retryable: true,
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        let cut = truncate(&failure, 51, 20);
        // 51 - "MyErr" (5) - 4 - 8 = 34 bytes of message, 17 two-byte characters.
        assert_eq!(cut.message, "é".repeat(17));
        assert!(cut.stack_trace.is_empty());
        assert!(matches!(
            cut.failure_info,
            Some(FailureInfo::ApplicationFailureInfo(ApplicationFailureInfo { non_retryable: true, ref r#type, .. })) if r#type == "MyErr"
        ));
        assert_eq!(truncate_utf8("aé", 2), "a");
    }
}
