//! Schedules keep firing across a SIGKILL: the stored schedule and its progress are durable,
//! and the restarted leader re-arms it.

use std::time::{Duration, Instant};

use dura_tests::{DevServer, WorkflowClient};
use temporalio_protos::temporal::api::{
    common::v1::WorkflowType,
    enums::v1::ScheduleOverlapPolicy,
    schedule::v1::{
        IntervalSpec, Schedule, ScheduleAction, SchedulePatch, SchedulePolicies, ScheduleSpec,
        schedule_action::Action,
    },
    taskqueue::v1::TaskQueue,
    workflow::v1::NewWorkflowExecutionInfo,
    workflowservice::v1::{
        CreateScheduleRequest, DescribeScheduleRequest, ListWorkflowExecutionsRequest,
        PatchScheduleRequest,
    },
};

async fn action_count(client: &mut WorkflowClient) -> anyhow::Result<(i64, Vec<String>)> {
    let info = client
        .describe_schedule(DescribeScheduleRequest {
            namespace: "default".into(),
            schedule_id: "every-second".into(),
        })
        .await?
        .into_inner()
        .info
        .unwrap_or_default();
    let ids = info
        .recent_actions
        .iter()
        .filter_map(|a| a.start_workflow_result.as_ref())
        .map(|w| w.workflow_id.clone())
        .collect();
    Ok((info.action_count, ids))
}

/// The ids of the workflows the schedule started, each once.
async fn started_workflows(
    client: &mut WorkflowClient,
) -> anyhow::Result<std::collections::BTreeSet<String>> {
    let listed = client
        .list_workflow_executions(ListWorkflowExecutionsRequest {
            namespace: "default".into(),
            page_size: 1000,
            query: "TaskQueue = 'ticks'".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .executions;
    let ids: std::collections::BTreeSet<String> = listed
        .iter()
        .filter_map(|e| e.execution.as_ref())
        .map(|e| e.workflow_id.clone())
        .collect();
    assert_eq!(ids.len(), listed.len(), "a workflow id listed twice");
    Ok(ids)
}

async fn pause(client: &mut WorkflowClient) -> anyhow::Result<()> {
    client
        .patch_schedule(PatchScheduleRequest {
            namespace: "default".into(),
            schedule_id: "every-second".into(),
            patch: Some(SchedulePatch {
                pause: "counting".into(),
                ..Default::default()
            }),
            request_id: "pause-1".into(),
            ..Default::default()
        })
        .await?;
    Ok(())
}

async fn wait_for_actions(
    client: &mut WorkflowClient,
    at_least: i64,
) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (count, ids) = action_count(client).await?;
        if count >= at_least {
            return Ok(ids);
        }
        assert!(Instant::now() < deadline, "only {count} actions");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_schedule_keeps_firing_after_sigkill() -> anyhow::Result<()> {
    dura_tests::bounded(
        "a_schedule_keeps_firing_after_sigkill",
        dura_tests::TEST_BUDGET,
        async {
            let dir = tempfile::tempdir()?;
            let db = dir.path().join("db");
            let mut server = DevServer::start(&db).await?;
            let mut client = server.workflow_client().await?;
            client
                .create_schedule(CreateScheduleRequest {
                    namespace: "default".into(),
                    schedule_id: "every-second".into(),
                    request_id: "create-1".into(),
                    schedule: Some(Schedule {
                        spec: Some(ScheduleSpec {
                            interval: vec![IntervalSpec {
                                interval: Some(prost_types::Duration {
                                    seconds: 1,
                                    nanos: 0,
                                }),
                                phase: None,
                            }],
                            ..Default::default()
                        }),
                        action: Some(ScheduleAction {
                            action: Some(Action::StartWorkflow(NewWorkflowExecutionInfo {
                                workflow_id: "tick".into(),
                                workflow_type: Some(WorkflowType {
                                    name: "Tick".into(),
                                }),
                                task_queue: Some(TaskQueue {
                                    name: "ticks".into(),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            })),
                        }),
                        // Nothing runs the Tick workflows: ALLOW_ALL keeps starting new ones.
                        policies: Some(SchedulePolicies {
                            overlap_policy: ScheduleOverlapPolicy::AllowAll as i32,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await?;
            wait_for_actions(&mut client, 2).await?;
            server.kill9();

            let server = DevServer::start(&db).await?;
            let mut client = server.workflow_client().await?;
            let (before, _) = action_count(&mut client).await?;
            assert!(before >= 2, "recorded actions survived");
            wait_for_actions(&mut client, before + 2).await?;
            pause(&mut client).await?;
            // A workflow's id names its nominal time, so a time fired twice is one workflow
            // counted as two actions, and a lost action a workflow nobody counted. A fire
            // in progress when the pause landed is recorded right after it starts its
            // workflow: wait for the two to agree.
            let deadline = Instant::now() + Duration::from_secs(60);
            let (actions, started) = loop {
                let (actions, _) = action_count(&mut client).await?;
                let started = started_workflows(&mut client).await?;
                if actions == started.len() as i64 {
                    break (actions, started);
                }
                assert!(
                    Instant::now() < deadline,
                    "{actions} actions recorded, {} workflows started: {started:?}",
                    started.len()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            assert!(actions >= before + 2);
            assert!(
                started.iter().all(|id| id.starts_with("tick-")),
                "{started:?}"
            );
            Ok(())
        },
    )
    .await
}

/// Options Dura cannot honour yet are refused, never stored and ignored.
#[tokio::test]
async fn unsupported_schedule_options_are_refused() -> anyhow::Result<()> {
    dura_tests::bounded(
        "unsupported_schedule_options_are_refused",
        dura_tests::TEST_BUDGET,
        async {
            use temporalio_protos::temporal::api::{
                common::v1::SearchAttributes, schedule::v1::SchedulePatch,
            };
            let dir = tempfile::tempdir()?;
            let server = DevServer::start(&dir.path().join("db")).await?;
            let mut client = server.workflow_client().await?;
            let request = || CreateScheduleRequest {
                namespace: "default".into(),
                schedule_id: "refused".into(),
                request_id: "create-1".into(),
                schedule: Some(Schedule {
                    action: Some(ScheduleAction {
                        action: Some(Action::StartWorkflow(NewWorkflowExecutionInfo {
                            workflow_id: "w".into(),
                            workflow_type: Some(WorkflowType { name: "W".into() }),
                            task_queue: Some(TaskQueue {
                                name: "q".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        })),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let mut with_search_attributes = request();
            with_search_attributes.search_attributes = Some(SearchAttributes {
                indexed_fields: [("CustomKeywordField".to_string(), Default::default())].into(),
            });
            let mut with_pause_patch = request();
            with_pause_patch.initial_patch = Some(SchedulePatch {
                pause: "paused at birth".into(),
                ..Default::default()
            });
            for refused in [with_search_attributes, with_pause_patch] {
                let err = client.create_schedule(refused).await.unwrap_err();
                assert_eq!(err.code(), tonic::Code::Unimplemented, "{err:?}");
            }
            let describe = client
                .describe_schedule(DescribeScheduleRequest {
                    namespace: "default".into(),
                    schedule_id: "refused".into(),
                })
                .await
                .unwrap_err();
            assert_eq!(describe.code(), tonic::Code::NotFound);
            Ok(())
        },
    )
    .await
}
