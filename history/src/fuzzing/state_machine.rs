//! Sequences of requests through the pure handlers, steered by the input: the requests a
//! worker, a client, the timer wheel and the child-workflow outbox could send a run in any
//! order, stale ones included. After every step the run's invariants are checked.

use dura_codec::Persisted;
use prost_types::Any;
use temporalio_protos::temporal::api::{
    command::v1::{
        CancelTimerCommandAttributes, CancelWorkflowExecutionCommandAttributes, Command,
        CompleteWorkflowExecutionCommandAttributes,
        ContinueAsNewWorkflowExecutionCommandAttributes, FailWorkflowExecutionCommandAttributes,
        ModifyWorkflowPropertiesCommandAttributes, ProtocolMessageCommandAttributes,
        RecordMarkerCommandAttributes, RequestCancelActivityTaskCommandAttributes,
        RequestCancelExternalWorkflowExecutionCommandAttributes,
        ScheduleActivityTaskCommandAttributes, SignalExternalWorkflowExecutionCommandAttributes,
        StartChildWorkflowExecutionCommandAttributes, StartTimerCommandAttributes,
        UpsertWorkflowSearchAttributesCommandAttributes, command::Attributes as CA,
    },
    common::v1::{
        ActivityType, Memo, Payload, Payloads, RetryPolicy, SearchAttributes, WorkflowExecution,
        WorkflowType,
    },
    enums::v1::{CommandType, EventType},
    failure::v1::Failure,
    history::v1::{HistoryEvent, history_event::Attributes},
    protocol::v1::Message,
    taskqueue::v1::TaskQueue,
    update::v1::{Acceptance, Input, Meta, Outcome, Rejection, Request, Response, outcome},
};

use super::Source;
use crate::{
    MutableState, RunReply, RunRequest,
    api::{
        self,
        activity::{
            ActivityRef, CancelActivityTaskRequest, CompleteActivityTaskRequest,
            FailActivityTaskRequest, HeartbeatActivityTaskRequest,
            RecordActivityTaskStartedRequest,
        },
        children::{
            ChildClosedRequest, ChildOutcome, ChildStartFailedRequest, ChildStartedRequest,
        },
        external::{
            Caller, CancelFromWorkflowRequest, ExternalKind, ExternalOutcome,
            ExternalReportRequest, SignalFromWorkflowRequest,
        },
        lifecycle::{RequestCancelRequest, TerminateRequest},
        signal::SignalRequest,
        start::{StartWorkflowRequest, continue_run, start_workflow},
        timer::FireTimerRequest,
        updates::{AdmitUpdateRequest, UpdateState},
        workflow_task::{
            CompleteWorkflowTaskRequest, FailWorkflowTaskRequest, RecordWorkflowTaskStartedRequest,
            WorkflowTaskToken,
        },
    },
    events::is_close_event,
    limits::{Limit, Limits},
    tasks::{Task, TaskQueueRef, TimerKind, TimerTask},
    time::{Nanos, SECOND, to_duration},
    visibility::SearchAttributeType,
};

const T0: Nanos = 1_700_000_000 * SECOND;
const TQ: &str = "tq";
/// Steps per input: long enough to reach retries, timeouts and continue-as-new chains.
const MAX_STEPS: usize = 96;

const ACTIVITY_IDS: &[&str] = &["a0", "a1", "a2"];
const TIMER_IDS: &[&str] = &["t0", "t1", "t2"];
const CHILD_IDS: &[&str] = &["c0", "c1"];
const UPDATE_IDS: &[&str] = &["u0", "u1", "u2"];
/// How far time usually moves between two requests; now and then it moves an hour, past most
/// timeouts.
const STEPS: &[Nanos] = &[0, 0, 0, 0, 1, SECOND, SECOND, 5 * SECOND, 30 * SECOND];
const SPANS: &[Nanos] = &[0, 1, SECOND, 10 * SECOND, 60 * SECOND, 3600 * SECOND];

fn payloads(source: &mut Source) -> Option<Payloads> {
    source.chance(2).then(|| Payloads {
        payloads: vec![Payload {
            data: source.bytes(16).to_vec(),
            ..Default::default()
        }],
    })
}

