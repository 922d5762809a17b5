//! The pipeline every message goes through, wherever it comes from (IMAP,
//! Maildir, and later in-line filtering): facts → whitelist → fingerprints
//! → empty-message rules → network verdict → policy. It decides; the mail
//! store acts.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use starling_fingerprint::{Fingerprinter, Key, Settings as FingerprintSettings};
use starling_proto::v1;

use crate::config::{AgentConfig, ModelMode, PhishAction};
use crate::events::{self, Events};
use crate::facts::Facts;
use crate::learning::{Learner, Opinion};
use crate::network::Network;
use crate::policy::{self, Action, Class, MailboxPolicy, Observed, Reason, Rules, Verdict};
use crate::tagging::Marker;
use crate::whitelist::{Entry, Whitelist};

/// Which whitelists apply: the server-wide one and each mailbox's own.
#[derive(Clone, Debug, Default)]
pub struct Whitelists {
    /// Server-wide entries (configuration file and database).
    pub global: Whitelist,
    /// Per-mailbox entries.
    pub mailboxes: HashMap<String, Whitelist>,
}

impl Whitelists {
    /// Builds the lists from the configuration's entries and stored rows.
    pub fn build(config_entries: &[String], rows: &[crate::state::WhitelistRow]) -> Whitelists {
        let mut lists = Whitelists::default();
        for entry in config_entries.iter().filter_map(|e| Entry::parse(e).ok()) {
            lists.global.add(entry);
        }
        for row in rows {
            match Entry::parse(&row.entry) {
                Ok(entry) if row.scope.is_empty() => lists.global.add(entry),
                Ok(entry) => lists.mailboxes.entry(row.scope.clone()).or_default().add(entry),
                Err(e) => tracing::warn!("ignoring the stored whitelist entry {:?}: {e}", row.entry),
            }
        }
        lists
    }

    /// The first entry matching, server-wide first.
    pub fn matches(&self, mailbox: &str, facts: &Facts) -> Option<String> {
        self.global.matches(facts).or_else(|| self.mailboxes.get(mailbox).and_then(|list| list.matches(facts)))
    }
}

/// A mailbox as the pipeline sees it.
#[derive(Clone, Debug)]
pub struct MailboxContext {
    /// Its name (user, or `shared/account/folder`).
    pub name: Arc<str>,
    /// Filtering is on.
    pub enabled: bool,
    /// Its actions, as the supervisor last set them.
    pub policy: PolicyCell,
}

/// A mailbox's policy, shared by its tasks and the supervisor: a settings
/// change that only alters what is done to the next messages reaches the
/// running tasks here, without reconnecting their sessions (at 10,000
/// mailboxes a restart of every task would be a reconnection storm).
#[derive(Clone, Debug)]
pub struct PolicyCell(Arc<std::sync::RwLock<Arc<MailboxPolicy>>>);

impl PolicyCell {
    /// A cell holding `policy`.
    pub fn new(policy: MailboxPolicy) -> PolicyCell {
        PolicyCell(Arc::new(std::sync::RwLock::new(Arc::new(policy))))
    }

    /// The policy now.
    pub fn get(&self) -> Arc<MailboxPolicy> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the policy for the next messages.
    pub fn set(&self, policy: MailboxPolicy) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }
}

/// What the pipeline found for one message.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// The class.
    pub class: Class,
    /// Why.
    pub reason: Reason,
    /// What to do.
    pub action: Action,
    /// The network's confidence, when it was asked and answered.
    pub confidence: Option<f32>,
    /// The header facts.
    pub facts: Facts,
    /// The text fingerprint (to recognise the message later).
    pub fingerprint: Option<Vec<u8>>,
    /// Every fingerprint, as sent to the network (for a later report),
    /// when the message was fingerprinted and has any.
    pub wire: Option<v1::FingerprintSet>,
    /// The local model's features of it, when the model is on.
    pub features: Option<starling_model::Features>,
    /// The local model's opinion, when it was asked.
    pub model: Option<Opinion>,
}

/// A message as users' feedback needs it: how to recognise it, and what to
/// report.
#[derive(Clone, Debug)]
pub struct Identified {
    /// The header facts.
    pub facts: Facts,
    /// The text fingerprint.
    pub fingerprint: Option<Vec<u8>>,
    /// Every fingerprint, as sent to the network.
    pub wire: Option<v1::FingerprintSet>,
    /// The local model's features, when the model is on.
    pub features: Option<starling_model::Features>,
}

