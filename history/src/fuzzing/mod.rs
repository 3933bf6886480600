//! Fuzz targets: each is a function of arbitrary bytes that must never panic, whatever the
//! bytes. `fuzz/` (cargo-fuzz, coverage-guided, millions of cases) and this crate's
//! property tests (proptest, bounded, in CI) call the same functions, so a finding of either
//! is replayed by both.
//!
//! The bytes reach the code the way a network input does: as protobuf messages a client or
//! worker could send ([`requests`]), as query text ([`query`]), as opaque tokens handed back
//! by clients ([`tokens`]), or as choices that steer a sequence of requests through the state
//! machine ([`state_machine`]), whose invariants are checked after every step.
//!
//! Compiled only for tests and the `fuzzing` feature: it is no part of the server.

mod query;
mod requests;
mod source;
mod state_machine;
mod tokens;

#[cfg(test)]
mod proptests;

pub use query::query;
pub use requests::requests;
pub use source::Source;
pub use state_machine::state_machine;
pub use tokens::tokens;
