//! `starling settings`: show, set, reset.

use super::*;

#[derive(Args)]
pub(crate) struct SettingsArgs {
    #[command(flatten)]
    pub(super) api: ApiArgs,
    #[command(subcommand)]
    pub(super) command: SettingsCommand,
}

#[derive(Subcommand)]
pub(super) enum SettingsCommand {
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
