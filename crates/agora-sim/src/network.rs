//! The whole-node simulator. One seed = one run of N full nodes — the real consensus replica,
//! the real market application (`agora_node::app::MarketApp`) and the real agent decisions
//! (`agora_node::agent::AgentCore`) — on a simulated network and clock, with a simulated executor
//! (a deterministic function of module and input that takes a configurable time).
//!
//! Operators are validators whose agents audit; coprocessors are full nodes without a vote whose
//! agents stake, bid, execute and commit; clients submit jobs and transfers through any node.
//! The seed picks the fault mix: crashes with restart from the store, a partition, message loss,
//! duplication, delay and reordering, bounded clock skew, byzantine operators (equivocation,
//! double votes, withheld votes, replays, garbage), byzantine coprocessors (wrong results,
//! colluding wrong results, never delivering, spamming bids) and byzantine clients (reused
//! nonces, junk transactions, blobs nobody can fetch).
//!
//! Checked after every block, failing with the seed: identical block and app hash at each
//! height on every honest node, supply conservation; and at the end: every transaction an honest
//! node admitted reached a block (or its `(signer, nonce)` slot was used by another), every job
//! is final once the network has healed for long enough, the result accepted is the correct one
//! wherever honest coprocessors were the majority of the committed results, and no honest
//! coprocessor was slashed for a wrong result where honest results were the majority, nor for a
//! timeout of a slot awarded after the heal on a node that never crashed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_consensus::{Config, Effect, MemStore, Replica};
use agora_crypto::Keypair;
use agora_market::{
    AuctionSpec, BlockResult, Genesis, GenesisAccount, GenesisOperator, Job, JobSpec, JobState,
    Market, Outcome, Params, SlotStatus, TxBuilder, TxKind,
};
use agora_node::agent::{Action, AgentConfig, AgentCore, Decision, RunEnd};
use agora_node::app::{AppStore, MarketApp};
use agora_node::config::CoprocessorSection;
use agora_types::{Address, Amount, Hash, JobId, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::forge::{self, Byz, Target, BEHAVIOURS};
use crate::links::Links;
use crate::run_seeds;

/// What to run.
#[derive(Clone, Debug)]
pub struct NetworkSimOptions {
    /// Operators (validators).
    pub nodes: usize,
    /// Byzantine operators at most (their total power is kept below 1/3); with faults on, a
    /// quarter of the seeds have none.
    pub byzantine: usize,
    /// Coprocessor nodes; with faults on, a minority of them are byzantine.
    pub coprocessors: usize,
    pub clients: usize,
    pub seeds: u64,
    pub from: u64,
    /// Faults before the heal (ms of simulated time).
    pub chaos_ms: u64,
    /// After the heal: every job must be final, every admitted tx in a block, by then.
    pub settle_ms: u64,
    /// Run each seed twice and compare trace hashes.
    pub check_determinism: bool,
    /// Worker threads (seeds are independent; results do not depend on this).
    pub threads: usize,
    /// Allow faults (false: a clean network, honest everyone).
    pub faults: bool,
}

impl Default for NetworkSimOptions {
    fn default() -> Self {
        NetworkSimOptions {
            nodes: 4,
            byzantine: 1,
            coprocessors: 5,
            clients: 2,
            seeds: 100,
            from: 0,
            chaos_ms: 4_000,
            settle_ms: 30_000,
            check_determinism: true,
            threads: 1,
            faults: true,
        }
    }
}

/// Result of one seed.
#[derive(Clone, Debug)]
pub struct NetworkSeedOutcome {
    pub seed: u64,
    pub failure: Option<String>,
    pub trace: Hash,
    pub heights: u64,
    pub jobs: u64,
    pub settled: u64,
    /// Settled jobs whose proof (agora-node `proof`) was built from a node's store and verified
    /// against the genesis (a job settled in the last block has no certifying block yet).
    pub proven: u64,
    pub refunded: u64,
    pub failed: u64,
    pub txs: u64,
    pub messages: u64,
    /// The faults of this seed, `+`-joined (`clean` for none).
    pub mix: String,
}

impl NetworkSeedOutcome {
    fn broken(seed: u64, why: String) -> NetworkSeedOutcome {
        NetworkSeedOutcome {
            seed,
            failure: Some(why),
            trace: Hash::ZERO,
            heights: 0,
            jobs: 0,
            settled: 0,
            proven: 0,
            refunded: 0,
            failed: 0,
            txs: 0,
            messages: 0,
            mix: String::new(),
        }
    }
}

/// Aggregate of many seeds.
#[derive(Clone, Debug, Default)]
pub struct NetworkSummary {
    pub nodes: usize,
    pub byzantine: usize,
    pub coprocessors: usize,
    pub runs: u64,
    pub failures: Vec<(u64, String)>,
    pub heights: u64,
    pub jobs: u64,
    pub settled: u64,
    pub proven: u64,
    pub refunded: u64,
    pub failed: u64,
    pub txs: u64,
    pub messages: u64,
    /// Seeds per fault (a seed with three faults counts for each).
    pub faults: BTreeMap<String, u64>,
    /// One hash over every seed's trace, in seed order: two builds that behave alike on these
    /// seeds (every message, block and app hash) print the same one, so a refactor can be
    /// checked against the build before it.
    pub trace: Hash,
    pub wall_seconds: f64,
}

impl NetworkSummary {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for NetworkSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (seed, why) in &self.failures {
            writeln!(
                f,
                "FAIL seed {seed}: {why}\n  replay: agora sim network --nodes {} --byzantine {} --coprocessors {} --seeds 1 --from {seed}",
                self.nodes, self.byzantine, self.coprocessors
            )?;
        }
        writeln!(
            f,
            "network sim: {} seeds, {} failed; {} operators ({} byzantine), {} coprocessors; {} heights, {} jobs ({} settled, {} of them proven, {} refunded, {} failed), {} txs in blocks, {:.0} msgs/height; trace {}; {:.1}s wall",
            self.runs,
            self.failures.len(),
            self.nodes,
            self.byzantine,
            self.coprocessors,
            self.heights,
            self.jobs,
            self.settled,
            self.proven,
            self.refunded,
            self.failed,
            self.txs,
            self.messages as f64 / self.heights.max(1) as f64,
            self.trace.short(),
            self.wall_seconds
        )?;
        for (m, n) in &self.faults {
            writeln!(f, "  fault {m}: {n} seeds")?;
        }
        Ok(())
    }
}

/// Run `opts.seeds` seeds from `opts.from`.
pub fn run_network_seeds(opts: &NetworkSimOptions) -> NetworkSummary {
    run_network_seeds_with(opts, &|_| {})
}

