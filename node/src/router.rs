//! The routing seam between the frontend and the Raft groups: a command goes to its group's
//! leader wherever that is — proposed locally when this node leads the group, else forwarded
//! over the peer connection to the node the last refusal named (raft-store's
//! `propose_via`), like Temporal's history client redirector.
//!
//! Only a refusal (`NotLeader`: the entry was not appended) is tried again, so nothing can
//! apply twice. Any other failure answers UNAVAILABLE at once: the entry may still commit, and
//! the SDK's retry with the same request id finds it.
//!
//! Reads are served from this node's replica after a read barrier ([`read_barrier`]), so a
//! read through any node sees every write acknowledged before it, wherever it was made. A
//! group this node holds no replica of (fewer replicas than members) takes its commands
//! through the leader a replica names; its reads are served by a replica (the frontend
//! forwards such calls, [`scan_prefix`] reads a prefix there).

use std::time::Duration;

use dura_raft_store::{GroupId, KvPairs, ProposeError, RaftStore};
use tokio::time::Instant;

use crate::error::{ApiError, ApiResult};

/// How long a proposal waits for its group to have a reachable leader (an election after a
/// failure takes a few election timeouts) before it answers UNAVAILABLE.
const ELECTION_WAIT: Duration = Duration::from_secs(10);
/// How often a proposal waiting for a leader looks again.
const ELECTION_POLL: Duration = Duration::from_millis(50);

/// Proposes `command` to `group`'s leader and returns what apply returned there.
pub async fn propose(store: &RaftStore, group: GroupId, command: Vec<u8>) -> ApiResult<Vec<u8>> {
    let deadline = Instant::now() + ELECTION_WAIT;
    let held = store.hosts(group);
    let mut via = None;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if !held && via.is_none() {
            // A group held elsewhere: a replica names its leader.
            via = store.locate_leader(group).await;
            if via.is_none() && !remaining.is_zero() {
                tokio::time::sleep(ELECTION_POLL.min(remaining)).await;
                continue;
            }
        }
        let proposed = match via {
            Some(node) if node != store.node_id() => {
                store
                    .propose_via(node, group, command.clone(), remaining)
                    .await
            }
            // Bounded too: a leader cut off from its quorum (a partition) would otherwise
            // hold a call without a deadline forever. What times out may still commit.
            _ => tokio::time::timeout(remaining, store.propose(group, command.clone()))
                .await
                .unwrap_or_else(|_| {
                    Err(ProposeError::Unavailable {
                        group,
                        reason: format!("not committed within {ELECTION_WAIT:?}"),
                    })
                }),
        };
        match proposed {
            Err(ProposeError::NotLeader { leader, .. }) if !remaining.is_zero() => {
                // No leader known, or the hinted one does not lead either: an election is
                // under way, so look again shortly rather than spin.
                if leader.is_none() || leader == via {
                    tokio::time::sleep(ELECTION_POLL.min(remaining)).await;
                }
                store.note_leader(group, leader);
                via = leader;
            }
            Err(e) => {
                // The next call asks a replica again rather than trust a node that failed.
                store.note_leader(group, None);
                return Err(e.into());
            }
            Ok(reply) => return Ok(reply),
        }
    }
}

/// Waits until this node's replica of `group` holds every write committed before the call (see
/// `RaftStore::read_barrier_via`), following leader hints through an election like
/// [`propose`].
pub async fn read_barrier(store: &RaftStore, group: GroupId) -> ApiResult<()> {
    let deadline = Instant::now() + ELECTION_WAIT;
    let mut via = store.leader_of(group);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match store.read_barrier_via(via, group, remaining).await {
            Err(ProposeError::NotLeader { leader, .. }) if !remaining.is_zero() => {
                if leader.is_none() || leader == via {
                    tokio::time::sleep(ELECTION_POLL.min(remaining)).await;
                }
                via = leader.or_else(|| store.leader_of(group));
            }
            other => return Ok(other?),
        }
    }
}

/// Every `(key, value)` of `group` under `prefix`, read by the group's leader (or, when none is
/// known, a replica) after a read barrier there: for a group this node holds no replica of.
pub async fn scan_prefix(store: &RaftStore, group: GroupId, prefix: &[u8]) -> ApiResult<KvPairs> {
    let deadline = Instant::now() + ELECTION_WAIT;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let node = match store.locate_leader(group).await {
            Some(node) => node,
            None => *store.replicas(group).first().ok_or_else(|| {
                ApiError::Unavailable(format!("no node holds group {group}"))
            })?,
        };
        match store.scan_prefix_via(node, group, prefix, remaining).await {
            Err(ProposeError::NotLeader { leader, .. }) if !remaining.is_zero() => {
                store.note_leader(group, leader);
                tokio::time::sleep(ELECTION_POLL.min(remaining)).await;
            }
            Err(e) => {
                store.note_leader(group, None);
                return Err(e.into());
            }
            Ok(pairs) => return Ok(pairs),
        }
    }
}
