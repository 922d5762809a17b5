//! Persistent state of a node, behind the [`Store`] trait: `embedded` (one
//! redb file, one node) and `redis` (a Redis Cluster several nodes share).
//!
//! Every operation touches one key, or the keys under one prefix (the reports
//! of one entry): a Redis Cluster backend maps an entry to a hash, a posting
//! list to a list, a reporter or an organisation to a hash, and needs neither
//! scans nor multi-key transactions for any request. Two maintenance
//! operations do iterate — warming the in-memory filter and reporter cache at
//! start-up — and are marked as such.
//!
//! Writes happen in a [`Writes`] batch owned by the node's single writer; the
//! embedded backend commits a batch as one durable transaction (a report is
//! acknowledged only after its batch is on disk). A backend without
//! transactions applies a batch's single-key operations in order; the engine
//! orders them so that any prefix of a batch leaves a consistent state
//! (entry before postings, postings removed before the entry).

pub mod embedded;
pub mod prefetch;
pub mod redis;

use std::fmt;
use std::time::Duration;

use crate::model::{Entry, EntryId, IndexKey, Organisation, ReportRecord, Reporter, ReporterId};

/// An error of the store.
#[derive(Debug)]
pub struct StoreError {
    message: String,
    transient: bool,
}

impl StoreError {
    /// An error that retrying can fix (a busy or momentarily failing disk).
    pub fn transient(message: impl Into<String>) -> StoreError {
        StoreError { message: message.into(), transient: true }
    }

    /// An error that retrying will not fix (corruption, a full disk).
    pub fn permanent(message: impl Into<String>) -> StoreError {
        StoreError { message: message.into(), transient: false }
    }

    /// Whether retrying the operation can help.
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hint = if self.transient { " (temporary; retrying may help)" } else { "" };
        write!(f, "store: {}{hint}", self.message)
    }
}

impl std::error::Error for StoreError {}

/// A result of the store.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Sizes of the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Entries (reported messages).
    pub entries: u64,
    /// Reports.
    pub reports: u64,
    /// Known reporters.
    pub reporters: u64,
    /// Index keys (posting lists).
    pub index_keys: u64,
    /// Organisations.
    pub organisations: u64,
    /// Bytes on disk.
    pub bytes: u64,
}

/// A persistent store.
pub trait Store: Send + Sync + 'static {
    /// A consistent read view.
    type Reader<'a>: Reads
    where
        Self: 'a;
    /// A write batch; it also reads its own writes.
    type Writer<'a>: Reads + Writes
    where
        Self: 'a;

    /// Opens a read view.
    fn reader(&self) -> Result<Self::Reader<'_>>;
    /// Opens a write batch. Only one is open at a time per node (the node's
    /// writer); a store several nodes share has one per node.
    fn writer(&self) -> Result<Self::Writer<'_>>;

    /// Sets a metadata value unless one is there, and answers the value kept
    /// (so nodes starting at once on a shared store agree on their keys).
    fn init_meta(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        if let Some(kept) = self.reader()?.meta(name)? {
            return Ok(kept);
        }
        let mut w = self.writer()?;
        w.set_meta(name, value)?;
        w.commit()?;
        Ok(value.to_vec())
    }

    /// Whether other nodes may share this store (they then announce to each
    /// other and re-read what another may have changed).
    fn shared(&self) -> bool {
        false
    }

    /// A store other nodes share: claims an organisation's name for all of
    /// them and hands out its id (at least `at_least`) — `Some(None)` when
    /// another node claimed the name first. `None` for a store no other
    /// node shares (the node's own table decides).
    fn claim_organisation(&self, _name: &str, _at_least: u32) -> Result<Option<Option<u32>>> {
        Ok(None)
    }

    /// Tells the other nodes sharing this store of the index keys this node
    /// added (`filter`) and of those that became spam (`changes`), in their
    /// byte form. A store no other node shares does nothing.
    fn announce(&self, _filter: &[Vec<u8>], _changes: &[Vec<u8>]) -> Result<()> {
        Ok(())
    }

    /// Writes a consistent copy of the whole store into a new file beside
    /// it (`backups/` in the node's data directory) while it goes on
    /// serving, and answers the file and the rows copied per table. A store
    /// kept elsewhere (Redis) is backed up with its own tools: an error.
    fn snapshot(&self) -> Result<(std::path::PathBuf, Vec<(&'static str, u64)>)> {
        Err(StoreError::permanent(
            "this store is not kept by the node: back it up with its own tools (Redis: BGSAVE and the RDB files)",
        ))
    }

    /// What the other nodes announced after `cursor` (empty: from now on),
    /// waiting up to `wait` for something; moves the cursor. `None` for a
    /// store no other node shares.
    fn follow(&self, _cursor: &mut String, _wait: Duration) -> Result<Option<Announced>> {
        Ok(None)
    }
}

