//! Replica tests over a tiny in-process network: happy path with offline certificate
//! checks, crash-restart from a sled store without a conflicting vote, hostile input.

use std::collections::{BTreeMap, VecDeque};

use agora_consensus::context::NilOrVal;
use agora_consensus::store::trees;
use agora_consensus::{
    wire, Config, Effect, Genesis, KvApp, KvStore, MemStore, Message, Replica, SledStore,
    ValidatorSet,
};
use agora_crypto::Keypair;
use agora_types::{Address, Hash};

mod equivocation;
mod halt;
mod mempool;

type R = Replica<Box<dyn KvStore>, KvApp>;

const T0: u64 = 1_000_000;

struct Net {
    keys: Vec<Keypair>,
    genesis: Genesis,
    cfg: Config,
    nodes: Vec<Option<R>>,
    wake: Vec<u64>,
    queue: VecDeque<(usize, usize, Vec<u8>)>,
    now: u64,
    /// (node, height, round, type) -> value of every vote a node broadcast, over its whole life.
    votes: BTreeMap<(usize, u64, u32, u8), Option<Hash>>,
    committed: BTreeMap<u64, Hash>,
    last_vote: Vec<Option<(u64, u8)>>,
    /// `(double voter, victim)`: each vote the double voter broadcasts reaches the victim
    /// after a conflicting one it signed too.
    double_voter: Option<(usize, usize)>,
    /// Nodes that emitted evidence (only with a double voter).
    evidence_from: Vec<usize>,
}

impl Net {
    /// `n` validators; with `follower`, one more node (the last) that holds no stake and
    /// opens without a key.
    fn new(n: usize) -> Net {
        Net::with_follower(n, false)
    }

    fn with_follower(n: usize, follower: bool) -> Net {
        let total = n + usize::from(follower);
        let keys: Vec<Keypair> = (0..total as u64)
            .map(|i| Keypair::for_test(100 + i))
            .collect();
        let stakes: Vec<(Address, u128)> =
            keys[..n].iter().map(|k| (k.address(), 1_000u128)).collect();
        let vs = ValidatorSet::from_stakes(&stakes).unwrap();
        let n = total;
        let genesis = Genesis {
            chain_id: Hash::of(b"test-chain"),
            time: T0 - 1000,
            validators: vs,
        };
        let cfg = Config {
            empty_block_interval_ms: 200,
            ..Config::default()
        };
        Net {
            keys,
            genesis,
            cfg,
            nodes: (0..n).map(|_| None).collect(),
            wake: vec![0; n],
            queue: VecDeque::new(),
            now: T0,
            votes: BTreeMap::new(),
            committed: BTreeMap::new(),
            last_vote: vec![None; n],
            double_voter: None,
            evidence_from: Vec::new(),
        }
    }

    fn open(&mut self, i: usize, store: Box<dyn KvStore>) {
        let (r, eff) = Replica::open(
            self.genesis.clone(),
            self.cfg.clone(),
            Some(self.keys[i].clone()),
            store,
            KvApp::new(),
            self.now,
        )
        .unwrap();
        self.nodes[i] = Some(r);
        self.effects(i, eff);
    }

    fn addr(&self, i: usize) -> Address {
        self.keys[i].address()
    }