/// A duration for a command or policy: unset, zero, a usual span, or now and then negative
/// or as long as the protobuf type allows (a deadline past the end of time).
fn span(source: &mut Source) -> Option<prost_types::Duration> {
    let d = match source.below(32) {
        0 => -SECOND,
        1 => {
            return Some(prost_types::Duration {
                seconds: i64::MAX,
                nanos: 999_999_999,
            });
        }
        _ => *source.pick(SPANS),
    };
    (d != 0 || source.chance(2)).then(|| to_duration(d))
}

fn failure(source: &mut Source) -> Option<Failure> {
    source.chance(3).then(|| Failure {
        message: "boom".into(),
        ..Default::default()
    })
}

fn retry_policy(source: &mut Source) -> Option<RetryPolicy> {
    source.chance(2).then(|| RetryPolicy {
        initial_interval: span(source),
        backoff_coefficient: *source.pick(&[0.0, 1.0, 2.0, 0.5]),
        maximum_interval: span(source),
        maximum_attempts: *source.pick(&[0, 1, 2, 3, -1]),
        non_retryable_error_types: Vec::new(),
    })
}

fn limits(source: &mut Source) -> Limits {
    let mut limits = if source.chance(2) {
        Limits::none()
    } else {
        Limits::temporal()
    };
    while source.chance(3) {
        let limit = *source.pick(&Limit::ALL);
        limits.set(limit, *source.pick(&[0, 1, 2, 8, 64, 512, 4096]));
    }
    if source.chance(8) {
        limits = limits.refusing_external_commands();
    }
    limits
}

fn start_request(source: &mut Source) -> StartWorkflowRequest {
    StartWorkflowRequest {
        namespace_id: "ns".into(),
        workflow_id: "wf".into(),
        run_id: "run-1".into(),
        request_id: "req-1".into(),
        workflow_type: "Flow".into(),
        task_queue: TQ.into(),
        input: payloads(source),
        execution_timeout: *source.pick(&[0, 0, 0, 120 * SECOND, 3600 * SECOND]),
        run_timeout: *source.pick(&[0, 0, 0, 60 * SECOND]),
        task_timeout: *source.pick(&[0, SECOND, 10 * SECOND]),
        retry_policy: retry_policy(source),
        memo: None,
        search_attributes: None,
        header: None,
        priority: None,
        identity: "client".into(),
        id_reuse_policy: 0,
        id_conflict_policy: 0,
        start_delay: *source.pick(&[0, 0, 0, 5 * SECOND]),
        user_metadata: None,
        parent: None,
        eager: source.chance(4),
        now: T0,
    }
}

/// One run and what the other side has seen of it.
struct Run {
    ms: MutableState,
    history: Vec<HistoryEvent>,
    /// Every timer ever armed, fired or not: the wheel may deliver a stale one.
    timers: Vec<TimerTask>,
    /// Workflow task tokens handed out, the stale ones included.
    tokens: Vec<WorkflowTaskToken>,
    runs: usize,
}

impl Run {
    fn record(&mut self, events: Vec<HistoryEvent>, tasks: Vec<Task>) {
        self.history.extend(events);
        self.timers
            .extend(tasks.into_iter().filter_map(|t| match t {
                Task::Timer(timer) => Some(timer),
                _ => None,
            }));
    }
}

