//! The REST API, `/api/v1` (JSON): what the CLI uses and what the console's
//! pages do, described by `openapi.json` (served at
//! `/api/v1/openapi.json`; a test checks it against [`ROUTES`], which is
//! generated with the router itself).
//!
//! Errors are `{"error": "...", "problems": ["..."]}` with a fitting
//! status: 400 bad input, 401 not authenticated, 403 not allowed, 404
//! unknown, 422 a value the checks refuse.

use std::borrow::Cow;
use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use starling_agent::events::{self, CATALOGUE, Severity};
use starling_agent::settings;
use starling_agent::state::{self, EventFilter};
use starling_agent::whitelist::{self, Entry};

use crate::App;
use crate::auth::{self, Caller, Role};
use crate::stats::{self, Period};

/// The OpenAPI document.
pub const OPENAPI: &str = include_str!("../openapi.json");

pub use crate::error::{ApiError, error};
pub use crate::status::{LiveFigures, MailboxCounts, Status, live_now, status_now};

type Answer<T> = Result<Json<T>, ApiError>;

macro_rules! routes {
    ($($method:ident $path:literal => $handler:path;)*) => {
        /// Every API route: (method, path), as registered.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        /// The API's router.
        pub fn router() -> Router<App> {
            Router::new()$(.route($path, axum::routing::$method($handler)))*
        }
    };
}

routes! {
    get "/health" => health;
    get "/api/v1/health" => health;
    post "/api/v1/login" => login;
    post "/api/v1/logout" => logout;
    get "/api/v1/openapi.json" => openapi;
    get "/api/v1/status" => status;
    get "/api/v1/live" => live;
    get "/api/v1/users" => users;
    post "/api/v1/users" => add_users;
    post "/api/v1/users/actions" => user_actions;
    post "/api/v1/users/import" => import_users;
    get "/api/v1/users/{name}" => user;
    get "/api/v1/whitelist" => whitelist_list;
    post "/api/v1/whitelist" => whitelist_add;
    put "/api/v1/whitelist" => whitelist_edit;
    delete "/api/v1/whitelist" => whitelist_remove;
    post "/api/v1/whitelist/import" => whitelist_import;
    get "/api/v1/whitelist/export" => whitelist_export;
    get "/api/v1/settings" => settings_get;
    put "/api/v1/settings" => settings_put;
    delete "/api/v1/settings/{key}" => settings_reset;
    get "/api/v1/rescans" => rescans;
    post "/api/v1/rescans" => rescan_start;
    get "/api/v1/model" => model_status;
    post "/api/v1/model/retrain" => model_retrain;
    get "/api/v1/model/retrain/{id}" => model_retrain_status;
    get "/api/v1/activation" => activation_get;
    post "/api/v1/activation" => activation_enter;
    get "/api/v1/events" => events_list;
    get "/api/v1/events/catalogue" => catalogue;
    get "/api/v1/stats" => stats_get;
    get "/api/v1/reports" => reports;
    post "/api/v1/reports" => report_write;
    get "/api/v1/reports/export" => report_export;
    get "/api/v1/reports/files/{name}" => report_file;
    get "/api/v1/accounts" => accounts;
    post "/api/v1/accounts" => account_add;
    put "/api/v1/accounts/{name}/password" => account_password;
    put "/api/v1/accounts/{name}/role" => account_role;
    delete "/api/v1/accounts/{name}" => account_remove;
    get "/api/v1/tokens" => tokens;
    post "/api/v1/tokens" => token_add;
    delete "/api/v1/tokens/{id}" => token_remove;
    get "/metrics" => metrics;
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

// ---------------------------------------------------------------- login

#[derive(Deserialize)]
struct Login {
    name: String,
    password: String,
}

/// Checks a name and password; the account id and role when right. Emits
/// `login_failed` when wrong. A name with too many failures waits (429,
/// see [`crate::throttle`]), whatever the password.
pub async fn check_login(app: &App, name: &str, password: &str) -> Result<(i64, Role), ApiError> {
    if let Some(wait) = app.throttle().wait(name, std::time::Instant::now()) {
        let seconds = wait.as_secs().max(1);
        app.events().emit(
            events::LOGIN_FAILED,
            None,
            format!("too many failed logins for {name:?}: held for {seconds} s"),
        );
        return Err(ApiError::too_many(format!("too many failed logins; try again in {seconds} s"), seconds));
    }
    let lookup = name.to_owned();
    let found = app.db(move |c| auth::account_secret(c, &lookup)).await?;
    let password = password.to_owned();
    // Hash even for an unknown name, so timing does not tell names apart.
    let stored = found.as_ref().map(|(_, _, hash)| hash.clone()).unwrap_or_else(dummy_hash);
    let right = tokio::task::spawn_blocking(move || auth::verify_password(&password, &stored)).await.unwrap_or(false);
    match found {
        Some((id, role, _)) if right => {
            app.throttle().succeeded(name);
            Ok((id, role))
        }
        _ => {
            app.throttle().failed(name, std::time::Instant::now());
            app.events().emit(events::LOGIN_FAILED, None, format!("wrong name or password for {name:?}"));
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong name or password"))
        }
    }
}

fn dummy_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| auth::hash_password("not a password of anybody")).clone()
}

