//! What a deployment run comes to, and the table printed for it.

use super::*;

/// What one run measured.
pub(super) struct DeployRun {
    pub(super) arrival: Arrival,
    pub(super) users: usize,
    pub(super) reporters: usize,
    pub(super) spam: usize,
    pub(super) ham: usize,
    pub(super) delivery_seconds: f64,
    pub(super) quiet_after: f64,
    pub(super) quiet_capped: bool,
    /// Agent-filed spam in a spam folder at the end.
    pub(super) agent_spam: usize,
    /// All spam in spam folders at the end.
    pub(super) spam_in_spam: usize,
    pub(super) spam_moved_by_users: usize,
    pub(super) spam_in_inbox: usize,
    pub(super) ham_filed: usize,
    pub(super) ham_fp: usize,
    pub(super) ham_rescued: usize,
    pub(super) rescued_refiled: usize,
    pub(super) lost: usize,
    pub(super) duplicated: usize,
    /// Delivery → filed of the agent's spam filings (first filing each).
    pub(super) latency_all: Vec<f64>,
    pub(super) latency_delivery: Vec<f64>,
    pub(super) by_pass: std::collections::BTreeMap<String, usize>,
    pub(super) by_reason: std::collections::BTreeMap<String, usize>,
    pub(super) ham_by: std::collections::BTreeMap<String, usize>,
    pub(super) retro_from_delivery: Vec<f64>,
    pub(super) retro_from_move: Vec<f64>,
    pub(super) retro_spam: usize,
    pub(super) rounds: usize,
    pub(super) round_errors: usize,
    pub(super) longest_round: f64,
    pub(super) read: usize,
    pub(super) polled_share: f64,
    /// The agent's users' opinions, model examples and events by severity.
    pub(super) diagnostics: Vec<String>,
}

impl DeployRun {
    pub(super) fn recall(&self) -> f64 {
        ratio(self.agent_spam, self.spam)
    }

    pub(super) fn share(&self) -> f64 {
        ratio(self.agent_spam, self.spam_in_spam)
    }
}

pub(super) fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

