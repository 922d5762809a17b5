//! The administrator's commands — `users`, `whitelist`, `settings`,
//! `reports`, `events`, `rescan`, `status` — through the running service's
//! REST API (`/api/v1`), so the CLI and the console do the same things the
//! same way.
//!
//! The console's address and an API token come from `--url`/`--token`
//! (`STARLING_URL`, `STARLING_TOKEN`, `STARLING_TOKEN_FILE`), else from the
//! files the service writes in its state directory on this machine
//! (`console.url`, `cli.token`).
//!
//! Exit codes: 0 done; 1 the service refused part of the request (unknown
//! mailbox, invalid value); 2 a usage or local error; 3 the service cannot
//! be reached; 4 the credentials were refused.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use starling_agent::activation::Phase;
use starling_agent::events::{CATALOGUE, catalogue_markdown};
use starling_agent::live::{ActivationView, NetworkView};
use starling_agent::state::{RescanRow, RescanStatus, WhitelistRow};
use starling_console::api::{EventView, ImportPreview, Imported, Installed, Outcomes, Status, UsersPage};
use starling_console::auth::Account;
use starling_console::stats::ReportFile;

use crate::agent_cmd::ConfigArgs;

mod accounts;
mod log;
mod rescan;
mod settings;
mod users;
mod whitelist;

pub(crate) use accounts::*;
pub(crate) use log::*;
pub(crate) use rescan::*;
pub(crate) use settings::*;
pub(crate) use users::*;
pub(crate) use whitelist::*;

/// Exit code: the service refused (part of) the request.
const REFUSED: u8 = 1;
/// Exit code: the service cannot be reached.
const UNREACHABLE: u8 = 3;
/// Exit code: the credentials were refused.
const UNAUTHORISED: u8 = 4;

/// A failure with its exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The exit code of an error from these commands.
pub(crate) fn exit_code(error: &anyhow::Error) -> ExitCode {
    ExitCode::from(error.downcast_ref::<Failure>().map_or(2, |f| f.code))
}

fn fail(code: u8, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure { code, message: message.into() })
}

/// How to reach the service.
#[derive(Args, Clone)]
pub(crate) struct ApiArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The console's address (default: the one the service on this
    /// machine wrote to `console.url` in its state directory).
    #[arg(long, global = true, env = "STARLING_URL", value_name = "URL")]
    url: Option<String>,
    /// An API token (see Account in the console).
    #[arg(long, global = true, env = "STARLING_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file holding the API token (default: `cli.token` in the state
    /// directory, written on first start).
    #[arg(long, global = true, env = "STARLING_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
}

