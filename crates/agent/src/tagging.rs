//! The tag action's rewrite, and the mark that tells the agent's own tagged
//! copies from everything else.
//!
//! A tagged copy carries `X-Starling-Tagged: v1 <nonce> <mac>`, where `mac`
//! is a keyed BLAKE3 hash of the nonce under the agent's secret. A sender
//! cannot forge a valid mark, so a spammer cannot skip filtering by adding
//! the header; the agent can recognise its copies after a crash or restart
//! without remembering them.

use std::fmt::Write as _;

use crate::facts::{TAG_HEADER, header_end};

/// Makes and verifies tag marks.
#[derive(Clone)]
pub struct Marker {
    key: [u8; 32],
}

impl std::fmt::Debug for Marker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Marker(..)")
    }
}

impl Marker {
    /// A marker keyed by the agent's secret.
    pub fn new(secret: &[u8; 32]) -> Marker {
        Marker { key: blake3::derive_key("starling agent tag mark v1", secret) }
    }

    /// A fresh mark.
    pub fn mark(&self) -> String {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).expect("the operating system's random source");
        let nonce = hex::encode(nonce);
        format!("v1 {nonce} {}", self.mac(&nonce))
    }

    /// Whether `value` is a mark this agent made.
    pub fn verify(&self, value: &str) -> bool {
        let mut parts = value.split_ascii_whitespace();
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("v1"), Some(nonce), Some(mac), None) => same_mac(&self.mac(nonce), mac),
            _ => false,
        }
    }

    /// The nonce of a mark (to find a tagged copy on the server).
    pub fn nonce(value: &str) -> Option<&str> {
        value.split_ascii_whitespace().nth(1)
    }

    /// A fresh in-line verdict mark for a message of this class and body
    /// (the body after the header, as the MTA received it): `class; v1
    /// <nonce> <mac>`, where the MAC binds the class to this body, so the
    /// mark cannot be moved to other mail.
    pub fn verdict_mark(&self, class: &str, body: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).expect("the operating system's random source");
        let nonce = hex::encode(nonce);
        format!("{class}; v1 {nonce} {}", self.verdict_mac(class, &nonce, body))
    }

    /// The class of a verdict mark this agent made for this body, or `None`
    /// (a mark of another agent, a forged one, or a changed body).
    pub fn verify_verdict<'a>(&self, value: &'a str, body: &[u8]) -> Option<&'a str> {
        let (class, mark) = value.split_once(';')?;
        let class = class.trim();
        let mut parts = mark.split_ascii_whitespace();
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("v1"), Some(nonce), Some(mac), None) => {
                same_mac(&self.verdict_mac(class, nonce, body), mac).then_some(class)
            }
            _ => None,
        }
    }

    fn verdict_mac(&self, class: &str, nonce: &str, body: &[u8]) -> String {
        // The body as delivered may differ in line ends (a Maildir keeps LF,
        // IMAP sends CRLF) and in trailing blank lines: neither counts.
        let mut digest = blake3::Hasher::new_keyed(&self.key);
        digest.update(b"starling in-line verdict v1\0");
        digest.update(class.as_bytes());
        digest.update(b"\0");
        digest.update(nonce.as_bytes());
        digest.update(b"\0");
        let end = body.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |i| i + 1);
        for chunk in body[..end].split(|&b| b == b'\r') {
            digest.update(chunk);
        }
        hex::encode(&digest.finalize().as_bytes()[..16])
    }

    fn mac(&self, nonce: &str) -> String {
        hex::encode(&blake3::keyed_hash(&self.key, nonce.as_bytes()).as_bytes()[..16])
    }
}

