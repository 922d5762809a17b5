//! An in-memory filter of the index keys that exist, so that a check of
//! clean mail — almost every check — never touches the store.
//!
//! A *blocked* Bloom filter: each key sets 8 bits inside one 512-bit block
//! (one cache line), so a lookup costs one memory access. It is *scalable*:
//! when a layer holds its capacity, a layer twice as large is added, so
//! memory follows the number of keys (about 11 bits per key, 1.5 % false
//! positives) instead of a configured maximum. Bits are atomics: the writer
//! sets them while checks read them, without locks. Keys are never removed;
//! entries that expire leave bits behind until the next start rebuilds the
//! filter from the store.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::RwLock;

/// Bits per key in the first layer (about 1.5 % false positives for a
/// blocked filter); each further layer adds [`BITS_PER_LAYER`].
const BITS_PER_KEY: usize = 11;
/// Extra bits per key of each further layer.
const BITS_PER_LAYER: usize = 2;
/// Words of a block (512 bits).
const BLOCK_WORDS: usize = 8;
/// Capacity of the first layer, in keys.
const FIRST_CAPACITY: usize = 1 << 18;

struct Layer {
    blocks: Vec<[AtomicU64; BLOCK_WORDS]>,
    capacity: usize,
    len: AtomicUsize,
}

impl Layer {
    fn new(capacity: usize, bits_per_key: usize) -> Layer {
        let blocks = (capacity * bits_per_key).div_ceil(64 * BLOCK_WORDS).max(1);
        Layer {
            blocks: (0..blocks).map(|_| std::array::from_fn(|_| AtomicU64::new(0))).collect(),
            capacity,
            len: AtomicUsize::new(0),
        }
    }

    /// The block of `hash` and the eight (word, bit) positions in it.
    fn positions(&self, hash: u64) -> (usize, [(usize, u64); 8]) {
        let block = (((hash >> 32) * self.blocks.len() as u64) >> 32) as usize;
        // Eight 9-bit positions from a remix of the hash.
        let mut mix = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (hash >> 29);
        let positions = std::array::from_fn(|_| {
            let bit = (mix & 511) as usize;
            mix = mix.rotate_right(9) ^ (mix >> 41);
            (bit / 64, 1u64 << (bit % 64))
        });
        (block, positions)
    }

    fn insert(&self, hash: u64) {
        let (block, positions) = self.positions(hash);
        for (word, bit) in positions {
            self.blocks[block][word].fetch_or(bit, Ordering::Release);
        }
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    fn may_contain(&self, hash: u64) -> bool {
        let (block, positions) = self.positions(hash);
        positions.iter().all(|&(word, bit)| self.blocks[block][word].load(Ordering::Acquire) & bit != 0)
    }

    fn bytes(&self) -> usize {
        self.blocks.len() * BLOCK_WORDS * 8
    }
}

/// The filter. `may_contain` is false only for keys never inserted.
pub struct Filter {
    layers: RwLock<Vec<Layer>>,
}

impl Default for Filter {
    fn default() -> Filter {
        Filter { layers: RwLock::new(vec![Layer::new(FIRST_CAPACITY, BITS_PER_KEY)]) }
    }
}

impl Filter {
    /// An empty filter.
    pub fn new() -> Filter {
        Filter::default()
    }

    /// Adds a key (by its 64-bit hash).
    pub fn insert(&self, hash: u64) {
        {
            let layers = self.layers.read();
            let last = layers.last().expect("a filter has a layer");
            if last.len.load(Ordering::Relaxed) < last.capacity {
                last.insert(hash);
                return;
            }
        }
        let mut layers = self.layers.write();
        let last = layers.last().expect("a filter has a layer");
        if last.len.load(Ordering::Relaxed) >= last.capacity {
            let capacity = last.capacity * 2;
            let bits = BITS_PER_KEY + BITS_PER_LAYER * layers.len();
            layers.push(Layer::new(capacity, bits));
        }
        layers.last().expect("a filter has a layer").insert(hash);
    }

    /// Whether a key may have been inserted.
    pub fn may_contain(&self, hash: u64) -> bool {
        self.view().may_contain(hash)
    }

    /// A view for many lookups: takes the layer lock once (taking it per
    /// key makes the lock's cache line bounce between cores).
    pub fn view(&self) -> FilterView<'_> {
        FilterView { layers: self.layers.read() }
    }

    /// A filter sized for `keys` keys from the start (one layer).
    pub fn with_capacity(keys: usize) -> Filter {
        let capacity = keys.max(FIRST_CAPACITY);
        Filter { layers: RwLock::new(vec![Layer::new(capacity, BITS_PER_KEY)]) }
    }

    /// Memory held, in bytes.
    pub fn bytes(&self) -> usize {
        self.layers.read().iter().map(Layer::bytes).sum()
    }

    /// Keys inserted.
    pub fn len(&self) -> usize {
        self.layers.read().iter().map(|l| l.len.load(Ordering::Relaxed)).sum()
    }

    /// Whether nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Lookups under one read lock.
pub struct FilterView<'a> {
    layers: parking_lot::RwLockReadGuard<'a, Vec<Layer>>,
}

impl FilterView<'_> {
    /// Whether a key may have been inserted.
    pub fn may_contain(&self, hash: u64) -> bool {
        self.layers.iter().any(|layer| layer.may_contain(hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(i: u64) -> u64 {
        let mut h = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    }

    #[test]
    fn no_false_negatives_and_few_false_positives_as_it_grows() {
        let filter = Filter::new();
        let n = 1_500_000u64;
        (0..n).for_each(|i| filter.insert(hash(i)));
        assert!((0..n).all(|i| filter.may_contain(hash(i))));
        let false_positives = (n..n + 100_000).filter(|&i| filter.may_contain(hash(i))).count();
        assert!(false_positives < 2_500, "{false_positives} false positives in 100,000");
        assert_eq!(filter.len(), n as usize);
        assert!(filter.bytes() < (n as usize) * 3, "{} bytes", filter.bytes());
    }
}
