//! Groups this node holds no replica of (a cluster with fewer replicas per group than
//! members): which nodes hold them, and which of those leads each, as last learned.
//!
//! The placement (every group's replica nodes) is fixed when the cluster is created and given
//! to every node in [`crate::StoreOptions::placement`]. A leader hint comes from asking a
//! replica ([`RaftStore::locate_leader`]) or from a refusal's hint, and goes stale after
//! [`HINT_TTL`]: leaders move, and a hint that is wrong costs a refusal or an empty poll.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use crate::GroupId;
use crate::ProposeError;
use crate::RaftStore;
use crate::reader::KvPairs;

/// How long a learned leader of a group held elsewhere is trusted.
const HINT_TTL: Duration = Duration::from_secs(2);
/// How long a replica may take to say who leads its group.
const ASK_TIMEOUT: Duration = Duration::from_millis(800);

#[derive(Default)]
pub(crate) struct Routes {
    /// Every group's replica nodes; a group missing here is held by every member.
    placement: BTreeMap<GroupId, Vec<u64>>,
    hints: Mutex<HashMap<GroupId, (u64, Instant)>>,
}

impl Routes {
    pub(crate) fn new(placement: BTreeMap<GroupId, Vec<u64>>) -> Self {
        Self {
            placement,
            hints: Mutex::default(),
        }
    }

    /// How many nodes the placement spreads groups over (0 when every member holds all).
    pub(crate) fn members(&self) -> usize {
        let nodes: std::collections::BTreeSet<u64> =
            self.placement.values().flatten().copied().collect();
        nodes.len()
    }

    fn hint(&self, group: GroupId) -> Option<u64> {
        let hints = self.hints.lock().unwrap_or_else(|e| e.into_inner());
        hints
            .get(&group)
            .filter(|(_, at)| at.elapsed() < HINT_TTL)
            .map(|(node, _)| *node)
    }

    fn set_hint(&self, group: GroupId, leader: Option<u64>) {
        let mut hints = self.hints.lock().unwrap_or_else(|e| e.into_inner());
        match leader {
            Some(node) => hints.insert(group, (node, Instant::now())),
            None => hints.remove(&group),
        };
    }
}

impl RaftStore {
    /// Whether this node holds a replica of `group`.
    pub fn hosts(&self, group: GroupId) -> bool {
        self.inner.groups.contains_key(&group)
    }

    /// The nodes holding a replica of `group`: its placement, or (a group placed on every
    /// member) the voters this node knows of.
    pub fn replicas(&self, group: GroupId) -> Vec<u64> {
        match self.inner.routes.placement.get(&group) {
            Some(nodes) => nodes.clone(),
            None => self.peer_addresses().into_keys().collect(),
        }
    }

    /// The leader of `group` as far as this node can tell: its own view of a group it holds;
    /// for another group, a recent hint, else the answer of the first replica that knows.
    pub async fn locate_leader(&self, group: GroupId) -> Option<u64> {
        if self.hosts(group) {
            return self.leader_of(group);
        }
        if let Some(node) = self.inner.routes.hint(group) {
            return Some(node);
        }
        for replica in self.replicas(group) {
            let asked = self
                .ask_leader(replica, group, ASK_TIMEOUT)
                .await
                .ok()
                .flatten();
            if let Some(leader) = asked {
                self.note_leader(group, Some(leader));
                return Some(leader);
            }
        }
        None
    }

    /// Records what a call learned of the leader of a group this node does not hold (`None`:
    /// the hinted node failed or does not lead it, so ask again next time).
    pub fn note_leader(&self, group: GroupId, leader: Option<u64>) {
        if !self.hosts(group) {
            self.inner.routes.set_hint(group, leader);
        }
    }

    /// On a replica: the read [`RaftStore::scan_prefix_via`] asked for.
    pub(crate) async fn scan_prefix_here(
        &self,
        group: GroupId,
        prefix: Vec<u8>,
        timeout: Duration,
    ) -> Result<KvPairs, ProposeError> {
        self.read_barrier_via(self.leader_of(group), group, timeout)
            .await?;
        let reader = self
            .reader(group)
            .map_err(|_| ProposeError::UnknownGroup(group))?;
        tokio::task::spawn_blocking(move || reader.scan_prefix(&prefix))
            .await
            .map_err(|e| ProposeError::Unavailable {
                group,
                reason: e.to_string(),
            })?
            .map_err(|e| ProposeError::Unavailable {
                group,
                reason: e.to_string(),
            })
    }
}
