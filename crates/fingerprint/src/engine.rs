//! The engine: a message in, its [`Fingerprints`] out — MIME parsing,
//! charsets, HTML visibility, normalisation, links, hashing. Behind the
//! `engine` feature (on by default), so that crates that only speak the
//! vocabulary (the protocol, the network node) do not compile a MIME parser.

use std::fmt;

use mail_parser::MessageParser;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::key::SubKeys;
use crate::limits::{MAX_ATTACHMENT_BYTES_HASHED, MAX_MESSAGE_BYTES};
use crate::mime::{Block, note};
use crate::minhash::Densifier;
use crate::normalize::{Normalizer, Personal};
use crate::*;

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

/// What the local model reads of a message beside its fingerprints
/// ([`Fingerprinter::fingerprint_with_words`]). It never leaves the agent
/// and is not part of [`Fingerprints`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelText {
    /// The normalised body words, hashed under [`MODEL_WORD_SEED`] (a fixed
    /// seed, independent of the network key).
    pub words: Vec<u64>,
    /// The registrable domains the body links to (`example.com`), distinct
    /// and sorted, at most [`limits::MAX_URLS`].
    pub link_domains: Vec<String>,
}

/// Whether `text` has a character a reader would see: not whitespace, not a
/// zero-width or other invisible format character.
fn has_visible_char(text: &str) -> bool {
    text.chars().any(|c| {
        !c.is_whitespace() && !matches!(c, '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
    })
}

struct TextWords {
    hashes: Vec<u64>,
    /// Character n-gram hashes of the normalised text.
    grams: Vec<u64>,
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

    /// Fingerprints one message and also returns what the local model reads
    /// of it: its normalised words hashed under [`MODEL_WORD_SEED`] — a
    /// fixed seed, independent of the network key, so a local model's
    /// features stay the same whatever network the agent talks to — and the
    /// domains it links to. They never leave the agent: they are not part
    /// of [`Fingerprints`].
    pub fn fingerprint_with_words(&self, raw: &[u8]) -> (Fingerprints, ModelText) {
        let mut text = ModelText::default();
        let fingerprints = self.fingerprint_inner(raw, Some(&mut text));
        (fingerprints, text)
    }

    fn fingerprint_inner(&self, raw: &[u8], model_text: Option<&mut ModelText>) -> Fingerprints {
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

        let words = self.body_words(&message, &deep, &personal, model_text.is_some(), &mut problems);
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
        if let Some(sink) = model_text {
            sink.words = words.model;
            sink.link_domains = domains.iter().cloned().collect();
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
        let mut grams = minhash::Grams::new(self.keys.gram_seed);
        let mut normalizer = Normalizer::new(personal, options, |word: &[u8]| {
            hashes.push(xxh3_64_with_seed(word, seed));
            grams.word(word);
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
        let grams = grams.into_hashes();
        TextWords { digest: key::digest(&self.keys.text, &bytes), hashes, grams, model, visible: any_visible, urls }
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
            minhash::signature(&words.grams, &self.densifier, self.keys.slot_key)
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
