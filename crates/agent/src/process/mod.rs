//! From a batch of messages read from a folder to actions done and
//! recorded: evaluate with the pipeline, recognise messages users took out
//! of the spam folder, record what will be filed, act through the mail
//! store, count, queue deferred messages, raise events. And the other half
//! of users' feedback: messages users moved into (or out of) the spam
//! folder, seen there. Shared by every mail store.

use std::sync::Arc;

use starling_model::Features;

use crate::events::{self, Events};
use crate::feedback::{Feedback, Observation, Opinion};
use crate::learning::Source;
use crate::pipeline::{Evaluation, MailboxContext, Pipeline};
use crate::policy::{Action, Class, Reason};
use crate::state::{self, FeedbackRow, FiledAction, State};

mod filing;

pub(crate) use filing::NETWORK_TEACHES;

/// Why a batch of messages is looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// They arrived.
    Delivery,
    /// They were left in place while the network was unreachable.
    Recheck,
    /// A rescan: they arrived earlier and may have become known as spam.
    Rescan,
    /// Retro-filing: they were delivered and left, and since then their
    /// campaign became known or the local model became sure of them.
    Retro,
}

impl Pass {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Pass::Delivery => "delivery",
            Pass::Recheck => "recheck",
            Pass::Rescan => "rescan",
            Pass::Retro => "retro",
        }
    }
}

/// A command for a mailbox task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// A message arrived (Maildir: its unique name).
    Arrived(String),
    /// A message to handle even if it was seen before (Maildir): a file
    /// written in place was closed, or a message came back from another
    /// folder.
    Written(String),
    /// Users moved a message into another folder (Maildir): the folder, the
    /// message's unique name, and which way.
    Moved(String, String, Moved),
    /// Look for messages the notifications may have missed.
    Scan,
    /// Look again at everything delivered since this time (nanoseconds
    /// since the epoch): notifications were lost from about then on.
    CatchUp(i64),
    /// Rescan messages delivered since `since` (Unix seconds); `id` is the
    /// rescan's row in the state database.
    Rescan {
        /// The rescan's id.
        id: i64,
        /// Unix seconds.
        since: i64,
    },
    /// Check queued messages again: (folder, locator).
    Recheck(Vec<(String, String)>),
    /// Look again at messages delivered and left (their campaign became
    /// known, or the model became sure): (folder, locator).
    Retro(Vec<(String, String)>),
    /// Find out whether these remembered messages are still where they
    /// were delivered (and read, when `read` is set), and let the model
    /// learn the ones that are as ham.
    Settle {
        /// The remembered rows.
        rows: Vec<crate::recent::Located>,
        /// Only read messages count.
        read: bool,
    },
    /// Stop.
    Stop,
}

/// Which way a user moved messages, as seen where they arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moved {
    /// Into the spam folder (or a sub-folder), or marked `$Junk`.
    IntoSpam,
    /// Out of the spam folder into a folder that is not watched for new
    /// mail (nor Trash), or marked `$NotJunk`.
    OutOfSpam,
}

/// One message read from a folder.
#[derive(Clone, Debug)]
pub struct Item {
    /// Where it is: an IMAP UID, or a Maildir unique name.
    pub locator: String,
    /// Its bytes (possibly cut at the size limit).
    pub raw: Arc<[u8]>,
    /// Whether `raw` was cut.
    pub truncated: bool,
    /// What identifies this delivery across moves, when known: IMAP's
    /// INTERNALDATE (seconds), a Maildir file's inode. With the Message-ID
    /// it tells a message taken out of the spam folder from another
    /// delivery of the same Message-ID.
    pub identity: Option<i64>,
}

