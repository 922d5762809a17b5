//! Decoded text → the normalised word sequence that the text fingerprints hash.
//!
//! Everything a spammer varies per recipient or per send is removed here, so
//! that the same campaign gives the same words:
//! - Unicode compatibility decomposition (the "K" of NFKC), removal of
//!   combining marks (accents), case folding, and folding of look-alikes
//!   onto Latin letters (Cyrillic and Greek from a short table, every other
//!   letter Unicode's confusables data maps to one Latin letter);
//! - invisible characters (zero-width spaces and joiners, soft hyphens,
//!   direction marks, variation selectors) are removed *without* splitting the
//!   word they sit in;
//! - words that contain a digit (prices, dates, order numbers, tracking IDs,
//!   hex and base64 strings) and over-long words are dropped;
//! - a URL or e-mail address becomes one token, its registrable domain (the
//!   path, query and user part vary per recipient); the recipient's own
//!   addresses are dropped entirely, as are the words of the recipient's name
//!   and mailbox;
//! - a greeting line ("Dear John Smith,") loses its greeting and the name
//!   that follows;
//! - Chinese, Japanese and Thai script, written without spaces, becomes one
//!   token per character so that shingles still form;
//! - trailing footers are cut ([`strip_footers`]): signatures, mailing-list
//!   and sponsor footers, disclaimers. They are boilerplate shared by
//!   unrelated messages, and spam relayed through a mailing list would
//!   otherwise match every legitimate post to that list.
//!
//! Output goes to a caller-supplied sink, one word (UTF-8 bytes) at a time,
//! so the hot path allocates nothing per word; ASCII letters and digits, the
//! bulk of most mail, take a table-driven path.

/// For each ASCII byte: its lower-case form if it is a letter or digit
/// (digits with [`DIGIT`] set), else 0.
const WORD_BYTES: [u8; 128] = {
    let mut table = [0u8; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        table[b] = if c.is_ascii_alphabetic() {
            c.to_ascii_lowercase()
        } else if c.is_ascii_digit() {
            c | DIGIT
        } else {
            0
        };
        b += 1;
    }
    table
};
/// Marks a digit in [`WORD_BYTES`] (ASCII digits never have the top bit set).
const DIGIT: u8 = 0x80;
/// In the flags of [`ascii_run`]: the run has an upper-case letter.
const UPPER: u8 = 0x01;

/// The end of the run of ASCII letters and digits that starts at `start`,
/// and flags: [`DIGIT`] if it has a digit, [`UPPER`] if an upper-case letter.
///
/// Eight bytes are classified at once with SWAR arithmetic on a `u64` (each
/// byte's top bit answers "is this byte in range?"), so a typical word costs
/// one or two steps instead of one per letter.
fn ascii_run(bytes: &[u8], start: usize) -> (usize, u8) {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const fn splat(b: u8) -> u64 {
        u64::from_le_bytes([b; 8])
    }
    let mut end = start;
    let mut flags = 0u8;
    while let Some(chunk) = bytes.get(end..end + 8) {
        let chunk = u64::from_le_bytes(chunk.try_into().expect("an 8-byte slice"));
        let ascii = !chunk & HIGH;
        let x = chunk & !HIGH;
        // x + (0x80 - lo) has its top bit set exactly when x >= lo (x < 0x80).
        let at_least = |value: u64, lo: u8| value.wrapping_add(splat(0x80 - lo)) & HIGH;
        let folded = x | splat(0x20);
        let letters = at_least(folded, b'a') & !at_least(folded, b'z' + 1);
        let digits = at_least(x, b'0') & !at_least(x, b'9' + 1);
        let word = (letters | digits) & ascii;
        let len = ((word ^ HIGH).trailing_zeros() / 8) as usize;
        let prefix = if len == 8 { u64::MAX } else { (1u64 << (8 * len)) - 1 };
        if digits & word & prefix != 0 {
            flags |= DIGIT;
        }
        // An upper-case letter has bit 5 clear; shifting by 2 moves it to bit 7.
        if letters & !(x << 2) & word & prefix != 0 {
            flags |= UPPER;
        }
        end += len;
        if len < 8 {
            return (end, flags);
        }
    }
    while let Some(&b) = bytes.get(end) {
        let c = WORD_BYTES.get(usize::from(b)).copied().unwrap_or(0);
        if c == 0 {
            break;
        }
        flags |= c & DIGIT;
        if c != b && c & DIGIT == 0 {
            flags |= UPPER;
        }
        end += 1;
    }
    (end, flags)
}

