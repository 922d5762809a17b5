//! The agent's state: one SQLite database (`state.sqlite3` in `state_dir`).
//!
//! Mailboxes and their settings, whitelist entries, cursors (where each
//! mailbox was read up to), the messages the agent filed, users' feedback
//! (and the reports still to send), hourly counters, events, the re-check
//! queue, rescans and the journal of actions in progress.
//!
//! One thread owns the writing connection and runs every statement the
//! running agent issues, in order ([`State::call`]); the CLI opens its own
//! connection ([`open`]). WAL mode lets readers work beside the writer.
//! `synchronous = NORMAL`: a power loss may forget the last moments of
//! counters and events, never corrupt the file; mail safety never depends on
//! this database (see the journal).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::events::{Event, EventSink};

/// The database file's name in `state_dir`.
pub const FILE_NAME: &str = "state.sqlite3";

const SCHEMA_VERSION: i64 = 6;

/// The per-mailbox hourly counters' table as schema 4 has it (keyed by
/// mailbox, then hour), under a name: in [`SCHEMA`] and [`MIGRATE_4`].
macro_rules! hourly_table {
    ($name:literal) => {
        concat!(
            "CREATE TABLE IF NOT EXISTS ",
            $name,
            " (
    hour INTEGER NOT NULL,
    mailbox TEXT NOT NULL,
    checked INTEGER NOT NULL DEFAULT 0,
    spam INTEGER NOT NULL DEFAULT 0,
    phish INTEGER NOT NULL DEFAULT 0,
    whitelisted INTEGER NOT NULL DEFAULT 0,
    empty INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    blocked INTEGER NOT NULL DEFAULT 0,
    unblocked INTEGER NOT NULL DEFAULT 0,
    rescanned INTEGER NOT NULL DEFAULT 0,
    rescan_filed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (mailbox, hour)
) WITHOUT ROWID;
"
        )
    };
}

