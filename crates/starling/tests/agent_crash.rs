//! Never lose mail: `starling agent` is killed (SIGKILL) at random moments
//! while it moves and tags a burst of messages in a real Dovecot, over IMAP
//! and in Maildir mode, 100 times each (`STARLING_CRASH_KILLS` for more, as
//! `scripts/chaos` does); afterwards every message exists exactly once, and
//! every spam ended up filed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use starling_network::store::embedded::{Embedded, Table};
use starling_network::store::{Reads as _, Store as _};
use starling_proto::v1::{Class, ReportClass};
use starling_testkit::{Dovecot, DovecotOptions, Node, testdata, wait_until, with_message_id};

/// Kills per run: 100 in the test suite, `STARLING_CRASH_KILLS` otherwise.
fn kills() -> usize {
    std::env::var("STARLING_CRASH_KILLS").ok().and_then(|n| n.parse().ok()).unwrap_or(100)
}

/// A small deterministic generator (xorshift): the seed is printed so a
/// failure can be replayed with `STARLING_CRASH_SEED`.
struct Random(u64);

impl Random {
    fn new() -> Random {
        let seed = std::env::var("STARLING_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
        });
        eprintln!("STARLING_CRASH_SEED={seed}");
        Random(seed.max(1))
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Kinds of message in the burst, by Message-ID prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Spam,
    Phish,
    Ham,
}

struct Pool {
    spam: Vec<Vec<u8>>,
    phish: Vec<Vec<u8>>,
    ham: Vec<Vec<u8>>,
}

/// Known spam (moved), known phishing (tagged, its own action), ham (left).
async fn pool(node: &Node) -> Pool {
    let mut spam_sources = testdata(true);
    let phish_sources = spam_sources.split_off(spam_sources.len() - 4);
    let (mut spam, mut phish) = (Vec::new(), Vec::new());
    for (_, raw) in spam_sources {
        node.report(ReportClass::Spam, &[&raw]).await.expect("report");
        if node.verdict(&raw).await.expect("check") == Class::Spam {
            spam.push(raw);
        }
    }
    for (_, raw) in phish_sources {
        node.report(ReportClass::Phish, &[&raw]).await.expect("report");
        if node.verdict(&raw).await.expect("check") == Class::Phish {
            phish.push(raw);
        }
    }
    assert!(spam.len() >= 4 && phish.len() >= 2, "enough known spam and phishing");
    let ham = testdata(false).into_iter().map(|(_, raw)| raw).collect();
    Pool { spam, phish, ham }
}

fn starling() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_starling"));
    command.env("STARLING_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::null());
    command
}

fn spawn_agent(config: &Path) -> Child {
    starling().arg("agent").arg("--config").arg(config).spawn().expect("starling agent")
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn terminate(mut child: Child) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    if wait_until(Duration::from_secs(20), || matches!(child.try_wait(), Ok(Some(_)))) {
        return;
    }
    kill(&mut child);
    panic!("the agent did not stop within 20 s of SIGTERM");
}

type Census = BTreeMap<String, Vec<(String, String)>>;

/// Every message of the user, by Message-ID: (folder, subject) of each copy,
/// as read while nothing moves them. A killed agent's last command may
/// still be running in the server (a `UID MOVE` copies, then expunges), and
/// a running agent may expunge what doveadm is reading: the census is read
/// until two readings a moment apart agree.
fn census(dovecot: &Dovecot, user: &str) -> Census {
    let read = || -> Option<Census> {
        let mut all: Census = BTreeMap::new();
        for folder in ["INBOX", "Spam"] {
            for m in dovecot.messages(user, folder).ok()? {
                all.entry(m.message_id.clone()).or_default().push((folder.to_owned(), m.subject.clone()));
            }
        }
        Some(all)
    };
    let mut last = None;
    for _ in 0..50 {
        let now = read();
        if now.is_some() && now == last {
            return now.unwrap_or_default();
        }
        last = now;
        std::thread::sleep(Duration::from_millis(100));
    }
    last.expect("doveadm fetch works")
}

fn kind_of(message_id: &str) -> Kind {
    match message_id.trim_start_matches('<').split('-').next() {
        Some("spam") => Kind::Spam,
        Some("phish") => Kind::Phish,
        _ => Kind::Ham,
    }
}

/// The end state: each delivered message exactly once, spam in Spam,
/// phishing tagged once in INBOX, ham untouched in INBOX.
fn filed_as_expected(census: &BTreeMap<String, Vec<(String, String)>>) -> bool {
    census.iter().all(|(id, copies)| match (kind_of(id), copies.as_slice()) {
        (Kind::Spam, [(folder, _)]) => folder == "Spam",
        (Kind::Phish, [(folder, subject)]) => {
            folder == "INBOX" && subject.starts_with("[PHISH] ") && !subject.starts_with("[PHISH] [PHISH]")
        }
        (Kind::Ham, [(folder, subject)]) => folder == "INBOX" && !subject.starts_with("[PHISH]"),
        _ => false,
    })
}

