//! Users' feedback: what their moves say, and the reports it calls for.
//!
//! A user who puts a message into the spam folder (or marks it `$Junk`)
//! says "spam"; one who takes a message out of it (or marks it
//! `$NotJunk`) says "not spam". The mail stores observe those moves and
//! hand them here as an [`Observation`]; this module keeps one opinion per
//! user and message (the same move twice counts once), and derives the
//! report the network should hold from it:
//!
//! | opinion | the agent had filed it | report      |
//! |---------|------------------------|-------------|
//! | spam    | no                     | spam        |
//! | spam    | yes                    | none        |
//! | not spam| yes                    | not spam    |
//! | not spam| no                     | none        |
//!
//! So a user undoing a move (spam → not spam on a message the agent never
//! filed) withdraws the report instead of contradicting it. What the
//! network should hold and what it holds are both stored: a [`Sender`]
//! task sends the difference (revocations first, then reports) and keeps
//! retrying while the network is away, so a crash or an outage loses no
//! report. A report carries the fingerprint set and the reporter's
//! pseudonym — a keyed hash of the mailbox name under the installation's
//! secret — never an address or content.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use starling_proto::v1;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::events::{self, Events};
use crate::network::Network;
use crate::state::{self, Counters, FeedbackRow, State};

/// What a user said of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opinion {
    /// Spam: put into the spam folder, or marked `$Junk`.
    Spam,
    /// Not spam: taken out of the spam folder, or marked `$NotJunk`.
    Ham,
}

impl Opinion {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Opinion::Spam => "spam",
            Opinion::Ham => "ham",
        }
    }
}

/// The report an opinion calls for (the stored names).
pub fn report_for(opinion: Opinion, filed: bool) -> &'static str {
    match (opinion, filed) {
        (Opinion::Spam, false) => "spam",
        (Opinion::Ham, true) => "not-spam",
        _ => "",
    }
}

/// How the agent recognises a message again: its Message-ID, or its text
/// fingerprint when it has none; `None` when it has neither.
pub fn key(message_id: Option<&str>, text_fingerprint: Option<&[u8]>) -> Option<String> {
    match (message_id.map(str::trim).filter(|id| !id.is_empty()), text_fingerprint) {
        (Some(id), _) => Some(format!("id:{id}")),
        (None, Some(fingerprint)) => Some(format!("fp:{}", hex::encode(fingerprint))),
        (None, None) => None,
    }
}

/// The reporter pseudonym of a mailbox: stable, opaque, and useless
/// without this installation's secret.
pub fn pseudonym(secret: &[u8; 32], mailbox: &str) -> String {
    let key = blake3::derive_key("starling agent 2026 reporter pseudonym v1", secret);
    let hash = blake3::keyed_hash(&key, mailbox.to_lowercase().as_bytes());
    hex::encode(&hash.as_bytes()[..16])
}

/// A move (or keyword) seen by a mail store.
#[derive(Clone, Debug)]
pub struct Observation {
    /// The message's key ([`key`]).
    pub key: String,
    /// What the user said.
    pub opinion: Opinion,
    /// The agent had filed this message (moved it into the spam folder or
    /// another folder): taking it out is a false positive.
    pub filed: bool,
    /// Its fingerprints, when it has any.
    pub fingerprints: Option<v1::FingerprintSet>,
}

/// What an observation changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// A user blocked spam the agent had not caught.
    pub blocked: bool,
    /// A user rescued a message the agent had filed.
    pub unblocked: bool,
    /// A user took back an earlier move (a report is withdrawn).
    pub undone: bool,
}