impl Identified {
    /// The feedback key (Message-ID, or text fingerprint).
    pub fn key(&self) -> Option<String> {
        crate::feedback::key(self.facts.message_id.as_deref(), self.fingerprint.as_deref())
    }
}

impl Evaluation {
    /// The feedback key (Message-ID, or text fingerprint).
    pub fn key(&self) -> Option<String> {
        crate::feedback::key(self.facts.message_id.as_deref(), self.fingerprint.as_deref())
    }
}

/// The pipeline, shared by every mailbox.
pub struct Pipeline {
    network: Network,
    events: Events,
    /// The empty-message rules, the confidence floor and what the model may
    /// do (settings change them while the agent runs).
    tunables: RwLock<(Rules, f32, ModelMode)>,
    learner: RwLock<Option<Arc<Learner>>>,
    received_headers: usize,
    marker: Marker,
    fingerprint_settings: FingerprintSettings,
    fingerprinter: RwLock<Option<(Key, Fingerprinter)>>,
    whitelists: RwLock<Arc<Whitelists>>,
}

impl Pipeline {
    /// A pipeline with the configuration's rules.
    pub fn new(config: &AgentConfig, network: Network, events: Events, marker: Marker) -> Pipeline {
        Pipeline {
            network,
            events,
            tunables: RwLock::new(tunables(config)),
            learner: RwLock::new(None),
            received_headers: config.whitelist.received_headers,
            marker,
            fingerprint_settings: FingerprintSettings::default(),
            fingerprinter: RwLock::new(None),
            whitelists: RwLock::new(Arc::new(Whitelists::default())),
        }
    }

    /// Takes the rules and the confidence floor of a changed configuration.
    pub fn set_rules(&self, config: &AgentConfig) {
        *self.tunables.write().unwrap_or_else(|e| e.into_inner()) = tunables(config);
    }

