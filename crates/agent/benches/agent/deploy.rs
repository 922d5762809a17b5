//! `deploy`: a deployment through a real Dovecot — users who report and
//! rescue by IMAP moves, the dev split delivered in a burst and at
//! 5 messages/s — and its inventory (issue 14).

use super::*;

/// A deterministic choice (xorshift), so runs compare.
pub(super) struct Seeded(u64);

impl Seeded {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The deployment scenario's defaults.
pub(super) const DEPLOY_REPORTER_SHARE: f64 = 0.3;
pub(super) const DEPLOY_TRICKLE_PER_SECOND: f64 = 5.0;
pub(super) const DEPLOY_ROUND_SECONDS: u64 = 20;
pub(super) const DEPLOY_QUIET_SECONDS: f64 = 60.0;
pub(super) const DEPLOY_QUIET_CAP_SECONDS: f64 = 420.0;
/// The run goes on at least this long after the last delivery: the time the
/// default `ham_after_minutes` (2) takes to turn read, unmoved mail into ham,
/// and a minute for the model to act on it — as the days after a burst
/// would in an organisation.
pub(super) const DEPLOY_MIN_AFTER_SECONDS: f64 = 180.0;
pub(super) const DEPLOY_DEFAULT_EXTRA: &str = "[model]\nham_after_minutes = 2\n";
/// How often the bench reads the agent's `filed` table.
pub(super) const DEPLOY_POLL: Duration = Duration::from_millis(50);

/// How mail arrives in a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Arrival {
    /// Everything as fast as LMTP takes it (one connection after another).
    Burst,
    /// This many messages a second.
    Trickle(f64),
}

impl Arrival {
    pub(super) fn name(self) -> String {
        match self {
            Arrival::Burst => "burst".into(),
            Arrival::Trickle(rate) => format!("trickle {rate}/s"),
        }
    }

    pub(super) fn key(self) -> &'static str {
        match self {
            Arrival::Burst => "burst",
            Arrival::Trickle(_) => "trickle",
        }
    }
}

/// One message of the dev split.
pub(super) struct Mail {
    pub(super) date: i64,
    pub(super) spam: bool,
    pub(super) subject: String,
    pub(super) raw: Vec<u8>,
}

/// The subject a person would recognise a campaign by: decoded, lower
/// case, without `Re:`/`Fwd:` and runs of spaces.
pub(super) fn campaign_subject(raw: &[u8]) -> String {
    let parsed = mail_parser::MessageParser::default().parse_headers(raw);
    let subject = parsed.as_ref().and_then(|m| m.subject()).unwrap_or("").to_lowercase();
    let mut subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    loop {
        let stripped = ["re:", "fw:", "fwd:", "aw:"]
            .iter()
            .find_map(|p| subject.strip_prefix(p))
            .map(|rest| rest.trim_start().to_owned());
        match stripped {
            Some(rest) => subject = rest,
            None => return subject,
        }
    }
}

/// The corpus's dev split (never the holdout groups spam-2, easy-ham-2),
/// in Date-header order; with `limit`, every k-th message of that order.
pub(super) fn dev_split(limit: Option<usize>) -> anyhow::Result<Vec<Mail>> {
    let mut mail = Vec::new();
    for (group, spam) in [("spam-1", true), ("easy-ham-1", false), ("hard-ham-1", false)] {
        for (_, raw) in starling_testkit::corpus_messages(group, usize::MAX)? {
            let date = mail_parser::MessageParser::default()
                .parse_headers(&raw)
                .and_then(|m| m.date().map(|d| d.to_timestamp()))
                .unwrap_or(0);
            mail.push(Mail { date, spam, subject: campaign_subject(&raw), raw });
        }
    }
    anyhow::ensure!(!mail.is_empty(), "the dev split is empty: is the corpus fetched?");
    mail.sort_by_key(|m| m.date);
    if let Some(limit) = limit.filter(|l| *l < mail.len()) {
        let len = mail.len();
        let keep: std::collections::HashSet<usize> = (0..limit).map(|i| i * len / limit).collect();
        mail = mail.into_iter().enumerate().filter(|(i, _)| keep.contains(i)).map(|(_, m)| m).collect();
    }
    Ok(mail)
}

