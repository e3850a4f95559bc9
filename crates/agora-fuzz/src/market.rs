//! Envelopes, transactions and job specs: the bytes `POST /v1/tx`, the mempool and block
//! application take from clients and peers.

use std::sync::{Mutex, MutexGuard, OnceLock};

use agora_crypto::{Domain, Envelope, Keypair, Signature};
use agora_market::{
    decode_envelope, encode_envelope, AuctionSpec, DeclineNotice, Genesis, GenesisAccount,
    GenesisOperator, JobSpec, Market, Params, Transaction, TxKind,
};
use agora_proto::v1 as pb;
use agora_types::{Amount, Hash, Timestamp};
use prost::Message as _;

/// The client account's balance: enough for the largest escrow a valid spec can ask for
/// (`max_replicas × max_price_limit + audit_fee`), so a spec is refused for its shape only.
const CLIENT_BALANCE: u128 = 1 << 80;

/// A market at its genesis with one funded client, shared by the market targets.
pub struct MarketFixture {
    pub market: Mutex<Market>,
    pub client: Keypair,
    pub chain_id: Hash,
    pub params: Params,
}

impl MarketFixture {
    /// The market, even if an earlier input panicked while holding it (the fuzzer reports that
    /// panic; the market itself is only ever read or dry-run here).
    pub fn lock(&self) -> MutexGuard<'_, Market> {
        self.market.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sign `tx` as the funded client.
    pub fn sign(&self, tx: &Transaction) -> Envelope {
        tx.sign(&self.client, &self.chain_id)
    }
}

/// The genesis every market target checks against.
pub fn fixture_genesis() -> Genesis {
    let client = Keypair::for_test(100);
    Genesis {
        chain_name: "agora-fuzz".into(),
        genesis_time: Timestamp(1_700_000_000_000),
        operators: (0..4)
            .map(|i| GenesisOperator {
                address: Keypair::for_test(i).address(),
                stake: Amount(1_000),
            })
            .collect(),
        accounts: vec![GenesisAccount {
            address: client.address(),
            balance: Amount(CLIENT_BALANCE),
        }],
        params: Params::default(),
    }
}

/// The shared market fixture (built once per process).
pub fn market_fixture() -> &'static MarketFixture {
    static F: OnceLock<MarketFixture> = OnceLock::new();
    F.get_or_init(|| {
        let genesis = fixture_genesis();
        let market = Market::new(&genesis).expect("fixture genesis is valid");
        MarketFixture {
            chain_id: market.chain_id(),
            market: Mutex::new(market),
            client: Keypair::for_test(100),
            params: genesis.params,
        }
    })
}

/// `decode_envelope` and the relayed-transaction admission (`check_relayed_tx_bytes`), plus the
/// gossip-only decline notice check (`DeclineNotice::open`), on arbitrary bytes.
///
/// Asserts: a decoded envelope re-encodes to bytes that decode to it again (and the encoding is
/// a fixpoint); admission implies the size limit, a valid transaction signature for this chain,
/// a decodable payload and a nonce in the mempool window; an opened decline notice was signed
/// by the coprocessor it names.
pub fn envelope(data: &[u8]) {
    let f = market_fixture();
    let decoded = decode_envelope(data);
    let admitted = {
        let m = f.lock();
        let before = m.app_hash();
        let r = m.check_relayed_tx_bytes(data);
        assert_eq!(m.app_hash(), before, "relayed admission changed the state");
        r
    };
    let Ok(env) = decoded else {
        assert!(admitted.is_err(), "admitted undecodable envelope bytes");
        return;
    };
    let bytes = encode_envelope(&env);
    let again = decode_envelope(&bytes).expect("an encoded envelope decodes");
    assert_eq!(again, env);
    assert_eq!(
        encode_envelope(&again),
        bytes,
        "envelope encoding is not a fixpoint"
    );
    assert_eq!(again.hash(), env.hash());

    if admitted.is_ok() {
        assert!(
            data.len() as u64 <= f.params.max_tx_bytes,
            "admitted an oversized tx"
        );
        assert!(
            env.verify(Domain::Transaction, &f.chain_id).is_ok(),
            "admitted a tx whose signature does not verify"
        );
        let tx = Transaction::decode(&env.payload).expect("admitted tx payload decodes");
        let next = f.lock().nonce(&env.signer);
        assert!(
            tx.nonce >= next && tx.nonce < next + 64,
            "nonce outside the window"
        );
    }
    if let Ok(notice) = DeclineNotice::open(&env, &f.chain_id) {
        assert_eq!(
            notice.coprocessor, env.signer,
            "decline opened for another signer"
        );
        assert!(env.verify(Domain::Decline, &f.chain_id).is_ok());
    }
}

