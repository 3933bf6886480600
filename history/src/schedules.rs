//! Schedules: a stored schedule per (namespace, schedule id) in the shard of
//! `temporal-sys-scheduler:<id>` (the real server runs each schedule as a workflow with that
//! id), and the times its spec asks for.
//!
//! The record is changed only by [`apply`] inside the shard's apply transaction. Firing is the
//! shard leader's job: it sleeps until the next nominal time after `processed_until`, starts the
//! action's workflow (id suffixed with the nominal time, as the real server does) and records
//! the result with [`ScheduleRequest::RecordAction`], which moves `processed_until` forward. So
//! a crash between the start and the record repeats the same start, which its request id
//! makes idempotent.
//!
//! Specs: cron strings (5 fields, UTC: `*`, lists, ranges and steps) and intervals (aligned to
//! the epoch plus the phase), bounded by the spec's start and end time. Calendars, time zones,
//! exclusions and jitter are refused as not supported yet.

use dura_codec::{Kind, Persisted};
use serde::{Deserialize, Serialize};
use temporalio_protos::temporal::api::{
    common::v1::{Memo, WorkflowExecution},
    schedule::v1::{Range, Schedule, ScheduleActionResult, ScheduleSpec, StructuredCalendarSpec},
};

use crate::{
    error::{HistoryError, Result},
    keys,
    store::{KvRead, KvWrite},
    time::{Nanos, SECOND, civil_from_days, from_duration, from_timestamp, to_timestamp},
};

/// How many recent actions a schedule remembers (the real server keeps 10).
const RECENT_ACTIONS: usize = 10;

/// The workflow id whose shard holds a schedule.
pub fn scheduler_workflow_id(schedule_id: &str) -> String {
    format!("temporal-sys-scheduler:{schedule_id}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    pub namespace_id: String,
    pub schedule_id: String,
    #[serde(with = "crate::pb::msg")]
    pub schedule: Schedule,
    #[serde(with = "crate::pb::opt")]
    pub memo: Option<Memo>,
    pub request_id: String,
    pub create_time: Nanos,
    pub update_time: Nanos,
    pub action_count: i64,
    pub overlap_skipped: i64,
    /// Nominal times that passed (the server was down) longer ago than the catch-up window.
    pub missed_catchup_window: i64,
    #[serde(with = "crate::pb::vec")]
    pub recent_actions: Vec<ScheduleActionResult>,
    /// Nominal times up to and including this one were handled (started, skipped, or passed
    /// before the schedule existed).
    pub processed_until: Nanos,
    /// The most recent action's workflow, for the overlap policy.
    #[serde(with = "crate::pb::opt")]
    pub last_started: Option<WorkflowExecution>,
    /// Bumped by every change of the schedule itself (create, pause, unpause).
    pub conflict_token: i64,
}

impl ScheduleRecord {
    pub fn paused(&self) -> bool {
        self.schedule.state.as_ref().is_some_and(|s| s.paused)
    }
}

// Built once per request and moved into the log right away; boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ScheduleRequest {
    /// Creates the schedule; a retry with the same request id is accepted again.
    Create(ScheduleRecord),
    /// Pause (non-empty `pause` note) or unpause (non-empty `unpause` note).
    Patch {
        pause: String,
        unpause: String,
        now: Nanos,
    },
    Delete,
    /// An action ran (or was skipped by the overlap policy). `nominal_time` is `None` for a
    /// manual trigger, which leaves the spec's progress alone.
    RecordAction {
        nominal_time: Option<Nanos>,
        actual_time: Nanos,
        #[serde(with = "crate::pb::opt")]
        started: Option<WorkflowExecution>,
    },
    /// A nominal time found older than the catch-up window: passed over without an action.
    MissedCatchup {
        nominal_time: Nanos,
    },
}

