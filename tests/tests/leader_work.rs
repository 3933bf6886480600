//! Work that follows a commit belongs to the shard's leader, not to the request that proposed
//! it: a start whose caller gave up while it was being committed still delivers its first
//! workflow task, without a restart. And that work decides on another shard's state as of
//! now: a parent close policy reaches a child its node sees only through a lagging replica.
//! A signal and a cancellation request one workflow sends another travel from the caller's
//! leader to the target's on another node, and back, once each.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use dura_tests::DevServer;
use temporalio_protos::temporal::api::{
    common::v1::{WorkflowExecution, WorkflowType},
    enums::v1::TaskQueueKind,
    taskqueue::v1::TaskQueue,
    workflowservice::v1::{
        DescribeWorkflowExecutionRequest, PollWorkflowTaskQueueRequest,
        StartWorkflowExecutionRequest,
    },
};

const QUEUE: &str = "abandoned-starts";

fn queue() -> Option<TaskQueue> {
    Some(TaskQueue {
        name: QUEUE.into(),
        kind: TaskQueueKind::Normal as i32,
        ..Default::default()
    })
}

#[tokio::test]
async fn a_start_whose_caller_gave_up_still_delivers_its_task() -> anyhow::Result<()> {
    dura_tests::bounded(
        "a_start_whose_caller_gave_up_still_delivers_its_task",
        dura_tests::TEST_BUDGET,
        async {
            let dir = tempfile::tempdir()?;
            let server = DevServer::start(&dir.path().join("db")).await?;
            let mut client = server.workflow_client().await?;

            // Deadlines from far too short to ample: some calls give up before, some during and some
            // after their entry is committed. The last ones succeed, so there is always something to
            // check.
            let mut abandoned = 0;
            let mut ids = Vec::new();
            for i in 0..60u64 {
                let id = format!("abandoned-{i}");
                let mut request = tonic::Request::new(StartWorkflowExecutionRequest {
                    namespace: "default".into(),
                    workflow_id: id.clone(),
                    workflow_type: Some(WorkflowType {
                        name: "Greet".into(),
                    }),
                    task_queue: queue(),
                    request_id: uuid::Uuid::new_v4().to_string(),
                    ..Default::default()
                });
                let ample = i >= 50;
                request.set_timeout(if ample {
                    Duration::from_secs(30)
                } else {
                    Duration::from_micros(100 * i)
                });
                let answered = client.start_workflow_execution(request).await.is_ok();
                assert!(
                    answered || !ample,
                    "start {id} failed with an ample deadline"
                );
                if !answered {
                    abandoned += 1;
                }
                ids.push(id);
            }
            // The runs that exist are those whose entry was committed, answered or not.
            let mut committed = BTreeSet::new();
            for id in &ids {
                let described = client
                    .describe_workflow_execution(DescribeWorkflowExecutionRequest {
                        namespace: "default".into(),
                        execution: Some(WorkflowExecution {
                            workflow_id: id.clone(),
                            run_id: String::new(),
                        }),
                    })
                    .await;
                if described.is_ok() {
                    committed.insert(id.clone());
                }
            }
            assert!(
                committed.len() >= 10,
                "the ample starts exist: {committed:?}"
            );

            // Every committed run's first workflow task reaches a poller.
            let mut delivered = BTreeSet::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while delivered != committed {
                assert!(
                    Instant::now() < deadline,
                    "tasks never delivered: {:?}",
                    committed.difference(&delivered).collect::<Vec<_>>()
                );
                let mut request = tonic::Request::new(PollWorkflowTaskQueueRequest {
                    namespace: "default".into(),
                    task_queue: queue(),
                    identity: "e2e-worker".into(),
                    ..Default::default()
                });
                request.set_timeout(Duration::from_secs(5));
                let task = client.poll_workflow_task_queue(request).await?.into_inner();
                if let Some(execution) = task.workflow_execution {
                    assert!(
                        delivered.insert(execution.workflow_id.clone()),
                        "{} delivered twice",
                        execution.workflow_id
                    );
                }
            }
            eprintln!(
                "{} of {} starts committed; {abandoned} callers gave up",
                committed.len(),
                ids.len()
            );
            Ok(())
        },
    )
    .await
}

