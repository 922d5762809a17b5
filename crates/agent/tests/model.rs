//! The organisation's model as the agent keeps it: learnt from examples,
//! durable across restarts and crashes, rebuilt with the same decisions,
//! and bounded against a user who teaches it wrong.

use starling_agent::config::LearningConfig;
use starling_agent::events::Events;
use starling_agent::facts::header_tokens;
use starling_agent::learning::{self, Learner, Source};
use starling_agent::state::State;
use starling_fingerprint::{Fingerprinter, Key};
use starling_model::Features;
use starling_testkit::testdata;

fn features(raw: &[u8]) -> Features {
    let (_, text) = Fingerprinter::new(&Key::DEVELOPMENT).fingerprint_with_words(raw);
    learning::features(&text, &header_tokens(raw))
}

/// The test corpus as (key, spam?, features).
fn examples() -> Vec<(String, bool, Features)> {
    let mut all = Vec::new();
    for spam in [true, false] {
        for (name, raw) in testdata(spam) {
            all.push((name, spam, features(&raw)));
        }
    }
    all
}

fn config() -> LearningConfig {
    LearningConfig { min_spam: 2, min_ham: 2, table_bits: 18, ..LearningConfig::default() }
}

async fn open(dir: &std::path::Path) -> (State, Learner) {
    let state = State::open(dir).expect("state");
    let learner = Learner::open(&config(), dir, state.clone(), Events::new(None)).await.expect("learner");
    (state, learner)
}

async fn teach(learner: &Learner, examples: &[(String, bool, Features)]) {
    for (key, spam, features) in examples {
        let source = if *spam { Source::UserSpam } else { Source::UserHam };
        learner.learn("alice", key, source, features.clone()).await;
    }
}

fn probabilities(learner: &Learner, examples: &[(String, bool, Features)]) -> Vec<f32> {
    examples.iter().map(|(_, _, f)| learner.opinion(f).probability).collect()
}

#[tokio::test]
async fn the_model_survives_restarts_and_crashes_and_retrains_to_the_same_decisions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let examples = examples();
    let (spam, ham) = (examples.iter().filter(|e| e.1).count() as u64, examples.iter().filter(|e| !e.1).count() as u64);
    let (_, learner) = open(dir.path()).await;
    teach(&learner, &examples).await;
    let status = learner.status();
    assert_eq!((status.spam, status.ham), (spam, ham));
    // Learnt, but a few dozen ham scores say nothing yet about the
    // organisation's spammiest ham: no threshold, nothing filed.
    assert!(!status.ready && status.threshold > 1.0, "{status:?}");
    let before = probabilities(&learner, &examples);
    // Spam scores above ham on what it learnt.
    let lowest_spam = examples.iter().zip(&before).filter(|(e, _)| e.1).map(|(_, p)| *p).fold(1.0, f32::min);
    let highest_ham = examples.iter().zip(&before).filter(|(e, _)| !e.1).map(|(_, p)| *p).fold(0.0, f32::max);
    assert!(lowest_spam > highest_ham, "separated: lowest spam {lowest_spam}, highest ham {highest_ham}");

    // A crash before any snapshot: the log in the state database brings it back.
    drop(learner);
    let (_, learner) = open(dir.path()).await;
    assert_eq!(probabilities(&learner, &examples), before, "replayed from the log");
    // A clean stop with a snapshot, then a start from it.
    learner.snapshot().await;
    drop(learner);
    assert!(
        std::fs::read_dir(dir.path()).unwrap().flatten().any(|e| e.file_name().to_string_lossy().starts_with("model-"))
    );
    let (_, learner) = open(dir.path()).await;
    assert_eq!(probabilities(&learner, &examples), before, "loaded from the snapshot");

    // `starling model retrain` rebuilds from the examples: same decisions.
    learner.rebuild().await.expect("rebuild");
    let after = probabilities(&learner, &examples);
    for ((a, b), (key, _, f)) in before.iter().zip(&after).zip(&examples) {
        assert!((a - b).abs() < 1e-4, "{key}: {a} before, {b} after retraining");
        let _ = f;
    }

    // A corrupt snapshot is rebuilt from the examples.
    learner.learn("alice", "one-more", Source::UserSpam, examples[0].2.clone()).await;
    learner.snapshot().await;
    drop(learner);
    for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("model-") {
            std::fs::write(entry.path(), b"not a model").unwrap();
        }
    }
    let (_, learner) = open(dir.path()).await;
    assert_eq!(learner.status().spam, spam + 1, "rebuilt from the stored examples");
}

