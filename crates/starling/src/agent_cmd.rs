//! `starling agent`, `starling serve` and the commands that administer an
//! agent's state: `users`, `whitelist`, `events`, `rescan`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use starling_agent::events::{CATALOGUE, catalogue_markdown};
use starling_agent::state;
use starling_agent::whitelist::{self, Entry};
use starling_agent::{AgentConfig, Options};
use starling_network::NodeConfig;
use starling_proto::client::{self, Credential, Target};
use starling_proto::v1;
use tokio_util::sync::CancellationToken;

/// Where the configuration is, for every agent command.
#[derive(Args, Clone)]
pub(crate) struct ConfigArgs {
    /// The configuration file (TOML; see docs/configuration.md). Without it,
    /// the defaults are used.
    #[arg(long, short, env = "STARLING_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

impl ConfigArgs {
    fn text(&self) -> anyhow::Result<String> {
        match &self.config {
            Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display())),
            None => Ok(String::new()),
        }
    }

    fn name(&self) -> String {
        self.config.as_ref().map_or_else(|| "the defaults".to_owned(), |p| p.display().to_string())
    }

    /// The agent configuration (the `[embedded_network]` table, if any, is
    /// `starling serve`'s).
    fn agent(&self) -> anyhow::Result<AgentConfig> {
        Ok(split(&self.text()?).map_err(|problems| invalid(&self.name(), &problems))?.0)
    }

    fn connection(&self) -> anyhow::Result<rusqlite::Connection> {
        let config = self.agent()?;
        let path = config.state_dir.join(state::FILE_NAME);
        if !path.exists() {
            anyhow::bail!(
                "no agent state at {} (has the agent run with this configuration? use --config)",
                path.display()
            );
        }
        state::open(&path).with_context(|| format!("cannot open {}", path.display()))
    }

    /// The state database, created when the agent has not run yet (users
    /// and whitelists can be prepared before the first start).
    fn connection_or_create(&self) -> anyhow::Result<rusqlite::Connection> {
        let config = self.agent()?;
        std::fs::create_dir_all(&config.state_dir)
            .with_context(|| format!("cannot create {}", config.state_dir.display()))?;
        let path = config.state_dir.join(state::FILE_NAME);
        state::open(&path).with_context(|| format!("cannot open {}", path.display()))
    }
}

fn invalid(name: &str, problems: &[String]) -> anyhow::Error {
    anyhow::anyhow!("{name} is invalid:\n  {}", problems.join("\n  "))
}

/// Splits a configuration text into the agent's part and the embedded
/// network's table, and parses both (every problem at once).
fn split(text: &str) -> Result<(AgentConfig, Option<toml::Table>), Vec<String>> {
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| vec![e.to_string().trim().to_owned()])?;
    let network = match table.remove("embedded_network") {
        Some(toml::Value::Table(network)) => Some(network),
        Some(_) => return Err(vec!["embedded_network: must be a table".into()]),
        None => None,
    };
    let rest = toml::to_string(&table).map_err(|e| vec![e.to_string()])?;
    Ok((AgentConfig::from_toml(&rest)?, network))
}

