//! Mailboxes and their switches (`mailboxes`).

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::now;

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
