//! Min-hash signatures over character n-grams, their index keys, and
//! similarity.
//!
//! A message's normalised words, joined by one space, form overlapping
//! windows of [`GRAM_BYTES`] bytes (shingles). The signature has [`SLOTS`]
//! slots; two messages agree in a slot with probability equal to the Jaccard
//! similarity of their shingle sets, so the share of equal slots estimates
//! it.
//!
//! Why characters rather than words (algorithm version 2): a typo, a
//! look-alike the normaliser missed or a swapped word changes only the
//! grams that overlap it — about one word's worth — where it changed all
//! three shingles of three words; with a fifth of the words rewritten, about
//! 70 % of the grams survive against half of the word shingles. Six bytes
//! cross word boundaries ("e offe"), so the grams still carry word order,
//! and are long enough that unrelated texts share few (see
//! `docs/evaluation.md` for 5-, 6-, 7- and 8-byte grams and word shingles
//! measured side by side).
//!
//! Speed: a gram is the last six bytes in a shifted `u64`, mixed by one
//! bijective finaliser with a keyed seed — no hashing of the bytes again.
//! Rather than evaluating one hash permutation per slot for every shingle
//! (cost: slots × shingles), the signature uses *one-permutation hashing
//! with optimal densification* (Shrivastava, ICML 2017): the top bits of a
//! shingle's hash pick its slot, each slot keeps its smallest value, and an
//! empty slot borrows the value of a slot chosen by a fixed pseudo-random
//! probe sequence. The estimator stays unbiased and the cost is linear in
//! the number of shingles. The final slot values go through a keyed PRF
//! (SipHash-1-3), so a signature reveals nothing without the network key.
//!
//! Index keys: the slots are grouped into [`BANDS`] bands of [`ROWS_PER_BAND`]
//! slots (locality-sensitive hashing). Two signatures that share any band are
//! candidates; a store keeps one posting per band key, so finding candidates
//! never scans. With 2-slot bands a message at Jaccard 0.3 is a candidate with
//! probability 1 − (1 − 0.3²)³² ≈ 95 %.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use siphasher::sip::SipHasher13;
use std::hash::Hasher;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Slots (permutations) in a signature.
pub const SLOTS: usize = 64;
/// Bytes of normalised text per shingle (character n-gram).
pub const GRAM_BYTES: usize = 6;
/// Slots per band of the index keys.
pub const ROWS_PER_BAND: usize = 2;
/// Bands, hence index keys, per signature.
pub const BANDS: usize = SLOTS / ROWS_PER_BAND;

/// A min-hash signature: the keyed minimum of every slot, and the number of
/// distinct shingles it summarises (needed to estimate containment).
#[derive(Clone, PartialEq, Eq)]
pub struct MinHash {
    /// Keyed slot values.
    pub slots: [u32; SLOTS],
    /// Shingles hashed (windows of the normalised text).
    pub shingles: u32,
}

impl MinHash {
    /// The locality-sensitive index keys of this signature, one per band;
    /// key `i` only ever equals key `i` of another signature.
    pub fn band_keys(&self) -> [u64; BANDS] {
        let mut keys = [0u64; BANDS];
        for (band, key) in keys.iter_mut().enumerate() {
            let mut bytes = [0u8; 4 * ROWS_PER_BAND];
            for (row, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&self.slots[band * ROWS_PER_BAND + row].to_le_bytes());
            }
            *key = xxh3_64_with_seed(&bytes, band as u64);
        }
        keys
    }

    /// How similar this signature (of a checked message) is to `other`
    /// (of a reported one).
    pub fn similarity(&self, other: &MinHash) -> Similarity {
        let equal = self.slots.iter().zip(&other.slots).filter(|(a, b)| a == b).count();
        Similarity::estimate(equal, self.shingles, other.shingles)
    }

    /// The slots as 512 hexadecimal digits (little-endian `u32`s).
    pub fn slots_hex(&self) -> String {
        let bytes: Vec<u8> = self.slots.iter().flat_map(|s| s.to_le_bytes()).collect();
        hex::encode(bytes)
    }

    /// Parses what [`MinHash::slots_hex`] wrote.
    pub fn from_slots_hex(hex_slots: &str, shingles: u32) -> Option<MinHash> {
        let bytes = hex::decode(hex_slots).ok()?;
        if bytes.len() != SLOTS * 4 {
            return None;
        }
        let mut slots = [0u32; SLOTS];
        for (slot, chunk) in slots.iter_mut().zip(bytes.chunks_exact(4)) {
            *slot = u32::from_le_bytes(chunk.try_into().ok()?);
        }
        Some(MinHash { slots, shingles })
    }
}

