//! A tiny driver: named actors, blocks one second apart, and readable event logs.

use std::collections::BTreeMap;

use agora_crypto::Keypair;
use agora_market::*;
use agora_types::{Address, Amount, Hash, Height, JobId, Timestamp};

pub const T0: u64 = 1_700_000_000_000;

pub struct Actor {
    pub name: String,
    pub tx: TxBuilder,
    pub nonce: u64,
}

pub struct Harness {
    pub market: Market,
    pub actors: BTreeMap<String, Actor>,
    pub time: u64,
    pub commit_power_bps: u32,
    pub log: Vec<String>,
    pub blocks: Vec<(BlockContext, Vec<Vec<u8>>)>,
}

pub fn params() -> Params {
    Params {
        audit_bps: 0,
        ..Params::default()
    }
}

pub fn genesis(params: Params) -> Genesis {
    let mut accounts = vec![GenesisAccount {
        address: Keypair::for_test(100).address(),
        balance: Amount(1_000_000),
    }];
    for i in 0..6 {
        accounts.push(GenesisAccount {
            address: Keypair::for_test(200 + i).address(),
            balance: Amount(100_000),
        });
    }
    Genesis {
        chain_name: "agora-test".into(),
        genesis_time: Timestamp(T0),
        operators: (0..4)
            .map(|i| GenesisOperator {
                address: Keypair::for_test(i).address(),
                stake: Amount(1_000 * (i as u128 + 1)),
            })
            .collect(),
        accounts,
        params,
    }
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_params(params())
    }

    pub fn with_params(p: Params) -> Harness {
        let g = genesis(p);
        let market = Market::new(&g).unwrap();
        let chain = market.chain_id();
        let mut actors = BTreeMap::new();
        let mut add = |name: String, seed: u64| {
            actors.insert(
                name.clone(),
                Actor {
                    name,
                    tx: TxBuilder::new(Keypair::for_test(seed), chain),
                    nonce: 0,
                },
            );
        };
        for i in 0..4 {
            add(format!("op{i}"), i);
        }
        add("client".into(), 100);
        for i in 0..6 {
            add(format!("cop{i}"), 200 + i);
        }
        Harness {
            market,
            actors,
            time: T0,
            commit_power_bps: 10_000,
            log: Vec::new(),
            blocks: Vec::new(),
        }
    }

    pub fn addr(&self, name: &str) -> Address {
        self.actors[name].tx.address()
    }

    /// Sign a transaction from `name` with its next nonce.
    pub fn tx(&mut self, name: &str, kind: TxKind) -> Vec<u8> {
        let a = self.actors.get_mut(name).unwrap();
        let bytes = a.tx.bytes(a.nonce, kind);
        a.nonce += 1;
        bytes
    }

    pub fn envelope(&mut self, name: &str, kind: TxKind) -> agora_crypto::Envelope {
        let a = self.actors.get_mut(name).unwrap();
        let env = a.tx.sign(a.nonce, kind);
        a.nonce += 1;
        env
    }

    /// Apply a block `gap_ms` after the previous one; record events in the log.
    pub fn block_after(&mut self, gap_ms: u64, txs: Vec<Vec<u8>>) -> BlockResult {
        self.time += gap_ms;
        let height = Height(self.market.height().0 + 1);
        let ctx = BlockContext {
            height,
            time: Timestamp(self.time),
            proposer: self.addr("op0"),
            commit_power_bps: self.commit_power_bps,
            seed: Hash::derive("test-seed", &height.0.to_le_bytes()),
            absent: Vec::new(),
        };
        let r = self.market.apply_block(&ctx, &txs).unwrap();
        self.blocks.push((ctx, txs));
        for rec in &r.events {
            let line = format!(
                "h{} {}",
                rec.height.0,
                self.name_all(&serde_json::to_string(&rec.event).unwrap())
            );
            self.log.push(line);
        }
        for rc in &r.receipts {
            if let TxStatus::Rejected { reason } = &rc.status {
                self.log.push(format!(
                    "h{} rejected {}: {}",
                    height.0,
                    rc.kind.clone().unwrap_or_default(),
                    reason
                ));
            }
        }
        self.market.check_invariants().unwrap();
        r
    }

    pub fn block(&mut self, txs: Vec<Vec<u8>>) -> BlockResult {
        self.block_after(1_000, txs)
    }

    /// Replace known addresses in text with actor names.
    pub fn name_all(&self, text: &str) -> String {
        let mut t = text.to_owned();
        for (n, a) in &self.actors {
            t = t.replace(&a.tx.address().to_hex(), n);
        }
        t
    }

    /// The event log so far, job ids replaced by `job`, one line per event.
    pub fn story(&self, job: &JobId) -> String {
        let mut out = String::new();
        for l in &self.log {
            out.push_str(&l.replace(&job.to_hex(), "job"));
            out.push('\n');
        }
        out
    }

    pub fn submit(&mut self, spec: JobSpec) -> JobId {
        let env = self.envelope("client", TxKind::SubmitJob(spec));
        let id = env.hash();
        let r = self.block(vec![encode_envelope(&env)]);
        assert!(r.receipts[0].applied(), "{:?}", r.receipts[0]);
        id
    }

    pub fn stake_all(&mut self, n: usize, amount: u128, capacity: u32) {
        let txs: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                self.tx(
                    &format!("cop{i}"),
                    TxKind::Stake {
                        amount: Amount(amount),
                        capacity,
                    },
                )
            })
            .collect();
        let r = self.block(txs);
        assert!(r.receipts.iter().all(|r| r.applied()), "{:?}", r.receipts);
        self.log.clear();
    }
}

pub fn spec(k: u32, auction: AuctionSpec) -> JobSpec {
    JobSpec {
        module_hash: Hash::of(b"module"),
        input_hash: Hash::of(b"input"),
        module_size: 1_000,
        input_size: 10,
        args: vec!["run".into()],
        fuel_limit: 1_000_000,
        memory_limit: 1 << 20,
        replicas: k,
        audit_bps: 0,
        auction,
        max_price: Amount(1_000),
        deadline_ms: 5_000,
        min_reputation_bps: 0,
    }
}

pub fn dutch(k: u32) -> JobSpec {
    spec(
        k,
        AuctionSpec::Dutch {
            start_price: Amount(100),
            duration_ms: 10_000,
        },
    )
}

pub fn result_tx(h: &mut Harness, who: &str, job: JobId, out: &[u8]) -> Vec<u8> {
    let rh = result_hash(Outcome::Success, 0, 42, out);
    h.tx(
        who,
        TxKind::Result {
            job_id: job,
            result_hash: rh,
            fuel_used: 42,
            outcome: Outcome::Success,
            output_size: out.len() as u64,
        },
    )
}
