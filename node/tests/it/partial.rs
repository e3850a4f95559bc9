//! Partial failure on a real testnet (4 operators, 3 coprocessors): with one operator process
//! stopped (SIGSTOP: its sockets stay open and its timers freeze), sealed auctions with 2 s
//! phases settle and forfeit no bond. The same with a cut-off operator, and a dead operator
//! never drawn as auditor, are the in-process rig's (agora-sim `rig.rs`).

use std::process::Command;
use std::time::{Duration, Instant};

use agora_client::Client;
use serde_json::Value;

use super::agora;
use super::testnet::{active_coprocessors, up_detached, wait_until};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {sig} {pid}");
}

/// Resumes a paused process whatever happens, so the testnet can be stopped.
struct Paused(u32);

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

fn job(client: &Client, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.get_json(&format!("/v1/jobs/{id}")) {
            Err(agora_client::ClientError::Status { status: 404, .. })
                if Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(100))
            }
            r => return r.unwrap(),
        }
    }
}

fn wait_final(client: &Client, ids: &[String], limit: Duration) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let views: Vec<Value> = ids.iter().map(|id| job(client, id)).collect();
        if views
            .iter()
            .all(|v| matches!(v["state"].as_str(), Some("settled" | "refunded" | "failed")))
        {
            return views;
        }
        assert!(
            Instant::now() < deadline,
            "jobs not final after {limit:?}: {views:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn has_event(view: &Value, kind: &str) -> bool {
    view["events"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["event"].get(kind).is_some())
}

fn submit(tmp: &std::path::Path, api: &str, key: &str, extra: &[&str]) -> String {
    let hello = format!("{EXAMPLES}/hello.wat");
    let mut args = vec![
        "job", "submit", &hello, "--key", key, "--json", "--api", api,
    ];
    args.extend(extra);
    let out = agora(tmp, &args).output().unwrap();
    assert!(
        out.status.success(),
        "submit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

#[test]
fn a_paused_operator_costs_no_bidder_its_bond() {
    let tmp = tempfile::tempdir().unwrap();
    let (_guard, file) = up_detached(tmp.path(), "4", "3");
    let api = file.nodes[0].api.clone();
    let client = Client::new(&api).unwrap();
    let key = file.client_key.to_str().unwrap().to_owned();
    let coprocessors: Vec<String> = active_coprocessors(&client, &file)
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    assert_eq!(coprocessors.len(), 3);
    let operators: Vec<_> = file.nodes.iter().filter(|n| n.role == "operator").collect();
    // We talk to node 0; the victim is the last operator.
    let paused = operators[operators.len() - 1];
    assert_ne!(paused.api, api);

    // --- One operator paused: sealed auctions with 2 s commit and reveal phases.
    let guard = Paused(paused.pid.expect("pid"));
    signal(guard.0, "-STOP");
    let ids: Vec<String> = (0..6)
        .map(|_| {
            submit(
                tmp.path(),
                &api,
                &key,
                &["--auction", "sealed", "--auction-ms", "4000"],
            )
        })
        .collect();
    let views = wait_final(&client, &ids, Duration::from_secs(120));
    for v in &views {
        assert_eq!(v["state"], "settled", "{v}");
        assert!(!has_event(v, "bond_forfeited"), "no bond lost: {v}");
    }
    let market: Value = client.get_json("/v1/market").unwrap();
    assert_eq!(market["invariants"], "ok", "{market}");
    signal(guard.0, "-CONT");
    drop(guard);
    // Resumed, it catches up with the chain it slept through.
    let height = |c: &Client| c.status().map(|s| s.height).unwrap_or(0);
    let target = height(&client);
    let woken = Client::new(&paused.api).unwrap();
    wait_until(
        "the resumed operator to catch up",
        Duration::from_secs(60),
        || height(&woken) >= target,
    );
}
