//! The multi-process testnet: real `agora node` processes on loopback agree on one chain,
//! survive a `kill -9` of an operator, let it catch up after a restart, and let a node that
//! starts late sync from genesis.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agora_client::{Client, TestnetFile};

use super::agora;

/// Stops the detached testnet (and any extra node) whatever happens in the test.
pub(super) struct Guard {
    pub(super) dir: PathBuf,
    pub(super) extra: Vec<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.extra {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = agora(
            &self.dir,
            &["testnet", "down", "--dir", self.dir.to_str().unwrap()],
        )
        .output();
    }
}

/// `agora testnet up --detach` in `tmp/net`; the guard stops it when dropped.
pub(super) fn up_detached(tmp: &Path, operators: &str, coprocessors: &str) -> (Guard, TestnetFile) {
    let dir = tmp.join("net");
    let out = agora(
        tmp,
        &[
            "testnet",
            "up",
            "--operators",
            operators,
            "--coprocessors",
            coprocessors,
            "--dir",
            dir.to_str().unwrap(),
            "--detach",
        ],
    )
    .output()
    .unwrap();
    let guard = Guard {
        dir: dir.clone(),
        extra: Vec::new(),
    };
    assert!(
        out.status.success(),
        "testnet up failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let file = TestnetFile::read(&dir.join("testnet.json")).unwrap();
    (guard, file)
}

fn height(api: &str) -> Option<u64> {
    Client::with_timeout(api, Duration::from_secs(2))
        .ok()?
        .status()
        .ok()
        .map(|s| s.height)
}

fn block_hash(api: &str, h: u64) -> Option<String> {
    let c = Client::with_timeout(api, Duration::from_secs(2)).ok()?;
    let v: serde_json::Value = c.get_json(&format!("/v1/blocks/{h}")).ok()?;
    v["hash"].as_str().map(str::to_owned)
}

/// The testnet's coprocessors as `(name, address)`, once every one of them is active on chain.
pub(super) fn active_coprocessors(client: &Client, file: &TestnetFile) -> Vec<(String, String)> {
    let cops: Vec<(String, String)> = file
        .nodes
        .iter()
        .filter(|n| n.role == "coprocessor")
        .map(|n| (n.name.clone(), n.address.clone()))
        .collect();
    let what = format!("{} active coprocessors", cops.len());
    wait_until(&what, Duration::from_secs(60), || {
        cops.iter().all(|(_, a)| {
            client
                .get_json::<serde_json::Value>(&format!("/v1/coprocessors/{a}"))
                .is_ok_and(|v| v["active"] == true)
        })
    });
    cops
}

pub(super) fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Start a node process on `home`, bootstrapping from `bootstrap`; returns it and its API URL.
pub(super) fn start_node(dir: &Path, home: &Path, bootstrap: &str) -> (Child, String) {
    let _ = std::fs::remove_file(home.join("api.addr"));
    let log = std::fs::File::create(home.with_extension("restart.log")).unwrap();
    let child = agora(
        dir,
        &[
            "node",
            "--home",
            home.to_str().unwrap(),
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
            "--bootstrap",
            bootstrap,
        ],
    )
    .stdout(Stdio::null())
    .stderr(log)
    .spawn()
    .unwrap();
    let mut api = String::new();
    wait_until("the node's api.addr", Duration::from_secs(30), || {
        api = std::fs::read_to_string(home.join("api.addr"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        !api.is_empty()
    });
    (child, api)
}

/// Whether `pid` is a running process. An exited process that its parent (here `init`, as the
/// nodes of a detached testnet are orphans) has not reaped yet is a zombie: it answers
/// `kill -0` but runs no more, so it counts as stopped.
pub(super) fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X' | 'x')
        ),
        Err(_) => false,
    }
}

