//! A realistic, prequential evaluation of the model on the development
//! groups of the SpamAssassin corpus (spam-1, easy-ham-1, hard-ham-1; the
//! hold-out groups spam-2 and easy-ham-2 are never read).
//!
//! Messages arrive in a seeded shuffled order. Each is fingerprinted,
//! turned into features exactly as the agent does (`learning::features`:
//! normalised words and header tokens) and classified with the model as it is; the filing
//! decision is the model's own (`would_file`, at its calibrated threshold).
//! Then labels arrive the way an agent gets them: only a share of spam is
//! reported by users (at once), and ham is learned after a delay (when it
//! has stayed in the inbox).
//!
//! ```sh
//! shared/corpus/fetch-spamassassin target/corpus
//! STARLING_CORPUS=target/corpus cargo run --release -p starling-agent --example model_evaluate
//! ```
//!
//! The filing decision is the agent's: the counting classifier at its
//! calibrated threshold, or the linear classifier (refitted on what was
//! learnt every `EVAL_REFIT` messages, default 200; 0 leaves the counting
//! classifier alone) above its held-out threshold. The oracle line scores
//! the second half with the linear classifier when there is one.
//!
//! Settings (environment): `EVAL_SEEDS` (comma-separated, default `1,2,3,4,5`),
//! `EVAL_SPAM_SHARE` (share of spam labelled, default 0.3), `EVAL_HAM_SHARE`
//! (share of ham learnt, default 1), `EVAL_HAM_DELAY`
//! (messages before a ham is learned, default 100), `EVAL_TABLE_BITS`
//! (default 23), `EVAL_TARGET` (false-positive target, default 0.001),
//! `EVAL_FLOOR` (the threshold floor, default 0.98),
//! `EVAL_VERBOSE` prints score and feature-count quantiles, `EVAL_SHOW`
//! lists the second-half ham scoring above 0.99.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use starling_agent::facts::header_tokens;
use starling_agent::learning;
use starling_fingerprint::{Fingerprinter, Key};
use starling_model::{Features, Label, Linear, Model, ModelConfig};

/// The development groups; the hold-out groups are deliberately absent.
const GROUPS: [(&str, Label); 3] = [("spam-1", Label::Spam), ("easy-ham-1", Label::Ham), ("hard-ham-1", Label::Ham)];

struct Message {
    path: PathBuf,
    label: Label,
    hard: bool,
    features: Features,
}

struct Settings {
    seeds: Vec<u64>,
    spam_share: f64,
    ham_delay: usize,
    /// Share of ham learnt (users who report also keep their mail; the
    /// others teach nothing).
    ham_share: f64,
    /// Refit the linear model every this many messages (0: the counting
    /// model decides alone).
    refit: usize,
    config: ModelConfig,
}

#[derive(Default, Clone, Copy)]
struct Tally {
    spam: u64,
    spam_filed: u64,
    ham: u64,
    ham_filed: u64,
    hard_ham_filed: u64,
}

impl Tally {
    fn add(&mut self, message: &Message, filed: bool) {
        match message.label {
            Label::Spam => {
                self.spam += 1;
                self.spam_filed += u64::from(filed);
            }
            Label::Ham => {
                self.ham += 1;
                self.ham_filed += u64::from(filed);
                self.hard_ham_filed += u64::from(filed && message.hard);
            }
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.spam += other.spam;
        self.spam_filed += other.spam_filed;
        self.ham += other.ham;
        self.ham_filed += other.ham_filed;
        self.hard_ham_filed += other.hard_ham_filed;
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name:<12} spam recall {:.3} ({}/{})  ham false positives {} of {} ({:.2} per 1,000; hard ham {})",
            self.spam_filed as f64 / self.spam.max(1) as f64,
            self.spam_filed,
            self.spam,
            self.ham_filed,
            self.ham,
            1000.0 * self.ham_filed as f64 / self.ham.max(1) as f64,
            self.hard_ham_filed,
        )
    }
}

