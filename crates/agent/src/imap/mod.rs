//! Mailboxes on an IMAP server.
//!
//! One task per watched folder keeps its own connection, logged in on
//! behalf of the mailbox (a master user, or SASL PLAIN with an
//! authorisation identity). It catches up from its cursor (the highest UID
//! handled, under the folder's UIDVALIDITY), then waits in IDLE and handles
//! new messages as they arrive. Messages are read with `BODY.PEEK[]` (never
//! marked read) up to a size limit. Every command has a timeout; a lost
//! connection is reopened with exponential backoff.
//!
//! A second task per mailbox watches its spam folder for users' feedback:
//! a message that arrives there without the agent having filed it is a spam
//! report; one that the agent filed and that leaves it for another folder
//! (not Trash) is a rescue. `$Junk` / `$NotJunk` keywords set by mail
//! clients are found with CONDSTORE (`CHANGEDSINCE`) and count the same.
//! The inbox task also runs rescans.
//!
//! Where the server has IMAP NOTIFY (RFC 5465), the inbox's session asks to
//! be told of every change in the spam folder's tree as well ([`SpamWatch`]),
//! and the spam task closes its own session once nothing happened there for
//! `imap.spam_session_quiet_seconds`: it keeps what it knows of the folder
//! (the messages present, the sub-folders' positions, the CONDSTORE
//! position) and opens a session again when told of a change, or every
//! [`QUIET_POLL`]. An idle mailbox then costs one session, not two.
//!
//! A move is `UID MOVE`, or `UID COPY` + `UID STORE +FLAGS (\Deleted)` +
//! `UID EXPUNGE` of exactly that UID when the server lacks MOVE. A tag
//! appends the rewritten message and removes the original only after the
//! append succeeded; a journal entry (written first, with the tag mark)
//! lets a restart finish or undo it.

mod actions;
mod connect;
mod existing;
mod idle;
mod inbox;
mod spam;

use connect::Capabilities;
pub use connect::{Server, Session, SessionError, Stream};

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use async_imap::types::{Fetch, Flag, NameAttribute, UnsolicitedResponse};
use futures::{FutureExt as _, TryStreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::config::{ImapAuth, ImapConfig, ImapSecurity};
use crate::events::{self, Events};
use crate::pipeline::MailboxContext;
use crate::policy::{Action, Destination};
use crate::process::{ActionError, Applied, Folder, Item, Moved, Pass, Processor, Work};
use crate::state::{self, Cursor};
use crate::tagging::Marker;

/// A tag's journal entry younger than this whose copy is not found may
/// belong to an APPEND the server is still completing (a stop in the middle
/// of it): it is kept and looked at again when mail arrives; an older one
/// is given up.
const RECENT_JOURNAL_SECONDS: i64 = 30;

/// Messages fetched per FETCH command, at most.
const FETCH_BATCH: usize = 256;

/// Bytes fetched per FETCH command, about (sizes are known beforehand).
const FETCH_BYTES: u64 = 16 << 20;

/// What a watcher does with its folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Filters new mail (the inbox, a shared folder), runs rescans.
    Filter,
    /// Watches the spam folder (and its sub-folders) for users' moves.
    /// The folder: the given name (created when `create`), or the server's
    /// `\Junk` folder when there is one.
    Spam {
        /// The spam folder's configured name.
        name: String,
        /// Create it when missing (the spam action files there).
        create: bool,
    },
}

/// How often the spam task looks into sub-folders of the spam folder, and
/// for messages that left it (besides when the server says some did).
const SPAM_POLL: Duration = Duration::from_secs(60);

/// Messages that left the spam folder looked for elsewhere per round.
const VANISHED_MAX: usize = 64;

/// The newest messages of a spam folder whose leaving is watched (their
/// Message-IDs are kept in memory): a rescue of an older one into a folder
/// other than the inbox goes unnoticed.
const PRESENT_MAX: usize = 2_000;

/// Unsolicited responses `async-imap` keeps between two looks (its
/// channel's capacity); more are dropped.
const UNSOLICITED_KEPT: usize = 100;

/// How often a quiet spam folder's task opens a session anyway: for what
/// NOTIFY may not tell (Dovecot tells of messages arriving and leaving, not
/// of a `$NotJunk` keyword set there).
const QUIET_POLL: Duration = Duration::from_secs(15 * 60);

