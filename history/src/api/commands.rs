//! The worker's commands, each validated and turned into events like the real server does
//! (temporalio/temporal `api/respondworkflowtaskcompleted/workflow_task_completed_handler.go`,
//! `api/command_attr_validator.go`, `chasm/lib/activity/validator.go`).

use prost::Message as _;
use temporalio_protos::temporal::api::{
    command::v1::{
        Command, ContinueAsNewWorkflowExecutionCommandAttributes,
        ScheduleActivityTaskCommandAttributes, command::Attributes as CommandAttributes,
    },
    common::v1::WorkflowType,
    enums::v1::{CommandType, ContinueAsNewInitiator, RetryState, WorkflowTaskFailedCause},
    history::v1::{
        ActivityTaskCancelRequestedEventAttributes, ActivityTaskCanceledEventAttributes,
        ActivityTaskScheduledEventAttributes, MarkerRecordedEventAttributes,
        TimerCanceledEventAttributes, TimerStartedEventAttributes,
        UpsertWorkflowSearchAttributesEventAttributes, WorkflowExecutionCanceledEventAttributes,
        WorkflowExecutionCompletedEventAttributes, WorkflowExecutionContinuedAsNewEventAttributes,
        WorkflowExecutionFailedEventAttributes, WorkflowPropertiesModifiedEventAttributes,
        history_event::Attributes,
    },
};

use super::{
    command_limits::{payload_map_size, payloads_map_size, payloads_size},
    workflow_task::cause_name,
};
use crate::{
    api::start::normalized_timeouts,
    error::HistoryError,
    events::{go_enum_name, json_string_payloads},
    limits::Limit,
    mutable_state::{ActivityInfo, MutableState, TimerInfo, WorkflowStatus},
    retry,
    tasks::{TaskQueueRef, TimerKind},
    time::{from_duration, is_negative, to_duration},
    transition::{Continuation, Tx, activity_tasks},
};

/// Longest id (activity id, timer id, marker name, ...) the server accepts.
const MAX_ID_LENGTH: usize = 1000;

/// State shared by the commands of one completion.
pub(crate) struct CommandContext {
    pub completed_event_id: i64,
    /// The workflow's namespace name (child workflows are started in it).
    pub namespace: String,
    /// The namespace's custom search attributes, to check the ones commands set.
    pub custom_search_attributes:
        std::collections::BTreeMap<String, crate::visibility::SearchAttributeType>,
    /// The completion's protocol messages (updates) not yet applied, by message id.
    pub messages:
        std::collections::BTreeMap<String, temporalio_protos::temporal::api::protocol::v1::Message>,
    pub identity: String,
    /// The id a retry of the run gets.
    pub new_run_id: String,
    /// Events arrived while the task ran: the workflow may not close on this completion.
    pub has_buffered: bool,
    pub activity_not_started_cancelled: bool,
    /// What the commands may carry and leave pending (see `command_limits`).
    pub limits: crate::limits::Limits,
}

/// A command the server refuses: the completion becomes a WorkflowTaskFailed with `cause`.
pub(crate) struct CommandFailure {
    pub cause: WorkflowTaskFailedCause,
    pub detail: Option<String>,
    /// The run is terminated after the failure (a size limit broken): retrying the task
    /// would only break it again.
    pub terminate: bool,
}

impl CommandFailure {
    pub(crate) fn new(cause: WorkflowTaskFailedCause, detail: impl Into<String>) -> Self {
        CommandFailure {
            cause,
            detail: Some(detail.into()),
            terminate: false,
        }
    }

    /// `UnhandledCommand`, or `BadScheduleActivityAttributes: activityId is not set`.
    pub fn message(&self) -> String {
        match &self.detail {
            None => cause_name(self.cause),
            Some(d) => format!("{}: {d}", cause_name(self.cause)),
        }
    }
}

type CommandResult = Result<(), CommandFailure>;

impl CommandContext {
    /// Search attributes a command sets, checked like the real server (BAD_SEARCH_ATTRIBUTES).
    pub(crate) fn check_search_attributes(
        &self,
        attributes: Option<&temporalio_protos::temporal::api::common::v1::SearchAttributes>,
    ) -> CommandResult {
        let Some(attributes) = attributes else {
            return Ok(());
        };
        crate::visibility::check_search_attribute_count(attributes, &self.limits)
            .and_then(|()| {
                crate::visibility::validate_search_attributes(
                    &self.namespace,
                    &self.custom_search_attributes,
                    attributes,
                )
            })
            .map_err(|e| CommandFailure::new(WorkflowTaskFailedCause::BadSearchAttributes, e))
    }
}

fn command_type(c: &Command) -> CommandType {
    CommandType::try_from(c.command_type).unwrap_or(CommandType::Unspecified)
}