/// Applies a schedule request; returns the record as it is now (`None` once deleted).
pub fn apply(
    kv: &mut impl KvWrite,
    namespace_id: &str,
    schedule_id: &str,
    request: ScheduleRequest,
) -> Result<Option<ScheduleRecord>> {
    let key = keys::schedule(namespace_id, schedule_id);
    let current = read(kv, namespace_id, schedule_id)?;
    let record = match (request, current) {
        (ScheduleRequest::Create(mut record), None) => {
            validate_spec(record.schedule.spec.as_ref())?;
            record.schedule.spec = record.schedule.spec.take().map(canonical_spec);
            record.conflict_token = 1;
            record
        }
        (ScheduleRequest::Create(record), Some(existing)) => {
            if existing.request_id == record.request_id {
                return Ok(Some(existing));
            }
            return Err(HistoryError::WorkflowAlreadyStarted {
                message: "schedule with this ID is already registered".into(),
                start_request_id: existing.request_id,
                run_id: String::new(),
            });
        }
        (_, None) => return Err(not_found(schedule_id)),
        (ScheduleRequest::Delete, Some(_)) => {
            kv.delete(&key);
            return Ok(None);
        }
        (
            ScheduleRequest::Patch {
                pause,
                unpause,
                now,
            },
            Some(mut record),
        ) => {
            let state = record.schedule.state.get_or_insert_with(Default::default);
            if !pause.is_empty() {
                state.paused = true;
                state.notes = pause;
            } else if !unpause.is_empty() {
                state.paused = false;
                state.notes = unpause;
                // A resumed schedule fires from now on; what passed while paused is skipped.
                record.processed_until = record.processed_until.max(now);
            }
            record.update_time = now;
            record.conflict_token += 1;
            record
        }
        (ScheduleRequest::MissedCatchup { nominal_time }, Some(mut record)) => {
            if nominal_time <= record.processed_until {
                return Ok(Some(record));
            }
            record.processed_until = nominal_time;
            record.missed_catchup_window += 1;
            record
        }
        (
            ScheduleRequest::RecordAction {
                nominal_time,
                actual_time,
                started,
            },
            Some(mut record),
        ) => {
            if let Some(t) = nominal_time {
                if t <= record.processed_until {
                    // Recorded already (the leader repeated itself after a crash).
                    return Ok(Some(record));
                }
                record.processed_until = t;
            }
            match started {
                Some(execution) => {
                    record.action_count += 1;
                    record.recent_actions.push(ScheduleActionResult {
                        schedule_time: Some(to_timestamp(nominal_time.unwrap_or(actual_time))),
                        actual_time: Some(to_timestamp(actual_time)),
                        start_workflow_result: Some(execution.clone()),
                        ..Default::default()
                    });
                    let excess = record.recent_actions.len().saturating_sub(RECENT_ACTIONS);
                    record.recent_actions.drain(..excess);
                    record.last_started = Some(execution);
                }
                None => record.overlap_skipped += 1,
            }
            record
        }
    };
    kv.put(&key, &record.encode());
    Ok(Some(record))
}

fn not_found(schedule_id: &str) -> HistoryError {
    HistoryError::NotFound(format!("schedule {schedule_id} not found"))
}

pub fn read(
    kv: &impl KvRead,
    namespace_id: &str,
    schedule_id: &str,
) -> Result<Option<ScheduleRecord>> {
    kv.get(&keys::schedule(namespace_id, schedule_id))
        .map(|v| {
            ScheduleRecord::decode(&v)
                .map_err(|e| HistoryError::Internal(format!("corrupt schedule record: {e}")))
        })
        .transpose()
}

/// Every schedule of the shard (namespace `None`: of every namespace).
pub fn scan(kv: &impl KvRead, namespace_id: Option<&str>) -> Result<Vec<ScheduleRecord>> {
    kv.scan_prefix(&keys::schedule_prefix(namespace_id))
        .into_iter()
        .map(|(_, v)| {
            ScheduleRecord::decode(&v)
                .map_err(|e| HistoryError::Internal(format!("corrupt schedule record: {e}")))
        })
        .collect()
}

