//! Maps runs onto a key/value transaction: load the state a request needs, apply it, write
//! back the new mutable state, the appended events, the current-run record and the outbox
//! records of the tasks it emitted — all in the caller's transaction (in Dura: the Raft apply
//! transaction of the workflow's shard).

use std::collections::BTreeMap;

use dura_codec::{CodecError, Kind, Persisted};
use prost::Message;
use serde::{Deserialize, Serialize};
use temporalio_protos::temporal::api::history::v1::{HistoryEvent, history_event::Attributes};

use crate::{
    api::{
        self, RunReply, RunRequest,
        external::ExternalKind,
        signal::SignalRequest,
        start::{NewRun, StartOutcome, StartWorkflowRequest},
    },
    error::{HistoryError, Result},
    keys::{self, RunKey},
    limits::Limits,
    mutable_state::MutableState,
    outbox::{self, OutboxKind},
    transition::Transition,
    visibility::{self, VisibilityRecord},
};

/// Read access to a shard's key/value state.
pub trait KvRead {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
    /// All pairs whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)>;
    /// Pairs with `start <= key < end`, in key order, at most `limit`. The default filters a
    /// prefix scan; stores with real range scans should override it.
    fn scan_range(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let common = start.iter().zip(end).take_while(|(a, b)| a == b).count();
        self.scan_prefix(&start[..common])
            .into_iter()
            .filter(|(k, _)| k.as_slice() >= start && k.as_slice() < end)
            .take(limit)
            .collect()
    }
}

/// A write transaction (`dura_raft_store::ApplyTxn` in production).
pub trait KvWrite: KvRead {
    fn put(&mut self, key: &[u8], value: &[u8]);
    fn delete(&mut self, key: &[u8]);
    /// Told of every run whose state this store was given, after its write; a store that
    /// must know which runs are owed work (a time-skipping clock) looks here.
    fn wrote_run(&mut self, _ms: &MutableState) {}
}

/// An in-memory store, for tests and tools.
#[derive(Debug, Default, Clone)]
pub struct MemKv(pub BTreeMap<Vec<u8>, Vec<u8>>);

impl KvRead for MemKv {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key).cloned()
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.0
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn scan_range(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.0
            .range(start.to_vec()..end.to_vec())
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl KvWrite for MemKv {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.0.insert(key.to_vec(), value.to_vec());
    }

    fn delete(&mut self, key: &[u8]) {
        self.0.remove(key);
    }
}

/// The run a workflow id currently points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentExecution {
    pub run_id: String,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> HistoryError {
    HistoryError::Internal(format!("corrupt {what}: {e}"))
}

pub fn read_current(
    kv: &impl KvRead,
    namespace_id: &str,
    workflow_id: &str,
) -> Result<Option<CurrentExecution>> {
    kv.get(&keys::current_execution(namespace_id, workflow_id))
        .map(|v| CurrentExecution::decode(&v).map_err(|e| corrupt("current execution", e)))
        .transpose()
}

pub fn read_run(kv: &impl KvRead, run: &RunKey) -> Result<Option<MutableState>> {
    kv.get(&keys::mutable_state(run))
        .map(|v| MutableState::decode(&v).map_err(|e| corrupt("mutable state", e)))
        .transpose()
}

/// The run `run_id` names, or the current run when `run_id` is empty (the API's convention).
pub fn resolve_run(
    kv: &impl KvRead,
    namespace_id: &str,
    workflow_id: &str,
    run_id: &str,
) -> Result<(RunKey, MutableState)> {
    let run_id = if run_id.is_empty() {
        read_current(kv, namespace_id, workflow_id)?
            .ok_or_else(|| not_found(workflow_id, ""))?
            .run_id
    } else {
        run_id.to_string()
    };
    let key = RunKey::new(namespace_id, workflow_id, run_id);
    let ms = read_run(kv, &key)?.ok_or_else(|| not_found(workflow_id, &key.run_id))?;
    Ok((key, ms))
}

fn not_found(workflow_id: &str, run_id: &str) -> HistoryError {
    HistoryError::NotFound(format!(
        "workflow execution not found for workflow ID \"{workflow_id}\" and run ID \"{run_id}\""
    ))
}

pub fn write_run(kv: &mut impl KvWrite, ms: &MutableState) -> Result<()> {
    let key = RunKey::new(&ms.namespace_id, &ms.workflow_id, &ms.run_id);
    kv.put(&keys::mutable_state(&key), &ms.encode());
    kv.wrote_run(ms);
    Ok(())
}

pub fn append_events(kv: &mut impl KvWrite, run: &RunKey, events: &[HistoryEvent]) {
    for e in events {
        kv.put(&keys::event(run, e.event_id), &e.encode_to_vec());
    }
}

