//! The sandbox that runs clients' programs: deterministic WASI preview1 commands on wasmtime.
//!
//! A coprocessor runs an awarded job here, and an auditing operator re-runs it; both must get the
//! same bytes, so everything a guest can observe is a function of the job: stdin is the job input,
//! args come from the spec, the wall clock is fixed, the monotonic clock steps per read, and
//! randomness is a ChaCha20 stream seeded from the job id. There is no filesystem, network or
//! environment, `poll_oneoff` (sleep) is refused, NaNs are canonicalised, threads and relaxed SIMD
//! are off. CPU is metered in fuel (the job's limit; fuel used is part of the result), host calls
//! included: every WASI function is charged for the entries and bytes it may touch before it runs
//! (`meter`). Memory is bounded by a limiter, and an epoch ticker is a wall-clock safety net sized
//! so honest fuel always trips first.
//!
//! Every way a run can end is an [`Outcome`], never a panic or an error: a trap, fuel exhaustion,
//! a memory overrun, an invalid module or oversized output are results the quorum can commit.
//! Only [`Outcome::Timeout`] and [`Outcome::Internal`] describe the machine rather than the job.
//!
//! Compiled modules are cached by blake3 hash in a bounded LRU. [`Executor::run`] is synchronous
//! (WASI's sync bindings must not run on a tokio worker); [`AsyncExecutor`] moves runs onto the
//! blocking pool behind a semaphore sized to the coprocessor's capacity.

mod config;
mod executor;
mod host;
mod meter;
mod outcome;
mod pool;

pub use config::ExecConfig;
pub use executor::{ExecError, Executor, JobRun};
pub use host::{FIXED_WALL_CLOCK_SECS, MONOTONIC_STEP_NS};
pub use meter::{HOST_CALL, PER_BYTE, PER_ENTRY, PER_RANDOM_BYTE, PER_SUBSCRIPTION, RUNTIME_CALL};
pub use outcome::{ExecResult, Outcome};
pub use pool::{AsyncExecutor, OwnedJob};

/// Turn `.wat` text or a wasm binary into a wasm binary (binary input passes through unchanged),
/// so the CLI can accept either.
pub fn assemble(wat_or_wasm: &[u8]) -> Result<Vec<u8>, ExecError> {
    wat::parse_bytes(wat_or_wasm)
        .map(|b| b.into_owned())
        .map_err(|e| ExecError::Assemble(e.to_string()))
}
