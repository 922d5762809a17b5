//! The local model: what the organisation's own users taught it, kept in
//! the state directory. Content never leaves the agent, and never reaches
//! the disk either: the model holds counts of hashed feature ids
//! (`starling-model`), and the examples it learnt from are stored as those
//! ids.
//!
//! Durability: every example is written to the state database (the
//! `model_examples` table: one current label per mailbox and message, the
//! source of `starling model retrain`; and the `model_log` of changes since
//! the last snapshot) before the model in memory learns it. A snapshot
//! (`model-<log id>.bin`, written atomically by [`Model::save`]) is taken
//! every minute when something changed and at shutdown; on start the
//! newest valid snapshot is loaded and the log after it replayed, so a
//! crash loses nothing that was committed. A missing or corrupt snapshot
//! is rebuilt from the examples.
//!
//! Poisoning is bounded: one mailbox holds at most
//! `model.max_examples_per_mailbox` examples per class (its oldest are
//! forgotten beyond that), and the filing threshold is calibrated on the
//! scores ham got before it was learnt, so a user who teaches ham as spam
//! raises the threshold for everybody instead of getting ham filed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use starling_fingerprint::ModelText;
use starling_model::{Features, Label, Linear, MAX_FIT_EXAMPLES, Model, ModelConfig, Score};

use crate::config::LearningConfig;
use crate::events::{self, Events};
use crate::state::{State, StateError};

/// Where an example came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A user moved it into the spam folder (or marked it junk).
    UserSpam,
    /// A user took it out of the spam folder (or marked it not junk).
    UserHam,
    /// The network's confident verdict.
    Network,
    /// Left in the inbox, unmoved (and read), by a user who reports spam.
    Implicit,
    /// In the user's spam folder when the agent first saw the mailbox.
    ExistingSpam,
    /// Read and kept in the inbox, when the agent first saw the mailbox,
    /// by a user whose spam folder held mail.
    ExistingHam,
}

impl Source {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::UserSpam => "user-spam",
            Source::UserHam => "user-ham",
            Source::Network => "network",
            Source::Implicit => "implicit",
            Source::ExistingSpam => "existing-spam",
            Source::ExistingHam => "existing-ham",
        }
    }

    /// The label it teaches.
    pub fn label(self) -> Label {
        match self {
            Source::UserSpam | Source::Network | Source::ExistingSpam => Label::Spam,
            Source::UserHam | Source::Implicit | Source::ExistingHam => Label::Ham,
        }
    }
}

fn label_name(label: Label) -> &'static str {
    match label {
        Label::Spam => "spam",
        Label::Ham => "ham",
    }
}

fn label_of(name: &str) -> Label {
    if name == "spam" { Label::Spam } else { Label::Ham }
}

/// The model's features of a message: its normalised words and the domains
/// it links to (from the fingerprint engine, as `link:` tokens), its header
/// tokens ([`crate::header_tokens`], read with the message's facts); and
/// its sender, a hash of the From
/// address, unless the organisation's servers found that address forged
/// (a failed SPF, DKIM or DMARC check): the model never files a known
/// sender's mail by itself, so a forged one must not count as known.
pub fn features(text: &ModelText, header_tokens: &[String]) -> Features {
    let links: Vec<String> = text.link_domains.iter().map(|domain| format!("link:{domain}")).collect();
    let headers: Vec<&str> = header_tokens.iter().chain(&links).map(String::as_str).collect();
    let forged = headers.contains(&"from-auth:fail");
    let sender = headers
        .iter()
        .find_map(|t| t.strip_prefix("from:"))
        .filter(|_| !forged)
        .map(|address| xxhash_rust::xxh3::xxh3_64_with_seed(address.as_bytes(), SENDER_SEED));
    Features::extract(&text.words, &headers).with_sender(sender)
}

/// The seed of the sender's hash.
const SENDER_SEED: u64 = 0x7365_6e64_6572_2121; // "sender!!"

