//! Leader work per shard. Whoever leads a shard's Raft group carries out what its committed
//! state asks for: offering workflow and activity tasks from the outbox to their queues,
//! firing timers, child-workflow transfers, schedules, and the task-queue partitions the shard
//! owns. This work is driven by what the group *applied*, never by the request that proposed
//! it: a request may be cancelled, time out after its entry was appended, or come from another
//! node, and a new leader must pick up everything its predecessor left.
//!
//! # Lifecycle
//! One supervisor per shard watches the group's leadership ([`RaftStore::watch_leadership`],
//! `Some(term)` only once this node has applied its term's first entry, so its state already
//! holds every command committed before it). On `Some(term)` it starts a [`ShardLeader`]:
//! 1. registers a bounded effect channel for the shard ([`AppliedEffects::register`]), so every
//!    entry applied from now on reaches it;
//! 2. rebuilds from committed state ([`Engine::recover_shard`]): the partitions' backlogs, the
//!    outbox, the schedules and the timers armed in mutable state;
//! 3. dispatches the effects of newly applied entries as they come.
//!
//! When leadership ends (or the node shuts down) it is cancelled: everything it spawned stops,
//! its timers are dropped, its partitions leave the matcher (their open polls return empty so
//! pollers re-home), and its channel is unregistered. Work it left half done is still in the
//! committed state for the next leader. Dispatch is idempotent (stale tasks are refused by the
//! ids and stamps they carry), so effects seen both in the rebuild and on the channel, or a
//! rebuild after an overflow, cost nothing but a little duplicate work.
//!
//! # Why effects are published after the write
//! Apply computes a batch's changes before raft-store writes them. An effect acted on before
//! the write is visible (a transfer reading the event it names, a long poll re-reading the
//! run it was woken for) would miss it, so apply only stages effects per group and
//! [`AppliedEffects::flush`] publishes them from `Application::after_apply`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use dura_history::{Task, keys::RunKey};
use dura_raft_store::GroupId;
use tokio::{
    sync::{Notify, mpsc, watch},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use crate::{
    clock::{Clock, ClockHold},
    engine::Engine,
};

/// How many applied effects may wait for a shard's leader before it falls back to rebuilding
/// from state (see [`AppliedEffects::publish`]).
const EFFECT_CAPACITY: usize = 4096;

/// Something a committed entry asks its shard's leader to do.
#[derive(Debug, Clone)]
pub enum Effect {
    /// A task a transition produced: a workflow/activity task, a timer, a transfer.
    Task(RunKey, Task),
    /// A schedule's record changed (created, paused, unpaused, deleted, action recorded).
    Schedule {
        namespace_id: String,
        schedule_id: String,
    },
    /// A task joined the backlog of a partition this shard owns: the partition's leader
    /// indexes it, wherever the task came from.
    Backlogged(dura_matching::backlog::BacklogTask),
}

/// What one applied batch changed, staged until the batch is written.
#[derive(Default)]
struct Staged {
    effects: Vec<Effect>,
    /// Holds a time-skipping clock from apply until the effects are dispatched.
    hold: Option<ClockHold>,
    /// (namespace id, workflow id) of every workflow the batch changed.
    workflows: Vec<(String, String)>,
}

/// The leader runtime's end of a shard's effect channel.
struct Sink {
    term: u64,
    tx: mpsc::Sender<(Effect, ClockHold)>,
    /// Set when an effect found the channel full: the leader must rebuild from state. It
    /// holds the clock (of the lost effects) until the rebuild has armed what they would have.
    overflowed: Arc<Mutex<Option<ClockHold>>>,
    wake: Arc<Notify>,
}

/// Effects of applied entries on their way from the state machine to the shards' leader
/// runtimes, and the watches of workflows with waiters (history long polls, queries, updates).
/// Shared by the Raft application (which stages and flushes) and the engine.
#[derive(Default)]
pub struct AppliedEffects {
    clock: Clock,
    staged: Mutex<HashMap<GroupId, Staged>>,
    sinks: Mutex<HashMap<GroupId, Sink>>,
    /// Per workflow with someone waiting: bumped after every applied change of it, on every
    /// replica, so a change wakes exactly the waiters of its own workflow.
    watches: Mutex<HashMap<(String, String), watch::Sender<u64>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AppliedEffects {
    /// Effects that hold `clock` while they are on their way.
    pub fn new(clock: Clock) -> Self {
        AppliedEffects {
            clock,
            ..Default::default()
        }
    }

    /// Stages what one applied entry of `group` produced (called from apply).
    pub fn stage(
        &self,
        group: GroupId,
        workflow: Option<(String, String)>,
        effects: impl IntoIterator<Item = Effect>,
    ) {
        let mut staged = lock(&self.staged);
        let staged = staged.entry(group).or_default();
        staged.effects.extend(effects);
        if staged.hold.is_none() && !staged.effects.is_empty() {
            staged.hold = Some(self.clock.hold());
        }
        staged.workflows.extend(workflow);
    }

    /// Publishes what `group`'s last applied batch staged, now that it is written (called from
    /// `after_apply`): effects to the group's leader runtime if this node leads it, and a wake
    /// to the watchers of every workflow the batch changed.
    pub fn flush(&self, group: GroupId) {
        let Some(staged) = lock(&self.staged).remove(&group) else {
            return;
        };
        if let Some(hold) = staged.hold {
            self.publish(group, staged.effects, hold);
        }
        if !staged.workflows.is_empty() {
            let watches = lock(&self.watches);
            for workflow in &staged.workflows {
                if let Some(tx) = watches.get(workflow) {
                    tx.send_modify(|v| *v += 1);
                }
            }
        }
    }

    /// Hands effects to the group's leader runtime; none registered means this node does not
    /// lead the group, and the leader that does sees them in its own apply. Never blocks the
    /// state machine: when the channel is full the runtime is told to rebuild from state,
    /// which holds every effect it missed.
    fn publish(&self, group: GroupId, effects: Vec<Effect>, hold: ClockHold) {
        let sinks = lock(&self.sinks);
        let Some(sink) = sinks.get(&group) else {
            return;
        };
        for effect in effects {
            if sink.tx.try_send((effect, hold.clone())).is_err() {
                *lock(&sink.overflowed) = Some(hold);
                sink.wake.notify_one();
                return;
            }
        }
    }

    /// Whether this node runs `group`'s leader (its sink is registered).
    pub fn leads(&self, group: GroupId) -> bool {
        lock(&self.sinks).contains_key(&group)
    }

    fn register(&self, group: GroupId, sink: Sink) {
        lock(&self.sinks).insert(group, sink);
    }

    /// Removes the sink of `group` registered for `term` (not a newer term's).
    fn unregister(&self, group: GroupId, term: u64) {
        let mut sinks = lock(&self.sinks);
        if sinks.get(&group).is_some_and(|s| s.term == term) {
            sinks.remove(&group);
        }
    }

    pub fn watch_workflow(
        self: &Arc<Self>,
        namespace_id: &str,
        workflow_id: &str,
    ) -> WorkflowWatch {
        let key = (namespace_id.to_string(), workflow_id.to_string());
        let rx = lock(&self.watches)
            .entry(key.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        WorkflowWatch {
            effects: self.clone(),
            key,
            rx,
        }
    }
}

/// A subscription to one workflow's changes; the entry goes when its last subscriber does.
pub struct WorkflowWatch {
    effects: Arc<AppliedEffects>,
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
        let mut map = lock(&self.effects.watches);
        // Subscriptions are made under this lock, so "only us left" cannot race with one.
        if map
            .get(&self.key)
            .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            map.remove(&self.key);
        }
    }
}

/// The running leader of one shard in one term: the scope its work runs in.
#[derive(Clone)]
pub struct ShardLeader {
    pub shard: GroupId,
    /// The term this leadership is of: the fence of the work it proposes to its own shard.
    pub term: u64,
    /// Cancelled when the term's leadership ends; everything the leader spawns stops with it.
    pub cancel: CancellationToken,
    /// The timers armed in the shard's state, which its timer service fires.
    pub timers: Arc<crate::timers::ArmedTimers>,
}

impl ShardLeader {
    /// Runs `work` until it finishes or this leadership ends, whichever comes first.
    pub fn spawn<F>(&self, work: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        tokio::spawn(async move {
            cancel.run_until_cancelled(work).await;
        });
    }

    /// Whether this node still leads the shard in this leader's term.
    pub fn is_current(&self) -> bool {
        !self.cancel.is_cancelled()
    }

    /// What this leadership's proposals are fenced by.
    pub fn fence(&self) -> Fence {
        Fence {
            shard: self.shard,
            term: self.term,
        }
    }
}

/// The leadership a piece of leader work belongs to: its shard and term. Its proposals to its
/// own shard are made only in that term (`RaftStore::propose_in_term`), those to other shards
/// carry it (`ShardCommand::Fenced`), so a deposed leader's late work cannot take effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub shard: GroupId,
    pub term: u64,
}