    fn effects(&mut self, i: usize, eff: Vec<Effect>) {
        for e in eff {
            match e {
                Effect::Broadcast(b) => {
                    if let Ok(Message::Vote(v)) = wire::decode(&b) {
                        let m = &v.message;
                        let key = (i, m.height.0, m.round.as_u32().unwrap(), m.vote_type as u8);
                        let val = match m.value {
                            NilOrVal::Nil => None,
                            NilOrVal::Val(id) => Some(id.0),
                        };
                        if let Some(prev) = self.votes.insert(key, val) {
                            assert_eq!(prev, val, "node {i} signed conflicting votes at {key:?}");
                        }
                        self.last_vote[i] = Some((m.height.0, m.vote_type as u8));
                    }
                    for to in 0..self.nodes.len() {
                        if to != i {
                            if self.double_voter == Some((i, to)) {
                                if let Some(alt) = equivocation::conflicting(
                                    &self.keys[i],
                                    &self.genesis.chain_id,
                                    &b,
                                ) {
                                    self.queue.push_back((to, i, alt));
                                }
                            }
                            self.queue.push_back((to, i, b.clone()));
                        }
                    }
                }
                Effect::SendTo(p, b)
                | Effect::RequestSync {
                    peer: p, bytes: b, ..
                } => {
                    if let Some(to) = (0..self.keys.len()).find(|j| self.addr(*j) == p) {
                        self.queue.push_back((to, i, b));
                    }
                }
                Effect::Committed { block, cert, .. } => {
                    assert_eq!(cert.block_hash, block.hash());
                    cert.verify(&self.genesis.validators, &self.genesis.chain_id)
                        .unwrap();
                    let prev = self.committed.insert(block.header.height, block.hash());
                    assert!(
                        prev.is_none() || prev == Some(block.hash()),
                        "agreement violated"
                    );
                }
                Effect::Evidence(_) => {
                    assert!(self.double_voter.is_some(), "no byzantine node here");
                    self.evidence_from.push(i);
                }
                Effect::NextWakeup(at) => self.wake[i] = at,
            }
        }
    }

    /// Deliver everything queued, then advance the clock 10 ms and fire due ticks.
    fn step(&mut self) {
        let mut budget = 100_000;
        while let Some((to, from, bytes)) = self.queue.pop_front() {
            budget -= 1;
            assert!(budget > 0);
            let a = self.addr(from);
            let now = self.now;
            if let Some(r) = self.nodes[to].as_mut() {
                if let Ok(eff) = r.handle_message(a, &bytes, now) {
                    self.effects(to, eff);
                }
            }
        }
        self.now += 10;
        for i in 0..self.nodes.len() {
            if self.wake[i] <= self.now {
                let now = self.now;
                if let Some(r) = self.nodes[i].as_mut() {
                    let eff = r.tick(now).unwrap();
                    self.effects(i, eff);
                }
            }
        }
    }

    fn height(&self, i: usize) -> u64 {
        self.nodes[i].as_ref().map(|r| r.height()).unwrap_or(0)
    }
}

#[test]
fn four_validators_commit_identical_blocks_with_offline_certificates() {
    let mut net = Net::with_follower(4, true);
    for i in 0..5 {
        net.open(i, Box::new(MemStore::new()));
    }
    let eff = net.nodes[2]
        .as_mut()
        .unwrap()
        .submit_tx(b"color=blue".to_vec(), T0)
        .unwrap();
    net.effects(2, eff);
    for _ in 0..2000 {
        net.step();
        if (0..5).all(|i| net.height(i) >= 3) {
            break;
        }
    }
    // The full node (no key, no stake) follows the same chain and never votes.
    assert!(net.height(4) >= 3);
    assert_eq!(net.votes.keys().filter(|k| k.0 == 4).count(), 0);
    assert_eq!(net.nodes[4].as_ref().unwrap().stats().signatures_made, 0);
    assert!(
        (0..4).all(|i| net.height(i) >= 3),
        "heights {:?}",
        (0..4).map(|i| net.height(i)).collect::<Vec<_>>()
    );
    let r0 = net.nodes[0].as_ref().unwrap();
    for i in 1..4 {
        let r = net.nodes[i].as_ref().unwrap();
        let h = r0.height().min(r.height());
        assert_eq!(
            r0.block(h).unwrap().unwrap().0.hash(),
            r.block(h).unwrap().unwrap().0.hash()
        );
    }
    // The tx landed, and every stored certificate verifies offline.
    assert_eq!(
        r0.app().state.get(&b"color"[..]).map(|v| v.as_slice()),
        Some(&b"blue"[..])
    );
    for h in 1..=r0.height() {
        let (b, c) = r0.block(h).unwrap().unwrap();
        assert_eq!(
            c.verify(r0.validator_set(), &r0.chain_id()).is_ok(),
            c.block_hash == b.hash()
        );
    }
    // Heartbeat: idle blocks are at least the interval apart.
    let t1 = r0.block(2).unwrap().unwrap().0.header.time;
    let t2 = r0.block(3).unwrap().unwrap().0.header.time;
    assert!(t2 >= t1 + 200, "{t1} {t2}");
}

