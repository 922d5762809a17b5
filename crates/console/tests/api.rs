//! The REST API against a real console on loopback: the OpenAPI document
//! matches the routes, every route but login and health needs
//! authentication, roles and CSRF hold, settings and imports are checked.

mod common;

use std::collections::BTreeSet;

use common::{Console, http};
use serde_json::{Value, json};

fn openapi() -> Value {
    serde_json::from_str(starling_console::api::OPENAPI).expect("openapi.json is JSON")
}

/// A path with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{name}", "nobody").replace("{key}", "policy.mark_read").replace("{id}", "999999")
}

fn call(method: &str, url: &str, auth: Option<&str>, body: Option<&Value>) -> (u16, String) {
    let agent = http();
    let bearer = auth.map(|t| format!("Bearer {t}"));
    let result = match method {
        "get" => {
            let mut r = agent.get(url);
            if let Some(b) = &bearer {
                r = r.header("Authorization", b);
            }
            r.call()
        }
        "delete" => {
            let mut r = agent.delete(url);
            if let Some(b) = &bearer {
                r = r.header("Authorization", b);
            }
            r.call()
        }
        _ => {
            let mut r = if method == "put" { agent.put(url) } else { agent.post(url) };
            if let Some(b) = &bearer {
                r = r.header("Authorization", b);
            }
            r.send_json(body.cloned().unwrap_or(json!({})))
        }
    };
    let mut response = result.expect("the console answers");
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap_or_default())
}

