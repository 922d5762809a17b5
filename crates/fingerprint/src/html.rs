//! HTML → the text a reader actually sees, plus the links it points to.
//!
//! This is a small streaming tokenizer rather than a full HTML5 tree builder
//! (html5ever) for two reasons: fingerprinting must keep up with the MIME
//! parser (tens of thousands of messages per second per core), and what
//! matters here is *visibility*, which general converters ignore. Spammers hide
//! hash-busting text with `display:none`, white-on-white or 1px fonts, and
//! split words with comments, empty tags and zero-width entities; a reader sees
//! none of it, so neither should the fingerprint.
//!
//! Rules, in browser terms:
//! - comments, `<!…>`/`<?…>` declarations and the contents of `script`,
//!   `style`, `title`, `template` and Office `xml` islands are dropped;
//! - inline elements join their text without a separator (`Sa<b></b>ve` is
//!   "Save"), block elements and `<br>` separate lines;
//! - an element is hidden when its style says `display:none`,
//!   `visibility:hidden`, `opacity:0`, `mso-hide:all`, a font size of about one
//!   pixel or less, a zero height with hidden overflow, when it carries the
//!   `hidden` attribute, or when its text colour is (nearly) its background
//!   colour; everything inside a hidden element is hidden;
//! - entities are decoded with the WHATWG table.
//!
//! The element stack is bounded by [`MAX_HTML_DEPTH`]; end tags close the
//! nearest open element of that name, and stray end tags are ignored, so
//! malformed markup degrades to "more text is visible", never to a hang.

use std::borrow::Cow;

use memchr::{memchr, memmem};

use crate::limits::{MAX_HTML_DEPTH, MAX_HTML_LINKS};

/// What [`visible_text`] found besides the text itself.
#[derive(Debug, Default)]
pub(crate) struct HtmlScan {
    /// `http(s)` and `www.` link targets from `href` attributes, in order.
    pub links: Vec<String>,
    /// The element stack hit [`MAX_HTML_DEPTH`].
    pub too_deep: bool,
}

/// Appends the visible text of `html` to `out` and returns its links.
pub(crate) fn visible_text(html: &str, out: &mut String) -> HtmlScan {
    let mut scanner = Scanner { src: html, pos: 0, out, stack: vec![Frame::root()], scan: HtmlScan::default() };
    scanner.run();
    scanner.scan
}

/// An open element and the rendering state it gives its contents.
#[derive(Clone, Copy)]
struct Frame {
    name: TagName,
    hidden: bool,
    color: Option<Rgb>,
    background: Rgb,
}

impl Frame {
    fn root() -> Frame {
        Frame { name: TagName::EMPTY, hidden: false, color: None, background: Rgb::WHITE }
    }
}

struct Scanner<'a, 'o> {
    src: &'a str,
    pos: usize,
    out: &'o mut String,
    stack: Vec<Frame>,
    scan: HtmlScan,
}

