//! The task of one Maildir folder: new files, the supervisor's work
//! (scans, rescans, re-checks, users' moves, settling) and a poll when
//! notifications are quiet.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::events::{self, Events};
use crate::learning::Source;
use crate::maildir;
use crate::pipeline::MailboxContext;
use crate::process::{ExistingExample, Item, Moved, Pass, Processor, Work};
use crate::state::{self, Cursor};
use crate::tagging::Marker;

/// The unique names handled lately, to ignore repeated notifications.
#[derive(Default)]
pub(crate) struct Recent {
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
pub(crate) struct MaildirWorker {
    /// The mailbox's Maildir.
    pub(crate) maildir: PathBuf,
    /// The folder ("" for INBOX).
    pub(crate) folder: String,
    /// The mailbox's settings.
    pub(crate) context: MailboxContext,
    /// The pipeline and the state.
    pub(crate) processor: Arc<Processor>,
    /// The tag mark.
    pub(crate) marker: Marker,
    /// Where events go.
    pub(crate) events: Events,
    /// How far back the first scan looks.
    pub(crate) first_scan_hours: u32,
    /// The largest message read whole.
    pub(crate) max_bytes: u64,
    /// How often the folder is looked at without a notification.
    pub(crate) poll: Duration,
    /// Names handled lately.
    pub(crate) recent: Recent,
    /// The mailbox's spam folder, when this task watches its inbox and
    /// users' moves: the model learns the mail already there (and in the
    /// inbox) at the mailbox's first sight.
    pub(crate) spam_folder: Option<String>,
}

impl MaildirWorker {
    /// Runs until `stop`, doing what `work` asks.
    pub(crate) async fn run(mut self, mut work: mpsc::Receiver<Work>, stop: CancellationToken) {
        let name = self.context.name.to_string();
        let state = self.processor.state.clone();
        if let Err(e) = maildir::recover(&state, &self.events, &name, &self.maildir).await {
            self.events.emit(events::STATE_ERROR, Some(&name), e.to_string());
        }
        let dir = maildir::folder_dir(&self.maildir, &self.folder);
        if let Some(spam) = &self.spam_folder
            && self.processor.wants_existing(&name).await
        {
            self.read_existing_later(spam, &dir, stop.clone());
        }
        let position = self.start_position(&name).await;
        let mut position = self.scan(&dir, position).await;
        // Watching from here on (the watch was set before the task started).
        self.save_cursor(position);
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
                Work::CatchUp(since) => position = self.scan(&dir, position.min(since)).await,
                Work::Rescan { id, since } => self.rescan(&dir, id, since).await,
                Work::Moved(folder, first, direction) => {
                    let more = |next| match next {
                        Work::Moved(folder, name, direction) => Ok((folder, name, direction)),
                        other => Err(other),
                    };
                    let Some(moved) = gather(&mut work, (folder, first, direction), &mut later, more) else { return };
                    self.moved(moved).await;
                }
                Work::Arrived(first) => {
                    let more = |next| match next {
                        Work::Arrived(name) => Ok(name),
                        other => Err(other),
                    };
                    let Some(names) = gather(&mut work, first, &mut later, more) else { return };
                    let names: Vec<String> = names.into_iter().filter(|n| self.recent.insert(n.clone())).collect();
                    if let (Some(newest), _) = self.handle(&dir, names, Pass::Delivery).await {
                        position = position.max(newest);
                        self.save_cursor(position);
                    }
                }
                Work::Recheck(locators) => {
                    let names: Vec<String> =
                        locators.into_iter().filter(|(f, _)| *f == self.folder).map(|(_, l)| l).collect();
                    self.handle(&dir, names, Pass::Recheck).await;
                }
                Work::Retro(locators) => {
                    let names: Vec<String> =
                        locators.into_iter().filter(|(f, _)| *f == self.folder).map(|(_, l)| l).collect();
                    self.handle(&dir, names, Pass::Retro).await;
                }
                Work::Settle { rows, read } => self.settle(&dir, rows, read).await,
            }
        }
    }

    /// Where the last run stopped; else `first_scan_hours` back.
    async fn start_position(&self, name: &str) -> i64 {
        let (key_name, key_folder) = (name.to_owned(), self.folder.clone());
        let cursor = self.processor.state.call(move |c| state::cursor(c, &key_name, &key_folder)).await.ok().flatten();
        match cursor {
            Some(cursor) => cursor.position,
            None => {
                let hours = i64::from(self.first_scan_hours);
                let now = jiff::Timestamp::now().as_nanosecond() as i64;
                now - hours * 3_600_000_000_000
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
            self.handle(dir, names, Pass::Delivery).await;
            newest = newest.max(chunk.last().map_or(position, |(_, at)| *at));
            self.save_cursor(newest);
        }
        newest
    }

    /// Looks again at the messages delivered since `since` (Unix seconds).
    async fn rescan(&mut self, dir: &Path, id: i64, since: i64) {
        let started = std::time::Instant::now();
        let state = self.processor.state.clone();
        let name = self.context.name.to_string();
        let dir_owned = dir.to_owned();
        let after = since.saturating_mul(1_000_000_000);
        let listed = match tokio::task::spawn_blocking(move || maildir::list_since(&dir_owned, after)).await {
            Ok(Ok(listed)) => listed,
            failed => {
                let detail = match failed {
                    Ok(Err(e)) => format!("{}: {e}", dir.display()),
                    _ => "the listing task failed".to_owned(),
                };
                self.events.emit(events::RESCAN_FAILED, Some(&name), &detail);
                let _ = state
                    .call(move |c| state::rescan_update(c, id, state::RescanStatus::Failed, (0, 0, 0), &detail))
                    .await;
                return;
            }
        };
        let total = listed.len() as u64;
        let _ = state.call(move |c| state::rescan_update(c, id, state::RescanStatus::Running, (total, 0, 0), "")).await;
        self.events.emit(
            events::RESCAN_STARTED,
            Some(&name),
            format!(
                "{total} message(s) in {} delivered since {}.",
                self.folder,
                jiff::Timestamp::from_second(since).unwrap_or_default()
            ),
        );
        let (mut checked, mut filed) = (0u64, 0u64);
        for chunk in listed.chunks(1024) {
            let names = chunk.iter().map(|(n, _)| n.clone()).collect();
            filed += self.handle(dir, names, Pass::Rescan).await.1;
            checked += chunk.len() as u64;
            let progress = (total, checked, filed);
            state.send(move |c| state::rescan_update(c, id, state::RescanStatus::Running, progress, ""));
        }
        let _ = state
            .call(move |c| state::rescan_update(c, id, state::RescanStatus::Done, (total, total, filed), ""))
            .await;
        self.events.emit(
            events::RESCAN_FINISHED,
            Some(&name),
            format!("{total} message(s) looked at again, {filed} filed, in {:.1} s.", started.elapsed().as_secs_f64()),
        );
    }

    /// Messages users moved into other folders: read them where they are
    /// and tell the processor.
    async fn moved(&mut self, moved: Vec<(String, String, Moved)>) {
        let maildir = self.maildir.clone();
        let max = self.max_bytes;
        let read = tokio::task::spawn_blocking(move || {
            let mut into = Vec::new();
            let mut out = Vec::new();
            for (folder, name, direction) in moved {
                let dir = maildir::folder_dir(&maildir, &folder);
                let Some(path) = maildir::locate(&dir, &name) else { continue };
                let Ok((bytes, truncated)) = maildir::read_message(&path, max) else { continue };
                let identity = maildir::identity(&path);
                let item = Item { locator: name, raw: Arc::from(bytes), truncated, identity };
                match direction {
                    Moved::IntoSpam => into.push(item),
                    Moved::OutOfSpam => out.push(item),
                }
            }
            (into, out)
        })
        .await;
        let Ok((into, out)) = read else { return };
        let name = self.context.name.to_string();
        self.processor.moved(&name, into, Moved::IntoSpam).await;
        self.processor.moved(&name, out, Moved::OutOfSpam).await;
    }

    /// Reads and processes messages by unique name, in batches; returns the
    /// newest delivery time seen and how many messages were acted on.
    async fn handle(&mut self, dir: &Path, names: Vec<String>, pass: Pass) -> (Option<i64>, u64) {
        if names.is_empty() {
            return (None, 0);
        }
        let recheck = pass == Pass::Recheck;
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
                        let identity = maildir::identity(&path);
                        items.push(Item { locator: name, raw: Arc::from(bytes), truncated, identity });
                    }
                    Err(_) => missing.push(name),
                }
            }
            (items, missing, incomplete, newest)
        })
        .await;
        let Ok((items, missing, incomplete, newest)) = read else { return (None, 0) };
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
        let mut acted = 0;
        for chunk in items.chunks(64) {
            acted += self.processor.process(&mut folder, &self.context, &self.folder, chunk.to_vec(), pass).await.acted;
        }
        (newest, acted as u64)
    }

    /// Which remembered messages are still in this folder (and read):
    /// those are learnt as ham, the others forgotten.
    async fn settle(&self, dir: &Path, rows: Vec<crate::recent::Located>, read: bool) {
        let dir = dir.to_owned();
        let folder = self.folder.clone();
        let sorted = tokio::task::spawn_blocking(move || {
            let (mut learn, mut keep, mut gone) = (Vec::new(), Vec::new(), Vec::new());
            for row in rows.into_iter().filter(|row| row.folder == folder) {
                match maildir::locate(&dir, &row.locator) {
                    None => gone.push(row),
                    Some(path) => {
                        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                        if !read || crate::retro::maildir_seen(name) { learn.push(row) } else { keep.push(row) }
                    }
                }
            }
            (learn, keep, gone)
        })
        .await;
        if let Ok((learn, keep, gone)) = sorted {
            self.processor.settle(&self.context.name, learn, keep, gone).await;
        }
    }

    /// Reads the mail the mailbox already has for the model — the spam
    /// folder's newest messages (the agent's own filings left out) and, if
    /// there were any, the newest read messages of `inbox` older than
    /// `model.ham_after_minutes` — in a task of its own (new mail is
    /// filed meanwhile), at most
    /// [`EXISTING_AT_ONCE`](crate::process::EXISTING_AT_ONCE) mailboxes at
    /// a time.
    fn read_existing_later(&self, spam: &str, inbox: &Path, stop: CancellationToken) {
        let processor = self.processor.clone();
        let mailbox = self.context.name.to_string();
        let (spam_dir, inbox) = (maildir::folder_dir(&self.maildir, spam), inbox.to_owned());
        let limit = self.max_bytes;
        tokio::spawn(async move {
            let Some(_turn) = processor.existing_turn(&mailbox, &stop).await else { return };
            let started = std::time::Instant::now();
            let learning = &processor.learning;
            let (most, read) = (learning.history_messages as usize, learning.ham_requires_read);
            let before = jiff::Timestamp::now().as_second() - i64::from(learning.ham_after_minutes) * 60;
            let spam = Look { dir: spam_dir, before: i64::MAX, most, seen_only: false, source: Source::ExistingSpam };
            let mut examples = match examples_in(&processor, &mailbox, spam, limit).await {
                Ok(examples) => examples,
                Err(e) => return processor.events.emit(events::MODEL_EXISTING_UNREAD, Some(&mailbox), e.to_string()),
            };
            if !examples.is_empty() {
                let ham = Look { dir: inbox, before, most, seen_only: read, source: Source::ExistingHam };
                match examples_in(&processor, &mailbox, ham, limit).await {
                    Ok(ham) => examples.extend(ham),
                    Err(e) => {
                        return processor.events.emit(events::MODEL_EXISTING_UNREAD, Some(&mailbox), e.to_string());
                    }
                }
            }
            processor.learn_existing(&mailbox, examples, started).await;
        });
    }

    fn save_cursor(&self, position: i64) {
        let (mailbox, folder) = (self.context.name.to_string(), self.folder.clone());
        self.processor.state.send(move |c| state::set_cursor(c, &mailbox, &folder, Cursor { validity: 0, position }));
    }
}

