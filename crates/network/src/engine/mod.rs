//! The reputation engine: checks, reports, revocations and explanations over
//! a [`Store`], with the in-memory [`Filter`] in front.
//!
//! Checks run on the caller's thread against a consistent read view. Every
//! write goes through one writer (see [`crate::writer`]), which applies a
//! batch of requests in one store transaction and acknowledges them only
//! after the commit: a report that was answered is on disk.

use std::collections::HashMap;

use parking_lot::RwLock;
use starling_fingerprint::{Kind, MatchRule, Similarity};
use starling_proto::Submitted;

use crate::config::StoreConfig;
use crate::filter::Filter;
use crate::model::{
    Class, Entry, EntryId, IndexKey, Organisation, Plan, ReportRecord, Reporter, ReporterId, Timestamp, index_keys,
};
use crate::store::prefetch::Prefetched;
use crate::store::{Reads, Result, Store, Writes};
use crate::trust::{Outcome, Tally, TrustConfig, Vote};

/// The parts of the configuration the engine uses.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The match rule.
    pub rule: MatchRule,
    /// The reputation model.
    pub trust: TrustConfig,
    /// Store bounds.
    pub store: StoreConfig,
}

/// The entries a message's index keys name, before the match rule.
struct Found {
    /// Entries with the same text or attachment digest.
    exact: HashMap<EntryId, Kind>,
    /// Fuzzy candidates, the likeliest first.
    candidates: Vec<EntryId>,
}

impl Found {
    /// Every entry named.
    fn ids(&self) -> impl Iterator<Item = EntryId> + '_ {
        self.exact.keys().chain(&self.candidates).copied()
    }
}

/// An entry that matches a checked message.
#[derive(Clone, Debug)]
pub struct Matched {
    /// Its id.
    pub id: EntryId,
    /// The entry.
    pub entry: Entry,
    /// How it matched.
    pub kind: Kind,
    /// The similarity, for fuzzy matches.
    pub similarity: Option<Similarity>,
}

/// The verdict on one message and what it rests on.
#[derive(Clone, Debug)]
pub struct Assessment {
    /// The verdict.
    pub outcome: Outcome,
    /// How sure, in [0, 1).
    pub confidence: f32,
    /// The kind of fingerprint of the best match, if any.
    pub kind: Option<Kind>,
    /// The evidence.
    pub tally: Tally,
    /// Earliest and latest report among the matches.
    pub first_seen: Timestamp,
    /// Latest report.
    pub last_seen: Timestamp,
    /// The best fuzzy similarity among the matches.
    pub similarity: Option<Similarity>,
    /// Matched entries.
    pub matched: Vec<Matched>,
    /// The votes behind the tally.
    pub votes: Vec<(Vote, ReportRecord, f64)>,
    /// The outcome is the asking organisation's own reports' (the network
    /// as a whole said clean): see `TrustConfig::own_threshold`.
    pub own: bool,
}

impl Assessment {
    fn clean() -> Assessment {
        Assessment {
            outcome: Outcome::Clean,
            confidence: 0.0,
            kind: None,
            tally: Tally::default(),
            first_seen: 0,
            last_seen: 0,
            similarity: None,
            matched: Vec::new(),
            votes: Vec::new(),
            own: false,
        }
    }
}

/// What happened to one report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportOutcome {
    /// Stored.
    Recorded,
    /// Not stored, and why.
    Ignored(&'static str),
}

/// One report, as the writer applies it.
#[derive(Clone, Debug)]
pub struct ReportInput {
    /// The fingerprints.
    pub set: Submitted,
    /// What the user said.
    pub class: Class,
    /// The reporter's pseudonym within the organisation.
    pub reporter: String,
}

/// Organisations, indexed for authentication.
#[derive(Default)]
pub struct Organisations {
    by_id: HashMap<u32, Organisation>,
    by_credential: HashMap<[u8; 32], u32>,
}

impl Organisations {
    /// The organisation holding a credential (by its hash).
    pub fn by_credential(&self, hash: &[u8; 32]) -> Option<&Organisation> {
        self.by_credential.get(hash).and_then(|id| self.by_id.get(id))
    }

    /// An organisation by id.
    pub fn get(&self, id: u32) -> Option<&Organisation> {
        self.by_id.get(&id)
    }

    /// An organisation by name.
    pub fn by_name(&self, name: &str) -> Option<&Organisation> {
        self.by_id.values().find(|o| o.name == name)
    }

