//! Feature extraction: hashed words and header tokens → a sorted set of
//! `u32` feature ids (unigrams, orthogonal sparse bigrams, header tokens),
//! and its compact storage form.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// At most this many body words are used (the first ones: the start of a
/// message carries its pitch, while hash-buster padding sits at the end).
pub const MAX_WORDS: usize = 1_500;

/// At most this many header tokens are used.
pub const MAX_HEADER_TOKENS: usize = 256;

/// At most this many bytes of one header token are hashed.
pub const MAX_HEADER_TOKEN_BYTES: usize = 256;

/// At most this many features are generated for one message (before
/// deduplication), and a [`Features`] never holds more ids than this.
pub const MAX_FEATURES: usize = 8_192;

/// The window of the orthogonal sparse bigrams: word `i` is paired with
/// words `i+1 ..= i+OSB_WINDOW-1`.
pub const OSB_WINDOW: usize = 5;

/// Seed of header-token hashing (so a header token never collides
/// systematically with a body word).
const HEADER_SEED: u64 = 0x6865_6164_6572_7321; // "headers!"

/// Per-kind multipliers: a unigram and the bigram of distance `d` of the
/// same words map to unrelated ids. Odd 64-bit constants.
const KIND_MUL: [u64; OSB_WINDOW] = [
    0x9e37_79b9_7f4a_7c15, // unigram
    0xc2b2_ae3d_27d4_eb4f, // d = 1
    0x1656_67b1_9e37_79f9, // d = 2
    0xd6e8_feb8_6659_fd93, // d = 3
    0xa076_1d64_78bd_642f, // d = 4
];

/// The set of features of one message: sorted, deduplicated `u32` ids, and
/// the hashed identity of its sender when the agent trusts the message to
/// name it (see [`Features::with_sender`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Features {
    ids: Vec<u32>,
    sender: Option<u64>,
}

/// The tag of the sender in [`Features::to_bytes`].
const SENDER_TAG: u8 = 1;

impl Features {
    /// The features of a message from its hashed body words (as
    /// `starling_fingerprint::Fingerprinter::fingerprint_with_words` returns
    /// them) and the header tokens the agent chose (`"subject:free"`,
    /// `"from-domain:example.com"`, …).
    ///
    /// Features are: every word (unigram); every pair of a word with each
    /// of the next four words, with their distance (orthogonal sparse
    /// bigrams, as in CRM114 and rspamd); every header token. The cost is
    /// bounded on any input: [`MAX_WORDS`], [`MAX_HEADER_TOKENS`],
    /// [`MAX_HEADER_TOKEN_BYTES`] and [`MAX_FEATURES`].
    pub fn extract(words: &[u64], headers: &[&str]) -> Features {
        let words = &words[..words.len().min(MAX_WORDS)];
        let mut ids = Vec::with_capacity((words.len() * OSB_WINDOW + headers.len()).min(MAX_FEATURES));
        // Header tokens first: there are few and they are never crowded out.
        for token in headers.iter().take(MAX_HEADER_TOKENS) {
            let bytes = token.as_bytes();
            let bytes = &bytes[..bytes.len().min(MAX_HEADER_TOKEN_BYTES)];
            ids.push(to_id(xxh3_64_with_seed(bytes, HEADER_SEED)));
        }
        'words: for (i, &word) in words.iter().enumerate() {
            if ids.len() + OSB_WINDOW > MAX_FEATURES {
                break 'words;
            }
            ids.push(to_id(mix(word.wrapping_mul(KIND_MUL[0]))));
            // Pairs with the next words, each distance with its own multiplier.
            for (&later, &mul) in words[i + 1..].iter().zip(&KIND_MUL[1..]) {
                ids.push(to_id(mix(word.wrapping_mul(mul) ^ later)));
            }
        }
        ids.truncate(MAX_FEATURES);
        Features::from_ids(ids)
    }

    /// The same features with the hashed identity of the message's sender
    /// (a hash of its address, never the address): the model never files
    /// mail of a sender the organisation corresponds with by itself. `None`
    /// when the message does not name a sender it can be trusted for.
    pub fn with_sender(self, sender: Option<u64>) -> Features {
        Features { sender, ..self }
    }

    /// The hashed identity of the sender, if any.
    pub fn sender(&self) -> Option<u64> {
        self.sender
    }

    /// The feature ids, sorted and without duplicates.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Features from stored ids (e.g. kept by the agent in SQLite): sorts
    /// and deduplicates them, and keeps the [`MAX_FEATURES`] smallest.
    pub fn from_ids(mut ids: Vec<u32>) -> Features {
        ids.sort_unstable();
        ids.dedup();
        ids.truncate(MAX_FEATURES);
        Features { ids, sender: None }
    }

    /// The number of features.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no features at all.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The compact storage form: the count, then the first id and the gaps
    /// between consecutive ids, each as an LEB128 varint (about 4.3 bytes a
    /// feature for well-mixed ids); then, with a sender, a tag byte (1) and
    /// the sender's 8 bytes (little-endian).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.ids.len() * 5 + 9);
        put_varint(&mut out, self.ids.len() as u32);
        let mut previous = 0u32;
        for (i, &id) in self.ids.iter().enumerate() {
            put_varint(&mut out, if i == 0 { id } else { id - previous });
            previous = id;
        }
        if let Some(sender) = self.sender {
            out.push(SENDER_TAG);
            out.extend_from_slice(&sender.to_le_bytes());
        }
        out
    }

    /// Reads [`Features::to_bytes`] (also what builds before the sender
    /// wrote: the ids alone). Anything else (truncated, trailing bytes,
    /// overlong varints, ids out of order or above `u32::MAX`, more than
    /// [`MAX_FEATURES`]) gives `None`.
    pub fn from_bytes(bytes: &[u8]) -> Option<Features> {
        let mut reader = VarintReader { bytes, at: 0 };
        let count = reader.next()? as usize;
        if count > MAX_FEATURES || count > bytes.len() {
            return None;
        }
        let mut ids: Vec<u32> = Vec::with_capacity(count);
        for i in 0..count {
            let value = reader.next()?;
            let id = if i == 0 {
                value
            } else {
                // A gap of zero would be a duplicate: not a canonical encoding.
                if value == 0 {
                    return None;
                }
                ids[i - 1].checked_add(value)?
            };
            ids.push(id);
        }
        let sender = match &bytes[reader.at..] {
            [] => None,
            [SENDER_TAG, sender @ ..] => Some(u64::from_le_bytes(sender.try_into().ok()?)),
            _ => return None,
        };
        Some(Features { ids, sender })
    }
}

