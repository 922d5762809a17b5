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

/// The end-user guide (`docs/user-guide.md`), served at `/guide`.
pub const USER_GUIDE: &str = include_str!("../../../docs/user-guide.md");

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
        Some(n) => match n.state {
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

// ---------------------------------------------------------------- users

struct UserLine {
    name: String,
    href: String,
    enabled: bool,
    feedback: bool,
    model: bool,
    present: bool,
    source: String,
    checked: u32,
    caught: u64,
    blocked: u32,
    unblocked: u32,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    title: &'static str,
    frame: Frame,
    search: String,
    total: u64,
    first: u64,
    last: u64,
    rows: Vec<UserLine>,
    page: u64,
    pages: u64,
    previous: Option<String>,
    next: Option<String>,
    back: String,
}

#[derive(Deserialize)]
struct UsersQuery {
    #[serde(default)]
    search: String,
    #[serde(default)]
    page: u64,
    #[serde(flatten)]
    flash: Flash,
}

const PAGE_SIZE: u64 = 50;

async fn users(State(app): State<App>, Extension(caller): Extension<Caller>, Query(q): Query<UsersQuery>) -> Page {
    let page = q.page.max(1);
    let offset = ((page - 1) * PAGE_SIZE).min(u64::from(u32::MAX)) as u32;
    let listing =
        api::users_page(&app, api::UsersQuery { search: q.search.clone(), offset, limit: Some(PAGE_SIZE as u32) })
            .await?;
    let pages = listing.total.div_ceil(PAGE_SIZE).max(1);
    let link = |p: u64| format!("/users?search={}&page={p}", auth::urlencode(&q.search));
    let rows = listing
        .users
        .into_iter()
        .map(|u| UserLine {
            href: auth::urlencode(&u.mailbox.name),
            name: u.mailbox.name,
            enabled: u.mailbox.enabled,
            feedback: u.mailbox.feedback,
            model: u.mailbox.model,
            present: u.mailbox.present,
            source: u.mailbox.source,
            checked: u.last_30_days.checked,
            caught: stats::caught(&u.last_30_days),
            blocked: u.last_30_days.blocked,
            unblocked: u.last_30_days.unblocked,
        })
        .collect::<Vec<_>>();
    let first = if rows.is_empty() { 0 } else { u64::from(offset) + 1 };
    render(&UsersPage {
        title: "Users",
        frame: Frame::new(&app, &caller, "/users", &q.flash),
        last: u64::from(offset) + rows.len() as u64,
        first,
        total: listing.total,
        rows,
        page,
        pages,
        previous: (page > 1).then(|| link(page - 1)),
        next: (page < pages).then(|| link(page + 1)),
        back: link(page),
        search: q.search,
    })
}

async fn user_actions(State(app): State<App>, Extension(caller): Extension<Caller>, body: axum::body::Bytes) -> Page {
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let names: Vec<String> = fields.iter().filter(|(k, _)| k == "names").map(|(_, v)| v.clone()).collect();
    let to = field("back");
    if names.is_empty() {
        return Ok(back(&to, Err("Select at least one mailbox.".into())));
    }
    let action = api::UserActions { names, action: field("action"), hours: None };
    let outcome = match api::apply_user_actions(&app, action.clone(), &caller.name).await {
        Ok(o) => o,
        Err(e) => return Ok(back(&to, Err(api_message(e)))),
    };
    let mut text = format!("{}: {} mailboxes.", action.action, outcome.done.len());
    if !outcome.failed.is_empty() {
        let failed: Vec<String> = outcome.failed.iter().map(|(n, why)| format!("{n} ({why})")).collect();
        text.push_str(&format!(" Not done: {}.", failed.join(", ")));
    }
    Ok(back(&to, Ok(text)))
}

#[derive(Deserialize)]
struct AddForm {
    csv: String,
}

async fn users_add(State(app): State<App>, Form(form): Form<AddForm>) -> Page {
    let (rows, problems) = starling_agent::users::parse_csv(&form.csv);
    if !problems.is_empty() {
        return Ok(back("/users", Err(format!("Nothing added: {}", problems.join("; ")))));
    }
    let count = rows.len();
    let (added, _) = api::add_mailboxes(&app, rows, "console", false).await?;
    Ok(back("/users", Ok(format!("{added} of {count} mailboxes added (the others were known)."))))
}

#[derive(Template)]
#[template(path = "user.html")]
struct UserPage {
    title: &'static str,
    frame: Frame,
    detail: api::UserDetail,
    href: String,
    charts: Vec<(String, String)>,
}

async fn user(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(flash): Query<Flash>,
) -> Page {
    let detail = api::user_detail(&app, name.clone()).await?;
    let charts = stats::charts(&detail.days, "last 30 days");
    render(&UserPage {
        title: "User",
        frame: Frame::new(&app, &caller, "/users", &flash),
        href: auth::urlencode(&name),
        detail,
        charts,
    })
}

// ---------------------------------------------------------------- whitelist

#[derive(Template)]
#[template(path = "whitelist.html")]
struct WhitelistPage {
    title: &'static str,
    frame: Frame,
    scope: String,
    scope_q: String,
    search: String,
    rows: Vec<state::WhitelistRow>,
    /// Entries in the list, and of those matching the search.
    total: usize,
    matching: usize,
    first: usize,
    page: usize,
    pages: usize,
    previous: Option<String>,
    next: Option<String>,
}

#[derive(Deserialize)]
struct ScopeQuery {
    #[serde(default)]
    scope: String,
    #[serde(default)]
    search: String,
    #[serde(default)]
    page: usize,
    #[serde(flatten)]
    flash: Flash,
}

/// Whitelist entries on a page (each is a form).
const WHITELIST_PAGE_SIZE: usize = 100;

async fn whitelist(State(app): State<App>, Extension(caller): Extension<Caller>, Query(q): Query<ScopeQuery>) -> Page {
    let scope = q.scope.clone();
    let rows = app.db(move |c| state::whitelist(c, Some(&scope))).await?;
    let total = rows.len();
    let needle = q.search.trim().to_lowercase();
    let matching: Vec<state::WhitelistRow> = rows
        .into_iter()
        .filter(|r| {
            needle.is_empty() || r.entry.to_lowercase().contains(&needle) || r.comment.to_lowercase().contains(&needle)
        })
        .collect();
    let pages = matching.len().div_ceil(WHITELIST_PAGE_SIZE).max(1);
    let page = q.page.clamp(1, pages);
    let link = |p: usize| {
        format!("/whitelist?scope={}&search={}&page={p}", auth::urlencode(&q.scope), auth::urlencode(&q.search))
    };
    let first = (page - 1) * WHITELIST_PAGE_SIZE;
    render(&WhitelistPage {
        title: "Whitelist",
        frame: Frame::new(&app, &caller, "/whitelist", &q.flash),
        scope_q: auth::urlencode(&q.scope),
        scope: q.scope.clone(),
        search: q.search.clone(),
        total,
        matching: matching.len(),
        first: first + 1,
        rows: matching.into_iter().skip(first).take(WHITELIST_PAGE_SIZE).collect(),
        page,
        pages,
        previous: (page > 1).then(|| link(page - 1)),
        next: (page < pages).then(|| link(page + 1)),
    })
}

fn whitelist_back(scope: &str) -> String {
    format!("/whitelist?scope={}", auth::urlencode(scope))
}

#[derive(Deserialize)]
struct EntryForm {
    #[serde(default)]
    scope: String,
    entry: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    old_entry: String,
}

async fn whitelist_add(State(app): State<App>, Form(form): Form<EntryForm>) -> Page {
    let to = whitelist_back(&form.scope);
    let entry = match api::parse_entry(&form.entry) {
        Ok(e) => e,
        Err(e) => return Ok(back(&to, Err(api_message(e)))),
    };
    let stored = entry.clone();
    let added = app.db(move |c| state::whitelist_add(c, &form.scope, &stored, &form.comment)).await?;
    Ok(back(&to, Ok(if added { format!("{entry} added.") } else { format!("{entry} was listed already.") })))
}

async fn whitelist_edit(State(app): State<App>, Form(form): Form<EntryForm>) -> Page {
    let to = whitelist_back(&form.scope);
    let entry = match api::parse_entry(&form.entry) {
        Ok(e) => e,
        Err(e) => return Ok(back(&to, Err(api_message(e)))),
    };
    let stored = entry.clone();
    let done =
        app.db(move |c| state::whitelist_replace(c, &form.scope, &form.old_entry, &stored, &form.comment)).await?;
    Ok(back(&to, if done { Ok(format!("{entry} saved.")) } else { Err("That entry is no longer listed.".into()) }))
}

async fn whitelist_remove(State(app): State<App>, Form(form): Form<EntryForm>) -> Page {
    let to = whitelist_back(&form.scope);
    let entry = form.entry.clone();
    let removed = app.db(move |c| state::whitelist_remove(c, &form.scope, &form.entry)).await?;
    Ok(back(&to, if removed { Ok(format!("{entry} removed.")) } else { Err(format!("{entry} is not listed.")) }))
}

#[derive(Template)]
#[template(path = "import_preview.html")]
struct ImportPreviewPage {
    title: &'static str,
    frame: Frame,
    scope: String,
    text: String,
    preview: api::ImportPreview,
}

/// Largest whitelist import read.
const IMPORT_LIMIT: usize = 8 << 20;

async fn whitelist_import(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    mut multipart: Multipart,
) -> Page {
    let (mut scope, mut text) = (String::new(), String::new());
    while let Ok(Some(field)) = multipart.next_field().await {
        let name = field.name().unwrap_or_default().to_owned();
        let Ok(bytes) = field.bytes().await else { break };
        if bytes.len() > IMPORT_LIMIT {
            return Ok(back("/whitelist", Err("The file is too large (at most 8 MiB).".into())));
        }
        let value = String::from_utf8_lossy(&bytes).into_owned();
        match name.as_str() {
            "scope" => scope = value,
            "file" | "text" if !value.trim().is_empty() => {
                text.push_str(&value);
                if !text.ends_with('\n') {
                    text.push('\n');
                }
            }
            _ => {}
        }
    }
    if text.trim().is_empty() {
        return Ok(back(&whitelist_back(&scope), Err("Choose a file or paste entries to import.".into())));
    }
    let preview = api::import_whitelist(&app, scope.clone(), &text, true).await?;
    let frame = Frame::new(&app, &caller, "/whitelist", &Flash::default());
    render(&ImportPreviewPage { title: "Import preview", frame, scope, text, preview })
}

#[derive(Deserialize)]
struct ApplyForm {
    #[serde(default)]
    scope: String,
    text: String,
}

async fn whitelist_import_apply(State(app): State<App>, Form(form): Form<ApplyForm>) -> Page {
    let to = whitelist_back(&form.scope);
    match api::import_whitelist(&app, form.scope, &form.text, false).await {
        Ok(p) if p.applied => {
            Ok(back(&to, Ok(format!("Imported: {} added, {} comments changed.", p.add.len(), p.update.len()))))
        }
        Ok(p) => Ok(back(&to, Err(format!("Nothing imported: {}", p.errors.join("; "))))),
        Err(e) => Ok(back(&to, Err(api_message(e)))),
    }
}

// ---------------------------------------------------------------- settings

struct Field {
    key: &'static str,
    id: String,
    label: &'static str,
    help: &'static str,
    kind: &'static str,
    choices: Vec<&'static str>,
    value: String,
    file_value: String,
    stored: bool,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    title: &'static str,
    frame: Frame,
    groups: Vec<(&'static str, Vec<Field>)>,
    problems: Vec<String>,
}

async fn settings_page(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Query(flash): Query<Flash>,
) -> Page {
    let (views, problems) = api::settings_view(&app).await?;
    let mut groups: Vec<(&'static str, Vec<Field>)> = Vec::new();
    for view in views {
        let s = view.setting;
        let (kind, choices) = match s.kind {
            settings::Kind::Bool => ("bool", Vec::new()),
            settings::Kind::Choice(choices) => ("choice", choices.to_vec()),
            _ => ("text", Vec::new()),
        };
        let field = Field {
            key: s.key,
            id: s.key.replace('.', "-"),
            label: s.label,
            help: s.help,
            kind,
            choices,
            value: settings::display(&view.value),
            file_value: settings::display(&view.file_value),
            stored: view.stored,
        };
        match groups.iter_mut().find(|(g, _)| *g == s.group) {
            Some((_, fields)) => fields.push(field),
            None => groups.push((s.group, vec![field])),
        }
    }
    render(&SettingsPage { title: "Settings", frame: Frame::new(&app, &caller, "/settings", &flash), groups, problems })
}

async fn settings_form(State(app): State<App>, Extension(caller): Extension<Caller>, body: axum::body::Bytes) -> Page {
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    // A checkbox sends "false" (hidden) and, when ticked, "true": the last wins.
    let mut changes: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for (key, value) in fields {
        if settings::find(&key).is_some() {
            changes.insert(key, serde_json::Value::String(value));
        }
    }
    match api::change_settings(&app, changes, &caller.name).await {
        Ok(changed) if changed.is_empty() => Ok(back("/settings", Ok("Nothing changed.".into()))),
        Ok(changed) => Ok(back("/settings", Ok(format!("Saved: {}. They apply within seconds.", changed.join(", "))))),
        Err(e) => Ok(back("/settings", Err(api_message(e)))),
    }
}

// ---------------------------------------------------------------- reports

#[derive(Template)]
#[template(path = "reports.html")]
struct ReportsPage {
    title: &'static str,
    frame: Frame,
    period: &'static str,
    periods: [(&'static str, &'static str); 3],
    summary: stats::Summary,
    accuracy: String,
    unblock_rate: String,
    hours_saved: String,
    money_saved: String,
    seconds_per_spam: u32,
    hourly_cost: f64,
    charts: Vec<(String, String)>,
    files: Vec<ReportLine>,
    /// Saved reports not listed (`files=all` lists them).
    more: usize,
    dir: String,
}

struct ReportLine {
    name: String,
    written: String,
    bytes: u64,
    graph: Option<String>,
}

#[derive(Deserialize)]
struct PeriodQuery {
    period: Option<String>,
    /// `all`: every saved report, not only the newest.
    files: Option<String>,
    #[serde(flatten)]
    flash: Flash,
}

/// Saved reports listed by default, newest first.
const REPORTS_SHOWN: usize = 62;

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "–".into(), |v| format!("{v:.1} %"))
}

async fn reports(State(app): State<App>, Extension(caller): Extension<Caller>, Query(q): Query<PeriodQuery>) -> Page {
    let period = q.period.as_deref().and_then(Period::parse).unwrap_or(Period::Day);
    let (buckets, summary) = api::stats_for(&app, period, None).await?;
    let what = match period {
        Period::Day => "last 24 hours",
        Period::FiveDays => "last 5 days",
        _ => "last 30 days",
    };
    let (config, _) = app.config().await;
    let dir = crate::reports_dir(&config);
    let mut files: Vec<ReportLine> = stats::report_files(&dir)
        .into_iter()
        .map(|f| ReportLine { name: f.name, written: when(f.written), bytes: f.bytes, graph: f.graph })
        .collect();
    // A month of the daily schedule's reports unless all are asked for.
    let shown = if q.files.as_deref() == Some("all") { files.len() } else { REPORTS_SHOWN };
    let more = files.len().saturating_sub(shown);
    files.truncate(shown);
    render(&ReportsPage {
        title: "Reports",
        frame: Frame::new(&app, &caller, "/reports", &q.flash),
        period: period.name(),
        periods: [("24h", "Last 24 hours"), ("5d", "Last 5 days"), ("30d", "Last 30 days")],
        accuracy: percent(summary.accuracy),
        unblock_rate: percent(summary.unblock_rate),
        hours_saved: format!("{:.2}", summary.hours_saved),
        money_saved: format!("{:.2}", summary.money_saved),
        seconds_per_spam: config.reports.seconds_per_spam,
        hourly_cost: config.reports.hourly_cost,
        charts: stats::charts(&buckets, what),
        summary,
        files,
        more,
        dir: dir.display().to_string(),
    })
}

#[derive(Deserialize)]
struct KindForm {
    kind: String,
}

async fn report_write(State(app): State<App>, Form(form): Form<KindForm>) -> Page {
    let Some(kind) = stats::KINDS.iter().copied().find(|k| *k == form.kind) else {
        return Ok(back("/reports", Err(format!("Unknown report kind {:?}.", form.kind))));
    };
    let (config, _) = app.config().await;
    stats::write_kinds(&app, config, vec![kind], jiff::Timestamp::now()).await;
    Ok(back("/reports", Ok(format!("Report {kind} written."))))
}

// ---------------------------------------------------------------- subscription

#[derive(Template)]
#[template(path = "subscription.html")]
struct SubscriptionPage {
    title: &'static str,
    frame: Frame,
    view: Option<ActivationView>,
    state_text: &'static str,
    expires: String,
    mailboxes: String,
    new_version: Option<String>,
    release_notes_url: String,
}

async fn subscription(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Query(flash): Query<Flash>,
) -> Page {
    let snapshot = app.live().snapshot();
    let view = snapshot.activation.clone();
    let state_text = match view.as_ref().map(|v| v.standing.state) {
        None | Some(Phase::Unknown) => "Not known yet",
        Some(Phase::Active) => "Active",
        Some(Phase::Ending) => "Ending soon",
        Some(Phase::Expired) => "Expired: filtering stopped",
        Some(Phase::Revoked) => "Revoked: filtering stopped",
        Some(Phase::Disabled) => "Disabled by the network operator: filtering stopped",
    };
    let expires = match view.as_ref().map(|v| (v.standing.expires_at, v.standing.days_left)) {
        None | Some((0, _)) => "never".to_owned(),
        Some((at, Some(days))) => format!("{} ({days} day(s) left)", when(at)),
        Some((at, None)) => when(at),
    };
    let mailboxes = match view.as_ref().map(|v| v.standing.max_mailboxes) {
        None | Some(0) => "no limit".to_owned(),
        Some(n) => format!("up to {n}"),
    };
    let network = snapshot.network.clone();
    render(&SubscriptionPage {
        title: "Subscription",
        frame: Frame::new(&app, &caller, "/subscription", &flash),
        view,
        state_text,
        expires,
        mailboxes,
        new_version: network.as_ref().and_then(|n| n.new_version.clone()),
        release_notes_url: network.map(|n| n.release_notes_url).unwrap_or_default(),
    })
}

#[derive(Deserialize)]
struct CodeForm {
    code: String,
}

async fn subscription_activate(State(app): State<App>, Form(form): Form<CodeForm>) -> Page {
    let config = app.base().activation.clone();
    let result = app.db(move |c| Ok(starling_agent::activation::enter_code(c, &config, &form.code))).await?;
    Ok(back(
        "/subscription",
        result.map(|claims| {
            format!(
                "Activation code installed: a {} for {}. It takes effect within seconds.",
                claims.plan.as_str(),
                claims.organisation
            )
        }),
    ))
}

// ---------------------------------------------------------------- events

struct EventLine {
    when: String,
    id: u16,
    severity: String,
    mailbox: String,
    text: String,
    cause: std::borrow::Cow<'static, str>,
    remedy: std::borrow::Cow<'static, str>,
}

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    title: &'static str,
    frame: Frame,
    rows: Vec<EventLine>,
    id: String,
    severity: String,
    severities: [&'static str; 6],
    since: String,
    sinces: [(&'static str, &'static str); 5],
    mailbox: String,
    older: Option<String>,
}

#[derive(Deserialize)]
struct EventsForm {
    id: Option<String>,
    severity: Option<String>,
    since: Option<String>,
    mailbox: Option<String>,
    before: Option<i64>,
    #[serde(flatten)]
    flash: Flash,
}

async fn events(State(app): State<App>, Extension(caller): Extension<Caller>, Query(q): Query<EventsForm>) -> Page {
    let id = q.id.clone().unwrap_or_default();
    let severity = q.severity.clone().unwrap_or_default();
    let since = q.since.clone().unwrap_or_else(|| "7d".into());
    let mailbox = q.mailbox.clone().unwrap_or_default();
    let query = api::EventsQuery {
        id: id.trim().parse().ok(),
        severity: Some(severity.clone()),
        since: Some(since.clone()).filter(|s| !s.is_empty()),
        until: None,
        mailbox: Some(mailbox.clone()),
        before: q.before,
        limit: Some(100),
    };
    let found = api::events_matching(&app, query).await?;
    let older = (found.len() == 100).then(|| {
        format!(
            "/events?id={}&severity={}&since={}&mailbox={}&before={}",
            auth::urlencode(&id),
            auth::urlencode(&severity),
            auth::urlencode(&since),
            auth::urlencode(&mailbox),
            found.last().map_or(0, |e| e.event.seq)
        )
    });
    let rows = found
        .into_iter()
        .map(|e| EventLine {
            when: when(e.event.at),
            id: e.event.id,
            severity: e.event.severity,
            mailbox: e.event.mailbox.unwrap_or_default(),
            text: e.event.text,
            cause: e.cause,
            remedy: e.remedy,
        })
        .collect();
    render(&EventsPage {
        title: "Events",
        frame: Frame::new(&app, &caller, "/events", &q.flash),
        rows,
        id,
        severity,
        severities: ["", "info", "notice", "warning", "error", "critical"],
        since,
        sinces: [
            ("1h", "the last hour"),
            ("24h", "the last 24 hours"),
            ("7d", "the last 7 days"),
            ("30d", "the last 30 days"),
            ("", "ever"),
        ],
        mailbox,
        older,
    })
}

// ---------------------------------------------------------------- live

#[derive(Template)]
#[template(path = "live.html")]
struct LivePage {
    title: &'static str,
    frame: Frame,
    live: api::LiveFigures,
    rate: String,
    latency: String,
    latency_avg: String,
    chart: String,
}

async fn live(State(app): State<App>, Extension(caller): Extension<Caller>, Query(flash): Query<Flash>) -> Page {
    let live = api::live_now(&app).await?;
    let labels: Vec<String> =
        (0..live.history.len()).rev().map(|i| if i == 0 { "now".into() } else { format!("-{}s", i * 10) }).collect();
    let chart = crate::chart::line_chart(
        "Messages per second, last 5 minutes",
        &labels,
        &[crate::chart::Series { name: "Messages/s", values: &live.history, colour: "#2f6fb0" }],
        crate::chart::Scale::Count,
    );
    render(&LivePage {
        title: "Live",
        frame: Frame::new(&app, &caller, "/live", &flash),
        rate: format!("{:.1}", live.messages_per_second),
        latency: milliseconds(live.network_latency_ms.0),
        latency_avg: milliseconds(live.network_latency_ms.1),
        chart,
        live,
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

// ---------------------------------------------------------------- account

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    title: &'static str,
    frame: Frame,
    accounts: Vec<(String, &'static str, String)>,
    tokens: Vec<TokenLine>,
    token: String,
}

struct TokenLine {
    id: i64,
    name: String,
    account: String,
    created: String,
    last_used: String,
}

#[derive(Deserialize)]
struct AccountQuery {
    #[serde(default)]
    token: String,
    #[serde(flatten)]
    flash: Flash,
}

async fn account(State(app): State<App>, Extension(caller): Extension<Caller>, Query(q): Query<AccountQuery>) -> Page {
    let (accounts, tokens) = app.db(|c| Ok((auth::accounts(c)?, auth::tokens(c)?))).await?;
    render(&AccountPage {
        title: "Account",
        frame: Frame::new(&app, &caller, "/account", &q.flash),
        accounts: accounts
            .into_iter()
            .map(|a| (a.name, a.role.as_str(), a.last_login.map(when).unwrap_or_else(|| "never".into())))
            .collect(),
        tokens: tokens
            .into_iter()
            .map(|t| TokenLine {
                id: t.id,
                name: t.name,
                account: t.account,
                created: when(t.created),
                last_used: t.last_used.map(when).unwrap_or_else(|| "never".into()),
            })
            .collect(),
        token: q.token,
    })
}

#[derive(Deserialize)]
struct PasswordForm {
    current: String,
    password: String,
}

async fn account_password(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<PasswordForm>,
) -> Page {
    if api::check_login(&app, &caller.name, &form.current).await.is_err() {
        return Ok(back("/account", Err("The current password is wrong.".into())));
    }
    match api::set_password(&app, caller.name.clone(), form.password).await {
        Ok(()) => Ok(back("/login", Ok("Password changed; log in again.".into()))),
        Err(e) => Ok(back("/account", Err(api_message(e)))),
    }
}

#[derive(Deserialize)]
struct NewAccountForm {
    name: String,
    password: String,
    role: String,
}

async fn account_add(State(app): State<App>, Form(form): Form<NewAccountForm>) -> Page {
    Ok(match api::create_account(&app, &form.name, form.password, &form.role).await {
        Ok(_) => back("/account", Ok(format!("{} added.", form.name))),
        Err(e) => back("/account", Err(api_message(e))),
    })
}

#[derive(Deserialize)]
struct RoleForm {
    name: String,
    role: String,
}

async fn account_role(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<RoleForm>,
) -> Page {
    Ok(match api::change_role(&app, &caller, form.name.clone(), &form.role).await {
        Ok(role) => back("/account", Ok(format!("{} is now {}.", form.name, role.as_str()))),
        Err(e) => back("/account", Err(api_message(e))),
    })
}

#[derive(Deserialize)]
struct NameForm {
    name: String,
}

async fn account_remove(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<NameForm>,
) -> Page {
    Ok(match api::remove_account(&app, &caller, form.name.clone()).await {
        Ok(()) => back("/account", Ok(format!("{} removed.", form.name))),
        Err(e) => back("/account", Err(api_message(e))),
    })
}

#[derive(Deserialize)]
struct TokenForm {
    name: String,
}

async fn token_add(State(app): State<App>, Extension(caller): Extension<Caller>, Form(form): Form<TokenForm>) -> Page {
    let id = caller.id;
    let name: String = form.name.chars().take(100).collect();
    let (_, token) = app.db(move |c| auth::create_token(c, id, &name)).await?;
    Ok(Redirect::to(&format!("/account?token={}", auth::urlencode(&token))).into_response())
}

#[derive(Deserialize)]
struct TokenRemoveForm {
    id: i64,
}

async fn token_remove(State(app): State<App>, Form(form): Form<TokenRemoveForm>) -> Page {
    let removed = app.db(move |c| auth::remove_token(c, form.id)).await?;
    Ok(back("/account", if removed { Ok("Token revoked.".into()) } else { Err("No such token.".into()) }))
}
