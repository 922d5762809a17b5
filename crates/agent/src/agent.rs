//! The running agent: state, events, the network, the pipeline, and one
//! task per watched folder, kept in step with the list of mailboxes.
//!
//! A supervisor loop reads the user source every `users.refresh_minutes`,
//! notices changes made by the CLI or console (SQLite's `data_version`),
//! starts and stops mailbox tasks to match the enabled mailboxes, routes
//! Maildir notifications to them, and drains the re-check queue whenever
//! the network is reachable.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{AgentConfig, MailStoreKind, SharedMailbox};
use crate::events::{self, Events};
use crate::network::{self, Health, Network};
use crate::pipeline::{self, MailboxContext, Pipeline, Whitelists};
use crate::policy::MailboxPolicy;
use crate::process::{Item, Processor};
use crate::state::{self, Cursor, State};
use crate::tagging::Marker;
use crate::{imap, maildir, users};

/// The agent's own secret (tag marks, reporter pseudonyms), in `state_dir`.
pub const SECRET_FILE: &str = "agent.secret";

/// A command for a mailbox task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// A message arrived (Maildir: its unique name).
    Arrived(String),
    /// A message file written in place was closed (Maildir): handle it
    /// again even if it was seen while being written.
    Written(String),
    /// Look for messages the notifications may have missed.
    Scan,
    /// Look again at everything delivered since this time (nanoseconds
    /// since the epoch): notifications were lost from about then on.
    Rescan(i64),
    /// Check queued messages again: (folder, locator).
    Recheck(Vec<(String, String)>),
    /// Stop.
    Stop,
}

/// Options beyond the configuration file.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The organisation's credential, instead of `network.credential_file`
    /// (`starling serve` passes its embedded network's).
    pub credential: Option<String>,
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
    /// Maildir: the watched folder directory.
    watched: Option<PathBuf>,
}