/// The embedded node of `starling serve`: loopback, in the state
/// directory, with the single-organisation trust preset (one user's report
/// blocks: every reporter is one of the administrator's own users), then
/// whatever `[embedded_network]` sets.
fn embedded_node(agent: &AgentConfig, table: Option<toml::Table>) -> Result<NodeConfig, Vec<String>> {
    let mut preset = NodeConfig { data_dir: agent.state_dir.join("network"), ..NodeConfig::default() };
    preset.trust.threshold = 1.0;
    preset.trust.ham_threshold = 1.0;
    preset.trust.consensus_organisations = 1;
    let Some(overrides) = table else { return Ok(preset) };
    let mut merged = toml::Value::try_from(&preset).map_err(|e| vec![e.to_string()])?;
    merge(&mut merged, toml::Value::Table(overrides));
    let text = toml::to_string(&merged).map_err(|e| vec![e.to_string()])?;
    NodeConfig::from_toml(&text)
        .map_err(|problems| problems.into_iter().map(|p| format!("embedded_network.{p}")).collect())
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(base), toml::Value::Table(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

#[derive(Args)]
pub(crate) struct AgentArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Check the configuration and exit.
    #[arg(long)]
    check_config: bool,
}

/// `starling agent`: watch the mailboxes, ask a network.
pub(crate) fn agent(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.agent()?;
    if args.check_config {
        println!("{} is valid", args.config.name());
        return Ok(ExitCode::SUCCESS);
    }
    raise_file_limit();
    crate::runtime()?.block_on(async move {
        let stop = CancellationToken::new();
        let mut agent = tokio::spawn(starling_agent::run(config, Options::default(), stop.clone()));
        tokio::select! {
            () = crate::network_cmd::wait_for_signal() => {
                eprintln!("stopping…");
                stop.cancel();
                (&mut agent).await.context("the agent panicked")??;
            }
            result = &mut agent => result.context("the agent panicked")??,
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Check the configuration and exit.
    #[arg(long)]
    check_config: bool,
}

/// The file in `state_dir` holding the embedded network's credential for
/// this organisation.
const EMBEDDED_CREDENTIAL: &str = "embedded-network.credential";

/// `starling serve`: the agent with its own network node.
pub(crate) fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let (agent, network) = split(&args.config.text()?).map_err(|p| invalid(&args.config.name(), &p))?;
    let node = embedded_node(&agent, network).map_err(|p| invalid(&args.config.name(), &p))?;
    if args.check_config {
        println!("{} is valid", args.config.name());
        return Ok(ExitCode::SUCCESS);
    }
    raise_file_limit();
    crate::runtime()?.block_on(async move {
        std::fs::create_dir_all(&agent.state_dir)
            .with_context(|| format!("cannot create {}", agent.state_dir.display()))?;
        let running = starling_network::start(node.clone()).await?;
        let url = format!("http://{}", running.addr);
        tracing::info!(
            event_id = 102,
            event = "embedded_network_started",
            "The embedded network node started at {url}."
        );
        let credential = embedded_credential(&agent.state_dir, &node.data_dir, &url).await?;
        let mut agent = agent;
        agent.network.url = url;
        eprintln!(
            "starling serve: network at {}, watching {} ({} mail store); stop with Ctrl-C",
            agent.network.url,
            match agent.mail_store {
                starling_agent::config::MailStoreKind::Maildir => agent.maildir.root.display().to_string(),
                starling_agent::config::MailStoreKind::Imap => format!("{}:{}", agent.imap.host, agent.imap.port()),
            },
            match agent.mail_store {
                starling_agent::config::MailStoreKind::Maildir => "Maildir",
                starling_agent::config::MailStoreKind::Imap => "IMAP",
            }
        );
        let stop = CancellationToken::new();
        let mut task = tokio::spawn(starling_agent::run(agent, Options { credential: Some(credential) }, stop.clone()));
        let result = tokio::select! {
            () = crate::network_cmd::wait_for_signal() => {
                eprintln!("stopping…");
                stop.cancel();
                (&mut task).await.context("the agent panicked")?
            }
            result = &mut task => result.context("the agent panicked")?,
        };
        running.shutdown.cancel();
        let _ = running.stopped.await;
        result?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The organisation credential for the embedded node, created on first
/// start with the node's operator token.
async fn embedded_credential(state_dir: &Path, node_data: &Path, url: &str) -> anyhow::Result<String> {
    let path = state_dir.join(EMBEDDED_CREDENTIAL);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok(text.trim().to_owned());
    }
    let token = starling_network::node::operator_token(node_data)?;
    let channel = Target::new(url).connect().await?;
    let mut admin = client::admin(channel, Credential::new(&token).map_err(anyhow::Error::msg)?);
    let request =
        v1::CreateOrganisationRequest { name: "local".into(), plan: v1::Plan::Subscription.into(), expires_at: 0 };
    let created = admin
        .create_organisation(request)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the local organisation: {}", e.message()))?
        .into_inner();
    starling_agent::agent::write_private(&path, created.credential.as_bytes())?;
    Ok(created.credential)
}

/// One watched IMAP mailbox needs one socket: raise the soft limit on open
/// files to the hard limit.
fn raise_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!("open files limit: {limit}"),
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
}

#[derive(Args)]
pub(crate) struct UsersArgs {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// List the mailboxes.
    List {
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
    /// Import mailboxes from a CSV file (`user[,enabled]`).
    Import {
        /// The CSV file.
        file: PathBuf,
    },
    /// Turn users' feedback (reports of their moves) on or off for mailboxes.
    Feedback {
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        switch: String,
        /// Mailbox names.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `starling users …`.
pub(crate) fn users(args: UsersArgs) -> anyhow::Result<ExitCode> {
    let mut c = args.config.connection_or_create()?;
    let mut out = std::io::stdout().lock();
    match args.command {
        UsersCommand::List { json } => {
            for row in state::mailboxes(&c)? {
                if json {
                    writeln!(out, "{}", serde_json::to_string(&row)?)?;
                } else {
                    writeln!(
                        out,
                        "{:<40} {:<8} {:<12} {:<9} {}",
                        row.name,
                        if row.enabled { "enabled" } else { "disabled" },
                        if row.feedback { "feedback" } else { "no feedback" },
                        row.source,
                        if row.present { "" } else { "(no longer listed)" }
                    )?;
                }
            }
        }
        UsersCommand::Add { names, disabled } => {
            for name in names {
                starling_agent::users::check_name(&name).map_err(anyhow::Error::msg)?;
                let added = state::add_mailbox(&c, &name, !disabled, "cli")?;
                writeln!(out, "{name}: {}", if added { "added" } else { "already known" })?;
            }
        }
        UsersCommand::Enable { names } | UsersCommand::Disable { names } if names.is_empty() => {}
        UsersCommand::Enable { names } => return set_enabled(&c, &names, true),
        UsersCommand::Disable { names } => return set_enabled(&c, &names, false),
        UsersCommand::Feedback { switch, names } => {
            let on = switch == "on";
            let unknown: Vec<&str> = names
                .iter()
                .map(|name| Ok::<_, rusqlite::Error>((name.as_str(), state::set_feedback(&c, name, on)?)))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .filter(|(_, known)| !known)
                .map(|(name, _)| name)
                .collect();
            if !unknown.is_empty() {
                anyhow::bail!("unknown mailboxes: {} (see `starling users list`)", unknown.join(", "));
            }
        }
        UsersCommand::Import { file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let (rows, problems) = starling_agent::users::parse_csv(&text);
            if !problems.is_empty() {
                anyhow::bail!("{} has problems; nothing was imported:\n  {}", file.display(), problems.join("\n  "));
            }
            let tx = c.transaction()?;
            let (mut added, mut changed) = (0, 0);
            for row in &rows {
                if state::add_mailbox(&tx, &row.name, row.enabled.unwrap_or(true), "csv")? {
                    added += 1;
                } else if let Some(enabled) = row.enabled {
                    changed += usize::from(state::set_enabled(&tx, &row.name, enabled)?);
                }
            }
            tx.commit()?;
            writeln!(out, "imported {} mailboxes: {added} added, {changed} updated", rows.len())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn set_enabled(c: &rusqlite::Connection, names: &[String], enabled: bool) -> anyhow::Result<ExitCode> {
    let mut unknown = Vec::new();
    for name in names {
        if !state::set_enabled(c, name, enabled)? {
            unknown.push(name.as_str());
        }
    }
    if unknown.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        anyhow::bail!("unknown mailboxes: {} (see `starling users list`)", unknown.join(", "))
    }
}

#[derive(Args)]
pub(crate) struct WhitelistArgs {
    #[command(flatten)]
    config: ConfigArgs,
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
    },
    /// Export entries as CSV (`entry,comment`) or plain text.
    Export {
        /// `csv` or `text`.
        #[arg(long, default_value = "csv")]
        format: String,
    },
}

/// `starling whitelist …`.
pub(crate) fn whitelist_cmd(args: WhitelistArgs) -> anyhow::Result<ExitCode> {
    let mut c = args.config.connection_or_create()?;
    let scope = args.user.clone().unwrap_or_default();
    let mut out = std::io::stdout().lock();
    match args.command {
        WhitelistCommand::List { all, json } => {
            let rows = state::whitelist(&c, if all { None } else { Some(&scope) })?;
            for row in rows {
                if json {
                    writeln!(out, "{}", serde_json::to_string(&row)?)?;
                } else {
                    let scope = if row.scope.is_empty() { "(server)" } else { &row.scope };
                    writeln!(out, "{scope:<24} {:<40} {}", row.entry, row.comment)?;
                }
            }
        }
        WhitelistCommand::Add { entry, comment } => {
            let entry = Entry::parse(&entry).map_err(anyhow::Error::msg)?.to_string();
            let added = state::whitelist_add(&c, &scope, &entry, &comment)?;
            writeln!(out, "{entry}: {}", if added { "added" } else { "already listed" })?;
        }
        WhitelistCommand::Remove { entry } => {
            let written = Entry::parse(&entry).map(|e| e.to_string()).unwrap_or(entry);
            if !state::whitelist_remove(&c, &scope, &written)? {
                anyhow::bail!("{written} is not listed");
            }
        }
        WhitelistCommand::Import { file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let (entries, problems) = whitelist::parse_file(&text);
            if !problems.is_empty() {
                anyhow::bail!("{} has problems; nothing was imported:\n  {}", file.display(), problems.join("\n  "));
            }
            let tx = c.transaction()?;
            let mut added = 0;
            for (entry, comment) in &entries {
                added += usize::from(state::whitelist_add(&tx, &scope, &entry.to_string(), comment)?);
            }
            tx.commit()?;
            writeln!(out, "imported {} entries: {added} new", entries.len())?;
        }
        WhitelistCommand::Export { format } => {
            let rows = state::whitelist(&c, Some(&scope))?;
            match format.as_str() {
                "text" => {
                    for row in rows {
                        writeln!(out, "{}", row.entry)?;
                    }
                }
                "csv" => {
                    let mut writer = csv::Writer::from_writer(out);
                    writer.write_record(["entry", "comment"])?;
                    for row in rows {
                        writer.write_record([row.entry, row.comment])?;
                    }
                    writer.flush()?;
                }
                other => anyhow::bail!("unknown format {other:?}: csv or text"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub(crate) struct EventsArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Only events of the last … (e.g. 30m, 24h, 7d).
    #[arg(long, default_value = "7d")]
    since: String,
    /// Only this event id.
    #[arg(long)]
    id: Option<u16>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// One JSON object per event.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: Option<EventsCommand>,
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Print the catalogue of every event the agent can raise.
    Catalogue {
        /// As the Markdown table of docs/events.md.
        #[arg(long)]
        markdown: bool,
    },
}

/// `starling events`.
pub(crate) fn events(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if let Some(EventsCommand::Catalogue { markdown }) = args.command {
        if markdown {
            write!(out, "{}", catalogue_markdown())?;
        } else {
            for kind in CATALOGUE {
                writeln!(out, "{:>4} {:<9} {:<32} {}", kind.id, kind.severity.as_str(), kind.name, kind.text)?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let seconds = parse_age(&args.since)?;
    let c = args.config.connection()?;
    let since = jiff::Timestamp::now().as_second() - seconds;
    for event in state::events(&c, since, args.id, args.limit)? {
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&event)?)?;
        } else {
            let at = jiff::Timestamp::from_second(event.at).map(|t| t.to_string()).unwrap_or_default();
            let mailbox = event.mailbox.as_deref().map(|m| format!(" [{m}]")).unwrap_or_default();
            writeln!(out, "{at} {:>4} {:<8}{mailbox} {}", event.id, event.severity, event.text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `30m`, `24h`, `7d` or seconds.
fn parse_age(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: i64 = number.parse().with_context(|| format!("{text:?} is not an age like 30m, 24h or 7d"))?;
    Ok(n * match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => anyhow::bail!("{text:?} is not an age like 30m, 24h or 7d"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_configuration_splits_and_presets() {
        let (agent, network) = split("state_dir = \"/srv/s\"\n[embedded_network]\nlisten = \"127.0.0.1:9999\"\n[embedded_network.trust]\nhalf_life_days = 10.0\n").unwrap();
        let node = embedded_node(&agent, network).unwrap();
        assert_eq!(node.listen.port(), 9999);
        assert_eq!(node.data_dir, Path::new("/srv/s/network"));
        assert_eq!(node.trust.threshold, 1.0);
        assert_eq!(node.trust.consensus_organisations, 1);
        assert_eq!(node.trust.half_life_days, 10.0);
        let problems = embedded_node(&agent, Some(toml::from_str("[trust]\nthreshold = -1.0\n").unwrap())).unwrap_err();
        assert!(problems[0].starts_with("embedded_network.trust.threshold"), "{problems:?}");
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("30m").unwrap(), 1800);
        assert_eq!(parse_age("7d").unwrap(), 604_800);
        assert!(parse_age("soon").is_err());
    }
}

#[derive(Args)]
pub(crate) struct RescanArgs {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: RescanCommand,
}

#[derive(Subcommand)]
enum RescanCommand {
    /// Look again at a mailbox's young mail now: spam that became known
    /// since delivery is filed (the running agent does it).
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

/// `starling rescan …`.
pub(crate) fn rescan(args: RescanArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.agent()?;
    let c = args.config.connection()?;
    let mut out = std::io::stdout().lock();
    match args.command {
        RescanCommand::Start { names, all, hours, wait } => {
            let known = state::mailboxes(&c)?;
            let names: Vec<String> = if all {
                known.iter().filter(|m| m.enabled && m.present).map(|m| m.name.clone()).collect()
            } else {
                names
            };
            let unknown: Vec<&str> =
                names.iter().filter(|n| !known.iter().any(|m| m.name == **n)).map(String::as_str).collect();
            if !unknown.is_empty() {
                anyhow::bail!("unknown mailboxes: {} (see `starling users list`)", unknown.join(", "));
            }
            let hours = hours.unwrap_or(config.rescan.max_age_hours);
            let since = jiff::Timestamp::now().as_second() - i64::from(hours) * 3600;
            let mut ids = Vec::new();
            for name in &names {
                let id = state::rescan_request(&c, name, since, "request")?;
                writeln!(out, "{name}: rescan {id} asked for (mail of the last {hours} h)")?;
                ids.push(id);
            }
            out.flush()?;
            if wait {
                return wait_for_rescans(&c, &ids, &mut out);
            }
        }
        RescanCommand::Status { limit, json } => {
            for row in state::rescans(&c, limit)? {
                if json {
                    writeln!(out, "{}", serde_json::to_string(&row)?)?;
                } else {
                    writeln!(out, "{}", rescan_line(&row))?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn rescan_line(row: &state::RescanRow) -> String {
    let at = jiff::Timestamp::from_second(row.requested_at).map(|t| t.to_string()).unwrap_or_default();
    let mut line = format!(
        "{:>5} {at} {:<30} {:<9} {:<8} {}/{} looked at, {} filed",
        row.id, row.mailbox, row.origin, row.status, row.checked, row.total, row.filed
    );
    if !row.detail.is_empty() {
        line.push_str(&format!(" ({})", row.detail));
    }
    line
}

/// Polls until every rescan finished; fails when one failed.
fn wait_for_rescans(c: &rusqlite::Connection, ids: &[i64], out: &mut impl std::io::Write) -> anyhow::Result<ExitCode> {
    let mut shown: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
    let started = std::time::Instant::now();
    loop {
        let mut open = 0;
        let mut failed = 0;
        for &id in ids {
            let Some(row) = state::rescan(c, id)? else { continue };
            let line = rescan_line(&row);
            if shown.get(&id) != Some(&line) {
                writeln!(out, "{line}")?;
                out.flush()?;
                shown.insert(id, line);
            }
            match row.status.as_str() {
                "done" => {}
                "failed" => failed += 1,
                _ => open += 1,
            }
        }
        if open == 0 {
            return Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        if started.elapsed() > std::time::Duration::from_secs(20) && shown.values().all(|l| l.contains(" requested ")) {
            anyhow::bail!(
                "no agent picked the rescans up within 20 s: is `starling agent` (or `serve`) running with this configuration?"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
