//! The running agent: state, events, the network, the pipeline, and one
//! task per watched folder, kept in step with the list of mailboxes.
//!
//! A supervisor loop reads the user source every `users.refresh_minutes`,
//! notices changes made by the CLI or console (SQLite's `data_version`),
//! starts and stops mailbox tasks to match the enabled mailboxes, routes
//! Maildir notifications to them, and drains the re-check queue whenever
//! the network is reachable. It also starts the daily rescan at its time,
//! hands rescans asked for by the CLI to their mailbox's task, and (IMAP)
//! keeps a second task per mailbox on its spam folder for users' feedback;
//! for Maildir it watches the spam folder and the other folders and routes
//! what users move there to the mailbox's task.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{AgentConfig, MailStoreKind, SharedMailbox};
use crate::events::{self, Events};
use crate::feedback::Feedback;
use crate::learning::Learner;
use crate::network::{self, Health, Network};
use crate::pipeline::{self, MailboxContext, Pipeline, PolicyCell, Whitelists};
use crate::policy::{ActionKind, MailboxPolicy};
use crate::process::{Moved, Processor};
use crate::state::{self, RescanStatus, State};
use crate::tagging::Marker;
use crate::{imap, maildir, users};

/// The agent's own secret (tag marks, reporter pseudonyms), in `state_dir`.
pub const SECRET_FILE: &str = "agent.secret";

pub use crate::process::Work;

/// Options beyond the configuration file.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The organisation's credential, instead of `network.credential_file`
    /// (`starling serve` passes its embedded network's).
    pub credential: Option<String>,
    /// Where the agent shows what it is doing (the console reads it).
    pub live: Arc<crate::live::Live>,
    /// Run only the in-line filter (`starling milter`): no mailbox is
    /// watched, the milter runs whatever `[milter] enabled` says.
    pub milter_only: bool,
}

/// Reads the agent's secret, creating it (mode 0600) on first start.
pub fn load_or_create_secret(path: &Path) -> anyhow::Result<[u8; 32]> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let bytes: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| anyhow::anyhow!("{} is damaged (expected 64 hex digits)", path.display()))?;
        return Ok(bytes);
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    write_private(path, hex::encode(secret).as_bytes())?;
    Ok(secret)
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

struct Running {
    work: mpsc::Sender<Work>,
    task: tokio::task::JoinHandle<()>,
    /// Maildir: the watched directories (`new` and `cur` of each folder).
    watched: Vec<PathBuf>,
    /// Users' moves are watched (the task must restart when that changes).
    feedback: bool,
    /// The policy it applies: changes reach it through `cell`, unless they
    /// change what is watched (see [`same_watch`]), which restarts it.
    policy: MailboxPolicy,
    cell: PolicyCell,
}

/// Whether a task that applies `old` can go on under `new` with the same
/// sessions and watches: the spam and trash folders stay, and filing into
/// the spam folder does not begin (the spam-folder task, which creates the
/// folder only when the agent files there, must then start over to watch
/// it). Anything else — actions, the tag, marking read, the model's switch
/// — applies to the next messages in place.
fn same_watch(old: &MailboxPolicy, new: &MailboxPolicy) -> bool {
    let files_there = |p: &MailboxPolicy| [p.spam_action, p.phish_action].contains(&ActionKind::SpamFolder);
    old.spam_folder == new.spam_folder
        && old.trash_folder == new.trash_folder
        && (files_there(old) || !files_there(new))
}

