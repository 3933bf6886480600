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

use std::{future::Future, time::Duration};

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
    let held = store.hosts(group);
    follow_leader(store, group, |via, remaining| {
        let command = command.clone();
        async move {
            match via {
                Some(node) if node != store.node_id() => {
                    store.propose_via(node, group, command, remaining).await
                }
                // Held elsewhere and no leader named yet: look again.
                _ if !held => Err(ProposeError::NotLeader {
                    group,
                    leader: None,
                }),
                // Bounded too: a leader cut off from its quorum (a partition) would otherwise
                // hold a call without a deadline forever. What times out may still commit.
                _ => tokio::time::timeout(remaining, store.propose(group, command))
                    .await
                    .unwrap_or_else(|_| {
                        Err(ProposeError::Unavailable {
                            group,
                            reason: format!("not committed within {ELECTION_WAIT:?}"),
                        })
                    }),
            }
        }
    })
    .await
}

/// Waits until this node's replica of `group` holds every write committed before the call (see
/// `RaftStore::read_barrier_via`), following leader hints through an election like
/// [`propose`].
pub async fn read_barrier(store: &RaftStore, group: GroupId) -> ApiResult<()> {
    follow_leader(store, group, |via, remaining| {
        store.read_barrier_via(via, group, remaining)
    })
    .await
}

/// Every `(key, value)` of `group` under `prefix`, read by the group's leader (or, when none is
/// known, a replica) after a read barrier there: for a group this node holds no replica of.
pub async fn scan_prefix(store: &RaftStore, group: GroupId, prefix: &[u8]) -> ApiResult<KvPairs> {
    let first_replica = *store
        .replicas(group)
        .first()
        .ok_or_else(|| ApiError::Unavailable(format!("no node holds group {group}")))?;
    follow_leader(store, group, |via, remaining| {
        store.scan_prefix_via(via.unwrap_or(first_replica), group, prefix, remaining)
    })
    .await
}

/// Runs `attempt` against the node this one believes leads `group` (`None`: none known),
/// following `NotLeader` refusals — nothing was done — to the node each names, for up to
/// [`ELECTION_WAIT`] through an election. Any other failure ends the call; the next one then
/// asks a replica who leads a group held elsewhere rather than trust the node that failed.
async fn follow_leader<T, Attempt>(
    store: &RaftStore,
    group: GroupId,
    mut attempt: impl FnMut(Option<u64>, Duration) -> Attempt,
) -> ApiResult<T>
where
    Attempt: Future<Output = Result<T, ProposeError>>,
{
    let deadline = Instant::now() + ELECTION_WAIT;
    let mut via = store.locate_leader(group).await;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match attempt(via, remaining).await {
            Err(ProposeError::NotLeader { leader, .. }) if !remaining.is_zero() => {
                // No leader known, or the hinted one does not lead either: an election is
                // under way, so look again shortly rather than spin.
                if leader.is_none() || leader == via {
                    tokio::time::sleep(ELECTION_POLL.min(remaining)).await;
                }
                store.note_leader(group, leader);
                via = match leader {
                    Some(node) => Some(node),
                    None => store.locate_leader(group).await,
                };
            }
            Err(e) => {
                store.note_leader(group, None);
                return Err(e.into());
            }
            Ok(value) => return Ok(value),
        }
    }
}