#[tokio::test]
async fn a_user_changing_their_mind_and_a_poisoning_user_are_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = State::open(dir.path()).expect("state");
    let capped = LearningConfig { max_examples_per_mailbox: 5, ..config() };
    let learner = Learner::open(&capped, dir.path(), state, Events::new(None)).await.expect("learner");
    let examples = examples();
    let ham: Vec<&(String, bool, Features)> = examples.iter().filter(|e| !e.1).collect();
    assert!(ham.len() > 5);
    // Mallory reports all ham as spam: at most five of it is held.
    for (key, _, features) in &ham {
        learner.learn("mallory", key, Source::UserSpam, features.clone()).await;
    }
    assert_eq!(learner.status().spam, 5, "one mailbox's weight is capped");
    // A user who takes a report back: the example is forgotten; one who
    // rescues what they reported: relearnt as ham.
    let (key, _, features) = ham[ham.len() - 1];
    learner.forget("mallory", key).await;
    assert_eq!(learner.status().spam, 4);
    learner.learn("mallory", key, Source::UserSpam, features.clone()).await;
    learner.learn("mallory", key, Source::UserHam, features.clone()).await;
    assert_eq!((learner.status().spam, learner.status().ham), (4, 1));
    // Automatic sources never overrule what a user said.
    learner.learn("mallory", key, Source::Network, features.clone()).await;
    assert_eq!((learner.status().spam, learner.status().ham), (4, 1));
}

/// A message of `words` from `from`, with a subject.
fn synthetic(from: &str, subject: &str, words: &[String]) -> Features {
    let raw = format!("From: {from}\r\nTo: staff@example.com\r\nSubject: {subject}\r\n\r\n{}\r\n", words.join(" "));
    features(raw.as_bytes())
}

/// Ham about work from many colleagues, spam selling pills from throwaway
/// senders; each message has words of its own.
fn synthetic_examples(spam: usize, ham: usize) -> Vec<(String, bool, Features)> {
    const HAM: [&str; 8] = ["meeting", "agenda", "budget", "review", "project", "deadline", "minutes", "report"];
    const SPAM: [&str; 8] = ["cheap", "pills", "discount", "pharmacy", "order", "online", "offer", "prescription"];
    let text = |vocabulary: &[&str], i: usize| -> Vec<String> {
        (0..40).map(|j| if j % 3 == 0 { format!("w{i}x{j}") } else { vocabulary[(i + j) % 8].to_owned() }).collect()
    };
    let mut out = Vec::new();
    for i in 0..ham {
        out.push((
            format!("ham-{i}"),
            false,
            synthetic(&format!("colleague{i}@example.com"), "Weekly notes", &text(&HAM, i)),
        ));
    }
    for i in 0..spam {
        out.push((
            format!("spam-{i}"),
            true,
            synthetic(&format!("x{i}@spam{i}.example"), "Best offer", &text(&SPAM, i)),
        ));
    }
    out
}

#[tokio::test]
async fn the_linear_classifier_is_fitted_when_asked_and_at_start_and_files_what_it_is_sure_of() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, learner) = open(dir.path()).await;
    let examples = synthetic_examples(40, 260);
    teach(&learner, &examples).await;
    // Not fitted until asked: no linear threshold yet.
    let status = learner.status();
    assert!(status.linear_threshold > 1.0 && status.linear_examples == 0, "{status:?}");
    learner.refit().await;
    let status = learner.status();
    assert_eq!(status.linear_examples, 300);
    assert!(status.linear_threshold <= 1.0 && status.ready, "{status:?}");
    // A new message of each kind: the spam is filed (by the linear
    // classifier, whose features explain it), the ham is not.
    let fresh = synthetic_examples(41, 261);
    let (spam, ham) = (&fresh[300].2, &fresh[259].2);
    let opinion = learner.opinion(spam);
    assert!(opinion.sure() && opinion.linear_sure && opinion.linear > opinion.linear_threshold, "{opinion:?}");
    assert!(!learner.opinion(ham).sure(), "{:?}", learner.opinion(ham));
    // A known sender's spam-like mail is still never filed by the model.
    let known = synthetic("colleague7@example.com", "Best offer", &vec!["pills".to_owned(); 40]);
    assert!(learner.opinion(&known).known_sender && !learner.opinion(&known).sure());
    // At start the classifier is fitted again: the same opinions.
    let linear = learner.opinion(spam).linear;
    drop(learner);
    let (_, learner) = open(dir.path()).await;
    assert_eq!(learner.status().linear_examples, 300);
    assert_eq!(learner.opinion(spam).linear, linear);
}
