//! The organisation's correspondents: per sender (a hashed identity, never
//! the address), how many of its messages were learned as spam and as ham.
//!
//! A *known sender* has ham in the organisation and at most half as much
//! spam ([`Senders::known`]). The model never files a known sender's mail
//! by itself (the network's verdict still can): mail that the
//! organisation's users keep is the mail a content model must not guess
//! about, and newsletters, notifications and mailing lists — the ham that
//! scores like spam — nearly always come back from the same address. The
//! idea is SpamAssassin's TxRep and rspamd's known-senders module; here it
//! is learned from the same examples as the model, so `retrain` rebuilds it
//! and an undone report undoes it.

use std::collections::HashMap;

use crate::Label;

/// At most this many senders are held (16 bytes each plus the map's
/// overhead: about 4.5 MiB at most). A new sender beyond it first drops the senders
/// with no ham (spammers rarely send twice from one address), then halves
/// every count and drops what reaches zero.
pub const MAX_SENDERS: usize = 1 << 17;

/// Examples per sender and class, `[spam, ham]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Senders {
    counts: HashMap<u64, [u32; 2]>,
}

impl Senders {
    /// Whether `sender` is a correspondent: ham learned from it, and more
    /// than twice as much ham as spam (one spoofed message that a user
    /// reported does not undo a correspondence; a sender that users report
    /// as often as they keep is not one).
    pub fn known(&self, sender: Option<u64>) -> bool {
        sender.and_then(|s| self.counts.get(&s)).is_some_and(|&[spam, ham]| ham > 0 && ham > 2 * spam)
    }

    /// The number of known senders.
    pub fn known_count(&self) -> usize {
        self.counts.keys().filter(|&&s| self.known(Some(s))).count()
    }

    /// The examples of `sender`: `(spam, ham)`.
    pub fn counts(&self, sender: u64) -> (u32, u32) {
        self.counts.get(&sender).map_or((0, 0), |&[spam, ham]| (spam, ham))
    }

    pub fn add(&mut self, sender: Option<u64>, label: Label) {
        let Some(sender) = sender else { return };
        if !self.counts.contains_key(&sender) && self.counts.len() >= MAX_SENDERS {
            self.make_room();
        }
        let count = &mut self.counts.entry(sender).or_default()[label.index()];
        *count = count.saturating_add(1);
    }

    pub fn remove(&mut self, sender: Option<u64>, label: Label) {
        let Some(sender) = sender else { return };
        if let Some(counts) = self.counts.get_mut(&sender) {
            counts[label.index()] = counts[label.index()].saturating_sub(1);
            if *counts == [0, 0] {
                self.counts.remove(&sender);
            }
        }
    }

    fn make_room(&mut self) {
        self.counts.retain(|_, &mut [_, ham]| ham > 0);
        if self.counts.len() >= MAX_SENDERS {
            for counts in self.counts.values_mut() {
                *counts = counts.map(|c| c / 2);
            }
            self.counts.retain(|_, counts| *counts != [0, 0]);
        }
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Every sender with its counts, in key order (for saving: the same
    /// model always writes the same bytes).
    pub fn sorted(&self) -> Vec<(u64, [u32; 2])> {
        let mut all: Vec<(u64, [u32; 2])> = self.counts.iter().map(|(&k, &v)| (k, v)).collect();
        all.sort_unstable_by_key(|&(k, _)| k);
        all
    }

    /// Restores one saved sender.
    pub fn insert(&mut self, sender: u64, counts: [u32; 2]) {
        if counts != [0, 0] {
            self.counts.insert(sender, counts);
        }
    }

    pub fn memory_bytes(&self) -> usize {
        // The map's table: key, value and one control byte per slot.
        self.counts.capacity() * (size_of::<u64>() + size_of::<[u32; 2]>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_correspondent_needs_ham_and_little_spam() {
        let mut s = Senders::default();
        assert!(!s.known(None));
        assert!(!s.known(Some(1)));
        s.add(Some(1), Label::Spam);
        assert!(!s.known(Some(1)), "spam only");
        s.add(Some(1), Label::Ham);
        s.add(Some(1), Label::Ham);
        assert!(!s.known(Some(1)), "two ham, one spam");
        s.add(Some(1), Label::Ham);
        assert!(s.known(Some(1)));
        s.remove(Some(1), Label::Ham);
        assert!(!s.known(Some(1)), "an undone example is undone");
        s.remove(Some(1), Label::Ham);
        s.remove(Some(1), Label::Ham);
        s.remove(Some(1), Label::Spam);
        assert_eq!(s.len(), 0, "empty entries are dropped");
    }

    #[test]
    fn memory_is_bounded_and_correspondents_outlast_spammers() {
        let mut s = Senders::default();
        for i in 0..1000u64 {
            s.add(Some(i), Label::Ham);
            s.add(Some(i), Label::Ham);
        }
        for i in 1000..(MAX_SENDERS as u64 + 5000) {
            s.add(Some(i), Label::Spam);
        }
        assert!(s.len() <= MAX_SENDERS);
        assert!((0..1000).all(|i| s.known(Some(i))), "the spam-only senders went first");
    }
}
