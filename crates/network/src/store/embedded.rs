//! The embedded store: one redb file, crash-safe (copy-on-write B-trees, every
//! commit durable when it returns), readers never blocked by the writer.
//!
//! Why redb over fjall: the node's hot path is reads of mostly absent keys
//! (about 33 index keys per checked message) and those are answered by the
//! in-memory filter before the store is touched; what reaches the store are
//! point reads of present keys, where a B-tree is faster than an LSM tree, and
//! durable group commits of a few thousand reports per second, which redb
//! handles with room to spare. The measurements are in `docs/performance.md`.

use std::path::Path;

use redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Reads, Result, Store, StoreError, StoreStats, Writes};
use crate::model::{Entry, EntryId, IndexKey, Organisation, ReportRecord, Reporter, ReporterId};

type Bytes = &'static [u8];

const ENTRIES: TableDefinition<Bytes, Bytes> = TableDefinition::new("entries");
const REPORTS: TableDefinition<Bytes, Bytes> = TableDefinition::new("reports");
const POSTINGS: TableDefinition<Bytes, Bytes> = TableDefinition::new("postings");
const REPORTERS: TableDefinition<Bytes, Bytes> = TableDefinition::new("reporters");
const ORGANISATIONS: TableDefinition<u32, Bytes> = TableDefinition::new("organisations");
const META: TableDefinition<&str, Bytes> = TableDefinition::new("meta");
const EXPIRY: TableDefinition<Bytes, ()> = TableDefinition::new("expiry");

/// A store in one redb file.
pub struct Embedded {
    db: Database,
    path: std::path::PathBuf,
}

impl Embedded {
    /// Opens (or creates) the store at `path`, with a page cache of
    /// `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Embedded> {
        let db = redb::Builder::new().set_cache_size(cache_bytes).create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::permanent(format!(
                "{} is already open in another process (is a node already running on this data directory?)",
                path.display()
            )),
            other => StoreError::permanent(format!("cannot open {}: {other}", path.display())),
        })?;
        let txn = db.begin_write().map_err(io)?;
        {
            txn.open_table(ENTRIES).map_err(io)?;
            txn.open_table(REPORTS).map_err(io)?;
            txn.open_table(POSTINGS).map_err(io)?;
            txn.open_table(REPORTERS).map_err(io)?;
            txn.open_table(ORGANISATIONS).map_err(io)?;
            txn.open_table(META).map_err(io)?;
            txn.open_table(EXPIRY).map_err(io)?;
        }
        txn.commit().map_err(io)?;
        Ok(Embedded { db, path: path.to_path_buf() })
    }
}

fn io(error: impl std::fmt::Display) -> StoreError {
    // redb reports storage failures (I/O) and logic errors through the same
    // types; I/O failures are the ones worth retrying.
    let message = error.to_string();
    if message.contains("I/O") || message.contains("io error") {
        StoreError::transient(message)
    } else {
        StoreError::permanent(message)
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("records serialise")
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::permanent(format!("corrupt {what} record: {e}")))
}

fn report_key(id: EntryId, reporter: ReporterId) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(&id.0);
    key[16..].copy_from_slice(&reporter.0);
    key
}

fn expiry_key(day: u32, id: EntryId) -> [u8; 20] {
    let mut key = [0u8; 20];
    key[..4].copy_from_slice(&day.to_be_bytes());
    key[4..].copy_from_slice(&id.0);
    key
}

fn ids(bytes: &[u8]) -> Vec<EntryId> {
    bytes.chunks_exact(16).map(|c| EntryId(c.try_into().expect("16 bytes"))).collect()
}

// Reads shared by the read view and the write batch.

fn postings_in(table: &impl ReadableTable<Bytes, Bytes>, key: IndexKey) -> Result<Vec<EntryId>> {
    Ok(table.get(key.to_bytes().as_slice()).map_err(io)?.map(|v| ids(v.value())).unwrap_or_default())
}

fn record_in<T: DeserializeOwned>(
    what: &str,
    table: &impl ReadableTable<Bytes, Bytes>,
    key: &[u8],
) -> Result<Option<T>> {
    match table.get(key).map_err(io)? {
        Some(value) => decode(what, value.value()).map(Some),
        None => Ok(None),
    }
}