/// What the model says of a message: its two classifiers' scores and
/// thresholds (the counting classifier's, `probability`, and the linear
/// one's, `linear`; see `starling_model::Linear`).
#[derive(Clone, Debug)]
pub struct Opinion {
    /// The counting classifier's probability of spam.
    pub probability: f32,
    /// The probability it files at now.
    pub threshold: f32,
    /// The linear classifier's score, as a probability.
    pub linear: f32,
    /// The score it files above now (above 1: not yet fitted and
    /// calibrated).
    pub linear_threshold: f32,
    /// The linear classifier is above its threshold (compared on its
    /// decision value, which the probability rounds near 1).
    pub linear_sure: bool,
    /// It has learnt enough of both classes to file.
    pub ready: bool,
    /// The sender is one the organisation corresponds with: the model
    /// does not file its mail, whatever the probability.
    pub known_sender: bool,
    /// Strongest feature ids (hashed, never text) with their spam
    /// probability.
    pub evidence: Vec<(u32, f32)>,
}

impl Opinion {
    /// Whether the model would file it: it has learnt enough, the sender
    /// is not known, and either classifier is sure.
    pub fn sure(&self) -> bool {
        self.ready && !self.known_sender && (self.probability >= self.threshold || self.linear_sure)
    }

    /// The explanation kept with a filing: probability, threshold and the
    /// strongest feature ids.
    pub fn explain(&self) -> String {
        let top: Vec<String> = self.evidence.iter().take(5).map(|(id, p)| format!("{id:08x}={p:.2}")).collect();
        format!(
            "model p={:.4} (threshold {:.4}), linear {:.4} (threshold {:.4}{}); strongest features {}",
            self.probability,
            self.threshold,
            self.linear,
            self.linear_threshold,
            if self.known_sender { "; a known sender: not filed by the model" } else { "" },
            top.join(" ")
        )
    }
}

/// The model's figures for the console and `starling model status`.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Status {
    /// Spam examples learnt.
    pub spam: u64,
    /// Ham examples learnt.
    pub ham: u64,
    /// Enough of both to file, and enough ham scores for a threshold (a
    /// model without one has a threshold above 1).
    pub ready: bool,
    /// The counting classifier's threshold.
    pub threshold: f32,
    /// The linear classifier's threshold (above 1 until it is fitted on
    /// enough ham).
    #[serde(default)]
    pub linear_threshold: f32,
    /// Examples the linear classifier was last fitted on.
    #[serde(default)]
    pub linear_examples: u64,
    /// Memory the model takes.
    pub memory_bytes: usize,
    /// Senders the organisation corresponds with: the model never files
    /// their mail.
    pub known_senders: usize,
}

struct Inner {
    model: Model,
    /// The linear classifier, fitted on the examples as they were at
    /// `fitted` (a [`Learner::version`]).
    linear: Linear,
    fitted: Option<u64>,
    /// The last `model_log` row the model has applied.
    applied: i64,
    dirty: bool,
}

impl std::fmt::Debug for Learner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Learner").field("status", &self.status()).finish_non_exhaustive()
    }
}

/// The organisation's model, shared by the pipeline and the processor.
pub struct Learner {
    inner: Mutex<Inner>,
    model_config: ModelConfig,
    config: LearningConfig,
    dir: PathBuf,
    state: State,
    events: Events,
    /// Bumped on every change: the retro pass looks again when it moves.
    version: AtomicU64,
}

fn model_config(config: &LearningConfig) -> ModelConfig {
    ModelConfig {
        table_bits: config.table_bits,
        min_spam: config.min_spam,
        min_ham: config.min_ham,
        target_false_positive_rate: config.target_false_positive_rate,
        threshold_floor: config.threshold_floor as f32,
    }
}

/// Snapshot files in `dir`, newest first: (log id, path).
fn snapshots(dir: &Path) -> Vec<(i64, PathBuf)> {
    let mut found: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let id = name.strip_prefix("model-")?.strip_suffix(".bin")?.parse().ok()?;
            Some((id, entry.path()))
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found
}

