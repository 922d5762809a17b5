//! Acting on a batch's decisions: record what will be filed, apply the
//! actions through the mail store (equal moves in one command), count,
//! queue what was deferred, and hand what was left to retro-filing and the
//! model.

use std::collections::BTreeMap;

use starling_model::Features;

use super::{ActionError, Folder, Item, Outcome, Pass, Processor, action_name, class_name, reason_name};
use crate::events;
use crate::learning::Source;
use crate::pipeline::{Evaluation, MailboxContext};
use crate::policy::{Action, Class, Destination, Reason};
use crate::state::{self, Counters, Filed, FiledAction};

/// What applying a batch comes to, gathered as its groups are applied.
#[derive(Default)]
struct Applying {
    outcome: Outcome,
    counters: Counters,
    /// Re-checked messages that leave the queue.
    rechecked: Vec<String>,
    /// Messages for the re-check queue.
    deferred: Vec<String>,
    /// Filing records of actions that did not happen.
    unfiled: Vec<i64>,
    /// Filing records and the folder the message went to.
    destinations: Vec<(i64, String)>,
    /// Messages filed (moved, tagged, deleted) by this batch.
    filed_here: Vec<String>,
    /// Of those, filed on the model's word.
    by_model: u64,
}

impl Processor {
    pub(super) async fn handle<F: Folder>(
        &self,
        folder: &mut F,
        mailbox: &MailboxContext,
        folder_name: &str,
        items: &[Item],
        evaluations: Vec<Evaluation>,
        pass: Pass,
    ) -> Outcome {
        let name: &str = &mailbox.name;
        let Some(filed_id) = self.record_filing(name, folder_name, items, &evaluations, pass).await else {
            return Outcome { failed: items.len(), ..Outcome::default() };
        };
        let Plan { groups, counted, left, deferred } = plan(items, &evaluations, pass);
        let mut run = Applying { counters: counted, ..Applying::default() };
        run.outcome.done += left.len();
        run.outcome.deferred += deferred.len();
        if pass == Pass::Recheck {
            run.rechecked.extend(left.iter().map(|&i| items[i].locator.clone()));
        }
        run.deferred.extend(deferred.iter().map(|&i| items[i].locator.clone()));
        for (action, indices) in groups {
            if run.outcome.stopped_at.is_some() {
                run.unfiled.extend(indices.iter().filter_map(|&i| filed_id[i]));
                continue;
            }
            let batch: Vec<&Item> = indices.iter().map(|&i| &items[i]).collect();
            let results = folder.apply_batch(&batch, action).await;
            for (&index, result) in indices.iter().zip(results) {
                let target = Target { mailbox: name, folder: folder_name, item: &items[index], action, index };
                self.applied(&mut run, result, &target, &evaluations[index], filed_id[index], pass);
            }
        }
        if !run.destinations.is_empty() {
            let destinations = std::mem::take(&mut run.destinations);
            self.state.send(move |c| state::set_filed_folders(c, &destinations));
        }
        let filed_here = std::mem::take(&mut run.filed_here);
        self.after_filing(mailbox, folder_name, items, &evaluations, filed_here, run.by_model, pass).await;
        self.record_outcome(name, folder_name, run).await
    }

    /// What will be filed is recorded before it is filed: a crash between
    /// the two must not make the agent's own move look like a user's. The
    /// record of each message that acts (`None` for the others); `None`
    /// when the database refused, and then nothing is done this time: the
    /// batch is held and looked at again once the database takes writes.
    async fn record_filing(
        &self,
        name: &str,
        folder_name: &str,
        items: &[Item],
        evaluations: &[Evaluation],
        pass: Pass,
    ) -> Option<Vec<Option<i64>>> {
        let filing: Vec<Filed> = evaluations
            .iter()
            .zip(items)
            .filter_map(|(e, item)| {
                Some(Filed {
                    mailbox: name.to_owned(),
                    message_id: e.facts.message_id.clone(),
                    fingerprint: e.fingerprint.clone(),
                    class: class_name(e.class).to_owned(),
                    reason: reason_name(&e.reason).to_owned(),
                    action: filed_action(&e.action)?,
                    folder: String::new(),
                    pass: pass.as_str(),
                    delivered: item.identity,
                })
            })
            .collect();
        let filed_ids = if filing.is_empty() {
            Vec::new()
        } else {
            match self.state.call(move |c| state::insert_filed(c, &filing)).await {
                Ok(ids) => ids,
                Err(e) => {
                    self.events.emit(events::STATE_ERROR, Some(name), e.to_string());
                    self.unrecorded.hold(name, folder_name, items);
                    self.live.set_held(self.unrecorded.len() as u64);
                    return None;
                }
            }
        };
        let mut filed_ids = filed_ids.into_iter();
        Some(evaluations.iter().map(|e| if acts(&e.action) { filed_ids.next() } else { None }).collect())
    }

