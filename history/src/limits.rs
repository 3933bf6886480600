//! The real server's per-workflow limits (`common/dynamicconfig/constants.go`), under their
//! dynamic-config keys and with their defaults.
//!
//! A limit that decides what a transition does (a workflow task failed because the commands
//! would exceed the pending-activities limit, a run terminated for its history size) must be
//! the same on every replica, whatever each node's configuration. So the limits travel in the
//! Raft entry of the request they govern, as its proposer read them from its configuration;
//! an entry without them (written by an earlier build, or while one is still a member) enforces
//! none, exactly as that build did.
//!
//! Overrides are encoded as key → value, so a later build can add a limit without a new
//! shape; a key this build does not know is carried along and ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One limit: its dynamic-config key and the real server's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Limit {
    /// One payload (input, result, details) in bytes: `limit.blobSize.error`.
    BlobSize,
    /// `limit.blobSize.warn`: the real server refuses only what is over both it and
    /// [`Limit::BlobSize`], and cuts an activity failure it refuses down to it.
    BlobSizeWarn,
    /// A run's memo in bytes: `limit.memoSize.error`.
    MemoSize,
    /// `limit.memoSize.warn`; the real server refuses only what is over both.
    MemoSizeWarn,
    /// Events in a run's history: `limit.historyCount.error`.
    HistoryCount,
    /// A run's history in bytes: `limit.historySize.error`.
    HistorySize,
    /// Events after which workflow tasks suggest continue-as-new.
    HistoryCountSuggestContinueAsNew,
    /// History bytes after which workflow tasks suggest continue-as-new.
    HistorySizeSuggestContinueAsNew,
    PendingActivities,
    PendingChildExecutions,
    /// Signals a run sent to other workflows that are not yet delivered.
    PendingSignals,
    /// Cancel requests a run sent to other workflows that are not yet delivered.
    PendingCancelRequests,
    SearchAttributesNumberOfKeys,
    SearchAttributesSizeOfValue,
    SearchAttributesTotalSize,
}

impl Limit {
    pub const ALL: [Limit; 15] = [
        Limit::BlobSize,
        Limit::BlobSizeWarn,
        Limit::MemoSize,
        Limit::MemoSizeWarn,
        Limit::HistoryCount,
        Limit::HistorySize,
        Limit::HistoryCountSuggestContinueAsNew,
        Limit::HistorySizeSuggestContinueAsNew,
        Limit::PendingActivities,
        Limit::PendingChildExecutions,
        Limit::PendingSignals,
        Limit::PendingCancelRequests,
        Limit::SearchAttributesNumberOfKeys,
        Limit::SearchAttributesSizeOfValue,
        Limit::SearchAttributesTotalSize,
    ];

    /// The real server's dynamic-config key.
    pub fn key(self) -> &'static str {
        match self {
            Limit::BlobSize => "limit.blobSize.error",
            Limit::BlobSizeWarn => "limit.blobSize.warn",
            Limit::MemoSize => "limit.memoSize.error",
            Limit::MemoSizeWarn => "limit.memoSize.warn",
            Limit::HistoryCount => "limit.historyCount.error",
            Limit::HistorySize => "limit.historySize.error",
            Limit::HistoryCountSuggestContinueAsNew => "limit.historyCount.suggestContinueAsNew",
            Limit::HistorySizeSuggestContinueAsNew => "limit.historySize.suggestContinueAsNew",
            Limit::PendingActivities => "limit.numPendingActivities.error",
            Limit::PendingChildExecutions => "limit.numPendingChildExecutions.error",
            Limit::PendingSignals => "limit.numPendingSignals.error",
            Limit::PendingCancelRequests => "limit.numPendingCancelRequests.error",
            Limit::SearchAttributesNumberOfKeys => "frontend.searchAttributesNumberOfKeysLimit",
            Limit::SearchAttributesSizeOfValue => "frontend.searchAttributesSizeOfValueLimit",
            Limit::SearchAttributesTotalSize => "frontend.searchAttributesTotalSizeLimit",
        }
    }

    /// The real server's default.
    pub fn temporal_default(self) -> u64 {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        match self {
            Limit::BlobSize | Limit::MemoSize => 2 * MIB,
            Limit::BlobSizeWarn => 512 * KIB,
            Limit::MemoSizeWarn => 2 * KIB,
            Limit::HistoryCount => 50 * KIB,
            Limit::HistorySize => 50 * MIB,
            Limit::HistoryCountSuggestContinueAsNew => 4 * KIB,
            Limit::HistorySizeSuggestContinueAsNew => 4 * MIB,
            Limit::PendingActivities
            | Limit::PendingChildExecutions
            | Limit::PendingSignals
            | Limit::PendingCancelRequests => 2000,
            Limit::SearchAttributesNumberOfKeys => 100,
            Limit::SearchAttributesSizeOfValue => 2 * KIB,
            Limit::SearchAttributesTotalSize => 40 * KIB,
        }
    }

    pub fn from_key(key: &str) -> Option<Limit> {
        Limit::ALL.into_iter().find(|l| l.key() == key)
    }
}

