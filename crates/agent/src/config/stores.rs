//! The mail store (Maildir or IMAP) and where the users come from.

use super::*;

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
    /// Where the server has IMAP NOTIFY (RFC 5465), a spam folder in which
    /// nothing happened for this long is watched through the inbox's session
    /// (told of every change there) instead of a session of its own, which
    /// is opened again when something happens. 0: always keep it.
    pub spam_session_quiet_seconds: u64,
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
            spam_session_quiet_seconds: 120,
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