/// More work of the same kind already queued behind `first` (at most 256),
/// taken together; the first other command waits in `later`. `None` when
/// the task must stop.
fn gather<T>(
    work: &mut mpsc::Receiver<Work>,
    first: T,
    later: &mut Option<Work>,
    same: impl Fn(Work) -> Result<T, Work>,
) -> Option<Vec<T>> {
    let mut all = vec![first];
    while all.len() < 256 {
        match work.try_recv() {
            Ok(Work::Stop) => return None,
            Ok(next) => match same(next) {
                Ok(item) => all.push(item),
                Err(other) => {
                    *later = Some(other);
                    break;
                }
            },
            Err(_) => break,
        }
    }
    Some(all)
}

/// What a look at a folder's existing mail takes: its newest `most`
/// messages delivered by `before` (Unix seconds), only read ones with
/// `seen_only`, as examples of `source`.
struct Look {
    dir: PathBuf,
    before: i64,
    most: usize,
    seen_only: bool,
    source: Source,
}

/// The messages a [`Look`] takes ([`maildir::newest`]) as examples, read
/// (each up to `limit` bytes) 64 at a time; from the spam folder, the
/// agent's own filings are left out.
async fn examples_in(
    processor: &Processor,
    mailbox: &str,
    look: Look,
    limit: u64,
) -> std::io::Result<Vec<ExistingExample>> {
    let Look { dir, before, most, seen_only, source } = look;
    let listed = tokio::task::spawn_blocking(move || maildir::newest(&dir, before, most, seen_only))
        .await
        .map_err(std::io::Error::other)??;
    let mut examples = Vec::with_capacity(listed.len());
    for chunk in listed.chunks(64) {
        let chunk = chunk.to_vec();
        let items = tokio::task::spawn_blocking(move || {
            chunk
                .into_iter()
                .filter_map(|(path, at)| {
                    // A message moved meanwhile is simply not learnt.
                    let (raw, truncated) = maildir::read_message(&path, limit).ok()?;
                    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    let locator = maildir::unique_of(name).to_owned();
                    Some((at, Item { locator, raw: Arc::from(raw), truncated, identity: None }))
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(std::io::Error::other)?;
        let items = if source == Source::ExistingSpam {
            let ids =
                items.iter().map(|(_, item)| crate::facts::Facts::from_message(&item.raw, 0).message_id).collect();
            let worth = processor.worth_a_look(mailbox, ids, Moved::IntoSpam).await;
            items.into_iter().zip(worth).filter(|(_, w)| *w).map(|(item, _)| item).collect()
        } else {
            items
        };
        examples.extend(processor.existing_examples(items, source).await);
    }
    Ok(examples)
}
