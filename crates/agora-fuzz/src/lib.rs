//! Fuzz targets for every decoder and validator that reads untrusted input.
//!
//! Each `pub fn <target>(data: &[u8])` feeds arbitrary bytes to one intake path of the product
//! and asserts what must hold for *every* input, not only for well-formed ones: nothing panics;
//! a decoded value re-encodes to bytes that decode to the same value and re-encode to the same
//! bytes (prost's decoding is lenient, so the bytes themselves are not canonical, the value is);
//! and a validator that accepts implies the value is within the bounds it documents. A failed
//! assertion panics, which is what libFuzzer reports as a crash.
//!
//! The functions are plain library code so that two drivers share them: the cargo-fuzz project
//! in `fuzz/` (coverage-guided, run on demand with `fuzz/run.sh`) and this crate's
//! `tests/corpus.rs`, which replays the committed seed corpus and every regression input in a
//! normal `cargo test`. [`seeds`] builds the valid inputs the corpus starts from.
//!
//! Stateful validators run against one fixed genesis ([`market_fixture`]): their admission
//! checks are documented to leave the state untouched, and every target asserts that too,
//! since a check that mutated shared state would also make the fuzzer's findings irreproducible.

mod blobs;
mod canon;
mod consensus;
#[cfg(feature = "exec")]
mod exec;
mod json;
mod market;
pub mod seeds;

pub use blobs::{blob_request, blob_response, SEED_BLOB};
pub use canon::canonical;
pub use consensus::{
    consensus_block, consensus_message, consensus_validators, CHAIN as CONSENSUS_CHAIN,
};
#[cfg(feature = "exec")]
pub use exec::{wasm_module, FUZZ_MAX_MODULE_BYTES};
pub use json::api_json;
pub use market::{envelope, job_spec, market_fixture, transaction, MarketFixture};

/// A fuzz target: takes any bytes, panics only when an invariant is broken.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/fuzz_targets/` names them.
pub const TARGETS: &[(&str, Target)] = &[
    ("envelope", envelope),
    ("transaction", transaction),
    ("job_spec", job_spec),
    ("consensus_message", consensus_message),
    ("consensus_block", consensus_block),
    ("blob_request", blob_request),
    ("blob_response", blob_response),
    #[cfg(feature = "exec")]
    ("wasm_module", wasm_module),
    ("api_json", api_json),
    ("canonical", canonical),
];

/// The target called `name`, if there is one.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}