const SCHEMA: &str = concat!(
    r#"
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS mailboxes (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL DEFAULT 'user',
    enabled INTEGER NOT NULL,
    feedback INTEGER NOT NULL DEFAULT 1,
    source TEXT NOT NULL,
    present INTEGER NOT NULL DEFAULT 1,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS cursors (
    mailbox TEXT NOT NULL,
    folder TEXT NOT NULL,
    validity INTEGER NOT NULL,
    position INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (mailbox, folder)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS whitelist (
    scope TEXT NOT NULL,
    entry TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    created INTEGER NOT NULL,
    PRIMARY KEY (scope, entry)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS filed (
    id INTEGER PRIMARY KEY,
    mailbox TEXT NOT NULL,
    message_id TEXT,
    fingerprint BLOB,
    class TEXT NOT NULL,
    reason TEXT NOT NULL,
    action TEXT NOT NULL,
    folder TEXT NOT NULL,
    at INTEGER NOT NULL,
    pass TEXT NOT NULL DEFAULT 'delivery',
    delivered INTEGER
);
CREATE INDEX IF NOT EXISTS filed_message ON filed (mailbox, message_id);
CREATE INDEX IF NOT EXISTS filed_fingerprint ON filed (mailbox, fingerprint);
CREATE INDEX IF NOT EXISTS filed_at ON filed (at);

"#,
    hourly_table!("hourly"),
    r#"CREATE INDEX IF NOT EXISTS hourly_hour ON hourly (hour);

CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    code INTEGER NOT NULL,
    severity TEXT NOT NULL,
    mailbox TEXT,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_at ON events (at);

CREATE TABLE IF NOT EXISTS recheck (
    mailbox TEXT NOT NULL,
    folder TEXT NOT NULL,
    locator TEXT NOT NULL,
    queued_at INTEGER NOT NULL,
    PRIMARY KEY (mailbox, folder, locator)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY,
    mailbox TEXT NOT NULL,
    folder TEXT NOT NULL,
    operation TEXT NOT NULL,
    original TEXT NOT NULL,
    replacement TEXT NOT NULL,
    at INTEGER NOT NULL
);
"#
);

/// Tables added by schema 2 (feedback and rescans); part of a new database,
/// added to an older one by [`MIGRATE_2`].
const SCHEMA_2: &str = r#"
CREATE TABLE IF NOT EXISTS feedback (
    mailbox TEXT NOT NULL,
    key TEXT NOT NULL,
    opinion TEXT NOT NULL,
    filed INTEGER NOT NULL,
    fingerprints BLOB,
    desired TEXT NOT NULL,
    sent TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (mailbox, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS feedback_outbox ON feedback (mailbox) WHERE desired <> sent;

CREATE TABLE IF NOT EXISTS rescans (
    id INTEGER PRIMARY KEY,
    mailbox TEXT NOT NULL,
    since INTEGER NOT NULL,
    origin TEXT NOT NULL,
    status TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    total INTEGER NOT NULL DEFAULT 0,
    checked INTEGER NOT NULL DEFAULT 0,
    filed INTEGER NOT NULL DEFAULT 0,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS rescans_status ON rescans (status);
"#;

/// Tables added by schema 3 (the console: settings, administrators, API
/// tokens, browser sessions; totals per hour for reports).
const SCHEMA_3: &str = r#"
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated INTEGER NOT NULL,
    updated_by TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS admins (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password TEXT NOT NULL,
    role TEXT NOT NULL,
    created INTEGER NOT NULL,
    last_login INTEGER
);

CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY,
    admin INTEGER NOT NULL REFERENCES admins (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    hash BLOB NOT NULL UNIQUE,
    created INTEGER NOT NULL,
    last_used INTEGER
);

CREATE TABLE IF NOT EXISTS sessions (
    hash BLOB PRIMARY KEY,
    admin INTEGER NOT NULL REFERENCES admins (id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS hourly_total (
    hour INTEGER PRIMARY KEY,
    checked INTEGER NOT NULL DEFAULT 0,
    spam INTEGER NOT NULL DEFAULT 0,
    phish INTEGER NOT NULL DEFAULT 0,
    whitelisted INTEGER NOT NULL DEFAULT 0,
    empty INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    blocked INTEGER NOT NULL DEFAULT 0,
    unblocked INTEGER NOT NULL DEFAULT 0,
    rescanned INTEGER NOT NULL DEFAULT 0,
    rescan_filed INTEGER NOT NULL DEFAULT 0
);
"#;

/// Indexes added by schema 4: the event log filtered by id or mailbox,
/// newest first, without reading the rest of the year.
const SCHEMA_4: &str = r#"
DROP INDEX IF EXISTS events_code;
CREATE INDEX IF NOT EXISTS events_by_code ON events (code);
CREATE INDEX IF NOT EXISTS events_by_mailbox ON events (mailbox) WHERE mailbox IS NOT NULL;
"#;

/// Schema 6: a mailbox's own switch for the local model (on by default),
/// added to every older database and to a new one alike.
const MIGRATE_6: &str = "ALTER TABLE mailboxes ADD COLUMN model INTEGER NOT NULL DEFAULT 1;";

/// Schema 5: what retro-filing and the local model remember (owned by
/// `recent.rs` and `learning.rs`). No content: fingerprint keys (hashed
/// again), model feature ids, and where the message is.
const SCHEMA_5: &str = r#"
CREATE TABLE IF NOT EXISTS recent (
    id INTEGER PRIMARY KEY,
    mailbox TEXT NOT NULL,
    folder TEXT NOT NULL,
    locator TEXT NOT NULL,
    message_id TEXT,
    delivered_at INTEGER NOT NULL,
    keys BLOB NOT NULL,
    features BLOB,
    status INTEGER NOT NULL DEFAULT 0,
    UNIQUE (mailbox, folder, locator)
);
CREATE INDEX IF NOT EXISTS recent_by_message ON recent (mailbox, message_id) WHERE message_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS recent_pending ON recent (status, delivered_at);
CREATE TABLE IF NOT EXISTS model_examples (
    id INTEGER PRIMARY KEY,
    mailbox TEXT NOT NULL,
    key TEXT NOT NULL,
    label TEXT NOT NULL,
    source TEXT NOT NULL,
    features BLOB NOT NULL,
    at INTEGER NOT NULL,
    UNIQUE (mailbox, key)
);
CREATE INDEX IF NOT EXISTS model_examples_by_mailbox ON model_examples (mailbox, label, id);
CREATE TABLE IF NOT EXISTS model_log (
    id INTEGER PRIMARY KEY,
    label TEXT NOT NULL,
    learn INTEGER NOT NULL,
    features BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS model_requests (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    detail TEXT NOT NULL DEFAULT ''
);
"#;

/// Schema 2 → 3: the totals of the hours already counted.
const MIGRATE_3: &str = r#"
INSERT INTO hourly_total (hour, checked, spam, phish, whitelisted, empty, errors,
                          blocked, unblocked, rescanned, rescan_filed)
SELECT hour, sum(checked), sum(spam), sum(phish), sum(whitelisted), sum(empty), sum(errors),
       sum(blocked), sum(unblocked), sum(rescanned), sum(rescan_filed)
FROM hourly GROUP BY hour;
"#;

/// Schema 3 → 4: per-mailbox counters stored by mailbox, then hour, so a
/// mailbox's month is one run of rows (the users page sums 50 of them);
/// the hour index serves expiry.
const MIGRATE_4: &str = concat!(
    hourly_table!("hourly_by_mailbox"),
    r#"INSERT INTO hourly_by_mailbox (hour, mailbox, checked, spam, phish, whitelisted, empty, errors,
                               blocked, unblocked, rescanned, rescan_filed)
SELECT hour, mailbox, checked, spam, phish, whitelisted, empty, errors,
       blocked, unblocked, rescanned, rescan_filed
FROM hourly ORDER BY mailbox, hour;
DROP TABLE hourly;
ALTER TABLE hourly_by_mailbox RENAME TO hourly;
CREATE INDEX hourly_hour ON hourly (hour);
"#
);

/// Schema 1 → 2.
const MIGRATE_2: &str = r#"
ALTER TABLE filed ADD COLUMN pass TEXT NOT NULL DEFAULT 'delivery';
ALTER TABLE filed ADD COLUMN delivered INTEGER;
ALTER TABLE hourly ADD COLUMN blocked INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hourly ADD COLUMN unblocked INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hourly ADD COLUMN rescanned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hourly ADD COLUMN rescan_filed INTEGER NOT NULL DEFAULT 0;
"#;

/// Opens (creating and migrating) the database at `path`.
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let mut connection = {
        let _serial = OPEN_CLOSE.lock().unwrap_or_else(|e| e.into_inner());
        Connection::open(path)?
    };
    connection.busy_timeout(Duration::from_secs(10))?;
    // Switching to WAL needs the database to itself, and SQLite does not
    // wait for that: retry while another connection is opening it too.
    let mut attempts = 0;
    loop {
        let mode: String = connection.pragma_query_value(None, "journal_mode", |row| row.get(0))?;
        if mode.eq_ignore_ascii_case("wal") {
            break;
        }
        match connection.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && attempts < 100 =>
            {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            other => {
                other?;
                break;
            }
        }
    }
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    let mut version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version < SCHEMA_VERSION {
        // Take the write lock first (waiting for it): the agent and a
        // command may open a new database at the same moment, and a read
        // that turns into a write would fail at once instead of waiting.
        let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        version = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version < SCHEMA_VERSION {
            if version == 0 {
                tx.execute_batch(SCHEMA)?;
            } else if version == 1 {
                tx.execute_batch(MIGRATE_2)?;
            }
            tx.execute_batch(SCHEMA_2)?;
            tx.execute_batch(SCHEMA_3)?;
            tx.execute_batch(SCHEMA_4)?;
            tx.execute_batch(SCHEMA_5)?;
            if (1..3).contains(&version) {
                tx.execute_batch(MIGRATE_3)?;
            }
            if (1..4).contains(&version) {
                tx.execute_batch(MIGRATE_4)?;
            }
            let has_model: bool = tx.query_row(
                "SELECT count(*) > 0 FROM pragma_table_info('mailboxes') WHERE name = 'model'",
                [],
                |r| r.get(0),
            )?;
            if !has_model {
                tx.execute_batch(MIGRATE_6)?;
            }
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            version = SCHEMA_VERSION;
        }
        tx.commit()?;
    }
    if version > SCHEMA_VERSION {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
            Some(format!("the state database has schema {version}, newer than this agent's {SCHEMA_VERSION}")),
        ));
    }
    Ok(connection)
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A unit of work for the state thread.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The running agent's handle on the database: every statement runs on one
/// thread, in the order sent.
#[derive(Clone)]
pub struct State {
    jobs: mpsc::Sender<Job>,
    path: PathBuf,
}

/// Opening a database file while another connection to it closes, in two
/// threads of one process, can deadlock inside SQLite's unix VFS (its
/// global mutex and a file's mutex taken in opposite orders, seen in CI):
/// the state thread's close and every open take this lock.
static OPEN_CLOSE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The state thread is gone or a statement failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// SQLite failed.
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The state thread stopped.
    #[error("the state database thread stopped")]
    Stopped,
}

impl State {
    /// Opens the database in `dir` and starts its thread.
    pub fn open(dir: &Path) -> Result<State, StateError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!("cannot create {}: {e}", dir.display())),
            )
        })?;
        let path = dir.join(FILE_NAME);
        let mut connection = open(&path)?;
        let (jobs, receiver) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("state".into())
            .spawn(move || {
                while let Ok(job) = receiver.recv() {
                    job(&mut connection);
                }
                let _serial = OPEN_CLOSE.lock().unwrap_or_else(|e| e.into_inner());
                drop(connection);
            })
            .map_err(|_| StateError::Stopped)?;
        Ok(State { jobs, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the state thread and waits for its result.
    pub async fn call<R, F>(&self, f: F) -> Result<R, StateError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |connection| {
                let _ = tx.send(f(connection));
            }))
            .map_err(|_| StateError::Stopped)?;
        Ok(rx.await.map_err(|_| StateError::Stopped)??)
    }

    /// Runs `f` on the state thread, blocking this thread until done (for
    /// code outside the async runtime).
    pub fn call_blocking<R, F>(&self, f: F) -> Result<R, StateError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .send(Box::new(move |connection| {
                let _ = tx.send(f(connection));
            }))
            .map_err(|_| StateError::Stopped)?;
        Ok(rx.recv().map_err(|_| StateError::Stopped)??)
    }

    /// Runs `f` on the state thread without waiting; failures are logged.
    pub fn send<F>(&self, f: F)
    where
        F: FnOnce(&mut Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        let _ = self.jobs.send(Box::new(move |connection| {
            if let Err(e) = f(connection) {
                tracing::error!(event_id = 500, "state database: {e}");
            }
        }));
    }
}

impl EventSink for State {
    fn store(&self, event: &Event) {
        let event = event.clone();
        self.send(move |c| insert_event(c, &event));
    }
}

// ---------------------------------------------------------------- meta

/// A value of the `meta` table.
pub fn meta_get(c: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| row.get(0)).optional()
}

/// Sets a value of the `meta` table.
pub fn meta_set(c: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
        [key, value],
    )?;
    Ok(())
}