use std::cell::Cell;

use linkify::{LinkFinder, LinkKind};
use unicode_normalization::char::{decompose_compatible, is_combining_mark};
use xxhash_rust::xxh3::xxh3_64;

use crate::limits::{MAX_URL_CHARS, MAX_URLS, MAX_WORD_CHARS, MAX_WORDS};

/// The recipient's identity, removed from the text before hashing. Name
/// words are kept as a sorted list of local (never sent) hashes, with a
/// bit set of their lengths in front, because the check runs for every word.
#[derive(Debug, Default)]
pub(crate) struct Personal {
    addresses: Vec<String>,
    word_hashes: Vec<u64>,
    /// Bit `n` is set when a word of `n` bytes (63: longer) is present.
    word_lengths: u64,
}

impl Personal {
    /// Adds a recipient address and the display name that came with it.
    pub(crate) fn add(&mut self, address: &str, name: Option<&str>) {
        let address = address.trim().to_lowercase();
        if let Some((local, _domain)) = address.split_once('@') {
            self.add_words(local);
        }
        if let Some(name) = name {
            self.add_words(name);
        }
        if address.contains('@') && !self.addresses.contains(&address) {
            self.addresses.push(address);
        }
    }

    fn add_words(&mut self, text: &str) {
        let empty = Personal::default();
        let mut words = Vec::new();
        let mut normalizer = Normalizer::new(&empty, Options::default(), |w: &[u8]| words.push(w.to_vec()));
        normalizer.push_block(text);
        drop(normalizer);
        // Very short name parts ("al", "jo") are too likely to be ordinary words.
        for word in words.into_iter().filter(|w| String::from_utf8_lossy(w).chars().count() >= 3) {
            let hash = xxh3_64(&word);
            if let Err(at) = self.word_hashes.binary_search(&hash) {
                self.word_hashes.insert(at, hash);
                self.word_lengths |= length_bit(word.len());
            }
        }
    }

    fn is_address(&self, address: &str) -> bool {
        self.addresses.iter().any(|a| a.eq_ignore_ascii_case(address))
    }

    fn is_word(&self, word: &[u8]) -> bool {
        self.word_lengths & length_bit(word.len()) != 0 && self.word_hashes.binary_search(&xxh3_64(word)).is_ok()
    }
}

fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

/// Choices that change which words are kept.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Options {
    /// Drop lines quoted with `>` (replies that quote other mail).
    pub drop_quoted: bool,
}

/// Non-empty lines that a trailing footer may have.
const MAX_FOOTER_LINES: usize = 6;

/// `text` without its trailing footers: repeatedly, a separator line (a
/// signature delimiter `-- `, or a rule of at least ten dashes or
/// underscores, as mailing-list managers write) followed by at most
/// [`MAX_FOOTER_LINES`] non-empty lines up to the end of the text is cut
/// off, with what follows it. Rules of other characters are left alone:
/// spam uses them as decoration.
pub(crate) fn strip_footers(text: &str) -> &str {
    let mut end = text.len();
    while let Some(cut) = footer_start(&text[..end]) {
        end = cut;
    }
    &text[..end]
}

fn footer_start(text: &str) -> Option<usize> {
    let mut content_lines = 0;
    let mut line_end = text.len();
    loop {
        let line_start = text[..line_end].rfind('\n').map_or(0, |i| i + 1);
        let line = text[line_start..line_end].trim_end_matches('\r');
        if is_separator(line) {
            return Some(line_start);
        }
        if !line.trim().is_empty() {
            content_lines += 1;
            if content_lines > MAX_FOOTER_LINES {
                return None;
            }
        }
        if line_start == 0 {
            return None;
        }
        line_end = line_start - 1;
    }
}

