//! `agora testnet up|status|down|fault`: a local multi-node network of real processes on
//! loopback.
//!
//! `up` generates (or, if the directory already holds a testnet, reuses) one home per node, a
//! shared genesis and a funded client key, starts every node as its own OS process with
//! OS-assigned ports, waits until each has written its bound addresses, and records the result
//! in `DIR/testnet.json`. In the foreground it prints a live status line and stops every child
//! on Ctrl-C; with `--detach` the children run in their own session and `down` stops them.
//! `fault kill|pause|resume|restart NODE` acts on one recorded node process (SIGKILL, SIGSTOP,
//! SIGCONT, or stop and start again on the same home), checking first that the recorded pid is
//! still that node.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use agora_client::{Client, TestnetFile, TestnetNode, TESTNET_FILE};
use agora_crypto::Keypair;
use anyhow::{bail, Context};

use agora_node::config::Role;
use agora_node::home::{peer_id, Home};

/// Stake of each generated operator.
pub const OPERATOR_STAKE: u128 = 1_000_000;
/// Starting balance of the client key and of each coprocessor.
pub const FUNDING: u128 = 1_000_000_000;
/// The genesis file name, in the testnet dir and in every home.
pub const GENESIS_FILE: &str = "genesis.json";
const CLIENT_KEY: &str = "client.key";
/// The API token of a `--netns` testnet's nodes, in the testnet dir.
const API_TOKEN_FILE: &str = "api.token";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Operators a starting node dials first.
const MAX_BOOTSTRAP: usize = 8;

struct Planned {
    name: String,
    role: Role,
    home: Home,
    key: Keypair,
}

/// Start (or resume) the testnet in `dir`: one process per node, each started once the one
/// before it is ready; writes `DIR/testnet.json` and returns it with the node processes. With
/// `detach` the nodes run in their own process groups and outlive the caller; otherwise they are
/// killed when their handles are dropped. With `netns` each node runs in its own network
/// namespace (see [`crate::netns`]), which this removes again if the start fails. `byzantine`
/// holds `NODE=ROLE` specs (see [`BYZANTINE_ROLES`]), written into those nodes' configs.
pub async fn start(
    operators: u32,
    coprocessors: u32,
    dir: &Path,
    detach: bool,
    netns: bool,
    byzantine: &[String],
) -> anyhow::Result<(TestnetFile, Vec<tokio::process::Child>)> {
    if operators == 0 {
        bail!("--operators must be at least 1");
    }
    if netns {
        if let Some(why) = crate::netns::unavailable() {
            bail!("{why}");
        }
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
    set_byzantine(&plan, byzantine)?;
    let layout = if netns {
        let layout = crate::netns::plan(dir)?;
        crate::netns::create(&layout, plan.len()).with_context(|| {
            crate::netns::destroy(&layout, plan.len());
            "cannot create the testnet's network namespaces"
        })?;
        Some(layout)
    } else {
        None
    };
    let token_file = match &layout {
        Some(_) => Some(api_token_file(dir)?),
        None => None,
    };
    let started = start_nodes(dir, &plan, layout.as_ref(), token_file.as_deref(), detach).await;
    let (nodes, children) = match started {
        Ok(v) => v,
        Err(e) => {
            if let Some(layout) = &layout {
                crate::netns::destroy(layout, plan.len());
            }
            return Err(e);
        }
    };
    let file = TestnetFile {
        nodes,
        client_key: dir.join(CLIENT_KEY),
        netns: layout,
        api_token_file: token_file,
    };
    file.write(&tn_file)?;
    Ok((file, children))
}

/// The byzantine roles a testnet node can be given (`--byzantine NODE=ROLE`): the role, the
/// node kind it applies to, and what the node then does. Each is a testing knob of the node's
/// config (`[consensus] fault` or `[coprocessor] fault`), named as such in the config and
/// logged at start.
pub const BYZANTINE_ROLES: &[(&str, Role, &str)] = &[
    (
        "double_vote",
        Role::Operator,
        "sends each vote with a conflicting one (equivocation: evidence, slashing, jail)",
    ),
    (
        "equivocate",
        Role::Operator,
        "sends each proposal with a second one for another block (double proposal)",
    ),
    (
        "silent",
        Role::Operator,
        "withholds its votes and proposals (the rest must still decide)",
    ),
    (
        "wrong_output",
        Role::Coprocessor,
        "commits a corrupted result for every job it runs (two such nodes collude: they corrupt alike)",
    ),
    (
        "never_deliver",
        Role::Coprocessor,
        "bids and wins jobs, then never runs them (their deadlines pass)",
    ),
];

/// The byzantine role of each of `nodes` (name and kind, in order) that `specs` (`NODE=ROLE`,
/// NODE as `coprocessor-2` or `cp2`) give, checked against [`BYZANTINE_ROLES`].
pub(crate) fn byzantine_roles<'a>(
    nodes: &[(&str, Role)],
    specs: &'a [String],
) -> anyhow::Result<Vec<Option<&'a str>>> {
    let mut roles: Vec<Option<&str>> = vec![None; nodes.len()];
    for spec in specs {
        let (node, role) = spec.split_once('=').with_context(|| {
            format!("--byzantine {spec:?}: expected NODE=ROLE, e.g. cp2=wrong_output")
        })?;
        let i = nodes
            .iter()
            .position(|(n, _)| *n == node || short_forms(n).iter().any(|s| s == node))
            .with_context(|| {
                let names: Vec<&str> = nodes.iter().map(|(n, _)| *n).collect();
                format!(
                    "--byzantine {spec:?}: no node {node:?}; nodes: {}",
                    names.join(", ")
                )
            })?;
        let Some((_, kind, _)) = BYZANTINE_ROLES.iter().find(|(r, _, _)| *r == role) else {
            let known: Vec<String> = BYZANTINE_ROLES
                .iter()
                .map(|(r, k, _)| format!("{r} ({})", k.as_str()))
                .collect();
            bail!(
                "--byzantine {spec:?}: unknown role {role:?}; roles: {}",
                known.join(", ")
            );
        };
        let (name, node_kind) = nodes[i];
        if *kind != node_kind {
            bail!(
                "--byzantine {spec:?}: {role} is a {} role and {name} is a {}",
                kind.as_str(),
                node_kind.as_str()
            );
        }
        if roles[i].is_some_and(|r| r != role) {
            bail!("--byzantine: {name} is given two roles");
        }
        roles[i] = Some(role);
    }
    Ok(roles)
}

