//! Integration tests of the sandbox: the example programs, every outcome, determinism, caching
//! and the async wrapper.

mod examples;
mod guests;
mod hostile;
mod metering;
mod outcomes;

use std::sync::{Arc, LazyLock};

use agora_exec::{ExecConfig, ExecResult, Executor, JobRun};
use agora_types::Hash;

/// One executor shared by the tests that do not need special limits.
pub static EXEC: LazyLock<Arc<Executor>> =
    LazyLock::new(|| Arc::new(Executor::new(ExecConfig::default()).expect("executor")));

pub const FUEL: u64 = 200_000_000;
pub const MEMORY: u64 = 64 << 20;

pub fn wasm(wat: &str) -> Vec<u8> {
    agora_exec::assemble(wat.as_bytes()).expect("assemble")
}

pub fn job_id(n: u8) -> Hash {
    Hash::of(&[n])
}

pub fn run_on(exec: &Executor, module: &[u8], input: &[u8], args: &[&str]) -> ExecResult {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    exec.run(JobRun {
        job_id: job_id(1),
        module,
        input,
        args: &args,
        fuel: FUEL,
        memory_limit_bytes: MEMORY,
    })
}

pub fn run(module: &[u8], input: &[u8], args: &[&str]) -> ExecResult {
    run_on(&EXEC, module, input, args)
}

/// Run twice (the second time from the cache) and on a fresh executor, and check that all three
/// runs agree on everything committed.
pub fn run_checked(module: &[u8], input: &[u8], args: &[&str]) -> ExecResult {
    let a = run(module, input, args);
    let b = run(module, input, args);
    assert!(b.cache_hit, "second run should hit the module cache");
    let fresh = Executor::new(ExecConfig::default()).expect("executor");
    let c = run_on(&fresh, module, input, args);
    for other in [&b, &c] {
        assert_eq!(a.outcome, other.outcome);
        assert_eq!(a.exit_code, other.exit_code);
        assert_eq!(a.stdout, other.stdout);
        assert_eq!(a.fuel_used, other.fuel_used);
        assert_eq!(a.digest(), other.digest());
    }
    a
}
