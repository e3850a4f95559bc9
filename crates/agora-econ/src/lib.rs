//! Economic simulation of the Agora market (design §11): populations of operators, coprocessors
//! and clients driving the real [`agora_market::Market`] — the same state machine the chain
//! runs, fed signed transactions block by block — compared with off-chain baselines.
//!
//! Why it is shaped this way: the claims worth checking are claims about the market's own
//! rules (auctions, GAS reputation, load curve, slashing, resilience), so the simulator owns
//! only the agents and the measurements and never a copy of a rule. Everything random is
//! seeded (`rand_chacha`), and a coprocessor's luck on a job is a hash of the seed, the job
//! and the coprocessor, so every mechanism faces the same world. Agents and metrics use
//! floats; the market state stays integer and fixed point as on chain.
//!
//! Entry points: [`run_scenario`] (what `agora sim` calls), [`list_scenarios`], and
//! [`Scenario`] + [`run`] for tests and tools that want the records in memory.

mod baseline;
mod heatmap;
mod market_run;
mod output;
mod plot;
mod record;
mod scenario;
mod world;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use baseline::run_baseline;
pub use market_run::run_market;
pub use record::{jain, pearson, AuctionRow, CopFinal, Metrics, RunRecord, Step, UTIL_WINDOW};
pub use scenario::{
    list_scenarios, Jobs, Mechanism, Population, Resolved, Scenario, ScenarioFile, Spike, Stall,
    Variant, BUILTIN,
};
pub use world::{Behaviour, JobDraw, Profile, World};

/// Why a simulation could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EconError {
    #[error("scenario: {0}")]
    Scenario(String),
    #[error("market rejected a block: {0}")]
    Market(String),
    #[error("market invariant broken at block {block}: {detail}")]
    Invariant { block: u64, detail: String },
    #[error("io: {0}")]
    Io(String),
    #[error("plot: {0}")]
    Plot(String),
}

/// What a scenario run produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub scenario: String,
    pub description: String,
    pub seed: u64,
    pub blocks: u64,
    /// One row per (variant, mechanism).
    pub runs: Vec<Metrics>,
    /// Files written into the output directory.
    pub files: Vec<String>,
    /// blake3 of every run's records: equal seeds give equal digests.
    pub digest: String,
}

/// Run every (variant, mechanism) of a parsed scenario and return the records.
pub fn run(scenario: &Scenario, seed: u64) -> Result<Vec<RunRecord>, EconError> {
    let f = &scenario.file;
    let mut runs = Vec::new();
    for v in &scenario.variants {
        let world = World::generate(seed, &v.population, &v.jobs, f.blocks, &v.params);
        for &m in &f.mechanisms {
            let _span =
                tracing::info_span!("econ.run", variant = %v.label, mechanism = m.name()).entered();
            let r = if m.is_market() {
                run_market(f, v, &world, m)?
            } else {
                run_baseline(f, v, &world, m)
            };
            tracing::info!(
                target: "econ.run",
                completed = r.metrics.completed,
                jobs = r.metrics.jobs,
                "run finished"
            );
            runs.push(r);
        }
    }
    Ok(runs)
}

/// Digest of run records (deterministic serialisation).
pub fn digest(runs: &[RunRecord]) -> String {
    // Records hold only plain numbers, strings and vectors: serialisation cannot fail.
    let bytes = serde_json::to_vec(runs).expect("run records serialise");
    agora_types::Hash::derive("agora/econ/digest", &bytes).to_hex()
}

/// Run a built-in scenario by name (see [`list_scenarios`]) or a scenario TOML file by path.
/// With `out_dir`, writes CSVs, `summary.json` and SVG plots there (creating the directory).
pub fn run_scenario(
    name_or_path: &str,
    out_dir: Option<&Path>,
    seed_override: Option<u64>,
) -> Result<Summary, EconError> {
    let scenario = Scenario::load(name_or_path)?;
    let seed = seed_override.unwrap_or(scenario.file.seed);
    let runs = run(&scenario, seed)?;
    let mut summary = Summary {
        scenario: scenario.file.name.clone(),
        description: scenario.file.description.clone(),
        seed,
        blocks: scenario.file.blocks,
        runs: runs.iter().map(|r| r.metrics.clone()).collect(),
        files: Vec::new(),
        digest: digest(&runs),
    };
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| EconError::Io(format!("{}: {e}", dir.display())))?;
        output::write_csvs(dir, &runs)?;
        summary.files = [
            "timeseries.csv",
            "participants.csv",
            "coprocessors.csv",
            "edges.csv",
            "auctions.csv",
            "utilisation.csv",
            "summary.csv",
            "summary.json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // The scenario as run, with the seed actually used, so the directory reproduces itself.
        let mut file = scenario.file.clone();
        file.seed = seed;
        let text = toml::to_string(&file).map_err(|e| EconError::Io(e.to_string()))?;
        let path = dir.join("scenario.toml");
        std::fs::write(&path, text)
            .map_err(|e| EconError::Io(format!("{}: {e}", path.display())))?;
        summary.files.push("scenario.toml".into());
        summary.files.extend(plot::write_plots(dir, &runs)?);
        summary.files.extend(heatmap::write_sweep_figures(
            dir,
            &runs,
            "load_kappa",
            "load_penalty_weight",
        )?);
        output::write_json(dir, &summary)?;
    }
    Ok(summary)
}