pub(super) async fn deploy(user_count: usize) -> anyhow::Result<()> {
    anyhow::ensure!(user_count >= 2, "deploy needs at least 2 users");
    let limit = match std::env::var("DEPLOY_LIMIT") {
        Ok(text) => Some(text.parse::<usize>().map_err(|e| anyhow::anyhow!("DEPLOY_LIMIT={text:?}: {e}"))?),
        Err(_) => None,
    };
    let extra = std::env::var("DEPLOY_AGENT_CONFIG").unwrap_or_else(|_| DEPLOY_DEFAULT_EXTRA.to_owned());
    let runs: Vec<Arrival> = std::env::var("DEPLOY_RUNS")
        .unwrap_or_else(|_| "burst,trickle".into())
        .split(',')
        .map(|r| match r.trim() {
            "burst" => Ok(Arrival::Burst),
            "trickle" => Ok(Arrival::Trickle(DEPLOY_TRICKLE_PER_SECOND)),
            other => Err(anyhow::anyhow!("DEPLOY_RUNS: unknown run {other:?} (burst, trickle)")),
        })
        .collect::<Result<_, _>>()?;
    let agent_extra = format!("[rescan]\nenabled = false\n\n{extra}");
    // Fails here, not after a Dovecot has started, when the extra
    // configuration is wrong.
    AgentConfig::from_toml(&format!("[users]\nsource = \"list\"\nlist = [\"x\"]\n\n{agent_extra}"))
        .map_err(|problems| anyhow::anyhow!("DEPLOY_AGENT_CONFIG: {problems:?}"))?;
    let all = dev_split(limit)?;
    // DEPLOY_HISTORY=F: the oldest share F of the split is mail the users
    // already had when the agent came (the rest is delivered).
    let history_share = match std::env::var("DEPLOY_HISTORY") {
        Ok(text) => text.parse::<f64>().map_err(|e| anyhow::anyhow!("DEPLOY_HISTORY={text:?}: {e}"))?,
        Err(_) => 0.0,
    };
    anyhow::ensure!((0.0..0.9).contains(&history_share), "DEPLOY_HISTORY must be at least 0 and below 0.9");
    let (history, mail) = all.split_at((all.len() as f64 * history_share) as usize);
    eprintln!(
        "deploy: {} messages of the dev split ({} spam) delivered, {} ({} spam) already there; {user_count} users; runs: {}",
        mail.len(),
        mail.iter().filter(|m| m.spam).count(),
        history.len(),
        history.iter().filter(|m| m.spam).count(),
        runs.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
    );
    let mut results = Vec::new();
    for arrival in runs {
        let started = Instant::now();
        let result = deploy_run(arrival, history, mail, user_count, &agent_extra).await?;
        eprintln!("deploy: {} run done in {:.0} s", arrival.name(), started.elapsed().as_secs_f64());
        results.push(result);
    }
    print_deploy(&results, mail, history, limit, &agent_extra);
    Ok(())
}

