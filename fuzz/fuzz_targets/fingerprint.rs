//! Fuzzes the whole fingerprint path: MIME parsing, charset recovery, HTML
//! visibility, normalisation, URL handling and hashing. Any panic, hang or
//! runaway allocation is a bug.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use starling_fingerprint::{Fingerprinter, Key};

static FINGERPRINTER: LazyLock<Fingerprinter> = LazyLock::new(|| Fingerprinter::new(&Key::DEVELOPMENT));

fuzz_target!(|data: &[u8]| {
    let fingerprints = FINGERPRINTER.fingerprint(data);
    // Exercise the derived values too.
    if let Some(fuzzy) = &fingerprints.fuzzy {
        let _ = fuzzy.band_keys();
        let _ = fuzzy.similarity(fuzzy);
    }
});
