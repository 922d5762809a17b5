//! Starling's fingerprint engine: a raw e-mail in, keyed fingerprints out.
//!
//! A [`Fingerprinter`] holds a network [`Key`] and turns the bytes of a
//! message into [`Fingerprints`]: one-way, keyed, versioned values that let a
//! network recognise the same campaign again without ever seeing the mail.
//! The kinds ([`Kind`]) are
//! - **text**: a digest of the normalised text (exact match);
//! - **fuzzy**: a [`MinHash`] signature over word shingles, with index keys
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

mod html;
mod key;
pub mod limits;
mod links;
mod matching;
mod mime;
mod minhash;
mod normalize;

/// For the fuzz target (`fuzz/fuzz_targets/html.rs`): the HTML scanner on
/// its own, on any text, with its bounds checked: the visible text is never
/// longer than the input (entities only shrink or keep it, apart from the
/// separators blocks add), and links stay within [`limits::MAX_HTML_LINKS`].
#[doc(hidden)]
pub fn fuzz_html(html: &str) {
    let mut out = String::new();
    let scan = html::visible_text(html, &mut out);
    assert!(scan.links.len() <= limits::MAX_HTML_LINKS, "{} links", scan.links.len());
    assert!(out.len() <= 4 * html.len() + 64, "{} bytes of text from {} of HTML", out.len(), html.len());
}

use std::fmt;

use mail_parser::MessageParser;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

pub use key::{Digest, Key, KeyParseError};
pub use matching::{Evidence, Match, MatchRule, MemoryIndex, ReportClass};
pub use minhash::{BANDS, MinHash, ROWS_PER_BAND, SHINGLE_WORDS, SLOTS, Similarity};

use key::SubKeys;
use limits::{MAX_ATTACHMENT_BYTES_HASHED, MAX_MESSAGE_BYTES};
use mime::{Block, note};
use minhash::Densifier;
use normalize::{Normalizer, Personal};

/// The version of the fingerprint algorithm. Fingerprints of different
/// versions never match; a network migrates by accepting both for a while.
pub const ALGORITHM_VERSION: u16 = 1;

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

/// Makes [`Fingerprints`] with one network key. Cheap to share between
/// threads; building one derives the sub-keys once.
#[derive(Clone)]
pub struct Fingerprinter {
    keys: SubKeys,
    densifier: Densifier,
    parser: MessageParser,
    settings: Settings,
}

