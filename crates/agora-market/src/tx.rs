//! Transaction domain types, their wire form (`agora.v1` protobuf) and off-chain helpers.
//!
//! Decoding from the wire is fallible (`TryFrom`), encoding infallible. Builders produce signed
//! envelopes for every kind, so agents and the CLI never hand-assemble protobuf.

use agora_crypto::{Domain, Envelope, Keypair, Signature};
use agora_proto::v1 as pb;
use agora_types::{Address, Amount, Hash, JobId};
use bytes::Bytes;
use prost::Message;
use serde::{Deserialize, Serialize};

/// Why a wire message could not be turned into a domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("protobuf: {0}")]
    Protobuf(String),
    #[error("missing field {0}")]
    Missing(&'static str),
    #[error("field {0} must be 32 bytes")]
    Bytes32(&'static str),
    #[error("field {0} must be 64 bytes")]
    Bytes64(&'static str),
    #[error("unknown enum value {value} in {field}")]
    Enum { field: &'static str, value: i32 },
}

/// How a job's execution ended (committed as part of the result).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Trap,
    FuelExhausted,
    Memory,
}

impl Outcome {
    fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Trap => 1,
            Outcome::FuelExhausted => 2,
            Outcome::Memory => 3,
        }
    }
}

/// Auction kind and parameters chosen by the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuctionSpec {
    /// Reverse Dutch: the offered price rises from `start_price` to `max_price` over `duration_ms`
    /// of market time.
    Dutch {
        start_price: Amount,
        duration_ms: u64,
    },
    /// Sealed-bid second price: commit phase then reveal phase.
    Sealed { commit_ms: u64, reveal_ms: u64 },
}

/// What a client asks for (design §4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub module_hash: Hash,
    pub input_hash: Hash,
    pub module_size: u64,
    pub input_size: u64,
    pub args: Vec<String>,
    pub fuel_limit: u64,
    pub memory_limit: u64,
    pub replicas: u32,
    /// Audit probability for `k = 1` in basis points; 0 means the genesis default.
    pub audit_bps: u32,
    pub auction: AuctionSpec,
    /// Maximum price per replica.
    pub max_price: Amount,
    /// Execution window after award, in market milliseconds.
    pub deadline_ms: u64,
    pub min_reputation_bps: u32,
}

/// A coprocessor's bid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BidKind {
    /// Dutch acceptance: fill me once the clock reaches `min_price`.
    Dutch { min_price: Amount },
    /// Sealed commitment `sealed_commitment(job, bidder, price, salt)`.
    Commit { commitment: Hash },
    /// Sealed reveal.
    Reveal { price: Amount, salt: Hash },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttestationKind {
    Audit,
    Liveness,
}

/// An operator's audit outcome or liveness report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    pub kind: AttestationKind,
    pub job_id: JobId,
    pub result_hash: Hash,
    pub subject: Address,
    pub alive: bool,
}

/// Two conflicting signed payloads by one operator: two votes for one (height, round, step), or
/// two proposals for one (height, round) (`vote_a`, `vote_b` hold the signed bytes either way).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub operator: Address,
    pub vote_a: Vec<u8>,
    pub signature_a: Signature,
    pub vote_b: Vec<u8>,
    pub signature_b: Signature,
}

/// Why a coprocessor declined a job (`agora job why`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclineReason {
    PriceBelowReserve,
    FuelOverLimit,
    AtCapacity,
    ReputationBelowMinimum,
    ModuleTooLarge,
    Other,
}

/// A coprocessor's reason for not bidding on a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclineNotice {
    pub job_id: JobId,
    pub coprocessor: Address,
    pub reason: DeclineReason,
    pub detail: String,
}

/// Every transaction kind of design §3.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxKind {
    Transfer {
        to: Address,
        amount: Amount,
    },
    Stake {
        amount: Amount,
        capacity: u32,
    },
    Unstake {
        amount: Amount,
    },
    SubmitJob(JobSpec),
    CancelJob {
        job_id: JobId,
    },
    Bid {
        job_id: JobId,
        bid: BidKind,
    },
    Result {
        job_id: JobId,
        result_hash: Hash,
        fuel_used: u64,
        outcome: Outcome,
        output_size: u64,
    },
    Attestation(Attestation),
    Evidence(Evidence),
    Decline(DeclineNotice),
}

