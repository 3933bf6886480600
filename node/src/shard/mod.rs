//! Shards: which shard owns a workflow or a task-queue partition, the commands a shard's Raft
//! log carries, and how a committed command is applied to the shard's state.
//!
//! A workflow command is applied by `dura_history::store` inside the Raft apply transaction, so
//! the new mutable state, the appended events, the current-run record and the outbox records
//! of its tasks commit atomically with the log position. Apply also returns the effects the
//! entry asks of the shard's leader (the transition's tasks, a changed schedule); only the
//! leader acts on them (see `leader`), and a new leader rebuilds them from the outbox, the
//! backlogs and mutable state alone. Backlog commands of the task-queue partitions the shard
//! owns are applied by `dura_matching::backlog`.

mod entry;

use dura_history::{
    HistoryError, RunReply, RunRequest,
    api::{
        signal::SignalRequest,
        start::{StartReply, StartWorkflowRequest},
    },
    keys::RunKey,
    limits::Limits,
    mutable_state::WorkflowStatus,
    outbox::{self, OutboxEntry},
    schedules::{self, ScheduleRecord, ScheduleRequest},
    store::{self, KvRead, KvWrite},
};
use dura_matching::{
    TaskKind, TaskQueueKey,
    backlog::{self, BacklogCommand, BacklogReply},
};
use dura_raft_store::{ApplyTxn, GroupId, StateReader};
pub use entry::{ENTRY_VERSION, EntryFormat, decode as decode_entry, encode as encode_entry};
use temporalio_protos::temporal::api::{enums::v1::EventType, history::v1::HistoryEvent};

use crate::leader::Effect;
use serde::{Deserialize, Serialize};

/// `hash(namespace id, workflow id) mod shards`, shard ids starting at 1 like Temporal's.
/// FNV-1a: stable across builds and platforms, which a routing function must be.
pub fn shard_for(namespace_id: &str, workflow_id: &str, shards: u32) -> GroupId {
    shard_of(
        &[namespace_id.as_bytes(), b"_", workflow_id.as_bytes()],
        shards,
    )
}

/// The shard owning a task queue's (single) partition: spread like workflows, by namespace,
/// kind and name. A workflow's shard and its queue's shard are usually different.
pub fn partition_shard(queue: &TaskQueueKey, shards: u32) -> GroupId {
    let kind: &[u8] = match queue.kind {
        TaskKind::Workflow => b"/workflow/",
        TaskKind::Activity => b"/activity/",
    };
    shard_of(
        &[queue.namespace_id.as_bytes(), kind, queue.name.as_bytes()],
        shards,
    )
}

fn shard_of(parts: &[&[u8]], shards: u32) -> GroupId {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in parts.iter().flat_map(|p| p.iter()) {
        hash ^= *byte as u32;
        hash = hash.wrapping_mul(0x0100_0193);
    }
    GroupId(hash % shards + 1)
}

/// Commands carried by a shard's Raft log.
// Serialized into the log right after construction; boxing the big variants buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShardCommand {
    Start(StartWorkflowRequest),
    SignalWithStart(StartWorkflowRequest, SignalRequest),
    Run {
        namespace_id: String,
        workflow_id: String,
        run_id: String,
        request: RunRequest,
    },
    /// These outbox records reached their task queue's backlog (or are no longer wanted).
    AckOutbox(Vec<OutboxEntry>),
    /// A change to the backlog of a task-queue partition this shard owns.
    Backlog(BacklogCommand),
    /// A change to a schedule this shard holds.
    Schedule {
        namespace_id: String,
        schedule_id: String,
        request: ScheduleRequest,
    },
    /// Work the leader of shard `source` in `term` does in this shard (a backlog add, a child
    /// start, a report to a parent). Refused (`ShardOutcome::Deposed`) once this shard applied
    /// a fenced command of a later term of `source`: a deposed leader's late dispatch cannot
    /// take effect after its successor's first one.
    Fenced {
        source: GroupId,
        term: u64,
        command: Box<ShardCommand>,
    },
}

/// `Lf<source shard BE>` → the highest term of that shard's leaders seen in fenced commands.
fn fence_key(source: GroupId) -> Vec<u8> {
    [&b"Lf"[..], &source.0.to_be_bytes()].concat()
}