/// What other nodes sharing a store announced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Announced {
    /// Index keys they added (for the key filter).
    pub filter: Vec<Vec<u8>>,
    /// Index keys that became spam (for `Changes`).
    pub changes: Vec<Vec<u8>>,
    /// Announcements after the cursor were dropped before this node read
    /// them (it was away or slower than the store keeps them): what they
    /// said is unknown, so the node's key filter must be warmed from the
    /// store again and its `Changes` readers told to rescan.
    pub gap: bool,
}

/// Reads.
pub trait Reads {
    /// The entries that have an index key, oldest first.
    fn postings(&self, key: IndexKey) -> Result<Vec<EntryId>>;
    /// An entry.
    fn entry(&self, id: EntryId) -> Result<Option<Entry>>;
    /// The reports about an entry, one per reporter.
    fn reports(&self, id: EntryId) -> Result<Vec<(ReporterId, ReportRecord)>>;
    /// A reporter.
    fn reporter(&self, id: ReporterId) -> Result<Option<Reporter>>;
    /// An organisation.
    fn organisation(&self, id: u32) -> Result<Option<Organisation>>;
    /// Every organisation (a small table).
    fn organisations(&self) -> Result<Vec<Organisation>>;
    /// A metadata value.
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Sizes.
    fn stats(&self) -> Result<StoreStats>;
    /// Maintenance: every index key, to warm the in-memory filter at start-up.
    fn each_index_key(&self, f: &mut dyn FnMut(&[u8])) -> Result<()>;
    /// Maintenance: every reporter, to warm the trust cache at start-up.
    fn each_reporter(&self, f: &mut dyn FnMut(ReporterId, Reporter)) -> Result<()>;

    /// Several posting lists, in the keys' order. A store across the
    /// network answers them in one round trip (see [`prefetch`]).
    fn postings_of(&self, keys: &[IndexKey]) -> Result<Vec<Vec<EntryId>>> {
        keys.iter().map(|key| self.postings(*key)).collect()
    }
    /// Several entries, in the ids' order.
    fn entries_of(&self, ids: &[EntryId]) -> Result<Vec<Option<Entry>>> {
        ids.iter().map(|id| self.entry(*id)).collect()
    }
    /// The reports about several entries, in the ids' order.
    fn reports_of(&self, ids: &[EntryId]) -> Result<Vec<Vec<(ReporterId, ReportRecord)>>> {
        ids.iter().map(|id| self.reports(*id)).collect()
    }
    /// Several reporters, in the ids' order.
    fn reporters_of(&self, ids: &[ReporterId]) -> Result<Vec<Option<Reporter>>> {
        ids.iter().map(|id| self.reporter(*id)).collect()
    }
}

/// Writes, applied in order.
pub trait Writes {
    /// Creates or replaces an entry.
    fn put_entry(&mut self, id: EntryId, entry: &Entry) -> Result<()>;
    /// Deletes an entry and its reports.
    fn delete_entry(&mut self, id: EntryId) -> Result<()>;
    /// Creates or replaces a reporter's report about an entry.
    fn put_report(&mut self, id: EntryId, reporter: ReporterId, report: &ReportRecord) -> Result<()>;
    /// Deletes a reporter's report about an entry; whether there was one.
    fn delete_report(&mut self, id: EntryId, reporter: ReporterId) -> Result<bool>;
    /// Adds an entry to a posting list (kept to the newest `max`).
    fn add_posting(&mut self, key: IndexKey, id: EntryId, max: usize) -> Result<()>;
    /// Removes an entry from a posting list.
    fn remove_posting(&mut self, key: IndexKey, id: EntryId) -> Result<()>;
    /// Creates or replaces a reporter.
    fn put_reporter(&mut self, id: ReporterId, reporter: &Reporter) -> Result<()>;
    /// Creates or replaces an organisation.
    fn put_organisation(&mut self, organisation: &Organisation) -> Result<()>;
    /// Sets a metadata value.
    fn set_meta(&mut self, key: &str, value: &[u8]) -> Result<()>;
    /// Schedules an expiry check of an entry on a day (days since the epoch).
    fn schedule_expiry(&mut self, day: u32, id: EntryId) -> Result<()>;
    /// Takes up to `limit` scheduled expiry checks due on or before `day`.
    fn take_due_expiries(&mut self, day: u32, limit: usize) -> Result<Vec<EntryId>>;
    /// Makes the batch durable.
    fn commit(self) -> Result<()>;
}
