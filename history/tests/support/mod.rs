//! A tiny driver for the state machine: it plays matching, the timer wheel and the store, so
//! scenarios read like the RPC sequence an SDK produces.

#![allow(dead_code)]

use dura_history::limits::Limits;
use dura_history::{
    MutableState, Task, Transition,
    api::{
        activity::{
            ActivityRef, ActivityTaskStartedReply, CompleteActivityTaskRequest,
            FailActivityTaskRequest, RecordActivityTaskStartedRequest,
        },
        signal::SignalRequest,
        start::{StartWorkflowRequest, start_workflow},
        timer::{FireTimerRequest, fire_timer},
        workflow_task::{
            CompleteWorkflowTaskReply, CompleteWorkflowTaskRequest,
            RecordWorkflowTaskStartedRequest, WorkflowTaskStartedReply, WorkflowTaskToken,
            complete_workflow_task, record_workflow_task_started,
        },
    },
    error::HistoryError,
    tasks::{TaskQueueRef, TimerKind, TimerTask},
    time::{Nanos, SECOND, to_duration},
};
use temporalio_protos::temporal::api::{
    command::v1::{
        CancelTimerCommandAttributes, Command, CompleteWorkflowExecutionCommandAttributes,
        FailWorkflowExecutionCommandAttributes, RequestCancelActivityTaskCommandAttributes,
        ScheduleActivityTaskCommandAttributes, StartTimerCommandAttributes,
        command::Attributes as CA,
    },
    common::v1::{ActivityType, Payload, Payloads, RetryPolicy},
    enums::v1::{CommandType, EventType},
    failure::v1::{ApplicationFailureInfo, Failure, failure::FailureInfo},
    history::v1::HistoryEvent,
};

pub const T0: Nanos = 1_700_000_000 * SECOND;
pub const TQ: &str = "tq";

pub fn start_request(workflow_id: &str, run_id: &str, request_id: &str) -> StartWorkflowRequest {
    StartWorkflowRequest {
        namespace_id: "ns".into(),
        workflow_id: workflow_id.into(),
        run_id: run_id.into(),
        request_id: request_id.into(),
        workflow_type: "SayHello".into(),
        task_queue: TQ.into(),
        input: Some(payloads("Temporal")),
        execution_timeout: 0,
        run_timeout: 0,
        task_timeout: 0,
        retry_policy: None,
        memo: None,
        search_attributes: None,
        header: None,
        priority: None,
        identity: "client".into(),
        id_reuse_policy: 0,
        id_conflict_policy: 0,
        start_delay: 0,
        user_metadata: None,
        parent: None,
        eager: false,
        now: T0,
    }
}

/// A plain completion of `task` (no sticky queue, no metadata); retries get run id "retry-run".
pub fn complete_request(
    task: &WorkflowTaskStartedReply,
    commands: Vec<Command>,
    now: Nanos,
) -> CompleteWorkflowTaskRequest {
    CompleteWorkflowTaskRequest {
        token: WorkflowTaskToken::of(task),
        namespace: "default".into(),
        custom_search_attributes: Default::default(),
        commands,
        messages: Vec::new(),
        identity: "worker".into(),
        sticky_attributes: None,
        sdk_metadata: None,
        metering_metadata: None,
        binary_checksum: String::new(),
        worker_version: None,
        force_create_new_workflow_task: false,
        return_new_workflow_task: false,
        new_run_id: "retry-run".into(),
        now,
    }
}

pub fn payloads(s: &str) -> Payloads {
    Payloads {
        payloads: vec![Payload {
            data: format!("\"{s}\"").into_bytes(),
            ..Default::default()
        }],
    }
}

/// "EVENT_TYPE_WORKFLOW_TASK_STARTED" -> "WorkflowTaskStarted".
pub fn event_name(e: &HistoryEvent) -> String {
    dura_history::events::go_enum_name(e.event_type().as_str_name(), "EVENT_TYPE_")
}

pub struct Harness {
    pub ms: MutableState,
    pub history: Vec<HistoryEvent>,
    pub tasks: Vec<Task>,
    pub now: Nanos,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    pub fn start(req: StartWorkflowRequest) -> Self {
        let now = req.now;
        let outcome = start_workflow(None, req).expect("start");
        let run = outcome.new_run.expect("new run");
        Harness {
            ms: run.state,
            history: run.events,
            tasks: run.tasks,
            now,
        }
    }

    pub fn new() -> Self {
        Self::start(start_request("wf", "run-1", "req-1"))
    }

    pub fn advance(&mut self, d: Nanos) {
        self.now += d;
    }

