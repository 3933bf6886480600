//! `dura bench` against a real `dura server start-dev`: every workload completes workflows
//! without errors, and `--json` ends with the report the docs describe.

use std::process::Command;

use dura_tests::{DevServer, dura_binary};

fn bench(server: &DevServer, workload: &str, load: &[&str]) -> anyhow::Result<serde_json::Value> {
    let output = Command::new(dura_binary())
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
        .args(load)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout)?;
    let last = stdout.lines().last().unwrap_or_default();
    Ok(serde_json::from_str(last)?)
}

#[tokio::test]
async fn every_workload_completes_workflows_without_errors() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = DevServer::start(&dir.path().join("db")).await?;
    for (workload, load) in [
        ("echo", ["--concurrency", "4"]),
        ("chain", ["--concurrency", "4"]),
        ("signal", ["--concurrency", "4"]),
        ("timer", ["--rate", "5"]),
    ] {
        let report = bench(&server, workload, &load)?;
        assert!(
            report["completed"].as_u64().unwrap_or(0) > 0,
            "{workload}: {report}"
        );
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
    }
    // Bad input is refused before any load is generated.
    let refused = Command::new(dura_binary())
        .args([
            "bench",
            "run",
            "--workload",
            "echo",
            "--address",
            &format!("127.0.0.1:{}", server.port),
            "--concurrency",
            "0",
        ])
        .output()?;
    assert!(!refused.status.success());
    Ok(())
}
