//! Whitelist entries: senders whose mail is never filtered.
//!
//! One entry is one line of text; its form says what it matches:
//!
//! | form | example | matches |
//! | --- | --- | --- |
//! | address | `alice@example.com` | a sender address (From, Sender, Return-Path) |
//! | `@domain` | `@example.com` | sender addresses of exactly that domain |
//! | name | `example.com`, `mail.example.com`, `cx` | a sender domain or relay host name equal to it or below it |
//! | `*.name` or `.name` | `*.example.com` | sender domains and relay hosts strictly below it |
//! | IP address | `192.0.2.7`, `2001:db8::7` | a relay's address |
//! | CIDR range | `192.0.2.0/24`, `10.1/16`, `2001:db8::/32` | relay addresses in the range |
//! | `/regex/` or `re:regex` | `/^billing@.*\.example\.com$/` | a sender address or the From header, case-insensitively |
//!
//! Relays are the hosts named by the newest `Received` headers, the ones
//! written by the organisation's own servers (`whitelist.received_headers`).
//! Regular expressions are the `regex` crate's syntax: linear-time, no
//! look-around or back-references, so a hostile pattern or message cannot
//! make matching slow.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use regex::{Regex, RegexBuilder};

use crate::facts::Facts;

/// Compiled size bound of one regular expression.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One whitelist entry.
#[derive(Clone, Debug)]
pub enum Entry {
    /// A full address.
    Address(String),
    /// `@domain`: addresses of exactly this domain.
    Domain(String),
    /// A domain or host name, and everything below it.
    Name(String),
    /// Everything strictly below a name.
    Below(String),
    /// One IP address.
    Ip(IpAddr),
    /// A CIDR range.
    Net(IpNet),
    /// A regular expression (the source as written, and compiled).
    Regex(String, Regex),
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.to_string() == other.to_string()
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Address(a) => f.write_str(a),
            Entry::Domain(d) => write!(f, "@{d}"),
            Entry::Name(n) => f.write_str(n),
            Entry::Below(n) => write!(f, "*.{n}"),
            Entry::Ip(ip) => write!(f, "{ip}"),
            Entry::Net(net) => write!(f, "{net}"),
            Entry::Regex(source, _) => write!(f, "/{source}/"),
        }
    }
}

impl Entry {
    /// Parses one entry; the error says which forms are accepted.
    pub fn parse(text: &str) -> Result<Entry, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("an empty entry".into());
        }
        if let Some(source) =
            text.strip_prefix("re:").or_else(|| text.strip_prefix('/').and_then(|t| t.strip_suffix('/')))
        {
            let regex =
                RegexBuilder::new(source).case_insensitive(true).size_limit(REGEX_SIZE_LIMIT).build().map_err(|e| {
                    format!("invalid regular expression {source:?}: {}", e.to_string().replace('\n', " "))
                })?;
            return Ok(Entry::Regex(source.to_owned(), regex));
        }
        let lower = text.to_ascii_lowercase();
        if let Some(domain) = lower.strip_prefix('@') {
            return check_name(domain).map(|()| Entry::Domain(domain.to_owned()));
        }
        if let Some((local, domain)) = lower.rsplit_once('@') {
            if local.contains('*') {
                return Err(format!("{text:?}: wildcards are not supported; write @{domain} or a /regex/"));
            }
            if local.is_empty() || local.contains(char::is_whitespace) || local.contains(['<', '>', ',']) {
                return Err(format!("{text:?} is not an email address"));
            }
            check_name(domain)?;
            return Ok(Entry::Address(lower));
        }
        if lower.contains('/') {
            return parse_net(&lower).map(Entry::Net);
        }
        if let Ok(ip) = lower.parse::<IpAddr>() {
            return Ok(Entry::Ip(canonical(ip)));
        }
        if let Some(name) = lower.strip_prefix("*.").or_else(|| lower.strip_prefix('.')) {
            return check_name(name).map(|()| Entry::Below(name.to_owned()));
        }
        check_name(&lower).map(|()| Entry::Name(lower))
    }
}

