//! `starling rescan`: start rescans, show them, wait for them.

use super::*;

#[derive(Args)]
pub(crate) struct RescanArgs {
    #[command(flatten)]
    pub(super) api: ApiArgs,
    #[command(subcommand)]
    pub(super) command: RescanCommand,
}

#[derive(Subcommand)]
pub(super) enum RescanCommand {
    /// Look again at mailboxes' young mail now: spam that became known
    /// since delivery is filed.
    Start {
        /// Mailbox names.
        #[arg(required_unless_present = "all")]
        names: Vec<String>,
        /// Every enabled mailbox.
        #[arg(long, conflicts_with = "names")]
        all: bool,
        /// Mail delivered within this many hours (default: rescan.max_age_hours).
        #[arg(long)]
        hours: Option<u32>,
        /// Wait until the rescans finish, showing progress.
        #[arg(long)]
        wait: bool,
    },
    /// Show the latest rescans and their progress.
    Status {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// One JSON object per rescan.
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn rescan_line(row: &RescanRow) -> String {
    let at = jiff::Timestamp::from_second(row.requested_at).map(|t| t.to_string()).unwrap_or_default();
    let mut line = format!(
        "{:>5} {at} {:<30} {:<18} {:<8} {}/{} looked at, {} filed",
        row.id, row.mailbox, row.origin, row.status, row.checked, row.total, row.filed
    );
    if !row.detail.is_empty() {
        line.push_str(&format!(" ({})", row.detail));
    }
    line
}

/// `starling rescan …`.
pub(crate) fn rescan(args: RescanArgs) -> anyhow::Result<ExitCode> {
    let api = args.api.connect()?;
    let mut out = std::io::stdout().lock();
    match args.command {
        RescanCommand::Start { names, all, hours, wait } => {
            let answer: Outcomes = api.typed(
                "POST",
                "/api/v1/rescans",
                Some(Body::Json(json!({"names": names, "all": all, "hours": hours}))),
            )?;
            // "rescan 12 requested": the rescan's id.
            let ids: Vec<i64> =
                answer.done.values().filter_map(|v| v.split_whitespace().nth(1)?.parse().ok()).collect();
            let code = outcomes(&answer, &mut out)?;
            out.flush()?;
            if wait {
                return wait_for_rescans(&api, &ids, &mut out);
            }
            Ok(code)
        }
        RescanCommand::Status { limit, json } => {
            let rows: Vec<RescanRow> = api.typed("GET", &format!("/api/v1/rescans?limit={limit}"), None)?;
            for row in &rows {
                if json {
                    writeln!(out, "{}", serde_json::to_string(row)?)?;
                } else {
                    writeln!(out, "{}", rescan_line(row))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Polls until every rescan finished; fails when one failed.
pub(super) fn wait_for_rescans(api: &Api, ids: &[i64], out: &mut impl std::io::Write) -> anyhow::Result<ExitCode> {
    let mut shown: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
    let started = std::time::Instant::now();
    loop {
        let rows: Vec<RescanRow> = api.typed("GET", "/api/v1/rescans?limit=1000", None)?;
        let (mut open, mut failed) = (0, 0);
        for row in rows.iter().filter(|row| ids.contains(&row.id)) {
            let line = rescan_line(row);
            if shown.get(&row.id) != Some(&line) {
                writeln!(out, "{line}")?;
                out.flush()?;
                shown.insert(row.id, line);
            }
            match row.status {
                RescanStatus::Done => {}
                RescanStatus::Failed => failed += 1,
                RescanStatus::Requested | RescanStatus::Queued | RescanStatus::Running => open += 1,
            }
        }
        if open == 0 {
            return Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        if started.elapsed() > Duration::from_secs(20) && shown.values().all(|l| l.contains(" requested ")) {
            anyhow::bail!("the agent did not pick the rescans up within 20 s: see `starling events`");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
