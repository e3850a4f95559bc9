//! The "fuel-cheap, wall-expensive" corpus (`tests/hostile/*.wat`): modules built to do as much
//! host or runtime work as they can per unit of fuel. Each must end by a deterministic outcome —
//! fuel exhaustion, a trap or the memory limit — with the same fuel used on every run, and never
//! by the wall-clock safety net (issue #12: a module that reached the net got its honest winner
//! slashed for a timeout).

use std::path::PathBuf;

use agora_exec::{ExecConfig, ExecResult, Executor, JobRun, Outcome};

use crate::{job_id, MEMORY};

/// Small enough that each module ends in well under a second, large enough for many iterations
/// of every loop (the wall budget for it is 2 s + 20 M / 10 M/s = 4 s).
const FUEL: u64 = 20_000_000;

/// How each corpus module must end.
const CORPUS: &[(&str, Expect)] = &[
    ("args_loop", Expect::OutOfFuel),
    ("call_indirect_loop", Expect::OutOfFuel),
    ("clock_loop", Expect::OutOfFuel),
    ("deep_recursion", Expect::StackOverflow),
    ("environ_loop", Expect::OutOfFuel),
    ("fd_read_stdin_loop", Expect::OutOfFuel),
    ("fd_stat_loop", Expect::OutOfFuel),
    ("fd_write_huge_buffer", Expect::OutputTooLarge),
    ("fd_write_many_iovecs", Expect::OutOfFuel),
    ("fd_write_zero_iovecs", Expect::OutOfFuel),
    ("huge_table", Expect::OutOfFuel),
    ("memory_copy_loop", Expect::OutOfFuel),
    ("memory_fill_loop", Expect::OutOfFuel),
    ("memory_grow_hog", Expect::MemoryExceeded),
    ("memory_grow_zero", Expect::OutOfFuel),
    ("path_open_long", Expect::OutOfFuel),
    ("poll_oneoff_many", Expect::OutOfFuel),
    ("random_get_huge", Expect::OutOfFuel),
    ("random_get_loop", Expect::OutOfFuel),
    ("random_get_out_of_bounds", Expect::OutOfFuel),
    ("sched_yield_loop", Expect::OutOfFuel),
    ("table_grow_zero", Expect::OutOfFuel),
];

#[derive(Clone, Copy, Debug)]
enum Expect {
    OutOfFuel,
    MemoryExceeded,
    StackOverflow,
    /// Writes past the stdout cap (that outcome wins over the fuel running out as well).
    OutputTooLarge,
}

/// What a failed assertion shows of a run (not its stdout, which may be megabytes).
fn brief(r: &ExecResult) -> String {
    format!(
        "{} with {} fuel used after {:?}",
        r.outcome, r.fuel_used, r.elapsed
    )
}

impl Expect {
    /// Whether `r` is the expected end, or what is wrong with it.
    fn check(self, r: &ExecResult) -> Result<(), String> {
        let ok = match self {
            Expect::OutOfFuel => r.outcome == Outcome::OutOfFuel && r.fuel_used == FUEL,
            // Refused grows return -1; a guest that keeps asking runs out of fuel, and the
            // refusal makes that a memory-limit outcome with all the fuel counted.
            Expect::MemoryExceeded => r.outcome == Outcome::MemoryExceeded && r.fuel_used == FUEL,
            Expect::StackOverflow => {
                matches!(&r.outcome, Outcome::Trap(why) if why.contains("stack"))
                    && r.fuel_used > 0
                    && r.fuel_used < FUEL
            }
            Expect::OutputTooLarge => r.outcome == Outcome::OutputTooLarge,
        };
        if ok && r.outcome.is_deterministic() {
            Ok(())
        } else {
            Err(format!("expected {self:?}, got {}", brief(r)))
        }
    }
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/hostile")
}

pub fn corpus_module(name: &str) -> Vec<u8> {
    let path = corpus_dir().join(format!("{name}.wat"));
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    agora_exec::assemble(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Arguments for `args_loop`: close to the executor's 64 KiB cap, so each copy is large.
fn big_args() -> Vec<String> {
    (0..200)
        .map(|i| format!("{i:03}{}", "x".repeat(300)))
        .collect()
}

fn run_hostile(exec: &Executor, name: &str, module: &[u8]) -> ExecResult {
    let args = if name == "args_loop" {
        big_args()
    } else {
        Vec::new()
    };
    exec.run(JobRun {
        job_id: job_id(7),
        module,
        input: b"a little input\n",
        args: &args,
        fuel: FUEL,
        memory_limit_bytes: MEMORY,
    })
}

#[test]
fn the_corpus_is_listed_in_full() {
    let mut on_disk: Vec<String> = std::fs::read_dir(corpus_dir())
        .expect("corpus directory")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".wat").map(str::to_owned)
        })
        .collect();
    on_disk.sort();
    let listed: Vec<&str> = CORPUS.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        on_disk, listed,
        "every hostile module needs an expected outcome"
    );
}

#[test]
fn hostile_modules_end_deterministically_within_their_fuel() {
    // The production wall-clock rule, and a second executor for the replica's run.
    let a = Executor::new(ExecConfig::default()).expect("executor");
    let b = Executor::new(ExecConfig::default()).expect("executor");
    let mut failures = Vec::new();
    for (name, expect) in CORPUS {
        let module = corpus_module(name);
        let first = run_hostile(&a, name, &module);
        let second = run_hostile(&b, name, &module);
        let problem = if first.outcome == Outcome::Timeout || second.outcome == Outcome::Timeout {
            Err(format!(
                "stopped by the wall-clock net: {} / {}",
                brief(&first),
                brief(&second)
            ))
        } else if first.digest() != second.digest() {
            Err(format!(
                "two runs disagree: {} / {}",
                brief(&first),
                brief(&second)
            ))
        } else {
            expect.check(&first)
        };
        if let Err(why) = problem {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
