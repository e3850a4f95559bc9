//! Which mempool transactions go into a block, and in what order: each signer's in nonce order
//! without gaps. Every proposer runs this; validators accept any order (a transaction that
//! fails when applied is recorded as rejected), so it decides liveness, never safety.

use std::collections::BTreeMap;

use agora_types::Address;

use crate::tx::{decode_envelope, Transaction};

/// The block's transactions, chosen from the mempool `candidates` (in arrival order): each
/// signer's transactions in nonce order, starting at its next nonce and without gaps (gossip may
/// deliver one sender's transactions out of order, and a transaction applied before its
/// predecessor would be rejected), within `max_bytes`. Signers appear in the order of their first
/// arrival. Signatures are not checked here: the replica re-checks its whole mempool after every
/// commit, and a transaction that still fails is recorded as rejected by `apply_block`, never
/// half-applied. Undecodable candidates are left out.
pub fn order_by_nonce(
    candidates: &[Vec<u8>],
    max_bytes: usize,
    next_nonce: impl Fn(&Address) -> u64,
) -> Vec<Vec<u8>> {
    let mut first_seen: Vec<Address> = Vec::new();
    let mut by_signer: BTreeMap<Address, BTreeMap<u64, &Vec<u8>>> = BTreeMap::new();
    for bytes in candidates {
        let Ok(env) = decode_envelope(bytes) else {
            continue;
        };
        let Ok(tx) = Transaction::decode(&env.payload) else {
            continue;
        };
        let queue = by_signer.entry(env.signer).or_insert_with(|| {
            first_seen.push(env.signer);
            BTreeMap::new()
        });
        // Two transactions with one nonce: the first to arrive wins.
        queue.entry(tx.nonce).or_insert(bytes);
    }
    let mut out = Vec::new();
    let mut used = 0usize;
    for signer in first_seen {
        let mut expected = next_nonce(&signer);
        for (nonce, bytes) in &by_signer[&signer] {
            if *nonce != expected {
                if *nonce > expected {
                    break;
                }
                continue;
            }
            if used + bytes.len() > max_bytes {
                return out;
            }
            used += bytes.len();
            out.push((*bytes).clone());
            expected += 1;
        }
    }
    out
}

/// A transaction's `(signer, nonce)`, the mempool slot it holds (ADR 008): read straight from
/// the bytes, with no signature check (admission made it) and no market lock.
pub fn tx_slot(bytes: &[u8]) -> Option<(Address, u64)> {
    let env = decode_envelope(bytes).ok()?;
    let tx = Transaction::decode(&env.payload).ok()?;
    Some((env.signer, tx.nonce))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_types::Hash;

    #[test]
    fn a_transactions_slot_is_its_signer_and_nonce() {
        let a = crate::TxBuilder::new(agora_crypto::Keypair::for_test(1), Hash([9; 32]));
        let to = agora_crypto::Keypair::for_test(3).address();
        let tx = crate::encode_envelope(&a.transfer(41, to, agora_types::Amount(1)));
        assert_eq!(tx_slot(&tx), Some((a.address(), 41)));
        assert_eq!(tx_slot(b"junk"), None);
    }

    #[test]
    fn blocks_take_each_signers_transactions_in_nonce_order_without_gaps() {
        let chain = Hash([9; 32]);
        let a = crate::TxBuilder::new(agora_crypto::Keypair::for_test(1), chain);
        let b = crate::TxBuilder::new(agora_crypto::Keypair::for_test(2), chain);
        let to = agora_crypto::Keypair::for_test(3).address();
        let tx = |t: &crate::TxBuilder, n: u64| {
            crate::encode_envelope(&t.transfer(n, to, agora_types::Amount(1)))
        };
        // a's next nonce is 5, b's is 0; a's 7 has a gap before it, a's 4 is stale.
        let candidates = vec![
            tx(&a, 6),
            tx(&b, 1),
            tx(&a, 5),
            tx(&a, 4),
            tx(&b, 0),
            tx(&a, 8),
            b"junk".to_vec(),
        ];
        let next = |x: &agora_types::Address| if *x == a.address() { 5 } else { 0 };
        let out = order_by_nonce(&candidates, usize::MAX, next);
        assert_eq!(out, vec![tx(&a, 5), tx(&a, 6), tx(&b, 0), tx(&b, 1)]);
        // The byte budget cuts the list, never reorders it.
        let one = tx(&a, 5).len();
        let out = order_by_nonce(&candidates, one * 3, next);
        assert_eq!(out, vec![tx(&a, 5), tx(&a, 6), tx(&b, 0)]);
        assert!(order_by_nonce(&candidates, one - 1, next).is_empty());
    }
}
