//! Starling's fingerprint engine: a raw e-mail in, keyed fingerprints out.
//!
//! A [`Fingerprinter`] holds a network [`Key`] and turns the bytes of a
//! message into [`Fingerprints`]: one-way, keyed, versioned values that let a
//! network recognise the same campaign again without ever seeing the mail.
//! The kinds ([`Kind`]) are
//! - **text**: a digest of the normalised text (exact match);
//! - **fuzzy**: a [`MinHash`] signature over character n-grams, with index keys
//!   ([`MinHash::band_keys`]) and a [`Similarity`] estimate that survives
//!   mutations (added words, changed names, numbers and links);
//! - **url** and **domain**: digests of each link's host and path, and of its
//!   registrable domain;
//! - **attachment**: digests of decoded attachments and images.
//!
//! Design decision: normalisation does the heavy lifting. Everything that a
//! spammer varies per recipient (names, addresses, numbers, tracking links,
//! invisible HTML, encodings, case and wrapping) is removed *before* hashing,
//! so the fuzzy match only has to absorb what remains: words added or
//! changed. Texts too short to be distinctive get no text fingerprint at all,
//! so empty and near-empty messages cannot collide (Pyzor's empty-body digest
//! is a classic source of false positives).
//!
//! The crate is pure: no I/O, no async runtime, no global state. Hostile input
//! has a bounded cost (see [`limits`]) and never panics; what could not be
//! done is listed in [`Fingerprints::problems`].
//!
//! ```
//! use starling_fingerprint::{Fingerprinter, Key, Kind, MatchRule};
//!
//! let fingerprinter = Fingerprinter::new(&Key::DEVELOPMENT);
//! let mail = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\n\
//!     Our spring catalogue is out: garden furniture, tools and seeds for every \
//!     kind of garden, delivered to your door within the week by our own vans.\r\n";
//! let fingerprints = fingerprinter.fingerprint(mail);
//! assert!(fingerprints.text.is_some() && fingerprints.fuzzy.is_some());
//! assert!(fingerprints.skipped.iter().any(|s| s.kind == Kind::Url));
//!
//! // A personalised copy with other headers, case and numbers has the same text.
//! let mutated = b"From: c@example.net\r\nTo: d@example.org\r\nSubject: Re: hi\r\n\r\n\
//!     Dear Sam, our SPRING catalogue is out: garden furniture, tools and seeds for every \
//!     kind of garden, delivered to your door within the week by our own vans. #12345\r\n";
//! assert_eq!(fingerprinter.fingerprint(mutated).text, fingerprints.text);
//!
//! // One with words added is still similar.
//! let busted = b"From: c@example.net\r\n\r\nOur spring catalogue is out: garden furniture, \
//!     tools and seeds for every kind of garden, delivered to your door within the week \
//!     by our own vans. Lemon river castle jelly.\r\n";
//! let similarity = fingerprinter.fingerprint(busted).fuzzy.unwrap().similarity(fingerprints.fuzzy.as_ref().unwrap());
//! assert!(MatchRule::default().is_match(&similarity));
//! ```

// Without the engine, its helpers in the shared modules (sub-keys, the
// densifier, distinct counting) go unused.
#![cfg_attr(not(feature = "engine"), allow(dead_code))]

#[cfg(feature = "engine")]
mod engine;
#[cfg(feature = "engine")]
mod html;
mod key;
pub mod limits;
#[cfg(feature = "engine")]
mod links;
mod matching;
#[cfg(feature = "engine")]
mod mime;
mod minhash;
#[cfg(feature = "engine")]
mod normalize;

/// For the fuzz target (`fuzz/fuzz_targets/html.rs`): the HTML scanner on
/// its own, on any text, with its bounds checked: the visible text is never
/// longer than the input (entities only shrink or keep it, apart from the
/// separators blocks add), and links stay within [`limits::MAX_HTML_LINKS`].
#[doc(hidden)]
#[cfg(feature = "engine")]
pub fn fuzz_html(html: &str) {
    let mut out = String::new();
    let scan = html::visible_text(html, &mut out);
    assert!(scan.links.len() <= limits::MAX_HTML_LINKS, "{} links", scan.links.len());
    assert!(out.len() <= 4 * html.len() + 64, "{} bytes of text from {} of HTML", out.len(), html.len());
}

use std::fmt;

use serde::{Deserialize, Serialize};

pub use key::{Digest, Key, KeyParseError};
pub use matching::{Evidence, Match, MatchRule, MemoryIndex, ReportClass};
pub use minhash::{BANDS, GRAM_BYTES, MinHash, ROWS_PER_BAND, SLOTS, Similarity};

#[cfg(feature = "engine")]
pub use engine::{Fingerprinter, MODEL_WORD_SEED, ModelText};

