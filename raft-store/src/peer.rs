//! The node-to-node transport: openraft's RPCs (append, vote, pre-vote, snapshot, leadership
//! transfer) of every group, as one gRPC service `dura.peer.RaftPeer` on the peer port.
//!
//! # Shape
//! * **One connection per peer pair.** Every group's client to a peer shares one tonic
//!   `Channel` (one HTTP/2 connection) per peer address; the groups' RPCs are multiplexed on it
//!   as concurrent streams, never a connection per group.
//! * **Versioned bodies.** A request names its group and RPC; its body is the openraft message
//!   in a `dura_codec` envelope, so nodes of two builds can talk during a rolling upgrade.
//! * **Errors.** A peer that cannot be reached (or is shutting down) is `Unreachable` to
//!   openraft, which backs off and retries; nothing is reported as delivered that was not.
//! * **Forwarded proposals.** Besides openraft's RPCs the service carries `Propose`: a node that
//!   does not lead a group hands a command to the node that does
//!   ([`RaftStore::propose_via`]), which proposes it locally and returns the applied reply.
//!
//! * **Fault injection.** With it enabled, [`crate::faults`] rules drop or delay messages to and
//!   from chosen peers at both ends of this transport.
//!
//! * **Snapshots** travel as a file in [`snapshot_file::CHUNK_SIZE`] chunks, one request
//!   each; the receiver appends them to a file and installs it by ingesting, so neither side
//!   holds a group's state in memory.
//!
//! Not yet: coalescing many groups' messages into one request.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;

use dura_codec::Kind;
use openraft::BasicNode;
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
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;

use crate::GroupId;
use crate::ProposeError;
use crate::RaftStore;
use crate::config::READ_QUORUM_WAIT;
use crate::faults::FaultRules;
use crate::faults::Faults;
use crate::peer_batch::BatchStats;
use crate::peer_batch::Batcher;
use crate::snapshot_file;
use crate::types::C;
use crate::types::Snapshot;
use crate::types::SnapshotData;
use crate::types::SnapshotMeta;
use crate::types::Vote;

mod generated {
    include!(concat!(env!("OUT_DIR"), "/dura.peer.RaftPeer.rs"));
}

pub(crate) use generated::raft_peer_client::RaftPeerClient;
use generated::raft_peer_server::RaftPeer;
pub use generated::raft_peer_server::RaftPeerServer;

/// The version of the bodies' shapes (openraft's messages at the pinned openraft version).
const BODY_VERSION: u8 = 1;

/// One Raft RPC of one group.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PeerRequest {
    #[prost(uint32, tag = "1")]
    pub group: u32,
    /// [`Rpc`] as u32.
    #[prost(uint32, tag = "2")]
    pub rpc: u32,
    #[prost(bytes = "vec", tag = "3")]
    pub body: Vec<u8>,
    /// The sending node (0 from the admin client), for fault injection's rules.
    #[prost(uint64, tag = "4")]
    pub from: u64,
    /// The sender's cluster id, once it knows one: a node never takes messages of another
    /// cluster.
    #[prost(string, tag = "5")]
    pub cluster: String,
}

/// Messages of many groups to one peer, sent together (see `peer_batch`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PeerBatch {
    #[prost(message, repeated, tag = "1")]
    pub requests: Vec<PeerRequest>,
}

/// The replies to a [`PeerBatch`], in its order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PeerBatchReply {
    #[prost(message, repeated, tag = "1")]
    pub replies: Vec<PeerItemReply>,
}

/// One message's reply: its body, or the gRPC status it failed with.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PeerItemReply {
    #[prost(bytes = "vec", tag = "1")]
    pub body: Vec<u8>,
    /// 0 (OK), else a gRPC status code.
    #[prost(int32, tag = "2")]
    pub code: i32,
    #[prost(string, tag = "3")]
    pub message: String,
}

