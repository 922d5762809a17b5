//! The event catalogue and the emitter.
//!
//! Every significant thing the agent does or suffers is an [`Event`] of a
//! catalogued [`EventKind`]: a stable numeric id, a severity, and a text that
//! says what happened, the likely cause and what to do. Events go to the log
//! (with `event_id` as a field, so journald and JSON logs can filter on it)
//! and to the state database, where the console and `starling events` read
//! them. `docs/events.md` is generated from [`CATALOGUE`] and a test keeps it
//! so.
//!
//! Ids are grouped by hundreds: 1xx the agent itself, 2xx the mail store,
//! 3xx the network, 4xx single messages, 5xx state and configuration, 6xx
//! users, 7xx users' feedback and rescans, 8xx the console and reports,
//! 9xx in-line filtering (the milter).
//! An id is never reused for a different meaning.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How bad an event is (syslog levels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Normal operation worth recording.
    Info,
    /// Normal but significant.
    Notice,
    /// Something is degraded; mail is safe.
    Warning,
    /// Something failed; part of the work is not being done.
    Error,
    /// The agent cannot do its job.
    Critical,
}

impl Severity {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Notice => "notice",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    /// Parses a lower-case name.
    pub fn parse(name: &str) -> Option<Severity> {
        [Severity::Info, Severity::Notice, Severity::Warning, Severity::Error, Severity::Critical]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// A catalogued kind of event.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct EventKind {
    /// Stable numeric id.
    pub id: u16,
    /// Short stable name (`snake_case`).
    pub name: &'static str,
    /// Severity.
    pub severity: Severity,
    /// What happened (the event's own details follow it).
    pub text: &'static str,
    /// The likely cause.
    pub cause: &'static str,
    /// What to do.
    pub remedy: &'static str,
}

macro_rules! catalogue {
    ($($konst:ident = $id:literal $name:literal $severity:ident
        text: $text:literal cause: $cause:literal remedy: $remedy:literal;)*) => {
        $(
            #[doc = $text]
            pub const $konst: &EventKind = &EventKind {
                id: $id,
                name: $name,
                severity: Severity::$severity,
                text: $text,
                cause: $cause,
                remedy: $remedy,
            };
        )*
        /// Every event kind, by id.
        pub const CATALOGUE: &[&EventKind] = &[$($konst),*];
    };
}

catalogue! {
    AGENT_STARTED = 100 "agent_started" Info
        text: "The agent started."
        cause: "The service was started."
        remedy: "Nothing to do.";
    AGENT_STOPPED = 101 "agent_stopped" Info
        text: "The agent stopped."
        cause: "The service was asked to stop (signal or shutdown)."
        remedy: "Nothing to do, unless the stop was unexpected: then see the events before it.";
    EMBEDDED_NETWORK_STARTED = 102 "embedded_network_started" Info
        text: "The embedded network node started."
        cause: "`starling serve` runs its own network node for this organisation."
        remedy: "Nothing to do.";
    NEW_VERSION = 103 "new_version_available" Notice
        text: "A newer agent version is available."
        cause: "The network announces a newer release than the one running."
        remedy: "Plan an upgrade; the release notes say what changed.";
    ACTIVATION_INSTALLED = 104 "activation_installed" Notice
        text: "An activation code was installed."
        cause: "An administrator entered a code (console or `starling activate`), or the network delivered a renewal."
        remedy: "Nothing to do; the details say the plan, its expiry and its mailbox limit.";
    ACTIVATION_REFUSED = 105 "activation_refused" Error
        text: "An activation code was refused; the one installed before stays."
        cause: "The code was altered or cut in copying, issued by another network, for another organisation, expired or revoked (the details say which)."
        remedy: "Copy the whole code again, starting with STARLING1-; if it still fails, ask the vendor for a new one.";
    SUBSCRIPTION_ENDING = 106 "subscription_ending" Warning
        text: "The trial or subscription ends soon."
        cause: "Its expiry is 14, 3 or 1 days away; one mail goes to the postmaster each time."
        remedy: "Buy or renew a code (the details give the purchase address) and install it before it ends.";
    FILTERING_STOPPED = 107 "filtering_stopped" Critical
        text: "Filtering stopped: mail is delivered untouched."
        cause: "The trial or subscription expired, its code was revoked, or the operator disabled the organisation (the details say which). Queued re-checks were dropped; nothing was moved or lost."
        remedy: "Install a new activation code (console: Subscription, or `starling activate CODE`); filtering resumes at once.";
    FILTERING_RESUMED = 108 "filtering_resumed" Notice
        text: "Filtering resumed."
        cause: "A valid activation code was installed, or the network renewed or re-enabled the organisation."
        remedy: "Nothing to do. Mail that arrived meanwhile is looked at now, as after a restart.";
    MAILBOX_LIMIT = 109 "mailbox_limit_reached" Warning
        text: "More mailboxes are enabled than the plan allows; the newest ones beyond it are not filtered."
        cause: "The activation code allows fewer mailboxes than are enabled (the details name those left out)."
        remedy: "Disable mailboxes that need no filtering, or buy a code for more mailboxes.";
    NOTICE_MAIL_FAILED = 110 "notice_mail_failed" Error
        text: "The mail to the postmaster could not be sent; it is retried every 10 minutes."
        cause: "The MTA in `[notify] smtp_host`/`smtp_port` refused it or is unreachable (the details say why)."
        remedy: "Check `[notify]`, and that the MTA accepts mail from this host to `[notify] to`.";
    ACTIVATION_KEY_MISMATCH = 111 "activation_key_mismatch" Critical
        text: "The network presents another activation key than the one pinned; its codes are not accepted."
        cause: "The agent was pointed at another network, or someone is impersonating the network."
        remedy: "If the network changed on purpose, set `[activation] public_key` to the key its operator gives you (or delete `activation_key` from the state's meta table).";

    MAIL_STORE_UNREACHABLE = 200 "mail_store_unreachable" Error
        text: "Cannot connect to the mail server; the mailbox is not being filtered until it is back."
        cause: "The IMAP server is down, restarting, unreachable, or refusing connections (limits), or the TLS setup does not match."
        remedy: "Check that the server runs and listens at [imap] host and port, and the [imap] security setting. The agent retries with backoff on its own.";
    MAIL_STORE_RECONNECTED = 201 "mail_store_reconnected" Info
        text: "Connected to the mail server again."
        cause: "The server is reachable again after an outage."
        remedy: "Nothing to do; mail that arrived meanwhile is checked now.";
    AUTHENTICATION_FAILED = 202 "authentication_failed" Error
        text: "The mail server rejected the agent's login for a mailbox."
        cause: "Wrong admin user or password, a master user not configured on the server, or the mailbox does not exist there."
        remedy: "Check [imap] admin_user, password_file and auth against the server's master-user (or SASL authorisation) setup; try `doveadm auth test`.";
    FOLDER_MISSING = 203 "folder_missing" Warning
        text: "The folder of the configured action does not exist; the message was left where it was."
        cause: "The `folder` action only moves into an existing folder and never creates it."
        remedy: "Create the folder in the mailbox, or choose another action ([policy] folder, spam_action).";
    FOLDER_CREATED = 204 "folder_created" Info
        text: "Created a folder in a mailbox."
        cause: "The spam (or trash) folder was missing and the action creates it."
        remedy: "Nothing to do.";
    MAILDIR_ROOT_MISSING = 205 "maildir_root_missing" Error
        text: "The Maildir root does not exist or cannot be read; no mailbox is filtered."
        cause: "[maildir] root points to the wrong place, or the agent runs as a user without access to it."
        remedy: "Fix [maildir] root, or run the agent as the mail user. The agent looks again every minute.";
    WATCH_OVERFLOW = 206 "watch_overflow" Warning
        text: "The file system notification queue overflowed; the mailboxes are being scanned again."
        cause: "More mail arrived at once than the kernel's inotify queue holds (fs.inotify.max_queued_events)."
        remedy: "Nothing is lost: a scan catches up. If it happens often, raise fs.inotify.max_queued_events.";
    WATCH_FAILED = 207 "watch_failed" Error
        text: "Cannot watch a mailbox for new mail."
        cause: "The kernel's limit on watched directories is reached (fs.inotify.max_user_watches), or the directory is not readable."
        remedy: "Raise fs.inotify.max_user_watches (two watches per mailbox), or fix permissions; the mailbox is scanned every minute meanwhile.";
    SERVER_LACKS_MOVE = 208 "server_lacks_move" Notice
        text: "The mail server has no MOVE command; moves are done as COPY, then delete and expunge of exactly that message."
        cause: "The server does not advertise the MOVE extension (RFC 6851)."
        remedy: "Nothing to do; moves remain safe, they take two more commands.";
    SERVER_LACKS_UIDPLUS = 209 "server_lacks_uidplus" Warning
        text: "The mail server has neither MOVE nor UIDPLUS; filed messages are copied and flagged deleted but not expunged."
        cause: "Without UID EXPUNGE the agent cannot remove exactly one message without expunging the user's other deleted messages."
        remedy: "Enable MOVE or UIDPLUS on the server. Until then, clients show the originals as deleted until the user expunges.";
    MAIL_STORE_TIMEOUT = 210 "mail_store_timeout" Warning
        text: "The mail server did not answer in time; the connection is being reopened."
        cause: "The server is overloaded or the network between the agent and the server drops packets."
        remedy: "If it repeats, check the server's load and raise [imap] timeout_seconds.";
    MAIL_STORE_LIMIT = 211 "mail_store_limit" Error
        text: "The mail server refused more connections; some mailboxes are not being watched."
        cause: "The server limits connections per user, per IP or in total (Dovecot: mail_max_userip_connections, process_limit)."
        remedy: "Raise the server's limits: the agent keeps one connection per watched mailbox.";

    NETWORK_UNREACHABLE = 300 "network_unreachable" Error
        text: "Cannot reach the network; mail is left in place and queued for a re-check."
        cause: "The network node is down or unreachable, or a proxy or firewall blocks it."
        remedy: "Check [network] url and that the node runs. Nothing is lost: queued messages are checked when it is back.";
    NETWORK_REACHABLE = 301 "network_reachable" Info
        text: "The network is reachable again; queued messages are being re-checked."
        cause: "The outage ended."
        remedy: "Nothing to do.";
    NETWORK_CREDENTIAL_REJECTED = 302 "network_credential_rejected" Critical
        text: "The network rejected the organisation's credential; filtering by network verdict has stopped (mail flows untouched)."
        cause: "The credential is wrong, or the organisation is disabled, or its subscription or trial expired."
        remedy: "Check [network] credential_file; enter a new activation code if the subscription ended.";
    RECHECK_QUEUE_FULL = 303 "recheck_queue_full" Warning
        text: "The re-check queue is full; further messages are not queued."
        cause: "The network has been unreachable for a long time while mail kept arriving."
        remedy: "Restore the network; the daily rescan checks what was not queued. Raise [network] recheck_queue_max if needed.";
    NETWORK_RATE_LIMITED = 304 "network_rate_limited" Warning
        text: "The network asked the agent to slow down; checks are retried."
        cause: "The organisation sends more checks per second than its rate allows."
        remedy: "Ask the network operator for a higher rate, or lower [network] batch_size.";
    NETWORK_KEY_MISSING = 305 "network_key_missing" Error
        text: "The network's fingerprint key is not known yet; messages are queued until the network is reached."
        cause: "The agent has never reached the network since its state was created."
        remedy: "Make the network reachable once; the key is then kept in the state database.";

    ACTION_FAILED = 400 "action_failed" Error
        text: "Could not file a message; it stays where it was."
        cause: "The mail server refused the command, the folder is not writable, the disk is full, or the message vanished meanwhile."
        remedy: "See the details; the message is retried by the next rescan.";
    MESSAGE_UNREADABLE = 401 "message_unreadable" Warning
        text: "Could not read a message; it was left untouched."
        cause: "The message was moved or deleted before the agent read it, or the file or server returned an error."
        remedy: "Usually nothing: a user moved it first. If it repeats, check permissions and the server log.";
    MESSAGE_TOO_LARGE = 402 "message_too_large" Notice
        text: "A message is larger than the configured limit; it was checked from its beginning only, and is never tagged."
        cause: "Very large messages (big attachments)."
        remedy: "Raise [imap] max_message_bytes if such messages matter.";
    INTERRUPTED_ACTION_FINISHED = 403 "interrupted_action_finished" Notice
        text: "An action that a crash or stop interrupted was completed or rolled back; each message exists exactly once."
        cause: "The agent stopped between writing a tagged copy and removing the original."
        remedy: "Nothing to do.";

    STATE_ERROR = 500 "state_error" Critical
        text: "The state database failed."
        cause: "The disk is full, the file is not writable, or it is damaged."
        remedy: "Check free space and permissions of state_dir; restore the database from a backup if it is damaged.";
    CONFIG_INVALID = 501 "config_invalid" Critical
        text: "The configuration file is invalid; the agent did not start."
        cause: "A wrong key, type or value in the configuration file."
        remedy: "Fix every problem listed (each names its key); `starling agent --check-config` validates without starting.";

    SETTINGS_CHANGED = 502 "settings_changed" Notice
        text: "Settings were changed; they apply now."
        cause: "An administrator changed settings in the console or with `starling settings set` (the details name them)."
        remedy: "Nothing to do. Running mailbox tasks take a new action for their next messages; only a new spam or trash folder restarts them.";
    SETTINGS_REJECTED = 503 "settings_rejected" Error
        text: "The stored settings are invalid; the previous settings stay in effect."
        cause: "A setting stored in the state database does not fit the configuration file any more (for example after an upgrade or a file change)."
        remedy: "Open Settings in the console (or `starling settings get`) and correct or reset the settings named in the details.";

    MAILBOX_ADDED = 600 "mailbox_added" Info
        text: "A new mailbox was found."
        cause: "The user source lists a mailbox the agent did not know."
        remedy: "Nothing to do; it is filtered if users.auto_enable is on, otherwise enable it with `starling users enable`.";
    USER_SOURCE_FAILED = 601 "user_source_failed" Error
        text: "Cannot read the list of mailboxes; the known mailboxes stay as they were."
        cause: "The doveadm command failed, the CSV file is missing or malformed, or the Maildir root is unreadable."
        remedy: "Run the command or read the file by hand as the agent's user; fix [users].";
    MAILBOX_GONE = 602 "mailbox_gone" Notice
        text: "A mailbox is no longer listed by the user source; it is not watched any more."
        cause: "The user was deleted or renamed on the mail server."
        remedy: "Nothing to do; its statistics and settings are kept.";
    MAILBOX_DISABLED = 603 "mailbox_disabled" Info
        text: "A mailbox is no longer filtered: it was disabled; its mail is left alone from now on."
        cause: "`starling users disable` (or the console) turned filtering off for it."
        remedy: "Nothing to do; `starling users enable` turns it back on.";

    USER_REPORTED_SPAM = 700 "user_reported_spam" Info
        text: "A user reported spam: they put messages into the spam folder (or marked them junk) that the agent had not filed."
        cause: "Spam the network did not know yet; the report teaches it, for every organisation."
        remedy: "Nothing to do. Turn feedback off for a mailbox (`starling users feedback NAME off`) if its user files mail there for other reasons.";
    USER_RESCUED = 701 "user_rescued" Notice
        text: "A user rescued messages the agent had filed: they took them out of the spam folder (or marked them not junk). They are reported as not spam and never filed again for this user."
        cause: "A false positive: the network thought the message was spam."
        remedy: "Nothing to do; if one sender is rescued often, whitelist it (`starling whitelist add`).";
    USER_UNDID = 702 "user_undid_report" Info
        text: "A user took back an earlier move; the report it made is withdrawn."
        cause: "A message was moved into the spam folder and out again (or the reverse)."
        remedy: "Nothing to do.";
    FEEDBACK_NOT_SENT = 703 "feedback_not_sent" Warning
        text: "Users' reports could not be sent to the network; they are kept and sent when it answers."
        cause: "The network is unreachable, refuses the credential, or the state database failed."
        remedy: "See the reason; nothing is lost: the reports wait in the state database and are sent when the network answers.";

    RETRO_FILED = 720 "filed_after_delivery" Info
        text: "Messages already delivered were filed: their campaign became known, or the local model became sure of them."
        cause: "A user here or elsewhere on the network reported a copy, or the model learnt enough from this organisation's users (the detail says which, with the model's scores, thresholds and strongest feature ids)."
        remedy: "Nothing to do. A user who disagrees moves the message back, which is reported and never filed again.";
    RETRO_RESET = 721 "network_changes_missed" Notice
        text: "Some campaigns that became known on the network may have been missed for retro-filing."
        cause: "The network node restarted, or the agent was away longer than the node remembers changes."
        remedy: "Nothing to do: the daily rescan looks at the mail delivered meanwhile.";
    MODEL_REBUILT = 730 "model_rebuilt" Notice
        text: "The local model was rebuilt from its stored examples."
        cause: "Its snapshot was missing, unreadable or from another version, or `starling model retrain` asked for it."
        remedy: "Nothing to do; if it happens at every start, check the state directory's disk.";
    MODEL_NOT_SAVED = 731 "model_not_saved" Warning
        text: "The local model's snapshot could not be written."
        cause: "The state directory is full or not writable."
        remedy: "Free space in the state directory; nothing learnt is lost (the examples are in the state database).";
    MODEL_LEARNT_EXISTING = 732 "model_learnt_existing_mail" Info
        text: "The local model learnt from the mail a user already had: their spam folder as spam and, if it held any, the read mail kept in their inbox as ham."
        cause: "The agent saw the mailbox for the first time with the model on (`model.history_messages` above 0), or first started after an upgrade from a version without this; it happens once per mailbox."
        remedy: "Nothing to do; `starling model status` counts the examples by source.";
    MODEL_EXISTING_UNREAD = 733 "model_existing_mail_unread" Notice
        text: "The mail a user already had could not be read for the local model; it is tried again at the next start."
        cause: "The mail server was unreachable, refused the login or failed a command while the agent read the spam folder or the inbox (the details say which)."
        remedy: "Nothing to do if the server was only briefly away; otherwise see the mail store's own events. Filtering is not affected.";
    RESCAN_STARTED = 710 "rescan_started" Info
        text: "A rescan of a mailbox started."
        cause: "The daily rescan ([rescan] time), or one asked for with `starling rescan`."
        remedy: "Nothing to do; `starling rescan status` shows its progress.";
    RESCAN_FINISHED = 711 "rescan_finished" Info
        text: "A rescan of a mailbox finished: messages looked at again, and those filed because they became known as spam since delivery."
        cause: "The rescan ran to its end."
        remedy: "Nothing to do.";
    RESCAN_FAILED = 712 "rescan_failed" Warning
        text: "A rescan of a mailbox could not be done or was interrupted."
        cause: "The mailbox is not watched (disabled, unknown, not connected), or the connection to the mail server was lost."
        remedy: "See the reason; the next daily rescan tries again, or ask again with `starling rescan`.";

    CONSOLE_STARTED = 800 "console_started" Info
        text: "The web console and REST API are listening."
        cause: "The service started with [console] enabled."
        remedy: "Nothing to do. Open the address in the details in a browser.";
    ADMIN_CREATED = 801 "admin_created" Notice
        text: "An administrator account was created."
        cause: "First start (the initial `admin` account, its password written to a file in the state directory), or an administrator added one."
        remedy: "Log in and change the initial password; delete the password file afterwards.";
    LOGIN_FAILED = 802 "login_failed" Warning
        text: "A console login or API token was refused."
        cause: "A wrong name or password, an expired session, or a revoked token — or somebody guessing."
        remedy: "If it repeats for names you do not know, restrict who can reach [console] listen.";
    CONSOLE_FAILED = 803 "console_failed" Critical
        text: "The web console could not start; the agent goes on filtering without it."
        cause: "The [console] listen address is in use or not available on this machine."
        remedy: "Free the port or choose another [console] listen address, then restart.";
    ADMIN_CHANGED = 804 "admin_changed" Notice
        text: "An administrator account was removed or its role changed."
        cause: "An administrator removed the account or changed its role in the console, the API or the CLI."
        remedy: "Nothing to do if it was intended; the details say which account. Its sessions and tokens end when it is removed.";
    REPORT_WRITTEN = 810 "report_written" Info
        text: "A scheduled statistics report was written."
        cause: "The report schedule ([reports] daily, monthly, time)."
        remedy: "Nothing to do; download it from Reports in the console.";
    REPORT_FAILED = 811 "report_failed" Error
        text: "A scheduled statistics report could not be written."
        cause: "The reports directory cannot be written (permissions, a full disk) or the state database failed."
        remedy: "Check [reports] dir and the free space; the next schedule tries again.";

    MILTER_STARTED = 900 "milter_started" Info
        text: "The in-line filter (milter) is listening for the MTA."
        cause: "The service started with [milter] enabled, or `starling milter` was run."
        remedy: "Nothing to do. Point the MTA at the address in the details (Postfix: smtpd_milters).";
    MILTER_UNCHECKED = 901 "milter_unchecked" Warning
        text: "The in-line filter delivered mail unchecked; the post-delivery agent checks it in the mailbox instead."
        cause: "The network did not answer within [milter] timeout_ms, or it is unreachable, or its key is not known yet."
        remedy: "Nothing is lost. If it repeats, see the network events; raise [milter] timeout_ms only if the network is slow but up.";
    MILTER_FAILED = 902 "milter_failed" Critical
        text: "The in-line filter could not start; the MTA applies its milter_default_action."
        cause: "The [milter] listen address is in use or not available, or the socket's directory, mode or owner cannot be set."
        remedy: "Free the port or fix [milter] listen, socket_mode and socket_owner, then restart. Postfix's milter_default_action = accept keeps mail flowing meanwhile.";
    MILTER_ERROR = 903 "milter_error" Error
        text: "The in-line filter failed on a message and applied [milter] on_error."
        cause: "The state database failed, or an internal error (the details say which)."
        remedy: "See the details; with on_error = accept the message was delivered unmarked and is checked after delivery.";
}

/// Looks an event kind up by id.
pub fn by_id(id: u16) -> Option<&'static EventKind> {
    CATALOGUE.iter().copied().find(|kind| kind.id == id)
}