/// The version of the fingerprint algorithm. Fingerprints of different
/// versions never match. Version 2 changed the fuzzy signature (character
/// n-grams instead of word shingles, containment in one direction); the
/// digests did not change, and keep the values of version 1.
pub const ALGORITHM_VERSION: u16 = 2;

/// The version the digest kinds (text, url, domain, attachment) last
/// changed in: their sub-keys are derived with it, so a version that leaves
/// them alone keeps their values — a network's reports of exact copies and
/// an agent's records of the messages it filed stay valid across it.
pub const DIGEST_VERSION: u16 = 1;

/// The kinds of fingerprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Digest of the whole normalised text.
    Text,
    /// Min-hash signature of the normalised text's shingles.
    Fuzzy,
    /// Digest of a link's host and path.
    Url,
    /// Digest of a link's registrable domain.
    Domain,
    /// Digest of a decoded attachment or image.
    Attachment,
}

impl Kind {
    /// Every kind, in output order.
    pub const ALL: [Kind; 5] = [Kind::Text, Kind::Fuzzy, Kind::Url, Kind::Domain, Kind::Attachment];

    /// The kind's name, as in the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Fuzzy => "fuzzy",
            Kind::Url => "url",
            Kind::Domain => "domain",
            Kind::Attachment => "attachment",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Thresholds below which a text is not distinctive enough to fingerprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Floors {
    /// Normalised words a text needs for a text digest.
    pub text_words: usize,
    /// Distinct normalised words a text needs for any text fingerprint.
    pub distinct_words: usize,
    /// Normalised words a text needs for a fuzzy signature.
    pub fuzzy_words: usize,
    /// Decoded bytes an attachment needs for a digest (small images such as
    /// spacers and logos are shared by too many unrelated messages).
    pub attachment_bytes: usize,
}

impl Default for Floors {
    fn default() -> Floors {
        Floors { text_words: 10, distinct_words: 8, fuzzy_words: 16, attachment_bytes: 1024 }
    }
}

/// How a [`Fingerprinter`] normalises and which floors it applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Minimum sizes for each kind.
    pub floors: Floors,
    /// Ignore lines quoted with `>` (default on), so that a reply inherits
    /// neither the fingerprint of the mail it quotes nor a report against it.
    pub drop_quoted_lines: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { floors: Floors::default(), drop_quoted_lines: true }
    }
}

/// Why a kind of fingerprint was not produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SkipReason {
    /// The input could not be parsed as a message.
    NotAMessage,
    /// The message has no text/plain or text/html body.
    NoText,
    /// The text is too short or too repetitive to be distinctive.
    TooShort {
        /// Normalised words in the text.
        words: usize,
        /// Distinct normalised words.
        distinct: usize,
        /// Words needed.
        need_words: usize,
        /// Distinct words needed.
        need_distinct: usize,
    },
    /// The message contains no http(s) links.
    NoLinks,
    /// The message has no attachments.
    NoAttachments,
    /// Every attachment is below the size floor.
    AttachmentsTooSmall {
        /// Attachments seen.
        count: usize,
        /// Decoded bytes an attachment needs.
        need_bytes: usize,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NotAMessage => f.write_str("the input is not an e-mail message"),
            SkipReason::NoText => f.write_str("the message has no text body"),
            SkipReason::TooShort { words, distinct, need_words, need_distinct } => write!(
                f,
                "text too short to be distinctive ({words} words, {distinct} distinct; \
                 needs {need_words} words, {need_distinct} distinct)"
            ),
            SkipReason::NoLinks => f.write_str("the message has no web links"),
            SkipReason::NoAttachments => f.write_str("the message has no attachments"),
            SkipReason::AttachmentsTooSmall { count, need_bytes } => {
                write!(f, "all {count} attachments are smaller than {need_bytes} bytes")
            }
        }
    }
}

/// A kind that was not produced, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The kind.
    pub kind: Kind,
    /// Why.
    #[serde(flatten)]
    pub reason: SkipReason,
}