pub fn state_machine(data: &[u8]) {
    let mut source = Source::new(data);
    let limits = limits(&mut source);
    let Ok(outcome) = start_workflow(None, start_request(&mut source)) else {
        return;
    };
    let Some(new_run) = outcome.new_run else {
        panic!("a start without a current run makes one");
    };
    let mut now = T0;
    let mut run = Run {
        ms: new_run.state,
        history: Vec::new(),
        timers: Vec::new(),
        tokens: Vec::new(),
        runs: 1,
    };
    check_new_run(&run.ms, &new_run.events);
    run.record(new_run.events, new_run.tasks);
    if let Some(wt) = run.ms.workflow_task.as_ref().filter(|wt| wt.is_started()) {
        run.tokens.push(token_of(wt));
    }

    for _ in 0..MAX_STEPS {
        if source.is_empty() {
            break;
        }
        let step = if source.chance(32) {
            3600 * SECOND
        } else {
            *source.pick(STEPS)
        };
        now = now.saturating_add(step);
        let request = request(&mut source, &run, now);
        let before = run.ms.clone();
        let result = api::apply(&mut run.ms, request.clone(), &limits);

        let mut again = before.clone();
        let replayed = api::apply(&mut again, request, &limits);
        assert_eq!(replayed, result, "the same request on the same state");
        assert_eq!(again, run.ms, "the same request leaves the same state");

        let transition = match result {
            Err(_) => {
                assert_eq!(run.ms, before, "a refused request changes nothing");
                continue;
            }
            Ok(t) => t,
        };
        check_step(&before, &run.ms, &transition.events);
        if let RunReply::WorkflowTaskStarted(reply) = &transition.reply {
            run.tokens.push(WorkflowTaskToken::of(reply));
        }
        if let RunReply::WorkflowTaskCompleted(reply) = &transition.reply
            && let Some(started) = &reply.new_workflow_task
        {
            run.tokens.push(WorkflowTaskToken::of(started));
        }
        let continuation = transition.continuation;
        run.record(transition.events, transition.tasks);
        check_state(&run.ms, &run.history);

        if let Some(continuation) = continuation {
            let started = match run.history.first().and_then(|e| e.attributes.as_ref()) {
                Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => a.clone(),
                _ => panic!("a run's first event is its start"),
            };
            let next = match continue_run(&run.ms, &started, &continuation) {
                Ok(next) => next,
                Err(e) => panic!("a closed run's continuation does not start: {e}"),
            };
            check_new_run(&next.state, &next.events);
            run.ms = next.state;
            run.history.clear();
            run.tokens.clear();
            run.runs += 1;
            run.record(next.events, next.tasks);
            check_state(&run.ms, &run.history);
        }
    }
}

fn token_of(wt: &crate::mutable_state::WorkflowTaskInfo) -> WorkflowTaskToken {
    WorkflowTaskToken {
        scheduled_event_id: wt.scheduled_event_id,
        started_event_id: wt.started_event_id,
        attempt: wt.attempt,
        stamp: wt.stamp,
    }
}

fn check_new_run(ms: &MutableState, events: &[HistoryEvent]) {
    assert_eq!(
        events.first().map(|e| e.event_type()),
        Some(EventType::WorkflowExecutionStarted)
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.event_id,
            i as i64 + 1,
            "a new run's events are numbered from 1"
        );
    }
    assert_eq!(ms.next_event_id, events.len() as i64 + 1);
}

/// What one successful step may do to a run.
fn check_step(before: &MutableState, after: &MutableState, events: &[HistoryEvent]) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.event_id,
            before.next_event_id + i as i64,
            "events continue the history without a gap: {events:?}"
        );
        assert!(e.event_type() != EventType::Unspecified);
    }
    assert_eq!(
        after.next_event_id,
        before.next_event_id + events.len() as i64
    );
    assert!(after.history_size_bytes >= before.history_size_bytes);
    if !before.is_running() {
        assert_eq!(after.status, before.status, "a closed run stays closed");
        assert!(events.is_empty(), "a closed run gets no events: {events:?}");
    }
}

