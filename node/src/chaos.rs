//! `agora chaos`: a job and transfer workload on a fresh testnet under a seeded schedule of
//! faults, then a report, in the manner of Jepsen, of what was lost.
//!
//! The run, one process tree (chaos is the parent of every node):
//!
//! 1. A fresh testnet (`--operators`, `--coprocessors`, optionally `--netns` and
//!    `--byzantine NODE=ROLE`) is started and warmed up: blocks, every coprocessor active, one
//!    job settled. The workload keys are funded from the testnet's client key.
//! 2. For `--duration`, the workload runs while the schedule applies its faults one at a time:
//!    kill (then restart), pause (then resume), restart, partition of one node from the rest,
//!    delay and loss (one node or all), each held a few seconds, then healed. The schedule is a
//!    function of `--seed` alone and is printed before the run.
//!    - Job streams (`--job-streams` keys) each submit a job, wait until its submission is in a
//!      block, and submit the next; jobs run `examples/hello.wat` with `--replicas` replicas.
//!    - A transfer stream sends random amounts to fresh addresses the same way.
//!    - A byzantine client posts junk bytes, replays transactions already in blocks, and signs
//!      new ones with nonces already used.
//!
//!    Every transaction goes to a node chosen in turn; when the node does not answer or refuses
//!    it, the same signed bytes go to the next. It counts as acknowledged once a node has
//!    answered 2xx, and is then never sent again: the network alone must bring it to a block.
//! 3. The faults are healed, and every acknowledged transaction must reach a block and every
//!    job in a block must become final within `--settle`.
//!
//! The report counts jobs and transactions submitted, acknowledged, settled, refunded, failed and
//! lost (acknowledged but never final); the junk and replays accepted; each coprocessor's
//! earnings and slashes, and the slashes of honest nodes; the money of every workload key
//! reconciled to the unit against what its own records say it paid and got back (a job's
//! events account for its escrow, refunds and compensation); app-hash divergences at every
//! height all nodes have; the longest time no node committed a block; and the faults applied.
//! Any of lost, divergences, honest slashes, money off by a unit, junk or a replay applied is a
//! broken invariant: the command then exits non-zero. The report is printed (`--json`: one
//! object) and written to `--out` (default `DIR/chaos-report.json`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_client::{Client, ClientError, TestnetFile};
use agora_crypto::Keypair;
use agora_market::{JobView, MarketEvent, TxBuilder};
use agora_types::{Address, Amount, Hash};
use anyhow::{bail, Context};
use serde::Serialize;

use crate::testnet::{Fault, Shape};

/// What [`crate::bench_faults::fund_load_key`] gives each workload key from the client key.
const KEY_FUNDS: u128 = crate::bench_faults::LOAD_FUNDS;
/// How long one request to a node may take before the next node is tried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the halt monitor reads every node's height.
const MONITOR_EVERY: Duration = Duration::from_millis(250);
/// A coprocessor faulted by the schedule is excused a timeout slash this long after the fault
/// is healed (its job's deadline may fall after it).
const FAULT_GRACE_MS: u64 = 60_000;

/// Options of `agora chaos`.
#[derive(Debug, clap::Args)]
pub struct ChaosArgs {
    /// How long faults are applied, e.g. 90s, 10m
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Seed of the fault schedule and the workload's choices [default: from the clock, printed]
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, default_value_t = 4)]
    pub operators: u32,
    #[arg(long, default_value_t = 3)]
    pub coprocessors: u32,
    /// Fault kinds the schedule draws from (comma-separated) [default: all]
    #[arg(long, value_delimiter = ',', value_enum)]
    pub faults: Vec<FaultKind>,
    /// Make a node byzantine, NODE=ROLE (as `testnet up --byzantine`). May be repeated.
    #[arg(long = "byzantine", value_name = "NODE=ROLE")]
    pub byzantine: Vec<String>,
    /// Keys submitting jobs, each one job at a time
    #[arg(long, default_value_t = 2)]
    pub job_streams: u32,
    /// Replicas per job
    #[arg(long, default_value_t = 2)]
    pub replicas: u32,
    /// Pause between one stream's jobs, in ms
    #[arg(long, default_value_t = 500)]
    pub job_gap_ms: u64,
    /// How long, once the faults are healed, every acknowledged job and transaction has to
    /// become final
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Where the testnet lives (kept) [default: a temporary directory, removed unless the run
    /// breaks an invariant]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Each node in its own network namespace (as `testnet up --netns`; needs root)
    #[arg(long)]
    pub netns: bool,
    /// Where the report goes [default: DIR/chaos-report.json]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the report as one JSON object
    #[arg(long)]
    pub json: bool,
}

/// `90s`, `10m`, `1500ms`, `2h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 90s, 10m, 1500ms)"))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" | "min" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m or h)")),
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// What the schedule can do to the testnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL a node, restart it when the fault ends
    Kill,
    /// SIGSTOP a node, SIGCONT it when the fault ends
    Pause,
    /// Stop a node and start it again on its store
    Restart,
    /// Cut one node off from all the others, heal when the fault ends
    Partition,
    /// Hold back what one node (or every node) receives
    Delay,
    /// Drop a share of what one node (or every node) receives
    Loss,
}

impl FaultKind {
    /// The name `--faults` takes and the report prints.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Restart => "restart",
            FaultKind::Partition => "partition",
            FaultKind::Delay => "delay",
            FaultKind::Loss => "loss",
        }
    }
}

const ALL_FAULTS: [FaultKind; 6] = [
    FaultKind::Kill,
    FaultKind::Pause,
    FaultKind::Restart,
    FaultKind::Partition,
    FaultKind::Delay,
    FaultKind::Loss,
];

/// splitmix64: the schedule's and the workload's randomness, a function of the seed.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// One fault of the schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Planned {
    /// When it starts, from the start of the run.
    pub at_ms: u64,
    /// How long it holds before it is healed (0 for `restart`).
    pub hold_ms: u64,
    pub kind: FaultKind,
    /// A node name, or `all` (delay and loss only).
    pub target: String,
    /// The delay in ms or the loss in basis points; 0 otherwise.
    pub amount: u64,
}

