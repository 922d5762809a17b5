//! The agent's configuration: one TOML file, every option with a default
//! (documented in `docs/configuration.md`), and every problem reported at
//! once with its key path.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::policy::ActionKind;
use crate::whitelist::Entry;

/// Everything the agent needs to run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Directory of the state database (`state.sqlite3`) and of files the
    /// agent keeps (the agent's own secret).
    pub state_dir: PathBuf,
    /// Where the mailboxes are: `maildir` or `imap`.
    pub mail_store: MailStoreKind,
    /// The network the agent asks.
    pub network: NetworkConfig,
    /// Local Maildir++ mailboxes.
    pub maildir: MaildirConfig,
    /// An IMAP server.
    pub imap: ImapConfig,
    /// Where the list of mailboxes comes from.
    pub users: UsersConfig,
    /// What happens to spam and phishing.
    pub policy: PolicyConfig,
    /// Rules that need no network.
    pub rules: RulesConfig,
    /// Senders never filtered (server-wide; more entries live in the state
    /// database, per user too).
    pub whitelist: WhitelistConfig,
    /// Catching up with mail that arrived while the agent was not running.
    pub scan: ScanConfig,
    /// Users' feedback: moves into and out of the spam folder reported to
    /// the network.
    pub feedback: FeedbackConfig,
    /// The daily rescan of young mail.
    pub rescan: RescanConfig,
    /// Shared (public) mailboxes, each with its own action.
    pub shared: Vec<SharedMailbox>,
    /// The web console and REST API.
    pub console: ConsoleConfig,
    /// Statistics reports and the "time and money saved" estimate.
    pub reports: ReportsConfig,
    /// The local model that learns from the organisation's own users.
    pub model: LearningConfig,
    /// Filing copies already delivered when their campaign becomes known.
    pub retro: RetroConfig,
    /// In-line filtering: a milter for Postfix and Sendmail.
    pub milter: MilterConfig,
    /// Activation codes: the key they are verified with.
    pub activation: ActivationConfig,
    /// Mail to the postmaster (subscription warnings and expiry).
    pub notify: NotifyConfig,
}

impl Default for AgentConfig {
    fn default() -> AgentConfig {
        AgentConfig {
            state_dir: PathBuf::from("starling-data"),
            mail_store: MailStoreKind::Maildir,
            network: NetworkConfig::default(),
            maildir: MaildirConfig::default(),
            imap: ImapConfig::default(),
            users: UsersConfig::default(),
            policy: PolicyConfig::default(),
            rules: RulesConfig::default(),
            whitelist: WhitelistConfig::default(),
            scan: ScanConfig::default(),
            feedback: FeedbackConfig::default(),
            rescan: RescanConfig::default(),
            shared: Vec::new(),
            console: ConsoleConfig::default(),
            reports: ReportsConfig::default(),
            model: LearningConfig::default(),
            retro: RetroConfig::default(),
            milter: MilterConfig::default(),
            activation: ActivationConfig::default(),
            notify: NotifyConfig::default(),
        }
    }
}

/// The kind of mail store the agent watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailStoreKind {
    /// Maildir++ directories on this machine.
    Maildir,
    /// An IMAP server, logged into on behalf of each mailbox.
    Imap,
}

/// The network the agent asks for verdicts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// The node's address (`http://…` or `https://…`); several nodes of one
    /// network, separated by commas, are asked in turn: the agent moves to
    /// the next when one does not answer.
    pub url: String,
    /// File holding the organisation's credential. Relative paths are
    /// relative to `state_dir`.
    pub credential_file: PathBuf,
    /// CA certificate (PEM) to trust for an `https://` node, besides the
    /// public roots.
    pub ca_file: Option<PathBuf>,
    /// Time allowed for one request.
    pub timeout_ms: u64,
    /// Messages per Check request.
    pub batch_size: usize,
    /// Ignored since requests go out as soon as a slot is free (kept so
    /// older files still load).
    pub batch_wait_ms: u64,
    /// How often the network is probed while it is unreachable.
    pub retry_seconds: u64,
    /// Messages waiting for a re-check at most; beyond it messages are left
    /// in place unchecked and an event (303) says how many.
    pub recheck_queue_max: u32,
    /// Queued messages older than this are dropped from the re-check queue.
    pub recheck_max_age_hours: u32,
    /// Allow `http://` to a node on another machine (the credential would
    /// cross the network in clear): only on a trusted private network.
    pub allow_plaintext_public: bool,
}

impl NetworkConfig {
    /// The nodes' addresses, in order.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.url.split(',').map(str::trim).filter(|u| !u.is_empty())
    }
}

impl Default for NetworkConfig {
    fn default() -> NetworkConfig {
        NetworkConfig {
            url: "http://127.0.0.1:7890".into(),
            credential_file: PathBuf::from("credential"),
            ca_file: None,
            timeout_ms: 5_000,
            batch_size: 64,
            batch_wait_ms: 10,
            retry_seconds: 30,
            recheck_queue_max: 100_000,
            recheck_max_age_hours: 24,
            allow_plaintext_public: false,
        }
    }
}

