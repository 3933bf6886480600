//! The one encoding of everything Dura writes to a Raft log or to disk: Raft commands, mutable
//! state, outbox, backlog, visibility and schedule records, namespace records, task tokens and
//! raft-store's own metadata.
//!
//! # Why
//! Nodes of one cluster may run different builds during a rolling upgrade, and a node reads
//! back what an older build wrote. Untagged bincode of a serde type gives a reader no way to
//! tell which shape of the type it holds, so a changed type is misread silently. Every value
//! therefore travels in an envelope naming its kind and the version of its shape:
//!
//! ```text
//! [MAGIC 0xD7] [kind: u8] [version: u8] [bincode of that version's shape]
//! ```
//!
//! # Invariants
//! * **A kind is never read as another.** Each persisted type has its own [`Kind`], listed
//!   once below; a value of the wrong kind is an error, not a misread.
//! * **A reader accepts every version up to its own.** [`Persisted::VERSION`] is the version a
//!   build writes; [`Persisted::decode_older`] reads the older ones. A value from a newer build
//!   is refused ([`CodecError::NewerVersion`]), never guessed at.
//! * **Upgrade order.** A build that introduces version N+1 of a type must still *write* N (it
//!   only learns to read N+1); a later build, run once every node reads N+1, switches writing.
//!   Or, for what travels between nodes, the build writes N+1 only once every member has said
//!   it reads it (the shard log's entries, `node::shard::entry`). So at no point during a
//!   rolling upgrade does a node meet a version it cannot read.
//! * **Values from before envelopes** (bare bincode, written by builds before this crate) decode
//!   as version 0 of the current shape. They are told apart by the first byte: no bare
//!   encoding Dura ever wrote starts with `MAGIC` followed by a valid kind and version, except by
//!   a string length of exactly 215 + 256·kind bytes in a struct's first field, which none of
//!   those types had.

use serde::{Serialize, de::DeserializeOwned};

/// The first byte of every enveloped value.
pub const MAGIC: u8 = 0xD7;
const HEADER_LEN: usize = 3;

/// What a stored value is. The numbers are part of the on-disk format: never reuse or renumber
/// one; add new kinds at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// raft-store's own metadata and log entries (vote, committed, applied, membership,
    /// snapshots); the RocksDB key says which.
    RaftStore = 1,
    /// A command in a history shard's Raft log.
    ShardCommand = 2,
    /// A command in the metadata group's Raft log.
    MetaCommand = 3,
    /// A run's mutable state.
    MutableState = 4,
    /// The current-run pointer of a workflow id.
    CurrentExecution = 5,
    /// A task waiting in a shard's outbox.
    OutboxRecord = 6,
    /// A run's visibility (List/Count) record.
    VisibilityRecord = 7,
    /// A schedule.
    ScheduleRecord = 8,
    /// A namespace.
    NamespaceRecord = 9,
    /// A task waiting in a task-queue partition's backlog.
    BacklogTask = 10,
    /// A task token handed to a worker (and back to any node).
    TaskToken = 11,
    /// A List/Scan page token handed to a client.
    PageToken = 12,
    /// A Raft RPC (request or reply) between nodes.
    PeerMessage = 13,
    /// Which nodes hold each group's replicas (the metadata group's record, a node's file).
    Placement = 14,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        use Kind::*;
        [
            RaftStore,
            ShardCommand,
            MetaCommand,
            MutableState,
            CurrentExecution,
            OutboxRecord,
            VisibilityRecord,
            ScheduleRecord,
            NamespaceRecord,
            BacklogTask,
            TaskToken,
            PageToken,
            PeerMessage,
            Placement,
        ]
        .into_iter()
        .find(|k| *k as u8 == b)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("expected a {expected:?} value, found a {found:?} one")]
    WrongKind { expected: Kind, found: Kind },
    #[error(
        "{kind:?} version {version} was written by a newer build (this one reads up to {supported})"
    )]
    NewerVersion {
        kind: Kind,
        version: u8,
        supported: u8,
    },
    #[error("{kind:?} version {version} is no longer readable")]
    UnreadableVersion { kind: Kind, version: u8 },
    #[error("malformed {kind:?} value: {reason}")]
    Malformed { kind: Kind, reason: String },
}

/// A type Dura persists or puts in a Raft log.
pub trait Persisted: Serialize + DeserializeOwned {
    const KIND: Kind;
    /// The version of the shape this build writes.
    const VERSION: u8 = 1;

    /// Reads `payload` written as an older `version` (`< VERSION`; 0 = bare bincode from before
    /// envelopes, which by default is read as the current shape).
    fn decode_older(version: u8, payload: &[u8]) -> Result<Self, CodecError> {
        if version == 0 {
            return payload_of(Self::KIND, payload);
        }
        Err(CodecError::UnreadableVersion {
            kind: Self::KIND,
            version,
        })
    }

    fn encode(&self) -> Vec<u8> {
        encode_as(Self::KIND, Self::VERSION, self)
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        match split(Self::KIND, bytes)? {
            (version, payload) if version == Self::VERSION => payload_of(Self::KIND, payload),
            (version, _) if version > Self::VERSION => Err(CodecError::NewerVersion {
                kind: Self::KIND,
                version,
                supported: Self::VERSION,
            }),
            (version, payload) => Self::decode_older(version, payload),
        }
    }
}

