//! Properties on hostile and arbitrary input: bounded, no panics, exact
//! round trips.

use proptest::prelude::*;
use starling_model::{Features, Label, MAX_FEATURES, Model, ModelConfig};

fn small() -> ModelConfig {
    ModelConfig { table_bits: 12, min_spam: 1, min_ham: 1, ..ModelConfig::default() }
}

proptest! {
    #[test]
    fn extract_is_bounded_sorted_and_deterministic(
        words in prop::collection::vec(any::<u64>(), 0..3_000),
        headers in prop::collection::vec(".{0,300}", 0..300),
    ) {
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let f = Features::extract(&words, &headers);
        prop_assert!(f.len() <= MAX_FEATURES);
        prop_assert!(f.ids().windows(2).all(|w| w[0] < w[1]));
        prop_assert_eq!(&f, &Features::extract(&words, &headers));
        prop_assert_eq!(Features::from_bytes(&f.to_bytes()), Some(f.clone()));
        prop_assert_eq!(Features::from_ids(f.ids().to_vec()), f);
    }

    #[test]
    fn from_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Some(f) = Features::from_bytes(&bytes) {
            prop_assert_eq!(f.to_bytes(), bytes);
        }
    }

    #[test]
    fn scores_are_probabilities_and_unlearn_inverts_learn(
        examples in prop::collection::vec((prop::collection::vec(any::<u32>(), 0..200), any::<bool>()), 1..20),
        probe in prop::collection::vec(any::<u32>(), 0..200),
    ) {
        let mut model = Model::new(small());
        let probe = Features::from_ids(probe);
        let before = model.classify(&probe);
        let examples: Vec<(Features, Label)> = examples
            .into_iter()
            .map(|(ids, spam)| (Features::from_ids(ids), if spam { Label::Spam } else { Label::Ham }))
            .collect();
        for (f, label) in &examples {
            let prior = model.learn(f, *label);
            prop_assert!((0.0..=1.0).contains(&prior));
            let score = model.classify(&probe);
            prop_assert!((0.0..=1.0).contains(&score.probability));
            prop_assert!(score.evidence.len() <= starling_model::EVIDENCE);
        }
        for (f, label) in &examples {
            model.unlearn(f, *label);
        }
        prop_assert_eq!(model.examples(), (0, 0));
        prop_assert_eq!(model.classify(&probe), before);
    }
}

#[test]
fn a_million_words_cost_bounded_time() {
    let words: Vec<u64> = (0..1_000_000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
    let huge = "subject:".to_owned() + &"x".repeat(10 << 20);
    let f = Features::extract(&words, &[huge.as_str(), ""]);
    assert!(f.len() <= MAX_FEATURES);
    let mut model = Model::new(small());
    model.learn(&f, Label::Spam);
    model.learn(&Features::extract(&[], &[]), Label::Ham);
    let score = model.classify(&f);
    assert!(score.probability > 0.5);
}
