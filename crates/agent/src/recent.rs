//! What the agent delivered recently, for retro-filing and for the local
//! model's implicit ham: where each message is (mailbox, folder, locator),
//! its fingerprint index keys hashed once more to 64 bits, and its model
//! features. No content, no addresses. Rows live in the state database's
//! `recent` table; [`Matcher`] holds the keys in memory so a campaign that
//! became known finds its delivered copies without a query per key.
//!
//! Bounded twice: rows older than `rescan.max_age_hours` are forgotten,
//! and at most `retro.max_messages` are kept (the oldest go first).

use std::collections::{BTreeSet, HashMap};

use rusqlite::{Connection, params};
use starling_proto::v1;
use xxhash_rust::xxh3::xxh3_64;

/// A row's status: still where it was delivered, nothing learnt from it.
pub const PENDING: i64 = 0;
/// Learnt as ham (left unmoved and read), or looked at by the model:
/// still a retro-filing candidate for the network, not for ham again.
pub const SETTLED: i64 = 1;
/// Filed, moved or reported: nothing more to do.
pub const DONE: i64 = 2;

/// A delivered message as remembered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// Mailbox name.
    pub mailbox: String,
    /// Folder (IMAP name, or Maildir folder).
    pub folder: String,
    /// IMAP `uidvalidity:uid`, or the Maildir unique name.
    pub locator: String,
    /// Message-ID, to recognise the user's own moves of it.
    pub message_id: Option<String>,
    /// Fingerprint index keys, hashed ([`key_hash`]).
    pub keys: Vec<u64>,
    /// Model features ([`starling_model::Features::to_bytes`]).
    pub features: Option<Vec<u8>>,
}

/// A remembered message to act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// Row id.
    pub id: i64,
    /// Mailbox name.
    pub mailbox: String,
    /// Folder.
    pub folder: String,
    /// Locator.
    pub locator: String,
}

/// The 64-bit value a fingerprint index key is remembered by.
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// The hashed index keys of a fingerprint set as the network indexes it
/// (text digest, min-hash bands, attachments); none for an invalid set.
pub fn keys_of(set: &v1::FingerprintSet) -> Vec<u64> {
    starling_proto::index_keys_of_wire(set).iter().map(|k| key_hash(k)).collect()
}

fn keys_to_blob(keys: &[u64]) -> Vec<u8> {
    keys.iter().flat_map(|k| k.to_le_bytes()).collect()
}

fn keys_from_blob(blob: &[u8]) -> Vec<u64> {
    blob.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
}

/// Remembers deliveries (a message seen again replaces its row); returns
/// each row's id with its keys, for the [`Matcher`].
pub fn insert(c: &mut Connection, rows: &[Delivered], at: i64) -> rusqlite::Result<Vec<(i64, Vec<u64>)>> {
    let tx = c.transaction()?;
    let mut ids = Vec::with_capacity(rows.len());
    {
        let mut statement = tx.prepare_cached(
            "INSERT INTO recent (mailbox, folder, locator, message_id, delivered_at, keys, features, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)
             ON CONFLICT (mailbox, folder, locator) DO UPDATE SET keys = ?6, features = ?7
             RETURNING id",
        )?;
        for row in rows {
            let id: i64 = statement.query_row(
                params![
                    row.mailbox,
                    row.folder,
                    row.locator,
                    row.message_id,
                    at,
                    keys_to_blob(&row.keys),
                    row.features
                ],
                |r| r.get(0),
            )?;
            ids.push((id, row.keys.clone()));
        }
    }
    tx.commit()?;
    Ok(ids)
}

/// Every remembered row's keys (the [`Matcher`] at start-up).
pub fn all_keys(c: &Connection) -> rusqlite::Result<Vec<(i64, Vec<u64>)>> {
    c.prepare("SELECT id, keys FROM recent WHERE status < 2")?
        .query_map([], |r| Ok((r.get(0)?, keys_from_blob(&r.get::<_, Vec<u8>>(1)?))))?
        .collect()
}

fn located(r: &rusqlite::Row<'_>) -> rusqlite::Result<Located> {
    Ok(Located { id: r.get(0)?, mailbox: r.get(1)?, folder: r.get(2)?, locator: r.get(3)? })
}

/// The rows with these ids that are not done yet.
pub fn locate(c: &Connection, ids: &[i64]) -> rusqlite::Result<Vec<Located>> {
    let mut statement =
        c.prepare_cached("SELECT id, mailbox, folder, locator FROM recent WHERE id = ?1 AND status < 2")?;
    let mut found = Vec::new();
    for id in ids {
        if let Some(row) = statement.query_map([id], located)?.next() {
            found.push(row?);
        }
    }
    Ok(found)
}

