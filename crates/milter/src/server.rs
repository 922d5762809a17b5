//! The server side: a pure session state machine over commands, and the
//! async loop that reads frames from a socket, feeds them to it, and asks
//! the filter at each message's end.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::wire::{self, Command, Response, WireError, action, protocol};
use crate::{Decision, Disposition, Filter, Message};

/// Bounds on what one connection may cost.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest frame.
    pub max_frame: usize,
    /// Bytes of a message kept (headers and body); the rest is skipped and
    /// the message marked truncated.
    pub max_message_bytes: usize,
    /// Headers kept per message.
    pub max_headers: usize,
    /// Recipients kept per message.
    pub max_recipients: usize,
    /// Connections served at once; more are closed at once (the MTA then
    /// applies its `milter_default_action`).
    pub max_connections: usize,
    /// Longest wait for the MTA's next frame.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_frame: wire::DEFAULT_MAX_FRAME,
            max_message_bytes: 10 << 20,
            max_headers: 1000,
            max_recipients: 1000,
            max_connections: 256,
            idle_timeout: Duration::from_secs(600),
        }
    }
}

/// Why a connection ended badly.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The MTA sent something malformed.
    #[error("malformed milter frame: {0}")]
    Wire(#[from] WireError),
    /// A command came out of order (before negotiation, say).
    #[error("milter protocol error: {0}")]
    Protocol(&'static str),
    /// The MTA said nothing for too long.
    #[error("no frame from the MTA for {0:?}")]
    Idle(Duration),
}

/// A unix socket's owner: user id, group id (each left as is when `None`).
pub type Owner = (Option<u32>, Option<u32>);

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address.
    Tcp(std::net::SocketAddr),
    /// A unix socket: its path, and the mode and owner to give it.
    Unix {
        /// The socket's path (replaced when a stale one is there).
        path: PathBuf,
        /// Permission bits (e.g. 0o660).
        mode: u32,
        /// User and group ids to give it, when set.
        owner: Option<Owner>,
    },
}

/// What the session does after a command.
#[derive(Debug, PartialEq)]
pub(crate) enum Step {
    /// Send these responses.
    Reply(Vec<Response>),
    /// Send nothing.
    Quiet,
    /// The message is complete: ask the filter.
    Decide(Message),
    /// The MTA ended the connection.
    Close,
}

/// One connection's state: the negotiated options and the message being
/// collected. Pure (no I/O), so it is tested and fuzzed directly.
#[derive(Debug, Default)]
pub(crate) struct Session {
    negotiated: bool,
    actions: u32,
    protocol: u32,
    client_address: String,
    /// The queue id from the latest macros (sent before MAIL FROM).
    queue_id: String,
    message: Message,
    more_body_skipped: bool,
}

/// The actions Starling's filters take.
const WANTED_ACTIONS: u32 = action::ADD_HEADERS | action::CHANGE_HEADERS | action::QUARANTINE;
/// The steps the MTA may leave out (and the options used when offered).
/// Starling decides at the end of the message only, so the MTA need not
/// wait for a reply to the connection, the envelope and each header: a
/// round trip each, about twenty per message, saved.
const WANTED_PROTOCOL: u32 = protocol::NO_HELO
    | protocol::NO_UNKNOWN
    | protocol::NO_DATA
    | protocol::SKIP
    | protocol::HEADER_LEADING_SPACE
    | protocol::NR_CONNECT
    | protocol::NR_MAIL
    | protocol::NR_RCPT
    | protocol::NR_HEADER
    | protocol::NR_EOH;

