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
//! A move is `UID MOVE`, or `UID COPY` + `UID STORE +FLAGS (\Deleted)` +
//! `UID EXPUNGE` of exactly that UID when the server lacks MOVE. A tag
//! appends the rewritten message and removes the original only after the
//! append succeeded; a journal entry (written first, with the tag mark)
//! lets a restart finish or undo it.

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

/// A connection: plain TCP or TLS.
pub enum Stream {
    /// Plain TCP (loopback only).
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stream::Plain(_) => "Stream::Plain",
            Stream::Tls(_) => "Stream::Tls",
        })
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A logged-in session.
pub type Session = async_imap::Session<Stream>;

/// How to reach and log into the server, shared by every mailbox task.
pub struct Server {
    /// The configuration.
    pub config: ImapConfig,
    /// The admin password.
    pub password: String,
    /// TLS set-up (for `tls` and `starttls`).
    pub tls: Option<tokio_rustls::TlsConnector>,
    /// Logins in progress at once.
    pub logins: Semaphore,
}

impl Server {
    /// Reads the password file and prepares TLS.
    pub fn new(config: ImapConfig, password_file: &std::path::Path) -> anyhow::Result<Server> {
        let password = std::fs::read_to_string(password_file)
            .map_err(|e| anyhow::anyhow!("cannot read the IMAP password file {}: {e}", password_file.display()))?;
        let password = password.trim_end_matches(['\r', '\n']).to_owned();
        let tls = match config.security {
            ImapSecurity::Plain => None,
            ImapSecurity::Tls | ImapSecurity::Starttls => {
                let mut roots = rustls::RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                if let Some(path) = &config.ca_file {
                    let pem = std::fs::read(path)
                        .map_err(|e| anyhow::anyhow!("cannot read the CA file {}: {e}", path.display()))?;
                    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                        roots.add(cert?)?;
                    }
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let tls = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(tokio_rustls::TlsConnector::from(Arc::new(tls)))
            }
        };
        let logins = Semaphore::new(config.max_concurrent_logins);
        Ok(Server { config, password, tls, logins })
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.timeout_seconds)
    }

    /// Connects and logs in on behalf of `user`.
    pub async fn login(&self, user: &str) -> Result<Session, SessionError> {
        let _permit = self.logins.acquire().await.map_err(|_| SessionError::Closed)?;
        tokio::time::timeout(self.timeout() * 2, self.login_inner(user)).await.map_err(|_| SessionError::Timeout)?
    }

    async fn login_inner(&self, user: &str) -> Result<Session, SessionError> {
        let address = (self.config.host.as_str(), self.config.port());
        let tcp = TcpStream::connect(address).await.map_err(|e| SessionError::Unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(60))
            .with_interval(Duration::from_secs(15))
            .with_retries(4);
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
        let stream = match self.config.security {
            ImapSecurity::Plain => Stream::Plain(tcp),
            ImapSecurity::Tls => Stream::Tls(Box::new(self.handshake(tcp).await?)),
            ImapSecurity::Starttls => {
                let mut client = async_imap::Client::new(tcp);
                greeting(&mut client).await?;
                client.run_command_and_check_ok("STARTTLS", None).await.map_err(refused)?;
                Stream::Tls(Box::new(self.handshake(client.into_inner()).await?))
            }
        };
        let mut client = async_imap::Client::new(stream);
        if self.config.security != ImapSecurity::Starttls {
            greeting(&mut client).await?;
        }
        let admin = &self.config.admin_user;
        let result = match self.config.auth {
            ImapAuth::MasterUser => {
                let login = format!("{user}{}{admin}", self.config.master_separator);
                client.login(login, &self.password).await
            }
            ImapAuth::SaslPlain => {
                let plain =
                    PlainAuth { authzid: user.to_owned(), authcid: admin.clone(), password: self.password.clone() };
                client.authenticate("PLAIN", plain).await
            }
        };
        result.map_err(|(error, _)| match error {
            async_imap::error::Error::No(text) | async_imap::error::Error::Bad(text) => {
                if is_limit(&text) {
                    SessionError::Limit(text)
                } else {
                    SessionError::Auth(text)
                }
            }
            other => SessionError::Unreachable(other.to_string()),
        })
    }

    async fn handshake(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, SessionError> {
        let connector = self.tls.as_ref().ok_or_else(|| SessionError::Unreachable("TLS is not set up".into()))?;
        let name = rustls::pki_types::ServerName::try_from(self.config.host.clone())
            .map_err(|e| SessionError::Unreachable(format!("bad host name: {e}")))?;
        connector.connect(name, tcp).await.map_err(|e| SessionError::Unreachable(format!("TLS: {e}")))
    }
}

async fn greeting<T>(client: &mut async_imap::Client<T>) -> Result<(), SessionError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + fmt::Debug + Send,
{
    match client.read_response().await {
        Ok(Some(response)) => {
            if let async_imap::imap_proto::Response::Data { status: async_imap::imap_proto::Status::Bye, outcome } =
                response.parsed()
            {
                let text = outcome.information.as_deref().unwrap_or("").to_owned();
                return Err(if is_limit(&text) { SessionError::Limit(text) } else { SessionError::Unreachable(text) });
            }
            Ok(())
        }
        Ok(None) => Err(SessionError::Unreachable("the server closed the connection".into())),
        Err(e) => Err(SessionError::Unreachable(e.to_string())),
    }
}

fn is_limit(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("maximum number of") || text.contains("too many") || text.contains("limit")
}

fn refused(error: async_imap::error::Error) -> SessionError {
    SessionError::Unreachable(error.to_string())
}

/// SASL PLAIN (RFC 4616) with an authorisation identity.
struct PlainAuth {
    authzid: String,
    authcid: String,
    password: String,
}

impl async_imap::Authenticator for PlainAuth {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        [self.authzid.as_bytes(), self.authcid.as_bytes(), self.password.as_bytes()].join(&0u8)
    }
}

/// Why a session ended or could not start.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Cannot connect.
    #[error("cannot connect: {0}")]
    Unreachable(String),
    /// Login refused.
    #[error("login refused: {0}")]
    Auth(String),
    /// Too many connections.
    #[error("connection limit: {0}")]
    Limit(String),
    /// A command timed out.
    #[error("the server did not answer in time")]
    Timeout,
    /// The connection broke.
    #[error("connection lost: {0}")]
    Lost(String),
    /// The folder cannot be selected.
    #[error("cannot open the folder: {0}")]
    Folder(String),
    /// Shutting down.
    #[error("stopping")]
    Closed,
}