/// The schedule `seed` gives over `duration` for a testnet of `nodes` (names as in
/// `testnet.json`): one fault at a time, each held 3–8 s with 1–3 s between them, every kind
/// once per round of `kinds.len()` faults. A kill,
/// pause, restart or partition touches one node, so a quorum of 4 or more operators keeps
/// deciding through every fault.
pub fn schedule(
    seed: u64,
    duration: Duration,
    nodes: &[String],
    kinds: &[FaultKind],
) -> Vec<Planned> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    let end = duration.as_millis() as u64;
    let mut at = 2_000;
    if kinds.is_empty() || nodes.is_empty() {
        return out;
    }
    // Kinds come in rounds: each round is every kind once, in an order the seed shuffles, so a
    // schedule of as many faults as kinds has them all.
    let mut round: Vec<FaultKind> = Vec::new();
    while at < end {
        if round.is_empty() {
            round = kinds.to_vec();
            for i in (1..round.len()).rev() {
                round.swap(i, (rng.next() % (i as u64 + 1)) as usize);
            }
        }
        let kind = round.pop().expect("refilled above");
        let one = nodes[(rng.next() % nodes.len() as u64) as usize].clone();
        let everyone = rng.next().is_multiple_of(3);
        let (target, amount) = match kind {
            FaultKind::Delay => (
                if everyone { "all".to_owned() } else { one },
                rng.range(20, 250),
            ),
            FaultKind::Loss => (
                if everyone { "all".to_owned() } else { one },
                rng.range(100, 1_500),
            ),
            _ => (one, 0),
        };
        let hold = match kind {
            FaultKind::Restart => 0,
            _ => rng.range(3_000, 8_000),
        };
        out.push(Planned {
            at_ms: at,
            hold_ms: hold,
            kind,
            target,
            amount,
        });
        at += hold + rng.range(1_000, 3_000);
    }
    out
}

/// A fault as it was applied.
#[derive(Debug, Clone, Serialize)]
struct Applied {
    #[serde(flatten)]
    planned: Planned,
    /// When it took effect and when it was healed, from the start of the run.
    started_ms: u64,
    healed_ms: Option<u64>,
    /// Why applying or healing it failed, if it did.
    error: Option<String>,
}

/// What the run found, printed and written as JSON.
#[derive(Debug, Clone, Default, Serialize)]
struct Report {
    seed: u64,
    duration_s: u64,
    operators: u32,
    coprocessors: u32,
    netns: bool,
    byzantine: Vec<String>,
    jobs: JobCounts,
    transactions: TxCounts,
    byzantine_client: ByzClient,
    coprocessors_seen: Vec<CoprocessorLine>,
    honest_slashes: Vec<String>,
    excused_slashes: Vec<String>,
    byzantine_punished: Vec<String>,
    byzantine_unpunished: Vec<String>,
    money: Vec<MoneyLine>,
    supply: SupplyLine,
    divergences: Vec<String>,
    heights_compared: u64,
    longest_halt_ms: u64,
    /// When the longest halt began, from the start of the run (as the faults' `started_ms`).
    longest_halt_from_ms: u64,
    faults: Vec<Applied>,
    lost: Vec<String>,
    broken: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
struct JobCounts {
    submitted: u64,
    acknowledged: u64,
    in_block: u64,
    settled: u64,
    refunded: u64,
    failed: u64,
    lost: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
struct TxCounts {
    submitted: u64,
    acknowledged: u64,
    in_block: u64,
    never_acknowledged: u64,
    /// Refused by every node for a minute (their answer is in `refusals`).
    refused: u64,
    lost: u64,
    /// Sends no node took before one acknowledged (never after: an acknowledged transaction is
    /// not sent again).
    unanswered_sends: u64,
    refusals: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
struct ByzClient {
    junk_sent: u64,
    junk_accepted: u64,
    replays_sent: u64,
    replays_accepted: u64,
    stale_nonces_sent: u64,
    stale_nonces_accepted: u64,
}

#[derive(Debug, Clone, Serialize)]
struct CoprocessorLine {
    name: String,
    byzantine: Option<String>,
    completed: u64,
    failed: u64,
    earned: String,
    slashed: String,
}

#[derive(Debug, Clone, Serialize)]
struct MoneyLine {
    key: String,
    expected: String,
    actual: String,
    exact: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
struct SupplyLine {
    genesis: String,
    now: String,
    burned: String,
    /// The market's own check of every holding against the supply: `ok` or what is off.
    invariants: String,
    conserved: bool,
}

/// `agora chaos`.
pub fn run(args: &ChaosArgs) -> anyhow::Result<()> {
    if args.duration.is_zero() {
        bail!("--duration must be positive");
    }
    if args.operators < 4 {
        bail!("--operators must be at least 4: the schedule takes one operator down at a time and the rest must still decide");
    }
    if args.coprocessors < args.replicas.max(1) {
        bail!(
            "--coprocessors ({}) must be at least --replicas ({})",
            args.coprocessors,
            args.replicas
        );
    }
    if args.job_streams == 0 {
        bail!("--job-streams must be at least 1");
    }
    let seed = args.seed.unwrap_or_else(agora_node::chain::now_ms);
    let (dir, temporary) = match &args.dir {
        Some(d) => {
            if d.join(agora_client::TESTNET_FILE).exists() {
                bail!(
                    "{} already holds a testnet; give --dir a new directory",
                    d.display()
                );
            }
            (d.clone(), false)
        }
        None => (
            std::env::temp_dir().join(format!(
                "agora-chaos-{}-{}",
                std::process::id(),
                agora_node::chain::now_ms()
            )),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(run_in(args, seed, &dir));
    runtime.shutdown_timeout(Duration::from_secs(5));
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "chaos: the testnet and its logs are kept in {}",
                dir.display()
            );
            return Err(e);
        }
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| dir.join("chaos-report.json"));
    let text = serde_json::to_string_pretty(&report).context("encoding the report")?;
    std::fs::write(&out, text + "\n").with_context(|| format!("cannot write {}", out.display()))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).context("encoding the report")?
        );
    } else {
        print_report(&report);
        println!("report     {}", out.display());
    }
    if report.broken.is_empty() {
        if temporary && args.out.is_some() {
            let _ = std::fs::remove_dir_all(&dir);
        } else if temporary {
            eprintln!("testnet logs kept in {}", dir.display());
        }
        Ok(())
    } else {
        eprintln!("testnet and logs kept in {}", dir.display());
        bail!(
            "{} invariant(s) broken: {}",
            report.broken.len(),
            report.broken.join("; ")
        )
    }
}

/// Start the testnet, run everything, stop the testnet whatever happened.
async fn run_in(args: &ChaosArgs, seed: u64, dir: &Path) -> anyhow::Result<Report> {
    let (stop, rx, signals) = crate::bench_faults::on_signals();
    eprintln!(
        "chaos: seed {seed}, {} s of faults on {} operators + {} coprocessors in {}",
        args.duration.as_secs(),
        args.operators,
        args.coprocessors,
        dir.display()
    );
    let started = tokio::select! {
        r = crate::testnet::start(args.operators, args.coprocessors, dir, false, args.netns, &args.byzantine) => r?,
        _ = crate::bench_faults::interrupted(rx.clone()) => bail!("interrupted while starting the testnet"),
    };
    let (file, mut children) = started;
    let handle = tokio::runtime::Handle::current();
    let job = {
        let (args_dir, stop) = (dir.to_owned(), stop.clone());
        let setup = Setup::from_args(args, seed);
        crate::bench_faults::guarded(&rx, move || setup.run(&args_dir, file, &stop, handle)).await
    };
    signals.abort();
    stop.store(true, Ordering::Relaxed);
    eprintln!("chaos: stopping the testnet");
    crate::testnet::stop_all(&mut children).await;
    // Nodes restarted by the schedule are not our children: stop those too.
    let _ = crate::testnet::stop_recorded(dir);
    job
}

