//! A three-node cluster of real `dura server start` processes on loopback: writes through any
//! node reach every replica, the loss of a node (SIGKILL) costs clients a short retried
//! UNAVAILABLE and nothing acknowledged, and a restarted node catches up.
//!
//! A workflow task also travels across nodes: started through one node, polled through
//! another (forwarded to the leader of the queue's partition), completed through a third.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use dura_tests::{WorkflowClient, dura_binary, free_port};
use temporalio_protos::temporal::api::{
    command::v1::{
        Command as WorkflowCommand, CompleteWorkflowExecutionCommandAttributes, command,
    },
    common::v1::{WorkflowExecution, WorkflowType},
    enums::v1::{CommandType, TaskQueueKind, WorkflowExecutionStatus},
    taskqueue::v1::TaskQueue,
    workflow::v1::WorkflowExecutionInfo,
    workflowservice::v1::{
        DescribeNamespaceRequest, DescribeTaskQueueRequest, DescribeWorkflowExecutionRequest,
        PollWorkflowTaskQueueRequest, RespondWorkflowTaskCompletedRequest,
        StartWorkflowExecutionRequest, workflow_service_client::WorkflowServiceClient,
    },
};

struct Node {
    id: u64,
    port: u16,
    args: Vec<String>,
    log: PathBuf,
    /// Earlier starts, whose logs were set aside.
    starts: u32,
    child: Option<Child>,
}

