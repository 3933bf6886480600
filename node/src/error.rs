//! The one place where Dura's typed errors become gRPC statuses.
//!
//! Temporal's SDKs branch on the status code *and* on the typed failure in
//! `grpc-status-details-bin` (a `google.rpc.Status` whose details hold a
//! `temporal.api.errordetails.v1.*Failure`), so every error that the real server
//! annotates is annotated the same way here.

use prost::Message;
use temporalio_protos::{
    google::rpc::Status as RpcStatus,
    temporal::api::errordetails::v1::{
        NamespaceAlreadyExistsFailure, NamespaceNotFoundFailure, QueryFailedFailure,
        WorkflowExecutionAlreadyStartedFailure,
    },
};
use tonic::{Code, Status};

use crate::namespace::NamespaceError;

/// Everything a frontend handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unavailable(String),
    /// The group has no leader this node could reach in time (an election, or a partition).
    /// Kept apart from `Unavailable` so routing can tell "try the hinted node" from "failed".
    #[error("shard {group} has no reachable leader (last known: {leader:?})")]
    NotLeader {
        group: dura_raft_store::GroupId,
        leader: Option<u64>,
    },
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The workflow's query handler failed; the SDK raises it as WorkflowQueryFailedError.
    #[error("{message}")]
    QueryFailed {
        message: String,
        failure: Option<Box<temporalio_protos::temporal::api::failure::v1::Failure>>,
    },
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    History(#[from] dura_history::HistoryError),
    /// The answer of the node a call was forwarded to, passed on unchanged.
    #[error("{}", .0.message())]
    Forwarded(Status),
}

impl From<dura_raft_store::ProposeError> for ApiError {
    fn from(err: dura_raft_store::ProposeError) -> Self {
        match err {
            dura_raft_store::ProposeError::NotLeader { group, leader } => {
                ApiError::NotLeader { group, leader }
            }
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}

impl From<dura_history::visibility::query::QueryError> for ApiError {
    fn from(err: dura_history::visibility::query::QueryError) -> Self {
        ApiError::InvalidArgument(err.to_string())
    }
}

impl From<dura_raft_store::Error> for ApiError {
    fn from(err: dura_raft_store::Error) -> Self {
        ApiError::Internal(err.to_string())
    }
}

fn with_detail<M: Message>(code: Code, message: String, type_name: &str, detail: M) -> Status {
    let status = RpcStatus {
        code: code as i32,
        message: message.clone(),
        details: vec![prost_types::Any {
            type_url: format!("type.googleapis.com/{type_name}"),
            value: detail.encode_to_vec(),
        }],
    };
    Status::with_details(code, message, status.encode_to_vec().into())
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        let message = err.to_string();
        match err {
            ApiError::InvalidArgument(_) => Status::invalid_argument(message),
            ApiError::NotFound(_) => Status::not_found(message),
            ApiError::FailedPrecondition(_) => Status::failed_precondition(message),
            // Every SDK retries UNAVAILABLE with the same request id, which is what an election
            // or a leader change needs.
            ApiError::Unavailable(_) | ApiError::NotLeader { .. } => Status::unavailable(message),
            ApiError::Unimplemented(_) => Status::unimplemented(message),
            ApiError::DeadlineExceeded(_) => Status::deadline_exceeded(message),
            ApiError::QueryFailed { failure, .. } => with_detail(
                Code::InvalidArgument,
                message,
                "temporal.api.errordetails.v1.QueryFailedFailure",
                QueryFailedFailure {
                    failure: failure.map(|f| *f),
                },
            ),
            ApiError::Internal(_) => Status::internal(message),
            ApiError::Forwarded(status) => status,
            ApiError::Namespace(ns) => match ns {
                NamespaceError::NotFound(name) => with_detail(
                    Code::NotFound,
                    message,
                    "temporal.api.errordetails.v1.NamespaceNotFoundFailure",
                    NamespaceNotFoundFailure { namespace: name },
                ),
                NamespaceError::AlreadyExists(_) => with_detail(
                    Code::AlreadyExists,
                    message,
                    "temporal.api.errordetails.v1.NamespaceAlreadyExistsFailure",
                    NamespaceAlreadyExistsFailure {},
                ),
                NamespaceError::IdNotFound(_) => Status::not_found(message),
                NamespaceError::Invalid(_) => Status::invalid_argument(message),
                NamespaceError::Internal(_) => Status::internal(message),
            },
            ApiError::History(history) => {
                use dura_history::HistoryError as H;
                match history {
                    H::InvalidArgument(_) => Status::invalid_argument(message),
                    // Stale tasks are a matching concern; a client only ever sees "not found".
                    H::NotFound(_) | H::TaskAlreadyStarted(_) | H::ObsoleteTask(_) => {
                        Status::not_found(message)
                    }
                    H::WorkflowAlreadyStarted {
                        start_request_id,
                        run_id,
                        ..
                    } => with_detail(
                        Code::AlreadyExists,
                        message,
                        "temporal.api.errordetails.v1.WorkflowExecutionAlreadyStartedFailure",
                        WorkflowExecutionAlreadyStartedFailure {
                            start_request_id,
                            run_id,
                            ..Default::default()
                        },
                    ),
                    H::FailedPrecondition(_) => Status::failed_precondition(message),
                    H::Unimplemented(_) => Status::unimplemented(message),
                    H::Internal(_) => Status::internal(message),
                }
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_proposal_stays_typed_until_the_edge_makes_it_unavailable() {
        let err = ApiError::from(dura_raft_store::ProposeError::NotLeader {
            group: dura_raft_store::GroupId(3),
            leader: Some(2),
        });
        assert!(matches!(
            err,
            ApiError::NotLeader {
                group: dura_raft_store::GroupId(3),
                leader: Some(2)
            }
        ));
        assert_eq!(Status::from(err).code(), Code::Unavailable);
        let err = ApiError::from(dura_raft_store::ProposeError::Unavailable {
            group: dura_raft_store::GroupId(3),
            reason: "shutting down".into(),
        });
        assert!(matches!(err, ApiError::Unavailable(_)));
        assert_eq!(Status::from(err).code(), Code::Unavailable);
    }
}
