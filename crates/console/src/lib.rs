//! The Starling console: the web console (server-rendered HTML, no
//! JavaScript), the REST API under `/api/v1` that the console's pages and
//! the `starling` CLI share the logic of, and Prometheus `/metrics` — over
//! the agent's state database and its live view.
//!
//! It runs inside the agent's process (`starling serve`, `starling agent`)
//! and binds to loopback unless configured otherwise. Changes are written
//! to the state database; the agent picks them up within two seconds.
//!
//! - [`auth`]: accounts, sessions, tokens, CSRF, roles.
//! - [`api`]: the JSON routes, described by `openapi.json`.
//! - [`pages`]: the HTML pages (askama templates in `templates/`).
//! - [`stats`]: hourly counters turned into series, CSV reports and the
//!   report schedule; [`chart`] draws them as SVG.

pub mod api;
pub mod auth;
pub mod chart;
pub mod error;
pub mod pages;
pub mod stats;
pub mod status;
pub mod throttle;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use starling_agent::config::AgentConfig;
use starling_agent::events::{self, Events};
use starling_agent::live::Live;
use starling_agent::state::{self, State};
use tokio_util::sync::CancellationToken;

/// The file in the state directory with the first administrator's
/// password (written once, on first start).
pub const INITIAL_PASSWORD_FILE: &str = "initial-admin-password";
/// The file in the state directory with the API token the CLI on this
/// machine uses (written on first start).
pub const CLI_TOKEN_FILE: &str = "cli.token";
/// The file in the state directory with the console's address, for the
/// CLI on this machine.
pub const URL_FILE: &str = "console.url";

/// The console's shared state.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    state: State,
    events: Events,
    base: AgentConfig,
    live: Arc<Live>,
    samples: Mutex<VecDeque<(f64, u64)>>,
    started: std::time::Instant,
    throttle: throttle::Throttle,
}

impl App {
    /// A console over the state in `base.state_dir` and the agent's live
    /// view.
    pub fn new(base: AgentConfig, live: Arc<Live>) -> anyhow::Result<App> {
        let state = State::open(&base.state_dir)?;
        state.call_blocking(|c| auth::create_tables(c))?;
        let events = Events::new(Some(Box::new(state.clone())));
        Ok(App {
            inner: Arc::new(Inner {
                state,
                events,
                base,
                live,
                samples: Mutex::new(VecDeque::new()),
                started: std::time::Instant::now(),
                throttle: throttle::Throttle::default(),
            }),
        })
    }

    /// Runs `f` on the state database.
    pub async fn db<R, F>(&self, f: F) -> Result<R, state::StateError>
    where
        R: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        self.inner.state.call(f).await
    }

    /// The logins' throttle.
    pub fn throttle(&self) -> &throttle::Throttle {
        &self.inner.throttle
    }

    /// The event emitter.
    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    /// The configuration file's settings.
    pub fn base(&self) -> &AgentConfig {
        &self.inner.base
    }

    /// The live view.
    pub fn live(&self) -> &Live {
        &self.inner.live
    }

    /// The configuration in effect (the file with the stored settings),
    /// and the problems of stored settings that do not apply.
    pub async fn config(&self) -> (AgentConfig, Vec<String>) {
        let stored = self.db(|c| state::settings(c)).await.unwrap_or_default();
        match starling_agent::settings::effective(self.base(), &stored) {
            Ok(config) => (config, Vec::new()),
            Err(problems) => (self.base().clone(), problems),
        }
    }

    /// Messages checked per second over the last ten seconds.
    pub fn rate(&self) -> f64 {
        let samples = self.inner.samples.lock().unwrap_or_else(|e| e.into_inner());
        let (Some(first), Some(last)) = (samples.iter().rev().nth(10).or(samples.front()), samples.back()) else {
            return 0.0;
        };
        let seconds = last.0 - first.0;
        if seconds <= 0.0 { 0.0 } else { (last.1 - first.1) as f64 / seconds }
    }

    /// Messages checked per second, each of the last five minutes' 10 s
    /// windows (oldest first).
    pub fn rate_history(&self) -> Vec<f64> {
        let samples = self.inner.samples.lock().unwrap_or_else(|e| e.into_inner());
        let points: Vec<&(f64, u64)> = samples.iter().step_by(10).collect();
        points.windows(2).map(|w| (w[1].1 - w[0].1) as f64 / (w[1].0 - w[0].0).max(1.0)).collect()
    }

    fn sample(&self) {
        let now = self.inner.started.elapsed().as_secs_f64();
        let checked = self.live().snapshot().checked;
        let mut samples = self.inner.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.push_back((now, checked));
        while samples.len() > 301 {
            samples.pop_front();
        }
    }
}

