//! Maildir notifications: which mailbox task each one goes to (the
//! watches themselves are the Maildir store's, `stores.rs`).

use super::*;

impl Supervisor {
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
                    && let Some(Route { mailbox, kind: RouteKind::Filtered(true), .. }) = self.store.route_of(dir)
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
        let Some(route) = self.store.route_of(dir) else { return };
        if file.starts_with('.') {
            return;
        }
        // A rename within one folder is the server taking a message from
        // new/ to cur/, or changing its flags: nothing arrived.
        let within = from
            .and_then(|f| f.parent())
            .and_then(|d| self.store.route_of(d))
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