/// The new opinion row for an observation, and what changed; `None` when
/// the user said the same before (it counts once). With feedback off the
/// opinion is kept (a rescued message stays rescued) but the report the
/// network should hold does not change: nothing leaves the agent.
pub fn decide(
    previous: Option<&FeedbackRow>,
    observation: &Observation,
    feedback_on: bool,
) -> Option<(FeedbackRow, Change)> {
    let opinion = observation.opinion.as_str();
    if previous.is_some_and(|p| p.opinion == opinion) {
        return None;
    }
    let filed = observation.filed || previous.is_some_and(|p| p.filed);
    let fingerprints = previous
        .and_then(|p| p.fingerprints.clone())
        .or_else(|| observation.fingerprints.as_ref().map(starling_proto::set_to_bytes));
    let sent = previous.map_or(String::new(), |p| p.sent.clone());
    let desired = if feedback_on && fingerprints.is_some() {
        report_for(observation.opinion, filed).to_owned()
    } else {
        previous.map_or(String::new(), |p| p.desired.clone())
    };
    let change = Change {
        blocked: observation.opinion == Opinion::Spam && !filed,
        unblocked: observation.opinion == Opinion::Ham && filed,
        undone: previous.is_some(),
    };
    Some((FeedbackRow { opinion: opinion.to_owned(), filed, fingerprints, desired, sent }, change))
}

/// Applies observations of one mailbox in one state transaction; returns
/// the changes (in order; `None` where nothing changed).
pub fn apply(
    c: &mut rusqlite::Connection,
    mailbox: &str,
    observations: &[Observation],
    feedback_on: bool,
) -> rusqlite::Result<Vec<Option<Change>>> {
    let tx = c.transaction()?;
    let mut changes = Vec::with_capacity(observations.len());
    for observation in observations {
        let previous = state::feedback_get(&tx, mailbox, &observation.key)?;
        match decide(previous.as_ref(), observation, feedback_on) {
            Some((row, change)) => {
                state::feedback_put(&tx, mailbox, &observation.key, &row)?;
                changes.push(Some(change));
            }
            None => changes.push(None),
        }
    }
    tx.commit()?;
    Ok(changes)
}

/// Whether feedback is on for a mailbox: the global switch and the
/// mailbox's own (shared mailboxes and unknown names: off).
pub fn enabled_for(c: &rusqlite::Connection, mailbox: &str, global: bool) -> rusqlite::Result<bool> {
    if !global {
        return Ok(false);
    }
    use rusqlite::OptionalExtension as _;
    let on: Option<bool> = c
        .prepare_cached("SELECT feedback FROM mailboxes WHERE name = ?1 AND kind = 'user'")?
        .query_row([mailbox], |row| row.get(0))
        .optional()?;
    Ok(on.unwrap_or(false))
}

/// Feedback as the mail stores see it: record observations, count them,
/// tell the administrator, wake the sender.
#[derive(Clone)]
pub struct Feedback {
    state: State,
    events: Events,
    global: Arc<AtomicBool>,
    wake: Arc<Notify>,
    /// Told the fingerprint keys of every spam report the network
    /// acknowledged (retro-filing looks for delivered copies).
    reported: Arc<std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedSender<Vec<u64>>>>>,
}

impl Feedback {
    /// Feedback recorded in `state`; `global` is the configuration's switch.
    pub fn new(state: State, events: Events, global: bool) -> Feedback {
        Feedback {
            state,
            events,
            global: Arc::new(AtomicBool::new(global)),
            wake: Arc::new(Notify::new()),
            reported: Arc::default(),
        }
    }