/// A host or domain name: dot-separated labels of letters, digits, `-` and
/// `_` (IDNs in their `xn--` form).
fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not an address, @domain, host or domain name, *.domain, IP address, CIDR range or /regex/"
        ))
    }
}

/// A CIDR range; IPv4 prefixes may be written short (`10.1/16`).
fn parse_net(text: &str) -> Result<IpNet, String> {
    let (address, length) = text.split_once('/').ok_or_else(|| format!("{text:?} is not a CIDR range"))?;
    let padded;
    let address = if !address.contains(':') && address.split('.').count() < 4 {
        let parts = address.split('.').count();
        padded = format!("{address}{}", ".0".repeat(4 - parts));
        &padded
    } else {
        address
    };
    format!("{address}/{length}")
        .parse::<IpNet>()
        .map(|net| net.trunc())
        .map_err(|_| format!("{text:?} is not a CIDR range (like 192.0.2.0/24 or 2001:db8::/32)"))
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A set of entries, indexed so that a message costs a few hash look-ups
/// per sender domain whatever the number of entries.
#[derive(Clone, Debug, Default)]
pub struct Whitelist {
    addresses: HashSet<String>,
    domains: HashSet<String>,
    names: HashSet<String>,
    below: HashSet<String>,
    ips: HashSet<IpAddr>,
    nets: Vec<IpNet>,
    regexes: Vec<(String, Regex)>,
}

impl Whitelist {
    /// An empty whitelist.
    pub fn new() -> Whitelist {
        Whitelist::default()
    }

    /// Builds a whitelist from entries.
    pub fn from_entries(entries: impl IntoIterator<Item = Entry>) -> Whitelist {
        let mut list = Whitelist::new();
        for entry in entries {
            list.add(entry);
        }
        list
    }

    /// Adds one entry.
    pub fn add(&mut self, entry: Entry) {
        match entry {
            Entry::Address(a) => {
                self.addresses.insert(a);
            }
            Entry::Domain(d) => {
                self.domains.insert(d);
            }
            Entry::Name(n) => {
                self.names.insert(n);
            }
            Entry::Below(n) => {
                self.below.insert(n);
            }
            Entry::Ip(ip) => {
                self.ips.insert(ip);
            }
            Entry::Net(net) => self.nets.push(net),
            Entry::Regex(source, regex) => self.regexes.push((source, regex)),
        }
    }

    /// Whether the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty()
            && self.domains.is_empty()
            && self.names.is_empty()
            && self.below.is_empty()
            && self.ips.is_empty()
            && self.nets.is_empty()
            && self.regexes.is_empty()
    }

    /// The first entry matching the message, written as an entry.
    pub fn matches(&self, facts: &Facts) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        for address in &facts.senders {
            if self.addresses.contains(address) {
                return Some(address.clone());
            }
            if let Some((_, domain)) = address.rsplit_once('@') {
                if self.domains.contains(domain) {
                    return Some(format!("@{domain}"));
                }
                if let Some(hit) = self.name_match(domain) {
                    return Some(hit);
                }
            }
        }
        for relay in &facts.relays {
            if let Some(host) = &relay.host
                && let Some(hit) = self.name_match(host)
            {
                return Some(hit);
            }
            if let Some(ip) = relay.ip {
                let ip = canonical(ip);
                if self.ips.contains(&ip) {
                    return Some(ip.to_string());
                }
                if let Some(net) = self.nets.iter().find(|net| net.contains(&ip)) {
                    return Some(net.to_string());
                }
            }
        }
        for (source, regex) in &self.regexes {
            let hit = facts.senders.iter().any(|a| regex.is_match(a))
                || facts.from_header.as_deref().is_some_and(|from| regex.is_match(from));
            if hit {
                return Some(format!("/{source}/"));
            }
        }
        None
    }

    /// `name` or one of its parent domains as a name entry, or a parent as a
    /// `*.` entry.
    fn name_match(&self, name: &str) -> Option<String> {
        let name = name.trim_end_matches('.');
        if self.names.contains(name) {
            return Some(name.to_owned());
        }
        let mut rest = name;
        while let Some((_, parent)) = rest.split_once('.') {
            if self.names.contains(parent) {
                return Some(parent.to_owned());
            }
            if self.below.contains(parent) {
                return Some(format!("*.{parent}"));
            }
            rest = parent;
        }
        None
    }
}

