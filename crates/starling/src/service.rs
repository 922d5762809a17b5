//! Life under a service manager: systemd's readiness and watchdog
//! notifications (`Type=notify`, `WatchdogSec=`), and the choice of where
//! logs go (the journal with structured fields, JSON, or text on stderr).
//!
//! Every function here does nothing when the process was not started by
//! systemd (no `NOTIFY_SOCKET`, no `WATCHDOG_USEC`), so the same binary
//! runs in a terminal, a container or a unit alike.

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// Tells the service manager the service is up (its listeners are bound
/// and its work has started), with a one-line status for `systemctl
/// status`.
pub(crate) fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells the service manager the service is stopping (so a slow, orderly
/// stop is not mistaken for a hang).
pub(crate) fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

fn notify(state: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(error) = sd_notify::notify(state) {
        tracing::warn!("cannot notify the service manager: {error}");
    }
}

/// When the unit sets `WatchdogSec=`, pings the watchdog at half its
/// period from a task on the async runtime, until `stop`. The ping comes
/// from the same runtime that runs the agent, so a runtime that no longer
/// schedules tasks (a deadlock, a blocked worker) stops the pings and
/// systemd restarts the service.
pub(crate) fn spawn_watchdog(stop: CancellationToken) {
    let Some(period) = sd_notify::watchdog_enabled() else { return };
    let every = period / 2;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => notify(&[NotifyState::Watchdog]),
            }
        }
    });
}

/// Where logs go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// Human-readable lines on stderr.
    Text,
    /// One JSON object per line on stderr.
    Json,
    /// The systemd journal, with every field of an event as a journal field
    /// (`STARLING_EVENT_ID=500`, …).
    Journald,
}

impl LogFormat {
    /// `STARLING_LOG_FORMAT` (`text`, `json`, `journald`) when set;
    /// otherwise the journal when systemd connected stderr to it (it sets
    /// `JOURNAL_STREAM` to stderr's device and inode), else text.
    pub(crate) fn from_env() -> LogFormat {
        match std::env::var("STARLING_LOG_FORMAT").as_deref() {
            Ok("json") => LogFormat::Json,
            Ok("journald") => LogFormat::Journald,
            Ok(_) => LogFormat::Text,
            Err(_) if stderr_is_journal() => LogFormat::Journald,
            Err(_) => LogFormat::Text,
        }
    }
}

/// Whether stderr is the journal stream systemd named in `JOURNAL_STREAM`
/// (`DEVICE:INODE`); a child process that inherited the variable but
/// writes elsewhere is not.
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else { return false };
    let Some((device, inode)) = stream.split_once(':') else { return false };
    let Ok(stderr) = std::fs::metadata("/proc/self/fd/2") else { return false };
    device.parse() == Ok(stderr.dev()) && inode.parse() == Ok(stderr.ino())
}

/// Logs go to stderr or the journal (see [`LogFormat`]); `STARLING_LOG`
/// filters them (e.g. `debug`, `starling_network=trace`).
pub(crate) fn init_logging(default: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("STARLING_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let format = LogFormat::from_env();
    if format == LogFormat::Journald {
        match tracing_journald::layer() {
            Ok(journal) => {
                // Prefixed so no field of ours can pose as one of the
                // journal's own (MESSAGE, PRIORITY, …).
                let journal =
                    journal.with_field_prefix(Some("STARLING".into())).with_syslog_identifier("starling".into());
                tracing_subscriber::registry().with(filter).with(journal).init();
                return;
            }
            Err(error) => eprintln!("starling: cannot write to the journal ({error}); logging to stderr"),
        }
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Waits for Ctrl-C or SIGTERM.
pub(crate) async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
