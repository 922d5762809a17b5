//! Starling's local model: a per-organisation statistical spam classifier
//! that the agent trains on its own users' reports and runs beside the
//! network's fingerprints.
//!
//! - [`Features`] turns a message's hashed, normalised body words (from
//!   `starling_fingerprint::Fingerprinter::fingerprint_with_words`) and a
//!   few header tokens into a sorted set of `u32` feature ids: unigrams,
//!   orthogonal sparse bigrams (each word paired with each of the next four,
//!   with the distance, as in CRM114 and rspamd) and the header tokens. The
//!   ids are compact to store ([`Features::to_bytes`]), so the agent can keep
//!   them to unlearn a message later without keeping its text.
//! - [`Model`] holds the counts, [`classify`](Model::classify)s into a
//!   [`Score`], [`learn`](Model::learn)s and [`unlearn`](Model::unlearn)s
//!   [`Label`]ed examples, and decides whether to file
//!   ([`would_file`](Model::would_file)) at a threshold it calibrates itself.
//!   It is saved crash-safely with a checksum ([`Model::save`],
//!   [`Model::load`], [`LoadError`]).
//! - [`Linear`] is a linear support-vector machine on the same features,
//!   fitted in batch on stored examples with a threshold above every
//!   held-out ham score; the agent files when either classifier is sure
//!   (see its module for why and for its bounds).
//! - Known senders: features may carry a hashed sender
//!   ([`Features::with_sender`]); the model counts each sender's spam and
//!   ham examples, and never files mail of a sender with ham and more than
//!   twice as much ham as spam ([`Model::known_sender`]) — the newsletters,
//!   notifications and lists that read like spam come back from the same
//!   address, spam rarely does. Their examples count in the calibration as
//!   a score that files nothing.
//!
//! Memory is bounded: a table of 2^`table_bits` buckets, each two saturating
//! `u16` counters (spam, ham) indexed by the top `table_bits` bits of the
//! feature id (so a message's sorted ids walk the table upwards), so the
//! default (`table_bits` 23) holds 32 MiB plus two calibration windows of
//! [`CALIBRATION_WINDOW`] scores (160 KB) and at most [`MAX_SENDERS`]
//! senders (about 4.5 MiB at most), however many messages are trained
//! (100,000 or ten million). A counter about to saturate halves the whole
//! table and the class sizes ([`SATURATION_LIMIT`]): ratios stay, old
//! evidence weighs less.
//!
//! Classification is Robinson–Fisher, as in SpamBayes and bogofilter: each
//! known feature gets Robinson's smoothed, class-size-normalised spam
//! probability ([`ROBINSON_S`], [`ROBINSON_X`]); the [`MAX_CLUES`] features
//! farthest from ½ (at least [`MIN_CLUE_STRENGTH`] away) are combined with
//! Fisher's chi-square method into one probability.
//!
//! Design decision: the model calibrates its own filing threshold from
//! *prequential* scores. [`Model::learn`] scores each example with the model
//! as it was before learning it — an honest test on unseen mail — and keeps
//! the recent ham scores. The threshold is the lowest score at which an
//! upper confidence bound of the false-positive rate on those scores is at
//! most the target (see [`Model::threshold`]), and never below a floor. A
//! fixed threshold would be wrong for every organisation in a different way:
//! Fisher scores crowd near 0 and 1 and how near depends on the vocabulary
//! and on how much has been learned; so until the model has seen enough ham
//! to show that it is safe, it files nothing it has not beaten every ham on.
//! Counting classifiers (rather than, say, online logistic regression) were
//! chosen because unlearning is exact: an undone report or an expired
//! example is subtracted, with no retraining.
//!
//! Results are deterministic: no hash-map iteration, ties broken by id.
//!
//! ```
//! use starling_model::{Features, Label, Model, ModelConfig};
//!
//! let config = ModelConfig { table_bits: 16, min_spam: 5, min_ham: 5, ..ModelConfig::default() };
//! let mut model = Model::new(config);
//! let spam = |i: u64| Features::extract(&[1, 2, 3, 4, 100 + i], &["subject:winner"]);
//! let ham = |i: u64| Features::extract(&[7, 8, 9, 10, 200 + i], &["from-domain:example.org"]);
//! for i in 0..20 {
//!     model.learn(&spam(i), Label::Spam);
//!     model.learn(&ham(i), Label::Ham);
//! }
//! assert!(model.ready());
//! let score = model.classify(&spam(99));
//! assert!(score.probability > 0.9, "{score:?}");
//! assert!(model.classify(&ham(99)).probability < 0.1);
//! // The evidence names features by id only, strongest first.
//! assert!(score.evidence[0].1 > 0.9);
//! // With only 15 ham scores seen there is no threshold yet: nothing is
//! // filed before 200 (and never below the floor).
//! assert!(model.threshold() >= 0.98);
//!
//! // Forgetting an example is exact.
//! let before = model.classify(&ham(5));
//! model.learn(&ham(42), Label::Ham);
//! model.unlearn(&ham(42), Label::Ham);
//! assert_eq!(model.classify(&ham(5)), before);
//! ```

mod calibration;
mod combine;
mod features;
mod linear;
mod model;
mod persist;
mod senders;

pub use calibration::{CALIBRATION_CONFIDENCE, CALIBRATION_WINDOW, MIN_CALIBRATION_HAM, NEVER_FILE};
pub use combine::{CLASS_BALANCE_EXPONENT, EVIDENCE_SCALE, MAX_CLUES, MIN_CLUE_STRENGTH, ROBINSON_S, ROBINSON_X};
pub use features::{Features, MAX_FEATURES, MAX_HEADER_TOKEN_BYTES, MAX_HEADER_TOKENS, MAX_WORDS, OSB_WINDOW};
pub use linear::{
    COST, DECISION_SCALE, FOLDS, Linear, MARGIN_SCALE, MAX_EPOCHS, MAX_FIT_EXAMPLES, MIN_HELD_OUT_HAM, WEIGHT_BITS,
};
pub use model::{EVIDENCE, MAX_TABLE_BITS, MIN_TABLE_BITS, Model, ModelConfig, SATURATION_LIMIT, Score};
pub use persist::{FORMAT_VERSION, LoadError};
pub use senders::MAX_SENDERS;

/// Which class an example belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    /// Unwanted mail.
    Spam,
    /// Wanted mail.
    Ham,
}

impl Label {
    pub(crate) fn index(self) -> usize {
        match self {
            Label::Spam => 0,
            Label::Ham => 1,
        }
    }
}
