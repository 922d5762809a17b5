//! A console on a free loopback port over a fresh state directory.

#![allow(dead_code)]

use std::sync::Arc;

use starling_agent::AgentConfig;
use starling_agent::live::Live;
use tokio_util::sync::CancellationToken;

pub struct Console {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub token: String,
    pub password: String,
    pub config: AgentConfig,
    pub stop: CancellationToken,
}

impl Console {
    pub async fn start() -> Console {
        Console::start_with(Arc::new(Live::default())).await
    }

    /// A console reading this live view.
    pub async fn start_with(live: Arc<Live>) -> Console {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = AgentConfig { state_dir: dir.path().join("state"), ..AgentConfig::default() };
        config.console.listen = "127.0.0.1:0".into();
        config.rescan.timezone = "UTC".into();
        std::fs::create_dir_all(&config.state_dir).expect("state dir");
        let stop = CancellationToken::new();
        let running = starling_console::start(&config, live, stop.clone()).await.expect("console");
        let read = |name: &str| std::fs::read_to_string(config.state_dir.join(name)).expect(name).trim().to_owned();
        Console {
            url: format!("http://{}", running.addr),
            token: read(starling_console::CLI_TOKEN_FILE),
            password: read(starling_console::INITIAL_PASSWORD_FILE),
            config,
            dir,
            stop,
        }
    }

    pub fn db(&self) -> rusqlite::Connection {
        starling_agent::state::open(&self.config.state_dir.join(starling_agent::state::FILE_NAME)).expect("db")
    }
}

/// A blocking HTTP agent that leaves error statuses to the caller.
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into()
}