#[test]
fn restart_from_sled_store_never_signs_a_conflicting_vote_and_rejoins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node0");
    let mut net = Net::new(4);
    net.open(
        0,
        Box::new(SledStore(agora_store::Store::open(&path).unwrap())),
    );
    for i in 1..4 {
        net.open(i, Box::new(MemStore::new()));
    }
    // Run until node 0 has precommitted at height 3, then crash it at once.
    let mut crashed_lock = None;
    for _ in 0..5000 {
        net.step();
        if net.last_vote[0] == Some((3, 1)) {
            let r = net.nodes[0].take().unwrap();
            let state = r.debug_state();
            crashed_lock =
                Some(state[state.find("lock").unwrap()..state.find(" valid").unwrap()].to_owned());
            drop(r);
            break;
        }
    }
    let lock = crashed_lock.expect("node 0 precommitted at height 3");
    net.queue.retain(|(to, _, _)| *to != 0);
    // The others go on without it.
    for _ in 0..300 {
        net.step();
    }
    assert!(net.height(1) >= 3);
    // Restart from disk: the WAL replay restores the votes and the lock of height 3 (unless
    // the restarted node finds height 3 already committed in its store).
    net.open(
        0,
        Box::new(SledStore(agora_store::Store::open(&path).unwrap())),
    );
    let r = net.nodes[0].as_ref().unwrap();
    if r.height() == 2 {
        let state = r.debug_state();
        assert_eq!(
            &state[state.find("lock").unwrap()..state.find(" valid").unwrap()],
            lock
        );
    }
    for _ in 0..3000 {
        net.step();
        if net.height(0) >= net.height(1) && net.height(0) >= 6 {
            break;
        }
    }
    assert!(
        net.height(0) >= 6,
        "node 0 rejoined: {} vs {}",
        net.height(0),
        net.height(1)
    );
    // Every vote node 0 ever broadcast was checked against its earlier votes in `effects`.
    assert!(net.votes.keys().filter(|k| k.0 == 0 && k.1 == 3).count() >= 2);
}

#[test]
fn hostile_bytes_are_rejected_without_effects() {
    let mut net = Net::new(4);
    net.open(0, Box::new(MemStore::new()));
    let from = net.addr(1);
    let r = net.nodes[0].as_mut().unwrap();
    assert!(r
        .handle_message(from, &[0xde, 0xad, 0xbe, 0xef], T0)
        .is_err());
    // A vote signed by a stranger, and a vote with a forged signature.
    let stranger = Keypair::for_test(999);
    let vote = agora_consensus::context::ConsVote {
        vote_type: agora_consensus::context::VoteType::Prevote,
        height: agora_consensus::context::ConsHeight(1),
        round: agora_consensus::context::Round::new(0),
        value: NilOrVal::Nil,
        validator: agora_consensus::context::ValAddr(stranger.address()),
    };
    let sig = stranger.sign(
        agora_crypto::Domain::Vote,
        &Hash::of(b"test-chain"),
        &vote.signing_bytes(),
    );
    let bytes = wire::encode(&Message::Vote(agora_consensus::context::SignedVote::new(
        vote.clone(),
        sig,
    )));
    assert!(r.handle_message(from, &bytes, T0).is_err());
    let mut forged = vote;
    forged.validator = agora_consensus::context::ValAddr(from);
    let bytes = wire::encode(&Message::Vote(agora_consensus::context::SignedVote::new(
        forged, sig,
    )));
    assert!(matches!(
        r.handle_message(from, &bytes, T0),
        Err(agora_consensus::ConsensusError::BadSignature(_))
    ));
    assert_eq!(r.stats().messages_rejected, 3);
    assert_eq!(r.height(), 0);
}