impl Session {
    pub(crate) fn on_command(&mut self, command: Command, limits: &Limits) -> Result<Step, ServeError> {
        if !self.negotiated && !matches!(command, Command::Negotiate { .. } | Command::Macros { .. }) {
            return Err(ServeError::Protocol("a command before option negotiation"));
        }
        let step = match command {
            Command::Negotiate { version, actions, protocol } => {
                if version < 2 {
                    return Err(ServeError::Protocol("the MTA's milter version is older than 2"));
                }
                self.negotiated = true;
                self.actions = actions & WANTED_ACTIONS;
                self.protocol = protocol & WANTED_PROTOCOL;
                Step::Reply(vec![Response::Negotiate {
                    version: version.min(wire::VERSION),
                    actions: self.actions,
                    protocol: self.protocol,
                }])
            }
            Command::Macros { pairs, .. } => {
                for (name, value) in pairs {
                    if name == b"i" || name == b"{i}" {
                        self.queue_id = text(&value, 64);
                    }
                }
                Step::Quiet
            }
            Command::Connect { address, .. } => {
                self.client_address = text(&address, 128);
                self.reset();
                self.proceed(protocol::NR_CONNECT)
            }
            Command::Mail(arguments) => {
                self.reset();
                self.message.sender = address(&arguments[0]);
                self.proceed(protocol::NR_MAIL)
            }
            Command::Rcpt(arguments) => {
                if self.message.recipients.len() < limits.max_recipients {
                    self.message.recipients.push(address(&arguments[0]));
                } else {
                    self.message.truncated = true;
                }
                self.proceed(protocol::NR_RCPT)
            }
            Command::Header(name, value) => {
                self.header(&name, &value, limits);
                self.proceed(protocol::NR_HEADER)
            }
            Command::EndOfHeaders => {
                self.append(b"\r\n", limits);
                self.proceed(protocol::NR_EOH)
            }
            Command::Body(chunk) => {
                self.append(&chunk, limits);
                if self.message.truncated && self.protocol & protocol::SKIP != 0 && !self.more_body_skipped {
                    self.more_body_skipped = true;
                    Step::Reply(vec![Response::Skip])
                } else {
                    Step::Reply(vec![Response::Continue])
                }
            }
            Command::EndOfMessage(chunk) => {
                self.append(&chunk, limits);
                let mut message = std::mem::take(&mut self.message);
                message.queue_id = std::mem::take(&mut self.queue_id);
                self.reset();
                Step::Decide(message)
            }
            Command::Abort => {
                self.queue_id.clear();
                self.reset();
                Step::Quiet
            }
            Command::Quit => Step::Close,
            Command::QuitNewConnection => {
                self.client_address.clear();
                self.queue_id.clear();
                self.reset();
                Step::Quiet
            }
            Command::Helo(_) | Command::Data | Command::Unknown(_) => Step::Reply(vec![Response::Continue]),
        };
        Ok(step)
    }

    /// "Continue", unless the MTA agreed not to wait for a reply to this
    /// step (`no_reply`).
    fn proceed(&self, no_reply: u32) -> Step {
        if self.protocol & no_reply != 0 { Step::Quiet } else { Step::Reply(vec![Response::Continue]) }
    }

    /// The responses that carry out a decision, within what was negotiated.
    pub(crate) fn responses(&self, decision: Decision) -> Vec<Response> {
        let mut responses = Vec::new();
        if self.actions & action::CHANGE_HEADERS != 0 {
            for (index, name, value) in decision.change_headers {
                responses.push(Response::ChangeHeader(index, name, value));
            }
        }
        if self.actions & action::ADD_HEADERS != 0 {
            for (name, value) in decision.add_headers {
                // With leading-space mode on, values are taken as written.
                let value =
                    if self.protocol & protocol::HEADER_LEADING_SPACE != 0 { format!(" {value}") } else { value };
                responses.push(Response::AddHeader(name, value));
            }
        }
        match decision.disposition {
            Disposition::Deliver => responses.push(Response::Accept),
            Disposition::Reject(reply) => responses.push(Response::ReplyCode(reply)),
            Disposition::Tempfail(reply) => responses.push(Response::ReplyCode(reply)),
            Disposition::Discard => responses.push(Response::Discard),
            Disposition::Quarantine(reason) if self.actions & action::QUARANTINE != 0 => {
                responses.push(Response::Quarantine(reason));
                responses.push(Response::Accept);
            }
            // The MTA does not allow quarantine: refuse rather than deliver
            // what was meant to be held.
            Disposition::Quarantine(_) => responses.push(Response::ReplyCode("550 5.7.1 Message held as spam".into())),
        }
        responses
    }

    fn reset(&mut self) {
        self.message = Message { client_address: self.client_address.clone(), ..Message::default() };
        self.more_body_skipped = false;
    }

