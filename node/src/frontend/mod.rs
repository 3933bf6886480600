//! The gRPC edge: Temporal's `WorkflowService` and `OperatorService`.
//!
//! Handlers validate requests the way the real frontend does, turn them into Dura's own
//! commands and map results back to protocol messages. Protocol types stop here.

mod edge;
mod forward;
mod limits;
mod namespaces;
mod polls;
mod queries;
mod rate_limit;
mod schedules;
mod search_attributes;
mod visibility;
mod workflows;

use std::sync::Arc;

pub use edge::RpcEdgeLayer;
pub use forward::Forwarder;
pub use rate_limit::NamespaceRateLimiter;
use temporalio_protos::temporal::api::{
    operatorservice::v1 as opsvc,
    workflowservice::v1::{self as wfsvc, get_system_info_response},
};
use tonic::{Request, Response, Status};

pub use workflows::Workflows;

use crate::{
    grpc::{
        operatorservice::operator_service_server::OperatorService,
        workflowservice::workflow_service_server::WorkflowService,
    },
    namespace::NamespaceRegistry,
};
use dura_raft_store::GroupId;

/// Single-cluster deployments call their cluster "active", as the real dev server does.
pub const CLUSTER_NAME: &str = "active";

/// Static facts the frontend reports about the cluster.
#[derive(Debug, Clone)]
pub struct ClusterFacts {
    pub shard_count: u32,
}

/// State shared by every RPC handler.
#[derive(Clone)]
pub struct Frontend {
    inner: Arc<Inner>,
}

struct Inner {
    namespaces: NamespaceRegistry,
    workflows: Workflows,
    cluster: ClusterFacts,
    forwarder: Forwarder,
    /// Cancelled when the node stops: open long polls answer empty at once.
    stopping: tokio_util::sync::CancellationToken,
}

impl Frontend {
    pub fn new(
        namespaces: NamespaceRegistry,
        workflows: Workflows,
        cluster: ClusterFacts,
        forwarder: Forwarder,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                forwarder,
                namespaces,
                stopping: workflows.stopping.clone(),
                workflows,
                cluster,
            }),
        }
    }

    /// Answers every open and later long poll empty, as when its wait ends without a task:
    /// a stopping node must not hold its pollers (the SDKs poll again, elsewhere or later)
    /// until their minute-long deadlines pass.
    pub fn stop_polls(&self) {
        self.inner.stopping.cancel();
    }

    /// The node a task-queue call must be served by: the leader of the queue's partition,
    /// unless that is this node or another node forwarded the call here already.
    async fn queue_owner(
        &self,
        forwarded: bool,
        namespace: &str,
        queue: Option<&temporalio_protos::temporal::api::taskqueue::v1::TaskQueue>,
        kind: dura_matching::TaskKind,
    ) -> Option<u64> {
        if forwarded {
            return None;
        }
        self.workflows()
            .remote_poll_owner(namespace, queue, kind)
            .await
    }

    /// The node to hand a call about the workflow in `shard` to: a node holding a replica of
    /// it (its leader when known) when this node holds none. `None` (served here) for a call
    /// handed here already or naming no valid workflow (its handler says what is wrong).
    async fn shard_host(&self, hop: forward::Hop, shard: Option<GroupId>) -> Option<u64> {
        let shard = shard.filter(|_| hop == forward::Hop::Direct)?;
        let engine = &self.workflows().engine;
        if engine.holds(shard) {
            return None;
        }
        let store = engine.store();
        match store.locate_leader(shard).await {
            Some(node) => Some(node),
            None => store.replicas(shard).first().copied(),
        }
    }

    /// A node a call was handed to could not be reached: the next call asks a replica who
    /// leads the shard rather than trust the hint that named it.
    fn host_failed(&self, shard: Option<GroupId>, status: &Status) {
        if let (Some(shard), tonic::Code::Unavailable) = (shard, status.code()) {
            self.workflows().engine.store().note_leader(shard, None);
        }
    }

    /// A read barrier on the shard of schedule `schedule_id`, so this node's replica holds
    /// every change to it committed before the call.
    async fn fresh_schedule(
        &self,
        namespace: &str,
        schedule_id: &str,
    ) -> crate::error::ApiResult<()> {
        let workflow_id = dura_history::schedules::scheduler_workflow_id(schedule_id);
        self.workflows()
            .fresh_workflow(namespace, &workflow_id)
            .await
    }

    /// A poll forwarded to another node, or an empty answer once this node is stopping.
    async fn long_poll<T: Default>(
        &self,
        poll: impl std::future::Future<Output = RpcResult<T>>,
    ) -> RpcResult<T> {
        tokio::select! {
            polled = poll => polled,
            () = self.inner.stopping.cancelled() => reply(Ok(T::default())),
        }
    }

    fn workflows(&self) -> &Workflows {
        &self.inner.workflows
    }

    fn namespaces(&self) -> &NamespaceRegistry {
        &self.inner.namespaces
    }
}