impl ShardCommand {
    /// The workflow whose history the command changes: (namespace id, workflow id).
    pub fn workflow(&self) -> Option<(String, String)> {
        match self {
            ShardCommand::Start(req) | ShardCommand::SignalWithStart(req, _) => {
                Some((req.namespace_id.clone(), req.workflow_id.clone()))
            }
            ShardCommand::Run {
                namespace_id,
                workflow_id,
                ..
            } => Some((namespace_id.clone(), workflow_id.clone())),
            ShardCommand::Fenced { command, .. } => command.workflow(),
            ShardCommand::AckOutbox(_)
            | ShardCommand::Backlog(_)
            | ShardCommand::Schedule { .. } => None,
        }
    }
}

/// What a committed shard command produced.
// Built once per proposal and consumed right away; boxing the large reply buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShardOutcome {
    Started {
        reply: StartReply,
    },
    Run {
        run: RunKey,
        reply: RunReply,
    },
    OutboxAcked,
    Backlog(BacklogReply),
    /// The schedule after the request; `None` once deleted.
    Schedule(Option<ScheduleRecord>),
    /// A [`ShardCommand::Fenced`] of a deposed leader: nothing was applied.
    Deposed,
}

pub type ShardReply = Result<ShardOutcome, HistoryError>;

/// The Raft apply transaction seen through history's key/value traits.
pub struct TxnKv<'a, 'b> {
    txn: &'a mut ApplyTxn<'b>,
    /// Only when tracked (a time-skipping clock): every run written, and whether the server
    /// owes it work.
    runs: Option<Vec<(RunKey, bool)>>,
    /// How the runs this entry closed ended, with their namespace ids, for the leader's
    /// outcome metrics.
    closed: Vec<(String, WorkflowStatus)>,
}

impl KvRead for TxnKv<'_, '_> {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.txn.get(key)
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.txn.scan_prefix(prefix)
    }
}

impl KvWrite for TxnKv<'_, '_> {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.txn.put(key, value)
    }
    fn delete(&mut self, key: &[u8]) {
        self.txn.delete(key)
    }
    fn wrote_run(&mut self, ms: &dura_history::MutableState) {
        if let Some(runs) = &mut self.runs {
            let run = RunKey::new(&ms.namespace_id, &ms.workflow_id, &ms.run_id);
            runs.push((run, ms.owes_work()));
        }
    }
}

/// A shard's applied state, read outside the log (histories, describe, recovery).
pub struct ReaderKv(pub StateReader);

impl KvRead for ReaderKv {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        // A storage error here is an I/O failure of the local RocksDB; reads treat it as absent
        // and the caller's later proposal surfaces the real failure.
        self.0.get(key).ok().flatten()
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.0.scan_prefix(prefix).unwrap_or_default()
    }
    fn scan_range(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.0.scan_range(start, end, limit).unwrap_or_default()
    }
}

/// A shard's state to read: this node's replica, or a prefix of it that a node holding a
/// replica read (see `Engine::fresh_view`).
pub enum ShardView {
    Local(ReaderKv),
    Fetched(dura_history::store::MemKv),
}

impl KvRead for ShardView {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        match self {
            ShardView::Local(kv) => kv.get(key),
            ShardView::Fetched(kv) => kv.get(key),
        }
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        match self {
            ShardView::Local(kv) => kv.scan_prefix(prefix),
            ShardView::Fetched(kv) => kv.scan_prefix(prefix),
        }
    }
    fn scan_range(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        match self {
            ShardView::Local(kv) => kv.scan_range(start, end, limit),
            ShardView::Fetched(kv) => kv.scan_range(start, end, limit),
        }
    }
}

/// One applied shard command: the proposer's reply, the workflow it changed (whose watchers
/// are woken) and what it asks of the shard's leader.
pub struct Applied {
    pub reply: ShardReply,
    pub workflow: Option<(String, String)>,
    pub effects: Vec<Effect>,
    /// With `track_runs`: the runs written and whether the server owes each work.
    pub runs: Vec<(RunKey, bool)>,
    /// How the runs the entry closed ended, with their namespace ids.
    pub closed: Vec<(String, WorkflowStatus)>,
}

fn start_outcome(
    outcome: dura_history::api::start::StartOutcome,
    effects: &mut Vec<Effect>,
) -> ShardOutcome {
    // A run terminated by TERMINATE_EXISTING leaves no task behind; only the new run has some.
    if let Some(run) = outcome.new_run {
        let key = RunKey::new(
            &run.state.namespace_id,
            &run.state.workflow_id,
            &run.state.run_id,
        );
        effects.extend(run.tasks.into_iter().map(|t| Effect::Task(key.clone(), t)));
    }
    ShardOutcome::Started {
        reply: outcome.reply,
    }
}