/// A command of no known type refuses the whole completion, as on the real server ("Unknown
/// command type"), before any state changes.
pub(crate) fn unknown_command_type(commands: &[Command]) -> Option<HistoryError> {
    commands
        .iter()
        .find(|c| command_type(c) == CommandType::Unspecified)
        .map(|c| HistoryError::InvalidArgument(format!("Unknown command type: {}", c.command_type)))
}

/// A command Temporal defines that this server cannot carry out (yet, or while a member of an
/// earlier build could not apply what it leads to) fails the workflow task visibly, with the
/// cause the real server gives a command whose feature it has disabled, rather than leave the
/// workflow waiting on something that will never happen.
fn not_supported(command: CommandType) -> CommandFailure {
    let name = go_enum_name(command.as_str_name(), "COMMAND_TYPE_");
    CommandFailure::new(
        WorkflowTaskFailedCause::FeatureDisabled,
        format!("{name} commands are not supported by this server (Dura) yet"),
    )
}

/// A close command must be the last one.
pub(crate) fn validate_sequence(commands: &[Command]) -> Result<(), HistoryError> {
    let mut close: Option<CommandType> = None;
    for c in commands {
        if let Some(close) = close {
            let names: Vec<_> = commands
                .iter()
                .map(|c| command_type(c).as_str_name())
                .collect();
            return Err(HistoryError::InvalidArgument(format!(
                "invalid command sequence: [{}], command {} must be the last command.",
                names.join(", "),
                close.as_str_name()
            )));
        }
        let t = command_type(c);
        if matches!(
            t,
            CommandType::CompleteWorkflowExecution
                | CommandType::FailWorkflowExecution
                | CommandType::CancelWorkflowExecution
                | CommandType::ContinueAsNewWorkflowExecution
        ) {
            close = Some(t);
        }
    }
    Ok(())
}

