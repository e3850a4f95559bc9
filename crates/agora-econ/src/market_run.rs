//! A run on the real market: agents sign transactions, blocks go through
//! [`Market::apply_block`], and everything measured is read back from the market's own state
//! and events. No market rule is reimplemented here.

use std::collections::{BTreeMap, BTreeSet};

use agora_crypto::Keypair;
use agora_market::{
    reserve_price, AuctionSpec, BlockContext, Genesis, GenesisAccount, GenesisOperator, JobSpec,
    JobState, Market, MarketEvent, SlotStatus, TxBuilder,
};
use agora_types::{Address, Amount, Hash, Height, JobId, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::record::{finish_metrics, AuctionRow, CopFinal, Metrics, RunRecord, Step, UtilWindows};
use crate::scenario::{Mechanism, Resolved, ScenarioFile};
use crate::world::{Behaviour, World};
use crate::EconError;

const GENESIS_MS: u64 = 1_700_000_000_000;
const OPERATOR_STAKE: u128 = 100_000;

struct Agent {
    tx: TxBuilder,
    nonce: u64,
}

impl Agent {
    fn next(&mut self) -> u64 {
        let n = self.nonce;
        self.nonce += 1;
        n
    }
}

struct Secret {
    price: Amount,
    salt: Hash,
    round: u32,
}

/// Drives one market run.
struct Run<'a> {
    file: &'a ScenarioFile,
    variant: &'a Resolved,
    world: &'a World,
    mechanism: Mechanism,
    market: Market,
    rng: ChaCha8Rng,
    operators: Vec<Agent>,
    clients: Vec<Agent>,
    cops: Vec<Agent>,
    cop_index: BTreeMap<Address, u32>,
    op_index: BTreeMap<Address, u32>,
    job_index: BTreeMap<JobId, u32>,
    /// Job id by job index, once the submission is applied.
    ids: Vec<Option<JobId>>,
    /// Job round the agents have already bid on.
    bid_round: BTreeMap<u32, u32>,
    /// Jobs each coprocessor has an outstanding (unresolved) bid on.
    outstanding: Vec<BTreeSet<u32>>,
    secrets: BTreeMap<(u32, u32), Secret>,
    /// Results to commit, by block: (job, coprocessor, hash).
    due: BTreeMap<u64, Vec<(u32, u32, Hash)>>,
    /// Attestations to send next block: (operator, job).
    attest: Vec<(u32, u32)>,
    exec_cost: Vec<f64>,
    load_sum: Vec<f64>,
    /// Blocks each coprocessor has been staked for (the utilisation denominator).
    staked_blocks: Vec<u64>,
    util: UtilWindows,
    /// Asks of every bidder of a (job, round), for the auction rows.
    asks: BTreeMap<(u32, u32), Vec<(u32, Amount)>>,
    /// This block's awards, completed with the best losing ask once the block is applied.
    pending_rows: Vec<AuctionRow>,
    auctions: Vec<AuctionRow>,
    /// Auction rounds each coprocessor bid in, and that count at its first award.
    rounds_bid: Vec<u32>,
    first_win: Vec<Option<u32>>,
    forfeited: Vec<f64>,
    edges: BTreeMap<(u32, u32), u32>,
    metrics: Metrics,
    series: Vec<Step>,
    samples: Vec<(u32, bool, Vec<f64>)>,
    client_start: Vec<u128>,
    completed: u32,
    wrong: u32,
    failed: u32,
}

/// Run the market with `mechanism` (Dutch or sealed) on `world`.
pub fn run_market(
    file: &ScenarioFile,
    variant: &Resolved,
    world: &World,
    mechanism: Mechanism,
) -> Result<RunRecord, EconError> {
    let mut run = Run::new(file, variant, world, mechanism)?;
    let total = file.blocks + file.drain_blocks;
    for h in 1..=total {
        run.block(h)?;
        if h % file.invariant_every.max(1) == 0 || h == total {
            run.market
                .check_invariants()
                .map_err(|e| EconError::Invariant {
                    block: h,
                    detail: e.to_string(),
                })?;
        }
    }
    Ok(run.finish())
}

