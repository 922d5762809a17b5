//! `starling`: the command-line entry point. Parses flags, wires the library
//! crates together, runs, and maps errors to exit codes. Nothing else lives
//! here.

mod admin_cmd;
mod agent_cmd;
mod backup_cmd;
mod check_cmd;
mod eval_adapter;
mod fingerprint_cmd;
mod model_cmd;
mod network_bench;
mod network_cmd;
mod operator;
mod service;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use starling_fingerprint::{Floors, Key, MatchRule, Settings};

/// Collaborative spam filtering for the mail servers organisations run themselves.
#[derive(Parser)]
#[command(name = "starling", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent with its own network node: everything a single organisation needs.
    Serve(agent_cmd::ServeArgs),
    /// Run the agent: watch mailboxes, ask a network, file spam.
    Agent(agent_cmd::AgentArgs),
    /// Run only the in-line filter (milter) for Postfix or Sendmail, with the console.
    Milter(agent_cmd::AgentArgs),
    /// Show the running service's state: mail server, network, mailboxes, activity.
    Status(admin_cmd::StatusArgs),
    /// Install an activation code (a trial, subscription or renewal) in the running service.
    Activate(admin_cmd::ActivateArgs),
    /// Manage the mailboxes the agent filters.
    Users(admin_cmd::UsersArgs),
    /// Manage whitelists (server-wide and per mailbox).
    Whitelist(admin_cmd::WhitelistArgs),
    /// Show or change settings (they apply without a restart).
    Settings(admin_cmd::SettingsArgs),
    /// Export statistics, list and write reports.
    Reports(admin_cmd::ReportsArgs),
    /// Show the agent's events, or their catalogue.
    Events(admin_cmd::EventsArgs),
    /// Rescan mailboxes now, or show rescans and their progress.
    Rescan(admin_cmd::RescanArgs),
    /// Manage the console's accounts: list, add, role, password, remove.
    Accounts(admin_cmd::AccountsArgs),
    /// Back up the state directory (and the embedded network's store) while the service runs.
    Backup(backup_cmd::BackupArgs),
    /// Restore the state directory from a backup, with the service stopped (what it replaces is kept aside).
    Restore(backup_cmd::RestoreArgs),
    /// The local model: what it learnt, and rebuilding it.
    Model(model_cmd::ModelArgs),
    /// Print the fingerprints that would be sent for each message (no content is printed).
    Fingerprint(fingerprint_cmd::FingerprintArgs),
    /// Ask a network for the verdict on messages.
    Check(check_cmd::CheckArgs),
    /// Report messages to a network as spam, phishing or not spam.
    Report(check_cmd::ReportArgs),
    /// Speak the evaluation harness's line protocol on stdin/stdout (../shared/eval/PROTOCOL.md).
    EvalAdapter(eval_adapter::EvalAdapterArgs),
    /// Run and administer a network node.
    Network(network_cmd::NetworkArgs),
    /// Write the manual pages (roff) of every command into a directory.
    #[command(hide = true)]
    Manual(ManualArgs),
}

#[derive(Args)]
struct ManualArgs {
    /// The directory to write `starling.1`, `starling-serve.1`, … into.
    dir: PathBuf,
}

