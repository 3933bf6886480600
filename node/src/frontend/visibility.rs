//! ListWorkflowExecutions / ScanWorkflowExecutions / CountWorkflowExecutions: a scatter-gather
//! of the query over every shard's visibility records (see `dura_history::visibility`).

use dura_history::visibility::{self, VisibilityRecord, query::Query};
use temporalio_protos::temporal::api::{
    common::v1::Payload,
    workflowservice::v1::{self as pb, count_workflow_executions_response::AggregationGroup},
};

use super::workflows::Workflows;
use crate::error::{ApiError, ApiResult};

/// The real server's `frontend.visibilityMaxPageSize` default, also its default page size.
const MAX_PAGE_SIZE: usize = 1000;

impl Workflows {
    /// Every record of the namespace the query matches, across all shards, as of now.
    async fn visible(
        &self,
        namespace: &str,
        query: &str,
        allow_group_by: bool,
    ) -> ApiResult<(Query, Vec<VisibilityRecord>)> {
        if namespace.is_empty() {
            return Err(ApiError::InvalidArgument(
                "Namespace not set on request.".into(),
            ));
        }
        let record = self.namespaces.by_name(namespace)?;
        let custom = |name: &str| record.custom_search_attributes.get(name).copied();
        let query = Query::parse(query, custom, allow_group_by)?;
        let prefix = dura_history::keys::visibility_prefix(&record.id);
        let mut matched = Vec::new();
        for shard in self.engine.shard_ids() {
            let view = self.engine.fresh_view(shard, &prefix).await?;
            matched.extend(visibility::scan(&view, &record.id, &query)?);
        }
        Ok((query, matched))
    }

    pub async fn list(
        &self,
        req: pb::ListWorkflowExecutionsRequest,
    ) -> ApiResult<pb::ListWorkflowExecutionsResponse> {
        let (_, records) = self.visible(&req.namespace, &req.query, false).await?;
        let page_size = match usize::try_from(req.page_size) {
            Ok(n) if n > 0 => n.min(MAX_PAGE_SIZE),
            _ => MAX_PAGE_SIZE,
        };
        let page = visibility::page(records, page_size, &req.next_page_token)?;
        Ok(pb::ListWorkflowExecutionsResponse {
            executions: page.records.iter().map(VisibilityRecord::to_info).collect(),
            next_page_token: page.next_page_token,
        })
    }

    pub async fn count(
        &self,
        req: pb::CountWorkflowExecutionsRequest,
    ) -> ApiResult<pb::CountWorkflowExecutionsResponse> {
        let (query, records) = self.visible(&req.namespace, &req.query, true).await?;
        let mut groups: Vec<AggregationGroup> = Vec::new();
        if query.is_grouped() {
            let mut counts = std::collections::BTreeMap::<Option<String>, i64>::new();
            for r in &records {
                *counts.entry(query.group_of(r)).or_default() += 1;
            }
            groups = counts
                .into_iter()
                .map(|(value, count)| AggregationGroup {
                    group_values: vec![json_payload(value)],
                    count,
                })
                .collect();
            // Largest groups first, as the real server orders them.
            groups.sort_by_key(|g| std::cmp::Reverse(g.count));
        }
        Ok(pb::CountWorkflowExecutionsResponse {
            count: records.len() as i64,
            groups,
        })
    }
}

/// Group values travel as JSON payloads (`json/plain`), null for a missing field.
fn json_payload(value: Option<String>) -> Payload {
    let data = match value {
        Some(v) => serde_json::Value::String(v),
        None => serde_json::Value::Null,
    };
    Payload {
        metadata: [("encoding".to_string(), b"json/plain".to_vec())].into(),
        data: data.to_string().into_bytes(),
        ..Default::default()
    }
}