impl fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fingerprinter").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// The normalised words of a message body, hashed.
/// Whether `text` has a character a reader would see: not whitespace, not a
/// zero-width or other invisible format character.
fn has_visible_char(text: &str) -> bool {
    text.chars().any(|c| {
        !c.is_whitespace() && !matches!(c, '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
    })
}

struct TextWords {
    hashes: Vec<u64>,
    /// The same words under [`MODEL_WORD_SEED`], when asked for.
    model: Vec<u64>,
    /// Some block had a visible character.
    visible: bool,
    digest: Digest,
    urls: Vec<String>,
}

impl Fingerprinter {
    /// A fingerprinter with the default [`Settings`].
    pub fn new(key: &Key) -> Fingerprinter {
        Fingerprinter::with_settings(key, Settings::default())
    }

    /// A fingerprinter with explicit settings.
    pub fn with_settings(key: &Key, settings: Settings) -> Fingerprinter {
        let keys = SubKeys::derive(key);
        let densifier = Densifier::new(&keys.densification_seed);
        Fingerprinter { keys, densifier, parser: mime::parser(), settings }
    }

    /// The settings in use.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Fingerprints one raw RFC 5322 message. Never panics; always returns a
    /// result, possibly with every kind skipped.
    pub fn fingerprint(&self, raw: &[u8]) -> Fingerprints {
        self.fingerprint_inner(raw, None)
    }

    /// Fingerprints one message and also returns its normalised words
    /// hashed under [`MODEL_WORD_SEED`] — a fixed seed, independent of the
    /// network key, so a local model's features stay the same whatever
    /// network the agent talks to. The words never leave the agent: they
    /// are not part of [`Fingerprints`].
    pub fn fingerprint_with_words(&self, raw: &[u8]) -> (Fingerprints, Vec<u64>) {
        let mut words = Vec::new();
        let fingerprints = self.fingerprint_inner(raw, Some(&mut words));
        (fingerprints, words)
    }

    fn fingerprint_inner(&self, raw: &[u8], model_words: Option<&mut Vec<u64>>) -> Fingerprints {
        let mut problems = Vec::new();
        let mut stats = Stats { bytes: raw.len(), ..Stats::default() };
        let raw = if raw.len() > MAX_MESSAGE_BYTES {
            problems.push(Problem::MessageTruncated { limit: MAX_MESSAGE_BYTES });
            &raw[..MAX_MESSAGE_BYTES]
        } else {
            raw
        };
        let Some(message) = self.parser.parse(raw) else {
            problems.push(Problem::NotAMessage);
            return Fingerprints {
                version: ALGORITHM_VERSION,
                text: None,
                fuzzy: None,
                urls: Vec::new(),
                domains: Vec::new(),
                attachments: Vec::new(),
                skipped: Kind::ALL.map(|kind| Skipped { kind, reason: SkipReason::NotAMessage }).to_vec(),
                problems,
                stats,
            };
        };
        stats.parts = message.parts.len();
        let deep = mime::too_deep(&message);
        let personal = mime::personal(&message);
        let mut skipped = Vec::new();

        let words = self.body_words(&message, &deep, &personal, model_words.is_some(), &mut problems);
        if let Some(sink) = model_words {
            sink.extend_from_slice(&words.model);
        }
        // Counting stops once no floor can fail: the count is exact whenever
        // it is reported in a "too short" reason.
        let floors = &self.settings.floors;
        let enough = floors.distinct_words.max(floors.fuzzy_words).max(floors.text_words);
        let distinct = count_distinct(&words.hashes, enough);
        stats.words = words.hashes.len();
        stats.visible_text = words.visible;
        let (text, fuzzy) = self.text_kinds(&words, distinct, &mut skipped);

        let (urls, domains, links_cut) = links::collect(words.urls.iter().map(String::as_str));
        if links_cut {
            note(&mut problems, Problem::TooManyLinks { limit: limits::MAX_URLS });
        }
        if urls.is_empty() {
            skipped.push(Skipped { kind: Kind::Url, reason: SkipReason::NoLinks });
            skipped.push(Skipped { kind: Kind::Domain, reason: SkipReason::NoLinks });
        }
        let urls = urls.iter().map(|u| key::digest(&self.keys.url, u.as_bytes())).collect();
        let domains = domains.iter().map(|d| key::digest(&self.keys.domain, d.as_bytes())).collect();

        let attachments = mime::attachments(&message, &deep, &mut problems);
        stats.attachments = attachments.len();
        let attachments = self.attachment_digests(&attachments, &mut skipped, &mut problems);

        Fingerprints { version: ALGORITHM_VERSION, text, fuzzy, urls, domains, attachments, skipped, problems, stats }
    }

    /// The words of the message body. The text alternative is preferred; the
    /// HTML alternative is used instead when the text one is too short (a
    /// "this is an HTML message" stub) and the HTML one has more to say.
    fn body_words(
        &self,
        message: &mail_parser::Message<'_>,
        deep: &[bool],
        personal: &Personal,
        want_model: bool,
        problems: &mut Vec<Problem>,
    ) -> TextWords {
        let text_ids = mime::text_body_ids(message);
        let blocks = mime::blocks(message, &text_ids, deep, problems);
        let words = self.words(&blocks, personal, want_model, problems);
        if words.hashes.len() >= self.settings.floors.fuzzy_words || message.html_body == text_ids {
            return words;
        }
        let html_blocks = mime::blocks(message, &message.html_body, deep, problems);
        let mut html_words = self.words(&html_blocks, personal, want_model, problems);
        if html_words.hashes.len() > words.hashes.len() {
            html_words.visible |= words.visible;
            html_words
        } else {
            TextWords { visible: words.visible || html_words.visible, ..words }
        }
    }

    fn words(
        &self,
        blocks: &[Block<'_>],
        personal: &Personal,
        want_model: bool,
        problems: &mut Vec<Problem>,
    ) -> TextWords {
        let mut hashes = Vec::new();
        let mut model = Vec::new();
        let seed = self.keys.word_seed;
        let options = normalize::Options { drop_quoted: self.settings.drop_quoted_lines };
        let mut normalizer = Normalizer::new(personal, options, |word: &[u8]| {
            hashes.push(xxh3_64_with_seed(word, seed));
            if want_model {
                model.push(xxh3_64_with_seed(word, MODEL_WORD_SEED));
            }
        });
        let mut visible = String::new();
        let mut html_links = Vec::new();
        let mut any_visible = false;
        for block in blocks {
            match block {
                Block::Plain(text) => {
                    any_visible = any_visible || has_visible_char(text);
                    normalizer.push_block(normalize::strip_footers(text))
                }
                Block::Html(source) => {
                    visible.clear();
                    let scan = html::visible_text(source, &mut visible);
                    if scan.too_deep {
                        note(problems, Problem::HtmlTooDeep { limit: limits::MAX_HTML_DEPTH });
                    }
                    any_visible = any_visible || has_visible_char(&visible);
                    html_links.extend(scan.links);
                    normalizer.push_block(normalize::strip_footers(&visible));
                }
            }
        }
        if normalizer.truncated {
            note(problems, Problem::TooManyWords { limit: limits::MAX_WORDS });
        }
        let mut urls = std::mem::take(&mut normalizer.urls);
        drop(normalizer);
        urls.extend(html_links);
        // The text digest covers the sequence of (keyed, 64-bit) word hashes:
        // one BLAKE3 call instead of one per word.
        let bytes: Vec<u8> = hashes.iter().flat_map(|h| h.to_le_bytes()).collect();
        TextWords { digest: key::digest(&self.keys.text, &bytes), hashes, model, visible: any_visible, urls }
    }

    fn text_kinds(
        &self,
        words: &TextWords,
        distinct: usize,
        skipped: &mut Vec<Skipped>,
    ) -> (Option<Digest>, Option<MinHash>) {
        let floors = &self.settings.floors;
        let count = words.hashes.len();
        let too_short = |need_words: usize| {
            if count == 0 {
                SkipReason::NoText
            } else {
                SkipReason::TooShort { words: count, distinct, need_words, need_distinct: floors.distinct_words }
            }
        };
        let text = if count >= floors.text_words && distinct >= floors.distinct_words {
            Some(words.digest)
        } else {
            skipped.push(Skipped { kind: Kind::Text, reason: too_short(floors.text_words) });
            None
        };
        let fuzzy = if count >= floors.fuzzy_words && distinct >= floors.distinct_words {
            minhash::signature(&words.hashes, &self.densifier, self.keys.slot_key)
        } else {
            None
        };
        if fuzzy.is_none() {
            skipped.push(Skipped { kind: Kind::Fuzzy, reason: too_short(floors.fuzzy_words) });
        }
        (text, fuzzy)
    }

    fn attachment_digests(
        &self,
        attachments: &[&[u8]],
        skipped: &mut Vec<Skipped>,
        problems: &mut Vec<Problem>,
    ) -> Vec<Digest> {
        let need = self.settings.floors.attachment_bytes;
        let mut digests: Vec<Digest> = Vec::new();
        for contents in attachments.iter().filter(|c| c.len() >= need) {
            let hashed = if contents.len() > MAX_ATTACHMENT_BYTES_HASHED {
                note(problems, Problem::AttachmentTruncated { limit: MAX_ATTACHMENT_BYTES_HASHED });
                &contents[..MAX_ATTACHMENT_BYTES_HASHED]
            } else {
                contents
            };
            let mut hasher = blake3::Hasher::new_keyed(&self.keys.attachment);
            hasher.update(&(contents.len() as u64).to_le_bytes());
            hasher.update(hashed);
            let mut digest = [0u8; 16];
            digest.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
            if !digests.contains(&Digest(digest)) {
                digests.push(Digest(digest));
            }
        }
        if digests.is_empty() {
            let reason = if attachments.is_empty() {
                SkipReason::NoAttachments
            } else {
                SkipReason::AttachmentsTooSmall { count: attachments.len(), need_bytes: need }
            };
            skipped.push(Skipped { kind: Kind::Attachment, reason });
        }
        digests
    }
}

/// The seed of the words [`Fingerprinter::fingerprint_with_words`] returns.
pub const MODEL_WORD_SEED: u64 = 0x5374_6172_6c69_6e67; // "Starling"

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
