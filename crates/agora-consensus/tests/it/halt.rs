//! Fail-stop at the application boundary: a committed block the application cannot apply
//! halts the replica (it never votes on a state other replicas do not have), and a restart
//! from the store re-applies that block once the application can.

use agora_consensus::{
    Application, Block, BlockInfo, Config, ConsensusError, Genesis, KvApp, MemStore, Replica,
    ValidatorSet,
};
use agora_crypto::Keypair;
use agora_types::Hash;

use super::T0;

/// [`KvApp`] that refuses to apply the block at one height.
struct RefuseAt(KvApp, u64);

impl Application for RefuseAt {
    fn info(&self) -> (u64, Hash) {
        self.0.info()
    }
    fn check_tx(&self, tx: &[u8]) -> Result<(), String> {
        self.0.check_tx(tx)
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
        if block.header.height == self.1 {
            return Err("the state refuses this block".into());
        }
        self.0.commit(block, info)
    }
}

#[test]
fn a_block_the_application_cannot_apply_halts_the_replica_until_a_restart() {
    let key = Keypair::for_test(7);
    let genesis = Genesis {
        chain_id: Hash::of(b"halt-chain"),
        time: T0 - 1000,
        validators: ValidatorSet::from_stakes(&[(key.address(), 1_000)]).unwrap(),
    };
    let cfg = Config {
        empty_block_interval_ms: 100,
        ..Config::default()
    };
    let open = |store: MemStore, refuse: u64, now: u64| {
        Replica::open(
            genesis.clone(),
            cfg.clone(),
            Some(key.clone()),
            store,
            RefuseAt(KvApp::new(), refuse),
            now,
        )
        .unwrap()
        .0
    };
    let mut r = open(MemStore::new(), 3, T0);
    let mut now = T0;
    let err = loop {
        now += 10;
        assert!(now < T0 + 60_000, "the replica never reached height 3");
        if let Err(e) = r.tick(now) {
            break e;
        }
    };
    assert!(
        matches!(&err, ConsensusError::Halted(why) if why.contains("cannot apply committed block 3")),
        "{err}"
    );
    assert!(r.halted().is_some());
    assert_eq!(r.app().info().0, 2, "block 3 was not applied");
    // Halted means halted: no more steps, no more votes.
    assert!(matches!(
        r.tick(now + 1_000),
        Err(ConsensusError::Halted(_))
    ));
    assert!(matches!(
        r.submit_tx(b"k=v".to_vec(), now + 1_000),
        Err(ConsensusError::Halted(_))
    ));

    // Block 3 was decided and stored: a restart with an application that takes it applies it
    // and goes on from there.
    let (store, _) = r.into_parts();
    let mut r = open(store.crash(), u64::MAX, now);
    assert!(r.app().info().0 >= 3, "block 3 re-applied on open");
    for _ in 0..2_000 {
        now += 10;
        r.tick(now).unwrap();
    }
    assert!(r.halted().is_none());
    assert!(r.app().info().0 >= 5, "{}", r.app().info().0);
}
