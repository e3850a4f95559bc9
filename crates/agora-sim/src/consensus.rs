//! The consensus simulator. One seed = one run: the seed picks the fault mix, stakes, link
//! latencies and every random decision, and the run checks agreement, validity, identical app
//! hashes, certificate validity, evidence for observed equivocations, no honest double vote
//! (also across crash-restart), and liveness after the network heals.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use agora_consensus::context::NilOrVal;
use agora_consensus::{
    wire, Application, Block, Config, Effect, Genesis, KvApp, MemStore, Message, Replica,
    ValidatorSet,
};
use agora_crypto::Keypair;
use agora_types::{Address, Hash};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::forge::{self, Byz, Target, BEHAVIOURS};
use crate::links::Links;
use crate::run_seeds;

/// What to run.
#[derive(Clone, Debug)]
pub struct ConsensusSimOptions {
    pub nodes: usize,
    /// Byzantine validators (their total power is kept below 1/3).
    pub byzantine: usize,
    pub seeds: u64,
    pub from: u64,
    /// Faults before the heal (ms of simulated time).
    pub chaos_ms: u64,
    /// After the heal, every honest node must commit new heights within this window.
    pub liveness_ms: u64,
    /// Run each seed twice and compare trace hashes.
    pub check_determinism: bool,
    /// Worker threads (seeds are independent; results do not depend on this).
    pub threads: usize,
    /// Allow crashes, partitions and message faults (false: a clean network, for benches).
    pub faults: bool,
}

impl Default for ConsensusSimOptions {
    fn default() -> Self {
        ConsensusSimOptions {
            nodes: 4,
            byzantine: 1,
            seeds: 100,
            from: 0,
            chaos_ms: 4000,
            liveness_ms: 8000,
            check_determinism: true,
            threads: 1,
            faults: true,
        }
    }
}

/// Result of one seed.
#[derive(Clone, Debug)]
pub struct SeedOutcome {
    pub seed: u64,
    pub failure: Option<String>,
    pub trace: Hash,
    pub heights: u64,
    pub messages: u64,
    pub signature_checks: u64,
    pub mix: String,
    pub evidence: u64,
    pub rejected: u64,
    /// (validator, height) equivocations honest nodes fed to consensus (each must have evidence).
    pub equivocations_observed: u64,
}

/// Aggregate of many seeds.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub nodes: usize,
    pub byzantine: usize,
    pub runs: u64,
    pub failures: Vec<(u64, String)>,
    pub heights: u64,
    pub messages: u64,
    pub signature_checks: u64,
    pub evidence: u64,
    pub rejected: u64,
    pub equivocations_observed: u64,
    pub mixes: BTreeMap<String, u64>,
    pub wall_seconds: f64,
}

impl Summary {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (seed, why) in &self.failures {
            writeln!(
                f,
                "FAIL seed {seed}: {why}\n  replay: AGORA_SIM_NODES={n} AGORA_SIM_BYZANTINE={k} AGORA_SIM_SEED={seed} AGORA_SIM_SEEDS=1 cargo test -p agora-sim --release --test it replay -- --nocapture  (or: agora sim consensus --nodes {n} --byzantine {k} --seeds 1 --from {seed})",
                n = self.nodes,
                k = self.byzantine
            )?;
        }
        writeln!(
            f,
            "consensus sim: {} seeds, {} failed; nodes {}, byzantine {}; {} heights decided, {:.1} msgs/height, {:.1} sig checks/height, {} evidence ({} equivocations observed by honest nodes, all reported), {} rejected msgs; {:.1}s wall",
            self.runs,
            self.failures.len(),
            self.nodes,
            self.byzantine,
            self.heights,
            self.messages as f64 / self.heights.max(1) as f64,
            self.signature_checks as f64 / self.heights.max(1) as f64,
            self.evidence,
            self.equivocations_observed,
            self.rejected,
            self.wall_seconds
        )?;
        for (m, n) in &self.mixes {
            writeln!(f, "  mix {m}: {n} seeds")?;
        }
        Ok(())
    }
}