/// Checks `value` against a (small subset of) JSON Schema: types, required
/// properties, array items, `$ref`s into the document.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return validate(doc, &doc["components"]["schemas"][name], value, at);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return,
    };
    let fits = types.iter().any(|t| match *t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => true,
    });
    assert!(fits, "{at}: {value} is not {types:?}");
    for key in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        assert!(value.get(key).is_some(), "{at}: required {key:?} missing in {value}");
    }
    if let (Some(props), Some(object)) = (schema["properties"].as_object(), value.as_object()) {
        for (key, sub) in props {
            if let Some(v) = object.get(key) {
                validate(doc, sub, v, &format!("{at}.{key}"));
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, v) in array.iter().enumerate() {
            validate(doc, items, v, &format!("{at}[{i}]"));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_matches_the_routes_and_every_route_needs_authentication() {
    let console = Console::start().await;
    let doc = openapi();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, ops)| ops.as_object().expect("ops").keys().map(move |m| (m.clone(), path.clone())))
        .collect();
    let routed: BTreeSet<(String, String)> =
        starling_console::api::ROUTES.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    assert_eq!(documented, routed, "openapi.json and the router differ");

    let url = console.url.clone();
    let token = console.token.clone();
    let doc_for_walk = doc.clone();
    tokio::task::spawn_blocking(move || {
        for (method, path) in &routed {
            let public = starling_console::auth::is_public(path);
            let (status, body) = call(method, &format!("{url}{}", concrete(path)), None, None);
            if public {
                assert_ne!(status, 401, "{method} {path} is public");
            } else {
                assert_eq!(status, 401, "{method} {path} without credentials: {body}");
                let error: Value = serde_json::from_str(&body).expect("a JSON error");
                assert!(error["error"].is_string());
            }
            // With a token, every read answers as documented.
            if method == "get" {
                let (status, body) = call(method, &format!("{url}{}", concrete(path)), Some(&token), None);
                if path.contains('{') {
                    assert!(status == 200 || status == 404, "{method} {path}: {status} {body}");
                    continue;
                }
                assert_eq!(status, 200, "{method} {path}: {body}");
                let op = &doc_for_walk["paths"][path.as_str()][method.as_str()];
                let content = &op["responses"]["200"]["content"];
                if let Some(schema) = content.get("application/json").map(|c| &c["schema"]) {
                    let value: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: not JSON"));
                    validate(&doc_for_walk, schema, &value, path);
                }
            }
        }
        // Pages redirect to the login page; the login page itself is open.
        for page in ["/", "/users", "/whitelist", "/settings", "/reports", "/events", "/live", "/guide", "/account"] {
            let (status, _) = call("get", &format!("{url}{page}"), None, None);
            assert_eq!(status, 303, "{page} without a session");
        }
        assert_eq!(call("get", &format!("{url}/login"), None, None).0, 200);
        // A wrong token is refused.
        assert_eq!(call("get", &format!("{url}/api/v1/status"), Some("stl_wrong"), None).0, 401);
    })
    .await
    .expect("walk");
    let events = starling_agent::state::events(&console.db(), 0, Some(802), 10).expect("events");
    assert!(!events.is_empty(), "a refused token is an event");
    console.stop.cancel();
}

fn login(url: &str, name: &str, password: &str) -> Result<(String, String), u16> {
    let mut response = http()
        .post(&format!("{url}/api/v1/login"))
        .send_json(json!({"name": name, "password": password}))
        .expect("answer");
    if response.status() != 200 {
        return Err(response.status().as_u16());
    }
    let cookie = response.headers().get("set-cookie").expect("cookie").to_str().expect("text").to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let session = cookie.split(';').next().expect("pair").to_owned();
    let body: Value = response.body_mut().read_json().expect("json");
    Ok((session, body["csrf"].as_str().expect("csrf").to_owned()))
}

fn with_session(method: &str, url: &str, session: &str, csrf: Option<&str>, body: &Value) -> u16 {
    let agent = http();
    let mut request = if method == "put" { agent.put(url) } else { agent.post(url) };
    request = request.header("Cookie", session);
    if let Some(csrf) = csrf {
        request = request.header("X-CSRF-Token", csrf);
    }
    request.send_json(body).expect("answer").status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_csrf_settings_and_imports() {
    let console = Console::start().await;
    let (url, token, password) = (console.url.clone(), console.token.clone(), console.password.clone());
    tokio::task::spawn_blocking(move || {
        // The first administrator logs in with the printed password; a
        // wrong one is refused.
        assert_eq!(login(&url, "admin", "not the password"), Err(401));
        let (session, csrf) = login(&url, "admin", &password).expect("admin logs in");
        let setting = json!({"policy.mark_read": "true"});
        assert_eq!(with_session("put", &format!("{url}/api/v1/settings"), &session, None, &setting), 403, "no CSRF");
        assert_eq!(with_session("put", &format!("{url}/api/v1/settings"), &session, Some("forged"), &setting), 403);
        assert_eq!(with_session("put", &format!("{url}/api/v1/settings"), &session, Some(&csrf), &setting), 200);

        // A read-only account may look, not change.
        let (status, body) = call(
            "post",
            &format!("{url}/api/v1/accounts"),
            Some(&token),
            Some(&json!({"name": "auditor", "password": "a long enough one", "role": "read-only"})),
        );
        assert_eq!(status, 201, "{body}");
        let (viewer, viewer_csrf) = login(&url, "auditor", "a long enough one").expect("auditor logs in");
        let status = http().get(&format!("{url}/api/v1/status")).header("Cookie", &viewer).call().expect("status");
        assert_eq!(status.status(), 200);
        let change = json!({"policy.mark_read": "false"});
        assert_eq!(with_session("put", &format!("{url}/api/v1/settings"), &viewer, Some(&viewer_csrf), &change), 403);

        // Roles change and accounts go, never leaving no administrator.
        let role = |name: &str, role: &str| {
            call("put", &format!("{url}/api/v1/accounts/{name}/role"), Some(&token), Some(&json!({"role": role}))).0
        };
        assert_eq!(role("admin", "read-only"), 409, "the last administrator stays one");
        assert_eq!(role("auditor", "owner"), 422);
        assert_eq!(role("auditor", "admin"), 200);
        let currency = json!({"reports.currency": "USD"});
        assert_eq!(with_session("put", &format!("{url}/api/v1/settings"), &viewer, Some(&viewer_csrf), &currency), 200);
        assert_eq!(role("auditor", "read-only"), 200);
        let remove = |name: &str| call("delete", &format!("{url}/api/v1/accounts/{name}"), Some(&token), None).0;
        assert_eq!(remove("admin"), 409, "not one's own account");
        assert_eq!(remove("nobody"), 404);
        assert_eq!(remove("auditor"), 200);
        let gone = http().get(&format!("{url}/api/v1/status")).header("Cookie", &viewer).call().expect("status");
        assert_eq!(gone.status(), 401, "a removed account's sessions end");
        // Back, for what follows.
        let (status, _) = call(
            "post",
            &format!("{url}/api/v1/accounts"),
            Some(&token),
            Some(&json!({"name": "auditor", "password": "a long enough one", "role": "read-only"})),
        );
        assert_eq!(status, 201);

        // Settings are checked like the configuration file, all or none.
        let (status, body) = call(
            "put",
            &format!("{url}/api/v1/settings"),
            Some(&token),
            Some(&json!({"policy.spam_action": "tag", "rescan.time": "25:00"})),
        );
        assert_eq!(status, 422, "{body}");
        assert!(body.contains("rescan.time"), "{body}");
        let (_, body) = call("get", &format!("{url}/api/v1/settings"), Some(&token), None);
        let settings: Value = serde_json::from_str(&body).expect("json");
        let value = |key: &str| {
            settings["settings"].as_array().expect("list").iter().find(|s| s["key"] == key).expect(key)["value"].clone()
        };
        assert_eq!(value("policy.spam_action"), json!("spam-folder"), "nothing of a refused change is stored");
        assert_eq!(value("policy.mark_read"), json!(true));

        // A whitelist import: a preview, errors per line, nothing changed
        // until it is clean.
        let text = "@partner.example\n/unclosed(/\n10.0.0.0/8,office\n";
        let agent = http();
        let mut response = agent
            .post(&format!("{url}/api/v1/whitelist/import?dry_run=false"))
            .header("Authorization", &format!("Bearer {token}"))
            .send(text)
            .expect("answer");
        assert_eq!(response.status(), 422);
        let preview: Value = response.body_mut().read_json().expect("json");
        assert!(preview["errors"][0].as_str().expect("error").starts_with("line 2"), "{preview}");
        assert_eq!(preview["applied"], false);
        let mut response = agent
            .post(&format!("{url}/api/v1/whitelist/import"))
            .header("Authorization", &format!("Bearer {token}"))
            .send("@partner.example\n10.0.0.0/8,office\n")
            .expect("answer");
        let preview: Value = response.body_mut().read_json().expect("json");
        assert_eq!(preview["applied"], true, "{preview}");
        let (_, csv) = call("get", &format!("{url}/api/v1/whitelist/export?format=csv"), Some(&token), None);
        assert_eq!(csv, "entry,comment\n10.0.0.0/8,office\n@partner.example,\n");

        // Mailboxes: bulk actions say what was not done.
        let (status, _) =
            call("post", &format!("{url}/api/v1/users"), Some(&token), Some(&json!({"names": ["alice", "bob"]})));
        assert_eq!(status, 200);
        let (_, body) = call(
            "post",
            &format!("{url}/api/v1/users/actions"),
            Some(&token),
            Some(&json!({"names": ["alice", "nobody"], "action": "disable"})),
        );
        let outcome: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(outcome["done"]["alice"], "disabled");
        assert_eq!(outcome["failed"]["nobody"], "unknown mailbox");
    })
    .await
    .expect("scenario");
    let c = console.db();
    let stored = starling_agent::state::settings(&c).expect("settings");
    assert_eq!(stored.get("policy.mark_read"), Some(&json!(true)));
    assert_eq!(stored.get("reports.currency"), Some(&json!("USD")), "changed by the auditor while an admin");
    let changes =
        starling_agent::state::events(&c, 0, Some(starling_agent::events::ADMIN_CHANGED.id), 10).expect("events");
    assert!(!changes.is_empty(), "role changes and removals are logged");
    assert!(!starling_agent::state::mailbox(&c, "alice").expect("row").expect("alice").enabled);
    console.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_that_grow_with_use_are_paged() {
    let console = Console::start().await;
    let reports = starling_console::reports_dir(&console.config);
    std::fs::create_dir_all(&reports).expect("reports dir");
    for day in 0..70 {
        std::fs::write(reports.join(format!("last-24-hours-2026-01-{day:02}-0000.csv")), "period\n").expect("report");
    }
    let (url, token) = (console.url.clone(), console.token.clone());
    tokio::task::spawn_blocking(move || {
        let entries: String = (0..250).map(|i| format!("sender{i:03}.example,supplier {i}\n")).collect();
        let response = http()
            .post(&format!("{url}/api/v1/whitelist/import"))
            .header("Authorization", &format!("Bearer {token}"))
            .send(entries.as_str())
            .expect("answer");
        assert_eq!(response.status(), 200);
        let page = |path: &str| call("get", &format!("{url}{path}"), Some(&token), None).1;

        let first = page("/whitelist");
        assert!(first.contains("Entries (250)") && first.contains("Page 1 of 3"), "{first}");
        assert!(first.contains("sender099.example") && !first.contains("sender100.example"));
        let last = page("/whitelist?page=3");
        assert!(last.contains("sender249.example") && !last.contains("sender199.example"));
        let found = page("/whitelist?search=SUPPLIER%2024");
        assert!(found.contains("11 matching") && found.contains("sender024.example"), "{found}");
        assert!(!found.contains("Page 1 of"), "one page of matches needs no pager");

        let recent = page("/reports");
        assert!(recent.contains("Show all saved reports (8 older)"), "{recent}");
        assert_eq!(recent.matches(".csv</a>").count(), 62);
        let all = page("/reports?files=all");
        assert_eq!(all.matches(".csv</a>").count(), 70);
    })
    .await
    .expect("checks");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_milters_figures_are_on_the_dashboard_in_the_status_and_the_metrics() {
    use starling_agent::live::{Live, MilterOutcome};
    use starling_agent::policy::Class;
    let live = std::sync::Arc::new(Live::default());
    live.set_milter("127.0.0.1:8894".into());
    for outcome in [MilterOutcome::Decided(Class::Spam), MilterOutcome::Decided(Class::Clean), MilterOutcome::Unchecked]
    {
        live.milter_count(outcome, std::time::Duration::from_millis(2));
    }
    let console = Console::start_with(live).await;
    let (url, token, password) = (console.url.clone(), console.token.clone(), console.password.clone());
    tokio::task::spawn_blocking(move || {
        let (_, body) = call("get", &format!("{url}/api/v1/status"), Some(&token), None);
        let status: Value = serde_json::from_str(&body).expect("json");
        let milter = &status["live"]["milter"];
        assert_eq!(
            (milter["decided"].as_u64(), milter["spam"].as_u64(), milter["unchecked"].as_u64()),
            (Some(2), Some(1), Some(1))
        );
        let (_, metrics) = call("get", &format!("{url}/metrics"), Some(&token), None);
        assert!(metrics.contains("starling_agent_milter_decided 2"), "{metrics}");
        assert!(metrics.contains("starling_agent_milter_unchecked 1"), "{metrics}");
        let (session, _) = login(&url, "admin", &password).expect("admin logs in");
        let mut page = http().get(&format!("{url}/")).header("Cookie", &session).call().expect("dashboard");
        let html = page.body_mut().read_to_string().expect("html");
        assert!(html.contains("In-line filtering") && html.contains("127.0.0.1:8894"), "{html}");
        assert!(html.contains("2 messages decided before delivery (1 spam)"), "{html}");
    })
    .await
    .expect("checks");
    console.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn activation_codes_are_entered_checked_and_shown() {
    use starling_agent::activation::Activation;
    use starling_agent::state::{self, State};
    use starling_proto::activation::{Claims, CodePlan, Signer, public_key_text};
    let live = std::sync::Arc::new(starling_agent::live::Live::default());
    let console = Console::start_with(live.clone()).await;
    let (signer, _) = Signer::generate().expect("a key");
    let (stranger, _) = Signer::generate().expect("another key");
    let now = jiff::Timestamp::now().as_second();
    let claims = Claims {
        serial: 9,
        issued_at: now,
        expires_at: 0,
        organisation_id: 1,
        organisation: "local".into(),
        plan: CodePlan::Subscription,
        max_mailboxes: 0,
        purchase_url: "https://shop.example/".into(),
    };
    // An agent that met its network (the key pinned) and whose trial ended
    // yesterday.
    let c = console.db();
    state::meta_set(&c, "activation_key", &public_key_text(&signer.public_key())).expect("meta");
    let says = json!({"organisation": "local", "active": true, "plan": "trial", "expires_at": now - 86_400,
        "revoked_through": 0, "max_mailboxes": 0, "purchase_url": "https://shop.example/"});
    state::meta_set(&c, "activation_network", &says.to_string()).expect("meta");
    let config = console.config.clone();
    let state = State::open(&config.state_dir).expect("state");
    let events = starling_agent::events::Events::new(None);
    let activation = Activation::open(&config.activation, &config.notify, state, events).await.expect("activation");
    live.set_activation(activation.clone());

    let (url, token, password) = (console.url.clone(), console.token.clone(), console.password.clone());
    let (valid, foreign) = (signer.issue(&claims).expect("code"), stranger.issue(&claims).expect("code"));
    let state_file = config.state_dir.join(state::FILE_NAME);
    let db = move || state::open(&state_file).expect("db");
    tokio::task::spawn_blocking(move || {
        let (_, body) = call("get", &format!("{url}/api/v1/activation"), Some(&token), None);
        let shown: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            (shown["activation"]["state"].as_str(), shown["activation"]["filtering"].as_bool()),
            (Some("expired"), Some(false))
        );
        let (session, csrf) = login(&url, "admin", &password).expect("admin logs in");
        let page = |path: &str| {
            let mut page = http().get(&format!("{url}{path}")).header("Cookie", &session).call().expect("page");
            page.body_mut().read_to_string().expect("html")
        };
        let dashboard = page("/");
        assert!(dashboard.contains("Filtering stopped: its trial expired"), "{dashboard}");
        assert!(dashboard.contains("https://shop.example/"), "the purchase address on the banner");
        let subscription = page("/subscription");
        assert!(subscription.contains("Expired: filtering stopped") && subscription.contains("name=\"code\""));

        // Refused with a reason: not a code, another network's.
        let enter = |code: &str, auth: &str| {
            call("post", &format!("{url}/api/v1/activation"), Some(auth), Some(&json!({"code": code})))
        };
        let (status, body) = enter("hello", &token);
        assert!(status == 400 && body.contains("STARLING1-"), "{status} {body}");
        let (status, body) = enter(&foreign, &token);
        assert!(status == 400 && body.contains("another network"), "{status} {body}");
        assert_eq!(state::meta_get(&db(), "activation_code").expect("meta"), None);
        // A read-only account may not install one.
        let auditor = json!({"name": "auditor", "password": "a long enough one", "role": "read-only"});
        assert_eq!(call("post", &format!("{url}/api/v1/accounts"), Some(&token), Some(&auditor)).0, 201);
        let (viewer, viewer_csrf) = login(&url, "auditor", "a long enough one").expect("auditor logs in");
        let entry = json!({"code": valid});
        assert_eq!(with_session("post", &format!("{url}/api/v1/activation"), &viewer, Some(&viewer_csrf), &entry), 403);
        // The administrator's, through the page's form (CSRF-protected).
        assert_eq!(with_session("post", &format!("{url}/api/v1/activation"), &session, None, &entry), 403, "no CSRF");
        let form = format!("csrf={csrf}&code={}", valid);
        let answer = http()
            .post(&format!("{url}/subscription/activate"))
            .header("Cookie", &session)
            .content_type("application/x-www-form-urlencoded")
            .send(form)
            .expect("form");
        let location = answer.headers().get("location").expect("a redirect").to_str().expect("text").to_owned();
        assert!(location.starts_with("/subscription?done=Activation%20code%20installed"), "{location}");
        assert_eq!(state::meta_get(&db(), "activation_code").expect("meta").as_deref(), Some(valid.as_str()));
        // Through the API as well (the same code again).
        let (status, body) = enter(&valid, &token);
        let installed: Value = serde_json::from_str(&body).expect("json");
        assert!(status == 200 && installed["serial"] == 9 && installed["organisation"] == "local", "{status} {body}");
    })
    .await
    .expect("checks");

    // The agent takes it at its next look at the state database.
    activation.reload().await;
    assert!(activation.standing().filtering);
    let (url, token) = (console.url.clone(), console.token.clone());
    let password = console.password.clone();
    tokio::task::spawn_blocking(move || {
        let (_, metrics) = call("get", &format!("{url}/metrics"), Some(&token), None);
        assert!(metrics.contains("starling_agent_filtering_active 1"), "{metrics}");
        let (session, _) = login(&url, "admin", &password).expect("admin logs in");
        let mut page = http().get(&format!("{url}/")).header("Cookie", &session).call().expect("dashboard");
        let html = page.body_mut().read_to_string().expect("html");
        assert!(!html.contains("subscription-banner"), "no banner once active");
    })
    .await
    .expect("checks");
    console.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn guessing_a_password_is_held_up_after_a_few_tries() {
    let console = Console::start().await;
    let (url, token, password) = (console.url.clone(), console.token.clone(), console.password.clone());
    tokio::task::spawn_blocking(move || {
        let attempt = |name: &str, password: &str| {
            let response = http()
                .post(&format!("{url}/api/v1/login"))
                .send_json(json!({"name": name, "password": password}))
                .expect("answer");
            let retry = response.headers().get("retry-after").map(|v| v.to_str().expect("text").to_owned());
            (response.status().as_u16(), retry)
        };
        // A burst of 50 guesses: only the first few are even checked.
        let answers: Vec<(u16, Option<String>)> = (0..50).map(|i| attempt("admin", &format!("guess {i}"))).collect();
        let checked = answers.iter().filter(|(status, _)| *status == 401).count();
        assert_eq!(checked, starling_console::throttle::FREE_FAILURES as usize, "{answers:?}");
        let held = &answers[checked..];
        assert!(held.iter().all(|(status, retry)| *status == 429 && retry.is_some()), "{held:?}");
        // Held means held: even the right password waits.
        assert_eq!(attempt("admin", &password).0, 429);
        // Other accounts and tokens are not held up.
        let auditor = json!({"name": "auditor", "password": "a long enough one", "role": "read-only"});
        assert_eq!(call("post", &format!("{url}/api/v1/accounts"), Some(&token), Some(&auditor)).0, 201);
        assert_eq!(attempt("auditor", "a long enough one").0, 200);
        // The form says so too.
        let form = "name=admin&password=x&next=/";
        let answer = http()
            .post(&format!("{url}/login"))
            .content_type("application/x-www-form-urlencoded")
            .send(form)
            .expect("form");
        let location = answer.headers().get("location").expect("redirect").to_str().expect("text").to_owned();
        assert!(location.contains("Too%20many%20failed%20logins"), "{location}");
    })
    .await
    .expect("checks");
    console.stop.cancel();
}
