//! Properties over random histories of valid and invalid transactions.

use agora_market::*;
use agora_types::{Amount, Hash, JobId};
use proptest::prelude::*;

use crate::harness::*;

#[derive(Clone, Debug)]
enum Op {
    Transfer { from: u8, to: u8, amount: u32 },
    Stake { who: u8, amount: u32, capacity: u8 },
    Unstake { who: u8, amount: u32 },
    Submit { k: u8, sealed: bool, max_price: u16 },
    Cancel { job: u8 },
    Accept { who: u8, job: u8, price: u16 },
    Commit { who: u8, job: u8, price: u16 },
    Reveal { who: u8, job: u8, price: u16 },
    Result { who: u8, job: u8, honest: bool },
    Audit { op: u8, job: u8, honest: bool },
    BadNonce { who: u8 },
    Garbage,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..8u8, 0..8u8, 0..200_000u32).prop_map(|(from, to, amount)| Op::Transfer {
            from,
            to,
            amount
        }),
        (0..6u8, 0..20_000u32, 0..6u8).prop_map(|(who, amount, capacity)| Op::Stake {
            who,
            amount,
            capacity
        }),
        (0..6u8, 0..5_000u32).prop_map(|(who, amount)| Op::Unstake { who, amount }),
        (0..6u8, any::<bool>(), 0..3_000u16).prop_map(|(k, sealed, max_price)| Op::Submit {
            k,
            sealed,
            max_price
        }),
        (0..8u8).prop_map(|job| Op::Cancel { job }),
        (0..6u8, 0..8u8, 0..1_500u16).prop_map(|(who, job, price)| Op::Accept { who, job, price }),
        (0..6u8, 0..8u8, 0..1_500u16).prop_map(|(who, job, price)| Op::Commit { who, job, price }),
        (0..6u8, 0..8u8, 0..1_500u16).prop_map(|(who, job, price)| Op::Reveal { who, job, price }),
        (0..6u8, 0..8u8, prop::bool::weighted(0.8)).prop_map(|(who, job, honest)| Op::Result {
            who,
            job,
            honest
        }),
        (0..4u8, 0..8u8, any::<bool>()).prop_map(|(op, job, honest)| Op::Audit { op, job, honest }),
        (0..6u8).prop_map(|who| Op::BadNonce { who }),
        Just(Op::Garbage),
    ]
}

fn name(i: u8) -> String {
    match i % 8 {
        0..=5 => format!("cop{}", i % 8),
        6 => "client".into(),
        _ => "op1".into(),
    }
}

struct World {
    h: Harness,
    jobs: Vec<JobId>,
}

impl World {
    fn job(&self, i: u8) -> JobId {
        if self.jobs.is_empty() {
            Hash([i; 32])
        } else {
            self.jobs[i as usize % self.jobs.len()]
        }
    }

    fn build(&mut self, op: &Op) -> Vec<u8> {
        let salt = Hash([9; 32]);
        match op.clone() {
            Op::Transfer { from, to, amount } => {
                let to = self.h.addr(&name(to));
                self.h.tx(
                    &name(from),
                    TxKind::Transfer {
                        to,
                        amount: Amount(amount as u128),
                    },
                )
            }
            Op::Stake {
                who,
                amount,
                capacity,
            } => self.h.tx(
                &format!("cop{}", who % 6),
                TxKind::Stake {
                    amount: Amount(amount as u128),
                    capacity: capacity as u32,
                },
            ),
            Op::Unstake { who, amount } => self.h.tx(
                &format!("cop{}", who % 6),
                TxKind::Unstake {
                    amount: Amount(amount as u128),
                },
            ),
            Op::Submit {
                k,
                sealed,
                max_price,
            } => {
                let auction = if sealed {
                    AuctionSpec::Sealed {
                        commit_ms: 2_000,
                        reveal_ms: 2_000,
                    }
                } else {
                    AuctionSpec::Dutch {
                        start_price: Amount(50),
                        duration_ms: 5_000,
                    }
                };
                let mut s = spec(k as u32, auction);
                s.max_price = Amount(max_price as u128);
                s.deadline_ms = 3_000;
                let env = self.h.envelope("client", TxKind::SubmitJob(s));
                self.jobs.push(env.hash());
                encode_envelope(&env)
            }
            Op::Cancel { job } => {
                let job_id = self.job(job);
                self.h.tx("client", TxKind::CancelJob { job_id })
            }
            Op::Accept { who, job, price } => {
                let job_id = self.job(job);
                self.h.tx(
                    &format!("cop{}", who % 6),
                    TxKind::Bid {
                        job_id,
                        bid: BidKind::Dutch {
                            min_price: Amount(price as u128),
                        },
                    },
                )
            }
            Op::Commit { who, job, price } => {
                let job_id = self.job(job);
                let n = format!("cop{}", who % 6);
                let commitment =
                    sealed_commitment(&job_id, &self.h.addr(&n), Amount(price as u128), &salt);
                self.h.tx(
                    &n,
                    TxKind::Bid {
                        job_id,
                        bid: BidKind::Commit { commitment },
                    },
                )
            }
            Op::Reveal { who, job, price } => {
                let job_id = self.job(job);
                self.h.tx(
                    &format!("cop{}", who % 6),
                    TxKind::Bid {
                        job_id,
                        bid: BidKind::Reveal {
                            price: Amount(price as u128),
                            salt,
                        },
                    },
                )
            }
            Op::Result { who, job, honest } => {
                let job_id = self.job(job);
                let out: &[u8] = if honest { b"ok" } else { b"bad" };
                result_tx(&mut self.h, &format!("cop{}", who % 6), job_id, out)
            }
            Op::Audit { op, job, honest } => {
                let job_id = self.job(job);
                let out: &[u8] = if honest { b"ok" } else { b"bad" };
                let rh = result_hash(Outcome::Success, 0, 42, out);
                self.h.tx(
                    &format!("op{}", op % 4),
                    TxKind::Attestation(Attestation {
                        kind: AttestationKind::Audit,
                        job_id,
                        result_hash: rh,
                        subject: Default::default(),
                        alive: true,
                    }),
                )
            }
            Op::BadNonce { who } => {
                let a = &self.h.actors[&name(who)];
                a.tx.bytes(
                    a.nonce + 5,
                    TxKind::Transfer {
                        to: self.h.addr("client"),
                        amount: Amount(1),
                    },
                )
            }
            Op::Garbage => vec![0x0a, 0xff, 0xff],
        }
    }
}

