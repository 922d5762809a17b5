//! Maildir++ mailboxes on this machine.
//!
//! Each user has a Maildir below the root (`maildir.layout`); its INBOX is
//! the Maildir itself and other folders are `.Name` directories
//! (`.Archive.2024` for `Archive/2024`). New mail is delivered to `new/` (a
//! rename from `tmp/`), seen by inotify; a mail server may move it on to
//! `cur/` (adding `:2,` flags) at any moment, so a message is known by its
//! unique name — the file name before `:` — and looked up in both.
//!
//! Every change is a `rename(2)` (atomic: the message is in one place or the
//! other), except the tag: the rewritten copy is written to `tmp/`, synced,
//! journalled, renamed into place, and only then is the original removed; a
//! restart finishes or undoes a journalled tag ([`recover`]).

mod task;

pub(crate) use task::{MaildirWorker, Recent};

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::events::{self, Events};
use crate::policy::{Action, Destination};
use crate::process::{ActionError, Applied, Folder, Item};
use crate::state::{self, State};
use crate::tagging::{self, Marker};

/// A user's Maildir: `layout` below `root` with the placeholders replaced.
pub fn user_maildir(root: &Path, layout: &str, user: &str) -> PathBuf {
    let (local, domain) = user.rsplit_once('@').unwrap_or((user, ""));
    let relative = layout.replace("{user}", user).replace("{domain}", domain).replace("{local}", local);
    root.join(relative)
}

/// The users whose Maildirs exist below `root` according to `layout`.
pub fn discover(root: &Path, layout: &str) -> std::io::Result<Vec<String>> {
    let components: Vec<&str> = layout.split('/').filter(|c| !c.is_empty()).collect();
    let mut found = Vec::new();
    walk(root, &components, &mut Vec::new(), &mut found)?;
    found.sort();
    found.dedup();
    Ok(found)
}

fn walk(
    dir: &Path,
    rest: &[&str],
    captured: &mut Vec<(String, String)>,
    found: &mut Vec<String>,
) -> std::io::Result<()> {
    let Some((component, rest)) = rest.split_first() else {
        if is_maildir(dir) {
            let get = |name: &str| captured.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            let user = get("{user}").or_else(|| Some(format!("{}@{}", get("{local}")?, get("{domain}")?)));
            if let Some(user) = user.filter(|u| crate::config::check_name(u).is_ok()) {
                found.push(user);
            }
        }
        return Ok(());
    };
    if component.starts_with('{') && component.ends_with('}') {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            // Below the root, an unreadable directory is skipped.
            Err(e) if !captured.is_empty() => {
                tracing::debug!("skipping {}: {e}", dir.display());
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            captured.push(((*component).to_owned(), name.clone()));
            walk(&dir.join(&name), rest, captured, found)?;
            captured.pop();
        }
        Ok(())
    } else {
        walk(&dir.join(component), rest, captured, found)
    }
}

/// Whether `dir` looks like a Maildir (has `cur`, `new` and `tmp`).
pub fn is_maildir(dir: &Path) -> bool {
    ["cur", "new", "tmp"].iter().all(|sub| dir.join(sub).is_dir())
}

/// The directory of `folder` in a Maildir++ (INBOX is the Maildir itself).
pub fn folder_dir(maildir: &Path, folder: &str) -> PathBuf {
    if folder.eq_ignore_ascii_case("INBOX") || folder.is_empty() {
        maildir.to_owned()
    } else {
        maildir.join(format!(".{}", folder.replace('/', ".")))
    }
}

/// The folders of a Maildir++ besides INBOX, by Maildir++ name (`Spam`,
/// `Spam.Sub`).
pub fn folders(maildir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(maildir) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.strip_prefix('.')?.to_owned();
            (!name.is_empty() && !name.starts_with('.') && is_maildir(&entry.path())).then_some(name)
        })
        .collect();
    names.sort();
    names
}

