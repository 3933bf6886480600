//! OperatorService search-attribute RPCs, answered from the namespace record.

use std::collections::BTreeMap;

use temporalio_protos::temporal::api::{
    common::v1::SearchAttributes,
    enums::v1::IndexedValueType,
    operatorservice::v1::{
        AddSearchAttributesRequest, ListSearchAttributesRequest, ListSearchAttributesResponse,
        RemoveSearchAttributesRequest,
    },
};

use dura_history::{
    limits::Limits,
    visibility::{
        SYSTEM_ATTRIBUTES, check_search_attribute_count, check_search_attribute_sizes,
        system_attribute, validate_search_attributes,
    },
};

use crate::{
    error::{ApiError, ApiResult},
    namespace::{MetaCommand, NamespaceRecord, NamespaceRegistry, SearchAttributeType},
};

/// Checks the search attributes a workflow is started with as the real server's frontend
/// does: their number, their types (see `validate_search_attributes`), then their sizes.
pub(crate) fn validate(
    record: &NamespaceRecord,
    attributes: &SearchAttributes,
    limits: &Limits,
) -> ApiResult<()> {
    check_search_attribute_count(attributes, limits)
        .and_then(|()| {
            validate_search_attributes(&record.name, &record.custom_search_attributes, attributes)
        })
        .and_then(|()| check_search_attribute_sizes(attributes, limits))
        .map_err(ApiError::InvalidArgument)
}

pub(crate) fn is_system(name: &str) -> bool {
    system_attribute(name).is_some()
}

pub(crate) fn type_to_pb(kind: SearchAttributeType) -> i32 {
    (match kind {
        SearchAttributeType::Text => IndexedValueType::Text,
        SearchAttributeType::Keyword => IndexedValueType::Keyword,
        SearchAttributeType::Int => IndexedValueType::Int,
        SearchAttributeType::Double => IndexedValueType::Double,
        SearchAttributeType::Bool => IndexedValueType::Bool,
        SearchAttributeType::Datetime => IndexedValueType::Datetime,
        SearchAttributeType::KeywordList => IndexedValueType::KeywordList,
    }) as i32
}

fn type_from_pb(kind: i32) -> ApiResult<SearchAttributeType> {
    Ok(match IndexedValueType::try_from(kind) {
        Ok(IndexedValueType::Text) => SearchAttributeType::Text,
        Ok(IndexedValueType::Keyword) => SearchAttributeType::Keyword,
        Ok(IndexedValueType::Int) => SearchAttributeType::Int,
        Ok(IndexedValueType::Double) => SearchAttributeType::Double,
        Ok(IndexedValueType::Bool) => SearchAttributeType::Bool,
        Ok(IndexedValueType::Datetime) => SearchAttributeType::Datetime,
        Ok(IndexedValueType::KeywordList) => SearchAttributeType::KeywordList,
        _ => {
            return Err(ApiError::InvalidArgument(format!(
                "Unknown search attribute type: {kind}."
            )));
        }
    })
}

fn operator_namespace(name: &str) -> ApiResult<()> {
    if name.is_empty() {
        return Err(ApiError::InvalidArgument(
            "Namespace is not set on request.".into(),
        ));
    }
    Ok(())
}

pub(crate) fn list(
    registry: &NamespaceRegistry,
    req: &ListSearchAttributesRequest,
) -> ApiResult<ListSearchAttributesResponse> {
    operator_namespace(&req.namespace)?;
    let record = registry.by_name(&req.namespace)?;
    Ok(ListSearchAttributesResponse {
        system_attributes: SYSTEM_ATTRIBUTES
            .iter()
            .map(|(n, t)| (n.to_string(), type_to_pb(*t)))
            .collect(),
        custom_attributes: record
            .custom_search_attributes
            .iter()
            .map(|(n, t)| (n.clone(), type_to_pb(*t)))
            .collect(),
        storage_schema: Default::default(),
    })
}

pub(crate) async fn add(
    registry: &NamespaceRegistry,
    req: AddSearchAttributesRequest,
) -> ApiResult<()> {
    if req.search_attributes.is_empty() {
        return Err(ApiError::InvalidArgument(
            "SearchAttributes are not set on request.".into(),
        ));
    }
    operator_namespace(&req.namespace)?;
    let mut attributes = BTreeMap::new();
    for (name, kind) in req.search_attributes {
        if is_system(&name) {
            return Err(ApiError::InvalidArgument(format!(
                "Search attribute {name} is reserved by system."
            )));
        }
        attributes.insert(name, type_from_pb(kind)?);
    }
    registry
        .execute(MetaCommand::AddSearchAttributes {
            name: req.namespace,
            attributes,
        })
        .await?;
    Ok(())
}

pub(crate) async fn remove(
    registry: &NamespaceRegistry,
    req: RemoveSearchAttributesRequest,
) -> ApiResult<()> {
    if req.search_attributes.is_empty() {
        return Err(ApiError::InvalidArgument(
            "SearchAttributes are not set on request.".into(),
        ));
    }
    operator_namespace(&req.namespace)?;
    if let Some(name) = req.search_attributes.iter().find(|n| is_system(n)) {
        return Err(ApiError::InvalidArgument(format!(
            "Unable to remove non-custom search attributes: {name}."
        )));
    }
    registry
        .execute(MetaCommand::RemoveSearchAttributes {
            name: req.namespace,
            attributes: req.search_attributes,
        })
        .await?;
    Ok(())
}
