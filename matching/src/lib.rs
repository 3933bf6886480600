//! Task-queue partitions for Dura: pairs workflow/activity tasks with workers long-polling
//! Temporal task queues (`PollWorkflowTaskQueue` / `PollActivityTaskQueue`), and keeps the
//! tasks no poller was waiting for in a durable backlog ([`backlog`]).
//!
//! # Role
//!
//! A workflow shard's leader moves each task from its outbox to the task queue: first it
//! [`Matcher::offer`]s the task to a poller that is waiting right now (*sync match*, nothing
//! written); if none is, it joins the queue here with [`Matcher::add`], FIFO, for the next
//! poller, and is moved into the partition's durable backlog
//! ([`backlog::BacklogCommand::Add`], in the partition's shard) if it waits long. A poll that finds nothing
//! before its deadline returns `None` (the frontend answers with an empty response).
//!
//! The matcher is generic over the task payload `T`, so it knows nothing about history.
//!
//! # Invariants
//!
//! * **The matcher never holds the only copy of a task.** Its queues are an in-memory index:
//!   every task in it is also in its workflow shard's outbox or in a partition's backlog; when
//!   a shard's leadership ends the node unloads its partitions ([`Matcher::unload_where`]) and
//!   the new leader rebuilds them from both. Delivering a stale task is possible, so the consumer validates each task
//!   against mutable state (`Record*TaskStarted`) before acting on it.
//! * **No task is lost inside the matcher.** A task is either in exactly one queue, in
//!   flight to exactly one poller, or returned to the caller. If a poll future is dropped
//!   (the client went away) after a task was already sent to it, the task is put back at
//!   the *front* of its queue (or handed to another waiting poller).
//! * **Each task is delivered at most once** by the matcher (per `add`/`offer`/`requeue_front`).
//! * The internal mutex is never held across an `.await`.
//!
//! Poller bookkeeping ([`Matcher::describe`], [`Matcher::has_recent_poller`]) uses wall-clock
//! and monotonic time; this crate is not part of the deterministic state machine.

pub mod backlog;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How long a poller stays listed in [`Matcher::describe`] after its last poll.
pub const POLLER_HISTORY_TTL: Duration = Duration::from_secs(5 * 60);

/// Every this many polls, queues with nothing in them and no recent pollers are forgotten.
const SWEEP_EVERY: u64 = 1024;

/// Kind of task a queue carries; Temporal keeps workflow and activity queues of the same
/// name apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaskKind {
    Workflow,
    Activity,
}

/// Identifies one task queue.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskQueueKey {
    pub namespace_id: String,
    pub name: String,
    pub kind: TaskKind,
}

impl TaskQueueKey {
    pub fn new(namespace_id: impl Into<String>, name: impl Into<String>, kind: TaskKind) -> Self {
        Self {
            namespace_id: namespace_id.into(),
            name: name.into(),
            kind,
        }
    }
}

/// Result of [`Matcher::describe`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueDescription {
    /// Pollers seen in the last [`POLLER_HISTORY_TTL`], newest first.
    pub pollers: Vec<PollerInfo>,
    /// Number of tasks waiting in the backlog.
    pub backlog: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollerInfo {
    pub identity: String,
    pub last_access_time: SystemTime,
}

/// How a [`Matcher::poll_served`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Polled<T> {
    Task(T),
    /// The deadline passed with no task.
    Deadline,
    /// The queue is not served here, or was unloaded while the poll waited: its partition
    /// is led elsewhere now, so the poll belongs there.
    NotServed,
}

struct Waiter<T> {
    id: u64,
    tx: oneshot::Sender<T>,
}

struct PollerRecord {
    wall: SystemTime,
    mono: Instant,
}

struct QueueState<T> {
    backlog: VecDeque<T>,
    waiters: VecDeque<Waiter<T>>,
    pollers: HashMap<String, PollerRecord>,
}

impl<T> Default for QueueState<T> {
    fn default() -> Self {
        Self {
            backlog: VecDeque::new(),
            waiters: VecDeque::new(),
            pollers: HashMap::new(),
        }
    }
}

impl<T> QueueState<T> {
    /// Hands `task` to the longest-waiting live poller; gives it back if there is none.
    fn try_sync_match(&mut self, mut task: T) -> Result<(), T> {
        while let Some(w) = self.waiters.pop_front() {
            match w.tx.send(task) {
                Ok(()) => return Ok(()),
                Err(t) => task = t, // receiver gone; try the next waiter
            }
        }
        Err(task)
    }

    fn push_back(&mut self, task: T) {
        if let Err(t) = self.try_sync_match(task) {
            self.backlog.push_back(t);
        }
    }

    fn push_front(&mut self, task: T) {
        if let Err(t) = self.try_sync_match(task) {
            self.backlog.push_front(t);
        }
    }

    fn touch(&mut self, identity: &str) {
        let now = Instant::now();
        self.pollers
            .retain(|_, r| now.duration_since(r.mono) <= POLLER_HISTORY_TTL);
        let rec = PollerRecord {
            wall: SystemTime::now(),
            mono: now,
        };
        match self.pollers.get_mut(identity) {
            Some(r) => *r = rec,
            None => {
                self.pollers.insert(identity.to_owned(), rec);
            }
        }
    }