impl<'a> Scanner<'a, '_> {
    fn run(&mut self) {
        let bytes = self.src.as_bytes();
        while self.pos < bytes.len() {
            match memchr(b'<', &bytes[self.pos..]) {
                Some(offset) => {
                    self.text(self.pos, self.pos + offset);
                    self.pos += offset;
                    self.markup();
                }
                None => {
                    self.text(self.pos, bytes.len());
                    self.pos = bytes.len();
                }
            }
        }
    }

    fn top(&self) -> &Frame {
        self.stack.last().expect("the root frame is never popped")
    }

    fn text(&mut self, start: usize, end: usize) {
        if start >= end || self.top().hidden {
            return;
        }
        self.out.push_str(&decode_entities(&self.src[start..end]));
    }

    /// Handles the markup that starts at `self.pos` (a `<`).
    fn markup(&mut self) {
        let rest = &self.src.as_bytes()[self.pos..];
        match rest.get(1) {
            Some(b'!') if rest.starts_with(b"<!--") => self.skip_comment(),
            Some(b'!' | b'?') => self.skip_past(b">"),
            Some(b'/') => self.end_tag(),
            Some(c) if c.is_ascii_alphabetic() => self.start_tag(),
            _ => {
                // A lone `<` is text.
                self.text(self.pos, self.pos + 1);
                self.pos += 1;
            }
        }
    }

    fn skip_comment(&mut self) {
        let body = &self.src.as_bytes()[self.pos + 4..];
        // `<!-->` and `<!--->` are complete (empty) comments.
        if body.starts_with(b">") || body.starts_with(b"->") {
            self.pos += 4 + if body[0] == b'>' { 1 } else { 2 };
            return;
        }
        self.pos = match memmem::find(body, b"-->") {
            Some(i) => self.pos + 4 + i + 3,
            None => self.src.len(),
        };
    }

    fn skip_past(&mut self, needle: &[u8]) {
        self.pos = match memmem::find(&self.src.as_bytes()[self.pos..], needle) {
            Some(i) => self.pos + i + needle.len(),
            None => self.src.len(),
        };
    }

    fn end_tag(&mut self) {
        let bytes = self.src.as_bytes();
        let name_start = self.pos + 2;
        let name_end = name_end(bytes, name_start);
        let name = TagName::new(&bytes[name_start..name_end]);
        self.pos = name_end;
        self.skip_past(b">");
        if name.is_block() {
            self.out.push('\n');
        }
        if let Some(depth) = self.stack.iter().rposition(|f| f.name == name)
            && depth > 0
        {
            self.stack.truncate(depth);
        }
    }

    fn start_tag(&mut self) {
        let bytes = self.src.as_bytes();
        let name_start = self.pos + 1;
        let name_end = name_end(bytes, name_start);
        let name = TagName::new(&bytes[name_start..name_end]);
        let (attrs, self_closing) = self.attributes(name_end);
        if name.is_raw_text() {
            self.skip_raw_text(name);
            return;
        }
        if name.is_block() {
            self.out.push('\n');
        }
        if name.is_link() {
            self.collect_link(attrs.href);
        }
        self.close_implied(name);
        let frame = self.frame_for(name, &attrs);
        if name.as_bytes() == b"body" {
            // The body's colours apply to the whole document.
            self.stack[0].background = frame.background;
            self.stack[0].color = frame.color;
        }
        if self_closing || name.is_void() {
            return;
        }
        if self.stack.len() >= MAX_HTML_DEPTH {
            self.scan.too_deep = true;
            return;
        }
        self.stack.push(frame);
    }

    /// Parses attributes from `start` up to the closing `>` and leaves
    /// `self.pos` after it. Returns the attributes that matter and whether the
    /// tag was self-closing (`/>`).
    fn attributes(&mut self, start: usize) -> (Attributes<'a>, bool) {
        let src: &'a str = self.src;
        let bytes = src.as_bytes();
        let mut attrs = Attributes::default();
        let mut i = start;
        let mut self_closing = false;
        loop {
            while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
                self_closing = bytes[i] == b'/';
                i += 1;
            }
            if i >= bytes.len() {
                break;
            }
            if bytes[i] == b'>' {
                i += 1;
                break;
            }
            self_closing = false;
            let name_start = i;
            while i < bytes.len() && !matches!(bytes[i], b'=' | b'>' | b'/') && !bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            let attr_name = &bytes[name_start..i];
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            let mut value = "";
            if i < bytes.len() && bytes[i] == b'=' {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
                let (v, next) = attribute_value(src, i);
                value = v;
                i = next;
            }
            attrs.set(attr_name, value);
        }
        self.pos = i.min(bytes.len());
        (attrs, self_closing)
    }

    fn skip_raw_text(&mut self, name: TagName) {
        let bytes = self.src.as_bytes();
        let mut from = self.pos;
        loop {
            let Some(i) = memmem::find(&bytes[from..], b"</") else {
                self.pos = bytes.len();
                return;
            };
            let at = from + i;
            let end = name_end(bytes, at + 2);
            if TagName::new(&bytes[at + 2..end]) == name {
                self.pos = at;
                self.end_tag();
                return;
            }
            from = at + 2;
        }
    }

    /// Closes elements that a new `name` element implicitly ends, the way
    /// browsers treat unclosed paragraphs, list items and table cells.
    fn close_implied(&mut self, name: TagName) {
        let closes: &[&[u8]] = match name.as_bytes() {
            b"p" | b"li" | b"option" | b"dt" | b"dd" => &[name.as_bytes()],
            b"td" | b"th" => &[b"td", b"th"],
            b"tr" => &[b"td", b"th", b"tr"],
            _ => return,
        };
        while self.stack.len() > 1 && closes.contains(&self.top().name.as_bytes()) {
            self.stack.pop();
        }
    }

    fn frame_for(&self, name: TagName, attrs: &Attributes<'_>) -> Frame {
        let parent = *self.top();
        let style = Style::parse(attrs.style);
        let own_color = style.color.or_else(|| attrs.color.and_then(Rgb::parse));
        let own_background = style.background.or_else(|| attrs.bgcolor.and_then(Rgb::parse));
        let color = own_color.or(parent.color);
        let background = own_background.unwrap_or(parent.background);
        let camouflaged =
            (own_color.is_some() || own_background.is_some()) && color.is_some_and(|c| c.is_near(background));
        Frame { name, hidden: parent.hidden || style.hidden || attrs.hidden || camouflaged, color, background }
    }

    fn collect_link(&mut self, href: Option<&str>) {
        let Some(href) = href else { return };
        if self.scan.links.len() >= MAX_HTML_LINKS {
            return;
        }
        let href = decode_entities(href.trim());
        let lower = href.get(..8).unwrap_or(&href).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("www.") {
            self.scan.links.push(href.into_owned());
        }
    }
}