impl<'a> Run<'a> {
    fn new(
        file: &'a ScenarioFile,
        variant: &'a Resolved,
        world: &'a World,
        mechanism: Mechanism,
    ) -> Result<Run<'a>, EconError> {
        let pop = &variant.population;
        let jobs = &variant.jobs;
        let op_keys: Vec<Keypair> = (0..pop.operators as u64).map(Keypair::for_test).collect();
        let client_keys: Vec<Keypair> = (0..jobs.clients as u64)
            .map(|i| Keypair::for_test(1_000_000 + i))
            .collect();
        let cop_keys: Vec<Keypair> = (0..world.profiles.len() as u64)
            .map(|i| Keypair::for_test(2_000_000 + i))
            .collect();
        let mut accounts: Vec<GenesisAccount> = client_keys
            .iter()
            .map(|k| GenesisAccount {
                address: k.address(),
                balance: Amount(jobs.client_balance as u128),
            })
            .collect();
        for (k, p) in cop_keys.iter().zip(&world.profiles) {
            accounts.push(GenesisAccount {
                address: k.address(),
                balance: Amount(p.stake + pop.working_balance as u128),
            });
        }
        let genesis = Genesis {
            chain_name: format!("econ-{}-{}-{}", file.name, variant.label, mechanism.name()),
            genesis_time: Timestamp(GENESIS_MS),
            operators: op_keys
                .iter()
                .map(|k| GenesisOperator {
                    address: k.address(),
                    stake: Amount(OPERATOR_STAKE),
                })
                .collect(),
            accounts,
            params: variant.params.clone(),
        };
        let market = Market::new(&genesis).map_err(|e| EconError::Scenario(e.to_string()))?;
        let chain = market.chain_id();
        let agent = |k: &Keypair| Agent {
            tx: TxBuilder::new(k.clone(), chain),
            nonce: 0,
        };
        let n = world.profiles.len();
        let sample_every = (n / (file.sample_participants.max(1) as usize).min(n)).max(1);
        let samples = (0..n)
            .step_by(sample_every)
            .take(file.sample_participants as usize)
            .map(|i| (i as u32, world.profiles[i].honest, Vec::new()))
            .collect();
        let seed = world.seed ^ (mechanism as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Ok(Run {
            file,
            variant,
            world,
            mechanism,
            rng: ChaCha8Rng::seed_from_u64(seed),
            cop_index: cop_keys
                .iter()
                .enumerate()
                .map(|(i, k)| (k.address(), i as u32))
                .collect(),
            op_index: op_keys
                .iter()
                .enumerate()
                .map(|(i, k)| (k.address(), i as u32))
                .collect(),
            operators: op_keys.iter().map(agent).collect(),
            client_start: vec![jobs.client_balance as u128; client_keys.len()],
            clients: client_keys.iter().map(agent).collect(),
            cops: cop_keys.iter().map(agent).collect(),
            market,
            job_index: BTreeMap::new(),
            ids: vec![None; world.jobs.len()],
            bid_round: BTreeMap::new(),
            outstanding: vec![BTreeSet::new(); n],
            secrets: BTreeMap::new(),
            due: BTreeMap::new(),
            attest: Vec::new(),
            exec_cost: vec![0.0; n],
            load_sum: vec![0.0; n],
            staked_blocks: vec![0; n],
            util: UtilWindows::new(n),
            asks: BTreeMap::new(),
            pending_rows: Vec::new(),
            auctions: Vec::new(),
            rounds_bid: vec![0; n],
            first_win: vec![None; n],
            forfeited: vec![0.0; n],
            edges: BTreeMap::new(),
            metrics: Metrics {
                variant: variant.label.clone(),
                mechanism: mechanism.name().into(),
                ..Metrics::default()
            },
            series: Vec::new(),
            samples,
            completed: 0,
            wrong: 0,
            failed: 0,
        })
    }

    fn block_ms(&self) -> u64 {
        self.file.block_ms
    }