/// Applies one command inside the completion's transaction.
pub(crate) fn handle(tx: &mut Tx, ctx: &mut CommandContext, command: &Command) -> CommandResult {
    use WorkflowTaskFailedCause as C;
    let attrs = command.attributes.as_ref();
    match (command_type(command), attrs) {
        (
            CommandType::ScheduleActivityTask,
            Some(CommandAttributes::ScheduleActivityTaskCommandAttributes(a)),
        ) => schedule_activity(tx, ctx, a.clone()),
        (
            CommandType::StartChildWorkflowExecution,
            Some(CommandAttributes::StartChildWorkflowExecutionCommandAttributes(a)),
        ) => super::children::start_child(tx, ctx, a.clone()),
        (
            CommandType::ProtocolMessage,
            Some(CommandAttributes::ProtocolMessageCommandAttributes(a)),
        ) => match ctx.messages.remove(&a.message_id) {
            Some(message) => {
                ctx.check_message(&message)?;
                super::updates::apply_message(tx, &message)
            }
            None => Err(CommandFailure::new(
                C::BadUpdateWorkflowExecutionMessage,
                format!(
                    "ProtocolMessageCommand names unknown message {}",
                    a.message_id
                ),
            )),
        },
        (CommandType::ProtocolMessage, _) => Err(CommandFailure::new(
            C::BadUpdateWorkflowExecutionMessage,
            "ProtocolMessageCommandAttributes is not set on ProtocolMessageCommand.",
        )),
        (CommandType::StartChildWorkflowExecution, _) => Err(CommandFailure::new(
            C::BadStartChildExecutionAttributes,
            "StartChildWorkflowExecutionCommandAttributes is not set on StartChildWorkflowExecutionCommand.",
        )),
        (CommandType::ScheduleActivityTask, _) => Err(CommandFailure::new(
            C::BadScheduleActivityAttributes,
            "ScheduleActivityTaskCommandAttributes is not set on ScheduleActivityTaskCommand.",
        )),
        (
            CommandType::RequestCancelActivityTask,
            Some(CommandAttributes::RequestCancelActivityTaskCommandAttributes(a)),
        ) => request_cancel_activity(tx, ctx, a.scheduled_event_id),
        (CommandType::RequestCancelActivityTask, _) => Err(CommandFailure::new(
            C::BadRequestCancelActivityAttributes,
            "RequestCancelActivityTaskCommandAttributes is not set on RequestCancelActivityTaskCommand.",
        )),
        (CommandType::StartTimer, Some(CommandAttributes::StartTimerCommandAttributes(a))) => {
            if a.timer_id.is_empty() {
                return Err(CommandFailure::new(
                    C::BadStartTimerAttributes,
                    "TimerId is not set on StartTimerCommand.",
                ));
            }
            if a.timer_id.len() > MAX_ID_LENGTH {
                return Err(CommandFailure::new(
                    C::BadStartTimerAttributes,
                    "TimerId on StartTimerCommand exceeds length limit.",
                ));
            }
            if is_negative(a.start_to_fire_timeout.as_ref()) {
                return Err(CommandFailure::new(
                    C::BadStartTimerAttributes,
                    format!(
                        "An invalid StartToFireTimeout is set on StartTimerCommand: negative duration. TimerId={}",
                        a.timer_id
                    ),
                ));
            }
            if tx.ms.timers.contains_key(&a.timer_id) {
                return Err(CommandFailure::new(
                    C::StartTimerDuplicateId,
                    format!("TimerID: {}", a.timer_id),
                ));
            }
            let id = tx
                .add(Attributes::TimerStartedEventAttributes(
                    TimerStartedEventAttributes {
                        timer_id: a.timer_id.clone(),
                        start_to_fire_timeout: a.start_to_fire_timeout,
                        workflow_task_completed_event_id: ctx.completed_event_id,
                    },
                ))
                .unwrap_or_default();
            let expiry = tx
                .now
                .saturating_add(from_duration(a.start_to_fire_timeout.as_ref()));
            tx.ms.timers.insert(
                a.timer_id.clone(),
                TimerInfo {
                    timer_id: a.timer_id.clone(),
                    started_event_id: id,
                    expiry_time: expiry,
                },
            );
            tx.timer(
                expiry,
                TimerKind::User {
                    timer_id: a.timer_id.clone(),
                    started_event_id: id,
                },
            );
            Ok(())
        }
        (CommandType::StartTimer, _) => Err(CommandFailure::new(
            C::BadStartTimerAttributes,
            "StartTimerCommandAttributes is not set on StartTimerCommand.",
        )),
        (CommandType::CancelTimer, Some(CommandAttributes::CancelTimerCommandAttributes(a))) => {
            cancel_timer(tx, ctx, &a.timer_id)
        }
        (CommandType::CancelTimer, _) => Err(CommandFailure::new(
            C::BadCancelTimerAttributes,
            "CancelTimerCommandAttributes is not set on CancelTimerCommand.",
        )),
        (CommandType::RecordMarker, Some(CommandAttributes::RecordMarkerCommandAttributes(a))) => {
            if a.marker_name.is_empty() {
                return Err(CommandFailure::new(
                    C::BadRecordMarkerAttributes,
                    "MarkerName is not set on RecordMarkerCommand.",
                ));
            }
            if a.marker_name.len() > MAX_ID_LENGTH {
                return Err(CommandFailure::new(
                    C::BadRecordMarkerAttributes,
                    "MarkerName on RecordMarkerCommand exceeds length limit.",
                ));
            }
            ctx.check_payload(
                payloads_map_size(&a.details),
                C::BadRecordMarkerAttributes,
                "RecordMarkerCommandAttributes.Details",
            )?;
            tx.add(Attributes::MarkerRecordedEventAttributes(
                MarkerRecordedEventAttributes {
                    marker_name: a.marker_name.clone(),
                    details: a.details.clone(),
                    workflow_task_completed_event_id: ctx.completed_event_id,
                    header: a.header.clone(),
                    failure: a.failure.clone(),
                },
            ));
            Ok(())
        }
        (CommandType::RecordMarker, _) => Err(CommandFailure::new(
            C::BadRecordMarkerAttributes,
            "RecordMarkerCommandAttributes is not set on RecordMarkerCommand.",
        )),
        (CommandType::UpsertWorkflowSearchAttributes, attrs) => {
            let Some(CommandAttributes::UpsertWorkflowSearchAttributesCommandAttributes(a)) = attrs
            else {
                return Err(CommandFailure::new(
                    C::BadSearchAttributes,
                    "UpsertWorkflowSearchAttributesCommandAttributes is not set on UpsertWorkflowSearchAttributesCommand.",
                ));
            };
            let Some(sa) = a
                .search_attributes
                .clone()
                .filter(|s| !s.indexed_fields.is_empty())
            else {
                return Err(CommandFailure::new(
                    C::BadSearchAttributes,
                    "SearchAttributes is not set on UpsertWorkflowSearchAttributesCommand.",
                ));
            };
            ctx.check_search_attributes(Some(&sa))?;
            ctx.check_payload(
                payload_map_size(&sa.indexed_fields),
                C::BadSearchAttributes,
                "UpsertWorkflowSearchAttributesCommandAttributes",
            )?;
            let mut merged = tx.ms.search_attributes.clone().unwrap_or_default();
            upsert_fields(&mut merged.indexed_fields, &sa.indexed_fields);
            ctx.check_search_attribute_sizes(Some(&merged), C::BadSearchAttributes)?;
            tx.ms.search_attributes = Some(merged);
            tx.add(Attributes::UpsertWorkflowSearchAttributesEventAttributes(
                UpsertWorkflowSearchAttributesEventAttributes {
                    workflow_task_completed_event_id: ctx.completed_event_id,
                    search_attributes: Some(sa),
                },
            ));
            Ok(())
        }
        (CommandType::ModifyWorkflowProperties, attrs) => {
            let Some(CommandAttributes::ModifyWorkflowPropertiesCommandAttributes(a)) = attrs
            else {
                return Err(CommandFailure::new(
                    C::BadModifyWorkflowPropertiesAttributes,
                    "ModifyWorkflowPropertiesCommandAttributes is not set on ModifyWorkflowPropertiesCommand.",
                ));
            };
            if let Some(memo) = &a.upserted_memo {
                ctx.check_payload(
                    payload_map_size(&memo.fields),
                    C::BadModifyWorkflowPropertiesAttributes,
                    "ModifyWorkflowPropertiesCommandAttributes",
                )?;
                let mut merged = tx.ms.memo.clone().unwrap_or_default();
                upsert_fields(&mut merged.fields, &memo.fields);
                ctx.check_memo(
                    Some(&merged),
                    C::BadModifyWorkflowPropertiesAttributes,
                    "ModifyWorkflowPropertiesCommandAttributes. Memo",
                )?;
                tx.ms.memo = Some(merged);
            }
            tx.add(Attributes::WorkflowPropertiesModifiedEventAttributes(
                WorkflowPropertiesModifiedEventAttributes {
                    workflow_task_completed_event_id: ctx.completed_event_id,
                    upserted_memo: a.upserted_memo.clone(),
                },
            ));
            Ok(())
        }
        (CommandType::CompleteWorkflowExecution, attrs) => {
            if ctx.has_buffered {
                return Err(unhandled());
            }
            let Some(CommandAttributes::CompleteWorkflowExecutionCommandAttributes(a)) = attrs
            else {
                return Err(CommandFailure::new(
                    C::BadCompleteWorkflowExecutionAttributes,
                    "CompleteWorkflowExecutionCommandAttributes is not set on CompleteWorkflowExecutionCommand.",
                ));
            };
            // The real server names the activity cause here (its own slip, kept for parity).
            ctx.check_payload(
                payloads_size(a.result.as_ref()),
                C::BadScheduleActivityAttributes,
                "CompleteWorkflowExecutionCommandAttributes.Result",
            )?;
            if tx.ms.is_running() {
                tx.close(
                    WorkflowStatus::Completed,
                    Attributes::WorkflowExecutionCompletedEventAttributes(
                        WorkflowExecutionCompletedEventAttributes {
                            result: a.result.clone(),
                            workflow_task_completed_event_id: ctx.completed_event_id,
                            new_execution_run_id: String::new(),
                        },
                    ),
                );
            }
            Ok(())
        }
        (CommandType::FailWorkflowExecution, attrs) => {
            if ctx.has_buffered {
                return Err(unhandled());
            }
            let Some(CommandAttributes::FailWorkflowExecutionCommandAttributes(a)) = attrs else {
                return Err(CommandFailure::new(
                    C::BadFailWorkflowExecutionAttributes,
                    "FailWorkflowExecutionCommandAttributes is not set on FailWorkflowExecutionCommand.",
                ));
            };
            let Some(failure) = a.failure.clone() else {
                return Err(CommandFailure::new(
                    C::BadFailWorkflowExecutionAttributes,
                    "Failure is not set on FailWorkflowExecutionCommand.",
                ));
            };
            ctx.check_payload(
                failure.encoded_len(),
                C::BadFailWorkflowExecutionAttributes,
                "FailWorkflowExecutionCommandAttributes.Failure",
            )?;
            if tx.ms.is_running() {
                let (retry_state, backoff) = match &tx.ms.retry_policy {
                    None => (RetryState::RetryPolicyNotSet, 0),
                    Some(policy) => {
                        let expiration = (tx.ms.execution_expiration_time > 0)
                            .then_some(tx.ms.execution_expiration_time);
                        retry::next_retry(policy, tx.ms.attempt, &failure, tx.now, expiration)
                    }
                };
                let retrying = retry_state == RetryState::InProgress;
                tx.close(
                    WorkflowStatus::Failed,
                    Attributes::WorkflowExecutionFailedEventAttributes(
                        WorkflowExecutionFailedEventAttributes {
                            failure: Some(failure.clone()),
                            retry_state: retry_state as i32,
                            workflow_task_completed_event_id: ctx.completed_event_id,
                            new_execution_run_id: if retrying {
                                ctx.new_run_id.clone()
                            } else {
                                String::new()
                            },
                        },
                    ),
                );
                if retrying {
                    tx.continuation = Some(Continuation {
                        new_run_id: ctx.new_run_id.clone(),
                        initiator: ContinueAsNewInitiator::Retry as i32,
                        continue_as_new: None,
                        backoff: retry::continuation_backoff(tx.ms.execution_time, tx.now, backoff),
                        failure: Some(failure),
                        now: tx.now,
                    });
                }
            }
            Ok(())
        }
        (CommandType::ContinueAsNewWorkflowExecution, attrs) => {
            if ctx.has_buffered {
                return Err(unhandled());
            }
            let Some(CommandAttributes::ContinueAsNewWorkflowExecutionCommandAttributes(a)) = attrs
            else {
                return Err(CommandFailure::new(
                    C::BadContinueAsNewAttributes,
                    "ContinueAsNewWorkflowExecutionCommandAttributes is not set on ContinueAsNewWorkflowExecutionCommand.",
                ));
            };
            if !a.cron_schedule.is_empty() {
                return Err(CommandFailure::new(
                    C::BadContinueAsNewAttributes,
                    "cron schedules are not implemented by Dura",
                ));
            }
            ctx.check_search_attributes(a.search_attributes.as_ref())?;
            ctx.check_payload(
                payloads_size(a.input.as_ref()),
                C::BadContinueAsNewAttributes,
                "ContinueAsNewWorkflowExecutionCommandAttributes. Input",
            )?;
            ctx.check_memo(
                a.memo.as_ref(),
                C::BadContinueAsNewAttributes,
                "ContinueAsNewWorkflowExecutionCommandAttributes. Memo",
            )?;
            ctx.check_search_attribute_sizes(
                a.search_attributes.as_ref(),
                C::BadContinueAsNewAttributes,
            )?;
            if tx.ms.is_running() {
                let requested_initiator = a.initiator;
                let a = continue_as_new_defaults(&tx.ms, a.clone())?;
                tx.close(
                    WorkflowStatus::ContinuedAsNew,
                    Attributes::WorkflowExecutionContinuedAsNewEventAttributes(
                        WorkflowExecutionContinuedAsNewEventAttributes {
                            new_execution_run_id: ctx.new_run_id.clone(),
                            workflow_type: a.workflow_type.clone(),
                            task_queue: a.task_queue.clone(),
                            input: a.input.clone(),
                            workflow_run_timeout: a.workflow_run_timeout,
                            workflow_task_timeout: a.workflow_task_timeout,
                            workflow_task_completed_event_id: ctx.completed_event_id,
                            backoff_start_interval: a.backoff_start_interval,
                            // As the command said: the real server defaults it only for the
                            // new run.
                            initiator: requested_initiator,
                            // Deprecated by Temporal, still written by its server.
                            #[allow(deprecated)]
                            failure: a.failure.clone(),
                            last_completion_result: a.last_completion_result.clone(),
                            header: a.header.clone(),
                            memo: a.memo.clone(),
                            search_attributes: a.search_attributes.clone(),
                            #[allow(deprecated)]
                            inherit_build_id: a.inherit_build_id,
                            ..Default::default()
                        },
                    ),
                );
                let backoff = from_duration(a.backoff_start_interval.as_ref());
                tx.continuation = Some(Continuation {
                    new_run_id: ctx.new_run_id.clone(),
                    initiator: a.initiator,
                    failure: a.failure.clone(),
                    backoff: retry::continuation_backoff(tx.ms.execution_time, tx.now, backoff),
                    continue_as_new: Some(a),
                    now: tx.now,
                });
            }
            Ok(())
        }
        (CommandType::CancelWorkflowExecution, attrs) => {
            if ctx.has_buffered {
                return Err(unhandled());
            }
            let Some(CommandAttributes::CancelWorkflowExecutionCommandAttributes(a)) = attrs else {
                return Err(CommandFailure::new(
                    C::BadCancelWorkflowExecutionAttributes,
                    "CancelWorkflowExecutionCommandAttributes is not set on CancelWorkflowExecutionCommand.",
                ));
            };
            if tx.ms.is_running() {
                tx.close(
                    WorkflowStatus::Canceled,
                    Attributes::WorkflowExecutionCanceledEventAttributes(
                        WorkflowExecutionCanceledEventAttributes {
                            workflow_task_completed_event_id: ctx.completed_event_id,
                            details: a.details.clone(),
                        },
                    ),
                );
            }
            Ok(())
        }
        (
            other @ (CommandType::SignalExternalWorkflowExecution
            | CommandType::RequestCancelExternalWorkflowExecution),
            _,
        ) if ctx.limits.external_commands_refused() => Err(not_supported(other)),
        (
            CommandType::SignalExternalWorkflowExecution,
            Some(CommandAttributes::SignalExternalWorkflowExecutionCommandAttributes(a)),
        ) => super::external::signal_external(tx, ctx, a),
        (CommandType::SignalExternalWorkflowExecution, _) => Err(CommandFailure::new(
            C::BadSignalWorkflowExecutionAttributes,
            "SignalExternalWorkflowExecutionCommandAttributes is not set on SignalExternalWorkflowExecutionCommand.",
        )),
        (
            CommandType::RequestCancelExternalWorkflowExecution,
            Some(CommandAttributes::RequestCancelExternalWorkflowExecutionCommandAttributes(a)),
        ) => super::external::cancel_external(tx, ctx, a),
        (CommandType::RequestCancelExternalWorkflowExecution, _) => Err(CommandFailure::new(
            C::BadRequestCancelExternalWorkflowExecutionAttributes,
            "RequestCancelExternalWorkflowExecutionCommandAttributes is not set on RequestCancelExternalWorkflowExecutionCommand.",
        )),
        // Known types without a handler here (the Nexus operations); an unknown type never
        // gets this far (`unknown_command_type`).
        (other, _) => Err(not_supported(other)),
    }
}

