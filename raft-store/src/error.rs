//! Public error types and the internal conversions into `io::Error` (which openraft's storage
//! traits require).

use std::fmt::Display;
use std::io;

use crate::GroupId;

/// Errors of the store as a whole (opening, reading, snapshotting, shutting down).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage: {0}")]
    Storage(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("unknown raft group {0}")]
    UnknownGroup(GroupId),
}

/// Why a proposal was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the group's leader; the entry was NOT appended. Retry on `leader`.
    #[error("not the leader of group {group}; leader is {leader:?}")]
    NotLeader { group: GroupId, leader: Option<u64> },
    /// Anything else (shutdown, storage failure, leadership lost after the entry was appended —
    /// in which case the entry may or may not eventually commit).
    #[error("group {group} unavailable: {reason}")]
    Unavailable { group: GroupId, reason: String },
    #[error("unknown raft group {0}")]
    UnknownGroup(GroupId),
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

/// An `io::Error` carrying `msg`.
pub(crate) fn io_err(msg: impl Display) -> io::Error {
    io::Error::other(msg.to_string())
}

/// RocksDB failure as `io::Error`.
pub(crate) fn db_err(e: rocksdb::Error) -> io::Error {
    io::Error::other(format!("rocksdb: {e}"))
}

/// (De)serialization failure as `io::Error`.
pub(crate) fn codec_err(e: dura_codec::CodecError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("codec: {e}"))
}

/// The error every storage call returns once [`crate::RaftStore::shutdown`] has run.
pub(crate) fn shut_down() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "raft store is shut down")
}