/// Give the planned nodes their byzantine roles (`NODE=ROLE`, NODE as `coprocessor-2` or
/// `cp2`) by writing them into their configs. Nodes given no role keep their configs as they
/// are (a role given to a testnet earlier stays until its config is edited).
fn set_byzantine(plan: &[Planned], specs: &[String]) -> anyhow::Result<()> {
    let nodes: Vec<(&str, Role)> = plan.iter().map(|p| (p.name.as_str(), p.role)).collect();
    let roles = byzantine_roles(&nodes, specs)?;
    for (p, role) in plan.iter().zip(roles) {
        let Some(role) = role else { continue };
        // An operator's role is `[consensus] fault`, a coprocessor's `[coprocessor] fault`.
        let section = match p.role {
            Role::Operator => "[consensus]",
            Role::Coprocessor => "[coprocessor]",
            Role::Client => continue,
        };
        let path = p.home.config_file();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let want = format!("fault = {role:?}");
        let (mut current, mut found) = ("", false);
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                let t = l.trim_start();
                if t.starts_with('[') {
                    current = t.split_whitespace().next().unwrap_or("");
                }
                if current == section && (t.starts_with("fault =") || t.starts_with("fault=")) {
                    found = true;
                    want.clone()
                } else {
                    l.to_owned()
                }
            })
            .collect();
        if !found {
            bail!(
                "{} has no `fault` key under {section} to set {role}",
                path.display()
            );
        }
        std::fs::write(&path, lines.join("\n") + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Where a node runs: its network namespace and address there (`--netns`), or loopback.
#[derive(Debug, Clone)]
struct Place {
    netns: Option<(String, std::net::Ipv4Addr)>,
    /// Handed to the node as its API token.
    token: Option<String>,
}

impl Place {
    fn of(
        layout: Option<&agora_client::NetnsLayout>,
        i: usize,
        token_file: Option<&Path>,
    ) -> anyhow::Result<Place> {
        let netns = match layout {
            Some(l) => Some((crate::netns::namespace(l, i), crate::netns::node_ip(l, i)?)),
            None => None,
        };
        let token = match token_file {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read {}", f.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        Ok(Place { netns, token })
    }
}

/// Start the planned nodes one after another, each once the one before is ready.
async fn start_nodes(
    dir: &Path,
    plan: &[Planned],
    layout: Option<&agora_client::NetnsLayout>,
    token_file: Option<&Path>,
    detach: bool,
) -> anyhow::Result<(Vec<TestnetNode>, Vec<tokio::process::Child>)> {
    let mut children = Vec::new();
    let mut nodes: Vec<TestnetNode> = Vec::new();
    let mut bootstrap: Vec<String> = Vec::new();
    for (i, p) in plan.iter().enumerate() {
        let place = Place::of(layout, i, token_file)?;
        let (child, log_path) = spawn_node(dir, &p.name, &p.home, &bootstrap, detach, &place)?;
        let pid = child.id();
        children.push(child);
        let (api, listen) = wait_ready(&p.home, &log_path, &mut children).await?;
        if p.role == Role::Operator && bootstrap.len() < MAX_BOOTSTRAP {
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
            netns: place.netns.map(|(ns, _)| ns),
        });
    }
    Ok((nodes, children))
}

/// The testnet's API token file, `DIR/api.token` (owner-only), made once with 32 random bytes.
fn api_token_file(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(API_TOKEN_FILE);
    if path.exists() {
        return Ok(path);
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for the API token")?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(f, "{}", hex::encode(bytes))?;
    Ok(path)
}

/// `agora testnet up`.
pub async fn up(
    operators: u32,
    coprocessors: u32,
    dir: &Path,
    detach: bool,
    demo: bool,
    netns: bool,
    byzantine: &[String],
) -> anyhow::Result<()> {
    let started = Instant::now();
    let (file, mut children) =
        start(operators, coprocessors, dir, detach, netns, byzantine).await?;
    let tn_file = dir.join(TESTNET_FILE);
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
    if let Some(l) = &file.netns {
        println!(
            "  network        each node in its own namespace ({}-N) on {}, bridge {} at {}",
            l.prefix, l.subnet, l.bridge, l.host_ip
        );
    }
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
        let genesis = dir.join(GENESIS_FILE);
        let token = file.api_token();
        // Runs beside the nodes: a demo that fails is reported, and the testnet keeps running.
        let mut job =
            tokio::task::spawn_blocking(move || crate::jobs::demo(&api, token, &key, &genesis));
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
        foreground(&file, &tn_file, children).await;
    }
    // Our children are stopped; nodes restarted by `testnet fault restart` are not our children
    // and are stopped here, and every recorded pid is cleared.
    stop_recorded(dir)?;
    Ok(())
}

/// Start `agora node` on `home` with OS-assigned ports on loopback (or, in a namespace, on its
/// address there), bootstrapping from `bootstrap` and appending its output to
/// `DIR/logs/NAME.log`; returns the process and the log path. Stale address files are removed
/// first, so that they are not mistaken for this run's.
fn spawn_node(
    dir: &Path,
    name: &str,
    home: &Home,
    bootstrap: &[String],
    detach: bool,
    place: &Place,
) -> anyhow::Result<(tokio::process::Child, PathBuf)> {
    let exe = std::env::current_exe().context("cannot find the agora executable")?;
    let _ = std::fs::remove_file(home.api_addr_file());
    let _ = std::fs::remove_file(home.p2p_addr_file());
    let log_path = dir.join("logs").join(format!("{name}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open log {}", log_path.display()))?;
    let (mut cmd, ip) = match &place.netns {
        // `ip netns exec` enters the namespace and execs the node: the pid is the node's.
        Some((ns, ip)) => {
            let mut cmd = tokio::process::Command::new("ip");
            cmd.args(["netns", "exec", ns]).arg(&exe);
            (cmd, ip.to_string())
        }
        None => (tokio::process::Command::new(&exe), "127.0.0.1".to_owned()),
    };
    cmd.arg("node").arg("--home").arg(home.root()).args([
        "--listen",
        &format!("/ip4/{ip}/tcp/0"),
        "--api",
        &format!("{ip}:0"),
    ]);
    if let Some(token) = &place.token {
        cmd.env("AGORA__API__TOKEN", token);
    }
    for b in bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    // Testnet nodes, and only they, take network faults from a file in their home.
    cmd.env(
        agora_node::net_faults::FAULT_FILE_ENV,
        home.root().join(agora_node::net_faults::FAULT_FILE_NAME),
    );
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
        .with_context(|| format!("cannot start node {name}"))?;
    Ok((child, log_path))
}

/// Reuse the homes of an existing testnet dir, or generate keys, homes and genesis.
fn plan_or_resume(operators: u32, coprocessors: u32, dir: &Path) -> anyhow::Result<Vec<Planned>> {
    let genesis_path = dir.join(GENESIS_FILE);
    if genesis_path.exists() {
        let mut plan = Vec::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join(agora_node::home::CONFIG_FILE).exists())
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
    let genesis = agora_node::genesis::build(
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

/// Print a live status line until Ctrl-C/SIGTERM or until every child has exited. The status
/// line follows `testnet.json`, which `testnet fault restart` rewrites.
async fn foreground(file: &TestnetFile, path: &Path, mut children: Vec<tokio::process::Child>) {
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
                let current = TestnetFile::read(path).ok();
                let line = status_line(current.as_ref().unwrap_or(file)).await;
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
pub(crate) async fn stop_all(children: &mut [tokio::process::Child]) {
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
pub fn down(dir: &Path, json: bool) -> anyhow::Result<()> {
    let (stopped, killed) = stop_recorded(dir)?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "dir": dir, "stopped": stopped, "killed": killed })
        );
        return Ok(());
    }
    println!(
        "stopped {stopped} nodes{}",
        if killed > 0 {
            format!(" ({killed} killed after 10 s)")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// Stop every node process recorded in `DIR/testnet.json` (SIGTERM, and SIGCONT so that a
/// paused node handles it; SIGKILL after 10 s) and clear the recorded pids. Returns how many
/// were running and how many had to be killed.
pub(crate) fn stop_recorded(dir: &Path) -> anyhow::Result<(usize, usize)> {
    let path = dir.join(TESTNET_FILE);
    if !path.exists() {
        bail!("no testnet in {} (no {TESTNET_FILE})", dir.display());
    }
    let mut file = TestnetFile::read(&path)?;
    let live: Vec<(u32, &str)> = file
        .nodes
        .iter()
        .filter_map(|n| n.pid.map(|p| (p, n.name.as_str())))
        .filter(|(p, name)| node_state(*p, name).is_live())
        .collect();
    for (pid, _) in &live {
        signal(*pid, nix::sys::signal::Signal::SIGTERM);
        signal(*pid, nix::sys::signal::Signal::SIGCONT);
    }
    let running = |(p, name): &(u32, &str)| node_state(*p, name).is_live();
    // Whether every node is gone within `limit`.
    let gone_within = |limit: Duration| {
        let deadline = Instant::now() + limit;
        while live.iter().any(running) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    };
    let mut killed = 0;
    if !gone_within(Duration::from_secs(10)) {
        for n in &live {
            if running(n) && signal(n.0, nix::sys::signal::Signal::SIGKILL) {
                killed += 1;
            }
        }
        // A killed process is gone only once the kernel has torn it down (large mappings take
        // a while): `down` returns when every node is gone, not when the signals are sent.
        if !gone_within(Duration::from_secs(10)) {
            let left: Vec<&str> = live.iter().filter(|n| running(n)).map(|n| n.1).collect();
            bail!("still running 10 s after SIGKILL: {}", left.join(", "));
        }
    }
    let stopped = live.len();
    for n in &mut file.nodes {
        n.pid = None;
    }
    file.write(&path)?;
    if let Some(layout) = &file.netns {
        crate::netns::destroy(layout, file.nodes.len());
    }
    Ok((stopped, killed))
}

/// A fault `agora testnet fault` injects into one node process of a running testnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL: the node dies at once, as in a crash or power loss.
    Kill,
    /// SIGSTOP: the process freezes; its sockets stay open but nothing answers.
    Pause,
    /// SIGCONT: a paused node runs again.
    Resume,
    /// Stop the node if it runs (SIGTERM, SIGKILL after 10 s), then start it again on its home.
    Restart,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Resume => "resume",
            Fault::Restart => "restart",
        }
    }
}

/// What `agora testnet fault` did to a node (its `--json` document).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FaultReport {
    /// The node's name in `testnet.json`.
    pub node: String,
    pub fault: &'static str,
    /// The process acted on (for a restart: the stopped one, if the node was running).
    pub pid: Option<u32>,
    /// The signal sent to it, if any.
    pub signal: Option<&'static str>,
    /// A restarted node's new process, API URL and libp2p address.
    pub new_pid: Option<u32>,
    pub api: Option<String>,
    pub listen: Option<String>,
}

