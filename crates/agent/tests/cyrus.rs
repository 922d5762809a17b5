//! The agent against a second real IMAP server, Cyrus IMAP (Debian's
//! `cyrus-imapd`): an administrator logging in for each user with SASL
//! PLAIN's authorisation identity (`imap.auth = "sasl-plain"`), personal
//! folders below INBOX (Cyrus's default namespace refuses a top-level
//! `Spam`, so the agent makes `INBOX.Spam`), IDLE pushed by `idled`. Live
//! filing, a user's report by a real IMAP move, a rescan, and a rescue.

mod common;

use common::{Agent, ImapServer, WAIT, imap_config, message_id};
use starling_agent::state;
use starling_proto::v1::{Class, ReportClass};
use starling_testkit::cyrus::Cyrus;
use starling_testkit::{Node, testdata, wait_until, with_message_id};

const SPAM: &str = "INBOX.Spam";

/// Whether a user's folder holds the message with this Message-ID (with
/// its angle brackets).
fn has(cyrus: &Cyrus, user: &str, folder: &str, id: &str) -> bool {
    cyrus.message_ids(user, folder).is_ok_and(|ids| ids.iter().any(|i| i == id.trim_matches(['<', '>'])))
}

fn eventually(what: &str, cyrus: &Cyrus, condition: impl FnMut() -> bool) {
    assert!(wait_until(WAIT, condition), "timed out waiting for: {what}\nCyrus log:\n{}", cyrus.log());
}

/// Corpus spam the node does not know yet: one of the test spams
/// distinctive enough to be recognised once reported (as in feedback.rs).
fn unknown_spam(index: usize, id: &str) -> Vec<u8> {
    const DISTINCTIVE: [usize; 3] = [2, 4, 13];
    with_message_id(&testdata(true)[DISTINCTIVE[index]].1, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cyrus_files_live_learns_from_moves_and_rescans() {
    let cyrus = Cyrus::start(&["alice", "bob"]).expect("cyrus (cyrus-imapd, sasl2-bin; as root)");
    let node = Node::start().await.expect("node");
    let dir = tempfile::tempdir().expect("tempdir");
    let password_file = cyrus.password_file();
    let server = ImapServer { port: cyrus.imap_port, password_file: &password_file, auth: "sasl-plain" };
    // Retro-filing off, so that the rescan below is what files late spam.
    let config = imap_config(&server, &node, dir.path(), &["alice", "bob"], "[retro]\nenabled = false\n");
    let agent = Agent::start(config, &node.credential);
    for user in ["alice", "bob"] {
        agent.wait_seen(user, "INBOX", 0);
        agent.wait_seen(user, SPAM, 0);
    }
    let created: Vec<String> = agent.events(204).into_iter().map(|e| e.text).collect();
    assert!(created.iter().all(|d| d.contains("INBOX.Spam")) && created.len() == 2, "{created:?}");

    // Live: known spam is filed as it arrives, ham stays.
    let known = &unknown_spam(0, "known@spam");
    node.report(ReportClass::Spam, &[known]).await.expect("report");
    let ham = with_message_id(&testdata(false)[0].1, "ham-0@example.org");
    cyrus.lmtp_deliver("alice", known).expect("lmtp");
    cyrus.lmtp_deliver("alice", &ham).expect("lmtp");
    eventually("the spam filed", &cyrus, || has(&cyrus, "alice", SPAM, &message_id(known)));
    agent.wait_checked("alice", 2);
    assert!(has(&cyrus, "alice", "INBOX", "<ham-0@example.org>"), "ham stays");
    assert!(!has(&cyrus, "alice", "INBOX", &message_id(known)), "moved, not copied");
    assert_eq!(agent.counters("alice").blocked, 0, "the agent's own filing is not a user's report");

    // bob reports a campaign nobody knew by moving it with his mail client.
    let campaign = unknown_spam(1, "campaign@spam");
    assert_eq!(node.verdict(&campaign).await.unwrap(), Class::Clean);
    cyrus.lmtp_deliver("bob", &campaign).expect("lmtp");
    agent.wait_checked("bob", 1);
    assert_eq!(cyrus.imap_user("bob", &["move", "<campaign@spam>", "INBOX", SPAM]).unwrap(), 1);
    eventually("bob's report", &cyrus, || agent.counters("bob").blocked == 1);
    // Counted when recorded; sent to the network by the feedback task.
    let deadline = std::time::Instant::now() + WAIT;
    while node.verdict(&campaign).await.unwrap() != Class::Spam && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(node.verdict(&campaign).await.unwrap(), Class::Spam, "bob's report reached the network");

    // Spam unknown at delivery, known later: the rescan files it, and
    // leaves the rescued message alone.
    let late = unknown_spam(2, "late@spam");
    cyrus.lmtp_deliver("alice", &late).expect("lmtp");
    agent.wait_checked("alice", 3);
    assert!(has(&cyrus, "alice", "INBOX", "<late@spam>"), "unknown at delivery");
    node.report(ReportClass::Spam, &[&late]).await.expect("report");
    assert_eq!(node.verdict(&late).await.unwrap(), Class::Spam, "known now");
    let since = jiff::Timestamp::now().as_second() - 3600;
    let id = state::rescan_request(&agent.db(), "alice", since, "request").expect("rescan");
    eventually("the rescan", &cyrus, || {
        state::rescan(&agent.db(), id).unwrap().is_some_and(|r| r.status == state::RescanStatus::Done)
    });
    let row = state::rescan(&agent.db(), id).unwrap().unwrap();
    assert!(has(&cyrus, "alice", SPAM, "<late@spam>"), "the rescan filed what became known: {row:?}");
    assert!(has(&cyrus, "alice", "INBOX", "<ham-0@example.org>"));
    // alice rescues what was filed for her.
    assert_eq!(cyrus.imap_user("alice", &["move", &message_id(known), SPAM, "INBOX"]).unwrap(), 1);
    eventually("alice's rescue", &cyrus, || agent.counters("alice").unblocked == 1);
    assert!(!agent.events(701).is_empty(), "user_rescued");

    // A rescan after the rescue leaves it where alice put it.
    let id = state::rescan_request(&agent.db(), "alice", since, "request").expect("rescan");
    eventually("the second rescan", &cyrus, || {
        state::rescan(&agent.db(), id).unwrap().is_some_and(|r| r.status == state::RescanStatus::Done)
    });
    assert!(has(&cyrus, "alice", "INBOX", &message_id(known)), "a rescued message is not filed again");
    agent.stop().await;
}
