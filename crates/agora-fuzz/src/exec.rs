//! Program intake: `.wat`/`.wasm` assembly, the executor's module checks and compilation, and
//! a short metered run of whatever compiles.

use std::sync::OnceLock;

use agora_exec::{assemble, ExecConfig, Executor, JobRun, Outcome};
use agora_types::Hash;

/// The fuzz executor's module size limit: small, so that the limit itself is reachable.
pub const FUZZ_MAX_MODULE_BYTES: usize = 4 << 10;
/// Fuel of the fuzz runs: enough for small loops, little enough to keep runs in milliseconds.
const FUEL: u64 = 200_000;
/// Memory limit of the fuzz runs.
const MEMORY: u64 = 4 << 20;

fn executor() -> &'static Executor {
    static EX: OnceLock<Executor> = OnceLock::new();
    EX.get_or_init(|| {
        Executor::new(ExecConfig {
            max_module_bytes: FUZZ_MAX_MODULE_BYTES,
            max_output_bytes: 4 << 10,
            cache_capacity: 8,
            concurrency: 1,
            ..ExecConfig::default()
        })
        .expect("fuzz executor")
    })
}

/// `agora_exec::assemble` (the CLI's `.wat`/`.wasm` intake), then `Executor::prepare` (size
/// limit, precompiled-artifact refusal, validation and compilation by wasmtime, the `_start`
/// check and linking), then two runs of a module that prepared.
///
/// Asserts: a wasm binary passes through assembly unchanged; a prepared module is within the
/// size limit and is identified by its blake3 hash; the verdict is the same cached and uncached;
/// a module that failed to prepare runs to `InvalidModule`; a run ends in a deterministic
/// outcome (never an internal error), within its fuel limit and output cap, and a second run
/// gives the same outcome, exit code, stdout and fuel.
pub fn wasm_module(data: &[u8]) {
    let Ok(module) = assemble(data) else {
        return;
    };
    if data.starts_with(b"\0asm") {
        assert_eq!(module, data, "a binary module was changed by assembly");
    }
    let ex = executor();
    let prepared = ex.prepare(&module);
    let uncached = ex.compile_uncached(&module);
    assert_eq!(
        prepared.is_ok(),
        uncached.is_ok(),
        "cached and uncached verdicts differ: {prepared:?} / {uncached:?}"
    );
    let args = vec!["a".to_string()];
    let job = JobRun {
        job_id: Hash([1; 32]),
        module: &module,
        input: b"fuzz input",
        args: &args,
        fuel: FUEL,
        memory_limit_bytes: MEMORY,
    };
    let first = ex.run(job);
    match prepared {
        Err(_) => {
            assert!(
                matches!(first.outcome, Outcome::InvalidModule(_)),
                "a module that did not prepare ran: {:?}",
                first.outcome
            );
            return;
        }
        Ok(hash) => {
            assert!(
                module.len() <= FUZZ_MAX_MODULE_BYTES,
                "prepared an oversized module"
            );
            assert_eq!(hash, Hash::of(&module));
        }
    }
    if first.outcome == Outcome::Timeout {
        // The wall clock is the one thing a loaded machine may trip first; it is never committed.
        return;
    }
    assert!(
        first.outcome.is_deterministic(),
        "non-deterministic outcome {:?}",
        first.outcome
    );
    assert!(
        first.fuel_used <= FUEL,
        "used {} fuel of {FUEL}",
        first.fuel_used
    );
    assert!(first.stdout.len() <= 4 << 10, "stdout over the cap");
    let second = ex.run(job);
    if second.outcome == Outcome::Timeout {
        return;
    }
    assert_eq!(
        (
            &first.outcome,
            first.exit_code,
            &first.stdout,
            first.fuel_used
        ),
        (
            &second.outcome,
            second.exit_code,
            &second.stdout,
            second.fuel_used
        ),
        "two runs of one job differ"
    );
}