    fn is_idle(&self, now: Instant) -> bool {
        self.backlog.is_empty()
            && self.waiters.is_empty()
            && self
                .pollers
                .values()
                .all(|r| now.duration_since(r.mono) > POLLER_HISTORY_TTL)
    }
}

struct Inner<T> {
    queues: Mutex<HashMap<TaskQueueKey, QueueState<T>>>,
    next_id: AtomicU64,
}

/// In-memory task matcher. Cheap to clone; all clones share state.
pub struct Matcher<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Matcher<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Send + 'static> Default for Matcher<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Matcher<T> {
    fn lock(&self) -> MutexGuard<'_, HashMap<TaskQueueKey, QueueState<T>>> {
        // A panic while holding the lock cannot leave the maps structurally broken.
        self.inner.queues.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: Send + 'static> Matcher<T> {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                queues: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
            }),
        }
    }

    /// Sync match only: hands `task` to the longest-waiting live poller, or gives it back.
    pub fn offer(&self, key: &TaskQueueKey, task: T) -> Result<(), T> {
        match self.lock().get_mut(key) {
            Some(q) => q.try_sync_match(task),
            None => Err(task),
        }
    }

    /// Sync-matches `task` to the longest-waiting live poller, else enqueues it (FIFO).
    pub fn add(&self, key: &TaskQueueKey, task: T) {
        self.lock().entry(key.clone()).or_default().push_back(task);
    }

    /// Puts a task back at the front of the queue (e.g. the frontend took it but could not
    /// deliver it). If a poller is waiting it gets the task immediately.
    pub fn requeue_front(&self, key: &TaskQueueKey, task: T) {
        self.lock().entry(key.clone()).or_default().push_front(task);
    }

    /// Long poll: returns a task, or `None` once `deadline` passes (or the queue is
    /// unloaded while waiting). For a queue that is always served here; see
    /// [`Matcher::poll_served`].
    pub async fn poll(&self, key: &TaskQueueKey, identity: &str, deadline: Instant) -> Option<T> {
        match self.poll_served(key, identity, deadline, || true).await {
            Polled::Task(task) => Some(task),
            Polled::Deadline | Polled::NotServed => None,
        }
    }

    /// Long poll of a queue this node serves only while `served` says so (its partition's
    /// leadership): `served` is asked under the matcher's lock, so a poll either registers
    /// before the queue is unloaded (and is woken by the unload) or sees that it is not
    /// served here — it can never wait on a queue nobody feeds any more.
    ///
    /// Cancellation-safe: if the returned future is dropped, the poller is deregistered and a
    /// task that was already handed to it goes back to the front of its queue.
    pub async fn poll_served(
        &self,
        key: &TaskQueueKey,
        identity: &str,
        deadline: Instant,
        served: impl FnOnce() -> bool,
    ) -> Polled<T> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let rx = {
            let mut queues = self.lock();
            if !served() {
                return Polled::NotServed;
            }
            if id % SWEEP_EVERY == SWEEP_EVERY - 1 {
                let now = Instant::now();
                queues.retain(|k, q| k == key || !q.is_idle(now));
            }
            let q = queues.entry(key.clone()).or_default();
            q.touch(identity);
            if let Some(task) = q.backlog.pop_front() {
                return Polled::Task(task);
            }
            if Instant::now() >= deadline {
                return Polled::Deadline;
            }
            let (tx, rx) = oneshot::channel();
            q.waiters.push_back(Waiter { id, tx });
            rx
        };
        let mut guard = PollGuard {
            matcher: self,
            key,
            identity,
            id,
            rx: Some(rx),
        };
        let rx = guard.rx.as_mut().expect("receiver present");
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(task)) => {
                guard.rx = None;
                guard.finish();
                Polled::Task(task)
            }
            // Sender dropped without sending: queue unloaded.
            Ok(Err(_)) => {
                guard.rx = None;
                Polled::NotServed
            }
            // Deadline: deregister; a task sent just before the deadline is still ours.
            Err(_) => match guard.deregister() {
                Some(task) => Polled::Task(task),
                None => Polled::Deadline,
            },
        }
    }

    /// Drops every queued task for which `keep` returns false.
    pub fn retain(&self, key: &TaskQueueKey, keep: impl FnMut(&T) -> bool) {
        if let Some(q) = self.lock().get_mut(key) {
            q.backlog.retain(keep);
        }
    }

    /// Pollers seen on this queue in the last [`POLLER_HISTORY_TTL`] (newest first) and the
    /// backlog length.
    pub fn describe(&self, key: &TaskQueueKey) -> QueueDescription {
        let queues = self.lock();
        let Some(q) = queues.get(key) else {
            return QueueDescription::default();
        };
        let now = Instant::now();
        let mut pollers: Vec<(Instant, PollerInfo)> = q
            .pollers
            .iter()
            .filter(|(_, r)| now.duration_since(r.mono) <= POLLER_HISTORY_TTL)
            .map(|(identity, r)| {
                (
                    r.mono,
                    PollerInfo {
                        identity: identity.clone(),
                        last_access_time: r.wall,
                    },
                )
            })
            .collect();
        pollers.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.identity.cmp(&b.1.identity)));
        QueueDescription {
            pollers: pollers.into_iter().map(|(_, p)| p).collect(),
            backlog: q.backlog.len(),
        }
    }

    /// Every queue with tasks waiting, and how many: what `/metrics` shows as backlog.
    pub fn backlog_lengths(&self) -> Vec<(TaskQueueKey, usize)> {
        self.lock()
            .iter()
            .filter(|(_, q)| !q.backlog.is_empty())
            .map(|(key, q)| (key.clone(), q.backlog.len()))
            .collect()
    }

    /// True if a poller is polling this queue now or polled it within `window`
    /// (Temporal uses 10 s to decide whether a sticky queue is alive).
    pub fn has_recent_poller(&self, key: &TaskQueueKey, window: Duration) -> bool {
        let queues = self.lock();
        let Some(q) = queues.get(key) else {
            return false;
        };
        let now = Instant::now();
        !q.waiters.is_empty()
            || q.pollers
                .values()
                .any(|r| now.duration_since(r.mono) <= window)
    }

    /// Wakes every poller of the queue with `None`, forgets its pollers and returns the
    /// queued tasks (oldest first) so the caller can reroute them.
    pub fn unload(&self, key: &TaskQueueKey) -> Vec<T> {
        let removed = self.lock().remove(key);
        match removed {
            // Dropping the waiters' senders (outside the lock) wakes their polls with None.
            Some(q) => {
                tracing::debug!(
                    ?key,
                    backlog = q.backlog.len(),
                    waiters = q.waiters.len(),
                    "unloading task queue"
                );
                q.backlog.into_iter().collect()
            }
            None => Vec::new(),
        }
    }

    /// Forgets the queues `which` selects, with their pollers; their waiting polls end as
    /// [`Polled::NotServed`] (the queues' partition moved to another leader). Returns the
    /// queued tasks, by queue, so the caller can move those with no durable copy elsewhere.
    pub fn unload_where(
        &self,
        mut which: impl FnMut(&TaskQueueKey) -> bool,
    ) -> Vec<(TaskQueueKey, Vec<T>)> {
        let removed: Vec<_> = {
            let mut queues = self.lock();
            let keys: Vec<_> = queues.keys().filter(|k| which(k)).cloned().collect();
            keys.into_iter()
                .filter_map(|k| queues.remove(&k).map(|q| (k, q)))
                .collect()
        };
        // Dropping the waiters' senders outside the lock wakes their polls.
        removed
            .into_iter()
            .map(|(k, q)| (k, q.backlog.into_iter().collect()))
            .filter(|(_, tasks): &(_, Vec<T>)| !tasks.is_empty())
            .collect()
    }
}

