//! Dura's replicated storage: N independent Raft groups (openraft) whose logs *and* state
//! machines live in one RocksDB instance per node.
//!
//! # Role
//!
//! Every durable change in Dura is a command proposed to a raft group ([`RaftStore::propose`]).
//! Once the command is committed, the group applies it by calling the shared [`Application`]
//! with an [`ApplyTxn`] over that group's key space; the bytes `apply` returns are handed back to
//! the proposer. Readers ([`StateReader`]) read a group's applied state straight from RocksDB.
//! Group `0` ([`GroupId::META`]) holds cluster metadata, groups `1..=N` are shards.
//!
//! # Invariants
//!
//! * **Isolation.** Every key is prefixed by its group (see `keys.rs`); an [`ApplyTxn`] or a
//!   [`StateReader`] only ever sees its own group's keys, returned without the prefix.
//! * **Atomic apply.** A batch of entries is applied through ONE [`ApplyTxn`] and written as one
//!   RocksDB `WriteBatch` together with the group's last-applied log id and membership: after a
//!   crash the state is exactly "everything up to the recorded applied id".
//! * **Durable before acknowledged.** A proposal is answered only after its entry is committed
//!   and applied. With [`Durability::Fsync`] "committed" means fsynced: log appends of all groups
//!   are group-committed by one writer thread (one `WriteBatch`, one fsync for everything queued),
//!   so throughput stays flat as concurrency grows. Votes and purge records are always fsynced.
//! * **Applied state may lag the disk, never lead it.** State batches are written without fsync;
//!   they share RocksDB's single WAL with the synced log writes, so they become durable with the
//!   next fsync, and anything lost in a crash is re-applied from the raft log (which is only
//!   purged behind a synced snapshot). See `state_machine.rs`.
//! * **Deterministic apply.** `Application::apply` must be a deterministic function of the state
//!   it reads through the txn and the command: it may run again for the same index after a crash.
//! * **Leadership.** [`RaftStore::leader_term`] is `Some(term)` only while this node leads the
//!   group *and* has applied its term's first entry — so the state a new leader reads already
//!   contains every command committed by earlier leaders.
//! * **Snapshots are files.** A snapshot is an SST file of the group's keys, built from a
//!   consistent RocksDB view, streamed in bounded chunks and installed by ingesting it; an
//!   install a crash interrupted is finished when the group opens (`snapshot_file.rs`).
//! * **No openraft in the API.** openraft is an implementation detail of this crate.
//!
//! Layout: `keys.rs` (RocksDB key encodings), `db.rs` (the shared RocksDB handle), `writer.rs`
//! (group commit), `log_store.rs` / `state_machine.rs` / `txn.rs` (openraft storage), `types.rs`
//! (openraft type config), `snapshot_file.rs` (snapshots as SST files), `peer.rs` (the
//! node-to-node gRPC transport), `faults.rs` (fault injection for tests), `balance.rs`
//! (leader spread and operator transfers), `config.rs` (raft timing), `reader.rs`
//! ([`StateReader`]), `store.rs` ([`RaftStore`]), `error.rs`.

mod balance;
mod config;
mod db;
mod error;
pub mod faults;
mod keys;
mod log_store;
pub mod metrics;
mod peer;
mod peer_batch;
mod reader;
mod routes;
mod snapshot_file;
mod state_machine;
mod store;
mod txn;
mod types;
mod writer;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use error::Error;
pub use error::ProposeError;
pub use faults::FaultRules;
pub use peer::PeerService;
pub use peer::RaftPeerServer;
pub use peer::cluster_id_of;
pub use peer::set_peer_faults;
pub use reader::KvPairs;
pub use reader::StateReader;
pub use store::RaftStore;
pub use txn::ApplyTxn;

/// A Raft group. `GroupId::META` (0) holds cluster metadata (namespaces); 1..=N are shards.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct GroupId(pub u32);

impl GroupId {
    pub const META: GroupId = GroupId(0);
}

impl std::fmt::Display for GroupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One node's view of one Raft group (for `dura cluster status`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupView {
    pub group: GroupId,
    pub leader: Option<u64>,
    pub term: u64,
    pub voters: Vec<u64>,
    /// The last applied log index on this node.
    pub applied: u64,
    /// The group's committed index as this node knows it.
    pub committed: u64,
    /// The last index in this node's log.
    pub last_log: u64,
    /// The index this node's last snapshot covers (0: none).
    pub snapshot: u64,
    /// On the leader only: how many entries each follower's log is behind the leader's.
    pub lag: Option<std::collections::BTreeMap<u64, u64>>,
}

/// How a committed log append reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every acknowledged write was fsynced (group-committed across groups).
    #[default]
    Fsync,
    /// Opt-in: the WAL is written but not fsynced; an OS crash can lose acknowledged writes.
    Relaxed,
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub dir: PathBuf,
    pub node_id: u64,
    /// Address other nodes use to reach this node's peer service (stored in membership).
    pub advertise_addr: String,
    /// The voters (node id → peer address) a group seen for the first time starts with; empty
    /// for a single-node store. Ignored for groups that already have state on disk.
    pub initial_members: std::collections::BTreeMap<u64, String>,
    /// The groups this node holds a replica of.
    pub groups: Vec<GroupId>,
    /// Every group of the cluster and the nodes holding its replicas, when not every member
    /// holds every group (empty: they do). A group created here starts with those voters.
    pub placement: std::collections::BTreeMap<GroupId, Vec<u64>>,
    pub durability: Durability,
    /// Build a snapshot (and purge the log behind it) after this many applied entries.
    /// `0` disables automatic snapshots.
    pub snapshot_every: u64,
    /// Whether the peer service takes fault-injection rules (tests only; see [`faults`]).
    pub fault_injection: bool,
    /// Mutual TLS for this node's channels to its peers (`None`: plaintext). The peer port's
    /// server side is the caller's (it serves this store's [`RaftStore::peer_service`]).
    pub peer_tls: Option<dura_tls::ClientTls>,
}

/// The application's deterministic state machine, shared by every group.
pub trait Application: Send + Sync + 'static {
    /// Applies the committed `command` at log `index` of `group`, reading and writing the group's
    /// state through `txn`, and returns the response for the proposer. Must be deterministic.
    fn apply(&self, group: GroupId, index: u64, command: &[u8], txn: &mut ApplyTxn<'_>) -> Vec<u8>;
    /// Called after a batch of applied entries of `group` is written (its effects are visible to
    /// [`StateReader`]s) and its proposers were answered.
    fn after_apply(&self, _group: GroupId) {}
    /// Called after `group`'s whole state was replaced by a snapshot (from the leader).
    fn on_snapshot_installed(&self, group: GroupId);
}