/// Why an action was not done. In every case the message is where it was.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ActionError {
    /// The destination folder does not exist and may not be created.
    #[error("the folder {0:?} does not exist")]
    FolderMissing(String),
    /// The message is gone (moved or deleted by someone else meanwhile).
    #[error("the message is gone")]
    Vanished,
    /// The message is too large to be rewritten.
    #[error("the message is larger than the limit and cannot be tagged")]
    TooLarge,
    /// The store refused (the reason).
    #[error("{0}")]
    Failed(String),
    /// The connection to the store is lost: stop this batch.
    #[error("connection lost: {0}")]
    Connection(String),
}

/// What an action did.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    /// The destination folder's name ("" when not moved).
    pub folder: String,
}

/// A folder that can act on its messages.
pub trait Folder: Send {
    /// Does `action` to the message `item`.
    fn apply(
        &mut self,
        item: &Item,
        action: &Action,
    ) -> impl std::future::Future<Output = Result<Applied, ActionError>> + Send;

    /// Does the same `action` to several messages: one result per item, in
    /// order. A store that can do it in one operation overrides this.
    fn apply_batch(
        &mut self,
        items: &[&Item],
        action: &Action,
    ) -> impl std::future::Future<Output = Vec<Result<Applied, ActionError>>> + Send {
        one_by_one(self, items, action)
    }
}

/// Does `action` to each item in turn; after a lost connection the rest
/// are not tried (and say so).
pub async fn one_by_one<F: Folder + ?Sized>(
    folder: &mut F,
    items: &[&Item],
    action: &Action,
) -> Vec<Result<Applied, ActionError>> {
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        let result = folder.apply(item, action).await;
        let lost = matches!(result, Err(ActionError::Connection(_)));
        results.push(result);
        if lost {
            break;
        }
    }
    while results.len() < items.len() {
        results.push(Err(ActionError::Connection("not tried: the connection was lost".into())));
    }
    results
}

/// The outcome of a batch.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Messages acted on as decided (or left, as decided).
    pub done: usize,
    /// Messages acted on (moved, tagged, deleted).
    pub acted: usize,
    /// Messages queued for a re-check.
    pub deferred: usize,
    /// Messages whose action failed (left in place).
    pub failed: usize,
    /// Set when the connection was lost: the items from this index on were
    /// not handled.
    pub stopped_at: Option<usize>,
}

/// Shared by the mailbox tasks.
pub struct Processor {
    /// The pipeline.
    pub pipeline: Arc<Pipeline>,
    /// The state database.
    pub state: State,
    /// Events.
    pub events: Events,
    /// Re-check queue bound.
    pub recheck_queue_max: u32,
    /// Users' feedback.
    pub feedback: Feedback,
    /// The live view.
    pub live: Arc<crate::live::Live>,
    /// What was delivered recently, for retro-filing and implicit ham.
    pub recent: Arc<crate::retro::Index>,
    /// Messages a state-database failure left where they were.
    pub unrecorded: Unrecorded,
    /// The local model's settings (what it learns of the mail users
    /// already have).
    pub learning: crate::config::LearningConfig,
    /// Mailboxes whose existing mail is being read for the model
    /// ([`EXISTING_AT_ONCE`] at most).
    pub existing_permits: tokio::sync::Semaphore,
}

/// Messages left in place because the state database refused a write (a
/// full disk, say): held in memory — the database cannot take them — and
/// moved into the re-check queue as soon as it takes writes again, so they
/// are checked then rather than at the next rescan. Bounded: beyond
/// [`Unrecorded::MAX`] the oldest are forgotten (the rescan still finds
/// them).
#[derive(Default)]
pub struct Unrecorded(std::sync::Mutex<std::collections::VecDeque<(String, String, String)>>);

impl Unrecorded {
    /// Messages held at most.
    pub const MAX: usize = 100_000;

    fn hold(&self, mailbox: &str, folder: &str, items: &[Item]) {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for item in items {
            if held.len() == Self::MAX {
                held.pop_front();
            }
            held.push_back((mailbox.to_owned(), folder.to_owned(), item.locator.clone()));
        }
    }