impl TxKind {
    /// Short name, for receipts and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            TxKind::Transfer { .. } => "transfer",
            TxKind::Stake { .. } => "stake",
            TxKind::Unstake { .. } => "unstake",
            TxKind::SubmitJob(_) => "submit_job",
            TxKind::CancelJob { .. } => "cancel_job",
            TxKind::Bid { .. } => "bid",
            TxKind::Result { .. } => "result",
            TxKind::Attestation(_) => "attestation",
            TxKind::Evidence(_) => "evidence",
            TxKind::Decline(_) => "decline",
        }
    }
}

/// A transaction: the signer's nonce and what it does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub nonce: u64,
    pub kind: TxKind,
}

// ---------------------------------------------------------------------------------------------
// wire conversions

fn u128_to_pb(a: Amount) -> Option<pb::U128> {
    Some(pb::U128 {
        hi: (a.0 >> 64) as u64,
        lo: a.0 as u64,
    })
}

fn pb_to_amount(v: Option<pb::U128>) -> Amount {
    v.map(|u| Amount(((u.hi as u128) << 64) | u.lo as u128))
        .unwrap_or_default()
}

fn b32(b: &Bytes, field: &'static str) -> Result<[u8; 32], DecodeError> {
    b.as_ref()
        .try_into()
        .map_err(|_| DecodeError::Bytes32(field))
}

fn hash(b: &Bytes, field: &'static str) -> Result<Hash, DecodeError> {
    b32(b, field).map(Hash)
}

fn addr(b: &Bytes, field: &'static str) -> Result<Address, DecodeError> {
    b32(b, field).map(Address)
}

fn sig(b: &Bytes, field: &'static str) -> Result<Signature, DecodeError> {
    Signature::from_slice(b).ok_or(DecodeError::Bytes64(field))
}

fn bytes_of(b: &[u8]) -> Bytes {
    Bytes::copy_from_slice(b)
}

impl From<&JobSpec> for pb::JobSpec {
    fn from(s: &JobSpec) -> Self {
        pb::JobSpec {
            module_hash: bytes_of(s.module_hash.as_bytes()),
            input_hash: bytes_of(s.input_hash.as_bytes()),
            module_size: s.module_size,
            input_size: s.input_size,
            args: s.args.clone(),
            fuel_limit: s.fuel_limit,
            memory_limit: s.memory_limit,
            replicas: s.replicas,
            audit_bps: s.audit_bps,
            auction: Some(match &s.auction {
                AuctionSpec::Dutch {
                    start_price,
                    duration_ms,
                } => pb::job_spec::Auction::Dutch(pb::DutchParams {
                    start_price: u128_to_pb(*start_price),
                    duration_ms: *duration_ms,
                }),
                AuctionSpec::Sealed {
                    commit_ms,
                    reveal_ms,
                } => pb::job_spec::Auction::Sealed(pb::SealedParams {
                    commit_ms: *commit_ms,
                    reveal_ms: *reveal_ms,
                }),
            }),
            max_price: u128_to_pb(s.max_price),
            deadline_ms: s.deadline_ms,
            min_reputation_bps: s.min_reputation_bps,
        }
    }
}

impl TryFrom<pb::JobSpec> for JobSpec {
    type Error = DecodeError;
    fn try_from(s: pb::JobSpec) -> Result<Self, DecodeError> {
        let auction = match s.auction.ok_or(DecodeError::Missing("auction"))? {
            pb::job_spec::Auction::Dutch(d) => AuctionSpec::Dutch {
                start_price: pb_to_amount(d.start_price),
                duration_ms: d.duration_ms,
            },
            pb::job_spec::Auction::Sealed(p) => AuctionSpec::Sealed {
                commit_ms: p.commit_ms,
                reveal_ms: p.reveal_ms,
            },
        };
        Ok(JobSpec {
            module_hash: hash(&s.module_hash, "module_hash")?,
            input_hash: hash(&s.input_hash, "input_hash")?,
            module_size: s.module_size,
            input_size: s.input_size,
            args: s.args,
            fuel_limit: s.fuel_limit,
            memory_limit: s.memory_limit,
            replicas: s.replicas,
            audit_bps: s.audit_bps,
            auction,
            max_price: pb_to_amount(s.max_price),
            deadline_ms: s.deadline_ms,
            min_reputation_bps: s.min_reputation_bps,
        })
    }
}