/// Refuses what the spec asks for that Dura cannot honour yet, and unparsable cron strings.
// `exclude_calendar` is deprecated but still a field clients may set; it must not be ignored.
#[allow(deprecated)]
pub fn validate_spec(spec: Option<&ScheduleSpec>) -> Result<()> {
    let Some(spec) = spec else { return Ok(()) };
    let unsupported = [
        (!spec.calendar.is_empty(), "calendar"),
        (!spec.exclude_calendar.is_empty(), "exclude_calendar"),
        (
            !spec.exclude_structured_calendar.is_empty(),
            "exclude_structured_calendar",
        ),
        (
            !spec.timezone_name.is_empty() && spec.timezone_name != "UTC",
            "timezone_name",
        ),
        (!spec.timezone_data.is_empty(), "timezone_data"),
        (from_duration(spec.jitter.as_ref()) > 0, "jitter"),
    ];
    if let Some((_, field)) = unsupported.iter().find(|(set, _)| *set) {
        return Err(HistoryError::Unimplemented(format!(
            "schedule spec field {field} is not supported by this server yet"
        )));
    }
    for cron in &spec.cron_string {
        Calendar::parse_cron(cron).map_err(|e| {
            HistoryError::InvalidArgument(format!("invalid cron string {cron:?}: {e}"))
        })?;
    }
    for interval in &spec.interval {
        if from_duration(interval.interval.as_ref()) <= 0 {
            return Err(HistoryError::InvalidArgument(
                "interval must be positive".into(),
            ));
        }
    }
    Ok(())
}

/// The spec as the real server keeps it: cron strings become structured calendars (a cron
/// string whose day-of-month and day-of-week are both restricted keeps cron's "either" rule,
/// which a structured calendar cannot say, so it stays a string).
pub fn canonical_spec(mut spec: ScheduleSpec) -> ScheduleSpec {
    let mut kept = Vec::new();
    for cron in std::mem::take(&mut spec.cron_string) {
        match Calendar::parse_cron(&cron) {
            Ok(c) if !c.either_day => spec.structured_calendar.push(c.to_structured("")),
            _ => kept.push(cron),
        }
    }
    spec.cron_string = kept;
    spec
}

/// The first `n` nominal times of `spec` strictly after `after`.
pub fn next_times(spec: Option<&ScheduleSpec>, after: Nanos, n: usize) -> Vec<Nanos> {
    let Some(spec) = spec else { return Vec::new() };
    let start = spec.start_time.as_ref().map(from_timestamp).unwrap_or(0);
    let end = spec
        .end_time
        .as_ref()
        .map(from_timestamp)
        .unwrap_or(Nanos::MAX);
    let after = after.max(start.saturating_sub(1));
    let mut times: Vec<Nanos> = Vec::new();
    for interval in &spec.interval {
        let every = from_duration(interval.interval.as_ref());
        let phase = from_duration(interval.phase.as_ref());
        if every <= 0 {
            continue;
        }
        // Wide, so a phase or interval near the ends of time cannot overflow; times past
        // them do not exist.
        let (after, phase, every) = (i128::from(after), i128::from(phase), i128::from(every));
        let k = (after - phase).div_euclid(every) + 1;
        times.extend((0..n as i128).map_while(|i| Nanos::try_from(phase + (k + i) * every).ok()));
    }
    let calendars = spec
        .cron_string
        .iter()
        .filter_map(|c| Calendar::parse_cron(c).ok())
        .chain(
            spec.structured_calendar
                .iter()
                .map(Calendar::from_structured),
        );
    for calendar in calendars {
        times.extend(calendar.next_times(after, n));
    }
    times.sort_unstable();
    times.dedup();
    times.retain(|t| *t <= end);
    times.truncate(n);
    times
}