/// What a mailbox's filter session and its spam task share: the spam
/// folder's name, whether a filter session has NOTIFY on it, and a wake-up
/// for the spam task when the server told of a change there.
#[derive(Debug, Default)]
pub struct SpamWatch {
    folder: std::sync::Mutex<Option<String>>,
    /// The spam folder became known: a filter session in IDLE asks for
    /// NOTIFY now rather than at its next wake.
    named: tokio::sync::Notify,
    notifying: std::sync::atomic::AtomicUsize,
    /// A filter session has NOTIFY now: a spam session waiting for nothing
    /// in particular may close.
    ready: tokio::sync::Notify,
    changed: tokio::sync::Notify,
}

impl SpamWatch {
    fn folder(&self) -> Option<String> {
        self.folder.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_folder(&self, folder: &str) {
        let mut known = self.folder.lock().unwrap_or_else(|e| e.into_inner());
        if known.as_deref() != Some(folder) {
            *known = Some(folder.to_owned());
            self.named.notify_one();
        }
    }

    /// Whether some filter session is told of changes in the spam folder.
    fn notifying(&self) -> bool {
        self.notifying.load(std::sync::atomic::Ordering::SeqCst) > 0
    }

    /// Something changed in the spam folder: the spam task looks. A change
    /// told while nobody waits is kept for the next wait, so none is lost.
    fn changed(&self) {
        self.changed.notify_one();
    }
}

/// A filter session's NOTIFY on the spam folder, counted while the session
/// lasts; when the last one ends, a quiet spam task is woken to keep a
/// session of its own again.
#[derive(Debug)]
struct Notifying {
    watch: Arc<SpamWatch>,
    folder: String,
}

impl Notifying {
    fn new(watch: Arc<SpamWatch>, folder: String) -> Notifying {
        if watch.notifying.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            watch.ready.notify_one();
        }
        Notifying { watch, folder }
    }
}

impl Drop for Notifying {
    fn drop(&mut self) {
        if self.watch.notifying.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            self.watch.changed();
        }
    }
}

/// What a spam task knows of its folder while it has no session: what it
/// would otherwise have to learn again, and could not (a message that left
/// meanwhile is only noticed against the list of those present before).
#[derive(Debug)]
pub struct Quiet {
    validity: u32,
    present: std::collections::BTreeMap<u32, String>,
    sub_last: HashMap<String, u32>,
    modseq: Option<u64>,
}

/// One watched folder of one mailbox.
pub struct Watcher {
    /// The server.
    pub server: Arc<Server>,
    /// The account logged into.
    pub account: String,
    /// The folder watched (for [`Role::Spam`]: resolved when connected).
    pub folder: String,
    /// What it does.
    pub role: Role,
    /// The mailbox as the pipeline sees it.
    pub context: MailboxContext,
    /// Shared processing.
    pub processor: Arc<Processor>,
    /// Messages younger than this are checked the first time.
    pub first_scan_hours: u32,
    /// Commands (re-check, stop).
    pub work: mpsc::Receiver<Work>,
    /// Events.
    pub events: Events,
    /// Whether the mail the mailbox already had was asked for (once per
    /// start: a look that failed is tried again at the next).
    pub existing_asked: bool,
    /// Shared by the mailbox's filter and spam tasks.
    pub spam_watch: Arc<SpamWatch>,
    /// A spam task without a session: what it knew of its folder.
    pub quiet: Option<Quiet>,
}

impl Watcher {
    /// The name of this task's connection in the live view.
    fn live_name(&self) -> String {
        match &self.role {
            Role::Filter => self.context.name.to_string(),
            Role::Spam { .. } => format!("{} (spam folder)", self.context.name),
        }
    }

