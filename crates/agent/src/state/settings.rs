//! Settings changed while running (`settings`), and look-ups of the `filed` table by Message-ID.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::now;

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
