//! `starling eval-adapter`: the evaluation harness's line protocol
//! (`../shared/eval/PROTOCOL.md`), against either
//! - an in-memory index that applies the network's match rule with no
//!   reporter trust (the default; measures the fingerprints), or
//! - a network node (`--node local` starts a private one on a loopback port
//!   with a temporary store; `--node ADDR` (alias `--network`) uses a
//!   running one): reports and checks go through the gRPC API, with
//!   reputation.
//!
//! Through a node, the reporter field `ORG:USER` maps to organisation `ORG`
//! (created through the Admin service on first sight, as an operator would
//! onboard a tenant) and reporter pseudonym `USER`. A report without a
//! reporter field is sent by an automated feed (a spam trap), which is what
//! the reporter-less `mutation` scenario models. Checks are made by an
//! organisation of their own that never reports. With `--credential-file`
//! instead of an operator token, everything goes through that one
//! organisation and the whole reporter field is the pseudonym.
//!
//! One command per line on stdin, exactly one reply line per command on
//! stdout, flushed at once; diagnostics go to stderr. A failing command is
//! answered with `error …` and the adapter carries on.

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use starling_fingerprint::{Fingerprinter, Key, MatchRule, MemoryIndex, ReportClass, Settings};
use starling_network::NodeConfig;
use starling_proto::client::{self, Authorised, Credential, Target};
use starling_proto::v1;

use crate::{FingerprintOptions, RuleOptions};

#[derive(Args)]
pub(crate) struct EvalAdapterArgs {
    #[command(flatten)]
    fingerprint: FingerprintOptions,
    #[command(flatten)]
    rule: RuleOptions,
    /// Log every match (the matched report, kind and similarity) to stderr.
    #[arg(long)]
    explain: bool,
    /// Go through a network node: `local` (a private node on a loopback port
    /// with a temporary store) or the ADDR of a running node.
    #[arg(long, alias = "network", value_name = "local|ADDR")]
    node: Option<String>,
    /// Configuration (TOML) of the `local` node, e.g. to try other trust
    /// parameters.
    #[arg(long, value_name = "FILE", requires = "node")]
    node_config: Option<PathBuf>,
    /// Operator token file of a running node (with --node ADDR): each
    /// reporter organisation gets an organisation of its own.
    #[arg(long, value_name = "FILE", requires = "node", conflicts_with = "credential_file")]
    operator_token_file: Option<PathBuf>,
    /// One organisation's credential file (with --node ADDR): every report
    /// comes from that organisation, the reporter field is the pseudonym.
    #[arg(long, value_name = "FILE", requires = "node")]
    credential_file: Option<PathBuf>,
}

/// One parsed protocol line.
#[derive(Debug, PartialEq, Eq)]
enum Command<'a> {
    Report { class: ReportClass, path: &'a str, reporter: Option<&'a str> },
    Check { path: &'a str },
    Ping,
    Quit,
}

fn parse(line: &str) -> Result<Command<'_>, String> {
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    match word {
        "ping" if rest.is_empty() => Ok(Command::Ping),
        "quit" if rest.is_empty() => Ok(Command::Quit),
        "check" if !rest.is_empty() => Ok(Command::Check { path: rest }),
        "report" => {
            let (class, target) = rest.split_once(' ').ok_or("report needs a class and a path")?;
            let class = match class {
                "spam" => ReportClass::Spam,
                "ham" => ReportClass::Ham,
                other => return Err(format!("unknown report class {other:?}; expected spam or ham")),
            };
            let (path, reporter) = split_reporter(target);
            if path.is_empty() {
                return Err("report needs a path".into());
            }
            Ok(Command::Report { class, path, reporter })
        }
        _ => Err(format!("unknown or malformed command {word:?}")),
    }
}

/// Splits an optional trailing `ORG:USER` reporter field off a path.
fn split_reporter(target: &str) -> (&str, Option<&str>) {
    if let Some((path, last)) = target.rsplit_once(' ')
        && is_reporter(last)
    {
        return (path, Some(last));
    }
    (target, None)
}

fn is_reporter(field: &str) -> bool {
    let valid = |part: &str| {
        (1..=64).contains(&part.len())
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && part.as_bytes()[0].is_ascii_alphanumeric()
    };
    matches!(field.split_once(':'), Some((org, user)) if valid(org) && valid(user))
}

/// Where reports go and checks come from.
enum Backend {
    Memory(Box<MemoryBackend>),
    Node(Box<NodeBackend>),
}

/// Reports held in memory, without reporter trust.
struct MemoryBackend {
    index: MemoryIndex,
    rule: MatchRule,
    explain: bool,
    /// The path first reported for each index entry, for `--explain`.
    reported: Vec<String>,
}

struct Adapter {
    fingerprinter: Fingerprinter,
    backend: Backend,
}

