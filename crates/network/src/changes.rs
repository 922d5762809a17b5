//! The change log behind the `Changes` long-poll: the index keys of
//! fingerprint sets that became spam or phishing, in memory, in order.
//!
//! A bounded ring of the newest keys, each with a sequence number. A cursor
//! is the node's *epoch* (a random id drawn at start-up) in the high
//! [`EPOCH_BITS`] bits and the sequence number of the next key in the low
//! bits, so a cursor from before a restart — or from another node — is
//! recognised and answered with `reset` instead of silently missing changes.
//!
//! Design decision: nothing here is stored. The log exists so that agents
//! learn of a campaign within milliseconds; an agent that was away longer
//! than the ring lasts, or whose node restarted, falls back to its rescan,
//! which asks the network about every message anyway.

use std::collections::VecDeque;

use parking_lot::Mutex;
use starling_proto::IndexKey;
use tokio::sync::watch;

/// Bits of a cursor that hold the node's epoch.
pub const EPOCH_BITS: u32 = 24;
const SEQ_BITS: u32 = 64 - EPOCH_BITS;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// The answer to a read at a cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// The keys after the cursor (possibly none) and the cursor after them.
    Keys {
        /// Keys, oldest first.
        keys: Vec<IndexKey>,
        /// Where the next read starts.
        cursor: u64,
    },
    /// The log cannot answer from that cursor; `cursor` is the current one.
    Reset {
        /// The current cursor.
        cursor: u64,
    },
}

struct Ring {
    /// Sequence number of `keys[0]`.
    first: u64,
    keys: VecDeque<IndexKey>,
}

impl Ring {
    fn next(&self) -> u64 {
        self.first + self.keys.len() as u64
    }
}

/// The log: appended to after reports commit, read by `Changes` calls.
pub struct ChangeLog {
    epoch: u64,
    keep: usize,
    ring: Mutex<Ring>,
    /// The next sequence number, for waiters; `closed` ends every wait.
    head: watch::Sender<(u64, bool)>,
}

impl ChangeLog {
    /// A log keeping the newest `keep` keys, with a random epoch.
    pub fn new(keep: usize) -> ChangeLog {
        let mut bytes = [0u8; 4];
        getrandom::fill(&mut bytes).expect("the operating system's random source works");
        let epoch = u64::from(u32::from_le_bytes(bytes)) & ((1 << EPOCH_BITS) - 1);
        ChangeLog::with_epoch(keep, epoch.max(1))
    }

    /// A log with a given epoch (1 to 2^24 − 1).
    pub fn with_epoch(keep: usize, epoch: u64) -> ChangeLog {
        assert!(epoch > 0 && epoch < (1 << EPOCH_BITS), "the epoch must fit {EPOCH_BITS} bits and not be 0");
        let (head, _) = watch::channel((0, false));
        ChangeLog { epoch, keep: keep.max(1), ring: Mutex::new(Ring { first: 0, keys: VecDeque::new() }), head }
    }

    fn cursor(&self, seq: u64) -> u64 {
        (self.epoch << SEQ_BITS) | (seq & SEQ_MASK)
    }

    /// The cursor of what has been appended so far.
    pub fn current(&self) -> u64 {
        self.cursor(self.ring.lock().next())
    }

    /// Appends keys and wakes the waiters.
    pub fn append(&self, keys: impl IntoIterator<Item = IndexKey>) {
        let mut ring = self.ring.lock();
        let before = ring.next();
        ring.keys.extend(keys);
        let excess = ring.keys.len().saturating_sub(self.keep);
        if excess > 0 {
            ring.keys.drain(..excess);
            ring.first += excess as u64;
        }
        let next = ring.next();
        drop(ring);
        if next != before {
            self.head.send_modify(|(head, _)| *head = next);
        }
    }

    /// Forgets every key and moves past the current cursor: every reader
    /// is answered `reset` (and rescans) — for when this node missed
    /// changes it cannot name.
    pub fn reset(&self) {
        let mut ring = self.ring.lock();
        ring.first = ring.next() + 1;
        ring.keys.clear();
        let next = ring.next();
        drop(ring);
        self.head.send_modify(|(head, _)| *head = next);
    }