/// Runs the agent until `stop` is cancelled.
pub async fn run(config: AgentConfig, options: Options, stop: CancellationToken) -> anyhow::Result<()> {
    let problems = config.problems();
    if !problems.is_empty() {
        anyhow::bail!("invalid configuration:\n  {}", problems.join("\n  "));
    }
    let state = State::open(&config.state_dir)?;
    let events = Events::new(Some(Box::new(state.clone())));
    // The file's configuration with the settings changed in the console
    // laid over it; stored settings that became invalid are ignored (with
    // an event) rather than stopping the agent.
    let base = config;
    let config = match state.call(|c| state::settings(c)).await {
        Ok(stored) => match crate::settings::effective(&base, &stored) {
            Ok(config) => config,
            Err(problems) => {
                events.emit(events::SETTINGS_REJECTED, None, problems.join("; "));
                base.clone()
            }
        },
        Err(e) => {
            events.emit(events::STATE_ERROR, None, e.to_string());
            base.clone()
        }
    };
    let live = options.live.clone();
    let secret = load_or_create_secret(&config.state_dir.join(SECRET_FILE))?;
    let marker = Marker::new(&secret);
    let credential = match options.credential {
        Some(credential) => credential,
        None => {
            let path = config.in_state_dir(&config.network.credential_file);
            std::fs::read_to_string(&path).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the network credential file {}: {e} (set [network] credential_file)",
                    path.display()
                )
            })?
        }
    };
    let ca_pem = match &config.network.ca_file {
        Some(ca) => Some(std::fs::read(ca).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", ca.display()))?),
        None => None,
    };
    let targets = config
        .network
        .urls()
        .map(|url| {
            let mut target = starling_proto::client::Target::new(url);
            target.timeout = Duration::from_millis(config.network.timeout_ms);
            target.ca_pem.clone_from(&ca_pem);
            target
        })
        .collect();
    let settings = network::Settings {
        targets,
        credential: credential.trim().to_owned(),
        batch_size: config.network.batch_size,
        retry: Duration::from_secs(config.network.retry_seconds),
    };
    let imap_server = match config.mail_store {
        MailStoreKind::Imap => {
            Some(Arc::new(imap::Server::new(config.imap.clone(), &config.in_state_dir(&config.imap.password_file))?))
        }
        MailStoreKind::Maildir => None,
    };
    let network = Network::start(settings, events.clone(), state.clone()).await?;
    let activation =
        crate::activation::Activation::open(&config.activation, &config.notify, state.clone(), events.clone()).await?;
    live.set_activation(activation.clone());
    let pipeline = Arc::new(Pipeline::new(&config, network.clone(), events.clone(), marker.clone()));
    let feedback = Feedback::new(state.clone(), events.clone(), config.feedback.enabled);
    let learner = Arc::new(Learner::open(&config.model, &config.state_dir, state.clone(), events.clone()).await?);
    pipeline.set_learner(learner.clone());
    let recent = Arc::new(crate::retro::Index::new(&config));
    recent.add(&state.call(|c| crate::recent::all_keys(c)).await?);
    let (retro_keys, retro_receiver) = mpsc::unbounded_channel();
    feedback.on_reported(retro_keys.clone());
    let processor = Arc::new(Processor {
        pipeline: pipeline.clone(),
        state: state.clone(),
        events: events.clone(),
        recheck_queue_max: config.network.recheck_queue_max,
        feedback: feedback.clone(),
        live: live.clone(),
        recent: recent.clone(),
        unrecorded: Default::default(),
    });
    let inline = if config.milter.enabled || options.milter_only {
        let inline = Arc::new(crate::inline::Inline::new(
            &config,
            pipeline.clone(),
            state.clone(),
            events.clone(),
            live.clone(),
        ));
        inline.load_mailboxes(&activation.standing()).await?;
        match start_milter(&config, inline.clone(), stop.child_token()).await {
            Ok(address) => {
                live.set_milter(address.clone());
                live.set_milter_mailboxes(inline.mailbox_count());
                events.emit(events::MILTER_STARTED, None, format!("Listening on {address}."));
            }
            Err(e) => {
                events.emit(events::MILTER_FAILED, None, format!("{e:#}"));
                if options.milter_only {
                    return Err(e);
                }
            }
        }
        Some(inline)
    } else {
        None
    };
    live.set_learning(learner.clone(), recent, config.policy.model);
    live.set_network(network.clone());
    live.set_mail_store(match config.mail_store {
        MailStoreKind::Maildir => format!("Maildir {}", config.maildir.root.display()),
        MailStoreKind::Imap => format!("IMAP {}:{}", config.imap.host, config.imap.port()),
    });
    events.emit(
        events::AGENT_STARTED,
        None,
        format!(
            "Version {}, {} mail store, network {}.",
            env!("CARGO_PKG_VERSION"),
            match config.mail_store {
                MailStoreKind::Maildir => "Maildir",
                MailStoreKind::Imap => "IMAP",
            },
            config.network.url
        ),
    );
    let supervisor_stop = stop.child_token();
    feedback.start_sender(
        network.clone(),
        secret,
        Duration::from_secs(config.network.retry_seconds),
        supervisor_stop.clone(),
    );
    let (fs_events, fs_receiver) = mpsc::channel(4096);
    let mut config = config;
    // Notifications name absolute paths.
    config.maildir.root = std::path::absolute(&config.maildir.root)?;
    let schedule = config
        .rescan
        .enabled
        .then(|| crate::schedule::Daily::parse(&config.rescan.time, &config.rescan.timezone))
        .transpose()?;
    let mut supervisor = Supervisor {
        base,
        config,
        live,
        state,
        events: events.clone(),
        network,
        pipeline,
        processor,
        marker,
        imap: imap_server,
        running: HashMap::new(),
        spam_running: HashMap::new(),
        watcher: None,
        watch_routes: HashMap::new(),
        needs_scan: HashMap::new(),
        fs_events,
        schedule,
        settings_changed: None,
        stop: supervisor_stop,
        learner,
        model_version: u64::MAX,
        model_pass_after: tokio::time::Instant::now(),
        model_seen: (u64::MAX, tokio::time::Instant::now(), None),
        inline,
        watch_mailboxes: !options.milter_only,
        activation: activation.clone(),
        over_limit: Vec::new(),
        was_filtering: activation.standing().filtering,
    };
    tokio::spawn(activation.run(
        supervisor.network.clone(),
        Duration::from_secs(supervisor.config.network.retry_seconds),
        supervisor.stop.clone(),
    ));
    if supervisor.config.retro.enabled && supervisor.config.retro.network_changes {
        tokio::spawn(crate::network::follow_changes(
            supervisor.network.clone(),
            retro_keys,
            supervisor.events.clone(),
            supervisor.stop.clone(),
        ));
    }
    let result = supervisor.run(fs_receiver, retro_receiver, &stop).await;
    supervisor.shutdown().await;
    supervisor.learner.snapshot().await;
    events.emit(events::AGENT_STOPPED, None, "");
    // Let the state thread store the last events.
    let _ = supervisor.state.call(|_| Ok(())).await;
    result
}

/// A folder a mailbox task should watch.
struct Wanted {
    name: String,
    account: String,
    folder: String,
    policy: MailboxPolicy,
    /// Users' moves are watched (and reported when the network may hear
    /// of them).
    feedback: bool,
}

