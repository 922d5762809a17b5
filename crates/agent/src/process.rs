//! From a batch of messages read from a folder to actions done and
//! recorded: evaluate with the pipeline, record what will be filed, act
//! through the mail store, count, queue deferred messages, raise events.
//! Shared by every mail store.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::events::{self, Events};
use crate::pipeline::{Evaluation, MailboxContext, Pipeline};
use crate::policy::{Action, Class, Reason};
use crate::state::{self, Counters, Filed, State};

/// One message read from a folder.
#[derive(Clone, Debug)]
pub struct Item {
    /// Where it is: an IMAP UID, or a Maildir unique name.
    pub locator: String,
    /// Its bytes (possibly cut at the size limit).
    pub raw: Arc<[u8]>,
    /// Whether `raw` was cut.
    pub truncated: bool,
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
}

impl Processor {
    /// Evaluates and handles a batch of messages of one folder. With
    /// `recheck`, handled messages leave the re-check queue.
    pub async fn process<F: Folder>(
        &self,
        folder: &mut F,
        mailbox: &MailboxContext,
        folder_name: &str,
        items: Vec<Item>,
        recheck: bool,
    ) -> Outcome {
        let raws = items.iter().map(|i| i.raw.clone()).collect();
        let evaluations = self.pipeline.evaluate(mailbox, raws).await;
        self.handle(folder, mailbox, folder_name, &items, evaluations, recheck).await
    }

