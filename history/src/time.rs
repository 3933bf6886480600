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
}