/// Where a watched Maildir directory's notifications go.
#[derive(Clone, Debug)]
struct Route {
    mailbox: String,
    folder: String,
    kind: RouteKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RouteKind {
    /// The filtered folder's `new/` (true) or `cur/` (false).
    Filtered(bool),
    /// The spam folder or a sub-folder of it.
    Spam,
    /// Another folder (not Trash).
    Other,
}

struct Supervisor {
    /// The configuration file's settings.
    base: AgentConfig,
    /// In effect: `base` with the stored settings laid over it.
    config: AgentConfig,
    live: Arc<crate::live::Live>,
    state: State,
    events: Events,
    network: Network,
    pipeline: Arc<Pipeline>,
    processor: Arc<Processor>,
    marker: Marker,
    imap: Option<Arc<imap::Server>>,
    running: HashMap<String, Running>,
    /// IMAP: the spam-folder task of each mailbox with feedback on.
    spam_running: HashMap<String, Running>,
    watcher: Option<notify::RecommendedWatcher>,
    /// Watched `new`/`cur` directory → where its notifications go.
    watch_routes: HashMap<PathBuf, Route>,
    fs_events: mpsc::Sender<notify::Result<notify::Event>>,
    /// Mailboxes whose notifications were lost (their task had no room, or
    /// the kernel's queue overflowed), with the time from which to look
    /// again: they get a rescan as soon as there is room.
    needs_scan: HashMap<String, i64>,
    /// The daily rescan, when on.
    schedule: Option<crate::schedule::Daily>,
    /// Settings changed and applied to the supervisor, told (event 502)
    /// once the mailbox tasks have them too.
    settings_changed: Option<String>,
    stop: CancellationToken,
    /// The organisation's model.
    learner: Arc<Learner>,
    /// The model's version the last retro pass looked with.
    model_version: u64,
    /// The next model retro pass not before (its cost bounds its rate).
    model_pass_after: tokio::time::Instant,
    /// The model's version last seen by the retro tick, when it was first
    /// seen, and since when a pass has been owed.
    model_seen: (u64, tokio::time::Instant, Option<tokio::time::Instant>),
    /// The in-line filter, when it runs (it follows mailboxes and settings).
    inline: Option<Arc<crate::inline::Inline>>,
    /// Mailbox tasks run (not so under `starling milter`).
    watch_mailboxes: bool,
    /// The organisation's trial or subscription.
    activation: Arc<crate::activation::Activation>,
    /// Mailboxes the plan's limit leaves out, as last told.
    over_limit: Vec<String>,
    /// Whether filtering ran at the last look (queued re-checks are dropped
    /// when it stops).
    was_filtering: bool,
}

/// The model retro pass waits until the model has not changed for this
/// long: its filings are permanent, and a model in the middle of learning a
/// batch (a morning's mail turning into implicit ham at once) has a
/// threshold calibrated on part of it.
const MODEL_SETTLED: Duration = Duration::from_secs(6);
/// ... but never longer than this while it keeps learning.
const MODEL_PASS_MAX_WAIT: Duration = Duration::from_secs(60);

/// Starts the milter on `[milter] listen`; the address it listens on.
async fn start_milter(
    config: &AgentConfig,
    inline: Arc<crate::inline::Inline>,
    stop: CancellationToken,
) -> anyhow::Result<String> {
    use crate::config::MilterListen;
    let m = &config.milter;
    let listen = match m.listen_address().map_err(|e| anyhow::anyhow!("milter.listen: {e}"))? {
        MilterListen::Tcp(address) => starling_milter::Listen::Tcp(address),
        MilterListen::Unix(path) => starling_milter::Listen::Unix {
            path,
            mode: m.mode(),
            owner: crate::users::owner_ids(&m.socket_owner).map_err(|e| anyhow::anyhow!("milter.socket_owner: {e}"))?,
        },
    };
    let limits = starling_milter::Limits {
        max_message_bytes: m.max_message_bytes,
        max_connections: m.max_connections,
        ..starling_milter::Limits::default()
    };
    starling_milter::serve(&listen, inline, limits, stop)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", m.listen))?;
    Ok(m.listen.clone())
}

/// How long filed messages are remembered (to recognise rescues).
const FILED_KEEP_DAYS: i64 = 90;

/// How often the retro and model passes look for work.
const RETRO_TICK: Duration = Duration::from_secs(2);

/// How often old rows are forgotten.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(3600);

/// Forgets filed messages too old to matter and per-mailbox counters older
/// than `user_statistics_days` (0: kept), an hour of them at a time so that
/// mailbox tasks get the database in between.
async fn housekeeping(state: State, events: Events, user_statistics_days: u32, stop: CancellationToken) {
    let now = jiff::Timestamp::now().as_second();
    let before = now - FILED_KEEP_DAYS * 86_400;
    if let Err(e) = state.call(move |c| state::filed_expire(c, before)).await {
        events.emit(events::STATE_ERROR, None, e.to_string());
        return;
    }
    if user_statistics_days == 0 {
        return;
    }
    let before = now - i64::from(user_statistics_days) * 86_400;
    while !stop.is_cancelled() {
        match state.call(move |c| state::hourly_expire_step(c, before)).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                events.emit(events::STATE_ERROR, None, e.to_string());
                return;
            }
        }
    }
}

impl Supervisor {
    async fn run(
        &mut self,
        mut fs_receiver: mpsc::Receiver<notify::Result<notify::Event>>,
        mut retro_keys: mpsc::UnboundedReceiver<Vec<u64>>,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        if self.config.mail_store == MailStoreKind::Maildir {
            let sender = self.fs_events.clone();
            let watcher = notify::recommended_watcher(move |event| {
                let _ = sender.blocking_send(event);
            })?;
            self.watcher = Some(watcher);
        }
        let mut data_version = self.state.call(|c| state::data_version(c)).await?;
        self.reload_whitelists().await;
        self.abandon_stale_rescans().await;
        let mut users_due = tokio::time::Instant::now();
        let mut settings_poll = tokio::time::interval(Duration::from_secs(2));
        let mut recheck_poll = tokio::time::interval(Duration::from_secs(self.config.network.retry_seconds.max(5)));
        let mut health = self.network.health_changes();
        let mut standing = self.activation.changes();
        let mut rescan_due = self.next_rescan();
        let mut housekeeping_due = tokio::time::interval(HOUSEKEEPING_EVERY);
        housekeeping_due.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut housekeeper: Option<tokio::task::JoinHandle<()>> = None;
        let mut retro_tick = tokio::time::interval(RETRO_TICK);
        retro_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u64;
        loop {
            let rescan_sleep = async {
                match rescan_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep_until(users_due) => {
                    let ok = self.sync_users().await;
                    self.reconcile().await;
                    self.dispatch_rescans().await;
                    let minutes = if ok { self.config.users.refresh_minutes } else { 1 };
                    users_due = tokio::time::Instant::now() + Duration::from_secs(minutes * 60);
                }
                _ = settings_poll.tick() => {
                    self.send_pending_scans();
                    self.report_load();
                    if let Ok(version) = self.state.call(|c| state::data_version(c)).await
                        && version != data_version
                    {
                        data_version = version;
                        self.activation.reload().await;
                        if self.reload_settings().await {
                            rescan_due = self.next_rescan();
                        }
                        self.reload_whitelists().await;
                        self.reconcile().await;
                        if let Some(changed) = self.settings_changed.take() {
                            self.events.emit(events::SETTINGS_CHANGED, None, changed);
                        }
                        self.dispatch_rescans().await;
                    }
                }
                _ = recheck_poll.tick() => self.drain_rechecks().await,
                _ = housekeeping_due.tick() => {
                    // A long backlog (a first run over a year of rows) is
                    // cleared beside the supervisor, never twice at once.
                    if housekeeper.as_ref().is_none_or(tokio::task::JoinHandle::is_finished) {
                        let days = self.config.reports.user_statistics_days;
                        let (state, events, stop) = (self.state.clone(), self.events.clone(), stop.clone());
                        housekeeper = Some(tokio::spawn(housekeeping(state, events, days, stop)));
                    }
                }
                Ok(()) = standing.changed() => {
                    standing.borrow_and_update();
                    self.reconcile().await;
                    self.dispatch_rescans().await;
                }
                changed = health.changed() => {
                    if changed.is_ok() && *health.borrow_and_update() == Health::Up {
                        self.drain_rechecks().await;
                    }
                }
                () = rescan_sleep => {
                    self.daily_rescan().await;
                    rescan_due = self.next_rescan();
                }
                Some(event) = fs_receiver.recv() => self.route(event).await,
                Some(keys) = retro_keys.recv() => {
                    let mut keys = keys;
                    while let Ok(more) = retro_keys.try_recv() {
                        keys.extend(more);
                    }
                    self.retro_keys(keys).await;
                }
                _ = retro_tick.tick() => {
                    ticks += 1;
                    self.model_requests().await;
                    self.model_pass().await;
                    if ticks.is_multiple_of(5) {
                        self.settle_pass().await;
                    }
                    if ticks.is_multiple_of(30) {
                        self.learner.snapshot().await;
                    }
                    if ticks % 300 == 1 {
                        self.forget_old_deliveries().await;
                    }
                }
            }
        }
    }