    /// Up to `max` keys after `cursor` (0 = from now: no keys, the current
    /// cursor).
    pub fn read(&self, cursor: u64, max: usize) -> Read {
        let ring = self.ring.lock();
        let next = ring.next();
        if cursor == 0 {
            return Read::Keys { keys: Vec::new(), cursor: self.cursor(next) };
        }
        let seq = cursor & SEQ_MASK;
        if cursor >> SEQ_BITS != self.epoch || seq < ring.first || seq > next {
            return Read::Reset { cursor: self.cursor(next) };
        }
        let start = (seq - ring.first) as usize;
        let end = ring.keys.len().min(start.saturating_add(max));
        let keys: Vec<IndexKey> = ring.keys.range(start..end).copied().collect();
        Read::Keys { cursor: self.cursor(ring.first + end as u64), keys }
    }

    /// A receiver that changes when keys are appended or the log closes.
    pub fn subscribe(&self) -> watch::Receiver<(u64, bool)> {
        self.head.subscribe()
    }

    /// Ends every wait (the node is shutting down).
    pub fn close(&self) {
        self.head.send_modify(|(_, closed)| *closed = true);
    }

    /// Whether the log was closed.
    pub fn is_closed(&self) -> bool {
        self.head.borrow().1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_fingerprint::Digest;

    fn key(n: u8) -> IndexKey {
        IndexKey::Text(Digest([n; 16]))
    }

    fn keys(read: Read) -> (Vec<IndexKey>, u64) {
        match read {
            Read::Keys { keys, cursor } => (keys, cursor),
            Read::Reset { .. } => panic!("unexpected reset"),
        }
    }

    #[test]
    fn a_reader_gets_what_came_after_its_cursor_in_bounded_pieces() {
        let log = ChangeLog::with_epoch(100, 7);
        let (none, start) = keys(log.read(0, 10));
        assert!(none.is_empty());
        assert_eq!(start, log.current());
        log.append([key(1), key(2), key(3)]);
        assert!(keys(log.read(0, 10)).0.is_empty(), "cursor 0 has no history");
        let (first, cursor) = keys(log.read(start, 2));
        assert_eq!(first, vec![key(1), key(2)]);
        let (rest, cursor) = keys(log.read(cursor, 2));
        assert_eq!(rest, vec![key(3)]);
        let (none, same) = keys(log.read(cursor, 2));
        assert!(none.is_empty());
        assert_eq!(same, cursor);
    }

    #[test]
    fn cursors_it_cannot_answer_are_reset() {
        let log = ChangeLog::with_epoch(3, 7);
        let start = log.current();
        log.append([key(1), key(2)]);
        let middle = log.current();
        log.append([key(3), key(4)]);
        assert!(matches!(log.read(start, 10), Read::Reset { cursor } if cursor == log.current()), "fell behind");
        assert_eq!(keys(log.read(middle, 10)).0, vec![key(3), key(4)]);
        let restarted = ChangeLog::with_epoch(3, 8);
        assert!(matches!(restarted.read(middle, 10), Read::Reset { .. }), "another epoch");
        assert!(matches!(log.read(log.current() + 5, 10), Read::Reset { .. }), "a cursor from the future");
    }

    #[test]
    fn after_a_reset_every_reader_is_told_to_rescan_and_new_keys_flow() {
        let log = ChangeLog::with_epoch(100, 7);
        let start = log.current();
        log.append([key(1)]);
        let caught_up = log.current();
        let rx = log.subscribe();
        log.reset();
        assert!(rx.has_changed().unwrap(), "waiters wake");
        for cursor in [start, caught_up] {
            assert!(matches!(log.read(cursor, 10), Read::Reset { cursor } if cursor == log.current()), "{cursor}");
        }
        let after = log.current();
        log.append([key(2)]);
        assert_eq!(keys(log.read(after, 10)).0, vec![key(2)]);
    }

    #[tokio::test]
    async fn waiters_wake_on_append_and_on_close() {
        let log = std::sync::Arc::new(ChangeLog::with_epoch(10, 1));
        let mut rx = log.subscribe();
        let writer = log.clone();
        tokio::spawn(async move { writer.append([key(1)]) });
        tokio::time::timeout(std::time::Duration::from_secs(1), rx.changed()).await.unwrap().unwrap();
        assert_eq!(rx.borrow_and_update().0, 1);
        log.close();
        rx.changed().await.unwrap();
        assert!(log.is_closed());
    }
}
