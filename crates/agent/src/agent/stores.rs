//! The mail stores the supervisor runs mailbox tasks over. The supervisor
//! decides which mailboxes are watched, with which policy, and when their
//! tasks start and stop; a [`MailStore`] decides how: the tasks it starts
//! for a mailbox and what they watch.

use super::*;

/// What a mailbox task is given, whatever the store.
pub(super) struct TaskKit {
    pub(super) processor: Arc<Processor>,
    pub(super) marker: Marker,
    pub(super) events: Events,
    pub(super) stop: CancellationToken,
    /// How far back a first look at a folder goes.
    pub(super) first_scan_hours: u32,
    /// The spam and trash folders as configured (Maildir: which folders'
    /// arrivals are users' moves).
    pub(super) spam_folder: String,
    pub(super) trash_folder: String,
}

/// A kind of mail store, as the supervisor sees it.
pub(super) trait MailStore: Send + Sync {
    /// Starts the task that filters `wanted`'s folder, reading `work`;
    /// returns it and what it watches (given back to [`MailStore::unwatch`]
    /// when it stops).
    fn start_filter(
        &mut self,
        kit: &TaskKit,
        wanted: &Wanted,
        context: MailboxContext,
        work: mpsc::Receiver<Work>,
    ) -> (tokio::task::JoinHandle<()>, Vec<PathBuf>);

    /// Whether users' moves are seen by a task of their own
    /// ([`MailStore::start_feedback`]) rather than by the filter task.
    fn feedback_tasks(&self) -> bool;

    /// Starts the task that sees users' moves into and out of the spam
    /// folder, when the store has one ([`MailStore::feedback_tasks`]).
    fn start_feedback(
        &mut self,
        kit: &TaskKit,
        wanted: &Wanted,
        context: MailboxContext,
        work: mpsc::Receiver<Work>,
    ) -> Option<tokio::task::JoinHandle<()>>;

    /// Stops watching what a stopped task watched.
    fn unwatch(&mut self, watched: &[PathBuf]);

    /// Starts watching the file system, when the store is watched that way.
    fn start_watching(&mut self) -> notify::Result<()> {
        Ok(())
    }

    /// Where a notification about the watched directory `dir` goes.
    fn route_of(&self, _dir: &Path) -> Option<&Route> {
        None
    }
}

/// An IMAP server: a session per task, users' moves seen by a second
/// session on the spam folder.
pub(super) struct ImapStore {
    pub(super) server: Arc<imap::Server>,
    /// Per account: what its filter and spam tasks share (IMAP NOTIFY).
    pub(super) spam_watches: HashMap<String, Arc<imap::SpamWatch>>,
}

impl ImapStore {
    /// Starts a session task of `role` on `wanted`'s account.
    fn start(
        &mut self,
        kit: &TaskKit,
        wanted: &Wanted,
        role: imap::Role,
        context: MailboxContext,
        work: mpsc::Receiver<Work>,
    ) -> tokio::task::JoinHandle<()> {
        let spam = matches!(role, imap::Role::Spam { .. });
        let spam_watch = self.spam_watches.entry(wanted.account.clone()).or_default().clone();
        let watcher = imap::Watcher {
            server: self.server.clone(),
            account: wanted.account.clone(),
            folder: if spam { wanted.policy.spam_folder.clone() } else { wanted.folder.clone() },
            role,
            context,
            processor: kit.processor.clone(),
            first_scan_hours: if spam { 0 } else { kit.first_scan_hours },
            work,
            events: kit.events.clone(),
            existing_asked: false,
            spam_watch,
            quiet: None,
        };
        tokio::spawn(watcher.run(kit.stop.clone()))
    }
}

impl MailStore for ImapStore {
    fn start_filter(
        &mut self,
        kit: &TaskKit,
        wanted: &Wanted,
        context: MailboxContext,
        work: mpsc::Receiver<Work>,
    ) -> (tokio::task::JoinHandle<()>, Vec<PathBuf>) {
        (self.start(kit, wanted, imap::Role::Filter, context, work), Vec::new())
    }

    fn feedback_tasks(&self) -> bool {
        true
    }

    fn start_feedback(
        &mut self,
        kit: &TaskKit,
        wanted: &Wanted,
        context: MailboxContext,
        work: mpsc::Receiver<Work>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let policy = &wanted.policy;
        // The folder is created only when the agent files there.
        let create = [policy.spam_action, policy.phish_action].contains(&ActionKind::SpamFolder);
        let role = imap::Role::Spam { name: policy.spam_folder.clone(), create };
        Some(self.start(kit, wanted, role, context, work))
    }

