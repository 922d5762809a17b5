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

/// Ham scores needed before any threshold is given: with fewer, the
/// spammiest ham of the organisation has not been seen yet.
pub const MIN_CALIBRATION_HAM: usize = 200;

/// The ham threshold: the lowest score `t` such that, with `k` of the `n`
/// recent ham scores at or above `t`, the one-sided Clopper–Pearson upper
/// bound (confidence [`CALIBRATION_CONFIDENCE`]) of the false-positive rate
/// is at most `target`. With too few ham scores for any bound to reach the
/// target (fewer than about 3/target), the ham tail is extrapolated
/// ([`tail_quantile`]) and the threshold is the higher of that and just
/// above the highest ham score seen: "above every ham seen" alone files
/// about 1/(n+1) of ham, far above the target while n is small.
/// [`NEVER_FILE`] with fewer than [`MIN_CALIBRATION_HAM`] ham scores.
pub(crate) fn ham_threshold(ham: &Window, target: f64) -> f32 {
    if ham.len() < MIN_CALIBRATION_HAM {
        return NEVER_FILE;
    }
    match allowed_exceedances(ham.len(), target, 1.0 - CALIBRATION_CONFIDENCE) {
        Some(k) => ham.above_all_but(k),
        None => ham.above_all_but(0).max(tail_quantile(&ham.sorted, target)),
    }
}

/// Scores at the extremes, kept apart in the log-odds domain.
const LOGIT_CLAMP: f64 = 1e-7;

fn logit(p: f32) -> f64 {
    let p = f64::from(p).clamp(LOGIT_CLAMP, 1.0 - LOGIT_CLAMP);
    (p / (1.0 - p)).ln()
}

/// The score the share `target` of ham is estimated to reach, by peaks over
/// threshold: in log-odds, the excesses of the highest tenth of the `sorted`
/// scores (at least 10) over the next one are taken as exponential with
/// their mean β, so P(Z > t) ≈ (k/n)·e^(−(t−u)/β) and
/// t = u + β·ln(k / (n·target)). A ham tail that reaches far (newsletters
/// and notifications that look like spam) gives a large β and a high
/// threshold; a tail of ham that is all alike, a low one.
fn tail_quantile(sorted: &[f32], target: f64) -> f32 {
    let n = sorted.len();
    let k = (n / 10).max(10);
    if n <= k || target <= 0.0 {
        return NEVER_FILE;
    }
    let u = logit(sorted[n - k - 1]);
    let beta = sorted[n - k..].iter().map(|&s| logit(s) - u).sum::<f64>() / k as f64;
    let ratio = k as f64 / (n as f64 * target);
    if ratio <= 1.0 {
        return 0.0;
    }
    let t = u + beta * ratio.ln();
    (1.0 / (1.0 + (-t).exp())) as f32
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
        for i in 0..MIN_CALIBRATION_HAM - 1 {
            w.push(i as f32 / MIN_CALIBRATION_HAM as f32 / 2.0);
        }
        assert_eq!(ham_threshold(&w, 0.001), NEVER_FILE, "too few ham to say");
        w.push(0.97);
        let t = ham_threshold(&w, 0.001);
        assert!(t > 0.97, "{t}");
    }

    /// With few ham, the extrapolated tail keeps the share of ham filed near
    /// the target, where "above every ham seen" files about 1/(n+1): ham
    /// scores whose log-odds are logistic (a long tail), 300 seen, the share
    /// of the next 200,000 at or above the threshold, over 20 seeds.
    #[test]
    fn with_few_ham_the_extrapolated_tail_keeps_near_the_target() {
        let (mut above, mut above_max, mut total) = (0u64, 0u64, 0u64);
        for seed in 1..=20u64 {
            let mut state = seed;
            let mut draw = || {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = ((state >> 11) as f64 / (1u64 << 53) as f64).clamp(1e-12, 1.0 - 1e-12);
                // Log-odds −6 + logistic noise of scale 1.5.
                let z = -6.0 + 1.5 * (u / (1.0 - u)).ln();
                (1.0 / (1.0 + (-z).exp())) as f32
            };
            let mut w = Window::default();
            for _ in 0..300 {
                w.push(draw());
            }
            let t = ham_threshold(&w, 0.001);
            let max_seen = w.above_all_but(0);
            for _ in 0..10_000 {
                let s = draw();
                above += u64::from(s >= t);
                above_max += u64::from(s >= max_seen);
                total += 1;
            }
        }
        let rate = above as f64 / total as f64;
        let rate_max = above_max as f64 / total as f64;
        assert!(rate < 0.002, "extrapolated: {rate}");
        assert!(rate < rate_max / 2.0, "extrapolated {rate} vs above every ham seen {rate_max}");
    }
}