    /// Where the keys of acknowledged spam reports go.
    pub fn on_reported(&self, sender: tokio::sync::mpsc::UnboundedSender<Vec<u64>>) {
        *self.reported.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender);
    }

    /// Whether feedback is on at all.
    pub fn global(&self) -> bool {
        self.global.load(Ordering::Relaxed)
    }

    /// Turns feedback on or off for everybody (a changed setting).
    pub fn set_enabled(&self, global: bool) {
        self.global.store(global, Ordering::Relaxed);
    }

    /// Records what users of `mailbox` did.
    pub async fn observe(&self, mailbox: &str, observations: Vec<Observation>) {
        if observations.is_empty() {
            return;
        }
        let name = mailbox.to_owned();
        let global = self.global();
        let result = self
            .state
            .call(move |c| {
                let on = enabled_for(c, &name, global)?;
                let changes = apply(c, &name, &observations, on)?;
                let mut counters = Counters::default();
                for change in changes.iter().flatten() {
                    counters.blocked += u32::from(change.blocked);
                    counters.unblocked += u32::from(change.unblocked);
                }
                if counters != Counters::default() {
                    let hour = jiff::Timestamp::now().as_second().div_euclid(3600) * 3600;
                    let mut batch = std::collections::BTreeMap::new();
                    batch.insert((hour, name.clone()), counters);
                    state::record_batch(c, &batch)?;
                }
                Ok(changes)
            })
            .await;
        match result {
            Ok(changes) => {
                let changes: Vec<Change> = changes.into_iter().flatten().collect();
                let blocked = changes.iter().filter(|c| c.blocked && !c.undone).count();
                let rescued = changes.iter().filter(|c| c.unblocked).count();
                let undone = changes.iter().filter(|c| c.undone && !c.unblocked).count();
                if blocked > 0 {
                    self.events.emit(events::USER_REPORTED_SPAM, Some(mailbox), format!("{blocked} message(s)."));
                }
                if rescued > 0 {
                    self.events.emit(events::USER_RESCUED, Some(mailbox), format!("{rescued} message(s)."));
                }
                if undone > 0 {
                    self.events.emit(events::USER_UNDID, Some(mailbox), format!("{undone} message(s)."));
                }
                if !changes.is_empty() {
                    self.wake.notify_one();
                }
            }
            Err(e) => self.events.emit(events::STATE_ERROR, Some(mailbox), e.to_string()),
        }
    }

    /// Sends what the network should hold until `stop`.
    pub fn start_sender(&self, network: Network, secret: [u8; 32], retry: Duration, stop: CancellationToken) {
        let sender = Sender { feedback: self.clone(), network, secret, retry };
        tokio::spawn(sender.run(stop));
    }
}

/// Sends reports and revocations from the outbox in the state database.
struct Sender {
    feedback: Feedback,
    network: Network,
    secret: [u8; 32],
    retry: Duration,
}

/// Outbox rows per round trip.
const SEND_BATCH: u32 = 256;