#[test]
fn a_batch_of_ready_messages_shares_one_flush_and_its_votes_are_durable_first() {
    let keys: Vec<Keypair> = (0..4).map(|i| Keypair::for_test(200 + i)).collect();
    let stakes: Vec<(Address, u128)> = keys.iter().map(|k| (k.address(), 1_000u128)).collect();
    let vs = ValidatorSet::from_stakes(&stakes).unwrap();
    let genesis = Genesis {
        chain_id: Hash::of(b"batch-chain"),
        time: T0 - 1000,
        validators: vs.clone(),
    };
    let cfg = Config {
        empty_block_interval_ms: 200,
        ..Config::default()
    };
    let proposer = vs.proposer(1, 0).address.0;
    let pi = keys.iter().position(|k| k.address() == proposer).unwrap();
    let oi = (pi + 1) % keys.len();
    let open = |i: usize| {
        Replica::open(
            genesis.clone(),
            cfg.clone(),
            Some(keys[i].clone()),
            MemStore::new(),
            KvApp::new(),
            T0,
        )
        .unwrap()
    };
    let (mut p, opened) = open(pi);
    let (mut o, _) = open(oi);
    // The heartbeat is already due: the proposer proposes at once (or on its next tick).
    let mut effects = opened;
    effects.extend(p.tick(T0 + 1).unwrap());
    let proposal = effects
        .into_iter()
        .find_map(|e| match e {
            Effect::Broadcast(b) if matches!(wire::decode(&b), Ok(Message::Proposal(_))) => Some(b),
            _ => None,
        })
        .expect("a proposal");
    // The other validator gets it between junk and a duplicate, as one batch.
    let before = o.stats().flushes;
    let batch: Vec<(Address, &[u8])> = vec![
        (proposer, b"junk"),
        (proposer, &proposal),
        (proposer, &proposal),
    ];
    let (effects, rejected) = o.handle_batch(&batch, T0 + 2).unwrap();
    assert_eq!(rejected.len(), 1, "only the junk is refused");
    assert_eq!(rejected[0].0, 0);
    assert_eq!(
        o.stats().flushes - before,
        1,
        "one flush for the whole batch"
    );
    let me = keys[oi].address();
    let prevoted = effects.iter().any(|e| match e {
        Effect::Broadcast(b) => {
            matches!(wire::decode(b), Ok(Message::Vote(v)) if v.message.validator.0 == me)
        }
        _ => false,
    });
    assert!(prevoted, "the batch made us prevote: {effects:?}");
    // The vote left, so its signing guard and the proposal that caused it survive a crash.
    let (store, _) = o.into_parts();
    let crashed = store.crash();
    assert!(!crashed
        .scan_from(trees::SIGNED, &[], 10)
        .unwrap()
        .is_empty());
    assert!(!crashed.scan_from(trees::WAL, &[], 10).unwrap().is_empty());
}

#[test]
fn a_dead_validator_is_passed_over_and_costs_only_a_few_short_timeouts() {
    let mut net = Net::new(4);
    for i in 0..4 {
        net.open(i, Box::new(MemStore::new()));
    }
    for _ in 0..2000 {
        net.step();
        if (0..4).all(|i| net.height(i) >= 2) {
            break;
        }
    }
    let dead = net.addr(3);
    net.nodes[3] = None;
    let killed_at = net.height(0);
    let t_kill = net.now;
    for _ in 0..20_000 {
        net.step();
        if net.height(0) >= killed_at + 40 {
            break;
        }
    }
    let r0 = net.nodes[0].as_ref().unwrap();
    let top = r0.height();
    assert!(top >= killed_at + 40, "stuck at {top}");
    // Once three blocks show it absent, it neither proposes nor appears in a `last_commit`.
    let mut absent_from = None;
    for h in killed_at + 2..=top {
        let (b, _) = r0.block(h).unwrap().unwrap();
        let lc = b
            .last_commit
            .expect("every block after the first has a last commit");
        assert!(lc.verify(r0.validator_set(), &r0.chain_id()).is_ok());
        if lc.signatures.iter().all(|(a, _)| *a != dead) && absent_from.is_none() {
            absent_from = Some(h);
        }
        if let Some(f) = absent_from {
            if h > f + 3 {
                assert_ne!(b.header.proposer, dead, "height {h}");
            }
        }
    }
    // Each failed round costs one short timeout, and only the first heights have any.
    let s = r0.stats();
    assert!(s.rounds_failed <= 3, "{} failed rounds", s.rounds_failed);
    assert_eq!(s.participation_bps, 7_500, "the dead quarter is absent");
    // Idle blocks keep the heartbeat (200 ms here): 40 heights in little more than 40 beats.
    let elapsed = net.now - t_kill;
    assert!(
        elapsed <= 40 * 200 + 2_000,
        "{elapsed} ms for 40 heights with a dead validator"
    );
}