/// The RPC's response, or why the receiving node could not answer it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PeerReply {
    #[prost(bytes = "vec", tag = "1")]
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Rpc {
    AppendEntries = 1,
    Vote = 2,
    PreVote = 3,
    // 4 was a whole snapshot in one message (earlier builds), replaced by `SnapshotChunk`.
    TransferLeader = 5,
    Propose = 6,
    ReadIndex = 7,
    /// Replaces the receiving node's [`FaultRules`] (refused unless fault injection is on).
    SetFaults = 8,
    /// Asks the receiving node to become the group's leader ([`RaftStore::transfer_leader`]).
    TakeLeadership = 9,
    /// Asks the group's leader to hand its leadership to the node in the body.
    HandLeadership = 10,
    /// Asks the receiving node which cluster it belongs to ("" when it does not know yet).
    ClusterId = 11,
    /// One chunk of a snapshot; the last one installs it.
    SnapshotChunk = 12,
    /// The sender is stopping (`true`: hand it no group) or back (`false`).
    Draining = 13,
    /// Asks a replica of the group which node leads it (for a node holding no replica).
    Leader = 14,
    /// A linearizable read of a prefix of the group's state (for a node holding no replica).
    ScanPrefix = 15,
}

impl Rpc {
    fn from_u32(n: u32) -> Option<Rpc> {
        [
            Rpc::AppendEntries,
            Rpc::Vote,
            Rpc::PreVote,
            Rpc::TransferLeader,
            Rpc::Propose,
            Rpc::ReadIndex,
            Rpc::SetFaults,
            Rpc::TakeLeadership,
            Rpc::HandLeadership,
            Rpc::ClusterId,
            Rpc::SnapshotChunk,
            Rpc::Draining,
            Rpc::Leader,
            Rpc::ScanPrefix,
        ]
        .into_iter()
        .find(|r| *r as u32 == n)
    }
}

/// How a request another node made of this node's store ended (a forwarded proposal: the
/// applied reply; a read index: the index), as it travels back.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum Outcome<T> {
    Done(T),
    NotLeader(Option<u64>),
    Unavailable(String),
}

impl<T> Outcome<T> {
    fn of(result: Result<T, ProposeError>) -> Self {
        match result {
            Ok(value) => Outcome::Done(value),
            Err(ProposeError::NotLeader { leader, .. }) => Outcome::NotLeader(leader),
            Err(e) => Outcome::Unavailable(e.to_string()),
        }
    }

    fn into_result(self, group: GroupId) -> Result<T, ProposeError> {
        match self {
            Outcome::Done(value) => Ok(value),
            Outcome::NotLeader(leader) => Err(ProposeError::NotLeader { group, leader }),
            Outcome::Unavailable(reason) => Err(ProposeError::Unavailable { group, reason }),
        }
    }
}

