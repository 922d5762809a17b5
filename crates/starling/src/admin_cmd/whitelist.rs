//! `starling whitelist`: list, add, edit, remove, import, export.

use super::*;

#[derive(Args)]
pub(crate) struct WhitelistArgs {
    #[command(flatten)]
    pub(super) api: ApiArgs,
    /// A mailbox's own whitelist instead of the server-wide one.
    #[arg(long, global = true, value_name = "MAILBOX")]
    pub(super) user: Option<String>,
    #[command(subcommand)]
    pub(super) command: WhitelistCommand,
}

#[derive(Subcommand)]
pub(super) enum WhitelistCommand {
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
