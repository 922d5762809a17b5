//! URL and registrable-domain signatures.
//!
//! A URL is reduced to what identifies the destination and survives
//! per-recipient rewriting: the lower-cased host without `www.`, and the path
//! without query, fragment, credentials, port or trailing slash. Its
//! registrable domain ("eTLD+1", from the public-suffix list) is signed
//! separately, because spammers keep their domain but re-roll sub-domains and
//! paths. IP-literal hosts are their own "domain".

use std::collections::BTreeSet;

use url::{Host, Url};

use crate::limits::{MAX_URL_CHARS, MAX_URLS};

/// A URL reduced to host and path, and its registrable domain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct NormalizedUrl {
    pub host_path: String,
    pub domain: String,
}

/// Normalises a URL found in text or in an `href`; `None` for anything that
/// is not an http(s) URL with a host.
pub(crate) fn normalize(raw: &str) -> Option<NormalizedUrl> {
    let raw = raw.trim();
    simple(raw).or_else(|| by_whatwg(raw))
}

/// The common case without a full WHATWG parse: a plain ASCII `http(s)://`
/// or `www.` URL whose host is a lower-case-able DNS name and whose path
/// needs no normalisation. Anything else (IP addresses, IDNs, escapes, dot
/// segments, ports, credentials) returns `None` and takes the full parse; a
/// test checks that both agree wherever this one answers.
fn simple(raw: &str) -> Option<NormalizedUrl> {
    let lower_start = raw.get(..8)?.to_ascii_lowercase();
    let rest = if lower_start.starts_with("http://") {
        &raw[7..]
    } else if lower_start.starts_with("https://") {
        &raw[8..]
    } else if lower_start.starts_with("www.") {
        raw
    } else {
        return None;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (host, tail) = rest.split_at(end);
    let host = host.trim_end_matches('.');
    let last_label = host.rsplit('.').next()?;
    let dns_name = !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && !host.starts_with('.')
        && !host.contains("..")
        && !last_label.bytes().all(|b| b.is_ascii_digit());
    let path = tail.split(['?', '#']).next().unwrap_or("");
    let plain_path = path.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_~/".contains(&b) || b == b'.')
        && !path.contains("/.")
        && path.len() + host.len() < MAX_URL_CHARS;
    if !dns_name || !plain_path {
        return None;
    }
    let name = host.to_ascii_lowercase();
    let host = name.strip_prefix("www.").unwrap_or(&name).to_owned();
    let domain = psl::domain_str(&name).unwrap_or(&host).to_owned();
    let host_path = format!("{host}{}", path.trim_end_matches('/'));
    Some(NormalizedUrl { host_path, domain })
}

/// The general case, through the WHATWG URL parser.
fn by_whatwg(raw: &str) -> Option<NormalizedUrl> {
    let raw: String = raw.chars().take(MAX_URL_CHARS).collect();
    let parsed = if raw.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("www.")) {
        Url::parse(&format!("http://{raw}")).ok()?
    } else {
        Url::parse(&raw).ok()?
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        return None;
    }
    let (host, domain) = match parsed.host()? {
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let host = name.strip_prefix("www.").unwrap_or(&name).to_owned();
            let domain = psl::domain_str(&name).unwrap_or(&host).to_owned();
            (host, domain)
        }
        Host::Ipv4(ip) => (ip.to_string(), ip.to_string()),
        Host::Ipv6(ip) => (format!("[{ip}]"), format!("[{ip}]")),
    };
    if host.is_empty() {
        return None;
    }
    let path = parsed.path().trim_end_matches('/');
    Some(NormalizedUrl { host_path: format!("{host}{path}"), domain })
}

/// The distinct normalised URLs and domains of a message, each capped at
/// [`MAX_URLS`]. Returns whether anything was cut.
pub(crate) fn collect<'a>(raw: impl IntoIterator<Item = &'a str>) -> (BTreeSet<String>, BTreeSet<String>, bool) {
    let mut urls = BTreeSet::new();
    let mut domains = BTreeSet::new();
    let mut truncated = false;
    // Links repeat (the same "click here" URL five times): parse each once.
    let mut raw: Vec<&str> = raw.into_iter().collect();
    raw.sort_unstable();
    raw.dedup();
    for url in raw.into_iter().filter_map(normalize) {
        if urls.len() < MAX_URLS {
            urls.insert(url.host_path);
        } else if !urls.contains(&url.host_path) {
            truncated = true;
        }
        if domains.len() < MAX_URLS {
            domains.insert(url.domain);
        } else if !domains.contains(&url.domain) {
            truncated = true;
        }
    }
    (urls, domains, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, host_path: &str, domain: &str) {
        let got = normalize(raw).unwrap_or_else(|| panic!("{raw} should normalise"));
        assert_eq!((got.host_path.as_str(), got.domain.as_str()), (host_path, domain), "{raw}");
    }

    #[test]
    fn query_fragment_port_and_case_are_dropped() {
        check("HTTP://WWW.Example.COM:8080/Path/To/?id=123#frag", "example.com/Path/To", "example.com");
        check("https://user:pw@a.b.example.co.uk/", "a.b.example.co.uk", "example.co.uk");
        check("www.shop.example/x", "shop.example/x", "shop.example");
    }

    #[test]
    fn ip_hosts_are_their_own_domain() {
        check("http://192.0.2.7/x", "192.0.2.7/x", "192.0.2.7");
    }

    #[test]
    fn non_web_links_are_ignored() {
        assert_eq!(normalize("mailto:a@b.example"), None);
        assert_eq!(normalize("javascript:alert(1)"), None);
        assert_eq!(normalize("not a url"), None);
    }

    #[test]
    fn the_shortcut_agrees_with_the_full_parser() {
        let hosts = [
            "www.Example.COM",
            "a.b.example.co.uk",
            "x-y.example",
            "example.com.",
            "1.2.3.4",
            "localhost",
            "a..b",
            "ex_ample.com",
        ];
        let paths = ["", "/", "/Path/To/", "/a/./b", "/a/../b", "/%41b", "/a b", "/ü", "/x.html", "//double"];
        let tails = ["", "?q=1", "#frag", "?a=1#b"];
        for scheme in ["http://", "HTTPS://", "", "ftp://"] {
            for host in hosts {
                for path in paths {
                    for tail in tails {
                        let raw = format!("{scheme}{host}{path}{tail}");
                        if let Some(fast) = simple(&raw) {
                            assert_eq!(Some(fast), by_whatwg(&raw), "{raw}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn collection_is_bounded_and_deduplicated() {
        let raw: Vec<String> = (0..100).map(|i| format!("http://h{i}.example{i}.com/p")).collect();
        let (urls, domains, truncated) = collect(raw.iter().map(String::as_str).chain(["http://h0.example0.com/p/"]));
        assert_eq!((urls.len(), domains.len(), truncated), (MAX_URLS, MAX_URLS, true));
    }
}
