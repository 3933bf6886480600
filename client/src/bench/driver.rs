//! One bench run against one server: the starter (closed or open loop), the workflow and activity
//! pollers acting as a raw worker, the warmup / measure / drain phases and the progress line.
//!
//! A workflow counts as completed when the server answers OK to the RespondWorkflowTaskCompleted
//! that carries CompleteWorkflowExecution: by then the server has durably closed it, and the
//! bench learns it without a long poll per workflow, which would cost the client (sharing the
//! cores with the server) more than the workflow itself.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde::Serialize;
use temporalio_protos::temporal::api::{
    common::v1::{WorkflowExecution, WorkflowType},
    workflowservice::v1::{
        DescribeNamespaceRequest, GetSystemInfoRequest, GetWorkflowExecutionHistoryRequest,
        PollActivityTaskQueueRequest, PollWorkflowTaskQueueRequest, PollWorkflowTaskQueueResponse,
        RespondActivityTaskCompletedRequest, RespondWorkflowTaskCompletedRequest,
        SignalWorkflowExecutionRequest, StartWorkflowExecutionRequest,
        workflow_service_client::WorkflowServiceClient,
    },
};
use tokio::{sync::oneshot, task::JoinSet};
use tonic::transport::{Channel, Endpoint};

use super::{
    procstat::{self, CpuMeter, ProcessUsage},
    stats::{COMPLETION_TIMEOUT, Recorder, Rpc, Summary},
    workload::{self, Workload},
};

type Client = WorkflowServiceClient<Channel>;

/// Pause after a failed RPC, so a down server is not hammered by a hot retry loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// After the window, in-flight workflows get this long to finish before the run ends, so the
/// next run against the same server does not share it with leftovers.
const DRAIN: Duration = Duration::from_secs(10);
/// A closed-loop slot gives up on a workflow after this long and starts another, so one lost
/// completion cannot stall a slot for the rest of the run.
const COMPLETION_WAIT: Duration = Duration::from_secs(60);
/// Deadlines as the SDKs set them. Temporal rejects a long poll without one, and a deadline on
/// every other call keeps a stuck server from stalling the bench silently.
const LONG_POLL_TIMEOUT: Duration = Duration::from_secs(70);
const RPC_TIMEOUT: Duration = Duration::from_secs(10);

fn with_deadline<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Keep this many workflows in flight.
    Closed { concurrency: u32 },
    /// Start this many workflows per second whatever the server's pace.
    Open { rate: f64 },
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// The server's frontends (a cluster's nodes); the connections are spread over them.
    pub addresses: Vec<String>,
    pub namespace: String,
    pub workload: Workload,
    pub load: Load,
    pub warmup: Duration,
    pub duration: Duration,
    pub wf_pollers: u32,
    pub act_pollers: u32,
    pub connections: u32,
    pub server_pid: Option<u32>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunReport {
    pub workload: String,
    pub address: String,
    pub namespace: String,
    pub task_queue: String,
    /// "closed" (fixed concurrency) or "open" (fixed rate).
    pub mode: &'static str,
    pub concurrency: Option<u32>,
    pub rate_wf_s: Option<f64>,
    pub warmup_s: f64,
    #[serde(flatten)]
    pub summary: Summary,
    /// Workflows still open when the drain after the window ran out.
    pub unfinished: u64,
    pub server: Option<ProcessUsage>,
    pub client: ProcessUsage,
}

struct Pending {
    started_at: Instant,
    /// A closed-loop slot waiting to start its next workflow.
    done: Option<oneshot::Sender<()>>,
}

struct Shared {
    namespace: String,
    task_queue: String,
    identity: String,
    workload: Workload,
    recorder: Recorder,
    pending: Mutex<HashMap<String, Pending>>,
    /// Starters stop starting when this turns false (end of the window).
    starting: AtomicBool,
    next_id: AtomicU64,
}

impl Shared {
    async fn call<T>(
        &self,
        rpc: Rpc,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        let begin = Instant::now();
        let result = call.await;
        self.recorder.rpc(rpc, begin.elapsed());
        result
            .map(tonic::Response::into_inner)
            .inspect_err(|status| {
                tracing::debug!(?rpc, %status, "bench RPC failed");
                self.recorder
                    .error(&format!("{:?}", status.code()), status.message());
            })
    }

