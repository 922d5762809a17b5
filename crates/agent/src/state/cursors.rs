//! Where each mailbox's folders were read up to (`cursors`).

use rusqlite::{Connection, OptionalExtension, params};

use super::now;

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