/// A counter that changes whenever another connection (the CLI, the
/// console) commits: the agent polls it to pick up settings changes.
pub fn data_version(c: &Connection) -> rusqlite::Result<i64> {
    c.pragma_query_value(None, "data_version", |row| row.get(0))
}

// ---------------------------------------------------------------- mailboxes

/// A mailbox as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxRow {
    /// User name (or `shared/account/folder`).
    pub name: String,
    /// `user` or `shared`.
    pub kind: String,
    /// Filtered.
    pub enabled: bool,
    /// Moves are reported to the network.
    pub feedback: bool,
    /// The local model may file its mail (`policy.model` permitting).
    pub model: bool,
    /// Where it was found.
    pub source: String,
    /// Still listed by its source.
    pub present: bool,
    /// First seen (Unix seconds).
    pub first_seen: i64,
    /// Last listed (Unix seconds).
    pub last_seen: i64,
}

/// Every mailbox, by name.
pub fn mailboxes(c: &Connection) -> rusqlite::Result<Vec<MailboxRow>> {
    let mut statement = c.prepare_cached(
        "SELECT name, kind, enabled, feedback, source, present, first_seen, last_seen, model FROM mailboxes ORDER BY name",
    )?;
    statement.query_map([], mailbox_from)?.collect()
}

fn mailbox_from(row: &rusqlite::Row<'_>) -> rusqlite::Result<MailboxRow> {
    Ok(MailboxRow {
        name: row.get(0)?,
        kind: row.get(1)?,
        enabled: row.get(2)?,
        feedback: row.get(3)?,
        source: row.get(4)?,
        present: row.get(5)?,
        first_seen: row.get(6)?,
        last_seen: row.get(7)?,
        model: row.get(8)?,
    })
}

/// One page of the mailboxes whose name contains `search` (any case), by
/// name, and how many match in all.
pub fn mailboxes_page(
    c: &Connection,
    search: &str,
    offset: u32,
    limit: u32,
) -> rusqlite::Result<(Vec<MailboxRow>, u64)> {
    let pattern = format!("%{}%", search.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
    let total: i64 =
        c.query_row("SELECT count(*) FROM mailboxes WHERE name LIKE ?1 ESCAPE '\\'", [&pattern], |row| row.get(0))?;
    let mut statement = c.prepare_cached(
        "SELECT name, kind, enabled, feedback, source, present, first_seen, last_seen, model FROM mailboxes
         WHERE name LIKE ?1 ESCAPE '\\' ORDER BY name LIMIT ?2 OFFSET ?3",
    )?;
    let rows = statement.query_map(params![pattern, limit, offset], mailbox_from)?.collect::<Result<_, _>>()?;
    Ok((rows, total.max(0) as u64))
}

/// One mailbox.
pub fn mailbox(c: &Connection, name: &str) -> rusqlite::Result<Option<MailboxRow>> {
    c.query_row(
        "SELECT name, kind, enabled, feedback, source, present, first_seen, last_seen, model FROM mailboxes WHERE name = ?1",
        [name],
        mailbox_from,
    )
    .optional()
}

/// The counters of these mailboxes summed since `since`.
pub fn mailbox_totals(c: &Connection, names: &[String], since: i64) -> rusqlite::Result<BTreeMap<String, Counters>> {
    let mut statement = c.prepare_cached(
        "SELECT mailbox, sum(checked), sum(spam), sum(phish), sum(whitelisted), sum(empty), sum(errors),
                sum(blocked), sum(unblocked), sum(rescanned), sum(rescan_filed)
         FROM hourly WHERE mailbox = ?1 AND hour >= ?2",
    )?;
    let mut out = BTreeMap::new();
    for name in names {
        let counters = statement.query_row(params![name, since], |row| {
            if row.get::<_, Option<i64>>(1)?.is_none() { Ok(Counters::default()) } else { counters_from(row, 1) }
        })?;
        out.insert(name.clone(), counters);
    }
    Ok(out)
}

/// Records the mailboxes a source lists now: new ones are added (enabled
/// when `auto_enable`), known ones are marked present, and those of the same
/// source not listed any more are marked absent. Returns (added, gone).
pub fn sync_mailboxes(
    c: &mut Connection,
    names: &[String],
    kind: &str,
    source: &str,
    auto_enable: bool,
) -> rusqlite::Result<(Vec<String>, Vec<String>)> {
    let at = now();
    let tx = c.transaction()?;
    let mut added = Vec::new();
    let mut gone = Vec::new();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO mailboxes (name, kind, enabled, source, present, first_seen, last_seen)
             VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5) ON CONFLICT (name) DO NOTHING",
        )?;
        let mut seen = tx.prepare_cached("UPDATE mailboxes SET present = 1, last_seen = ?2 WHERE name = ?1")?;
        for name in names {
            if insert.execute(params![name, kind, auto_enable, source, at])? > 0 {
                added.push(name.clone());
            } else {
                seen.execute(params![name, at])?;
            }
        }
        let listed: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
        let mut present =
            tx.prepare_cached("SELECT name FROM mailboxes WHERE source = ?1 AND kind = ?2 AND present = 1")?;
        let stale: Vec<String> = present
            .query_map([source, kind], |row| row.get::<_, String>(0))?
            .filter_map(Result::ok)
            .filter(|name| !listed.contains(name.as_str()))
            .collect();
        for name in stale {
            tx.execute("UPDATE mailboxes SET present = 0 WHERE name = ?1", [&name])?;
            gone.push(name);
        }
    }
    tx.commit()?;
    Ok((added, gone))
}

/// Adds a mailbox by hand (CLI); returns false when it existed.
pub fn add_mailbox(c: &Connection, name: &str, enabled: bool, source: &str) -> rusqlite::Result<bool> {
    let changed = c.execute(
        "INSERT INTO mailboxes (name, kind, enabled, source, present, first_seen, last_seen)
         VALUES (?1, 'user', ?2, ?3, 1, ?4, ?4) ON CONFLICT (name) DO NOTHING",
        params![name, enabled, source, now()],
    )?;
    Ok(changed > 0)
}

/// Enables or disables filtering of a mailbox; false when unknown.
pub fn set_enabled(c: &Connection, name: &str, enabled: bool) -> rusqlite::Result<bool> {
    Ok(c.execute("UPDATE mailboxes SET enabled = ?2 WHERE name = ?1", params![name, enabled])? > 0)
}

/// Turns feedback on or off for a mailbox; false when unknown.
pub fn set_feedback(c: &Connection, name: &str, feedback: bool) -> rusqlite::Result<bool> {
    Ok(c.execute("UPDATE mailboxes SET feedback = ?2 WHERE name = ?1", params![name, feedback])? > 0)
}

/// Lets the local model file a mailbox's mail, or not; false when unknown.
pub fn set_model(c: &Connection, name: &str, model: bool) -> rusqlite::Result<bool> {
    Ok(c.execute("UPDATE mailboxes SET model = ?2 WHERE name = ?1", params![name, model])? > 0)
}

// ---------------------------------------------------------------- cursors

/// Where a folder was read up to: for IMAP the UIDVALIDITY and the highest
/// UID handled; for Maildir 0 and the newest delivery time (Unix seconds)
/// handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// UIDVALIDITY (IMAP) or 0.
    pub validity: u32,
    /// Last UID, or last delivery time.
    pub position: i64,
}

/// The cursor of a folder.
pub fn cursor(c: &Connection, mailbox: &str, folder: &str) -> rusqlite::Result<Option<Cursor>> {
    c.prepare_cached("SELECT validity, position FROM cursors WHERE mailbox = ?1 AND folder = ?2")?
        .query_row([mailbox, folder], |row| Ok(Cursor { validity: row.get(0)?, position: row.get(1)? }))
        .optional()
}

