//! What the rules need to know about a message, from its headers: senders,
//! relays, subject, Message-ID and the agent's own tag mark. Nothing here
//! leaves the agent.

use std::net::IpAddr;

use mail_parser::{HeaderName, HeaderValue, Host, MessageParser};

/// The header the tag action adds (see [`crate::tagging`]).
pub const TAG_HEADER: &str = "X-Starling-Tagged";
/// The in-line filter's verdict header (see `inline.rs`).
pub const VERDICT_HEADER: &str = "X-Starling-Verdict";

/// Header bytes looked at, at most; what follows is body.
const MAX_HEADER_BYTES: usize = 256 << 10;

/// A host that relayed the message, from a `Received` header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Relay {
    /// Its name (the reverse DNS name when the header gives one), lower case.
    pub host: Option<String>,
    /// Its address.
    pub ip: Option<IpAddr>,
}

/// Header facts about one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The Message-ID, without angle brackets.
    pub message_id: Option<String>,
    /// The decoded Subject; `None` when there is no Subject header.
    pub subject: Option<String>,
    /// Sender addresses (From, Sender, Return-Path), lower case, distinct.
    pub senders: Vec<String>,
    /// The first From address as `Name <address>`.
    pub from_header: Option<String>,
    /// Relays named by the newest `Received` headers, newest first.
    pub relays: Vec<Relay>,
    /// The value of the agent's tag header, if present.
    pub tag_mark: Option<String>,
    /// The values of the in-line verdict header (at most four).
    pub verdict_marks: Vec<String>,
    /// The local model's header tokens ([`crate::header_tokens`]), when
    /// read with [`Facts::with_header_tokens`]; empty otherwise.
    pub header_tokens: Vec<String>,
}

impl Facts {
    /// Reads the facts from a raw message; `received_headers` bounds how
    /// many `Received` headers are trusted. Never fails: a message without
    /// headers has empty facts.
    pub fn from_message(raw: &[u8], received_headers: usize) -> Facts {
        Facts::read(raw, received_headers, false)
    }

    /// The facts and the local model's header tokens, from one parse.
    pub fn with_header_tokens(raw: &[u8], received_headers: usize) -> Facts {
        Facts::read(raw, received_headers, true)
    }

    fn read(raw: &[u8], received_headers: usize, tokens: bool) -> Facts {
        let head = &raw[..header_end(raw).min(MAX_HEADER_BYTES)];
        let Some(message) = MessageParser::new().parse_headers(head) else { return Facts::default() };
        let mut facts = Facts {
            message_id: message.message_id().map(|id| id.trim().to_owned()).filter(|id| !id.is_empty()),
            subject: message.subject().map(|s| s.trim().to_owned()),
            ..Facts::default()
        };
        let mut add = |address: &str| {
            let address = address.trim().trim_matches(['<', '>']).to_ascii_lowercase();
            if address.contains('@') && !facts.senders.contains(&address) {
                facts.senders.push(address);
            }
        };
        if let Some(from) = message.from() {
            for addr in from.iter() {
                if let Some(a) = addr.address() {
                    add(a);
                }
            }
        }
        if let Some(sender) = message.sender() {
            for addr in sender.iter() {
                if let Some(a) = addr.address() {
                    add(a);
                }
            }
        }
        match message.return_path() {
            HeaderValue::Text(text) => add(text),
            HeaderValue::TextList(list) => list.iter().for_each(|t| add(t)),
            _ => {}
        }
        facts.from_header =
            message.from().and_then(|from| from.first()).map(|addr| match (addr.name(), addr.address()) {
                (Some(name), Some(address)) => format!("{name} <{address}>"),
                (None, Some(address)) => format!("<{address}>"),
                (Some(name), None) => name.to_owned(),
                (None, None) => String::new(),
            });
        facts.relays = message
            .received_all()
            .take(received_headers)
            .map(|received| {
                let named = |host: &Host<'_>| match host {
                    Host::Name(name) => Some(name.to_ascii_lowercase()),
                    Host::IpAddr(_) => None,
                };
                let host = received
                    .from_iprev
                    .as_deref()
                    .map(str::to_ascii_lowercase)
                    .or_else(|| received.from.as_ref().and_then(named));
                let ip = received.from_ip.or(match &received.from {
                    Some(Host::IpAddr(ip)) => Some(*ip),
                    _ => None,
                });
                Relay { host, ip }
            })
            .collect();
        facts.tag_mark = message
            .header_values(HeaderName::Other(TAG_HEADER.into()))
            .find_map(|value| value.as_text().map(|t| t.trim().to_owned()));
        // A sender may add its own (forged) marks; a few are kept so the
        // real one is among them.
        facts.verdict_marks = message
            .header_values(HeaderName::Other(VERDICT_HEADER.into()))
            .filter_map(|value| value.as_text().map(|t| t.trim().to_owned()))
            .take(4)
            .collect();
        if tokens {
            facts.header_tokens = crate::header_tokens::of_message(&message);
        }
        facts
    }

    /// Whether the subject is missing or blank.
    pub fn subject_is_empty(&self) -> bool {
        self.subject.as_deref().is_none_or(|s| s.trim().is_empty())
    }
}

