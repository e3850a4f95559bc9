//! Scenario files: what population, job stream, market parameters and variants a run uses.
//!
//! A scenario is a TOML document. Its `[market]` table is a partial [`Params`] (unspecified
//! fields keep the market's defaults); each `[[variants]]` entry overrides parts of `market`,
//! `population` and `jobs` by table merge, so a slashing sweep is four one-line variants.

use std::collections::BTreeMap;

use agora_market::Params;
use serde::{Deserialize, Serialize};

use crate::EconError;

/// The scenarios shipped with the crate, embedded so `agora sim --scenario NAME` works anywhere.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "paper-slashing",
        include_str!("../scenarios/paper-slashing.toml"),
    ),
    (
        "honest-share",
        include_str!("../scenarios/honest-share.toml"),
    ),
    ("load-spike", include_str!("../scenarios/load-spike.toml")),
    ("load-sweep", include_str!("../scenarios/load-sweep.toml")),
    (
        "testnet-compare",
        include_str!("../scenarios/testnet-compare.toml"),
    ),
    (
        "network-stall",
        include_str!("../scenarios/network-stall.toml"),
    ),
    (
        "small-network",
        include_str!("../scenarios/small-network.toml"),
    ),
];

/// Names of the built-in scenarios, in a stable order.
pub fn list_scenarios() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

/// Which allocation mechanism a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// The market with reverse Dutch auctions.
    Dutch,
    /// The market with sealed-bid second-price auctions.
    Sealed,
    /// Off-chain: a uniformly random coprocessor with spare capacity.
    Random,
    /// Off-chain: the next coprocessor in a fixed cycle that has spare capacity.
    RoundRobin,
    /// Off-chain: the cheapest ask, ignoring reputation.
    LowestPrice,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Dutch => "dutch",
            Mechanism::Sealed => "sealed",
            Mechanism::Random => "random",
            Mechanism::RoundRobin => "round_robin",
            Mechanism::LowestPrice => "lowest_price",
        }
    }

    /// Whether the run drives `agora-market` (as opposed to an off-chain baseline).
    pub fn is_market(self) -> bool {
        matches!(self, Mechanism::Dutch | Mechanism::Sealed)
    }
}

/// Heterogeneous coprocessor population; every `*_min..*_max` pair is drawn uniformly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Population {
    pub operators: u32,
    pub coprocessors: u32,
    /// Share of coprocessors that lie (commit wrong result hashes).
    pub dishonest_share: f64,
    /// Probability that a dishonest coprocessor lies on a given job.
    pub lie_rate: f64,
    /// Liars commit the same wrong hash for a job (worst case for majority voting).
    pub collude: bool,
    /// Stake as a multiple of the market's minimum stake.
    pub stake_min: f64,
    pub stake_max: f64,
    pub capacity_min: u32,
    pub capacity_max: u32,
    /// Execution cost per work unit.
    pub cost_min: f64,
    pub cost_max: f64,
    /// Work units executed per block per slot.
    pub speed_min: f64,
    pub speed_max: f64,
    /// Probability of delivering a result on time.
    pub reliability_min: f64,
    pub reliability_max: f64,
    /// Markup over cost in the base price the bidding agent feeds to the load curve.
    pub margin: f64,
    /// Spendable balance of each coprocessor (for sealed-bid bonds), in base units.
    pub working_balance: u64,
    /// Honest coprocessors that stake at `newcomer_block` instead of genesis, drawn from the
    /// same ranges: how soon does the market give a newcomer work?
    pub newcomers: u32,
    pub newcomer_block: u64,
    /// A coprocessor whose stake a slash took below the market's minimum stakes again from its
    /// balance, back up to its initial stake (what an operator running a business does).
    pub restake: bool,
}

impl Default for Population {
    fn default() -> Self {
        Population {
            operators: 4,
            coprocessors: 40,
            dishonest_share: 0.2,
            lie_rate: 0.6,
            collude: false,
            stake_min: 1.5,
            stake_max: 4.0,
            capacity_min: 2,
            capacity_max: 8,
            cost_min: 1.0,
            cost_max: 3.0,
            speed_min: 2.0,
            speed_max: 8.0,
            reliability_min: 0.95,
            reliability_max: 1.0,
            margin: 1.2,
            working_balance: 10_000,
            newcomers: 0,
            newcomer_block: 0,
            restake: true,
        }
    }
}

/// A window of blocks during which the arrival rate is multiplied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spike {
    pub start: u64,
    pub end: u64,
    pub factor: f64,
}