    /// Build this block's transactions, apply it, and observe the outcome.
    fn block(&mut self, h: u64) -> Result<(), EconError> {
        let mut txs: Vec<Vec<u8>> = Vec::new();
        // Submissions are remembered by position so receipts can name the job.
        let mut submitted: BTreeMap<usize, u32> = BTreeMap::new();

        let min_stake = self.market.params().min_stake;
        for (i, a) in self.cops.iter_mut().enumerate() {
            let p = &self.world.profiles[i];
            let amount = if p.joins_at.max(1) == h {
                p.stake
            } else {
                // A slash took the stake below the minimum: stake back up to the initial stake
                // from the balance, if the market still lets this coprocessor work.
                let Some(c) = self.market.coprocessor(&a.tx.address()) else {
                    continue;
                };
                if !self.variant.population.restake || c.stake >= min_stake || c.ejected {
                    continue;
                }
                let want = p.stake.saturating_sub(c.stake.0);
                if self.market.balance(&a.tx.address()).0 < want {
                    continue;
                }
                self.metrics.restakes += 1;
                want
            };
            let n = a.next();
            txs.push(a.tx.bytes(
                n,
                agora_market::TxKind::Stake {
                    amount: Amount(amount),
                    capacity: p.capacity,
                },
            ));
        }
        self.build_attestations(&mut txs);
        self.build_results(h, &mut txs);
        self.build_bids(&mut txs);
        if h <= self.file.blocks {
            self.build_submissions(h, &mut txs, &mut submitted);
        }

        let ctx = self.context(h);
        let result = self
            .market
            .apply_block(&ctx, &txs)
            .map_err(|e| EconError::Market(e.to_string()))?;
        self.metrics.txs += txs.len() as u64;
        for (pos, r) in result.receipts.iter().enumerate() {
            if let Some(job) = submitted.get(&pos) {
                if r.applied() {
                    if let Some(id) = r.tx_hash {
                        self.job_index.insert(id, *job);
                        self.ids[*job as usize] = Some(id);
                        self.metrics.submitted += 1;
                    }
                }
            }
            if let agora_market::TxStatus::Rejected { reason } = &r.status {
                self.metrics.rejected_txs += 1;
                let short: String = reason
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(48)
                    .collect();
                let key = format!("{}: {}", r.kind.as_deref().unwrap_or("?"), short);
                *self.metrics.rejections.entry(key).or_default() += 1;
                tracing::debug!(target: "econ.reject", block = h, kind = ?r.kind, %reason);
            }
        }
        for ev in &result.events {
            self.observe(h, &ev.event);
        }
        self.finish_rows();
        // Nonces follow the market (a refused transaction with the right nonce uses it, one with
        // a wrong nonce does not).
        for a in self
            .operators
            .iter_mut()
            .chain(self.clients.iter_mut())
            .chain(self.cops.iter_mut())
        {
            a.nonce = self.market.nonce(&a.tx.address());
        }
        self.cleanup();
        self.record(h);
        Ok(())
    }

    fn context(&self, h: u64) -> BlockContext {
        let mut time = self.market.time().0 + self.block_ms();
        let mut power = 10_000;
        for s in &self.file.stalls {
            if h == s.at_block {
                time += s.gap_ms;
            }
            if h > s.at_block && h <= s.at_block + s.low_power_blocks {
                power = s.commit_power_bps;
            }
        }
        let proposer = self.operators[(h % self.operators.len() as u64) as usize]
            .tx
            .address();
        BlockContext {
            height: Height(h),
            time: Timestamp(time),
            proposer,
            commit_power_bps: power,
            seed: Hash::derive(
                "agora/econ/block-seed",
                &[self.world.seed.to_le_bytes(), h.to_le_bytes()].concat(),
            ),
            absent: Vec::new(),
        }
    }

    fn build_attestations(&mut self, txs: &mut Vec<Vec<u8>>) {
        for (op, job) in std::mem::take(&mut self.attest) {
            let Some(id) = self.job_id(job) else { continue };
            let a = &mut self.operators[op as usize];
            let n = a.next();
            txs.push(agora_market::encode_envelope(&a.tx.audit(
                n,
                id,
                self.world.correct_hash(job),
            )));
        }
    }

    fn job_id(&self, job: u32) -> Option<JobId> {
        self.ids.get(job as usize).copied().flatten()
    }

