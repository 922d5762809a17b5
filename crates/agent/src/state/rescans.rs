//! Rescans asked for, running and done (`rescans`).

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::now;

/// Where a rescan is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RescanStatus {
    /// Asked for (by the CLI, the console or the schedule).
    Requested,
    /// Handed to its mailbox's task.
    Queued,
    /// Being done.
    Running,
    /// Finished.
    Done,
    /// Given up (see its detail).
    Failed,
}

super::stored_as_text!(RescanStatus, "rescan status", {
    Requested => "requested",
    Queued => "queued",
    Running => "running",
    Done => "done",
    Failed => "failed",
});

impl RescanStatus {
    /// Whether it is over.
    pub fn finished(self) -> bool {
        matches!(self, RescanStatus::Done | RescanStatus::Failed)
    }
}

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
    pub status: RescanStatus,
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
pub fn rescans_with_status(c: &Connection, status: RescanStatus) -> rusqlite::Result<Vec<RescanRow>> {
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
    status: RescanStatus,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_stored_and_shown_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let c = crate::state::open(&dir.path().join("s.sqlite3")).unwrap();
        let id = rescan_request(&c, "alice", 0, "request").unwrap();
        assert_eq!(rescan(&c, id).unwrap().unwrap().status, RescanStatus::Requested);
        for status in [RescanStatus::Queued, RescanStatus::Running, RescanStatus::Done, RescanStatus::Failed] {
            rescan_update(&c, id, status, (1, 1, 0), "").unwrap();
            let row = rescan(&c, id).unwrap().unwrap();
            assert_eq!(row.status, status);
            assert_eq!(row.finished_at.is_some(), status.finished());
            let stored: String = c.query_row("SELECT status FROM rescans WHERE id = ?1", [id], |r| r.get(0)).unwrap();
            assert_eq!(stored, status.as_str());
            assert_eq!(serde_json::to_string(&status).unwrap(), format!("\"{status}\""));
        }
        c.execute("UPDATE rescans SET status = 'lost' WHERE id = ?1", [id]).unwrap();
        assert!(rescan(&c, id).is_err(), "a status this agent does not know is an error, not a guess");
    }
}
