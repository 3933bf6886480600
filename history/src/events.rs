//! History event and failure builders shared by the request handlers.

use std::collections::HashMap;

use temporalio_protos::temporal::api::{
    common::v1::{Payload, Payloads},
    enums::v1::{EventType, TimeoutType},
    failure::v1::{Failure, ServerFailureInfo, TimeoutFailureInfo, failure::FailureInfo},
    history::v1::{HistoryEvent, history_event::Attributes},
};

use crate::time::{Nanos, to_timestamp};

/// The identity the real server writes into events it makes on its own (`consts.IdentityHistoryService`).
pub const HISTORY_SERVICE_IDENTITY: &str = "history-service";

/// The event type implied by an attributes variant.
pub fn event_type_of(attrs: &Attributes) -> EventType {
    use Attributes as A;
    match attrs {
        A::WorkflowExecutionStartedEventAttributes(_) => EventType::WorkflowExecutionStarted,
        A::WorkflowExecutionCompletedEventAttributes(_) => EventType::WorkflowExecutionCompleted,
        A::WorkflowExecutionFailedEventAttributes(_) => EventType::WorkflowExecutionFailed,
        A::WorkflowExecutionTimedOutEventAttributes(_) => EventType::WorkflowExecutionTimedOut,
        A::WorkflowTaskScheduledEventAttributes(_) => EventType::WorkflowTaskScheduled,
        A::WorkflowTaskStartedEventAttributes(_) => EventType::WorkflowTaskStarted,
        A::WorkflowTaskCompletedEventAttributes(_) => EventType::WorkflowTaskCompleted,
        A::WorkflowTaskTimedOutEventAttributes(_) => EventType::WorkflowTaskTimedOut,
        A::WorkflowTaskFailedEventAttributes(_) => EventType::WorkflowTaskFailed,
        A::ActivityTaskScheduledEventAttributes(_) => EventType::ActivityTaskScheduled,
        A::ActivityTaskStartedEventAttributes(_) => EventType::ActivityTaskStarted,
        A::ActivityTaskCompletedEventAttributes(_) => EventType::ActivityTaskCompleted,
        A::ActivityTaskFailedEventAttributes(_) => EventType::ActivityTaskFailed,
        A::ActivityTaskTimedOutEventAttributes(_) => EventType::ActivityTaskTimedOut,
        A::TimerStartedEventAttributes(_) => EventType::TimerStarted,
        A::TimerFiredEventAttributes(_) => EventType::TimerFired,
        A::ActivityTaskCancelRequestedEventAttributes(_) => EventType::ActivityTaskCancelRequested,
        A::ActivityTaskCanceledEventAttributes(_) => EventType::ActivityTaskCanceled,
        A::TimerCanceledEventAttributes(_) => EventType::TimerCanceled,
        A::MarkerRecordedEventAttributes(_) => EventType::MarkerRecorded,
        A::WorkflowExecutionSignaledEventAttributes(_) => EventType::WorkflowExecutionSignaled,
        A::WorkflowExecutionTerminatedEventAttributes(_) => EventType::WorkflowExecutionTerminated,
        A::WorkflowExecutionCancelRequestedEventAttributes(_) => {
            EventType::WorkflowExecutionCancelRequested
        }
        A::WorkflowExecutionCanceledEventAttributes(_) => EventType::WorkflowExecutionCanceled,
        A::WorkflowExecutionContinuedAsNewEventAttributes(_) => {
            EventType::WorkflowExecutionContinuedAsNew
        }
        A::UpsertWorkflowSearchAttributesEventAttributes(_) => {
            EventType::UpsertWorkflowSearchAttributes
        }
        A::WorkflowPropertiesModifiedEventAttributes(_) => EventType::WorkflowPropertiesModified,
        A::StartChildWorkflowExecutionInitiatedEventAttributes(_) => {
            EventType::StartChildWorkflowExecutionInitiated
        }
        A::StartChildWorkflowExecutionFailedEventAttributes(_) => {
            EventType::StartChildWorkflowExecutionFailed
        }
        A::ChildWorkflowExecutionStartedEventAttributes(_) => {
            EventType::ChildWorkflowExecutionStarted
        }
        A::ChildWorkflowExecutionCompletedEventAttributes(_) => {
            EventType::ChildWorkflowExecutionCompleted
        }
        A::ChildWorkflowExecutionFailedEventAttributes(_) => {
            EventType::ChildWorkflowExecutionFailed
        }
        A::ChildWorkflowExecutionCanceledEventAttributes(_) => {
            EventType::ChildWorkflowExecutionCanceled
        }
        A::ChildWorkflowExecutionTimedOutEventAttributes(_) => {
            EventType::ChildWorkflowExecutionTimedOut
        }
        A::ChildWorkflowExecutionTerminatedEventAttributes(_) => {
            EventType::ChildWorkflowExecutionTerminated
        }
        A::WorkflowExecutionUpdateAcceptedEventAttributes(_) => {
            EventType::WorkflowExecutionUpdateAccepted
        }
        A::WorkflowExecutionUpdateCompletedEventAttributes(_) => {
            EventType::WorkflowExecutionUpdateCompleted
        }
        A::SignalExternalWorkflowExecutionInitiatedEventAttributes(_) => {
            EventType::SignalExternalWorkflowExecutionInitiated
        }
        A::SignalExternalWorkflowExecutionFailedEventAttributes(_) => {
            EventType::SignalExternalWorkflowExecutionFailed
        }
        A::ExternalWorkflowExecutionSignaledEventAttributes(_) => {
            EventType::ExternalWorkflowExecutionSignaled
        }
        A::RequestCancelExternalWorkflowExecutionInitiatedEventAttributes(_) => {
            EventType::RequestCancelExternalWorkflowExecutionInitiated
        }
        A::RequestCancelExternalWorkflowExecutionFailedEventAttributes(_) => {
            EventType::RequestCancelExternalWorkflowExecutionFailed
        }
        A::ExternalWorkflowExecutionCancelRequestedEventAttributes(_) => {
            EventType::ExternalWorkflowExecutionCancelRequested
        }
        _ => EventType::Unspecified,
    }
}

