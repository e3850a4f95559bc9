//! `agora bench`: small load generators for a running network, driven only through a node's
//! public API so they measure what a client sees.
//!
//! - `agora bench tx` submits signed transfers at a steady rate and watches committed blocks
//!   for them, then prints blocks per second, committed transactions per second and the
//!   submit-to-commit latency percentiles. [`transfer_load`] is that load, also offered by
//!   `agora bench faults` (`bench_faults.rs`), which starts its own testnets.
//! - `agora bench jobs` submits tiny jobs (the `hello` example) at a steady rate, follows them
//!   to a final state and prints how many settled, the submit-to-settled latency percentiles and
//!   the sustained settlement rate; it checks a sample of outputs against their committed
//!   result hashes the way `agora job result` does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agora_client::Client;
use agora_types::{Address, Amount, Hash};
use anyhow::{bail, Context};

use crate::cli::ApiArg;

/// Options of `agora bench tx`.
#[derive(Debug, clap::Args)]
pub struct BenchTxArgs {
    #[command(flatten)]
    pub api: ApiArg,
    /// Key paying for the transfers [default: the testnet's client key]
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Transactions to send
    #[arg(long, default_value_t = 300)]
    pub count: u64,
    /// Transactions per second
    #[arg(long, default_value_t = 50)]
    pub rate: u64,
}

/// Run the load and print the figures.
pub fn tx(args: &BenchTxArgs) -> anyhow::Result<()> {
    if args.rate == 0 || args.count == 0 {
        bail!("--rate and --count must be positive");
    }
    let client = crate::commands::connect(&args.api)?;
    let key = crate::jobs::client_key(&args.key)?;
    let never = AtomicBool::new(false);
    let report = transfer_load(
        &client,
        key,
        &TransferLoad {
            rate: args.rate,
            count: Some(args.count),
            drain: Duration::from_secs(30),
            stop: &never,
        },
    )?;
    let elapsed = report.elapsed.as_secs_f64();
    let pct = |p: u64| percentile(&report.latencies, p);
    let ms = |d: Option<Duration>| {
        d.map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0))
            .unwrap_or("-".into())
    };
    println!(
        "sent {} transfers at {} tx/s ({} refused); committed {} in {:.1}s: {:.1} tx/s, {:.2} blocks/s",
        report.sent,
        args.rate,
        report.refused,
        report.latencies.len(),
        elapsed,
        report.latencies.len() as f64 / elapsed,
        report.blocks_per_s()
    );
    println!(
        "submit-to-commit latency (polling every 5 ms): p50 {}, p99 {}, max {}",
        ms(pct(50)),
        ms(pct(99)),
        ms(report.latencies.last().copied())
    );
    if report.pending > 0 {
        bail!(
            "{} transactions were accepted but not committed within 30 s",
            report.pending
        );
    }
    Ok(())
}

/// A steady load of signed 1-unit transfers to a sink account.
pub struct TransferLoad<'a> {
    /// Transfers offered per second.
    pub rate: u64,
    /// Stop sending after this many; `None` sends until `stop`.
    pub count: Option<u64>,
    /// How long to keep watching for commits once sending is over.
    pub drain: Duration,
    /// Set by another thread to end the load at once.
    pub stop: &'a AtomicBool,
}

/// What a run of [`transfer_load`] saw.
#[derive(Debug, Clone)]
pub struct TransferReport {
    /// Transfers offered (accepted or refused by the node).
    pub sent: u64,
    pub refused: u64,
    /// Submit-to-commit latency of each committed transfer, ascending.
    pub latencies: Vec<Duration>,
    /// Accepted transfers not seen in a block when the load ended.
    pub pending: usize,
    /// Committed heights when the load started and when it ended.
    pub start_height: u64,
    pub end_height: u64,
    /// From the first send to the end of the load.
    pub elapsed: Duration,
}

