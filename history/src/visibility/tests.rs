use temporalio_protos::temporal::api::common::v1::{Payload, SearchAttributes};

use super::{
    SearchAttributeType, VisibilityRecord, page,
    query::{Query, parse_rfc3339},
};
use crate::{error::HistoryError, mutable_state::WorkflowStatus, time::SECOND};

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
        "Price" => Some(SearchAttributeType::Double),
        "Flag" => Some(SearchAttributeType::Bool),
        "Due" => Some(SearchAttributeType::Datetime),
        _ => None,
    }
}

fn parse(q: &str) -> Query {
    Query::parse(q, custom, false).unwrap_or_else(|e| panic!("{q}: {e}"))
}

fn error(q: &str) -> String {
    Query::parse(q, custom, true).unwrap_err().to_string()
}

/// The workflow ids of `records` that `q` matches, in order.
fn matching<'a>(q: &str, records: &'a [VisibilityRecord]) -> Vec<&'a str> {
    let query = parse(q);
    records
        .iter()
        .filter(|r| query.matches(r))
        .map(|r| r.workflow_id.as_str())
        .collect()
}

/// Running records with these ids, each with the attribute's JSON value when it has one.
fn records_with(name: &str, values: &[(&str, Option<&str>)]) -> Vec<VisibilityRecord> {
    values
        .iter()
        .map(|(id, json)| {
            let r = record(id, WorkflowStatus::Running, T0, 0);
            match json {
                Some(json) => with_attr(r, name, json),
                None => r,
            }
        })
        .collect()
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
            "Score STARTS_WITH 5",
            "invalid query: operation is not supported: operator 'STARTS_WITH' not supported for Int type search attribute 'Score'",
        ),
        // The server converts the value before it looks at the operator.
        (
            "Score STARTS_WITH 'a'",
            "invalid query: invalid expression: invalid value type for search attribute Score of type Int: \"a\" (type: string)",
        ),
        (
            "WorkflowId = 'a' GROUP BY WorkflowType",
            "invalid query: operation is not supported: 'GROUP BY' clause is not supported for search attribute WorkflowType",
        ),
    ] {
        assert_eq!(error(q), want, "{q}");
    }
    assert_eq!(
        Query::parse("WorkflowId = 'a' GROUP BY ExecutionStatus", custom, false)
            .unwrap_err()
            .to_string(),
        "invalid query: operation is not supported: 'GROUP BY' clause is not supported for search attribute ExecutionStatus"
    );
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
    assert_eq!(
        parse_rfc3339("2024-02-29T00:00:00Z"),
        Some(1_709_164_800 * SECOND)
    );
    for bad in [
        "2023-11-14",
        "2023-13-14T22:13:20Z",
        "2023-11-14T22:13:20",
        "2023-11-14T22:13:20+0100",
        // What Go's JSON decoding of a time refuses, which is how the server reads payloads.
        "2023-11-14t22:13:20Z",
        "2023-11-14 22:13:20Z",
        "2023-11-14T22:13:20z",
        "2023-11-14T22:13:60Z",
        "2023-02-29T00:00:00Z",
        "2023-04-31T00:00:00Z",
        // Only a query's literals get Go's more lenient layout parser.
        "2023-11-14T2:13:20Z",
        "2023-11-14T22:13:20,5Z",
        "2023-11-14T22:13:20+24:00",
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
    assert!(matches!(
        page(records, 4, b"garbage"),
        Err(HistoryError::InvalidArgument(m)) if m == "Invalid NextPageToken."
    ));
}

/// The server's parser reports the position (from 1, in `select * from table1 where <query>`)
/// just past the token it could not use, and quotes that token when it has text of its own.
#[test]
fn syntax_errors_say_where_like_the_servers_parser() {
    for (q, want) in [
        ("(WorkflowId = 'a'", "syntax error at position 45"),
        ("WorkflowId = 'a' AND", "syntax error at position 48"),
        ("= 'a'", "syntax error at position 29"),
        ("WorkflowId 'a'", "syntax error at position 42 near 'a'"),
        // Keywords are quoted lower-cased, as the server's tokenizer keeps them.
        (
            "WorkflowId = 'a' AND AND",
            "syntax error at position 52 near 'and'",
        ),
        ("WorkflowId = 'a' $", "syntax error at position 46 near '$'"),
        ("WorkflowId = 1abc", "syntax error at position 42 near '1'"),
        (
            "WorkflowId = 'unterminated",
            "syntax error at position 54 near 'unterminated'",
        ),
        ("WorkflowId = ``", "syntax error at position 43"),
        (
            "WorkflowId = 'a' /* unterminated",
            "syntax error at position 60 near '/* unterminated'",
        ),
        ("WorkflowId NOT = 'a'", "syntax error at position 44"),
        ("WorkflowId IS 'a'", "syntax error at position 45 near 'a'"),
        ("WorkflowId IN ()", "syntax error at position 44"),
        // Without a filter the server leaves out `where `, but only for an exact `order by`.
        ("order by", "syntax error at position 30"),
        (
            "ORDER  BY StartTime",
            "syntax error at position 33 near 'order'",
        ),
    ] {
        assert_eq!(
            error(q),
            format!("invalid query: malformed SQL query: {want}"),
            "{q}"
        );
    }
}

