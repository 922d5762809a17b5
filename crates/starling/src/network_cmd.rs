//! `starling network …`: run a node, and the operator's tools that talk to
//! one through its Admin service.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use starling_fingerprint::{Fingerprinter, Key};
use starling_network::NodeConfig;
use starling_network::config::TlsConfig;
use starling_proto::v1;

use crate::operator::OperatorArgs;
use crate::{FingerprintOptions, runtime};

#[derive(Args)]
pub(crate) struct NetworkArgs {
    #[command(subcommand)]
    command: NetworkCommand,
}

#[derive(Subcommand)]
enum NetworkCommand {
    /// Run a network node (stops cleanly on Ctrl-C or SIGTERM).
    Serve(ServeArgs),
    /// Manage organisations (tenants) of a running node.
    Org(OrgArgs),
    /// Show the evidence behind the verdict for a message or a text digest.
    Explain(ExplainArgs),
    /// Sizes of a running node's store.
    Stats(OperatorArgs),
    /// Load generator: checks and reports against a running node.
    Bench(crate::network_bench::BenchArgs),
    /// Move a stopped node's embedded store to a Redis Cluster (resumable,
    /// verified).
    Migrate(MigrateArgs),
    /// Back up a node's data directory (while it runs) into a new directory.
    Backup(crate::backup_cmd::NetworkBackupArgs),
    /// Restore a stopped node's data directory from a backup (what it
    /// replaces is kept aside).
    Restore(crate::backup_cmd::NetworkRestoreArgs),
}

#[derive(Args)]
struct MigrateArgs {
    /// The stopped node's data directory.
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    /// The Redis Cluster: redis://host:port[,host:port…].
    #[arg(long, value_name = "URL")]
    to: String,
    /// Copy at most this many rows in this run (run again to go on).
    #[arg(long, value_name = "N")]
    max_rows: Option<u64>,
}

#[derive(Args)]
struct ServeArgs {
    /// Configuration file (TOML); see docs/network.md. Flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:7890).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Data directory (store, operator token, network key).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// TLS certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM); needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Allow listening beyond loopback without TLS.
    #[arg(long)]
    allow_plaintext_public: bool,
    /// The store: a Redis Cluster that several nodes share,
    /// `redis://host:port[,host:port…]` (default: the embedded store in the
    /// data directory).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
}

#[derive(Args)]
struct OrgArgs {
    #[command(subcommand)]
    command: OrgCommand,
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organisation and print its credential (shown once).
    Add {
        /// Unique name: letters, digits, '.', '_', '-'.
        name: String,
        /// A trial that expires after this many days.
        #[arg(long, value_name = "DAYS", conflicts_with_all = ["feed", "expires"])]
        trial_days: Option<u32>,
        /// A subscription that expires at this time (RFC 3339, e.g. 2027-12-31T00:00:00Z).
        #[arg(long, value_name = "TIME")]
        expires: Option<String>,
        /// An automated feed (spam trap): its reports carry feed trust.
        #[arg(long)]
        feed: bool,
        #[command(flatten)]
        operator: OperatorArgs,
    },
    /// List organisations.
    List(OperatorArgs),
    /// Refuse an organisation's requests.
    Disable {
        /// Its name.
        name: String,
        #[command(flatten)]
        operator: OperatorArgs,
    },
    /// Accept an organisation's requests again.
    Enable {
        /// Its name.
        name: String,
        #[command(flatten)]
        operator: OperatorArgs,
    },
    /// Issue an activation code (a trial or a subscription), apply it at
    /// once and print it for the organisation's administrator.
    Activate {
        /// The organisation.
        name: String,
        /// A trial (default: a subscription).
        #[arg(long)]
        trial: bool,
        /// It expires after this many days.
        #[arg(long, value_name = "DAYS", conflicts_with_all = ["expires", "no_expiry"])]
        days: Option<u32>,
        /// It expires at this time (RFC 3339, e.g. 2027-12-31T00:00:00Z).
        #[arg(long, value_name = "TIME", conflicts_with = "no_expiry")]
        expires: Option<String>,
        /// It never expires (subscriptions only).
        #[arg(long)]
        no_expiry: bool,
        #[command(flatten)]
        grant: GrantArgs,
        #[command(flatten)]
        operator: OperatorArgs,
    },
    /// Extend an organisation's trial or subscription and print the new code.
    Renew {
        /// The organisation.
        name: String,
        /// Days added to the later of now and the current expiry.
        #[arg(long, value_name = "DAYS")]
        days: u32,
        /// Turn a trial into a subscription.
        #[arg(long)]
        subscription: bool,
        #[command(flatten)]
        grant: GrantArgs,
        #[command(flatten)]
        operator: OperatorArgs,
    },
    /// Revoke every activation code issued to an organisation; its agents
    /// stop filtering at their next contact.
    Revoke {
        /// The organisation.
        name: String,
        #[command(flatten)]
        operator: OperatorArgs,
    },
}

