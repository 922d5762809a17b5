//! Policy: a pure function from what is known about a message to what is
//! done with it. No I/O, no clock: tested over the whole option matrix.
//!
//! Two steps. [`classify`] applies the rules in their order — whitelist,
//! empty-message rules, the network's verdict — and says what the message
//! is and why. [`decide`] turns that class into an action for the mailbox.

use serde::{Deserialize, Serialize};

/// What can be done with spam.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    /// Move to the spam folder (created when missing).
    SpamFolder,
    /// Move to the existing folder `policy.folder` (never created).
    Folder,
    /// Move to Trash.
    Trash,
    /// Prefix the subject and leave the message where it is.
    Tag,
    /// Delete the message.
    Delete,
    /// Do nothing (count and log only: a trial run).
    None,
}

impl ActionKind {
    /// Every action, for tests and documentation.
    pub const ALL: [ActionKind; 6] = [
        ActionKind::SpamFolder,
        ActionKind::Folder,
        ActionKind::Trash,
        ActionKind::Tag,
        ActionKind::Delete,
        ActionKind::None,
    ];

    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::SpamFolder => "spam-folder",
            ActionKind::Folder => "folder",
            ActionKind::Trash => "trash",
            ActionKind::Tag => "tag",
            ActionKind::Delete => "delete",
            ActionKind::None => "none",
        }
    }
}

/// The network's class for a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkClass {
    /// Nothing known against it.
    Clean,
    /// Spam.
    Spam,
    /// Phishing.
    Phish,
}

/// What the network said, or that it could not be asked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    /// The network answered.
    Answer {
        /// Its class.
        class: NetworkClass,
        /// Its confidence, 0–1.
        confidence: f32,
        /// Users' not-spam reports weigh in for it (ham evidence, or a
        /// not-spam consensus): the local model must not overrule that.
        vouched: bool,
    },
    /// The network could not be reached (or the key is not known yet).
    Unavailable,
    /// The message has nothing to fingerprint: nothing to ask.
    NothingToAsk,
}

/// Why a message got its class.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason", content = "detail")]
pub enum Reason {
    /// The mailbox is not filtered.
    Disabled,
    /// The agent's own tagged copy.
    AlreadyTagged,
    /// A whitelist entry matched (the entry).
    Whitelisted(String),
    /// Empty subject and empty body.
    EmptySubjectAndBody,
    /// Empty body.
    EmptyBody,
    /// The network's verdict.
    Network,
    /// The network's verdict was below `policy.min_confidence`.
    LowConfidence,
    /// The network was not asked or could not be.
    NotAsked,
    /// A user took it out of the spam folder (or marked it not junk): it is
    /// never filed again for them.
    Rescued,
    /// The local model is sure of it (above its calibrated threshold), and
    /// the network had nothing against that.
    Model,
    /// The in-line filter (milter) decided before delivery; its verdict
    /// mark is valid for this body.
    Inline,
}

/// What a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Not spam.
    Clean,
    /// Spam.
    Spam,
    /// Phishing.
    Phish,
    /// Unknown for now: the network is needed and unavailable.
    Deferred,
}

/// The inputs of [`classify`].
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Filtering is enabled for the mailbox.
    pub enabled: bool,
    /// The message carries the agent's valid tag mark.
    pub tagged_by_us: bool,
    /// The whitelist entry that matched, if any.
    pub whitelisted: Option<String>,
    /// The subject is missing or blank.
    pub subject_empty: bool,
    /// The body has no visible text and no attachment.
    pub body_empty: bool,
}

/// Rules that need no network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Empty subject and body is spam.
    pub empty_subject_and_body: bool,
    /// Empty body is spam.
    pub empty_body: bool,
}

/// The rules that can decide without the network, in order. `None` means
/// the network's verdict is needed.
pub fn classify_local(observed: &Observed, rules: Rules) -> Option<(Class, Reason)> {
    if !observed.enabled {
        return Some((Class::Clean, Reason::Disabled));
    }
    if observed.tagged_by_us {
        return Some((Class::Clean, Reason::AlreadyTagged));
    }
    if let Some(entry) = &observed.whitelisted {
        return Some((Class::Clean, Reason::Whitelisted(entry.clone())));
    }
    if observed.body_empty {
        if rules.empty_subject_and_body && observed.subject_empty {
            return Some((Class::Spam, Reason::EmptySubjectAndBody));
        }
        if rules.empty_body {
            return Some((Class::Spam, Reason::EmptyBody));
        }
    }
    None
}

/// The class of a message: the local rules first, then the verdict.
pub fn classify(observed: &Observed, rules: Rules, verdict: Verdict, min_confidence: f32) -> (Class, Reason) {
    if let Some(decided) = classify_local(observed, rules) {
        return decided;
    }
    match verdict {
        Verdict::Answer { class: NetworkClass::Clean, .. } => (Class::Clean, Reason::Network),
        Verdict::Answer { confidence, .. } if confidence < min_confidence => (Class::Clean, Reason::LowConfidence),
        Verdict::Answer { class: NetworkClass::Spam, .. } => (Class::Spam, Reason::Network),
        Verdict::Answer { class: NetworkClass::Phish, .. } => (Class::Phish, Reason::Network),
        Verdict::NothingToAsk => (Class::Clean, Reason::NotAsked),
        Verdict::Unavailable => (Class::Deferred, Reason::NotAsked),
    }
}

