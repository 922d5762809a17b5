//! Statistics: the hourly counters as series for a period (the last 24
//! hours by hour, 5 days by hour, 30 days by day), the figures derived from
//! them (accuracy, unblock rate, time and money saved), CSV reports, and
//! the schedule that writes reports to the reports folder.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use starling_agent::config::AgentConfig;
use starling_agent::events;
use starling_agent::state::{self, Counters};
use tokio_util::sync::CancellationToken;

use crate::App;
use crate::chart::{self, Scale, Series};

/// A period of the graphs and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Period {
    /// The last 24 hours, by hour.
    Day,
    /// The last 5 days, by hour.
    FiveDays,
    /// The last 30 days, by day.
    Month,
    /// A calendar month (its first day at midnight, in the zone), by day.
    Calendar(i64),
}

impl Period {
    /// Parses `24h`, `5d` or `30d`.
    pub fn parse(text: &str) -> Option<Period> {
        match text {
            "24h" => Some(Period::Day),
            "5d" => Some(Period::FiveDays),
            "30d" => Some(Period::Month),
            _ => None,
        }
    }

    /// The short name.
    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "24h",
            Period::FiveDays => "5d",
            Period::Month => "30d",
            Period::Calendar(_) => "month",
        }
    }
}

/// One bucket of a series.
#[derive(Clone, Debug, Serialize)]
pub struct Bucket {
    /// Its start (Unix seconds).
    pub start: i64,
    /// Its label (`2026-11-24 13:00`, `2026-11-24`).
    pub label: String,
    /// The counters.
    #[serde(flatten)]
    pub counters: Counters,
}

/// Totals and derived figures of a period.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Messages checked.
    pub checked: u64,
    /// Spam and phishing the agent filed (at delivery and by rescans).
    pub caught: u64,
    /// Spam users moved to the spam folder (missed by the agent).
    pub blocked: u64,
    /// Filed messages users took back (false positives).
    pub unblocked: u64,
    /// Whitelisted.
    pub whitelisted: u64,
    /// Errors.
    pub errors: u64,
    /// Share of the spam the agent caught itself (percent), when any.
    pub accuracy: Option<f64>,
    /// Share of filed messages users took back (percent), when any.
    pub unblock_rate: Option<f64>,
    /// Hours of people's time saved.
    pub hours_saved: f64,
    /// Money saved.
    pub money_saved: f64,
    /// Its currency.
    pub currency: String,
}

/// Spam the agent filed in a bucket.
pub fn caught(c: &Counters) -> u64 {
    u64::from(c.spam) + u64::from(c.phish) + u64::from(c.rescan_filed)
}

/// Totals and figures of buckets.
pub fn summary(buckets: &[Bucket], config: &AgentConfig) -> Summary {
    let mut s = Summary { currency: config.reports.currency.clone(), ..Summary::default() };
    for b in buckets {
        s.checked += u64::from(b.counters.checked);
        s.caught += caught(&b.counters);
        s.blocked += u64::from(b.counters.blocked);
        s.unblocked += u64::from(b.counters.unblocked);
        s.whitelisted += u64::from(b.counters.whitelisted);
        s.errors += u64::from(b.counters.errors);
    }
    let spam = s.caught + s.blocked;
    s.accuracy = (spam > 0).then(|| s.caught as f64 * 100.0 / spam as f64);
    s.unblock_rate = (s.caught > 0).then(|| s.unblocked as f64 * 100.0 / s.caught as f64);
    s.hours_saved = s.caught as f64 * f64::from(config.reports.seconds_per_spam) / 3600.0;
    s.money_saved = s.hours_saved * config.reports.hourly_cost;
    s
}

fn zone(config: &AgentConfig) -> jiff::tz::TimeZone {
    let name = &config.rescan.timezone;
    if name.is_empty() {
        jiff::tz::TimeZone::system()
    } else {
        jiff::tz::TimeZone::get(name).or_else(|_| jiff::tz::TimeZone::posix(name)).unwrap_or(jiff::tz::TimeZone::UTC)
    }
}