fn reports_in(table: &impl ReadableTable<Bytes, Bytes>, id: EntryId) -> Result<Vec<(ReporterId, ReportRecord)>> {
    let from = report_key(id, ReporterId([0; 16]));
    let to = report_key(id, ReporterId([0xff; 16]));
    let mut out = Vec::new();
    for item in table.range(from.as_slice()..=to.as_slice()).map_err(io)? {
        let (key, value) = item.map_err(io)?;
        let reporter = ReporterId(key.value()[16..32].try_into().expect("32-byte key"));
        out.push((reporter, decode("report", value.value())?));
    }
    Ok(out)
}

fn organisations_in(table: &impl ReadableTable<u32, Bytes>) -> Result<Vec<Organisation>> {
    let mut out = Vec::new();
    for item in table.iter().map_err(io)? {
        let (_, value) = item.map_err(io)?;
        out.push(decode("organisation", value.value())?);
    }
    Ok(out)
}

/// A consistent read view with its tables open.
pub struct Reader {
    entries: ReadOnlyTable<Bytes, Bytes>,
    reports: ReadOnlyTable<Bytes, Bytes>,
    postings: ReadOnlyTable<Bytes, Bytes>,
    reporters: ReadOnlyTable<Bytes, Bytes>,
    organisations: ReadOnlyTable<u32, Bytes>,
    meta: ReadOnlyTable<&'static str, Bytes>,
    path: std::path::PathBuf,
    _txn: ReadTransaction,
}

impl Reads for Reader {
    fn postings(&self, key: IndexKey) -> Result<Vec<EntryId>> {
        postings_in(&self.postings, key)
    }

    fn entry(&self, id: EntryId) -> Result<Option<Entry>> {
        record_in("entry", &self.entries, &id.0)
    }

    fn reports(&self, id: EntryId) -> Result<Vec<(ReporterId, ReportRecord)>> {
        reports_in(&self.reports, id)
    }

    fn reporter(&self, id: ReporterId) -> Result<Option<Reporter>> {
        record_in("reporter", &self.reporters, &id.0)
    }

    fn organisation(&self, id: u32) -> Result<Option<Organisation>> {
        match self.organisations.get(id).map_err(io)? {
            Some(value) => decode("organisation", value.value()).map(Some),
            None => Ok(None),
        }
    }

    fn organisations(&self) -> Result<Vec<Organisation>> {
        organisations_in(&self.organisations)
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.meta.get(key).map_err(io)?.map(|v| v.value().to_vec()))
    }

    fn stats(&self) -> Result<StoreStats> {
        Ok(StoreStats {
            entries: self.entries.len().map_err(io)?,
            reports: self.reports.len().map_err(io)?,
            reporters: self.reporters.len().map_err(io)?,
            index_keys: self.postings.len().map_err(io)?,
            organisations: self.organisations.len().map_err(io)?,
            bytes: std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0),
        })
    }

    fn each_index_key(&self, f: &mut dyn FnMut(&[u8])) -> Result<()> {
        for item in self.postings.iter().map_err(io)? {
            let (key, _) = item.map_err(io)?;
            f(key.value());
        }
        Ok(())
    }

    fn each_reporter(&self, f: &mut dyn FnMut(ReporterId, Reporter)) -> Result<()> {
        for item in self.reporters.iter().map_err(io)? {
            let (key, value) = item.map_err(io)?;
            let id = ReporterId(key.value().try_into().map_err(|_| StoreError::permanent("corrupt reporter key"))?);
            f(id, decode("reporter", value.value())?);
        }
        Ok(())
    }
}

/// A write batch: one redb write transaction, durable on commit.
pub struct Writer {
    txn: WriteTransaction,
    path: std::path::PathBuf,
}

impl Reads for Writer {
    fn postings(&self, key: IndexKey) -> Result<Vec<EntryId>> {
        postings_in(&self.txn.open_table(POSTINGS).map_err(io)?, key)
    }