/// One occurrence of an event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// Unix seconds.
    pub at: i64,
    /// Catalogue id.
    pub id: u16,
    /// Catalogue name.
    pub name: &'static str,
    /// Severity.
    pub severity: Severity,
    /// The mailbox concerned, if any.
    pub mailbox: Option<String>,
    /// The catalogue text followed by this occurrence's details.
    pub text: String,
}

/// Where events are stored besides the log.
pub trait EventSink: Send + Sync {
    /// Stores one event; never blocks for long, never fails loudly.
    fn store(&self, event: &Event);
}

/// Emits events to the log and a sink, folding repeats: the same event for
/// the same mailbox within [`Events::REPEAT_WINDOW`] is counted, not stored
/// again, and the count is told with the next one stored.
#[derive(Clone)]
pub struct Events {
    inner: Arc<Inner>,
}

/// (event id, mailbox) → (when last stored, repeats folded since).
type Recent = HashMap<(u16, Option<String>), (Instant, u32)>;

struct Inner {
    sink: Option<Box<dyn EventSink>>,
    recent: Mutex<Recent>,
}

impl Events {
    /// Repeats of an event within this window are folded.
    pub const REPEAT_WINDOW: Duration = Duration::from_secs(300);

    /// An emitter storing into `sink`.
    pub fn new(sink: Option<Box<dyn EventSink>>) -> Events {
        Events { inner: Arc::new(Inner { sink, recent: Mutex::new(HashMap::new()) }) }
    }