fn reason_to_pb(r: DeclineReason) -> pb::DeclineReason {
    match r {
        DeclineReason::PriceBelowReserve => pb::DeclineReason::DeclinePriceBelowReserve,
        DeclineReason::FuelOverLimit => pb::DeclineReason::DeclineFuelOverLimit,
        DeclineReason::AtCapacity => pb::DeclineReason::DeclineAtCapacity,
        DeclineReason::ReputationBelowMinimum => pb::DeclineReason::DeclineReputationBelowMinimum,
        DeclineReason::ModuleTooLarge => pb::DeclineReason::DeclineModuleTooLarge,
        DeclineReason::Other => pb::DeclineReason::DeclineOther,
    }
}

impl From<&DeclineNotice> for pb::DeclineNotice {
    fn from(d: &DeclineNotice) -> Self {
        pb::DeclineNotice {
            job_id: bytes_of(d.job_id.as_bytes()),
            coprocessor: bytes_of(d.coprocessor.as_bytes()),
            reason: reason_to_pb(d.reason) as i32,
            detail: d.detail.clone(),
        }
    }
}

impl TryFrom<pb::DeclineNotice> for DeclineNotice {
    type Error = DecodeError;
    fn try_from(d: pb::DeclineNotice) -> Result<Self, DecodeError> {
        let reason = match pb::DeclineReason::try_from(d.reason) {
            Ok(pb::DeclineReason::DeclinePriceBelowReserve) => DeclineReason::PriceBelowReserve,
            Ok(pb::DeclineReason::DeclineFuelOverLimit) => DeclineReason::FuelOverLimit,
            Ok(pb::DeclineReason::DeclineAtCapacity) => DeclineReason::AtCapacity,
            Ok(pb::DeclineReason::DeclineReputationBelowMinimum) => {
                DeclineReason::ReputationBelowMinimum
            }
            Ok(pb::DeclineReason::DeclineModuleTooLarge) => DeclineReason::ModuleTooLarge,
            Ok(pb::DeclineReason::DeclineOther) => DeclineReason::Other,
            Err(_) => {
                return Err(DecodeError::Enum {
                    field: "reason",
                    value: d.reason,
                })
            }
        };
        Ok(DeclineNotice {
            job_id: hash(&d.job_id, "job_id")?,
            coprocessor: addr(&d.coprocessor, "coprocessor")?,
            reason,
            detail: d.detail,
        })
    }
}

impl From<&Transaction> for pb::Transaction {
    fn from(t: &Transaction) -> Self {
        use pb::transaction::Kind as K;
        let kind = match &t.kind {
            TxKind::Transfer { to, amount } => K::Transfer(pb::Transfer {
                to: bytes_of(to.as_bytes()),
                amount: u128_to_pb(*amount),
            }),
            TxKind::Stake { amount, capacity } => K::Stake(pb::StakeCoprocessor {
                amount: u128_to_pb(*amount),
                capacity: *capacity,
            }),
            TxKind::Unstake { amount } => K::Unstake(pb::UnstakeCoprocessor {
                amount: u128_to_pb(*amount),
            }),
            TxKind::SubmitJob(spec) => K::SubmitJob(pb::SubmitJob {
                spec: Some(spec.into()),
            }),
            TxKind::CancelJob { job_id } => K::CancelJob(pb::CancelJob {
                job_id: bytes_of(job_id.as_bytes()),
            }),
            TxKind::Bid { job_id, bid } => K::Bid(pb::Bid {
                job_id: bytes_of(job_id.as_bytes()),
                kind: Some(match bid {
                    BidKind::Dutch { min_price } => pb::bid::Kind::Dutch(pb::DutchAccept {
                        min_price: u128_to_pb(*min_price),
                    }),
                    BidKind::Commit { commitment } => pb::bid::Kind::Commit(pb::SealedCommit {
                        commitment: bytes_of(commitment.as_bytes()),
                    }),
                    BidKind::Reveal { price, salt } => pb::bid::Kind::Reveal(pb::SealedReveal {
                        price: u128_to_pb(*price),
                        salt: bytes_of(salt.as_bytes()),
                    }),
                }),
            }),
            TxKind::Result {
                job_id,
                result_hash,
                fuel_used,
                outcome,
                output_size,
            } => K::Result(pb::ResultCommit {
                job_id: bytes_of(job_id.as_bytes()),
                result_hash: bytes_of(result_hash.as_bytes()),
                fuel_used: *fuel_used,
                outcome: outcome.code() as i32,
                output_size: *output_size,
            }),
            TxKind::Attestation(a) => K::Attestation(pb::Attestation {
                kind: match a.kind {
                    AttestationKind::Audit => pb::AttestationKind::AttestationAudit as i32,
                    AttestationKind::Liveness => pb::AttestationKind::AttestationLiveness as i32,
                },
                job_id: bytes_of(a.job_id.as_bytes()),
                result_hash: bytes_of(a.result_hash.as_bytes()),
                subject: bytes_of(a.subject.as_bytes()),
                alive: a.alive,
            }),
            TxKind::Evidence(e) => K::Evidence(pb::Evidence {
                operator: bytes_of(e.operator.as_bytes()),
                vote_a: bytes_of(&e.vote_a),
                signature_a: bytes_of(e.signature_a.as_bytes()),
                vote_b: bytes_of(&e.vote_b),
                signature_b: bytes_of(e.signature_b.as_bytes()),
            }),
            TxKind::Decline(d) => K::Decline(d.into()),
        };
        pb::Transaction {
            nonce: t.nonce,
            kind: Some(kind),
        }
    }
}

