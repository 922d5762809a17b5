//! The agent against a real Dovecot (IMAP, a master user, LMTP delivery)
//! and a real network node: every action leaves the expected folders and
//! flags, reconnection, fail-open, a server without MOVE, `\Junk`, shared
//! mailboxes, users from `doveadm user`, and a 10,000-message scan.
//!
//! Each test starts its own Dovecot and node on free loopback ports.

mod common;

use std::time::Duration;

use common::{Agent, WAIT, config, eventually, ids};
use starling_agent::state;
use starling_proto::v1::{Class, ReportClass};
use starling_testkit::{Dovecot, DovecotOptions, Message, Node, testdata, wait_until, with_message_id};

/// Spam the node knows (reported), ham it does not, each with a unique
/// Message-ID; and the phishing message reported as phishing.
struct Mail {
    spam: Vec<Vec<u8>>,
    ham: Vec<Vec<u8>>,
    phish: Vec<u8>,
}

async fn mail(node: &Node, tag: &str) -> Mail {
    let spam_all = testdata(true);
    let (phish, spam) = spam_all.split_first().expect("test spam");
    // Only spam the network then calls spam is used (a few corpus spams
    // are too short to be distinctive, or have nothing but a link).
    let mut known = Vec::new();
    for (i, (_, raw)) in spam.iter().enumerate() {
        let raw = with_message_id(raw, &format!("spam-{tag}-{i}@test"));
        node.report(ReportClass::Spam, &[&raw]).await.expect("report spam");
        if node.verdict(&raw).await.expect("check") == Class::Spam {
            known.push(raw);
        }
    }
    assert!(known.len() >= 8, "enough known spam: {}", known.len());
    let spam = known;
    let phish = with_message_id(&phish.1, &format!("phish-{tag}@test"));
    node.report(ReportClass::Phish, &[&phish]).await.expect("report phish");
    assert_eq!(node.verdict(&phish).await.expect("check"), Class::Phish);
    let ham = testdata(false)
        .iter()
        .enumerate()
        .map(|(i, (_, raw))| with_message_id(raw, &format!("ham-{tag}-{i}@test")))
        .collect();
    Mail { spam, ham, phish }
}

fn ids_of(raws: &[&Vec<u8>]) -> Vec<String> {
    let mut ids: Vec<String> = raws
        .iter()
        .map(|raw| {
            let text = String::from_utf8_lossy(raw);
            let line = text.lines().next().expect("a first line");
            line.trim_start_matches("Message-ID:").trim().to_owned()
        })
        .collect();
    ids.sort();
    ids
}