/// Search attributes or memo fields upserted: an empty payload unsets its field.
fn upsert_fields(
    into: &mut std::collections::HashMap<
        String,
        temporalio_protos::temporal::api::common::v1::Payload,
    >,
    upserted: &std::collections::HashMap<
        String,
        temporalio_protos::temporal::api::common::v1::Payload,
    >,
) {
    for (k, v) in upserted {
        if v.data.is_empty() {
            into.remove(k);
        } else {
            into.insert(k.clone(), v.clone());
        }
    }
}

fn unhandled() -> CommandFailure {
    CommandFailure {
        cause: WorkflowTaskFailedCause::UnhandledCommand,
        detail: None,
        terminate: false,
    }
}

/// Validation and defaulting of ScheduleActivityTask (the real server's
/// `validateAndNormalizeActivityAttributes`): timeouts are filled from each other and capped by
/// the run timeout, and the retry policy always ends up set.
fn normalize_activity(
    a: &mut ScheduleActivityTaskCommandAttributes,
    workflow_task_queue: &str,
    run_timeout: i64,
) -> Result<(), String> {
    let activity_type = a
        .activity_type
        .as_ref()
        .map(|t| t.name.clone())
        .unwrap_or_default();
    if a.activity_id.is_empty() {
        return Err("activityId is not set".into());
    }
    if activity_type.is_empty() {
        return Err("activityType is not set".into());
    }
    let tq = a.task_queue.get_or_insert_with(Default::default);
    if tq.name.is_empty() {
        tq.name = workflow_task_queue.to_string();
    }
    if tq.kind == 0 {
        tq.kind = temporalio_protos::temporal::api::enums::v1::TaskQueueKind::Normal as i32;
    }
    let policy = a.retry_policy.get_or_insert_with(Default::default);
    retry::ensure_defaults(policy);
    retry::validate(policy).map_err(|e| e.to_string())?;
    if a.activity_id.len() > MAX_ID_LENGTH {
        return Err(format!(
            "activityId exceeds length limit. Length={} Limit={MAX_ID_LENGTH}",
            a.activity_id.len()
        ));
    }
    for (name, d) in [
        ("ScheduleToCloseTimeout", &a.schedule_to_close_timeout),
        ("ScheduleToStartTimeout", &a.schedule_to_start_timeout),
        ("StartToCloseTimeout", &a.start_to_close_timeout),
        ("HeartbeatTimeout", &a.heartbeat_timeout),
    ] {
        if is_negative(d.as_ref()) {
            return Err(format!("invalid {name}: negative duration"));
        }
    }
    let mut s2close = from_duration(a.schedule_to_close_timeout.as_ref());
    let mut s2start = from_duration(a.schedule_to_start_timeout.as_ref());
    let mut start2close = from_duration(a.start_to_close_timeout.as_ref());
    let mut heartbeat = from_duration(a.heartbeat_timeout.as_ref());
    if s2close > 0 {
        s2start = if s2start > 0 {
            s2start.min(s2close)
        } else {
            s2close
        };
        start2close = if start2close > 0 {
            start2close.min(s2close)
        } else {
            s2close
        };
    } else if start2close > 0 {
        s2close = run_timeout;
        if s2start <= 0 {
            s2start = run_timeout;
        }
    } else {
        return Err(format!(
            "a valid StartToCloseTimeout or ScheduleToCloseTimeout must be set on the activity. ActivityId={} ActivityType={}",
            a.activity_id, activity_type
        ));
    }
    if run_timeout > 0 {
        s2close = s2close.min(run_timeout);
        s2start = s2start.min(run_timeout);
        start2close = start2close.min(run_timeout);
        heartbeat = heartbeat.min(run_timeout);
    }
    heartbeat = heartbeat.min(start2close);
    // All four are stated even when zero (unlimited), as the real server does: the TypeScript
    // SDK rejects an activity task whose schedule-to-close timeout is missing.
    a.schedule_to_close_timeout = Some(to_duration(s2close));
    a.schedule_to_start_timeout = Some(to_duration(s2start));
    a.start_to_close_timeout = Some(to_duration(start2close));
    a.heartbeat_timeout = Some(to_duration(heartbeat));
    Ok(())
}