/// Local Maildir++ mailboxes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaildirConfig {
    /// The directory holding every user's Maildir.
    pub root: PathBuf,
    /// A user's Maildir below the root: `{user}`, `{domain}` and `{local}`
    /// are replaced (`{domain}/{local}/Maildir` for a virtual-domain layout).
    pub layout: String,
}

impl Default for MaildirConfig {
    fn default() -> MaildirConfig {
        MaildirConfig { root: PathBuf::from("mail"), layout: "{user}".into() }
    }
}

/// How the connection to the IMAP server is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImapSecurity {
    /// TLS from the first byte (port 993).
    Tls,
    /// Plain connection upgraded with STARTTLS (port 143).
    Starttls,
    /// No encryption: only for a server on this machine (loopback).
    Plain,
}

/// How the agent logs in on behalf of a mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImapAuth {
    /// `LOGIN user<separator>admin password` (Dovecot's master users).
    MasterUser,
    /// `AUTHENTICATE PLAIN` with the mailbox as authorisation identity and
    /// the admin as authentication identity (RFC 4616).
    SaslPlain,
}

/// An IMAP server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImapConfig {
    /// Host name or address of the server.
    pub host: String,
    /// Port; 0 means 993 with `tls`, 143 otherwise.
    pub port: u16,
    /// `tls`, `starttls` or `plain`.
    pub security: ImapSecurity,
    /// CA certificate (PEM) to trust besides the public roots.
    pub ca_file: Option<PathBuf>,
    /// `master-user` or `sasl-plain`.
    pub auth: ImapAuth,
    /// The administrative (master) user the agent authenticates as.
    pub admin_user: String,
    /// File holding the admin user's password (never on the command line).
    pub password_file: PathBuf,
    /// Separator between mailbox and master user (`master-user` only).
    pub master_separator: String,
    /// Time allowed for any one command or connection attempt.
    pub timeout_seconds: u64,
    /// IDLE is restarted after this long (servers drop idle clients after 30
    /// minutes, RFC 3501).
    pub idle_seconds: u64,
    /// First wait before reconnecting; doubles up to `reconnect_max_seconds`.
    pub reconnect_min_seconds: u64,
    /// Longest wait between reconnection attempts.
    pub reconnect_max_seconds: u64,
    /// Logins in progress at once (start-up of many mailboxes).
    pub max_concurrent_logins: usize,
    /// Messages are fingerprinted from at most this many bytes.
    pub max_message_bytes: u64,
}

impl Default for ImapConfig {
    fn default() -> ImapConfig {
        ImapConfig {
            host: "127.0.0.1".into(),
            port: 0,
            security: ImapSecurity::Tls,
            ca_file: None,
            auth: ImapAuth::MasterUser,
            admin_user: "starling".into(),
            password_file: PathBuf::from("imap-password"),
            master_separator: "*".into(),
            timeout_seconds: 30,
            idle_seconds: 25 * 60,
            reconnect_min_seconds: 1,
            reconnect_max_seconds: 300,
            max_concurrent_logins: 16,
            max_message_bytes: 10 << 20,
        }
    }
}

impl ImapConfig {
    /// The port actually used.
    pub fn port(&self) -> u16 {
        match (self.port, self.security) {
            (0, ImapSecurity::Tls) => 993,
            (0, _) => 143,
            (port, _) => port,
        }
    }
}

/// Where the list of mailboxes comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserSource {
    /// The Maildir root's directories (Maildir store only).
    Maildir,
    /// The output of `doveadm_command` (one user per line).
    Doveadm,
    /// A CSV file (`csv_file`): `user[,enabled]`.
    Csv,
    /// Only `users.list` and users added with `starling users add`.
    List,
}

/// Where the list of mailboxes comes from, and who is filtered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsersConfig {
    /// `maildir`, `doveadm`, `csv` or `list`.
    pub source: UserSource,
    /// The command listing users, for `doveadm`.
    pub doveadm_command: Vec<String>,
    /// The CSV file, for `csv`.
    pub csv_file: Option<PathBuf>,
    /// Users always known, whatever the source.
    pub list: Vec<String>,
    /// Mailboxes seen for the first time are filtered (set before the first
    /// start, everyone starts enabled).
    pub auto_enable: bool,
    /// How often the source is read again for new mailboxes.
    pub refresh_minutes: u64,
}

impl Default for UsersConfig {
    fn default() -> UsersConfig {
        UsersConfig {
            source: UserSource::Maildir,
            doveadm_command: vec!["doveadm".into(), "user".into(), "*".into()],
            csv_file: None,
            list: Vec::new(),
            auto_enable: true,
            refresh_minutes: 10,
        }
    }
}

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

/// What the milter does with spam (`[milter] spam_action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MilterAction {
    /// The mailbox's own policy: headers for filing (Sieve or the
    /// post-delivery agent), the subject tag in-line, delete as discard.
    Policy,
    /// Refuse the message with a 5xx reply (`reject_text`).
    Reject,
    /// Accept it into the MTA's hold queue (`postsuper -H` releases it).
    Quarantine,
}

