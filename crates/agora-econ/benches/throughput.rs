//! Simulation throughput: runs a scenario's market runs and prints jobs per second, plus the
//! share of time spent signing and verifying ed25519 (measured separately on the same count).
//!
//! `cargo bench -p agora-econ --bench throughput -- [SCENARIO] [OUT_DIR]`

use std::time::Instant;

use agora_crypto::{Domain, Keypair};
use agora_econ::{run_market, Mechanism, Scenario, World};
use agora_types::Hash;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let name = args.first().map(String::as_str).unwrap_or("paper-slashing");
    if let Some(out) = args.get(1) {
        let t = Instant::now();
        let s = agora_econ::run_scenario(name, Some(std::path::Path::new(out)), None)
            .expect("scenario runs");
        println!(
            "scenario {name}: {} runs written to {out} in {:.2?} (digest {})",
            s.runs.len(),
            t.elapsed(),
            &s.digest[..16]
        );
        return;
    }
    let sc = Scenario::load(name).expect("scenario loads");
    let f = &sc.file;
    for v in &sc.variants {
        let world = World::generate(f.seed, &v.population, &v.jobs, f.blocks, &v.params);
        for m in [Mechanism::Dutch, Mechanism::Sealed] {
            let t = Instant::now();
            let r = run_market(f, v, &world, m).expect("run");
            let dt = t.elapsed().as_secs_f64();
            println!(
                "{name} {} {}: {} jobs, {} txs, {} blocks in {:.3} s = {:.0} jobs/s, {:.0} tx/s",
                v.label,
                m.name(),
                r.metrics.jobs,
                r.metrics.txs,
                f.blocks + f.drain_blocks,
                dt,
                r.metrics.jobs as f64 / dt,
                r.metrics.txs as f64 / dt
            );
        }
    }
    // ed25519 share: sign + single verify of the same number of small payloads.
    let key = Keypair::for_test(1);
    let chain = Hash::of(b"bench");
    let n = 20_000;
    let t = Instant::now();
    for i in 0..n {
        let msg = (i as u64).to_le_bytes();
        let sig = key.sign(Domain::Transaction, &chain, &msg);
        std::hint::black_box(sig);
    }
    let sign = t.elapsed().as_secs_f64() / n as f64;
    let sig = key.sign(Domain::Transaction, &chain, b"x");
    let t = Instant::now();
    for _ in 0..n {
        let ok = agora_crypto::verify(&key.address(), Domain::Transaction, &chain, b"x", &sig);
        std::hint::black_box(ok.is_ok());
    }
    let verify = t.elapsed().as_secs_f64() / n as f64;
    println!(
        "ed25519: sign {:.1} us, verify {:.1} us per signature",
        sign * 1e6,
        verify * 1e6
    );
}
