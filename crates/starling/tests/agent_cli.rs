//! The administrator's commands as an administrator runs them, against a
//! running `starling serve` (its REST API): users, whitelist, settings,
//! reports, events, status, accounts; and the errors when the service is not
//! running or the token is wrong.

mod common;

use std::process::Command;

use common::{ok, serve, serve_with, starling};

#[test]
fn every_admin_command_goes_through_the_running_service() {
    let service = serve();
    let config = &service.config;

    // Users.
    ok(starling(config, &["users", "add", "alice", "bob"]));
    ok(starling(config, &["users", "add", "--disabled", "carol"]));
    ok(starling(config, &["users", "disable", "bob"]));
    let csv = service.dir.path().join("users.csv");
    std::fs::write(&csv, "user,enabled\ndave,yes\ncarol,true\n").expect("csv");
    assert!(ok(starling(config, &["users", "import", csv.to_str().expect("path")])).contains("1 added, 1 updated"));
    let listed = ok(starling(config, &["users", "list", "--json"]));
    let rows: Vec<serde_json::Value> = listed.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let state = |name: &str| rows.iter().find(|r| r["name"] == name).map(|r| r["enabled"].as_bool().expect("bool"));
    assert_eq!(
        (state("alice"), state("bob"), state("carol"), state("dave")),
        (Some(true), Some(false), Some(true), Some(true))
    );
    let unknown = starling(config, &["users", "enable", "alice", "nobody"]);
    assert_eq!(unknown.status.code(), Some(1), "a refused part exits 1");
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nobody: unknown mailbox"));
    ok(starling(config, &["users", "feedback", "off", "alice"]));
    // The local model kept out of one mailbox: listed so, and back.
    ok(starling(config, &["users", "model", "off", "bob"]));
    let listed = ok(starling(config, &["users", "list"]));
    let line = |name: &str| listed.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_default().to_owned();
    assert!(line("bob").contains("no model") && !line("alice").contains("no model"), "{listed}");
    ok(starling(config, &["users", "model", "on", "bob"]));
    assert!(!ok(starling(config, &["users", "list"])).contains("no model"));

    // Whitelist: checked, exported, imported back.
    ok(starling(config, &["whitelist", "add", "@partner.example", "--comment", "our partner"]));
    ok(starling(config, &["whitelist", "add", "10.0.0.0/8"]));
    ok(starling(config, &["whitelist", "--user", "alice", "add", "/^alerts@.*$/"]));
    let bad = starling(config, &["whitelist", "add", "/unclosed(/"]);
    assert_eq!(bad.status.code(), Some(1));
    let exported = ok(starling(config, &["whitelist", "export"]));
    assert!(exported.contains("@partner.example,our partner"), "{exported}");
    let file = service.dir.path().join("list.csv");
    std::fs::write(&file, &exported).expect("export");
    ok(starling(config, &["whitelist", "remove", "10.0.0.0/8"]));
    assert!(!ok(starling(config, &["whitelist", "list"])).contains("10.0.0.0/8"));
    let preview = ok(starling(config, &["whitelist", "import", "--dry-run", file.to_str().expect("path")]));
    assert!(preview.starts_with("would import: 1 new"), "{preview}");
    ok(starling(config, &["whitelist", "import", file.to_str().expect("path")]));
    assert!(ok(starling(config, &["whitelist", "list"])).contains("10.0.0.0/8"), "imported back");
    assert!(ok(starling(config, &["whitelist", "--user", "alice", "list"])).contains("alerts"));

    // Settings: changed, checked, reset.
    assert!(
        ok(starling(config, &["settings", "set", "policy.spam_action=tag", "rescan.max_age_hours=6"]))
            .contains("policy.spam_action")
    );
    assert!(ok(starling(config, &["settings", "get", "policy.spam_action"])).contains("tag"));
    let refused = starling(config, &["settings", "set", "rescan.time=25:00"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("rescan.time"));
    ok(starling(config, &["settings", "reset", "policy.spam_action"]));
    assert!(ok(starling(config, &["settings", "get", "policy.spam_action"])).contains("spam-folder"));

    // Reports, events, status.
    assert!(ok(starling(config, &["reports", "export", "--period", "24h"])).starts_with("period,checked,caught"));
    assert!(ok(starling(config, &["reports", "write", "last-30-days"])).contains("last-30-days-"));
    assert!(ok(starling(config, &["reports", "list"])).contains(".csv"));
    let events = ok(starling(config, &["events", "--json", "--id", "502"]));
    assert!(events.contains("settings_changed") || events.is_empty(), "{events}");
    let all_events = ok(starling(config, &["events", "--json"]));
    assert!(all_events.contains("\"name\":\"console_started\""), "{all_events}");
    assert!(all_events.contains("remedy"));
    assert!(ok(starling(config, &["events", "catalogue"])).contains("rescan_failed"));
    let status = ok(starling(config, &["status"]));
    assert!(status.contains("service:   running") && status.contains("mailboxes: 4 known"), "{status}");

    // The local model: what it learnt, and a rebuild the service runs.
    let model = ok(starling(config, &["model", "status"]));
    assert!(model.contains("model: file (still learning); 0 spam and 0 ham learnt"), "{model}");
    let retrain = ok(starling(config, &["model", "retrain", "--wait"]));
    assert!(retrain.contains("rebuilt from 0 spam and 0 ham examples"), "{retrain}");
    let rebuilt = ok(starling(config, &["events", "--id", "730"]));
    assert!(rebuilt.contains("rebuilt from its stored examples"), "{rebuilt}");

    // Accounts: added with a printed password, a role given and taken,
    // the last administrator kept, removed.
    let added = ok(starling(config, &["accounts", "add", "auditor"]));
    assert!(added.contains("auditor added (read-only)") && added.contains("password: "), "{added}");
    ok(starling(config, &["accounts", "role", "auditor", "admin"]));
    assert!(
        ok(starling(config, &["accounts", "list"])).lines().any(|l| l.starts_with("auditor") && l.ends_with("admin"))
    );
    ok(starling(config, &["accounts", "role", "auditor", "read-only"]));
    let last = starling(config, &["accounts", "role", "admin", "read-only"]);
    assert_eq!(last.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&last.stderr).contains("last account with the admin role"));
    ok(starling(config, &["accounts", "remove", "auditor"]));
    assert!(!ok(starling(config, &["accounts", "list"])).contains("auditor"));

    // A wrong token: exit 4 and a helpful message.
    let wrong = Command::new(env!("CARGO_BIN_EXE_starling"))
        .env("STARLING_CONFIG", config)
        .env("STARLING_TOKEN", "stl_wrong")
        .args(["users", "list"])
        .output()
        .expect("runs");
    assert_eq!(wrong.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("refused the API token"));
}

