//! Failover drills on three real `dura server start` processes: a node cut off by a network
//! partition answers no write while the majority serves on, and a node paused (SIGSTOP) past
//! the log the leaders keep catches up by snapshot. Each prints the unavailability clients saw.
//! (The SDK-driven drills — SIGKILL under load, whole-cluster restart, rolling restart — are
//! in `tests/drills/`.)

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use dura_tests::cluster::{
    Node, cluster, cluster_status, complete_command, converged, describe, fault, history_types,
    next_task, poll_task, queue, replicated, respond, start, start_request, transfer_leader,
};
use temporalio_protos::temporal::api::{
    command::v1::{Command as WorkflowCommand, StartTimerCommandAttributes, command},
    enums::v1::{CommandType, EventType},
};

async fn start_all(nodes: &mut [Node]) {
    for node in nodes.iter_mut() {
        node.spawn();
    }
    for node in nodes.iter_mut() {
        node.wait_ready().await;
    }
}

/// Waits until every replica holds everything its group's leader has, as `via` reports it.
async fn wait_converged(via: &Node) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = cluster_status(via);
        if converged(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "replicas never converged: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_answers_no_write_and_the_majority_serves_on() {
    dura_tests::bounded(
        "a_partitioned_node_answers_no_write_and_the_majority_serves_on",
        dura_tests::TEST_BUDGET,
        async {
            let dir = tempfile::tempdir().unwrap();
            let mut nodes = cluster(dir.path(), &["--enable-fault-injection"]);
            start_all(&mut nodes).await;
            let mut runs = Vec::new();
            for i in 0..6 {
                let id = format!("before-{i}");
                runs.push((
                    id.clone(),
                    start(&mut nodes[i % 3].client().await.unwrap(), &id).await,
                ));
            }

            // Cut off the node leading the most shards, both ways.
            let victim = (0..3).max_by_key(|i| nodes[*i].shards_led()).unwrap();
            let others: Vec<u64> = nodes
                .iter()
                .map(|n| n.id)
                .filter(|id| *id != nodes[victim].id)
                .collect();
            fault(&nodes[victim], &others, &others);
            eprintln!(
                "partitioned node {} (led {} shards)",
                nodes[victim].id,
                nodes[victim].shards_led()
            );

            // The majority elects new leaders and serves every start; the slowest start (retries
            // included) is the unavailability its clients saw.
            let majority: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
            let mut longest = Duration::ZERO;
            for i in 0..8 {
                let id = format!("during-{i}");
                let began = Instant::now();
                let run_id = start(&mut nodes[majority[i % 2]].client().await.unwrap(), &id).await;
                longest = longest.max(began.elapsed());
                runs.push((id, run_id));
            }
            eprintln!("DRILL partition: the majority's slowest start took {longest:?}");

            // The cut-off node answers no write with success: every start through it fails (its
            // deadline, or UNAVAILABLE), and none of them exists once the partition heals.
            let mut refused = Vec::new();
            for i in 0..4 {
                let id = format!("cut-off-{i}");
                let mut request = tonic::Request::new(start_request(&id));
                request.set_timeout(Duration::from_secs(3));
                let mut client = nodes[victim].client().await.unwrap();
                match client.start_workflow_execution(request).await {
                    Ok(reply) => panic!("a cut-off node started {id}: {:?}", reply.into_inner()),
                    Err(status) => refused.push((id, status.code())),
                }
            }
            eprintln!("through the cut-off node: {refused:?}");

            fault(&nodes[victim], &[], &[]);
            wait_converged(&nodes[victim]).await;
            for (id, run_id) in &runs {
                for node in &nodes {
                    replicated(node, id, run_id).await;
                }
            }
            for (id, _) in &refused {
                for node in &nodes {
                    let found = describe(node, id).await;
                    assert_eq!(
                        found.as_ref().err().map(|s| s.code()),
                        Some(tonic::Code::NotFound),
                        "{id} through node {}: {found:?}",
                        node.id
                    );
                }
            }
        },
    )
    .await
}

