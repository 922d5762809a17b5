//! Raw message → the pieces fingerprints are made of, via `mail-parser`.
//!
//! `mail-parser` decodes transfer encodings and charsets and never panics; it
//! keeps its own multipart stack on the heap, so nesting cannot overflow the
//! call stack. On top of it this module bounds what is *looked at*: parts
//! deeper than [`MAX_MIME_DEPTH`], parts past [`MAX_PARTS`], and text past
//! [`MAX_TEXT_BYTES_PER_PART`] are ignored, and each cut is reported.
//!
//! Only the top-level message's own body is fingerprinted: text inside an
//! attached `message/rfc822` (a forwarded mail) is somebody else's message.

use std::borrow::Cow;

use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::{Address, HeaderName, Message, MessageParser, MessagePart, MimeHeaders, PartType};

use crate::Problem;
use crate::limits::{MAX_ATTACHMENTS, MAX_MIME_DEPTH, MAX_PARTS, MAX_TEXT_BYTES_PER_PART};
use crate::normalize::Personal;

/// Bytes of a part that the charset detector looks at; enough for a
/// confident guess, and a bound on its cost.
const CHARSET_SAMPLE_BYTES: usize = 4096;

/// A piece of the message body to normalise.
pub(crate) enum Block<'m> {
    Plain(Cow<'m, str>),
    Html(Cow<'m, str>),
}

/// Parses the headers fingerprinting needs (MIME structure and recipients);
/// all other headers are skipped without being decoded.
pub(crate) fn parser() -> MessageParser {
    MessageParser::new()
        .header_content_type(HeaderName::ContentType)
        .header_content_type(HeaderName::ContentDisposition)
        .header_text(HeaderName::ContentTransferEncoding)
        .header_address(HeaderName::To)
        .header_address(HeaderName::Cc)
        .default_header_ignore()
}

/// Which parts are too deep to look at: `true` at index `id` when part `id`
/// is nested more than [`MAX_MIME_DEPTH`] multiparts down.
pub(crate) fn too_deep(message: &Message<'_>) -> Vec<bool> {
    let mut deep = vec![false; message.parts.len()];
    let mut stack = vec![(0u32, 0usize)];
    let mut visited = 0;
    while let Some((id, depth)) = stack.pop() {
        visited += 1;
        if visited > message.parts.len() {
            break; // A malformed tree with a cycle; mail-parser never builds one.
        }
        let Some(part) = message.parts.get(id as usize) else { continue };
        deep[id as usize] = depth > MAX_MIME_DEPTH;
        if let PartType::Multipart(children) = &part.body {
            stack.extend(children.iter().map(|&child| (child, depth + 1)));
        }
    }
    deep
}

/// The ids of the parts that make up the text body. When `mail-parser` found
/// none because a malformed part (an unterminated multipart, say) was filed
/// as an attachment, inline text parts among the attachments stand in.
pub(crate) fn text_body_ids(message: &Message<'_>) -> Vec<u32> {
    if !message.text_body.is_empty() || !message.html_body.is_empty() {
        return message.text_body.clone();
    }
    message
        .attachments
        .iter()
        .copied()
        .filter(|&id| {
            message.parts.get(id as usize).is_some_and(|part| {
                matches!(part.body, PartType::Text(_) | PartType::Html(_))
                    && part.attachment_name().is_none()
                    && !part.content_disposition().is_some_and(|d| d.is_attachment())
            })
        })
        .collect()
}

/// The text blocks of the parts `ids`, bounded, with problems noted.
pub(crate) fn blocks<'m>(
    message: &'m Message<'m>,
    ids: &[u32],
    deep: &[bool],
    problems: &mut Vec<Problem>,
) -> Vec<Block<'m>> {
    let mut blocks = Vec::new();
    for &id in ids {
        if id as usize >= MAX_PARTS {
            note(problems, Problem::TooManyParts { limit: MAX_PARTS });
            break;
        }
        if deep.get(id as usize).copied().unwrap_or(false) {
            note(problems, Problem::TooDeep { limit: MAX_MIME_DEPTH });
            continue;
        }
        let Some(part) = message.parts.get(id as usize) else { continue };
        if part.is_encoding_problem {
            note(problems, Problem::EncodingProblem);
            if let Some(block) = recover(part, problems) {
                blocks.push(block);
                continue;
            }
        }
        let text = match &part.body {
            PartType::Text(text) | PartType::Html(text) => text,
            _ => continue,
        };
        let text = match redetect(message, part) {
            Some(text) => Cow::Owned(bounded(&text, problems).to_owned()),
            None => Cow::Borrowed(bounded(text, problems)),
        };
        blocks.push(if matches!(part.body, PartType::Html(_)) { Block::Html(text) } else { Block::Plain(text) });
    }
    blocks
}