/// A client of the service's API.
pub(crate) struct Api {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl ApiArgs {
    pub(crate) fn connect(&self) -> anyhow::Result<Api> {
        let config = self.config.agent()?;
        let base = match &self.url {
            Some(url) => url.clone(),
            None => std::fs::read_to_string(config.state_dir.join(starling_console::URL_FILE))
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| format!("http://{}", config.console.listen)),
        };
        let token = match (&self.token, &self.token_file) {
            (Some(token), _) => token.clone(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the token file {}", file.display()))?
                .trim()
                .to_owned(),
            (None, None) => {
                let file = config.state_dir.join(starling_console::CLI_TOKEN_FILE);
                match std::fs::read_to_string(&file) {
                    Ok(text) => text.trim().to_owned(),
                    Err(_) => {
                        return Err(fail(
                            UNAUTHORISED,
                            format!(
                                "no API token: {} does not exist (has `starling serve` run with this configuration?); \
                                 pass --token or --token-file, or set STARLING_TOKEN",
                                file.display()
                            ),
                        ));
                    }
                }
            }
        };
        let mut builder =
            ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(120)));
        // A console serving HTTPS itself is trusted by its own certificate
        // (this machine's configuration names it); others by the usual roots.
        if base.starts_with("https:") && config.console.tls() {
            let file = &config.console.tls_certificate;
            let pem = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let certificates = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect::<Vec<_>>();
            let roots = ureq::tls::RootCerts::new_with_certs(&certificates);
            builder = builder.tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build());
        }
        let agent = builder.build().into();
        Ok(Api { base: base.trim_end_matches('/').to_owned(), token, agent })
    }
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request; the body as text on success, a [`Failure`] else.
    fn send(&self, method: &str, path: &str, body: Option<Body>) -> anyhow::Result<String> {
        let url = self.url(path);
        let auth = format!("Bearer {}", self.token);
        let result = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &auth).call(),
            ("DELETE", _) => self.agent.delete(&url).header("Authorization", &auth).call(),
            (method, body) => {
                let request = match method {
                    "PUT" => self.agent.put(&url),
                    _ => self.agent.post(&url),
                }
                .header("Authorization", &auth);
                match body {
                    Some(Body::Json(value)) => request.send_json(&value),
                    Some(Body::Text(text)) => request.header("Content-Type", "text/plain; charset=utf-8").send(text),
                    None => request.send_empty(),
                }
            }
        };
        let mut response = result.map_err(|e| {
            fail(
                UNREACHABLE,
                format!(
                    "cannot reach the Starling service at {}: {e}. Is `starling serve` (or `starling agent`) running? \
                     Set --url or STARLING_URL if it listens elsewhere.",
                    self.base
                ),
            )
        })?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        match status {
            200..=299 => Ok(text),
            401 => Err(fail(
                UNAUTHORISED,
                "the service refused the API token (wrong, revoked, or for another installation): \
                 create one under Account in the console and pass it with --token or STARLING_TOKEN",
            )),
            403 => Err(fail(UNAUTHORISED, format!("not allowed: {}", error_text(&text)))),
            _ => Err(fail(REFUSED, error_text(&text))),
        }
    }

    pub(crate) fn json(&self, method: &str, path: &str, body: Option<Body>) -> anyhow::Result<Value> {
        self.typed(method, path, body)
    }

    /// A request whose answer is one of the API's own types
    /// (`starling_console::api`): a field the API renamed or dropped is a
    /// clear error here, and a compile error where the CLI reads it.
    pub(crate) fn typed<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Body>,
    ) -> anyhow::Result<T> {
        let text = self.send(method, path, body)?;
        serde_json::from_str(&text)
            .with_context(|| format!("the service's answer to {path} is not what this CLI reads"))
    }
}

pub(crate) enum Body {
    Json(Value),
    Text(String),
}

fn error_text(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(v) => {
            let mut text = v["error"].as_str().unwrap_or("the service refused the request").to_owned();
            for p in v["problems"].as_array().into_iter().flatten() {
                text.push_str("\n  ");
                text.push_str(p.as_str().unwrap_or_default());
            }
            text
        }
        Err(_) => format!("the service refused the request: {}", body.trim()),
    }
}

fn q(text: &str) -> String {
    starling_console::auth::urlencode(text).replace('/', "%2F")
}

/// Prints per-name outcomes; fails (exit 1) when some were refused.
fn outcomes(value: &Outcomes, out: &mut impl std::io::Write) -> anyhow::Result<ExitCode> {
    for (name, done) in &value.done {
        writeln!(out, "{name}: {done}")?;
    }
    let failed: Vec<String> = value.failed.iter().map(|(name, why)| format!("{name}: {why}")).collect();
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(fail(REFUSED, format!("not done:\n  {} (see `starling users list`)", failed.join("\n  "))))
    }
}

// ---------------------------------------------------------------- status

/// The subscription lines of `starling status`.
fn write_activation(out: &mut impl std::io::Write, activation: &ActivationView) -> anyhow::Result<()> {
    let standing = &activation.standing;
    let limit = match standing.max_mailboxes {
        0 => String::new(),
        n => format!("; up to {n} mailboxes"),
    };
    let verb = if standing.filtering { "" } else { " — FILTERING STOPPED, mail is delivered untouched" };
    writeln!(out, "plan:      {}: {}{limit}{verb}", standing.state.as_str(), standing.detail)?;
    if !activation.over_limit.is_empty() {
        writeln!(out, "           not filtered, beyond the plan's limit: {}", activation.over_limit.join(", "))?;
    }
    let ending = standing.state == Phase::Ending;
    if !standing.purchase_url.is_empty() && (!standing.filtering || ending) {
        writeln!(out, "           buy or renew at {}; then `starling activate CODE`", standing.purchase_url)?;
    }
    Ok(())
}