impl fmt::Debug for MinHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MinHash({} shingles, {:08x}…)", self.shingles, self.slots[0])
    }
}

#[derive(Serialize, Deserialize)]
struct MinHashWire {
    shingles: u32,
    slots: String,
}

impl Serialize for MinHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        MinHashWire { shingles: self.shingles, slots: self.slots_hex() }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for MinHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<MinHash, D::Error> {
        let wire = MinHashWire::deserialize(deserializer)?;
        MinHash::from_slots_hex(&wire.slots, wire.shingles)
            .ok_or_else(|| D::Error::custom(format!("slots must be {} hexadecimal digits", SLOTS * 8)))
    }
}

/// The estimated resemblance of two shingle sets.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Similarity {
    /// Slots with equal values, of [`SLOTS`].
    pub equal_slots: u8,
    /// Estimated Jaccard index: |A ∩ B| / |A ∪ B|.
    pub jaccard: f32,
    /// Estimated share of the other (reported) set found in this (checked)
    /// one: |A ∩ B| / |B|. High when the checked message is the reported one
    /// plus appended or inserted text (the "hash buster" trick). Only this
    /// direction: a short message that is mostly a reported message's
    /// boilerplate (a mailing list's footer) is not its copy, and a copy
    /// with text removed keeps a high Jaccard similarity instead.
    pub containment: f32,
}

impl Similarity {
    fn estimate(equal: usize, a: u32, b: u32) -> Similarity {
        let jaccard = equal as f32 / SLOTS as f32;
        let (a, b) = (a.max(1) as f32, b.max(1) as f32);
        let intersection = jaccard / (1.0 + jaccard) * (a + b);
        Similarity { equal_slots: equal as u8, jaccard, containment: (intersection / b).min(1.0) }
    }
}

/// Bits of a shingle hash that pick its slot.
const SLOT_BITS: u32 = SLOTS.trailing_zeros();

/// The probe sequences of optimal densification, fixed per key so that every
/// message borrows from the same slots.
#[derive(Clone)]
pub(crate) struct Densifier {
    seed: u64,
}

impl Densifier {
    pub(crate) fn new(seed: &[u8; 32]) -> Densifier {
        Densifier { seed: u64::from_le_bytes(seed[..8].try_into().expect("8 bytes")) }
    }

    /// The `attempt`-th slot an empty slot `slot` borrows from.
    fn probe(&self, slot: usize, attempt: u64) -> usize {
        (mix64(self.seed ^ ((slot as u64) << 32) ^ attempt) >> (64 - SLOT_BITS)) as usize
    }
}

/// Character n-grams of the normalised text — the words joined by one
/// space — hashed as they are fed, word by word: each byte ends one gram of
/// the [`GRAM_BYTES`] bytes before it.
pub(crate) struct Grams {
    window: u64,
    filled: usize,
    seed: u64,
    hashes: Vec<u64>,
}

impl Grams {
    /// Grams hashed under `seed` (a secret of the network key).
    pub(crate) fn new(seed: u64) -> Grams {
        Grams { window: 0, filled: 0, seed, hashes: Vec::new() }
    }

