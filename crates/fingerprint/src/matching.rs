//! When does a reported message match a checked one?
//!
//! [`MatchRule`] is the decision the network applies once a candidate has been
//! found through an index key; [`MemoryIndex`] applies it over reports held in
//! memory (the evaluation adapter and tests use it; the network's persistent
//! store performs the same lookups: exact digests by key, fuzzy candidates by
//! band key, never a scan).
//!
//! A fuzzy candidate matches when its estimated Jaccard similarity is high, or
//! when one text is mostly contained in the other and the Jaccard similarity
//! is still clearly above chance — the shape of a campaign whose copies had
//! random paragraphs or words added. URL and domain digests never decide on
//! their own: legitimate mail links to the same sites as spam all the time.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{Digest, Fingerprints, Kind, MinHash, Similarity};

/// Thresholds of a match. The defaults were chosen with the evaluation
/// harness on the corpus's development split (see `docs/evaluation.md`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatchRule {
    /// Estimated Jaccard similarity at or above which a signature matches.
    pub jaccard: f32,
    /// Estimated containment at or above which a signature matches, provided
    /// the Jaccard similarity is at least `containment_jaccard`.
    pub containment: f32,
    /// The Jaccard floor of a containment match.
    pub containment_jaccard: f32,
    /// Whether an attachment digest alone is a match.
    pub attachments: bool,
}

impl Default for MatchRule {
    fn default() -> MatchRule {
        MatchRule { jaccard: 0.5, containment: 0.7, containment_jaccard: 0.2, attachments: true }
    }
}

impl MatchRule {
    /// Whether a fuzzy similarity is a match.
    pub fn is_match(&self, similarity: &Similarity) -> bool {
        similarity.jaccard >= self.jaccard
            || (similarity.containment >= self.containment && similarity.jaccard >= self.containment_jaccard)
    }

    /// A score in (0, 1] for a match: 1 for exact, else the stronger of the
    /// two similarity estimates.
    pub fn score(similarity: &Similarity) -> f32 {
        similarity.jaccard.max(similarity.containment)
    }
}

/// What users said about a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportClass {
    /// Spam (or phishing).
    Spam,
    /// Not spam.
    Ham,
}

/// Report counts behind an indexed message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Spam reports.
    pub spam: u32,
    /// Not-spam reports.
    pub ham: u32,
}

/// The best match of a check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Match {
    /// The kind of fingerprint that matched.
    pub kind: Kind,
    /// The fuzzy similarity, for fuzzy matches.
    pub similarity: Option<Similarity>,
    /// 1 for exact matches, else [`MatchRule::score`].
    pub score: f32,
    /// The reports behind the matched entry.
    pub evidence: Evidence,
    /// The matched entry: the number of distinct messages reported before it.
    pub entry: usize,
}

struct Entry {
    fuzzy: Option<MinHash>,
    evidence: Evidence,
}

/// Reported fingerprints in memory, looked up by digest and band key.
#[derive(Default)]
pub struct MemoryIndex {
    entries: Vec<Entry>,
    text: HashMap<Digest, u32>,
    bands: HashMap<(u8, u64), Vec<u32>>,
    attachments: HashMap<Digest, Vec<u32>>,
}

impl MemoryIndex {
    /// An empty index.
    pub fn new() -> MemoryIndex {
        MemoryIndex::default()
    }

    /// Reported messages held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was reported.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records a report and returns its entry. A message whose text digest
    /// is already known adds to that entry's evidence instead of creating a
    /// new one; a message without fingerprints is not recorded.
    pub fn report(&mut self, fingerprints: &Fingerprints, class: ReportClass) -> Option<usize> {
        if fingerprints.is_empty() {
            return None;
        }
        let id = match fingerprints.text.and_then(|d| self.text.get(&d)) {
            Some(&id) => id,
            None => self.insert(fingerprints),
        };
        let evidence = &mut self.entries[id as usize].evidence;
        match class {
            ReportClass::Spam => evidence.spam += 1,
            ReportClass::Ham => evidence.ham += 1,
        }
        Some(id as usize)
    }

    fn insert(&mut self, fingerprints: &Fingerprints) -> u32 {
        let id = self.entries.len() as u32;
        self.entries.push(Entry { fuzzy: fingerprints.fuzzy.clone(), evidence: Evidence::default() });
        if let Some(digest) = fingerprints.text {
            self.text.insert(digest, id);
        }
        if let Some(fuzzy) = &fingerprints.fuzzy {
            for (band, key) in fuzzy.band_keys().into_iter().enumerate() {
                self.bands.entry((band as u8, key)).or_default().push(id);
            }
        }
        for digest in &fingerprints.attachments {
            self.attachments.entry(*digest).or_default().push(id);
        }
        id
    }

    /// The strongest match among entries whose spam reports outnumber their
    /// not-spam reports.
    pub fn check(&self, fingerprints: &Fingerprints, rule: &MatchRule) -> Option<Match> {
        let is_spam = |id: u32| {
            let e = self.entries[id as usize].evidence;
            e.spam > e.ham
        };
        if let Some(&id) = fingerprints.text.as_ref().and_then(|d| self.text.get(d))
            && is_spam(id)
        {
            return Some(self.exact(Kind::Text, id));
        }
        let mut best: Option<Match> = None;
        if let Some(fuzzy) = &fingerprints.fuzzy {
            let mut candidates: Vec<u32> = fuzzy
                .band_keys()
                .into_iter()
                .enumerate()
                .filter_map(|(band, key)| self.bands.get(&(band as u8, key)))
                .flatten()
                .copied()
                .collect();
            candidates.sort_unstable();
            candidates.dedup();
            for id in candidates.into_iter().filter(|&id| is_spam(id)) {
                let entry = &self.entries[id as usize];
                let Some(theirs) = &entry.fuzzy else { continue };
                let similarity = fuzzy.similarity(theirs);
                let score = MatchRule::score(&similarity);
                if rule.is_match(&similarity) && best.as_ref().is_none_or(|b| score > b.score) {
                    best = Some(Match {
                        kind: Kind::Fuzzy,
                        similarity: Some(similarity),
                        score,
                        evidence: entry.evidence,
                        entry: id as usize,
                    });
                }
            }
        }
        if best.is_none() && rule.attachments {
            best = fingerprints
                .attachments
                .iter()
                .filter_map(|d| self.attachments.get(d))
                .flatten()
                .find(|&&id| is_spam(id))
                .map(|&id| self.exact(Kind::Attachment, id));
        }
        best
    }

    fn exact(&self, kind: Kind, id: u32) -> Match {
        Match { kind, similarity: None, score: 1.0, evidence: self.entries[id as usize].evidence, entry: id as usize }
    }
}
