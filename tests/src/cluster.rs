//! Real `dura server start` processes on loopback (three unless a test asks for more): start,
//! SIGTERM, SIGKILL, SIGSTOP and restart them, and ask them about the cluster through the
//! `dura cluster` CLI.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use temporalio_protos::temporal::api::{
    command::v1::{
        Command as WorkflowCommand, CompleteWorkflowExecutionCommandAttributes, command,
    },
    common::v1::{WorkflowExecution, WorkflowType},
    enums::v1::{CommandType, EventType, TaskQueueKind, WorkflowExecutionStatus},
    taskqueue::v1::TaskQueue,
    workflow::v1::WorkflowExecutionInfo,
    workflowservice::v1::{
        DescribeNamespaceRequest, DescribeTaskQueueRequest, DescribeWorkflowExecutionRequest,
        GetWorkflowExecutionHistoryRequest, PollWorkflowTaskQueueRequest,
        PollWorkflowTaskQueueResponse, RespondWorkflowTaskCompletedRequest,
        StartWorkflowExecutionRequest, workflow_service_client::WorkflowServiceClient,
    },
};

use crate::{WorkflowClient, dies_with_test, dura_binary, free_port, output_within};

pub struct Node {
    pub id: u64,
    pub port: u16,
    pub args: Vec<String>,
    pub log: PathBuf,
    /// Earlier starts, whose logs were set aside.
    pub starts: u32,
    pub child: Option<Child>,
}