/// Sets the status of rows.
pub fn set_status(c: &mut Connection, ids: &[i64], status: i64) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    {
        let mut statement = tx.prepare_cached("UPDATE recent SET status = ?2 WHERE id = ?1")?;
        for id in ids {
            statement.execute(params![id, status])?;
        }
    }
    tx.commit()
}

/// Marks the rows of a message done (by locator): it was filed, or it is
/// gone from where it was delivered.
pub fn done_at(c: &mut Connection, mailbox: &str, folder: &str, locators: &[String]) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    {
        let mut statement =
            tx.prepare_cached("UPDATE recent SET status = 2 WHERE mailbox = ?1 AND folder = ?2 AND locator = ?3")?;
        for locator in locators {
            statement.execute(params![mailbox, folder, locator])?;
        }
    }
    tx.commit()
}

/// Marks a message done by Message-ID: its user moved or reported it.
pub fn done_by_message(c: &Connection, mailbox: &str, message_id: &str) -> rusqlite::Result<usize> {
    c.prepare_cached("UPDATE recent SET status = 2 WHERE mailbox = ?1 AND message_id = ?2")?
        .execute(params![mailbox, message_id])
}

/// Pending rows delivered before `before` (Unix seconds), oldest first:
/// candidates for implicit ham.
pub fn unsettled(c: &Connection, before: i64, limit: u32) -> rusqlite::Result<Vec<Located>> {
    c.prepare_cached(
        "SELECT id, mailbox, folder, locator FROM recent
         WHERE status = 0 AND delivered_at < ?1 ORDER BY status, delivered_at LIMIT ?2",
    )?
    .query_map(params![before, limit], located)?
    .collect()
}

/// Rows not done with id above `after`, with their features, in id order
/// (the model's retro pass walks them in pages).
pub fn with_features(c: &Connection, after: i64, limit: u32) -> rusqlite::Result<Vec<(Located, Vec<u8>)>> {
    c.prepare_cached(
        "SELECT id, mailbox, folder, locator, features FROM recent
         WHERE id > ?1 AND status < 2 AND features IS NOT NULL ORDER BY id LIMIT ?2",
    )?
    .query_map(params![after, limit], |r| Ok((located(r)?, r.get::<_, Vec<u8>>(4)?)))?
    .collect()
}

/// The features of one row.
pub fn features(c: &Connection, id: i64) -> rusqlite::Result<Option<Vec<u8>>> {
    use rusqlite::OptionalExtension;
    c.query_row("SELECT features FROM recent WHERE id = ?1", [id], |r| r.get(0)).optional().map(Option::flatten)
}

/// Forgets rows delivered before `before` and all but the newest `keep`;
/// returns the lowest id still remembered.
pub fn expire(c: &Connection, before: i64, keep: u32) -> rusqlite::Result<i64> {
    c.execute("DELETE FROM recent WHERE delivered_at < ?1", [before])?;
    c.execute("DELETE FROM recent WHERE id <= (SELECT id FROM recent ORDER BY id DESC LIMIT 1 OFFSET ?1)", [keep])?;
    c.query_row("SELECT coalesce(min(id), 0) FROM recent", [], |r| r.get(0))
}

/// Recent deliveries by fingerprint key, in memory. Almost every key names
/// one delivery (copies of one campaign share keys, other mail does not), so
/// a key's first delivery is kept inline — 16 bytes and a control byte of
/// the hash table, about 20 bytes a key at its load, ~34 keys a message —
/// and only the keys several deliveries share have a list.
#[derive(Debug, Default)]
pub struct Matcher {
    first: HashMap<u64, i64>,
    more: HashMap<u64, Vec<i64>>,
}

impl Matcher {
    /// Adds a row's keys.
    pub fn insert(&mut self, id: i64, keys: &[u64]) {
        for key in keys {
            match self.first.entry(*key) {
                std::collections::hash_map::Entry::Vacant(vacant) => {
                    vacant.insert(id);
                }
                std::collections::hash_map::Entry::Occupied(first) if *first.get() != id => {
                    let ids = self.more.entry(*key).or_default();
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                std::collections::hash_map::Entry::Occupied(_) => {}
            }
        }
    }

    /// The rows sharing any of these keys.
    pub fn candidates<'k>(&self, keys: impl IntoIterator<Item = &'k u64>) -> BTreeSet<i64> {
        let mut rows = BTreeSet::new();
        for key in keys {
            rows.extend(self.first.get(key));
            rows.extend(self.more.get(key).into_iter().flatten());
        }
        rows
    }