/// Run `opts.seeds` seeds from `opts.from`.
pub fn run_consensus_seeds(opts: &ConsensusSimOptions) -> Summary {
    let start = wall_now();
    let outcomes = run_seeds(
        opts.from,
        opts.seeds,
        opts.threads,
        &|seed| run_consensus_seed(opts, seed),
        &|seed| SeedOutcome {
            seed,
            failure: Some("simulation thread panicked".into()),
            trace: Hash::ZERO,
            heights: 0,
            messages: 0,
            signature_checks: 0,
            mix: String::new(),
            evidence: 0,
            rejected: 0,
            equivocations_observed: 0,
        },
        |o| o.seed,
    );
    let mut sum = Summary {
        nodes: opts.nodes,
        byzantine: opts.byzantine,
        ..Summary::default()
    };
    for o in outcomes {
        sum.runs += 1;
        sum.heights += o.heights;
        sum.messages += o.messages;
        sum.signature_checks += o.signature_checks;
        sum.evidence += o.evidence;
        sum.rejected += o.rejected;
        sum.equivocations_observed += o.equivocations_observed;
        *sum.mixes.entry(o.mix.clone()).or_default() += 1;
        if let Some(f) = o.failure {
            sum.failures.push((o.seed, f));
        }
    }
    sum.wall_seconds = wall_now() - start;
    sum
}