/// What the milter does when it cannot decide (`[milter] on_error`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MilterOnError {
    /// Deliver the message untouched (the post-delivery agent checks it).
    Accept,
    /// Ask the sending server to try again later (4xx).
    Tempfail,
}

/// In-line filtering (`[milter]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MilterConfig {
    /// Run the milter with `starling serve` and `starling agent`
    /// (`starling milter` runs it regardless).
    pub enabled: bool,
    /// `host:port` (loopback by default) or `unix:/path/to/socket`.
    pub listen: String,
    /// The unix socket's mode, in octal.
    pub socket_mode: String,
    /// The unix socket's owner, `user:group` (names or numbers; either may
    /// be left out); empty: the agent's own.
    pub socket_owner: String,
    /// What happens to spam and phishing: `policy`, `reject`, `quarantine`.
    pub spam_action: MilterAction,
    /// The SMTP reply for `reject` (a 5xx code, an enhanced code and text).
    pub reject_text: String,
    /// The longest the network may take before the message is delivered
    /// unchecked (and checked after delivery).
    pub timeout_ms: u64,
    /// When the milter fails inside (not a network timeout): `accept` or
    /// `tempfail`.
    pub on_error: MilterOnError,
    /// How much of a message is read; the rest is not looked at.
    pub max_message_bytes: usize,
    /// MTA connections served at once; more are closed (the MTA applies its
    /// `milter_default_action`).
    pub max_connections: usize,
    /// Filter mail to recipients that are not known mailboxes, with the
    /// default policy (false: deliver it unchecked).
    pub unknown_recipients: bool,
}

impl Default for MilterConfig {
    fn default() -> MilterConfig {
        MilterConfig {
            enabled: false,
            listen: "127.0.0.1:8894".into(),
            socket_mode: "0660".into(),
            socket_owner: String::new(),
            spam_action: MilterAction::Policy,
            reject_text: "550 5.7.1 Message refused as spam".into(),
            timeout_ms: 300,
            on_error: MilterOnError::Accept,
            max_message_bytes: 10 * 1024 * 1024,
            max_connections: 256,
            unknown_recipients: false,
        }
    }
}

/// The web console and REST API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the console (and `/api/v1`, `/metrics`).
    pub enabled: bool,
    /// Address and port to listen on. Loopback by default; anything else
    /// should speak TLS (`tls_certificate`) or sit behind a TLS proxy.
    pub listen: String,
    /// A browser session ends after this many hours.
    pub session_hours: u32,
    /// Mark the session cookie `Secure` (when the console is reached over
    /// HTTPS through a proxy; always so with `tls_certificate`).
    pub secure_cookie: bool,
    /// Serve HTTPS with this certificate chain (PEM); empty: plain HTTP.
    pub tls_certificate: PathBuf,
    /// The certificate's private key (PEM).
    pub tls_private_key: PathBuf,
}

/// Activation codes (`[activation]`; see docs/activation.md).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActivationConfig {
    /// The network operator's public key (64 hex digits) that activation
    /// codes are verified with. Empty: the key the network presents at the
    /// first contact is pinned, and a different key later is refused.
    pub public_key: String,
}

/// Mail to the postmaster (`[notify]`): one message for each subscription
/// warning (14, 3 and 1 days before expiry) and one when filtering stops.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Send them.
    pub enabled: bool,
    /// The MTA that takes them (plain SMTP; the local MTA by default).
    pub smtp_host: String,
    /// Its port.
    pub smtp_port: u16,
    /// The sender address.
    pub from: String,
    /// The recipient: the postmaster.
    pub to: String,
    /// Subject of a warning. `{organisation}`, `{plan}`, `{days}`,
    /// `{expires}` and `{purchase_url}` are replaced in subjects and texts.
    pub warning_subject: String,
    /// Text of a warning (empty: the built-in text, in docs/activation.md).
    pub warning_text: String,
    /// Subject of the message sent when filtering stops.
    pub stopped_subject: String,
    /// Its text; `{reason}` is also replaced (empty: the built-in text).
    pub stopped_text: String,
}

impl Default for NotifyConfig {
    fn default() -> NotifyConfig {
        NotifyConfig {
            enabled: true,
            smtp_host: "localhost".into(),
            smtp_port: 25,
            from: "starling@localhost".into(),
            to: "postmaster@localhost".into(),
            warning_subject: "Starling: the {plan} of {organisation} ends in {days} day(s)".into(),
            warning_text: String::new(),
            stopped_subject: "Starling stopped filtering the mail of {organisation}".into(),
            stopped_text: String::new(),
        }
    }
}

/// Where the milter listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MilterListen {
    /// A TCP address.
    Tcp(std::net::SocketAddr),
    /// A unix socket.
    Unix(PathBuf),
}