fn is_separator(line: &str) -> bool {
    let rule = line.trim();
    rule == "--" || (rule.len() >= 10 && rule.bytes().all(|b| matches!(b, b'-' | b'_' | b' ')))
}

/// Greetings that start a personalised first line.
const GREETINGS: &[&[u8]] =
    &[b"dear", b"hi", b"hello", b"hey", b"greetings", b"attention", b"howdy", b"hallo", b"bonjour", b"hola", b"ciao"];
/// Words that make "good …" a greeting.
const GOOD_GREETINGS: &[&[u8]] = &[b"day", b"morning", b"afternoon", b"evening"];
/// Words after a greeting that are dropped at most (the name that follows).
const GREETING_NAME_WORDS: u8 = 5;

/// Streams words out of text blocks; see the module documentation.
pub(crate) struct Normalizer<'p, F: FnMut(&[u8])> {
    personal: &'p Personal,
    options: Options,
    sink: F,
    /// The word being built, UTF-8.
    word: Vec<u8>,
    /// Characters in `word`.
    word_chars: usize,
    /// `word` contains a digit (of any script).
    word_has_digit: bool,
    /// A bare `www.` URL being collected.
    bare_url: Option<String>,
    line_start: bool,
    quoted_line: bool,
    /// Words still to drop after a greeting, until punctuation or a new line.
    greeting: Option<u8>,
    /// The first word of the line was "good": a greeting if "day" etc. follows.
    pending_good: bool,
    words: usize,
    /// Raw URLs found in the text, for URL signatures.
    pub urls: Vec<String>,
    /// More than [`MAX_WORDS`] words were offered.
    pub truncated: bool,
}

impl<'p, F: FnMut(&[u8])> Normalizer<'p, F> {
    pub(crate) fn new(personal: &'p Personal, options: Options, sink: F) -> Self {
        Normalizer {
            personal,
            options,
            sink,
            word: Vec::with_capacity(32),
            word_chars: 0,
            word_has_digit: false,
            bare_url: None,
            line_start: true,
            quoted_line: false,
            greeting: None,
            pending_good: false,
            words: 0,
            urls: Vec::new(),
            truncated: false,
        }
    }

    /// Normalises one block of text (a text part, or the visible text of an
    /// HTML part). Blocks never run into each other.
    pub(crate) fn push_block(&mut self, text: &str) {
        let mut last = 0;
        // A `LinkFinder` is a few flags: building one per block is free.
        let mut finder = LinkFinder::new();
        finder.url_must_have_scheme(true);
        for link in finder.links(text) {
            self.push_text(&text[last..link.start()]);
            self.push_link(link.as_str(), link.kind() == &LinkKind::Email);
            last = link.end();
        }
        self.push_text(&text[last..]);
        self.push_char('\n');
    }