#[test]
fn string_literals_unescape_like_the_servers_parser() {
    let ids: Vec<_> = [
        "it's",
        "say \"hi\"",
        "a\nb",
        "tab\there",
        "back\\slash",
        "x",
        "quoted",
        "'quoted'",
    ]
    .into_iter()
    .map(|id| record(id, WorkflowStatus::Running, T0, 0))
    .collect();
    for (q, want) in [
        (r"WorkflowId = 'it''s'", "it's"),
        (r"WorkflowId = 'it\'s'", "it's"),
        (r#"WorkflowId = "it's""#, "it's"),
        (r#"WorkflowId = "say ""hi""""#, "say \"hi\""),
        (r#"WorkflowId = 'say \"hi\"'"#, "say \"hi\""),
        (r"WorkflowId = 'a\nb'", "a\nb"),
        (r"WorkflowId = 'tab\there'", "tab\there"),
        (r"WorkflowId = 'back\\slash'", "back\\slash"),
        // An escape the tokenizer does not know stands for the character itself.
        (r"WorkflowId = '\x'", "x"),
        // The server reads a value back out of quotes with `strings.Trim(_, "'")`, which also
        // drops the quotes a string itself starts or ends with.
        (r"WorkflowId = '''quoted'''", "quoted"),
        (r#"WorkflowId = "'quoted'""#, "quoted"),
        (r"WorkflowId IN ('''x''', 'nothing')", "x"),
    ] {
        assert_eq!(matching(q, &ids), [want], "{q}");
    }
    assert_eq!(
        error(r"HistoryLength = 'a\tb'"),
        "invalid query: invalid expression: invalid value type for search attribute HistoryLength of type Int: \"a\\tb\" (type: string)"
    );
}

#[test]
fn comments_semicolons_and_backticks_are_the_servers() {
    let records = [running(), completed()];
    for q in [
        "WorkflowId = 'a' -- the first one",
        "/* runs */ WorkflowId = 'a' # trailing",
        "WorkflowId = 'a';",
        // The server prints the column back and drops every backtick from that.
        "`Work``flowId` = 'a'",
        "`WorkflowId` = 'a' AND `ExecutionStatus` != 'Completed'",
    ] {
        assert_eq!(matching(q, &records), ["a"], "{q}");
    }
}

#[test]
fn not_equal_has_both_spellings() {
    let records = [running(), completed()];
    for q in [
        "WorkflowId != 'a'",
        "WorkflowId <> 'a'",
        "NOT WorkflowId = 'a'",
        "WorkflowId NOT IN ('a')",
    ] {
        assert_eq!(matching(q, &records), ["b"], "{q}");
    }
}

#[test]
fn negated_in_and_between() {
    let records = records_with(
        "Score",
        &[
            ("a", Some("1")),
            ("b", Some("5")),
            ("c", Some("9")),
            ("d", None),
        ],
    );
    for (q, want) in [
        ("Score IN (1, 9)", &["a", "c"][..]),
        // A run without the attribute is unknown to both, so in neither.
        ("Score NOT IN (1, 9)", &["b"]),
        ("Score BETWEEN 1 AND 5", &["a", "b"]),
        ("Score NOT BETWEEN 1 AND 5", &["c"]),
        ("Score NOT BETWEEN 2 AND 8", &["a", "c"]),
        ("Score BETWEEN 1 && 5", &["a", "b"]),
        ("WorkflowId BETWEEN 'b' AND 'c'", &["b", "c"]),
        ("WorkflowId NOT BETWEEN 'b' AND 'c'", &["a", "d"]),
        ("WorkflowId NOT IN ('a', 'd')", &["b", "c"]),
    ] {
        assert_eq!(matching(q, &records), want, "{q}");
    }
    let tags = records_with(
        "Tags",
        &[
            ("a", Some(r#"["x","y"]"#)),
            ("b", Some(r#"["z"]"#)),
            ("c", None),
        ],
    );
    assert_eq!(matching("Tags NOT IN ('x')", &tags), ["b"]);
    assert_eq!(
        error("Notes NOT IN ('a')"),
        "invalid query: operation is not supported: operator 'NOT IN' not supported for Text type search attribute 'Notes'"
    );
    assert_eq!(
        error("Tags NOT BETWEEN 'a' AND 'b'"),
        "invalid query: invalid expression: cannot do range condition on search attribute 'Tags' of type KeywordList"
    );
}

#[test]
fn keywords_in_any_case() {
    let records = [running(), completed()];
    for (q, want) in [
        (
            "WorkflowId = 'a' or WorkflowId = 'b' and ExecutionStatus = 'Running'",
            &["a"][..],
        ),
        (
            "not WorkflowId in ('a') and HistoryLength between 1 and 20",
            &["b"],
        ),
        ("WorkflowId not between 'a' and 'a'", &["b"]),
        (
            "WorkflowId starts_with 'a' Or CloseTime Is Not Null",
            &["a", "b"],
        ),
        ("WorkflowId not starts_with 'a'", &["b"]),
        ("CloseTime is null", &["a"]),
    ] {
        assert_eq!(matching(q, &records), want, "{q}");
    }
    for (q, want) in [
        // Names are not keywords: they keep their case.
        ("workflowid = 'a'", "invalid search attribute: workflowid"),
        (
            "WorkflowId = 'a' order by StartTime desc",
            "operation is not supported: 'ORDER BY' clause",
        ),
        (
            "order by StartTime",
            "operation is not supported: 'ORDER BY' clause",
        ),
        (
            "WorkflowId = 'a' limit 1",
            "operation is not supported: 'LIMIT' clause",
        ),
    ] {
        assert_eq!(error(q), format!("invalid query: {want}"), "{q}");
    }
    let grouped = Query::parse("group by ExecutionStatus", custom, true).unwrap();
    assert_eq!(grouped.group_of(&completed()).as_deref(), Some("Completed"));
}

#[test]
fn and_binds_tighter_than_or() {
    let records = [
        with_attr(with_attr(running(), "Tag", r#""x""#), "Score", "1"),
        with_attr(with_attr(completed(), "Tag", r#""y""#), "Score", "5"),
        with_attr(
            with_attr(record("c", WorkflowStatus::Running, T0, 0), "Tag", r#""x""#),
            "Score",
            "9",
        ),
    ];
    // `x` holds for a and c, `five` for b, `nine` for c.
    let (x, five, nine) = ("Tag = 'x'", "Score = 5", "Score = 9");
    for (q, want) in [
        (format!("{x} OR {five} AND {nine}"), &["a", "c"][..]),
        (format!("({x} OR {five}) AND {nine}"), &["c"]),
        (format!("{five} AND {nine} OR {x}"), &["a", "c"]),
        (format!("{five} AND ({nine} OR {x})"), &[]),
        (format!("NOT {x} AND {five}"), &["b"]),
        (format!("NOT ({x} AND {nine})"), &["a", "b"]),
        (format!("{x} && {five} || {nine}"), &["c"]),
        (format!("NOT NOT {x}"), &["a", "c"]),
        (format!("(({x}))"), &["a", "c"]),
    ] {
        assert_eq!(matching(&q, &records), want, "{q}");
    }
}

#[test]
fn bool_attributes() {
    let records = records_with(
        "Flag",
        &[("a", Some("true")), ("b", Some("false")), ("c", None)],
    );
    for (q, want) in [
        ("Flag = true", &["a"][..]),
        ("Flag = TRUE", &["a"]),
        ("Flag = false", &["b"]),
        ("Flag != true", &["b"]),
        ("Flag <> false", &["a"]),
        ("Flag IN (true, false)", &["a", "b"]),
        ("Flag NOT IN (true)", &["b"]),
        ("Flag > false", &["a"]),
        ("NOT Flag = true", &["b"]),
        ("Flag IS NULL", &["c"]),
    ] {
        assert_eq!(matching(q, &records), want, "{q}");
    }
    for (q, want) in [
        (
            "Flag = 'true'",
            "invalid expression: invalid value type for search attribute Flag of type Bool: \"true\" (type: string)",
        ),
        (
            "Flag = 1",
            "invalid expression: invalid value type for search attribute Flag of type Bool: 1 (type: int64)",
        ),
        (
            "Flag BETWEEN false AND true",
            "invalid expression: cannot do range condition on search attribute 'Flag' of type Bool",
        ),
        (
            "Flag IS TRUE",
            "invalid expression: 'IS' operator can only be used as 'IS NULL' or 'IS NOT NULL'",
        ),
        (
            "Flag IS NOT FALSE",
            "invalid expression: 'IS' operator can only be used as 'IS NULL' or 'IS NOT NULL'",
        ),
        ("NoSuchFlag IS TRUE", "invalid search attribute: NoSuchFlag"),
        (
            "true",
            "operation is not supported: expression of type sqlparser.BoolVal",
        ),
        // The server passes a boolean on to its database unchecked; here it is a type error.
        (
            "WorkflowId = true",
            "invalid expression: invalid value type for search attribute WorkflowId of type Keyword: true (type: bool)",
        ),
        (
            "ExecutionStatus = false",
            "invalid expression: unexpected value type bool for search attribute ExecutionStatus",
        ),
    ] {
        assert_eq!(error(q), format!("invalid query: {want}"), "{q}");
    }
}

#[test]
fn double_attributes() {
    let records = records_with(
        "Price",
        &[
            ("a", Some("2.5")),
            ("b", Some("10")),
            ("c", Some("-3")),
            ("d", None),
        ],
    );
    for (q, want) in [
        ("Price = 2.5", &["a"][..]),
        ("Price > 2", &["a", "b"]),
        ("Price >= 10", &["b"]),
        ("Price = 10.0", &["b"]),
        ("Price = 1e1", &["b"]),
        ("Price = 1.E1", &["b"]),
        ("Price = .25e1", &["a"]),
        ("Price = 25e-1", &["a"]),
        ("Price < 0", &["c"]),
        ("Price = -3", &["c"]),
        // The grammar folds signs into an integer, with or without a space.
        ("Price = - 3", &["c"]),
        ("Price = - -3", &[]),
        ("Price = +10", &["b"]),
        ("Price BETWEEN 2 AND 10", &["a", "b"]),
        ("Price BETWEEN -5 AND 2.5", &["a", "c"]),
        ("Price IN (2.5, 10)", &["a", "b"]),
        ("Price NOT IN (10)", &["a", "c"]),
    ] {
        assert_eq!(matching(q, &records), want, "{q}");
    }
    for (q, want) in [
        // A sign in front of anything but an integer stays an expression, which the server
        // does not take as a value.
        (
            "Price > -1.5",
            "invalid expression: unexpected value type *sqlparser.UnaryExpr",
        ),
        (
            "Price > -'1'",
            "invalid expression: unexpected value type *sqlparser.UnaryExpr",
        ),
        (
            "Price = 'x'",
            "invalid expression: invalid value type for search attribute Price of type Double: \"x\" (type: string)",
        ),
        (
            "Price = 1e",
            "invalid expression: unable to parse value \"1e\"",
        ),
        (
            "Price = 1e999",
            "invalid expression: unable to parse value \"1e999\"",
        ),
        (
            "Price = 0x1F",
            "invalid expression: unable to parse value \"0x1F\"",
        ),
        (
            "Price = NULL",
            "invalid expression: unexpected value type *sqlparser.NullVal",
        ),
        (
            "Price STARTS_WITH 1",
            "operation is not supported: operator 'STARTS_WITH' not supported for Double type search attribute 'Price'",
        ),
    ] {
        assert_eq!(error(q), format!("invalid query: {want}"), "{q}");
    }
    // Floats print as Go's `%v` prints them.
    for (literal, shown) in [
        ("2.50", "2.5"),
        ("1e6", "1e+06"),
        ("123456.5", "123456.5"),
        ("0.0001", "0.0001"),
        ("0.00001", "1e-05"),
        ("99999999999999999999", "1e+20"),
    ] {
        assert_eq!(
            error(&format!("WorkflowId = {literal}")),
            format!(
                "invalid query: invalid expression: invalid value type for search attribute WorkflowId of type Keyword: {shown} (type: float64)"
            ),
            "{literal}"
        );
    }
}

#[test]
fn datetime_attributes() {
    let records = records_with(
        "Due",
        &[
            ("a", Some(r#""2023-11-14T22:13:20.5Z""#)),
            ("b", Some(r#""2023-11-14T22:13:21Z""#)),
            ("c", None),
        ],
    );
    for (q, want) in [
        ("Due = '2023-11-14T22:13:20.5Z'", &["a"][..]),
        ("Due = '2023-11-14T22:13:20.500000000Z'", &["a"]),
        // Digits past nanoseconds are dropped, not rounded.
        ("Due = '2023-11-14T22:13:20.5000000009Z'", &["a"]),
        ("Due > '2023-11-14T22:13:20Z'", &["a", "b"]),
        ("Due > '2023-11-14T22:13:20.499999999Z'", &["a", "b"]),
        ("Due > '2023-11-14T22:13:20.500000001Z'", &["b"]),
        ("Due < '2023-11-14T22:13:21Z'", &["a"]),
        ("Due = '2023-11-14T23:13:20.5+01:00'", &["a"]),
        ("Due = '2023-11-14T21:13:21-01:00'", &["b"]),
        ("Due = 1700000000500000000", &["a"]),
        (
            "Due BETWEEN '2023-11-14T22:13:20Z' AND '2023-11-14T22:13:20.9Z'",
            &["a"],
        ),
        (
            "Due NOT BETWEEN '2023-11-14T22:13:20Z' AND '2023-11-14T22:13:20.9Z'",
            &["b"],
        ),
        ("Due IN ('2023-11-14T22:13:21Z')", &["b"]),
        // Go's layout parser, which the server's `time.Parse` falls back to, also takes these.
        ("Due = '2023-11-14T22:13:20,5Z'", &["a"]),
        ("Due < '2023-11-15T1:00:00Z'", &["a", "b"]),
        ("Due = '2023-11-15T22:13:21+24:00'", &["b"]),
        ("StartTime = '2023-11-14T22:13:20Z'", &["a", "b", "c"]),
    ] {
        assert_eq!(matching(q, &records), want, "{q}");
    }
    for bad in [
        "2023-11-14t22:13:20Z",
        "2023-11-14 22:13:20Z",
        "2023-11-14T22:13:20z",
        "2023-11-14T22:13:20",
        "2023-11-14T22:13:20+0100",
        "2023-11-14T22:13:20.Z",
        "2023-11-14T22:13:60Z",
        "2023-11-14T24:00:00Z",
        "2023-02-29T00:00:00Z",
        "2023-11-14T22:13:20+25:00",
        "2023-11-14",
    ] {
        assert_eq!(
            error(&format!("Due > '{bad}'")),
            format!("invalid query: invalid expression: unable to parse datetime '{bad}'"),
        );
    }
    assert_eq!(
        error("Due > 1.5"),
        "invalid query: invalid expression: invalid value type for search attribute Due of type Datetime: 1.5 (type: float64)"
    );
    assert_eq!(
        error("Due STARTS_WITH '2023-11-14T22:13:20Z'"),
        "invalid query: operation is not supported: operator 'STARTS_WITH' not supported for Datetime type search attribute 'Due'"
    );
}

#[test]
fn operators_the_server_parses_but_refuses() {
    for (q, want) in [
        (
            "WorkflowId LIKE 'a%'",
            "operator 'LIKE' not supported for Keyword type search attribute 'WorkflowId'",
        ),
        (
            "WorkflowId NOT LIKE 'a%'",
            "operator 'NOT LIKE' not supported for Keyword type search attribute 'WorkflowId'",
        ),
        (
            "WorkflowId REGEXP 'a'",
            "operator 'REGEXP' not supported for Keyword type search attribute 'WorkflowId'",
        ),
        (
            "WorkflowId rlike 'a'",
            "operator 'REGEXP' not supported for Keyword type search attribute 'WorkflowId'",
        ),
        (
            "WorkflowId <=> 'a'",
            "operator '<=>' not supported for Keyword type search attribute 'WorkflowId'",
        ),
        (
            "Tags STARTS_WITH 'a'",
            "operator 'STARTS_WITH' not supported for KeywordList type search attribute 'Tags'",
        ),
        (
            "Tags > 'a'",
            "operator '>' not supported for KeywordList type search attribute 'Tags'",
        ),
        (
            "Notes IN ('a')",
            "operator 'IN' not supported for Text type search attribute 'Notes'",
        ),
        (
            "Notes <> 'a' AND Notes < 'a'",
            "operator '<' not supported for Text type search attribute 'Notes'",
        ),
    ] {
        assert_eq!(
            error(q),
            format!("invalid query: operation is not supported: {want}"),
            "{q}"
        );
    }
    for (q, want) in [
        (
            "WorkflowId = 'a' AND WorkflowType",
            "invalid expression: incomplete expression",
        ),
        (
            "'a' = WorkflowId",
            "invalid expression: must be a column name but was *sqlparser.SQLVal",
        ),
        (
            "'a'",
            "operation is not supported: expression of type *sqlparser.SQLVal",
        ),
        (
            "WorkflowId = NULL",
            "invalid expression: unexpected value type *sqlparser.NullVal",
        ),
        // The filter is converted before the sort columns, and those before sorting is refused.
        (
            "NoSuch = 'x' ORDER BY StartTime",
            "invalid search attribute: NoSuch",
        ),
        (
            "WorkflowId = 'a' ORDER BY NoSuch",
            "invalid search attribute: NoSuch",
        ),
        (
            "WorkflowId = 'a' ORDER BY Notes",
            "operation is not supported: unable to sort by search attribute type Text",
        ),
    ] {
        assert_eq!(error(q), format!("invalid query: {want}"), "{q}");
    }
}

#[test]
fn execution_status_names_are_the_servers() {
    let records = [running(), completed()];
    for (q, want) in [
        (
            "ExecutionStatus = 'WORKFLOW_EXECUTION_STATUS_RUNNING'",
            &["a"][..],
        ),
        ("ExecutionStatus = 1", &["a"]),
        ("ExecutionStatus IN ('Completed', 'TimedOut')", &["b"]),
        ("ExecutionStatus != 'ContinuedAsNew'", &["a", "b"]),
        (
            "ExecutionStatus = 'WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW'",
            &[],
        ),
        // Statuses the server knows and no run here has.
        ("ExecutionStatus = 'Unspecified'", &[]),
        ("ExecutionStatus = 0", &[]),
        ("ExecutionStatus = 'Paused'", &[]),
    ] {
        assert_eq!(matching(q, &records), want, "{q}");
    }
    for (q, want) in [
        // The server's enum names are case-sensitive.
        (
            "ExecutionStatus = 'WORKFLOW_EXECUTION_STATUS_running'",
            "invalid ExecutionStatus value 'WORKFLOW_EXECUTION_STATUS_running'",
        ),
        (
            "ExecutionStatus = 'running'",
            "invalid ExecutionStatus value 'running'",
        ),
        ("ExecutionStatus = 99", "invalid ExecutionStatus value 99"),
        (
            "ExecutionStatus = 1.5",
            "unexpected value type float64 for search attribute ExecutionStatus",
        ),
        (
            "ExecutionStatus STARTS_WITH 'Run'",
            "invalid ExecutionStatus value 'Run'",
        ),
    ] {
        assert_eq!(
            error(q),
            format!("invalid query: invalid expression: {want}"),
            "{q}"
        );
    }
}

/// The server's parser allows 199 parentheses, NOTs and signs open at once, and a syntax tree
/// less than 1000 levels deep (the statement and its WHERE take two, a comparison with its
/// column four).
#[test]
fn nesting_and_depth_limits_are_the_servers() {
    let records = [running(), completed()];
    let nots = |n: usize| format!("{}WorkflowId = 'a'", "NOT ".repeat(n));
    assert_eq!(matching(&nots(199), &records), ["b"]);
    assert_eq!(
        error(&nots(200)),
        "invalid query: malformed SQL query: max nesting level reached at position 827 near 'not'"
    );
    let parens = |n: usize| format!("{}WorkflowId = 'a'{}", "(".repeat(n), ")".repeat(n));
    assert_eq!(matching(&parens(199), &records), ["a"]);
    assert_eq!(
        error(&parens(200)),
        "invalid query: malformed SQL query: max nesting level reached at position 228"
    );
    // Spaced, since `--` starts a comment.
    assert_eq!(
        error(&format!("HistoryLength = {}1.5", "- ".repeat(200))),
        "invalid query: malformed SQL query: max nesting level reached at position 443"
    );
    let conditions = |n: usize| vec!["WorkflowId = 'a'"; n].join(" AND ");
    assert_eq!(matching(&conditions(995), &records), ["a"]);
    assert_eq!(
        error(&conditions(996)),
        "invalid query: malformed SQL query: max ast depth reached"
    );
    // However long, a query is refused without recursing through it.
    assert_eq!(
        error(&conditions(200_000)),
        "invalid query: malformed SQL query: max ast depth reached"
    );
    // A syntax error anywhere is what the server reports first.
    let q = format!("{} AND", conditions(996));
    assert_eq!(
        error(&q),
        format!(
            "invalid query: malformed SQL query: syntax error at position {}",
            "select * from table1 where ".len() + q.len() + 1
        )
    );
}
