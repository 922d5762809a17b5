//! Reputation arithmetic: how much a reporter is trusted, how reports add up
//! to evidence, and when evidence is a verdict. Pure functions over plain
//! data, so every rule is unit-tested without a store.
//!
//! The model, in one paragraph: every reporter starts at a neutral trust. A
//! report weighs the reporter's *current* trust, halved every
//! `half_life_days`. Reports are summed per class *per organisation*, and an
//! organisation's sum is capped: its most trusted reporter counts fully, each
//! further reporter of the same organisation adds a fraction, up to a small
//! cap — fifty fresh accounts of one tenant are not fifty witnesses. A message
//! is spam when the spam and phishing evidence reaches `threshold`, unless a
//! not-spam consensus (`ham_threshold`, at least half the spam evidence)
//! unblocks it. When evidence from at least two organisations (or a feed)
//! first reaches a threshold, that is consensus: the reporters who said so
//! before are confirmed (trust rises), those who said the opposite are
//! contradicted (trust falls). Confirmations are only given once per entry and
//! only for reports made before consensus, so agreeing with what is already
//! known earns nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Class, Plan, Reporter, ReporterId, Timestamp};

/// The parameters of the reputation model. Defaults were chosen with the
/// evaluation harness (`docs/network.md`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustConfig {
    /// Trust of a new reporter.
    pub initial: f64,
    /// Lowest trust.
    pub min: f64,
    /// Highest trust a user can earn.
    pub max: f64,
    /// Trust gained per confirmed report.
    pub confirm_gain: f64,
    /// Trust lost per contradicted report.
    pub contradict_loss: f64,
    /// Trust of reporters of feed organisations (spam traps).
    pub feed: f64,
    /// Spam plus phishing evidence that makes a message spam.
    pub threshold: f64,
    /// Not-spam evidence that unblocks a message (it must also be at least
    /// half the spam evidence).
    pub ham_threshold: f64,
    /// Share of their weight that each further reporter of the same
    /// organisation adds.
    pub same_org_share: f64,
    /// Most that further reporters of one organisation can add together.
    pub same_org_cap: f64,
    /// Days during which a report keeps its full weight.
    pub full_weight_days: f64,
    /// Days after which a report past its full-weight days weighs half.
    pub half_life_days: f64,
    /// Organisations (or one feed) whose agreement makes a consensus that
    /// credits its reporters. A private network of one organisation sets 1.
    pub consensus_organisations: u32,
    /// An organisation's own reports decide for its own checks: a message
    /// the network as a whole calls clean is spam for the organisation
    /// whose own spam evidence (summed as everywhere: its most trusted
    /// reporter fully, the others a share) reaches this and outweighs its
    /// own not-spam evidence. 1 (the default): one of its users in good
    /// standing; 0 turns it off. Never affects other organisations.
    pub own_threshold: f64,
}

impl Default for TrustConfig {
    fn default() -> TrustConfig {
        TrustConfig {
            initial: 1.0,
            min: 0.0,
            max: 5.0,
            confirm_gain: 0.25,
            contradict_loss: 1.0,
            feed: 5.0,
            threshold: 2.0,
            ham_threshold: 2.0,
            same_org_share: 0.25,
            same_org_cap: 0.5,
            full_weight_days: 7.0,
            half_life_days: 30.0,
            consensus_organisations: 2,
            own_threshold: 1.0,
        }
    }
}

