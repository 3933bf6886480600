use temporalio_protos::temporal::api::common::v1::{Payload, SearchAttributes};

use super::{
    SearchAttributeType, VisibilityRecord, page,
    query::{Query, parse_rfc3339},
};
use crate::{mutable_state::WorkflowStatus, time::SECOND};

const T0: i64 = 1_700_000_000 * SECOND;

fn record(workflow_id: &str, status: WorkflowStatus, start: i64, close: i64) -> VisibilityRecord {
    VisibilityRecord {
        workflow_id: workflow_id.into(),
        run_id: format!("run-{workflow_id}"),
        first_run_id: format!("run-{workflow_id}"),
        workflow_type: "Greet".into(),
        task_queue: "tq".into(),
        status,
        start_time: start,
        execution_time: start,
        close_time: close,
        history_length: if close > 0 { 11 } else { 0 },
        history_size_bytes: 0,
        memo: None,
        search_attributes: None,
    }
}

fn with_attr(mut r: VisibilityRecord, name: &str, json: &str) -> VisibilityRecord {
    r.search_attributes
        .get_or_insert_with(SearchAttributes::default)
        .indexed_fields
        .insert(
            name.into(),
            Payload {
                data: json.as_bytes().to_vec(),
                ..Default::default()
            },
        );
    r
}

fn custom(name: &str) -> Option<SearchAttributeType> {
    match name {
        "Tag" => Some(SearchAttributeType::Keyword),
        "Tags" => Some(SearchAttributeType::KeywordList),
        "Notes" => Some(SearchAttributeType::Text),
        "Score" => Some(SearchAttributeType::Int),
        _ => None,
    }
}

fn parse(q: &str) -> Query {
    Query::parse(q, custom, false).unwrap_or_else(|e| panic!("{q}: {e}"))
}

fn error(q: &str) -> String {
    Query::parse(q, custom, true).unwrap_err().to_string()
}

fn running() -> VisibilityRecord {
    record("a", WorkflowStatus::Running, T0, 0)
}

fn completed() -> VisibilityRecord {
    record("b", WorkflowStatus::Completed, T0 + SECOND, T0 + 5 * SECOND)
}

#[test]
fn system_attributes_filter() {
    let (r, c) = (running(), completed());
    let cases: &[(&str, bool, bool)] = &[
        ("", true, true),
        ("WorkflowId = 'a'", true, false),
        ("WorkflowId != 'a'", false, true),
        ("ExecutionStatus = 'Running'", true, false),
        ("ExecutionStatus = 2", false, true),
        (
            "ExecutionStatus = 'WORKFLOW_EXECUTION_STATUS_COMPLETED'",
            false,
            true,
        ),
        ("ExecutionStatus IN ('Running', 'Completed')", true, true),
        ("WorkflowType = 'Greet' AND TaskQueue = \"tq\"", true, true),
        ("WorkflowId = 'a' OR WorkflowId = 'b'", true, true),
        (
            "(WorkflowId = 'a' OR WorkflowId = 'b') AND ExecutionStatus = 'Running'",
            true,
            false,
        ),
        ("CloseTime IS NULL", true, false),
        ("CloseTime IS NOT NULL", false, true),
        ("WorkflowId STARTS_WITH 'a'", true, false),
        ("WorkflowId NOT STARTS_WITH 'a'", false, true),
        ("StartTime > '2023-11-14T22:13:20Z'", false, true),
        ("StartTime >= '2023-11-14T22:13:20Z'", true, true),
        (
            "StartTime BETWEEN '2023-11-14T22:13:20Z' AND '2023-11-14T23:13:20+01:00'",
            true,
            false,
        ),
        ("HistoryLength > 5", false, true),
        ("ExecutionDuration = '4s'", false, true),
        // Three-valued logic: a comparison with a missing value is unknown, so NOT keeps it out.
        ("NOT (CloseTime > '2000-01-01T00:00:00Z')", false, false),
        ("`WorkflowId` = 'a'", true, false),
    ];
    for (q, want_r, want_c) in cases {
        let query = parse(q);
        assert_eq!(query.matches(&r), *want_r, "{q} on the running record");
        assert_eq!(query.matches(&c), *want_c, "{q} on the completed record");
    }
}

#[test]
fn custom_attributes_filter() {
    let r = with_attr(
        with_attr(
            with_attr(running(), "Tag", "\"blue\""),
            "Tags",
            "[\"x\",\"y\"]",
        ),
        "Score",
        "7",
    );
    let r = with_attr(r, "Notes", "\"The Quick fox\"");
    for (q, want) in [
        ("Tag = 'blue'", true),
        ("Tag = 'red'", false),
        ("Tags = 'y'", true),
        ("Tags != 'y'", false),
        ("Tags IN ('q', 'x')", true),
        ("Score >= 7 AND Score < 8", true),
        ("Score = 7.0", true),
        ("Notes = 'quick'", true),
        ("Notes = 'slow'", false),
        ("Tag IS NOT NULL", true),
    ] {
        assert_eq!(parse(q).matches(&r), want, "{q}");
    }
    // A record without the attribute matches neither `=` nor `!=`.
    assert!(!parse("Tag = 'blue'").matches(&completed()));
    assert!(!parse("Tag != 'blue'").matches(&completed()));
    assert!(parse("Tag IS NULL").matches(&completed()));
}