/// Moves the cursor of a folder.
pub fn set_cursor(c: &Connection, mailbox: &str, folder: &str, cursor: Cursor) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO cursors (mailbox, folder, validity, position, updated) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (mailbox, folder) DO UPDATE SET validity = ?3, position = ?4, updated = ?5",
    )?
    .execute(params![mailbox, folder, cursor.validity, cursor.position, now()])?;
    Ok(())
}

// ---------------------------------------------------------------- whitelist

/// A stored whitelist entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhitelistRow {
    /// "" for server-wide, else the mailbox.
    pub scope: String,
    /// The entry as written.
    pub entry: String,
    /// Free text.
    pub comment: String,
    /// When added (Unix seconds).
    pub created: i64,
}

/// Adds an entry; false when it was there already.
pub fn whitelist_add(c: &Connection, scope: &str, entry: &str, comment: &str) -> rusqlite::Result<bool> {
    Ok(c.execute(
        "INSERT INTO whitelist (scope, entry, comment, created) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        params![scope, entry, comment, now()],
    )? > 0)
}

/// Removes an entry; false when it was not there.
pub fn whitelist_remove(c: &Connection, scope: &str, entry: &str) -> rusqlite::Result<bool> {
    Ok(c.execute("DELETE FROM whitelist WHERE scope = ?1 AND entry = ?2", [scope, entry])? > 0)
}

/// Replaces an entry (`old`) by `entry` with `comment`, in one
/// transaction; false when `old` is not listed.
pub fn whitelist_replace(
    c: &mut Connection,
    scope: &str,
    old: &str,
    entry: &str,
    comment: &str,
) -> rusqlite::Result<bool> {
    let tx = c.transaction()?;
    if !whitelist_remove(&tx, scope, old)? {
        return Ok(false);
    }
    whitelist_add(&tx, scope, entry, comment)?;
    whitelist_set_comment(&tx, scope, entry, comment)?;
    tx.commit()?;
    Ok(true)
}

/// Sets an entry's comment.
pub fn whitelist_set_comment(c: &Connection, scope: &str, entry: &str, comment: &str) -> rusqlite::Result<()> {
    c.execute("UPDATE whitelist SET comment = ?3 WHERE scope = ?1 AND entry = ?2", params![scope, entry, comment])?;
    Ok(())
}

/// Entries of one scope, or of all scopes.
pub fn whitelist(c: &Connection, scope: Option<&str>) -> rusqlite::Result<Vec<WhitelistRow>> {
    let mut statement = c.prepare_cached(
        "SELECT scope, entry, comment, created FROM whitelist WHERE ?1 IS NULL OR scope = ?1 ORDER BY scope, entry",
    )?;
    statement
        .query_map([scope], |row| {
            Ok(WhitelistRow { scope: row.get(0)?, entry: row.get(1)?, comment: row.get(2)?, created: row.get(3)? })
        })?
        .collect()
}

// ---------------------------------------------------------------- outcomes

/// Counters of one mailbox for one hour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Messages checked.
    pub checked: u32,
    /// Found to be spam.
    pub spam: u32,
    /// Found to be phishing.
    pub phish: u32,
    /// Whitelisted.
    pub whitelisted: u32,
    /// Caught by the empty-message rules.
    pub empty: u32,
    /// Failed (read or action errors).
    pub errors: u32,
    /// Put into the spam folder (or marked junk) by users: spam the agent
    /// had not caught.
    pub blocked: u32,
    /// Taken out of the spam folder (or marked not junk) by users after the
    /// agent had filed them: false positives.
    pub unblocked: u32,
    /// Looked at again by a rescan.
    pub rescanned: u32,
    /// Filed by a rescan (spam that was not known at delivery).
    pub rescan_filed: u32,
}

impl Counters {
    /// Adds `other`.
    pub fn add(&mut self, other: &Counters) {
        self.checked += other.checked;
        self.spam += other.spam;
        self.phish += other.phish;
        self.whitelisted += other.whitelisted;
        self.empty += other.empty;
        self.errors += other.errors;
        self.blocked += other.blocked;
        self.unblocked += other.unblocked;
        self.rescanned += other.rescanned;
        self.rescan_filed += other.rescan_filed;
    }
}

/// A message the agent filed, so it can recognise it later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filed {
    /// Mailbox.
    pub mailbox: String,
    /// Message-ID.
    pub message_id: Option<String>,
    /// Text fingerprint (keyed digest), when the message has one.
    pub fingerprint: Option<Vec<u8>>,
    /// `spam` or `phish`.
    pub class: String,
    /// Why.
    pub reason: String,
    /// The action's name.
    pub action: String,
    /// The destination folder ("" when not moved).
    pub folder: String,
    /// How it was found: `delivery`, `recheck` or `rescan`.
    pub pass: &'static str,
    /// What identifies this delivery (IMAP INTERNALDATE, Maildir inode),
    /// when known.
    pub delivered: Option<i64>,
}

/// Adds a batch's hourly counters (by hour start, Unix seconds, and
/// mailbox), in one transaction.
pub fn record_batch(c: &mut Connection, counters: &BTreeMap<(i64, String), Counters>) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO hourly (hour, mailbox, checked, spam, phish, whitelisted, empty, errors,
                                 blocked, unblocked, rescanned, rescan_filed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (mailbox, hour) DO UPDATE SET
               checked = checked + ?3, spam = spam + ?4, phish = phish + ?5,
               whitelisted = whitelisted + ?6, empty = empty + ?7, errors = errors + ?8,
               blocked = blocked + ?9, unblocked = unblocked + ?10, rescanned = rescanned + ?11,
               rescan_filed = rescan_filed + ?12",
        )?;
        let mut total = tx.prepare_cached(
            "INSERT INTO hourly_total (hour, checked, spam, phish, whitelisted, empty, errors,
                                       blocked, unblocked, rescanned, rescan_filed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (hour) DO UPDATE SET
               checked = checked + ?2, spam = spam + ?3, phish = phish + ?4,
               whitelisted = whitelisted + ?5, empty = empty + ?6, errors = errors + ?7,
               blocked = blocked + ?8, unblocked = unblocked + ?9, rescanned = rescanned + ?10,
               rescan_filed = rescan_filed + ?11",
        )?;
        let mut hours: BTreeMap<i64, Counters> = BTreeMap::new();
        for ((hour, _), n) in counters {
            hours.entry(*hour).or_default().add(n);
        }
        for (hour, n) in &hours {
            total.execute(params![
                hour,
                n.checked,
                n.spam,
                n.phish,
                n.whitelisted,
                n.empty,
                n.errors,
                n.blocked,
                n.unblocked,
                n.rescanned,
                n.rescan_filed
            ])?;
        }
        for ((hour, mailbox), n) in counters {
            upsert.execute(params![
                hour,
                mailbox,
                n.checked,
                n.spam,
                n.phish,
                n.whitelisted,
                n.empty,
                n.errors,
                n.blocked,
                n.unblocked,
                n.rescanned,
                n.rescan_filed
            ])?;
        }
    }
    tx.commit()
}

/// Records messages about to be filed, in one transaction; returns their
/// ids, in order.
pub fn insert_filed(c: &mut Connection, filed: &[Filed]) -> rusqlite::Result<Vec<i64>> {
    let tx = c.transaction()?;
    let mut ids = Vec::with_capacity(filed.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO filed (mailbox, message_id, fingerprint, class, reason, action, folder, at, pass, delivered)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let at = now();
        for f in filed {
            insert.execute(params![
                f.mailbox,
                f.message_id,
                f.fingerprint,
                f.class,
                f.reason,
                f.action,
                f.folder,
                at,
                f.pass,
                f.delivered
            ])?;
            ids.push(tx.last_insert_rowid());
        }
    }
    tx.commit()?;
    Ok(ids)
}