    /// An emitter that only logs.
    pub fn log_only() -> Events {
        Events::new(None)
    }

    /// Emits `kind` about `mailbox` with `details`.
    pub fn emit(&self, kind: &'static EventKind, mailbox: Option<&str>, details: impl AsRef<str>) {
        let details = details.as_ref();
        let key = (kind.id, mailbox.map(str::to_owned));
        let repeats = {
            let mut recent = self.inner.recent.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if recent.len() > 10_000 {
                recent.retain(|_, (at, _)| now.duration_since(*at) < Events::REPEAT_WINDOW);
            }
            match recent.get_mut(&key) {
                Some((at, count)) if now.duration_since(*at) < Events::REPEAT_WINDOW => {
                    *count += 1;
                    tracing::debug!(
                        event_id = kind.id,
                        event = kind.name,
                        mailbox,
                        "{} {details} (repeated)",
                        kind.text
                    );
                    return;
                }
                Some(entry) => {
                    let folded = entry.1;
                    *entry = (now, 0);
                    folded
                }
                None => {
                    recent.insert(key, (now, 0));
                    0
                }
            }
        };
        let mut text = kind.text.to_owned();
        if !details.is_empty() {
            let _ = write!(text, " {details}");
        }
        if repeats > 0 {
            let _ = write!(
                text,
                " (also {repeats} times in the previous {} minutes)",
                Events::REPEAT_WINDOW.as_secs() / 60
            );
        }
        let event = Event {
            at: jiff::Timestamp::now().as_second(),
            id: kind.id,
            name: kind.name,
            severity: kind.severity,
            mailbox: mailbox.map(str::to_owned),
            text,
        };
        log(&event);
        if let Some(sink) = &self.inner.sink {
            sink.store(&event);
        }
    }