/// Creates a Maildir++ folder (and subscribes it, as IMAP servers expect);
/// true when it was created now.
pub fn ensure_folder(maildir: &Path, folder: &str) -> std::io::Result<bool> {
    let dir = folder_dir(maildir, folder);
    if is_maildir(&dir) {
        return Ok(false);
    }
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    if dir != maildir {
        std::fs::File::create(dir.join("maildirfolder"))?;
        let subscriptions = maildir.join("subscriptions");
        let listed = std::fs::read_to_string(&subscriptions).unwrap_or_default();
        if !listed.lines().any(|line| line == folder) {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&subscriptions)?;
            writeln!(file, "{folder}")?;
        }
    }
    sync_dir(maildir)?;
    Ok(true)
}

/// The unique part of a Maildir file name (before the `:2,` info).
pub fn unique_of(file_name: &str) -> &str {
    file_name.split_once(':').map_or(file_name, |(unique, _)| unique)
}

/// The flags of a Maildir file name (after `:2,`).
fn flags_of(file_name: &str) -> &str {
    file_name.split_once(":2,").map_or("", |(_, flags)| flags)
}

/// Where the message with this unique name is now in `dir`, if anywhere:
/// `new/unique` or `cur/unique:2,…`.
pub fn locate(dir: &Path, unique: &str) -> Option<PathBuf> {
    let fresh = dir.join("new").join(unique);
    if fresh.is_file() {
        return Some(fresh);
    }
    let cur = dir.join("cur");
    let exact = cur.join(unique);
    if exact.is_file() {
        return Some(exact);
    }
    let prefix = format!("{unique}:");
    std::fs::read_dir(&cur)
        .ok()?
        .flatten()
        .find(|entry| entry.file_name().to_str().is_some_and(|name| name.starts_with(&prefix)))
        .map(|entry| entry.path())
}

/// A new unique name, as the Maildir specification describes
/// (`seconds.M<micros>P<pid>Q<counter>.<host>`).
pub fn new_unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let host = hostname().replace(['/', ':'], "_");
    format!(
        "{}.M{}P{}Q{}.{host}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Syncs a directory, so that a rename or creation in it is durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// What identifies one delivery of a message file: its inode, which a
/// rename or a hard link (a mail server's copy) keeps and a new delivery
/// does not share.
pub fn identity(path: &Path) -> Option<i64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().and_then(|m| i64::try_from(m.ino()).ok())
}

/// The delivery time of a message file in nanoseconds since the epoch
/// (its modification time, which renames keep).
pub fn delivered_at(path: &Path) -> Option<i64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let since = modified.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_nanos()).ok()
}

/// Every message file of a folder (in `new` and `cur`, dot files left
/// out) with its delivery time in nanoseconds: `f(sub-directory, file
/// name, path, time)`.
fn each_message(dir: &Path, mut f: impl FnMut(&str, &str, PathBuf, i64)) -> std::io::Result<()> {
    for sub in ["new", "cur"] {
        let entries = match std::fs::read_dir(dir.join(sub)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            if name.starts_with('.') {
                continue;
            }
            let Ok(metadata) = entry.metadata() else { continue };
            let at = metadata
                .modified()
                .ok()
                .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_nanos()).ok());
            if let (true, Some(at)) = (metadata.is_file(), at) {
                f(sub, &name, entry.path(), at);
            }
        }
    }
    Ok(())
}

/// Messages of a folder delivered after `after` (nanoseconds), oldest
/// first, as (unique name, delivery time).
pub fn list_since(dir: &Path, after: i64) -> std::io::Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    each_message(dir, |_, name, _, at| {
        if at > after {
            out.push((unique_of(name).to_owned(), at));
        }
    })?;
    out.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    Ok(out)
}

