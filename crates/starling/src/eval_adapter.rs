//! `starling eval-adapter`: the evaluation harness's line protocol
//! (`../shared/eval/PROTOCOL.md`) over an in-memory index that applies the
//! network's match rule.
//!
//! One command per line on stdin, exactly one reply line per command on
//! stdout, flushed at once; diagnostics go to stderr. A failing command is
//! answered with `error …` and the adapter carries on.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use clap::Args;
use starling_fingerprint::{Fingerprinter, MatchRule, MemoryIndex, ReportClass};

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

struct Adapter {
    fingerprinter: Fingerprinter,
    rule: MatchRule,
    index: MemoryIndex,
    explain: bool,
    /// The path first reported for each index entry, for `--explain`.
    reported: Vec<String>,
}

impl Adapter {
    fn handle(&mut self, command: Command<'_>) -> Result<String, String> {
        match command {
            Command::Ping | Command::Quit => Ok("ok".into()),
            Command::Report { class, path, reporter: _ } => {
                let fingerprints = self.fingerprinter.fingerprint(&read(path)?);
                if let Some(entry) = self.index.report(&fingerprints, class)
                    && entry == self.reported.len()
                {
                    self.reported.push(path.to_owned());
                }
                Ok("ok".into())
            }
            Command::Check { path } => {
                let fingerprints = self.fingerprinter.fingerprint(&read(path)?);
                let found = self.index.check(&fingerprints, &self.rule);
                if self.explain
                    && let Some(m) = &found
                {
                    let similarity = m.similarity.map(|s| format!(" {s:?}")).unwrap_or_default();
                    eprintln!("match {path} <- {} {}{similarity}", self.reported[m.entry], m.kind);
                }
                Ok(format!("score {}", found.map_or(0.0, |m| m.score)))
            }
        }
    }
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))
}

pub(crate) fn run(args: &EvalAdapterArgs) -> anyhow::Result<ExitCode> {
    let key = args.fingerprint.key()?;
    let mut adapter = Adapter {
        fingerprinter: Fingerprinter::with_settings(&key, args.fingerprint.settings()),
        rule: args.rule.rule(),
        index: MemoryIndex::new(),
        explain: args.explain,
        reported: Vec::new(),
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
