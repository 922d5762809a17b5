//! The statistics of classification: Robinson's per-feature probability and
//! Fisher's chi-square combination of the strongest features.

/// Robinson's `s`: the strength of the prior belief `x` about a feature,
/// counted in examples (SpamBayes' `unknown_word_strength`).
pub const ROBINSON_S: f32 = 0.45;

/// Robinson's `x`: the spam probability of a feature never seen.
pub const ROBINSON_X: f32 = 0.5;

/// A feature takes part only if its probability is at least this far from
/// ½ (SpamBayes' `minimum_prob_strength`).
pub const MIN_CLUE_STRENGTH: f32 = 0.1;

/// At most this many of the strongest features are combined (SpamBayes'
/// `max_discriminators`).
pub const MAX_CLUES: usize = 150;

/// One feature's evidence.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clue {
    pub id: u32,
    pub prob: f32,
    pub strength: f32,
}

/// How much a class's size discounts the confidence in its counts: an
/// occurrence in a class of `N` examples counts as (`smaller`/`N`)^γ
/// occurrences, where `smaller` is the smaller class. 0 is Robinson's raw
/// counts, 1 scales every class down to the smaller one.
pub const CLASS_BALANCE_EXPONENT: f32 = 0.7;

/// The class sizes the counts are normalised with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Norm {
    /// Per class (`[spam, ham]`): `smaller / N`, for the rate.
    rate: [f32; 2],
    /// Per class: (`smaller / N`)^γ, for the confidence.
    weight: [f32; 2],
}

impl Norm {
    /// The agent's classes are far from balanced (few users report spam,
    /// and unreported mail is ham), and a feature seen once among 3,000 ham
    /// is weaker evidence than one seen once among 100 spam: under equal
    /// rates the spam class would have been expected to show it 0.03 times.
    /// So the confidence (Robinson's `n`) discounts the larger class.
    pub fn new(spam_weight: u64, ham_weight: u64) -> Norm {
        let sizes = [spam_weight.max(1) as f32, ham_weight.max(1) as f32];
        let smaller = sizes[0].min(sizes[1]);
        let rate = sizes.map(|n| smaller / n);
        Norm { rate, weight: rate.map(|r| r.powf(CLASS_BALANCE_EXPONENT)) }
    }

    /// The feature's probability and whether it is a clue:
    /// seen, and at least [`MIN_CLUE_STRENGTH`] from ½ (the probability is
    /// meaningless when it is not). No branch: whether a feature is a clue
    /// is as good as random, and a mispredicted branch per feature cost
    /// more than the arithmetic.
    #[inline]
    pub fn clue(self, spam: u16, ham: u16) -> (f32, bool) {
        let (num, den) = self.fraction(spam, ham);
        // den > 0 unless the feature was never seen (both counts 0).
        (num / den, (den > 0.0) & ((num - 0.5 * den).abs() >= MIN_CLUE_STRENGTH * den))
    }

    /// Robinson's f(w) = (s·x + n·p(w)) / (s + n), where p(w) is the share
    /// of spam among the feature's occurrences after each class count is
    /// divided by its class size, and n is the number of occurrences, each
    /// discounted by its class size (see [`CLASS_BALANCE_EXPONENT`]); as a
    /// fraction: with a = spam·rₛ + ham·rₕ (the
    /// normalised occurrences), p(w) = spam·rₛ / a, so
    /// f(w) = (s·x·a + n·spam·rₛ) / ((s + n)·a).
    #[inline]
    fn fraction(self, spam: u16, ham: u16) -> (f32, f32) {
        let (spam, ham) = (f32::from(spam), f32::from(ham));
        let spam_rate = spam * self.rate[0];
        let occurrences = spam_rate + ham * self.rate[1];
        let n = spam * self.weight[0] + ham * self.weight[1];
        (ROBINSON_S * ROBINSON_X * occurrences + n * spam_rate, (ROBINSON_S + n) * occurrences)
    }
}

/// The strongest-first order of clues as one integer, ties broken by id
/// (so results never depend on the order of the input): strengths are
/// non-negative, so their bits order like the floats, and one `u64`
/// comparison replaces a float comparison and a tie-break.
#[inline]
fn order_key(clue: &Clue) -> u64 {
    (u64::from(!clue.strength.to_bits()) << 32) | u64::from(clue.id)
}

