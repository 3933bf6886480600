//! RecordWorkflowTaskStarted, RespondWorkflowTaskCompleted and RespondWorkflowTaskFailed
//! (temporalio/temporal `service/history/api/recordworkflowtaskstarted`,
//! `api/respondworkflowtaskcompleted`, `workflow/workflow_task_state_machine.go`).

use serde::{Deserialize, Serialize};
use temporalio_protos::temporal::api::{
    command::v1::Command,
    common::v1::{MeteringMetadata, WorkerVersionStamp},
    enums::v1::{SuggestContinueAsNewReason, WorkflowTaskFailedCause},
    failure::v1::Failure,
    history::v1::{
        HistoryEvent, WorkflowTaskCompletedEventAttributes, WorkflowTaskScheduledEventAttributes,
        WorkflowTaskStartedEventAttributes, history_event::Attributes,
    },
    protocol::v1::Message,
    sdk::v1::WorkflowTaskCompletedMetadata,
};

use super::{
    commands::{self, CommandContext},
    updates,
};
use crate::{
    error::{HistoryError, Result},
    events::{go_enum_name, new_event, server_failure},
    limits::{Limit, Limits},
    mutable_state::{MutableState, StickyQueue, WorkflowTaskInfo},
    tasks::{Task, TaskQueueRef, TimerKind, WorkflowTaskTimeoutKind},
    time::{Nanos, to_duration},
    transition::{Transition, Tx, run, scheduled_event, started_event},
};

/// Request id the real server uses when it starts the next task inline.
const INLINE_START_REQUEST_ID: &str = "request-from-RespondWorkflowTaskCompleted";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordWorkflowTaskStartedRequest {
    pub scheduled_event_id: i64,
    /// From the dispatched task; a mismatch means the task is obsolete.
    pub stamp: i32,
    /// The poll's request id: a retried RecordWorkflowTaskStarted with it is idempotent.
    pub request_id: String,
    pub identity: String,
    /// The queue the poller polled (normal or its sticky queue).
    pub poll_task_queue: TaskQueueRef,
    pub now: Nanos,
}

/// Everything a PollWorkflowTaskQueueResponse needs besides the stored history, which the
/// caller reads from `first_event_id()` up to (excluding) `next_event_id`, then appends
/// `transient_events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowTaskStartedReply {
    pub namespace_id: String,
    pub workflow_id: String,
    pub run_id: String,
    pub workflow_type: String,
    pub scheduled_event_id: i64,
    pub started_event_id: i64,
    pub attempt: i32,
    pub stamp: i32,
    pub previous_started_event_id: i64,
    pub next_event_id: i64,
    pub task_queue: TaskQueueRef,
    pub scheduled_time: Nanos,
    pub started_time: Nanos,
    /// The worker may use its cached state: send history after `previous_started_event_id`.
    pub sticky_execution_enabled: bool,
    /// Scheduled/Started of a transient attempt; not in stored history.
    #[serde(with = "crate::pb::vec")]
    pub transient_events: Vec<HistoryEvent>,
    pub history_size_bytes: i64,
    /// The admitted updates the task carries to the worker.
    #[serde(with = "crate::pb::vec")]
    pub messages: Vec<Message>,
}

impl WorkflowTaskStartedReply {
    /// First event id of the history page to send with the task.
    pub fn first_event_id(&self) -> i64 {
        if self.sticky_execution_enabled {
            self.previous_started_event_id + 1
        } else {
            1
        }
    }
}

/// Identifies one started workflow task (the fields of Dura's task token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowTaskToken {
    pub scheduled_event_id: i64,
    pub started_event_id: i64,
    pub attempt: i32,
    pub stamp: i32,
}

impl WorkflowTaskToken {
    pub fn of(reply: &WorkflowTaskStartedReply) -> Self {
        WorkflowTaskToken {
            scheduled_event_id: reply.scheduled_event_id,
            started_event_id: reply.started_event_id,
            attempt: reply.attempt,
            stamp: reply.stamp,
        }
    }
}