impl TryFrom<pb::Transaction> for Transaction {
    type Error = DecodeError;
    fn try_from(t: pb::Transaction) -> Result<Self, DecodeError> {
        use pb::transaction::Kind as K;
        let kind = match t.kind.ok_or(DecodeError::Missing("kind"))? {
            K::Transfer(x) => TxKind::Transfer {
                to: addr(&x.to, "to")?,
                amount: pb_to_amount(x.amount),
            },
            K::Stake(x) => TxKind::Stake {
                amount: pb_to_amount(x.amount),
                capacity: x.capacity,
            },
            K::Unstake(x) => TxKind::Unstake {
                amount: pb_to_amount(x.amount),
            },
            K::SubmitJob(x) => {
                TxKind::SubmitJob(x.spec.ok_or(DecodeError::Missing("spec"))?.try_into()?)
            }
            K::CancelJob(x) => TxKind::CancelJob {
                job_id: hash(&x.job_id, "job_id")?,
            },
            K::Bid(x) => {
                let bid = match x.kind.ok_or(DecodeError::Missing("bid kind"))? {
                    pb::bid::Kind::Dutch(d) => BidKind::Dutch {
                        min_price: pb_to_amount(d.min_price),
                    },
                    pb::bid::Kind::Commit(c) => BidKind::Commit {
                        commitment: hash(&c.commitment, "commitment")?,
                    },
                    pb::bid::Kind::Reveal(r) => BidKind::Reveal {
                        price: pb_to_amount(r.price),
                        salt: hash(&r.salt, "salt")?,
                    },
                };
                TxKind::Bid {
                    job_id: hash(&x.job_id, "job_id")?,
                    bid,
                }
            }
            K::Result(x) => TxKind::Result {
                job_id: hash(&x.job_id, "job_id")?,
                result_hash: hash(&x.result_hash, "result_hash")?,
                fuel_used: x.fuel_used,
                outcome: match x.outcome {
                    0 => Outcome::Success,
                    1 => Outcome::Trap,
                    2 => Outcome::FuelExhausted,
                    3 => Outcome::Memory,
                    v => {
                        return Err(DecodeError::Enum {
                            field: "outcome",
                            value: v,
                        })
                    }
                },
                output_size: x.output_size,
            },
            K::Attestation(a) => TxKind::Attestation(Attestation {
                kind: match a.kind {
                    0 => AttestationKind::Audit,
                    1 => AttestationKind::Liveness,
                    v => {
                        return Err(DecodeError::Enum {
                            field: "attestation kind",
                            value: v,
                        })
                    }
                },
                job_id: if a.job_id.is_empty() {
                    Hash::ZERO
                } else {
                    hash(&a.job_id, "job_id")?
                },
                result_hash: if a.result_hash.is_empty() {
                    Hash::ZERO
                } else {
                    hash(&a.result_hash, "result_hash")?
                },
                subject: if a.subject.is_empty() {
                    Address::default()
                } else {
                    addr(&a.subject, "subject")?
                },
                alive: a.alive,
            }),
            K::Evidence(e) => TxKind::Evidence(Evidence {
                operator: addr(&e.operator, "operator")?,
                vote_a: e.vote_a.to_vec(),
                signature_a: sig(&e.signature_a, "signature_a")?,
                vote_b: e.vote_b.to_vec(),
                signature_b: sig(&e.signature_b, "signature_b")?,
            }),
            K::Decline(d) => TxKind::Decline(d.try_into()?),
        };
        Ok(Transaction {
            nonce: t.nonce,
            kind,
        })
    }
}