/// Constant-time comparison of two MACs' hex strings.
fn same_mac(expected: &str, given: &str) -> bool {
    expected.len() == given.len() && expected.bytes().zip(given.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The message rewritten for the tag action: the mark header first, any
/// other (forged) mark header removed, `prefix` in front of the subject (a
/// subject is added when there is none). The body is untouched, byte for
/// byte; the line ending style of the header is kept.
pub fn rewrite(raw: &[u8], prefix: &str, mark: &str) -> Vec<u8> {
    let end = header_end(raw);
    let (head, body) = raw.split_at(end);
    let newline: &[u8] = if head.windows(2).any(|w| w == b"\r\n") { b"\r\n" } else { b"\n" };
    let mut out = Vec::with_capacity(raw.len() + prefix.len() + 96);
    let mut first = String::new();
    let _ = write!(first, "{TAG_HEADER}: {mark}");
    out.extend_from_slice(first.as_bytes());
    out.extend_from_slice(newline);

    let mut subject_done = false;
    let mut skipping = false;
    let mut lines = split_lines(head).peekable();
    let mut blank: &[u8] = b"";
    while let Some(line) = lines.next() {
        let content = trim_newline(line);
        if content.is_empty() && lines.peek().is_none() {
            blank = line; // the separator line, written after a possible new Subject
            break;
        }
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if continuation {
            if !skipping {
                out.extend_from_slice(line);
            }
            continue;
        }
        skipping = starts_with_ignore_case(content, TAG_HEADER.as_bytes())
            && content.get(TAG_HEADER.len()).is_some_and(|b| *b == b':');
        if skipping {
            continue;
        }
        if !subject_done && starts_with_ignore_case(content, b"subject:") {
            subject_done = true;
            let value = &line[b"subject:".len()..];
            let value_start = value.iter().position(|b| *b != b' ' && *b != b'\t').unwrap_or(value.len());
            out.extend_from_slice(&line[..b"subject:".len()]);
            out.push(b' ');
            out.extend_from_slice(prefix.as_bytes());
            let rest = &value[value_start..];
            if !trim_newline(rest).is_empty() {
                out.push(b' ');
            }
            out.extend_from_slice(rest);
            if !line.ends_with(b"\n") {
                out.extend_from_slice(newline);
            }
            continue;
        }
        out.extend_from_slice(line);
        if !line.ends_with(b"\n") {
            out.extend_from_slice(newline);
        }
    }
    if !subject_done {
        out.extend_from_slice(b"Subject: ");
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(newline);
    }
    if blank.is_empty() {
        out.extend_from_slice(newline);
    } else {
        out.extend_from_slice(blank);
    }
    out.extend_from_slice(body);
    out
}

fn split_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split_inclusive(|b| *b == b'\n')
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn starts_with_ignore_case(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack.len() >= prefix.len() && haystack[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Facts;

    #[test]
    fn a_verdict_mark_holds_for_its_body_only() {
        let marker = Marker::new(&[7; 32]);
        let body = b"Cheap pills.\r\nBuy now.\r\n";
        let mark = marker.verdict_mark("spam", body);
        assert!(mark.starts_with("spam; v1 "));
        assert_eq!(marker.verify_verdict(&mark, body), Some("spam"));
        // As a Maildir stores it: LF line ends, a trailing blank line.
        assert_eq!(marker.verify_verdict(&mark, b"Cheap pills.\nBuy now.\n\n"), Some("spam"));
        // Another body, another class, another key: no.
        assert_eq!(marker.verify_verdict(&mark, b"Hello, Bob.\r\n"), None);
        assert_eq!(marker.verify_verdict(&mark.replacen("spam", "clean", 1), body), None);
        assert_eq!(Marker::new(&[8; 32]).verify_verdict(&mark, body), None);
        // A tag mark is not a verdict mark, and the reverse.
        assert_eq!(marker.verify_verdict(&marker.mark(), body), None);
        assert!(!marker.verify(&mark));
    }

    fn marker() -> Marker {
        Marker::new(&[7; 32])
    }

    #[test]
    fn marks_verify_and_cannot_be_forged() {
        let m = marker();
        let mark = m.mark();
        assert!(m.verify(&mark));
        assert!(!Marker::new(&[8; 32]).verify(&mark));
        assert!(!m.verify("v1 00 00"));
        assert!(!m.verify(""));
        let mut tampered = mark.clone();
        tampered.replace_range(3..4, if &mark[3..4] == "0" { "1" } else { "0" });
        assert!(!m.verify(&tampered));
    }

    #[test]
    fn subject_is_prefixed_and_body_kept() {
        let raw = b"From: a@example.com\r\nSubject: Cheap\r\n  watches\r\nX-Starling-Tagged: forged\r\n  continued\r\n\r\nBody\r\n\r\nmore";
        let out = rewrite(raw, "[SPAM]", "v1 aa bb");
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(
            text,
            "X-Starling-Tagged: v1 aa bb\r\nFrom: a@example.com\r\nSubject: [SPAM] Cheap\r\n  watches\r\n\r\nBody\r\n\r\nmore"
        );
        let facts = Facts::from_message(&out, 0);
        assert_eq!(facts.subject.as_deref(), Some("[SPAM] Cheap watches"));
        assert_eq!(facts.tag_mark.as_deref(), Some("v1 aa bb"));
    }

    #[test]
    fn missing_or_empty_subject_and_bare_lf() {
        let out = rewrite(b"From: a@example.com\n\nBody\n", "[SPAM]", "v1 aa bb");
        assert_eq!(out, b"X-Starling-Tagged: v1 aa bb\nFrom: a@example.com\nSubject: [SPAM]\n\nBody\n");
        let out = rewrite(b"Subject:\r\n\r\nx", "[SPAM]", "m");
        assert_eq!(out, b"X-Starling-Tagged: m\r\nSubject: [SPAM]\r\n\r\nx");
        let out = rewrite(b"Subject: =?utf-8?q?Caf=C3=A9?=\r\n\r\n", "[SPAM]", "m");
        assert_eq!(Facts::from_message(&out, 0).subject.as_deref(), Some("[SPAM] Café"));
    }

    #[test]
    fn headers_without_body_or_newline() {
        let out = rewrite(b"Subject: x", "[SPAM]", "m");
        assert_eq!(out, b"X-Starling-Tagged: m\nSubject: [SPAM] x\n\n");
        let out = rewrite(b"", "[SPAM]", "m");
        assert_eq!(out, b"X-Starling-Tagged: m\nSubject: [SPAM]\n\n");
    }
}