/// What must hold of a run between any two steps.
fn check_state(ms: &MutableState, history: &[HistoryEvent]) {
    let event = |id: i64| {
        usize::try_from(id - 1)
            .ok()
            .and_then(|i| history.get(i))
            .map(|e| e.event_type())
    };
    if ms.is_running() {
        assert_eq!(ms.completion_event_id, 0);
    } else {
        assert!(
            ms.workflow_task.is_none(),
            "a closed run has no workflow task"
        );
        assert!(
            ms.buffered_events.is_empty(),
            "a closed run buffers nothing"
        );
        let closed_by = event(ms.completion_event_id);
        assert!(
            closed_by.is_some_and(is_close_event),
            "the completion event {} is {closed_by:?}",
            ms.completion_event_id
        );
    }
    if let Some(wt) = &ms.workflow_task {
        assert!(wt.attempt >= 1);
        assert!(wt.scheduled_event_id >= 1);
        if wt.is_started() {
            assert!(wt.started_event_id > wt.scheduled_event_id);
        }
        // A transient or speculative task's events are written only when it completes.
        if wt.attempt == 1 && !wt.speculative {
            assert_eq!(
                event(wt.scheduled_event_id),
                Some(EventType::WorkflowTaskScheduled)
            );
        }
    }
    for (id, activity) in &ms.activities {
        assert_eq!(*id, activity.scheduled_event_id);
        assert_eq!(event(*id), Some(EventType::ActivityTaskScheduled));
        assert!(activity.attempt >= 1);
    }
    for (id, timer) in &ms.timers {
        assert_eq!(*id, timer.timer_id);
        assert_eq!(event(timer.started_event_id), Some(EventType::TimerStarted));
    }
    for (id, child) in &ms.children {
        assert_eq!(*id, child.initiated_event_id);
        assert_eq!(
            event(*id),
            Some(EventType::StartChildWorkflowExecutionInitiated)
        );
        if child.is_started() && child.started_event_id == 0 {
            // Its started event waits in the buffer for an id.
            assert!(ms.buffered_events.iter().any(|e| matches!(
                &e.attributes,
                Some(Attributes::ChildWorkflowExecutionStartedEventAttributes(a))
                    if a.initiated_event_id == *id
            )));
        } else if child.is_started() {
            assert_eq!(
                event(child.started_event_id),
                Some(EventType::ChildWorkflowExecutionStarted)
            );
        }
    }
    for id in ms.signals_external.keys() {
        assert_eq!(
            event(*id),
            Some(EventType::SignalExternalWorkflowExecutionInitiated)
        );
    }
    for id in ms.cancels_external.keys() {
        assert_eq!(
            event(*id),
            Some(EventType::RequestCancelExternalWorkflowExecutionInitiated)
        );
    }
    for e in &ms.buffered_events {
        assert!(crate::events::is_bufferable(e.event_type()));
    }
    match MutableState::decode(&ms.encode()) {
        Ok(decoded) => assert_eq!(&decoded, ms, "mutable state survives its encoding"),
        Err(e) => panic!("mutable state does not decode: {e}"),
    }
}

