//! Mailboxes: the list, adding and importing them, per-user actions and
//! a user's detail.

use super::*;

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

pub(super) async fn users(State(app): State<App>, Query(query): Query<UsersQuery>) -> Answer<UsersPage> {
    Ok(Json(users_page(&app, query).await?))
}

#[derive(Deserialize)]
pub(super) struct AddUsers {
    pub(super) names: Vec<String>,
    #[serde(default = "yes")]
    pub(super) enabled: bool,
}

pub(super) fn yes() -> bool {
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

pub(super) async fn add_users(State(app): State<App>, Json(body): Json<AddUsers>) -> Answer<Outcomes> {
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

pub(super) async fn user_actions(
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

pub(super) async fn import_users(State(app): State<App>, body: String) -> Answer<Imported> {
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

pub(super) async fn user(State(app): State<App>, Path(name): Path<String>) -> Answer<UserDetail> {
    Ok(Json(user_detail(&app, name).await?))
}