fn wall_now() -> f64 {
    // Wall time is what the summary reports; the bench measures CPU separately.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

/// Run one seed (twice if determinism is checked).
pub fn run_consensus_seed(opts: &ConsensusSimOptions, seed: u64) -> SeedOutcome {
    // Every simulated node checks the same signatures: one check per triple is enough, and the
    // second run of a seed takes the first one's signatures and proofs (`agora_crypto::memo`).
    agora_crypto::memo::with_memo(|| {
        let mut a = Sim::new(opts, seed).run();
        if opts.check_determinism && a.failure.is_none() {
            let b = Sim::new(opts, seed).run();
            if a.trace != b.trace {
                a.failure = Some(format!(
                    "nondeterminism: trace {} vs {}",
                    a.trace.short(),
                    b.trace.short()
                ));
            }
        }
        a
    })
}

enum Ev {
    Deliver {
        to: usize,
        from: usize,
        bytes: Vec<u8>,
    },
    Wake {
        node: usize,
        at: u64,
    },
    Crash(usize),
    Restart(usize),
    Tx(usize),
}

struct Node {
    key: Keypair,
    replica: Option<Replica<MemStore, KvApp>>,
    crashed_store: Option<MemStore>,
    offset: u64,
    wake: u64,
    byz: Option<Byz>,
    sent: Vec<Vec<u8>>,
}

struct Sim {
    seed: u64,
    rng: ChaCha8Rng,
    now: u64,
    seq: u64,
    events: BTreeMap<(u64, u64), Ev>,
    nodes: Vec<Node>,
    genesis: Genesis,
    cfg: Config,
    links: Links,
    end_at: u64,
    trace: blake3::Hasher,
    decided: BTreeMap<u64, (Hash, Hash)>,
    votes: BTreeMap<(usize, u64, u32, u8), Option<Hash>>,
    heights_at_heal: Option<u64>,
    evidence: u64,
    rejected: u64,
    failure: Option<String>,
    mix: String,
}

const T0: u64 = 1_700_000_000_000;

impl Sim {
    fn new(opts: &ConsensusSimOptions, seed: u64) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = opts.nodes.max(1);
        let keys: Vec<Keypair> = (0..n)
            .map(|i| Keypair::for_test(seed.wrapping_mul(1000).wrapping_add(i as u64)))
            .collect();
        // Byzantine nodes are the first `k`; stakes keep their power under 1/3.
        let k = opts.byzantine.min((n - 1) / 3);
        let unit: u128 = 1_000_000_000_000_000_000_000;
        let mut stakes: Vec<u128> = (0..n)
            .map(|i| {
                if i < k {
                    unit
                } else {
                    unit * rng.random_range(1..=3u128)
                }
            })
            .collect();
        let total: u128 = stakes.iter().sum();
        if 3 * unit * k as u128 >= total {
            stakes = vec![unit; n];
        }
        let validators = ValidatorSet::from_stakes(
            &keys
                .iter()
                .zip(&stakes)
                .map(|(k, s)| (k.address(), *s))
                .collect::<Vec<_>>(),
        )
        .expect("simulated validator set is valid");
        let genesis = Genesis {
            chain_id: Hash::derive("agora/sim-chain", &seed.to_be_bytes()),
            time: T0,
            validators,
        };
        let cfg = Config {
            timeouts: arc_malachitebft_core_types::LinearTimeouts {
                propose: Duration::from_millis(400),
                propose_delta: Duration::from_millis(200),
                prevote: Duration::from_millis(200),
                prevote_delta: Duration::from_millis(100),
                precommit: Duration::from_millis(200),
                precommit_delta: Duration::from_millis(100),
                rebroadcast: Duration::from_millis(600),
                max_timeout: Duration::from_secs(10),
            },
            empty_block_interval_ms: 500,
            max_clock_drift_ms: 1000,
            sync_delay_ms: 600,
            sync_retry_ms: 300,
            ..Config::default()
        };
        let faults = opts.faults;
        let behaviours = BEHAVIOURS;
        let mut mix = Vec::new();
        let nodes: Vec<Node> = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                let byz = (i < k).then(|| behaviours[rng.random_range(0..behaviours.len())]);
                if let Some(b) = byz {
                    mix.push(format!("{b:?}").to_lowercase());
                }
                let offset = if faults { rng.random_range(0..300) } else { 0 };
                Node {
                    key,
                    replica: None,
                    crashed_store: None,
                    offset,
                    wake: 0,
                    byz,
                    sent: Vec::new(),
                }
            })
            .collect();
        let latency = (0..n)
            .map(|_| (0..n).map(|_| rng.random_range(2..40)).collect())
            .collect();
        let drop_p = if faults && rng.random_bool(0.6) {
            rng.random_range(0.0..0.2)
        } else {
            0.0
        };
        let dup_p = if faults && rng.random_bool(0.5) {
            rng.random_range(0.0..0.1)
        } else {
            0.0
        };
        let jitter = if faults { rng.random_range(0..60) } else { 0 };
        let heal_at = T0 + opts.chaos_ms;
        let partition = if faults && rng.random_bool(0.4) {
            let side: BTreeSet<usize> = (0..n).filter(|_| rng.random_bool(0.5)).collect();
            Some(side)
        } else {
            None
        };
        if drop_p > 0.0 {
            mix.push("drops".into());
        }
        if dup_p > 0.0 {
            mix.push("dups".into());
        }
        if partition.is_some() {
            mix.push("partition".into());
        }
        let mut sim = Sim {
            seed,
            rng,
            now: T0,
            seq: 0,
            events: BTreeMap::new(),
            nodes,
            genesis,
            cfg,
            links: Links {
                latency,
                jitter,
                drop_p,
                dup_p,
                partition,
                heal_at,
                isolated: BTreeSet::new(),
                messages: 0,
            },
            end_at: heal_at + opts.liveness_ms,
            trace: blake3::Hasher::new(),
            decided: BTreeMap::new(),
            votes: BTreeMap::new(),
            heights_at_heal: None,
            evidence: 0,
            rejected: 0,
            failure: None,
            mix: String::new(),
        };
        // Crash and restart some honest nodes (at most f - k of them down at once: one).
        if faults && k < (n - 1) / 3 + 1 && sim.rng.random_bool(0.5) {
            let victim = sim.rng.random_range(k..n);
            let at = T0 + sim.rng.random_range(0..opts.chaos_ms.max(1));
            let back = (at + sim.rng.random_range(100..2000)).min(heal_at);
            sim.push(at, Ev::Crash(victim));
            sim.push(back, Ev::Restart(victim));
            mix.push("crash".into());
        }
        let mut t = T0;
        while t < sim.end_at {
            t += sim.rng.random_range(50..400);
            let node = sim.rng.random_range(0..n);
            sim.push(t, Ev::Tx(node));
        }
        if mix.is_empty() {
            mix.push("clean".into());
        }
        sim.mix = mix.join("+");
        sim
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.events.insert((at, self.seq), ev);
    }

    fn fail(&mut self, why: String) {
        if self.failure.is_none() {
            self.failure = Some(why);
        }
    }

    fn run(mut self) -> SeedOutcome {
        for i in 0..self.nodes.len() {
            self.open(i, MemStore::new());
        }
        let mut budget: u64 = 3_000_000;
        while let Some(((at, _), ev)) = self.events.pop_first() {
            if at > self.end_at || self.failure.is_some() {
                break;
            }
            budget -= 1;
            if budget == 0 {
                self.fail("event budget exhausted".into());
                break;
            }
            if self.heights_at_heal.is_none() && at >= self.links.heal_at {
                self.heights_at_heal = Some(self.max_honest_height());
            }
            self.now = at;
            let _span = tracing::debug_span!("node", i = ev_node(&ev)).entered();
            match ev {
                Ev::Deliver { to, from, bytes } => {
                    self.trace.update(&[1]);
                    self.trace.update(&at.to_be_bytes());
                    self.trace.update(&(to as u64).to_be_bytes());
                    self.trace.update(Hash::of(&bytes).as_bytes());
                    let local = at + self.nodes[to].offset;
                    let from_addr = self.nodes[from].key.address();
                    let Some(r) = self.nodes[to].replica.as_mut() else {
                        continue;
                    };
                    match r.handle_message(from_addr, &bytes, local) {
                        Ok(effects) => self.effects(to, effects),
                        Err(_) => self.rejected += 1,
                    }
                }
                Ev::Wake { node, at: wake } => {
                    if self.nodes[node].wake != wake {
                        continue;
                    }
                    self.trace.update(&[2]);
                    self.trace.update(&at.to_be_bytes());
                    let local = at + self.nodes[node].offset;
                    let Some(r) = self.nodes[node].replica.as_mut() else {
                        continue;
                    };
                    match r.tick(local) {
                        Ok(effects) => self.effects(node, effects),
                        Err(e) => self.fail(format!("node {node} tick failed: {e}")),
                    }
                }
                Ev::Tx(node) => {
                    let tx = format!(
                        "k{}={}",
                        self.rng.random_range(0..20u32),
                        self.rng.random_range(0..1000u32)
                    )
                    .into_bytes();
                    let local = at + self.nodes[node].offset;
                    let Some(r) = self.nodes[node].replica.as_mut() else {
                        continue;
                    };
                    if let Ok(effects) = r.submit_tx(tx, local) {
                        self.effects(node, effects);
                    }
                }
                Ev::Crash(node) => {
                    self.trace.update(&[3]);
                    if let Some(r) = self.nodes[node].replica.take() {
                        let (store, _app) = r.into_parts();
                        self.nodes[node].crashed_store = Some(store.crash());
                    }
                }
                Ev::Restart(node) => {
                    self.trace.update(&[4]);
                    if let Some(store) = self.nodes[node].crashed_store.take() {
                        self.open(node, store);
                    }
                }
            }
        }
        self.finish()
    }

    fn open(&mut self, i: usize, store: MemStore) {
        let local = self.now + self.nodes[i].offset;
        let key = self.nodes[i].key.clone();
        match Replica::open(
            self.genesis.clone(),
            self.cfg.clone(),
            Some(key),
            store,
            KvApp::new(),
            local,
        ) {
            Ok((r, effects)) => {
                self.nodes[i].replica = Some(r);
                self.effects(i, effects);
            }
            Err(e) => self.fail(format!("node {i} failed to open: {e}")),
        }
    }

    fn honest(&self, i: usize) -> bool {
        self.nodes[i].byz.is_none()
    }

    fn max_honest_height(&self) -> u64 {
        (0..self.nodes.len())
            .filter(|i| self.honest(*i))
            .filter_map(|i| self.nodes[i].replica.as_ref().map(|r| r.height()))
            .max()
            .unwrap_or(0)
    }

    fn send(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        for at in self.links.arrivals(&mut self.rng, self.now, from, to) {
            self.push(
                at,
                Ev::Deliver {
                    to,
                    from,
                    bytes: bytes.clone(),
                },
            );
        }
    }

    fn broadcast(&mut self, from: usize, bytes: Vec<u8>) {
        for to in 0..self.nodes.len() {
            self.send(from, to, bytes.clone());
        }
    }

    fn effects(&mut self, i: usize, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Broadcast(b) => {
                    if self.honest(i) {
                        self.check_own_vote(i, &b);
                        self.broadcast(i, b);
                    } else {
                        self.byz_broadcast(i, b);
                    }
                }
                Effect::SendTo(peer, b) => {
                    if let Some(to) = self.nodes.iter().position(|n| n.key.address() == peer) {
                        if self.nodes[i].byz != Some(Byz::Silent) {
                            self.send(i, to, b);
                        }
                    }
                }
                Effect::RequestSync { peer, bytes, .. } => {
                    if let Some(to) = self.nodes.iter().position(|n| n.key.address() == peer) {
                        self.send(i, to, bytes);
                    }
                }
                Effect::Committed {
                    block,
                    cert,
                    app_hash,
                } => self.on_commit(i, &block, &cert, app_hash),
                Effect::Evidence(ev) => {
                    self.evidence += 1;
                    if ev.verify(&self.genesis.chain_id).is_err() {
                        self.fail(format!("node {i} emitted invalid evidence"));
                    }
                    let off = ev.offender();
                    if let Some(j) = self.nodes.iter().position(|n| n.key.address() == off) {
                        if self.honest(j) {
                            self.fail(format!("node {i} accused honest node {j}"));
                        }
                    }
                }
                Effect::NextWakeup(at) => {
                    self.nodes[i].wake = at;
                    let global = at.saturating_sub(self.nodes[i].offset).max(self.now + 1);
                    self.push(global, Ev::Wake { node: i, at });
                }
            }
        }
    }

    fn check_own_vote(&mut self, i: usize, bytes: &[u8]) {
        if let Ok(Message::Vote(v)) = wire::decode(bytes) {
            let m = &v.message;
            let key = (
                i,
                m.height.0,
                m.round.as_u32().unwrap_or(u32::MAX),
                m.vote_type as u8,
            );
            let val = match m.value {
                NilOrVal::Nil => None,
                NilOrVal::Val(id) => Some(id.0),
            };
            if let Some(prev) = self.votes.insert(key, val) {
                if prev != val {
                    self.fail(format!(
                        "honest node {i} signed conflicting votes at height {} round {:?}",
                        m.height.0, m.round
                    ));
                }
            }
        }
    }

    fn on_commit(
        &mut self,
        i: usize,
        block: &Block,
        cert: &agora_consensus::Certificate,
        app_hash: Hash,
    ) {
        let h = block.header.height;
        self.trace.update(&[5]);
        self.trace.update(&(i as u64).to_be_bytes());
        self.trace.update(block.hash().as_bytes());
        if !self.honest(i) {
            return;
        }
        match self.decided.get(&h) {
            Some((bh, ah)) => {
                if *bh != block.hash() {
                    self.fail(format!(
                        "agreement violated at height {h}: node {i} committed a different block"
                    ));
                } else if *ah != app_hash {
                    self.fail(format!("app hash diverged at height {h} on node {i}"));
                }
            }
            None => {
                if cert.block_hash != block.hash() || cert.height != h {
                    self.fail(format!(
                        "certificate for height {h} does not match its block"
                    ));
                } else if let Err(e) = cert.verify(&self.genesis.validators, &self.genesis.chain_id)
                {
                    self.fail(format!("invalid certificate at height {h}: {e}"));
                }
                let app = KvApp::new();
                if !block.txs_match() || !block.txs.iter().all(|t| app.check_tx(t).is_ok()) {
                    self.fail(format!("validity violated at height {h}"));
                }
                if let Some((prev, _)) = h.checked_sub(1).and_then(|p| self.decided.get(&p)) {
                    if block.header.prev_hash != *prev {
                        self.fail(format!("block {h} does not link to block {}", h - 1));
                    }
                }
                self.decided.insert(h, (block.hash(), app_hash));
            }
        }
    }

    fn byz_broadcast(&mut self, i: usize, bytes: Vec<u8>) {
        let Some(byz) = self.nodes[i].byz else {
            return;
        };
        let n = self.nodes.len();
        let key = self.nodes[i].key.clone();
        let chain = self.genesis.chain_id;
        let plan = forge::sends(
            byz,
            &key,
            &chain,
            bytes,
            n,
            &mut self.nodes[i].sent,
            &mut self.rng,
        );
        for (target, b) in plan {
            match target {
                Target::All => self.broadcast(i, b),
                Target::To(to) => self.send(i, to, b),
            }
        }
    }

    fn finish(mut self) -> SeedOutcome {
        if self.failure.is_none() {
            let base = self.heights_at_heal.unwrap_or(0);
            for i in 0..self.nodes.len() {
                if !self.honest(i) {
                    continue;
                }
                let Some(r) = self.nodes[i].replica.as_ref() else {
                    self.fail(format!("node {i} is down at the end"));
                    break;
                };
                if let Some(h) = r.halted() {
                    self.fail(format!("node {i} halted: {h}"));
                    break;
                }
                if r.height() < base + 2 {
                    let hgt = r.height();
                    let states: Vec<String> = self
                        .nodes
                        .iter()
                        .map(|n| match &n.replica {
                            Some(r) => r.debug_state(),
                            None => "down".into(),
                        })
                        .collect();
                    self.fail(format!(
                        "liveness: node {i} at height {hgt}, expected >= {} after heal [{}; nodes {}]",
                        base + 2,
                        self.mix,
                        states.join(" | ")
                    ));
                    break;
                }
                let observed: Vec<_> = r
                    .observed_equivocations()
                    .difference(r.reported_equivocations())
                    .cloned()
                    .collect();
                if let Some((a, h)) = observed.first() {
                    self.fail(format!(
                        "node {i} saw {} equivocate at height {h} but raised no evidence",
                        a.short()
                    ));
                    break;
                }
            }
        }
        let mut sig_checks = 0;
        let mut observed = 0;
        for n in &self.nodes {
            if let Some(r) = &n.replica {
                sig_checks += r.stats().signatures_verified;
                if n.byz.is_none() {
                    observed += r.observed_equivocations().len() as u64;
                }
            }
        }
        let heights = self.decided.len() as u64;
        let _ = self.seed;
        SeedOutcome {
            seed: self.seed,
            failure: self.failure,
            trace: Hash(*self.trace.finalize().as_bytes()),
            heights,
            messages: self.links.messages,
            signature_checks: sig_checks,
            mix: self.mix,
            evidence: self.evidence,
            rejected: self.rejected,
            equivocations_observed: observed,
        }
    }
}

#[allow(dead_code)]
fn _addr(_: Address) {}

fn ev_node(ev: &Ev) -> usize {
    match ev {
        Ev::Deliver { to, .. } => *to,
        Ev::Wake { node, .. } | Ev::Tx(node) | Ev::Crash(node) | Ev::Restart(node) => *node,
    }
}