/// [`run_network_seeds`], calling `progress` after every seed (from the worker threads).
pub fn run_network_seeds_with(
    opts: &NetworkSimOptions,
    progress: &(dyn Fn(&NetworkSeedOutcome) + Sync),
) -> NetworkSummary {
    let start = std::time::Instant::now();
    let outcomes = run_seeds(
        opts.from,
        opts.seeds,
        opts.threads,
        &|seed| {
            let o = run_network_seed(opts, seed);
            progress(&o);
            o
        },
        &|seed| NetworkSeedOutcome::broken(seed, "simulation thread panicked".into()),
        |o| o.seed,
    );
    let mut sum = NetworkSummary {
        nodes: opts.nodes,
        byzantine: opts.byzantine,
        coprocessors: opts.coprocessors,
        ..NetworkSummary::default()
    };
    let mut trace = blake3::Hasher::new_derive_key("agora/v1/sim-network-traces");
    for o in outcomes {
        trace.update(&o.seed.to_be_bytes());
        trace.update(o.trace.as_bytes());
        sum.runs += 1;
        sum.heights += o.heights;
        sum.jobs += o.jobs;
        sum.settled += o.settled;
        sum.proven += o.proven;
        sum.refunded += o.refunded;
        sum.failed += o.failed;
        sum.txs += o.txs;
        sum.messages += o.messages;
        for fault in o.mix.split('+').filter(|m| !m.is_empty()) {
            *sum.faults.entry(fault.to_owned()).or_default() += 1;
        }
        if let Some(f) = o.failure {
            sum.failures.push((o.seed, f));
        }
    }
    sum.trace = Hash(*trace.finalize().as_bytes());
    sum.wall_seconds = start.elapsed().as_secs_f64();
    sum
}

/// Run one seed (twice if determinism is checked). A panic anywhere in the node is a failure
/// of the seed, not of the run.
pub fn run_network_seed(opts: &NetworkSimOptions, seed: u64) -> NetworkSeedOutcome {
    let once = || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Sim::new(opts, seed).run()))
            .unwrap_or_else(|p| {
                let why = p
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                NetworkSeedOutcome::broken(seed, format!("a node panicked: {why}"))
            })
    };
    // Every simulated node checks the same signatures: one check per triple is enough, and the
    // second run of a seed takes the first one's signatures and proofs (`agora_crypto::memo`).
    agora_crypto::memo::with_memo(|| {
        let mut a = once();
        if opts.check_determinism && a.failure.is_none() {
            let b = once();
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

/// The market's snapshot in memory; what is written survives a crash (the replica's own store
/// models lost unflushed writes; the market is re-derived from it by replay).
#[derive(Clone, Default)]
struct MemAppStore(
    Arc<Mutex<Option<Vec<u8>>>>,
    Arc<Mutex<BTreeMap<u64, BlockResult>>>,
);

impl MemAppStore {
    /// The stored result of block `height` (the proof builder's input, as the node's history).
    fn result(&self, height: u64) -> Option<BlockResult> {
        self.1.lock().ok()?.get(&height).cloned()
    }
}

impl AppStore for MemAppStore {
    fn snapshot(&self) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self
            .0
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .clone())
    }
    fn write_block(&self, result: &BlockResult, snapshot: Option<Vec<u8>>) -> anyhow::Result<()> {
        self.1
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(result.height.0, result.clone());
        if let Some(s) = snapshot {
            *self.0.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = Some(s);
        }
        Ok(())
    }
    fn write_snapshot(&self, snapshot: Vec<u8>) -> anyhow::Result<()> {
        *self.0.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = Some(snapshot);
        Ok(())
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}

type NodeReplica = Replica<MemStore, MarketApp<MemAppStore>>;

/// A byzantine coprocessor's behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CopFault {
    /// Commits a wrong result of its own.
    Wrong,
    /// Commits the wrong result every colluder commits.
    Collude,
    /// Wins auctions and never commits.
    NeverDeliver,
    /// Bids on every open auction every block with junk and stale nonces too.
    SpamBids,
}

/// A byzantine client's behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientFault {
    /// Signs a second, different transaction for a nonce it already used.
    ReuseNonce,
    /// Sends bytes that are no transaction.
    Junk,
    /// Submits jobs whose module nobody has.
    WithholdBlobs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Operator,
    Coprocessor,
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
    Client(usize),
    Fetched {
        node: usize,
        epoch: u64,
        job: JobId,
        ok: bool,
    },
    Ran {
        node: usize,
        epoch: u64,
        job: JobId,
        audit: bool,
        end: RunEnd,
    },
}

struct Node {
    key: Keypair,
    role: Role,
    byz: Option<Byz>,
    cop_fault: Option<CopFault>,
    replica: Option<NodeReplica>,
    crashed: Option<MemStore>,
    app_store: MemAppStore,
    agent: Option<AgentCore>,
    builder: TxBuilder,
    /// The height the agent last stepped at.
    agent_height: u64,
    /// Bumped at every crash: executions and fetches of a dead process never report.
    epoch: u64,
    crashed_ever: bool,
    offset: u64,
    wake: u64,
    sent: Vec<Vec<u8>>,
    /// Blobs on this node's disk (they survive a crash).
    blobs: BTreeSet<Hash>,
}

struct Client {
    builder: TxBuilder,
    nonce: u64,
    fault: Option<ClientFault>,
    /// The nonce of the last transaction admitted, for a byzantine reuse.
    last: Option<u64>,
    jobs: u64,
}

/// An admitted transaction: where, and its `(signer, nonce)`.
struct Admitted {
    signer: Address,
    nonce: u64,
    honest: bool,
    /// The node that admitted it, and when.
    via: usize,
    at: u64,
}

struct Sim {
    seed: u64,
    rng: ChaCha8Rng,
    now: u64,
    seq: u64,
    events: BTreeMap<(u64, u64), Ev>,
    nodes: Vec<Node>,
    clients: Vec<Client>,
    genesis: Genesis,
    cgen: agora_consensus::Genesis,
    cfg: Config,
    links: Links,
    end_at: u64,
    exec_ms: (u64, u64),
    trace: blake3::Hasher,
    /// Height → (block hash, app hash), from the first honest node to commit it.
    decided: BTreeMap<u64, (Hash, Hash)>,
    /// Height → when it was first committed (simulated ms).
    decided_at: BTreeMap<u64, u64>,
    /// Hashes of every transaction in a committed block.
    included: BTreeSet<Hash>,
    /// `(signer, nonce)` of every transaction in a committed block.
    slots_used: BTreeSet<(Address, u64)>,
    admitted: BTreeMap<Hash, Admitted>,
    txs: u64,
    failure: Option<String>,
    mix: Vec<String>,
    /// Events left before the run is declared runaway.
    budget: u64,
}

const T0: u64 = 1_700_000_000_000;
const UNIT: u128 = 1_000_000;

impl Sim {
    fn new(opts: &NetworkSimOptions, seed: u64) -> Sim {
        Sim::build(opts, seed, false)
    }