/// The buckets of a period ending now, for every mailbox or one: every
/// bucket present, empty ones too.
pub fn series(
    c: &rusqlite::Connection,
    period: Period,
    now: jiff::Timestamp,
    config: &AgentConfig,
    mailbox: Option<&str>,
) -> rusqlite::Result<Vec<Bucket>> {
    let tz = zone(config);
    let hour = now.as_second().div_euclid(3600) * 3600;
    // Bucket starts, and the end of the last one.
    let (starts, end): (Vec<i64>, i64) = match period {
        Period::Day => ((0..24).rev().map(|i| hour - i * 3600).collect(), hour + 3600),
        Period::FiveDays => ((0..120).rev().map(|i| hour - i * 3600).collect(), hour + 3600),
        Period::Month | Period::Calendar(_) => {
            let today = now.to_zoned_datetime(tz.clone()).date();
            let first = match period {
                Period::Calendar(start) => {
                    jiff::Timestamp::from_second(start).map(|t| t.to_zoned_datetime(tz.clone()).date()).unwrap_or(today)
                }
                _ => today.checked_sub(jiff::Span::new().days(29)).unwrap_or(today),
            };
            let days = match period {
                Period::Calendar(_) => i64::from(first.days_in_month()),
                _ => 30,
            };
            let midnight = |date: jiff::civil::Date| {
                date.to_zoned_datetime(tz.clone()).map(|z| z.timestamp().as_second()).unwrap_or_default()
            };
            let dates: Vec<jiff::civil::Date> =
                (0..=days).filter_map(|i| first.checked_add(jiff::Span::new().days(i)).ok()).collect();
            let mut starts: Vec<i64> = dates.iter().map(|d| midnight(*d)).collect();
            let end = starts.pop().unwrap_or(hour);
            (starts, end)
        }
    };
    let since = starts.first().copied().unwrap_or(hour);
    let rows = match mailbox {
        Some(name) => state::hourly_of(c, name, since, end)?,
        None => state::hourly_totals(c, since, end)?,
    };
    let by_hour = matches!(period, Period::Day | Period::FiveDays);
    let mut buckets: Vec<Bucket> = starts
        .iter()
        .map(|&start| {
            let at = jiff::Timestamp::from_second(start).unwrap_or_default().to_zoned_datetime(tz.clone());
            let label =
                if by_hour { at.strftime("%Y-%m-%d %H:00").to_string() } else { at.strftime("%Y-%m-%d").to_string() };
            Bucket { start, label, counters: Counters::default() }
        })
        .collect();
    for (at, counters) in rows {
        let index = starts.partition_point(|&s| s <= at);
        if index > 0 {
            buckets[index - 1].counters.add(&counters);
        }
    }
    Ok(buckets)
}

