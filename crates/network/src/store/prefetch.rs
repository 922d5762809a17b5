//! A read view that loads what a whole batch of checks needs level by level
//! — every posting list, then every entry, then every report and reporter —
//! each level in one call of the store's batch reads, and answers the
//! engine's single reads from what it loaded.
//!
//! The embedded store gains nothing (its reads are memory-mapped look-ups),
//! but a store across the network pays a round trip per read: a batch of 64
//! checks with a few near-copies is about four pipelined round trips instead
//! of hundreds of single ones. What was not loaded is read through, one at a
//! time, so the answers are the same whatever was loaded.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use super::{Reads, Result, StoreStats};
use crate::model::{Entry, EntryId, IndexKey, Organisation, ReportRecord, Reporter, ReporterId};

/// Reports about one entry, one per reporter.
type Reports = Vec<(ReporterId, ReportRecord)>;

/// A read view with what a batch needs loaded in advance.
pub struct Prefetched<'r, R: Reads> {
    inner: &'r R,
    postings: RefCell<HashMap<IndexKey, Vec<EntryId>>>,
    entries: RefCell<HashMap<EntryId, Option<Entry>>>,
    reports: RefCell<HashMap<EntryId, Reports>>,
    reporters: RefCell<HashMap<ReporterId, Option<Reporter>>>,
}

impl<'r, R: Reads> Prefetched<'r, R> {
    /// Nothing loaded yet.
    pub fn new(inner: &'r R) -> Prefetched<'r, R> {
        Prefetched {
            inner,
            postings: RefCell::default(),
            entries: RefCell::default(),
            reports: RefCell::default(),
            reporters: RefCell::default(),
        }
    }

    /// Loads the posting lists of these keys (those not loaded yet).
    pub fn load_postings(&self, keys: impl IntoIterator<Item = IndexKey>) -> Result<()> {
        let wanted = missing(keys, &self.postings.borrow());
        if wanted.is_empty() {
            return Ok(());
        }
        let lists = self.inner.postings_of(&wanted)?;
        self.postings.borrow_mut().extend(wanted.into_iter().zip(lists));
        Ok(())
    }

    /// Loads these entries (those not loaded yet).
    pub fn load_entries(&self, ids: impl IntoIterator<Item = EntryId>) -> Result<()> {
        let wanted = missing(ids, &self.entries.borrow());
        if wanted.is_empty() {
            return Ok(());
        }
        let entries = self.inner.entries_of(&wanted)?;
        self.entries.borrow_mut().extend(wanted.into_iter().zip(entries));
        Ok(())
    }

    /// Loads the reports about these entries, and then every reporter
    /// among them (those not loaded yet).
    pub fn load_reports(&self, ids: impl IntoIterator<Item = EntryId>) -> Result<()> {
        let wanted = missing(ids, &self.reports.borrow());
        if wanted.is_empty() {
            return Ok(());
        }
        let reports = self.inner.reports_of(&wanted)?;
        let reporters = reports.iter().flatten().map(|(reporter, _)| *reporter);
        let reporters = missing(reporters, &self.reporters.borrow());
        self.reports.borrow_mut().extend(wanted.into_iter().zip(reports));
        if reporters.is_empty() {
            return Ok(());
        }
        let loaded = self.inner.reporters_of(&reporters)?;
        self.reporters.borrow_mut().extend(reporters.into_iter().zip(loaded));
        Ok(())
    }
}

/// The distinct keys not in `loaded`, in their first order.
fn missing<K: Copy + Eq + std::hash::Hash, V>(keys: impl IntoIterator<Item = K>, loaded: &HashMap<K, V>) -> Vec<K> {
    let mut seen = HashSet::new();
    keys.into_iter().filter(|k| !loaded.contains_key(k) && seen.insert(*k)).collect()
}

impl<R: Reads> Reads for Prefetched<'_, R> {
    fn postings(&self, key: IndexKey) -> Result<Vec<EntryId>> {
        match self.postings.borrow().get(&key) {
            Some(list) => Ok(list.clone()),
            None => self.inner.postings(key),
        }
    }

    fn entry(&self, id: EntryId) -> Result<Option<Entry>> {
        match self.entries.borrow().get(&id) {
            Some(entry) => Ok(entry.clone()),
            None => self.inner.entry(id),
        }
    }

    fn reports(&self, id: EntryId) -> Result<Vec<(ReporterId, ReportRecord)>> {
        match self.reports.borrow().get(&id) {
            Some(reports) => Ok(reports.clone()),
            None => self.inner.reports(id),
        }
    }

    fn reporter(&self, id: ReporterId) -> Result<Option<Reporter>> {
        match self.reporters.borrow().get(&id) {
            Some(reporter) => Ok(*reporter),
            None => self.inner.reporter(id),
        }
    }

    fn organisation(&self, id: u32) -> Result<Option<Organisation>> {
        self.inner.organisation(id)
    }

    fn organisations(&self) -> Result<Vec<Organisation>> {
        self.inner.organisations()
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.inner.meta(key)
    }

    fn stats(&self) -> Result<StoreStats> {
        self.inner.stats()
    }

