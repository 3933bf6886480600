//! The workflows the bench runs, as pure functions from a workflow's history to the commands a
//! worker answers with. Keeping them pure lets the tests drive them from synthetic histories and
//! keeps the worker loop free of per-workload branches.

use std::{collections::HashMap, time::Duration};

use anyhow::bail;
use clap::ValueEnum;
use temporalio_protos::temporal::api::{
    command::v1::{
        Command, CompleteWorkflowExecutionCommandAttributes, ScheduleActivityTaskCommandAttributes,
        StartTimerCommandAttributes, command,
    },
    common::v1::{ActivityType, Payload, Payloads},
    enums::v1::{CommandType, TaskQueueKind},
    history::v1::{HistoryEvent, history_event::Attributes},
    taskqueue::v1::TaskQueue,
};

/// Workflow and activity type names the bench registers nowhere: a raw worker accepts any name,
/// and a fixed one makes the bench's workflows easy to find in a server's UI.
pub const WORKFLOW_TYPE: &str = "dura-bench";
pub const ACTIVITY_TYPE: &str = "dura-bench-echo";
pub const SIGNAL_NAME: &str = "dura-bench";

const ACTIVITY_TIMEOUT: Duration = Duration::from_secs(10);
const TIMER: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkloadKind {
    /// One activity, then complete with its result.
    Echo,
    /// `--chain-length` activities one after another.
    Chain,
    /// A 1 s timer, then complete.
    Timer,
    /// The starter sends `--signal-count` signals; the workflow completes once it has seen all.
    Signal,
    /// Not implemented yet: accepted so the error can say so instead of "invalid value".
    Fanout,
}

/// A workload with its parameters resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// `Chain(1)` is the echo workload: one activity is a chain of one.
    Chain {
        length: u32,
        echo: bool,
    },
    Timer,
    Signal {
        count: u32,
    },
}

impl Workload {
    pub fn new(kind: WorkloadKind, chain_length: u32, signal_count: u32) -> anyhow::Result<Self> {
        Ok(match kind {
            WorkloadKind::Echo => Workload::Chain {
                length: 1,
                echo: true,
            },
            WorkloadKind::Chain if chain_length == 0 => bail!("--chain-length must be at least 1"),
            WorkloadKind::Chain => Workload::Chain {
                length: chain_length,
                echo: false,
            },
            WorkloadKind::Timer => Workload::Timer,
            WorkloadKind::Signal if signal_count == 0 => bail!("--signal-count must be at least 1"),
            WorkloadKind::Signal => Workload::Signal {
                count: signal_count,
            },
            WorkloadKind::Fanout => {
                bail!(
                    "the fanout workload is not implemented yet; use echo, chain, timer or signal"
                )
            }
        })
    }

    /// Short name that also carries the parameters, so two runs with different parameters
    /// never land in the same row of a results table.
    pub fn label(&self) -> String {
        match self {
            Workload::Chain { echo: true, .. } => "echo".into(),
            Workload::Chain { length, .. } => format!("chain-{length}"),
            Workload::Timer => "timer-1s".into(),
            Workload::Signal { count } => format!("signal-{count}"),
        }
    }

    /// Signals the starter sends right after starting each workflow.
    pub fn signals_per_workflow(&self) -> u32 {
        match self {
            Workload::Signal { count } => *count,
            _ => 0,
        }
    }

    /// The commands answering a workflow task whose (full) history is `history`. Tasks that
    /// arrive with nothing new to act on (an intermediate signal) get no commands, which is a
    /// valid answer that just waits for the next event.
    pub fn decide(&self, history: &[HistoryEvent], task_queue: &str) -> Vec<Command> {
        match *self {
            Workload::Chain { length, .. } => {
                let mut scheduled = 0u32;
                let mut completed = 0u32;
                let mut last_result = None;
                for attributes in history.iter().filter_map(|e| e.attributes.as_ref()) {
                    match attributes {
                        Attributes::ActivityTaskScheduledEventAttributes(_) => scheduled += 1,
                        Attributes::ActivityTaskCompletedEventAttributes(a) => {
                            completed += 1;
                            last_result = a.result.clone();
                        }
                        _ => {}
                    }
                }
                if completed >= length {
                    vec![complete(last_result)]
                } else if scheduled == completed {
                    vec![schedule_activity(completed + 1, task_queue)]
                } else {
                    // An activity is still running (this task came from a timeout or retry).
                    Vec::new()
                }
            }
            Workload::Timer => {
                let has = |want: fn(&Attributes) -> bool| {
                    history
                        .iter()
                        .filter_map(|e| e.attributes.as_ref())
                        .any(want)
                };
                if has(|a| matches!(a, Attributes::TimerFiredEventAttributes(_))) {
                    vec![complete(None)]
                } else if has(|a| matches!(a, Attributes::TimerStartedEventAttributes(_))) {
                    Vec::new()
                } else {
                    vec![start_timer()]
                }
            }
            Workload::Signal { count } => {
                let seen = history
                    .iter()
                    .filter(|e| {
                        matches!(
                            e.attributes,
                            Some(Attributes::WorkflowExecutionSignaledEventAttributes(_))
                        )
                    })
                    .count();
                if seen >= count as usize {
                    vec![complete(None)]
                } else {
                    Vec::new()
                }
            }
        }
    }
}