    /// Counts one message's applied (or failed) action.
    fn applied(
        &self,
        run: &mut Applying,
        result: Result<super::Applied, ActionError>,
        target: &Target<'_>,
        evaluation: &Evaluation,
        filed_id: Option<i64>,
        pass: Pass,
    ) {
        let applied = match result {
            Ok(applied) => applied,
            Err(error) => {
                run.unfiled.extend(filed_id);
                return self.action_failed(&error, target, &mut run.outcome, &mut run.counters);
            }
        };
        let item = target.item;
        run.outcome.done += 1;
        run.outcome.acted += 1;
        if matches!(pass, Pass::Rescan | Pass::Retro) {
            run.counters.rescan_filed += 1;
        }
        run.filed_here.push(item.locator.clone());
        if evaluation.reason == Reason::Model {
            run.by_model += 1;
        }
        if pass == Pass::Recheck {
            run.rechecked.push(item.locator.clone());
        }
        if let Some(id) = filed_id
            && !applied.folder.is_empty()
        {
            run.destinations.push((id, applied.folder));
        }
        tracing::info!(
            mailbox = target.mailbox,
            folder = target.folder,
            message = %item.locator,
            message_id = evaluation.facts.message_id.as_deref().unwrap_or(""),
            pass = pass.as_str(),
            class = class_name(evaluation.class),
            reason = reason_name(&evaluation.reason),
            action = action_name(target.action),
            model = evaluation.model.as_ref().map(|m| m.explain()).unwrap_or_default(),
            "filed"
        );
    }

