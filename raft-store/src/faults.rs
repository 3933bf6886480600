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
/// Test-only, sent by the `dura` CLI of the same build: no other build needs to read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FaultRules {
    /// Peers this node's messages to are lost.
    pub drop_to: BTreeSet<u64>,
    /// Peers whose messages to this node are lost.
    pub drop_from: BTreeSet<u64>,
    /// Peers traffic to and from is held back by `delay_ms` first.
    pub delay: BTreeSet<u64>,
    /// Peers this node's messages to (not from) are held back by `delay_ms`: what it sends
    /// them, its Raft replication included, arrives late, while their requests to it are
    /// answered at once. A follower of a group this node leads then lags behind it.
    pub delay_to: BTreeSet<u64>,
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
        hold_back(self.verdict(peer, Direction::To)?).await;
        Ok(())
    }

    /// Lets a message from `peer` in (after its delay), or drops it.
    pub(crate) async fn incoming(&self, peer: u64) -> Result<(), Dropped> {
        hold_back(self.verdict(peer, Direction::From)?).await;
        Ok(())
    }

    /// What the rules do to one message: drop it, or hold it back for how long.
    fn verdict(&self, peer: u64, direction: Direction) -> Result<Option<Duration>, Dropped> {
        if !self.enabled {
            return Ok(None);
        }
        let rules = self.rules.read().unwrap_or_else(|e| e.into_inner());
        let (dropped, delayed_one_way) = match direction {
            Direction::To => (&rules.drop_to, rules.delay_to.contains(&peer)),
            Direction::From => (&rules.drop_from, false),
        };
        if dropped.contains(&peer) {
            return Err(Dropped {
                direction: direction.as_str(),
                peer,
            });
        }
        let delayed = rules.delay.contains(&peer) || delayed_one_way;
        Ok(delayed.then(|| Duration::from_millis(rules.delay_ms)))
    }
}

async fn hold_back(delay: Option<Duration>) {
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    To,
    From,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::To => "to",
            Direction::From => "from",
        }
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

    #[test]
    fn a_one_way_delay_holds_back_only_what_this_node_sends() {
        let on = Faults::new(true);
        on.set(FaultRules {
            delay: [4].into(),
            delay_to: [2].into(),
            delay_ms: 1500,
            ..Default::default()
        })
        .unwrap();
        let late = Some(Duration::from_millis(1500));
        assert_eq!(on.verdict(2, Direction::To).unwrap(), late);
        assert_eq!(on.verdict(2, Direction::From).unwrap(), None);
        assert_eq!(on.verdict(3, Direction::To).unwrap(), None);
        assert_eq!(on.verdict(4, Direction::To).unwrap(), late);
        assert_eq!(on.verdict(4, Direction::From).unwrap(), late);
    }
}