/// Decodes a text part that `mail-parser` left undecoded because it was
/// malformed (typically a base64 or quoted-printable part whose multipart was
/// never closed): its transfer encoding is undone leniently and its charset
/// decoded. `None` when the part was not encoded or cannot be decoded.
fn recover<'m>(part: &MessagePart<'m>, problems: &mut Vec<Problem>) -> Option<Block<'m>> {
    let PartType::Text(raw) = &part.body else { return None };
    let encoding = part.content_transfer_encoding()?.trim().to_ascii_lowercase();
    if encoding != "base64" && encoding != "quoted-printable" {
        return None;
    }
    let bytes = transfer_decode(part, bounded(raw, problems).as_bytes())?;
    let text = Cow::Owned(decode_charset(part, &bytes));
    let is_html = part.content_type().is_some_and(|ct| ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("html")));
    Some(if is_html { Block::Html(text) } else { Block::Plain(text) })
}

/// Decodes a text part whose 8-bit content carries no charset, claims to be
/// US-ASCII, or claims to be UTF-8 but is not, with the charset detected from
/// its bytes. Such parts are common in old and hostile mail, and without this
/// the same text would decode differently depending on whether a relay added
/// a default label. `None` when the label can be trusted or the text is
/// plain ASCII.
fn redetect(message: &Message<'_>, part: &MessagePart<'_>) -> Option<String> {
    let decoded = match &part.body {
        PartType::Text(text) | PartType::Html(text) => text,
        _ => return None,
    };
    if decoded.is_ascii() || (trusted_charset(part).is_some() && !decoded.contains('\u{FFFD}')) {
        return None;
    }
    let raw = message.raw_message.get(part.offset_body as usize..part.offset_end as usize)?;
    let bytes = transfer_decode(part, &raw[..raw.len().min(MAX_TEXT_BYTES_PER_PART)])?;
    Some(decode_charset(part, &bytes))
}

/// Undoes a part's transfer encoding, leniently (whitespace in base64 is
/// skipped).
fn transfer_decode<'b>(part: &MessagePart<'_>, raw: &'b [u8]) -> Option<Cow<'b, [u8]>> {
    match part.content_transfer_encoding().map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        Some("base64") => {
            let compact: Vec<u8> = raw.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
            base64_decode(&compact).map(Cow::Owned)
        }
        Some("quoted-printable") => quoted_printable_decode(raw).map(Cow::Owned),
        _ => Some(Cow::Borrowed(raw)),
    }
}

/// The part's charset label when it names a real, known 8-bit or multi-byte
/// charset (not the US-ASCII default that relays add blindly).
fn trusted_charset<'p>(part: &'p MessagePart<'_>) -> Option<&'p str> {
    let label = part.content_type()?.attribute("charset")?.trim();
    let ascii = label.eq_ignore_ascii_case("us-ascii") || label.eq_ignore_ascii_case("ascii");
    (!ascii && charset_decoder(label.as_bytes()).is_some()).then_some(label)
}

fn is_utf8_label(label: &str) -> bool {
    label.eq_ignore_ascii_case("utf-8") || label.eq_ignore_ascii_case("utf8")
}

/// Text from transfer-decoded bytes: by the trusted label, else as UTF-8 when
/// valid or when it is UTF-8 text with a few stray bytes in it, else as
/// Windows-1252 when 8-bit bytes are rare (a stray accent or quote in English
/// text), else by Firefox's charset detector (chardetng). Every step depends
/// on the bytes alone, so the same text always decodes the same way.
fn decode_charset(part: &MessagePart<'_>, bytes: &[u8]) -> String {
    let label = trusted_charset(part);
    if let Some(decode) = label.filter(|l| !is_utf8_label(l)).and_then(|l| charset_decoder(l.as_bytes())) {
        return decode(bytes);
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return text.to_owned();
    }
    if mostly_utf8(bytes) {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let eight_bit = bytes.iter().filter(|b| !b.is_ascii()).count();
    if eight_bit * 50 < bytes.len() {
        return encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes).0.into_owned();
    }
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    let sample = &bytes[..bytes.len().min(CHARSET_SAMPLE_BYTES)];
    detector.feed(sample, sample.len() == bytes.len());
    let encoding = detector.guess(None, chardetng::Utf8Detection::Allow);
    encoding.decode_without_bom_handling(bytes).0.into_owned()
}

/// Whether bytes that are not valid UTF-8 are still UTF-8 text with a few
/// stray bytes in it — a Windows-1252 dash pasted into a UTF-8 template, a
/// line cut in the middle of a character: at least as many multi-byte
/// characters decode as there are invalid sequences. Such text is decoded as
/// UTF-8 with the stray bytes replaced; guessing a charset for the whole of
/// it would turn every one of its non-ASCII letters into two or three others
/// and split the words they sit in. Text in an 8-bit charset has almost no
/// valid multi-byte sequences (an accented letter is one byte followed by
/// ASCII), so it still goes to the detection.
fn mostly_utf8(bytes: &[u8]) -> bool {
    let (mut characters, mut invalid) = (0usize, 0usize);
    for chunk in bytes.utf8_chunks() {
        characters += chunk.valid().chars().filter(|c| !c.is_ascii()).count();
        invalid += usize::from(!chunk.invalid().is_empty());
    }
    characters >= invalid
}

