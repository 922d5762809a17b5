//! In-line filtering: the milter's decisions, with the same pipeline,
//! policy, whitelists, empty-message rules and statistics as filing after
//! delivery.
//!
//! The MTA hands over each message before delivery; the pipeline evaluates
//! it once (for the first filtered recipient) and the decision is made per
//! recipient from that: a recipient whose mailbox is disabled, whose own
//! whitelist matches, or who turned the model off where the model decided,
//! gets the message clean. The milter protocol cannot split one message
//! into different deliveries, so:
//!
//! - every recipient agrees → the action is done in-line: headers for
//!   filing (`X-Starling-Verdict`, `X-Starling-Evidence`, `X-Spam-Flag`), the
//!   subject tag, discard, reject or quarantine;
//! - recipients disagree → the message is delivered unmarked and the
//!   post-delivery agent decides in each mailbox with that mailbox's
//!   settings (the safest rule: nobody loses a message to somebody else's
//!   setting, and nobody's spam goes unfiled if the agent watches them).
//!
//! The verdict header carries a mark bound to the body (a keyed MAC, see
//! [`Marker::verdict_mark`](crate::tagging::Marker::verdict_mark)): the
//! post-delivery agent takes the verdict from it instead of asking again,
//! and a forged or copied mark is ignored. A message the milter could not
//! check in time (`timeout_ms`) is delivered untouched and unmarked, so the
//! post-delivery agent checks it like any other.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use starling_milter::{Decision, Disposition, Message};

use crate::config::{AgentConfig, MilterAction, MilterOnError};
use crate::events::{self, Events};
use crate::facts::VERDICT_HEADER;
use crate::live::MilterOutcome;
use crate::pipeline::{self, Evaluation, MailboxContext, Pipeline, PolicyCell};
use crate::policy::{Action, ActionKind, Class, MailboxPolicy, Reason};
use crate::process::{class_name, reason_name};
use crate::state::{self, Counters, MailboxRow, State};

/// The evidence header: why, without content.
pub const EVIDENCE_HEADER: &str = "X-Starling-Evidence";
/// The header a Sieve rule files on.
pub const FLAG_HEADER: &str = "X-Spam-Flag";

/// What the in-line filter knows of a recipient's mailbox.
#[derive(Clone, Debug)]
struct Recipient {
    name: Arc<str>,
    enabled: bool,
    model: bool,
}

/// The settings it acts by (from the effective configuration).
#[derive(Clone, Debug)]
struct Settings {
    spam_action: MilterAction,
    reject_text: String,
    timeout: Duration,
    on_error: MilterOnError,
    unknown_recipients: bool,
    policy: MailboxPolicy,
}

impl Settings {
    fn of(config: &AgentConfig) -> Settings {
        let m = &config.milter;
        Settings {
            spam_action: m.spam_action,
            reject_text: m.reject_text.clone(),
            timeout: Duration::from_millis(m.timeout_ms),
            on_error: m.on_error,
            unknown_recipients: m.unknown_recipients,
            policy: pipeline::user_policy(config),
        }
    }
}

/// The in-line filter: one per agent, serving every MTA connection.
pub struct Inline {
    pipeline: Arc<Pipeline>,
    state: State,
    events: Events,
    live: Arc<crate::live::Live>,
    settings: RwLock<Arc<Settings>>,
    /// Mailboxes by lower-case name (user names are often addresses, or
    /// local parts).
    mailboxes: RwLock<Arc<HashMap<String, Recipient>>>,
}

impl Inline {
    /// An in-line filter using the agent's pipeline.
    pub fn new(
        config: &AgentConfig,
        pipeline: Arc<Pipeline>,
        state: State,
        events: Events,
        live: Arc<crate::live::Live>,
    ) -> Inline {
        Inline {
            pipeline,
            state,
            events,
            live,
            settings: RwLock::new(Arc::new(Settings::of(config))),
            mailboxes: RwLock::new(Arc::new(HashMap::new())),
        }
    }