#[test]
fn errors_match_the_real_server() {
    for (q, want) in [
        (
            "ExecutionStatus = '2'",
            "invalid query: invalid expression: invalid ExecutionStatus value '2'",
        ),
        (
            "WorkflowType = ",
            "invalid query: malformed SQL query: syntax error at position 42",
        ),
        (
            "NoSuchAttribute = 'x'",
            "invalid query: invalid search attribute: NoSuchAttribute",
        ),
        (
            "WorkflowId = 'a' ORDER BY StartTime",
            "invalid query: operation is not supported: 'ORDER BY' clause",
        ),
        (
            "WorkflowId = 'a' LIMIT 3",
            "invalid query: operation is not supported: 'LIMIT' clause",
        ),
        (
            "StartTime > 'bad'",
            "invalid query: invalid expression: unable to parse datetime 'bad'",
        ),
        (
            "HistoryLength = 'x'",
            "invalid query: invalid expression: invalid value type for search attribute HistoryLength of type Int: \"x\" (type: string)",
        ),
        (
            "WorkflowId > 3",
            "invalid query: invalid expression: invalid value type for search attribute WorkflowId of type Keyword: 3 (type: int64)",
        ),
        (
            "WorkflowId = a",
            "invalid query: operation is not supported: column name on the right side of comparison expression (did you forget to quote \"a\"?)",
        ),
        (
            "Score STARTS_WITH 'a'",
            "invalid query: operation is not supported: operator 'STARTS_WITH' not supported for Int type search attribute 'Score'",
        ),
        (
            "WorkflowId = 'a' GROUP BY WorkflowType",
            "invalid query: operation is not supported: 'GROUP BY' clause is not supported for search attribute WorkflowType",
        ),
    ] {
        assert_eq!(error(q), want, "{q}");
    }
    assert!(Query::parse("WorkflowId = 'a' GROUP BY ExecutionStatus", custom, false).is_err());
    for q in [
        "(WorkflowId = 'a'",
        "WorkflowId = 'a' AND",
        "WorkflowId 'a'",
        "WorkflowId = 'unterminated",
        "= 'a'",
    ] {
        assert!(error(q).contains("malformed SQL query"), "{q}");
    }
}

#[test]
fn group_by_execution_status() {
    let q = Query::parse("GROUP BY ExecutionStatus", custom, true).unwrap();
    assert!(q.is_grouped());
    assert_eq!(q.group_of(&running()).as_deref(), Some("Running"));
    assert_eq!(q.group_of(&completed()).as_deref(), Some("Completed"));
}

#[test]
fn rfc3339() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(T0));
    assert_eq!(
        parse_rfc3339("2023-11-14T23:13:20.5+01:00"),
        Some(T0 + SECOND / 2)
    );
    assert_eq!(
        parse_rfc3339("2023-11-14T22:13:20.123456789123Z"),
        Some(T0 + 123_456_789)
    );
    for bad in [
        "2023-11-14",
        "2023-13-14T22:13:20Z",
        "2023-11-14T22:13:20",
        "2023-11-14T22:13:20+0100",
    ] {
        assert_eq!(parse_rfc3339(bad), None, "{bad}");
    }
}

#[test]
fn pages_are_ordered_and_stable() {
    // Open runs first, then closed by close time, newest first.
    let records: Vec<_> = (0..5)
        .map(|i| {
            record(
                &format!("c{i}"),
                WorkflowStatus::Completed,
                T0,
                T0 + i * SECOND,
            )
        })
        .chain([running()])
        .collect();
    let first = page(records.clone(), 4, &[]).unwrap();
    let ids: Vec<_> = first
        .records
        .iter()
        .map(|r| r.workflow_id.as_str())
        .collect();
    assert_eq!(ids, ["a", "c4", "c3", "c2"]);
    // A run that starts between pages does not shift the next page.
    let mut more = records.clone();
    more.push(record("new", WorkflowStatus::Running, T0 + 9 * SECOND, 0));
    let second = page(more, 4, &first.next_page_token).unwrap();
    let ids: Vec<_> = second
        .records
        .iter()
        .map(|r| r.workflow_id.as_str())
        .collect();
    assert_eq!(ids, ["c1", "c0"]);
    assert!(second.next_page_token.is_empty());
    assert!(page(records, 4, b"garbage").is_err());
}
