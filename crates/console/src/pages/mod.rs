//! The console's HTML pages: server-rendered with askama templates
//! (`templates/`), plain forms (no JavaScript), every field labelled. Each
//! page calls the same functions as the API route that does the same.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use serde::Deserialize;
use starling_agent::activation::Phase;
use starling_agent::live::ActivationView;
use starling_agent::settings;
use starling_agent::state;

use crate::App;
use crate::api::{self, ApiError};
use crate::auth::{self, Caller};
use crate::stats::{self, Period};

mod accounts;
mod control;
mod history;
mod mailboxes;
mod whitelists;

use accounts::*;
use control::*;
use history::*;
use mailboxes::*;
use whitelists::*;

/// The end-user guide (`docs/user-guide.md`), served at `/guide`.
pub const USER_GUIDE: &str = include_str!("../../../../docs/user-guide.md");

/// The pages' router.
pub fn router() -> Router<App> {
    Router::new()
        .route("/login", get(login_page).post(login_form))
        .route("/logout", post(logout))
        .route("/", get(dashboard))
        .route("/users", get(users))
        .route("/users/actions", post(user_actions))
        .route("/users/add", post(users_add))
        .route("/users/{name}", get(user))
        .route("/whitelist", get(whitelist))
        .route("/whitelist/add", post(whitelist_add))
        .route("/whitelist/edit", post(whitelist_edit))
        .route("/whitelist/remove", post(whitelist_remove))
        .route("/whitelist/import", post(whitelist_import))
        .route("/whitelist/import/apply", post(whitelist_import_apply))
        .route("/settings", get(settings_page).post(settings_form))
        .route("/reports", get(reports))
        .route("/reports/write", post(report_write))
        .route("/events", get(events))
        .route("/live", get(live))
        .route("/subscription", get(subscription))
        .route("/subscription/activate", post(subscription_activate))
        .route("/guide", get(guide))
        .route("/guide.md", get(guide_markdown))
        .route("/account", get(account))
        .route("/account/password", post(account_password))
        .route("/account/add", post(account_add))
        .route("/account/role", post(account_role))
        .route("/account/remove", post(account_remove))
        .route("/account/tokens", post(token_add))
        .route("/account/tokens/remove", post(token_remove))
}

/// What every page's frame shows.
#[derive(Default)]
pub struct Frame {
    /// The subscription's warning shown on every page ("" when none).
    banner: String,
    /// Whether the banner says filtering stopped.
    banner_bad: bool,
    user: String,
    role: &'static str,
    csrf: String,
    active: &'static str,
    notice: String,
    error: String,
}

impl Frame {
    fn new(app: &App, caller: &Caller, active: &'static str, flash: &Flash) -> Frame {
        let (banner, banner_bad) = banner(app.live().snapshot().activation.as_ref());
        Frame {
            banner,
            banner_bad,
            user: caller.name.clone(),
            role: caller.role.as_str(),
            csrf: caller.csrf.clone().unwrap_or_default(),
            active,
            notice: flash.done.clone().unwrap_or_default(),
            error: flash.error.clone().unwrap_or_default(),
        }
    }

    /// Whether a navigation link is this page's.
    pub fn is_active(&self, href: &str) -> bool {
        href == self.active
    }

    /// The navigation links.
    pub fn nav(&self) -> [(&'static str, &'static str); 10] {
        [
            ("/", "Dashboard"),
            ("/users", "Users"),
            ("/whitelist", "Whitelist"),
            ("/settings", "Settings"),
            ("/reports", "Reports"),
            ("/events", "Events"),
            ("/live", "Live"),
            ("/subscription", "Subscription"),
            ("/guide", "User guide"),
            ("/account", "Account"),
        ]
    }
}

