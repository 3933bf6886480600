//! Every key the history crate writes, in one place.
//!
//! All keys start with `H` (history's space inside a shard's key/value state) and a kind byte.
//! Strings are length-prefixed (u32 BE), so no key of one workflow/run is a prefix of another's;
//! event ids are u64 BE so a prefix scan returns a run's events in id order.
//!
//! | kind | key                                        | value                         |
//! |------|--------------------------------------------|-------------------------------|
//! | `c`  | `Hc ‖ ns ‖ workflow_id`                    | current run record (bincode)  |
//! | `m`  | `Hm ‖ ns ‖ workflow_id ‖ run_id`           | `MutableState` (bincode)      |
//! | `e`  | `He ‖ ns ‖ workflow_id ‖ run_id ‖ id BE`   | `HistoryEvent` (prost)        |
//! | `v`  | `Hv ‖ ns ‖ workflow_id ‖ run_id`           | `VisibilityRecord` (bincode)  |
//! | `o`  | `Ho ‖ ns ‖ workflow_id ‖ run_id ‖ kind ‖ scheduled id BE` | `OutboxRecord` (bincode) |
//! | `s`  | `Hs ‖ ns ‖ schedule_id`                    | `ScheduleRecord` (bincode)    |

use serde::{Deserialize, Serialize};

const ROOT: u8 = b'H';
const CURRENT: u8 = b'c';
const MUTABLE_STATE: u8 = b'm';
const EVENT: u8 = b'e';
const VISIBILITY: u8 = b'v';
const OUTBOX: u8 = b'o';
const SCHEDULE: u8 = b's';

/// Identifies one run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunKey {
    pub namespace_id: String,
    pub workflow_id: String,
    pub run_id: String,
}

impl RunKey {
    pub fn new(
        namespace_id: impl Into<String>,
        workflow_id: impl Into<String>,
        run_id: impl Into<String>,
    ) -> Self {
        RunKey {
            namespace_id: namespace_id.into(),
            workflow_id: workflow_id.into(),
            run_id: run_id.into(),
        }
    }
}

fn push_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn tag(&mut self, expected: u8) -> Option<()> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        (b == expected).then_some(())
    }

    fn str(&mut self) -> Option<String> {
        if self.0.len() < 4 {
            return None;
        }
        let (len, rest) = self.0.split_at(4);
        let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
        if rest.len() < len {
            return None;
        }
        let (s, rest) = rest.split_at(len);
        self.0 = rest;
        String::from_utf8(s.to_vec()).ok()
    }

    fn u64(&mut self) -> Option<u64> {
        if self.0.len() < 8 {
            return None;
        }
        let (v, rest) = self.0.split_at(8);
        self.0 = rest;
        Some(u64::from_be_bytes(v.try_into().ok()?))
    }

    fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

fn with_kind(kind: u8) -> Vec<u8> {
    vec![ROOT, kind]
}

/// The current-run record of a workflow id.
pub fn current_execution(namespace_id: &str, workflow_id: &str) -> Vec<u8> {
    let mut k = with_kind(CURRENT);
    push_str(&mut k, namespace_id);
    push_str(&mut k, workflow_id);
    k
}

pub fn decode_current_execution(key: &[u8]) -> Option<(String, String)> {
    let mut r = Reader(key);
    r.tag(ROOT)?;
    r.tag(CURRENT)?;
    let out = (r.str()?, r.str()?);
    r.end()?;
    Some(out)
}

fn run_key(kind: u8, run: &RunKey) -> Vec<u8> {
    let mut k = with_kind(kind);
    push_str(&mut k, &run.namespace_id);
    push_str(&mut k, &run.workflow_id);
    push_str(&mut k, &run.run_id);
    k
}

fn read_run(r: &mut Reader<'_>, kind: u8) -> Option<RunKey> {
    r.tag(ROOT)?;
    r.tag(kind)?;
    Some(RunKey {
        namespace_id: r.str()?,
        workflow_id: r.str()?,
        run_id: r.str()?,
    })
}

/// A run's mutable state.
pub fn mutable_state(run: &RunKey) -> Vec<u8> {
    run_key(MUTABLE_STATE, run)
}

