//! A shard's Raft log entry: a [`ShardCommand`] and, for a run command, the [`Limits`] the run
//! is held to (as the proposing node is configured).
//!
//! Version 1 is the command alone: what earlier builds write, and read. Version 2 adds the
//! limits after it. This build writes version 2 only once every member reads it
//! ([`EntryFormat::limits_logged`]): a node of an earlier build would refuse the entry, and its
//! replica would part from the others. Until then it writes version 1, and every replica
//! applies the command without limits, as the earlier build does.

use std::sync::atomic::{AtomicBool, Ordering};

use dura_codec::{CodecError, Kind, Persisted};
use dura_history::limits::Limits;
use serde::{Deserialize, Serialize};

use super::ShardCommand;

/// The highest version of a shard log entry this build reads (told to the other members in
/// its status, see `admin::NodeView`).
pub const ENTRY_VERSION: u8 = 2;

/// What this node may write into shard logs, learnt from what the members read.
#[derive(Debug, Default)]
pub struct EntryFormat {
    limits: AtomicBool,
}

impl EntryFormat {
    /// Every member reads version 2: entries carry their limits from now on.
    pub fn allow_limits(&self) {
        if !self.limits.swap(true, Ordering::AcqRel) {
            tracing::info!("every member reads limits in log entries: enforcing them");
        }
    }

    pub fn limits_logged(&self) -> bool {
        self.limits.load(Ordering::Acquire)
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
        if version > 1 {
            return Err(CodecError::UnreadableVersion {
                kind: Self::KIND,
                version,
            });
        }
        let command = bincode::deserialize(payload).map_err(|e| CodecError::Malformed {
            kind: Self::KIND,
            reason: e.to_string(),
        })?;
        Ok(LoggedCommand {
            command,
            limits: Limits::none(),
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
    if is_run_command(&command) && format.limits_logged() {
        let limits = limits.clone();
        LoggedCommand { command, limits }.encode()
    } else {
        dura_codec::encode_as(Kind::ShardCommand, 1, &command)
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
    fn limits_travel_only_once_every_member_reads_them() {
        let format = EntryFormat::default();
        let closed = encode(run_command(), &Limits::temporal(), &format);
        assert_eq!(
            &closed[..3],
            &[dura_codec::MAGIC, Kind::ShardCommand as u8, 1]
        );
        assert_eq!(decode(&closed).unwrap().1, Limits::none());

        format.allow_limits();
        let open = encode(run_command(), &Limits::temporal(), &format);
        assert_eq!(open[2], ENTRY_VERSION);
        assert_eq!(decode(&open).unwrap().1, Limits::temporal());
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
        assert_eq!(limits, Limits::none());
    }
}
