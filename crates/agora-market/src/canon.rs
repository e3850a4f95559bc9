//! The canonical binary encoding of everything the market hashes: the state entries its app
//! hash chains over and the events of a block's events root, which a proof proves (ADR 016). It
//! is a written layout, not a serialisation framework's choice, so renaming a field or an API
//! name never changes a hash:
//!
//! | type | bytes |
//! |---|---|
//! | `u32`, `u64`, `Height`, `Timestamp` | big-endian, fixed width |
//! | `Amount` | `u128` big-endian (16 bytes) |
//! | `bool` | `0` or `1` |
//! | `Hash`, `Address`, `JobId` | the 32 bytes |
//! | `String` | length (`u32` BE) ‖ UTF-8, at most [`MAX_TEXT`] bytes |
//! | `Fixed` | its raw `i64` big-endian |
//! | `Option<T>` | `0`, or `1` ‖ `T` |
//! | `Vec<T>`, `VecDeque<T>` | count (`u32` BE) ‖ each element |
//! | `BTreeMap<K, V>` | count (`u32` BE) ‖ each key ‖ value, keys strictly increasing |
//! | fieldless enums (`Outcome`, `JobState`, …) | one pinned tag byte |
//! | enums with fields ([`MarketEvent`], `AuctionSpec`) | one pinned tag byte ‖ the fields in order |
//! | structs | their fields in the order listed in this module (every field: the macro destructures) |
//!
//! Decoding accepts exactly the bytes encoding produces: an unknown tag, a `bool` or option tag
//! other than 0/1, invalid UTF-8 or trailing bytes are errors, so every value has one encoding.

use std::collections::{BTreeMap, VecDeque};

use agora_types::{Address, Amount, Fixed, Hash, Height, Timestamp};

use crate::model::{
    Account, Assignment, AuctionRound, Audit, Coprocessor, DeclineRecord, EventRecord, Health, Job,
    JobState, MarketEvent, Operator, ResultRecord, SlotStatus,
};
use crate::tx::{AuctionSpec, DeclineReason, JobSpec, Outcome};

/// Longest text field (a reason or detail) a decoder accepts.
pub const MAX_TEXT: usize = 64 * 1024;

/// Bytes that are not a canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonError {
    #[error("the encoding ends early")]
    Short,
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
    #[error("unknown {what} tag {tag}")]
    Tag { what: &'static str, tag: u8 },
    #[error("text field is not UTF-8")]
    Utf8,
    #[error("text field of {0} bytes is over the limit")]
    TooLong(usize),
    #[error("a count of {0} is more than the bytes left")]
    Count(usize),
    #[error("map keys are not strictly increasing")]
    Unsorted,
}

/// Bytes being decoded.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CanonError> {
        if self.bytes.len() < n {
            return Err(CanonError::Short);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CanonError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
}

