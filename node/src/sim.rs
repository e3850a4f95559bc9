//! `agora sim`: the consensus simulator (`agora sim consensus ...`), the whole-node simulator
//! (`agora sim network ...`) and the economic simulation (`agora sim --scenario NAME --out
//! DIR`). All run library code; this module only parses flags and prints.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;

/// `agora sim consensus`: many seeded runs of N simulated operators with faults.
#[derive(Debug, Parser)]
#[command(
    name = "agora sim consensus",
    about = "Run the deterministic consensus simulator over a range of seeds"
)]
struct ConsensusArgs {
    #[command(flatten)]
    run: SeedRun,
}

/// What both simulators take: the network, the seed range, the threads, faults or not.
#[derive(Debug, clap::Args)]
struct SeedRun {
    /// Simulated operators
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// Byzantine operators among them (kept below 1/3 of voting power; the network simulator
    /// gives a quarter of its seeds none, so that an honest operator can crash instead)
    #[arg(long, default_value_t = 1)]
    byzantine: usize,
    /// How many seeds to run
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Worker threads
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// A clean network: no crashes, partitions or message faults (the network simulator also
    /// makes every participant honest)
    #[arg(long)]
    no_faults: bool,
}

impl SeedRun {
    /// Refuse a network that byzantine operators could take over.
    fn check(&self) -> anyhow::Result<()> {
        if self.nodes == 0 || 3 * self.byzantine >= self.nodes {
            bail!(
                "--byzantine {} of --nodes {}: byzantine operators must be fewer than a third",
                self.byzantine,
                self.nodes
            );
        }
        Ok(())
    }
}

/// `agora sim network`: many seeded runs of whole nodes (replica, market, agents) with faults.
#[derive(Debug, Parser)]
#[command(
    name = "agora sim network",
    about = "Run the deterministic whole-node simulator (replica, market, agents, clients) over a range of seeds"
)]
struct NetworkArgs {
    #[command(flatten)]
    run: SeedRun,
    /// Simulated coprocessor nodes (with faults, a minority of them byzantine; colluding pairs
    /// need at least 5)
    #[arg(long, default_value_t = 5)]
    coprocessors: usize,
    /// Simulated clients submitting jobs and transfers
    #[arg(long, default_value_t = 2)]
    clients: usize,
    /// Run each seed once (no second run comparing trace hashes)
    #[arg(long)]
    no_determinism_check: bool,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

/// `agora sim --scenario NAME`: the economic simulation on the real market rules.
#[derive(Debug, Parser)]
#[command(
    name = "agora sim",
    about = "Run an economic simulation scenario, or `agora sim consensus --help`"
)]
struct EconArgs {
    /// A built-in scenario name or a path to a scenario TOML file
    #[arg(long, default_value = "paper-slashing")]
    scenario: String,
    /// Directory for the CSV, JSON and SVG outputs
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Override the scenario's seed
    #[arg(long)]
    seed: Option<u64>,
    /// List the built-in scenarios and exit
    #[arg(long)]
    list: bool,
}

/// Run `agora sim` with the words after `sim`.
pub fn run(rest: &[String]) -> anyhow::Result<()> {
    if rest.first().map(String::as_str) == Some("consensus") {
        let args = ConsensusArgs::try_parse_from(rest)
            .unwrap_or_else(|e| e.exit())
            .run;
        args.check()?;
        let opts = agora_sim::consensus::ConsensusSimOptions {
            nodes: args.nodes,
            byzantine: args.byzantine,
            seeds: args.seeds,
            from: args.from,
            threads: args.threads.max(1),
            faults: !args.no_faults,
            ..Default::default()
        };
        let summary = agora_sim::consensus::run_consensus_seeds(&opts);
        print!("{summary}");
        if !summary.ok() {
            bail!(
                "{} of {} seeds failed",
                summary.failures.len(),
                summary.runs
            );
        }
        return Ok(());
    }
    if rest.first().map(String::as_str) == Some("network") {
        return network(rest);
    }
    let words = std::iter::once("sim".to_owned()).chain(rest.iter().cloned());
    let args = EconArgs::try_parse_from(words).unwrap_or_else(|e| e.exit());
    if args.list {
        for name in agora_econ::list_scenarios() {
            println!("{name}");
        }
        return Ok(());
    }
    let summary = agora_econ::run_scenario(&args.scenario, args.out.as_deref(), args.seed)
        .with_context(|| format!("scenario {}", args.scenario))?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if let Some(out) = &args.out {
        println!("outputs written to {}", out.display());
    }
    Ok(())
}

fn network(rest: &[String]) -> anyhow::Result<()> {
    let args = NetworkArgs::try_parse_from(rest).unwrap_or_else(|e| e.exit());
    let run = &args.run;
    run.check()?;
    if args.clients == 0 {
        bail!("--clients 0: the workload needs at least one client");
    }
    let opts = agora_sim::NetworkSimOptions {
        nodes: run.nodes,
        byzantine: run.byzantine,
        coprocessors: args.coprocessors,
        clients: args.clients,
        seeds: run.seeds,
        from: run.from,
        threads: run.threads.max(1),
        faults: !run.no_faults,
        check_determinism: !args.no_determinism_check,
        ..Default::default()
    };
    // Progress on stderr every 10 s (stdout keeps the summary, or the JSON).
    let started = std::time::Instant::now();
    let done = std::sync::atomic::AtomicU64::new(0);
    let failed = std::sync::atomic::AtomicU64::new(0);
    let last = std::sync::Mutex::new(started);
    let progress = |o: &agora_sim::NetworkSeedOutcome| {
        use std::sync::atomic::Ordering::Relaxed;
        let n = done.fetch_add(1, Relaxed) + 1;
        if let Some(why) = &o.failure {
            failed.fetch_add(1, Relaxed);
            eprintln!("seed {} failed: {why}", o.seed);
        }
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= std::time::Duration::from_secs(10) {
            *last = std::time::Instant::now();
            eprintln!(
                "… {n}/{} seeds, {} failed, {:.0} s",
                opts.seeds,
                failed.load(Relaxed),
                started.elapsed().as_secs_f64()
            );
        }
    };
    let summary = agora_sim::run_network_seeds_with(&opts, &progress);
    if args.json {
        let failures: Vec<serde_json::Value> = summary
            .failures
            .iter()
            .map(|(seed, why)| serde_json::json!({ "seed": seed, "failure": why }))
            .collect();
        let doc = serde_json::json!({
            "seeds": summary.runs,
            "from": run.from,
            "nodes": summary.nodes,
            "byzantine": summary.byzantine,
            "coprocessors": summary.coprocessors,
            "failures": failures,
            "heights": summary.heights,
            "jobs": summary.jobs,
            "settled": summary.settled,
            "proven": summary.proven,
            "refunded": summary.refunded,
            "failed": summary.failed,
            "txs": summary.txs,
            "messages": summary.messages,
            "faults": summary.faults,
            "trace": summary.trace.to_string(),
            "wall_seconds": summary.wall_seconds,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{summary}");
    }
    if !summary.ok() {
        bail!(
            "{} of {} seeds failed",
            summary.failures.len(),
            summary.runs
        );
    }
    Ok(())
}