pub(super) fn print_deploy(
    results: &[DeployRun],
    mail: &[Mail],
    history: &[Mail],
    limit: Option<usize>,
    agent_extra: &str,
) {
    let Some(first) = results.first() else { return };
    if !history.is_empty() {
        println!(
            "deploy: DEPLOY_HISTORY: the oldest {} messages of the split ({} spam) were the users' mail before the agent came \
             (ham read in the inbox; reporters' spam in the spam folder, others' unread in the inbox); the figures are of the rest",
            history.len(),
            history.iter().filter(|m| m.spam).count()
        );
    }
    println!(
        "deploy: {} users ({} reporting: every {DEPLOY_ROUND_SECONDS} s they read INBOX, move spam to the spam folder, rescue ham), \
         {} messages of the dev split (spam-1, easy-ham-1, hard-ham-1{}) in Date order, seeded-random over users: {} spam, {} ham",
        first.users,
        first.reporters,
        mail.len(),
        limit.map(|l| format!("; DEPLOY_LIMIT={l}: every k-th")).unwrap_or_default(),
        first.spam,
        first.ham
    );
    println!("deploy: agent config appended: {:?}", agent_extra);
    let header: Vec<String> = results.iter().map(|r| r.arrival.name()).collect();
    let mut table: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |name: &str, f: &dyn Fn(&DeployRun) -> String| {
        table.push((name.to_owned(), results.iter().map(f).collect()));
    };
    row("deliveries took", &|r| seconds(r.delivery_seconds));
    row("quiet after last delivery", &|r| {
        format!("{}{}", seconds(r.quiet_after), if r.quiet_capped { " (cap)" } else { "" })
    });
    row("agent recall (agent-filed spam / spam)", &|r| format!("{:.2} ({}/{})", r.recall(), r.agent_spam, r.spam));
    row("automatic share (agent / all in spam)", &|r| {
        format!("{:.2} ({}/{})", r.share(), r.agent_spam, r.spam_in_spam)
    });
    row("spam moved by users", &|r| r.spam_moved_by_users.to_string());
    row("spam left in inboxes", &|r| r.spam_in_inbox.to_string());
    row("ham FP (agent-filed, still in spam)", &|r| r.ham_fp.to_string());
    row("ham ever filed (per 1,000 ham)", &|r| format!("{} ({:.1})", r.ham_filed, 1000.0 * ratio(r.ham_filed, r.ham)));
    row("  by pass/reason", &|r| {
        if r.ham_by.is_empty() {
            "-".into()
        } else {
            r.ham_by.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
        }
    });
    row("ham rescued by users", &|r| r.ham_rescued.to_string());
    row("rescued ham refiled (must be 0)", &|r| r.rescued_refiled.to_string());
    row("lost / duplicated", &|r| format!("{} / {}", r.lost, r.duplicated));
    row("delivery->filed p50 / p99 (all)", &|r| {
        format!("{} / {}", seconds(quantile_s(&r.latency_all, 0.5)), seconds(quantile_s(&r.latency_all, 0.99)))
    });
    row("  pass 'delivery' only", &|r| {
        format!(
            "{} / {}",
            seconds(quantile_s(&r.latency_delivery, 0.5)),
            seconds(quantile_s(&r.latency_delivery, 0.99))
        )
    });
    row("filed spam by pass", &|r| {
        ["delivery", "recheck", "rescan", "retro"]
            .iter()
            .map(|p| format!("{p} {}", r.by_pass.get(*p).copied().unwrap_or(0)))
            .chain(
                r.by_pass
                    .iter()
                    .filter(|(p, _)| !["delivery", "recheck", "rescan", "retro"].contains(&p.as_str()))
                    .map(|(p, n)| format!("{p} {n}")),
            )
            .collect::<Vec<_>>()
            .join(", ")
    });
    row("filed spam by reason", &|r| {
        r.by_reason.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    });
    row("retro: after delivery p50 / p99", &|r| {
        format!(
            "{} / {} ({})",
            seconds(quantile_s(&r.retro_from_delivery, 0.5)),
            seconds(quantile_s(&r.retro_from_delivery, 0.99)),
            r.retro_spam
        )
    });
    row("retro: after 1st user move, same Subject", &|r| {
        format!(
            "{} / {} ({} of {})",
            seconds(quantile_s(&r.retro_from_move, 0.5)),
            seconds(quantile_s(&r.retro_from_move, 0.99)),
            r.retro_from_move.len(),
            r.retro_spam
        )
    });
    row("reporter rounds (errors, longest)", &|r| {
        format!("{} ({}, {})", r.rounds, r.round_errors, seconds(r.longest_round))
    });
    row("messages read by reporters", &|r| r.read.to_string());
    row("filings timed by polling", &|r| format!("{:.0} %", 100.0 * r.polled_share));
    for (i, name) in ["agent: users' opinions", "agent: model examples", "agent: events"].iter().enumerate() {
        row(name, &|r| r.diagnostics.get(i).cloned().unwrap_or_default());
    }
    let width = table.iter().map(|(n, _)| n.chars().count()).max().unwrap_or(0);
    let columns: Vec<usize> = (0..results.len())
        .map(|c| table.iter().map(|(_, v)| v[c].chars().count()).chain([header[c].len()]).max().unwrap_or(0))
        .collect();
    let line = |name: &str, values: &[String]| {
        let cells: Vec<String> = values.iter().zip(&columns).map(|(v, w)| format!("{v:<w$}")).collect();
        println!("  {name:<width$}  {}", cells.join("  ").trim_end());
    };
    println!();
    line("", &header);
    for (name, values) in &table {
        line(name, values);
    }
    println!();
    println!(
        "  Latency: the bench's time after each LMTP delivery to the first poll ({} ms apart) that saw the \
         filed row done; rows it missed use `at` (whole seconds); \"all\" is every pass, so retro-filings long after delivery count. Retro delay after a user move: the first \
         move by a reporter of any message with the same Subject (not the same fingerprint).",
        DEPLOY_POLL.as_millis()
    );
    println!();
    for r in results {
        println!(
            "deploy: {}: agent recall {:.2}, automatic share {:.2}, ham FP {} ({} ever filed, {:.1} per 1,000 ham), \
             rescued refiled {}, lost {}, duplicated {}, delivery->filed p50 {} p99 {}, retro {}",
            r.arrival.name(),
            r.recall(),
            r.share(),
            r.ham_fp,
            r.ham_filed,
            1000.0 * ratio(r.ham_filed, r.ham),
            r.rescued_refiled,
            r.lost,
            r.duplicated,
            seconds(quantile_s(&r.latency_all, 0.5)),
            seconds(quantile_s(&r.latency_all, 0.99)),
            r.retro_spam
        );
    }
    println!(
        "deploy: reference, the issue's figures for this scenario on the holdout split (quoted, not re-measured here): \
         previous Starling trickle recall 0.18 / share 0.43, burst 0.06 / share 0.19, 0 ham FP, p99 delivery->filed 0.60 s; \
         isbg + SpamAssassin trickle 0.65 (share 0.74, 65 ham FP, 3 duplicated, p50 4.4 s), burst 0.04"
    );
}
