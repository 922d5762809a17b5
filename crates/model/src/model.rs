//! The model: the hashed count table, classification, prequential learning
//! and the calibrated filing decision.

use crate::Label;
use crate::calibration::{self, NEVER_FILE, Window};
use crate::combine::{self, Clue, Norm};
use crate::features::{Features, MAX_FEATURES};
use crate::senders::Senders;

/// The smallest table [`Model::new`] makes (`table_bits` is clamped).
pub const MIN_TABLE_BITS: u8 = 8;

/// The largest table [`Model::new`] makes: 2²⁸ buckets, 1 GiB.
pub const MAX_TABLE_BITS: u8 = 28;

/// The number of features in [`Score::evidence`].
pub const EVIDENCE: usize = 10;

/// A counter that reaches this value halves the whole table before it is
/// incremented. The margin below `u16::MAX` is the most increments one
/// message can make to one bucket, so counters never overflow.
pub const SATURATION_LIMIT: u16 = u16::MAX - MAX_FEATURES as u16;

/// How a [`Model`] is sized and when it may file.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// The count table has 2^`table_bits` buckets of 4 bytes (two `u16`
    /// counters): 23 (the default) is 32 MiB. Clamped to
    /// [`MIN_TABLE_BITS`]`..=`[`MAX_TABLE_BITS`]. Fixed for the life of a
    /// saved model.
    pub table_bits: u8,
    /// Spam examples needed before the model may file.
    pub min_spam: u32,
    /// Ham examples needed before the model may file.
    pub min_ham: u32,
    /// The highest acceptable share of ham filed as spam.
    pub target_false_positive_rate: f64,
    /// The model never files below this score, whatever the calibration.
    pub threshold_floor: f32,
}

impl Default for ModelConfig {
    fn default() -> ModelConfig {
        ModelConfig {
            table_bits: 23,
            min_spam: 20,
            min_ham: 50,
            target_false_positive_rate: 0.001,
            threshold_floor: 0.98,
        }
    }
}

/// The model's view of one message.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// The spam probability in [0, 1] (½ when nothing is known).
    pub probability: f32,
    /// The [`EVIDENCE`] strongest features (ids, never text) with their
    /// spam probability, strongest first.
    pub evidence: Vec<(u32, f32)>,
    /// The sender is one the organisation corresponds with
    /// ([`Model::known_sender`]): the model does not file it.
    pub known_sender: bool,
}

/// A per-organisation spam classifier with fixed memory: see the crate doc.
#[derive(Clone, Debug)]
pub struct Model {
    pub(crate) config: ModelConfig,
    /// Bucket `id >> shift` holds the `[spam, ham]` occurrence counts.
    pub(crate) table: Vec<[u16; 2]>,
    /// `32 - table_bits`: the bucket of a feature is the top `table_bits`
    /// bits of its id, so the sorted ids of a message visit the table in
    /// ascending order (kinder to the TLB and the prefetcher than the low
    /// bits, which would scatter them).
    pub(crate) shift: u32,
    /// Examples learned minus unlearned, per class (`[spam, ham]`).
    pub(crate) examples: [u64; 2],
    /// The class sizes the counters are normalised with: the examples,
    /// halved together with the counters.
    pub(crate) weights: [u64; 2],
    /// How often the table was halved.
    pub(crate) halvings: u32,
    /// Prequential scores per class (`[spam, ham]`).
    pub(crate) scores: [Window; 2],
    /// The organisation's correspondents.
    pub(crate) senders: Senders,
    /// The filing threshold the ham scores give ([`Model::threshold`]),
    /// kept as they change: every classification compares with it.
    threshold: f32,
}

impl Model {
    /// An empty model.
    pub fn new(config: ModelConfig) -> Model {
        let mut config = config;
        config.table_bits = config.table_bits.clamp(MIN_TABLE_BITS, MAX_TABLE_BITS);
        let buckets = 1usize << config.table_bits;
        Model {
            shift: 32 - u32::from(config.table_bits),
            table: vec![[0, 0]; buckets],
            config,
            examples: [0, 0],
            weights: [0, 0],
            halvings: 0,
            scores: [Window::default(), Window::default()],
            senders: Senders::default(),
            threshold: NEVER_FILE,
        }
        .calibrated()
    }

    /// The model with its threshold computed from its ham scores.
    pub(crate) fn calibrated(mut self) -> Model {
        self.recalibrate();
        self
    }

    fn recalibrate(&mut self) {
        let calibrated = calibration::ham_threshold(&self.scores[1], self.config.target_false_positive_rate);
        self.threshold = calibrated.max(self.config.threshold_floor);
    }