/// Limits written into an activation code.
#[derive(Args)]
struct GrantArgs {
    /// Mailboxes it may filter (0: no limit; default: keep the current limit).
    #[arg(long, value_name = "N")]
    mailboxes: Option<u32>,
    /// Where to buy or renew (default: the current one, or the node's
    /// `purchase_url`).
    #[arg(long, value_name = "URL")]
    purchase_url: Option<String>,
}

#[derive(Args)]
struct ExplainArgs {
    /// A message file, or a text digest (32 hex digits).
    target: String,
    #[command(flatten)]
    operator: OperatorArgs,
    #[command(flatten)]
    fingerprint: FingerprintOptions,
}

pub(crate) fn run(args: NetworkArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        NetworkCommand::Serve(serve) => runtime()?.block_on(run_serve(serve)),
        NetworkCommand::Org(org) => runtime()?.block_on(run_org(org)),
        NetworkCommand::Explain(explain) => runtime()?.block_on(run_explain(explain)),
        NetworkCommand::Stats(operator) => runtime()?.block_on(run_stats(operator)),
        NetworkCommand::Bench(bench) => crate::network_bench::run(bench),
        NetworkCommand::Migrate(args) => run_migrate(&args),
        NetworkCommand::Backup(args) => crate::backup_cmd::network_backup(&args),
        NetworkCommand::Restore(args) => crate::backup_cmd::network_restore(&args),
    }
}

fn run_migrate(args: &MigrateArgs) -> anyhow::Result<ExitCode> {
    use starling_network::store::embedded::Embedded;
    use starling_network::store::redis::{RedisOptions, RedisStore};
    let path = args.from.join(starling_network::node::STORE_FILE);
    anyhow::ensure!(path.is_file(), "{} has no store ({} is missing)", args.from.display(), path.display());
    let from = Embedded::open(&path, 64 << 20).map_err(|e| anyhow::anyhow!("{e} (stop the node first)"))?;
    let expected = from.rows(starling_network::store::embedded::Table::Entries)? as usize;
    let options = RedisOptions::from_url(&args.to, expected.max(100_000), 0)?;
    let to = RedisStore::open(&options)?;
    let outcome = starling_network::migrate::migrate(&from, &to, args.max_rows, &mut |table, done, total| {
        eprintln!("{table}: {done} of {total}");
    })?;
    for (table, total, copied) in &outcome.tables {
        println!("{table}: {total} rows, {copied} copied in this run");
    }
    if !outcome.complete {
        println!("stopped after --max-rows; run the same command again to go on");
        return Ok(ExitCode::SUCCESS);
    }
    if outcome.differences.is_empty() {
        println!("verified: row counts equal, {} sampled rows identical in both stores", outcome.spot_checked);
        println!("start the nodes with --store {}", args.to);
        Ok(ExitCode::SUCCESS)
    } else {
        for difference in &outcome.differences {
            println!("difference: {difference}");
        }
        Ok(ExitCode::FAILURE)
    }
}

fn node_config(args: &ServeArgs) -> anyhow::Result<NodeConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            NodeConfig::from_toml(&text)
                .map_err(|problems| anyhow::anyhow!("{}:\n  {}", path.display(), problems.join("\n  ")))?
        }
        None => NodeConfig::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(data) = &args.data {
        config.data_dir = data.clone();
    }
    if let (Some(certificate), Some(private_key)) = (&args.tls_cert, &args.tls_key) {
        config.tls = Some(TlsConfig { certificate: certificate.clone(), private_key: private_key.clone() });
    }
    config.allow_plaintext_public |= args.allow_plaintext_public;
    if let Some(store) = &args.store {
        config.store.url.clone_from(store);
    }
    let problems = config.problems();
    anyhow::ensure!(problems.is_empty(), "invalid configuration:\n  {}", problems.join("\n  "));
    Ok(config)
}

