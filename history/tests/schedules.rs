//! The stored schedule: created once per id, paused and resumed, actions recorded once.

use dura_history::{
    HistoryError,
    schedules::{ScheduleRecord, ScheduleRequest, apply, next_times, read},
    store::MemKv,
    time::SECOND,
};
use temporalio_protos::temporal::api::{
    common::v1::WorkflowExecution,
    schedule::v1::{IntervalSpec, Schedule, ScheduleSpec},
};

const T0: i64 = 1_700_000_000 * SECOND;

fn record(request_id: &str) -> ScheduleRecord {
    ScheduleRecord {
        namespace_id: "ns".into(),
        schedule_id: "s".into(),
        schedule: Schedule {
            spec: Some(ScheduleSpec {
                interval: vec![IntervalSpec {
                    interval: Some(prost_types::Duration {
                        seconds: 10,
                        nanos: 0,
                    }),
                    phase: None,
                }],
                ..Default::default()
            }),
            ..Default::default()
        },
        memo: None,
        request_id: request_id.into(),
        create_time: T0,
        update_time: T0,
        action_count: 0,
        overlap_skipped: 0,
        missed_catchup_window: 0,
        recent_actions: Vec::new(),
        processed_until: T0,
        last_started: None,
        conflict_token: 0,
    }
}

fn run(kv: &mut MemKv, request: ScheduleRequest) -> Result<Option<ScheduleRecord>, HistoryError> {
    apply(kv, "ns", "s", request)
}

#[test]
fn a_schedule_is_created_once_and_actions_are_recorded_once() {
    let mut kv = MemKv::default();
    run(&mut kv, ScheduleRequest::Create(record("r1"))).unwrap();
    // The same create again (a client retry) is fine; another one is refused.
    run(&mut kv, ScheduleRequest::Create(record("r1"))).unwrap();
    assert!(matches!(
        run(&mut kv, ScheduleRequest::Create(record("r2"))),
        Err(HistoryError::WorkflowAlreadyStarted { .. })
    ));

    let stored = read(&kv, "ns", "s").unwrap().unwrap();
    let nominal = next_times(stored.schedule.spec.as_ref(), stored.processed_until, 1)[0];
    assert_eq!(nominal % (10 * SECOND), 0);
    let action = || ScheduleRequest::RecordAction {
        nominal_time: Some(nominal),
        actual_time: nominal + 1,
        started: Some(WorkflowExecution {
            workflow_id: "wf".into(),
            run_id: "run".into(),
        }),
    };
    run(&mut kv, action()).unwrap();
    // Recorded twice (a leader repeating itself after a crash): counted once.
    let after = run(&mut kv, action()).unwrap().unwrap();
    assert_eq!((after.action_count, after.processed_until), (1, nominal));
    assert_eq!(after.recent_actions.len(), 1);

    // A skipped action moves the schedule on without a start.
    let skipped = run(
        &mut kv,
        ScheduleRequest::RecordAction {
            nominal_time: Some(nominal + 10 * SECOND),
            actual_time: nominal + 10 * SECOND,
            started: None,
        },
    )
    .unwrap()
    .unwrap();
    assert_eq!((skipped.action_count, skipped.overlap_skipped), (1, 1));

    // A time older than the catch-up window is passed over, once.
    let missed = || ScheduleRequest::MissedCatchup {
        nominal_time: nominal + 20 * SECOND,
    };
    run(&mut kv, missed()).unwrap();
    let after = run(&mut kv, missed()).unwrap().unwrap();
    assert_eq!(
        (
            after.missed_catchup_window,
            after.processed_until,
            after.action_count
        ),
        (1, nominal + 20 * SECOND, 1)
    );
}

#[test]
fn pause_resume_and_delete() {
    let mut kv = MemKv::default();
    run(&mut kv, ScheduleRequest::Create(record("r1"))).unwrap();
    let paused = run(
        &mut kv,
        ScheduleRequest::Patch {
            pause: "maintenance".into(),
            unpause: String::new(),
            now: T0 + 100 * SECOND,
        },
    )
    .unwrap()
    .unwrap();
    assert!(paused.paused());
    assert_eq!(paused.schedule.state.as_ref().unwrap().notes, "maintenance");
    assert_eq!(paused.conflict_token, 2);
    // Resuming skips what passed while paused.
    let resumed = run(
        &mut kv,
        ScheduleRequest::Patch {
            pause: String::new(),
            unpause: "back".into(),
            now: T0 + 500 * SECOND,
        },
    )
    .unwrap()
    .unwrap();
    assert!(!resumed.paused());
    assert_eq!(resumed.processed_until, T0 + 500 * SECOND);

    assert_eq!(run(&mut kv, ScheduleRequest::Delete).unwrap(), None);
    assert!(read(&kv, "ns", "s").unwrap().is_none());
    assert!(matches!(
        run(&mut kv, ScheduleRequest::Delete),
        Err(HistoryError::NotFound(_))
    ));
}

#[test]
fn unsupported_spec_fields_are_refused() {
    let mut kv = MemKv::default();
    let mut r = record("r1");
    r.schedule.spec.as_mut().unwrap().timezone_name = "Europe/Berlin".into();
    assert!(matches!(
        run(&mut kv, ScheduleRequest::Create(r)),
        Err(HistoryError::Unimplemented(m)) if m.contains("timezone_name")
    ));
    let mut r = record("r1");
    r.schedule.spec.as_mut().unwrap().cron_string = vec!["not a cron".into()];
    assert!(matches!(
        run(&mut kv, ScheduleRequest::Create(r)),
        Err(HistoryError::InvalidArgument(_))
    ));
    assert!(read(&kv, "ns", "s").unwrap().is_none());
}