    fn entry(&self, id: EntryId) -> Result<Option<Entry>> {
        record_in("entry", &self.txn.open_table(ENTRIES).map_err(io)?, &id.0)
    }

    fn reports(&self, id: EntryId) -> Result<Vec<(ReporterId, ReportRecord)>> {
        reports_in(&self.txn.open_table(REPORTS).map_err(io)?, id)
    }

    fn reporter(&self, id: ReporterId) -> Result<Option<Reporter>> {
        record_in("reporter", &self.txn.open_table(REPORTERS).map_err(io)?, &id.0)
    }

    fn organisation(&self, id: u32) -> Result<Option<Organisation>> {
        let table = self.txn.open_table(ORGANISATIONS).map_err(io)?;
        match table.get(id).map_err(io)? {
            Some(value) => decode("organisation", value.value()).map(Some),
            None => Ok(None),
        }
    }

    fn organisations(&self) -> Result<Vec<Organisation>> {
        organisations_in(&self.txn.open_table(ORGANISATIONS).map_err(io)?)
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let table = self.txn.open_table(META).map_err(io)?;
        Ok(table.get(key).map_err(io)?.map(|v| v.value().to_vec()))
    }

    fn stats(&self) -> Result<StoreStats> {
        Ok(StoreStats {
            entries: self.txn.open_table(ENTRIES).map_err(io)?.len().map_err(io)?,
            reports: self.txn.open_table(REPORTS).map_err(io)?.len().map_err(io)?,
            reporters: self.txn.open_table(REPORTERS).map_err(io)?.len().map_err(io)?,
            index_keys: self.txn.open_table(POSTINGS).map_err(io)?.len().map_err(io)?,
            organisations: self.txn.open_table(ORGANISATIONS).map_err(io)?.len().map_err(io)?,
            bytes: std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0),
        })
    }

    fn each_index_key(&self, f: &mut dyn FnMut(&[u8])) -> Result<()> {
        for item in self.txn.open_table(POSTINGS).map_err(io)?.iter().map_err(io)? {
            let (key, _) = item.map_err(io)?;
            f(key.value());
        }
        Ok(())
    }

    fn each_reporter(&self, f: &mut dyn FnMut(ReporterId, Reporter)) -> Result<()> {
        for item in self.txn.open_table(REPORTERS).map_err(io)?.iter().map_err(io)? {
            let (key, value) = item.map_err(io)?;
            let id = ReporterId(key.value().try_into().map_err(|_| StoreError::permanent("corrupt reporter key"))?);
            f(id, decode("reporter", value.value())?);
        }
        Ok(())
    }
}

impl Writes for Writer {
    fn put_entry(&mut self, id: EntryId, entry: &Entry) -> Result<()> {
        let mut table = self.txn.open_table(ENTRIES).map_err(io)?;
        table.insert(id.0.as_slice(), encode(entry).as_slice()).map_err(io)?;
        Ok(())
    }

    fn delete_entry(&mut self, id: EntryId) -> Result<()> {
        let reports = self.reports(id)?;
        let mut table = self.txn.open_table(REPORTS).map_err(io)?;
        for (reporter, _) in reports {
            table.remove(report_key(id, reporter).as_slice()).map_err(io)?;
        }
        drop(table);
        self.txn.open_table(ENTRIES).map_err(io)?.remove(id.0.as_slice()).map_err(io)?;
        Ok(())
    }

    fn put_report(&mut self, id: EntryId, reporter: ReporterId, report: &ReportRecord) -> Result<()> {
        let mut table = self.txn.open_table(REPORTS).map_err(io)?;
        table.insert(report_key(id, reporter).as_slice(), encode(report).as_slice()).map_err(io)?;
        Ok(())
    }

    fn delete_report(&mut self, id: EntryId, reporter: ReporterId) -> Result<bool> {
        let mut table = self.txn.open_table(REPORTS).map_err(io)?;
        let removed = table.remove(report_key(id, reporter).as_slice()).map_err(io)?.is_some();
        Ok(removed)
    }