/// Starts a browser session for an account: the `Set-Cookie` value (marked
/// `Secure` behind a TLS proxy or when the console speaks HTTPS itself) and
/// the session's CSRF token.
pub async fn start_session(app: &App, account: i64) -> Result<(String, String), ApiError> {
    let console = &app.base().console;
    let hours = console.session_hours;
    let (secret, csrf) = app.db(move |c| auth::create_session(c, account, hours)).await?;
    let cookie = format!(
        "{}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        auth::COOKIE,
        u64::from(hours) * 3600,
        if console.secure_cookie || console.tls() { "; Secure" } else { "" }
    );
    Ok((cookie, csrf))
}

async fn login(State(app): State<App>, Json(body): Json<Login>) -> Result<Response, ApiError> {
    let (id, role) = check_login(&app, &body.name, &body.password).await?;
    let (cookie, csrf) = start_session(&app, id).await?;
    Ok(([(header::SET_COOKIE, cookie)], Json(serde_json::json!({"name": body.name, "role": role, "csrf": csrf})))
        .into_response())
}

async fn logout(State(app): State<App>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(secret) = auth::cookie(&headers, auth::COOKIE).map(str::to_owned) {
        app.db(move |c| auth::end_session(c, &secret)).await?;
    }
    let expired = format!("{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0", auth::COOKIE);
    Ok(([(header::SET_COOKIE, expired)], Json(serde_json::json!({"status": "logged out"}))).into_response())
}

// ---------------------------------------------------------------- status

async fn status(State(app): State<App>) -> Answer<Status> {
    Ok(Json(status_now(&app).await?))
}

async fn live(State(app): State<App>) -> Answer<LiveFigures> {
    Ok(Json(live_now(&app).await?))
}

// ---------------------------------------------------------------- users

/// A page of the users list.
#[derive(Deserialize, Default)]
pub struct UsersQuery {
    /// Part of a name.
    #[serde(default)]
    pub search: String,
    /// Rows to skip.
    #[serde(default)]
    pub offset: u32,
    /// Rows (at most 500; default 50).
    pub limit: Option<u32>,
}

/// A mailbox with its last 30 days' counters.
#[derive(Serialize, Deserialize)]
pub struct UserRow {
    /// The stored row.
    #[serde(flatten)]
    pub mailbox: state::MailboxRow,
    /// Its counters over the last 30 days.
    pub last_30_days: state::Counters,
}

/// A page of mailboxes.
#[derive(Serialize, Deserialize)]
pub struct UsersPage {
    /// Matching in all.
    pub total: u64,
    /// Rows skipped.
    pub offset: u32,
    /// This page.
    pub users: Vec<UserRow>,
}

/// A page of mailboxes with their counters.
pub async fn users_page(app: &App, query: UsersQuery) -> Result<UsersPage, ApiError> {
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let since = jiff::Timestamp::now().as_second() - 30 * 86_400;
    let offset = query.offset;
    let (rows, total, totals) = app
        .db(move |c| {
            let (rows, total) = state::mailboxes_page(c, &query.search, offset, limit)?;
            let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
            let totals = state::mailbox_totals(c, &names, since)?;
            Ok((rows, total, totals))
        })
        .await?;
    let users = rows
        .into_iter()
        .map(|mailbox| {
            let last_30_days = totals.get(&mailbox.name).copied().unwrap_or_default();
            UserRow { mailbox, last_30_days }
        })
        .collect();
    Ok(UsersPage { total, offset, users })
}

async fn users(State(app): State<App>, Query(query): Query<UsersQuery>) -> Answer<UsersPage> {
    Ok(Json(users_page(&app, query).await?))
}

