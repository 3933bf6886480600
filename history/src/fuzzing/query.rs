//! The visibility query language, as List/Count/Scan requests carry it.

use temporalio_protos::temporal::api::common::v1::{Payload, SearchAttributes};

use super::Source;
use crate::{
    mutable_state::WorkflowStatus,
    time::SECOND,
    visibility::{SearchAttributeType, VisibilityRecord, query::Query},
};

/// Words the grammar knows, so that assembled text gets past the lexer and into the parser's
/// and evaluator's deeper paths; raw text covers the lexer itself.
const WORDS: &[&str] = &[
    "WorkflowId",
    "WorkflowType",
    "ExecutionStatus",
    "StartTime",
    "CloseTime",
    "RunId",
    "TaskQueue",
    "HistoryLength",
    "ExecutionDuration",
    "TemporalNamespaceDivision",
    "BuildIds",
    "Tag",
    "Tags",
    "Notes",
    "Score",
    "Price",
    "Flag",
    "Due",
    "Unknown",
    "`Tag`",
    "=",
    "!=",
    "<>",
    ">",
    ">=",
    "<",
    "<=",
    "AND",
    "OR",
    "NOT",
    "IN",
    "NOT IN",
    "BETWEEN",
    "STARTS_WITH",
    "NOT STARTS_WITH",
    "IS NULL",
    "IS NOT NULL",
    "LIKE",
    "(",
    ")",
    ",",
    "'wf'",
    "'Running'",
    "'Completed'",
    "\"x\"",
    "'2024-01-01T00:00:00Z'",
    "'2024-01-01T00:00:00.5+02:00'",
    "'bad-time'",
    "1",
    "-1",
    "1.5",
    "1e308",
    "9223372036854775807",
    "99999999999999999999",
    "true",
    "false",
    "''",
    "'",
    "ORDER BY",
    "GROUP BY",
    "ASC",
    "DESC",
    "LIMIT 1",
    "*",
    "select",
    "where",
    "%",
    "\\",
    "\u{e9}",
];

fn custom(name: &str) -> Option<SearchAttributeType> {
    Some(match name {
        "Tag" => SearchAttributeType::Keyword,
        "Tags" => SearchAttributeType::KeywordList,
        "Notes" => SearchAttributeType::Text,
        "Score" => SearchAttributeType::Int,
        "Price" => SearchAttributeType::Double,
        "Flag" => SearchAttributeType::Bool,
        "Due" => SearchAttributeType::Datetime,
        _ => return None,
    })
}

/// Records with and without every kind of attribute, some of them of the wrong type (a record
/// written before its attribute was re-registered).
fn records() -> Vec<VisibilityRecord> {
    let attr = |json: &str| Payload {
        data: json.as_bytes().to_vec(),
        ..Default::default()
    };
    let base = VisibilityRecord {
        workflow_id: "wf".into(),
        run_id: "run".into(),
        first_run_id: "run".into(),
        workflow_type: "Greet".into(),
        task_queue: "tq".into(),
        status: WorkflowStatus::Running,
        start_time: 1_700_000_000 * SECOND,
        execution_time: 1_700_000_000 * SECOND,
        close_time: 0,
        history_length: 0,
        history_size_bytes: 0,
        memo: None,
        search_attributes: None,
    };
    let mut full = base.clone();
    full.status = WorkflowStatus::Completed;
    full.close_time = base.start_time + 5 * SECOND;
    full.search_attributes = Some(SearchAttributes {
        indexed_fields: [
            ("Tag", attr("\"a\"")),
            ("Tags", attr("[\"a\",\"b\"]")),
            ("Notes", attr("\"some words\"")),
            ("Score", attr("7")),
            ("Price", attr("1.5")),
            ("Flag", attr("true")),
            ("Due", attr("\"2024-01-01T00:00:00Z\"")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    });
    let mut wrong = base.clone();
    wrong.search_attributes = Some(SearchAttributes {
        indexed_fields: ["Tag", "Tags", "Score", "Price", "Flag", "Due"]
            .into_iter()
            .map(|k| (k.to_string(), attr("{not json")))
            .collect(),
    });
    vec![base, full, wrong]
}

pub fn query(data: &[u8]) {
    let mut source = Source::new(data);
    let allow_group_by = source.chance(2);
    let text = if source.chance(2) {
        String::from_utf8_lossy(source.rest()).into_owned()
    } else {
        let mut text = String::new();
        while !source.is_empty() && text.len() < 4096 {
            text.push_str(*source.pick(WORDS));
            text.push(' ');
        }
        text
    };
    let Ok(query) = Query::parse(&text, custom, allow_group_by) else {
        return;
    };
    assert_eq!(
        Query::parse(&text, custom, allow_group_by).ok().as_ref(),
        Some(&query),
        "parsing is deterministic"
    );
    assert!(allow_group_by || !query.is_grouped());
    for record in records() {
        query.matches(&record);
        query.group_of(&record);
    }
}
