//! What runs beside the filter: the milter, the console, activation,
//! notices to the postmaster and reports.

use super::*;

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

    pub(super) fn parse_mode(&self) -> Option<u32> {
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