    /// Starts one workflow (and sends its signals); returns its id once the server accepted it.
    async fn start_workflow(
        &self,
        client: &mut Client,
        done: Option<oneshot::Sender<()>>,
    ) -> Option<String> {
        let workflow_id = format!(
            "{}-{}",
            self.task_queue,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        // Registered before the RPC: the worker may complete the workflow before Start returns.
        let pending = Pending {
            started_at: Instant::now(),
            done,
        };
        self.pending
            .lock()
            .unwrap()
            .insert(workflow_id.clone(), pending);
        let request = StartWorkflowExecutionRequest {
            namespace: self.namespace.clone(),
            workflow_id: workflow_id.clone(),
            workflow_type: Some(WorkflowType {
                name: workload::WORKFLOW_TYPE.into(),
            }),
            task_queue: Some(workload::task_queue(&self.task_queue)),
            input: Some(workload::payload()),
            identity: self.identity.clone(),
            request_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        };
        let run_id = match self
            .call(
                Rpc::StartWorkflowExecution,
                client.start_workflow_execution(with_deadline(request, RPC_TIMEOUT)),
            )
            .await
        {
            Ok(response) => response.run_id,
            Err(_) => {
                self.pending.lock().unwrap().remove(&workflow_id);
                return None;
            }
        };
        self.recorder.workflow_started();
        for _ in 0..self.workload.signals_per_workflow() {
            let request = SignalWorkflowExecutionRequest {
                namespace: self.namespace.clone(),
                workflow_execution: Some(WorkflowExecution {
                    workflow_id: workflow_id.clone(),
                    run_id: run_id.clone(),
                }),
                signal_name: workload::SIGNAL_NAME.into(),
                input: Some(workload::payload()),
                identity: self.identity.clone(),
                request_id: uuid::Uuid::new_v4().to_string(),
                ..Default::default()
            };
            // A lost signal leaves the workflow open; the error count and `unfinished` show it.
            let _ = self
                .call(
                    Rpc::SignalWorkflowExecution,
                    client.signal_workflow_execution(with_deadline(request, RPC_TIMEOUT)),
                )
                .await;
        }
        Some(workflow_id)
    }

    fn workflow_completed(&self, workflow_id: &str, events: u64) {
        let Some(pending) = self.pending.lock().unwrap().remove(workflow_id) else {
            return; // A closed-loop slot already gave up on it.
        };
        self.recorder
            .workflow_completed(pending.started_at.elapsed(), events);
        if let Some(done) = pending.done {
            let _ = done.send(());
        }
    }

    fn in_flight(&self) -> usize {
        self.pending.lock().unwrap().len()
    }

    async fn closed_loop_slot(&self, mut client: Client) {
        while self.starting.load(Ordering::Relaxed) {
            let (done, completed) = oneshot::channel();
            let Some(workflow_id) = self.start_workflow(&mut client, Some(done)).await else {
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            };
            if tokio::time::timeout(COMPLETION_WAIT, completed)
                .await
                .is_err()
            {
                self.pending.lock().unwrap().remove(&workflow_id);
                self.recorder.error(
                    COMPLETION_TIMEOUT,
                    &format!("no completion within {COMPLETION_WAIT:?}"),
                );
            }
        }
    }

    async fn open_loop(self: Arc<Self>, clients: Vec<Client>, rate: f64) {
        // The default MissedTickBehavior (burst) keeps the schedule fixed: a slow start does not
        // lower the offered rate, which is the point of an open loop.
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        let mut starts = JoinSet::new();
        for mut client in clients.into_iter().cycle() {
            ticker.tick().await;
            if !self.starting.load(Ordering::Relaxed) {
                break;
            }
            let shared = self.clone();
            starts.spawn(async move { shared.start_workflow(&mut client, None).await });
            while starts.try_join_next().is_some() {}
        }
        while starts.join_next().await.is_some() {}
    }

    async fn workflow_poller(&self, mut client: Client) {
        loop {
            let request = PollWorkflowTaskQueueRequest {
                namespace: self.namespace.clone(),
                task_queue: Some(workload::task_queue(&self.task_queue)),
                identity: self.identity.clone(),
                ..Default::default()
            };
            match self
                .call(
                    Rpc::PollWorkflowTaskQueue,
                    client.poll_workflow_task_queue(with_deadline(request, LONG_POLL_TIMEOUT)),
                )
                .await
            {
                // An empty answer is the long poll expiring with no task.
                Ok(task) if task.task_token.is_empty() => {}
                Ok(task) => self.workflow_task(&mut client, task).await,
                Err(_) => tokio::time::sleep(ERROR_BACKOFF).await,
            }
        }
    }

    async fn workflow_task(&self, client: &mut Client, task: PollWorkflowTaskQueueResponse) {
        let execution = task.workflow_execution.unwrap_or_default();
        let mut events = task.history.map(|h| h.events).unwrap_or_default();
        let mut page = task.next_page_token;
        while !page.is_empty() {
            let request = GetWorkflowExecutionHistoryRequest {
                namespace: self.namespace.clone(),
                execution: Some(execution.clone()),
                next_page_token: page,
                ..Default::default()
            };
            // Without the full history no decision is safe; the task times out and is retried.
            let Ok(response) = self
                .call(
                    Rpc::GetWorkflowExecutionHistory,
                    client.get_workflow_execution_history(with_deadline(request, RPC_TIMEOUT)),
                )
                .await
            else {
                return;
            };
            events.extend(response.history.map(|h| h.events).unwrap_or_default());
            page = response.next_page_token;
        }
        let commands = self.workload.decide(&events, &self.task_queue);
        let completes = workload::completes_workflow(&commands);
        let request = RespondWorkflowTaskCompletedRequest {
            task_token: task.task_token,
            commands,
            identity: self.identity.clone(),
            namespace: self.namespace.clone(),
            ..Default::default()
        };
        let responded = self
            .call(
                Rpc::RespondWorkflowTaskCompleted,
                client.respond_workflow_task_completed(with_deadline(request, RPC_TIMEOUT)),
            )
            .await;
        if completes && responded.is_ok() {
            // The history ended at WorkflowTaskStarted; completing adds WorkflowTaskCompleted
            // and WorkflowExecutionCompleted.
            let closed_length = events.last().map_or(0, |e| e.event_id) as u64 + 2;
            self.workflow_completed(&execution.workflow_id, closed_length);
        }
    }

    async fn activity_poller(&self, mut client: Client) {
        loop {
            let request = PollActivityTaskQueueRequest {
                namespace: self.namespace.clone(),
                task_queue: Some(workload::task_queue(&self.task_queue)),
                identity: self.identity.clone(),
                ..Default::default()
            };
            match self
                .call(
                    Rpc::PollActivityTaskQueue,
                    client.poll_activity_task_queue(with_deadline(request, LONG_POLL_TIMEOUT)),
                )
                .await
            {
                Ok(task) if task.task_token.is_empty() => {}
                Ok(task) => {
                    let request = RespondActivityTaskCompletedRequest {
                        task_token: task.task_token,
                        result: task.input,
                        identity: self.identity.clone(),
                        namespace: self.namespace.clone(),
                        ..Default::default()
                    };
                    // A failed answer is already counted; the activity times out server-side.
                    let _ = self
                        .call(
                            Rpc::RespondActivityTaskCompleted,
                            client.respond_activity_task_completed(with_deadline(
                                request,
                                RPC_TIMEOUT,
                            )),
                        )
                        .await;
                }
                Err(_) => tokio::time::sleep(ERROR_BACKOFF).await,
            }
        }
    }

    /// Prints a progress line on stderr every second until the run ends.
    async fn progress(&self, label: &str, begin: Instant, warmup: Duration, duration: Duration) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let mut last_completed = 0;
        loop {
            tick.tick().await;
            let elapsed = begin.elapsed();
            let phase = if elapsed < warmup {
                "warmup"
            } else if elapsed < warmup + duration {
                "measure"
            } else {
                "drain"
            };
            let (completed, errors) = self.recorder.progress();
            eprintln!(
                "bench {label} [{phase} {:>3}s] completed {completed} (+{}/s), in flight {}, errors {errors}",
                elapsed.as_secs(),
                completed - last_completed,
                self.in_flight()
            );
            last_completed = completed;
        }
    }
}