    /// Takes a changed configuration (settings changed in the console).
    pub fn configure(&self, config: &AgentConfig) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Settings::of(config));
    }

    /// Takes the current list of mailboxes.
    pub fn set_mailboxes(&self, rows: &[MailboxRow]) {
        let map: HashMap<String, Recipient> = rows
            .iter()
            .filter(|row| row.kind == "user" && row.present)
            .map(|row| {
                let recipient =
                    Recipient { name: Arc::from(row.name.as_str()), enabled: row.enabled, model: row.model };
                (row.name.to_lowercase(), recipient)
            })
            .collect();
        let count = map.len() as u64;
        *self.mailboxes.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(map);
        self.live.set_milter_mailboxes(count);
    }

    /// How many mailboxes it knows.
    pub fn mailbox_count(&self) -> u64 {
        self.mailboxes.read().unwrap_or_else(|e| e.into_inner()).len() as u64
    }

    /// Reads the mailboxes from the state database, as the organisation's
    /// standing allows them.
    pub async fn load_mailboxes(&self, standing: &crate::activation::Standing) -> Result<(), state::StateError> {
        let rows = self.state.call(|c| state::mailboxes(c)).await?;
        self.set_mailboxes(&crate::activation::allowed(standing, rows).0);
        Ok(())
    }

    fn settings(&self) -> Arc<Settings> {
        self.settings.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The mailbox of an envelope recipient: the whole address, then its
    /// local part without a `+extension`.
    fn recipient(mailboxes: &HashMap<String, Recipient>, address: &str) -> Option<Recipient> {
        let address = address.to_lowercase();
        if let Some(found) = mailboxes.get(&address) {
            return Some(found.clone());
        }
        let local = address.rsplit_once('@').map_or(address.as_str(), |(local, _)| local);
        let local = local.split_once('+').map_or(local, |(base, _)| base);
        mailboxes.get(local).cloned()
    }

    async fn decide_inner(&self, message: Message) -> (Decision, MilterOutcome) {
        let settings = self.settings();
        let mailboxes = self.mailboxes.read().unwrap_or_else(|e| e.into_inner()).clone();
        let recipients = Inline::recipients(&settings, &mailboxes, &message);
        let Some(lead) = recipients.iter().flatten().next().cloned() else {
            return (Decision::deliver(), MilterOutcome::NotFiltered);
        };
        if recipients.iter().any(Option::is_none) {
            // Some recipients are filtered, some not: whatever the class,
            // nothing can be done in-line for all of them.
            return (Decision::deliver(), MilterOutcome::LeftToAgent);
        }
        let evaluation = match self.evaluate(&settings, &lead, &message).await {
            Ok(evaluation) => evaluation,
            Err(undecided) => return undecided,
        };
        let classes = self.classes(&recipients, &lead, &evaluation);
        let first = classes[0].as_ref().map(|(class, _)| *class);
        let agreed = classes.iter().all(|c| c.as_ref().map(|(class, _)| *class) == first && c.is_some());
        let Some(class) = first.filter(|_| agreed) else {
            // Counted by the post-delivery agent, which decides.
            return (Decision::deliver(), MilterOutcome::LeftToAgent);
        };
        self.count(&mailboxes, &recipients, &classes);
        self.teach(&lead, &evaluation);
        let decision = self.marked(&message, class, &evaluation);
        if class == Class::Clean {
            return (decision, MilterOutcome::Decided(class));
        }
        let decision = self.disposed(&settings, decision, &message, &evaluation, class, &recipients);
        (decision, MilterOutcome::Decided(class))
    }

    /// Every recipient: its mailbox when filtered, `None` when not.
    fn recipients(
        settings: &Settings,
        mailboxes: &HashMap<String, Recipient>,
        message: &Message,
    ) -> Vec<Option<Recipient>> {
        message
            .recipients
            .iter()
            .map(|address| match Inline::recipient(mailboxes, address) {
                Some(r) if r.enabled => Some(r),
                Some(_) => None,
                None if settings.unknown_recipients => {
                    Some(Recipient { name: Arc::from(address.to_lowercase()), enabled: true, model: true })
                }
                None => None,
            })
            .collect()
    }

    /// The pipeline's evaluation for the lead recipient, within the time
    /// allowed; or what to do without one.
    async fn evaluate(
        &self,
        settings: &Settings,
        lead: &Recipient,
        message: &Message,
    ) -> Result<Evaluation, (Decision, MilterOutcome)> {
        let context = MailboxContext {
            name: lead.name.clone(),
            enabled: true,
            policy: PolicyCell::new(MailboxPolicy { model: lead.model, ..settings.policy.clone() }),
        };
        let raw: Arc<[u8]> = Arc::from(message.raw.as_slice());
        let evaluated =
            tokio::time::timeout(settings.timeout, self.pipeline.evaluate(&context, vec![raw], false)).await;
        let evaluation = match evaluated {
            Ok(mut evaluations) if !evaluations.is_empty() => evaluations.swap_remove(0),
            Ok(_) => return Err((self.on_error(settings, "the pipeline returned nothing"), MilterOutcome::Unchecked)),
            Err(_) => {
                self.events.emit(
                    events::MILTER_UNCHECKED,
                    None,
                    format!("No verdict within {} ms.", settings.timeout.as_millis()),
                );
                return Err((Decision::deliver(), MilterOutcome::Unchecked));
            }
        };
        if evaluation.class == Class::Deferred {
            self.events.emit(events::MILTER_UNCHECKED, None, "The network could not be asked.");
            return Err((Decision::deliver(), MilterOutcome::Unchecked));
        }
        Ok(evaluation)
    }

    /// Each recipient's own class (`None`: it needs its own check).
    fn classes(
        &self,
        recipients: &[Option<Recipient>],
        lead: &Recipient,
        evaluation: &Evaluation,
    ) -> Vec<Option<(Class, Reason)>> {
        recipients
            .iter()
            .map(|r| {
                let r = r.as_ref()?;
                if r.name == lead.name {
                    return Some((evaluation.class, evaluation.reason.clone()));
                }
                if let Some(entry) = self.pipeline.whitelisted(&r.name, &evaluation.facts) {
                    return Some((Class::Clean, Reason::Whitelisted(entry)));
                }
                if matches!(evaluation.reason, Reason::Whitelisted(_)) {
                    // The lead's own whitelist: this one needs its own
                    // check, after delivery.
                    return None;
                }
                if evaluation.reason == Reason::Model && !r.model {
                    return Some((Class::Clean, Reason::NotAsked));
                }
                Some((evaluation.class, evaluation.reason.clone()))
            })
            .collect()
    }

    /// The message delivered with Starling's headers: a sender's own
    /// headers of those names dropped, the verdict mark and the evidence.
    fn marked(&self, message: &Message, class: Class, evaluation: &Evaluation) -> Decision {
        let mut decision = Decision::deliver();
        // Headers a sender wrote itself under these names are dropped (last
        // first: the indices stay right).
        let mut dropped = vec![VERDICT_HEADER, EVIDENCE_HEADER];
        if class != Class::Clean {
            dropped.push(FLAG_HEADER);
        }
        for name in dropped {
            let indices: Vec<u32> = message.header_indices(name).map(|(i, _)| i).collect();
            for index in indices.into_iter().rev() {
                decision.change_headers.push((index, name.to_owned(), String::new()));
            }
        }
        // The mark only when the whole body was read: it vouches for it. (A
        // whitelisted message is marked clean too: a rescan or retro pass
        // asks again, and the whitelist still wins there.)
        if !message.truncated {
            let body = &message.raw[crate::facts::header_end(&message.raw)..];
            let mark = self.pipeline.marker().verdict_mark(class_name(class), body);
            decision.add_headers.push((VERDICT_HEADER.to_owned(), mark));
        }
        let mut evidence = format!("class={}; reason={}", class_name(class), reason_name(&evaluation.reason));
        if let Some(confidence) = evaluation.confidence {
            evidence.push_str(&format!("; confidence={confidence:.2}"));
        }
        if let Some(model) = &evaluation.model {
            evidence.push_str(&format!("; model={:.3}", model.probability));
        }
        decision.add_headers.push((EVIDENCE_HEADER.to_owned(), evidence));
        decision
    }

    /// What becomes of spam or phishing: `[milter] spam_action`, and under
    /// `policy` the mailbox policy's action.
    fn disposed(
        &self,
        settings: &Settings,
        mut decision: Decision,
        message: &Message,
        evaluation: &Evaluation,
        class: Class,
        recipients: &[Option<Recipient>],
    ) -> Decision {
        match settings.spam_action {
            MilterAction::Reject => {
                decision = Decision::deliver();
                decision.disposition = Disposition::Reject(settings.reject_text.clone());
            }
            MilterAction::Quarantine => {
                decision.add_headers.push((FLAG_HEADER.to_owned(), "YES".to_owned()));
                decision.disposition = Disposition::Quarantine(format!(
                    "Starling: {} ({})",
                    class_name(class),
                    reason_name(&evaluation.reason)
                ));
            }
            MilterAction::Policy => {
                let subject = message.header_indices("Subject").next().map(|(_, value)| value.to_owned());
                match &evaluation.action {
                    Action::Delete => {
                        decision = Decision::deliver();
                        decision.disposition = Disposition::Discard;
                    }
                    Action::Tag { prefix, .. } => {
                        decision.add_headers.push((FLAG_HEADER.to_owned(), "YES".to_owned()));
                        match subject {
                            Some(subject) => decision.change_headers.push((
                                1,
                                "Subject".into(),
                                format!("{prefix} {}", subject.trim_start()),
                            )),
                            None => decision.add_headers.push(("Subject".into(), prefix.clone())),
                        }
                    }
                    // A trial run (`none`): marked, but no flag to file on;
                    // a subject tagged already: flagged.
                    Action::Leave => {
                        let kind = if class == Class::Phish {
                            settings.policy.phish_action
                        } else {
                            settings.policy.spam_action
                        };
                        if kind != ActionKind::None {
                            decision.add_headers.push((FLAG_HEADER.to_owned(), "YES".to_owned()));
                        }
                    }
                    Action::Move { .. } | Action::Defer => {
                        decision.add_headers.push((FLAG_HEADER.to_owned(), "YES".to_owned()));
                        self.remember_filed(recipients, evaluation, class, &settings.policy);
                    }
                }
            }
        }
        decision
    }

    /// Records spam flagged for filing (a Sieve rule or the post-delivery
    /// agent moves it), so that finding it in the spam folder is not taken
    /// as a user's report, and, once seen there (`inline-filed`), taking it
    /// out again is a rescue.
    fn remember_filed(
        &self,
        recipients: &[Option<Recipient>],
        evaluation: &crate::pipeline::Evaluation,
        class: Class,
        policy: &MailboxPolicy,
    ) {
        // Not a move the agent made: a copy first found in the inbox is not
        // a rescue.
        let folder = match policy.spam_action {
            ActionKind::Folder => policy.folder.clone(),
            ActionKind::Trash => policy.trash_folder.clone(),
            _ if policy.spam_folder.is_empty() => "Spam".into(),
            _ => policy.spam_folder.clone(),
        };
        let rows: Vec<state::Filed> = recipients
            .iter()
            .flatten()
            .map(|r| state::Filed {
                mailbox: r.name.to_string(),
                message_id: evaluation.facts.message_id.clone(),
                fingerprint: evaluation.fingerprint.clone(),
                class: class_name(class).to_owned(),
                reason: reason_name(&evaluation.reason).to_owned(),
                action: state::FiledAction::Inline,
                folder: folder.clone(),
                pass: "inline",
                delivered: None,
            })
            .collect();
        self.state.send(move |c| state::insert_filed(c, &rows).map(|_| ()));
    }

    /// The network's confident spam teaches the local model what it did not
    /// know yet, as after delivery (the post-delivery agent takes the mark
    /// and does not see the verdict).
    fn teach(&self, lead: &Recipient, evaluation: &crate::pipeline::Evaluation) {
        let network_spam = matches!(evaluation.class, Class::Spam | Class::Phish)
            && evaluation.reason == Reason::Network
            && evaluation.confidence.is_some_and(|c| c >= crate::process::NETWORK_TEACHES)
            && evaluation.model.as_ref().is_none_or(|m| m.probability < 0.99);
        let Some(learner) = self.pipeline.learner().filter(|_| network_spam) else { return };
        let (Some(key), Some(features)) = (evaluation.key(), evaluation.features.clone()) else { return };
        let mailbox = lead.name.to_string();
        tokio::spawn(async move {
            learner.learn(&mailbox, &key, crate::learning::Source::Network, features).await;
        });
    }

    /// Counts what was decided in-line, per recipient mailbox (unknown
    /// recipients are not counted: they have no mailbox).
    fn count(
        &self,
        mailboxes: &HashMap<String, Recipient>,
        recipients: &[Option<Recipient>],
        classes: &[Option<(Class, Reason)>],
    ) {
        let hour = jiff::Timestamp::now().as_second().div_euclid(3600) * 3600;
        let mut counters: BTreeMap<(i64, String), Counters> = BTreeMap::new();
        for (recipient, class) in recipients.iter().zip(classes) {
            let (Some(recipient), Some((class, reason))) = (recipient, class) else { continue };
            if !mailboxes.contains_key(&recipient.name.to_lowercase()) {
                continue;
            }
            let n = counters.entry((hour, recipient.name.to_string())).or_default();
            n.checked += 1;
            match class {
                Class::Spam => n.spam += 1,
                Class::Phish => n.phish += 1,
                _ => {}
            }
            match reason {
                Reason::Whitelisted(_) => n.whitelisted += 1,
                Reason::EmptySubjectAndBody | Reason::EmptyBody => n.empty += 1,
                _ => {}
            }
        }
        if !counters.is_empty() {
            self.state.send(move |c| state::record_batch(c, &counters));
        }
    }

    fn on_error(&self, settings: &Settings, why: &str) -> Decision {
        self.events.emit(events::MILTER_ERROR, None, why);
        match settings.on_error {
            MilterOnError::Accept => Decision::deliver(),
            MilterOnError::Tempfail => Decision {
                disposition: Disposition::Tempfail("451 4.7.1 Spam check unavailable, try again later".into()),
                ..Decision::deliver()
            },
        }
    }
}