async fn run_serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = node_config(&args)?;
    let data = config.data_dir.clone();
    let running = starling_network::start(config).await?;
    let scheme = if args.tls_cert.is_some() { "https" } else { "http" };
    eprintln!("starling network node listening on {scheme}://{}", running.addr);
    eprintln!("operator token: {}", data.join(starling_network::node::OPERATOR_TOKEN_FILE).display());
    crate::service::ready(&format!("answering agents on {scheme}://{}", running.addr));
    crate::service::spawn_watchdog(running.shutdown.child_token());
    crate::service::wait_for_signal().await;
    eprintln!("stopping…");
    crate::service::stopping();
    running.shutdown.cancel();
    running.stopped.await.ok();
    Ok(ExitCode::SUCCESS)
}

async fn run_org(args: OrgArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        OrgCommand::Add { name, trial_days, expires, feed, operator } => {
            let (plan, expires_at) = match (trial_days, expires, feed) {
                (Some(days), _, _) => (v1::Plan::Trial, jiff::Timestamp::now().as_second() + i64::from(days) * 86_400),
                (None, _, true) => (v1::Plan::Feed, 0),
                (None, Some(time), false) => {
                    let at: jiff::Timestamp =
                        time.parse().with_context(|| format!("--expires {time:?} is not an RFC 3339 time"))?;
                    (v1::Plan::Subscription, at.as_second())
                }
                (None, None, false) => (v1::Plan::Subscription, 0),
            };
            let request = v1::CreateOrganisationRequest { name, plan: plan.into(), expires_at };
            let created = operator.admin().await?.create_organisation(request).await.map_err(status)?.into_inner();
            let org = created.organisation.unwrap_or_default();
            if operator.json {
                println!("{}", serde_json::json!({ "organisation": org_json(&org), "credential": created.credential }));
            } else {
                println!("created organisation {} (id {}, {})", org.name, org.id, describe_plan(&org));
                println!("credential: {}", created.credential);
                println!("Give the credential to the organisation's administrator; it is not shown again.");
            }
        }
        OrgCommand::List(operator) => {
            let list =
                operator.admin().await?.list_organisations(v1::ListOrganisationsRequest {}).await.map_err(status)?;
            let organisations = list.into_inner().organisations;
            if operator.json {
                let json: Vec<_> = organisations.iter().map(org_json).collect();
                println!("{}", serde_json::Value::Array(json));
            } else {
                println!("{:>4}  {:<24} {:<9} plan", "id", "name", "status");
                for org in &organisations {
                    println!("{:>4}  {:<24} {:<9} {}", org.id, org.name, status_name(org.status), describe_plan(org));
                }
            }
        }
        OrgCommand::Activate { name, trial, days, expires, no_expiry, grant, operator } => {
            let expires_at = match (days, expires, no_expiry) {
                (Some(days), _, _) => jiff::Timestamp::now().as_second() + i64::from(days) * 86_400,
                (None, Some(time), _) => {
                    let at: jiff::Timestamp =
                        time.parse().with_context(|| format!("--expires {time:?} is not an RFC 3339 time"))?;
                    at.as_second()
                }
                (None, None, true) => 0,
                (None, None, false) => anyhow::bail!("say how long it lasts: --days, --expires or --no-expiry"),
            };
            let plan = if trial { v1::Plan::Trial } else { v1::Plan::Subscription };
            let request = v1::IssueActivationRequest {
                name,
                plan: plan.into(),
                expires_at,
                extend_seconds: 0,
                max_mailboxes: grant.mailboxes,
                purchase_url: grant.purchase_url.unwrap_or_default(),
            };
            issue_activation(&operator, request).await?;
        }
        OrgCommand::Renew { name, days, subscription, grant, operator } => {
            let plan = if subscription { v1::Plan::Subscription } else { v1::Plan::Unspecified };
            let request = v1::IssueActivationRequest {
                name,
                plan: plan.into(),
                expires_at: 0,
                extend_seconds: i64::from(days.max(1)) * 86_400,
                max_mailboxes: grant.mailboxes,
                purchase_url: grant.purchase_url.unwrap_or_default(),
            };
            issue_activation(&operator, request).await?;
        }
        OrgCommand::Revoke { name, operator } => {
            let request = v1::RevokeActivationRequest { name };
            let org = operator.admin().await?.revoke_activation(request).await.map_err(status)?.into_inner();
            if operator.json {
                println!("{}", org_json(&org));
            } else {
                println!(
                    "revoked every activation code of {}; its agents stop filtering at their next contact",
                    org.name
                );
            }
        }
        OrgCommand::Disable { name, operator } => set_status(&operator, name, v1::OrganisationStatus::Disabled).await?,
        OrgCommand::Enable { name, operator } => set_status(&operator, name, v1::OrganisationStatus::Active).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn issue_activation(operator: &OperatorArgs, request: v1::IssueActivationRequest) -> anyhow::Result<()> {
    let issued = operator.admin().await?.issue_activation(request).await.map_err(status)?.into_inner();
    let org = issued.organisation.unwrap_or_default();
    let key = <[u8; 32]>::try_from(issued.public_key.as_slice())
        .map(|key| starling_proto::activation::public_key_text(&key))
        .unwrap_or_default();
    if operator.json {
        println!("{}", serde_json::json!({ "organisation": org_json(&org), "code": issued.code, "public_key": key }));
    } else {
        println!("organisation {}: {}", org.name, describe_plan(&org));
        println!("activation code: {}", issued.code);
        println!(
            "The organisation's agents receive it at their next contact, or install it with `starling activate CODE`."
        );
        println!("They verify it with the network's public key {key}.");
    }
    Ok(())
}

async fn set_status(operator: &OperatorArgs, name: String, new: v1::OrganisationStatus) -> anyhow::Result<()> {
    let request = v1::SetOrganisationStatusRequest { name, status: new.into() };
    let org = operator.admin().await?.set_organisation_status(request).await.map_err(status)?.into_inner();
    if operator.json {
        println!("{}", org_json(&org));
    } else {
        println!("organisation {} is now {}", org.name, status_name(org.status));
    }
    Ok(())
}

fn status(error: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", error.message())
}

fn status_name(status: i32) -> &'static str {
    match v1::OrganisationStatus::try_from(status) {
        Ok(v1::OrganisationStatus::Active) => "active",
        Ok(v1::OrganisationStatus::Disabled) => "disabled",
        _ => "unknown",
    }
}