    fn push_text(&mut self, text: &str) {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii() {
                // The hot path: a run of ASCII letters and digits goes into
                // the word at once, and a space ends it.
                if WORD_BYTES[usize::from(b)] != 0 && self.bare_url.is_none() {
                    i = self.push_ascii_run(bytes, i);
                } else if b == b' ' && self.bare_url.is_none() {
                    self.flush_word();
                    i += 1;
                } else {
                    self.push_char(char::from(b));
                    i += 1;
                }
                continue;
            }
            let Some(c) = text[i..].chars().next() else { break };
            i += c.len_utf8();
            decompose_compatible(c, |d| {
                if !is_combining_mark(d) {
                    self.push_char(d);
                }
            });
        }
    }

    /// Takes the run of ASCII letters and digits that starts at `start` and
    /// returns where it ends. A run that is a whole lower-case word goes to
    /// the sink straight from the text, without being copied.
    fn push_ascii_run(&mut self, bytes: &[u8], start: usize) -> usize {
        let (end, flags) = ascii_run(bytes, start);
        let run = &bytes[start..end];
        let has_digit = flags & DIGIT != 0;
        let whole = self.word.is_empty() && matches!(bytes.get(end), None | Some(b' ' | b'\n' | b'\t' | b'\r'));
        if whole && flags & UPPER == 0 {
            let noise = has_digit || run.len() > MAX_WORD_CHARS;
            self.word_ready(run, noise);
            return end;
        }
        self.word.extend(run.iter().map(|&b| WORD_BYTES[usize::from(b)] & !DIGIT));
        self.word_chars += run.len();
        self.word_has_digit |= has_digit;
        end
    }

    fn push_char(&mut self, c: char) {
        if let Some(url) = &mut self.bare_url {
            if is_url_char(c) && url.len() < MAX_URL_CHARS {
                url.push(c);
                return;
            }
            let url = self.bare_url.take().unwrap_or_default();
            self.finish_url(url.trim_end_matches(is_trailing_punctuation), false);
        }
        if c.is_alphanumeric() {
            if is_unspaced_script(c) {
                self.flush_word();
                self.push_word_char(c);
                self.flush_word();
                return;
            }
            if c.is_numeric() {
                self.word_has_digit = true;
            }
            match fold_lookalike(c).or_else(|| confusable_letter(c)) {
                Some(latin) => self.push_word_char(latin),
                None => c.to_lowercase().for_each(|l| self.push_word_char(l)),
            }
            return;
        }
        if is_invisible(c) || ((c == '\'' || c == '\u{2019}') && !self.word.is_empty()) {
            return;
        }
        if c == '.' && self.word == b"www" {
            self.word.clear();
            self.bare_url = Some(String::from("www."));
            return;
        }
        self.flush_word();
        match c {
            '\n' => self.new_line(),
            '>' if self.line_start => self.quoted_line = true,
            ',' | ':' | ';' | '!' | '?' | '.' => self.greeting = None,
            _ => {}
        }
    }

    fn push_word_char(&mut self, c: char) {
        let mut buf = [0u8; 4];
        self.word.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        self.word_chars += 1;
    }

    fn new_line(&mut self) {
        if self.pending_good {
            self.pending_good = false;
            self.emit_word(b"good");
        }
        self.line_start = true;
        self.quoted_line = false;
        self.greeting = None;
    }

    fn flush_word(&mut self) {
        if self.word.is_empty() {
            return;
        }
        let word = std::mem::take(&mut self.word);
        let noise = self.word_has_digit || self.word_chars > MAX_WORD_CHARS;
        self.word_ready(&word, noise);
        self.word = word;
        self.word.clear();
        self.word_chars = 0;
        self.word_has_digit = false;
    }

    /// A complete word; `noise` when it has a digit or is too long.
    fn word_ready(&mut self, word: &[u8], noise: bool) {
        if std::mem::take(&mut self.line_start) {
            if GREETINGS.contains(&word) {
                self.greeting = Some(GREETING_NAME_WORDS);
                return;
            }
            if word == b"good" {
                self.pending_good = true;
                return;
            }
        }
        if std::mem::take(&mut self.pending_good) {
            if GOOD_GREETINGS.contains(&word) {
                self.greeting = Some(GREETING_NAME_WORDS);
                return;
            }
            self.emit_word(b"good");
        }
        if let Some(left) = self.greeting {
            self.greeting = left.checked_sub(1);
            if left > 0 {
                return;
            }
        }
        if noise || self.personal.is_word(word) {
            return;
        }
        self.emit_word(word);
    }

    fn emit_word(&mut self, word: &[u8]) {
        if self.quoted_line && self.options.drop_quoted {
            return;
        }
        if self.words >= MAX_WORDS {
            self.truncated = true;
            return;
        }
        self.words += 1;
        (self.sink)(word);
    }

    fn push_link(&mut self, link: &str, is_email: bool) {
        self.flush_word();
        self.finish_url(link, is_email);
    }

    /// A URL or address becomes its registrable domain as one token.
    fn finish_url(&mut self, link: &str, is_email: bool) {
        self.line_start = false;
        self.greeting = None;
        let host = if is_email {
            if self.personal.is_address(link) {
                return;
            }
            link.rsplit_once('@').map_or("", |(_, domain)| domain)
        } else {
            if self.urls.len() < MAX_URLS * 4 {
                self.urls.push(link.chars().take(MAX_URL_CHARS).collect());
            }
            url_host(link)
        };
        let host = host.to_ascii_lowercase();
        let token = psl::domain_str(&host).unwrap_or(&host).trim_start_matches("www.").to_owned();
        if !token.is_empty() {
            self.emit_word(token.as_bytes());
        }
    }
}