/// The newest `most` messages of a folder delivered at or before `before`
/// (Unix seconds), oldest first, as (file, delivery time in seconds);
/// with `seen_only`, only those with the Seen flag. Messages marked
/// trashed are left out.
pub fn newest(dir: &Path, before: i64, most: usize, seen_only: bool) -> std::io::Result<Vec<(PathBuf, i64)>> {
    let mut out = Vec::new();
    each_message(dir, |sub, name, path, at| {
        let flags = if sub == "new" { "" } else { flags_of(name) };
        let at = at / 1_000_000_000;
        if !flags.contains('T') && (!seen_only || flags.contains('S')) && at <= before {
            out.push((path, at));
        }
    })?;
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    out.truncate(most);
    out.reverse();
    Ok(out)
}

/// Reads a message file, at most `limit` bytes; (bytes, cut).
pub fn read_message(path: &Path, limit: u64) -> std::io::Result<(Vec<u8>, bool)> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut bytes = Vec::with_capacity(size.min(limit) as usize);
    file.take(limit).read_to_end(&mut bytes)?;
    Ok((bytes, size > limit))
}

/// One folder of one Maildir, acting on its messages.
pub struct MaildirFolder {
    /// The user's Maildir.
    pub maildir: PathBuf,
    /// The folder's name.
    pub folder: String,
    /// The mailbox's name (for the journal and events).
    pub mailbox: String,
    /// Makes tag marks.
    pub marker: Marker,
    /// The journal lives here.
    pub state: State,
    /// Events.
    pub events: Events,
}

impl MaildirFolder {
    fn dir(&self) -> PathBuf {
        folder_dir(&self.maildir, &self.folder)
    }

    /// The folder `destination` names, created when allowed.
    fn destination(&self, destination: &Destination, create: bool) -> Result<(String, PathBuf), ActionError> {
        let name = match destination {
            Destination::Spam(name) if name.is_empty() => {
                if is_maildir(&folder_dir(&self.maildir, "Junk")) {
                    "Junk".to_owned()
                } else {
                    "Spam".to_owned()
                }
            }
            Destination::Trash(name) if name.is_empty() => "Trash".to_owned(),
            Destination::Spam(name) | Destination::Trash(name) | Destination::Existing(name) => name.clone(),
        };
        let dir = folder_dir(&self.maildir, &name);
        if !is_maildir(&dir) {
            if !create {
                return Err(ActionError::FolderMissing(name));
            }
            match ensure_folder(&self.maildir, &name) {
                Ok(true) => self.events.emit(events::FOLDER_CREATED, Some(&self.mailbox), format!("Folder: {name}.")),
                Ok(false) => {}
                Err(e) => return Err(ActionError::Failed(format!("cannot create the folder {name}: {e}"))),
            }
        }
        Ok((name, dir))
    }

    /// Moves a message and makes the move durable.
    fn move_to(&self, unique: &str, target: &Path, mark_read: bool) -> Result<(), ActionError> {
        let moved = self.rename_to(unique, target, mark_read)?;
        let _ = sync_dir(&moved.0);
        let _ = sync_dir(&moved.1);
        Ok(())
    }