/// The paused node catches up by snapshot, and the snapshot carries the shards' work, not
/// only their workflows: made leader of every group, it hands out the backlogged and
/// outboxed workflow tasks exactly once and fires a timer armed while it was paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_follower_catches_up_by_snapshot_and_leads_on_its_state() {
    dura_tests::bounded(
        "a_paused_follower_catches_up_by_snapshot_and_leads_on_its_state",
        dura_tests::TEST_BUDGET,
        async {
            let dir = tempfile::tempdir().unwrap();
            // Snapshots every 20 entries: the leaders purge the log a paused node would need.
            let mut nodes = cluster(dir.path(), &["--raft-snapshot-every", "20"]);
            start_all(&mut nodes).await;

            // A timer, long enough to be still pending when the paused node leads (a bound
            // meaning "hung", not a speed). The snapshot the node installs replaces all the
            // state it had, this timer included.
            let mut timer_start = start_request("timer-holder");
            timer_start.task_queue = queue("timer-q");
            nodes[0]
                .client()
                .await
                .unwrap()
                .start_workflow_execution(timer_start)
                .await
                .unwrap();
            let task = next_task(&nodes[0], "timer-q").await;
            respond(&nodes[0], task.task_token, vec![start_timer(TIMER)]).await;

            let paused = 2;
            nodes[paused].pause(true);
            let paused_at = Instant::now();

            // Nothing polls these: their tasks wait in the outbox and the backlogs.
            let mut runs = Vec::new();
            let mut longest = Duration::ZERO;
            for i in 0..150 {
                let id = format!("while-paused-{i}");
                let began = Instant::now();
                let run_id = start(&mut nodes[i % 2].client().await.unwrap(), &id).await;
                longest = longest.max(began.elapsed());
                runs.push((id, run_id));
            }
            eprintln!(
                "DRILL sigstop: with node {} paused the slowest start took {longest:?}",
                nodes[paused].id
            );
            // Paused for 15 s at least, as the drill asks, however fast the starts went.
            tokio::time::sleep(Duration::from_secs(15).saturating_sub(paused_at.elapsed())).await;
            nodes[paused].pause(false);

            let status = wait_converged(&nodes[0]).await;
            for (id, run_id) in &runs {
                replicated(&nodes[paused], id, run_id).await;
            }
            let log = std::fs::read_to_string(&nodes[paused].log).unwrap();
            assert!(
                log.contains("installed a snapshot of the group from its leader"),
                "node {} caught up without a snapshot",
                nodes[paused].id
            );

            let leader = nodes[paused].id;
            for group in 0..status["groups"].as_array().unwrap().len() as u32 {
                transfer_leader(&nodes[0], group, leader);
            }
            let status = cluster_status(&nodes[paused]);
            assert!(
                status["groups"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|g| g["leader"].as_u64() == Some(leader)),
                "{status}"
            );
            assert!(
                !history_types(&nodes[paused], "timer-holder")
                    .await
                    .contains(&EventType::TimerFired),
                "the timer fired before node {leader} led: nothing was proven"
            );

            // Every task handed out once, through the node that was paused.
            let mut handed_out = BTreeSet::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while handed_out.len() < runs.len() {
                if let Some(task) =
                    poll_task(&nodes[paused], "cluster-q", Duration::from_secs(5)).await
                {
                    let id = task.workflow_execution.clone().unwrap().workflow_id;
                    assert!(handed_out.insert(id.clone()), "{id} handed out twice");
                    respond(&nodes[paused], task.task_token, vec![complete_command()]).await;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} of {} tasks handed out",
                    handed_out.len(),
                    runs.len()
                );
            }
            assert_eq!(
                poll_task(&nodes[paused], "cluster-q", Duration::from_secs(3))
                    .await
                    .map(|t| t.workflow_execution),
                None,
                "a task handed out twice"
            );
            for (id, _) in &runs {
                assert_eq!(
                    history_types(&nodes[paused], id).await,
                    [
                        EventType::WorkflowExecutionStarted,
                        EventType::WorkflowTaskScheduled,
                        EventType::WorkflowTaskStarted,
                        EventType::WorkflowTaskCompleted,
                        EventType::WorkflowExecutionCompleted,
                    ],
                    "{id}"
                );
            }

            // The timer fires, armed by the new leader from the state it caught up on.
            let deadline = Instant::now() + TIMER + Duration::from_secs(60);
            while !history_types(&nodes[paused], "timer-holder")
                .await
                .contains(&EventType::TimerFired)
            {
                assert!(Instant::now() < deadline, "the timer never fired");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        },
    )
    .await
}

const TIMER: Duration = Duration::from_secs(60);

fn start_timer(after: Duration) -> WorkflowCommand {
    WorkflowCommand {
        command_type: CommandType::StartTimer as i32,
        attributes: Some(command::Attributes::StartTimerCommandAttributes(
            StartTimerCommandAttributes {
                timer_id: "t".into(),
                start_to_fire_timeout: Some(prost_types::Duration {
                    seconds: after.as_secs() as i64,
                    nanos: 0,
                }),
            },
        )),
        ..Default::default()
    }
}

/// The peak memory (VmHWM) of a follower that was down while `workflows` workflows started
/// in one shard, and caught up by snapshot.
async fn catch_up_peak_memory_kib(workflows: usize) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    // One shard: it holds every workflow.
    let mut nodes = cluster(
        dir.path(),
        &["--raft-snapshot-every", "500", "--shards", "1"],
    );
    start_all(&mut nodes).await;
    nodes[2].kill9();
    let clients = [
        nodes[0].client().await.unwrap(),
        nodes[1].client().await.unwrap(),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..32 {
        let mut client = clients[worker % 2].clone();
        tasks.spawn(async move {
            for i in (worker..workflows).step_by(32) {
                start(&mut client, &format!("memory-{i}")).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    nodes[2].spawn();
    nodes[2].wait_ready().await;
    wait_converged(&nodes[0]).await;
    let log = std::fs::read_to_string(&nodes[2].log).unwrap();
    assert!(log.contains("installed a snapshot of the group from its leader"));
    nodes[2].peak_memory_kib()
}

/// A measurement, not a check (minutes long, so not in the default run): `cargo test
/// --workspace --test drills -- --ignored --nocapture`. Catching up by snapshot streams files,
/// so the follower's peak memory should not grow with the shards' size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn catch_up_memory_does_not_grow_with_the_shards() {
    dura_tests::bounded("catch_up_memory_does_not_grow_with_the_shards", dura_tests::TEST_BUDGET, async {
    for workflows in [1_000, 10_000] {
        let kib = catch_up_peak_memory_kib(workflows).await;
        eprintln!(
            "DRILL memory: a follower catching up after {workflows} workflows peaked at {} MiB",
            kib / 1024
        );
    }
    })
    .await
}