    /// Appends a word (after a space, unless it is the first).
    pub(crate) fn word(&mut self, word: &[u8]) {
        if self.filled > 0 {
            self.byte(b' ');
        }
        for &b in word {
            self.byte(b);
        }
    }

    fn byte(&mut self, b: u8) {
        const MASK: u64 = (1 << (8 * GRAM_BYTES)) - 1;
        self.window = ((self.window << 8) | u64::from(b)) & MASK;
        self.filled += 1;
        if self.filled >= GRAM_BYTES {
            self.hashes.push(mix64(self.window ^ self.seed));
        }
    }

    /// The hashes of every gram, in text order.
    pub(crate) fn into_hashes(self) -> Vec<u64> {
        self.hashes
    }
}

/// The signature of a sequence of shingle hashes, or `None` when there are
/// none.
pub(crate) fn signature(shingles: &[u64], densifier: &Densifier, slot_key: (u64, u64)) -> Option<MinHash> {
    if shingles.is_empty() {
        return None;
    }
    const EMPTY: u64 = u64::MAX;
    let mut mins = [EMPTY; SLOTS];
    for &hash in shingles {
        let slot = (hash >> (64 - SLOT_BITS)) as usize;
        // The remaining bits order shingles within a slot.
        let value = hash & (EMPTY >> SLOT_BITS);
        mins[slot] = mins[slot].min(value);
    }
    let filled: Vec<bool> = mins.iter().map(|&m| m != EMPTY).collect();
    let mut slots = [0u32; SLOTS];
    for (slot, out) in slots.iter_mut().enumerate() {
        let mut source = slot;
        let mut attempt = 0;
        while !filled[source] {
            attempt += 1;
            source = densifier.probe(slot, attempt);
        }
        let mut prf = SipHasher13::new_with_keys(slot_key.0, slot_key.1);
        // The source slot is part of the value: two messages only agree when
        // they borrowed the same minimum.
        prf.write_u64(mins[source]);
        prf.write_u8(source as u8);
        *out = prf.finish() as u32;
    }
    Some(MinHash { slots, shingles: distinct_estimate(shingles) })
}

/// The number of distinct values among `hashes`, estimated by linear
/// counting (Whang et al. 1990) over a bitmap of about eight bits per value:
/// within a few per cent (a text has six times more grams than words, and an
/// exact count's hash table was the costliest step of the signature), the
/// same for the same set, and never more than the number of values. The
/// containment estimate it feeds is coarser than that by far.
fn distinct_estimate(hashes: &[u64]) -> u32 {
    let bits = (hashes.len() * 8).next_power_of_two().max(64);
    let mut map = vec![0u64; bits / 64];
    for &hash in hashes {
        let bit = hash as usize & (bits - 1);
        map[bit / 64] |= 1 << (bit % 64);
    }
    let zeros = map.iter().map(|w| w.count_zeros() as usize).sum::<usize>();
    let estimate = -(bits as f64) * (zeros as f64 / bits as f64).ln();
    (estimate.round() as usize).clamp(usize::from(!hashes.is_empty()), hashes.len()) as u32
}

