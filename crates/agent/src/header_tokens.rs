//! The header tokens the local model learns from, beside the body's
//! normalised words. Which headers a message has and what kind of program
//! sent it separate an organisation's spam from its mail at least as well
//! as the words do: mailing-list and conversation headers (`List-Id`,
//! `In-Reply-To`, `References`), the mailer, the MIME structure, the
//! sender's and relays' domains. SpamBayes, bogofilter and SpamAssassin's
//! Bayes all mine headers the same way.
//!
//! The tokens are hashed by the model's feature extraction and never leave
//! the agent. Each is a short `kind:value` string; a message yields at most
//! [`MAX_TOKENS`], each value at most [`MAX_VALUE_CHARS`] characters, and
//! only the header block is looked at (at most 256 KiB, as for the other
//! facts).

use mail_parser::{HeaderName, HeaderValue, Host, Message, MimeHeaders};

/// Tokens per message, at most.
pub const MAX_TOKENS: usize = 128;
/// Characters of one token's value, at most.
pub const MAX_VALUE_CHARS: usize = 48;
/// Subject words, at most.
const MAX_SUBJECT_WORDS: usize = 24;
/// Headers looked through for `Authentication-Results`, at most.
const MAX_HEADERS_READ: usize = 1_000;
/// `Received` headers mined for relay domains and networks, at most.
const MAX_RELAYS: usize = 4;

/// Header names that say nothing about the sender: added by this
/// organisation's own servers and filters on the way in (so equal for spam
/// and ham, or an upstream filter's verdict the model must not learn to
/// echo), or by the agent itself.
fn ignored_name(name: &str) -> bool {
    const PREFIXES: [&str; 4] = ["x-spam", "x-starling", "x-dspam", "x-bogosity"];
    const NAMES: [&str; 6] =
        ["received", "delivered-to", "x-original-to", "return-path", "status", "authentication-results"];
    NAMES.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A header value as a token value: lower case, cut at the first digit
/// (versions and build numbers vary, the program does not) and at
/// [`MAX_VALUE_CHARS`], runs of white space as one space.
fn program(value: &str) -> String {
    let cut: String = value.chars().take_while(|c| !c.is_ascii_digit()).take(MAX_VALUE_CHARS).collect();
    cut.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// The last two labels of a host name (`mail.lists.example.org` →
/// `example.org`): what stays when a sender moves between its machines.
fn host_domain(host: &str) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = host.rsplit('.').take(2).collect();
    labels.into_iter().rev().collect::<Vec<_>>().join(".")
}

/// Whether an `Authentication-Results` value reports a failed SPF, DKIM or
/// DMARC check (`spf=fail`, `dkim=fail`, `dmarc=fail`; `softfail` too).
fn auth_failed(value: &str) -> bool {
    let value: String = value.chars().take(4_096).collect::<String>().to_ascii_lowercase();
    ["spf", "dkim", "dmarc"].iter().any(|method| {
        value.match_indices(method).any(|(at, _)| {
            let rest = value[at + method.len()..].trim_start();
            rest.strip_prefix('=').is_some_and(|r| {
                let result = r.trim_start();
                result.starts_with("fail") || result.starts_with("softfail")
            })
        })
    })
}

/// How many, in bands: exact up to 3, then "4-9" and "10+".
fn band(n: usize) -> &'static str {
    match n {
        0 => "0",
        1 => "1",
        2 => "2",
        3 => "3",
        4..=9 => "4-9",
        _ => "10+",
    }
}

/// The model's header tokens of a parsed header block.
pub fn of_message(message: &Message<'_>) -> Vec<String> {
    let mut tokens = Tokens(Vec::with_capacity(48));
    subject_tokens(&mut tokens, message);
    sender_tokens(&mut tokens, message);
    program_tokens(&mut tokens, message);
    content_tokens(&mut tokens, message);
    relay_tokens(&mut tokens, message);
    // Last, so that a message with thousands of headers crowds out nothing
    // else.
    header_name_tokens(&mut tokens, message);
    let Tokens(mut tokens) = tokens;
    tokens.sort_unstable();
    tokens.dedup();
    tokens
}

/// Tokens as they are found, at most [`MAX_TOKENS`] of them.
struct Tokens(Vec<String>);

impl Tokens {
    fn push(&mut self, kind: &str, value: &str) {
        if self.0.len() < MAX_TOKENS {
            let value: String = value.chars().take(MAX_VALUE_CHARS).collect();
            self.0.push(format!("{kind}:{value}"));
        }
    }
}

/// The subject's words and shape.
fn subject_tokens(tokens: &mut Tokens, message: &Message<'_>) {
    if let Some(subject) = message.subject() {
        for word in subject.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).take(MAX_SUBJECT_WORDS) {
            tokens.push("subject", &word.to_lowercase());
        }
        let letters: Vec<char> = subject.chars().filter(|c| c.is_alphabetic()).collect();
        if letters.len() >= 8 && letters.iter().all(|c| !c.is_lowercase()) {
            tokens.push("subject-shape", "capitals");
        }
        if subject.contains('!') {
            tokens.push("subject-shape", "exclamation");
        }
    }
}