fn endpoint_uri(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}

async fn connect(address: &str, connections: u32) -> anyhow::Result<Vec<Client>> {
    let endpoint = Endpoint::from_shared(endpoint_uri(address))
        .with_context(|| format!("bad address {address:?}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    let mut clients = Vec::new();
    for _ in 0..connections {
        // Each connect() is its own HTTP/2 connection, so the load spreads over several.
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("connecting to {address}"))?;
        clients.push(WorkflowServiceClient::new(channel).max_decoding_message_size(64 << 20));
    }
    Ok(clients)
}

/// Whether the server at `address` serves `namespace`: the readiness probe for servers the
/// bench starts, and the early, clear failure for a wrong address or namespace.
pub async fn probe(address: &str, namespace: &str) -> anyhow::Result<()> {
    let mut client = connect(address, 1).await?.remove(0);
    client
        .get_system_info(GetSystemInfoRequest {})
        .await
        .with_context(|| format!("GetSystemInfo on {address}"))?;
    let request = DescribeNamespaceRequest {
        namespace: namespace.to_string(),
        ..Default::default()
    };
    client
        .describe_namespace(request)
        .await
        .with_context(|| format!("namespace {namespace:?} on {address}"))?;
    Ok(())
}

pub async fn run(plan: &Plan) -> anyhow::Result<RunReport> {
    if plan.duration.is_zero() {
        bail!("--duration must be positive");
    }
    if let Some(pid) = plan.server_pid {
        // Checked now rather than when the window opens, after the warmup was spent.
        procstat::cpu_time(&pid.to_string())
            .with_context(|| format!("--server-pid {pid}: no such process to measure"))?;
    }
    let mut clients = Vec::new();
    for (i, address) in plan.addresses.iter().enumerate() {
        probe(address, &plan.namespace).await?;
        // Connection k goes to address k mod n.
        let share = (plan.connections as usize)
            .saturating_sub(i)
            .div_ceil(plan.addresses.len());
        clients.extend(connect(address, share.max(1) as u32).await?);
    }
    // A queue of its own, so leftovers of an earlier run never reach this run's worker.
    let task_queue = format!("bench-{}", uuid::Uuid::new_v4());
    let shared = Arc::new(Shared {
        namespace: plan.namespace.clone(),
        task_queue: task_queue.clone(),
        identity: format!("dura-bench-{}", std::process::id()),
        workload: plan.workload,
        recorder: Recorder::default(),
        pending: Mutex::default(),
        starting: AtomicBool::new(true),
        next_id: AtomicU64::new(0),
    });
    let mut clients_rr = clients.iter().cloned().cycle();
    let mut tasks = JoinSet::new();
    for _ in 0..plan.wf_pollers {
        let (shared, client) = (shared.clone(), clients_rr.next().expect("cycle"));
        tasks.spawn(async move { shared.workflow_poller(client).await });
    }
    for _ in 0..plan.act_pollers {
        let (shared, client) = (shared.clone(), clients_rr.next().expect("cycle"));
        tasks.spawn(async move { shared.activity_poller(client).await });
    }
    match plan.load {
        Load::Closed { concurrency } => {
            for _ in 0..concurrency {
                let (shared, client) = (shared.clone(), clients_rr.next().expect("cycle"));
                tasks.spawn(async move { shared.closed_loop_slot(client).await });
            }
        }
        Load::Open { rate } => {
            tasks.spawn(shared.clone().open_loop(clients.clone(), rate));
        }
    }

    let label = plan.workload.label();
    let begin = Instant::now();
    let progress = {
        let (shared, label, warmup, duration) =
            (shared.clone(), label.clone(), plan.warmup, plan.duration);
        async move { shared.progress(&label, begin, warmup, duration).await }
    };
    tasks.spawn(progress);
    tokio::time::sleep(plan.warmup).await;

    let server_meter = plan
        .server_pid
        .map(|pid| CpuMeter::start(&pid.to_string()))
        .transpose()?;
    let client_meter = CpuMeter::start("self")?;
    shared.recorder.set_recording(true);
    let window_start = Instant::now();
    tokio::time::sleep(plan.duration).await;
    shared.recorder.set_recording(false);
    let window = window_start.elapsed();
    let server = server_meter.map(|m| m.finish(window)).transpose()?;
    let client = client_meter.finish(window)?;

    shared.starting.store(false, Ordering::SeqCst);
    let drain_end = Instant::now() + DRAIN;
    while shared.in_flight() > 0 && Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let unfinished = shared.in_flight() as u64;
    tasks.shutdown().await;

    let (mode, concurrency, rate_wf_s) = match plan.load {
        Load::Closed { concurrency } => ("closed", Some(concurrency), None),
        Load::Open { rate } => ("open", None, Some(rate)),
    };
    Ok(RunReport {
        workload: label,
        address: plan.addresses.join(","),
        namespace: plan.namespace.clone(),
        task_queue,
        mode,
        concurrency,
        rate_wf_s,
        warmup_s: plan.warmup.as_secs_f64(),
        summary: shared.recorder.summary(window),
        unfinished,
        server,
        client,
    })
}