    /// Runs until `stop` is cancelled or a `Stop` command arrives.
    pub async fn run(mut self, stop: CancellationToken) {
        let server = self.server.clone();
        let config = &server.config;
        let mut backoff = Duration::from_secs(config.reconnect_min_seconds);
        let max = Duration::from_secs(config.reconnect_max_seconds);
        let mut failing = false;
        loop {
            if stop.is_cancelled() {
                return;
            }
            // A response the IMAP parser cannot take may make it panic
            // (imap-proto 0.17 does on some non-UTF-8 text): that ends this
            // session like a lost connection, not the mailbox's task.
            let login = tokio::select! {
                result = AssertUnwindSafe(self.server.login(&self.account)).catch_unwind() => {
                    result.unwrap_or_else(|panic| Err(unreadable(panic.as_ref())))
                }
                () = stop.cancelled() => return,
            };
            let outcome = match login {
                Ok(session) => {
                    if failing {
                        self.events.emit(
                            events::MAIL_STORE_RECONNECTED,
                            None,
                            format!("{}:{}", config.host, config.port()),
                        );
                        failing = false;
                    }
                    backoff = Duration::from_secs(config.reconnect_min_seconds);
                    self.processor.live.connection(&self.live_name(), true, "");
                    let mut connected = Connected::new(session, &self);
                    match AssertUnwindSafe(connected.run(&mut self, &stop)).catch_unwind().await {
                        Ok(result) => {
                            connected.logout().await;
                            result
                        }
                        // The session's state is unknown: dropped, not
                        // logged out.
                        Err(panic) => Err(unreadable(panic.as_ref())),
                    }
                }
                Err(e) => Err(e),
            };
            let error = match outcome {
                Ok(()) | Err(SessionError::Closed) => return,
                Err(SessionError::Quiet) => {
                    self.processor.live.forget(&self.live_name());
                    if !self.wait_quietly(&stop).await {
                        return;
                    }
                    continue;
                }
                Err(error) => error,
            };
            self.processor.live.connection(&self.live_name(), false, &error.to_string());
            self.tell_lost(&error, failing);
            failing = true;
            tracing::debug!(mailbox = %self.context.name, "session ended: {error}; reconnecting in {backoff:?}");
            if !self.wait_to_reconnect(&error, backoff, &stop).await {
                return;
            }
            backoff = (backoff * 2).min(max);
        }
    }

    /// Says why a session ended; an unreachable server once per outage.
    fn tell_lost(&self, error: &SessionError, failing: bool) {
        let config = &self.server.config;
        let name: &str = &self.context.name;
        match error {
            SessionError::Auth(_) => self.events.emit(events::AUTHENTICATION_FAILED, Some(name), error.to_string()),
            SessionError::Limit(_) => self.events.emit(events::MAIL_STORE_LIMIT, Some(name), error.to_string()),
            SessionError::Timeout => self.events.emit(events::MAIL_STORE_TIMEOUT, Some(name), ""),
            SessionError::Folder(_) => self.events.emit(events::FOLDER_MISSING, Some(name), error.to_string()),
            SessionError::Unreachable(_) | SessionError::Lost(_) => {
                if !failing {
                    self.events.emit(
                        events::MAIL_STORE_UNREACHABLE,
                        None,
                        format!("{}:{}: {error}", config.host, config.port()),
                    )
                }
            }
            SessionError::Closed | SessionError::Quiet => {}
        }
    }

    /// A quiet spam task without a session waits to be told of a change
    /// (or for [`QUIET_POLL`], or a command). False when it must stop.
    async fn wait_quietly(&mut self, stop: &CancellationToken) -> bool {
        let watch = self.spam_watch.clone();
        tokio::select! {
            () = watch.changed.notified() => true,
            () = tokio::time::sleep(jitter(QUIET_POLL)) => true,
            () = stop.cancelled() => false,
            work = self.work.recv() => !matches!(work, None | Some(Work::Stop)),
        }
    }

    /// Waits `backoff` (with jitter) before reconnecting: stop commands are
    /// honoured meanwhile, rescans fail, re-checks wait for the connection.
    /// False when the task must stop.
    async fn wait_to_reconnect(&mut self, error: &SessionError, backoff: Duration, stop: &CancellationToken) -> bool {
        let wait = tokio::time::sleep(jitter(backoff));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => return true,
                () = stop.cancelled() => return false,
                work = self.work.recv() => match work {
                    None | Some(Work::Stop) => return false,
                    Some(Work::Rescan { id, .. }) => {
                        let detail = format!("not connected to the mail server: {error}");
                        self.events.emit(events::RESCAN_FAILED, Some(&self.context.name), &detail);
                        self.processor.state.send(move |c| {
                            state::rescan_update(c, id, state::RescanStatus::Failed, (0, 0, 0), &detail)
                        });
                    }
                    Some(_) => {}
                },
            }
        }
    }
}

/// Up to a quarter more, so that many mailboxes do not reconnect in step.
fn jitter(wait: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    wait + wait.mul_f64(f64::from(byte[0]) / 1024.0)
}