    async fn handle<F: Folder>(
        &self,
        folder: &mut F,
        mailbox: &MailboxContext,
        folder_name: &str,
        items: &[Item],
        evaluations: Vec<Evaluation>,
        recheck: bool,
    ) -> Outcome {
        let name: &str = &mailbox.name;
        let mut outcome = Outcome::default();
        let mut counters = Counters::default();
        let mut deferred = Vec::new();
        let mut rechecked = Vec::new();

        // What will be filed is recorded before it is filed: a crash between
        // the two must not make the agent's own move look like a user's.
        let filing: Vec<Filed> = evaluations
            .iter()
            .filter(|e| acts(&e.action))
            .map(|e| Filed {
                mailbox: name.to_owned(),
                message_id: e.facts.message_id.clone(),
                fingerprint: e.fingerprint.clone(),
                class: class_name(e.class).to_owned(),
                reason: reason_name(&e.reason).to_owned(),
                action: action_name(&e.action).to_owned(),
                folder: String::new(),
            })
            .collect();
        let filed_ids = if filing.is_empty() {
            Vec::new()
        } else {
            match self.state.call(move |c| state::insert_filed(c, &filing)).await {
                Ok(ids) => ids,
                Err(e) => {
                    // Without the record, filing would later look like user
                    // feedback: leave everything in place this time.
                    self.events.emit(events::STATE_ERROR, Some(name), e.to_string());
                    outcome.failed = items.len();
                    return outcome;
                }
            }
        };
        let mut filed_ids = filed_ids.into_iter();
        let filed_id: Vec<Option<i64>> =
            evaluations.iter().map(|e| if acts(&e.action) { filed_ids.next() } else { None }).collect();
        let mut unfiled = Vec::new();

        // Count, and group the messages to act on: moves and deletions
        // with the same action are done in one command (one `UID MOVE` of
        // many UIDs costs the server about what one message does), tags
        // one by one.
        let mut groups: Vec<(&Action, Vec<usize>)> = Vec::new();
        for (index, (item, evaluation)) in items.iter().zip(&evaluations).enumerate() {
            if evaluation.class != Class::Deferred && evaluation.reason != Reason::AlreadyTagged {
                counters.checked += 1;
                match evaluation.class {
                    Class::Spam => counters.spam += 1,
                    Class::Phish => counters.phish += 1,
                    _ => {}
                }
                match evaluation.reason {
                    Reason::Whitelisted(_) => counters.whitelisted += 1,
                    Reason::EmptySubjectAndBody | Reason::EmptyBody => counters.empty += 1,
                    _ => {}
                }
            }
            match &evaluation.action {
                Action::Leave => {
                    outcome.done += 1;
                    if recheck {
                        rechecked.push(item.locator.clone());
                    }
                }
                Action::Defer => {
                    deferred.push(item.locator.clone());
                    outcome.deferred += 1;
                }
                action @ (Action::Move { .. } | Action::Delete) => {
                    match groups.iter_mut().find(|(a, _)| *a == action) {
                        Some((_, indices)) => indices.push(index),
                        None => groups.push((action, vec![index])),
                    }
                }
                action @ Action::Tag { .. } => groups.push((action, vec![index])),
            }
        }

        let mut destinations = Vec::new();
        for (action, indices) in groups {
            if outcome.stopped_at.is_some() {
                unfiled.extend(indices.iter().filter_map(|&i| filed_id[i]));
                continue;
            }
            let batch: Vec<&Item> = indices.iter().map(|&i| &items[i]).collect();
            let results = folder.apply_batch(&batch, action).await;
            for (&index, result) in indices.iter().zip(results) {
                let (item, evaluation) = (&items[index], &evaluations[index]);
                match result {
                    Ok(applied) => {
                        outcome.done += 1;
                        if recheck {
                            rechecked.push(item.locator.clone());
                        }
                        if let Some(id) = filed_id[index]
                            && !applied.folder.is_empty()
                        {
                            destinations.push((id, applied.folder));
                        }
                        tracing::info!(
                            mailbox = name,
                            folder = folder_name,
                            message = %item.locator,
                            class = class_name(evaluation.class),
                            reason = reason_name(&evaluation.reason),
                            action = action_name(action),
                            "filed"
                        );
                    }
                    Err(error) => {
                        unfiled.extend(filed_id[index]);
                        match &error {
                            ActionError::Connection(_) => {
                                let at = outcome.stopped_at.map_or(index, |at| at.min(index));
                                outcome.stopped_at = Some(at);
                            }
                            ActionError::Vanished => {}
                            ActionError::FolderMissing(folder) => {
                                counters.errors += 1;
                                outcome.failed += 1;
                                self.events.emit(events::FOLDER_MISSING, Some(name), format!("Folder: {folder}."));
                            }
                            ActionError::TooLarge => {
                                outcome.failed += 1;
                                self.events.emit(events::MESSAGE_TOO_LARGE, Some(name), "");
                            }
                            ActionError::Failed(reason) => {
                                counters.errors += 1;
                                outcome.failed += 1;
                                self.events.emit(
                                    events::ACTION_FAILED,
                                    Some(name),
                                    format!(
                                        "{} of message {} in {folder_name}: {reason}",
                                        action_name(action),
                                        item.locator
                                    ),
                                );
                            }
                        }
                    }
                }
            }
        }
        if !destinations.is_empty() {
            self.state.send(move |c| state::set_filed_folders(c, &destinations));
        }

        let hour = jiff::Timestamp::now().as_second().div_euclid(3600) * 3600;
        let mailbox_name = name.to_owned();
        let folder_owned = folder_name.to_owned();
        let max = self.recheck_queue_max;
        let result = self
            .state
            .call(move |c| {
                let mut batch = BTreeMap::new();
                if counters != Counters::default() {
                    batch.insert((hour, mailbox_name.clone()), counters);
                }
                state::record_batch(c, &batch)?;
                state::unfile(c, &unfiled)?;
                if !rechecked.is_empty() {
                    state::recheck_done(c, &mailbox_name, &folder_owned, &rechecked)?;
                }
                if deferred.is_empty() {
                    Ok(0)
                } else {
                    state::recheck_enqueue(c, &mailbox_name, &folder_owned, &deferred, max)
                }
            })
            .await;
        match result {
            Ok(0) => {}
            Ok(refused) => self.events.emit(
                events::RECHECK_QUEUE_FULL,
                None,
                format!("{refused} messages of {name} were not queued."),
            ),
            Err(e) => self.events.emit(events::STATE_ERROR, Some(name), e.to_string()),
        }
        outcome
    }
}

/// Whether an action changes the mail store.
fn acts(action: &Action) -> bool {
    matches!(action, Action::Move { .. } | Action::Tag { .. } | Action::Delete)
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