#[derive(Deserialize)]
struct AddUsers {
    names: Vec<String>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

/// What happened to each name of a request.
#[derive(Serialize, Deserialize, Default)]
pub struct Outcomes {
    /// Name → what happened (`added`, `already known`, `enabled`, …).
    pub done: BTreeMap<String, String>,
    /// Name → why not.
    pub failed: BTreeMap<String, String>,
}

async fn add_users(State(app): State<App>, Json(body): Json<AddUsers>) -> Answer<Outcomes> {
    let mut outcomes = Outcomes::default();
    let mut valid = Vec::new();
    for name in body.names {
        match starling_agent::users::check_name(&name) {
            Ok(()) => valid.push(name),
            Err(e) => {
                outcomes.failed.insert(name, e);
            }
        }
    }
    let enabled = body.enabled;
    let added = app
        .db(move |c| {
            valid
                .into_iter()
                .map(|name| Ok((name.clone(), state::add_mailbox(c, &name, enabled, "console")?)))
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .await?;
    for (name, new) in added {
        outcomes.done.insert(name, if new { "added" } else { "already known" }.into());
    }
    Ok(Json(outcomes))
}

/// Something to do to many mailboxes at once.
#[derive(Deserialize, Clone)]
pub struct UserActions {
    /// The mailboxes.
    pub names: Vec<String>,
    /// `enable`, `disable`, `feedback-on`, `feedback-off`, `model-on`,
    /// `model-off` or `rescan`.
    pub action: String,
    /// For `rescan`: mail younger than this many hours (default
    /// `rescan.max_age_hours`).
    pub hours: Option<u32>,
}

/// Does an action to many mailboxes; the outcome per name.
pub async fn apply_user_actions(app: &App, body: UserActions, by: &str) -> Result<Outcomes, ApiError> {
    const ACTIONS: [&str; 7] = ["enable", "disable", "feedback-on", "feedback-off", "model-on", "model-off", "rescan"];
    if !ACTIONS.contains(&body.action.as_str()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("unknown action {:?}: {}", body.action, ACTIONS.join(", ")),
        ));
    }
    if body.names.len() > 100_000 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "at most 100,000 mailboxes at once"));
    }
    let (config, _) = app.config().await;
    let hours = body.hours.unwrap_or(config.rescan.max_age_hours).clamp(1, 24 * 365);
    let since = jiff::Timestamp::now().as_second() - i64::from(hours) * 3600;
    let origin = format!("console:{by}");
    let action = body.action.clone();
    let results = app
        .db(move |c| {
            let tx = c.transaction()?;
            let mut results = Vec::new();
            for name in body.names {
                let known = state::mailbox(&tx, &name)?.is_some();
                let outcome = if !known {
                    Err("unknown mailbox".to_owned())
                } else {
                    match action.as_str() {
                        "enable" => state::set_enabled(&tx, &name, true).map(|_| "enabled".to_owned()),
                        "disable" => state::set_enabled(&tx, &name, false).map(|_| "disabled".to_owned()),
                        "feedback-on" => state::set_feedback(&tx, &name, true).map(|_| "feedback on".to_owned()),
                        "feedback-off" => state::set_feedback(&tx, &name, false).map(|_| "feedback off".to_owned()),
                        "model-on" => state::set_model(&tx, &name, true).map(|_| "model on".to_owned()),
                        "model-off" => state::set_model(&tx, &name, false).map(|_| "model off".to_owned()),
                        _ => {
                            state::rescan_request(&tx, &name, since, &origin).map(|id| format!("rescan {id} requested"))
                        }
                    }
                    .map_err(|e| e.to_string())
                };
                results.push((name, outcome));
            }
            tx.commit()?;
            Ok(results)
        })
        .await?;
    let mut outcomes = Outcomes::default();
    for (name, result) in results {
        match result {
            Ok(done) => outcomes.done.insert(name, done),
            Err(why) => outcomes.failed.insert(name, why),
        };
    }
    Ok(outcomes)
}

async fn user_actions(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<UserActions>,
) -> Answer<Outcomes> {
    Ok(Json(apply_user_actions(&app, body, &caller.name).await?))
}

/// What an import did.
#[derive(Serialize, Deserialize)]
pub struct Imported {
    /// Rows read.
    pub rows: usize,
    /// Added.
    pub added: usize,
    /// Changed (enabled or disabled).
    pub updated: usize,
}

/// Adds mailboxes (enabled unless a row says otherwise) in one
/// transaction; with `update`, a known mailbox takes a row's `enabled`.
/// Returns (added, updated).
pub async fn add_mailboxes(
    app: &App,
    rows: Vec<starling_agent::users::CsvUser>,
    source: &'static str,
    update: bool,
) -> Result<(usize, usize), ApiError> {
    Ok(app
        .db(move |c| {
            let tx = c.transaction()?;
            let (mut added, mut updated) = (0, 0);
            for row in &rows {
                if state::add_mailbox(&tx, &row.name, row.enabled.unwrap_or(true), source)? {
                    added += 1;
                } else if let Some(enabled) = row.enabled.filter(|_| update) {
                    updated += usize::from(state::set_enabled(&tx, &row.name, enabled)?);
                }
            }
            tx.commit()?;
            Ok((added, updated))
        })
        .await?)
}

async fn import_users(State(app): State<App>, body: String) -> Answer<Imported> {
    let (rows, problems) = starling_agent::users::parse_csv(&body);
    if !problems.is_empty() {
        return Err(ApiError::invalid("the CSV has problems; nothing was imported", problems));
    }
    let count = rows.len();
    let (added, updated) = add_mailboxes(&app, rows, "csv", true).await?;
    Ok(Json(Imported { rows: count, added, updated }))
}

/// One mailbox with its statistics.
#[derive(Serialize)]
pub struct UserDetail {
    /// The stored row.
    pub mailbox: state::MailboxRow,
    /// The last 30 days by day.
    pub days: Vec<stats::Bucket>,
    /// Their totals.
    pub summary: stats::Summary,
    /// Its own whitelist.
    pub whitelist: Vec<state::WhitelistRow>,
}

/// One mailbox with its statistics.
pub async fn user_detail(app: &App, name: String) -> Result<UserDetail, ApiError> {
    let (config, _) = app.config().await;
    let config_for_db = config.clone();
    let found = app
        .db(move |c| {
            let Some(mailbox) = state::mailbox(c, &name)? else { return Ok(None) };
            let days = stats::series(c, Period::Month, jiff::Timestamp::now(), &config_for_db, Some(&name))?;
            let whitelist = state::whitelist(c, Some(&name))?;
            Ok(Some((mailbox, days, whitelist)))
        })
        .await?;
    let Some((mailbox, days, whitelist)) = found else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown mailbox"));
    };
    let summary = stats::summary(&days, &config);
    Ok(UserDetail { mailbox, days, summary, whitelist })
}

