//! CSV and JSON files of a scenario's runs.

use std::fmt::Write as _;
use std::path::Path;

use crate::record::RunRecord;
use crate::EconError;

fn write(dir: &Path, name: &str, text: &str) -> Result<(), EconError> {
    let p = dir.join(name);
    std::fs::write(&p, text).map_err(|e| EconError::Io(format!("{}: {e}", p.display())))
}

fn opt(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.6}")).unwrap_or_default()
}

/// `timeseries.csv`, `participants.csv`, `coprocessors.csv`, `edges.csv`, `auctions.csv`,
/// `utilisation.csv`, `summary.csv`.
pub fn write_csvs(dir: &Path, runs: &[RunRecord]) -> Result<(), EconError> {
    let mut ts = String::from(
        "variant,mechanism,block,active,active_honest,active_dishonest,cumulative_reward,\
         open_jobs,completed,wrong_accepted,failed,mean_reputation_honest,\
         mean_reputation_dishonest,stalled,timeouts\n",
    );
    let mut parts = String::from("variant,mechanism,block,coprocessor,honest,earned\n");
    let mut cops = String::from(
        "variant,mechanism,coprocessor,honest,capacity,cost,reliability,reputation,earned,\
         slashed,exec_cost,profit,completed,failed,active,utilisation,joined,\
         bids_before_first_win,ejected\n",
    );
    let mut edges = String::from("variant,mechanism,client,coprocessor,jobs\n");
    let mut auctions = String::from(
        "variant,mechanism,block,job,round,replicas,max_price,coprocessor,price,ask,\
         best_losing_ask,bidders\n",
    );
    let mut util =
        String::from("variant,mechanism,window_start,window_end,coprocessor,honest,utilisation\n");
    for r in runs {
        let (v, m) = (&r.variant, r.mechanism.name());
        for s in &r.series {
            let _ = writeln!(
                ts,
                "{v},{m},{},{},{},{},{:.0},{},{},{},{},{:.6},{:.6},{},{}",
                s.block,
                s.active,
                s.active_honest,
                s.active_dishonest,
                s.cumulative_reward,
                s.open_jobs,
                s.completed,
                s.wrong_accepted,
                s.failed,
                s.mean_reputation_honest,
                s.mean_reputation_dishonest,
                s.stalled as u8,
                s.timeouts
            );
        }
        for (idx, honest, vals) in &r.samples {
            for (b, e) in vals.iter().enumerate() {
                let _ = writeln!(parts, "{v},{m},{},{idx},{},{e:.0}", b + 1, *honest as u8);
            }
        }
        for c in &r.finals {
            let _ = writeln!(
                cops,
                "{v},{m},{},{},{},{:.4},{:.4},{},{:.0},{:.0},{:.2},{:.2},{},{},{},{:.6},{},{},{}",
                c.index,
                c.honest as u8,
                c.capacity,
                c.cost,
                c.reliability,
                opt(c.reputation),
                c.earned,
                c.slashed,
                c.exec_cost,
                c.profit,
                c.completed,
                c.failed,
                c.active as u8,
                c.utilisation,
                c.joined,
                c.bids_before_first_win
                    .map(|b| b.to_string())
                    .unwrap_or_default(),
                c.ejected as u8
            );
        }
        for (cl, cp, k) in &r.edges {
            let _ = writeln!(edges, "{v},{m},{cl},{cp},{k}");
        }
        for a in &r.auctions {
            let _ = writeln!(
                auctions,
                "{v},{m},{},{},{},{},{},{},{},{},{},{}",
                a.block,
                a.job,
                a.round,
                a.replicas,
                a.max_price,
                a.coprocessor,
                a.price,
                a.ask,
                a.best_losing_ask.map(|x| x.to_string()).unwrap_or_default(),
                a.bidders
            );
        }
        let w = crate::record::UTIL_WINDOW;
        for (k, window) in r.utilisation.iter().enumerate() {
            let start = k as u64 * w + 1;
            for (c, u) in window.iter().enumerate() {
                let honest = r.finals.get(c).is_some_and(|f| f.honest) as u8;
                let _ = writeln!(
                    util,
                    "{v},{m},{start},{},{c},{honest},{u:.4}",
                    start + w - 1
                );
            }
        }
    }
    let mut sum = String::from(
        "variant,mechanism,jobs,submitted,completed,completion_rate,wrong_accepted,\
         wrong_accepted_share,client_cost_per_job,client_cost_per_correct,coprocessor_profit,\
         profit_honest_mean,profit_dishonest_mean,jain_utilisation,jain_honest,active_end,\
         dishonest_start,dishonest_active_end,honest_active_end,half_dishonest_removed_at,\
         ejected_honest,ejected_dishonest,restakes,newcomers,newcomer_max_bids_to_win,\
         newcomers_never_won,price_over_next_ask,mean_reputation_honest,\
         mean_reputation_dishonest,reputation_reward_corr,stalls,timeouts,slashes,txs,rejected_txs\n",
    );
    for r in runs {
        let x = &r.metrics;
        let _ = writeln!(
            sum,
            "{},{},{},{},{},{:.6},{},{:.6},{:.4},{:.4},{:.2},{:.2},{:.2},{:.6},{:.6},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            x.variant,
            x.mechanism,
            x.jobs,
            x.submitted,
            x.completed,
            x.completion_rate,
            x.wrong_accepted,
            x.wrong_accepted_share,
            x.client_cost_per_job,
            x.client_cost_per_correct,
            x.coprocessor_profit,
            x.profit_honest_mean,
            x.profit_dishonest_mean,
            x.jain_utilisation,
            x.jain_honest,
            x.active_end,
            x.dishonest_start,
            x.dishonest_active_end,
            x.honest_active_end,
            x.half_dishonest_removed_at
                .map(|b| b.to_string())
                .unwrap_or_default(),
            x.ejected_honest,
            x.ejected_dishonest,
            x.restakes,
            x.newcomers,
            x.newcomer_max_bids_to_win
                .map(|b| b.to_string())
                .unwrap_or_default(),
            x.newcomers_never_won,
            opt(x.price_over_next_ask),
            opt(x.mean_reputation_honest),
            opt(x.mean_reputation_dishonest),
            opt(x.reputation_reward_corr),
            x.stalls,
            x.timeouts,
            x.slashes,
            x.txs,
            x.rejected_txs
        );
    }
    write(dir, "timeseries.csv", &ts)?;
    write(dir, "participants.csv", &parts)?;
    write(dir, "coprocessors.csv", &cops)?;
    write(dir, "edges.csv", &edges)?;
    write(dir, "auctions.csv", &auctions)?;
    write(dir, "utilisation.csv", &util)?;
    write(dir, "summary.csv", &sum)?;
    Ok(())
}

/// `summary.json`: the scenario summary, pretty-printed.
pub fn write_json<T: serde::Serialize>(dir: &Path, value: &T) -> Result<(), EconError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| EconError::Io(e.to_string()))?;
    write(dir, "summary.json", &text)
}
