//! The event log and its catalogue, statistics and reports.

use super::*;

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

pub(super) fn bad_since(text: &str) -> ApiError {
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

pub(super) async fn events_list(State(app): State<App>, Query(q): Query<EventsQuery>) -> Answer<Vec<EventView>> {
    Ok(Json(events_matching(&app, q).await?))
}

pub(super) async fn catalogue() -> Json<Vec<serde_json::Value>> {
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

#[derive(Deserialize)]
pub(super) struct StatsQuery {
    pub(super) period: Option<String>,
    pub(super) mailbox: Option<String>,
}

pub(super) fn period(text: Option<&str>) -> Result<Period, ApiError> {
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

pub(super) async fn stats_get(State(app): State<App>, Query(q): Query<StatsQuery>) -> Answer<serde_json::Value> {
    let period = period(q.period.as_deref())?;
    let (buckets, summary) = stats_for(&app, period, q.mailbox).await?;
    Ok(Json(serde_json::json!({"period": period.name(), "summary": summary, "buckets": buckets})))
}

pub(super) async fn reports(State(app): State<App>) -> Answer<Vec<stats::ReportFile>> {
    let (config, _) = app.config().await;
    Ok(Json(stats::report_files(&crate::reports_dir(&config))))
}

#[derive(Deserialize)]
pub(super) struct WriteReport {
    pub(super) kind: String,
}

pub(super) async fn report_write(
    State(app): State<App>,
    Json(body): Json<WriteReport>,
) -> Answer<Vec<stats::ReportFile>> {
    let Some(kind) = stats::KINDS.iter().copied().find(|k| *k == body.kind) else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("kind: one of {}", stats::KINDS.join(", "))));
    };
    let (config, _) = app.config().await;
    stats::write_kinds(&app, config.clone(), vec![kind], jiff::Timestamp::now()).await;
    Ok(Json(stats::report_files(&crate::reports_dir(&config))))
}

pub(super) async fn report_export(State(app): State<App>, Query(q): Query<StatsQuery>) -> Result<Response, ApiError> {
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

pub(super) async fn report_file(State(app): State<App>, Path(name): Path<String>) -> Result<Response, ApiError> {
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
