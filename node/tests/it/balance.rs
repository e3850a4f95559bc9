//! Load balance on real processes: `agora bench jobs` on the default testnet reports a Jain's
//! index over coprocessor utilisation within 0.1 of what the simulator predicts for the same
//! load (scenario `testnet-compare`), so the simulator's claims about the market carry over.

use super::agora;
use super::testnet::up_detached;

#[test]
fn bench_jobs_balances_load_as_the_simulator_predicts() {
    let tmp = tempfile::tempdir().unwrap();
    let (_guard, file) = up_detached(tmp.path(), "4", "3");
    let api = &file.nodes[0].api;
    let key = file.client_key.to_str().unwrap();
    let out = agora(
        tmp.path(),
        &[
            "bench", "jobs", "--api", api, "--key", key, "--jobs", "200", "--rate", "10",
            "--verify", "1", "--json",
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "bench jobs failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["settled"], 200, "{doc}");
    let per = doc["utilisation"].as_array().unwrap();
    assert_eq!(per.len(), 3, "three coprocessors sampled: {doc}");
    let live = doc["jain_utilisation"].as_f64().unwrap();

    let sim = agora_econ::run_scenario("testnet-compare", None, None).unwrap();
    let dutch = sim.runs.iter().find(|m| m.mechanism == "dutch").unwrap();
    let predicted = dutch.jain_honest;
    assert!(predicted > 0.9, "the simulator's own figure: {predicted}");
    assert!(
        (live - predicted).abs() <= 0.1,
        "live Jain {live:.3} against the simulator's {predicted:.3}: {doc}"
    );
}
