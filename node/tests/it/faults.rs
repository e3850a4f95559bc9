//! `agora testnet fault`: partition and heal cut and restore real nodes' links; loss halts and
//! delay slows the real nodes of a detached testnet; pause, resume, kill and restart act on
//! its node processes and keep `testnet.json` true; wrong names and amounts are clear errors.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use agora_client::{Client, TestnetFile};
use serde_json::Value;

use super::testnet::{up_detached, wait_until};
use super::{agora, assert_clear_error, text};

fn height(api: &str) -> Option<u64> {
    Client::with_timeout(api, Duration::from_secs(1))
        .ok()?
        .status()
        .ok()
        .map(|s| s.height)
}

fn peers(api: &str) -> Option<u32> {
    Client::with_timeout(api, Duration::from_secs(1))
        .ok()?
        .status()
        .ok()
        .map(|s| s.peers)
}

fn block_hash(api: &str, h: u64) -> Option<String> {
    let c = Client::with_timeout(api, Duration::from_secs(2)).ok()?;
    let v: Value = c.get_json(&format!("/v1/blocks/{h}")).ok()?;
    v["hash"].as_str().map(str::to_owned)
}

/// The process has exited (an unreaped zombie counts as exited).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

fn fault(tmp: &Path, dir: &str, args: &[&str]) -> Output {
    let mut all = vec!["testnet", "fault"];
    all.extend_from_slice(args);
    all.extend(["--dir", dir]);
    agora(tmp, &all).output().unwrap()
}

