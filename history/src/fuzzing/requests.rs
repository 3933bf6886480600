//! Requests as clients and workers send them, decoded from protobuf bytes, through the
//! validation and handling that follow: a workflow task's commands and messages, a start's
//! options, a schedule's spec, a retry policy, search attributes.

use std::collections::BTreeMap;

use prost::Message;
use temporalio_protos::temporal::api::{
    common::v1::{RetryPolicy, SearchAttributes},
    failure::v1::Failure,
    schedule::v1::ScheduleSpec,
    workflowservice::v1::{RespondWorkflowTaskCompletedRequest, StartWorkflowExecutionRequest},
};

use super::Source;
use crate::{
    MutableState,
    api::{
        start::{StartWorkflowRequest, start_workflow},
        workflow_task::{
            CompleteWorkflowTaskRequest, RecordWorkflowTaskStartedRequest, WorkflowTaskToken,
            complete_workflow_task, record_workflow_task_started,
        },
    },
    limits::Limits,
    retry, schedules,
    tasks::TaskQueueRef,
    time::{Nanos, SECOND, from_duration},
    visibility::{self, SearchAttributeType},
};

const T0: Nanos = 1_700_000_000 * SECOND;

fn custom() -> BTreeMap<String, SearchAttributeType> {
    [
        ("Tag", SearchAttributeType::Keyword),
        ("Tags", SearchAttributeType::KeywordList),
        ("Score", SearchAttributeType::Int),
        ("Due", SearchAttributeType::Datetime),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The start request the frontend makes of a client's StartWorkflowExecution.
fn start_request(pb: StartWorkflowExecutionRequest, run_id: &str) -> StartWorkflowRequest {
    StartWorkflowRequest {
        namespace_id: "ns".into(),
        workflow_id: pb.workflow_id,
        run_id: run_id.into(),
        request_id: pb.request_id,
        workflow_type: pb.workflow_type.map(|t| t.name).unwrap_or_default(),
        task_queue: pb.task_queue.map(|t| t.name).unwrap_or_default(),
        input: pb.input,
        execution_timeout: from_duration(pb.workflow_execution_timeout.as_ref()),
        run_timeout: from_duration(pb.workflow_run_timeout.as_ref()),
        task_timeout: from_duration(pb.workflow_task_timeout.as_ref()),
        retry_policy: pb.retry_policy,
        memo: pb.memo,
        search_attributes: pb.search_attributes,
        header: pb.header,
        priority: pb.priority,
        identity: pb.identity,
        id_reuse_policy: pb.workflow_id_reuse_policy,
        id_conflict_policy: pb.workflow_id_conflict_policy,
        start_delay: from_duration(pb.workflow_start_delay.as_ref()),
        user_metadata: pb.user_metadata,
        parent: None,
        eager: pb.request_eager_execution,
        now: T0,
    }
}

/// A run whose first workflow task a worker has just picked up.
fn run_with_started_task() -> (MutableState, WorkflowTaskToken) {
    let start = start_request(
        StartWorkflowExecutionRequest {
            workflow_id: "wf".into(),
            request_id: "req".into(),
            workflow_type: Some(Default::default()),
            ..Default::default()
        },
        "run-1",
    );
    let start = StartWorkflowRequest {
        workflow_type: "Flow".into(),
        task_queue: "tq".into(),
        ..start
    };
    let Some(run) = start_workflow(None, start).ok().and_then(|o| o.new_run) else {
        panic!("a plain start makes a run");
    };
    let mut ms = run.state;
    let Some(wt) = ms.workflow_task.clone() else {
        panic!("a new run has a workflow task");
    };
    let started = record_workflow_task_started(
        &mut ms,
        RecordWorkflowTaskStartedRequest {
            scheduled_event_id: wt.scheduled_event_id,
            stamp: wt.stamp,
            request_id: "poll".into(),
            identity: "worker".into(),
            poll_task_queue: TaskQueueRef::normal("tq"),
            now: T0 + SECOND,
        },
        &Limits::none(),
    );
    match started {
        Ok(t) => (ms, WorkflowTaskToken::of(&t.reply)),
        Err(e) => panic!("the pending task starts: {e}"),
    }
}

#[allow(deprecated)] // The deprecated fields still arrive from older SDKs.
pub fn requests(data: &[u8]) {
    let mut source = Source::new(data);
    let limits = if source.chance(2) {
        Limits::none()
    } else {
        Limits::temporal()
    };
    let kind = source.byte() % 6;
    let bytes = source.rest();
    match kind {
        0 => {
            let Ok(pb) = RespondWorkflowTaskCompletedRequest::decode(bytes) else {
                return;
            };
            let (mut ms, token) = run_with_started_task();
            let before = ms.clone();
            let result = complete_workflow_task(
                &mut ms,
                CompleteWorkflowTaskRequest {
                    token,
                    namespace: "default".into(),
                    custom_search_attributes: custom(),
                    commands: pb.commands,
                    messages: pb.messages,
                    identity: pb.identity,
                    sticky_attributes: None,
                    sdk_metadata: pb.sdk_metadata,
                    metering_metadata: pb.metering_metadata,
                    binary_checksum: pb.binary_checksum,
                    worker_version: pb.worker_version_stamp,
                    force_create_new_workflow_task: pb.force_create_new_workflow_task,
                    return_new_workflow_task: pb.return_new_workflow_task,
                    new_run_id: "run-2".into(),
                    now: T0 + 2 * SECOND,
                },
                &limits,
            );
            match result {
                Err(_) => assert_eq!(ms, before, "a refused completion changes nothing"),
                Ok(t) => {
                    for (i, e) in t.events.iter().enumerate() {
                        assert_eq!(e.event_id, before.next_event_id + i as i64);
                    }
                    assert_eq!(
                        ms.next_event_id,
                        before.next_event_id + t.events.len() as i64
                    );
                }
            }
        }
        1 => {
            let Ok(pb) = StartWorkflowExecutionRequest::decode(bytes) else {
                return;
            };
            let req = start_request(pb, "run-2");
            if let Ok(outcome) = start_workflow(None, req.clone())
                && let Some(new_run) = outcome.new_run
            {
                assert_eq!(new_run.state.next_event_id, new_run.events.len() as i64 + 1);
            }
            // Against a workflow id already in use: reuse and conflict policies decide.
            let (mut current, _) = run_with_started_task();
            let before = current.clone();
            if start_workflow(Some(&mut current), req).is_err() {
                assert_eq!(current, before, "a refused start changes nothing");
            }
        }
        2 => {
            let Ok(spec) = ScheduleSpec::decode(bytes) else {
                return;
            };
            if schedules::validate_spec(Some(&spec)).is_ok() {
                let spec = schedules::canonical_spec(spec);
                for after in [i64::MIN, 0, T0, i64::MAX] {
                    schedules::next_times(Some(&spec), after, 3);
                }
            }
        }
        3 => {
            let Ok(mut policy) = RetryPolicy::decode(bytes) else {
                return;
            };
            retry::ensure_defaults(&mut policy);
            if retry::validate(&policy).is_ok() {
                let failure = Failure::default();
                for attempt in [1, 2, 50, i32::MAX] {
                    retry::next_retry(&policy, attempt, &failure, T0, Some(T0 + SECOND));
                    retry::next_retry(&policy, attempt, &failure, T0, None);
                }
            }
        }
        _ => {
            let Ok(attributes) = SearchAttributes::decode(bytes) else {
                return;
            };
            let _ = visibility::validate_search_attributes("default", &custom(), &attributes);
            let _ = visibility::check_search_attribute_count(&attributes, &limits);
            let _ = visibility::check_search_attribute_sizes(&attributes, &limits);
        }
    }
}
