//! The schema and its migrations: a new database gets the newest schema,
//! an older one each step it misses, in one transaction; a newer one is
//! refused.

use rusqlite::Connection;

pub(super) const SCHEMA_VERSION: i64 = 7;

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
CREATE TABLE IF NOT EXISTS model_history (
    mailbox TEXT PRIMARY KEY,
    at INTEGER NOT NULL,
    spam INTEGER NOT NULL,
    ham INTEGER NOT NULL
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

/// Brings the schema of an open database up to [`SCHEMA_VERSION`].
pub(super) fn migrate(connection: &mut Connection) -> rusqlite::Result<()> {
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
    Ok(())
}
