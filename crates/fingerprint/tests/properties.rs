//! Property tests: what must not change a fingerprint, and what must never
//! happen whatever the input.

use base64::Engine;
use proptest::prelude::*;
use starling_fingerprint::{Fingerprinter, Fingerprints, Key};

/// Ordinary words (no greetings, which are position-sensitive by design),
/// some of them non-ASCII so that charsets and encodings matter.
const VOCABULARY: &[&str] = &[
    "garden",
    "furniture",
    "delivery",
    "offer",
    "week",
    "price",
    "quality",
    "order",
    "today",
    "free",
    "shipping",
    "customer",
    "service",
    "product",
    "catalogue",
    "summer",
    "winter",
    "table",
    "chair",
    "lamp",
    "window",
    "door",
    "kitchen",
    "bread",
    "coffee",
    "market",
    "river",
    "mountain",
    "travel",
    "ticket",
    "hotel",
    "beach",
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "for",
    "with",
    "on",
    "our",
    "your",
    "new",
    "best",
    "café",
    "über",
    "naïve",
    "crème",
    "déjà",
    "smörgåsbord",
    "señor",
    "façade",
    "jalapeño",
    "Zürich",
    "Ωmega",
    "日本語",
    "текст",
    "données",
];

fn body_words() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(prop::sample::select(VOCABULARY), 20..160)
}

/// The words laid out in lines of at most `width` characters.
fn wrap(words: &[&str], width: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in words {
        if line > 0 && line + 1 + word.chars().count() > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += word.chars().count();
    }
    out.push('\n');
    out
}

fn quoted_printable(text: &str) -> String {
    let mut out = String::new();
    for line in text.split('\n') {
        let mut encoded = String::new();
        for &b in line.as_bytes() {
            let piece = if (b.is_ascii_graphic() && b != b'=') || b == b' ' {
                (b as char).to_string()
            } else {
                format!("={b:02X}")
            };
            if encoded.len() + piece.len() > 72 {
                out.push_str(&encoded);
                out.push_str("=\n");
                encoded.clear();
            }
            encoded.push_str(&piece);
        }
        out.push_str(&encoded);
        out.push('\n');
    }
    out
}

#[derive(Debug, Clone, Copy)]
enum Encoding {
    EightBit,
    QuotedPrintable,
    Base64,
}

/// Headers that vary per delivery.
#[derive(Debug, Clone)]
struct Envelope {
    subject: String,
    date: u32,
    id: u64,
    hops: usize,
}

fn envelope() -> impl Strategy<Value = Envelope> {
    ("[A-Za-z ]{0,30}", 0u32..1_000_000, any::<u64>(), 0usize..4).prop_map(|(subject, date, id, hops)| Envelope {
        subject,
        date,
        id,
        hops,
    })
}

fn message(text: &str, encoding: Encoding, envelope: &Envelope) -> Vec<u8> {
    let (cte, body) = match encoding {
        Encoding::EightBit => ("8bit", text.to_owned()),
        Encoding::QuotedPrintable => ("quoted-printable", quoted_printable(text)),
        Encoding::Base64 => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
            let lines: Vec<&str> = encoded.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect();
            ("base64", lines.join("\n") + "\n")
        }
    };
    let received: String = (0..envelope.hops)
        .map(|i| format!("Received: from relay{i}.example.net by mx.example.org; {} +0000\n", envelope.date + i as u32))
        .collect();
    format!(
        "{received}From: shop@example.com\nTo: customer@example.org\nSubject: {}\nDate: {}\nMessage-ID: <{:x}@example.com>\n\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: {cte}\n\n{body}",
        envelope.subject, envelope.date, envelope.id
    )
    .into_bytes()
}

fn fingerprint(raw: &[u8]) -> Fingerprints {
    Fingerprinter::new(&Key::DEVELOPMENT).fingerprint(raw)
}

/// The parts of the result that are sent to the network.
fn sent(fp: &Fingerprints) -> impl PartialEq + std::fmt::Debug {
    (fp.text, fp.fuzzy.clone(), fp.urls.clone(), fp.domains.clone(), fp.attachments.clone())
}

fn encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![Just(Encoding::EightBit), Just(Encoding::QuotedPrintable), Just(Encoding::Base64)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Re-encoding the body, re-wrapping its lines and changing the headers
    /// that vary per delivery leave the fingerprints unchanged.
    #[test]
    fn delivery_details_do_not_change_fingerprints(
        words in body_words(),
        (width_a, width_b) in (20usize..120, 20usize..120),
        (encoding_a, encoding_b) in (encoding(), encoding()),
        (envelope_a, envelope_b) in (envelope(), envelope()),
    ) {
        let a = fingerprint(&message(&wrap(&words, width_a), encoding_a, &envelope_a));
        let b = fingerprint(&message(&wrap(&words, width_b), encoding_b, &envelope_b));
        prop_assert!(a.fuzzy.is_some());
        prop_assert_eq!(sent(&a), sent(&b));
    }

    /// The words a local model learns from are the same under any network
    /// key, and fingerprinting with them gives the same fingerprints.
    #[test]
    fn model_words_do_not_depend_on_the_network_key(words in body_words(), encoding in encoding(), envelope in envelope()) {
        let raw = message(&wrap(&words, 72), encoding, &envelope);
        let (a, text_a) = Fingerprinter::new(&Key::DEVELOPMENT).fingerprint_with_words(&raw);
        let (_, text_b) = Fingerprinter::new(&Key::from_bytes([7; 32])).fingerprint_with_words(&raw);
        prop_assert_eq!(a.stats.words, text_a.words.len());
        prop_assert_eq!(&text_a, &text_b);
        let plain = fingerprint(&raw);
        prop_assert_eq!(sent(&a), sent(&plain));
    }

    /// Arbitrary bytes never panic and always give a result.
    #[test]
    fn arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..4096)) {
        let fp = fingerprint(&raw);
        prop_assert_eq!(fp.stats.bytes, raw.len());
    }

    /// Random MIME-shaped input (headers, boundaries, encodings in any order)
    /// never panics.
    #[test]
    fn arbitrary_mime_structure_never_panics(pieces in prop::collection::vec(prop::sample::select(&[
        "Content-Type: multipart/mixed; boundary=\"b\"\n", "Content-Type: multipart/alternative; boundary=b\n",
        "Content-Type: text/html; charset=utf-8\n", "Content-Type: text/plain; charset=x-bogus\n",
        "Content-Transfer-Encoding: base64\n", "Content-Transfer-Encoding: quoted-printable\n",
        "Content-Type: message/rfc822\n", "\n", "--b\n", "--b--\n", "<p style=\"display:none\">x", "</p>", "<!--",
        "=E9=\n", "SGVsbG8gd29ybGQ=\n", "garden furniture for sale today\n", "\u{200b}", "\r", "&amp;&#x200B;",
        "http://example.com/a?b=c ", "www.example.org ", "-- \n", "_______________\n", ">", "Dear John,\n",
    ][..]), 0..120)) {
        let raw = pieces.concat();
        let _ = fingerprint(raw.as_bytes());
    }
}
