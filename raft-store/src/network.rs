//! The raft network of a single-node deployment: there are no peers.
//!
//! Every group has exactly one voter (this node), so openraft never needs to reach anyone. Should
//! it try (e.g. after a membership change), every RPC fails with `Unreachable` — nothing is faked.
//! A later issue replaces this with the real gRPC transport between nodes.

use std::future::Future;

use openraft::OptionalSend;
use openraft::RaftNetworkFactory;
use openraft::RaftNetworkV2;
use openraft::errors::RPCError;
use openraft::errors::ReplicationClosed;
use openraft::errors::StreamingError;
use openraft::errors::Unreachable;
use openraft::network::RPCOption;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::SnapshotResponse;
use openraft::raft::TransferLeaderRequest;
use openraft::raft::TransferLeaderResponse;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;

use crate::types::C;
use crate::types::Snapshot;
use crate::types::SnapshotData;
use crate::types::Vote;

/// Network factory for a node without peers.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NoPeers;

/// A "connection" to a peer that cannot be reached.
#[derive(Debug)]
pub(crate) struct UnreachablePeer {
    target: u64,
}

impl UnreachablePeer {
    fn unreachable(&self, rpc: &str) -> Unreachable<C> {
        Unreachable::from_string(format!(
            "{rpc} to node {}: no raft transport (single-node deployment)",
            self.target
        ))
    }
}

impl RaftNetworkFactory<C> for NoPeers {
    type Network = UnreachablePeer;

    async fn new_client(&mut self, target: u64, _node: &openraft::BasicNode) -> Self::Network {
        UnreachablePeer { target }
    }
}

impl RaftNetworkV2<C> for UnreachablePeer {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        Err(RPCError::Unreachable(self.unreachable("append_entries")))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<C>,
        _option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        Err(RPCError::Unreachable(self.unreachable("vote")))
    }

    async fn pre_vote(
        &mut self,
        _rpc: VoteRequest<C>,
        _option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        Err(RPCError::Unreachable(self.unreachable("pre_vote")))
    }

    async fn full_snapshot(
        &mut self,
        _vote: Vote,
        _snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        Err(StreamingError::Unreachable(
            self.unreachable("full_snapshot"),
        ))
    }

    async fn transfer_leader(
        &mut self,
        _req: TransferLeaderRequest<C>,
        _option: RPCOption,
    ) -> Result<TransferLeaderResponse<C>, RPCError<C>> {
        Err(RPCError::Unreachable(self.unreachable("transfer_leader")))
    }
}