    fn build_results(&mut self, h: u64, txs: &mut Vec<Vec<u8>>) {
        let due = self.due.remove(&h).unwrap_or_default();
        for (job, cop, hash) in due {
            let Some(id) = self.job_id(job) else { continue };
            let id = &id;
            let addr = self.cops[cop as usize].tx.address();
            let live = self
                .market
                .job(id)
                .and_then(|j| j.assignments.get(&addr))
                .is_some_and(|a| a.status == SlotStatus::Executing);
            if !live {
                continue;
            }
            let fuel = self.world.fuel_used(job);
            let a = &mut self.cops[cop as usize];
            let n = a.next();
            txs.push(agora_market::encode_envelope(&a.tx.result(
                n,
                *id,
                hash,
                fuel,
                agora_market::Outcome::Success,
                8,
            )));
        }
    }

    fn build_bids(&mut self, txs: &mut Vec<Vec<u8>>) {
        let params = self.market.params().clone();
        let now = self.market.market_time();
        let next = now + self.block_ms();
        let open: Vec<JobId> = self.market.open_jobs().copied().collect();
        for id in open {
            let Some(&job) = self.job_index.get(&id) else {
                continue;
            };
            let Some(j) = self.market.job(&id) else {
                continue;
            };
            if j.state != JobState::Auction {
                continue;
            }
            let round = j.auction.round;
            let elapsed_next = next.saturating_sub(j.auction.opened_at);
            // Sealed reveals for commitments of this round.
            if let AuctionSpec::Sealed {
                commit_ms,
                reveal_ms,
            } = j.spec.auction
            {
                if elapsed_next >= commit_ms && elapsed_next < commit_ms + reveal_ms {
                    let keys: Vec<(u32, u32)> = self
                        .secrets
                        .range((job, 0)..=(job, u32::MAX))
                        .map(|(k, _)| *k)
                        .collect();
                    for (jb, cop) in keys {
                        let addr = self.cops[cop as usize].tx.address();
                        let s = &self.secrets[&(jb, cop)];
                        if s.round != round
                            || j.auction.reveals.contains_key(&addr)
                            || !j.auction.commits.contains_key(&addr)
                        {
                            continue;
                        }
                        let (price, salt) = (s.price, s.salt);
                        let a = &mut self.cops[cop as usize];
                        let n = a.next();
                        txs.push(agora_market::encode_envelope(
                            &a.tx.sealed_reveal(n, id, price, salt),
                        ));
                    }
                }
                if elapsed_next >= commit_ms {
                    continue;
                }
            }
            if self.bid_round.get(&job) == Some(&round) {
                continue;
            }
            self.bid_round.insert(job, round);
            let collateral = j
                .spec
                .max_price
                .mul_ratio(params.collateral_bps as u128, 10_000)
                .unwrap_or(Amount(u128::MAX));
            let mut candidates: Vec<(u32, Amount)> = Vec::new();
            for (cop, agent) in self.cops.iter().enumerate() {
                let addr = agent.tx.address();
                let Some(c) = self.market.coprocessor(&addr) else {
                    continue;
                };
                if !c.active
                    || c.reputation_bps() < j.spec.min_reputation_bps
                    || j.assignments.contains_key(&addr)
                {
                    continue;
                }
                // Like the node's agent (design §7), the ask follows the slots actually held:
                // the market itself refuses an award beyond capacity or free collateral, so a
                // standing bid need not reserve either.
                let pending = self.outstanding[cop].len() as u32;
                if c.load >= c.capacity || c.free_collateral() < collateral {
                    continue;
                }
                if self.mechanism == Mechanism::Sealed
                    && self.market.balance(&addr).0
                        < params.reveal_bond.0.saturating_mul(pending as u128 + 1)
                {
                    continue;
                }
                let base = self.world.base_cost(job, cop as u32);
                let ask = reserve_price(base, c.load, c.capacity, &params);
                if ask <= j.spec.max_price {
                    candidates.push((cop as u32, ask));
                }
            }
            // Bounded attention: a random subset of the willing notices this auction.
            for i in (1..candidates.len()).rev() {
                let k = self.rng.random_range(0..=i);
                candidates.swap(i, k);
            }
            candidates.truncate(self.variant.jobs.max_bidders as usize);
            self.asks.insert((job, round), candidates.clone());
            for (cop, ask) in candidates {
                self.rounds_bid[cop as usize] += 1;
                let a = &mut self.cops[cop as usize];
                let n = a.next();
                let env = match self.mechanism {
                    Mechanism::Sealed => {
                        let salt = Hash(self.rng.random());
                        self.secrets.insert(
                            (job, cop),
                            Secret {
                                price: ask,
                                salt,
                                round,
                            },
                        );
                        a.tx.sealed_commit(n, id, ask, salt)
                    }
                    _ => a.tx.dutch_accept(n, id, ask),
                };
                txs.push(agora_market::encode_envelope(&env));
                self.outstanding[cop as usize].insert(job);
            }
        }
    }

