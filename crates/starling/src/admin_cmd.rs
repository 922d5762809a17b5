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
use starling_agent::events::{CATALOGUE, catalogue_markdown};
use starling_agent::state::{RescanRow, RescanStatus, WhitelistRow};
use starling_console::api::{EventView, ImportPreview, Imported, Outcomes, UsersPage};
use starling_console::auth::Account;
use starling_console::stats::ReportFile;

use crate::agent_cmd::ConfigArgs;

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

// ---------------------------------------------------------------- users

#[derive(Args)]
pub(crate) struct UsersArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// List the mailboxes.
    List {
        /// Only names containing this.
        #[arg(long, default_value = "")]
        search: String,
        /// One JSON object per mailbox.
        #[arg(long)]
        json: bool,
    },
    /// Add mailboxes by hand (filtered unless --disabled).
    Add {
        /// Mailbox names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Add them without filtering.
        #[arg(long)]
        disabled: bool,
    },
    /// Filter these mailboxes.
    Enable {
        /// Mailbox names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Stop filtering these mailboxes.
    Disable {
        /// Mailbox names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Turn users' feedback (reports of their moves) on or off.
    Feedback {
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        switch: String,
        /// Mailbox names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Let the local model file these mailboxes' mail, or not (`policy.model`
    /// decides for the organisation).
    Model {
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        switch: String,
        /// Mailbox names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Rescan these mailboxes now.
    Rescan {
        /// Mailbox names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Mail delivered within this many hours (default: rescan.max_age_hours).
        #[arg(long)]
        hours: Option<u32>,
    },
    /// Import mailboxes from a CSV file (`user[,enabled]`).
    Import {
        /// The CSV file.
        file: PathBuf,
    },
}

/// `starling users …`.
pub(crate) fn users(args: UsersArgs) -> anyhow::Result<ExitCode> {
    let api = args.api.connect()?;
    let mut out = std::io::stdout().lock();
    let action = |names: Vec<String>, action: &str, hours: Option<u32>| {
        api.typed::<Outcomes>(
            "POST",
            "/api/v1/users/actions",
            Some(Body::Json(json!({"names": names, "action": action, "hours": hours}))),
        )
    };
    match args.command {
        UsersCommand::List { search, json } => {
            let mut offset = 0u64;
            loop {
                let page: UsersPage =
                    api.typed("GET", &format!("/api/v1/users?search={}&offset={offset}&limit=500", q(&search)), None)?;
                for user in &page.users {
                    if json {
                        writeln!(out, "{}", serde_json::to_string(user)?)?;
                    } else {
                        let mailbox = &user.mailbox;
                        writeln!(
                            out,
                            "{:<40} {:<8} {:<12} {:<9} {:<9} {}",
                            mailbox.name,
                            if mailbox.enabled { "enabled" } else { "disabled" },
                            if mailbox.feedback { "feedback" } else { "no feedback" },
                            if mailbox.model { "model" } else { "no model" },
                            mailbox.source,
                            if mailbox.present { "" } else { "(no longer listed)" }
                        )?;
                    }
                }
                offset += page.users.len() as u64;
                if page.users.is_empty() || offset >= page.total {
                    break;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        UsersCommand::Add { names, disabled } => {
            let answer: Outcomes =
                api.typed("POST", "/api/v1/users", Some(Body::Json(json!({"names": names, "enabled": !disabled}))))?;
            outcomes(&answer, &mut out)
        }
        UsersCommand::Enable { names } => outcomes(&action(names, "enable", None)?, &mut out),
        UsersCommand::Disable { names } => outcomes(&action(names, "disable", None)?, &mut out),
        UsersCommand::Feedback { switch, names } => {
            outcomes(&action(names, &format!("feedback-{switch}"), None)?, &mut out)
        }
        UsersCommand::Model { switch, names } => outcomes(&action(names, &format!("model-{switch}"), None)?, &mut out),
        UsersCommand::Rescan { names, hours } => outcomes(&action(names, "rescan", hours)?, &mut out),
        UsersCommand::Import { file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let answer: Imported = api.typed("POST", "/api/v1/users/import", Some(Body::Text(text)))?;
            writeln!(out, "imported {} mailboxes: {} added, {} updated", answer.rows, answer.added, answer.updated)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

// ---------------------------------------------------------------- whitelist

#[derive(Args)]
pub(crate) struct WhitelistArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// A mailbox's own whitelist instead of the server-wide one.
    #[arg(long, global = true, value_name = "MAILBOX")]
    user: Option<String>,
    #[command(subcommand)]
    command: WhitelistCommand,
}

#[derive(Subcommand)]
enum WhitelistCommand {
    /// List the entries (server-wide, or --user's; --all for every list).
    List {
        /// Every list.
        #[arg(long)]
        all: bool,
        /// One JSON object per entry.
        #[arg(long)]
        json: bool,
    },
    /// Add an entry: address, @domain, host or domain, *.domain, IP, CIDR or /regex/.
    Add {
        /// The entry.
        entry: String,
        /// A note kept with it.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Remove an entry.
    Remove {
        /// The entry, as listed.
        entry: String,
    },
    /// Import entries from a text file (one per line) or CSV (`entry,comment`).
    Import {
        /// The file.
        file: PathBuf,
        /// Only show what would change.
        #[arg(long)]
        dry_run: bool,
    },
    /// Export entries as CSV (`entry,comment`) or plain text.
    Export {
        /// `csv` or `text`.
        #[arg(long, default_value = "csv", value_parser = ["csv", "text"])]
        format: String,
    },
}

/// `starling whitelist …`.
pub(crate) fn whitelist(args: WhitelistArgs) -> anyhow::Result<ExitCode> {
    let api = args.api.connect()?;
    let scope = args.user.unwrap_or_default();
    let mut out = std::io::stdout().lock();
    match args.command {
        WhitelistCommand::List { all, json } => {
            let rows: Vec<WhitelistRow> =
                api.typed("GET", &format!("/api/v1/whitelist?scope={}&all={all}", q(&scope)), None)?;
            for row in &rows {
                if json {
                    writeln!(out, "{}", serde_json::to_string(row)?)?;
                } else {
                    let scope = if row.scope.is_empty() { "(server)" } else { row.scope.as_str() };
                    writeln!(out, "{scope:<24} {:<40} {}", row.entry, row.comment)?;
                }
            }
        }
        WhitelistCommand::Add { entry, comment } => {
            let answer = api.json(
                "POST",
                "/api/v1/whitelist",
                Some(Body::Json(json!({"scope": scope, "entry": entry, "comment": comment}))),
            )?;
            let added = answer["added"] == true;
            writeln!(
                out,
                "{}: {}",
                answer["entry"].as_str().unwrap_or_default(),
                if added { "added" } else { "already listed" }
            )?;
        }
        WhitelistCommand::Remove { entry } => {
            api.json("DELETE", &format!("/api/v1/whitelist?scope={}&entry={}", q(&scope), q(&entry)), None)?;
        }
        WhitelistCommand::Import { file, dry_run } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let path = format!("/api/v1/whitelist/import?scope={}&dry_run={dry_run}", q(&scope));
            let answer: ImportPreview = match api.typed("POST", &path, Some(Body::Text(text))) {
                Ok(answer) => answer,
                Err(e) => {
                    return Err(fail(
                        REFUSED,
                        format!("{} has problems; nothing was imported:\n  {e}", file.display()),
                    ));
                }
            };
            let (add, update) = (answer.add.len(), answer.update.len());
            let verb = if dry_run { "would import" } else { "imported" };
            writeln!(out, "{verb}: {add} new, {update} comments changed, {} already listed", answer.unchanged)?;
        }
        WhitelistCommand::Export { format } => {
            let text =
                api.send("GET", &format!("/api/v1/whitelist/export?scope={}&format={format}", q(&scope)), None)?;
            write!(out, "{text}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- settings

#[derive(Args)]
pub(crate) struct SettingsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: SettingsCommand,
}

#[derive(Subcommand)]
enum SettingsCommand {
    /// Show the settings (or one) and their values.
    Get {
        /// One setting's key (e.g. policy.spam_action).
        key: Option<String>,
        /// JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change settings: KEY=VALUE … (all or none; they apply within seconds).
    Set {
        /// KEY=VALUE pairs.
        #[arg(required = true)]
        pairs: Vec<String>,
    },
    /// Return a setting to the configuration file's value.
    Reset {
        /// The key.
        key: String,
    },
}

/// `starling settings …`.
pub(crate) fn settings(args: SettingsArgs) -> anyhow::Result<ExitCode> {
    let api = args.api.connect()?;
    let mut out = std::io::stdout().lock();
    match args.command {
        SettingsCommand::Get { key, json } => {
            let answer = api.json("GET", "/api/v1/settings", None)?;
            let settings: Vec<&Value> = answer["settings"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| key.as_deref().is_none_or(|k| s["key"] == k))
                .collect();
            if settings.is_empty()
                && let Some(key) = key
            {
                return Err(fail(REFUSED, format!("{key}: not a setting (see `starling settings get`)")));
            }
            for s in settings {
                if json {
                    writeln!(out, "{s}")?;
                } else {
                    let value = starling_agent::settings::display(&s["value"]);
                    let mark = if s["stored"] == true { "  (changed in the console)" } else { "" };
                    writeln!(out, "{:<32} {value}{mark}", s["key"].as_str().unwrap_or_default())?;
                }
            }
            for problem in answer["problems"].as_array().into_iter().flatten() {
                eprintln!("warning: stored setting not applied: {}", problem.as_str().unwrap_or_default());
            }
        }
        SettingsCommand::Set { pairs } => {
            let mut changes = serde_json::Map::new();
            for pair in pairs {
                let Some((key, value)) = pair.split_once('=') else {
                    anyhow::bail!("{pair:?}: expected KEY=VALUE");
                };
                changes.insert(key.trim().to_owned(), Value::String(value.to_owned()));
            }
            let answer = api.json("PUT", "/api/v1/settings", Some(Body::Json(Value::Object(changes))))?;
            let changed: Vec<&str> =
                answer["changed"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            if changed.is_empty() {
                writeln!(out, "nothing changed")?;
            } else {
                writeln!(out, "changed: {} (applies within seconds)", changed.join(", "))?;
            }
        }
        SettingsCommand::Reset { key } => {
            api.json("DELETE", &format!("/api/v1/settings/{}", q(&key)), None)?;
            writeln!(out, "{key}: back to the configuration file's value")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- accounts

#[derive(Args)]
pub(crate) struct AccountsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: AccountsCommand,
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// List the console's accounts and their roles.
    List {
        /// JSON, one account per line.
        #[arg(long)]
        json: bool,
    },
    /// Add an account; prints a new random password unless one is given on
    /// standard input (--password-stdin).
    Add {
        /// The account's name.
        name: String,
        /// admin or read-only.
        #[arg(long, default_value = "read-only")]
        role: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Give an account another role (admin or read-only).
    Role {
        /// The account's name.
        name: String,
        /// admin or read-only.
        role: String,
    },
    /// Set an account's password (its sessions end); prints a new random
    /// one unless one is given on standard input (--password-stdin).
    Password {
        /// The account's name.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove an account, its sessions and tokens.
    Remove {
        /// The account's name.
        name: String,
    },
}

/// The password to set: the first line of standard input, or a new random
/// one (printed).
fn new_password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if !from_stdin {
        return Ok((starling_console::auth::random_password(), true));
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("cannot read the password from standard input")?;
    Ok((line.trim_end_matches(['\r', '\n']).to_owned(), false))
}

/// `starling accounts …`.
pub(crate) fn accounts(args: AccountsArgs) -> anyhow::Result<ExitCode> {
    let api = args.api.connect()?;
    let mut out = std::io::stdout().lock();
    match args.command {
        AccountsCommand::List { json } => {
            let accounts: Vec<Account> = api.typed("GET", "/api/v1/accounts", None)?;
            for account in &accounts {
                if json {
                    writeln!(out, "{}", serde_json::to_string(account)?)?;
                } else {
                    let role = serde_json::to_value(account.role)?;
                    writeln!(out, "{:<24} {}", account.name, role.as_str().unwrap_or_default())?;
                }
            }
        }
        AccountsCommand::Add { name, role, password_stdin } => {
            let (password, generated) = new_password(password_stdin)?;
            let body = json!({"name": name, "password": password, "role": role});
            api.json("POST", "/api/v1/accounts", Some(Body::Json(body)))?;
            writeln!(out, "{name} added ({role})")?;
            if generated {
                writeln!(out, "password: {password}")?;
            }
        }
        AccountsCommand::Role { name, role } => {
            api.json("PUT", &format!("/api/v1/accounts/{}/role", q(&name)), Some(Body::Json(json!({"role": role}))))?;
            writeln!(out, "{name} is now {role}")?;
        }
        AccountsCommand::Password { name, password_stdin } => {
            let (password, generated) = new_password(password_stdin)?;
            let body = json!({"password": password});
            api.json("PUT", &format!("/api/v1/accounts/{}/password", q(&name)), Some(Body::Json(body)))?;
            writeln!(out, "{name}: password changed, its sessions ended")?;
            if generated {
                writeln!(out, "password: {password}")?;
            }
        }
        AccountsCommand::Remove { name } => {
            api.json("DELETE", &format!("/api/v1/accounts/{}", q(&name)), None)?;
            writeln!(out, "{name} removed, with its sessions and tokens")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- reports

#[derive(Args)]
pub(crate) struct ReportsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: ReportsCommand,
}

#[derive(Subcommand)]
enum ReportsCommand {
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

// ---------------------------------------------------------------- events

#[derive(Args)]
pub(crate) struct EventsArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// Only events of the last … (e.g. 30m, 24h, 7d).
    #[arg(long, default_value = "7d")]
    since: String,
    /// Only this event id.
    #[arg(long)]
    id: Option<u16>,
    /// Only events at least this severe (info, notice, warning, error, critical).
    #[arg(long)]
    severity: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// One JSON object per event (with its cause and remedy).
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: Option<EventsCommand>,
}

#[derive(Subcommand)]
enum EventsCommand {
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

// ---------------------------------------------------------------- rescan

#[derive(Args)]
pub(crate) struct RescanArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: RescanCommand,
}

#[derive(Subcommand)]
enum RescanCommand {
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

fn rescan_line(row: &RescanRow) -> String {
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
fn wait_for_rescans(api: &Api, ids: &[i64], out: &mut impl std::io::Write) -> anyhow::Result<ExitCode> {
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

// ---------------------------------------------------------------- status

/// The subscription lines of `starling status`.
fn write_activation(out: &mut impl std::io::Write, activation: &Value) -> anyhow::Result<()> {
    let filtering = activation["filtering"] == true;
    let state = activation["state"].as_str().unwrap_or("unknown");
    let detail = activation["detail"].as_str().unwrap_or_default();
    let limit = match activation["max_mailboxes"].as_u64() {
        None | Some(0) => String::new(),
        Some(n) => format!("; up to {n} mailboxes"),
    };
    let verb = if filtering { "" } else { " — FILTERING STOPPED, mail is delivered untouched" };
    writeln!(out, "plan:      {state}: {detail}{limit}{verb}")?;
    let over: Vec<&str> =
        activation["over_limit"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if !over.is_empty() {
        writeln!(out, "           not filtered, beyond the plan's limit: {}", over.join(", "))?;
    }
    let url = activation["purchase_url"].as_str().unwrap_or_default();
    if !url.is_empty() && (!filtering || state == "ending") {
        writeln!(out, "           buy or renew at {url}; then `starling activate CODE`")?;
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
    let installed = api.json("POST", "/api/v1/activation", Some(Body::Json(json!({ "code": args.code }))))?;
    if args.json {
        println!("{installed}");
        return Ok(ExitCode::SUCCESS);
    }
    let expires = match installed["expires_at"].as_i64() {
        None | Some(0) => "no expiry".to_owned(),
        Some(at) => format!("until {}", crate::network_cmd::time(at)),
    };
    let limit = match installed["max_mailboxes"].as_u64() {
        None | Some(0) => "any number of mailboxes".to_owned(),
        Some(n) => format!("up to {n} mailboxes"),
    };
    println!(
        "installed: a {} for {}, {expires}, {limit}; the service takes it within seconds",
        installed["plan"].as_str().unwrap_or_default(),
        installed["organisation"].as_str().unwrap_or_default()
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
    let status = api.json("GET", "/api/v1/status", None)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{status}")?;
        return Ok(ExitCode::SUCCESS);
    }
    let live = &status["live"];
    let network = &live["network"];
    writeln!(out, "service:   running, version {}", status["version"].as_str().unwrap_or_default())?;
    writeln!(out, "mail:      {}", live["mail_store"].as_str().unwrap_or_default())?;
    let connections = live["connections"].as_object().cloned().unwrap_or_default();
    let failing: Vec<String> = connections
        .iter()
        .filter(|(_, c)| c["connected"] != true)
        .map(|(n, c)| format!("{n} ({})", c["error"].as_str().unwrap_or_default()))
        .collect();
    if !connections.is_empty() {
        writeln!(
            out,
            "           {} connected, {} not: {}",
            connections.len() - failing.len(),
            failing.len(),
            failing.join(", ")
        )?;
    }
    writeln!(
        out,
        "network:   {}{} (latency {} ms)",
        network["state"].as_str().unwrap_or("unknown"),
        network["detail"].as_str().filter(|d| !d.is_empty()).map(|d| format!(": {d}")).unwrap_or_default(),
        network["latency_avg_ms"].as_f64().map_or_else(|| "?".into(), |ms| format!("{ms:.1}"))
    )?;
    if let Some(version) = network["new_version"].as_str() {
        let notes = network["release_notes_url"].as_str().filter(|u| !u.is_empty());
        let notes = notes.map(|u| format!(" (release notes: {u})")).unwrap_or_default();
        writeln!(out, "           a new version is available: {version}{notes}")?;
    }
    let activation = &live["activation"];
    if activation.is_object() {
        write_activation(&mut out, activation)?;
    }
    let m = &status["mailboxes"];
    writeln!(out, "mailboxes: {} known, {} filtered, {} with feedback", m["total"], m["enabled"], m["feedback"])?;
    writeln!(
        out,
        "activity:  {:.1} messages/s; {} checked since start; {} queued, {} to re-check, {} reports to send",
        status["messages_per_second"].as_f64().unwrap_or_default(),
        live["checked"],
        live["queued"],
        status["recheck_queue"],
        status["feedback_pending"]
    )?;
    let milter = &live["milter"];
    if milter.is_object() {
        writeln!(
            out,
            "milter:    on {}, {} mailboxes; {} decided in-line ({} spam), {} left to the agent, {} unchecked; {:.1} ms to decide",
            milter["listen"].as_str().unwrap_or_default(),
            milter["mailboxes"],
            milter["decided"],
            milter["spam"],
            milter["left_to_agent"],
            milter["unchecked"],
            milter["decision_ms"].as_f64().unwrap_or_default()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
