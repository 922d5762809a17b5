//! The server over real sockets: a whole session as Postfix sends it,
//! hostile frames, abrupt disconnects and the connection bound. Each test
//! ends with a good session on a new connection: one bad client never
//! stops the server.

use std::sync::Arc;
use std::time::Duration;

use starling_milter::wire::{self, Frame};
use starling_milter::{Decision, Disposition, Filter, Limits, Listen, Message, serve};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Adds a header naming the sender; rejects mail from `spam@`.
struct Tagger;

impl Filter for Tagger {
    async fn decide(&self, message: Message) -> Decision {
        if message.sender.starts_with("spam@") {
            return Decision { disposition: Disposition::Reject("550 5.7.1 No".into()), ..Decision::deliver() };
        }
        let mut decision = Decision::deliver();
        decision.add_headers.push(("X-Seen".into(), format!("{} {}", message.sender, message.raw.len())));
        decision
    }
}

fn frame(code: u8, data: &[u8]) -> Vec<u8> {
    let mut out = ((data.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(code);
    out.extend_from_slice(data);
    out
}

fn strings(parts: &[&str]) -> Vec<u8> {
    parts.iter().flat_map(|p| p.bytes().chain([0])).collect()
}

async fn start(limits: Limits) -> (std::net::SocketAddr, CancellationToken) {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = probe.local_addr().unwrap();
    drop(probe);
    let stop = CancellationToken::new();
    serve(&Listen::Tcp(address), Arc::new(Tagger), limits, stop.clone()).await.expect("listen");
    (address, stop)
}

/// Reads responses until one of the final ones; their codes.
async fn responses<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buffer = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await.expect("a reply").unwrap();
        assert!(n > 0, "the server closed the connection");
        buffer.extend_from_slice(&chunk[..n]);
        while let Some(Frame { code, data, used }) = wire::next_frame(&buffer, 1 << 20).unwrap() {
            out.push((code, data.to_vec()));
            buffer.drain(..used);
            if matches!(code, b'O' | b'c' | b'a' | b'r' | b't' | b'd' | b'y' | b's') {
                return out;
            }
        }
    }
}

/// An option negotiation as Postfix sends it (everything offered).
fn negotiation() -> Vec<u8> {
    let mut data = 6u32.to_be_bytes().to_vec();
    data.extend_from_slice(&0x1ffu32.to_be_bytes());
    data.extend_from_slice(&0x1f_ffffu32.to_be_bytes());
    frame(b'O', &data)
}

async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    stream.write_all(&negotiation()).await.unwrap();
    let reply = responses(stream).await;
    assert_eq!(reply[0].0, b'O');
}

/// One message; the final responses.
async fn message<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, sender: &str) -> Vec<(u8, Vec<u8>)> {
    let mut connect = strings(&["client.example"]);
    connect.push(b'4');
    connect.extend_from_slice(&25u16.to_be_bytes());
    connect.extend_from_slice(&strings(&["192.0.2.1"]));
    for (code, data) in [
        (b'C', connect),
        (b'M', strings(&[&format!("<{sender}>")])),
        (b'R', strings(&["<a@example.org>"])),
        (b'L', strings(&["Subject", " Hello"])),
        (b'N', Vec::new()),
        (b'B', b"Hi.\r\n".to_vec()),
    ] {
        stream.write_all(&frame(code, &data)).await.unwrap();
        // Only the body is answered: the rest was negotiated as "no reply".
        if code == b'B' {
            assert_eq!(responses(stream).await.last().unwrap().0, b'c', "reply to {}", code as char);
        }
    }
    stream.write_all(&frame(b'E', b"")).await.unwrap();
    responses(stream).await
}

async fn good_session(address: std::net::SocketAddr) {
    session_on(TcpStream::connect(address).await.unwrap()).await;
}

async fn session_on<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    negotiate(&mut stream).await;
    session_after_negotiation(stream).await;
}

/// Whether the server answers a negotiation on this connection (false:
/// it closed it).
async fn answers_negotiation(stream: &mut TcpStream) -> bool {
    if stream.write_all(&negotiation()).await.is_err() {
        return false;
    }
    let mut prefix = [0u8; 4];
    if tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut prefix)).await.expect("an answer").is_err() {
        return false;
    }
    let mut frame = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut frame).await.unwrap();
    frame[0] == b'O'
}