    /// The network of `opts` and `seed`. For a `rig`, operators have equal stakes (any one of
    /// four can be lost) and no workload is scheduled: the test drives it.
    fn build(opts: &NetworkSimOptions, seed: u64, rig: bool) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6e65_7477_6f72_6b00);
        let n = opts.nodes.max(1);
        let c = opts.coprocessors;
        let faults = opts.faults;
        // Up to `byzantine` byzantine operators: a quarter of the seeds have none, so that an
        // honest operator can crash instead.
        let k = if faults && rng.random_bool(0.75) {
            opts.byzantine.min((n - 1) / 3)
        } else {
            0
        };
        let key = |i: u64| Keypair::for_test(seed.wrapping_mul(10_000).wrapping_add(i));
        let op_keys: Vec<Keypair> = (0..n as u64).map(key).collect();
        let cop_keys: Vec<Keypair> = (0..c as u64).map(|i| key(1_000 + i)).collect();
        let client_keys: Vec<Keypair> = (0..opts.clients as u64).map(|i| key(2_000 + i)).collect();
        // Byzantine operators are the first `k`; stakes keep their power under 1/3.
        let mut stakes: Vec<u128> = (0..n)
            .map(|i| {
                if i < k {
                    UNIT
                } else {
                    UNIT * rng.random_range(1..=3u128)
                }
            })
            .collect();
        if rig || 3 * UNIT * k as u128 >= stakes.iter().sum::<u128>() {
            stakes = vec![UNIT; n];
        }
        let params = Params {
            audit_window_ms: 5_000,
            ..Params::default()
        };
        let genesis = Genesis {
            chain_name: format!("agora-sim-{seed}"),
            genesis_time: Timestamp(T0),
            operators: op_keys
                .iter()
                .zip(&stakes)
                .map(|(k, s)| GenesisOperator {
                    address: k.address(),
                    stake: Amount(*s),
                })
                .collect(),
            accounts: cop_keys
                .iter()
                .map(|k| (k.address(), 10 * UNIT))
                .chain(op_keys.iter().map(|k| (k.address(), UNIT)))
                .chain(client_keys.iter().map(|k| (k.address(), 1_000 * UNIT)))
                .map(|(address, balance)| GenesisAccount {
                    address,
                    balance: Amount(balance),
                })
                .collect(),
            params,
        };
        let cgen =
            agora_node::genesis::consensus_genesis(&genesis).expect("simulated genesis is valid");
        let chain = genesis.hash();
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
        let mut mix = Vec::new();
        let mut nodes: Vec<Node> = Vec::new();
        for (i, key) in op_keys.into_iter().enumerate() {
            let byz = (i < k).then(|| BEHAVIOURS[rng.random_range(0..BEHAVIOURS.len())]);
            if let Some(b) = byz {
                mix.push(format!("operator-{b:?}").to_lowercase());
            }
            nodes.push(Node::new(key, Role::Operator, byz, None, chain));
        }
        // Byzantine coprocessors: a minority of them, never all.
        let cop_faults = [
            CopFault::Wrong,
            CopFault::Collude,
            CopFault::NeverDeliver,
            CopFault::SpamBids,
        ];
        let bad_cops = if faults && c >= 3 {
            rng.random_range(0..=(c - 1) / 2)
        } else {
            0
        };
        // Colluders come in pairs so that they can outvote an honest replica.
        let collude = faults && bad_cops >= 2 && rng.random_bool(0.3);
        for (i, key) in cop_keys.into_iter().enumerate() {
            let fault = (i < bad_cops).then(|| {
                if collude && i < 2 {
                    CopFault::Collude
                } else {
                    cop_faults[[0, 2, 3][rng.random_range(0..3)]]
                }
            });
            if let Some(f) = fault {
                mix.push(format!("coprocessor-{f:?}").to_lowercase());
            }
            nodes.push(Node::new(key, Role::Coprocessor, None, fault, chain));
        }
        mix.dedup();
        let client_faults = [
            ClientFault::ReuseNonce,
            ClientFault::Junk,
            ClientFault::WithholdBlobs,
        ];
        let clients: Vec<Client> = client_keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                // The first client is always honest.
                let fault = (faults && i > 0 && rng.random_bool(0.5))
                    .then(|| client_faults[rng.random_range(0..client_faults.len())]);
                if let Some(f) = fault {
                    mix.push(format!("client-{f:?}").to_lowercase());
                }
                Client {
                    builder: TxBuilder::new(key, chain),
                    nonce: 0,
                    fault,
                    last: None,
                    jobs: 0,
                }
            })
            .collect();
        let total = nodes.len();
        for node in nodes.iter_mut() {
            node.offset = if faults { rng.random_range(0..300) } else { 0 };
        }
        if faults && nodes.iter().any(|n| n.offset > 0) {
            mix.push("skew".into());
        }
        let latency = (0..total)
            .map(|_| (0..total).map(|_| rng.random_range(2..40)).collect())
            .collect();
        let drop_p = if faults && rng.random_bool(0.5) {
            rng.random_range(0.0..0.15)
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
        let partition = if faults && rng.random_bool(0.3) {
            let side: BTreeSet<usize> = (0..total).filter(|_| rng.random_bool(0.5)).collect();
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
        if jitter > 0 {
            mix.push("reorder".into());
        }
        if partition.is_some() {
            mix.push("partition".into());
        }
        let exec_lo = rng.random_range(20..300);
        let mut sim = Sim {
            seed,
            rng,
            now: T0,
            seq: 0,
            events: BTreeMap::new(),
            nodes,
            clients,
            genesis,
            cgen,
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
            end_at: heal_at + opts.settle_ms,
            exec_ms: (exec_lo, exec_lo * 4),
            trace: blake3::Hasher::new(),
            decided: BTreeMap::new(),
            decided_at: BTreeMap::new(),
            included: BTreeSet::new(),
            slots_used: BTreeSet::new(),
            admitted: BTreeMap::new(),
            txs: 0,
            failure: None,
            mix,
            budget: 5_000_000,
        };
        // Crash and restart: one honest operator while the byzantine ones leave room for one
        // more fault (a quorum stays), and any coprocessor.
        if faults && k < (n - 1) / 3 && sim.rng.random_bool(0.4) {
            let victim = sim.rng.random_range(k..n);
            sim.crash_later(victim, opts.chaos_ms);
            sim.mix.push("crash-operator".into());
        }
        if faults && c > 0 && sim.rng.random_bool(0.4) {
            let victim = n + sim.rng.random_range(0..c);
            sim.crash_later(victim, opts.chaos_ms);
            sim.mix.push("crash-coprocessor".into());
        }
        // The workload: jobs and transfers until a while before the end, so that the last
        // ones can still finish.
        let stop = sim.end_at.saturating_sub(opts.settle_ms * 2 / 3);
        for ci in (0..sim.clients.len()).filter(|_| !rig) {
            let mut t = T0 + sim.rng.random_range(500..1500);
            while t < stop {
                sim.push(t, Ev::Client(ci));
                t += sim.rng.random_range(300..1500);
            }
        }
        if sim.mix.is_empty() {
            sim.mix.push("clean".into());
        }
        sim
    }

    fn crash_later(&mut self, victim: usize, chaos_ms: u64) {
        let at = T0 + self.rng.random_range(0..chaos_ms.max(1));
        let back = (at + self.rng.random_range(100..2000)).min(self.links.heal_at);
        self.push(at, Ev::Crash(victim));
        self.push(back.max(at + 1), Ev::Restart(victim));
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

    fn honest(&self, i: usize) -> bool {
        self.nodes[i].byz.is_none() && self.nodes[i].cop_fault.is_none()
    }

    fn run(mut self) -> NetworkSeedOutcome {
        self.start();
        self.run_until(self.end_at);
        self.finish()
    }

    fn start(&mut self) {
        for i in 0..self.nodes.len() {
            self.open(i, MemStore::new());
        }
    }

    /// Process every event up to `until` (simulated ms), or until a check fails.
    fn run_until(&mut self, until: u64) {
        while let Some(entry) = self.events.first_entry() {
            if entry.key().0 > until || self.failure.is_some() {
                break;
            }
            let ((at, _), ev) = entry.remove_entry();
            if self.budget == 0 {
                self.fail("event budget exhausted".into());
                break;
            }
            self.budget -= 1;
            self.now = at;
            let touched = match ev {
                Ev::Deliver { to, from, bytes } => {
                    self.trace.update(&[1]);
                    self.trace.update(&at.to_be_bytes());
                    self.trace.update(&(to as u64).to_be_bytes());
                    self.trace.update(Hash::of(&bytes).as_bytes());
                    let local = self.local(to);
                    let from_addr = self.nodes[from].key.address();
                    if let Some(r) = self.nodes[to].replica.as_mut() {
                        if let Ok(effects) = r.handle_message(from_addr, &bytes, local) {
                            self.effects(to, effects);
                        }
                    }
                    Some(to)
                }
                Ev::Wake { node, at: wake } => {
                    if self.nodes[node].wake != wake {
                        continue;
                    }
                    self.trace.update(&[2]);
                    self.trace.update(&at.to_be_bytes());
                    let local = self.local(node);
                    if let Some(r) = self.nodes[node].replica.as_mut() {
                        match r.tick(local) {
                            Ok(effects) => self.effects(node, effects),
                            Err(e) => {
                                if self.honest(node) {
                                    self.fail(format!("node {node} tick failed: {e}"));
                                }
                            }
                        }
                    }
                    Some(node)
                }
                Ev::Crash(node) => {
                    self.trace.update(&[3]);
                    let nd = &mut self.nodes[node];
                    if let Some(r) = nd.replica.take() {
                        let (store, _app) = r.into_parts();
                        nd.crashed = Some(store.crash());
                        nd.agent = None;
                        nd.epoch += 1;
                        nd.crashed_ever = true;
                    }
                    None
                }
                Ev::Restart(node) => {
                    self.trace.update(&[4]);
                    if let Some(store) = self.nodes[node].crashed.take() {
                        self.open(node, store);
                    }
                    Some(node)
                }
                Ev::Client(c) => {
                    self.trace.update(&[6]);
                    self.client_step(c);
                    None
                }
                Ev::Fetched {
                    node,
                    epoch,
                    job,
                    ok,
                } => {
                    if self.nodes[node].epoch != epoch {
                        continue;
                    }
                    self.trace.update(&[7]);
                    let again = self.nodes[node]
                        .agent
                        .as_mut()
                        .is_some_and(|a| a.fetched(job, ok));
                    if again {
                        self.agent_step(node, true);
                    }
                    Some(node)
                }
                Ev::Ran {
                    node,
                    epoch,
                    job,
                    audit,
                    end,
                } => {
                    if self.nodes[node].epoch != epoch {
                        continue;
                    }
                    self.trace.update(&[8]);
                    let tx = self.nodes[node]
                        .agent
                        .as_mut()
                        .and_then(|a| a.finished(job, audit, end));
                    if let Some((action, kind)) = tx {
                        self.agent_submit(node, action, kind);
                    }
                    Some(node)
                }
            };
            if let Some(i) = touched {
                self.agent_step(i, false);
            }
        }
        self.now = self.now.max(until.min(self.end_at));
    }

    fn local(&self, i: usize) -> u64 {
        self.now + self.nodes[i].offset
    }

    fn open(&mut self, i: usize, store: MemStore) {
        let local = self.local(i);
        let nd = &self.nodes[i];
        let app = match MarketApp::open_in(&self.genesis, nd.app_store.clone()) {
            Ok(app) => app,
            Err(e) => return self.fail(format!("node {i}: market does not open: {e:#}")),
        };
        let key = (nd.role == Role::Operator).then(|| nd.key.clone());
        match Replica::open(self.cgen.clone(), self.cfg.clone(), key, store, app, local) {
            Ok((r, effects)) => {
                let nd = &mut self.nodes[i];
                nd.replica = Some(r);
                let section = CoprocessorSection {
                    stake: 20_000,
                    capacity: 3,
                    ..CoprocessorSection::default()
                };
                let honest_agent = nd.byz.is_none();
                nd.agent = honest_agent.then(|| {
                    AgentCore::new(
                        AgentConfig {
                            coprocessor: nd.role == Role::Coprocessor,
                            operator: nd.role == Role::Operator,
                            section,
                        },
                        nd.key.address(),
                        &nd.key.seed(),
                        local,
                    )
                });
                nd.agent_height = 0;
                self.effects(i, effects);
            }
            Err(e) => self.fail(format!("node {i} failed to open: {e}")),
        }
    }

    /// Step node `i`'s agent when its replica committed a block since the last step (or when
    /// `force`d: a fetch finished).
    fn agent_step(&mut self, i: usize, force: bool) {
        let Some(r) = self.nodes[i].replica.as_ref() else {
            return;
        };
        let h = r.height();
        let market = r.app().shared();
        if (!force && h == self.nodes[i].agent_height) || self.nodes[i].agent.is_none() {
            return;
        }
        let local = self.local(i);
        let nd = &mut self.nodes[i];
        nd.agent_height = h;
        let decisions = {
            let m = market
                .read()
                .expect("the simulator holds no lock across a panic");
            let blobs = &nd.blobs;
            let have = |job: &Job| {
                blobs.contains(&job.spec.module_hash) && blobs.contains(&job.spec.input_hash)
            };
            let agent = nd.agent.as_mut().expect("checked above");
            let mut d = agent.step(&m, h, local, &have);
            if nd.cop_fault == Some(CopFault::SpamBids) {
                d.extend(spam_bids(&m));
            }
            d
        };
        for d in decisions {
            match d {
                Decision::Submit(action, kind) => {
                    let may = self.nodes[i].agent.as_ref().is_some_and(|a| a.may_submit());
                    if may {
                        self.agent_submit(i, action, kind);
                    }
                }
                Decision::Fetch(job) => self.fetch(i, &job),
                Decision::Run(job, audit) => self.execute(i, &job, audit),
            }
        }
    }

    fn agent_submit(&mut self, i: usize, action: Action, kind: TxKind) {
        let Some(agent) = self.nodes[i].agent.as_ref() else {
            return;
        };
        let nonce = agent.next_nonce();
        let bytes = self.nodes[i].builder.bytes(nonce, kind);
        let local = self.local(i);
        let honest = self.honest(i);
        let Some(r) = self.nodes[i].replica.as_mut() else {
            return;
        };
        let result = r.submit_tx(bytes.clone(), local);
        let signer = self.nodes[i].key.address();
        let outcome = match result {
            Ok(effects) => {
                self.admit(i, &bytes, signer, nonce, honest);
                self.effects(i, effects);
                Ok(())
            }
            Err(e) => Err(e),
        };
        if let Some(agent) = self.nodes[i].agent.as_mut() {
            agent.submitted(action, &outcome);
        }
    }

    fn admit(&mut self, via: usize, bytes: &[u8], signer: Address, nonce: u64, honest: bool) {
        let at = self.now;
        self.admitted.insert(
            Hash::of(bytes),
            Admitted {
                signer,
                nonce,
                honest,
                via,
                at,
            },
        );
    }

    /// Fetch a job's blobs: after a transfer time, from any node that holds them and is up and
    /// reachable now.
    fn fetch(&mut self, i: usize, job: &Job) {
        let wanted = [job.spec.module_hash, job.spec.input_hash];
        let ok = wanted.iter().all(|h| self.reachable_holder(i, h));
        if ok {
            self.nodes[i].blobs.extend(wanted);
        }
        let at = self.now + self.rng.random_range(5..80);
        let epoch = self.nodes[i].epoch;
        self.push(
            at,
            Ev::Fetched {
                node: i,
                epoch,
                job: job.id,
                ok,
            },
        );
    }

    fn reachable_holder(&self, i: usize, blob: &Hash) -> bool {
        (0..self.nodes.len()).any(|j| {
            self.nodes[j].blobs.contains(blob)
                && (j == i || (self.nodes[j].replica.is_some() && !self.links.cut(self.now, i, j)))
        })
    }

    /// The simulated executor: the result is a function of module, input and arguments; the
    /// run takes `exec_ms`. Byzantine coprocessors lie here (never in an audit they are not
    /// asked for: only operators audit).
    fn execute(&mut self, i: usize, job: &Job, audit: bool) {
        let spec = &job.spec;
        let have = [spec.module_hash, spec.input_hash]
            .iter()
            .all(|h| self.reachable_holder(i, h));
        let epoch = self.nodes[i].epoch;
        let at = self.now + self.rng.random_range(self.exec_ms.0..=self.exec_ms.1);
        let end = if !have {
            RunEnd::Retry
        } else if self.nodes[i].cop_fault == Some(CopFault::NeverDeliver) && !audit {
            RunEnd::GiveUp
        } else {
            self.nodes[i]
                .blobs
                .extend([spec.module_hash, spec.input_hash]);
            let stdout = match (self.nodes[i].cop_fault, audit) {
                (Some(CopFault::Wrong), false) => {
                    let mut b = spec.module_hash.as_bytes().to_vec();
                    b.extend_from_slice(self.nodes[i].key.address().as_bytes());
                    Hash::derive("agora/sim/wrong", &b).as_bytes().to_vec()
                }
                (Some(CopFault::Collude), false) => {
                    Hash::derive("agora/sim/collude", spec.module_hash.as_bytes())
                        .as_bytes()
                        .to_vec()
                }
                _ => correct_stdout(spec),
            };
            let fuel = sim_fuel(spec);
            let result_hash = agora_market::result_hash(Outcome::Success, 0, fuel, &stdout);
            RunEnd::Tx(Box::new(if audit {
                TxKind::Attestation(agora_market::Attestation {
                    kind: agora_market::AttestationKind::Audit,
                    job_id: job.id,
                    result_hash,
                    subject: Address::default(),
                    alive: true,
                })
            } else {
                TxKind::Result {
                    job_id: job.id,
                    result_hash,
                    fuel_used: fuel,
                    outcome: Outcome::Success,
                    output_size: stdout.len() as u64,
                }
            }))
        };
        self.push(
            at,
            Ev::Ran {
                node: i,
                epoch,
                job: job.id,
                audit,
                end,
            },
        );
    }

    /// A client acts: a job (with its blobs on the node it uses) or a transfer, through a
    /// random node that is up; a byzantine client also misbehaves.
    fn client_step(&mut self, c: usize) {
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].replica.is_some())
            .collect();
        if up.is_empty() {
            return;
        }
        let via = up[self.rng.random_range(0..up.len())];
        let fault = self.clients[c].fault;
        if fault == Some(ClientFault::Junk) && self.rng.random_bool(0.5) {
            let len = self.rng.random_range(0..300);
            let junk: Vec<u8> = (0..len).map(|_| self.rng.random()).collect();
            self.client_send(c, via, junk, None);
        }
        if fault == Some(ClientFault::ReuseNonce) && self.rng.random_bool(0.5) {
            if let Some(nonce) = self.clients[c].last {
                let to = self.nodes[self.rng.random_range(0..self.nodes.len())]
                    .key
                    .address();
                let tx = agora_market::encode_envelope(&self.clients[c].builder.transfer(
                    nonce,
                    to,
                    Amount(self.rng.random_range(1..1000)),
                ));
                self.client_send(c, via, tx, None);
            }
        }
        let nonce = self.clients[c].nonce;
        let kind = if self.rng.random_bool(0.6) {
            let spec = self.job_spec(c);
            if fault != Some(ClientFault::WithholdBlobs) {
                self.nodes[via]
                    .blobs
                    .extend([spec.module_hash, spec.input_hash]);
            }
            self.clients[c].jobs += 1;
            TxKind::SubmitJob(spec)
        } else {
            let to = self.nodes[self.rng.random_range(0..self.nodes.len())]
                .key
                .address();
            TxKind::Transfer {
                to,
                amount: Amount(self.rng.random_range(1..10_000)),
            }
        };
        let tx = self.clients[c].builder.bytes(nonce, kind);
        if self.client_send(c, via, tx, Some(nonce)) {
            self.clients[c].nonce += 1;
            self.clients[c].last = Some(nonce);
        }
    }

    /// Submit `tx` at node `via`; `true` if admitted.
    fn client_send(&mut self, c: usize, via: usize, tx: Vec<u8>, nonce: Option<u64>) -> bool {
        let local = self.local(via);
        let Some(r) = self.nodes[via].replica.as_mut() else {
            return false;
        };
        match r.submit_tx(tx.clone(), local) {
            Ok(effects) => {
                if let Some(nonce) = nonce {
                    let honest = self.clients[c].fault.is_none() && self.honest(via);
                    let signer = self.clients[c].builder.address();
                    self.admit(via, &tx, signer, nonce, honest);
                }
                self.effects(via, effects);
                true
            }
            Err(_) => false,
        }
    }

    fn job_spec(&mut self, c: usize) -> JobSpec {
        let n = self.clients[c].jobs;
        let mut id = self.clients[c].builder.address().as_bytes().to_vec();
        id.extend_from_slice(&n.to_le_bytes());
        let replicas = self.rng.random_range(1..=3u32);
        let auction = if self.rng.random_bool(0.7) {
            AuctionSpec::Dutch {
                start_price: Amount(100),
                duration_ms: self.rng.random_range(1_000..3_000),
            }
        } else {
            AuctionSpec::Sealed {
                commit_ms: self.rng.random_range(1_000..2_000),
                reveal_ms: self.rng.random_range(1_000..2_000),
            }
        };
        JobSpec {
            module_hash: Hash::derive("agora/sim/module", &id),
            input_hash: Hash::derive("agora/sim/input", &id),
            module_size: 1_000,
            input_size: 100,
            args: Vec::new(),
            fuel_limit: 1_000_000,
            memory_limit: 16 << 20,
            replicas,
            audit_bps: if replicas == 1 { 5_000 } else { 0 },
            auction,
            max_price: Amount(5_000),
            deadline_ms: self.rng.random_range(3_000..8_000),
            min_reputation_bps: 0,
        }
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
                Effect::Broadcast(b) => match self.nodes[i].byz {
                    None => self.broadcast(i, b),
                    Some(byz) => self.byz_broadcast(i, byz, b),
                },
                Effect::SendTo(peer, b) | Effect::RequestSync { peer, bytes: b, .. } => {
                    if self.nodes[i].byz == Some(Byz::Silent) {
                        continue;
                    }
                    if let Some(to) = self.nodes.iter().position(|n| n.key.address() == peer) {
                        self.send(i, to, b);
                    }
                }
                Effect::Committed {
                    block, app_hash, ..
                } => self.on_commit(i, &block, app_hash),
                Effect::Evidence(ev) => {
                    let off = ev.offender();
                    if let Some(j) = self.nodes.iter().position(|n| n.key.address() == off) {
                        if self.honest(j) && self.honest(i) {
                            self.fail(format!("node {i} accused honest node {j}"));
                        }
                    }
                    // Operators turn evidence into a slashing transaction, as the chain task does.
                    if self.honest(i) && self.nodes[i].role == Role::Operator {
                        self.evidence_tx(i, &ev);
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

    fn evidence_tx(&mut self, i: usize, ev: &agora_consensus::Evidence) {
        let Some(r) = self.nodes[i].replica.as_ref() else {
            return;
        };
        let tx = {
            let market = r.app().shared();
            let m = market.read().expect("no lock held across a panic");
            agora_node::app::evidence_tx(&self.nodes[i].key, &m, ev)
        };
        let Some(tx) = tx else { return };
        let local = self.local(i);
        if let Some(r) = self.nodes[i].replica.as_mut() {
            if let Ok(effects) = r.submit_tx(tx, local) {
                self.effects(i, effects);
            }
        }
    }

    fn byz_broadcast(&mut self, i: usize, byz: Byz, bytes: Vec<u8>) {
        let n = self.nodes.len();
        let key = self.nodes[i].key.clone();
        let chain = self.cgen.chain_id;
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

    fn on_commit(&mut self, i: usize, block: &agora_consensus::Block, app_hash: Hash) {
        let h = block.header.height;
        self.trace.update(&[5]);
        self.trace.update(&(i as u64).to_be_bytes());
        self.trace.update(block.hash().as_bytes());
        self.trace.update(app_hash.as_bytes());
        if self.nodes[i].byz.is_some() {
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
                self.decided_at.insert(h, self.now);
                self.decided.insert(h, (block.hash(), app_hash));
                for tx in &block.txs {
                    self.included.insert(Hash::of(tx));
                    if let Some(slot) = agora_market::tx_slot(tx) {
                        self.slots_used.insert(slot);
                    }
                }
                self.txs += block.txs.len() as u64;
                // Supply conservation, once per height (every honest replica has this state:
                // the app hashes agree).
                let broken = self.nodes[i].replica.as_ref().and_then(|r| {
                    let market = r.app().shared();
                    let m = market.read().expect("no lock held across a panic");
                    m.check_invariants().err()
                });
                if let Some(e) = broken {
                    self.fail(format!("after height {h}: {e}"));
                }
            }
        }
    }

    fn finish(mut self) -> NetworkSeedOutcome {
        let mut jobs = JobCount::default();
        if self.failure.is_none() {
            self.final_checks(&mut jobs);
        }
        NetworkSeedOutcome {
            seed: self.seed,
            failure: self.failure,
            trace: Hash(*self.trace.finalize().as_bytes()),
            heights: self.decided.len() as u64,
            jobs: jobs.all,
            settled: jobs.settled,
            proven: jobs.proven,
            refunded: jobs.refunded,
            failed: jobs.failed,
            txs: self.txs,
            messages: self.links.messages,
            mix: self.mix.join("+"),
        }
    }

    /// Build a settled job's proof from node `i`'s store, as its API would, and verify it
    /// offline against the genesis: it must prove the result hash the market holds. `Ok(false)`
    /// when the block that would certify it is not decided yet.
    fn prove(&self, i: usize, id: &Hash, job: &agora_market::Job) -> Result<bool, String> {
        let nd = &self.nodes[i];
        let r = nd.replica.as_ref().ok_or("observer down")?;
        let result_hash = job.result_hash;
        let Some(h) = job.settled_at().map(|h| h.0) else {
            return Ok(false);
        };
        let Some((next, cert)) = r.block(h + 1).map_err(|e| e.to_string())? else {
            return Ok(false);
        };
        let result = nd
            .app_store
            .result(h)
            .ok_or_else(|| format!("node {i} has no stored result of block {h}"))?;
        let bytes = agora_node::proof::job_proof(id, &result, &next.header, &cert)
            .map_err(|e| format!("node {i} cannot build its proof: {e}"))?;
        let proven = agora_node::proof::verify_job(&bytes, &self.genesis)
            .map_err(|e| format!("its proof from node {i} does not verify: {e}"))?;
        if Some(proven.result_hash) != result_hash {
            return Err(format!(
                "its proof shows result {}, the market holds {result_hash:?}",
                proven.result_hash.short()
            ));
        }
        Ok(true)
    }

    fn final_checks(&mut self, jobs: &mut JobCount) {
        // Liveness and convergence: every honest node is up and at the top height.
        let top = self.decided.keys().next_back().copied().unwrap_or(0);
        if top < 10 {
            return self.fail(format!("only {top} heights decided"));
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].byz.is_some() {
                continue;
            }
            let Some(r) = self.nodes[i].replica.as_ref() else {
                return self.fail(format!("node {i} is down at the end"));
            };
            if let Some(why) = r.halted() {
                return self.fail(format!("node {i} halted: {why}"));
            }
            // Caught up with what the chain had decided a second before the end.
            let due = self
                .decided_at
                .iter()
                .rev()
                .find(|(_, at)| **at + 1_000 <= self.end_at)
                .map_or(0, |(h, _)| *h);
            if r.height() < due {
                let hgt = r.height();
                return self.fail(format!(
                    "node {i} is at height {hgt}, the chain was at {due} a second before the end (now {top}) [{}; now {}; crashed ever {}]",
                    r.debug_state(),
                    self.now,
                    self.nodes[i].crashed_ever,
                ));
            }
        }
        // Every admitted transaction reached a block, or another used its slot.
        let lost: Vec<(&Hash, &Admitted)> = self
            .admitted
            .iter()
            .filter(|(h, a)| {
                // The last few seconds' transactions may still be on their way.
                a.honest
                    && a.at + 5_000 <= self.end_at
                    && !self.included.contains(*h)
                    && !self.slots_used.contains(&(a.signer, a.nonce))
            })
            .collect();
        if let Some((h, a)) = lost.first() {
            let who = match self.nodes.iter().position(|n| n.key.address() == a.signer) {
                Some(i) => format!("node {i}'s agent"),
                None => "a client".to_owned(),
            };
            let via = &self.nodes[a.via];
            let msg = format!(
                "{} admitted transactions never reached a block, e.g. {} ({who} {}, nonce {}), admitted by node {}{} at +{} ms",
                lost.len(),
                h.short(),
                a.signer.short(),
                a.nonce,
                a.via,
                if via.crashed_ever { ", which crashed" } else { "" },
                a.at - T0
            );
            let all: Vec<String> = lost
                .iter()
                .map(|(_, a)| format!("{}#{}@{}+{}", a.signer.short(), a.nonce, a.via, a.at - T0))
                .collect();
            let nonce = self.nodes.iter().find_map(|n| {
                n.replica.as_ref().map(|r| {
                    r.app()
                        .shared()
                        .read()
                        .expect("no lock held across a panic")
                        .nonce(&a.signer)
                })
            });
            let pending: Vec<String> = self
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| match (&n.replica, nonce) {
                    (Some(r), Some(c)) => format!("{i}:{}", r.pending_nonce(&a.signer, c)),
                    _ => format!("{i}:down"),
                })
                .collect();
            return self.fail(format!(
                "{msg}; pending nonce per node {} ; its nonce on chain is {nonce:?} [{}]",
                pending.join(","),
                all.join(" ")
            ));
        }
        let observer = (0..self.nodes.len())
            .filter(|i| self.honest(*i))
            .max_by_key(|i| self.nodes[*i].replica.as_ref().map(|r| r.height()))
            .expect("an honest node exists");
        let market = self.nodes[observer]
            .replica
            .as_ref()
            .expect("checked up")
            .app()
            .shared();
        let m = market.read().expect("no lock held across a panic");
        let honest: BTreeMap<Address, bool> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.role == Role::Coprocessor)
            .map(|(i, n)| (n.key.address(), self.honest(i) && !n.crashed_ever))
            .collect();
        let honest_any: BTreeSet<Address> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| n.role == Role::Coprocessor && self.honest(*i))
            .map(|(_, n)| n.key.address())
            .collect();
        let heal_market = self.links.heal_at;
        let mut problem = None;
        for (id, job) in m.jobs() {
            jobs.all += 1;
            match job.state {
                JobState::Settled => jobs.settled += 1,
                JobState::Refunded => jobs.refunded += 1,
                JobState::Failed => jobs.failed += 1,
                _ => {}
            }
            if !job.state.is_final()
                && latest_close(job, m.params(), m.health().frozen_ms) <= self.end_at
            {
                let a = &job.auction;
                let h = m.health();
                problem.get_or_insert(format!(
                    "job {} still {:?} {} ms after the heal ({:?}; round {} opened at market +{} ms, market now +{} ms, chain stalled {} ({} ms frozen); {} dutch, {} sealed, {} revealed, {} declines, {} slots, {} re-auctions)",
                    id.short(),
                    job.state,
                    self.end_at - self.links.heal_at,
                    job.spec.auction,
                    a.round,
                    a.opened_at.saturating_sub(T0),
                    m.market_time().saturating_sub(T0),
                    h.stalled,
                    h.frozen_ms,
                    a.dutch.len(),
                    a.commits.len(),
                    a.reveals.len(),
                    job.declines.len(),
                    job.assignments.len(),
                    job.reauctions,
                ));
                continue;
            }
            if !job.state.is_final() {
                // Still within what its own windows allow (re-auctions, deadlines, audit).
                continue;
            }
            let correct = agora_market::result_hash(
                Outcome::Success,
                0,
                sim_fuel(&job.spec),
                &correct_stdout(&job.spec),
            );
            let results: Vec<(Address, Hash)> = job
                .assignments
                .iter()
                .filter_map(|(a, s)| s.result.as_ref().map(|r| (*a, r.result_hash)))
                .collect();
            let honest_results = results
                .iter()
                .filter(|(a, _)| honest_any.contains(a))
                .count();
            let honest_majority = honest_results * 2 > results.len();
            if job.state == JobState::Settled {
                match self.prove(observer, id, job) {
                    Ok(true) => jobs.proven += 1,
                    Ok(false) => {}
                    Err(why) => {
                        problem.get_or_insert(format!("job {}: {why}", id.short()));
                    }
                }
            }
            if job.state == JobState::Settled && honest_majority && job.result_hash != Some(correct)
            {
                problem.get_or_insert(format!(
                    "job {} settled on a wrong result although honest coprocessors were the majority",
                    id.short()
                ));
            }
            for (a, slot) in &job.assignments {
                if slot.status == SlotStatus::Slashed && honest_any.contains(a) && honest_majority {
                    problem.get_or_insert(format!(
                        "honest coprocessor {} slashed for its correct result on job {}",
                        a.short(),
                        id.short()
                    ));
                }
                let awarded = slot.deadline.saturating_sub(job.spec.deadline_ms);
                if slot.status == SlotStatus::TimedOut
                    && honest.get(a).copied().unwrap_or(false)
                    && awarded > heal_market + 2_000
                {
                    let node = self.nodes.iter().position(|n| n.key.address() == *a);
                    problem.get_or_insert(format!(
                        "honest coprocessor {} (node {node:?}) timed out on job {} awarded after the heal (round {}, deadline market +{} ms)",
                        a.short(),
                        id.short(),
                        slot.round,
                        slot.deadline.saturating_sub(T0)
                    ));
                }
            }
        }
        drop(m);
        if let Some(p) = problem {
            self.fail(p);
        }
    }
}