async fn user(State(app): State<App>, Path(name): Path<String>) -> Answer<UserDetail> {
    Ok(Json(user_detail(&app, name).await?))
}

// ---------------------------------------------------------------- whitelist

/// A whitelist's scope.
#[derive(Deserialize, Default)]
pub struct Scope {
    /// A mailbox's own list; absent or empty: the server-wide list.
    #[serde(default)]
    pub scope: String,
    /// Every list (listing only).
    #[serde(default)]
    pub all: bool,
}

async fn whitelist_list(State(app): State<App>, Query(q): Query<Scope>) -> Answer<Vec<state::WhitelistRow>> {
    let rows = app.db(move |c| state::whitelist(c, if q.all { None } else { Some(&q.scope) })).await?;
    Ok(Json(rows))
}

#[derive(Deserialize)]
struct NewEntry {
    #[serde(default)]
    scope: String,
    entry: String,
    #[serde(default)]
    comment: String,
    /// For an edit: the entry being replaced.
    #[serde(default)]
    old_entry: Option<String>,
}

/// Parses an entry, with the API's error.
pub fn parse_entry(text: &str) -> Result<String, ApiError> {
    Entry::parse(text)
        .map(|e| e.to_string())
        .map_err(|e| ApiError::invalid(format!("{text:?} is not a whitelist entry"), vec![e]))
}

async fn whitelist_add(State(app): State<App>, Json(body): Json<NewEntry>) -> Result<Response, ApiError> {
    let entry = parse_entry(&body.entry)?;
    let stored = entry.clone();
    let added = app.db(move |c| state::whitelist_add(c, &body.scope, &stored, &body.comment)).await?;
    let status = if added { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(serde_json::json!({"entry": entry, "added": added}))).into_response())
}

async fn whitelist_edit(State(app): State<App>, Json(body): Json<NewEntry>) -> Answer<serde_json::Value> {
    let Some(old) = body.old_entry.clone() else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "old_entry is required to edit an entry"));
    };
    let entry = parse_entry(&body.entry)?;
    let stored = entry.clone();
    let found = app.db(move |c| state::whitelist_replace(c, &body.scope, &old, &stored, &body.comment)).await?;
    if !found {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "the entry being edited is not listed"));
    }
    Ok(Json(serde_json::json!({"entry": entry})))
}

#[derive(Deserialize)]
struct RemoveEntry {
    #[serde(default)]
    scope: String,
    entry: String,
}

async fn whitelist_remove(State(app): State<App>, Query(q): Query<RemoveEntry>) -> Answer<serde_json::Value> {
    let written = Entry::parse(&q.entry).map(|e| e.to_string()).unwrap_or(q.entry);
    let shown = written.clone();
    let removed = app.db(move |c| state::whitelist_remove(c, &q.scope, &written)).await?;
    if !removed {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("{shown} is not listed")));
    }
    Ok(Json(serde_json::json!({"removed": shown})))
}

/// What an import would do (or did).
#[derive(Serialize, Deserialize, Default)]
pub struct ImportPreview {
    /// New entries.
    pub add: Vec<(String, String)>,
    /// Entries whose comment changes.
    pub update: Vec<(String, String)>,
    /// Entries already listed as they are.
    pub unchanged: usize,
    /// Lines that are not entries ("line N: …").
    pub errors: Vec<String>,
    /// Whether it was applied.
    pub applied: bool,
}

/// Previews (and, unless `dry_run` or there are errors, applies) a
/// whitelist import.
pub async fn import_whitelist(app: &App, scope: String, text: &str, dry_run: bool) -> Result<ImportPreview, ApiError> {
    let (entries, errors) = whitelist::parse_file(text);
    let mut preview = ImportPreview { errors, ..ImportPreview::default() };
    let lookup = scope.clone();
    let existing: BTreeMap<String, String> = app
        .db(move |c| state::whitelist(c, Some(&lookup)))
        .await?
        .into_iter()
        .map(|row| (row.entry, row.comment))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for (entry, comment) in entries {
        let entry = entry.to_string();
        if !seen.insert(entry.clone()) {
            continue;
        }
        match existing.get(&entry) {
            None => preview.add.push((entry, comment)),
            Some(old) if *old != comment && !comment.is_empty() => preview.update.push((entry, comment)),
            Some(_) => preview.unchanged += 1,
        }
    }
    if dry_run || !preview.errors.is_empty() {
        return Ok(preview);
    }
    let (add, update) = (preview.add.clone(), preview.update.clone());
    app.db(move |c| {
        let tx = c.transaction()?;
        for (entry, comment) in &add {
            state::whitelist_add(&tx, &scope, entry, comment)?;
        }
        for (entry, comment) in &update {
            state::whitelist_set_comment(&tx, &scope, entry, comment)?;
        }
        tx.commit()
    })
    .await?;
    preview.applied = true;
    Ok(preview)
}

#[derive(Deserialize)]
struct ImportQuery {
    #[serde(default)]
    scope: String,
    #[serde(default)]
    dry_run: bool,
}

async fn whitelist_import(
    State(app): State<App>,
    Query(q): Query<ImportQuery>,
    body: String,
) -> Result<Response, ApiError> {
    let preview = import_whitelist(&app, q.scope, &body, q.dry_run).await?;
    let status = if preview.errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    Ok((status, Json(preview)).into_response())
}

