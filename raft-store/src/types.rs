//! The openraft type configuration. Nothing here is part of the public API.

use openraft::type_config::alias;

use crate::state_machine::StateMachine;

/// A proposed command: opaque application bytes.
///
/// A newtype only because openraft requires `D: Display`; serialized exactly like the `Vec<u8>`.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub(crate) struct Command(pub(crate) Vec<u8>);

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Command({} bytes)", self.0.len())
    }
}

openraft::declare_raft_types!(
    /// Raft types of every group: commands and responses are opaque application bytes.
    pub(crate) TypeConfig:
        D = Command,
        R = Vec<u8>,
        NodeId = u64,
        Node = openraft::BasicNode,
);

pub(crate) type C = TypeConfig;
pub(crate) type LogId = alias::LogIdOf<C>;
pub(crate) type Entry = alias::EntryOf<C>;
pub(crate) type Vote = alias::VoteOf<C>;
pub(crate) type StoredMembership = alias::StoredMembershipOf<C>;
pub(crate) type SnapshotMeta = alias::SnapshotMetaOf<C>;
/// Snapshot data is a file of the group's state (see `snapshot_file`).
pub(crate) type SnapshotData = crate::snapshot_file::SnapshotFile;
pub(crate) type Snapshot = alias::SnapshotOf<C, SnapshotData>;
pub(crate) type Raft = openraft::Raft<C, StateMachine>;
