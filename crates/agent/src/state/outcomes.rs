//! What was done: hourly counters (`hourly`, `hourly_total`).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use rusqlite::types::Value;
use rusqlite::{Connection, params, params_from_iter};
use serde::{Deserialize, Serialize};

/// Defines [`Counters`] once: its fields are the columns of `hourly` and
/// `hourly_total`, in this order, and every statement below is made from
/// the list.
macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Counters of one mailbox for one hour.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct Counters {
            $($(#[$doc])* pub $name: u32,)*
        }

        impl Counters {
            /// The columns, as in the tables and the fields' order.
            pub const COLUMNS: &[&str] = &[$(stringify!($name)),*];

            /// Adds `other`.
            pub fn add(&mut self, other: &Counters) {
                $(self.$name += other.$name;)*
            }

            /// The values, in the order of [`Counters::COLUMNS`].
            pub fn values(&self) -> Vec<u32> {
                vec![$(self.$name),*]
            }

            /// Reads the columns from `first` on.
            fn from_row(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Counters> {
                let mut at = first;
                let mut next = || -> rusqlite::Result<u32> {
                    at += 1;
                    row.get(at - 1)
                };
                Ok(Counters { $($name: next()?,)* })
            }
        }
    };
}

counters! {
    /// Messages checked.
    checked,
    /// Found to be spam.
    spam,
    /// Found to be phishing.
    phish,
    /// Whitelisted.
    whitelisted,
    /// Caught by the empty-message rules.
    empty,
    /// Failed (read or action errors).
    errors,
    /// Put into the spam folder (or marked junk) by users: spam the agent
    /// had not caught.
    blocked,
    /// Taken out of the spam folder (or marked not junk) by users after the
    /// agent had filed them: false positives.
    unblocked,
    /// Looked at again by a rescan.
    rescanned,
    /// Filed by a rescan (spam that was not known at delivery).
    rescan_filed,
}

/// The counter columns, comma-separated (`f` applied to each).
fn columns(mut f: impl FnMut(&str) -> String) -> String {
    Counters::COLUMNS.iter().map(|c| f(c)).collect::<Vec<_>>().join(", ")
}

/// Adds counters to the row of `table` whose primary key, `primary`, is
/// made of `keys` (parameters `?1..`), the counters following as
/// parameters.
fn upsert_sql(table: &str, keys: &[&str], primary: &str) -> String {
    let first = keys.len() + 1;
    let placeholders = (1..first + Counters::COLUMNS.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
    let mut at = first;
    let updates = columns(|c| {
        at += 1;
        format!("{c} = {c} + ?{}", at - 1)
    });
    format!(
        "INSERT INTO {table} ({}, {}) VALUES ({placeholders}) ON CONFLICT ({primary}) DO UPDATE SET {updates}",
        keys.join(", "),
        columns(str::to_owned),
    )
}

/// Statement parameters: the keys, then the counters.
fn with_counters(mut keys: Vec<Value>, counters: &Counters) -> Vec<Value> {
    keys.extend(counters.values().into_iter().map(|v| Value::Integer(v.into())));
    keys
}

static UPSERT_HOURLY: LazyLock<String> = LazyLock::new(|| upsert_sql("hourly", &["hour", "mailbox"], "mailbox, hour"));
static UPSERT_TOTAL: LazyLock<String> = LazyLock::new(|| upsert_sql("hourly_total", &["hour"], "hour"));
static SELECT_COLUMNS: LazyLock<String> = LazyLock::new(|| columns(str::to_owned));
static SUM_COLUMNS: LazyLock<String> = LazyLock::new(|| columns(|c| format!("sum({c})")));

/// Adds a batch's hourly counters (by hour start, Unix seconds, and
/// mailbox), in one transaction.
pub fn record_batch(c: &mut Connection, counters: &BTreeMap<(i64, String), Counters>) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    {
        let mut upsert = tx.prepare_cached(&UPSERT_HOURLY)?;
        let mut total = tx.prepare_cached(&UPSERT_TOTAL)?;
        let mut hours: BTreeMap<i64, Counters> = BTreeMap::new();
        for ((hour, _), n) in counters {
            hours.entry(*hour).or_default().add(n);
        }
        for (hour, n) in &hours {
            total.execute(params_from_iter(with_counters(vec![Value::Integer(*hour)], n)))?;
        }
        for ((hour, mailbox), n) in counters {
            upsert.execute(params_from_iter(with_counters(
                vec![Value::Integer(*hour), Value::Text(mailbox.clone())],
                n,
            )))?;
        }
    }
    tx.commit()
}

/// Hourly counters since `since` (Unix seconds), for one mailbox or all.
pub fn hourly(c: &Connection, since: i64, mailbox: Option<&str>) -> rusqlite::Result<Vec<(i64, String, Counters)>> {
    let sql = format!(
        "SELECT hour, mailbox, {} FROM hourly WHERE hour >= ?1 AND (?2 IS NULL OR mailbox = ?2) ORDER BY hour, mailbox",
        *SELECT_COLUMNS
    );
    let mut statement = c.prepare_cached(&sql)?;
    statement
        .query_map(params![since, mailbox], |row| Ok((row.get(0)?, row.get(1)?, Counters::from_row(row, 2)?)))?
        .collect()
}

/// The counters of every mailbox together, per hour, for hours in
/// `[since, until)`: hours without activity are absent.
pub fn hourly_totals(c: &Connection, since: i64, until: i64) -> rusqlite::Result<Vec<(i64, Counters)>> {
    let sql =
        format!("SELECT hour, {} FROM hourly_total WHERE hour >= ?1 AND hour < ?2 ORDER BY hour", *SELECT_COLUMNS);
    let mut statement = c.prepare_cached(&sql)?;
    statement.query_map(params![since, until], |row| Ok((row.get(0)?, Counters::from_row(row, 1)?)))?.collect()
}

/// One mailbox's counters per hour in `[since, until)`.
pub fn hourly_of(c: &Connection, mailbox: &str, since: i64, until: i64) -> rusqlite::Result<Vec<(i64, Counters)>> {
    let sql = format!(
        "SELECT hour, {} FROM hourly WHERE mailbox = ?1 AND hour >= ?2 AND hour < ?3 ORDER BY hour",
        *SELECT_COLUMNS
    );
    let mut statement = c.prepare_cached(&sql)?;
    statement.query_map(params![mailbox, since, until], |row| Ok((row.get(0)?, Counters::from_row(row, 1)?)))?.collect()
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
    let sql = format!("SELECT mailbox, {} FROM hourly WHERE mailbox = ?1 AND hour >= ?2", *SUM_COLUMNS);
    let mut statement = c.prepare_cached(&sql)?;
    let mut out = BTreeMap::new();
    for name in names {
        let counters = statement.query_row(params![name, since], |row| {
            if row.get::<_, Option<i64>>(1)?.is_none() { Ok(Counters::default()) } else { Counters::from_row(row, 1) }
        })?;
        out.insert(name.clone(), counters);
    }
    Ok(out)
}