/// When a calendar-style spec fires, as bit sets of allowed values: a cron string or a
/// `StructuredCalendarSpec`, evaluated in UTC at second granularity.
#[derive(Debug, Clone, PartialEq)]
struct Calendar {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Empty: every year.
    years: Vec<Range>,
    /// Both day fields restricted in a cron string: a day matches if either does (cron's
    /// rule). Structured calendars require both.
    either_day: bool,
}

impl Calendar {
    /// A 5-field cron string (minute hour day-of-month month day-of-week).
    fn parse_cron(s: &str) -> std::result::Result<Calendar, String> {
        let fields: Vec<&str> = s.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields[..] else {
            return Err(format!("expected 5 fields, found {}", fields.len()));
        };
        let weekdays = field(dow, 0, 7)?;
        Ok(Calendar {
            seconds: 1,
            minutes: field(minute, 0, 59)?,
            hours: field(hour, 0, 23)?,
            days: field(dom, 1, 31)?,
            months: field(month, 1, 12)?,
            // 7 is Sunday too.
            weekdays: (weekdays | (weekdays >> 7)) & 0x7f,
            years: Vec::new(),
            either_day: dom != "*" && dow != "*",
        })
    }

    /// Temporal's structured calendar: an empty list means every value, except for seconds,
    /// minutes and hours, where it means 0.
    fn from_structured(c: &StructuredCalendarSpec) -> Calendar {
        let bits = |ranges: &[Range], min: i32, max: i32, default_all: bool| -> u64 {
            if ranges.is_empty() {
                return if default_all { all_bits(min, max) } else { 1 };
            }
            ranges
                .iter()
                .fold(0, |acc, r| acc | range_bits(r, min, max))
        };
        Calendar {
            seconds: bits(&c.second, 0, 59, false),
            minutes: bits(&c.minute, 0, 59, false),
            hours: bits(&c.hour, 0, 23, false),
            days: bits(&c.day_of_month, 1, 31, true),
            months: bits(&c.month, 1, 12, true),
            weekdays: bits(&c.day_of_week, 0, 6, true),
            years: c.year.clone(),
            either_day: false,
        }
    }

    /// The structured form the real server shows a cron string as.
    fn to_structured(&self, comment: &str) -> StructuredCalendarSpec {
        StructuredCalendarSpec {
            second: ranges_of(self.seconds, 59),
            minute: ranges_of(self.minutes, 59),
            hour: ranges_of(self.hours, 23),
            day_of_month: ranges_of(self.days, 31),
            month: ranges_of(self.months, 12),
            year: self.years.clone(),
            day_of_week: ranges_of(self.weekdays, 6),
            comment: comment.to_string(),
        }
    }

    fn matches_day(&self, days_since_epoch: i64) -> bool {
        let (year, month, day) = civil_from_days(days_since_epoch);
        if self.months & (1 << month) == 0
            || !(self.years.is_empty() || self.years.iter().any(|r| in_range(r, year as i32)))
        {
            return false;
        }
        // 1970-01-01 was a Thursday (4).
        let weekday = (days_since_epoch + 4).rem_euclid(7);
        let dom = self.days & (1 << day) != 0;
        let dow = self.weekdays & (1 << weekday) != 0;
        if self.either_day {
            dom || dow
        } else {
            dom && dow
        }
    }

    fn next_times(&self, after: Nanos, n: usize) -> Vec<Nanos> {
        let mut out = Vec::with_capacity(n);
        let first = after.div_euclid(SECOND) + 1;
        let mut day = first.div_euclid(86_400);
        // A spec that never matches (say, February 30th) gives up after some years.
        let last_day = day + 366 * 5;
        let set = |bits: u64, max: i64| (0..=max).filter(move |v| bits & (1 << v) != 0);
        while out.len() < n && day <= last_day {
            if self.matches_day(day) {
                for hour in set(self.hours, 23) {
                    for minute in set(self.minutes, 59) {
                        for second in set(self.seconds, 59) {
                            let t = day * 86_400 + hour * 3600 + minute * 60 + second;
                            if t >= first && out.len() < n {
                                let Some(t) = t.checked_mul(SECOND) else {
                                    // Past the end of time.
                                    return out;
                                };
                                out.push(t);
                            }
                        }
                    }
                }
            }
            day += 1;
        }
        out
    }
}

