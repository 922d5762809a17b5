//! Retro-filing and the local model against a real Dovecot and a real
//! node: a campaign delivered to many mailboxes before anybody knew it is
//! filed everywhere within seconds of one user's report; a whitelisted
//! sender's copy and a rescued copy stay; the model learns from users'
//! moves.

mod common;

use std::time::{Duration, Instant};

use common::{Agent, config, eventually, ids};
use starling_proto::v1::Class;
use starling_testkit::{Dovecot, DovecotOptions, Node, testdata, wait_until, with_message_id};

/// Whether a folder holds the message with this Message-ID.
fn has(dovecot: &Dovecot, user: &str, folder: &str, id: &str) -> bool {
    dovecot.messages(user, folder).map(|m| ids(&m).iter().any(|i| i == &format!("<{id}>"))).unwrap_or(false)
}

/// A distinctive corpus spam the node does not know yet.
fn campaign() -> Vec<u8> {
    testdata(true).swap_remove(3).1
}

/// The same campaign from another sender.
fn from(raw: &[u8], sender: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw);
    text.lines()
        .map(
            |line| if line.to_ascii_lowercase().starts_with("from:") { format!("From: {sender}") } else { line.into() },
        )
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_one_user_reports_is_filed_for_everybody_within_seconds() {
    let users: Vec<String> = (0..10).map(|i| format!("u{i}")).chain(["dave".into(), "erin".into()]).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let dovecot = Dovecot::start(&names, DovecotOptions::default()).expect("dovecot");
    let node = Node::start().await.expect("node");
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = "[whitelist]\nentries = [\"friend@trusted.example\"]\n[rescan]\nenabled = false\n";
    let agent = Agent::start(config(&dovecot, &node, dir.path(), &names, extra), &node.credential);

    // The campaign reaches every mailbox before anybody knows it; dave's
    // copy comes from a whitelisted sender.
    let raw = campaign();
    assert_eq!(node.verdict(&raw).await.unwrap(), Class::Clean, "the campaign is new");
    for user in &users {
        let copy = if user == "dave" { from(&raw, "Friend <friend@trusted.example>") } else { raw.clone() };
        dovecot.lmtp_deliver(user, &with_message_id(&copy, &format!("{user}@campaign"))).expect("lmtp");
    }
    for user in &users {
        agent.wait_checked(user, 1);
        assert!(has(&dovecot, user, "INBOX", &format!("{user}@campaign")), "{user}: left, unknown");
    }

    // u0 reports it with their mail client; everybody else's copy is filed.
    assert_eq!(dovecot.imap_user("u0", &["move", "<u0@campaign>", "INBOX", "Spam"]).unwrap(), 1);
    let moved = Instant::now();
    let others: Vec<&String> = users.iter().filter(|u| !["u0", "dave"].contains(&u.as_str())).collect();
    eventually("every other copy filed after delivery", &dovecot, || {
        others.iter().all(|u| has(&dovecot, u, "Spam", &format!("{u}@campaign")))
    });
    let elapsed = moved.elapsed();
    eprintln!("retro-filed {} copies {elapsed:?} after the move", others.len());
    assert!(elapsed < Duration::from_secs(10), "within seconds: {elapsed:?}");
    for user in &others {
        assert!(!has(&dovecot, user, "INBOX", &format!("{user}@campaign")), "{user}: moved, not copied");
    }
    assert!(has(&dovecot, "dave", "INBOX", "dave@campaign"), "a whitelisted sender's copy is not filed");
    eventually("event 720", &dovecot, || !agent.events(720).is_empty());
    let retro: i64 = agent
        .db()
        .query_row("SELECT count(*) FROM filed WHERE pass = 'retro' AND folder <> ''", [], |r| r.get(0))
        .unwrap();
    assert_eq!(retro, others.len() as i64, "filed once each, as retro-filings");
    // The report taught the local model a spam example.
    let learnt: i64 = agent
        .db()
        .query_row("SELECT count(*) FROM model_examples WHERE mailbox = 'u0' AND label = 'spam'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(learnt, 1, "the model learnt u0's move");

    // Erin rescues her copy; another report of the campaign does not file
    // it again.
    assert_eq!(dovecot.imap_user("erin", &["move", "<erin@campaign>", "Spam", "INBOX"]).unwrap(), 1);
    eventually("the rescue seen", &dovecot, || agent.counters("erin").unblocked == 1);
    // Retro passes keep running (every two seconds): the rescued copy,
    // back in the inbox, is never among their candidates.
    assert!(
        !wait_until(Duration::from_secs(6), || !has(&dovecot, "erin", "INBOX", "erin@campaign")),
        "erin's rescued copy left the inbox"
    );
    assert!(has(&dovecot, "erin", "INBOX", "erin@campaign"), "a rescued message is never filed again");
    let in_erins_spam = dovecot.messages("erin", "Spam").map(|m| m.len()).unwrap_or(0);
    assert_eq!(in_erins_spam, 0, "nothing duplicated");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_learns_the_mail_users_already_had_over_imap() {
    let dovecot = Dovecot::start(&["alice", "bob"], DovecotOptions::default()).expect("dovecot");
    let node = Node::start().await.expect("node");
    let (spam, ham) = (testdata(true), testdata(false));
    dovecot.create_folder("alice", "Spam").expect("folder");
    dovecot.create_folder("bob", "Spam").expect("folder");
    // Alice sorts her spam out; Bob's spam folder is empty.
    for (i, (_, raw)) in spam.iter().take(6).enumerate() {
        let raw = with_message_id(raw, &format!("s{i}@history"));
        dovecot.append_old("alice", "Spam", &raw, "(\\Seen)", 10.0 - i as f64).expect("append");
    }
    for (i, (_, raw)) in ham.iter().take(4).enumerate() {
        let raw = with_message_id(raw, &format!("h{i}@history"));
        dovecot.append_old("alice", "INBOX", &raw, "(\\Seen)", 9.5 - i as f64).expect("append");
        dovecot.append_old("bob", "INBOX", &raw, "(\\Seen)", 9.5 - i as f64).expect("append");
    }
    // Unread, marked junk, or arrived an hour ago: none of them says ham.
    dovecot.append_old("alice", "INBOX", &with_message_id(&ham[5].1, "unread@history"), "", 3.0).expect("append");
    dovecot
        .append_old("alice", "INBOX", &with_message_id(&ham[6].1, "junk@history"), "(\\Seen $Junk)", 3.0)
        .expect("a");
    dovecot.append_old("alice", "INBOX", &with_message_id(&ham[7].1, "young@history"), "(\\Seen)", 0.04).expect("a");

    let dir = tempfile::tempdir().expect("tempdir");
    let agent = Agent::start(config(&dovecot, &node, dir.path(), &["alice", "bob"], ""), &node.credential);
    eventually("both mailboxes' existing mail looked at", &dovecot, || agent.events(732).len() == 2);
    let learnt = |mailbox: &str, source: &str| -> i64 {
        agent
            .db()
            .query_row(
                "SELECT count(*) FROM model_examples WHERE mailbox = ?1 AND source = ?2",
                rusqlite::params![mailbox, source],
                |r| r.get(0),
            )
            .expect("count")
    };
    assert_eq!(learnt("alice", "existing-spam"), 6, "alice's spam folder");
    assert_eq!(learnt("alice", "existing-ham"), 4, "alice's read, older mail only");
    assert_eq!(learnt("bob", "existing-ham") + learnt("bob", "existing-spam"), 0, "bob's inbox vouches for nothing");
    let text = agent.events(732).into_iter().find(|e| e.mailbox.as_deref() == Some("alice")).expect("alice's").text;
    assert!(text.contains("6 message(s) of the spam folder") && text.contains("4 read in the inbox"), "{text}");
    // Everything stayed where it was.
    assert_eq!(dovecot.messages("alice", "Spam").unwrap().len(), 6);
    assert_eq!(dovecot.messages("alice", "INBOX").unwrap().len(), 7);
    let inbox = dovecot.messages("alice", "INBOX").unwrap();
    let unread = inbox.iter().find(|m| m.message_id == "<unread@history>").expect("the unread message");
    assert!(!unread.flags.iter().any(|f| f.contains("Seen")), "looking marked nothing read: {:?}", unread.flags);
    agent.stop().await;
}