fn request(source: &mut Source, run: &Run, now: Nanos) -> RunRequest {
    let ms = &run.ms;
    let activity = |source: &mut Source| -> ActivityRef {
        let known: Vec<_> = ms.activities.values().collect();
        match (known.is_empty(), source.below(4)) {
            (false, 0..=1) => {
                let a = source.pick(&known);
                ActivityRef::Token {
                    scheduled_event_id: a.scheduled_event_id,
                    attempt: a.attempt,
                }
            }
            (false, 2) => ActivityRef::ById {
                activity_id: source.pick(&known).activity_id.clone(),
            },
            _ => ActivityRef::Token {
                scheduled_event_id: source.i64() % 64,
                attempt: source.byte().into(),
            },
        }
    };
    let child = |source: &mut Source| -> i64 {
        let known: Vec<i64> = ms.children.keys().copied().collect();
        if known.is_empty() || source.chance(4) {
            source.i64() % 64
        } else {
            *source.pick(&known)
        }
    };
    let token = |source: &mut Source| -> WorkflowTaskToken {
        match ms.workflow_task.as_ref().filter(|wt| wt.is_started()) {
            Some(wt) if !source.chance(4) => token_of(wt),
            _ if !run.tokens.is_empty() => source.pick(&run.tokens).clone(),
            _ => WorkflowTaskToken {
                scheduled_event_id: source.i64() % 64,
                started_event_id: source.i64() % 64,
                attempt: 1,
                stamp: 0,
            },
        }
    };
    let identity = "worker".to_string();
    // Weighted towards what a worker does next, so runs live long enough to reach deep
    // states; closing requests are rare.
    match source.below(20) {
        0..=3 => {
            let (scheduled_event_id, stamp) = match &ms.workflow_task {
                Some(wt) if !source.chance(5) => (wt.scheduled_event_id, wt.stamp),
                _ => (source.i64() % 64, source.byte().into()),
            };
            let sticky = source.chance(4);
            RunRequest::RecordWorkflowTaskStarted(RecordWorkflowTaskStartedRequest {
                scheduled_event_id,
                stamp,
                request_id: format!("poll-{}", source.byte() % 4),
                identity,
                poll_task_queue: if sticky {
                    TaskQueueRef {
                        name: "sticky".into(),
                        sticky: true,
                        normal_name: TQ.into(),
                    }
                } else {
                    TaskQueueRef::normal(TQ)
                },
                now,
            })
        }
        4..=8 => RunRequest::CompleteWorkflowTask(CompleteWorkflowTaskRequest {
            token: token(source),
            namespace: "default".into(),
            custom_search_attributes: [("Tag".to_string(), SearchAttributeType::Keyword)]
                .into_iter()
                .collect(),
            commands: (0..source.below(4)).map(|_| command(source, ms)).collect(),
            messages: messages(source, ms),
            identity,
            sticky_attributes: None,
            sdk_metadata: None,
            metering_metadata: None,
            binary_checksum: String::new(),
            worker_version: None,
            force_create_new_workflow_task: source.chance(6),
            return_new_workflow_task: source.chance(3),
            new_run_id: format!("run-{}", run.runs + 1),
            now,
        }),
        9 => RunRequest::FailWorkflowTask(FailWorkflowTaskRequest {
            token: token(source),
            cause: source.below(40) as i32,
            failure: failure(source),
            identity,
            now,
        }),
        10..=11 => {
            let known: Vec<_> = ms.activities.values().collect();
            let (scheduled_event_id, attempt) = match known.is_empty() {
                false if !source.chance(4) => {
                    let a = source.pick(&known);
                    (a.scheduled_event_id, a.attempt)
                }
                _ => (source.i64() % 64, source.byte().into()),
            };
            RunRequest::RecordActivityTaskStarted(RecordActivityTaskStartedRequest {
                scheduled_event_id,
                attempt,
                request_id: format!("poll-{}", source.byte() % 4),
                identity,
                now,
            })
        }
        12..=13 => match source.below(4) {
            0 => RunRequest::CompleteActivityTask(CompleteActivityTaskRequest {
                activity: activity(source),
                result: payloads(source),
                identity,
                now,
            }),
            1 => RunRequest::FailActivityTask(FailActivityTaskRequest {
                activity: activity(source),
                failure: failure(source),
                last_heartbeat_details: payloads(source),
                identity,
                now,
            }),
            2 => RunRequest::CancelActivityTask(CancelActivityTaskRequest {
                activity: activity(source),
                details: payloads(source),
                identity,
                now,
            }),
            _ => RunRequest::HeartbeatActivityTask(HeartbeatActivityTaskRequest {
                activity: activity(source),
                details: payloads(source),
                identity,
                now,
            }),
        },
        14 => RunRequest::Signal(SignalRequest {
            signal_name: "sig".into(),
            input: payloads(source),
            identity,
            header: None,
            request_id: format!("signal-{}", source.byte() % 4),
            now,
        }),
        15 => {
            if !source.chance(8) {
                RunRequest::RequestCancel(RequestCancelRequest {
                    reason: "asked".into(),
                    identity,
                    request_id: format!("cancel-{}", source.byte() % 2),
                    now,
                })
            } else {
                RunRequest::Terminate(TerminateRequest {
                    reason: "stop".into(),
                    details: payloads(source),
                    identity,
                    now,
                })
            }
        }
        16..=17 => {
            // Mostly a timer that is due; now and then one the wheel delivers late, which
            // moves time to it.
            let due: Vec<_> = run.timers.iter().filter(|t| t.fire_at <= now).collect();
            let timer = if !due.is_empty() && !source.chance(4) {
                (*source.pick(&due)).clone()
            } else if !run.timers.is_empty() && source.chance(8) {
                source.pick(&run.timers).clone()
            } else {
                TimerTask {
                    fire_at: now,
                    kind: TimerKind::User {
                        timer_id: source.pick(TIMER_IDS).to_string(),
                        started_event_id: source.i64() % 64,
                    },
                }
            };
            RunRequest::FireTimer(FireTimerRequest {
                // The wheel fires a timer at or after its time.
                now: now.max(timer.fire_at),
                timer,
                new_run_id: format!("run-{}", run.runs + 1),
            })
        }
        18 if source.chance(2) => {
            let kind = if source.chance(2) {
                ExternalKind::Signal
            } else {
                ExternalKind::Cancel
            };
            let known: Vec<i64> = match kind {
                ExternalKind::Signal => ms.signals_external.keys().copied().collect(),
                ExternalKind::Cancel => ms.cancels_external.keys().copied().collect(),
            };
            let initiated_event_id = if known.is_empty() || source.chance(4) {
                source.i64() % 64
            } else {
                *source.pick(&known)
            };
            let caller = Caller {
                workflow_id: "caller".into(),
                run_id: "caller-run".into(),
                initiated_event_id,
                child_workflow_only: source.chance(2),
            };
            match source.below(3) {
                0 => RunRequest::ExternalReported(ExternalReportRequest {
                    kind,
                    initiated_event_id,
                    outcome: if source.chance(2) {
                        ExternalOutcome::Delivered
                    } else {
                        ExternalOutcome::Failed {
                            cause: source.below(4) as i32,
                        }
                    },
                    now,
                }),
                1 => RunRequest::SignalFromWorkflow(SignalFromWorkflowRequest {
                    signal: SignalRequest {
                        signal_name: "sig".into(),
                        input: payloads(source),
                        identity,
                        header: None,
                        request_id: format!("external-{}", source.byte() % 4),
                        now,
                    },
                    caller,
                }),
                _ => RunRequest::CancelFromWorkflow(CancelFromWorkflowRequest {
                    cancel: RequestCancelRequest {
                        reason: "asked".into(),
                        identity,
                        request_id: format!("external-{}", source.byte() % 4),
                        now,
                    },
                    caller,
                }),
            }
        }
        18 => {
            let initiated_event_id = child(source);
            match source.below(3) {
                0 => RunRequest::ChildStarted(ChildStartedRequest {
                    initiated_event_id,
                    run_id: "child-run".into(),
                    header: None,
                    now,
                }),
                1 => RunRequest::ChildStartFailed(ChildStartFailedRequest {
                    initiated_event_id,
                    now,
                }),
                _ => RunRequest::ChildClosed(ChildClosedRequest {
                    initiated_event_id,
                    run_id: "child-run".into(),
                    outcome: match source.below(5) {
                        0 => ChildOutcome::Completed(payloads(source)),
                        1 => ChildOutcome::Failed {
                            failure: failure(source),
                            retry_state: source.below(8) as i32,
                        },
                        2 => ChildOutcome::Canceled(payloads(source)),
                        3 => ChildOutcome::Terminated,
                        _ => ChildOutcome::TimedOut {
                            retry_state: source.below(8) as i32,
                        },
                    },
                    now,
                }),
            }
        }
        _ => {
            let update_id = source.pick(UPDATE_IDS).to_string();
            RunRequest::AdmitUpdate(AdmitUpdateRequest {
                request: Request {
                    meta: Some(Meta {
                        update_id: update_id.clone(),
                        identity: "client".into(),
                    }),
                    input: Some(Input {
                        header: None,
                        name: "upd".into(),
                        args: payloads(source),
                    }),
                    ..Default::default()
                },
                update_id,
                now,
            })
        }
    }
}