/// Keeps the [`MAX_CLUES`] strongest clues, the `sorted` strongest of them
/// first and in order (the rest follow in an order that depends only on the
/// clues, so sums over them are deterministic).
///
/// A histogram of the strengths (256 bins over [0, ½]) finds the bin where
/// the strongest [`MAX_CLUES`] end, so only the clues from that bin up are
/// ordered: linear in the number of clues, with one small sort.
pub(crate) fn strongest(clues: &mut Vec<Clue>, sorted: usize) {
    if clues.len() > MAX_CLUES {
        let bin = |c: &Clue| ((c.strength * 510.0) as usize).min(255);
        let mut histogram = [0u32; 256];
        for clue in clues.iter() {
            histogram[bin(clue)] += 1;
        }
        let (mut cutoff, mut above) = (255, 0);
        while cutoff > 0 && above + (histogram[cutoff] as usize) < MAX_CLUES {
            above += histogram[cutoff] as usize;
            cutoff -= 1;
        }
        clues.retain(|c| bin(c) >= cutoff);
        if clues.len() > MAX_CLUES {
            clues.select_nth_unstable_by_key(MAX_CLUES - 1, order_key);
            clues.truncate(MAX_CLUES);
        }
    }
    if clues.len() > sorted && sorted > 0 {
        clues.select_nth_unstable_by_key(sorted - 1, order_key);
    }
    let head = clues.len().min(sorted);
    clues[..head].sort_unstable_by_key(order_key);
}

/// Fisher's combination of the clues, in log space: the spam tail
/// S = Q(−2 Σ ln(1−f), 2n) and the ham tail H = Q(−2 Σ ln f, 2n), with Q
/// the chi-square survival function (SpamBayes' `chi2_spamprob` uses
/// 1 − S and 1 − H). A small S says the clues are too spammy to be chance,
/// a small H too hammy. Returns the evidence ln H − ln S: positive for
/// spam, 0 without clues.
pub(crate) fn fisher_evidence(clues: &[Clue]) -> f64 {
    if clues.is_empty() {
        return 0.0;
    }
    let ln_spam = ln_product(clues.iter().map(|c| 1.0 - f64::from(c.prob)));
    let ln_ham = ln_product(clues.iter().map(|c| f64::from(c.prob)));
    let dof = 2 * clues.len();
    ln_chi2q(-2.0 * ln_ham, dof) - ln_chi2q(-2.0 * ln_spam, dof)
}

/// Σ ln xᵢ for xᵢ in (0, 1], as the logs of products of 16 factors: one
/// logarithm per 16 instead of one each. A clue is at least 10⁻⁶ (Robinson's
/// smoothing with `u16` counts), so 16 factors stay far above f64's range.
fn ln_product(values: impl Iterator<Item = f64>) -> f64 {
    let mut sum = 0.0;
    let mut product = 1.0f64;
    for (i, x) in values.enumerate() {
        product *= x.max(f64::MIN_POSITIVE);
        if i % 16 == 15 {
            sum += product.ln();
            product = 1.0;
        }
    }
    sum + product.ln()
}

/// The evidence (in nats) that maps to a probability of e/(1+e) ≈ 0.73.
pub const EVIDENCE_SCALE: f64 = 8.0;

/// The probability of a [`fisher_evidence`]: a logistic of the evidence
/// scaled by [`EVIDENCE_SCALE`]. SpamBayes' (1 − S − (1 − H) + 1)/2 rounds to
/// exactly 1 for most spam and the spammiest ham alike once S falls below
/// 10⁻⁷; the scaled logistic keeps them apart up to about 130 nats, which
/// is the range a threshold has to choose in.
pub(crate) fn probability(evidence: f64) -> f32 {
    (1.0 / (1.0 + (-evidence / EVIDENCE_SCALE).exp())) as f32
}

/// ln P(χ² ≥ x2) with an even number `dof` of degrees of freedom: the log
/// of the Poisson series e^(−m) Σ m^i/i! for i < dof/2, m = x2/2. The sum is
/// taken relative to its largest term (found in closed form), by the
/// ratios m/i, so tails far below 10⁻³⁰⁰ keep their order at the cost of one
/// logarithm and a log-factorial.
fn ln_chi2q(x2: f64, dof: usize) -> f64 {
    let m = x2 / 2.0;
    if m.is_nan() || m <= 0.0 {
        return 0.0;
    }
    let terms = (dof / 2).max(1);
    // The terms grow while i < m: the largest is at i = min(⌊m⌋, terms − 1).
    let top = (m.floor() as usize).min(terms - 1);
    let ln_top = -m + top as f64 * m.ln() - ln_factorial(top);
    let mut sum = 1.0;
    let mut term = 1.0;
    for i in (1..=top).rev() {
        term *= i as f64 / m;
        sum += term;
        if term < 1e-17 {
            break;
        }
    }
    term = 1.0;
    for i in top + 1..terms {
        term *= m / i as f64;
        sum += term;
        if term < 1e-17 {
            break;
        }
    }
    (ln_top + sum.ln()).min(0.0)
}

