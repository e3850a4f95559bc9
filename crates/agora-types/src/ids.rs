use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Failure to parse an identifier from text or bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("expected {expected} bytes, got {got}")]
    Length { expected: usize, got: usize },
    #[error("invalid hex: {0}")]
    Hex(String),
}

macro_rules! bytes32 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            pub const LEN: usize = 32;

            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Parse from a byte slice of exactly 32 bytes.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
                let arr: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| IdError::Length { expected: 32, got: bytes.len() })?;
                Ok(Self(arr))
            }

            pub fn to_hex(&self) -> String {
                self.with_hex(str::to_owned)
            }

            /// Lend the 64 hex digits to `f` without allocating (serialisation and display).
            pub fn with_hex<T>(&self, f: impl FnOnce(&str) -> T) -> T {
                let mut buf = [0u8; 64];
                hex::encode_to_slice(self.0, &mut buf).expect("64 digits for 32 bytes");
                f(std::str::from_utf8(&buf).expect("hex digits are ASCII"))
            }

            /// Short form for logs: the first 8 hex digits.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.with_hex(|h| f.write_str(h))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                let bytes = hex::decode(s.trim()).map_err(|e| IdError::Hex(e.to_string()))?;
                Self::from_slice(&bytes)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.with_hex(|h| s.serialize_str(h))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

bytes32!(
    /// A blake3 digest.
    Hash
);
bytes32!(
    /// An account: the 32-byte ed25519 public key. A peer id and an account are one identity.
    Address
);

impl Hash {
    pub const ZERO: Hash = Hash([0; 32]);

    /// blake3 of `bytes`.
    pub fn of(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }

    /// blake3 of `bytes` under a domain-separation context string.
    pub fn derive(context: &str, bytes: &[u8]) -> Hash {
        let mut h = blake3::Hasher::new_derive_key(context);
        h.update(bytes);
        Hash(*h.finalize().as_bytes())
    }
}

/// A job is identified by the hash of its signed submission.
pub type JobId = Hash;

/// A block height. Height 0 is genesis; the first block is height 1.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Height(pub u64);

impl Height {
    pub fn next(self) -> Height {
        Height(self.0.checked_add(1).expect("height overflow"))
    }
}

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A consensus round within a height.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Round(pub u32);

impl fmt::Display for Round {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Block time in milliseconds since the Unix epoch, as agreed in a block header.
/// Replicated state reads time only from here, never from a clock.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn saturating_sub(self, other: Timestamp) -> u64 {
        self.0.saturating_sub(other.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_hex_round_trip() {
        let h = Hash::of(b"agora");
        let parsed: Hash = h.to_hex().parse().unwrap();
        assert_eq!(h, parsed);
        assert_eq!(h.to_hex().len(), 64);
    }

    #[test]
    fn wrong_length_is_rejected() {
        assert_eq!(
            Address::from_slice(&[1, 2, 3]),
            Err(IdError::Length {
                expected: 32,
                got: 3
            })
        );
        assert!("zz".parse::<Hash>().is_err());
    }

    #[test]
    fn derive_separates_domains() {
        assert_ne!(Hash::derive("a", b"x"), Hash::derive("b", b"x"));
        assert_ne!(Hash::derive("a", b"x"), Hash::of(b"x"));
    }

    #[test]
    fn serde_uses_hex() {
        let a = Address([7; 32]);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, format!("\"{}\"", "07".repeat(32)));
        let back: Address = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
        assert!(serde_json::from_str::<Address>("\"07\"").is_err());
    }
}