fn command(source: &mut Source, ms: &MutableState) -> Command {
    // Closing commands (7 to 10) are one draw in six, so most runs outlive a few tasks.
    let attributes = match source.below(24) {
        0..=2 | 16..=19 => {
            CA::ScheduleActivityTaskCommandAttributes(ScheduleActivityTaskCommandAttributes {
                activity_id: source.pick(ACTIVITY_IDS).to_string(),
                activity_type: Some(ActivityType {
                    name: if source.chance(8) { "" } else { "act" }.into(),
                }),
                task_queue: source.chance(4).then(|| TaskQueue {
                    name: TQ.into(),
                    ..Default::default()
                }),
                input: payloads(source),
                schedule_to_close_timeout: span(source),
                schedule_to_start_timeout: span(source),
                start_to_close_timeout: span(source),
                heartbeat_timeout: span(source),
                retry_policy: retry_policy(source),
                request_eager_execution: source.chance(4),
                ..Default::default()
            })
        }
        3 => CA::RequestCancelActivityTaskCommandAttributes(
            RequestCancelActivityTaskCommandAttributes {
                scheduled_event_id: match ms.activities.keys().next() {
                    Some(id) if !source.chance(4) => *id,
                    _ => source.i64() % 64,
                },
            },
        ),
        4..=5 | 20..=23 => CA::StartTimerCommandAttributes(StartTimerCommandAttributes {
            timer_id: source.pick(TIMER_IDS).to_string(),
            start_to_fire_timeout: span(source),
        }),
        6 => CA::CancelTimerCommandAttributes(CancelTimerCommandAttributes {
            timer_id: source.pick(TIMER_IDS).to_string(),
        }),
        7 => CA::CompleteWorkflowExecutionCommandAttributes(
            CompleteWorkflowExecutionCommandAttributes {
                result: payloads(source),
            },
        ),
        8 => CA::FailWorkflowExecutionCommandAttributes(FailWorkflowExecutionCommandAttributes {
            failure: failure(source),
        }),
        9 => {
            CA::CancelWorkflowExecutionCommandAttributes(CancelWorkflowExecutionCommandAttributes {
                details: payloads(source),
            })
        }
        10 => CA::ContinueAsNewWorkflowExecutionCommandAttributes(
            ContinueAsNewWorkflowExecutionCommandAttributes {
                workflow_type: source.chance(2).then(|| WorkflowType {
                    name: "Flow".into(),
                }),
                input: payloads(source),
                workflow_run_timeout: span(source),
                backoff_start_interval: span(source),
                ..Default::default()
            },
        ),
        11 => CA::RecordMarkerCommandAttributes(RecordMarkerCommandAttributes {
            marker_name: if source.chance(4) { "" } else { "m" }.into(),
            ..Default::default()
        }),
        12 => {
            let name = *source.pick(&["Tag", "Unknown", "WorkflowId"]);
            let value = Payload {
                metadata: [("encoding".to_string(), b"json/plain".to_vec())]
                    .into_iter()
                    .collect(),
                data: source.bytes(12).to_vec(),
                ..Default::default()
            };
            if source.chance(2) {
                CA::UpsertWorkflowSearchAttributesCommandAttributes(
                    UpsertWorkflowSearchAttributesCommandAttributes {
                        search_attributes: Some(SearchAttributes {
                            indexed_fields: [(name.to_string(), value)].into_iter().collect(),
                        }),
                    },
                )
            } else {
                CA::ModifyWorkflowPropertiesCommandAttributes(
                    ModifyWorkflowPropertiesCommandAttributes {
                        upserted_memo: Some(Memo {
                            fields: [(name.to_string(), value)].into_iter().collect(),
                        }),
                    },
                )
            }
        }
        13 => CA::StartChildWorkflowExecutionCommandAttributes(
            StartChildWorkflowExecutionCommandAttributes {
                workflow_id: source.pick(CHILD_IDS).to_string(),
                workflow_type: Some(WorkflowType {
                    name: "Child".into(),
                }),
                task_queue: source.chance(2).then(|| TaskQueue {
                    name: TQ.into(),
                    ..Default::default()
                }),
                parent_close_policy: source.below(4) as i32,
                ..Default::default()
            },
        ),
        14 => CA::ProtocolMessageCommandAttributes(ProtocolMessageCommandAttributes {
            message_id: format!("m{}", source.below(4)),
        }),
        _ => {
            if source.chance(3) {
                CA::RequestCancelExternalWorkflowExecutionCommandAttributes(
                    RequestCancelExternalWorkflowExecutionCommandAttributes {
                        workflow_id: source.pick(&["other", "", "wf"]).to_string(),
                        child_workflow_only: source.chance(2),
                        ..Default::default()
                    },
                )
            } else if source.chance(2) {
                CA::SignalExternalWorkflowExecutionCommandAttributes(
                    SignalExternalWorkflowExecutionCommandAttributes {
                        execution: (!source.chance(8)).then(|| WorkflowExecution {
                            workflow_id: source.pick(&["other", ""]).to_string(),
                            run_id: source.pick(&["", "not-a-uuid"]).to_string(),
                        }),
                        signal_name: source.pick(&["sig", ""]).to_string(),
                        input: payloads(source),
                        ..Default::default()
                    },
                )
            } else {
                // A command whose attributes do not match its type.
                return Command {
                    command_type: source.below(32) as i32,
                    attributes: None,
                    ..Default::default()
                };
            }
        }
    };
    Command {
        command_type: type_of(&attributes) as i32,
        attributes: Some(attributes),
        ..Default::default()
    }
}