    fn header(&mut self, name: &[u8], value: &[u8], limits: &Limits) {
        if self.message.headers.len() >= limits.max_headers {
            self.message.truncated = true;
            return;
        }
        let leading_space = self.protocol & protocol::HEADER_LEADING_SPACE != 0;
        let mut line = Vec::with_capacity(name.len() + value.len() + 4);
        line.extend_from_slice(name);
        line.push(b':');
        if !leading_space {
            line.push(b' ');
        }
        crlf(&mut line, value);
        line.extend_from_slice(b"\r\n");
        if self.append(&line, limits) {
            let value = if leading_space { value.strip_prefix(b" ").unwrap_or(value) } else { value };
            self.message.headers.push((text(name, 1000), String::from_utf8_lossy(value).into_owned()));
        }
    }

    /// Appends to the message within its bound; false (and truncated) when
    /// it does not fit.
    fn append(&mut self, bytes: &[u8], limits: &Limits) -> bool {
        let room = limits.max_message_bytes.saturating_sub(self.message.raw.len());
        if bytes.len() > room {
            self.message.raw.extend_from_slice(&bytes[..room]);
            self.message.truncated = true;
            return false;
        }
        self.message.raw.extend_from_slice(bytes);
        true
    }
}

/// Bytes as text (lossy), at most `max` bytes of it.
fn text(bytes: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned()
}

/// An SMTP path without its angle brackets.
fn address(path: &[u8]) -> String {
    let path = text(path, 512);
    let trimmed = path.trim();
    trimmed.strip_prefix('<').and_then(|p| p.strip_suffix('>')).unwrap_or(trimmed).to_owned()
}

/// Appends `value` with bare LF line ends (as MTAs pass folded headers)
/// made CRLF.
fn crlf(out: &mut Vec<u8>, value: &[u8]) {
    let mut previous = 0u8;
    for &b in value {
        if b == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        previous = b;
    }
}

/// Serves one MTA connection until it quits. Every frame is bounded and
/// every wait has a deadline.
pub async fn serve_connection<S, F>(stream: S, filter: &F, limits: &Limits) -> Result<(), ServeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Filter,
{
    let mut stream = tokio::io::BufStream::new(stream);
    let mut session = Session::default();
    let mut frame = Vec::new();
    let mut out = Vec::new();
    loop {
        let mut prefix = [0u8; 4];
        match tokio::time::timeout(limits.idle_timeout, stream.read_exact(&mut prefix)).await {
            Err(_) => return Err(ServeError::Idle(limits.idle_timeout)),
            // The MTA closed the connection between frames: that is how
            // some end a session without QUIT.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(result) => result?,
        };
        let length = u32::from_be_bytes(prefix) as usize;
        if length == 0 || length > limits.max_frame {
            return Err(WireError::FrameLength(length, limits.max_frame).into());
        }
        frame.resize(length, 0);
        tokio::time::timeout(limits.idle_timeout, stream.read_exact(&mut frame))
            .await
            .map_err(|_| ServeError::Idle(limits.idle_timeout))??;
        let command = wire::parse(frame[0], &frame[1..])?;
        let responses = match session.on_command(command, limits)? {
            Step::Reply(responses) => responses,
            Step::Quiet => continue,
            Step::Close => return Ok(()),
            Step::Decide(message) => session.responses(filter.decide(message).await),
        };
        out.clear();
        for response in &responses {
            wire::encode(response, &mut out);
        }
        stream.write_all(&out).await?;
        stream.flush().await?;
    }
}