fn write_current(kv: &mut impl KvWrite, ms: &MutableState) -> Result<()> {
    let value = CurrentExecution {
        run_id: ms.run_id.clone(),
    }
    .encode();
    kv.put(
        &keys::current_execution(&ms.namespace_id, &ms.workflow_id),
        &value,
    );
    Ok(())
}

/// `visible_before`: the current run's visibility record before the decision.
fn persist_start(
    kv: &mut impl KvWrite,
    current: Option<MutableState>,
    visible_before: Option<VisibilityRecord>,
    outcome: &StartOutcome,
) -> Result<()> {
    if let (Some(cur), Some(prev)) = (current, &outcome.previous_run) {
        write_run(kv, &cur)?;
        visibility::write(kv, visible_before.as_ref(), &cur)?;
        append_events(
            kv,
            &RunKey::new(&cur.namespace_id, &cur.workflow_id, &cur.run_id),
            &prev.events,
        );
    }
    if let Some(new_run) = &outcome.new_run {
        let ms = &new_run.state;
        let key = RunKey::new(&ms.namespace_id, &ms.workflow_id, &ms.run_id);
        write_run(kv, ms)?;
        visibility::write(kv, None, ms)?;
        append_events(kv, &key, &new_run.events);
        outbox::write(kv, &key, &new_run.tasks)?;
        write_current(kv, ms)?;
    }
    Ok(())
}

fn load_current_run(kv: &impl KvRead, req: &StartWorkflowRequest) -> Result<Option<MutableState>> {
    match read_current(kv, &req.namespace_id, &req.workflow_id)? {
        Some(c) => read_run(
            kv,
            &RunKey::new(&req.namespace_id, &req.workflow_id, c.run_id),
        ),
        None => Ok(None),
    }
}

/// StartWorkflowExecution against the stored current run; persists whatever it decided.
pub fn start_workflow(kv: &mut impl KvWrite, req: StartWorkflowRequest) -> Result<StartOutcome> {
    let mut current = load_current_run(kv, &req)?;
    let visible_before = current.as_ref().map(VisibilityRecord::of);
    let outcome = api::start::start_workflow(current.as_mut(), req)?;
    persist_start(kv, current, visible_before, &outcome)?;
    Ok(outcome)
}

/// SignalWithStartWorkflowExecution against the stored current run.
pub fn signal_with_start(
    kv: &mut impl KvWrite,
    req: StartWorkflowRequest,
    signal: SignalRequest,
) -> Result<StartOutcome> {
    let mut current = load_current_run(kv, &req)?;
    let visible_before = current.as_ref().map(VisibilityRecord::of);
    let outcome = api::start::signal_with_start(current.as_mut(), req, signal)?;
    persist_start(kv, current, visible_before, &outcome)?;
    Ok(outcome)
}

/// What applying a run-scoped request committed.
#[derive(Debug)]
pub struct RunApplied {
    pub run: RunKey,
    pub transition: Transition<RunReply>,
    /// The run that continues the closed one (a workflow retry), now the current run.
    pub new_run: Option<(RunKey, NewRun)>,
}

/// Applies a run-scoped request to a stored run (`run_id` empty = current run), held to
/// `limits`, and persists the result, including the run that continues it if it closed into
/// one. On error nothing is written.
pub fn apply_to_run(
    kv: &mut impl KvWrite,
    namespace_id: &str,
    workflow_id: &str,
    run_id: &str,
    req: RunRequest,
    limits: &Limits,
) -> Result<RunApplied> {
    let (key, mut ms) = resolve_run(kv, namespace_id, workflow_id, run_id)?;
    let visible_before = VisibilityRecord::of(&ms);
    let started = match &req {
        RunRequest::RecordWorkflowTaskStarted(r) => {
            Some((OutboxKind::WorkflowTask, r.scheduled_event_id))
        }
        RunRequest::RecordActivityTaskStarted(r) => {
            Some((OutboxKind::ActivityTask, r.scheduled_event_id))
        }
        RunRequest::ChildStarted(r) => Some((OutboxKind::StartChild, r.initiated_event_id)),
        RunRequest::ChildStartFailed(r) => Some((OutboxKind::StartChild, r.initiated_event_id)),
        RunRequest::ExternalReported(r) => Some((
            match r.kind {
                ExternalKind::Signal => OutboxKind::SignalExternal,
                ExternalKind::Cancel => OutboxKind::CancelExternal,
            },
            r.initiated_event_id,
        )),
        _ => None,
    };
    let t = api::apply(&mut ms, req, limits)?;
    let new_run = match &t.continuation {
        Some(c) => {
            let started = match read_start_event(kv, &key)?.attributes {
                Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => a,
                _ => return Err(HistoryError::Internal("run has no start event".into())),
            };
            let new_run = api::start::continue_run(&ms, &started, c)?;
            let new_key = RunKey::new(namespace_id, workflow_id, &new_run.state.run_id);
            Some((new_key, new_run))
        }
        None => None,
    };
    write_run(kv, &ms)?;
    visibility::write(kv, Some(&visible_before), &ms)?;
    append_events(kv, &key, &t.events);
    if let Some((kind, scheduled_event_id)) = started {
        outbox::remove_started(kv, &key, kind, scheduled_event_id);
    }
    outbox::write(kv, &key, &t.tasks)?;
    if let Some((new_key, new_run)) = &new_run {
        write_run(kv, &new_run.state)?;
        visibility::write(kv, None, &new_run.state)?;
        append_events(kv, new_key, &new_run.events);
        outbox::write(kv, new_key, &new_run.tasks)?;
        write_current(kv, &new_run.state)?;
    }
    Ok(RunApplied {
        run: key,
        transition: t,
        new_run,
    })
}