impl MilterConfig {
    /// The parsed `listen` setting.
    pub fn listen_address(&self) -> Result<MilterListen, String> {
        if let Some(path) = self.listen.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!("a unix socket needs an absolute path, got {path:?}"));
            }
            return Ok(MilterListen::Unix(PathBuf::from(path)));
        }
        let address: std::net::SocketAddr = self
            .listen
            .parse()
            .map_err(|_| format!("must be host:port (an IP address) or unix:/path, got {:?}", self.listen))?;
        Ok(MilterListen::Tcp(address))
    }

    /// The socket mode as a number (the default's when invalid, which
    /// `problems` reports).
    pub fn mode(&self) -> u32 {
        self.parse_mode().unwrap_or(0o660)
    }

    fn parse_mode(&self) -> Option<u32> {
        u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8).ok().filter(|m| *m <= 0o777)
    }
}

impl ConsoleConfig {
    /// Whether the console speaks HTTPS itself.
    pub fn tls(&self) -> bool {
        !self.tls_certificate.as_os_str().is_empty()
    }
}

impl Default for ConsoleConfig {
    fn default() -> ConsoleConfig {
        ConsoleConfig {
            enabled: true,
            listen: "127.0.0.1:8025".into(),
            session_hours: 12,
            secure_cookie: false,
            tls_certificate: PathBuf::new(),
            tls_private_key: PathBuf::new(),
        }
    }
}

/// Statistics reports and the "time and money saved" estimate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportsConfig {
    /// Where scheduled reports are written (relative: in `state_dir`).
    pub dir: PathBuf,
    /// Write a report of the previous month (by day) on the 1st.
    pub monthly: bool,
    /// Write the last 30 days (by day) and the last 24 hours (by hour)
    /// every day.
    pub daily: bool,
    /// When the scheduled reports are written, `HH:MM` in `rescan.timezone`.
    pub time: String,
    /// Seconds a person spends on one spam message the agent filed for
    /// them (seeing, judging, deleting it).
    pub seconds_per_spam: u32,
    /// What an hour of a person's time costs.
    pub hourly_cost: f64,
    /// The currency of `hourly_cost` (a code or symbol).
    pub currency: String,
    /// How many days each mailbox's hourly counters are kept (the per-user
    /// views need the last 31); 0 keeps them for ever. The organisation's
    /// totals per hour are kept regardless (8,760 rows a year).
    pub user_statistics_days: u32,
}

impl Default for ReportsConfig {
    fn default() -> ReportsConfig {
        ReportsConfig {
            dir: PathBuf::from("reports"),
            monthly: true,
            daily: true,
            time: "00:15".into(),
            seconds_per_spam: 8,
            hourly_cost: 40.0,
            currency: "EUR".into(),
            user_statistics_days: 40,
        }
    }
}

/// A shared (public) mailbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedMailbox {
    /// The account holding it: an IMAP user, or a directory below the
    /// Maildir root.
    pub account: String,
    /// The folder watched in that account.
    #[serde(default = "inbox")]
    pub folder: String,
    /// Its action; absent: `policy.shared_action`.
    #[serde(default)]
    pub action: Option<ActionKind>,
    /// Its spam folder; empty: as `policy.spam_folder`.
    #[serde(default)]
    pub spam_folder: String,
}

fn inbox() -> String {
    "INBOX".into()
}