    /// Applies a handler; on success records its events and tasks.
    pub fn run<R>(
        &mut self,
        f: impl FnOnce(&mut MutableState, Nanos) -> Result<Transition<R>, HistoryError>,
    ) -> Result<R, HistoryError> {
        let t = f(&mut self.ms, self.now)?;
        for (i, e) in t.events.iter().enumerate() {
            let expected = (self.history.len() + i) as i64 + 1;
            assert_eq!(e.event_id, expected, "event ids are contiguous");
        }
        self.history.extend(t.events);
        self.tasks.extend(t.tasks);
        Ok(t.reply)
    }

    pub fn history_text(&self) -> String {
        self.history
            .iter()
            .map(|e| format!("{} {}", e.event_id, event_name(e)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn last_event(&self) -> &HistoryEvent {
        self.history.last().unwrap()
    }

    pub fn event(&self, id: i64) -> &HistoryEvent {
        &self.history[(id - 1) as usize]
    }

    pub fn events_of(&self, t: EventType) -> Vec<&HistoryEvent> {
        self.history
            .iter()
            .filter(|e| e.event_type() == t)
            .collect()
    }

    pub fn try_poll_wt(
        &mut self,
        request_id: &str,
    ) -> Result<WorkflowTaskStartedReply, HistoryError> {
        let wt = self
            .ms
            .workflow_task
            .clone()
            .expect("a workflow task is pending");
        let tq = wt.task_queue.clone();
        self.run(|ms, now| {
            record_workflow_task_started(
                ms,
                RecordWorkflowTaskStartedRequest {
                    scheduled_event_id: wt.scheduled_event_id,
                    stamp: wt.stamp,
                    request_id: request_id.into(),
                    identity: "worker".into(),
                    poll_task_queue: tq,
                    now,
                },
                &Limits::temporal(),
            )
        })
    }

    pub fn poll_wt(&mut self) -> WorkflowTaskStartedReply {
        let n = self.history.len();
        self.try_poll_wt(&format!("poll-{n}"))
            .expect("poll workflow task")
    }

    pub fn complete_wt(
        &mut self,
        task: &WorkflowTaskStartedReply,
        commands: Vec<Command>,
    ) -> Result<CompleteWorkflowTaskReply, HistoryError> {
        self.complete_wt_with(task, commands, |_| {})
    }

    pub fn complete_wt_with(
        &mut self,
        task: &WorkflowTaskStartedReply,
        commands: Vec<Command>,
        edit: impl FnOnce(&mut CompleteWorkflowTaskRequest),
    ) -> Result<CompleteWorkflowTaskReply, HistoryError> {
        let mut req = complete_request(task, commands, self.now);
        edit(&mut req);
        self.run(|ms, _| complete_workflow_task(ms, req, &Limits::temporal()))
    }

    pub fn poll_activity(&mut self, scheduled_event_id: i64) -> ActivityTaskStartedReply {
        let attempt = self.ms.activities[&scheduled_event_id].attempt;
        let n = self.history.len() + self.tasks.len();
        self.run(|ms, now| {
            dura_history::api::activity::record_activity_task_started(
                ms,
                RecordActivityTaskStartedRequest {
                    scheduled_event_id,
                    attempt,
                    request_id: format!("act-poll-{n}"),
                    identity: "activity-worker".into(),
                    now,
                },
            )
        })
        .expect("poll activity")
    }

    pub fn complete_activity(
        &mut self,
        task: &ActivityTaskStartedReply,
        result: &str,
    ) -> Result<(), HistoryError> {
        let req = CompleteActivityTaskRequest {
            activity: token(task),
            result: Some(payloads(result)),
            identity: "activity-worker".into(),
            now: self.now,
        };
        self.run(|ms, _| dura_history::api::activity::complete_activity_task(ms, req))
    }

    pub fn fail_activity(
        &mut self,
        task: &ActivityTaskStartedReply,
        failure: Failure,
    ) -> Result<(), HistoryError> {
        let req = FailActivityTaskRequest {
            activity: token(task),
            failure: Some(failure),
            last_heartbeat_details: None,
            identity: "activity-worker".into(),
            now: self.now,
        };
        self.run(|ms, _| dura_history::api::activity::fail_activity_task(ms, req))
    }

    pub fn signal(&mut self, name: &str, request_id: &str) -> Result<(), HistoryError> {
        let req = SignalRequest {
            signal_name: name.into(),
            input: None,
            identity: "client".into(),
            header: None,
            request_id: request_id.into(),
            now: self.now,
        };
        self.run(|ms, _| dura_history::api::signal::signal_workflow(ms, req))
    }

    /// Fires a timer task (as the timer wheel would at `now`).
    pub fn fire(&mut self, timer: TimerTask) {
        let req = FireTimerRequest {
            new_run_id: "retry-run".into(),
            timer,
            now: self.now,
        };
        self.run(|ms, _| fire_timer(ms, req))
            .expect("fire timer never fails");
    }

    /// The most recent timer task of a kind matching `pred`.
    pub fn timer(&self, pred: impl Fn(&TimerKind) -> bool) -> TimerTask {
        self.tasks
            .iter()
            .rev()
            .find_map(|t| match t {
                Task::Timer(t) if pred(&t.kind) => Some(t.clone()),
                _ => None,
            })
            .expect("timer task")
    }

    /// Advances the clock to the timer's deadline and fires it.
    pub fn fire_when_due(&mut self, timer: TimerTask) {
        self.now = self.now.max(timer.fire_at);
        self.fire(timer);
    }
}

pub fn token(task: &ActivityTaskStartedReply) -> ActivityRef {
    ActivityRef::Token {
        scheduled_event_id: task.scheduled_event_id,
        attempt: task.attempt,
    }
}

pub fn normal(name: &str) -> TaskQueueRef {
    TaskQueueRef::normal(name)
}

pub fn schedule_activity(id: &str, ty: &str, start_to_close_secs: i64) -> Command {
    schedule_activity_with(id, ty, |a| {
        a.start_to_close_timeout = Some(to_duration(start_to_close_secs * SECOND))
    })
}

pub fn schedule_activity_with(
    id: &str,
    ty: &str,
    edit: impl FnOnce(&mut ScheduleActivityTaskCommandAttributes),
) -> Command {
    let mut a = ScheduleActivityTaskCommandAttributes {
        activity_id: id.into(),
        activity_type: Some(ActivityType { name: ty.into() }),
        input: Some(payloads("Temporal")),
        ..Default::default()
    };
    edit(&mut a);
    Command {
        command_type: CommandType::ScheduleActivityTask as i32,
        attributes: Some(CA::ScheduleActivityTaskCommandAttributes(a)),
        ..Default::default()
    }
}

pub fn retry_policy(max_attempts: i32, initial_ms: i64, max_interval_ms: i64) -> RetryPolicy {
    RetryPolicy {
        initial_interval: Some(to_duration(initial_ms * 1_000_000)),
        backoff_coefficient: 2.0,
        maximum_interval: Some(to_duration(max_interval_ms * 1_000_000)),
        maximum_attempts: max_attempts,
        non_retryable_error_types: vec![],
    }
}

pub fn complete_workflow(result: &str) -> Command {
    Command {
        command_type: CommandType::CompleteWorkflowExecution as i32,
        attributes: Some(CA::CompleteWorkflowExecutionCommandAttributes(
            CompleteWorkflowExecutionCommandAttributes {
                result: Some(payloads(result)),
            },
        )),
        ..Default::default()
    }
}

pub fn fail_workflow(message: &str) -> Command {
    fail_workflow_with(app_failure(message, "InvalidOrder", true))
}

pub fn fail_workflow_with(failure: Failure) -> Command {
    Command {
        command_type: CommandType::FailWorkflowExecution as i32,
        attributes: Some(CA::FailWorkflowExecutionCommandAttributes(
            FailWorkflowExecutionCommandAttributes {
                failure: Some(failure),
            },
        )),
        ..Default::default()
    }
}

pub fn start_timer(id: &str, millis: i64) -> Command {
    Command {
        command_type: CommandType::StartTimer as i32,
        attributes: Some(CA::StartTimerCommandAttributes(
            StartTimerCommandAttributes {
                timer_id: id.into(),
                start_to_fire_timeout: Some(to_duration(millis * 1_000_000)),
            },
        )),
        ..Default::default()
    }
}

pub fn cancel_timer(id: &str) -> Command {
    Command {
        command_type: CommandType::CancelTimer as i32,
        attributes: Some(CA::CancelTimerCommandAttributes(
            CancelTimerCommandAttributes {
                timer_id: id.into(),
            },
        )),
        ..Default::default()
    }
}

pub fn request_cancel_activity(scheduled_event_id: i64) -> Command {
    Command {
        command_type: CommandType::RequestCancelActivityTask as i32,
        attributes: Some(CA::RequestCancelActivityTaskCommandAttributes(
            RequestCancelActivityTaskCommandAttributes { scheduled_event_id },
        )),
        ..Default::default()
    }
}

pub fn app_failure(message: &str, ty: &str, non_retryable: bool) -> Failure {
    Failure {
        message: message.into(),
        failure_info: Some(FailureInfo::ApplicationFailureInfo(
            ApplicationFailureInfo {
                r#type: ty.into(),
                non_retryable,
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

pub fn lines(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}