fn describe_plan(org: &v1::Organisation) -> String {
    let plan = match v1::Plan::try_from(org.plan) {
        Ok(v1::Plan::Trial) => "trial",
        Ok(v1::Plan::Feed) => "feed",
        _ => "subscription",
    };
    if org.expires_at == 0 { format!("{plan}, no expiry") } else { format!("{plan}, expires {}", time(org.expires_at)) }
}

fn org_json(org: &v1::Organisation) -> serde_json::Value {
    serde_json::json!({
        "id": org.id,
        "name": org.name,
        "status": status_name(org.status),
        "plan": match v1::Plan::try_from(org.plan) { Ok(v1::Plan::Trial) => "trial", Ok(v1::Plan::Feed) => "feed", _ => "subscription" },
        "expires_at": (org.expires_at != 0).then(|| time(org.expires_at)),
        "created_at": time(org.created_at),
    })
}

/// A unix time as RFC 3339 (UTC).
pub(crate) fn time(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds).map_or_else(|_| seconds.to_string(), |t| t.to_string())
}

async fn run_stats(operator: OperatorArgs) -> anyhow::Result<ExitCode> {
    let stats = operator.admin().await?.stats(v1::StatsRequest {}).await.map_err(status)?.into_inner();
    if operator.json {
        println!(
            "{}",
            serde_json::json!({
                "entries": stats.entries, "reports": stats.reports, "reporters": stats.reporters,
                "organisations": stats.organisations, "index_keys": stats.index_keys,
                "store_bytes": stats.store_bytes, "filter_bytes": stats.filter_bytes,
            })
        );
    } else {
        println!("entries        {}", stats.entries);
        println!("reports        {}", stats.reports);
        println!("reporters      {}", stats.reporters);
        println!("organisations  {}", stats.organisations);
        println!("index keys     {}", stats.index_keys);
        println!("store bytes    {}", stats.store_bytes);
        println!("filter bytes   {}", stats.filter_bytes);
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let mut admin = args.operator.admin().await?;
    let set = if is_digest(&args.target) {
        v1::FingerprintSet {
            version: u32::from(starling_fingerprint::ALGORITHM_VERSION),
            text: hex::decode(&args.target)?,
            ..Default::default()
        }
    } else {
        let stats = admin.stats(v1::StatsRequest {}).await.map_err(status)?.into_inner();
        let key: [u8; 32] =
            stats.fingerprint_key.try_into().map_err(|_| anyhow::anyhow!("the node sent no fingerprint key"))?;
        let raw = std::fs::read(Path::new(&args.target)).with_context(|| format!("cannot read {}", args.target))?;
        let fingerprints =
            Fingerprinter::with_settings(&Key::from_bytes(key), args.fingerprint.settings()).fingerprint(&raw);
        if fingerprints.is_empty() {
            bail!("{} has no fingerprints: {}", args.target, skipped(&fingerprints));
        }
        starling_proto::to_wire(&fingerprints)
    };
    let explanation = admin.explain(v1::ExplainRequest { fingerprints: Some(set) }).await.map_err(status)?.into_inner();
    if args.operator.json {
        println!("{}", explain_json(&explanation));
    } else {
        print_explanation(&explanation);
    }
    Ok(ExitCode::SUCCESS)
}

fn skipped(fingerprints: &starling_fingerprint::Fingerprints) -> String {
    fingerprints.skipped.iter().map(|s| format!("{}: {}", s.kind, s.reason)).collect::<Vec<_>>().join("; ")
}

fn is_digest(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn class_name(class: i32) -> &'static str {
    match v1::Class::try_from(class) {
        Ok(v1::Class::Spam) => "spam",
        Ok(v1::Class::Phish) => "phish",
        _ => "clean",
    }
}

fn report_class_name(class: i32) -> &'static str {
    match v1::ReportClass::try_from(class) {
        Ok(v1::ReportClass::Spam) => "spam",
        Ok(v1::ReportClass::Phish) => "phish",
        Ok(v1::ReportClass::Ham) => "not spam",
        _ => "?",
    }
}

