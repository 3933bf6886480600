//! A real node (start-dev, RocksDB in a temporary directory, gRPC on a loopback port) stopped
//! and started again in-process, with failpoints losing work between two steps that a crash
//! could separate. What the failpoint lost is carried out by the next leadership, from
//! committed state, exactly once.
//!
//! Failpoints are process-wide: each test holds a `fail::FailScenario`, which serializes them.

use std::{net::SocketAddr, path::Path, time::Duration};

use clap::Parser;
use temporalio_protos::temporal::api::{
    common::v1::{WorkflowExecution, WorkflowType},
    enums::v1::{EventType, TaskQueueKind},
    taskqueue::v1::TaskQueue,
    workflowservice::v1::{
        GetWorkflowExecutionHistoryRequest, PollWorkflowTaskQueueRequest,
        PollWorkflowTaskQueueResponse, StartWorkflowExecutionRequest,
        workflow_service_client::WorkflowServiceClient,
    },
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;

use crate::{
    cli::{Cli, Command, ServerCommand},
    config::NodeConfig,
};

/// How long a step may take before the test counts as hung (generous: a loaded machine).
const BOUND: Duration = Duration::from_secs(60);

struct DevNode {
    client: WorkflowServiceClient<Channel>,
    stop: oneshot::Sender<()>,
    served: JoinHandle<anyhow::Result<()>>,
}

impl DevNode {
    async fn start(dir: &Path) -> DevNode {
        let cli = Cli::try_parse_from([
            "dura",
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--db-filename",
            &dir.to_string_lossy(),
        ])
        .unwrap();
        let Command::Server(ServerCommand::StartDev(args)) = cli.command else {
            unreachable!()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let mut config = NodeConfig::from_args(&args).unwrap();
        config.listen = addr;
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(crate::server::run_node(config, listener, async {
            let _ = stopped.await;
        }));
        let deadline = tokio::time::Instant::now() + BOUND;
        let client = loop {
            if let Ok(client) = WorkflowServiceClient::connect(format!("http://{addr}")).await {
                break client;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the node never answered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        DevNode {
            client,
            stop,
            served,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(BOUND, self.served)
            .await
            .expect("the node did not stop")
            .unwrap()
            .unwrap();
    }

    async fn start_workflow(&mut self, workflow_id: &str, queue: &str) {
        self.start_with(StartWorkflowExecutionRequest {
            workflow_id: workflow_id.into(),
            task_queue: task_queue(queue),
            ..Default::default()
        })
        .await
    }

    /// Starts `request` in the default namespace, waiting for the node to have bootstrapped.
    async fn start_with(&mut self, request: StartWorkflowExecutionRequest) {
        let deadline = tokio::time::Instant::now() + BOUND;
        let request = StartWorkflowExecutionRequest {
            namespace: "default".into(),
            workflow_type: Some(WorkflowType {
                name: "Failpoint".into(),
            }),
            request_id: format!("request-{}", request.workflow_id),
            ..request
        };
        // The namespace appears once the node has bootstrapped.
        while let Err(status) = self.client.start_workflow_execution(request.clone()).await {
            assert!(tokio::time::Instant::now() < deadline, "{status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One poll of `queue`, waiting up to `wait` for a task.
    async fn poll(&mut self, queue: &str, wait: Duration) -> PollWorkflowTaskQueueResponse {
        let mut request = tonic::Request::new(PollWorkflowTaskQueueRequest {
            namespace: "default".into(),
            task_queue: task_queue(queue),
            identity: "failpoint-test".into(),
            ..Default::default()
        });
        request.set_timeout(wait);
        match self.client.poll_workflow_task_queue(request).await {
            Ok(reply) => reply.into_inner(),
            Err(status) if status.code() == tonic::Code::DeadlineExceeded => Default::default(),
            // The client's own timer can beat the server's empty answer on a loaded machine;
            // either way the wait ended without a task.
            Err(status) if status.code() == tonic::Code::Cancelled => Default::default(),
            Err(status) => panic!("poll: {status}"),
        }
    }

    /// How many events of `event_type` the workflow's history holds.
    async fn events(&mut self, workflow_id: &str, event_type: EventType) -> usize {
        let history = self
            .client
            .get_workflow_execution_history(GetWorkflowExecutionHistoryRequest {
                namespace: "default".into(),
                execution: Some(WorkflowExecution {
                    workflow_id: workflow_id.into(),
                    run_id: String::new(),
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        history
            .history
            .unwrap_or_default()
            .events
            .iter()
            .filter(|e| e.event_type == event_type as i32)
            .count()
    }
}

fn task_queue(name: &str) -> Option<TaskQueue> {
    Some(TaskQueue {
        name: name.into(),
        kind: TaskQueueKind::Normal as i32,
        ..Default::default()
    })
}

/// "Committed, not yet dispatched": the start's workflow task never reaches the matcher, and
/// the next leadership delivers it from the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_task_whose_dispatch_was_lost_is_delivered_by_the_next_leader() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let mut node = DevNode::start(dir.path()).await;
    fail::cfg("effect-dispatch", "return").unwrap();
    node.start_workflow("lost-dispatch", "fp-dispatch").await;
    // Still losing effects: the start's reaches the leader after its reply, at any moment.
    let polled = node.poll("fp-dispatch", Duration::from_secs(2)).await;
    assert!(polled.task_token.is_empty(), "the dispatch was lost");
    fail::remove("effect-dispatch");
    node.stop().await;

    let mut node = DevNode::start(dir.path()).await;
    let polled = node.poll("fp-dispatch", Duration::from_secs(20)).await;
    assert_eq!(
        polled.workflow_execution.unwrap().workflow_id,
        "lost-dispatch"
    );
    node.stop().await;
    scenario.teardown();
}

/// "Backlog add done, outbox ack pending": the task is in its partition's backlog and still
/// in the outbox; the next leadership indexes it once, not twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlogged_task_whose_ack_was_lost_is_delivered_once() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let mut node = DevNode::start(dir.path()).await;
    fail::cfg("outbox-ack", "return").unwrap();
    let backlogged = backlog_adds();
    node.start_workflow("lost-ack", "fp-ack").await;
    // No poller: the task moves to the backlog after a second, and its ack is lost.
    let deadline = tokio::time::Instant::now() + BOUND;
    while backlog_adds() == backlogged {
        assert!(tokio::time::Instant::now() < deadline, "never backlogged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fail::remove("outbox-ack");
    node.stop().await;

    let mut node = DevNode::start(dir.path()).await;
    let polled = node.poll("fp-ack", Duration::from_secs(20)).await;
    assert_eq!(polled.workflow_execution.unwrap().workflow_id, "lost-ack");
    let again = node.poll("fp-ack", Duration::from_secs(2)).await;
    assert!(again.task_token.is_empty(), "delivered twice: {again:?}");
    assert_eq!(
        node.events("lost-ack", EventType::WorkflowTaskStarted)
            .await,
        1
    );
    node.stop().await;
    scenario.teardown();
}

/// Tasks added to a backlog by this process so far.
fn backlog_adds() -> u64 {
    crate::metrics::TASK_DISPATCH
        .with_label_values(&["backlog"])
        .get()
}

/// "Spill past its look at `taken`, poller taking the task meanwhile": the backlog add then
/// lands after the task was handed out; its indexed copy is refused as stale, and the task
/// is neither handed out again nor left behind, now or after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_taken_while_its_spill_was_on_the_way_is_handed_out_once() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let mut node = DevNode::start(dir.path()).await;
    let (reached, spill_reached) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (reached, released) = (
        std::sync::Mutex::new(reached),
        std::sync::Mutex::new(released),
    );
    // Blocks the spilling task's thread (one of two workers) until the test has polled.
    fail::cfg_callback("spill-before-add", move || {
        let _ = reached.lock().unwrap().send(());
        let _ = released.lock().unwrap().recv_timeout(BOUND);
    })
    .unwrap();
    node.start_workflow("spill-race", "fp-race").await;
    tokio::task::spawn_blocking(move || spill_reached.recv_timeout(BOUND))
        .await
        .unwrap()
        .expect("the spill never started");

    let polled = node.poll("fp-race", Duration::from_secs(30)).await;
    assert_eq!(polled.workflow_execution.unwrap().workflow_id, "spill-race");
    let backlogged = backlog_adds();
    release.send(()).unwrap();
    fail::remove("spill-before-add");
    let deadline = tokio::time::Instant::now() + BOUND;
    while backlog_adds() == backlogged {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the spill never landed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = node.poll("fp-race", Duration::from_secs(3)).await;
    assert!(again.task_token.is_empty(), "handed out twice: {again:?}");
    node.stop().await;

    let mut node = DevNode::start(dir.path()).await;
    let again = node.poll("fp-race", Duration::from_secs(3)).await;
    assert!(
        again.task_token.is_empty(),
        "handed out after a restart: {again:?}"
    );
    assert_eq!(
        node.events("spill-race", EventType::WorkflowTaskStarted)
            .await,
        1
    );
    node.stop().await;
    scenario.teardown();
}

/// "Timer fire refused while still leading": openraft answers `ForwardToLeader` while the
/// leader's lease has lapsed, in the same term. No new leadership arms the timer again, so
/// the service itself must try it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_fire_refused_while_still_leading_is_tried_again() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let mut node = DevNode::start(dir.path()).await;
    fail::cfg("timer-fire-refused", "1*return").unwrap();
    node.start_with(StartWorkflowExecutionRequest {
        workflow_id: "refused-fire".into(),
        task_queue: task_queue("fp-refused"),
        workflow_run_timeout: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    })
    .await;
    let deadline = tokio::time::Instant::now() + BOUND;
    while node
        .events("refused-fire", EventType::WorkflowExecutionTimedOut)
        .await
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run timeout never fired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fail::remove("timer-fire-refused");
    node.stop().await;
    scenario.teardown();
}
