//! Raft timing and log-compaction settings, kept in one place.
//!
//! A single-voter group must elect itself quickly after a restart (the whole server has to be
//! ready within about a second): a restarted node starts as a follower (leader restore is off) and
//! campaigns after one election timeout, i.e. within [`ELECTION_TIMEOUT_MAX_MS`].

use std::sync::Arc;

use openraft::Config;
use openraft::SnapshotPolicy;

use crate::Error;

/// How often a leader heartbeats its followers.
pub(crate) const HEARTBEAT_INTERVAL_MS: u64 = 50;
/// Lower bound of the randomized election timeout.
pub(crate) const ELECTION_TIMEOUT_MIN_MS: u64 = 150;
/// Upper bound of the randomized election timeout.
pub(crate) const ELECTION_TIMEOUT_MAX_MS: u64 = 300;
/// How long a leader waits for a quorum to confirm its leadership before a linearizable read
/// fails: many heartbeat rounds, so only a leader really cut off from its quorum fails one.
pub(crate) const READ_QUORUM_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
/// Log entries already covered by a snapshot that are kept (not purged) so that a slightly
/// lagging follower can still be caught up from the log instead of a full snapshot.
pub(crate) const MAX_IN_SNAPSHOT_LOG_TO_KEEP: u64 = 32;

/// The openraft configuration shared by every group of a node.
///
/// `snapshot_every == 0` disables automatic snapshots (they can still be triggered manually).
pub(crate) fn raft_config(snapshot_every: u64) -> Result<Arc<Config>, Error> {
    let snapshot_policy = match snapshot_every {
        0 => SnapshotPolicy::Never,
        n => SnapshotPolicy::LogsSinceLast(n),
    };
    let config = Config {
        cluster_name: "dura".to_string(),
        heartbeat_interval: HEARTBEAT_INTERVAL_MS,
        election_timeout_min: ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
        enable_pre_vote: Some(true),
        // A restarted leader campaigns for a new term instead of resuming the old one: the new
        // term's blank entry is what `RaftStore::leader_term` waits for, and it guarantees every
        // entry committed before the restart is applied (the lazily saved `committed` id may
        // lag). Costs one election timeout on restart.
        enable_leader_restore: Some(false),
        snapshot_policy,
        max_in_snapshot_log_to_keep: MAX_IN_SNAPSHOT_LOG_TO_KEEP,
        purge_batch_size: 1,
        ..Config::default()
    };
    let config = config
        .validate()
        .map_err(|e| Error::Raft(format!("invalid raft config: {e}")))?;
    Ok(Arc::new(config))
}