/// An event that closes a run: nothing may follow it in the run's history.
pub fn is_close_event(t: EventType) -> bool {
    matches!(
        t,
        EventType::WorkflowExecutionCompleted
            | EventType::WorkflowExecutionFailed
            | EventType::WorkflowExecutionTimedOut
            | EventType::WorkflowExecutionTerminated
            | EventType::WorkflowExecutionCanceled
            | EventType::WorkflowExecutionContinuedAsNew
    )
}

/// Whether an event that arrives while a workflow task is started waits in the buffer.
///
/// Mirrors the real server's history builder: workflow-task events, close events and events
/// produced directly by the worker's commands go straight to history; everything external
/// (signals, activity/timer outcomes, cancel requests) is buffered so the running task's view
/// of history stays valid.
pub fn is_bufferable(t: EventType) -> bool {
    !matches!(
        t,
        EventType::WorkflowExecutionStarted
            | EventType::WorkflowExecutionCompleted
            | EventType::WorkflowExecutionFailed
            | EventType::WorkflowExecutionTimedOut
            | EventType::WorkflowExecutionTerminated
            | EventType::WorkflowExecutionContinuedAsNew
            | EventType::WorkflowExecutionCanceled
            | EventType::WorkflowTaskScheduled
            | EventType::WorkflowTaskStarted
            | EventType::WorkflowTaskCompleted
            | EventType::WorkflowTaskFailed
            | EventType::WorkflowTaskTimedOut
            | EventType::ActivityTaskScheduled
            | EventType::ActivityTaskCancelRequested
            | EventType::TimerStarted
            | EventType::TimerCanceled
            | EventType::MarkerRecorded
            | EventType::StartChildWorkflowExecutionInitiated
            | EventType::SignalExternalWorkflowExecutionInitiated
            | EventType::RequestCancelExternalWorkflowExecutionInitiated
            | EventType::WorkflowExecutionUpdateAccepted
            | EventType::WorkflowExecutionUpdateCompleted
            | EventType::UpsertWorkflowSearchAttributes
            | EventType::WorkflowPropertiesModified
    )
}