/// The state of a recorded node process, checked so that a recycled pid is never signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProcState {
    Running,
    /// Stopped by SIGSTOP.
    Paused,
    /// Exited (a zombie not yet reaped counts as exited).
    Gone,
    /// The pid now belongs to a process that is not this node.
    Foreign,
}

impl ProcState {
    fn is_live(self) -> bool {
        matches!(self, ProcState::Running | ProcState::Paused)
    }
}

/// Whether `pid` is the node `name` of a testnet (`agora node --home …/NAME`), from
/// `/proc/PID/{stat,cmdline}`. Without `/proc`, a live pid is assumed to be the node.
fn node_state(pid: u32, name: &str) -> ProcState {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if !Path::new("/proc/self").exists() {
        return if process_alive(pid) {
            ProcState::Running
        } else {
            ProcState::Gone
        };
    }
    let (Ok(stat), Ok(cmdline)) = (
        std::fs::read_to_string(proc_dir.join("stat")),
        std::fs::read(proc_dir.join("cmdline")),
    ) else {
        return ProcState::Gone;
    };
    // The state is the first field after the command name, which is in parentheses.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    if matches!(state, Some('Z' | 'X' | 'x') | None) {
        return ProcState::Gone;
    }
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_node = args.get(1) == Some(&b"node".as_slice())
        && args.windows(2).any(|w| {
            w[0] == b"--home"
                && Path::new(std::ffi::OsStr::from_bytes(w[1]))
                    .file_name()
                    .is_some_and(|f| f == name)
        });
    if !is_node {
        return ProcState::Foreign;
    }
    if matches!(state, Some('T' | 't')) {
        ProcState::Paused
    } else {
        ProcState::Running
    }
}