    fn add_posting(&mut self, key: IndexKey, id: EntryId, max: usize) -> Result<()> {
        let mut table = self.txn.open_table(POSTINGS).map_err(io)?;
        let key = key.to_bytes();
        let mut list = table.get(key.as_slice()).map_err(io)?.map(|v| ids(v.value())).unwrap_or_default();
        if list.contains(&id) {
            return Ok(());
        }
        list.push(id);
        let skip = list.len().saturating_sub(max.max(1));
        let bytes: Vec<u8> = list[skip..].iter().flat_map(|i| i.0).collect();
        table.insert(key.as_slice(), bytes.as_slice()).map_err(io)?;
        Ok(())
    }

    fn remove_posting(&mut self, key: IndexKey, id: EntryId) -> Result<()> {
        let mut table = self.txn.open_table(POSTINGS).map_err(io)?;
        let key = key.to_bytes();
        let Some(list) = table.get(key.as_slice()).map_err(io)?.map(|v| ids(v.value())) else { return Ok(()) };
        let kept: Vec<u8> = list.iter().filter(|i| **i != id).flat_map(|i| i.0).collect();
        if kept.is_empty() {
            table.remove(key.as_slice()).map_err(io)?;
        } else {
            table.insert(key.as_slice(), kept.as_slice()).map_err(io)?;
        }
        Ok(())
    }

    fn put_reporter(&mut self, id: ReporterId, reporter: &Reporter) -> Result<()> {
        let mut table = self.txn.open_table(REPORTERS).map_err(io)?;
        table.insert(id.0.as_slice(), encode(reporter).as_slice()).map_err(io)?;
        Ok(())
    }

    fn put_organisation(&mut self, organisation: &Organisation) -> Result<()> {
        let mut table = self.txn.open_table(ORGANISATIONS).map_err(io)?;
        table.insert(organisation.id, encode(organisation).as_slice()).map_err(io)?;
        Ok(())
    }

    fn set_meta(&mut self, key: &str, value: &[u8]) -> Result<()> {
        self.txn.open_table(META).map_err(io)?.insert(key, value).map_err(io)?;
        Ok(())
    }

    fn schedule_expiry(&mut self, day: u32, id: EntryId) -> Result<()> {
        self.txn.open_table(EXPIRY).map_err(io)?.insert(expiry_key(day, id).as_slice(), ()).map_err(io)?;
        Ok(())
    }

    fn take_due_expiries(&mut self, day: u32, limit: usize) -> Result<Vec<EntryId>> {
        let mut table = self.txn.open_table(EXPIRY).map_err(io)?;
        let upper = expiry_key(day, EntryId([0xff; 16]));
        let mut keys = Vec::new();
        for item in table.range(..=upper.as_slice()).map_err(io)?.take(limit) {
            let (key, _) = item.map_err(io)?;
            keys.push(key.value().to_vec());
        }
        let mut due = Vec::with_capacity(keys.len());
        for key in keys {
            table.remove(key.as_slice()).map_err(io)?;
            due.push(EntryId(key[4..20].try_into().expect("20-byte key")));
        }
        Ok(due)
    }

    fn commit(self) -> Result<()> {
        self.txn.commit().map_err(io)
    }
}

/// A visitor of exported rows (key, value): false stops the export.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// A table of the embedded store, for exporting it (`starling network
/// migrate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// Entries by id.
    Entries,
    /// Reports by entry id + reporter id.
    Reports,
    /// Posting lists by index key.
    Postings,
    /// Reporters by id.
    Reporters,
    /// Expiry checks by day + entry id.
    Expiry,
}

impl Table {
    /// Every table, in the order a copy should go (an entry before its
    /// reports and postings).
    pub const ALL: [Table; 5] = [Table::Reporters, Table::Entries, Table::Reports, Table::Postings, Table::Expiry];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Entries => "entries",
            Table::Reports => "reports",
            Table::Postings => "postings",
            Table::Reporters => "reporters",
            Table::Expiry => "expiry",
        }
    }
}

