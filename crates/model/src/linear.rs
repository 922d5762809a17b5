//! The second classifier of the model: a linear support-vector machine over
//! the same hashed features, fitted in batch on the stored examples, with a
//! threshold above every held-out ham score. The agent files when either
//! classifier is sure.
//!
//! Why beside the counting classifier ([`crate::Model`]): on the
//! development corpus, with 30 % of spam reported and ham learnt late (the
//! prequential `model_evaluate`), the Robinson–Fisher scores rank the
//! newsletters and notifications of hard ham among much of the spam, and a
//! threshold that files almost no ham files about half of the spam. A
//! maximum-margin linear model on the same features weighs each feature
//! against all the others at once instead of one at a time: with it the
//! model files 0.59–0.63 of the second half's spam instead of 0.52–0.55, at
//! the same ham rate (figures in `docs/performance.md`). It is not
//! incremental, so it is refitted from the examples when they change (the
//! agent does it once the model has settled); forgetting an example is
//! exact because the next fit does not see it.
//!
//! Fitting is dual coordinate descent for the L2-regularised squared-hinge
//! loss (Hsieh et al., ICML 2008, as in LIBLINEAR), with each class's cost
//! scaled by the other's size (a balanced fit) and each example's features
//! scaled to unit length. The threshold is calibrated by cross-validation:
//! each example is scored by a fit on the other [`FOLDS`]−1 parts, and the
//! model files only above the highest such ham score, by a margin that
//! shrinks as more ham is held out ([`MARGIN_SCALE`]). Cost and memory are
//! bounded: at most [`MAX_FIT_EXAMPLES`] examples (the newest) and
//! [`MAX_EPOCHS`] passes, weights in a fixed table of 2^[`WEIGHT_BITS`]
//! `f32`s (4 MiB).

use crate::Label;
use crate::features::Features;

/// The weight table has 2^bits entries; a feature's entry is the top bits
/// of its id.
pub const WEIGHT_BITS: u32 = 20;

/// Cross-validation parts for the threshold.
pub const FOLDS: usize = 5;

/// At most this many examples (the newest) are fitted: bounds the fit's
/// time (about 6 fits of 30 passes) and its memory (the examples' ids).
pub const MAX_FIT_EXAMPLES: usize = 8_000;

/// At most this many passes over the examples per fit.
pub const MAX_EPOCHS: usize = 30;

/// The regularisation cost `C` (LIBLINEAR's and scikit-learn's default).
pub const COST: f32 = 1.0;

/// Fewer held-out ham scores than this give no threshold: the model does
/// not file.
pub const MIN_HELD_OUT_HAM: usize = 200;

/// How far above the highest held-out ham score the threshold sits, in
/// decision units (the margin is 1): this divided by the square root of the
/// number of held-out ham scores (0.35 above the highest of 200, 0.1 of
/// 2,500). The highest of n ham scores lets about 1/(n+1) of new ham through
/// and says less about the tail the fewer there are; on the development
/// corpus's prequential evaluation this keeps the ham filed where the
/// counting classifier alone files it, whether all ham or a third of it is
/// learnt (`docs/performance.md`).
pub const MARGIN_SCALE: f32 = 5.0;

/// Stop when no example's projected gradient exceeds this.
const TOLERANCE: f32 = 0.1;

/// How a decision value maps to a probability: p = 1 / (1 + e^(−SCALE·d)).
/// The margin (d = 1) is 0.98.
pub const DECISION_SCALE: f32 = 4.0;

/// A fitted linear model and its calibrated threshold.
#[derive(Clone, Debug)]
pub struct Linear {
    weights: Vec<f32>,
    bias: f32,
    /// The decision value to beat (`None`: too few held-out ham scores).
    threshold: Option<f32>,
    /// Examples fitted, per class (`[spam, ham]`).
    fitted: [usize; 2],
    /// Held-out ham scores the threshold was chosen from.
    held_out_ham: usize,
}

/// One example prepared for fitting: its weight-table entries, its scale
/// (1/√n) and its sign (+1 spam, −1 ham).
struct Row {
    entries: Vec<u32>,
    scale: f32,
    sign: f32,
}

impl Row {
    /// The example's decision value under `weights` and `bias`.
    fn decision(&self, weights: &[f32], bias: f32) -> f32 {
        decision_of(weights, bias, self.entries.iter().copied(), self.scale)
    }
}

fn entry(id: u32) -> u32 {
    id >> (32 - WEIGHT_BITS)
}

/// Each message's ids count as a vector of unit length: 1/√n each.
fn unit_scale(ids: usize) -> f32 {
    if ids == 0 { 0.0 } else { 1.0 / (ids as f32).sqrt() }
}