/// Find `name` in the testnet: the exact name (`operator-2`) or its short form (`op2`, `o2`,
/// `cp1`, `c1`); the error lists the valid names.
/// The short names a node answers to besides its full one: `op3` and `o3` for `operator-3`.
fn short_forms(full: &str) -> Vec<String> {
    let (kind, idx) = full.split_once('-').unwrap_or((full, ""));
    let two = match kind {
        "operator" => "op",
        "coprocessor" => "cp",
        _ => return Vec::new(),
    };
    vec![format!("{two}{idx}"), format!("{}{idx}", &kind[..1])]
}

fn find_node(file: &TestnetFile, name: &str, path: &Path) -> anyhow::Result<usize> {
    file.nodes
        .iter()
        .position(|n| n.name == name || short_forms(&n.name).iter().any(|s| s == name))
        .with_context(|| {
            let names: Vec<&str> = file.nodes.iter().map(|n| n.name.as_str()).collect();
            format!(
                "no node {name:?} in {}; nodes: {}",
                path.display(),
                names.join(", ")
            )
        })
}

fn read_testnet(dir: &Path) -> anyhow::Result<(PathBuf, TestnetFile)> {
    let path = dir.join(TESTNET_FILE);
    if !path.exists() {
        bail!(
            "no testnet in {} (no {TESTNET_FILE}); start one with `agora testnet up --detach`",
            dir.display()
        );
    }
    let file = TestnetFile::read(&path)?;
    Ok((path, file))
}

