//! Task-queue long polls. A queue's tasks wait in the matcher of the node leading its
//! partition shard, so a poll is served there: here when this node leads it, else forwarded.
//!
//! Leadership moves (the balancer spreads leaders right after a cluster forms, a node dies),
//! so a poll may find that the node it reached does not, or no longer, lead the partition:
//! the node it was forwarded to answers `UNAVAILABLE`, or the matcher here ends the wait when
//! the partition is unloaded. The poll is then routed again, after a short pause, until its
//! deadline — never parked on a node whose matcher nobody feeds, which would hide the
//! queue's tasks from that poller for its whole minute-long wait. A poll another node
//! forwarded here is served or refused here, never forwarded on: the forwarding node routes
//! it again.

use std::time::Duration;

use dura_matching::TaskQueueKey;
use temporalio_protos::temporal::api::workflowservice::v1 as pb;
use tokio::time::Instant;

use super::{Frontend, RpcResult, reply, workflows};
use crate::error::{ApiError, ApiResult};

/// How long a poll whose partition moved waits before it is routed again: long enough for
/// an election or a leadership transfer to finish, short next to a task's wait.
const REROUTE_PAUSE: Duration = Duration::from_millis(100);

/// A poll request of one task kind: how it is forwarded and how it is served here.
pub(super) trait TaskPoll: Clone + Send + Sync {
    type Response: Default + Send;

    fn forward(
        frontend: &Frontend,
        node: u64,
        request: Self,
        timeout: Option<Duration>,
    ) -> impl Future<Output = ApiResult<Self::Response>> + Send;

    fn serve(
        frontend: &Frontend,
        request: Self,
        timeout: Option<Duration>,
    ) -> impl Future<Output = ApiResult<Self::Response>> + Send;
}

/// One [`TaskPoll`] per poll RPC: its response type and the forwarder and handler methods.
macro_rules! task_polls {
    ($($req:ident -> $resp:ident via $method:ident;)*) => {$(
        impl TaskPoll for pb::$req {
            type Response = pb::$resp;

            async fn forward(
                frontend: &Frontend,
                node: u64,
                request: Self,
                timeout: Option<Duration>,
            ) -> ApiResult<Self::Response> {
                let forwarder = &frontend.inner.forwarder;
                forwarder.$method(node, request, timeout).await
            }

            async fn serve(
                frontend: &Frontend,
                request: Self,
                timeout: Option<Duration>,
            ) -> ApiResult<Self::Response> {
                frontend.workflows().$method(request, timeout).await
            }
        }
    )*};
}

task_polls! {
    PollWorkflowTaskQueueRequest -> PollWorkflowTaskQueueResponse via poll_workflow_task;
    PollActivityTaskQueueRequest -> PollActivityTaskQueueResponse via poll_activity_task;
}

impl Frontend {
    /// Serves one poll of `queue` (`None`: the request names no valid queue, and the local
    /// handler says why) from this node's matcher, or hands it to the partition's leader.
    pub(super) async fn route_poll<R: TaskPoll>(
        &self,
        forwarded: bool,
        queue: Option<TaskQueueKey>,
        request: R,
        timeout: Option<Duration>,
    ) -> RpcResult<R::Response> {
        let Some(queue) = queue.filter(|_| !forwarded) else {
            return reply(R::serve(self, request, timeout).await);
        };
        let until = workflows::poll_deadline(timeout, workflows::LONG_POLL);
        let engine = &self.workflows().engine;
        loop {
            // Each attempt gets what is left of the caller's wait (its handler keeps back the
            // same margin for the answer's way back).
            let left = until.saturating_duration_since(Instant::now()) + workflows::POLL_MARGIN;
            let owner = engine.remote_partition_leader(&queue).await;
            let attempt = match owner {
                Some(node) => R::forward(self, node, request.clone(), Some(left)).await,
                None => R::serve(self, request.clone(), Some(left)).await,
            };
            if !partition_moved(&attempt) {
                return reply(attempt);
            }
            if owner.is_some() {
                engine.partition_unreachable(&queue);
            }
            if Instant::now() + REROUTE_PAUSE >= until {
                return reply(Ok(R::Response::default()));
            }
            tracing::debug!(?queue, ?owner, "poll's partition moved; routing it again");
            tokio::time::sleep(REROUTE_PAUSE).await;
        }
    }
}

/// Whether an attempt failed because it reached a node that does not lead the partition:
/// this one (its matcher refused the poll) or the one it was forwarded to (which refused it
/// likewise, is unreachable, or is stopping).
fn partition_moved<T>(attempt: &ApiResult<T>) -> bool {
    match attempt {
        Err(ApiError::NotLeader { .. }) => true,
        Err(ApiError::Forwarded(status)) => status.code() == tonic::Code::Unavailable,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refusal_or_an_unreachable_leader_reroutes_a_poll() {
        let moved = |e: ApiError| partition_moved::<()>(&Err(e));
        assert!(moved(ApiError::NotLeader {
            group: dura_raft_store::GroupId(4),
            leader: Some(1),
        }));
        assert!(moved(ApiError::Forwarded(tonic::Status::unavailable(
            "shard 4 has no reachable leader"
        ))));
        assert!(!moved(ApiError::Forwarded(tonic::Status::not_found(
            "namespace missing"
        ))));
        assert!(!moved(ApiError::InvalidArgument("no task queue".into())));
        assert!(!partition_moved(&Ok(())));
    }
}