/// `testnet fault ... --json`, asserting success.
fn fault_json(tmp: &Path, dir: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = fault(tmp, dir, &all);
    assert!(
        out.status.success(),
        "fault {args:?}: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn fault_commands_kill_pause_resume_and_restart_a_node() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (guard, file) = up_detached(t, "4", "0");
    let dir = guard.dir.clone();
    let d = dir.to_str().unwrap();
    let tn = dir.join("testnet.json");
    let op0 = file.nodes[0].api.clone();
    let victim = file.nodes[3].clone();
    let old_pid = victim.pid.unwrap();
    wait_until("3 heights", Duration::from_secs(60), || {
        height(&op0).is_some_and(|h| h >= 3)
    });

    // A wrong name lists the valid ones; a wrong amount says what is expected.
    let out = fault(t, d, &["kill", "op9"]);
    assert_clear_error(
        &out,
        &[
            "no node \"op9\"",
            "operator-0, operator-1, operator-2, operator-3",
        ],
    );
    let out = fault(t, d, &["delay", "op1", "50"]);
    assert_clear_error(&out, &["delay \"50\" needs a unit", "50ms"]);
    let out = fault(t, d, &["loss", "op1", "150%"]);
    assert_clear_error(&out, &["over 100%"]);
    let out = fault(t, d, &["loss", "op9", "1%"]);
    assert_clear_error(&out, &["no node \"op9\""]);
    let out = fault(t, d, &["partition", "op0,op1"]);
    assert_clear_error(&out, &["at least two groups"]);

    // Partitioned from the other three, operator-0 loses every peer and stops deciding while
    // the three, above 2/3 of the power, go on; healed, it catches up to the same chain.
    let op1 = file.nodes[1].api.clone();
    let v = fault_json(t, d, &["partition", "op0", "/", "op1,op2,op3"]);
    assert_eq!(v["fault"], "partition", "{v}");
    assert_eq!(v["nodes"][0]["node"], "operator-0", "{v}");
    assert_eq!(
        v["nodes"][0]["cut_off_from"].as_array().unwrap().len(),
        3,
        "{v}"
    );
    assert_eq!(
        v["nodes"][1]["cut_off_from"],
        serde_json::json!(["operator-0"]),
        "{v}"
    );
    wait_until(
        "operator-0 to lose its peers",
        Duration::from_secs(20),
        || peers(&op0) == Some(0),
    );
    let cut_at = height(&op0).unwrap();
    let majority_at = height(&op1).unwrap();
    wait_until(
        "the majority to decide without operator-0",
        Duration::from_secs(60),
        || height(&op1).is_some_and(|h| h >= majority_at + 4),
    );
    assert!(
        height(&op0).unwrap() <= cut_at + 1,
        "a partitioned operator kept deciding: {cut_at} -> {:?}",
        height(&op0)
    );
    assert_eq!(peers(&op0), Some(0), "a partitioned node found a peer");
    let v = fault_json(t, d, &["heal"]);
    assert_eq!(v["fault"], "heal", "{v}");
    assert!(v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["cut_off_from"].as_array().unwrap().is_empty()));
    let target = height(&op1).unwrap();
    wait_until(
        "the healed operator to catch up",
        Duration::from_secs(60),
        || height(&op0).is_some_and(|h| h >= target),
    );
    assert_eq!(block_hash(&op0, target), block_hash(&op1, target));

    // Every node losing every message it receives, the chain halts; the loss undone, it goes on.
    let v = fault_json(t, d, &["loss", "all", "100%"]);
    assert_eq!(v["fault"], "loss", "{v}");
    assert_eq!(v["nodes"].as_array().unwrap().len(), 4, "{v}");
    assert!(v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["loss_bps"] == 10_000));
    let halted_at = height(&op1).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        height(&op1).unwrap() <= halted_at + 1,
        "the chain went on with every message lost: {halted_at} -> {:?}",
        height(&op1)
    );
    fault_json(t, d, &["loss", "all", "0%"]);
    let resumed_at = height(&op1).unwrap();
    wait_until(
        "the chain to go on once the loss is undone",
        Duration::from_secs(60),
        || height(&op1).is_some_and(|h| h >= resumed_at + 3),
    );

    // Delayed 200 ms, the chain still decides. A partition keeps the delay; heal clears both.
    let v = fault_json(t, d, &["delay", "all", "200ms"]);
    assert!(v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["delay_ms"] == 200 && n["loss_bps"] == 0));
    let slow_at = height(&op1).unwrap();
    wait_until(
        "the chain to decide under a 200 ms delay",
        Duration::from_secs(60),
        || height(&op1).is_some_and(|h| h >= slow_at + 3),
    );
    let op1_faults = dir.join("operator-1").join("net-faults.json");
    let read_faults =
        || -> Value { serde_json::from_slice(&std::fs::read(&op1_faults).unwrap()).unwrap() };
    fault_json(t, d, &["partition", "op0", "/", "op1,op2,op3"]);
    let f = read_faults();
    assert_eq!(f["delay_ms"], 200, "{f}");
    assert_eq!(f["partitioned"].as_array().unwrap().len(), 1, "{f}");
    fault_json(t, d, &["heal"]);
    let f = read_faults();
    assert_eq!(f["delay_ms"], 0, "{f}");
    assert!(f["partitioned"].as_array().unwrap().is_empty(), "{f}");
    let target = height(&op1).unwrap();
    wait_until(
        "every node to catch up once healed",
        Duration::from_secs(60),
        || height(&op0).is_some_and(|h| h >= target),
    );

    // Paused, the node's API stops answering; resumed, it answers again.
    let v = fault_json(t, d, &["pause", "op3"]);
    assert_eq!(v["node"], "operator-3", "{v}");
    assert_eq!(v["signal"], "SIGSTOP", "{v}");
    assert_eq!(v["pid"], old_pid, "{v}");
    assert_eq!(height(&victim.api), None, "a paused node answered");
    let v = fault_json(t, d, &["resume", "operator-3"]);
    assert_eq!(v["signal"], "SIGCONT", "{v}");
    wait_until(
        "the resumed node to answer",
        Duration::from_secs(20),
        || height(&victim.api).is_some(),
    );

    // Killed, the process is gone, its API is silent and testnet.json no longer lists a pid;
    // the three others keep deciding.
    let v = fault_json(t, d, &["kill", "op3"]);
    assert_eq!(v["signal"], "SIGKILL", "{v}");
    assert_eq!(v["pid"], old_pid, "{v}");
    assert!(gone(old_pid), "pid {old_pid} still running after kill");
    assert_eq!(height(&victim.api), None, "a killed node answered");
    let now = TestnetFile::read(&tn).unwrap();
    assert_eq!(now.nodes[3].pid, None);
    assert_eq!(now.nodes[0].pid, file.nodes[0].pid, "other nodes untouched");
    let out = fault(t, d, &["kill", "op3"]);
    assert_clear_error(&out, &["operator-3 is not running", "fault restart"]);
    let before = height(&op0).unwrap();
    wait_until(
        "progress without operator-3",
        Duration::from_secs(60),
        || height(&op0).is_some_and(|h| h >= before + 3),
    );

    // Restarted on its home, it answers on its new API and catches up to the same chain.
    let v = fault_json(t, d, &["restart", "op3"]);
    assert_eq!(v["fault"], "restart", "{v}");
    let new_pid = v["new_pid"].as_u64().unwrap() as u32;
    assert_ne!(new_pid, old_pid);
    let now = TestnetFile::read(&tn).unwrap();
    let restarted = &now.nodes[3];
    assert_eq!(restarted.pid, Some(new_pid));
    assert_eq!(v["api"], restarted.api.as_str(), "{v}");
    assert_eq!(restarted.peer_id, victim.peer_id, "same home, same key");
    let target = height(&op0).unwrap();
    wait_until(
        "the restarted operator to catch up",
        Duration::from_secs(60),
        || height(&restarted.api).is_some_and(|h| h >= target),
    );
    assert_eq!(
        block_hash(&restarted.api, target),
        block_hash(&op0, target),
        "the restarted node holds another chain"
    );

    // `testnet down` stops the restarted process too.
    drop(guard);
    assert!(
        gone(new_pid),
        "restarted node still running after testnet down"
    );
}
