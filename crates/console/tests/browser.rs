//! The console as a person uses it, in headless Chromium over WebDriver:
//! log in from the keyboard, change a setting, disable a user, import a
//! whitelist, download a CSV, look at a graph. Screenshots of each step go
//! to `target/test-artefacts/browser/`.

mod common;

use common::Console;
use fantoccini::Locator;
use fantoccini::key::Key;
use starling_agent::state;
use starling_testkit::browser::Browser;

#[tokio::test(flavor = "multi_thread")]
async fn an_administrator_uses_the_console_in_a_browser() {
    if std::env::var_os("STARLING_SKIP_BROWSER").is_some() {
        eprintln!("STARLING_SKIP_BROWSER is set: skipped");
        return;
    }
    let console = Console::start().await;
    {
        let c = console.db();
        for name in ["alice", "bob", "carol"] {
            state::add_mailbox(&c, name, true, "test").expect("mailbox");
        }
        let hour = jiff::Timestamp::now().as_second().div_euclid(3600) * 3600;
        let counters =
            state::Counters { checked: 40, spam: 12, blocked: 2, unblocked: 1, ..state::Counters::default() };
        let mut c = c;
        state::record_batch(&mut c, &std::collections::BTreeMap::from([((hour, "alice".to_owned()), counters)]))
            .expect("counters");
    }
    let browser = Browser::start().await.expect("Chromium and chromedriver (scripts/test installs them)");
    let url = &console.url;

    // Log in with the keyboard only: type, Tab, type, Enter.
    browser.goto(&format!("{url}/settings")).await.expect("page");
    browser.wait_for("#name").await.expect("login form");
    let name = browser.client.find(Locator::Css("#name")).await.expect("name field");
    name.send_keys("admin").await.expect("type");
    name.send_keys(&Key::Tab.to_string()).await.expect("tab");
    let focused = browser.client.active_element().await.expect("focus");
    assert_eq!(focused.attr("id").await.expect("id").as_deref(), Some("password"), "Tab moves to the password");
    focused.send_keys(&format!("{}{}", console.password, Key::Enter)).await.expect("type and submit");
    browser.wait_for("#save-settings").await.expect("back at the page asked for, logged in");
    browser.screenshot("01-settings").await.expect("screenshot");

    // Every form field has a label.
    let unlabelled: Vec<String> = browser
        .client
        .execute(
            "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                .filter(e => !e.labels.length && !e.getAttribute('aria-label')).map(e => e.name);",
            vec![],
        )
        .await
        .expect("script")
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.to_string())
        .collect();
    assert!(unlabelled.is_empty(), "fields without a label: {unlabelled:?}");

    // Change a setting: the spam action becomes "tag".
    let select = browser.wait_for("#policy-spam_action").await.expect("field");
    select.select_by_value("tag").await.expect("choose");
    browser.click("#save-settings").await.expect("save");
    let notice = browser.text(".notice").await.expect("notice");
    assert!(notice.contains("policy.spam_action"), "{notice}");
    browser.screenshot("02-setting-saved").await.expect("screenshot");
    let stored = state::settings(&console.db()).expect("settings");
    assert_eq!(stored.get("policy.spam_action"), Some(&serde_json::json!("tag")));

    // Disable a user: search, select, apply.
    browser.goto(&format!("{url}/users")).await.expect("users");
    browser.fill("#search", "bo").await.expect("search");
    browser.click("form[role=search] button").await.expect("submit");
    // The page before the search lists bob too: wait for the results page
    // (its summary names the search) before selecting, or the click may
    // land on an element of the page being replaced.
    browser.wait_for_text("p.muted", "matching").await.expect("the search results");
    browser.wait_for("input[value=bob]").await.expect("bob listed").click().await.expect("select bob");
    browser.wait_for("#action").await.expect("action").select_by_value("disable").await.expect("choose");
    browser.click("form[action='/users/actions'] button[type=submit]").await.expect("apply");
    let notice = browser.text(".notice").await.expect("notice");
    assert!(notice.contains("disable: 1 mailboxes"), "{notice}");
    browser.screenshot("03-user-disabled").await.expect("screenshot");
    assert!(!state::mailbox(&console.db(), "bob").expect("row").expect("bob").enabled);

    // Import a whitelist: paste, preview (with the changes listed), apply.
    browser.goto(&format!("{url}/whitelist")).await.expect("whitelist");
    browser.fill("#import-text", "@partner.example\n10.1.0.0/16,branch office\n").await.expect("paste");
    browser.click("form[enctype='multipart/form-data'] button").await.expect("preview");
    let summary = browser.text("#import-summary").await.expect("preview");
    assert!(summary.starts_with("2 to add"), "{summary}");
    browser.screenshot("04-import-preview").await.expect("screenshot");
    browser.click("#apply-import").await.expect("apply");
    let notice = browser.text(".notice").await.expect("notice");
    assert!(notice.contains("2 added"), "{notice}");
    assert_eq!(state::whitelist(&console.db(), Some("")).expect("rows").len(), 2);

    // Download the last 30 days as CSV (with the session's cookie).
    browser.goto(&format!("{url}/reports?period=30d")).await.expect("reports");
    let href = browser.wait_for("#export-csv").await.expect("link").attr("href").await.expect("href").expect("href");
    let csv = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1]; fetch(arguments[0]).then(r => r.text()).then(done);",
            vec![serde_json::json!(href)],
        )
        .await
        .expect("download");
    let csv = csv.as_str().expect("text");
    assert!(csv.starts_with("period,checked,caught"), "{csv}");
    assert!(csv.contains(",40,12,12,"), "today's counters are in it: {csv}");

    // The graphs are there, drawn and described for screen readers.
    let graphs = browser.client.find_all(Locator::Css("svg.chart")).await.expect("graphs");
    assert_eq!(graphs.len(), 3);
    let described = browser.text("svg.chart desc").await.unwrap_or_default();
    assert!(described.contains("40"), "{described}");
    browser.screenshot("05-reports").await.expect("screenshot");

    browser.close().await;
    console.stop.cancel();
}