pub(super) fn kill9(pid: u32) {
    let ok = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn testnet_agrees_survives_a_crash_and_syncs_late_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut guard, file) = up_detached(tmp.path(), "4", "1");
    let dir = guard.dir.clone();
    assert_eq!(file.nodes.len(), 5);
    assert!(file.client_key.exists());
    for n in &file.nodes {
        assert!(n.api.starts_with("http://127.0.0.1:"), "{n:?}");
        assert!(n.listen.contains("/p2p/"), "{n:?}");
        assert!(n.pid.is_some());
    }
    let apis: Vec<String> = file.nodes.iter().map(|n| n.api.clone()).collect();

    // Ten heights on every node, operators and the follower alike, with identical blocks.
    wait_until("10 heights on every node", Duration::from_secs(120), || {
        apis.iter().all(|a| height(a).is_some_and(|h| h >= 10))
    });
    for h in 1..=10 {
        let hashes: Vec<Option<String>> = apis.iter().map(|a| block_hash(a, h)).collect();
        assert!(hashes[0].is_some(), "no block {h}");
        assert!(
            hashes.iter().all(|x| *x == hashes[0]),
            "nodes disagree at height {h}: {hashes:?}"
        );
    }

    // kill -9 one operator: the other three (3 of 4 power > 2/3) keep deciding.
    let victim = &file.nodes[3];
    kill9(victim.pid.unwrap());
    let before = height(&apis[0]).unwrap();
    wait_until(
        "progress without operator-3",
        Duration::from_secs(60),
        || height(&apis[0]).is_some_and(|h| h >= before + 3),
    );

    // Restart it from its store: it catches up to the same chain.
    let home = dir.join(&victim.name);
    let (child, api) = start_node(&dir, &home, &file.nodes[0].listen);
    guard.extra.push(child);
    let target = height(&apis[0]).unwrap();
    wait_until(
        "the restarted operator to catch up",
        Duration::from_secs(90),
        || height(&api).is_some_and(|h| h >= target),
    );
    assert_eq!(block_hash(&api, target), block_hash(&apis[0], target));

    // A node started now syncs from genesis.
    let late = dir.join("late");
    let init = agora(&dir, &["init", "--home", late.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    std::fs::copy(dir.join("genesis.json"), late.join("genesis.json")).unwrap();
    let (child, late_api) = start_node(&dir, &late, &file.nodes[1].listen);
    guard.extra.push(child);
    let target = height(&apis[1]).unwrap();
    wait_until("the late node to sync", Duration::from_secs(90), || {
        height(&late_api).is_some_and(|h| h >= target)
    });
    for h in [1, target / 2, target] {
        assert_eq!(
            block_hash(&late_api, h),
            block_hash(&apis[1], h),
            "late node differs at {h}"
        );
    }

    // `testnet down` stops every process it started.
    drop(guard);
    for n in &file.nodes {
        assert!(
            !running(n.pid.unwrap()),
            "{} still running after testnet down",
            n.name
        );
    }
}

/// A job nobody can take (a network without coprocessors) is refunded in full, `job why` says
/// why, and bad input to `job submit` (not WebAssembly, over the size limit, an unfunded key, a
/// wrong API URL) is one clear error.
#[test]
fn untakeable_job_is_refunded_and_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let (_guard, file) = up_detached(tmp.path(), "1", "0");
    let api = file.nodes[0].api.clone();
    let key = file.client_key.to_str().unwrap().to_owned();
    let client = Client::new(&api).unwrap();
    let address = agora_crypto::load_key(&file.client_key).unwrap().address();
    let balance = |c: &Client| -> serde_json::Value {
        c.get_json::<serde_json::Value>(&format!("/v1/accounts/{address}"))
            .unwrap()["balance"]
            .clone()
    };
    let before = balance(&client);

    let wat = tmp.path().join("hello.wat");
    std::fs::write(
        &wat,
        r#"(module (memory (export "memory") 1) (func (export "_start")))"#,
    )
    .unwrap();
    let out = agora(
        tmp.path(),
        &[
            "job",
            "submit",
            wat.to_str().unwrap(),
            "--api",
            &api,
            "--key",
            &key,
            "--auction-ms",
            "1000",
            "--wait",
            "--json",
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["state"], "refunded", "{job}");
    assert_eq!(job["winners"], serde_json::json!([]));
    assert!(job["events"].as_array().is_some_and(|e| !e.is_empty()));
    assert_eq!(balance(&client), before, "escrow returned in full");

    let id = job["id"].as_str().unwrap();
    let out = agora(tmp.path(), &["job", "why", id, "--api", &api, "--json"])
        .output()
        .unwrap();
    let why: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        why["failure"]
            .as_str()
            .is_some_and(|f| f.contains("no coprocessor")),
        "{why}"
    );

    // Bad input to `job submit`: one clear line each, a non-zero exit, never a panic.
    let junk = tmp.path().join("junk.wasm");
    std::fs::write(&junk, b"hello").unwrap();
    let poor = tmp.path().join("poor.key");
    agora_crypto::save_key(&poor, &agora_crypto::Keypair::generate()).unwrap();
    let big = tmp.path().join("big.wasm");
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    bytes.resize(5 << 20, 0);
    std::fs::write(&big, bytes).unwrap();
    let (junk, poor, big, wat) = (
        junk.to_str().unwrap(),
        poor.to_str().unwrap(),
        big.to_str().unwrap(),
        wat.to_str().unwrap(),
    );
    let cases: [(&str, &str, &str, &str); 5] = [
        (junk, &api, &key, "not a WebAssembly module"),
        // An endless device is cut off at the limit, never buffered whole.
        (
            "/dev/zero",
            &api,
            &key,
            "not a regular file and gave more than",
        ),
        (wat, &api, poor, "insufficient funds"),
        (big, &api, &key, "byte limit"),
        (wat, "http://127.0.0.1:1", &key, "127.0.0.1:1"),
    ];
    for (file, api, key, needle) in cases {
        let out = agora(
            tmp.path(),
            &["job", "submit", file, "--api", api, "--key", key],
        )
        .output()
        .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && err.contains(needle)
                && err.lines().count() == 1
                && !err.contains("panicked"),
            "{file} via {api}: {err}"
        );
    }
    // The same bound holds for the input.
    let out = agora(
        tmp.path(),
        &[
            "job",
            "submit",
            wat,
            "--input",
            "/dev/zero",
            "--api",
            &api,
            "--key",
            &key,
        ],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("input /dev/zero is not a regular file"),
        "{err}"
    );
}
