//! Which role each RPC needs, as Temporal's method metadata (`common/api/metadata.go`) says:
//! its scope (one namespace, or the cluster) and its access. Reads are the methods named as
//! reads (`Describe…`, `Get…`, `List…`, `Count…`, `Scan…`, `Fetch…`, `Validate…`, queries and
//! the long polls for a result); workers' calls are their polls and task answers; namespace
//! and search-attribute changes need admin; every other method writes.

const WORKFLOW_SERVICE: &str = "temporal.api.workflowservice.v1.WorkflowService";
const OPERATOR_SERVICE: &str = "temporal.api.operatorservice.v1.OperatorService";
const HEALTH: &str = "grpc.health.v1.Health";
const CLUSTER_ADMIN: &str = "dura.admin.ClusterAdmin";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    /// A worker's own calls: polls, task completions, heartbeats.
    Worker,
    Write,
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Health checks, which tell nothing: anyone.
    Open,
    Cluster(Access),
    Namespace(Access),
}

/// The rule of `path` (`/package.Service/Method`); `None` for a method no rule covers, which
/// is denied, as Temporal denies a method of unknown scope.
pub fn rule(path: &str) -> Option<Rule> {
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    match service {
        HEALTH => Some(Rule::Open),
        CLUSTER_ADMIN => Some(Rule::Cluster(Access::Admin)),
        WORKFLOW_SERVICE | OPERATOR_SERVICE => Some(method_rule(method)),
        _ => None,
    }
}

fn method_rule(method: &str) -> Rule {
    use Access::*;
    match method {
        // Clients ask it before anything else, credentials or not.
        "GetSystemInfo" => Rule::Open,
        "ListNamespaces" | "GetSearchAttributes" | "GetClusterInfo" => Rule::Cluster(Read),
        "AddOrUpdateRemoteCluster" | "RemoveRemoteCluster" | "ListClusters" => Rule::Cluster(Admin),
        m if m.ends_with("NexusEndpoint") || m == "ListNexusEndpoints" => Rule::Cluster(Admin),
        "RegisterNamespace"
        | "UpdateNamespace"
        | "DeprecateNamespace"
        | "DeleteNamespace"
        | "AddSearchAttributes"
        | "RemoveSearchAttributes" => Rule::Namespace(Admin),
        "PollWorkflowExecutionUpdate"
        | "PollActivityExecution"
        | "PollNexusOperationExecution"
        | "PollWorkflowExecutionTimeSkipping"
        | "QueryWorkflow" => Rule::Namespace(Read),
        "PollWorkflowTaskQueue"
        | "PollActivityTaskQueue"
        | "PollNexusTaskQueue"
        | "RespondWorkflowTaskCompleted"
        | "RespondWorkflowTaskFailed"
        | "RespondQueryTaskCompleted"
        | "RespondNexusTaskCompleted"
        | "RespondNexusTaskFailed"
        | "RecordActivityTaskHeartbeat"
        | "RecordActivityTaskHeartbeatById"
        | "RespondActivityTaskCompleted"
        | "RespondActivityTaskCompletedById"
        | "RespondActivityTaskFailed"
        | "RespondActivityTaskFailedById"
        | "RespondActivityTaskCanceled"
        | "RespondActivityTaskCanceledById"
        | "ResetStickyTaskQueue"
        | "ShutdownWorker"
        | "RecordWorkerHeartbeat" => Rule::Namespace(Worker),
        m if [
            "Describe", "Get", "List", "Count", "Scan", "Fetch", "Validate",
        ]
        .iter()
        .any(|read| m.starts_with(read)) =>
        {
            Rule::Namespace(Read)
        }
        _ => Rule::Namespace(Write),
    }
}
