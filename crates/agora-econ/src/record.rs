//! What a run records: a per-block time series, per-coprocessor finals, the task graph, and the
//! summary metrics that compare mechanisms.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::scenario::Mechanism;

/// One block of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub block: u64,
    pub active: u32,
    pub active_honest: u32,
    pub active_dishonest: u32,
    /// Sum of what coprocessors have been paid so far (net of protocol fees).
    pub cumulative_reward: f64,
    pub open_jobs: u32,
    pub completed: u32,
    pub wrong_accepted: u32,
    pub failed: u32,
    pub mean_reputation_honest: f64,
    pub mean_reputation_dishonest: f64,
    pub stalled: bool,
    /// Slots timed out so far.
    pub timeouts: u64,
}

/// One coprocessor at the end of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CopFinal {
    pub index: u32,
    pub honest: bool,
    pub capacity: u32,
    pub cost: f64,
    pub reliability: f64,
    /// `None` for baselines, which keep no reputation.
    pub reputation: Option<f64>,
    pub earned: f64,
    pub slashed: f64,
    pub exec_cost: f64,
    pub profit: f64,
    pub completed: u64,
    pub failed: u64,
    pub active: bool,
    /// Mean of load / capacity over the blocks since it staked.
    pub utilisation: f64,
    /// Block it staked at (0: genesis population).
    pub joined: u64,
    /// Auction rounds it bid in before its first award (`None`: never awarded).
    pub bids_before_first_win: Option<u32>,
    /// Ejected by the market for repeated proven faults.
    pub ejected: bool,
}

/// One award, next to what the auction saw: the winner's ask and the best ask that lost.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuctionRow {
    pub block: u64,
    pub job: u32,
    pub round: u32,
    pub replicas: u32,
    pub max_price: u64,
    pub coprocessor: u32,
    pub price: u64,
    pub ask: u64,
    /// Lowest ask in the round that did not win a slot (`None`: every bidder won).
    pub best_losing_ask: Option<u64>,
    pub bidders: u32,
}

/// The comparison figures of one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub variant: String,
    pub mechanism: String,
    pub jobs: u32,
    pub submitted: u32,
    pub completed: u32,
    pub completion_rate: f64,
    pub wrong_accepted: u32,
    /// Accepted results that were wrong, over accepted results.
    pub wrong_accepted_share: f64,
    /// Client spending (payments, fees, net of refunds and compensation) per completed job.
    pub client_cost_per_job: f64,
    /// The same spending per *correct* accepted result: what a right answer costs.
    pub client_cost_per_correct: f64,
    pub coprocessor_profit: f64,
    pub profit_honest_mean: f64,
    pub profit_dishonest_mean: f64,
    /// Jain's fairness index over coprocessor utilisation (every coprocessor).
    pub jain_utilisation: f64,
    /// Jain's index over the honest coprocessors only: liars commit at once (so hold slots
    /// for one block) and are meant to lose work, which caps the index over everyone.
    pub jain_honest: f64,
    /// Newcomers (staked after genesis) and the most auction rounds one of them bid in before
    /// its first award; `newcomers_never_won` of them never won.
    pub newcomers: u32,
    pub newcomer_max_bids_to_win: Option<u32>,
    pub newcomers_never_won: u32,
    /// Coprocessors ejected for repeated proven faults (honest / dishonest).
    pub ejected_honest: u32,
    pub ejected_dishonest: u32,
    /// Stake top-ups after a slash took a stake below the minimum.
    pub restakes: u64,
    /// Mean over awards of price / best losing ask (how far above the next seller's ask
    /// clients paid); `None` without an award that had a losing bidder.
    pub price_over_next_ask: Option<f64>,
    pub active_end: u32,
    pub dishonest_start: u32,
    pub dishonest_active_end: u32,
    pub honest_active_end: u32,
    /// First block at which at most half of the dishonest coprocessors are still active.
    pub half_dishonest_removed_at: Option<u64>,
    pub mean_reputation_honest: Option<f64>,
    pub mean_reputation_dishonest: Option<f64>,
    /// Pearson correlation between final reputation and total reward.
    pub reputation_reward_corr: Option<f64>,
    pub stalls: u64,
    pub timeouts: u64,
    pub slashes: u64,
    pub rejected_txs: u64,
    pub rejections: BTreeMap<String, u64>,
    pub txs: u64,
}

/// Everything one (variant, mechanism) run produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub variant: String,
    pub mechanism: Mechanism,
    pub series: Vec<Step>,
    /// Earned so far per block, for the sampled coprocessors (index, values).
    pub samples: Vec<(u32, bool, Vec<f64>)>,
    pub finals: Vec<CopFinal>,
    /// Jobs each client gave each coprocessor that delivered: `(client, coprocessor, count)`.
    pub edges: Vec<(u32, u32, u32)>,
    /// Every award with the asks around it (market runs; baselines: the chosen ask).
    pub auctions: Vec<AuctionRow>,
    /// Utilisation per coprocessor over consecutive windows of [`UTIL_WINDOW`] blocks.
    pub utilisation: Vec<Vec<f64>>,
    pub metrics: Metrics,
}

/// Blocks per utilisation window in [`RunRecord::utilisation`].
pub const UTIL_WINDOW: u64 = 25;

