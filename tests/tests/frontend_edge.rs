//! What every RPC goes through: options Dura cannot honour are refused, never silently
//! dropped, and each request is counted on `/metrics`.

use dura_tests::{DevServer, free_port, scrape_metrics};
use temporalio_protos::temporal::api::{
    common::v1::{Callback, WorkflowExecution, WorkflowType},
    taskqueue::v1::TaskQueue,
    workflowservice::v1::{DescribeWorkflowExecutionRequest, StartWorkflowExecutionRequest},
};
use tonic::Code;

#[tokio::test]
async fn unsupported_start_options_are_refused_and_requests_counted() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let metrics_port = free_port();
    let server = DevServer::start_with_args(
        &dir.path().join("db"),
        &["--metrics-port", &metrics_port.to_string()],
    )
    .await?;
    let mut client = server.workflow_client().await?;
    let err = client
        .start_workflow_execution(StartWorkflowExecutionRequest {
            namespace: "default".into(),
            workflow_id: "with-callback".into(),
            workflow_type: Some(WorkflowType {
                name: "Greet".into(),
            }),
            task_queue: Some(TaskQueue {
                name: "tq".into(),
                ..Default::default()
            }),
            completion_callbacks: vec![Callback::default()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert!(
        err.message().contains("completion_callbacks"),
        "{}",
        err.message()
    );
    // Nothing was started.
    let describe = client
        .describe_workflow_execution(DescribeWorkflowExecutionRequest {
            namespace: "default".into(),
            execution: Some(WorkflowExecution {
                workflow_id: "with-callback".into(),
                run_id: String::new(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(describe.code(), Code::NotFound);

    let metrics = scrape_metrics(metrics_port).await?;
    for line in [
        r#"service_requests{operation="StartWorkflowExecution",status_code="Unimplemented"} 1"#,
        r#"service_requests{operation="DescribeWorkflowExecution",status_code="NotFound"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    assert!(
        metrics.contains(r#"operation="DescribeNamespace",status_code="Ok""#),
        "{metrics}"
    );
    Ok(())
}
