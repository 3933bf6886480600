//! The shards' engine: proposes shard commands, and — for the shards this node leads (see
//! `leader`) — carries out the effects their committed entries ask for: workflow and activity
//! tasks from the outbox to their task queue, child-workflow work to `transfers`, timers to
//! the shard's timer service, schedules to the scheduler.
//!
//! A task travels from its workflow shard's outbox to its queue (`deliver`): to a poller
//! waiting right now (sync match: no write beyond the transition that made the task, whose
//! `Record*TaskStarted` removes the outbox record), else into the matcher's in-memory queue,
//! and from there — if no poller takes it within [`SPILL_AFTER`] — into the durable backlog
//! of the queue's partition shard, after which the outbox record is acknowledged. Sticky
//! queues are in memory only: an unloaded sticky queue's tasks move to their normal queue, and
//! one lost in a crash is covered by its schedule-to-start timeout.
//!
//! Nothing here is the only copy of anything: [`Engine::recover_shard`] rebuilds a new leader's
//! work from its partitions' backlogs, its outbox and the timers in its mutable state. A
//! task handed out twice is harmless too: `Record*TaskStarted` accepts a task once, and stale
//! tasks are rejected by the ids and stamps they carry.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use dura_codec::{Kind, Persisted};
use dura_history::{
    MutableState, RunReply, Task,
    api::{RunRequest, timer::FireTimerRequest},
    keys::RunKey,
    limits::Limits,
    outbox::{self, OutboxEntry, OutboxKind, OutboxRecord},
    pending_tasks,
    store::{self, MemKv},
    tasks::TaskQueueRef,
    time::Nanos,
};
use dura_matching::{
    Matcher, TaskKind, TaskQueueKey,
    backlog::{self, BacklogCommand, BacklogReply},
};
use dura_raft_store::{GroupId, RaftStore};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{
    cleanup::{self, Cleanup},
    clock::Clock,
    error::{ApiError, ApiResult},
    leader::{AppliedEffects, Effect, Fence, ShardLeader, WorkflowWatch},
    metrics::TASK_DISPATCH,
    namespace::NamespaceRegistry,
    scheduler::Scheduler,
    shard::{
        self, EntryFormat, ReaderKv, ShardCommand, ShardOutcome, ShardReply, ShardView,
        partition_shard, shard_for,
    },
    transfers,
};

/// How long a task may wait in the matcher, durable only as its outbox record, before it is
/// moved into its partition's backlog. A task a poller takes sooner costs no backlog write.
const SPILL_AFTER: Duration = Duration::from_secs(1);
/// A sticky queue whose worker has not polled for this long is treated as gone (Temporal: 10 s).
const STICKY_POLLER_WINDOW: Duration = Duration::from_secs(10);
/// How long a proposal the engine makes on its own (a timer, a backlog add) waits before it is
/// tried again after the proposal itself failed.
const RETRY_BACKOFF: Duration = Duration::from_secs(1);

/// What the matcher holds: enough to find the run and name the exact task instance.
#[derive(Debug, Clone)]
pub struct QueuedTask {
    /// The workflow's shard.
    pub shard: GroupId,
    pub run: RunKey,
    pub scheduled_event_id: i64,
    pub attempt: i32,
    pub stamp: i32,
    pub origin: TaskOrigin,
    /// For a task in a sticky queue, which only this node's matcher holds (it is never
    /// spilled to a backlog): the run's normal queue, where it moves when the sticky queue is
    /// unloaded, so it is not left to its schedule-to-start timeout.
    pub normal_queue: Option<String>,
}

/// Where the durable copy of a task in the matcher is.
#[derive(Debug, Clone)]
pub enum TaskOrigin {
    /// Its workflow shard's outbox; the task may be on its way into its partition's backlog.
    Outbox(Arc<Spill>),
    /// The backlog of its queue's partition: (partition shard, sequence number).
    Backlog(GroupId, u64),
    /// A query riding on a workflow task queue (see `frontend::queries`): nothing durable.
    Query(u64),
}

/// The move of a queued task from its outbox record into its partition's backlog, shared by
/// the task in the matcher and the delayed spill, which race: whichever comes second cleans up.
#[derive(Debug, Default)]
pub struct Spill(Mutex<SpillState>);