async fn session_after_negotiation<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let reply = message(&mut stream, "s@example.net").await;
    assert_eq!(reply[0].0, b'h');
    assert_eq!(reply[0].1, strings(&["X-Seen", " s@example.net 23"]));
    assert_eq!(reply.last().unwrap().0, b'a');
    // The same connection goes on with the next message.
    let reply = message(&mut stream, "spam@example.net").await;
    assert_eq!(reply, [(b'y', strings(&["550 5.7.1 No"]))]);
    stream.write_all(&frame(b'Q', b"")).await.unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn a_session_as_postfix_sends_it() {
    let (address, stop) = start(Limits::default()).await;
    good_session(address).await;
    stop.cancel();
}

#[tokio::test]
async fn a_unix_socket_gets_its_mode_and_replaces_a_stale_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("milter.sock");
    // A socket left by an earlier run.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let stop = CancellationToken::new();
    let listen = Listen::Unix { path: path.clone(), mode: 0o660, owner: None };
    serve(&listen, Arc::new(Tagger), Limits::default(), stop.clone()).await.expect("listen");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o660);
    session_on(tokio::net::UnixStream::connect(&path).await.unwrap()).await;
    // Any other file there is never replaced.
    let other = dir.path().join("not-a-socket");
    std::fs::write(&other, b"keep me").unwrap();
    let listen = Listen::Unix { path: other.clone(), mode: 0o660, owner: None };
    assert!(serve(&listen, Arc::new(Tagger), Limits::default(), stop.clone()).await.is_err());
    assert_eq!(std::fs::read(&other).unwrap(), b"keep me");
    stop.cancel();
}

#[tokio::test]
async fn hostile_frames_close_that_connection_only() {
    let (address, stop) = start(Limits::default()).await;
    for garbage in [
        vec![0xff, 0xff, 0xff, 0xff, b'B'],            // 4 GiB announced
        vec![0, 0, 0, 0],                              // empty frame
        frame(b'M', b"<unterminated"),                 // before negotiation
        frame(b'Z', b"what"),                          // unknown command
        [frame(b'O', &[0, 0, 0, 6]), vec![]].concat(), // truncated negotiation
    ] {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(&garbage).await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the server closes a connection that sent {garbage:?}");
    }
    // A disconnect in the middle of a message.
    let mut stream = TcpStream::connect(address).await.unwrap();
    negotiate(&mut stream).await;
    stream.write_all(&frame(b'M', &strings(&["<s@example.net>"]))).await.unwrap();
    stream.write_all(&[0, 0, 0x10]).await.unwrap();
    drop(stream);
    good_session(address).await;
    stop.cancel();
}

#[tokio::test]
async fn connections_beyond_the_bound_are_closed() {
    let (address, stop) = start(Limits { max_connections: 1, ..Limits::default() }).await;
    let mut first = TcpStream::connect(address).await.unwrap();
    negotiate(&mut first).await;
    let mut second = TcpStream::connect(address).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), second.read_to_end(&mut rest))
        .await
        .expect("the second connection is closed")
        .unwrap();
    drop(first);
    // The slot is free again once the server saw the first one go: a new
    // connection is then answered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let stream = loop {
        let mut stream = TcpStream::connect(address).await.unwrap();
        if answers_negotiation(&mut stream).await {
            break stream;
        }
        assert!(tokio::time::Instant::now() < deadline, "the slot was never freed");
    };
    session_after_negotiation(stream).await;
    stop.cancel();
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let (address, stop) = start(Limits { idle_timeout: Duration::from_millis(200), ..Limits::default() }).await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    negotiate(&mut stream).await;
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await.expect("closed").unwrap();
    stop.cancel();
}

mod sessions {
    use proptest::prelude::*;

    /// A well-formed frame of a command the MTA sends, with random data.
    fn command() -> impl Strategy<Value = Vec<u8>> {
        let code = prop::sample::select(b"ODCHMRTLNBEAQK".to_vec());
        (code, prop::collection::vec(any::<u8>(), 0..300)).prop_map(|(code, data)| super::frame(code, &data))
    }

    proptest! {
        /// Sessions of random commands (a negotiation first, so the rest
        /// gets past it) stay within their bounds and never panic.
        #[test]
        fn random_sessions_are_bounded(commands in prop::collection::vec(command(), 0..40)) {
            let mut bytes = super::negotiation();
            for command in commands {
                bytes.extend_from_slice(&command);
            }
            starling_milter::fuzz_session(&bytes);
        }
    }
}