    fn unwatch(&mut self, _watched: &[PathBuf]) {}
}

/// Maildirs on this machine: a task per filtered folder, new mail and
/// users' moves told by inotify, each watched directory routed to its
/// mailbox's task.
pub(super) struct MaildirStore {
    root: PathBuf,
    layout: String,
    max_bytes: u64,
    watcher: Option<notify::RecommendedWatcher>,
    /// Watched `new`/`cur` directory → where its notifications go.
    routes: HashMap<PathBuf, Route>,
    notifications: mpsc::Sender<notify::Result<notify::Event>>,
    events: Events,
}

impl MaildirStore {
    /// Maildirs under `config.maildir.root`; notifications go to
    /// `notifications` once [`MailStore::start_watching`] ran.
    pub(super) fn new(
        config: &AgentConfig,
        notifications: mpsc::Sender<notify::Result<notify::Event>>,
        events: Events,
    ) -> MaildirStore {
        MaildirStore {
            root: config.maildir.root.clone(),
            layout: config.maildir.layout.clone(),
            max_bytes: config.imap.max_message_bytes,
            watcher: None,
            routes: HashMap::new(),
            notifications,
            events,
        }
    }

    /// Watches a Maildir's filtered folder and, with feedback, its other
    /// folders (not Trash); returns the watched directories, and whether
    /// the filtered folder's watch is complete.
    fn watch_maildir(&mut self, kit: &TaskKit, wanted: &Wanted, maildir: &Path) -> (Vec<PathBuf>, bool) {
        let (mailbox, folder) = (wanted.name.as_str(), wanted.folder.as_str());
        let mut watched = Vec::new();
        let dir = maildir::folder_dir(maildir, folder);
        let complete = self.watch(mailbox, folder, &dir, None, &mut watched);
        if wanted.feedback {
            let or = |name: &str, default: &str| if name.is_empty() { default.to_owned() } else { name.to_owned() };
            let (spam, trash) = (or(&kit.spam_folder, "Spam"), or(&kit.trash_folder, "Trash"));
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
                    self.routes.insert(path.clone(), route);
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
}

impl MailStore for MaildirStore {
    fn start_filter(
        &mut self,
        kit: &TaskKit,
        wanted: &Wanted,
        context: MailboxContext,
        work: mpsc::Receiver<Work>,
    ) -> (tokio::task::JoinHandle<()>, Vec<PathBuf>) {
        let maildir = maildir::user_maildir(&self.root, &self.layout, &wanted.account);
        let (watched, complete) = self.watch_maildir(kit, wanted, &maildir);
        let worker = maildir::MaildirWorker {
            maildir,
            folder: wanted.folder.clone(),
            context,
            processor: kit.processor.clone(),
            marker: kit.marker.clone(),
            events: kit.events.clone(),
            first_scan_hours: kit.first_scan_hours,
            max_bytes: self.max_bytes,
            // Without complete watches, the folder is looked at more often.
            poll: if complete { Duration::from_secs(600) } else { Duration::from_secs(60) },
            recent: maildir::Recent::default(),
            spam_folder: wanted
                .feedback
                .then(|| if kit.spam_folder.is_empty() { "Spam".to_owned() } else { kit.spam_folder.clone() }),
        };
        (tokio::spawn(worker.run(work, kit.stop.clone())), watched)
    }

    fn feedback_tasks(&self) -> bool {
        false
    }

    fn start_feedback(
        &mut self,
        _kit: &TaskKit,
        _wanted: &Wanted,
        _context: MailboxContext,
        _work: mpsc::Receiver<Work>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        None
    }

    fn unwatch(&mut self, watched: &[PathBuf]) {
        for dir in watched {
            if let Some(watcher) = &mut self.watcher {
                let _ = watcher.unwatch(dir);
            }
            self.routes.remove(dir);
        }
    }

    fn start_watching(&mut self) -> notify::Result<()> {
        let sender = self.notifications.clone();
        let watcher = notify::recommended_watcher(move |event| {
            let _ = sender.blocking_send(event);
        })?;
        self.watcher = Some(watcher);
        Ok(())
    }

    fn route_of(&self, dir: &Path) -> Option<&Route> {
        self.routes.get(dir)
    }
}