fn bounded<'t>(text: &'t str, problems: &mut Vec<Problem>) -> &'t str {
    if text.len() <= MAX_TEXT_BYTES_PER_PART {
        return text;
    }
    note(problems, Problem::PartTruncated { limit: MAX_TEXT_BYTES_PER_PART });
    &text[..text.floor_char_boundary(MAX_TEXT_BYTES_PER_PART)]
}

/// The decoded contents of the message's attachments and inline images.
pub(crate) fn attachments<'m>(message: &'m Message<'m>, deep: &[bool], problems: &mut Vec<Problem>) -> Vec<&'m [u8]> {
    let mut out = Vec::new();
    for &id in &message.attachments {
        if id as usize >= MAX_PARTS || deep.get(id as usize).copied().unwrap_or(false) {
            continue;
        }
        let Some(part) = message.parts.get(id as usize) else { continue };
        let contents: &[u8] = match &part.body {
            PartType::Binary(bytes) | PartType::InlineBinary(bytes) => bytes,
            PartType::Text(text) | PartType::Html(text) => text.as_bytes(),
            PartType::Message(_) | PartType::Multipart(_) => continue,
        };
        if out.len() == MAX_ATTACHMENTS {
            note(problems, Problem::TooManyAttachments { limit: MAX_ATTACHMENTS });
            break;
        }
        out.push(contents);
    }
    out
}

/// The recipient's addresses and names, from `To`, `Cc`, `Delivered-To`,
/// `X-Original-To` and `Envelope-To`.
pub(crate) fn personal(message: &Message<'_>) -> Personal {
    let mut personal = Personal::default();
    let Some(root) = message.parts.first() else { return personal };
    for header in &root.headers {
        match &header.name {
            HeaderName::To | HeaderName::Cc => {
                if let Some(address) = header.value.as_address() {
                    add_address_list(&mut personal, address);
                }
            }
            HeaderName::Other(name)
                if ["delivered-to", "x-original-to", "envelope-to"].iter().any(|n| name.eq_ignore_ascii_case(n)) =>
            {
                let raw = message.raw_message.get(header.offset_start as usize..header.offset_end as usize);
                let raw = raw.map(String::from_utf8_lossy).unwrap_or_default();
                for token in raw.split(|c: char| c.is_whitespace() || matches!(c, ',' | '<' | '>' | ';')) {
                    if token.contains('@') {
                        personal.add(token, None);
                    }
                }
            }
            _ => {}
        }
    }
    personal
}

fn add_address_list(personal: &mut Personal, address: &Address<'_>) {
    for addr in address.iter().take(64) {
        if let Some(email) = addr.address() {
            personal.add(email, addr.name());
        }
    }
}

/// Records a problem once.
pub(crate) fn note(problems: &mut Vec<Problem>, problem: Problem) {
    if !problems.contains(&problem) {
        problems.push(problem);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Fingerprinter, Key};

    #[test]
    fn utf8_text_with_a_few_stray_bytes_is_still_utf8() {
        assert!(mostly_utf8(b"caf\xc3\xa9 \xe2\x80\x94 hitch \x96 free"));
        assert!(mostly_utf8(
            "\u{1d41e}".repeat(50).as_bytes().iter().copied().chain([0x96]).collect::<Vec<_>>().as_slice()
        ));
        // Windows-1252 (or Latin-1) text: single 8-bit bytes between ASCII.
        assert!(!mostly_utf8(b"caf\xe9 cr\xe8me br\xfbl\xe9e \x96 na\xefve"));
        assert!(!mostly_utf8(b"\xff\xfe"));
    }

    /// A UTF-8 template with look-alike letters and one Windows-1252 dash
    /// pasted in: the text is the same as with a real dash, not a charset
    /// guess that turns every look-alike into three other letters.
    #[test]
    fn a_stray_byte_does_not_change_how_utf8_text_decodes() {
        let body = |dash: &[u8]| {
            let mut raw = b"From: a@example.com\nSubject: offer\nMIME-Version: 1.0\n\
                Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
                .to_vec();
            for _ in 0..8 {
                raw.extend_from_slice("D\u{1d41e}ar friend, a succ\u{1d41e}ssful and hitch ".as_bytes());
                raw.extend_from_slice(dash);
                raw.extend_from_slice(" free transaction of gr\u{1d41a}at value awaits you today.\n".as_bytes());
            }
            raw
        };
        let fingerprinter = Fingerprinter::new(&Key::DEVELOPMENT);
        let clean = fingerprinter.fingerprint(&body("\u{2013}".as_bytes()));
        let stray = fingerprinter.fingerprint(&body(b"\x96"));
        assert!(clean.text.is_some());
        assert_eq!(clean.text, stray.text);
        assert_eq!(clean.fuzzy, stray.fuzzy);
    }
}