/// The live process of node `i`, or an error saying it is not running.
fn live_pid(file: &TestnetFile, i: usize, dir: &Path) -> anyhow::Result<(u32, ProcState)> {
    let n = &file.nodes[i];
    let state = n.pid.map(|p| (p, node_state(p, &n.name)));
    match state {
        Some((pid, s)) if s.is_live() => Ok((pid, s)),
        _ => bail!(
            "node {} is not running (start it with `agora testnet fault restart {} --dir {}`)",
            n.name,
            n.name,
            dir.display()
        ),
    }
}

/// Wait until the process is gone (or, for a pause, stopped).
fn wait_state(pid: u32, name: &str, done: impl Fn(ProcState) -> bool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done(node_state(pid, name)) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kill, pause or resume the node `name` of the testnet in `dir`. A killed node's pid is
/// cleared in `testnet.json`.
pub fn fault_signal(dir: &Path, name: &str, fault: Fault) -> anyhow::Result<FaultReport> {
    use nix::sys::signal::Signal;
    let (path, mut file) = read_testnet(dir)?;
    let i = find_node(&file, name, &path)?;
    let (pid, _) = live_pid(&file, i, dir)?;
    let node = file.nodes[i].name.clone();
    let (sig, sig_name) = match fault {
        Fault::Kill => (Signal::SIGKILL, "SIGKILL"),
        Fault::Pause => (Signal::SIGSTOP, "SIGSTOP"),
        Fault::Resume => (Signal::SIGCONT, "SIGCONT"),
        Fault::Restart => bail!("restart is not a signal"),
    };
    if !signal(pid, sig) {
        bail!("cannot send {sig_name} to {node} (pid {pid})");
    }
    let limit = Duration::from_secs(5);
    let reached = match fault {
        Fault::Kill => wait_state(pid, &node, |s| s == ProcState::Gone, limit),
        Fault::Pause => wait_state(pid, &node, |s| s != ProcState::Running, limit),
        Fault::Resume => wait_state(pid, &node, |s| s != ProcState::Paused, limit),
        Fault::Restart => true,
    };
    if !reached {
        bail!(
            "{node} (pid {pid}) did not {} within {limit:?} of {sig_name}",
            fault.as_str()
        );
    }
    if fault == Fault::Kill {
        file.nodes[i].pid = None;
        file.write(&path)?;
    }
    Ok(FaultReport {
        node,
        fault: fault.as_str(),
        pid: Some(pid),
        signal: Some(sig_name),
        new_pid: None,
        api: None,
        listen: None,
    })
}

/// Restart the node `name` of the testnet in `dir`: stop its process if it runs (SIGTERM, and
/// SIGCONT in case it is paused; SIGKILL after 10 s), then start `agora node` on the same home
/// the way `testnet up` does — OS-assigned loopback ports, detached, output appended to
/// `DIR/logs/NAME.log` — bootstrapping from the other running operators. Records the new pid,
/// API URL and libp2p address in `testnet.json`.
pub async fn fault_restart(dir: &Path, name: &str) -> anyhow::Result<FaultReport> {
    use nix::sys::signal::Signal;
    let (path, file) = read_testnet(dir)?;
    let i = find_node(&file, name, &path)?;
    let node = file.nodes[i].name.clone();
    let old = live_pid(&file, i, dir).ok().map(|(pid, _)| pid);
    let mut sent = None;
    if let Some(pid) = old {
        signal(pid, Signal::SIGTERM);
        signal(pid, Signal::SIGCONT);
        sent = Some("SIGTERM");
        let gone = |s| s == ProcState::Gone;
        if !wait_state(pid, &node, gone, Duration::from_secs(10)) {
            signal(pid, Signal::SIGKILL);
            sent = Some("SIGKILL");
            if !wait_state(pid, &node, gone, Duration::from_secs(5)) {
                bail!("{node} (pid {pid}) did not exit after SIGKILL");
            }
        }
    }
    let mut bootstrap: Vec<String> = file
        .nodes
        .iter()
        .enumerate()
        .filter(|(j, n)| *j != i && n.role == Role::Operator.as_str())
        .filter(|(_, n)| n.pid.is_some_and(|p| node_state(p, &n.name).is_live()))
        .map(|(_, n)| n.listen.clone())
        .take(MAX_BOOTSTRAP)
        .collect();
    if bootstrap.is_empty() {
        // No operator runs: dial the recorded addresses anyway, they may come back.
        bootstrap = file
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, n)| *j != i && n.role == Role::Operator.as_str())
            .map(|(_, n)| n.listen.clone())
            .take(MAX_BOOTSTRAP)
            .collect();
    }
    let home = Home::new(dir.join(&node));
    if let Some(layout) = &file.netns {
        if !crate::netns::exists(layout) {
            bail!(
                "the namespaces of this testnet are gone (was it brought down?); start it again with `agora testnet up --netns --dir {}`",
                dir.display()
            );
        }
    }
    let place = Place::of(file.netns.as_ref(), i, file.api_token_file.as_deref())?;
    let (child, log) = spawn_node(dir, &node, &home, &bootstrap, true, &place)?;
    let new_pid = child.id();
    let mut children = vec![child];
    let (api, listen) = wait_ready(&home, &log, &mut children).await?;
    // Reread: another fault may have changed other entries meanwhile.
    let mut file = TestnetFile::read(&path)?;
    let entry = &mut file.nodes[i];
    entry.pid = new_pid;
    entry.api = api.clone();
    entry.listen = listen.clone();
    file.write(&path)?;
    Ok(FaultReport {
        node,
        fault: Fault::Restart.as_str(),
        pid: old,
        signal: sent,
        new_pid,
        api: Some(api),
        listen: Some(listen),
    })
}