fn crash_run(store: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let node = runtime.block_on(Node::start()).expect("node");
    let pool = runtime.block_on(pool(&node));
    let dovecot = Dovecot::start(&["crash"], DovecotOptions::default()).expect("dovecot");
    dovecot.create_folder("crash", "Spam").expect("folder");
    let state = tempfile::tempdir().expect("tempdir");
    std::fs::write(state.path().join("network.credential"), &node.credential).expect("credential");
    let store_config = match store {
        "imap" => format!(
            "mail_store = \"imap\"\n\n[imap]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\npassword_file = {:?}\n\
             timeout_seconds = 10\nreconnect_min_seconds = 1\nreconnect_max_seconds = 1\n\n[users]\nsource = \"list\"\nlist = [\"crash\"]\n",
            dovecot.imap_port,
            dovecot.password_file().display().to_string()
        ),
        _ => format!(
            "mail_store = \"maildir\"\n\n[maildir]\nroot = {:?}\n\n[users]\nsource = \"list\"\nlist = [\"crash\"]\n",
            dovecot.dir().join("mail").display().to_string()
        ),
    };
    let config = state.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\n{store_config}\n[network]\nurl = {:?}\ncredential_file = \"network.credential\"\nretry_seconds = 1\n\n\
             [policy]\nspam_action = \"spam-folder\"\nphish_action = \"tag\"\ntag_prefix = \"[PHISH]\"\n\
             [console]\nenabled = false\n",
            state.path().display().to_string(),
            node.url
        ),
    )
    .expect("config");

    let mut random = Random::new();
    let mut delivered = 0usize;
    let mut deliver = |count: usize, random: &mut Random| {
        for _ in 0..count {
            let (kind, source) = match random.below(10) {
                0..=4 => ("spam", &pool.spam[random.below(pool.spam.len() as u64) as usize]),
                5..=7 => ("phish", &pool.phish[random.below(pool.phish.len() as u64) as usize]),
                _ => ("ham", &pool.ham[random.below(pool.ham.len() as u64) as usize]),
            };
            let raw = with_message_id(source, &format!("{kind}-{delivered}@crash"));
            dovecot.save("crash", "INBOX", &raw).expect("save");
            delivered += 1;
        }
    };
    // A backlog to start with, then more mail between kills.
    deliver(40, &mut random);
    // Each round: new mail waits, the agent starts and catches up (or is
    // told by IDLE or inotify), and is killed at a random moment of it.
    let kills = kills();
    for _ in 0..kills {
        deliver(2 + random.below(5) as usize, &mut random);
        let mut agent = spawn_agent(&config);
        std::thread::sleep(Duration::from_millis(random.below(400)));
        if random.below(3) == 0 {
            deliver(1 + random.below(3) as usize, &mut random);
            std::thread::sleep(Duration::from_millis(random.below(30)));
        }
        kill(&mut agent);
    }
    // Mid-way, nothing is lost or doubled either.
    let midway = census(&dovecot, "crash");
    assert_eq!(midway.len(), delivered, "every delivered message is present after {kills} kills");
    for (id, copies) in &midway {
        assert_eq!(copies.len(), 1, "{id} exists exactly once after {kills} kills: {copies:?}");
    }
    // The kills landed while work was being done, not only at start-up.
    let filed_midway = midway.values().filter(|c| c[0].0 == "Spam" || c[0].1.starts_with("[PHISH]")).count();
    assert!(filed_midway > delivered / 4, "the agent filed mail between kills: {filed_midway} of {delivered}");
    let interrupted = {
        let c = starling_agent::state::open(&state.path().join("state.sqlite3")).expect("state");
        starling_agent::state::events(&c, 0, Some(403), 10_000).expect("events").len()
    };
    eprintln!(
        "{store}: {kills} kills, {delivered} messages, {filed_midway} filed between kills, \
         {interrupted} interrupted tags finished on restart"
    );
    // A last run finishes the work.
    let agent = spawn_agent(&config);
    let done = wait_until(Duration::from_secs(120), || filed_as_expected(&census(&dovecot, "crash")));
    terminate(agent);
    let end = census(&dovecot, "crash");
    assert_eq!(end.len(), delivered, "no message lost");
    assert!(
        done,
        "every message filed as expected after the kills: {:#?}",
        end.iter()
            .filter(|(id, c)| !filed_as_expected(&BTreeMap::from([((*id).clone(), (*c).clone())])))
            .collect::<Vec<_>>()
    );
    runtime.block_on(async move {
        let mut node = node;
        node.stop().await;
    });
}