fn kind_name(kind: i32) -> &'static str {
    match v1::Kind::try_from(kind) {
        Ok(v1::Kind::Text) => "text",
        Ok(v1::Kind::Fuzzy) => "fuzzy",
        Ok(v1::Kind::Url) => "url",
        Ok(v1::Kind::Domain) => "domain",
        Ok(v1::Kind::Attachment) => "attachment",
        _ => "none",
    }
}

fn print_explanation(e: &v1::ExplainResponse) {
    let verdict = e.verdict.unwrap_or_default();
    let evidence = verdict.evidence.unwrap_or_default();
    println!("verdict     {} (confidence {:.2})", class_name(verdict.class), verdict.confidence);
    if e.entries.is_empty() {
        println!("evidence    no reported message matches");
        return;
    }
    println!("matched by  {}", kind_name(verdict.matched_kind));
    println!(
        "evidence    spam {:.2}, phishing {:.2}, not spam {:.2}, from {} reporters in {} organisations{}",
        evidence.spam,
        evidence.phish,
        evidence.ham,
        evidence.reporters,
        evidence.organisations,
        if evidence.unblocked { " (unblocked by a not-spam consensus)" } else { "" }
    );
    println!("seen        first {}, last {}", time(evidence.first_seen), time(evidence.last_seen));
    for entry in &e.entries {
        println!(
            "entry {}  {}  similarity {:.2}  containment {:.2}  first {}  last {}",
            hex::encode(&entry.id),
            kind_name(entry.kind),
            entry.similarity,
            entry.containment,
            time(entry.first_seen),
            time(entry.last_seen)
        );
    }
    println!("reports");
    for r in &e.reports {
        println!(
            "  {:<20} reporter {}  {:<8}  {}  trust {:.2}  weight {:.2}",
            r.organisation,
            r.reporter,
            report_class_name(r.class),
            time(r.at),
            r.trust,
            r.weight
        );
    }
}

fn explain_json(e: &v1::ExplainResponse) -> serde_json::Value {
    let verdict = e.verdict.unwrap_or_default();
    let evidence = verdict.evidence.unwrap_or_default();
    serde_json::json!({
        "class": class_name(verdict.class),
        "confidence": verdict.confidence,
        "matched_kind": kind_name(verdict.matched_kind),
        "evidence": {
            "spam": evidence.spam, "phish": evidence.phish, "ham": evidence.ham,
            "reporters": evidence.reporters, "organisations": evidence.organisations,
            "first_seen": time(evidence.first_seen), "last_seen": time(evidence.last_seen),
            "similarity": evidence.similarity, "containment": evidence.containment,
            "unblocked": evidence.unblocked,
        },
        "entries": e.entries.iter().map(|entry| serde_json::json!({
            "id": hex::encode(&entry.id),
            "kind": kind_name(entry.kind),
            "similarity": entry.similarity,
            "containment": entry.containment,
            "first_seen": time(entry.first_seen),
            "last_seen": time(entry.last_seen),
        })).collect::<Vec<_>>(),
        "reports": e.reports.iter().map(|r| serde_json::json!({
            "organisation": r.organisation, "reporter": r.reporter, "class": report_class_name(r.class),
            "at": time(r.at), "trust": r.trust, "weight": r.weight,
        })).collect::<Vec<_>>(),
    })
}