    /// Forgets rows below `id` (they were expired).
    pub fn forget_below(&mut self, id: i64) {
        self.more.retain(|_, ids| {
            ids.retain(|i| *i >= id);
            !ids.is_empty()
        });
        let more = &mut self.more;
        self.first.retain(|key, first| {
            if *first >= id {
                return true;
            }
            // A later delivery with this key takes its place.
            let Some(ids) = more.get_mut(key) else { return false };
            *first = ids.remove(0);
            if ids.is_empty() {
                more.remove(key);
            }
            true
        });
        // Give memory back after a large expiry, not after every small one.
        if self.first.capacity() > 2 * self.first.len() + 4096 {
            self.first.shrink_to_fit();
            self.more.shrink_to_fit();
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.first.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.first.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let dir = tempfile::tempdir().unwrap();
        let c = crate::state::open(&dir.path().join("s.sqlite3")).unwrap();
        std::mem::forget(dir);
        c
    }

    fn row(locator: &str, keys: &[u64]) -> Delivered {
        Delivered {
            mailbox: "alice".into(),
            folder: "INBOX".into(),
            locator: locator.into(),
            message_id: Some(format!("{locator}@x")),
            keys: keys.to_vec(),
            features: Some(vec![1, 2, 3, 4]),
        }
    }

    #[test]
    fn a_known_key_finds_its_deliveries_until_they_expire() {
        let mut c = db();
        let ids = insert(&mut c, &[row("1:1", &[10, 11]), row("1:2", &[11, 12]), row("1:3", &[13])], 100).unwrap();
        let mut matcher = Matcher::default();
        for (id, keys) in &ids {
            matcher.insert(*id, keys);
        }
        let found = matcher.candidates(&[11]);
        assert_eq!(found.len(), 2);
        let located = locate(&c, &found.iter().copied().collect::<Vec<_>>()).unwrap();
        assert_eq!(located.iter().map(|l| l.locator.as_str()).collect::<Vec<_>>(), ["1:1", "1:2"]);
        // Filed ones are not candidates any more.
        done_at(&mut c, "alice", "INBOX", &["1:1".into()]).unwrap();
        assert_eq!(locate(&c, &found.iter().copied().collect::<Vec<_>>()).unwrap().len(), 1);
        assert_eq!(done_by_message(&c, "alice", "1:2@x").unwrap(), 1);
        // At most two kept: the oldest goes.
        let lowest = expire(&c, 0, 2).unwrap();
        assert_eq!(lowest, ids[1].0);
        matcher.forget_below(lowest);
        assert!(matcher.candidates(&[10]).is_empty());
        assert_eq!(all_keys(&c).unwrap(), [(ids[2].0, vec![13])]);
    }

    #[test]
    fn shared_keys_keep_every_delivery_and_a_later_one_outlives_an_expired_first() {
        let mut m = Matcher::default();
        m.insert(1, &[10, 11]);
        m.insert(2, &[11, 12]);
        m.insert(3, &[11]);
        m.insert(3, &[11]);
        assert_eq!(m.candidates(&[11]), BTreeSet::from([1, 2, 3]));
        assert_eq!(m.candidates(&[10, 12]), BTreeSet::from([1, 2]));
        assert_eq!(m.len(), 3);
        m.forget_below(2);
        assert_eq!(m.candidates(&[10]), BTreeSet::new(), "only row 1 had key 10");
        assert_eq!(m.candidates(&[11]), BTreeSet::from([2, 3]), "row 2 took row 1's place");
        m.forget_below(3);
        assert_eq!(m.candidates(&[11, 12]), BTreeSet::from([3]));
        m.forget_below(4);
        assert!(m.is_empty());
    }

    #[test]
    fn unsettled_rows_are_the_old_pending_ones() {
        let mut c = db();
        let ids = insert(&mut c, &[row("1:1", &[1]), row("1:2", &[2])], 100).unwrap();
        insert(&mut c, &[row("1:3", &[3])], 500).unwrap();
        set_status(&mut c, &[ids[1].0], SETTLED).unwrap();
        let old = unsettled(&c, 200, 10).unwrap();
        assert_eq!(old.iter().map(|l| l.locator.as_str()).collect::<Vec<_>>(), ["1:1"]);
        assert_eq!(with_features(&c, 0, 10).unwrap().len(), 3);
        assert_eq!(features(&c, ids[0].0).unwrap(), Some(vec![1, 2, 3, 4]));
    }
}