/// An in-process network of whole nodes driven by a test: the simulator's nodes (replica,
/// market, agents, simulated executor) on a clean simulated network, with no workload of its
/// own. The test submits jobs and transfers, advances simulated time, injects faults into named
/// nodes and reads the replicated market; the simulator's checks (agreement, app hashes, supply)
/// run after every block, and [`Rig::check`] reports the first violation.
pub struct Rig {
    sim: Sim,
}

/// A coprocessor fault a test can give a rig node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RigFault {
    /// Commits wrong results.
    WrongResults,
    /// Wins auctions and never commits.
    NeverDelivers,
}

impl Rig {
    /// `operators` validators (nodes `0..operators`) and `coprocessors` coprocessor nodes
    /// (`operators..`), one funded client; everything is a function of `seed`.
    pub fn new(operators: usize, coprocessors: usize, seed: u64) -> Rig {
        let opts = NetworkSimOptions {
            nodes: operators,
            byzantine: 0,
            coprocessors,
            clients: 1,
            faults: false,
            chaos_ms: 0,
            settle_ms: u64::MAX / 4,
            ..NetworkSimOptions::default()
        };
        let mut sim = Sim::build(&opts, seed, true);
        sim.start();
        Rig { sim }
    }

    /// Simulated time since genesis, ms.
    pub fn elapsed_ms(&self) -> u64 {
        self.sim.now - T0
    }

