//! The durable backlog of the task-queue partitions a shard owns.
//!
//! A task queue's partition lives in one shard's Raft group (chosen by the node's routing), so
//! its backlog is replicated like everything else. Tasks reach it from the workflow shards'
//! outboxes only when no poller was waiting (a sync match writes nothing here). The shard
//! leader keeps an in-memory index of its partitions' backlogs in the [`crate::Matcher`] and
//! rebuilds it with [`scan`].
//!
//! # Invariants
//! - **Idempotent add.** A task's bytes identify it: adding the same bytes to the same queue
//!   again returns the first add's sequence number with `fresh: false`, so an outbox record
//!   re-sent after a crash does not queue the task twice.
//! - **FIFO.** Sequence numbers grow per shard; a queue's entries scan in add order.
//! - **Removed only when done.** [`BacklogCommand::Complete`] is proposed after the task was
//!   recorded started in its workflow's shard, or found no longer wanted there.
//!
//! Keys (inside the shard's state, prefix `M`): `Mb ‖ queue ‖ seq BE` → task bytes,
//! `Md ‖ queue ‖ task bytes` → seq BE, `Mn` → the next seq. A queue is encoded as
//! `len ‖ namespace id ‖ kind byte ‖ len ‖ name`.

use dura_raft_store::{ApplyTxn, StateReader};
use serde::{Deserialize, Serialize};

use crate::{TaskKind, TaskQueueKey};

const BACKLOG: &[u8] = b"Mb";
const DEDUP: &[u8] = b"Md";
const NEXT_SEQ: &[u8] = b"Mn";

/// A change to a partition's backlog, carried by the owning shard's Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BacklogCommand {
    /// Queue a task (opaque bytes that identify it) at the back of `queue`.
    Add { queue: TaskQueueKey, task: Vec<u8> },
    /// These tasks (queue, sequence number) are done with.
    Complete(Vec<(TaskQueueKey, u64)>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BacklogReply {
    /// `fresh` is false when the task was already queued (under `seq`).
    Added {
        seq: u64,
        fresh: bool,
    },
    Completed,
}

/// One queued task, as [`scan`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BacklogTask {
    pub queue: TaskQueueKey,
    pub seq: u64,
    pub task: Vec<u8>,
}

fn push_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn queue_key(space: &[u8], queue: &TaskQueueKey) -> Vec<u8> {
    let mut k = space.to_vec();
    push_str(&mut k, &queue.namespace_id);
    k.push(match queue.kind {
        TaskKind::Workflow => b'w',
        TaskKind::Activity => b'a',
    });
    push_str(&mut k, &queue.name);
    k
}

fn backlog_key(queue: &TaskQueueKey, seq: u64) -> Vec<u8> {
    let mut k = queue_key(BACKLOG, queue);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn dedup_key(queue: &TaskQueueKey, task: &[u8]) -> Vec<u8> {
    let mut k = queue_key(DEDUP, queue);
    k.extend_from_slice(task);
    k
}

fn decode_backlog_key(key: &[u8]) -> Option<(TaskQueueKey, u64)> {
    fn str(rest: &mut &[u8]) -> Option<String> {
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let s = String::from_utf8(rest.get(4..4 + len)?.to_vec()).ok()?;
        *rest = &rest[4 + len..];
        Some(s)
    }
    let mut rest = key.strip_prefix(BACKLOG)?;
    let namespace_id = str(&mut rest)?;
    let (&kind, tail) = rest.split_first()?;
    rest = tail;
    let kind = match kind {
        b'w' => TaskKind::Workflow,
        b'a' => TaskKind::Activity,
        _ => return None,
    };
    let name = str(&mut rest)?;
    let seq = u64::from_be_bytes(rest.try_into().ok()?);
    Some((
        TaskQueueKey {
            namespace_id,
            name,
            kind,
        },
        seq,
    ))
}

fn read_u64(value: Option<Vec<u8>>) -> Option<u64> {
    Some(u64::from_be_bytes(value?.as_slice().try_into().ok()?))
}

/// Applies one committed backlog command. Deterministic: state only through `txn`.
pub fn apply(txn: &mut ApplyTxn<'_>, command: BacklogCommand) -> BacklogReply {
    match command {
        BacklogCommand::Add { queue, task } => {
            let dedup = dedup_key(&queue, &task);
            if let Some(seq) = read_u64(txn.get(&dedup)) {
                return BacklogReply::Added { seq, fresh: false };
            }
            let seq = read_u64(txn.get(NEXT_SEQ)).unwrap_or(1);
            txn.put(NEXT_SEQ, &(seq + 1).to_be_bytes());
            txn.put(&backlog_key(&queue, seq), &task);
            txn.put(&dedup, &seq.to_be_bytes());
            BacklogReply::Added { seq, fresh: true }
        }
        BacklogCommand::Complete(tasks) => {
            for (queue, seq) in tasks {
                let key = backlog_key(&queue, seq);
                if let Some(task) = txn.get(&key) {
                    txn.delete(&dedup_key(&queue, &task));
                    txn.delete(&key);
                }
            }
            BacklogReply::Completed
        }
    }
}

/// Every queued task of the shard's partitions, each queue's in FIFO order.
pub fn scan(reader: &StateReader) -> Result<Vec<BacklogTask>, dura_raft_store::Error> {
    Ok(reader
        .scan_prefix(BACKLOG)?
        .into_iter()
        .filter_map(|(key, task)| {
            let (queue, seq) = decode_backlog_key(&key)?;
            Some(BacklogTask { queue, seq, task })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_keys_round_trip_and_keep_queues_apart() {
        let q = TaskQueueKey::new("ns", "queue", TaskKind::Activity);
        assert_eq!(
            decode_backlog_key(&backlog_key(&q, 7)),
            Some((q.clone(), 7))
        );
        assert!(backlog_key(&q, 2) < backlog_key(&q, 10));
        let longer = TaskQueueKey::new("ns", "queue2", TaskKind::Activity);
        let workflow = TaskQueueKey::new("ns", "queue", TaskKind::Workflow);
        let prefix = queue_key(BACKLOG, &q);
        assert!(!backlog_key(&longer, 1).starts_with(&prefix));
        assert!(!backlog_key(&workflow, 1).starts_with(&prefix));
    }
}
