//! Messages waiting for a re-check while the network is away (`recheck`).

use rusqlite::{Connection, params};

use super::now;

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
