//! The leader-side runtime of the history shards: proposes shard commands, then carries out
//! the tasks their transitions ask for — workflow and activity tasks to the matcher, timers to
//! the timer service — and wakes long polls waiting for new history.
//!
//! Nothing here is the only copy of anything: every pending task is recorded in mutable state,
//! so [`Engine::recover`] rebuilds the matcher and the timers from the shards' applied state
//! after a restart. A task handed out twice is harmless too: `Record*TaskStarted` accepts a
//! task once, and stale tasks are rejected by the ids and stamps they carry.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use dura_history::{
    Task,
    api::{RunRequest, timer::FireTimerRequest},
    keys::RunKey,
    pending_tasks, store,
    tasks::{TaskQueueRef, TimerTask},
    time::Nanos,
};
use dura_matching::{Matcher, TaskKind, TaskQueueKey};
use dura_raft_store::{GroupId, RaftStore};
use tokio::sync::{mpsc, watch};

use crate::{
    error::{ApiError, ApiResult},
    shard::{ReaderKv, ShardCommand, ShardOutcome, ShardReply, shard_for},
};

/// A sticky queue whose worker has not polled for this long is treated as gone (Temporal: 10 s).
const STICKY_POLLER_WINDOW: Duration = Duration::from_secs(10);
/// How long a timer whose proposal failed waits before it is proposed again.
const TIMER_RETRY_BACKOFF: Duration = Duration::from_secs(1);

/// What the matcher holds: enough to find the run and name the exact task instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedTask {
    pub shard: GroupId,
    pub run: RunKey,
    pub scheduled_event_id: i64,
    pub attempt: i32,
    pub stamp: i32,
    /// Set for a query task (see `frontend::queries`): not a recorded task at all.
    pub query_id: Option<u64>,
}

/// Wall-clock now as the state machine's time unit. Time enters the log here, never in apply.
pub fn now_nanos() -> Nanos {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as Nanos)
        .unwrap_or(0)
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: RaftStore,
    shards: u32,
    matcher: Matcher<QueuedTask>,
    timers: mpsc::UnboundedSender<(GroupId, RunKey, TimerTask)>,
    /// Per workflow (namespace id, workflow id) with someone waiting: bumped after every
    /// applied change of that workflow. History long polls and queries wait on it, so a
    /// change wakes only the waiters of its own workflow.
    changed: Mutex<HashMap<(String, String), watch::Sender<u64>>>,
}

/// A subscription to one workflow's changes; the entry goes when its last subscriber does.
pub struct WorkflowWatch {
    engine: Engine,
    key: (String, String),
    rx: watch::Receiver<u64>,
}

impl WorkflowWatch {
    /// Marks the current state seen; a change after this call wakes `changed`.
    pub fn mark_seen(&mut self) {
        self.rx.borrow_and_update();
    }

    /// Resolves at the next change not yet marked seen.
    pub async fn changed(&mut self) {
        // The sender lives in the map while this receiver exists, so this cannot fail.
        let _ = self.rx.changed().await;
    }
}

impl Drop for WorkflowWatch {
    fn drop(&mut self) {
        let mut map = self
            .engine
            .inner
            .changed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Subscriptions are made under this lock, so "only us left" cannot race with one.
        if map
            .get(&self.key)
            .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            map.remove(&self.key);
        }
    }
}

