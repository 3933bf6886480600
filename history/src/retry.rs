//! Retry policies: server defaults, validation and the next-attempt decision
//! (temporalio/temporal `common/retrypolicy`, `service/history/workflow/retry.go`).

use temporalio_protos::temporal::api::{
    common::v1::RetryPolicy,
    enums::v1::{RetryState, TimeoutType},
    failure::v1::{Failure, failure::FailureInfo},
};

use crate::{
    error::HistoryError,
    time::{Nanos, SECOND, from_duration, is_negative, to_duration},
};

/// Prefix of a non-retryable error type that names a timeout, e.g. `TemporalTimeout:Heartbeat`.
const TIMEOUT_FAILURE_TYPE_PREFIX: &str = "TemporalTimeout:";

/// Fills unset fields with the server defaults: initial 1 s, coefficient 2.0, maximum interval
/// 100 × initial, unlimited attempts.
pub fn ensure_defaults(policy: &mut RetryPolicy) {
    if from_duration(policy.initial_interval.as_ref()) == 0 {
        policy.initial_interval = Some(to_duration(SECOND));
    }
    if from_duration(policy.maximum_interval.as_ref()) == 0 {
        let initial = from_duration(policy.initial_interval.as_ref());
        policy.maximum_interval = Some(to_duration(initial.saturating_mul(100)));
    }
    if policy.backoff_coefficient == 0.0 {
        policy.backoff_coefficient = 2.0;
    }
}

/// Rejects policies the real server rejects (as InvalidArgument).
pub fn validate(policy: &RetryPolicy) -> Result<(), HistoryError> {
    if policy.maximum_attempts == 1 {
        return Ok(());
    }
    let bad = |m: &str| Err(HistoryError::InvalidArgument(m.to_string()));
    if is_negative(policy.initial_interval.as_ref()) {
        return bad("invalid InitialInterval set on retry policy: negative duration");
    }
    if policy.backoff_coefficient < 1.0 {
        return bad("BackoffCoefficient cannot be less than 1 on retry policy.");
    }
    if is_negative(policy.maximum_interval.as_ref()) {
        return bad("invalid MaximumInterval set on retry policy: negative duration");
    }
    let max = from_duration(policy.maximum_interval.as_ref());
    if max > 0 && max < from_duration(policy.initial_interval.as_ref()) {
        return bad("MaximumInterval cannot be less than InitialInterval on retry policy.");
    }
    if policy.maximum_attempts < 0 {
        return bad("MaximumAttempts cannot be negative on retry policy.");
    }
    for t in &policy.non_retryable_error_types {
        if let Some(name) = t.strip_prefix(TIMEOUT_FAILURE_TYPE_PREFIX)
            && timeout_type_from_go_name(name).is_none()
        {
            return Err(HistoryError::InvalidArgument(format!(
                "Invalid timeout type value: {name}."
            )));
        }
    }
    Ok(())
}

fn timeout_type_from_go_name(name: &str) -> Option<TimeoutType> {
    [
        TimeoutType::StartToClose,
        TimeoutType::ScheduleToStart,
        TimeoutType::ScheduleToClose,
        TimeoutType::Heartbeat,
    ]
    .into_iter()
    .find(|t| crate::events::go_enum_name(t.as_str_name(), "TIMEOUT_TYPE_") == name)
}

