//! The calibration state: the prequential scores of recent ham and spam,
//! and the filing threshold derived from the ham scores.

use std::collections::VecDeque;

/// The number of most recent prequential scores kept per class. Older
/// scores came from an older (weaker) model, so a window keeps the
/// threshold about the model as it is now.
pub const CALIBRATION_WINDOW: usize = 10_000;

/// The confidence of the upper bound on the false-positive rate that the
/// threshold is chosen with.
pub const CALIBRATION_CONFIDENCE: f64 = 0.95;

/// The threshold when nothing may be filed: above every probability.
pub const NEVER_FILE: f32 = 1.000_000_1;

/// Recent scores of one class, in arrival order and sorted.
#[derive(Clone, Debug, Default)]
pub(crate) struct Window {
    arrival: VecDeque<f32>,
    sorted: Vec<f32>,
}

impl Window {
    pub fn push(&mut self, score: f32) {
        // A score is in [0, 1] by construction; a NaN would break the order.
        let score = if score.is_nan() { 1.0 } else { score.clamp(0.0, 1.0) };
        if self.arrival.len() == CALIBRATION_WINDOW
            && let Some(old) = self.arrival.pop_front()
        {
            let at = self.sorted.partition_point(|&s| s < old);
            self.sorted.remove(at);
        }
        self.arrival.push_back(score);
        let at = self.sorted.partition_point(|&s| s < score);
        self.sorted.insert(at, score);
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// The scores in arrival order (for saving).
    pub fn arrival(&self) -> impl ExactSizeIterator<Item = f32> + '_ {
        self.arrival.iter().copied()
    }

    /// The share of scores at or above `threshold`.
    pub fn share_at_or_above(&self, threshold: f32) -> Option<f64> {
        if self.sorted.is_empty() {
            return None;
        }
        let below = self.sorted.partition_point(|&s| s < threshold);
        Some((self.sorted.len() - below) as f64 / self.sorted.len() as f64)
    }

    /// The lowest threshold at which at most `k` scores are at or above it.
    fn above_all_but(&self, k: usize) -> f32 {
        match self.sorted.len().checked_sub(k + 1) {
            Some(at) => self.sorted[at].next_up(),
            None => 0.0,
        }
    }

    pub fn memory_bytes(&self) -> usize {
        (self.arrival.capacity() + self.sorted.capacity()) * size_of::<f32>()
    }
}

/// The ham threshold: the lowest score `t` such that, with `k` of the `n`
/// recent ham scores at or above `t`, the one-sided Clopper–Pearson upper
/// bound (confidence [`CALIBRATION_CONFIDENCE`]) of the false-positive rate
/// is at most `target`. With too few ham scores for any bound to reach the
/// target (fewer than about 3/target) no ham may be above it: the threshold
/// is just above the highest ham score seen. [`NEVER_FILE`] with no ham.
pub(crate) fn ham_threshold(ham: &Window, target: f64) -> f32 {
    match allowed_exceedances(ham.len(), target, 1.0 - CALIBRATION_CONFIDENCE) {
        Some(k) => ham.above_all_but(k),
        None if ham.len() == 0 => NEVER_FILE,
        None => ham.above_all_but(0),
    }
}

/// The largest `k` with P(Binomial(n, target) ≤ k) ≤ `alpha`: then the
/// Clopper–Pearson upper bound for `k` exceedances in `n` is ≤ target.
/// `None` when even `k = 0` does not qualify. Cost: O(k) ≤ O(n).
fn allowed_exceedances(n: usize, target: f64, alpha: f64) -> Option<usize> {
    if n == 0 || target.is_nan() || target <= 0.0 {
        return None;
    }
    let target = target.min(1.0 - 1e-9);
    let ln_odds = (target / (1.0 - target)).ln();
    let mut ln_pmf = n as f64 * (-target).ln_1p();
    let mut cdf = ln_pmf.exp();
    if cdf > alpha {
        return None;
    }
    let mut k = 0;
    while k + 1 < n {
        ln_pmf += ((n - k) as f64 / (k + 1) as f64).ln() + ln_odds;
        let next = cdf + ln_pmf.exp();
        if next > alpha {
            break;
        }
        cdf = next;
        k += 1;
    }
    Some(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_exceedance_allowed_below_three_over_target() {
        assert_eq!(allowed_exceedances(2_000, 0.001, 0.05), None);
        assert_eq!(allowed_exceedances(2_990, 0.001, 0.05), None);
        assert_eq!(allowed_exceedances(3_000, 0.001, 0.05), Some(0));
        // 100 000 ham at 0.1 %: about 100 expected, the bound allows fewer.
        let k = allowed_exceedances(100_000, 0.001, 0.05).unwrap();
        assert!((80..100).contains(&k), "{k}");
    }

    #[test]
    fn window_keeps_the_most_recent_scores() {
        let mut w = Window::default();
        for i in 0..CALIBRATION_WINDOW + 10 {
            w.push(i as f32 / 1e5);
        }
        assert_eq!(w.len(), CALIBRATION_WINDOW);
        assert_eq!(w.sorted[0], 10.0 / 1e5);
        assert!(w.sorted.windows(2).all(|p| p[0] <= p[1]));
    }

    /// Prequential ham scores from a known distribution (uniform on [0, 1]):
    /// the threshold lies above the (1 − target) quantile, for every seed.
    #[test]
    fn threshold_is_above_the_target_quantile() {
        for seed in 1..=20u64 {
            for target in [0.001, 0.01] {
                let mut state = seed;
                let mut w = Window::default();
                for _ in 0..CALIBRATION_WINDOW {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    w.push((state >> 40) as f32 / (1u64 << 24) as f32);
                }
                let t = ham_threshold(&w, target);
                assert!(f64::from(t) > 1.0 - target, "seed {seed} target {target}: {t}");
                assert!(f64::from(t) < 1.0 - target / 4.0, "seed {seed} target {target}: {t} is needlessly high");
            }
        }
    }

    #[test]
    fn threshold_is_above_every_ham_with_few_ham() {
        let mut w = Window::default();
        assert_eq!(ham_threshold(&w, 0.001), NEVER_FILE);
        for s in [0.1, 0.5, 0.97, 0.2] {
            w.push(s);
        }
        assert_eq!(ham_threshold(&w, 0.001), 0.97f32.next_up());
    }
}