/// The offset just past the header block (the blank line), or the length.
pub fn header_end(raw: &[u8]) -> usize {
    let mut at = 0;
    while at < raw.len() {
        let line_end = memchr_newline(&raw[at..]).map_or(raw.len(), |i| at + i + 1);
        let line = &raw[at..line_end];
        if line == b"\n" || line == b"\r\n" {
            return line_end;
        }
        at = line_end;
    }
    raw.len()
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// The model's header tokens of a raw message
/// ([`crate::header_tokens`]); the agent reads them with the message's
/// other facts ([`Facts::with_header_tokens`]), in the same parse.
pub fn header_tokens(raw: &[u8]) -> Vec<String> {
    Facts::with_header_tokens(raw, 0).header_tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = b"Return-Path: <Bounce@Lists.Example.org>\r\n\
Received: from mx.partner.net (mx.partner.net [192.0.2.7])\r\n\tby mail.example.com with ESMTPS; Mon, 1 Jan 2024 00:00:00 +0000\r\n\
Received: from inner (inner.partner.net [10.0.0.1]) by mx.partner.net; Mon, 1 Jan 2024 00:00:00 +0000\r\n\
From: \"Alice Smith\" <Alice@Example.com>\r\n\
Sender: list@lists.example.org\r\n\
Subject: =?utf-8?q?Caf=C3=A9?=\r\n\
Message-ID: <abc@example.com>\r\n\
X-Starling-Tagged: v1 00 11\r\n\
\r\n\
Body with From: nobody@else.com\r\n";

    #[test]
    fn senders_relays_subject_and_mark() {
        let facts = Facts::from_message(MESSAGE, 3);
        assert_eq!(facts.senders, ["alice@example.com", "list@lists.example.org", "bounce@lists.example.org"]);
        assert_eq!(facts.from_header.as_deref(), Some("Alice Smith <Alice@Example.com>"));
        assert_eq!(facts.subject.as_deref(), Some("Café"));
        assert_eq!(facts.message_id.as_deref(), Some("abc@example.com"));
        assert_eq!(facts.tag_mark.as_deref(), Some("v1 00 11"));
        assert_eq!(facts.relays.len(), 2);
        assert_eq!(facts.relays[0].host.as_deref(), Some("mx.partner.net"));
        assert_eq!(facts.relays[0].ip, Some("192.0.2.7".parse().unwrap()));
        assert_eq!(facts.relays[1].host.as_deref(), Some("inner.partner.net"));
        assert_eq!(Facts::from_message(MESSAGE, 1).relays.len(), 1);
    }

    #[test]
    fn hostile_input_gives_empty_facts() {
        for raw in [&b""[..], b"\r\n\r\n", b"\xff\xfe garbage", b"Subject:\r\n\r\n"] {
            let facts = Facts::from_message(raw, 3);
            assert!(facts.subject_is_empty());
            assert!(facts.senders.is_empty());
        }
        let huge = vec![b'X'; 10 << 20];
        let _ = Facts::from_message(&huge, 3);
    }

    #[test]
    fn header_end_finds_the_blank_line() {
        assert_eq!(header_end(b"A: b\r\n\r\nbody"), 8);
        assert_eq!(header_end(b"A: b\n\nbody"), 6);
        assert_eq!(header_end(b"A: b\n"), 5);
    }
}