impl TransferReport {
    /// Heights committed per second over the run.
    pub fn blocks_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.end_height.saturating_sub(self.start_height) as f64 / secs
        } else {
            0.0
        }
    }
}

/// Offer `load` from `key`'s account through `client` and follow every committed block for the
/// transfers' receipts (polling the node's height every 5 ms).
pub fn transfer_load(
    client: &Client,
    key: agora_crypto::Keypair,
    load: &TransferLoad<'_>,
) -> anyhow::Result<TransferReport> {
    let start_height = client.status()?.height;
    let (builder, mut nonce) = crate::jobs::builder_and_nonce(client, key)?;
    let sink = Address(Hash::derive("agora/bench-sink", b"").0);

    let started = Instant::now();
    let mut pending: BTreeMap<Hash, Instant> = BTreeMap::new();
    let mut latencies: Vec<Duration> = Vec::new();
    let mut seen_height = start_height;
    let interval = Duration::from_secs_f64(1.0 / load.rate.max(1) as f64);
    let mut next_send = Instant::now();
    let mut sent = 0u64;
    let mut refused = 0u64;
    let mut last_send = Instant::now();
    loop {
        if load.stop.load(Ordering::Relaxed) {
            break;
        }
        let sending = load.count.is_none_or(|c| sent < c);
        if !sending && (pending.is_empty() || last_send.elapsed() >= load.drain) {
            break;
        }
        if sending && Instant::now() >= next_send {
            let env = builder.transfer(nonce, sink, Amount(1));
            let bytes = agora_market::encode_envelope(&env);
            match client.post_bytes("/v1/tx", "application/octet-stream", &bytes) {
                Ok(_) => {
                    pending.insert(env.hash(), Instant::now());
                    nonce += 1;
                }
                Err(e) => {
                    refused += 1;
                    // Under a fault every send may be refused for a while: warn once.
                    if refused == 1 {
                        tracing::warn!(target: "bench", error = %e, "transaction refused (further refusals are counted)");
                    } else {
                        tracing::debug!(target: "bench", error = %e, "transaction refused");
                    }
                }
            }
            sent += 1;
            last_send = Instant::now();
            next_send += interval;
            continue;
        }
        let height = client.status()?.height;
        while seen_height < height {
            seen_height += 1;
            let block: serde_json::Value = client.get_json(&format!("/v1/blocks/{seen_height}"))?;
            let now = Instant::now();
            for r in block["receipts"].as_array().into_iter().flatten() {
                if let Some(h) = r["tx_hash"].as_str().and_then(|h| h.parse::<Hash>().ok()) {
                    if let Some(t) = pending.remove(&h) {
                        latencies.push(now - t);
                    }
                }
            }
        }
        let poll = Duration::from_millis(5);
        std::thread::sleep(if sending {
            poll.min(next_send.saturating_duration_since(Instant::now()))
        } else {
            poll
        });
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok(TransferReport {
        sent,
        refused,
        latencies,
        pending: pending.len(),
        start_height,
        end_height: seen_height,
        elapsed,
    })
}

/// The `p`th percentile (nearest rank, `p` in 0..=100) of an ascending slice; `None` if empty.
pub fn percentile(sorted: &[Duration], p: u64) -> Option<Duration> {
    let n = sorted.len() as u64;
    if n == 0 {
        return None;
    }
    let rank = (n * p.min(100)).div_ceil(100).max(1);
    sorted.get((rank - 1) as usize).copied()
}

/// The program every `bench jobs` job runs: prints `hello, world` and echoes its input.
pub(crate) const BENCH_PROGRAM: &str = include_str!("../../examples/hello.wat");
/// The input every `bench jobs` job reads.
pub(crate) const BENCH_INPUT: &[u8] = b"bench\n";
/// Submissions not yet committed at once (the market accepts nonces up to 64 ahead).
const MAX_OUTSTANDING: u64 = 48;
/// Pause between two sweeps over the job list (and between two account-nonce reads when the
/// nonce window is full).
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Most jobs one run follows: the node's job list answers at most this many.
const MAX_BENCH_JOBS: u64 = 1000;
/// Refused submissions in a row after which the bench gives up.
const MAX_REFUSED_IN_A_ROW: u32 = 10;

/// Options of `agora bench jobs`.
#[derive(Debug, clap::Args)]
pub struct BenchJobsArgs {
    #[command(flatten)]
    pub api: ApiArg,
    /// Key paying for the jobs [default: the testnet's client key]
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Jobs to submit (at most 1000)
    #[arg(long, default_value_t = 50)]
    pub jobs: u64,
    /// Jobs submitted per second
    #[arg(long, default_value_t = 5)]
    pub rate: u64,
    /// Coprocessors that run each job (1 to 5)
    #[arg(long, default_value_t = 1)]
    pub replicas: u32,
    /// Length of each job's Dutch auction
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub auction_ms: u64,
    /// Settled jobs whose output is fetched and checked against the committed result hash
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub verify: u64,
    /// Seconds after the last submission by which every job must be final
    #[arg(long, value_name = "S", default_value_t = 120)]
    pub timeout: u64,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
}

/// One submitted job as the bench follows it.
struct Tracked {
    submitted: Instant,
    /// When the job was first seen on chain.
    committed: Option<Instant>,
    /// Final state and when it was first seen.
    done: Option<(String, Instant)>,
}

/// Time-averaged utilisation (load / capacity) of every coprocessor, sampled from the node's
/// view while the run's jobs are open: the quantity the economic simulation reports, measured
/// on real processes.
#[derive(Default)]
struct Utilisation {
    samples: u64,
    /// Sum of load / capacity per coprocessor, and its capacity at the last sample.
    sums: BTreeMap<String, (f64, u32)>,
}

impl Utilisation {
    fn sample(&mut self, client: &Client) {
        let Ok(list) = client.get_json::<serde_json::Value>("/v1/coprocessors") else {
            return;
        };
        self.samples += 1;
        for c in list["coprocessors"].as_array().into_iter().flatten() {
            let (Some(a), Some(cap), Some(load)) = (
                c["address"].as_str(),
                c["capacity"].as_u64(),
                c["load"].as_u64(),
            ) else {
                continue;
            };
            if !c["active"].as_bool().unwrap_or(false) || cap == 0 {
                continue;
            }
            let e = self.sums.entry(a.to_owned()).or_default();
            e.0 += load as f64 / cap as f64;
            e.1 = cap as u32;
        }
    }

    /// `(address, capacity, utilisation)` per coprocessor seen active.
    fn per_coprocessor(&self) -> Vec<(String, u32, f64)> {
        self.sums
            .iter()
            .map(|(a, (sum, cap))| (a.clone(), *cap, sum / self.samples.max(1) as f64))
            .collect()
    }

    fn jain(&self) -> Option<f64> {
        let u: Vec<f64> = self.per_coprocessor().iter().map(|c| c.2).collect();
        (!u.is_empty() && u.iter().any(|x| *x > 0.0)).then(|| agora_econ::jain(&u))
    }
}

/// Run the job load and print the figures; fails if a job did not settle or an output did not
/// verify.
pub fn jobs(args: &BenchJobsArgs) -> anyhow::Result<()> {
    if args.rate == 0 || args.jobs == 0 {
        bail!("--rate and --jobs must be positive");
    }
    if args.jobs > MAX_BENCH_JOBS {
        bail!("--jobs is at most {MAX_BENCH_JOBS}, got {}", args.jobs);
    }
    if !(1..=5).contains(&args.replicas) {
        bail!("--replicas must be between 1 and 5, got {}", args.replicas);
    }
    let client = crate::commands::connect(&args.api)?;
    let key = crate::jobs::client_key(&args.key)?;
    let me = key.address();
    let module = wat::parse_str(BENCH_PROGRAM).context("assembling the bench program")?;
    let mut spec = crate::jobs::upload_job(
        &client,
        &module,
        BENCH_INPUT,
        Amount(crate::jobs::DEFAULT_MAX_PRICE),
        args.auction_ms,
    )?;
    spec.replicas = args.replicas;
    let (builder, mut nonce) = crate::jobs::builder_and_nonce(&client, key)?;
    let mut committed_nonce = nonce;

    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let timeout = Duration::from_secs(args.timeout);
    let mut tracked: BTreeMap<Hash, Tracked> = BTreeMap::new();
    let mut open: BTreeSet<Hash> = BTreeSet::new();
    let mut util = Utilisation::default();
    let mut refused = 0u64;
    let mut refused_in_a_row = 0u32;
    let mut first_send: Option<Instant> = None;
    let mut last_send = Instant::now();
    let mut next_send = Instant::now();
    let mut next_sweep = Instant::now();
    let mut next_nonce_read = Instant::now();
    let list_path = format!("/v1/jobs?client={me}&limit={MAX_BENCH_JOBS}");
    loop {
        let sending = (tracked.len() as u64) < args.jobs;
        let now = Instant::now();
        if sending && now >= next_send {
            if nonce - committed_nonce >= MAX_OUTSTANDING && now >= next_nonce_read {
                committed_nonce = account_nonce(&client, &me)?.max(committed_nonce);
                next_nonce_read = now + POLL_EVERY;
            }
            if nonce - committed_nonce >= MAX_OUTSTANDING {
                // The nonce window is full: try again after the next account read.
                next_send = next_nonce_read;
            }
            if nonce - committed_nonce < MAX_OUTSTANDING {
                let env = builder.submit_job(nonce, spec.clone());
                let bytes = agora_market::encode_envelope(&env);
                match client.post_bytes("/v1/tx", "application/octet-stream", &bytes) {
                    Ok(_) => {
                        let at = Instant::now();
                        first_send.get_or_insert(at);
                        last_send = at;
                        tracked.insert(
                            env.hash(),
                            Tracked {
                                submitted: at,
                                committed: None,
                                done: None,
                            },
                        );
                        open.insert(env.hash());
                        nonce += 1;
                        refused_in_a_row = 0;
                    }
                    Err(e) => {
                        refused += 1;
                        refused_in_a_row += 1;
                        tracing::warn!(target: "bench", error = %e, nonce, "job submission refused");
                        if refused_in_a_row >= MAX_REFUSED_IN_A_ROW {
                            return Err(anyhow::Error::new(e).context(format!(
                                "{refused_in_a_row} job submissions in a row were refused"
                            )));
                        }
                    }
                }
                // Keep the pace, but never burst to make up for time spent waiting.
                next_send += interval;
                let now = Instant::now();
                if next_send + interval < now {
                    next_send = now;
                }
                continue;
            }
        }
        if now >= next_sweep {
            sweep(&client, &list_path, &mut tracked, &mut open)?;
            if !open.is_empty() {
                util.sample(&client);
            }
            next_sweep = Instant::now() + POLL_EVERY;
        }
        if !sending && (open.is_empty() || last_send.elapsed() > timeout) {
            break;
        }
        let wake = if sending {
            next_sweep.min(next_send)
        } else {
            next_sweep
        };
        std::thread::sleep(
            wake.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        );
    }

    let first_send = first_send.unwrap_or(last_send);
    let mut settled: Vec<(Instant, Hash)> = Vec::new();
    let mut latencies: Vec<Duration> = Vec::new();
    let mut commit_latencies: Vec<Duration> = Vec::new();
    let (mut refunded, mut failed) = (0u64, 0u64);
    for (id, t) in &tracked {
        if let Some(c) = t.committed {
            commit_latencies.push(c - t.submitted);
        }
        match &t.done {
            Some((state, at)) if state == "settled" => {
                settled.push((*at, *id));
                latencies.push(*at - t.submitted);
            }
            Some((state, _)) if state == "refunded" => refunded += 1,
            Some(_) => failed += 1,
            None => {}
        }
    }
    latencies.sort();
    commit_latencies.sort();
    settled.sort();
    let span = settled
        .last()
        .map(|(at, _)| (*at - first_send).as_secs_f64())
        .unwrap_or(0.0);
    let throughput = if span > 0.0 {
        settled.len() as f64 / span
    } else {
        0.0
    };
    let submit_span = (last_send - first_send).as_secs_f64();
    let submit_rate = if submit_span > 0.0 {
        (tracked.len() as f64 - 1.0) / submit_span
    } else {
        0.0
    };
    let (verified, verify_failures) = verify_sample(&client, &settled, args.verify);
    let unfinished = open.len();
    let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);

    if args.json {
        let doc = serde_json::json!({
            "jobs": args.jobs, "rate": args.rate, "replicas": args.replicas,
            "auction_ms": args.auction_ms,
            "submitted": tracked.len(), "refused": refused,
            "submit_rate": submit_rate,
            "settled": settled.len(), "refunded": refunded, "failed": failed,
            "unfinished": unfinished,
            "latency_ms": {
                "p50": ms(percentile(&latencies, 50)), "p90": ms(percentile(&latencies, 90)),
                "p99": ms(percentile(&latencies, 99)), "max": ms(latencies.last().copied()),
            },
            "commit_latency_ms": {
                "p50": ms(percentile(&commit_latencies, 50)),
                "p99": ms(percentile(&commit_latencies, 99)),
            },
            "throughput_jobs_per_s": throughput,
            "span_s": span,
            "verified": verified, "verify_failures": verify_failures,
            "jain_utilisation": util.jain(),
            "utilisation": util.per_coprocessor().iter().map(|(a, cap, u)| serde_json::json!({
                "coprocessor": a, "capacity": cap, "utilisation": u,
            })).collect::<Vec<_>>(),
            "utilisation_samples": util.samples,
        });
        println!("{doc}");
    } else {
        let fmt = |d: Option<Duration>| {
            ms(d)
                .map(|m| format!("{m} ms"))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "submitted {} jobs ({} replica(s), {} ms auction) at {:.1} jobs/s (target {}, {refused} refused)",
            tracked.len(),
            args.replicas,
            args.auction_ms,
            submit_rate,
            args.rate
        );
        println!(
            "settled {}, refunded {refunded}, failed {failed}, unfinished {unfinished}",
            settled.len()
        );
        println!(
            "submit-to-settled latency (polling every {} ms): p50 {}, p90 {}, p99 {}, max {}",
            POLL_EVERY.as_millis(),
            fmt(percentile(&latencies, 50)),
            fmt(percentile(&latencies, 90)),
            fmt(percentile(&latencies, 99)),
            fmt(latencies.last().copied())
        );
        println!(
            "submit-to-on-chain latency: p50 {}, p99 {}",
            fmt(percentile(&commit_latencies, 50)),
            fmt(percentile(&commit_latencies, 99))
        );
        println!(
            "sustained throughput: {throughput:.2} settled jobs/s over {span:.1} s (first submit to last settlement)"
        );
        println!("outputs verified: {verified}, verification failures: {verify_failures}");
        let per = util.per_coprocessor();
        if !per.is_empty() {
            let list: Vec<String> = per
                .iter()
                .map(|(a, cap, u)| format!("{}…({cap}) {:.1}%", &a[..a.len().min(10)], u * 100.0))
                .collect();
            println!(
                "coprocessor utilisation over {} samples: {}; Jain's index {}",
                util.samples,
                list.join(", "),
                util.jain()
                    .map(|j| format!("{j:.3}"))
                    .unwrap_or_else(|| "-".into())
            );
        }
    }

    if unfinished > 0 {
        bail!(
            "{unfinished} jobs were not final {} s after the last submission",
            args.timeout
        );
    }
    if refunded + failed > 0 {
        bail!(
            "{} jobs did not settle ({refunded} refunded, {failed} failed)",
            refunded + failed
        );
    }
    if verify_failures > 0 {
        bail!("{verify_failures} job outputs did not match their committed result hash");
    }
    Ok(())
}