    fn build_submissions(
        &mut self,
        h: u64,
        txs: &mut Vec<Vec<u8>>,
        submitted: &mut BTreeMap<usize, u32>,
    ) {
        let jobs = &self.variant.jobs;
        let bm = self.block_ms();
        let start = self.world.jobs.partition_point(|j| j.block < h);
        for d in self.world.jobs[start..].iter().take_while(|j| j.block == h) {
            self.metrics.jobs += 1;
            let max_price = Amount(d.max_price);
            let auction = match self.mechanism {
                Mechanism::Sealed => AuctionSpec::Sealed {
                    commit_ms: jobs.sealed_phase_blocks * bm,
                    reveal_ms: jobs.sealed_phase_blocks * bm,
                },
                _ => AuctionSpec::Dutch {
                    start_price: Amount((d.max_price as f64 * jobs.start_share) as u128),
                    duration_ms: jobs.auction_blocks * bm,
                },
            };
            let spec = JobSpec {
                module_hash: Hash::derive("agora/econ/module", &d.index.to_le_bytes()),
                input_hash: Hash::derive("agora/econ/input", &d.index.to_le_bytes()),
                module_size: 1_000,
                input_size: 100,
                args: Vec::new(),
                fuel_limit: self.world.fuel_used(d.index).max(1) * 2,
                memory_limit: 64 << 20,
                replicas: d.replicas,
                audit_bps: d.audit_bps,
                auction,
                max_price,
                deadline_ms: d.deadline_blocks * bm,
                min_reputation_bps: d.min_reputation_bps,
            };
            let a = &mut self.clients[d.client as usize];
            let n = a.next();
            submitted.insert(txs.len(), d.index);
            txs.push(agora_market::encode_envelope(&a.tx.submit_job(n, spec)));
        }
    }

