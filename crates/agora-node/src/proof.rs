//! Proofs that anyone can check offline (ADR 016): a job proof shows that the chain decided a
//! job's events of one block (its settlement, with result hash, outcome, fuel and who was paid
//! what), a block proof shows that a header was decided. Both verify against the genesis file
//! alone: the certificate's signatures against the genesis validator set (more than 2/3 of the
//! power) under the chain id, then, for a job, the Merkle path of each event to the events
//! root that the certified header's app hash commits to.
//!
//! The encodings are protobuf (`agora.v1.JobProof`, `agora.v1.BlockProof`), and a decoder
//! accepts only the canonical bytes (decode, encode again, compare), so a proof has exactly one
//! encoding: any changed byte either fails to decode or changes something that is signed or
//! hashed.

use agora_consensus::wire::{cert_from_pb, cert_to_pb, header_from_pb, header_to_pb};
use agora_consensus::{BlockHeader, Certificate};
use agora_crypto::merkle;
use agora_market::canon::Canon;
use agora_market::{BlockResult, EventRecord, Genesis, MarketEvent, Outcome};
use agora_proto::v1 as pb;
use agora_types::{Address, Amount, Hash, JobId};
use prost::Message as _;

/// The job proof format version this build writes and reads.
pub const JOB_PROOF_VERSION: u32 = 1;
/// The block proof format version this build writes and reads.
pub const BLOCK_PROOF_VERSION: u32 = 1;
/// Largest proof file a verifier reads.
pub const MAX_PROOF_BYTES: usize = 4 * 1024 * 1024;
/// Most events one job proof carries.
pub const MAX_PROOF_EVENTS: usize = 1024;

/// Why a proof does not hold. Every variant is a refusal; none is a partial success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the proof is {0} bytes, over the {MAX_PROOF_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("not an Agora proof: {0}")]
    Decode(String),
    #[error("the proof is not in its canonical encoding (it was altered)")]
    NotCanonical,
    #[error("proof format version {0} is not supported (this build reads {1})")]
    Version(u32, u32),
    #[error("the genesis file does not define a validator set: {0}")]
    Genesis(String),
    #[error("the certificate is for block {found} at height {height}, not the proof's header {expected}")]
    CertificateBlock {
        height: u64,
        expected: Hash,
        found: Hash,
    },
    #[error("the certificate does not verify against the genesis validators: {0}")]
    Certificate(#[from] agora_consensus::CertError),
    #[error("event {index}: {detail}")]
    Event { index: u64, detail: String },
    #[error("the events and state hash give app hash {found}, but the certified header carries {expected}")]
    AppHash { expected: Hash, found: Hash },
    #[error("the proof carries no settlement of job {0}")]
    NotSettled(JobId),
    #[error("the output does not match the proven result hash {expected} (got {found} with exit code {exit_code})")]
    Output {
        expected: Hash,
        found: Hash,
        exit_code: i32,
    },
    #[error("cannot build a proof: {0}")]
    Build(String),
}

/// What a verified block proof establishes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ProvenBlock {
    pub chain_id: Hash,
    pub height: u64,
    pub block_hash: Hash,
    pub app_hash: Hash,
    pub time: u64,
    pub round: u32,
    pub signers: Vec<Address>,
    pub signed_power: u64,
    pub total_power: u64,
}

/// One payment the chain made for the job.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ProvenPayment {
    pub coprocessor: Address,
    pub amount: Amount,
    pub fee: Amount,
}

/// What a verified job proof establishes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ProvenJob {
    pub job: JobId,
    /// The block that settled the job (its events are proven).
    pub height: u64,
    pub time: u64,
    pub result_hash: Hash,
    pub outcome: Outcome,
    pub fuel_used: u64,
    pub refund: Amount,
    pub paid: Vec<ProvenPayment>,
    /// Every proven event, in block order.
    pub events: Vec<EventRecord>,
    /// The certified block whose header commits to the events (`height + 1`).
    pub certified_by: ProvenBlock,
}

fn decode_canonical<M: prost::Message + Default>(bytes: &[u8]) -> Result<M, ProofError> {
    if bytes.len() > MAX_PROOF_BYTES {
        return Err(ProofError::TooLarge(bytes.len()));
    }
    let m = M::decode(bytes).map_err(|e| ProofError::Decode(e.to_string()))?;
    if m.encode_to_vec() != bytes {
        return Err(ProofError::NotCanonical);
    }
    Ok(m)
}

