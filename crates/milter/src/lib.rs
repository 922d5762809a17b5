//! In-line filtering through the milter protocol (version 6), as Postfix
//! and Sendmail speak it: a bounded, pure frame codec ([`wire`]) and an
//! async server ([`serve`]) that collects each message under limits and
//! hands it to one [`Filter`] at the end of the message.
//!
//! Written here rather than taken from a crate: the two established Rust
//! milter crates (`indymilter`, `milter`) are GPL-3, which the project's
//! MIT OR Apache-2.0 licence cannot take in, and the protocol a filter needs
//! (negotiation, a dozen commands, seven replies) is small; owning it means
//! every length is checked against our bounds and the parser is fuzzed with
//! the others.

mod server;
pub mod wire;

/// For the fuzz target (`fuzz/fuzz_targets/milter.rs`): a byte stream as
/// an MTA would send it, cut into frames, parsed and fed to one session,
/// each message answered with every kind of decision. Never panics, and
/// every cost is bounded by [`Limits`].
#[doc(hidden)]
pub fn fuzz_session(mut bytes: &[u8]) {
    let limits = Limits { max_message_bytes: 4096, max_headers: 16, max_recipients: 4, ..Limits::default() };
    let mut session = server::Session::default();
    let mut messages = 0usize;
    while let Ok(Some(wire::Frame { code, data, used })) = wire::next_frame(bytes, limits.max_frame) {
        bytes = &bytes[used..];
        let Ok(command) = wire::parse(code, data) else { return };
        match session.on_command(command, &limits) {
            Ok(server::Step::Decide(message)) => {
                assert!(message.raw.len() <= limits.max_message_bytes);
                assert!(message.headers.len() <= limits.max_headers);
                assert!(message.recipients.len() <= limits.max_recipients);
                let index = message.header_indices("subject").next().map_or(1, |(i, _)| i);
                let disposition = match messages % 5 {
                    0 => Disposition::Deliver,
                    1 => Disposition::Reject("550 5.7.1 no".into()),
                    2 => Disposition::Tempfail("451 4.7.1 later".into()),
                    3 => Disposition::Discard,
                    _ => Disposition::Quarantine("held".into()),
                };
                messages += 1;
                let decision = Decision {
                    change_headers: vec![(index, "Subject".into(), "[SPAM] x".into())],
                    add_headers: vec![("X-Test".into(), message.sender.clone())],
                    disposition,
                };
                let mut out = Vec::new();
                for response in session.responses(decision) {
                    wire::encode(&response, &mut out);
                }
            }
            Ok(server::Step::Close) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

pub use server::{Limits, Listen, Owner, ServeError, serve, serve_connection};

/// A message as the MTA handed it over, ready for a decision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// The client's address, as the MTA wrote it (empty when not sent).
    pub client_address: String,
    /// The envelope sender (without angle brackets).
    pub sender: String,
    /// The envelope recipients (without angle brackets), in order.
    pub recipients: Vec<String>,
    /// The MTA's queue id (macro `i`), when it sent one.
    pub queue_id: String,
    /// The headers in order: (name, value without the leading space).
    pub headers: Vec<(String, String)>,
    /// The message as it will be delivered (headers, blank line, body;
    /// CRLF line ends), up to [`Limits::max_message_bytes`].
    pub raw: Vec<u8>,
    /// The message was longer than the limit: `raw` is only its start.
    pub truncated: bool,
}

impl Message {
    /// The 1-based index of each header named `name` (case-insensitive),
    /// as the protocol's header changes count them.
    pub fn header_indices<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (u32, &'a str)> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .enumerate()
            .map(|(i, (_, value))| (i as u32 + 1, value.as_str()))
    }
}

/// What to do with a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Deliver it (with the changes).
    Deliver,
    /// Refuse it with this SMTP reply (`550 5.7.1 …`).
    Reject(String),
    /// Ask the client to try again later with this SMTP reply (`451 4.7.1 …`).
    Tempfail(String),
    /// Accept it and throw it away.
    Discard,
    /// Hold it in the MTA's quarantine with this reason.
    Quarantine(String),
}

/// A filter's decision for one message: header changes, then what happens
/// to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Headers to change (1-based index among headers of that name, name,
    /// new value; an empty value deletes it), done first.
    pub change_headers: Vec<(u32, String, String)>,
    /// Headers to add at the end.
    pub add_headers: Vec<(String, String)>,
    /// What happens to the message.
    pub disposition: Disposition,
}

impl Decision {
    /// Deliver it untouched.
    pub fn deliver() -> Decision {
        Decision { change_headers: Vec::new(), add_headers: Vec::new(), disposition: Disposition::Deliver }
    }
}

/// Decides for whole messages. One value serves every connection.
pub trait Filter: Send + Sync + 'static {
    /// The decision for a message, at its end. It should not take long: the
    /// MTA's SMTP client is waiting.
    fn decide(&self, message: Message) -> impl Future<Output = Decision> + Send;
}