/// Records where filed messages went: (id, folder).
pub fn set_filed_folders(c: &mut Connection, folders: &[(i64, String)]) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    for (id, folder) in folders {
        tx.execute("UPDATE filed SET folder = ?2 WHERE id = ?1", params![id, folder])?;
    }
    tx.commit()
}

/// Forgets records of messages that were not filed after all.
pub fn unfile(c: &Connection, ids: &[i64]) -> rusqlite::Result<()> {
    for id in ids {
        c.execute("DELETE FROM filed WHERE id = ?1", [id])?;
    }
    Ok(())
}

/// Hourly counters since `since` (Unix seconds), for one mailbox or all.
pub fn hourly(c: &Connection, since: i64, mailbox: Option<&str>) -> rusqlite::Result<Vec<(i64, String, Counters)>> {
    let mut statement = c.prepare_cached(
        "SELECT hour, mailbox, checked, spam, phish, whitelisted, empty, errors,
                blocked, unblocked, rescanned, rescan_filed FROM hourly
         WHERE hour >= ?1 AND (?2 IS NULL OR mailbox = ?2) ORDER BY hour, mailbox",
    )?;
    statement
        .query_map(params![since, mailbox], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                Counters {
                    checked: row.get(2)?,
                    spam: row.get(3)?,
                    phish: row.get(4)?,
                    whitelisted: row.get(5)?,
                    empty: row.get(6)?,
                    errors: row.get(7)?,
                    blocked: row.get(8)?,
                    unblocked: row.get(9)?,
                    rescanned: row.get(10)?,
                    rescan_filed: row.get(11)?,
                },
            ))
        })?
        .collect()
}

fn counters_from(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Counters> {
    Ok(Counters {
        checked: row.get(first)?,
        spam: row.get(first + 1)?,
        phish: row.get(first + 2)?,
        whitelisted: row.get(first + 3)?,
        empty: row.get(first + 4)?,
        errors: row.get(first + 5)?,
        blocked: row.get(first + 6)?,
        unblocked: row.get(first + 7)?,
        rescanned: row.get(first + 8)?,
        rescan_filed: row.get(first + 9)?,
    })
}

/// The counters of every mailbox together, per hour, for hours in
/// `[since, until)`: hours without activity are absent.
pub fn hourly_totals(c: &Connection, since: i64, until: i64) -> rusqlite::Result<Vec<(i64, Counters)>> {
    let mut statement = c.prepare_cached(
        "SELECT hour, checked, spam, phish, whitelisted, empty, errors,
                blocked, unblocked, rescanned, rescan_filed FROM hourly_total
         WHERE hour >= ?1 AND hour < ?2 ORDER BY hour",
    )?;
    statement.query_map(params![since, until], |row| Ok((row.get(0)?, counters_from(row, 1)?)))?.collect()
}

/// One mailbox's counters per hour in `[since, until)`.
pub fn hourly_of(c: &Connection, mailbox: &str, since: i64, until: i64) -> rusqlite::Result<Vec<(i64, Counters)>> {
    let mut statement = c.prepare_cached(
        "SELECT hour, checked, spam, phish, whitelisted, empty, errors,
                blocked, unblocked, rescanned, rescan_filed FROM hourly
         WHERE mailbox = ?1 AND hour >= ?2 AND hour < ?3 ORDER BY hour",
    )?;
    statement.query_map(params![mailbox, since, until], |row| Ok((row.get(0)?, counters_from(row, 1)?)))?.collect()
}

/// Forgets the oldest hour of per-mailbox counters when it is before
/// `before` (Unix seconds); returns how many rows went. One hour at a time
/// (at most a row per mailbox), so a long backlog is cleared in short
/// steps that leave the database to others in between. The organisation's
/// totals per hour (`hourly_total`) stay.
pub fn hourly_expire_step(c: &Connection, before: i64) -> rusqlite::Result<usize> {
    c.prepare_cached("DELETE FROM hourly WHERE hour = (SELECT min(hour) FROM hourly) AND hour < ?1")?.execute([before])
}

// ---------------------------------------------------------------- settings

/// The stored settings (key → JSON value).
pub fn settings(c: &Connection) -> rusqlite::Result<BTreeMap<String, serde_json::Value>> {
    let mut statement = c.prepare_cached("SELECT key, value FROM settings ORDER BY key")?;
    let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (key, text) = row?;
        out.insert(key, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)));
    }
    Ok(out)
}

/// Stores a setting (`None`: back to the configuration file's value).
pub fn setting_put(c: &Connection, key: &str, value: Option<&serde_json::Value>, by: &str) -> rusqlite::Result<()> {
    match value {
        Some(value) => c.execute(
            "INSERT INTO settings (key, value, updated, updated_by) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (key) DO UPDATE SET value = ?2, updated = ?3, updated_by = ?4",
            params![key, value.to_string(), now(), by],
        )?,
        None => c.execute("DELETE FROM settings WHERE key = ?1", [key])?,
    };
    Ok(())
}

/// What the agent last filed in a mailbox under this Message-ID (or, for
/// a message without one, this text fingerprint): (action, destination
/// folder — "" until the move is done, delivery identity).
pub fn filed_lookup(
    c: &Connection,
    mailbox: &str,
    message_id: Option<&str>,
    fingerprint: Option<&[u8]>,
) -> rusqlite::Result<Option<(String, String, Option<i64>)>> {
    if let Some(id) = message_id {
        return c
            .prepare_cached(
                "SELECT action, folder, delivered FROM filed WHERE mailbox = ?1 AND message_id = ?2
                 ORDER BY id DESC LIMIT 1",
            )?
            .query_row(params![mailbox, id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .optional();
    }
    if let Some(fingerprint) = fingerprint {
        return c
            .prepare_cached(
                "SELECT action, folder, delivered FROM filed WHERE mailbox = ?1 AND message_id IS NULL
                 AND fingerprint = ?2 ORDER BY id DESC LIMIT 1",
            )?
            .query_row(params![mailbox, fingerprint], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .optional();
    }
    Ok(None)
}

/// Spam the milter flagged (action `inline`) was seen in the spam folder:
/// its return to the inbox is a rescue from now on (`inline-filed`).
pub fn filed_inline_arrived(c: &Connection, mailbox: &str, message_ids: &[String]) -> rusqlite::Result<()> {
    let mut update = c.prepare_cached(
        "UPDATE filed SET action = 'inline-filed' WHERE mailbox = ?1 AND message_id = ?2 AND action = 'inline'",
    )?;
    for id in message_ids {
        update.execute(params![mailbox, id])?;
    }
    Ok(())
}

/// Forgets filed messages older than `before` (Unix seconds); returns how
/// many.
pub fn filed_expire(c: &Connection, before: i64) -> rusqlite::Result<usize> {
    c.execute("DELETE FROM filed WHERE at < ?1", [before])
}

// ---------------------------------------------------------------- feedback

/// A user's opinion of one message, and the report it calls for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedbackRow {
    /// `spam` (put into the spam folder, marked junk) or `ham` (taken out,
    /// marked not junk).
    pub opinion: String,
    /// The agent had filed the message (so `ham` is a false positive).
    pub filed: bool,
    /// The fingerprint set (protobuf), reported and revoked with it.
    pub fingerprints: Option<Vec<u8>>,
    /// The report the network should hold: `spam`, `not-spam` or "".
    pub desired: String,
    /// The report the network holds: `spam`, `not-spam` or "".
    pub sent: String,
}

/// A user's opinion of a message (by its key, see `feedback::key`).
pub fn feedback_get(c: &Connection, mailbox: &str, key: &str) -> rusqlite::Result<Option<FeedbackRow>> {
    c.prepare_cached(
        "SELECT opinion, filed, fingerprints, desired, sent FROM feedback WHERE mailbox = ?1 AND key = ?2",
    )?
    .query_row([mailbox, key], |row| {
        Ok(FeedbackRow {
            opinion: row.get(0)?,
            filed: row.get(1)?,
            fingerprints: row.get(2)?,
            desired: row.get(3)?,
            sent: row.get(4)?,
        })
    })
    .optional()
}

/// Stores a user's opinion of a message.
pub fn feedback_put(c: &Connection, mailbox: &str, key: &str, row: &FeedbackRow) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO feedback (mailbox, key, opinion, filed, fingerprints, desired, sent, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (mailbox, key) DO UPDATE SET
           opinion = ?3, filed = ?4, fingerprints = ?5, desired = ?6, sent = ?7, at = ?8",
    )?
    .execute(params![mailbox, key, row.opinion, row.filed, row.fingerprints, row.desired, row.sent, now()])?;
    Ok(())
}

/// Reports still to send or withdraw: (mailbox, key, row), oldest first.
pub fn feedback_outbox(c: &Connection, limit: u32) -> rusqlite::Result<Vec<(String, String, FeedbackRow)>> {
    c.prepare_cached(
        "SELECT mailbox, key, opinion, filed, fingerprints, desired, sent FROM feedback
         WHERE desired <> sent ORDER BY at LIMIT ?1",
    )?
    .query_map([limit], |row| {
        Ok((
            row.get(0)?,
            row.get(1)?,
            FeedbackRow {
                opinion: row.get(2)?,
                filed: row.get(3)?,
                fingerprints: row.get(4)?,
                desired: row.get(5)?,
                sent: row.get(6)?,
            },
        ))
    })?
    .collect()
}

/// Records that the network now holds `report` for these messages:
/// (mailbox, key, report). A row whose wish changed meanwhile stays in the
/// outbox.
pub fn feedback_sent(c: &mut Connection, done: &[(String, String, String)]) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    {
        let mut update =
            tx.prepare_cached("UPDATE feedback SET sent = ?3 WHERE mailbox = ?1 AND key = ?2 AND desired = ?3")?;
        for (mailbox, key, report) in done {
            update.execute(params![mailbox, key, report])?;
        }
    }
    tx.commit()
}

