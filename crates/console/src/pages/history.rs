//! What happened: reports, the event log and the live view.

use super::*;

#[derive(Template)]
#[template(path = "reports.html")]
pub(super) struct ReportsPage {
    pub(super) title: &'static str,
    pub(super) frame: Frame,
    pub(super) period: &'static str,
    pub(super) periods: [(&'static str, &'static str); 3],
    pub(super) summary: stats::Summary,
    pub(super) accuracy: String,
    pub(super) unblock_rate: String,
    pub(super) hours_saved: String,
    pub(super) money_saved: String,
    pub(super) seconds_per_spam: u32,
    pub(super) hourly_cost: f64,
    pub(super) charts: Vec<(String, String)>,
    pub(super) files: Vec<ReportLine>,
    /// Saved reports not listed (`files=all` lists them).
    pub(super) more: usize,
    pub(super) dir: String,
}

pub(super) struct ReportLine {
    pub(super) name: String,
    pub(super) written: String,
    pub(super) bytes: u64,
    pub(super) graph: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct PeriodQuery {
    pub(super) period: Option<String>,
    /// `all`: every saved report, not only the newest.
    pub(super) files: Option<String>,
    #[serde(flatten)]
    pub(super) flash: Flash,
}

/// Saved reports listed by default, newest first.
pub(super) const REPORTS_SHOWN: usize = 62;

pub(super) fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "–".into(), |v| format!("{v:.1} %"))
}

pub(super) async fn reports(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<PeriodQuery>,
) -> Page {
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
pub(super) struct KindForm {
    pub(super) kind: String,
}

pub(super) async fn report_write(State(app): State<App>, Form(form): Form<KindForm>) -> Page {
    let Some(kind) = stats::KINDS.iter().copied().find(|k| *k == form.kind) else {
        return Ok(back("/reports", Err(format!("Unknown report kind {:?}.", form.kind))));
    };
    let (config, _) = app.config().await;
    stats::write_kinds(&app, config, vec![kind], jiff::Timestamp::now()).await;
    Ok(back("/reports", Ok(format!("Report {kind} written."))))
}

pub(super) struct EventLine {
    pub(super) when: String,
    pub(super) id: u16,
    pub(super) severity: String,
    pub(super) mailbox: String,
    pub(super) text: String,
    pub(super) cause: std::borrow::Cow<'static, str>,
    pub(super) remedy: std::borrow::Cow<'static, str>,
}

#[derive(Template)]
#[template(path = "events.html")]
pub(super) struct EventsPage {
    pub(super) title: &'static str,
    pub(super) frame: Frame,
    pub(super) rows: Vec<EventLine>,
    pub(super) id: String,
    pub(super) severity: String,
    pub(super) severities: [&'static str; 6],
    pub(super) since: String,
    pub(super) sinces: [(&'static str, &'static str); 5],
    pub(super) mailbox: String,
    pub(super) older: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct EventsForm {
    pub(super) id: Option<String>,
    pub(super) severity: Option<String>,
    pub(super) since: Option<String>,
    pub(super) mailbox: Option<String>,
    pub(super) before: Option<i64>,
    #[serde(flatten)]
    pub(super) flash: Flash,
}

pub(super) async fn events(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<EventsForm>,
) -> Page {
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

#[derive(Template)]
#[template(path = "live.html")]
pub(super) struct LivePage {
    pub(super) title: &'static str,
    pub(super) frame: Frame,
    pub(super) live: api::LiveFigures,
    pub(super) rate: String,
    pub(super) latency: String,
    pub(super) latency_avg: String,
    pub(super) chart: String,
}

pub(super) async fn live(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Query(flash): Query<Flash>,
) -> Page {
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