    /// The configuration in force (with `table_bits` clamped).
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The spam probability of a message, with its strongest evidence.
    pub fn classify(&self, features: &Features) -> Score {
        let clues = self.clues(features);
        let probability = combine::probability(combine::fisher_evidence(&clues));
        let evidence = clues.iter().take(EVIDENCE).map(|c| (c.id, c.prob)).collect();
        Score { probability, evidence, known_sender: self.senders.known(features.sender()) }
    }

    /// Learns one example, prequentially: scores it with the model as it
    /// was, records that score in the calibration of its class (only while
    /// the model is [`ready`](Model::ready): a model that may not file says
    /// nothing about the filing threshold), then trains. Returns the score.
    ///
    /// A message from a [known sender](Model::known_sender), which the model
    /// never files, is recorded as a score of 0 (one that files nothing):
    /// so the threshold keeps the share of *all* ham filed at the target
    /// while only the other ham can reach it.
    pub fn learn(&mut self, features: &Features, label: Label) -> f32 {
        let probability = combine::probability(combine::fisher_evidence(&self.clues(features)));
        if self.ready() {
            let recorded = if self.senders.known(features.sender()) { 0.0 } else { probability };
            self.scores[label.index()].push(recorded);
            if label == Label::Ham {
                self.recalibrate();
            }
        }
        self.train(features, label);
        self.senders.add(features.sender(), label);
        probability
    }

    /// Undoes the training of [`learn`](Model::learn) for the same features
    /// and label (an undone report, an expired example, suspected
    /// poisoning). Exact while the table has not been halved since the
    /// example was learned; afterwards it removes one occurrence per
    /// feature from the halved counts (never below zero). The calibration
    /// scores are left as they are: they describe past decisions.
    pub fn unlearn(&mut self, features: &Features, label: Label) {
        let class = label.index();
        for &id in features.ids() {
            let at = self.bucket(id);
            let bucket = &mut self.table[at][class];
            *bucket = bucket.saturating_sub(1);
        }
        self.examples[class] = self.examples[class].saturating_sub(1);
        self.weights[class] = self.weights[class].saturating_sub(1);
        self.senders.remove(features.sender(), label);
    }

    /// Whether the message's sender is one the organisation corresponds
    /// with (see [`Senders`](crate::senders)): ham learned from it, and
    /// more than twice as much as spam. The model never files such mail.
    pub fn known_sender(&self, features: &Features) -> bool {
        self.senders.known(features.sender())
    }

    /// The examples learned from a sender: `(spam, ham)`.
    pub fn sender_examples(&self, sender: u64) -> (u32, u32) {
        self.senders.counts(sender)
    }

    /// The number of senders the model holds counts for.
    pub fn senders(&self) -> usize {
        self.senders.len()
    }

    /// The number of [known senders](Model::known_sender).
    pub fn known_senders(&self) -> usize {
        self.senders.known_count()
    }

    /// The examples learned (minus those unlearned): `(spam, ham)`.
    pub fn examples(&self) -> (u64, u64) {
        (self.examples[0], self.examples[1])
    }

    /// Whether the model has learned enough of both classes to file.
    pub fn ready(&self) -> bool {
        self.examples[0] >= u64::from(self.config.min_spam) && self.examples[1] >= u64::from(self.config.min_ham)
    }

    /// The calibrated filing threshold: the lowest score at which the
    /// estimated false-positive rate on ham is at most the target, and never
    /// below [`ModelConfig::threshold_floor`].
    ///
    /// The estimator: of the last [`CALIBRATION_WINDOW`](crate::CALIBRATION_WINDOW)
    /// prequential ham scores (each made before the model learned that
    /// ham), `k` lie at or above a candidate threshold; the candidate is
    /// accepted when the one-sided Clopper–Pearson upper bound, at
    /// [`CALIBRATION_CONFIDENCE`](crate::CALIBRATION_CONFIDENCE), of the
    /// false-positive rate given `k` of `n` is at most the target. With
    /// fewer than about 3/target ham scores (3,000 at 0.1 %) no `k` passes,
    /// so the threshold is above the highest ham score seen and above the
    /// ham tail extrapolated to the target. With fewer than
    /// [`MIN_CALIBRATION_HAM`](crate::MIN_CALIBRATION_HAM) ham scores it is
    /// [`NEVER_FILE`](crate::NEVER_FILE). Never below the floor; computed
    /// when the ham scores change, not per call.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Whether a message with this score should be filed as spam: the model
    /// is ready, the sender is not a known one, and the score reaches the
    /// threshold.
    pub fn would_file(&self, score: &Score) -> bool {
        self.ready() && !score.known_sender && score.probability >= self.threshold()
    }