/// Keep harness nonces in line with the chain after rejections.
fn resync(h: &mut Harness) {
    let names: Vec<String> = h.actors.keys().cloned().collect();
    for n in names {
        let a = h.addr(&n);
        h.actors.get_mut(&n).unwrap().nonce = h.market.nonce(&a);
    }
}

fn run(blocks: &[(Vec<Op>, u16)], audit: bool) -> Harness {
    let p = Params {
        audit_bps: if audit { 5_000 } else { 0 },
        ..params()
    };
    let mut w = World {
        h: Harness::with_params(p),
        jobs: Vec::new(),
    };
    for (ops, gap) in blocks {
        let txs: Vec<Vec<u8>> = ops.iter().map(|o| w.build(o)).collect();
        // Stalls now and then: gaps above 10 s, low commit power on odd gaps.
        w.h.commit_power_bps = if gap % 7 == 0 { 5_000 } else { 10_000 };
        w.h.block_after(*gap as u64 * 10, txs); // block_after checks the invariants
        resync(&mut w.h);
        for (_, j) in w.h.market.jobs() {
            if j.state.is_final() {
                assert_eq!(
                    j.held().unwrap(),
                    Amount::ZERO,
                    "escrow released at the end"
                );
            }
        }
    }
    w.h
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn supply_is_conserved_and_replay_is_identical(
        blocks in prop::collection::vec((prop::collection::vec(op(), 0..8), 20..1_500u16), 1..40),
        audit in any::<bool>(),
    ) {
        let h = run(&blocks, audit);
        h.market.check_invariants().unwrap();
        for (_, a) in h.market.coprocessors() {
            prop_assert!(a.locked <= a.stake);
        }
        // Replaying the same blocks from genesis reaches the same app hash.
        let mut again = Market::new(&genesis(Params { audit_bps: if audit { 5_000 } else { 0 }, ..params() })).unwrap();
        for (ctx, txs) in &h.blocks {
            again.apply_block(ctx, txs).unwrap();
        }
        prop_assert_eq!(again.app_hash(), h.market.app_hash());
    }

    #[test]
    fn permuting_a_block_never_changes_auction_winners(
        prices in prop::collection::vec(0..900u16, 2..6),
        k in 1..4u32,
        seed in any::<u64>(),
    ) {
        let outcome = |order: &[usize]| {
            let mut h = Harness::new();
            h.stake_all(6, 5_000, 4);
            let job = h.submit(spec(k, AuctionSpec::Dutch { start_price: Amount(900), duration_ms: 5_000 }));
            let mut txs: Vec<Vec<u8>> = prices
                .iter()
                .enumerate()
                .map(|(i, p)| h.tx(&format!("cop{i}"), TxKind::Bid { job_id: job, bid: BidKind::Dutch { min_price: Amount(*p as u128) } }))
                .collect();
            let permuted: Vec<Vec<u8>> = order.iter().map(|i| std::mem::take(&mut txs[*i])).collect();
            h.block(permuted);
            let v = h.market.job_view(&job).unwrap();
            (v.winners, v.price)
        };
        let n = prices.len();
        let identity: Vec<usize> = (0..n).collect();
        let mut shuffled = identity.clone();
        let mut s = seed;
        for i in (1..n).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        let (w1, p1) = outcome(&identity);
        let (w2, p2) = outcome(&shuffled);
        prop_assert_eq!(w1.len(), (k as usize).min(n));
        prop_assert_eq!(w1, w2);
        prop_assert_eq!(p1, p2);
    }
}