/// Every stored run (for rebuilding a leader's timers via `pending_tasks`).
pub fn scan_runs(kv: &impl KvRead) -> Result<Vec<MutableState>> {
    kv.scan_prefix(&keys::mutable_state_prefix())
        .into_iter()
        .map(|(_, v)| MutableState::decode(&v).map_err(|e| corrupt("mutable state", e)))
        .collect()
}

/// A run's first event, WorkflowExecutionStarted: what the run was started with beyond its
/// mutable state (input, header, user metadata).
pub fn read_start_event(kv: &impl KvRead, run: &RunKey) -> Result<HistoryEvent> {
    read_history(kv, run, 1, 2, 1, false)?
        .events
        .into_iter()
        .next()
        .ok_or_else(|| HistoryError::Internal("run has no start event".into()))
}

/// One page of GetWorkflowExecutionHistory.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    pub events: Vec<HistoryEvent>,
    /// Where the next page starts (pass as `from` / `to` again), None when done.
    pub next_cursor: Option<i64>,
}

/// Reads events `from..to` (ids, `to` exclusive; use the run's `next_event_id`) of a run.
/// Forward pages start at `from` and the cursor is the next id; reverse pages start at `to - 1`
/// and the cursor is the new exclusive upper bound.
pub fn read_history(
    kv: &impl KvRead,
    run: &RunKey,
    from: i64,
    to: i64,
    page_size: usize,
    reverse: bool,
) -> Result<HistoryPage> {
    let from = from.max(1);
    let page = page_size.max(1) as i64;
    if from >= to {
        return Ok(HistoryPage {
            events: Vec::new(),
            next_cursor: None,
        });
    }
    let (lo, hi) = if reverse {
        ((to - page).max(from), to)
    } else {
        (from, (from + page).min(to))
    };
    let mut events = kv
        .scan_range(
            &keys::event(run, lo),
            &keys::event(run, hi),
            (hi - lo) as usize,
        )
        .into_iter()
        .map(|(_, v)| HistoryEvent::decode(v.as_slice()).map_err(|e| corrupt("history event", e)))
        .collect::<Result<Vec<_>>>()?;
    let next_cursor = if reverse {
        events.reverse();
        (lo > from).then_some(lo)
    } else {
        (hi < to).then_some(hi)
    };
    Ok(HistoryPage {
        events,
        next_cursor,
    })
}

impl Persisted for CurrentExecution {
    const KIND: Kind = Kind::CurrentExecution;
}

/// Version 2 added `signals_external` and `cancels_external`, the last fields. bincode writes
/// a struct's fields in order with nothing after them, and an empty map as its length (8 zero
/// bytes), so version 1 is version 2 without its last [`V1_TRAILER`] bytes when both are
/// empty. A run that never used the commands behind them is written as version 1, which every
/// earlier build reads (a snapshot may carry it to one); only a run that used them — which a
/// node proposes once every member reads version 3 log entries (`node::shard::entry`), and
/// with them this encoding — is written as version 2.
impl Persisted for MutableState {
    const KIND: Kind = Kind::MutableState;
    const VERSION: u8 = 2;

    fn decode_older(version: u8, payload: &[u8]) -> std::result::Result<Self, CodecError> {
        // 0: bare bincode from before envelopes, of the version-1 shape.
        if version > 1 {
            return Err(CodecError::UnreadableVersion {
                kind: Self::KIND,
                version,
            });
        }
        let mut upgraded = Vec::with_capacity(payload.len() + V1_TRAILER);
        upgraded.extend_from_slice(payload);
        upgraded.extend_from_slice(&[0; V1_TRAILER]);
        dura_codec::payload_of(Self::KIND, &upgraded)
    }

    fn encode(&self) -> Vec<u8> {
        if !self.signals_external.is_empty() || !self.cancels_external.is_empty() {
            return dura_codec::encode_as(Self::KIND, Self::VERSION, self);
        }
        let mut v1 = dura_codec::encode_as(Self::KIND, 1, self);
        v1.truncate(v1.len() - V1_TRAILER);
        v1
    }
}

/// What version 2 of an encoded [`MutableState`] adds after version 1: two empty maps.
const V1_TRAILER: usize = 2 * std::mem::size_of::<u64>();
