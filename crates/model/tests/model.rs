//! Behaviour of the model as the agent uses it: learning and unlearning,
//! readiness, calibration, persistence, separation of two vocabularies.

use starling_model::{Features, Label, LoadError, Model, ModelConfig, NEVER_FILE};

/// A small seeded generator (splitmix64).
struct Rng(u64);

impl Rng {
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

/// A message of 60 words: half from its class's vocabulary of 300 words,
/// half from a shared one of 1,000, with a subject token.
fn message(rng: &mut Rng, label: Label) -> Features {
    let base = match label {
        Label::Spam => 1_000_000,
        Label::Ham => 2_000_000,
    };
    let words: Vec<u64> =
        (0..60).map(|_| if rng.below(2) == 0 { base + rng.below(300) } else { rng.below(1_000) }).collect();
    let subject = format!("subject:{}", base + rng.below(20));
    Features::extract(&words, &[subject.as_str()])
}

fn config() -> ModelConfig {
    ModelConfig { table_bits: 18, min_spam: 20, min_ham: 50, ..ModelConfig::default() }
}

fn trained(n: usize) -> (Model, Rng) {
    trained_with(n, config())
}

fn trained_with(n: usize, config: ModelConfig) -> (Model, Rng) {
    let mut rng = Rng(7);
    let mut model = Model::new(config);
    for i in 0..n {
        let label = if i % 3 == 0 { Label::Spam } else { Label::Ham };
        let f = message(&mut rng, label);
        model.learn(&f, label);
    }
    (model, rng)
}

#[test]
fn learn_then_unlearn_restores_exact_scores() {
    let (mut model, mut rng) = trained(300);
    let probes: Vec<Features> =
        (0..20).map(|i| message(&mut rng, if i % 2 == 0 { Label::Spam } else { Label::Ham })).collect();
    let before: Vec<_> = probes.iter().map(|f| model.classify(f)).collect();
    let examples = model.examples();
    let extra: Vec<(Features, Label)> = (0..50)
        .map(|i| {
            let label = if i % 2 == 0 { Label::Spam } else { Label::Ham };
            (message(&mut rng, label), label)
        })
        .collect();
    for (f, label) in &extra {
        model.learn(f, *label);
    }
    for (f, label) in extra.iter().rev() {
        model.unlearn(f, *label);
    }
    assert_eq!(model.examples(), examples);
    let after: Vec<_> = probes.iter().map(|f| model.classify(f)).collect();
    assert_eq!(before, after);
}

#[test]
fn not_ready_before_the_minimum_examples() {
    let mut rng = Rng(1);
    let mut model = Model::new(config());
    for _ in 0..19 {
        model.learn(&message(&mut rng, Label::Spam), Label::Spam);
    }
    for _ in 0..100 {
        model.learn(&message(&mut rng, Label::Ham), Label::Ham);
    }
    assert!(!model.ready());
    let spam = message(&mut rng, Label::Spam);
    let score = model.classify(&spam);
    assert!(score.probability > 0.5, "{score:?}");
    assert!(!model.would_file(&score), "a model that is not ready never files");
    model.learn(&spam, Label::Spam);
    assert!(model.ready());
    assert_eq!(model.examples(), (20, 100));
}

#[test]
fn separates_two_vocabularies() {
    // Half of every message is shared vocabulary, which keeps the evidence
    // moderate; a floor of 0.6 lets the calibration decide.
    let (model, mut rng) = trained_with(600, ModelConfig { threshold_floor: 0.6, ..config() });
    assert!(model.ready());
    let (mut filed_spam, mut filed_ham) = (0, 0);
    for _ in 0..200 {
        let spam = model.classify(&message(&mut rng, Label::Spam));
        let ham = model.classify(&message(&mut rng, Label::Ham));
        assert!(spam.probability > 0.5 && ham.probability < 0.5, "{spam:?} {ham:?}");
        filed_spam += usize::from(model.would_file(&spam));
        filed_ham += usize::from(model.would_file(&ham));
        assert!(spam.evidence.len() <= starling_model::EVIDENCE && !spam.evidence.is_empty());
        assert!(spam.evidence.windows(2).all(|w| (w[0].1 - 0.5).abs() >= (w[1].1 - 0.5).abs()));
    }
    assert_eq!(filed_ham, 0);
    println!("filed {filed_spam} of 200 spam at threshold {}", model.threshold());
    assert!(filed_spam >= 150, "{filed_spam}");
}

#[test]
fn threshold_is_conservative_with_few_ham() {
    let (model, _) = trained(300);
    let (_, ham_scores) = model.calibration_scores();
    assert!(ham_scores > 0 && ham_scores < 3_000);
    // Above every ham score recorded and never below the floor.
    assert!(model.threshold() >= model.config().threshold_floor);
    assert_eq!(Model::new(config()).threshold(), NEVER_FILE);
}

/// A message with no features scores ½; once enough ham were scored, the
/// threshold is just above ½ (ties are not above themselves), and the floor
/// still holds.
#[test]
fn threshold_follows_the_ham_scores_and_the_floor() {
    let mut config = ModelConfig { table_bits: 10, min_spam: 0, min_ham: 0, threshold_floor: 0.0, ..config() };
    let mut model = Model::new(config.clone());
    for _ in 0..5_000 {
        model.learn(&Features::from_ids(vec![]), Label::Ham);
    }
    assert_eq!(model.threshold(), 0.5f32.next_up());
    config.threshold_floor = 0.98;
    let path = tempfile::tempdir().unwrap();
    let file = path.path().join("model");
    model.save(&file).unwrap();
    assert_eq!(Model::load(&file, config).unwrap().threshold(), 0.98);
}

#[test]
fn save_and_load_give_identical_scores() {
    let (model, mut rng) = trained(400);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bin");
    model.save(&path).unwrap();
    let loaded = Model::load(&path, config()).unwrap();
    assert_eq!(loaded.examples(), model.examples());
    assert_eq!(loaded.threshold(), model.threshold());
    assert_eq!(loaded.calibration_scores(), model.calibration_scores());
    for i in 0..50 {
        let f = message(&mut rng, if i % 2 == 0 { Label::Spam } else { Label::Ham });
        assert_eq!(loaded.classify(&f), model.classify(&f));
    }
    // Saving again over the file works and leaves no temporary file.
    loaded.save(&path).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn damaged_files_are_rejected() {
    let (model, _) = trained(200);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bin");
    model.save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let load = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        Model::load(&path, config())
    };
    assert!(load(&good).is_ok());

    let err = load(&good[..good.len() - 3]).unwrap_err();
    assert!(matches!(err, LoadError::Truncated { .. }), "{err}");
    assert!(err.to_string().contains("truncated"));
    assert!(matches!(load(&good[..40]).unwrap_err(), LoadError::Truncated { .. }));
    assert!(matches!(load(&[]).unwrap_err(), LoadError::Truncated { .. }));

    for at in [200, good.len() / 2, good.len() - 1, 60] {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        let err = load(&bad).unwrap_err();
        assert!(matches!(err, LoadError::Corrupt { .. } | LoadError::Truncated { .. }), "{at}: {err}");
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(load(&trailing).unwrap_err(), LoadError::Corrupt { .. }));

    let mut version = good.clone();
    version[8] = 99;
    assert!(matches!(load(&version).unwrap_err(), LoadError::UnsupportedVersion { found: 99, .. }));
    assert!(matches!(
        load(b"hello, this is not a model at all; it is long enough to have a header, or is it? no").unwrap_err(),
        LoadError::NotAModel { .. }
    ));

    std::fs::write(&path, &good).unwrap();
    let other = ModelConfig { table_bits: 20, ..config() };
    assert!(matches!(
        Model::load(&path, other).unwrap_err(),
        LoadError::TableSizeMismatch { file: 18, config: 20, .. }
    ));
    let missing = Model::load(&dir.path().join("absent"), config()).unwrap_err();
    assert!(missing.is_not_found() && !missing.is_transient());
}

#[test]
fn memory_is_fixed() {
    let fresh = Model::new(config());
    let (model, _) = trained(600);
    assert!(model.memory_bytes() <= fresh.memory_bytes() + 2 * 2 * 4 * starling_model::CALIBRATION_WINDOW);
    assert!(Model::new(ModelConfig::default()).memory_bytes() < 34 << 20);
}

#[test]
fn prequential_learn_returns_the_prior_score() {
    let (mut model, mut rng) = trained(300);
    let f = message(&mut rng, Label::Spam);
    let prior = model.classify(&f).probability;
    assert_eq!(model.learn(&f, Label::Spam), prior);
    assert!(model.classify(&f).probability >= prior);
    let _ = rng.unit();
}

/// Mail of a sender the organisation keeps mail from is never filed by the
/// model, however spammy it reads; its ham counts in the calibration as a
/// score that files nothing; and the senders survive a save and a load.
#[test]
fn a_known_sender_is_never_filed_by_the_model() {
    let mut config = config();
    config.threshold_floor = 0.5;
    let (mut model, mut rng) = trained_with(3_000, config.clone());
    let newsletter = 42u64;
    // A newsletter that reads like spam, kept by its readers.
    let spammy = || message(&mut Rng(99), Label::Spam);
    let probe = spammy().with_sender(Some(newsletter));
    let score = model.classify(&probe);
    assert!(!score.known_sender && model.would_file(&score), "an unknown sender's spammy mail is filed: {score:?}");
    let scores_before = model.calibration_scores().1;
    model.learn(&spammy().with_sender(Some(newsletter)), Label::Ham);
    assert_eq!(model.calibration_scores().1, scores_before + 1);
    let score = model.classify(&probe);
    assert!(score.known_sender && !model.would_file(&score), "{score:?}");
    assert!(model.known_sender(&probe) && !model.known_sender(&probe.clone().with_sender(Some(7))));
    assert_eq!(model.sender_examples(newsletter), (0, 1));

    // One spoofed copy that a user reports does not undo the correspondence;
    // a sender reported as often as kept is not a correspondent.
    model.learn(&spammy().with_sender(Some(newsletter)), Label::Ham);
    model.learn(&spammy().with_sender(Some(newsletter)), Label::Ham);
    model.learn(&spammy().with_sender(Some(newsletter)), Label::Spam);
    assert!(model.known_sender(&probe));
    model.learn(&spammy().with_sender(Some(newsletter)), Label::Spam);
    assert!(!model.known_sender(&probe));
    model.unlearn(&spammy().with_sender(Some(newsletter)), Label::Spam);
    assert!(model.known_sender(&probe), "unlearning is exact for senders too");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bin");
    model.save(&path).unwrap();
    let loaded = Model::load(&path, config).unwrap();
    assert_eq!(loaded.senders(), model.senders());
    assert_eq!(loaded.classify(&probe), model.classify(&probe));
    let _ = rng.unit();
}

/// Exempt ham counts as a zero score: when most ham comes from known
/// senders, the threshold needed to keep the share of all ham filed at the
/// target is lower than with every ham counted at its score.
#[test]
fn exempt_ham_lowers_the_threshold_it_needs() {
    let mut config = config();
    config.threshold_floor = 0.0;
    let train = |senders: bool| {
        let mut rng = Rng(11);
        let mut model = Model::new(config.clone());
        for i in 0..4_000u64 {
            let label = if i % 3 == 0 { Label::Spam } else { Label::Ham };
            // Ham from ten correspondents (after their first message), spam
            // from a new address each time.
            let sender = match label {
                Label::Ham => i % 10,
                Label::Spam => 1_000 + i,
            };
            let f = message(&mut rng, label);
            model.learn(&if senders { f.with_sender(Some(sender)) } else { f }, label);
        }
        model
    };
    let (plain, with_senders) = (train(false), train(true));
    assert!(with_senders.threshold() < plain.threshold(), "{} < {}", with_senders.threshold(), plain.threshold());
    assert_eq!(with_senders.senders(), 10 + 4_000 / 3 + 1);
}