/// Capabilities the SDKs read from GetSystemInfo. Each is claimed only once the feature
/// behind it works end to end, because the SDKs change behaviour on them.
fn system_capabilities() -> get_system_info_response::Capabilities {
    get_system_info_response::Capabilities {
        // Signal headers are stored with the signal event.
        signal_and_query_header: true,
        // Heartbeat details travel with activity failures and timeouts.
        activity_failure_include_heartbeat: true,
        // Failures are stored verbatim, encoded attributes included.
        encoded_failure_attributes: true,
        // WorkflowTaskCompleted keeps the SDK's metadata (its internal flags) verbatim.
        sdk_metadata: true,
        ..Default::default()
    }
}

/// Hands a call about one workflow to a node holding its shard and returns that node's
/// answer, unless this node holds it or the call was handed here already.
macro_rules! serve_on_shard {
    ($self:ident, $request:ident, $forward:ident, |$r:ident| $shard:expr) => {
        let shard = {
            let $r = $request.get_ref();
            $shard
        };
        if let Some(node) = $self.shard_host(forward::Hop::of(&$request), shard).await {
            let timeout = workflows::grpc_timeout(&$request);
            let forwarded = $self
                .inner
                .forwarder
                .$forward(node, $request.into_inner(), timeout)
                .await;
            if let Err(crate::error::ApiError::Forwarded(status)) = &forwarded {
                $self.host_failed(shard, status);
            }
            return reply(forwarded);
        }
    };
}

/// The workflow id a request's execution names ("" when none).
fn workflow_id(
    execution: Option<&temporalio_protos::temporal::api::common::v1::WorkflowExecution>,
) -> &str {
    execution.map_or("", |e| e.workflow_id.as_str())
}

/// Moves the activity's name out of a `*ById` request (they share the field names).
macro_rules! activity_by_id {
    ($r:ident) => {
        Some(workflows::ActivityById {
            namespace: $r.namespace,
            workflow_id: $r.workflow_id,
            run_id: $r.run_id,
            activity_id: $r.activity_id,
        })
    };
}

type RpcResult<T> = Result<Response<T>, Status>;

