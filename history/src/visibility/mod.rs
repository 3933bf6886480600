//! Visibility: the per-shard index behind ListWorkflowExecutions / CountWorkflowExecutions.
//!
//! Every run has one [`VisibilityRecord`] next to its mutable state, written in the same apply
//! transaction whenever a field the index shows changes (start, search-attribute or memo
//! upsert, close). So unlike the real server's asynchronous visibility queue, a listing is
//! never behind the workflow's own state on the node that answers it.
//!
//! A listing is a scatter-gather: the node scans the namespace's records of every shard,
//! keeps those the [`query::Query`] matches, and [`page`]s the union in the real SQL
//! visibility store's order (open runs first, then by close time, start time, run id — all
//! descending). The scan is linear in the namespace's runs; a secondary index per shard is the
//! step after start-dev scale.

pub mod query;

use std::collections::BTreeMap;

use dura_codec::{Kind, Persisted};
use serde::{Deserialize, Serialize};
use temporalio_protos::temporal::api::{
    common::v1::{Memo, Payload, SearchAttributes, WorkflowExecution, WorkflowType},
    workflow::v1::WorkflowExecutionInfo,
};

use crate::{
    error::{HistoryError, Result},
    keys,
    limits::{Limit, Limits},
    mutable_state::{MutableState, WorkflowStatus},
    store::{KvRead, KvWrite},
    time::{Nanos, to_duration, to_timestamp},
};

/// Value types a search attribute can have (Temporal's `IndexedValueType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SearchAttributeType {
    Text,
    Keyword,
    Int,
    Double,
    Bool,
    Datetime,
    KeywordList,
}

impl SearchAttributeType {
    /// Parses the names the `temporal` CLI accepts for `--search-attribute key=type`.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "text" => Self::Text,
            "keyword" => Self::Keyword,
            "int" => Self::Int,
            "double" => Self::Double,
            "bool" => Self::Bool,
            "datetime" => Self::Datetime,
            "keywordlist" => Self::KeywordList,
            _ => return None,
        })
    }

    /// The name the real server prints in query errors (`IndexedValueType.String()`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "Text",
            Self::Keyword => "Keyword",
            Self::Int => "Int",
            Self::Double => "Double",
            Self::Bool => "Bool",
            Self::Datetime => "Datetime",
            Self::KeywordList => "KeywordList",
        }
    }
}

/// The real server's system search attributes; their names can never be custom.
pub const SYSTEM_ATTRIBUTES: &[(&str, SearchAttributeType)] = {
    use SearchAttributeType::*;
    &[
        ("BatcherNamespace", Keyword),
        ("BatcherUser", Keyword),
        ("BinaryChecksums", KeywordList),
        ("BuildIds", KeywordList),
        ("CloseTime", Datetime),
        ("ExecutionDuration", Int),
        ("ExecutionStatus", Keyword),
        ("ExecutionTime", Datetime),
        ("HistoryLength", Int),
        ("HistorySizeBytes", Int),
        ("ParentRunId", Keyword),
        ("ParentWorkflowId", Keyword),
        ("RootRunId", Keyword),
        ("RootWorkflowId", Keyword),
        ("RunId", Keyword),
        ("StartTime", Datetime),
        ("StateTransitionCount", Int),
        ("TaskQueue", Keyword),
        ("TemporalChangeVersion", KeywordList),
        ("TemporalNamespaceDivision", Keyword),
        ("TemporalPauseInfo", KeywordList),
        ("TemporalReportedProblems", KeywordList),
        ("TemporalScheduledById", Keyword),
        ("TemporalScheduledStartTime", Datetime),
        ("TemporalSchedulePaused", Bool),
        ("TemporalWorkerDeployment", Keyword),
        ("TemporalWorkerDeploymentVersion", Keyword),
        ("TemporalWorkflowVersioningBehavior", Keyword),
        ("WorkflowId", Keyword),
        ("WorkflowType", Keyword),
    ]
};

/// The real server's predefined attributes a user may set; every other system attribute is
/// the server's own.
const USER_SETTABLE_SYSTEM_ATTRIBUTES: &[&str] = &[
    "TemporalChangeVersion",
    "BinaryChecksums",
    "BuildIds",
    "BatcherNamespace",
    "BatcherUser",
    "TemporalScheduledStartTime",
    "TemporalScheduledById",
    "TemporalSchedulePaused",
    "TemporalNamespaceDivision",
    "TemporalPauseInfo",
    "TemporalReportedProblems",
];