fn hash32(b: &[u8], what: &str) -> Result<Hash, ProofError> {
    Hash::from_slice(b).map_err(|_| ProofError::Decode(format!("{what} is not 32 bytes")))
}

/// Check a header and its certificate against the genesis.
fn verify_certified(
    header: &BlockHeader,
    cert: &Certificate,
    genesis: &Genesis,
) -> Result<ProvenBlock, ProofError> {
    let cons = crate::genesis::consensus_genesis(genesis)
        .map_err(|e| ProofError::Genesis(format!("{e:#}")))?;
    let block_hash = header.hash();
    if cert.height != header.height || cert.block_hash != block_hash {
        return Err(ProofError::CertificateBlock {
            height: cert.height,
            expected: block_hash,
            found: cert.block_hash,
        });
    }
    let signed_power = cert.verify(&cons.validators, &cons.chain_id)?;
    Ok(ProvenBlock {
        chain_id: cons.chain_id,
        height: header.height,
        block_hash,
        app_hash: header.app_hash,
        time: header.time,
        round: cert.round,
        signers: cert.signatures.iter().map(|(a, _)| *a).collect(),
        signed_power,
        total_power: cons.validators.total_power(),
    })
}

/// Decode a proof's header and certificate and check them against the genesis.
fn certified(
    header: Option<pb::BlockHeader>,
    cert: Option<pb::Certificate>,
    genesis: &Genesis,
) -> Result<(BlockHeader, ProvenBlock), ProofError> {
    let decode = |e: agora_consensus::WireError| ProofError::Decode(e.to_string());
    let header =
        header_from_pb(header.ok_or(ProofError::Decode("no header".into()))?).map_err(decode)?;
    let cert =
        cert_from_pb(cert.ok_or(ProofError::Decode("no certificate".into()))?).map_err(decode)?;
    let proven = verify_certified(&header, &cert, genesis)?;
    Ok((header, proven))
}

/// Encode a block proof: a header and its commit certificate.
pub fn block_proof(header: &BlockHeader, cert: &Certificate) -> Vec<u8> {
    pb::BlockProof {
        version: BLOCK_PROOF_VERSION,
        header: Some(header_to_pb(header)),
        certificate: Some(cert_to_pb(cert)),
    }
    .encode_to_vec()
}

/// Verify a block proof against `genesis`.
pub fn verify_block(bytes: &[u8], genesis: &Genesis) -> Result<ProvenBlock, ProofError> {
    let p: pb::BlockProof = decode_canonical(bytes)?;
    if p.version != BLOCK_PROOF_VERSION {
        return Err(ProofError::Version(p.version, BLOCK_PROOF_VERSION));
    }
    Ok(certified(p.header, p.certificate, genesis)?.1)
}

/// Build the proof of `job`'s events in the block whose stored result is `result`, certified by
/// the next block's `header` and its certificate `cert`. Refuses when the stored result does not
/// lead to the header's app hash (a store that does not match the chain issues no proof).
pub fn job_proof(
    job: &JobId,
    result: &BlockResult,
    header: &BlockHeader,
    cert: &Certificate,
) -> Result<Vec<u8>, ProofError> {
    if header.height != result.height.0 + 1 {
        return Err(ProofError::Build(format!(
            "header {} does not follow block {}",
            header.height, result.height.0
        )));
    }
    let leaves: Vec<Vec<u8>> = result.events.iter().map(Canon::to_canonical).collect();
    let root = merkle::root(&leaves);
    let app_hash = agora_market::app_hash(&result.state_hash, &root);
    if app_hash != header.app_hash {
        return Err(ProofError::Build(format!(
            "the stored events of block {} give app hash {app_hash}, the chain has {}",
            result.height.0, header.app_hash
        )));
    }
    let mut events = Vec::new();
    for (i, rec) in result.events.iter().enumerate() {
        if rec.event.job() == Some(job) {
            let path = merkle::path(&leaves, i).expect("index in range");
            events.push(pb::EventProof {
                index: i as u64,
                record: leaves[i].clone().into(),
                path: path.iter().map(|h| h.0.to_vec().into()).collect(),
            });
        }
    }
    if !events.iter().any(|e| {
        matches!(
            result.events[e.index as usize].event,
            MarketEvent::Settled { .. }
        )
    }) {
        return Err(ProofError::NotSettled(*job));
    }
    if events.len() > MAX_PROOF_EVENTS {
        return Err(ProofError::Build(format!(
            "{} events of the job in one block, over {MAX_PROOF_EVENTS}",
            events.len()
        )));
    }
    Ok(pb::JobProof {
        version: JOB_PROOF_VERSION,
        job_id: job.0.to_vec().into(),
        header: Some(header_to_pb(header)),
        certificate: Some(cert_to_pb(cert)),
        state_hash: result.state_hash.0.to_vec().into(),
        event_count: leaves.len() as u64,
        events,
    }
    .encode_to_vec())
}