/// Accumulates load / capacity per coprocessor and closes a window every [`UTIL_WINDOW`] blocks.
#[derive(Clone, Debug, Default)]
pub(crate) struct UtilWindows {
    current: Vec<f64>,
    blocks: u64,
    pub windows: Vec<Vec<f64>>,
}

impl UtilWindows {
    pub fn new(n: usize) -> Self {
        UtilWindows {
            current: vec![0.0; n],
            ..UtilWindows::default()
        }
    }

    pub fn add(&mut self, i: usize, u: f64) {
        self.current[i] += u;
    }

    pub fn end_block(&mut self) {
        self.blocks += 1;
        if self.blocks.is_multiple_of(UTIL_WINDOW) {
            let w = self
                .current
                .iter_mut()
                .map(|x| std::mem::take(x) / UTIL_WINDOW as f64)
                .collect();
            self.windows.push(w);
        }
    }
}

/// Jain's fairness index `(Σx)² / (n·Σx²)`: 1 when all equal, `1/n` when one takes all.
pub fn jain(xs: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let s: f64 = xs.iter().sum();
    let s2: f64 = xs.iter().map(|x| x * x).sum();
    if n == 0.0 || s2 == 0.0 {
        return 1.0;
    }
    s * s / (n * s2)
}

/// Pearson correlation; `None` when either side has no variance.
pub fn pearson(xs: &[f64], ys: &[f64]) -> Option<f64> {
    let n = xs.len().min(ys.len());
    if n < 2 {
        return None;
    }
    let mx = xs[..n].iter().sum::<f64>() / n as f64;
    let my = ys[..n].iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (dx, dy) = (xs[i] - mx, ys[i] - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    Some(sxy / (sxx.sqrt() * syy.sqrt()))
}

pub(crate) fn mean(xs: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0u32);
    for x in xs {
        s += x;
        n += 1;
    }
    (n > 0).then(|| s / n as f64)
}

/// Fill the metrics that derive from finals and the series.
pub(crate) fn finish_metrics(m: &mut Metrics, finals: &[CopFinal], series: &[Step]) {
    m.completion_rate = if m.jobs == 0 {
        0.0
    } else {
        m.completed as f64 / m.jobs as f64
    };
    m.wrong_accepted_share = if m.completed == 0 {
        0.0
    } else {
        m.wrong_accepted as f64 / m.completed as f64
    };
    let correct = m.completed.saturating_sub(m.wrong_accepted);
    m.client_cost_per_correct = if correct == 0 {
        0.0
    } else {
        m.client_cost_per_job * m.completed as f64 / correct as f64
    };
    let honest: Vec<f64> = finals
        .iter()
        .filter(|c| c.honest)
        .map(|c| c.utilisation)
        .collect();
    m.jain_honest = jain(&honest);
    let newcomers: Vec<&CopFinal> = finals.iter().filter(|c| c.joined > 0).collect();
    m.newcomers = newcomers.len() as u32;
    m.newcomer_max_bids_to_win = newcomers
        .iter()
        .filter_map(|c| c.bids_before_first_win)
        .max();
    m.newcomers_never_won = newcomers
        .iter()
        .filter(|c| c.bids_before_first_win.is_none())
        .count() as u32;
    m.ejected_honest = finals.iter().filter(|c| c.honest && c.ejected).count() as u32;
    m.ejected_dishonest = finals.iter().filter(|c| !c.honest && c.ejected).count() as u32;
    m.coprocessor_profit = finals.iter().map(|c| c.profit).sum();
    m.profit_honest_mean =
        mean(finals.iter().filter(|c| c.honest).map(|c| c.profit)).unwrap_or(0.0);
    m.profit_dishonest_mean =
        mean(finals.iter().filter(|c| !c.honest).map(|c| c.profit)).unwrap_or(0.0);
    let util: Vec<f64> = finals.iter().map(|c| c.utilisation).collect();
    m.jain_utilisation = jain(&util);
    m.active_end = finals.iter().filter(|c| c.active).count() as u32;
    m.dishonest_start = finals.iter().filter(|c| !c.honest).count() as u32;
    m.dishonest_active_end = finals.iter().filter(|c| !c.honest && c.active).count() as u32;
    m.honest_active_end = finals.iter().filter(|c| c.honest && c.active).count() as u32;
    if m.dishonest_start > 0 {
        m.half_dishonest_removed_at = series
            .iter()
            .find(|s| s.active_dishonest * 2 <= m.dishonest_start)
            .map(|s| s.block);
    }
    m.mean_reputation_honest = mean(
        finals
            .iter()
            .filter(|c| c.honest)
            .filter_map(|c| c.reputation),
    );
    m.mean_reputation_dishonest = mean(
        finals
            .iter()
            .filter(|c| !c.honest)
            .filter_map(|c| c.reputation),
    );
    let with_rep: Vec<&CopFinal> = finals.iter().filter(|c| c.reputation.is_some()).collect();
    m.reputation_reward_corr = pearson(
        &with_rep
            .iter()
            .map(|c| c.reputation.unwrap_or(0.0))
            .collect::<Vec<_>>(),
        &with_rep.iter().map(|c| c.earned).collect::<Vec<_>>(),
    );
}
