//! Domain time: every timestamp in this crate is `Nanos`, nanoseconds since the Unix epoch (UTC).
//!
//! Apply never reads a clock; the proposer stamps `now` into each request, so every replica
//! computes the same event times and timer deadlines.

use prost_types::{Duration, Timestamp};

/// Nanoseconds since the Unix epoch, or a span in nanoseconds. 0 means "unset" for spans.
pub type Nanos = i64;

pub const SECOND: Nanos = 1_000_000_000;

/// Converts a domain time to a protobuf timestamp.
pub fn to_timestamp(t: Nanos) -> Timestamp {
    Timestamp {
        seconds: t.div_euclid(SECOND),
        nanos: t.rem_euclid(SECOND) as i32,
    }
}

/// Converts a protobuf timestamp to domain time (saturating).
pub fn from_timestamp(t: &Timestamp) -> Nanos {
    t.seconds
        .saturating_mul(SECOND)
        .saturating_add(t.nanos as i64)
}

/// Converts a span to a protobuf duration.
pub fn to_duration(d: Nanos) -> Duration {
    Duration {
        seconds: d / SECOND,
        nanos: (d % SECOND) as i32,
    }
}

/// Converts an optional protobuf duration to a span; absent means 0 ("unset").
pub fn from_duration(d: Option<&Duration>) -> Nanos {
    d.map(|d| {
        d.seconds
            .saturating_mul(SECOND)
            .saturating_add(d.nanos as i64)
    })
    .unwrap_or(0)
}

/// True when an optional duration is present but negative (the server rejects those).
pub fn is_negative(d: Option<&Duration>) -> bool {
    d.is_some_and(|d| d.seconds < 0 || d.nanos < 0)
}

/// Some(duration) for a positive span, None for 0 (how the real server leaves unset timeouts).
pub fn opt_duration(d: Nanos) -> Option<Duration> {
    (d > 0).then(|| to_duration(d))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day number since 1970-01-01 (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2006-01-02T15:04:05Z`: UTC at second precision (Go's `time.RFC3339` of a UTC time).
pub fn format_rfc3339_seconds(t: Nanos) -> String {
    let secs = t.div_euclid(SECOND);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for t in [0, 1, SECOND, 1_700_000_000 * SECOND + 123, -5] {
            assert_eq!(from_timestamp(&to_timestamp(t)), t);
        }
        assert_eq!(
            from_duration(Some(&to_duration(1_500_000_000))),
            1_500_000_000
        );
        assert_eq!(from_duration(None), 0);
    }

    #[test]
    fn civil_dates_round_trip() {
        for day in [-800_000, -1, 0, 1, 19_000, 20_500, 2_000_000] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(
            format_rfc3339_seconds(1_700_000_000 * SECOND),
            "2023-11-14T22:13:20Z"
        );
    }
}
