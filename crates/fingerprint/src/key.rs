//! The network key and the keyed digests derived from it.
//!
//! Every value that leaves the agent is keyed with the network's 32-byte key,
//! so a fingerprint reveals nothing (not even "this message contains the word
//! *invoice*") to anyone without the key. Each kind of fingerprint uses its own
//! sub-key, derived with BLAKE3's key-derivation mode and a context string that
//! names the kind and the algorithm version, so values of different kinds or
//! versions can never collide.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{ALGORITHM_VERSION, DIGEST_VERSION};

/// A network's 32-byte fingerprint key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl Key {
    /// The well-known key used when none is configured (tests, `starling
    /// fingerprint` on its own). It is public, so fingerprints made with it
    /// are *not* private; a network always has its own key.
    pub const DEVELOPMENT: Key = Key(*b"starling-development-key-public!");

    /// A key from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A short, non-secret identifier of the key (shown in output so two
    /// fingerprints can be seen to come from the same key).
    pub fn id(&self) -> String {
        hex::encode(&blake3::derive_key("starling key id", &self.0)[..4])
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(id {})", self.id())
    }
}

/// The error of parsing a [`Key`] from hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyParseError;

impl fmt::Display for KeyParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a fingerprint key is 64 hexadecimal digits (32 bytes)")
    }
}

impl std::error::Error for KeyParseError {}

impl FromStr for Key {
    type Err = KeyParseError;

    fn from_str(s: &str) -> Result<Key, KeyParseError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut bytes).map_err(|_| KeyParseError)?;
        Ok(Key(bytes))
    }
}

/// A 128-bit keyed digest: exact text, URL, domain or attachment.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 16]);

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = hex::FromHexError;

    fn from_str(s: &str) -> Result<Digest, hex::FromHexError> {
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(s, &mut bytes)?;
        Ok(Digest(bytes))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The sub-keys of one [`Key`] for the current algorithm version: each
/// kind's derived with the version that kind last changed in.
#[derive(Clone)]
pub(crate) struct SubKeys {
    pub text: [u8; 32],
    pub url: [u8; 32],
    pub domain: [u8; 32],
    pub attachment: [u8; 32],
    /// Seeds the per-word hash (of the text digest and the model's words).
    pub word_seed: u64,
    /// Seeds the hash of the fuzzy signature's character n-grams.
    pub gram_seed: u64,
    /// Keys the final per-slot PRF of the min-hash signature.
    pub slot_key: (u64, u64),
    /// Seeds the probe sequences of min-hash densification.
    pub densification_seed: [u8; 32],
}

impl SubKeys {
    pub(crate) fn derive(key: &Key) -> SubKeys {
        let derive =
            |version: u16, what: &str| blake3::derive_key(&format!("starling fingerprint v{version} {what}"), &key.0);
        let (digests, fuzzy) = (|what| derive(DIGEST_VERSION, what), |what| derive(ALGORITHM_VERSION, what));
        let word = |bytes: &[u8; 32], at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let words = digests("shingle");
        let grams = fuzzy("shingle");
        SubKeys {
            text: digests("text digest"),
            url: digests("url digest"),
            domain: digests("domain digest"),
            attachment: digests("attachment digest"),
            word_seed: word(&words, 0),
            gram_seed: word(&grams, 0),
            slot_key: (word(&grams, 8), word(&grams, 16)),
            densification_seed: fuzzy("minhash densification"),
        }
    }
}

/// A keyed 128-bit digest of `data`.
pub(crate) fn digest(key: &[u8; 32], data: &[u8]) -> Digest {
    let hash = blake3::keyed_hash(key, data);
    let mut out = [0u8; 16];
    out.copy_from_slice(&hash.as_bytes()[..16]);
    Digest(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_hex() {
        let hex = "00".repeat(31) + "ff";
        let key: Key = hex.parse().unwrap();
        assert_eq!(key.as_bytes()[31], 0xff);
        assert!("abc".parse::<Key>().is_err());
    }

    #[test]
    fn sub_keys_differ_per_kind_and_key() {
        let a = SubKeys::derive(&Key::DEVELOPMENT);
        let b = SubKeys::derive(&Key::from_bytes([7; 32]));
        assert_ne!(a.text, a.url);
        assert_ne!(a.text, b.text);
        assert_ne!(digest(&a.text, b"x"), digest(&b.text, b"x"));
    }
}
