//! Fuzzes the agent's configuration: TOML parsing, every key's type, and
//! every check with its key path (`AgentConfig::from_toml`). Any panic or
//! hang is a bug; an invalid file must come back as a list of problems.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(config) = starling_agent::AgentConfig::from_toml(text) {
        // A valid configuration has no problems and its derived values
        // are computable.
        assert!(config.problems().is_empty());
        let _ = config.milter.listen_address();
        let _ = config.milter.mode();
    }
});