    pub fn address(&self, node: usize) -> Address {
        self.sim.nodes[node].key.address()
    }

    pub fn client(&self) -> Address {
        self.sim.clients[0].builder.address()
    }

    /// A job spec of the simulated executor with the given replicas and max price: a Dutch
    /// auction of 2 s and a 5 s deadline.
    pub fn job_spec(&mut self, replicas: u32, max_price: u128) -> JobSpec {
        JobSpec {
            replicas,
            audit_bps: 0,
            max_price: Amount(max_price),
            auction: AuctionSpec::Dutch {
                start_price: Amount(100.min(max_price)),
                duration_ms: 2_000,
            },
            deadline_ms: 5_000,
            ..self.sim.job_spec(0)
        }
    }

    /// Submit a job through `via`, whose blob store gets the module and input; its id.
    pub fn submit_job(&mut self, via: usize, spec: JobSpec) -> Result<JobId, String> {
        let sim = &mut self.sim;
        sim.nodes[via]
            .blobs
            .extend([spec.module_hash, spec.input_hash]);
        sim.clients[0].jobs += 1;
        let nonce = sim.clients[0].nonce;
        let env = sim.clients[0].builder.submit_job(nonce, spec);
        let id = env.hash();
        let tx = agora_market::encode_envelope(&env);
        if !sim.client_send(0, via, tx, Some(nonce)) {
            return Err(format!("node {via} refused the job"));
        }
        sim.clients[0].nonce += 1;
        Ok(id)
    }

