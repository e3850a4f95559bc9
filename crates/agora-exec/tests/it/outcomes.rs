//! Every way a run ends, determinism of what the guest can observe, caching and the async path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_exec::{
    AsyncExecutor, ExecConfig, Executor, JobRun, Outcome, OwnedJob, FIXED_WALL_CLOCK_SECS,
    MONOTONIC_STEP_NS,
};

use crate::guests::*;
use crate::{job_id, run, run_checked, run_on, wasm, EXEC, FUEL, MEMORY};

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let r = run_checked(&wasm(INFINITE_LOOP), b"", &[]);
    assert_eq!(r.outcome, Outcome::OutOfFuel);
    assert_eq!(r.fuel_used, FUEL);
    assert_eq!(r.exit_code, -1);
    assert!(r.outcome.is_deterministic());
}

#[test]
fn zero_fuel_runs_nothing() {
    let m = wasm(INFINITE_LOOP);
    let r = EXEC.run(JobRun {
        job_id: job_id(1),
        module: &m,
        input: b"",
        args: &[],
        fuel: 0,
        memory_limit_bytes: MEMORY,
    });
    assert_eq!(r.outcome, Outcome::OutOfFuel);
    assert_eq!(r.fuel_used, 0);
}

#[test]
fn traps_carry_their_reason() {
    let r = run_checked(&wasm(UNREACHABLE), b"", &[]);
    assert!(
        matches!(&r.outcome, Outcome::Trap(why) if why.contains("unreachable")),
        "{r:?}"
    );
    let r = run_checked(&wasm(DIV_BY_ZERO), b"", &[]);
    assert!(
        matches!(&r.outcome, Outcome::Trap(why) if why.contains("divide by zero")),
        "{r:?}"
    );
    let r = run_checked(&wasm(STACK_OVERFLOW), b"", &[]);
    assert!(
        matches!(&r.outcome, Outcome::Trap(why) if why.contains("stack")),
        "{r:?}"
    );
    assert!(r.fuel_used > 0);
}

#[test]
fn memory_growth_beyond_the_limit() {
    let hog = run_checked(&wasm(MEMORY_HOG), b"", &[]);
    assert_eq!(hog.outcome, Outcome::MemoryExceeded);
    // The hog grows one page per iteration: the limit is reached after MEMORY / 64 KiB pages,
    // long before fuel runs out.
    assert!(hog.fuel_used < FUEL / 100);

    // Refused at instantiation: nothing ran.
    let r = run_checked(&wasm(HUGE_INITIAL_MEMORY), b"", &[]);
    assert_eq!(r.outcome, Outcome::MemoryExceeded);
    assert_eq!(r.fuel_used, 0);

    // A smaller limit stops the hog sooner.
    let m = wasm(MEMORY_HOG);
    let small = EXEC.run(JobRun {
        job_id: job_id(1),
        module: &m,
        input: b"",
        args: &[],
        fuel: FUEL,
        memory_limit_bytes: 1 << 20,
    });
    assert_eq!(small.outcome, Outcome::MemoryExceeded);
    assert!(
        small.fuel_used > 0 && small.fuel_used < hog.fuel_used,
        "{} < {}",
        small.fuel_used,
        hog.fuel_used
    );
}