#[derive(Debug, Default)]
struct SpillState {
    /// A poller took the task (it was started or found stale): no backlog entry is wanted.
    taken: bool,
    /// The backlog entry the spill made: (partition shard, sequence number).
    backlog: Option<(GroupId, u64)>,
}

impl Spill {
    fn lock(&self) -> std::sync::MutexGuard<'_, SpillState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A task's identity as its partition's backlog stores it.
#[derive(Serialize, Deserialize)]
struct BacklogTask {
    shard: GroupId,
    run: RunKey,
    scheduled_event_id: i64,
    attempt: i32,
    stamp: i32,
}

impl Persisted for BacklogTask {
    const KIND: Kind = Kind::BacklogTask;
}

impl QueuedTask {
    fn of_record(shard: GroupId, record: &OutboxRecord) -> Option<QueuedTask> {
        let entry = OutboxEntry::of(&record.run, &record.task)?;
        Some(QueuedTask {
            shard,
            run: entry.run,
            scheduled_event_id: entry.scheduled_event_id,
            attempt: entry.attempt,
            stamp: entry.stamp,
            origin: TaskOrigin::Outbox(Arc::default()),
            normal_queue: None,
        })
    }

    fn backlog_bytes(&self) -> Vec<u8> {
        BacklogTask {
            shard: self.shard,
            run: self.run.clone(),
            scheduled_event_id: self.scheduled_event_id,
            attempt: self.attempt,
            stamp: self.stamp,
        }
        .encode()
    }

    fn from_backlog(partition: GroupId, queued: backlog::BacklogTask) -> Option<QueuedTask> {
        let task = BacklogTask::decode(&queued.task).ok()?;
        Some(QueuedTask {
            shard: task.shard,
            run: task.run,
            scheduled_event_id: task.scheduled_event_id,
            attempt: task.attempt,
            stamp: task.stamp,
            origin: TaskOrigin::Backlog(partition, queued.seq),
            normal_queue: None,
        })
    }

    fn outbox_entry(&self, kind: TaskKind) -> OutboxEntry {
        OutboxEntry {
            run: self.run.clone(),
            kind: match kind {
                TaskKind::Workflow => OutboxKind::WorkflowTask,
                TaskKind::Activity => OutboxKind::ActivityTask,
            },
            scheduled_event_id: self.scheduled_event_id,
            attempt: self.attempt,
            stamp: self.stamp,
        }
    }
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: RaftStore,
    shards: u32,
    matcher: Matcher<QueuedTask>,
    cleanups: mpsc::Sender<(GroupId, Cleanup)>,
    scheduler: Scheduler,
    effects: Arc<AppliedEffects>,
    clock: Clock,
    /// For the `namespace` label of the leader work's metrics.
    namespaces: NamespaceRegistry,
    /// What the members read, so what this node may write into shard logs.
    entry_format: EntryFormat,
    /// What runs are held to (`limit.*`): logged with every run command this node proposes.
    limits: Limits,
}

/// Failpoint `outbox-ack`: a test loses the acknowledgement of an outbox record whose task
/// is already in its partition's backlog, as a node that died in between would (see
/// `failpoint_tests`).
fn ack_lost() -> bool {
    fail::fail_point!("outbox-ack", |_| true);
    false
}

/// Failpoint `timer-fire-refused`: a test has a timer's fire refused as `NotLeader` while
/// this node still leads the shard, as openraft refuses writes while a leader's lease has
/// lapsed (see `failpoint_tests`).
fn fire_refused() -> bool {
    fail::fail_point!("timer-fire-refused", |_| true);
    false
}

impl Engine {
    /// `effects` is the channel from the store's state machine (`app::NodeApplication`).
    pub fn new(
        store: RaftStore,
        shards: u32,
        effects: Arc<AppliedEffects>,
        clock: Clock,
        namespaces: NamespaceRegistry,
        limits: Limits,
    ) -> Self {
        let (cleanups, cleanup_rx) = mpsc::channel(cleanup::QUEUE_CAPACITY);
        let engine = Engine {
            inner: Arc::new(Inner {
                store,
                shards,
                matcher: Matcher::new(),
                cleanups,
                scheduler: Scheduler::default(),
                effects,
                clock,
                namespaces,
                entry_format: EntryFormat::default(),
                limits,
            }),
        };
        tokio::spawn(cleanup::run(engine.clone(), cleanup_rx));
        engine
    }