/// `hash(namespace id, workflow id)`, as the nodes route (FNV-1a, `node/src/shard`): the
/// test needs two workflows in shards it chose.
fn shard_of(namespace_id: &str, workflow_id: &str, shards: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in [namespace_id.as_bytes(), b"_", workflow_id.as_bytes()].concat() {
        hash ^= byte as u32;
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % shards + 1
}

/// A ready three-node cluster, and the id of its default namespace (shards hash it).
async fn started_cluster(
    dir: &std::path::Path,
    extra: &[&str],
) -> (Vec<dura_tests::cluster::Node>, String) {
    use temporalio_protos::temporal::api::workflowservice::v1::DescribeNamespaceRequest;

    let mut nodes = dura_tests::cluster::cluster(dir, extra);
    for node in nodes.iter_mut() {
        node.spawn();
    }
    for node in nodes.iter_mut() {
        node.wait_ready().await;
    }
    let namespace_id = nodes[0]
        .client()
        .await
        .unwrap()
        .describe_namespace(DescribeNamespaceRequest {
            namespace: "default".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .namespace_info
        .unwrap()
        .id;
    (nodes, namespace_id)
}

fn id_in_shard(prefix: &str, namespace_id: &str, shard: u32, shards: u32) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|id| shard_of(namespace_id, id, shards) == shard)
        .unwrap()
}

/// The parent's shard is led by node 1, the child's by node 2, whose replication to node 1
/// runs 1.5 s late: node 1 then holds a replica of the child's shard that does not have the
/// child yet when the parent closes. The policy must read the child as its leader has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_close_policy_reaches_a_child_known_only_to_a_lagging_local_replica() {
    use dura_tests::cluster::{
        complete_command, delay_to, describe, history_types, next_task, respond, start_with,
        transfer_leader,
    };
    use temporalio_protos::temporal::api::{
        command::v1::{Command, StartChildWorkflowExecutionCommandAttributes, command},
        enums::v1::{CommandType, EventType, ParentClosePolicy, WorkflowExecutionStatus},
    };

    dura_tests::bounded(
        "a_parent_close_policy_reaches_a_child_known_only_to_a_lagging_local_replica",
        dura_tests::TEST_BUDGET,
        async {
            const SHARDS: u32 = 4;
            let dir = tempfile::tempdir().unwrap();
            let (nodes, namespace_id) =
                started_cluster(dir.path(), &["--enable-fault-injection"]).await;
            // Every call goes through node 3, which the fault leaves alone.
            let via = &nodes[2];
            let (parent_shard, child_shard) = (1, 2);
            let parent_id = id_in_shard("close-policy-parent", &namespace_id, parent_shard, SHARDS);
            let child_id = id_in_shard("close-policy-child", &namespace_id, child_shard, SHARDS);
            transfer_leader(via, parent_shard, 1);
            transfer_leader(via, child_shard, 2);
            delay_to(&nodes[1], &[1], 1500);

            let mut request = dura_tests::cluster::start_request(&parent_id);
            request.task_queue = dura_tests::cluster::queue("close-policy-parents");
            start_with(&via.client().await.unwrap(), request).await;
            let first = next_task(via, "close-policy-parents").await;
            let start_child = Command {
                command_type: CommandType::StartChildWorkflowExecution as i32,
                attributes: Some(
                    command::Attributes::StartChildWorkflowExecutionCommandAttributes(
                        StartChildWorkflowExecutionCommandAttributes {
                            workflow_id: child_id.clone(),
                            workflow_type: Some(WorkflowType {
                                name: "Child".into(),
                            }),
                            task_queue: dura_tests::cluster::queue("close-policy-children"),
                            parent_close_policy: ParentClosePolicy::Terminate as i32,
                            ..Default::default()
                        },
                    ),
                ),
                ..Default::default()
            };
            respond(via, first.task_token, vec![start_child]).await;
            // The child's start, reported to the parent, schedules its next task: the parent
            // completes at once, well within the lag.
            let second = next_task(via, "close-policy-parents").await;
            assert!(
                history_types(via, &parent_id)
                    .await
                    .contains(&EventType::ChildWorkflowExecutionStarted),
                "the parent's second task follows its child's start"
            );
            respond(via, second.task_token, vec![complete_command()]).await;

            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let status = describe(via, &child_id).await.map(|info| info.status);
                if matches!(status, Ok(s) if s == WorkflowExecutionStatus::Terminated as i32) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the child was never terminated by its parent's close policy: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            assert_eq!(
                history_types(via, &child_id).await.last(),
                Some(&EventType::WorkflowExecutionTerminated)
            );
        },
    )
    .await
}