    fn observe(&mut self, h: u64, ev: &MarketEvent) {
        match ev {
            MarketEvent::Awarded {
                job,
                coprocessor,
                price,
                ..
            } => {
                let (Some(&j), Some(&c)) =
                    (self.job_index.get(job), self.cop_index.get(coprocessor))
                else {
                    return;
                };
                if self.first_win[c as usize].is_none() {
                    self.first_win[c as usize] =
                        Some(self.rounds_bid[c as usize].saturating_sub(1));
                }
                let round = self.market.job(job).map_or(0, |x| x.auction.round);
                let bidders = self.asks.get(&(j, round));
                let ask = bidders
                    .and_then(|b| b.iter().find(|(x, _)| *x == c))
                    .map_or(0, |(_, a)| a.0 as u64);
                let d = &self.world.jobs[j as usize];
                self.pending_rows.push(AuctionRow {
                    block: h,
                    job: j,
                    round,
                    replicas: d.replicas,
                    max_price: d.max_price as u64,
                    coprocessor: c,
                    price: price.0 as u64,
                    ask,
                    best_losing_ask: None,
                    bidders: bidders.map_or(0, |b| b.len() as u32),
                });
                self.outstanding[c as usize].remove(&j);
                self.secrets.remove(&(j, c));
                match self.world.behaviour(j, c) {
                    Behaviour::Late => {}
                    Behaviour::Lie => {
                        self.due.entry(h + 1).or_default().push((
                            j,
                            c,
                            self.world.wrong_hash(j, c),
                        ));
                    }
                    Behaviour::Honest => {
                        self.exec_cost[c as usize] += self.world.exec_cost(j, c);
                        self.due
                            .entry(h + self.world.exec_blocks(j, c))
                            .or_default()
                            .push((j, c, self.world.correct_hash(j)));
                    }
                }
            }
            MarketEvent::AuditSelected { job, auditor } => {
                if let (Some(&j), Some(&o)) = (self.job_index.get(job), self.op_index.get(auditor))
                {
                    self.attest.push((o, j));
                }
            }
            MarketEvent::AuditMismatch {
                job,
                tiebreaker: Some(t),
                ..
            } => {
                if let (Some(&j), Some(&o)) = (self.job_index.get(job), self.op_index.get(t)) {
                    self.attest.push((o, j));
                }
            }
            MarketEvent::Paid {
                job, coprocessor, ..
            } => {
                if let (Some(&j), Some(&c)) =
                    (self.job_index.get(job), self.cop_index.get(coprocessor))
                {
                    let client = self.world.jobs[j as usize].client;
                    *self.edges.entry((client, c)).or_default() += 1;
                }
            }
            MarketEvent::Settled {
                job, result_hash, ..
            } => {
                if let Some(&j) = self.job_index.get(job) {
                    self.completed += 1;
                    if *result_hash != self.world.correct_hash(j) {
                        self.wrong += 1;
                    }
                }
            }
            MarketEvent::Failed { .. } | MarketEvent::Refunded { .. } => self.failed += 1,
            MarketEvent::TimedOut { .. } => self.metrics.timeouts += 1,
            MarketEvent::Slashed { .. } => self.metrics.slashes += 1,
            MarketEvent::StallDetected { .. } => self.metrics.stalls += 1,
            MarketEvent::BondForfeited {
                coprocessor,
                amount,
                ..
            } => {
                if let Some(&c) = self.cop_index.get(coprocessor) {
                    self.forfeited[c as usize] += amount.0 as f64;
                }
            }
            _ => {}
        }
    }

    /// Complete this block's award rows with the lowest ask that won no slot of the round.
    fn finish_rows(&mut self) {
        for mut row in std::mem::take(&mut self.pending_rows) {
            let Some(id) = self.job_id(row.job) else {
                continue;
            };
            let Some(j) = self.market.job(&id) else {
                continue;
            };
            row.best_losing_ask = self.asks.get(&(row.job, row.round)).and_then(|b| {
                b.iter()
                    .filter(|(c, _)| {
                        !j.assignments
                            .contains_key(&self.cops[*c as usize].tx.address())
                    })
                    .map(|(_, a)| a.0 as u64)
                    .min()
            });
            self.auctions.push(row);
        }
    }

    /// Forget bids on auctions that have moved on.
    fn cleanup(&mut self) {
        let market = &self.market;
        let ids = &self.ids;
        self.asks.retain(|(job, round), _| {
            ids.get(*job as usize)
                .copied()
                .flatten()
                .and_then(|id| market.job(&id))
                .is_some_and(|j| j.state == JobState::Auction && j.auction.round == *round)
        });
        let ids = &self.ids;
        for (cop, set) in self.outstanding.iter_mut().enumerate() {
            let addr = self.cops[cop].tx.address();
            set.retain(|job| {
                let Some(id) = ids.get(*job as usize).copied().flatten() else {
                    return false;
                };
                self.market.job(&id).is_some_and(|j| {
                    j.state == JobState::Auction
                        && (j.auction.dutch.contains_key(&addr)
                            || j.auction.commits.contains_key(&addr))
                })
            });
        }
        let market = &self.market;
        self.secrets.retain(|(job, _), _| {
            ids.get(*job as usize)
                .copied()
                .flatten()
                .and_then(|id| market.job(&id))
                .is_some_and(|j| j.state == JobState::Auction)
        });
    }

