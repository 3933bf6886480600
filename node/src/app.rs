//! The state machine every Raft group runs: commands are routed by group to their owner.

use dura_raft_store::{Application, ApplyTxn, GroupId};

use crate::{
    namespace::{self, MetaCommand, MetaReply, NamespaceError},
    shard,
};

/// Dispatches committed commands to the component that owns the group's state: the metadata
/// group holds namespaces, every other group is a history shard.
#[derive(Debug, Default)]
pub struct NodeApplication;

impl Application for NodeApplication {
    fn apply(
        &self,
        group: GroupId,
        _index: u64,
        command: &[u8],
        txn: &mut ApplyTxn<'_>,
    ) -> Vec<u8> {
        if group == GroupId::META {
            let reply: MetaReply = match bincode::deserialize::<MetaCommand>(command) {
                Ok(command) => namespace::apply(txn, command),
                // Deterministic on every replica: a command this build cannot read is refused.
                Err(e) => Err(NamespaceError::Invalid(format!(
                    "undecodable metadata command: {e}"
                ))),
            };
            bincode::serialize(&reply).expect("metadata reply serializes")
        } else {
            bincode::serialize(&shard::apply(txn, command)).expect("shard reply serializes")
        }
    }

    fn on_snapshot_installed(&self, _group: GroupId) {
        // Nothing is cached outside the store: readers go to RocksDB, and the engine rebuilds
        // its task index from mutable state when it starts.
    }
}
