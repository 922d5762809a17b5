//! The dashboard's figures — what the status page, `/api/v1/status`,
//! `/api/v1/live` and `/metrics` show — read from the live view and the
//! state database.

use serde::{Deserialize, Serialize};
use starling_agent::state;

use crate::App;
use crate::error::ApiError;
use crate::stats;

/// The dashboard's figures.
#[derive(Serialize, Deserialize)]
pub struct Status {
    /// The agent's version.
    pub version: String,
    /// The live view.
    pub live: starling_agent::live::Snapshot,
    /// Messages checked per second (last ten seconds).
    pub messages_per_second: f64,
    /// Mailboxes known, filtered, with feedback.
    pub mailboxes: MailboxCounts,
    /// Messages waiting for a re-check (network unavailable).
    pub recheck_queue: u64,
    /// Users' reports not yet sent.
    pub feedback_pending: u64,
    /// Problems of stored settings that do not apply.
    pub settings_problems: Vec<String>,
}

/// Mailbox counts.
#[derive(Serialize, Deserialize, Default)]
pub struct MailboxCounts {
    /// Known.
    pub total: u64,
    /// Filtered.
    pub enabled: u64,
    /// With feedback on.
    pub feedback: u64,
}

/// The dashboard's figures now.
pub async fn status_now(app: &App) -> Result<Status, ApiError> {
    let (mailboxes, recheck_queue, feedback_pending) = app
        .db(|c| {
            let counts = c.query_row(
                "SELECT count(*), coalesce(sum(enabled), 0), coalesce(sum(enabled AND feedback), 0) FROM mailboxes",
                [],
                |row| {
                    Ok(MailboxCounts {
                        total: row.get::<_, i64>(0)? as u64,
                        enabled: row.get::<_, i64>(1)? as u64,
                        feedback: row.get::<_, i64>(2)? as u64,
                    })
                },
            )?;
            Ok((counts, state::recheck_count(c)?, state::feedback_pending(c)?))
        })
        .await?;
    let (_, settings_problems) = app.config().await;
    Ok(Status {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        live: app.live().snapshot(),
        messages_per_second: app.rate(),
        mailboxes,
        recheck_queue,
        feedback_pending,
        settings_problems,
    })
}

/// The live performance figures.
#[derive(Serialize)]
pub struct LiveFigures {
    /// Messages checked per second (last ten seconds).
    pub messages_per_second: f64,
    /// Per ten seconds over the last five minutes.
    pub history: Vec<f64>,
    /// Work waiting in the mailbox tasks' queues.
    pub queue_depth: u64,
    /// Messages waiting for a re-check.
    pub recheck_queue: u64,
    /// The network's latency (last, mean; milliseconds).
    pub network_latency_ms: (Option<f64>, Option<f64>),
    /// Messages checked and filed since the start.
    pub checked: u64,
    /// Filed since the start.
    pub filed: u64,
}

/// The live figures now.
pub async fn live_now(app: &App) -> Result<LiveFigures, ApiError> {
    let recheck_queue = app.db(|c| state::recheck_count(c)).await?;
    let snapshot = app.live().snapshot();
    let latency = snapshot.network.as_ref().map_or((None, None), |n| (n.latency_ms, n.latency_avg_ms));
    Ok(LiveFigures {
        messages_per_second: app.rate(),
        history: app.rate_history(),
        queue_depth: snapshot.queued,
        recheck_queue,
        network_latency_ms: latency,
        checked: snapshot.checked,
        filed: snapshot.filed,
    })
}