/// Reports waiting to be sent.
pub fn feedback_pending(c: &Connection) -> rusqlite::Result<u64> {
    c.query_row("SELECT count(*) FROM feedback WHERE desired <> sent", [], |row| row.get::<_, i64>(0)).map(|n| n as u64)
}

// ---------------------------------------------------------------- rescans

/// A rescan: asked for, running or finished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RescanRow {
    /// Its id.
    pub id: i64,
    /// The mailbox.
    pub mailbox: String,
    /// Messages delivered since this time (Unix seconds) are looked at.
    pub since: i64,
    /// `schedule` or `request` (CLI, console).
    pub origin: String,
    /// `requested`, `running`, `done` or `failed`.
    pub status: String,
    /// When asked for (Unix seconds).
    pub requested_at: i64,
    /// When started.
    pub started_at: Option<i64>,
    /// When finished.
    pub finished_at: Option<i64>,
    /// Messages to look at.
    pub total: u64,
    /// Messages looked at so far.
    pub checked: u64,
    /// Messages filed.
    pub filed: u64,
    /// Why it failed, or a note.
    pub detail: String,
}

/// Asks for a rescan of a mailbox; returns its id.
pub fn rescan_request(c: &Connection, mailbox: &str, since: i64, origin: &str) -> rusqlite::Result<i64> {
    c.prepare_cached(
        "INSERT INTO rescans (mailbox, since, origin, status, requested_at) VALUES (?1, ?2, ?3, 'requested', ?4)",
    )?
    .execute(params![mailbox, since, origin, now()])?;
    Ok(c.last_insert_rowid())
}

const RESCAN_COLUMNS: &str =
    "id, mailbox, since, origin, status, requested_at, started_at, finished_at, total, checked, filed, detail";

fn rescan_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RescanRow> {
    Ok(RescanRow {
        id: row.get(0)?,
        mailbox: row.get(1)?,
        since: row.get(2)?,
        origin: row.get(3)?,
        status: row.get(4)?,
        requested_at: row.get(5)?,
        started_at: row.get(6)?,
        finished_at: row.get(7)?,
        total: row.get::<_, i64>(8)? as u64,
        checked: row.get::<_, i64>(9)? as u64,
        filed: row.get::<_, i64>(10)? as u64,
        detail: row.get(11)?,
    })
}

/// Rescans with this status, oldest first.
pub fn rescans_with_status(c: &Connection, status: &str) -> rusqlite::Result<Vec<RescanRow>> {
    c.prepare_cached(&format!("SELECT {RESCAN_COLUMNS} FROM rescans WHERE status = ?1 ORDER BY id"))?
        .query_map([status], rescan_row)?
        .collect()
}

/// The latest rescans, newest first.
pub fn rescans(c: &Connection, limit: u32) -> rusqlite::Result<Vec<RescanRow>> {
    c.prepare_cached(&format!("SELECT {RESCAN_COLUMNS} FROM rescans ORDER BY id DESC LIMIT ?1"))?
        .query_map([limit], rescan_row)?
        .collect()
}

/// One rescan.
pub fn rescan(c: &Connection, id: i64) -> rusqlite::Result<Option<RescanRow>> {
    c.prepare_cached(&format!("SELECT {RESCAN_COLUMNS} FROM rescans WHERE id = ?1"))?
        .query_row([id], rescan_row)
        .optional()
}

/// Records a rescan's status and progress.
pub fn rescan_update(
    c: &Connection,
    id: i64,
    status: &str,
    (total, checked, filed): (u64, u64, u64),
    detail: &str,
) -> rusqlite::Result<()> {
    let at = now();
    c.prepare_cached(
        "UPDATE rescans SET status = ?2, total = ?3, checked = ?4, filed = ?5, detail = ?6,
           started_at = coalesce(started_at, ?7),
           finished_at = CASE WHEN ?2 IN ('done', 'failed') THEN ?7 ELSE finished_at END
         WHERE id = ?1",
    )?
    .execute(params![id, status, total as i64, checked as i64, filed as i64, detail, at])?;
    Ok(())
}

// ---------------------------------------------------------------- events

/// Stores an event.
pub fn insert_event(c: &Connection, event: &Event) -> rusqlite::Result<()> {
    c.prepare_cached("INSERT INTO events (at, code, severity, mailbox, text) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![event.at, event.id, event.severity.as_str(), event.mailbox, event.text])?;
    Ok(())
}

/// A stored event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRow {
    /// Row id (increasing).
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// Catalogue id.
    pub id: u16,
    /// Severity name.
    pub severity: String,
    /// Mailbox concerned.
    pub mailbox: Option<String>,
    /// Text.
    pub text: String,
}

fn event_from(row: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        seq: row.get(0)?,
        at: row.get(1)?,
        id: row.get(2)?,
        severity: row.get(3)?,
        mailbox: row.get(4)?,
        text: row.get(5)?,
    })
}

/// The newest events first, at most `limit`, optionally since a time, for
/// one id.
pub fn events(c: &Connection, since: i64, id: Option<u16>, limit: u32) -> rusqlite::Result<Vec<EventRow>> {
    let mut statement = c.prepare_cached(
        "SELECT id, at, code, severity, mailbox, text FROM events
         WHERE at >= ?1 AND (?2 IS NULL OR code = ?2) ORDER BY id DESC LIMIT ?3",
    )?;
    statement.query_map(params![since, id, limit], event_from)?.collect()
}