    /// How many are held.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves what is held into the re-check queue; when the database still
    /// refuses, keeps it for the next try. Answers how many were queued.
    pub async fn flush(&self, state: &State, max: u32) -> Result<usize, state::StateError> {
        let taken: Vec<_> = self.0.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect();
        if taken.is_empty() {
            return Ok(0);
        }
        let rows = taken.clone();
        let result = state
            .call(move |c| {
                let mut grouped: std::collections::BTreeMap<(String, String), Vec<String>> = Default::default();
                for (mailbox, folder, locator) in rows {
                    grouped.entry((mailbox, folder)).or_default().push(locator);
                }
                for ((mailbox, folder), locators) in grouped {
                    state::recheck_enqueue(c, &mailbox, &folder, &locators, max)?;
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => Ok(taken.len()),
            Err(e) => {
                let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
                for row in taken.into_iter().rev() {
                    if held.len() < Self::MAX {
                        held.push_front(row);
                    }
                }
                Err(e)
            }
        }
    }
}

/// What the agent knows of a message a user may have moved.
struct Known {
    /// The agent filed it: (action, destination folder, delivery identity).
    filed: Option<(FiledAction, String, Option<i64>)>,
    /// A user's opinion of it.
    opinion: Option<FeedbackRow>,
}

impl Known {
    /// The agent moved it out of the inbox (the move done), or the milter
    /// flagged it and it was seen arriving in the spam folder.
    fn moved_by_agent(&self) -> bool {
        self.filed.as_ref().is_some_and(|(action, folder, _)| {
            !folder.is_empty() && (action.moved() || *action == FiledAction::InlineFiled)
        })
    }

    /// The milter flagged it for filing, and it has not been seen in the
    /// spam folder yet.
    fn flagged_inline_only(&self) -> bool {
        self.filed.as_ref().is_some_and(|(action, _, _)| *action == FiledAction::Inline)
    }

    /// The milter flagged it for filing before delivery (a Sieve rule or
    /// this agent files it).
    fn flagged_inline(&self) -> bool {
        self.filed.as_ref().is_some_and(|(action, _, _)| action.inline())
    }

    /// The agent moved this very message (not another delivery with the
    /// same Message-ID) out of the folder it is in now.
    fn came_back(&self, delivered: Option<i64>) -> bool {
        self.moved_by_agent() && self.filed.as_ref().is_some_and(|(_, _, filed)| same_delivery(*filed, delivered))
    }

    /// Taking it out of spam is a false positive worth reporting (filing
    /// to Trash collects no feedback).
    fn reportable_filing(&self) -> bool {
        self.filed.as_ref().is_some_and(|(action, folder, _)| {
            !folder.is_empty()
                && matches!(
                    action,
                    FiledAction::SpamFolder | FiledAction::Folder | FiledAction::Inline | FiledAction::InlineFiled
                )
        })
    }

    fn opinion_is(&self, opinion: Opinion) -> bool {
        self.opinion.as_ref().is_some_and(|row| row.opinion == opinion.as_str())
    }
}

/// What a user says by moving a message this way, given what is known of
/// it; `None` when it says nothing (the agent's own filing, a message
/// nobody reported leaving the spam folder).
fn opinion_for(direction: Moved, known: &Known) -> Option<Opinion> {
    match direction {
        // Back into spam after a rescue takes the rescue back; the agent's
        // own filing is not a report.
        Moved::IntoSpam if known.opinion_is(Opinion::Ham) || known.filed.is_none() => Some(Opinion::Spam),
        Moved::OutOfSpam if known.moved_by_agent() || known.flagged_inline() || known.opinion_is(Opinion::Spam) => {
            Some(Opinion::Ham)
        }
        _ => None,
    }
}

/// Whether two delivery identities ([`Item::identity`]) are the same
/// delivery; unknown ones match.
fn same_delivery(a: Option<i64>, b: Option<i64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// Looks up what is known of messages (by Message-ID or text fingerprint).
fn known(
    c: &rusqlite::Connection,
    mailbox: &str,
    messages: &[(Option<String>, Option<Vec<u8>>)],
) -> rusqlite::Result<Vec<Known>> {
    messages
        .iter()
        .map(|(message_id, fingerprint)| {
            let key = crate::feedback::key(message_id.as_deref(), fingerprint.as_deref());
            let filed = state::filed_lookup(c, mailbox, message_id.as_deref(), fingerprint.as_deref())?;
            let opinion = match &key {
                Some(key) => state::feedback_get(c, mailbox, key)?,
                None => None,
            };
            Ok(Known { filed, opinion })
        })
        .collect()
}

impl Processor {
    /// Evaluates and handles a batch of messages of one folder. On a
    /// re-check, handled messages leave the re-check queue.
    pub async fn process<F: Folder>(
        &self,
        folder: &mut F,
        mailbox: &MailboxContext,
        folder_name: &str,
        items: Vec<Item>,
        pass: Pass,
    ) -> Outcome {
        let raws = items.iter().map(|i| i.raw.clone()).collect();
        let inline_marks = matches!(pass, Pass::Delivery | Pass::Recheck);
        let mut evaluations = self.pipeline.evaluate(mailbox, raws, inline_marks).await;
        let delivered: Vec<Option<i64>> = items.iter().map(|i| i.identity).collect();
        tracing::trace!(mailbox = %mailbox.name, messages = evaluations.len(), ?pass, "evaluated");
        if let Err(e) = self.recognise_rescues(mailbox, &mut evaluations, &delivered).await {
            // Without knowing what users rescued, filing could undo a
            // rescue: leave everything in place this time.
            self.events.emit(events::STATE_ERROR, Some(&mailbox.name), e.to_string());
            self.unrecorded.hold(&mailbox.name, folder_name, &items);
            self.live.set_held(self.unrecorded.len() as u64);
            return Outcome { failed: items.len(), ..Outcome::default() };
        }
        self.handle(folder, mailbox, folder_name, &items, evaluations, pass).await
    }

    /// Messages in a watched folder that the agent had filed, or that the
    /// user had put into the spam folder, were taken out of it by the user:
    /// they are reported as such and left alone, now and ever after.
    async fn recognise_rescues(
        &self,
        mailbox: &MailboxContext,
        evaluations: &mut [Evaluation],
        delivered: &[Option<i64>],
    ) -> Result<(), state::StateError> {
        let messages: Vec<_> =
            evaluations.iter().map(|e| (e.facts.message_id.clone(), e.fingerprint.clone())).collect();
        let name = mailbox.name.to_string();
        let known = self.state.call(move |c| known(c, &name, &messages)).await?;
        let mut observations = Vec::new();
        let mut learnt = Vec::new();
        for ((evaluation, known), delivered) in evaluations.iter_mut().zip(known).zip(delivered) {
            if evaluation.reason == Reason::AlreadyTagged {
                continue;
            }
            let rescued = known.opinion_is(Opinion::Ham);
            let taken_out = !rescued && (known.came_back(*delivered) || known.opinion_is(Opinion::Spam));
            if taken_out && let Some(key) = evaluation.key() {
                if let Some(features) = &evaluation.features {
                    learnt.push((key.clone(), Source::UserHam, features.clone()));
                }
                observations.push(Observation {
                    key,
                    opinion: Opinion::Ham,
                    filed: known.reportable_filing(),
                    fingerprints: evaluation.wire.clone(),
                });
            }
            if rescued || taken_out {
                evaluation.class = Class::Clean;
                evaluation.reason = Reason::Rescued;
                evaluation.action = Action::Leave;
            }
        }
        self.feedback.observe(&mailbox.name, observations).await;
        self.learn(&mailbox.name, learnt).await;
        Ok(())
    }

    /// Teaches the model, when it is on: (feedback key, source, features).
    async fn learn(&self, mailbox: &str, examples: Vec<(String, Source, Features)>) {
        let Some(learner) = self.pipeline.learner() else { return };
        for (key, source, features) in examples {
            learner.learn(mailbox, &key, source, features).await;
        }
    }

    /// Which of these messages (by Message-ID) could make a report when
    /// seen moved this way: the agent's own filings and messages nobody
    /// reported do not. A message without a Message-ID can only be told
    /// by its fingerprints: it is worth a look. It is also where both mail
    /// stores first see arrivals in the spam folder, so spam the milter
    /// flagged is recorded here as having arrived (`inline-filed`).
    pub async fn worth_a_look(&self, mailbox: &str, ids: Vec<Option<String>>, direction: Moved) -> Vec<bool> {
        if ids.iter().all(Option::is_none) {
            return vec![true; ids.len()];
        }
        let name = mailbox.to_owned();
        let messages: Vec<_> = ids.iter().map(|id| (id.clone(), None)).collect();
        match self.state.call(move |c| known(c, &name, &messages)).await {
            Ok(known) => {
                // Spam the milter flagged, arriving in the spam folder (a
                // Sieve rule filed it): from now on its return to the inbox
                // is a rescue, as for the agent's own moves.
                let arrived: Vec<String> = ids
                    .iter()
                    .zip(&known)
                    .filter(|(_, known)| direction == Moved::IntoSpam && known.flagged_inline_only())
                    .filter_map(|(id, _)| id.clone())
                    .collect();
                if !arrived.is_empty() {
                    let name = mailbox.to_owned();
                    self.state.send(move |c| state::filed_inline_arrived(c, &name, &arrived));
                }
                ids.iter()
                    .zip(known)
                    .map(|(id, known)| id.is_none() || opinion_for(direction, &known).is_some())
                    .collect()
            }
            Err(e) => {
                self.events.emit(events::STATE_ERROR, Some(mailbox), e.to_string());
                vec![false; ids.len()]
            }
        }
    }

    /// Messages a user moved, seen where they arrived: into the spam
    /// folder (or marked junk), or out of it into a folder not watched for
    /// new mail (or marked not junk). The agent's own moves are recognised
    /// (by the header first: only messages that make a report are
    /// fingerprinted) and not reported.
    pub async fn moved(&self, mailbox: &str, items: Vec<Item>, direction: Moved) {
        let ids = items.iter().map(|i| crate::facts::Facts::from_message(&i.raw, 0).message_id).collect();
        let worth = self.worth_a_look(mailbox, ids, direction).await;
        let raws: Vec<Arc<[u8]>> = items.iter().zip(worth).filter(|(_, w)| *w).map(|(i, _)| i.raw.clone()).collect();
        if raws.is_empty() {
            return;
        }
        let identified = self.pipeline.identify(raws).await;
        let messages: Vec<_> = identified.iter().map(|m| (m.facts.message_id.clone(), m.fingerprint.clone())).collect();
        let name = mailbox.to_owned();
        let known = match self.state.call(move |c| known(c, &name, &messages)).await {
            Ok(known) => known,
            Err(e) => {
                self.events.emit(events::STATE_ERROR, Some(mailbox), e.to_string());
                return;
            }
        };
        let mut learnt = Vec::new();
        let mut done = Vec::new();
        let observations = identified
            .into_iter()
            .zip(known)
            .filter_map(|(message, known)| {
                let key = message.key()?;
                let opinion = opinion_for(direction, &known)?;
                done.extend(message.facts.message_id.clone());
                if let Some(features) = message.features {
                    let source = if opinion == Opinion::Spam { Source::UserSpam } else { Source::UserHam };
                    learnt.push((key.clone(), source, features));
                }
                Some(Observation { key, opinion, filed: known.reportable_filing(), fingerprints: message.wire })
            })
            .collect();
        self.feedback.observe(mailbox, observations).await;
        // A message its user moved is neither a retro-filing candidate nor
        // implicit ham.
        let name = mailbox.to_owned();
        self.state.send(move |c| {
            for id in &done {
                crate::recent::done_by_message(c, &name, id)?;
            }
            Ok(())
        });
        self.learn(mailbox, learnt).await;
    }

    /// Messages left where they were delivered past `model.ham_after_minutes`
    /// (and read, where that is asked for), by a user who reports spam:
    /// learnt as ham. The mail store sorted the rows it was asked about:
    /// `learn` are there (and read), `keep` are there unread (never learnt,
    /// still retro-filing candidates), `gone` were moved or deleted.
    pub async fn settle(
        &self,
        mailbox: &str,
        learn: Vec<crate::recent::Located>,
        keep: Vec<crate::recent::Located>,
        gone: Vec<crate::recent::Located>,
    ) {
        let ids: Vec<i64> = learn.iter().chain(&keep).map(|l| l.id).collect();
        let gone_ids: Vec<i64> = gone.iter().map(|l| l.id).collect();
        let wanted: Vec<i64> = learn.iter().map(|l| l.id).collect();
        let rows = self
            .state
            .call(move |c| {
                let mut rows = Vec::new();
                for id in &wanted {
                    let message_id: Option<String> =
                        c.query_row("SELECT message_id FROM recent WHERE id = ?1", [id], |r| r.get(0)).unwrap_or(None);
                    rows.push((*id, message_id, crate::recent::features(c, *id)?));
                }
                crate::recent::set_status(c, &ids, crate::recent::SETTLED)?;
                crate::recent::set_status(c, &gone_ids, crate::recent::DONE)?;
                Ok(rows)
            })
            .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                self.events.emit(events::STATE_ERROR, Some(mailbox), e.to_string());
                return;
            }
        };
        let examples = rows
            .into_iter()
            .filter_map(|(id, message_id, features)| {
                let features = Features::from_bytes(&features?)?;
                let key = crate::feedback::key(message_id.as_deref(), None).unwrap_or_else(|| format!("recent:{id}"));
                Some((key, Source::Implicit, features))
            })
            .collect();
        self.learn(mailbox, examples).await;
    }
}

/// At most this many mailboxes' existing mail is read at once: it is read
/// at each mailbox's first sight, and at 10,000 mailboxes a first start
/// must not fetch it all together (each look holds the features of up to
/// twice `model.history_messages` messages, about 3 KB each, and one
/// fetch batch of messages).
pub const EXISTING_AT_ONCE: usize = 2;

/// A message of the mail a user already had, as the model learns it.
pub struct ExistingExample {
    /// When it arrived (Unix seconds).
    pub at: i64,
    /// Its key (Message-ID, or text fingerprint).
    pub key: String,
    /// Where it was: [`Source::ExistingSpam`] or [`Source::ExistingHam`].
    pub source: Source,
    /// Its features.
    pub features: Features,
}

impl Processor {
    /// Whether the model should learn this mailbox's existing mail: it is
    /// on, asked to (`model.history_messages`), and has not learnt it yet.
    pub async fn wants_existing(&self, mailbox: &str) -> bool {
        if self.learning.history_messages == 0 || self.pipeline.learner().is_none() {
            return false;
        }
        let name = mailbox.to_owned();
        self.state.call(move |c| crate::learning::existing_learnt(c, &name)).await.is_ok_and(|learnt| !learnt)
    }