    /// Forgets folded repeats of `kind` for `mailbox`, so that the next
    /// occurrence is stored at once (after a recovery, say).
    pub fn reset(&self, kind: &'static EventKind, mailbox: Option<&str>) {
        let mut recent = self.inner.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.remove(&(kind.id, mailbox.map(str::to_owned)));
    }
}

fn log(event: &Event) {
    let mailbox = event.mailbox.as_deref().unwrap_or("");
    match event.severity {
        Severity::Info | Severity::Notice => {
            tracing::info!(event_id = event.id, event = event.name, mailbox, "{}", event.text)
        }
        Severity::Warning => tracing::warn!(event_id = event.id, event = event.name, mailbox, "{}", event.text),
        Severity::Error | Severity::Critical => {
            tracing::error!(event_id = event.id, event = event.name, mailbox, "{}", event.text)
        }
    }
}

/// The catalogue as Markdown (the text of `docs/events.md` after its
/// introduction).
pub fn catalogue_markdown() -> String {
    let mut out = String::from("| id | name | severity | what happened | likely cause | what to do |\n");
    out.push_str("| ---: | --- | --- | --- | --- | --- |\n");
    for kind in CATALOGUE {
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} | {} | {} |",
            kind.id,
            kind.name,
            kind.severity.as_str(),
            kind.text,
            kind.cause,
            kind.remedy
        );
    }
    out
}

