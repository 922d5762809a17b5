//! What was done: hourly counters (`hourly`) and the messages filed (`filed`).

use std::collections::BTreeMap;

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::now;

/// Counters of one mailbox for one hour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Messages checked.
    pub checked: u32,
    /// Found to be spam.
    pub spam: u32,
    /// Found to be phishing.
    pub phish: u32,
    /// Whitelisted.
    pub whitelisted: u32,
    /// Caught by the empty-message rules.
    pub empty: u32,
    /// Failed (read or action errors).
    pub errors: u32,
    /// Put into the spam folder (or marked junk) by users: spam the agent
    /// had not caught.
    pub blocked: u32,
    /// Taken out of the spam folder (or marked not junk) by users after the
    /// agent had filed them: false positives.
    pub unblocked: u32,
    /// Looked at again by a rescan.
    pub rescanned: u32,
    /// Filed by a rescan (spam that was not known at delivery).
    pub rescan_filed: u32,
}

impl Counters {
    /// Adds `other`.
    pub fn add(&mut self, other: &Counters) {
        self.checked += other.checked;
        self.spam += other.spam;
        self.phish += other.phish;
        self.whitelisted += other.whitelisted;
        self.empty += other.empty;
        self.errors += other.errors;
        self.blocked += other.blocked;
        self.unblocked += other.unblocked;
        self.rescanned += other.rescanned;
        self.rescan_filed += other.rescan_filed;
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
    /// The action's name.
    pub action: String,
    /// The destination folder ("" when not moved).
    pub folder: String,
    /// How it was found: `delivery`, `recheck` or `rescan`.
    pub pass: &'static str,
    /// What identifies this delivery (IMAP INTERNALDATE, Maildir inode),
    /// when known.
    pub delivered: Option<i64>,
}

/// Adds a batch's hourly counters (by hour start, Unix seconds, and
/// mailbox), in one transaction.
pub fn record_batch(c: &mut Connection, counters: &BTreeMap<(i64, String), Counters>) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO hourly (hour, mailbox, checked, spam, phish, whitelisted, empty, errors,
                                 blocked, unblocked, rescanned, rescan_filed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (mailbox, hour) DO UPDATE SET
               checked = checked + ?3, spam = spam + ?4, phish = phish + ?5,
               whitelisted = whitelisted + ?6, empty = empty + ?7, errors = errors + ?8,
               blocked = blocked + ?9, unblocked = unblocked + ?10, rescanned = rescanned + ?11,
               rescan_filed = rescan_filed + ?12",
        )?;
        let mut total = tx.prepare_cached(
            "INSERT INTO hourly_total (hour, checked, spam, phish, whitelisted, empty, errors,
                                       blocked, unblocked, rescanned, rescan_filed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (hour) DO UPDATE SET
               checked = checked + ?2, spam = spam + ?3, phish = phish + ?4,
               whitelisted = whitelisted + ?5, empty = empty + ?6, errors = errors + ?7,
               blocked = blocked + ?8, unblocked = unblocked + ?9, rescanned = rescanned + ?10,
               rescan_filed = rescan_filed + ?11",
        )?;
        let mut hours: BTreeMap<i64, Counters> = BTreeMap::new();
        for ((hour, _), n) in counters {
            hours.entry(*hour).or_default().add(n);
        }
        for (hour, n) in &hours {
            total.execute(params![
                hour,
                n.checked,
                n.spam,
                n.phish,
                n.whitelisted,
                n.empty,
                n.errors,
                n.blocked,
                n.unblocked,
                n.rescanned,
                n.rescan_filed
            ])?;
        }
        for ((hour, mailbox), n) in counters {
            upsert.execute(params![
                hour,
                mailbox,
                n.checked,
                n.spam,
                n.phish,
                n.whitelisted,
                n.empty,
                n.errors,
                n.blocked,
                n.unblocked,
                n.rescanned,
                n.rescan_filed
            ])?;
        }
    }
    tx.commit()
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