/// The parts of the arguments the run needs on its own thread.
struct Setup {
    seed: u64,
    duration: Duration,
    settle: Duration,
    kinds: Vec<FaultKind>,
    byzantine: Vec<String>,
    job_streams: u32,
    replicas: u32,
    job_gap: Duration,
    operators: u32,
    coprocessors: u32,
    netns: bool,
}

impl Setup {
    fn from_args(args: &ChaosArgs, seed: u64) -> Setup {
        let mut kinds = if args.faults.is_empty() {
            ALL_FAULTS.to_vec()
        } else {
            args.faults.clone()
        };
        kinds.sort();
        kinds.dedup();
        Setup {
            seed,
            duration: args.duration,
            settle: args.settle,
            kinds,
            byzantine: args.byzantine.clone(),
            job_streams: args.job_streams,
            replicas: args.replicas,
            job_gap: Duration::from_millis(args.job_gap_ms),
            operators: args.operators,
            coprocessors: args.coprocessors,
            netns: args.netns,
        }
    }

    fn run(
        self,
        dir: &Path,
        file: TestnetFile,
        stop: &Arc<AtomicBool>,
        rt: tokio::runtime::Handle,
    ) -> anyhow::Result<Report> {
        let token = file.api_token();
        let nodes = Nodes {
            dir: dir.to_owned(),
            token: token.clone(),
        };
        let first = Client::with_timeout(&file.nodes[0].api, Duration::from_secs(10))?
            .with_token(token.clone());
        let client_key = agora_crypto::load_key(&file.client_key)?;
        eprintln!("chaos: waiting for blocks, active coprocessors and a warm-up job");
        // Two replicas when a coprocessor lies, so the warm-up job's output is the honest one.
        let warm_replicas = if self.byzantine.is_empty() {
            1
        } else {
            self.replicas.max(2)
        };
        crate::bench_faults::prepare(&first, &client_key, self.coprocessors, warm_replicas, stop)?;
        let genesis_supply = genesis_supply(dir)?;

        // Workload keys, funded from the client key.
        let mut job_keys = Vec::new();
        for _ in 0..self.job_streams {
            job_keys.push(crate::bench_faults::fund_load_key(
                &first,
                &client_key,
                stop,
            )?);
        }
        let transfer_key = crate::bench_faults::fund_load_key(&first, &client_key, stop)?;
        let module = wat::parse_str(crate::bench::BENCH_PROGRAM).context("assembling hello.wat")?;
        // Every node holds the module and input, so a job never waits on one dead node's blobs;
        // the spec names them by hash, the same from every node.
        let mut spec = None;
        for (name, c) in nodes.clients() {
            let up = crate::jobs::upload_job(
                &c,
                &module,
                crate::bench::BENCH_INPUT,
                Amount(crate::jobs::DEFAULT_MAX_PRICE),
                crate::jobs::DEFAULT_AUCTION_MS,
            )
            .with_context(|| format!("uploading the job's module and input to {name}"))?;
            spec.get_or_insert(up);
        }
        let mut spec = spec.context("the testnet lists no node")?;
        spec.replicas = self.replicas;

        let names: Vec<String> = file.nodes.iter().map(|n| n.name.clone()).collect();
        let plan = schedule(self.seed, self.duration, &names, &self.kinds);
        eprintln!("chaos: schedule of {} faults:", plan.len());
        for p in &plan {
            eprintln!("  {}", describe(p));
        }

        let t0 = Instant::now();
        let submitting = Arc::new(AtomicBool::new(true));
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let halt = Arc::new(Mutex::new(HaltMonitor::default()));
        let deadline = t0 + self.duration + self.settle;

        let stream = |key: &Keypair, salt: u64, gap: Duration| -> anyhow::Result<Stream> {
            Ok(Stream {
                nodes: nodes.clone(),
                builder: crate::jobs::builder(&first, key.clone())?,
                ledger: ledger.clone(),
                submitting: submitting.clone(),
                stop: stop.clone(),
                deadline,
                rng: Rng(self.seed ^ salt),
                gap,
            })
        };
        let mut threads = Vec::new();
        for (i, key) in job_keys.iter().enumerate() {
            let w = stream(key, 0x1000 + i as u64, self.job_gap)?;
            let spec = spec.clone();
            threads.push(std::thread::spawn(move || {
                w.run(|b, nonce, _| (b.submit_job(nonce, spec.clone()), None))
            }));
        }
        let recipients: Vec<Address> = (0..4).map(|_| Keypair::generate().address()).collect();
        {
            let w = stream(&transfer_key, 0x2000, Duration::from_millis(200))?;
            let to = recipients.clone();
            threads.push(std::thread::spawn(move || {
                w.run(move |b, nonce, rng| {
                    let r = to[(rng.next() % to.len() as u64) as usize];
                    let amount = rng.range(1, 1_000) as u128;
                    (b.transfer(nonce, r, Amount(amount)), Some((r, amount)))
                })
            }));
        }
        // Where the byzantine client's used-nonce transfers would land: it must stay empty.
        let sink = Keypair::generate().address();
        let byz = {
            let (nodes, ledger, submitting, stop) = (
                nodes.clone(),
                ledger.clone(),
                submitting.clone(),
                stop.clone(),
            );
            let builder = crate::jobs::builder(&first, transfer_key.clone())?;
            let seed = self.seed;
            std::thread::spawn(move || {
                byzantine_client(&nodes, &builder, sink, &ledger, &submitting, &stop, seed)
            })
        };
        let monitor = {
            let (nodes, halt, stop) = (nodes.clone(), halt.clone(), stop.clone());
            let done = Arc::new(AtomicBool::new(false));
            let d = done.clone();
            (
                std::thread::spawn(move || monitor_heights(&nodes, &halt, t0, &stop, &d)),
                done,
            )
        };

        // The schedule, on this thread.
        let applied = apply_schedule(dir, &plan, t0, stop, &rt);
        eprintln!(
            "chaos: faults over after {:.1} s; healed; waiting up to {} s for everything accepted to be final",
            t0.elapsed().as_secs_f64(),
            self.settle.as_secs()
        );
        submitting.store(false, Ordering::Relaxed);
        for t in threads {
            let _ = t.join();
        }
        let _ = byz.join();
        if stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }

        // Every job in a block must become final.
        let jobs = follow_jobs(&nodes, &ledger, deadline, stop);
        monitor.1.store(true, Ordering::Relaxed);
        let _ = monitor.0.join();
        let (longest_halt_ms, longest_halt_from_ms) = halt
            .lock()
            .map(|h| (h.longest_ms, h.longest_from_ms))
            .unwrap_or_default();