/// Whether these commands close the workflow, i.e. whether the task's completion is the
/// workflow's completion.
pub fn completes_workflow(commands: &[Command]) -> bool {
    commands
        .iter()
        .any(|c| c.command_type == CommandType::CompleteWorkflowExecution as i32)
}

/// The small JSON payload every workflow and activity carries, so the server stores and moves
/// real (if small) data, as an SDK's would.
pub fn payload() -> Payloads {
    Payloads {
        payloads: vec![Payload {
            metadata: HashMap::from([("encoding".to_string(), b"json/plain".to_vec())]),
            data: br#""dura-bench""#.to_vec(),
            ..Default::default()
        }],
    }
}

pub fn task_queue(name: &str) -> TaskQueue {
    TaskQueue {
        name: name.to_string(),
        kind: TaskQueueKind::Normal as i32,
        ..Default::default()
    }
}

fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn schedule_activity(number: u32, task_queue_name: &str) -> Command {
    Command {
        command_type: CommandType::ScheduleActivityTask as i32,
        attributes: Some(command::Attributes::ScheduleActivityTaskCommandAttributes(
            ScheduleActivityTaskCommandAttributes {
                activity_id: number.to_string(),
                activity_type: Some(ActivityType {
                    name: ACTIVITY_TYPE.into(),
                }),
                task_queue: Some(task_queue(task_queue_name)),
                input: Some(payload()),
                start_to_close_timeout: Some(duration(ACTIVITY_TIMEOUT)),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

fn start_timer() -> Command {
    Command {
        command_type: CommandType::StartTimer as i32,
        attributes: Some(command::Attributes::StartTimerCommandAttributes(
            StartTimerCommandAttributes {
                timer_id: "1".into(),
                start_to_fire_timeout: Some(duration(TIMER)),
            },
        )),
        ..Default::default()
    }
}

fn complete(result: Option<Payloads>) -> Command {
    Command {
        command_type: CommandType::CompleteWorkflowExecution as i32,
        attributes: Some(
            command::Attributes::CompleteWorkflowExecutionCommandAttributes(
                CompleteWorkflowExecutionCommandAttributes { result },
            ),
        ),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use temporalio_protos::temporal::api::history::v1::{
        ActivityTaskCompletedEventAttributes, ActivityTaskScheduledEventAttributes,
        TimerFiredEventAttributes, TimerStartedEventAttributes,
        WorkflowExecutionSignaledEventAttributes, WorkflowExecutionStartedEventAttributes,
    };

    use super::*;

    fn history(attributes: Vec<Attributes>) -> Vec<HistoryEvent> {
        attributes
            .into_iter()
            .enumerate()
            .map(|(i, a)| HistoryEvent {
                event_id: i as i64 + 1,
                attributes: Some(a),
                ..Default::default()
            })
            .collect()
    }

    fn started() -> Attributes {
        Attributes::WorkflowExecutionStartedEventAttributes(
            WorkflowExecutionStartedEventAttributes::default(),
        )
    }
    fn scheduled() -> Attributes {
        Attributes::ActivityTaskScheduledEventAttributes(
            ActivityTaskScheduledEventAttributes::default(),
        )
    }
    fn completed(result: &str) -> Attributes {
        let mut payloads = payload();
        payloads.payloads[0].data = result.as_bytes().to_vec();
        Attributes::ActivityTaskCompletedEventAttributes(ActivityTaskCompletedEventAttributes {
            result: Some(payloads),
            ..Default::default()
        })
    }
    fn signaled() -> Attributes {
        Attributes::WorkflowExecutionSignaledEventAttributes(
            WorkflowExecutionSignaledEventAttributes::default(),
        )
    }

    fn only(commands: Vec<Command>) -> command::Attributes {
        assert_eq!(commands.len(), 1, "{commands:?}");
        commands.into_iter().next().unwrap().attributes.unwrap()
    }

    #[test]
    fn echo_schedules_then_completes_with_the_activity_result() {
        let echo = Workload::new(WorkloadKind::Echo, 99, 99).unwrap();
        let first = echo.decide(&history(vec![started()]), "q");
        assert!(!completes_workflow(&first));
        let command::Attributes::ScheduleActivityTaskCommandAttributes(a) = only(first) else {
            panic!()
        };
        assert_eq!(a.activity_id, "1");
        assert_eq!(a.task_queue.unwrap().name, "q");
        assert_eq!(a.activity_type.unwrap().name, ACTIVITY_TYPE);
        assert_eq!(a.start_to_close_timeout.unwrap().seconds, 10);

        let last = echo.decide(&history(vec![started(), scheduled(), completed("r1")]), "q");
        assert!(completes_workflow(&last));
        let command::Attributes::CompleteWorkflowExecutionCommandAttributes(c) = only(last) else {
            panic!()
        };
        assert_eq!(c.result.unwrap().payloads[0].data, b"r1");
    }

    #[test]
    fn chain_schedules_the_next_activity_until_the_length_is_reached() {
        let chain = Workload::new(WorkloadKind::Chain, 3, 0).unwrap();
        let two_done = history(vec![
            started(),
            scheduled(),
            completed("a"),
            scheduled(),
            completed("b"),
        ]);
        let command::Attributes::ScheduleActivityTaskCommandAttributes(a) =
            only(chain.decide(&two_done, "q"))
        else {
            panic!()
        };
        assert_eq!(a.activity_id, "3");

        let mut waiting = two_done.clone();
        waiting.extend(history(vec![scheduled()]));
        assert!(
            chain.decide(&waiting, "q").is_empty(),
            "an activity is outstanding"
        );

        waiting.extend(history(vec![completed("c")]));
        let command::Attributes::CompleteWorkflowExecutionCommandAttributes(c) =
            only(chain.decide(&waiting, "q"))
        else {
            panic!()
        };
        assert_eq!(
            c.result.unwrap().payloads[0].data,
            b"c",
            "the last activity's result"
        );
    }

    #[test]
    fn timer_starts_once_and_completes_when_fired() {
        let timer = Workload::new(WorkloadKind::Timer, 0, 0).unwrap();
        let command::Attributes::StartTimerCommandAttributes(t) =
            only(timer.decide(&history(vec![started()]), "q"))
        else {
            panic!()
        };
        assert_eq!(t.start_to_fire_timeout.unwrap().seconds, 1);
        let timer_started =
            Attributes::TimerStartedEventAttributes(TimerStartedEventAttributes::default());
        assert!(
            timer
                .decide(&history(vec![started(), timer_started.clone()]), "q")
                .is_empty()
        );
        let fired = Attributes::TimerFiredEventAttributes(TimerFiredEventAttributes::default());
        assert!(completes_workflow(
            &timer.decide(&history(vec![started(), timer_started, fired]), "q")
        ));
    }

    #[test]
    fn signal_completes_after_the_configured_count() {
        let signal = Workload::new(WorkloadKind::Signal, 0, 2).unwrap();
        assert_eq!(signal.signals_per_workflow(), 2);
        assert!(
            signal
                .decide(&history(vec![started(), signaled()]), "q")
                .is_empty()
        );
        assert!(completes_workflow(
            &signal.decide(&history(vec![started(), signaled(), signaled()]), "q")
        ));
    }

    #[test]
    fn bad_parameters_and_fanout_are_clear_errors() {
        let err =
            |kind, chain, signals| Workload::new(kind, chain, signals).unwrap_err().to_string();
        assert!(err(WorkloadKind::Fanout, 1, 1).contains("not implemented"));
        assert!(err(WorkloadKind::Chain, 0, 1).contains("--chain-length"));
        assert!(err(WorkloadKind::Signal, 1, 0).contains("--signal-count"));
    }

    #[test]
    fn labels_carry_parameters() {
        let labels: Vec<_> = [
            (WorkloadKind::Echo, 1, 1),
            (WorkloadKind::Chain, 10, 1),
            (WorkloadKind::Timer, 1, 1),
            (WorkloadKind::Signal, 1, 5),
        ]
        .into_iter()
        .map(|(k, c, s)| Workload::new(k, c, s).unwrap().label())
        .collect();
        assert_eq!(labels, ["echo", "chain-10", "timer-1s", "signal-5"]);
    }
}