/// Something about the message that limited fingerprinting. The result is
/// still usable; it was made from what fitted within the bounds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// The input is not a message (no header could be parsed).
    NotAMessage,
    /// Only the first `limit` bytes were read.
    MessageTruncated {
        /// Bytes read.
        limit: usize,
    },
    /// Parts after the first `limit` were ignored.
    TooManyParts {
        /// Parts looked at.
        limit: usize,
    },
    /// Parts nested deeper than `limit` multiparts were ignored.
    TooDeep {
        /// Maximum depth.
        limit: usize,
    },
    /// A text part was cut at `limit` bytes.
    PartTruncated {
        /// Bytes kept.
        limit: usize,
    },
    /// A part's charset or transfer encoding could not be decoded cleanly.
    EncodingProblem,
    /// Words after the first `limit` were ignored.
    TooManyWords {
        /// Words kept.
        limit: usize,
    },
    /// HTML nested deeper than `limit` elements; visibility below was inherited.
    HtmlTooDeep {
        /// Elements tracked.
        limit: usize,
    },
    /// Links after the first `limit` distinct ones were ignored.
    TooManyLinks {
        /// Distinct links kept.
        limit: usize,
    },
    /// Attachments after the first `limit` were ignored.
    TooManyAttachments {
        /// Attachments digested.
        limit: usize,
    },
    /// An attachment was hashed up to `limit` bytes (and its length).
    AttachmentTruncated {
        /// Bytes hashed.
        limit: usize,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotAMessage => f.write_str("not an e-mail message: no header could be parsed"),
            Problem::MessageTruncated { limit } => write!(f, "message larger than {limit} bytes; the rest was ignored"),
            Problem::TooManyParts { limit } => write!(f, "more than {limit} MIME parts; the rest were ignored"),
            Problem::TooDeep { limit } => write!(f, "MIME parts nested deeper than {limit} levels were ignored"),
            Problem::PartTruncated { limit } => write!(f, "a text part longer than {limit} bytes was cut"),
            Problem::EncodingProblem => f.write_str("a part's charset or transfer encoding was malformed"),
            Problem::TooManyWords { limit } => write!(f, "more than {limit} words; the rest were ignored"),
            Problem::HtmlTooDeep { limit } => write!(f, "HTML nested deeper than {limit} elements"),
            Problem::TooManyLinks { limit } => write!(f, "more than {limit} distinct links; the rest were ignored"),
            Problem::TooManyAttachments { limit } => {
                write!(f, "more than {limit} attachments; the rest were ignored")
            }
            Problem::AttachmentTruncated { limit } => {
                write!(f, "an attachment larger than {limit} bytes was hashed in part")
            }
        }
    }
}

/// Sizes seen while fingerprinting (no content).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Bytes of the raw message.
    pub bytes: usize,
    /// MIME parts.
    pub parts: usize,
    /// Normalised words of the fingerprinted text.
    pub words: usize,
    /// Attachments seen.
    pub attachments: usize,
    /// Whether the body has any visible text at all (before normalisation:
    /// digits and signatures count). `false` for an empty body.
    #[serde(default)]
    pub visible_text: bool,
}

/// Everything that would be sent to the network for one message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fingerprints {
    /// [`ALGORITHM_VERSION`] of the producer.
    pub version: u16,
    /// Digest of the normalised text.
    pub text: Option<Digest>,
    /// Min-hash signature of the normalised text.
    pub fuzzy: Option<MinHash>,
    /// Digests of distinct link hosts and paths.
    pub urls: Vec<Digest>,
    /// Digests of distinct registrable domains of links.
    pub domains: Vec<Digest>,
    /// Digests of decoded attachments.
    pub attachments: Vec<Digest>,
    /// Kinds not produced, and why.
    pub skipped: Vec<Skipped>,
    /// What limited fingerprinting.
    pub problems: Vec<Problem>,
    /// Sizes seen.
    pub stats: Stats,
}

impl Fingerprints {
    /// Whether any fingerprint was produced.
    pub fn is_empty(&self) -> bool {
        self.text.is_none()
            && self.fuzzy.is_none()
            && self.urls.is_empty()
            && self.domains.is_empty()
            && self.attachments.is_empty()
    }

    /// The kinds that were produced.
    pub fn kinds(&self) -> Vec<Kind> {
        Kind::ALL.into_iter().filter(|k| !self.skipped.iter().any(|s| s.kind == *k)).collect()
    }
}

/// The number of distinct values in `hashes` (which are well-mixed hashes),
/// or `limit` if there are at least that many, counted with a small
/// open-addressing table of their top 32 bits: linear time, one allocation.
/// Two different hashes count as one with probability 2⁻³².
pub(crate) fn count_distinct(hashes: &[u64], limit: usize) -> usize {
    let capacity = (hashes.len() * 2).next_power_of_two().max(16);
    let mut table = vec![0u32; capacity];
    let mask = capacity - 1;
    let mut distinct = 0;
    for &hash in hashes {
        // Zero marks an empty cell, so a key is never zero.
        let key = ((hash >> 32) as u32).max(1);
        let mut i = hash as usize & mask;
        loop {
            let cell = table[i];
            if cell == 0 {
                table[i] = key;
                distinct += 1;
                if distinct >= limit {
                    return distinct;
                }
                break;
            }
            if cell == key {
                break;
            }
            i = (i + 1) & mask;
        }
    }
    distinct
}