/// `starling manual DIR`: one page for `starling` and one for each command
/// and sub-command (`starling-network-org.1`), from the same definitions
/// as `--help`, so the pages never drift from the binary.
fn manual(args: &ManualArgs) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    std::fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    let mut written = 0;
    let mut pending = vec![(String::from("starling"), Cli::command())];
    while let Some((name, command)) = pending.pop() {
        if command.is_hide_set() {
            continue;
        }
        let command = command.display_name(name.clone()).bin_name(name.replace('-', " "));
        let mut page = Vec::new();
        clap_mangen::Man::new(command.clone()).render(&mut page)?;
        let path = args.dir.join(format!("{name}.1"));
        std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
        written += 1;
        for sub in command.get_subcommands() {
            pending.push((format!("{name}-{}", sub.get_name()), sub.clone()));
        }
    }
    println!("{written} pages in {}", args.dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Options shared by every command that fingerprints mail.
#[derive(Args, Clone)]
struct FingerprintOptions {
    /// File holding the network's 32-byte fingerprint key as 64 hex digits.
    /// Without it the public development key is used.
    #[arg(long, env = "STARLING_KEY_FILE", value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Keep lines quoted with `>` in the text (by default a reply's quotes are ignored).
    #[arg(long)]
    keep_quoted_lines: bool,
    /// Normalised words a text needs for a text digest.
    #[arg(long, default_value_t = Floors::default().text_words)]
    floor_text_words: usize,
    /// Normalised words a text needs for a fuzzy signature.
    #[arg(long, default_value_t = Floors::default().fuzzy_words)]
    floor_fuzzy_words: usize,
    /// Distinct words a text needs for any text fingerprint.
    #[arg(long, default_value_t = Floors::default().distinct_words)]
    floor_distinct_words: usize,
    /// Decoded bytes an attachment needs for a digest.
    #[arg(long, default_value_t = Floors::default().attachment_bytes)]
    floor_attachment_bytes: usize,
}

impl FingerprintOptions {
    fn key(&self) -> anyhow::Result<Key> {
        let Some(path) = &self.key_file else { return Ok(Key::DEVELOPMENT) };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read the key file {}", path.display()))?;
        text.parse().with_context(|| format!("the key file {} is not a valid key", path.display()))
    }

    fn settings(&self) -> Settings {
        Settings {
            floors: Floors {
                text_words: self.floor_text_words,
                distinct_words: self.floor_distinct_words,
                fuzzy_words: self.floor_fuzzy_words,
                attachment_bytes: self.floor_attachment_bytes,
            },
            drop_quoted_lines: !self.keep_quoted_lines,
        }
    }
}

/// Options of the fuzzy match rule.
#[derive(Args, Clone)]
struct RuleOptions {
    /// Estimated Jaccard similarity at or above which a signature matches.
    #[arg(long, default_value_t = MatchRule::default().jaccard)]
    match_jaccard: f32,
    /// Estimated containment at or above which a signature matches (with the Jaccard floor below).
    #[arg(long, default_value_t = MatchRule::default().containment)]
    match_containment: f32,
    /// The Jaccard floor of a containment match.
    #[arg(long, default_value_t = MatchRule::default().containment_jaccard)]
    match_containment_jaccard: f32,
    /// Do not let an attachment digest alone decide a match.
    #[arg(long)]
    no_attachment_match: bool,
}

impl RuleOptions {
    fn rule(&self) -> MatchRule {
        MatchRule {
            jaccard: self.match_jaccard,
            containment: self.match_containment,
            containment_jaccard: self.match_containment_jaccard,
            attachments: !self.no_attachment_match,
        }
    }
}

/// A multi-threaded Tokio runtime for the commands that need one.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => {
            service::init_logging("info");
            agent_cmd::serve(args)
        }
        Command::Agent(args) => {
            service::init_logging("info");
            agent_cmd::agent(args)
        }
        Command::Milter(args) => {
            service::init_logging("info");
            agent_cmd::milter(args)
        }
        Command::Status(args) => admin_cmd::status(args),
        Command::Activate(args) => admin_cmd::activate(args),
        Command::Users(args) => admin_cmd::users(args),
        Command::Whitelist(args) => admin_cmd::whitelist(args),
        Command::Settings(args) => admin_cmd::settings(args),
        Command::Reports(args) => admin_cmd::reports(args),
        Command::Events(args) => admin_cmd::events(args),
        Command::Rescan(args) => admin_cmd::rescan(args),
        Command::Accounts(args) => admin_cmd::accounts(args),
        Command::Backup(args) => backup_cmd::backup(&args),
        Command::Restore(args) => backup_cmd::restore(&args),
        Command::Model(args) => model_cmd::model(args),
        Command::Fingerprint(args) => fingerprint_cmd::run(&args),
        Command::Check(args) => {
            service::init_logging("warn");
            check_cmd::run(args)
        }
        Command::Report(args) => {
            service::init_logging("warn");
            check_cmd::report(args)
        }
        Command::EvalAdapter(args) => {
            service::init_logging("warn");
            eval_adapter::run(&args)
        }
        Command::Network(args) => {
            service::init_logging("info");
            network_cmd::run(args)
        }
        Command::Manual(args) => manual(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("starling: {error:#}");
            admin_cmd::exit_code(&error)
        }
    }
}
