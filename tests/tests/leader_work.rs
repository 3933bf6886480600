//! Work that follows a commit belongs to the shard's leader, not to the request that proposed
//! it: a start whose caller gave up while it was being committed still delivers its first
//! workflow task, without a restart.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use dura_tests::DevServer;
use temporalio_protos::temporal::api::{
    common::v1::{WorkflowExecution, WorkflowType},
    enums::v1::TaskQueueKind,
    taskqueue::v1::TaskQueue,
    workflowservice::v1::{
        DescribeWorkflowExecutionRequest, PollWorkflowTaskQueueRequest,
        StartWorkflowExecutionRequest,
    },
};

const QUEUE: &str = "abandoned-starts";

fn queue() -> Option<TaskQueue> {
    Some(TaskQueue {
        name: QUEUE.into(),
        kind: TaskQueueKind::Normal as i32,
        ..Default::default()
    })
}

#[tokio::test]
async fn a_start_whose_caller_gave_up_still_delivers_its_task() -> anyhow::Result<()> {
    dura_tests::bounded(
        "a_start_whose_caller_gave_up_still_delivers_its_task",
        dura_tests::TEST_BUDGET,
        async {
            let dir = tempfile::tempdir()?;
            let server = DevServer::start(&dir.path().join("db")).await?;
            let mut client = server.workflow_client().await?;

            // Deadlines from far too short to ample: some calls give up before, some during and some
            // after their entry is committed. The last ones succeed, so there is always something to
            // check.
            let mut abandoned = 0;
            let mut ids = Vec::new();
            for i in 0..60u64 {
                let id = format!("abandoned-{i}");
                let mut request = tonic::Request::new(StartWorkflowExecutionRequest {
                    namespace: "default".into(),
                    workflow_id: id.clone(),
                    workflow_type: Some(WorkflowType {
                        name: "Greet".into(),
                    }),
                    task_queue: queue(),
                    request_id: uuid::Uuid::new_v4().to_string(),
                    ..Default::default()
                });
                let ample = i >= 50;
                request.set_timeout(if ample {
                    Duration::from_secs(30)
                } else {
                    Duration::from_micros(100 * i)
                });
                let answered = client.start_workflow_execution(request).await.is_ok();
                assert!(
                    answered || !ample,
                    "start {id} failed with an ample deadline"
                );
                if !answered {
                    abandoned += 1;
                }
                ids.push(id);
            }
            // The runs that exist are those whose entry was committed, answered or not.
            let mut committed = BTreeSet::new();
            for id in &ids {
                let described = client
                    .describe_workflow_execution(DescribeWorkflowExecutionRequest {
                        namespace: "default".into(),
                        execution: Some(WorkflowExecution {
                            workflow_id: id.clone(),
                            run_id: String::new(),
                        }),
                    })
                    .await;
                if described.is_ok() {
                    committed.insert(id.clone());
                }
            }
            assert!(
                committed.len() >= 10,
                "the ample starts exist: {committed:?}"
            );

            // Every committed run's first workflow task reaches a poller.
            let mut delivered = BTreeSet::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while delivered != committed {
                assert!(
                    Instant::now() < deadline,
                    "tasks never delivered: {:?}",
                    committed.difference(&delivered).collect::<Vec<_>>()
                );
                let mut request = tonic::Request::new(PollWorkflowTaskQueueRequest {
                    namespace: "default".into(),
                    task_queue: queue(),
                    identity: "e2e-worker".into(),
                    ..Default::default()
                });
                request.set_timeout(Duration::from_secs(5));
                let task = client.poll_workflow_task_queue(request).await?.into_inner();
                if let Some(execution) = task.workflow_execution {
                    assert!(
                        delivered.insert(execution.workflow_id.clone()),
                        "{} delivered twice",
                        execution.workflow_id
                    );
                }
            }
            eprintln!(
                "{} of {} starts committed; {abandoned} callers gave up",
                committed.len(),
                ids.len()
            );
            Ok(())
        },
    )
    .await
}
