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

/// Below Linux's ephemeral range (32768–60999): a port handed out here is never taken by an
/// outgoing connection between this check and the server's bind, and no two calls in one
/// test process return the same port, so parallel tests cannot collide.
const PORT_RANGE: std::ops::Range<u16> = 20000..32000;

pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(PORT_RANGE.end - PORT_RANGE.start);
    // Test binaries run one after another, but start each from its own place anyway.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = PORT_RANGE.start + offset as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PORT_RANGE:?}");
}

/// How long one end-to-end test may run before it counts as hung. Generous: a loaded CI
/// machine is slow, and speed is measured by benchmarks, not here.
pub const TEST_BUDGET: Duration = Duration::from_secs(300);

/// Runs a test body within `limit`: a hang fails this one test, naming it, instead of
/// stalling the whole run. Dropping the body on timeout kills the servers it started.
pub async fn bounded<T>(name: &str, limit: Duration, test: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, test).await {
        Ok(outcome) => outcome,
        Err(_) => panic!("test {name} still running after {limit:?}: hung"),
    }
}

/// Makes the spawned process die with the test: the kernel SIGKILLs it when the thread that
/// spawned it exits, even if the test process is killed without running any destructor.
pub fn dies_with_test(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(2) and getppid(2) are async-signal-safe and touch no memory of ours.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl took effect.
            if libc::getppid() == 1 {
                return Err(std::io::Error::other("test process already gone"));
            }
            Ok(())
        })
    }
}

/// Runs `command` to completion within `limit`, capturing its output; kills it and fails
/// the test when it runs longer.
pub fn output_within(command: &mut Command, limit: Duration) -> std::process::Output {
    use std::io::Read;
    let mut child = dies_with_test(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
    // Read both pipes while waiting, or a chatty child blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// The text `/metrics` serves on `port`.
pub async fn scrape_metrics(port: u16) -> anyhow::Result<String> {
    http_get(port, "/metrics").await
}

/// The whole HTTP/1.1 response (status line, headers, body) to `GET path` on the metrics port.
pub async fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    conn.read_to_string(&mut response).await?;
    Ok(response)
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

    /// A port taken by some other process between the check and the bind is retried on
    /// another one.
    pub async fn start_with_args(db: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match Self::start_on(free_port(), db, extra).await {
                Err(e) if attempts < 5 && e.to_string().contains("Address already in use") => {
                    continue;
                }
                outcome => return outcome,
            }
        }
    }

    async fn start_on(port: u16, db: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let log = db.with_extension("log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = dies_with_test(&mut Command::new(dura_binary()))
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
