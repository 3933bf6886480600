//! Fires schedules: one task per armed schedule, run by the leader of the schedule's shard,
//! sleeps until the next nominal time of its spec after what it has processed, starts the
//! action's workflow and records the action (`history::schedules`). Every applied change to
//! the schedule (create, pause, unpause, delete, a recorded action) arms or wakes the task,
//! which re-reads the record; a deleted schedule ends it, and so does the end of leadership.
//!
//! Starts are idempotent per (schedule, nominal time) through their request id, and the record
//! ignores an action it already has, so a leader that crashes between the two repeats safely.

use std::{collections::HashMap, sync::Arc, time::Duration};

use dura_history::{
    HistoryError,
    api::start::StartWorkflowRequest,
    events::{go_enum_name, json_string_payloads},
    schedules::{self, ScheduleRecord, ScheduleRequest},
    time::{Nanos, SECOND, format_rfc3339_seconds, from_duration},
};
use temporalio_protos::temporal::api::{
    common::v1::{SearchAttributes, WorkflowExecution},
    enums::v1::ScheduleOverlapPolicy,
    schedule::v1::{SchedulePolicies, schedule_action::Action},
};
use tokio::sync::Notify;

use crate::{
    clock::ClockHold,
    engine::Engine,
    error::{ApiError, ApiResult},
    leader::{Fence, ShardLeader},
    metrics::SCHEDULES,
    shard::{ShardCommand, ShardOutcome},
};

const RETRY_BACKOFF: Duration = Duration::from_secs(1);

/// The armed schedules of this node, by (namespace id, schedule id), each with the term of
/// the leadership it runs under.
#[derive(Default)]
pub struct Scheduler {
    armed: std::sync::Mutex<HashMap<(String, String), Armed>>,
}

struct Armed {
    leader: ShardLeader,
    wake: Arc<Wake>,
}

/// Tells a schedule's task to read its record again. On a time-skipping clock each wake
/// carries a hold, released only once the task waits on its next time again: a change (a new
/// schedule, a recorded action) is never jumped over between its commit and that wait.
#[derive(Default)]
struct Wake {
    notify: Notify,
    holds: std::sync::Mutex<Vec<ClockHold>>,
}

impl Wake {
    fn wake(&self, hold: ClockHold) {
        self.holds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(hold);
        self.notify.notify_one();
    }