        let file = TestnetFile::read(&dir.join(agora_client::TESTNET_FILE))?;
        let mut report = Report {
            seed: self.seed,
            duration_s: self.duration.as_secs(),
            operators: self.operators,
            coprocessors: self.coprocessors,
            netns: self.netns,
            byzantine: self.byzantine.clone(),
            longest_halt_ms,
            longest_halt_from_ms,
            faults: applied,
            ..Report::default()
        };
        let ledger = ledger
            .lock()
            .map_err(|_| anyhow::anyhow!("a workload thread panicked"))?;
        count(&mut report, &ledger, &jobs);
        let byz_by_addr = byzantine_nodes(&file, &self.byzantine)?;
        slashes(&mut report, &nodes, &file, &jobs, &byz_by_addr, t0)?;
        let keys = Keys {
            jobs: job_keys,
            transfer: transfer_key,
            recipients,
            sink,
        };
        money(&mut report, &nodes, &ledger, &jobs, &keys)?;
        supply(&mut report, &nodes, genesis_supply)?;
        divergences(&mut report, &nodes)?;
        judge(&mut report);
        Ok(report)
    }
}

/// The testnet's nodes as the workload reaches them: `testnet.json` is read again for each
/// choice, since a restarted node has new ports.
#[derive(Clone)]
struct Nodes {
    dir: PathBuf,
    token: Option<String>,
}

impl Nodes {
    /// Every node's name and a client for its API, in `testnet.json` order.
    fn clients(&self) -> Vec<(String, Client)> {
        let Ok(file) = TestnetFile::read(&self.dir.join(agora_client::TESTNET_FILE)) else {
            return Vec::new();
        };
        file.nodes
            .iter()
            .filter_map(|n| {
                Client::with_timeout(&n.api, REQUEST_TIMEOUT)
                    .ok()
                    .map(|c| (n.name.clone(), c.with_token(self.token.clone())))
            })
            .collect()
    }

    /// The first answer of `f` from the nodes, tried in turn from the `start`-th.
    fn first<T>(
        &self,
        start: usize,
        mut f: impl FnMut(&Client) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let nodes = self.clients();
        let mut last = ClientError::Unreachable {
            url: "the testnet".into(),
            reason: "no node listed".into(),
        };
        for k in 0..nodes.len() {
            let (_, c) = &nodes[(start + k) % nodes.len()];
            match f(c) {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The account's committed nonce, from the node with the highest one that answers.
    fn nonce(&self, who: &Address) -> Option<u64> {
        let hex = who.to_hex();
        self.clients()
            .iter()
            .filter_map(|(_, c)| c.account_nonces(&hex).ok().map(|a| a.nonce))
            .max()
    }
}

/// One workload transaction, as the workload saw it.
#[derive(Debug, Clone)]
struct Sent {
    hash: Hash,
    signer: Address,
    nonce: u64,
    is_job: bool,
    /// The recipient and amount of a transfer.
    transfer: Option<(Address, u128)>,
    acknowledged: bool,
    in_block: bool,
    /// Sends that no node took (unreachable, 5xx or 4xx) before one acknowledged it.
    unanswered: u64,
    /// What the nodes answered when every one refused it for a minute (the stream then ends).
    refused: Option<String>,
    /// The signed bytes, kept for the byzantine client's replays.
    bytes: Vec<u8>,
}

#[derive(Debug, Default)]
struct Ledger {
    sent: Vec<Sent>,
    byz: ByzClient,
}

/// One key sending its transactions one at a time: send, wait for the block, next.
struct Stream {
    nodes: Nodes,
    builder: TxBuilder,
    ledger: Arc<Mutex<Ledger>>,
    submitting: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
    rng: Rng,
    gap: Duration,
}

impl Stream {
    fn run(
        mut self,
        make: impl Fn(&TxBuilder, u64, &mut Rng) -> (agora_crypto::Envelope, Option<(Address, u128)>),
    ) {
        let me = self.builder.address();
        let Some(mut nonce) = self.nodes.nonce(&me) else {
            return;
        };
        let mut turn = 0usize;
        while self.submitting.load(Ordering::Relaxed) && !self.stop.load(Ordering::Relaxed) {
            let (env, transfer) = make(&self.builder, nonce, &mut self.rng);
            let bytes = agora_market::encode_envelope(&env);
            let idx = {
                let Ok(mut l) = self.ledger.lock() else {
                    return;
                };
                l.sent.push(Sent {
                    hash: env.hash(),
                    signer: me,
                    nonce,
                    is_job: transfer.is_none(),
                    transfer,
                    acknowledged: false,
                    in_block: false,
                    unanswered: 0,
                    refused: None,
                    bytes: bytes.clone(),
                });
                l.sent.len() - 1
            };
            // Send until a node acknowledges it or its nonce is used on chain, then wait for
            // the block, sending the same bytes again now and then.
            // Until a node acknowledges it, the same signed bytes go to one node after another;
            // once one has, it is never sent again: the network alone must bring it to a block.
            let first_send = Instant::now();
            let mut last_refusal: Option<String> = None;
            let mut acked = false;
            loop {
                if self.stop.load(Ordering::Relaxed) || Instant::now() > self.deadline {
                    return;
                }
                if self.nodes.nonce(&me).is_some_and(|n| n > nonce) {
                    if let Ok(mut l) = self.ledger.lock() {
                        l.sent[idx].in_block = true;
                    }
                    break;
                }
                if !acked {
                    turn += 1;
                    let r = self.nodes.first(turn, |c| match c.send_tx(&bytes) {
                        // A 4xx is an answer: this node will not take it.
                        Err(ClientError::Status { status, body, .. }) if status < 500 => {
                            Ok(Some(format!("{status}: {body}")))
                        }
                        Err(e) => Err(e),
                        Ok(_) => Ok(None),
                    });
                    match r {
                        Ok(None) => acked = true,
                        Ok(Some(why)) => last_refusal = Some(why),
                        Err(e) => last_refusal = Some(e.to_string()),
                    }
                    if let Ok(mut l) = self.ledger.lock() {
                        if acked {
                            l.sent[idx].acknowledged = true;
                        } else {
                            l.sent[idx].unanswered += 1;
                        }
                    }
                    if !acked && first_send.elapsed() > Duration::from_secs(60) {
                        let why = last_refusal.unwrap_or_default();
                        eprintln!(
                            "chaos: no node took a workload transaction of {} for a minute ({why}); its stream ends",
                            me.short()
                        );
                        if let Ok(mut l) = self.ledger.lock() {
                            l.sent[idx].refused = Some(why);
                        }
                        return;
                    }
                }
                std::thread::sleep(Duration::from_millis(if acked { 200 } else { 100 }));
            }
            nonce += 1;
            std::thread::sleep(self.gap);
        }
    }
}

/// The byzantine client: junk bytes, replays of transactions already in blocks, and new
/// transactions signed with used nonces, about three a second, until the workload stops.
fn byzantine_client(
    nodes: &Nodes,
    builder: &TxBuilder,
    sink: Address,
    ledger: &Mutex<Ledger>,
    submitting: &AtomicBool,
    stop: &AtomicBool,
    seed: u64,
) {
    let mut rng = Rng(seed ^ 0x3000);
    let mut turn = 0usize;
    while submitting.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(300));
        turn += 1;
        let pick = rng.next() % 3;
        let (bytes, kind) = match pick {
            0 => {
                let len = rng.range(1, 300) as usize;
                let junk: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                (junk, 0)
            }
            1 => {
                let old = ledger.lock().ok().and_then(|l| {
                    let done: Vec<&Sent> = l.sent.iter().filter(|s| s.in_block).collect();
                    (!done.is_empty()).then(|| {
                        done[(rng.next() % done.len() as u64) as usize]
                            .bytes
                            .clone()
                    })
                });
                match old {
                    Some(b) => (b, 1),
                    None => continue,
                }
            }
            _ => {
                let Some(n) = nodes.nonce(&builder.address()) else {
                    continue;
                };
                if n == 0 {
                    continue;
                }
                let used = rng.range(0, n - 1);
                (
                    agora_market::encode_envelope(&builder.transfer(used, sink, Amount(1))),
                    2,
                )
            }
        };
        let accepted = nodes
            .first(turn, |c| match c.send_tx(&bytes) {
                Err(ClientError::Status { status, .. }) if status < 500 => Ok(false),
                Err(e) => Err(e),
                Ok(_) => Ok(true),
            })
            .unwrap_or(false);
        if let Ok(mut l) = ledger.lock() {
            let b = &mut l.byz;
            match kind {
                0 => {
                    b.junk_sent += 1;
                    b.junk_accepted += u64::from(accepted);
                }
                1 => {
                    b.replays_sent += 1;
                    b.replays_accepted += u64::from(accepted);
                }
                _ => {
                    b.stale_nonces_sent += 1;
                    b.stale_nonces_accepted += u64::from(accepted);
                }
            }
        }
    }
}

/// The longest stretch in which no node's height rose, and when it began (from the start of
/// the run, to be read against the faults' times).
#[derive(Debug, Default)]
struct HaltMonitor {
    longest_ms: u64,
    longest_from_ms: u64,
}

fn monitor_heights(
    nodes: &Nodes,
    halt: &Mutex<HaltMonitor>,
    t0: Instant,
    stop: &AtomicBool,
    done: &AtomicBool,
) {
    let mut best = 0u64;
    let mut since = Instant::now();
    while !done.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
        let top = nodes
            .clients()
            .iter()
            .filter_map(|(_, c)| c.status().ok().map(|s| s.height))
            .max()
            .unwrap_or(0);
        if top > best {
            best = top;
            since = Instant::now();
        }
        let gap = since.elapsed().as_millis() as u64;
        if let Ok(mut h) = halt.lock() {
            if gap > h.longest_ms {
                h.longest_ms = gap;
                h.longest_from_ms = since.saturating_duration_since(t0).as_millis() as u64;
            }
        }
        std::thread::sleep(MONITOR_EVERY);
    }
}

