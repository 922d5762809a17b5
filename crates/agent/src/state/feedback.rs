//! Users' moves and the reports still to send (`feedback`).

use rusqlite::{Connection, OptionalExtension, params};

use super::now;

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