/// Checks search attributes a workflow sets (at start, by upsert, for a child or a new run),
/// with the real server's rules and messages: the server's own attributes cannot be set, any
/// other name must be registered on the namespace (`custom`), and each value must be of the
/// attribute's type. An empty value, or a list (the server's default allow-list), is fine.
pub fn validate_search_attributes(
    namespace: &str,
    custom: &BTreeMap<String, SearchAttributeType>,
    attributes: &SearchAttributes,
) -> std::result::Result<(), String> {
    // By name: the first bad one is named in a failure replicas must agree on.
    for (name, value) in sorted(attributes) {
        let kind = match system_attribute(name) {
            Some(kind) if USER_SETTABLE_SYSTEM_ATTRIBUTES.contains(&name.as_str()) => kind,
            Some(_) => return Err(format!("{name} attribute can't be set in SearchAttributes")),
            None => *custom.get(name).ok_or_else(|| {
                format!("Namespace {namespace} has no mapping defined for search attribute {name}")
            })?,
        };
        let json = serde_json::from_slice::<serde_json::Value>(&value.data);
        if value.data.is_empty()
            || matches!(json, Ok(serde_json::Value::Array(_)))
            || query::value_fits(value, kind)
        {
            continue;
        }
        let shown = match json {
            Ok(serde_json::Value::String(s)) => s,
            Ok(other) => other.to_string(),
            Err(_) => String::from_utf8_lossy(&value.data).into_owned(),
        };
        return Err(format!(
            "invalid value for search attribute {name} of type {}: {shown}",
            kind.name()
        ));
    }
    Ok(())
}

fn sorted(attributes: &SearchAttributes) -> Vec<(&String, &Payload)> {
    let mut fields: Vec<_> = attributes.indexed_fields.iter().collect();
    fields.sort_by_key(|(name, _)| *name);
    fields
}

/// `frontend.searchAttributesNumberOfKeysLimit`, checked before the attributes' types as the
/// real server does (`searchattribute.Validator.Validate`).
pub fn check_search_attribute_count(
    attributes: &SearchAttributes,
    limits: &Limits,
) -> std::result::Result<(), String> {
    let count = attributes.indexed_fields.len();
    match limits.get(Limit::SearchAttributesNumberOfKeys) {
        Some(max) if limits.exceeded(Limit::SearchAttributesNumberOfKeys, count) => Err(format!(
            "number of search attributes {count} exceeds limit {max}"
        )),
        _ => Ok(()),
    }
}

/// The value and total size limits (`searchattribute.Validator.ValidateSize`).
pub fn check_search_attribute_sizes(
    attributes: &SearchAttributes,
    limits: &Limits,
) -> std::result::Result<(), String> {
    if let Some(max) = limits.get(Limit::SearchAttributesSizeOfValue) {
        for (name, value) in sorted(attributes) {
            if limits.exceeded(Limit::SearchAttributesSizeOfValue, value.data.len()) {
                return Err(format!(
                    "search attribute {name} value size {} exceeds size limit {max}",
                    value.data.len()
                ));
            }
        }
    }
    let total = prost::Message::encoded_len(attributes);
    match limits.get(Limit::SearchAttributesTotalSize) {
        Some(max) if limits.exceeded(Limit::SearchAttributesTotalSize, total) => Err(format!(
            "total size of search attributes {total} exceeds size limit {max}"
        )),
        _ => Ok(()),
    }
}

pub fn system_attribute(name: &str) -> Option<SearchAttributeType> {
    SYSTEM_ATTRIBUTES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
}

/// What the index holds of one run. History length and size are those at close: the real
/// server's visibility only refreshes them then, and copying them on every transition would
/// rewrite the record on every event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisibilityRecord {
    pub workflow_id: String,
    pub run_id: String,
    pub first_run_id: String,
    pub workflow_type: String,
    pub task_queue: String,
    pub status: WorkflowStatus,
    pub start_time: Nanos,
    pub execution_time: Nanos,
    /// 0 while running.
    pub close_time: Nanos,
    pub history_length: i64,
    pub history_size_bytes: i64,
    #[serde(with = "crate::pb::opt")]
    pub memo: Option<Memo>,
    #[serde(with = "crate::pb::opt")]
    pub search_attributes: Option<SearchAttributes>,
}