impl AgentConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<AgentConfig, Vec<String>> {
        let text = std::fs::read_to_string(path).map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
        AgentConfig::from_toml(&text)
    }

    /// Parses and checks a configuration text: every problem at once.
    pub fn from_toml(text: &str) -> Result<AgentConfig, Vec<String>> {
        let config: AgentConfig = match parse_all_problems(text) {
            Ok(config) => config,
            Err(mut problems) => {
                // Check what remains without the keys already found wrong,
                // so that one run lists every problem.
                if let Some(rest) = without_keys(text, &problems)
                    && let Ok(config) = rest.try_into::<AgentConfig>()
                {
                    problems.extend(config.problems());
                }
                return Err(problems);
            }
        };
        let problems = config.problems();
        if problems.is_empty() { Ok(config) } else { Err(problems) }
    }

    /// `path` resolved against `state_dir` when relative.
    pub fn in_state_dir(&self, path: &Path) -> PathBuf {
        if path.is_absolute() { path.to_owned() } else { self.state_dir.join(path) }
    }

    /// Everything wrong with this configuration, each with its key path.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.state_dir.as_os_str().is_empty() {
            problems.push("state_dir: must not be empty".into());
        }
        self.network_problems(&mut problems);
        self.maildir_problems(&mut problems);
        self.schedules_problems(&mut problems);
        self.console_problems(&mut problems);
        self.model_problems(&mut problems);
        self.notify_problems(&mut problems);
        self.milter_problems(&mut problems);
        self.retention_problems(&mut problems);
        self.imap_problems(&mut problems);
        self.users_problems(&mut problems);
        self.policy_problems(&mut problems);
        problems
    }

    /// The `[network]` section.
    fn network_problems(&self, problems: &mut Vec<String>) {
        let n = &self.network;
        if n.urls().next().is_none() {
            problems.push("network.url: must name a node".into());
        }
        for url in n.urls() {
            if !(url.starts_with("http://") || url.starts_with("https://")) && url.contains("://") {
                problems.push(format!("network.url: must be http:// or https://, got {url}"));
            }
        }
        for host in n.urls().filter_map(plaintext_host) {
            if is_loopback_host(host) || n.allow_plaintext_public {
                continue;
            }
            problems.push(format!(
                "network.url: http:// to {host} would send the organisation's credential in clear; use https:// \
                 (or set network.allow_plaintext_public = true on a trusted private network)"
            ));
        }
        if n.timeout_ms < 100 {
            problems.push(format!("network.timeout_ms: must be at least 100, got {}", n.timeout_ms));
        }
        if n.batch_size == 0 || n.batch_size > 1024 {
            problems.push(format!("network.batch_size: must be 1..=1024, got {}", n.batch_size));
        }
        if n.retry_seconds == 0 {
            problems.push("network.retry_seconds: must be at least 1".into());
        }
    }

    /// The `[maildir]` section, when Maildir is the store.
    fn maildir_problems(&self, problems: &mut Vec<String>) {
        if self.mail_store == MailStoreKind::Maildir {
            let layout = &self.maildir.layout;
            if !(layout.contains("{user}") || (layout.contains("{domain}") && layout.contains("{local}"))) {
                problems.push(format!(
                    "maildir.layout: must contain {{user}}, or both {{domain}} and {{local}}, got {layout:?}"
                ));
            }
            if layout.starts_with('/') || layout.split('/').any(|p| p == "..") {
                problems.push(format!("maildir.layout: must be a relative path without '..', got {layout:?}"));
            }
        }
    }

    /// The rescan and report schedules and the `[reports]` figures.
    fn schedules_problems(&self, problems: &mut Vec<String>) {
        if let Err(e) = crate::schedule::Daily::parse(&self.rescan.time, &self.rescan.timezone) {
            let key = if matches!(e, crate::schedule::ScheduleError::Time(_)) { "time" } else { "timezone" };
            problems.push(format!("rescan.{key}: {e}"));
        }
        if let Err(e) = crate::schedule::Daily::parse(&self.reports.time, &self.rescan.timezone)
            && matches!(e, crate::schedule::ScheduleError::Time(_))
        {
            problems.push(format!("reports.time: {e}"));
        }
        if !(self.reports.hourly_cost.is_finite() && self.reports.hourly_cost >= 0.0) {
            problems.push(format!("reports.hourly_cost: must be 0 or more, got {}", self.reports.hourly_cost));
        }
        if self.reports.seconds_per_spam > 3600 {
            problems.push(format!("reports.seconds_per_spam: must be 0..=3600, got {}", self.reports.seconds_per_spam));
        }
        if (1..31).contains(&self.reports.user_statistics_days) {
            problems.push(format!(
                "reports.user_statistics_days: 0 (keep for ever) or at least 31 (the per-user views show 30 days), got {}",
                self.reports.user_statistics_days
            ));
        }
        if self.reports.currency.chars().count() > 8 || self.reports.currency.chars().any(char::is_control) {
            problems.push("reports.currency: at most 8 characters".into());
        }
    }

    /// The `[console]` section.
    fn console_problems(&self, problems: &mut Vec<String>) {
        if self.console.listen.parse::<std::net::SocketAddr>().is_err() {
            problems.push(format!(
                "console.listen: must be an address and port such as 127.0.0.1:8025, got {:?}",
                self.console.listen
            ));
        }
        if self.console.tls_certificate.as_os_str().is_empty() != self.console.tls_private_key.as_os_str().is_empty() {
            problems.push("console.tls_certificate, console.tls_private_key: give both or neither".into());
        }
        if self.console.session_hours == 0 || self.console.session_hours > 24 * 30 {
            problems.push(format!("console.session_hours: must be 1..=720, got {}", self.console.session_hours));
        }
    }

    /// The `[model]` and `[activation]` sections.
    fn model_problems(&self, problems: &mut Vec<String>) {
        let m = &self.model;
        if !(0.5..1.0).contains(&m.threshold_floor) {
            problems
                .push(format!("model.threshold_floor: must be at least 0.5 and below 1, got {}", m.threshold_floor));
        }
        if !(m.target_false_positive_rate > 0.0 && m.target_false_positive_rate < 0.1) {
            problems.push(format!(
                "model.target_false_positive_rate: must be above 0 and below 0.1, got {}",
                m.target_false_positive_rate
            ));
        }
        if !(16..=26).contains(&m.table_bits) {
            problems.push(format!("model.table_bits: must be 16..=26, got {}", m.table_bits));
        }
        if m.ham_after_minutes == 0 {
            problems.push("model.ham_after_minutes: must be at least 1".into());
        }
        if !self.activation.public_key.is_empty()
            && starling_proto::activation::parse_public_key(&self.activation.public_key).is_none()
        {
            problems.push("activation.public_key: must be 64 hexadecimal digits (or empty)".into());
        }
    }

    /// The `[notify]` section.
    fn notify_problems(&self, problems: &mut Vec<String>) {
        let nt = &self.notify;
        if nt.enabled {
            if nt.smtp_host.is_empty() || nt.smtp_port == 0 {
                problems.push("notify.smtp_host, notify.smtp_port: a host and a port are needed".into());
            }
            for (key, value) in [("notify.from", &nt.from), ("notify.to", &nt.to)] {
                if value.parse::<lettre::Address>().is_err() {
                    problems
                        .push(format!("{key}: must be a mail address such as postmaster@example.org, got {value:?}"));
                }
            }
            for (key, value) in
                [("notify.warning_subject", &nt.warning_subject), ("notify.stopped_subject", &nt.stopped_subject)]
            {
                if value.contains(['\r', '\n']) {
                    problems.push(format!("{key}: must be one line"));
                }
            }
        }
    }

    /// The `[milter]` section.
    fn milter_problems(&self, problems: &mut Vec<String>) {
        let mt = &self.milter;
        if let Err(e) = mt.listen_address() {
            problems.push(format!("milter.listen: {e}"));
        }
        if mt.parse_mode().is_none() {
            problems.push(format!("milter.socket_mode: must be an octal mode such as 0660, got {:?}", mt.socket_mode));
        }
        let reply = mt.reject_text.as_bytes();
        if reply.len() < 5
            || reply[0] != b'5'
            || !reply[1..3].iter().all(u8::is_ascii_digit)
            || reply[3] != b' '
            || mt.reject_text.contains(['\r', '\n', '%'])
        {
            problems.push(format!(
                "milter.reject_text: must be one line starting with a 5xx code and a space, without %, got {:?}",
                mt.reject_text
            ));
        }
        if mt.timeout_ms == 0 || mt.timeout_ms > 60_000 {
            problems.push(format!("milter.timeout_ms: must be 1..=60000, got {}", mt.timeout_ms));
        }
        if mt.max_message_bytes < 4096 {
            problems.push(format!("milter.max_message_bytes: must be at least 4096, got {}", mt.max_message_bytes));
        }
        if mt.max_connections == 0 {
            problems.push("milter.max_connections: must be at least 1".into());
        }
    }

    /// What is remembered: `[retro]` and `rescan.max_age_hours`.
    fn retention_problems(&self, problems: &mut Vec<String>) {
        if self.retro.max_messages == 0 {
            problems.push("retro.max_messages: must be at least 1".into());
        }
        if self.rescan.max_age_hours == 0 || self.rescan.max_age_hours > 24 * 30 {
            problems.push(format!("rescan.max_age_hours: must be 1..=720, got {}", self.rescan.max_age_hours));
        }
    }

    /// The `[imap]` section.
    fn imap_problems(&self, problems: &mut Vec<String>) {
        let i = &self.imap;
        if self.mail_store == MailStoreKind::Imap {
            if i.host.is_empty() {
                problems.push("imap.host: must not be empty".into());
            }
            if i.security == ImapSecurity::Plain && !is_loopback_host(&i.host) {
                problems.push(format!(
                    "imap.security: plain is only allowed for a server on this machine, not {}; use tls or starttls",
                    i.host
                ));
            }
            if i.admin_user.is_empty() {
                problems.push("imap.admin_user: must not be empty".into());
            }
            if i.auth == ImapAuth::MasterUser && i.master_separator.is_empty() {
                problems.push("imap.master_separator: must not be empty with auth = \"master-user\"".into());
            }
            if self.users.source == UserSource::Maildir {
                problems.push(
                    "users.source: maildir needs mail_store = \"maildir\"; use doveadm, csv or list with imap".into(),
                );
            }
        }
        if i.timeout_seconds == 0 {
            problems.push("imap.timeout_seconds: must be at least 1".into());
        }
        if i.idle_seconds < 60 || i.idle_seconds > 29 * 60 {
            problems.push(format!("imap.idle_seconds: must be 60..=1740, got {}", i.idle_seconds));
        }
        if i.reconnect_min_seconds == 0 || i.reconnect_min_seconds > i.reconnect_max_seconds {
            problems.push(format!(
                "imap.reconnect_min_seconds: must be at least 1 and at most reconnect_max_seconds ({}), got {}",
                i.reconnect_max_seconds, i.reconnect_min_seconds
            ));
        }
        if i.max_concurrent_logins == 0 {
            problems.push("imap.max_concurrent_logins: must be at least 1".into());
        }
        if i.max_message_bytes < 64 << 10 {
            problems.push(format!("imap.max_message_bytes: must be at least 65536, got {}", i.max_message_bytes));
        }
    }

    /// The `[users]` section.
    fn users_problems(&self, problems: &mut Vec<String>) {
        let u = &self.users;
        match u.source {
            UserSource::Doveadm if u.doveadm_command.is_empty() => {
                problems.push("users.doveadm_command: must not be empty with source = \"doveadm\"".into())
            }
            UserSource::Csv if u.csv_file.is_none() => {
                problems.push("users.csv_file: required with source = \"csv\"".into())
            }
            _ => {}
        }
        for (index, user) in u.list.iter().enumerate() {
            if let Err(e) = check_name(user) {
                problems.push(format!("users.list[{index}]: {e}"));
            }
        }
        if u.refresh_minutes == 0 {
            problems.push("users.refresh_minutes: must be at least 1".into());
        }
    }

    /// The `[policy]`, `[whitelist]` and `[[shared]]` sections.
    fn policy_problems(&self, problems: &mut Vec<String>) {
        let p = &self.policy;
        let actions = [
            ("policy.spam_action", Some(p.spam_action)),
            ("policy.phish_action", if let PhishAction::Action(a) = p.phish_action { Some(a) } else { None }),
            ("policy.shared_action", Some(p.shared_action)),
        ];
        for (key, action) in actions {
            if action == Some(ActionKind::Folder) && p.folder.trim().is_empty() {
                problems.push(format!("{key}: the folder action needs policy.folder"));
            }
        }
        for (key, name) in [
            ("policy.spam_folder", &p.spam_folder),
            ("policy.folder", &p.folder),
            ("policy.trash_folder", &p.trash_folder),
        ] {
            if let Err(e) = check_folder_name(name) {
                problems.push(format!("{key}: {e}"));
            }
        }
        if p.tag_prefix.contains(['\r', '\n']) {
            problems.push("policy.tag_prefix: must be one line".into());
        }
        if !(0.0..=1.0).contains(&p.min_confidence) {
            problems.push(format!("policy.min_confidence: must be between 0 and 1, got {}", p.min_confidence));
        }
        for (index, entry) in self.whitelist.entries.iter().enumerate() {
            if let Err(e) = Entry::parse(entry) {
                problems.push(format!("whitelist.entries[{index}]: {e}"));
            }
        }
        if self.whitelist.received_headers > 20 {
            problems.push(format!(
                "whitelist.received_headers: must be at most 20, got {}",
                self.whitelist.received_headers
            ));
        }
        for (index, shared) in self.shared.iter().enumerate() {
            if shared.account.is_empty() || shared.account.contains(['/', '\\']) || shared.account == ".." {
                problems.push(format!("shared[{index}].account: must be an account name, got {:?}", shared.account));
            }
            if let Err(e) = check_folder_name(&shared.folder) {
                problems.push(format!("shared[{index}].folder: {e}"));
            }
            if let Err(e) = check_folder_name(&shared.spam_folder) {
                problems.push(format!("shared[{index}].spam_folder: {e}"));
            }
            if shared.action == Some(ActionKind::Folder) && p.folder.trim().is_empty() {
                problems.push(format!("shared[{index}].action: the folder action needs policy.folder"));
            }
        }
    }
}