/// The account's committed nonce.
pub(crate) fn account_nonce(client: &Client, who: &Address) -> anyhow::Result<u64> {
    let account: serde_json::Value = client.get_json(&format!("/v1/accounts/{who}"))?;
    Ok(account["nonce"].as_u64().unwrap_or(0))
}

/// One request for the state of every job of the client; marks jobs seen on chain and jobs
/// seen final, with the time they were first seen so.
fn sweep(
    client: &Client,
    path: &str,
    tracked: &mut BTreeMap<Hash, Tracked>,
    open: &mut BTreeSet<Hash>,
) -> anyhow::Result<()> {
    if open.is_empty() {
        return Ok(());
    }
    let list: serde_json::Value = client.get_json(path)?;
    let now = Instant::now();
    for j in list["jobs"].as_array().into_iter().flatten() {
        let Some(id) = j["id"].as_str().and_then(|s| s.parse::<Hash>().ok()) else {
            continue;
        };
        if !open.contains(&id) {
            continue;
        }
        let Some(t) = tracked.get_mut(&id) else {
            continue;
        };
        t.committed.get_or_insert(now);
        let state = j["state"].as_str().unwrap_or_default();
        if matches!(state, "settled" | "refunded" | "failed") {
            t.done = Some((state.to_owned(), now));
            open.remove(&id);
        }
    }
    Ok(())
}