impl Adapter {
    fn handle(&mut self, command: Command<'_>) -> Result<String, String> {
        match command {
            Command::Ping | Command::Quit => Ok("ok".into()),
            Command::Report { class, path, reporter } => {
                let fingerprints = self.fingerprinter.fingerprint(&read(path)?);
                match &mut self.backend {
                    Backend::Memory(memory) => {
                        if let Some(entry) = memory.index.report(&fingerprints, class)
                            && entry == memory.reported.len()
                        {
                            memory.reported.push(path.to_owned());
                        }
                    }
                    Backend::Node(node) => node.report(&fingerprints, class, reporter)?,
                }
                Ok("ok".into())
            }
            Command::Check { path } => {
                let fingerprints = self.fingerprinter.fingerprint(&read(path)?);
                let score = match &mut self.backend {
                    Backend::Memory(memory) => {
                        let found = memory.index.check(&fingerprints, &memory.rule);
                        if memory.explain
                            && let Some(m) = &found
                        {
                            let similarity = m.similarity.map(|s| format!(" {s:?}")).unwrap_or_default();
                            eprintln!("match {path} <- {} {}{similarity}", memory.reported[m.entry], m.kind);
                        }
                        found.map_or(0.0, |m| m.score)
                    }
                    Backend::Node(node) => node.check(&fingerprints, path)?,
                };
                Ok(format!("score {score}"))
            }
        }
    }
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))
}

/// The organisation that sends reports without a reporter field.
const FEED: &str = "eval-feed";
/// The organisation that checks.
const CHECKER: &str = "eval-checker";

/// The harness's organisations on a node.
struct NodeBackend {
    runtime: tokio::runtime::Runtime,
    channel: tonic::transport::Channel,
    /// Creates organisations as reporters appear; `None` in single-credential mode.
    admin: Option<v1::admin_client::AdminClient<Authorised>>,
    checker: v1::network_client::NetworkClient<Authorised>,
    organisations: HashMap<String, v1::network_client::NetworkClient<Authorised>>,
    explain: bool,
    // Keeps a local node and its store alive for the session.
    _local: Option<(starling_network::Running, tempfile::TempDir)>,
}

impl NodeBackend {
    /// Connects (starting a local node if asked) and returns the backend and
    /// the network's fingerprint key.
    fn start(args: &EvalAdapterArgs, node: &str) -> anyhow::Result<(NodeBackend, Key)> {
        // One thread: the harness sends one command at a time, and a single
        // thread avoids a cross-thread wake-up on every round trip.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (local, address, token) = if node == "local" {
            let dir = tempfile::tempdir().context("cannot create a temporary directory for the node")?;
            let mut config = match &args.node_config {
                Some(path) => NodeConfig::from_toml(&std::fs::read_to_string(path)?)
                    .map_err(|p| anyhow::anyhow!("{}:\n  {}", path.display(), p.join("\n  ")))?,
                None => NodeConfig::default(),
            };
            config.listen = "127.0.0.1:0".parse().expect("a valid address");
            config.data_dir = dir.path().to_path_buf();
            // The key shapes the min-hash estimates: a fixed key makes runs
            // reproducible (and comparable with the in-memory adapter).
            let key_file = dir.path().join("network.key");
            std::fs::write(&key_file, hex::encode(args.fingerprint.key()?.as_bytes()))?;
            config.network_key_file = Some(key_file);
            // A private node serving one harness: no rate limits.
            config.limits.checks_per_second = 1e12;
            config.limits.reports_per_second = 1e12;
            let running = runtime.block_on(starling_network::start(config))?;
            let address = running.addr.to_string();
            let token = starling_network::node::operator_token(dir.path())?;
            (Some((running, dir)), address, token)
        } else if let Some(path) = &args.credential_file {
            let credential =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            (None, node.to_owned(), credential)
        } else {
            let path = args
                .operator_token_file
                .clone()
                .context("--node ADDR needs --operator-token-file or --credential-file")?;
            let token = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
            (None, node.to_owned(), token)
        };
        let channel =
            runtime.block_on(Target::new(&address).connect()).with_context(|| format!("cannot reach {address}"))?;
        let secret = Credential::new(&token).map_err(anyhow::Error::msg)?;
        let (admin, mut checker) = if args.credential_file.is_some() && local.is_none() {
            (None, client::network(channel.clone(), secret))
        } else {
            let mut admin = client::admin(channel.clone(), secret);
            let checker_credential = runtime.block_on(create(&mut admin, CHECKER, v1::Plan::Subscription))?;
            (Some(admin), client::network(channel.clone(), checker_credential))
        };
        let hello = runtime.block_on(checker.hello(v1::HelloRequest::default()))?.into_inner();
        let key: [u8; 32] = hello.fingerprint_key.try_into().map_err(|_| anyhow::anyhow!("the node sent no key"))?;
        let backend = NodeBackend {
            runtime,
            channel,
            admin,
            checker,
            organisations: HashMap::new(),
            explain: args.explain,
            _local: local,
        };
        Ok((backend, Key::from_bytes(key)))
    }

    fn report(
        &mut self,
        fingerprints: &starling_fingerprint::Fingerprints,
        class: ReportClass,
        reporter: Option<&str>,
    ) -> Result<(), String> {
        let Some(admin) = self.admin.as_mut() else {
            // One organisation: the whole reporter field is the pseudonym.
            let pseudonym = reporter.unwrap_or("harness").to_owned();
            return send_report(&self.runtime, &mut self.checker, fingerprints, class, pseudonym);
        };
        let (org, user) = reporter.and_then(|r| r.split_once(':')).unwrap_or((FEED, "trap"));
        if !self.organisations.contains_key(org) {
            let plan = if org == FEED { v1::Plan::Feed } else { v1::Plan::Subscription };
            let credential = self.runtime.block_on(create(admin, org, plan)).map_err(|e| format!("{e:#}"))?;
            self.organisations.insert(org.to_owned(), client::network(self.channel.clone(), credential));
        }
        let client = self.organisations.get_mut(org).expect("just inserted");
        send_report(&self.runtime, client, fingerprints, class, user.to_owned())
    }

    fn check(&mut self, fingerprints: &starling_fingerprint::Fingerprints, path: &str) -> Result<f32, String> {
        let request = v1::CheckRequest { messages: vec![starling_proto::to_wire(fingerprints)] };
        let reply = self.runtime.block_on(self.checker.check(request)).map_err(|e| e.message().to_owned())?;
        let verdict = reply.into_inner().verdicts.pop().ok_or("the node returned no verdict")?;
        let bad = matches!(v1::Class::try_from(verdict.class), Ok(v1::Class::Spam | v1::Class::Phish));
        if self.explain && verdict.matched_kind != 0 {
            eprintln!("verdict {path}: {verdict:?}");
        }
        Ok(if bad { verdict.confidence.max(f32::MIN_POSITIVE) } else { 0.0 })
    }
}