fn schedule_activity(
    tx: &mut Tx,
    ctx: &mut CommandContext,
    mut a: ScheduleActivityTaskCommandAttributes,
) -> CommandResult {
    let task_queue = tx.ms.task_queue.clone();
    normalize_activity(&mut a, &task_queue, tx.ms.run_timeout).map_err(|e| {
        CommandFailure::new(WorkflowTaskFailedCause::BadScheduleActivityAttributes, e)
    })?;
    ctx.check_payload(
        payloads_size(a.input.as_ref()),
        WorkflowTaskFailedCause::BadScheduleActivityAttributes,
        "ScheduleActivityTaskCommandAttributes.Input",
    )?;
    ctx.check_pending(
        tx.ms.activities.len(),
        Limit::PendingActivities,
        WorkflowTaskFailedCause::PendingActivitiesLimitExceeded,
        "pending activities",
    )?;
    if tx.ms.activity_by_id(&a.activity_id).is_some() {
        return Err(CommandFailure::new(
            WorkflowTaskFailedCause::ScheduleActivityDuplicateId,
            format!("ActivityID: {}", a.activity_id),
        ));
    }
    let id = tx
        .add(Attributes::ActivityTaskScheduledEventAttributes(
            ActivityTaskScheduledEventAttributes {
                activity_id: a.activity_id.clone(),
                activity_type: a.activity_type.clone(),
                task_queue: a.task_queue.clone(),
                header: a.header.clone(),
                input: a.input.clone(),
                schedule_to_close_timeout: a.schedule_to_close_timeout,
                schedule_to_start_timeout: a.schedule_to_start_timeout,
                start_to_close_timeout: a.start_to_close_timeout,
                heartbeat_timeout: a.heartbeat_timeout,
                workflow_task_completed_event_id: ctx.completed_event_id,
                retry_policy: a.retry_policy.clone(),
                priority: a.priority.clone(),
                ..Default::default()
            },
        ))
        .unwrap_or_default();
    tx.ms.activities.insert(
        id,
        ActivityInfo {
            scheduled_event_id: id,
            activity_id: a.activity_id.clone(),
            activity_type: a.activity_type.clone().unwrap_or_default(),
            task_queue: a
                .task_queue
                .as_ref()
                .map(|t| t.name.clone())
                .unwrap_or_default(),
            header: a.header.clone(),
            input: a.input.clone(),
            schedule_to_close_timeout: from_duration(a.schedule_to_close_timeout.as_ref()),
            schedule_to_start_timeout: from_duration(a.schedule_to_start_timeout.as_ref()),
            start_to_close_timeout: from_duration(a.start_to_close_timeout.as_ref()),
            heartbeat_timeout: from_duration(a.heartbeat_timeout.as_ref()),
            retry_policy: a.retry_policy.clone().unwrap_or_default(),
            priority: a.priority.clone(),
            first_scheduled_time: tx.now,
            scheduled_time: tx.now,
            attempt: 1,
            retry_backoff: false,
            started_time: 0,
            started_request_id: String::new(),
            started_identity: String::new(),
            last_failure: None,
            last_worker_identity: String::new(),
            heartbeat_details: None,
            last_heartbeat_time: 0,
            cancel_requested: false,
            cancel_requested_event_id: 0,
            last_attempt_complete_time: 0,
        },
    );
    let tasks = activity_tasks(&tx.ms, id);
    tx.tasks.extend(tasks);
    Ok(())
}