/// The banner every page shows while the subscription needs attention, and
/// whether it says filtering stopped.
fn banner(activation: Option<&ActivationView>) -> (String, bool) {
    let Some(view) = activation else { return (String::new(), false) };
    let standing = &view.standing;
    let buy =
        if standing.purchase_url.is_empty() { String::new() } else { format!(" Renew at {}.", standing.purchase_url) };
    if !standing.filtering {
        let text = format!(
            "Filtering stopped: {}. Mail is delivered untouched. Install a new activation code on the Subscription page.{buy}",
            standing.detail
        );
        return (text, true);
    }
    let mut parts = Vec::new();
    if standing.state == Phase::Ending {
        parts.push(format!("The {} ends soon: {}.{buy}", standing.plan, standing.detail));
    }
    if !view.over_limit.is_empty() {
        parts.push(format!(
            "{} enabled mailbox(es) beyond the plan's limit of {} are not filtered.",
            view.over_limit.len(),
            standing.max_mailboxes
        ));
    }
    (parts.join(" "), false)
}

/// A notice or error carried to the next page in its query.
#[derive(Deserialize, Default)]
pub struct Flash {
    done: Option<String>,
    error: Option<String>,
}

/// A page's error.
pub struct PageError(ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError(e)
    }
}

impl From<state::StateError> for PageError {
    fn from(e: state::StateError) -> PageError {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let response = self.0.into_response();
        let status = response.status();
        (
            status,
            Html(format!(
                "<!doctype html><title>Error</title><h1>{status}</h1><p><a href=\"/\">Back to the dashboard</a></p>"
            )),
        )
            .into_response()
    }
}

type Page = Result<Response, PageError>;

fn render(template: &impl Template) -> Page {
    match template.render() {
        Ok(html) => Ok(Html(html).into_response()),
        Err(e) => Err(PageError(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("template: {e}")))),
    }
}