/// Verify a job proof against `genesis`: the certificate, every event's path, and that the
/// events hold the job's settlement.
pub fn verify_job(bytes: &[u8], genesis: &Genesis) -> Result<ProvenJob, ProofError> {
    let p: pb::JobProof = decode_canonical(bytes)?;
    if p.version != JOB_PROOF_VERSION {
        return Err(ProofError::Version(p.version, JOB_PROOF_VERSION));
    }
    let job = hash32(&p.job_id, "job id")?;
    let (header, certified_by) = certified(p.header, p.certificate, genesis)?;
    let state_hash = hash32(&p.state_hash, "state hash")?;
    if p.events.is_empty() || p.events.len() > MAX_PROOF_EVENTS {
        return Err(ProofError::Decode(format!(
            "{} events (1 to {MAX_PROOF_EVENTS} expected)",
            p.events.len()
        )));
    }
    let proven_height = header.height.checked_sub(1).ok_or(ProofError::Event {
        index: 0,
        detail: "the certified block is the first; no block before it has events".into(),
    })?;
    let mut root: Option<Hash> = None;
    let mut events = Vec::with_capacity(p.events.len());
    let mut last_index: Option<u64> = None;
    for e in &p.events {
        let bad = |detail: String| ProofError::Event {
            index: e.index,
            detail,
        };
        if last_index.is_some_and(|l| e.index <= l) {
            return Err(bad("events are not in increasing index order".into()));
        }
        last_index = Some(e.index);
        let path = e
            .path
            .iter()
            .map(|h| hash32(h, "path hash"))
            .collect::<Result<Vec<_>, _>>()?;
        let r = merkle::root_from_path(p.event_count, e.index, &e.record, &path)
            .map_err(|err| bad(err.to_string()))?;
        if root.is_some_and(|root| root != r) {
            return Err(bad(
                "its path leads to another root than the first event's".into()
            ));
        }
        root = Some(r);
        let rec = EventRecord::from_canonical(&e.record).map_err(|err| bad(err.to_string()))?;
        if rec.height.0 != proven_height {
            return Err(bad(format!(
                "recorded at height {}, not {proven_height}",
                rec.height.0
            )));
        }
        if rec.event.job() != Some(&job) {
            return Err(bad("not an event of the proven job".into()));
        }
        events.push(rec);
    }
    let root = root.expect("at least one event");
    let app_hash = agora_market::app_hash(&state_hash, &root);
    if app_hash != header.app_hash {
        return Err(ProofError::AppHash {
            expected: header.app_hash,
            found: app_hash,
        });
    }
    let mut settled = None;
    let mut paid = Vec::new();
    for rec in &events {
        match &rec.event {
            MarketEvent::Settled {
                result_hash,
                refund,
                outcome,
                fuel_used,
                ..
            } => settled = Some((*result_hash, *refund, *outcome, *fuel_used, rec.time.0)),
            MarketEvent::Paid {
                coprocessor,
                amount,
                fee,
                ..
            } => paid.push(ProvenPayment {
                coprocessor: *coprocessor,
                amount: *amount,
                fee: *fee,
            }),
            _ => {}
        }
    }
    let (result_hash, refund, outcome, fuel_used, time) =
        settled.ok_or(ProofError::NotSettled(job))?;
    Ok(ProvenJob {
        job,
        height: proven_height,
        time,
        result_hash,
        outcome,
        fuel_used,
        refund,
        paid,
        events,
        certified_by,
    })
}