/// The end of a tag name that starts at `start`.
fn name_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'-' | b':' | b'_')) {
        i += 1;
    }
    i
}

/// An attribute value starting at `i`: quoted or bare. Returns the value and
/// the index after it.
fn attribute_value(src: &str, i: usize) -> (&str, usize) {
    let bytes = src.as_bytes();
    match bytes.get(i) {
        Some(&quote @ (b'"' | b'\'')) => match memchr(quote, &bytes[i + 1..]) {
            Some(len) => (&src[i + 1..i + 1 + len], i + 2 + len),
            None => (&src[i + 1..], bytes.len()),
        },
        Some(_) => {
            let mut end = i;
            while end < bytes.len() && bytes[end] != b'>' && !bytes[end].is_ascii_whitespace() {
                end += 1;
            }
            (&src[i..end], end)
        }
        None => ("", i),
    }
}

fn decode_entities(text: &str) -> Cow<'_, str> {
    if text.contains('&') { Cow::Owned(htmlize::unescape(text).into_owned()) } else { Cow::Borrowed(text) }
}

/// The attributes that affect visibility or carry links.
#[derive(Default)]
struct Attributes<'a> {
    style: &'a str,
    color: Option<&'a str>,
    bgcolor: Option<&'a str>,
    href: Option<&'a str>,
    hidden: bool,
}

impl<'a> Attributes<'a> {
    fn set(&mut self, name: &[u8], value: &'a str) {
        if name.eq_ignore_ascii_case(b"style") {
            self.style = value;
        } else if name.eq_ignore_ascii_case(b"color") {
            self.color = Some(value);
        } else if name.eq_ignore_ascii_case(b"bgcolor") {
            self.bgcolor = Some(value);
        } else if name.eq_ignore_ascii_case(b"href") {
            self.href = Some(value);
        } else if name.eq_ignore_ascii_case(b"hidden") {
            self.hidden = true;
        }
    }
}

/// The parts of an inline `style` attribute that decide visibility.
#[derive(Default)]
struct Style {
    hidden: bool,
    color: Option<Rgb>,
    background: Option<Rgb>,
}

impl Style {
    fn parse(style: &str) -> Style {
        let mut parsed = Style::default();
        if style.is_empty() {
            return parsed;
        }
        let style = decode_entities(style).to_ascii_lowercase();
        let mut zero_height = false;
        let mut overflow_hidden = false;
        for declaration in style.split(';') {
            let Some((property, value)) = declaration.split_once(':') else { continue };
            let value = value.trim().trim_end_matches("!important").trim();
            match property.trim() {
                "display" => parsed.hidden |= value == "none",
                "visibility" => parsed.hidden |= value == "hidden" || value == "collapse",
                "opacity" => parsed.hidden |= value.parse::<f32>().is_ok_and(|o| o <= 0.05),
                "mso-hide" => parsed.hidden |= value == "all",
                "font-size" => parsed.hidden |= is_tiny_font(value),
                "max-height" | "height" => zero_height |= is_zero_length(value),
                "overflow" => overflow_hidden |= value == "hidden",
                "color" => parsed.color = Rgb::parse(value),
                "background-color" => parsed.background = Rgb::parse(value),
                "background" => {
                    parsed.background = value.split_whitespace().find_map(Rgb::parse).or(parsed.background);
                }
                _ => {}
            }
        }
        parsed.hidden |= zero_height && overflow_hidden;
        parsed
    }
}

/// A length with a unit, e.g. `1px` → (1.0, "px").
fn split_length(value: &str) -> Option<(f32, &str)> {
    let end = value.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-')).unwrap_or(value.len());
    let number = value[..end].parse::<f32>().ok()?;
    Some((number, value[end..].trim()))
}

