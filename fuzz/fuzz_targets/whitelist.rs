//! Fuzzes whitelist entries and files as an administrator imports them
//! (`whitelist::parse_file`, `Entry::parse`: addresses, domains, hosts, IP
//! ranges, regular expressions), then matches every accepted entry against
//! a message's facts. Any panic, hang or runaway regular expression is a
//! bug.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use starling_agent::facts::Facts;
use starling_agent::whitelist::{Whitelist, parse_file};

static FACTS: LazyLock<Facts> = LazyLock::new(|| {
    let raw = b"Received: from mx.example.net (mx.example.net [192.0.2.7]) by mail.example.org\r\n\
From: \"Alice\" <alice@lists.example.net>\r\nSender: bounce@example.net\r\nSubject: hello\r\n\
Message-ID: <1@example.net>\r\n\r\nHi.\r\n";
    Facts::from_message(raw, 3)
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (entries, _problems) = parse_file(&text);
    let mut list = Whitelist::default();
    for (entry, _comment) in entries {
        list.add(entry);
    }
    let _ = list.matches(&FACTS);
});