#[test]
fn memory_limit_outcomes_count_the_fuel_used() {
    // The hog grows a page per iteration until a grow is refused, then traps: the fuel used
    // grows by the same amount per MiB of limit (16 more iterations each), and is the same on
    // every run.
    let m = wasm(MEMORY_HOG);
    let used = |mib: u64| {
        let r = EXEC.run(JobRun {
            job_id: job_id(1),
            module: &m,
            input: b"",
            args: &[],
            fuel: FUEL,
            memory_limit_bytes: mib << 20,
        });
        assert_eq!(r.outcome, Outcome::MemoryExceeded);
        r.fuel_used
    };
    let (one, two, three) = (used(1), used(2), used(3));
    assert!(one > 0, "fuel used before the limit is counted");
    assert!(two > one);
    assert_eq!(three - two, two - one);
    assert_eq!(used(2), two);

    // A guest that ignores the refusal and keeps asking runs until its fuel is gone, and is
    // charged all of it.
    let stubborn = wasm(
        r#"(module (memory (export "memory") 1)
          (func (export "_start") (loop $l (drop (memory.grow (i32.const 16))) (br $l))))"#,
    );
    let r = EXEC.run(JobRun {
        job_id: job_id(1),
        module: &stubborn,
        input: b"",
        args: &[],
        fuel: 1_000_000,
        memory_limit_bytes: 1 << 20,
    });
    assert_eq!(r.outcome, Outcome::MemoryExceeded);
    assert_eq!(r.fuel_used, 1_000_000);

    // A guest that handles the refusal and exits 0 succeeded.
    let careful = wasm(
        r#"(module
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            (if (i32.eq (memory.grow (i32.const 100)) (i32.const -1))
              (then (call $exit (i32.const 0))))
            unreachable))"#,
    );
    let r = EXEC.run(JobRun {
        job_id: job_id(1),
        module: &careful,
        input: b"",
        args: &[],
        fuel: FUEL,
        memory_limit_bytes: 1 << 20,
    });
    assert_eq!(r.outcome, Outcome::Success);
    assert!(r.fuel_used > 0);
}

#[test]
fn module_declared_maximum_is_ordinary_guest_behaviour() {
    let r = run_checked(&wasm(DECLARED_MAX), b"", &[]);
    assert_eq!(r.outcome, Outcome::Exit(3));
}

#[test]
fn invalid_modules() {
    let cases: [(&[u8], &str); 6] = [
        (b"\0asm\x01\0\0\0garbage", "failed to parse"),
        (b"this is not wasm", "failed to parse"),
        (&wasm(NO_START), "no `_start`"),
        (&wasm(BAD_START), "_start"),
        (&wasm(UNKNOWN_IMPORT), "host_thing"),
        (&wasm(SHARED_MEMORY), "shared"),
    ];
    for (module, needle) in cases {
        let r = run_checked(module, b"", &[]);
        match &r.outcome {
            Outcome::InvalidModule(why) => assert!(why.contains(needle), "{why} lacks {needle}"),
            other => panic!("expected invalid module, got {other:?}"),
        }
        assert_eq!(r.fuel_used, 0);
        assert!(EXEC.prepare(module).is_err());
    }
    let r = run_checked(&wasm(RELAXED_SIMD), b"", &[]);
    assert!(
        matches!(&r.outcome, Outcome::InvalidModule(why) if why.contains("relaxed")),
        "{r:?}"
    );
}

#[test]
fn oversized_module_and_input_are_rejected() {
    let cfg = ExecConfig {
        max_module_bytes: 64,
        max_input_bytes: 10,
        ..ExecConfig::default()
    };
    let exec = Executor::new(cfg).unwrap();
    let big = wasm(crate::guests::PROBE);
    assert!(big.len() > 64);
    let r = run_on(&exec, &big, b"", &[]);
    assert!(matches!(&r.outcome, Outcome::InvalidModule(why) if why.contains("over the limit")));
    let small = wasm(EMPTY_COMMAND);
    assert!(small.len() <= 64);
    assert_eq!(
        run_on(&exec, &small, b"0123456789", &[]).outcome,
        Outcome::Success
    );
    let r = run_on(&exec, &small, b"0123456789!", &[]);
    assert!(matches!(r.outcome, Outcome::InvalidInput(_)));
    let many: Vec<&str> = vec!["x"; 300];
    assert!(matches!(
        run_on(&exec, &small, b"", &many).outcome,
        Outcome::InvalidInput(_)
    ));
    assert!(matches!(
        run_on(&exec, &small, b"", &["a\0b"]).outcome,
        Outcome::InvalidInput(_)
    ));
}

#[test]
fn exit_codes() {
    let r = run_checked(&wasm(&exit_with(0)), b"", &[]);
    assert_eq!((r.outcome, r.exit_code), (Outcome::Success, 0));
    let r = run_checked(&wasm(&exit_with(7)), b"", &[]);
    assert_eq!((r.outcome, r.exit_code), (Outcome::Exit(7), 7));
    let r = run_checked(&wasm(&exit_with(200)), b"", &[]);
    assert_eq!((r.outcome, r.exit_code), (Outcome::Exit(200), 200));
}

