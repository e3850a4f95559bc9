//! The guest's world: a WASI preview1 context with fixed clocks and seeded randomness, and a
//! memory limiter that records when the job's limit was hit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agora_types::Hash;
use rand::rngs::ChaCha20Rng;
use rand::SeedableRng;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// Seconds since the Unix epoch the guest's wall clock always reads (2023-11-14T22:13:20Z).
pub const FIXED_WALL_CLOCK_SECS: u64 = 1_700_000_000;
/// How far the guest's monotonic clock advances on every read, in nanoseconds.
pub const MONOTONIC_STEP_NS: u64 = 1_000;

/// Store data of one run.
pub(crate) struct Host {
    pub wasi: WasiP1Ctx,
    pub limiter: Limiter,
    /// Whether the store meters fuel (host calls are charged only then).
    pub metered: bool,
    /// The guest's argument list as `args_sizes_get` reports it: (count, bytes with NULs).
    pub args_size: (u64, u64),
}

/// The guest called `proc_exit`.
#[derive(Debug, thiserror::Error)]
#[error("guest exited with code {0}")]
pub(crate) struct GuestExit(pub i32);

pub(crate) struct Limiter {
    pub memory_bytes: usize,
    pub table_elements: usize,
    pub hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            // The module's own declared maximum: ordinary spec behaviour, grow returns -1.
            return Ok(false);
        }
        if desired > self.memory_bytes {
            // Refuse the grow as the spec allows (it returns -1) rather than trapping here: a trap
            // raised inside `memory.grow` unwinds before the fuel the guest has used since its
            // last call is written back to the store, so `fuel_used` read 0. The guest carries
            // on to a trap, an exit or fuel exhaustion, all of which count fuel exactly, and the
            // flag makes the run a memory-limit outcome unless it still succeeds.
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        if desired > self.table_elements {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }

    fn memories(&self) -> usize {
        1
    }
}

struct FixedWallClock;

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::from_secs(FIXED_WALL_CLOCK_SECS)
    }
}

/// Starts at 0 and advances a fixed step per read, so "wait until later" loops still progress.
struct SteppingClock(AtomicU64);

impl HostMonotonicClock for SteppingClock {
    fn resolution(&self) -> u64 {
        MONOTONIC_STEP_NS
    }

    fn now(&self) -> u64 {
        self.0.fetch_add(MONOTONIC_STEP_NS, Ordering::Relaxed)
    }
}

/// Everything one run needs to build its WASI context.
pub(crate) struct GuestIo<'a> {
    pub job_id: Hash,
    pub program_name: &'a str,
    pub args: &'a [String],
    pub input: &'a [u8],
    pub stdout: MemoryOutputPipe,
    pub stderr: MemoryOutputPipe,
}

impl GuestIo<'_> {
    /// The argument list including argv\[0\]: (count, bytes including each NUL).
    pub fn args_size(&self) -> (u64, u64) {
        let bytes = std::iter::once(self.program_name)
            .chain(self.args.iter().map(String::as_str))
            .map(|a| a.len() as u64 + 1)
            .sum();
        (self.args.len() as u64 + 1, bytes)
    }
}

pub(crate) fn wasi_ctx(io: GuestIo<'_>) -> WasiP1Ctx {
    let seed = Hash::derive("agora.exec.random.v1", io.job_id.as_bytes());
    let insecure_seed = Hash::derive("agora.exec.insecure-random.v1", io.job_id.as_bytes());
    let mut insecure_seed_bytes = [0u8; 16];
    insecure_seed_bytes.copy_from_slice(&insecure_seed.0[..16]);

    let mut b = WasiCtxBuilder::new();
    b.arg(io.program_name);
    b.args(io.args);
    b.stdin(MemoryInputPipe::new(io.input.to_vec()));
    b.stdout(io.stdout);
    b.stderr(io.stderr);
    b.wall_clock(FixedWallClock);
    b.monotonic_clock(SteppingClock(AtomicU64::new(0)));
    b.secure_random(ChaCha20Rng::from_seed(seed.0));
    b.insecure_random(ChaCha20Rng::from_seed(insecure_seed.0));
    b.insecure_random_seed(u128::from_le_bytes(insecure_seed_bytes));
    b.build_p1()
}
