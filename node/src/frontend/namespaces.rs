//! Namespace RPCs: validation exactly as the real frontend does it, then one metadata command.

use std::time::Duration;

use dura_history::limits::{Limit, Limits};

use temporalio_protos::temporal::api::{
    enums::v1::{ArchivalState as PbArchivalState, NamespaceState as PbNamespaceState},
    namespace::v1::{BadBinaries, NamespaceConfig, NamespaceInfo, namespace_info},
    replication::v1::{ClusterReplicationConfig, NamespaceReplicationConfig},
    workflowservice::v1::{
        DescribeNamespaceRequest, DescribeNamespaceResponse, ListNamespacesRequest,
        ListNamespacesResponse, RegisterNamespaceRequest, UpdateNamespaceRequest,
        UpdateNamespaceResponse,
    },
};

use super::CLUSTER_NAME;
use crate::{
    error::{ApiError, ApiResult},
    namespace::{
        ArchivalState, MAX_NAME_LEN, MIN_RETENTION, MetaCommand, NamespaceRecord,
        NamespaceRegistry, NamespaceState, NamespaceUpdate,
    },
};

/// The real server's default limit on a workflow task completion, which it advertises.
const WFT_COMPLETION_SIZE_LIMIT: i64 = 40 * 1024 * 1024;
const DEFAULT_LIST_PAGE_SIZE: usize = 100;

fn namespace_not_set() -> ApiError {
    ApiError::InvalidArgument("Namespace not set on request.".into())
}

fn invalid_retention() -> ApiError {
    ApiError::InvalidArgument("A valid retention period is not set on request.".into())
}

pub(crate) fn validate_name(name: &str) -> ApiResult<()> {
    if name.is_empty() {
        return Err(namespace_not_set());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(ApiError::InvalidArgument(
            "Namespace length exceeds limit.".into(),
        ));
    }
    Ok(())
}

fn validate_retention(retention: Option<&prost_types::Duration>) -> ApiResult<Duration> {
    let retention = retention.ok_or_else(invalid_retention)?;
    if retention.seconds < 0 || retention.nanos < 0 {
        return Err(invalid_retention());
    }
    let retention = Duration::new(retention.seconds as u64, retention.nanos as u32);
    if retention < MIN_RETENTION {
        return Err(invalid_retention());
    }
    Ok(retention)
}

fn archival_from_pb(state: i32, uri: &str) -> ApiResult<Option<(ArchivalState, String)>> {
    match PbArchivalState::try_from(state) {
        Ok(PbArchivalState::Unspecified) => Ok(None),
        Ok(PbArchivalState::Disabled) => Ok(Some((ArchivalState::Disabled, uri.to_string()))),
        // Archival needs an archiver Dura does not have; refusing beats pretending.
        Ok(PbArchivalState::Enabled) => Err(ApiError::InvalidArgument(
            "Archival is not configured on this cluster.".into(),
        )),
        Err(_) => Err(ApiError::InvalidArgument(format!(
            "Unknown archival state {state}."
        ))),
    }
}

fn archival_to_pb(state: ArchivalState) -> i32 {
    match state {
        ArchivalState::Disabled => PbArchivalState::Disabled as i32,
        ArchivalState::Enabled => PbArchivalState::Enabled as i32,
    }
}

fn state_to_pb(state: NamespaceState) -> i32 {
    match state {
        NamespaceState::Registered => PbNamespaceState::Registered as i32,
        NamespaceState::Deprecated => PbNamespaceState::Deprecated as i32,
        NamespaceState::Deleted => PbNamespaceState::Deleted as i32,
    }
}

fn state_from_pb(state: i32) -> ApiResult<Option<NamespaceState>> {
    Ok(match PbNamespaceState::try_from(state) {
        Ok(PbNamespaceState::Unspecified) => None,
        Ok(PbNamespaceState::Registered) => Some(NamespaceState::Registered),
        Ok(PbNamespaceState::Deprecated) => Some(NamespaceState::Deprecated),
        Ok(PbNamespaceState::Deleted) => Some(NamespaceState::Deleted),
        Err(_) => {
            return Err(ApiError::InvalidArgument(
                "Invalid namespace state update.".into(),
            ));
        }
    })
}

fn info_to_pb(record: &NamespaceRecord, limits: &Limits) -> NamespaceInfo {
    let advertised = |limit| {
        limits
            .get(limit)
            .map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX))
    };
    NamespaceInfo {
        name: record.name.clone(),
        state: state_to_pb(record.state),
        description: record.description.clone(),
        owner_email: record.owner_email.clone(),
        data: record.data.clone().into_iter().collect(),
        id: record.id.clone(),
        // Only what Dura actually implements is claimed; the SDKs change behaviour on these.
        capabilities: Some(namespace_info::Capabilities::default()),
        limits: Some(namespace_info::Limits {
            blob_size_limit_error: advertised(Limit::BlobSize),
            memo_size_limit_error: advertised(Limit::MemoSize),
            workflow_task_completion_size_limit_error: WFT_COMPLETION_SIZE_LIMIT,
        }),
        supports_schedules: false,
    }
}

fn config_to_pb(record: &NamespaceRecord) -> NamespaceConfig {
    NamespaceConfig {
        workflow_execution_retention_ttl: Some(prost_types::Duration {
            seconds: record.retention.as_secs() as i64,
            nanos: record.retention.subsec_nanos() as i32,
        }),
        bad_binaries: Some(BadBinaries::default()),
        history_archival_state: archival_to_pb(record.history_archival.0),
        history_archival_uri: record.history_archival.1.clone(),
        visibility_archival_state: archival_to_pb(record.visibility_archival.0),
        visibility_archival_uri: record.visibility_archival.1.clone(),
        custom_search_attribute_aliases: Default::default(),
    }
}

