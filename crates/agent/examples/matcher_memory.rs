//! Memory of the retro-filing index ([`starling_agent::recent::Matcher`]):
//! 100,000 remembered deliveries of 34 distinct fingerprint keys each (the
//! typical count; copies of one campaign would share keys and cost less),
//! the process's resident memory before and after.
//!
//! ```sh
//! cargo run --release -p starling-agent --example matcher_memory
//! ```

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    const MESSAGES: i64 = 100_000;
    const KEYS: usize = 34;
    let before = rss_kib();
    let mut matcher = starling_agent::recent::Matcher::default();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for id in 0..MESSAGES {
        let keys: Vec<u64> = (0..KEYS)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            })
            .collect();
        matcher.insert(id, &keys);
    }
    let grown = rss_kib().saturating_sub(before);
    println!(
        "{MESSAGES} deliveries, {} keys: {grown} KiB, {:.0} B per delivery",
        matcher.len(),
        grown as f64 * 1024.0 / MESSAGES as f64
    );
}