/// What the server offers.
#[derive(Clone, Copy, Debug, Default)]
struct Capabilities {
    mv: bool,
    uidplus: bool,
    idle: bool,
    condstore: bool,
}

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
    /// Tag marks.
    pub marker: Marker,
    /// Messages younger than this are checked the first time.
    pub first_scan_hours: u32,
    /// Commands (re-check, stop).
    pub work: mpsc::Receiver<Work>,
    /// Events.
    pub events: Events,
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
                Err(error) => error,
            };
            self.processor.live.connection(&self.live_name(), false, &error.to_string());
            let name: &str = &self.context.name;
            match &error {
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
                SessionError::Closed => {}
            }
            failing = true;
            tracing::debug!(mailbox = name, "session ended: {error}; reconnecting in {backoff:?}");
            // Stop commands are honoured while waiting; re-checks wait for
            // the connection.
            let wait = tokio::time::sleep(jitter(backoff));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut wait => break,
                    () = stop.cancelled() => return,
                    work = self.work.recv() => match work {
                        None | Some(Work::Stop) => return,
                        Some(Work::Rescan { id, .. }) => {
                            let detail = format!("not connected to the mail server: {error}");
                            self.events.emit(events::RESCAN_FAILED, Some(&self.context.name), &detail);
                            self.processor.state.send(move |c| {
                                state::rescan_update(c, id, "failed", (0, 0, 0), &detail)
                            });
                        }
                        Some(_) => {}
                    },
                }
            }
            backoff = (backoff * 2).min(max);
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
}

#[derive(Clone, Debug, Default)]
struct MessageMeta {
    flags: Vec<String>,
    internal_date: Option<String>,
}