    /// Delivered copies of what became spam (keys of a report here, or of
    /// the network's changes) are looked at again by their mailbox tasks.
    async fn retro_keys(&mut self, keys: Vec<u64>) {
        if !self.config.retro.enabled {
            return;
        }
        let ids = self.processor.recent.candidates(&keys);
        if ids.is_empty() {
            return;
        }
        match self.state.call(move |c| crate::recent::locate(c, &ids)).await {
            Ok(rows) => self.dispatch_retro(rows),
            Err(e) => self.events.emit(events::STATE_ERROR, None, e.to_string()),
        }
    }

    fn dispatch_retro(&self, rows: Vec<crate::recent::Located>) {
        for (mailbox, rows) in crate::retro::by_mailbox(rows) {
            let Some(running) = self.running.get(&mailbox) else { continue };
            let locators = rows.into_iter().map(|r| (r.folder, r.locator)).collect();
            // A full queue drops the look; the daily rescan still comes.
            let _ = running.work.try_send(Work::Retro(locators));
        }
    }

    /// When the model learnt something, the mail it is now sure of is
    /// looked at again: once the model has settled ([`MODEL_SETTLED`], at
    /// most [`MODEL_PASS_MAX_WAIT`]), and at most one pass per ten times
    /// its cost.
    async fn model_pass(&mut self) {
        let version = self.learner.version();
        let now = tokio::time::Instant::now();
        if version != self.model_seen.0 {
            self.model_seen = (version, now, self.model_seen.2.or(Some(now)));
        }
        let settled = now.duration_since(self.model_seen.1) >= MODEL_SETTLED
            || self.model_seen.2.is_some_and(|owed| now.duration_since(owed) >= MODEL_PASS_MAX_WAIT);
        if !self.config.retro.enabled
            || self.config.policy.model != crate::config::ModelMode::File
            || version == self.model_version
            || !settled
            || now < self.model_pass_after
            || !self.learner.ready()
        {
            return;
        }
        self.model_seen.2 = None;
        self.model_version = version;
        let started = std::time::Instant::now();
        let mut after = 0;
        let mut sure = Vec::new();
        loop {
            let page = match self.state.call(move |c| crate::recent::with_features(c, after, 2000)).await {
                Ok(page) => page,
                Err(e) => {
                    self.events.emit(events::STATE_ERROR, None, e.to_string());
                    return;
                }
            };
            let Some(last) = page.last().map(|(row, _)| row.id) else { break };
            after = last;
            let learner = self.learner.clone();
            let found = tokio::task::spawn_blocking(move || {
                page.into_iter()
                    .filter(|(_, bytes)| {
                        starling_model::Features::from_bytes(bytes).is_some_and(|f| learner.opinion(&f).sure())
                    })
                    .map(|(row, _)| row)
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            sure.extend(found);
        }
        self.model_pass_after = now + (started.elapsed() * 10).max(Duration::from_secs(2));
        if !sure.is_empty() {
            tracing::debug!(messages = sure.len(), "the model is sure of delivered mail");
            self.dispatch_retro(sure);
        }
    }

    /// Mail left in place long enough by users who report spam is asked
    /// about (still there? read?) and learnt as ham.
    async fn settle_pass(&mut self) {
        if self.config.policy.model == crate::config::ModelMode::Off {
            return;
        }
        let before = jiff::Timestamp::now().as_second() - i64::from(self.config.model.ham_after_minutes) * 60;
        let rows = self
            .state
            .call(move |c| {
                let rows = crate::recent::unsettled(c, before, 2000)?;
                let reporting = crate::retro::reporting_mailboxes(c)?;
                // Asked once: a task that cannot answer now does not hold
                // the others up.
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                crate::recent::set_status(c, &ids, crate::recent::SETTLED)?;
                Ok(rows.into_iter().filter(|r| reporting.contains(&r.mailbox)).collect::<Vec<_>>())
            })
            .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => return self.events.emit(events::STATE_ERROR, None, e.to_string()),
        };
        let read = self.config.model.ham_requires_read;
        for (mailbox, rows) in crate::retro::by_mailbox(rows) {
            if let Some(running) = self.running.get(&mailbox) {
                let _ = running.work.try_send(Work::Settle { rows, read });
            }
        }
    }

    /// Runs `starling model retrain` requests.
    async fn model_requests(&mut self) {
        let Ok(pending) = self.state.call(|c| crate::learning::pending_requests(c)).await else { return };
        for id in pending {
            let detail = match self.learner.rebuild().await {
                Ok(()) => {
                    let status = self.learner.status();
                    format!("rebuilt from {} spam and {} ham examples", status.spam, status.ham)
                }
                Err(e) => format!("failed: {e}"),
            };
            self.events.emit(events::MODEL_REBUILT, None, format!("Asked for: {detail}."));
            self.state.send(move |c| crate::learning::request_done(c, id, &detail));
        }
    }

    /// Forgets deliveries older than `rescan.max_age_hours`, and beyond
    /// `retro.max_messages`.
    async fn forget_old_deliveries(&mut self) {
        let before = jiff::Timestamp::now().as_second() - i64::from(self.config.rescan.max_age_hours) * 3600;
        let keep = self.config.retro.max_messages;
        if let Ok(lowest) = self.state.call(move |c| crate::recent::expire(c, before, keep)).await {
            self.processor.recent.forget_below(lowest);
        }
    }

    /// When the next daily rescan is due.
    fn next_rescan(&self) -> Option<tokio::time::Instant> {
        let schedule = self.schedule.as_ref()?;
        let now = jiff::Timestamp::now();
        let next = schedule.next_after(now);
        let wait = Duration::try_from(next.duration_since(now)).unwrap_or_default();
        tracing::debug!(%next, "next daily rescan");
        Some(tokio::time::Instant::now() + wait)
    }

    /// Starts the daily rescan of every watched mailbox.
    async fn daily_rescan(&mut self) {
        let since = jiff::Timestamp::now().as_second() - i64::from(self.config.rescan.max_age_hours) * 3600;
        let mailboxes: Vec<String> = self.running.keys().cloned().collect();
        let requested = self
            .state
            .call(move |c| {
                mailboxes.iter().map(|m| state::rescan_request(c, m, since, "schedule")).collect::<Result<Vec<_>, _>>()
            })
            .await;
        match requested {
            Ok(_) => self.dispatch_rescans().await,
            Err(e) => self.events.emit(events::STATE_ERROR, None, e.to_string()),
        }
    }

    /// Rescans a stop interrupted cannot finish: they failed.
    async fn abandon_stale_rescans(&self) {
        let _ = self
            .state
            .call(|c| {
                for status in [RescanStatus::Queued, RescanStatus::Running] {
                    for row in state::rescans_with_status(c, status)? {
                        state::rescan_update(
                            c,
                            row.id,
                            RescanStatus::Failed,
                            (row.total, row.checked, row.filed),
                            "interrupted: the agent stopped",
                        )?;
                    }
                }
                Ok(())
            })
            .await;
    }

    /// Hands rescans asked for to their mailbox tasks.
    async fn dispatch_rescans(&mut self) {
        let Ok(requested) = self.state.call(|c| state::rescans_with_status(c, RescanStatus::Requested)).await else {
            return;
        };
        for row in requested {
            let (id, mailbox) = (row.id, row.mailbox.clone());
            let status = match self.running.get(&row.mailbox) {
                None => Some((RescanStatus::Failed, "the mailbox is not watched (unknown, disabled, or not listed)")),
                Some(running) => match running.work.try_send(Work::Rescan { id, since: row.since }) {
                    Ok(()) => Some((RescanStatus::Queued, "")),
                    // Busy: handed over at the next look.
                    Err(mpsc::error::TrySendError::Full(_)) => None,
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        Some((RescanStatus::Failed, "the mailbox's task stopped"))
                    }
                },
            };
            let Some((status, detail)) = status else { continue };
            if status == RescanStatus::Failed {
                self.events.emit(events::RESCAN_FAILED, Some(&mailbox), detail);
            }
            let _ = self.state.call(move |c| state::rescan_update(c, id, status, (0, 0, 0), detail)).await;
        }
    }

