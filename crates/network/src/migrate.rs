//! Moving a node's embedded store to a Redis Cluster (`starling network
//! migrate --from DATA_DIR --to redis://…`): resumable and verified.
//!
//! The node must be stopped (the embedded store is opened by one process
//! at a time). The metadata (the network's fingerprint key, the activation
//! signing key and records) and the organisations go first; then each table
//! in key order — reporters, entries, reports, postings, expiry checks —
//! through the Redis store's own writes, so its counters and layout are
//! those a node would have made. Every 1,000 rows the last key copied is
//! kept in the cluster's metadata (`migrate/<table>`): an interrupted
//! migration, or one run in chunks with `max_rows`, goes on from there, and
//! copying a row again changes nothing. At the end the row counts are
//! compared and a sample of entries, their reports and posting lists is read
//! back from both stores and compared.

use crate::model::{Entry, EntryId, IndexKey, ReportRecord, Reporter, ReporterId};
use crate::store::embedded::{Embedded, Table};
use crate::store::redis::RedisStore;
use crate::store::{Reads, Result, Store, StoreError, Writes};

/// Rows between two records of the position.
const CHECKPOINT_EVERY: u64 = 1_000;
/// Entries (and as many posting lists) read back from both stores.
const SPOT_CHECKS: u64 = 200;

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Per table: its name, rows in the embedded store, rows copied by this
    /// run.
    pub tables: Vec<(&'static str, u64, u64)>,
    /// Every table was copied to its end (else run again to go on).
    pub complete: bool,
    /// When complete: rows read back from both stores and compared.
    pub spot_checked: u64,
    /// When complete: differences found (empty: verified).
    pub differences: Vec<String>,
}

fn position_key(table: Table) -> String {
    format!("migrate/{}", table.name())
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::permanent(format!("corrupt {what} record: {e}")))
}

fn id16(bytes: &[u8]) -> Result<[u8; 16]> {
    bytes.try_into().map_err(|_| StoreError::permanent("corrupt key in the embedded store"))
}