fn is_zero_length(value: &str) -> bool {
    split_length(value).is_some_and(|(n, _)| n <= 0.0)
}

/// A font size a reader cannot read: about one pixel or smaller.
fn is_tiny_font(value: &str) -> bool {
    match split_length(value) {
        Some((n, "px" | "pt" | "")) => n <= 1.5,
        Some((n, "em" | "rem")) => n <= 0.1,
        Some((n, "%")) => n <= 10.0,
        Some((n, _)) => n <= 0.0,
        None => false,
    }
}

/// An sRGB colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rgb(u8, u8, u8);

impl Rgb {
    const WHITE: Rgb = Rgb(255, 255, 255);

    /// Parses `#rgb`, `#rrggbb`, bare `rrggbb` (legacy attributes),
    /// `rgb(r, g, b)` and common colour names.
    fn parse(value: &str) -> Option<Rgb> {
        let value = value.trim();
        if let Some(inner) = value.strip_prefix("rgb(").or_else(|| value.strip_prefix("rgba(")) {
            let mut channels = inner.trim_end_matches(')').split(',').map(|c| c.trim().parse::<u8>().ok());
            return Some(Rgb(channels.next()??, channels.next()??, channels.next()??));
        }
        let hex = value.strip_prefix('#').unwrap_or(value);
        if hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let channel = |s: &str| u8::from_str_radix(s, 16).ok();
            return match hex.len() {
                3 => {
                    let [r, g, b] = [&hex[0..1], &hex[1..2], &hex[2..3]].map(|c| channel(c).map(|v| v * 17));
                    Some(Rgb(r?, g?, b?))
                }
                6 => Some(Rgb(channel(&hex[0..2])?, channel(&hex[2..4])?, channel(&hex[4..6])?)),
                _ => None,
            };
        }
        named_color(&value.to_ascii_lowercase())
    }

    /// Whether text in `self` on `other` is invisible to a reader.
    fn is_near(self, other: Rgb) -> bool {
        let d = |a: u8, b: u8| a.abs_diff(b);
        d(self.0, other.0).max(d(self.1, other.1)).max(d(self.2, other.2)) <= 20
    }
}

fn named_color(name: &str) -> Option<Rgb> {
    Some(match name {
        "white" | "snow" | "ghostwhite" | "whitesmoke" | "ivory" | "floralwhite" | "azure" | "mintcream"
        | "honeydew" | "seashell" | "aliceblue" | "linen" | "oldlace" => Rgb(255, 255, 255),
        "black" => Rgb(0, 0, 0),
        "silver" => Rgb(192, 192, 192),
        "gray" | "grey" => Rgb(128, 128, 128),
        "lightgray" | "lightgrey" => Rgb(211, 211, 211),
        "red" => Rgb(255, 0, 0),
        "maroon" => Rgb(128, 0, 0),
        "purple" => Rgb(128, 0, 128),
        "fuchsia" | "magenta" => Rgb(255, 0, 255),
        "green" => Rgb(0, 128, 0),
        "lime" => Rgb(0, 255, 0),
        "olive" => Rgb(128, 128, 0),
        "yellow" => Rgb(255, 255, 0),
        "navy" => Rgb(0, 0, 128),
        "blue" => Rgb(0, 0, 255),
        "teal" => Rgb(0, 128, 128),
        "aqua" | "cyan" => Rgb(0, 255, 255),
        "orange" => Rgb(255, 165, 0),
        _ => return None,
    })
}

/// A lower-cased tag name, compared by value; names longer than the buffer
/// are cut, which only affects made-up tags.
#[derive(Clone, Copy, PartialEq, Eq)]
struct TagName {
    len: u8,
    bytes: [u8; 15],
}

impl TagName {
    const EMPTY: TagName = TagName { len: 0, bytes: [0; 15] };

