//! The agent on local Maildir++ directories with a real network node:
//! users found under the root, live filing through inotify, tagging,
//! whitelists, and rescans when notifications are lost.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use starling_agent::{AgentConfig, state};
use starling_proto::v1::{Class, ReportClass};
use starling_testkit::{Node, testdata, wait_until, with_message_id};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
}

fn setup(users: &[&str]) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("mail");
    for user in users {
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(root.join(user).join(sub)).expect("maildir");
        }
    }
    let state = dir.path().join("state");
    Setup { root, state, _dir: dir }
}

fn config(setup: &Setup, node: &Node, extra: &str) -> AgentConfig {
    let text = format!(
        "state_dir = {:?}\nmail_store = \"maildir\"\n\n[maildir]\nroot = {:?}\n\n[network]\nurl = {:?}\n\n{extra}",
        setup.state.display().to_string(),
        setup.root.display().to_string(),
        node.url
    );
    AgentConfig::from_toml(&text).unwrap_or_else(|p| panic!("{p:?}"))
}

/// Delivers as an MDA does: write to `tmp/`, rename into `new/`.
fn deliver(maildir: &Path, name: &str, raw: &[u8]) {
    let tmp = maildir.join("tmp").join(name);
    std::fs::write(&tmp, raw).expect("write");
    std::fs::rename(&tmp, maildir.join("new").join(name)).expect("rename");
}

fn count(folder: &Path) -> usize {
    ["new", "cur"].iter().map(|s| std::fs::read_dir(folder.join(s)).map(|d| d.count()).unwrap_or(0)).sum()
}

fn subjects(folder: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        for entry in std::fs::read_dir(folder.join(sub)).into_iter().flatten().flatten() {
            let raw = std::fs::read(entry.path()).expect("read");
            let facts = starling_agent::facts::Facts::from_message(&raw, 0);
            out.push(facts.subject.unwrap_or_default());
        }
    }
    out
}

async fn known_spam(node: &Node) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut spam = Vec::new();
    for (_, raw) in testdata(true) {
        node.report(ReportClass::Spam, &[&raw]).await.expect("report");
        if node.verdict(&raw).await.expect("check") == Class::Spam {
            spam.push(raw);
        }
    }
    (spam, testdata(false).into_iter().map(|(_, raw)| raw).collect())
}

fn start(config: AgentConfig, node: &Node) -> (CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
    start_with_live(config, node, Arc::default())
}

/// The same, with the live view the test reads.
fn start_with_live(
    config: AgentConfig,
    node: &Node,
    live: Arc<starling_agent::live::Live>,
) -> (CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let stop = CancellationToken::new();
    let options = starling_agent::Options { credential: Some(node.credential.clone()), live, ..Default::default() };
    (stop.clone(), tokio::spawn(starling_agent::run(config, options, stop)))
}

async fn finish(stop: CancellationToken, task: tokio::task::JoinHandle<anyhow::Result<()>>) {
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(20), task).await.expect("stops").expect("task").expect("no error");
}

/// Waits until a mailbox's task has caught up and watches its inbox (it
/// records its cursor then, at a time after `after`, Unix seconds).
fn wait_watching(state_dir: &Path, mailbox: &str, after: i64) {
    let watched = || cursor_updated(state_dir, mailbox).is_some_and(|at| at > after);
    assert!(wait_until(WAIT, watched), "{mailbox} watched");
}

/// When a mailbox's inbox cursor was last written (Unix seconds).
fn cursor_updated(state_dir: &Path, mailbox: &str) -> Option<i64> {
    let c = state::open(&state_dir.join("state.sqlite3")).ok()?;
    c.query_row("SELECT updated FROM cursors WHERE mailbox = ?1 AND folder = 'INBOX'", [mailbox], |row| {
        row.get::<_, i64>(0)
    })
    .ok()
}