/// Prefix of every run's mutable state (to rebuild a leader's task index).
pub fn mutable_state_prefix() -> Vec<u8> {
    with_kind(MUTABLE_STATE)
}

pub fn decode_mutable_state(key: &[u8]) -> Option<RunKey> {
    let mut r = Reader(key);
    let run = read_run(&mut r, MUTABLE_STATE)?;
    r.end()?;
    Some(run)
}

/// Prefix of all events of a run.
pub fn events_prefix(run: &RunKey) -> Vec<u8> {
    run_key(EVENT, run)
}

/// One history event.
pub fn event(run: &RunKey, event_id: i64) -> Vec<u8> {
    let mut k = events_prefix(run);
    k.extend_from_slice(&(event_id.max(0) as u64).to_be_bytes());
    k
}

pub fn decode_event(key: &[u8]) -> Option<(RunKey, i64)> {
    let mut r = Reader(key);
    let run = read_run(&mut r, EVENT)?;
    let id = r.u64()?;
    r.end()?;
    Some((run, id as i64))
}

/// A run's visibility record.
pub fn visibility(namespace_id: &str, workflow_id: &str, run_id: &str) -> Vec<u8> {
    run_key(VISIBILITY, &RunKey::new(namespace_id, workflow_id, run_id))
}

/// Prefix of every visibility record of a namespace.
pub fn visibility_prefix(namespace_id: &str) -> Vec<u8> {
    let mut k = with_kind(VISIBILITY);
    push_str(&mut k, namespace_id);
    k
}

/// The outbox record of a run's workflow (`kind` b'w') or activity (b'a') task.
pub fn outbox(run: &RunKey, kind: u8, scheduled_event_id: i64) -> Vec<u8> {
    let mut k = run_key(OUTBOX, run);
    k.push(kind);
    k.extend_from_slice(&(scheduled_event_id.max(0) as u64).to_be_bytes());
    k
}

/// Prefix of every outbox record of the shard.
pub fn outbox_prefix() -> Vec<u8> {
    with_kind(OUTBOX)
}

/// A schedule.
pub fn schedule(namespace_id: &str, schedule_id: &str) -> Vec<u8> {
    let mut k = with_kind(SCHEDULE);
    push_str(&mut k, namespace_id);
    push_str(&mut k, schedule_id);
    k
}

/// Prefix of the shard's schedules, of one namespace or of all.
pub fn schedule_prefix(namespace_id: Option<&str>) -> Vec<u8> {
    let mut k = with_kind(SCHEDULE);
    if let Some(ns) = namespace_id {
        push_str(&mut k, ns);
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> RunKey {
        RunKey::new("ns-1", "wf/with:odd chars", "run-1")
    }

    #[test]
    fn round_trips() {
        assert_eq!(
            decode_current_execution(&current_execution("ns", "wf")),
            Some(("ns".into(), "wf".into()))
        );
        assert_eq!(decode_mutable_state(&mutable_state(&run())), Some(run()));
        assert_eq!(decode_event(&event(&run(), 42)), Some((run(), 42)));
        assert!(decode_event(&mutable_state(&run())).is_none());
        assert!(decode_mutable_state(&event(&run(), 1)).is_none());
    }

    #[test]
    fn events_sort_by_id_and_stay_inside_their_run() {
        let a = event(&run(), 2);
        let b = event(&run(), 10);
        let c = event(&run(), 256);
        assert!(a < b && b < c);
        assert!(a.starts_with(&events_prefix(&run())));
        // A workflow id that extends another is not caught by the other's prefix.
        let other = RunKey::new("ns-1", "wf/with:odd chars2", "run-1");
        assert!(!event(&other, 1).starts_with(&events_prefix(&run())));
        assert!(mutable_state(&run()).starts_with(&mutable_state_prefix()));
        assert!(visibility("ns-1", "wf", "r").starts_with(&visibility_prefix("ns-1")));
        assert!(!visibility("ns-10", "wf", "r").starts_with(&visibility_prefix("ns-1")));
        assert!(outbox(&run(), b'w', 2).starts_with(&outbox_prefix()));
        assert_ne!(outbox(&run(), b'w', 2), outbox(&run(), b'a', 2));
    }
}