fn send_report(
    runtime: &tokio::runtime::Runtime,
    client: &mut v1::network_client::NetworkClient<Authorised>,
    fingerprints: &starling_fingerprint::Fingerprints,
    class: ReportClass,
    reporter: String,
) -> Result<(), String> {
    let class = match class {
        ReportClass::Spam => v1::ReportClass::Spam,
        ReportClass::Ham => v1::ReportClass::Ham,
    };
    let report =
        v1::Report { fingerprints: Some(starling_proto::to_wire(fingerprints)), class: class.into(), reporter };
    let reply = runtime.block_on(client.report(v1::ReportRequest { reports: vec![report] }));
    reply.map(drop).map_err(|e| e.message().to_owned())
}

async fn create(
    admin: &mut v1::admin_client::AdminClient<Authorised>,
    name: &str,
    plan: v1::Plan,
) -> anyhow::Result<Credential> {
    let request = v1::CreateOrganisationRequest { name: name.to_owned(), plan: plan.into(), expires_at: 0 };
    let created = admin.create_organisation(request).await.map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    Credential::new(&created.into_inner().credential).map_err(anyhow::Error::msg)
}

pub(crate) fn run(args: &EvalAdapterArgs) -> anyhow::Result<ExitCode> {
    let settings: Settings = args.fingerprint.settings();
    let mut adapter = match &args.node {
        None => Adapter {
            fingerprinter: Fingerprinter::with_settings(&args.fingerprint.key()?, settings),
            backend: Backend::Memory(Box::new(MemoryBackend {
                index: MemoryIndex::new(),
                rule: args.rule.rule(),
                explain: args.explain,
                reported: Vec::new(),
            })),
        },
        Some(node) => {
            let (backend, key) = NodeBackend::start(args, node)?;
            Adapter {
                fingerprinter: Fingerprinter::with_settings(&key, settings),
                backend: Backend::Node(Box::new(backend)),
            }
        }
    };
    let stdin = io::stdin();
    let mut stdout = io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        let line = line.trim_end_matches('\r');
        let command = parse(line);
        let quit = command == Ok(Command::Quit);
        let reply =
            command.and_then(|c| adapter.handle(c)).unwrap_or_else(|e| format!("error {}", e.replace('\n', " ")));
        writeln!(stdout, "{reply}")?;
        stdout.flush()?;
        if quit {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(parse("ping"), Ok(Command::Ping));
        assert_eq!(parse("check /a b/c.eml"), Ok(Command::Check { path: "/a b/c.eml" }));
        assert_eq!(
            parse("report spam /x/1.eml org2:u3f9a"),
            Ok(Command::Report { class: ReportClass::Spam, path: "/x/1.eml", reporter: Some("org2:u3f9a") })
        );
        assert_eq!(
            parse("report ham /a b/1.eml"),
            Ok(Command::Report { class: ReportClass::Ham, path: "/a b/1.eml", reporter: None })
        );
        assert!(parse("report bogus /x").is_err());
        assert!(parse("frobnicate").is_err());
        assert!(parse("check").is_err());
    }

    #[test]
    fn reporter_field_needs_the_exact_form() {
        assert!(is_reporter("org1:user-2.x_y"));
        assert!(!is_reporter("/path/with:colon"));
        assert!(!is_reporter("a:b:c"));
        assert!(!is_reporter(":b"));
        assert!(!is_reporter("-a:b"));
    }
}
