//! Integration tests of the real `agora` binary: homes, keys, config errors, and a running node
//! answering its API and stopping on SIGTERM.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

mod balance;
mod chaos;
mod faults;
mod history;
mod hostile;
mod hosts;
mod jobs;
mod netns;
mod nonces;
mod observe;
mod partial;
mod stall;
mod testnet;

const BIN: &str = env!("CARGO_BIN_EXE_agora");

/// The binary run in `dir` with a clean environment (no `AGORA*` variables, no `RUST_LOG`).
fn agora(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir).stdin(Stdio::null());
    clean_env(&mut cmd);
    cmd
}

/// Remove the `AGORA*` and `RUST_LOG` variables from `cmd`'s environment.
fn clean_env(cmd: &mut Command) {
    for (name, _) in std::env::vars() {
        if name.starts_with("AGORA") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
}

/// A temporary working directory; the binary runs inside it with a clean environment.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        agora(self.dir.path(), args)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// `agora init --home h [--role ...]`, asserting success.
    fn init(&self, home: &str, roles: &[&str]) -> PathBuf {
        let h = self.path(home);
        let mut args = vec!["init", "--home", h.to_str().unwrap()];
        for r in roles {
            args.extend(["--role", r]);
        }
        let out = self.run(&args);
        assert!(out.status.success(), "init failed: {}", text(&out.stderr));
        h
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Assert a failed run printed exactly one clear `error:` line containing every `needles`.
fn assert_clear_error(out: &Output, needles: &[&str]) {
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "panic instead of an error: {stderr}"
    );
    assert!(
        !stderr.contains("stack backtrace"),
        "backtrace printed: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for n in needles {
        assert!(lines[0].contains(n), "missing {n:?} in: {stderr}");
    }
}

/// A running node; killed (SIGKILL) on drop if the test did not stop it.
struct Node {
    child: Child,
    home: PathBuf,
    log: PathBuf,
}

impl Node {
    fn start(sb: &Sandbox, home: &Path, extra: &[&str]) -> Node {
        let args = Node::args(home, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Node::spawn(sb.cmd(&args), home)
    }

    /// The arguments of `agora node` on `home` with an OS-assigned API port (and p2p port,
    /// unless `extra` gives `--listen`).
    fn args(home: &Path, extra: &[&str]) -> Vec<String> {
        let mut args = vec![
            "node",
            "--home",
            home.to_str().unwrap(),
            "--api",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        if !extra.contains(&"--listen") {
            // Parallel tests must not share the default p2p port.
            args.extend(["--listen", "/ip4/127.0.0.1/tcp/0"]);
        }
        args.into_iter().map(str::to_owned).collect()
    }

    /// Spawn `cmd` (a node on `home`), its stderr logged to `HOME.log`.
    fn spawn(mut cmd: Command, home: &Path) -> Node {
        let log = home.with_extension("log");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Node {
            child,
            home: home.to_owned(),
            log,
        }
    }

    /// Wait for `HOME/api.addr` and return the API URL.
    fn api_url(&mut self) -> String {
        self.api_url_other_than("")
    }

    /// Wait for `HOME/api.addr` to hold a URL other than `stale`.
    fn api_url_other_than(&mut self, stale: &str) -> String {
        self.address_file("api.addr", stale)
    }

    /// Wait for `HOME/p2p.addr` and return the node's dialable multiaddr.
    fn p2p_addr(&mut self) -> String {
        self.address_file("p2p.addr", "")
    }

    /// Wait for the address file `name` in the home to hold a line other than `stale`.
    fn address_file(&mut self, name: &str, stale: &str) -> String {
        let file = self.home.join(name);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(s) = fs::read_to_string(&file) {
                if s.ends_with('\n') && s.trim() != stale {
                    return s.trim().to_owned();
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "node exited early ({status}): {}",
                    fs::read_to_string(&self.log).unwrap()
                );
            }
            assert!(Instant::now() < deadline, "node did not write {name}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "node did not stop within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn help_and_version() {
    let sb = Sandbox::new();
    let out = sb.run(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("agora {}", env!("CARGO_PKG_VERSION"))
    );
    let out = sb.run(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for cmd in [
        "init",
        "key",
        "node",
        "testnet",
        "job",
        "account",
        "coprocessor",
        "status",
        "sim",
    ] {
        assert!(
            help.contains(&format!("  {cmd} ")),
            "help lacks {cmd}: {help}"
        );
    }
}

#[test]
fn init_creates_a_private_key_and_an_annotated_config() {
    let sb = Sandbox::new();
    let home = sb.init("home", &["operator", "coprocessor"]);
    let key = home.join("node.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(&home).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
    let config = fs::read_to_string(home.join("config.toml")).unwrap();
    assert!(
        config.contains(r#"roles = ["operator", "coprocessor"]"#),
        "{config}"
    );
    assert!(config.contains("# "), "config is annotated");

    let out = sb.run(&["key", "show", "--home", home.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let loaded = agora_crypto::load_key(&key).unwrap();
    assert_eq!(shown["address"], loaded.address().to_hex());
    assert!(shown["peer_id"].as_str().unwrap().starts_with("12D3KooW"));
}

#[test]
fn init_refuses_to_overwrite() {
    let sb = Sandbox::new();
    let home = sb.init("home", &[]);
    let before = fs::read(home.join("node.key")).unwrap();
    let out = sb.run(&["init", "--home", home.to_str().unwrap()]);
    assert_clear_error(&out, &["already initialised", "refusing to overwrite"]);
    assert_eq!(
        fs::read(home.join("node.key")).unwrap(),
        before,
        "key untouched"
    );
}

#[test]
fn node_serves_status_and_metrics_and_stops_on_sigterm() {
    let sb = Sandbox::new();
    let home = sb.init("home", &["operator"]);
    // A leftover from a killed run must not be taken for the new node's address.
    fs::write(home.join("api.addr"), "http://127.0.0.1:1\n").unwrap();
    let mut node = Node::start(&sb, &home, &["--listen", "/ip4/127.0.0.1/tcp/0"]);
    let url = node.api_url_other_than("http://127.0.0.1:1");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let client = agora_client::Client::new(&url).unwrap();
    let status = client.status().unwrap();
    let key = agora_crypto::load_key(&home.join("node.key")).unwrap();
    assert_eq!(status.address, key.address().to_hex());
    assert_eq!(status.roles, vec!["operator"]);
    assert_eq!(status.version, env!("CARGO_PKG_VERSION"));
    assert!(!status.syncing);
    let metrics = client.metrics().unwrap();
    assert!(metrics.contains("agora_height "), "{metrics}");
    assert!(metrics.contains("# EOF"), "{metrics}");

    // The CLI finds the node by --api and by AGORA_API.
    let out = sb.run(&["status", "--api", &url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(
        printed.contains(&status.peer_id) && printed.contains("height      "),
        "{printed}"
    );
    let out = sb
        .cmd(&["status", "--json"])
        .env("AGORA_API", &url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: agora_client::api::Status = serde_json::from_slice(&out.stdout).unwrap();
    // The chain moves on between the two reads (a block a second); the node does not.
    assert!(json.height >= status.height, "{json:?} {status:?}");
    assert_eq!(
        (&json.peer_id, &json.address, &json.roles, &json.chain_id),
        (
            &status.peer_id,
            &status.address,
            &status.roles,
            &status.chain_id
        )
    );
    assert!(
        json.last_block_age_ms.is_some() && json.halt_after_ms >= 3_000,
        "{json:?}"
    );

    node.signal("-TERM");
    let exit = node.wait(Duration::from_secs(20));
    let log = fs::read_to_string(&node.log).unwrap();
    assert!(exit.success(), "exit {exit}: {log}");
    assert!(log.contains("stopped cleanly"), "{log}");
    assert!(!home.join("api.addr").exists(), "api.addr removed on stop");
}

#[test]
fn status_finds_the_default_testnet_and_reports_unreachable_nodes() {
    let sb = Sandbox::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = sb.run(&["status"]);
    assert_clear_error(&out, &["no node API given", "AGORA_API"]);

    let dir = sb.path(agora_client::DEFAULT_TESTNET_DIR);
    fs::create_dir_all(&dir).unwrap();
    let file = agora_client::TestnetFile {
        nodes: vec![agora_client::TestnetNode {
            name: "op0".into(),
            role: "operator".into(),
            peer_id: "12D3KooWx".into(),
            address: "00".repeat(32),
            listen: "/ip4/127.0.0.1/tcp/1".into(),
            api: format!("http://127.0.0.1:{port}"),
            pid: None,
            ..Default::default()
        }],
        client_key: dir.join("client.key"),
        ..Default::default()
    };
    file.write(&dir.join(agora_client::TESTNET_FILE)).unwrap();
    let out = sb.run(&["status"]);
    assert_clear_error(&out, &["cannot reach the node", &port.to_string()]);
}

#[test]
fn corrupt_key_file_is_one_clear_line() {
    let sb = Sandbox::new();
    let home = sb.init("home", &[]);
    fs::write(home.join("node.key"), "{ definitely not a key").unwrap();
    let out = sb
        .cmd(&[
            "node",
            "--home",
            home.to_str().unwrap(),
            "--api",
            "127.0.0.1:0",
        ])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_clear_error(&out, &["node.key", "corrupt"]);
    let out = sb.run(&["key", "show", "--home", home.to_str().unwrap()]);
    assert_clear_error(&out, &["node.key", "corrupt"]);
}

#[test]
fn invalid_config_values_name_the_key() {
    let sb = Sandbox::new();
    let home = sb.init("home", &[]);
    let h = home.to_str().unwrap();
    fs::write(home.join("config.toml"), "[api]\nlisten = \"banana\"\n").unwrap();
    let out = sb.run(&["node", "--home", h]);
    assert_clear_error(&out, &["`api.listen`", "config.toml"]);

    fs::write(home.join("config.toml"), "").unwrap();
    let out = sb
        .cmd(&["node", "--home", h])
        .env("AGORA__LOG__FORMAT", "xml")
        .output()
        .unwrap();
    assert_clear_error(&out, &["`log.format`", "AGORA__LOG__FORMAT"]);

    let out = sb.run(&["node", "--home", h, "--listen", "not-a-multiaddr"]);
    assert_clear_error(&out, &["`network.listen`", "command-line flags"]);
}

#[test]
fn missing_or_uninitialised_home_is_explained() {
    let sb = Sandbox::new();
    let missing = sb.path("nowhere");
    let out = sb.run(&["node", "--home", missing.to_str().unwrap()]);
    assert_clear_error(&out, &["nowhere", "does not exist", "agora init"]);
    fs::create_dir(&missing).unwrap();
    let out = sb.run(&["node", "--home", missing.to_str().unwrap()]);
    assert_clear_error(&out, &["config.toml"]);
}

#[test]
fn api_port_in_use_is_a_clear_error() {
    let sb = Sandbox::new();
    let home = sb.init("home", &[]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = sb.run(&["node", "--home", home.to_str().unwrap(), "--api", &addr]);
    assert_clear_error(&out, &["api.listen", &addr, "in use"]);
}

#[test]
fn second_node_on_one_home_is_refused_and_logs_can_be_json() {
    let sb = Sandbox::new();
    let home = sb.init("home", &[]);
    let mut node = Node::start(&sb, &home, &["--log-format", "json"]);
    let url = node.api_url();

    let out = sb.run(&[
        "node",
        "--home",
        home.to_str().unwrap(),
        "--api",
        "127.0.0.1:0",
    ]);
    assert_clear_error(&out, &["locked", "another node already running"]);
    assert_eq!(
        fs::read_to_string(home.join("api.addr")).unwrap().trim(),
        url,
        "first node's file kept"
    );
    assert!(
        agora_client::Client::new(&url).unwrap().status().is_ok(),
        "first node unaffected"
    );

    node.signal("-INT");
    assert!(node.wait(Duration::from_secs(20)).success());
    let log = fs::read_to_string(&node.log).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
        .collect();
    let first = lines
        .iter()
        .find(|v| v["target"] == "node.start")
        .expect("a node.start line");
    assert_eq!(first["message"], "node started", "{log}");
    assert_eq!(first["height"], 0, "{log}");
}

/// The node raises its soft open-file limit to the hard limit at start: with the common 1,024
/// default, about a thousand idle API connections took a node down.
#[test]
fn node_raises_its_open_file_limit() {
    let sb = Sandbox::new();
    let home = sb.init("home", &["operator"]);
    // Started through a shell that lowers the soft limit first; `exec` keeps the pid.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", r#"ulimit -Sn 256 && exec "$0" "$@""#, BIN])
        .args(Node::args(&home, &[]))
        .current_dir(sb.dir.path())
        .stdin(Stdio::null());
    clean_env(&mut cmd);
    let mut node = Node::spawn(cmd, &home);
    node.api_url();
    let limits = fs::read_to_string(format!("/proc/{}/limits", node.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    assert_ne!(soft, "256", "soft limit not raised: {line}");
    assert_eq!(soft, hard, "soft limit raised to the hard one: {line}");
}

/// The API serves at most `api.max_connections` connections (one more is closed at once) and
/// closes a connection that sends no request headers within `api.header_timeout_ms`; a client
/// that behaves is served throughout.
#[test]
fn api_caps_connections_and_closes_silent_ones() {
    use std::io::Read;
    use std::net::TcpStream;

    let sb = Sandbox::new();
    let home = sb.init("home", &["operator"]);
    let args = Node::args(&home, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = sb.cmd(&args);
    cmd.env("AGORA__API__MAX_CONNECTIONS", "8")
        .env("AGORA__API__HEADER_TIMEOUT_MS", "1500");
    let mut node = Node::spawn(cmd, &home);
    let url = node.api_url();
    let addr = url.trim_start_matches("http://").to_owned();
    let client = agora_client::Client::new(&url).unwrap();
    client.status().unwrap();

    // Closed by the peer: a read returns end-of-file (or a reset) before `within`.
    let closed_within = |s: &mut TcpStream, within: Duration| -> bool {
        s.set_read_timeout(Some(within)).unwrap();
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
        }
    };
    // Eight silent connections take every slot (the status request's connection has closed,
    // as the client does not keep it alive beyond the call, or it times out with the rest).
    std::thread::sleep(Duration::from_millis(200));
    let mut silent: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(&addr).unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_millis(800)),
        "a connection over the cap must be closed at once"
    );
    // The silent ones are closed once the header timeout passes.
    for s in &mut silent {
        assert!(
            closed_within(s, Duration::from_secs(5)),
            "a connection that sends no headers must be closed"
        );
    }
    // Slots are free again: a well-behaved client is served.
    client.status().unwrap();
    let refused = fs::read_to_string(&node.log).unwrap();
    assert!(refused.contains("connection cap reached"), "{refused}");
}

/// `POST /v1/blobs` is held to a per-caller rate (429 past the burst) and to the node's disk
/// budget (507 once `blobs.max_total_mib` would be passed); reads go on throughout.
#[test]
fn blob_uploads_have_a_rate_and_a_disk_budget() {
    let sb = Sandbox::new();
    let home = sb.init("home", &[]);
    let args = Node::args(&home, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = sb.cmd(&args);
    cmd.env("AGORA__BLOBS__UPLOAD_MIB_PER_S", "1")
        .env("AGORA__BLOBS__UPLOAD_BURST_MIB", "6")
        .env("AGORA__BLOBS__MAX_TOTAL_MIB", "8");
    let mut node = Node::spawn(cmd, &home);
    let url = node.api_url();
    let client = agora_client::Client::new(&url).unwrap();
    let put = |i: u8| client.post_bytes("/v1/blobs", "application/octet-stream", &vec![i; 3 << 20]);
    // The burst: two 3 MiB blobs at once; a third must wait about 3 s for the rate.
    put(0).unwrap();
    put(1).unwrap();
    match put(2) {
        Err(agora_client::ClientError::Status { status, body, .. }) => {
            assert_eq!(status, 429, "{body}");
            assert!(body.contains("blobs.upload_mib_per_s"), "{body}");
        }
        other => panic!("expected 429, got {other:?}"),
    }
    client.status().unwrap();
    // Past the wait the rate lets it through, and the disk budget (8 MiB) refuses it.
    std::thread::sleep(Duration::from_millis(3200));
    match put(2) {
        Err(agora_client::ClientError::Status { status, body, .. }) => {
            assert_eq!(status, 507, "{body}");
            assert!(body.contains("blobs.max_total_mib"), "{body}");
        }
        other => panic!("expected 507, got {other:?}"),
    }
    client.status().unwrap();
}

/// An API beyond loopback needs a token: without one the node refuses to start; with one, POST
/// routes answer 401 unless the request carries it, GET routes stay open, and the node warns.
#[test]
fn an_api_beyond_loopback_requires_a_token() {
    let sb = Sandbox::new();
    let home = sb.init("home", &[]);
    let h = home.to_str().unwrap();
    let out = sb
        .cmd(&[
            "node",
            "--home",
            h,
            "--api",
            "0.0.0.0:0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .output()
        .unwrap();
    assert_clear_error(&out, &["0.0.0.0", "api.token", "AGORA__API__TOKEN"]);

    let mut cmd = sb.cmd(&[
        "node",
        "--home",
        h,
        "--api",
        "0.0.0.0:0",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
    ]);
    cmd.env("AGORA__API__TOKEN", "s3cret");
    let mut node = Node::spawn(cmd, &home);
    let url = node.api_url();
    let url = url.replace("0.0.0.0", "127.0.0.1");
    let anon = agora_client::Client::new(&url).unwrap().with_token(None);
    anon.status().unwrap();
    match anon.post_bytes("/v1/blobs", "application/octet-stream", b"x") {
        Err(agora_client::ClientError::Status { status, body, .. }) => {
            assert_eq!(status, 401, "{body}");
            assert!(body.contains("Bearer"), "{body}");
        }
        other => panic!("expected 401, got {other:?}"),
    }
    let wrong = anon.clone().with_token(Some("guess".into()));
    assert!(matches!(
        wrong.post_bytes("/v1/blobs", "application/octet-stream", b"x"),
        Err(agora_client::ClientError::Status { status: 401, .. })
    ));
    let ok = anon.with_token(Some("s3cret".into()));
    ok.post_bytes("/v1/blobs", "application/octet-stream", b"x")
        .unwrap();
    let log = fs::read_to_string(&node.log).unwrap();
    assert!(log.contains("listens beyond loopback"), "{log}");
}

/// Fail-stop: the chain task dies (a panic injected while it applies a block, holding the
/// market's write lock). The node does not linger as a process whose API answers for a dead
/// chain: it logs why, stops every task and exits non-zero; the store it leaves opens again and
/// the chain goes on past the block that was being applied.
#[test]
fn a_dead_chain_task_stops_the_node_and_its_store_opens_again() {
    let sb = Sandbox::new();
    let home = sb.init("home", &["operator"]);
    let args = Node::args(&home, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = sb.cmd(&args);
    cmd.env("AGORA_FAULT_CHAIN_PANIC_AT", "3");
    let mut node = Node::spawn(cmd, &home);
    let exit = node.wait(Duration::from_secs(60));
    let log = fs::read_to_string(&node.log).unwrap();
    assert_eq!(exit.code(), Some(1), "exit {exit}: {log}");
    assert!(
        log.contains("node.fatal") && log.contains("panics applying block 3"),
        "one line says which task died and why: {log}"
    );
    let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
    assert!(
        last.starts_with("error: the node's chain task failed: panicked: fault injection"),
        "{log}"
    );
    assert!(!log.contains("stopped cleanly"), "{log}");
    assert!(!home.join("api.addr").exists(), "api.addr removed: {log}");

    let mut node = Node::start(&sb, &home, &[]);
    let client = agora_client::Client::new(&node.api_url()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.status().map_or(true, |s| s.height < 5) {
        assert!(
            Instant::now() < deadline,
            "the restarted chain did not pass block 3"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    node.signal("-TERM");
    let exit = node.wait(Duration::from_secs(20));
    let log = fs::read_to_string(&node.log).unwrap();
    assert!(exit.success(), "exit {exit}: {log}");
}