    /// All, by id.
    pub fn all(&self) -> Vec<Organisation> {
        let mut all: Vec<Organisation> = self.by_id.values().cloned().collect();
        all.sort_by_key(|o| o.id);
        all
    }

    /// Adds or replaces one.
    pub fn put(&mut self, org: Organisation) {
        self.by_credential.insert(org.credential_hash, org.id);
        self.by_id.insert(org.id, org);
    }

    /// The next free id.
    pub fn next_id(&self) -> u32 {
        self.by_id.keys().max().map_or(1, |m| m + 1)
    }
}

/// Keys added by the writer's current batch: not in the filter until the
/// batch commits, yet visible to the batch's own reads.
#[derive(Default)]
pub struct Pending {
    keys: Vec<IndexKey>,
    hashes: std::collections::HashSet<u64>,
}

impl Pending {
    fn add(&mut self, key: IndexKey) {
        self.hashes.insert(key.filter_hash());
        self.keys.push(key);
    }

    /// The keys added.
    pub fn keys(&self) -> &[IndexKey] {
        &self.keys
    }
}

/// The engine.
pub struct Engine<S: Store> {
    store: S,
    config: EngineConfig,
    filter: Filter,
    organisations: RwLock<Organisations>,
    /// When the organisations were last read from the store.
    organisations_read: parking_lot::Mutex<std::time::Instant>,
}