    /// Tells the live view how much work waits and how many tasks run.
    fn report_load(&self) {
        let queued = self
            .running
            .values()
            .chain(self.spam_running.values())
            .map(|r| (r.work.max_capacity() - r.work.capacity()) as u64)
            .sum();
        self.live.set_load(queued, (self.running.len() + self.spam_running.len()) as u64);
    }

    /// Applies changed settings (from the console or the CLI); true when
    /// something changed. Tasks whose policy changed are restarted by the
    /// next reconcile.
    async fn reload_settings(&mut self) -> bool {
        let stored = match self.state.call(|c| state::settings(c)).await {
            Ok(stored) => stored,
            Err(e) => {
                self.events.emit(events::STATE_ERROR, None, e.to_string());
                return false;
            }
        };
        let config = match crate::settings::effective(&self.base, &stored) {
            Ok(config) => config,
            Err(problems) => {
                self.events.emit(events::SETTINGS_REJECTED, None, problems.join("; "));
                return false;
            }
        };
        if config == self.config {
            return false;
        }
        let schedule = if config.rescan.enabled {
            match crate::schedule::Daily::parse(&config.rescan.time, &config.rescan.timezone) {
                Ok(schedule) => Some(schedule),
                Err(e) => {
                    self.events.emit(events::SETTINGS_REJECTED, None, e.to_string());
                    return false;
                }
            }
        } else {
            None
        };
        let changed: Vec<&str> = crate::settings::values(&config)
            .into_iter()
            .zip(crate::settings::values(&self.config))
            .filter(|((_, new), (_, old))| new != old)
            .map(|((key, _), _)| key)
            .collect();
        self.pipeline.set_rules(&config);
        if let Some(inline) = &self.inline {
            inline.configure(&config);
        }
        self.processor.feedback.set_enabled(config.feedback.enabled);
        self.processor.recent.set_enabled(config.retro.enabled);
        self.schedule = schedule;
        self.config = config;
        self.settings_changed = Some(changed.join(", "));
        true
    }

