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
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub use crate::error::{ApiError, error};
pub use crate::status::{LiveFigures, MailboxCounts, Status, live_now, status_now};

mod accounts;
mod control;
mod history;
mod users;
mod whitelists;

pub use accounts::*;
pub use control::*;
pub use history::*;
pub use users::*;
pub use whitelists::*;

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

// ---------------------------------------------------------------- metrics

async fn metrics(State(app): State<App>) -> Result<Response, ApiError> {
    let status = status_now(&app).await?;
    let (buckets, _) = stats_for(&app, Period::Day, None).await?;
    let text = crate::status::metrics_text(&status, &buckets);
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response())
}