fn all_bits(min: i32, max: i32) -> u64 {
    (min..=max).fold(0, |acc, v| acc | 1 << v)
}

/// A `Range`: `end` 0 means `start`, `step` 0 means 1; clipped to `min..=max`.
fn range_bits(r: &Range, min: i32, max: i32) -> u64 {
    let end = if r.end < r.start { r.start } else { r.end };
    let step = r.step.max(1) as usize;
    (r.start.max(min)..=end.min(max))
        .step_by(step)
        .fold(0, |acc, v| acc | 1 << v)
}

fn in_range(r: &Range, v: i32) -> bool {
    let end = if r.end < r.start { r.start } else { r.end };
    v >= r.start && v <= end && (i64::from(v) - i64::from(r.start)) % i64::from(r.step.max(1)) == 0
}

/// Runs of consecutive allowed values as ranges (a single value: start only, as Go omits 0s).
fn ranges_of(bits: u64, max: i32) -> Vec<Range> {
    let mut out = Vec::new();
    let mut v = 0;
    while v <= max {
        if bits & (1 << v) == 0 {
            v += 1;
            continue;
        }
        let start = v;
        while v < max && bits & (1 << (v + 1)) != 0 {
            v += 1;
        }
        out.push(Range {
            start,
            end: if v > start { v } else { start },
            step: 1,
        });
        v += 1;
    }
    out
}

