//! The engine's time source. Every `now` that enters a command (and so history) and every
//! deadline a leader waits for comes from here, never from the system clock directly.
//!
//! - [`Clock::Wall`]: the system clock. start-dev and clusters.
//! - [`Clock::Virtual`]: the time-skipping clock of `dura server start-test`, which behaves as
//!   the one of Temporal's Java test server (`SelfAdvancingTimerImpl`): virtual time runs at
//!   wall-clock pace while time skipping is *locked*, and when nothing holds it, it jumps to the
//!   next deadline at once, which then fires before the next jump.
//!
//! # What locks time skipping
//! The lock count is one number, the sum of:
//! - the test service's explicit `LockTimeSkipping`/`UnlockTimeSkipping` balance (it starts at
//!   1 unless `--enable-time-skipping`, and may go below zero while the server's own locks
//!   cover it; an unlock that would take the sum below zero is refused, as the Java server's
//!   "unbalanced lock and unlock calls");
//! - the runs the server owes work to (a workflow task or an activity scheduled or running, a
//!   child start in flight: [`MutableState::owes_work`](dura_history::MutableState::owes_work)),
//!   noted from every applied write of a run's state;
//! - [`ClockHold`]s: work between a commit and its effect — applied effects on their way to
//!   the shard leader (so a timer a transition arms is known before time moves on), a timer
//!   being fired until its `FireTimer` is applied, a child-workflow transfer until it is done;
//! - one while no deadline is pending at all, as in the Java server (time then simply runs).
//!
//! A single node only: the busy runs are noted where entries are applied, which on a one-node
//! server is also where the shards are led.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use dura_history::{keys::RunKey, time::Nanos};
use tokio::sync::{Notify, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::timers::ArmedTimers;

#[derive(Clone, Default)]
pub enum Clock {
    #[default]
    Wall,
    Virtual(Arc<VirtualClock>),
}

fn wall_nanos() -> Nanos {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as Nanos)
        .unwrap_or(0)
}

impl Clock {
    /// Now, in the state machine's time unit. Time enters the log here, never in apply.
    pub fn now(&self) -> Nanos {
        match self {
            Clock::Wall => wall_nanos(),
            Clock::Virtual(v) => v.now(),
        }
    }

    /// Keeps virtual time from jumping while the returned hold lives.
    pub fn hold(&self) -> ClockHold {
        match self {
            Clock::Wall => ClockHold(None),
            Clock::Virtual(v) => ClockHold(Some(Arc::new(HoldGuard::new(v)))),
        }
    }

    /// Whether apply must note which runs the server owes work to.
    pub fn tracks_runs(&self) -> bool {
        matches!(self, Clock::Virtual(_))
    }

    /// A run's state was written: the server does (or no longer does) owe it work.
    pub fn note_run(&self, run: RunKey, owes_work: bool) {
        if let Clock::Virtual(v) = self {
            let mut s = v.state();
            let changed = match owes_work {
                true => s.busy_runs.insert(run),
                false => s.busy_runs.remove(&run),
            };
            drop(s);
            if changed {
                v.changed.notify_one();
            }
        }
    }

    /// Lets the clock see a shard leader's armed timers: it jumps to their deadlines.
    pub fn watch_timers(&self, timers: &Arc<ArmedTimers>) {
        if let Clock::Virtual(v) = self {
            let mut s = v.state();
            s.timers.retain(|t| t.strong_count() > 0);
            s.timers.push(Arc::downgrade(timers));
        }
    }

    /// How long to wait on the wall clock for `deadline` (virtual time runs at wall pace
    /// whenever it does not jump).
    pub fn wall_wait(&self, deadline: Nanos) -> Duration {
        Duration::from_nanos((deadline - self.now()).max(0) as u64)
    }

    /// The jumps of virtual time from now on (none on the wall clock): deadlines computed
    /// from an earlier now must be looked at again after one.
    pub fn jumps(&self) -> Jumps {
        Jumps(match self {
            Clock::Wall => None,
            Clock::Virtual(v) => Some(v.jumps.subscribe()),
        })
    }