/// Completions the real server moves behind the other buffered events on flush
/// (`reorderBuffer`: activity and child workflow outcomes).
pub fn is_reordered_completion(t: EventType) -> bool {
    matches!(
        t,
        EventType::ActivityTaskCompleted
            | EventType::ActivityTaskFailed
            | EventType::ActivityTaskTimedOut
            | EventType::ActivityTaskCanceled
            | EventType::ChildWorkflowExecutionCompleted
            | EventType::ChildWorkflowExecutionFailed
            | EventType::ChildWorkflowExecutionCanceled
            | EventType::ChildWorkflowExecutionTimedOut
            | EventType::ChildWorkflowExecutionTerminated
    )
}

/// An event without id (ids are assigned when it enters history).
pub fn new_event(time: Nanos, attrs: Attributes) -> HistoryEvent {
    HistoryEvent {
        event_id: 0,
        event_time: Some(to_timestamp(time)),
        event_type: event_type_of(&attrs) as i32,
        attributes: Some(attrs),
        ..Default::default()
    }
}

/// `Failure` with `TimeoutFailureInfo`, as the server creates for timeouts.
pub fn timeout_failure(message: impl Into<String>, timeout_type: TimeoutType) -> Failure {
    Failure {
        message: message.into(),
        source: "Server".into(),
        failure_info: Some(FailureInfo::TimeoutFailureInfo(TimeoutFailureInfo {
            timeout_type: timeout_type as i32,
            last_heartbeat_details: None,
        })),
        ..Default::default()
    }
}

/// `Failure` with `ServerFailureInfo`, used for server-decided workflow task failures.
pub fn server_failure(message: impl Into<String>, non_retryable: bool) -> Failure {
    Failure {
        message: message.into(),
        failure_info: Some(FailureInfo::ServerFailureInfo(ServerFailureInfo {
            non_retryable,
        })),
        ..Default::default()
    }
}

/// A single JSON string payload (the server's `payloads.EncodeString`).
pub fn json_string_payloads(s: &str) -> Payloads {
    let mut metadata = HashMap::new();
    metadata.insert("encoding".to_string(), b"json/plain".to_vec());
    let mut data = Vec::with_capacity(s.len() + 2);
    data.push(b'"');
    for c in s.chars() {
        match c {
            '"' => data.extend_from_slice(b"\\\""),
            '\\' => data.extend_from_slice(b"\\\\"),
            c => {
                let mut buf = [0; 4];
                data.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    data.push(b'"');
    Payloads {
        payloads: vec![Payload {
            metadata,
            data,
            ..Default::default()
        }],
    }
}

/// Go's enum `String()` form: `TIMEOUT_TYPE_START_TO_CLOSE` with prefix `TIMEOUT_TYPE_` →
/// `StartToClose`. Messages the SDKs match on (e.g. `UnhandledCommand`) use this form.
pub fn go_enum_name(proto_name: &str, prefix: &str) -> String {
    proto_name
        .strip_prefix(prefix)
        .unwrap_or(proto_name)
        .split('_')
        .map(|w| {
            let mut cs = w.chars();
            match cs.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &cs.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use temporalio_protos::temporal::api::enums::v1::WorkflowTaskFailedCause;

    #[test]
    fn go_names() {
        assert_eq!(
            go_enum_name(
                WorkflowTaskFailedCause::UnhandledCommand.as_str_name(),
                "WORKFLOW_TASK_FAILED_CAUSE_"
            ),
            "UnhandledCommand"
        );
        assert_eq!(
            go_enum_name(TimeoutType::StartToClose.as_str_name(), "TIMEOUT_TYPE_"),
            "StartToClose"
        );
    }

    #[test]
    fn json_string() {
        let p = json_string_payloads("ACTIVITY_ID_NOT_STARTED");
        assert_eq!(p.payloads[0].data, b"\"ACTIVITY_ID_NOT_STARTED\"");
    }
}