fn type_of(attributes: &CA) -> CommandType {
    match attributes {
        CA::ScheduleActivityTaskCommandAttributes(_) => CommandType::ScheduleActivityTask,
        CA::RequestCancelActivityTaskCommandAttributes(_) => CommandType::RequestCancelActivityTask,
        CA::StartTimerCommandAttributes(_) => CommandType::StartTimer,
        CA::CancelTimerCommandAttributes(_) => CommandType::CancelTimer,
        CA::CompleteWorkflowExecutionCommandAttributes(_) => CommandType::CompleteWorkflowExecution,
        CA::FailWorkflowExecutionCommandAttributes(_) => CommandType::FailWorkflowExecution,
        CA::CancelWorkflowExecutionCommandAttributes(_) => CommandType::CancelWorkflowExecution,
        CA::ContinueAsNewWorkflowExecutionCommandAttributes(_) => {
            CommandType::ContinueAsNewWorkflowExecution
        }
        CA::RecordMarkerCommandAttributes(_) => CommandType::RecordMarker,
        CA::UpsertWorkflowSearchAttributesCommandAttributes(_) => {
            CommandType::UpsertWorkflowSearchAttributes
        }
        CA::ModifyWorkflowPropertiesCommandAttributes(_) => CommandType::ModifyWorkflowProperties,
        CA::StartChildWorkflowExecutionCommandAttributes(_) => {
            CommandType::StartChildWorkflowExecution
        }
        CA::ProtocolMessageCommandAttributes(_) => CommandType::ProtocolMessage,
        CA::RequestCancelExternalWorkflowExecutionCommandAttributes(_) => {
            CommandType::RequestCancelExternalWorkflowExecution
        }
        CA::SignalExternalWorkflowExecutionCommandAttributes(_) => {
            CommandType::SignalExternalWorkflowExecution
        }
        _ => CommandType::Unspecified,
    }
}

