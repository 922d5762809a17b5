//! The console's pages over a year of data (`scripts/bench console`).
//!
//! Fills a state database as a year of running would leave it for an
//! organisation of `--users` mailboxes (default 10,000): every hour of the
//! year counted (each user gets mail in `--active-hours` hours of the day,
//! spam, users' blocks and unblocks among it), the per-user hourly rows of
//! the last `--user-days` days (default: what `reports.user_statistics_days`
//! keeps; `--user-days 366` keeps the whole year, as `0` there would), a
//! year of events (`--events`), a whitelist, and the reports the schedule
//! writes in a year (two a day, one a month). Then starts the console on
//! loopback, logs in as a browser does and asks for each page and API
//! route `--requests` times, one after the other: the time from sending
//! the request to the last byte of the answer (p50, p99, max), and the
//! answer's size. Target: every page under 100 ms.
//!
//! A bench command rather than criterion: each figure is a whole HTTP
//! round trip against a database of gigabytes, measured after a warm-up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use starling_agent::AgentConfig;
use starling_agent::events::{CATALOGUE, Severity};
use starling_agent::live::Live;
use starling_agent::state::{self, Counters};
use tokio_util::sync::CancellationToken;

/// What to fill and how often to ask.
struct Options {
    users: u32,
    user_days: u32,
    active_hours: u32,
    events: u32,
    whitelist: u32,
    requests: u32,
    /// Leave the filled state directory behind (for a look with sqlite3).
    keep: bool,
}

impl Options {
    fn parse() -> anyhow::Result<Options> {
        let mut o = Options {
            users: 10_000,
            user_days: AgentConfig::default().reports.user_statistics_days,
            active_hours: 12,
            events: 1_000_000,
            whitelist: 2_000,
            requests: 30,
            keep: false,
        };
        let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
        while let Some(flag) = args.next() {
            let value = |args: &mut dyn Iterator<Item = String>| -> anyhow::Result<u32> {
                let text = args.next().ok_or_else(|| anyhow::anyhow!("{flag} needs a number"))?;
                Ok(text.replace('_', "").parse()?)
            };
            match flag.as_str() {
                "--users" => o.users = value(&mut args)?,
                "--user-days" => o.user_days = value(&mut args)?,
                "--active-hours" => o.active_hours = value(&mut args)?.min(24),
                "--events" => o.events = value(&mut args)?,
                "--whitelist" => o.whitelist = value(&mut args)?,
                "--requests" => o.requests = value(&mut args)?.max(1),
                "--keep" => o.keep = true,
                other => anyhow::bail!(
                    "unknown option {other} (known: --users --user-days --active-hours --events --whitelist \
                     --requests --keep)"
                ),
            }
        }
        Ok(o)
    }
}

/// A small deterministic generator (SplitMix64), so every run fills the
/// same data.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u32 {
        (self.next() % n.max(1)) as u32
    }
}

fn name(i: u32) -> String {
    format!("user{i:05}@example.org")
}

/// One user's counters for an hour in which they got mail.
fn user_hour(random: &mut Random) -> Counters {
    let checked = 1 + random.below(12);
    let spam = random.below(u64::from(checked) / 3 + 1);
    let phish = u32::from(random.below(40) == 0);
    let blocked = u32::from(random.below(25) == 0);
    let unblocked = u32::from(spam > 0 && random.below(200) == 0);
    let whitelisted = u32::from(random.below(10) == 0);
    Counters { checked, spam, phish, whitelisted, blocked, unblocked, ..Counters::default() }
}

