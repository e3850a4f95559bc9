//! The canonical binary encoding of what the market commits to in a block's events root, and
//! therefore what a proof proves (ADR 016). It is a written layout, not a serialisation
//! framework's choice, so renaming a field or an API name never changes a hash:
//!
//! | type | bytes |
//! |---|---|
//! | `u32`, `u64`, `Height`, `Timestamp` | big-endian, fixed width |
//! | `Amount` | `u128` big-endian (16 bytes) |
//! | `bool` | `0` or `1` |
//! | `Hash`, `Address`, `JobId` | the 32 bytes |
//! | `String` | length (`u32` BE) ‖ UTF-8, at most [`MAX_TEXT`] bytes |
//! | `Option<T>` | `0`, or `1` ‖ `T` |
//! | `Outcome`, `DeclineReason` | one tag byte |
//! | [`MarketEvent`] | one tag byte (pinned per variant below) ‖ its fields in order |
//! | [`EventRecord`] | height ‖ time ‖ event |
//!
//! Decoding accepts exactly the bytes encoding produces: an unknown tag, a `bool` or option tag
//! other than 0/1, invalid UTF-8 or trailing bytes are errors, so every value has one encoding.

use agora_types::{Address, Amount, Hash, Height, Timestamp};

use crate::model::{EventRecord, MarketEvent};
use crate::tx::{DeclineReason, Outcome};

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
        assert_eq!(
            events_root(&samples().into_iter().map(record).collect::<Vec<_>>()).to_hex(),
            "c29e8ceec53c64165057b7904b939ea325c0be7b7e95383037a1cbe766271381"
        );
    }
}