/// The supervisors of every shard's leadership, joined on shutdown.
pub struct ShardLeaders {
    cancel: CancellationToken,
    supervisors: Vec<JoinHandle<()>>,
}

impl ShardLeaders {
    /// Starts one supervisor per shard this node holds a replica of.
    pub fn start(engine: &Engine) -> anyhow::Result<Self> {
        let cancel = CancellationToken::new();
        let mut supervisors = Vec::new();
        for shard in engine.shard_ids().filter(|s| engine.holds(*s)) {
            let leadership = engine.store().watch_leadership(shard)?;
            supervisors.push(tokio::spawn(supervise(
                engine.clone(),
                shard,
                leadership,
                cancel.clone(),
            )));
        }
        Ok(ShardLeaders {
            cancel,
            supervisors,
        })
    }

    /// Stops every shard's leader work and waits for the supervisors to finish.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for supervisor in self.supervisors {
            let _ = supervisor.await;
        }
    }
}

/// Follows one shard's leadership: a [`ShardLeader`] runs exactly while this node leads it.
async fn supervise(
    engine: Engine,
    shard: GroupId,
    mut leadership: watch::Receiver<Option<u64>>,
    stop: CancellationToken,
) {
    loop {
        let term = *leadership.borrow_and_update();
        if let Some(term) = term {
            let cancel = stop.child_token();
            let led = tokio::spawn(lead(engine.clone(), shard, term, cancel.clone()));
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = leadership.wait_for(|t| *t != Some(term)) => {}
            }
            cancel.cancel();
            let _ = led.await;
            tracing::info!(%shard, term, "stopped leading shard");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = leadership.changed() => if changed.is_err() { return },
        }
    }
}