#[derive(Deserialize)]
struct ExportQuery {
    #[serde(default)]
    scope: String,
    #[serde(default)]
    format: Option<String>,
}

/// A whitelist as CSV (`entry,comment`) or plain text (one per line).
pub fn export_whitelist(rows: &[state::WhitelistRow], format: &str) -> Result<String, ApiError> {
    match format {
        "csv" => {
            let mut writer = csv::Writer::from_writer(Vec::new());
            let _ = writer.write_record(["entry", "comment"]);
            for row in rows {
                let _ = writer.write_record([&row.entry, &row.comment]);
            }
            Ok(String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default())
        }
        "text" => Ok(rows.iter().map(|r| format!("{}\n", r.entry)).collect()),
        other => Err(ApiError::new(StatusCode::BAD_REQUEST, format!("unknown format {other:?}: csv or text"))),
    }
}

async fn whitelist_export(State(app): State<App>, Query(q): Query<ExportQuery>) -> Result<Response, ApiError> {
    let format = q.format.unwrap_or_else(|| "csv".into());
    let scope = q.scope.clone();
    let rows = app.db(move |c| state::whitelist(c, Some(&scope))).await?;
    let body = export_whitelist(&rows, &format)?;
    let (kind, extension) =
        if format == "csv" { ("text/csv; charset=utf-8", "csv") } else { ("text/plain; charset=utf-8", "txt") };
    let name = if q.scope.is_empty() { "whitelist".to_owned() } else { format!("whitelist-{}", safe_name(&q.scope)) };
    Ok((
        [
            (header::CONTENT_TYPE, kind.to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}.{extension}\"")),
        ],
        body,
    )
        .into_response())
}

fn safe_name(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect()
}

// ---------------------------------------------------------------- settings

/// A setting with its value.
#[derive(Serialize)]
pub struct SettingView {
    /// The definition.
    #[serde(flatten)]
    pub setting: settings::Setting,
    /// In effect.
    pub value: settings::Value,
    /// The configuration file's value.
    pub file_value: settings::Value,
    /// Changed in the console (stored), not from the file.
    pub stored: bool,
}

/// Every setting with its value.
pub async fn settings_view(app: &App) -> Result<(Vec<SettingView>, Vec<String>), ApiError> {
    let stored = app.db(|c| state::settings(c)).await?;
    let (config, problems) = app.config().await;
    let values = settings::values(&config);
    let file = settings::values(app.base());
    let views = settings::EDITABLE
        .iter()
        .map(|s| SettingView {
            setting: *s,
            value: values[s.key].clone(),
            file_value: file[s.key].clone(),
            stored: stored.contains_key(s.key),
        })
        .collect();
    Ok((views, problems))
}

async fn settings_get(State(app): State<App>) -> Answer<serde_json::Value> {
    let (views, problems) = settings_view(&app).await?;
    Ok(Json(serde_json::json!({"settings": views, "problems": problems})))
}

/// Checks and stores changed settings (key → text or JSON value), all or
/// none; the keys that changed.
pub async fn change_settings(
    app: &App,
    changes: BTreeMap<String, serde_json::Value>,
    by: &str,
) -> Result<Vec<String>, ApiError> {
    let mut parsed = BTreeMap::new();
    let mut problems = Vec::new();
    for (key, value) in changes {
        let Some(setting) = settings::find(&key) else {
            problems.push(format!("{key}: not a setting that can be changed here"));
            continue;
        };
        let value = match value {
            serde_json::Value::String(text) => settings::parse(setting, &text),
            other => settings::parse(setting, &settings::display(&other)),
        };
        match value {
            Ok(value) => {
                parsed.insert(key, value);
            }
            Err(e) => problems.push(e),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid("settings not changed", problems));
    }
    let mut stored = app.db(|c| state::settings(c)).await?;
    let (current, _) = app.config().await;
    let current = settings::values(&current);
    let changed: Vec<String> =
        parsed.iter().filter(|(k, v)| current.get(k.as_str()) != Some(*v)).map(|(k, _)| k.clone()).collect();
    stored.extend(parsed.clone());
    if let Err(problems) = settings::effective(app.base(), &stored) {
        return Err(ApiError::invalid("settings not changed", problems));
    }
    let by = by.to_owned();
    app.db(move |c| {
        let tx = c.transaction()?;
        for (key, value) in &parsed {
            state::setting_put(&tx, key, Some(value), &by)?;
        }
        tx.commit()
    })
    .await?;
    Ok(changed)
}

async fn settings_put(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<BTreeMap<String, serde_json::Value>>,
) -> Answer<serde_json::Value> {
    let changed = change_settings(&app, body, &caller.name).await?;
    Ok(Json(serde_json::json!({"changed": changed})))
}

async fn settings_reset(State(app): State<App>, Path(key): Path<String>) -> Answer<serde_json::Value> {
    if settings::find(&key).is_none() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("{key}: not a setting")));
    }
    let reset = key.clone();
    app.db(move |c| state::setting_put(c, &reset, None, "")).await?;
    Ok(Json(serde_json::json!({"reset": key})))
}

// ---------------------------------------------------------------- rescans