/// The console's routes: pages, API, metrics; every route but login and
/// health behind [`auth::require`].
pub fn router(app: App) -> Router {
    Router::new()
        .merge(api::router())
        .merge(pages::router())
        .layer(axum::middleware::from_fn_with_state(app.clone(), auth::require))
        .layer(axum::extract::DefaultBodyLimit::max(16 << 20))
        .with_state(app)
}

/// Creates the first administrator (and the local CLI's token) when there
/// is none; returns the password when it did.
pub async fn first_start(app: &App, state_dir: &Path) -> anyhow::Result<Option<String>> {
    let have = app.db(|c| auth::accounts(c)).await?;
    if !have.is_empty() {
        return Ok(None);
    }
    let password = auth::random_password();
    let hash = auth::hash_password(&password);
    let (_, token) = app
        .db(move |c| {
            auth::create_account(c, "admin", &hash, auth::Role::Admin)?;
            let (id, _, _) = auth::account_secret(c, "admin")?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            auth::create_token(c, id, "local CLI")
        })
        .await?;
    starling_agent::agent::write_private(&state_dir.join(INITIAL_PASSWORD_FILE), format!("{password}\n").as_bytes())?;
    starling_agent::agent::write_private(&state_dir.join(CLI_TOKEN_FILE), format!("{token}\n").as_bytes())?;
    app.events().emit(
        events::ADMIN_CREATED,
        None,
        format!("admin (its password is in {})", state_dir.join(INITIAL_PASSWORD_FILE).display()),
    );
    Ok(Some(password))
}

/// A running console.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Ends when the console has stopped.
    pub stopped: tokio::task::JoinHandle<()>,
}

/// Starts the console on `config.console.listen` until `stop`: creates the
/// first administrator on first start (telling how to log in on stderr),
/// samples the live view every second and writes scheduled reports.
pub async fn start(config: &AgentConfig, live: Arc<Live>, stop: CancellationToken) -> anyhow::Result<Running> {
    let app = App::new(config.clone(), live)?;
    let listener = match tokio::net::TcpListener::bind(&config.console.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            let detail = format!("{}: {e}", config.console.listen);
            app.events().emit(events::CONSOLE_FAILED, None, &detail);
            anyhow::bail!("the console cannot listen on {detail}");
        }
    };
    let addr = listener.local_addr()?;
    let tls = if config.console.tls() {
        match starling_listener::tls_acceptor(&config.console.tls_certificate, &config.console.tls_private_key) {
            Ok(acceptor) => Some(acceptor),
            Err(e) => {
                app.events().emit(events::CONSOLE_FAILED, None, e.to_string());
                anyhow::bail!("the console cannot serve HTTPS: {e}");
            }
        }
    } else {
        None
    };
    let url = format!("{}://{addr}", if tls.is_some() { "https" } else { "http" });
    std::fs::write(config.state_dir.join(URL_FILE), format!("{url}\n"))
        .with_context(|| format!("cannot write {}", config.state_dir.join(URL_FILE).display()))?;
    if let Some(password) = first_start(&app, &config.state_dir).await? {
        eprintln!(
            "starling: console at {url} — log in as \"admin\" with the password {password} \
             (also in {}; change it under Account, then delete the file)",
            config.state_dir.join(INITIAL_PASSWORD_FILE).display()
        );
    }
    app.events().emit(events::CONSOLE_STARTED, None, &url);
    let sampler = app.clone();
    let sampler_stop = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => sampler.sample(),
                () = sampler_stop.cancelled() => return,
            }
        }
    });
    tokio::spawn(stats::schedule(app.clone(), stop.clone()));
    let service = router(app);
    // The listener the node uses too: header and handshake time-outs
    // against slow or silent clients, HTTP/1.1 and HTTP/2, TLS when
    // configured.
    let stopped = tokio::spawn(starling_listener::serve(listener, service, tls, stop, Duration::from_secs(5)));
    Ok(Running { addr, stopped })
}

/// Where reports are written.
pub fn reports_dir(config: &AgentConfig) -> PathBuf {
    config.in_state_dir(&config.reports.dir)
}