    async fn reload_whitelists(&self) {
        match self.state.call(|c| state::whitelist(c, None)).await {
            Ok(rows) => self.pipeline.set_whitelists(Whitelists::build(&self.config.whitelist.entries, &rows)),
            Err(e) => self.events.emit(events::STATE_ERROR, None, e.to_string()),
        }
    }

    /// Reads the user source; false when it failed.
    async fn sync_users(&mut self) -> bool {
        match users::list(&self.config).await {
            Ok((mut names, source)) => {
                // An account configured as a shared mailbox is watched as
                // that, with its own action, not also as a user's INBOX.
                let shared = &self.config.shared;
                names.retain(|n| !shared.iter().any(|s| s.account == *n && s.folder.eq_ignore_ascii_case("INBOX")));
                let auto_enable = self.config.users.auto_enable;
                let result =
                    self.state.call(move |c| state::sync_mailboxes(c, &names, "user", source, auto_enable)).await;
                match result {
                    Ok((added, gone)) => {
                        for name in added {
                            let enabled = if auto_enable { "filtered" } else { "not filtered until enabled" };
                            self.events.emit(events::MAILBOX_ADDED, Some(&name), format!("It is {enabled}."));
                        }
                        for name in gone {
                            self.events.emit(events::MAILBOX_GONE, Some(&name), "");
                        }
                        true
                    }
                    Err(e) => {
                        self.events.emit(events::STATE_ERROR, None, e.to_string());
                        false
                    }
                }
            }
            Err(e) => {
                let root_missing = self.config.mail_store == MailStoreKind::Maildir
                    && self.config.users.source == crate::config::UserSource::Maildir
                    && !self.config.maildir.root.is_dir();
                if root_missing {
                    self.events.emit(events::MAILDIR_ROOT_MISSING, None, e);
                } else {
                    self.events.emit(events::USER_SOURCE_FAILED, None, e);
                }
                false
            }
        }
    }

    /// The folders that should be watched now, and the mailboxes disabled;
    /// `None` when the state cannot be read (then nothing changes).
    async fn wanted(&mut self) -> Option<(Vec<Wanted>, HashSet<String>)> {
        let rows = match self.state.call(|c| state::mailboxes(c)).await {
            Ok(rows) => rows,
            Err(e) => {
                self.events.emit(events::STATE_ERROR, None, e.to_string());
                return None;
            }
        };
        let standing = self.activation.standing();
        let (rows, beyond) = crate::activation::allowed(&standing, rows);
        self.limit_changed(&standing, beyond).await;
        if let Some(inline) = &self.inline {
            inline.set_mailboxes(&rows);
        }
        if !self.watch_mailboxes {
            return Some((Vec::new(), HashSet::new()));
        }
        let disabled = rows.iter().filter(|row| !row.enabled).map(|row| row.name.clone()).collect();
        let user_policy = pipeline::user_policy(&self.config);
        let global = self.config.feedback.enabled;
        let mut wanted: Vec<Wanted> = rows
            .into_iter()
            .filter(|row| row.enabled && row.present && row.kind == "user")
            .map(|row| Wanted {
                name: row.name.clone(),
                account: row.name,
                folder: "INBOX".to_owned(),
                policy: MailboxPolicy { model: row.model, ..user_policy.clone() },
                feedback: global && row.feedback,
            })
            .collect();
        for shared in &self.config.shared {
            wanted.push(Wanted {
                name: shared_name(shared),
                account: shared.account.clone(),
                folder: shared.folder.clone(),
                policy: pipeline::shared_policy(&self.config, shared),
                feedback: false,
            });
        }
        Some((wanted, disabled))
    }

    /// Tells of the mailboxes a plan's limit leaves out, and drops the
    /// queued re-checks when filtering stops.
    async fn limit_changed(&mut self, standing: &crate::activation::Standing, beyond: Vec<String>) {
        if beyond != self.over_limit {
            if !beyond.is_empty() {
                let detail = format!(
                    "{} mailbox(es) beyond the plan's {}: {}.",
                    beyond.len(),
                    standing.max_mailboxes,
                    beyond.iter().take(20).cloned().collect::<Vec<_>>().join(", ")
                );
                self.events.reset(events::MAILBOX_LIMIT, None);
                self.events.emit(events::MAILBOX_LIMIT, None, detail);
            }
            self.live.set_over_limit(beyond.clone());
            self.over_limit = beyond;
        }
        if self.was_filtering
            && !standing.filtering
            && let Err(e) = self.state.call(|c| state::recheck_clear(c)).await
        {
            self.events.emit(events::STATE_ERROR, None, e.to_string());
        }
        self.was_filtering = standing.filtering;
    }

    /// Stops a task (and its spam-folder task, and its watches).
    async fn stop_task(&mut self, name: &str) {
        self.live.forget(name);
        for running in [self.running.remove(name), self.spam_running.remove(name)].into_iter().flatten() {
            let _ = running.work.send(Work::Stop).await;
            for dir in running.watched {
                if let Some(watcher) = &mut self.watcher {
                    let _ = watcher.unwatch(&dir);
                }
                self.watch_routes.remove(&dir);
            }
        }
    }