fn folder(dovecot: &Dovecot, user: &str, name: &str) -> Vec<Message> {
    dovecot.messages(user, name).expect("doveadm fetch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_spam_live_and_on_catch_up_and_leaves_ham_unread() {
    let dovecot = Dovecot::start(&["alice"], DovecotOptions::default()).expect("dovecot");
    let node = Node::start().await.expect("node");
    let mail = mail(&node, "a").await;
    // Half arrive before the agent starts (the first scan finds them), half
    // while it watches (IDLE).
    let (early_spam, late_spam) = mail.spam.split_at(mail.spam.len() / 2);
    for raw in early_spam.iter().chain(&mail.ham) {
        dovecot.save("alice", "INBOX", raw).expect("save");
    }
    let state = tempfile::tempdir().expect("tempdir");
    // Feedback off: the filter task alone creates the spam folder. (With
    // feedback on, the spam-folder task creates it too, and when both CREATEs
    // cross, Dovecot may answer both "already exists": the folder is there,
    // and nobody can tell it was created.)
    let feedback_off = "[feedback]\nenabled = false\n";
    let agent = Agent::start(config(&dovecot, &node, state.path(), &["alice"], feedback_off), &node.credential);
    for raw in late_spam {
        dovecot.lmtp_deliver("alice", raw).expect("lmtp");
    }
    let all_spam: Vec<&Vec<u8>> = mail.spam.iter().collect();
    let filed = wait_until(WAIT, || ids(&folder(&dovecot, "alice", "Spam")) == ids_of(&all_spam));
    assert!(
        filed,
        "every spam in Spam: expected {:?}\nSpam: {:?}\nINBOX: {:?}",
        ids_of(&all_spam),
        ids(&folder(&dovecot, "alice", "Spam")),
        ids(&folder(&dovecot, "alice", "INBOX"))
    );
    let inbox = folder(&dovecot, "alice", "INBOX");
    assert_eq!(ids(&inbox), ids_of(&mail.ham.iter().collect::<Vec<_>>()), "ham stays in INBOX");
    assert!(inbox.iter().all(|m| !m.seen()), "fetching never marks mail read");
    assert!(folder(&dovecot, "alice", "Spam").iter().all(|m| !m.seen()), "mark_read is off");
    eventually("counters written", &dovecot, || agent.counters("alice").spam == mail.spam.len() as u32);
    let counters = agent.counters("alice");
    assert_eq!(counters.checked, (mail.spam.len() + mail.ham.len()) as u32);
    assert_eq!(counters.errors, 0);
    eventually("folder_created event for Spam", &dovecot, || !agent.events(204).is_empty());
    assert!(!agent.events(100).is_empty(), "agent_started event");
    agent.stop().await;
}

/// One user per action, all in one Dovecot, each with its own agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_leaves_the_expected_folders_and_flags() {
    let users = ["tagger", "reader", "mover", "missing", "trasher", "deleter", "phished"];
    let dovecot = Dovecot::start(&users, DovecotOptions::default()).expect("dovecot");
    let node = Node::start().await.expect("node");
    let mail = mail(&node, "b").await;
    dovecot.create_folder("mover", "Quarantine").expect("folder");
    let policies = [
        ("tagger", "[policy]\nspam_action = \"tag\"\n"),
        ("reader", "[policy]\nmark_read = true\nspam_folder = \"Junk Mail\"\n"),
        ("mover", "[policy]\nspam_action = \"folder\"\nfolder = \"Quarantine\"\n"),
        ("missing", "[policy]\nspam_action = \"folder\"\nfolder = \"Quarantine\"\n"),
        ("trasher", "[policy]\nspam_action = \"trash\"\n"),
        ("deleter", "[policy]\nspam_action = \"delete\"\n"),
        ("phished", "[policy]\nspam_action = \"tag\"\nphish_action = \"delete\"\n"),
    ];
    let mut agents = Vec::new();
    let mut dirs = Vec::new();
    for (user, policy) in policies {
        for raw in mail.spam.iter().chain(&mail.ham).chain([&mail.phish]) {
            dovecot.save(user, "INBOX", raw).expect("save");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        agents.push((user, Agent::start(config(&dovecot, &node, dir.path(), &[user], policy), &node.credential)));
        dirs.push(dir);
    }
    let spam_and_phish: Vec<&Vec<u8>> = mail.spam.iter().chain([&mail.phish]).collect();
    let ham: Vec<&Vec<u8>> = mail.ham.iter().collect();
    let everything: Vec<&Vec<u8>> = spam_and_phish.iter().copied().chain(ham.iter().copied()).collect();

    // tag: every message stays in INBOX; spam gets the prefix, ham not.
    eventually("tagged", &dovecot, || {
        folder(&dovecot, "tagger", "INBOX").iter().filter(|m| m.subject.starts_with("[SPAM]")).count()
            == spam_and_phish.len()
    });
    let inbox = folder(&dovecot, "tagger", "INBOX");
    assert_eq!(ids(&inbox), ids_of(&everything), "tagging keeps every message exactly once");
    for m in &inbox {
        let tagged = m.subject.starts_with("[SPAM]");
        assert_eq!(tagged, m.message_id.starts_with("<spam") || m.message_id.starts_with("<phish"), "{m:?}");
        assert_eq!(tagged, m.header.contains("X-Starling-Tagged"), "the mark header goes with the tag: {m:?}");
        assert!(!m.seen());
    }

    // mark_read and a configured spam folder name.
    eventually("moved and read", &dovecot, || folder(&dovecot, "reader", "Junk Mail").len() == spam_and_phish.len());
    assert!(folder(&dovecot, "reader", "Junk Mail").iter().all(Message::seen), "mark_read marks filed spam read");
    assert!(folder(&dovecot, "reader", "INBOX").iter().all(|m| !m.seen()), "ham is never marked read");

    // An existing folder.
    eventually("moved to Quarantine", &dovecot, || {
        ids(&folder(&dovecot, "mover", "Quarantine")) == ids_of(&spam_and_phish)
    });
    assert_eq!(ids(&folder(&dovecot, "mover", "INBOX")), ids_of(&ham));

    // A missing folder is never created: mail stays, an event says why.
    let missing = &agents.iter().find(|(u, _)| *u == "missing").expect("agent").1;
    eventually("folder_missing event", &dovecot, || !missing.events(203).is_empty());
    assert!(!dovecot.folders("missing").expect("folders").iter().any(|f| f == "Quarantine"));
    assert_eq!(ids(&folder(&dovecot, "missing", "INBOX")), ids_of(&everything), "nothing moved, nothing lost");

    // Trash (created when missing), delete.
    eventually("moved to Trash", &dovecot, || ids(&folder(&dovecot, "trasher", "Trash")) == ids_of(&spam_and_phish));
    eventually("deleted", &dovecot, || ids(&folder(&dovecot, "deleter", "INBOX")) == ids_of(&ham));
    assert!(!dovecot.folders("deleter").expect("folders").iter().any(|f| f == "Spam"));

    // Phishing has its own action: deleted while spam is tagged.
    eventually("phish deleted, spam tagged", &dovecot, || {
        let inbox = folder(&dovecot, "phished", "INBOX");
        inbox.len() == mail.spam.len() + mail.ham.len()
            && inbox.iter().filter(|m| m.subject.starts_with("[SPAM]")).count() == mail.spam.len()
    });
    assert!(!folder(&dovecot, "phished", "INBOX").iter().any(|m| m.message_id.starts_with("<phish")));

    for (_, agent) in agents {
        agent.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_special_use_whitelist_and_empty_message_rules() {
    let dovecot =
        Dovecot::start(&["bob"], DovecotOptions { junk_special_use: true, ..Default::default() }).expect("dovecot");
    let node = Node::start().await.expect("node");
    let mail = mail(&node, "c").await;
    let state = tempfile::tempdir().expect("tempdir");
    // The first spam's sender is whitelisted for bob.
    let whitelisted = &mail.spam[0];
    let sender = starling_agent::facts::Facts::from_message(whitelisted, 3).senders[0].clone();
    let extra = format!("[whitelist]\nentries = [{sender:?}]\n");
    let agent = Agent::start(config(&dovecot, &node, state.path(), &["bob"], &extra), &node.credential);
    let empty = b"Message-ID: <empty-c@test>\nFrom: someone@example.org\nTo: bob@example.com\nSubject:\n\n\n".to_vec();
    for raw in mail.spam.iter().chain([&empty]) {
        dovecot.lmtp_deliver("bob", raw).expect("lmtp");
    }
    let expected: Vec<&Vec<u8>> = mail.spam[1..].iter().chain([&empty]).collect();
    eventually("spam and the empty message in \\Junk", &dovecot, || {
        ids(&folder(&dovecot, "bob", "Junk")) == ids_of(&expected)
    });
    assert!(!dovecot.folders("bob").expect("folders").iter().any(|f| f == "Spam"), "Junk is used, Spam not created");
    assert_eq!(ids(&folder(&dovecot, "bob", "INBOX")), ids_of(&[whitelisted]), "the whitelisted sender stays");
    eventually("counters", &dovecot, || agent.counters("bob").whitelisted == 1);
    assert_eq!(agent.counters("bob").empty, 1);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_and_expunge_when_the_server_lacks_move() {
    let dovecot = Dovecot::start(&["carol", "dave"], DovecotOptions { without_move: true, ..Default::default() })
        .expect("dovecot");
    let node = Node::start().await.expect("node");
    let mail = mail(&node, "d").await;
    let state = tempfile::tempdir().expect("tempdir");
    let agent = Agent::start(config(&dovecot, &node, state.path(), &["carol"], ""), &node.credential);
    for raw in mail.spam.iter().chain(&mail.ham) {
        dovecot.lmtp_deliver("carol", raw).expect("lmtp");
    }
    eventually("spam moved by COPY + EXPUNGE", &dovecot, || {
        ids(&folder(&dovecot, "carol", "Spam")) == ids_of(&mail.spam.iter().collect::<Vec<_>>())
    });
    assert_eq!(ids(&folder(&dovecot, "carol", "INBOX")), ids_of(&mail.ham.iter().collect::<Vec<_>>()));
    assert!(!agent.events(208).is_empty(), "server_lacks_move event");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_and_expunge_spares_other_deleted_messages() {
    let dovecot =
        Dovecot::start(&["dave"], DovecotOptions { without_move: true, ..Default::default() }).expect("dovecot");
    let node = Node::start().await.expect("node");
    let mail = mail(&node, "e").await;
    dovecot.save("dave", "INBOX", &mail.ham[0]).expect("save");
    let out = std::process::Command::new("doveadm")
        .arg("-c")
        .arg(dovecot.config())
        .args(["flags", "add", "-u", "dave", "\\Deleted", "mailbox", "INBOX", "all"])
        .output()
        .expect("doveadm flags");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let state = tempfile::tempdir().expect("tempdir");
    let agent = Agent::start(config(&dovecot, &node, state.path(), &["dave"], ""), &node.credential);
    dovecot.lmtp_deliver("dave", &mail.spam[0]).expect("lmtp");
    eventually("spam moved", &dovecot, || folder(&dovecot, "dave", "Spam").len() == 1);
    let inbox = folder(&dovecot, "dave", "INBOX");
    assert_eq!(ids(&inbox), ids_of(&[&mail.ham[0]]), "the user's \\Deleted message is not expunged by the agent");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_when_dovecot_restarts() {
    let dovecot = Dovecot::start(&["erin"], DovecotOptions::default()).expect("dovecot");
    let node = Node::start().await.expect("node");
    let mail = mail(&node, "f").await;
    let state = tempfile::tempdir().expect("tempdir");
    let agent = Agent::start(config(&dovecot, &node, state.path(), &["erin"], ""), &node.credential);
    dovecot.lmtp_deliver("erin", &mail.spam[0]).expect("lmtp");
    eventually("first spam filed", &dovecot, || folder(&dovecot, "erin", "Spam").len() == 1);
    dovecot.restart().expect("restart dovecot");
    eventually("the agent noticed", &dovecot, || !agent.events(200).is_empty());
    dovecot.lmtp_deliver("erin", &mail.spam[1]).expect("lmtp");
    eventually("spam after the restart filed", &dovecot, || folder(&dovecot, "erin", "Spam").len() == 2);
    assert!(!agent.events(201).is_empty(), "mail_store_reconnected event");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_open_while_the_network_is_down_and_drains_the_queue() {
    let dovecot = Dovecot::start(&["frank"], DovecotOptions::default()).expect("dovecot");
    let mut node = Node::start().await.expect("node");
    let mail = mail(&node, "g").await;
    let state = tempfile::tempdir().expect("tempdir");
    let agent = Agent::start(config(&dovecot, &node, state.path(), &["frank"], ""), &node.credential);
    dovecot.lmtp_deliver("frank", &mail.spam[0]).expect("lmtp");
    eventually("first spam filed", &dovecot, || folder(&dovecot, "frank", "Spam").len() == 1);
    node.stop().await;
    for raw in &mail.spam[1..] {
        dovecot.lmtp_deliver("frank", raw).expect("lmtp");
    }
    eventually("network_unreachable event", &dovecot, || !agent.events(300).is_empty());
    let queued = || {
        let c = state::open(&state.path().join("state.sqlite3")).expect("state");
        state::recheck_count(&c).expect("count")
    };
    eventually("every unchecked message queued", &dovecot, || queued() == (mail.spam.len() - 1) as u64);
    assert_eq!(folder(&dovecot, "frank", "INBOX").len(), mail.spam.len() - 1, "mail stays where it is");
    assert_eq!(folder(&dovecot, "frank", "Spam").len(), 1);
    assert_eq!(queued(), (mail.spam.len() - 1) as u64, "every unchecked message is queued");
    node.restart().await.expect("restart node");
    eventually("the queue drained", &dovecot, || folder(&dovecot, "frank", "Spam").len() == mail.spam.len());
    assert!(folder(&dovecot, "frank", "INBOX").is_empty());
    assert!(!agent.events(301).is_empty(), "network_reachable event");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_mailbox_has_its_own_action_and_users_come_from_doveadm() {
    let dovecot = Dovecot::start(&["gina", "shared"], DovecotOptions::default()).expect("dovecot");
    let node = Node::start().await.expect("node");
    let mail = mail(&node, "h").await;
    let state = tempfile::tempdir().expect("tempdir");
    let extra = format!(
        "[users]\nsource = \"doveadm\"\ndoveadm_command = [\"doveadm\", \"-c\", {conf:?}, \"user\", \"*\"]\n\n\
         [[shared]]\naccount = \"shared\"\naction = \"tag\"\n",
        conf = dovecot.config().display().to_string()
    );
    let text = config(&dovecot, &node, state.path(), &[], "");
    // Replace the list source with the doveadm one.
    let mut config = text;
    let parsed = starling_agent::AgentConfig::from_toml(&extra).expect("extra");
    config.users = parsed.users;
    config.shared = parsed.shared;
    let agent = Agent::start(config, &node.credential);
    dovecot.lmtp_deliver("gina", &mail.spam[0]).expect("lmtp");
    dovecot.lmtp_deliver("shared", &mail.spam[1]).expect("lmtp");
    eventually("gina's spam moved", &dovecot, || folder(&dovecot, "gina", "Spam").len() == 1);
    eventually("the shared mailbox's spam tagged", &dovecot, || {
        folder(&dovecot, "shared", "INBOX").iter().any(|m| m.subject.starts_with("[SPAM]"))
    });
    assert!(folder(&dovecot, "shared", "Spam").is_empty());
    let c = state::open(&state.path().join("state.sqlite3")).expect("state");
    let names: Vec<String> = state::mailboxes(&c).expect("mailboxes").into_iter().map(|m| m.name).collect();
    assert!(names.contains(&"gina".to_owned()), "{names:?}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_a_mailbox_of_ten_thousand_messages() {
    const COUNT: usize = 10_000;
    let dovecot = Dovecot::start(&["heidi"], DovecotOptions::default()).expect("dovecot");
    let node = Node::start().await.expect("node");
    let mail = mail(&node, "i").await;
    let pool: Vec<&Vec<u8>> = mail.spam.iter().chain(&mail.ham).collect();
    let messages: Vec<Vec<u8>> =
        (0..COUNT).map(|i| with_message_id(pool[i % pool.len()], &format!("bulk-{i}@test"))).collect();
    let spam_count = (0..COUNT).filter(|i| i % pool.len() < mail.spam.len()).count();
    dovecot.fill_maildir("heidi", &messages).expect("fill");
    // Index them now, as a long-lived mailbox would be.
    assert_eq!(folder(&dovecot, "heidi", "INBOX").len(), COUNT);
    let state = tempfile::tempdir().expect("tempdir");
    let agent = Agent::start(config(&dovecot, &node, state.path(), &["heidi"], ""), &node.credential);
    assert!(
        wait_until(Duration::from_secs(300), || agent.counters("heidi").checked == COUNT as u32),
        "all {COUNT} checked: {:?}",
        agent.counters("heidi")
    );
    assert_eq!(folder(&dovecot, "heidi", "Spam").len(), spam_count);
    assert_eq!(folder(&dovecot, "heidi", "INBOX").len(), COUNT - spam_count);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_in_with_sasl_plain_and_reports_wrong_credentials() {
    let dovecot = Dovecot::start(&["ivan", "judy"], DovecotOptions::default()).expect("dovecot");
    let node = Node::start().await.expect("node");
    let mail = mail(&node, "j").await;
    // SASL PLAIN: the master user authenticates, the mailbox is the
    // authorisation identity (RFC 4616).
    let state = tempfile::tempdir().expect("tempdir");
    let mut sasl = config(&dovecot, &node, state.path(), &["ivan"], "");
    sasl.imap.auth = starling_agent::config::ImapAuth::SaslPlain;
    let agent = Agent::start(sasl, &node.credential);
    dovecot.lmtp_deliver("ivan", &mail.spam[0]).expect("lmtp");
    eventually("filed through a SASL PLAIN login", &dovecot, || folder(&dovecot, "ivan", "Spam").len() == 1);
    assert!(dovecot.log().contains("user=<ivan>"), "logged in as ivan");
    agent.stop().await;

    // A wrong password: an event, mail untouched, the agent keeps running.
    let state = tempfile::tempdir().expect("tempdir");
    let wrong = state.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-password\n").expect("write");
    let mut config = config(&dovecot, &node, state.path(), &["judy"], "");
    config.imap.password_file = wrong;
    let agent = Agent::start(config, &node.credential);
    dovecot.lmtp_deliver("judy", &mail.spam[0]).expect("lmtp");
    eventually("authentication_failed event", &dovecot, || !agent.events(202).is_empty());
    assert_eq!(folder(&dovecot, "judy", "INBOX").len(), 1, "mail stays where it is");
    assert!(agent.running(), "the agent keeps running (and retrying)");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_with_tls_and_with_starttls() {
    let dovecot =
        Dovecot::start(&["kate", "leo"], DovecotOptions { tls: true, ..Default::default() }).expect("dovecot");
    let node = Node::start().await.expect("node");
    let mail = mail(&node, "k").await;
    let mut agents = Vec::new();
    let mut dirs = Vec::new();
    for (user, security, port) in [
        ("kate", starling_agent::config::ImapSecurity::Tls, dovecot.imaps_port),
        ("leo", starling_agent::config::ImapSecurity::Starttls, dovecot.imap_port),
    ] {
        let state = tempfile::tempdir().expect("tempdir");
        let mut config = config(&dovecot, &node, state.path(), &[user], "");
        config.imap.security = security;
        config.imap.port = port;
        config.imap.ca_file = Some(dovecot.certificate());
        agents.push(Agent::start(config, &node.credential));
        dirs.push(state);
        dovecot.lmtp_deliver(user, &mail.spam[0]).expect("lmtp");
    }
    eventually("filed over TLS and STARTTLS", &dovecot, || {
        folder(&dovecot, "kate", "Spam").len() == 1 && folder(&dovecot, "leo", "Spam").len() == 1
    });
    assert!(dovecot.log().matches("TLS").count() >= 2, "both sessions were encrypted:\n{}", dovecot.log());
    for agent in agents {
        agent.stop().await;
    }
}

/// A server whose greeting makes the IMAP parser panic (imap-proto 0.17 on
/// non-UTF-8 text right after a response code; found by the `imap` fuzz
/// target): the session ends like a lost connection, with an event, and the
/// mailbox's task keeps reconnecting instead of dying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_the_parser_cannot_read_is_a_lost_connection_not_a_dead_task() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("address").port();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = std::io::Write::write_all(&mut stream, b"* OK [CAPABILITY IMAP4rev1]\xe0\x89ready\r\n");
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let node = Node::start().await.expect("node");
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("password");
    std::fs::write(&password, "secret").expect("password");
    let server = common::ImapServer { port, password_file: &password, auth: "master-user" };
    let agent = Agent::start(common::imap_config(&server, &node, dir.path(), &["victim"], ""), &node.credential);
    assert!(
        wait_until(WAIT, || agent.events(200).iter().any(|e| e.text.contains("could not read"))),
        "mail_store_unreachable says the response could not be read"
    );
    assert!(
        wait_until(WAIT, || connections.load(std::sync::atomic::Ordering::SeqCst) >= 3),
        "the mailbox's task keeps reconnecting"
    );
    assert!(agent.running());
    agent.stop().await;
}

/// A new action reaches the running sessions in place: no session logs in
/// again (at 10,000 mailboxes a settings change must not be a storm of
/// reconnections).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_action_applies_to_running_sessions_without_reconnecting() {
    let dovecot = Dovecot::start(&["ivy"], DovecotOptions::default()).expect("dovecot");
    let node = Node::start().await.expect("node");
    let spam = common::known_spam(&node, "setting").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(&dovecot, &node, dir.path(), &["ivy"], "");
    // The spam folder keeps its session (its closing while quiet, and
    // opening again at news, are logins of their own).
    config.imap.spam_session_quiet_seconds = 0;
    let agent = Agent::start(config, &node.credential);
    agent.wait_seen("ivy", "INBOX", 0);
    agent.wait_seen("ivy", "Spam", 0);
    dovecot.lmtp_deliver("ivy", &spam[0]).expect("lmtp");
    eventually("filed into the spam folder", &dovecot, || dovecot.messages("ivy", "Spam").unwrap().len() == 1);
    let logins = || dovecot.log().matches("Login: user=<ivy").count();
    let before = logins();
    assert!(before >= 2, "the log shows the sessions' logins:\n{}", dovecot.log());

    state::setting_put(&agent.db(), "policy.spam_action", Some(&serde_json::json!("tag")), "test").expect("setting");
    assert!(wait_until(WAIT, || !agent.events(502).is_empty()), "the agent took the change");
    dovecot.lmtp_deliver("ivy", &spam[1]).expect("lmtp");
    eventually("tagged in place", &dovecot, || {
        dovecot.messages("ivy", "INBOX").unwrap().iter().any(|m| m.subject.starts_with("[SPAM]"))
    });
    assert_eq!(dovecot.messages("ivy", "Spam").unwrap().len(), 1, "the second was not moved");
    assert_eq!(logins(), before, "no session logged in again:\n{}", dovecot.log());
    agent.stop().await;
}