#[test]
fn imap_survives_a_hundred_kills_without_losing_or_doubling_mail() {
    crash_run("imap");
}

#[test]
fn maildir_survives_a_hundred_kills_without_losing_or_doubling_mail() {
    crash_run("maildir");
}

/// An IMAP agent's configuration for `users` of the test Dovecot and the
/// node (its credential written beside it), with extra TOML appended.
fn imap_config(state: &Path, dovecot: &Dovecot, node: &Node, users: &[&str], extra: &str) -> std::path::PathBuf {
    std::fs::write(state.join("network.credential"), &node.credential).expect("credential");
    let users = users.iter().map(|u| format!("{u:?}")).collect::<Vec<_>>().join(", ");
    let config = state.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\nmail_store = \"imap\"\n\n[imap]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\
             password_file = {:?}\ntimeout_seconds = 10\nreconnect_min_seconds = 1\nreconnect_max_seconds = 1\n\n\
             [users]\nsource = \"list\"\nlist = [{users}]\n\n\
             [network]\nurl = {:?}\ncredential_file = \"network.credential\"\nretry_seconds = 1\n\n\
             [console]\nenabled = false\n\n{extra}",
            state.display().to_string(),
            dovecot.imap_port,
            dovecot.password_file().display().to_string(),
            node.url
        ),
    )
    .expect("config");
    config
}

/// Messages the agent checked, all mailboxes and hours together.
fn checked(state: &Path) -> i64 {
    starling_agent::state::open(&state.join("state.sqlite3"))
        .and_then(|c| c.query_row("SELECT coalesce(sum(checked), 0) FROM hourly_total", [], |r| r.get(0)))
        .unwrap_or(0)
}

/// Retro-filing interrupted: each round a new campaign reaches every
/// mailbox unknown, the agent checks and remembers it, the network learns
/// the campaign (somebody else's report, announced by `Changes`), and the
/// agent is killed at a random moment of filing the copies. Nothing is lost
/// or doubled; a later look (the restarted agent's own triggers, or a
/// rescan) files what the kill interrupted.
#[test]
fn retro_filing_survives_kills_without_losing_or_doubling_mail() {
    const DISTINCTIVE: [usize; 10] = [1, 2, 3, 4, 5, 6, 7, 8, 11, 13];
    let users = ["r0", "r1", "r2", "r3"];
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let node = runtime.block_on(Node::start()).expect("node");
    let dovecot = Dovecot::start(&users, DovecotOptions::default()).expect("dovecot");
    let state = tempfile::tempdir().expect("tempdir");
    let config = imap_config(state.path(), &dovecot, &node, &users, "[rescan]\nenabled = false\n");
    let spam = testdata(true);
    let mut random = Random::new();
    let mut delivered = 0i64;
    let mut agent = spawn_agent(&config);
    for (round, index) in DISTINCTIVE.iter().enumerate() {
        let campaign = &spam[*index].1;
        for user in users {
            for copy in 0..3 {
                let id = format!("spam-{round}-{copy}-{user}@retro");
                dovecot.lmtp_deliver(user, &with_message_id(campaign, &id)).expect("lmtp");
                delivered += 1;
            }
        }
        assert!(
            wait_until(Duration::from_secs(60), || checked(state.path()) >= delivered),
            "round {round}: the agent checked the copies"
        );
        // The network learns the campaign; the agent is killed while it
        // files the copies it delivered.
        runtime.block_on(node.report(ReportClass::Spam, &[campaign])).expect("report");
        std::thread::sleep(Duration::from_millis(random.below(200)));
        kill(&mut agent);
        let mut seen = std::collections::BTreeSet::new();
        for user in users {
            for (id, copies) in census(&dovecot, user) {
                assert_eq!(copies.len(), 1, "round {round}: {id} exists exactly once: {copies:?}");
                seen.insert(id);
            }
        }
        assert_eq!(seen.len() as i64, delivered, "round {round}: no message lost");
        agent = spawn_agent(&config);
    }
    let filed: usize = users.iter().map(|u| dovecot.messages(u, "Spam").map(|m| m.len()).unwrap_or(0)).sum();
    eprintln!("retro: {delivered} copies of {} campaigns, {filed} retro-filed between kills", DISTINCTIVE.len());
    assert!(filed > 0, "kills landed while retro-filing worked");
    terminate(agent);
    runtime.block_on(async move {
        let mut node = node;
        node.stop().await;
    });
}

