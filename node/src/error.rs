//! The one place where Dura's typed errors become gRPC statuses.
//!
//! Temporal's SDKs branch on the status code *and* on the typed failure in
//! `grpc-status-details-bin` (a `google.rpc.Status` whose details hold a
//! `temporal.api.errordetails.v1.*Failure`), so every error that the real server
//! annotates is annotated the same way here.

use prost::Message;
use temporalio_protos::{
    google::rpc::Status as RpcStatus,
    temporal::api::{
        enums::v1::{ResourceExhaustedCause, ResourceExhaustedScope},
        errordetails::v1::{
            NamespaceAlreadyExistsFailure, NamespaceNotFoundFailure, NotFoundFailure,
            PermissionDeniedFailure, QueryFailedFailure, ResourceExhaustedFailure,
            WorkflowExecutionAlreadyStartedFailure,
        },
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
    /// The caller's credentials do not allow the call; why is logged, not told (as the real
    /// server's generic refusal).
    #[error("Request unauthorized.")]
    PermissionDenied,
    /// The namespace made more requests of this node than `frontend.namespaceRPS` allows.
    #[error("namespace rate limit exceeded")]
    NamespaceRateLimited,
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

impl From<crate::clock::UnbalancedUnlock> for ApiError {
    fn from(err: crate::clock::UnbalancedUnlock) -> Self {
        ApiError::FailedPrecondition(err.to_string())
    }
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

/// The real server's NOT_FOUND always carries a `NotFoundFailure` (go.temporal.io/api
/// serviceerror.NotFound), with no clusters outside replication.
fn not_found(message: String) -> Status {
    with_detail(
        Code::NotFound,
        message,
        "temporal.api.errordetails.v1.NotFoundFailure",
        NotFoundFailure::default(),
    )
}

fn namespace_not_found(message: String, namespace: String) -> Status {
    with_detail(
        Code::NotFound,
        message,
        "temporal.api.errordetails.v1.NamespaceNotFoundFailure",
        NamespaceNotFoundFailure { namespace },
    )
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        let message = err.to_string();
        match err {
            ApiError::InvalidArgument(_) => Status::invalid_argument(message),
            ApiError::NotFound(_) => not_found(message),
            ApiError::FailedPrecondition(_) => Status::failed_precondition(message),
            // Every SDK retries UNAVAILABLE with the same request id, which is what an election
            // or a leader change needs.
            ApiError::Unavailable(_) | ApiError::NotLeader { .. } => Status::unavailable(message),
            ApiError::Unimplemented(_) => Status::unimplemented(message),
            ApiError::PermissionDenied => with_detail(
                Code::PermissionDenied,
                message,
                "temporal.api.errordetails.v1.PermissionDeniedFailure",
                PermissionDeniedFailure::default(),
            ),
            ApiError::NamespaceRateLimited => with_detail(
                Code::ResourceExhausted,
                message,
                "temporal.api.errordetails.v1.ResourceExhaustedFailure",
                ResourceExhaustedFailure {
                    cause: ResourceExhaustedCause::RpsLimit as i32,
                    scope: ResourceExhaustedScope::Namespace as i32,
                },
            ),
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
                NamespaceError::NotFound(name) => namespace_not_found(message, name),
                NamespaceError::AlreadyExists(_) => with_detail(
                    Code::AlreadyExists,
                    message,
                    "temporal.api.errordetails.v1.NamespaceAlreadyExistsFailure",
                    NamespaceAlreadyExistsFailure {},
                ),
                // The real server's lookup by id fails the same way, naming the id.
                NamespaceError::IdNotFound(id) => namespace_not_found(message, id),
                NamespaceError::Invalid(_) => Status::invalid_argument(message),
                NamespaceError::Internal(_) => Status::internal(message),
            },
            ApiError::History(history) => {
                use dura_history::HistoryError as H;
                match history {
                    H::InvalidArgument(_) => Status::invalid_argument(message),
                    // Stale tasks are a matching concern; a client only ever sees "not found".
                    H::NotFound(_) | H::TaskAlreadyStarted(_) | H::ObsoleteTask(_) => {
                        not_found(message)
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
    use temporalio_protos::temporal::api::failure::v1::Failure;

    use super::*;

    /// The typed failure a status carries, decoded the way SDKs read `grpc-status-details-bin`.
    #[derive(Debug, PartialEq)]
    enum Detail {
        NotFound(NotFoundFailure),
        NamespaceNotFound(NamespaceNotFoundFailure),
        NamespaceAlreadyExists(NamespaceAlreadyExistsFailure),
        WorkflowAlreadyStarted(WorkflowExecutionAlreadyStartedFailure),
        QueryFailed(QueryFailedFailure),
    }

    /// The status's details: none, or exactly one failure whose `google.rpc.Status` repeats the
    /// status's code and message.
    fn detail(status: &Status) -> Option<Detail> {
        if status.details().is_empty() {
            return None;
        }
        let rpc = RpcStatus::decode(status.details()).expect("details are a google.rpc.Status");
        assert_eq!(rpc.code, status.code() as i32);
        assert_eq!(rpc.message, status.message());
        let [any] = rpc.details.as_slice() else {
            panic!("one detail, not {:?}", rpc.details);
        };
        let value = any.value.as_slice();
        Some(
            match any
                .type_url
                .strip_prefix("type.googleapis.com/temporal.api.errordetails.v1.")
            {
                Some("NotFoundFailure") => Detail::NotFound(Message::decode(value).unwrap()),
                Some("NamespaceNotFoundFailure") => {
                    Detail::NamespaceNotFound(Message::decode(value).unwrap())
                }
                Some("NamespaceAlreadyExistsFailure") => {
                    Detail::NamespaceAlreadyExists(Message::decode(value).unwrap())
                }
                Some("WorkflowExecutionAlreadyStartedFailure") => {
                    Detail::WorkflowAlreadyStarted(Message::decode(value).unwrap())
                }
                Some("QueryFailedFailure") => Detail::QueryFailed(Message::decode(value).unwrap()),
                _ => panic!("unexpected detail type {}", any.type_url),
            },
        )
    }

    /// Every variant against the code, message and details go.temporal.io/api's serviceerror
    /// types give the real server's errors (NotFound, NamespaceNotFound, QueryFailed, ...).
    #[test]
    fn every_error_becomes_the_real_servers_status() {
        use dura_history::HistoryError as H;
        let failure = Failure {
            message: "query handler panicked".into(),
            ..Default::default()
        };
        let not_found = || Some(Detail::NotFound(NotFoundFailure::default()));
        let cases: Vec<(ApiError, Code, &str, Option<Detail>)> = vec![
            (
                ApiError::InvalidArgument("WorkflowId is not set on request.".into()),
                Code::InvalidArgument,
                "WorkflowId is not set on request.",
                None,
            ),
            (
                ApiError::NotFound("workflow not found".into()),
                Code::NotFound,
                "workflow not found",
                not_found(),
            ),
            (
                ApiError::FailedPrecondition("no poller seen".into()),
                Code::FailedPrecondition,
                "no poller seen",
                None,
            ),
            (
                ApiError::Unavailable("shutting down".into()),
                Code::Unavailable,
                "shutting down",
                None,
            ),
            (
                ApiError::NotLeader {
                    group: dura_raft_store::GroupId(3),
                    leader: Some(2),
                },
                Code::Unavailable,
                "shard 3 has no reachable leader (last known: Some(2))",
                None,
            ),
            (
                ApiError::Unimplemented("not supported by this server yet".into()),
                Code::Unimplemented,
                "not supported by this server yet",
                None,
            ),
            (
                ApiError::DeadlineExceeded("poll timed out".into()),
                Code::DeadlineExceeded,
                "poll timed out",
                None,
            ),
            (
                ApiError::QueryFailed {
                    message: "query handler panicked".into(),
                    failure: Some(Box::new(failure.clone())),
                },
                Code::InvalidArgument,
                "query handler panicked",
                Some(Detail::QueryFailed(QueryFailedFailure {
                    failure: Some(failure),
                })),
            ),
            (
                ApiError::QueryFailed {
                    message: "unknown query type".into(),
                    failure: None,
                },
                Code::InvalidArgument,
                "unknown query type",
                Some(Detail::QueryFailed(QueryFailedFailure { failure: None })),
            ),
            (
                ApiError::Internal("corrupt record".into()),
                Code::Internal,
                "corrupt record",
                None,
            ),
            (
                NamespaceError::NotFound("orders".into()).into(),
                Code::NotFound,
                "Namespace orders is not found.",
                Some(Detail::NamespaceNotFound(NamespaceNotFoundFailure {
                    namespace: "orders".into(),
                })),
            ),
            (
                NamespaceError::IdNotFound("7f0e".into()).into(),
                Code::NotFound,
                "Namespace id 7f0e is not found.",
                Some(Detail::NamespaceNotFound(NamespaceNotFoundFailure {
                    namespace: "7f0e".into(),
                })),
            ),
            (
                NamespaceError::AlreadyExists("orders".into()).into(),
                Code::AlreadyExists,
                "Namespace \"orders\" already exists",
                Some(Detail::NamespaceAlreadyExists(
                    NamespaceAlreadyExistsFailure {},
                )),
            ),
            (
                NamespaceError::Invalid("Retention is too short.".into()).into(),
                Code::InvalidArgument,
                "Retention is too short.",
                None,
            ),
            (
                NamespaceError::Internal("unreadable metadata".into()).into(),
                Code::Internal,
                "unreadable metadata",
                None,
            ),
            (
                H::InvalidArgument("bad command".into()).into(),
                Code::InvalidArgument,
                "bad command",
                None,
            ),
            (
                H::NotFound("workflow execution already completed".into()).into(),
                Code::NotFound,
                "workflow execution already completed",
                not_found(),
            ),
            (
                H::TaskAlreadyStarted("task already started".into()).into(),
                Code::NotFound,
                "task already started",
                not_found(),
            ),
            (
                H::ObsoleteTask("stale task".into()).into(),
                Code::NotFound,
                "stale task",
                not_found(),
            ),
            (
                H::WorkflowAlreadyStarted {
                    message: "Workflow execution is already running. WorkflowId: w, RunId: r."
                        .into(),
                    start_request_id: "req-1".into(),
                    run_id: "r".into(),
                }
                .into(),
                Code::AlreadyExists,
                "Workflow execution is already running. WorkflowId: w, RunId: r.",
                Some(Detail::WorkflowAlreadyStarted(
                    WorkflowExecutionAlreadyStartedFailure {
                        start_request_id: "req-1".into(),
                        run_id: "r".into(),
                        ..Default::default()
                    },
                )),
            ),
            (
                H::FailedPrecondition("not a sticky queue".into()).into(),
                Code::FailedPrecondition,
                "not a sticky queue",
                None,
            ),
            (
                H::Unimplemented("command not supported".into()).into(),
                Code::Unimplemented,
                "command not supported",
                None,
            ),
            (
                H::Internal("broken invariant".into()).into(),
                Code::Internal,
                "broken invariant",
                None,
            ),
        ];
        for (err, code, message, want) in cases {
            let label = format!("{err:?}");
            let status = Status::from(err);
            assert_eq!(status.code(), code, "{label}");
            assert_eq!(status.message(), message, "{label}");
            assert_eq!(detail(&status), want, "{label}");
        }
    }

    #[test]
    fn a_forwarded_answer_passes_on_unchanged() {
        let rpc = RpcStatus {
            code: Code::ResourceExhausted as i32,
            message: "namespace rate limit exceeded".into(),
            details: Vec::new(),
        };
        let mut answer = Status::with_details(
            Code::ResourceExhausted,
            "namespace rate limit exceeded",
            rpc.encode_to_vec().into(),
        );
        answer
            .metadata_mut()
            .insert("retry-after", "1".parse().unwrap());
        let status = Status::from(ApiError::Forwarded(answer));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), "namespace rate limit exceeded");
        assert_eq!(status.details(), rpc.encode_to_vec().as_slice());
        assert_eq!(
            status
                .metadata()
                .get("retry-after")
                .map(|v| v.to_str().unwrap()),
            Some("1")
        );
    }

    #[test]
    fn a_refused_query_is_invalid_argument_with_the_parsers_message() {
        let err = dura_history::visibility::query::Query::parse("WorkflowId = ", |_| None, false)
            .unwrap_err();
        let status = Status::from(ApiError::from(err));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "invalid query: malformed SQL query: syntax error at position 40"
        );
        assert_eq!(detail(&status), None);
    }

    #[test]
    fn a_storage_error_is_internal() {
        let status = Status::from(ApiError::from(dura_raft_store::Error::Storage(
            "disk full".into(),
        )));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "storage: disk full");
    }

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
        assert!(
            matches!(&err, ApiError::Unavailable(m) if m == "group 3 unavailable: shutting down")
        );
        assert_eq!(Status::from(err).code(), Code::Unavailable);
        let err = ApiError::from(dura_raft_store::ProposeError::UnknownGroup(
            dura_raft_store::GroupId(9),
        ));
        assert!(matches!(&err, ApiError::Unavailable(m) if m == "unknown raft group 9"));
    }
}