/// The Prometheus exposition of the agent's figures (OpenMetrics text).
pub fn metrics_text(status: &Status, last_day: &[stats::Bucket]) -> String {
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;
    let mut registry = Registry::with_prefix("starling_agent");
    let gauge = |registry: &mut Registry, name: &str, help: &str, value: f64| {
        let g: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
        g.set(value);
        registry.register(name, help, g);
    };
    let live = &status.live;
    gauge(&mut registry, "messages_checked", "Messages checked since the agent started", live.checked as f64);
    gauge(&mut registry, "messages_filed", "Messages filed since the agent started", live.filed as f64);
    gauge(&mut registry, "messages_per_second", "Messages checked per second, last 10 s", status.messages_per_second);
    gauge(&mut registry, "queue_depth", "Work waiting in the mailbox tasks' queues", live.queued as f64);
    gauge(&mut registry, "recheck_queue", "Messages waiting for a re-check", status.recheck_queue as f64);
    gauge(&mut registry, "feedback_pending", "Users' reports not yet sent", status.feedback_pending as f64);
    gauge(&mut registry, "mailboxes", "Mailboxes known", status.mailboxes.total as f64);
    gauge(&mut registry, "mailboxes_enabled", "Mailboxes filtered", status.mailboxes.enabled as f64);
    gauge(&mut registry, "mailbox_tasks", "Mailbox tasks running", live.tasks as f64);
    let connected = live.connections.values().filter(|c| c.connected).count();
    gauge(&mut registry, "mail_connections", "Mailbox tasks connected to the mail server", connected as f64);
    gauge(
        &mut registry,
        "mail_connections_failing",
        "Mailbox tasks not connected to the mail server",
        (live.connections.len() - connected) as f64,
    );
    if let Some(network) = &live.network {
        gauge(&mut registry, "network_up", "1 when the network answers", f64::from(u8::from(network.state == "up")));
        if let Some(ms) = network.latency_avg_ms {
            gauge(&mut registry, "network_latency_seconds", "Mean network round trip", ms / 1000.0);
        }
        gauge(
            &mut registry,
            "new_version_available",
            "1 when the network announces a newer agent",
            f64::from(u8::from(network.new_version.is_some())),
        );
    }
    if let Some(activation) = &live.activation {
        let standing = &activation.standing;
        gauge(
            &mut registry,
            "filtering_active",
            "1 while the trial or subscription lets the agent filter",
            f64::from(u8::from(standing.filtering)),
        );
        if let Some(days) = standing.days_left {
            gauge(
                &mut registry,
                "subscription_days_left",
                "Whole days until the trial or subscription ends",
                days as f64,
            );
        }
        gauge(
            &mut registry,
            "mailboxes_over_limit",
            "Enabled mailboxes the plan's limit leaves unfiltered",
            activation.over_limit.len() as f64,
        );
    }
    if let Some(milter) = &live.milter {
        gauge(
            &mut registry,
            "milter_decided",
            "Messages the milter decided in-line since the agent started",
            milter.decided as f64,
        );
        gauge(&mut registry, "milter_spam", "Of those, spam and phishing", milter.spam as f64);
        gauge(
            &mut registry,
            "milter_left_to_agent",
            "Messages the milter left to the post-delivery agent (recipients disagreed)",
            milter.left_to_agent as f64,
        );
        gauge(
            &mut registry,
            "milter_unchecked",
            "Messages the milter delivered unchecked (no verdict in time, or no network)",
            milter.unchecked as f64,
        );
        gauge(&mut registry, "milter_not_filtered", "Messages to nobody filtered", milter.not_filtered as f64);
        gauge(
            &mut registry,
            "milter_decision_seconds",
            "The milter's mean time to decide over recent messages",
            milter.decision_ms / 1000.0,
        );
    }
    if let Some(learning) = &live.learning {
        let l = learning;
        gauge(
            &mut registry,
            "filed_after_delivery",
            "Messages filed after delivery (retro-filing) since the agent started",
            l.filed_after_delivery as f64,
        );
        gauge(
            &mut registry,
            "filed_by_model",
            "Messages the local model filed since the agent started",
            l.filed_by_model as f64,
        );
        gauge(&mut registry, "model_spam_examples", "Spam examples the local model learnt", l.model.spam as f64);
        gauge(&mut registry, "model_ham_examples", "Ham examples the local model learnt", l.model.ham as f64);
        gauge(
            &mut registry,
            "model_ready",
            "1 when the local model has learnt enough to file",
            f64::from(u8::from(l.model.ready)),
        );
        gauge(
            &mut registry,
            "model_threshold",
            "The local model's counting classifier's calibrated filing threshold",
            f64::from(l.model.threshold),
        );
        gauge(
            &mut registry,
            "model_linear_threshold",
            "The local model's linear classifier's filing threshold, as a probability (above 1: none yet)",
            f64::from(l.model.linear_threshold),
        );
        gauge(
            &mut registry,
            "model_known_senders",
            "Senders the organisation corresponds with, whose mail the local model never files",
            l.model.known_senders as f64,
        );
    }
    let mut day = state::Counters::default();
    for bucket in last_day {
        day.add(&bucket.counters);
    }
    gauge(&mut registry, "last_24h_checked", "Messages checked in the last 24 hours", f64::from(day.checked));
    gauge(&mut registry, "last_24h_caught", "Spam caught in the last 24 hours", stats::caught(&day) as f64);
    gauge(&mut registry, "last_24h_blocked", "Spam users blocked in the last 24 hours", f64::from(day.blocked));
    gauge(
        &mut registry,
        "last_24h_unblocked",
        "Messages users unblocked in the last 24 hours",
        f64::from(day.unblocked),
    );
    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}