#[test]
fn the_cli_trusts_a_console_serving_https_by_its_configured_certificate() {
    let certs = tempfile::tempdir().expect("tempdir");
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("certificate");
    let (cert, key) = (certs.path().join("console.pem"), certs.path().join("console.key"));
    std::fs::write(&cert, certified.cert.pem()).expect("cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("key");
    let service = serve_with(&format!("tls_certificate = {cert:?}\ntls_private_key = {key:?}\n"));
    let url = std::fs::read_to_string(service.dir.path().join("state").join(starling_console::URL_FILE)).expect("url");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let status = ok(starling(&service.config, &["status"]));
    assert!(status.contains("service:   running"), "{status}");
    // Plain HTTP on the same port gets no answer.
    let plain = url.trim().replace("https://", "http://");
    let refused = starling(&service.config, &["status", "--url", &plain]);
    assert_eq!(refused.status.code(), Some(3), "{}", String::from_utf8_lossy(&refused.stderr));
}

#[test]
fn a_stopped_service_is_named_as_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("starling.toml");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state");
    std::fs::write(&config, format!("state_dir = {:?}\n", state.display().to_string())).expect("config");
    std::fs::write(state.join(starling_console::CLI_TOKEN_FILE), "stl_x\n").expect("token");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    std::fs::write(state.join(starling_console::URL_FILE), format!("http://127.0.0.1:{port}\n")).expect("url");
    let out = starling(&config, &["users", "list"]);
    assert_eq!(out.status.code(), Some(3));
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(error.contains("cannot reach the Starling service") && error.contains("running"), "{error}");
}

#[test]
fn an_invalid_configuration_reports_every_problem_with_its_key_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "mail_store = \"imap\"\n[imap]\nhost = \"mail.example.com\"\nsecurity = \"plain\"\nidle_seconds = 5\n\
         [policy]\nspam_action = \"spam\"\n[network]\nbatch_size = 0\n[console]\nlisten = \"everywhere\"\n",
    )
    .expect("config");
    let out = starling(&config, &["agent", "--check-config"]);
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    for key in ["policy.spam_action", "imap.security", "imap.idle_seconds", "network.batch_size", "console.listen"] {
        assert!(error.contains(key), "{key} in:\n{error}");
    }
}

#[test]
fn the_milters_configuration_is_checked_with_its_key_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("milter.toml");
    std::fs::write(
        &config,
        "[milter]\nenabled = true\nlisten = \"everywhere\"\nreject_text = \"250 fine\"\ntimeout_ms = 0\n\
         socket_mode = \"999\"\nmax_connections = 0\n",
    )
    .expect("config");
    let out = starling(&config, &["milter", "--check-config"]);
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    for key in
        ["milter.listen", "milter.reject_text", "milter.timeout_ms", "milter.socket_mode", "milter.max_connections"]
    {
        assert!(error.contains(key), "{key} in:\n{error}");
    }
    std::fs::write(&config, "[milter]\nenabled = true\nlisten = \"unix:/run/starling/milter.sock\"\n").expect("config");
    let out = starling(&config, &["milter", "--check-config"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
