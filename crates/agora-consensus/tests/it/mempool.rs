//! The mempool through the replica (ADR 008): one pending tx per `(signer, nonce)` slot, a
//! conflict refused locally and dropped quietly when relayed, and an accepted tx that survives
//! a crash of its node and still reaches a block.

use std::cell::RefCell;
use std::rc::Rc;

use agora_consensus::store::trees;
use agora_consensus::{
    wire, Application, Block, BlockInfo, ConsensusError, Effect, KvApp, KvStore, MemStore,
    MempoolError, Message, Replica, StorageError,
};
use agora_types::{Address, Hash};

use super::{Net, T0};

/// [`KvApp`] whose keys `c.n` name a slot: signer `[c; 32]`, nonce `n`.
#[derive(Default)]
struct SlotApp(KvApp);

fn signer(c: u8) -> Address {
    Address([c; 32])
}

impl Application for SlotApp {
    fn info(&self) -> (u64, Hash) {
        self.0.info()
    }
    fn check_tx(&self, tx: &[u8]) -> Result<(), String> {
        self.0.check_tx(tx)
    }
    fn tx_slot(&self, tx: &[u8]) -> Option<(Address, u64)> {
        let key = tx.split(|b| *b == b'=').next()?;
        let (c, n) = key.split_first()?;
        let n = std::str::from_utf8(n.strip_prefix(b".")?)
            .ok()?
            .parse()
            .ok()?;
        Some((signer(*c), n))
    }
    fn prepare_block(
        &mut self,
        height: u64,
        time: u64,
        candidates: &[Vec<u8>],
        max_bytes: usize,
    ) -> Vec<Vec<u8>> {
        self.0.prepare_block(height, time, candidates, max_bytes)
    }
    fn validate_block(&self, block: &Block) -> bool {
        self.0.validate_block(block)
    }
    fn commit(&mut self, block: &Block, info: &BlockInfo) -> Result<Hash, String> {
        self.0.commit(block, info)
    }
}

fn broadcasts_tx(effects: &[Effect], tx: &[u8]) -> bool {
    effects.iter().any(|e| match e {
        Effect::Broadcast(b) => matches!(wire::decode(b), Ok(Message::Tx(t)) if t == tx),
        _ => false,
    })
}

/// A replica without a key on `net`'s chain: it never proposes, so its txs stay pending.
fn follower(net: &Net) -> Replica<MemStore, SlotApp> {
    Replica::open(
        net.genesis.clone(),
        net.cfg.clone(),
        None,
        MemStore::new(),
        SlotApp::default(),
        T0,
    )
    .unwrap()
    .0
}

