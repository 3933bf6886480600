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
    dura_tests::bounded("unsupported_start_options_are_refused_and_requests_counted", dura_tests::TEST_BUDGET, async {
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
        // Temporal's names and labels, the namespace the handler resolved among them.
        r#"service_requests{namespace="default",operation="StartWorkflowExecution",service_name="frontend"} 1"#,
        r#"service_requests{namespace="default",operation="DescribeWorkflowExecution",service_name="frontend"} 1"#,
        r#"service_errors{namespace="default",operation="DescribeWorkflowExecution",service_name="frontend"} 1"#,
        r#"service_errors_entity_not_found{namespace="default",operation="DescribeWorkflowExecution",service_name="frontend"} 1"#,
        r#"service_error_with_type{error_type="Unimplemented",namespace="default",operation="StartWorkflowExecution",service_name="frontend"} 1"#,
        r#"service_latency_count{namespace="default",operation="DescribeNamespace",service_name="frontend"}"#,
        // The store's numbers, read at the scrape, and the process's.
        r#"dura_raft_leader{group="1"} 1"#,
        r#"dura_raft_term{group="0"}"#,
        r#"dura_raft_applied_index{group="0"}"#,
        r#"dura_raft_apply_lag{group="0"} 0"#,
        r#"dura_rocksdb{property="rocksdb.cur-size-all-mem-tables"}"#,
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    // An orchestrator's probes: up, and ready once every group has a leader and is applied.
    assert!(dura_tests::http_get(metrics_port, "/healthz").await?.starts_with("HTTP/1.1 200"));
    let ready = dura_tests::http_get(metrics_port, "/readyz").await?;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    Ok(())
    })
    .await
}

/// `grpc.health.v1.Health` answers for the services the real dev server names (also to the
/// gzip-compressed requests the SDKs' core sends), and NOT_FOUND for others.
#[tokio::test]
async fn health_answers_per_service_like_the_real_server() -> anyhow::Result<()> {
    dura_tests::bounded(
        "health_answers_per_service_like_the_real_server",
        dura_tests::TEST_BUDGET,
        async {
            use tonic_health::pb::{
                HealthCheckRequest, health_check_response::ServingStatus,
                health_client::HealthClient,
            };
            let dir = tempfile::tempdir()?;
            let server = DevServer::start(&dir.path().join("db")).await?;
            let channel = tonic::transport::Endpoint::from_shared(format!(
                "http://127.0.0.1:{}",
                server.port
            ))?
            .connect()
            .await?;
            let mut health =
                HealthClient::new(channel).send_compressed(tonic::codec::CompressionEncoding::Gzip);
            for service in [
                "",
                "temporal.api.workflowservice.v1.WorkflowService",
                "temporal.api.operatorservice.v1.OperatorService",
            ] {
                let status = health
                    .check(HealthCheckRequest {
                        service: service.into(),
                    })
                    .await?
                    .into_inner()
                    .status;
                assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
            }
            let unknown = health
                .check(HealthCheckRequest {
                    service: "temporal.server.api.adminservice.v1.AdminService".into(),
                })
                .await
                .unwrap_err();
            assert_eq!(unknown.code(), Code::NotFound);
            Ok(())
        },
    )
    .await
}

/// The real server's start-time checks, with its messages: unregistered names, the server's
/// own attributes and values of the wrong type are refused, and nothing is started.
#[tokio::test]
async fn start_search_attributes_are_validated_like_the_real_server() -> anyhow::Result<()> {
    dura_tests::bounded(
        "start_search_attributes_are_validated_like_the_real_server",
        dura_tests::TEST_BUDGET,
        async {
            use std::collections::HashMap;
            use temporalio_protos::temporal::api::{
                common::v1::{Payload, SearchAttributes},
                enums::v1::IndexedValueType,
                operatorservice::v1::AddSearchAttributesRequest,
            };

            let dir = tempfile::tempdir()?;
            let server = DevServer::start(&dir.path().join("db")).await?;
            server
                .operator_client()
                .await?
                .add_search_attributes(AddSearchAttributesRequest {
                    namespace: "default".into(),
                    search_attributes: HashMap::from([(
                        "MyInt".into(),
                        IndexedValueType::Int as i32,
                    )]),
                })
                .await?;
            let mut client = server.workflow_client().await?;
            let start = |workflow_id: &str, name: &str, json: &str| StartWorkflowExecutionRequest {
                namespace: "default".into(),
                workflow_id: workflow_id.into(),
                workflow_type: Some(WorkflowType { name: "X".into() }),
                task_queue: Some(TaskQueue {
                    name: "q".into(),
                    ..Default::default()
                }),
                search_attributes: Some(SearchAttributes {
                    indexed_fields: HashMap::from([(
                        name.to_string(),
                        Payload {
                            metadata: HashMap::from([("encoding".into(), b"json/plain".to_vec())]),
                            data: json.as_bytes().to_vec(),
                            ..Default::default()
                        },
                    )]),
                }),
                ..Default::default()
            };
            for (name, json, message) in [
                (
                    "NotThere",
                    r#""bar""#,
                    "Namespace default has no mapping defined for search attribute NotThere",
                ),
                (
                    "WorkflowType",
                    r#""bar""#,
                    "WorkflowType attribute can't be set in SearchAttributes",
                ),
                (
                    "MyInt",
                    r#""bar""#,
                    "invalid value for search attribute MyInt of type Int: bar",
                ),
            ] {
                let err = client
                    .start_workflow_execution(start("refused", name, json))
                    .await
                    .unwrap_err();
                assert_eq!(
                    (err.code(), err.message()),
                    (Code::InvalidArgument, message)
                );
            }
            let describe = client
                .describe_workflow_execution(DescribeWorkflowExecutionRequest {
                    namespace: "default".into(),
                    execution: Some(WorkflowExecution {
                        workflow_id: "refused".into(),
                        run_id: String::new(),
                    }),
                })
                .await
                .unwrap_err();
            assert_eq!(describe.code(), Code::NotFound);
            // Registered attributes of the right type, and the predefined ones users may set, pass.
            client
                .start_workflow_execution(start("accepted", "MyInt", "5"))
                .await?;
            client
                .start_workflow_execution(start("patched", "TemporalChangeVersion", r#"["a"]"#))
                .await?;
            Ok(())
        },
    )
    .await
}