/// Copies `from` into `to`, at most `max_rows` rows this run (`None`: all),
/// telling `progress` (table, rows done, rows in the table) as it goes.
pub fn migrate(
    from: &Embedded,
    to: &RedisStore,
    max_rows: Option<u64>,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<Outcome> {
    copy_header(from, to)?;
    let mut outcome = Outcome { complete: true, ..Outcome::default() };
    let mut budget = max_rows.unwrap_or(u64::MAX);
    for table in Table::ALL {
        let total = from.rows(table)?;
        let position = to.reader()?.meta(&position_key(table))?;
        let mut copied = 0u64;
        let mut last: Option<Vec<u8>> = None;
        let mut writer = to.writer()?;
        let mut failure = None;
        let finished = {
            let mut all_read = true;
            from.export(table, position.as_deref(), &mut |key, value| {
                if budget == 0 {
                    all_read = false;
                    return Ok(false);
                }
                if let Err(e) = copy_row(&mut writer, table, key, value) {
                    failure = Some(e);
                    return Ok(false);
                }
                budget -= 1;
                copied += 1;
                last = Some(key.to_vec());
                if copied.is_multiple_of(CHECKPOINT_EVERY) {
                    writer.set_meta(&position_key(table), key)?;
                    progress(table.name(), copied, total);
                }
                Ok(true)
            })?;
            all_read
        };
        if let Some(e) = failure {
            if let Some(key) = &last {
                writer.set_meta(&position_key(table), key)?;
            }
            return Err(e);
        }
        if let Some(key) = &last {
            writer.set_meta(&position_key(table), key)?;
        }
        writer.commit()?;
        progress(table.name(), copied.min(total), total);
        outcome.tables.push((table.name(), total, copied));
        if !finished {
            outcome.complete = false;
            return Ok(outcome);
        }
    }
    verify(from, to, &mut outcome)?;
    Ok(outcome)
}

/// The metadata and the organisations; a cluster holding another network
/// is refused.
fn copy_header(from: &Embedded, to: &RedisStore) -> Result<()> {
    let meta = from.all_meta()?;
    if let Some((_, key)) = meta.iter().find(|(name, _)| name == "network_key") {
        let kept = to.init_meta("network_key", key)?;
        if &kept != key {
            return Err(StoreError::permanent(
                "the cluster already holds another network (a different fingerprint key); migrate into an empty cluster",
            ));
        }
    }
    let mut writer = to.writer()?;
    for (name, value) in &meta {
        writer.set_meta(name, value)?;
    }
    for org in from.reader()?.organisations()? {
        writer.put_organisation(&org)?;
    }
    writer.commit()
}

fn copy_row(writer: &mut impl Writes, table: Table, key: &[u8], value: &[u8]) -> Result<()> {
    match table {
        Table::Reporters => writer.put_reporter(ReporterId(id16(key)?), &decode::<Reporter>("reporter", value)?),
        Table::Entries => writer.put_entry(EntryId(id16(key)?), &decode::<Entry>("entry", value)?),
        Table::Reports => {
            let (entry, reporter) = key.split_at(key.len().min(16));
            writer.put_report(
                EntryId(id16(entry)?),
                ReporterId(id16(reporter)?),
                &decode::<ReportRecord>("report", value)?,
            )
        }
        Table::Postings => {
            let index_key = IndexKey::from_bytes(key)
                .ok_or_else(|| StoreError::permanent("corrupt index key in the embedded store"))?;
            let ids: Vec<EntryId> = value.chunks_exact(16).map(|c| id16(c).map(EntryId)).collect::<Result<_>>()?;
            // Oldest first, none dropped: the list was trimmed when written.
            for id in &ids {
                writer.add_posting(index_key, *id, ids.len().max(1))?;
            }
            Ok(())
        }
        Table::Expiry => {
            let (day, entry) = key.split_at(key.len().min(4));
            let day = u32::from_be_bytes(day.try_into().map_err(|_| StoreError::permanent("corrupt expiry key"))?);
            writer.schedule_expiry(day, EntryId(id16(entry)?))
        }
    }
}

/// Compares the counts, and a sample of entries, reports and posting
/// lists, read from both stores.
fn verify(from: &Embedded, to: &RedisStore, outcome: &mut Outcome) -> Result<()> {
    let stats = to.reader()?.stats()?;
    for (table, theirs) in [
        (Table::Entries, stats.entries),
        (Table::Reports, stats.reports),
        (Table::Reporters, stats.reporters),
        (Table::Postings, stats.index_keys),
    ] {
        let ours = from.rows(table)?;
        if ours != theirs {
            outcome.differences.push(format!("{}: {ours} rows here, {theirs} in the cluster", table.name()));
        }
    }
    let (mine, theirs) = (from.reader()?, to.reader()?);
    let every = (from.rows(Table::Entries)? / SPOT_CHECKS).max(1);
    let mut index = 0u64;
    let mut checked = 0u64;
    let mut differences = Vec::new();
    from.export(Table::Entries, None, &mut |key, _| {
        index += 1;
        if !index.is_multiple_of(every) {
            return Ok(true);
        }
        let id = EntryId(id16(key)?);
        checked += 1;
        if mine.entry(id)? != theirs.entry(id)? {
            differences.push(format!("entry {}: differs", hex(&id.0)));
        }
        if mine.reports(id)? != theirs.reports(id)? {
            differences.push(format!("reports of entry {}: differ", hex(&id.0)));
        }
        Ok(checked < SPOT_CHECKS)
    })?;
    let every = (from.rows(Table::Postings)? / SPOT_CHECKS).max(1);
    let mut index = 0u64;
    let mut postings = 0u64;
    from.export(Table::Postings, None, &mut |key, _| {
        index += 1;
        if !index.is_multiple_of(every) {
            return Ok(true);
        }
        let Some(index_key) = IndexKey::from_bytes(key) else { return Ok(true) };
        postings += 1;
        if mine.postings(index_key)? != theirs.postings(index_key)? {
            differences.push(format!("posting list {}: differs", hex(key)));
        }
        Ok(postings < SPOT_CHECKS)
    })?;
    outcome.spot_checked = checked + postings;
    outcome.differences.extend(differences);
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
