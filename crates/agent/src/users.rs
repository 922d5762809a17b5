//! Where the list of mailboxes comes from: the Maildir root, Dovecot's user
//! list (`doveadm user '*'`), a CSV file, or the configuration's list.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::config::{AgentConfig, UserSource};

/// Longest a user-listing command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Bytes of output read from a user-listing command, at most.
const MAX_OUTPUT: u64 = 256 << 20;

pub use crate::config::check_name;

/// One user from a CSV file: name and, when given, whether enabled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvUser {
    /// The mailbox.
    pub name: String,
    /// The `enabled` column, when present.
    pub enabled: Option<bool>,
}

/// Parses a user CSV: `user[,enabled]` per line, an optional header row
/// (`user,…`), `#` comments. Problems are reported by line.
pub fn parse_csv(text: &str) -> (Vec<CsvUser>, Vec<String>) {
    let mut users = Vec::new();
    let mut problems = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    for (index, record) in reader.records().enumerate() {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                problems.push(format!("line {}: {e}", index + 1));
                continue;
            }
        };
        let line = record.position().map_or(index as u64 + 1, |p| p.line());
        let Some(name) = record.get(0).filter(|n| !n.is_empty()) else { continue };
        if index == 0 && (name.eq_ignore_ascii_case("user") || name.eq_ignore_ascii_case("mailbox")) {
            continue;
        }
        if let Err(e) = check_name(name) {
            problems.push(format!("line {line}: {e}"));
            continue;
        }
        let enabled = match record.get(1).map(str::to_ascii_lowercase).as_deref() {
            None | Some("") => None,
            Some("1" | "true" | "yes" | "on" | "enabled") => Some(true),
            Some("0" | "false" | "no" | "off" | "disabled") => Some(false),
            Some(other) => {
                problems.push(format!("line {line}: enabled must be yes or no, got {other:?}"));
                continue;
            }
        };
        users.push(CsvUser { name: name.to_owned(), enabled });
    }
    (users, problems)
}

/// The users the configured source lists now, and the source's name.
pub async fn list(config: &AgentConfig) -> Result<(Vec<String>, &'static str), String> {
    let mut users = match config.users.source {
        UserSource::Maildir => {
            let root = config.maildir.root.clone();
            let layout = config.maildir.layout.clone();
            tokio::task::spawn_blocking(move || crate::maildir::discover(&root, &layout))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("cannot read the Maildir root {}: {e}", config.maildir.root.display()))?
        }
        UserSource::Doveadm => run_command(&config.users.doveadm_command).await?,
        UserSource::Csv => {
            let path = config.users.csv_file.as_deref().unwrap_or(Path::new(""));
            let text =
                tokio::fs::read_to_string(path).await.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let (users, problems) = parse_csv(&text);
            for problem in problems {
                tracing::warn!("{}: {problem}", path.display());
            }
            users.into_iter().map(|u| u.name).collect()
        }
        UserSource::List => Vec::new(),
    };
    users.extend(config.users.list.iter().cloned());
    users.sort();
    users.dedup();
    let source = match config.users.source {
        UserSource::Maildir => "maildir",
        UserSource::Doveadm => "doveadm",
        UserSource::Csv => "csv",
        UserSource::List => "list",
    };
    Ok((users, source))
}

/// Runs a user-listing command; one user per line (the first field).
async fn run_command(command: &[String]) -> Result<Vec<String>, String> {
    use tokio::io::AsyncReadExt as _;
    let (program, args) = command.split_first().ok_or("the command is empty")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no output")?;
    let mut stderr = child.stderr.take().ok_or("no output")?;
    let run = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut stdout = (&mut stdout).take(MAX_OUTPUT);
        let mut stderr = (&mut stderr).take(64 << 10);
        let (read_out, read_err) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        read_out.map_err(|e| e.to_string())?;
        read_err.map_err(|e| e.to_string())?;
        let status = child.wait().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((status, out, err))
    };
    let (status, out, err) = tokio::time::timeout(COMMAND_TIMEOUT, run)
        .await
        .map_err(|_| format!("{program} did not finish within {} s", COMMAND_TIMEOUT.as_secs()))??;
    if !status.success() {
        return Err(format!("{program} failed ({status}): {}", String::from_utf8_lossy(&err).trim()));
    }
    let text = String::from_utf8_lossy(&out);
    let mut users = Vec::new();
    for line in text.lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        match check_name(name) {
            Ok(()) => users.push(name.to_owned()),
            Err(e) => tracing::warn!("{program}: skipping {e}"),
        }
    }
    Ok(users)
}

/// The (uid, gid) of an owner written `user:group`, `user` or `:group`,
/// by name (from `/etc/passwd` and `/etc/group`) or number; `None` for "".
pub fn owner_ids(owner: &str) -> Result<Option<starling_milter::Owner>, String> {
    let owner = owner.trim();
    if owner.is_empty() {
        return Ok(None);
    }
    let (user, group) = owner.split_once(':').unwrap_or((owner, ""));
    let lookup = |name: &str, file: &str| -> Result<Option<u32>, String> {
        if name.is_empty() {
            return Ok(None);
        }
        if let Ok(id) = name.parse::<u32>() {
            return Ok(Some(id));
        }
        let table = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        table
            .lines()
            .map(|line| line.split(':').collect::<Vec<_>>())
            .find(|fields| fields.first() == Some(&name))
            .and_then(|fields| fields.get(2).and_then(|id| id.parse().ok()))
            .map(Some)
            .ok_or_else(|| format!("no such name in {file}: {name:?}"))
    };
    Ok(Some((lookup(user, "/etc/passwd")?, lookup(group, "/etc/group")?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["alice", "alice@example.com", "a.b-c_d+e"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a/b", "..", ".hidden", "a\"b", "a*", "x\ny"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn csv_with_header_comments_and_problems() {
        let (users, problems) =
            parse_csv("user,enabled\n# staff\nalice,yes\nbob\ncarol,no\nbad name,yes\ndave,maybe\n");
        assert_eq!(
            users,
            [
                CsvUser { name: "alice".into(), enabled: Some(true) },
                CsvUser { name: "bob".into(), enabled: None },
                CsvUser { name: "carol".into(), enabled: Some(false) },
            ]
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[tokio::test]
    async fn commands_list_users() {
        let users = run_command(&["printf".into(), "alice\\nbob extra fields\\n\\n".into()]).await.unwrap();
        assert_eq!(users, ["alice", "bob"]);
        assert!(run_command(&["false".into()]).await.is_err());
        assert!(run_command(&["/nonexistent/doveadm".into()]).await.is_err());
    }
}
