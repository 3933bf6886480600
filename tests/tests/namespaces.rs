//! Namespaces through a real `dura server start-dev`: durability across SIGKILL, the real
//! server's error codes for bad input, pagination, and clean shutdown.

use std::time::Duration;

use dura_tests::DevServer;
use prost::Message;
use temporalio_protos::{
    google::rpc::Status as RpcStatus,
    temporal::api::{
        namespace::v1::UpdateNamespaceInfo,
        workflowservice::v1::{
            DescribeNamespaceRequest, GetClusterInfoRequest, GetSystemInfoRequest,
            ListBatchOperationsRequest, ListNamespacesRequest, RegisterNamespaceRequest,
            UpdateNamespaceRequest,
        },
    },
};
use tonic::Code;

fn days(n: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: n * 86400,
        nanos: 0,
    })
}

fn register(name: &str) -> RegisterNamespaceRequest {
    RegisterNamespaceRequest {
        namespace: name.into(),
        workflow_execution_retention_period: days(3),
        description: format!("{name} description"),
        ..Default::default()
    }
}

fn by_name(name: &str) -> DescribeNamespaceRequest {
    DescribeNamespaceRequest {
        namespace: name.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn namespaces_survive_sigkill_and_restart() -> anyhow::Result<()> {
    dura_tests::bounded(
        "namespaces_survive_sigkill_and_restart",
        dura_tests::TEST_BUDGET,
        async {
            let dir = tempfile::tempdir()?;
            let db = dir.path().join("db");
            let mut server = DevServer::start(&db).await?;
            let mut client = server.workflow_client().await?;
            client.register_namespace(register("orders")).await?;
            client
                .update_namespace(UpdateNamespaceRequest {
                    namespace: "orders".into(),
                    update_info: Some(UpdateNamespaceInfo {
                        owner_email: "ops@example.com".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await?;
            let before = client
                .describe_namespace(by_name("orders"))
                .await?
                .into_inner();
            let id = before.namespace_info.as_ref().unwrap().id.clone();

            server.kill9();
            let server = DevServer::start(&db).await?;
            let mut client = server.workflow_client().await?;
            let after = client
                .describe_namespace(by_name("orders"))
                .await?
                .into_inner();
            assert_eq!(after, before);
            let info = after.namespace_info.unwrap();
            assert_eq!(info.owner_email, "ops@example.com");
            assert_eq!(info.description, "orders description");
            assert_eq!(
                after.config.unwrap().workflow_execution_retention_ttl,
                days(3)
            );
            let by_id = client
                .describe_namespace(DescribeNamespaceRequest {
                    id,
                    ..Default::default()
                })
                .await?
                .into_inner();
            assert_eq!(by_id.namespace_info.unwrap().name, "orders");
            Ok(())
        },
    )
    .await
}

#[tokio::test]
async fn bad_namespace_requests_get_the_real_servers_codes() -> anyhow::Result<()> {
    dura_tests::bounded(
        "bad_namespace_requests_get_the_real_servers_codes",
        dura_tests::TEST_BUDGET,
        async {
            let dir = tempfile::tempdir()?;
            let server = DevServer::start(&dir.path().join("db")).await?;
            let mut client = server.workflow_client().await?;

            let err = client.register_namespace(register("")).await.unwrap_err();
            assert_eq!(
                (err.code(), err.message()),
                (Code::InvalidArgument, "Namespace not set on request.")
            );

            let mut short = register("short-retention");
            short.workflow_execution_retention_period = Some(prost_types::Duration {
                seconds: 600,
                nanos: 0,
            });
            let err = client.register_namespace(short).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument);
            assert_eq!(
                err.message(),
                "A valid retention period is not set on request."
            );

            let err = client
                .register_namespace(register("default"))
                .await
                .unwrap_err();
            assert_eq!(
                (err.code(), err.message()),
                (Code::AlreadyExists, "Namespace \"default\" already exists")
            );
            let details = RpcStatus::decode(err.details())?;
            assert!(
                details.details[0]
                    .type_url
                    .ends_with("NamespaceAlreadyExistsFailure")
            );

            let err = client
                .describe_namespace(by_name("nosuch"))
                .await
                .unwrap_err();
            assert_eq!(
                (err.code(), err.message()),
                (Code::NotFound, "Namespace nosuch is not found.")
            );
            let details = RpcStatus::decode(err.details())?;
            assert!(
                details.details[0]
                    .type_url
                    .ends_with("NamespaceNotFoundFailure")
            );

            let err = client
                .describe_namespace(DescribeNamespaceRequest::default())
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument);

            let err = client
                .update_namespace(UpdateNamespaceRequest {
                    namespace: "nosuch".into(),
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::NotFound);

            // Nothing above changed anything: only the launch namespace exists.
            let list = client
                .list_namespaces(ListNamespacesRequest::default())
                .await?
                .into_inner();
            let names: Vec<_> = list
                .namespaces
                .iter()
                .map(|n| n.namespace_info.as_ref().unwrap().name.clone())
                .collect();
            assert_eq!(names, ["default"]);
            Ok(())
        },
    )
    .await
}

#[tokio::test]
async fn list_namespaces_pages_through_every_namespace() -> anyhow::Result<()> {
    dura_tests::bounded(
        "list_namespaces_pages_through_every_namespace",
        dura_tests::TEST_BUDGET,
        async {
            let dir = tempfile::tempdir()?;
            let server =
                DevServer::start_with_args(&dir.path().join("db"), &["--namespace", "extra"])
                    .await?;
            let mut client = server.workflow_client().await?;
            for name in ["a1", "a2", "a3", "a4"] {
                client.register_namespace(register(name)).await?;
            }
            let mut names = Vec::new();
            let mut token = Vec::new();
            loop {
                let page = client
                    .list_namespaces(ListNamespacesRequest {
                        page_size: 2,
                        next_page_token: token,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                assert!(page.namespaces.len() <= 2);
                names.extend(
                    page.namespaces
                        .into_iter()
                        .map(|n| n.namespace_info.unwrap().name),
                );
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            assert_eq!(names, ["a1", "a2", "a3", "a4", "default", "extra"]);
            Ok(())
        },
    )
    .await
}

#[tokio::test]
async fn system_info_and_unimplemented_rpcs() -> anyhow::Result<()> {
    dura_tests::bounded(
        "system_info_and_unimplemented_rpcs",
        dura_tests::TEST_BUDGET,
        async {
            let dir = tempfile::tempdir()?;
            let server = DevServer::start(&dir.path().join("db")).await?;
            let mut client = server.workflow_client().await?;
            let info = client
                .get_system_info(GetSystemInfoRequest {})
                .await?
                .into_inner();
            assert!(!info.server_version.is_empty());
            let cluster = client
                .get_cluster_info(GetClusterInfoRequest {})
                .await?
                .into_inner();
            assert_eq!(cluster.history_shard_count, 4);
            assert!(!cluster.cluster_id.is_empty());

            let err = client
                .list_batch_operations(ListBatchOperationsRequest::default())
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::Unimplemented);
            assert!(
                err.message().contains("ListBatchOperations"),
                "{}",
                err.message()
            );
            Ok(())
        },
    )
    .await
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly_and_releases_the_database() -> anyhow::Result<()> {
    dura_tests::bounded(
        "sigterm_shuts_down_cleanly_and_releases_the_database",
        dura_tests::TEST_BUDGET,
        async {
            let dir = tempfile::tempdir()?;
            let db = dir.path().join("db");
            let mut server = DevServer::start(&db).await?;
            server
                .workflow_client()
                .await?
                .register_namespace(register("kept"))
                .await?;
            let status = server.terminate(Duration::from_secs(20)).await?;
            assert!(
                status.success(),
                "exit status {status:?}; log:\n{}",
                server.log()
            );
            // The RocksDB lock is free again and the acknowledged namespace is there.
            let server = DevServer::start(&db).await?;
            server
                .workflow_client()
                .await?
                .describe_namespace(by_name("kept"))
                .await?;
            Ok(())
        },
    )
    .await
}
