//! What the command-line tests share: the `starling` binary run against a
//! configuration, and a `starling serve` on free loopback ports.
#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub fn starling(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_starling"))
        .env("STARLING_CONFIG", config)
        .env("STARLING_LOG", "warn")
        .env_remove("STARLING_URL")
        .env_remove("STARLING_TOKEN")
        .env_remove("STARLING_TOKEN_FILE")
        .args(args)
        .output()
        .expect("starling runs")
}

pub fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

pub struct Service {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub child: Child,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `starling serve` on free loopback ports over an empty Maildir root.
pub fn serve() -> Service {
    serve_with("")
}

/// The same with more `[console]` options.
pub fn serve_with(console: &str) -> Service {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("starling.toml");
    std::fs::create_dir_all(dir.path().join("mail")).expect("mail root");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\n[maildir]\nroot = {:?}\n[console]\nlisten = \"127.0.0.1:0\"\n{console}\n\
             [embedded_network]\nlisten = \"127.0.0.1:0\"\n",
            dir.path().join("state").display().to_string(),
            dir.path().join("mail").display().to_string()
        ),
    )
    .expect("config");
    let child = spawn_serve(&config);
    let service = Service { dir, config, child };
    let url_file = service.dir.path().join("state").join(starling_console::URL_FILE);
    let token_file = service.dir.path().join("state").join(starling_console::CLI_TOKEN_FILE);
    assert!(
        starling_testkit::wait_until(Duration::from_secs(60), || url_file.exists() && token_file.exists()),
        "the console did not start"
    );
    service
}

/// `starling serve` with a configuration, quietly.
pub fn spawn_serve(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["serve", "--config"])
        .arg(config)
        .env("STARLING_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts")
}