    /// Starts and stops tasks to match the wanted folders.
    async fn reconcile(&mut self) {
        let Some((wanted, disabled)) = self.wanted().await else { return };
        let names: HashMap<&str, (bool, &MailboxPolicy)> =
            wanted.iter().map(|w| (w.name.as_str(), (w.feedback, &w.policy))).collect();
        let mut stopping = Vec::new();
        for (name, running) in &mut self.running {
            match names.get(name.as_str()) {
                Some(&(feedback, policy)) if feedback == running.feedback && *policy == running.policy => {}
                // A new action, tag or switch: the running tasks take it
                // for their next messages, without reconnecting.
                Some(&(feedback, policy)) if feedback == running.feedback && same_watch(&running.policy, policy) => {
                    running.cell.set(policy.clone());
                    running.policy = policy.clone();
                    if let Some(spam) = self.spam_running.get_mut(name) {
                        spam.cell.set(policy.clone());
                        spam.policy = policy.clone();
                    }
                }
                _ => stopping.push(name.clone()),
            }
        }
        for name in stopping {
            self.stop_task(&name).await;
            if disabled.contains(&name) {
                self.events.emit(events::MAILBOX_DISABLED, Some(&name), "");
            }
        }
        for wanted in wanted {
            if self.running.get(&wanted.name).is_some_and(|r| !r.task.is_finished()) {
                if wanted.feedback && self.imap.is_some() && !self.spam_running.contains_key(&wanted.name) {
                    self.start_spam_task(&wanted);
                }
                continue;
            }
            self.stop_task(&wanted.name).await;
            let Wanted { name, account, folder, policy, feedback } = wanted;
            let spam_task = feedback.then(|| Wanted {
                name: name.clone(),
                account: account.clone(),
                folder: folder.clone(),
                policy: policy.clone(),
                feedback,
            });
            let kept = policy.clone();
            let cell = PolicyCell::new(policy);
            let context = MailboxContext { name: Arc::from(name.as_str()), enabled: true, policy: cell.clone() };
            let (work, receiver) = mpsc::channel(1024);
            let running = match (&self.imap, self.config.mail_store) {
                (Some(server), MailStoreKind::Imap) => {
                    let watcher = imap::Watcher {
                        server: server.clone(),
                        account,
                        folder,
                        role: imap::Role::Filter,
                        context,
                        processor: self.processor.clone(),
                        marker: self.marker.clone(),
                        first_scan_hours: self.config.scan.first_scan_hours,
                        work: receiver,
                        events: self.events.clone(),
                    };
                    let stop = self.stop.clone();
                    Running {
                        work,
                        task: tokio::spawn(watcher.run(stop)),
                        watched: Vec::new(),
                        feedback,
                        policy: kept,
                        cell,
                    }
                }
                _ => {
                    let maildir =
                        maildir::user_maildir(&self.config.maildir.root, &self.config.maildir.layout, &account);
                    let (watched, complete) = self.watch_maildir(&name, &maildir, &folder, feedback);
                    let worker = maildir::MaildirWorker {
                        maildir,
                        folder,
                        context,
                        processor: self.processor.clone(),
                        marker: self.marker.clone(),
                        events: self.events.clone(),
                        first_scan_hours: self.config.scan.first_scan_hours,
                        max_bytes: self.config.imap.max_message_bytes,
                        poll: if complete { Duration::from_secs(600) } else { Duration::from_secs(60) },
                        recent: maildir::Recent::default(),
                    };
                    let stop = self.stop.clone();
                    Running {
                        work,
                        task: tokio::spawn(worker.run(receiver, stop)),
                        watched,
                        feedback,
                        policy: kept,
                        cell,
                    }
                }
            };
            self.running.insert(name, running);
            if let Some(spam_task) = spam_task
                && self.imap.is_some()
            {
                self.start_spam_task(&spam_task);
            }
        }
        self.report_load();
    }

    /// Starts the spam-folder task of an IMAP mailbox.
    fn start_spam_task(&mut self, wanted: &Wanted) {
        let Some(server) = &self.imap else { return };
        let policy = &wanted.policy;
        let files_there = [policy.spam_action, policy.phish_action].contains(&ActionKind::SpamFolder);
        let (work, receiver) = mpsc::channel(16);
        let cell = PolicyCell::new(policy.clone());
        let watcher = imap::Watcher {
            server: server.clone(),
            account: wanted.account.clone(),
            folder: policy.spam_folder.clone(),
            role: imap::Role::Spam { name: policy.spam_folder.clone(), create: files_there },
            context: MailboxContext { name: Arc::from(wanted.name.as_str()), enabled: true, policy: cell.clone() },
            processor: self.processor.clone(),
            marker: self.marker.clone(),
            first_scan_hours: 0,
            work: receiver,
            events: self.events.clone(),
        };
        let task = tokio::spawn(watcher.run(self.stop.clone()));
        let running = Running { work, task, watched: Vec::new(), feedback: true, policy: wanted.policy.clone(), cell };
        self.spam_running.insert(wanted.name.clone(), running);
    }

    /// Watches a Maildir's filtered folder and, with feedback, its other
    /// folders (not Trash); returns the watched directories, and whether
    /// the filtered folder's watch is complete.
    fn watch_maildir(&mut self, mailbox: &str, maildir: &Path, folder: &str, feedback: bool) -> (Vec<PathBuf>, bool) {
        let mut watched = Vec::new();
        let dir = maildir::folder_dir(maildir, folder);
        let complete = self.watch(mailbox, folder, &dir, None, &mut watched);
        if feedback {
            let spam = self.config.policy.spam_folder.clone();
            let spam = if spam.is_empty() { "Spam".to_owned() } else { spam };
            let trash = self.config.policy.trash_folder.clone();
            let trash = if trash.is_empty() { "Trash".to_owned() } else { trash };
            let in_tree = |name: &str, root: &str| name == root || name.starts_with(&format!("{root}."));
            for other in maildir::folders(maildir) {
                if in_tree(&other, &trash) || other == folder {
                    continue;
                }
                let kind = if in_tree(&other, &spam) { RouteKind::Spam } else { RouteKind::Other };
                self.watch(mailbox, &other, &maildir::folder_dir(maildir, &other), Some(kind), &mut watched);
            }
        }
        (watched, complete)
    }

    /// Watches a Maildir folder's `new` and `cur`; false when it failed.
    fn watch(
        &mut self,
        mailbox: &str,
        folder: &str,
        dir: &Path,
        kind: Option<RouteKind>,
        watched: &mut Vec<PathBuf>,
    ) -> bool {
        let Some(watcher) = &mut self.watcher else { return false };
        let mut ok = true;
        for sub in ["new", "cur"] {
            let path = dir.join(sub);
            if !path.is_dir() {
                ok = false;
                continue;
            }
            match watcher.watch(&path, notify::RecursiveMode::NonRecursive) {
                Ok(()) => {
                    let kind = kind.unwrap_or(RouteKind::Filtered(sub == "new"));
                    let route = Route { mailbox: mailbox.to_owned(), folder: folder.to_owned(), kind };
                    self.watch_routes.insert(path.clone(), route);
                    watched.push(path);
                }
                Err(e) => {
                    ok = false;
                    self.events.emit(events::WATCH_FAILED, Some(mailbox), format!("{}: {e}", path.display()));
                }
            }
        }
        ok
    }