/// One cron field as a bit set of the values it allows.
fn field(s: &str, min: u32, max: u32) -> std::result::Result<u64, String> {
    let mut bits = 0u64;
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, step)) => (
                r,
                step.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("bad step in {part:?}"))?,
            ),
            None => (part, 1),
        };
        let number = |v: &str| {
            v.parse::<u32>()
                .ok()
                .filter(|v| (min..=max).contains(v))
                .ok_or_else(|| format!("{v:?} is not in {min}-{max}"))
        };
        let (lo, hi) = match range {
            "*" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None if step > 1 => (number(r)?, max),
                None => (number(r)?, number(r)?),
            },
        };
        if lo > hi {
            return Err(format!("empty range {range:?}"));
        }
        for v in (lo..=hi).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{days_from_civil, format_rfc3339_seconds};
    use temporalio_protos::temporal::api::schedule::v1::IntervalSpec;

    fn at(y: i64, m: i64, d: i64, h: i64, min: i64) -> Nanos {
        (days_from_civil(y, m, d) * 86_400 + h * 3600 + min * 60) * SECOND
    }

    /// Found by the `requests` fuzz target: an interval, phase, start or year range at the
    /// ends of time overflowed instead of giving no times.
    #[test]
    fn specs_at_the_ends_of_time_give_no_time_rather_than_overflow() {
        let huge = prost_types::Duration {
            seconds: i64::MAX,
            nanos: 0,
        };
        let spec = ScheduleSpec {
            interval: vec![IntervalSpec {
                interval: Some(huge),
                phase: Some(prost_types::Duration {
                    seconds: i64::MIN,
                    nanos: 0,
                }),
            }],
            cron_string: vec!["* * * * *".into()],
            structured_calendar: vec![StructuredCalendarSpec {
                year: vec![Range {
                    start: i32::MIN,
                    end: i32::MAX,
                    step: i32::MAX,
                }],
                ..Default::default()
            }],
            start_time: Some(prost_types::Timestamp {
                seconds: i64::MIN,
                nanos: 0,
            }),
            ..Default::default()
        };
        for after in [
            i64::MIN,
            -1,
            0,
            at(2026, 1, 1, 0, 0),
            i64::MAX - 1,
            i64::MAX,
        ] {
            let times = next_times(Some(&spec), after, 3);
            assert!(times.iter().all(|t| *t > after), "{times:?} after {after}");
        }
    }

    #[test]
    fn cron_daily_at_nine_and_weekday_rules() {
        let spec = ScheduleSpec {
            cron_string: vec!["0 9 * * *".into()],
            ..Default::default()
        };
        let times = next_times(Some(&spec), at(2026, 11, 25, 10, 0), 3);
        assert_eq!(
            times,
            vec![
                at(2026, 11, 26, 9, 0),
                at(2026, 11, 27, 9, 0),
                at(2026, 11, 28, 9, 0)
            ]
        );
        assert_eq!(format_rfc3339_seconds(times[0]), "2026-11-26T09:00:00Z");
        // Weekdays at 08:30 and 17:30; 2026-11-27 is a Friday.
        let cron = Calendar::parse_cron("30 8,17 * * 1-5").unwrap();
        assert_eq!(
            cron.next_times(at(2026, 11, 27, 9, 0), 2),
            vec![at(2026, 11, 27, 17, 30), at(2026, 11, 30, 8, 30)]
        );
        // Day of month OR day of week when both are restricted; 7 means Sunday.
        let cron = Calendar::parse_cron("0 0 1 * 7").unwrap();
        assert_eq!(
            cron.next_times(at(2026, 11, 27, 0, 0), 2),
            vec![at(2026, 11, 29, 0, 0), at(2026, 12, 1, 0, 0)]
        );
        assert!(Calendar::parse_cron("*/15 * * *").is_err());
        assert!(Calendar::parse_cron("61 * * * *").is_err());
        assert_eq!(
            Calendar::parse_cron("*/15 * * * *").unwrap().minutes,
            1 | 1 << 15 | 1 << 30 | 1 << 45
        );
    }

    #[test]
    fn cron_strings_become_structured_calendars_that_fire_alike() {
        let spec = canonical_spec(ScheduleSpec {
            cron_string: vec!["0 9 * * *".into(), "0 0 1 * 7".into()],
            ..Default::default()
        });
        // The either-day cron string stays a string; the other became a calendar.
        assert_eq!(spec.cron_string, vec!["0 0 1 * 7".to_string()]);
        let c = &spec.structured_calendar[0];
        assert_eq!(
            c.hour,
            vec![Range {
                start: 9,
                end: 9,
                step: 1
            }]
        );
        assert_eq!(
            c.day_of_week,
            vec![Range {
                start: 0,
                end: 6,
                step: 1
            }]
        );
        let daily = ScheduleSpec {
            structured_calendar: spec.structured_calendar.clone(),
            ..Default::default()
        };
        assert_eq!(
            next_times(Some(&daily), at(2026, 11, 25, 10, 0), 2),
            vec![at(2026, 11, 26, 9, 0), at(2026, 11, 27, 9, 0)]
        );
    }

    #[test]
    fn intervals_are_aligned_to_the_epoch_and_merged_with_cron() {
        let spec = ScheduleSpec {
            interval: vec![IntervalSpec {
                interval: Some(crate::time::to_duration(300 * SECOND)),
                phase: None,
            }],
            cron_string: vec!["7 * * * *".into()],
            ..Default::default()
        };
        let times = next_times(Some(&spec), at(2026, 1, 1, 0, 1), 4);
        assert_eq!(
            times,
            vec![
                at(2026, 1, 1, 0, 5),
                at(2026, 1, 1, 0, 7),
                at(2026, 1, 1, 0, 10),
                at(2026, 1, 1, 0, 15)
            ]
        );
    }
}

impl Persisted for ScheduleRecord {
    const KIND: Kind = Kind::ScheduleRecord;
}