/// `agora testnet fault kill|pause|resume|restart NODE`.
pub fn fault(dir: &Path, name: &str, fault: Fault, json: bool) -> anyhow::Result<()> {
    let report = match fault {
        Fault::Restart => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(fault_restart(dir, name))?
        }
        _ => fault_signal(dir, name, fault)?,
    };
    if json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let pid = report.pid.map(|p| format!("pid {p}")).unwrap_or_default();
    match fault {
        Fault::Kill => println!("killed {} ({pid}, SIGKILL)", report.node),
        Fault::Pause => println!(
            "paused {} ({pid}, SIGSTOP); resume it with `agora testnet fault resume {} --dir {}`",
            report.node,
            report.node,
            dir.display()
        ),
        Fault::Resume => println!("resumed {} ({pid}, SIGCONT)", report.node),
        Fault::Restart => println!(
            "restarted {}{}: pid {}, api {}",
            report.node,
            match (report.pid, report.signal) {
                (Some(p), Some(s)) => format!(" (stopped pid {p} with {s})"),
                _ => " (it was not running)".to_owned(),
            },
            report.new_pid.unwrap_or(0),
            report.api.as_deref().unwrap_or("-")
        ),
    }
    Ok(())
}

/// A delay or loss fault for `agora testnet fault delay|loss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Milliseconds every received message is held back.
    Delay(u64),
    /// Basis points of received gossip and consensus messages dropped.
    Loss(u32),
}

/// `50ms`, `2s`, `1.5s` → milliseconds (at most the node's limit).
pub fn parse_delay_ms(text: &str) -> anyhow::Result<u64> {
    use agora_node::net_faults::MAX_DELAY_MS;
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1u64)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1_000)
    } else {
        bail!("delay {text:?} needs a unit: `50ms` or `2s`");
    };
    let ms = parse_decimal(num.trim(), scale)
        .with_context(|| format!("delay {text:?} is not a duration such as `50ms` or `1.5s`"))?;
    if ms > MAX_DELAY_MS {
        bail!(
            "delay {text:?} is over the limit of {}s",
            MAX_DELAY_MS / 1_000
        );
    }
    Ok(ms)
}

/// `2%`, `0.5%`, `100%` (the `%` may be left out) → basis points.
pub fn parse_loss_bps(text: &str) -> anyhow::Result<u32> {
    let t = text.trim();
    let num = t.strip_suffix('%').unwrap_or(t).trim();
    let bps = parse_decimal(num, 100)
        .with_context(|| format!("loss {text:?} is not a percentage such as `2%` or `0.5%`"))?;
    if bps > 10_000 {
        bail!("loss {text:?} is over 100%");
    }
    Ok(bps as u32)
}

/// A non-negative decimal times `scale`, exactly (no floats): `1.5` with scale 1000 → 1500.
/// Digits beyond what `scale` can hold are refused rather than rounded.
fn parse_decimal(num: &str, scale: u64) -> anyhow::Result<u64> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || (num.contains('.') && !digits(frac)) {
        bail!("not a number");
    }
    let places = scale.ilog10() as usize;
    if frac.len() > places {
        bail!("at most {places} decimal places");
    }
    let int: u64 = int.parse().context("too large")?;
    let frac_scaled: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse::<u64>()? * 10u64.pow((places - frac.len()) as u32)
    };
    int.checked_mul(scale)
        .and_then(|v| v.checked_add(frac_scaled))
        .context("too large")
}

/// What `delay` or `loss` did to one node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShapedNode {
    pub node: String,
    pub delay_ms: u64,
    pub loss_bps: u32,
}

/// Set `shape` on one node of the testnet in `dir`, or on every node (`all`), keeping its
/// other network faults. Running nodes take it within a quarter second, and a stopped one on
/// its next start.
pub fn shape(dir: &Path, node: &str, shape: Shape) -> anyhow::Result<Vec<ShapedNode>> {
    use agora_node::net_faults::{NetFaults, FAULT_FILE_NAME};
    let (path, file) = read_testnet(dir)?;
    let targets: Vec<usize> = if node == "all" {
        (0..file.nodes.len()).collect()
    } else {
        vec![find_node(&file, node, &path)?]
    };
    let mut out = Vec::new();
    for i in targets {
        let name = &file.nodes[i].name;
        let at = dir.join(name).join(FAULT_FILE_NAME);
        let mut faults = NetFaults::read(&at).map_err(|e| anyhow::anyhow!(e))?;
        match shape {
            Shape::Delay(ms) => faults.delay_ms = ms,
            Shape::Loss(bps) => faults.loss_bps = bps,
        }
        faults
            .write(&at)
            .with_context(|| format!("cannot write {}", at.display()))?;
        out.push(ShapedNode {
            node: name.clone(),
            delay_ms: faults.delay_ms,
            loss_bps: faults.loss_bps,
        });
    }
    std::thread::sleep(Duration::from_millis(600));
    Ok(out)
}