/// Check a program's exit code and stdout against the proven result hash.
pub fn check_output(proven: &ProvenJob, exit_code: i32, stdout: &[u8]) -> Result<(), ProofError> {
    let found = agora_market::result_hash(proven.outcome, exit_code, proven.fuel_used, stdout);
    if found != proven.result_hash {
        return Err(ProofError::Output {
            expected: proven.result_hash,
            found,
            exit_code,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_consensus::context::VoteType;
    use agora_crypto::{Domain, Keypair};
    use agora_market::TxReceipt;
    use agora_types::{Height, Timestamp};

    struct Fixture {
        genesis: Genesis,
        keys: Vec<Keypair>,
        job: JobId,
        result: BlockResult,
        header: BlockHeader,
        stdout: Vec<u8>,
    }

    const FUEL: u64 = 42;

    fn event(height: u64, event: MarketEvent) -> EventRecord {
        EventRecord {
            height: Height(height),
            time: Timestamp(1_000 + height),
            event,
        }
    }

    /// A block 9 whose events settle `job` (among other events), and block 10's header.
    fn fixture() -> Fixture {
        let keys: Vec<Keypair> = (0..4).map(Keypair::for_test).collect();
        let addrs: Vec<Address> = keys.iter().map(|k| k.address()).collect();
        let mut genesis =
            crate::genesis::build("proof-test".into(), &addrs, 1_000, &addrs[..1], 5_000);
        genesis.genesis_time = Timestamp(1);
        let job = Hash([7; 32]);
        let other = Hash([8; 32]);
        let stdout = b"42\n".to_vec();
        let result_hash = agora_market::result_hash(Outcome::Success, 0, FUEL, &stdout);
        let (c1, c2) = (Address([1; 32]), Address([2; 32]));
        let events = vec![
            event(9, MarketEvent::Cancelled { job: other }),
            event(
                9,
                MarketEvent::Paid {
                    job,
                    coprocessor: c1,
                    amount: Amount(90),
                    fee: Amount(10),
                },
            ),
            event(
                9,
                MarketEvent::ReputationUpdated {
                    coprocessor: c1,
                    outcome: true,
                    reputation_bps: 9_000,
                },
            ),
            event(
                9,
                MarketEvent::Paid {
                    job,
                    coprocessor: c2,
                    amount: Amount(80),
                    fee: Amount(10),
                },
            ),
            event(
                9,
                MarketEvent::Settled {
                    job,
                    result_hash,
                    refund: Amount(5),
                    outcome: Outcome::Success,
                    fuel_used: FUEL,
                },
            ),
        ];
        let state_hash = Hash([3; 32]);
        let root = agora_market::canon::events_root(&events);
        let result = BlockResult {
            height: Height(9),
            receipts: Vec::<TxReceipt>::new(),
            events,
            app_hash: agora_market::app_hash(&state_hash, &root),
            state_hash,
        };
        let header = BlockHeader {
            height: 10,
            time: 2_000,
            prev_hash: Hash([4; 32]),
            app_hash: result.app_hash,
            proposer: addrs[0],
            txs_hash: Hash([5; 32]),
            last_commit_hash: Hash([6; 32]),
            seed_proof: vec![9; 80],
        };
        Fixture {
            genesis,
            keys,
            job,
            result,
            header,
            stdout,
        }
    }

    fn cert(f: &Fixture, signers: &[usize]) -> Certificate {
        let chain = f.genesis.hash();
        let c = Certificate::new(10, 0, f.header.hash(), vec![]);
        let sigs = signers
            .iter()
            .map(|&i| {
                let k = &f.keys[i];
                let vote = c.vote_for(VoteType::Precommit, k.address()).signing_bytes();
                (k.address(), k.sign(Domain::Vote, &chain, &vote))
            })
            .collect();
        Certificate::new(10, 0, f.header.hash(), sigs)
    }

    #[test]
    fn a_job_proof_verifies_offline_and_says_what_it_proves() {
        let f = fixture();
        let bytes = job_proof(&f.job, &f.result, &f.header, &cert(&f, &[0, 1, 2])).unwrap();
        let proven = verify_job(&bytes, &f.genesis).unwrap();
        assert_eq!(proven.job, f.job);
        assert_eq!(proven.height, 9);
        assert_eq!(proven.fuel_used, FUEL);
        assert_eq!(proven.refund, Amount(5));
        assert_eq!(proven.events.len(), 3, "the job's events only");
        assert_eq!(
            proven.paid.iter().map(|p| p.amount).collect::<Vec<_>>(),
            [Amount(90), Amount(80)]
        );
        assert_eq!(proven.certified_by.height, 10);
        assert_eq!(proven.certified_by.signed_power, 3_000);
        assert_eq!(proven.certified_by.total_power, 4_000);
        check_output(&proven, 0, &f.stdout).unwrap();
    }

    #[test]
    fn flipping_any_byte_of_the_proof_fails_verification() {
        let f = fixture();
        let bytes = job_proof(&f.job, &f.result, &f.header, &cert(&f, &[0, 1, 2, 3])).unwrap();
        verify_job(&bytes, &f.genesis).unwrap();
        for i in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let mut bad = bytes.clone();
                bad[i] ^= bit;
                assert!(
                    verify_job(&bad, &f.genesis).is_err(),
                    "byte {i} ^ {bit:#x} of {} still verifies",
                    bytes.len()
                );
            }
        }
        // Cut short or extended, it is refused too.
        assert!(verify_job(&bytes[..bytes.len() - 1], &f.genesis).is_err());
        let mut long = bytes.clone();
        long.push(0);
        assert!(verify_job(&long, &f.genesis).is_err());
    }

    #[test]
    fn flipping_any_byte_of_the_output_or_the_genesis_fails_verification() {
        let f = fixture();
        let bytes = job_proof(&f.job, &f.result, &f.header, &cert(&f, &[0, 1, 2])).unwrap();
        let proven = verify_job(&bytes, &f.genesis).unwrap();
        for i in 0..f.stdout.len() {
            let mut bad = f.stdout.clone();
            bad[i] ^= 0x01;
            assert!(check_output(&proven, 0, &bad).is_err());
        }
        assert!(check_output(&proven, 1, &f.stdout).is_err());
        assert!(check_output(&proven, 0, b"").is_err());
        let text = serde_json::to_string_pretty(&f.genesis).unwrap();
        let genesis_ok = |t: &[u8]| {
            let g = crate::genesis::parse_exact(std::str::from_utf8(t).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
            verify_job(&bytes, &g).map_err(|e| e.to_string())
        };
        genesis_ok(text.as_bytes()).unwrap();
        // A value that reads back as another text (rounded) is refused, not taken as the same.
        let rounded = text.replace(
            &format!("{:?}", f.genesis.params.gas_beta.to_string()),
            "\"0.98\"",
        );
        assert_ne!(rounded, text);
        assert!(genesis_ok(rounded.as_bytes())
            .unwrap_err()
            .contains("gas_beta"));
        for i in 0..text.len() {
            let mut bad = text.as_bytes().to_vec();
            bad[i] ^= 0x01;
            assert!(
                genesis_ok(&bad).is_err(),
                "genesis byte {i} flipped still verifies: {:?}",
                String::from_utf8_lossy(&bad[i.saturating_sub(60)..(i + 20).min(bad.len())])
            );
        }
    }

    #[test]
    fn a_minority_certificate_a_foreign_chain_or_a_stranger_is_refused() {
        let f = fixture();
        let minority = job_proof(&f.job, &f.result, &f.header, &cert(&f, &[0, 1])).unwrap();
        assert!(matches!(
            verify_job(&minority, &f.genesis),
            Err(ProofError::Certificate(
                agora_consensus::CertError::NoQuorum { .. }
            ))
        ));
        let mut other = f.genesis.clone();
        other.chain_name = "another chain".into();
        let good = job_proof(&f.job, &f.result, &f.header, &cert(&f, &[0, 1, 2])).unwrap();
        assert!(matches!(
            verify_job(&good, &other),
            Err(ProofError::Certificate(
                agora_consensus::CertError::BadSignature
            ))
        ));
        // A node whose stored events do not match the chain issues no proof.
        let mut forged = f.result.clone();
        forged.events[1].event = MarketEvent::Paid {
            job: f.job,
            coprocessor: Address([9; 32]),
            amount: Amount(90),
            fee: Amount(10),
        };
        assert!(matches!(
            job_proof(&f.job, &forged, &f.header, &cert(&f, &[0, 1, 2])),
            Err(ProofError::Build(_))
        ));
        // No settlement among the job's events: no proof.
        let mut unsettled = f.result.clone();
        unsettled.events.pop();
        let root = agora_market::canon::events_root(&unsettled.events);
        let mut header = f.header.clone();
        header.app_hash = agora_market::app_hash(&unsettled.state_hash, &root);
        let f2 = Fixture {
            header,
            ..fixture()
        };
        assert_eq!(
            job_proof(&f.job, &unsettled, &f2.header, &cert(&f2, &[0, 1, 2])),
            Err(ProofError::NotSettled(f.job))
        );
    }

    #[test]
    fn a_block_proof_verifies_and_any_flipped_byte_is_refused() {
        let f = fixture();
        let bytes = block_proof(&f.header, &cert(&f, &[1, 2, 3]));
        let proven = verify_block(&bytes, &f.genesis).unwrap();
        assert_eq!(proven.block_hash, f.header.hash());
        assert_eq!(proven.signers.len(), 3);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(verify_block(&bad, &f.genesis).is_err(), "byte {i}");
        }
    }
}
