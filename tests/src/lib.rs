//! Harness for end-to-end tests: real `dura` processes on loopback, talked to over real gRPC.
//!
//! The binary is `$DURA_BIN`, else `dura` next to the test executable's target directory
//! (`scripts/test.sh` builds it before running the tests).

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub mod cluster;

use anyhow::{Context, bail};
use temporalio_protos::temporal::api::{
    operatorservice::v1::operator_service_client::OperatorServiceClient,
    workflowservice::v1::{
        DescribeNamespaceRequest, workflow_service_client::WorkflowServiceClient,
    },
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

pub type WorkflowClient = WorkflowServiceClient<Channel>;
pub type OperatorClient = OperatorServiceClient<Channel>;

pub fn dura_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("DURA_BIN") {
        return bin.into();
    }
    // target/<profile>/deps/<test-exe> → target/<profile>/dura
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir")
        .join("dura");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build -p dura-node --bin dura` first",
        bin.display()
    );
    bin
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The text `/metrics` serves on `port`.
pub async fn scrape_metrics(port: u16) -> anyhow::Result<String> {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut body = String::new();
    conn.read_to_string(&mut body).await?;
    Ok(body)
}

/// A `dura server start-dev` process with its own port and database directory.
pub struct DevServer {
    child: Option<Child>,
    pub port: u16,
    pub db: PathBuf,
    log: PathBuf,
}

impl DevServer {
    /// Starts a server on `db` and waits until it answers DescribeNamespace("default").
    pub async fn start(db: &Path) -> anyhow::Result<Self> {
        Self::start_with_args(db, &[]).await
    }

    pub async fn start_with_args(db: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let port = free_port();
        let log = db.with_extension("log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = Command::new(dura_binary())
            .args([
                "server",
                "start-dev",
                "--headless",
                "--ip",
                "127.0.0.1",
                "--log-level",
                "warn",
            ])
            .args(["--port", &port.to_string(), "--db-filename"])
            .arg(db)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("spawning dura")?;
        let mut server = Self {
            child: Some(child),
            port,
            db: db.to_path_buf(),
            log,
        };
        server.wait_ready(Duration::from_secs(30)).await?;
        Ok(server)
    }

    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().transpose()) {
                bail!(
                    "dura exited during startup ({:?}); log:\n{}",
                    status,
                    self.log()
                );
            }
            if let Ok(mut client) = self.workflow_client().await {
                let probe = DescribeNamespaceRequest {
                    namespace: "default".into(),
                    ..Default::default()
                };
                if client.describe_namespace(probe).await.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("dura not ready after {timeout:?}; log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn workflow_client(&self) -> anyhow::Result<WorkflowClient> {
        Ok(WorkflowServiceClient::connect(self.address()).await?)
    }

    pub async fn operator_client(&self) -> anyhow::Result<OperatorClient> {
        Ok(OperatorServiceClient::connect(self.address()).await?)
    }

    /// SIGKILL: the process gets no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the process to exit; returns its exit status.
    pub async fn terminate(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("server not running")?;
        // SAFETY: kill(2) on a pid we own; no memory is touched.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("dura did not exit within {timeout:?} of SIGTERM");
            }
            // Yield to the runtime: this test's own gRPC connections must see the server's
            // GOAWAY and close, or the server's graceful shutdown waits for them.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        self.kill9();
    }
}