/// A session on one folder, with what was learnt about the server.
struct Connected {
    session: Option<Session>,
    timeout: Duration,
    idle_time: Duration,
    max_bytes: u64,
    caps: Capabilities,
    folders: HashSet<String>,
    junk: Option<String>,
    trash: Option<String>,
    validity: u32,
    selected: String,
    meta: HashMap<u32, MessageMeta>,
    mailbox: String,
    marker: Marker,
    state: crate::state::State,
    events: Events,
    told_uidplus: bool,
    /// CONDSTORE: the highest modification sequence looked at.
    modseq: Option<u64>,
    /// Messages were expunged from the selected folder since the last look.
    expunged: bool,
    /// Folder names that cannot be selected.
    noselect: HashSet<String>,
    /// The hierarchy separator.
    delimiter: Option<String>,
    /// Shared with the mailbox's other task.
    spam_watch: Arc<SpamWatch>,
    /// A filter session told of changes in the spam folder (NOTIFY).
    notifying: Option<Notifying>,
    /// The server refused NOTIFY in this session.
    notify_refused: bool,
}

#[derive(Clone, Debug, Default)]
struct MessageMeta {
    flags: Vec<String>,
    internal_date: Option<String>,
}

impl Connected {
    fn new(session: Session, watcher: &Watcher) -> Connected {
        let mut connected = Connected::of(session, &watcher.server, &watcher.context.name, &watcher.processor);
        connected.selected = watcher.folder.clone();
        connected.spam_watch = watcher.spam_watch.clone();
        connected
    }

    /// A session of `mailbox` with nothing selected.
    fn of(session: Session, server: &Server, mailbox: &str, processor: &Processor) -> Connected {
        Connected {
            session: Some(session),
            timeout: server.timeout(),
            idle_time: Duration::from_secs(server.config.idle_seconds),
            max_bytes: server.config.max_message_bytes,
            caps: Capabilities::default(),
            folders: HashSet::new(),
            junk: None,
            trash: None,
            validity: 0,
            selected: String::new(),
            meta: HashMap::new(),
            mailbox: mailbox.to_owned(),
            marker: processor.pipeline.marker().clone(),
            state: processor.state.clone(),
            events: processor.events.clone(),
            told_uidplus: false,
            modseq: None,
            expunged: false,
            noselect: HashSet::new(),
            delimiter: None,
            spam_watch: Arc::default(),
            notifying: None,
            notify_refused: false,
        }
    }

    /// The UID of a message fetched in this session (its locator is
    /// `uidvalidity:uid`); a message of an older UIDVALIDITY has vanished.
    fn uid_of(&self, item: &Item) -> Result<u32, ActionError> {
        match parse_locator(&item.locator) {
            Some((validity, uid)) if validity == self.validity => Ok(uid),
            _ => Err(ActionError::Vanished),
        }
    }

    fn session(&mut self) -> Result<&mut Session, SessionError> {
        self.session.as_mut().ok_or(SessionError::Lost("no session".into()))
    }

    async fn logout(&mut self) {
        self.notifying = None;
        if let Some(mut session) = self.session.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), session.logout()).await;
        }
    }

    async fn run(&mut self, watcher: &mut Watcher, stop: &CancellationToken) -> Result<(), SessionError> {
        self.learn().await?;
        match watcher.role.clone() {
            Role::Filter => self.run_filter(watcher, stop).await,
            Role::Spam { name, create } => self.run_spam(watcher, stop, &name, create).await,
        }
    }

    /// Selects a folder (with CONDSTORE when the server has it); returns
    /// its UIDNEXT.
    async fn select(&mut self, folder: &str) -> Result<u32, SessionError> {
        let timeout = self.timeout;
        let condstore = self.caps.condstore;
        let session = self.session()?;
        let selected = if condstore {
            tokio::time::timeout(timeout, session.select_condstore(folder)).await
        } else {
            tokio::time::timeout(timeout, session.select(folder)).await
        };
        let mailbox = match selected {
            Err(_) => return Err(SessionError::Timeout),
            Ok(Err(async_imap::error::Error::No(text) | async_imap::error::Error::Bad(text))) => {
                return Err(SessionError::Folder(format!("{folder}: {text}")));
            }
            Ok(Err(e)) => return Err(SessionError::Lost(e.to_string())),
            Ok(Ok(mailbox)) => mailbox,
        };
        self.selected = folder.to_owned();
        self.validity = mailbox.uid_validity.unwrap_or(0);
        self.modseq = if condstore { mailbox.highest_modseq } else { None };
        self.expunged = false;
        self.meta.clear();
        // Responses about the folder selected before are stale now (news
        // of the spam folder's is not).
        let unsolicited = self.session()?.unsolicited_responses.clone();
        self.sort_unsolicited(std::iter::from_fn(|| unsolicited.try_recv().ok()).collect());
        Ok(mailbox.uid_next.unwrap_or(1))
    }
}

