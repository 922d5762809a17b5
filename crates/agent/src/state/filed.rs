//! The messages the agent filed (`filed`): recorded before the action,
//! so that finding one of them in the spam folder later is known to be
//! the agent's own doing, and taking it out again a user's rescue.

use rusqlite::{Connection, OptionalExtension, params};

use super::now;

/// What the agent did with a message it filed, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FiledAction {
    /// Moved into the spam folder.
    SpamFolder,
    /// Moved into another folder.
    Folder,
    /// Moved to the trash.
    Trash,
    /// Its subject tagged.
    Tag,
    /// Deleted.
    Delete,
    /// Flagged by the milter for filing (a Sieve rule or this agent files
    /// it after delivery).
    Inline,
    /// Flagged by the milter and seen arriving in the spam folder.
    InlineFiled,
}

super::stored_as_text!(FiledAction, "filed action", {
    SpamFolder => "spam-folder",
    Folder => "folder",
    Trash => "trash",
    Tag => "tag",
    Delete => "delete",
    Inline => "inline",
    InlineFiled => "inline-filed",
});

impl FiledAction {
    /// The milter flagged it (whether or not it was seen filed since).
    pub fn inline(self) -> bool {
        matches!(self, FiledAction::Inline | FiledAction::InlineFiled)
    }

    /// It went into a folder of its own: the spam folder, another folder,
    /// the trash.
    pub fn moved(self) -> bool {
        matches!(self, FiledAction::SpamFolder | FiledAction::Folder | FiledAction::Trash)
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
    /// What was done.
    pub action: FiledAction,
    /// The destination folder ("" when not moved).
    pub folder: String,
    /// How it was found: `delivery`, `recheck` or `rescan`.
    pub pass: &'static str,
    /// What identifies this delivery (IMAP INTERNALDATE, Maildir inode),
    /// when known.
    pub delivered: Option<i64>,
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

/// What the agent last filed in a mailbox under this Message-ID (or, for
/// a message without one, this text fingerprint): (action, destination
/// folder — "" until the move is done, delivery identity).
pub fn filed_lookup(
    c: &Connection,
    mailbox: &str,
    message_id: Option<&str>,
    fingerprint: Option<&[u8]>,
) -> rusqlite::Result<Option<(FiledAction, String, Option<i64>)>> {
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
    let mut update =
        c.prepare_cached("UPDATE filed SET action = ?3 WHERE mailbox = ?1 AND message_id = ?2 AND action = ?4")?;
    for id in message_ids {
        update.execute(params![mailbox, id, FiledAction::InlineFiled, FiledAction::Inline])?;
    }
    Ok(())
}

/// Forgets filed messages older than `before` (Unix seconds); returns how
/// many.
pub fn filed_expire(c: &Connection, before: i64) -> rusqlite::Result<usize> {
    c.execute("DELETE FROM filed WHERE at < ?1", [before])
}