#[derive(Deserialize)]
struct Limit {
    limit: Option<u32>,
}

async fn rescans(State(app): State<App>, Query(q): Query<Limit>) -> Answer<Vec<state::RescanRow>> {
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    Ok(Json(app.db(move |c| state::rescans(c, limit)).await?))
}

#[derive(Deserialize)]
struct RescanRequest {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    all: bool,
    hours: Option<u32>,
}

async fn rescan_start(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<RescanRequest>,
) -> Answer<Outcomes> {
    let names = if body.all {
        app.db(|c| state::mailboxes(c)).await?.into_iter().filter(|m| m.enabled && m.present).map(|m| m.name).collect()
    } else {
        body.names
    };
    if names.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "name mailboxes, or ask for all"));
    }
    let actions = UserActions { names, action: "rescan".into(), hours: body.hours };
    Ok(Json(apply_user_actions(&app, actions, &caller.name).await?))
}

// ---------------------------------------------------------------- model

/// The local model: what it learnt, and what it and retro-filing did.
#[derive(Serialize)]
pub struct ModelStatus {
    /// The running agent's view (absent when the agent has not attached
    /// its model yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<starling_agent::live::LearningView>,
    /// Stored examples: (label, source, count).
    pub examples: Vec<(String, String, u64)>,
}

async fn model_status(State(app): State<App>) -> Answer<ModelStatus> {
    let examples = app.db(|c| starling_agent::learning::example_counts(c)).await?;
    Ok(Json(ModelStatus { live: app.live().snapshot().learning, examples }))
}

async fn model_retrain(State(app): State<App>) -> Answer<serde_json::Value> {
    let id = app.db(|c| starling_agent::learning::request_retrain(c)).await?;
    Ok(Json(serde_json::json!({"id": id, "status": "pending"})))
}

async fn model_retrain_status(State(app): State<App>, Path(id): Path<i64>) -> Answer<serde_json::Value> {
    match app.db(move |c| starling_agent::learning::request_status(c, id)).await? {
        Some((status, detail)) => Ok(Json(serde_json::json!({"id": id, "status": status, "detail": detail}))),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no retrain request {id}"))),
    }
}

// ---------------------------------------------------------------- activation

/// The organisation's trial or subscription.
#[derive(Serialize)]
pub struct ActivationStatus {
    /// As the running agent enforces it (`null` before it started).
    pub activation: Option<starling_agent::live::ActivationView>,
    /// The newest agent release, when newer than this one.
    pub new_version: Option<String>,
    /// Its release notes.
    pub release_notes_url: String,
}

async fn activation_get(State(app): State<App>) -> Answer<ActivationStatus> {
    let snapshot = app.live().snapshot();
    let network = snapshot.network;
    Ok(Json(ActivationStatus {
        activation: snapshot.activation,
        new_version: network.as_ref().and_then(|n| n.new_version.clone()),
        release_notes_url: network.map(|n| n.release_notes_url).unwrap_or_default(),
    }))
}

/// An activation code to install.
#[derive(Deserialize)]
pub struct CodeInput {
    /// The code, `STARLING1-…`.
    pub code: String,
}

async fn activation_enter(State(app): State<App>, Json(input): Json<CodeInput>) -> Answer<serde_json::Value> {
    let config = app.base().activation.clone();
    let claims = app
        .db(move |c| Ok(starling_agent::activation::enter_code(c, &config, &input.code)))
        .await?
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    Ok(Json(serde_json::json!({
        "installed": true,
        "organisation": claims.organisation,
        "plan": claims.plan.as_str(),
        "expires_at": claims.expires_at,
        "max_mailboxes": claims.max_mailboxes,
        "serial": claims.serial,
    })))
}

// ---------------------------------------------------------------- events

/// Which events (query parameters).
#[derive(Deserialize, Default, Clone)]
pub struct EventsQuery {
    /// A catalogue id.
    pub id: Option<u16>,
    /// The least severity (`info` … `critical`).
    pub severity: Option<String>,
    /// From (Unix seconds, or a duration back such as `24h`, `7d`).
    pub since: Option<String>,
    /// Before (Unix seconds).
    pub until: Option<i64>,
    /// A mailbox.
    pub mailbox: Option<String>,
    /// Older than this row (paging).
    pub before: Option<i64>,
    /// At most (default 100, at most 1,000).
    pub limit: Option<u32>,
}

/// An event with its catalogue entry.
#[derive(Serialize, Deserialize)]
pub struct EventView {
    /// The stored event.
    #[serde(flatten)]
    pub event: state::EventRow,
    /// Its catalogue name.
    pub name: Cow<'static, str>,
    /// The likely cause.
    pub cause: Cow<'static, str>,
    /// What to do.
    pub remedy: Cow<'static, str>,
}

/// Parses `since`: Unix seconds, or `30m`, `24h`, `7d` back from now.
pub fn parse_since(text: &str) -> Result<i64, ApiError> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number.parse().map_err(|_| bad_since(text))?;
    let seconds = match unit {
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(bad_since(text)),
    };
    Ok(jiff::Timestamp::now().as_second() - seconds)
}

fn bad_since(text: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("since: expected Unix seconds or a duration like 30m, 24h, 7d; got {text:?}"),
    )
}