/// The client side: arrivals and job shapes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Jobs {
    pub clients: u32,
    /// Mean arrivals per block (Poisson).
    pub rate: f64,
    pub spikes: Vec<Spike>,
    /// Job size in work units, drawn log-uniformly.
    pub size_min: f64,
    pub size_max: f64,
    /// Client's maximum price per work unit per replica, drawn uniformly.
    pub value_min: f64,
    pub value_max: f64,
    /// `(replicas, weight)` pairs.
    pub replicas: Vec<(u32, f64)>,
    /// Audit probability for single-replica jobs.
    pub audit: f64,
    /// Minimum reputation clients demand.
    pub min_reputation: f64,
    /// Dutch start price as a share of the max price.
    pub start_share: f64,
    /// Dutch auction duration, in blocks.
    pub auction_blocks: u64,
    /// Sealed commit and reveal phases, in blocks each.
    pub sealed_phase_blocks: u64,
    /// Slack added to the slowest coprocessor's execution time for the deadline, in blocks.
    pub deadline_slack_blocks: u64,
    /// How many coprocessors notice and bid on one auction round (attention is bounded).
    pub max_bidders: u32,
    /// Spendable balance of each client, in base units.
    pub client_balance: u64,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            clients: 10,
            rate: 2.0,
            spikes: Vec::new(),
            size_min: 4.0,
            size_max: 40.0,
            value_min: 3.0,
            value_max: 6.0,
            replicas: vec![(1, 0.6), (3, 0.4)],
            audit: 0.2,
            min_reputation: 0.0,
            start_share: 0.3,
            auction_blocks: 6,
            sealed_phase_blocks: 2,
            deadline_slack_blocks: 3,
            max_bidders: 64,
            client_balance: 100_000_000,
        }
    }
}

/// A chain stall: one block arrives `gap_ms` late, then `low_power_blocks` blocks are signed by
/// only `commit_power_bps` of the voting power.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stall {
    pub at_block: u64,
    pub gap_ms: u64,
    #[serde(default)]
    pub low_power_blocks: u64,
    #[serde(default = "default_power")]
    pub commit_power_bps: u32,
}

fn default_power() -> u32 {
    10_000
}

/// A named override of the base scenario.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub label: String,
    #[serde(default)]
    pub market: toml::Table,
    #[serde(default)]
    pub population: toml::Table,
    #[serde(default)]
    pub jobs: toml::Table,
}

/// A scenario document as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub blocks: u64,
    #[serde(default = "default_drain")]
    pub drain_blocks: u64,
    #[serde(default = "default_block_ms")]
    pub block_ms: u64,
    #[serde(default = "default_mechanisms")]
    pub mechanisms: Vec<Mechanism>,
    /// Check the market's invariants every this many blocks (and at the end).
    #[serde(default = "default_invariant_every")]
    pub invariant_every: u64,
    /// Participants whose rewards are plotted over time.
    #[serde(default = "default_sample")]
    pub sample_participants: u32,
    #[serde(default)]
    pub stalls: Vec<Stall>,
    #[serde(default)]
    pub market: toml::Table,
    #[serde(default)]
    pub population: toml::Table,
    #[serde(default)]
    pub jobs: toml::Table,
    #[serde(default)]
    pub variants: Vec<Variant>,
    /// A grid over parameters: every combination of the listed values is run once per variant
    /// (or once, without variants), labelled with its values.
    #[serde(default)]
    pub sweep: Option<Sweep>,
}

/// The axes of a parameter grid: per table, a key and the values it takes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    #[serde(default)]
    pub market: BTreeMap<String, Vec<toml::Value>>,
    #[serde(default)]
    pub jobs: BTreeMap<String, Vec<toml::Value>>,
}

impl Sweep {
    /// Every combination, as (label, market overrides, jobs overrides), in a fixed order.
    fn grid(&self) -> Vec<(String, toml::Table, toml::Table)> {
        let mut out = vec![(String::new(), toml::Table::new(), toml::Table::new())];
        let axes = self
            .market
            .iter()
            .map(|(k, v)| (true, k, v))
            .chain(self.jobs.iter().map(|(k, v)| (false, k, v)));
        for (is_market, key, values) in axes {
            let mut next = Vec::new();
            for (label, m, j) in &out {
                for v in values {
                    let (mut m, mut j) = (m.clone(), j.clone());
                    if is_market {
                        m.insert(key.clone(), v.clone());
                    } else {
                        j.insert(key.clone(), v.clone());
                    }
                    let text = match v {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let sep = if label.is_empty() { "" } else { " " };
                    next.push((format!("{label}{sep}{key}={text}"), m, j));
                }
            }
            out = next;
        }
        out
    }
}

fn default_seed() -> u64 {
    1
}
fn default_drain() -> u64 {
    60
}
fn default_block_ms() -> u64 {
    1_000
}
fn default_invariant_every() -> u64 {
    10
}
fn default_sample() -> u32 {
    8
}
fn default_mechanisms() -> Vec<Mechanism> {
    vec![
        Mechanism::Dutch,
        Mechanism::Sealed,
        Mechanism::Random,
        Mechanism::RoundRobin,
        Mechanism::LowestPrice,
    ]
}

/// One fully resolved variant: the concrete inputs of its runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub label: String,
    pub params: Params,
    pub population: Population,
    pub jobs: Jobs,
}

