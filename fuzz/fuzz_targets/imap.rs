//! Fuzzes what the agent does with an IMAP server's data: the server's
//! responses parsed as `async-imap` parses them (`imap-proto`), one after
//! another as a client reads its stream; the Message-ID the agent reads from
//! a fetched header; and the quoted string it builds from that Message-ID
//! (or a folder name) for its next command, which must be one well-formed
//! quoted string that cannot end the command line. Any panic or hang is a
//! bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fn check_quoted(text: &str) {
    let quoted = starling_agent::imap::quote(text);
    assert!(!quoted.contains(['\r', '\n', '\0']), "a line break or NUL in {quoted:?}");
    let inner = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')).expect("quoted");
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => assert!(matches!(chars.next(), Some('\\' | '"')), "a lone backslash in {quoted:?}"),
            '"' => panic!("an unescaped quote in {quoted:?}"),
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // imap-proto 0.17 panics on some malformed text (found here: non-UTF-8
    // right after a response code); the agent catches that and treats it as
    // a lost connection (`a_response_the_parser_cannot_read_is_a_lost_
    // connection_not_a_dead_task`). The same here, so the run goes on
    // looking for hangs and for faults in the agent's own code below.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let _ = std::panic::catch_unwind(|| {
        let mut rest = data;
        while let Ok((next, _response)) = imap_proto::Response::parse(rest) {
            if next.len() >= rest.len() {
                break;
            }
            rest = next;
        }
    });
    std::panic::set_hook(previous);
    if let Some(id) = starling_agent::facts::Facts::from_message(data, 0).message_id {
        check_quoted(&id);
    }
    check_quoted(&String::from_utf8_lossy(data));
});
