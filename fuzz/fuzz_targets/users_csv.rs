//! Fuzzes the users CSV (`users::parse_csv`: `[users] source = "csv"` and
//! `starling users import`) and the mailbox name check every name goes
//! through. Any panic or hang is a bug; bad lines come back as problems.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (users, _problems) = starling_agent::users::parse_csv(&text);
    for user in &users {
        let _ = starling_agent::users::check_name(&user.name);
    }
});