fn events(state_dir: &Path, id: u16) -> usize {
    let Ok(c) = state::open(&state_dir.join("state.sqlite3")) else { return 0 };
    state::events(&c, 0, Some(id), 1000).map(|e| e.len()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_live_tags_and_whitelists_in_maildirs_found_under_the_root() {
    let setup = setup(&["ann", "ben"]);
    let node = Node::start().await.expect("node");
    let (spam, ham) = known_spam(&node).await;
    // The first spam's sender is whitelisted server-wide.
    let sender = starling_agent::facts::Facts::from_message(&spam[0], 3).senders[0].clone();
    let extra = format!("[whitelist]\nentries = [{sender:?}]\n\n[users]\nsource = \"maildir\"\nlist = []\n");
    let (stop, task) = start(config(&setup, &node, &extra), &node);
    let ann = setup.root.join("ann");
    let ben = setup.root.join("ben");
    assert!(wait_until(WAIT, || events(&setup.state, 600) == 2), "both mailboxes found");
    for (i, raw) in spam.iter().chain(&ham).enumerate() {
        deliver(&ann, &format!("1700000000.M{i}P1.test"), &with_message_id(raw, &format!("ann-{i}@test")));
        deliver(&ben, &format!("1700000000.M{i}P1.test"), &with_message_id(raw, &format!("ben-{i}@test")));
    }
    let moved = spam.len() - 1;
    assert!(
        wait_until(WAIT, || count(&ann.join(".Spam")) == moved && count(&ben.join(".Spam")) == moved),
        "spam moved for both users found under the root: ann {} ben {}",
        count(&ann.join(".Spam")),
        count(&ben.join(".Spam"))
    );
    assert_eq!(count(&ann), ham.len() + 1, "ham and the whitelisted spam stay");
    let c = state::open(&setup.state.join("state.sqlite3")).expect("state");
    let names: Vec<String> = state::mailboxes(&c).expect("mailboxes").into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["ann", "ben"]);
    // Disabling a user (as `starling users disable` does) stops filtering
    // their mail at once (the agent says so: its task and watches are gone
    // then); ann's is still filtered.
    assert!(state::set_enabled(&c, "ben", false).expect("disable"));
    assert!(wait_until(WAIT, || events(&setup.state, 603) == 1), "ben is no longer filtered");
    deliver(&ben, "1700000002.M1P1.off", &with_message_id(&spam[1], "ben-off@test"));
    deliver(&ann, "1700000002.M1P1.on", &with_message_id(&spam[1], "ann-on@test"));
    assert!(wait_until(WAIT, || count(&ann.join(".Spam")) == moved + 1), "ann's spam still filed");
    assert_eq!(count(&ben.join(".Spam")), moved, "ben's new spam is left alone");
    assert!(ben.join("new/1700000002.M1P1.off").exists());
    finish(stop, task).await;

    // The tag action rewrites in place, once, and a restart does not tag again.
    let tag_setup = setup_with_state(&setup, "state-tag");
    let extra = "[policy]\nspam_action = \"tag\"\n[users]\nsource = \"list\"\nlist = [\"ann\"]\n";
    let mut config = config(&tag_setup, &node, extra);
    config.scan.first_scan_hours = 0;
    let (stop, task) = start(config.clone(), &node);
    wait_watching(&tag_setup.state, "ann", 0);
    deliver(&ann, "1700000001.M1P1.tag", &with_message_id(&spam[1], "tag-1@test"));
    assert!(
        wait_until(WAIT, || subjects(&ann).iter().filter(|s| s.starts_with("[SPAM]")).count() == 1),
        "tagged: {:?}",
        subjects(&ann)
    );
    finish(stop, task).await;
    // The restart has caught up (and finished any interrupted tag) once it
    // writes its cursor again: mark the old one to tell them apart.
    state::open(&tag_setup.state.join("state.sqlite3"))
        .expect("state")
        .execute("UPDATE cursors SET updated = 0", [])
        .expect("mark");
    let (stop, task) = start(config, &node);
    wait_watching(&tag_setup.state, "ann", 0);
    finish(stop, task).await;
    let tagged: Vec<String> = subjects(&ann).into_iter().filter(|s| s.starts_with("[SPAM]")).collect();
    assert_eq!(tagged.len(), 1, "{tagged:?}");
    assert!(!tagged[0].starts_with("[SPAM] [SPAM]"), "tagged once: {tagged:?}");
    assert_eq!(count(&ann), ham.len() + 2, "the tagged message replaced its original");
}

fn setup_with_state(setup: &Setup, name: &str) -> Setup {
    Setup {
        _dir: tempfile::tempdir().expect("tempdir"),
        root: setup.root.clone(),
        state: setup.state.with_file_name(name),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_filed_completely_even_when_notifications_are_lost() {
    const COUNT: usize = 20_000;
    let setup = setup(&["flood"]);
    let node = Node::start().await.expect("node");
    let (spam, ham) = known_spam(&node).await;
    let (stop, task) = start(config(&setup, &node, ""), &node);
    let flood = setup.root.join("flood");
    assert!(wait_until(WAIT, || events(&setup.state, 600) == 1), "the mailbox found");
    // More deliveries, as fast as possible, than the agent's queues hold and
    // than the kernel queues (fs.inotify.max_queued_events, 16384 by
    // default): notifications are lost, and the rescan that follows finds
    // every message.
    let pool: Vec<&Vec<u8>> = spam.iter().chain(&ham).collect();
    let copies: Vec<Vec<u8>> =
        pool.iter().enumerate().map(|(i, raw)| with_message_id(raw, &format!("flood-{i}@test"))).collect();
    let spam_count = (0..COUNT).filter(|i| i % pool.len() < spam.len()).count();
    for i in 0..COUNT {
        deliver(&flood, &format!("1700000000.M{i}P1.flood"), &copies[i % copies.len()]);
    }
    let checked = || {
        let Ok(c) = state::open(&setup.state.join("state.sqlite3")) else { return 0 };
        state::hourly(&c, 0, None).map(|rows| rows.iter().map(|(_, _, n)| n.checked as usize).sum()).unwrap_or(0)
    };
    // (A rescan may check a message twice: count checks, then files.)
    let all_filed = || checked() >= COUNT && count(&flood.join(".Spam")) == spam_count;
    assert!(wait_until(Duration::from_secs(300), all_filed), "every message checked: {}", checked());
    assert_eq!(count(&flood.join(".Spam")), spam_count, "every spam filed");
    assert_eq!(count(&flood), COUNT - spam_count, "every ham in place");
    // Whether the kernel's queue overflowed depends on the machine's speed;
    // either way nothing was missed.
    eprintln!("watch_overflow events: {}", events(&setup.state, 206));
    finish(stop, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_written_in_place_is_judged_when_complete() {
    let setup = setup(&["slow"]);
    let node = Node::start().await.expect("node");
    let (spam, ham) = known_spam(&node).await;
    let (stop, task) = start(config(&setup, &node, ""), &node);
    let slow = setup.root.join("slow");
    wait_watching(&setup.state, "slow", 0);
    // Not the Maildir way (write in tmp/, rename into new/), but some tools
    // do it: the file is seen empty, then half-written, then complete. Seen
    // empty it must not be taken for an empty message (which is spam).
    write_slowly(&slow.join("new/1700000003.M1P1.ham"), &with_message_id(&ham[0], "slow-ham@test")).await;
    // An empty file, created and closed, is not a message: never filed.
    std::fs::File::create(slow.join("new/1700000003.M3P1.empty")).expect("create");
    write_slowly(&slow.join("new/1700000003.M2P1.spam"), &with_message_id(&spam[0], "slow-spam@test")).await;
    // One task handles a mailbox's notifications in order: once the spam
    // (written last) is filed, the ham and the empty file were judged.
    assert!(wait_until(WAIT, || count(&slow.join(".Spam")) == 1), "the complete spam was judged and filed");
    assert!(slow.join("new/1700000003.M1P1.ham").exists(), "the ham is left alone");
    assert!(slow.join("new/1700000003.M3P1.empty").exists(), "the empty file is left alone");
    assert_eq!(count(&slow.join(".Spam")), 1);
    finish(stop, task).await;
}

async fn write_slowly(path: &Path, raw: &[u8]) {
    use std::io::Write as _;
    let (head, tail) = raw.split_at(raw.len() / 2);
    let mut file = std::fs::File::create(path).expect("create");
    tokio::time::sleep(Duration::from_millis(300)).await;
    file.write_all(head).expect("write");
    file.flush().expect("flush");
    tokio::time::sleep(Duration::from_millis(300)).await;
    file.write_all(tail).expect("write");
}

/// The path of the message with this Message-ID in a Maildir folder.
fn find(folder: &Path, id: &str) -> Option<PathBuf> {
    for sub in ["new", "cur"] {
        for entry in std::fs::read_dir(folder.join(sub)).into_iter().flatten().flatten() {
            let raw = std::fs::read(entry.path()).unwrap_or_default();
            if starling_agent::facts::Facts::from_message(&raw, 0).message_id.as_deref() == Some(id) {
                return Some(entry.path());
            }
        }
    }
    None
}

/// Moves a message file to another folder's `cur/` as a mail client (or
/// Dovecot) does: a rename, with flags.
fn user_moves(from: &Path, to: &Path) {
    let name = from.file_name().unwrap().to_str().unwrap();
    let unique = name.split(':').next().unwrap();
    std::fs::rename(from, to.join("cur").join(format!("{unique}:2,S"))).expect("move");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_moves_between_maildir_folders_are_reported() {
    let setup = setup(&["ann"]);
    let ann = setup.root.join("ann");
    for folder in [".Spam", ".Archive"] {
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(ann.join(folder).join(sub)).expect("folder");
        }
    }
    let node = Node::start().await.expect("node");
    let extra = "[users]\nsource = \"maildir\"\nlist = []\n";
    let (stop, task) = start(config(&setup, &node, extra), &node);
    assert!(wait_until(WAIT, || events(&setup.state, 600) == 1), "mailbox found");
    let counters = || {
        let Ok(c) = state::open(&setup.state.join("state.sqlite3")) else { return state::Counters::default() };
        let mut total = state::Counters::default();
        for (_, _, counters) in state::hourly(&c, 0, Some("ann")).unwrap_or_default() {
            total.add(&counters);
        }
        total
    };
    // Not known at delivery: left in the inbox.
    let spam = testdata(true);
    let unknown = with_message_id(&spam[2].1, "unknown@spam");
    deliver(&ann, "1700000001.M1P1.test", &unknown);
    assert!(wait_until(WAIT, || counters().checked == 1), "checked");
    // ann files it into Spam: a report, and the campaign is blocked.
    user_moves(&find(&ann, "unknown@spam").expect("in the inbox"), &ann.join(".Spam"));
    let copy = with_message_id(&spam[2].1, "unknown-2@spam");
    assert!(node.verdict_becomes(&copy, Class::Spam, WAIT).await, "ann's move is reported");
    assert_eq!(counters().blocked, 1);
    // A known spam is filed; ann takes it back to her inbox: a rescue, and
    // the agent leaves it there.
    let known = with_message_id(&spam[3].1, "known@spam");
    node.report(ReportClass::Spam, &[&known]).await.expect("report");
    deliver(&ann, "1700000002.M2P1.test", &known);
    // The agent records where it filed a message once the move is done.
    let filed_to = || {
        let c = state::open(&setup.state.join("state.sqlite3")).ok()?;
        c.query_row("SELECT folder FROM filed WHERE message_id = 'known@spam'", [], |row| row.get::<_, String>(0)).ok()
    };
    assert!(wait_until(WAIT, || filed_to().is_some_and(|f| !f.is_empty())), "filed");
    user_moves(&find(&ann.join(".Spam"), "known@spam").unwrap(), &ann);
    // Recognised as a rescue, it is left where it is in the same pass.
    assert!(wait_until(WAIT, || counters().unblocked == 1), "the rescue is recognised");
    assert!(find(&ann, "known@spam").is_some(), "a rescued message stays in the inbox");
    assert!(find(&ann.join(".Spam"), "known@spam").is_none());
    finish(stop, task).await;
}

/// On a shared network (its default trust: one fresh reporter blocks
/// nothing for everybody), a user's report still files the colleagues'
/// copies at once: the organisation's own reports decide for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_shared_network_a_users_report_files_the_colleagues_copies() {
    let setup = setup(&["ann", "ben"]);
    let (ann, ben) = (setup.root.join("ann"), setup.root.join("ben"));
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(ann.join(".Spam").join(sub)).expect("folder");
    }
    let node = Node::start_shared().await.expect("node");
    let extra = "[users]\nsource = \"maildir\"\nlist = []\n";
    let (stop, task) = start(config(&setup, &node, extra), &node);
    assert!(wait_until(WAIT, || events(&setup.state, 600) == 2), "mailboxes found");
    let checked = |name: &str| {
        let Ok(c) = state::open(&setup.state.join("state.sqlite3")) else { return 0 };
        state::hourly(&c, 0, Some(name)).map(|rows| rows.iter().map(|r| r.2.checked).sum::<u32>()).unwrap_or(0)
    };
    let spam = testdata(true);
    deliver(&ann, "1700000001.M1P1.test", &with_message_id(&spam[2].1, "ann@campaign"));
    deliver(&ben, "1700000001.M1P1.test", &with_message_id(&spam[2].1, "ben@campaign"));
    assert!(wait_until(WAIT, || checked("ann") == 1 && checked("ben") == 1), "both checked");
    assert!(find(&ben, "ben@campaign").is_some(), "unknown: left in the inbox");
    user_moves(&find(&ann, "ann@campaign").expect("in the inbox"), &ann.join(".Spam"));
    assert!(
        wait_until(WAIT, || find(&ben.join(".Spam"), "ben@campaign").is_some()),
        "ben's copy is filed after ann's report"
    );
    assert!(find(&ben, "ben@campaign").is_none(), "and only once");
    // For everybody else, one fresh reporter is not enough.
    let other = node.add_organisation("other").await.expect("org");
    let copy = with_message_id(&spam[2].1, "other@campaign");
    assert_eq!(node.verdict_as(&other, &copy).await.expect("check"), Class::Clean);
    finish(stop, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_setting_applies_without_a_restart() {
    let setup = setup(&["eve"]);
    let node = Node::start().await.expect("node");
    let (spam, _) = known_spam(&node).await;
    let extra = "[users]\nsource = \"maildir\"\n";
    let (stop, task) = start(config(&setup, &node, extra), &node);
    let eve = setup.root.join("eve");
    wait_watching(&setup.state, "eve", 0);
    deliver(&eve, "1.test", &with_message_id(&spam[0], "first@live-setting"));
    assert!(wait_until(WAIT, || count(&eve.join(".Spam")) == 1), "filed into the spam folder");

    // The console (or `starling settings set`) stores a new action; the
    // running task takes it (event 502 says so once it has).
    let c = state::open(&setup.state.join("state.sqlite3")).expect("db");
    state::setting_put(&c, "policy.spam_action", Some(&serde_json::json!("tag")), "test").expect("setting");
    assert!(wait_until(WAIT, || events(&setup.state, 502) > 0), "the agent took the change");
    deliver(&eve, "2.test", &with_message_id(&spam[1], "second@live-setting"));
    assert!(
        wait_until(WAIT, || subjects(&eve).iter().any(|s| s.starts_with("[SPAM]"))),
        "tagged in place: {:?}",
        subjects(&eve)
    );
    assert_eq!(count(&eve.join(".Spam")), 1, "the second was not moved");
    finish(stop, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_statistics_older_than_kept_are_forgotten_and_totals_stay() {
    let setup = setup(&["eve"]);
    let node = Node::start().await.expect("node");
    let now = jiff::Timestamp::now().as_second().div_euclid(3600) * 3600;
    let (old, recent) = (now - 45 * 86_400, now - 3600);
    {
        std::fs::create_dir_all(&setup.state).expect("state dir");
        let mut c = state::open(&setup.state.join("state.sqlite3")).expect("db");
        let mut batch = std::collections::BTreeMap::new();
        for hour in [old, old + 3600, recent] {
            batch.insert((hour, "eve".to_owned()), state::Counters { checked: 3, spam: 1, ..Default::default() });
        }
        state::record_batch(&mut c, &batch).expect("counters");
    }
    // Kept 40 days by default: the two hours of 45 days ago go at start.
    let (stop, task) = start(config(&setup, &node, "[users]\nsource = \"maildir\"\n"), &node);
    let hours = || {
        let c = state::open(&setup.state.join("state.sqlite3")).expect("db");
        state::hourly(&c, 0, Some("eve")).expect("hourly").into_iter().map(|(hour, _, _)| hour).collect::<Vec<_>>()
    };
    assert!(wait_until(WAIT, || hours() == [recent]), "old hours forgotten: {:?}", hours());
    let c = state::open(&setup.state.join("state.sqlite3")).expect("db");
    let totals = state::hourly_totals(&c, old, now + 3600).expect("totals");
    assert_eq!(totals.iter().map(|(hour, _)| *hour).collect::<Vec<_>>(), [old, old + 3600, recent]);
    assert!(totals.iter().all(|(_, n)| n.checked == 3));
    finish(stop, task).await;
}

/// The local model files spam the network knows nothing of, in every
/// mailbox but one whose model switch is off (`starling users model off`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_model_files_unknown_spam_except_where_it_is_switched_off() {
    use starling_agent::facts::header_tokens;
    use starling_fingerprint::{Fingerprinter, Key};

    let setup = setup(&["alice", "bob"]);
    let node = Node::start().await.expect("node");
    // What users' moves taught the model before this start (it is rebuilt
    // from the stored examples): 300 ham, enough for a calibrated
    // threshold (200 ham scores after the first 50).
    std::fs::create_dir_all(&setup.state).expect("state dir");
    let c = state::open(&setup.state.join("state.sqlite3")).expect("db");
    let fingerprinter = Fingerprinter::new(&Key::DEVELOPMENT);
    let (spam, ham) = (testdata(true), testdata(false));
    let mut examples = 0;
    for round in 0..30 {
        for (label, raw) in ham.iter().map(|m| ("ham", &m.1)).chain(spam.iter().map(|m| ("spam", &m.1))) {
            let raw = with_message_id(raw, &format!("{round}@examples"));
            let (_, text) = fingerprinter.fingerprint_with_words(&raw);
            let features = starling_agent::learning::features(&text, &header_tokens(&raw)).to_bytes();
            examples += 1;
            c.execute(
                "INSERT INTO model_examples (mailbox, key, label, source, features, at) VALUES ('carol', ?1, ?2, ?3, ?4, 0)",
                rusqlite::params![format!("k{examples}"), label, format!("user-{label}"), features],
            )
            .expect("example");
        }
    }
    assert!(state::add_mailbox(&c, "bob", true, "maildir").expect("bob"));
    assert!(state::set_model(&c, "bob", false).expect("bob's switch"));

    let extra = "[users]\nsource = \"maildir\"\n";
    let (stop, task) = start(config(&setup, &node, extra), &node);
    wait_watching(&setup.state, "alice", 0);
    wait_watching(&setup.state, "bob", 0);
    // A spam the network was never told of.
    let (alice, bob) = (setup.root.join("alice"), setup.root.join("bob"));
    assert_eq!(node.verdict(&spam[0].1).await.expect("check"), Class::Clean, "unknown to the network");
    deliver(&alice, "1.test", &with_message_id(&spam[0].1, "a@model-switch"));
    deliver(&bob, "1.test", &with_message_id(&spam[0].1, "b@model-switch"));
    let filed = wait_until(WAIT, || count(&alice.join(".Spam")) == 1);
    if !filed {
        for e in state::events(&c, 0, None, 100).unwrap_or_default() {
            eprintln!("{e:?}");
        }
    }
    assert!(filed, "the model filed alice's copy");
    let checked = |name: &str| {
        state::hourly(&c, 0, Some(name)).map(|rows| rows.iter().map(|r| r.2.checked).sum::<u32>()).unwrap_or(0)
    };
    assert!(wait_until(WAIT, || checked("bob") >= 1), "bob's copy was looked at");
    assert_eq!(count(&bob.join(".Spam")), 0, "bob's mailbox is out of the model's reach");
    assert_eq!(count(&bob), 1, "bob's copy stays in his inbox");

    // The same spam from a sender whose mail the users keep (the examples'
    // ham): a correspondent, whose mail the model never files by itself.
    let correspondent =
        starling_agent::facts::Facts::from_message(&ham[0].1, 0).from_header.expect("the ham has a From");
    let spoofed = starling_testkit::with_header(&spam[0].1, "From", &correspondent);
    deliver(&alice, "2.test", &with_message_id(&spoofed, "c@model-switch"));
    assert!(wait_until(WAIT, || checked("alice") >= 2), "alice's second message was looked at");
    assert_eq!(count(&alice.join(".Spam")), 1, "a known sender's mail is not filed by the model");
    assert_eq!(count(&alice), 1, "it stays in the inbox");
    // Unless the organisation's servers found the From address forged.
    let forged = starling_testkit::with_header(&spoofed, "Authentication-Results", "mx.example.com; dmarc=fail");
    deliver(&alice, "3.test", &with_message_id(&forged, "d@model-switch"));
    assert!(wait_until(WAIT, || count(&alice.join(".Spam")) == 2), "a forged known sender is filed");
    finish(stop, task).await;
}

/// A small file system of its own (tmpfs), unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).expect("mount point");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "starling-test", at.to_str().expect("path")])
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a tmpfs needs root (CI runs as root)");
        SmallDisk(at.to_owned())
    }

    /// Fills it up; the filler is removed to free the space again.
    fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let filler = self.0.join("filler");
        let mut file = std::fs::File::create(&filler).expect("filler");
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_state_leaves_mail_in_place_and_recovers_when_space_returns() {
    let setup = setup(&["dora"]);
    let disk = SmallDisk::mount(&setup.state, "8m");
    let node = Node::start().await.expect("node");
    let (spam, ham) = known_spam(&node).await;
    // (The first line is in `config`'s `[network]` table.)
    let extra = "retry_seconds = 1\n\n[users]\nsource = \"list\"\nlist = [\"dora\"]\n";
    let started = jiff::Timestamp::now().as_second() - 1;
    let live = Arc::new(starling_agent::live::Live::default());
    let (stop, task) = start_with_live(config(&setup, &node, extra), &node, live.clone());
    let dora = setup.root.join("dora");
    wait_watching(&setup.state, "dora", started);

    // The state database's disk fills up; mail keeps arriving.
    let filler = disk.fill();
    deliver(&dora, "1700000000.M1P1.full", &with_message_id(&spam[0], "full-spam@test"));
    deliver(&dora, "1700000000.M2P1.full", &with_message_id(&ham[0], "full-ham@test"));
    // Without a record of the filing, nothing is moved: a later look would
    // take the agent's own move for a user's report. The agent holds the
    // spam (with the ham, when they came in one batch).
    assert!(wait_until(WAIT, || live.snapshot().held >= 1), "the spam held");
    assert_eq!(count(&dora), 2, "both messages stay where they were while the disk is full");
    assert_eq!(count(&dora.join(".Spam")), 0);
    assert!(!task.is_finished(), "the agent keeps running");

    // Space returns: the held messages are looked at again, the spam filed
    // once, the ham left; new mail is filed as usual; the database is whole.
    std::fs::remove_file(filler).expect("free the space");
    deliver(&dora, "1700000000.M3P1.after", &with_message_id(&spam[1], "after-spam@test"));
    assert!(wait_until(WAIT, || count(&dora.join(".Spam")) == 2), "filed once the disk has room");
    assert_eq!(count(&dora), 1, "the ham stays");
    assert!(find(&dora.join(".Spam"), "full-spam@test").is_some());
    finish(stop, task).await;
    let c = state::open(&setup.state.join("state.sqlite3")).expect("state");
    let verdict: String = c.query_row("PRAGMA integrity_check", [], |row| row.get(0)).expect("check");
    assert_eq!(verdict, "ok");
}

/// Writes a message into a Maildir folder's `cur` as a mail client leaves
/// it (with `flags`), delivered `days_ago` days back.
fn keep(folder: &Path, name: &str, raw: &[u8], flags: &str, days_ago: f64) {
    std::fs::create_dir_all(folder.join("cur")).expect("cur");
    std::fs::create_dir_all(folder.join("new")).expect("new");
    std::fs::create_dir_all(folder.join("tmp")).expect("tmp");
    let path = folder.join("cur").join(format!("{name}:2,{flags}"));
    std::fs::write(&path, raw).expect("write");
    let at = std::time::SystemTime::now() - Duration::from_secs_f64(days_ago * 86_400.0);
    std::fs::File::options().write(true).open(&path).and_then(|f| f.set_modified(at)).expect("mtime");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_learns_the_mail_users_already_had_and_files_from_the_first_day() {
    let setup = setup(&["alice", "bob"]);
    let node = Node::start().await.expect("node");
    let (alice, bob) = (setup.root.join("alice"), setup.root.join("bob"));
    let (spam, ham) = (testdata(true), testdata(false));
    // Alice sorts her spam out: a month of it in her spam folder, and the
    // mail she read and kept in her inbox. Bob never uses his spam folder.
    let mut kept_ham = 0;
    for round in 0..30 {
        let days = 30.0 - f64::from(round);
        for (i, (_, raw)) in spam.iter().enumerate() {
            let raw = with_message_id(raw, &format!("s{round}-{i}@history"));
            keep(&alice.join(".Spam"), &format!("s{round}-{i}"), &raw, "S", days - 0.5);
        }
        for (i, (_, raw)) in ham.iter().enumerate() {
            let raw = with_message_id(raw, &format!("h{round}-{i}@history"));
            keep(&alice, &format!("h{round}-{i}"), &raw, "S", days);
            keep(&bob, &format!("h{round}-{i}"), &raw, "S", days);
            kept_ham += 1;
        }
    }
    // Neither an unread message nor one that arrived an hour ago says ham.
    keep(&alice, "unread", &with_message_id(&ham[0].1, "unread@history"), "", 3.0);
    keep(&alice, "young", &with_message_id(&ham[0].1, "young@history"), "S", 1.0 / 24.0);
    let spam_kept = 30 * spam.len();
    assert!(kept_ham >= 250, "enough ham for a calibrated threshold: {kept_ham}");
    let history_messages = spam_kept.max(kept_ham) + 10;

    let extra = format!("[users]\nsource = \"maildir\"\n\n[model]\nhistory_messages = {history_messages}\n");
    let (stop, task) = start(config(&setup, &node, &extra), &node);
    wait_watching(&setup.state, "alice", 0);
    wait_watching(&setup.state, "bob", 0);
    let c = state::open(&setup.state.join("state.sqlite3")).expect("db");
    let learnt = |mailbox: &str, source: &str| -> i64 {
        c.query_row(
            "SELECT count(*) FROM model_examples WHERE mailbox = ?1 AND source = ?2",
            rusqlite::params![mailbox, source],
            |r| r.get(0),
        )
        .expect("count")
    };
    let looked = wait_until(WAIT, || events(&setup.state, 732) == 2);
    if !looked {
        for e in state::events(&c, 0, None, 100).unwrap_or_default() {
            eprintln!("{e:?}");
        }
    }
    assert!(looked, "both mailboxes' existing mail looked at");
    assert_eq!(learnt("alice", "existing-spam"), spam_kept as i64, "alice's spam folder");
    assert_eq!(learnt("alice", "existing-ham"), kept_ham as i64, "alice's read, older mail; not the unread or young");
    assert_eq!(learnt("bob", "existing-ham"), 0, "bob does not sort spam out: his inbox vouches for nothing");
    let reporting = c
        .query_row("SELECT count(*) FROM model_history WHERE mailbox = 'alice' AND spam > 0", [], |r| {
            r.get::<_, i64>(0)
        })
        .expect("history");
    assert_eq!(reporting, 1, "alice counts as a user who reports spam");

    // Spam the network was never told of is filed on the first day.
    assert_eq!(node.verdict(&spam[1].1).await.expect("check"), Class::Clean, "unknown to the network");
    deliver(&alice, "new.test", &with_message_id(&spam[1].1, "fresh@model-history"));
    let filed = wait_until(WAIT, || count(&alice.join(".Spam")) == spam_kept + 1);
    if !filed {
        for e in state::events(&c, 0, None, 100).unwrap_or_default() {
            eprintln!("{e:?}");
        }
    }
    assert!(filed, "the model filed the new spam");
    finish(stop, task).await;

    // It happens once: a restart does not learn it again.
    let (stop, task) = start(config(&setup, &node, &extra), &node);
    let now = jiff::Timestamp::now().as_second();
    wait_watching(&setup.state, "alice", now - 1);
    finish(stop, task).await;
    assert_eq!(events(&setup.state, 732), 2, "learnt once");
}