impl Engine {
    pub fn new(store: RaftStore, shards: u32) -> Self {
        let (timers, timer_rx) = mpsc::unbounded_channel();
        let engine = Engine {
            inner: Arc::new(Inner {
                store,
                shards,
                matcher: Matcher::new(),
                timers,
                changed: Mutex::default(),
            }),
        };
        tokio::spawn(timer_service(engine.clone(), timer_rx));
        engine
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

    /// The shard's applied state, for reads.
    pub fn reader(&self, shard: GroupId) -> ApiResult<ReaderKv> {
        Ok(ReaderKv(self.inner.store.reader(shard)?))
    }

    pub fn watch_workflow(&self, namespace_id: &str, workflow_id: &str) -> WorkflowWatch {
        let key = (namespace_id.to_string(), workflow_id.to_string());
        let mut map = self.inner.changed.lock().unwrap_or_else(|e| e.into_inner());
        let rx = map
            .entry(key.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        WorkflowWatch {
            engine: self.clone(),
            key,
            rx,
        }
    }

    /// Proposes a command to the shard, waits until it is committed and applied, then carries
    /// out the tasks it produced.
    pub async fn execute(&self, shard: GroupId, command: ShardCommand) -> ApiResult<ShardOutcome> {
        let workflow = command.workflow();
        let bytes = bincode::serialize(&command).map_err(|e| ApiError::Internal(e.to_string()))?;
        let reply = self.inner.store.propose(shard, bytes).await?;
        let reply: ShardReply =
            bincode::deserialize(&reply).map_err(|e| ApiError::Internal(e.to_string()))?;
        let outcome = reply?;
        match &outcome {
            ShardOutcome::Started { tasks, .. } => {
                for (run, task) in tasks {
                    self.dispatch(shard, run, task.clone());
                }
            }
            ShardOutcome::Run {
                run,
                tasks,
                new_run,
                ..
            } => {
                for task in tasks {
                    self.dispatch(shard, run, task.clone());
                }
                for (new_key, task) in new_run
                    .iter()
                    .flat_map(|(k, ts)| ts.iter().map(move |t| (k, t)))
                {
                    self.dispatch(shard, new_key, task.clone());
                }
            }
        }
        let changed = self.inner.changed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = changed.get(&workflow) {
            tx.send_modify(|v| *v += 1);
        }
        Ok(outcome)
    }

    /// Applies a run-scoped request.
    pub async fn execute_run(&self, run: &RunKey, request: RunRequest) -> ApiResult<ShardOutcome> {
        let shard = self.shard_for(&run.namespace_id, &run.workflow_id);
        let command = ShardCommand::Run {
            namespace_id: run.namespace_id.clone(),
            workflow_id: run.workflow_id.clone(),
            run_id: run.run_id.clone(),
            request,
        };
        self.execute(shard, command).await
    }

    fn dispatch(&self, shard: GroupId, run: &RunKey, task: Task) {
        match task {
            Task::WorkflowTask(wt) => {
                let queue = self.workflow_queue(&run.namespace_id, &wt.task_queue);
                let task = QueuedTask {
                    shard,
                    run: run.clone(),
                    scheduled_event_id: wt.scheduled_event_id,
                    attempt: wt.attempt,
                    stamp: wt.stamp,
                    query_id: None,
                };
                self.inner.matcher.add(&queue, task);
            }
            Task::ActivityTask(at) => {
                let queue = TaskQueueKey {
                    namespace_id: run.namespace_id.clone(),
                    name: at.task_queue.name.clone(),
                    kind: TaskKind::Activity,
                };
                let task = QueuedTask {
                    shard,
                    run: run.clone(),
                    scheduled_event_id: at.scheduled_event_id,
                    attempt: at.attempt,
                    stamp: 0,
                    query_id: None,
                };
                self.inner.matcher.add(&queue, task);
            }
            Task::Timer(timer) => {
                let _ = self.inner.timers.send((shard, run.clone(), timer));
            }
        }
    }

    /// A sticky queue whose worker stopped polling is bypassed: the task goes to the normal
    /// queue, where any worker can take it (with a full history).
    pub fn workflow_queue(&self, namespace_id: &str, queue: &TaskQueueRef) -> TaskQueueKey {
        let sticky = TaskQueueKey {
            namespace_id: namespace_id.to_string(),
            name: queue.name.clone(),
            kind: TaskKind::Workflow,
        };
        if !queue.sticky
            || self
                .inner
                .matcher
                .has_recent_poller(&sticky, STICKY_POLLER_WINDOW)
        {
            return sticky;
        }
        TaskQueueKey {
            namespace_id: namespace_id.to_string(),
            name: queue.normal_name.clone(),
            kind: TaskKind::Workflow,
        }
    }

    /// Rebuilds the matcher and the timers from every shard's mutable state (after a restart).
    pub fn recover(&self) -> ApiResult<()> {
        self.inner.matcher.clear();
        for shard in self.shard_ids() {
            let reader = self.reader(shard)?;
            let runs = store::scan_runs(&reader).map_err(ApiError::from)?;
            let mut count = 0usize;
            for ms in runs {
                let run = RunKey::new(&ms.namespace_id, &ms.workflow_id, &ms.run_id);
                for task in pending_tasks(&ms) {
                    count += 1;
                    self.dispatch(shard, &run, task);
                }
            }
            tracing::debug!(%shard, tasks = count, "recovered pending tasks");
        }
        Ok(())
    }
}

/// Fires durable timers: each timer comes back as a `FireTimer` proposal at its deadline.
/// The state machine ignores timers that went stale in the meantime.
async fn timer_service(
    engine: Engine,
    mut rx: mpsc::UnboundedReceiver<(GroupId, RunKey, TimerTask)>,
) {
    let mut heap: BinaryHeap<Reverse<(Nanos, u64)>> = BinaryHeap::new();
    let mut entries: HashMap<u64, (GroupId, RunKey, TimerTask)> = HashMap::new();
    let mut seq = 0u64;
    loop {
        let now = now_nanos();
        while let Some(Reverse((fire_at, id))) = heap.peek().copied() {
            if fire_at > now {
                break;
            }
            heap.pop();
            if let Some((shard, run, timer)) = entries.remove(&id) {
                let engine = engine.clone();
                tokio::spawn(async move {
                    let request = RunRequest::FireTimer(FireTimerRequest {
                        timer: timer.clone(),
                        new_run_id: uuid::Uuid::new_v4().to_string(),
                        now: now_nanos(),
                    });
                    match engine.execute_run(&run, request).await {
                        Ok(_) => {}
                        // The state machine's verdict (run gone, ...) is final.
                        Err(e @ ApiError::History(_)) => {
                            tracing::debug!(workflow_id = %run.workflow_id, run_id = %run.run_id, error = %e, "timer not applied");
                        }
                        // The proposal itself failed (no leader yet, storage): the timer is
                        // still armed in mutable state, so try again rather than lose it
                        // until the next restart.
                        Err(e) => {
                            tracing::warn!(workflow_id = %run.workflow_id, run_id = %run.run_id, error = %e, "timer proposal failed; retrying");
                            tokio::time::sleep(TIMER_RETRY_BACKOFF).await;
                            let _ = engine.inner.timers.send((shard, run, timer));
                        }
                    }
                });
            }
        }
        let sleep = heap
            .peek()
            .map(|Reverse((at, _))| Duration::from_nanos((at - now).max(0) as u64))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            received = rx.recv() => match received {
                Some((shard, run, timer)) => {
                    seq += 1;
                    heap.push(Reverse((timer.fire_at, seq)));
                    entries.insert(seq, (shard, run, timer));
                }
                None => return,
            },
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}
