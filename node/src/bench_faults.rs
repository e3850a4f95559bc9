//! `agora bench faults`: what dead operators cost a client, measured end to end.
//!
//! One run, one process tree (the bench is the parent of every node), three phases:
//!
//! 1. a fresh testnet of 4 operators and 3 coprocessors, every node healthy;
//! 2. the same testnet once its last operator, `operator-3`, is killed with SIGKILL;
//! 3. a fresh testnet of 7 operators and 3 coprocessors once its last two operators,
//!    `operator-5` and `operator-6`, are killed with SIGKILL.
//!
//! The last operators are the ones killed: the choice is fixed, and it spares `operator-0`, the
//! node whose API the bench talks to. Operators have equal stakes, so which ones die does not
//! change how often a dead one is drawn as proposer. The kill goes through the code of
//! `agora testnet fault kill`.
//!
//! Each phase starts once the chain commits blocks again (a few new heights after the kill). The
//! bench then offers a fixed load of 1-unit transfers from a key of its own — the load of
//! `agora bench tx` — and meanwhile runs tiny jobs one after another as `agora job submit --wait`
//! does (upload the `hello` module and its input, sign the submission with the client key, follow
//! `/v1/jobs/{id}` until the job is final; the CLI's defaults: one replica, a 10 s Dutch auction).
//! A job's latency runs from just before its submission is posted to the first poll (every
//! 20 ms) that sees it final. The load lasts until the jobs are done and at least `--secs` have
//! passed; blocks/s is the heights committed during it divided by its length.
//!
//! It prints the figures of each phase, then the degraded phases as ratios to the healthy one
//! (`--json`: one object). The testnets live in a directory under the OS temp dir, removed
//! afterwards, or under `--dir`, kept with the nodes' logs. The nodes are stopped when the bench
//! ends, fails, or gets Ctrl-C or SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_client::{Client, TestnetFile};
use agora_crypto::Keypair;
use agora_types::{Amount, Hash};
use anyhow::{bail, Context};
use serde::Serialize;

use crate::bench::{percentile, TransferLoad, TransferReport};
use crate::testnet::Fault;

/// New heights after which the chain counts as live.
const LIVE_HEIGHTS: u64 = 3;
/// How long the chain may take to commit [`LIVE_HEIGHTS`] heights, or the coprocessors to
/// become active.
const LIVE_TIMEOUT: Duration = Duration::from_secs(120);
/// How often a job's state is read while waiting for it to be final.
const JOB_POLL: Duration = Duration::from_millis(20);
/// Given to the load key once per testnet; each transfer moves one unit.
pub(crate) const LOAD_FUNDS: u128 = 10_000_000;
/// The goal the degraded phases are measured against (the resilience issue's).
const GOAL_P50_RATIO: f64 = 2.0;
const GOAL_BLOCKS_RATIO: f64 = 0.5;

/// Options of `agora bench faults`.
#[derive(Debug, clap::Args)]
pub struct BenchFaultsArgs {
    /// Tiny jobs per phase, each submitted once the one before is final
    #[arg(long, default_value_t = 30)]
    pub jobs: u64,
    /// Shortest length of each phase's load, in seconds (it lasts until the jobs are done)
    #[arg(long, value_name = "S", default_value_t = 20)]
    pub secs: u64,
    /// Transfers offered per second during each phase
    #[arg(long, default_value_t = 50)]
    pub rate: u64,
    /// Seconds after which a job that is not final counts as unfinished
    #[arg(long, value_name = "S", default_value_t = 120)]
    pub job_timeout: u64,
    /// Directory for the testnets, kept afterwards [default: a new directory under the OS temp
    /// dir, removed afterwards]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
}

/// One testnet the bench starts, and the phases measured on it.
struct NetPlan {
    operators: u32,
    coprocessors: u32,
    phases: Vec<PhasePlan>,
}