    fn rules(&self) -> (Rules, f32, ModelMode) {
        *self.tunables.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives the pipeline the organisation's model.
    pub fn set_learner(&self, learner: Arc<Learner>) {
        *self.learner.write().unwrap_or_else(|e| e.into_inner()) = Some(learner);
    }

    /// The model, when it is on.
    pub fn learner(&self) -> Option<Arc<Learner>> {
        if self.rules().2 == ModelMode::Off {
            return None;
        }
        self.learner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the whitelists (after a change in the database).
    pub fn set_whitelists(&self, lists: Whitelists) {
        *self.whitelists.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(lists);
    }

    /// The tag marker.
    pub fn marker(&self) -> &Marker {
        &self.marker
    }

    /// The network handle.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// A fingerprinter under the network's key, or `None` while the key is
    /// unknown.
    fn fingerprinter(&self) -> Option<Fingerprinter> {
        let key = self.network.key()?;
        if let Some((current, fingerprinter)) = &*self.fingerprinter.read().unwrap_or_else(|e| e.into_inner())
            && *current == key
        {
            return Some(fingerprinter.clone());
        }
        let fingerprinter = Fingerprinter::with_settings(&key, self.fingerprint_settings);
        *self.fingerprinter.write().unwrap_or_else(|e| e.into_inner()) = Some((key, fingerprinter.clone()));
        Some(fingerprinter)
    }

    /// Evaluates a batch of raw messages of one mailbox, in order. With
    /// `inline_marks`, a valid in-line verdict mark decides (a delivery the
    /// milter checked); a rescan or retro pass asks again.
    pub async fn evaluate(
        self: &Arc<Self>,
        mailbox: &MailboxContext,
        messages: Vec<Arc<[u8]>>,
        inline_marks: bool,
    ) -> Vec<Evaluation> {
        if messages.is_empty() {
            return Vec::new();
        }
        // The CPU part (parsing, fingerprinting) off the async threads.
        let this = self.clone();
        let context = mailbox.clone();
        // A mailbox switched off for the model is neither scored nor filed
        // by it (its users' moves into and out of the spam folder still
        // teach it).
        let policy = mailbox.policy.get();
        let learner = self.learner().filter(|_| policy.model);
        let with_model = learner.is_some();
        let local = tokio::task::spawn_blocking(move || {
            let fingerprinter = this.fingerprinter();
            let whitelists = this.whitelists.read().unwrap_or_else(|e| e.into_inner()).clone();
            messages
                .iter()
                .map(|raw| {
                    this.local_step(&context, &whitelists, fingerprinter.as_ref(), with_model, inline_marks, raw)
                })
                .collect()
        })
        .await
        .unwrap_or_else(|_| Vec::new());
        let local: Vec<Local> = local;

        let asks: Vec<v1::FingerprintSet> = local.iter().filter(|l| l.ask).filter_map(|l| l.wire.clone()).collect();
        let mut verdicts = self.network.check(asks).await.into_iter();
        local
            .into_iter()
            .map(|l| {
                let (_, _, mode) = self.rules();
                let model = match (&learner, &l.features) {
                    (Some(learner), Some(features)) if l.decided.is_none() => Some(learner.opinion(features)),
                    _ => None,
                };
                let model_sure = model.as_ref().is_some_and(Opinion::sure);
                let (class, reason, confidence) = match l.decided {
                    Some((class, reason)) => (class, reason, None),
                    None => {
                        let verdict = if l.ask {
                            verdicts.next().map_or(Verdict::Unavailable, |v| v.unwrap_or(Verdict::Unavailable))
                        } else if l.key_missing {
                            Verdict::Unavailable
                        } else {
                            Verdict::NothingToAsk
                        };
                        let (confidence, vouched) = match verdict {
                            Verdict::Answer { confidence, vouched, .. } => (Some(confidence), vouched),
                            _ => (None, false),
                        };
                        let (rules, min_confidence, _) = self.rules();
                        let decided = policy::classify(&l.observed, rules, verdict, min_confidence);
                        let (class, reason) = policy::with_model(decided, mode == ModelMode::File, model_sure, vouched);
                        (class, reason, confidence)
                    }
                };
                let action = policy::decide(class, l.facts.subject.as_deref(), &policy);
                Evaluation {
                    class,
                    reason,
                    action,
                    confidence,
                    facts: l.facts,
                    fingerprint: l.fingerprint,
                    wire: l.wire,
                    features: l.features,
                    model,
                }
            })
            .collect()
    }

    fn local_step(
        &self,
        mailbox: &MailboxContext,
        whitelists: &Whitelists,
        fingerprinter: Option<&Fingerprinter>,
        with_model: bool,
        inline_marks: bool,
        raw: &[u8],
    ) -> Local {
        let facts = if with_model {
            Facts::with_header_tokens(raw, self.received_headers)
        } else {
            Facts::from_message(raw, self.received_headers)
        };
        let mut observed = Observed {
            enabled: mailbox.enabled,
            tagged_by_us: facts.tag_mark.as_deref().is_some_and(|m| self.marker.verify(m)),
            subject_empty: facts.subject_is_empty(),
            ..Observed::default()
        };
        if observed.enabled && !observed.tagged_by_us {
            observed.whitelisted = whitelists.matches(&mailbox.name, &facts);
        }
        let (rules, _, _) = self.rules();
        if let Some(decided) = policy::classify_local(&observed, rules) {
            return Local {
                facts,
                observed,
                decided: Some(decided),
                ask: false,
                wire: None,
                fingerprint: None,
                key_missing: false,
                features: None,
            };
        }
        let key_missing = fingerprinter.is_none();
        if key_missing {
            self.events.emit(events::NETWORK_KEY_MISSING, None, "");
        }
        // Without the key, fingerprints under a throwaway key still tell
        // whether the body is empty.
        let throwaway;
        let fingerprinter = match fingerprinter {
            Some(f) => f,
            None => {
                throwaway = Fingerprinter::new(&Key::from_bytes([0; 32]));
                &throwaway
            }
        };
        let (fingerprints, features) = analyse(fingerprinter, raw, with_model.then_some(&facts.header_tokens));
        observed.body_empty = !fingerprints.stats.visible_text && fingerprints.stats.attachments == 0;
        let decided = policy::classify_local(&observed, rules)
            .or_else(|| if inline_marks { self.inline_verdict(&facts, raw) } else { None });
        let wire = (!key_missing && !fingerprints.is_empty()).then(|| starling_proto::to_wire(&fingerprints));
        let ask = decided.is_none() && wire.is_some();
        let fingerprint = (!key_missing).then(|| fingerprints.text.map(|d| d.0.to_vec())).flatten();
        Local { facts, observed, decided, ask, wire, fingerprint, key_missing, features }
    }

    /// The in-line filter's verdict, when the message carries a mark this
    /// agent made for this very body: it is not asked about again.
    fn inline_verdict(&self, facts: &Facts, raw: &[u8]) -> Option<(Class, Reason)> {
        if facts.verdict_marks.is_empty() {
            return None;
        }
        let body = &raw[crate::facts::header_end(raw)..];
        let class = facts.verdict_marks.iter().find_map(|mark| self.marker.verify_verdict(mark, body))?;
        let class = match class {
            "spam" => Class::Spam,
            "phish" => Class::Phish,
            "clean" => Class::Clean,
            _ => return None,
        };
        Some((class, Reason::Inline))
    }

    /// Whether a mailbox's (or the server-wide) whitelist matches: the
    /// entry.
    pub fn whitelisted(&self, mailbox: &str, facts: &Facts) -> Option<String> {
        self.whitelists.read().unwrap_or_else(|e| e.into_inner()).matches(mailbox, facts)
    }

    /// Recognises messages users moved (no whitelist, rules or network):
    /// their facts and fingerprints. Without the network's key the
    /// fingerprints are unknown, and only the Message-ID identifies them.
    pub async fn identify(self: &Arc<Self>, messages: Vec<Arc<[u8]>>) -> Vec<Identified> {
        if messages.is_empty() {
            return Vec::new();
        }
        let this = self.clone();
        let with_model = self.learner().is_some();
        tokio::task::spawn_blocking(move || {
            let fingerprinter = this.fingerprinter();
            messages
                .iter()
                .map(|raw| {
                    let facts = if with_model {
                        Facts::with_header_tokens(raw, this.received_headers)
                    } else {
                        Facts::from_message(raw, this.received_headers)
                    };
                    let Some(fingerprinter) = &fingerprinter else {
                        return Identified { facts, fingerprint: None, wire: None, features: None };
                    };
                    let (fingerprints, features) =
                        analyse(fingerprinter, raw, with_model.then_some(&facts.header_tokens));
                    let fingerprint = fingerprints.text.map(|d| d.0.to_vec());
                    let wire = (!fingerprints.is_empty()).then(|| starling_proto::to_wire(&fingerprints));
                    Identified { facts, fingerprint, wire, features }
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    }
}

fn tunables(config: &AgentConfig) -> (Rules, f32, ModelMode) {
    let rules =
        Rules { empty_subject_and_body: config.rules.empty_subject_and_body, empty_body: config.rules.empty_body };
    (rules, config.policy.min_confidence, config.policy.model)
}

/// Fingerprints a message, and gives the model's features of it when the
/// model is on (given the header tokens read with its facts; one pass over
/// the text for both).
fn analyse(
    fingerprinter: &Fingerprinter,
    raw: &[u8],
    header_tokens: Option<&Vec<String>>,
) -> (starling_fingerprint::Fingerprints, Option<starling_model::Features>) {
    let Some(header_tokens) = header_tokens else { return (fingerprinter.fingerprint(raw), None) };
    let (fingerprints, text) = fingerprinter.fingerprint_with_words(raw);
    let features = crate::learning::features(&text, header_tokens);
    (fingerprints, Some(features))
}

struct Local {
    facts: Facts,
    observed: Observed,
    decided: Option<(Class, Reason)>,
    ask: bool,
    wire: Option<v1::FingerprintSet>,
    fingerprint: Option<Vec<u8>>,
    key_missing: bool,
    features: Option<starling_model::Features>,
}

/// The policy of user mailboxes, from the configuration.
pub fn user_policy(config: &AgentConfig) -> MailboxPolicy {
    let p = &config.policy;
    MailboxPolicy {
        spam_action: p.spam_action,
        phish_action: match p.phish_action {
            PhishAction::Same => p.spam_action,
            PhishAction::Action(action) => action,
        },
        spam_folder: p.spam_folder.clone(),
        folder: p.folder.clone(),
        trash_folder: p.trash_folder.clone(),
        tag_prefix: p.tag_prefix.clone(),
        mark_read: p.mark_read,
        model: true,
    }
}

/// The policy of a shared mailbox: its own action (or `shared_action`) for
/// spam and phishing, its own spam folder when given.
pub fn shared_policy(config: &AgentConfig, shared: &crate::config::SharedMailbox) -> MailboxPolicy {
    let action = shared.action.unwrap_or(config.policy.shared_action);
    MailboxPolicy {
        spam_action: action,
        phish_action: action,
        spam_folder: if shared.spam_folder.is_empty() {
            config.policy.spam_folder.clone()
        } else {
            shared.spam_folder.clone()
        },
        ..user_policy(config)
    }
}