fn request_cancel_activity(
    tx: &mut Tx,
    ctx: &mut CommandContext,
    scheduled_event_id: i64,
) -> CommandResult {
    let bad = |d: String| {
        CommandFailure::new(
            WorkflowTaskFailedCause::BadRequestCancelActivityAttributes,
            d,
        )
    };
    if scheduled_event_id <= 0 {
        return Err(bad(
            "ScheduledEventId is not set on RequestCancelActivityTaskCommand.".into(),
        ));
    }
    let Some(ai) = tx.ms.activities.get(&scheduled_event_id).cloned() else {
        // The activity may have finished while this task ran (its outcome is still buffered):
        // the request is recorded and the outcome delivered as usual.
        if buffered_activity_outcome(tx, scheduled_event_id) {
            tx.add(Attributes::ActivityTaskCancelRequestedEventAttributes(
                ActivityTaskCancelRequestedEventAttributes {
                    scheduled_event_id,
                    workflow_task_completed_event_id: ctx.completed_event_id,
                },
            ));
            return Ok(());
        }
        return Err(bad(format!("ScheduledEventID: {scheduled_event_id}")));
    };
    if ai.cancel_requested {
        return Err(bad(format!("ScheduledEventID: {scheduled_event_id}")));
    }
    let requested_id = tx
        .add(Attributes::ActivityTaskCancelRequestedEventAttributes(
            ActivityTaskCancelRequestedEventAttributes {
                scheduled_event_id,
                workflow_task_completed_event_id: ctx.completed_event_id,
            },
        ))
        .unwrap_or_default();
    if ai.is_started() {
        // The worker learns about it from its next heartbeat response.
        if let Some(ai) = tx.ms.activities.get_mut(&scheduled_event_id) {
            ai.cancel_requested = true;
            ai.cancel_requested_event_id = requested_id;
        }
    } else {
        // Never reached a worker (or is waiting for a retry): cancel right away.
        tx.ms.activities.remove(&scheduled_event_id);
        tx.add(Attributes::ActivityTaskCanceledEventAttributes(
            ActivityTaskCanceledEventAttributes {
                details: Some(json_string_payloads("ACTIVITY_ID_NOT_STARTED")),
                latest_cancel_requested_event_id: requested_id,
                scheduled_event_id,
                started_event_id: 0,
                identity: ctx.identity.clone(),
                ..Default::default()
            },
        ));
        ctx.activity_not_started_cancelled = true;
    }
    Ok(())
}