/// ln n!, exactly summed below 16 and by Stirling's series above (error
/// below 10⁻¹²).
fn ln_factorial(n: usize) -> f64 {
    if n < 16 {
        return (2..=n).map(|i| (i as f64).ln()).sum();
    }
    let x = n as f64 + 1.0;
    (x - 0.5) * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI).ln() + 1.0 / (12.0 * x) - 1.0 / (360.0 * x * x * x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clues(probs: &[f32]) -> Vec<Clue> {
        probs.iter().enumerate().map(|(i, &p)| Clue { id: i as u32, prob: p, strength: (p - 0.5).abs() }).collect()
    }

    #[test]
    fn chi2q_matches_known_values() {
        // 2 dof: Q = e^(−x/2).
        assert!((ln_chi2q(2.0, 2) + 1.0).abs() < 1e-12);
        // 4 dof at x = 9.4877: the 5 % critical value.
        assert!((ln_chi2q(9.4877, 4).exp() - 0.05).abs() < 1e-4);
        // Far tails stay finite and ordered.
        assert!(ln_chi2q(20_000.0, 300) < ln_chi2q(10_000.0, 300));
        assert!(ln_chi2q(20_000.0, 300).is_finite());
        // Against the plain series where it does not underflow.
        for (x2, dof) in [(50.0, 20), (300.0, 300), (600.0, 300), (10.0, 300), (1.0, 2)] {
            let m: f64 = x2 / 2.0;
            let (mut term, mut sum) = ((-m).exp(), (-m).exp());
            for i in 1..dof / 2 {
                term *= m / i as f64;
                sum += term;
            }
            let expect = sum.min(1.0).ln();
            assert!((ln_chi2q(x2, dof) - expect).abs() < 1e-9 * expect.abs().max(1.0), "{x2} {dof}");
        }
        let exact: f64 = (2..=40).map(|i| (i as f64).ln()).sum();
        assert!((ln_factorial(40) - exact).abs() < 1e-10);
    }

    #[test]
    fn fisher_is_symmetric_and_ordered() {
        assert_eq!(fisher_evidence(&[]), 0.0);
        assert_eq!(probability(0.0), 0.5);
        let spam = fisher_evidence(&clues(&[0.99, 0.95, 0.9]));
        let ham = fisher_evidence(&clues(&[0.01, 0.05, 0.1]));
        assert!(spam > 0.0 && ham < 0.0);
        assert!((spam + ham).abs() < 1e-5, "{spam} {ham}");
        let strong = fisher_evidence(&clues(&[0.999; 150]));
        assert!(strong > spam && probability(strong) > probability(spam));
    }

    #[test]
    fn strongest_keeps_the_strongest_in_order() {
        let mut all: Vec<Clue> = (0..1_000u32)
            .map(|i| {
                let prob = 0.5 + ((i * 7919) % 1000) as f32 / 2000.0;
                Clue { id: i, prob, strength: (prob - 0.5).abs() }
            })
            .collect();
        let mut expect = all.clone();
        expect.sort_by_key(order_key);
        expect.truncate(MAX_CLUES);
        strongest(&mut all, MAX_CLUES);
        assert_eq!(all.iter().map(|c| c.id).collect::<Vec<_>>(), expect.iter().map(|c| c.id).collect::<Vec<_>>());
    }

    #[test]
    fn robinson_normalises_class_sizes() {
        let norm = Norm::new(10, 1000);
        // Seen in every spam and in 1 % of ham: strongly spammy.
        assert!(norm.clue(10, 10).0 > 0.9);
        // One sighting in the smaller class is some evidence, one in the
        // larger class hardly any.
        let spam_once = norm.clue(1, 0).0;
        assert!(spam_once > 0.8 && spam_once < 0.85);
        let ham_once = norm.clue(0, 1).0;
        assert!(ham_once > 0.4 && ham_once < 0.5);
    }
}
