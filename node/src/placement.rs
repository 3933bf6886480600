//! Which members hold each group's replicas, decided once when the cluster is created.
//!
//! The metadata group is held by every member: every call reads namespaces, so each node
//! keeps a replica to read them locally. Shard `s` is held by `replication` consecutive
//! members (by id) starting at the `(s - 1) mod members`-th, so replicas spread evenly and a
//! shard's replicas are on distinct nodes. With as many replicas as members every node holds
//! every shard. The balancer then spreads the leaders over the nodes.
//!
//! The placement is a pure function of the initial members, the shard count and the
//! replication, but those flags are ignored once a data directory holds a cluster, so each
//! node keeps the placement it started with in its data directory ([`PLACEMENT_FILE`]) and
//! the metadata group records the cluster's ([`crate::namespace::MetaCommand::RecordPlacement`]):
//! a node whose placement differs from the cluster's refuses to start.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use dura_codec::Kind;
use dura_raft_store::GroupId;

/// The file in the data directory holding this node's placement.
pub const PLACEMENT_FILE: &str = "DURA_PLACEMENT";
const VERSION: u8 = 1;

/// Every group of the cluster and the members holding its replicas, ascending.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Placement {
    groups: BTreeMap<u32, Vec<u64>>,
}

impl Placement {
    /// Spreads `shards` shards of `replication` replicas over `members`.
    pub fn spread(members: &[u64], shards: u32, replication: usize) -> Self {
        let mut members = members.to_vec();
        members.sort_unstable();
        members.dedup();
        let mut groups = BTreeMap::from([(GroupId::META.0, members.clone())]);
        let n = members.len();
        let replication = replication.clamp(1, n.max(1));
        for shard in 1..=shards {
            let first = (shard as usize - 1) % n.max(1);
            let mut replicas: Vec<u64> = (0..replication)
                .filter_map(|k| members.get((first + k) % n))
                .copied()
                .collect();
            replicas.sort_unstable();
            groups.insert(shard, replicas);
        }
        Self { groups }
    }

    /// The groups `node` holds a replica of.
    pub fn held_by(&self, node: u64) -> Vec<GroupId> {
        self.groups
            .iter()
            .filter(|(_, replicas)| replicas.contains(&node))
            .map(|(group, _)| GroupId(*group))
            .collect()
    }

    /// Every group with its replicas, as the Raft store takes them.
    pub fn by_group(&self) -> BTreeMap<GroupId, Vec<u64>> {
        self.groups
            .iter()
            .map(|(group, replicas)| (GroupId(*group), replicas.clone()))
            .collect()
    }

    pub fn encode(&self) -> Vec<u8> {
        dura_codec::encode_as(Kind::Placement, VERSION, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, dura_codec::CodecError> {
        dura_codec::decode_as(Kind::Placement, VERSION, bytes)
    }

    /// The placement in `dir`, or (a new data directory, or one from a build that kept none,
    /// whose clusters had every member hold every shard) `proposed`, which is then kept there.
    pub fn keep(dir: &Path, proposed: Placement) -> anyhow::Result<Self> {
        let file = dir.join(PLACEMENT_FILE);
        match std::fs::read(&file) {
            Ok(bytes) => {
                let kept =
                    Self::decode(&bytes).with_context(|| format!("corrupt {}", file.display()))?;
                if kept != proposed {
                    tracing::warn!(
                        "the data directory's cluster was created with other members, shards \
                         or replication; keeping its placement"
                    );
                }
                Ok(kept)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)?;
                let tmp = dir.join(format!("{PLACEMENT_FILE}.tmp"));
                std::fs::write(&tmp, proposed.encode())?;
                std::fs::rename(&tmp, &file)?;
                Ok(proposed)
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_holds_every_shard_when_replication_equals_members() {
        let p = Placement::spread(&[3, 1, 2], 16, 3);
        for node in 1..=3 {
            assert_eq!(p.held_by(node).len(), 17);
        }
    }

    #[test]
    fn fewer_replicas_spread_evenly_on_distinct_nodes() {
        let p = Placement::spread(&[1, 2, 3, 4, 5], 20, 3);
        assert_eq!(p.by_group()[&GroupId::META], vec![1, 2, 3, 4, 5]);
        for (group, replicas) in p.by_group() {
            if group != GroupId::META {
                assert_eq!(replicas.len(), 3, "{group}");
            }
        }
        // 20 shards × 3 replicas over 5 nodes: 12 each, plus the metadata group.
        for node in 1..=5 {
            assert_eq!(p.held_by(node).len(), 13, "node {node}");
        }
    }

    #[test]
    fn the_kept_placement_wins_over_later_flags() {
        let dir = tempfile::tempdir().unwrap();
        let first = Placement::spread(&[1, 2, 3, 4], 8, 3);
        assert_eq!(Placement::keep(dir.path(), first.clone()).unwrap(), first);
        let later = Placement::spread(&[1, 2, 3, 4], 8, 4);
        assert_eq!(Placement::keep(dir.path(), later).unwrap(), first);
        let bytes = std::fs::read(dir.path().join(PLACEMENT_FILE)).unwrap();
        assert_eq!(Placement::decode(&bytes).unwrap(), first);
    }
}