fn fill(db: &mut rusqlite::Connection, o: &Options, now: i64, config: &AgentConfig) -> anyhow::Result<()> {
    let started = Instant::now();
    let year = now - 365 * 86_400;
    let mut random = Random(0x5EED);
    {
        let tx = db.transaction()?;
        for i in 0..o.users {
            tx.execute(
                "INSERT INTO mailboxes (name, kind, enabled, feedback, source, present, first_seen, last_seen)
                 VALUES (?1, 'user', ?2, ?3, 'imap', 1, ?4, ?5)",
                rusqlite::params![name(i), i % 17 != 0, i % 29 != 0, year, now],
            )?;
        }
        for i in 0..o.whitelist {
            let entry = format!("sender{i}.partner{}.example", i % 97);
            state::whitelist_add(&tx, "", &entry, "a supplier")?;
        }
        for i in (0..o.users).step_by(10) {
            state::whitelist_add(&tx, &name(i), &format!("friend{i}@example.net"), "")?;
        }
        tx.commit()?;
    }
    // Every hour of the year, oldest first: per-user rows (and their totals)
    // as the agent records them inside the kept window, totals alone before.
    let window = now - i64::from(o.user_days) * 86_400;
    let first_hour = year.div_euclid(3600) * 3600;
    let mut rows = 0u64;
    for hour in (first_hour..=now).step_by(3600) {
        let hour_of_day = (hour.div_euclid(3600) % 24) as u32;
        // Working hours from 07:00: nine in ten users get mail each hour;
        // at night one in ten (mostly spam).
        let share = if (hour_of_day + 24 - 7) % 24 < o.active_hours { 9 } else { 1 };
        let mut batch: BTreeMap<(i64, String), Counters> = BTreeMap::new();
        let mut total = Counters::default();
        for i in 0..o.users {
            if random.below(10) >= share {
                continue;
            }
            let counters = user_hour(&mut random);
            if hour >= window {
                batch.insert((hour, name(i)), counters);
            } else {
                total.add(&counters);
            }
        }
        if hour < window {
            db.execute(
                "INSERT INTO hourly_total (hour, checked, spam, phish, whitelisted, blocked, unblocked)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                rusqlite::params![
                    hour,
                    total.checked,
                    total.spam,
                    total.phish,
                    total.whitelisted,
                    total.blocked,
                    total.unblocked
                ],
            )?;
        } else {
            rows += batch.len() as u64;
            state::record_batch(db, &batch)?;
        }
    }
    // A year of events, mostly routine, some about one mailbox.
    {
        let tx = db.transaction()?;
        let step = (365 * 86_400 / i64::from(o.events.max(1))).max(1);
        for n in 0..i64::from(o.events) {
            // Errors are rare: one kind in fifty drawn is kept.
            let kind = loop {
                let kind = CATALOGUE[random.below(CATALOGUE.len() as u64) as usize];
                if kind.severity < Severity::Error || random.below(50) == 0 {
                    break kind;
                }
            };
            let mailbox = (random.below(3) == 0).then(|| name(random.below(u64::from(o.users))));
            tx.prepare_cached("INSERT INTO events (at, code, severity, mailbox, text) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(rusqlite::params![year + n * step, kind.id, kind.severity.as_str(), mailbox, kind.text])?;
        }
        tx.commit()?;
    }
    // The reports the schedule writes in a year.
    let dir = starling_console::reports_dir(config);
    let mut reports = 0;
    for day in 0..365 {
        let at = jiff::Timestamp::from_second(now - day * 86_400)?;
        let mut kinds = vec!["last-24-hours", "last-30-days"];
        if at.to_zoned_datetime(jiff::tz::TimeZone::UTC).day() == 1 {
            kinds.push("monthly");
        }
        for kind in kinds {
            starling_console::stats::write_report(db, config, &dir, kind, at)?;
            reports += 1;
        }
    }
    db.execute_batch("ANALYZE")?;
    println!(
        "filled: {} users, {} per-user hourly rows ({} days), {} hours of totals, {} events, {} whitelist entries, \
         {reports} reports in {:.0} s",
        o.users,
        rows,
        o.user_days,
        db.query_row("SELECT count(*) FROM hourly_total", [], |r| r.get::<_, i64>(0))?,
        o.events,
        o.whitelist + o.users / 10,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    let o = Options::parse()?;
    let dir = tempfile::Builder::new().prefix("starling-console-bench.").tempdir()?;
    let mut config = AgentConfig { state_dir: dir.path().join("state"), ..AgentConfig::default() };
    config.console.listen = "127.0.0.1:0".into();
    config.rescan.timezone = "UTC".into();
    std::fs::create_dir_all(&config.state_dir)?;
    let now = jiff::Timestamp::now().as_second();
    {
        let mut db = state::open(&config.state_dir.join(state::FILE_NAME))?;
        fill(&mut db, &o, now, &config)?;
    }
    let bytes: u64 = std::fs::read_dir(&config.state_dir)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(state::FILE_NAME))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!("database: {:.0} MB", bytes as f64 / 1e6);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let stop = CancellationToken::new();
    let running = runtime.block_on(starling_console::start(&config, Arc::new(Live::default()), stop.clone()))?;
    let base = format!("http://{}", running.addr);
    let read = |file: &str| std::fs::read_to_string(config.state_dir.join(file)).map(|s| s.trim().to_owned());
    let password = read(starling_console::INITIAL_PASSWORD_FILE)?;
    let token = read(starling_console::CLI_TOKEN_FILE)?;

    let http: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
    let login =
        http.post(format!("{base}/login")).send_form([("name", "admin"), ("password", &password), ("next", "/")])?;
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or_else(|| anyhow::anyhow!("login gave no session cookie ({})", login.status()))?
        .to_owned();

    let middle = name(o.users / 2);
    let pages: Vec<(String, bool)> = [
        "/",
        "/users",
        &format!("/users?page={}", o.users / 50 / 2),
        "/users?search=user0999",
        "/users?search=nobody",
        &format!("/users/{middle}"),
        "/whitelist",
        "/whitelist?search=partner7&page=2",
        &format!("/whitelist?scope={}", name(0)),
        "/settings",
        "/reports?period=24h",
        "/reports?period=5d",
        "/reports?period=30d",
        "/events",
        "/events?since=",
        "/events?since=&id=803",
        &format!("/events?since=&mailbox={middle}"),
        "/events?since=30d&severity=error",
        "/events?since=&severity=critical",
        "/live",
        "/guide",
        "/account",
    ]
    .iter()
    .map(|p| (p.to_string(), false))
    .chain(
        [
            "/api/v1/status",
            "/api/v1/users?limit=50",
            "/api/v1/stats?period=30d",
            "/api/v1/reports/export?period=30d",
            "/api/v1/events?limit=100",
            "/api/v1/reports",
            "/metrics",
        ]
        .iter()
        .map(|p| (p.to_string(), true)),
    )
    .collect();

    // The pages show what was filled: every mailbox, a year's reports.
    let body = |path: &str| -> anyhow::Result<String> {
        Ok(http.get(format!("{base}{path}")).header("Cookie", &cookie).call()?.body_mut().read_to_string()?)
    };
    anyhow::ensure!(body("/users")?.contains(&format!("{} mailboxes", o.users)), "/users does not count every mailbox");
    anyhow::ensure!(body("/reports?files=all")?.matches(".csv</a>").count() >= 742, "not every report listed");

    println!("{:<44} {:>9} {:>9} {:>9} {:>10}", "page", "p50 ms", "p99 ms", "max ms", "bytes");
    let mut worst = 0.0f64;
    for (path, api) in &pages {
        let ask = || -> anyhow::Result<(Duration, usize)> {
            let started = Instant::now();
            let request = http.get(format!("{base}{path}"));
            let request = if *api {
                request.header("Authorization", format!("Bearer {token}"))
            } else {
                request.header("Cookie", &cookie)
            };
            let mut response = request.call()?;
            let status = response.status();
            let body = response.body_mut().with_config().limit(64 << 20).read_to_vec()?;
            anyhow::ensure!(status == 200, "{path}: status {status}");
            Ok((started.elapsed(), body.len()))
        };
        ask()?; // warm-up
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..o.requests {
            let (time, bytes) = ask()?;
            times.push(time);
            size = bytes;
        }
        times.sort();
        let (p50, p99, max) = (percentile(&times, 0.5), percentile(&times, 0.99), percentile(&times, 1.0));
        worst = worst.max(p99);
        println!("{path:<44} {p50:>9.1} {p99:>9.1} {max:>9.1} {size:>10}");
    }
    println!(
        "console: {} pages and routes, worst p99 {worst:.1} ms ({} the 100 ms target)",
        pages.len(),
        if worst < 100.0 { "under" } else { "OVER" }
    );
    stop.cancel();
    runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), running.stopped).await })?.ok();
    if o.keep {
        println!("kept: {}", dir.keep().display());
    }
    Ok(())
}