    /// Waits for a turn to read `mailbox`'s existing mail
    /// ([`EXISTING_AT_ONCE`] mailboxes at a time); `None` when the agent
    /// stops first or the model learnt that mail meanwhile.
    pub async fn existing_turn(
        &self,
        mailbox: &str,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let permit = tokio::select! {
            permit = self.existing_permits.acquire() => permit.ok()?,
            () = stop.cancelled() => return None,
        };
        self.wants_existing(mailbox).await.then_some(permit)
    }

    /// Messages of a user's existing mail (a batch read from the mail
    /// store, each with when it arrived) as examples of `source`: only
    /// their features are kept.
    pub async fn existing_examples(&self, items: Vec<(i64, Item)>, source: Source) -> Vec<ExistingExample> {
        let (ats, raws): (Vec<i64>, Vec<Arc<[u8]>>) = items.into_iter().map(|(at, item)| (at, item.raw)).unzip();
        let identified = self.pipeline.identify(raws).await;
        ats.into_iter()
            .zip(identified)
            .filter_map(|(at, message)| {
                Some(ExistingExample { at, key: message.key()?, source, features: message.features? })
            })
            .collect()
    }

    /// Learns the mail a user already had — the spam folder's as spam, the
    /// inbox's read and kept mail as ham — oldest first, so the
    /// calibration scores each ham before it learns it, as it does for mail
    /// that arrives later; then remembers the mailbox as done (it happens
    /// once, and a mailbox with spam there counts as one whose user reports
    /// spam). What a user said of a message since is never overruled.
    pub async fn learn_existing(&self, mailbox: &str, mut examples: Vec<ExistingExample>, started: std::time::Instant) {
        let Some(learner) = self.pipeline.learner() else { return };
        examples.sort_by_key(|e| e.at);
        let (mut spam, mut ham) = (0u32, 0u32);
        for example in examples {
            match example.source {
                Source::ExistingSpam => spam += 1,
                _ => ham += 1,
            }
            learner.learn(mailbox, &example.key, example.source, example.features).await;
        }
        let name = mailbox.to_owned();
        match self.state.call(move |c| crate::learning::existing_done(c, &name, spam, ham)).await {
            Ok(()) => self.events.emit(
                events::MODEL_LEARNT_EXISTING,
                Some(mailbox),
                format!(
                    "{spam} message(s) of the spam folder learnt as spam, {ham} read in the inbox as ham, in {:.1} s.",
                    started.elapsed().as_secs_f64()
                ),
            ),
            Err(e) => self.events.emit(events::STATE_ERROR, Some(mailbox), e.to_string()),
        }
    }
}

/// A class's name in records and logs.
pub fn class_name(class: Class) -> &'static str {
    match class {
        Class::Clean => "clean",
        Class::Spam => "spam",
        Class::Phish => "phish",
        Class::Deferred => "deferred",
    }
}