    /// Counts the batch, takes back the filing records of what was not
    /// done, and updates the re-check queue.
    async fn record_outcome(&self, name: &str, folder_name: &str, run: Applying) -> Outcome {
        let Applying { outcome, counters, rechecked, deferred, unfiled, .. } = run;
        self.live.count(u64::from(counters.checked), u64::from(counters.spam + counters.phish));
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

    /// Counts a failed action and says what happened: the message stays
    /// where it was. A lost connection stops the batch at that message.
    fn action_failed(&self, error: &ActionError, target: &Target<'_>, outcome: &mut Outcome, counters: &mut Counters) {
        let name = target.mailbox;
        match error {
            ActionError::Connection(_) => {
                let at = outcome.stopped_at.map_or(target.index, |at| at.min(target.index));
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
                        "{} of message {} in {}: {reason}",
                        action_name(target.action),
                        target.item.locator,
                        target.folder
                    ),
                );
            }
        }
    }

    /// What retro-filing and the model take from a handled batch: messages
    /// left in place are remembered (keys and features), filed ones are
    /// forgotten, the network's confident spam teaches the model, and
    /// retro-filings are told.
    #[allow(clippy::too_many_arguments)]
    async fn after_filing(
        &self,
        mailbox: &MailboxContext,
        folder_name: &str,
        items: &[Item],
        evaluations: &[Evaluation],
        filed_here: Vec<String>,
        by_model: u64,
        pass: Pass,
    ) {
        let name: &str = &mailbox.name;
        let filed_count = filed_here.len() as u64;
        let (remember, learnt) = self.left_and_taught(name, folder_name, items, evaluations, pass);
        if !remember.is_empty() || !filed_here.is_empty() {
            let (mailbox_name, folder) = (name.to_owned(), folder_name.to_owned());
            let at = jiff::Timestamp::now().as_second();
            let rows = self
                .state
                .call(move |c| {
                    crate::recent::done_at(c, &mailbox_name, &folder, &filed_here)?;
                    crate::recent::insert(c, &remember, at)
                })
                .await;
            match rows {
                Ok(rows) => self.recent.add(&rows),
                Err(e) => self.events.emit(events::STATE_ERROR, Some(name), e.to_string()),
            }
        }
        self.learn(name, learnt).await;
        self.count_filed(name, folder_name, evaluations, filed_count, by_model, pass);
    }

    /// Messages left in place at delivery, to remember for retro-filing
    /// (keys and features); and the network's confident spam, to teach the
    /// model what it did not know yet (learning what it is already sure of
    /// only repeats itself).
    fn left_and_taught(
        &self,
        name: &str,
        folder_name: &str,
        items: &[Item],
        evaluations: &[Evaluation],
        pass: Pass,
    ) -> (Vec<crate::recent::Delivered>, Vec<(String, Source, Features)>) {
        let learner = self.pipeline.learner();
        let mut remember = Vec::new();
        let mut learnt = Vec::new();
        for (item, evaluation) in items.iter().zip(evaluations) {
            let left = evaluation.action == Action::Leave
                && evaluation.class == Class::Clean
                && matches!(
                    evaluation.reason,
                    Reason::Network | Reason::LowConfidence | Reason::NotAsked | Reason::Inline
                );
            if left && matches!(pass, Pass::Delivery | Pass::Recheck) && self.recent.enabled() {
                remember.push(crate::recent::Delivered {
                    mailbox: name.to_owned(),
                    folder: folder_name.to_owned(),
                    locator: item.locator.clone(),
                    message_id: evaluation.facts.message_id.clone(),
                    keys: evaluation.wire.as_ref().map(crate::recent::keys_of).unwrap_or_default(),
                    features: evaluation.features.as_ref().map(Features::to_bytes),
                });
            }
            let network_spam = matches!(evaluation.class, Class::Spam | Class::Phish)
                && evaluation.reason == Reason::Network
                && evaluation.confidence.is_some_and(|c| c >= NETWORK_TEACHES);
            if network_spam
                && learner.is_some()
                && evaluation.model.as_ref().is_none_or(|m| m.probability < 0.99)
                && let (Some(key), Some(features)) = (evaluation.key(), &evaluation.features)
            {
                learnt.push((key, Source::Network, features.clone()));
            }
        }
        (remember, learnt)
    }

    /// Counts the filings of a batch, and tells retro-filings.
    fn count_filed(
        &self,
        name: &str,
        folder_name: &str,
        evaluations: &[Evaluation],
        acted: u64,
        by_model: u64,
        pass: Pass,
    ) {
        if pass == Pass::Retro {
            if acted > 0 {
                self.recent.count_filed(acted, by_model);
                let example = evaluations
                    .iter()
                    .filter(|e| e.reason == Reason::Model)
                    .find_map(|e| e.model.as_ref())
                    .map(|m| format!(" For example: {}.", m.explain()))
                    .unwrap_or_default();
                self.events.emit(
                    events::RETRO_FILED,
                    Some(name),
                    format!(
                        "{acted} in {folder_name}: {} by the network's verdict, {by_model} by the local model.{example}",
                        acted - by_model.min(acted)
                    ),
                );
            }
        } else if by_model > 0 {
            self.recent.count_filed(0, by_model);
        }
    }
}

/// The least network confidence whose spam verdict the model learns from.
pub(crate) const NETWORK_TEACHES: f32 = 0.8;

/// What a batch's decisions come to before anything is done: the
/// messages to act on, grouped — moves and deletions with the same action
/// in one command (one `UID MOVE` of many UIDs costs the server about what
/// one message does), tags one by one — the ones left and deferred (by
/// index), and the counters of what was decided.
struct Plan<'e> {
    groups: Vec<(&'e Action, Vec<usize>)>,
    counted: Counters,
    left: Vec<usize>,
    deferred: Vec<usize>,
}

