//! Rejections, wire fixtures, genesis loading, snapshots, helpers.

use agora_crypto::{Domain, Envelope, Keypair};
use agora_market::*;
use agora_types::{Amount, Fixed, Hash, Height, Timestamp};

use crate::harness::*;

fn reasons(r: &BlockResult) -> Vec<String> {
    r.receipts
        .iter()
        .map(|r| match &r.status {
            TxStatus::Applied => "applied".to_owned(),
            TxStatus::Rejected { reason } => reason.clone(),
        })
        .collect()
}

#[test]
fn invalid_transactions_are_rejected_with_a_reason_and_change_nothing() {
    let mut h = Harness::new();
    let before = h.market.to_snapshot_bytes();
    let client = h.addr("client");
    let cop0 = h.addr("cop0");
    // Too poor, wrong nonce, bad signature, garbage bytes, oversized, zero transfer.
    let poor = h.tx(
        "cop0",
        TxKind::Transfer {
            to: client,
            amount: Amount(10_000_000),
        },
    );
    let a = h.actors.get("client").unwrap();
    let wrong_nonce = a.tx.bytes(
        7,
        TxKind::Transfer {
            to: cop0,
            amount: Amount(1),
        },
    );
    let mut env = h.actors["client"].tx.transfer(0, cop0, Amount(1));
    env.signature.0[3] ^= 1;
    let bad_sig = encode_envelope(&env);
    let other_chain = encode_envelope(
        &TxBuilder::new(Keypair::for_test(100), Hash([1; 32])).transfer(0, cop0, Amount(1)),
    );
    let garbage = vec![0xff, 0x01, 0x02];
    let huge = vec![0u8; 20_000];
    let zero = h.tx(
        "client",
        TxKind::Transfer {
            to: cop0,
            amount: Amount(0),
        },
    );
    let r = h.block_after(
        1_000,
        vec![poor, wrong_nonce, bad_sig, other_chain, garbage, huge, zero],
    );
    expect_test::expect![[r#"
        [
            "insufficient funds: need 10000000, have 100000",
            "bad nonce: expected 0, got 7",
            "bad signature",
            "bad signature",
            "malformed transaction: protobuf: failed to decode Protobuf message: invalid wire type value: 7",
            "transaction of 20000 bytes exceeds the limit of 16384",
            "invalid: zero amount",
        ]
    "#]].assert_debug_eq(&reasons(&r));
    // A transaction with the right nonce uses it even when refused (ADR 006); the others
    // (wrong nonce, bad signature, undecodable) change nothing.
    assert_eq!(h.market.nonce(&client), 1);
    assert_eq!(h.market.nonce(&cop0), 1);
    // Nothing but those two nonces (and the global height and time) changed.
    let mut after: serde_json::Value =
        serde_json::from_slice(&h.market.to_snapshot_bytes()).unwrap();
    let before: serde_json::Value = serde_json::from_slice(&before).unwrap();
    for a in [client, cop0] {
        let acct = after["accounts"][a.to_hex()].as_object_mut().unwrap();
        acct.insert("nonce".into(), 0.into());
    }
    assert_eq!(after["accounts"], before["accounts"]);
}

#[test]
fn transaction_encoding_is_pinned() {
    let tx = Transaction {
        nonce: 3,
        kind: TxKind::Bid {
            job_id: Hash([7; 32]),
            bid: BidKind::Dutch {
                min_price: Amount((1u128 << 64) + 5),
            },
        },
    };
    let bytes = tx.encode();
    expect_test::expect!["08037a2a0a20070707070707070707070707070707070707070707070707070707070707070712060a0408011005"].assert_eq(&hex::encode(&bytes));
    assert_eq!(Transaction::decode(&bytes).unwrap(), tx);
    let submit = Transaction {
        nonce: 0,
        kind: TxKind::SubmitJob(dutch(2)),
    };
    expect_test::expect!["6a6b0a690a20f42578c55d5c75569566e601ea5072c5a6d791e617aae2d1674ea29cc70fb37a1220e33fb19325cbc72b5905e783e0c47290468c610090e376de9215e8b5f8ba83d318e807200a2a0372756e30c0843d38808040400252070a02106410904e620310e807688827"].assert_eq(&hex::encode(submit.encode()));
    assert_eq!(Transaction::decode(&submit.encode()).unwrap(), submit);
    // Truncated field lengths are a clear error.
    assert!(Transaction::decode(&bytes[..10]).is_err());
    let missing = agora_proto::v1::Transaction {
        nonce: 1,
        kind: None,
    };
    assert_eq!(
        Transaction::try_from(missing),
        Err(DecodeError::Missing("kind"))
    );
}

#[test]
fn every_kind_round_trips_through_the_wire() {
    let chain = Hash([4; 32]);
    let b = TxBuilder::new(Keypair::for_test(9), chain);
    let j = Hash([1; 32]);
    let envs: Vec<Envelope> = vec![
        b.transfer(0, Keypair::for_test(1).address(), Amount(5)),
        b.stake(1, Amount(9), 3),
        b.unstake(2, Amount(1)),
        b.submit_job(
            3,
            spec(
                1,
                AuctionSpec::Sealed {
                    commit_ms: 1_000,
                    reveal_ms: 2_000,
                },
            ),
        ),
        b.cancel_job(4, j),
        b.dutch_accept(5, j, Amount(3)),
        b.sealed_commit(6, j, Amount(3), Hash([2; 32])),
        b.sealed_reveal(7, j, Amount(3), Hash([2; 32])),
        b.result(8, j, Hash([3; 32]), 10, Outcome::FuelExhausted, 0),
        b.audit(9, j, Hash([3; 32])),
        b.liveness(10, Keypair::for_test(2).address(), false),
        b.decline(11, j, DeclineReason::AtCapacity, "busy"),
        b.sign(
            12,
            TxKind::Evidence(Evidence {
                operator: Keypair::for_test(1).address(),
                vote_a: vec![1],
                signature_a: agora_crypto::Signature([1; 64]),
                vote_b: vec![2],
                signature_b: agora_crypto::Signature([2; 64]),
            }),
        ),
    ];
    for env in envs {
        let bytes = encode_envelope(&env);
        let back = decode_envelope(&bytes).unwrap();
        assert_eq!(back, env);
        assert!(back.verify(Domain::Transaction, &chain).is_ok());
        let tx = Transaction::decode(&back.payload).unwrap();
        assert_eq!(tx.encode(), back.payload);
    }
    let notice = b.signed_decline(j, DeclineReason::FuelOverLimit, "fuel 10^12 > 10^9");
    assert_eq!(
        DeclineNotice::open(&notice, &chain).unwrap().reason,
        DeclineReason::FuelOverLimit
    );
    assert!(DeclineNotice::open(&notice, &Hash([5; 32])).is_err());
}

#[test]
fn genesis_loads_from_json_and_toml_and_hashes_stably() {
    let g = genesis(params());
    let json = g.to_json_pretty();
    let back = Genesis::from_json(&json).unwrap();
    assert_eq!(back.hash(), g.hash());
    let toml = format!(
        r#"
chain_name = "t"
genesis_time = 5
[[operators]]
address = "{}"
stake = "1000"
[[accounts]]
address = "{}"
balance = 250
[params]
gas_alpha = "0.25"
slash_bps = 4000
"#,
        Keypair::for_test(0).address(),
        Keypair::for_test(1).address()
    );
    let t = Genesis::from_toml(&toml).unwrap();
    assert_eq!(t.params.gas_alpha, "0.25".parse::<Fixed>().unwrap());
    assert_eq!(t.params.slash_bps, 4_000);
    assert_eq!(t.supply().unwrap(), Amount(1_250));
    assert!(Genesis::from_toml("chain_name = 1").is_err());
    let mut bad = g.clone();
    bad.params.slash_bps = 20_000;
    assert_eq!(bad.validate(), Err(GenesisError::Param("slash_bps")));
    let mut dup = g;
    dup.operators.push(dup.operators[0].clone());
    assert!(matches!(dup.validate(), Err(GenesisError::Duplicate(_))));
}

#[test]
fn snapshot_then_replay_gives_the_same_app_hash() {
    let mut h = Harness::new();
    h.stake_all(2, 5_000, 4);
    let snap = h.market.to_snapshot_bytes();
    let snap_height = h.market.height();
    let job = h.submit(dutch(1));
    let bid = h.tx(
        "cop1",
        TxKind::Bid {
            job_id: job,
            bid: BidKind::Dutch {
                min_price: Amount(150),
            },
        },
    );
    h.block(vec![bid]);
    h.block(vec![]);
    let tx = result_tx(&mut h, "cop1", job, b"x");
    h.block(vec![tx]);
    let mut restored = Market::from_snapshot_bytes(&snap).unwrap();
    for (ctx, txs) in h.blocks.iter().filter(|(c, _)| c.height > snap_height) {
        restored.apply_block(ctx, txs).unwrap();
    }
    assert_eq!(restored.app_hash(), h.market.app_hash());
    assert_eq!(restored.to_snapshot_bytes(), h.market.to_snapshot_bytes());
    assert!(Market::from_snapshot_bytes(b"{nope").is_err());
    // Out-of-order heights are refused, not applied.
    let ctx = BlockContext {
        height: Height(99),
        time: Timestamp(T0 * 2),
        proposer: h.addr("op0"),
        commit_power_bps: 10_000,
        seed: Hash::ZERO,
        absent: Vec::new(),
    };
    assert!(matches!(
        restored.apply_block(&ctx, &[]),
        Err(BlockError::Height { .. })
    ));
}

#[test]
fn cancel_before_award_refunds_everything() {
    let mut h = Harness::new();
    h.stake_all(1, 5_000, 4);
    let before = h.market.balance(&h.addr("client"));
    let job = h.submit(spec(
        2,
        AuctionSpec::Dutch {
            start_price: Amount(10),
            duration_ms: 60_000,
        },
    ));
    assert_eq!(
        h.market.balance(&h.addr("client")),
        Amount(before.0 - 2_000)
    );
    let stranger = h.tx("cop0", TxKind::CancelJob { job_id: job });
    let cancel = h.tx("client", TxKind::CancelJob { job_id: job });
    let r = h.block(vec![stranger, cancel]);
    assert_eq!(
        reasons(&r),
        vec![
            "not allowed: only the client may cancel".to_owned(),
            "applied".into()
        ]
    );
    assert_eq!(h.market.job(&job).unwrap().state, JobState::Refunded);
    assert_eq!(h.market.balance(&h.addr("client")), before);
}

#[test]
fn an_unfilled_auction_is_re_auctioned_then_refunded_and_declines_explain_why() {
    let mut h = Harness::with_params(Params {
        max_reauctions: 1,
        ..params()
    });
    h.stake_all(1, 5_000, 4);
    let job = h.submit(spec(
        1,
        AuctionSpec::Dutch {
            start_price: Amount(10),
            duration_ms: 2_000,
        },
    ));
    let d = h.tx(
        "cop0",
        TxKind::Decline(DeclineNotice {
            job_id: job,
            coprocessor: h.addr("cop0"),
            reason: DeclineReason::PriceBelowReserve,
            detail: "reserve 2000".into(),
        }),
    );
    h.block(vec![d]);
    for _ in 0..5 {
        h.block(vec![]);
    }
    let v = h.market.job_view(&job).unwrap();
    assert_eq!(v.state, JobState::Refunded);
    assert_eq!(v.reauctions, 1);
    assert_eq!(v.why_not.len(), 1);
    assert_eq!(v.why_not[0].reason, DeclineReason::PriceBelowReserve);
    assert_eq!(v.escrow, Amount::ZERO);
}

#[test]
fn staking_unbonding_and_deactivation() {
    let mut h = Harness::new();
    let too_little = h.tx(
        "cop0",
        TxKind::Stake {
            amount: Amount(10),
            capacity: 2,
        },
    );
    let r = h.block(vec![too_little]);
    assert!(!r.receipts[0].applied());
    h.stake_all(1, 1_500, 2);
    assert!(h.market.coprocessor(&h.addr("cop0")).unwrap().active);
    let un = h.tx(
        "cop0",
        TxKind::Unstake {
            amount: Amount(600),
        },
    );
    h.block(vec![un]);
    let c = h.market.coprocessor(&h.addr("cop0")).unwrap();
    assert!(!c.active, "below the minimum stake");
    assert_eq!(c.unbonding, Amount(600));
    let bal = h.market.balance(&h.addr("cop0"));
    h.block_after(61_000, vec![]);
    assert_eq!(h.market.balance(&h.addr("cop0")), Amount(bal.0 + 600));
    assert_eq!(
        h.market.coprocessor(&h.addr("cop0")).unwrap().unbonding,
        Amount::ZERO
    );
}

#[test]
fn check_tx_matches_block_validation() {
    let mut h = Harness::new();
    let env = h.envelope(
        "client",
        TxKind::Transfer {
            to: h.addr("cop0"),
            amount: Amount(5),
        },
    );
    assert_eq!(h.market.check_tx(&env), Ok(()));
    let poor = h.envelope(
        "cop1",
        TxKind::Transfer {
            to: h.addr("cop0"),
            amount: Amount(u64::MAX as u128),
        },
    );
    assert!(matches!(
        h.market.check_tx(&poor),
        Err(Rejection::InsufficientFunds { .. })
    ));
    let far = h.actors["client"]
        .tx
        .transfer(500, h.addr("cop0"), Amount(1));
    assert!(matches!(
        h.market.check_tx(&far),
        Err(Rejection::BadNonce { .. })
    ));
    assert!(matches!(
        h.market.check_tx_bytes(&[1, 2, 3]),
        Err(Rejection::Malformed(_))
    ));
    let app = h.market.app_hash();
    assert_eq!(h.market.app_hash(), app);
}

/// Admission is `&self` (ADR 017): it runs under a read lock, beside other readers, and what it
/// accepts it does not write — the snapshot is the same bytes after checking transactions of
/// every kind that touches money, jobs and bids — while the same transactions in a block apply.
#[test]
fn admission_runs_under_a_read_lock_and_writes_nothing() {
    let mut h = Harness::new();
    h.stake_all(2, 1_000, 2);
    let job = h.submit(dutch(1));
    let txs = vec![
        h.envelope(
            "client",
            TxKind::Transfer {
                to: h.addr("cop0"),
                amount: Amount(5),
            },
        ),
        h.envelope("client", TxKind::SubmitJob(dutch(2))),
        h.envelope(
            "cop0",
            TxKind::Bid {
                job_id: job,
                bid: BidKind::Dutch {
                    min_price: Amount(1),
                },
            },
        ),
        h.envelope(
            "cop1",
            TxKind::Stake {
                amount: Amount(10),
                capacity: 2,
            },
        ),
    ];
    let before = h.market.to_snapshot_bytes();
    let lock = std::sync::RwLock::new(h.market.clone());
    {
        let reader = lock.read().unwrap();
        let admission = lock.read().unwrap();
        for env in &txs {
            assert_eq!(admission.check_tx(env), Ok(()), "{env:?}");
            assert_eq!(reader.nonce(&env.signer), h.market.nonce(&env.signer));
        }
    }
    assert_eq!(lock.into_inner().unwrap().to_snapshot_bytes(), before);
    // The client's two transactions carry consecutive nonces: the second is admitted on the
    // window alone, and both apply in one block.
    let r = h.block(txs.iter().map(encode_envelope).collect());
    assert!(r.receipts.iter().all(|r| r.applied()), "{:?}", r.receipts);
}

/// A test layout of signed consensus payloads: height (8 bytes LE), round (4), step (1), rest.
fn decode(v: &[u8]) -> Option<VoteKey> {
    (v.len() >= 13).then(|| VoteKey {
        height: u64::from_le_bytes(v[..8].try_into().unwrap()),
        round: u32::from_le_bytes(v[8..12].try_into().unwrap()),
        step: v[12],
    })
}

#[test]
fn equivocation_evidence_slashes_and_jails_the_operator() {
    let mut h = Harness::new();
    h.market.set_vote_decoder(decode);
    let chain = h.market.chain_id();
    let op = Keypair::for_test(1);
    // Two votes of `op` for different blocks at one (height, round, step).
    let double_vote = |height: u8| {
        let mut va = vec![height, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        va.extend_from_slice(b"block-a");
        let mut vb = va[..13].to_vec();
        vb.extend_from_slice(b"block-b");
        Evidence {
            operator: op.address(),
            signature_a: op.sign(Domain::Vote, &chain, &va),
            vote_a: va,
            signature_b: op.sign(Domain::Vote, &chain, &vb),
            vote_b: vb,
        }
    };
    let ev = double_vote(5);
    let t1 = h.tx("client", TxKind::Evidence(ev.clone()));
    let t2 = h.tx("client", TxKind::Evidence(ev));
    let r = h.block(vec![t1, t2]);
    assert_eq!(
        reasons(&r),
        vec![
            "applied".to_owned(),
            "invalid: evidence already processed".into()
        ]
    );
    let o = h.market.operator(&op.address()).unwrap();
    assert!(o.jailed);
    assert_eq!(o.stake, Amount(1_800));
    assert_eq!(h.market.burned(), Amount(200));

    // Another double vote by the jailed operator (the next height) is refused at admission:
    // a validator that keeps equivocating does not make honest operators send evidence at
    // every height (found by the whole-node simulator: blocks back to back, 20 a second).
    let again = double_vote(6);
    let t3 = h.tx("client", TxKind::Evidence(again));
    let err = h.market.check_tx_bytes(&t3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid: operator is already jailed for equivocation"
    );
    h.block(vec![t3]);
    assert_eq!(
        h.market.operator(&op.address()).unwrap().stake,
        Amount(1_800)
    );
}

#[test]
fn double_proposal_evidence_is_checked_in_the_proposal_domain_and_slashes() {
    let mut h = Harness::new();
    h.market.set_vote_decoder(decode);
    let chain = h.market.chain_id();
    let op = Keypair::for_test(1);
    // Two proposals of `op` for different blocks at one (height, round).
    let mut pa = vec![5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, VoteKey::PROPOSAL_STEP];
    pa.extend_from_slice(b"block-a");
    let mut pb = pa[..13].to_vec();
    pb.extend_from_slice(b"block-b");
    let signed_in = |domain: Domain| Evidence {
        operator: op.address(),
        signature_a: op.sign(domain, &chain, &pa),
        vote_a: pa.clone(),
        signature_b: op.sign(domain, &chain, &pb),
        vote_b: pb.clone(),
    };
    // Proposals signed as votes prove nothing: a signature counts only in its own domain.
    let wrong = h.tx("client", TxKind::Evidence(signed_in(Domain::Vote)));
    assert!(h.market.check_tx_bytes(&wrong).is_err());
    let right = h.tx("client", TxKind::Evidence(signed_in(Domain::Proposal)));
    let r = h.block(vec![wrong, right]);
    let reasons = reasons(&r);
    assert_ne!(reasons[0], "applied", "{reasons:?}");
    assert_eq!(reasons[1], "applied", "{reasons:?}");
    let o = h.market.operator(&op.address()).unwrap();
    assert!(o.jailed);
    assert_eq!(o.stake, Amount(1_800));
}

#[test]
fn reserve_price_and_score_follow_the_load_curve() {
    let p = Params::default();
    let idle = reserve_price(Amount(100), 0, 4, &p);
    let half = reserve_price(Amount(100), 2, 4, &p);
    let full = reserve_price(Amount(100), 4, 4, &p);
    // The default curve (ADR 013): κ = 4, γ = 1.
    assert_eq!((idle, half, full), (Amount(100), Amount(300), Amount(500)));
    let old = Params {
        load_kappa: Fixed::ONE,
        load_gamma: Fixed::from_int(2),
        ..Params::default()
    };
    assert_eq!(reserve_price(Amount(100), 2, 4, &old), Amount(125));
    let rep = Fixed::from_bps(9_000);
    // The network runs at a quarter of its capacity: the load term is centred there.
    let net = Fixed::from_bps(2_500);
    let u = |load: i64| Fixed::from_ratio(load, 4).unwrap();
    let light = score(rep, Amount(1_000), Amount(500), Amount(300), u(0), net, &p);
    let average = score(rep, Amount(1_000), Amount(500), Amount(300), u(1), net, &p);
    let heavy = score(rep, Amount(1_000), Amount(500), Amount(300), u(3), net, &p);
    assert!(light > average && average > heavy);
    assert!(
        (average - (900 - 50 - 300)).abs() <= 1,
        "no load term at ū: {average}"
    );
    let bonus = p.load_penalty_weight.mul_u128_floor(250) as i128;
    assert!(
        (light - (average + bonus)).abs() <= 1,
        "idle earns w · ū · V: {light}"
    );
    let h = load_handicap(Amount(1_000), u(3), net, &p);
    assert!(
        (heavy - (average - h.0 as i128)).abs() <= 1,
        "{heavy} {h:?}"
    );
    assert_eq!(
        h,
        Amount(p.load_penalty_weight.mul_u128_floor(500)),
        "w · (3/4 − 1/4) · V"
    );
    let f = gas_update(p.gas_f0, true, &p);
    assert!(f > p.gas_f0.checked_mul(p.gas_beta).unwrap());
    assert!(gas_update(Fixed::from_int(100), true, &p) <= p.gas_f_max);
}

#[test]
fn reputation_rises_with_success_falls_with_failure_and_stays_bounded() {
    let p = Params::default();
    let mut f = p.gas_f0;
    let start = f.sigmoid();
    for _ in 0..50 {
        f = gas_update(f, true, &p);
    }
    let good = f.sigmoid();
    assert!(good > start && f <= p.gas_f_max);
    for _ in 0..50 {
        f = gas_update(f, false, &p);
    }
    assert!(f.sigmoid() < start && f >= p.gas_f_min);
    // Recomputable by anyone: the same history gives the same bits.
    let replay = (0..50).fold(p.gas_f0, |f, _| gas_update(f, true, &p));
    assert_eq!(replay.sigmoid(), good);
}

#[test]
fn job_list_and_account_views_serialise() {
    let mut h = Harness::new();
    h.stake_all(1, 5_000, 4);
    let a = h.submit(dutch(1));
    let b = h.submit(dutch(2));
    let list = h.market.job_list(Some(&h.addr("client")), 10);
    assert_eq!(list.iter().map(|j| j.id).collect::<Vec<_>>(), vec![b, a]);
    assert!(h.market.job_list(Some(&h.addr("cop0")), 10).is_empty());
    let v = h.market.job_view(&a).unwrap();
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["state"], "auction");
    let acct = serde_json::to_value(h.market.account_view(&h.addr("cop0"))).unwrap();
    assert_eq!(acct["coprocessor"]["stake"], 5_000);
    assert_eq!(h.market.coprocessor_list().len(), 1);
    assert_eq!(h.market.status().open_jobs, 2);
}

#[test]
fn final_jobs_are_pruned_after_the_retention_period() {
    let mut h = Harness::with_params(Params {
        job_retention_ms: 5_000,
        ..params()
    });
    let job = h.submit(dutch(1));
    let cancel = h.tx("client", TxKind::CancelJob { job_id: job });
    h.block(vec![cancel]);
    assert_eq!(h.market.job(&job).unwrap().state, JobState::Refunded);
    h.block_after(4_000, vec![]);
    assert!(h.market.job(&job).is_some());
    h.block_after(1_000, vec![]);
    assert!(h.market.job(&job).is_none());
    let late = h.tx("client", TxKind::CancelJob { job_id: job });
    let r = h.block(vec![late]);
    assert!(!r.receipts[0].applied());
}

/// `next_due` names the block time of the next market boundary: the sealed phases, the Dutch
/// clock reaching the lowest standing acceptance, then the execution deadline.
#[test]
fn next_due_follows_auction_phases_and_deadlines() {
    let mut h = Harness::new();
    h.stake_all(2, 5_000, 4);
    assert_eq!(h.market.next_due(), None, "nothing open");
    let sealed = h.submit(spec(
        1,
        AuctionSpec::Sealed {
            commit_ms: 3_000,
            reveal_ms: 2_000,
        },
    ));
    let opened = h.time;
    assert_eq!(h.market.next_due(), Some(Timestamp(opened + 3_000)));
    // A slow block moves the market clocks by one step (1.5 s) at most: 1.5 s of the commit
    // phase are left, whatever the block's gap.
    h.block_after(3_500, vec![]);
    assert_eq!(h.market.next_due(), Some(Timestamp(h.time + 1_500)));
    // The block that shows the commit phase over opens the reveal phase, for its full 2 s.
    h.block_after(1_600, vec![]);
    assert_eq!(h.market.next_due(), Some(Timestamp(h.time + 2_000)));
    // Nobody bid: the round is re-auctioned, with its own phases.
    h.block_after(1_000, vec![]);
    h.block_after(1_000, vec![]);
    assert_eq!(h.market.job(&sealed).unwrap().auction.round, 1);
    assert_eq!(h.market.next_due(), Some(Timestamp(h.time + 3_000)));
    let cancel = h.tx("client", TxKind::CancelJob { job_id: sealed });
    h.block_after(100, vec![cancel]);
    assert_eq!(h.market.next_due(), None, "nothing open again");

    // Dutch from 100 to 1000 over 10 s: an acceptance at 550 fills at 5 s.
    let job = h.submit(dutch(1));
    let opened = h.time;
    assert_eq!(h.market.next_due(), Some(Timestamp(opened + 10_000)));
    let bid = h.tx(
        "cop0",
        TxKind::Bid {
            job_id: job,
            bid: BidKind::Dutch {
                min_price: Amount(550),
            },
        },
    );
    h.block_after(100, vec![bid]);
    assert_eq!(h.market.next_due(), Some(Timestamp(opened + 5_000)));
    for _ in 0..4 {
        h.block_after(1_000, vec![]);
    }
    assert_eq!(h.market.next_due(), Some(Timestamp(opened + 5_000)));
    let r = h.block_after(900, vec![]);
    assert!(
        r.events
            .iter()
            .any(|e| matches!(e.event, MarketEvent::Awarded { .. })),
        "filled exactly when due"
    );
    // Awarded at opened + 5 s with a 5 s window: due one ms after the deadline.
    assert_eq!(h.market.next_due(), Some(Timestamp(opened + 10_001)));
}

/// A peer-relayed transaction is admitted on its signature and nonce alone (ADR 006): one the
/// handler would refuse now still gets in (and uses its nonce when applied); a forged or stale
/// one does not.
#[test]
fn relayed_admission_checks_signature_and_nonce_only() {
    let mut h = Harness::new();
    let cop0 = h.addr("cop0");
    let poor = h.tx(
        "client",
        TxKind::Transfer {
            to: cop0,
            amount: Amount(u64::MAX as u128),
        },
    );
    assert!(
        h.market.check_tx_bytes(&poor).is_err(),
        "local admission runs the handler"
    );
    assert_eq!(h.market.check_relayed_tx_bytes(&poor), Ok(()));
    let mut env = agora_market::decode_envelope(&poor).unwrap();
    env.signature.0[0] ^= 1;
    assert_eq!(
        h.market.check_relayed_tx_bytes(&encode_envelope(&env)),
        Err(Rejection::BadSignature)
    );
    let r = h.block(vec![poor.clone()]);
    assert!(!r.receipts[0].applied());
    assert_eq!(
        h.market.nonce(&h.addr("client")),
        1,
        "the refused transaction used its nonce"
    );
    assert!(matches!(
        h.market.check_relayed_tx_bytes(&poor),
        Err(Rejection::BadNonce { .. })
    ));
    assert!(
        !h.market.recheck_tx_bytes(&poor),
        "stale nonce leaves the mempool"
    );
}

/// A slot stops counting against capacity when its result is committed, not when the job
/// settles (ADR 007): a coprocessor waiting for other replicas of a k = 2 job can take more work.
#[test]
fn load_counts_executing_slots_only() {
    let mut h = Harness::new();
    h.stake_all(2, 5_000, 1);
    let job = h.submit(dutch(2));
    let bids: Vec<Vec<u8>> = ["cop0", "cop1"]
        .iter()
        .map(|c| {
            h.tx(
                c,
                TxKind::Bid {
                    job_id: job,
                    bid: BidKind::Dutch {
                        min_price: Amount(100),
                    },
                },
            )
        })
        .collect();
    h.block(bids);
    let load = |h: &Harness, c: &str| h.market.coprocessor(&h.addr(c)).unwrap().load;
    assert_eq!((load(&h, "cop0"), load(&h, "cop1")), (1, 1));
    let r = result_tx(&mut h, "cop0", job, b"out");
    h.block(vec![r]);
    assert_eq!(h.market.job(&job).unwrap().state, JobState::Executing);
    assert_eq!(load(&h, "cop0"), 0, "its work is done");
    assert!(!h
        .market
        .coprocessor(&h.addr("cop0"))
        .unwrap()
        .locked
        .is_zero());
    let r = result_tx(&mut h, "cop1", job, b"out");
    h.block(vec![r]);
    assert_eq!(h.market.job(&job).unwrap().state, JobState::Settled);
    assert_eq!((load(&h, "cop0"), load(&h, "cop1")), (0, 0));
}