    /// The holds of the wakes so far; the task keeps them until it waits again.
    fn take_holds(&self) -> Vec<ClockHold> {
        std::mem::take(&mut *self.holds.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Engine {
    /// Runs `request` against the schedule in its shard.
    pub async fn execute_schedule(
        &self,
        namespace_id: &str,
        schedule_id: &str,
        request: ScheduleRequest,
    ) -> ApiResult<Option<ScheduleRecord>> {
        let shard = self.shard_for(namespace_id, &schedules::scheduler_workflow_id(schedule_id));
        let command = ShardCommand::Schedule {
            namespace_id: namespace_id.to_string(),
            schedule_id: schedule_id.to_string(),
            request,
        };
        match self.execute(shard, command).await? {
            ShardOutcome::Schedule(record) => Ok(record),
            other => Err(ApiError::Internal(format!(
                "unexpected outcome of a schedule request: {other:?}"
            ))),
        }
    }

    pub fn read_schedule(
        &self,
        namespace_id: &str,
        schedule_id: &str,
    ) -> ApiResult<Option<ScheduleRecord>> {
        let reader = self
            .reader(self.shard_for(namespace_id, &schedules::scheduler_workflow_id(schedule_id)))?;
        Ok(schedules::read(&reader, namespace_id, schedule_id)?)
    }

    /// Makes sure the schedule's task runs under `leader` and sees its latest state. A task
    /// left from an ended leadership is replaced.
    pub(crate) fn arm_schedule(&self, leader: &ShardLeader, namespace_id: &str, schedule_id: &str) {
        let key = (namespace_id.to_string(), schedule_id.to_string());
        let mut armed = self
            .scheduler()
            .armed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let hold = self.clock().hold();
        if let Some(task) = armed.get(&key).filter(|a| a.leader.is_current()) {
            task.wake.wake(hold);
            return;
        }
        let wake = Arc::new(Wake::default());
        wake.wake(hold);
        armed.insert(
            key.clone(),
            Armed {
                leader: leader.clone(),
                wake: wake.clone(),
            },
        );
        leader.spawn(run(self.clone(), key, wake, leader.fence()));
    }

    /// Runs the schedule's action now (PatchSchedule's trigger), paused or not.
    pub async fn trigger_schedule(&self, namespace_id: &str, schedule_id: &str) -> ApiResult<()> {
        let record = self
            .read_schedule(namespace_id, schedule_id)?
            .ok_or_else(|| HistoryError::NotFound(format!("schedule {schedule_id} not found")))?;
        let now = self.now();
        let request_id = uuid::Uuid::new_v4().to_string();
        let started = start_action(self, &record, now, request_id, None).await?;
        let counted = started.is_some();
        self.execute_schedule(
            namespace_id,
            schedule_id,
            ScheduleRequest::RecordAction {
                nominal_time: None,
                actual_time: now,
                started,
            },
        )
        .await?;
        if counted {
            SCHEDULES.started(&self.namespace_label(namespace_id), None);
        }
        Ok(())
    }
}

async fn run(engine: Engine, key: (String, String), wake: Arc<Wake>, fence: Fence) {
    let (namespace_id, schedule_id) = (&key.0, &key.1);
    loop {
        let woken_by = wake.take_holds();
        let record = {
            let mut armed = engine
                .scheduler()
                .armed
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match engine.read_schedule(namespace_id, schedule_id) {
                Ok(Some(record)) => record,
                // Deleted: decided under the lock, so an arm for a new schedule of the same
                // id either finds this task gone or wakes it before it looks.
                Ok(None) => {
                    armed.remove(&key);
                    return;
                }
                Err(e) => {
                    tracing::warn!(schedule_id, error = %e, "reading schedule failed; retrying");
                    drop(armed);
                    tokio::time::sleep(RETRY_BACKOFF).await;
                    continue;
                }
            }
        };
        let next = schedules::next_times(record.schedule.spec.as_ref(), record.processed_until, 1);
        let Some(&nominal) = next.first().filter(|_| !record.paused()) else {
            // Paused, or the spec has no more times: wait for a change.
            drop(woken_by);
            wake.notify.notified().await;
            continue;
        };
        // A time-skipping clock may jump to the nominal time; it waits for the action.
        let next_time = engine.clock().sleep_until(nominal);
        drop(woken_by);
        let _firing = tokio::select! {
            hold = next_time => hold,
            _ = wake.notify.notified() => continue,
        };
        if let Err(e) = fire(&engine, &record, nominal, fence).await {
            tracing::warn!(schedule_id, error = %e, "schedule action failed; retrying");
            tokio::time::sleep(RETRY_BACKOFF).await;
        }
    }
}

/// The real server's catch-up window when a schedule sets none
/// (`service/worker/scheduler`'s `DefaultCatchupWindow`).
const DEFAULT_CATCHUP_WINDOW: Nanos = 365 * 24 * 3600 * SECOND;
/// The real server's floor for one that is set, zero included (`MinCatchupWindow`).
const MIN_CATCHUP_WINDOW: Nanos = 10 * SECOND;

/// What the schedule's policies make of one nominal time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Firing {
    /// It passed longer ago than the catch-up window (the server was down): it is counted as
    /// missed and nothing starts.
    MissedCatchupWindow,
    /// The action starts whatever else runs.
    Start,
    /// The action starts unless the last one it started still runs, in which case the overlap
    /// policy skips it. Whether it runs takes a read, which only this answer asks for.
    StartUnlessRunning,
}

fn catchup_window(policies: Option<&SchedulePolicies>) -> Nanos {
    match policies.and_then(|p| p.catchup_window.as_ref()) {
        None => DEFAULT_CATCHUP_WINDOW,
        Some(window) => from_duration(Some(window)).max(MIN_CATCHUP_WINDOW),
    }
}

fn decide(policies: Option<&SchedulePolicies>, nominal: Nanos, now: Nanos) -> Firing {
    // Strictly older, as the real scheduler compares.
    if now - nominal > catchup_window(policies) {
        return Firing::MissedCatchupWindow;
    }
    // UNSPECIFIED means SKIP, as on the real server. The buffering, cancelling and terminating
    // policies are refused when the schedule is created; were one stored anyway, not
    // overlapping is the nearest of what this server does.
    match policies.map_or(0, |p| p.overlap_policy) {
        p if p == ScheduleOverlapPolicy::AllowAll as i32 => Firing::Start,
        _ => Firing::StartUnlessRunning,
    }
}

/// One nominal time: starts the action as [`decide`] says, then records what happened.
async fn fire(
    engine: &Engine,
    record: &ScheduleRecord,
    nominal: i64,
    fence: Fence,
) -> ApiResult<()> {
    let namespace = engine.namespace_label(&record.namespace_id);
    let start = match decide(record.schedule.policies.as_ref(), nominal, engine.now()) {
        Firing::MissedCatchupWindow => {
            engine
                .execute_schedule(
                    &record.namespace_id,
                    &record.schedule_id,
                    ScheduleRequest::MissedCatchup {
                        nominal_time: nominal,
                    },
                )
                .await?;
            SCHEDULES.missed_catchup_window(&namespace);
            return Ok(());
        }
        Firing::Start => true,
        Firing::StartUnlessRunning => match &record.last_started {
            Some(last) => !is_running(engine, &record.namespace_id, last).await?,
            None => true,
        },
    };
    let started = if start {
        let request_id = format!("{}:{nominal}", record.schedule_id);
        start_action(engine, record, nominal, request_id, Some(fence)).await?
    } else {
        None
    };
    let actual_time = engine.now();
    let skipped = started.is_none();
    engine
        .execute_schedule(
            &record.namespace_id,
            &record.schedule_id,
            ScheduleRequest::RecordAction {
                nominal_time: Some(nominal),
                actual_time,
                started,
            },
        )
        .await?;
    // Counted once recorded: a start repeated after a failed record finds its own run.
    if skipped {
        SCHEDULES.overlap_skipped(
            &namespace,
            &overlap_policy_name(record.schedule.policies.as_ref()),
        );
    } else {
        let late = u64::try_from(actual_time - nominal).unwrap_or(0);
        SCHEDULES.started(&namespace, Some(Duration::from_nanos(late)));
    }
    Ok(())
}

/// The policy as Temporal's `schedule_overlap_policy` label names it (Go's enum form,
/// `Skip`); unset is SKIP.
fn overlap_policy_name(policies: Option<&SchedulePolicies>) -> String {
    let policy = match policies.map_or(0, |p| p.overlap_policy) {
        0 => ScheduleOverlapPolicy::Skip,
        p => ScheduleOverlapPolicy::try_from(p).unwrap_or(ScheduleOverlapPolicy::Unspecified),
    };
    go_enum_name(policy.as_str_name(), "SCHEDULE_OVERLAP_POLICY_")
}

/// Whether the run is still open; it lives in whatever shard its workflow id falls in.
async fn is_running(
    engine: &Engine,
    namespace_id: &str,
    execution: &WorkflowExecution,
) -> ApiResult<bool> {
    let run =
        dura_history::keys::RunKey::new(namespace_id, &execution.workflow_id, &execution.run_id);
    let key = dura_history::keys::mutable_state(&run);
    let view = engine
        .fresh_view(engine.shard_for(namespace_id, &execution.workflow_id), &key)
        .await?;
    Ok(dura_history::store::read_run(&view, &run)?.is_some_and(|ms| ms.is_running()))
}

/// Starts the schedule's workflow for `nominal`; `None` when its id is taken by a running
/// workflow (the action is then counted as skipped, like an overlap).
async fn start_action(
    engine: &Engine,
    record: &ScheduleRecord,
    nominal: i64,
    request_id: String,
    fence: Option<Fence>,
) -> ApiResult<Option<WorkflowExecution>> {
    let Some(Action::StartWorkflow(w)) = record
        .schedule
        .action
        .as_ref()
        .and_then(|a| a.action.clone())
    else {
        return Err(ApiError::Internal(
            "schedule has no start-workflow action".into(),
        ));
    };
    let workflow_id = if record
        .schedule
        .policies
        .as_ref()
        .is_some_and(|p| p.keep_original_workflow_id)
    {
        w.workflow_id.clone()
    } else {
        format!("{}-{}", w.workflow_id, format_rfc3339_seconds(nominal))
    };
    // What the real scheduler adds, so visibility can tell scheduled runs apart.
    let mut search_attributes = w.search_attributes.clone().unwrap_or_default();
    for (name, value) in [
        (
            "TemporalScheduledStartTime",
            format_rfc3339_seconds(nominal),
        ),
        ("TemporalScheduledById", record.schedule_id.clone()),
    ] {
        if let Some(payload) = json_string_payloads(&value).payloads.pop() {
            search_attributes
                .indexed_fields
                .insert(name.into(), payload);
        }
    }
    let now = engine.now();
    let start = StartWorkflowRequest {
        namespace_id: record.namespace_id.clone(),
        workflow_id: workflow_id.clone(),
        run_id: uuid::Uuid::new_v4().to_string(),
        request_id,
        workflow_type: w.workflow_type.map(|t| t.name).unwrap_or_default(),
        task_queue: w.task_queue.map(|q| q.name).unwrap_or_default(),
        input: w.input,
        execution_timeout: from_duration(w.workflow_execution_timeout.as_ref()),
        run_timeout: from_duration(w.workflow_run_timeout.as_ref()),
        task_timeout: from_duration(w.workflow_task_timeout.as_ref()),
        retry_policy: w.retry_policy,
        memo: w.memo,
        search_attributes: Some(SearchAttributes {
            indexed_fields: search_attributes.indexed_fields,
        }),
        header: w.header,
        priority: w.priority,
        identity: "temporal-scheduler".into(),
        id_reuse_policy: w.workflow_id_reuse_policy,
        id_conflict_policy: 0,
        start_delay: 0,
        user_metadata: w.user_metadata,
        parent: None,
        eager: false,
        now,
    };
    let shard = engine.shard_for(&record.namespace_id, &workflow_id);
    let command = ShardCommand::Start(start);
    let started = match fence {
        Some(fence) => engine.execute_as(fence, shard, command).await,
        None => engine.execute(shard, command).await,
    };
    match started {
        Ok(ShardOutcome::Started { reply, .. }) => Ok(Some(WorkflowExecution {
            workflow_id,
            run_id: reply.run_id,
        })),
        Err(ApiError::History(HistoryError::WorkflowAlreadyStarted { .. })) => Ok(None),
        Ok(other) => Err(ApiError::Internal(format!(
            "unexpected outcome of a scheduled start: {other:?}"
        ))),
        Err(e) => {
            SCHEDULES.start_failed(&engine.namespace_label(&record.namespace_id));
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOMINAL: Nanos = 1_700_000_000 * SECOND;

    fn policies(catchup_window: Option<Nanos>, overlap: ScheduleOverlapPolicy) -> SchedulePolicies {
        SchedulePolicies {
            catchup_window: catchup_window.map(|w| prost_types::Duration {
                seconds: w / SECOND,
                nanos: (w % SECOND) as i32,
            }),
            overlap_policy: overlap as i32,
            ..Default::default()
        }
    }

    fn decide_late(policies: Option<&SchedulePolicies>, late: Nanos) -> Firing {
        decide(policies, NOMINAL, NOMINAL + late)
    }

    #[test]
    fn a_time_older_than_the_catchup_window_is_missed_and_one_just_within_it_is_not() {
        let hour = policies(Some(3600 * SECOND), ScheduleOverlapPolicy::AllowAll);
        for (late, want) in [
            (0, Firing::Start),
            (3600 * SECOND, Firing::Start),
            (3600 * SECOND + 1, Firing::MissedCatchupWindow),
            (2 * 3600 * SECOND, Firing::MissedCatchupWindow),
        ] {
            assert_eq!(decide_late(Some(&hour), late), want, "{late}ns late");
        }
    }

    #[test]
    fn an_unset_catchup_window_is_the_real_servers_year() {
        let year = 365 * 24 * 3600 * SECOND;
        let unset = policies(None, ScheduleOverlapPolicy::AllowAll);
        assert_eq!(catchup_window(Some(&unset)), year);
        assert_eq!(decide_late(Some(&unset), year), Firing::Start);
        assert_eq!(
            decide_late(Some(&unset), year + 1),
            Firing::MissedCatchupWindow
        );
        // No policies at all: the same year, and SKIP.
        assert_eq!(catchup_window(None), year);
        assert_eq!(decide_late(None, year), Firing::StartUnlessRunning);
        assert_eq!(decide_late(None, year + 1), Firing::MissedCatchupWindow);
    }

    #[test]
    fn a_catchup_window_below_ten_seconds_is_ten_seconds() {
        for set in [0, 1, 9 * SECOND + 999_999_999, -SECOND] {
            let p = policies(Some(set), ScheduleOverlapPolicy::AllowAll);
            assert_eq!(catchup_window(Some(&p)), 10 * SECOND, "{set}ns");
            assert_eq!(decide_late(Some(&p), 10 * SECOND), Firing::Start, "{set}ns");
            assert_eq!(
                decide_late(Some(&p), 10 * SECOND + 1),
                Firing::MissedCatchupWindow,
                "{set}ns"
            );
        }
        let exactly = policies(Some(10 * SECOND), ScheduleOverlapPolicy::AllowAll);
        assert_eq!(catchup_window(Some(&exactly)), 10 * SECOND);
        let longer = policies(Some(11 * SECOND + 5), ScheduleOverlapPolicy::AllowAll);
        assert_eq!(catchup_window(Some(&longer)), 11 * SECOND + 5);
    }

    /// CreateSchedule accepts UNSPECIFIED, SKIP and ALLOW_ALL and refuses the others as not
    /// supported yet (tests/tests/schedules.rs); only ALLOW_ALL starts over a running action.
    #[test]
    fn every_overlap_policy() {
        use ScheduleOverlapPolicy::*;
        for (overlap, want) in [
            (Unspecified, Firing::StartUnlessRunning),
            (Skip, Firing::StartUnlessRunning),
            (AllowAll, Firing::Start),
            (BufferOne, Firing::StartUnlessRunning),
            (BufferAll, Firing::StartUnlessRunning),
            (CancelOther, Firing::StartUnlessRunning),
            (TerminateOther, Firing::StartUnlessRunning),
        ] {
            let p = policies(Some(3600 * SECOND), overlap);
            assert_eq!(decide_late(Some(&p), SECOND), want, "{overlap:?}");
            // The catch-up window comes first, whatever the overlap policy.
            assert_eq!(
                decide_late(Some(&p), 3600 * SECOND + 1),
                Firing::MissedCatchupWindow,
                "{overlap:?}"
            );
        }
        assert_eq!(decide_late(None, SECOND), Firing::StartUnlessRunning);
    }
}
