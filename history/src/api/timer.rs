//! FireTimer: every timer task comes back here when due
//! (temporalio/temporal `service/history/timer_queue_active_task_executor.go`).
//!
//! A timer that no longer matches the mutable state (timer canceled, activity attempt moved on,
//! workflow task replaced, run closed) is stale: firing it is a no-op with an empty transition,
//! never an error, so the caller can fire timers blindly after failovers.

use serde::{Deserialize, Serialize};
use temporalio_protos::temporal::api::{
    enums::v1::{RetryState, TimeoutType},
    history::v1::{
        TimerFiredEventAttributes, WorkflowExecutionTimedOutEventAttributes,
        WorkflowTaskTimedOutEventAttributes, history_event::Attributes,
    },
};

use super::activity;
use crate::{
    error::Result,
    events::new_event,
    mutable_state::{MutableState, WorkflowStatus},
    tasks::{TimerKind, TimerTask, WorkflowTaskTimeoutKind},
    time::Nanos,
    transition::{Transition, Tx, run},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FireTimerRequest {
    pub timer: TimerTask,
    pub now: Nanos,
}

pub fn fire_timer(ms: &mut MutableState, req: FireTimerRequest) -> Result<Transition<()>> {
    run(ms, req.now, |tx| {
        if !tx.ms.is_running() {
            return Ok(());
        }
        match req.timer.kind {
            TimerKind::User {
                timer_id,
                started_event_id,
            } => {
                let matches = tx
                    .ms
                    .timers
                    .get(&timer_id)
                    .is_some_and(|t| t.started_event_id == started_event_id);
                if matches {
                    tx.ms.timers.remove(&timer_id);
                    tx.add(Attributes::TimerFiredEventAttributes(
                        TimerFiredEventAttributes {
                            timer_id,
                            started_event_id,
                        },
                    ));
                    tx.schedule_workflow_task();
                }
            }
            TimerKind::ActivityTimeout {
                scheduled_event_id,
                attempt,
                timeout,
            } => activity::fire_timeout(tx, scheduled_event_id, attempt, timeout),
            TimerKind::ActivityRetry {
                scheduled_event_id,
                attempt,
            } => activity::fire_retry(tx, scheduled_event_id, attempt),
            TimerKind::WorkflowTaskTimeout {
                scheduled_event_id,
                attempt,
                stamp,
                timeout,
            } => workflow_task_timeout(tx, scheduled_event_id, attempt, stamp, timeout),
            TimerKind::WorkflowRunTimeout => {
                if tx.ms.run_expiration_time > 0 && tx.now >= tx.ms.run_expiration_time {
                    time_out_workflow(tx);
                }
            }
            TimerKind::WorkflowExecutionTimeout => {
                if tx.ms.execution_expiration_time > 0 && tx.now >= tx.ms.execution_expiration_time
                {
                    time_out_workflow(tx);
                }
            }
            TimerKind::WorkflowStartDelay => {
                if tx.ms.start_delay_pending {
                    tx.ms.start_delay_pending = false;
                    tx.schedule_workflow_task();
                }
            }
        }
        Ok(())
    })
}

fn workflow_task_timeout(
    tx: &mut Tx,
    scheduled_event_id: i64,
    attempt: i32,
    stamp: i32,
    kind: WorkflowTaskTimeoutKind,
) {
    let Some(wt) = tx.ms.workflow_task.clone() else {
        return;
    };
    if wt.scheduled_event_id != scheduled_event_id || wt.attempt != attempt || wt.stamp != stamp {
        return;
    }
    match kind {
        WorkflowTaskTimeoutKind::StartToClose => {
            if !wt.is_started() {
                return;
            }
            if !wt.is_transient() {
                tx.append(new_event(
                    tx.now,
                    Attributes::WorkflowTaskTimedOutEventAttributes(
                        WorkflowTaskTimedOutEventAttributes {
                            scheduled_event_id: wt.scheduled_event_id,
                            started_event_id: wt.started_event_id,
                            timeout_type: TimeoutType::StartToClose as i32,
                        },
                    ),
                ));
            }
            tx.drop_failed_workflow_task(true);
        }
        WorkflowTaskTimeoutKind::ScheduleToStart => {
            if wt.is_started() {
                return;
            }
            tx.append(new_event(
                tx.now,
                Attributes::WorkflowTaskTimedOutEventAttributes(
                    WorkflowTaskTimedOutEventAttributes {
                        scheduled_event_id: wt.scheduled_event_id,
                        started_event_id: 0,
                        timeout_type: TimeoutType::ScheduleToStart as i32,
                    },
                ),
            ));
            // The sticky worker is gone: not the workflow's fault, so no attempt is counted.
            tx.drop_failed_workflow_task(false);
        }
    }
    tx.schedule_workflow_task();
}

fn time_out_workflow(tx: &mut Tx) {
    tx.force_close_workflow_task();
    tx.close(
        WorkflowStatus::TimedOut,
        Attributes::WorkflowExecutionTimedOutEventAttributes(
            WorkflowExecutionTimedOutEventAttributes {
                retry_state: RetryState::Timeout as i32,
                new_execution_run_id: String::new(),
            },
        ),
    );
}