    fn each_index_key(&self, f: &mut dyn FnMut(&[u8])) -> Result<()> {
        self.inner.each_index_key(f)
    }

    fn each_reporter(&self, f: &mut dyn FnMut(ReporterId, Reporter)) -> Result<()> {
        self.inner.each_reporter(f)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::model::Class;

    /// A store of one entry with one report, counting its batch reads.
    #[derive(Default)]
    struct Counting {
        batches: Cell<u32>,
        singles: Cell<u32>,
    }

    const KEY: IndexKey = IndexKey::Band(0, 7);
    const ID: EntryId = EntryId([1; 16]);
    const REPORTER: ReporterId = ReporterId([2; 16]);

    fn entry() -> Entry {
        Entry {
            text: None,
            slots: vec![],
            shingles: 0,
            attachments: vec![],
            urls: vec![],
            domains: vec![],
            first_seen: 5,
            last_seen: 5,
            credited: Default::default(),
        }
    }

    impl Reads for Counting {
        fn postings(&self, key: IndexKey) -> Result<Vec<EntryId>> {
            self.singles.set(self.singles.get() + 1);
            Ok(if key == KEY { vec![ID] } else { vec![] })
        }
        fn entry(&self, id: EntryId) -> Result<Option<Entry>> {
            self.singles.set(self.singles.get() + 1);
            Ok((id == ID).then(entry))
        }
        fn reports(&self, id: EntryId) -> Result<Vec<(ReporterId, ReportRecord)>> {
            self.singles.set(self.singles.get() + 1);
            let record = ReportRecord { class: Class::Spam, at: 5, org: 1 };
            Ok(if id == ID { vec![(REPORTER, record)] } else { vec![] })
        }
        fn reporter(&self, id: ReporterId) -> Result<Option<Reporter>> {
            self.singles.set(self.singles.get() + 1);
            Ok((id == REPORTER).then(|| Reporter { reports: 3, ..Reporter::default() }))
        }
        fn postings_of(&self, keys: &[IndexKey]) -> Result<Vec<Vec<EntryId>>> {
            self.batches.set(self.batches.get() + 1);
            let singles = self.singles.get();
            let out = keys.iter().map(|k| self.postings(*k)).collect();
            self.singles.set(singles);
            out
        }
        fn entries_of(&self, ids: &[EntryId]) -> Result<Vec<Option<Entry>>> {
            self.batches.set(self.batches.get() + 1);
            Ok(ids.iter().map(|id| (*id == ID).then(entry)).collect())
        }
        fn reports_of(&self, ids: &[EntryId]) -> Result<Vec<Vec<(ReporterId, ReportRecord)>>> {
            self.batches.set(self.batches.get() + 1);
            let singles = self.singles.get();
            let out = ids.iter().map(|id| self.reports(*id)).collect();
            self.singles.set(singles);
            out
        }
        fn reporters_of(&self, ids: &[ReporterId]) -> Result<Vec<Option<Reporter>>> {
            self.batches.set(self.batches.get() + 1);
            let singles = self.singles.get();
            let out = ids.iter().map(|id| self.reporter(*id)).collect();
            self.singles.set(singles);
            out
        }
        fn organisation(&self, _: u32) -> Result<Option<Organisation>> {
            Ok(None)
        }
        fn organisations(&self) -> Result<Vec<Organisation>> {
            Ok(vec![])
        }
        fn meta(&self, _: &str) -> Result<Option<Vec<u8>>> {
            Ok(None)
        }
        fn stats(&self) -> Result<StoreStats> {
            Ok(StoreStats::default())
        }
        fn each_index_key(&self, _: &mut dyn FnMut(&[u8])) -> Result<()> {
            Ok(())
        }
        fn each_reporter(&self, _: &mut dyn FnMut(ReporterId, Reporter)) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn loaded_levels_answer_without_single_reads_and_the_same_as_the_store() {
        let store = Counting::default();
        let reads = Prefetched::new(&store);
        let other = IndexKey::Band(1, 9);
        reads.load_postings([KEY, other, KEY]).unwrap();
        reads.load_entries([ID, EntryId([9; 16])]).unwrap();
        reads.load_reports([ID]).unwrap();
        assert_eq!(store.batches.get(), 4, "one batch per level, reporters with the reports");

        assert_eq!(reads.postings(KEY).unwrap(), vec![ID]);
        assert!(reads.postings(other).unwrap().is_empty());
        assert!(reads.entry(ID).unwrap().is_some());
        assert!(reads.entry(EntryId([9; 16])).unwrap().is_none());
        assert_eq!(reads.reports(ID).unwrap().len(), 1);
        assert_eq!(reads.reporter(REPORTER).unwrap().unwrap().reports, 3);
        assert_eq!(store.singles.get(), 0, "everything came from the loaded levels");

        // What was not loaded is read through.
        assert!(reads.postings(IndexKey::Band(2, 1)).unwrap().is_empty());
        assert_eq!(store.singles.get(), 1);
        // Loading again reads only what is missing: here nothing.
        reads.load_postings([KEY]).unwrap();
        reads.load_reports([ID]).unwrap();
        assert_eq!(store.batches.get(), 4);
    }
}