impl TrustConfig {
    /// Problems with the values, by key.
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let mut positive = |name: &str, value: f64| {
            if !(value.is_finite() && value > 0.0) {
                problems.push(format!("{prefix}.{name}: must be a positive number, got {value}"));
            }
        };
        positive("initial", self.initial);
        positive("max", self.max);
        positive("feed", self.feed);
        positive("threshold", self.threshold);
        positive("ham_threshold", self.ham_threshold);
        positive("half_life_days", self.half_life_days);
        if !(self.full_weight_days.is_finite() && self.full_weight_days >= 0.0) {
            problems
                .push(format!("{prefix}.full_weight_days: must be zero or positive, got {}", self.full_weight_days));
        }
        if !(self.min.is_finite() && 0.0 <= self.min && self.min <= self.initial && self.initial <= self.max) {
            problems.push(format!(
                "{prefix}: needs 0 <= min <= initial <= max (got {}, {}, {})",
                self.min, self.initial, self.max
            ));
        }
        for (name, value) in [("confirm_gain", self.confirm_gain), ("contradict_loss", self.contradict_loss)] {
            if !(value.is_finite() && value >= 0.0) {
                problems.push(format!("{prefix}.{name}: must be zero or positive, got {value}"));
            }
        }
        if !(0.0..=1.0).contains(&self.same_org_share) {
            problems.push(format!("{prefix}.same_org_share: must be between 0 and 1, got {}", self.same_org_share));
        }
        if !(self.own_threshold.is_finite() && self.own_threshold >= 0.0) {
            problems.push(format!("{prefix}.own_threshold: must be zero or positive, got {}", self.own_threshold));
        }
        if self.consensus_organisations == 0 {
            problems.push(format!("{prefix}.consensus_organisations: must be at least 1"));
        }
        if !(self.same_org_cap.is_finite() && self.same_org_cap >= 0.0) {
            problems.push(format!("{prefix}.same_org_cap: must be zero or positive, got {}", self.same_org_cap));
        }
        problems
    }

    /// A reporter's current trust.
    pub fn trust(&self, reporter: &Reporter, plan: Plan) -> f64 {
        if plan == Plan::Feed {
            return self.feed;
        }
        let earned =
            self.confirm_gain * f64::from(reporter.confirmed) - self.contradict_loss * f64::from(reporter.contradicted);
        (self.initial + earned).clamp(self.min, self.max)
    }

    /// The weight of a report made at `at` by a reporter of `trust`, at `now`:
    /// full for `full_weight_days`, then halved every `half_life_days`.
    pub fn weight(&self, trust: f64, at: Timestamp, now: Timestamp) -> f64 {
        let age_days = (now - at).max(0) as f64 / 86_400.0;
        let decaying = (age_days - self.full_weight_days).max(0.0);
        trust * 0.5f64.powf(decaying / self.half_life_days)
    }
}

/// One report as the tally sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Vote {
    /// Who.
    pub reporter: ReporterId,
    /// Their organisation.
    pub org: u32,
    /// Their organisation is a feed.
    pub feed: bool,
    /// What they said.
    pub class: Class,
    /// Trust after decay.
    pub weight: f64,
}

/// Evidence summed over the reports that match a message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Spam evidence.
    pub spam: f64,
    /// Phishing evidence.
    pub phish: f64,
    /// Not-spam evidence.
    pub ham: f64,
    /// Distinct reporters.
    pub reporters: u32,
    /// Distinct organisations.
    pub organisations: u32,
    /// Organisations (or feeds) behind spam or phishing reports.
    pub bad_organisations: u32,
    /// Organisations (or feeds) behind not-spam reports.
    pub ham_organisations: u32,
    /// A feed reported spam or phishing.
    pub bad_feed: bool,
    /// A feed reported not spam.
    pub ham_feed: bool,
}

/// What a tally means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not enough evidence, or none.
    Clean,
    /// Not-spam consensus overrides spam evidence.
    Unblocked,
    /// Spam.
    Spam,
    /// Phishing.
    Phish,
}

