//! Admission (design §3): what a mempool takes, checked against the last committed state with
//! `&self` only, so a node admits transactions under a read lock and admission can never
//! change the state. Also the decoding of a block's transactions, which shares the size limit.

use agora_crypto::{Domain, Envelope};
use agora_types::Address;

use super::{Decoded, Market};
use crate::model::Rejection;
use crate::tx::{decode_envelope, Transaction};

/// Nonces this far ahead of the committed one pass `check_tx` (for mempool pipelining).
const NONCE_WINDOW: u64 = 64;

impl Market {
    /// Stateless and stateful pre-check for the mempool, against the last committed state.
    /// Nonces up to a small window ahead are accepted (the state check then covers only the
    /// signature and shape). The state check is the very one a block runs before it applies
    /// the transaction, so what it admits would apply on this state.
    pub fn check_tx(&self, env: &Envelope) -> Result<(), Rejection> {
        let tx = self.verify_envelope(env)?;
        if self.nonce_in_window(&env.signer, tx.nonce)? {
            return Ok(());
        }
        self.check(env.signer, env.hash(), &tx.kind).map(|_| ())
    }

    /// [`Market::check_tx`] on encoded envelope bytes.
    pub fn check_tx_bytes(&self, bytes: &[u8]) -> Result<(), Rejection> {
        self.check_size(bytes.len())?;
        let env = decode_envelope(bytes).map_err(|e| Rejection::Malformed(e.to_string()))?;
        self.check_tx(&env)
    }

    /// Admission of a transaction relayed by a peer: size, decoding, signature and the nonce
    /// window, but not the handler's checks against the current state. The node it came from
    /// ran those on its own, possibly slightly older, state; and a transaction refused when its
    /// block is applied still uses its nonce (ADR 006), so admitting it can never hold back its
    /// signer's later transactions, while refusing it here would.
    pub fn check_relayed_tx_bytes(&self, bytes: &[u8]) -> Result<(), Rejection> {
        self.check_size(bytes.len())?;
        let env = decode_envelope(bytes).map_err(|e| Rejection::Malformed(e.to_string()))?;
        let tx = self.verify_envelope(&env)?;
        self.nonce_in_window(&env.signer, tx.nonce).map(|_| ())
    }

    /// Whether a transaction admitted to a mempool earlier can still be included: it decodes
    /// and its nonce is not used yet (and within the window). Its signature was checked at
    /// admission and the bytes are the same; a handler that would now refuse it only makes it
    /// a rejected transaction that uses its nonce, so it stays.
    pub fn recheck_tx_bytes(&self, bytes: &[u8]) -> bool {
        let Ok(env) = decode_envelope(bytes) else {
            return false;
        };
        let Ok(tx) = Transaction::decode(&env.payload) else {
            return false;
        };
        self.nonce_in_window(&env.signer, tx.nonce).is_ok()
    }

    /// A nonce the mempool accepts: unused and less than [`NONCE_WINDOW`] ahead. `Ok(true)`
    /// when it is ahead of the next one (only signature and shape can be checked then).
    fn nonce_in_window(&self, signer: &Address, nonce: u64) -> Result<bool, Rejection> {
        let expected = self.nonce(signer);
        if nonce < expected || nonce >= expected.saturating_add(NONCE_WINDOW) {
            return Err(Rejection::BadNonce {
                expected,
                got: nonce,
            });
        }
        Ok(nonce > expected)
    }

    pub(super) fn check_size(&self, len: usize) -> Result<(), Rejection> {
        let limit = self.s.params.max_tx_bytes;
        if len as u64 > limit {
            return Err(Rejection::Oversized {
                size: len as u64,
                limit,
            });
        }
        Ok(())
    }

    fn verify_envelope(&self, env: &Envelope) -> Result<Transaction, Rejection> {
        self.check_size(env.payload.len())?;
        env.verify(Domain::Transaction, &self.genesis_hash)
            .map_err(|_| Rejection::BadSignature)?;
        Transaction::decode(&env.payload).map_err(|e| Rejection::Malformed(e.to_string()))
    }

    /// Decode one block transaction without checking its signature (a block verifies its
    /// signatures in one batch): the envelope and transaction, or why not, with the envelope
    /// when it decoded.
    pub(super) fn decode_block_tx(&self, bytes: &[u8]) -> Decoded {
        let env = self
            .check_size(bytes.len())
            .and_then(|_| decode_envelope(bytes).map_err(|e| Rejection::Malformed(e.to_string())));
        let env = match env {
            Ok(env) => env,
            Err(e) => return Decoded::Bad(None, e),
        };
        match self.check_size(env.payload.len()).and_then(|_| {
            Transaction::decode(&env.payload).map_err(|e| Rejection::Malformed(e.to_string()))
        }) {
            Ok(tx) => Decoded::Tx(env, tx),
            Err(e) => Decoded::Bad(Some(env), e),
        }
    }
}