impl VisibilityRecord {
    pub fn of(ms: &MutableState) -> Self {
        let closed = !ms.is_running();
        VisibilityRecord {
            workflow_id: ms.workflow_id.clone(),
            run_id: ms.run_id.clone(),
            first_run_id: ms.first_execution_run_id.clone(),
            workflow_type: ms.workflow_type.clone(),
            task_queue: ms.task_queue.clone(),
            status: ms.status,
            start_time: ms.start_time,
            execution_time: ms.execution_time,
            close_time: if closed { ms.close_time } else { 0 },
            history_length: if closed { ms.history_length() } else { 0 },
            history_size_bytes: if closed { ms.history_size_bytes } else { 0 },
            memo: ms.memo.clone(),
            search_attributes: ms.search_attributes.clone(),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.status != WorkflowStatus::Running
    }

    /// A custom (or SDK-set system) search attribute's stored payload.
    pub fn search_attribute(&self, name: &str) -> Option<&Payload> {
        self.search_attributes.as_ref()?.indexed_fields.get(name)
    }

    pub fn to_info(&self) -> WorkflowExecutionInfo {
        let closed = self.is_closed();
        WorkflowExecutionInfo {
            execution: Some(WorkflowExecution {
                workflow_id: self.workflow_id.clone(),
                run_id: self.run_id.clone(),
            }),
            r#type: Some(WorkflowType {
                name: self.workflow_type.clone(),
            }),
            start_time: Some(to_timestamp(self.start_time)),
            close_time: closed.then(|| to_timestamp(self.close_time)),
            status: self.status.to_proto() as i32,
            history_length: self.history_length,
            history_size_bytes: self.history_size_bytes,
            execution_time: Some(to_timestamp(self.execution_time)),
            execution_duration: closed
                .then(|| to_duration(self.close_time.saturating_sub(self.execution_time).max(0))),
            // Present even when empty, as the real server lists them.
            memo: Some(self.memo.clone().unwrap_or_default()),
            search_attributes: Some(self.search_attributes.clone().unwrap_or_default()),
            task_queue: self.task_queue.clone(),
            first_run_id: self.first_run_id.clone(),
            ..Default::default()
        }
    }

    /// Position in a listing; larger sorts first.
    fn sort_key(&self) -> SortKey {
        SortKey {
            close_time: if self.is_closed() {
                self.close_time
            } else {
                Nanos::MAX
            },
            start_time: self.start_time,
            run_id: self.run_id.clone(),
        }
    }
}

fn corrupt(e: impl std::fmt::Display) -> HistoryError {
    HistoryError::Internal(format!("corrupt visibility record: {e}"))
}

/// Writes the run's record when what the index shows differs from `before` (None: new run).
pub fn write(
    kv: &mut impl KvWrite,
    before: Option<&VisibilityRecord>,
    ms: &MutableState,
) -> Result<()> {
    let record = VisibilityRecord::of(ms);
    if before != Some(&record) {
        let key = keys::visibility(&ms.namespace_id, &ms.workflow_id, &ms.run_id);
        kv.put(&key, &record.encode());
    }
    Ok(())
}

/// Every record of a namespace in this shard that the query's filter matches.
pub fn scan(
    kv: &impl KvRead,
    namespace_id: &str,
    query: &query::Query,
) -> Result<Vec<VisibilityRecord>> {
    let mut out = Vec::new();
    for (_, value) in kv.scan_prefix(&keys::visibility_prefix(namespace_id)) {
        let record = VisibilityRecord::decode(&value).map_err(corrupt)?;
        if query.matches(&record) {
            out.push(record);
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct SortKey {
    close_time: Nanos,
    start_time: Nanos,
    run_id: String,
}

/// One page of a listing over the union of all shards' matches.
pub struct Page {
    pub records: Vec<VisibilityRecord>,
    /// Opaque; empty when this was the last page.
    pub next_page_token: Vec<u8>,
}

/// Sorts `records` into listing order and returns the page after `token` (the sort key of
/// the previous page's last record), so pages stay stable while new runs start.
pub fn page(
    mut records: Vec<VisibilityRecord>,
    page_size: usize,
    token: &[u8],
) -> Result<Page, HistoryError> {
    let after: Option<SortKey> = if token.is_empty() {
        None
    } else {
        Some(
            SortKey::decode(token)
                .map_err(|_| HistoryError::InvalidArgument("Invalid NextPageToken.".into()))?,
        )
    };
    records.sort_by_key(|r| std::cmp::Reverse(r.sort_key()));
    if let Some(after) = &after {
        records.retain(|r| r.sort_key() < *after);
    }
    let page_size = page_size.max(1);
    let mut next_page_token = Vec::new();
    if records.len() > page_size {
        records.truncate(page_size);
        if let Some(last) = records.last() {
            next_page_token = last.sort_key().encode();
        }
    }
    Ok(Page {
        records,
        next_page_token,
    })
}

#[cfg(test)]
mod tests;

impl Persisted for VisibilityRecord {
    const KIND: Kind = Kind::VisibilityRecord;
}

/// A page token outlives the node that made it: the client may send it to any other node.
impl Persisted for SortKey {
    const KIND: Kind = Kind::PageToken;
}