/// The worker's sticky queue from `StickyExecutionAttributes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StickyAttributes {
    pub worker_task_queue: String,
    pub schedule_to_start_timeout: Nanos,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompleteWorkflowTaskRequest {
    pub token: WorkflowTaskToken,
    /// The namespace's name (commands that start child workflows name it in their events).
    pub namespace: String,
    /// The namespace's custom search attributes, filled when a command sets search attributes
    /// (the state machine checks them, and cannot read the namespace registry itself).
    pub custom_search_attributes:
        std::collections::BTreeMap<String, crate::visibility::SearchAttributeType>,
    #[serde(with = "crate::pb::vec")]
    pub commands: Vec<Command>,
    /// Protocol messages (update acceptances, rejections, responses).
    #[serde(with = "crate::pb::vec")]
    pub messages: Vec<Message>,
    pub identity: String,
    pub sticky_attributes: Option<StickyAttributes>,
    /// Stored verbatim in WorkflowTaskCompleted (the SDKs keep their flags there).
    #[serde(with = "crate::pb::opt")]
    pub sdk_metadata: Option<WorkflowTaskCompletedMetadata>,
    #[serde(with = "crate::pb::opt")]
    pub metering_metadata: Option<MeteringMetadata>,
    pub binary_checksum: String,
    #[serde(with = "crate::pb::opt")]
    pub worker_version: Option<WorkerVersionStamp>,
    pub force_create_new_workflow_task: bool,
    pub return_new_workflow_task: bool,
    /// Generated by the proposer; used only if the run closes and its retry policy starts a
    /// new run.
    pub new_run_id: String,
    pub now: Nanos,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompleteWorkflowTaskReply {
    /// The next task, already started, when `return_new_workflow_task` asked for it.
    pub new_workflow_task: Option<WorkflowTaskStartedReply>,
    /// The completion was turned into a workflow task failure (bad command, unhandled command):
    /// the transition is committed, and the RPC must answer with this error.
    pub task_failed: Option<HistoryError>,
    /// A speculative task was discarded: the worker must forget what it saw after this event
    /// (the last completed task's started event), as with the real server.
    pub reset_history_event_id: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailWorkflowTaskRequest {
    pub token: WorkflowTaskToken,
    /// `WorkflowTaskFailedCause` as i32.
    pub cause: i32,
    #[serde(with = "crate::pb::opt")]
    pub failure: Option<Failure>,
    pub identity: String,
    pub now: Nanos,
}

/// A poller got the task: append WorkflowTaskStarted (not for transient attempts).
pub fn record_workflow_task_started(
    ms: &mut MutableState,
    req: RecordWorkflowTaskStartedRequest,
    limits: &Limits,
) -> Result<Transition<WorkflowTaskStartedReply>> {
    run(ms, req.now, |tx| {
        tx.ensure_running()?;
        let wt = match &tx.ms.workflow_task {
            Some(wt) if wt.scheduled_event_id == req.scheduled_event_id => wt.clone(),
            _ => return Err(HistoryError::workflow_task_not_found()),
        };
        if wt.stamp != req.stamp {
            return Err(HistoryError::ObsoleteTask(
                "Workflow task stamp mismatch".into(),
            ));
        }
        if wt.is_started() {
            if wt.request_id == req.request_id {
                return Ok(started_reply(&tx.ms));
            }
            return Err(HistoryError::TaskAlreadyStarted(
                "Workflow task already started.".into(),
            ));
        }
        let current = tx.ms.current_task_queue();
        if current.sticky && current.name != req.poll_task_queue.name {
            // Matching fell back to the normal queue (sticky worker gone): stop being sticky.
            tx.ms.sticky = None;
            if let Some(wt) = tx.ms.workflow_task.as_mut() {
                wt.task_queue = TaskQueueRef::normal(tx.ms.task_queue.clone());
            }
        }
        if !current.sticky && req.poll_task_queue.sticky {
            return Err(HistoryError::ObsoleteTask(
                "rejecting sticky poller because workflow has moved to normal queue".into(),
            ));
        }
        start_workflow_task(tx, &req.request_id, &req.identity, limits)
    })
}

/// Marks the pending workflow task started (the real server's `AddWorkflowTaskStartedEvent`).
/// Its Started event suggests continue-as-new once the history reaches `limits`' thresholds
/// (only when it is written now: a transient attempt's is made up later, without).
pub(super) fn start_workflow_task(
    tx: &mut Tx,
    request_id: &str,
    identity: &str,
    limits: &Limits,
) -> Result<WorkflowTaskStartedReply> {
    let Some(mut wt) = tx.ms.workflow_task.clone() else {
        return Err(HistoryError::Internal("no workflow task to start".into()));
    };
    if wt.is_transient() && wt.scheduled_event_id != tx.ms.next_event_id {
        // Events arrived since the transient attempt was scheduled: the worker must see them,
        // so this attempt becomes a normal task with real Scheduled/Started events.
        wt.attempt = 1;
        wt.speculative = false;
        tx.ms.workflow_task_attempt = 1;
        wt.scheduled_event_id = tx.append(new_event(
            tx.now,
            Attributes::WorkflowTaskScheduledEventAttributes(
                WorkflowTaskScheduledEventAttributes {
                    task_queue: Some(TaskQueueRef::normal(tx.ms.task_queue.clone()).to_proto()),
                    start_to_close_timeout: Some(to_duration(wt.start_to_close_timeout)),
                    attempt: 1,
                },
            ),
        ));
    }
    wt.started_time = tx.now;
    wt.request_id = request_id.to_string();
    wt.identity = identity.to_string();
    wt.history_size_bytes = tx.ms.history_size_bytes;
    wt.started_event_id = if wt.is_transient() {
        wt.scheduled_event_id + 1
    } else {
        // The started event's id is the history's length once it is written.
        let reasons = suggest_continue_as_new(limits, tx.ms.next_event_id, wt.history_size_bytes);
        tx.append(new_event(
            tx.now,
            Attributes::WorkflowTaskStartedEventAttributes(WorkflowTaskStartedEventAttributes {
                scheduled_event_id: wt.scheduled_event_id,
                identity: identity.to_string(),
                request_id: request_id.to_string(),
                history_size_bytes: wt.history_size_bytes,
                suggest_continue_as_new: !reasons.is_empty(),
                suggest_continue_as_new_reasons: reasons,
                ..Default::default()
            }),
        ))
    };
    tx.timer(
        tx.now.saturating_add(wt.start_to_close_timeout),
        TimerKind::WorkflowTaskTimeout {
            scheduled_event_id: wt.scheduled_event_id,
            attempt: wt.attempt,
            stamp: wt.stamp,
            timeout: WorkflowTaskTimeoutKind::StartToClose,
        },
    );
    tx.ms.workflow_task = Some(wt);
    Ok(started_reply(&tx.ms))
}

/// Why a workflow task started with `history_count` events and `history_size` bytes in its
/// history suggests continue-as-new (`workflow_task_state_machine.go`, getHistorySizeInfo).
fn suggest_continue_as_new(limits: &Limits, history_count: i64, history_size: i64) -> Vec<i32> {
    let mut reasons = Vec::new();
    if limits.reached(Limit::HistorySizeSuggestContinueAsNew, history_size) {
        reasons.push(SuggestContinueAsNewReason::HistorySizeTooLarge as i32);
    }
    if limits.reached(Limit::HistoryCountSuggestContinueAsNew, history_count) {
        reasons.push(SuggestContinueAsNewReason::TooManyHistoryEvents as i32);
    }
    reasons
}

pub(super) fn started_reply(ms: &MutableState) -> WorkflowTaskStartedReply {
    let wt = ms
        .workflow_task
        .clone()
        .expect("started_reply needs a workflow task");
    WorkflowTaskStartedReply {
        namespace_id: ms.namespace_id.clone(),
        workflow_id: ms.workflow_id.clone(),
        run_id: ms.run_id.clone(),
        workflow_type: ms.workflow_type.clone(),
        scheduled_event_id: wt.scheduled_event_id,
        started_event_id: wt.started_event_id,
        attempt: wt.attempt,
        stamp: wt.stamp,
        previous_started_event_id: ms.last_completed_wt_started_event_id,
        next_event_id: ms.next_event_id,
        task_queue: wt.task_queue.clone(),
        scheduled_time: wt.scheduled_time,
        started_time: wt.started_time,
        sticky_execution_enabled: ms.sticky.is_some(),
        transient_events: if wt.is_transient() {
            transient_events(&wt)
        } else {
            Vec::new()
        },
        history_size_bytes: wt.history_size_bytes,
        messages: super::updates::request_messages(ms, wt.started_event_id),
    }
}

/// The Scheduled/Started pair of a transient attempt, as it would be written on completion.
fn transient_events(wt: &WorkflowTaskInfo) -> Vec<HistoryEvent> {
    let mut scheduled = scheduled_event(wt);
    scheduled.event_id = wt.scheduled_event_id;
    let mut started = started_event(wt, &wt.identity);
    started.event_id = wt.started_event_id;
    vec![scheduled, started]
}

fn started_task(ms: &MutableState, token: &WorkflowTaskToken) -> Result<WorkflowTaskInfo> {
    if !ms.is_running() {
        return Err(HistoryError::workflow_task_not_found());
    }
    match &ms.workflow_task {
        Some(wt)
            if wt.is_started()
                && wt.scheduled_event_id == token.scheduled_event_id
                && wt.started_event_id == token.started_event_id
                && wt.attempt == token.attempt
                && wt.stamp == token.stamp =>
        {
            Ok(wt.clone())
        }
        _ => Err(HistoryError::workflow_task_not_found()),
    }
}

/// The worker finished a workflow task: WorkflowTaskCompleted, one batch of events per command,
/// then the buffered events, then (if anything is new) the next workflow task.
pub fn complete_workflow_task(
    ms: &mut MutableState,
    req: CompleteWorkflowTaskRequest,
    limits: &Limits,
) -> Result<Transition<CompleteWorkflowTaskReply>> {
    run(ms, req.now, |tx| {
        let wt = started_task(&tx.ms, &req.token)?;
        if let Some(err) = commands::unknown_command_type(&req.commands) {
            return Err(err);
        }
        commands::validate_sequence(&req.commands)?;

        if wt.speculative
            && req.commands.is_empty()
            && tx.ms.buffered_events.is_empty()
            && updates::only_rejections(&req.messages)
        {
            // Like the real server: a speculative task that only rejected updates leaves no
            // trace in history.
            tx.ms.workflow_task = None;
            for message in &req.messages {
                updates::apply_message(tx, message)
                    .map_err(|f| HistoryError::InvalidArgument(f.message()))?;
            }
            return Ok(CompleteWorkflowTaskReply {
                new_workflow_task: None,
                task_failed: None,
                reset_history_event_id: tx.ms.last_completed_wt_started_event_id,
            });
        }

        let before = tx.ms.clone();
        let had_buffered = !tx.ms.buffered_events.is_empty();
        // The task is gone before its completion is written, so command events go straight to
        // history instead of the buffer.
        tx.ms.workflow_task = None;
        let (scheduled_id, started_id) = if wt.is_transient() {
            let s = tx.append(scheduled_event(&wt));
            let mut started = wt.clone();
            started.scheduled_event_id = s;
            let st = tx.append(started_event(&started, &req.identity));
            (s, st)
        } else {
            (wt.scheduled_event_id, wt.started_event_id)
        };
        // Deprecated fields are still what pre-deployment SDKs send; keep them verbatim.
        #[allow(deprecated)]
        let completed_attrs = WorkflowTaskCompletedEventAttributes {
            scheduled_event_id: scheduled_id,
            started_event_id: started_id,
            identity: req.identity.clone(),
            binary_checksum: req.binary_checksum.clone(),
            worker_version: req.worker_version.clone(),
            sdk_metadata: req.sdk_metadata.clone(),
            metering_metadata: req.metering_metadata,
            ..Default::default()
        };
        let completed_id = tx.append(new_event(
            tx.now,
            Attributes::WorkflowTaskCompletedEventAttributes(completed_attrs),
        ));
        tx.ms.workflow_task_attempt = 1;
        tx.ms.last_completed_wt_started_event_id = started_id;
        tx.ms.sticky = req
            .sticky_attributes
            .as_ref()
            .filter(|s| !s.worker_task_queue.is_empty())
            .map(|s| StickyQueue {
                name: s.worker_task_queue.clone(),
                schedule_to_start_timeout: s.schedule_to_start_timeout,
            });

        let mut ctx = CommandContext {
            completed_event_id: completed_id,
            namespace: req.namespace.clone(),
            custom_search_attributes: req.custom_search_attributes.clone(),
            identity: req.identity.clone(),
            new_run_id: req.new_run_id.clone(),
            has_buffered: had_buffered,
            activity_not_started_cancelled: false,
            limits: limits.clone(),
            messages: req
                .messages
                .iter()
                .map(|m| (m.id.clone(), m.clone()))
                .collect(),
        };
        // Messages no command names are applied after the commands, in the order sent.
        let unnamed = |ctx: &CommandContext| {
            req.messages
                .iter()
                .filter(|m| ctx.messages.contains_key(&m.id))
                .cloned()
                .collect::<Vec<_>>()
        };
        let outcome = req
            .commands
            .iter()
            .try_for_each(|command| commands::handle(tx, &mut ctx, command))
            .and_then(|()| {
                unnamed(&ctx).iter().try_for_each(|message| {
                    ctx.check_message(message)?;
                    updates::apply_message(tx, message)
                })
            });
        {
            if let Err(failure) = outcome {
                let message = failure.message();
                if wt.is_transient()
                    && !failure.terminate
                    && failure.cause != WorkflowTaskFailedCause::UnhandledCommand
                {
                    // A task that keeps failing is dropped; it times out and is retried.
                    return Err(HistoryError::InvalidArgument(message));
                }
                // Like the real server, discard everything this completion did and record the
                // failure against the state as it was.
                tx.ms = before;
                tx.events.clear();
                tx.tasks.clear();
                tx.fail_started_workflow_task(
                    failure.cause,
                    Some(server_failure(message.clone(), false)),
                    &req.identity,
                );
                if failure.terminate {
                    super::start::terminate(
                        tx,
                        message.clone(),
                        None,
                        crate::events::HISTORY_SERVICE_IDENTITY.into(),
                    );
                } else {
                    tx.schedule_workflow_task();
                }
                return Ok(CompleteWorkflowTaskReply {
                    new_workflow_task: None,
                    task_failed: Some(HistoryError::InvalidArgument(message)),
                    reset_history_event_id: 0,
                });
            }
        }

        let mut new_workflow_task = None;
        if tx.ms.is_running() {
            let needs_task = req.force_create_new_workflow_task
                || ctx.has_buffered
                || ctx.activity_not_started_cancelled
                || updates::has_admitted(&tx.ms);
            if needs_task {
                tx.schedule_workflow_task();
                if req.return_new_workflow_task {
                    let stamp = tx.ms.workflow_task.as_ref().map(|w| w.stamp);
                    // Started inline: matching never sees it, so it needs no dispatch task.
                    tx.tasks.retain(|t| !is_dispatch_of(t, stamp));
                    let mut reply =
                        start_workflow_task(tx, INLINE_START_REQUEST_ID, &req.identity, limits)?;
                    reply.sticky_execution_enabled = true;
                    new_workflow_task = Some(reply);
                }
            } else {
                tx.flush_buffer();
            }
        }
        Ok(CompleteWorkflowTaskReply {
            new_workflow_task,
            task_failed: None,
            reset_history_event_id: 0,
        })
    })
}

fn is_dispatch_of(task: &Task, stamp: Option<i32>) -> bool {
    match task {
        Task::WorkflowTask(d) => Some(d.stamp) == stamp,
        Task::Timer(t) => matches!(
            t.kind,
            TimerKind::WorkflowTaskTimeout {
                stamp: s,
                timeout: WorkflowTaskTimeoutKind::ScheduleToStart,
                ..
            } if Some(s) == stamp
        ),
        _ => false,
    }
}

/// The worker reports that it could not process the task (e.g. nondeterminism, a panic).
pub fn fail_workflow_task(
    ms: &mut MutableState,
    req: FailWorkflowTaskRequest,
) -> Result<Transition<()>> {
    run(ms, req.now, |tx| {
        started_task(&tx.ms, &req.token)?;
        let cause = WorkflowTaskFailedCause::try_from(req.cause)
            .unwrap_or(WorkflowTaskFailedCause::Unspecified);
        tx.fail_started_workflow_task(cause, req.failure.clone(), &req.identity);
        tx.schedule_workflow_task();
        Ok(())
    })
}

/// The Go-style name of a failed cause (`UnhandledCommand`), used in error messages.
pub(crate) fn cause_name(cause: WorkflowTaskFailedCause) -> String {
    go_enum_name(cause.as_str_name(), "WORKFLOW_TASK_FAILED_CAUSE_")
}
