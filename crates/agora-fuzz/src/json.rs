//! JSON documents and text identifiers at the API and configuration edges.
//!
//! The node's HTTP API takes no JSON request bodies: `POST /v1/tx` carries an encoded envelope
//! (the [`crate::envelope`] target) and `POST /v1/blobs` raw bytes. What it parses from text are
//! the hex identifiers in its paths (`Hash`/`Address` `FromStr`). The JSON documents it serves
//! are defined once in `agora-client` and parsed by the CLI from whatever answers at the API
//! address; the genesis document is parsed and validated by every node at start.

use std::fmt::Debug;
use std::str::FromStr;

use agora_client::api::{AccountNonces, ErrorBody, Status, TxAccepted};
use agora_client::TestnetFile;
use agora_market::{Genesis, Market};
use agora_types::{Address, Fixed, Hash};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Parse as `T`; a parsed value serialises to JSON that parses back to the same value, and that
/// JSON is a fixpoint.
fn round_trip<T: DeserializeOwned + Serialize + PartialEq + Debug>(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let text = serde_json::to_vec(&v).expect("a parsed document serialises");
    let again: T = serde_json::from_slice(&text).expect("a serialised document parses");
    assert_eq!(again, v);
    assert_eq!(serde_json::to_vec(&again).expect("serialises"), text);
}

/// An identifier from text: accepted only as 64 hex digits (around optional whitespace), and
/// printed back as the same digits in lower case.
fn identifier<T: FromStr + ToString>(s: &str) {
    let Ok(v) = s.parse::<T>() else {
        return;
    };
    let t = s.trim();
    assert_eq!(t.len(), 64, "accepted {s:?}");
    assert!(t.bytes().all(|b| b.is_ascii_hexdigit()), "accepted {s:?}");
    assert_eq!(v.to_string(), t.to_ascii_lowercase());
}

/// A decimal as `(integer digits, fraction digits)`, without leading or trailing zeros.
fn decimal(int: &str, frac: &str) -> (String, String) {
    let int = int.trim_start_matches('0');
    (int.to_string(), frac.trim_end_matches('0').to_string())
}

/// Compare two non-negative decimals exactly.
fn cmp_decimal(a: &(String, String), b: &(String, String)) -> std::cmp::Ordering {
    let width = a.1.len().max(b.1.len());
    let pad = |f: &str| format!("{f:0<width$}");
    (a.0.len(), &a.0, pad(&a.1)).cmp(&(b.0.len(), &b.0, pad(&b.1)))
}

/// `k / 2³³` as an exact decimal.
fn q33(k: u128) -> (String, String) {
    let frac = (k & ((1 << 33) - 1)) * 5u128.pow(33);
    decimal(&(k >> 33).to_string(), &format!("{frac:033}"))
}

/// `Fixed` from text (genesis parameters): an accepted decimal is the nearest Q32 value of the
/// input (ties away from zero), checked against exact decimal midpoints; a well-formed decimal
/// well inside the range is accepted; the value prints back as text that parses to itself.
fn fixed(s: &str) {
    let parsed = s.parse::<Fixed>();
    let t = s.trim();
    let body = t
        .strip_prefix('-')
        .unwrap_or_else(|| t.strip_prefix('+').unwrap_or(t));
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    let well_formed = !(int.is_empty() && frac.is_empty()) && digits(int) && digits(frac);
    let Ok(v) = parsed else {
        let small = int.trim_start_matches('0').len() < 10;
        assert!(!(well_formed && small), "refused {s:?}");
        return;
    };
    assert!(well_formed, "accepted {s:?}");
    let d = decimal(int, frac);
    let mag = u128::from(v.0.unsigned_abs());
    // Round half up on the magnitude: mag - ½ <= |d| < mag + ½ (in units of 2⁻³²).
    if mag > 0 {
        assert!(
            cmp_decimal(&q33(2 * mag - 1), &d).is_le(),
            "{s:?} parsed to {v}, more than half a unit above it"
        );
    }
    assert!(
        cmp_decimal(&d, &q33(2 * mag + 1)).is_lt(),
        "{s:?} parsed to {v}, half a unit or more below it"
    );
    assert_eq!(v.to_string().parse::<Fixed>(), Ok(v));
}

/// The first byte picks the document, the rest is its text.
///
/// Asserts: every API document (`Status`, `ErrorBody`, `AccountNonces`, `TxAccepted`) and
/// `testnet.json` round-trips through JSON; an accepted `Hash`/`Address` is 64 hex digits and
/// prints back as them; a `Fixed` parsed from text is the nearest Q32 value of that decimal; a genesis that `Genesis::from_json` accepts opens a market, keeps its
/// chain id through a JSON round trip, and its supply is the sum of its balances and stakes.
pub fn api_json(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 8 {
        0 => round_trip::<Status>(rest),
        1 => round_trip::<ErrorBody>(rest),
        2 => round_trip::<AccountNonces>(rest),
        3 => round_trip::<TxAccepted>(rest),
        4 => round_trip::<TestnetFile>(rest),
        5 => {
            if let Ok(s) = std::str::from_utf8(rest) {
                identifier::<Hash>(s);
                identifier::<Address>(s);
            }
        }
        6 => {
            if let Ok(s) = std::str::from_utf8(rest) {
                fixed(s);
            }
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let Ok(g) = Genesis::from_json(text) else {
                return;
            };
            let m = Market::new(&g).expect("a validated genesis opens a market");
            assert_eq!(m.chain_id(), g.hash());
            let again = Genesis::from_json(&serde_json::to_string(&g).expect("serialises"))
                .expect("a serialised genesis parses");
            assert_eq!(again, g);
            assert_eq!(again.hash(), g.hash(), "chain id changed over a round trip");
            let sum = g
                .accounts
                .iter()
                .map(|a| a.balance.0)
                .chain(g.operators.iter().map(|o| o.stake.0))
                .try_fold(0u128, u128::checked_add);
            assert_eq!(sum, Some(g.supply().expect("supply of a valid genesis").0));
        }
    }
}