impl<S: Store> Engine<S> {
    /// An engine over a store; warms the filter and loads the organisations
    /// (maintenance reads, at start-up only).
    pub fn new(store: S, config: EngineConfig) -> Result<Engine<S>> {
        let mut organisations = Organisations::default();
        let filter;
        {
            let reader = store.reader()?;
            // Room for the keys there are and a tenth more, or for the
            // expected number of entries, in one layer.
            let keys = reader.stats()?.index_keys as usize * 11 / 10;
            let expected = config.store.expected_entries.saturating_mul(2 + starling_fingerprint::BANDS);
            filter = Filter::with_capacity(keys.max(expected));
            reader.each_index_key(&mut |key| filter.insert(key_hash(key)))?;
            for org in reader.organisations()? {
                organisations.put(org);
            }
        }
        Ok(Engine {
            store,
            config,
            filter,
            organisations: RwLock::new(organisations),
            organisations_read: parking_lot::Mutex::new(std::time::Instant::now()),
        })
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The organisations.
    pub fn organisations(&self) -> &RwLock<Organisations> {
        &self.organisations
    }

    /// Reads the organisations again from the store — another node sharing
    /// it may have created or changed one — unless a read started at or
    /// after `not_before` (its answer is as new). Whether it read them.
    pub fn refresh_organisations(&self, not_before: std::time::Instant) -> bool {
        // Held while reading: callers at the same moment wait for this read
        // and then find it new enough.
        let mut started = self.organisations_read.lock();
        if *started >= not_before {
            return false;
        }
        *started = std::time::Instant::now();
        match self.store.reader().and_then(|r| r.organisations()) {
            Ok(all) => {
                let mut organisations = self.organisations.write();
                for org in all {
                    organisations.put(org);
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the organisations again");
                false
            }
        }
    }

    /// Memory held by the filter, in bytes.
    pub fn filter_bytes(&self) -> usize {
        self.filter.bytes()
    }

    /// Verdicts for a batch of messages, from one consistent view, for the
    /// organisation `asker` (its own reports decide for it where the
    /// network as a whole says clean; `None`: the network's view alone).
    ///
    /// The store is read level by level for the whole batch — posting
    /// lists, entries, reports and their reporters — each level in one
    /// batch read ([`Prefetched`]): one round trip per level on a store
    /// across the network, instead of one per key.
    pub fn check(&self, sets: &[Submitted], now: Timestamp, asker: Option<u32>) -> Result<Vec<Assessment>> {
        let reader = self.store.reader()?;
        let reads = Prefetched::new(&reader);
        let keys: Vec<Vec<IndexKey>> = sets.iter().map(|set| self.present_keys(set, None)).collect();
        reads.load_postings(keys.iter().flatten().copied())?;
        let found: Vec<Found> = keys.into_iter().map(|keys| self.found(&reads, keys)).collect::<Result<_>>()?;
        reads.load_entries(found.iter().flat_map(Found::ids))?;
        let matched: Vec<Vec<Matched>> =
            sets.iter().zip(found).map(|(set, found)| self.verify(&reads, set, found)).collect::<Result<_>>()?;
        reads.load_reports(matched.iter().flatten().map(|m| m.id))?;
        let mut trust_cache = HashMap::new();
        matched.into_iter().map(|matched| self.assess_matched(&reads, matched, now, &mut trust_cache, asker)).collect()
    }

    /// The verdict for one message and everything behind it, as the network
    /// as a whole sees it.
    pub fn explain(&self, set: &Submitted, now: Timestamp) -> Result<Assessment> {
        let reader = self.store.reader()?;
        self.assess(&reader, set, now, None, &mut HashMap::new(), None)
    }

    fn assess(
        &self,
        reads: &impl Reads,
        set: &Submitted,
        now: Timestamp,
        pending: Option<&Pending>,
        trust_cache: &mut HashMap<ReporterId, f64>,
        asker: Option<u32>,
    ) -> Result<Assessment> {
        let matched = self.matches(reads, set, pending)?;
        self.assess_matched(reads, matched, now, trust_cache, asker)
    }

    /// The assessment of what matched a message, for `asker`.
    fn assess_matched(
        &self,
        reads: &impl Reads,
        matched: Vec<Matched>,
        now: Timestamp,
        trust_cache: &mut HashMap<ReporterId, f64>,
        asker: Option<u32>,
    ) -> Result<Assessment> {
        if matched.is_empty() {
            return Ok(Assessment::clean());
        }
        let mut assessment = self.assess_matches(reads, matched, now, trust_cache)?;
        if let Some(org) = asker
            && assessment.outcome == Outcome::Clean
        {
            let own: Vec<Vote> = assessment.votes.iter().map(|(v, _, _)| *v).filter(|v| v.org == org).collect();
            let tally = Tally::of(&own, &self.config.trust);
            if let Some(outcome) = tally.own_outcome(&self.config.trust) {
                assessment.outcome = outcome;
                assessment.confidence = tally.own_confidence(&self.config.trust);
                assessment.own = true;
            }
        }
        Ok(assessment)
    }

    fn assess_matches(
        &self,
        reads: &impl Reads,
        matched: Vec<Matched>,
        now: Timestamp,
        trust_cache: &mut HashMap<ReporterId, f64>,
    ) -> Result<Assessment> {
        let votes = self.votes(reads, &matched, now, trust_cache)?;
        let plain: Vec<Vote> = votes.iter().map(|(v, _, _)| *v).collect();
        let tally = Tally::of(&plain, &self.config.trust);
        let outcome = tally.outcome(&self.config.trust);
        let confidence = match outcome {
            Outcome::Spam | Outcome::Phish => tally.confidence(&self.config.trust),
            Outcome::Clean | Outcome::Unblocked => 0.0,
        };
        let similarity = matched
            .iter()
            .filter_map(|m| m.similarity)
            .max_by(|a, b| MatchRule::score(a).total_cmp(&MatchRule::score(b)));
        let kind = matched.iter().map(|m| m.kind).min_by_key(|k| kind_rank(*k));
        let first_seen = votes.iter().map(|(_, r, _)| r.at).min().unwrap_or(0);
        let last_seen = votes.iter().map(|(_, r, _)| r.at).max().unwrap_or(0);
        Ok(Assessment {
            outcome,
            confidence,
            kind,
            tally,
            first_seen,
            last_seen,
            similarity,
            matched,
            votes,
            own: false,
        })
    }

    /// The entries that match a fingerprint set: by text or attachment digest,
    /// or by band key and then the match rule. Only keys the in-memory filter
    /// (or, in the writer, the batch's own new keys) may hold are read.
    fn matches(&self, reads: &impl Reads, set: &Submitted, pending: Option<&Pending>) -> Result<Vec<Matched>> {
        let found = self.found(reads, self.present_keys(set, pending))?;
        self.verify(reads, set, found)
    }

    /// The index keys of a fingerprint set the store may hold: those the
    /// in-memory filter (or, in the writer, the batch's own new keys) has.
    fn present_keys(&self, set: &Submitted, pending: Option<&Pending>) -> Vec<IndexKey> {
        let keys = index_keys(set);
        // All filter probes first, in a loop without side effects, so the
        // processor overlaps their cache misses.
        let view = self.filter.view();
        let present: Vec<bool> = keys.iter().map(|k| view.may_contain(k.filter_hash())).collect();
        drop(view);
        let present: Vec<bool> = match pending {
            Some(pending) => {
                keys.iter().zip(present).map(|(k, p)| p || pending.hashes.contains(&k.filter_hash())).collect()
            }
            None => present,
        };
        keys.into_iter().zip(present).filter(|(_, present)| *present).map(|(key, _)| key).collect()
    }

    /// The entries these keys' posting lists name: exact matches by digest,
    /// and the fuzzy candidates that share the most bands.
    fn found(&self, reads: &impl Reads, keys: Vec<IndexKey>) -> Result<Found> {
        let mut exact: HashMap<EntryId, Kind> = HashMap::new();
        let mut bands: HashMap<EntryId, u32> = HashMap::new();
        for key in keys {
            let postings = reads.postings(key)?;
            for id in postings {
                match key {
                    IndexKey::Text(_) => {
                        exact.insert(id, Kind::Text);
                    }
                    IndexKey::Attachment(_) if self.config.rule.attachments => {
                        exact.entry(id).or_insert(Kind::Attachment);
                    }
                    IndexKey::Attachment(_) => {}
                    IndexKey::Band(..) => *bands.entry(id).or_default() += 1,
                }
            }
        }
        let mut candidates: Vec<(EntryId, u32)> = bands.into_iter().filter(|(id, _)| !exact.contains_key(id)).collect();
        // Most shared bands first: the likeliest matches are verified first.
        candidates.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        candidates.truncate(self.config.store.max_candidates);
        Ok(Found { exact, candidates: candidates.into_iter().map(|(id, _)| id).collect() })
    }

    /// The found entries that match: every exact one, and the candidates
    /// that pass the match rule.
    fn verify(&self, reads: &impl Reads, set: &Submitted, found: Found) -> Result<Vec<Matched>> {
        let Found { exact, candidates } = found;
        let mut matched = Vec::new();
        for (id, kind) in exact {
            if let Some(entry) = reads.entry(id)? {
                matched.push(Matched { id, entry, kind, similarity: None });
            }
        }
        if let Some(fuzzy) = &set.fuzzy {
            for id in candidates {
                let Some(entry) = reads.entry(id)? else { continue };
                let Some(theirs) = entry.fuzzy() else { continue };
                let similarity = fuzzy.similarity(&theirs);
                if self.config.rule.is_match(&similarity) {
                    matched.push(Matched { id, entry, kind: Kind::Fuzzy, similarity: Some(similarity) });
                }
            }
        }
        matched.sort_by_key(|m| m.id);
        Ok(matched)
    }

    /// One vote per reporter over the matched entries (their latest report),
    /// weighed by current trust and age.
    fn votes(
        &self,
        reads: &impl Reads,
        matched: &[Matched],
        now: Timestamp,
        trust_cache: &mut HashMap<ReporterId, f64>,
    ) -> Result<Vec<(Vote, ReportRecord, f64)>> {
        let mut latest: HashMap<ReporterId, ReportRecord> = HashMap::new();
        for m in matched {
            for (reporter, record) in reads.reports(m.id)? {
                let keep = latest.get(&reporter).is_none_or(|old| record.at >= old.at);
                if keep {
                    latest.insert(reporter, record);
                }
            }
        }
        let organisations = self.organisations.read();
        let mut votes = Vec::with_capacity(latest.len());
        for (reporter, record) in latest {
            let plan = organisations.get(record.org).map_or(Plan::Subscription, |o| o.plan);
            let trust = match trust_cache.get(&reporter) {
                Some(&trust) => trust,
                None => {
                    let known = reads.reporter(reporter)?.unwrap_or_default();
                    let trust = self.config.trust.trust(&known, plan);
                    trust_cache.insert(reporter, trust);
                    trust
                }
            };
            let weight = self.config.trust.weight(trust, record.at, now);
            let vote = Vote { reporter, org: record.org, feed: plan == Plan::Feed, class: record.class, weight };
            votes.push((vote, record, trust));
        }
        votes.sort_by_key(|v| v.0.reporter);
        Ok(votes)
    }

    /// Applies one report inside the writer's batch. Returns the index keys
    /// it added (for the filter, after the commit).
    pub fn apply_report(
        &self,
        w: &mut (impl Reads + Writes),
        org: &Organisation,
        report: &ReportInput,
        now: Timestamp,
        pending: &mut Pending,
    ) -> Result<ReportOutcome> {
        if report.set.is_empty() {
            return Ok(ReportOutcome::Ignored("no fingerprints"));
        }
        let reporter = ReporterId::new(org.id, &report.reporter);
        let mut matched = self.matches(w, &report.set, Some(pending))?;
        let target = self.target(&matched, &report.set);
        let Some(target) = target else { return Ok(ReportOutcome::Ignored("no fingerprints")) };
        let existing = match matched.iter().find(|m| m.id == target) {
            Some(m) => Some(m.entry.clone()),
            None => w.entry(target)?,
        };
        let entry = match existing {
            Some(mut entry) => {
                let reports = w.reports(target)?;
                let previous = reports.iter().find(|(r, _)| *r == reporter).map(|(_, record)| record);
                // The same report again (an agent killed after sending it
                // and before noting so sends it again): recorded already,
                // and counted once — neither the reporter's activity nor
                // the message's age changes.
                if previous.is_some_and(|p| p.class == report.class && p.org == org.id) {
                    return Ok(ReportOutcome::Recorded);
                }
                if previous.is_none() && reports.len() >= self.config.store.max_reporters_per_entry {
                    return Ok(ReportOutcome::Ignored("the message already has the most reports kept"));
                }
                entry.last_seen = now;
                w.put_entry(target, &entry)?;
                entry
            }
            None => {
                // The entry first, then its postings: a posting never points
                // to nothing.
                let entry = Entry::new(&report.set, now);
                w.put_entry(target, &entry)?;
                for key in entry.index_keys() {
                    w.add_posting(key, target, self.config.store.max_postings_per_key)?;
                    pending.add(key);
                }
                entry
            }
        };
        w.schedule_expiry(day(now) + self.config.store.expire_after_days, target)?;
        w.put_report(target, reporter, &ReportRecord { org: org.id, class: report.class, at: now })?;
        let mut record =
            w.reporter(reporter)?.unwrap_or(Reporter { org: org.id, first_seen: now, ..Reporter::default() });
        record.reports += 1;
        w.put_reporter(reporter, &record)?;

        match matched.iter_mut().find(|m| m.id == target) {
            Some(m) => m.entry = entry,
            None => matched.push(Matched { id: target, entry, kind: Kind::Text, similarity: None }),
        }
        self.credit_consensus(w, matched, now)?;
        Ok(ReportOutcome::Recorded)
    }

    /// The entry a report joins: the one with the same text, else a close
    /// fuzzy match, else a new one.
    fn target(&self, matched: &[Matched], set: &Submitted) -> Option<EntryId> {
        if let Some(m) = matched.iter().find(|m| m.kind == Kind::Text) {
            return Some(m.id);
        }
        let close = matched
            .iter()
            .filter(|m| m.similarity.is_some_and(|s| s.jaccard >= self.config.store.cluster_jaccard))
            .max_by(|a, b| {
                let (a, b) = (a.similarity.map_or(0.0, |s| s.jaccard), b.similarity.map_or(0.0, |s| s.jaccard));
                a.total_cmp(&b)
            });
        close.map(|m| m.id).or_else(|| EntryId::of(set))
    }

    /// When the matched reports form a consensus for the first time, credits
    /// the reporters who were right and debits those who were wrong.
    fn credit_consensus(&self, w: &mut (impl Reads + Writes), matched: Vec<Matched>, now: Timestamp) -> Result<()> {
        let assessment = self.assess_matches(w, matched, now, &mut HashMap::new())?;
        let config = &self.config.trust;
        let bad = assessment.tally.bad_consensus(config) && assessment.matched.iter().any(|m| !m.entry.credited.bad);
        let ham = assessment.tally.ham_consensus(config) && assessment.matched.iter().any(|m| !m.entry.credited.ham);
        if !bad && !ham {
            return Ok(());
        }
        for (vote, _, _) in &assessment.votes {
            let right = match vote.class {
                Class::Spam | Class::Phish => bad,
                Class::Ham => ham,
            };
            let wrong = match vote.class {
                Class::Spam | Class::Phish => ham,
                Class::Ham => bad,
            };
            if !right && !wrong {
                continue;
            }
            let mut reporter = w.reporter(vote.reporter)?.unwrap_or_default();
            if right {
                reporter.confirmed += 1;
            }
            if wrong {
                reporter.contradicted += 1;
            }
            w.put_reporter(vote.reporter, &reporter)?;
        }
        for m in assessment.matched {
            let mut entry = w.entry(m.id)?.unwrap_or(m.entry);
            entry.credited.bad |= bad;
            entry.credited.ham |= ham;
            w.put_entry(m.id, &entry)?;
        }
        Ok(())
    }

    /// Withdraws a reporter's reports about a message (and every entry that
    /// matches it). Returns how many were removed.
    pub fn apply_revocation(
        &self,
        w: &mut (impl Reads + Writes),
        org: &Organisation,
        set: &Submitted,
        pseudonym: &str,
        pending: &Pending,
    ) -> Result<u32> {
        let reporter = ReporterId::new(org.id, pseudonym);
        let mut removed = 0;
        for m in self.matches(w, set, Some(pending))? {
            if w.delete_report(m.id, reporter)? {
                removed += 1;
                if w.reports(m.id)?.is_empty() {
                    self.forget(w, m.id, &m.entry)?;
                }
            }
        }
        Ok(removed)
    }

    /// Removes an entry: its postings first, so no posting outlives it.
    fn forget(&self, w: &mut impl Writes, id: EntryId, entry: &Entry) -> Result<()> {
        for key in entry.index_keys() {
            w.remove_posting(key, id)?;
        }
        w.delete_entry(id)
    }

    /// Forgets entries whose last report is older than the expiry. Returns
    /// how many were removed.
    pub fn expire(&self, w: &mut (impl Reads + Writes), now: Timestamp, limit: usize) -> Result<usize> {
        let today = day(now);
        let mut removed = 0;
        for id in w.take_due_expiries(today, limit)? {
            let Some(entry) = w.entry(id)? else { continue };
            // A later report rescheduled it; that later check will decide.
            if day(entry.last_seen) + self.config.store.expire_after_days > today {
                continue;
            }
            self.forget(w, id, &entry)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Makes index keys added by a committed batch visible to checks, and
    /// tells the other nodes sharing the store (a failure to tell them is
    /// logged: they catch up at their next start).
    pub fn publish(&self, pending: &Pending) {
        for key in &pending.keys {
            self.filter.insert(key.filter_hash());
        }
        if !pending.keys.is_empty() {
            let keys: Vec<Vec<u8>> = pending.keys.iter().map(|k| k.to_bytes()).collect();
            if let Err(e) = self.store.announce(&keys, &[]) {
                tracing::warn!(error = %e, "could not tell the other nodes of new index keys");
            }
        }
    }

    /// Puts every index key of the store into the filter again: this node
    /// missed announcements of keys other nodes added (a maintenance read
    /// of the whole store, as at start-up). Returns the keys read.
    pub fn rewarm(&self) -> Result<usize> {
        let reader = self.store.reader()?;
        let mut keys = 0;
        reader.each_index_key(&mut |key| {
            self.filter.insert(key_hash(key));
            keys += 1;
        })?;
        Ok(keys)
    }

    /// Index keys another node sharing the store added (their byte form).
    pub fn adopt(&self, keys: &[Vec<u8>]) {
        for key in keys {
            self.filter.insert(key_hash(key));
        }
    }
}

/// Days since the epoch.
pub fn day(at: Timestamp) -> u32 {
    (at.max(0) / 86_400) as u32
}

fn kind_rank(kind: Kind) -> u8 {
    match kind {
        Kind::Text => 0,
        Kind::Attachment => 1,
        Kind::Fuzzy => 2,
        Kind::Url => 3,
        Kind::Domain => 4,
    }
}

/// The filter hash of a stored index key.
fn key_hash(bytes: &[u8]) -> u64 {
    match bytes {
        [b't', rest @ ..] if rest.len() == 16 => {
            IndexKey::Text(starling_fingerprint::Digest(rest.try_into().expect("16 bytes"))).filter_hash()
        }
        [b'a', rest @ ..] if rest.len() == 16 => {
            IndexKey::Attachment(starling_fingerprint::Digest(rest.try_into().expect("16 bytes"))).filter_hash()
        }
        [b'b', band, rest @ ..] if rest.len() == 8 => {
            IndexKey::Band(*band, u64::from_be_bytes(rest.try_into().expect("8 bytes"))).filter_hash()
        }
        // An unknown key kind: hash it so it still passes the filter.
        other => u64::from_le_bytes(blake3::hash(other).as_bytes()[..8].try_into().expect("8 bytes")),
    }
}

#[cfg(test)]
mod tests;