fn any(type_name: &str, message: &impl prost::Message) -> Any {
    Any {
        type_url: format!("type.googleapis.com/{type_name}"),
        value: message.encode_to_vec(),
    }
}

/// The worker's answers to admitted updates: acceptances, rejections, responses, in any mix.
fn messages(source: &mut Source, ms: &MutableState) -> Vec<Message> {
    let mut messages = Vec::new();
    for (update_id, state) in &ms.updates {
        if source.chance(2) {
            continue;
        }
        let request = match state {
            UpdateState::Admitted { request, .. } => Some(request.clone()),
            _ => None,
        };
        let body = match source.below(3) {
            0 => any(
                "temporal.api.update.v1.Acceptance",
                &Acceptance {
                    accepted_request_message_id: format!("{update_id}/request"),
                    accepted_request_sequencing_event_id: 0,
                    accepted_request: request,
                },
            ),
            1 => any(
                "temporal.api.update.v1.Rejection",
                &Rejection {
                    rejected_request_message_id: format!("{update_id}/request"),
                    rejected_request_sequencing_event_id: 0,
                    rejected_request: request,
                    failure: failure(source),
                },
            ),
            _ => any(
                "temporal.api.update.v1.Response",
                &Response {
                    meta: Some(Meta {
                        update_id: update_id.clone(),
                        identity: "worker".into(),
                    }),
                    outcome: Some(Outcome {
                        value: Some(outcome::Value::Success(Payloads::default())),
                    }),
                },
            ),
        };
        messages.push(Message {
            id: format!("m{}", messages.len()),
            protocol_instance_id: update_id.clone(),
            body: Some(body),
            sequencing_id: None,
        });
    }
    messages
}