impl Node {
    /// Starts the process; each start logs to a file of its own, so the log tells what this
    /// process leads.
    fn spawn(&mut self) {
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
            Command::new(dura_binary())
                .args(&self.args)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    /// SIGTERM, then waits for a clean exit: the node hands its groups over first.
    fn terminate(&mut self) {
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

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn client(&self) -> anyhow::Result<WorkflowClient> {
        Ok(WorkflowServiceClient::connect(format!("http://127.0.0.1:{}", self.port)).await?)
    }

    /// Waits until the node answers DescribeNamespace: it has joined a quorum and bootstrapped.
    async fn wait_ready(&mut self) {
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
    /// How many shards this node leads now, as its log says.
    fn shards_led(&self) -> usize {
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

fn cluster(dir: &Path) -> Vec<Node> {
    let peer_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let initial = peer_ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    (0..3)
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
                "--initial-cluster",
                &initial,
                "--shards",
                "4",
                // Info: the test reads which shards each node leads from the log.
                "--log-level",
                "info",
            ]
            .map(String::from)
            .to_vec();
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

/// `dura cluster status --output json` through `node`.
fn cluster_status(node: &Node) -> serde_json::Value {
    let out = Command::new(dura_binary())
        .args(["cluster", "status", "--output", "json", "--address"])
        .arg(format!("127.0.0.1:{}", node.port))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `dura cluster transfer-leader` through `node`.
fn transfer_leader(node: &Node, group: u32, to: u64) {
    let out = Command::new(dura_binary())
        .args(["cluster", "transfer-leader", "--address"])
        .arg(format!("127.0.0.1:{}", node.port))
        .args(["--group", &group.to_string(), "--to", &to.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The ids of the nodes `status` calls reachable.
fn reachable(status: &serde_json::Value) -> Vec<u64> {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["reachable"] == true)
        .map(|n| n["id"].as_u64().unwrap())
        .collect()
}

fn queue(name: &str) -> Option<TaskQueue> {
    Some(TaskQueue {
        name: name.into(),
        kind: TaskQueueKind::Normal as i32,
        ..Default::default()
    })
}

/// Starts a workflow on `task_queue` through `nodes[0]`, takes its task through `nodes[1]` and
/// completes it through `nodes[2]`; every node then describes it as completed.
async fn workflow_task_across_nodes(nodes: [&Node; 3], workflow_id: &str, task_queue: &str) {
    let mut request = start_request(workflow_id);
    request.task_queue = queue(task_queue);
    let mut starter = nodes[0].client().await.unwrap();
    starter.start_workflow_execution(request).await.unwrap();

    let mut poller = nodes[1].client().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let task = loop {
        let mut poll = tonic::Request::new(PollWorkflowTaskQueueRequest {
            namespace: "default".into(),
            task_queue: queue(task_queue),
            identity: "cluster-worker".into(),
            ..Default::default()
        });
        poll.set_timeout(Duration::from_secs(10));
        match poller.poll_workflow_task_queue(poll).await {
            Ok(task) if !task.get_ref().task_token.is_empty() => break task.into_inner(),
            Ok(_) => {}
            // A poll forwarded to a partition whose leadership just moved.
            Err(status) if status.code() == tonic::Code::Unavailable => {}
            Err(status) => panic!("poll through node {}: {status}", nodes[1].id),
        }
        assert!(
            Instant::now() < deadline,
            "{workflow_id}'s task never reached a poller"
        );
    };
    assert_eq!(task.workflow_execution.unwrap().workflow_id, workflow_id);
    // The poller is known to the partition leader's matcher; every node describes it.
    for node in nodes {
        let pollers = node
            .client()
            .await
            .unwrap()
            .describe_task_queue(DescribeTaskQueueRequest {
                namespace: "default".into(),
                task_queue: queue(task_queue),
                ..Default::default()
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

    let complete = WorkflowCommand {
        command_type: CommandType::CompleteWorkflowExecution as i32,
        attributes: Some(
            command::Attributes::CompleteWorkflowExecutionCommandAttributes(
                CompleteWorkflowExecutionCommandAttributes::default(),
            ),
        ),
        ..Default::default()
    };
    nodes[2]
        .client()
        .await
        .unwrap()
        .respond_workflow_task_completed(RespondWorkflowTaskCompletedRequest {
            namespace: "default".into(),
            task_token: task.task_token,
            commands: vec![complete],
            identity: "cluster-worker".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    for node in nodes {
        assert_eq!(
            describe(node, workflow_id).await.unwrap().status,
            WorkflowExecutionStatus::Completed as i32,
            "{workflow_id} through node {}",
            node.id
        );
    }
}

fn start_request(workflow_id: &str) -> StartWorkflowExecutionRequest {
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

/// Starts `workflow_id` through `client`, retrying UNAVAILABLE (an election) as SDKs do;
/// returns the run id.
async fn start(client: &mut WorkflowClient, workflow_id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client
            .start_workflow_execution(start_request(workflow_id))
            .await
        {
            Ok(reply) => return reply.into_inner().run_id,
            Err(status) if status.code() == tonic::Code::Unavailable => {
                assert!(Instant::now() < deadline, "{workflow_id}: {status}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("{workflow_id}: {status}"),
        }
    }
}

/// `node` answers DescribeWorkflowExecution for `workflow_id` with run `run_id` right away.
async fn described(node: &Node, workflow_id: &str, run_id: &str) {
    let info = describe(node, workflow_id)
        .await
        .unwrap_or_else(|e| panic!("{workflow_id} through node {}: {e}", node.id));
    assert_eq!(info.execution.unwrap().run_id, run_id);
}

/// DescribeWorkflowExecution of the current run of `workflow_id` through `node`.
async fn describe(node: &Node, workflow_id: &str) -> Result<WorkflowExecutionInfo, tonic::Status> {
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
async fn replicated(node: &Node, workflow_id: &str, run_id: &str) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_node_survive_a_sigkilled_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path());
    // Started in reverse order: bootstrap does not depend on who comes first.
    for node in nodes.iter_mut().rev() {
        node.spawn();
    }
    for node in nodes.iter_mut() {
        node.wait_ready().await;
    }
    // Every node reports every node and every group (4 shards and the metadata group).
    let status = cluster_status(&nodes[1]);
    assert_eq!(reachable(&status), [1, 2, 3]);
    let groups = status["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 5);
    assert_eq!(groups[0]["kind"], "meta");
    assert!(
        groups
            .iter()
            .all(|g| g["voters"] == serde_json::json!([1, 2, 3]))
    );

    // An operator moves shard 1's leadership; the balancer leaves it where it was put.
    let led_by = |status: &serde_json::Value| status["groups"][1]["leader"].as_u64();
    let to = match led_by(&status) {
        Some(leader) => leader % 3 + 1,
        None => 1,
    };
    transfer_leader(&nodes[0], 1, to);
    assert_eq!(led_by(&cluster_status(&nodes[2])), Some(to));
    tokio::time::sleep(Duration::from_secs(5)).await; // two balancer rounds
    assert_eq!(led_by(&cluster_status(&nodes[1])), Some(to));

    let mut runs = Vec::new();
    for i in 0..12 {
        let node = &nodes[i % 3];
        let id = format!("before-{i}");
        let run_id = start(&mut node.client().await.unwrap(), &id).await;
        // Reads are linearizable on every node: another node sees the start at once.
        described(&nodes[(i + 1) % 3], &id, &run_id).await;
        runs.push((id, run_id));
    }
    for (id, run_id) in &runs {
        for node in &nodes {
            replicated(node, id, run_id).await;
        }
    }
    // Queues spread over the shards, so some partitions are led by another node than the
    // workflow's shard, the poller's node or the completer's.
    for i in 0..6 {
        let order = [&nodes[i % 3], &nodes[(i + 1) % 3], &nodes[(i + 2) % 3]];
        workflow_task_across_nodes(order, &format!("roundtrip-{i}"), &format!("q-{i}")).await;
    }

    // SIGKILL the node leading the most shards, so their groups must elect new leaders.
    let victim = (0..3).max_by_key(|i| nodes[*i].shards_led()).unwrap();
    assert!(nodes[victim].shards_led() > 0, "some node leads a shard");
    eprintln!(
        "SIGKILL node {}, leader of {} shards",
        nodes[victim].id,
        nodes[victim].shards_led()
    );
    nodes[victim].kill9();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    let status = cluster_status(&nodes[survivors[0]]);
    assert!(!reachable(&status).contains(&nodes[victim].id), "{status}");
    // The longest any start took, retries included: the unavailability clients saw while the
    // groups node 1 led elected new leaders.
    let mut longest = Duration::ZERO;
    for i in 0..12 {
        let node = &nodes[survivors[i % 2]];
        let id = format!("after-{i}");
        let began = Instant::now();
        let run_id = start(&mut node.client().await.unwrap(), &id).await;
        longest = longest.max(began.elapsed());
        // A retry of an acknowledged start finds the same run.
        assert_eq!(start(&mut node.client().await.unwrap(), &id).await, run_id);
        runs.push((id, run_id));
    }
    eprintln!("after the SIGKILL the slowest start took {longest:?}");

    nodes[victim].spawn();
    nodes[victim].wait_ready().await;
    for (id, run_id) in &runs {
        for node in &nodes {
            replicated(node, id, run_id).await;
        }
    }

    // A graceful stop hands the groups over before the node exits: starts through the others
    // go on, and the stopped node's data is intact when it comes back.
    let victim = (0..3).max_by_key(|i| nodes[*i].shards_led()).unwrap();
    assert!(nodes[victim].shards_led() > 0, "some node leads a shard");
    eprintln!(
        "SIGTERM node {}, leader of {} shards",
        nodes[victim].id,
        nodes[victim].shards_led()
    );
    nodes[victim].terminate();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    let mut longest = Duration::ZERO;
    for i in 0..6 {
        let node = &nodes[survivors[i % 2]];
        let id = format!("after-sigterm-{i}");
        let began = Instant::now();
        let run_id = start(&mut node.client().await.unwrap(), &id).await;
        longest = longest.max(began.elapsed());
        runs.push((id, run_id));
    }
    eprintln!("after the SIGTERM the slowest start took {longest:?}");
    nodes[victim].spawn();
    nodes[victim].wait_ready().await;
    for (id, run_id) in &runs {
        replicated(&nodes[victim], id, run_id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_another_cluster_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path());
    // Node 3's data directory first becomes a one-node cluster of its own.
    let foreign = dir.path().join("foreign");
    let mut alone = Node {
        id: 3,
        port: nodes[2].port,
        args: nodes[2].args.clone(),
        log: dir.path().join("alone.log"),
        starts: 0,
        child: None,
    };
    let set = |args: &mut Vec<String>, flag: &str, value: &str| {
        let at = args.iter().position(|a| a == flag).unwrap();
        args[at + 1] = value.to_string();
    };
    let peer_port = nodes[2].args[nodes[2]
        .args
        .iter()
        .position(|a| a == "--peer-port")
        .unwrap()
        + 1]
    .clone();
    set(
        &mut alone.args,
        "--initial-cluster",
        &format!("3=127.0.0.1:{peer_port}"),
    );
    set(&mut alone.args, "--data-dir", &foreign.to_string_lossy());
    alone.args.extend(["--replication".into(), "1".into()]);
    alone.spawn();
    alone.wait_ready().await;
    alone.terminate();

    // The real cluster forms from nodes 1 and 2.
    for node in &mut nodes[..2] {
        node.spawn();
    }
    for node in &mut nodes[..2] {
        node.wait_ready().await;
    }
    // Node 3 on the foreign directory sees its peers belong to another cluster and exits.
    set(&mut nodes[2].args, "--data-dir", &foreign.to_string_lossy());
    nodes[2].spawn();
    let mut child = nodes[2].child.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 started on a foreign data directory"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success());
    let log = std::fs::read_to_string(&nodes[2].log).unwrap();
    assert!(log.contains("belongs to cluster"), "{log}");
    assert!(log.contains("refusing to start"), "{log}");
    // The cluster of nodes 1 and 2 serves on.
    start(
        &mut nodes[0].client().await.unwrap(),
        "after-the-foreign-node",
    )
    .await;
}