/// Runs the agent until `stop` is cancelled.
pub async fn run(config: AgentConfig, options: Options, stop: CancellationToken) -> anyhow::Result<()> {
    let problems = config.problems();
    if !problems.is_empty() {
        anyhow::bail!("invalid configuration:\n  {}", problems.join("\n  "));
    }
    let state = State::open(&config.state_dir)?;
    let events = Events::new(Some(Box::new(state.clone())));
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
    let mut target = starling_proto::client::Target::new(&config.network.url);
    target.timeout = Duration::from_millis(config.network.timeout_ms);
    if let Some(ca) = &config.network.ca_file {
        target.ca_pem = Some(std::fs::read(ca).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", ca.display()))?);
    }
    let settings = network::Settings {
        target,
        credential: credential.trim().to_owned(),
        batch_size: config.network.batch_size,
        batch_wait: Duration::from_millis(config.network.batch_wait_ms),
        retry: Duration::from_secs(config.network.retry_seconds),
    };
    let imap_server = match config.mail_store {
        MailStoreKind::Imap => {
            Some(Arc::new(imap::Server::new(config.imap.clone(), &config.in_state_dir(&config.imap.password_file))?))
        }
        MailStoreKind::Maildir => None,
    };
    let network = Network::start(settings, events.clone(), state.clone()).await?;
    let pipeline = Arc::new(Pipeline::new(&config, network.clone(), events.clone(), marker.clone()));
    let processor = Arc::new(Processor {
        pipeline: pipeline.clone(),
        state: state.clone(),
        events: events.clone(),
        recheck_queue_max: config.network.recheck_queue_max,
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
    let (fs_events, fs_receiver) = mpsc::channel(4096);
    let mut config = config;
    // Notifications name absolute paths.
    config.maildir.root = std::path::absolute(&config.maildir.root)?;
    let mut supervisor = Supervisor {
        config,
        state,
        events: events.clone(),
        network,
        pipeline,
        processor,
        marker,
        imap: imap_server,
        running: HashMap::new(),
        watcher: None,
        watch_routes: HashMap::new(),
        needs_scan: HashMap::new(),
        fs_events,
        stop: stop.child_token(),
    };
    let result = supervisor.run(fs_receiver, &stop).await;
    supervisor.shutdown().await;
    events.emit(events::AGENT_STOPPED, None, "");
    // Let the state thread store the last events.
    let _ = supervisor.state.call(|_| Ok(())).await;
    result
}

struct Supervisor {
    config: AgentConfig,
    state: State,
    events: Events,
    network: Network,
    pipeline: Arc<Pipeline>,
    processor: Arc<Processor>,
    marker: Marker,
    imap: Option<Arc<imap::Server>>,
    running: HashMap<String, Running>,
    watcher: Option<notify::RecommendedWatcher>,
    /// Watched `new`/`cur` directory → (mailbox, kind of directory).
    watch_routes: HashMap<PathBuf, (String, bool)>,
    fs_events: mpsc::Sender<notify::Result<notify::Event>>,
    /// Mailboxes whose notifications were lost (their task had no room, or
    /// the kernel's queue overflowed), with the time from which to look
    /// again: they get a rescan as soon as there is room.
    needs_scan: HashMap<String, i64>,
    stop: CancellationToken,
}

impl Supervisor {
    async fn run(
        &mut self,
        mut fs_receiver: mpsc::Receiver<notify::Result<notify::Event>>,
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
        let mut users_due = tokio::time::Instant::now();
        let mut settings_poll = tokio::time::interval(Duration::from_secs(2));
        let mut recheck_poll = tokio::time::interval(Duration::from_secs(self.config.network.retry_seconds.max(5)));
        let mut health = self.network.health_changes();
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep_until(users_due) => {
                    let ok = self.sync_users().await;
                    self.reconcile().await;
                    let minutes = if ok { self.config.users.refresh_minutes } else { 1 };
                    users_due = tokio::time::Instant::now() + Duration::from_secs(minutes * 60);
                }
                _ = settings_poll.tick() => {
                    self.send_pending_scans();
                    if let Ok(version) = self.state.call(|c| state::data_version(c)).await
                        && version != data_version
                    {
                        data_version = version;
                        self.reload_whitelists().await;
                        self.reconcile().await;
                    }
                }
                _ = recheck_poll.tick() => self.drain_rechecks().await,
                changed = health.changed() => {
                    if changed.is_ok() && *health.borrow_and_update() == Health::Up {
                        self.drain_rechecks().await;
                    }
                }
                Some(event) = fs_receiver.recv() => self.route(event).await,
            }
        }
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

    /// The folders that should be watched now: (task name, account,
    /// folder, policy).
    async fn wanted(&self) -> Vec<(String, String, String, MailboxPolicy)> {
        let rows = match self.state.call(|c| state::mailboxes(c)).await {
            Ok(rows) => rows,
            Err(e) => {
                self.events.emit(events::STATE_ERROR, None, e.to_string());
                return Vec::new();
            }
        };
        let user_policy = pipeline::user_policy(&self.config);
        let mut wanted: Vec<_> = rows
            .into_iter()
            .filter(|row| row.enabled && row.present && row.kind == "user")
            .map(|row| (row.name.clone(), row.name, "INBOX".to_owned(), user_policy.clone()))
            .collect();
        for shared in &self.config.shared {
            wanted.push((
                shared_name(shared),
                shared.account.clone(),
                shared.folder.clone(),
                pipeline::shared_policy(&self.config, shared),
            ));
        }
        wanted
    }

    /// Starts and stops tasks to match the wanted folders.
    async fn reconcile(&mut self) {
        let wanted = self.wanted().await;
        let names: HashSet<&str> = wanted.iter().map(|w| w.0.as_str()).collect();
        let stopping: Vec<String> = self.running.keys().filter(|n| !names.contains(n.as_str())).cloned().collect();
        for name in stopping {
            if let Some(running) = self.running.remove(&name) {
                let _ = running.work.send(Work::Stop).await;
                if let (Some(dir), Some(watcher)) = (&running.watched, &mut self.watcher) {
                    for sub in ["new", "cur"] {
                        let _ = watcher.unwatch(&dir.join(sub));
                        self.watch_routes.remove(&dir.join(sub));
                    }
                }
            }
        }
        for (name, account, folder, policy) in wanted {
            if self.running.get(&name).is_some_and(|r| !r.task.is_finished()) {
                continue;
            }
            let context = MailboxContext { name: Arc::from(name.as_str()), enabled: true, policy: Arc::new(policy) };
            let (work, receiver) = mpsc::channel(1024);
            let running = match (&self.imap, self.config.mail_store) {
                (Some(server), MailStoreKind::Imap) => {
                    let watcher = imap::Watcher {
                        server: server.clone(),
                        account,
                        folder,
                        context,
                        processor: self.processor.clone(),
                        marker: self.marker.clone(),
                        first_scan_hours: self.config.scan.first_scan_hours,
                        work: receiver,
                        events: self.events.clone(),
                    };
                    let stop = self.stop.clone();
                    Running { work, task: tokio::spawn(watcher.run(stop)), watched: None }
                }
                _ => {
                    let maildir =
                        maildir::user_maildir(&self.config.maildir.root, &self.config.maildir.layout, &account);
                    let dir = maildir::folder_dir(&maildir, &folder);
                    let watched = self.watch(&name, &dir);
                    let worker = MaildirWorker {
                        maildir,
                        folder,
                        context,
                        processor: self.processor.clone(),
                        marker: self.marker.clone(),
                        events: self.events.clone(),
                        first_scan_hours: self.config.scan.first_scan_hours,
                        max_bytes: self.config.imap.max_message_bytes,
                        poll: if watched { Duration::from_secs(600) } else { Duration::from_secs(60) },
                        recent: Recent::default(),
                    };
                    let stop = self.stop.clone();
                    Running { work, task: tokio::spawn(worker.run(receiver, stop)), watched: Some(dir) }
                }
            };
            self.running.insert(name, running);
        }
    }

    /// Watches a Maildir folder's `new` and `cur`; false when it failed.
    fn watch(&mut self, mailbox: &str, dir: &Path) -> bool {
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
                    self.watch_routes.insert(path, (mailbox.to_owned(), sub == "new"));
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
        let arrived = match event.kind {
            // A link (Postfix's delivery) or a new file; a file written in
            // place is complete when it is closed.
            EventKind::Create(CreateKind::File | CreateKind::Any) => event.paths.last(),
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                if let Some(path) = event.paths.last()
                    && let (Some(dir), Some(file)) = (path.parent(), path.file_name().and_then(|f| f.to_str()))
                    && let Some((mailbox, true)) = self.watch_routes.get(dir)
                    && let Some(running) = self.running.get(mailbox)
                    && running.work.try_send(Work::Written(maildir::unique_of(file).to_owned())).is_err()
                {
                    self.needs_scan.entry(mailbox.clone()).or_insert_with(lost_since);
                }
                return;
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Any)) => event.paths.last(),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => event.paths.get(1),
            _ => None,
        };
        let Some(path) = arrived else { return };
        let (Some(dir), Some(file)) = (path.parent(), path.file_name().and_then(|f| f.to_str())) else { return };
        let Some((mailbox, is_new)) = self.watch_routes.get(dir) else { return };
        // Mail is delivered to new/; a file in cur/ without flags was
        // delivered there directly. Files moved from new/ to cur/ by the
        // server, or by a client from another folder, carry flags.
        if (*is_new || !file.contains(':'))
            && !file.starts_with('.')
            && let Some(running) = self.running.get(mailbox)
            && running.work.try_send(Work::Arrived(maildir::unique_of(file).to_owned())).is_err()
        {
            self.needs_scan.entry(mailbox.clone()).or_insert_with(lost_since);
        }
    }

    /// Asks for the scans owed to mailboxes whose task was too busy.
    fn send_pending_scans(&mut self) {
        let running = &self.running;
        self.needs_scan.retain(|mailbox, since| {
            running.get(mailbox).is_some_and(|r| r.work.try_send(Work::Rescan(*since)).is_err() && !r.work.is_closed())
        });
    }

    /// Hands queued messages to their mailbox tasks while the network is up.
    async fn drain_rechecks(&mut self) {
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
        let tasks: Vec<_> = self.running.drain().map(|(_, r)| r.task).collect();
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

/// The unique names handled lately, to ignore repeated notifications.
#[derive(Default)]
struct Recent {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl Recent {
    const SIZE: usize = 4096;

    /// Forgets a name (its message was not handled after all).
    fn remove(&mut self, name: &str) {
        if self.set.remove(name) {
            self.order.retain(|n| n != name);
        }
    }

    fn insert(&mut self, name: String) -> bool {
        if self.set.contains(&name) {
            return false;
        }
        if self.order.len() == Self::SIZE
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(name.clone());
        self.set.insert(name);
        true
    }
}

/// The task of one Maildir folder.
struct MaildirWorker {
    maildir: PathBuf,
    folder: String,
    context: MailboxContext,
    processor: Arc<Processor>,
    marker: Marker,
    events: Events,
    first_scan_hours: u32,
    max_bytes: u64,
    poll: Duration,
    recent: Recent,
}

impl MaildirWorker {
    async fn run(mut self, mut work: mpsc::Receiver<Work>, stop: CancellationToken) {
        let name = self.context.name.to_string();
        let state = self.processor.state.clone();
        if let Err(e) = maildir::recover(&state, &self.events, &name, &self.maildir).await {
            self.events.emit(events::STATE_ERROR, Some(&name), e.to_string());
        }
        let dir = maildir::folder_dir(&self.maildir, &self.folder);
        let (key_name, key_folder) = (name.clone(), self.folder.clone());
        let cursor = state.call(move |c| state::cursor(c, &key_name, &key_folder)).await.ok().flatten();
        let mut position = match cursor {
            Some(cursor) => cursor.position,
            None => {
                let hours = i64::from(self.first_scan_hours);
                let now = jiff::Timestamp::now().as_nanosecond() as i64;
                now - hours * 3_600_000_000_000
            }
        };
        position = self.scan(&dir, position).await;
        let mut poll = tokio::time::interval(self.poll);
        poll.tick().await;
        let mut later: Option<Work> = None;
        loop {
            let next = if let Some(next) = later.take() {
                next
            } else {
                tokio::select! {
                () = stop.cancelled() => return,
                _ = poll.tick() => Work::Scan,
                next = work.recv() => match next {
                    None => return,
                    Some(next) => next,
                },
                }
            };
            match next {
                Work::Stop => return,
                Work::Written(name) => {
                    self.recent.remove(&name);
                    later = Some(Work::Arrived(name));
                }
                Work::Scan => position = self.scan(&dir, position).await,
                // Messages handled since then moved the position past the
                // ones whose notifications were lost: go back.
                Work::Rescan(since) => position = self.scan(&dir, position.min(since)).await,
                Work::Arrived(first) => {
                    let mut names = vec![first];
                    while names.len() < 256 {
                        match work.try_recv() {
                            Ok(Work::Arrived(more)) => names.push(more),
                            Ok(Work::Stop) => return,
                            Ok(other) => {
                                later = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let names: Vec<String> = names.into_iter().filter(|n| self.recent.insert(n.clone())).collect();
                    if let Some(newest) = self.handle(&dir, names, false).await {
                        position = position.max(newest);
                        self.save_cursor(position);
                    }
                }
                Work::Recheck(locators) => {
                    let names: Vec<String> =
                        locators.into_iter().filter(|(f, _)| *f == self.folder).map(|(_, l)| l).collect();
                    self.handle(&dir, names, true).await;
                }
            }
        }
    }

    /// Handles what arrived after `position`; returns the new position.
    async fn scan(&mut self, dir: &Path, position: i64) -> i64 {
        let dir_owned = dir.to_owned();
        let listed = tokio::task::spawn_blocking(move || maildir::list_since(&dir_owned, position)).await;
        let listed = match listed {
            Ok(Ok(listed)) => listed,
            Ok(Err(e)) => {
                self.events.emit(
                    events::MESSAGE_UNREADABLE,
                    Some(&self.context.name),
                    format!("{}: {e}", dir.display()),
                );
                return position;
            }
            Err(_) => return position,
        };
        tracing::debug!(mailbox = %self.context.name, folder = %self.folder, listed = listed.len(), "scanning");
        let mut newest = position;
        for chunk in listed.chunks(256) {
            // Messages handled a moment ago are not handled twice.
            let names: Vec<String> =
                chunk.iter().map(|(n, _)| n.clone()).filter(|n| self.recent.insert(n.clone())).collect();
            self.handle(dir, names, false).await;
            newest = newest.max(chunk.last().map_or(position, |(_, at)| *at));
            self.save_cursor(newest);
        }
        newest
    }

    /// Reads and processes messages by unique name, in batches; returns the
    /// newest delivery time seen.
    async fn handle(&mut self, dir: &Path, names: Vec<String>, recheck: bool) -> Option<i64> {
        if names.is_empty() {
            return None;
        }
        let dir_owned = dir.to_owned();
        let max = self.max_bytes;
        let read = tokio::task::spawn_blocking(move || {
            let mut items = Vec::with_capacity(names.len());
            let mut missing = Vec::new();
            let mut incomplete = Vec::new();
            let mut newest = None;
            for name in names {
                let Some(path) = maildir::locate(&dir_owned, &name) else {
                    missing.push(name);
                    continue;
                };
                match maildir::read_message(&path, max) {
                    // Created and not written yet (a delivery that writes
                    // in place instead of renaming from tmp/): it is
                    // handled when it is closed.
                    Ok((bytes, _)) if bytes.is_empty() => incomplete.push(name),
                    Ok((bytes, truncated)) => {
                        newest = newest.max(maildir::delivered_at(&path));
                        items.push(Item { locator: name, raw: Arc::from(bytes), truncated });
                    }
                    Err(_) => missing.push(name),
                }
            }
            (items, missing, incomplete, newest)
        })
        .await;
        let Ok((items, missing, incomplete, newest)) = read else { return None };
        for name in &incomplete {
            self.recent.remove(name);
        }
        tracing::debug!(mailbox = %self.context.name, read = items.len(), missing = missing.len(), "handling");
        let name = self.context.name.to_string();
        if recheck && !missing.is_empty() {
            let folder = self.folder.clone();
            let mailbox = name.clone();
            self.processor.state.send(move |c| state::recheck_done(c, &mailbox, &folder, &missing));
        }
        let mut folder = maildir::MaildirFolder {
            maildir: self.maildir.clone(),
            folder: self.folder.clone(),
            mailbox: name,
            marker: self.marker.clone(),
            state: self.processor.state.clone(),
            events: self.events.clone(),
        };
        for chunk in items.chunks(64) {
            self.processor.process(&mut folder, &self.context, &self.folder, chunk.to_vec(), recheck).await;
        }
        newest
    }

    fn save_cursor(&self, position: i64) {
        let (mailbox, folder) = (self.context.name.to_string(), self.folder.clone());
        self.processor.state.send(move |c| state::set_cursor(c, &mailbox, &folder, Cursor { validity: 0, position }));
    }
}