/// Whether a failure may be retried under `non_retryable_types`.
pub fn is_retryable(failure: &Failure, non_retryable_types: &[String]) -> bool {
    match &failure.failure_info {
        Some(FailureInfo::TerminatedFailureInfo(_)) | Some(FailureInfo::CanceledFailureInfo(_)) => {
            false
        }
        Some(FailureInfo::TimeoutFailureInfo(info)) => {
            let t = info.timeout_type();
            if t == TimeoutType::StartToClose || t == TimeoutType::Heartbeat {
                let name = format!(
                    "{TIMEOUT_FAILURE_TYPE_PREFIX}{}",
                    crate::events::go_enum_name(t.as_str_name(), "TIMEOUT_TYPE_")
                );
                !non_retryable_types.contains(&name)
            } else {
                false
            }
        }
        Some(FailureInfo::ServerFailureInfo(info)) => !info.non_retryable,
        Some(FailureInfo::ApplicationFailureInfo(info)) => {
            !info.non_retryable && !non_retryable_types.contains(&info.r#type)
        }
        _ => true,
    }
}

/// `initial × coefficient^(attempt-1)`, computed by repeated multiplication so every replica
/// gets bit-identical results (no libm `pow`), clamped to `i64::MAX`. Once a product no longer
/// changes the value (a coefficient of 1, an initial interval of 0, NaN) the rest would not:
/// it stops there, so an attempt count in the billions costs nothing.
pub fn exponential_backoff(initial: Nanos, coefficient: f64, attempt: i32) -> Nanos {
    let mut v = initial as f64;
    for _ in 1..attempt.max(1) {
        let next = v * coefficient;
        if next >= i64::MAX as f64 {
            return i64::MAX;
        }
        // NaN (a NaN coefficient passes validation, as on the real server) stays NaN.
        let settled = next == v || next.is_nan();
        v = next;
        if settled {
            break;
        }
    }
    v.max(0.0) as i64
}

/// Decision for the attempt after `attempt` failed with `failure` at `now`.
/// Returns the backoff when another attempt is allowed (`RetryState::InProgress`).
pub fn next_retry(
    policy: &RetryPolicy,
    attempt: i32,
    failure: &Failure,
    now: Nanos,
    expiration_time: Option<Nanos>,
) -> (RetryState, Nanos) {
    if !is_retryable(failure, &policy.non_retryable_error_types) {
        return (RetryState::NonRetryableFailure, 0);
    }
    let requested_delay = match &failure.failure_info {
        Some(FailureInfo::ApplicationFailureInfo(info)) => info
            .next_retry_delay
            .as_ref()
            .map(|d| from_duration(Some(d))),
        _ => None,
    };
    let attempt = attempt.max(1);
    if policy.maximum_attempts > 0 && attempt >= policy.maximum_attempts {
        return (RetryState::MaximumAttemptsReached, 0);
    }
    // An application-requested delay overrides both the exponential curve and its cap.
    let (mut interval, max_interval) = match requested_delay {
        Some(d) => (d, d),
        None => (
            exponential_backoff(
                from_duration(policy.initial_interval.as_ref()),
                policy.backoff_coefficient,
                attempt,
            ),
            from_duration(policy.maximum_interval.as_ref()),
        ),
    };
    if max_interval == 0 && interval <= 0 {
        return (RetryState::Timeout, 0);
    }
    if max_interval != 0 && (interval <= 0 || interval > max_interval) {
        interval = max_interval;
    }
    if let Some(exp) = expiration_time
        && now.saturating_add(interval) > exp
    {
        return (RetryState::Timeout, 0);
    }
    (RetryState::InProgress, interval)
}

/// The real server's `WorkflowIdReuseMinimalInterval` default: a workflow id's runs start at
/// least this far apart, so a run that fails at once cannot retry in a tight loop.
pub const WORKFLOW_ID_REUSE_MINIMAL_INTERVAL: Nanos = SECOND;

/// The delay before a continuing run's first workflow task: `backoff`, stretched so that the
/// new run starts at least [`WORKFLOW_ID_REUSE_MINIMAL_INTERVAL`] after the previous run began
/// executing (temporalio/temporal `MutableStateImpl.ContinueAsNewMinBackoff`).
pub fn continuation_backoff(previous_execution_time: Nanos, now: Nanos, backoff: Nanos) -> Nanos {
    let lifetime = now.saturating_sub(previous_execution_time);
    if lifetime.saturating_add(backoff) < WORKFLOW_ID_REUSE_MINIMAL_INTERVAL {
        WORKFLOW_ID_REUSE_MINIMAL_INTERVAL - lifetime
    } else {
        backoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use temporalio_protos::temporal::api::failure::v1::ApplicationFailureInfo;

    fn app_failure(t: &str, non_retryable: bool) -> Failure {
        Failure {
            message: "boom".into(),
            failure_info: Some(FailureInfo::ApplicationFailureInfo(
                ApplicationFailureInfo {
                    r#type: t.into(),
                    non_retryable,
                    ..Default::default()
                },
            )),
            ..Default::default()
        }
    }

    #[test]
    fn a_huge_attempt_costs_no_more_than_a_small_one() {
        assert_eq!(exponential_backoff(SECOND, 1.0, i32::MAX), SECOND);
        assert_eq!(exponential_backoff(0, 2.0, i32::MAX), 0);
        assert_eq!(exponential_backoff(SECOND, f64::NAN, i32::MAX), 0);
        assert_eq!(exponential_backoff(SECOND, 2.0, i32::MAX), i64::MAX);
        assert_eq!(exponential_backoff(SECOND, 2.0, 3), 4 * SECOND);
    }

    #[test]
    fn defaults() {
        let mut p = RetryPolicy::default();
        ensure_defaults(&mut p);
        assert_eq!(from_duration(p.initial_interval.as_ref()), SECOND);
        assert_eq!(from_duration(p.maximum_interval.as_ref()), 100 * SECOND);
        assert_eq!(p.backoff_coefficient, 2.0);
        assert_eq!(p.maximum_attempts, 0);
    }

    #[test]
    fn backoff_and_limits() {
        let mut p = RetryPolicy {
            maximum_attempts: 3,
            initial_interval: Some(to_duration(SECOND / 5)),
            maximum_interval: Some(to_duration(SECOND)),
            ..Default::default()
        };
        ensure_defaults(&mut p);
        let f = app_failure("RuntimeError", false);
        assert_eq!(
            next_retry(&p, 1, &f, 0, None),
            (RetryState::InProgress, SECOND / 5)
        );
        assert_eq!(
            next_retry(&p, 2, &f, 0, None),
            (RetryState::InProgress, 2 * SECOND / 5)
        );
        assert_eq!(
            next_retry(&p, 3, &f, 0, None).0,
            RetryState::MaximumAttemptsReached
        );
        p.maximum_attempts = 0;
        assert_eq!(
            next_retry(&p, 10, &f, 0, None),
            (RetryState::InProgress, SECOND)
        );
        assert_eq!(
            next_retry(&p, 1, &f, 0, Some(SECOND / 10)).0,
            RetryState::Timeout
        );
        assert_eq!(
            next_retry(&p, 1, &app_failure("X", true), 0, None).0,
            RetryState::NonRetryableFailure
        );
        p.non_retryable_error_types = vec!["ValueError".into()];
        assert_eq!(
            next_retry(&p, 1, &app_failure("ValueError", false), 0, None).0,
            RetryState::NonRetryableFailure
        );
    }

    #[test]
    fn timeouts_retryability() {
        let f = crate::events::timeout_failure("t", TimeoutType::StartToClose);
        assert!(is_retryable(&f, &[]));
        assert!(!is_retryable(&f, &["TemporalTimeout:StartToClose".into()]));
        let f = crate::events::timeout_failure("t", TimeoutType::ScheduleToStart);
        assert!(!is_retryable(&f, &[]));
    }

    #[test]
    fn continuation_starts_at_least_a_second_after_the_previous_run() {
        let ms = SECOND / 1000;
        assert_eq!(continuation_backoff(0, 50 * ms, 200 * ms), 950 * ms);
        assert_eq!(continuation_backoff(0, 900 * ms, 0), 100 * ms);
        assert_eq!(continuation_backoff(0, 2 * SECOND, 200 * ms), 200 * ms);
    }
}