impl Tally {
    /// Sums votes (one per reporter: callers deduplicate) with the
    /// per-organisation cap.
    pub fn of(votes: &[Vote], config: &TrustConfig) -> Tally {
        let mut tally = Tally::default();
        // (org, class) -> weights of its reporters. Ordered maps: the sums
        // must not depend on iteration order, or a tally at exactly the
        // threshold would flip between runs.
        let mut groups: BTreeMap<(u32, Class), Vec<f64>> = BTreeMap::new();
        let mut orgs: BTreeMap<u32, (bool, bool)> = BTreeMap::new();
        for vote in votes {
            groups.entry((vote.org, vote.class)).or_default().push(vote.weight);
            let seen = orgs.entry(vote.org).or_default();
            match vote.class {
                Class::Ham => {
                    seen.1 = true;
                    tally.ham_feed |= vote.feed;
                }
                Class::Spam | Class::Phish => {
                    seen.0 = true;
                    tally.bad_feed |= vote.feed;
                }
            }
        }
        for ((_, class), weights) in groups {
            let mass = org_mass(&weights, config);
            match class {
                Class::Spam => tally.spam += mass,
                Class::Phish => tally.phish += mass,
                Class::Ham => tally.ham += mass,
            }
        }
        tally.reporters = votes.len() as u32;
        tally.organisations = orgs.len() as u32;
        tally.bad_organisations = orgs.values().filter(|(bad, _)| *bad).count() as u32;
        tally.ham_organisations = orgs.values().filter(|(_, ham)| *ham).count() as u32;
        tally
    }

    /// Spam plus phishing evidence.
    pub fn bad(&self) -> f64 {
        self.spam + self.phish
    }

    /// The verdict.
    pub fn outcome(&self, config: &TrustConfig) -> Outcome {
        if at_least(self.ham, config.ham_threshold) && at_least(self.ham * 2.0, self.bad()) {
            return if self.bad() > 0.0 { Outcome::Unblocked } else { Outcome::Clean };
        }
        if at_least(self.bad(), config.threshold) {
            return if self.phish > self.spam { Outcome::Phish } else { Outcome::Spam };
        }
        Outcome::Clean
    }

    /// How sure a spam verdict is, in (0, 1): 0.5 at the threshold, rising
    /// with more evidence, lowered by not-spam evidence.
    pub fn confidence(&self, config: &TrustConfig) -> f32 {
        let net = (self.bad() - self.ham).max(0.0);
        (net / (net + config.threshold)) as f32
    }

    /// The verdict of an organisation's own evidence for its own checks
    /// (`self` tallied from its votes only): spam or phishing when its bad
    /// evidence reaches `own_threshold` and is more than its not-spam
    /// evidence; `None` otherwise, or when `own_threshold` is 0.
    pub fn own_outcome(&self, config: &TrustConfig) -> Option<Outcome> {
        let decides = config.own_threshold > 0.0 && at_least(self.bad(), config.own_threshold) && self.bad() > self.ham;
        decides.then_some(if self.phish > self.spam { Outcome::Phish } else { Outcome::Spam })
    }

    /// How sure an organisation's own spam verdict is: as
    /// [`confidence`](Tally::confidence), against `own_threshold`.
    pub fn own_confidence(&self, config: &TrustConfig) -> f32 {
        let net = (self.bad() - self.ham).max(0.0);
        (net / (net + config.own_threshold)) as f32
    }

    /// Whether the spam evidence is a consensus: over the threshold and from
    /// `consensus_organisations` organisations or a feed.
    pub fn bad_consensus(&self, config: &TrustConfig) -> bool {
        self.outcome(config) != Outcome::Unblocked
            && at_least(self.bad(), config.threshold)
            && (self.bad_organisations >= config.consensus_organisations || self.bad_feed)
    }

    /// Whether the not-spam evidence is a consensus.
    pub fn ham_consensus(&self, config: &TrustConfig) -> bool {
        self.ham >= config.ham_threshold && (self.ham_organisations >= config.consensus_organisations || self.ham_feed)
    }
}

/// `value >= threshold`, forgiving the rounding of sums of weights.
fn at_least(value: f64, threshold: f64) -> bool {
    value >= threshold - 1e-9
}