/// One measured phase: the operators killed just before it (cumulative on its testnet).
struct PhasePlan {
    label: &'static str,
    kill: Vec<String>,
}

/// The three phases of the bench, on two testnets.
fn plan() -> Vec<NetPlan> {
    vec![
        NetPlan {
            operators: 4,
            coprocessors: 3,
            phases: vec![
                PhasePlan {
                    label: "healthy",
                    kill: Vec::new(),
                },
                PhasePlan {
                    label: "1 of 4 operators killed",
                    kill: vec!["operator-3".into()],
                },
            ],
        },
        NetPlan {
            operators: 7,
            coprocessors: 3,
            phases: vec![PhasePlan {
                label: "2 of 7 operators killed",
                kill: vec!["operator-5".into(), "operator-6".into()],
            }],
        },
    ]
}

/// The figures of one phase (also its `--json` form).
#[derive(Debug, Clone, Serialize)]
struct PhaseReport {
    phase: String,
    operators: u32,
    coprocessors: u32,
    /// Every operator dead during the phase.
    killed: Vec<String>,
    /// Height when the load started.
    start_height: u64,
    /// Length of the load, in seconds.
    window_s: f64,
    heights: u64,
    blocks_per_s: f64,
    tx: TxFigures,
    jobs: JobFigures,
}

