//! Settings an administrator changes while the agent runs (in the console
//! or with `starling settings set`), so a year of running Starling needs no
//! hand-edited file.
//!
//! A setting is a configuration key ([`EDITABLE`]); its value is stored in
//! the state database (`settings` table) and laid over the configuration
//! file ([`effective`]): the same parsing and the same checks as the file,
//! so a value the file would refuse is refused here with the same message.
//! The running agent notices a change within two seconds and applies it
//! without a restart.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::AgentConfig;

/// The kind of value a setting holds (for forms and for parsing text).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "type", content = "choices")]
pub enum Kind {
    /// `true` or `false`.
    Bool,
    /// One of these names.
    Choice(&'static [&'static str]),
    /// Free text.
    Text,
    /// A whole number.
    Integer,
    /// A number.
    Number,
}

/// One setting the console and the CLI can change.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Setting {
    /// The configuration key (`policy.spam_action`).
    pub key: &'static str,
    /// The group it is shown in.
    pub group: &'static str,
    /// A short label.
    pub label: &'static str,
    /// What it does.
    pub help: &'static str,
    /// Its kind.
    #[serde(flatten)]
    pub kind: Kind,
}

const ACTIONS: &[&str] = &["spam-folder", "folder", "trash", "tag", "delete", "none"];
const PHISH_ACTIONS: &[&str] = &["same", "spam-folder", "folder", "trash", "tag", "delete", "none"];

macro_rules! settings {
    ($($key:literal $group:literal $kind:expr, $label:literal, $help:literal;)*) => {
        /// Every setting that can be changed while the agent runs.
        pub const EDITABLE: &[Setting] = &[$(Setting { key: $key, group: $group, label: $label, help: $help, kind: $kind }),*];
    };
}

settings! {
    "policy.spam_action" "Actions" Kind::Choice(ACTIONS), "Action for spam",
        "What happens to spam in users' mailboxes: move to the spam folder, move to an existing folder, move to Trash, tag the subject, delete, or nothing (count only).";
    "policy.phish_action" "Actions" Kind::Choice(PHISH_ACTIONS), "Action for phishing",
        "The action for phishing; \"same\" follows the action for spam.";
    "policy.shared_action" "Actions" Kind::Choice(ACTIONS), "Action for shared mailboxes",
        "The action for spam in shared mailboxes (each may set its own in the configuration file).";
    "policy.mark_read" "Actions" Kind::Bool, "Mark filed spam as read",
        "Also mark spam as read when it is filed, so it does not count as unread mail.";
    "policy.spam_folder" "Folders" Kind::Text, "Spam folder",
        "Created when missing. Empty: the server's \\Junk folder when it has one, otherwise \"Spam\".";
    "policy.folder" "Folders" Kind::Text, "Folder of the \"folder\" action",
        "An existing folder (never created); mail stays put with an event when it is missing.";
    "policy.trash_folder" "Folders" Kind::Text, "Trash folder",
        "Empty: the server's \\Trash folder when it has one, otherwise \"Trash\".";
    "policy.tag_prefix" "Folders" Kind::Text, "Subject tag",
        "The prefix the \"tag\" action puts before the subject.";
    "policy.model" "Actions" Kind::Choice(&["off", "suggest", "file"]), "Local model",
        "What the model learnt from this organisation's users may do: off, suggest (logged, never acted on), or file what it is sure of once it has learnt enough.";
    "retro.enabled" "Actions" Kind::Bool, "File after delivery",
        "File mail already delivered as soon as its campaign becomes known or the model becomes sure of it.";
    "rules.empty_subject_and_body" "Empty messages" Kind::Bool, "Empty subject and body is spam",
        "A message with neither a subject nor a body is spam.";
    "rules.empty_body" "Empty messages" Kind::Bool, "Empty body is spam",
        "A message with an empty body is spam, whatever its subject.";
    "users.auto_enable" "Users" Kind::Bool, "Filter new mailboxes",
        "Mailboxes found for the first time are filtered at once; off: they wait until enabled.";
    "feedback.enabled" "Users" Kind::Bool, "Users' feedback",
        "Report users' moves into and out of the spam folder to the network (each mailbox has its own switch too).";
    "rescan.enabled" "Rescan" Kind::Bool, "Daily rescan",
        "Look again at young mail once a day, so a campaign that became known after delivery is still filed.";
    "rescan.time" "Rescan" Kind::Text, "Rescan time",
        "When the daily rescan runs, HH:MM (e.g. just before the working day).";
    "rescan.timezone" "Rescan" Kind::Text, "Time zone",
        "The time zone of the rescan and report times: an IANA name such as Europe/Berlin; empty: the system's.";
    "rescan.max_age_hours" "Rescan" Kind::Integer, "Maximum age (hours)",
        "Messages delivered within this many hours are looked at again.";
    "reports.seconds_per_spam" "Time and money saved" Kind::Integer, "Seconds per spam message",
        "How long a person spends on one spam message (seeing, judging, deleting it).";
    "reports.hourly_cost" "Time and money saved" Kind::Number, "Cost of an hour",
        "What an hour of a person's time costs.";
    "reports.currency" "Time and money saved" Kind::Text, "Currency",
        "The currency of the hourly cost.";
    "reports.daily" "Reports" Kind::Bool, "Daily reports",
        "Write the last 30 days (by day) and the last 24 hours (by hour) as CSV every day.";
    "reports.monthly" "Reports" Kind::Bool, "Monthly report",
        "Write the previous month (by day) as CSV on the 1st.";
    "reports.time" "Reports" Kind::Text, "Report time",
        "When scheduled reports are written, HH:MM.";
    "reports.user_statistics_days" "Reports" Kind::Integer, "Keep per-user statistics (days)",
        "How long each mailbox's hourly counters are kept (at least 31; 0: for ever). The organisation's totals are kept regardless.";
}