fn buffered_activity_outcome(tx: &Tx, scheduled_event_id: i64) -> bool {
    tx.ms.buffered_events.iter().any(|e| match &e.attributes {
        Some(Attributes::ActivityTaskCompletedEventAttributes(a)) => {
            a.scheduled_event_id == scheduled_event_id
        }
        Some(Attributes::ActivityTaskFailedEventAttributes(a)) => {
            a.scheduled_event_id == scheduled_event_id
        }
        Some(Attributes::ActivityTaskTimedOutEventAttributes(a)) => {
            a.scheduled_event_id == scheduled_event_id
        }
        Some(Attributes::ActivityTaskCanceledEventAttributes(a)) => {
            a.scheduled_event_id == scheduled_event_id
        }
        _ => false,
    })
}

fn cancel_timer(tx: &mut Tx, ctx: &mut CommandContext, timer_id: &str) -> CommandResult {
    let bad = |d: String| CommandFailure::new(WorkflowTaskFailedCause::BadCancelTimerAttributes, d);
    if timer_id.is_empty() {
        return Err(bad("TimerId is not set on CancelTimerCommand.".into()));
    }
    let started_event_id = if let Some(t) = tx.ms.timers.remove(timer_id) {
        t.started_event_id
    } else {
        // It may have fired while this task ran: cancelling then wins over the buffered fire.
        let pos = tx.ms.buffered_events.iter().position(|e| {
            matches!(&e.attributes, Some(Attributes::TimerFiredEventAttributes(f)) if f.timer_id == timer_id)
        });
        let Some(pos) = pos else {
            return Err(bad(format!("TimerID: {timer_id}")));
        };
        let fired = tx.ms.buffered_events.remove(pos);
        ctx.has_buffered = ctx.has_buffered && !tx.ms.buffered_events.is_empty();
        match fired.attributes {
            Some(Attributes::TimerFiredEventAttributes(f)) => f.started_event_id,
            _ => 0,
        }
    };
    tx.add(Attributes::TimerCanceledEventAttributes(
        TimerCanceledEventAttributes {
            timer_id: timer_id.to_string(),
            started_event_id,
            workflow_task_completed_event_id: ctx.completed_event_id,
            identity: ctx.identity.clone(),
        },
    ));
    Ok(())
}

