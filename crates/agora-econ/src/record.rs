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
    pub utilisation: f64,
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
    pub coprocessor_profit: f64,
    pub profit_honest_mean: f64,
    pub profit_dishonest_mean: f64,
    /// Jain's fairness index over coprocessor utilisation.
    pub jain_utilisation: f64,
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
    pub metrics: Metrics,
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