#[derive(Debug, Clone, Serialize)]
struct TxFigures {
    offered_per_s: u64,
    sent: u64,
    refused: u64,
    committed: u64,
    /// Accepted but not in a block when the load ended.
    pending: u64,
    committed_per_s: f64,
    commit_p50_ms: Option<u64>,
    commit_p99_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
struct JobFigures {
    submitted: u64,
    settled: u64,
    refunded: u64,
    failed: u64,
    /// Not final within `--job-timeout`.
    unfinished: u64,
    /// Submit→settled of the settled jobs.
    p50_ms: Option<u64>,
    p99_ms: Option<u64>,
    max_ms: Option<u64>,
}

/// A degraded phase against the healthy one.
#[derive(Debug, Clone, Serialize)]
struct Ratio {
    phase: String,
    /// Degraded blocks/s over healthy blocks/s.
    blocks_per_s: Option<f64>,
    /// Degraded job latency over healthy job latency.
    p50: Option<f64>,
    p99: Option<f64>,
    /// Whether the phase meets the goal (p50 ≤ 2× healthy and blocks/s ≥ 0.5× healthy).
    goal_met: bool,
}

/// `agora bench faults`.
pub fn run(args: &BenchFaultsArgs) -> anyhow::Result<()> {
    if args.jobs == 0 || args.rate == 0 {
        bail!("--jobs and --rate must be positive");
    }
    if args.job_timeout == 0 {
        bail!("--job-timeout must be positive");
    }
    let root = Root::create(args.dir.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(run_all(args, root.path()));
    // The blocking work notices the stop flag within a poll; do not wait on it for long.
    runtime.shutdown_timeout(Duration::from_secs(5));
    let reports = result?;
    let ratios = ratios(&reports);
    if args.json {
        let doc = serde_json::json!({
            "jobs": args.jobs, "rate": args.rate, "secs": args.secs,
            "job_timeout_s": args.job_timeout,
            "phases": reports,
            "ratios": ratios,
            "goal": { "p50_ratio_at_most": GOAL_P50_RATIO, "blocks_ratio_at_least": GOAL_BLOCKS_RATIO },
        });
        println!("{doc}");
    } else {
        print_summary(&reports, &ratios);
    }
    if !root.temporary {
        eprintln!("testnets and node logs kept in {}", root.path().display());
    }
    Ok(())
}

/// Where the testnets live: a fresh directory under the OS temp dir (removed on drop), or the
/// user's `--dir` (kept).
struct Root {
    path: PathBuf,
    temporary: bool,
}

impl Root {
    fn create(dir: Option<&Path>) -> anyhow::Result<Root> {
        match dir {
            Some(d) => {
                std::fs::create_dir_all(d)
                    .with_context(|| format!("cannot create {}", d.display()))?;
                for (i, net) in plan().iter().enumerate() {
                    let sub = d.join(net_dir_name(i, net));
                    if sub.exists() {
                        bail!(
                            "{} already exists; give --dir a directory without earlier bench runs",
                            sub.display()
                        );
                    }
                }
                Ok(Root {
                    path: d.to_owned(),
                    temporary: false,
                })
            }
            None => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or_default();
                let path = std::env::temp_dir()
                    .join(format!("agora-bench-faults-{}-{stamp}", std::process::id()));
                std::fs::create_dir(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                Ok(Root {
                    path,
                    temporary: true,
                })
            }
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn net_dir_name(i: usize, net: &NetPlan) -> String {
    format!("net{}-{}x{}", i + 1, net.operators, net.coprocessors)
}

/// Run every testnet of the plan in turn, stopping each before the next starts.
async fn run_all(args: &BenchFaultsArgs, root: &Path) -> anyhow::Result<Vec<PhaseReport>> {
    let (stop, rx, signals) = on_signals();
    let plan = plan();
    let total: usize = plan.iter().map(|n| n.phases.len()).sum();
    let mut reports = Vec::new();
    let mut result = Ok(());
    for (i, net) in plan.iter().enumerate() {
        let dir = root.join(net_dir_name(i, net));
        result = run_net(args, &dir, net, total, &stop, rx.clone(), &mut reports).await;
        if result.is_err() {
            break;
        }
    }
    signals.abort();
    result.map(|()| reports)
}

/// A stop flag and a watch that Ctrl-C or SIGTERM sets, and the task that waits for them
/// (abort it when done).
pub(crate) fn on_signals() -> (
    Arc<AtomicBool>,
    tokio::sync::watch::Receiver<bool>,
    tokio::task::JoinHandle<()>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::watch::channel(false);
    let signals = {
        let stop = stop.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            stop.store(true, Ordering::Relaxed);
            let _ = tx.send(true);
        })
    };
    (stop, rx, signals)
}

/// Resolves once Ctrl-C or SIGTERM has arrived (at once if it already has).
pub(crate) async fn interrupted(mut rx: tokio::sync::watch::Receiver<bool>) {
    if rx.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// `work` on a blocking thread, unless a signal comes first.
pub(crate) async fn guarded<T: Send + 'static>(
    rx: &tokio::sync::watch::Receiver<bool>,
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let task = tokio::task::spawn_blocking(work);
    tokio::select! {
        r = task => r.map_err(|e| anyhow::anyhow!("bench task failed: {e}"))?,
        _ = interrupted(rx.clone()) => bail!("interrupted; the testnet is stopped"),
    }
}

/// Start one testnet, measure its phases, and stop it whatever happened.
async fn run_net(
    args: &BenchFaultsArgs,
    dir: &Path,
    net: &NetPlan,
    total: usize,
    stop: &Arc<AtomicBool>,
    rx: tokio::sync::watch::Receiver<bool>,
    reports: &mut Vec<PhaseReport>,
) -> anyhow::Result<()> {
    eprintln!(
        "starting {} operators + {} coprocessors in {}",
        net.operators,
        net.coprocessors,
        dir.display()
    );
    let started = tokio::select! {
        r = crate::testnet::start(net.operators, net.coprocessors, dir, false, false, &[]) => r?,
        _ = interrupted(rx.clone()) => bail!("interrupted while starting the testnet"),
    };
    let (file, mut children) = started;
    let result = measure_net(args, dir, net, total, file, stop, &rx, reports).await;
    eprintln!("stopping the testnet in {}", dir.display());
    crate::testnet::stop_all(&mut children).await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn measure_net(
    args: &BenchFaultsArgs,
    dir: &Path,
    net: &NetPlan,
    total: usize,
    file: TestnetFile,
    stop: &Arc<AtomicBool>,
    rx: &tokio::sync::watch::Receiver<bool>,
    reports: &mut Vec<PhaseReport>,
) -> anyhow::Result<()> {
    let api = file.nodes[0].api.clone();
    let client_key = agora_crypto::load_key(&file.client_key)?;
    let coprocessors = net.coprocessors;
    {
        let (api, client_key, stop) = (api.clone(), client_key.clone(), stop.clone());
        guarded(rx, move || {
            prepare(&Client::new(&api)?, &client_key, coprocessors, 1, &stop)
        })
        .await?;
    }
    let mut killed: Vec<String> = Vec::new();
    for phase in &net.phases {
        for name in &phase.kill {
            let report = {
                let (dir, name) = (dir.to_owned(), name.clone());
                guarded(rx, move || {
                    crate::testnet::fault_signal(&dir, &name, Fault::Kill)
                })
                .await?
            };
            eprintln!(
                "killed {} (pid {}, SIGKILL)",
                report.node,
                report.pid.unwrap_or(0)
            );
            killed.push(report.node);
        }
        let n = reports.len() + 1;
        eprintln!(
            "phase {n}/{total}: {} ({} operators + {} coprocessors): waiting for blocks",
            phase.label, net.operators, net.coprocessors
        );
        let setup = Setup {
            label: phase.label.to_owned(),
            operators: net.operators,
            coprocessors: net.coprocessors,
            killed: killed.clone(),
            api: api.clone(),
            client_key: client_key.clone(),
            jobs: args.jobs,
            rate: args.rate,
            secs: Duration::from_secs(args.secs),
            job_timeout: Duration::from_secs(args.job_timeout),
        };
        let stop = stop.clone();
        let report = guarded(rx, move || measure(&setup, &stop)).await?;
        if !args.json {
            print_phase(n, total, &report);
        }
        reports.push(report);
    }
    Ok(())
}

/// Everything one phase's measurement needs.
struct Setup {
    label: String,
    operators: u32,
    coprocessors: u32,
    killed: Vec<String>,
    api: String,
    client_key: Keypair,
    jobs: u64,
    rate: u64,
    secs: Duration,
    job_timeout: Duration,
}

fn check_stop(stop: &AtomicBool) -> anyhow::Result<()> {
    if stop.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// Wait for a fresh testnet to commit blocks and for its coprocessors to be active, and run one
/// warm-up job (its module compiled on a coprocessor, its output checked).
pub(crate) fn prepare(
    client: &Client,
    client_key: &Keypair,
    coprocessors: u32,
    replicas: u32,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let client = client.clone();
    wait_live(&client, stop)?;
    let deadline = Instant::now() + LIVE_TIMEOUT;
    loop {
        check_stop(stop)?;
        let v: serde_json::Value = client.get_json("/v1/coprocessors")?;
        let active = v["coprocessors"]
            .as_array()
            .map_or(0, |c| c.iter().filter(|c| c["active"] == true).count());
        if active >= coprocessors as usize {
            break;
        }
        if Instant::now() > deadline {
            bail!("{active} of {coprocessors} coprocessors active after {LIVE_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let module = wat::parse_str(crate::bench::BENCH_PROGRAM).context("assembling hello.wat")?;
    let (builder, _) = crate::jobs::builder_and_nonce(&client, client_key.clone())?;
    let mut next_nonce = 0;
    let warm = run_job(
        &client,
        &builder,
        &mut next_nonce,
        &module,
        replicas,
        LIVE_TIMEOUT,
        stop,
    )?;
    match warm {
        JobEnd::Final(state, _, id) if state == "settled" => {
            crate::bench::verify_one(&client, &id).context("the warm-up job's output")?
        }
        JobEnd::Final(state, _, id) => bail!("the warm-up job {id} ended {state}"),
        JobEnd::Unfinished(id) => bail!("the warm-up job {id} was not final in {LIVE_TIMEOUT:?}"),
    }

    Ok(())
}

/// A new key holding [`LOAD_FUNDS`], sent from the client key: each phase's load has its own
/// key, so no transfer of an earlier phase still in flight shares its nonces.
pub(crate) fn fund_load_key(
    client: &Client,
    client_key: &Keypair,
    stop: &AtomicBool,
) -> anyhow::Result<Keypair> {
    let load_key = Keypair::generate();
    let to = load_key.address();
    let signer = crate::jobs::Signer::new(client.clone(), client_key.clone())?;
    signer.send(|b, nonce| b.transfer(nonce, to, Amount(LOAD_FUNDS)))?;
    let deadline = Instant::now() + LIVE_TIMEOUT;
    loop {
        check_stop(stop)?;
        let a: agora_market::AccountView = client.get_json(&format!("/v1/accounts/{to}"))?;
        if a.balance.0 >= LOAD_FUNDS {
            return Ok(load_key);
        }
        if Instant::now() > deadline {
            bail!("funding the load key was not committed within {LIVE_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until the node has committed [`LIVE_HEIGHTS`] heights past the current one.
pub(crate) fn wait_live(client: &Client, stop: &AtomicBool) -> anyhow::Result<u64> {
    let from = client.status()?.height;
    let deadline = Instant::now() + LIVE_TIMEOUT;
    loop {
        check_stop(stop)?;
        let h = client.status()?.height;
        if h >= from + LIVE_HEIGHTS {
            return Ok(h);
        }
        if Instant::now() > deadline {
            bail!(
                "the chain committed {} heights in {LIVE_TIMEOUT:?} (from height {from})",
                h - from
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How a job the bench followed ended.
enum JobEnd {
    /// Its final state, submit→final latency, and id.
    Final(String, Duration, Hash),
    /// Not final within the timeout.
    Unfinished(Hash),
}

/// One tiny job as `agora job submit --wait` runs it: upload the module and input, sign the
/// submission with the CLI's default spec, post it, and poll the job until it is final.
fn run_job(
    client: &Client,
    builder: &agora_market::TxBuilder,
    next_nonce: &mut u64,
    module: &[u8],
    replicas: u32,
    timeout: Duration,
    stop: &AtomicBool,
) -> anyhow::Result<JobEnd> {
    let mut spec = crate::jobs::upload_job(
        client,
        module,
        crate::bench::BENCH_INPUT,
        Amount(crate::jobs::DEFAULT_MAX_PRICE),
        crate::jobs::DEFAULT_AUCTION_MS,
    )?;
    spec.replicas = replicas;
    // The committed nonce, as the CLI reads it; never one already used by an unfinished job.
    let nonce = crate::bench::account_nonce(client, &builder.address())?.max(*next_nonce);
    let env = builder.submit_job(nonce, spec);
    let id = env.hash();
    let bytes = agora_market::encode_envelope(&env);
    let submitted = Instant::now();
    client
        .post_bytes("/v1/tx", "application/octet-stream", &bytes)
        .context("submitting a job")?;
    *next_nonce = nonce + 1;
    let path = format!("/v1/jobs/{id}");
    loop {
        check_stop(stop)?;
        match client.get_json::<serde_json::Value>(&path) {
            Ok(v) => {
                let state = v["state"].as_str().unwrap_or_default();
                if matches!(state, "settled" | "refunded" | "failed") {
                    return Ok(JobEnd::Final(state.to_owned(), submitted.elapsed(), id));
                }
            }
            Err(agora_client::ClientError::Status { status: 404, .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if submitted.elapsed() > timeout {
            return Ok(JobEnd::Unfinished(id));
        }
        std::thread::sleep(JOB_POLL);
    }
}

/// Measure one phase: wait for blocks, then run the transfer load on its own thread while the
/// jobs run one after another on this one.
fn measure(setup: &Setup, stop: &AtomicBool) -> anyhow::Result<PhaseReport> {
    let client = Client::new(&setup.api)?;
    let load_key = fund_load_key(&client, &setup.client_key, stop)?;
    let live_at = wait_live(&client, stop)?;
    eprintln!(
        "  chain live at height {live_at}; offering {} tx/s and running {} jobs (at least {} s)",
        setup.rate,
        setup.jobs,
        setup.secs.as_secs()
    );
    let module = wat::parse_str(crate::bench::BENCH_PROGRAM).context("assembling hello.wat")?;
    let (builder, _) = crate::jobs::builder_and_nonce(&client, setup.client_key.clone())?;
    let load_over = AtomicBool::new(false);
    let load_stop = AtomicBool::new(false);
    let (jobs, load) = std::thread::scope(|s| {
        let load = s.spawn(|| {
            let r = crate::bench::transfer_load(
                &client,
                load_key,
                &TransferLoad {
                    rate: setup.rate,
                    count: None,
                    drain: Duration::ZERO,
                    stop: &load_stop,
                },
            );
            load_over.store(true, Ordering::Relaxed);
            r
        });
        let started = Instant::now();
        let jobs = run_jobs(setup, &client, &builder, &module, stop, &load_over);
        while jobs.is_ok()
            && started.elapsed() < setup.secs
            && !stop.load(Ordering::Relaxed)
            && !load_over.load(Ordering::Relaxed)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        load_stop.store(true, Ordering::Relaxed);
        let load = load
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the transfer load panicked")));
        (jobs, load)
    });
    let load = load.context("the transfer load")?;
    let jobs = jobs?;
    Ok(phase_report(setup, &load, jobs))
}

/// The latencies and end states of `setup.jobs` sequential jobs.
fn run_jobs(
    setup: &Setup,
    client: &Client,
    builder: &agora_market::TxBuilder,
    module: &[u8],
    stop: &AtomicBool,
    load_over: &AtomicBool,
) -> anyhow::Result<(JobFigures, Vec<Duration>)> {
    let mut figures = JobFigures::default();
    let mut latencies = Vec::new();
    let mut next_nonce = 0;
    for _ in 0..setup.jobs {
        if load_over.load(Ordering::Relaxed) {
            // The load ended early (it failed): its error is reported, the jobs stop here.
            break;
        }
        let end = run_job(
            client,
            builder,
            &mut next_nonce,
            module,
            1,
            setup.job_timeout,
            stop,
        )?;
        figures.submitted += 1;
        match end {
            JobEnd::Final(state, latency, _) => match state.as_str() {
                "settled" => {
                    figures.settled += 1;
                    latencies.push(latency);
                }
                "refunded" => figures.refunded += 1,
                _ => figures.failed += 1,
            },
            JobEnd::Unfinished(id) => {
                tracing::warn!(target: "bench", job = %id, "job not final within the timeout");
                figures.unfinished += 1;
            }
        }
    }
    latencies.sort();
    Ok((figures, latencies))
}

fn ms(d: Option<Duration>) -> Option<u64> {
    d.map(|d| d.as_millis() as u64)
}

fn phase_report(
    setup: &Setup,
    load: &TransferReport,
    (mut jobs, latencies): (JobFigures, Vec<Duration>),
) -> PhaseReport {
    jobs.p50_ms = ms(percentile(&latencies, 50));
    jobs.p99_ms = ms(percentile(&latencies, 99));
    jobs.max_ms = ms(latencies.last().copied());
    let window = load.elapsed.as_secs_f64();
    let committed = load.latencies.len() as u64;
    PhaseReport {
        phase: setup.label.clone(),
        operators: setup.operators,
        coprocessors: setup.coprocessors,
        killed: setup.killed.clone(),
        start_height: load.start_height,
        window_s: window,
        heights: load.end_height.saturating_sub(load.start_height),
        blocks_per_s: load.blocks_per_s(),
        tx: TxFigures {
            offered_per_s: setup.rate,
            sent: load.sent,
            refused: load.refused,
            committed,
            pending: load.pending as u64,
            committed_per_s: if window > 0.0 {
                committed as f64 / window
            } else {
                0.0
            },
            commit_p50_ms: ms(percentile(&load.latencies, 50)),
            commit_p99_ms: ms(percentile(&load.latencies, 99)),
        },
        jobs,
    }
}

/// `num / den`, if both are known and `den` is positive.
fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 => Some(n / d),
        _ => None,
    }
}

/// Every phase after the first against the first (healthy) one.
fn ratios(reports: &[PhaseReport]) -> Vec<Ratio> {
    let Some(healthy) = reports.first() else {
        return Vec::new();
    };
    let p = |r: &PhaseReport, f: fn(&JobFigures) -> Option<u64>| f(&r.jobs).map(|v| v as f64);
    reports
        .iter()
        .skip(1)
        .map(|r| {
            let blocks = ratio(Some(r.blocks_per_s), Some(healthy.blocks_per_s));
            let p50 = ratio(p(r, |j| j.p50_ms), p(healthy, |j| j.p50_ms));
            let p99 = ratio(p(r, |j| j.p99_ms), p(healthy, |j| j.p99_ms));
            let all_settled = r.jobs.settled == r.jobs.submitted && r.jobs.submitted > 0;
            Ratio {
                phase: r.phase.clone(),
                blocks_per_s: blocks,
                p50,
                p99,
                goal_met: all_settled
                    && p50.is_some_and(|x| x <= GOAL_P50_RATIO)
                    && blocks.is_some_and(|x| x >= GOAL_BLOCKS_RATIO),
            }
        })
        .collect()
}

fn fmt_ms(v: Option<u64>) -> String {
    v.map(|m| format!("{m} ms")).unwrap_or_else(|| "-".into())
}

fn print_phase(n: usize, total: usize, r: &PhaseReport) {
    let killed = if r.killed.is_empty() {
        String::new()
    } else {
        format!(", killed: {}", r.killed.join(", "))
    };
    println!(
        "phase {n}/{total}: {} — {} operators + {} coprocessors{killed}",
        r.phase, r.operators, r.coprocessors
    );
    println!(
        "  load    {} tx/s offered for {:.1} s from height {}: {} sent, {} refused, {} committed ({:.1} tx/s), {} pending; commit p50 {}, p99 {}",
        r.tx.offered_per_s,
        r.window_s,
        r.start_height,
        r.tx.sent,
        r.tx.refused,
        r.tx.committed,
        r.tx.committed_per_s,
        r.tx.pending,
        fmt_ms(r.tx.commit_p50_ms),
        fmt_ms(r.tx.commit_p99_ms),
    );
    println!(
        "  blocks  {} heights in {:.1} s: {:.2} blocks/s",
        r.heights, r.window_s, r.blocks_per_s
    );
    println!(
        "  jobs    {} sequential tiny jobs: {} settled, {} refunded, {} failed, {} unfinished",
        r.jobs.submitted, r.jobs.settled, r.jobs.refunded, r.jobs.failed, r.jobs.unfinished
    );
    println!(
        "          submit→settled p50 {}, p99 {}, max {}",
        fmt_ms(r.jobs.p50_ms),
        fmt_ms(r.jobs.p99_ms),
        fmt_ms(r.jobs.max_ms)
    );
}

fn print_summary(reports: &[PhaseReport], ratios: &[Ratio]) {
    let x = |v: Option<f64>| v.map(|v| format!("{v:.2}×")).unwrap_or_else(|| "-".into());
    println!();
    println!(
        "{:<26} {:>9} {:>10} {:>10} {:>8}",
        "phase", "blocks/s", "job p50", "job p99", "settled"
    );
    for r in reports {
        println!(
            "{:<26} {:>9.2} {:>10} {:>10} {:>8}",
            r.phase,
            r.blocks_per_s,
            fmt_ms(r.jobs.p50_ms),
            fmt_ms(r.jobs.p99_ms),
            format!("{}/{}", r.jobs.settled, r.jobs.submitted)
        );
    }
    println!();
    println!(
        "ratio to healthy (goal: job p50 ≤ {GOAL_P50_RATIO:.1}×, blocks/s ≥ {GOAL_BLOCKS_RATIO:.1}×, every job settled)"
    );
    println!(
        "{:<26} {:>9} {:>10} {:>10} {:>8}",
        "phase", "blocks/s", "job p50", "job p99", "goal"
    );
    for r in ratios {
        println!(
            "{:<26} {:>9} {:>10} {:>10} {:>8}",
            r.phase,
            x(r.blocks_per_s),
            x(r.p50),
            x(r.p99),
            if r.goal_met { "met" } else { "not met" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(phase: &str, blocks: f64, p50: u64, p99: u64, settled: u64) -> PhaseReport {
        PhaseReport {
            phase: phase.into(),
            operators: 4,
            coprocessors: 3,
            killed: Vec::new(),
            start_height: 0,
            window_s: 20.0,
            heights: 0,
            blocks_per_s: blocks,
            tx: TxFigures {
                offered_per_s: 50,
                sent: 0,
                refused: 0,
                committed: 0,
                pending: 0,
                committed_per_s: 0.0,
                commit_p50_ms: None,
                commit_p99_ms: None,
            },
            jobs: JobFigures {
                submitted: 10,
                settled,
                p50_ms: Some(p50),
                p99_ms: Some(p99),
                ..JobFigures::default()
            },
        }
    }

    #[test]
    fn ratios_compare_each_degraded_phase_to_the_healthy_one() {
        let reports = [
            report("healthy", 40.0, 200, 400, 10),
            report("slow", 2.0, 5000, 9000, 10),
            report("fine", 30.0, 300, 500, 10),
            report("lost a job", 30.0, 300, 500, 9),
        ];
        let r = ratios(&reports);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].phase, "slow");
        assert_eq!(r[0].blocks_per_s, Some(0.05));
        assert_eq!(r[0].p50, Some(25.0));
        assert_eq!(r[0].p99, Some(22.5));
        assert!(!r[0].goal_met);
        assert_eq!(r[1].p50, Some(1.5));
        assert_eq!(r[1].blocks_per_s, Some(0.75));
        assert!(r[1].goal_met);
        assert!(!r[2].goal_met, "a job that did not settle misses the goal");
        assert!(ratios(&[]).is_empty());
    }

    #[test]
    fn ratio_needs_both_figures_and_a_positive_base() {
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
    }

    #[test]
    fn the_plan_kills_the_last_operators_and_never_the_api_node() {
        let plan = plan();
        assert_eq!(plan.len(), 2);
        assert_eq!((plan[0].operators, plan[0].coprocessors), (4, 3));
        assert_eq!((plan[1].operators, plan[1].coprocessors), (7, 3));
        let kills: Vec<Vec<String>> = plan
            .iter()
            .flat_map(|n| n.phases.iter().map(|p| p.kill.clone()))
            .collect();
        assert_eq!(
            kills,
            vec![
                vec![],
                vec!["operator-3".to_owned()],
                vec!["operator-5".to_owned(), "operator-6".to_owned()]
            ]
        );
        for net in &plan {
            let killed: usize = net.phases.iter().map(|p| p.kill.len()).sum();
            // Fewer than a third of equal stakes may die, or the chain halts.
            assert!(3 * killed < net.operators as usize);
            for p in &net.phases {
                assert!(!p.kill.iter().any(|k| k == "operator-0"));
            }
        }
    }
}
