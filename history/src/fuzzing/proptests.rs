//! The fuzz targets as bounded property tests, so CI runs every target on every change.
//! Inputs are plain bytes, shrunk by proptest to a small failing case that `fuzz/` replays.

use proptest::{collection::vec, prelude::*};

/// Enough for CI to catch a regression in seconds per target; the millions of cases are
/// the fuzzer's (`docs/fuzzing.md`).
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn query(data in vec(any::<u8>(), 0..512)) {
        super::query(&data);
    }

    #[test]
    fn state_machine(data in vec(any::<u8>(), 0..2048)) {
        super::state_machine(&data);
    }

    #[test]
    fn tokens(data in vec(any::<u8>(), 0..128)) {
        super::tokens(&data);
    }

    #[test]
    fn requests(data in vec(any::<u8>(), 0..1024)) {
        super::requests(&data);
    }
}