/// The 64-bit finaliser of MurmurHash3: a bijection that mixes every bit.
fn mix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature of a set of shingles named by numbers.
    fn signature(shingles: impl IntoIterator<Item = u64>) -> MinHash {
        let densifier = Densifier::new(&[3; 32]);
        let shingles: Vec<u64> = shingles.into_iter().map(|w| xxh3_64_with_seed(&w.to_le_bytes(), 9)).collect();
        super::signature(&shingles, &densifier, (1, 2)).unwrap()
    }

    fn grams(text: &str) -> Vec<u64> {
        let mut grams = Grams::new(7);
        text.split(' ').for_each(|word| grams.word(word.as_bytes()));
        grams.into_hashes()
    }

    #[test]
    fn grams_span_words_and_a_typo_changes_only_the_grams_over_it() {
        // One gram per byte from the sixth on, the spaces included.
        assert_eq!(grams("free money").len(), "free money".len() - GRAM_BYTES + 1);
        assert!(grams("hi you").len() == 1 && grams("hello").is_empty());
        let text = "act now to claim your free prize before the offer ends tonight";
        let typo = "act now to claim your frea prize before the offer ends tonight";
        let (a, b) = (grams(text), grams(typo));
        let changed = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert_eq!(changed, GRAM_BYTES, "the grams that cover the changed byte");
        // Keyed: another seed, other values.
        let mut other = Grams::new(8);
        other.word(b"free money");
        assert!(other.into_hashes().iter().all(|h| !grams("free money").contains(h)));
    }

    #[test]
    fn identical_input_gives_identical_signatures() {
        let a = signature(0..100);
        assert_eq!(a, signature(0..100));
        assert_eq!(a.similarity(&a).equal_slots as usize, SLOTS);
    }

    #[test]
    fn jaccard_estimate_tracks_the_truth() {
        // Two shingle sets sharing a part: their true Jaccard is known.
        for (shared, extra) in [(300u64, 100u64), (200, 200), (100, 300), (60, 500)] {
            let a = signature(0..shared + extra);
            let b = signature((0..shared).chain(10_000..10_000 + extra));
            let inter = shared as f32;
            let union = (2 * (shared + extra)) as f32 - inter;
            let truth = inter / union;
            let estimate = a.similarity(&b).jaccard;
            assert!((estimate - truth).abs() < 0.15, "shared {shared}: estimate {estimate} truth {truth}");
        }
    }

    #[test]
    fn short_texts_fill_every_slot() {
        let a = signature(0..6);
        assert_eq!(a.shingles, 6);
        assert_eq!(a.similarity(&signature(0..6)).equal_slots as usize, SLOTS);
        assert!(a.similarity(&signature(100..106)).equal_slots <= 2);
    }

    #[test]
    fn distinct_grams_are_counted_within_a_few_percent() {
        for n in [1u64, 10, 100, 1_000, 20_000] {
            let hashes: Vec<u64> = (0..n).chain(0..n / 2).map(|i| mix64(i ^ 77)).collect();
            let estimate = f64::from(distinct_estimate(&hashes));
            let error = (estimate - n as f64).abs() / n as f64;
            assert!(error < 0.05, "{n} distinct: estimated {estimate}");
        }
        assert_eq!(distinct_estimate(&[]), 0);
    }

    #[test]
    fn unrelated_texts_share_almost_no_slots() {
        let a = signature(0..200);
        let b = signature(1000..1200);
        assert!(a.similarity(&b).equal_slots <= 2);
    }

    #[test]
    fn containment_sees_appended_text() {
        let original = signature(0..60);
        let busted = signature((0..60).chain(5000..5080));
        let s = busted.similarity(&original);
        assert!(s.jaccard < 0.6 && s.containment > 0.75, "{s:?}");
        // Only the reported message's share found in the checked one: a
        // checked message that is a small part of the reported one (its
        // boilerplate, say) is not contained.
        let excerpt = original.similarity(&busted);
        assert!(excerpt.jaccard == s.jaccard && excerpt.containment < 0.75, "{excerpt:?}");
    }

    #[test]
    fn band_keys_are_positional_and_shared_by_equal_bands() {
        let a = signature(0..100);
        let mut b = a.clone();
        b.slots[0] ^= 1;
        let (ka, kb) = (a.band_keys(), b.band_keys());
        assert_ne!(ka[0], kb[0]);
        assert_eq!(ka[1..], kb[1..]);
    }

    #[test]
    fn hex_round_trip() {
        let a = signature(0..50);
        assert_eq!(MinHash::from_slots_hex(&a.slots_hex(), a.shingles), Some(a));
        assert_eq!(MinHash::from_slots_hex("00", 1), None);
    }
}
