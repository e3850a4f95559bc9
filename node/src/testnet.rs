//! `agora testnet up|status|down`: a local multi-node network of real processes on loopback.
//!
//! `up` generates (or, if the directory already holds a testnet, reuses) one home per node, a
//! shared genesis and a funded client key, starts every node as its own OS process with
//! OS-assigned ports, waits until each has written its bound addresses, and records the result
//! in `DIR/testnet.json`. In the foreground it prints a live status line and stops every child
//! on Ctrl-C; with `--detach` the children run in their own session and `down` stops them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use agora_client::{Client, TestnetFile, TestnetNode, TESTNET_FILE};
use agora_crypto::Keypair;
use anyhow::{bail, Context};

use crate::config::Role;
use crate::home::{peer_id, Home};

/// Stake of each generated operator.
pub const OPERATOR_STAKE: u128 = 1_000_000;
/// Starting balance of the client key and of each coprocessor.
pub const FUNDING: u128 = 1_000_000_000;
/// The genesis file name, in the testnet dir and in every home.
pub const GENESIS_FILE: &str = "genesis.json";
const CLIENT_KEY: &str = "client.key";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

struct Planned {
    name: String,
    role: Role,
    home: Home,
    key: Keypair,
}

/// `agora testnet up`.
pub async fn up(
    operators: u32,
    coprocessors: u32,
    dir: &Path,
    detach: bool,
    demo: bool,
) -> anyhow::Result<()> {
    if operators == 0 {
        bail!("--operators must be at least 1");
    }
    let tn_file = dir.join(TESTNET_FILE);
    if tn_file.exists() {
        let existing = TestnetFile::read(&tn_file)?;
        let alive: Vec<&TestnetNode> = existing
            .nodes
            .iter()
            .filter(|n| n.pid.is_some_and(process_alive))
            .collect();
        if !alive.is_empty() {
            bail!(
                "testnet in {} is already running ({} live nodes); stop it with `agora testnet down --dir {}`",
                dir.display(),
                alive.len(),
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("cannot create testnet dir {}", dir.display()))?;
    let plan = plan_or_resume(operators, coprocessors, dir)?;

    let mut children = Vec::new();
    let mut nodes: Vec<TestnetNode> = Vec::new();
    let mut bootstrap: Vec<String> = Vec::new();
    let exe = std::env::current_exe().context("cannot find the agora executable")?;
    let started = Instant::now();
    for p in &plan {
        // Stale address files from a previous run must not be mistaken for this run's.
        let _ = std::fs::remove_file(p.home.api_addr_file());
        let _ = std::fs::remove_file(p.home.p2p_addr_file());
        let log_path = dir.join("logs").join(format!("{}.log", p.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open log {}", log_path.display()))?;
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("node").arg("--home").arg(p.home.root()).args([
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
        ]);
        for b in &bootstrap {
            cmd.args(["--bootstrap", b]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        if detach {
            cmd.process_group(0);
        } else {
            cmd.kill_on_drop(true);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start node {}", p.name))?;
        let pid = child.id();
        children.push(child);
        let (api, listen) = wait_ready(&p.home, &log_path, &mut children).await?;
        if p.role == Role::Operator && bootstrap.len() < 8 {
            bootstrap.push(listen.clone());
        }
        nodes.push(TestnetNode {
            name: p.name.clone(),
            role: p.role.as_str().to_owned(),
            peer_id: peer_id(&p.key),
            address: p.key.address().to_hex(),
            listen,
            api,
            pid,
        });
    }
    let file = TestnetFile {
        nodes,
        client_key: dir.join(CLIENT_KEY),
    };
    file.write(&tn_file)?;
    println!(
        "testnet up: {} nodes in {:.1}s, described in {}",
        file.nodes.len(),
        started.elapsed().as_secs_f64(),
        tn_file.display()
    );
    for n in &file.nodes {
        println!(
            "  {:<14} {:<11} {}  pid {}",
            n.name,
            n.role,
            n.api,
            n.pid.unwrap_or(0)
        );
    }
    println!("  client key     {}", file.client_key.display());
    if let Some(first) = wait_first_block(&file, Duration::from_secs(60)).await {
        println!(
            "first block decided {:.1}s after start",
            (first - started).as_secs_f64()
        );
    }
    if detach {
        println!(
            "detached; stop with `agora testnet down --dir {}`",
            dir.display()
        );
        return Ok(());
    }
    let has_coprocessors = file.nodes.iter().any(|n| n.role == "coprocessor");
    let mut interrupted = false;
    if demo && has_coprocessors {
        let api = file.nodes[0].api.clone();
        let key = file.client_key.clone();
        // Runs beside the nodes: a demo that fails is reported, and the testnet keeps running.
        let mut job = tokio::task::spawn_blocking(move || crate::jobs::demo(&api, &key));
        tokio::select! {
            r = &mut job => match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => println!("demo job failed: {e:#}"),
                Err(e) => println!("demo job failed: {e}"),
            },
            _ = tokio::signal::ctrl_c() => interrupted = true,
        }
    }
    if interrupted {
        eprintln!("\nstopping {} nodes", children.len());
        stop_all(&mut children).await;
    } else {
        println!("press Ctrl-C to stop");
        foreground(&file, children).await;
    }
    let mut file = file;
    for n in &mut file.nodes {
        n.pid = None;
    }
    file.write(&tn_file)?;
    Ok(())
}

/// Reuse the homes of an existing testnet dir, or generate keys, homes and genesis.
fn plan_or_resume(operators: u32, coprocessors: u32, dir: &Path) -> anyhow::Result<Vec<Planned>> {
    let genesis_path = dir.join(GENESIS_FILE);
    if genesis_path.exists() {
        let mut plan = Vec::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join(crate::home::CONFIG_FILE).exists())
            .collect();
        entries.sort_by_key(|p| node_order(p));
        for path in entries {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let role = if name.starts_with("operator") {
                Role::Operator
            } else {
                Role::Coprocessor
            };
            let home = Home::new(&path);
            let key = home.load_key(&home.load_config()?)?;
            plan.push(Planned {
                name,
                role,
                home,
                key,
            });
        }
        if plan.is_empty() {
            bail!("{} has a genesis but no node homes", dir.display());
        }
        println!("resuming the testnet in {} from its stores", dir.display());
        return Ok(plan);
    }
    let mut plan = Vec::new();
    for i in 0..operators {
        plan.push(new_node(dir, format!("operator-{i}"), Role::Operator)?);
    }
    for i in 0..coprocessors {
        plan.push(new_node(
            dir,
            format!("coprocessor-{i}"),
            Role::Coprocessor,
        )?);
    }
    let client_path = dir.join(CLIENT_KEY);
    let client = if client_path.exists() {
        agora_crypto::load_key(&client_path)?
    } else {
        let k = Keypair::generate();
        agora_crypto::save_key(&client_path, &k)?;
        k
    };
    let operators: Vec<_> = plan
        .iter()
        .filter(|p| p.role == Role::Operator)
        .map(|p| p.key.address())
        .collect();
    let funded: Vec<_> = std::iter::once(client.address())
        .chain(
            plan.iter()
                .filter(|p| p.role == Role::Coprocessor)
                .map(|p| p.key.address()),
        )
        .collect();
    let genesis = crate::genesis::build(
        format!("agora-testnet-{}", Keypair::generate().address().short()),
        &operators,
        OPERATOR_STAKE,
        &funded,
        FUNDING,
    );
    genesis.validate().context("generated genesis is invalid")?;
    let text = genesis.to_json_pretty();
    std::fs::write(&genesis_path, &text)
        .with_context(|| format!("cannot write {}", genesis_path.display()))?;
    for p in &plan {
        let path = p.home.root().join(GENESIS_FILE);
        std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(plan)
}

fn node_order(p: &Path) -> (u8, u32) {
    let name = p.file_name().unwrap_or_default().to_string_lossy();
    let kind = if name.starts_with("operator") { 0 } else { 1 };
    let idx = name
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX);
    (kind, idx)
}

fn new_node(dir: &Path, name: String, role: Role) -> anyhow::Result<Planned> {
    let home = Home::new(dir.join(&name));
    let key = crate::commands::init_home(&home, &[role])?;
    Ok(Planned {
        name,
        role,
        home,
        key,
    })
}

/// Wait until the node has written both address files, failing early if it exits.
async fn wait_ready(
    home: &Home,
    log: &Path,
    children: &mut [tokio::process::Child],
) -> anyhow::Result<(String, String)> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let api = std::fs::read_to_string(home.api_addr_file()).ok();
        let p2p = std::fs::read_to_string(home.p2p_addr_file()).ok();
        if let (Some(api), Some(p2p)) = (api, p2p) {
            return Ok((api.trim().to_owned(), p2p.trim().to_owned()));
        }
        if let Some(child) = children.last_mut() {
            if let Some(status) = child.try_wait()? {
                let tail = tail_of(log, 5);
                stop_all(children).await;
                bail!(
                    "node {} exited with {status} during start; log {}:\n{tail}",
                    home.root().display(),
                    log.display()
                );
            }
        }
        if Instant::now() > deadline {
            stop_all(children).await;
            bail!(
                "node {} did not become ready within {:?}; see {}",
                home.root().display(),
                READY_TIMEOUT,
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn tail_of(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

async fn wait_first_block(file: &TestnetFile, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    let api = file.nodes.first()?.api.clone();
    while Instant::now() < deadline {
        let api2 = api.clone();
        let h = tokio::task::spawn_blocking(move || {
            Client::new(&api2).ok()?.status().ok().map(|s| s.height)
        })
        .await
        .ok()
        .flatten();
        if h.is_some_and(|h| h >= 1) {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Print a live status line until Ctrl-C/SIGTERM or until every child has exited.
async fn foreground(file: &TestnetFile, mut children: Vec<tokio::process::Child>) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => break,
            _ = tick.tick() => {
                ticks += 1;
                let line = status_line(file).await;
                if tty {
                    eprint!("\r{line}\x1b[K");
                } else if ticks % 10 == 1 {
                    eprintln!("{line}");
                }
                let mut exited = 0;
                for c in children.iter_mut() {
                    if matches!(c.try_wait(), Ok(Some(_))) { exited += 1; }
                }
                if exited == children.len() {
                    eprintln!("\nevery node has exited");
                    return;
                }
            }
        }
    }
    eprintln!("\nstopping {} nodes", children.len());
    stop_all(&mut children).await;
}

async fn status_line(file: &TestnetFile) -> String {
    let apis: Vec<(String, String)> = file
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.api.clone()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut parts = Vec::new();
        for (name, api) in apis {
            let s = Client::new(&api).ok().and_then(|c| c.status().ok());
            parts.push(match s {
                Some(s) if s.halted => format!(
                    "{}:h{} p{} halted {}s",
                    short_name(&name),
                    s.height,
                    s.peers,
                    s.last_block_age_ms.unwrap_or(0) / 1000
                ),
                Some(s) => format!("{}:h{} p{}", short_name(&name), s.height, s.peers),
                None => format!("{}:down", short_name(&name)),
            });
        }
        parts.join("  ")
    })
    .await
    .unwrap_or_default()
}

fn short_name(name: &str) -> String {
    let (kind, idx) = name.split_once('-').unwrap_or((name, ""));
    format!("{}{}", &kind[..1], idx)
}

/// SIGTERM every child, wait up to 10 s, then SIGKILL the rest.
async fn stop_all(children: &mut [tokio::process::Child]) {
    for c in children.iter() {
        if let Some(pid) = c.id() {
            signal(pid, nix::sys::signal::Signal::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for c in children.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, c.wait()).await.is_err() {
            let _ = c.kill().await;
        }
    }
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).is_ok()
}

fn process_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None).is_ok()
}

/// `agora testnet status`.
pub fn status(dir: &Path, json: bool) -> anyhow::Result<()> {
    let path = dir.join(TESTNET_FILE);
    if !path.exists() {
        bail!(
            "no testnet in {} (no {TESTNET_FILE}); start one with `agora testnet up`",
            dir.display()
        );
    }
    let file = TestnetFile::read(&path)?;
    let mut rows = Vec::new();
    for n in &file.nodes {
        let st = Client::new(&n.api).ok().and_then(|c| c.status().ok());
        rows.push((n, st));
    }
    if json {
        let nodes: Vec<serde_json::Value> = rows
            .iter()
            .map(|(n, st)| {
                let state = st.as_ref().map(crate::commands::chain_state);
                serde_json::json!({"name": n.name, "role": n.role, "api": n.api, "pid": n.pid, "up": st.is_some(), "state": state.as_deref().unwrap_or("down"), "status": st})
            })
            .collect();
        println!("{}", serde_json::json!({ "dir": dir, "nodes": nodes }));
        return Ok(());
    }
    println!(
        "{:<14} {:<11} {:>7} {:>6} {:<17} api",
        "node", "role", "height", "peers", "state"
    );
    for (n, st) in rows {
        match st {
            Some(s) => println!(
                "{:<14} {:<11} {:>7} {:>6} {:<17} {}",
                n.name,
                n.role,
                s.height,
                s.peers,
                crate::commands::chain_state(&s),
                n.api
            ),
            None => println!(
                "{:<14} {:<11} {:>7} {:>6} {:<17} {}",
                n.name, n.role, "-", "-", "down", n.api
            ),
        }
    }
    Ok(())
}

/// `agora testnet down`: stop the processes recorded in `testnet.json`.
pub fn down(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join(TESTNET_FILE);
    if !path.exists() {
        bail!("no testnet in {} (no {TESTNET_FILE})", dir.display());
    }
    let mut file = TestnetFile::read(&path)?;
    let pids: Vec<u32> = file
        .nodes
        .iter()
        .filter_map(|n| n.pid)
        .filter(|p| process_alive(*p))
        .collect();
    for pid in &pids {
        signal(*pid, nix::sys::signal::Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && pids.iter().any(|p| process_alive(*p)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut killed = 0;
    for pid in &pids {
        if process_alive(*pid) && signal(*pid, nix::sys::signal::Signal::SIGKILL) {
            killed += 1;
        }
    }
    for n in &mut file.nodes {
        n.pid = None;
    }
    file.write(&path)?;
    println!(
        "stopped {} nodes{}",
        pids.len(),
        if killed > 0 {
            format!(" ({killed} killed after 10 s)")
        } else {
            String::new()
        }
    );
    Ok(())
}
