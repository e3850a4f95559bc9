//! Sandbox overhead figures: a CPU-bound program in the sandbox (with and without fuel metering)
//! against the same algorithm compiled natively, and module compile time against a cache hit.
//!
//! A bench binary that prints its figures (best of several runs). Run with
//! `cargo bench -p agora-exec --bench sandbox`, or, reusing the dev build of wasmtime (whose
//! dependencies are already optimised) with this crate optimised too:
//! `cargo bench -p agora-exec --bench sandbox --profile dev
//!  --config 'profile.dev.package.agora-exec.opt-level=3'
//!  --config 'profile.dev.package.agora-exec.overflow-checks=false'
//!  --config 'profile.dev.package.agora-exec.debug-assertions=false'`.
//! The "wasm" column runs without fuel metering (epoch interruption stays on in both).

use std::hint::black_box;
use std::time::{Duration, Instant};

use agora_exec::{ExecConfig, Executor, JobRun, Outcome};
use agora_types::Hash;

const HASHCHAIN: &str = include_str!("../../../examples/hashchain.wat");
const PRIMES: &str = include_str!("../../../examples/primes.wat");
const WORDCOUNT: &str = include_str!("../../../examples/wordcount.wat");
const RUNS: usize = 5;

fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let out = f();
        best = best.min(t.elapsed());
        last = Some(out);
    }
    (best, last.expect("at least one run"))
}

fn native_hash_chain(seed: &[u8], rounds: u64) -> Vec<u8> {
    let mut s: u64 = 0xcbf29ce484222325;
    for b in seed {
        s = (s ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    for _ in 0..black_box(rounds) {
        let mut z = s.wrapping_add(0x9e3779b97f4a7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        s = z ^ (z >> 31);
    }
    format!("{s:016x}\n").into_bytes()
}

fn native_primes(n: usize) -> Vec<u8> {
    use std::io::Write;
    let mut sieve = vec![0u8; black_box(n).max(2)];
    let mut i = 2;
    while i * i < n {
        if sieve[i] == 0 {
            let mut j = i * i;
            while j < n {
                sieve[j] = 1;
                j += i;
            }
        }
        i += 1;
    }
    let mut out = Vec::new();
    for (i, c) in sieve.iter().enumerate().take(n).skip(2) {
        if *c == 0 {
            let _ = writeln!(out, "{i}");
        }
    }
    out
}

fn native_wordcount(input: &[u8]) -> Vec<u8> {
    let (mut lines, mut words, mut in_word) = (0u64, 0u64, false);
    for &c in black_box(input) {
        if c == b'\n' {
            lines += 1;
        }
        if c == b' ' || (9..=13).contains(&c) {
            in_word = false;
        } else if !in_word {
            words += 1;
            in_word = true;
        }
    }
    format!("{lines} {words} {}\n", input.len()).into_bytes()
}

struct Case {
    name: &'static str,
    module: Vec<u8>,
    input: Vec<u8>,
    args: Vec<String>,
    native: Box<dyn Fn() -> Vec<u8>>,
}

fn run(exec: &Executor, case: &Case) -> (Vec<u8>, u64) {
    let r = exec.run(JobRun {
        job_id: Hash::of(case.name.as_bytes()),
        module: &case.module,
        input: &case.input,
        args: &case.args,
        fuel: 1_000_000_000_000,
        memory_limit_bytes: 256 << 20,
    });
    assert_eq!(r.outcome, Outcome::Success, "{}: {}", case.name, r.outcome);
    (r.stdout, r.fuel_used)
}

fn main() {
    let cfg = ExecConfig {
        max_output_bytes: 64 << 20,
        ..ExecConfig::default()
    };
    let metered = Executor::new(cfg.clone()).expect("executor");
    let unmetered = Executor::with_fuel_metering(cfg, false).expect("executor");

    let text = "the quick brown fox jumps over the lazy dog\n".repeat(200_000);
    let cases = vec![
        Case {
            name: "hashchain 200M rounds",
            module: agora_exec::assemble(HASHCHAIN.as_bytes()).unwrap(),
            input: b"seed".to_vec(),
            args: vec!["200000000".into()],
            native: Box::new(|| native_hash_chain(b"seed", 200_000_000)),
        },
        Case {
            name: "primes below 20M",
            module: agora_exec::assemble(PRIMES.as_bytes()).unwrap(),
            input: Vec::new(),
            args: vec!["20000000".into()],
            native: Box::new(|| native_primes(20_000_000)),
        },
        Case {
            name: "wordcount 8.8 MB",
            module: agora_exec::assemble(WORDCOUNT.as_bytes()).unwrap(),
            input: text.clone().into_bytes(),
            args: Vec::new(),
            native: Box::new(move || native_wordcount(text.as_bytes())),
        },
    ];

    println!("sandbox vs native, best of {RUNS} runs (module cached)");
    println!(
        "{:<24} {:>10} {:>12} {:>12} {:>9} {:>9} {:>9} {:>14}",
        "program", "native", "wasm+fuel", "wasm", "fuel/nat", "wasm/nat", "fuel/wasm", "fuel used"
    );
    for case in &cases {
        let (t_native, out_native) = best(RUNS, || (case.native)());
        run(&metered, case);
        run(&unmetered, case);
        let (t_fuel, (out_fuel, fuel)) = best(RUNS, || run(&metered, case));
        let (t_plain, (out_plain, _)) = best(RUNS, || run(&unmetered, case));
        assert_eq!(
            out_native, out_fuel,
            "{}: sandbox output differs from native",
            case.name
        );
        assert_eq!(out_native, out_plain);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{:<24} {:>8.1}ms {:>10.1}ms {:>10.1}ms {:>8.2}x {:>8.2}x {:>8.2}x {:>14}",
            case.name,
            ms(t_native),
            ms(t_fuel),
            ms(t_plain),
            ms(t_fuel) / ms(t_native),
            ms(t_plain) / ms(t_native),
            ms(t_fuel) / ms(t_plain),
            fuel
        );
    }

    println!();
    println!("compile (fuel + epoch instrumentation) vs cache hit, best of {RUNS}");
    println!(
        "{:<24} {:>8} {:>12} {:>12} {:>16} {:>16}",
        "module", "bytes", "compile", "cache hit", "job (cold)", "job (cached)"
    );
    for case in &cases {
        let (t_compile, _) = best(RUNS, || metered.compile_uncached(&case.module).unwrap());
        metered.prepare(&case.module).unwrap();
        let (t_hit, _) = best(RUNS * 20, || metered.prepare(&case.module).unwrap());
        let tiny = Case {
            name: case.name,
            module: case.module.clone(),
            input: b"7".to_vec(),
            args: vec!["7".into()],
            native: Box::new(Vec::new),
        };
        let t_cold = (0..RUNS)
            .map(|_| {
                let fresh = Executor::new(ExecConfig::default()).unwrap();
                let t = Instant::now();
                run(&fresh, &tiny);
                t.elapsed()
            })
            .min()
            .unwrap_or_default();
        let (t_warm, _) = best(RUNS * 20, || run(&metered, &tiny));
        println!(
            "{:<24} {:>8} {:>10.3}ms {:>10.3}ms {:>14.3}ms {:>14.3}ms",
            case.name.split(' ').next().unwrap_or(case.name),
            case.module.len(),
            t_compile.as_secs_f64() * 1e3,
            t_hit.as_secs_f64() * 1e3,
            t_cold.as_secs_f64() * 1e3,
            t_warm.as_secs_f64() * 1e3,
        );
    }
}