impl Embedded {
    /// Rows of a table after the key `after` (all when `None`), in key
    /// order, until `f` answers false.
    pub fn export(&self, table: Table, after: Option<&[u8]>, f: &mut Visit<'_>) -> Result<()> {
        let txn = self.db.begin_read().map_err(io)?;
        let lower = after.map(<[u8]>::to_vec);
        let mut each = |key: &[u8], value: &[u8]| -> Result<bool> {
            if lower.as_deref().is_some_and(|l| key <= l) {
                return Ok(true);
            }
            f(key, value)
        };
        macro_rules! rows {
            ($definition:expr) => {{
                let table = txn.open_table($definition).map_err(io)?;
                let range = match &lower {
                    Some(l) => table.range(l.as_slice()..).map_err(io)?,
                    None => table.range::<&[u8]>(..).map_err(io)?,
                };
                for item in range {
                    let (key, value) = item.map_err(io)?;
                    if !each(key.value(), value.value())? {
                        break;
                    }
                }
            }};
        }
        match table {
            Table::Entries => rows!(ENTRIES),
            Table::Reports => rows!(REPORTS),
            Table::Postings => rows!(POSTINGS),
            Table::Reporters => rows!(REPORTERS),
            Table::Expiry => {
                let table = txn.open_table(EXPIRY).map_err(io)?;
                let range = match &lower {
                    Some(l) => table.range(l.as_slice()..).map_err(io)?,
                    None => table.range::<&[u8]>(..).map_err(io)?,
                };
                for item in range {
                    let (key, _) = item.map_err(io)?;
                    if !each(key.value(), &[])? {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Rows in a table.
    pub fn rows(&self, table: Table) -> Result<u64> {
        let txn = self.db.begin_read().map_err(io)?;
        match table {
            Table::Entries => txn.open_table(ENTRIES).map_err(io)?.len().map_err(io),
            Table::Reports => txn.open_table(REPORTS).map_err(io)?.len().map_err(io),
            Table::Postings => txn.open_table(POSTINGS).map_err(io)?.len().map_err(io),
            Table::Reporters => txn.open_table(REPORTERS).map_err(io)?.len().map_err(io),
            Table::Expiry => txn.open_table(EXPIRY).map_err(io)?.len().map_err(io),
        }
    }

    /// Every metadata value.
    pub fn all_meta(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let txn = self.db.begin_read().map_err(io)?;
        let table = txn.open_table(META).map_err(io)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(io)? {
            let (key, value) = item.map_err(io)?;
            out.push((key.value().to_owned(), value.value().to_vec()));
        }
        Ok(out)
    }
}

/// Rows copied into a snapshot, per table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotCounts {
    /// Table name and rows, in the order copied.
    pub tables: Vec<(&'static str, u64)>,
}

/// Rows written to a snapshot in one transaction of the copy (its memory).
const SNAPSHOT_BATCH: usize = 50_000;

impl Embedded {
    /// Writes a consistent copy of the whole store to a new file at `path`
    /// while the store goes on serving: every table is read from one read
    /// transaction (one instant of the store, however many commits land
    /// meanwhile) and written in batches. `path` must not exist; on any
    /// error it is removed, so a snapshot that exists is complete.
    pub fn snapshot_to(&self, path: &Path) -> Result<SnapshotCounts> {
        if path.exists() {
            return Err(StoreError::permanent(format!("{} already exists", path.display())));
        }
        let result = self.copy_into(path);
        if result.is_err() {
            let _ = std::fs::remove_file(path);
        }
        result
    }

    fn copy_into(&self, path: &Path) -> Result<SnapshotCounts> {
        let target = Database::create(path)
            .map_err(|e| StoreError::permanent(format!("cannot create {}: {e}", path.display())))?;
        let source = self.db.begin_read().map_err(io)?;
        let mut counts = SnapshotCounts::default();
        counts.tables.push(("meta", copy_table(&source, &target, META)?));
        counts.tables.push(("organisations", copy_table(&source, &target, ORGANISATIONS)?));
        counts.tables.push(("reporters", copy_table(&source, &target, REPORTERS)?));
        counts.tables.push(("entries", copy_table(&source, &target, ENTRIES)?));
        counts.tables.push(("reports", copy_table(&source, &target, REPORTS)?));
        counts.tables.push(("postings", copy_table(&source, &target, POSTINGS)?));
        counts.tables.push(("expiry", copy_table(&source, &target, EXPIRY)?));
        Ok(counts)
    }
}

/// Copies one table from a read transaction into `target`, committing
/// every [`SNAPSHOT_BATCH`] rows; answers the rows copied.
fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    source: &ReadTransaction,
    target: &Database,
    definition: TableDefinition<K, V>,
) -> Result<u64> {
    let table = source.open_table(definition).map_err(io)?;
    let mut rows = 0u64;
    let mut iter = table.iter().map_err(io)?.peekable();
    loop {
        let txn = target.begin_write().map_err(io)?;
        {
            let mut out = txn.open_table(definition).map_err(io)?;
            for _ in 0..SNAPSHOT_BATCH {
                let Some(item) = iter.next() else { break };
                let (key, value) = item.map_err(io)?;
                out.insert(key.value(), value.value()).map_err(io)?;
                rows += 1;
            }
        }
        txn.commit().map_err(io)?;
        if iter.peek().is_none() {
            return Ok(rows);
        }
    }
}

/// The directory, beside the store's file, that snapshots are written to.
pub const SNAPSHOT_DIR: &str = "backups";

impl Store for Embedded {
    type Reader<'a> = Reader;
    type Writer<'a> = Writer;

    fn snapshot(&self) -> Result<(std::path::PathBuf, Vec<(&'static str, u64)>)> {
        let dir = self.path.parent().unwrap_or(Path::new(".")).join(SNAPSHOT_DIR);
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::transient(format!("cannot create {}: {e}", dir.display())))?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let path = dir.join(format!("network-{}-{:09}.redb", now.as_secs(), now.subsec_nanos()));
        let counts = self.snapshot_to(&path)?;
        Ok((path, counts.tables))
    }

    fn reader(&self) -> Result<Reader> {
        let txn = self.db.begin_read().map_err(io)?;
        Ok(Reader {
            entries: txn.open_table(ENTRIES).map_err(io)?,
            reports: txn.open_table(REPORTS).map_err(io)?,
            postings: txn.open_table(POSTINGS).map_err(io)?,
            reporters: txn.open_table(REPORTERS).map_err(io)?,
            organisations: txn.open_table(ORGANISATIONS).map_err(io)?,
            meta: txn.open_table(META).map_err(io)?,
            path: self.path.clone(),
            _txn: txn,
        })
    }

    fn writer(&self) -> Result<Writer> {
        Ok(Writer { txn: self.db.begin_write().map_err(io)?, path: self.path.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Class, Credited};

    fn entry() -> Entry {
        Entry {
            text: None,
            slots: vec![7; 256],
            shingles: 70,
            attachments: vec![],
            urls: vec![],
            domains: vec![],
            first_seen: 1,
            last_seen: 2,
            credited: Credited::default(),
        }
    }

    #[test]
    fn writes_are_read_back_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let id = EntryId([1; 16]);
        let reporter = ReporterId([2; 16]);
        {
            let store = Embedded::open(&path, 1 << 20).unwrap();
            let mut w = store.writer().unwrap();
            w.put_entry(id, &entry()).unwrap();
            w.put_report(id, reporter, &ReportRecord { org: 1, class: Class::Spam, at: 5 }).unwrap();
            w.add_posting(IndexKey::Band(3, 99), id, 4).unwrap();
            w.commit().unwrap();
        }
        let store = Embedded::open(&path, 1 << 20).unwrap();
        let r = store.reader().unwrap();
        assert_eq!(r.entry(id).unwrap(), Some(entry()));
        assert_eq!(r.reports(id).unwrap().len(), 1);
        assert_eq!(r.postings(IndexKey::Band(3, 99)).unwrap(), vec![id]);
        assert_eq!(r.stats().unwrap().entries, 1);
    }

    #[test]
    fn a_snapshot_is_a_whole_copy_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let store = Embedded::open(&dir.path().join("s.redb"), 1 << 20).unwrap();
        let mut w = store.writer().unwrap();
        for i in 0..=199u8 {
            let id = EntryId([i; 16]);
            w.put_entry(id, &entry()).unwrap();
            w.put_report(id, ReporterId([7; 16]), &ReportRecord { org: 1, class: Class::Spam, at: 5 }).unwrap();
            w.add_posting(IndexKey::Band(1, u64::from(i)), id, 4).unwrap();
        }
        w.set_meta("network_key", b"k").unwrap();
        w.commit().unwrap();

        let copy = dir.path().join("copy.redb");
        let counts = store.snapshot_to(&copy).unwrap();
        assert!(counts.tables.contains(&("entries", 200)), "{counts:?}");
        assert!(counts.tables.contains(&("reports", 200)), "{counts:?}");
        assert!(counts.tables.contains(&("meta", 1)), "{counts:?}");
        // The original goes on serving and writing; the copy is its own file.
        let mut w = store.writer().unwrap();
        w.put_entry(EntryId([255; 16]), &entry()).unwrap();
        w.commit().unwrap();
        assert!(store.snapshot_to(&copy).is_err(), "an existing file is never overwritten");

        let restored = Embedded::open(&copy, 1 << 20).unwrap();
        let r = restored.reader().unwrap();
        assert_eq!(r.stats().unwrap().entries, 200);
        assert_eq!(r.entry(EntryId([9; 16])).unwrap(), Some(entry()));
        assert_eq!(r.postings(IndexKey::Band(1, 9)).unwrap(), vec![EntryId([9; 16])]);
        assert_eq!(r.meta("network_key").unwrap().as_deref(), Some(&b"k"[..]));
    }

    #[test]
    fn posting_lists_keep_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Embedded::open(&dir.path().join("s.redb"), 1 << 20).unwrap();
        let mut w = store.writer().unwrap();
        for i in 0..10u8 {
            w.add_posting(IndexKey::Band(0, 1), EntryId([i; 16]), 3).unwrap();
        }
        w.remove_posting(IndexKey::Band(0, 1), EntryId([8; 16])).unwrap();
        assert_eq!(w.postings(IndexKey::Band(0, 1)).unwrap(), vec![EntryId([7; 16]), EntryId([9; 16])]);
        w.commit().unwrap();
    }

    #[test]
    fn deleting_an_entry_deletes_its_reports() {
        let dir = tempfile::tempdir().unwrap();
        let store = Embedded::open(&dir.path().join("s.redb"), 1 << 20).unwrap();
        let id = EntryId([1; 16]);
        let mut w = store.writer().unwrap();
        w.put_entry(id, &entry()).unwrap();
        for r in 0..3u8 {
            w.put_report(id, ReporterId([r; 16]), &ReportRecord { org: 1, class: Class::Ham, at: 0 }).unwrap();
        }
        w.put_report(EntryId([2; 16]), ReporterId([0; 16]), &ReportRecord { org: 1, class: Class::Ham, at: 0 })
            .unwrap();
        w.delete_entry(id).unwrap();
        assert!(w.entry(id).unwrap().is_none());
        assert!(w.reports(id).unwrap().is_empty());
        assert_eq!(w.reports(EntryId([2; 16])).unwrap().len(), 1);
        w.commit().unwrap();
    }

    #[test]
    fn expiries_come_due_in_day_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Embedded::open(&dir.path().join("s.redb"), 1 << 20).unwrap();
        let mut w = store.writer().unwrap();
        w.schedule_expiry(10, EntryId([1; 16])).unwrap();
        w.schedule_expiry(12, EntryId([2; 16])).unwrap();
        w.schedule_expiry(20, EntryId([3; 16])).unwrap();
        assert_eq!(w.take_due_expiries(12, 100).unwrap(), vec![EntryId([1; 16]), EntryId([2; 16])]);
        assert!(w.take_due_expiries(12, 100).unwrap().is_empty());
        w.commit().unwrap();
    }

    #[test]
    fn a_second_open_of_the_same_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let _first = Embedded::open(&path, 1 << 20).unwrap();
        let err = Embedded::open(&path, 1 << 20).err().unwrap();
        assert!(err.to_string().contains("already open"), "{err}");
    }
}