/// Applies one committed shard command. Deterministic: state only through `txn`.
///
/// A panic in history's handlers becomes an INTERNAL reply for this one entry (see
/// `app::catch_apply_panic`); the handlers decide on copies and write only at the end.
pub fn apply(txn: &mut ApplyTxn<'_>, command: &[u8], track_runs: bool) -> Applied {
    let (command, limits) = match decode_entry(command) {
        Ok(decoded) => decoded,
        // Deterministic on every replica: a command this build cannot read is refused.
        Err(e) => {
            return Applied {
                reply: Err(HistoryError::Internal(format!(
                    "undecodable shard command: {e}"
                ))),
                workflow: None,
                effects: Vec::new(),
                runs: Vec::new(),
                closed: Vec::new(),
            };
        }
    };
    let workflow = command.workflow();
    let mut effects = Vec::new();
    let mut kv = TxnKv {
        txn,
        runs: track_runs.then(Vec::new),
        closed: Vec::new(),
    };
    let reply = panic_to_internal(|| apply_command(&mut kv, command, &limits, &mut effects));
    let mut runs = kv.runs.unwrap_or_default();
    let mut closed = kv.closed;
    if reply.is_err() {
        effects.clear();
        runs.clear();
        closed.clear();
    }
    Applied {
        reply,
        workflow,
        effects,
        runs,
        closed,
    }
}

/// How the run ends if `event` is its closing event.
fn closing_status(event: &HistoryEvent) -> Option<WorkflowStatus> {
    match EventType::try_from(event.event_type).ok()? {
        EventType::WorkflowExecutionCompleted => Some(WorkflowStatus::Completed),
        EventType::WorkflowExecutionFailed => Some(WorkflowStatus::Failed),
        EventType::WorkflowExecutionTimedOut => Some(WorkflowStatus::TimedOut),
        EventType::WorkflowExecutionTerminated => Some(WorkflowStatus::Terminated),
        EventType::WorkflowExecutionCanceled => Some(WorkflowStatus::Canceled),
        EventType::WorkflowExecutionContinuedAsNew => Some(WorkflowStatus::ContinuedAsNew),
        _ => None,
    }
}

fn panic_to_internal(f: impl FnOnce() -> ShardReply) -> ShardReply {
    crate::app::catch_apply_panic(f, |what| Err(HistoryError::Internal(what)))
}