impl Sender {
    async fn run(self, stop: CancellationToken) {
        let mut failing = false;
        loop {
            let wait = match self.round().await {
                Ok(true) => {
                    failing = false;
                    continue;
                }
                Ok(false) => {
                    failing = false;
                    Duration::from_secs(60)
                }
                Err(reason) => {
                    if !failing {
                        self.feedback.events.emit(events::FEEDBACK_NOT_SENT, None, reason);
                    }
                    failing = true;
                    self.retry
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.feedback.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Sends one batch; Ok(true) when there may be more.
    async fn round(&self) -> Result<bool, String> {
        let rows =
            self.feedback.state.call(|c| state::feedback_outbox(c, SEND_BATCH)).await.map_err(|e| e.to_string())?;
        if rows.is_empty() {
            return Ok(false);
        }
        let mut revocations = Vec::new();
        let mut reports = Vec::new();
        let mut done = Vec::with_capacity(rows.len());
        for (mailbox, key, row) in &rows {
            let set = row.fingerprints.as_deref().and_then(starling_proto::set_from_bytes);
            if let Some(set) = set {
                let reporter = pseudonym(&self.secret, mailbox);
                if !row.sent.is_empty() {
                    revocations.push(v1::Revocation { fingerprints: Some(set.clone()), reporter: reporter.clone() });
                }
                let class = match row.desired.as_str() {
                    "spam" => Some(v1::ReportClass::Spam),
                    "not-spam" => Some(v1::ReportClass::Ham),
                    _ => None,
                };
                if let Some(class) = class {
                    reports.push(v1::Report { fingerprints: Some(set), class: class as i32, reporter });
                }
            }
            done.push((mailbox.clone(), key.clone(), row.desired.clone()));
        }
        if !revocations.is_empty() {
            self.network.revoke(revocations).await.map_err(|e| e.to_string())?;
        }
        if !reports.is_empty() {
            let spam_keys: Vec<u64> = reports
                .iter()
                .filter(|r| r.class == v1::ReportClass::Spam as i32)
                .filter_map(|r| r.fingerprints.as_ref())
                .flat_map(crate::recent::keys_of)
                .collect();
            let outcomes = self.network.report(reports).await.map_err(|e| e.to_string())?;
            for outcome in outcomes.iter().filter(|o| !o.recorded) {
                tracing::warn!("the network did not record a report: {}", outcome.reason);
            }
            tracing::info!(reports = outcomes.len(), "reports sent");
            if !spam_keys.is_empty()
                && let Some(sender) = &*self.feedback.reported.lock().unwrap_or_else(|e| e.into_inner())
            {
                let _ = sender.send(spam_keys);
            }
        }
        let more = rows.len() == SEND_BATCH as usize;
        self.feedback.state.call(move |c| state::feedback_sent(c, &done)).await.map_err(|e| e.to_string())?;
        Ok(more)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> v1::FingerprintSet {
        v1::FingerprintSet { version: 1, text: vec![7; 16], ..Default::default() }
    }

    fn observe(opinion: Opinion, filed: bool) -> Observation {
        Observation { key: "id:<a@b>".into(), opinion, filed, fingerprints: Some(set()) }
    }

    #[test]
    fn a_user_blocking_unknown_spam_reports_it_once() {
        let (row, change) = decide(None, &observe(Opinion::Spam, false), true).unwrap();
        assert_eq!((row.desired.as_str(), row.sent.as_str()), ("spam", ""));
        assert!(change.blocked && !change.unblocked && !change.undone);
        // The same move again counts once.
        assert!(decide(Some(&row), &observe(Opinion::Spam, false), true).is_none());
    }

    #[test]
    fn rescuing_a_filed_message_reports_not_spam() {
        let (row, change) = decide(None, &observe(Opinion::Ham, true), true).unwrap();
        assert_eq!(row.desired, "not-spam");
        assert!(change.unblocked && !change.blocked);
        // Moving it back into spam withdraws the not-spam report.
        let sent = FeedbackRow { sent: "not-spam".into(), ..row };
        let (row, change) = decide(Some(&sent), &observe(Opinion::Spam, false), true).unwrap();
        assert_eq!((row.desired.as_str(), row.sent.as_str()), ("", "not-spam"));
        assert!(row.filed && change.undone && !change.blocked);
    }

    #[test]
    fn undoing_a_spam_report_withdraws_it() {
        let (row, _) = decide(None, &observe(Opinion::Spam, false), true).unwrap();
        let sent = FeedbackRow { sent: "spam".into(), ..row };
        let (row, change) = decide(Some(&sent), &observe(Opinion::Ham, false), true).unwrap();
        assert_eq!((row.desired.as_str(), row.sent.as_str()), ("", "spam"));
        assert!(change.undone && !change.unblocked);
    }

    #[test]
    fn with_feedback_off_nothing_is_to_be_sent() {
        let (row, change) = decide(None, &observe(Opinion::Spam, false), false).unwrap();
        assert_eq!((row.desired.as_str(), row.opinion.as_str()), ("", "spam"));
        assert!(change.blocked);
        let (row, _) = decide(None, &observe(Opinion::Ham, true), false).unwrap();
        assert_eq!((row.desired.as_str(), row.opinion.as_str()), ("", "ham"));
    }

    #[test]
    fn a_message_without_fingerprints_is_remembered_not_reported() {
        let observation = Observation { fingerprints: None, ..observe(Opinion::Spam, false) };
        let (row, _) = decide(None, &observation, true).unwrap();
        assert_eq!(row.desired, "");
    }

    #[test]
    fn keys_prefer_the_message_id() {
        assert_eq!(key(Some(" <x@y> "), Some(&[1, 2])), Some("id:<x@y>".into()));
        assert_eq!(key(Some(""), Some(&[1, 2])), Some("fp:0102".into()));
        assert_eq!(key(None, None), None);
    }

    #[test]
    fn pseudonyms_are_stable_keyed_and_case_blind() {
        let a = pseudonym(&[1; 32], "Alice@Example.org");
        assert_eq!(a, pseudonym(&[1; 32], "alice@example.org"));
        assert_ne!(a, pseudonym(&[2; 32], "alice@example.org"));
        assert_ne!(a, pseudonym(&[1; 32], "bob@example.org"));
        assert_eq!(a.len(), 32);
        assert!(!a.contains("alice"));
    }
}