    /// Send `amount` from the client to `to` through `via`; the transaction's hash.
    pub fn transfer(&mut self, via: usize, to: Address, amount: u128) -> Result<Hash, String> {
        let sim = &mut self.sim;
        let nonce = sim.clients[0].nonce;
        let env = sim.clients[0].builder.transfer(nonce, to, Amount(amount));
        let hash = env.hash();
        let tx = agora_market::encode_envelope(&env);
        if !sim.client_send(0, via, tx, Some(nonce)) {
            return Err(format!("node {via} refused the transfer"));
        }
        sim.clients[0].nonce += 1;
        Ok(hash)
    }

    /// Advance simulated time by `ms`.
    pub fn run_for(&mut self, ms: u64) {
        let until = self.sim.now + ms;
        self.sim.run_until(until);
    }

    /// Advance until `done` holds for the market of the highest honest node (checked every
    /// 100 ms of simulated time), at most `limit_ms`; whether it came true.
    pub fn run_until(&mut self, limit_ms: u64, mut done: impl FnMut(&Market) -> bool) -> bool {
        let end = self.sim.now + limit_ms;
        while self.sim.now < end {
            if self.with_market(&mut done) {
                return true;
            }
            self.run_for(100);
            if self.sim.failure.is_some() {
                return false;
            }
        }
        self.with_market(done)
    }

