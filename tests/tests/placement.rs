//! Four real nodes, three replicas per shard: each node holds only some shards, and still
//! serves every call — a call about a workflow whose shard it does not hold is handed to a
//! node that does, a poll to the node leading the queue's partition wherever that is, and a
//! listing reads the shards it lacks from their replicas. Losing one node loses nothing.

use std::collections::BTreeSet;

use dura_tests::cluster::{
    Node, cluster_of, cluster_status, described, reachable, replicated, retrying, start,
    workflow_task_across_nodes,
};
use temporalio_protos::temporal::api::workflowservice::v1::CountWorkflowExecutionsRequest;

/// How many workflows of the namespace `node` counts.
async fn count(node: &Node) -> i64 {
    let client = node.client().await.unwrap();
    retrying(&format!("count through node {}", node.id), || {
        let mut client = client.clone();
        async move {
            client
                .count_workflow_executions(CountWorkflowExecutionsRequest {
                    namespace: "default".into(),
                    query: String::new(),
                })
                .await
        }
    })
    .await
    .unwrap_or_else(|e| panic!("count through node {}: {e}", node.id))
    .into_inner()
    .count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_serves_every_shard_with_fewer_replicas_than_members() {
    dura_tests::bounded(
        "every_node_serves_every_shard_with_fewer_replicas_than_members",
        dura_tests::TEST_BUDGET,
        async {
            let dir = tempfile::tempdir().unwrap();
            let mut nodes = cluster_of(4, dir.path(), &["--shards", "8"]);
            for node in nodes.iter_mut() {
                node.spawn();
            }
            for node in nodes.iter_mut() {
                node.wait_ready().await;
            }

            // The metadata group is on every node; each shard on three, every node holding six.
            let status = cluster_status(&nodes[3]);
            assert_eq!(reachable(&status), [1, 2, 3, 4]);
            let groups = status["groups"].as_array().unwrap();
            assert_eq!(groups.len(), 9, "{status}");
            assert_eq!(groups[0]["voters"], serde_json::json!([1, 2, 3, 4]));
            let mut held = [0; 4];
            for g in &groups[1..] {
                let voters: BTreeSet<u64> = g["voters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect();
                assert_eq!(voters.len(), 3, "{g}");
                for v in voters {
                    held[v as usize - 1] += 1;
                }
            }
            assert_eq!(held, [6; 4]);

            // Leaders spread (9 groups over 4 nodes: at most 3 each) before the calls below, so no
            // partition's leadership, and the pollers its matcher knows, moves in the middle of them.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                let status = cluster_status(&nodes[0]);
                let mut led = [0; 4];
                for g in status["groups"].as_array().unwrap() {
                    if let Some(leader) = g["leader"].as_u64() {
                        led[leader as usize - 1] += 1;
                    }
                }
                if led.iter().sum::<usize>() == 9 && led.iter().all(|n| *n <= 3) {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "leaders never spread: {led:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }

            // Started through one node, read through every other: eight workflows cover the shards,
            // so each node is asked about workflows whose shard it does not hold.
            let mut runs = Vec::new();
            for i in 0..8 {
                let id = format!("placed-{i}");
                let run_id = start(&mut nodes[i % 4].client().await.unwrap(), &id).await;
                for node in &nodes {
                    described(node, &id, &run_id).await;
                }
                runs.push((id, run_id));
            }
            // Polled and completed through nodes that may hold neither the workflow's shard nor
            // the queue's partition.
            for i in 0..8 {
                let order = [&nodes[i % 4], &nodes[(i + 1) % 4], &nodes[(i + 2) % 4]];
                workflow_task_across_nodes(order, &format!("placed-task-{i}"), &format!("pq-{i}"))
                    .await;
            }
            // A listing gathers every shard, held here or not.
            for node in &nodes {
                assert_eq!(count(node).await, 16, "through node {}", node.id);
            }

            // Every shard keeps two of its three replicas when one node dies.
            nodes[1].kill9();
            let survivors = [0, 2, 3];
            for i in 0..8 {
                let id = format!("after-kill-{i}");
                let run_id = start(&mut nodes[survivors[i % 3]].client().await.unwrap(), &id).await;
                runs.push((id, run_id));
            }
            for (id, run_id) in &runs {
                for i in survivors {
                    replicated(&nodes[i], id, run_id).await;
                }
            }
            nodes[1].spawn();
            nodes[1].wait_ready().await;
            for (id, run_id) in &runs {
                replicated(&nodes[1], id, run_id).await;
            }
            assert_eq!(count(&nodes[1]).await, 24);
        },
    )
    .await
}
