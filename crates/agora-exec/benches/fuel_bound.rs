//! How fast fuel burns at worst: wall time per unit of fuel for the hostile corpus
//! (`tests/hostile/*.wat`) and for pure-wasm loops of the cheapest-per-fuel operators. The
//! slowest rate found here bounds `ExecConfig::min_fuel_per_sec` (see ADR 011).
//!
//! A bench binary that prints its figures (the slowest of a few runs per case, each run sized to
//! take about a quarter of a second). Run it on the dev build, whose dependencies and this crate
//! are optimised (the figures in ADR 011 come from it), with
//! `cargo bench -p agora-exec --bench fuel_bound --profile dev`, or with plain
//! `cargo bench -p agora-exec --bench fuel_bound` on a full release build.
//! Pass parts of case names as arguments to run only those.

use std::time::Duration;

use agora_exec::{ExecConfig, Executor, JobRun, Outcome};
use agora_types::Hash;

const RUNS: usize = 3;
/// Each measured run is sized (by its fuel limit) to take at least this long.
const TARGET: Duration = Duration::from_millis(250);

/// Pure-wasm loops whose every iteration is a few fuel but may leave the compiled code: calls,
/// libcalls into the runtime, bulk operations of zero length, refused grows.
const LOOPS: &[(&str, &str)] = &[
    ("wasm: loop/br", "(loop $l (br $l))"),
    (
        "wasm: i64.div_s chain",
        "(local $x i64) (local.set $x (i64.const -1))
         (loop $l (local.set $x (i64.div_s (i64.const 0x7fffffffffffffff) (i64.or (local.get $x) (i64.const 1)))) (br $l))",
    ),
    (
        "wasm: f64.sqrt chain",
        "(local $x f64) (local.set $x (f64.const 2))
         (loop $l (local.set $x (f64.sqrt (f64.add (local.get $x) (f64.const 1)))) (br $l))",
    ),
    ("wasm: call", "(loop $l (call $nop) (br $l))"),
    (
        "wasm: call_indirect",
        "(loop $l (call_indirect (type $v) (i32.const 0)) (br $l))",
    ),
    (
        "wasm: memory.grow 0",
        "(loop $l (drop (memory.grow (i32.const 0))) (br $l))",
    ),
    (
        "wasm: memory.grow refused",
        "(loop $l (drop (memory.grow (i32.const 60000))) (br $l))",
    ),
    ("wasm: memory.size", "(loop $l (drop (memory.size)) (br $l))"),
    (
        "wasm: memory.fill 0 bytes",
        "(loop $l (memory.fill (i32.const 0) (i32.const 0) (i32.const 0)) (br $l))",
    ),
    (
        "wasm: memory.copy 0 bytes",
        "(loop $l (memory.copy (i32.const 0) (i32.const 8) (i32.const 0)) (br $l))",
    ),
    (
        "wasm: memory.init 0 bytes",
        "(loop $l (memory.init $d (i32.const 0) (i32.const 0) (i32.const 0)) (br $l))",
    ),
    ("wasm: data.drop", "(loop $l (data.drop $d) (br $l))"),
    (
        "wasm: table.grow 0",
        "(loop $l (drop (table.grow $t (ref.null func) (i32.const 0))) (br $l))",
    ),
    (
        "wasm: table.fill 0",
        "(loop $l (table.fill $t (i32.const 0) (ref.null func) (i32.const 0)) (br $l))",
    ),
    (
        "wasm: table.copy 0",
        "(loop $l (table.copy $t $t (i32.const 0) (i32.const 0) (i32.const 0)) (br $l))",
    ),
    (
        "wasm: table.get/set",
        "(loop $l (table.set $t (i32.const 1) (table.get $t (i32.const 0))) (br $l))",
    ),
    ("wasm: ref.func", "(loop $l (drop (ref.func $nop)) (br $l))"),
    (
        "wasm: memory.fill 1 MiB",
        "(loop $l (memory.fill (i32.const 0) (i32.const 1) (i32.const 1048576)) (br $l))",
    ),
    (
        "wasm: memory.copy 1 MiB",
        "(loop $l (memory.copy (i32.const 0) (i32.const 1048576) (i32.const 1048576)) (br $l))",
    ),
    (
        "wasm: f64.div chain",
        "(local $x f64) (local.set $x (f64.const 3))
         (loop $l (local.set $x (f64.div (f64.const 1e300) (local.get $x))) (br $l))",
    ),
    (
        "wasm: i64.rem_u chain",
        "(local $x i64) (local.set $x (i64.const 12345))
         (loop $l (local.set $x (i64.rem_u (i64.const 0x7fffffffffffffff) (i64.or (local.get $x) (i64.const 3)))) (br $l))",
    ),
    // A dependent load per iteration over a 128 MiB cycle (a full-period LCG of word indices
    // written first): every load misses the caches and the TLB.
    (
        "wasm: pointer chase 128 MiB",
        "(local $i i32) (local $p i32)
         (drop (memory.grow (i32.const 2048)))
         (loop $w
           (i32.store (i32.shl (local.get $i) (i32.const 2))
             (i32.shl (i32.and (i32.add (i32.mul (local.get $i) (i32.const 1664525)) (i32.const 1013904223)) (i32.const 0x1ffffff)) (i32.const 2)))
           (local.set $i (i32.add (local.get $i) (i32.const 1)))
           (br_if $w (i32.lt_u (local.get $i) (i32.const 0x2000000))))
         (loop $l (local.set $p (i32.load (local.get $p))) (br $l))",
    ),
    // Growing to 256 MiB and touching every 4 KiB page once: page faults, bounded by the memory
    // limit (a one-off cost per job, which the base wall time must cover).
    (
        "wasm: first touch 256 MiB",
        "(local $i i32)
         (drop (memory.grow (i32.const 4064)))
         (loop $w
           (i32.store (local.get $i) (i32.const 1))
           (local.set $i (i32.add (local.get $i) (i32.const 4096)))
           (br_if $w (i32.lt_u (local.get $i) (i32.const 0x10000000))))",
    ),
    (
        "wasm: store/load sweep",
        "(local $i i32)
         (loop $l (i64.store (local.get $i) (i64.load (local.get $i)))
           (local.set $i (i32.and (i32.add (local.get $i) (i32.const 4096)) (i32.const 0x1fffff)))
           (br $l))",
    ),
];