    /// The share of recent prequential spam scores at or above the current
    /// threshold: the recall the model can expect (`None` before any spam
    /// score was recorded).
    pub fn estimated_recall(&self) -> Option<f64> {
        self.scores[0].share_at_or_above(self.threshold())
    }

    /// The number of recorded prequential scores: `(spam, ham)`.
    pub fn calibration_scores(&self) -> (usize, usize) {
        (self.scores[0].len(), self.scores[1].len())
    }

    /// How many times the table has been halved because a counter was
    /// about to saturate.
    pub fn halvings(&self) -> u32 {
        self.halvings
    }

    /// The memory the model holds: the table (fixed: 4 × 2^`table_bits`
    /// bytes) and the calibration windows (at most 80 KB each).
    pub fn memory_bytes(&self) -> usize {
        size_of::<Model>()
            + self.table.capacity() * size_of::<[u16; 2]>()
            + self.scores.iter().map(Window::memory_bytes).sum::<usize>()
            + self.senders.memory_bytes()
    }

    /// The clues of a message: every known feature far enough from ½, the
    /// strongest [`MAX_CLUES`](crate::MAX_CLUES) kept, the [`EVIDENCE`]
    /// strongest first and in order.
    fn clues(&self, features: &Features) -> Vec<Clue> {
        /// The loads of a chunk are made first, independent of each other,
        /// so the CPU keeps many cache misses in flight; then the arithmetic.
        const CHUNK: usize = 64;
        let norm = Norm::new(self.weights[0], self.weights[1]);
        let mut clues = Vec::with_capacity(features.len().min(1024));
        for chunk in features.ids().chunks(CHUNK) {
            let mut counts = [[0u16; 2]; CHUNK];
            for (count, &id) in counts.iter_mut().zip(chunk) {
                *count = self.table[self.bucket(id)];
            }
            // Every feature is written, and the next one overwrites it
            // unless it was a clue (see `Norm::clue`).
            let mut kept = [Clue { id: 0, prob: 0.5, strength: 0.0 }; CHUNK];
            let mut k = 0;
            for (&id, &[spam, ham]) in chunk.iter().zip(&counts) {
                let (prob, clue) = norm.clue(spam, ham);
                kept[k] = Clue { id, prob, strength: (prob - 0.5).abs() };
                k += usize::from(clue);
            }
            clues.extend_from_slice(&kept[..k]);
        }
        combine::strongest(&mut clues, EVIDENCE);
        clues
    }

    #[inline]
    fn bucket(&self, id: u32) -> usize {
        (id >> self.shift) as usize
    }

    fn train(&mut self, features: &Features, label: Label) {
        let class = label.index();
        for &id in features.ids() {
            let at = self.bucket(id);
            if self.table[at][class] >= SATURATION_LIMIT {
                self.halve();
            }
            self.table[at][class] += 1;
        }
        self.examples[class] += 1;
        self.weights[class] += 1;
    }

    /// Halves every counter and the class sizes: the ratios, and so the
    /// probabilities, stay about the same, while the confidence (the
    /// counts) falls, so old evidence weighs less than new.
    fn halve(&mut self) {
        for bucket in &mut self.table {
            bucket[0] >>= 1;
            bucket[1] >>= 1;
        }
        self.weights = self.weights.map(|w| w.div_ceil(2));
        self.halvings += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> ModelConfig {
        ModelConfig { table_bits: 12, min_spam: 2, min_ham: 2, ..ModelConfig::default() }
    }

    #[test]
    fn halving_keeps_counters_in_range() {
        let mut model = Model::new(small());
        let f = Features::from_ids(vec![1 << 29, 2 << 29, 3 << 29]);
        for _ in 0..SATURATION_LIMIT as usize + 5 {
            model.train(&f, Label::Spam);
        }
        assert_eq!(model.halvings(), 1);
        assert!(model.table[model.bucket(1 << 29)][0] < SATURATION_LIMIT);
        assert_eq!(model.examples().0, SATURATION_LIMIT as u64 + 5);
    }

    #[test]
    fn table_bits_are_clamped() {
        let model = Model::new(ModelConfig { table_bits: 0, ..small() });
        assert_eq!(model.config().table_bits, MIN_TABLE_BITS);
        assert_eq!(model.table.len(), 1 << MIN_TABLE_BITS);
    }

    #[test]
    fn unknown_message_scores_one_half() {
        let model = Model::new(small());
        let score = model.classify(&Features::from_ids(vec![1, 2, 3]));
        assert_eq!(score.probability, 0.5);
        assert!(score.evidence.is_empty());
    }
}