/// Accepts MTA connections on `listen` until `stop`, each served by
/// `filter` within `limits`. Returns once the listener is bound (serving
/// goes on in a task); the error when it cannot bind.
pub async fn serve<F: Filter>(
    listen: &Listen,
    filter: Arc<F>,
    limits: Limits,
    stop: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let limits = Arc::new(limits);
    match listen {
        Listen::Tcp(address) => {
            let listener = tokio::net::TcpListener::bind(address).await?;
            Ok(tokio::spawn(async move {
                loop {
                    let accepted = tokio::select! {
                        () = stop.cancelled() => return,
                        accepted = listener.accept() => accepted,
                    };
                    match accepted {
                        Ok((stream, peer)) => {
                            let _ = stream.set_nodelay(true);
                            spawn_connection(QuickAck(stream), peer.to_string(), &filter, &limits, &permits, &stop);
                        }
                        Err(e) => accept_failed(e).await,
                    }
                }
            }))
        }
        Listen::Unix { path, mode, owner } => {
            let listener = bind_unix(path, *mode, *owner)?;
            let path = path.clone();
            Ok(tokio::spawn(async move {
                loop {
                    let accepted = tokio::select! {
                        () = stop.cancelled() => break,
                        accepted = listener.accept() => accepted,
                    };
                    match accepted {
                        Ok((stream, _)) => {
                            spawn_connection(stream, path.display().to_string(), &filter, &limits, &permits, &stop)
                        }
                        Err(e) => accept_failed(e).await,
                    }
                }
                let _ = std::fs::remove_file(&path);
            }))
        }
    }
}

/// A TCP stream that acknowledges at once what it reads. The MTA sends
/// some commands without waiting for a reply (the macros before each
/// stage) as separate small writes; with Nagle's algorithm on its side and
/// a delayed ACK on ours, the next write waited about 40 ms for the ACK of
/// the first — the whole of the milter's added latency, measured.
struct QuickAck(tokio::net::TcpStream);

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let polled = std::pin::Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(polled, std::task::Poll::Ready(Ok(()))) {
            // The kernel leaves quick-ACK mode on its own: set it again.
            let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
        }
        polled
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

fn bind_unix(path: &std::path::Path, mode: u32, owner: Option<Owner>) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    // A socket left by an earlier run is replaced; any other file is not.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, uid, gid)?;
    }
    Ok(listener)
}