#[test]
fn a_second_tx_for_a_pending_nonce_is_refused_locally_and_dropped_quietly_when_relayed() {
    let net = Net::new(4);
    let peer = net.addr(0);
    // A follower never proposes, so everything stays pending.
    let mut r = follower(&net);
    let eff = r.submit_tx(b"a.7=x".to_vec(), T0).unwrap();
    assert!(broadcasts_tx(&eff, b"a.7=x"));
    r.submit_tx(b"a.8=x".to_vec(), T0).unwrap();

    let err = r.submit_tx(b"a.7=y".to_vec(), T0).unwrap_err();
    assert!(
        matches!(
            err,
            ConsensusError::Mempool(MempoolError::NoncePending {
                nonce: 7,
                next_free: 9
            })
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "nonce 7 is already pending for this account; next free nonce is 9"
    );
    // The same tx again is fine (and sent again); another signer's nonce 7 is its own slot.
    assert!(broadcasts_tx(
        &r.submit_tx(b"a.7=x".to_vec(), T0).unwrap(),
        b"a.7=x"
    ));
    r.submit_tx(b"b.7=x".to_vec(), T0).unwrap();
    assert_eq!(r.mempool_len(), 3);

    // Relayed conflicts are dropped: no error to score the peer by, nothing passed on.
    let eff = r
        .handle_message(peer, &wire::encode(&Message::Tx(b"a.7=z".to_vec())), T0)
        .unwrap();
    assert!(!broadcasts_tx(&eff, b"a.7=z"));
    let eff = r.relay_tx(b"a.8=z".to_vec(), T0).unwrap();
    assert!(!broadcasts_tx(&eff, b"a.8=z"));
    assert_eq!(r.stats().messages_rejected, 0);
    assert_eq!(r.mempool_len(), 3);
    // A new relayed tx is passed on.
    assert!(broadcasts_tx(
        &r.relay_tx(b"a.9=z".to_vec(), T0).unwrap(),
        b"a.9=z"
    ));

    assert_eq!(r.pending_nonce(&signer(b'a'), 7), 10);
    assert_eq!(r.pending_nonce(&signer(b'a'), 3), 3);
    assert_eq!(r.pending_nonce(&signer(b'b'), 7), 8);
    assert_eq!(r.pending_nonce(&signer(b'c'), 0), 0);
}

/// A [`MemStore`] the test keeps a handle on, to crash it under a running replica.
#[derive(Clone, Default)]
struct Shared(Rc<RefCell<MemStore>>);

impl Shared {
    fn crash(&self) {
        let s = std::mem::take(&mut *self.0.borrow_mut());
        *self.0.borrow_mut() = s.crash();
    }
    fn pending(&self) -> usize {
        self.0
            .borrow()
            .scan_from(trees::MEMPOOL, &[], usize::MAX)
            .unwrap()
            .len()
    }
}

impl KvStore for Shared {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.0.borrow().get(tree, key)
    }
    fn put(&mut self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.0.borrow_mut().put(tree, key, value)
    }
    fn delete(&mut self, tree: &str, key: &[u8]) -> Result<(), StorageError> {
        self.0.borrow_mut().delete(tree, key)
    }
    fn scan_from(
        &self,
        tree: &str,
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<agora_consensus::store::Entry>, StorageError> {
        self.0.borrow().scan_from(tree, from, limit)
    }
    fn last(&self, tree: &str) -> Result<Option<agora_consensus::store::Entry>, StorageError> {
        self.0.borrow().last(tree)
    }
    fn flush(&mut self) -> Result<(), StorageError> {
        self.0.borrow_mut().flush()
    }
}

#[test]
fn an_accepted_tx_survives_a_crash_of_its_node_and_is_still_proposed() {
    let mut net = Net::new(4);
    let store = Shared::default();
    for i in [0, 2, 3] {
        net.open(i, Box::new(MemStore::new()));
    }
    net.open(1, Box::new(store.clone()));
    for _ in 0..50 {
        net.step();
    }
    assert!(net.height(0) >= 1);
    // Node 1 accepts a tx but crashes before anyone hears of it.
    let now = net.now;
    net.nodes[1]
        .as_mut()
        .unwrap()
        .submit_tx(b"kept=1".to_vec(), now)
        .unwrap();
    drop(net.nodes[1].take());
    net.queue.retain(|(to, from, _)| *to != 1 && *from != 1);
    store.crash();
    assert_eq!(
        store.pending(),
        1,
        "the tx was flushed before it was acknowledged"
    );

    net.open(1, Box::new(store.clone()));
    assert_eq!(net.nodes[1].as_ref().unwrap().mempool_len(), 1);
    let committed = |net: &Net, i: usize| {
        net.nodes[i]
            .as_ref()
            .is_some_and(|r| r.app().state.contains_key(b"kept".as_slice()))
    };
    for _ in 0..3000 {
        if committed(&net, 0) && committed(&net, 1) {
            break;
        }
        net.step();
    }
    assert!(committed(&net, 0), "the reloaded tx reached a block");
    assert!(committed(&net, 1));
    // Included, so gone from the pool and from the store.
    assert_eq!(net.nodes[1].as_ref().unwrap().mempool_len(), 0);
    assert_eq!(store.pending(), 0);
}

/// The wakeup a replica asks for covers its own transactions' rebroadcast: a follower (nothing
/// for consensus to do) whose first broadcast of a tx was lost wakes in time to send it again,
/// and keeps doing so while it waits. Found by the whole-node simulator (seed 102528 at the
/// time): a coprocessor node that took a client's tx during a partition never sent it again,
/// because it was only woken for consensus timers, and every later tx of the client waited
/// behind it.
#[test]
fn an_own_tx_is_sent_again_at_the_wakeup_the_replica_asks_for() {
    use agora_consensus::mempool::REBROADCAST_MS;
    let net = Net::new(4);
    let mut r = follower(&net);
    let wakeup = |eff: &[Effect]| {
        eff.iter()
            .rev()
            .find_map(|e| match e {
                Effect::NextWakeup(at) => Some(*at),
                _ => None,
            })
            .expect("every step asks for a wakeup")
    };
    // The first broadcast is lost (nobody hears it).
    let eff = r.submit_tx(b"a.0=x".to_vec(), T0).unwrap();
    let mut at = wakeup(&eff);
    assert!(at <= T0 + REBROADCAST_MS, "wakes at +{}", at - T0);
    // Following the wakeups alone, the tx goes out again within the rebroadcast period.
    let mut sent_again = Vec::new();
    while at <= T0 + 3 * REBROADCAST_MS + 10 {
        let eff = r.tick(at).unwrap();
        if broadcasts_tx(&eff, b"a.0=x") {
            sent_again.push(at - T0);
        }
        at = wakeup(&eff);
    }
    assert!(sent_again.len() >= 2, "sent again at {sent_again:?}");
    assert!(sent_again[0] <= REBROADCAST_MS + 10, "{sent_again:?}");
}
