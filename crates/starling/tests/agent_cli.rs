//! The agent's administration commands as an administrator runs them:
//! users, whitelist, events, and configuration checking.

use std::path::Path;
use std::process::{Command, Output};

fn starling(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_starling"))
        .env("STARLING_CONFIG", config)
        .env("STARLING_LOG", "warn")
        .args(args)
        .output()
        .expect("starling runs")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, format!("state_dir = {:?}\n", dir.path().join("state").display().to_string()))
        .expect("config");
    (dir, config)
}

#[test]
fn users_are_added_enabled_disabled_and_imported() {
    let (dir, config) = setup();
    ok(starling(&config, &["users", "add", "alice", "bob"]));
    ok(starling(&config, &["users", "add", "--disabled", "carol"]));
    ok(starling(&config, &["users", "disable", "bob"]));
    let csv = dir.path().join("users.csv");
    std::fs::write(&csv, "user,enabled\ndave,yes\nerin,no\n").expect("csv");
    ok(starling(&config, &["users", "import", csv.to_str().expect("path")]));
    let listed = ok(starling(&config, &["users", "list", "--json"]));
    let rows: Vec<serde_json::Value> = listed.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let enabled = |name: &str| {
        rows.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("{name} listed: {listed}"))["enabled"]
            .as_bool()
            .expect("bool")
    };
    assert!(enabled("alice"));
    assert!(!enabled("bob"));
    assert!(!enabled("carol"));
    assert!(enabled("dave"));
    assert!(!enabled("erin"));
    // A name that cannot be a mailbox is refused with a clear message.
    let bad = starling(&config, &["users", "add", "../etc"]);
    assert!(!bad.status.success());
    assert!(!String::from_utf8_lossy(&bad.stderr).is_empty());
}

#[test]
fn whitelist_entries_are_checked_added_exported_and_removed() {
    let (dir, config) = setup();
    ok(starling(&config, &["whitelist", "add", "@partner.example", "--comment", "our partner"]));
    ok(starling(&config, &["whitelist", "add", "10.0.0.0/8"]));
    ok(starling(&config, &["whitelist", "--user", "alice", "add", "/^alerts@.*$/"]));
    let bad = starling(&config, &["whitelist", "add", "/unclosed(/"]);
    assert!(!bad.status.success(), "an invalid regular expression is refused");
    let listed = ok(starling(&config, &["whitelist", "list"]));
    assert!(listed.contains("@partner.example") && listed.contains("10.0.0.0/8"), "{listed}");
    assert!(!listed.contains("alerts"), "alice's entry is hers alone: {listed}");
    let mine = ok(starling(&config, &["whitelist", "--user", "alice", "list"]));
    assert!(mine.contains("/^alerts@.*$/"), "{mine}");
    let exported = ok(starling(&config, &["whitelist", "export"]));
    let file = dir.path().join("whitelist.csv");
    std::fs::write(&file, &exported).expect("write");
    ok(starling(&config, &["whitelist", "remove", "10.0.0.0/8"]));
    assert!(!ok(starling(&config, &["whitelist", "list"])).contains("10.0.0.0/8"));
    ok(starling(&config, &["whitelist", "import", file.to_str().expect("path")]));
    assert!(ok(starling(&config, &["whitelist", "list"])).contains("10.0.0.0/8"), "imported back");
}

#[test]
fn events_and_the_catalogue_are_listed() {
    let (_dir, config) = setup();
    ok(starling(&config, &["users", "add", "alice"]));
    let events = ok(starling(&config, &["events", "--json"]));
    for line in events.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("one JSON object per line");
    }
    let catalogue = ok(starling(&config, &["events", "catalogue"]));
    for id in ["100", "203", "300", "400", "500", "600"] {
        assert!(catalogue.contains(id), "{id} in the catalogue:\n{catalogue}");
    }
}

#[test]
fn an_invalid_configuration_reports_every_problem_with_its_key_path() {
    let (dir, _) = setup();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "mail_store = \"imap\"\n[imap]\nhost = \"mail.example.com\"\nsecurity = \"plain\"\nidle_seconds = 5\n\
         [policy]\nspam_action = \"spam\"\n[network]\nbatch_size = 0\n",
    )
    .expect("config");
    let out = starling(&config, &["agent", "--check-config"]);
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    for key in ["policy.spam_action", "imap.security", "imap.idle_seconds", "network.batch_size"] {
        assert!(error.contains(key), "{key} in:\n{error}");
    }
}
