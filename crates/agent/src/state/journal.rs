//! Actions in progress, for recovery after a crash (`journal`).

use rusqlite::{Connection, params};

use super::now;

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