/// A piece of a snapshot file as it travels, from `offset`. Every chunk carries the leader's
/// vote and the snapshot's meta, so the receiver needs no session state beyond the file.
#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotChunk {
    vote: Vote,
    meta: SnapshotMeta,
    offset: u64,
    data: Vec<u8>,
    /// The last chunk: the receiver installs the snapshot and answers openraft's response.
    done: bool,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    dura_codec::encode_as(Kind::PeerMessage, BODY_VERSION, value)
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, tonic::Status> {
    dura_codec::decode_as(Kind::PeerMessage, BODY_VERSION, body)
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Server: hands each RPC to the named group's Raft.
// ---------------------------------------------------------------------------------------------

/// The peer service of one node's store (serve it on the peer port).
pub struct PeerService {
    store: RaftStore,
}

impl RaftStore {
    /// The gRPC service through which other nodes reach this node's groups.
    pub fn peer_service(&self) -> RaftPeerServer<PeerService> {
        RaftPeerServer::new(PeerService {
            store: self.clone(),
        })
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
    }
}

fn unavailable(e: impl std::fmt::Display) -> tonic::Status {
    tonic::Status::unavailable(e.to_string())
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn call(
        &self,
        request: tonic::Request<PeerRequest>,
    ) -> Result<tonic::Response<PeerReply>, tonic::Status> {
        self.handle(request.into_inner())
            .await
            .map(tonic::Response::new)
    }

    async fn call_batch(
        &self,
        request: tonic::Request<PeerBatch>,
    ) -> Result<tonic::Response<PeerBatchReply>, tonic::Status> {
        let handled = futures::future::join_all(
            request
                .into_inner()
                .requests
                .into_iter()
                .map(|r| self.handle(r)),
        )
        .await;
        let replies = handled
            .into_iter()
            .map(|reply| match reply {
                Ok(reply) => PeerItemReply {
                    body: reply.body,
                    code: 0,
                    message: String::new(),
                },
                Err(status) => PeerItemReply {
                    body: Vec::new(),
                    code: status.code() as i32,
                    message: status.message().to_string(),
                },
            })
            .collect();
        Ok(tonic::Response::new(PeerBatchReply { replies }))
    }
}

impl PeerService {
    async fn handle(&self, mut request: PeerRequest) -> Result<PeerReply, tonic::Status> {
        let group = GroupId(request.group);
        let faults = &self.store.connections().faults;
        if request.rpc == Rpc::SetFaults as u32 {
            let rules: FaultRules = decode(&request.body)?;
            faults
                .set(rules)
                .map_err(tonic::Status::permission_denied)?;
            return Ok(PeerReply { body: encode(&()) });
        }
        if request.rpc == Rpc::ClusterId as u32 {
            let id = self.store.connections().cluster_id();
            return Ok(PeerReply { body: encode(&id) });
        }
        faults.incoming(request.from).await.map_err(unavailable)?;
        self.store
            .connections()
            .admit(request.from, &request.cluster)?;
        // Requests of this node's store rather than of openraft: their outcome travels back.
        let outcome = if request.rpc == Rpc::ReadIndex as u32 {
            Some(encode(&Outcome::of(
                self.store.read_index(group, READ_QUORUM_WAIT).await,
            )))
        } else if request.rpc == Rpc::TakeLeadership as u32 {
            let timeout: std::time::Duration = decode(&request.body)?;
            Some(encode(&Outcome::of(
                self.store.take_leadership(group, timeout).await,
            )))
        } else if request.rpc == Rpc::HandLeadership as u32 {
            let to: u64 = decode(&request.body)?;
            Some(encode(&Outcome::of(
                self.store.hand_leadership(group, to).await,
            )))
        } else if request.rpc == Rpc::Draining as u32 {
            let draining: bool = decode(&request.body)?;
            self.store
                .connections()
                .mark_draining(request.from, draining);
            Some(encode(&Outcome::Done(())))
        } else if request.rpc == Rpc::Leader as u32 {
            let leader = match self.store.hosts(group) {
                true => Ok(self.store.leader_of(group)),
                false => Err(ProposeError::UnknownGroup(group)),
            };
            Some(encode(&Outcome::of(leader)))
        } else if request.rpc == Rpc::ScanPrefix as u32 {
            let (prefix, timeout): (Vec<u8>, std::time::Duration) = decode(&request.body)?;
            Some(encode(&Outcome::of(
                self.store.scan_prefix_here(group, prefix, timeout).await,
            )))
        } else if request.rpc == Rpc::Propose as u32 {
            Some(encode(&Outcome::of(
                self.store
                    .propose(group, std::mem::take(&mut request.body))
                    .await,
            )))
        } else {
            None
        };
        if let Some(body) = outcome {
            return Ok(PeerReply { body });
        }
        let raft = self
            .store
            .raft_of(group)
            .ok_or_else(|| tonic::Status::not_found(format!("no raft group {group} here")))?;
        let rpc = Rpc::from_u32(request.rpc)
            .ok_or_else(|| tonic::Status::unimplemented(format!("raft rpc {}", request.rpc)))?;
        let body = match rpc {
            Rpc::AppendEntries => {
                let req: AppendEntriesRequest<C> = decode(&request.body)?;
                encode(&raft.append_entries(req).await.map_err(unavailable)?)
            }
            Rpc::Vote => {
                let req: VoteRequest<C> = decode(&request.body)?;
                encode(&raft.vote(req).await.map_err(unavailable)?)
            }
            Rpc::PreVote => {
                let req: VoteRequest<C> = decode(&request.body)?;
                encode(&raft.pre_vote(req).await.map_err(unavailable)?)
            }
            Rpc::SnapshotChunk => {
                let chunk: SnapshotChunk = decode(&request.body)?;
                let path = self
                    .store
                    .incoming_snapshot_path(group, request.from)
                    .map_err(unavailable)?;
                let file = tokio::task::spawn_blocking(move || {
                    snapshot_file::append_chunk(&path, chunk.offset, &chunk.data)?;
                    match chunk.done {
                        true => snapshot_file::finish_incoming(path).map(Some),
                        false => Ok(None),
                    }
                })
                .await
                .map_err(unavailable)?
                .map_err(unavailable)?;
                let response = match file {
                    Some(file) => {
                        let snapshot = Snapshot {
                            meta: chunk.meta,
                            snapshot: file,
                        };
                        Some(
                            raft.install_full_snapshot(chunk.vote, snapshot)
                                .await
                                .map_err(unavailable)?,
                        )
                    }
                    None => None,
                };
                encode(&response)
            }
            Rpc::TransferLeader => {
                if self.store.is_draining() {
                    return Err(tonic::Status::unavailable("stopping: takes no leadership"));
                }
                let req: TransferLeaderRequest<C> = decode(&request.body)?;
                encode(
                    &raft
                        .handle_transfer_leader(req)
                        .await
                        .map_err(unavailable)?,
                )
            }
            Rpc::Propose
            | Rpc::ReadIndex
            | Rpc::SetFaults
            | Rpc::TakeLeadership
            | Rpc::HandLeadership
            | Rpc::ClusterId
            | Rpc::Draining
            | Rpc::Leader
            | Rpc::ScanPrefix => unreachable!("answered above"),
        };
        Ok(PeerReply { body })
    }
}

impl RaftStore {
    /// Proposes `command` to `group` through node `leader` (the hint of a
    /// [`ProposeError::NotLeader`]), which proposes it locally: the reply is what apply
    /// returned there. Errors as [`RaftStore::propose`]; a `NotLeader` names the next hint.
    /// Like a local proposal, one that fails with `Unavailable` may still commit.
    pub async fn propose_via(
        &self,
        leader: u64,
        group: GroupId,
        command: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<Vec<u8>, ProposeError> {
        self.ask(leader, group, Rpc::Propose, command, timeout)
            .await
    }
}

impl RaftStore {
    /// Waits until this node's replica of `group` holds every write committed before the call,
    /// so a read of it is linearizable (Raft's ReadIndex). The leader confirms its leadership
    /// with a quorum; a follower asks the leader (`leader`, a hint) for that index and waits
    /// until it has applied up to it. A group with this node as its only voter is current by
    /// definition.
    pub async fn read_barrier_via(
        &self,
        leader: Option<u64>,
        group: GroupId,
        timeout: std::time::Duration,
    ) -> Result<(), ProposeError> {
        let unavailable = |reason: String| ProposeError::Unavailable { group, reason };
        let raft = self
            .raft_of(group)
            .ok_or(ProposeError::UnknownGroup(group))?;
        if self.is_sole_voter(group) {
            return Ok(());
        }
        let index = match leader {
            Some(node) if node != self.node_id() => {
                self.ask(node, group, Rpc::ReadIndex, Vec::new(), timeout)
                    .await?
            }
            _ => {
                self.read_index(group, timeout.min(READ_QUORUM_WAIT))
                    .await?
            }
        };
        raft.wait(Some(timeout))
            .applied_index_at_least(index, "read barrier")
            .await
            .map_err(|e| unavailable(format!("catching up to the read index: {e}")))?;
        Ok(())
    }

    pub(crate) async fn ask_take_leadership(
        &self,
        node: u64,
        group: GroupId,
        timeout: std::time::Duration,
    ) -> Result<(), ProposeError> {
        // The target waits up to `timeout`; the call itself gets a little longer.
        let call = timeout + std::time::Duration::from_secs(2);
        self.ask(node, group, Rpc::TakeLeadership, encode(&timeout), call)
            .await
    }

    pub(crate) async fn ask_hand_leadership(
        &self,
        leader: u64,
        group: GroupId,
        to: u64,
        timeout: std::time::Duration,
    ) -> Result<(), ProposeError> {
        self.ask(leader, group, Rpc::HandLeadership, encode(&to), timeout)
            .await
    }

    pub(crate) async fn ask_leader(
        &self,
        node: u64,
        group: GroupId,
        timeout: std::time::Duration,
    ) -> Result<Option<u64>, ProposeError> {
        self.ask(node, group, Rpc::Leader, Vec::new(), timeout)
            .await
    }

    /// Every `(key, value)` of `group` under `prefix`, read on node `node` after a read
    /// barrier there: a linearizable read of a group this node does not hold.
    pub async fn scan_prefix_via(
        &self,
        node: u64,
        group: GroupId,
        prefix: &[u8],
        timeout: std::time::Duration,
    ) -> Result<crate::reader::KvPairs, ProposeError> {
        let body = encode(&(prefix.to_vec(), timeout));
        self.ask(node, group, Rpc::ScanPrefix, body, timeout).await
    }

    /// Asks node `node` to do `rpc` with its store for `group`, and returns its outcome.
    async fn ask<T: DeserializeOwned>(
        &self,
        node: u64,
        group: GroupId,
        rpc: Rpc,
        body: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<T, ProposeError> {
        let unavailable = |reason: String| ProposeError::Unavailable { group, reason };
        let addr = self
            .peer_address(group, node)
            .ok_or_else(|| unavailable(format!("node {node} is not a member")))?;
        let connections = self.connections();
        connections
            .faults
            .outgoing(node)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let channel = connections.channel(&addr).map_err(unavailable)?;
        let mut request = tonic::Request::new(PeerRequest {
            group: group.0,
            rpc: rpc as u32,
            body,
            from: self.node_id(),
            cluster: connections.cluster_id(),
        });
        request.set_timeout(timeout);
        let reply = RaftPeerClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
            .call(request)
            .await
            .map_err(|status| unavailable(format!("{rpc:?} through node {node}: {status}")))?;
        let outcome: Outcome<T> =
            dura_codec::decode_as(Kind::PeerMessage, BODY_VERSION, &reply.into_inner().body)
                .map_err(|e| unavailable(e.to_string()))?;
        outcome.into_result(group)
    }

    /// On the leader: the index a linearizable read must see applied, once a quorum has
    /// answered a heartbeat sent after the call, waiting up to `wait` for that answer.
    async fn read_index(
        &self,
        group: GroupId,
        wait: std::time::Duration,
    ) -> Result<Option<u64>, ProposeError> {
        let raft = self
            .raft_of(group)
            .ok_or(ProposeError::UnknownGroup(group))?;
        // openraft's ReadIndex waits one leader lease (an election timeout) for the quorum's
        // answer; a loaded node's round trip can take longer, and failing then would answer
        // UNAVAILABLE from a healthy cluster.
        let fresh_quorum = openraft::LinearizerOption::new(Some(std::time::Duration::ZERO), true)
            .with_wait_timeout(wait);
        match raft.get_read_log_id(fresh_quorum).await {
            Ok((read_log_id, _)) => Ok(Some(read_log_id.log_id().index())),
            Err(openraft::errors::RaftError::APIError(
                openraft::errors::LinearizableReadError::ForwardToLeader(f),
            )) => Err(ProposeError::NotLeader {
                group,
                leader: f.leader_id,
            }),
            Err(e) => Err(ProposeError::Unavailable {
                group,
                reason: e.to_string(),
            }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client: one per (group, peer), all groups sharing a peer's connection.
// ---------------------------------------------------------------------------------------------

/// The connections of one node to its peers, by peer address: shared by every group.
#[derive(Clone)]
pub(crate) struct PeerConnections {
    node_id: u64,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    batchers: Arc<Mutex<HashMap<String, Batcher>>>,
    /// When each peer last answered a message.
    answered: Arc<Mutex<HashMap<u64, std::time::Instant>>>,
    /// Peers that said they are stopping, and when.
    draining: Arc<Mutex<HashMap<u64, std::time::Instant>>>,
    pub(crate) batch_stats: Arc<BatchStats>,
    pub(crate) faults: Arc<Faults>,
    cluster: Arc<ClusterIdentity>,
    tls: Option<dura_tls::ClientTls>,
}

/// Which cluster this node belongs to, and whether a peer of another one was seen.
#[derive(Default)]
struct ClusterIdentity {
    id: std::sync::RwLock<String>,
    foreign: Mutex<Option<String>>,
}

impl PeerConnections {
    pub(crate) fn new(node_id: u64, faults: Faults, tls: Option<dura_tls::ClientTls>) -> Self {
        PeerConnections {
            tls,
            node_id,
            channels: Arc::default(),
            batchers: Arc::default(),
            draining: Arc::default(),
            answered: Arc::default(),
            batch_stats: Arc::default(),
            faults: Arc::new(faults),
            cluster: Arc::default(),
        }
    }

    fn cluster_id(&self) -> String {
        self.cluster
            .id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_cluster_id(&self, id: &str) {
        *self.cluster.id.write().unwrap_or_else(|e| e.into_inner()) = id.to_string();
    }

    pub(crate) fn foreign_cluster(&self) -> Option<String> {
        self.cluster
            .foreign
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Refuses a message from a node of another cluster (both ids known and different).
    fn admit(&self, from: u64, theirs: &str) -> Result<(), tonic::Status> {
        let mine = self.cluster_id();
        if mine.is_empty() || theirs.is_empty() || mine == theirs {
            return Ok(());
        }
        let why = format!(
            "node {from} belongs to cluster {theirs}, this node (id {}) to cluster {mine}",
            self.node_id
        );
        tracing::error!("{why}; refusing its messages");
        *self
            .cluster
            .foreign
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(why.clone());
        Err(tonic::Status::failed_precondition(why))
    }

    /// Whether peer `node` said it is stopping, recently enough that it cannot be back (a
    /// node that restarts says so, but that message may be lost).
    pub(crate) fn is_draining(&self, node: u64) -> bool {
        let draining = self.draining.lock().unwrap_or_else(|e| e.into_inner());
        draining
            .get(&node)
            .is_some_and(|since| since.elapsed() < DRAINING_FOR)
    }

    fn record_answer(&self, node: u64) {
        let mut answered = self.answered.lock().unwrap_or_else(|e| e.into_inner());
        answered.insert(node, std::time::Instant::now());
    }

    /// Whether peer `node` answered a message within `window`.
    pub(crate) fn answered_within(&self, node: u64, window: std::time::Duration) -> bool {
        let answered = self.answered.lock().unwrap_or_else(|e| e.into_inner());
        answered.get(&node).is_some_and(|at| at.elapsed() < window)
    }

    fn mark_draining(&self, node: u64, draining: bool) {
        let mut marks = self.draining.lock().unwrap_or_else(|e| e.into_inner());
        if draining {
            marks.insert(node, std::time::Instant::now());
        } else {
            marks.remove(&node);
        }
    }

    /// The batcher of the peer at `addr` (one per peer, shared by every group).
    fn batcher(&self, addr: &str) -> Result<Batcher, String> {
        let channel = self.channel(addr)?;
        let mut batchers = self.batchers.lock().unwrap_or_else(|e| e.into_inner());
        Ok(batchers
            .entry(addr.to_string())
            .or_insert_with(|| Batcher::spawn(channel, self.batch_stats.clone()))
            .clone())
    }

    pub(crate) fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        // Lazy: connects on first use and reconnects after a failure, so a peer that is not
        // up yet (bootstrap in any order) or restarting is just unreachable for a while.
        let channel = dura_tls::lazy_channel(addr, self.tls.as_ref())
            .map_err(|e| format!("bad peer address {addr:?}: {e}"))?;
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }
}

/// How long a peer that said it is stopping is taken for stopping.
const DRAINING_FOR: std::time::Duration = std::time::Duration::from_secs(60);

impl RaftStore {
    /// Tells every peer this node is stopping (or, at start, that it is back), best effort.
    pub(crate) async fn tell_peers_draining(&self, draining: bool) {
        let me = self.node_id();
        let calls = self
            .peer_addresses()
            .into_keys()
            .filter(|node| *node != me)
            .map(|node| async move {
                let told: Result<(), ProposeError> = self
                    .ask(
                        node,
                        GroupId::META,
                        Rpc::Draining,
                        encode(&draining),
                        std::time::Duration::from_secs(1),
                    )
                    .await;
                if let Err(e) = told {
                    tracing::debug!(node, error = %e, "could not tell a peer this node is stopping");
                }
            });
        futures::future::join_all(calls).await;
    }
}

/// The network factory of one group.
#[derive(Clone)]
pub(crate) struct PeerNetwork {
    pub(crate) group: GroupId,
    pub(crate) connections: PeerConnections,
}

/// One group's client to one peer.
pub(crate) struct PeerClient {
    group: GroupId,
    target: u64,
    connections: PeerConnections,
    client: Result<RaftPeerClient<Channel>, String>,
    /// Appends, votes and pre-votes go through the peer's batcher.
    batcher: Result<Batcher, String>,
}

impl RaftNetworkFactory<C> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        PeerClient {
            group: self.group,
            target,
            connections: self.connections.clone(),
            client: self.connections.channel(&node.addr).map(|channel| {
                RaftPeerClient::new(channel)
                    .max_decoding_message_size(usize::MAX)
                    .max_encoding_message_size(usize::MAX)
            }),
            batcher: self.connections.batcher(&node.addr),
        }
    }
}

impl PeerClient {
    /// `heartbeat`: an append without entries, which may wait briefly for company.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        heartbeat: bool,
        option: &RPCOption,
    ) -> Result<Resp, Unreachable<C>> {
        let unreachable = |what: String| {
            Unreachable::from_string(format!(
                "{rpc:?} of group {} to node {}: {what}",
                self.group, self.target
            ))
        };
        self.connections
            .faults
            .outgoing(self.target)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let request = PeerRequest {
            group: self.group.0,
            rpc: rpc as u32,
            body: encode(req),
            from: self.connections.node_id,
            cluster: self.connections.cluster_id(),
        };
        let body = match (rpc, &self.batcher) {
            (Rpc::AppendEntries | Rpc::Vote | Rpc::PreVote, Ok(batcher)) => {
                let urgent = rpc != Rpc::AppendEntries || !heartbeat;
                batcher.call(request, option.hard_ttl(), urgent).await
            }
            _ => {
                let client = match &mut self.client {
                    Ok(client) => client,
                    Err(e) => return Err(unreachable(e.clone())),
                };
                let mut request = tonic::Request::new(request);
                request.set_timeout(option.hard_ttl());
                client.call(request).await.map(|r| r.into_inner().body)
            }
        }
        .map_err(|status| unreachable(status.to_string()))?;
        self.connections.record_answer(self.target);
        dura_codec::decode_as(Kind::PeerMessage, BODY_VERSION, &body)
            .map_err(|e| unreachable(e.to_string()))
    }
}

impl RaftNetworkV2<C> for PeerClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let heartbeat = rpc.entries.is_empty();
        Ok(self
            .call(Rpc::AppendEntries, &rpc, heartbeat, &option)
            .await?)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        Ok(self.call(Rpc::Vote, &rpc, false, &option).await?)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        Ok(self.call(Rpc::PreVote, &rpc, false, &option).await?)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let (group, target) = (self.group, self.target);
        let failed = move |what: String| {
            StreamingError::from(Unreachable::from_string(format!(
                "snapshot of group {group} to node {target}: {what}"
            )))
        };
        let file = snapshot.snapshot;
        let len = file.len().map_err(|e| failed(e.to_string()))?;
        tokio::pin!(cancel);
        let mut offset = 0;
        loop {
            let reading = file.clone();
            let data = tokio::task::spawn_blocking(move || reading.read_chunk(offset))
                .await
                .map_err(|e| failed(e.to_string()))?
                .map_err(|e| failed(e.to_string()))?;
            let sent = data.len() as u64;
            let chunk = SnapshotChunk {
                vote: vote.clone(),
                meta: snapshot.meta.clone(),
                offset,
                data,
                done: offset + sent >= len,
            };
            let response: Option<SnapshotResponse<C>> = tokio::select! {
                closed = &mut cancel => return Err(StreamingError::Closed(closed)),
                reply = self.call(Rpc::SnapshotChunk, &chunk, false, &option) => reply?,
            };
            if chunk.done {
                return response.ok_or_else(|| failed("no response to the last chunk".into()));
            }
            offset += sent;
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<C>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<C>, RPCError<C>> {
        Ok(self.call(Rpc::TransferLeader, &req, false, &option).await?)
    }
}

/// Replaces the fault rules of the node serving the peer port `peer_addr` (which must run with
/// fault injection enabled); empty rules heal it.
pub async fn set_peer_faults(
    peer_addr: &str,
    rules: &FaultRules,
    timeout: std::time::Duration,
) -> Result<(), tonic::Status> {
    call_by_address(peer_addr, None, Rpc::SetFaults, encode(rules), timeout)
        .await
        .map(|_| ())
}

/// The cluster id of the node serving the peer port `peer_addr` ("" when it knows none yet).
pub async fn cluster_id_of(
    peer_addr: &str,
    tls: Option<&dura_tls::ClientTls>,
    timeout: std::time::Duration,
) -> Result<String, tonic::Status> {
    let body = call_by_address(peer_addr, tls, Rpc::ClusterId, Vec::new(), timeout).await?;
    decode(&body)
}

/// One request to a node known only by its peer address (not a group member's connection).
async fn call_by_address(
    peer_addr: &str,
    tls: Option<&dura_tls::ClientTls>,
    rpc: Rpc,
    body: Vec<u8>,
    timeout: std::time::Duration,
) -> Result<Vec<u8>, tonic::Status> {
    let channel = dura_tls::connect(peer_addr, tls, timeout)
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connecting to {peer_addr}: {e}")))?;
    let mut request = tonic::Request::new(PeerRequest {
        group: 0,
        rpc: rpc as u32,
        body,
        from: 0,
        cluster: String::new(),
    });
    request.set_timeout(timeout);
    Ok(RaftPeerClient::new(channel)
        .call(request)
        .await?
        .into_inner()
        .body)
}
