//! The configuration reference (`docs/configuration.md`) and the event
//! catalogue (`docs/events.md`) are tested against the code: every key is
//! documented with its real default, every documented key exists, and the
//! catalogue is the generated one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use starling_agent::AgentConfig;
use starling_agent::config::SharedMailbox;

fn read_doc(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Dotted key → TOML value of every leaf; arrays of tables as `key[].field`.
fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, toml::Value>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&path, value, out);
            }
        }
        toml::Value::Array(items) if items.first().is_some_and(toml::Value::is_table) => {
            flatten(&format!("{prefix}[]"), &items[0], out);
        }
        leaf => {
            out.insert(prefix.to_owned(), leaf.clone());
        }
    }
}

/// The (key, default) rows of the reference table.
fn documented() -> BTreeMap<String, String> {
    let text = read_doc("configuration.md");
    let section = text.split("## Reference").nth(1).expect("a Reference section");
    let section = section.split("\n### ").next().unwrap_or(section);
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
    let defaults = AgentConfig::default();
    let mut actual = BTreeMap::new();
    flatten("", &toml::Value::try_from(&defaults).unwrap(), &mut actual);
    // Options without a default appear once set.
    let mut full = defaults.clone();
    full.network.ca_file = Some(PathBuf::from("ca.pem"));
    full.imap.ca_file = Some(PathBuf::from("ca.pem"));
    full.users.csv_file = Some(PathBuf::from("users.csv"));
    full.shared = vec![SharedMailbox {
        account: "support".into(),
        folder: "INBOX".into(),
        action: Some(starling_agent::policy::ActionKind::Tag),
        spam_folder: String::new(),
    }];
    let mut keys = BTreeMap::new();
    flatten("", &toml::Value::try_from(&full).unwrap(), &mut keys);
    keys.remove("shared");
    let docs = documented();
    let real: Vec<&String> = keys.keys().collect();
    let described: Vec<&String> = docs.keys().collect();
    assert_eq!(real, described, "docs/configuration.md and AgentConfig list different keys");

    for (key, value) in &actual {
        let Some(written) = docs.get(key) else { continue };
        let same = match value {
            toml::Value::String(s) => written == &format!("\"{s}\""),
            toml::Value::Integer(i) => written.parse::<i64>().ok() == Some(*i),
            toml::Value::Float(f) => written.parse::<f64>().is_ok_and(|w| (w - f).abs() < 1e-9),
            toml::Value::Boolean(b) => written.parse::<bool>().ok() == Some(*b),
            toml::Value::Array(items) => {
                let shown: Vec<String> =
                    items.iter().map(|v| format!("{:?}", v.as_str().unwrap_or_default())).collect();
                written == &format!("[{}]", shown.join(", "))
            }
            other => panic!("{key}: unexpected value {other:?}"),
        };
        assert!(same, "{key}: documented default {written}, real default {value}");
    }
    // The documented example parses.
    let text = read_doc("configuration.md");
    let example = text.split("```toml\n").nth(1).and_then(|t| t.split("```").next()).expect("an example");
    AgentConfig::from_toml(example).unwrap_or_else(|p| panic!("the example is invalid: {p:?}"));
}

#[test]
fn the_event_catalogue_is_the_generated_one() {
    let text = read_doc("events.md");
    let table = starling_agent::events::catalogue_markdown();
    assert!(
        text.contains(&table),
        "docs/events.md is out of date: regenerate its table with `starling events catalogue --markdown`"
    );
}

#[test]
fn the_troubleshooting_guide_covers_every_warning_and_error() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/guides/troubleshooting.md"))
            .expect("docs/guides/troubleshooting.md");
    assert!(
        text.contains(&starling_agent::events::troubleshooting_markdown()),
        "docs/guides/troubleshooting.md is out of date: regenerate its per-event part with \
         `starling events catalogue --troubleshooting`"
    );
}