    /// Routes a file system notification to its mailbox task.
    async fn route(&mut self, event: notify::Result<notify::Event>) {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!("file system notification error: {e}");
                return;
            }
        };
        tracing::trace!(?event, "file system notification");
        if event.need_rescan() {
            self.events.emit(events::WATCH_OVERFLOW, None, "");
            let since = lost_since();
            for mailbox in self.running.keys() {
                self.needs_scan.entry(mailbox.clone()).or_insert(since);
            }
            self.send_pending_scans();
            return;
        }
        use notify::EventKind;
        use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
        let (arrived, from) = match event.kind {
            // A link (Postfix's delivery, a client's copy) or a new file; a
            // file written in place is complete when it is closed.
            EventKind::Create(CreateKind::File | CreateKind::Any) => (event.paths.last(), None),
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                if let Some(path) = event.paths.last()
                    && let (Some(dir), Some(file)) = (path.parent(), path.file_name().and_then(|f| f.to_str()))
                    && let Some(Route { mailbox, kind: RouteKind::Filtered(true), .. }) = self.watch_routes.get(dir)
                    && let Some(running) = self.running.get(mailbox)
                    && running.work.try_send(Work::Written(maildir::unique_of(file).to_owned())).is_err()
                {
                    self.needs_scan.entry(mailbox.clone()).or_insert_with(lost_since);
                }
                return;
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Any)) => (event.paths.last(), None),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => (event.paths.get(1), event.paths.first()),
            _ => (None, None),
        };
        let Some(path) = arrived else { return };
        let (Some(dir), Some(file)) = (path.parent(), path.file_name().and_then(|f| f.to_str())) else { return };
        let Some(route) = self.watch_routes.get(dir) else { return };
        if file.starts_with('.') {
            return;
        }
        // A rename within one folder is the server taking a message from
        // new/ to cur/, or changing its flags: nothing arrived.
        let within = from
            .and_then(|f| f.parent())
            .and_then(|d| self.watch_routes.get(d))
            .is_some_and(|r| r.mailbox == route.mailbox && r.folder == route.folder);
        let unique = maildir::unique_of(file).to_owned();
        let work = match route.kind {
            // Mail is delivered to new/; a file in cur/ without flags was
            // delivered there directly.
            RouteKind::Filtered(true) => Work::Arrived(unique),
            RouteKind::Filtered(false) if !file.contains(':') => Work::Arrived(unique),
            // A file with flags in cur/ from elsewhere came from another
            // folder (a user took it out of spam, perhaps): look at it even
            // if it was here before.
            RouteKind::Filtered(false) if !within => Work::Written(unique),
            RouteKind::Spam if !within => Work::Moved(route.folder.clone(), unique, Moved::IntoSpam),
            RouteKind::Other if !within => Work::Moved(route.folder.clone(), unique, Moved::OutOfSpam),
            _ => return,
        };
        let mailbox = route.mailbox.clone();
        let lost = matches!(work, Work::Arrived(_) | Work::Written(_));
        if let Some(running) = self.running.get(&mailbox)
            && running.work.try_send(work).is_err()
            && lost
        {
            self.needs_scan.entry(mailbox).or_insert_with(lost_since);
        }
    }

    /// Asks for the scans owed to mailboxes whose task was too busy.
    fn send_pending_scans(&mut self) {
        let running = &self.running;
        self.needs_scan.retain(|mailbox, since| {
            running.get(mailbox).is_some_and(|r| r.work.try_send(Work::CatchUp(*since)).is_err() && !r.work.is_closed())
        });
    }

    /// Hands queued messages to their mailbox tasks while the network is up.
    async fn drain_rechecks(&mut self) {
        // What a failing state database left in place joins the queue once
        // the database takes writes again.
        if !self.processor.unrecorded.is_empty() {
            let max = self.processor.recheck_queue_max;
            match self.processor.unrecorded.flush(&self.state, max).await {
                Ok(queued) => tracing::info!(queued, "messages a state-database failure left in place are queued"),
                Err(e) => tracing::debug!(error = %e, "the state database still refuses writes"),
            }
            self.processor.live.set_held(self.processor.unrecorded.len() as u64);
        }
        if self.network.health() != Health::Up {
            return;
        }
        let max_age = i64::from(self.config.network.recheck_max_age_hours) * 3600;
        let before = jiff::Timestamp::now().as_second() - max_age;
        let queued = self
            .state
            .call(move |c| {
                state::recheck_expire(c, before)?;
                state::recheck_mailboxes(c)
            })
            .await;
        let Ok(queued) = queued else { return };
        for (mailbox, _) in queued {
            let Some(running) = self.running.get(&mailbox) else { continue };
            let name = mailbox.clone();
            let Ok(locators) = self.state.call(move |c| state::recheck_take(c, &name, 256)).await else { continue };
            if !locators.is_empty() {
                let _ = running.work.try_send(Work::Recheck(locators));
            }
        }
    }

    async fn shutdown(&mut self) {
        self.stop.cancel();
        let tasks: Vec<_> = self.running.drain().chain(self.spam_running.drain()).map(|(_, r)| r.task).collect();
        let all = futures::future::join_all(tasks);
        if tokio::time::timeout(Duration::from_secs(10), all).await.is_err() {
            tracing::warn!("some mailbox tasks did not stop within 10 s");
        }
    }
}

/// Where to look again from when notifications were lost now: a minute
/// back, for delivery tools that write a file a little before renaming it
/// into `new/` (a rename keeps the file's time).
fn lost_since() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_nanos()).unwrap_or(i64::MAX) - 60_000_000_000
}

/// The task name of a shared mailbox.
pub fn shared_name(shared: &SharedMailbox) -> String {
    format!("shared/{}/{}", shared.account, shared.folder)
}
