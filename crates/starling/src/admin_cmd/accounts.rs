//! `starling accounts`: console accounts and API tokens.

use super::*;

#[derive(Args)]
pub(crate) struct AccountsArgs {
    #[command(flatten)]
    pub(super) api: ApiArgs,
    #[command(subcommand)]
    pub(super) command: AccountsCommand,
}

#[derive(Subcommand)]
pub(super) enum AccountsCommand {
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
pub(super) fn new_password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
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
