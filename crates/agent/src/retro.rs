//! Retro-filing: mail already delivered is filed within seconds when its
//! campaign becomes known, instead of at the next daily rescan.
//!
//! Three things start a look at a delivered message again, and all three
//! end in the same place — the mailbox task fetches it and runs it through
//! the whole pipeline with [`Pass::Retro`](crate::process::Pass::Retro), so
//! whitelists, rescues, the policy and the never-lose-mail rules apply as
//! they do at delivery:
//!
//! 1. one of this organisation's users reported a message as spam (the
//!    report was acknowledged): copies sharing a fingerprint key with it;
//! 2. the network says fingerprints became spam (its `Changes` long poll:
//!    somebody's report anywhere): copies with those keys;
//! 3. the local model learnt something: messages it is now sure of.
//!
//! The keys of what was delivered are held by [`Index`] (in memory, rebuilt
//! from the state database at start); the rows say where each message is.
//! A fourth pass settles implicit ham: mail left unmoved (and read) long
//! enough by a user who reports spam is learnt as ham.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::AgentConfig;
use crate::recent::{Located, Matcher};

/// Recent deliveries by fingerprint key, shared by the processor (which
/// adds what it leaves in place) and the supervisor (which looks up what
/// became known).
#[derive(Debug)]
pub struct Index {
    enabled: std::sync::atomic::AtomicBool,
    matcher: Mutex<Matcher>,
    filed: AtomicU64,
    by_model: AtomicU64,
}

impl Index {
    /// An empty index; `enabled` is `retro.enabled`.
    pub fn new(config: &AgentConfig) -> Index {
        Index {
            enabled: config.retro.enabled.into(),
            matcher: Mutex::new(Matcher::default()),
            filed: AtomicU64::new(0),
            by_model: AtomicU64::new(0),
        }
    }

    fn matcher(&self) -> std::sync::MutexGuard<'_, Matcher> {
        self.matcher.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether deliveries are remembered.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Turns remembering on or off (a changed setting).
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Adds remembered rows (id, keys).
    pub fn add(&self, rows: &[(i64, Vec<u64>)]) {
        let mut matcher = self.matcher();
        for (id, keys) in rows {
            matcher.insert(*id, keys);
        }
    }

    /// The rows sharing a key with `keys`.
    pub fn candidates(&self, keys: &[u64]) -> Vec<i64> {
        self.matcher().candidates(keys).into_iter().collect()
    }

    /// Forgets rows below `id`.
    pub fn forget_below(&self, id: i64) {
        self.matcher().forget_below(id);
    }

    /// Keys held.
    pub fn keys(&self) -> usize {
        self.matcher().len()
    }

    /// Counts messages filed after delivery, and messages the model filed
    /// (at delivery or after).
    pub fn count_filed(&self, after_delivery: u64, by_model: u64) {
        self.filed.fetch_add(after_delivery, Ordering::Relaxed);
        self.by_model.fetch_add(by_model, Ordering::Relaxed);
    }

    /// Messages filed after delivery since start.
    pub fn filed(&self) -> u64 {
        self.filed.load(Ordering::Relaxed)
    }

    /// Messages the model filed since start.
    pub fn filed_by_model(&self) -> u64 {
        self.by_model.load(Ordering::Relaxed)
    }
}

/// Rows grouped by mailbox, each as (folder, locator) for the task.
pub fn by_mailbox(rows: Vec<Located>) -> BTreeMap<String, Vec<Located>> {
    let mut grouped: BTreeMap<String, Vec<Located>> = BTreeMap::new();
    for row in rows {
        grouped.entry(row.mailbox.clone()).or_default().push(row);
    }
    grouped
}

/// Mailboxes whose users report spam (they moved spam into the spam
/// folder while the agent watched, or it held mail when the agent first
/// saw it): only their unmoved mail says ham.
pub fn reporting_mailboxes(c: &rusqlite::Connection) -> rusqlite::Result<BTreeSet<String>> {
    c.prepare_cached(
        "SELECT DISTINCT mailbox FROM feedback WHERE opinion = 'spam'
         UNION SELECT mailbox FROM model_history WHERE spam > 0",
    )?
    .query_map([], |r| r.get(0))?
    .collect()
}

/// Whether a Maildir unique name (with its `:2,` info) has the Seen flag.
pub fn maildir_seen(name: &str) -> bool {
    name.rsplit_once(":2,").is_some_and(|(_, flags)| flags.contains('S'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maildir_flags_say_whether_a_message_was_read() {
        assert!(maildir_seen("1700000000.M1P2.host:2,S"));
        assert!(maildir_seen("1700000000.M1P2.host:2,RS"));
        assert!(!maildir_seen("1700000000.M1P2.host:2,"));
        assert!(!maildir_seen("1700000000.M1P2.host"));
    }

    #[test]
    fn the_index_finds_rows_by_any_key() {
        let index = Index::new(&AgentConfig::default());
        index.add(&[(1, vec![10, 20]), (2, vec![20, 30])]);
        assert_eq!(index.candidates(&[20]), [1, 2]);
        assert_eq!(index.candidates(&[30, 99]), [2]);
        index.forget_below(2);
        assert_eq!(index.candidates(&[10, 20]), [2]);
    }
}