/// The local model's part in the decision, after the local rules and the
/// network: a message the network did not call spam (nothing matched, or
/// too little confidence, or nothing to ask) is spam when the model may
/// file and is sure — unless users vouched for it on the network. The
/// model never overrules a whitelist, an empty-message rule, a rescue, a
/// deferral or the network's own spam verdict; a rescued message never
/// gets here (see `process/`).
pub fn with_model(decided: (Class, Reason), model_files: bool, model_sure: bool, vouched: bool) -> (Class, Reason) {
    let undecided =
        decided.0 == Class::Clean && matches!(decided.1, Reason::Network | Reason::LowConfidence | Reason::NotAsked);
    if undecided && model_files && model_sure && !vouched { (Class::Spam, Reason::Model) } else { decided }
}

/// Where a message goes; folder names are resolved by the mail store (the
/// spam folder may be the server's `\Junk` folder).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "to", content = "name")]
pub enum Destination {
    /// The spam folder: this name, or the store's default when empty.
    Spam(String),
    /// An existing folder, never created.
    Existing(String),
    /// Trash: this name, or the store's default when empty.
    Trash(String),
}

/// What the mail store does with a message.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Leave it untouched.
    Leave,
    /// Move it.
    Move {
        /// Where.
        destination: Destination,
        /// Create the folder when missing.
        create: bool,
        /// Also mark it read.
        mark_read: bool,
    },
    /// Rewrite it with a subject prefix (and the tag mark), in place.
    Tag {
        /// The prefix.
        prefix: String,
        /// Also mark it read.
        mark_read: bool,
    },
    /// Delete it.
    Delete,
    /// Leave it and queue it for a re-check when the network is back.
    Defer,
}

/// Action settings for one mailbox.
#[derive(Clone, Debug, PartialEq)]
pub struct MailboxPolicy {
    /// Action for spam.
    pub spam_action: ActionKind,
    /// Action for phishing.
    pub phish_action: ActionKind,
    /// Spam folder name ("" = the store's default).
    pub spam_folder: String,
    /// The `folder` action's folder.
    pub folder: String,
    /// Trash folder name ("" = the store's default).
    pub trash_folder: String,
    /// Tag prefix.
    pub tag_prefix: String,
    /// Mark filed spam read.
    pub mark_read: bool,
    /// The local model may file this mailbox's mail (its per-mailbox
    /// switch; `policy.model` decides for the organisation).
    pub model: bool,
}