fn loop_module(body: &str) -> Vec<u8> {
    agora_exec::assemble(
        format!(
            r#"(module
  (type $v (func))
  (memory (export "memory") 32)
  (table $t 4 funcref)
  (elem (i32.const 0) $nop)
  (elem declare func $nop)
  (data $d "abcdefgh")
  (func $nop)
  (func (export "_start") {body}))"#
        )
        .as_bytes(),
    )
    .expect("assemble")
}

struct Case {
    name: String,
    module: Vec<u8>,
    args: Vec<String>,
}

struct Figure {
    fuel: u64,
    elapsed: Duration,
    outcome: Outcome,
}

impl Figure {
    /// Fuel burnt per second of wall time.
    fn rate(&self) -> u64 {
        let ns = self.elapsed.as_nanos().max(1);
        u64::try_from(u128::from(self.fuel) * 1_000_000_000 / ns).unwrap_or(u64::MAX)
    }
}

fn run(exec: &Executor, case: &Case, fuel: u64) -> Figure {
    let r = exec.run(JobRun {
        job_id: Hash::of(case.name.as_bytes()),
        module: &case.module,
        input: b"some input for fd_read\n",
        args: &case.args,
        fuel,
        memory_limit_bytes: 512 << 20,
    });
    assert!(
        r.outcome.is_deterministic(),
        "{}: {} after {:?}",
        case.name,
        r.outcome,
        r.elapsed
    );
    Figure {
        fuel: r.fuel_used,
        elapsed: r.elapsed,
        outcome: r.outcome,
    }
}

/// Grow the fuel limit until a run takes `TARGET`, then keep the slowest rate of `RUNS` runs
/// (the rate that matters is the worst one).
fn measure(exec: &Executor, case: &Case) -> Figure {
    let mut fuel = 1_000_000u64;
    let mut f = run(exec, case, fuel);
    while f.elapsed < TARGET && f.fuel == fuel && fuel < exec.config().max_fuel / 10 {
        let scale = (TARGET.as_nanos() / f.elapsed.as_nanos().max(1)).clamp(2, 100) as u64;
        fuel = fuel.saturating_mul(scale).min(exec.config().max_fuel);
        f = run(exec, case, fuel);
    }
    for _ in 1..RUNS {
        let g = run(exec, case, fuel);
        if g.rate() < f.rate() {
            f = g;
        }
    }
    f
}

fn main() {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    // A wall budget that never fires here: we measure what fuel alone allows.
    let exec = Executor::new(ExecConfig {
        base_wall: Duration::from_secs(3600),
        ..ExecConfig::default()
    })
    .expect("executor");

    let mut cases: Vec<Case> = LOOPS
        .iter()
        .map(|(name, body)| Case {
            name: name.to_string(),
            module: loop_module(body),
            args: Vec::new(),
        })
        .collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wat"))
        .collect();
    files.sort();
    for path in files {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let text = std::fs::read(&path).expect("read corpus module");
        let args = if stem == "args_loop" {
            (0..200)
                .map(|i| format!("{i:03}{}", "x".repeat(300)))
                .collect()
        } else {
            Vec::new()
        };
        cases.push(Case {
            name: format!("host: {stem}"),
            module: agora_exec::assemble(&text).expect("assemble corpus module"),
            args,
        });
    }
    cases.retain(|c| only.is_empty() || only.iter().any(|o| c.name.contains(o.as_str())));

    println!(
        "{:<34} {:>16} {:>10} {:>12} {:>9}  outcome",
        "case", "fuel", "ms", "Mfuel/s", "ns/kfuel"
    );
    let mut slowest: Option<(String, u64)> = None;
    for case in &cases {
        let f = measure(&exec, case);
        let rate = f.rate();
        println!(
            "{:<34} {:>16} {:>10.1} {:>12} {:>9}  {}",
            case.name,
            f.fuel,
            f.elapsed.as_secs_f64() * 1000.0,
            rate / 1_000_000,
            1_000_000_000_000u64 / rate.max(1),
            f.outcome
        );
        // Runs that ended early (a trap, the memory limit) say little about the rate.
        let ran_out = matches!(
            f.outcome,
            Outcome::OutOfFuel | Outcome::MemoryExceeded | Outcome::OutputTooLarge
        );
        if ran_out && slowest.as_ref().is_none_or(|(_, r)| rate < *r) {
            slowest = Some((case.name.clone(), rate));
        }
    }
    if let Some((name, rate)) = slowest {
        let cfg = ExecConfig::default();
        println!(
            "\nslowest: {name} at {} M fuel/s; ExecConfig::min_fuel_per_sec is {} M/s (margin {:.1}x)",
            rate / 1_000_000,
            cfg.min_fuel_per_sec / 1_000_000,
            rate as f64 / cfg.min_fuel_per_sec as f64
        );
    }
}