/// Fills in what a ContinueAsNewWorkflowExecution command leaves out from the closing run, as
/// the real server's validator does: type, task queue, run and task timeouts (capped like a
/// start's), initiator WORKFLOW.
fn continue_as_new_defaults(
    ms: &MutableState,
    mut a: ContinueAsNewWorkflowExecutionCommandAttributes,
) -> Result<ContinueAsNewWorkflowExecutionCommandAttributes, CommandFailure> {
    use WorkflowTaskFailedCause as C;
    if a.workflow_type.as_ref().is_none_or(|t| t.name.is_empty()) {
        a.workflow_type = Some(WorkflowType {
            name: ms.workflow_type.clone(),
        });
    }
    if a.task_queue.as_ref().is_none_or(|q| q.name.is_empty()) {
        a.task_queue = Some(TaskQueueRef::normal(ms.task_queue.clone()).to_proto());
    }
    for (d, what) in [
        (&a.workflow_run_timeout, "WorkflowRunTimeout"),
        (&a.workflow_task_timeout, "WorkflowTaskTimeout"),
        (&a.backoff_start_interval, "BackoffStartInterval"),
    ] {
        if is_negative(d.as_ref()) {
            return Err(CommandFailure::new(
                C::BadContinueAsNewAttributes,
                format!("Invalid {what} on ContinueAsNewWorkflowExecutionCommand."),
            ));
        }
    }
    if let Some(policy) = a.retry_policy.as_mut() {
        retry::ensure_defaults(policy);
        retry::validate(policy)
            .map_err(|e| CommandFailure::new(C::BadContinueAsNewAttributes, e.to_string()))?;
    }
    // An unset run timeout carries over from the run that continues.
    let mut run_timeout = from_duration(a.workflow_run_timeout.as_ref());
    if run_timeout == 0 {
        run_timeout = ms.run_timeout;
    }
    let (run_timeout, task_timeout) = normalized_timeouts(
        ms.execution_timeout,
        run_timeout,
        from_duration(a.workflow_task_timeout.as_ref()),
        ms.default_workflow_task_timeout,
    );
    a.workflow_run_timeout = Some(to_duration(run_timeout));
    a.workflow_task_timeout = Some(to_duration(task_timeout));
    if a.initiator == ContinueAsNewInitiator::Unspecified as i32 {
        a.initiator = ContinueAsNewInitiator::Workflow as i32;
    }
    Ok(a)
}
