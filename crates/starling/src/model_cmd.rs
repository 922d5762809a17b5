//! `starling model`: the local model's state, and rebuilding it from its
//! stored examples — through the running service's API, like the other
//! administration commands.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use crate::admin_cmd::ApiArgs;

#[derive(Args)]
pub(crate) struct ModelArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: ModelCommand,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// What the model learnt (examples by class and source), whether it may
    /// file yet, its threshold, and what it and retro-filing filed.
    Status {
        /// The API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the model from its stored examples (the running agent does
    /// it within seconds; decisions afterwards are the same as from a
    /// model that learnt the same examples in order).
    Retrain {
        /// Wait until it is done.
        #[arg(long)]
        wait: bool,
    },
}

pub(crate) fn model(args: ModelArgs) -> anyhow::Result<ExitCode> {
    let api = args.api.connect()?;
    let mut out = std::io::stdout().lock();
    match args.command {
        ModelCommand::Status { json } => {
            let status = api.json("GET", "/api/v1/model", None)?;
            if json {
                writeln!(out, "{status}")?;
                return Ok(ExitCode::SUCCESS);
            }
            match status["live"].as_object() {
                Some(live) => {
                    let ready = if live["ready"].as_bool() == Some(true) { "ready to file" } else { "still learning" };
                    writeln!(
                        out,
                        "model: {} ({ready}); {} spam and {} ham learnt; files at p >= {:.4} (counting) or above {:.4} (linear, fitted on {} examples); {} known senders (never filed by the model); {:.1} MB",
                        live["mode"].as_str().unwrap_or("?"),
                        live["spam"],
                        live["ham"],
                        live["threshold"].as_f64().unwrap_or(1.0),
                        live["linear_threshold"].as_f64().unwrap_or(1.0),
                        live["linear_examples"],
                        live["known_senders"],
                        live["memory_bytes"].as_f64().unwrap_or(0.0) / 1e6,
                    )?;
                    writeln!(
                        out,
                        "since start: {} filed after delivery, {} filed by the model",
                        live["filed_after_delivery"], live["filed_by_model"]
                    )?;
                }
                None => writeln!(out, "model: not attached yet (the agent is starting)")?,
            }
            for row in status["examples"].as_array().into_iter().flatten() {
                writeln!(
                    out,
                    "  {:<5} {:<10} {}",
                    row[0].as_str().unwrap_or(""),
                    row[1].as_str().unwrap_or(""),
                    row[2]
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::Retrain { wait } => {
            let answer = api.json("POST", "/api/v1/model/retrain", None)?;
            let id = answer["id"].as_i64().unwrap_or_default();
            writeln!(out, "retrain {id} requested")?;
            if !wait {
                return Ok(ExitCode::SUCCESS);
            }
            let started = Instant::now();
            loop {
                let row = api.json("GET", &format!("/api/v1/model/retrain/{id}"), None)?;
                if row["status"].as_str() == Some("done") {
                    writeln!(out, "{}", row["detail"].as_str().unwrap_or("done"))?;
                    let failed = row["detail"].as_str().is_some_and(|d| d.starts_with("failed"));
                    return Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS });
                }
                if started.elapsed() > Duration::from_secs(600) {
                    anyhow::bail!("retrain {id} did not finish within 10 minutes; see `starling events`");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}
