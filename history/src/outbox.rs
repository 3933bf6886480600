//! The transactional outbox of a workflow shard.
//!
//! Every workflow or activity task a transition emits — and every child-workflow task, which
//! another shard must act on — is written as an [`OutboxRecord`] in the same apply as the
//! state change that made it, so a committed transition can never lose its task. The shard leader then moves each record to the task queue's partition (see
//! `node::engine`); the record goes away when
//! - the task is recorded started in this shard (same apply as `Record*TaskStarted`: a task
//!   sync-matched to a waiting poller costs no write beyond its own transition), or
//! - the partition acknowledged it into its durable backlog ([`ack`]), or the task turned out
//!   stale when a poller took it.
//!
//! One record per (run, kind, scheduled event id): a later attempt of the same task replaces
//! the earlier one, and [`ack`] removes a record only if it still names the acknowledged
//! attempt, so an acknowledgement that raced with a retry cannot drop the retry.

use dura_codec::{Kind, Persisted};
use serde::{Deserialize, Serialize};

use crate::{
    error::{HistoryError, Result},
    keys::{self, RunKey},
    store::{KvRead, KvWrite},
    tasks::Task,
};

/// Which of a run's tasks an outbox record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OutboxKind {
    WorkflowTask,
    ActivityTask,
    StartChild,
    NotifyParent,
    ParentClosePolicy,
    SignalExternal,
    CancelExternal,
}

impl OutboxKind {
    fn key_byte(self) -> u8 {
        match self {
            OutboxKind::WorkflowTask => b'w',
            OutboxKind::ActivityTask => b'a',
            OutboxKind::StartChild => b'c',
            OutboxKind::NotifyParent => b'n',
            OutboxKind::ParentClosePolicy => b'p',
            OutboxKind::SignalExternal => b's',
            OutboxKind::CancelExternal => b'x',
        }
    }
}

/// A task waiting to reach its task queue (or, for child workflows and signals or cancels of
/// other workflows, the other shard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRecord {
    pub run: RunKey,
    /// Any task but a timer.
    pub task: Task,
}

/// Names one attempt of one task: what an acknowledgement carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub run: RunKey,
    pub kind: OutboxKind,
    /// The event the task belongs to: scheduled (workflow/activity task), initiated (start
    /// child, parent close policy) or the run's close event (notify parent).
    pub scheduled_event_id: i64,
    pub attempt: i32,
    /// Workflow tasks only (0 for the others).
    pub stamp: i32,
}

impl OutboxEntry {
    /// The entry of a dispatch task; `None` for tasks that never pass the outbox (timers).
    pub fn of(run: &RunKey, task: &Task) -> Option<OutboxEntry> {
        let (kind, scheduled_event_id, attempt, stamp) = match task {
            Task::WorkflowTask(t) => (
                OutboxKind::WorkflowTask,
                t.scheduled_event_id,
                t.attempt,
                t.stamp,
            ),
            Task::ActivityTask(t) => (OutboxKind::ActivityTask, t.scheduled_event_id, t.attempt, 0),
            Task::StartChild { initiated_event_id } => {
                (OutboxKind::StartChild, *initiated_event_id, 0, 0)
            }
            Task::NotifyParent {
                completion_event_id,
            } => (OutboxKind::NotifyParent, *completion_event_id, 0, 0),
            Task::ParentClosePolicy(p) => {
                (OutboxKind::ParentClosePolicy, p.initiated_event_id, 0, 0)
            }
            Task::SignalExternal { initiated_event_id } => {
                (OutboxKind::SignalExternal, *initiated_event_id, 0, 0)
            }
            Task::CancelExternal { initiated_event_id } => {
                (OutboxKind::CancelExternal, *initiated_event_id, 0, 0)
            }
            Task::Timer(_) => return None,
        };
        Some(OutboxEntry {
            run: run.clone(),
            kind,
            scheduled_event_id,
            attempt,
            stamp,
        })
    }

    fn key(&self) -> Vec<u8> {
        keys::outbox(&self.run, self.kind.key_byte(), self.scheduled_event_id)
    }
}

fn corrupt(e: impl std::fmt::Display) -> HistoryError {
    HistoryError::Internal(format!("corrupt outbox record: {e}"))
}

/// Records every dispatch task among `tasks` (timers live in mutable state instead).
pub fn write(kv: &mut impl KvWrite, run: &RunKey, tasks: &[Task]) -> Result<()> {
    for task in tasks {
        if let Some(entry) = OutboxEntry::of(run, task) {
            let record = OutboxRecord {
                run: run.clone(),
                task: task.clone(),
            };
            kv.put(&entry.key(), &record.encode());
        }
    }
    Ok(())
}

/// The task was recorded started (for a child: its start recorded in the parent): whatever
/// attempt the outbox still holds for it is done.
pub fn remove_started(
    kv: &mut impl KvWrite,
    run: &RunKey,
    kind: OutboxKind,
    scheduled_event_id: i64,
) {
    kv.delete(&keys::outbox(run, kind.key_byte(), scheduled_event_id));
}

/// Removes the records still naming these attempts; records replaced by a later attempt stay.
/// Returns how many were removed.
pub fn ack(kv: &mut impl KvWrite, entries: &[OutboxEntry]) -> Result<usize> {
    let mut removed = 0;
    for entry in entries {
        let key = entry.key();
        let Some(value) = kv.get(&key) else { continue };
        let record = OutboxRecord::decode(&value).map_err(corrupt)?;
        if OutboxEntry::of(&record.run, &record.task).as_ref() == Some(entry) {
            kv.delete(&key);
            removed += 1;
        }
    }
    Ok(removed)
}

/// Every record of the shard (what a new leader must dispatch).
pub fn scan(kv: &impl KvRead) -> Result<Vec<OutboxRecord>> {
    kv.scan_prefix(&keys::outbox_prefix())
        .into_iter()
        .map(|(_, v)| OutboxRecord::decode(&v).map_err(corrupt))
        .collect()
}

impl Persisted for OutboxRecord {
    const KIND: Kind = Kind::OutboxRecord;
}
