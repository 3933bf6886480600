//! Calls this node hands to another: a task-queue poll (and a query, which rides on a
//! workflow task queue) is served by the node leading the queue's partition shard, whose
//! matcher holds the queue's tasks; a query's answer goes to the node waiting for it. The call
//! travels as the client made it, with its deadline, to that node's peer port (its address in
//! the metadata group's membership, over the cluster's mutual TLS when it has one), and its
//! answer — success or status — comes back unchanged.
//!
//! Builds before this one served forwarded calls on their client port only. During a rolling
//! upgrade of a plaintext cluster, a node whose peer port answers a forwarded call
//! `UNIMPLEMENTED` is reached on its registered client port for a while; the call that found
//! out fails `UNAVAILABLE`, which clients retry.
//!
//! In a cluster placing fewer replicas than members, a call about one workflow arriving at a
//! node that holds no replica of its shard is handed to one that does ([`Hop::Shard`]).
//!
//! A forwarded call carries [`FORWARDED`] saying which hop it made; a call is handed on at
//! most once per kind of hop and a queue hop is served where it lands, so two nodes that
//! disagree for a moment about a leader cannot pass a call back and forth.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use dura_raft_store::RaftStore;
use dura_tls::ClientTls;
use temporalio_protos::temporal::api::workflowservice::v1::{
    self as pb, workflow_service_client::WorkflowServiceClient,
};
use tonic::{Code, transport::Channel};

use crate::{
    error::{ApiError, ApiResult},
    namespace::NamespaceRegistry,
};

/// The header marking a call another node forwarded.
pub const FORWARDED: &str = "dura-forwarded";
const MAX_MESSAGE_SIZE: usize = 128 * 1024 * 1024;

/// Why a call reached this node from another, as its [`FORWARDED`] header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// A client's own call.
    Direct,
    /// Handed to a node holding the workflow's shard, which serves it and may still hand a
    /// task-queue part of it (a query) to the queue's node.
    Shard,
    /// Handed to the node leading a task queue's partition or waiting for a query's answer:
    /// served where it lands. (Earlier builds marked every forwarded call so.)
    Queue,
}

impl Hop {
    pub fn of<T>(request: &tonic::Request<T>) -> Hop {
        match request.metadata().get(FORWARDED) {
            None => Hop::Direct,
            Some(v) if v.as_bytes() == SHARD_HOP.as_bytes() => Hop::Shard,
            Some(_) => Hop::Queue,
        }
    }
}

/// The [`FORWARDED`] value of a [`Hop::Shard`] call; anything else means [`Hop::Queue`].
const SHARD_HOP: &str = "shard";

/// How long a node found running an earlier build is reached on its client port.
const EARLIER_BUILD_FOR: Duration = Duration::from_secs(60);

/// One method per forwarded RPC: the call goes to `node` with the caller's deadline, marked
/// as a `$hop` hop, and comes back as that node answered it.
macro_rules! forwarded_rpcs {
    ($hop:ident; $($name:ident: $rpc:ident($req:ident) -> $resp:ident;)*) => {$(
        pub async fn $name(
            &self,
            node: u64,
            req: pb::$req,
            timeout: Option<Duration>,
        ) -> ApiResult<pb::$resp> {
            let (mut client, port) = self.client(node)?;
            match client.$rpc(Self::request(req, timeout, Hop::$hop)).await {
                Ok(response) => Ok(response.into_inner()),
                Err(status) => Err(self.failed(node, port, status)),
            }
        }
    )*};
}

/// Which of a node's ports a forwarded call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port {
    Peer,
    /// An earlier build's, since the instant it was found out.
    Client(Instant),
}

fn workflow_client(
    node: u64,
    address: &str,
    tls: Option<&ClientTls>,
) -> ApiResult<WorkflowServiceClient<Channel>> {
    let channel = dura_tls::lazy_channel(address, tls)
        .map_err(|e| ApiError::Internal(format!("node {node}'s address {address:?}: {e}")))?;
    Ok(WorkflowServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE))
}

pub struct Forwarder {
    store: RaftStore,
    namespaces: NamespaceRegistry,
    /// The cluster's mutual TLS for peer ports (`None`: a plaintext cluster).
    tls: Option<ClientTls>,
    clients: Mutex<HashMap<u64, (WorkflowServiceClient<Channel>, Port)>>,
}

impl Forwarder {
    pub fn new(store: RaftStore, namespaces: NamespaceRegistry, tls: Option<ClientTls>) -> Self {
        Forwarder {
            store,
            namespaces,
            tls,
            clients: Mutex::default(),
        }
    }