/// Where to go after a form: `back` with a notice or an error.
fn back(to: &str, result: Result<String, String>) -> Response {
    let to = if to.starts_with('/') && !to.starts_with("//") { to } else { "/" };
    let separator = if to.contains('?') { '&' } else { '?' };
    let (key, text) = match result {
        Ok(text) => ("done", text),
        Err(text) => ("error", text),
    };
    Redirect::to(&format!("{to}{separator}{key}={}", auth::urlencode(&text))).into_response()
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn api_message(e: ApiError) -> String {
    let value = serde_json::to_value(&e).unwrap_or_default();
    let mut text = value["error"].as_str().unwrap_or("failed").to_owned();
    if let Some(problems) = value["problems"].as_array() {
        for p in problems {
            text.push_str("; ");
            text.push_str(p.as_str().unwrap_or_default());
        }
    }
    text
}

fn when(at: i64) -> String {
    jiff::Timestamp::from_second(at)
        .map(|t| t.to_zoned_datetime(jiff::tz::TimeZone::system()).strftime("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

// ---------------------------------------------------------------- login

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    title: &'static str,
    frame: Frame,
    next: String,
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
    error: Option<String>,
    done: Option<String>,
}

async fn login_page(Query(q): Query<LoginQuery>) -> Page {
    let frame = Frame { error: q.error.unwrap_or_default(), notice: q.done.unwrap_or_default(), ..Frame::default() };
    render(&LoginPage { title: "Log in", frame, next: q.next.unwrap_or_else(|| "/".into()) })
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
    #[serde(default)]
    next: String,
}

async fn login_form(State(app): State<App>, Form(form): Form<LoginForm>) -> Page {
    let next = if form.next.starts_with('/') && !form.next.starts_with("//") { form.next } else { "/".into() };
    let (id, _) = match api::check_login(&app, &form.name, &form.password).await {
        Ok(found) => found,
        Err(e) => {
            let text = if e.status() == StatusCode::TOO_MANY_REQUESTS {
                format!("{}.", capitalised(e.message()))
            } else {
                "Wrong name or password.".to_owned()
            };
            return Ok(back(&format!("/login?next={}", auth::urlencode(&next)), Err(text)));
        }
    };
    let (cookie, _) = api::start_session(&app, id).await?;
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response())
}

async fn logout(State(app): State<App>, headers: HeaderMap) -> Page {
    if let Some(secret) = auth::cookie(&headers, auth::COOKIE).map(str::to_owned) {
        app.db(move |c| auth::end_session(c, &secret)).await?;
    }
    let expired = format!("{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0", auth::COOKIE);
    Ok(([(header::SET_COOKIE, expired)], back("/login", Ok("Logged out.".into()))).into_response())
}

// ---------------------------------------------------------------- dashboard

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    title: &'static str,
    frame: Frame,
    status: api::Status,
    uptime: String,
    new_version: Option<String>,
    network_state: &'static str,
    network_state_text: &'static str,
    network_detail: String,
    latency: String,
    plan: String,
    subscription_detail: String,
    summary: stats::Summary,
    connected: usize,
    failing: Vec<(String, String, String)>,
}

fn milliseconds(value: Option<f64>) -> String {
    value.map_or_else(|| "not measured yet".into(), |ms| format!("{ms:.1} ms"))
}

async fn dashboard(State(app): State<App>, Extension(caller): Extension<Caller>, Query(flash): Query<Flash>) -> Page {
    let status = api::status_now(&app).await?;
    let (_, summary) = api::stats_for(&app, Period::Day, None).await?;
    let uptime_seconds = jiff::Timestamp::now().as_second() - status.live.started;
    let uptime =
        format!("{}d {}h {}m", uptime_seconds / 86_400, uptime_seconds % 86_400 / 3600, uptime_seconds % 3600 / 60);
    let network = status.live.network.clone();
    let (network_state, network_state_text, network_detail) = match &network {
        None => ("unknown", "Not started", String::new()),
        Some(n) => match n.state.as_str() {
            "up" => ("up", "Reachable", format!("Node version {}.", n.node_version)),
            "down" => {
                ("down", "Unreachable", format!("{} Mail stays put and is re-checked when it is back.", n.detail))
            }
            "rejected" => ("rejected", "Refused", n.detail.clone()),
            _ => ("unknown", "Connecting", String::new()),
        },
    };
    let latency = network.as_ref().map_or_else(
        || "not measured yet".into(),
        |n| format!("{} (mean {})", milliseconds(n.latency_ms), milliseconds(n.latency_avg_ms)),
    );
    let (plan, subscription_detail) = match network.as_ref().and_then(|n| n.organisation.clone()) {
        None => ("Unknown".to_owned(), "The network has not answered yet.".to_owned()),
        Some((name, plan, expires)) => {
            let expiry = if expires == 0 { "does not expire".to_owned() } else { format!("expires {}", when(expires)) };
            let mut plan = plan;
            if let Some(first) = plan.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            (plan, format!("Organisation {name}; {expiry}."))
        }
    };
    let connected = status.live.connections.values().filter(|c| c.connected).count();
    let failing = status
        .live
        .connections
        .iter()
        .filter(|(_, c)| !c.connected)
        .map(|(name, c)| (name.clone(), when(c.since), c.error.clone()))
        .collect();
    let new_version = network.as_ref().and_then(|n| n.new_version.clone());
    render(&Dashboard {
        title: "Dashboard",
        frame: Frame::new(&app, &caller, "/", &flash),
        status,
        uptime,
        new_version,
        network_state,
        network_state_text,
        network_detail,
        latency,
        plan,
        subscription_detail,
        summary,
        connected,
        failing,
    })
}

// ---------------------------------------------------------------- guide

#[derive(Template)]
#[template(path = "guide.html")]
struct GuidePage {
    title: &'static str,
    frame: Frame,
    body: String,
}

async fn guide(State(app): State<App>, Extension(caller): Extension<Caller>, Query(flash): Query<Flash>) -> Page {
    let parser = pulldown_cmark::Parser::new_ext(USER_GUIDE, pulldown_cmark::Options::ENABLE_TABLES);
    let mut body = String::new();
    // The guide is ours, but raw HTML in it is shown as text all the same.
    let events = parser.map(|event| match event {
        pulldown_cmark::Event::Html(text) | pulldown_cmark::Event::InlineHtml(text) => {
            pulldown_cmark::Event::Text(text)
        }
        other => other,
    });
    pulldown_cmark::html::push_html(&mut body, events);
    render(&GuidePage { title: "User guide", frame: Frame::new(&app, &caller, "/guide", &flash), body })
}

async fn guide_markdown() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/markdown; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"starling-user-guide.md\""),
        ],
        USER_GUIDE,
    )
        .into_response()
}