impl Connected {
    fn new(session: Session, watcher: &Watcher) -> Connected {
        Connected {
            session: Some(session),
            timeout: watcher.server.timeout(),
            idle_time: Duration::from_secs(watcher.server.config.idle_seconds),
            max_bytes: watcher.server.config.max_message_bytes,
            caps: Capabilities::default(),
            folders: HashSet::new(),
            junk: None,
            trash: None,
            validity: 0,
            selected: watcher.folder.clone(),
            meta: HashMap::new(),
            mailbox: watcher.context.name.to_string(),
            marker: watcher.marker.clone(),
            state: watcher.processor.state.clone(),
            events: watcher.events.clone(),
            told_uidplus: false,
            modseq: None,
            expunged: false,
            noselect: HashSet::new(),
            delimiter: None,
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
        // Responses about the folder selected before are stale now.
        let unsolicited = self.session()?.unsolicited_responses.clone();
        while unsolicited.try_recv().is_ok() {}
        Ok(mailbox.uid_next.unwrap_or(1))
    }

    /// The loop of an inbox (or shared folder): new mail, keywords,
    /// re-checks and rescans.
    async fn run_filter(&mut self, watcher: &mut Watcher, stop: &CancellationToken) -> Result<(), SessionError> {
        let folder = watcher.folder.clone();
        let next = self.select(&folder).await?;
        let mut recovering = self.recover().await?;
        let mut last = self.start_position(watcher, next).await?;
        loop {
            let newer = self.uids_after(last).await?;
            if recovering && !newer.is_empty() {
                // Perhaps the copy of an interrupted tag.
                recovering = self.recover().await?;
            }
            if let Some(&newest) = newer.iter().max() {
                let handled = self.handle(watcher, newer, Pass::Delivery).await?.0;
                last = handled.max(last);
                if handled < newest {
                    return Err(SessionError::Lost("a batch was interrupted".into()));
                }
                self.save_cursor(last);
            }
            self.keywords(watcher).await?;
            match self.wait(watcher, stop, None).await? {
                Wake::Mail => {}
                Wake::Work(Work::Stop) | Wake::Stopped => return Err(SessionError::Closed),
                Wake::Work(Work::Recheck(locators)) => self.recheck(watcher, locators, Pass::Recheck).await?,
                Wake::Work(Work::Retro(locators)) => self.recheck(watcher, locators, Pass::Retro).await?,
                Wake::Work(Work::Settle { rows, read }) => self.settle(watcher, rows, read).await?,
                Wake::Work(Work::Rescan { id, since }) => self.rescan(watcher, id, since).await?,
                Wake::Work(Work::Arrived(_) | Work::Written(_) | Work::Scan | Work::CatchUp(_) | Work::Moved(..)) => {}
            }
        }
    }

    /// Where to carry on from in the selected folder: the cursor, or on
    /// first sight (or a rebuilt folder) after checking what is young
    /// enough, the newest message.
    async fn start_position(&mut self, watcher: &Watcher, next: u32) -> Result<u32, SessionError> {
        let (name, key_folder) = (self.mailbox.clone(), self.selected.clone());
        let cursor = self
            .state
            .call(move |c| state::cursor(c, &name, &key_folder))
            .await
            .map_err(|e| SessionError::Lost(e.to_string()))?;
        match cursor {
            Some(cursor) if cursor.validity == self.validity => Ok(u32::try_from(cursor.position).unwrap_or(0)),
            _ => {
                if watcher.role == Role::Filter {
                    let cutoff = jiff::Timestamp::now().as_second() - i64::from(watcher.first_scan_hours) * 3600;
                    let young =
                        if watcher.first_scan_hours == 0 { Vec::new() } else { self.delivered_since(cutoff).await? };
                    self.handle(watcher, young, Pass::Delivery).await?;
                }
                let last = next.saturating_sub(1);
                self.save_cursor(last);
                Ok(last)
            }
        }
    }

    /// The loop of a spam folder: what users put there, what they take
    /// out, and its sub-folders.
    async fn run_spam(
        &mut self,
        watcher: &mut Watcher,
        stop: &CancellationToken,
        name: &str,
        create: bool,
    ) -> Result<(), SessionError> {
        let spam = match self.spam_folder(name, create).await? {
            Some(spam) => spam,
            None => {
                // No spam folder, and none to create: look again later.
                tokio::select! {
                    () = stop.cancelled() => return Err(SessionError::Closed),
                    () = tokio::time::sleep(Duration::from_secs(600)) => {}
                    work = watcher.work.recv() => if matches!(work, None | Some(Work::Stop)) {
                        return Err(SessionError::Closed);
                    },
                }
                return Err(SessionError::Lost("no spam folder yet".into()));
            }
        };
        watcher.folder = spam.clone();
        let next = self.select(&spam).await?;
        let mut last = self.start_position(watcher, next).await?;
        let first = last.saturating_sub(PRESENT_MAX as u32) + 1;
        let mut present: std::collections::BTreeMap<u32, String> =
            self.message_ids(&format!("{first}:{last}")).await?.into_iter().collect();
        let mut sub_last: HashMap<String, u32> = HashMap::new();
        let mut next_poll = tokio::time::Instant::now();
        loop {
            let newer = self.uids_after(last).await?;
            for chunk in newer.chunks(FETCH_BATCH) {
                // The header first: most arrivals are the agent's own
                // filings, whose bodies need not be fetched again.
                let ids = self.message_ids(&uid_set(chunk)).await?;
                let wanted: Vec<Option<String>> = chunk.iter().map(|uid| ids.get(uid).cloned()).collect();
                let worth = watcher.processor.worth_a_look(&self.mailbox, wanted, Moved::IntoSpam).await;
                let fetch: Vec<u32> = chunk.iter().zip(worth).filter(|(_, w)| *w).map(|(uid, _)| *uid).collect();
                if !fetch.is_empty() {
                    let items = self.fetch_items(&fetch, &HashMap::new()).await?;
                    self.meta.clear();
                    watcher.processor.moved(&self.mailbox, items, Moved::IntoSpam).await;
                }
                present.extend(ids);
                while present.len() > PRESENT_MAX {
                    present.pop_first();
                }
                last = last.max(*chunk.last().unwrap_or(&0));
                self.save_cursor(last);
            }
            self.keywords(watcher).await?;
            let due = tokio::time::Instant::now() >= next_poll;
            // Looking elsewhere takes a second session: this one stays on
            // the spam folder (a server may stop notifying a session that
            // selected another folder meanwhile).
            if self.expunged || due {
                self.expunged = false;
                let gone = self.vanished(&mut present).await?;
                if !gone.is_empty() {
                    let mut side = self.side(watcher).await?;
                    let result = side.find_elsewhere(watcher, &spam, gone).await;
                    side.logout().await;
                    result?;
                }
            }
            if due {
                let news = self.sub_folder_news(&spam, &mut sub_last).await?;
                if !news.is_empty() {
                    let mut side = self.side(watcher).await?;
                    let result = side.sub_folders(watcher, news, &mut sub_last).await;
                    side.logout().await;
                    result?;
                }
                next_poll = tokio::time::Instant::now() + SPAM_POLL;
            }
            match self.wait(watcher, stop, Some(next_poll)).await? {
                Wake::Work(Work::Stop) | Wake::Stopped => return Err(SessionError::Closed),
                _ => {}
            }
        }
    }

    /// The spam folder's name: the server's `\Junk` folder, else `name`
    /// (created when allowed); `None` when there is none.
    async fn spam_folder(&mut self, name: &str, create: bool) -> Result<Option<String>, SessionError> {
        if name.is_empty()
            && let Some(junk) = &self.junk
        {
            return Ok(Some(junk.clone()));
        }
        let name = if name.is_empty() { "Spam" } else { name };
        match self.destination(&Destination::Spam(name.to_owned()), create).await {
            Ok(folder) => Ok(Some(folder)),
            Err(ActionError::Connection(e)) => Err(SessionError::Lost(e)),
            Err(_) => Ok(None),
        }
    }

    /// The Message-IDs of messages in the selected folder (a UID set), by
    /// UID.
    async fn message_ids(&mut self, set: &str) -> Result<HashMap<u32, String>, SessionError> {
        let mut ids = HashMap::new();
        if set.ends_with(":0") {
            return Ok(ids);
        }
        let timeout = self.timeout * 4;
        let session = self.session()?;
        let fetch = async {
            let fetches: Vec<Fetch> =
                session.uid_fetch(set, "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])").await?.try_collect().await?;
            Ok::<_, async_imap::error::Error>(fetches)
        };
        let fetches = tokio::time::timeout(timeout, fetch).await.map_err(|_| SessionError::Timeout)?.map_err(lost)?;
        for f in &fetches {
            if let (Some(uid), Some(header)) = (f.uid, f.header().or_else(|| f.body()))
                && let Some(id) = header_message_id(header)
            {
                ids.insert(uid, id);
            }
        }
        Ok(ids)
    }

    /// Messages that left the selected folder since the last look: their
    /// Message-IDs (forgotten from `present`).
    async fn vanished(
        &mut self,
        present: &mut std::collections::BTreeMap<u32, String>,
    ) -> Result<Vec<String>, SessionError> {
        if present.is_empty() {
            return Ok(Vec::new());
        }
        let timeout = self.timeout;
        let session = self.session()?;
        let now: HashSet<u32> = tokio::time::timeout(timeout, session.uid_search("ALL"))
            .await
            .map_err(|_| SessionError::Timeout)?
            .map_err(lost)?;
        let mut gone: Vec<String> = Vec::new();
        present.retain(|uid, id| {
            let kept = now.contains(uid);
            if !kept {
                gone.push(id.clone());
            }
            kept
        });
        Ok(gone)
    }

    /// Looks for messages that left the spam folder in the user's other
    /// folders (not the inbox, which its own task watches, not Trash, not
    /// the spam folder's tree): found, they were taken out of spam.
    async fn find_elsewhere(
        &mut self,
        watcher: &Watcher,
        spam: &str,
        mut gone: Vec<String>,
    ) -> Result<(), SessionError> {
        if gone.len() > VANISHED_MAX {
            tracing::debug!(mailbox = self.mailbox, left = gone.len(), "many messages left the spam folder at once");
            gone.truncate(VANISHED_MAX);
        }
        self.list_folders().await?;
        let trash = self.trash.clone().unwrap_or_else(|| "Trash".into());
        let mut folders: Vec<String> = self
            .folders
            .iter()
            .filter(|f| {
                !f.eq_ignore_ascii_case("INBOX")
                    && **f != trash
                    && !self.in_tree(f, spam)
                    && !self.in_tree(f, &trash)
                    && !self.noselect.contains(*f)
            })
            .cloned()
            .collect();
        folders.sort();
        for folder in folders {
            if self.examine(&folder).await.is_err() {
                continue;
            }
            let mut found = Vec::new();
            for id in &gone {
                let timeout = self.timeout;
                let session = self.session()?;
                let hits =
                    tokio::time::timeout(timeout, session.uid_search(format!("HEADER Message-ID {}", quote(id))))
                        .await
                        .map_err(|_| SessionError::Timeout)?
                        .map_err(lost)?;
                found.extend(hits);
            }
            tracing::debug!(mailbox = self.mailbox, folder, ?found, "looked for messages that left the spam folder");
            if found.is_empty() {
                continue;
            }
            found.sort_unstable();
            found.dedup();
            let items = self.fetch_items(&found, &HashMap::new()).await?;
            self.meta.clear();
            gone.retain(|id| !items.iter().any(|i| header_message_id(&i.raw).as_deref() == Some(id.as_str())));
            watcher.processor.moved(&self.mailbox, items, Moved::OutOfSpam).await;
            if gone.is_empty() {
                break;
            }
        }
        Ok(())
    }

    /// Whether `folder` is `root` or below it.
    fn in_tree(&self, folder: &str, root: &str) -> bool {
        folder == root
            || self
                .delimiter
                .as_deref()
                .is_some_and(|d| folder.strip_prefix(root).is_some_and(|rest| rest.starts_with(d)))
    }

    /// Opens a folder read-only (for looking, not acting).
    async fn examine(&mut self, folder: &str) -> Result<(), SessionError> {
        let timeout = self.timeout;
        let session = self.session()?;
        let mailbox = tokio::time::timeout(timeout, session.examine(folder))
            .await
            .map_err(|_| SessionError::Timeout)?
            .map_err(|e| SessionError::Folder(format!("{folder}: {e}")))?;
        self.selected = folder.to_owned();
        self.validity = mailbox.uid_validity.unwrap_or(0);
        self.modseq = None;
        Ok(())
    }

    /// Another session for the same mailbox, for looking into other
    /// folders.
    async fn side(&self, watcher: &Watcher) -> Result<Connected, SessionError> {
        let session = watcher.server.login(&watcher.account).await?;
        let mut side = Connected::new(session, watcher);
        // What it needs of the folder list, it lists itself.
        side.caps = self.caps;
        Ok(side)
    }

    /// Sub-folders of the spam folder (users put spam there too) with
    /// messages not looked at yet, by STATUS (looked at every
    /// [`SPAM_POLL`]): (folder, UIDVALIDITY, last UID looked at).
    async fn sub_folder_news(
        &mut self,
        spam: &str,
        last: &mut HashMap<String, u32>,
    ) -> Result<Vec<(String, u32, u32)>, SessionError> {
        self.list_folders().await?;
        let subs: Vec<String> = self
            .folders
            .iter()
            .filter(|f| *f != spam && self.in_tree(f, spam) && !self.noselect.contains(*f))
            .cloned()
            .collect();
        let mut news = Vec::new();
        for sub in subs {
            let timeout = self.timeout;
            let session = self.session()?;
            let status = tokio::time::timeout(timeout, session.status(&sub, "(UIDNEXT UIDVALIDITY)"))
                .await
                .map_err(|_| SessionError::Timeout)?
                .map_err(lost)?;
            let next = status.uid_next.unwrap_or(1);
            let validity = status.uid_validity.unwrap_or(0);
            let known = match last.get(&sub) {
                Some(&known) => known,
                None => {
                    let (mailbox, folder) = (self.mailbox.clone(), sub.clone());
                    let cursor = self
                        .state
                        .call(move |c| state::cursor(c, &mailbox, &folder))
                        .await
                        .map_err(|e| SessionError::Lost(e.to_string()))?;
                    let known = match cursor {
                        Some(cursor) if cursor.validity == validity => u32::try_from(cursor.position).unwrap_or(0),
                        // A new sub-folder: what was put there before it was
                        // watched is not reported.
                        _ => {
                            let known = next.saturating_sub(1);
                            let (mailbox, folder) = (self.mailbox.clone(), sub.clone());
                            self.state.send(move |c| {
                                state::set_cursor(c, &mailbox, &folder, Cursor { validity, position: i64::from(known) })
                            });
                            known
                        }
                    };
                    last.insert(sub.clone(), known);
                    known
                }
            };
            if next.saturating_sub(1) > known {
                news.push((sub, validity, known));
            }
        }
        Ok(news)
    }

    /// Reports what arrived in sub-folders of the spam folder.
    async fn sub_folders(
        &mut self,
        watcher: &Watcher,
        news: Vec<(String, u32, u32)>,
        last: &mut HashMap<String, u32>,
    ) -> Result<(), SessionError> {
        for (sub, validity, known) in news {
            self.examine(&sub).await?;
            let newer = self.uids_after(known).await?;
            let mut newest = known;
            for chunk in newer.chunks(FETCH_BATCH) {
                let items = self.fetch_items(chunk, &HashMap::new()).await?;
                self.meta.clear();
                watcher.processor.moved(&self.mailbox, items, Moved::IntoSpam).await;
                newest = newest.max(*chunk.last().unwrap_or(&0));
            }
            last.insert(sub.clone(), newest);
            let mailbox = self.mailbox.clone();
            self.state
                .send(move |c| state::set_cursor(c, &mailbox, &sub, Cursor { validity, position: i64::from(newest) }));
        }
        Ok(())
    }

    /// `$Junk` / `$NotJunk` set on messages of the selected folder since
    /// the last look (CONDSTORE): the same as moving them into or out of
    /// the spam folder.
    async fn keywords(&mut self, watcher: &Watcher) -> Result<(), SessionError> {
        let Some(since) = self.modseq else { return Ok(()) };
        let timeout = self.timeout;
        let session = self.session()?;
        let fetch = async {
            let fetches: Vec<Fetch> =
                session.uid_fetch("1:*", format!("(UID FLAGS) (CHANGEDSINCE {since})")).await?.try_collect().await?;
            Ok::<_, async_imap::error::Error>(fetches)
        };
        let fetches = tokio::time::timeout(timeout, fetch).await.map_err(|_| SessionError::Timeout)?.map_err(lost)?;
        let in_spam = matches!(watcher.role, Role::Spam { .. });
        let mut highest = since;
        let (mut junk, mut not_junk) = (Vec::new(), Vec::new());
        for f in &fetches {
            highest = highest.max(f.modseq.unwrap_or(0));
            let Some(uid) = f.uid else { continue };
            let mut flags = f.flags().filter_map(|flag| flag_name(&flag));
            let (is_junk, is_not_junk) = flags.by_ref().fold((false, false), |(j, n), flag| {
                (j || flag.eq_ignore_ascii_case("$Junk"), n || flag.eq_ignore_ascii_case("$NotJunk"))
            });
            // A client sets one and clears the other; with both, the user's
            // intent is unclear.
            match (is_junk, is_not_junk) {
                (true, false) if !in_spam => junk.push(uid),
                (false, true) => not_junk.push(uid),
                _ => {}
            }
        }
        self.modseq = Some(highest);
        for (uids, direction) in [(junk, Moved::IntoSpam), (not_junk, Moved::OutOfSpam)] {
            for chunk in uids.chunks(FETCH_BATCH) {
                let items = self.fetch_items(chunk, &HashMap::new()).await?;
                self.meta.clear();
                watcher.processor.moved(&self.mailbox, items, direction).await;
            }
        }
        Ok(())
    }

    /// Looks again at messages delivered since `since` (Unix seconds), by
    /// the same policy; a message a user rescued is left alone.
    async fn rescan(&mut self, watcher: &Watcher, id: i64, since: i64) -> Result<(), SessionError> {
        let started = std::time::Instant::now();
        let result = self.rescan_inner(watcher, id, since).await;
        let (state, events, mailbox) = (self.state.clone(), self.events.clone(), self.mailbox.clone());
        match result {
            Ok((total, filed)) => {
                let progress = (total, total, filed);
                let _ = state.call(move |c| state::rescan_update(c, id, "done", progress, "")).await;
                events.emit(
                    events::RESCAN_FINISHED,
                    Some(&mailbox),
                    format!(
                        "{total} message(s) looked at again, {filed} filed, in {:.1} s.",
                        started.elapsed().as_secs_f64()
                    ),
                );
                Ok(())
            }
            Err(error) => {
                let detail = error.to_string();
                let text = detail.clone();
                let _ = state.call(move |c| state::rescan_update(c, id, "failed", (0, 0, 0), &text)).await;
                events.emit(events::RESCAN_FAILED, Some(&mailbox), detail);
                Err(error)
            }
        }
    }

    async fn rescan_inner(&mut self, watcher: &Watcher, id: i64, since: i64) -> Result<(u64, u64), SessionError> {
        let uids = self.delivered_since(since).await?;
        let total = uids.len() as u64;
        let _ = self.state.call(move |c| state::rescan_update(c, id, "running", (total, 0, 0), "")).await;
        self.events.emit(
            events::RESCAN_STARTED,
            Some(&self.mailbox),
            format!(
                "{total} message(s) in {} delivered since {}.",
                self.selected,
                jiff::Timestamp::from_second(since).unwrap_or_default()
            ),
        );
        let (mut checked, mut filed) = (0u64, 0u64);
        for chunk in uids.chunks(FETCH_BATCH * 4) {
            let (_, acted) = self.handle(watcher, chunk.to_vec(), Pass::Rescan).await?;
            checked += chunk.len() as u64;
            filed += acted;
            let progress = (total, checked, filed);
            self.state.send(move |c| state::rescan_update(c, id, "running", progress, ""));
        }
        Ok((total, filed))
    }

    /// Capabilities and folders (with their special uses).
    async fn learn(&mut self) -> Result<(), SessionError> {
        let timeout = self.timeout;
        let session = self.session()?;
        let caps = tokio::time::timeout(timeout, session.capabilities())
            .await
            .map_err(|_| SessionError::Timeout)?
            .map_err(|e| SessionError::Lost(e.to_string()))?;
        self.caps = Capabilities {
            mv: caps.has_str("MOVE"),
            uidplus: caps.has_str("UIDPLUS"),
            idle: caps.has_str("IDLE"),
            condstore: caps.has_str("CONDSTORE"),
        };
        if !self.caps.mv {
            // Told once per connection; the emitter folds the repeats.
            self.events.emit(events::SERVER_LACKS_MOVE, Some(&self.mailbox), "");
        }
        self.list_folders().await
    }

    async fn list_folders(&mut self) -> Result<(), SessionError> {
        let timeout = self.timeout;
        let session = self.session()?;
        let listing = async {
            let names: Vec<_> = session.list(Some(""), Some("*")).await?.try_collect().await?;
            Ok::<_, async_imap::error::Error>(names)
        };
        let names = tokio::time::timeout(timeout, listing)
            .await
            .map_err(|_| SessionError::Timeout)?
            .map_err(|e| SessionError::Lost(e.to_string()))?;
        self.folders.clear();
        self.noselect.clear();
        for name in &names {
            let folder = name.name().to_owned();
            if self.delimiter.is_none() {
                self.delimiter = name.delimiter().map(str::to_owned);
            }
            for attribute in name.attributes() {
                match attribute {
                    NameAttribute::NoSelect => {
                        self.noselect.insert(folder.clone());
                    }
                    NameAttribute::Junk if self.junk.is_none() => self.junk = Some(folder.clone()),
                    NameAttribute::Trash if self.trash.is_none() => self.trash = Some(folder.clone()),
                    _ => {}
                }
            }
            self.folders.insert(folder);
        }
        Ok(())
    }

    fn save_cursor(&self, last: u32) {
        let (mailbox, folder, validity) = (self.mailbox.clone(), self.selected.clone(), self.validity);
        self.state
            .send(move |c| state::set_cursor(c, &mailbox, &folder, Cursor { validity, position: i64::from(last) }));
    }

    /// UIDs above `last`, ascending.
    async fn uids_after(&mut self, last: u32) -> Result<Vec<u32>, SessionError> {
        let timeout = self.timeout;
        let session = self.session()?;
        let fetch = async {
            let fetches: Vec<Fetch> =
                session.uid_fetch(format!("{}:*", last + 1), "(UID)").await?.try_collect().await?;
            Ok::<_, async_imap::error::Error>(fetches)
        };
        let fetches = tokio::time::timeout(timeout, fetch).await.map_err(|_| SessionError::Timeout)?.map_err(lost)?;
        let mut uids: Vec<u32> = fetches.iter().filter_map(|f| f.uid).filter(|&uid| uid > last).collect();
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// UIDs of messages of the selected folder delivered since `since`
    /// (Unix seconds, by INTERNALDATE), ascending.
    async fn delivered_since(&mut self, since: i64) -> Result<Vec<u32>, SessionError> {
        let cutoff = jiff::Timestamp::from_second(since).unwrap_or_default();
        // SEARCH SINCE has a day's resolution (in the server's time zone):
        // ask from the day before, then keep the young enough.
        let day = (cutoff - jiff::SignedDuration::from_hours(24)).strftime("%d-%b-%Y").to_string();
        let timeout = self.timeout;
        let session = self.session()?;
        let candidates = tokio::time::timeout(timeout, session.uid_search(format!("SINCE {day}")))
            .await
            .map_err(|_| SessionError::Timeout)?
            .map_err(lost)?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let mut candidates: Vec<u32> = candidates.into_iter().collect();
        candidates.sort_unstable();
        let mut young = Vec::new();
        for chunk in candidates.chunks(1000) {
            let set = uid_set(chunk);
            let session = self.session()?;
            let fetch = async {
                let fetches: Vec<Fetch> = session.uid_fetch(set, "(UID INTERNALDATE)").await?.try_collect().await?;
                Ok::<_, async_imap::error::Error>(fetches)
            };
            let fetches =
                tokio::time::timeout(timeout, fetch).await.map_err(|_| SessionError::Timeout)?.map_err(lost)?;
            for f in &fetches {
                let recent = f.internal_date().is_none_or(|d| d.timestamp() >= since);
                if let (Some(uid), true) = (f.uid, recent) {
                    young.push(uid);
                }
            }
        }
        young.sort_unstable();
        Ok(young)
    }

    /// Fetches and handles messages by UID, in batches; returns the highest
    /// UID handled (0 when none) and how many messages were acted on.
    async fn handle(&mut self, watcher: &Watcher, uids: Vec<u32>, pass: Pass) -> Result<(u32, u64), SessionError> {
        let recheck = pass == Pass::Recheck;
        let mut highest = 0;
        let mut acted = 0;
        let sizes = self.sizes(&uids).await?;
        let mut start = 0;
        while start < uids.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < uids.len() && end - start < FETCH_BATCH && (end == start || bytes < FETCH_BYTES) {
                bytes += sizes.get(&uids[end]).copied().unwrap_or(0).min(self.max_bytes);
                end += 1;
            }
            let chunk = &uids[start..end];
            let items = self.fetch_items(chunk, &sizes).await?;
            let found: HashSet<String> = items.iter().map(|i| i.locator.clone()).collect();
            let outcome = watcher.processor.process(self, &watcher.context, &watcher.folder, items.clone(), pass).await;
            acted += outcome.acted as u64;
            if let Some(stopped) = outcome.stopped_at {
                let done = stopped.checked_sub(1).and_then(|i| items.get(i)).and_then(|i| parse_locator(&i.locator));
                let done = done.map(|(_, uid)| uid);
                return Err(SessionError::Lost(format!("interrupted after UID {}", done.unwrap_or(highest))));
            }
            if recheck {
                // Queued messages that are gone leave the queue.
                let gone: Vec<String> = chunk
                    .iter()
                    .map(|uid| locator(self.validity, &uid.to_string()))
                    .filter(|locator| !found.contains(locator))
                    .collect();
                if !gone.is_empty() {
                    let (mailbox, folder) = (self.mailbox.clone(), self.selected.clone());
                    self.state.send(move |c| state::recheck_done(c, &mailbox, &folder, &gone));
                }
            }
            highest = highest.max(*chunk.last().unwrap_or(&0));
            self.meta.clear();
            start = end;
        }
        Ok((highest, acted))
    }

    async fn sizes(&mut self, uids: &[u32]) -> Result<HashMap<u32, u64>, SessionError> {
        let mut sizes = HashMap::with_capacity(uids.len());
        let timeout = self.timeout;
        for chunk in uids.chunks(1000) {
            let set = uid_set(chunk);
            let session = self.session()?;
            let fetch = async {
                let fetches: Vec<Fetch> = session.uid_fetch(set, "(UID RFC822.SIZE)").await?.try_collect().await?;
                Ok::<_, async_imap::error::Error>(fetches)
            };
            let fetches =
                tokio::time::timeout(timeout, fetch).await.map_err(|_| SessionError::Timeout)?.map_err(lost)?;
            for f in &fetches {
                if let Some(uid) = f.uid {
                    sizes.insert(uid, u64::from(f.size.unwrap_or(0)));
                }
            }
        }
        Ok(sizes)
    }

    async fn fetch_items(&mut self, uids: &[u32], sizes: &HashMap<u32, u64>) -> Result<Vec<Item>, SessionError> {
        let timeout = self.timeout;
        let max = self.max_bytes;
        let query = format!("(UID FLAGS INTERNALDATE BODY.PEEK[]<0.{max}>)");
        let session = self.session()?;
        let fetch = async {
            let fetches: Vec<Fetch> = session.uid_fetch(uid_set(uids), &query).await?.try_collect().await?;
            Ok::<_, async_imap::error::Error>(fetches)
        };
        let fetches = tokio::time::timeout(timeout, fetch).await.map_err(|_| SessionError::Timeout)?.map_err(lost)?;
        let mut items = Vec::with_capacity(fetches.len());
        for f in &fetches {
            let (Some(uid), Some(body)) = (f.uid, f.body()) else { continue };
            let flags = f.flags().filter_map(|flag| flag_name(&flag)).collect();
            let internal_date = f.internal_date().map(|d| d.format("%d-%b-%Y %H:%M:%S %z").to_string());
            self.meta.insert(uid, MessageMeta { flags, internal_date });
            let size = sizes.get(&uid).copied().unwrap_or(body.len() as u64);
            let locator = locator(self.validity, &uid.to_string());
            // A move keeps INTERNALDATE; another delivery (of the same
            // Message-ID) has its own.
            let identity = f.internal_date().map(|d| d.timestamp());
            items.push(Item { locator, raw: Arc::from(body), truncated: size > max, identity });
        }
        items.sort_by_key(|i| parse_locator(&i.locator).map_or(0, |(_, uid)| uid));
        Ok(items)
    }

    /// Handles queued (or remembered) messages again.
    async fn recheck(
        &mut self,
        watcher: &Watcher,
        locators: Vec<(String, String)>,
        pass: Pass,
    ) -> Result<(), SessionError> {
        let mut uids = Vec::new();
        let mut stale = Vec::new();
        for (folder, locator) in locators {
            if folder != self.selected {
                continue;
            }
            match parse_locator(&locator) {
                Some((validity, uid)) if validity == self.validity => uids.push(uid),
                _ => stale.push(locator),
            }
        }
        if pass == Pass::Retro {
            // Missing messages were moved or deleted meanwhile: nothing
            // to look at.
            uids.sort_unstable();
            uids.dedup();
            return self.handle(watcher, uids, Pass::Retro).await.map(|_| ());
        }
        if !stale.is_empty() {
            let (mailbox, folder) = (self.mailbox.clone(), self.selected.clone());
            self.state.send(move |c| state::recheck_done(c, &mailbox, &folder, &stale));
        }
        uids.sort_unstable();
        uids.dedup();
        self.handle(watcher, uids, Pass::Recheck).await.map(|_| ())
    }

    /// Which remembered messages are still in the selected folder (and
    /// read): those are learnt as ham, the others forgotten.
    async fn settle(
        &mut self,
        watcher: &Watcher,
        rows: Vec<crate::recent::Located>,
        read: bool,
    ) -> Result<(), SessionError> {
        let mut asked: HashMap<u32, crate::recent::Located> = HashMap::new();
        let mut gone = Vec::new();
        for row in rows.into_iter().filter(|row| row.folder == self.selected) {
            match parse_locator(&row.locator) {
                Some((validity, uid)) if validity == self.validity => {
                    asked.insert(uid, row);
                }
                _ => gone.push(row),
            }
        }
        let mut uids: Vec<u32> = asked.keys().copied().collect();
        uids.sort_unstable();
        let (mut learn, mut keep) = (Vec::new(), Vec::new());
        let timeout = self.timeout;
        for chunk in uids.chunks(1000) {
            let session = self.session()?;
            let fetch = async {
                let fetches: Vec<Fetch> = session.uid_fetch(uid_set(chunk), "(UID FLAGS)").await?.try_collect().await?;
                Ok::<_, async_imap::error::Error>(fetches)
            };
            let fetches =
                tokio::time::timeout(timeout, fetch).await.map_err(|_| SessionError::Timeout)?.map_err(lost)?;
            for f in &fetches {
                let Some(row) = f.uid.and_then(|uid| asked.remove(&uid)) else { continue };
                let seen = f.flags().any(|flag| matches!(flag, async_imap::types::Flag::Seen));
                let deleted = f.flags().any(|flag| matches!(flag, async_imap::types::Flag::Deleted));
                match (deleted, seen || !read) {
                    (true, _) => gone.push(row),
                    (false, true) => learn.push(row),
                    (false, false) => keep.push(row),
                }
            }
        }
        // What the server did not return is no longer there.
        gone.extend(asked.into_values());
        watcher.processor.settle(&self.mailbox, learn, keep, gone).await;
        Ok(())
    }

    /// Waits in IDLE (or polls) for new mail or a command, or until
    /// `deadline`. The deadline is part of the wait, not a race around it:
    /// a wait given up half-way would leave the session inside IDLE.
    async fn wait(
        &mut self,
        watcher: &mut Watcher,
        stop: &CancellationToken,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Wake, SessionError> {
        let until = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(until);
        if !self.caps.idle {
            return tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(30)) => Ok(Wake::Mail),
                () = &mut until => Ok(Wake::Mail),
                () = stop.cancelled() => Ok(Wake::Stopped),
                work = watcher.work.recv() => Ok(work.map_or(Wake::Stopped, Wake::Work)),
            };
        }
        // An EXISTS that came with an earlier command's reply (mail that
        // arrived after the last look) means there is work already.
        let unsolicited = self.session()?.unsolicited_responses.clone();
        let mut pending = false;
        // Messages leaving the spam folder matter to its task only.
        let watch_expunges = matches!(watcher.role, Role::Spam { .. });
        while let Ok(response) = unsolicited.try_recv() {
            // New mail, or (with CONDSTORE) changed flags to look at.
            pending |= match response {
                UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_) => true,
                UnsolicitedResponse::Other(_) => self.modseq.is_some(),
                UnsolicitedResponse::Expunge(_) if watch_expunges => {
                    self.expunged = true;
                    true
                }
                _ => false,
            };
        }
        if pending {
            return Ok(Wake::Mail);
        }
        let session = self.session.take().ok_or(SessionError::Lost("no session".into()))?;
        let mut idle = session.idle();
        match tokio::time::timeout(self.timeout, idle.init()).await {
            Err(_) => return Err(SessionError::Timeout),
            Ok(Err(e)) => return Err(SessionError::Lost(e.to_string())),
            Ok(Ok(())) => {}
        }
        // Mail that arrived while IDLE started was reported before it.
        while let Ok(response) = unsolicited.try_recv() {
            let expunge = watch_expunges && matches!(response, UnsolicitedResponse::Expunge(_));
            self.expunged |= expunge;
            pending |= expunge || matches!(response, UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_));
        }
        let wake = if pending {
            Wake::Mail
        } else {
            let (waiting, interrupt) = idle.wait_with_timeout(self.idle_time);
            let wake = tokio::select! {
                response = waiting => match response {
                    Ok(IdleResponse::NewData(data)) => {
                        self.expunged |=
                            watch_expunges && matches!(data.parsed(), async_imap::imap_proto::Response::Expunge(_));
                        Wake::Mail
                    }
                    Ok(IdleResponse::Timeout | IdleResponse::ManualInterrupt) => Wake::Mail,
                    Err(e) => return Err(SessionError::Lost(e.to_string())),
                },
                () = stop.cancelled() => Wake::Stopped,
                () = &mut until => Wake::Mail,
                work = watcher.work.recv() => work.map_or(Wake::Stopped, Wake::Work),
            };
            drop(interrupt);
            wake
        };
        let session = match tokio::time::timeout(self.timeout, idle.done()).await {
            Err(_) => return Err(SessionError::Timeout),
            Ok(Err(e)) => return Err(SessionError::Lost(e.to_string())),
            Ok(Ok(session)) => session,
        };
        self.session = Some(session);
        Ok(wake)
    }

    /// The destination folder's name, created when allowed.
    async fn destination(&mut self, destination: &Destination, create: bool) -> Result<String, ActionError> {
        let name = match destination {
            Destination::Spam(name) if name.is_empty() => self.junk.clone().unwrap_or_else(|| "Spam".into()),
            Destination::Trash(name) if name.is_empty() => self.trash.clone().unwrap_or_else(|| "Trash".into()),
            Destination::Spam(name) | Destination::Trash(name) | Destination::Existing(name) => name.clone(),
        };
        if let Some(found) = self.existing(&name) {
            return Ok(found);
        }
        if !create {
            // The folder list may be stale: look again before refusing.
            self.list_folders().await.map_err(action_lost)?;
            return self.existing(&name).ok_or(ActionError::FolderMissing(name));
        }
        // Where personal folders live below INBOX (Cyrus's default
        // namespace: `INBOX.Spam`), a top-level name is refused: the same
        // name below INBOX is the user's folder.
        let mut names = vec![name.clone()];
        names.extend(self.below_inbox(&name));
        let mut refused = None;
        for candidate in names {
            let timeout = self.timeout;
            let session = self.session().map_err(action_lost)?;
            match timed_action(timeout, session.create(&candidate)).await {
                Ok(()) => {
                    self.events.emit(events::FOLDER_CREATED, Some(&self.mailbox), format!("Folder: {candidate}."));
                    let session = self.session().map_err(action_lost)?;
                    let _ = timed_action(timeout, session.subscribe(&candidate)).await;
                    self.folders.insert(candidate.clone());
                    return Ok(candidate);
                }
                // Someone else created it meanwhile, or this name is not
                // the user's to create.
                Err(ActionError::Failed(why)) => {
                    self.list_folders().await.map_err(action_lost)?;
                    if let Some(found) = self.existing(&name) {
                        return Ok(found);
                    }
                    refused.get_or_insert(why);
                }
                Err(e) => return Err(e),
            }
        }
        Err(ActionError::Failed(format!("cannot create the folder {name}: {}", refused.unwrap_or_default())))
    }

    /// `name` as the server lists it: itself, or below INBOX (`INBOX.Spam`
    /// where personal folders live there).
    fn existing(&self, name: &str) -> Option<String> {
        if self.folders.contains(name) {
            return Some(name.to_owned());
        }
        self.below_inbox(name).filter(|below| self.folders.contains(below))
    }

    /// `INBOX` + the hierarchy separator + `name`, for a name not already
    /// below INBOX.
    fn below_inbox(&self, name: &str) -> Option<String> {
        let delimiter = self.delimiter.as_deref()?;
        let inbox = format!("INBOX{delimiter}");
        let already = name.get(..inbox.len()).is_some_and(|start| start.eq_ignore_ascii_case(&inbox));
        (!already && !name.eq_ignore_ascii_case("INBOX")).then(|| format!("{inbox}{name}"))
    }

    async fn command(&mut self, command: String) -> Result<(), ActionError> {
        let timeout = self.timeout;
        let session = self.session().map_err(action_lost)?;
        timed_action(timeout, session.run_command_and_check_ok(command)).await
    }

    /// Removes exactly these messages (a UID set): flag them deleted, then
    /// `UID EXPUNGE` them (without UIDPLUS they stay flagged: expunging
    /// would remove the user's other deleted messages too).
    async fn remove(&mut self, uids: &str) -> Result<(), ActionError> {
        self.command(format!("UID STORE {uids} +FLAGS.SILENT (\\Deleted)")).await?;
        if self.caps.uidplus {
            self.command(format!("UID EXPUNGE {uids}")).await
        } else {
            if !self.told_uidplus {
                self.told_uidplus = true;
                self.events.emit(events::SERVER_LACKS_UIDPLUS, Some(&self.mailbox), "");
            }
            Ok(())
        }
    }

    /// Moves messages (a UID set): `UID MOVE`, or `UID COPY` then removal
    /// of exactly those UIDs.
    async fn move_messages(&mut self, uids: &str, destination: &str) -> Result<(), ActionError> {
        let quoted = quote(destination);
        if self.caps.mv {
            return self.command(format!("UID MOVE {uids} {quoted}")).await;
        }
        self.command(format!("UID COPY {uids} {quoted}")).await?;
        self.remove(uids).await
    }

    /// Moves or deletes many messages in one command each.
    async fn apply_many(&mut self, items: &[&Item], action: &Action) -> Vec<Result<Applied, ActionError>> {
        let uids: Vec<Result<u32, ActionError>> = items.iter().map(|item| self.uid_of(item)).collect();
        let valid: Vec<u32> = uids.iter().filter_map(|u| u.as_ref().ok().copied()).collect();
        if valid.is_empty() {
            return uids.into_iter().map(|u| u.map(|_| Applied::default())).collect();
        }
        let set = uid_set(&valid);
        let done = match action {
            Action::Move { destination, create, mark_read } => {
                let name = self.destination(destination, *create).await;
                match name {
                    Ok(name) if name == self.selected => Ok(name),
                    Ok(name) => {
                        let seen = if *mark_read {
                            self.command(format!("UID STORE {set} +FLAGS.SILENT (\\Seen)")).await
                        } else {
                            Ok(())
                        };
                        match seen {
                            Ok(()) => self.move_messages(&set, &name).await.map(|()| name),
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            _ => self.remove(&set).await.map(|()| String::new()),
        };
        match done {
            Ok(folder) => uids.into_iter().map(|u| u.map(|_| Applied { folder: folder.clone() })).collect(),
            // One message may be the cause: try them one by one.
            Err(ActionError::Failed(_)) => crate::process::one_by_one(self, items, action).await,
            Err(e) => items.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn tag(&mut self, item: &Item, prefix: &str, mark_read: bool) -> Result<(), ActionError> {
        if item.truncated {
            return Err(ActionError::TooLarge);
        }
        let uid = self.uid_of(item)?;
        let meta = self.meta.get(&uid).cloned().unwrap_or_default();
        let mark = self.marker.mark();
        let rewritten = crate::tagging::rewrite(&item.raw, prefix, &mark);
        let (mailbox, folder, original, replacement) =
            (self.mailbox.clone(), self.selected.clone(), item.locator.clone(), mark.clone());
        let journal = self
            .state
            .call(move |c| state::journal_begin(c, &mailbox, &folder, "tag", &original, &replacement))
            .await
            .map_err(|e| ActionError::Failed(format!("cannot journal the tag: {e}")))?;
        let mut flags: Vec<String> = meta.flags.into_iter().filter(|f| f != "\\Recent" && f != "\\Deleted").collect();
        if mark_read && !flags.iter().any(|f| f == "\\Seen") {
            flags.push("\\Seen".into());
        }
        let flags = format!("({})", flags.join(" "));
        let date = meta.internal_date.map(|d| format!("\"{d}\""));
        let selected = self.selected.clone();
        let timeout = self.timeout;
        let session = self.session().map_err(action_lost)?;
        let appended =
            timed_action(timeout, session.append(&selected, Some(&flags), date.as_deref(), &rewritten)).await;
        if let Err(e) = appended {
            // A refused APPEND added nothing. A lost connection may have
            // lost only the answer: the journal stays, and the next
            // session's recovery looks for the copy first.
            if !matches!(e, ActionError::Connection(_)) {
                let _ = self.state.call(move |c| state::journal_end(c, journal)).await;
            }
            return Err(e);
        }
        // Only now is the original removed; a crash before this line leaves
        // both, and the journal tells the restart to remove the original.
        self.remove(&uid.to_string()).await?;
        let _ = self.state.call(move |c| state::journal_end(c, journal)).await;
        Ok(())
    }

    /// The UIDs of messages carrying a tag mark's nonce.
    async fn find_tagged(&mut self, nonce: &str) -> Result<Vec<u32>, SessionError> {
        let timeout = self.timeout;
        let session = self.session()?;
        let found = tokio::time::timeout(
            timeout,
            session.uid_search(format!("HEADER {} \"{nonce}\"", crate::facts::TAG_HEADER)),
        )
        .await
        .map_err(|_| SessionError::Timeout)?
        .map_err(lost)?;
        Ok(found.into_iter().collect())
    }

    /// Finishes or undoes tags a stop interrupted in this folder. Whether
    /// some stay pending: see [`RECENT_JOURNAL_SECONDS`].
    async fn recover(&mut self) -> Result<bool, SessionError> {
        let mailbox = self.mailbox.clone();
        let entries = self
            .state
            .call(move |c| state::journal(c, &mailbox))
            .await
            .map_err(|e| SessionError::Lost(e.to_string()))?;
        let mut finished = 0;
        let mut pending = false;
        let selected = self.selected.clone();
        for entry in entries.into_iter().filter(|e| e.folder == selected && e.operation == "tag") {
            let original = parse_locator(&entry.original);
            if let (Some((validity, uid)), Some(nonce)) = (original, Marker::nonce(&entry.replacement))
                && validity == self.validity
            {
                let found = self.find_tagged(nonce).await?;
                // A stop in the middle of an APPEND may have left the whole
                // message in the server's socket buffer: the server then
                // completes that APPEND after this session began, and the
                // copy arrives as new mail. A young entry whose copy is not
                // there yet stays, and is looked at again when mail arrives.
                let young = jiff::Timestamp::now().as_second() - entry.at < RECENT_JOURNAL_SECONDS;
                if young && !found.iter().any(|&copy| copy != uid) {
                    pending = true;
                    continue;
                }
                if found.iter().any(|&copy| copy != uid) {
                    match self.remove(&uid.to_string()).await {
                        Ok(()) => {}
                        Err(ActionError::Connection(e)) => return Err(SessionError::Lost(e)),
                        Err(e) => {
                            tracing::warn!(mailbox = self.mailbox, "cannot remove an interrupted tag's original: {e}")
                        }
                    }
                }
            }
            let id = entry.id;
            self.state.call(move |c| state::journal_end(c, id)).await.map_err(|e| SessionError::Lost(e.to_string()))?;
            finished += 1;
        }
        if finished > 0 {
            self.events.emit(
                events::INTERRUPTED_ACTION_FINISHED,
                Some(&self.mailbox),
                format!("{finished} in {}.", self.selected),
            );
        }
        Ok(pending)
    }
}

impl Folder for Connected {
    async fn apply(&mut self, item: &Item, action: &Action) -> Result<Applied, ActionError> {
        let uid = self.uid_of(item)?;
        match action {
            Action::Leave | Action::Defer => Ok(Applied::default()),
            Action::Move { destination, create, mark_read } => {
                let name = self.destination(destination, *create).await?;
                if name == self.selected {
                    return Ok(Applied { folder: name });
                }
                if *mark_read {
                    self.command(format!("UID STORE {uid} +FLAGS.SILENT (\\Seen)")).await?;
                }
                self.move_messages(&uid.to_string(), &name).await?;
                Ok(Applied { folder: name })
            }
            Action::Tag { prefix, mark_read } => {
                self.tag(item, prefix, *mark_read).await?;
                Ok(Applied::default())
            }
            Action::Delete => {
                self.remove(&uid.to_string()).await?;
                Ok(Applied::default())
            }
        }
    }

    async fn apply_batch(&mut self, items: &[&Item], action: &Action) -> Vec<Result<Applied, ActionError>> {
        if items.len() > 1 && matches!(action, Action::Move { .. } | Action::Delete) {
            return self.apply_many(items, action).await;
        }
        crate::process::one_by_one(self, items, action).await
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

    #[test]
    fn sasl_plain_response() {
        let mut auth = PlainAuth { authzid: "alice".into(), authcid: "admin".into(), password: "pw".into() };
        assert_eq!(async_imap::Authenticator::process(&mut auth, b""), b"alice\0admin\0pw");
    }
}