fn apply_command(
    kv: &mut TxnKv,
    command: ShardCommand,
    limits: &Limits,
    effects: &mut Vec<Effect>,
) -> ShardReply {
    match command {
        ShardCommand::Start(req) => {
            store::start_workflow(kv, req).map(|o| start_outcome(o, effects))
        }
        ShardCommand::SignalWithStart(req, signal) => {
            store::signal_with_start(kv, req, signal).map(|o| start_outcome(o, effects))
        }
        ShardCommand::Run {
            namespace_id,
            workflow_id,
            run_id,
            request,
        } => {
            let applied =
                store::apply_to_run(kv, &namespace_id, &workflow_id, &run_id, request, limits)?;
            if let Some(status) = applied.transition.events.iter().find_map(closing_status) {
                kv.closed.push((namespace_id, status));
            }
            let run = applied.run;
            effects.extend(
                applied
                    .transition
                    .tasks
                    .into_iter()
                    .map(|t| Effect::Task(run.clone(), t)),
            );
            if let Some((key, new_run)) = applied.new_run {
                effects.extend(
                    new_run
                        .tasks
                        .into_iter()
                        .map(|t| Effect::Task(key.clone(), t)),
                );
            }
            Ok(ShardOutcome::Run {
                run,
                reply: applied.transition.reply,
            })
        }
        ShardCommand::AckOutbox(entries) => {
            outbox::ack(kv, &entries)?;
            Ok(ShardOutcome::OutboxAcked)
        }
        ShardCommand::Backlog(command) => {
            let added = match &command {
                BacklogCommand::Add { queue, task } => Some((queue.clone(), task.clone())),
                BacklogCommand::Complete(_) => None,
            };
            let reply = backlog::apply(kv.txn, command);
            if let (Some((queue, task)), BacklogReply::Added { seq, fresh: true }) = (added, &reply)
            {
                effects.push(Effect::Backlogged(backlog::BacklogTask {
                    queue,
                    seq: *seq,
                    task,
                }));
            }
            Ok(ShardOutcome::Backlog(reply))
        }
        ShardCommand::Schedule {
            namespace_id,
            schedule_id,
            request,
        } => {
            let record = schedules::apply(kv, &namespace_id, &schedule_id, request)?;
            effects.push(Effect::Schedule {
                namespace_id,
                schedule_id,
            });
            Ok(ShardOutcome::Schedule(record))
        }
        ShardCommand::Fenced {
            source,
            term,
            command,
        } => {
            let key = fence_key(source);
            let seen = kv
                .get(&key)
                .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                .map_or(0, u64::from_be_bytes);
            if term < seen {
                return Ok(ShardOutcome::Deposed);
            }
            if term > seen {
                kv.put(&key, &term.to_be_bytes());
            }
            apply_command(kv, *command, limits, effects)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fenced command is applied unless the shard already applied one of a later term of
    /// the same source shard; a refused one changes nothing.
    #[tokio::test]
    async fn a_deposed_leaders_fenced_command_is_refused() {
        use std::sync::Arc;

        use dura_raft_store::{Durability, RaftStore, StoreOptions};

        let dir = tempfile::tempdir().unwrap();
        let app = crate::app::NodeApplication {
            effects: Default::default(),
            clock: Default::default(),
            namespaces: Default::default(),
        };
        let store = RaftStore::open(
            StoreOptions {
                dir: dir.path().to_path_buf(),
                node_id: 1,
                advertise_addr: "127.0.0.1:0".into(),
                initial_members: Default::default(),
                groups: vec![GroupId(1)],
                placement: Default::default(),
                durability: Durability::Fsync,
                snapshot_every: 0,
                fault_injection: false,
                peer_tls: None,
            },
            Arc::new(app),
        )
        .await
        .unwrap();
        store
            .wait_for_leaders(std::time::Duration::from_secs(5))
            .await
            .unwrap();
        let fenced = |source: u32, term: u64, queue: &str| ShardCommand::Fenced {
            source: GroupId(source),
            term,
            command: Box::new(ShardCommand::Backlog(BacklogCommand::Add {
                queue: TaskQueueKey::new("ns", queue, TaskKind::Activity),
                task: queue.as_bytes().to_vec(),
            })),
        };
        let applied = async |command: ShardCommand| {
            let reply = tokio::time::timeout(
                std::time::Duration::from_secs(60),
                store.propose(
                    GroupId(1),
                    encode_entry(command, &Limits::none(), &EntryFormat::default()),
                ),
            )
            .await
            .expect("proposal hung")
            .unwrap();
            match bincode::deserialize::<ShardReply>(&reply).unwrap().unwrap() {
                ShardOutcome::Backlog(BacklogReply::Added { .. }) => true,
                ShardOutcome::Deposed => false,
                other => panic!("{other:?}"),
            }
        };
        assert!(applied(fenced(2, 5, "a")).await);
        assert!(!applied(fenced(2, 4, "late")).await, "an earlier term");
        assert!(applied(fenced(2, 5, "b")).await, "the same term");
        assert!(applied(fenced(2, 6, "c")).await, "a later term");
        assert!(!applied(fenced(2, 5, "late")).await, "deposed by term 6");
        assert!(
            applied(fenced(3, 1, "d")).await,
            "another source has its own fence"
        );
        let queues: Vec<String> = backlog::scan(&store.reader(GroupId(1)).unwrap())
            .unwrap()
            .into_iter()
            .map(|t| t.queue.name)
            .collect();
        assert_eq!(queues, ["a", "b", "c", "d"]);
        store.shutdown().await.unwrap();
    }

    #[test]
    fn a_panicking_handler_becomes_an_internal_reply() {
        let reply = panic_to_internal(|| panic!("invariant {} broken", 7));
        assert_eq!(
            reply.unwrap_err(),
            HistoryError::Internal("applying the command failed: invariant 7 broken".into())
        );
    }

    #[test]
    fn partition_routing_is_stable_and_spreads_queues() {
        let queue = |i: usize| TaskQueueKey::new("ns", format!("q{i}"), TaskKind::Workflow);
        assert_eq!(partition_shard(&queue(1), 8), partition_shard(&queue(1), 8));
        let spread: std::collections::HashSet<_> =
            (0..64).map(|i| partition_shard(&queue(i), 8)).collect();
        assert!(
            spread.len() > 4,
            "queues spread over the shards: {spread:?}"
        );
    }

    #[test]
    fn shard_routing_is_stable_and_in_range() {
        let shard = shard_for("ns", "wf-1", 4);
        assert_eq!(shard, shard_for("ns", "wf-1", 4));
        for i in 0..1000 {
            let GroupId(id) = shard_for("ns", &format!("wf-{i}"), 4);
            assert!((1..=4).contains(&id));
        }
    }
}
