//! `starling users`: list, add, import, enable, disable, switch feedback
//! and the model, rescan.

use super::*;

#[derive(Args)]
pub(crate) struct UsersArgs {
    #[command(flatten)]
    pub(super) api: ApiArgs,
    #[command(subcommand)]
    pub(super) command: UsersCommand,
}

#[derive(Subcommand)]
pub(super) enum UsersCommand {
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