/// The action for a message of `class`, whose subject is `subject`.
pub fn decide(class: Class, subject: Option<&str>, policy: &MailboxPolicy) -> Action {
    let kind = match class {
        Class::Clean => return Action::Leave,
        Class::Deferred => return Action::Defer,
        Class::Spam => policy.spam_action,
        Class::Phish => policy.phish_action,
    };
    let mark_read = policy.mark_read;
    match kind {
        ActionKind::None => Action::Leave,
        ActionKind::SpamFolder => {
            Action::Move { destination: Destination::Spam(policy.spam_folder.clone()), create: true, mark_read }
        }
        ActionKind::Folder => {
            Action::Move { destination: Destination::Existing(policy.folder.clone()), create: false, mark_read }
        }
        ActionKind::Trash => {
            Action::Move { destination: Destination::Trash(policy.trash_folder.clone()), create: true, mark_read }
        }
        ActionKind::Tag => {
            let prefix = policy.tag_prefix.trim();
            let tagged = subject.is_some_and(|s| s.trim_start().starts_with(prefix));
            if tagged || prefix.is_empty() {
                Action::Leave
            } else {
                Action::Tag { prefix: prefix.to_owned(), mark_read }
            }
        }
        ActionKind::Delete => Action::Delete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_files_only_what_nothing_else_decided() {
        let files = |decided: (Class, Reason), sure: bool, vouched: bool| with_model(decided, true, sure, vouched);
        let unknown = (Class::Clean, Reason::Network);
        assert_eq!(files(unknown.clone(), true, false), (Class::Spam, Reason::Model));
        assert_eq!(files((Class::Clean, Reason::LowConfidence), true, false), (Class::Spam, Reason::Model));
        // Not sure, vouched for by users, or not allowed to file: left.
        assert_eq!(files(unknown.clone(), false, false), unknown);
        assert_eq!(files(unknown.clone(), true, true), unknown);
        assert_eq!(with_model(unknown.clone(), false, true, false), unknown);
        // Whitelists, rules, rescues, deferrals and the network's spam win.
        for decided in [
            (Class::Clean, Reason::Whitelisted("a@b".into())),
            (Class::Clean, Reason::Rescued),
            (Class::Clean, Reason::Disabled),
            (Class::Spam, Reason::EmptyBody),
            (Class::Deferred, Reason::NotAsked),
            (Class::Phish, Reason::Network),
        ] {
            assert_eq!(files(decided.clone(), true, false), decided);
        }
    }

    fn policy(spam: ActionKind, phish: ActionKind, mark_read: bool) -> MailboxPolicy {
        MailboxPolicy {
            spam_action: spam,
            phish_action: phish,
            spam_folder: "Junk".into(),
            folder: "Quarantine".into(),
            trash_folder: String::new(),
            tag_prefix: "[SPAM]".into(),
            mark_read,
            model: true,
        }
    }

    fn all_observed() -> Vec<Observed> {
        let mut out = Vec::new();
        for bits in 0..32u8 {
            out.push(Observed {
                enabled: bits & 1 != 0,
                tagged_by_us: bits & 2 != 0,
                whitelisted: (bits & 4 != 0).then(|| "example.com".to_owned()),
                subject_empty: bits & 8 != 0,
                body_empty: bits & 16 != 0,
            });
        }
        out
    }

    fn all_rules() -> [Rules; 4] {
        [
            Rules { empty_subject_and_body: false, empty_body: false },
            Rules { empty_subject_and_body: true, empty_body: false },
            Rules { empty_subject_and_body: false, empty_body: true },
            Rules { empty_subject_and_body: true, empty_body: true },
        ]
    }

    fn all_verdicts() -> Vec<Verdict> {
        let mut out = vec![Verdict::Unavailable, Verdict::NothingToAsk];
        for class in [NetworkClass::Clean, NetworkClass::Spam, NetworkClass::Phish] {
            for confidence in [0.2, 0.9] {
                out.push(Verdict::Answer { class, confidence, vouched: false });
            }
        }
        out
    }

    /// The whole matrix of observations × rules × verdicts × thresholds,
    /// against the rules as the product states them.
    #[test]
    fn classification_matrix() {
        let mut cases = 0;
        for observed in all_observed() {
            for rules in all_rules() {
                for verdict in all_verdicts() {
                    for min_confidence in [0.0, 0.5] {
                        cases += 1;
                        let (class, reason) = classify(&observed, rules, verdict, min_confidence);
                        let expected = if !observed.enabled {
                            (Class::Clean, Reason::Disabled)
                        } else if observed.tagged_by_us {
                            (Class::Clean, Reason::AlreadyTagged)
                        } else if observed.whitelisted.is_some() {
                            (Class::Clean, Reason::Whitelisted("example.com".into()))
                        } else if observed.body_empty && observed.subject_empty && rules.empty_subject_and_body {
                            (Class::Spam, Reason::EmptySubjectAndBody)
                        } else if observed.body_empty && rules.empty_body {
                            (Class::Spam, Reason::EmptyBody)
                        } else {
                            match verdict {
                                Verdict::Unavailable => (Class::Deferred, Reason::NotAsked),
                                Verdict::NothingToAsk => (Class::Clean, Reason::NotAsked),
                                Verdict::Answer { class: NetworkClass::Clean, .. } => (Class::Clean, Reason::Network),
                                Verdict::Answer { confidence, .. } if confidence < min_confidence => {
                                    (Class::Clean, Reason::LowConfidence)
                                }
                                Verdict::Answer { class: NetworkClass::Spam, .. } => (Class::Spam, Reason::Network),
                                Verdict::Answer { class: NetworkClass::Phish, .. } => (Class::Phish, Reason::Network),
                            }
                        };
                        assert_eq!((class, reason), expected, "{observed:?} {rules:?} {verdict:?} {min_confidence}");
                        // Local rules never need the network.
                        if let Some(local) = classify_local(&observed, rules) {
                            assert_eq!(local, expected);
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 32 * 4 * 8 * 2);
    }

    #[test]
    fn action_matrix() {
        for spam in ActionKind::ALL {
            for phish in ActionKind::ALL {
                for mark_read in [false, true] {
                    for subject in [None, Some("Hello"), Some("[SPAM] Hello")] {
                        let p = policy(spam, phish, mark_read);
                        assert_eq!(decide(Class::Clean, subject, &p), Action::Leave);
                        assert_eq!(decide(Class::Deferred, subject, &p), Action::Defer);
                        for (class, kind) in [(Class::Spam, spam), (Class::Phish, phish)] {
                            let action = decide(class, subject, &p);
                            let expected = match kind {
                                ActionKind::None => Action::Leave,
                                ActionKind::SpamFolder => Action::Move {
                                    destination: Destination::Spam("Junk".into()),
                                    create: true,
                                    mark_read,
                                },
                                ActionKind::Folder => Action::Move {
                                    destination: Destination::Existing("Quarantine".into()),
                                    create: false,
                                    mark_read,
                                },
                                ActionKind::Trash => Action::Move {
                                    destination: Destination::Trash(String::new()),
                                    create: true,
                                    mark_read,
                                },
                                ActionKind::Tag if subject == Some("[SPAM] Hello") => Action::Leave,
                                ActionKind::Tag => Action::Tag { prefix: "[SPAM]".into(), mark_read },
                                ActionKind::Delete => Action::Delete,
                            };
                            assert_eq!(action, expected, "{class:?} {kind:?} {mark_read} {subject:?}");
                        }
                    }
                }
            }
        }
    }
}
