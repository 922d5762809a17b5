//! Fuzzes activation codes: `activation::verify` on any text (what an
//! administrator pastes, what a network hands over), and the payload reader
//! behind the signature, which must read back exactly what it accepted.
//! Any panic or hang is a bug; bad codes come back as errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_proto::activation::{Claims, verify};

/// A fixed public key: no fuzzed text carries a valid signature for it, so
/// this exercises everything before the signature check.
const KEY: [u8; 32] = [7; 32];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    assert!(verify(&text, &KEY).is_err());
    if let Ok(claims) = Claims::from_payload(data) {
        assert_eq!(claims.to_payload().expect("an accepted payload writes back"), data);
    }
});