/// `agora testnet fault delay|loss NODE AMOUNT`, printed.
pub fn shape_command(dir: &Path, node: &str, how: Shape, json: bool) -> anyhow::Result<()> {
    let nodes = shape(dir, node, how)?;
    if json {
        let doc = serde_json::json!({
            "fault": match how { Shape::Delay(_) => "delay", Shape::Loss(_) => "loss" },
            "nodes": nodes,
        });
        println!("{}", serde_json::to_string(&doc)?);
        return Ok(());
    }
    for n in &nodes {
        println!(
            "{}: receives with {} ms delay and {}.{:02}% loss",
            n.node,
            n.delay_ms,
            n.loss_bps / 100,
            n.loss_bps % 100
        );
    }
    println!(
        "undo it with `agora testnet fault {} {node} {}` or `agora testnet fault heal --dir {}`",
        match how {
            Shape::Delay(_) => "delay",
            Shape::Loss(_) => "loss",
        },
        match how {
            Shape::Delay(_) => "0ms",
            Shape::Loss(_) => "0%",
        },
        dir.display()
    );
    Ok(())
}

/// What `partition` or `heal` did to one node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionedNode {
    pub node: String,
    /// The group it is in (0-based), `None` for a node named in no group (it bridges them all).
    pub group: Option<usize>,
    /// Nodes it is cut off from.
    pub cut_off_from: Vec<String>,
}

/// Parse `op0,op1/op2,op3` into groups of node indices: each node in one group at most.
fn parse_groups(file: &TestnetFile, spec: &str, path: &Path) -> anyhow::Result<Vec<Vec<usize>>> {
    let mut seen = BTreeMap::new();
    let mut groups = Vec::new();
    for (g, part) in spec.split('/').enumerate() {
        let mut group = Vec::new();
        for name in part
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|n| !n.is_empty())
        {
            let i = find_node(file, name, path)?;
            if let Some(other) = seen.insert(i, g) {
                bail!(
                    "{} is named twice (groups {} and {}); a node is in one group",
                    file.nodes[i].name,
                    other + 1,
                    g + 1
                );
            }
            group.push(i);
        }
        if group.is_empty() {
            bail!(
                "group {} of {spec:?} names no node; write groups as `op0,op1 / op2,op3`",
                g + 1
            );
        }
        groups.push(group);
    }
    if groups.len() < 2 {
        bail!("a partition needs at least two groups separated by `/`, as in `op0,op1 / op2,op3`");
    }
    Ok(groups)
}

/// Split the testnet in `dir` into `groups`, keeping each node's delay and loss, or heal it
/// (`None`: no partition, delay or loss is left). Each node's fault file lists the peers of
/// every other group; a node named in no group keeps all its links. Running nodes read their
/// file within a quarter second, and a stopped or paused one on its next start, so the fault
/// holds across restarts until `heal`.
pub fn partition(dir: &Path, groups: Option<&str>) -> anyhow::Result<Vec<PartitionedNode>> {
    use agora_node::net_faults::{NetFaults, FAULT_FILE_NAME};
    let (path, file) = read_testnet(dir)?;
    let groups = match groups {
        Some(spec) => parse_groups(&file, spec, &path)?,
        None => Vec::new(),
    };
    let group_of = |i: usize| groups.iter().position(|g| g.contains(&i));
    let mut out = Vec::new();
    for (i, node) in file.nodes.iter().enumerate() {
        let mine = group_of(i);
        let cut: Vec<usize> = match mine {
            None => Vec::new(),
            Some(g) => (0..file.nodes.len())
                .filter(|j| group_of(*j).is_some_and(|h| h != g))
                .collect(),
        };
        let at = dir.join(&node.name).join(FAULT_FILE_NAME);
        let faults = if groups.is_empty() {
            NetFaults::default()
        } else {
            NetFaults {
                partitioned: cut.iter().map(|j| file.nodes[*j].peer_id.clone()).collect(),
                // A file this node cannot read is replaced, not kept half-applied.
                ..NetFaults::read(&at).unwrap_or_default()
            }
        };
        faults
            .write(&at)
            .with_context(|| format!("cannot write {}", at.display()))?;
        out.push(PartitionedNode {
            node: node.name.clone(),
            group: mine,
            cut_off_from: cut.iter().map(|j| file.nodes[*j].name.clone()).collect(),
        });
    }
    // Give running nodes time to read their files before the command returns.
    std::thread::sleep(Duration::from_millis(600));
    Ok(out)
}

