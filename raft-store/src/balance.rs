//! Spreading group leaderships evenly over the voters. Elections put leaders wherever the
//! first votes came from — after a bootstrap, mostly on the nodes that started first, and
//! after a failure, on the survivors — so one node would carry most of the cluster's work.
//!
//! Every node looks, every [`BALANCE_EVERY`], at who leads each group (its own view of the
//! groups' metrics). A node leading more than its share (`ceil(groups / members)`) hands one
//! group it leads to the voter leading the fewest, provided that voter is caught up with the
//! group's log, through openraft's leadership transfer. One hand-off per node per look keeps
//! views that lag from causing a stampede; repeated looks converge, also when a node comes
//! back after a failure and leads nothing.
//!
//! An operator's `dura cluster transfer-leader` ([`RaftStore::transfer_leader`]) wins over the
//! balancer: the node it moved a group to keeps that group (until it restarts) and balances
//! with the others.

use std::collections::BTreeMap;
use std::sync::Weak;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;

use crate::GroupId;
use crate::ProposeError;
use crate::RaftStore;
use crate::store::Inner;

/// How often a node looks at the spread of leaderships.
pub(crate) const BALANCE_EVERY: Duration = Duration::from_secs(2);
/// A target may lag the leader's log by this many entries and still take over.
const MAX_TARGET_LAG: u64 = 16;
/// A target must have answered this recently (every group heartbeats it every 50 ms).
const MAX_ACK_AGE: Duration = Duration::from_millis(500);

/// Looks and hands off until the store goes away.
pub(crate) async fn run(store: Weak<Inner>) {
    loop {
        tokio::time::sleep(BALANCE_EVERY).await;
        let Some(inner) = store.upgrade() else { return };
        if inner.draining.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        if let Some((group, to)) = hand_off(&inner) {
            tracing::info!(%group, to, "handing leadership over to spread leaders evenly");
            if let Some(g) = inner.groups.get(&group) {
                let _ = g.raft.trigger().transfer_leader(to).await;
            }
        }
    }
}

/// The other voters of the group `raft` leads that can take over at once: their log is within
/// [`MAX_TARGET_LAG`] entries of the leader's, they answered this node within
/// [`MAX_ACK_AGE`] (a node just killed still looks caught up) and they did not say they are
/// stopping. A transfer to a node that cannot take over costs an election.
pub(crate) fn caught_up_voters(
    raft: &crate::types::Raft,
    me: u64,
    connections: &crate::peer::PeerConnections,
) -> Vec<u64> {
    let metrics = raft.metrics();
    let m = metrics.borrow_watched();
    let last = m.last_log_index.unwrap_or(0);
    let caught_up = |node: &u64| {
        m.replication.as_ref().is_some_and(|r| {
            r.get(node)
                .and_then(|matched| matched.as_ref().map(|l| l.index()))
                .is_some_and(|index| index + MAX_TARGET_LAG >= last)
        })
    };
    // Not openraft's heartbeat metrics: an idle group does not republish them.
    let alive = |node: &u64| connections.answered_within(*node, MAX_ACK_AGE);
    m.membership_config
        .membership()
        .voter_ids()
        .filter(|v| *v != me && caught_up(v) && alive(v) && !connections.is_draining(*v))
        .collect()
}

/// The group this node should hand over now, and to whom.
fn hand_off(inner: &Inner) -> Option<(GroupId, u64)> {
    let me = inner.node_id;
    let mut led: BTreeMap<u64, usize> = BTreeMap::new();
    let mut mine = Vec::new();
    for (id, g) in &inner.groups {
        let metrics = g.raft.metrics();
        let m = metrics.borrow_watched();
        for voter in m.membership_config.membership().voter_ids() {
            led.entry(voter).or_default();
        }
        if let Some(leader) = m.current_leader {
            *led.entry(leader).or_default() += 1;
            let pinned = inner
                .pinned
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(id);
            if leader == me && g.leadership.borrow().is_some() && !pinned {
                mine.push(*id);
            }
        }
    }
    let voters = led.len();
    if voters <= 1 {
        return None;
    }
    // A share of the whole cluster's groups, not just of those held here: with fewer
    // replicas than members this node sees only part of the others' load.
    let members = inner.routes.members().max(voters);
    let share = inner.cluster_groups.div_ceil(members);
    let my_count = led.get(&me).copied().unwrap_or(0);
    if my_count <= share || mine.is_empty() {
        return None;
    }
    for group in mine {
        let target = caught_up_voters(&inner.groups[&group].raft, me, &inner.connections)
            .into_iter()
            .min_by_key(|v| led.get(v).copied().unwrap_or(0));
        // Only a move that narrows the gap: never trade places with an equally loaded node.
        if let Some(to) = target.filter(|t| led.get(t).copied().unwrap_or(0) + 1 < my_count) {
            return Some((group, to));
        }
    }
    None
}

impl RaftStore {
    /// Moves the leadership of `group` to its voter `to`, through whichever node leads it now,
    /// and waits (up to `timeout`) until `to` leads it.
    pub async fn transfer_leader(
        &self,
        group: GroupId,
        to: u64,
        timeout: Duration,
    ) -> Result<(), ProposeError> {
        if to == self.node_id() {
            return self.take_leadership(group, timeout).await;
        }
        self.ask_take_leadership(to, group, timeout).await
    }

    /// On the target of a transfer: keeps `group` from the balancer, then asks its leader to
    /// hand it over until this node leads it.
    pub(crate) async fn take_leadership(
        &self,
        group: GroupId,
        timeout: Duration,
    ) -> Result<(), ProposeError> {
        let unavailable = |reason: String| ProposeError::Unavailable { group, reason };
        if self.raft_of(group).is_none() {
            return Err(ProposeError::UnknownGroup(group));
        }
        if self.is_draining() {
            return Err(unavailable("this node is stopping".into()));
        }
        self.pin(group);
        let me = self.node_id();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.leader_term(group).is_some() {
                return Ok(());
            }
            if let Some(leader) = self.leader_of(group).filter(|l| *l != me) {
                // The leader may be mid-election or not see this node caught up yet: asked
                // again on the next round.
                let _ = self.ask_hand_leadership(leader, group, me, timeout).await;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(unavailable(format!(
                    "still led by {:?} after {timeout:?}",
                    self.leader_of(group)
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// On the leader: starts handing `group` over to `to`.
    pub(crate) async fn hand_leadership(
        &self,
        group: GroupId,
        to: u64,
    ) -> Result<(), ProposeError> {
        let raft = self
            .raft_of(group)
            .ok_or(ProposeError::UnknownGroup(group))?;
        if self.leader_term(group).is_none() {
            return Err(ProposeError::NotLeader {
                group,
                leader: self.leader_of(group),
            });
        }
        tracing::info!(%group, to, "handing leadership over as an operator asked");
        raft.trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| ProposeError::Unavailable {
                group,
                reason: e.to_string(),
            })
    }
}
