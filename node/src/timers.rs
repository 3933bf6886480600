//! A shard leader's armed timers in deadline order: the in-memory index of the timers its
//! shard's mutable state holds, filled from committed state (rebuild, applied entries) and
//! emptied as they fire. Not a channel: it holds one entry per armed timer, never more, so
//! it is bounded by the shard's state, whatever the rate at which timers are armed.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    sync::Mutex,
};

use dura_history::{keys::RunKey, tasks::TimerTask, time::Nanos};
use tokio::sync::Notify;

#[derive(Default)]
pub struct ArmedTimers {
    queue: Mutex<Queue>,
    /// Woken when a timer is armed, so the service looks at its next deadline again.
    armed: Notify,
}

#[derive(Default)]
struct Queue {
    by_deadline: BinaryHeap<Reverse<(Nanos, u64)>>,
    entries: HashMap<u64, (RunKey, TimerTask)>,
    next_id: u64,
}

impl ArmedTimers {
    pub fn arm(&self, run: RunKey, timer: TimerTask) {
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.next_id += 1;
            let id = q.next_id;
            q.by_deadline.push(Reverse((timer.fire_at, id)));
            q.entries.insert(id, (run, timer));
        }
        self.armed.notify_one();
    }

    /// Removes and returns every timer due at `now`.
    pub fn take_due(&self, now: Nanos) -> Vec<(RunKey, TimerTask)> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let mut due = Vec::new();
        while let Some(Reverse((fire_at, id))) = q.by_deadline.peek().copied() {
            if fire_at > now {
                break;
            }
            q.by_deadline.pop();
            due.extend(q.entries.remove(&id));
        }
        due
    }

    /// The earliest deadline of an armed timer.
    pub fn next_deadline(&self) -> Option<Nanos> {
        let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.by_deadline.peek().map(|Reverse((at, _))| *at)
    }

    /// Resolves once a timer is armed (or was armed since the last call).
    pub async fn armed(&self) {
        self.armed.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(fire_at: Nanos, id: &str) -> TimerTask {
        TimerTask {
            fire_at,
            kind: dura_history::tasks::TimerKind::User {
                timer_id: id.into(),
                started_event_id: 5,
            },
        }
    }

    #[test]
    fn timers_come_due_in_deadline_order() {
        let timers = ArmedTimers::default();
        let run = RunKey::new("ns", "wf", "run");
        timers.arm(run.clone(), timer(30, "c"));
        timers.arm(run.clone(), timer(10, "a"));
        timers.arm(run.clone(), timer(20, "b"));
        assert_eq!(timers.next_deadline(), Some(10));
        assert!(timers.take_due(5).is_empty());
        let due: Vec<Nanos> = timers.take_due(20).iter().map(|(_, t)| t.fire_at).collect();
        assert_eq!(due, [10, 20]);
        assert_eq!(timers.next_deadline(), Some(30));
    }
}