/// A folder name must be usable on IMAP and as a Maildir++ folder.
fn check_folder_name(name: &str) -> Result<(), String> {
    if name.chars().any(|c| c.is_control()) || name.contains('"') || name.contains('\\') {
        return Err(format!("{name:?} has control characters, quotes or backslashes"));
    }
    if name.split(['/', '.']).any(|p| p == "..") || name.starts_with('/') {
        return Err(format!("{name:?} must not be absolute or contain '..'"));
    }
    Ok(())
}

/// The host of a plain `http://` address (without port or brackets);
/// `None` for anything else. An address without a scheme is plain HTTP.
fn plaintext_host(url: &str) -> Option<&str> {
    if url.starts_with("https://") {
        return None;
    }
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next();
    }
    Some(authority.split(':').next().unwrap_or(authority))
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The configuration text as a table without the keys the problems name
/// (`a.b.c: …`); `None` when a problem names no removable key.
fn without_keys(text: &str, problems: &[String]) -> Option<toml::Table> {
    let mut table: toml::Table = text.parse().ok()?;
    for problem in problems {
        let (path, _) = problem.split_once(": ")?;
        let mut parts: Vec<&str> = path.split('.').collect();
        let last = parts.pop()?;
        let mut current = &mut table;
        for part in parts {
            current = current.get_mut(part)?.as_table_mut()?;
        }
        current.remove(last)?;
    }
    Some(table)
}