/// Failpoint `effect-dispatch`: a test loses an applied entry's effect here, as a node that
/// died between commit and dispatch would (see `failpoint_tests`).
fn dispatch_lost() -> bool {
    fail::fail_point!("effect-dispatch", |_| true);
    false
}

/// One term of leadership of `shard`, until `cancel`.
async fn lead(engine: Engine, shard: GroupId, term: u64, cancel: CancellationToken) {
    let (tx, mut rx) = mpsc::channel(EFFECT_CAPACITY);
    let overflowed = Arc::new(Mutex::new(None));
    let wake = Arc::new(Notify::new());
    let timers = Arc::new(crate::timers::ArmedTimers::default());
    engine.clock().watch_timers(&timers);
    let leader = ShardLeader {
        shard,
        term,
        cancel: cancel.clone(),
        timers,
    };
    // Registered before the rebuild reads state: an entry applied in between is seen at least
    // once, by the rebuild or on the channel.
    engine.effects().register(
        shard,
        Sink {
            term,
            tx,
            overflowed: overflowed.clone(),
            wake: wake.clone(),
        },
    );
    tracing::info!(%shard, term, "leading shard");
    leader.spawn(crate::engine::timer_service(engine.clone(), leader.clone()));
    rebuild(&engine, &leader).await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            effect = rx.recv() => match effect {
                Some(_) if dispatch_lost() => {}
                // The hold goes once the effect is dispatched: a timer is armed by then.
                Some((effect, _hold)) => engine.dispatch(&leader, effect),
                None => break,
            },
            _ = wake.notified() => {
                let overflow = lock(&overflowed).take();
                if let Some(_hold) = overflow {
                    tracing::warn!(%shard, term, "effect channel overflowed; rebuilding from state");
                    while rx.try_recv().is_ok() {}
                    rebuild(&engine, &leader).await;
                }
            }
        }
    }
    engine.effects().unregister(shard, term);
    cancel.cancel();
    engine.forget_partitions(shard);
}