fn main() {
    let dir = PathBuf::from(std::env::var_os("STARLING_CORPUS").unwrap_or_else(|| "target/corpus".into()));
    let settings = settings();
    let started = std::time::Instant::now();
    let messages = load(&dir);
    let spam = messages.iter().filter(|m| m.label == Label::Spam).count();
    if std::env::var_os("EVAL_VERBOSE").is_some() {
        for label in [Label::Spam, Label::Ham] {
            let mut lens: Vec<usize> = messages.iter().filter(|m| m.label == label).map(|m| m.features.len()).collect();
            lens.sort_unstable();
            let q = |q: f64| lens[((lens.len() - 1) as f64 * q) as usize];
            println!(
                "{label:?} features per message: .1 {} .25 {} .5 {} .75 {} .9 {}",
                q(0.1),
                q(0.25),
                q(0.5),
                q(0.75),
                q(0.9)
            );
        }
    }
    println!(
        "corpus {}: {} messages ({} spam, {} ham) read and featurised in {:.1} s",
        dir.display(),
        messages.len(),
        spam,
        messages.len() - spam,
        started.elapsed().as_secs_f64()
    );
    println!(
        "labels: {:.0} % of spam reported at once, ham learned {} messages later; target {} , floor {}, table_bits {}",
        settings.spam_share * 100.0,
        settings.ham_delay,
        settings.config.target_false_positive_rate,
        settings.config.threshold_floor,
        settings.config.table_bits,
    );
    let (mut all, mut second) = (Tally::default(), Tally::default());
    for &seed in &settings.seeds {
        let (run, half) = run(&messages, &settings, seed);
        all.merge(&run);
        second.merge(&half);
    }
    println!("over {} seeds:", settings.seeds.len());
    println!("{}", all.line("whole run"));
    println!("{}", second.line("second half"));
}

fn settings() -> Settings {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let seeds = var("EVAL_SEEDS", "1,2,3,4,5").split(',').map(|s| s.trim().parse().expect("EVAL_SEEDS")).collect();
    let config = ModelConfig {
        table_bits: var("EVAL_TABLE_BITS", "23").parse().expect("EVAL_TABLE_BITS"),
        target_false_positive_rate: var("EVAL_TARGET", "0.001").parse().expect("EVAL_TARGET"),
        threshold_floor: var("EVAL_FLOOR", "0.98").parse().expect("EVAL_FLOOR"),
        ..ModelConfig::default()
    };
    Settings {
        seeds,
        spam_share: var("EVAL_SPAM_SHARE", "0.3").parse().expect("EVAL_SPAM_SHARE"),
        ham_delay: var("EVAL_HAM_DELAY", "100").parse().expect("EVAL_HAM_DELAY"),
        refit: var("EVAL_REFIT", "200").parse().expect("EVAL_REFIT"),
        ham_share: var("EVAL_HAM_SHARE", "1").parse().expect("EVAL_HAM_SHARE"),
        config,
    }
}

