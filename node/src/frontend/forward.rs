//! Calls this node hands to another: a task-queue poll (and a query, which rides on a
//! workflow task queue) is served by the node leading the queue's partition shard, whose
//! matcher holds the queue's tasks; a query's answer goes to the node waiting for it. The call travels as the
//! client made it, with its deadline, to that node's client port (as registered in the
//! metadata group), and its answer — success or status — comes back unchanged.
//!
//! A forwarded call carries [`FORWARDED`] and is always served where it lands, so two nodes
//! that disagree for a moment about a leader cannot pass a call back and forth.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use temporalio_protos::temporal::api::workflowservice::v1::{
    self as pb, workflow_service_client::WorkflowServiceClient,
};
use tonic::transport::{Channel, Endpoint};

use crate::{
    error::{ApiError, ApiResult},
    namespace::NamespaceRegistry,
};

/// The header marking a call another node forwarded.
pub const FORWARDED: &str = "dura-forwarded";
const MAX_MESSAGE_SIZE: usize = 128 * 1024 * 1024;

/// One method per forwarded RPC: the call goes to `node`'s client port with the caller's
/// deadline and comes back as that node answered it.
macro_rules! forwarded_rpcs {
    ($($name:ident: $rpc:ident($req:ident) -> $resp:ident;)*) => {$(
        pub async fn $name(
            &self,
            node: u64,
            req: pb::$req,
            timeout: Option<Duration>,
        ) -> ApiResult<pb::$resp> {
            let mut client = self.client(node)?;
            Ok(client
                .$rpc(Self::request(req, timeout))
                .await
                .map_err(ApiError::Forwarded)?
                .into_inner())
        }
    )*};
}

pub struct Forwarder {
    namespaces: NamespaceRegistry,
    clients: Mutex<HashMap<u64, WorkflowServiceClient<Channel>>>,
}

impl Forwarder {
    pub fn new(namespaces: NamespaceRegistry) -> Self {
        Forwarder {
            namespaces,
            clients: Mutex::default(),
        }
    }

    fn client(&self, node: u64) -> ApiResult<WorkflowServiceClient<Channel>> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&node) {
            return Ok(client.clone());
        }
        let address = self.namespaces.node_client_address(node)?.ok_or_else(|| {
            ApiError::Unavailable(format!("node {node} has not registered its address yet"))
        })?;
        let channel = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| ApiError::Internal(format!("node {node}'s address {address:?}: {e}")))?
            .tcp_nodelay(true)
            .connect_lazy();
        let client = WorkflowServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        clients.insert(node, client.clone());
        Ok(client)
    }

    fn request<T>(message: T, timeout: Option<Duration>) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        request
            .metadata_mut()
            .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
        request
    }

    forwarded_rpcs! {
        poll_workflow_task: poll_workflow_task_queue(PollWorkflowTaskQueueRequest) -> PollWorkflowTaskQueueResponse;
        poll_activity_task: poll_activity_task_queue(PollActivityTaskQueueRequest) -> PollActivityTaskQueueResponse;
        query: query_workflow(QueryWorkflowRequest) -> QueryWorkflowResponse;
        respond_query: respond_query_task_completed(RespondQueryTaskCompletedRequest) -> RespondQueryTaskCompletedResponse;
        describe_task_queue: describe_task_queue(DescribeTaskQueueRequest) -> DescribeTaskQueueResponse;
        shutdown_worker: shutdown_worker(ShutdownWorkerRequest) -> ShutdownWorkerResponse;
    }
}