/// The graphs of a period: activity, accuracy and unblock rate, users'
/// blocks and unblocks.
pub fn charts(buckets: &[Bucket], what: &str) -> Vec<(String, String)> {
    let labels: Vec<String> = buckets.iter().map(|b| b.label.clone()).collect();
    let pick = |f: &dyn Fn(&Counters) -> f64| buckets.iter().map(|b| f(&b.counters)).collect::<Vec<f64>>();
    let checked = pick(&|c| f64::from(c.checked));
    let caught_values = pick(&|c| caught(c) as f64);
    let blocked = pick(&|c| f64::from(c.blocked));
    let unblocked = pick(&|c| f64::from(c.unblocked));
    let accuracy = pick(&|c| {
        let spam = caught(c) + u64::from(c.blocked);
        if spam == 0 { 0.0 } else { caught(c) as f64 * 100.0 / spam as f64 }
    });
    let unblock_rate = pick(&|c| if caught(c) == 0 { 0.0 } else { f64::from(c.unblocked) * 100.0 / caught(c) as f64 });
    type Draw = fn(&str, &[String], &[Series<'_>], Scale) -> String;
    let graphs: [(&str, Draw, Scale, [Series<'_>; 2]); 3] = [
        (
            "Activity",
            chart::line_chart,
            Scale::Count,
            [
                Series { name: "Checked", values: &checked, colour: "#2f6fb0" },
                Series { name: "Caught automatically", values: &caught_values, colour: "#c0392b" },
            ],
        ),
        (
            "Accuracy and unblock rate",
            chart::line_chart,
            Scale::Percent,
            [
                Series { name: "Accuracy", values: &accuracy, colour: "#1e8449" },
                Series { name: "Unblock rate", values: &unblock_rate, colour: "#b9770e" },
            ],
        ),
        (
            "Blocked and unblocked by users",
            chart::bar_chart,
            Scale::Count,
            [
                Series { name: "Blocked by users", values: &blocked, colour: "#884ea0" },
                Series { name: "Unblocked by users", values: &unblocked, colour: "#d68910" },
            ],
        ),
    ];
    graphs
        .iter()
        .map(|(name, draw, scale, series)| {
            let title = format!("{name}, {what}");
            let svg = draw(&title, &labels, series, *scale);
            (title, svg)
        })
        .collect()
}

/// The buckets as CSV, with a header row.
pub fn csv(buckets: &[Bucket]) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let _ = writer.write_record([
        "period",
        "checked",
        "caught",
        "spam",
        "phishing",
        "empty",
        "whitelisted",
        "blocked_by_users",
        "unblocked_by_users",
        "rescanned",
        "filed_by_rescan",
        "errors",
        "accuracy_percent",
        "unblock_rate_percent",
    ]);
    for b in buckets {
        let c = &b.counters;
        let spam = caught(c) + u64::from(c.blocked);
        let accuracy = if spam == 0 { String::new() } else { format!("{:.1}", caught(c) as f64 * 100.0 / spam as f64) };
        let unblock = if caught(c) == 0 {
            String::new()
        } else {
            format!("{:.1}", f64::from(c.unblocked) * 100.0 / caught(c) as f64)
        };
        let _ = writer.write_record([
            b.label.clone(),
            c.checked.to_string(),
            caught(c).to_string(),
            c.spam.to_string(),
            c.phish.to_string(),
            c.empty.to_string(),
            c.whitelisted.to_string(),
            c.blocked.to_string(),
            c.unblocked.to_string(),
            c.rescanned.to_string(),
            c.rescan_filed.to_string(),
            c.errors.to_string(),
            accuracy,
            unblock,
        ]);
    }
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// The kinds of report written on a schedule or on demand.
pub const KINDS: [&str; 3] = ["last-24-hours", "last-30-days", "monthly"];

/// Writes a report (CSV, with its activity graph as SVG beside it) into
/// `dir`; returns the CSV file's path.
pub fn write_report(
    c: &rusqlite::Connection,
    config: &AgentConfig,
    dir: &Path,
    kind: &str,
    now: jiff::Timestamp,
) -> anyhow::Result<PathBuf> {
    let tz = zone(config);
    let (period, name) = match kind {
        "last-24-hours" => {
            (Period::Day, format!("last-24-hours-{}", now.to_zoned_datetime(tz.clone()).strftime("%Y-%m-%d-%H00")))
        }
        "last-30-days" => {
            (Period::Month, format!("last-30-days-{}", now.to_zoned_datetime(tz.clone()).strftime("%Y-%m-%d")))
        }
        "monthly" => {
            // The previous calendar month.
            let today = now.to_zoned_datetime(tz.clone()).date();
            let first = today.first_of_month().checked_sub(jiff::Span::new().months(1))?;
            let start = first.to_zoned_datetime(tz.clone())?.timestamp().as_second();
            (Period::Calendar(start), format!("monthly-{}", first.strftime("%Y-%m")))
        }
        other => anyhow::bail!("unknown report kind {other:?} (one of {})", KINDS.join(", ")),
    };
    let buckets = series(c, period, now, config, None)?;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{name}.csv"));
    let temporary = dir.join(format!(".{name}.csv.tmp"));
    std::fs::write(&temporary, csv(&buckets))?;
    std::fs::rename(&temporary, &path)?;
    if let Some((_, svg)) = charts(&buckets, period.name()).into_iter().next() {
        std::fs::write(dir.join(format!("{name}.svg")), svg)?;
    }
    Ok(path)
}

/// A report file as listed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReportFile {
    /// File name (`.csv`).
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Last written (Unix seconds).
    pub written: i64,
    /// Its graph (`.svg`), when there is one.
    pub graph: Option<String>,
}

/// The reports in `dir`, newest first.
pub fn report_files(dir: &Path) -> Vec<ReportFile> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<ReportFile> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            if !name.ends_with(".csv") || name.starts_with('.') {
                return None;
            }
            let meta = e.metadata().ok()?;
            let written = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64;
            let graph = name.replace(".csv", ".svg");
            let graph = dir.join(&graph).exists().then_some(graph);
            Some(ReportFile { name, bytes: meta.len(), written, graph })
        })
        .collect();
    files.sort_by(|a, b| b.written.cmp(&a.written).then(a.name.cmp(&b.name)));
    files
}

/// Whether a name is a report file's (no path, `.csv` or `.svg`).
pub fn is_report_name(name: &str) -> bool {
    !name.starts_with('.')
        && (name.ends_with(".csv") || name.ends_with(".svg"))
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// Writes the scheduled reports at `reports.time` every day (the monthly
/// one on the 1st), until `stop`.
pub async fn schedule(app: App, stop: CancellationToken) {
    loop {
        let (config, _) = app.config().await;
        let Ok(daily) = starling_agent::schedule::Daily::parse(&config.reports.time, &config.rescan.timezone) else {
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(600)) => continue,
                () = stop.cancelled() => return,
            }
        };
        let now = jiff::Timestamp::now();
        let next = daily.next_after(now);
        let wait = std::time::Duration::try_from(next.duration_since(now)).unwrap_or_default();
        // Wake at least hourly: the settings may have changed the time.
        let wait = wait.min(std::time::Duration::from_secs(3600));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
        let now = jiff::Timestamp::now();
        if now < next {
            continue;
        }
        let (config, _) = app.config().await;
        let mut kinds = Vec::new();
        if config.reports.daily {
            kinds.extend(["last-24-hours", "last-30-days"]);
        }
        if config.reports.monthly && now.to_zoned_datetime(zone(&config)).day() == 1 {
            kinds.push("monthly");
        }
        write_kinds(&app, config, kinds, now).await;
    }
}

