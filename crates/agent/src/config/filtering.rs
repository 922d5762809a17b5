//! What is done with spam: the policy, the local model, retro-filing,
//! rules, whitelists, scans, users' feedback and rescans.

use super::*;

/// What happens to spam and phishing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Action for spam in users' mailboxes.
    pub spam_action: ActionKind,
    /// Action for phishing; `same` follows `spam_action`.
    pub phish_action: PhishAction,
    /// Action for spam in shared mailboxes (each may override it).
    pub shared_action: ActionKind,
    /// Spam folder (created when missing). Empty: the server's `\Junk`
    /// folder when it has one, otherwise `Spam`.
    pub spam_folder: String,
    /// The existing folder of the `folder` action (never created).
    pub folder: String,
    /// Trash folder. Empty: the server's `\Trash` folder, otherwise `Trash`.
    pub trash_folder: String,
    /// Prefix of the `tag` action.
    pub tag_prefix: String,
    /// Also mark filed spam as read.
    pub mark_read: bool,
    /// Verdicts below this confidence are treated as clean.
    pub min_confidence: f32,
    /// What the local model may do: `off`, `suggest` (score and log, never
    /// file) or `file` (file what it is sure of, once it has learnt enough).
    pub model: ModelMode,
}

/// What the local model may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelMode {
    /// Not used (nor trained).
    Off,
    /// Trained and asked; its opinion is logged and shown, never acted on.
    Suggest,
    /// Files spam above its calibrated threshold once it is ready.
    File,
}

impl ModelMode {
    /// The configured name.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelMode::Off => "off",
            ModelMode::Suggest => "suggest",
            ModelMode::File => "file",
        }
    }
}

/// The local model (`[model]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LearningConfig {
    /// A message left in the inbox this long (and read, see
    /// `ham_requires_read`) by a user who reports spam is learnt as ham.
    pub ham_after_minutes: u32,
    /// Only mail the server says was read counts as implicit ham (IMAP
    /// `\Seen`, Maildir flag `S`).
    pub ham_requires_read: bool,
    /// Examples of spam the model needs before it may file.
    pub min_spam: u32,
    /// Examples of ham the model needs before it may file.
    pub min_ham: u32,
    /// The model never files below this probability, whatever its
    /// calibration says.
    pub threshold_floor: f64,
    /// The estimated share of ham the model may file (its calibration
    /// target).
    pub target_false_positive_rate: f64,
    /// Examples one mailbox may hold per class; beyond, its oldest are
    /// forgotten (bounds what one user, mistaken or hostile, can teach).
    pub max_examples_per_mailbox: u32,
    /// The model's table: 2^bits counters of each class (memory is fixed:
    /// 4 × 2^bits bytes).
    pub table_bits: u8,
    /// When the agent first sees a mailbox, the model learns up to this
    /// many of the newest messages of its spam folder as spam and, if that
    /// folder held any, as many of the read messages older than
    /// `ham_after_minutes` in its inbox as ham (0: none).
    pub history_messages: u32,
}

impl Default for LearningConfig {
    fn default() -> LearningConfig {
        LearningConfig {
            ham_after_minutes: 24 * 60,
            ham_requires_read: true,
            min_spam: 20,
            min_ham: 50,
            threshold_floor: 0.98,
            target_false_positive_rate: 0.001,
            max_examples_per_mailbox: 1000,
            table_bits: 22,
            history_messages: 500,
        }
    }
}

/// Retro-filing (`[retro]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetroConfig {
    /// File mail already delivered (within `rescan.max_age_hours`) as soon
    /// as its campaign becomes known or the model becomes sure of it.
    pub enabled: bool,
    /// Recent deliveries remembered (fingerprint keys and model features,
    /// no content); the oldest are forgotten first.
    pub max_messages: u32,
    /// Ask the network for campaigns that became known (a long poll).
    pub network_changes: bool,
}

impl Default for RetroConfig {
    fn default() -> RetroConfig {
        RetroConfig { enabled: true, max_messages: 200_000, network_changes: true }
    }
}

impl Default for PolicyConfig {
    fn default() -> PolicyConfig {
        PolicyConfig {
            spam_action: ActionKind::SpamFolder,
            phish_action: PhishAction::Same,
            shared_action: ActionKind::SpamFolder,
            spam_folder: String::new(),
            folder: String::new(),
            trash_folder: String::new(),
            tag_prefix: "[SPAM]".into(),
            mark_read: false,
            min_confidence: 0.0,
            model: ModelMode::File,
        }
    }
}

/// The phishing action: its own, or the spam action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhishAction {
    /// Whatever `spam_action` says.
    Same,
    /// Its own action.
    #[serde(untagged)]
    Action(ActionKind),
}

/// Rules that need no network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// A message with an empty subject and an empty body is spam.
    pub empty_subject_and_body: bool,
    /// A message with an empty body is spam, whatever its subject.
    pub empty_body: bool,
}

impl Default for RulesConfig {
    fn default() -> RulesConfig {
        RulesConfig { empty_subject_and_body: true, empty_body: false }
    }
}

/// Server-wide whitelist entries from the configuration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WhitelistConfig {
    /// Entries (see `docs/configuration.md` for the forms).
    pub entries: Vec<String>,
    /// How many of the newest `Received` headers were written by your own
    /// servers; host and IP entries are matched against the hosts they name.
    pub received_headers: usize,
}

impl Default for WhitelistConfig {
    fn default() -> WhitelistConfig {
        WhitelistConfig { entries: Vec::new(), received_headers: 3 }
    }
}

/// Catching up with mail that arrived while the agent was not running.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanConfig {
    /// A mailbox seen for the first time has its messages younger than this
    /// checked (0: only mail arriving from now on).
    pub first_scan_hours: u32,
}

impl Default for ScanConfig {
    fn default() -> ScanConfig {
        ScanConfig { first_scan_hours: 12 }
    }
}

/// Users' feedback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedbackConfig {
    /// Report users' moves (and `$Junk`/`$NotJunk` keywords) to the
    /// network. Off: nothing leaves the agent; rescued messages are still
    /// never filed again. Each mailbox has its own switch too.
    pub enabled: bool,
}

impl Default for FeedbackConfig {
    fn default() -> FeedbackConfig {
        FeedbackConfig { enabled: true }
    }
}

/// The daily rescan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RescanConfig {
    /// Rescan every enabled mailbox once a day.
    pub enabled: bool,
    /// When, as `HH:MM` local time (e.g. just before the working day).
    pub time: String,
    /// The time zone of `time`: an IANA name (`Europe/Berlin`) or a POSIX
    /// TZ rule; empty: the system's.
    pub timezone: String,
    /// Messages delivered within this many hours are looked at again (the
    /// daily rescan, and `starling rescan` without `--hours`).
    pub max_age_hours: u32,
}

impl Default for RescanConfig {
    fn default() -> RescanConfig {
        RescanConfig { enabled: true, time: "06:30".into(), timezone: String::new(), max_age_hours: 12 }
    }
}
