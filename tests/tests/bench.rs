//! `dura bench` against a real `dura server start-dev`: every workload's workflows complete
//! without errors, and `--json` ends with the report the docs describe. How many complete in
//! the window is the benchmark's business, not this test's: it checks the server's own
//! record of what the bench started instead.

use std::{process::Command, time::Duration};

use dura_tests::{DevServer, WorkflowClient, dura_binary, output_within};
use temporalio_protos::temporal::api::workflowservice::v1::CountWorkflowExecutionsRequest;

fn bench(server: &DevServer, workload: &str, load: &[&str]) -> anyhow::Result<serde_json::Value> {
    let output = output_within(
        Command::new(dura_binary())
            .args([
                "bench",
                "run",
                "--workload",
                workload,
                "--address",
                &format!("127.0.0.1:{}", server.port),
            ])
            .args([
                "--duration",
                "2s",
                "--warmup",
                "0s",
                "--chain-length",
                "2",
                "--json",
            ])
            .args(["--server-pid", &server.pid().to_string()])
            .args(load),
        Duration::from_secs(120),
    );
    anyhow::ensure!(
        output.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout)?;
    let last = stdout.lines().last().unwrap_or_default();
    Ok(serde_json::from_str(last)?)
}

async fn count(client: &mut WorkflowClient, query: String) -> anyhow::Result<i64> {
    let request = CountWorkflowExecutionsRequest {
        namespace: "default".into(),
        query,
    };
    Ok(client
        .count_workflow_executions(request)
        .await?
        .into_inner()
        .count)
}

/// Waits until every workflow on `task_queue` has closed; how many completed.
async fn all_closed(client: &mut WorkflowClient, task_queue: &str) -> anyhow::Result<i64> {
    let on_queue = format!("TaskQueue = '{task_queue}'");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while count(
        client,
        format!("{on_queue} AND ExecutionStatus = 'Running'"),
    )
    .await?
        > 0
    {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{task_queue}: workflows still running long after the bench ended"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let completed = count(
        client,
        format!("{on_queue} AND ExecutionStatus = 'Completed'"),
    )
    .await?;
    assert_eq!(
        count(client, on_queue).await?,
        completed,
        "{task_queue}: every closed workflow completed"
    );
    Ok(completed)
}

#[tokio::test]
async fn every_workload_completes_workflows_without_errors() -> anyhow::Result<()> {
    dura_tests::bounded(
        "every_workload_completes_workflows_without_errors",
        dura_tests::TEST_BUDGET,
        async {
            let dir = tempfile::tempdir()?;
            let server = DevServer::start(&dir.path().join("db")).await?;
            let mut client = server.workflow_client().await?;
            for (workload, load) in [
                ("echo", ["--concurrency", "4"]),
                ("chain", ["--concurrency", "4"]),
                ("signal", ["--concurrency", "4"]),
                ("timer", ["--rate", "5"]),
            ] {
                let report = bench(&server, workload, &load)?;
                assert_eq!(
                    report["errors"],
                    serde_json::json!({}),
                    "{workload}: {report}"
                );
                assert!(
                    report["latency_ms"]["p99"].as_f64().is_some(),
                    "{workload}: {report}"
                );
                assert!(
                    report["server"]["cpu_s"].as_f64().is_some(),
                    "{workload}: {report}"
                );
                let task_queue = report["task_queue"].as_str().expect("task_queue");
                let completed = all_closed(&mut client, task_queue).await?;
                // The bench starts its first workflows as the window opens, however slow the
                // machine is.
                assert!(completed > 0, "{workload}: nothing was started: {report}");
            }
            // Bad input is refused before any load is generated.
            let refused = output_within(
                Command::new(dura_binary()).args([
                    "bench",
                    "run",
                    "--workload",
                    "echo",
                    "--address",
                    &format!("127.0.0.1:{}", server.port),
                    "--concurrency",
                    "0",
                ]),
                Duration::from_secs(60),
            );
            assert_eq!(refused.status.code(), Some(2));
            assert!(
                String::from_utf8_lossy(&refused.stderr).contains("--concurrency"),
                "{}",
                String::from_utf8_lossy(&refused.stderr)
            );
            Ok(())
        },
    )
    .await
}
