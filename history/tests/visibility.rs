//! The visibility record follows the run through the store: written at start, rewritten when
//! the run closes, not on every event.

mod support;

use dura_history::limits::Limits;
use dura_history::{
    RunRequest,
    api::lifecycle::TerminateRequest,
    keys,
    mutable_state::WorkflowStatus,
    store::{self, KvRead, MemKv},
    visibility::{self, query::Query},
};
use support::{T0, start_request};

fn listed(kv: &MemKv, q: &str) -> Vec<(String, WorkflowStatus)> {
    let query = Query::parse(q, |_| None, false).unwrap();
    visibility::scan(kv, "ns", &query)
        .unwrap()
        .into_iter()
        .map(|r| (r.workflow_id, r.status))
        .collect()
}

#[test]
fn record_is_written_at_start_and_close() {
    let mut kv = MemKv::default();
    store::start_workflow(&mut kv, start_request("wf-1", "run-1", "r1")).unwrap();
    store::start_workflow(&mut kv, start_request("wf-2", "run-2", "r2")).unwrap();
    assert_eq!(listed(&kv, "ExecutionStatus = 'Running'").len(), 2);
    assert!(
        listed(
            &kv,
            "WorkflowId = 'wf-1' AND WorkflowType = 'SayHello' AND TaskQueue = 'tq'"
        )
        .len()
            == 1
    );

    let key = keys::visibility("ns", "wf-1", "run-1");
    let at_start = kv.get(&key).unwrap();
    store::apply_to_run(
        &mut kv,
        "ns",
        "wf-1",
        "",
        RunRequest::Terminate(TerminateRequest {
            reason: "done".into(),
            details: None,
            identity: "me".into(),
            now: T0 + 5,
        }),
        &Limits::temporal(),
    )
    .unwrap();
    assert_ne!(kv.get(&key).unwrap(), at_start);
    assert_eq!(
        listed(&kv, "ExecutionStatus = 'Terminated'"),
        [("wf-1".to_string(), WorkflowStatus::Terminated)]
    );
    assert_eq!(
        listed(&kv, "ExecutionStatus = 'Running'"),
        [("wf-2".to_string(), WorkflowStatus::Running)]
    );
    // Another namespace sees nothing.
    let query = Query::parse("", |_| None, false).unwrap();
    assert!(visibility::scan(&kv, "other", &query).unwrap().is_empty());
}