/// Every event worth acting on (warnings and worse), one section each, in
/// the catalogue's order: the part of `docs/guides/troubleshooting.md` that
/// maps each to its cause and remedy.
pub fn troubleshooting_markdown() -> String {
    let mut out = String::new();
    for kind in CATALOGUE.iter().filter(|k| k.severity >= Severity::Warning) {
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = write!(
            out,
            "### {} `{}` ({})\n\n{}\n\n- **Likely cause:** {}\n- **What to do:** {}\n- **Its occurrences:** `starling events --id {}`\n",
            kind.id,
            kind.name,
            kind.severity.as_str(),
            kind.text,
            kind.cause,
            kind.remedy,
            kind.id
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_are_unique_and_grouped() {
        let mut ids: Vec<u16> = CATALOGUE.iter().map(|k| k.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), CATALOGUE.len());
        let mut names: Vec<&str> = CATALOGUE.iter().map(|k| k.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOGUE.len());
        for kind in CATALOGUE {
            assert!((100..1000).contains(&kind.id), "{}", kind.name);
            assert!(
                kind.text.ends_with('.') && kind.cause.ends_with('.') && kind.remedy.ends_with('.'),
                "{}",
                kind.name
            );
            assert!(!kind.text.contains('|') && !kind.cause.contains('|') && !kind.remedy.contains('|'));
        }
    }

    struct Collect(Mutex<Vec<Event>>);
    impl EventSink for Arc<Collect> {
        fn store(&self, event: &Event) {
            self.0.lock().unwrap().push(event.clone());
        }
    }

    #[test]
    fn repeats_are_folded_per_mailbox() {
        let collected = Arc::new(Collect(Mutex::new(Vec::new())));
        let events = Events::new(Some(Box::new(collected.clone())));
        events.emit(MAIL_STORE_UNREACHABLE, Some("alice"), "connection refused");
        events.emit(MAIL_STORE_UNREACHABLE, Some("alice"), "connection refused");
        events.emit(MAIL_STORE_UNREACHABLE, Some("bob"), "connection refused");
        let stored = collected.0.lock().unwrap().clone();
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0].text, format!("{} connection refused", MAIL_STORE_UNREACHABLE.text));
        events.reset(MAIL_STORE_UNREACHABLE, Some("alice"));
        events.emit(MAIL_STORE_UNREACHABLE, Some("alice"), "again");
        assert_eq!(collected.0.lock().unwrap().len(), 3);
    }
}