/// `agora testnet fault partition GROUPS` and `agora testnet fault heal`, printed.
pub fn partition_command(dir: &Path, groups: Option<&str>, json: bool) -> anyhow::Result<()> {
    let nodes = partition(dir, groups)?;
    if json {
        let doc = serde_json::json!({
            "fault": if groups.is_some() { "partition" } else { "heal" },
            "nodes": nodes,
        });
        println!("{}", serde_json::to_string(&doc)?);
        return Ok(());
    }
    if groups.is_none() {
        println!("healed: every node may reach every other again, with no delay or loss");
        return Ok(());
    }
    let mut by_group: BTreeMap<Option<usize>, Vec<&str>> = BTreeMap::new();
    for n in &nodes {
        by_group.entry(n.group).or_default().push(&n.node);
    }
    for (g, names) in &by_group {
        match g {
            Some(g) => println!("group {}: {}", g + 1, names.join(", ")),
            None => println!("bridging every group (named in none): {}", names.join(", ")),
        }
    }
    println!(
        "partitioned; undo it with `agora testnet fault heal --dir {}`",
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(names: &[&str]) -> TestnetFile {
        TestnetFile {
            nodes: names
                .iter()
                .map(|n| TestnetNode {
                    name: (*n).to_owned(),
                    role: if n.starts_with("operator") {
                        "operator".into()
                    } else {
                        "coprocessor".into()
                    },
                    peer_id: String::new(),
                    address: String::new(),
                    listen: String::new(),
                    api: String::new(),
                    pid: None,
                    ..Default::default()
                })
                .collect(),
            client_key: PathBuf::from("client.key"),
            ..Default::default()
        }
    }

    #[test]
    fn nodes_are_found_by_name_or_short_name() {
        let f = file(&["operator-0", "operator-1", "operator-12", "coprocessor-0"]);
        let p = Path::new("d/testnet.json");
        assert_eq!(find_node(&f, "operator-1", p).unwrap(), 1);
        assert_eq!(find_node(&f, "op1", p).unwrap(), 1);
        assert_eq!(find_node(&f, "o12", p).unwrap(), 2);
        assert_eq!(find_node(&f, "cp0", p).unwrap(), 3);
        assert_eq!(find_node(&f, "c0", p).unwrap(), 3);
        let err = find_node(&f, "op7", p).unwrap_err().to_string();
        assert!(err.contains("no node \"op7\""), "{err}");
        assert!(
            err.contains("operator-0, operator-1, operator-12, coprocessor-0"),
            "{err}"
        );
        assert!(find_node(&f, "operator-", p).is_err());
    }

    #[test]
    fn delays_and_losses_are_parsed_exactly_and_mistakes_explained() {
        assert_eq!(parse_delay_ms("50ms").unwrap(), 50);
        assert_eq!(parse_delay_ms("0ms").unwrap(), 0);
        assert_eq!(parse_delay_ms("2s").unwrap(), 2_000);
        assert_eq!(parse_delay_ms(" 1.25s ").unwrap(), 1_250);
        assert_eq!(parse_delay_ms("60s").unwrap(), 60_000);
        assert!(format!("{:#}", parse_delay_ms("50").unwrap_err()).contains("needs a unit"));
        assert!(format!("{:#}", parse_delay_ms("61s").unwrap_err()).contains("limit"));
        assert!(parse_delay_ms("1.2345s").is_err());
        assert!(parse_delay_ms("-5ms").is_err());
        assert!(parse_delay_ms("ms").is_err());
        assert!(parse_delay_ms("1e3ms").is_err());
        assert!(parse_delay_ms("99999999999999999999ms").is_err());
        assert_eq!(parse_loss_bps("2%").unwrap(), 200);
        assert_eq!(parse_loss_bps("0.5%").unwrap(), 50);
        assert_eq!(parse_loss_bps("12.34%").unwrap(), 1_234);
        assert_eq!(parse_loss_bps("100").unwrap(), 10_000);
        assert_eq!(parse_loss_bps("0%").unwrap(), 0);
        assert!(format!("{:#}", parse_loss_bps("101%").unwrap_err()).contains("over 100%"));
        assert!(parse_loss_bps("0.125%").is_err());
        assert!(parse_loss_bps("two%").is_err());
        assert!(parse_loss_bps("1.%").is_err());
    }

    #[test]
    fn partition_groups_are_parsed_and_mistakes_explained() {
        let f = file(&["operator-0", "operator-1", "operator-2", "coprocessor-0"]);
        let p = Path::new("d/testnet.json");
        assert_eq!(
            parse_groups(&f, "op0,op1 / op2", p).unwrap(),
            vec![vec![0, 1], vec![2]]
        );
        assert_eq!(
            parse_groups(&f, "op0/operator-1 cp0", p).unwrap(),
            vec![vec![0], vec![1, 3]]
        );
        let err = |spec: &str| parse_groups(&f, spec, p).unwrap_err().to_string();
        assert!(err("op0,op1").contains("at least two groups"));
        assert!(err("op0 / / op1").contains("group 2"));
        assert!(err("op0 / op0").contains("named twice"));
        assert!(err("op0 / op9").contains("no node \"op9\""));
    }

    #[test]
    fn process_state_tells_this_node_from_a_recycled_pid() {
        // This test process is alive but it is not `agora node --home …/operator-0`.
        let me = std::process::id();
        let s = node_state(me, "operator-0");
        if Path::new("/proc/self").exists() {
            assert_eq!(s, ProcState::Foreign);
        } else {
            assert_eq!(s, ProcState::Running);
        }
        assert!(!node_state(u32::MAX, "operator-0").is_live());
    }
}
