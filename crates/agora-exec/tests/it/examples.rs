//! The programs under `examples/`, with their expected output.

use agora_exec::Outcome;

use crate::{run_checked, wasm};

const HELLO: &str = include_str!("../../../../examples/hello.wat");
const WORDCOUNT: &str = include_str!("../../../../examples/wordcount.wat");
const PRIMES: &str = include_str!("../../../../examples/primes.wat");
const HASHCHAIN: &str = include_str!("../../../../examples/hashchain.wat");

fn stdout_of(wat: &str, input: &[u8], args: &[&str]) -> String {
    let r = run_checked(&wasm(wat), input, args);
    assert_eq!(
        r.outcome,
        Outcome::Success,
        "stderr: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(r.exit_code, 0);
    assert!(r.fuel_used > 0);
    String::from_utf8(r.stdout).expect("utf-8 output")
}

#[test]
fn hello_echoes_stdin() {
    assert_eq!(stdout_of(HELLO, b"", &[]), "hello, world\n");
    assert_eq!(stdout_of(HELLO, b"agora\n", &[]), "hello, world\nagora\n");
    // Input larger than one read buffer comes back intact.
    let big: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let r = run_checked(&wasm(HELLO), &big, &[]);
    assert_eq!(&r.stdout[..13], b"hello, world\n");
    assert_eq!(&r.stdout[13..], &big[..]);
}

#[test]
fn wordcount_counts_lines_words_bytes() {
    assert_eq!(stdout_of(WORDCOUNT, b"", &[]), "0 0 0\n");
    assert_eq!(
        stdout_of(WORDCOUNT, b"one two  three\nfour\n\n\tfive", &[]),
        "3 5 26\n"
    );
    let text = "the quick brown fox\njumps over\r\nthe lazy dog\n".repeat(5000);
    let expect = format!(
        "{} {} {}\n",
        text.matches('\n').count(),
        text.split_ascii_whitespace().count(),
        text.len()
    );
    assert_eq!(stdout_of(WORDCOUNT, text.as_bytes(), &[]), expect);
}

fn primes_below(n: usize) -> String {
    let mut composite = vec![false; n.max(2)];
    let mut out = String::new();
    for i in 2..n {
        if !composite[i] {
            out.push_str(&format!("{i}\n"));
            let mut j = i * i;
            while j < n {
                composite[j] = true;
                j += i;
            }
        }
    }
    out
}

#[test]
fn primes_from_arg_stdin_or_default() {
    assert_eq!(
        stdout_of(PRIMES, b"", &["30"]),
        "2\n3\n5\n7\n11\n13\n17\n19\n23\n29\n"
    );
    assert_eq!(
        stdout_of(PRIMES, b" 20\n", &[]),
        "2\n3\n5\n7\n11\n13\n17\n19\n"
    );
    assert_eq!(stdout_of(PRIMES, b"", &[]), primes_below(100));
    assert_eq!(stdout_of(PRIMES, b"", &["2"]), "");
    let big = stdout_of(PRIMES, b"", &["200000"]);
    assert_eq!(big.lines().count(), 17984);
    assert_eq!(big, primes_below(200_000));
}

#[test]
fn primes_rejects_huge_n() {
    let r = run_checked(&wasm(PRIMES), b"", &["5000000000"]);
    assert_eq!(r.outcome, Outcome::Exit(2));
    assert_eq!(r.exit_code, 2);
}

/// The same chain computed natively.
fn hash_chain(seed: &[u8], rounds: u64) -> String {
    let mut s: u64 = 0xcbf29ce484222325;
    for b in seed {
        s = (s ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    for _ in 0..rounds {
        let mut z = s.wrapping_add(0x9e3779b97f4a7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        s = z ^ (z >> 31);
    }
    format!("{s:016x}\n")
}

#[test]
fn hashchain_matches_native() {
    // Values cross-checked with an independent implementation.
    assert_eq!(stdout_of(HASHCHAIN, b"", &[]), "489e965e73196f70\n");
    assert_eq!(stdout_of(HASHCHAIN, b"agora", &[]), "6d16635d5a599e72\n");
    assert_eq!(
        stdout_of(HASHCHAIN, b"agora\n", &["100000"]),
        "a4cf8b6c0f4df776\n"
    );
    assert_eq!(stdout_of(HASHCHAIN, b"", &["0"]), "cbf29ce484222325\n");
    assert_eq!(
        stdout_of(HASHCHAIN, b"seed", &["12345"]),
        hash_chain(b"seed", 12345)
    );
}

#[test]
fn fuel_grows_with_work() {
    let m = wasm(HASHCHAIN);
    let small = run_checked(&m, b"", &["1000"]).fuel_used;
    let large = run_checked(&m, b"", &["2000"]).fuel_used;
    assert!(large > small);
    // Every round costs the same fuel, so the difference is linear in rounds.
    let larger = run_checked(&m, b"", &["3000"]).fuel_used;
    assert_eq!(larger - large, large - small);
}