/// Which events to list.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// Only this catalogue id.
    pub id: Option<u16>,
    /// Only events at least this severe.
    pub min_severity: Option<crate::events::Severity>,
    /// From (Unix seconds).
    pub since: Option<i64>,
    /// Before (Unix seconds).
    pub until: Option<i64>,
    /// Only for this mailbox.
    pub mailbox: Option<String>,
    /// Only rows older than this row id (paging back).
    pub before_seq: Option<i64>,
}

/// The newest events matching `filter` first, at most `limit`. Only the
/// conditions given are in the statement, so that SQLite can walk the
/// index of the id or mailbox asked for instead of the whole log.
pub fn events_filtered(c: &Connection, filter: &EventFilter, limit: u32) -> rusqlite::Result<Vec<EventRow>> {
    use crate::events::Severity;
    use rusqlite::types::Value;
    let mut conditions: Vec<&str> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let mut add = |condition: &'static str, value: Value| {
        conditions.push(condition);
        values.push(value);
    };
    if let Some(id) = filter.id {
        add("code = ?", Value::Integer(id.into()));
    }
    if let Some(since) = filter.since {
        add("at >= ?", Value::Integer(since));
    }
    if let Some(until) = filter.until {
        add("at < ?", Value::Integer(until));
    }
    if let Some(mailbox) = &filter.mailbox {
        add("mailbox = ?", Value::Text(mailbox.clone()));
    }
    if let Some(seq) = filter.before_seq {
        add("id < ?", Value::Integer(seq));
    }
    if let Some(min) = filter.min_severity.filter(|min| *min > Severity::Info) {
        let severities: Vec<&str> = [Severity::Notice, Severity::Warning, Severity::Error, Severity::Critical]
            .into_iter()
            .filter(|s| *s >= min)
            .map(Severity::as_str)
            .collect();
        add(
            "severity IN (SELECT value FROM json_each(?))",
            Value::Text(serde_json::to_string(&severities).unwrap_or_default()),
        );
    }
    let mut sql = String::from("SELECT id, at, code, severity, mailbox, text FROM events");
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    values.push(Value::Integer(limit.into()));
    let mut statement = c.prepare_cached(&sql)?;
    statement.query_map(rusqlite::params_from_iter(values), event_from)?.collect()
}

// ---------------------------------------------------------------- re-check queue

/// Queues messages for a re-check, up to `max` queued in all; returns how
/// many were not queued because the queue is full.
pub fn recheck_enqueue(
    c: &mut Connection,
    mailbox: &str,
    folder: &str,
    locators: &[String],
    max: u32,
) -> rusqlite::Result<usize> {
    let tx = c.transaction()?;
    let mut queued: i64 = tx.query_row("SELECT count(*) FROM recheck", [], |row| row.get(0))?;
    let mut refused = 0;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO recheck (mailbox, folder, locator, queued_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        )?;
        let at = now();
        for locator in locators {
            if queued >= i64::from(max) {
                refused += 1;
                continue;
            }
            queued += insert.execute(params![mailbox, folder, locator, at])? as i64;
        }
    }
    tx.commit()?;
    Ok(refused)
}

/// Mailboxes with queued messages, and how many each.
pub fn recheck_mailboxes(c: &Connection) -> rusqlite::Result<Vec<(String, u64)>> {
    c.prepare_cached("SELECT mailbox, count(*) FROM recheck GROUP BY mailbox")?
        .query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)))?
        .collect()
}

/// Up to `limit` queued messages of a mailbox, oldest first, as (folder,
/// locator).
pub fn recheck_take(c: &Connection, mailbox: &str, limit: u32) -> rusqlite::Result<Vec<(String, String)>> {
    c.prepare_cached("SELECT folder, locator FROM recheck WHERE mailbox = ?1 ORDER BY queued_at LIMIT ?2")?
        .query_map(params![mailbox, limit], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect()
}

/// Removes queued messages.
pub fn recheck_done(c: &mut Connection, mailbox: &str, folder: &str, locators: &[String]) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    {
        let mut delete =
            tx.prepare_cached("DELETE FROM recheck WHERE mailbox = ?1 AND folder = ?2 AND locator = ?3")?;
        for locator in locators {
            delete.execute(params![mailbox, folder, locator])?;
        }
    }
    tx.commit()
}

/// Drops queued messages older than `before` (Unix seconds); returns how
/// many.
pub fn recheck_expire(c: &Connection, before: i64) -> rusqlite::Result<usize> {
    c.execute("DELETE FROM recheck WHERE queued_at < ?1", [before])
}

/// Drops every queued re-check (filtering stopped).
pub fn recheck_clear(c: &Connection) -> rusqlite::Result<usize> {
    c.execute("DELETE FROM recheck", [])
}

/// Messages waiting for a re-check.
pub fn recheck_count(c: &Connection) -> rusqlite::Result<u64> {
    c.query_row("SELECT count(*) FROM recheck", [], |row| row.get::<_, i64>(0)).map(|n| n as u64)
}

// ---------------------------------------------------------------- journal

/// An action in progress: written before the first change to the mail
/// store, removed after the last, so that a restart can finish or undo it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalRow {
    /// Row id.
    pub id: i64,
    /// Folder of the original.
    pub folder: String,
    /// `tag`.
    pub operation: String,
    /// The original (UID, or Maildir file name).
    pub original: String,
    /// The replacement (the tag mark, or the new file name).
    pub replacement: String,
    /// When it was written (Unix seconds).
    pub at: i64,
}

/// Writes a journal entry; returns its id.
pub fn journal_begin(
    c: &Connection,
    mailbox: &str,
    folder: &str,
    operation: &str,
    original: &str,
    replacement: &str,
) -> rusqlite::Result<i64> {
    c.prepare_cached(
        "INSERT INTO journal (mailbox, folder, operation, original, replacement, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![mailbox, folder, operation, original, replacement, now()])?;
    Ok(c.last_insert_rowid())
}

/// Removes a journal entry.
pub fn journal_end(c: &Connection, id: i64) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM journal WHERE id = ?1")?.execute([id])?;
    Ok(())
}

