//! Fuzzes the HTML scanner on its own (`fingerprint` reaches it only through
//! MIME): tags, attributes, styles and colours, entities, comments, deep
//! nesting, with its output bounded. Any panic or hang is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    starling_fingerprint::fuzz_html(&String::from_utf8_lossy(data));
});
