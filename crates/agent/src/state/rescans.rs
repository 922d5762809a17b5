//! Rescans asked for, running and done (`rescans`).

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::now;

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
