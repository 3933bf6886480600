//! Schedule RPCs: create, describe, patch (trigger, pause, unpause), delete and list. The
//! schedule is stored by `history::schedules` and fired by the `scheduler`.

use dura_history::{
    HistoryError,
    schedules::{self, ScheduleRecord, ScheduleRequest},
    time::{Nanos, to_timestamp},
};
use temporalio_protos::temporal::api::{
    enums::v1::{ScheduleOverlapPolicy, TaskQueueKind},
    schedule::v1::{ScheduleInfo, ScheduleListEntry, ScheduleListInfo, schedule_action::Action},
    workflowservice::v1 as pb,
};

use super::workflows::{Workflows, required};
use crate::error::{ApiError, ApiResult};

/// Future action times DescribeSchedule and ListSchedules show (the real server's numbers).
const DESCRIBE_FUTURE_ACTIONS: usize = 10;
const LIST_FUTURE_ACTIONS: usize = 5;

impl Workflows {
    pub async fn create_schedule(
        &self,
        req: pb::CreateScheduleRequest,
    ) -> ApiResult<pb::CreateScheduleResponse> {
        let ns = self.namespace_id(&req.namespace)?;
        required(&req.schedule_id, "ScheduleId")?;
        let mut schedule = req
            .schedule
            .ok_or_else(|| ApiError::InvalidArgument("Schedule is not set on request.".into()))?;
        match schedule.action.as_mut().and_then(|a| a.action.as_mut()) {
            Some(Action::StartWorkflow(w)) => {
                if !w.cron_schedule.is_empty() || w.versioning_override.is_some() {
                    return Err(ApiError::Unimplemented(
                        "cron_schedule and versioning_override on a scheduled workflow are not supported by this server yet".into(),
                    ));
                }
                if let Some(q) = w.task_queue.as_mut().filter(|q| q.kind == 0) {
                    q.kind = TaskQueueKind::Normal as i32;
                }
                required(&w.workflow_id, "WorkflowId")?;
                if w.workflow_type.as_ref().is_none_or(|t| t.name.is_empty()) {
                    return Err(ApiError::InvalidArgument(
                        "WorkflowType is not set on request.".into(),
                    ));
                }
                if w.task_queue.as_ref().is_none_or(|q| q.name.is_empty()) {
                    return Err(ApiError::InvalidArgument(
                        "TaskQueue is not set on request.".into(),
                    ));
                }
            }
            _ => {
                return Err(ApiError::InvalidArgument(
                    "Schedule action is not set on request.".into(),
                ));
            }
        }
        // The real server's default catch-up window: a year.
        let policies = schedule.policies.get_or_insert_with(Default::default);
        policies
            .catchup_window
            .get_or_insert(prost_types::Duration {
                seconds: 365 * 24 * 3600,
                nanos: 0,
            });
        let policies = *policies;
        let overlap = policies.overlap_policy;
        if overlap != 0
            && overlap != ScheduleOverlapPolicy::Skip as i32
            && overlap != ScheduleOverlapPolicy::AllowAll as i32
        {
            return Err(ApiError::Unimplemented(
                "schedule overlap policies other than SKIP and ALLOW_ALL are not supported by this server yet".into(),
            ));
        }
        if policies.pause_on_failure {
            return Err(ApiError::Unimplemented(
                "schedule policy pause_on_failure is not supported by this server yet".into(),
            ));
        }
        if req.initial_patch.is_some_and(|p| p != Default::default()) {
            return Err(ApiError::Unimplemented(
                "CreateSchedule initial_patch is not supported by this server yet".into(),
            ));
        }
        if req
            .search_attributes
            .as_ref()
            .is_some_and(|s| !s.indexed_fields.is_empty())
        {
            return Err(ApiError::Unimplemented(
                "search attributes on schedules are not supported by this server yet".into(),
            ));
        }
        if schedule.state.as_ref().is_some_and(|s| s.limited_actions) {
            return Err(ApiError::Unimplemented(
                "schedule state limited_actions is not supported by this server yet".into(),
            ));
        }
        let now = self.engine.now();
        let record = ScheduleRecord {
            namespace_id: ns.clone(),
            schedule_id: req.schedule_id.clone(),
            schedule,
            memo: req.memo,
            request_id: if req.request_id.is_empty() {
                uuid::Uuid::new_v4().to_string()
            } else {
                req.request_id
            },
            create_time: now,
            update_time: now,
            action_count: 0,
            overlap_skipped: 0,
            missed_catchup_window: 0,
            recent_actions: Vec::new(),
            processed_until: now,
            last_started: None,
            conflict_token: 0,
        };
        self.engine
            .execute_schedule(&ns, &req.schedule_id, ScheduleRequest::Create(record))
            .await?;
        Ok(pb::CreateScheduleResponse::default())
    }

    fn existing_schedule(
        &self,
        namespace: &str,
        schedule_id: &str,
    ) -> ApiResult<(String, ScheduleRecord)> {
        let ns = self.namespace_id(namespace)?;
        required(schedule_id, "ScheduleId")?;
        let record = self
            .engine
            .read_schedule(&ns, schedule_id)?
            .ok_or_else(|| HistoryError::NotFound(format!("schedule {schedule_id} not found")))?;
        Ok((ns, record))
    }