enum Wake {
    Mail,
    Work(Work),
    Stopped,
}

/// Runs an action's command with the timeout: a refusal is the action's
/// failure, anything else loses the connection.
async fn timed_action<T, F>(timeout: Duration, future: F) -> Result<T, ActionError>
where
    F: Future<Output = async_imap::error::Result<T>>,
{
    match tokio::time::timeout(timeout, future).await {
        Err(_) => Err(ActionError::Connection("the server did not answer in time".into())),
        Ok(Ok(value)) => Ok(value),
        Ok(Err(async_imap::error::Error::No(text) | async_imap::error::Error::Bad(text))) => {
            Err(ActionError::Failed(text))
        }
        Ok(Err(e)) => Err(ActionError::Connection(e.to_string())),
    }
}

/// A session ended by a panic in the IMAP parser: a lost connection, with
/// what the parser said.
fn unreadable(panic: &(dyn std::any::Any + Send)) -> SessionError {
    let said = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("no message");
    SessionError::Lost(format!("the server sent a response the IMAP parser could not read ({said})"))
}

fn lost(error: async_imap::error::Error) -> SessionError {
    SessionError::Lost(error.to_string())
}

fn action_lost(error: SessionError) -> ActionError {
    ActionError::Connection(error.to_string())
}

/// A queue locator: `uidvalidity:uid`.
pub fn locator(validity: u32, uid: &str) -> String {
    format!("{validity}:{uid}")
}

fn parse_locator(locator: &str) -> Option<(u32, u32)> {
    let (validity, uid) = locator.split_once(':')?;
    Some((validity.parse().ok()?, uid.parse().ok()?))
}

/// A UID set in compact form (`1:5,7,9:10`) from ascending UIDs.
/// `uids` cut into fetch batches: at most [`FETCH_BATCH`] messages, and
/// no more than [`FETCH_BYTES`] of them (by `sizes`, each counted up to
/// `max_bytes`) after the first.
fn fetch_batches<'a>(uids: &'a [u32], sizes: &HashMap<u32, u64>, max_bytes: u64) -> Vec<&'a [u32]> {
    let mut batches = Vec::new();
    let mut start = 0;
    while start < uids.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < uids.len() && end - start < FETCH_BATCH && (end == start || bytes < FETCH_BYTES) {
            bytes += sizes.get(&uids[end]).copied().unwrap_or(0).min(max_bytes);
            end += 1;
        }
        batches.push(&uids[start..end]);
        start = end;
    }
    batches
}

fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

fn flag_name(flag: &Flag<'_>) -> Option<String> {
    Some(match flag {
        Flag::Seen => "\\Seen".into(),
        Flag::Answered => "\\Answered".into(),
        Flag::Flagged => "\\Flagged".into(),
        Flag::Deleted => "\\Deleted".into(),
        Flag::Draft => "\\Draft".into(),
        Flag::Recent | Flag::MayCreate => return None,
        Flag::Custom(name) => name.to_string(),
    })
}

/// The Message-ID of a message (or of its header alone), as the pipeline
/// reads it.
fn header_message_id(raw: &[u8]) -> Option<String> {
    crate::facts::Facts::from_message(raw, 0).message_id.filter(|id| !id.trim().is_empty())
}

/// An IMAP quoted string (RFC 3501 `quoted`). The text may come from a
/// message (a Message-ID can hold a bare CR, or a folded line break): CR,
/// LF and NUL, which a quoted string cannot carry, are dropped, so no text
/// can end the command line and smuggle in another command.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars().filter(|c| !matches!(c, '\r' | '\n' | '\0')) {
        if matches!(c, '\\' | '"') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_id_cannot_end_the_command_line() {
        // Message-IDs as mail-parser reads them from hostile headers.
        let raw = b"Message-ID: <a\r\n b@c>\r\n\r\nbody";
        let id = header_message_id(raw).expect("an id");
        assert!(id.contains('\n'), "the header really carries a line break: {id:?}");
        assert_eq!(quote(&id), "\"a b@c\"");
        assert_eq!(quote("x\"\r\nA1 DELETE INBOX\0\\"), "\"x\\\"A1 DELETE INBOX\\\\\"");
    }

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn locators_round_trip() {
        assert_eq!(parse_locator(&locator(17, "42")), Some((17, 42)));
        assert_eq!(parse_locator("x"), None);
    }
}