/// The journal entries of a mailbox.
pub fn journal(c: &Connection, mailbox: &str) -> rusqlite::Result<Vec<JournalRow>> {
    c.prepare_cached(
        "SELECT id, folder, operation, original, replacement, at FROM journal WHERE mailbox = ?1 ORDER BY id",
    )?
    .query_map([mailbox], |row| {
        Ok(JournalRow {
            id: row.get(0)?,
            folder: row.get(1)?,
            operation: row.get(2)?,
            original: row.get(3)?,
            replacement: row.get(4)?,
            at: row.get(5)?,
        })
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let c = open(&dir.path().join(FILE_NAME)).unwrap();
        (dir, c)
    }

    #[test]
    fn mailboxes_sync_adds_and_marks_gone() {
        let (_dir, mut c) = db();
        let names = vec!["alice".to_owned(), "bob".to_owned()];
        let (added, gone) = sync_mailboxes(&mut c, &names, "user", "maildir", true).unwrap();
        assert_eq!(added, names);
        assert!(gone.is_empty());
        let (added, gone) = sync_mailboxes(&mut c, &names[..1], "user", "maildir", true).unwrap();
        assert!(added.is_empty());
        assert_eq!(gone, ["bob"]);
        let rows = mailboxes(&c).unwrap();
        assert!(rows[0].present && rows[0].enabled && !rows[1].present);
        assert!(set_enabled(&c, "alice", false).unwrap());
        assert!(!mailboxes(&c).unwrap()[0].enabled);
        assert!(!set_enabled(&c, "nobody", false).unwrap());
        // Re-listing keeps the admin's choice.
        sync_mailboxes(&mut c, &names, "user", "maildir", true).unwrap();
        assert!(!mailboxes(&c).unwrap()[0].enabled);
    }

    #[test]
    fn recheck_queue_is_bounded() {
        let (_dir, mut c) = db();
        let locators: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert_eq!(recheck_enqueue(&mut c, "alice", "INBOX", &locators, 6).unwrap(), 4);
        assert_eq!(recheck_count(&c).unwrap(), 6);
        assert_eq!(recheck_mailboxes(&c).unwrap(), [("alice".to_owned(), 6)]);
        let taken = recheck_take(&c, "alice", 4).unwrap();
        assert_eq!(taken.len(), 4);
        let done: Vec<String> = taken.into_iter().map(|(_, l)| l).collect();
        recheck_done(&mut c, "alice", "INBOX", &done).unwrap();
        assert_eq!(recheck_count(&c).unwrap(), 2);
    }

    #[test]
    fn counters_accumulate() {
        let (_dir, mut c) = db();
        let mut batch = BTreeMap::new();
        batch.insert((3600, "alice".to_owned()), Counters { checked: 2, spam: 1, ..Counters::default() });
        record_batch(&mut c, &batch).unwrap();
        record_batch(&mut c, &batch).unwrap();
        let rows = hourly(&c, 0, None).unwrap();
        assert_eq!(rows, [(3600, "alice".to_owned(), Counters { checked: 4, spam: 2, ..Counters::default() })]);
    }

    #[test]
    fn old_hourly_counters_go_an_hour_at_a_time_and_totals_stay() {
        let (_dir, mut c) = db();
        let mut batch = BTreeMap::new();
        for hour in [0, 3600, 7200] {
            for mailbox in ["alice", "bob"] {
                batch.insert((hour, mailbox.to_owned()), Counters { checked: 1, ..Counters::default() });
            }
        }
        record_batch(&mut c, &batch).unwrap();
        assert_eq!(hourly_expire_step(&c, 7200).unwrap(), 2);
        assert_eq!(hourly_expire_step(&c, 7200).unwrap(), 2);
        assert_eq!(hourly_expire_step(&c, 7200).unwrap(), 0);
        let left: Vec<i64> = hourly(&c, 0, None).unwrap().into_iter().map(|(hour, _, _)| hour).collect();
        assert_eq!(left, [7200, 7200]);
        assert_eq!(hourly_totals(&c, 0, 10_800).unwrap().len(), 3);
    }

    #[test]
    fn events_filter_by_each_condition_through_their_indexes() {
        use crate::events::{self, Event, Severity};
        let (_dir, c) = db();
        let kinds = [events::AGENT_STARTED, events::STATE_ERROR, events::AGENT_STARTED, events::STATE_ERROR];
        for (i, kind) in kinds.into_iter().enumerate() {
            let event = Event {
                at: 1000 + i as i64,
                id: kind.id,
                name: kind.name,
                severity: kind.severity,
                mailbox: (i % 2 == 1).then(|| "alice".to_owned()),
                text: format!("event {i}"),
            };
            insert_event(&c, &event).unwrap();
        }
        let texts = |filter: EventFilter| -> Vec<String> {
            events_filtered(&c, &filter, 10).unwrap().into_iter().map(|e| e.text).collect()
        };
        assert_eq!(texts(EventFilter::default()), ["event 3", "event 2", "event 1", "event 0"]);
        assert_eq!(
            texts(EventFilter { id: Some(events::AGENT_STARTED.id), ..Default::default() }),
            ["event 2", "event 0"]
        );
        assert_eq!(texts(EventFilter { mailbox: Some("alice".into()), ..Default::default() }), ["event 3", "event 1"]);
        assert_eq!(
            texts(EventFilter { min_severity: Some(Severity::Error), since: Some(1002), ..Default::default() }),
            ["event 3"]
        );
        assert_eq!(
            texts(EventFilter { before_seq: Some(3), until: Some(1002), ..Default::default() }),
            ["event 1", "event 0"]
        );
        for (condition, index) in [("code = 1", "events_by_code"), ("mailbox = 'alice'", "events_by_mailbox")] {
            let plan: String = c
                .query_row(
                    &format!("EXPLAIN QUERY PLAN SELECT id FROM events WHERE {condition} ORDER BY id DESC LIMIT 100"),
                    [],
                    |r| r.get(3),
                )
                .unwrap();
            assert!(plan.contains(index), "{condition}: {plan}");
        }
    }

    #[test]
    fn schema_5_mailboxes_get_the_model_switch_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        {
            let c = open(&path).unwrap();
            // The table as schema 5 had it, with a row.
            c.execute_batch(
                "DROP TABLE mailboxes;
                 CREATE TABLE mailboxes (name TEXT PRIMARY KEY, kind TEXT NOT NULL DEFAULT 'user',
                     enabled INTEGER NOT NULL, feedback INTEGER NOT NULL DEFAULT 1, source TEXT NOT NULL,
                     present INTEGER NOT NULL DEFAULT 1, first_seen INTEGER NOT NULL,
                     last_seen INTEGER NOT NULL) WITHOUT ROWID;
                 INSERT INTO mailboxes (name, enabled, feedback, source, first_seen, last_seen)
                     VALUES ('alice', 1, 0, 'list', 1, 2);
                 PRAGMA user_version = 5;",
            )
            .unwrap();
        }
        let c = open(&path).unwrap();
        let alice = mailbox(&c, "alice").unwrap().unwrap();
        assert!(alice.model && alice.enabled && !alice.feedback, "{alice:?}");
        assert!(set_model(&c, "alice", false).unwrap());
        assert!(!mailbox(&c, "alice").unwrap().unwrap().model);
        assert!(!set_model(&c, "nobody", false).unwrap());
    }

    #[test]
    fn schema_3_counters_move_to_the_mailbox_first_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        {
            let c = open(&path).unwrap();
            // The table as schema 3 had it, with a row.
            c.execute_batch(
                "DROP TABLE hourly;
                 CREATE TABLE hourly (hour INTEGER NOT NULL, mailbox TEXT NOT NULL,
                     checked INTEGER NOT NULL DEFAULT 0, spam INTEGER NOT NULL DEFAULT 0,
                     phish INTEGER NOT NULL DEFAULT 0, whitelisted INTEGER NOT NULL DEFAULT 0,
                     empty INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0,
                     blocked INTEGER NOT NULL DEFAULT 0, unblocked INTEGER NOT NULL DEFAULT 0,
                     rescanned INTEGER NOT NULL DEFAULT 0, rescan_filed INTEGER NOT NULL DEFAULT 0,
                     PRIMARY KEY (hour, mailbox)) WITHOUT ROWID;
                 CREATE INDEX hourly_mailbox ON hourly (mailbox, hour);
                 INSERT INTO hourly (hour, mailbox, checked, spam, unblocked) VALUES (3600, 'alice', 5, 2, 1);
                 PRAGMA user_version = 3;",
            )
            .unwrap();
        }
        let c = open(&path).unwrap();
        let rows = hourly(&c, 0, None).unwrap();
        assert_eq!(
            rows,
            [(3600, "alice".to_owned(), Counters { checked: 5, spam: 2, unblocked: 1, ..Counters::default() })]
        );
        let plan: String = c
            .query_row("EXPLAIN QUERY PLAN SELECT checked FROM hourly WHERE mailbox = 'alice' AND hour >= 0", [], |r| {
                r.get(3)
            })
            .unwrap();
        assert!(plan.contains("PRIMARY KEY (mailbox=? AND hour>?)"), "{plan}");
    }
}