/// Encodes `value` as `version` of `kind`: for callers holding values of many types under one
/// kind (raft-store's metadata). Types of their own implement [`Persisted`] instead.
pub fn encode_as<T: Serialize + ?Sized>(kind: Kind, version: u8, value: &T) -> Vec<u8> {
    let size = bincode::serialized_size(value).unwrap_or(0) as usize;
    let mut out = Vec::with_capacity(HEADER_LEN + size);
    out.extend_from_slice(&[MAGIC, kind as u8, version]);
    // Writing into a Vec fails only for types serde cannot represent, which ours never are.
    bincode::serialize_into(&mut out, value).expect("persisted values serialize");
    out
}

/// Decodes a value of `kind` whose only version is `version` (see [`encode_as`]).
pub fn decode_as<T: DeserializeOwned>(
    kind: Kind,
    version: u8,
    bytes: &[u8],
) -> Result<T, CodecError> {
    match split(kind, bytes)? {
        (v, payload) if v == version || v == 0 => payload_of(kind, payload),
        (v, _) if v > version => Err(CodecError::NewerVersion {
            kind,
            version: v,
            supported: version,
        }),
        (v, _) => Err(CodecError::UnreadableVersion { kind, version: v }),
    }
}

/// (version, payload) of an enveloped value of `kind`; a bare value is version 0.
fn split(kind: Kind, bytes: &[u8]) -> Result<(u8, &[u8]), CodecError> {
    let header = match bytes {
        [MAGIC, k, v, ..] => Kind::from_u8(*k).map(|k| (k, *v)),
        _ => None,
    };
    match header {
        Some((found, version)) if found == kind => Ok((version, &bytes[HEADER_LEN..])),
        Some((found, _)) => Err(CodecError::WrongKind {
            expected: kind,
            found,
        }),
        None => Ok((0, bytes)),
    }
}

/// Decodes the bare payload of a value of `kind` (what follows the envelope): for a
/// [`Persisted::decode_older`] that rebuilds an older version's payload into the current shape.
pub fn payload_of<T: DeserializeOwned>(kind: Kind, payload: &[u8]) -> Result<T, CodecError> {
    bincode::deserialize(payload).map_err(|e| CodecError::Malformed {
        kind,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    /// Version 1 of a record, as an older build wrote it.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct RecordV1 {
        id: String,
    }

    /// Version 2 adds a field; it still reads version 1 (and bare values) by upgrading them.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Record {
        id: String,
        attempts: u32,
    }

    impl Persisted for Record {
        const KIND: Kind = Kind::OutboxRecord;
        const VERSION: u8 = 2;

        fn decode_older(version: u8, payload: &[u8]) -> Result<Self, CodecError> {
            match version {
                0 | 1 => {
                    let old: RecordV1 = payload_of(Self::KIND, payload)?;
                    Ok(Record {
                        id: old.id,
                        attempts: 0,
                    })
                }
                _ => Err(CodecError::UnreadableVersion {
                    kind: Self::KIND,
                    version,
                }),
            }
        }
    }

    #[test]
    fn a_value_round_trips_with_its_header() {
        let r = Record {
            id: "a".into(),
            attempts: 3,
        };
        let bytes = r.encode();
        assert_eq!(&bytes[..3], &[MAGIC, Kind::OutboxRecord as u8, 2]);
        assert_eq!(Record::decode(&bytes).unwrap(), r);
    }

    #[test]
    fn an_older_version_still_decodes() {
        let v1 = encode_as(Kind::OutboxRecord, 1, &RecordV1 { id: "old".into() });
        assert_eq!(
            Record::decode(&v1).unwrap(),
            Record {
                id: "old".into(),
                attempts: 0
            }
        );
        let bare = bincode::serialize(&RecordV1 { id: "bare".into() }).unwrap();
        assert_eq!(
            Record::decode(&bare).unwrap(),
            Record {
                id: "bare".into(),
                attempts: 0
            }
        );
    }

    #[test]
    fn a_newer_version_or_another_kind_is_refused() {
        let v3 = encode_as(Kind::OutboxRecord, 3, &RecordV1 { id: "x".into() });
        assert_eq!(
            Record::decode(&v3).unwrap_err(),
            CodecError::NewerVersion {
                kind: Kind::OutboxRecord,
                version: 3,
                supported: 2
            }
        );
        let other = encode_as(Kind::BacklogTask, 2, &RecordV1 { id: "x".into() });
        assert_eq!(
            Record::decode(&other).unwrap_err(),
            CodecError::WrongKind {
                expected: Kind::OutboxRecord,
                found: Kind::BacklogTask
            }
        );
    }

    #[test]
    fn single_version_kinds_read_bare_and_current_values() {
        let value = (7u64, "seven".to_string());
        let bytes = encode_as(Kind::RaftStore, 1, &value);
        assert_eq!(
            decode_as::<(u64, String)>(Kind::RaftStore, 1, &bytes).unwrap(),
            value
        );
        let bare = bincode::serialize(&value).unwrap();
        assert_eq!(
            decode_as::<(u64, String)>(Kind::RaftStore, 1, &bare).unwrap(),
            value
        );
        assert!(matches!(
            decode_as::<(u64, String)>(Kind::RaftStore, 1, &encode_as(Kind::RaftStore, 2, &value)),
            Err(CodecError::NewerVersion { .. })
        ));
    }
}