    pub fn node_id(&self) -> u64 {
        self.inner.store.node_id()
    }

    pub(crate) fn store(&self) -> &RaftStore {
        &self.inner.store
    }

    pub(crate) fn effects(&self) -> &Arc<AppliedEffects> {
        &self.inner.effects
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    pub(crate) fn entry_format(&self) -> &EntryFormat {
        &self.inner.entry_format
    }

    /// The `namespace` label of a metric about namespace `namespace_id`.
    pub(crate) fn namespace_label(&self, namespace_id: &str) -> String {
        self.inner.namespaces.metric_label(namespace_id)
    }

    /// Now, as commands carry it: time enters the log here, never in apply.
    pub fn now(&self) -> Nanos {
        self.inner.clock.now()
    }

    pub fn shard_for(&self, namespace_id: &str, workflow_id: &str) -> GroupId {
        shard_for(namespace_id, workflow_id, self.inner.shards)
    }

    /// Every history shard (ids start at 1).
    pub fn shard_ids(&self) -> impl Iterator<Item = GroupId> + use<> {
        (1..=self.inner.shards).map(GroupId)
    }

    pub fn matcher(&self) -> &Matcher<QueuedTask> {
        &self.inner.matcher
    }

    pub(crate) fn scheduler(&self) -> &Scheduler {
        &self.inner.scheduler
    }

    /// Waits until this node's replica of the shard holds every write acknowledged before the
    /// call, wherever it was made: what a client read must see (see `router`).
    pub async fn read_barrier(&self, shard: GroupId) -> ApiResult<()> {
        crate::router::read_barrier(&self.inner.store, shard).await
    }

    /// The shard's applied state, for reads: current for the shard's leader's own work, and
    /// for a client read after [`Engine::read_barrier`].
    pub fn reader(&self, shard: GroupId) -> ApiResult<ReaderKv> {
        Ok(ReaderKv(self.inner.store.reader(shard)?))
    }

    /// Whether this node holds a replica of `shard` (every node does unless the cluster
    /// places fewer replicas than members).
    pub fn holds(&self, shard: GroupId) -> bool {
        self.inner.store.hosts(shard)
    }

    /// The shard's state under `prefix` as of now, wherever it was written: this node's
    /// replica after a read barrier, or what a node holding one read there.
    pub async fn fresh_view(&self, shard: GroupId, prefix: &[u8]) -> ApiResult<ShardView> {
        if self.holds(shard) {
            self.read_barrier(shard).await?;
            return Ok(ShardView::Local(self.reader(shard)?));
        }
        Ok(ShardView::Fetched(self.fetch(shard, prefix).await?))
    }

    /// The pairs of `shard` under `prefix` as a node holding a replica reads them now.
    pub async fn fetch(&self, shard: GroupId, prefix: &[u8]) -> ApiResult<MemKv> {
        let pairs = crate::router::scan_prefix(&self.inner.store, shard, prefix).await?;
        Ok(MemKv(pairs.into_iter().collect()))
    }

    /// A run (the current one when `run_id` is empty) as of now, wherever it was written: from
    /// this node's replica after a read barrier, or, when this node holds no replica of its
    /// shard, as a node holding one reads it. Without the barrier a lagging follower replica
    /// would answer for a shard whose leader is elsewhere, and a leader's work deciding on it
    /// (a parent close policy) could find a running child missing.
    pub async fn read_run_anywhere(
        &self,
        namespace_id: &str,
        workflow_id: &str,
        run_id: &str,
    ) -> ApiResult<(RunKey, MutableState)> {
        let shard = self.shard_for(namespace_id, workflow_id);
        if self.holds(shard) {
            self.read_barrier(shard).await?;
            let reader = self.reader(shard)?;
            return Ok(store::resolve_run(
                &reader,
                namespace_id,
                workflow_id,
                run_id,
            )?);
        }
        let mut kv = MemKv::default();
        let mut resolved = run_id.to_string();
        if run_id.is_empty() {
            let current = dura_history::keys::current_execution(namespace_id, workflow_id);
            kv.0.extend(self.fetch(shard, &current).await?.0);
            if let Some(c) = store::read_current(&kv, namespace_id, workflow_id)? {
                resolved = c.run_id;
            }
        }
        let run = RunKey::new(namespace_id, workflow_id, &resolved);
        kv.0.extend(
            self.fetch(shard, &dura_history::keys::mutable_state(&run))
                .await?
                .0,
        );
        Ok(store::resolve_run(&kv, namespace_id, workflow_id, run_id)?)
    }

    pub fn watch_workflow(&self, namespace_id: &str, workflow_id: &str) -> WorkflowWatch {
        self.inner.effects.watch_workflow(namespace_id, workflow_id)
    }

    /// Proposes a command to the shard and returns its outcome once it is committed and
    /// applied. What the entry asks for beyond the reply is the shard leader's to carry out,
    /// from the applied entry (see `leader`): this call may be cancelled at any point.
    pub async fn execute(&self, shard: GroupId, command: ShardCommand) -> ApiResult<ShardOutcome> {
        let entry = shard::encode_entry(command, &self.inner.limits, &self.inner.entry_format);
        let reply = self.propose(shard, entry).await?;
        let reply: ShardReply =
            bincode::deserialize(&reply).map_err(|e| ApiError::Internal(e.to_string()))?;
        answered(reply?)
    }

    async fn propose(&self, shard: GroupId, command: Vec<u8>) -> ApiResult<Vec<u8>> {
        crate::router::propose(&self.inner.store, shard, command).await
    }

    /// Applies a run-scoped request.
    pub async fn execute_run(&self, run: &RunKey, request: RunRequest) -> ApiResult<ShardOutcome> {
        let (shard, command) = self.run_command(run, request);
        self.execute(shard, command).await
    }

    /// Applies a run-scoped request of a shard leader's work, fenced by its leadership.
    pub(crate) async fn execute_run_as(
        &self,
        fence: Fence,
        run: &RunKey,
        request: RunRequest,
    ) -> ApiResult<ShardOutcome> {
        let (shard, command) = self.run_command(run, request);
        self.execute_as(fence, shard, command).await
    }

    /// Applies a command of a shard leader's work, fenced by its leadership (see [`Fence`]):
    /// a deposed leader's proposal answers `NotLeader`.
    pub(crate) async fn execute_as(
        &self,
        fence: Fence,
        shard: GroupId,
        command: ShardCommand,
    ) -> ApiResult<ShardOutcome> {
        let outcome = if shard == fence.shard {
            let reply = self
                .inner
                .store
                .propose_in_term(
                    shard,
                    fence.term,
                    shard::encode_entry(command, &self.inner.limits, &self.inner.entry_format),
                )
                .await?;
            let reply: ShardReply =
                bincode::deserialize(&reply).map_err(|e| ApiError::Internal(e.to_string()))?;
            reply?
        } else {
            let fenced = ShardCommand::Fenced {
                source: fence.shard,
                term: fence.term,
                command: Box::new(command),
            };
            self.execute(shard, fenced).await?
        };
        match outcome {
            ShardOutcome::Deposed => Err(ApiError::NotLeader {
                group: fence.shard,
                leader: None,
            }),
            outcome => answered(outcome),
        }
    }

    /// Whether this node still leads the fence's shard in its term.
    pub(crate) fn is_current(&self, fence: Fence) -> bool {
        self.inner.store.leader_term(fence.shard) == Some(fence.term)
    }

    fn run_command(&self, run: &RunKey, request: RunRequest) -> (GroupId, ShardCommand) {
        let shard = self.shard_for(&run.namespace_id, &run.workflow_id);
        let command = ShardCommand::Run {
            namespace_id: run.namespace_id.clone(),
            workflow_id: run.workflow_id.clone(),
            run_id: run.run_id.clone(),
            request,
        };
        (shard, command)
    }

    /// Carries out one effect of an entry `leader`'s shard applied.
    pub(crate) fn dispatch(&self, leader: &ShardLeader, effect: Effect) {
        match effect {
            Effect::Task(run, Task::Timer(timer)) => {
                leader.timers.arm(run, timer);
            }
            Effect::Task(run, task) => self.deliver(leader, OutboxRecord { run, task }, false),
            Effect::Schedule {
                namespace_id,
                schedule_id,
            } => self.arm_schedule(leader, &namespace_id, &schedule_id),
            Effect::Backlogged(queued) => self.index_backlogged(leader.shard, queued),
        }
    }

    /// Indexes a task that joined the backlog of a partition `partition` owns. A task spilled
    /// from this node's own matcher is then indexed twice; the copy handed out second is
    /// refused as stale when it is recorded started, and costs its poller one more look.
    fn index_backlogged(&self, partition: GroupId, queued: backlog::BacklogTask) {
        let queue = queued.queue.clone();
        match QueuedTask::from_backlog(partition, queued) {
            Some(task) => self.inner.matcher.add(&queue, task),
            None => tracing::error!(%partition, ?queue, "undecodable backlog task"),
        }
    }

    /// Whether this node leads the shard owning `queue`'s partition, so its tasks belong in
    /// this node's matcher (and its polls are served here).
    pub(crate) fn leads_partition(&self, queue: &TaskQueueKey) -> bool {
        let partition = partition_shard(queue, self.inner.shards);
        self.inner.store.leader_term(partition).is_some()
    }

    /// What a poll of `queue` this node refused because it does not lead the queue's
    /// partition answers: its caller routes the poll again.
    pub(crate) fn partition_moved(&self, queue: &TaskQueueKey) -> ApiError {
        let partition = partition_shard(queue, self.inner.shards);
        ApiError::NotLeader {
            group: partition,
            leader: self.inner.store.leader_of(partition),
        }
    }

    /// The node a call about `queue` was handed to did not serve it as the partition's
    /// leader: the next call asks a replica who leads it rather than trust the hint.
    pub(crate) fn partition_unreachable(&self, queue: &TaskQueueKey) {
        let partition = partition_shard(queue, self.inner.shards);
        self.inner.store.note_leader(partition, None);
    }

    /// The node leading the shard owning `queue`'s partition, when it is another node (for a
    /// shard this node holds no replica of, as a replica names it).
    pub(crate) async fn remote_partition_leader(&self, queue: &TaskQueueKey) -> Option<u64> {
        let partition = partition_shard(queue, self.inner.shards);
        let store = &self.inner.store;
        store
            .locate_leader(partition)
            .await
            .filter(|n| *n != store.node_id())
    }

    /// Moves an outbox record's task towards its queue: a waiting poller (sync match), else the
    /// matcher's in-memory queue, from which it is moved into the partition's durable backlog
    /// if no poller takes it within [`SPILL_AFTER`]. Sticky tasks stay in memory. `recovering`:
    /// the record may already be in a backlog the matcher was rebuilt from, so it is added
    /// there first (idempotently) and indexed only if it was not.
    fn deliver(&self, leader: &ShardLeader, record: OutboxRecord, recovering: bool) {
        let shard = leader.shard;
        if matches!(
            record.task,
            Task::StartChild { .. }
                | Task::NotifyParent { .. }
                | Task::ParentClosePolicy(_)
                | Task::SignalExternal { .. }
                | Task::CancelExternal { .. }
        ) {
            // A time-skipping clock waits for the transfer (its target's work is noted only
            // once the transfer lands there).
            let hold = self.clock().hold();
            let transfer = transfers::run(self.clone(), leader.fence(), record);
            leader.spawn(async move {
                transfer.await;
                drop(hold);
            });
            return;
        }
        let Some(mut task) = QueuedTask::of_record(shard, &record) else {
            return;
        };
        let (queue, sticky) = match &record.task {
            Task::WorkflowTask(wt) => self.workflow_queue(&record.run.namespace_id, &wt.task_queue),
            Task::ActivityTask(at) => (
                TaskQueueKey::new(
                    &record.run.namespace_id,
                    &at.task_queue.name,
                    TaskKind::Activity,
                ),
                false,
            ),
            _ => return,
        };
        if sticky {
            if let Task::WorkflowTask(wt) = &record.task {
                task.normal_queue = Some(wt.task_queue.normal_name.clone());
            }
            self.inner.matcher.add(&queue, task);
            TASK_DISPATCH.with_label_values(&["sticky"]).inc();
            return;
        }
        let engine = self.clone();
        let fence = Some(leader.fence());
        if recovering || !self.leads_partition(&queue) {
            // The partition's leader indexes the task once its backlog add applies: this
            // node's matcher is not where the task's pollers are (or may already be indexed
            // from the backlog after a restart, and the add is idempotent).
            leader.spawn(async move { engine.spill_direct(queue, task, fence).await });
            return;
        }
        let TaskOrigin::Outbox(spill) = task.origin.clone() else {
            return;
        };
        match self.inner.matcher.offer(&queue, task.clone()) {
            Ok(()) => TASK_DISPATCH.with_label_values(&["sync"]).inc(),
            Err(task) => self.inner.matcher.add(&queue, task),
        }
        leader.spawn(async move {
            tokio::time::sleep(SPILL_AFTER).await;
            if spill.lock().taken {
                return;
            }
            // Tests hold the spill here, past its look at `taken`, and take the task meanwhile.
            fail::fail_point!("spill-before-add");
            let Some((partition, seq, _)) = engine.add_to_backlog(&queue, &task, fence).await
            else {
                return;
            };
            let taken = {
                let mut state = spill.lock();
                state.backlog = Some((partition, seq));
                state.taken
            };
            if taken {
                // Taken while the add was on its way: the entry is done with already.
                engine.cleanup(partition, Cleanup::CompleteBacklog(queue.clone(), seq));
            }
            if ack_lost() {
                return;
            }
            engine.cleanup(
                task.shard,
                Cleanup::AckOutbox(task.outbox_entry(queue.kind)),
            );
        });
    }

    /// Straight into the partition's backlog, then the outbox record is acknowledged: after a
    /// restart, and whenever the partition is led by another node.
    async fn spill_direct(&self, queue: TaskQueueKey, task: QueuedTask, fence: Option<Fence>) {
        if self.add_to_backlog(&queue, &task, fence).await.is_none() || ack_lost() {
            return;
        }
        self.cleanup(
            task.shard,
            Cleanup::AckOutbox(task.outbox_entry(queue.kind)),
        );
    }

    /// Adds the task to its partition's backlog (fenced by the delivering leadership, when a
    /// leader delivers it): (partition, sequence number, whether the add was new). A failed proposal is retried, since until the add is applied the outbox record
    /// is the task's only durable copy.
    async fn add_to_backlog(
        &self,
        queue: &TaskQueueKey,
        task: &QueuedTask,
        fence: Option<Fence>,
    ) -> Option<(GroupId, u64, bool)> {
        let partition = partition_shard(queue, self.inner.shards);
        let add = ShardCommand::Backlog(BacklogCommand::Add {
            queue: queue.clone(),
            task: task.backlog_bytes(),
        });
        loop {
            let added = match fence {
                Some(fence) => self.execute_as(fence, partition, add.clone()).await,
                None => self.execute(partition, add.clone()).await,
            };
            match added {
                Ok(ShardOutcome::Backlog(BacklogReply::Added { seq, fresh })) => {
                    if fresh {
                        TASK_DISPATCH.with_label_values(&["backlog"]).inc();
                    }
                    return Some((partition, seq, fresh));
                }
                Ok(other) => {
                    tracing::error!(?other, "unexpected reply to a backlog add");
                    return None;
                }
                // Deposed: the new leader delivers the task again from the outbox.
                Err(ApiError::NotLeader { .. }) if fence.is_some_and(|f| !self.is_current(f)) => {
                    return None;
                }
                Err(e @ ApiError::History(_)) => {
                    tracing::error!(error = %e, "backlog add refused");
                    return None;
                }
                Err(e) => {
                    tracing::warn!(%partition, error = %e, "backlog add failed; retrying");
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
            }
        }
    }

    fn cleanup(&self, shard: GroupId, cleanup: Cleanup) {
        // Best effort (see `cleanup`): a full queue drops this one, left for recovery.
        if self.inner.cleanups.try_send((shard, cleanup)).is_err() {
            tracing::debug!(%shard, "clean-up queue full; left for recovery");
        }
    }

    /// Acknowledges an outbox record in the next clean-up round.
    pub fn ack_outbox_later(&self, shard: GroupId, entry: OutboxEntry) {
        self.cleanup(shard, Cleanup::AckOutbox(entry));
    }

    /// A poller took `task` from `queue` and its workflow shard either recorded it started
    /// (`started`) or refused it as stale: its durable copy is not needed any more. A started
    /// task's outbox record was removed by the same apply that recorded the start.
    pub fn release(&self, queue: &TaskQueueKey, task: &QueuedTask, started: bool) {
        let backlog = match &task.origin {
            TaskOrigin::Backlog(partition, seq) => Some((*partition, *seq)),
            TaskOrigin::Outbox(spill) => {
                let backlog = {
                    let mut state = spill.lock();
                    state.taken = true;
                    state.backlog
                };
                if !started {
                    self.cleanup(
                        task.shard,
                        Cleanup::AckOutbox(task.outbox_entry(queue.kind)),
                    );
                }
                backlog
            }
            TaskOrigin::Query(_) => None,
        };
        if let Some((partition, seq)) = backlog {
            self.cleanup(partition, Cleanup::CompleteBacklog(queue.clone(), seq));
        }
    }

    /// The queue a workflow task goes to, and whether it is a sticky one. A sticky queue whose
    /// worker stopped polling is bypassed: the task goes to the normal queue, where any worker
    /// can take it (with a full history).
    pub fn workflow_queue(&self, namespace_id: &str, queue: &TaskQueueRef) -> (TaskQueueKey, bool) {
        let sticky = TaskQueueKey::new(namespace_id, &queue.name, TaskKind::Workflow);
        if !queue.sticky {
            return (sticky, false);
        }
        // Only the partition's leader sees the sticky queue's pollers (they are served there).
        if self.leads_partition(&sticky)
            && self
                .inner
                .matcher
                .has_recent_poller(&sticky, STICKY_POLLER_WINDOW)
        {
            return (sticky, true);
        }
        (
            TaskQueueKey::new(namespace_id, &queue.normal_name, TaskKind::Workflow),
            false,
        )
    }

    /// Rebuilds a new leader's work from its shard's committed state: first the backlogs of
    /// the task-queue partitions the shard owns, then every outbox record is delivered again
    /// (its backlog add is idempotent), then the schedules and the timers armed in mutable
    /// state.
    pub(crate) fn recover_shard(&self, leader: &ShardLeader) -> ApiResult<()> {
        let shard = leader.shard;
        let reader = self.reader(shard)?;
        let queued = backlog::scan(&reader.0)?;
        let outbox = outbox::scan(&reader)?;
        let schedules = dura_history::schedules::scan(&reader, None)?;
        let runs = store::scan_runs(&reader)?;
        tracing::debug!(
            %shard,
            backlog = queued.len(),
            outbox = outbox.len(),
            schedules = schedules.len(),
            runs = runs.len(),
            "rebuilding leader state"
        );
        for t in queued {
            let queue = t.queue.clone();
            match QueuedTask::from_backlog(shard, t) {
                Some(task) => self.inner.matcher.add(&queue, task),
                None => tracing::error!(%shard, ?queue, "undecodable backlog task"),
            }
        }
        for record in outbox {
            self.deliver(leader, record, true);
        }
        for schedule in schedules {
            self.arm_schedule(leader, &schedule.namespace_id, &schedule.schedule_id);
        }
        for ms in runs {
            let run = RunKey::new(&ms.namespace_id, &ms.workflow_id, &ms.run_id);
            for task in pending_tasks(&ms) {
                if let Task::Timer(timer) = task {
                    leader.timers.arm(run.clone(), timer);
                }
            }
        }
        Ok(())
    }

    /// A shard's leadership ended: the task-queue partitions it owns leave the matcher, and
    /// their open polls are routed again, to the partition's new leader. Their tasks have a
    /// durable copy the new leader (or the task's pending spill) brings back, except sticky
    /// ones, which move to their normal queue now.
    pub(crate) fn forget_partitions(&self, shard: GroupId) {
        let shards = self.inner.shards;
        let unloaded = self
            .inner
            .matcher
            .unload_where(|queue| partition_shard(queue, shards) == shard);
        for (queue, tasks) in unloaded {
            for task in tasks {
                self.to_normal_queue(&queue, task);
            }
        }
    }

    /// Moves a task taken out of an unloaded queue to its normal queue if it was in a sticky
    /// one: this node's matcher when it leads the normal queue's partition, else that
    /// partition's backlog. Any other task is dropped: its durable copy brings it back.
    pub(crate) fn to_normal_queue(&self, from: &TaskQueueKey, task: QueuedTask) {
        let Some(normal) = task.normal_queue.clone() else {
            return;
        };
        let queue = TaskQueueKey::new(&from.namespace_id, normal, TaskKind::Workflow);
        if self.leads_partition(&queue) {
            self.inner.matcher.add(&queue, task);
            return;
        }
        // A query has no durable form to travel in; its caller's wait ends at its deadline.
        if matches!(task.origin, TaskOrigin::Outbox(_)) {
            let engine = self.clone();
            tokio::spawn(async move { engine.spill_direct(queue, task, None).await });
        }
    }
}

/// A committed outcome, or the error its request is answered with although its transition was
/// committed (a run terminated in its place).
fn answered(outcome: ShardOutcome) -> ApiResult<ShardOutcome> {
    match outcome {
        ShardOutcome::Run {
            reply: RunReply::Refused(refusal),
            ..
        } => Err(ApiError::History(refusal)),
        outcome => Ok(outcome),
    }
}

/// Fires durable timers: each timer comes back as a `FireTimer` proposal at its deadline.
/// The state machine ignores timers that went stale in the meantime.
/// One per shard leader; it ends with the leadership (see `ShardLeader::spawn`).
pub(crate) async fn timer_service(engine: Engine, leader: ShardLeader) {
    let clock = engine.clock().clone();
    let mut jumps = clock.jumps();
    loop {
        let now = clock.now();
        // Taken before the due timers leave the queue: a time-skipping clock must not jump
        // until their fires are applied.
        let firing = clock.hold();
        for (run, timer) in leader.timers.take_due(now) {
            let engine = engine.clone();
            let timers = leader.timers.clone();
            let fence = leader.fence();
            let firing = firing.clone();
            leader.spawn(async move {
                let _firing = firing;
                let request = RunRequest::FireTimer(FireTimerRequest {
                    timer: timer.clone(),
                    new_run_id: uuid::Uuid::new_v4().to_string(),
                    now: engine.now(),
                });
                let fired = if fire_refused() {
                    Err(ApiError::NotLeader {
                        group: fence.shard,
                        leader: None,
                    })
                } else {
                    engine.execute_run_as(fence, &run, request).await
                };
                match fired {
                    Ok(_) => {}
                    // Deposed: the new leader arms this timer again from state. A refusal
                    // while the term still holds (openraft refuses writes while the leader's
                    // lease has lapsed or a transfer is under way) is retried below: no new
                    // leader would arm it, and if the transfer goes through, the cancelled
                    // retry costs nothing.
                    Err(ApiError::NotLeader { .. }) if !engine.is_current(fence) => {}
                    // The state machine's verdict (run gone, ...) is final.
                    Err(e @ ApiError::History(_)) => {
                        tracing::debug!(workflow_id = %run.workflow_id, run_id = %run.run_id, error = %e, "timer not applied");
                    }
                    // The proposal itself failed (no leader yet, storage): the timer is
                    // still armed in mutable state, so try again rather than lose it
                    // until the next restart.
                    Err(e) => {
                        tracing::warn!(workflow_id = %run.workflow_id, run_id = %run.run_id, error = %e, "timer proposal failed; retrying");
                        tokio::time::sleep(RETRY_BACKOFF).await;
                        timers.arm(run, timer);
                    }
                }
            });
        }
        drop(firing);
        let sleep = leader
            .timers
            .next_deadline()
            .map(|at| clock.wall_wait(at))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            () = leader.timers.armed() => {}
            () = jumps.next() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}
