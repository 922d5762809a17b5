//! `starling agent` and `starling serve`: the service, with its console.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use starling_agent::{AgentConfig, Options};
use starling_network::NodeConfig;
use starling_proto::client::{self, Credential, Target};
use starling_proto::v1;
use tokio_util::sync::CancellationToken;

/// Where the configuration is, for every agent command.
#[derive(Args, Clone)]
pub(crate) struct ConfigArgs {
    /// The configuration file (TOML; see docs/configuration.md). Without
    /// it, `/etc/starling/starling.toml` when it exists (the package
    /// installs it), else the defaults.
    #[arg(long, short, env = "STARLING_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// The configuration the package installs, read when no other is named.
pub(crate) const SYSTEM_CONFIG: &str = "/etc/starling/starling.toml";

impl ConfigArgs {
    /// The file to read: the one named, else the system's when there is one.
    fn path(&self) -> Option<PathBuf> {
        self.config.clone().or_else(|| Some(PathBuf::from(SYSTEM_CONFIG)).filter(|p| p.exists()))
    }

    fn text(&self) -> anyhow::Result<String> {
        match self.path() {
            Some(path) => std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display())),
            None => Ok(String::new()),
        }
    }

    fn name(&self) -> String {
        self.path().map_or_else(|| "the defaults".to_owned(), |p| p.display().to_string())
    }

    /// The agent configuration and the embedded node `starling serve` runs
    /// with it.
    pub(crate) fn agent_and_embedded_node(&self) -> anyhow::Result<(AgentConfig, NodeConfig)> {
        let (agent, network) = split(&self.text()?).map_err(|p| invalid(&self.name(), &p))?;
        let node = embedded_node(&agent, network).map_err(|p| invalid(&self.name(), &p))?;
        Ok((agent, node))
    }

    /// The agent configuration (the `[embedded_network]` table, if any, is
    /// `starling serve`'s).
    pub(crate) fn agent(&self) -> anyhow::Result<AgentConfig> {
        Ok(split(&self.text()?).map_err(|problems| invalid(&self.name(), &problems))?.0)
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
    run_agent(args, false)
}

/// `starling milter`: the in-line filter alone (no mailbox is watched),
/// with the console.
pub(crate) fn milter(args: AgentArgs) -> anyhow::Result<ExitCode> {
    run_agent(args, true)
}

fn run_agent(args: AgentArgs, milter_only: bool) -> anyhow::Result<ExitCode> {
    let config = args.config.agent()?;
    if args.check_config {
        println!("{} is valid", args.config.name());
        return Ok(ExitCode::SUCCESS);
    }
    raise_file_limit();
    crate::runtime()?.block_on(async move {
        let stop = CancellationToken::new();
        let options = Options { milter_only, ..Options::default() };
        let console = start_console(&config, &options, &stop).await?;
        let mut agent = tokio::spawn(starling_agent::run(config, options, stop.clone()));
        crate::service::ready(if milter_only { "filtering in line (milter)" } else { "watching mailboxes" });
        crate::service::spawn_watchdog(stop.child_token());
        tokio::select! {
            () = crate::service::wait_for_signal() => {
                eprintln!("stopping…");
                crate::service::stopping();
                stop.cancel();
                (&mut agent).await.context("the agent panicked")??;
            }
            result = &mut agent => result.context("the agent panicked")??,
        }
        stop.cancel();
        if let Some(console) = console {
            let _ = console.stopped.await;
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

/// The file in `state_dir` naming the running embedded node's address (its
/// port may be chosen at start), for `starling backup`.
pub(crate) const EMBEDDED_URL_FILE: &str = "embedded-network.url";

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
        std::fs::write(agent.state_dir.join(EMBEDDED_URL_FILE), format!("{}\n", running.addr))
            .with_context(|| format!("cannot write {}", agent.state_dir.join(EMBEDDED_URL_FILE).display()))?;
        let credential = embedded_credential(&agent.state_dir, &node.data_dir, &url).await?;
        let mut agent = agent;
        agent.network.url = url;
        eprintln!(
            "starling serve: {}; network at {}, watching {} ({} mail store); stop with Ctrl-C",
            args.config.name(),
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
        let options = Options { credential: Some(credential), ..Options::default() };
        let console = start_console(&agent, &options, &stop).await?;
        let mut task = tokio::spawn(starling_agent::run(agent, options, stop.clone()));
        crate::service::ready("watching mailboxes, with the embedded network");
        crate::service::spawn_watchdog(stop.child_token());
        let result = tokio::select! {
            () = crate::service::wait_for_signal() => {
                eprintln!("stopping…");
                crate::service::stopping();
                stop.cancel();
                (&mut task).await.context("the agent panicked")?
            }
            result = &mut task => result.context("the agent panicked")?,
        };
        stop.cancel();
        if let Some(console) = console {
            let _ = console.stopped.await;
        }
        running.shutdown.cancel();
        let _ = running.stopped.await;
        result?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Starts the console beside the agent (unless `[console] enabled` is
/// false); it stops with `stop`.
async fn start_console(
    config: &AgentConfig,
    options: &Options,
    stop: &CancellationToken,
) -> anyhow::Result<Option<starling_console::Running>> {
    if !config.console.enabled {
        return Ok(None);
    }
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create {}", config.state_dir.display()))?;
    match starling_console::start(config, options.live.clone(), stop.child_token()).await {
        Ok(running) => {
            eprintln!("starling: console and API at http://{}", running.addr);
            Ok(Some(running))
        }
        // Filtering matters more than the console: go on without it (the
        // event says why).
        Err(e) => {
            eprintln!("starling: {e:#}; filtering goes on without the console");
            Ok(None)
        }
    }
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
}
