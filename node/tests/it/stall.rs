//! Modules made to stall a coprocessor — cheap in fuel per instruction or per host call,
//! expensive in wall time, in the executor's corpus `crates/agora-exec/tests/hostile` — run as
//! real jobs on a real testnet: every one ends as one committed result that both replicas agree
//! on, nobody is slashed for a timeout, and the client pays for the work it asked for (ADR 011).

use std::time::Duration;

use agora_client::Client;
use serde_json::Value;

use super::agora;
use super::jobs::{amount, coprocessor, events, wait_final};
use super::testnet::{active_coprocessors, up_detached};

const HOSTILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crates/agora-exec/tests/hostile"
);

fn slashed(client: &Client, address: &str) -> u128 {
    amount(&coprocessor(client, address)["slashed"])
}

#[test]
fn stalling_modules_end_as_committed_results_and_no_one_is_slashed() {
    let tmp = tempfile::tempdir().unwrap();
    let (_guard, file) = up_detached(tmp.path(), "1", "2");
    let api = file.nodes[0].api.clone();
    let client = Client::new(&api).unwrap();
    let coprocessors: Vec<String> = active_coprocessors(&client, &file)
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    assert_eq!(coprocessors.len(), 2);
    let slashed_before: Vec<u128> = coprocessors.iter().map(|a| slashed(&client, a)).collect();

    let mut modules: Vec<_> = std::fs::read_dir(HOSTILE)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wat"))
        .collect();
    modules.sort();
    assert!(modules.len() >= 20, "the corpus: {modules:?}");
    let key = file.client_key.to_str().unwrap();
    let mut ids = Vec::new();
    for m in &modules {
        let out = agora(
            tmp.path(),
            &[
                "job",
                "submit",
                m.to_str().unwrap(),
                "--replicas",
                "2",
                "--fuel",
                "20000000",
                "--max-price",
                "20000",
                "--auction-ms",
                "1000",
                "--key",
                key,
                "--api",
                &api,
                "--json",
            ],
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "submit {}: {}",
            m.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        ids.push((
            m.file_name().unwrap().to_string_lossy().into_owned(),
            v["id"].as_str().unwrap().to_owned(),
        ));
    }

    let job_ids: Vec<String> = ids.iter().map(|(_, id)| id.clone()).collect();
    let views = wait_final(&client, &job_ids, Duration::from_secs(300));
    for ((name, _), v) in ids.iter().zip(&views) {
        assert_eq!(v["state"], "settled", "{name}: {v}");
        assert!(
            v["result_hash"].is_string(),
            "{name}: one committed result: {v}"
        );
        assert!(v["outcome"].is_string(), "{name}: {v}");
        assert!(
            events(v, "timed_out").is_empty(),
            "{name}: a winner timed out: {v}"
        );
        assert_eq!(
            events(v, "paid").len(),
            2,
            "{name}: both replicas agreed and were paid: {v}"
        );
    }
    let slashed_after: Vec<u128> = coprocessors.iter().map(|a| slashed(&client, a)).collect();
    assert_eq!(
        slashed_after, slashed_before,
        "no honest coprocessor was slashed"
    );
}
