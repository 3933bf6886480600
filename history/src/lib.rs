//! Dura's history: workflow mutable state, event history and the deterministic command
//! processor behind Temporal's workflow APIs.
//!
//! # Role
//! Every change to a workflow run is a request applied to the run's [`MutableState`] by a
//! pure function (`api::*`, or [`api::apply`] for any run-scoped [`api::RunRequest`]). The
//! function returns a [`Transition`]: the new history events (with their final ids), the tasks
//! the leader must dispatch (matching, timers) and the reply for the caller. Dura logs each
//! request in the workflow shard's Raft group and applies it on every replica.
//!
//! # Invariants
//! - **Pure and deterministic.** No clock, randomness or I/O: `now` (unix nanos, see
//!   [`time`]) and generated ids (run ids) travel inside requests; floating-point retry math
//!   avoids libm. The same request on the same state yields byte-identical state, events and
//!   tasks on every replica.
//! - **All or nothing.** A handler works on a copy of the state; an `Err` leaves the state
//!   untouched. Some requests succeed with a *reply* that is an error to relay (a workflow task
//!   completion turned into a WorkflowTaskFailed) — their transition must still be committed.
//! - **Never panics on input.** Bad requests become a typed [`HistoryError`].
//! - **Events are the wire format.** History events are Temporal's `HistoryEvent` protos, in
//!   the order and with the attributes the real server writes. Stale tasks (old attempts,
//!   replaced workflow tasks, canceled timers) are detected by the ids/stamps they carry.
//! - **Crash recovery from state alone.** Every workflow/activity task a transition emits is
//!   written to the shard's [`outbox`] in the same apply; armed timers live in mutable state
//!   ([`pending_tasks`]). A new leader re-dispatches the outbox and re-arms the timers.
//!
//! # What is stored where ([`keys`], [`store`])
//! Per workflow id a current-run record; per run its `MutableState` (bincode, proto fields as
//! prost bytes via [`pb`]) and its events (one key per event id, prost-encoded). Buffered
//! events (arrived while a workflow task ran) live in mutable state until flushed.
//!
//! # Modules
//! - [`api`]: one module per request family (`start`, `workflow_task`, `activity`, `signal`,
//!   `timer`, `lifecycle`, `children`, `updates`); command handling lives in `api::commands`.
//! - [`mutable_state`], [`tasks`], [`events`] (builders), [`retry`], [`error`], [`describe`].
//! - [`limits`]: the real server's per-workflow limits, which travel with the requests they
//!   govern.
//! - [`keys`], [`store`]: key encodings and the key/value mapping, history paging.
//! - [`outbox`]: tasks waiting to reach their task queue or another shard.
//! - [`schedules`]: stored schedules and the times their specs ask for.
//! - [`visibility`]: the per-run index record and the List/Count query language.
//! - [`tokens`]: task and history page tokens, decoded from whatever a client sends back.
//! - `fuzzing` (tests and the `fuzzing` feature only): fuzz targets over all of the above.

pub mod api;
pub mod describe;
pub mod error;
pub mod events;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod keys;
pub mod limits;
pub mod mutable_state;
pub mod outbox;
pub mod pb;
pub mod retry;
pub mod schedules;
pub mod store;
pub mod tasks;
pub mod time;
pub mod tokens;
mod transition;
pub mod visibility;

pub use api::{RunReply, RunRequest, apply};
pub use describe::{Description, describe, pending_tasks};
pub use error::HistoryError;
pub use mutable_state::MutableState;
pub use tasks::Task;
pub use transition::Transition;