pub(super) async fn deploy_run(
    arrival: Arrival,
    history: &[Mail],
    mail: &[Mail],
    user_count: usize,
    agent_extra: &str,
) -> anyhow::Result<DeployRun> {
    use std::collections::{BTreeMap, HashMap, HashSet};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    let users: Vec<String> = (0..user_count).map(|i| format!("user{i:02}")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let options = DovecotOptions { junk_special_use: true, many_connections: user_count > 40, ..Default::default() };
    let dovecot = Arc::new(Dovecot::start(&names, options)?);
    let node = Node::start().await?;

    // Seeded: the same reporters and the same assignment in both runs.
    let mut seed = Seeded(0x5eed_1234_abcd_ef01);
    let mut order: Vec<usize> = (0..user_count).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, (seed.next() % (i as u64 + 1)) as usize);
    }
    let reporter_count = ((user_count as f64 * DEPLOY_REPORTER_SHARE).round() as usize).max(1);
    let mut reporters: Vec<usize> = order[..reporter_count].to_vec();
    reporters.sort();

    // Opaque Message-IDs (nothing in them says spam or ham); the truth the
    // reporters judge by is in a file only they read.
    let work = tempfile::tempdir()?;
    let truth_path = work.path().join("truth.tsv");
    let mut truth_text = String::new();
    let mut deliveries: Vec<(usize, String, Vec<u8>)> = Vec::with_capacity(mail.len());
    for (i, m) in mail.iter().enumerate() {
        let user = (seed.next() % user_count as u64) as usize;
        let id = format!("d{}{i:05}@deploy.starling.test", &arrival.key()[..1]);
        truth_text.push_str(&format!("{id}\t{}\n", if m.spam { "spam" } else { "ham" }));
        let raw = with_message_id(&m.raw, &id);
        deliveries.push((user, id, raw));
    }
    std::fs::write(&truth_path, truth_text)?;

    let spam_folder = {
        let dovecot = dovecot.clone();
        let user = users[0].clone();
        tokio::task::spawn_blocking(move || dovecot.imap_user_output(&user, &["spam-folder"])).await??
    };
    anyhow::ensure!(!spam_folder.is_empty(), "Dovecot has no \\Junk folder (junk_special_use)");

    if !history.is_empty() {
        place_history(&dovecot, &users, &reporters, &spam_folder, history).await?;
    }

    let agent = Agent::start_with(&dovecot, &node, &users, &node.credential, agent_extra)?;
    let db_path = agent.state_dir.path().join("state.sqlite3");
    // Ready when every mailbox's inbox has its session and its spam folder
    // was looked at (its session may close again while nothing happens
    // there: IMAP NOTIFY tells the inbox's).
    let ready = Instant::now();
    while who(&dovecot) < user_count || spam_folders_watched(&db_path, &users, &spam_folder) < user_count {
        anyhow::ensure!(!agent.task.is_finished(), "the agent stopped at start");
        if ready.elapsed() > Duration::from_secs(120) {
            eprintln!(
                "deploy: {} IMAP sessions, {} of {user_count} spam folders looked at after 120 s; going on",
                who(&dovecot),
                spam_folders_watched(&db_path, &users, &spam_folder)
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let polled = Arc::new(Mutex::new(Polled::default()));
    let stop_polling = Arc::new(AtomicBool::new(false));
    let poller = {
        let (polled, stop, path) = (polled.clone(), stop_polling.clone(), db_path.clone());
        std::thread::spawn(move || poll_filed(&path, &polled, &stop))
    };
    let rounds = Arc::new(Mutex::new(Rounds::default()));
    let stop_rounds = CancellationToken::new();
    let round_task = {
        let (dovecot, users, reporters, truth, folder, rounds, stop) = (
            dovecot.clone(),
            users.clone(),
            reporters.clone(),
            truth_path.clone(),
            spam_folder.clone(),
            rounds.clone(),
            stop_rounds.clone(),
        );
        tokio::spawn(async move {
            let period = Duration::from_secs(DEPLOY_ROUND_SECONDS);
            let mut next = tokio::time::Instant::now() + period;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep_until(next) => {}
                }
                reporters_round(&dovecot, &users, &reporters, &truth, &folder, &rounds).await;
                next = (next + period).max(tokio::time::Instant::now());
            }
        })
    };

    // Deliveries, in date order, from a thread of their own.
    let total = deliveries.len();
    let done = Arc::new(AtomicUsize::new(0));
    let delivery_ids: Vec<(usize, String)> = deliveries.iter().map(|(u, id, _)| (*u, id.clone())).collect();
    let delivering = {
        let (dovecot, users, done) = (dovecot.clone(), users.clone(), done.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<f64>> {
            let started = Instant::now();
            let budget = match arrival {
                Arrival::Burst => Duration::from_secs(900),
                Arrival::Trickle(rate) => Duration::from_secs_f64(total as f64 / rate + 600.0),
            };
            let mut at = Vec::with_capacity(total);
            for (i, (user, id, raw)) in deliveries.into_iter().enumerate() {
                if let Arrival::Trickle(rate) = arrival {
                    let due = Duration::from_secs_f64(i as f64 / rate);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                anyhow::ensure!(
                    started.elapsed() < budget,
                    "deliveries took longer than {} s ({i} of {total} delivered)",
                    budget.as_secs()
                );
                dovecot
                    .lmtp_deliver(&users[user], &raw)
                    .map_err(|e| anyhow::anyhow!("LMTP delivery {i} ({id}) to {}: {e:#}", users[user]))?;
                at.push(unix_now());
                done.store(i + 1, Ordering::Relaxed);
            }
            Ok(at)
        })
    };
    let started = Instant::now();
    let mut progress = Instant::now();
    while !delivering.is_finished() {
        if agent.task.is_finished() {
            stop_polling.store(true, Ordering::Relaxed);
            let _ = agent.task.await;
            anyhow::bail!("the agent stopped during the deliveries");
        }
        if progress.elapsed() > Duration::from_secs(30) {
            progress = Instant::now();
            eprintln!(
                "deploy: {} {} of {total} delivered after {:.0} s, {} filed",
                arrival.name(),
                done.load(Ordering::Relaxed),
                started.elapsed().as_secs_f64(),
                polled.lock().unwrap().rows.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let delivered_at = delivering.await??;
    let first_delivery = delivered_at.first().copied().unwrap_or(0.0);
    let delivery_seconds = started.elapsed().as_secs_f64();
    let last_delivery = unix_now();

    // The agent's quiet: no new filing for a minute, and at least
    // DEPLOY_MIN_AFTER_SECONDS after the last delivery (reporters go on).
    let quiet_capped = loop {
        anyhow::ensure!(!agent.task.is_finished(), "the agent stopped after the deliveries");
        let now = unix_now();
        let last = polled.lock().unwrap().last_new.max(last_delivery);
        if now - last >= DEPLOY_QUIET_SECONDS && now - last_delivery >= DEPLOY_MIN_AFTER_SECONDS {
            break false;
        }
        if now - last_delivery >= DEPLOY_QUIET_CAP_SECONDS {
            break true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let quiet_after = unix_now() - last_delivery;
    stop_rounds.cancel();
    tokio::time::timeout(Duration::from_secs(300), round_task)
        .await
        .map_err(|_| anyhow::anyhow!("a reporters' round did not end in 300 s"))??;
    // The last look of the day, and what the agent makes of it.
    reporters_round(&dovecot, &users, &reporters, &truth_path, &spam_folder, &rounds).await;
    let settle = unix_now();
    while unix_now() - polled.lock().unwrap().last_new.max(settle) < 10.0 && unix_now() - settle < 60.0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_polling.store(true, Ordering::Relaxed);
    let _ = poller.join();
    let Agent { stop, task, state_dir } = agent;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .map_err(|_| anyhow::anyhow!("the agent did not stop in 60 s"))???;

    // Every completed filing, with the poller's times where it saw them.
    let mut rows: BTreeMap<i64, FiledRow> = std::mem::take(&mut polled.lock().unwrap().rows);
    let polled_count = rows.len();
    let mut diagnostics = Vec::new();
    {
        let c = rusqlite::Connection::open(state_dir.path().join("state.sqlite3"))?;
        for (id, mailbox, message_id, reason, pass, at, done) in read_filed(&c, 0)? {
            if done {
                rows.entry(id).or_insert(FiledRow { mailbox, message_id, reason, pass, at, seen: None });
            }
        }
        // The agent's own view, for the reader (tables others own: a
        // missing one is shown as "-").
        let group = |sql: &str| -> String {
            let read = || -> rusqlite::Result<Vec<String>> {
                let mut statement = c.prepare(sql)?;
                statement
                    .query_map([], |r| Ok(format!("{} {}", r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                    .collect()
            };
            match read() {
                Ok(rows) if !rows.is_empty() => rows.join(", "),
                _ => "-".into(),
            }
        };
        diagnostics.push(group(
            "SELECT opinion || (CASE WHEN desired = sent THEN '' ELSE ' (unsent)' END), count(*) FROM feedback GROUP BY 1",
        ));
        diagnostics.push(group("SELECT source || '/' || label, count(*) FROM model_examples GROUP BY 1"));
        diagnostics.push(group("SELECT severity, count(*) FROM events GROUP BY 1"));
        // Warnings and errors, with when (seconds after the first
        // delivery) they were first and last seen.
        if let Ok(mut statement) = c.prepare(
            "SELECT severity, coalesce(mailbox, ''), min(text), count(*), min(at), max(at) FROM events \
             WHERE severity NOT IN ('info', 'debug') GROUP BY severity, mailbox, substr(text, 1, 40) ORDER BY min(id) LIMIT 20",
        ) {
            let shown = statement.query_map([], |r| {
                let (first, last) = (r.get::<_, i64>(4)? as f64 - first_delivery, r.get::<_, i64>(5)? as f64 - first_delivery);
                Ok(format!(
                    "{} {} x{} at {first:.0}..{last:.0} s: {}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(2)?
                ))
            });
            for line in shown.into_iter().flatten().flatten() {
                eprintln!("deploy: agent event: {line}");
            }
        }
    }
    drop(state_dir);

    // The final inventory, over IMAP.
    let mut inventory: Vec<(HashMap<String, usize>, HashMap<String, usize>)> = Vec::new();
    for user in &users {
        let (dovecot, user, folder) = (dovecot.clone(), user.clone(), spam_folder.clone());
        let text =
            tokio::task::spawn_blocking(move || dovecot.imap_user_output(&user, &["inventory", "INBOX", &folder]))
                .await??;
        let value: serde_json::Value = serde_json::from_str(&text)?;
        let count = |folder: &str| {
            let mut out = HashMap::new();
            for id in value[folder].as_array().into_iter().flatten().filter_map(|v| v.as_str()) {
                *out.entry(id.to_owned()).or_insert(0usize) += 1;
            }
            out
        };
        inventory.push((count("INBOX"), count(&spam_folder)));
    }

    // Figures.
    let user_index: HashMap<&str, usize> = users.iter().enumerate().map(|(i, u)| (u.as_str(), i)).collect();
    let mut filings: HashMap<(usize, String), Vec<&FiledRow>> = HashMap::new();
    for row in rows.values() {
        if let Some(&u) = user_index.get(row.mailbox.as_str()) {
            filings.entry((u, row.message_id.clone())).or_default().push(row);
        }
    }
    let (moves, round_count, round_errors, longest_round, read) = {
        let r = rounds.lock().unwrap();
        (r.moves.clone(), r.rounds, r.errors, r.longest, r.read)
    };
    let mut first_rescue: HashMap<(usize, String), f64> = HashMap::new();
    let mut moved_to_spam: HashSet<(usize, String)> = HashSet::new();
    for m in &moves {
        if m.to_spam {
            moved_to_spam.insert((m.user, m.message_id.clone()));
        } else {
            let at = first_rescue.entry((m.user, m.message_id.clone())).or_insert(m.at);
            *at = at.min(m.at);
        }
    }
    let index_of: HashMap<&str, usize> = delivery_ids.iter().enumerate().map(|(i, (_, id))| (id.as_str(), i)).collect();
    // The first user move into the spam folder of each campaign subject.
    let mut subject_moved: HashMap<&str, f64> = HashMap::new();
    for m in moves.iter().filter(|m| m.to_spam) {
        if let Some(&i) = index_of.get(m.message_id.as_str()) {
            let subject = mail[i].subject.as_str();
            if !subject.is_empty() {
                let at = subject_moved.entry(subject).or_insert(m.at);
                *at = at.min(m.at);
            }
        }
    }
    let mut run = DeployRun {
        arrival,
        users: user_count,
        reporters: reporter_count,
        spam: mail.iter().filter(|m| m.spam).count(),
        ham: mail.iter().filter(|m| !m.spam).count(),
        delivery_seconds,
        quiet_after,
        quiet_capped,
        agent_spam: 0,
        spam_in_spam: 0,
        spam_moved_by_users: 0,
        spam_in_inbox: 0,
        ham_filed: 0,
        ham_fp: 0,
        ham_rescued: first_rescue.len(),
        rescued_refiled: 0,
        lost: 0,
        duplicated: 0,
        latency_all: Vec::new(),
        latency_delivery: Vec::new(),
        by_pass: BTreeMap::new(),
        by_reason: BTreeMap::new(),
        ham_by: BTreeMap::new(),
        retro_from_delivery: Vec::new(),
        retro_from_move: Vec::new(),
        retro_spam: 0,
        rounds: round_count,
        round_errors,
        longest_round,
        read,
        polled_share: ratio(polled_count, rows.len()),
        diagnostics,
    };
    let mut lost_examples = Vec::new();
    let mut moves_of: HashMap<(usize, &str), Vec<&UserMove>> = HashMap::new();
    for m in &moves {
        moves_of.entry((m.user, m.message_id.as_str())).or_default().push(m);
    }
    // DEPLOY_DUMP=DIR: one line per message, to look into a figure.
    let mut dump =
        String::from("message_id\tuser\treporter\tspam\tdelivered\tinbox\tspam_folder\tfiled\tmoves\tsubject\n");
    for (i, (user, id)) in delivery_ids.iter().enumerate() {
        let spam = mail[i].spam;
        let (inbox, spam_box) = &inventory[*user];
        let (in_inbox, in_spam) = (inbox.get(id).copied().unwrap_or(0), spam_box.get(id).copied().unwrap_or(0));
        let filed_text: Vec<String> = filings
            .get(&(*user, id.clone()))
            .into_iter()
            .flatten()
            .map(|r| format!("{}/{}@{:.3}", r.pass, r.reason, r.done_by() - delivered_at[i]))
            .collect();
        let moves_text: Vec<String> = moves_of
            .get(&(*user, id.as_str()))
            .into_iter()
            .flatten()
            .map(|m| format!("{}@{:.3}", if m.to_spam { "to-spam" } else { "rescue" }, m.at - delivered_at[i]))
            .collect();
        dump.push_str(&format!(
            "{id}\t{}\t{}\t{spam}\t{:.3}\t{in_inbox}\t{in_spam}\t{}\t{}\t{}\n",
            users[*user],
            reporters.contains(user),
            delivered_at[i],
            filed_text.join(" "),
            moves_text.join(" "),
            mail[i].subject.replace(['\t', '\n'], " ")
        ));
        if in_inbox + in_spam == 0 {
            run.lost += 1;
            if lost_examples.len() < 5 {
                lost_examples.push(format!("{id} at {}", users[*user]));
            }
        }
        if in_inbox + in_spam > 1 {
            run.duplicated += 1;
        }
        let key = (*user, id.clone());
        let filed = filings.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        let first = filed.first().copied();
        if spam {
            if in_spam > 0 {
                run.spam_in_spam += 1;
                match first {
                    Some(row) => {
                        run.agent_spam += 1;
                        *run.by_pass.entry(row.pass.clone()).or_insert(0) += 1;
                        *run.by_reason.entry(row.reason.clone()).or_insert(0) += 1;
                        let latency = row.done_by() - delivered_at[i];
                        run.latency_all.push(latency);
                        if row.pass == "delivery" {
                            run.latency_delivery.push(latency);
                        }
                        if row.pass == "retro" {
                            run.retro_spam += 1;
                            run.retro_from_delivery.push(latency);
                            let subject = mail[i].subject.as_str();
                            if let Some(moved) = subject_moved.get(subject).filter(|m| **m < row.done_by()) {
                                run.retro_from_move.push(row.done_by() - moved);
                            }
                        }
                    }
                    None => {
                        if moved_to_spam.contains(&key) {
                            run.spam_moved_by_users += 1;
                        }
                    }
                }
            } else if in_inbox > 0 {
                run.spam_in_inbox += 1;
            }
        } else if let Some(row) = first {
            run.ham_filed += 1;
            *run.ham_by.entry(format!("{}/{}", row.pass, row.reason)).or_insert(0) += 1;
            if in_spam > 0 {
                run.ham_fp += 1;
            }
            if let Some(rescued) = first_rescue.get(&key) {
                // A filing after the rescue: not the one that was rescued.
                if filed.iter().skip(1).any(|r| r.done_by() > *rescued) {
                    run.rescued_refiled += 1;
                }
            }
        }
    }
    if let Ok(dir) = std::env::var("DEPLOY_DUMP") {
        let path = Path::new(&dir).join(format!("deploy-{}.tsv", arrival.key()));
        std::fs::write(&path, dump)?;
        eprintln!("deploy: per-message outcomes in {}", path.display());
    }
    if !lost_examples.is_empty() {
        eprintln!("deploy: lost (in neither INBOX nor {spam_folder}), e.g. {}", lost_examples.join(", "));
        for user in users.iter().take(3) {
            eprintln!("deploy: {user}'s folders: {:?}", dovecot.folders(user).unwrap_or_default());
        }
    }
    // Dovecot's complaints, if any (connection limits and the like).
    let log = dovecot.log();
    let mut complaints: Vec<&str> =
        log.lines().filter(|l| l.contains("Error") || l.contains("Warning") || l.contains("Fatal")).collect();
    if !complaints.is_empty() {
        eprintln!("deploy: Dovecot logged {} warnings and errors, e.g.:", complaints.len());
        complaints.dedup_by_key(|l| l.split(": ").last().unwrap_or("").chars().take(30).collect::<String>());
        for line in complaints.iter().take(8) {
            eprintln!("deploy:   {line}");
        }
    }
    let mut node = node;
    node.stop().await;
    Ok(run)
}

/// The mail users had before the agent came, spread over the 30 days
/// before the run in its date order: every user read their ham and kept it
/// in the inbox; the reporting users had moved their spam into the spam
/// folder, the others left it unread in the inbox.
async fn place_history(
    dovecot: &std::sync::Arc<Dovecot>,
    users: &[String],
    reporters: &[usize],
    spam_folder: &str,
    history: &[Mail],
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut seed = Seeded(0x4157_0000_5eed_0001);
    let mut placed = Vec::with_capacity(history.len());
    for (i, m) in history.iter().enumerate() {
        let user = (seed.next() % users.len() as u64) as usize;
        let (folder, flags) = match (m.spam, reporters.contains(&user)) {
            (true, true) => (spam_folder.to_owned(), "(\\Seen)"),
            (true, false) => ("INBOX".to_owned(), ""),
            (false, _) => ("INBOX".to_owned(), "(\\Seen)"),
        };
        let days_ago = 30.0 - 29.0 * i as f64 / history.len() as f64;
        let raw = with_message_id(&m.raw, &format!("h{i:05}@history.starling.test"));
        placed.push((users[user].clone(), folder, flags, days_ago, raw));
    }
    let dovecot = dovecot.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        for (user, folder, flags, days_ago, raw) in placed {
            dovecot.append_old(&user, &folder, &raw, flags, days_ago)?;
        }
        Ok(())
    })
    .await??;
    eprintln!(
        "deploy: {} messages placed as the users' history in {:.0} s",
        history.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
