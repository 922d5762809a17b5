//! Brute-force protection for logins: each account name gets a few free
//! failures, then must wait a delay that doubles with every further failure
//! (capped), and all names together get a budget of failures per minute
//! (against password spraying). While an account waits, even its right
//! password is refused, or the wait would protect nothing. A success clears
//! the name's count.
//!
//! Kept in memory: a restart forgives, which costs an attacker a restart
//! they cannot cause. Per client address there is no limit: behind a proxy
//! every client has the proxy's address.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures of one name before it must wait.
pub const FREE_FAILURES: u32 = 5;
/// The first wait; it doubles with each further failure.
pub const FIRST_WAIT: Duration = Duration::from_secs(2);
/// The longest wait.
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Failures of all names together per minute before every login waits.
pub const GLOBAL_FAILURES_PER_MINUTE: u32 = 60;
/// Names remembered at most (the oldest are forgotten first).
const MAX_NAMES: usize = 10_000;

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    /// No attempt before this.
    until: Instant,
    last: Instant,
}

/// The logins' throttle.
#[derive(Debug, Default)]
pub struct Throttle {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    names: HashMap<String, Failures>,
    /// Failures in the current minute, and when it started.
    window: Option<(Instant, u32)>,
}

impl Throttle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long `name` must wait before an attempt is checked (`None`: it
    /// may try now).
    pub fn wait(&self, name: &str, now: Instant) -> Option<Duration> {
        let inner = self.lock();
        let own = inner.names.get(&key(name)).and_then(|f| f.until.checked_duration_since(now));
        let global = inner.window.and_then(|(start, count)| {
            (count >= GLOBAL_FAILURES_PER_MINUTE)
                .then(|| (start + Duration::from_secs(60)).checked_duration_since(now))?
        });
        match (own, global) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b).filter(|d| !d.is_zero()),
        }
    }

    /// Records a failed attempt.
    pub fn failed(&self, name: &str, now: Instant) {
        let mut inner = self.lock();
        let window = match inner.window {
            Some((start, count)) if now.duration_since(start) < Duration::from_secs(60) => (start, count + 1),
            _ => (now, 1),
        };
        inner.window = Some(window);
        if inner.names.len() >= MAX_NAMES && !inner.names.contains_key(&key(name)) {
            let oldest = inner.names.iter().min_by_key(|(_, f)| f.last).map(|(n, _)| n.clone());
            if let Some(oldest) = oldest {
                inner.names.remove(&oldest);
            }
        }
        let entry = inner.names.entry(key(name)).or_insert(Failures { count: 0, until: now, last: now });
        entry.count += 1;
        entry.last = now;
        if entry.count >= FREE_FAILURES {
            let doublings = (entry.count - FREE_FAILURES).min(16);
            entry.until = now + (FIRST_WAIT * 2u32.pow(doublings)).min(MAX_WAIT);
        }
    }

    /// Records a success: the name starts afresh.
    pub fn succeeded(&self, name: &str) {
        self.lock().names.remove(&key(name));
    }
}

fn key(name: &str) -> String {
    name.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_gets_a_few_failures_then_waits_longer_and_longer() {
        let throttle = Throttle::default();
        let start = Instant::now();
        for _ in 0..FREE_FAILURES - 1 {
            throttle.failed("admin", start);
            assert_eq!(throttle.wait("admin", start), None);
        }
        throttle.failed("Admin ", start);
        assert_eq!(throttle.wait("admin", start), Some(FIRST_WAIT), "names are case- and space-blind");
        assert_eq!(throttle.wait("other", start), None, "other names are not held up");
        throttle.failed("admin", start + FIRST_WAIT);
        assert_eq!(throttle.wait("admin", start + FIRST_WAIT), Some(FIRST_WAIT * 2));
        for i in 0..40 {
            throttle.failed("admin", start + Duration::from_secs(i));
        }
        assert!(throttle.wait("admin", start + Duration::from_secs(40)).unwrap() <= MAX_WAIT);
        throttle.succeeded("admin");
        assert_eq!(throttle.wait("admin", start + Duration::from_secs(40)), None);
    }

    #[test]
    fn spraying_many_names_meets_the_global_budget() {
        let throttle = Throttle::default();
        let start = Instant::now();
        for i in 0..GLOBAL_FAILURES_PER_MINUTE {
            throttle.failed(&format!("user{i}"), start);
        }
        let wait = throttle.wait("fresh-name", start + Duration::from_secs(10)).expect("everyone waits");
        assert_eq!(wait, Duration::from_secs(50));
        assert_eq!(throttle.wait("fresh-name", start + Duration::from_secs(61)), None, "a new minute");
    }

    #[test]
    fn memory_is_bounded() {
        let throttle = Throttle::default();
        let start = Instant::now();
        for i in 0..MAX_NAMES + 100 {
            throttle.failed(&format!("n{i}"), start + Duration::from_secs(60 * i as u64));
        }
        assert!(throttle.lock().names.len() <= MAX_NAMES);
    }
}