#[test]
fn output_over_the_cap() {
    let cfg = ExecConfig {
        max_output_bytes: 10_000,
        ..ExecConfig::default()
    };
    let exec = Executor::new(cfg).unwrap();
    let r = run_on(&exec, &wasm(&flood(8)), b"", &[]);
    assert_eq!(r.outcome, Outcome::OutputTooLarge);
    assert_eq!(r.stdout.len(), 10_000);
    let again = run_on(&exec, &wasm(&flood(8)), b"", &[]);
    assert_eq!(again.digest(), r.digest());
    // Exactly at the cap is fine: 2 blocks = 8192 bytes.
    let r = run_on(&exec, &wasm(&flood(2)), b"", &[]);
    assert_eq!(r.outcome, Outcome::Success);
    assert_eq!(r.stdout.len(), 8192);
}

#[test]
fn clocks_random_and_environment_are_fixed() {
    let m = wasm(PROBE);
    let r = run_checked(&m, b"", &[]);
    assert_eq!(r.outcome, Outcome::Success);
    assert_eq!(r.stdout.len(), 44);
    let word = |i: usize| u64::from_le_bytes(r.stdout[i..i + 8].try_into().unwrap());
    assert_eq!(word(0), FIXED_WALL_CLOCK_SECS * 1_000_000_000);
    assert_eq!(word(8), 0);
    assert_eq!(word(16), MONOTONIC_STEP_NS);
    assert_eq!(&r.stdout[40..44], &[0, 0, 0, 0], "no environment variables");
    // Randomness depends on the job id, and only on it.
    let other = EXEC.run(JobRun {
        job_id: job_id(2),
        module: &m,
        input: b"",
        args: &[],
        fuel: FUEL,
        memory_limit_bytes: MEMORY,
    });
    assert_eq!(other.stdout[..24], r.stdout[..24]);
    assert_ne!(other.stdout[24..40], r.stdout[24..40]);
}

#[test]
fn sleeping_is_refused_without_waiting() {
    let started = Instant::now();
    let r = run_checked(&wasm(SLEEPER), b"", &[]);
    assert_eq!(r.outcome, Outcome::Exit(58));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn no_filesystem() {
    assert_eq!(
        run_checked(&wasm(PREOPEN_PROBE), b"", &[]).outcome,
        Outcome::Exit(8)
    );
}

#[test]
fn args_are_passed_after_program_name() {
    let r = run_checked(&wasm(ARGS_ECHO), b"", &["--flag", "x y"]);
    assert_eq!(r.stdout, b"job\0--flag\0x y\0");
}

#[test]
fn nans_are_canonical() {
    let r = run_checked(&wasm(NAN_BITS), b"", &[]);
    assert_eq!(r.stdout, 0x7fc0_0000u32.to_le_bytes());
}

#[test]
fn digest_covers_committed_fields_only() {
    let a = run(&wasm(&exit_with(7)), b"", &[]);
    let mut b = a.clone();
    b.elapsed += Duration::from_secs(1);
    b.cache_hit = !b.cache_hit;
    b.stderr = b"noise".to_vec();
    assert_eq!(a.digest(), b.digest());
    let mut c = a.clone();
    c.fuel_used += 1;
    assert_ne!(a.digest(), c.digest());
    let mut d = a.clone();
    d.stdout.push(b'x');
    assert_ne!(a.digest(), d.digest());
    let mut e = a.clone();
    e.outcome = Outcome::Exit(8);
    e.exit_code = 8;
    assert_ne!(a.digest(), e.digest());
}

#[test]
fn module_cache_is_bounded_lru() {
    let exec = Executor::new(ExecConfig {
        cache_capacity: 2,
        ..ExecConfig::default()
    })
    .unwrap();
    let a = wasm(&exit_with(1));
    let b = wasm(&exit_with(2));
    let c = wasm(&exit_with(3));
    assert!(!run_on(&exec, &a, b"", &[]).cache_hit);
    assert!(!run_on(&exec, &b, b"", &[]).cache_hit);
    assert!(run_on(&exec, &a, b"", &[]).cache_hit);
    assert!(!run_on(&exec, &c, b"", &[]).cache_hit); // evicts b, the least recently used
    assert_eq!(exec.cached_modules(), 2);
    assert!(run_on(&exec, &a, b"", &[]).cache_hit);
    assert!(!run_on(&exec, &b, b"", &[]).cache_hit);
    // Invalid modules are cached too, with their reason.
    let bad = b"nope".to_vec();
    let first = run_on(&exec, &bad, b"", &[]);
    let second = run_on(&exec, &bad, b"", &[]);
    assert!(second.cache_hit);
    assert_eq!(first.outcome, second.outcome);
}

#[test]
fn wall_clock_safety_net() {
    let cfg = ExecConfig {
        base_wall: Duration::from_millis(50),
        min_fuel_per_sec: u64::MAX,
        epoch_tick: Duration::from_millis(5),
        ..ExecConfig::default()
    };
    let exec = Executor::new(cfg).unwrap();
    let m = wasm(INFINITE_LOOP);
    let started = Instant::now();
    let r = exec.run(JobRun {
        job_id: job_id(1),
        module: &m,
        input: b"",
        args: &[],
        fuel: u64::MAX,
        memory_limit_bytes: MEMORY,
    });
    assert_eq!(r.outcome, Outcome::Timeout);
    assert!(!r.outcome.is_deterministic());
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// Output past the cap does not turn a wall-clock stop into a committable outcome: the fuel a
/// stopped run used depends on timing, so it must stay `Timeout`.
#[test]
fn a_timeout_after_too_much_output_is_still_a_timeout() {
    let cfg = ExecConfig {
        base_wall: Duration::from_millis(50),
        min_fuel_per_sec: u64::MAX,
        epoch_tick: Duration::from_millis(5),
        max_output_bytes: 16,
        ..ExecConfig::default()
    };
    let exec = Executor::new(cfg).unwrap();
    let m = wasm(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 8) "\00\01\00\00\00\01\00\00")
          (func (export "_start")
            (drop (call $write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 0)))
            (loop $l (br $l))))"#,
    );
    let r = exec.run(JobRun {
        job_id: job_id(1),
        module: &m,
        input: b"",
        args: &[],
        fuel: u64::MAX,
        memory_limit_bytes: MEMORY,
    });
    assert_eq!(r.outcome, Outcome::Timeout);
    assert!(r.stdout.len() <= 16);
}

