//! A three-node cluster of real `dura server start` processes on loopback: writes through any
//! node reach every replica, the loss of a node (SIGKILL) costs clients a short retried
//! UNAVAILABLE and nothing acknowledged, and a restarted node catches up.
//!
//! A workflow task also travels across nodes: started through one node, polled through
//! another (forwarded to the leader of the queue's partition), completed through a third.

use std::time::{Duration, Instant};

use dura_tests::cluster::{
    Node, cluster, cluster_status, described, poll_task, reachable, replicated, start,
    transfer_leader, workflow_task_across_nodes,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_node_survive_a_sigkilled_node() {
    dura_tests::bounded(
        "writes_through_any_node_survive_a_sigkilled_node",
        dura_tests::TEST_BUDGET,
        async {
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
                workflow_task_across_nodes(order, &format!("roundtrip-{i}"), &format!("q-{i}"))
                    .await;
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
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_another_cluster_refuses_to_start() {
    dura_tests::bounded(
        "a_data_directory_of_another_cluster_refuses_to_start",
        dura_tests::TEST_BUDGET,
        async {
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
            set(&mut alone.args, "--replication", "1");
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
        },
    )
    .await
}

/// A poll waiting while its queue's partition changes leader follows the partition: it gets
/// the task started afterwards. Before, a poll that reached a node not (or no longer) leading
/// the partition — the balancer moves leaders right after a cluster forms — waited out its
/// whole deadline there, where no task ever arrives, and an SDK worker with one such poller
/// stalled for a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_poll_follows_its_partition_to_the_new_leader() {
    dura_tests::bounded(
        "a_waiting_poll_follows_its_partition_to_the_new_leader",
        dura_tests::TEST_BUDGET,
        async {
            let dir = tempfile::tempdir().unwrap();
            let mut nodes = cluster(dir.path(), &[]);
            for node in nodes.iter_mut() {
                node.spawn();
            }
            for node in nodes.iter_mut() {
                node.wait_ready().await;
            }
            let poll = poll_task(&nodes[0], "moving-queue", Duration::from_secs(120));
            let moved_then_started = async {
                // The poll is waiting; every shard (so the queue's partition too) moves.
                tokio::time::sleep(Duration::from_secs(1)).await;
                for group in 1..=4 {
                    let status = cluster_status(&nodes[1]);
                    let leader = status["groups"][group]["leader"].as_u64().unwrap_or(1);
                    transfer_leader(&nodes[1], group as u32, leader % 3 + 1);
                }
                let mut request = dura_tests::cluster::start_request("follows-partition");
                request.task_queue = dura_tests::cluster::queue("moving-queue");
                dura_tests::cluster::start_with(&nodes[2].client().await.unwrap(), request).await;
            };
            let (task, ()) = tokio::join!(poll, moved_then_started);
            let task = task.expect("the waiting poll got the task started after the move");
            assert_eq!(
                task.workflow_execution.unwrap().workflow_id,
                "follows-partition"
            );
        },
    )
    .await
}
