//! Whitelist entries, server-wide and per mailbox (`whitelist`).

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::now;

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