/// Writes reports of these kinds now, with an event for each.
pub async fn write_kinds(app: &App, config: AgentConfig, kinds: Vec<&'static str>, now: jiff::Timestamp) {
    for kind in kinds {
        let dir = crate::reports_dir(&config);
        let config = config.clone();
        let result = app
            .db(move |c| {
                write_report(c, &config, &dir, kind, now)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.to_string().into()))
            })
            .await;
        match result {
            Ok(path) => app.events().emit(events::REPORT_WRITTEN, None, path.display().to_string()),
            Err(e) => app.events().emit(events::REPORT_FAILED, None, format!("{kind}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AgentConfig {
        let mut config = AgentConfig::default();
        config.rescan.timezone = "UTC".into();
        config
    }

    fn database() -> (tempfile::TempDir, rusqlite::Connection) {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = state::open(&dir.path().join(state::FILE_NAME)).expect("open");
        (dir, c)
    }

    fn record(c: &mut rusqlite::Connection, at: i64, mailbox: &str, counters: Counters) {
        let hour = at.div_euclid(3600) * 3600;
        state::record_batch(c, &std::collections::BTreeMap::from([((hour, mailbox.to_owned()), counters)]))
            .expect("record");
    }

    #[test]
    fn series_fill_every_bucket_and_sum_mailboxes() {
        let (_dir, mut c) = database();
        let now: jiff::Timestamp = "2026-11-24T12:30:00Z".parse().expect("time");
        let at = now.as_second();
        record(&mut c, at, "alice", Counters { checked: 10, spam: 3, blocked: 1, ..Counters::default() });
        record(&mut c, at, "bob", Counters { checked: 5, spam: 1, unblocked: 1, ..Counters::default() });
        record(&mut c, at - 2 * 86_400, "bob", Counters { checked: 7, ..Counters::default() });
        record(&mut c, at - 40 * 86_400, "bob", Counters { checked: 100, ..Counters::default() });

        let day = series(&c, Period::Day, now, &config(), None).expect("series");
        assert_eq!(day.len(), 24);
        assert_eq!(day[23].label, "2026-11-24 12:00");
        assert_eq!(day[23].counters.checked, 15);
        let month = series(&c, Period::Month, now, &config(), None).expect("series");
        assert_eq!(month.len(), 30);
        assert_eq!(month[29].label, "2026-11-24");
        assert_eq!(month.iter().map(|b| b.counters.checked).sum::<u32>(), 22, "the 40-day-old hour is outside");
        let bob = series(&c, Period::Month, now, &config(), Some("bob")).expect("series");
        assert_eq!(bob.iter().map(|b| b.counters.checked).sum::<u32>(), 12);

        let s = summary(&day, &config());
        assert_eq!((s.checked, s.caught, s.blocked, s.unblocked), (15, 4, 1, 1));
        assert_eq!(s.accuracy, Some(80.0));
        assert_eq!(s.unblock_rate, Some(25.0));
        assert!((s.hours_saved - 4.0 * 8.0 / 3600.0).abs() < 1e-9);
    }

    #[test]
    fn reports_are_written_as_csv_with_a_graph() {
        let (dir, mut c) = database();
        let now: jiff::Timestamp = "2026-12-01T00:15:00Z".parse().expect("time");
        record(&mut c, now.as_second() - 10 * 86_400, "alice", Counters { checked: 4, spam: 2, ..Counters::default() });
        let reports = dir.path().join("reports");
        let monthly = write_report(&c, &config(), &reports, "monthly", now).expect("monthly");
        assert!(monthly.ends_with("monthly-2026-11.csv"), "{}", monthly.display());
        let text = std::fs::read_to_string(&monthly).expect("csv");
        assert_eq!(text.lines().count(), 31, "a header and 30 days of November");
        assert!(text.contains("2026-11-21,4,2,2,"), "{text}");
        let daily = write_report(&c, &config(), &reports, "last-24-hours", now).expect("daily");
        assert_eq!(std::fs::read_to_string(daily).expect("csv").lines().count(), 25);
        let files = report_files(&reports);
        assert_eq!(files.len(), 2);
        assert!(files.iter().all(|f| f.graph.is_some()));
        assert!(write_report(&c, &config(), &reports, "weekly", now).is_err());
        assert!(is_report_name("monthly-2026-11.csv"));
        assert!(!is_report_name("../state.sqlite3"));
    }
}