/// Events matching a query, with cause and remedy.
pub async fn events_matching(app: &App, q: EventsQuery) -> Result<Vec<EventView>, ApiError> {
    let min_severity = match q.severity.as_deref().filter(|s| !s.is_empty()) {
        Some(name) => Some(Severity::parse(name).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("severity: info, notice, warning, error or critical; got {name:?}"),
            )
        })?),
        None => None,
    };
    let since = q.since.as_deref().filter(|s| !s.is_empty()).map(parse_since).transpose()?;
    let filter = EventFilter {
        id: q.id,
        min_severity,
        since,
        until: q.until,
        mailbox: q.mailbox.filter(|m| !m.is_empty()),
        before_seq: q.before,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = app.db(move |c| state::events_filtered(c, &filter, limit)).await?;
    Ok(rows
        .into_iter()
        .map(|event| {
            let kind = events::by_id(event.id);
            EventView {
                name: Cow::Borrowed(kind.map_or("unknown", |k| k.name)),
                cause: Cow::Borrowed(kind.map_or("", |k| k.cause)),
                remedy: Cow::Borrowed(kind.map_or("", |k| k.remedy)),
                event,
            }
        })
        .collect())
}

async fn events_list(State(app): State<App>, Query(q): Query<EventsQuery>) -> Answer<Vec<EventView>> {
    Ok(Json(events_matching(&app, q).await?))
}

async fn catalogue() -> Json<Vec<serde_json::Value>> {
    Json(
        CATALOGUE
            .iter()
            .map(|k| {
                serde_json::json!({"id": k.id, "name": k.name, "severity": k.severity, "text": k.text,
                                   "cause": k.cause, "remedy": k.remedy})
            })
            .collect(),
    )
}

// ---------------------------------------------------------------- statistics and reports

#[derive(Deserialize)]
struct StatsQuery {
    period: Option<String>,
    mailbox: Option<String>,
}

fn period(text: Option<&str>) -> Result<Period, ApiError> {
    let text = text.unwrap_or("24h");
    Period::parse(text)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, format!("period: 24h, 5d or 30d; got {text:?}")))
}

/// A period's series and summary.
pub async fn stats_for(
    app: &App,
    period: Period,
    mailbox: Option<String>,
) -> Result<(Vec<stats::Bucket>, stats::Summary), ApiError> {
    let (config, _) = app.config().await;
    let for_db = config.clone();
    let buckets =
        app.db(move |c| stats::series(c, period, jiff::Timestamp::now(), &for_db, mailbox.as_deref())).await?;
    let summary = stats::summary(&buckets, &config);
    Ok((buckets, summary))
}

async fn stats_get(State(app): State<App>, Query(q): Query<StatsQuery>) -> Answer<serde_json::Value> {
    let period = period(q.period.as_deref())?;
    let (buckets, summary) = stats_for(&app, period, q.mailbox).await?;
    Ok(Json(serde_json::json!({"period": period.name(), "summary": summary, "buckets": buckets})))
}

async fn reports(State(app): State<App>) -> Answer<Vec<stats::ReportFile>> {
    let (config, _) = app.config().await;
    Ok(Json(stats::report_files(&crate::reports_dir(&config))))
}

#[derive(Deserialize)]
struct WriteReport {
    kind: String,
}

async fn report_write(State(app): State<App>, Json(body): Json<WriteReport>) -> Answer<Vec<stats::ReportFile>> {
    let Some(kind) = stats::KINDS.iter().copied().find(|k| *k == body.kind) else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("kind: one of {}", stats::KINDS.join(", "))));
    };
    let (config, _) = app.config().await;
    stats::write_kinds(&app, config.clone(), vec![kind], jiff::Timestamp::now()).await;
    Ok(Json(stats::report_files(&crate::reports_dir(&config))))
}

async fn report_export(State(app): State<App>, Query(q): Query<StatsQuery>) -> Result<Response, ApiError> {
    let period = period(q.period.as_deref())?;
    let (buckets, _) = stats_for(&app, period, q.mailbox).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"starling-{}.csv\"", period.name())),
        ],
        stats::csv(&buckets),
    )
        .into_response())
}

async fn report_file(State(app): State<App>, Path(name): Path<String>) -> Result<Response, ApiError> {
    if !stats::is_report_name(&name) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such report"));
    }
    let (config, _) = app.config().await;
    let path = crate::reports_dir(&config).join(&name);
    let body = tokio::fs::read(&path).await.map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "no such report"))?;
    let kind = if name.ends_with(".svg") { "image/svg+xml" } else { "text/csv; charset=utf-8" };
    Ok((
        [
            (header::CONTENT_TYPE, kind.to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        body,
    )
        .into_response())
}

// ---------------------------------------------------------------- accounts and tokens

async fn accounts(State(app): State<App>) -> Answer<Vec<auth::Account>> {
    Ok(Json(app.db(|c| auth::accounts(c)).await?))
}

#[derive(Deserialize)]
struct NewAccount {
    name: String,
    password: String,
    role: String,
}

/// Creates an account after checking its name, password and role.
pub async fn create_account(app: &App, name: &str, password: String, role: &str) -> Result<Role, ApiError> {
    let mut problems: Vec<String> =
        [auth::check_name(name).err(), auth::check_password(&password).err()].into_iter().flatten().collect();
    let role = Role::parse(role);
    if role.is_none() {
        problems.push("role: admin or read-only".into());
    }
    let Some(role) = role.filter(|_| problems.is_empty()) else {
        return Err(ApiError::invalid("account not created", problems));
    };
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password)).await.unwrap_or_default();
    let stored = name.to_owned();
    if !app.db(move |c| auth::create_account(c, &stored, &hash, role)).await? {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("an account {name} exists")));
    }
    app.events().emit(events::ADMIN_CREATED, None, format!("{name} ({})", role.as_str()));
    Ok(role)
}