/// The decision value: the weights of a message's entries, scaled, plus
/// the bias.
fn decision_of(weights: &[f32], bias: f32, entries: impl Iterator<Item = u32>, scale: f32) -> f32 {
    entries.map(|e| weights[e as usize]).sum::<f32>() * scale + bias
}

impl Linear {
    /// Fits on `examples` (oldest first; only the newest
    /// [`MAX_FIT_EXAMPLES`] are used) and calibrates the threshold: above
    /// every held-out ham score by [`MARGIN_SCALE`]/√(held-out ham), and
    /// never below 0.
    pub fn fit(examples: &[(Features, Label)]) -> Linear {
        let examples = &examples[examples.len().saturating_sub(MAX_FIT_EXAMPLES)..];
        let rows: Vec<Row> = examples.iter().map(|(features, label)| row(features, *label)).collect();
        let all: Vec<usize> = (0..rows.len()).collect();
        let mut linear = Linear::train(&rows, &all);
        let mut held_out = Vec::new();
        for fold in 0..FOLDS {
            let (test, train): (Vec<usize>, Vec<usize>) = all.iter().partition(|&&i| fold_of(i) == fold);
            let part = Linear::train(&rows, &train);
            held_out.extend(
                test.into_iter().filter(|&i| rows[i].sign < 0.0).map(|i| rows[i].decision(&part.weights, part.bias)),
            );
        }
        linear.held_out_ham = held_out.len();
        let margin = MARGIN_SCALE / (held_out.len().max(1) as f32).sqrt();
        linear.threshold =
            (held_out.len() >= MIN_HELD_OUT_HAM).then(|| held_out.iter().copied().fold(0.0f32, f32::max) + margin);
        linear
    }

    /// A model that files nothing (nothing fitted yet).
    pub fn empty() -> Linear {
        Linear { weights: Vec::new(), bias: 0.0, threshold: None, fitted: [0, 0], held_out_ham: 0 }
    }

    fn train(rows: &[Row], use_rows: &[usize]) -> Linear {
        let mut weights = vec![0.0f32; 1 << WEIGHT_BITS];
        let mut bias = 0.0f32;
        let spam = use_rows.iter().filter(|&&i| rows[i].sign > 0.0).count();
        let ham = use_rows.len() - spam;
        let fitted = [spam, ham];
        if spam == 0 || ham == 0 {
            return Linear { weights, bias, threshold: None, fitted, held_out_ham: 0 };
        }
        // Balanced costs: each class weighs as much as the other in all.
        let total = use_rows.len() as f32;
        let cost = |sign: f32| COST * total / (2.0 * if sign > 0.0 { spam as f32 } else { ham as f32 });
        let mut alpha = vec![0.0f32; use_rows.len()];
        let mut order: Vec<usize> = (0..use_rows.len()).collect();
        let mut rng = 0x5eed_u64;
        for _ in 0..MAX_EPOCHS {
            shuffle(&mut order, &mut rng);
            let mut largest = 0.0f32;
            for &k in &order {
                let row = &rows[use_rows[k]];
                let diagonal = 1.0 / (2.0 * cost(row.sign));
                let gradient = row.sign * row.decision(&weights, bias) - 1.0 + diagonal * alpha[k];
                let projected = if alpha[k] > 0.0 { gradient } else { gradient.min(0.0) };
                largest = largest.max(projected.abs());
                if projected != 0.0 {
                    // ‖x‖² = 1 for the features, plus 1 for the bias.
                    let updated = (alpha[k] - gradient / (2.0 + diagonal)).max(0.0);
                    let step = (updated - alpha[k]) * row.sign;
                    alpha[k] = updated;
                    for &e in &row.entries {
                        weights[e as usize] += step * row.scale;
                    }
                    bias += step;
                }
            }
            if largest < TOLERANCE {
                break;
            }
        }
        Linear { weights, bias, threshold: None, fitted, held_out_ham: 0 }
    }

    /// The decision value of a message: positive leans spam; 0 without a fit.
    pub fn decision(&self, features: &Features) -> f32 {
        if self.weights.is_empty() || features.is_empty() {
            return 0.0;
        }
        decision_of(&self.weights, self.bias, features.ids().iter().map(|&id| entry(id)), unit_scale(features.len()))
    }

    /// The decision value as a probability ([`DECISION_SCALE`]).
    pub fn probability(decision: f32) -> f32 {
        1.0 / (1.0 + (-DECISION_SCALE * decision).exp())
    }