/// Hourly counters since `since` (Unix seconds), for one mailbox or all.
pub fn hourly(c: &Connection, since: i64, mailbox: Option<&str>) -> rusqlite::Result<Vec<(i64, String, Counters)>> {
    let mut statement = c.prepare_cached(
        "SELECT hour, mailbox, checked, spam, phish, whitelisted, empty, errors,
                blocked, unblocked, rescanned, rescan_filed FROM hourly
         WHERE hour >= ?1 AND (?2 IS NULL OR mailbox = ?2) ORDER BY hour, mailbox",
    )?;
    statement
        .query_map(params![since, mailbox], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                Counters {
                    checked: row.get(2)?,
                    spam: row.get(3)?,
                    phish: row.get(4)?,
                    whitelisted: row.get(5)?,
                    empty: row.get(6)?,
                    errors: row.get(7)?,
                    blocked: row.get(8)?,
                    unblocked: row.get(9)?,
                    rescanned: row.get(10)?,
                    rescan_filed: row.get(11)?,
                },
            ))
        })?
        .collect()
}

fn counters_from(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Counters> {
    Ok(Counters {
        checked: row.get(first)?,
        spam: row.get(first + 1)?,
        phish: row.get(first + 2)?,
        whitelisted: row.get(first + 3)?,
        empty: row.get(first + 4)?,
        errors: row.get(first + 5)?,
        blocked: row.get(first + 6)?,
        unblocked: row.get(first + 7)?,
        rescanned: row.get(first + 8)?,
        rescan_filed: row.get(first + 9)?,
    })
}

/// The counters of every mailbox together, per hour, for hours in
/// `[since, until)`: hours without activity are absent.
pub fn hourly_totals(c: &Connection, since: i64, until: i64) -> rusqlite::Result<Vec<(i64, Counters)>> {
    let mut statement = c.prepare_cached(
        "SELECT hour, checked, spam, phish, whitelisted, empty, errors,
                blocked, unblocked, rescanned, rescan_filed FROM hourly_total
         WHERE hour >= ?1 AND hour < ?2 ORDER BY hour",
    )?;
    statement.query_map(params![since, until], |row| Ok((row.get(0)?, counters_from(row, 1)?)))?.collect()
}

/// One mailbox's counters per hour in `[since, until)`.
pub fn hourly_of(c: &Connection, mailbox: &str, since: i64, until: i64) -> rusqlite::Result<Vec<(i64, Counters)>> {
    let mut statement = c.prepare_cached(
        "SELECT hour, checked, spam, phish, whitelisted, empty, errors,
                blocked, unblocked, rescanned, rescan_filed FROM hourly
         WHERE mailbox = ?1 AND hour >= ?2 AND hour < ?3 ORDER BY hour",
    )?;
    statement.query_map(params![mailbox, since, until], |row| Ok((row.get(0)?, counters_from(row, 1)?)))?.collect()
}

/// Forgets the oldest hour of per-mailbox counters when it is before
/// `before` (Unix seconds); returns how many rows went. One hour at a time
/// (at most a row per mailbox), so a long backlog is cleared in short
/// steps that leave the database to others in between. The organisation's
/// totals per hour (`hourly_total`) stay.
pub fn hourly_expire_step(c: &Connection, before: i64) -> rusqlite::Result<usize> {
    c.prepare_cached("DELETE FROM hourly WHERE hour = (SELECT min(hour) FROM hourly) AND hour < ?1")?.execute([before])
}

/// The counters of these mailboxes summed since `since`.
pub fn mailbox_totals(c: &Connection, names: &[String], since: i64) -> rusqlite::Result<BTreeMap<String, Counters>> {
    let mut statement = c.prepare_cached(
        "SELECT mailbox, sum(checked), sum(spam), sum(phish), sum(whitelisted), sum(empty), sum(errors),
                sum(blocked), sum(unblocked), sum(rescanned), sum(rescan_filed)
         FROM hourly WHERE mailbox = ?1 AND hour >= ?2",
    )?;
    let mut out = BTreeMap::new();
    for name in names {
        let counters = statement.query_row(params![name, since], |row| {
            if row.get::<_, Option<i64>>(1)?.is_none() { Ok(Counters::default()) } else { counters_from(row, 1) }
        })?;
        out.insert(name.clone(), counters);
    }
    Ok(out)
}