fn reply<T>(result: crate::error::ApiResult<T>) -> RpcResult<T> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl WorkflowService for Frontend {
    async fn register_namespace(
        &self,
        request: Request<wfsvc::RegisterNamespaceRequest>,
    ) -> RpcResult<wfsvc::RegisterNamespaceResponse> {
        reply(
            namespaces::register(self.namespaces(), request.into_inner())
                .await
                .map(|()| Default::default()),
        )
    }

    async fn describe_namespace(
        &self,
        request: Request<wfsvc::DescribeNamespaceRequest>,
    ) -> RpcResult<wfsvc::DescribeNamespaceResponse> {
        if let Err(e) = self.namespaces().read_barrier().await {
            return reply(Err(e));
        }
        reply(namespaces::describe(
            self.namespaces(),
            request.get_ref(),
            &self.workflows().limits,
        ))
    }

    async fn list_namespaces(
        &self,
        request: Request<wfsvc::ListNamespacesRequest>,
    ) -> RpcResult<wfsvc::ListNamespacesResponse> {
        if let Err(e) = self.namespaces().read_barrier().await {
            return reply(Err(e));
        }
        reply(namespaces::list(
            self.namespaces(),
            request.get_ref(),
            &self.workflows().limits,
        ))
    }

    async fn update_namespace(
        &self,
        request: Request<wfsvc::UpdateNamespaceRequest>,
    ) -> RpcResult<wfsvc::UpdateNamespaceResponse> {
        reply(
            namespaces::update(
                self.namespaces(),
                request.into_inner(),
                &self.workflows().limits,
            )
            .await,
        )
    }

    async fn get_system_info(
        &self,
        _request: Request<wfsvc::GetSystemInfoRequest>,
    ) -> RpcResult<wfsvc::GetSystemInfoResponse> {
        Ok(Response::new(wfsvc::GetSystemInfoResponse {
            server_version: env!("CARGO_PKG_VERSION").to_string(),
            capabilities: Some(system_capabilities()),
        }))
    }

    async fn get_cluster_info(
        &self,
        _request: Request<wfsvc::GetClusterInfoRequest>,
    ) -> RpcResult<wfsvc::GetClusterInfoResponse> {
        let cluster_id = self.namespaces().cluster_id().map_err(Status::from)?;
        Ok(Response::new(wfsvc::GetClusterInfoResponse {
            supported_clients: [
                ("temporal-cli", "<2.0.0"),
                ("temporal-go", "<2.0.0"),
                ("temporal-java", "<2.0.0"),
                ("temporal-php", "<2.0.0"),
                ("temporal-server", "<2.0.0"),
                ("temporal-typescript", "<2.0.0"),
                ("temporal-ui", "<3.0.0"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            server_version: env!("CARGO_PKG_VERSION").to_string(),
            cluster_id,
            version_info: None,
            cluster_name: CLUSTER_NAME.to_string(),
            history_shard_count: self.inner.cluster.shard_count as i32,
            persistence_store: "rocksdb".to_string(),
            visibility_store: "rocksdb".to_string(),
            initial_failover_version: 1,
            failover_version_increment: 10,
        }))
    }

    async fn start_workflow_execution(
        &self,
        request: Request<wfsvc::StartWorkflowExecutionRequest>,
    ) -> RpcResult<wfsvc::StartWorkflowExecutionResponse> {
        serve_on_shard!(self, request, start, |r| self
            .workflows()
            .shard_of(&r.namespace, &r.workflow_id));
        reply(self.workflows().start(request.into_inner()).await)
    }

    async fn signal_with_start_workflow_execution(
        &self,
        request: Request<wfsvc::SignalWithStartWorkflowExecutionRequest>,
    ) -> RpcResult<wfsvc::SignalWithStartWorkflowExecutionResponse> {
        serve_on_shard!(self, request, signal_with_start, |r| self
            .workflows()
            .shard_of(&r.namespace, &r.workflow_id));
        reply(
            self.workflows()
                .signal_with_start(request.into_inner())
                .await,
        )
    }

    async fn signal_workflow_execution(
        &self,
        request: Request<wfsvc::SignalWorkflowExecutionRequest>,
    ) -> RpcResult<wfsvc::SignalWorkflowExecutionResponse> {
        serve_on_shard!(self, request, signal, |r| self
            .workflows()
            .shard_of(&r.namespace, workflow_id(r.workflow_execution.as_ref())));
        reply(
            self.workflows()
                .signal(request.into_inner())
                .await
                .map(|()| Default::default()),
        )
    }

    async fn terminate_workflow_execution(
        &self,
        request: Request<wfsvc::TerminateWorkflowExecutionRequest>,
    ) -> RpcResult<wfsvc::TerminateWorkflowExecutionResponse> {
        serve_on_shard!(self, request, terminate, |r| self
            .workflows()
            .shard_of(&r.namespace, workflow_id(r.workflow_execution.as_ref())));
        reply(
            self.workflows()
                .terminate(request.into_inner())
                .await
                .map(|()| Default::default()),
        )
    }

    async fn request_cancel_workflow_execution(
        &self,
        request: Request<wfsvc::RequestCancelWorkflowExecutionRequest>,
    ) -> RpcResult<wfsvc::RequestCancelWorkflowExecutionResponse> {
        serve_on_shard!(self, request, request_cancel, |r| self
            .workflows()
            .shard_of(&r.namespace, workflow_id(r.workflow_execution.as_ref())));
        reply(
            self.workflows()
                .request_cancel(request.into_inner())
                .await
                .map(|()| Default::default()),
        )
    }

    async fn poll_workflow_task_queue(
        &self,
        request: Request<wfsvc::PollWorkflowTaskQueueRequest>,
    ) -> RpcResult<wfsvc::PollWorkflowTaskQueueResponse> {
        let timeout = workflows::grpc_timeout(&request);
        let forwarded = request.metadata().contains_key(forward::FORWARDED);
        let req = request.into_inner();
        let queue = self.workflows().poll_queue(
            &req.namespace,
            req.task_queue.as_ref(),
            dura_matching::TaskKind::Workflow,
        );
        self.long_poll(self.route_poll(forwarded, queue, req, timeout))
            .await
    }

    async fn respond_workflow_task_completed(
        &self,
        request: Request<wfsvc::RespondWorkflowTaskCompletedRequest>,
    ) -> RpcResult<wfsvc::RespondWorkflowTaskCompletedResponse> {
        serve_on_shard!(self, request, complete_workflow_task, |r| self
            .workflows()
            .shard_of_token(&r.task_token));
        reply(
            self.workflows()
                .complete_workflow_task(request.into_inner())
                .await,
        )
    }

    async fn respond_workflow_task_failed(
        &self,
        request: Request<wfsvc::RespondWorkflowTaskFailedRequest>,
    ) -> RpcResult<wfsvc::RespondWorkflowTaskFailedResponse> {
        serve_on_shard!(self, request, fail_workflow_task, |r| self
            .workflows()
            .shard_of_token(&r.task_token));
        reply(
            self.workflows()
                .fail_workflow_task(request.into_inner())
                .await
                .map(|()| Default::default()),
        )
    }

    async fn poll_activity_task_queue(
        &self,
        request: Request<wfsvc::PollActivityTaskQueueRequest>,
    ) -> RpcResult<wfsvc::PollActivityTaskQueueResponse> {
        let timeout = workflows::grpc_timeout(&request);
        let forwarded = request.metadata().contains_key(forward::FORWARDED);
        let req = request.into_inner();
        let queue = self.workflows().poll_queue(
            &req.namespace,
            req.task_queue.as_ref(),
            dura_matching::TaskKind::Activity,
        );
        self.long_poll(self.route_poll(forwarded, queue, req, timeout))
            .await
    }

    async fn respond_activity_task_completed(
        &self,
        request: Request<wfsvc::RespondActivityTaskCompletedRequest>,
    ) -> RpcResult<wfsvc::RespondActivityTaskCompletedResponse> {
        serve_on_shard!(self, request, complete_activity, |r| self
            .workflows()
            .shard_of_token(&r.task_token));
        let r = request.into_inner();
        reply(
            self.workflows()
                .complete_activity(&r.task_token, None, r.result, r.identity)
                .await
                .map(|()| Default::default()),
        )
    }

    async fn respond_activity_task_completed_by_id(
        &self,
        request: Request<wfsvc::RespondActivityTaskCompletedByIdRequest>,
    ) -> RpcResult<wfsvc::RespondActivityTaskCompletedByIdResponse> {
        serve_on_shard!(self, request, complete_activity_by_id, |r| self
            .workflows()
            .shard_of(&r.namespace, &r.workflow_id));
        let r = request.into_inner();
        let by_id = activity_by_id!(r);
        reply(
            self.workflows()
                .complete_activity(&[], by_id, r.result, r.identity)
                .await
                .map(|()| Default::default()),
        )
    }

    async fn respond_activity_task_failed(
        &self,
        request: Request<wfsvc::RespondActivityTaskFailedRequest>,
    ) -> RpcResult<wfsvc::RespondActivityTaskFailedResponse> {
        serve_on_shard!(self, request, fail_activity, |r| self
            .workflows()
            .shard_of_token(&r.task_token));
        let r = request.into_inner();
        reply(
            self.workflows()
                .fail_activity(
                    &r.task_token,
                    None,
                    r.failure,
                    r.last_heartbeat_details,
                    r.identity,
                )
                .await
                .map(|failures| wfsvc::RespondActivityTaskFailedResponse { failures }),
        )
    }

    async fn respond_activity_task_failed_by_id(
        &self,
        request: Request<wfsvc::RespondActivityTaskFailedByIdRequest>,
    ) -> RpcResult<wfsvc::RespondActivityTaskFailedByIdResponse> {
        serve_on_shard!(self, request, fail_activity_by_id, |r| self
            .workflows()
            .shard_of(&r.namespace, &r.workflow_id));
        let r = request.into_inner();
        let by_id = activity_by_id!(r);
        reply(
            self.workflows()
                .fail_activity(&[], by_id, r.failure, r.last_heartbeat_details, r.identity)
                .await
                .map(|failures| wfsvc::RespondActivityTaskFailedByIdResponse { failures }),
        )
    }

    async fn respond_activity_task_canceled(
        &self,
        request: Request<wfsvc::RespondActivityTaskCanceledRequest>,
    ) -> RpcResult<wfsvc::RespondActivityTaskCanceledResponse> {
        serve_on_shard!(self, request, cancel_activity, |r| self
            .workflows()
            .shard_of_token(&r.task_token));
        let r = request.into_inner();
        reply(
            self.workflows()
                .cancel_activity(&r.task_token, None, r.details, r.identity)
                .await
                .map(|()| Default::default()),
        )
    }

    async fn respond_activity_task_canceled_by_id(
        &self,
        request: Request<wfsvc::RespondActivityTaskCanceledByIdRequest>,
    ) -> RpcResult<wfsvc::RespondActivityTaskCanceledByIdResponse> {
        serve_on_shard!(self, request, cancel_activity_by_id, |r| self
            .workflows()
            .shard_of(&r.namespace, &r.workflow_id));
        let r = request.into_inner();
        let by_id = activity_by_id!(r);
        reply(
            self.workflows()
                .cancel_activity(&[], by_id, r.details, r.identity)
                .await
                .map(|()| Default::default()),
        )
    }

    async fn record_activity_task_heartbeat(
        &self,
        request: Request<wfsvc::RecordActivityTaskHeartbeatRequest>,
    ) -> RpcResult<wfsvc::RecordActivityTaskHeartbeatResponse> {
        serve_on_shard!(self, request, heartbeat, |r| self
            .workflows()
            .shard_of_token(&r.task_token));
        let r = request.into_inner();
        reply(
            self.workflows()
                .heartbeat(&r.task_token, None, r.details, r.identity)
                .await
                .map(
                    |cancel_requested| wfsvc::RecordActivityTaskHeartbeatResponse {
                        cancel_requested,
                        ..Default::default()
                    },
                ),
        )
    }

    async fn record_activity_task_heartbeat_by_id(
        &self,
        request: Request<wfsvc::RecordActivityTaskHeartbeatByIdRequest>,
    ) -> RpcResult<wfsvc::RecordActivityTaskHeartbeatByIdResponse> {
        serve_on_shard!(self, request, heartbeat_by_id, |r| self
            .workflows()
            .shard_of(&r.namespace, &r.workflow_id));
        let r = request.into_inner();
        let by_id = activity_by_id!(r);
        reply(
            self.workflows()
                .heartbeat(&[], by_id, r.details, r.identity)
                .await
                .map(
                    |cancel_requested| wfsvc::RecordActivityTaskHeartbeatByIdResponse {
                        cancel_requested,
                        ..Default::default()
                    },
                ),
        )
    }

    async fn get_workflow_execution_history(
        &self,
        request: Request<wfsvc::GetWorkflowExecutionHistoryRequest>,
    ) -> RpcResult<wfsvc::GetWorkflowExecutionHistoryResponse> {
        serve_on_shard!(self, request, history, |r| self
            .workflows()
            .shard_of(&r.namespace, workflow_id(r.execution.as_ref())));
        let timeout = workflows::grpc_timeout(&request);
        let req = request.into_inner();
        let workflow_id = req
            .execution
            .as_ref()
            .map(|e| e.workflow_id.clone())
            .unwrap_or_default();
        if let Err(e) = self
            .workflows()
            .fresh_workflow(&req.namespace, &workflow_id)
            .await
        {
            return reply(Err(e));
        }
        reply(self.workflows().history(req, timeout).await)
    }

    async fn get_workflow_execution_history_reverse(
        &self,
        request: Request<wfsvc::GetWorkflowExecutionHistoryReverseRequest>,
    ) -> RpcResult<wfsvc::GetWorkflowExecutionHistoryReverseResponse> {
        serve_on_shard!(self, request, history_reverse, |r| self
            .workflows()
            .shard_of(&r.namespace, workflow_id(r.execution.as_ref())));
        let req = request.into_inner();
        let workflow_id = req
            .execution
            .as_ref()
            .map(|e| e.workflow_id.clone())
            .unwrap_or_default();
        if let Err(e) = self
            .workflows()
            .fresh_workflow(&req.namespace, &workflow_id)
            .await
        {
            return reply(Err(e));
        }
        reply(self.workflows().history_reverse(req))
    }

    async fn describe_workflow_execution(
        &self,
        request: Request<wfsvc::DescribeWorkflowExecutionRequest>,
    ) -> RpcResult<wfsvc::DescribeWorkflowExecutionResponse> {
        serve_on_shard!(self, request, describe, |r| self
            .workflows()
            .shard_of(&r.namespace, workflow_id(r.execution.as_ref())));
        let req = request.into_inner();
        let workflow_id = req
            .execution
            .as_ref()
            .map(|e| e.workflow_id.clone())
            .unwrap_or_default();
        if let Err(e) = self
            .workflows()
            .fresh_workflow(&req.namespace, &workflow_id)
            .await
        {
            return reply(Err(e));
        }
        reply(self.workflows().describe(req))
    }

    async fn describe_task_queue(
        &self,
        request: Request<wfsvc::DescribeTaskQueueRequest>,
    ) -> RpcResult<wfsvc::DescribeTaskQueueResponse> {
        let timeout = workflows::grpc_timeout(&request);
        let forwarded = request.metadata().contains_key(forward::FORWARDED);
        let req = request.into_inner();
        // Pollers are known only to the matcher of the node leading the queue's partition.
        let kind = if req.task_queue_type == 2 {
            dura_matching::TaskKind::Activity
        } else {
            dura_matching::TaskKind::Workflow
        };
        let owner = self.queue_owner(forwarded, &req.namespace, req.task_queue.as_ref(), kind);
        match owner.await {
            Some(node) => reply(
                self.inner
                    .forwarder
                    .describe_task_queue(node, req, timeout)
                    .await,
            ),
            None => reply(self.workflows().describe_task_queue(req)),
        }
    }

    async fn update_workflow_execution(
        &self,
        request: Request<wfsvc::UpdateWorkflowExecutionRequest>,
    ) -> RpcResult<wfsvc::UpdateWorkflowExecutionResponse> {
        serve_on_shard!(self, request, update, |r| self
            .workflows()
            .shard_of(&r.namespace, workflow_id(r.workflow_execution.as_ref())));
        let timeout = workflows::grpc_timeout(&request);
        reply(self.workflows().update(request.into_inner(), timeout).await)
    }

    async fn poll_workflow_execution_update(
        &self,
        request: Request<wfsvc::PollWorkflowExecutionUpdateRequest>,
    ) -> RpcResult<wfsvc::PollWorkflowExecutionUpdateResponse> {
        serve_on_shard!(self, request, poll_update, |r| self.workflows().shard_of(
            &r.namespace,
            workflow_id(
                r.update_ref
                    .as_ref()
                    .and_then(|u| u.workflow_execution.as_ref())
            )
        ));
        let timeout = workflows::grpc_timeout(&request);
        let req = request.into_inner();
        let workflow_id = req
            .update_ref
            .as_ref()
            .and_then(|u| u.workflow_execution.as_ref())
            .map(|e| e.workflow_id.clone())
            .unwrap_or_default();
        if let Err(e) = self
            .workflows()
            .fresh_workflow(&req.namespace, &workflow_id)
            .await
        {
            return reply(Err(e));
        }
        reply(self.workflows().poll_update(req, timeout).await)
    }

    async fn create_schedule(
        &self,
        request: Request<wfsvc::CreateScheduleRequest>,
    ) -> RpcResult<wfsvc::CreateScheduleResponse> {
        serve_on_shard!(self, request, create_schedule, |r| self
            .workflows()
            .shard_of_schedule(&r.namespace, &r.schedule_id));
        reply(self.workflows().create_schedule(request.into_inner()).await)
    }

    async fn describe_schedule(
        &self,
        request: Request<wfsvc::DescribeScheduleRequest>,
    ) -> RpcResult<wfsvc::DescribeScheduleResponse> {
        serve_on_shard!(self, request, describe_schedule, |r| self
            .workflows()
            .shard_of_schedule(&r.namespace, &r.schedule_id));
        let req = request.into_inner();
        if let Err(e) = self.fresh_schedule(&req.namespace, &req.schedule_id).await {
            return reply(Err(e));
        }
        reply(self.workflows().describe_schedule(req).await)
    }

    async fn patch_schedule(
        &self,
        request: Request<wfsvc::PatchScheduleRequest>,
    ) -> RpcResult<wfsvc::PatchScheduleResponse> {
        serve_on_shard!(self, request, patch_schedule, |r| self
            .workflows()
            .shard_of_schedule(&r.namespace, &r.schedule_id));
        let req = request.into_inner();
        // The patch checks the schedule exists in this node's replica first.
        if let Err(e) = self.fresh_schedule(&req.namespace, &req.schedule_id).await {
            return reply(Err(e));
        }
        reply(self.workflows().patch_schedule(req).await)
    }

    async fn delete_schedule(
        &self,
        request: Request<wfsvc::DeleteScheduleRequest>,
    ) -> RpcResult<wfsvc::DeleteScheduleResponse> {
        serve_on_shard!(self, request, delete_schedule, |r| self
            .workflows()
            .shard_of_schedule(&r.namespace, &r.schedule_id));
        let req = request.into_inner();
        if let Err(e) = self.fresh_schedule(&req.namespace, &req.schedule_id).await {
            return reply(Err(e));
        }
        reply(self.workflows().delete_schedule(req).await)
    }

    async fn list_schedules(
        &self,
        request: Request<wfsvc::ListSchedulesRequest>,
    ) -> RpcResult<wfsvc::ListSchedulesResponse> {
        reply(self.workflows().list_schedules(request.into_inner()).await)
    }

    async fn query_workflow(
        &self,
        request: Request<wfsvc::QueryWorkflowRequest>,
    ) -> RpcResult<wfsvc::QueryWorkflowResponse> {
        serve_on_shard!(self, request, query_on_shard, |r| self
            .workflows()
            .shard_of(&r.namespace, workflow_id(r.execution.as_ref())));
        let timeout = workflows::grpc_timeout(&request);
        // A call handed here for the workflow's shard may still go to the queue's node.
        let forwarded = forward::Hop::of(&request) == forward::Hop::Queue;
        let req = request.into_inner();
        let workflow_id = req
            .execution
            .as_ref()
            .map(|e| e.workflow_id.clone())
            .unwrap_or_default();
        if let Err(e) = self
            .workflows()
            .fresh_workflow(&req.namespace, &workflow_id)
            .await
        {
            return reply(Err(e));
        }
        match self
            .workflows()
            .remote_query_owner(&req)
            .await
            .filter(|_| !forwarded)
        {
            Some(node) => reply(self.inner.forwarder.query(node, req, timeout).await),
            None => reply(self.workflows().query(req, timeout).await),
        }
    }

    async fn respond_query_task_completed(
        &self,
        request: Request<wfsvc::RespondQueryTaskCompletedRequest>,
    ) -> RpcResult<wfsvc::RespondQueryTaskCompletedResponse> {
        let timeout = workflows::grpc_timeout(&request);
        let req = request.into_inner();
        match self.workflows().remote_query_waiter(&req.task_token) {
            Some(node) => reply(self.inner.forwarder.respond_query(node, req, timeout).await),
            None => reply(
                self.workflows()
                    .respond_query(req)
                    .map(|()| Default::default()),
            ),
        }
    }

    async fn list_workflow_executions(
        &self,
        request: Request<wfsvc::ListWorkflowExecutionsRequest>,
    ) -> RpcResult<wfsvc::ListWorkflowExecutionsResponse> {
        reply(self.workflows().list(request.into_inner()).await)
    }

    /// The deprecated scan is a listing without order guarantees; a listing satisfies it.
    async fn scan_workflow_executions(
        &self,
        request: Request<wfsvc::ScanWorkflowExecutionsRequest>,
    ) -> RpcResult<wfsvc::ScanWorkflowExecutionsResponse> {
        let r = request.into_inner();
        let listed = self
            .workflows()
            .list(wfsvc::ListWorkflowExecutionsRequest {
                namespace: r.namespace,
                page_size: r.page_size,
                next_page_token: r.next_page_token,
                query: r.query,
            })
            .await;
        reply(listed.map(|l| wfsvc::ScanWorkflowExecutionsResponse {
            executions: l.executions,
            next_page_token: l.next_page_token,
        }))
    }

    async fn count_workflow_executions(
        &self,
        request: Request<wfsvc::CountWorkflowExecutionsRequest>,
    ) -> RpcResult<wfsvc::CountWorkflowExecutionsResponse> {
        reply(self.workflows().count(request.into_inner()).await)
    }

    async fn shutdown_worker(
        &self,
        request: Request<wfsvc::ShutdownWorkerRequest>,
    ) -> RpcResult<wfsvc::ShutdownWorkerResponse> {
        let timeout = workflows::grpc_timeout(&request);
        let forwarded = request.metadata().contains_key(forward::FORWARDED);
        let req = request.into_inner();
        // The sticky queue's tasks wait in the matcher of the node leading its partition.
        let sticky = temporalio_protos::temporal::api::taskqueue::v1::TaskQueue {
            name: req.sticky_task_queue.clone(),
            ..Default::default()
        };
        let owner = self.queue_owner(
            forwarded,
            &req.namespace,
            Some(&sticky),
            dura_matching::TaskKind::Workflow,
        );
        match owner.await {
            Some(node) => reply(
                self.inner
                    .forwarder
                    .shutdown_worker(node, req, timeout)
                    .await,
            ),
            None => reply(
                self.workflows()
                    .shutdown_worker(req)
                    .map(|()| Default::default()),
            ),
        }
    }
}

#[tonic::async_trait]
impl OperatorService for Frontend {
    async fn list_search_attributes(
        &self,
        request: Request<opsvc::ListSearchAttributesRequest>,
    ) -> RpcResult<opsvc::ListSearchAttributesResponse> {
        if let Err(e) = self.namespaces().read_barrier().await {
            return reply(Err(e));
        }
        reply(search_attributes::list(
            self.namespaces(),
            request.get_ref(),
        ))
    }

    async fn add_search_attributes(
        &self,
        request: Request<opsvc::AddSearchAttributesRequest>,
    ) -> RpcResult<opsvc::AddSearchAttributesResponse> {
        reply(
            search_attributes::add(self.namespaces(), request.into_inner())
                .await
                .map(|()| Default::default()),
        )
    }

    async fn remove_search_attributes(
        &self,
        request: Request<opsvc::RemoveSearchAttributesRequest>,
    ) -> RpcResult<opsvc::RemoveSearchAttributesResponse> {
        reply(
            search_attributes::remove(self.namespaces(), request.into_inner())
                .await
                .map(|()| Default::default()),
        )
    }
}