async fn accept_failed(error: std::io::Error) {
    // Out of descriptors, say: wait a little rather than spin.
    tracing::warn!("milter: cannot accept a connection: {error}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

fn spawn_connection<S, F>(
    stream: S,
    peer: String,
    filter: &Arc<F>,
    limits: &Arc<Limits>,
    permits: &Arc<Semaphore>,
    stop: &CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Filter,
{
    let Ok(permit) = permits.clone().try_acquire_owned() else {
        tracing::warn!(
            peer,
            limit = limits.max_connections,
            "milter: too many connections; closing this one (the MTA applies its milter_default_action)"
        );
        return;
    };
    let (filter, limits, stop) = (filter.clone(), limits.clone(), stop.clone());
    tokio::spawn(async move {
        let _permit = permit;
        tokio::select! {
            () = stop.cancelled() => {}
            result = serve_connection(stream, &*filter, &limits) => {
                if let Err(e) = result {
                    tracing::warn!(peer, "milter connection ended: {e}");
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiated() -> Session {
        let mut session = Session::default();
        let step = session
            .on_command(Command::Negotiate { version: 6, actions: 0x1ff, protocol: 0x1f_ffff }, &Limits::default())
            .unwrap();
        assert_eq!(
            step,
            Step::Reply(vec![Response::Negotiate { version: 6, actions: WANTED_ACTIONS, protocol: WANTED_PROTOCOL }])
        );
        session
    }

    fn feed(session: &mut Session, commands: Vec<Command>, limits: &Limits) -> Option<Message> {
        for command in commands {
            if let Step::Decide(message) = session.on_command(command, limits).unwrap() {
                return Some(message);
            }
        }
        None
    }

    fn transaction(body: &[u8]) -> Vec<Command> {
        vec![
            Command::Macros { stage: b'M', pairs: vec![(b"i".to_vec(), b"4XyZ".to_vec())] },
            Command::Mail(vec![b"<s@example.net>".to_vec(), b"SIZE=9".to_vec()]),
            Command::Rcpt(vec![b"<a@example.org>".to_vec()]),
            Command::Rcpt(vec![b"b@example.org".to_vec()]),
            Command::Header(b"Subject".to_vec(), b" Hello\n\tthere".to_vec()),
            Command::Header(b"From".to_vec(), b" s@example.net".to_vec()),
            Command::EndOfHeaders,
            Command::Body(body.to_vec()),
            Command::EndOfMessage(Vec::new()),
        ]
    }

    #[test]
    fn a_transaction_becomes_the_message_as_it_will_be_delivered() {
        let mut session = negotiated();
        let message = feed(&mut session, transaction(b"Hi.\r\n"), &Limits::default()).unwrap();
        assert_eq!(message.sender, "s@example.net");
        assert_eq!(message.recipients, ["a@example.org", "b@example.org"]);
        assert_eq!(message.queue_id, "4XyZ");
        assert_eq!(message.raw, b"Subject: Hello\r\n\tthere\r\nFrom: s@example.net\r\n\r\nHi.\r\n");
        assert_eq!(message.headers[0], ("Subject".into(), "Hello\n\tthere".into()));
        assert!(!message.truncated);
        // The next transaction starts afresh.
        let next = feed(&mut session, transaction(b"Again.\r\n"), &Limits::default()).unwrap();
        assert!(next.raw.ends_with(b"\r\n\r\nAgain.\r\n"));
        assert_eq!(next.recipients.len(), 2);
    }

    #[test]
    fn a_message_beyond_the_bound_is_cut_and_the_rest_skipped() {
        let limits = Limits { max_message_bytes: 64, ..Limits::default() };
        let mut session = negotiated();
        let mut commands = transaction(&[b'x'; 100]);
        let end = commands.pop().unwrap();
        let overflow = commands.pop().unwrap();
        assert!(feed(&mut session, commands, &limits).is_none());
        // The chunk that overflows asks the MTA to skip the rest; once.
        assert_eq!(session.on_command(overflow, &limits).unwrap(), Step::Reply(vec![Response::Skip]));
        assert_eq!(
            session.on_command(Command::Body(vec![b'y'; 10]), &limits).unwrap(),
            Step::Reply(vec![Response::Continue])
        );
        let Step::Decide(message) = session.on_command(end, &limits).unwrap() else { panic!() };
        assert!(message.truncated);
        assert_eq!(message.raw.len(), 64);
    }

    #[test]
    fn steps_are_answered_unless_the_mta_agreed_to_no_reply() {
        let header = || Command::Header(b"Subject".to_vec(), b" Hi".to_vec());
        let mut quiet = negotiated();
        assert_eq!(quiet.on_command(header(), &Limits::default()).unwrap(), Step::Quiet);
        // An MTA that offers no "no reply" steps (Sendmail 8.13, milter v2).
        let mut old = Session::default();
        old.on_command(Command::Negotiate { version: 2, actions: 0x3f, protocol: 0x7f }, &Limits::default()).unwrap();
        assert_eq!(old.on_command(header(), &Limits::default()).unwrap(), Step::Reply(vec![Response::Continue]));
        assert_eq!(
            old.on_command(Command::Mail(vec![b"<a@b>".to_vec()]), &Limits::default()).unwrap(),
            Step::Reply(vec![Response::Continue])
        );
    }

    #[test]
    fn commands_before_negotiation_are_refused() {
        let mut session = Session::default();
        assert!(matches!(
            session.on_command(Command::Mail(vec![b"<a@b>".to_vec()]), &Limits::default()),
            Err(ServeError::Protocol(_))
        ));
    }

    #[test]
    fn an_abort_drops_the_message_in_progress() {
        let mut session = negotiated();
        let mut commands = transaction(b"first");
        commands.truncate(5);
        commands.push(Command::Abort);
        assert!(feed(&mut session, commands, &Limits::default()).is_none());
        let message = feed(&mut session, transaction(b"second"), &Limits::default()).unwrap();
        assert!(message.raw.ends_with(b"second") && !message.raw.windows(5).any(|w| w == b"first"));
    }

    #[test]
    fn decisions_use_only_negotiated_actions() {
        let mut session = Session::default();
        session
            .on_command(
                Command::Negotiate { version: 6, actions: action::ADD_HEADERS, protocol: 0 },
                &Limits::default(),
            )
            .unwrap();
        let decision = Decision {
            change_headers: vec![(1, "X-Spam-Flag".into(), String::new())],
            add_headers: vec![("X-Spam-Flag".into(), "YES".into())],
            disposition: Disposition::Quarantine("spam".into()),
        };
        assert_eq!(
            session.responses(decision),
            vec![
                Response::AddHeader("X-Spam-Flag".into(), "YES".into()),
                Response::ReplyCode("550 5.7.1 Message held as spam".into()),
            ]
        );
    }
}
