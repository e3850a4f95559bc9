//! Off-chain baselines: a central scheduler that assigns the same job stream to the same
//! population by a fixed rule (random, round-robin, lowest price), with the same replica and
//! audit verification but no stake, no slashing and no reputation.
//!
//! Prices are posted asks (the same load-curve reserve the market's agents bid), paid only for
//! accepted results. A job waits for a free coprocessor as long as the market would keep it in
//! auction (all rounds), then fails.

use std::collections::BTreeMap;

use agora_market::{reserve_price, Params};
use agora_types::Hash;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::record::{finish_metrics, CopFinal, Metrics, RunRecord, Step, UtilWindows};
use crate::scenario::{Mechanism, Resolved, ScenarioFile};
use crate::world::{Behaviour, World};

struct Slot {
    cop: u32,
    price: f64,
    /// Block the slot ends (result delivered or deadline passed).
    ends: u64,
    result: Option<Hash>,
}

struct Open {
    job: u32,
    /// Last block the job may still be assigned.
    wait_until: u64,
    slots: Vec<Slot>,
}

/// Run a baseline scheduler on `world`.
pub fn run_baseline(
    file: &ScenarioFile,
    variant: &Resolved,
    world: &World,
    mechanism: Mechanism,
) -> RunRecord {
    let params: &Params = &variant.params;
    let n = world.profiles.len();
    let mut rng = ChaCha8Rng::seed_from_u64(world.seed ^ 0x6261_7365_6c69_6e65 ^ mechanism as u64);
    let mut load = vec![0u32; n];
    let mut load_sum = vec![0.0f64; n];
    let mut util = UtilWindows::new(n);
    let mut earned = vec![0.0f64; n];
    let mut exec_cost = vec![0.0f64; n];
    let mut done = vec![0u64; n];
    let mut bad = vec![0u64; n];
    let mut rr = 0usize;
    let mut open: Vec<Open> = Vec::new();
    let mut series = Vec::new();
    let mut edges: BTreeMap<(u32, u32), u32> = BTreeMap::new();
    let mut m = Metrics {
        variant: variant.label.clone(),
        mechanism: mechanism.name().into(),
        ..Metrics::default()
    };
    let mut spent = 0.0;
    let (mut completed, mut wrong, mut failed) = (0u32, 0u32, 0u32);
    let wait_blocks = variant.jobs.auction_blocks * (1 + params.max_reauctions as u64);
    let total = file.blocks + file.drain_blocks;
    let mut next_job = 0usize;
    let samples_idx: Vec<u32> = {
        let k = file.sample_participants.max(1) as usize;
        let every = (n / k.min(n)).max(1);
        (0..n).step_by(every).take(k).map(|i| i as u32).collect()
    };
    let mut samples: Vec<(u32, bool, Vec<f64>)> = samples_idx
        .iter()
        .map(|&i| (i, world.profiles[i as usize].honest, Vec::new()))
        .collect();

    for h in 1..=total {
        while next_job < world.jobs.len() && world.jobs[next_job].block <= h {
            if world.jobs[next_job].block <= file.blocks {
                m.jobs += 1;
                m.submitted += 1;
                open.push(Open {
                    job: next_job as u32,
                    wait_until: h + wait_blocks,
                    slots: Vec::new(),
                });
            }
            next_job += 1;
        }
        // Assign missing slots.
        for o in open.iter_mut() {
            let d = &world.jobs[o.job as usize];
            while (o.slots.len() as u32) < d.replicas && h <= o.wait_until {
                let eligible: Vec<(u32, f64)> = (0..n as u32)
                    .filter(|c| world.profiles[*c as usize].joins_at <= h)
                    .filter(|c| load[*c as usize] < world.profiles[*c as usize].capacity)
                    .filter(|c| o.slots.iter().all(|s| s.cop != *c))
                    .filter_map(|c| {
                        let p = &world.profiles[c as usize];
                        let ask = reserve_price(
                            world.base_cost(o.job, c),
                            load[c as usize],
                            p.capacity,
                            params,
                        );
                        (ask.0 <= d.max_price).then_some((c, ask.0 as f64))
                    })
                    .collect();
                if eligible.is_empty() {
                    break;
                }
                let (cop, price) = match mechanism {
                    Mechanism::Random => eligible[rng.random_range(0..eligible.len())],
                    Mechanism::LowestPrice => eligible
                        .iter()
                        .copied()
                        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
                        .unwrap_or(eligible[0]),
                    _ => {
                        let pick = eligible
                            .iter()
                            .copied()
                            .min_by_key(|(c, _)| (*c as usize + n - rr % n) % n)
                            .unwrap_or(eligible[0]);
                        rr = pick.0 as usize + 1;
                        pick
                    }
                };
                load[cop as usize] += 1;
                let (ends, result) = match world.behaviour(o.job, cop) {
                    Behaviour::Late => (h + d.deadline_blocks, None),
                    Behaviour::Lie => (h + 1, Some(world.wrong_hash(o.job, cop))),
                    Behaviour::Honest => {
                        exec_cost[cop as usize] += world.exec_cost(o.job, cop);
                        (
                            h + world.exec_blocks(o.job, cop),
                            Some(world.correct_hash(o.job)),
                        )
                    }
                };
                o.slots.push(Slot {
                    cop,
                    price,
                    ends,
                    result,
                });
            }
        }
        // Release finished slots and decide jobs.
        let mut keep = Vec::with_capacity(open.len());
        for o in open.drain(..) {
            let d = &world.jobs[o.job as usize];
            for s in &o.slots {
                if s.ends == h {
                    load[s.cop as usize] -= 1;
                }
            }
            let assigned = o.slots.len() as u32 == d.replicas;
            if !assigned {
                if h > o.wait_until {
                    for s in &o.slots {
                        if s.ends > h {
                            load[s.cop as usize] -= 1;
                        }
                    }
                    failed += 1;
                    continue;
                }
                keep.push(o);
                continue;
            }
            if o.slots.iter().any(|s| s.ends > h) {
                keep.push(o);
                continue;
            }
            // Every slot has ended: verify like the market does.
            let late = o.slots.iter().any(|s| s.result.is_none());
            let accepted: Option<(Hash, Vec<usize>)> = if late {
                None
            } else if d.replicas == 1 {
                let r = o.slots[0].result.unwrap_or_default();
                let audited = world.nature(o.job, u32::MAX, "audit") < d.audit_bps as f64 / 1e4;
                (!audited || r == world.correct_hash(o.job)).then(|| (r, vec![0]))
            } else {
                let mut groups: BTreeMap<Hash, Vec<usize>> = BTreeMap::new();
                for (i, s) in o.slots.iter().enumerate() {
                    groups
                        .entry(s.result.unwrap_or_default())
                        .or_default()
                        .push(i);
                }
                groups
                    .into_iter()
                    .find(|(_, v)| v.len() * 2 > o.slots.len())
            };
            match accepted {
                None => {
                    failed += 1;
                    for s in &o.slots {
                        bad[s.cop as usize] += 1;
                    }
                }
                Some((hash, winners)) => {
                    completed += 1;
                    if hash != world.correct_hash(o.job) {
                        wrong += 1;
                    }
                    for (i, s) in o.slots.iter().enumerate() {
                        if winners.contains(&i) {
                            earned[s.cop as usize] += s.price;
                            spent += s.price;
                            done[s.cop as usize] += 1;
                            *edges.entry((d.client, s.cop)).or_default() += 1;
                        } else {
                            bad[s.cop as usize] += 1;
                        }
                    }
                }
            }
        }
        open = keep;
        for (i, l) in load.iter().enumerate() {
            if world.profiles[i].joins_at > h {
                continue;
            }
            let u = *l as f64 / world.profiles[i].capacity.max(1) as f64;
            load_sum[i] += u;
            util.add(i, u);
        }
        util.end_block();
        let dishonest = world.profiles.iter().filter(|p| !p.honest).count() as u32;
        series.push(Step {
            block: h,
            active: n as u32,
            active_honest: n as u32 - dishonest,
            active_dishonest: dishonest,
            cumulative_reward: earned.iter().sum(),
            open_jobs: open.len() as u32,
            completed,
            wrong_accepted: wrong,
            failed,
            ..Step::default()
        });
        for (i, _, v) in &mut samples {
            v.push(earned[*i as usize]);
        }
    }
    let finals: Vec<CopFinal> = world
        .profiles
        .iter()
        .enumerate()
        .map(|(i, p)| CopFinal {
            index: i as u32,
            honest: p.honest,
            capacity: p.capacity,
            cost: p.cost,
            reliability: p.reliability,
            reputation: None,
            earned: earned[i],
            slashed: 0.0,
            exec_cost: exec_cost[i],
            profit: earned[i] - exec_cost[i],
            completed: done[i],
            failed: bad[i],
            active: true,
            utilisation: load_sum[i] / (total + 1).saturating_sub(p.joins_at.max(1)).max(1) as f64,
            joined: p.joins_at,
            bids_before_first_win: None,
            ejected: false,
        })
        .collect();
    m.completed = completed;
    m.wrong_accepted = wrong;
    m.client_cost_per_job = if completed > 0 {
        spent / completed as f64
    } else {
        0.0
    };
    finish_metrics(&mut m, &finals, &series);
    // No stake in a baseline: nobody is ever removed.
    m.half_dishonest_removed_at = None;
    // Nobody bids in a baseline.
    m.newcomers_never_won = 0;
    RunRecord {
        variant: variant.label.clone(),
        mechanism,
        series,
        samples,
        finals,
        edges: edges.into_iter().map(|((a, b), k)| (a, b, k)).collect(),
        auctions: Vec::new(),
        utilisation: util.windows,
        metrics: m,
    }
}