    fn record(&mut self, h: u64) {
        let mut step = Step {
            block: h,
            completed: self.completed,
            wrong_accepted: self.wrong,
            failed: self.failed,
            open_jobs: self.market.open_jobs().count() as u32,
            stalled: self.market.health().stalled,
            timeouts: self.metrics.timeouts,
            ..Step::default()
        };
        let (mut rh, mut nh, mut rd, mut nd) = (0.0, 0u32, 0.0, 0u32);
        let mut earned = vec![0.0; self.cops.len()];
        for (i, a) in self.cops.iter().enumerate() {
            let Some(c) = self.market.coprocessor(&a.tx.address()) else {
                continue;
            };
            let honest = self.world.profiles[i].honest;
            let rep = c.reputation().to_f64();
            earned[i] = c.earned.0 as f64;
            step.cumulative_reward += earned[i];
            let u = c.load as f64 / c.capacity.max(1) as f64;
            self.load_sum[i] += u;
            self.staked_blocks[i] += 1;
            self.util.add(i, u);
            if c.active {
                step.active += 1;
                if honest {
                    step.active_honest += 1;
                } else {
                    step.active_dishonest += 1;
                }
            }
            if honest {
                rh += rep;
                nh += 1;
            } else {
                rd += rep;
                nd += 1;
            }
        }
        step.mean_reputation_honest = if nh > 0 { rh / nh as f64 } else { 0.0 };
        step.mean_reputation_dishonest = if nd > 0 { rd / nd as f64 } else { 0.0 };
        for (i, _, v) in &mut self.samples {
            v.push(earned[*i as usize]);
        }
        self.util.end_block();
        self.series.push(step);
    }

    fn finish(mut self) -> RunRecord {
        let mut finals = Vec::new();
        for (i, a) in self.cops.iter().enumerate() {
            let p = &self.world.profiles[i];
            let c = self.market.coprocessor(&a.tx.address());
            let earned = c.map(|c| c.earned.0 as f64).unwrap_or(0.0);
            let slashed = c.map(|c| c.slashed.0 as f64).unwrap_or(0.0);
            finals.push(CopFinal {
                index: i as u32,
                honest: p.honest,
                capacity: p.capacity,
                cost: p.cost,
                reliability: p.reliability,
                reputation: c.map(|c| c.reputation().to_f64()),
                earned,
                slashed,
                exec_cost: self.exec_cost[i],
                profit: earned - self.exec_cost[i] - slashed - self.forfeited[i],
                completed: c.map(|c| c.completed).unwrap_or(0),
                failed: c.map(|c| c.failed).unwrap_or(0),
                active: c.is_some_and(|c| c.active),
                utilisation: self.load_sum[i] / self.staked_blocks[i].max(1) as f64,
                joined: p.joins_at,
                bids_before_first_win: self.first_win[i],
                ejected: c.is_some_and(|c| c.ejected),
            });
        }
        // Client spending: what left their accounts, minus what open jobs still hold.
        let mut spent = 0.0;
        for (i, a) in self.clients.iter().enumerate() {
            let now = self.market.balance(&a.tx.address()).0;
            spent += self.client_start[i] as f64 - now as f64;
        }
        for id in self.market.open_jobs() {
            if let Some(j) = self.market.job(id) {
                spent -= j.held().map(|a| a.0 as f64).unwrap_or(0.0);
            }
        }
        self.metrics.completed = self.completed;
        self.metrics.wrong_accepted = self.wrong;
        self.metrics.client_cost_per_job = if self.completed > 0 {
            spent / self.completed as f64
        } else {
            0.0
        };
        finish_metrics(&mut self.metrics, &finals, &self.series);
        let ratios: Vec<f64> = self
            .auctions
            .iter()
            .filter_map(|r| r.best_losing_ask.map(|l| r.price as f64 / l.max(1) as f64))
            .collect();
        self.metrics.price_over_next_ask = crate::record::mean(ratios.iter().copied());
        RunRecord {
            auctions: self.auctions,
            utilisation: self.util.windows,
            variant: self.variant.label.clone(),
            mechanism: self.mechanism,
            series: self.series,
            samples: self.samples,
            finals,
            edges: self
                .edges
                .into_iter()
                .map(|((a, b), k)| (a, b, k))
                .collect(),
            metrics: self.metrics,
        }
    }
}