    fn client(&self, node: u64) -> ApiResult<(WorkflowServiceClient<Channel>, Port)> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        match clients.get(&node) {
            Some((_, Port::Client(since))) if since.elapsed() >= EARLIER_BUILD_FOR => {
                clients.remove(&node);
            }
            Some(known) => return Ok(known.clone()),
            None => {}
        }
        let address = self.store.peer_addresses().remove(&node).ok_or_else(|| {
            ApiError::Unavailable(format!("node {node} is not a member of the cluster"))
        })?;
        let client = workflow_client(node, &address, self.tls.as_ref())?;
        clients.insert(node, (client.clone(), Port::Peer));
        Ok((client, Port::Peer))
    }

    /// A forwarded call's failure as this node answers it. A plaintext peer port that serves
    /// no WorkflowService is an earlier build's: its client port is used for a while.
    fn failed(&self, node: u64, port: Port, status: tonic::Status) -> ApiError {
        if port != Port::Peer || status.code() != Code::Unimplemented || self.tls.is_some() {
            return ApiError::Forwarded(status);
        }
        let address = match self.namespaces.node_client_address(node) {
            Ok(Some(address)) => address,
            _ => return ApiError::Forwarded(status),
        };
        match workflow_client(node, &address, None) {
            Ok(client) => {
                tracing::info!(node, %address, "node runs an earlier build; forwarding to its client port");
                let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
                clients.insert(node, (client, Port::Client(Instant::now())));
                ApiError::Unavailable(format!(
                    "node {node} runs an earlier build; retry (calls now go to its client port)"
                ))
            }
            Err(e) => e,
        }
    }

    fn request<T>(message: T, timeout: Option<Duration>, hop: Hop) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        let value = match hop {
            Hop::Shard => SHARD_HOP,
            Hop::Direct | Hop::Queue => "1",
        };
        request.metadata_mut().insert(
            FORWARDED,
            tonic::metadata::MetadataValue::from_static(value),
        );
        request
    }

    forwarded_rpcs! { Queue;
        poll_workflow_task: poll_workflow_task_queue(PollWorkflowTaskQueueRequest) -> PollWorkflowTaskQueueResponse;
        poll_activity_task: poll_activity_task_queue(PollActivityTaskQueueRequest) -> PollActivityTaskQueueResponse;
        query: query_workflow(QueryWorkflowRequest) -> QueryWorkflowResponse;
        respond_query: respond_query_task_completed(RespondQueryTaskCompletedRequest) -> RespondQueryTaskCompletedResponse;
        describe_task_queue: describe_task_queue(DescribeTaskQueueRequest) -> DescribeTaskQueueResponse;
        shutdown_worker: shutdown_worker(ShutdownWorkerRequest) -> ShutdownWorkerResponse;
    }

    // Calls about one workflow, to a node holding its shard.
    forwarded_rpcs! { Shard;
        start: start_workflow_execution(StartWorkflowExecutionRequest) -> StartWorkflowExecutionResponse;
        signal_with_start: signal_with_start_workflow_execution(SignalWithStartWorkflowExecutionRequest) -> SignalWithStartWorkflowExecutionResponse;
        signal: signal_workflow_execution(SignalWorkflowExecutionRequest) -> SignalWorkflowExecutionResponse;
        terminate: terminate_workflow_execution(TerminateWorkflowExecutionRequest) -> TerminateWorkflowExecutionResponse;
        request_cancel: request_cancel_workflow_execution(RequestCancelWorkflowExecutionRequest) -> RequestCancelWorkflowExecutionResponse;
        complete_workflow_task: respond_workflow_task_completed(RespondWorkflowTaskCompletedRequest) -> RespondWorkflowTaskCompletedResponse;
        fail_workflow_task: respond_workflow_task_failed(RespondWorkflowTaskFailedRequest) -> RespondWorkflowTaskFailedResponse;
        complete_activity: respond_activity_task_completed(RespondActivityTaskCompletedRequest) -> RespondActivityTaskCompletedResponse;
        complete_activity_by_id: respond_activity_task_completed_by_id(RespondActivityTaskCompletedByIdRequest) -> RespondActivityTaskCompletedByIdResponse;
        fail_activity: respond_activity_task_failed(RespondActivityTaskFailedRequest) -> RespondActivityTaskFailedResponse;
        fail_activity_by_id: respond_activity_task_failed_by_id(RespondActivityTaskFailedByIdRequest) -> RespondActivityTaskFailedByIdResponse;
        cancel_activity: respond_activity_task_canceled(RespondActivityTaskCanceledRequest) -> RespondActivityTaskCanceledResponse;
        cancel_activity_by_id: respond_activity_task_canceled_by_id(RespondActivityTaskCanceledByIdRequest) -> RespondActivityTaskCanceledByIdResponse;
        heartbeat: record_activity_task_heartbeat(RecordActivityTaskHeartbeatRequest) -> RecordActivityTaskHeartbeatResponse;
        heartbeat_by_id: record_activity_task_heartbeat_by_id(RecordActivityTaskHeartbeatByIdRequest) -> RecordActivityTaskHeartbeatByIdResponse;
        history: get_workflow_execution_history(GetWorkflowExecutionHistoryRequest) -> GetWorkflowExecutionHistoryResponse;
        history_reverse: get_workflow_execution_history_reverse(GetWorkflowExecutionHistoryReverseRequest) -> GetWorkflowExecutionHistoryReverseResponse;
        describe: describe_workflow_execution(DescribeWorkflowExecutionRequest) -> DescribeWorkflowExecutionResponse;
        update: update_workflow_execution(UpdateWorkflowExecutionRequest) -> UpdateWorkflowExecutionResponse;
        poll_update: poll_workflow_execution_update(PollWorkflowExecutionUpdateRequest) -> PollWorkflowExecutionUpdateResponse;
        create_schedule: create_schedule(CreateScheduleRequest) -> CreateScheduleResponse;
        describe_schedule: describe_schedule(DescribeScheduleRequest) -> DescribeScheduleResponse;
        patch_schedule: patch_schedule(PatchScheduleRequest) -> PatchScheduleResponse;
        delete_schedule: delete_schedule(DeleteScheduleRequest) -> DeleteScheduleResponse;
        query_on_shard: query_workflow(QueryWorkflowRequest) -> QueryWorkflowResponse;
    }
}