impl Transaction {
    /// Deterministic protobuf encoding (the signed payload).
    pub fn encode(&self) -> Vec<u8> {
        pb::Transaction::from(self).encode_to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Transaction, DecodeError> {
        let p = pb::Transaction::decode(bytes).map_err(|e| DecodeError::Protobuf(e.to_string()))?;
        p.try_into()
    }

    /// Sign this transaction for the network `chain_id`.
    pub fn sign(&self, key: &Keypair, chain_id: &Hash) -> Envelope {
        Envelope::seal(key, Domain::Transaction, chain_id, self.encode())
    }
}

/// Encode a signed envelope as the `agora.v1.Envelope` bytes carried in blocks.
pub fn encode_envelope(env: &Envelope) -> Vec<u8> {
    pb::Envelope {
        signer: bytes_of(env.signer.as_bytes()),
        payload: Bytes::copy_from_slice(&env.payload),
        signature: bytes_of(env.signature.as_bytes()),
    }
    .encode_to_vec()
}

/// Decode `agora.v1.Envelope` bytes (no signature check).
pub fn decode_envelope(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    let p = pb::Envelope::decode(bytes).map_err(|e| DecodeError::Protobuf(e.to_string()))?;
    Ok(Envelope {
        signer: addr(&p.signer, "signer")?,
        payload: p.payload.to_vec(),
        signature: sig(&p.signature, "signature")?,
    })
}

// ---------------------------------------------------------------------------------------------
// off-chain helpers

/// The committed result of an execution:
/// `blake3_derive("agora/v1/result", outcome ‖ exit_code (i32 LE) ‖ fuel_used (u64 LE) ‖ stdout)`.
///
/// The executor produces the outcome, the exit code, the stdout bytes and the fuel used; every
/// replica and auditor hashes them with this function, so equal executions give equal hashes
/// and `agora job result` can check the downloaded stdout against the committed hash.
pub fn result_hash(outcome: Outcome, exit_code: i32, fuel_used: u64, stdout: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new_derive_key("agora/v1/result");
    h.update(&[outcome.code()]);
    h.update(&exit_code.to_le_bytes());
    h.update(&fuel_used.to_le_bytes());
    h.update(stdout);
    Hash(*h.finalize().as_bytes())
}

/// The sealed-bid commitment: `blake3_derive("agora/v1/sealed-bid", job ‖ bidder ‖ price (u128 LE) ‖ salt)`.
/// Binding the job and the bidder stops a rival from copying someone else's commitment.
pub fn sealed_commitment(job: &JobId, bidder: &Address, price: Amount, salt: &Hash) -> Hash {
    let mut h = blake3::Hasher::new_derive_key("agora/v1/sealed-bid");
    h.update(job.as_bytes());
    h.update(bidder.as_bytes());
    h.update(&price.0.to_le_bytes());
    h.update(salt.as_bytes());
    Hash(*h.finalize().as_bytes())
}

/// Builds signed transactions for one key on one network.
#[derive(Clone, Debug)]
pub struct TxBuilder {
    key: Keypair,
    chain_id: Hash,
}

impl TxBuilder {
    pub fn new(key: Keypair, chain_id: Hash) -> TxBuilder {
        TxBuilder { key, chain_id }
    }

    pub fn address(&self) -> Address {
        self.key.address()
    }

    /// Sign any transaction kind with an explicit nonce.
    pub fn sign(&self, nonce: u64, kind: TxKind) -> Envelope {
        Transaction { nonce, kind }.sign(&self.key, &self.chain_id)
    }

    /// Sign and encode as block-ready bytes.
    pub fn bytes(&self, nonce: u64, kind: TxKind) -> Vec<u8> {
        encode_envelope(&self.sign(nonce, kind))
    }

    pub fn transfer(&self, nonce: u64, to: Address, amount: Amount) -> Envelope {
        self.sign(nonce, TxKind::Transfer { to, amount })
    }

    pub fn stake(&self, nonce: u64, amount: Amount, capacity: u32) -> Envelope {
        self.sign(nonce, TxKind::Stake { amount, capacity })
    }

