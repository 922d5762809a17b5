//! The network misbehaving under the agent while mail arrives in a real
//! Dovecot: the node process paused (SIGSTOP: connections are accepted,
//! nothing is answered), then slowed by a delaying proxy beyond the agent's
//! time-out. The agent fails open — mail stays in the inbox, untouched —
//! queues what it could not check, and checks it again when the node
//! answers; in the end every message exists once, spam filed, ham left.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use starling_agent::{AgentConfig, state};
use starling_testkit::{Dovecot, DovecotOptions, free_port, testdata, wait_until, with_message_id};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

/// Test spams distinctive enough to be recognised once reported.
const DISTINCTIVE: [usize; 6] = [1, 2, 3, 4, 5, 6];

/// A TCP proxy in front of the node that holds every chunk for
/// `delay_ms` before passing it on.
struct Proxy {
    port: u16,
    delay_ms: Arc<AtomicU64>,
}

impl Proxy {
    async fn start(target: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("proxy");
        let port = listener.local_addr().expect("address").port();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let delay = delay_ms.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { continue };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, delay.clone()));
                tokio::spawn(pipe(server_read, client_write, delay.clone()));
            }
        });
        Proxy { port, delay_ms }
    }

    fn delay(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Arc<AtomicU64>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        let ms = delay.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
}

fn starling() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_starling"));
    command.env("STARLING_LOG", "warn");
    command
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(child.id().to_string()).status().expect("kill");
    assert!(status.success());
}

/// Every message of the user: Message-ID → the folders holding a copy.
fn census(dovecot: &Dovecot) -> BTreeMap<String, Vec<String>> {
    let mut all: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for folder in ["INBOX", "Spam"] {
        for m in dovecot.messages("fault", folder).expect("messages") {
            all.entry(m.message_id.clone()).or_default().push(folder.to_owned());
        }
    }
    all
}

fn events(state_dir: &std::path::Path, id: u16) -> usize {
    let Ok(c) = state::open(&state_dir.join(state::FILE_NAME)) else { return 0 };
    state::events(&c, 0, Some(id), 1000).map(|e| e.len()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_or_slow_node_leaves_mail_in_place_and_it_is_filed_when_the_node_answers() {
    // A real node process, its organisation, and spam reported to it.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("node");
    let node_port = free_port();
    let mut node = starling()
        .args(["network", "serve", "--listen", &format!("127.0.0.1:{node_port}"), "--data"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node");
    let address = format!("127.0.0.1:{node_port}");
    let org = |args: &[&str]| {
        starling().args(["network", "org"]).args(args).args(["--network", &address, "--data"]).arg(&data).output()
    };
    assert!(wait_until(WAIT, || org(&["list"]).is_ok_and(|o| o.status.success())), "the node answers");
    let added = String::from_utf8(org(&["add", "faults"]).expect("org add").stdout).expect("utf-8");
    let credential = added.lines().find_map(|l| l.strip_prefix("credential: ")).expect("a credential").to_owned();
    let credential_file = dir.path().join("credential");
    std::fs::write(&credential_file, &credential).expect("credential");
    let spam_dir = dir.path().join("spam");
    std::fs::create_dir_all(&spam_dir).expect("dir");
    let corpus = testdata(true);
    for index in DISTINCTIVE {
        std::fs::write(spam_dir.join(format!("{index}.eml")), &corpus[index].1).expect("spam");
    }
    let reported = starling()
        .args(["report", "spam", "--network", &format!("http://{address}"), "--credential-file"])
        .arg(&credential_file)
        .arg(&spam_dir)
        .output()
        .expect("report");
    assert!(reported.status.success(), "{}", String::from_utf8_lossy(&reported.stderr));

    // The agent asks through the proxy, with a short time-out.
    let proxy = Proxy::start(node_port).await;
    let dovecot = Dovecot::start(&["fault"], DovecotOptions::default()).expect("dovecot");
    dovecot.create_folder("fault", "Spam").expect("folder");
    let state_dir = dir.path().join("state");
    let text = format!(
        "state_dir = {state:?}\nmail_store = \"imap\"\n\n[network]\nurl = \"http://127.0.0.1:{port}\"\n\
         timeout_ms = 300\nretry_seconds = 1\n\n[imap]\nhost = \"127.0.0.1\"\nport = {imap}\nsecurity = \"plain\"\n\
         password_file = {password:?}\n\n[users]\nsource = \"list\"\nlist = [\"fault\"]\n\n[retro]\nenabled = false\n",
        state = state_dir.display().to_string(),
        port = proxy.port,
        imap = dovecot.imap_port,
        password = dovecot.password_file().display().to_string(),
    );
    let config = AgentConfig::from_toml(&text).unwrap_or_else(|p| panic!("{p:?}"));
    let stop = CancellationToken::new();
    let options = starling_agent::Options { credential: Some(credential), ..Default::default() };
    let agent = tokio::spawn(starling_agent::run(config, options, stop.clone()));

    let ham = testdata(false);
    let mut expected: BTreeMap<String, &str> = BTreeMap::new();
    let deliver = |phase: &str, expected: &mut BTreeMap<String, &str>| {
        for (i, index) in DISTINCTIVE.iter().enumerate().take(3) {
            let id = format!("spam-{phase}-{i}@faults");
            dovecot.lmtp_deliver("fault", &with_message_id(&corpus[*index].1, &id)).expect("lmtp");
            expected.insert(format!("<{id}>"), "Spam");
            let id = format!("ham-{phase}-{i}@faults");
            dovecot.lmtp_deliver("fault", &with_message_id(&ham[i].1, &id)).expect("lmtp");
            expected.insert(format!("<{id}>"), "INBOX");
        }
    };
    let settled = |expected: &BTreeMap<String, &str>| {
        let census = census(&dovecot);
        expected.iter().all(|(id, folder)| census.get(id).is_some_and(|copies| copies == &[folder.to_string()]))
    };
    let in_spam = || census(&dovecot).values().filter(|copies| copies.iter().any(|f| f == "Spam")).count();

    // Normal operation first.
    deliver("normal", &mut expected);
    assert!(wait_until(WAIT, || settled(&expected)), "filed normally: {:?}", census(&dovecot));

    // Paused: the node accepts connections and answers nothing.
    signal(&node, "STOP");
    let before = in_spam();
    deliver("paused", &mut expected);
    assert!(wait_until(WAIT, || events(&state_dir, 300) > 0), "network_unreachable");
    assert_eq!(in_spam(), before, "nothing is filed without a verdict");
    assert_eq!(census(&dovecot).len(), expected.len(), "every message is in the inbox meanwhile");
    signal(&node, "CONT");
    assert!(
        wait_until(WAIT, || settled(&expected)),
        "re-checked and filed once the node answers: {:?}",
        census(&dovecot)
    );

    // Slowed: every answer arrives after the agent's time-out.
    proxy.delay(1_000);
    let unreachable = events(&state_dir, 300);
    let before = in_spam();
    deliver("slow", &mut expected);
    assert!(wait_until(WAIT, || events(&state_dir, 300) > unreachable), "a slow network counts as unreachable");
    assert_eq!(in_spam(), before, "nothing is filed without a verdict");
    proxy.delay(0);
    assert!(
        wait_until(WAIT, || settled(&expected)),
        "re-checked and filed once the node is fast again: {:?}",
        census(&dovecot)
    );
    assert!(events(&state_dir, 301) >= 2, "network_reachable after each outage");

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(20), agent).await.expect("stops").expect("task").expect("no error");
    let _ = node.kill();
    let _ = node.wait();
}
