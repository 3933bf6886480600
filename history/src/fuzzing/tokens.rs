//! Tokens a client sends back: task tokens, List page tokens, history page tokens.

use dura_codec::Persisted;

use super::Source;
use crate::{
    mutable_state::WorkflowStatus,
    time::SECOND,
    tokens::{TaskToken, decode_event_cursor, encode_event_cursor},
    visibility::{VisibilityRecord, page},
};

fn records(n: usize) -> Vec<VisibilityRecord> {
    (0..n)
        .map(|i| VisibilityRecord {
            workflow_id: format!("wf-{i}"),
            run_id: format!("run-{i}"),
            first_run_id: format!("run-{i}"),
            workflow_type: "Greet".into(),
            task_queue: "tq".into(),
            status: WorkflowStatus::Completed,
            // Some share a time, so the run id decides their order.
            start_time: (i as i64 / 2) * SECOND,
            execution_time: 0,
            close_time: (i as i64 / 3) * SECOND,
            history_length: 0,
            history_size_bytes: 0,
            memo: None,
            search_attributes: None,
        })
        .collect()
}

pub fn tokens(data: &[u8]) {
    let mut source = Source::new(data);
    let page_size = source.below(8);
    let count = source.below(12);
    let bytes = source.rest();

    if let Ok(token) = TaskToken::parse(bytes) {
        assert_eq!(TaskToken::parse(&token.encode()).ok(), Some(token));
    }
    if let Ok(Some(cursor)) = decode_event_cursor(bytes) {
        assert_eq!(encode_event_cursor(cursor), bytes);
    }

    // Whatever the token, a page holds at most a page of records, and following the tokens
    // from there visits every remaining record once, in order.
    let all = records(count);
    let Ok(mut current) = page(all.clone(), page_size, bytes) else {
        return;
    };
    let mut seen: Vec<String> = Vec::new();
    loop {
        assert!(current.records.len() <= page_size.max(1));
        seen.extend(current.records.iter().map(|r| r.run_id.clone()));
        if current.next_page_token.is_empty() {
            break;
        }
        current = match page(all.clone(), page_size, &current.next_page_token) {
            Ok(next) => next,
            Err(e) => panic!("a token we made is refused: {e}"),
        };
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "a record listed twice: {seen:?}");
    if bytes.is_empty() {
        assert_eq!(
            seen.len(),
            count,
            "the first page's tokens reach every record"
        );
    }
}