    pub fn unstake(&self, nonce: u64, amount: Amount) -> Envelope {
        self.sign(nonce, TxKind::Unstake { amount })
    }

    /// Submit a job. The job id is the returned envelope's hash.
    pub fn submit_job(&self, nonce: u64, spec: JobSpec) -> Envelope {
        self.sign(nonce, TxKind::SubmitJob(spec))
    }

    pub fn cancel_job(&self, nonce: u64, job_id: JobId) -> Envelope {
        self.sign(nonce, TxKind::CancelJob { job_id })
    }

    pub fn dutch_accept(&self, nonce: u64, job_id: JobId, min_price: Amount) -> Envelope {
        self.sign(
            nonce,
            TxKind::Bid {
                job_id,
                bid: BidKind::Dutch { min_price },
            },
        )
    }

    /// A sealed commitment for `price` with `salt` (keep both to reveal later).
    pub fn sealed_commit(&self, nonce: u64, job_id: JobId, price: Amount, salt: Hash) -> Envelope {
        let commitment = sealed_commitment(&job_id, &self.address(), price, &salt);
        self.sign(
            nonce,
            TxKind::Bid {
                job_id,
                bid: BidKind::Commit { commitment },
            },
        )
    }

    pub fn sealed_reveal(&self, nonce: u64, job_id: JobId, price: Amount, salt: Hash) -> Envelope {
        self.sign(
            nonce,
            TxKind::Bid {
                job_id,
                bid: BidKind::Reveal { price, salt },
            },
        )
    }

    pub fn result(
        &self,
        nonce: u64,
        job_id: JobId,
        result_hash: Hash,
        fuel_used: u64,
        outcome: Outcome,
        output_size: u64,
    ) -> Envelope {
        self.sign(
            nonce,
            TxKind::Result {
                job_id,
                result_hash,
                fuel_used,
                outcome,
                output_size,
            },
        )
    }

    pub fn audit(&self, nonce: u64, job_id: JobId, result_hash: Hash) -> Envelope {
        self.sign(
            nonce,
            TxKind::Attestation(Attestation {
                kind: AttestationKind::Audit,
                job_id,
                result_hash,
                subject: Address::default(),
                alive: true,
            }),
        )
    }

    pub fn liveness(&self, nonce: u64, subject: Address, alive: bool) -> Envelope {
        self.sign(
            nonce,
            TxKind::Attestation(Attestation {
                kind: AttestationKind::Liveness,
                job_id: Hash::ZERO,
                result_hash: Hash::ZERO,
                subject,
                alive,
            }),
        )
    }

    pub fn decline(
        &self,
        nonce: u64,
        job_id: JobId,
        reason: DeclineReason,
        detail: &str,
    ) -> Envelope {
        self.sign(
            nonce,
            TxKind::Decline(DeclineNotice {
                job_id,
                coprocessor: self.address(),
                reason,
                detail: detail.to_owned(),
            }),
        )
    }

    /// A gossip-only decline notice signed under [`Domain::Decline`] (no nonce, not a transaction).
    pub fn signed_decline(&self, job_id: JobId, reason: DeclineReason, detail: &str) -> Envelope {
        let notice = DeclineNotice {
            job_id,
            coprocessor: self.address(),
            reason,
            detail: detail.to_owned(),
        };
        notice.sign(&self.key, &self.chain_id)
    }
}

impl DeclineNotice {
    pub fn encode(&self) -> Vec<u8> {
        pb::DeclineNotice::from(self).encode_to_vec()
    }

    /// Sign for gossip under [`Domain::Decline`].
    pub fn sign(&self, key: &Keypair, chain_id: &Hash) -> Envelope {
        Envelope::seal(key, Domain::Decline, chain_id, self.encode())
    }

    /// Verify and decode a gossiped notice; the signer must be the named coprocessor.
    pub fn open(env: &Envelope, chain_id: &Hash) -> Result<DeclineNotice, DecodeError> {
        env.verify(Domain::Decline, chain_id)
            .map_err(|e| DecodeError::Protobuf(format!("signature: {e}")))?;
        let p = pb::DeclineNotice::decode(env.payload.as_slice())
            .map_err(|e| DecodeError::Protobuf(e.to_string()))?;
        let n: DeclineNotice = p.try_into()?;
        if n.coprocessor != env.signer {
            return Err(DecodeError::Protobuf(
                "signer is not the coprocessor".into(),
            ));
        }
        Ok(n)
    }
}