fn describe(p: &Planned) -> String {
    let what = match p.kind {
        FaultKind::Delay => format!("delay {} {} ms", p.target, p.amount),
        FaultKind::Loss => format!(
            "loss {} {}.{:02}%",
            p.target,
            p.amount / 100,
            p.amount % 100
        ),
        k => format!("{} {}", k.as_str(), p.target),
    };
    if p.hold_ms == 0 {
        format!("{:>7.1} s  {what}", p.at_ms as f64 / 1000.0)
    } else {
        format!(
            "{:>7.1} s  {what}, held {:.1} s",
            p.at_ms as f64 / 1000.0,
            p.hold_ms as f64 / 1000.0
        )
    }
}

/// Apply each planned fault at its time and heal it after its hold; every fault is healed
/// before this returns, even when applying the next one failed or the run was interrupted.
fn apply_schedule(
    dir: &Path,
    plan: &[Planned],
    t0: Instant,
    stop: &AtomicBool,
    rt: &tokio::runtime::Handle,
) -> Vec<Applied> {
    let ms = || t0.elapsed().as_millis() as u64;
    let wait_until = |at: u64| {
        while ms() < at && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let mut out = Vec::new();
    for p in plan {
        wait_until(p.at_ms);
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let started_ms = ms();
        eprintln!("chaos: {}", describe(p).trim_start());
        let mut error = apply(dir, p, rt).err().map(|e| format!("{e:#}"));
        if p.hold_ms > 0 {
            wait_until(started_ms + p.hold_ms);
        }
        let heal = heal(dir, p, rt);
        if let Err(e) = heal {
            error.get_or_insert(format!("healing: {e:#}"));
        }
        if let Some(e) = &error {
            eprintln!("chaos:   {e}");
        }
        out.push(Applied {
            planned: p.clone(),
            started_ms,
            healed_ms: (p.hold_ms > 0).then(ms),
            error,
        });
    }
    out
}

fn apply(dir: &Path, p: &Planned, rt: &tokio::runtime::Handle) -> anyhow::Result<()> {
    match p.kind {
        FaultKind::Kill => crate::testnet::fault_signal(dir, &p.target, Fault::Kill).map(drop),
        FaultKind::Pause => crate::testnet::fault_signal(dir, &p.target, Fault::Pause).map(drop),
        FaultKind::Restart => rt
            .block_on(crate::testnet::fault_restart(dir, &p.target))
            .map(drop),
        FaultKind::Partition => {
            let file = TestnetFile::read(&dir.join(agora_client::TESTNET_FILE))?;
            let rest: Vec<&str> = file
                .nodes
                .iter()
                .map(|n| n.name.as_str())
                .filter(|n| *n != p.target)
                .collect();
            crate::testnet::partition(dir, Some(&format!("{} / {}", p.target, rest.join(","))))
                .map(drop)
        }
        FaultKind::Delay => crate::testnet::shape(dir, &p.target, Shape::Delay(p.amount)).map(drop),
        FaultKind::Loss => {
            crate::testnet::shape(dir, &p.target, Shape::Loss(p.amount as u32)).map(drop)
        }
    }
}

fn heal(dir: &Path, p: &Planned, rt: &tokio::runtime::Handle) -> anyhow::Result<()> {
    match p.kind {
        FaultKind::Kill => rt
            .block_on(crate::testnet::fault_restart(dir, &p.target))
            .map(drop),
        FaultKind::Pause => crate::testnet::fault_signal(dir, &p.target, Fault::Resume).map(drop),
        FaultKind::Restart => Ok(()),
        FaultKind::Partition | FaultKind::Delay | FaultKind::Loss => {
            crate::testnet::partition(dir, None).map(drop)
        }
    }
}

/// Every job whose submission reached a block, followed until final (or `deadline`).
fn follow_jobs(
    nodes: &Nodes,
    ledger: &Mutex<Ledger>,
    deadline: Instant,
    stop: &AtomicBool,
) -> BTreeMap<Hash, Option<JobView>> {
    let ids: Vec<Hash> = ledger
        .lock()
        .map(|l| {
            l.sent
                .iter()
                .filter(|s| s.is_job && s.in_block)
                .map(|s| s.hash)
                .collect()
        })
        .unwrap_or_default();
    let mut views: BTreeMap<Hash, Option<JobView>> = ids.iter().map(|id| (*id, None)).collect();
    let mut turn = 0;
    loop {
        let mut open = 0;
        for id in &ids {
            let final_already = views.get(id).and_then(|v| v.as_ref()).is_some_and(is_final);
            if final_already {
                continue;
            }
            turn += 1;
            if let Ok(v) = nodes.first(turn, |c| c.get_json::<JobView>(&format!("/v1/jobs/{id}"))) {
                let done = is_final(&v);
                views.insert(*id, Some(v));
                if done {
                    continue;
                }
            }
            open += 1;
        }
        if open == 0 || Instant::now() > deadline || stop.load(Ordering::Relaxed) {
            return views;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn is_final(v: &JobView) -> bool {
    matches!(
        v.state,
        agora_market::JobState::Settled
            | agora_market::JobState::Refunded
            | agora_market::JobState::Failed
    )
}

fn count(report: &mut Report, ledger: &Ledger, jobs: &BTreeMap<Hash, Option<JobView>>) {
    for s in &ledger.sent {
        let tx = &mut report.transactions;
        tx.submitted += 1;
        tx.acknowledged += u64::from(s.acknowledged);
        tx.in_block += u64::from(s.in_block);
        tx.never_acknowledged += u64::from(!s.acknowledged && !s.in_block);
        tx.unanswered_sends += s.unanswered;
        if let Some(why) = &s.refused {
            tx.refused += 1;
            tx.refusals.push(format!(
                "{} (nonce {} of {}): {why}",
                s.hash.short(),
                s.nonce,
                s.signer.short()
            ));
        }
        if s.acknowledged && !s.in_block {
            tx.lost += 1;
            report.lost.push(format!(
                "transaction {} (nonce {} of {}) was acknowledged and never reached a block",
                s.hash,
                s.nonce,
                s.signer.short()
            ));
        }
        if s.is_job {
            let j = &mut report.jobs;
            j.submitted += 1;
            j.acknowledged += u64::from(s.acknowledged);
            j.in_block += u64::from(s.in_block);
            if s.acknowledged && !s.in_block {
                j.lost += 1;
            }
            if s.in_block {
                match jobs.get(&s.hash).and_then(|v| v.as_ref()) {
                    Some(v) if v.state == agora_market::JobState::Settled => j.settled += 1,
                    Some(v) if v.state == agora_market::JobState::Refunded => j.refunded += 1,
                    Some(v) if v.state == agora_market::JobState::Failed => j.failed += 1,
                    other => {
                        j.lost += 1;
                        report.lost.push(format!(
                            "job {} is in a block and never became final (last seen: {})",
                            s.hash,
                            other.map_or("not found".to_owned(), |v| v.state.to_string())
                        ));
                    }
                }
            }
        }
    }
    report.byzantine_client = ledger.byz.clone();
}

/// The nodes given byzantine roles: address → role.
fn byzantine_nodes(
    file: &TestnetFile,
    specs: &[String],
) -> anyhow::Result<BTreeMap<Address, String>> {
    use agora_node::config::Role;
    let nodes: Vec<(&str, Role)> = file
        .nodes
        .iter()
        .map(|n| {
            let role = if n.role == "operator" {
                Role::Operator
            } else {
                Role::Coprocessor
            };
            (n.name.as_str(), role)
        })
        .collect();
    let roles = crate::testnet::byzantine_roles(&nodes, specs)?;
    let mut by_addr = BTreeMap::new();
    for (n, role) in file.nodes.iter().zip(roles) {
        if let (Some(role), Ok(a)) = (role, n.address.parse()) {
            by_addr.insert(a, role.to_owned());
        }
    }
    Ok(by_addr)
}

/// Slashes seen in the jobs' events, judged: a byzantine node's are its punishment; a timeout
/// of a coprocessor the schedule had faulted (until [`FAULT_GRACE_MS`] after the heal) is
/// excused; any other slash of an honest node breaks an invariant.
fn slashes(
    report: &mut Report,
    nodes: &Nodes,
    file: &TestnetFile,
    jobs: &BTreeMap<Hash, Option<JobView>>,
    byz: &BTreeMap<Address, String>,
    t0: Instant,
) -> anyhow::Result<()> {
    let name_of: BTreeMap<Address, String> = file
        .nodes
        .iter()
        .filter_map(|n| n.address.parse().ok().map(|a| (a, n.name.clone())))
        .collect();
    // Wall-clock windows (ms since the epoch) in which the schedule faulted each node.
    let start_ms = agora_node::chain::now_ms().saturating_sub(t0.elapsed().as_millis() as u64);
    let mut windows: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for a in &report.faults {
        let until = a.healed_ms.unwrap_or(a.started_ms + 10_000) + FAULT_GRACE_MS;
        windows
            .entry(a.planned.target.clone())
            .or_default()
            .push((start_ms + a.started_ms, start_ms + until));
    }
    let faulted_at = |name: &str, t: u64| {
        windows
            .get(name)
            .is_some_and(|w| w.iter().any(|(a, b)| *a <= t && t <= *b))
    };
    let mut punished: BTreeMap<Address, u64> = BTreeMap::new();
    for v in jobs.values().flatten() {
        for e in &v.events {
            let MarketEvent::Slashed {
                coprocessor,
                amount,
                reason,
                ..
            } = &e.event
            else {
                continue;
            };
            let name = name_of
                .get(coprocessor)
                .cloned()
                .unwrap_or_else(|| coprocessor.short());
            let line = format!(
                "{name} slashed {} for {reason} on job {} at height {}",
                amount.0,
                v.id.short(),
                e.height.0
            );
            if byz.contains_key(coprocessor) {
                *punished.entry(*coprocessor).or_default() += 1;
            } else if reason == "timeout" && faulted_at(&name, e.time.0) {
                report
                    .excused_slashes
                    .push(format!("{line} (faulted by the schedule)"));
            } else {
                report.honest_slashes.push(line);
            }
        }
    }
    // Coprocessor totals, and operators: an honest operator never loses stake or is jailed.
    let views: serde_json::Value = nodes
        .first(0, |c| c.get_json("/v1/coprocessors"))
        .context("reading /v1/coprocessors")?;
    for c in views["coprocessors"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let Ok(cv) = serde_json::from_value::<agora_market::CoprocessorView>(c) else {
            continue;
        };
        report.coprocessors_seen.push(CoprocessorLine {
            name: name_of
                .get(&cv.address)
                .cloned()
                .unwrap_or_else(|| cv.address.short()),
            byzantine: byz.get(&cv.address).cloned(),
            completed: cv.completed,
            failed: cv.failed,
            earned: cv.earned.0.to_string(),
            slashed: cv.slashed.0.to_string(),
        });
    }
    report.coprocessors_seen.sort_by(|a, b| a.name.cmp(&b.name));
    let mut operators_punished: BTreeMap<Address, String> = BTreeMap::new();
    for n in file.nodes.iter().filter(|n| n.role == "operator") {
        let a: agora_market::AccountView = nodes
            .first(0, |c| c.get_json(&format!("/v1/accounts/{}", n.address)))
            .with_context(|| format!("reading operator {}", n.name))?;
        if let Some(op) = a.operator {
            let addr: Address = n.address.parse().unwrap_or_default();
            let lost = crate::testnet::OPERATOR_STAKE.saturating_sub(op.stake.0);
            if op.jailed || lost > 0 {
                let line = format!(
                    "operator {} lost {lost} of its stake{}",
                    n.name,
                    if op.jailed { " and is jailed" } else { "" }
                );
                if byz.contains_key(&addr) {
                    operators_punished.insert(addr, line);
                } else {
                    report.honest_slashes.push(line);
                }
            }
        }
    }
    for (a, role) in byz {
        let name = name_of.get(a).cloned().unwrap_or_else(|| a.short());
        if let Some(line) = operators_punished.get(a) {
            report.byzantine_punished.push(format!("{line} ({role})"));
            continue;
        }
        match punished.get(a) {
            Some(n) => report.byzantine_punished.push(format!(
                "{name} ({role}): slashed on {n} of the workload's jobs"
            )),
            None => report
                .byzantine_unpunished
                .push(format!("{name} ({role}): never slashed")),
        }
    }
    Ok(())
}

/// The workload's accounts: the job streams' keys, the transfer key, the transfers' recipients
/// and the sink of the byzantine client's used-nonce transfers.
struct Keys {
    jobs: Vec<Keypair>,
    transfer: Keypair,
    recipients: Vec<Address>,
    sink: Address,
}

/// Each workload key's balance against what its own records say: transfers out and in, and for
/// each job its escrow (with extra replicas) less its refund and compensation.
fn money(
    report: &mut Report,
    nodes: &Nodes,
    ledger: &Ledger,
    jobs: &BTreeMap<Hash, Option<JobView>>,
    keys: &Keys,
) -> anyhow::Result<()> {
    let Keys {
        jobs: job_keys,
        transfer: transfer_key,
        recipients,
        sink,
    } = keys;
    let sink = *sink;
    let mut expected: BTreeMap<Address, i128> = BTreeMap::new();
    expected.insert(sink, 0);
    for k in job_keys.iter().chain(std::iter::once(transfer_key)) {
        expected.insert(k.address(), KEY_FUNDS as i128);
    }
    for r in recipients {
        expected.insert(*r, 0);
    }
    for s in ledger.sent.iter().filter(|s| s.in_block) {
        if let Some((to, amount)) = s.transfer {
            *expected.entry(s.signer).or_default() -= amount as i128;
            *expected.entry(to).or_default() += amount as i128;
        }
        if s.is_job {
            let Some(Some(v)) = jobs.get(&s.hash) else {
                // A job never seen cannot be reconciled; it is reported as lost already.
                continue;
            };
            let mut cost: i128 = 0;
            for e in &v.events {
                match &e.event {
                    MarketEvent::JobSubmitted { escrow, .. } => cost += escrow.0 as i128,
                    MarketEvent::ExtraReplica { escrow_added, .. } => {
                        cost += escrow_added.0 as i128
                    }
                    MarketEvent::Settled { refund, .. } => cost -= refund.0 as i128,
                    MarketEvent::Refunded { amount, .. } => cost -= amount.0 as i128,
                    MarketEvent::Failed { refund, .. } => cost -= refund.0 as i128,
                    MarketEvent::Slashed { to_client, .. } => cost -= to_client.0 as i128,
                    _ => {}
                }
            }
            *expected.entry(s.signer).or_default() -= cost;
        }
    }
    let label = |a: &Address| {
        if let Some(i) = job_keys.iter().position(|k| k.address() == *a) {
            format!("job key {i}")
        } else if transfer_key.address() == *a {
            "transfer key".to_owned()
        } else if sink == *a {
            "used-nonce sink".to_owned()
        } else {
            format!("recipient {}", a.short())
        }
    };
    for (a, want) in expected {
        let acct: agora_market::AccountView = nodes
            .first(0, |c| c.get_json(&format!("/v1/accounts/{a}")))
            .with_context(|| format!("reading account {a}"))?;
        let got = acct.balance.0 as i128;
        report.money.push(MoneyLine {
            key: label(&a),
            expected: want.to_string(),
            actual: got.to_string(),
            exact: got == want,
        });
    }
    Ok(())
}

fn genesis_supply(dir: &Path) -> anyhow::Result<u128> {
    let g = agora_node::genesis::load(&dir.join(crate::testnet::GENESIS_FILE))?;
    Ok(g.supply().context("genesis supply")?.0)
}

/// The market's supply is the genesis supply, and its own invariant check (every unit held,
/// locked, in escrow or burned adds up to it) passes.
fn supply(report: &mut Report, nodes: &Nodes, genesis: u128) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    struct MarketDoc {
        status: agora_market::MarketStatus,
        invariants: String,
    }
    let m: MarketDoc = nodes
        .first(0, |c| c.get_json("/v1/market"))
        .context("reading /v1/market")?;
    report.supply = SupplyLine {
        genesis: genesis.to_string(),
        now: m.status.supply.0.to_string(),
        burned: m.status.burned.0.to_string(),
        conserved: m.status.supply.0 == genesis && m.invariants == "ok",
        invariants: m.invariants,
    };
    Ok(())
}

/// The app hash of every height all nodes have, compared across nodes.
fn divergences(report: &mut Report, nodes: &Nodes) -> anyhow::Result<()> {
    let clients = nodes.clients();
    let mut common = u64::MAX;
    for (name, c) in &clients {
        let h = c
            .status()
            .with_context(|| format!("{name} does not answer after the run"))?
            .height;
        common = common.min(h);
    }
    for h in 1..=common {
        let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, c) in &clients {
            let b: serde_json::Value = c
                .get_json(&format!("/v1/blocks/{h}"))
                .with_context(|| format!("block {h} from {name}"))?;
            let app = b["app_hash"].as_str().unwrap_or_default().to_owned();
            seen.entry(app).or_default().push(name.clone());
        }
        if seen.len() > 1 {
            let parts: Vec<String> = seen
                .iter()
                .map(|(hash, who)| format!("{} on {}", &hash[..hash.len().min(8)], who.join(",")))
                .collect();
            report
                .divergences
                .push(format!("height {h}: {}", parts.join(" vs ")));
        }
        report.heights_compared += 1;
    }
    Ok(())
}

/// The broken invariants, each in one line.
fn judge(r: &mut Report) {
    let mut broken = Vec::new();
    if r.jobs.lost + r.transactions.lost > 0 {
        broken.push(format!(
            "{} lost ({} jobs, {} transactions)",
            r.lost.len(),
            r.jobs.lost,
            r.transactions.lost
        ));
    }
    if !r.divergences.is_empty() {
        broken.push(format!("{} app-hash divergences", r.divergences.len()));
    }
    if !r.honest_slashes.is_empty() {
        broken.push(format!("{} honest slashes", r.honest_slashes.len()));
    }
    let off: Vec<&MoneyLine> = r.money.iter().filter(|m| !m.exact).collect();
    if !off.is_empty() {
        broken.push(format!(
            "money off on {}",
            off.iter()
                .map(|m| m.key.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !r.supply.conserved {
        broken.push("supply not conserved".into());
    }
    let b = &r.byzantine_client;
    if b.junk_accepted > 0 {
        broken.push(format!(
            "{} junk transactions acknowledged",
            b.junk_accepted
        ));
    }
    r.broken = broken;
}

fn print_report(r: &Report) {
    println!();
    println!(
        "chaos report, seed {} ({} s of faults)",
        r.seed, r.duration_s
    );
    println!(
        "network    {} operators + {} coprocessors{}{}",
        r.operators,
        r.coprocessors,
        if r.netns {
            ", each in its own namespace"
        } else {
            ""
        },
        if r.byzantine.is_empty() {
            String::new()
        } else {
            format!(", byzantine {}", r.byzantine.join(" "))
        }
    );
    let j = &r.jobs;
    println!(
        "jobs       {} submitted, {} acknowledged, {} in blocks: {} settled, {} refunded, {} failed, {} lost",
        j.submitted, j.acknowledged, j.in_block, j.settled, j.refunded, j.failed, j.lost
    );
    let t = &r.transactions;
    println!(
        "txs        {} submitted, {} acknowledged, {} in blocks, {} never acknowledged ({} refused), {} lost; {} sends unanswered before an acknowledgement",
        t.submitted, t.acknowledged, t.in_block, t.never_acknowledged, t.refused, t.lost, t.unanswered_sends
    );
    for why in t.refusals.iter().take(5) {
        println!("  refused: {why}");
    }
    let b = &r.byzantine_client;
    println!(
        "byz client junk {}/{} accepted, replays {}/{} accepted (never applied twice: see money), used nonces {}/{} accepted",
        b.junk_accepted, b.junk_sent, b.replays_accepted, b.replays_sent, b.stale_nonces_accepted, b.stale_nonces_sent
    );
    for c in &r.coprocessors_seen {
        println!(
            "  {:<14} {:<13} completed {:>4}  failed {:>3}  earned {:>8}  slashed {:>7}",
            c.name,
            c.byzantine.as_deref().unwrap_or("honest"),
            c.completed,
            c.failed,
            c.earned,
            c.slashed
        );
    }
    println!(
        "slashes    {} honest, {} excused (timeouts of nodes the schedule faulted)",
        r.honest_slashes.len(),
        r.excused_slashes.len()
    );
    for s in r.honest_slashes.iter().take(10) {
        println!("  honest slash: {s}");
    }
    for s in &r.byzantine_punished {
        println!("  punished: {s}");
    }
    for s in &r.byzantine_unpunished {
        println!("  not punished: {s}");
    }
    let exact = r.money.iter().filter(|m| m.exact).count();
    println!(
        "money      {exact} of {} keys exact to the unit",
        r.money.len()
    );
    for m in r.money.iter().filter(|m| !m.exact) {
        println!("  {}: expected {}, has {}", m.key, m.expected, m.actual);
    }
    println!(
        "supply     {} (genesis {}), {} burned, holdings check: {}",
        r.supply.now, r.supply.genesis, r.supply.burned, r.supply.invariants
    );
    println!(
        "app hash   {} heights compared on every node, {} divergences",
        r.heights_compared,
        r.divergences.len()
    );
    for d in r.divergences.iter().take(10) {
        println!("  {d}");
    }
    println!(
        "halt       longest {:.1} s without a new block, from {:.1} s into the run",
        r.longest_halt_ms as f64 / 1000.0,
        r.longest_halt_from_ms as f64 / 1000.0
    );
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    for f in &r.faults {
        *kinds.entry(f.planned.kind.as_str()).or_default() += 1;
    }
    let failed = r.faults.iter().filter(|f| f.error.is_some()).count();
    println!(
        "faults     {} applied ({}){}",
        r.faults.len(),
        kinds
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        if failed > 0 {
            format!(", {failed} with errors")
        } else {
            String::new()
        }
    );
    for l in r.lost.iter().take(10) {
        println!("  lost: {l}");
    }
    if r.broken.is_empty() {
        println!("verdict    every invariant held");
    } else {
        println!("verdict    BROKEN: {}", r.broken.join("; "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        [
            "operator-0",
            "operator-1",
            "operator-2",
            "operator-3",
            "coprocessor-0",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn a_seed_gives_one_schedule_within_the_duration() {
        let a = schedule(7, Duration::from_secs(120), &names(), &ALL_FAULTS);
        let b = schedule(7, Duration::from_secs(120), &names(), &ALL_FAULTS);
        assert_eq!(a, b);
        assert_ne!(
            a,
            schedule(8, Duration::from_secs(120), &names(), &ALL_FAULTS)
        );
        assert!(a.len() >= 10, "{}", a.len());
        let mut end = 0;
        for p in &a {
            assert!(p.at_ms >= end, "faults overlap: {a:?}");
            assert!(p.at_ms < 120_000);
            end = p.at_ms + p.hold_ms;
            match p.kind {
                FaultKind::Delay => assert!((20..=250).contains(&p.amount)),
                FaultKind::Loss => assert!((100..=1_500).contains(&p.amount)),
                FaultKind::Restart => assert_eq!(p.hold_ms, 0),
                _ => assert!(p.target != "all" && (3_000..=8_000).contains(&p.hold_ms)),
            }
        }
        // Every kind turns up in each round of six, and only the kinds asked for.
        for round in a.chunks_exact(ALL_FAULTS.len()) {
            let kinds: std::collections::BTreeSet<FaultKind> =
                round.iter().map(|p| p.kind).collect();
            assert_eq!(kinds.len(), ALL_FAULTS.len(), "{round:?}");
        }
        let only = schedule(1, Duration::from_secs(600), &names(), &[FaultKind::Pause]);
        assert!(only.iter().all(|p| p.kind == FaultKind::Pause));
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("ten")
            .unwrap_err()
            .contains("not a duration"));
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn a_report_with_anything_lost_or_off_is_broken() {
        let mut r = Report {
            seed: 1,
            duration_s: 1,
            operators: 4,
            coprocessors: 3,
            money: vec![MoneyLine {
                key: "job key 0".into(),
                expected: "5".into(),
                actual: "5".into(),
                exact: true,
            }],
            supply: SupplyLine {
                conserved: true,
                ..SupplyLine::default()
            },
            heights_compared: 3,
            ..Report::default()
        };
        judge(&mut r);
        assert!(r.broken.is_empty(), "{:?}", r.broken);
        r.jobs.lost = 1;
        r.lost.push("job x".into());
        r.money[0].exact = false;
        r.divergences.push("height 2".into());
        r.byzantine_client.junk_accepted = 1;
        judge(&mut r);
        assert_eq!(r.broken.len(), 4, "{:?}", r.broken);
    }
}
