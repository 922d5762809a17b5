//! Trials, subscriptions and activation codes against a real node, a real
//! Dovecot and a real Postfix that carries the mail to the postmaster: a
//! trial that ends stops filtering (mail stays put) and a renewal resumes
//! it; one mail per notice; a code an administrator enters applies its
//! mailbox limit; forged and foreign codes are refused; the network's
//! update notice is shown and told once per release.

mod common;

use std::sync::Arc;

use common::{Agent, WAIT, config, eventually, message_id};
use starling_agent::activation::{self, Phase};
use starling_agent::events;
use starling_agent::live::Live;
use starling_agent::state;
use starling_testkit::postfix::{Postfix, PostfixOptions};
use starling_testkit::{Dovecot, DovecotOptions, Node, wait_until};

/// Spam the node calls spam, each with a unique Message-ID.
async fn known_spam(node: &Node, tag: &str) -> Vec<Vec<u8>> {
    let spam = common::known_spam(node, tag).await;
    assert!(spam.len() >= 3, "enough known spam: {}", spam.len());
    spam
}

fn holds(dovecot: &Dovecot, user: &str, folder: &str, raw: &[u8]) -> bool {
    let id = message_id(raw);
    dovecot.messages(user, folder).unwrap_or_default().iter().any(|m| m.message_id == id)
}

