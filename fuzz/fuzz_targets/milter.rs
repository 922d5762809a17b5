//! Fuzzes the milter side facing the MTA: frame cutting, command parsing,
//! the session's state machine and its bounds, and encoding the responses.
//! Any panic, hang or runaway allocation is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    starling_milter::fuzz_session(data);
});