impl starling_milter::Filter for Inline {
    async fn decide(&self, message: Message) -> Decision {
        let queue_id = message.queue_id.clone();
        let recipients = message.recipients.len();
        let started = std::time::Instant::now();
        let (decision, outcome) = self.decide_inner(message).await;
        self.live.milter_count(outcome, started.elapsed());
        tracing::info!(
            queue_id,
            recipients,
            outcome = ?outcome,
            disposition = ?decision.disposition,
            micros = started.elapsed().as_micros() as u64,
            "milter"
        );
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(names: &[(&str, bool)]) -> Vec<MailboxRow> {
        names
            .iter()
            .map(|(name, enabled)| MailboxRow {
                name: (*name).into(),
                kind: "user".into(),
                enabled: *enabled,
                feedback: true,
                model: true,
                source: "list".into(),
                present: true,
                first_seen: 0,
                last_seen: 0,
            })
            .collect()
    }

    #[test]
    fn recipients_are_found_by_address_then_local_part() {
        let map: HashMap<String, Recipient> = rows(&[("alice", true), ("bob@example.org", true)])
            .iter()
            .map(|r| (r.name.clone(), Recipient { name: Arc::from(r.name.as_str()), enabled: true, model: true }))
            .collect();
        let name = |a: &str| Inline::recipient(&map, a).map(|r| r.name.to_string());
        assert_eq!(name("Alice@Example.ORG").as_deref(), Some("alice"));
        assert_eq!(name("alice+lists@example.org").as_deref(), Some("alice"));
        assert_eq!(name("BOB@example.org").as_deref(), Some("bob@example.org"));
        assert_eq!(name("carol@example.org"), None);
    }
}