/// Deregisters a waiting poll when it finishes, times out or is dropped.
struct PollGuard<'a, T: Send + 'static> {
    matcher: &'a Matcher<T>,
    key: &'a TaskQueueKey,
    identity: &'a str,
    id: u64,
    /// `Some` while the poll may still own an undelivered task.
    rx: Option<oneshot::Receiver<T>>,
}

impl<T: Send + 'static> PollGuard<'_, T> {
    /// Normal completion: the waiter entry was consumed by the sender; refresh the poller.
    fn finish(&self) {
        if let Some(q) = self.matcher.lock().get_mut(self.key) {
            q.touch(self.identity);
        }
    }

    /// Removes our waiter entry and returns a task that was sent to us before removal.
    /// Runs under the lock, so no send can race with the `try_recv`.
    fn deregister_locked(
        &mut self,
        queues: &mut HashMap<TaskQueueKey, QueueState<T>>,
    ) -> Option<T> {
        if let Some(q) = queues.get_mut(self.key) {
            let before = q.waiters.len();
            q.waiters.retain(|w| w.id != self.id);
            if q.waiters.len() != before {
                q.touch(self.identity);
            }
        }
        let mut rx = self.rx.take()?;
        rx.try_recv().ok()
    }

    /// Deadline reached: deregister, but keep a task sent just before the deadline.
    fn deregister(&mut self) -> Option<T> {
        let matcher = self.matcher;
        let mut queues = matcher.lock();
        self.deregister_locked(&mut queues)
    }
}

impl<T: Send + 'static> Drop for PollGuard<'_, T> {
    fn drop(&mut self) {
        if self.rx.is_none() {
            return;
        }
        // The poll is being abandoned: give back any task already handed to it, atomically
        // with deregistration so nothing can overtake it.
        let matcher = self.matcher;
        let mut queues = matcher.lock();
        if let Some(task) = self.deregister_locked(&mut queues) {
            tracing::debug!(key = ?self.key, "poll abandoned after a task was matched; requeueing at front");
            queues.entry(self.key.clone()).or_default().push_front(task);
        }
    }
}

#[cfg(test)]
mod tests;