    /// Read the replicated market of the highest honest node that is up.
    pub fn with_market<T>(&self, f: impl FnOnce(&Market) -> T) -> T {
        let node = (0..self.sim.nodes.len())
            .filter(|i| self.sim.honest(*i))
            .filter_map(|i| self.sim.nodes[i].replica.as_ref())
            .max_by_key(|r| r.height())
            .expect("an honest node is up");
        let market = node.app().shared();
        let m = market.read().expect("no lock held across a panic");
        f(&m)
    }

    /// Kill `node` (what it had not flushed is lost) ...
    pub fn crash(&mut self, node: usize) {
        self.sim.push(self.sim.now, Ev::Crash(node));
        self.sim.run_until(self.sim.now);
    }

    /// ... and start it again from its store.
    pub fn restart(&mut self, node: usize) {
        self.sim.push(self.sim.now, Ev::Restart(node));
        self.sim.run_until(self.sim.now);
    }

    /// Cut `node` off from every other node (it keeps running alone) until [`Rig::reconnect`].
    pub fn isolate(&mut self, node: usize) {
        self.sim.links.isolated.insert(node);
    }

    pub fn reconnect(&mut self, node: usize) {
        self.sim.links.isolated.remove(&node);
    }

    /// Simulated executions take between `lo` and `hi` ms from now on.
    pub fn set_exec_ms(&mut self, lo: u64, hi: u64) {
        self.sim.exec_ms = (lo, hi.max(lo));
    }