/// A parsed scenario with its variants resolved.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub file: ScenarioFile,
    pub variants: Vec<Resolved>,
}

fn merge(base: &toml::Table, over: &toml::Table) -> toml::Table {
    let mut out = base.clone();
    for (k, v) in over {
        match (out.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => {
                let m = merge(b, o);
                *b = m;
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

fn typed<T: serde::de::DeserializeOwned>(t: toml::Table, what: &str) -> Result<T, EconError> {
    toml::Value::Table(t)
        .try_into()
        .map_err(|e: toml::de::Error| EconError::Scenario(format!("{what}: {e}")))
}

impl Scenario {
    /// Parse a scenario document.
    pub fn parse(text: &str) -> Result<Scenario, EconError> {
        let file: ScenarioFile =
            toml::from_str(text).map_err(|e| EconError::Scenario(e.to_string()))?;
        if file.blocks == 0 || file.block_ms == 0 {
            return Err(EconError::Scenario(
                "blocks and block_ms must be positive".into(),
            ));
        }
        if file.mechanisms.is_empty() {
            return Err(EconError::Scenario("no mechanisms".into()));
        }
        let base = [Variant {
            label: "base".into(),
            ..Variant::default()
        }];
        let list: &[Variant] = if file.variants.is_empty() {
            &base
        } else {
            &file.variants
        };
        let mut variants = Vec::new();
        let grid = file
            .sweep
            .as_ref()
            .map(Sweep::grid)
            .unwrap_or_else(|| vec![(String::new(), toml::Table::new(), toml::Table::new())]);
        if grid.len() > 1_000 {
            return Err(EconError::Scenario(format!(
                "sweep has {} points; at most 1000",
                grid.len()
            )));
        }
        for v in list {
            for (point, gm, gj) in &grid {
                let market = merge(&merge(&file.market, &v.market), gm);
                let params: Params = typed(market, "market")?;
                let population: Population =
                    typed(merge(&file.population, &v.population), "population")?;
                let jobs: Jobs = typed(merge(&merge(&file.jobs, &v.jobs), gj), "jobs")?;
                validate(&population, &jobs)?;
                let label = match (file.variants.is_empty(), point.is_empty()) {
                    (true, false) => point.clone(),
                    (false, false) => format!("{} {point}", v.label),
                    _ => v.label.clone(),
                };
                variants.push(Resolved {
                    label,
                    params,
                    population,
                    jobs,
                });
            }
        }
        Ok(Scenario { file, variants })
    }

    /// A built-in scenario by name, or a scenario file by path.
    pub fn load(name_or_path: &str) -> Result<Scenario, EconError> {
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Scenario::parse(text);
        }
        let text = std::fs::read_to_string(name_or_path).map_err(|e| {
            EconError::Scenario(format!(
                "{name_or_path}: not a built-in scenario ({}) and not readable: {e}",
                list_scenarios().join(", ")
            ))
        })?;
        Scenario::parse(&text)
    }
}

fn validate(p: &Population, j: &Jobs) -> Result<(), EconError> {
    let bad = |m: &str| Err(EconError::Scenario(m.to_owned()));
    if p.operators == 0 || p.coprocessors == 0 || j.clients == 0 {
        return bad("operators, coprocessors and clients must be positive");
    }
    let unit = |x: f64| (0.0..=1.0).contains(&x);
    if !unit(p.dishonest_share)
        || !unit(p.lie_rate)
        || !unit(p.reliability_min)
        || !unit(p.reliability_max)
        || !unit(j.audit)
        || !unit(j.min_reputation)
        || !unit(j.start_share)
    {
        return bad("shares and probabilities must lie in [0, 1]");
    }
    let range = |a: f64, b: f64| a > 0.0 && a <= b && b.is_finite();
    if !range(p.stake_min, p.stake_max)
        || !range(p.cost_min, p.cost_max)
        || !range(p.speed_min, p.speed_max)
        || !range(j.size_min, j.size_max)
        || !range(j.value_min, j.value_max)
        || p.reliability_min > p.reliability_max
        || p.capacity_min == 0
        || p.capacity_min > p.capacity_max
    {
        return bad("every min must be positive and at most its max");
    }
    if j.replicas.is_empty() || j.replicas.iter().any(|(k, w)| *k == 0 || *w < 0.0) {
        return bad("replicas must be (k >= 1, weight >= 0) pairs");
    }
    if !(0.0..1e6).contains(&j.rate) || j.spikes.iter().any(|s| s.factor < 0.0) {
        return bad("rate and spike factors must be non-negative");
    }
    if j.auction_blocks == 0 || j.sealed_phase_blocks == 0 || j.max_bidders == 0 {
        return bad("auction lengths and max_bidders must be positive");
    }
    Ok(())
}
