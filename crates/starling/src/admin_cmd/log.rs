//! `starling reports` and `starling events`.

use super::*;

#[derive(Args)]
pub(crate) struct ReportsArgs {
    #[command(flatten)]
    pub(super) api: ApiArgs,
    #[command(subcommand)]
    pub(super) command: ReportsCommand,
}

#[derive(Subcommand)]
pub(super) enum ReportsCommand {
    /// Print a period's statistics as CSV.
    Export {
        /// `24h` (by hour), `5d` (by hour) or `30d` (by day).
        #[arg(long, default_value = "30d", value_parser = ["24h", "5d", "30d"])]
        period: String,
        /// One mailbox only.
        #[arg(long)]
        user: Option<String>,
    },
    /// List the reports written to the reports folder.
    List {
        /// JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a report to the reports folder now.
    Write {
        /// `last-24-hours`, `last-30-days` or `monthly` (the previous month).
        #[arg(value_parser = ["last-24-hours", "last-30-days", "monthly"])]
        kind: String,
    },
}

/// `starling reports …`.
pub(crate) fn reports(args: ReportsArgs) -> anyhow::Result<ExitCode> {
    let api = args.api.connect()?;
    let mut out = std::io::stdout().lock();
    match args.command {
        ReportsCommand::Export { period, user } => {
            let mailbox = user.map(|u| format!("&mailbox={}", q(&u))).unwrap_or_default();
            write!(out, "{}", api.send("GET", &format!("/api/v1/reports/export?period={period}{mailbox}"), None)?)?;
        }
        ReportsCommand::List { json } => {
            let files: Vec<ReportFile> = api.typed("GET", "/api/v1/reports", None)?;
            for f in &files {
                if json {
                    writeln!(out, "{}", serde_json::to_string(f)?)?;
                } else {
                    writeln!(out, "{:<40} {:>8} bytes", f.name, f.bytes)?;
                }
            }
        }
        ReportsCommand::Write { kind } => {
            let files: Vec<ReportFile> =
                api.typed("POST", "/api/v1/reports", Some(Body::Json(json!({"kind": kind}))))?;
            if let Some(newest) = files.first() {
                writeln!(out, "written: {}", newest.name)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub(crate) struct EventsArgs {
    #[command(flatten)]
    pub(super) api: ApiArgs,
    /// Only events of the last … (e.g. 30m, 24h, 7d).
    #[arg(long, default_value = "7d")]
    pub(super) since: String,
    /// Only this event id.
    #[arg(long)]
    pub(super) id: Option<u16>,
    /// Only events at least this severe (info, notice, warning, error, critical).
    #[arg(long)]
    pub(super) severity: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    pub(super) limit: u32,
    /// One JSON object per event (with its cause and remedy).
    #[arg(long)]
    pub(super) json: bool,
    #[command(subcommand)]
    pub(super) command: Option<EventsCommand>,
}

#[derive(Subcommand)]
pub(super) enum EventsCommand {
    /// Print the catalogue of every event the agent can raise (no service needed).
    Catalogue {
        /// As the Markdown table of docs/events.md.
        #[arg(long)]
        markdown: bool,
        /// As the per-event sections of docs/guides/troubleshooting.md.
        #[arg(long, conflicts_with = "markdown")]
        troubleshooting: bool,
    },
}

/// `starling events`.
pub(crate) fn events(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if let Some(EventsCommand::Catalogue { markdown, troubleshooting }) = args.command {
        if markdown {
            write!(out, "{}", catalogue_markdown())?;
        } else if troubleshooting {
            write!(out, "{}", starling_agent::events::troubleshooting_markdown())?;
        } else {
            for kind in CATALOGUE {
                writeln!(out, "{:>4} {:<9} {:<32} {}", kind.id, kind.severity.as_str(), kind.name, kind.text)?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let api = args.api.connect()?;
    let mut path = format!("/api/v1/events?since={}&limit={}", q(&args.since), args.limit);
    if let Some(id) = args.id {
        path.push_str(&format!("&id={id}"));
    }
    if let Some(severity) = &args.severity {
        path.push_str(&format!("&severity={}", q(severity)));
    }
    let events: Vec<EventView> = api.typed("GET", &path, None)?;
    for event in &events {
        if args.json {
            writeln!(out, "{}", serde_json::to_string(event)?)?;
        } else {
            let row = &event.event;
            let at = jiff::Timestamp::from_second(row.at).map(|t| t.to_string()).unwrap_or_default();
            let mailbox = row.mailbox.as_deref().map(|m| format!(" [{m}]")).unwrap_or_default();
            writeln!(out, "{at} {:>4} {:<8}{mailbox} {}", row.id, row.severity, row.text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
