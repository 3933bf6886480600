//! A three-node cluster of real `dura server start` processes on loopback: writes through any
//! node reach every replica, the loss of a node (SIGKILL) costs clients a short retried
//! UNAVAILABLE and nothing acknowledged, and a restarted node catches up.
//!
//! A workflow task also travels across nodes: started through one node, polled through
//! another (forwarded to the leader of the queue's partition), completed through a third.

use std::time::{Duration, Instant};

use dura_tests::cluster::{
    Node, cluster, cluster_status, describe, described, reachable, replicated, start,
    start_request, transfer_leader,
};
use temporalio_protos::temporal::api::{
    command::v1::{
        Command as WorkflowCommand, CompleteWorkflowExecutionCommandAttributes, command,
    },
    enums::v1::{CommandType, TaskQueueKind, WorkflowExecutionStatus},
    taskqueue::v1::TaskQueue,
    workflowservice::v1::{
        DescribeTaskQueueRequest, PollWorkflowTaskQueueRequest, RespondWorkflowTaskCompletedRequest,
    },
};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_node_survive_a_sigkilled_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path(), &[]);
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
    let mut nodes = cluster(dir.path(), &[]);
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