fn plan<'e>(items: &[Item], evaluations: &'e [Evaluation], pass: Pass) -> Plan<'e> {
    let mut plan = Plan { groups: Vec::new(), counted: Counters::default(), left: Vec::new(), deferred: Vec::new() };
    let counters = &mut plan.counted;
    for (index, evaluation) in evaluations.iter().enumerate().take(items.len()) {
        // The milter counted what it decided in-line.
        let counted = evaluation.class != Class::Deferred
            && !matches!(evaluation.reason, Reason::AlreadyTagged | Reason::Rescued | Reason::Inline);
        if counted && matches!(pass, Pass::Rescan | Pass::Retro) {
            counters.rescanned += 1;
        } else if counted {
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
            Action::Leave => plan.left.push(index),
            Action::Defer => plan.deferred.push(index),
            action @ (Action::Move { .. } | Action::Delete) => {
                match plan.groups.iter_mut().find(|(a, _)| *a == action) {
                    Some((_, indices)) => indices.push(index),
                    None => plan.groups.push((action, vec![index])),
                }
            }
            action @ Action::Tag { .. } => plan.groups.push((action, vec![index])),
        }
    }
    plan
}

/// A message an action is applied to, where, and its place in the batch.
struct Target<'a> {
    mailbox: &'a str,
    folder: &'a str,
    item: &'a Item,
    action: &'a Action,
    index: usize,
}

/// What a filing record says was done; `None` for an action that changes
/// nothing in the mail store.
fn filed_action(action: &Action) -> Option<FiledAction> {
    match action {
        Action::Move { destination: Destination::Spam(_), .. } => Some(FiledAction::SpamFolder),
        Action::Move { destination: Destination::Existing(_), .. } => Some(FiledAction::Folder),
        Action::Move { destination: Destination::Trash(_), .. } => Some(FiledAction::Trash),
        Action::Tag { .. } => Some(FiledAction::Tag),
        Action::Delete => Some(FiledAction::Delete),
        Action::Leave | Action::Defer => None,
    }
}

/// Whether an action changes the mail store.
fn acts(action: &Action) -> bool {
    filed_action(action).is_some()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::policy::Destination;

    fn evaluation(class: Class, reason: Reason, action: Action) -> Evaluation {
        Evaluation {
            class,
            reason,
            action,
            confidence: None,
            facts: crate::facts::Facts::default(),
            fingerprint: None,
            wire: None,
            features: None,
            model: None,
        }
    }

    fn item(locator: &str) -> Item {
        Item { locator: locator.into(), raw: Arc::from(&b""[..]), truncated: false, identity: None }
    }

    #[test]
    fn a_plan_groups_equal_moves_keeps_tags_apart_and_counts_what_was_decided() {
        let spam = Action::Move { destination: Destination::Spam(String::new()), create: true, mark_read: false };
        let tag = Action::Tag { prefix: "[SPAM] ".into(), mark_read: false };
        let evaluations = vec![
            evaluation(Class::Spam, Reason::Network, spam.clone()),
            evaluation(Class::Clean, Reason::Network, Action::Leave),
            evaluation(Class::Spam, Reason::Model, spam.clone()),
            evaluation(Class::Phish, Reason::Network, tag.clone()),
            evaluation(Class::Phish, Reason::Network, tag.clone()),
            evaluation(Class::Deferred, Reason::NotAsked, Action::Defer),
            evaluation(Class::Clean, Reason::Whitelisted("x.org".into()), Action::Leave),
            evaluation(Class::Spam, Reason::Inline, spam.clone()),
        ];
        let items: Vec<Item> = (0..evaluations.len()).map(|i| item(&i.to_string())).collect();
        let planned = plan(&items, &evaluations, Pass::Delivery);
        let groups: Vec<(&Action, Vec<usize>)> = planned.groups;
        assert_eq!(groups, vec![(&spam, vec![0, 2, 7]), (&tag, vec![3]), (&tag, vec![4])]);
        assert_eq!((planned.left, planned.deferred), (vec![1, 6], vec![5]));
        let c = planned.counted;
        // The deferred one is not counted yet; the in-line one was counted by the milter.
        assert_eq!((c.checked, c.spam, c.phish, c.whitelisted, c.rescanned), (6, 2, 2, 1, 0));

        let again = plan(&items, &evaluations, Pass::Retro).counted;
        assert_eq!((again.checked, again.rescanned), (0, 6), "a retro pass counts as a rescan");
    }
}