/// Fetch and check the outputs of up to `n` settled jobs spread over the run; returns how many
/// were checked and how many failed (a fetch error counts as a failure).
fn verify_sample(client: &Client, settled: &[(Instant, Hash)], n: u64) -> (u64, u64) {
    let n = (n as usize).min(settled.len());
    let mut failures = 0u64;
    for i in 0..n {
        let (_, id) = settled[i * settled.len() / n];
        if let Err(e) = verify_one(client, &id) {
            tracing::warn!(target: "bench", job = %id, error = %e, "output check failed");
            failures += 1;
        }
    }
    (n as u64, failures)
}

/// The output of a settled bench job must match the committed result hash and be what the
/// program prints for the bench input.
pub(crate) fn verify_one(client: &Client, id: &Hash) -> anyhow::Result<()> {
    let view: agora_market::JobView = client.get_json(&format!("/v1/jobs/{id}"))?;
    let bytes = client.get_bytes(&format!("/v1/jobs/{id}/output"))?;
    let (code, stdout) =
        agora_node::blobsvc::verify_output(&view, &bytes).map_err(|e| anyhow::anyhow!(e))?;
    let expected = [b"hello, world\n".as_slice(), BENCH_INPUT].concat();
    if code != 0 || stdout != expected.as_slice() {
        bail!(
            "exit code {code}, output {:?} (expected 0, {:?})",
            String::from_utf8_lossy(stdout),
            String::from_utf8_lossy(&expected)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn percentile_is_nearest_rank() {
        assert_eq!(percentile(&[], 50), None);
        let one = ms(&[7]);
        assert_eq!(percentile(&one, 0), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&one, 100), Some(Duration::from_millis(7)));
        let hundred: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&hundred, 50), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&hundred, 99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&hundred, 100), Some(Duration::from_millis(100)));
        let four = ms(&[10, 20, 30, 40]);
        assert_eq!(percentile(&four, 50), Some(Duration::from_millis(20)));
        assert_eq!(percentile(&four, 90), Some(Duration::from_millis(40)));
        assert_eq!(percentile(&four, 0), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&four, 250), Some(Duration::from_millis(40)));
    }

    #[test]
    fn bench_program_assembles_and_has_a_valid_header() {
        let module = wat::parse_str(BENCH_PROGRAM).expect("hello.wat assembles");
        assert_eq!(&module[..8], b"\0asm\x01\0\0\0");
    }
}
