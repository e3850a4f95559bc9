//! Host calls are charged fuel for what they touch, before they do it.

use agora_exec::{
    ExecResult, JobRun, Outcome, HOST_CALL, PER_BYTE, PER_ENTRY, PER_RANDOM_BYTE, PER_SUBSCRIPTION,
    RUNTIME_CALL,
};

use crate::{job_id, wasm, EXEC, FUEL, MEMORY};

/// A module whose `_start` runs `body` once (with `$random`, `$write`, `$read`, `$poll`,
/// `$args` imported and a 2-page memory).
fn module(body: &str) -> Vec<u8> {
    wasm(&format!(
        r#"(module
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "hello, world")
  ;; iovecs at 64: {{0, 5}}, {{5, 7}}, {{0, 0}}
  (data (i32.const 64) "\00\00\00\00\05\00\00\00\05\00\00\00\07\00\00\00\00\00\00\00\00\00\00\00")
  (func (export "_start") {body}))"#
    ))
}

fn run_with(module: &[u8], fuel: u64, args: &[String]) -> ExecResult {
    EXEC.run(JobRun {
        job_id: job_id(3),
        module,
        input: b"some input",
        args,
        fuel,
        memory_limit_bytes: MEMORY,
    })
}

/// Fuel used by `body` minus fuel used by `baseline` (same instructions, smaller arguments).
fn extra(body: &str, baseline: &str, args: &[String]) -> u64 {
    let a = run_with(&module(body), FUEL, args);
    let b = run_with(&module(baseline), FUEL, args);
    assert_eq!(a.outcome, Outcome::Success, "{}", a.outcome);
    assert_eq!(b.outcome, Outcome::Success, "{}", b.outcome);
    a.fuel_used - b.fuel_used
}

#[test]
fn a_call_costs_its_base_even_when_empty() {
    let with = run_with(
        &module("(drop (call $random (i32.const 0) (i32.const 0)))"),
        FUEL,
        &[],
    );
    let without = run_with(
        &module("(drop (i32.add (i32.const 0) (i32.const 0)))"),
        FUEL,
        &[],
    );
    assert_eq!(with.outcome, Outcome::Success);
    // The same operator count; the difference is the host call.
    assert_eq!(with.fuel_used - without.fuel_used, HOST_CALL);
}

#[test]
fn random_get_is_charged_per_byte() {
    let d = extra(
        "(drop (call $random (i32.const 0) (i32.const 1000)))",
        "(drop (call $random (i32.const 0) (i32.const 0)))",
        &[],
    );
    assert_eq!(d, 1000 * PER_RANDOM_BYTE);
}

#[test]
fn fd_write_and_fd_read_are_charged_per_iovec_and_byte() {
    // Three iovecs naming 5 + 7 + 0 bytes, against none.
    let d = extra(
        "(drop (call $write (i32.const 1) (i32.const 64) (i32.const 3) (i32.const 128)))",
        "(drop (call $write (i32.const 1) (i32.const 64) (i32.const 0) (i32.const 128)))",
        &[],
    );
    assert_eq!(d, 3 * PER_ENTRY + 12 * PER_BYTE);
    let d = extra(
        "(drop (call $read (i32.const 0) (i32.const 64) (i32.const 3) (i32.const 128)))",
        "(drop (call $read (i32.const 0) (i32.const 64) (i32.const 0) (i32.const 128)))",
        &[],
    );
    assert_eq!(d, 3 * PER_ENTRY + 12 * PER_BYTE);
}

#[test]
fn iovecs_outside_memory_are_paid_for_but_not_read() {
    // 1,000 iovecs starting 16 bytes before the end of the 2-page memory: all are paid for as
    // entries, only the two inside memory (zeroed, so 0 bytes) are read; the call then traps on
    // the first one outside.
    let far = module(
        "(drop (call $write (i32.const 1) (i32.const 131056) (i32.const 1000) (i32.const 128)))",
    );
    let none = module(
        "(drop (call $write (i32.const 1) (i32.const 131056) (i32.const 0) (i32.const 128)))",
    );
    let a = run_with(&far, FUEL, &[]);
    let b = run_with(&none, FUEL, &[]);
    assert!(
        matches!(&a.outcome, Outcome::Trap(why) if why.contains("out of bounds")),
        "{}",
        a.outcome
    );
    assert_eq!(b.outcome, Outcome::Success);
    // The trap comes after the call: everything up to it was counted, nothing after (the
    // baseline's `end` costs nothing).
    assert_eq!(a.fuel_used - b.fuel_used, 1000 * PER_ENTRY);
}

#[test]
fn poll_oneoff_is_charged_per_subscription() {
    let d = extra(
        "(drop (call $poll (i32.const 0) (i32.const 0) (i32.const 10) (i32.const 0)))",
        "(drop (call $poll (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))",
        &[],
    );
    assert_eq!(d, 10 * PER_SUBSCRIPTION);
}

#[test]
fn args_get_is_charged_for_the_whole_list() {
    let body = "(drop (call $args (i32.const 1024) (i32.const 2048)))";
    let none: Vec<String> = Vec::new();
    let two = vec!["abc".to_string(), "defgh".to_string()];
    let a = run_with(&module(body), FUEL, &two);
    let b = run_with(&module(body), FUEL, &none);
    assert_eq!(a.outcome, Outcome::Success);
    // Two more entries and their bytes with NULs (argv[0] is in both).
    assert_eq!(a.fuel_used - b.fuel_used, 2 * PER_ENTRY + 10 * PER_BYTE);
}

#[test]
fn a_call_the_fuel_cannot_pay_for_does_not_happen() {
    let m =
        module("(drop (call $write (i32.const 1) (i32.const 64) (i32.const 3) (i32.const 128)))");
    let full = run_with(&m, FUEL, &[]);
    assert_eq!(full.outcome, Outcome::Success);
    // wasmtime-wasi writes the first non-empty iovec only.
    assert_eq!(full.stdout, b"hello");
    // One unit short of what the whole run needs: the write is refused before it starts.
    let short = run_with(&m, full.fuel_used - 1, &[]);
    assert_eq!(short.outcome, Outcome::OutOfFuel);
    assert_eq!(short.fuel_used, full.fuel_used - 1);
    assert!(short.stdout.is_empty(), "{:?}", short.stdout);
    let again = run_with(&m, full.fuel_used - 1, &[]);
    assert_eq!(again.digest(), short.digest());
}

#[test]
fn operators_that_call_into_the_runtime_cost_more() {
    // i32.eqz is an ordinary operator (1); memory.grow and memory.fill call into the runtime and
    // cost RUNTIME_CALL.
    let runtime = u64::from(RUNTIME_CALL);
    let d = extra(
        "(drop (memory.grow (i32.const 0)))",
        "(drop (i32.eqz (i32.const 0)))",
        &[],
    );
    assert_eq!(d, runtime - 1);
    let d = extra(
        "(memory.fill (i32.const 0) (i32.const 0) (i32.const 10))",
        "(drop (i32.add (i32.const 0) (i32.add (i32.const 0) (i32.const 0))))",
        &[],
    );
    // 3 constants + the fill and its 10 bytes, against 3 constants and 2 adds.
    assert_eq!(d, runtime + 10 - 2);
}
