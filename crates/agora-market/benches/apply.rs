//! Transactions applied per second by the market alone, for a mix of submits, bids and results.
//!
//! Each round is three blocks: 20 clients submit k=2 Dutch jobs; 40 coprocessors accept; the
//! winners commit results (jobs settle). Signature checks are included (batched per block).

use agora_crypto::Keypair;
use agora_market::*;
use agora_types::{Amount, Hash, Height, Timestamp};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

struct Sim {
    market: Market,
    clients: Vec<(TxBuilder, u64)>,
    cops: Vec<(TxBuilder, u64)>,
    time: u64,
}

fn spec() -> JobSpec {
    JobSpec {
        module_hash: Hash::of(b"m"),
        input_hash: Hash::of(b"i"),
        module_size: 100,
        input_size: 1,
        args: vec![],
        fuel_limit: 1_000,
        memory_limit: 1 << 16,
        replicas: 2,
        audit_bps: 0,
        auction: AuctionSpec::Dutch {
            start_price: Amount(10),
            duration_ms: 10_000,
        },
        max_price: Amount(100),
        deadline_ms: 60_000,
        min_reputation_bps: 0,
    }
}

impl Sim {
    fn new() -> Sim {
        let clients: Vec<Keypair> = (0..20).map(|i| Keypair::for_test(1_000 + i)).collect();
        let cops: Vec<Keypair> = (0..40).map(|i| Keypair::for_test(2_000 + i)).collect();
        let mut accounts: Vec<GenesisAccount> = clients
            .iter()
            .chain(cops.iter())
            .map(|k| GenesisAccount {
                address: k.address(),
                balance: Amount(1u128 << 60),
            })
            .collect();
        accounts.sort_by_key(|a| a.address);
        let g = Genesis {
            chain_name: "bench".into(),
            genesis_time: Timestamp(1_000),
            operators: vec![GenesisOperator {
                address: Keypair::for_test(0).address(),
                stake: Amount(1_000),
            }],
            accounts,
            params: Params {
                audit_bps: 0,
                max_open_jobs: 1_000_000,
                ..Params::default()
            },
        };
        let market = Market::new(&g).unwrap();
        let chain = market.chain_id();
        let mut sim = Sim {
            market,
            clients: clients
                .into_iter()
                .map(|k| (TxBuilder::new(k, chain), 0))
                .collect(),
            cops: cops
                .into_iter()
                .map(|k| (TxBuilder::new(k, chain), 0))
                .collect(),
            time: 1_000,
        };
        let stakes: Vec<Vec<u8>> = sim
            .cops
            .iter_mut()
            .map(|(b, n)| {
                *n += 1;
                b.bytes(
                    *n - 1,
                    TxKind::Stake {
                        amount: Amount(1_000_000),
                        capacity: 64,
                    },
                )
            })
            .collect();
        sim.block(stakes);
        sim
    }

    fn block(&mut self, txs: Vec<Vec<u8>>) -> usize {
        self.time += 1_000;
        let ctx = BlockContext {
            height: Height(self.market.height().0 + 1),
            time: Timestamp(self.time),
            proposer: Keypair::for_test(0).address(),
            commit_power_bps: 10_000,
            seed: Hash::ZERO,
            absent: Vec::new(),
        };
        let r = self.market.apply_block(&ctx, &txs).unwrap();
        r.receipts.iter().filter(|r| r.applied()).count()
    }

    /// Build one round's three blocks (signing happens here, outside the measurement).
    fn round_txs(&mut self) -> Vec<Vec<Vec<u8>>> {
        let mut submits = Vec::new();
        let mut ids = Vec::new();
        for (b, n) in &mut self.clients {
            let env = b.submit_job(*n, spec());
            *n += 1;
            ids.push(env.hash());
            submits.push(encode_envelope(&env));
        }
        let mut bids = Vec::new();
        let mut results = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            for c in [2 * i, 2 * i + 1] {
                let (b, n) = &mut self.cops[c];
                bids.push(b.bytes(
                    *n,
                    TxKind::Bid {
                        job_id: *id,
                        bid: BidKind::Dutch {
                            min_price: Amount(10),
                        },
                    },
                ));
                let rh = result_hash(Outcome::Success, 0, 5, b"out");
                results.push(b.bytes(
                    *n + 1,
                    TxKind::Result {
                        job_id: *id,
                        result_hash: rh,
                        fuel_used: 5,
                        outcome: Outcome::Success,
                        output_size: 3,
                    },
                ));
                *n += 2;
            }
        }
        vec![submits, bids, results]
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("market");
    g.throughput(Throughput::Elements(100)); // 20 submits + 40 bids + 40 results per round
    g.sample_size(20);
    g.bench_function("apply_mixed_round", |bench| {
        bench.iter_batched(
            || {
                let mut sim = Sim::new();
                let txs = sim.round_txs();
                (sim, txs)
            },
            |(mut sim, txs)| {
                let mut applied = 0;
                for block in txs {
                    applied += sim.block(block);
                }
                // results land in the block after award, so all 100 apply
                assert_eq!(applied, 100);
                sim
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
