//! Watching what the agent files: the state database's `filed` table polled
//! every 50 ms from a thread of its own, and the time each delivery was filed.

use super::*;

/// A filing as the bench saw it: the `filed` row, and when the poller
/// first saw it done (after the poll before, by the poll that saw it).
#[derive(Clone, Debug)]
pub(super) struct FiledRow {
    pub(super) mailbox: String,
    pub(super) message_id: String,
    pub(super) reason: String,
    pub(super) pass: String,
    pub(super) at: i64,
    pub(super) seen: Option<(f64, f64)>,
}

impl FiledRow {
    /// When it was done at the latest (unix seconds): the poll that saw
    /// it, else the row's seconds-granular `at` (rounded up).
    pub(super) fn done_by(&self) -> f64 {
        self.seen.map(|(_, by)| by).unwrap_or(self.at as f64 + 1.0)
    }
}

#[derive(Default)]
pub(super) struct Polled {
    pub(super) rows: std::collections::BTreeMap<i64, FiledRow>,
    /// When the newest row was first seen (unix seconds).
    pub(super) last_new: f64,
    pub(super) errors: u64,
}

pub(super) type FiledQuery = (i64, String, String, String, String, i64, bool);

pub(super) fn read_filed(c: &rusqlite::Connection, from: i64) -> rusqlite::Result<Vec<FiledQuery>> {
    let mut statement = c.prepare_cached(
        "SELECT id, mailbox, coalesce(message_id, ''), reason, pass, at, folder <> '' FROM filed WHERE id >= ?1 ORDER BY id",
    )?;
    statement
        .query_map([from], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))?
        .collect()
}

/// Reads the agent's `filed` table every `DEPLOY_POLL` until `stop`,
/// recording when each filing was first seen done (`folder` set).
pub(super) fn poll_filed(path: &Path, polled: &std::sync::Mutex<Polled>, stop: &std::sync::atomic::AtomicBool) {
    use std::sync::atomic::Ordering;
    let mut connection = None;
    let mut low = 0i64;
    let mut previous = unix_now();
    while !stop.load(Ordering::Relaxed) {
        let started = unix_now();
        if connection.is_none() {
            connection =
                rusqlite::Connection::open(path).and_then(|c| c.busy_timeout(Duration::from_secs(5)).map(|_| c)).ok();
        }
        let rows = match connection.as_ref().map(|c| read_filed(c, low)) {
            Some(Ok(rows)) => rows,
            // Not created yet, or busy: next time.
            _ => {
                polled.lock().unwrap().errors += 1;
                connection = None;
                std::thread::sleep(DEPLOY_POLL);
                continue;
            }
        };
        let now = unix_now();
        let mut pending = None;
        let mut highest = low - 1;
        {
            let mut polled = polled.lock().unwrap();
            for (id, mailbox, message_id, reason, pass, at, done) in rows {
                highest = highest.max(id);
                if done {
                    if let std::collections::btree_map::Entry::Vacant(entry) = polled.rows.entry(id) {
                        let seen = Some((previous, now));
                        entry.insert(FiledRow { mailbox, message_id, reason, pass, at, seen });
                        polled.last_new = now;
                    }
                } else if pending.is_none() && (at as f64) > now - 120.0 {
                    // Recorded, not yet done: look at it again.
                    pending = Some(id);
                }
            }
        }
        low = pending.unwrap_or(highest + 1);
        previous = started;
        std::thread::sleep(DEPLOY_POLL);
    }
}
