//! In-line filtering through a real Postfix (a private instance on loopback
//! ports, `smtpd_milters` pointing at the agent) delivering to a real
//! Dovecot over LMTP, with a real network node: corpus spam and ham sent
//! over SMTP, the headers and actions checked in the delivered messages;
//! per-recipient decisions; forged marks; the post-delivery agent taking
//! the milter's verdict without asking again; Starling stopped mid-test
//! while mail still flows; the network gone (delivered unmarked at once,
//! filed after delivery when it is back); reject, quarantine, the in-line
//! subject tag and discard.

mod common;

use std::path::Path;

use common::{Agent, WAIT, config, eventually, message_id};
use starling_agent::AgentConfig;
use starling_testkit::postfix::{Postfix, PostfixOptions};
use starling_testkit::{
    Dovecot, DovecotOptions, Message, Node, free_port, testdata, wait_until, with_header, with_message_id,
};

/// Spam the node calls spam, and ham, each with a unique Message-ID.
async fn mail(node: &Node, tag: &str) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let spam = common::known_spam(node, tag).await;
    assert!(spam.len() >= 6, "enough known spam: {}", spam.len());
    let ham = testdata(false)
        .iter()
        .enumerate()
        .map(|(i, (_, raw))| with_message_id(raw, &format!("ham-{tag}-{i}@test")))
        .collect();
    (spam, ham)
}

fn milter_config(dovecot: &Dovecot, node: &Node, state: &Path, users: &[&str], port: u16, extra: &str) -> AgentConfig {
    let extra = format!("[milter]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\ntimeout_ms = 2000\n{extra}\n");
    config(dovecot, node, state, users, &extra)
}

/// A private Postfix delivering to `dovecot`, asking the milter on `port`.
fn postfix_with_milter(dovecot: &Dovecot, port: u16) -> Postfix {
    let milter = Some(format!("inet:127.0.0.1:{port}"));
    Postfix::start(dovecot.lmtp_port, PostfixOptions { milter, ..Default::default() }).expect("postfix")
}

/// The delivered copy of `raw` in a folder, once it is there.
fn delivered(dovecot: &Dovecot, user: &str, folder: &str, raw: &[u8]) -> Option<Message> {
    let id = message_id(raw);
    dovecot.messages(user, folder).ok()?.into_iter().find(|m| m.message_id == id)
}

fn wait_delivered(dovecot: &Dovecot, postfix: &Postfix, user: &str, folder: &str, raw: &[u8]) -> Message {
    let mut found = None;
    let arrived = wait_until(WAIT, || {
        found = delivered(dovecot, user, folder, raw);
        found.is_some()
    });
    assert!(
        arrived,
        "{} not delivered to {user}/{folder}\nPostfix log:\n{}\nDovecot log:\n{}",
        message_id(raw),
        postfix.log(),
        dovecot.log()
    );
    found.expect("found")
}

fn header_lines<'a>(message: &'a Message, name: &str) -> Vec<&'a str> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    message.header.lines().filter(|l| l.to_ascii_lowercase().starts_with(&prefix)).collect()
}

