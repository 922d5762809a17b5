//! The configuration reference in docs/network.md is tested against the real
//! definitions: every key is documented, every documented key exists, and the
//! documented defaults are the real ones.

use std::collections::BTreeMap;
use std::path::Path;

use starling_network::NodeConfig;
use starling_network::config::TlsConfig;

/// Dotted key → TOML value of every leaf.
fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, toml::Value>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&path, value, out);
            }
        }
        leaf => {
            out.insert(prefix.to_owned(), leaf.clone());
        }
    }
}

/// The (key, default) rows of the reference table.
fn documented() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/network.md");
    let text = std::fs::read_to_string(path).unwrap();
    let section = text.split("## Configuration reference").nth(1).expect("a configuration reference section");
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let key = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let default = cells.get(2)?.trim_matches('`');
            Some((key.to_owned(), default.to_owned()))
        })
        .collect()
}

#[test]
fn every_option_is_documented_with_its_default() {
    let mut config = NodeConfig::default();
    let mut actual = BTreeMap::new();
    flatten("", &toml::Value::try_from(&config).unwrap(), &mut actual);
    // Options without a default appear once configured.
    config.tls = Some(TlsConfig { certificate: "c".into(), private_key: "k".into() });
    config.network_key_file = Some("key".into());
    let mut with_tls = BTreeMap::new();
    flatten("", &toml::Value::try_from(&config).unwrap(), &mut with_tls);
    let docs = documented();

    let real: Vec<&String> = with_tls.keys().collect();
    let described: Vec<&String> = docs.keys().collect();
    assert_eq!(real, described, "docs/network.md and NodeConfig list different keys");

    for (key, value) in &actual {
        let written = &docs[key];
        let same = match value {
            toml::Value::String(s) => written == &format!("\"{s}\"") || written == s,
            toml::Value::Integer(i) => written.parse::<i64>().ok() == Some(*i),
            // f32 options widen to f64 inexactly.
            toml::Value::Float(f) => written.parse::<f64>().is_ok_and(|w| (w - f).abs() <= 1e-6 * w.abs().max(1.0)),
            toml::Value::Boolean(b) => written.parse::<bool>().ok() == Some(*b),
            other => panic!("{key}: unexpected value {other:?}"),
        };
        assert!(same, "{key}: documented default {written}, real default {value}");
    }
}