    fn new(name: &[u8]) -> TagName {
        let mut tag = TagName::EMPTY;
        let len = name.len().min(tag.bytes.len());
        for (dst, src) in tag.bytes.iter_mut().zip(&name[..len]) {
            *dst = src.to_ascii_lowercase();
        }
        tag.len = len as u8;
        tag
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    fn is_block(&self) -> bool {
        matches!(
            self.as_bytes(),
            b"address"
                | b"article"
                | b"aside"
                | b"blockquote"
                | b"body"
                | b"br"
                | b"caption"
                | b"center"
                | b"dd"
                | b"div"
                | b"dl"
                | b"dt"
                | b"fieldset"
                | b"figcaption"
                | b"figure"
                | b"footer"
                | b"form"
                | b"h1"
                | b"h2"
                | b"h3"
                | b"h4"
                | b"h5"
                | b"h6"
                | b"header"
                | b"hr"
                | b"html"
                | b"li"
                | b"main"
                | b"nav"
                | b"ol"
                | b"option"
                | b"p"
                | b"pre"
                | b"section"
                | b"table"
                | b"tbody"
                | b"td"
                | b"tfoot"
                | b"th"
                | b"thead"
                | b"tr"
                | b"ul"
        )
    }

    fn is_void(&self) -> bool {
        matches!(
            self.as_bytes(),
            b"area"
                | b"base"
                | b"basefont"
                | b"bgsound"
                | b"br"
                | b"col"
                | b"embed"
                | b"frame"
                | b"hr"
                | b"img"
                | b"input"
                | b"keygen"
                | b"link"
                | b"meta"
                | b"param"
                | b"source"
                | b"track"
                | b"wbr"
        )
    }

    /// Elements whose content is never shown as text in a mail reader.
    fn is_raw_text(&self) -> bool {
        matches!(self.as_bytes(), b"script" | b"style" | b"title" | b"template" | b"xml" | b"noembed")
    }

    fn is_link(&self) -> bool {
        matches!(self.as_bytes(), b"a" | b"area")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(html: &str, expect: &str) {
        let mut out = String::new();
        visible_text(html, &mut out);
        let got = out.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(got, expect, "html: {html}");
    }

    #[test]
    fn inline_markup_joins_words() {
        check("Sa<!-- x -->ve <b></b>to<i></i>day", "Save today");
        check("Sa<!---->ve", "Save");
        check("<SPAN class=q>Bu</SPAN>y", "Buy");
    }

    #[test]
    fn blocks_separate_words() {
        check("<p>one</p><p>two</p>", "one two");
        check("one<br>two<td>three</td>", "one two three");
    }

    #[test]
    fn hidden_elements_are_dropped() {
        check(r#"shown <div style="display:none">hidden words</div> text"#, "shown text");
        check(r##"a <span style="font-size:1px;color:#FFFFFF">junk</span> b"##, "a b");
        check(r##"a <font color="#ffffff" size="1">junk</font> b"##, "a b");
        check(r#"a <p style="visibility: hidden">junk</p> b"#, "a b");
        check(r#"a <div hidden>junk</div> b"#, "a b");
        check(r#"a <div style="max-height:0;overflow:hidden">preheader</div> b"#, "a b");
    }

    #[test]
    fn light_text_on_dark_background_is_visible() {
        check(r#"<body bgcolor="black"><font color="white">visible</font></body>"#, "visible");
        check(r##"<td style="background:#000 url(x.gif)"><span style="color:#fff">shown</span></td>"##, "shown");
        check(r#"<body bgcolor="black"><font color="black">hidden</font>x</body>"#, "x");
    }

    #[test]
    fn scripts_styles_and_titles_are_dropped() {
        check("<title>t</title><style>p { x: '<b>' }</style>body<script>if (a<b) x()</script>", "body");
    }

    #[test]
    fn entities_are_decoded() {
        check("Sa&zwnj;ve &amp; win &euro;5", "Sa\u{200c}ve & win €5");
    }

    #[test]
    fn links_are_collected() {
        let mut out = String::new();
        let scan = visible_text(
            r#"<a href="http://a.example/x?y=1&amp;z=2">x</a><a href='mailto:q@r'>m</a><area href=www.b.example/>"#,
            &mut out,
        );
        assert_eq!(scan.links, vec!["http://a.example/x?y=1&z=2".to_owned(), "www.b.example/".to_owned()]);
    }

    #[test]
    fn malformed_markup_is_text_or_ignored() {
        check("a < b and c<", "a < b and c<");
        check("</nope>x</p></div>y", "x y");
        check("<p unterminated", "");
        check("x<!-- never closed", "x");
        check("<a href=\"unterminated>text", "");
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let html = "<div>".repeat(10_000) + "deep" + &"</div>".repeat(10_000);
        let mut out = String::new();
        let scan = visible_text(&html, &mut out);
        assert!(scan.too_deep);
        assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["deep"]);
    }

    #[test]
    fn implied_ends_keep_the_stack_flat() {
        let html = "<p>x".repeat(10_000);
        let mut out = String::new();
        let scan = visible_text(&html, &mut out);
        assert!(!scan.too_deep);
    }
}