/// A reason's name in records and logs.
pub fn reason_name(reason: &Reason) -> &'static str {
    match reason {
        Reason::Disabled => "disabled",
        Reason::AlreadyTagged => "already_tagged",
        Reason::Whitelisted(_) => "whitelisted",
        Reason::EmptySubjectAndBody => "empty_subject_and_body",
        Reason::EmptyBody => "empty_body",
        Reason::Network => "network",
        Reason::LowConfidence => "low_confidence",
        Reason::NotAsked => "not_asked",
        Reason::Rescued => "rescued",
        Reason::Model => "model",
        Reason::Inline => "inline",
    }
}

/// An action's name in records and logs.
pub fn action_name(action: &Action) -> &'static str {
    match action {
        Action::Leave => "leave",
        Action::Move { destination: crate::policy::Destination::Spam(_), .. } => "spam-folder",
        Action::Move { destination: crate::policy::Destination::Existing(_), .. } => "folder",
        Action::Move { destination: crate::policy::Destination::Trash(_), .. } => "trash",
        Action::Tag { .. } => "tag",
        Action::Delete => "delete",
        Action::Defer => "defer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_is_told_from_another_of_the_same_message_id() {
        assert!(same_delivery(Some(1_700_000_000), Some(1_700_000_000)));
        assert!(!same_delivery(Some(1_700_000_000), Some(1_700_000_001)));
        assert!(same_delivery(None, Some(42)), "unknown identities match");
    }
}