    /// Make coprocessor `node` misbehave from now on.
    pub fn set_fault(&mut self, node: usize, fault: RigFault) {
        self.sim.nodes[node].cop_fault = Some(match fault {
            RigFault::WrongResults => CopFault::Wrong,
            RigFault::NeverDelivers => CopFault::NeverDeliver,
        });
    }

    /// The first violated invariant so far, if any.
    pub fn check(&self) -> Result<(), String> {
        match &self.sim.failure {
            Some(f) => Err(f.clone()),
            None => Ok(()),
        }
    }

    /// Heights decided so far.
    pub fn height(&self) -> u64 {
        self.sim.decided.keys().next_back().copied().unwrap_or(0)
    }
}

impl Node {
    fn new(
        key: Keypair,
        role: Role,
        byz: Option<Byz>,
        cop_fault: Option<CopFault>,
        chain: Hash,
    ) -> Node {
        Node {
            builder: TxBuilder::new(key.clone(), chain),
            key,
            role,
            byz,
            cop_fault,
            replica: None,
            crashed: None,
            app_store: MemAppStore::default(),
            agent: None,
            agent_height: 0,
            epoch: 0,
            crashed_ever: false,
            offset: 0,
            wake: 0,
            sent: Vec::new(),
            blobs: BTreeSet::new(),
        }
    }
}

#[derive(Default)]
struct JobCount {
    all: u64,
    settled: u64,
    proven: u64,
    refunded: u64,
    failed: u64,
}

/// The latest time (block ms) a job can stay open by its own windows: every round of
/// re-auction ends with an auction and a deadline missed, then an audit window; plus the time
/// the market clock was frozen, and a few blocks of slack per phase.
fn latest_close(job: &Job, params: &Params, frozen_ms: u64) -> u64 {
    let auction = match job.spec.auction {
        AuctionSpec::Dutch { duration_ms, .. } => duration_ms,
        AuctionSpec::Sealed {
            commit_ms,
            reveal_ms,
        } => commit_ms + reveal_ms,
    };
    let rounds = u64::from(params.max_reauctions) + 2;
    job.submitted_at.0
        + rounds * (auction + job.spec.deadline_ms + 3_000)
        + params.audit_window_ms
        + frozen_ms
        + 5_000
}

/// What an honest run of the job prints.
fn correct_stdout(spec: &JobSpec) -> Vec<u8> {
    let mut b = spec.module_hash.as_bytes().to_vec();
    b.extend_from_slice(spec.input_hash.as_bytes());
    Hash::derive("agora/sim/exec", &b).as_bytes().to_vec()
}

/// The fuel an honest run uses.
fn sim_fuel(spec: &JobSpec) -> u64 {
    (1_000 + u64::from(spec.module_hash.as_bytes()[0]) * 100).min(spec.fuel_limit)
}

/// A spamming coprocessor's extra bids: a Dutch acceptance at the start price on every auction,
/// whatever its state (most are refused or rejected).
fn spam_bids(m: &Market) -> Vec<Decision> {
    m.open_jobs()
        .filter_map(|id| m.job(id))
        .filter(|j| j.state == JobState::Auction)
        .map(|j| {
            Decision::Submit(
                Action::Bid(j.id, u32::MAX),
                TxKind::Bid {
                    job_id: j.id,
                    bid: agora_market::BidKind::Dutch {
                        min_price: Amount(1),
                    },
                },
            )
        })
        .collect()
}
