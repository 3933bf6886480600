//! A shard's Raft log entry: a [`ShardCommand`] and, for a run command, the [`Limits`] the run
//! is held to (as the proposing node is configured).
//!
//! - Version 1 is the command alone: what the earliest builds write, and read. Applied
//!   without limits.
//! - Version 2 adds the limits after it.
//! - Version 3 has the shape of version 2; it says that every member reads the requests of
//!   the commands acting on other workflows (SignalExternal, RequestCancelExternal: their
//!   deliveries and reports, and the mutable state of version 2 that records them pending).
//!   A completion in an entry of an earlier version is held to limits refusing those
//!   commands, so no replica of an earlier build ever meets what it cannot apply.
//!
//! This build writes the highest version every member reads ([`EntryFormat::allow`]): a node
//! of an earlier build would refuse a later entry, and its replica would part from the others.

use std::sync::atomic::{AtomicU8, Ordering};

use dura_codec::{CodecError, Kind, Persisted};
use dura_history::limits::Limits;
use serde::{Deserialize, Serialize};

use super::ShardCommand;

/// The highest version of a shard log entry this build reads (told to the other members in
/// its status, see `admin::NodeView`).
pub const ENTRY_VERSION: u8 = 3;

/// What this node may write into shard logs, learnt from what the members read.
#[derive(Debug)]
pub struct EntryFormat {
    writes: AtomicU8,
}

impl Default for EntryFormat {
    fn default() -> Self {
        EntryFormat {
            writes: AtomicU8::new(1),
        }
    }
}

impl EntryFormat {
    /// Every member reads entries up to `version`: write those from now on.
    pub fn allow(&self, version: u8) {
        let version = version.min(ENTRY_VERSION);
        let before = self.writes.fetch_max(version, Ordering::AcqRel);
        if version > before {
            tracing::info!(
                version,
                "every member reads this log entry version: writing it"
            );
        }
    }

    fn writes(&self) -> u8 {
        self.writes.load(Ordering::Acquire)
    }
}

#[derive(Serialize, Deserialize)]
struct LoggedCommand {
    command: ShardCommand,
    limits: Limits,
}

impl Persisted for LoggedCommand {
    const KIND: Kind = Kind::ShardCommand;
    const VERSION: u8 = ENTRY_VERSION;

    fn decode_older(version: u8, payload: &[u8]) -> Result<Self, CodecError> {
        let logged = match version {
            0 | 1 => LoggedCommand {
                command: dura_codec::payload_of(Self::KIND, payload)?,
                limits: Limits::none(),
            },
            2 => dura_codec::payload_of(Self::KIND, payload)?,
            _ => {
                return Err(CodecError::UnreadableVersion {
                    kind: Self::KIND,
                    version,
                });
            }
        };
        Ok(LoggedCommand {
            command: logged.command,
            limits: logged.limits.refusing_external_commands(),
        })
    }
}

/// Whether `command` changes a run, so the run's limits apply to it.
fn is_run_command(command: &ShardCommand) -> bool {
    match command {
        ShardCommand::Run { .. } => true,
        ShardCommand::Fenced { command, .. } => is_run_command(command),
        _ => false,
    }
}

/// The log entry of `command`; `limits` go with a run command only when `format` allows.
pub fn encode(command: ShardCommand, limits: &Limits, format: &EntryFormat) -> Vec<u8> {
    match format.writes() {
        version @ 2.. if is_run_command(&command) => {
            let logged = LoggedCommand {
                command,
                limits: limits.clone(),
            };
            dura_codec::encode_as(Kind::ShardCommand, version, &logged)
        }
        _ => dura_codec::encode_as(Kind::ShardCommand, 1, &command),
    }
}

/// The command of a log entry and the limits it is held to.
pub fn decode(entry: &[u8]) -> Result<(ShardCommand, Limits), CodecError> {
    let LoggedCommand { command, limits } = LoggedCommand::decode(entry)?;
    Ok((command, limits))
}

#[cfg(test)]
mod tests {
    use dura_history::{
        RunRequest,
        api::workflow_task::{FailWorkflowTaskRequest, WorkflowTaskToken},
    };

    use super::*;

    fn run_command() -> ShardCommand {
        ShardCommand::Run {
            namespace_id: "ns".into(),
            workflow_id: "wf".into(),
            run_id: "run".into(),
            request: RunRequest::FailWorkflowTask(FailWorkflowTaskRequest {
                token: WorkflowTaskToken {
                    scheduled_event_id: 2,
                    started_event_id: 3,
                    attempt: 1,
                    stamp: 1,
                },
                cause: 0,
                failure: None,
                identity: "me".into(),
                now: 1,
            }),
        }
    }

    #[test]
    fn each_version_is_written_only_once_every_member_reads_it() {
        let format = EntryFormat::default();
        let closed = encode(run_command(), &Limits::temporal(), &format);
        assert_eq!(
            &closed[..3],
            &[dura_codec::MAGIC, Kind::ShardCommand as u8, 1]
        );
        let (_, limits) = decode(&closed).unwrap();
        assert_eq!(limits, Limits::none().refusing_external_commands());

        format.allow(2);
        let limited = encode(run_command(), &Limits::temporal(), &format);
        assert_eq!(limited[2], 2);
        let (_, limits) = decode(&limited).unwrap();
        assert_eq!(limits, Limits::temporal().refusing_external_commands());

        format.allow(3);
        // What a member reads never goes back down.
        format.allow(2);
        let open = encode(run_command(), &Limits::temporal(), &format);
        assert_eq!(open[2], ENTRY_VERSION);
        let (_, limits) = decode(&open).unwrap();
        assert_eq!(limits, Limits::temporal());
        assert!(!limits.external_commands_refused());
        // A command that changes no run has no limits to carry.
        let ack = encode(
            ShardCommand::AckOutbox(Vec::new()),
            &Limits::temporal(),
            &format,
        );
        assert_eq!(ack[2], 1);
    }

    #[test]
    fn an_entry_of_an_earlier_build_reads_as_its_command_without_limits() {
        let earlier = dura_codec::encode_as(Kind::ShardCommand, 1, &run_command());
        let (command, limits) = decode(&earlier).unwrap();
        assert!(matches!(command, ShardCommand::Run { .. }));
        assert_eq!(limits, Limits::none().refusing_external_commands());
    }
}
