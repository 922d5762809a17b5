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

mod passes;
mod stores;
mod tasks;
mod watch;

use stores::{ImapStore, MailStore, MaildirStore, TaskKit};

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
    let base = config;
    let config = effective_config(&base, &state, &events).await;
    let secret = load_or_create_secret(&config.state_dir.join(SECRET_FILE))?;
    let parts = Parts::assemble(&config, &options, state, events.clone(), &secret, &stop).await?;
    let retro_keys = parts.retro_keys.clone();
    let (mut supervisor, fs_receiver, retro_receiver) = Supervisor::new(base, config, parts, &options, secret, &stop)?;
    tokio::spawn(supervisor.activation.clone().run(
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

/// The configuration file's settings with the settings changed in the
/// console laid over them; stored settings that became invalid are ignored
/// (with an event) rather than stopping the agent.
async fn effective_config(base: &AgentConfig, state: &State, events: &Events) -> AgentConfig {
    match state.call(|c| state::settings(c)).await {
        Ok(stored) => match crate::settings::effective(base, &stored) {
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
    }
}

/// How to reach the network: its nodes, the organisation's credential (from
/// the options, else `network.credential_file`) and the CA to trust.
fn network_settings(config: &AgentConfig, credential: Option<&str>) -> anyhow::Result<network::Settings> {
    let credential = match credential {
        Some(credential) => credential.to_owned(),
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
    Ok(network::Settings {
        targets,
        credential: credential.trim().to_owned(),
        batch_size: config.network.batch_size,
        retry: Duration::from_secs(config.network.retry_seconds),
    })
}

/// What the supervisor drives, made once at start.
struct Parts {
    live: Arc<crate::live::Live>,
    state: State,
    events: Events,
    network: Network,
    pipeline: Arc<Pipeline>,
    processor: Arc<Processor>,
    feedback: Feedback,
    marker: Marker,
    imap: Option<Arc<imap::Server>>,
    learner: Arc<Learner>,
    inline: Option<Arc<crate::inline::Inline>>,
    activation: Arc<crate::activation::Activation>,
    /// Keys that became spam (users' reports, the network's changes).
    retro_keys: mpsc::UnboundedSender<Vec<u64>>,
    retro_receiver: mpsc::UnboundedReceiver<Vec<u64>>,
}

impl Parts {
    /// Connects to the network and the mail store, opens the plan, the
    /// model and the retro index, and starts the milter when it runs.
    async fn assemble(
        config: &AgentConfig,
        options: &Options,
        state: State,
        events: Events,
        secret: &[u8; 32],
        stop: &CancellationToken,
    ) -> anyhow::Result<Parts> {
        let live = options.live.clone();
        let marker = Marker::new(secret);
        let settings = network_settings(config, options.credential.as_deref())?;
        let imap = match config.mail_store {
            MailStoreKind::Imap => Some(Arc::new(imap::Server::new(
                config.imap.clone(),
                &config.in_state_dir(&config.imap.password_file),
            )?)),
            MailStoreKind::Maildir => None,
        };
        let network = Network::start(settings, events.clone(), state.clone()).await?;
        // At once, so that what the network says (its Hello) is in the live
        // view by the time its events are.
        live.set_network(network.clone());
        let activation =
            crate::activation::Activation::open(&config.activation, &config.notify, state.clone(), events.clone())
                .await?;
        live.set_activation(activation.clone());
        let pipeline = Arc::new(Pipeline::new(config, network.clone(), events.clone(), marker.clone()));
        let feedback = Feedback::new(state.clone(), events.clone(), config.feedback.enabled);
        let learner = Arc::new(Learner::open(&config.model, &config.state_dir, state.clone(), events.clone()).await?);
        pipeline.set_learner(learner.clone());
        let recent = Arc::new(crate::retro::Index::new(config));
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
            learning: config.model.clone(),
            existing_permits: tokio::sync::Semaphore::new(crate::process::EXISTING_AT_ONCE),
        });
        let mut parts = Parts {
            live,
            state,
            events,
            network,
            pipeline,
            processor,
            feedback,
            marker,
            imap,
            learner,
            inline: None,
            activation,
            retro_keys,
            retro_receiver,
        };
        if config.milter.enabled || options.milter_only {
            parts.inline = Some(parts.start_inline(config, options.milter_only, stop).await?);
        }
        parts.announce(config, recent);
        Ok(parts)
    }

    /// The in-line filter and its milter. A milter that cannot listen is an
    /// event (and an error under `starling milter`, which does nothing else).
    async fn start_inline(
        &self,
        config: &AgentConfig,
        milter_only: bool,
        stop: &CancellationToken,
    ) -> anyhow::Result<Arc<crate::inline::Inline>> {
        let inline = Arc::new(crate::inline::Inline::new(
            config,
            self.pipeline.clone(),
            self.state.clone(),
            self.events.clone(),
            self.live.clone(),
        ));
        inline.load_mailboxes(&self.activation.standing()).await?;
        match start_milter(config, inline.clone(), stop.child_token()).await {
            Ok(address) => {
                self.live.set_milter(address.clone());
                self.live.set_milter_mailboxes(inline.mailbox_count());
                self.events.emit(events::MILTER_STARTED, None, format!("Listening on {address}."));
            }
            Err(e) => {
                self.events.emit(events::MILTER_FAILED, None, format!("{e:#}"));
                if milter_only {
                    return Err(e);
                }
            }
        }
        Ok(inline)
    }

    /// Tells the live view what runs, and logs the start.
    fn announce(&self, config: &AgentConfig, recent: Arc<crate::retro::Index>) {
        self.live.set_learning(self.learner.clone(), recent, config.policy.model);
        let (store, place) = match config.mail_store {
            MailStoreKind::Maildir => ("Maildir", format!("Maildir {}", config.maildir.root.display())),
            MailStoreKind::Imap => ("IMAP", format!("IMAP {}:{}", config.imap.host, config.imap.port())),
        };
        self.live.set_mail_store(place);
        self.events.emit(
            events::AGENT_STARTED,
            None,
            format!("Version {}, {store} mail store, network {}.", env!("CARGO_PKG_VERSION"), config.network.url),
        );
    }
}

type FsReceiver = mpsc::Receiver<notify::Result<notify::Event>>;

impl Supervisor {
    /// The supervisor over `parts`, with users' reports being sent; the
    /// receivers of Maildir notifications and of retro keys.
    fn new(
        base: AgentConfig,
        mut config: AgentConfig,
        parts: Parts,
        options: &Options,
        secret: [u8; 32],
        stop: &CancellationToken,
    ) -> anyhow::Result<(Supervisor, FsReceiver, mpsc::UnboundedReceiver<Vec<u64>>)> {
        let supervisor_stop = stop.child_token();
        parts.feedback.start_sender(
            parts.network.clone(),
            secret,
            Duration::from_secs(config.network.retry_seconds),
            supervisor_stop.clone(),
        );
        let (fs_events, fs_receiver) = mpsc::channel(4096);
        // Notifications name absolute paths.
        config.maildir.root = std::path::absolute(&config.maildir.root)?;
        let schedule = config
            .rescan
            .enabled
            .then(|| crate::schedule::Daily::parse(&config.rescan.time, &config.rescan.timezone))
            .transpose()?;
        let was_filtering = parts.activation.standing().filtering;
        let store: Box<dyn MailStore> = match parts.imap {
            Some(server) => Box::new(ImapStore { server, spam_watches: HashMap::new() }),
            None => Box::new(MaildirStore::new(&config, fs_events, parts.events.clone())),
        };
        let supervisor = Supervisor {
            base,
            config,
            live: parts.live,
            state: parts.state,
            events: parts.events,
            network: parts.network,
            pipeline: parts.pipeline,
            processor: parts.processor,
            marker: parts.marker,
            store,
            running: HashMap::new(),
            spam_running: HashMap::new(),
            needs_scan: HashMap::new(),
            schedule,
            settings_changed: None,
            stop: supervisor_stop,
            learner: parts.learner,
            model_version: u64::MAX,
            model_pass_after: tokio::time::Instant::now(),
            model_seen: (u64::MAX, tokio::time::Instant::now(), None),
            inline: parts.inline,
            watch_mailboxes: !options.milter_only,
            activation: parts.activation,
            over_limit: Vec::new(),
            was_filtering,
        };
        Ok((supervisor, fs_receiver, parts.retro_receiver))
    }
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
    /// The mail store the tasks work on (IMAP or Maildir).
    store: Box<dyn MailStore>,
    running: HashMap<String, Running>,
    /// The task of each mailbox that sees users' moves, when the store
    /// has one of its own (IMAP: a session on the spam folder).
    spam_running: HashMap<String, Running>,
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
        self.store.start_watching()?;
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
                    users_due = tokio::time::Instant::now() + self.users_round().await;
                }
                _ = settings_poll.tick() => {
                    self.send_pending_scans();
                    self.report_load();
                    if self.settings_round(&mut data_version).await {
                        rescan_due = self.next_rescan();
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
                Some(mut keys) = retro_keys.recv() => {
                    while let Ok(more) = retro_keys.try_recv() {
                        keys.extend(more);
                    }
                    self.retro_keys(keys).await;
                }
                _ = retro_tick.tick() => {
                    ticks += 1;
                    self.retro_round(ticks).await;
                }
            }
        }
    }

    /// Reads the user source and brings the tasks in step; how long until
    /// the next read (a minute after a failure).
    async fn users_round(&mut self) -> Duration {
        let ok = self.sync_users().await;
        self.reconcile().await;
        self.dispatch_rescans().await;
        let minutes = if ok { self.config.users.refresh_minutes } else { 1 };
        Duration::from_secs(minutes * 60)
    }

    /// When the CLI or console changed the database (`data_version`
    /// moved), reloads the plan, settings and whitelists and brings the
    /// tasks in step. True when the settings changed (the rescan time may
    /// have).
    async fn settings_round(&mut self, data_version: &mut i64) -> bool {
        let Ok(version) = self.state.call(|c| state::data_version(c)).await else { return false };
        if version == *data_version {
            return false;
        }
        *data_version = version;
        self.activation.reload().await;
        let changed = self.reload_settings().await;
        self.reload_whitelists().await;
        self.reconcile().await;
        if let Some(changed) = self.settings_changed.take() {
            self.events.emit(events::SETTINGS_CHANGED, None, changed);
        }
        self.dispatch_rescans().await;
        changed
    }

    /// The retro tick: `starling model retrain` requests and the model's
    /// retro pass every tick, implicit ham every fifth, a model snapshot
    /// every thirtieth, forgetting old deliveries every three hundredth.
    async fn retro_round(&mut self, ticks: u64) {
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