/// One organisation's evidence for one class: its most trusted reporter
/// counts fully, the others add `same_org_share` of their weight, at most
/// `same_org_cap` together.
pub fn org_mass(weights: &[f64], config: &TrustConfig) -> f64 {
    let max = weights.iter().copied().fold(0.0, f64::max);
    let rest: f64 = weights.iter().sum::<f64>() - max;
    max + (rest * config.same_org_share).min(config.same_org_cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(reporter: u8, org: u32, class: Class, weight: f64) -> Vote {
        Vote { reporter: ReporterId([reporter; 16]), org, feed: false, class, weight }
    }

    #[test]
    fn a_fresh_reporter_alone_does_not_block() {
        let config = TrustConfig::default();
        let tally = Tally::of(&[vote(1, 1, Class::Spam, config.initial)], &config);
        assert_eq!(tally.outcome(&config), Outcome::Clean);
    }

    #[test]
    fn a_trusted_reporter_alone_blocks() {
        let config = TrustConfig::default();
        let trusted = Reporter { confirmed: 4, ..Reporter::default() };
        let trust = config.trust(&trusted, Plan::Subscription);
        assert!(trust >= config.threshold);
        let tally = Tally::of(&[vote(1, 1, Class::Spam, trust)], &config);
        assert_eq!(tally.outcome(&config), Outcome::Spam);
        assert!(!tally.bad_consensus(&config), "one organisation is not a consensus");
    }

    #[test]
    fn fifty_fresh_reporters_of_one_organisation_do_not_block() {
        let config = TrustConfig::default();
        let votes: Vec<Vote> = (0..50).map(|i| vote(i, 7, Class::Spam, config.initial)).collect();
        let tally = Tally::of(&votes, &config);
        assert!(tally.spam < config.threshold, "{tally:?}");
        assert_eq!(tally.outcome(&config), Outcome::Clean);
    }

    #[test]
    fn two_organisations_block_and_form_a_consensus() {
        let config = TrustConfig::default();
        let tally = Tally::of(&[vote(1, 1, Class::Spam, 1.0), vote(2, 2, Class::Spam, 1.0)], &config);
        assert_eq!(tally.outcome(&config), Outcome::Spam);
        assert!(tally.bad_consensus(&config));
    }

    #[test]
    fn not_spam_consensus_unblocks() {
        let config = TrustConfig::default();
        let votes = [
            vote(1, 1, Class::Spam, 1.0),
            vote(2, 2, Class::Spam, 1.0),
            vote(3, 3, Class::Ham, 1.0),
            vote(4, 4, Class::Ham, 1.0),
        ];
        let tally = Tally::of(&votes, &config);
        assert_eq!(tally.outcome(&config), Outcome::Unblocked);
        assert!(tally.ham_consensus(&config));
    }

    #[test]
    fn phishing_dominates_when_it_is_the_larger_share() {
        let config = TrustConfig::default();
        let tally = Tally::of(&[vote(1, 1, Class::Phish, 2.0), vote(2, 2, Class::Spam, 1.0)], &config);
        assert_eq!(tally.outcome(&config), Outcome::Phish);
    }

    #[test]
    fn trust_rises_with_confirmations_and_falls_with_contradictions() {
        let config = TrustConfig::default();
        let fresh = config.trust(&Reporter::default(), Plan::Subscription);
        let good = config.trust(&Reporter { confirmed: 3, ..Reporter::default() }, Plan::Subscription);
        let bad = config.trust(&Reporter { confirmed: 3, contradicted: 2, ..Reporter::default() }, Plan::Subscription);
        assert!(good > fresh && bad < fresh);
        assert_eq!(config.trust(&Reporter { confirmed: 1000, ..Reporter::default() }, Plan::Trial), config.max);
        assert_eq!(config.trust(&Reporter::default(), Plan::Feed), config.feed);
    }

    #[test]
    fn old_reports_weigh_less() {
        let config = TrustConfig::default();
        let day = 86_400;
        assert_eq!(config.weight(2.0, 0, 3 * day), 2.0, "fresh reports keep their weight");
        let later = ((config.full_weight_days + config.half_life_days) as i64) * day;
        assert!((config.weight(2.0, 0, later) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn bad_values_are_reported_by_key() {
        let config = TrustConfig { threshold: -1.0, same_org_share: 2.0, ..TrustConfig::default() };
        let problems = config.problems("trust");
        assert!(problems.iter().any(|p| p.starts_with("trust.threshold")));
        assert!(problems.iter().any(|p| p.starts_with("trust.same_org_share")));
    }
}