/// Parses a TOML text into `T`, reporting every key whose value is wrong
/// (unknown keys, wrong types, unknown variants), each with its key path —
/// not only the first one serde stops at.
///
/// Each key of the text is tried alone on top of `T`'s defaults; a key whose
/// value fails is narrowed down into its sub-keys the same way.
pub fn parse_all_problems<T>(text: &str) -> Result<T, Vec<String>>
where
    T: serde::de::DeserializeOwned + Serialize + Default,
{
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| vec![e.to_string().trim().to_owned()])?;
    let whole = toml::Value::Table(table);
    let whole_error = match whole.clone().try_into::<T>() {
        Ok(config) => return Ok(config),
        Err(e) => e,
    };
    let defaults = toml::Value::try_from(T::default()).map_err(|e| vec![format!("internal: {e}")])?;
    let mut problems = Vec::new();
    narrow::<T>(&defaults, &mut Vec::new(), &whole, &mut problems);
    if problems.is_empty() {
        problems.push(whole_error.message().trim().to_owned());
    }
    Err(problems)
}

fn narrow<T>(defaults: &toml::Value, path: &mut Vec<String>, value: &toml::Value, problems: &mut Vec<String>)
where
    T: serde::de::DeserializeOwned,
{
    let toml::Value::Table(table) = value else { return };
    for (key, sub) in table {
        path.push(key.clone());
        let mut trial = defaults.clone();
        if place(&mut trial, path, sub.clone())
            && let Err(error) = trial.try_into::<T>()
        {
            let before = problems.len();
            if sub.is_table() && lookup(defaults, path).is_some_and(toml::Value::is_table) {
                narrow::<T>(defaults, path, sub, problems);
            }
            if problems.len() == before {
                problems.push(format!("{}: {}", path.join("."), error.message().trim()));
            }
        }
        path.pop();
    }
}