async fn account_add(State(app): State<App>, Json(body): Json<NewAccount>) -> Result<Response, ApiError> {
    let role = create_account(&app, &body.name, body.password, &body.role).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({"name": body.name, "role": role}))).into_response())
}

#[derive(Deserialize)]
struct NewPassword {
    password: String,
}

/// Sets an account's password.
pub async fn set_password(app: &App, name: String, password: String) -> Result<(), ApiError> {
    auth::check_password(&password).map_err(|e| ApiError::invalid("password not changed", vec![e]))?;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password)).await.unwrap_or_default();
    let changed = app
        .db(move |c| {
            let n = c.execute("UPDATE admins SET password = ?2 WHERE name = ?1", rusqlite::params![name, hash])?;
            // Other sessions of the account end.
            c.execute("DELETE FROM sessions WHERE admin IN (SELECT id FROM admins WHERE name = ?1)", [&name])?;
            Ok(n > 0)
        })
        .await?;
    if changed { Ok(()) } else { Err(ApiError::new(StatusCode::NOT_FOUND, "unknown account")) }
}

async fn account_password(
    State(app): State<App>,
    Path(name): Path<String>,
    Json(body): Json<NewPassword>,
) -> Answer<serde_json::Value> {
    set_password(&app, name.clone(), body.password).await?;
    Ok(Json(serde_json::json!({"changed": name})))
}

fn account_change(change: auth::AccountChange, what: &str) -> Result<(), ApiError> {
    match change {
        auth::AccountChange::Done => Ok(()),
        auth::AccountChange::Unknown => Err(ApiError::new(StatusCode::NOT_FOUND, "unknown account")),
        auth::AccountChange::LastAdmin => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{what}: it is the last account with the admin role (give another account that role first)"),
        )),
    }
}

/// Removes an account, its sessions and tokens: not the caller's own, not
/// the last administrator.
pub async fn remove_account(app: &App, caller: &Caller, name: String) -> Result<(), ApiError> {
    if caller.name.eq_ignore_ascii_case(&name) {
        return Err(ApiError::new(StatusCode::CONFLICT, "you cannot remove your own account"));
    }
    let lookup = name.clone();
    account_change(app.db(move |c| auth::remove_account(c, &lookup)).await?, "not removed")?;
    app.events().emit(events::ADMIN_CHANGED, None, format!("{name} removed by {}", caller.name));
    Ok(())
}

/// Gives an account another role, unless that leaves no administrator.
pub async fn change_role(app: &App, caller: &Caller, name: String, role: &str) -> Result<Role, ApiError> {
    let role = Role::parse(role)
        .ok_or_else(|| ApiError::invalid("role not changed", vec!["role: admin or read-only".into()]))?;
    let lookup = name.clone();
    account_change(app.db(move |c| auth::set_role(c, &lookup, role)).await?, "not changed")?;
    app.events().emit(events::ADMIN_CHANGED, None, format!("{name} is now {} (by {})", role.as_str(), caller.name));
    Ok(role)
}

#[derive(Deserialize)]
struct NewRole {
    role: String,
}

async fn account_role(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<NewRole>,
) -> Answer<serde_json::Value> {
    let role = change_role(&app, &caller, name.clone(), &body.role).await?;
    Ok(Json(serde_json::json!({"name": name, "role": role})))
}

async fn account_remove(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Answer<serde_json::Value> {
    remove_account(&app, &caller, name.clone()).await?;
    Ok(Json(serde_json::json!({"removed": name})))
}

async fn tokens(State(app): State<App>) -> Answer<Vec<auth::TokenRow>> {
    Ok(Json(app.db(|c| auth::tokens(c)).await?))
}

#[derive(Deserialize)]
struct NewToken {
    name: String,
}

async fn token_add(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<NewToken>,
) -> Result<Response, ApiError> {
    let id = caller.id;
    let name = body.name.chars().take(100).collect::<String>();
    let (token_id, token) = app.db(move |c| auth::create_token(c, id, &name)).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({"id": token_id, "token": token}))).into_response())
}

async fn token_remove(State(app): State<App>, Path(id): Path<i64>) -> Answer<serde_json::Value> {
    if !app.db(move |c| auth::remove_token(c, id)).await? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such token"));
    }
    Ok(Json(serde_json::json!({"removed": id})))
}

// ---------------------------------------------------------------- metrics

async fn metrics(State(app): State<App>) -> Result<Response, ApiError> {
    let status = status_now(&app).await?;
    let (buckets, _) = stats_for(&app, Period::Day, None).await?;
    let text = crate::status::metrics_text(&status, &buckets);
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response())
}