/// A message of its own: 80 pseudo-words drawn for it alone, so that no two
/// of them share a fingerprint (each report is of its own message).
fn synthetic(index: usize) -> Vec<u8> {
    const SYLLABLES: [&str; 16] =
        ["ka", "lo", "mi", "ren", "tu", "vas", "qel", "dor", "pin", "sa", "ber", "nox", "ul", "fi", "gra", "zen"];
    let mut random = Random((index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let words: Vec<String> =
        (0..80).map(|_| (0..3).map(|_| SYLLABLES[random.below(16) as usize]).collect::<String>()).collect();
    format!(
        "From: sender-{index}@example.net\r\nTo: crash@example.org\r\nSubject: note {index}\r\n\
         Message-ID: <report-{index}@crash>\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\n{}\r\n",
        words.join(" ")
    )
    .into_bytes()
}

/// Users' reports across kills: a user moves messages into the spam folder
/// while the agent is killed at random moments (between the move and its
/// report, between sending a report and noting it sent, ...). In the end
/// every move is reported, and the network records each report once: a
/// report sent again after a kill changes nothing there.
#[test]
fn users_reports_survive_kills_and_count_once() {
    // Kills as for the filing runs (fewer in the test suite: moves are slow);
    // about one move in every two or three rounds.
    let kills = if std::env::var_os("STARLING_CRASH_KILLS").is_some() { kills() } else { 60 };
    let messages = (kills * 2 / 5).max(24);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut node = runtime.block_on(Node::start()).expect("node");
    let dovecot = Dovecot::start(&["crash"], DovecotOptions::default()).expect("dovecot");
    dovecot.create_folder("crash", "Spam").expect("folder");
    let state = tempfile::tempdir().expect("tempdir");
    let config = imap_config(
        state.path(),
        &dovecot,
        &node,
        &["crash"],
        "[policy]\nmodel = \"off\"\n\n[retro]\nenabled = false\n",
    );
    for index in 0..messages {
        dovecot.save("crash", "INBOX", &synthetic(index)).expect("save");
    }
    // The agent has looked at them all and left them: nobody reported them.
    let mut agent = spawn_agent(&config);
    assert!(wait_until(Duration::from_secs(60), || checked(state.path()) >= messages as i64), "all checked");
    kill(&mut agent);

    let mut random = Random::new();
    let mut moved = 0;
    for _ in 0..kills {
        let mut agent = spawn_agent(&config);
        std::thread::sleep(Duration::from_millis(random.below(400)));
        if moved < messages && random.below(3) != 0 {
            let id = format!("<report-{moved}@crash>");
            assert_eq!(dovecot.imap_user("crash", &["move", &id, "INBOX", "Spam"]).unwrap(), 1);
            moved += 1;
            std::thread::sleep(Duration::from_millis(random.below(300)));
        }
        kill(&mut agent);
    }
    // The rest are moved while the agent is down.
    while moved < messages {
        let id = format!("<report-{moved}@crash>");
        assert_eq!(dovecot.imap_user("crash", &["move", &id, "INBOX", "Spam"]).unwrap(), 1);
        moved += 1;
    }
    // A last run sends what is left.
    let sent = || {
        starling_agent::state::open(&state.path().join("state.sqlite3"))
            .and_then(|c| {
                c.query_row("SELECT count(*) FROM feedback WHERE sent = 'spam' AND desired = sent", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .unwrap_or(0)
    };
    let agent = spawn_agent(&config);
    let done = wait_until(Duration::from_secs(120), || sent() == messages as i64);
    terminate(agent);
    assert!(done, "every move reported: {} of {messages}", sent());

    // On the wire: how many reports the node received (resent ones too).
    let metrics =
        ureq::get(format!("{}/metrics", node.url)).call().expect("metrics").into_body().read_to_string().expect("text");
    let on_the_wire: u64 = metrics
        .lines()
        .find(|l| l.starts_with("starling_network_reports_total{") && l.contains("name=\"spam\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the spam report counter");
    runtime.block_on(node.stop());
    // In the store: one report per message, and the reporter's count of
    // reports made is the number of moves — none counted twice.
    let store = Embedded::open(&node.data.join(starling_network::node::STORE_FILE), 1 << 20).expect("store");
    let stats = store.reader().expect("reader").stats().expect("stats");
    let mut reporters = Vec::new();
    store
        .export(Table::Reporters, None, &mut |_, value| {
            reporters.push(postcard::from_bytes::<starling_network::model::Reporter>(value).expect("a reporter"));
            Ok(true)
        })
        .expect("export");
    eprintln!(
        "{messages} moves across {kills} kills: {on_the_wire} reports on the wire ({} sent again after a kill), {} recorded",
        on_the_wire - messages as u64,
        stats.reports
    );
    assert!(on_the_wire >= messages as u64, "no move went unreported");
    assert_eq!(stats.reports, messages as u64, "one report per message in the store");
    assert_eq!(
        reporters.iter().map(|r| u64::from(r.reports)).sum::<u64>(),
        messages as u64,
        "each counted once: {reporters:?}"
    );
}