/// A type with a canonical encoding.
pub trait Canon: Sized {
    fn put(&self, out: &mut Vec<u8>);
    fn get(r: &mut Reader<'_>) -> Result<Self, CanonError>;

    /// The canonical bytes.
    fn to_canonical(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.put(&mut out);
        out
    }

    /// Decode exactly `bytes` (no trailing bytes).
    fn from_canonical(bytes: &[u8]) -> Result<Self, CanonError> {
        let mut r = Reader { bytes };
        let v = Self::get(&mut r)?;
        match r.bytes.len() {
            0 => Ok(v),
            n => Err(CanonError::Trailing(n)),
        }
    }
}

macro_rules! int {
    ($t:ty) => {
        impl Canon for $t {
            fn put(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
            fn get(r: &mut Reader<'_>) -> Result<Self, CanonError> {
                Ok(<$t>::from_be_bytes(r.array()?))
            }
        }
    };
}
int!(u32);
int!(u64);
int!(u128);

impl Canon for i64 {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CanonError> {
        Ok(i64::from_be_bytes(r.array()?))
    }
}

macro_rules! newtype {
    ($t:ident, $inner:ty) => {
        impl Canon for $t {
            fn put(&self, out: &mut Vec<u8>) {
                self.0.put(out)
            }
            fn get(r: &mut Reader<'_>) -> Result<Self, CanonError> {
                Ok($t(<$inner>::get(r)?))
            }
        }
    };
}
newtype!(Amount, u128);
newtype!(Height, u64);
newtype!(Timestamp, u64);
newtype!(Fixed, i64);

macro_rules! bytes32 {
    ($t:ident) => {
        impl Canon for $t {
            fn put(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.0);
            }
            fn get(r: &mut Reader<'_>) -> Result<Self, CanonError> {
                Ok($t(r.array()?))
            }
        }
    };
}
bytes32!(Hash);
bytes32!(Address);

impl Canon for bool {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CanonError> {
        match r.array::<1>()?[0] {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(CanonError::Tag { what: "bool", tag }),
        }
    }
}

impl Canon for String {
    fn put(&self, out: &mut Vec<u8>) {
        // Text is produced by the market itself and kept short; clip rather than write an
        // encoding the decoder would refuse.
        let mut end = self.len().min(MAX_TEXT);
        while !self.is_char_boundary(end) {
            end -= 1;
        }
        (end as u32).put(out);
        out.extend_from_slice(&self.as_bytes()[..end]);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CanonError> {
        let n = u32::get(r)? as usize;
        if n > MAX_TEXT {
            return Err(CanonError::TooLong(n));
        }
        String::from_utf8(r.take(n)?.to_vec()).map_err(|_| CanonError::Utf8)
    }
}

impl<T: Canon> Canon for Option<T> {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.put(out);
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CanonError> {
        match r.array::<1>()?[0] {
            0 => Ok(None),
            1 => Ok(Some(T::get(r)?)),
            tag => Err(CanonError::Tag {
                what: "option",
                tag,
            }),
        }
    }
}

/// A count that the bytes left can hold (every element takes at least one byte), so a forged
/// count cannot make a decoder allocate.
fn count(r: &mut Reader<'_>) -> Result<usize, CanonError> {
    let n = u32::get(r)? as usize;
    if n > r.bytes.len() {
        return Err(CanonError::Count(n));
    }
    Ok(n)
}

fn put_count(n: usize, out: &mut Vec<u8>) {
    u32::try_from(n)
        .expect("replicated collections are bounded far below 2^32")
        .put(out);
}

/// A sequence: its count, then each element.
fn put_seq<'a, T: Canon + 'a>(items: impl ExactSizeIterator<Item = &'a T>, out: &mut Vec<u8>) {
    put_count(items.len(), out);
    for v in items {
        v.put(out);
    }
}

impl<T: Canon> Canon for Vec<T> {
    fn put(&self, out: &mut Vec<u8>) {
        put_seq(self.iter(), out)
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CanonError> {
        let n = count(r)?;
        (0..n).map(|_| T::get(r)).collect()
    }
}

impl<T: Canon> Canon for VecDeque<T> {
    fn put(&self, out: &mut Vec<u8>) {
        put_seq(self.iter(), out)
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CanonError> {
        Ok(Vec::<T>::get(r)?.into())
    }
}

impl<K: Canon + Ord, V: Canon> Canon for BTreeMap<K, V> {
    fn put(&self, out: &mut Vec<u8>) {
        put_count(self.len(), out);
        for (k, v) in self {
            k.put(out);
            v.put(out);
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CanonError> {
        let n = count(r)?;
        let mut m = BTreeMap::new();
        for _ in 0..n {
            let k = K::get(r)?;
            if m.last_key_value().is_some_and(|(last, _)| *last >= k) {
                return Err(CanonError::Unsorted);
            }
            m.insert(k, V::get(r)?);
        }
        Ok(m)
    }
}

/// A struct as its fields in the order listed. The pattern names every field, so a field added
/// to the struct and not here is a compile error, never a field the hash silently skips.
macro_rules! fields {
    ($t:ident { $($f:ident),* $(,)? }) => {
        impl $crate::canon::Canon for $t {
            fn put(&self, out: &mut Vec<u8>) {
                let $t { $($f),* } = self;
                $($crate::canon::Canon::put($f, out);)*
            }
            fn get(
                r: &mut $crate::canon::Reader<'_>,
            ) -> Result<Self, $crate::canon::CanonError> {
                Ok($t { $($f: $crate::canon::Canon::get(r)?),* })
            }
        }
    };
}
pub(crate) use fields;

/// A fieldless enum as one pinned tag byte.
macro_rules! tags {
    ($t:ident, $what:literal, { $($tag:literal => $v:ident),* $(,)? }) => {
        impl Canon for $t {
            fn put(&self, out: &mut Vec<u8>) {
                out.push(match self { $($t::$v => $tag),* });
            }
            fn get(r: &mut Reader<'_>) -> Result<Self, CanonError> {
                match r.array::<1>()?[0] {
                    $($tag => Ok($t::$v),)*
                    tag => Err(CanonError::Tag { what: $what, tag }),
                }
            }
        }
    };
}
tags!(Outcome, "outcome", { 0 => Success, 1 => Trap, 2 => FuelExhausted, 3 => Memory });
tags!(JobState, "job state", {
    0 => Submitted, 1 => Auction, 2 => Awarded, 3 => Executing, 4 => Verifying, 5 => Settled,
    6 => Refunded, 7 => Failed,
});
tags!(SlotStatus, "slot status", {
    0 => Executing, 1 => Committed, 2 => TimedOut, 3 => Paid, 4 => Slashed, 5 => Released,
});
tags!(DeclineReason, "decline reason", {
    0 => PriceBelowReserve, 1 => FuelOverLimit, 2 => AtCapacity, 3 => ReputationBelowMinimum,
    4 => ModuleTooLarge, 5 => Other,
});

/// An enum of struct variants: a pinned tag byte, then the fields in the order listed.
macro_rules! variants {
    ($t:ident, $what:literal, { $($tag:literal => $v:ident { $($f:ident),* $(,)? }),* $(,)? }) => {
        impl Canon for $t {
            fn put(&self, out: &mut Vec<u8>) {
                match self {
                    $($t::$v { $($f),* } => {
                        out.push($tag);
                        $($f.put(out);)*
                    })*
                }
            }
            fn get(r: &mut Reader<'_>) -> Result<Self, CanonError> {
                match r.array::<1>()?[0] {
                    $($tag => Ok($t::$v { $($f: Canon::get(r)?),* }),)*
                    tag => Err(CanonError::Tag { what: $what, tag }),
                }
            }
        }
    };
}

// Tags are pinned here, not by declaration order: a new event takes the next free tag, and a
// removed one's tag is never reused.
variants!(MarketEvent, "event", {
    1 => JobSubmitted { job, client, escrow },
    2 => AuctionOpened { job, round, slots },
    3 => BidAccepted { job, coprocessor, kind },
    4 => Awarded { job, coprocessor, price, deadline },
    5 => ExtraReplica { job, replicas, escrow_added },
    6 => AuctionUnfilled { job, round, missing },
    7 => BondForfeited { job, coprocessor, amount },
    8 => ResultCommitted { job, coprocessor, result_hash },
    9 => TimedOut { job, coprocessor, slashed },
    10 => AuditSelected { job, auditor },
    11 => AuditMismatch { job, auditor, tiebreaker },
    12 => Slashed { coprocessor, amount, to_client, burned, reason },
    13 => OperatorSlashed { operator, amount, reason },
    14 => Paid { job, coprocessor, amount, fee },
    15 => Settled { job, result_hash, refund, outcome, fuel_used },
    16 => Refunded { job, amount, reason },
    17 => Failed { job, reason, refund },
    18 => Cancelled { job },
    19 => Declined { job, coprocessor, reason },
    20 => ReputationUpdated { coprocessor, outcome, reputation_bps },
    21 => CoprocessorStaked { coprocessor, stake, capacity },
    22 => CoprocessorDeactivated { coprocessor, stake },
    23 => CoprocessorActivated { coprocessor, stake },
    24 => CoprocessorEjected { coprocessor, strikes },
    25 => UnbondingStarted { coprocessor, amount, release_at },
    26 => UnbondingReleased { coprocessor, amount },
    27 => StallDetected { gap_ms, commit_power_bps },
    28 => StallRecovered { frozen_ms },
    29 => LivenessReported { operator, coprocessor, alive },
    30 => InternalError { detail },
});

variants!(AuctionSpec, "auction", {
    1 => Dutch { start_price, duration_ms },
    2 => Sealed { commit_ms, reveal_ms },
});

// State entries, the app hash's leaves.
fields!(Account { balance, nonce });
fields!(Operator { stake, jailed });
fields!(Coprocessor {
    stake,
    locked,
    unbonding,
    capacity,
    load,
    logit,
    active,
    completed,
    failed,
    earned,
    slashed,
    strikes,
    clean_streak,
    ejected,
    recent_load,
    recent_at,
});
fields!(ResultRecord {
    result_hash,
    fuel_used,
    outcome,
    output_size,
    height
});
fields!(Assignment {
    price,
    collateral,
    round,
    deadline,
    status,
    result
});
fields!(AuctionRound {
    round,
    opened_at,
    slots,
    dutch,
    commits,
    reveals,
    reveal_opened_at,
    stepped_at
});
fields!(Audit {
    auditor,
    attested,
    tiebreaker,
    tiebreaker_attested,
    deadline
});
fields!(DeclineRecord {
    coprocessor,
    reason,
    detail,
    height
});
fields!(JobSpec {
    module_hash,
    input_hash,
    module_size,
    input_size,
    args,
    fuel_limit,
    memory_limit,
    replicas,
    audit_bps,
    auction,
    max_price,
    deadline_ms,
    min_reputation_bps,
});
fields!(Job {
    id,
    client,
    spec,
    state,
    submitted_height,
    submitted_at,
    escrow,
    bonds,
    auction,
    assignments,
    reauctions,
    extra_replicas,
    audit,
    result_hash,
    outcome,
    failure,
    closed_at,
    declines,
    events,
});
fields!(Health {
    stalled,
    healthy_run,
    frozen_ms,
    stalls
});

impl Canon for EventRecord {
    fn put(&self, out: &mut Vec<u8>) {
        self.height.put(out);
        self.time.put(out);
        self.event.put(out);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CanonError> {
        Ok(EventRecord {
            height: Height::get(r)?,
            time: Timestamp::get(r)?,
            event: MarketEvent::get(r)?,
        })
    }
}

/// The events root of a block: the Merkle root ([`agora_crypto::merkle`]) of its events'
/// canonical encodings, in emission order.
pub fn events_root(events: &[EventRecord]) -> Hash {
    let leaves: Vec<Vec<u8>> = events.iter().map(Canon::to_canonical).collect();
    agora_crypto::merkle::root(&leaves)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u8) -> Address {
        Address([n; 32])
    }
    fn h(n: u8) -> Hash {
        Hash([n; 32])
    }

    /// One of every event, with distinct field values.
    fn samples() -> Vec<MarketEvent> {
        use MarketEvent::*;
        let (j, c, x) = (h(1), a(2), Amount(3));
        vec![
            JobSubmitted {
                job: j,
                client: c,
                escrow: x,
            },
            AuctionOpened {
                job: j,
                round: 4,
                slots: 5,
            },
            BidAccepted {
                job: j,
                coprocessor: c,
                kind: "dutch".into(),
            },
            Awarded {
                job: j,
                coprocessor: c,
                price: x,
                deadline: 6,
            },
            ExtraReplica {
                job: j,
                replicas: 7,
                escrow_added: x,
            },
            AuctionUnfilled {
                job: j,
                round: 8,
                missing: 9,
            },
            BondForfeited {
                job: j,
                coprocessor: c,
                amount: x,
            },
            ResultCommitted {
                job: j,
                coprocessor: c,
                result_hash: h(10),
            },
            TimedOut {
                job: j,
                coprocessor: c,
                slashed: x,
            },
            AuditSelected {
                job: j,
                auditor: a(11),
            },
            AuditMismatch {
                job: j,
                auditor: a(11),
                tiebreaker: Some(a(12)),
            },
            AuditMismatch {
                job: j,
                auditor: a(11),
                tiebreaker: None,
            },
            Slashed {
                coprocessor: c,
                amount: x,
                to_client: Amount(1),
                burned: Amount(2),
                reason: "wrong result".into(),
            },
            OperatorSlashed {
                operator: a(13),
                amount: x,
                reason: "double vote".into(),
            },
            Paid {
                job: j,
                coprocessor: c,
                amount: Amount(u128::MAX),
                fee: Amount(14),
            },
            Settled {
                job: j,
                result_hash: h(15),
                refund: x,
                outcome: Outcome::Trap,
                fuel_used: 16,
            },
            Refunded {
                job: j,
                amount: x,
                reason: "no bids".into(),
            },
            Failed {
                job: j,
                reason: "ü".into(),
                refund: x,
            },
            Cancelled { job: j },
            Declined {
                job: j,
                coprocessor: c,
                reason: DeclineReason::AtCapacity,
            },
            ReputationUpdated {
                coprocessor: c,
                outcome: true,
                reputation_bps: 17,
            },
            CoprocessorStaked {
                coprocessor: c,
                stake: x,
                capacity: 18,
            },
            CoprocessorDeactivated {
                coprocessor: c,
                stake: x,
            },
            CoprocessorActivated {
                coprocessor: c,
                stake: x,
            },
            CoprocessorEjected {
                coprocessor: c,
                strikes: 19,
            },
            UnbondingStarted {
                coprocessor: c,
                amount: x,
                release_at: Timestamp(20),
            },
            UnbondingReleased {
                coprocessor: c,
                amount: x,
            },
            StallDetected {
                gap_ms: 21,
                commit_power_bps: 22,
            },
            StallRecovered { frozen_ms: 23 },
            LivenessReported {
                operator: a(24),
                coprocessor: c,
                alive: false,
            },
            InternalError {
                detail: String::new(),
            },
        ]
    }

    fn record(event: MarketEvent) -> EventRecord {
        EventRecord {
            height: Height(7),
            time: Timestamp(1_700_000_000_000),
            event,
        }
    }

    #[test]
    fn every_event_round_trips_and_has_its_own_tag() {
        let mut tags = Vec::new();
        for e in samples() {
            let r = record(e);
            let bytes = r.to_canonical();
            assert_eq!(EventRecord::from_canonical(&bytes), Ok(r.clone()));
            tags.push((bytes[16], std::mem::discriminant(&r.event)));
            // Every strict prefix is refused, and so is a trailing byte.
            for n in 0..bytes.len() {
                assert!(EventRecord::from_canonical(&bytes[..n]).is_err());
            }
            let mut long = bytes.clone();
            long.push(0);
            assert_eq!(
                EventRecord::from_canonical(&long),
                Err(CanonError::Trailing(1))
            );
        }
        for x in &tags {
            for y in &tags {
                assert_eq!(x.0 == y.0, x.1 == y.1, "one tag per variant");
            }
        }
    }

    #[test]
    fn decoding_accepts_only_canonical_bytes() {
        let bytes = record(MarketEvent::LivenessReported {
            operator: a(1),
            coprocessor: a(2),
            alive: true,
        })
        .to_canonical();
        let mut bad_bool = bytes.clone();
        *bad_bool.last_mut().unwrap() = 2;
        assert_eq!(
            EventRecord::from_canonical(&bad_bool),
            Err(CanonError::Tag {
                what: "bool",
                tag: 2
            })
        );
        let mut bad_tag = bytes.clone();
        bad_tag[16] = 0;
        assert_eq!(
            EventRecord::from_canonical(&bad_tag),
            Err(CanonError::Tag {
                what: "event",
                tag: 0
            })
        );
        let mut huge = record(MarketEvent::Cancelled { job: h(0) }).to_canonical();
        huge[16] = 16; // Refunded: job, amount, then a text length
        huge.extend_from_slice(&[0; 16]);
        huge.extend_from_slice(&(MAX_TEXT as u32 + 1).to_be_bytes());
        assert_eq!(
            EventRecord::from_canonical(&huge),
            Err(CanonError::TooLong(MAX_TEXT + 1))
        );
    }

    fn sample_job() -> Job {
        let spec = JobSpec {
            module_hash: h(1),
            input_hash: h(2),
            module_size: 3,
            input_size: 4,
            args: vec!["a".into(), "bc".into()],
            fuel_limit: 5,
            memory_limit: 6,
            replicas: 2,
            audit_bps: 7,
            auction: AuctionSpec::Sealed {
                commit_ms: 8,
                reveal_ms: 9,
            },
            max_price: Amount(10),
            deadline_ms: 11,
            min_reputation_bps: 12,
        };
        let slot = Assignment {
            price: Amount(13),
            collateral: Amount(14),
            round: 0,
            deadline: 15,
            status: SlotStatus::Committed,
            result: Some(ResultRecord {
                result_hash: h(16),
                fuel_used: 17,
                outcome: Outcome::Success,
                output_size: 18,
                height: Height(19),
            }),
        };
        Job {
            id: h(20),
            client: a(21),
            spec,
            state: JobState::Verifying,
            submitted_height: Height(22),
            submitted_at: Timestamp(23),
            escrow: Amount(24),
            bonds: [(a(25), Amount(26))].into(),
            auction: AuctionRound {
                round: 0,
                opened_at: 27,
                slots: 2,
                dutch: BTreeMap::new(),
                commits: [(a(28), h(29)), (a(30), h(31))].into(),
                reveals: [(a(28), Amount(32))].into(),
                reveal_opened_at: Some(33),
                stepped_at: None,
            },
            assignments: [(a(28), slot)].into(),
            reauctions: 1,
            extra_replicas: 0,
            audit: Some(Audit {
                auditor: a(34),
                attested: None,
                tiebreaker: None,
                tiebreaker_attested: None,
                deadline: 35,
            }),
            result_hash: None,
            outcome: None,
            failure: Some("x".into()),
            closed_at: None,
            declines: vec![DeclineRecord {
                coprocessor: a(36),
                reason: DeclineReason::PriceBelowReserve,
                detail: "too cheap".into(),
                height: Height(37),
            }],
            events: vec![record(MarketEvent::Cancelled { job: h(20) })],
        }
    }

    #[test]
    fn state_entries_round_trip_and_refuse_unsorted_maps() {
        let job = sample_job();
        let bytes = job.to_canonical();
        assert_eq!(Job::from_canonical(&bytes), Ok(job.clone()));
        let c = Coprocessor {
            stake: Amount(1),
            locked: Amount(2),
            unbonding: Amount(3),
            capacity: 4,
            load: 5,
            logit: Fixed(-6),
            active: true,
            completed: 7,
            failed: 8,
            earned: Amount(9),
            slashed: Amount(10),
            strikes: 11,
            clean_streak: 12,
            ejected: false,
            recent_load: Fixed(13),
            recent_at: 14,
        };
        assert_eq!(Coprocessor::from_canonical(&c.to_canonical()), Ok(c));
        // Two keys swapped in a map's encoding: refused, so a map has one encoding.
        let m: BTreeMap<Address, Amount> = [(a(1), Amount(1)), (a(2), Amount(2))].into();
        let mut b = m.to_canonical();
        let (first, second) = (4..52, 52..100);
        let x = b[first.clone()].to_vec();
        let y = b[second.clone()].to_vec();
        b[first.start..first.start + 48].copy_from_slice(&y);
        b[second.start..second.start + 48].copy_from_slice(&x);
        assert_eq!(
            BTreeMap::<Address, Amount>::from_canonical(&b),
            Err(CanonError::Unsorted)
        );
        // A count beyond the bytes left is refused before anything is allocated.
        assert_eq!(
            Vec::<u64>::from_canonical(&u32::MAX.to_be_bytes()),
            Err(CanonError::Count(u32::MAX as usize))
        );
    }

    /// The layout is the proof format: these bytes may change only with a new format version.
    #[test]
    fn encodings_are_pinned() {
        let settled = record(MarketEvent::Settled {
            job: h(0xab),
            result_hash: h(0xcd),
            refund: Amount(258),
            outcome: Outcome::Success,
            fuel_used: 1_000,
        });
        let hex = hex::encode(settled.to_canonical());
        assert_eq!(
            hex,
            [
                "0000000000000007", // height
                "0000018bcfe56800", // time
                "0f",               // Settled
                &"ab".repeat(32),
                &"cd".repeat(32),
                "00000000000000000000000000000102", // refund
                "00",                               // success
                "00000000000003e8",                 // fuel
            ]
            .concat()
        );
        // Every sample, so any variant's layout is pinned.
        let all: Vec<Vec<u8>> = samples()
            .into_iter()
            .map(|e| record(e).to_canonical())
            .collect();
        assert_eq!(
            Hash::of(&all.concat()).to_hex(),
            "5c076e569d891f1ef13b9ab9e719e12795889f33755ac8edf0a612169ca18e38"
        );
        // State entries, which the app hash chains over.
        assert_eq!(
            hex::encode(
                Account {
                    balance: Amount(5),
                    nonce: 9
                }
                .to_canonical()
            ),
            "000000000000000000000000000000050000000000000009"
        );
        assert_eq!(
            Hash::of(&sample_job().to_canonical()).to_hex(),
            "9a9be0281c955301b569f647cb2d377675dd52f1b72eccd45c20781865ca63b2"
        );
        assert_eq!(
            events_root(&samples().into_iter().map(record).collect::<Vec<_>>()).to_hex(),
            "c29e8ceec53c64165057b7904b939ea325c0be7b7e95383037a1cbe766271381"
        );
    }
}
