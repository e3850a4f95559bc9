//! Run many simulator seeds in release: `cargo run -p agora-sim --release --example
//! consensus_seeds -- NODES BYZANTINE SEEDS FROM THREADS`.

use agora_sim::{run_consensus_seeds, ConsensusSimOptions};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let get = |i: usize, d: u64| args.get(i).copied().unwrap_or(d);
    let opts = ConsensusSimOptions {
        nodes: get(0, 4) as usize,
        byzantine: get(1, 1) as usize,
        seeds: get(2, 1000),
        from: get(3, 0),
        threads: get(4, 1) as usize,
        ..ConsensusSimOptions::default()
    };
    let s = run_consensus_seeds(&opts);
    print!("{s}");
    if !s.ok() {
        std::process::exit(1);
    }
}