/// The caller's shard is led by node 1, the target's by node 2; every call goes through node 3.
/// The caller's commands reach the target once each, and their outcomes come back to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_and_a_cancel_request_cross_nodes_to_another_workflow_once() {
    use dura_tests::cluster::{
        history_types, next_task, queue, respond, start_request, start_with, transfer_leader,
    };
    use temporalio_protos::temporal::api::{
        command::v1::{
            Command, RequestCancelExternalWorkflowExecutionCommandAttributes,
            SignalExternalWorkflowExecutionCommandAttributes, command,
        },
        enums::v1::{CommandType, EventType},
    };

    dura_tests::bounded(
        "a_signal_and_a_cancel_request_cross_nodes_to_another_workflow_once",
        dura_tests::TEST_BUDGET,
        async {
            const SHARDS: u32 = 4;
            let dir = tempfile::tempdir().unwrap();
            let (nodes, namespace_id) = started_cluster(dir.path(), &[]).await;
            let via = &nodes[2];
            let caller_id = id_in_shard("external-caller", &namespace_id, 1, SHARDS);
            let target_id = id_in_shard("external-target", &namespace_id, 2, SHARDS);
            transfer_leader(via, 1, 1);
            transfer_leader(via, 2, 2);

            for (id, task_queue) in [(&target_id, "external-targets"), (&caller_id, "external-callers")] {
                let mut request = start_request(id);
                request.task_queue = queue(task_queue);
                start_with(&via.client().await.unwrap(), request).await;
            }
            let first = next_task(via, "external-callers").await;
            #[allow(deprecated)] // the SDKs still set the commands' namespace
            let commands = vec![
                Command {
                    command_type: CommandType::SignalExternalWorkflowExecution as i32,
                    attributes: Some(
                        command::Attributes::SignalExternalWorkflowExecutionCommandAttributes(
                            SignalExternalWorkflowExecutionCommandAttributes {
                                namespace: "default".into(),
                                execution: Some(WorkflowExecution {
                                    workflow_id: target_id.clone(),
                                    run_id: String::new(),
                                }),
                                signal_name: "poke".into(),
                                ..Default::default()
                            },
                        ),
                    ),
                    ..Default::default()
                },
                Command {
                    command_type: CommandType::RequestCancelExternalWorkflowExecution as i32,
                    attributes: Some(
                        command::Attributes::RequestCancelExternalWorkflowExecutionCommandAttributes(
                            RequestCancelExternalWorkflowExecutionCommandAttributes {
                                namespace: "default".into(),
                                workflow_id: target_id.clone(),
                                reason: "enough".into(),
                                ..Default::default()
                            },
                        ),
                    ),
                    ..Default::default()
                },
            ];
            respond(via, first.task_token, commands).await;

            let count = |events: &[EventType], t: EventType| events.iter().filter(|e| **e == t).count();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let caller = history_types(via, &caller_id).await;
                let target = history_types(via, &target_id).await;
                let reported = count(&caller, EventType::ExternalWorkflowExecutionSignaled)
                    + count(&caller, EventType::ExternalWorkflowExecutionCancelRequested);
                if reported == 2 {
                    assert_eq!(count(&target, EventType::WorkflowExecutionSignaled), 1, "{target:?}");
                    assert_eq!(count(&target, EventType::WorkflowExecutionCancelRequested), 1, "{target:?}");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "outcomes never reported: caller {caller:?}, target {target:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            // The reports woke the caller.
            next_task(via, "external-callers").await;
        },
    )
    .await
}
