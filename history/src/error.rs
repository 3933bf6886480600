//! The one error type of the crate. Each variant maps onto exactly one gRPC status code; the
//! mapping (and Temporal `errordetails` attachment) lives in `node`.

use serde::{Deserialize, Serialize};

/// A request the state machine refuses. Unless stated otherwise a refused request changed
/// nothing: apply works on a copy of the mutable state and only commits on success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum HistoryError {
    /// gRPC INVALID_ARGUMENT.
    #[error("{0}")]
    InvalidArgument(String),
    /// gRPC NOT_FOUND (unknown run, closed workflow, stale task token, ...).
    #[error("{0}")]
    NotFound(String),
    /// gRPC ALREADY_EXISTS with `WorkflowExecutionAlreadyStartedFailure` details.
    #[error("{message}")]
    WorkflowAlreadyStarted {
        message: String,
        start_request_id: String,
        run_id: String,
    },
    /// gRPC FAILED_PRECONDITION.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The task was already started by another poll: matching drops the task (Temporal's
    /// `TaskAlreadyStarted`, gRPC ALREADY_EXISTS between services).
    #[error("{0}")]
    TaskAlreadyStarted(String),
    /// The dispatched task no longer matches the mutable state (stamp, attempt, queue): matching
    /// drops the task (Temporal's `ObsoleteMatchingTask`, gRPC FAILED_PRECONDITION).
    #[error("{0}")]
    ObsoleteTask(String),
    /// gRPC UNIMPLEMENTED: a feature (e.g. a command type) Dura does not support yet.
    #[error("{0}")]
    Unimplemented(String),
    /// gRPC INTERNAL: an invariant of the stored state is broken.
    #[error("{0}")]
    Internal(String),
}

impl HistoryError {
    pub(crate) fn workflow_completed() -> Self {
        HistoryError::NotFound("workflow execution already completed".into())
    }

    pub(crate) fn workflow_task_not_found() -> Self {
        HistoryError::NotFound("Workflow task not found.".into())
    }

    pub(crate) fn activity_not_found() -> Self {
        HistoryError::NotFound(
            "invalid activityID or activity already timed out or invoking workflow is completed"
                .into(),
        )
    }
}

pub type Result<T, E = HistoryError> = std::result::Result<T, E>;