impl Learner {
    /// Opens the model in `dir` (the state directory): the newest valid
    /// snapshot and the log after it, or the examples when there is no
    /// usable snapshot.
    pub async fn open(
        config: &LearningConfig,
        dir: &Path,
        state: State,
        events: Events,
    ) -> Result<Learner, StateError> {
        let model_config = model_config(config);
        let mut loaded = None;
        for (id, path) in snapshots(dir) {
            match Model::load(&path, model_config.clone()) {
                Ok(model) => {
                    loaded = Some((model, id));
                    break;
                }
                Err(e) => events.emit(events::MODEL_REBUILT, None, format!("{}: {e}", path.display())),
            }
        }
        let learner = Learner {
            inner: Mutex::new(Inner {
                model: Model::new(model_config.clone()),
                linear: Linear::empty(),
                fitted: None,
                applied: 0,
                dirty: false,
            }),
            model_config,
            config: config.clone(),
            dir: dir.to_owned(),
            state,
            events,
            version: AtomicU64::new(0),
        };
        match loaded {
            Some((model, applied)) => {
                let log = learner.state.call(move |c| log_after(c, applied)).await?;
                let mut inner = learner.lock();
                inner.model = model;
                inner.applied = applied;
                for (id, label, learn, features) in log {
                    apply(&mut inner.model, &features, label, learn);
                    inner.applied = id;
                    inner.dirty = true;
                }
            }
            None => learner.rebuild().await?,
        }
        learner.refit().await;
        Ok(learner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The model's opinion of a message.
    pub fn opinion(&self, features: &Features) -> Opinion {
        let inner = self.lock();
        opinion_of(&inner.model, &inner.linear, features)
    }

    /// Fits the linear classifier again on the newest stored examples, if
    /// anything was learnt or forgotten since its last fit (on a blocking
    /// thread: a fit of the most it takes, 8,000 examples, is about 0.6 s
    /// on one core). The agent calls it once
    /// the model has settled, before its retro pass, and at start.
    pub async fn refit(&self) {
        let version = self.version();
        if self.lock().fitted == Some(version) {
            return;
        }
        let examples = match self.state.call(|c| examples(c, Some(MAX_FIT_EXAMPLES))).await {
            Ok(examples) => examples,
            Err(e) => {
                self.events.emit(events::STATE_ERROR, None, format!("the model was not fitted: {e}"));
                return;
            }
        };
        let fitted = tokio::task::spawn_blocking(move || {
            let examples: Vec<(Features, Label)> = examples
                .into_iter()
                .filter_map(|(label, bytes)| Some((Features::from_bytes(&bytes)?, label)))
                .collect();
            Linear::fit(&examples)
        })
        .await;
        if let Ok(linear) = fitted {
            let mut inner = self.lock();
            inner.linear = linear;
            inner.fitted = Some(version);
        }
    }

    /// Changes since start (for the retro pass).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }

    /// Whether the model may file: enough of both classes, and enough ham
    /// scores for a threshold (a model without one has a threshold above 1).
    pub fn ready(&self) -> bool {
        let inner = self.lock();
        ready(&inner.model, &inner.linear)
    }

    /// The model's figures (counting the known senders walks them all: for
    /// the console, not for every pass).
    pub fn status(&self) -> Status {
        let inner = self.lock();
        let (spam, ham) = inner.model.examples();
        let [fitted_spam, fitted_ham] = inner.linear.fitted();
        Status {
            spam,
            ham,
            ready: ready(&inner.model, &inner.linear),
            threshold: inner.model.threshold(),
            linear_threshold: inner.linear.threshold(),
            linear_examples: (fitted_spam + fitted_ham) as u64,
            memory_bytes: inner.model.memory_bytes() + inner.linear.memory_bytes(),
            known_senders: inner.model.known_senders(),
        }
    }

    /// Learns that the message `key` of `mailbox` is what `source` says.
    /// A message learnt before with the other label is unlearnt first; the
    /// same label again changes nothing. Automatic sources (the network,
    /// implicit ham, the mail a user already had) never replace what a
    /// user said.
    pub async fn learn(&self, mailbox: &str, key: &str, source: Source, features: Features) {
        let (mailbox, key) = (mailbox.to_owned(), key.to_owned());
        let cap = self.config.max_examples_per_mailbox;
        let bytes = features.to_bytes();
        let result = self.state.call(move |c| record(c, &mailbox, &key, source, &bytes, cap)).await;
        match result {
            Ok(true) => self.catch_up().await,
            Ok(false) => {}
            Err(e) => self.events.emit(events::STATE_ERROR, None, format!("the model did not learn: {e}")),
        }
    }

    /// Forgets what was learnt of a message (its user took the move back).
    pub async fn forget(&self, mailbox: &str, key: &str) {
        let (mailbox, key) = (mailbox.to_owned(), key.to_owned());
        let result = self.state.call(move |c| forget(c, &mailbox, &key)).await;
        match result {
            Ok(true) => self.catch_up().await,
            Ok(false) => {}
            Err(e) => self.events.emit(events::STATE_ERROR, None, format!("the model did not forget: {e}")),
        }
    }

    /// Applies the log rows the model has not applied yet.
    async fn catch_up(&self) {
        let after = self.lock().applied;
        let Ok(log) = self.state.call(move |c| log_after(c, after)).await else { return };
        let mut inner = self.lock();
        for (id, label, learn, features) in log {
            if id <= inner.applied {
                continue;
            }
            apply(&mut inner.model, &features, label, learn);
            inner.applied = id;
            inner.dirty = true;
        }
        drop(inner);
        self.version.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes a snapshot if anything changed since the last one, then
    /// drops the log it covers and older snapshots.
    pub async fn snapshot(&self) {
        let (bytes_model, applied) = {
            let mut inner = self.lock();
            if !inner.dirty {
                return;
            }
            inner.dirty = false;
            (inner.model.clone(), inner.applied)
        };
        let path = self.dir.join(format!("model-{applied}.bin"));
        let saved = tokio::task::spawn_blocking(move || bytes_model.save(&path)).await;
        match saved {
            Ok(Ok(())) => {
                for (id, old) in snapshots(&self.dir) {
                    if id < applied {
                        let _ = std::fs::remove_file(old);
                    }
                }
                self.state.send(move |c| c.execute("DELETE FROM model_log WHERE id <= ?1", [applied]).map(|_| ()));
            }
            Ok(Err(e)) => {
                self.lock().dirty = true;
                self.events.emit(events::MODEL_NOT_SAVED, None, e.to_string());
            }
            Err(_) => self.lock().dirty = true,
        }
    }

    /// Rebuilds the model from the stored examples, in the order they were
    /// learnt (`starling model retrain`, or a missing snapshot).
    pub async fn rebuild(&self) -> Result<(), StateError> {
        let (examples, last_log) = self.state.call(|c| Ok((examples(c, None)?, last_log(c)?))).await?;
        let mut model = Model::new(self.model_config.clone());
        for (label, features) in &examples {
            if let Some(features) = Features::from_bytes(features) {
                model.learn(&features, *label);
            }
        }
        {
            let mut inner = self.lock();
            inner.model = model;
            inner.applied = last_log;
            inner.dirty = true;
        }
        self.version.fetch_add(1, Ordering::Relaxed);
        self.snapshot().await;
        Ok(())
    }
}

fn ready(model: &Model, linear: &Linear) -> bool {
    model.ready() && (model.threshold() <= 1.0 || linear.threshold() <= 1.0)
}

fn apply(model: &mut Model, features: &[u8], label: Label, learn: bool) {
    let Some(features) = Features::from_bytes(features) else { return };
    if learn {
        model.learn(&features, label);
    } else {
        model.unlearn(&features, label);
    }
}

/// What the two classifiers say of a message: the decision the agent
/// acts on ([`Opinion::sure`]), also used by the model's evaluation.
pub fn opinion_of(model: &Model, linear: &Linear, features: &Features) -> Opinion {
    let Score { probability, evidence, known_sender } = model.classify(features);
    let decision = linear.decision(features);
    let linear_sure = linear.files(decision);
    // The linear classifier's strongest features when it is the one that is
    // sure.
    let linear_decides = linear_sure && probability < model.threshold();
    Opinion {
        probability,
        threshold: model.threshold(),
        linear: Linear::probability(decision),
        linear_threshold: linear.threshold(),
        linear_sure,
        ready: model.ready(),
        known_sender,
        evidence: if linear_decides { linear.evidence(features, starling_model::EVIDENCE) } else { evidence },
    }
}

type LogRow = (i64, Label, bool, Vec<u8>);

fn log_after(c: &Connection, after: i64) -> rusqlite::Result<Vec<LogRow>> {
    c.prepare_cached("SELECT id, label, learn, features FROM model_log WHERE id > ?1 ORDER BY id")?
        .query_map([after], |r| Ok((r.get(0)?, label_of(&r.get::<_, String>(1)?), r.get(2)?, r.get(3)?)))?
        .collect()
}

fn last_log(c: &Connection) -> rusqlite::Result<i64> {
    c.query_row("SELECT coalesce(max(id), 0) FROM model_log", [], |r| r.get(0))
}

/// The stored examples in the order they were learnt: all of them, or the
/// newest `limit`.
fn examples(c: &Connection, limit: Option<usize>) -> rusqlite::Result<Vec<(Label, Vec<u8>)>> {
    // SQLite reads a negative LIMIT as none.
    let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    c.prepare(
        "SELECT label, features FROM \
         (SELECT id, label, features FROM model_examples ORDER BY id DESC LIMIT ?1) ORDER BY id",
    )?
    .query_map([limit], |r| Ok((label_of(&r.get::<_, String>(0)?), r.get(1)?)))?
    .collect()
}

fn log(c: &Connection, label: Label, learn: bool, features: &[u8]) -> rusqlite::Result<()> {
    c.prepare_cached("INSERT INTO model_log (label, learn, features) VALUES (?1, ?2, ?3)")?
        .execute(params![label_name(label), learn, features])
        .map(|_| ())
}

/// Stores an example and logs the change; whether anything changed.
fn record(
    c: &mut Connection,
    mailbox: &str,
    key: &str,
    source: Source,
    features: &[u8],
    cap: u32,
) -> rusqlite::Result<bool> {
    let tx = c.transaction()?;
    let label = source.label();
    let existing: Option<(i64, String, String, Vec<u8>)> = tx
        .query_row(
            "SELECT id, label, source, features FROM model_examples WHERE mailbox = ?1 AND key = ?2",
            params![mailbox, key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    if let Some((id, old_label, old_source, old_features)) = existing {
        let user_said = old_source.starts_with("user-");
        if old_label == label_name(label) || (user_said && !source.as_str().starts_with("user-")) {
            return Ok(false);
        }
        log(&tx, label_of(&old_label), false, &old_features)?;
        tx.execute("DELETE FROM model_examples WHERE id = ?1", [id])?;
    }
    tx.execute(
        "INSERT INTO model_examples (mailbox, key, label, source, features, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![mailbox, key, label_name(label), source.as_str(), features, jiff::Timestamp::now().as_second()],
    )?;
    log(&tx, label, true, features)?;
    // One mailbox's weight is bounded: its oldest examples of this class
    // beyond the cap are forgotten.
    let over: Vec<(i64, Vec<u8>)> = tx
        .prepare(
            "SELECT id, features FROM model_examples WHERE mailbox = ?1 AND label = ?2
             ORDER BY id DESC LIMIT -1 OFFSET ?3",
        )?
        .query_map(params![mailbox, label_name(label), cap], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (id, old) in over {
        log(&tx, label, false, &old)?;
        tx.execute("DELETE FROM model_examples WHERE id = ?1", [id])?;
    }
    tx.commit()?;
    Ok(true)
}

fn forget(c: &mut Connection, mailbox: &str, key: &str) -> rusqlite::Result<bool> {
    let tx = c.transaction()?;
    let existing: Option<(i64, String, Vec<u8>)> = tx
        .query_row(
            "SELECT id, label, features FROM model_examples WHERE mailbox = ?1 AND key = ?2",
            params![mailbox, key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((id, label, features)) = existing else { return Ok(false) };
    log(&tx, label_of(&label), false, &features)?;
    tx.execute("DELETE FROM model_examples WHERE id = ?1", [id])?;
    tx.commit()?;
    Ok(true)
}

/// Asks the running agent to rebuild the model (`starling model retrain`);
/// returns the request's id.
pub fn request_retrain(c: &Connection) -> rusqlite::Result<i64> {
    c.execute(
        "INSERT INTO model_requests (kind, requested_at) VALUES ('retrain', ?1)",
        [jiff::Timestamp::now().as_second()],
    )?;
    Ok(c.last_insert_rowid())
}

/// Pending requests (id).
pub fn pending_requests(c: &Connection) -> rusqlite::Result<Vec<i64>> {
    c.prepare_cached("SELECT id FROM model_requests WHERE status = 'pending' ORDER BY id")?
        .query_map([], |r| r.get(0))?
        .collect()
}

/// Marks a request done, with a detail.
pub fn request_done(c: &Connection, id: i64, detail: &str) -> rusqlite::Result<()> {
    c.execute("UPDATE model_requests SET status = 'done', detail = ?2 WHERE id = ?1", params![id, detail]).map(|_| ())
}

/// A request's status and detail.
pub fn request_status(c: &Connection, id: i64) -> rusqlite::Result<Option<(String, String)>> {
    c.query_row("SELECT status, detail FROM model_requests WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// The stored examples per label and source (for `starling model status`).
pub fn example_counts(c: &Connection) -> rusqlite::Result<Vec<(String, String, u64)>> {
    c.prepare("SELECT label, source, count(*) FROM model_examples GROUP BY label, source ORDER BY label, source")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)))?
        .collect()
}

/// Whether the model learnt the mail `mailbox` had when the agent first
/// saw it.
pub fn existing_learnt(c: &Connection, mailbox: &str) -> rusqlite::Result<bool> {
    c.query_row("SELECT count(*) > 0 FROM model_history WHERE mailbox = ?1", [mailbox], |r| r.get(0))
}

/// Records that the model learnt `mailbox`'s existing mail: `spam` from
/// its spam folder, `ham` from its inbox. A mailbox with spam there counts
/// as one whose user reports spam (its unmoved mail is implicit ham).
pub fn existing_done(c: &Connection, mailbox: &str, spam: u32, ham: u32) -> rusqlite::Result<()> {
    c.execute(
        "INSERT OR REPLACE INTO model_history (mailbox, at, spam, ham) VALUES (?1, ?2, ?3, ?4)",
        params![mailbox, jiff::Timestamp::now().as_second(), spam, ham],
    )
    .map(|_| ())
}

/// A shared learner.
pub type Shared = Arc<Learner>;

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(raw: &str) -> Vec<String> {
        crate::facts::header_tokens(raw.as_bytes())
    }

    fn words(words: &[u64]) -> ModelText {
        ModelText { words: words.to_vec(), link_domains: Vec::new() }
    }

    #[test]
    fn the_sender_is_the_from_address_unless_it_failed_a_check() {
        let plain = features(&words(&[1, 2, 3]), &tokens("From: Ann <Ann@Example.org>\r\n\r\nbody"));
        let again = features(&words(&[9]), &tokens("From: ann@example.org\r\nSubject: other\r\n\r\nbody"));
        assert!(plain.sender().is_some());
        assert_eq!(plain.sender(), again.sender(), "the address, whatever the name, case or content");
        let other = features(&words(&[1, 2, 3]), &tokens("From: bob@example.org\r\n\r\nbody"));
        assert_ne!(plain.sender(), other.sender());
        let forged = "Authentication-Results: mx.example.com; spf=fail\r\nFrom: ann@example.org\r\n\r\nbody";
        assert_eq!(features(&words(&[1]), &tokens(forged)).sender(), None, "a From that failed SPF, DKIM or DMARC");
        assert_eq!(features(&words(&[1]), &tokens("Subject: no sender\r\n\r\nbody")).sender(), None);
        // Stored and read back with it.
        assert_eq!(Features::from_bytes(&plain.to_bytes()), Some(plain));
    }

    #[test]
    fn either_classifier_sure_files_but_never_a_known_sender_or_before_ready() {
        let opinion = |p: f32, linear: f32, ready: bool, known_sender: bool| Opinion {
            probability: p,
            threshold: 0.98,
            linear,
            linear_threshold: 0.9,
            linear_sure: linear > 0.9,
            ready,
            known_sender,
            evidence: Vec::new(),
        };
        assert!(opinion(0.99, 0.1, true, false).sure(), "the counting classifier");
        assert!(opinion(0.5, 0.95, true, false).sure(), "the linear classifier");
        assert!(!opinion(0.97, 0.9, true, false).sure(), "neither: the linear one must be above its threshold");
        assert!(!opinion(0.99, 0.95, true, true).sure(), "a known sender");
        assert!(!opinion(0.99, 0.95, false, false).sure(), "too few examples");
        let explained = opinion(0.5, 0.95, true, false).explain();
        assert!(explained.contains("linear 0.9500 (threshold 0.9000)"), "{explained}");
    }

    #[test]
    fn the_domains_a_message_links_to_are_features() {
        let headers = tokens("From: ann@example.org\r\n\r\nbody");
        let linking = |domains: &[&str]| {
            let text = ModelText { link_domains: domains.iter().map(|d| d.to_string()).collect(), ..words(&[1, 2]) };
            features(&text, &headers)
        };
        let none = linking(&[]);
        let one = linking(&["shop.example"]);
        assert_eq!(one.len(), none.len() + 1);
        assert!(none.ids().iter().all(|id| one.ids().contains(id)));
        assert_ne!(one, linking(&["other.example"]), "each domain is its own feature");
    }
}