/// Puts `value` at `path` in `root`; false when a parent is not a table.
fn place(root: &mut toml::Value, path: &[String], value: toml::Value) -> bool {
    let Some((last, parents)) = path.split_last() else { return false };
    let mut node = root;
    for key in parents {
        let toml::Value::Table(table) = node else { return false };
        node = table.entry(key.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    let toml::Value::Table(table) = node else { return false };
    table.insert(last.clone(), value);
    true
}

fn lookup<'v>(root: &'v toml::Value, path: &[String]) -> Option<&'v toml::Value> {
    path.iter().try_fold(root, |node, key| node.get(key))
}

/// Checks a mailbox (user) name: printable, no path separators, no IMAP
/// specials that would need quoting.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && name.chars().all(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '/' | '\\' | '"' | '*' | '%'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a usable mailbox name (no spaces, control characters, / \\ \" * % or leading dot)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(AgentConfig::default().problems(), Vec::<String>::new());
        assert_eq!(AgentConfig::from_toml("").unwrap(), AgentConfig::default());
    }

    #[test]
    fn a_credential_never_crosses_the_network_in_clear_unless_allowed() {
        let with = |url: &str, allow: bool| {
            let text = format!("[network]\nurl = {url:?}\nallow_plaintext_public = {allow}\n");
            AgentConfig::from_toml(&text).map(|_| ()).map_err(|p| p.join("; "))
        };
        for url in ["http://127.0.0.1:7890", "http://localhost:7890", "http://[::1]:7890/", "https://net.example.org"] {
            assert_eq!(with(url, false), Ok(()), "{url}");
        }
        for url in
            ["http://net.example.org:7890", "http://192.0.2.7", "http://[2001:db8::1]:7890", "http://u@10.0.0.1/"]
        {
            let refused = with(url, false).unwrap_err();
            assert!(refused.starts_with("network.url:") && refused.contains("in clear"), "{url}: {refused}");
            assert_eq!(with(url, true), Ok(()), "{url} when allowed");
        }
    }

    #[test]
    fn all_problems_are_reported_at_once_with_their_keys() {
        let text = r#"
            mail_store = "imap"
            [imap]
            host = "mail.example.com"
            security = "plain"
            idle_seconds = 5
            [network]
            batch_size = 0
            [policy]
            spam_action = "folder"
            min_confidence = 2.0
            [whitelist]
            entries = ["/(unclosed/"]
        "#;
        let problems = AgentConfig::from_toml(text).unwrap_err();
        for key in [
            "imap.security",
            "imap.idle_seconds",
            "network.batch_size",
            "policy.spam_action",
            "policy.min_confidence",
            "whitelist.entries[0]",
            "users.source",
        ] {
            assert!(problems.iter().any(|p| p.starts_with(key)), "{key} missing from {problems:?}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_all_reported_with_their_key() {
        let text = "mail_stor = 1\n[policy]\nspam_folder_name = \"x\"\nspam_action = \"shred\"\n[imap]\nport = \"x\"\n";
        let problems = AgentConfig::from_toml(text).unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        for (key, word) in [
            ("mail_stor:", "mail_stor"),
            ("policy.spam_folder_name:", "spam_folder_name"),
            ("policy.spam_action:", "shred"),
            ("imap.port:", "string"),
        ] {
            assert!(problems.iter().any(|p| p.starts_with(key) && p.contains(word)), "{key} missing from {problems:?}");
        }
    }

    #[test]
    fn syntax_errors_say_where() {
        let problems = AgentConfig::from_toml("[policy\n").unwrap_err();
        assert!(problems[0].contains("line 1"), "{problems:?}");
    }

    #[test]
    fn phish_action_is_same_or_an_action() {
        let c = AgentConfig::from_toml("[policy]\nphish_action = \"delete\"\n").unwrap();
        assert_eq!(c.policy.phish_action, PhishAction::Action(ActionKind::Delete));
        let c = AgentConfig::from_toml("[policy]\nphish_action = \"same\"\n").unwrap();
        assert_eq!(c.policy.phish_action, PhishAction::Same);
    }

    #[test]
    fn imap_port_follows_security() {
        let mut imap = ImapConfig::default();
        assert_eq!(imap.port(), 993);
        imap.security = ImapSecurity::Starttls;
        assert_eq!(imap.port(), 143);
        imap.port = 10143;
        assert_eq!(imap.port(), 10143);
    }
}
