//! `agora chaos`, the short schedule CI runs: 60 s of every fault kind on a 5+4 testnet with
//! four byzantine nodes (an operator that double-votes, one that proposes two blocks, a
//! coprocessor that lies, one that never delivers) and the byzantine client, then the report.
//! Nothing accepted may be lost, no app hash may diverge, no honest node may be slashed, and
//! every workload key's money must match its own records to the unit; every byzantine node must
//! be detected and punished, and the honest ones paid.

use serde_json::Value;

use super::{agora, text};

#[test]
fn a_short_chaos_run_loses_nothing_and_punishes_every_byzantine_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let report = tmp.path().join("report.json");
    let out = agora(
        tmp.path(),
        &[
            "chaos",
            "--duration",
            "60s",
            "--seed",
            "20261204",
            "--operators",
            "5",
            "--coprocessors",
            "4",
            "--byzantine",
            "op3=double_vote",
            "--byzantine",
            "op4=equivocate",
            "--byzantine",
            "cp2=wrong_output",
            "--byzantine",
            "cp3=never_deliver",
            "--dir",
            dir.to_str().unwrap(),
            "--out",
            report.to_str().unwrap(),
            "--json",
        ],
    )
    .output()
    .unwrap();
    let stderr = text(&out.stderr);
    let printed: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); stderr:\n{stderr}"));
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(printed, written, "the printed and written reports differ");
    let r = printed;
    assert!(
        out.status.success(),
        "chaos broke invariants {}:\n{stderr}",
        r["broken"]
    );
    assert_eq!(r["broken"], serde_json::json!([]), "{r}");

    // The schedule ran every kind of fault (kill, pause, restart, partition, delay, loss), and
    // each was applied and healed without error.
    let faults = r["faults"].as_array().unwrap();
    assert!(faults.len() >= 6, "{} faults", faults.len());
    let kinds: std::collections::BTreeSet<&str> =
        faults.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.len(), 6, "only {kinds:?}");
    for f in faults {
        assert!(f["error"].is_null(), "{f}");
    }

    // Work got done through the faults, and none of it was lost.
    let jobs = &r["jobs"];
    assert!(jobs["settled"].as_u64().unwrap() >= 10, "{jobs}");
    assert_eq!(jobs["lost"], 0, "{jobs}");
    assert_eq!(r["transactions"]["lost"], 0, "{}", r["transactions"]);
    assert!(r["transactions"]["in_block"].as_u64().unwrap() >= 50);

    // One chain, exact money, honest nodes unharmed, the byzantine ones punished.
    assert!(r["heights_compared"].as_u64().unwrap() >= 20);
    assert_eq!(r["divergences"], serde_json::json!([]));
    assert_eq!(r["honest_slashes"], serde_json::json!([]));
    let money = r["money"].as_array().unwrap();
    assert!(money.len() >= 8, "{money:?}");
    assert!(money.iter().all(|m| m["exact"] == true), "{money:?}");
    assert_eq!(r["supply"]["conserved"], true, "{}", r["supply"]);
    let punished = r["byzantine_punished"].as_array().unwrap();
    assert_eq!(
        punished.len(),
        4,
        "{punished:?}; not: {}",
        r["byzantine_unpunished"]
    );
    for role in ["double_vote", "equivocate", "wrong_output", "never_deliver"] {
        assert!(
            punished.iter().any(|p| p.as_str().unwrap().contains(role)),
            "{role} not punished: {punished:?}"
        );
    }
    let b = &r["byzantine_client"];
    assert!(b["junk_sent"].as_u64().unwrap() > 0);
    assert_eq!(b["junk_accepted"], 0, "{b}");
    // The honest coprocessors were paid.
    for c in r["coprocessors_seen"].as_array().unwrap() {
        if c["byzantine"].is_null() {
            assert!(c["completed"].as_u64().unwrap() > 0, "{c}");
        }
    }
    // Nothing is left running: no process names a home of the testnet on its command line
    // (the nodes chaos restarted are not its children, so this checks that it stopped them).
    let dir = dir.to_str().unwrap();
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(" node ") && c.contains(dir))
        .collect();
    assert!(left.is_empty(), "still running: {left:?}");
}