/// Parses a whitelist file: plain text (one entry per line, `#` comments)
/// or CSV with the entry in the first column (a header row `entry,…` is
/// skipped). Returns the entries with the comment column, if any, and the
/// problems by line.
pub fn parse_file(text: &str) -> (Vec<(Entry, String)>, Vec<String>) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    for (index, record) in reader.records().enumerate() {
        let line = index + 1;
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                problems.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let Some(first) = record.get(0).filter(|f| !f.is_empty()) else { continue };
        if index == 0 && first.eq_ignore_ascii_case("entry") {
            continue;
        }
        match Entry::parse(first) {
            Ok(entry) => entries.push((entry, record.get(1).unwrap_or("").to_owned())),
            Err(e) => problems.push(format!("line {}: {e}", record.position().map_or(line as u64, |p| p.line()))),
        }
    }
    (entries, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Relay;

    fn facts(senders: &[&str], relays: &[(Option<&str>, Option<&str>)]) -> Facts {
        Facts {
            senders: senders.iter().map(|s| s.to_string()).collect(),
            from_header: senders.first().map(|s| format!("Someone <{s}>")),
            relays: relays
                .iter()
                .map(|(host, ip)| Relay { host: host.map(str::to_owned), ip: ip.map(|i| i.parse().unwrap()) })
                .collect(),
            ..Facts::default()
        }
    }

    fn list(entries: &[&str]) -> Whitelist {
        Whitelist::from_entries(entries.iter().map(|e| Entry::parse(e).unwrap()))
    }

    #[test]
    fn forms_are_recognised() {
        let cases = [
            ("Alice@Example.com", "alice@example.com"),
            ("@example.com", "@example.com"),
            ("example.com", "example.com"),
            ("cx", "cx"),
            ("*.example.com", "*.example.com"),
            (".example.com", "*.example.com"),
            ("192.0.2.7", "192.0.2.7"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("2001:db8::7", "2001:db8::7"),
            ("192.0.2.77/24", "192.0.2.0/24"),
            ("127.0.0/24", "127.0.0.0/24"),
            ("10.1/16", "10.1.0.0/16"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("/^billing@/", "/^billing@/"),
            ("re:^billing@", "/^billing@/"),
        ];
        for (text, written) in cases {
            assert_eq!(Entry::parse(text).unwrap().to_string(), written, "{text}");
        }
        for bad in ["", "a b", "exa mple.com", "@", "user@", "10.0.0.0/99", "/(/", "*@example.com", "ex..com"] {
            assert!(Entry::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn each_form_matches_what_it_says() {
        let m = facts(&["alice@mail.example.com"], &[(Some("mx.partner.net"), Some("192.0.2.7"))]);
        for hit in [
            "alice@mail.example.com",
            "@mail.example.com",
            "mail.example.com",
            "example.com",
            "com",
            "*.example.com",
            "partner.net",
            "mx.partner.net",
            "192.0.2.7",
            "192.0.2.0/24",
            "/^alice@/",
            "/someone/",
        ] {
            assert!(list(&[hit]).matches(&m).is_some(), "{hit} should match");
        }
        for miss in [
            "bob@mail.example.com",
            "@example.com",
            "ample.com",
            "*.mail.example.com",
            "*.mx.partner.net",
            "192.0.2.8",
            "198.51.100.0/24",
            "/^bob@/",
        ] {
            assert!(list(&[miss]).matches(&m).is_none(), "{miss} should not match");
        }
    }

    #[test]
    fn the_matching_entry_is_named() {
        let m = facts(&["alice@mail.example.com"], &[]);
        assert_eq!(list(&["other.org", "example.com"]).matches(&m).as_deref(), Some("example.com"));
    }

    #[test]
    fn files_in_text_and_csv_form() {
        let (entries, problems) =
            parse_file("entry,comment\n# partners\nexample.com,our partner\n10.0.0.0/8\nnot valid!\n");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].1, "our partner");
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("line 5"), "{problems:?}");
    }
}