    /// Waits until `deadline` on this clock, a deadline the virtual clock may jump to (the
    /// test service's `Sleep`, a schedule's next time). The hold it returns keeps virtual time
    /// from moving on until the work due at `deadline` is done.
    ///
    /// The deadline is known to the virtual clock from this call on, not from the first poll:
    /// a caller may release its own hold as soon as it has the future, and no jump passes
    /// over the deadline in between.
    pub fn sleep_until(&self, deadline: Nanos) -> impl Future<Output = ClockHold> + Send + 'static {
        let wait = match self {
            Clock::Wall => Err(self.wall_wait(deadline)),
            Clock::Virtual(v) => Ok(v.clone().sleep_until(deadline)),
        };
        async move {
            match wait {
                Err(wall) => {
                    tokio::time::sleep(wall).await;
                    ClockHold(None)
                }
                Ok(virtual_wait) => virtual_wait.await,
            }
        }
    }
}

pub struct Jumps(Option<watch::Receiver<u64>>);

impl Jumps {
    /// Resolves at the next jump not yet seen.
    pub async fn next(&mut self) {
        match &mut self.0 {
            Some(rx) => {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await
                }
            }
            None => std::future::pending().await,
        }
    }
}

/// Holds virtual time still while it lives; clones share one hold. A no-op on the wall clock.
#[derive(Clone)]
pub struct ClockHold(#[allow(dead_code)] Option<Arc<HoldGuard>>);

struct HoldGuard(Arc<VirtualClock>);

impl HoldGuard {
    fn new(clock: &Arc<VirtualClock>) -> Self {
        clock.state().holds += 1;
        HoldGuard(clock.clone())
    }
}

impl Drop for HoldGuard {
    fn drop(&mut self) {
        self.0.state().holds -= 1;
        self.0.changed.notify_one();
    }
}

/// Removes a sleeper whose wait was given up.
struct Forget(Arc<VirtualClock>, (Nanos, u64));

impl Drop for Forget {
    fn drop(&mut self) {
        self.0.state().sleepers.remove(&self.1);
    }
}

/// The test service's refusal of an unlock that no lock balances.
#[derive(Debug, thiserror::Error)]
#[error("unbalanced lock and unlock calls: time skipping is not locked")]
pub struct UnbalancedUnlock;

pub struct VirtualClock {
    state: Mutex<VirtualState>,
    /// Wakes the pump: the lock count or the pending deadlines changed.
    changed: Notify,
    /// Bumped at every jump, so waits computed from the old time are looked at again.
    jumps: watch::Sender<u64>,
}

struct VirtualState {
    /// Virtual now minus wall now.
    offset: Nanos,
    /// LockTimeSkipping minus UnlockTimeSkipping calls, plus the initial lock.
    explicit: i64,
    holds: i64,
    busy_runs: HashSet<RunKey>,
    /// Waits for a virtual deadline (test service sleeps, schedules), by (deadline, id).
    sleepers: BTreeMap<(Nanos, u64), Sleeper>,
    next_sleeper: u64,
    timers: Vec<Weak<ArmedTimers>>,
}

struct Sleeper {
    /// Gets a hold taken as it wakes, so time stays until the sleeper's work is done.
    woken: oneshot::Sender<ClockHold>,
    /// `UnlockTimeSkippingWithSleep`: time skipping is locked again when it wakes.
    relock: bool,
}

impl VirtualState {
    fn next_timer(&self) -> Option<Nanos> {
        self.timers
            .iter()
            .filter_map(|t| t.upgrade()?.next_deadline())
            .min()
    }

    fn next_deadline(&self) -> Option<Nanos> {
        let sleeper = self.sleepers.keys().next().map(|(at, _)| *at);
        [self.next_timer(), sleeper].into_iter().flatten().min()
    }

    /// The lock count as the Java server keeps it (see the module doc).
    fn locks(&self) -> i64 {
        let idle = self.next_deadline().is_none() as i64;
        self.explicit + self.holds + self.busy_runs.len() as i64 + idle
    }
}

impl VirtualClock {
    /// A clock at the wall clock's time, locked once unless `skipping` (the Java server's
    /// `--enable-time-skipping`).
    pub fn new(skipping: bool) -> Arc<Self> {
        Arc::new(VirtualClock {
            state: Mutex::new(VirtualState {
                offset: 0,
                explicit: if skipping { 0 } else { 1 },
                holds: 0,
                busy_runs: HashSet::new(),
                sleepers: BTreeMap::new(),
                next_sleeper: 0,
                timers: Vec::new(),
            }),
            changed: Notify::new(),
            jumps: watch::channel(0).0,
        })
    }

    fn state(&self) -> MutexGuard<'_, VirtualState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn now(&self) -> Nanos {
        wall_nanos() + self.state().offset
    }

    pub fn lock(&self) {
        self.state().explicit += 1;
        self.changed.notify_one();
    }

    pub fn unlock(&self) -> Result<(), UnbalancedUnlock> {
        let mut s = self.state();
        if s.locks() <= 0 {
            return Err(UnbalancedUnlock);
        }
        s.explicit -= 1;
        drop(s);
        self.changed.notify_one();
        Ok(())
    }

    /// Resolves once virtual time reaches `deadline`, holding the clock for the work that
    /// follows (see [`Clock::sleep_until`]).
    pub fn sleep_until(
        self: Arc<Self>,
        deadline: Nanos,
    ) -> impl Future<Output = ClockHold> + Send + 'static {
        let (key, woken) = self.add_sleeper(&mut self.state(), deadline, false);
        self.changed.notify_one();
        // A wait given up (a schedule changed meanwhile) leaves no deadline to jump to.
        let forget = Forget(self, key);
        async move {
            // Dropped unanswered only if the pump stopped (shutdown); the wait ends either way.
            let hold = woken.await.unwrap_or(ClockHold(None));
            // Already removed by the pump that woke it.
            drop(forget);
            hold
        }
    }

    /// Unlocks time skipping and waits until `deadline`, locked again when it returns
    /// (`UnlockTimeSkippingWithSleep`).
    pub async fn unlock_while_sleeping(&self, deadline: Nanos) -> Result<(), UnbalancedUnlock> {
        let woken = {
            let mut s = self.state();
            if s.locks() <= 0 {
                return Err(UnbalancedUnlock);
            }
            s.explicit -= 1;
            self.add_sleeper(&mut s, deadline, true).1
        };
        self.changed.notify_one();
        let _ = woken.await;
        Ok(())
    }

    fn add_sleeper(
        &self,
        s: &mut VirtualState,
        deadline: Nanos,
        relock: bool,
    ) -> ((Nanos, u64), oneshot::Receiver<ClockHold>) {
        let (woken, rx) = oneshot::channel();
        s.next_sleeper += 1;
        let key = (deadline, s.next_sleeper);
        s.sleepers.insert(key, Sleeper { woken, relock });
        (key, rx)
    }

    /// Moves virtual time: wakes the sleepers whose deadline has come and, when nothing
    /// locks time skipping and no timer is due but not yet taken, jumps to the next deadline.
    /// Runs until `cancel`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        // Bounds the wait for changes nobody announced (a timer armed again after a failed
        // proposal), which a test server can afford to look for.
        const LOOK_AGAIN: Duration = Duration::from_millis(100);
        loop {
            let wait = self.step();
            tokio::select! {
                _ = cancel.cancelled() => return,
                () = self.changed.notified() => {}
                _ = tokio::time::sleep(wait.min(LOOK_AGAIN)) => {}
            }
        }
    }

    /// One look at the clock; returns how long (wall time) the next look may wait if nothing
    /// changes.
    fn step(self: &Arc<Self>) -> Duration {
        let mut woken = Vec::new();
        let wait = {
            let mut s = self.state();
            loop {
                let now = wall_nanos() + s.offset;
                while let Some(entry) = s.sleepers.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    let sleeper = entry.remove();
                    if sleeper.relock {
                        s.explicit += 1;
                    }
                    // Counted now, so the next round of this loop sees the sleeper's work.
                    s.holds += 1;
                    woken.push(sleeper.woken);
                }
                let Some(next) = s.next_deadline() else {
                    break Duration::MAX;
                };
                if next <= now {
                    // A timer came due: its service takes it, holding the clock.
                    break Duration::from_millis(5);
                }
                if s.locks() > 0 {
                    break Duration::from_nanos((next - now) as u64);
                }
                s.offset += next - now;
                tracing::debug!(skipped_ms = (next - now) / 1_000_000, "virtual time jumped");
                self.jumps.send_modify(|j| *j += 1);
            }
        };
        // Outside the state lock: a hold whose sleeper went away is released right here.
        for sleeper in woken {
            let _ = sleeper.send(ClockHold(Some(Arc::new(HoldGuard(self.clone())))));
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dura_history::tasks::{TimerKind, TimerTask};

    const HOUR: Nanos = 3600 * 1_000_000_000;

    fn skipping() -> (Clock, Arc<VirtualClock>) {
        let v = VirtualClock::new(true);
        (Clock::Virtual(v.clone()), v)
    }

    fn timer(fire_at: Nanos) -> TimerTask {
        TimerTask {
            fire_at,
            kind: TimerKind::WorkflowRunTimeout,
        }
    }

    #[test]
    fn unlocked_time_jumps_to_the_next_timer_and_stops_while_it_is_due() {
        let (clock, v) = skipping();
        let timers = Arc::new(ArmedTimers::default());
        clock.watch_timers(&timers);
        let start = clock.now();
        timers.arm(RunKey::new("ns", "wf", "r"), timer(start + HOUR));
        timers.arm(RunKey::new("ns", "wf", "r"), timer(start + 2 * HOUR));
        v.step();
        let now = clock.now();
        assert!(
            now >= start + HOUR && now < start + HOUR + HOUR / 60,
            "jumped one hour"
        );
        // Due but not taken: no further jump.
        v.step();
        assert!(clock.now() < start + 2 * HOUR);
        // Taken while held: still no jump until the fire is applied.
        let hold = clock.hold();
        assert_eq!(timers.take_due(clock.now()).len(), 1);
        v.step();
        assert!(clock.now() < start + 2 * HOUR);
        drop(hold);
        v.step();
        assert!(clock.now() >= start + 2 * HOUR);
    }

    #[test]
    fn a_run_owed_work_and_an_explicit_lock_keep_time_at_wall_pace() {
        let (clock, v) = skipping();
        let timers = Arc::new(ArmedTimers::default());
        clock.watch_timers(&timers);
        let start = clock.now();
        timers.arm(RunKey::new("ns", "wf", "r"), timer(start + HOUR));
        let run = RunKey::new("ns", "wf", "r");
        clock.note_run(run.clone(), true);
        v.step();
        assert!(clock.now() < start + HOUR);
        clock.note_run(run, false);
        v.lock();
        v.step();
        assert!(clock.now() < start + HOUR);
        v.unlock().unwrap();
        v.step();
        assert!(clock.now() >= start + HOUR);
    }

    #[test]
    fn an_unlock_without_a_lock_is_refused() {
        let v = VirtualClock::new(false);
        // Locked once at start, plus the lock of an empty timer queue (as in the Java server).
        v.unlock().unwrap();
        v.unlock().unwrap();
        assert!(v.unlock().is_err());
        v.lock();
        v.unlock().unwrap();
    }

    #[tokio::test]
    async fn a_given_up_sleep_leaves_no_deadline_to_jump_to() {
        let (clock, v) = skipping();
        v.lock();
        let start = clock.now();
        let sleep = clock.sleep_until(start + HOUR);
        tokio::select! {
            _ = sleep => panic!("time is locked"),
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
        v.unlock().unwrap();
        v.step();
        assert!(
            clock.now() < start + HOUR,
            "jumped to a sleep nobody waits for"
        );
    }

    #[tokio::test]
    async fn a_sleep_with_unlock_skips_time_and_locks_again() {
        let (clock, v) = skipping();
        let cancel = CancellationToken::new();
        tokio::spawn(v.clone().run(cancel.clone()));
        v.lock();
        let start = clock.now();
        v.unlock_while_sleeping(start + 30 * 24 * HOUR)
            .await
            .unwrap();
        assert!(clock.now() >= start + 30 * 24 * HOUR);
        // Locked again: a second unlock is accepted, a third (beyond the idle lock) is not.
        v.unlock().unwrap();
        v.unlock().unwrap();
        assert!(v.unlock().is_err());
        cancel.cancel();
    }
}
