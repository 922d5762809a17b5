//! `soak`: many mailboxes on one Dovecot with mail arriving at a steady
//! rate for an hour, figures every round (issue 19).

use super::*;

/// What the soak delivered: Message-ID → (delivered at, unix seconds; spam;
/// the mailbox).
pub(super) type Delivered = std::collections::HashMap<String, (f64, bool, usize)>;

pub(super) async fn soak(user_count: usize) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let env = |name: &str, default: f64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (minutes, rate, round_minutes) = (env("SOAK_MINUTES", 60.0), env("SOAK_RATE", 50.0), env("SOAK_ROUND", 5.0));
    // A socket a mailbox for the inbox's session; the spam folder's
    // session only while something happens there (Dovecot has IMAP
    // NOTIFY): at the start, and for a while after each filing into it.
    let needed = user_count as u64 + user_count as u64 / 2 + 512;
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| l.lines().find(|l| l.starts_with("Max open files"))?.split_whitespace().nth(3)?.parse().ok())
        .unwrap_or(0u64);
    anyhow::ensure!(
        limit >= needed,
        "{user_count} mailboxes need {needed} open files; the limit is {limit} (ulimit -n; scripts/soak agent raises it to the hard limit)"
    );
    let users: Vec<String> = (0..user_count).map(|i| format!("s{i:05}")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let dovecot = Arc::new(Dovecot::start(&names, DovecotOptions { many_connections: true, ..Default::default() })?);
    let node = Node::start().await?;
    let (spam, ham) = pool(&node).await?;
    let started = Instant::now();
    let extra = std::env::var("SOAK_AGENT_CONFIG").unwrap_or_default();
    let agent = Agent::start_with(&dovecot, &node, &users, &node.credential, &extra)?;
    // Every mailbox's inbox in IDLE, and the spam folders' sessions, after
    // their first look, closed (quiet: watched through the inbox's).
    wait_for("every mailbox's inbox session", Duration::from_secs(1800), || who(&dovecot) >= user_count).await?;
    wait_for("the spam folders quiet", Duration::from_secs(600), || who(&dovecot) <= user_count + user_count / 20)
        .await?;
    println!(
        "soak: {user_count} mailboxes, {} IMAP sessions after {:.0} s; RSS {} KiB; {minutes} min at {rate} messages/s, rounds of {round_minutes} min",
        who(&dovecot),
        started.elapsed().as_secs_f64(),
        rss_kib()
    );

    let polled = Arc::new(Mutex::new(Polled::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (path, polled, stop) = (agent.state_dir.path().join("state.sqlite3"), polled.clone(), stop.clone());
        std::thread::spawn(move || poll_filed(&path, &polled, &stop))
    };
    let delivered: Arc<Mutex<Delivered>> = Arc::default();
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let deliverer = {
        let (dovecot, delivered, failed, stop) = (dovecot.clone(), delivered.clone(), failed.clone(), stop.clone());
        let users = users.clone();
        std::thread::spawn(move || {
            let began = Instant::now();
            let mut random = 0x2545_f491_4f6c_dd1d_u64;
            for i in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                // Paced from the start, so a slow delivery is caught up.
                let due = Duration::from_secs_f64(i as f64 / rate);
                if let Some(wait) = due.checked_sub(began.elapsed()) {
                    std::thread::sleep(wait);
                }
                random ^= random << 13;
                random ^= random >> 7;
                random ^= random << 17;
                let mailbox = (random % users.len() as u64) as usize;
                let user = &users[mailbox];
                let is_spam = i % 3 == 0;
                let source = if is_spam { &spam[(i / 3) as usize % spam.len()] } else { &ham[i as usize % ham.len()] };
                let id = format!("soak-{i}@bench");
                let raw = with_message_id(source, &id);
                match dovecot.lmtp_deliver(user, &raw) {
                    Ok(()) => {
                        delivered.lock().unwrap().insert(id, (unix_now(), is_spam, mailbox));
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };

    let round = Duration::from_secs_f64(round_minutes * 60.0);
    let rounds = (minutes / round_minutes).round().max(1.0) as usize;
    let begin = unix_now();
    for k in 1..=rounds {
        let end = begin + (k as f64) * round.as_secs_f64();
        // Counted 10 s after the round's end: what it delivered had time.
        tokio::time::sleep(Duration::from_secs_f64((end + 10.0 - unix_now()).max(0.0))).await;
        let from = end - round.as_secs_f64();
        let filed: std::collections::HashMap<String, f64> = polled
            .lock()
            .unwrap()
            .rows
            .values()
            .map(|row| (row.message_id.trim_matches(|c| c == '<' || c == '>').to_owned(), row.done_by()))
            .collect();
        let (mut spam_in_round, mut ham_in_round, mut ham_filed) = (0usize, 0usize, 0usize);
        let mut latencies = Vec::new();
        // Mailboxes whose spam took more than 5 s or was not filed: a few
        // slow mailboxes, or slowness anywhere.
        let mut slow = std::collections::HashSet::new();
        for (id, &(at, is_spam, mailbox)) in delivered.lock().unwrap().iter() {
            if at < from || at >= end {
                continue;
            }
            match (is_spam, filed.get(id)) {
                (true, Some(done)) => {
                    latencies.push(done - at);
                    if done - at > 5.0 {
                        slow.insert(mailbox);
                    }
                }
                (true, None) => {
                    slow.insert(mailbox);
                }
                (false, Some(_)) => ham_filed += 1,
                (false, None) => {}
            }
            if is_spam { spam_in_round += 1 } else { ham_in_round += 1 }
        }
        // What is counted is forgotten: the bench's own bookkeeping must
        // not grow the process it measures.
        delivered.lock().unwrap().retain(|_, (at, _, _)| *at >= end);
        polled.lock().unwrap().rows.retain(|_, row| row.done_by() >= end - 60.0);
        latencies.sort_by(f64::total_cmp);
        let files = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
        println!(
            "round {k} ({:.0}-{:.0} min): {} delivered ({} failed so far), spam filed {}/{spam_in_round}, delivery->filed p50 {} p99 {} max {} ({} mailboxes slower than 5 s), ham filed {ham_filed}/{ham_in_round}; RSS {} KiB, {files} open files, {} IMAP sessions",
            (k - 1) as f64 * round_minutes,
            k as f64 * round_minutes,
            spam_in_round + ham_in_round,
            failed.load(Ordering::Relaxed),
            latencies.len(),
            seconds(quantile_s(&latencies, 0.5)),
            seconds(quantile_s(&latencies, 0.99)),
            seconds(latencies.last().copied().unwrap_or(0.0)),
            slow.len(),
            rss_kib(),
            who(&dovecot)
        );
    }
    stop.store(true, Ordering::Relaxed);
    deliverer.join().map_err(|_| anyhow::anyhow!("the delivery thread panicked"))?;
    poller.join().map_err(|_| anyhow::anyhow!("the poller panicked"))?;
    agent.stop().await?;
    Ok(())
}