#[test]
fn assemble_accepts_text_and_binary() {
    let bin = agora_exec::assemble(EMPTY_COMMAND.as_bytes()).unwrap();
    assert_eq!(&bin[..4], b"\0asm");
    assert_eq!(agora_exec::assemble(&bin).unwrap(), bin);
    assert!(agora_exec::assemble(b"(module (func (oops)))").is_err());
    assert_eq!(EXEC.prepare(&bin).unwrap(), agora_types::Hash::of(&bin));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_executor_runs_off_the_workers_with_bounded_concurrency() {
    let exec = AsyncExecutor::new(ExecConfig {
        concurrency: 2,
        ..ExecConfig::default()
    })
    .unwrap();
    let module: Arc<[u8]> = wasm(include_str!("../../../../examples/hashchain.wat")).into();
    let mut tasks = Vec::new();
    for i in 0..6u8 {
        let exec = exec.clone();
        let job = OwnedJob {
            job_id: job_id(i),
            module: module.clone(),
            input: Arc::from(&b"seed"[..]),
            args: vec!["20000".to_string()],
            fuel: FUEL,
            memory_limit_bytes: MEMORY,
        };
        tasks.push(tokio::spawn(async move {
            let busy = exec.busy();
            (exec.run(job).await, busy)
        }));
    }
    // The runtime stays responsive while jobs run.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let mut outputs = Vec::new();
    for t in tasks {
        let (r, busy) = t.await.unwrap();
        assert!(busy <= 2);
        assert_eq!(r.outcome, Outcome::Success);
        outputs.push(r.stdout);
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(exec.busy(), 0);
    assert!(exec.prepare(Arc::from(&b"bad"[..])).await.is_err());
}

#[test]
fn misuse_on_an_async_worker_is_an_internal_outcome_not_a_panic() {
    // Sync WASI cannot block on a tokio worker thread; the executor reports it instead of
    // unwinding into the caller.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let m = wasm(include_str!("../../../../examples/hello.wat"));
    let r = rt.block_on(async { run(&m, b"x", &[]) });
    assert!(matches!(r.outcome, Outcome::Internal(_)), "{r:?}");
    assert!(!r.outcome.is_deterministic());
}