fn send(postfix: &Postfix, recipients: &[&str], raw: &[u8]) -> String {
    postfix.send("sender@example.net", recipients, raw).expect("SMTP")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_delivers_marked_mail_and_keeps_flowing_without_starling() {
    let dovecot =
        Dovecot::start(&["alice", "bob", "carol"], DovecotOptions { strip_domain: true, ..Default::default() })
            .expect("dovecot");
    let mut node = Node::start().await.expect("node");
    let (spam, ham) = mail(&node, "m").await;
    let port = free_port();
    let postfix = postfix_with_milter(&dovecot, port);
    let state = tempfile::tempdir().expect("tempdir");
    // alice is filtered in-line and after delivery; bob is a known mailbox
    // with filtering off; carol is not a mailbox the agent knows.
    let config = milter_config(&dovecot, &node, state.path(), &["alice", "bob"], port, "");
    let agent = Agent::start(config, &node.credential);
    assert!(wait_until(WAIT, || !agent.events(900).is_empty()), "the milter started");
    agent.wait_seen("bob", "INBOX", 0);
    let db = agent.db();
    starling_agent::state::set_enabled(&db, "bob", false).expect("disable bob");
    // The milter reads the mailboxes when the agent looks at its users.
    assert!(wait_until(WAIT, || !agent.events(603).is_empty()), "bob disabled");

    // Spam to alice: marked and flagged in-line, then filed by the
    // post-delivery agent from the mark alone.
    let reply = send(&postfix, &["alice@example.org"], &spam[0]);
    assert!(reply.starts_with("250"), "{reply}");
    let filed = wait_delivered(&dovecot, &postfix, "alice", "Spam", &spam[0]);
    let verdict = header_lines(&filed, "X-Starling-Verdict");
    assert_eq!(verdict.len(), 1, "{}", filed.header);
    assert!(verdict[0].contains("spam; v1 "), "{verdict:?}");
    assert_eq!(header_lines(&filed, "X-Spam-Flag"), ["X-Spam-Flag: YES"]);
    assert!(header_lines(&filed, "X-Starling-Evidence")[0].contains("reason=network"));

    // Ham to alice: marked clean, no flag, left in the inbox.
    send(&postfix, &["alice@example.org"], &ham[0]);
    let kept = wait_delivered(&dovecot, &postfix, "alice", "INBOX", &ham[0]);
    assert!(header_lines(&kept, "X-Starling-Verdict")[0].contains("clean; v1 "), "{}", kept.header);
    assert!(header_lines(&kept, "X-Spam-Flag").is_empty());

    // A sender's forged mark and flag are dropped: the spam is marked spam.
    let forged = with_header(&spam[1], "X-Starling-Verdict", "clean; v1 000000000000000000000000 00");
    send(&postfix, &["alice@example.org"], &forged);
    let filed = wait_delivered(&dovecot, &postfix, "alice", "Spam", &forged);
    let verdict = header_lines(&filed, "X-Starling-Verdict");
    assert_eq!(verdict.len(), 1, "{}", filed.header);
    assert!(verdict[0].contains("spam; v1 "));
    // And a ham with a forged spam flag of ours keeps nothing of it.
    let flagged = with_header(&ham[1], "X-Starling-Verdict", "spam; v1 000000000000000000000000 00");
    send(&postfix, &["alice@example.org"], &flagged);
    let kept = wait_delivered(&dovecot, &postfix, "alice", "INBOX", &flagged);
    let verdict = header_lines(&kept, "X-Starling-Verdict");
    assert_eq!(verdict.len(), 1);
    assert!(verdict[0].contains("clean; v1 "));

    // Spam to bob (filtering off) and carol (unknown): untouched.
    send(&postfix, &["bob@example.org"], &spam[2]);
    send(&postfix, &["carol@example.org"], &spam[2]);
    for user in ["bob", "carol"] {
        let copy = wait_delivered(&dovecot, &postfix, user, "INBOX", &spam[2]);
        assert!(header_lines(&copy, "X-Starling-Verdict").is_empty(), "{user}: {}", copy.header);
        assert!(header_lines(&copy, "X-Spam-Flag").is_empty());
    }

    // Spam to alice and carol at once: they disagree, so nothing is done
    // in-line; alice's copy is filed after delivery, carol's stays.
    send(&postfix, &["alice@example.org", "carol@example.org"], &spam[3]);
    let filed = wait_delivered(&dovecot, &postfix, "alice", "Spam", &spam[3]);
    assert!(header_lines(&filed, "X-Starling-Verdict").is_empty(), "{}", filed.header);
    wait_delivered(&dovecot, &postfix, "carol", "INBOX", &spam[3]);

    // The milter counted alice's marked messages once: the post-delivery
    // agent took their verdict from the mark (the mixed one it checked).
    eventually("alice's counters", &dovecot, || {
        let n = agent.counters("alice");
        n.checked == 5 && n.spam == 3
    });
    assert!(agent.counters("bob").checked == 0);

    // The network goes away: the milter delivers unchecked and unmarked at
    // once (event 901), and the post-delivery agent keeps the message for
    // its re-check; it is filed when the network is back.
    node.stop().await;
    let sent = std::time::Instant::now();
    send(&postfix, &["alice@example.org"], &spam[5]);
    assert!(sent.elapsed() < std::time::Duration::from_secs(3), "not held up: {:?}", sent.elapsed());
    let unchecked = wait_delivered(&dovecot, &postfix, "alice", "INBOX", &spam[5]);
    assert!(header_lines(&unchecked, "X-Starling-Verdict").is_empty(), "{}", unchecked.header);
    assert!(wait_until(WAIT, || !agent.events(901).is_empty()), "milter_unchecked");
    node.restart().await.expect("node back");
    wait_delivered(&dovecot, &postfix, "alice", "Spam", &spam[5]);

    // Starling stops: Postfix delivers untouched (milter_default_action).
    agent.stop().await;
    send(&postfix, &["alice@example.org"], &spam[4]);
    send(&postfix, &["alice@example.org"], &ham[2]);
    for raw in [&spam[4], &ham[2]] {
        let copy = wait_delivered(&dovecot, &postfix, "alice", "INBOX", raw);
        assert!(header_lines(&copy, "X-Starling-Verdict").is_empty());
    }
    assert_eq!(postfix.queued(), 0, "nothing left in the queue:\n{}", postfix.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_quarantine_tag_and_discard_in_line() {
    let dovecot =
        Dovecot::start(&["dan"], DovecotOptions { strip_domain: true, ..Default::default() }).expect("dovecot");
    let node = Node::start().await.expect("node");
    let (spam, ham) = mail(&node, "r").await;
    let cases = [
        ("reject", "[milter]\nspam_action = \"reject\"\nreject_text = \"550 5.7.1 No spam here, thanks\"\n"),
        ("quarantine", "[milter]\nspam_action = \"quarantine\"\n"),
        ("tag", "[policy]\nspam_action = \"tag\"\ntag_prefix = \"[SPAM]\"\n"),
        ("delete", "[policy]\nspam_action = \"delete\"\n"),
    ];
    // One Postfix; each case's agent listens on the same milter port in turn.
    let port = free_port();
    let postfix = postfix_with_milter(&dovecot, port);
    for (index, (case, extra)) in cases.into_iter().enumerate() {
        let state = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "state_dir = {:?}\n[network]\nurl = {:?}\n[users]\nsource = \"list\"\nlist = [\"dan\"]\n\
             [console]\nenabled = false\n{}",
            state.path().display().to_string(),
            node.url,
            extra
        );
        let mut config = AgentConfig::from_toml(&text).unwrap_or_else(|p| panic!("{case}: {p:?}\n{text}"));
        config.milter.listen = format!("127.0.0.1:{port}");
        config.milter.timeout_ms = 2000;
        // `starling milter`: in-line only, no mailbox watched.
        let live = std::sync::Arc::new(starling_agent::live::Live::default());
        let options = starling_agent::Options {
            credential: Some(node.credential.clone()),
            milter_only: true,
            live: live.clone(),
        };
        let agent = Agent::start_with(config, options);
        assert!(wait_until(WAIT, || !agent.events(900).is_empty()), "{case}: the milter started");
        // The first look at the users is what tells the milter whose mail
        // to filter (before it, mail passes unfiltered).
        let knows_dan = || live.snapshot().milter.is_some_and(|m| m.mailboxes == 1);
        assert!(wait_until(WAIT, knows_dan), "{case}: the milter knows dan");
        let spam = &spam[index];
        let ham = &ham[index];
        let reply = send(&postfix, &["dan@example.org"], spam);
        match case {
            "reject" => assert!(reply.starts_with("550 5.7.1 No spam here, thanks"), "{reply}"),
            "quarantine" => {
                assert!(reply.starts_with("250"), "{reply}");
                assert!(wait_until(WAIT, || postfix.held() == 1), "held:\n{}", postfix.log());
                assert!(delivered(&dovecot, "dan", "INBOX", spam).is_none());
            }
            "delete" => {
                // Accepted and thrown away: the sender is not told.
                assert!(reply.starts_with("250"), "{reply}");
                assert!(wait_until(WAIT, || postfix.log().contains("milter-discard")), "{}", postfix.log());
                assert!(delivered(&dovecot, "dan", "INBOX", spam).is_none());
            }
            _ => {
                let tagged = wait_delivered(&dovecot, &postfix, "dan", "INBOX", spam);
                assert!(tagged.subject.starts_with("[SPAM] "), "{}", tagged.subject);
                assert_eq!(header_lines(&tagged, "X-Spam-Flag"), ["X-Spam-Flag: YES"]);
            }
        }
        // Ham is delivered, marked clean, whatever the action.
        assert!(send(&postfix, &["dan@example.org"], ham).starts_with("250"));
        let kept = wait_delivered(&dovecot, &postfix, "dan", "INBOX", ham);
        assert!(header_lines(&kept, "X-Starling-Verdict")[0].contains("clean; v1 "), "{case}: {}", kept.header);
        eventually("dan's counters", &dovecot, || {
            let n = agent.counters("dan");
            n.checked == 2 && n.spam == 1
        });
        // What the dashboard and /metrics show.
        let milter = live.snapshot().milter.expect("the milter's live view");
        assert_eq!((milter.decided, milter.spam, milter.unchecked), (2, 1, 0), "{case}: {milter:?}");
        assert_eq!(milter.listen, format!("127.0.0.1:{port}"));
        agent.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_sieve_script_files_flagged_spam_at_delivery_without_a_false_report() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/sieve/starling.sieve");
    let options = DovecotOptions { strip_domain: true, sieve_before: Some(script), ..Default::default() };
    let dovecot = Dovecot::start(&["erin"], options).expect("dovecot (with dovecot-sieve)");
    let node = Node::start().await.expect("node");
    let (spam, ham) = mail(&node, "s").await;
    let port = free_port();
    let postfix = postfix_with_milter(&dovecot, port);
    let state = tempfile::tempdir().expect("tempdir");
    // The whole agent: in-line, and watching erin's inbox and spam folder
    // for her moves.
    let agent = Agent::start(milter_config(&dovecot, &node, state.path(), &["erin"], port, ""), &node.credential);
    assert!(wait_until(WAIT, || !agent.events(900).is_empty()), "the milter started");
    agent.wait_seen("erin", "INBOX", 0);
    // The spam-folder task has its starting point: what arrives there from
    // now on is new to it (on a loaded machine it may start after the
    // delivery otherwise, and take the filing for mail that was there).
    agent.wait_seen("erin", "Spam", 0);

    // Filed by Sieve as it is delivered: straight into Spam, never in the
    // inbox.
    send(&postfix, &["erin@example.org"], &spam[0]);
    send(&postfix, &["erin@example.org"], &ham[0]);
    let filed = wait_delivered(&dovecot, &postfix, "erin", "Spam", &spam[0]);
    assert_eq!(header_lines(&filed, "X-Spam-Flag"), ["X-Spam-Flag: YES"]);
    wait_delivered(&dovecot, &postfix, "erin", "INBOX", &ham[0]);
    assert!(delivered(&dovecot, "erin", "INBOX", &spam[0]).is_none());
    eventually("erin's counters", &dovecot, || {
        let n = agent.counters("erin");
        n.checked == 2 && n.spam == 1
    });
    // The spam-folder task saw it arrive there: the milter's filing, not
    // erin's report.
    let id = message_id(&spam[0]);
    let arrived = || {
        agent
            .db()
            .query_row(
                "SELECT action FROM filed WHERE mailbox = 'erin' AND message_id = ?1",
                [id.trim_matches(['<', '>'])],
                |row| row.get::<_, String>(0),
            )
            .is_ok_and(|action| action == "inline-filed")
    };
    assert!(wait_until(WAIT, arrived), "the spam-folder task saw the Sieve filing");
    assert_eq!(agent.counters("erin").blocked, 0, "a Sieve filing is not a user's report");
    assert!(agent.events(700).is_empty());

    // erin takes it out of Spam: a rescue, as for the agent's own filings.
    assert_eq!(dovecot.imap_user("erin", &["move", &id, "Spam", "INBOX"]).unwrap(), 1);
    eventually("the rescue", &dovecot, || agent.counters("erin").unblocked == 1);
    assert!(wait_until(WAIT, || !agent.events(701).is_empty()), "user_rescued");
    agent.stop().await;
}