/// The final mixer of splitmix64/murmur3: full avalanche, so the top bits
/// of the result depend on every input bit.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn to_id(hash: u64) -> u32 {
    (hash >> 32) as u32
}

fn put_varint(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

struct VarintReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl VarintReader<'_> {
    /// One canonical LEB128 `u32`: at most five bytes, no overflow, no
    /// redundant trailing zero byte.
    fn next(&mut self) -> Option<u32> {
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                if byte == 0 && shift > 0 {
                    return None;
                }
                return u32::try_from(value).ok();
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extract_counts_unigrams_bigrams_and_headers() {
        let words: Vec<u64> = (1..=6).collect();
        let f = Features::extract(&words, &["subject:free"]);
        // 6 unigrams + 5 + 4 + 3 + 2 bigrams + 1 header token.
        assert_eq!(f.len(), 6 + 14 + 1);
        assert!(f.ids().windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn word_order_matters_for_bigrams() {
        let a = Features::extract(&[1, 2], &[]);
        let b = Features::extract(&[2, 1], &[]);
        assert_ne!(a, b);
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn extract_is_bounded() {
        let words: Vec<u64> = (0..1_000_000).collect();
        let huge = "x".repeat(1 << 20);
        let headers: Vec<&str> = std::iter::repeat_n(huge.as_str(), 10_000).collect();
        let f = Features::extract(&words, &headers);
        assert!(f.len() <= MAX_FEATURES);
        assert!(Features::extract(&[], &[]).is_empty());
    }

    #[test]
    fn bytes_round_trip_and_reject_hostile_input() {
        let f = Features::from_ids(vec![7, 0, u32::MAX, 128, 7, 300_000]);
        assert_eq!(f.ids(), &[0, 7, 128, 300_000, u32::MAX]);
        let bytes = f.to_bytes();
        assert_eq!(Features::from_bytes(&bytes), Some(f.clone()));
        assert_eq!(Features::from_bytes(&bytes[..bytes.len() - 1]), None);
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(Features::from_bytes(&trailing), None);
        assert_eq!(Features::from_bytes(&[]), None);
        assert_eq!(Features::from_bytes(&[0]), Some(Features::default()));
        // Overlong varint, overflow, duplicate (zero gap), sum overflow.
        assert_eq!(Features::from_bytes(&[1, 0x80, 0]), None);
        assert_eq!(Features::from_bytes(&[1, 0xff, 0xff, 0xff, 0xff, 0x1f]), None);
        assert_eq!(Features::from_bytes(&[2, 5, 0]), None);
        assert_eq!(Features::from_bytes(&[2, 0xff, 0xff, 0xff, 0xff, 0x0f, 1]), None);
    }

    #[test]
    fn the_sender_round_trips_and_a_bad_tail_is_rejected() {
        let f = Features::from_ids(vec![3, 9]).with_sender(Some(u64::MAX - 7));
        let bytes = f.to_bytes();
        assert_eq!(Features::from_bytes(&bytes), Some(f.clone()));
        let without = Features::from_ids(vec![3, 9]);
        assert_eq!(Features::from_bytes(&without.to_bytes()), Some(without), "the ids alone, as before");
        assert_eq!(Features::from_bytes(&bytes[..bytes.len() - 1]), None, "a cut sender");
        let mut tagged = without_sender_bytes(&f);
        tagged.push(2);
        tagged.extend_from_slice(&7u64.to_le_bytes());
        assert_eq!(Features::from_bytes(&tagged), None, "an unknown tag");
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Features::from_bytes(&longer), None, "bytes after the sender");
    }

    fn without_sender_bytes(f: &Features) -> Vec<u8> {
        Features::from_ids(f.ids().to_vec()).to_bytes()
    }
}
