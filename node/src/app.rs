//! The state machine every Raft group runs: commands are routed by group to their owner.

use dura_codec::Persisted;
use dura_raft_store::{Application, ApplyTxn, GroupId};

use std::sync::{Arc, OnceLock};

use crate::{
    clock::Clock,
    leader::AppliedEffects,
    namespace::{self, MetaCommand, MetaReply, NamespaceError, NamespaceRegistry},
    shard,
};

/// Dispatches committed commands to the component that owns the group's state: the metadata
/// group holds namespaces, every other group is a history shard. A shard entry's effects are
/// staged during apply and published once its batch is written (see `leader`).
pub struct NodeApplication {
    pub effects: Arc<AppliedEffects>,
    /// A time-skipping clock learns here which runs the server owes work to.
    pub clock: Clock,
    /// Namespace names for the outcome metrics' labels; set once the store (which this
    /// application is given to) is open.
    pub namespaces: Arc<OnceLock<NamespaceRegistry>>,
}

impl Application for NodeApplication {
    fn apply(
        &self,
        group: GroupId,
        _index: u64,
        command: &[u8],
        txn: &mut ApplyTxn<'_>,
    ) -> Vec<u8> {
        if group == GroupId::META {
            let reply: MetaReply = match MetaCommand::decode(command) {
                Ok(command) => catch_apply_panic(
                    || namespace::apply(txn, command),
                    |what| Err(NamespaceError::Internal(what)),
                ),
                // Deterministic on every replica: a command this build cannot read is refused.
                Err(e) => Err(NamespaceError::Internal(format!(
                    "undecodable metadata command: {e}"
                ))),
            };
            bincode::serialize(&reply).expect("metadata reply serializes")
        } else {
            let applied = shard::apply(txn, command, self.clock.tracks_runs());
            // Staged (holding the clock) before the runs are noted, so no moment in between
            // lets a time-skipping clock jump past a timer the entry arms.
            self.effects.stage(group, applied.workflow, applied.effects);
            for (run, owes_work) in applied.runs {
                self.clock.note_run(run, owes_work);
            }
            // Counted once, where the shard is led, as the real server's history service does.
            if !applied.closed.is_empty() && self.effects.leads(group) {
                for (namespace_id, status) in &applied.closed {
                    let namespace = self.namespaces.get().map_or_else(
                        || crate::metrics::UNKNOWN_NAMESPACE.to_string(),
                        |n| n.metric_label(namespace_id),
                    );
                    crate::metrics::workflow_closed(&namespace, *status);
                }
            }
            // Replies go only to the local proposer, never to disk or another node.
            bincode::serialize(&applied.reply).expect("shard reply serializes")
        }
    }

    fn after_apply(&self, group: GroupId) {
        self.effects.flush(group);
    }

    fn on_snapshot_installed(&self, group: GroupId) {
        tracing::info!(%group, "installed a snapshot of the group from its leader");
        // Nothing is cached outside the store: readers go to RocksDB, and a leader rebuilds
        // its work from committed state when its leadership starts.
    }
}

/// Runs one entry's apply; a panic becomes that entry's INTERNAL reply (`internal` gets the
/// message) instead of unwinding through the group's state machine, which would stop the whole
/// group — and, since the entry replays, stop it again after every restart. Handlers decide
/// before they write, so a panic leaves nothing half-written in the transaction.
pub fn catch_apply_panic<T>(f: impl FnOnce() -> T, internal: impl FnOnce(String) -> T) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(panic = %what, "applying a command panicked; answered INTERNAL");
        internal(format!("applying the command failed: {what}"))
    })
}
