//! Network faults injected on purpose, for failover tests: a node told to drop or delay the
//! traffic to or from some peers behaves as if the network between them were cut or slow.
//!
//! Off unless the store was opened with `fault_injection` (the node's
//! `--enable-fault-injection`, which it refuses on a non-loopback peer address): then the peer
//! service takes [`FaultRules`] from [`set_peer_faults`], replacing the rules it had. A rule
//! applies to every group's Raft messages and to forwarded proposals and read indexes alike,
//! checked where this node sends (to a peer) and where it receives (from a peer), so one node's
//! rules are enough to cut it off in both directions, or in one.

use std::collections::BTreeSet;
use std::sync::RwLock;
use std::time::Duration;

/// What one node does to its peer traffic. The default (empty) rules are a healthy network.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FaultRules {
    /// Peers this node's messages to are lost.
    pub drop_to: BTreeSet<u64>,
    /// Peers whose messages to this node are lost.
    pub drop_from: BTreeSet<u64>,
    /// Peers traffic to and from is held back by `delay_ms` first.
    pub delay: BTreeSet<u64>,
    pub delay_ms: u64,
}

/// The rules in force on this node, if fault injection is enabled at all.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    enabled: bool,
    rules: RwLock<FaultRules>,
}

/// Why a message did not go through: the rules dropped it.
#[derive(Debug, thiserror::Error)]
#[error("fault injection drops traffic {direction} node {peer}")]
pub(crate) struct Dropped {
    direction: &'static str,
    peer: u64,
}

impl Faults {
    pub(crate) fn new(enabled: bool) -> Self {
        Faults {
            enabled,
            rules: RwLock::default(),
        }
    }

    pub(crate) fn set(&self, rules: FaultRules) -> Result<(), &'static str> {
        if !self.enabled {
            return Err("fault injection is off: start the node with --enable-fault-injection");
        }
        tracing::warn!(?rules, "fault injection rules replaced");
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = rules;
        Ok(())
    }

    /// Lets a message to `peer` go (after its delay), or drops it.
    pub(crate) async fn outgoing(&self, peer: u64) -> Result<(), Dropped> {
        self.pass(peer, "to", |r| &r.drop_to).await
    }

    /// Lets a message from `peer` in (after its delay), or drops it.
    pub(crate) async fn incoming(&self, peer: u64) -> Result<(), Dropped> {
        self.pass(peer, "from", |r| &r.drop_from).await
    }

    async fn pass(
        &self,
        peer: u64,
        direction: &'static str,
        dropped: impl Fn(&FaultRules) -> &BTreeSet<u64>,
    ) -> Result<(), Dropped> {
        if !self.enabled {
            return Ok(());
        }
        let delay = {
            let rules = self.rules.read().unwrap_or_else(|e| e.into_inner());
            if dropped(&rules).contains(&peer) {
                return Err(Dropped { direction, peer });
            }
            rules.delay.contains(&peer).then_some(rules.delay_ms)
        };
        if let Some(ms) = delay {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rules_drop_by_direction_and_are_refused_when_disabled() {
        let off = Faults::new(false);
        assert!(off.set(FaultRules::default()).is_err());
        assert!(off.outgoing(2).await.is_ok());

        let on = Faults::new(true);
        on.set(FaultRules {
            drop_to: [2].into(),
            drop_from: [3].into(),
            ..Default::default()
        })
        .unwrap();
        assert!(on.outgoing(2).await.is_err());
        assert!(on.incoming(2).await.is_ok());
        assert!(on.outgoing(3).await.is_ok());
        assert!(on.incoming(3).await.is_err());
        on.set(FaultRules::default()).unwrap();
        assert!(on.outgoing(2).await.is_ok());
    }
}
