//! The Grafana dashboard and the Prometheus alerting rules in `packaging/`
//! name only metrics that a running `starling serve` (its console's
//! `/metrics`) and network node (`/metrics`) serve, so a renamed metric
//! cannot leave a panel or an alert silently empty.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{ok, serve, starling};

/// Every `starling_…` name in a text (metric names in PromQL, minus the
/// histogram suffixes Prometheus derives).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("starling_") {
        let start = i + at;
        let end = start + bytes[start..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_').count();
        let preceded = start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if !preceded {
            names.insert(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

/// The names a `/metrics` page serves (histograms also as `_bucket`,
/// `_sum`, `_count`).
fn served(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

fn get(url: &str, token: Option<&str>) -> String {
    let mut request = ureq::get(url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    request.call().expect("metrics").into_body().read_to_string().expect("text")
}

#[test]
fn the_dashboard_and_the_alerts_name_only_served_metrics() {
    let service = serve();
    let state = service.dir.path().join("state");
    let console = std::fs::read_to_string(state.join(starling_console::URL_FILE)).expect("console url");
    let token = std::fs::read_to_string(state.join(starling_console::CLI_TOKEN_FILE)).expect("token");
    let node = std::fs::read_to_string(state.join("embedded-network.url")).expect("node address");
    // Counters with labels appear with their first value: a report and a
    // check through the embedded node.
    let message = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fingerprint/testdata/corpus/spam-1-00002.eml");
    let credential = state.join("embedded-network.credential");
    let address = format!("http://{}", node.trim());
    for command in ["report", "check"] {
        let mut args = vec![command];
        if command == "report" {
            args.push("spam");
        }
        let credential = credential.to_str().expect("path");
        args.extend(["--network", &address, "--credential-file", credential, message.to_str().expect("path")]);
        ok(starling(&service.config, &args));
    }
    let scrape = || {
        let mut metrics = served(&get(&format!("{}/metrics", console.trim()), Some(token.trim())));
        metrics.extend(served(&get(&format!("http://{}/metrics", node.trim()), None)));
        metrics
    };
    // The network's gauges appear once the agent has asked it.
    assert!(
        starling_testkit::wait_until(Duration::from_secs(30), || scrape().contains("starling_agent_network_up")),
        "the agent's network gauges: {:?}",
        scrape()
    );
    let metrics = scrape();
    assert!(metrics.contains("starling_network_entries"), "{metrics:?}");

    let packaging = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging");
    let dashboard = std::fs::read_to_string(packaging.join("grafana/starling-dashboard.json")).expect("dashboard");
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let exprs: Vec<String> = parsed["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|target| target["expr"].as_str().map(str::to_owned))
        .collect();
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    let alerts = std::fs::read_to_string(packaging.join("prometheus/starling-alerts.yml")).expect("alerts");
    assert!(alerts.matches("- alert: ").count() >= 10);

    // Served only under a condition this service does not meet.
    let conditional = [(
        "starling_agent_subscription_days_left",
        "subscription_days_left", // while a trial or subscription has an end
        include_str!("../../console/src/status.rs"),
    )];
    for (name, registered, source) in conditional {
        assert!(source.contains(&format!("\"{registered}\"")), "{name} is no longer registered");
    }
    for (what, text) in [("the dashboard", exprs.join("\n")), ("the alerting rules", alerts)] {
        let named = metric_names(&text);
        assert!(!named.is_empty(), "{what} names no metric");
        let unknown: Vec<&String> = named
            .iter()
            .filter(|name| !metrics.contains(*name) && !conditional.iter().any(|(c, ..)| c == name))
            .collect();
        assert!(unknown.is_empty(), "{what} names metrics nobody serves: {unknown:?}");
    }
}