/// The setting of `key`.
pub fn find(key: &str) -> Option<&'static Setting> {
    EDITABLE.iter().find(|s| s.key == key)
}

/// A setting's value, as JSON.
pub type Value = serde_json::Value;

/// Parses text (a form field, a command-line argument) into a value of the
/// setting's kind.
pub fn parse(setting: &Setting, text: &str) -> Result<Value, String> {
    let text = text.trim();
    match setting.kind {
        Kind::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Ok(Value::Bool(true)),
            "false" | "off" | "no" | "0" => Ok(Value::Bool(false)),
            _ => Err(format!("{}: expected true or false, got {text:?}", setting.key)),
        },
        Kind::Choice(choices) => {
            if choices.contains(&text) {
                Ok(Value::String(text.to_owned()))
            } else {
                Err(format!("{}: expected one of {}, got {text:?}", setting.key, choices.join(", ")))
            }
        }
        Kind::Text => Ok(Value::String(text.to_owned())),
        Kind::Integer => text
            .parse::<u32>()
            .map(Value::from)
            .map_err(|_| format!("{}: expected a whole number, got {text:?}", setting.key)),
        Kind::Number => match text.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(Value::from(n)),
            _ => Err(format!("{}: expected a number, got {text:?}", setting.key)),
        },
    }
}

/// The configuration with the stored settings laid over it; every problem
/// (an unknown key, a wrong type, a value the checks refuse) with its key.
pub fn effective(base: &AgentConfig, stored: &BTreeMap<String, Value>) -> Result<AgentConfig, Vec<String>> {
    if stored.is_empty() {
        return Ok(base.clone());
    }
    let mut tree = toml::Value::try_from(base).map_err(|e| vec![format!("internal: {e}")])?;
    let mut problems = Vec::new();
    for (key, value) in stored {
        if find(key).is_none() {
            problems.push(format!("{key}: not a setting that can be changed here"));
            continue;
        }
        let value = match toml::Value::try_from(value) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{key}: {e}"));
                continue;
            }
        };
        let (section, name) = key.split_once('.').unwrap_or(("", key));
        match tree.get_mut(section).and_then(toml::Value::as_table_mut) {
            Some(table) => {
                table.insert(name.to_owned(), value);
            }
            None => problems.push(format!("{key}: no such section")),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let config: AgentConfig = tree.try_into().map_err(|e: toml::de::Error| vec![e.message().trim().to_owned()])?;
    let problems = config.problems();
    if problems.is_empty() { Ok(config) } else { Err(problems) }
}

/// The current value of every editable setting in `config`.
pub fn values(config: &AgentConfig) -> BTreeMap<&'static str, Value> {
    let tree = serde_json::to_value(config).unwrap_or(Value::Null);
    EDITABLE
        .iter()
        .map(|s| {
            let value = s.key.split('.').fold(&tree, |node, part| node.get(part).unwrap_or(&Value::Null));
            (s.key, value.clone())
        })
        .collect()
}

/// A value as a person writes it (no quotes around text).
pub fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_a_real_configuration_key() {
        let values = values(&AgentConfig::default());
        for setting in EDITABLE {
            assert_ne!(values[setting.key], Value::Null, "{} is not a configuration key", setting.key);
            // The default, stored as a setting, is accepted.
            let stored = BTreeMap::from([(setting.key.to_owned(), values[setting.key].clone())]);
            assert_eq!(effective(&AgentConfig::default(), &stored), Ok(AgentConfig::default()), "{}", setting.key);
        }
    }

    #[test]
    fn stored_values_override_the_file_and_are_checked_like_it() {
        let base = AgentConfig::default();
        let stored = BTreeMap::from([
            ("policy.spam_action".to_owned(), Value::from("tag")),
            ("rescan.max_age_hours".to_owned(), Value::from(24)),
        ]);
        let config = effective(&base, &stored).expect("valid");
        assert_eq!(config.policy.spam_action, crate::policy::ActionKind::Tag);
        assert_eq!(config.rescan.max_age_hours, 24);

        let bad = BTreeMap::from([
            ("rescan.time".to_owned(), Value::from("25:99")),
            ("imap.host".to_owned(), Value::from("elsewhere")),
        ]);
        let problems = effective(&base, &bad).expect_err("invalid");
        assert!(problems.iter().any(|p| p.starts_with("imap.host: not a setting")), "{problems:?}");
        let bad = BTreeMap::from([("rescan.time".to_owned(), Value::from("25:99"))]);
        let problems = effective(&base, &bad).expect_err("invalid");
        assert!(problems.iter().any(|p| p.starts_with("rescan.time")), "{problems:?}");
    }

    #[test]
    fn text_is_parsed_by_kind() {
        let action = find("policy.spam_action").expect("setting");
        assert_eq!(parse(action, "tag"), Ok(Value::from("tag")));
        assert!(parse(action, "burn").expect_err("bad").contains("expected one of"));
        let flag = find("policy.mark_read").expect("setting");
        assert_eq!(parse(flag, "on"), Ok(Value::Bool(true)));
        assert!(parse(flag, "maybe").is_err());
        let hours = find("rescan.max_age_hours").expect("setting");
        assert_eq!(parse(hours, " 6 "), Ok(Value::from(6)));
        assert!(parse(hours, "-1").is_err());
        let cost = find("reports.hourly_cost").expect("setting");
        assert_eq!(parse(cost, "37.5"), Ok(Value::from(37.5)));
        assert!(parse(cost, "NaN").is_err());
    }
}
