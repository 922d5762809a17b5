//! Maildir notifications: which directories are watched and which
//! mailbox task each notification goes to.

use super::*;

impl Supervisor {
    /// Watches a Maildir's filtered folder and, with feedback, its other
    /// folders (not Trash); returns the watched directories, and whether
    /// the filtered folder's watch is complete.
    pub(super) fn watch_maildir(
        &mut self,
        mailbox: &str,
        maildir: &Path,
        folder: &str,
        feedback: bool,
    ) -> (Vec<PathBuf>, bool) {
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
    pub(super) fn watch(
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
    pub(super) async fn route(&mut self, event: notify::Result<notify::Event>) {
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
    pub(super) fn send_pending_scans(&mut self) {
        let running = &self.running;
        self.needs_scan.retain(|mailbox, since| {
            running.get(mailbox).is_some_and(|r| r.work.try_send(Work::CatchUp(*since)).is_err() && !r.work.is_closed())
        });
    }
}