    /// Renames a message into `target` (a rename is atomic: after a crash
    /// the message is in one place or the other); returns the directories
    /// to sync, destination first.
    fn rename_to(&self, unique: &str, target: &Path, mark_read: bool) -> Result<(PathBuf, PathBuf), ActionError> {
        // The server may move the file from new/ to cur/ between our look-up
        // and the rename: look again a few times.
        for _ in 0..3 {
            let Some(source) = locate(&self.dir(), unique) else { return Err(ActionError::Vanished) };
            let file_name = source.file_name().and_then(|n| n.to_str()).unwrap_or(unique).to_owned();
            let in_new = source.parent().and_then(Path::file_name).is_some_and(|d| d == "new");
            let destination = if in_new && !mark_read {
                target.join("new").join(unique)
            } else {
                let flags = with_flag(flags_of(&file_name), mark_read.then_some('S'));
                target.join("cur").join(format!("{unique}:2,{flags}"))
            };
            if destination.exists() {
                return Err(ActionError::Failed(format!("{} already exists", destination.display())));
            }
            match std::fs::rename(&source, &destination) {
                Ok(()) => {
                    let parent = |p: &Path| p.parent().unwrap_or(target).to_owned();
                    return Ok((parent(&destination), parent(&source)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ActionError::Failed(e.to_string())),
            }
        }
        Err(ActionError::Vanished)
    }

    async fn tag(&self, item: &Item, prefix: &str, mark_read: bool) -> Result<(), ActionError> {
        if item.truncated {
            return Err(ActionError::TooLarge);
        }
        let dir = self.dir();
        let Some(source) = locate(&dir, &item.locator) else { return Err(ActionError::Vanished) };
        let file_name = source.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let in_new = source.parent().and_then(Path::file_name).is_some_and(|d| d == "new");
        let mark = self.marker.mark();
        let rewritten = tagging::rewrite(&item.raw, prefix, &mark);
        let unique = new_unique_name();
        let temporary = dir.join("tmp").join(&unique);
        write_synced(&temporary, &rewritten).map_err(|e| ActionError::Failed(format!("cannot write: {e}")))?;
        let placed = if in_new && !mark_read {
            format!("new/{unique}")
        } else {
            format!("cur/{unique}:2,{}", with_flag(flags_of(&file_name), mark_read.then_some('S')))
        };
        let (mailbox, folder, original, replacement) =
            (self.mailbox.clone(), self.folder.clone(), item.locator.clone(), unique.clone());
        let journal =
            self.state.call(move |c| state::journal_begin(c, &mailbox, &folder, "tag", &original, &replacement)).await;
        let journal = match journal {
            Ok(id) => id,
            Err(e) => {
                let _ = std::fs::remove_file(&temporary);
                return Err(ActionError::Failed(format!("cannot journal the tag: {e}")));
            }
        };
        let result = (|| {
            std::fs::rename(&temporary, dir.join(&placed))?;
            sync_dir(&dir.join(if placed.starts_with("new") { "new" } else { "cur" }))?;
            // The original may have moved from new/ to cur/ meanwhile.
            let source = locate(&dir, &item.locator).unwrap_or(source);
            match std::fs::remove_file(&source) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            sync_dir(source.parent().unwrap_or(&dir))
        })();
        match result {
            Ok(()) => {
                let _ = self.state.call(move |c| state::journal_end(c, journal)).await;
                Ok(())
            }
            Err(e) => {
                // Undo: keep the original, remove the copy if it was placed.
                if locate(&dir, &item.locator).is_some() {
                    let _ = std::fs::remove_file(dir.join(&placed));
                    let _ = std::fs::remove_file(&temporary);
                    let _ = self.state.call(move |c| state::journal_end(c, journal)).await;
                }
                Err(ActionError::Failed(format!("cannot tag: {e}")))
            }
        }
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Maildir flags with `flag` added, in ASCII order as the specification
/// asks.
fn with_flag(flags: &str, flag: Option<char>) -> String {
    let mut all: Vec<char> = flags.chars().filter(|c| c.is_ascii_alphabetic()).collect();
    if let Some(flag) = flag {
        all.push(flag);
    }
    all.sort_unstable();
    all.dedup();
    all.into_iter().collect()
}

impl Folder for MaildirFolder {
    async fn apply(&mut self, item: &Item, action: &Action) -> Result<Applied, ActionError> {
        match action {
            Action::Leave | Action::Defer => Ok(Applied::default()),
            Action::Move { destination, create, mark_read } => {
                let (name, target) = self.destination(destination, *create)?;
                if target == self.dir() {
                    return Ok(Applied { folder: name });
                }
                self.move_to(&item.locator, &target, *mark_read)?;
                Ok(Applied { folder: name })
            }
            Action::Tag { prefix, mark_read } => {
                self.tag(item, prefix, *mark_read).await?;
                Ok(Applied::default())
            }
            Action::Delete => {
                let path = self.delete(&item.locator)?;
                let _ = sync_dir(&path);
                Ok(Applied::default())
            }
        }
    }

    /// Moves and deletions of many messages: the renames one by one, the
    /// directories synced once at the end (a directory sync costs a journal
    /// commit; a message whose rename was not yet durable when the machine
    /// crashed is simply where it was before).
    async fn apply_batch(&mut self, items: &[&Item], action: &Action) -> Vec<Result<Applied, ActionError>> {
        let mut to_sync = std::collections::BTreeSet::new();
        let results = match action {
            Action::Move { destination, create, mark_read } => match self.destination(destination, *create) {
                Err(e) => items.iter().map(|_| Err(e.clone())).collect(),
                Ok((name, target)) if target == self.dir() => {
                    items.iter().map(|_| Ok(Applied { folder: name.clone() })).collect()
                }
                Ok((name, target)) => items
                    .iter()
                    .map(|item| {
                        let (destination, source) = self.rename_to(&item.locator, &target, *mark_read)?;
                        to_sync.insert(destination);
                        to_sync.insert(source);
                        Ok(Applied { folder: name.clone() })
                    })
                    .collect(),
            },
            Action::Delete => items
                .iter()
                .map(|item| {
                    to_sync.insert(self.delete(&item.locator)?);
                    Ok(Applied::default())
                })
                .collect(),
            _ => crate::process::one_by_one(self, items, action).await,
        };
        for dir in to_sync {
            let _ = sync_dir(&dir);
        }
        results
    }
}

impl MaildirFolder {
    /// Deletes a message; returns its directory.
    fn delete(&self, unique: &str) -> Result<PathBuf, ActionError> {
        let Some(path) = locate(&self.dir(), unique) else { return Err(ActionError::Vanished) };
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(path.parent().map(Path::to_owned).unwrap_or_else(|| self.dir())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ActionError::Vanished),
            Err(e) => Err(ActionError::Failed(e.to_string())),
        }
    }
}

/// Finishes or undoes the tags a stop interrupted in this mailbox: when the
/// tagged copy is in place the original is removed, otherwise the copy's
/// temporary file is; either way each message exists exactly once.
pub async fn recover(
    state: &State,
    events: &Events,
    mailbox: &str,
    maildir: &Path,
) -> Result<usize, crate::state::StateError> {
    let name = mailbox.to_owned();
    let entries = state.call(move |c| state::journal(c, &name)).await?;
    let mut finished = 0;
    for entry in entries {
        let dir = folder_dir(maildir, &entry.folder);
        if entry.operation == "tag" {
            if locate(&dir, &entry.replacement).is_some() {
                if let Some(original) = locate(&dir, &entry.original) {
                    let _ = std::fs::remove_file(original);
                    let _ = sync_dir(&dir);
                }
            } else {
                let _ = std::fs::remove_file(dir.join("tmp").join(&entry.replacement));
            }
        }
        let id = entry.id;
        state.call(move |c| state::journal_end(c, id)).await?;
        finished += 1;
    }
    if finished > 0 {
        events.emit(events::INTERRUPTED_ACTION_FINISHED, Some(mailbox), format!("{finished} in the Maildir."));
    }
    Ok(finished)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_and_folders() {
        let root = Path::new("/var/vmail");
        assert_eq!(user_maildir(root, "{user}", "alice"), Path::new("/var/vmail/alice"));
        assert_eq!(
            user_maildir(root, "{domain}/{local}/Maildir", "alice@example.com"),
            Path::new("/var/vmail/example.com/alice/Maildir")
        );
        let maildir = Path::new("/m");
        assert_eq!(folder_dir(maildir, "INBOX"), Path::new("/m"));
        assert_eq!(folder_dir(maildir, "Spam"), Path::new("/m/.Spam"));
        assert_eq!(folder_dir(maildir, "Archive/2024"), Path::new("/m/.Archive.2024"));
        assert_eq!(unique_of("123.M4P5.host:2,RS"), "123.M4P5.host");
        assert_eq!(flags_of("123.M4P5.host:2,RS"), "RS");
        assert_eq!(with_flag("RF", Some('S')), "FRS");
        assert_eq!(with_flag("S", Some('S')), "S");
    }

    #[test]
    fn the_newest_messages_are_the_read_old_enough_and_untrashed_ones() {
        let dir = tempfile::tempdir().unwrap();
        ensure_folder(dir.path(), "INBOX").unwrap();
        let now = std::time::SystemTime::now();
        let put = |sub: &str, name: &str, hours_ago: u64| {
            let path = dir.path().join(sub).join(name);
            std::fs::write(&path, b"Subject: x\r\n\r\nbody\r\n").unwrap();
            let at = now - std::time::Duration::from_secs(hours_ago * 3600);
            std::fs::File::options().write(true).open(&path).unwrap().set_modified(at).unwrap();
        };
        put("cur", "a:2,S", 50);
        put("cur", "b:2,RS", 40);
        put("cur", "c:2,", 30);
        put("cur", "d:2,ST", 20);
        put("new", "e", 10);
        put("cur", "f:2,S", 1);
        let names = |found: Vec<(PathBuf, i64)>| -> Vec<String> {
            found.iter().map(|(p, _)| unique_of(p.file_name().unwrap().to_str().unwrap()).to_owned()).collect()
        };
        let before = jiff::Timestamp::now().as_second() - 5 * 3600;
        assert_eq!(names(newest(dir.path(), before, 10, true).unwrap()), ["a", "b"], "read, old enough, not trashed");
        assert_eq!(names(newest(dir.path(), before, 1, true).unwrap()), ["b"], "the newest of them");
        assert_eq!(names(newest(dir.path(), i64::MAX, 10, false).unwrap()), ["a", "b", "c", "e", "f"], "oldest first");
        assert!(newest(&dir.path().join("missing"), i64::MAX, 10, false).unwrap().is_empty());
    }

    #[test]
    fn discovery_follows_the_layout() {
        let root = tempfile::tempdir().unwrap();
        for user in ["alice", "bob"] {
            ensure_folder(&root.path().join(user), "INBOX").unwrap();
        }
        std::fs::create_dir_all(root.path().join("not-a-maildir")).unwrap();
        assert_eq!(discover(root.path(), "{user}").unwrap(), ["alice", "bob"]);

        let root = tempfile::tempdir().unwrap();
        ensure_folder(&root.path().join("example.com/alice/Maildir"), "INBOX").unwrap();
        ensure_folder(&root.path().join("example.org/bob/Maildir"), "INBOX").unwrap();
        assert_eq!(
            discover(root.path(), "{domain}/{local}/Maildir").unwrap(),
            ["alice@example.com", "bob@example.org"]
        );
        assert!(discover(&root.path().join("missing"), "{user}").is_err());
    }

    #[test]
    fn folders_are_created_and_subscribed_once() {
        let root = tempfile::tempdir().unwrap();
        let maildir = root.path().join("alice");
        ensure_folder(&maildir, "INBOX").unwrap();
        assert!(ensure_folder(&maildir, "Spam").unwrap());
        assert!(!ensure_folder(&maildir, "Spam").unwrap());
        assert!(maildir.join(".Spam/maildirfolder").is_file());
        assert_eq!(std::fs::read_to_string(maildir.join("subscriptions")).unwrap(), "Spam\n");
    }

    #[test]
    fn messages_are_found_in_new_and_cur() {
        let root = tempfile::tempdir().unwrap();
        let maildir = root.path().join("alice");
        ensure_folder(&maildir, "INBOX").unwrap();
        std::fs::write(maildir.join("new/1.a.host"), b"x").unwrap();
        std::fs::write(maildir.join("cur/2.b.host:2,S"), b"y").unwrap();
        assert_eq!(locate(&maildir, "1.a.host").unwrap(), maildir.join("new/1.a.host"));
        assert_eq!(locate(&maildir, "2.b.host").unwrap(), maildir.join("cur/2.b.host:2,S"));
        assert!(locate(&maildir, "2.b").is_none());
        let listed = list_since(&maildir, 0).unwrap();
        assert_eq!(listed.len(), 2);
        assert!(new_unique_name() != new_unique_name());
    }
}