/// `Transaction::decode` on arbitrary payload bytes, then the whole signature and admission path:
/// the decoded transaction is signed as the funded client, encoded as an envelope and given to
/// `Market::check_tx_bytes`.
///
/// Asserts: the decoded transaction round-trips; a sealed envelope verifies for its domain and
/// chain only, and not with a flipped signature bit; admission leaves the state untouched and
/// implies the payload size limit, the nonce window and, for a job with the signer's next
/// nonce, a spec within the documented bounds.
pub fn transaction(data: &[u8]) {
    let Ok(tx) = Transaction::decode(data) else {
        return;
    };
    let bytes = tx.encode();
    let again = Transaction::decode(&bytes).expect("an encoded transaction decodes");
    assert_eq!(again, tx);
    assert_eq!(
        again.encode(),
        bytes,
        "transaction encoding is not a fixpoint"
    );

    let f = market_fixture();
    let env = f.sign(&tx);
    assert!(env.verify(Domain::Transaction, &f.chain_id).is_ok());
    assert!(env.verify(Domain::Decline, &f.chain_id).is_err());
    assert!(env.verify(Domain::Transaction, &Hash([0xee; 32])).is_err());
    let mut forged = env.clone();
    let mut sig = forged.signature.0;
    sig[usize::from(data.first().copied().unwrap_or(0)) % 64] ^= 1;
    forged.signature = Signature(sig);
    assert!(forged.verify(Domain::Transaction, &f.chain_id).is_err());

    let wire = encode_envelope(&env);
    let verdict = {
        let m = f.lock();
        let before = m.app_hash();
        let r = m.check_tx_bytes(&wire);
        assert_eq!(m.app_hash(), before, "check_tx changed the state");
        assert!(m.check_tx_bytes(&encode_envelope(&forged)).is_err());
        r
    };
    if verdict.is_ok() {
        assert!(bytes.len() as u64 <= f.params.max_tx_bytes);
        assert!(wire.len() as u64 <= f.params.max_tx_bytes);
        assert!(tx.nonce < 64, "admitted a nonce outside the window");
        // A nonce ahead of the next one is admitted on signature and shape alone (its block
        // refuses it if it is invalid then, and it still uses the nonce, ADR 006); only the
        // next nonce is checked against the state.
        if let (0, TxKind::SubmitJob(spec)) = (tx.nonce, &tx.kind) {
            assert_spec_within_bounds(spec, &f.params);
        }
    }
}

/// A `agora.v1.JobSpec` from arbitrary bytes, submitted by the funded client through
/// `Market::check_tx`.
///
/// Asserts: the spec round-trips through its wire form; an accepted spec is within every bound
/// `Params` documents (replicas, price, sizes, args, fuel, memory, deadline, basis points,
/// auction phases) and its escrow is payable; the check leaves the state untouched.
pub fn job_spec(data: &[u8]) {
    let Ok(p) = pb::JobSpec::decode(data) else {
        return;
    };
    let Ok(spec) = JobSpec::try_from(p) else {
        return;
    };
    let wire = pb::JobSpec::from(&spec).encode_to_vec();
    let again = JobSpec::try_from(pb::JobSpec::decode(wire.as_slice()).expect("decodes"))
        .expect("an encoded spec converts");
    assert_eq!(again, spec);
    assert_eq!(pb::JobSpec::from(&again).encode_to_vec(), wire);

    let f = market_fixture();
    let tx = Transaction {
        nonce: 0,
        kind: TxKind::SubmitJob(spec.clone()),
    };
    let env = f.sign(&tx);
    let verdict = {
        let m = f.lock();
        let before = m.app_hash();
        let r = m.check_tx(&env);
        assert_eq!(m.app_hash(), before, "check_tx changed the state");
        r
    };
    if verdict.is_ok() {
        assert_spec_within_bounds(&spec, &f.params);
        let escrow = spec
            .max_price
            .checked_mul(u128::from(spec.replicas))
            .expect("escrow of an accepted spec fits");
        assert!(escrow.0 <= CLIENT_BALANCE);
    }
}

/// The bounds `Params` documents for an admissible job spec.
fn assert_spec_within_bounds(s: &JobSpec, p: &Params) {
    assert!(
        (1..=p.max_replicas).contains(&s.replicas),
        "replicas {}",
        s.replicas
    );
    assert!(
        !s.max_price.is_zero() && s.max_price <= p.max_price_limit,
        "max price"
    );
    assert!(
        (1..=p.max_module_bytes).contains(&s.module_size),
        "module size"
    );
    assert!(s.input_size <= p.max_input_bytes, "input size");
    assert!(s.args.len() as u64 <= u64::from(p.max_args), "arg count");
    assert!(
        s.args
            .iter()
            .all(|a| a.len() as u64 <= u64::from(p.max_arg_bytes)),
        "arg length"
    );
    assert!((1..=p.max_fuel).contains(&s.fuel_limit), "fuel");
    assert!((1..=p.max_memory_bytes).contains(&s.memory_limit), "memory");
    assert!(
        (p.min_deadline_ms..=p.max_deadline_ms).contains(&s.deadline_ms),
        "deadline"
    );
    assert!(
        s.min_reputation_bps <= 10_000 && s.audit_bps <= 10_000,
        "bps"
    );
    let phase = |ms: u64| (p.min_auction_ms..=p.max_auction_ms).contains(&ms);
    match s.auction {
        AuctionSpec::Dutch {
            start_price,
            duration_ms,
        } => {
            assert!(start_price <= s.max_price, "start price above max price");
            assert!(phase(duration_ms), "dutch duration");
        }
        AuctionSpec::Sealed {
            commit_ms,
            reveal_ms,
        } => assert!(phase(commit_ms) && phase(reveal_ms), "sealed phases"),
    }
}
