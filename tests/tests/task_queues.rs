//! Task queues end to end: a task reaches a waiting poller with no backlog write; a task no
//! poller was waiting for is kept in its partition's durable backlog, survives SIGKILL, and is
//! handed out exactly once afterwards.

use std::time::{Duration, Instant};

use dura_tests::{DevServer, WorkflowClient, free_port, scrape_metrics};
use temporalio_protos::temporal::api::{
    common::v1::WorkflowType,
    enums::v1::TaskQueueKind,
    taskqueue::v1::TaskQueue,
    workflowservice::v1::{
        DescribeTaskQueueRequest, PollWorkflowTaskQueueRequest, PollWorkflowTaskQueueResponse,
        StartWorkflowExecutionRequest,
    },
};

fn queue(name: &str) -> Option<TaskQueue> {
    Some(TaskQueue {
        name: name.into(),
        kind: TaskQueueKind::Normal as i32,
        ..Default::default()
    })
}

async fn start(
    client: &mut WorkflowClient,
    workflow_id: &str,
    task_queue: &str,
) -> anyhow::Result<()> {
    client
        .start_workflow_execution(StartWorkflowExecutionRequest {
            namespace: "default".into(),
            workflow_id: workflow_id.into(),
            workflow_type: Some(WorkflowType {
                name: "Greet".into(),
            }),
            task_queue: queue(task_queue),
            request_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// One long poll bounded by `timeout`; an empty response has no task token.
async fn poll(
    client: &mut WorkflowClient,
    task_queue: &str,
    timeout: Duration,
) -> anyhow::Result<PollWorkflowTaskQueueResponse> {
    let mut request = tonic::Request::new(PollWorkflowTaskQueueRequest {
        namespace: "default".into(),
        task_queue: queue(task_queue),
        identity: "e2e-worker".into(),
        ..Default::default()
    });
    request.set_timeout(timeout);
    Ok(client.poll_workflow_task_queue(request).await?.into_inner())
}

/// The value of `task_dispatch{path="<path>"}`, 0 when absent.
async fn dispatched(metrics_port: u16, path: &str) -> anyhow::Result<u64> {
    let metrics = scrape_metrics(metrics_port).await?;
    let prefix = format!(r#"task_dispatch{{path="{path}"}} "#);
    Ok(metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap_or(0)))
}

async fn start_server(db: &std::path::Path) -> anyhow::Result<(DevServer, u16)> {
    let metrics_port = free_port();
    let server =
        DevServer::start_with_args(db, &["--metrics-port", &metrics_port.to_string()]).await?;
    Ok((server, metrics_port))
}

#[tokio::test]
async fn a_waiting_poller_gets_the_task_without_a_backlog_write() -> anyhow::Result<()> {
    dura_tests::bounded(
        "a_waiting_poller_gets_the_task_without_a_backlog_write",
        dura_tests::TEST_BUDGET,
        async {
            let dir = tempfile::tempdir()?;
            let (server, metrics_port) = start_server(&dir.path().join("db")).await?;
            let mut client = server.workflow_client().await?;

            let mut poller = client.clone();
            let polling =
                tokio::spawn(
                    async move { poll(&mut poller, "sync-q", Duration::from_secs(30)).await },
                );
            // Start only once the poll is waiting, so the task can be sync-matched.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let described = client
                    .describe_task_queue(DescribeTaskQueueRequest {
                        namespace: "default".into(),
                        task_queue: queue("sync-q"),
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                if !described.pollers.is_empty() {
                    break;
                }
                assert!(Instant::now() < deadline, "the poll never registered");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            start(&mut client, "sync-wf", "sync-q").await?;
            let task = polling.await??;
            assert_eq!(task.workflow_execution.unwrap().workflow_id, "sync-wf");
            assert_eq!(dispatched(metrics_port, "sync").await?, 1);
            assert_eq!(dispatched(metrics_port, "backlog").await?, 0);
            // Temporal's names for the same poll.
            let metrics = scrape_metrics(metrics_port).await?;
            for line in [
                r#"poll_success{task_type="workflow"} 1"#,
                r#"poll_success_sync{task_type="workflow"} 1"#,
                r#"task_schedule_to_start_latency_count{task_type="workflow"} 1"#,
            ] {
                assert!(metrics.contains(line), "missing {line} in\n{metrics}");
            }
            Ok(())
        },
    )
    .await
}

#[tokio::test]
async fn backlogged_tasks_survive_sigkill_and_are_handed_out_once() -> anyhow::Result<()> {
    dura_tests::bounded(
        "backlogged_tasks_survive_sigkill_and_are_handed_out_once",
        dura_tests::TEST_BUDGET,
        async {
            let dir = tempfile::tempdir()?;
            let db = dir.path().join("db");
            let (mut server, metrics_port) = start_server(&db).await?;
            let mut client = server.workflow_client().await?;
            let ids = ["backlog-1", "backlog-2", "backlog-3"];
            for id in ids {
                start(&mut client, id, "backlog-q").await?;
            }
            // Nobody polls: each task goes to the partition's backlog (after the start reply).
            let deadline = Instant::now() + Duration::from_secs(10);
            while dispatched(metrics_port, "backlog").await? < ids.len() as u64 {
                assert!(Instant::now() < deadline, "tasks never reached the backlog");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            server.kill9();

            let (server, _) = start_server(&db).await?;
            let mut client = server.workflow_client().await?;
            let mut got = Vec::new();
            for _ in ids {
                let task = poll(&mut client, "backlog-q", Duration::from_secs(10)).await?;
                assert!(
                    !task.task_token.is_empty(),
                    "a backlogged task went missing"
                );
                got.push(task.workflow_execution.unwrap().workflow_id);
            }
            // FIFO, and nothing is handed out a second time.
            assert_eq!(got, ids);
            let extra = poll(&mut client, "backlog-q", Duration::from_secs(2)).await?;
            assert!(extra.task_token.is_empty(), "handed out twice: {extra:?}");
            Ok(())
        },
    )
    .await
}
