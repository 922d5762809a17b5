use super::*;
use starling_proto::activation::CodePlan;

const DAY: i64 = 86_400;
const NOW: i64 = 1_800_000_000;

#[test]
fn a_phase_is_shown_by_its_serialised_name() {
    for phase in [Phase::Unknown, Phase::Active, Phase::Ending, Phase::Expired, Phase::Revoked, Phase::Disabled] {
        assert_eq!(serde_json::to_value(phase).unwrap(), phase.as_str());
        assert_eq!(serde_json::from_value::<Phase>(phase.as_str().into()).unwrap(), phase);
    }
}

fn code(serial: u64, expires_at: i64) -> Claims {
    Claims {
        serial,
        issued_at: NOW - DAY,
        expires_at,
        organisation_id: 3,
        organisation: "acme".into(),
        plan: CodePlan::Subscription,
        max_mailboxes: 10,
        purchase_url: "https://shop.example/acme".into(),
    }
}

fn network(expires_at: i64) -> NetworkSays {
    NetworkSays {
        organisation: "acme".into(),
        active: true,
        plan: "trial".into(),
        expires_at,
        revoked_through: 0,
        max_mailboxes: 0,
        purchase_url: "https://shop.example/".into(),
    }
}

#[test]
fn a_trial_runs_warns_and_stops_under_a_controlled_clock() {
    let expiry = NOW + 20 * DAY;
    let says = network(expiry);
    let mut labels = Vec::new();
    for day in 0..=21 {
        let standing = evaluate(None, Some(&says), NOW + day * DAY);
        assert_eq!(standing.filtering, day < 20, "day {day}: {standing:?}");
        labels.push(notice_due(&standing));
    }
    // 20 days ahead: nothing; 14 days before: the first warning; 3 and
    // 1 days before: the next ones; at expiry: stopped.
    assert_eq!(labels[5], None);
    assert_eq!(labels[6], Some("14"));
    assert_eq!(labels[17], Some("3"));
    assert_eq!(labels[19], Some("1"));
    assert_eq!(labels[20], Some("stopped"));
    let expired = evaluate(None, Some(&says), expiry);
    assert_eq!(expired.state, Phase::Expired);
    assert!(expired.detail.contains("expired"), "{}", expired.detail);
    assert_eq!(expired.purchase_url, "https://shop.example/");
}

#[test]
fn the_code_gives_the_terms_and_the_network_revokes_and_disables() {
    let says = network(NOW - DAY);
    // The network says expired, but a newer code runs to next year.
    let renewed = code(5, NOW + 300 * DAY);
    let standing = evaluate(Some(&renewed), Some(&says), NOW);
    assert!(standing.filtering && standing.state == Phase::Active, "{standing:?}");
    assert_eq!((standing.max_mailboxes, standing.code_serial), (10, 5));
    assert_eq!(standing.purchase_url, "https://shop.example/acme");
    // Revoked through its serial.
    let revoked = NetworkSays { revoked_through: 5, ..says.clone() };
    let standing = evaluate(Some(&renewed), Some(&revoked), NOW);
    assert_eq!((standing.state, standing.filtering), (Phase::Revoked, false));
    // Disabled wins over everything.
    let disabled = NetworkSays { active: false, ..network(0) };
    assert_eq!(evaluate(Some(&renewed), Some(&disabled), NOW).state, Phase::Disabled);
    // Offline with a code: its own terms.
    let standing = evaluate(Some(&code(1, NOW + 2 * DAY)), None, NOW);
    assert_eq!((standing.state, standing.days_left, notice_due(&standing)), (Phase::Ending, Some(2), Some("3")));
    // Nothing known: filtering goes on.
    let unknown = evaluate(None, None, NOW);
    assert!(unknown.filtering && unknown.state == Phase::Unknown);
    assert_eq!(notice_due(&unknown), None);
    // A subscription without expiry.
    let forever = evaluate(Some(&code(1, 0)), Some(&network(0)), NOW);
    assert!(forever.filtering && forever.days_left.is_none() && notice_due(&forever).is_none());
}

/// The code with one character of its body changed.
fn altered(code: &str) -> String {
    let at = code.len() / 2;
    let replacement = if &code[at..=at] == "x" { "y" } else { "x" };
    format!("{}{replacement}{}", &code[..at], &code[at + 1..])
}

#[test]
fn an_entered_code_is_checked_before_it_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let c = state::open(&dir.path().join(state::FILE_NAME)).unwrap();
    let config = ActivationConfig::default();
    let (signer, _) = activation::Signer::generate().unwrap();
    let (stranger, _) = activation::Signer::generate().unwrap();
    let now = jiff::Timestamp::now().as_second();
    let valid = signer.issue(&code(7, now + 30 * DAY)).unwrap();
    // No key yet: the agent has not met the network.
    let refused = enter_code(&c, &config, &valid).unwrap_err();
    assert!(refused.contains("not known yet"), "{refused}");
    state::meta_set(&c, PINNED_KEY, &activation::public_key_text(&signer.public_key())).unwrap();
    let says = NetworkSays { revoked_through: 3, ..network(0) };
    state::meta_set(&c, NETWORK_KEY, &serde_json::to_string(&says).unwrap()).unwrap();
    let cases = [
        (stranger.issue(&code(7, now + DAY)).unwrap(), "another network"),
        (altered(&valid), "signature"),
        (signer.issue(&Claims { organisation: "globex".into(), ..code(7, 0) }).unwrap(), "for organisation \"globex\""),
        (signer.issue(&code(7, now - 1)).unwrap(), "expired"),
        (signer.issue(&code(3, 0)).unwrap(), "revoked"),
        (valid[..40].to_owned(), "not a valid activation code"),
    ];
    for (text, why) in cases {
        let refused = enter_code(&c, &config, &text).unwrap_err();
        assert!(refused.contains(why), "{why}: {refused}");
        assert_eq!(state::meta_get(&c, CODE_KEY).unwrap(), None, "nothing stored for {why}");
    }
    // A configured key wins over the pinned one.
    let pinned_elsewhere = ActivationConfig { public_key: activation::public_key_text(&stranger.public_key()) };
    assert!(enter_code(&c, &pinned_elsewhere, &valid).is_err());
    // Wrapped as a mail client would: stored without the whitespace.
    let wrapped = format!("{}\n  {}", &valid[..30], &valid[30..]);
    assert_eq!(enter_code(&c, &config, &wrapped).unwrap().serial, 7);
    assert_eq!(state::meta_get(&c, CODE_KEY).unwrap().as_deref(), Some(valid.as_str()));
}

#[test]
fn the_newest_mailboxes_beyond_the_limit_are_left_out() {
    let enabled = vec![(30, "carol".into()), (10, "alice".into()), (20, "bob".into()), (10, "aaron".into())];
    let (kept, beyond) = within_limit(enabled.clone(), 2);
    assert_eq!(kept, ["aaron", "alice"]);
    assert_eq!(beyond, ["bob", "carol"]);
    assert!(within_limit(enabled.clone(), 0).1.is_empty());
    assert!(within_limit(enabled, 4).1.is_empty());
}
