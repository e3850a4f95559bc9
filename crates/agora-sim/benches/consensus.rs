//! Consensus figures: heights decided per CPU second, messages and signature checks per
//! height for N = 4, 7, 16, 31 simulated operators on a clean network; and ed25519 signatures
//! verified per second, one by one versus batched. Prints a table (`cargo bench -p agora-sim`).

use std::time::Instant;

use agora_crypto::{Domain, Keypair, Signature};
use agora_sim::{run_consensus_seed, ConsensusSimOptions};
use agora_types::{Address, Hash};

/// CPU time of this thread in seconds (Linux), else wall time.
fn cpu_seconds(wall: Instant) -> f64 {
    if let Ok(s) = std::fs::read_to_string("/proc/thread-self/stat") {
        if let Some(rest) = s.rsplit(')').next() {
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.len() > 13 {
                let ut: f64 = f[11].parse().unwrap_or(0.0);
                let st: f64 = f[12].parse().unwrap_or(0.0);
                return (ut + st) / 100.0;
            }
        }
    }
    wall.elapsed().as_secs_f64()
}

fn main() {
    println!("consensus simulation (clean network, release build, one thread)");
    println!(
        "{:>4} {:>8} {:>10} {:>14} {:>12} {:>14}",
        "N", "heights", "cpu s", "heights/cpu s", "msgs/height", "sigchecks/height"
    );
    for n in [4usize, 7, 16, 31] {
        let opts = ConsensusSimOptions {
            nodes: n,
            byzantine: 0,
            chaos_ms: 0,
            liveness_ms: if n > 16 { 6000 } else { 15000 },
            check_determinism: false,
            faults: false,
            ..ConsensusSimOptions::default()
        };
        let wall = Instant::now();
        let c0 = cpu_seconds(wall);
        let mut heights = 0;
        let mut msgs = 0;
        let mut sigs = 0;
        for seed in 0..2 {
            let o = run_consensus_seed(&opts, seed);
            assert!(o.failure.is_none(), "{:?}", o.failure);
            heights += o.heights;
            msgs += o.messages;
            sigs += o.signature_checks;
        }
        let cpu = (cpu_seconds(wall) - c0).max(1e-3);
        println!(
            "{:>4} {:>8} {:>10.2} {:>14.1} {:>12.1} {:>14.1}",
            n,
            heights,
            cpu,
            heights as f64 / cpu,
            msgs as f64 / heights.max(1) as f64,
            sigs as f64 / heights.max(1) as f64
        );
    }

    let chain = Hash::of(b"bench");
    let keys: Vec<Keypair> = (0..64).map(Keypair::for_test).collect();
    let msgs: Vec<Vec<u8>> = (0..4096u32)
        .map(|i| [b"vote".as_slice(), &i.to_be_bytes(), &[0u8; 40]].concat())
        .collect();
    let items: Vec<(Address, &[u8], Signature)> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let k = &keys[i % keys.len()];
            (k.address(), m.as_slice(), k.sign(Domain::Vote, &chain, m))
        })
        .collect();
    // CPU time, not wall time: the machine may be shared.
    let wall = Instant::now();
    let c0 = cpu_seconds(wall);
    for _ in 0..4 {
        for (a, m, s) in &items {
            agora_crypto::verify(a, Domain::Vote, &chain, m, s).expect("valid");
        }
    }
    let single = 4.0 * items.len() as f64 / (cpu_seconds(wall) - c0).max(1e-3);
    let mut batch_rates = Vec::new();
    for size in [16usize, 64, 256] {
        let c0 = cpu_seconds(wall);
        for _ in 0..4 {
            for chunk in items.chunks(size) {
                agora_crypto::verify_batch(Domain::Vote, &chain, chunk).expect("valid");
            }
        }
        batch_rates.push((
            size,
            4.0 * items.len() as f64 / (cpu_seconds(wall) - c0).max(1e-3),
        ));
    }
    println!(
        "ed25519 verification ({} signatures x 4, per CPU second)",
        items.len()
    );
    println!("  single: {:.0}/s", single);
    for (size, r) in batch_rates {
        println!("  batch of {size}: {:.0}/s ({:.2}x)", r, r / single);
    }
}