/// The host of a URL-ish string, without scheme, credentials or port.
pub(crate) fn url_host(link: &str) -> &str {
    let rest = link.split_once("://").map_or(link, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    host_port.split(':').next().unwrap_or("")
}

fn is_url_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&*+,;=%".contains(c)
}

fn is_trailing_punctuation(c: char) -> bool {
    ".,;:!?".contains(c)
}

/// Characters that render as nothing; spammers put them inside words.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E007F}')
}

/// Scripts written without spaces between words: one token per character.
fn is_unspaced_script(c: char) -> bool {
    matches!(c,
        '\u{0E00}'..='\u{0EFF}'          // Thai, Lao
        | '\u{1000}'..='\u{109F}'        // Myanmar
        | '\u{1780}'..='\u{17FF}'        // Khmer
        | '\u{3040}'..='\u{30FF}'        // Hiragana, Katakana
        | '\u{31F0}'..='\u{31FF}'
        | '\u{3400}'..='\u{4DBF}'        // CJK extension A
        | '\u{4E00}'..='\u{9FFF}'        // CJK unified ideographs
        | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{3134F}')
}

/// Cyrillic and Greek letters that look like Latin ones, folded to the
/// lower-case Latin letter (a reader sees "Viagra" either way).
fn fold_lookalike(c: char) -> Option<char> {
    Some(match c {
        'а' | 'А' | 'α' | 'Α' => 'a',
        'В' | 'Β' | 'в' => 'b',
        'с' | 'С' | 'ϲ' => 'c',
        'ԁ' => 'd',
        'е' | 'Е' | 'ε' | 'Ε' => 'e',
        'ɡ' => 'g',
        'Н' | 'Η' | 'һ' => 'h',
        'і' | 'І' | 'ι' | 'Ι' | 'ı' => 'i',
        'ј' | 'Ј' => 'j',
        'к' | 'К' | 'κ' | 'Κ' => 'k',
        'ӏ' | 'Ӏ' => 'l',
        'М' | 'Μ' => 'm',
        'Ν' => 'n',
        'о' | 'О' | 'ο' | 'Ο' | 'σ' => 'o',
        'р' | 'Р' | 'ρ' | 'Ρ' => 'p',
        'ѕ' | 'Ѕ' => 's',
        'Т' | 'Τ' | 'τ' => 't',
        'υ' => 'u',
        'ν' => 'v',
        'ԝ' => 'w',
        'х' | 'Х' | 'χ' | 'Χ' => 'x',
        'у' | 'У' | 'Υ' | 'γ' => 'y',
        'Ζ' => 'z',
        _ => return None,
    })
}

/// Any other letter that Unicode's confusables data (UTS #39, through
/// `unicode-security`'s skeleton) says looks like one Latin letter —
/// Armenian `օ`, Cherokee `Ꭺ`, Latin `ł`, and the rest of the thousands
/// beyond the common ones [`fold_lookalike`] lists — as that lower-case
/// letter. Only for letters outside ASCII (an ASCII letter is never folded
/// onto another: `l` and `I` stay apart) and only onto letters (a look-alike
/// of a digit would make the word look like a number and drop it).
/// A letter whose own form is not in the data may be through its capital
/// (Cherokee's small letters are, through their capitals).
///
/// Each answer costs a normalisation and a table search, so answers are
/// kept per thread in a small direct-mapped memo: text in another script
/// repeats a few dozen letters.
fn confusable_letter(c: char) -> Option<char> {
    if c.is_ascii() {
        return None;
    }
    // A slot holds the letter + 1 in the high half (0: empty) and the
    // answer in the low byte (0: none).
    thread_local! {
        static MEMO: [Cell<u64>; MEMO_SLOTS] = const { [const { Cell::new(0) }; MEMO_SLOTS] };
    }
    let tag = (u64::from(c) + 1) << 32;
    let slot = c as usize % MEMO_SLOTS;
    let memo = MEMO.with(|m| m[slot].get());
    if memo & !0xff == tag {
        return (memo & 0xff != 0).then(|| char::from(memo as u8));
    }
    let found = confusable_letter_uncached(c);
    MEMO.with(|m| m[slot].set(tag | found.map_or(0, |l| u64::from(l as u8))));
    found
}

/// Slots of [`confusable_letter`]'s memo (8 bytes each).
const MEMO_SLOTS: usize = 1024;

fn confusable_letter_uncached(c: char) -> Option<char> {
    let one_latin = |c: char| {
        let mut buf = [0u8; 4];
        let mut skeleton = unicode_security::skeleton(c.encode_utf8(&mut buf));
        match (skeleton.next(), skeleton.next()) {
            (Some(latin), None) if latin.is_ascii_alphabetic() => Some(latin.to_ascii_lowercase()),
            _ => None,
        }
    };
    one_latin(c).or_else(|| {
        let mut upper = c.to_uppercase();
        match (upper.next(), upper.next()) {
            (Some(capital), None) if capital != c && !capital.is_ascii() => one_latin(capital),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words_with(personal: &Personal, options: Options, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut n = Normalizer::new(personal, options, |w: &[u8]| out.push(String::from_utf8(w.to_vec()).unwrap()));
        n.push_block(text);
        drop(n);
        out
    }

    fn words(text: &str) -> Vec<String> {
        words_with(&Personal::default(), Options::default(), text)
    }

    #[test]
    fn case_accents_and_lookalikes_fold() {
        assert_eq!(words("VIAGRA Viágra Vіаgrа"), ["viagra"; 3]);
        assert_eq!(words("ＦＵＬＬＷＩＤＴＨ"), ["fullwidth"]);
    }

    #[test]
    fn look_alikes_from_other_scripts_fold() {
        // Armenian օ and ս, Cherokee Ꭺ and Ꮪ, mathematical sans-serif (a
        // compatibility form), and a combining mark.
        assert_eq!(words("Gօօd"), ["good"]);
        assert_eq!(words("ꭺmazing ᏚALE"), ["amazing", "sale"]);
        assert_eq!(words("𝗆oney mo\u{301}ney"), ["money"; 2]);
        assert_eq!(words("ꭺmazing"), ["amazing"], "a small Cherokee letter, through its capital");
        // ASCII is never folded onto ASCII, and no letter onto a digit.
        assert_eq!(words("Il1 lI"), ["li"]);
        assert_eq!(words("Ꮞ"), ["ꮞ"]);
    }

    #[test]
    fn invisible_characters_do_not_split_words() {
        assert_eq!(words("Sa\u{200b}ve to\u{200c}\u{feff}day"), ["save", "today"]);
        assert_eq!(words("soft\u{ad}ware"), ["software"]);
    }

    #[test]
    fn numbers_and_ids_are_dropped() {
        assert_eq!(words("Order 12345 ref AB12CD34 costs $99.95 now"), ["order", "ref", "costs", "now"]);
    }

    #[test]
    fn long_words_are_dropped() {
        assert_eq!(words(&format!("keep {} keep", "x".repeat(40))), ["keep", "keep"]);
    }

    #[test]
    fn urls_become_their_registrable_domain() {
        let text = "go to http://click.spam.example.co.uk/a/b?id=3 or www.Shop.example.com/x?y=1. now";
        assert_eq!(words(text), ["go", "to", "example.co.uk", "or", "example.com", "now"]);
    }

    #[test]
    fn urls_are_collected() {
        let personal = Personal::default();
        let mut n = Normalizer::new(&personal, Options::default(), |_: &[u8]| {});
        n.push_block("see https://a.example/x and www.b.example/y.");
        assert_eq!(n.urls, ["https://a.example/x", "www.b.example/y"]);
    }

    #[test]
    fn recipient_identity_is_removed() {
        let mut personal = Personal::default();
        personal.add("john.smith@corp.example", Some("John Smith"));
        let text = "Hey john.smith@corp.example, John Smith: write to sales@vendor.example";
        assert_eq!(words_with(&personal, Options::default(), text), ["write", "to", "vendor.example"]);
    }

    #[test]
    fn greetings_lose_the_name() {
        assert_eq!(words("Dear Mary Jones, buy now"), ["buy", "now"]);
        assert_eq!(words("Hi john\nbuy now"), ["buy", "now"]);
        assert_eq!(words("Good day Paul Smith, buy"), ["buy"]);
        assert_eq!(words("good value here"), ["good", "value", "here"]);
        assert_eq!(words("we say hi to you"), ["we", "say", "hi", "to", "you"]);
    }

    #[test]
    fn unspaced_scripts_split_per_character() {
        assert_eq!(words("免费赠品"), ["免", "费", "赠", "品"]);
    }

    #[test]
    fn quoted_lines_can_be_dropped() {
        let options = Options { drop_quoted: true };
        assert_eq!(words_with(&Personal::default(), options, "mine\n> theirs\n >> more\nmine"), ["mine", "mine"]);
        assert_eq!(words("> theirs"), ["theirs"]);
    }

    #[test]
    fn ascii_runs_are_classified() {
        fn naive(bytes: &[u8], start: usize) -> (usize, u8) {
            let end = bytes[start..].iter().position(|b| !b.is_ascii_alphanumeric()).map_or(bytes.len(), |p| start + p);
            let run = &bytes[start..end];
            let digit = if run.iter().any(u8::is_ascii_digit) { DIGIT } else { 0 };
            let upper = if run.iter().any(u8::is_ascii_uppercase) { UPPER } else { 0 };
            (end, digit | upper)
        }
        let samples: &[&[u8]] = &[
            b"hello world",
            b"HelloWorldThisIsLong and more",
            b"abc123xyz_tail",
            b"@[`{/:09azAZ",
            b"a\xc3\xa9b",
            b"zzzzzzzzzzzzzzzzzzzzzzzzz",
            b"Z",
            b"0",
        ];
        for sample in samples {
            for start in 0..sample.len() {
                if sample[start].is_ascii_alphanumeric() {
                    assert_eq!(ascii_run(sample, start), naive(sample, start), "{sample:?} at {start}");
                }
            }
        }
        for b in 0..=255u8 {
            let bytes = [b'a', b, b'a', b'a', b'a', b'a', b'a', b'a', b'a', b'a'];
            assert_eq!(ascii_run(&bytes, 0), naive(&bytes, 0), "byte {b:#x}");
        }
    }

    #[test]
    fn footers_are_stripped() {
        let text = "Real content here.\nMore.\n\n----------------\nSponsored by X\nclick\n\n_____________\nlist mailing list\nhttp://l.example/\n";
        assert_eq!(strip_footers(text), "Real content here.\nMore.\n\n");
        assert_eq!(strip_footers("a\n**************\nb"), "a\n**************\nb");
        assert_eq!(strip_footers("Hello\n-- \nJohn Smith\nACME"), "Hello\n");
        assert_eq!(strip_footers("no footer\nat all"), "no footer\nat all");
        let long_tail = format!("a\n----------\n{}", "line\n".repeat(MAX_FOOTER_LINES + 1));
        assert_eq!(strip_footers(&long_tail), long_tail);
        assert_eq!(strip_footers("--------------------\nonly footer"), "");
    }

    #[test]
    fn word_count_is_bounded() {
        let text = "word ".repeat(MAX_WORDS + 10);
        let personal = Personal::default();
        let mut count = 0;
        let mut n = Normalizer::new(&personal, Options::default(), |_: &[u8]| count += 1);
        n.push_block(&text);
        assert!(n.truncated);
        drop(n);
        assert_eq!(count, MAX_WORDS);
    }
}