/// Rebuilds the leader's work from committed state, retrying while the state cannot be read.
async fn rebuild(engine: &Engine, leader: &ShardLeader) {
    while leader.is_current() {
        match engine.recover_shard(leader) {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(shard = %leader.shard, error = %e, "rebuilding leader state failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use dura_history::tasks::{TimerKind, TimerTask};

    use super::*;

    fn timer_effect(run_id: &str) -> Effect {
        Effect::Task(
            RunKey::new("ns", "wf", run_id),
            Task::Timer(TimerTask {
                fire_at: 1,
                kind: TimerKind::WorkflowRunTimeout,
            }),
        )
    }

    fn sink(term: u64, capacity: usize) -> (Sink, mpsc::Receiver<(Effect, ClockHold)>) {
        let (tx, rx) = mpsc::channel(capacity);
        let sink = Sink {
            term,
            tx,
            overflowed: Arc::default(),
            wake: Arc::default(),
        };
        (sink, rx)
    }

    fn run_id((effect, _): &(Effect, ClockHold)) -> &str {
        match effect {
            Effect::Task(run, _) => &run.run_id,
            Effect::Schedule { .. } | Effect::Backlogged(_) => "",
        }
    }

    #[tokio::test]
    async fn effects_reach_the_leader_only_once_their_batch_is_written() {
        let effects = Arc::new(AppliedEffects::default());
        let (sink, mut rx) = sink(3, 16);
        effects.register(GroupId(1), sink);
        effects.stage(GroupId(1), None, [timer_effect("a"), timer_effect("b")]);
        assert!(rx.try_recv().is_err(), "staged effects wait for the write");
        effects.flush(GroupId(1));
        assert_eq!(run_id(&rx.try_recv().unwrap()), "a");
        assert_eq!(run_id(&rx.try_recv().unwrap()), "b");
        // Another group's effects are not this leader's.
        effects.stage(GroupId(2), None, [timer_effect("c")]);
        effects.flush(GroupId(2));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_follower_drops_effects_and_a_stale_term_cannot_unregister_a_newer_one() {
        let effects = Arc::new(AppliedEffects::default());
        // Nobody leads group 1 here: flushing is a no-op, not an error or a leak.
        effects.stage(GroupId(1), None, [timer_effect("a")]);
        effects.flush(GroupId(1));
        let (old, _old_rx) = sink(3, 16);
        effects.register(GroupId(1), old);
        let (new, mut new_rx) = sink(4, 16);
        effects.register(GroupId(1), new);
        effects.unregister(GroupId(1), 3);
        effects.stage(GroupId(1), None, [timer_effect("b")]);
        effects.flush(GroupId(1));
        assert_eq!(run_id(&new_rx.try_recv().unwrap()), "b");
        effects.unregister(GroupId(1), 4);
        effects.stage(GroupId(1), None, [timer_effect("c")]);
        effects.flush(GroupId(1));
        assert!(new_rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_full_channel_asks_the_leader_to_rebuild_instead_of_blocking_apply() {
        let effects = Arc::new(AppliedEffects::default());
        let (sink, mut rx) = sink(1, 2);
        let (overflowed, wake) = (sink.overflowed.clone(), sink.wake.clone());
        effects.register(GroupId(1), sink);
        effects.stage(
            GroupId(1),
            None,
            (0..5).map(|i| timer_effect(&i.to_string())),
        );
        effects.flush(GroupId(1));
        assert!(lock(&overflowed).is_some());
        // The wake is stored for the leader even though nobody waits on it yet.
        tokio::time::timeout(std::time::Duration::from_secs(10), wake.notified())
            .await
            .expect("the leader is woken");
        assert_eq!(run_id(&rx.try_recv().unwrap()), "0");
        assert_eq!(run_id(&rx.try_recv().unwrap()), "1");
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn watchers_of_a_workflow_wake_after_the_write_and_only_for_their_workflow() {
        let effects = Arc::new(AppliedEffects::default());
        let mut watch = effects.watch_workflow("ns", "wf");
        let mut other = effects.watch_workflow("ns", "other");
        watch.mark_seen();
        other.mark_seen();
        effects.stage(GroupId(1), Some(("ns".into(), "wf".into())), []);
        assert!(
            !watch.rx.has_changed().unwrap(),
            "not before the batch is written"
        );
        effects.flush(GroupId(1));
        tokio::time::timeout(std::time::Duration::from_secs(10), watch.changed())
            .await
            .expect("woken");
        assert!(!other.rx.has_changed().unwrap());
        drop(watch);
        drop(other);
        assert!(
            lock(&effects.watches).is_empty(),
            "the last subscriber removes its entry"
        );
    }
}
