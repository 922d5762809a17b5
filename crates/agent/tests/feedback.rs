//! The collaborative loop against a real Dovecot and a real node: users
//! move mail with a real IMAP client (Python's imaplib), the agent reports
//! it, and the network protects other organisations; rescues, undoing,
//! Trash, `$Junk`, the feedback switches, and rescans.

mod common;

use common::{Agent, WAIT, config, eventually, ids};
use starling_agent::state;
use starling_proto::v1::{Class, ReportClass};
use starling_testkit::{Dovecot, DovecotOptions, Node, testdata, with_message_id};

/// Whether a folder holds the message with this Message-ID.
fn has(dovecot: &Dovecot, user: &str, folder: &str, id: &str) -> bool {
    dovecot.messages(user, folder).map(|m| ids(&m).iter().any(|i| i == &format!("<{id}>"))).unwrap_or(false)
}

/// A campaign's next wave: another Message-ID, another subject, another
/// greeting and tracking number, a word changed — the same campaign.
fn mutate(raw: &[u8], id: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(&with_message_id(raw, id)).into_owned();
    let (header, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let header: String = header
        .lines()
        .map(|line| {
            if line.to_ascii_lowercase().starts_with("subject:") {
                format!("{line} [ref 48213]")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let body = body.replacen(" the ", " this ", 1);
    format!("{header}\n\nHello Robert, your code is 55187.\n\n{body}").into_bytes()
}

/// Corpus spam the node does not know yet, with its own Message-ID: one of
/// the test spams distinctive enough to be recognised once reported (a
/// few are too short, or nothing but a link).
fn unknown_spam(index: usize, id: &str) -> Vec<u8> {
    const DISTINCTIVE: [usize; 10] = [1, 2, 3, 4, 5, 6, 7, 8, 11, 13];
    let spam = testdata(true);
    with_message_id(&spam[DISTINCTIVE[index % DISTINCTIVE.len()]].1, id)
}

fn ham(index: usize, id: &str) -> Vec<u8> {
    let ham = testdata(false);
    with_message_id(&ham[index % ham.len()].1, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_at_one_organisation_protects_another_and_a_rescue_there_unblocks() {
    let dovecot = Dovecot::start(&["alice", "bob", "carol"], DovecotOptions::default()).expect("dovecot");
    let node = Node::start().await.expect("node");
    let credential_b = node.add_organisation("b").await.expect("organisation b");
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let agent_a = Agent::start(config(&dovecot, &node, dir_a.path(), &["alice"], ""), &node.credential);
    let agent_b = Agent::start(config(&dovecot, &node, dir_b.path(), &["bob", "carol"], ""), &credential_b);

    // A campaign nobody reported reaches alice (organisation A): left alone.
    let campaign = unknown_spam(2, "wave-1@campaign");
    let next_wave = mutate(&campaign, "wave-2@campaign");
    assert_eq!(node.verdict(&campaign).await.unwrap(), Class::Clean, "the campaign is new");
    dovecot.lmtp_deliver("alice", &campaign).expect("lmtp");
    agent_a.wait_checked("alice", 1);
    assert!(has(&dovecot, "alice", "INBOX", "wave-1@campaign"));

    // Alice drags it into Spam with her mail client.
    assert_eq!(dovecot.imap_user("alice", &["move", "<wave-1@campaign>", "INBOX", "Spam"]).unwrap(), 1);
    assert!(
        node.verdict_becomes(&next_wave, Class::Spam, WAIT).await,
        "alice's report blocks the campaign's next wave"
    );
    eventually("blocked counted", &dovecot, || agent_a.counters("alice").blocked == 1);
    assert!(!agent_a.events(700).is_empty(), "user_reported_spam event");

    // The next wave reaches bob (organisation B): filed automatically.
    dovecot.lmtp_deliver("bob", &next_wave).expect("lmtp");
    eventually("the mutated copy filed at B", &dovecot, || has(&dovecot, "bob", "Spam", "wave-2@campaign"));
    // B's agent filed it; that is not a report of bob's.
    agent_b.wait_seen("bob", "Spam", 1);
    assert_eq!(agent_b.counters("bob").blocked, 0, "the agent's own move is not a user's report");

    // A false positive: a newsletter someone reported as spam reaches
    // carol (B) and is filed; carol rescues it.
    let newsletter = ham(1, "newsletter-1@example.org");
    node.report(ReportClass::Spam, &[&newsletter]).await.expect("report");
    assert_eq!(node.verdict(&newsletter).await.unwrap(), Class::Spam);
    dovecot.lmtp_deliver("carol", &newsletter).expect("lmtp");
    eventually("the false positive filed", &dovecot, || has(&dovecot, "carol", "Spam", "newsletter-1@example.org"));
    assert_eq!(dovecot.imap_user("carol", &["move", "<newsletter-1@example.org>", "Spam", "INBOX"]).unwrap(), 1);
    let next_issue = ham(1, "newsletter-2@example.org");
    assert!(node.verdict_becomes(&next_issue, Class::Clean, WAIT).await, "carol's rescue unblocks it for everyone");
    eventually("unblocked counted", &dovecot, || agent_b.counters("carol").unblocked == 1);
    assert!(!agent_b.events(701).is_empty(), "user_rescued event");

    // The rescued message stays in carol's inbox: never filed again.
    dovecot.lmtp_deliver("carol", &ham(2, "later@example.org")).expect("lmtp");
    agent_b.wait_checked("carol", 2);
    assert!(has(&dovecot, "carol", "INBOX", "newsletter-1@example.org"), "a rescued message is not filed again");

    // And the next issue reaches alice at A untouched.
    let checked = agent_a.counters("alice").checked;
    dovecot.lmtp_deliver("alice", &next_issue).expect("lmtp");
    agent_a.wait_checked("alice", checked + 1);
    assert!(has(&dovecot, "alice", "INBOX", "newsletter-2@example.org"), "unblocked for organisation A");

    agent_a.stop().await;
    agent_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_count_once_undo_revokes_trash_is_silent_and_keywords_count() {
    let dovecot = Dovecot::start(&["alice", "bob"], DovecotOptions::default()).expect("dovecot");
    let node = Node::start().await.expect("node");
    dovecot.create_folder("alice", "Archive").expect("folder");
    dovecot.create_folder("alice", "Trash").expect("folder");
    let dir = tempfile::tempdir().expect("tempdir");
    // bob does not take part in feedback (set before the first start, as
    // `starling users feedback off bob` can).
    let db = state::open(&dir.path().join(state::FILE_NAME)).expect("state");
    assert!(state::add_mailbox(&db, "bob", true, "cli").unwrap());
    assert!(state::set_feedback(&db, "bob", false).unwrap());
    dovecot.create_folder("bob", "Spam").expect("folder");
    let agent = Agent::start(config(&dovecot, &node, dir.path(), &["alice", "bob"], ""), &node.credential);

    let x = unknown_spam(3, "x@spam");
    let y = unknown_spam(4, "y@spam");
    let z = unknown_spam(5, "z@spam");
    let w = unknown_spam(6, "w@spam");
    // Two copies of x (the same message delivered twice).
    for raw in [&x, &x, &y, &z] {
        dovecot.lmtp_deliver("alice", raw).expect("lmtp");
    }
    dovecot.lmtp_deliver("bob", &w).expect("lmtp");
    agent.wait_checked("alice", 4);
    agent.wait_checked("bob", 1);

    // Both copies into Spam: one report.
    assert_eq!(dovecot.imap_user("alice", &["move", "<x@spam>", "INBOX", "Spam"]).unwrap(), 2);
    assert!(node.verdict_becomes(&x, Class::Spam, WAIT).await);
    // Into Trash: nothing is reported.
    assert_eq!(dovecot.imap_user("alice", &["move", "<y@spam>", "INBOX", "Trash"]).unwrap(), 1);
    // A client marking z as junk reports it like a move.
    assert_eq!(dovecot.imap_user("alice", &["keyword", "<z@spam>", "INBOX", "$Junk"]).unwrap(), 1);
    assert!(node.verdict_becomes(&z, Class::Spam, WAIT).await, "$Junk reports");
    // bob's move is not reported: his feedback is off, so his spam folder
    // is not even watched.
    assert_eq!(dovecot.imap_user("bob", &["move", "<w@spam>", "INBOX", "Spam"]).unwrap(), 1);
    assert_eq!(state::cursor(&agent.db(), "bob", "Spam").unwrap(), None, "bob's spam folder is not watched");
    assert_eq!(node.verdict(&y).await.unwrap(), Class::Clean, "Trash is not a report");
    assert_eq!(node.verdict(&w).await.unwrap(), Class::Clean, "feedback off: nothing leaves the agent");
    assert_eq!(agent.counters("alice").blocked, 2, "x once (two copies), z once");
    assert_eq!(agent.counters("bob").blocked, 0);

    // alice changes her mind about x: back to the inbox withdraws the report,
    // and the agent leaves it there.
    assert_eq!(dovecot.imap_user("alice", &["move", "<x@spam>", "Spam", "INBOX"]).unwrap(), 2);
    assert!(node.verdict_becomes(&x, Class::Clean, WAIT).await, "undo revokes the report");
    assert!(!agent.events(702).is_empty(), "user_undid_report event");
    assert_eq!(dovecot.messages("alice", "INBOX").unwrap().iter().filter(|m| m.message_id == "<x@spam>").count(), 2);

    // A message the agent filed and alice moves to another folder (not the
    // inbox) is a rescue too.
    let known = unknown_spam(7, "known@spam");
    node.report(ReportClass::Spam, &[&known]).await.expect("report");
    dovecot.lmtp_deliver("alice", &known).expect("lmtp");
    eventually("filed", &dovecot, || has(&dovecot, "alice", "Spam", "known@spam"));
    // A person takes a moment to notice: the agent has seen it in Spam (two
    // copies of x came before it). A message that comes and goes within the
    // server's notification delay (Dovecot: 0.5 s) is never seen there.
    agent.wait_seen("alice", "Spam", 3);
    assert_eq!(dovecot.imap_user("alice", &["move", "<known@spam>", "Spam", "Archive"]).unwrap(), 1);
    eventually("rescued from Spam to Archive", &dovecot, || agent.counters("alice").unblocked == 1);
    agent.stop().await;
}

/// Where the server has IMAP NOTIFY, a spam folder in which nothing happens
/// needs no session of its own: the inbox's session is told of changes
/// there, and a user's move into it, or out of it, while it had no session
/// is reported as with one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_spam_folder_is_watched_through_the_inbox_session() {
    let dovecot = Dovecot::start(&["alice"], DovecotOptions::default()).expect("dovecot");
    let node = Node::start().await.expect("node");
    dovecot.create_folder("alice", "Archive").expect("folder");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(&dovecot, &node, dir.path(), &["alice"], "");
    config.imap.spam_session_quiet_seconds = 2;
    let agent = Agent::start(config, &node.credential);

    // A spam the network knows is filed; a campaign it does not know stays.
    let known = unknown_spam(7, "known@spam");
    node.report(ReportClass::Spam, &[&known]).await.expect("report");
    let campaign = unknown_spam(2, "campaign@spam");
    dovecot.lmtp_deliver("alice", &campaign).expect("lmtp");
    dovecot.lmtp_deliver("alice", &known).expect("lmtp");
    eventually("filed", &dovecot, || has(&dovecot, "alice", "Spam", "known@spam"));
    agent.wait_seen("alice", "Spam", 1);
    eventually("the spam folder's session closed", &dovecot, || dovecot.sessions("alice") == 1);

    // Alice drags the campaign into the quiet spam folder: reported (the
    // spam task looks again on its own only after 15 minutes).
    assert_eq!(dovecot.imap_user("alice", &["move", "<campaign@spam>", "INBOX", "Spam"]).unwrap(), 1);
    assert!(node.verdict_becomes(&campaign, Class::Spam, WAIT).await, "a move into a quiet spam folder reports");
    eventually("reported once", &dovecot, || agent.counters("alice").blocked == 1);
    eventually("quiet again", &dovecot, || dovecot.sessions("alice") == 1);

    // She takes the filed message out to Archive while nothing watches the
    // folder with a session: it is missed there, so it was rescued.
    assert_eq!(dovecot.imap_user("alice", &["move", "<known@spam>", "Spam", "Archive"]).unwrap(), 1);
    eventually("rescued from a quiet spam folder", &dovecot, || agent.counters("alice").unblocked == 1);
    assert_eq!(agent.counters("alice").blocked, 1, "nothing reported twice");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescan_files_what_became_spam_after_delivery_but_never_a_rescued_message() {
    let dovecot = Dovecot::start(&["dave"], DovecotOptions::default()).expect("dovecot");
    let node = Node::start().await.expect("node");
    let dir = tempfile::tempdir().expect("tempdir");
    // Feedback off: the rescue below does not unblock the message, so only
    // the rescue itself keeps the rescan from filing it again.
    let agent = Agent::start(
        config(&dovecot, &node, dir.path(), &["dave"], "[feedback]\nenabled = false\n[retro]\nenabled = false\n"),
        &node.credential,
    );
    let known = unknown_spam(8, "known@spam");
    node.report(ReportClass::Spam, &[&known]).await.expect("report");
    let late = unknown_spam(9, "late@spam");
    dovecot.lmtp_deliver("dave", &known).expect("lmtp");
    dovecot.lmtp_deliver("dave", &late).expect("lmtp");
    for i in 0..3 {
        dovecot.lmtp_deliver("dave", &ham(i, &format!("ham-{i}@example.org"))).expect("lmtp");
    }
    eventually("known spam filed", &dovecot, || has(&dovecot, "dave", "Spam", "known@spam"));
    agent.wait_checked("dave", 5);
    assert!(has(&dovecot, "dave", "INBOX", "late@spam"), "unknown at delivery");
    // dave rescues the known one; then the campaign of the late one is
    // reported (by another organisation's users, say).
    assert_eq!(dovecot.imap_user("dave", &["move", "<known@spam>", "Spam", "INBOX"]).unwrap(), 1);
    eventually("rescue recognised", &dovecot, || agent.counters("dave").unblocked == 1);
    node.report(ReportClass::Spam, &[&late]).await.expect("report");
    assert_eq!(node.verdict(&known).await.unwrap(), Class::Spam, "feedback off: still spam for the network");

    // The rescan asked for by the administrator (as `starling rescan` does).
    let since = jiff::Timestamp::now().as_second() - 3600;
    let id = state::rescan_request(&agent.db(), "dave", since, "request").unwrap();
    eventually("rescan done", &dovecot, || {
        state::rescan(&agent.db(), id).unwrap().is_some_and(|r| r.status == state::RescanStatus::Done)
    });
    let row = state::rescan(&agent.db(), id).unwrap().unwrap();
    assert_eq!((row.total, row.checked, row.filed), (5, 5, 1), "{row:?}");
    assert!(has(&dovecot, "dave", "Spam", "late@spam"), "the rescan filed what became known");
    assert!(has(&dovecot, "dave", "INBOX", "known@spam"), "a rescued message is never filed again");
    assert_eq!(dovecot.messages("dave", "INBOX").unwrap().len(), 4);
    let counters = agent.counters("dave");
    assert_eq!((counters.rescanned, counters.rescan_filed), (4, 1), "{counters:?}");
    assert!(!agent.events(710).is_empty() && !agent.events(711).is_empty(), "rescan started and finished events");

    // A rescan of a mailbox the agent does not watch fails clearly.
    let id = state::rescan_request(&agent.db(), "nobody", since, "request").unwrap();
    eventually("rescan refused", &dovecot, || {
        state::rescan(&agent.db(), id).unwrap().is_some_and(|r| r.status == state::RescanStatus::Failed)
    });
    assert!(!agent.events(712).is_empty());
    agent.stop().await;
}