#[derive(Args)]
pub(crate) struct ActivateArgs {
    /// The activation code (STARLING1-…), as the vendor sent it.
    code: String,
    #[command(flatten)]
    api: ApiArgs,
    /// JSON.
    #[arg(long)]
    json: bool,
}

/// `starling activate CODE`: installs a code in the running service.
pub(crate) fn activate(args: ActivateArgs) -> anyhow::Result<ExitCode> {
    let api = args.api.connect()?;
    let body = Some(Body::Json(json!({ "code": args.code })));
    let installed: Installed = api.typed("POST", "/api/v1/activation", body)?;
    if args.json {
        println!("{}", serde_json::to_string(&installed)?);
        return Ok(ExitCode::SUCCESS);
    }
    let expires = match installed.expires_at {
        0 => "no expiry".to_owned(),
        at => format!("until {}", crate::network_cmd::time(at)),
    };
    let limit = match installed.max_mailboxes {
        0 => "any number of mailboxes".to_owned(),
        n => format!("up to {n} mailboxes"),
    };
    println!(
        "installed: a {} for {}, {expires}, {limit}; the service takes it within seconds",
        installed.plan, installed.organisation
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// JSON.
    #[arg(long)]
    json: bool,
}

/// `starling status`.
pub(crate) fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let api = args.api.connect()?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", api.json("GET", "/api/v1/status", None)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let status: Status = api.typed("GET", "/api/v1/status", None)?;
    let live = &status.live;
    writeln!(out, "service:   running, version {}", status.version)?;
    writeln!(out, "mail:      {}", live.mail_store)?;
    let failing: Vec<String> = live
        .connections
        .iter()
        .filter(|(_, c)| !c.connected)
        .map(|(name, c)| format!("{name} ({})", c.error))
        .collect();
    if !live.connections.is_empty() {
        let connected = live.connections.len() - failing.len();
        writeln!(out, "           {connected} connected, {} not: {}", failing.len(), failing.join(", "))?;
    }
    if let Some(network) = &live.network {
        write_network(&mut out, network)?;
    }
    if let Some(activation) = &live.activation {
        write_activation(&mut out, activation)?;
    }
    let m = &status.mailboxes;
    writeln!(out, "mailboxes: {} known, {} filtered, {} with feedback", m.total, m.enabled, m.feedback)?;
    writeln!(
        out,
        "activity:  {:.1} messages/s; {} checked since start; {} queued, {} to re-check, {} reports to send",
        status.messages_per_second, live.checked, live.queued, status.recheck_queue, status.feedback_pending
    )?;
    if let Some(milter) = &live.milter {
        writeln!(
            out,
            "milter:    on {}, {} mailboxes; {} decided in-line ({} spam), {} left to the agent, {} unchecked; {:.1} ms to decide",
            milter.listen,
            milter.mailboxes,
            milter.decided,
            milter.spam,
            milter.left_to_agent,
            milter.unchecked,
            milter.decision_ms
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The network lines of `starling status`.
fn write_network(out: &mut impl std::io::Write, network: &NetworkView) -> anyhow::Result<()> {
    let detail = if network.detail.is_empty() { String::new() } else { format!(": {}", network.detail) };
    let latency = network.latency_avg_ms.map_or_else(|| "?".into(), |ms| format!("{ms:.1}"));
    writeln!(out, "network:   {}{detail} (latency {latency} ms)", network.state)?;
    if let Some(version) = &network.new_version {
        let notes = if network.release_notes_url.is_empty() {
            String::new()
        } else {
            format!(" (release notes: {})", network.release_notes_url)
        };
        writeln!(out, "           a new version is available: {version}{notes}")?;
    }
    Ok(())
}