/// The limits one request is held to.
///
/// Compact, because every run command in a shard's log carries one: a preset (a fixed set of
/// limits at fixed values, never changed once released) and the values that differ from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    preset: Preset,
    overrides: BTreeMap<String, u64>,
    /// Commands acting on other workflows (signal, cancel) fail the workflow task as
    /// unsupported. Not logged with the values: the log entry's version says it (see
    /// `node::shard::entry`), since their tasks and reports are new requests that a replica
    /// of an earlier build could not apply.
    #[serde(skip)]
    external_commands_refused: bool,
}

/// A set of limits at fixed values. The numbers are part of the log format: a later build
/// that enforces more limits by default adds a preset, and reads these as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
enum Preset {
    /// Nothing enforced.
    #[default]
    None,
    /// The fifteen limits of [`Limit::ALL`] at the real server's defaults.
    Temporal1,
}

impl Limits {
    /// Every limit at the real server's default.
    pub fn temporal() -> Limits {
        Limits {
            preset: Preset::Temporal1,
            ..Limits::default()
        }
    }

    /// No limit enforced: what a request logged without limits is held to.
    pub fn none() -> Limits {
        Limits::default()
    }

    /// These limits, with commands acting on other workflows refused.
    pub fn refusing_external_commands(mut self) -> Limits {
        self.external_commands_refused = true;
        self
    }

    pub fn external_commands_refused(&self) -> bool {
        self.external_commands_refused
    }

    pub fn set(&mut self, limit: Limit, value: u64) {
        self.overrides.insert(limit.key().to_string(), value);
    }

    /// The limit's value, `None` when it is not enforced.
    pub fn get(&self, limit: Limit) -> Option<u64> {
        self.overrides
            .get(limit.key())
            .copied()
            .or(match self.preset {
                Preset::None => None,
                Preset::Temporal1 => Some(limit.temporal_default()),
            })
    }

    /// Whether `value` is over `limit` (never, when it is not enforced).
    pub fn exceeded(&self, limit: Limit, value: impl TryInto<u64>) -> bool {
        let value = value.try_into().unwrap_or(0);
        self.get(limit).is_some_and(|max| value > max)
    }

    /// Whether a payload of `size` bytes is refused: over `limit.blobSize.error` and, as the
    /// real server checks the error limit only past the warning one (`CheckEventBlobSizeLimit`),
    /// over `limit.blobSize.warn` too.
    pub fn blob_refused(&self, size: usize) -> bool {
        self.exceeded(Limit::BlobSize, size) && self.exceeded(Limit::BlobSizeWarn, size)
    }

    /// Whether a memo of `size` bytes is refused (the same two-limit rule).
    pub fn memo_refused(&self, size: usize) -> bool {
        self.exceeded(Limit::MemoSize, size) && self.exceeded(Limit::MemoSizeWarn, size)
    }

    /// Whether `value` has reached `limit` (never, when it is not enforced).
    pub fn reached(&self, limit: Limit, value: impl TryInto<u64>) -> bool {
        let value = value.try_into().unwrap_or(0);
        self.get(limit).is_some_and(|max| value >= max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_has_its_own_key_and_reads_back() {
        let keys: std::collections::HashSet<_> = Limit::ALL.iter().map(|l| l.key()).collect();
        assert_eq!(keys.len(), Limit::ALL.len());
        for limit in Limit::ALL {
            assert_eq!(Limit::from_key(limit.key()), Some(limit));
        }
        let limits = Limits::temporal();
        assert_eq!(limits.get(Limit::BlobSize), Some(2 * 1024 * 1024));
        assert!(limits.exceeded(Limit::PendingActivities, 2001));
        assert!(!limits.exceeded(Limit::PendingActivities, 2000));
        assert!(limits.reached(Limit::PendingActivities, 2000));
    }

    #[test]
    fn a_payload_is_refused_only_over_both_its_error_and_warning_limits() {
        let mut limits = Limits::temporal();
        limits.set(Limit::BlobSize, 2000);
        assert!(
            !limits.blob_refused(5000),
            "under the 512 KiB warning limit"
        );
        assert!(limits.blob_refused(600_000));
        limits.set(Limit::BlobSizeWarn, 1000);
        assert!(!limits.blob_refused(2000));
        assert!(limits.blob_refused(2001));
        limits.set(Limit::MemoSize, 1000);
        assert!(!limits.memo_refused(2048) && limits.memo_refused(2049));
    }

    #[test]
    fn limits_not_logged_are_not_enforced() {
        let none = Limits::none();
        assert!(!none.exceeded(Limit::HistoryCount, usize::MAX));
        assert!(!none.reached(Limit::PendingActivities, i64::MAX));
        assert!(!Limits::temporal().exceeded(Limit::HistorySize, -1_i64));
    }

    #[test]
    fn the_defaults_cost_a_few_bytes_and_a_key_of_a_later_build_is_carried_along() {
        assert!(bincode::serialize(&Limits::temporal()).unwrap().len() <= 16);
        let mut later = Limits::temporal();
        later.set(Limit::PendingActivities, 5);
        later.overrides.insert("limit.someday.error".into(), 7);
        let read: Limits = bincode::deserialize(&bincode::serialize(&later).unwrap()).unwrap();
        assert_eq!(read.get(Limit::MemoSize), Some(2 * 1024 * 1024));
        assert_eq!(read.get(Limit::PendingActivities), Some(5));
    }
}