fn subjects(dovecot: &Dovecot, user: &str) -> Vec<String> {
    dovecot.messages(user, "INBOX").unwrap_or_default().into_iter().map(|m| m.subject).collect()
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_that_ends_stops_filtering_and_a_renewal_resumes_it() {
    let node = Node::start().await.expect("node");
    let options = DovecotOptions { strip_domain: true, ..Default::default() };
    let dovecot = Dovecot::start(&["ann", "postmaster"], options).expect("dovecot");
    let postfix = Postfix::start(dovecot.lmtp_port, PostfixOptions::default()).expect("postfix");
    let spam = known_spam(&node, "trial").await;
    // A trial that ends in a few seconds: the 1-day warning is due at once.
    let expires = now() + 10;
    node.activate(expires, 0).await.expect("a trial code");
    let state_dir = tempfile::tempdir().expect("tempdir");
    let extra = format!(
        "[notify]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nfrom = \"starling@example.org\"\nto = \"postmaster@example.org\"\n",
        postfix.smtp_port
    );
    let live = Arc::new(Live::default());
    let options =
        starling_agent::Options { credential: Some(node.credential.clone()), live: live.clone(), ..Default::default() };
    let agent = Agent::start_with(config(&dovecot, &node, state_dir.path(), &["ann"], &extra), options);

    // Within the trial: the code arrives with the first Hello, spam is filed,
    // and the warning is an event and one mail.
    let standing = || live.snapshot().activation.map(|a| a.standing).unwrap_or_default();
    eventually("the trial's code installed", &dovecot, || standing().code_serial != 0);
    assert_eq!((standing().state, standing().days_left), (Phase::Ending, Some(1)));
    dovecot.lmtp_deliver("ann", &spam[0]).expect("deliver");
    eventually("spam filed during the trial", &dovecot, || holds(&dovecot, "ann", "Spam", &spam[0]));
    eventually("the warning event", &dovecot, || agent.events(events::SUBSCRIPTION_ENDING.id).len() == 1);

    // At its end: filtering stops, the re-check queue is empty, mail that
    // arrives stays where it is, and the postmaster is told once.
    eventually("filtering stopped", &dovecot, || agent.events(events::FILTERING_STOPPED.id).len() == 1);
    assert!(now() >= expires, "not before the expiry");
    assert_eq!(standing().state, Phase::Expired);
    eventually("the mailbox task stopped", &dovecot, || live.snapshot().tasks == 0);
    dovecot.lmtp_deliver("ann", &spam[1]).expect("deliver");
    let mails = || subjects(&dovecot, "postmaster");
    let told = wait_until(WAIT, || mails().len() == 2);
    assert!(told, "two mails to the postmaster: {:?}\n{}", mails(), postfix.log());
    let mails = mails();
    assert!(mails.iter().any(|s| s.contains("trial of test ends in 1 day(s)")), "{mails:?}");
    assert!(mails.iter().any(|s| s.contains("stopped filtering the mail of test")), "{mails:?}");
    assert!(holds(&dovecot, "ann", "INBOX", &spam[1]), "left where it was while filtering is stopped");
    assert_eq!(state::recheck_count(&agent.db()).unwrap(), 0);

    // A renewal: the network hands the new code to the agent, which resumes
    // at once and looks at what arrived meanwhile.
    node.activate(0, 0).await.expect("a subscription code");
    eventually("filtering resumed", &dovecot, || agent.events(events::FILTERING_RESUMED.id).len() == 1);
    assert_eq!(standing().state, Phase::Active);
    eventually("the spam that waited is filed", &dovecot, || holds(&dovecot, "ann", "Spam", &spam[1]));
    dovecot.lmtp_deliver("ann", &spam[2]).expect("deliver");
    eventually("new spam is filed again", &dovecot, || holds(&dovecot, "ann", "Spam", &spam[2]));
    // Still exactly one mail per notice.
    assert_eq!(subjects(&dovecot, "postmaster").len(), 2);
    assert_eq!(agent.events(events::ACTIVATION_INSTALLED.id).len(), 2);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_the_administrator_enters_applies_its_mailbox_limit() {
    let node = Node::start().await.expect("node");
    let dovecot = Dovecot::start(&["ann", "ben"], DovecotOptions::default()).expect("dovecot");
    let spam = known_spam(&node, "limit").await;
    let state_dir = tempfile::tempdir().expect("tempdir");
    let live = Arc::new(Live::default());
    let options =
        starling_agent::Options { credential: Some(node.credential.clone()), live: live.clone(), ..Default::default() };
    let config = config(&dovecot, &node, state_dir.path(), &["ann", "ben"], "[notify]\nenabled = false\n");
    let activation_config = config.activation.clone();
    let agent = Agent::start_with(config, options);
    let connected = |name: &str| live.snapshot().connections.get(name).is_some_and(|c| c.connected);
    eventually("both mailboxes watched", &dovecot, || connected("ann") && connected("ben"));
    // The network's key is pinned at the first contact.
    eventually("the key pinned", &dovecot, || state::meta_get(&agent.db(), "activation_key").ok().flatten().is_some());

    // Codes that are not this network's, or were altered, are refused with
    // a reason and change nothing.
    let other = Node::start().await.expect("another node");
    let foreign = other.activate(0, 1).await.expect("another network's code");
    let refused = activation::enter_code(&agent.db(), &activation_config, &foreign).unwrap_err();
    assert!(refused.contains("another network"), "{refused}");
    let code = node.activate(0, 1).await.expect("a code for one mailbox");
    let mut forged = code.clone();
    forged.replace_range(30..31, if &code[30..31] == "Q" { "R" } else { "Q" });
    let refused = activation::enter_code(&agent.db(), &activation_config, &forged).unwrap_err();
    assert!(refused.contains("signature"), "{refused}");

    // The real one, entered as the console does: the newest mailbox beyond
    // the limit (by first sight, then name) is no longer filtered.
    let claims = activation::enter_code(&agent.db(), &activation_config, &code).expect("installed");
    assert_eq!(claims.max_mailboxes, 1);
    let over_limit = || live.snapshot().activation.map(|a| a.over_limit).unwrap_or_default();
    eventually("ben beyond the limit", &dovecot, || over_limit() == ["ben"]);
    eventually("ben's task stopped", &dovecot, || !live.snapshot().connections.contains_key("ben"));
    let limit_events = agent.events(events::MAILBOX_LIMIT.id);
    assert!(limit_events.len() == 1 && limit_events[0].text.contains("ben"), "{limit_events:?}");
    assert_eq!(agent.events(events::ACTIVATION_INSTALLED.id).len(), 1);
    dovecot.lmtp_deliver("ben", &spam[0]).expect("deliver");
    dovecot.lmtp_deliver("ann", &spam[1]).expect("deliver");
    eventually("ann's spam filed", &dovecot, || holds(&dovecot, "ann", "Spam", &spam[1]));
    assert!(holds(&dovecot, "ben", "INBOX", &spam[0]), "ben's mail is not filtered");
    assert!(connected("ann"));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_networks_update_notice_is_shown_and_told_once() {
    let notes = "https://example.org/starling/releases/99.0.0";
    let mut node = Node::start_announcing("99.0.0", notes).await.expect("node");
    let dovecot = Dovecot::start(&["ann"], DovecotOptions::default()).expect("dovecot");
    let spam = known_spam(&node, "update").await;
    let state_dir = tempfile::tempdir().expect("tempdir");
    let live = Arc::new(Live::default());
    let options =
        starling_agent::Options { credential: Some(node.credential.clone()), live: live.clone(), ..Default::default() };
    let config = config(&dovecot, &node, state_dir.path(), &["ann"], "[notify]\nenabled = false\n");
    let agent = Agent::start_with(config, options);

    // The first Hello: an event and the live status (the console's and
    // `starling status`'s source) name the release and its notes.
    let network = || live.snapshot().network.expect("a network view");
    eventually("the notice", &dovecot, || agent.events(events::NEW_VERSION.id).len() == 1);
    let notice = &agent.events(events::NEW_VERSION.id)[0];
    assert!(notice.text.contains("99.0.0") && notice.text.contains(notes), "{notice:?}");
    assert_eq!((network().new_version.as_deref(), network().release_notes_url.as_str()), (Some("99.0.0"), notes));

    // Told once: the agent says Hello again after an outage (a check that
    // fails marks the network down), and the same release is not told again.
    node.stop().await;
    dovecot.lmtp_deliver("ann", &spam[0]).expect("deliver");
    eventually("the network down", &dovecot, || network().state == "down");
    node.restart().await.expect("restart");
    eventually("the network back", &dovecot, || agent.events(events::NETWORK_REACHABLE.id).len() == 1);
    eventually("the waiting spam filed", &dovecot, || holds(&dovecot, "ann", "Spam", &spam[0]));
    assert_eq!(agent.events(events::NEW_VERSION.id).len(), 1, "the same release told once");

    // A newer release is told.
    node.stop().await;
    dovecot.lmtp_deliver("ann", &spam[1]).expect("deliver");
    eventually("the network down again", &dovecot, || network().state == "down");
    node.restart_announcing("99.1.0", "").await.expect("restart");
    eventually("the newer release told", &dovecot, || agent.events(events::NEW_VERSION.id).len() == 2);
    assert_eq!(network().new_version.as_deref(), Some("99.1.0"));
    agent.stop().await;
}
