//! What byzantine validators send instead of their honest messages, shared by both simulators:
//! a second proposal for the same height and round and a conflicting vote (the forgeries of
//! `agora_consensus::forge`, which a testnet's byzantine operators send too), replayed and
//! garbled bytes. Every forgery is signed with the validator's real key, so only the protocol's rules —
//! never a bad signature — can catch it.

use agora_consensus::{wire, Message};
use agora_crypto::Keypair;
use agora_types::Hash;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A byzantine validator's behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Byz {
    /// Two different proposals for one height and round, to two halves of the network.
    Equivocate,
    /// Each vote together with a conflicting one.
    DoubleVote,
    /// Sends nothing (votes and proposals withheld).
    Silent,
    /// Re-sends old messages along with new ones.
    Replay,
    /// Random bytes and bit-flipped copies along with the real message.
    Garbage,
}

pub const BEHAVIOURS: [Byz; 5] = [
    Byz::Equivocate,
    Byz::DoubleVote,
    Byz::Silent,
    Byz::Replay,
    Byz::Garbage,
];

pub use agora_consensus::forge::equivocating_proposal;

/// If `bytes` is a vote: a vote for the same height, round and step with another value, signed
/// by `key` ([`agora_consensus::forge::conflicting_vote`], salted from `rng`).
pub fn conflicting_vote(
    key: &Keypair,
    chain: &Hash,
    bytes: &[u8],
    rng: &mut ChaCha8Rng,
) -> Option<Vec<u8>> {
    agora_consensus::forge::conflicting_vote(key, chain, bytes, || rng.random::<u64>())
}

/// Random bytes, and `bytes` with one bit flipped.
pub fn garbage(bytes: &[u8], rng: &mut ChaCha8Rng) -> (Vec<u8>, Vec<u8>) {
    let len = rng.random_range(0..200);
    let junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    let mut flipped = bytes.to_vec();
    if !flipped.is_empty() {
        let k = rng.random_range(0..flipped.len());
        flipped[k] ^= 1 << rng.random_range(0..8);
    }
    (junk, flipped)
}

/// Where a byzantine validator sends one message: to everyone, or to one node.
pub enum Target {
    All,
    To(usize),
}

/// What a byzantine validator with behaviour `byz` sends, among `n` nodes, instead of its
/// honest broadcast `bytes`. `sent` is its memory of earlier messages (for replays).
pub fn sends(
    byz: Byz,
    key: &Keypair,
    chain: &Hash,
    bytes: Vec<u8>,
    n: usize,
    sent: &mut Vec<Vec<u8>>,
    rng: &mut ChaCha8Rng,
) -> Vec<(Target, Vec<u8>)> {
    match byz {
        // Votes and proposals withheld; transactions still go out.
        Byz::Silent => match wire::decode(&bytes) {
            Ok(Message::Tx(_)) => vec![(Target::All, bytes)],
            _ => Vec::new(),
        },
        Byz::Equivocate => match equivocating_proposal(key, chain, &bytes) {
            Some(alt) => (0..n)
                .map(|to| {
                    let b = if to % 2 == 0 { &bytes } else { &alt };
                    (Target::To(to), b.clone())
                })
                .collect(),
            None => vec![(Target::All, bytes)],
        },
        Byz::DoubleVote => match conflicting_vote(key, chain, &bytes, rng) {
            Some(alt) => {
                let mut out = Vec::with_capacity(2 * n);
                for to in 0..n {
                    let (first, second) = if rng.random_bool(0.5) {
                        (&bytes, &alt)
                    } else {
                        (&alt, &bytes)
                    };
                    out.push((Target::To(to), first.clone()));
                    out.push((Target::To(to), second.clone()));
                }
                out
            }
            None => vec![(Target::All, bytes)],
        },
        Byz::Replay => {
            sent.push(bytes.clone());
            if sent.len() > 200 {
                sent.remove(0);
            }
            let old = sent[rng.random_range(0..sent.len())].clone();
            vec![(Target::All, bytes), (Target::All, old)]
        }
        Byz::Garbage => {
            let (junk, flipped) = garbage(&bytes, rng);
            vec![
                (Target::All, junk),
                (Target::All, flipped),
                (Target::All, bytes),
            ]
        }
    }
}
