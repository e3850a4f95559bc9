//! One key, one identity: the libp2p key is the node's ed25519 account key.

use agora_types::Address;
use libp2p::identity::{self, ed25519, PublicKey};
use libp2p::PeerId;

/// The multihash code of the "identity" hash, which libp2p uses to inline small public keys
/// (every ed25519 key) into the peer id.
const IDENTITY_MULTIHASH: u64 = 0x00;

/// The libp2p keypair for a node's 32-byte ed25519 seed (`agora_crypto::Keypair::seed()`).
pub fn libp2p_keypair(seed: [u8; 32]) -> Result<identity::Keypair, identity::DecodingError> {
    let mut bytes = seed;
    identity::Keypair::ed25519_from_bytes(&mut bytes)
}

/// The peer id of an account. `None` if the address is not a valid ed25519 point.
pub fn peer_id_for(address: &Address) -> Option<PeerId> {
    let pk = ed25519::PublicKey::try_from_bytes(address.as_bytes()).ok()?;
    Some(PublicKey::from(pk).to_peer_id())
}

/// The account behind a peer id, if the peer id inlines an ed25519 key (all Agora peers do).
pub fn address_of(peer: &PeerId) -> Option<Address> {
    let mh = peer.as_ref();
    if mh.code() != IDENTITY_MULTIHASH {
        return None;
    }
    let pk = PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    let ed = pk.try_into_ed25519().ok()?;
    Some(Address(ed.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_and_address_are_one_identity() {
        for n in 0..8 {
            let k = agora_crypto::Keypair::for_test(n);
            let lk = libp2p_keypair(k.seed()).unwrap();
            let pid = lk.public().to_peer_id();
            assert_eq!(peer_id_for(&k.address()), Some(pid));
            assert_eq!(address_of(&pid), Some(k.address()));
        }
    }

    #[test]
    fn foreign_peer_ids_have_no_address() {
        assert_eq!(address_of(&PeerId::random()), None);
    }
}
