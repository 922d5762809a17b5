//! Secrets never reach the log or the event log. A whole run — the agent on
//! a real Dovecot through the master user, a real node, the console — is
//! logged at debug level into a buffer while an administrator fails and
//! succeeds to log in, uses the API with a token, and a message is filed;
//! then neither the log nor the stored events may hold the IMAP password,
//! the network credential, the console password, a guessed password, the API
//! token, the session cookie or its CSRF token.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use starling_agent::AgentConfig;
use starling_agent::live::Live;
use starling_agent::state;
use starling_proto::v1::{Class, ReportClass};
use starling_testkit::{Dovecot, DovecotOptions, Node, testdata, wait_until, with_message_id};
use tokio_util::sync::CancellationToken;

/// Everything written to the log.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

fn http() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_or_the_events() {
    let log = Captured::default();
    tracing_subscriber::fmt()
        .with_env_filter("info,starling_agent=debug,starling_console=debug,starling_network=debug")
        .with_writer(log.clone())
        .with_ansi(false)
        .init();
    let node = Node::start().await.expect("node");
    let dovecot = Dovecot::start(&["ann"], DovecotOptions::default()).expect("dovecot");
    let spam = with_message_id(&testdata(true)[1].1, "secret-test@example.net");
    node.report(ReportClass::Spam, &[&spam]).await.expect("report");
    assert_eq!(node.verdict(&spam).await.expect("verdict"), Class::Spam);
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "state_dir = {state:?}\nmail_store = \"imap\"\n[network]\nurl = {url:?}\n[imap]\nhost = \"127.0.0.1\"\nport = {port}\n\
         security = \"plain\"\nadmin_user = \"starling\"\npassword_file = {password:?}\n[users]\nsource = \"list\"\nlist = [\"ann\"]\n\
         [console]\nlisten = \"127.0.0.1:0\"\n",
        state = dir.path().join("state").display().to_string(),
        url = node.url,
        port = dovecot.imap_port,
        password = dovecot.password_file().display().to_string(),
    );
    let config = AgentConfig::from_toml(&text).expect("config");
    std::fs::create_dir_all(&config.state_dir).expect("state dir");
    let live = Arc::new(Live::default());
    let stop = CancellationToken::new();
    let options =
        starling_agent::Options { credential: Some(node.credential.clone()), live: live.clone(), ..Default::default() };
    let agent = tokio::spawn(starling_agent::run(config.clone(), options, stop.clone()));
    let console = starling_console::start(&config, live.clone(), stop.clone()).await.expect("console");
    let url = format!("http://{}", console.addr);
    let read = |name: &str| std::fs::read_to_string(config.state_dir.join(name)).expect(name).trim().to_owned();
    let (token, password) = (read(starling_console::CLI_TOKEN_FILE), read(starling_console::INITIAL_PASSWORD_FILE));
    let imap_password = std::fs::read_to_string(dovecot.password_file()).expect("imap password").trim().to_owned();
    let guessed = "Tr0ub4dor&3-guessed".to_owned();

    let connected = || live.snapshot().connections.get("ann").is_some_and(|c| c.connected);
    assert!(wait_until(Duration::from_secs(30), connected), "the agent watches ann");
    dovecot.lmtp_deliver("ann", &spam).expect("deliver");
    let filed = || dovecot.messages("ann", "Spam").unwrap_or_default().len() == 1;
    assert!(wait_until(Duration::from_secs(30), filed), "the spam is filed");

    let (session, csrf) = {
        let (url, token, password, guessed) = (url.clone(), token.clone(), password.clone(), guessed.clone());
        tokio::task::spawn_blocking(move || {
            let login = |password: &str| {
                http().post(&format!("{url}/api/v1/login")).send_json(json!({"name": "admin", "password": password}))
            };
            assert_eq!(login(&guessed).expect("answer").status(), 401);
            let mut right = login(&password).expect("answer");
            assert_eq!(right.status(), 200);
            let cookie = right.headers().get("set-cookie").expect("cookie").to_str().expect("text").to_owned();
            let body: Value = right.body_mut().read_json().expect("json");
            let session = cookie.split(';').next().expect("pair").split('=').nth(1).expect("value").to_owned();
            let status = http()
                .get(&format!("{url}/api/v1/status"))
                .header("Authorization", &format!("Bearer {token}"))
                .call()
                .expect("status");
            assert_eq!(status.status(), 200);
            let settings = http()
                .put(&format!("{url}/api/v1/settings"))
                .header("Cookie", &cookie)
                .header("X-CSRF-Token", body["csrf"].as_str().expect("csrf"))
                .send_json(json!({"policy.mark_read": "true"}))
                .expect("settings");
            assert_eq!(settings.status(), 200);
            (session, body["csrf"].as_str().expect("csrf").to_owned())
        })
        .await
        .expect("requests")
    };
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(20), agent).await.expect("stops").expect("task").expect("no error");
    let _ = console.stopped.await;

    let log = String::from_utf8_lossy(&log.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    assert!(log.contains("event_id"), "the log was captured: {} bytes", log.len());
    let c = state::open(&config.state_dir.join(state::FILE_NAME)).expect("state");
    let events: String =
        state::events(&c, 0, None, 10_000).expect("events").iter().map(|e| format!("{}\n", e.text)).collect();
    assert!(events.contains("wrong name or password"), "the failed login is an event");
    let secrets = [
        ("the IMAP master password", imap_password.as_str()),
        ("the network credential", node.credential.as_str()),
        ("the console password", password.as_str()),
        ("a guessed password", guessed.as_str()),
        ("the API token", token.as_str()),
        ("the session", session.as_str()),
        ("the CSRF token", csrf.as_str()),
    ];
    for (what, secret) in secrets {
        assert!(secret.len() >= 8, "{what} is a real secret");
        assert!(!log.contains(secret), "{what} is in the log");
        assert!(!events.contains(secret), "{what} is in the events");
    }
}
