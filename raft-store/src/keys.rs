//! Every RocksDB key this crate writes, in one place.
//!
//! One RocksDB instance per node holds every raft group, split over three column families:
//!
//! | column family | key                                   | value                                   |
//! |---------------|---------------------------------------|-----------------------------------------|
//! | `raft_log`    | group `u32` BE ‖ log index `u64` BE   | bincode(openraft `Entry`)               |
//! | `raft_meta`   | group `u32` BE ‖ [`MetaKind`] `u8`    | bincode(value named by the kind)        |
//! | `state`       | group `u32` BE ‖ application key      | application value (raw bytes)           |
//!
//! Big-endian integers make RocksDB's bytewise ordering equal to numeric ordering, so a group's
//! log is one contiguous, index-ordered range and a group's state is one contiguous range that
//! sorts like the application keys themselves.

use crate::GroupId;

/// Column family of the raft logs of all groups.
pub(crate) const CF_LOG: &str = "raft_log";
/// Column family of per-group raft metadata (vote, committed, purged, applied, snapshot).
pub(crate) const CF_META: &str = "raft_meta";
/// Column family of the applied application state of all groups.
pub(crate) const CF_STATE: &str = "state";

/// All column families, in the order they are opened.
pub(crate) const ALL_CFS: [&str; 3] = [CF_LOG, CF_META, CF_STATE];

/// Length of the group prefix every key starts with.
pub(crate) const GROUP_PREFIX_LEN: usize = 4;

/// The per-group record kinds stored in [`CF_META`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum MetaKind {
    /// The last saved vote (`Vote`), always fsynced.
    Vote = 1,
    /// The last saved committed log id (`Option<LogId>`), written lazily.
    Committed = 2,
    /// The last purged log id (`LogId`), fsynced.
    LastPurged = 3,
    /// The last applied log id (`Option<LogId>`), written in the same batch as the state.
    Applied = 4,
    /// The last applied membership (`StoredMembership`), written with `Applied`.
    Membership = 5,
    /// A whole-state snapshot blob of builds before snapshots became files; no longer read
    /// (a node builds a new snapshot when it needs one).
    Snapshot = 6,
    /// The current snapshot (`StoredSnapshot`: meta + the name of its file).
    SnapshotFile = 7,
    /// A snapshot whose install began (`StoredSnapshot`); finished on open after a crash.
    Installing = 8,
}

impl MetaKind {
    #[cfg_attr(not(test), allow(dead_code))] // decoding is for tests and debugging
    pub(crate) fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Vote,
            2 => Self::Committed,
            3 => Self::LastPurged,
            4 => Self::Applied,
            5 => Self::Membership,
            6 => Self::Snapshot,
            7 => Self::SnapshotFile,
            8 => Self::Installing,
            _ => return None,
        })
    }
}

/// The 4-byte prefix shared by every key of `group`, in every column family.
pub(crate) fn group_prefix(group: GroupId) -> [u8; GROUP_PREFIX_LEN] {
    group.0.to_be_bytes()
}

/// Key of log entry `index` of `group` in [`CF_LOG`].
pub(crate) fn log_key(group: GroupId, index: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&group.0.to_be_bytes());
    k[4..].copy_from_slice(&index.to_be_bytes());
    k
}

/// Inverse of [`log_key`].
pub(crate) fn decode_log_key(key: &[u8]) -> Option<(GroupId, u64)> {
    if key.len() != 12 {
        return None;
    }
    let group = u32::from_be_bytes(key[..4].try_into().ok()?);
    let index = u64::from_be_bytes(key[4..].try_into().ok()?);
    Some((GroupId(group), index))
}

/// Key of the `kind` record of `group` in [`CF_META`].
pub(crate) fn meta_key(group: GroupId, kind: MetaKind) -> [u8; 5] {
    let mut k = [0u8; 5];
    k[..4].copy_from_slice(&group.0.to_be_bytes());
    k[4] = kind as u8;
    k
}

/// Inverse of [`meta_key`].
#[cfg_attr(not(test), allow(dead_code))] // decoding is for tests and debugging
pub(crate) fn decode_meta_key(key: &[u8]) -> Option<(GroupId, MetaKind)> {
    if key.len() != 5 {
        return None;
    }
    let group = u32::from_be_bytes(key[..4].try_into().ok()?);
    Some((GroupId(group), MetaKind::from_u8(key[4])?))
}

/// Key of application key `app_key` of `group` in [`CF_STATE`].
pub(crate) fn state_key(group: GroupId, app_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(GROUP_PREFIX_LEN + app_key.len());
    k.extend_from_slice(&group.0.to_be_bytes());
    k.extend_from_slice(app_key);
    k
}

/// Inverse of [`state_key`]: the group and the application key.
#[cfg_attr(not(test), allow(dead_code))] // decoding is for tests and debugging
pub(crate) fn decode_state_key(key: &[u8]) -> Option<(GroupId, &[u8])> {
    if key.len() < GROUP_PREFIX_LEN {
        return None;
    }
    let group = u32::from_be_bytes(key[..4].try_into().ok()?);
    Some((GroupId(group), &key[GROUP_PREFIX_LEN..]))
}

/// The smallest key that is greater than every key starting with `prefix`, or `None` when no
/// such key exists (the prefix is empty or all `0xFF`), i.e. the range is unbounded above.
pub(crate) fn prefix_upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_key_round_trip_and_order() {
        for (g, i) in [(0u32, 0u64), (1, 1), (7, u64::MAX), (u32::MAX, 42)] {
            let k = log_key(GroupId(g), i);
            assert_eq!(decode_log_key(&k), Some((GroupId(g), i)));
        }
        // Numeric order == byte order, and groups are contiguous.
        assert!(log_key(GroupId(1), 255) < log_key(GroupId(1), 256));
        assert!(log_key(GroupId(1), u64::MAX) < log_key(GroupId(2), 0));
        assert_eq!(decode_log_key(&[0u8; 11]), None);
    }

    #[test]
    fn meta_key_round_trip() {
        for kind in [
            MetaKind::Vote,
            MetaKind::Committed,
            MetaKind::LastPurged,
            MetaKind::Applied,
            MetaKind::Membership,
            MetaKind::Snapshot,
        ] {
            for g in [0u32, 3, u32::MAX] {
                let k = meta_key(GroupId(g), kind);
                assert_eq!(decode_meta_key(&k), Some((GroupId(g), kind)));
            }
        }
        assert_eq!(decode_meta_key(&[0, 0, 0, 1, 99]), None);
        assert_eq!(decode_meta_key(&[0, 0, 0, 1]), None);
    }

    #[test]
    fn state_key_round_trip_and_isolation() {
        let k = state_key(GroupId(5), b"wf/abc");
        assert_eq!(decode_state_key(&k), Some((GroupId(5), &b"wf/abc"[..])));
        let empty = state_key(GroupId(5), b"");
        assert_eq!(decode_state_key(&empty), Some((GroupId(5), &b""[..])));
        assert_eq!(decode_state_key(b"abc"), None);
        // Every key of group 5 sorts before every key of group 6.
        assert!(state_key(GroupId(5), &[0xFF; 32]) < state_key(GroupId(6), b""));
        assert!(k.starts_with(&group_prefix(GroupId(5))));
    }

    #[test]
    fn upper_bound() {
        assert_eq!(prefix_upper_bound(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_upper_bound(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_upper_bound(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_upper_bound(b""), None);
        let p = group_prefix(GroupId(9));
        let ub = prefix_upper_bound(&p).unwrap();
        assert_eq!(ub, group_prefix(GroupId(10)).to_vec());
    }
}