fn replication_to_pb() -> NamespaceReplicationConfig {
    NamespaceReplicationConfig {
        active_cluster_name: CLUSTER_NAME.into(),
        clusters: vec![ClusterReplicationConfig {
            cluster_name: CLUSTER_NAME.into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub(crate) fn describe_response(
    record: &NamespaceRecord,
    limits: &Limits,
) -> DescribeNamespaceResponse {
    DescribeNamespaceResponse {
        namespace_info: Some(info_to_pb(record, limits)),
        config: Some(config_to_pb(record)),
        replication_config: Some(replication_to_pb()),
        ..Default::default()
    }
}

pub(crate) async fn register(
    registry: &NamespaceRegistry,
    req: RegisterNamespaceRequest,
) -> ApiResult<()> {
    validate_name(&req.namespace)?;
    if req.is_global_namespace {
        return Err(ApiError::InvalidArgument(
            "Cannot register global namespace when not enabled".into(),
        ));
    }
    let retention = validate_retention(req.workflow_execution_retention_period.as_ref())?;
    if !req.active_cluster_name.is_empty() && req.active_cluster_name != CLUSTER_NAME {
        return Err(ApiError::InvalidArgument(format!(
            "Invalid active cluster name: {}",
            req.active_cluster_name
        )));
    }
    let mut record =
        NamespaceRecord::new(uuid::Uuid::new_v4().to_string(), req.namespace, retention);
    record.description = req.description;
    record.owner_email = req.owner_email;
    record.data = req.data.into_iter().collect();
    if let Some(archival) = archival_from_pb(req.history_archival_state, &req.history_archival_uri)?
    {
        record.history_archival = archival;
    }
    if let Some(archival) =
        archival_from_pb(req.visibility_archival_state, &req.visibility_archival_uri)?
    {
        record.visibility_archival = archival;
    }
    registry
        .execute(MetaCommand::Register {
            record,
            if_absent: false,
        })
        .await?;
    Ok(())
}

pub(crate) fn describe(
    registry: &NamespaceRegistry,
    req: &DescribeNamespaceRequest,
    limits: &Limits,
) -> ApiResult<DescribeNamespaceResponse> {
    let record = match (req.namespace.is_empty(), req.id.is_empty()) {
        (false, false) => {
            return Err(ApiError::InvalidArgument(
                "GetNamespace operation failed. Both ID and Name specified in request.".into(),
            ));
        }
        (false, true) => registry.by_name(&req.namespace)?,
        (true, false) => registry.by_id(&req.id)?,
        (true, true) => return Err(namespace_not_set()),
    };
    Ok(describe_response(&record, limits))
}

pub(crate) fn list(
    registry: &NamespaceRegistry,
    req: &ListNamespacesRequest,
    limits: &Limits,
) -> ApiResult<ListNamespacesResponse> {
    let page_size = match req.page_size {
        n if n <= 0 => DEFAULT_LIST_PAGE_SIZE,
        n => n as usize,
    };
    let after = if req.next_page_token.is_empty() {
        None
    } else {
        Some(
            String::from_utf8(req.next_page_token.clone())
                .map_err(|_| ApiError::InvalidArgument("Invalid next page token.".into()))?,
        )
    };
    let include_deleted = req
        .namespace_filter
        .as_ref()
        .is_some_and(|f| f.include_deleted);
    let (records, next) = registry.list(after.as_deref(), page_size)?;
    Ok(ListNamespacesResponse {
        namespaces: records
            .iter()
            .filter(|r| include_deleted || r.state != NamespaceState::Deleted)
            .map(|record| describe_response(record, limits))
            .collect(),
        next_page_token: next.map(String::into_bytes).unwrap_or_default(),
    })
}

pub(crate) async fn update(
    registry: &NamespaceRegistry,
    req: UpdateNamespaceRequest,
    limits: &Limits,
) -> ApiResult<UpdateNamespaceResponse> {
    validate_name(&req.namespace)?;
    if req.promote_namespace {
        return Err(ApiError::InvalidArgument(
            "Cannot promote namespace: global namespaces are not enabled".into(),
        ));
    }
    if let Some(replication) = &req.replication_config {
        let foreign = replication
            .clusters
            .iter()
            .any(|c| c.cluster_name != CLUSTER_NAME)
            || (!replication.active_cluster_name.is_empty()
                && replication.active_cluster_name != CLUSTER_NAME);
        if foreign {
            return Err(ApiError::InvalidArgument(
                "Cluster replication is not supported by this cluster.".into(),
            ));
        }
    }
    let mut update = NamespaceUpdate::default();
    if let Some(info) = req.update_info {
        update.description = Some(info.description).filter(|d| !d.is_empty());
        update.owner_email = Some(info.owner_email).filter(|d| !d.is_empty());
        update.data = info.data.into_iter().collect();
        update.state = state_from_pb(info.state)?;
    }
    if let Some(config) = req.config {
        if config.workflow_execution_retention_ttl.is_some() {
            update.retention = Some(validate_retention(
                config.workflow_execution_retention_ttl.as_ref(),
            )?);
        }
        update.history_archival =
            archival_from_pb(config.history_archival_state, &config.history_archival_uri)?;
        update.visibility_archival = archival_from_pb(
            config.visibility_archival_state,
            &config.visibility_archival_uri,
        )?;
    }
    let record = registry
        .execute(MetaCommand::Update {
            name: req.namespace,
            update,
        })
        .await?
        .ok_or_else(|| ApiError::Internal("update returned no namespace".into()))?;
    let described = describe_response(&record, limits);
    Ok(UpdateNamespaceResponse {
        namespace_info: described.namespace_info,
        config: described.config,
        replication_config: described.replication_config,
        failover_version: 0,
        is_global_namespace: false,
    })
}