/// One prequential run; returns the tallies of the whole run and of its
/// second half.
fn run(messages: &[Message], settings: &Settings, seed: u64) -> (Tally, Tally) {
    let mut rng = SplitMix(seed);
    let mut order: Vec<usize> = (0..messages.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut model = Model::new(settings.config.clone());
    let mut pending: VecDeque<(usize, usize)> = VecDeque::new();
    let (mut all, mut second) = (Tally::default(), Tally::default());
    let mut oracle = OracleHalf::default();
    let mut learnt: Vec<(Features, Label)> = Vec::new();
    let mut linear = Linear::empty();
    for (step, &index) in order.iter().enumerate() {
        while pending.front().is_some_and(|&(due, _)| due <= step) {
            let (_, ham) = pending.pop_front().expect("front exists");
            model.learn(&messages[ham].features, Label::Ham);
            learnt.push((messages[ham].features.clone(), Label::Ham));
        }
        if settings.refit > 0 && step % settings.refit == 0 {
            linear = Linear::fit(&learnt);
        }
        let message = &messages[index];
        // The agent's own decision (either classifier sure, never a known
        // sender's mail); the oracle line reads the linear classifier's
        // score when there is one.
        let opinion = learning::opinion_of(&model, &linear, &message.features);
        let filed = opinion.sure();
        let score = if settings.refit > 0 { opinion.linear } else { opinion.probability };
        all.add(message, filed);
        if step >= order.len() / 2 {
            second.add(message, filed);
            oracle.add(message.label, score);
            if std::env::var_os("EVAL_SHOW").is_some() && message.label == Label::Ham && score > 0.99 {
                println!("  high ham {score:.6} {}", message.path.display());
            }
        }
        match message.label {
            Label::Spam if rng.unit() < settings.spam_share => {
                model.learn(&message.features, Label::Spam);
                learnt.push((message.features.clone(), Label::Spam));
            }
            Label::Spam => {}
            Label::Ham if rng.unit() < settings.ham_share => pending.push_back((step + settings.ham_delay, index)),
            Label::Ham => {}
        }
    }
    let (spam, ham) = model.examples();
    let (spam_scores, ham_scores) = model.calibration_scores();
    println!(
        "seed {seed}: learned {spam} spam, {ham} ham; calibration on {ham_scores} ham and {spam_scores} spam scores; \
         final threshold {:.7}, estimated recall {:.3}; second half with the oracle threshold (above its highest ham): recall {:.3}",
        model.threshold(),
        model.estimated_recall().unwrap_or(0.0),
        oracle.recall_above_all_ham(),
    );
    if std::env::var_os("EVAL_VERBOSE").is_some() {
        println!(
            "  second-half spam score quantiles .1 .25 .5 .75 .9: {}; max ham {:.6}",
            oracle.spam_quantiles(),
            oracle.max_ham
        );
    }
    println!("  {}", all.line("whole run"));
    println!("  {}", second.line("second half"));
    (all, second)
}

/// The scores of the second half, for the best recall any threshold that
/// files no ham of it could reach: the room left above the calibration.
#[derive(Default)]
struct OracleHalf {
    spam: Vec<f32>,
    max_ham: f32,
}

impl OracleHalf {
    fn add(&mut self, label: Label, score: f32) {
        match label {
            Label::Spam => self.spam.push(score),
            Label::Ham => self.max_ham = self.max_ham.max(score),
        }
    }

    fn spam_quantiles(&self) -> String {
        let mut s = self.spam.clone();
        s.sort_by(f32::total_cmp);
        [0.1, 0.25, 0.5, 0.75, 0.9]
            .iter()
            .map(|q| format!("{:.4}", s[((s.len() - 1) as f64 * q) as usize]))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn recall_above_all_ham(&self) -> f64 {
        self.spam.iter().filter(|&&s| s > self.max_ham).count() as f64 / self.spam.len().max(1) as f64
    }
}

fn load(dir: &Path) -> Vec<Message> {
    let fingerprinter = Fingerprinter::new(&Key::DEVELOPMENT);
    let mut messages = Vec::new();
    for (group, label) in GROUPS {
        let group_dir = dir.join(group);
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&group_dir)
            .unwrap_or_else(|e| {
                panic!("{}: {e} (fetch the corpus with shared/corpus/fetch-spamassassin)", group_dir.display())
            })
            .map(|entry| entry.expect("directory entry").path())
            .filter(|path| path.extension().is_some_and(|e| e == "eml"))
            .collect();
        paths.sort();
        for path in paths {
            let raw = std::fs::read(&path).expect("read message");
            let (_, text) = fingerprinter.fingerprint_with_words(&raw);
            messages.push(Message {
                path: path.clone(),
                label,
                hard: group == "hard-ham-1",
                features: learning::features(&text, &header_tokens(&raw)),
            });
        }
    }
    messages
}

/// A small seeded generator (splitmix64), so runs are reproducible without
/// a dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