    /// The probability to beat, or above 1 when the model may not file.
    pub fn threshold(&self) -> f32 {
        self.threshold.map_or(crate::NEVER_FILE, Linear::probability)
    }

    /// Whether a message with this decision value is filed.
    pub fn files(&self, decision: f32) -> bool {
        self.threshold.is_some_and(|t| decision > t)
    }

    /// Examples fitted, per class (`[spam, ham]`).
    pub fn fitted(&self) -> [usize; 2] {
        self.fitted
    }

    /// Held-out ham scores the threshold was chosen from.
    pub fn held_out_ham(&self) -> usize {
        self.held_out_ham
    }

    /// The features that pushed this message most towards spam, with their
    /// weight as a probability, strongest first (ids only, never text).
    pub fn evidence(&self, features: &Features, count: usize) -> Vec<(u32, f32)> {
        if self.weights.is_empty() {
            return Vec::new();
        }
        let mut weighted: Vec<(u32, f32)> =
            features.ids().iter().map(|&id| (id, self.weights[entry(id) as usize])).collect();
        weighted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        weighted.truncate(count);
        weighted.into_iter().map(|(id, w)| (id, Linear::probability(w))).collect()
    }

    /// Memory the weights take.
    pub fn memory_bytes(&self) -> usize {
        self.weights.len() * std::mem::size_of::<f32>()
    }
}

fn row(features: &Features, label: Label) -> Row {
    let entries: Vec<u32> = features.ids().iter().map(|&id| entry(id)).collect();
    let scale = unit_scale(entries.len());
    Row { entries, scale, sign: if label == Label::Spam { 1.0 } else { -1.0 } }
}

/// The cross-validation part of an example: spread by a hash of its index,
/// so neighbours in time fall in different parts.
fn fold_of(index: usize) -> usize {
    ((index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize % FOLDS
}

/// A seeded Fisher–Yates shuffle (splitmix64): fits are reproducible.
fn shuffle(order: &mut [usize], state: &mut u64) {
    for i in (1..order.len()).rev() {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        order.swap(i, ((u128::from(z) * (i as u128 + 1)) >> 64) as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(words: &[u64]) -> Features {
        Features::extract(words, &[])
    }

    /// Spam shares words 1–5, ham words 6–10; each has words of its own.
    fn examples(spam: u64, ham: u64) -> Vec<(Features, Label)> {
        let mut out = Vec::new();
        for i in 0..spam.max(ham) {
            if i < spam {
                out.push((message(&[1, 2, 3, 4, 5, 1_000 + i, 2_000 + i]), Label::Spam));
            }
            if i < ham {
                out.push((message(&[6, 7, 8, 9, 10, 3_000 + i, 4_000 + i]), Label::Ham));
            }
        }
        out
    }

    #[test]
    fn separates_what_it_learnt_and_files_above_every_held_out_ham() {
        let linear = Linear::fit(&examples(60, 300));
        assert_eq!(linear.fitted(), [60, 300]);
        assert_eq!(linear.held_out_ham(), 300);
        let spam = linear.decision(&message(&[1, 2, 3, 4, 5, 99_999]));
        let ham = linear.decision(&message(&[6, 7, 8, 9, 10, 99_999]));
        assert!(spam > 0.5 && ham < -0.5, "{spam} {ham}");
        assert!(linear.files(spam) && !linear.files(ham));
        assert!(linear.threshold() < Linear::probability(spam));
        // The strongest evidence of a spam message leans spam.
        assert!(linear.evidence(&message(&[1, 2, 3, 4, 5]), 3).iter().all(|&(_, p)| p > 0.5));
    }

    #[test]
    fn too_little_ham_gives_no_threshold() {
        let linear = Linear::fit(&examples(60, 150));
        assert!(linear.threshold() > 1.0);
        assert!(!linear.files(linear.decision(&message(&[1, 2, 3, 4, 5]))));
        assert!(!Linear::empty().files(10.0));
    }

    #[test]
    fn fits_are_reproducible_and_bounded() {
        let a = Linear::fit(&examples(40, 250));
        let b = Linear::fit(&examples(40, 250));
        assert_eq!(a.weights, b.weights);
        assert_eq!(a.threshold, b.threshold);
        let many: Vec<(Features, Label)> =
            examples(MAX_FIT_EXAMPLES as u64, 10).into_iter().chain(examples(0, 300)).collect();
        let linear = Linear::fit(&many);
        assert_eq!(linear.fitted()[0] + linear.fitted()[1], MAX_FIT_EXAMPLES);
        assert_eq!(linear.memory_bytes(), 4 << 20);
    }
}
