//! Named bounds on the work done for one message.
//!
//! Mail is hostile: every loop over attacker-controlled input is bounded by one
//! of these constants, so the cost of fingerprinting a message is bounded no
//! matter what it contains. When a bound is hit the result is still produced
//! from what fits, and a [`Problem`](crate::Problem) says what was cut.

/// Bytes of a raw message that are parsed; the rest is ignored.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// MIME parts that are looked at, in document order.
pub const MAX_PARTS: usize = 256;

/// Nesting depth of multiparts below which parts are ignored.
pub const MAX_MIME_DEPTH: usize = 16;

/// Decoded bytes of one text part that are read; a longer part is truncated.
pub const MAX_TEXT_BYTES_PER_PART: usize = 512 * 1024;

/// Decoded bytes of one attachment that are hashed (the length is hashed too).
pub const MAX_ATTACHMENT_BYTES_HASHED: usize = 8 * 1024 * 1024;

/// Words of normalised text kept per message; later words are ignored.
pub const MAX_WORDS: usize = 20_000;

/// Characters in a word above which the word is dropped as noise (encoded
/// blobs, hash-buster strings). CJK text is split per character first.
pub const MAX_WORD_CHARS: usize = 30;

/// Open HTML elements tracked for visibility; deeper elements inherit the
/// visibility of the deepest tracked one.
pub const MAX_HTML_DEPTH: usize = 256;

/// Distinct URLs signed per message (and registrable domains, separately).
pub const MAX_URLS: usize = 32;

/// Attachments digested per message.
pub const MAX_ATTACHMENTS: usize = 16;

/// Links collected from HTML attributes per part, before de-duplication.
pub const MAX_HTML_LINKS: usize = 256;

/// Characters of a URL considered; longer URLs are cut before parsing.
pub const MAX_URL_CHARS: usize = 2048;