    pub async fn describe_schedule(
        &self,
        req: pb::DescribeScheduleRequest,
    ) -> ApiResult<pb::DescribeScheduleResponse> {
        let (_, record) = self.existing_schedule(&req.namespace, &req.schedule_id)?;
        let future = future_times(&record, self.engine.now(), DESCRIBE_FUTURE_ACTIONS);
        Ok(pb::DescribeScheduleResponse {
            info: Some(ScheduleInfo {
                action_count: record.action_count,
                overlap_skipped: record.overlap_skipped,
                missed_catchup_window: record.missed_catchup_window,
                running_workflows: self.running_actions(&record).await?,
                recent_actions: record.recent_actions.clone(),
                future_action_times: future,
                create_time: Some(to_timestamp(record.create_time)),
                update_time: Some(to_timestamp(record.update_time)),
                ..Default::default()
            }),
            conflict_token: record.conflict_token.to_be_bytes().to_vec(),
            schedule: Some(record.schedule),
            memo: record.memo,
            ..Default::default()
        })
    }

    /// The most recent action's workflow, while it runs (in whichever shard it is).
    async fn running_actions(
        &self,
        record: &ScheduleRecord,
    ) -> ApiResult<Vec<temporalio_protos::temporal::api::common::v1::WorkflowExecution>> {
        let Some(last) = &record.last_started else {
            return Ok(Vec::new());
        };
        let (_, ms) = self
            .engine
            .read_run_anywhere(&record.namespace_id, &last.workflow_id, &last.run_id)
            .await?;
        Ok(if ms.is_running() {
            vec![last.clone()]
        } else {
            Vec::new()
        })
    }

    pub async fn patch_schedule(
        &self,
        req: pb::PatchScheduleRequest,
    ) -> ApiResult<pb::PatchScheduleResponse> {
        let (ns, _) = self.existing_schedule(&req.namespace, &req.schedule_id)?;
        let patch = req.patch.unwrap_or_default();
        if !patch.backfill_request.is_empty() {
            return Err(ApiError::Unimplemented(
                "schedule backfill is not supported by this server yet".into(),
            ));
        }
        if !patch.pause.is_empty() || !patch.unpause.is_empty() {
            let request = ScheduleRequest::Patch {
                pause: patch.pause,
                unpause: patch.unpause,
                now: self.engine.now(),
            };
            self.engine
                .execute_schedule(&ns, &req.schedule_id, request)
                .await?;
        }
        if patch.trigger_immediately.is_some() {
            self.engine.trigger_schedule(&ns, &req.schedule_id).await?;
        }
        Ok(pb::PatchScheduleResponse::default())
    }

    pub async fn delete_schedule(
        &self,
        req: pb::DeleteScheduleRequest,
    ) -> ApiResult<pb::DeleteScheduleResponse> {
        let (ns, _) = self.existing_schedule(&req.namespace, &req.schedule_id)?;
        self.engine
            .execute_schedule(&ns, &req.schedule_id, ScheduleRequest::Delete)
            .await?;
        Ok(pb::DeleteScheduleResponse::default())
    }

    /// Every schedule of the namespace, ordered by id, in one page.
    pub async fn list_schedules(
        &self,
        req: pb::ListSchedulesRequest,
    ) -> ApiResult<pb::ListSchedulesResponse> {
        let ns = self.namespace_id(&req.namespace)?;
        if !req.query.is_empty() {
            return Err(ApiError::Unimplemented(
                "ListSchedules query is not supported by this server yet".into(),
            ));
        }
        let mut records = Vec::new();
        let prefix = dura_history::keys::schedule_prefix(Some(&ns));
        for shard in self.engine.shard_ids() {
            let view = self.engine.fresh_view(shard, &prefix).await?;
            records.extend(schedules::scan(&view, Some(&ns))?);
        }
        records.sort_by(|a, b| a.schedule_id.cmp(&b.schedule_id));
        Ok(pb::ListSchedulesResponse {
            schedules: records
                .into_iter()
                .map(|r| {
                    let state = r.schedule.state.clone().unwrap_or_default();
                    let workflow_type =
                        match r.schedule.action.as_ref().and_then(|a| a.action.as_ref()) {
                            Some(Action::StartWorkflow(w)) => w.workflow_type.clone(),
                            _ => None,
                        };
                    ScheduleListEntry {
                        schedule_id: r.schedule_id.clone(),
                        memo: r.memo.clone(),
                        info: Some(ScheduleListInfo {
                            spec: r.schedule.spec.clone(),
                            workflow_type,
                            notes: state.notes,
                            paused: state.paused,
                            recent_actions: r.recent_actions.clone(),
                            future_action_times: future_times(
                                &r,
                                self.engine.now(),
                                LIST_FUTURE_ACTIONS,
                            ),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }
                })
                .collect(),
            next_page_token: Vec::new(),
        })
    }
}

/// The next nominal times, whether or not the schedule is paused (as the real server shows).
fn future_times(record: &ScheduleRecord, now: Nanos, n: usize) -> Vec<prost_types::Timestamp> {
    let after = record.processed_until.max(now);
    schedules::next_times(record.schedule.spec.as_ref(), after, n)
        .into_iter()
        .map(to_timestamp)
        .collect()
}