/// Who sent it: address, domain, display-name words, whether the
/// organisation's servers found it forged, the reply address, how many
/// recipients.
fn sender_tokens(tokens: &mut Tokens, message: &Message<'_>) {
    let from = message.from().and_then(|a| a.first());
    let address = from.and_then(|a| a.address()).map(str::to_ascii_lowercase);
    if let Some(address) = &address {
        tokens.push("from", address);
        if let Some((_, domain)) = address.rsplit_once('@') {
            tokens.push("from-domain", domain);
        }
    }
    if let Some(name) = from.and_then(|a| a.name()) {
        for word in name.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).take(4) {
            tokens.push("from-name", &word.to_lowercase());
        }
    } else {
        tokens.push("from-name", "none");
    }
    // The organisation's own servers' word on the sender (RFC 8601): a
    // failed SPF, DKIM or DMARC check says the From address may be forged,
    // so it does not make the message a known sender's
    // (`learning::features`).
    if message
        .headers_raw()
        .take(MAX_HEADERS_READ)
        .any(|(name, value)| name.eq_ignore_ascii_case("authentication-results") && auth_failed(value))
    {
        tokens.push("from-auth", "fail");
    }
    let reply_to = message.reply_to().and_then(|a| a.first()).and_then(|a| a.address()).map(str::to_ascii_lowercase);
    if let (Some(reply), Some(address)) = (&reply_to, &address) {
        let domain = |a: &str| a.rsplit_once('@').map(|(_, d)| d.to_owned()).unwrap_or_default();
        tokens.push("reply-to", if domain(reply) == domain(address) { "same-domain" } else { "other-domain" });
    }
    let recipients = message.to().map_or(0, |a| a.iter().count()) + message.cc().map_or(0, |a| a.iter().count());
    tokens.push("recipients", band(recipients));
}

/// What made it: the Message-ID's domain, the mailer, the priority.
fn program_tokens(tokens: &mut Tokens, message: &Message<'_>) {
    if let Some(id) = message.message_id() {
        match id.rsplit_once('@') {
            Some((_, domain)) => tokens.push("message-id", &host_domain(domain.trim_end_matches('>'))),
            None => tokens.push("message-id", "no-domain"),
        }
    } else {
        tokens.push("message-id", "none");
    }

    for name in ["X-Mailer", "User-Agent"] {
        if let Some(value) = message.header_raw(name) {
            tokens.push("mailer", &program(value));
        }
    }
    if let Some(priority) = message.header_raw("X-Priority") {
        tokens.push("priority", &program(&priority.replace(|c: char| c.is_ascii_digit(), "#")));
    }
}

