//! `agora bench tx`: a small load generator. It submits signed transfers at a steady rate
//! through a node's API and watches committed blocks for them, then prints blocks per second,
//! committed transactions per second and the submit-to-commit latency percentiles.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use agora_types::{Address, Amount, Hash};
use anyhow::bail;

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
    let start_height = client.status()?.height;
    let (builder, mut nonce) = crate::jobs::builder_and_nonce(&client, key)?;
    let sink = Address(Hash::derive("agora/bench-sink", b"").0);

    let started = Instant::now();
    let mut pending: BTreeMap<Hash, Instant> = BTreeMap::new();
    let mut latencies: Vec<Duration> = Vec::new();
    let mut seen_height = start_height;
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let mut next_send = Instant::now();
    let mut sent = 0u64;
    let mut refused = 0u64;
    let deadline_after_last = Duration::from_secs(30);
    let mut last_send = Instant::now();
    while sent < args.count || (!pending.is_empty() && last_send.elapsed() < deadline_after_last) {
        if sent < args.count && Instant::now() >= next_send {
            let env = builder.transfer(nonce, sink, Amount(1));
            let bytes = agora_market::encode_envelope(&env);
            match client.post_bytes("/v1/tx", "application/octet-stream", &bytes) {
                Ok(_) => {
                    pending.insert(env.hash(), Instant::now());
                    nonce += 1;
                }
                Err(e) => {
                    refused += 1;
                    tracing::warn!(target: "bench", error = %e, "transaction refused");
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
        std::thread::sleep(
            Duration::from_millis(5).min(next_send.saturating_duration_since(Instant::now())),
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: usize| {
        latencies
            .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
            .copied()
    };
    let ms = |d: Option<Duration>| {
        d.map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0))
            .unwrap_or("-".into())
    };
    println!(
        "sent {sent} transfers at {} tx/s ({refused} refused); committed {} in {:.1}s: {:.1} tx/s, {:.2} blocks/s",
        args.rate,
        latencies.len(),
        elapsed,
        latencies.len() as f64 / elapsed,
        (seen_height - start_height) as f64 / elapsed
    );
    println!(
        "submit-to-commit latency (polling every 5 ms): p50 {}, p99 {}, max {}",
        ms(pct(50)),
        ms(pct(99)),
        ms(latencies.last().copied())
    );
    if !pending.is_empty() {
        bail!(
            "{} transactions were accepted but not committed within 30 s",
            pending.len()
        );
    }
    Ok(())
}
