//! Clean-up proposals — outbox acknowledgements and backlog completions — merged per shard.
//!
//! They are never on a caller's path, and losing one costs little: an outbox record left
//! behind is sent again after a restart (the backlog add is idempotent), and a backlog entry
//! left behind is refused as stale when it is handed out again, then completed. So they are
//! best effort and batched: while one round is in flight the next requests queue up (a full
//! queue drops them), and each round proposes at most one `AckOutbox` and one backlog `Complete` per shard.

use std::collections::BTreeMap;

use dura_history::outbox::OutboxEntry;
use dura_matching::{TaskQueueKey, backlog::BacklogCommand};
use dura_raft_store::GroupId;
use tokio::sync::mpsc;

use crate::{engine::Engine, shard::ShardCommand};

pub enum Cleanup {
    /// The task of this outbox record is safe in a backlog, or no longer wanted.
    AckOutbox(OutboxEntry),
    /// This backlog task (queue, sequence number) was started or found stale.
    CompleteBacklog(TaskQueueKey, u64),
}

#[derive(Default)]
struct Round {
    acks: Vec<OutboxEntry>,
    completions: Vec<(TaskQueueKey, u64)>,
}

/// How many clean-ups may wait for the next round; beyond that they are dropped (above).
pub const QUEUE_CAPACITY: usize = 65_536;

/// Proposes queued clean-ups, `(shard, what)`, in merged rounds until the sender goes away.
pub async fn run(engine: Engine, mut rx: mpsc::Receiver<(GroupId, Cleanup)>) {
    while let Some(first) = rx.recv().await {
        let mut rounds: BTreeMap<GroupId, Round> = BTreeMap::new();
        let mut next = Some(first);
        while let Some((shard, cleanup)) = next {
            let round = rounds.entry(shard).or_default();
            match cleanup {
                Cleanup::AckOutbox(entry) => round.acks.push(entry),
                Cleanup::CompleteBacklog(queue, seq) => round.completions.push((queue, seq)),
            }
            next = rx.try_recv().ok();
        }
        let proposals = rounds.into_iter().flat_map(|(shard, round)| {
            let acks = (!round.acks.is_empty()).then_some(ShardCommand::AckOutbox(round.acks));
            let completions = (!round.completions.is_empty()).then_some(ShardCommand::Backlog(
                BacklogCommand::Complete(round.completions),
            ));
            acks.into_iter()
                .chain(completions)
                .map(move |command| (shard, command))
        });
        let results = futures::future::join_all(proposals.map(|(shard, command)| {
            let engine = engine.clone();
            async move { (shard, engine.execute(shard, command).await) }
        }))
        .await;
        for (shard, result) in results {
            if let Err(e) = result {
                tracing::warn!(%shard, error = %e, "clean-up proposal failed; left for recovery");
            }
        }
    }
}