/// The MIME type, charset and transfer encoding.
fn content_tokens(tokens: &mut Tokens, message: &Message<'_>) {
    match message.content_type() {
        Some(ct) => {
            tokens.push("content-type", &format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")).to_lowercase());
            if let Some(charset) = ct.attribute("charset") {
                tokens.push("charset", &charset.to_ascii_lowercase());
            }
        }
        None => tokens.push("content-type", "none"),
    }
    if let HeaderValue::Text(encoding) =
        message.header(HeaderName::ContentTransferEncoding).unwrap_or(&HeaderValue::Empty)
    {
        tokens.push("transfer-encoding", &encoding.to_ascii_lowercase());
    }
}

/// Where it came from.
fn relay_tokens(tokens: &mut Tokens, message: &Message<'_>) {
    // Where it came from: the domains and networks of the relays that
    // handed it on (the newest few; the oldest are the sender's to forge).
    for received in message.received_all().take(MAX_RELAYS) {
        let host = received.from_iprev.as_deref().or(match &received.from {
            Some(Host::Name(name)) => Some(name.as_ref()),
            _ => None,
        });
        if let Some(host) = host {
            tokens.push("relay", &host_domain(host));
        }
        let ip = received.from_ip.or(match &received.from {
            Some(Host::IpAddr(ip)) => Some(*ip),
            _ => None,
        });
        match ip {
            Some(std::net::IpAddr::V4(v4)) => {
                let [a, b, c, _] = v4.octets();
                tokens.push("relay-net", &format!("{a}.{b}.{c}"));
            }
            Some(std::net::IpAddr::V6(v6)) => {
                let s = v6.segments();
                tokens.push("relay-net", &format!("{:x}:{:x}:{:x}", s[0], s[1], s[2]));
            }
            None => {}
        }
    }
}

/// Which headers there are (each name once), in lower case.
fn header_name_tokens(tokens: &mut Tokens, message: &Message<'_>) {
    let mut names: Vec<String> = message
        .headers()
        .iter()
        .map(|h| h.name.as_str().to_ascii_lowercase())
        .filter(|name| !ignored_name(name))
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in &names {
        tokens.push("header", name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::header_tokens;

    const MESSAGE: &[u8] = b"Return-Path: <bounce@lists.example.org>\r\n\
Received: from mx.lists.example.org (mx.lists.example.org [192.0.2.7])\r\n\tby mail.example.com; Mon, 1 Jan 2024 00:00:00 +0000\r\n\
From: Ann Other <ann@example.org>\r\n\
To: a@example.com, b@example.com\r\n\
Subject: Re: Meeting notes!\r\n\
Message-ID: <123@host.example.org>\r\n\
List-Id: <dev.lists.example.org>\r\n\
X-Mailer: Mutt 1.4.2i\r\n\
X-Spam-Status: No\r\n\
Content-Type: text/plain; charset=UTF-8\r\n\
\r\n\
Body.\r\n";

    #[test]
    fn headers_become_tokens() {
        let tokens = header_tokens(MESSAGE);
        for expected in [
            "subject:meeting",
            "subject-shape:exclamation",
            "header:list-id",
            "header:x-mailer",
            "from:ann@example.org",
            "from-domain:example.org",
            "from-name:ann",
            "recipients:2",
            "message-id:example.org",
            "mailer:mutt",
            "content-type:text/plain",
            "charset:utf-8",
            "relay:example.org",
            "relay-net:192.0.2",
        ] {
            assert!(tokens.iter().any(|t| t == expected), "{expected} missing from {tokens:?}");
        }
        // The organisation's own trace headers and other filters' verdicts
        // are not learnt.
        for absent in ["header:received", "header:return-path", "header:x-spam-status"] {
            assert!(!tokens.iter().any(|t| t == absent), "{absent} in {tokens:?}");
        }
    }

    #[test]
    fn a_failed_sender_check_is_a_token() {
        let with = |results: &str| {
            let raw = format!("Authentication-Results: {results}\r\nFrom: a@example.org\r\n\r\nbody");
            header_tokens(raw.as_bytes()).iter().any(|t| t == "from-auth:fail")
        };
        assert!(with("mx.example.com; spf=fail smtp.mailfrom=example.org"));
        assert!(with("mx.example.com;\r\n\tdkim=pass header.d=example.org;\r\n\tdmarc = fail header.from=example.org"));
        assert!(with("mx.example.com; SPF=SoftFail smtp.mailfrom=example.org"));
        assert!(!with("mx.example.com; spf=pass smtp.mailfrom=example.org; dkim=pass; dmarc=pass"));
        assert!(!with("mx.example.com; none"));
        assert!(
            !header_tokens(MESSAGE).iter().any(|t| t.starts_with("from-auth") || t == "header:authentication-results")
        );
    }

    #[test]
    fn hostile_headers_are_bounded() {
        let mut raw = Vec::new();
        for i in 0..5_000 {
            raw.extend_from_slice(format!("X-Header-{i}: {}\r\n", "v".repeat(100)).as_bytes());
        }
        raw.extend_from_slice(format!("Subject: {}\r\n\r\nbody", "word ".repeat(10_000)).as_bytes());
        let tokens = header_tokens(&raw);
        assert!(tokens.len() <= MAX_TOKENS);
        assert!(tokens.iter().all(|t| t.chars().count() <= MAX_VALUE_CHARS + 20));
        // No header block, or garbage for one: a few "none" tokens.
        assert!(header_tokens(b"").len() <= 8, "{:?}", header_tokens(b""));
        assert!(header_tokens(b"\xff\xfe: \x00\r\n\r\n").len() <= 8);
    }

    proptest::proptest! {
        /// Any bytes, and header blocks built from hostile pieces (folded
        /// lines, encoded words, bad addresses, odd Received lines): no
        /// panic, and every bound holds.
        #[test]
        fn any_input_is_bounded(
            raw in proptest::collection::vec(proptest::num::u8::ANY, 0..4096),
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    "(From|To|Cc|Reply-To|Sender): [ -~]{0,80}",
                    "Subject: (=\\?[a-z0-9-]{1,12}\\?[BQbq]\\?[ -~]{0,40}\\?=|[ -~]{0,120})",
                    "Received: from [ -~]{0,60}\\(\\[[0-9.:a-f]{0,40}\\]\\)[ -~]{0,40}",
                    "(Content-Type|Message-ID|X-Mailer|User-Agent|X-Priority): [ -~]{0,80}",
                    "[A-Za-z-]{1,30}: [ -~]{0,60}",
                    "\t[ -~]{0,60}",
                ],
                0..60,
            ),
        ) {
            for input in [raw, format!("{}\r\n\r\nbody", lines.join("\r\n")).into_bytes()] {
                let tokens = header_tokens(&input);
                proptest::prop_assert!(tokens.len() <= MAX_TOKENS);
                for token in &tokens {
                    let (kind, value) = token.split_once(':').expect("kind:value");
                    proptest::prop_assert!(!kind.is_empty());
                    proptest::prop_assert!(value.chars().count() <= MAX_VALUE_CHARS, "{token}");
                }
            }
        }
    }
}