impl Node {
    /// Starts the process; each start logs to a file of its own, so the log tells what this
    /// process leads.
    pub fn spawn(&mut self) {
        if self.log.exists() {
            self.starts += 1;
            let previous = self.log.with_extension(format!("log.{}", self.starts));
            std::fs::rename(&self.log, previous).unwrap();
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Some(
            dies_with_test(&mut Command::new(dura_binary()))
                .args(&self.args)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    /// SIGTERM, then waits for a clean exit: the node hands its groups over first.
    pub fn terminate(&mut self) {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on a pid we own; no memory is touched.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "node {} exited with {status}", self.id);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} ignored SIGTERM",
                self.id
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn client(&self) -> anyhow::Result<WorkflowClient> {
        Ok(WorkflowServiceClient::connect(format!("http://127.0.0.1:{}", self.port)).await?)
    }

    /// Waits until the node answers DescribeNamespace: it has joined a quorum and bootstrapped.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "node {} exited during start-up ({status}); log:\n{}",
                    self.id,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if let Ok(mut client) = self.client().await {
                let probe = DescribeNamespaceRequest {
                    namespace: "default".into(),
                    ..Default::default()
                };
                if client.describe_namespace(probe).await.is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {} not ready; log:\n{}",
                self.id,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Node {
    /// The node's peer port, as its arguments give it.
    pub fn peer_port(&self) -> u16 {
        let at = self.args.iter().position(|a| a == "--peer-port").unwrap();
        self.args[at + 1].parse().unwrap()
    }

    /// The process's peak resident memory (VmHWM), in KiB.
    pub fn peak_memory_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }

    /// SIGSTOP (`stop`) or SIGCONT the process.
    pub fn pause(&self, stop: bool) {
        let pid = self.child.as_ref().expect("running").id();
        let signal = if stop { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: kill(2) on a pid we own; no memory is touched.
        unsafe { libc::kill(pid as libc::pid_t, signal) };
    }

    /// How many shards this node leads now, as its log says.
    pub fn shards_led(&self) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        // "stopped leading shard" contains "leading shard" too.
        let stopped = log.matches("stopped leading shard").count();
        let started = log.matches("leading shard").count() - stopped;
        started - stopped
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Three nodes holding every shard (`extra` flags for each, as for [`cluster_of`]).
pub fn cluster(dir: &Path, extra: &[&str]) -> Vec<Node> {
    cluster_of(3, dir, extra)
}

/// `members` nodes (ids from 1) of one cluster on loopback ports, not started yet, each
/// with `extra` flags (`--replication` defaults to 3, or every node when fewer).
pub fn cluster_of(members: usize, dir: &Path, extra: &[&str]) -> Vec<Node> {
    let peer_ports: Vec<u16> = (0..members).map(|_| free_port()).collect();
    let initial = peer_ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    (0..members)
        .map(|i| {
            let id = i as u64 + 1;
            let port = free_port();
            let args = [
                "server",
                "start",
                "--node-id",
                &id.to_string(),
                "--data-dir",
                &dir.join(format!("node-{id}")).to_string_lossy(),
                "--port",
                &port.to_string(),
                "--peer-port",
                &peer_ports[i].to_string(),
                "--metrics-port",
                &free_port().to_string(),
                // Loopback only: nobody else reaches these ports.
                "--peer-plaintext",
                "--initial-cluster",
                &initial,
                // Info: the test reads which shards each node leads from the log.
                "--log-level",
                "info",
            ]
            .iter()
            .chain(extra)
            .map(|a| a.to_string())
            .collect::<Vec<_>>();
            // Four shards unless the test says otherwise.
            let mut args = args;
            if !extra.contains(&"--shards") {
                args.extend(["--shards".to_string(), "4".to_string()]);
            }
            if !extra.contains(&"--replication") {
                args.extend(["--replication".to_string(), members.min(3).to_string()]);
            }
            Node {
                id,
                port,
                args,
                log: dir.join(format!("node-{id}.log")),
                starts: 0,
                child: None,
            }
        })
        .collect()
}

/// Runs the `dura` CLI with `args`, which must succeed; its standard output.
fn dura_cli<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> Vec<u8> {
    let out = output_within(
        Command::new(dura_binary()).args(args),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `dura cluster status --output json` through `node`.
pub fn cluster_status(node: &Node) -> serde_json::Value {
    let address = format!("127.0.0.1:{}", node.port);
    let out = dura_cli([
        "cluster",
        "status",
        "--output",
        "json",
        "--address",
        &address,
    ]);
    serde_json::from_slice(&out).unwrap()
}

/// `dura cluster fault` on `node` (started with `--enable-fault-injection`): drops its
/// messages to `drop_to` and from `drop_from`; both empty heal it.
pub fn fault(node: &Node, drop_to: &[u64], drop_from: &[u64]) {
    set_faults(
        node,
        &[("--drop-to", drop_to), ("--drop-from", drop_from)],
        None,
    );
}

/// `dura cluster fault` on `node`: its messages to `peers` arrive `delay_ms` late, Raft
/// replication included, while their requests to it are answered at once.
pub fn delay_to(node: &Node, peers: &[u64], delay_ms: u64) {
    set_faults(node, &[("--delay-to", peers)], Some(delay_ms));
}

fn set_faults(node: &Node, rules: &[(&str, &[u64])], delay_ms: Option<u64>) {
    let mut args = vec![
        "cluster".to_string(),
        "fault".into(),
        "--peer-address".into(),
        format!("127.0.0.1:{}", node.peer_port()),
    ];
    for (flag, peers) in rules.iter().filter(|(_, peers)| !peers.is_empty()) {
        let list = peers.iter().map(u64::to_string).collect::<Vec<_>>();
        args.push(format!("{flag}={}", list.join(",")));
    }
    args.extend(delay_ms.map(|ms| format!("--delay-ms={ms}")));
    dura_cli(args);
}

/// Whether every group has a leader and every follower's log matches the leader's.
pub fn converged(status: &serde_json::Value) -> bool {
    status["groups"].as_array().unwrap().iter().all(|g| {
        g["leader"].is_u64()
            && g["lag"].as_object().is_some_and(|lag| {
                lag.len() + 1 == g["voters"].as_array().unwrap().len()
                    && lag.values().all(|l| l == 0)
            })
    })
}

/// `dura cluster transfer-leader` through `node`.
pub fn transfer_leader(node: &Node, group: u32, to: u64) {
    let address = format!("127.0.0.1:{}", node.port);
    let (group, to) = (group.to_string(), to.to_string());
    dura_cli([
        "cluster",
        "transfer-leader",
        "--address",
        &address,
        "--group",
        &group,
        "--to",
        &to,
    ]);
}

/// The ids of the nodes `status` calls reachable.
pub fn reachable(status: &serde_json::Value) -> Vec<u64> {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["reachable"] == true)
        .map(|n| n["id"].as_u64().unwrap())
        .collect()
}

pub fn start_request(workflow_id: &str) -> StartWorkflowExecutionRequest {
    StartWorkflowExecutionRequest {
        namespace: "default".into(),
        workflow_id: workflow_id.into(),
        workflow_type: Some(WorkflowType {
            name: "Greet".into(),
        }),
        task_queue: Some(TaskQueue {
            name: "cluster-q".into(),
            kind: TaskQueueKind::Normal as i32,
            ..Default::default()
        }),
        // One request id per workflow: a retried start finds the first attempt's run.
        request_id: format!("request-{workflow_id}"),
        ..Default::default()
    }
}

/// Calls `rpc` until it answers something else than UNAVAILABLE (an election, which a loaded
/// machine makes more likely), as SDKs retry it; gives up after 30 s.
pub async fn retrying<T, Rpc>(what: &str, mut rpc: impl FnMut() -> Rpc) -> Result<T, tonic::Status>
where
    Rpc: Future<Output = Result<T, tonic::Status>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match rpc().await {
            Err(status) if status.code() == tonic::Code::Unavailable => {
                assert!(Instant::now() < deadline, "{what}: {status}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            answer => return answer,
        }
    }
}

/// Starts `request` through `client`; returns the run id.
pub async fn start_with(client: &WorkflowClient, request: StartWorkflowExecutionRequest) -> String {
    let what = request.workflow_id.clone();
    retrying(&what, || {
        let (mut client, request) = (client.clone(), request.clone());
        async move { client.start_workflow_execution(request).await }
    })
    .await
    .unwrap_or_else(|status| panic!("{what}: {status}"))
    .into_inner()
    .run_id
}

/// Starts `workflow_id` through `client`; returns the run id.
pub async fn start(client: &mut WorkflowClient, workflow_id: &str) -> String {
    start_with(client, start_request(workflow_id)).await
}

/// `node` describes `workflow_id` with run `run_id` without ever answering NOT_FOUND: reads
/// are linearizable.
pub async fn described(node: &Node, workflow_id: &str, run_id: &str) {
    let what = format!("{workflow_id} through node {}", node.id);
    let info = retrying(&what, || describe(node, workflow_id))
        .await
        .unwrap_or_else(|status| panic!("{what}: {status}"));
    assert_eq!(info.execution.unwrap().run_id, run_id);
}

/// DescribeWorkflowExecution of the current run of `workflow_id` through `node`.
pub async fn describe(
    node: &Node,
    workflow_id: &str,
) -> Result<WorkflowExecutionInfo, tonic::Status> {
    let described = node
        .client()
        .await
        .unwrap()
        .describe_workflow_execution(DescribeWorkflowExecutionRequest {
            namespace: "default".into(),
            execution: Some(WorkflowExecution {
                workflow_id: workflow_id.into(),
                run_id: String::new(),
            }),
        })
        .await?;
    Ok(described.into_inner().workflow_execution_info.unwrap())
}

/// Waits until `node`'s replica holds `workflow_id` with run `run_id`.
pub async fn replicated(node: &Node, workflow_id: &str, run_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(info) = describe(node, workflow_id).await {
            assert_eq!(
                info.execution.unwrap().run_id,
                run_id,
                "{workflow_id}: one run"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{workflow_id} never reached node {}",
            node.id
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn queue(name: &str) -> Option<TaskQueue> {
    Some(TaskQueue {
        name: name.into(),
        kind: TaskQueueKind::Normal as i32,
        ..Default::default()
    })
}

/// Starts a workflow on `task_queue` through `nodes[0]`, takes its task through `nodes[1]` and
/// completes it through `nodes[2]`; every node then describes it as completed.
pub async fn workflow_task_across_nodes(nodes: [&Node; 3], workflow_id: &str, task_queue: &str) {
    let mut request = start_request(workflow_id);
    request.task_queue = queue(task_queue);
    start_with(&nodes[0].client().await.unwrap(), request).await;

    let task = next_task(nodes[1], task_queue).await;
    assert_eq!(task.workflow_execution.unwrap().workflow_id, workflow_id);
    // The poller is known to the partition leader's matcher; every node describes it.
    for node in nodes {
        let client = node.client().await.unwrap();
        let pollers = retrying("DescribeTaskQueue", || {
            let mut client = client.clone();
            async move {
                client
                    .describe_task_queue(DescribeTaskQueueRequest {
                        namespace: "default".into(),
                        task_queue: queue(task_queue),
                        ..Default::default()
                    })
                    .await
            }
        })
        .await
        .unwrap()
        .into_inner()
        .pollers;
        assert!(
            pollers.iter().any(|p| p.identity == "cluster-worker"),
            "{task_queue} through node {}: {pollers:?}",
            node.id
        );
    }

    respond(nodes[2], task.task_token, vec![complete_command()]).await;
    for node in nodes {
        assert_eq!(
            retrying(workflow_id, || describe(node, workflow_id))
                .await
                .unwrap()
                .status,
            WorkflowExecutionStatus::Completed as i32,
            "{workflow_id} through node {}",
            node.id
        );
    }
}

/// The next workflow task of `task_queue`, polled through `node` as a worker does (again
/// after an empty answer) for up to a minute.
pub async fn next_task(node: &Node, task_queue: &str) -> PollWorkflowTaskQueueResponse {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(task) = poll_task(node, task_queue, Duration::from_secs(10)).await {
            return task;
        }
        assert!(
            Instant::now() < deadline,
            "no task of {task_queue} reached a poller through node {}",
            node.id
        );
    }
}

/// One poll of `task_queue` through `node`, waiting up to `wait`: the task, or `None` when
/// none came (or the partition's leadership was moving, which a worker retries).
pub async fn poll_task(
    node: &Node,
    task_queue: &str,
    wait: Duration,
) -> Option<PollWorkflowTaskQueueResponse> {
    let mut poll = tonic::Request::new(PollWorkflowTaskQueueRequest {
        namespace: "default".into(),
        task_queue: queue(task_queue),
        identity: "cluster-worker".into(),
        ..Default::default()
    });
    poll.set_timeout(wait);
    match node
        .client()
        .await
        .unwrap()
        .poll_workflow_task_queue(poll)
        .await
    {
        Ok(task) if !task.get_ref().task_token.is_empty() => Some(task.into_inner()),
        Ok(_) => None,
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
            ) =>
        {
            None
        }
        Err(status) => panic!("poll through node {}: {status}", node.id),
    }
}

pub fn complete_command() -> WorkflowCommand {
    WorkflowCommand {
        command_type: CommandType::CompleteWorkflowExecution as i32,
        attributes: Some(
            command::Attributes::CompleteWorkflowExecutionCommandAttributes(
                CompleteWorkflowExecutionCommandAttributes::default(),
            ),
        ),
        ..Default::default()
    }
}

/// Completes a workflow task through `node` with `commands`.
pub async fn respond(node: &Node, task_token: Vec<u8>, commands: Vec<WorkflowCommand>) {
    node.client()
        .await
        .unwrap()
        .respond_workflow_task_completed(RespondWorkflowTaskCompletedRequest {
            namespace: "default".into(),
            task_token,
            commands,
            identity: "cluster-worker".into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|status| panic!("completing a task through node {}: {status}", node.id));
}

/// The event types of `workflow_id`'s current run, as `node` serves its history.
pub async fn history_types(node: &Node, workflow_id: &str) -> Vec<EventType> {
    let history = node
        .client()
        .await
        .unwrap()
        .get_workflow_execution_history(GetWorkflowExecutionHistoryRequest {
            namespace: "default".into(),
            execution: Some(WorkflowExecution {
                workflow_id: workflow_id.into(),
                run_id: String::new(),
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|status| panic!("{workflow_id} through node {}: {status}", node.id))
        .into_inner();
    history
        .history
        .unwrap_or_default()
        .events
        .iter()
        .map(|e| EventType::try_from(e.event_type).unwrap_or(EventType::Unspecified))
        .collect()
}
