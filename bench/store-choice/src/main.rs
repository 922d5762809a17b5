//! Throwaway benchmark: redb 4.x vs fjall 3.x for a spam-reputation store.
//! Usage: storebench <redb|fjall>[-reopen] [entries=1000000] [load_limit_secs=480] [dir=/tmp/storebench/data] [cache_mib=64]
//! `-reopen` skips loading: reopens the existing store (entries = number previously loaded) and only runs lookups.
use std::path::Path;
use std::time::{Duration, Instant};

const IDX_PER_ENTRY: u64 = 33;
const BATCH: u64 = 1_000;
const REC_LEN: usize = 400;
const LOOKUPS: u64 = 1_000_000;
const READ_TXN_EVERY: u64 = 64;
const SEED_IDX: u64 = 0x5EED_0001;
const SEED_ID: u64 = 0x5EED_0002;
const SEED_REC: u64 = 0x5EED_0003;
const SEED_MISS: u64 = 0x5EED_0004;
const SEED_PICK: u64 = 0x5EED_0005;

#[inline]
fn splitmix64(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 16 pseudo-random bytes, a pure function of (seed, n).
#[inline]
fn rand16(seed: u64, n: u64) -> [u8; 16] {
    let mut s = seed ^ n.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let a = splitmix64(&mut s);
    let b = splitmix64(&mut s);
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    out
}

/// Index key j (0..33) of entry i: kind byte + 16 random bytes.
#[inline]
fn idx_key(i: u64, j: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = j as u8;
    k[1..].copy_from_slice(&rand16(SEED_IDX, i * IDX_PER_ENTRY + j));
    k
}

/// A key that was never written (different seed).
#[inline]
fn miss_key(n: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = (n % IDX_PER_ENTRY) as u8;
    k[1..].copy_from_slice(&rand16(SEED_MISS, n));
    k
}

#[inline]
fn entry_id(i: u64) -> [u8; 16] {
    rand16(SEED_ID, i)
}

fn record(i: u64, buf: &mut [u8; REC_LEN]) {
    let mut s = SEED_REC ^ i.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    for c in buf.chunks_mut(8) {
        c.copy_from_slice(&splitmix64(&mut s).to_le_bytes()[..c.len()]);
    }
}

/// A random existing key among the first `loaded` entries (n-th pick).
#[inline]
fn hit_key(n: u64, loaded: u64) -> [u8; 17] {
    let mut s = SEED_PICK ^ n.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let r = splitmix64(&mut s);
    let i = ((r >> 32) * loaded) >> 32;
    let j = (r & 0xffff_ffff) % IDX_PER_ENTRY;
    idx_key(i, j)
}

fn status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn du(dir: &Path, label: &str) {
    let run = |flag: &str| {
        let o = std::process::Command::new("du").arg(flag).arg(dir).output().unwrap();
        String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap_or("?").to_string()
    };
    let apparent: u64 = run("-sb").parse().unwrap_or(0);
    let alloc_k: u64 = run("-sk").parse().unwrap_or(0);
    println!(
        "DU {label}: allocated {:.1} MiB, apparent {:.1} MiB",
        alloc_k as f64 / 1024.0,
        apparent as f64 / (1024.0 * 1024.0)
    );
}

struct Load {
    loaded: u64,
    secs: f64,
}

/// Drives batches; `write` gets [start, end) entry range and must make it durable.
fn load(entries: u64, limit: Duration, reopen: bool, mut write: impl FnMut(u64, u64)) -> Load {
    if reopen {
        println!("REOPEN: skipping load, {entries} entries assumed present");
        return Load { loaded: entries, secs: 0.0 };
    }
    let t0 = Instant::now();
    let mut last = t0;
    let mut i = 0;
    while i < entries {
        let end = (i + BATCH).min(entries);
        write(i, end);
        i = end;
        if i % 100_000 == 0 || i == entries {
            let now = Instant::now();
            println!(
                "  loaded {i:>8} entries, {:7.1}s total, last 100k at {:8.0} entries/s, RSS {}",
                (now - t0).as_secs_f64(),
                100_000.0 / (now - last).as_secs_f64(),
                status("VmRSS:")
            );
            last = now;
        }
        if t0.elapsed() > limit {
            println!("  LOAD TIME LIMIT HIT after {i} entries");
            break;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "LOAD: {i} entries ({} index keys + {i} records) in {secs:.1}s = {:.0} entries/s ({:.0} index keys/s), {:.2} ms/batch",
        i * IDX_PER_ENTRY,
        i as f64 / secs,
        (i * IDX_PER_ENTRY) as f64 / secs,
        secs * 1000.0 / (i as f64 / BATCH as f64)
    );
    Load { loaded: i, secs }
}

fn report_lookup(label: &str, t: Duration, hits: u64) {
    println!(
        "LOOKUP {label}: {LOOKUPS} lookups in {:.2}s = {:.0} ns/lookup, hits={hits}",
        t.as_secs_f64(),
        t.as_nanos() as f64 / LOOKUPS as f64
    );
}

fn keygen_overhead(loaded: u64) {
    let t = Instant::now();
    let mut x = 0u8;
    for n in 0..LOOKUPS {
        x ^= std::hint::black_box(hit_key(n, loaded))[5];
        x ^= std::hint::black_box(miss_key(n))[5];
    }
    std::hint::black_box(x);
    println!(
        "key-generation overhead (hit+miss key): {:.1} ns per pair (included in lookup numbers)",
        t.elapsed().as_nanos() as f64 / LOOKUPS as f64
    );
}

// ---------------------------------------------------------------- redb
fn run_redb(dir: &Path, entries: u64, limit: Duration, cache: usize, reopen: bool) {
    use redb::{Database, ReadableDatabase, TableDefinition};
    const IDX: TableDefinition<&[u8; 17], &[u8; 16]> = TableDefinition::new("idx");
    const REC: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("rec");

    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("store.redb");
    let mut b = Database::builder();
    b.set_cache_size(cache);
    let db = if reopen { b.open(&path) } else { b.create(&path) }.unwrap();

    let mut rec = [0u8; REC_LEN];
    let l = load(entries, limit, reopen, |start, end| {
        let txn = db.begin_write().unwrap(); // default durability = Immediate
        {
            let mut idx = txn.open_table(IDX).unwrap();
            let mut recs = txn.open_table(REC).unwrap();
            for i in start..end {
                let id = entry_id(i);
                for j in 0..IDX_PER_ENTRY {
                    idx.insert(&idx_key(i, j), &id).unwrap();
                }
                record(i, &mut rec);
                recs.insert(&id, &rec[..]).unwrap();
            }
        }
        txn.commit().unwrap();
    });
    du(dir, "after load");
    println!("RSS after load: {}", status("VmRSS:"));
    keygen_overhead(l.loaded);

    let lookup = |label: &str, key: &dyn Fn(u64) -> [u8; 17]| {
        let t = Instant::now();
        let mut hits = 0u64;
        let mut n = 0u64;
        while n < LOOKUPS {
            let rtx = db.begin_read().unwrap();
            let t_idx = rtx.open_table(IDX).unwrap();
            for _ in 0..READ_TXN_EVERY.min(LOOKUPS - n) {
                if t_idx.get(&key(n)).unwrap().is_some() {
                    hits += 1;
                }
                n += 1;
            }
        }
        report_lookup(label, t.elapsed(), hits);
    };
    lookup("existing (1 read txn / 64)", &|n| hit_key(n, l.loaded));
    lookup("absent   (1 read txn / 64)", &|n| miss_key(n));
    // second pass, to see warm-cache effect
    lookup("existing pass2", &|n| hit_key(n + LOOKUPS, l.loaded));
    lookup("absent   pass2", &|n| miss_key(n + LOOKUPS));

    let t = Instant::now();
    drop(db);
    println!("close: {:.1}s", t.elapsed().as_secs_f64());
    du(dir, "after close");
    let _ = l.secs;
}

// ---------------------------------------------------------------- fjall
fn run_fjall(dir: &Path, entries: u64, limit: Duration, cache: usize, reopen: bool) {
    use fjall::{Database, KeyspaceCreateOptions, PersistMode};

    let db = Database::builder(dir).cache_size(cache as u64).open().unwrap();
    let idx = db.keyspace("idx", KeyspaceCreateOptions::default).unwrap();
    let recs = db.keyspace("rec", KeyspaceCreateOptions::default).unwrap();

    let mut rec = [0u8; REC_LEN];
    let l = load(entries, limit, reopen, |start, end| {
        let mut b = db.batch().durability(Some(PersistMode::SyncAll)); // fsync journal on commit
        for i in start..end {
            let id = entry_id(i);
            for j in 0..IDX_PER_ENTRY {
                b.insert(&idx, &idx_key(i, j)[..], &id[..]);
            }
            record(i, &mut rec);
            b.insert(&recs, &id[..], &rec[..]);
        }
        b.commit().unwrap();
    });
    du(dir, "after load (immediately)");
    println!(
        "RSS after load: {}; tables idx={} (L0 {}), rec={}; outstanding flushes {}, active compactions {}",
        status("VmRSS:"),
        idx.table_count(),
        idx.l0_table_count(),
        recs.table_count(),
        db.outstanding_flushes(),
        db.active_compactions()
    );
    // Let background flush/compaction settle before measuring reads.
    let t = Instant::now();
    let mut quiet = 0;
    while quiet < 20 && t.elapsed() < Duration::from_secs(300) {
        if db.outstanding_flushes() == 0 && db.active_compactions() == 0 {
            quiet += 1;
        } else {
            quiet = 0;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "background settle: {:.1}s; tables idx={} (L0 {}), rec={}, compactions completed {}, journals {}",
        t.elapsed().as_secs_f64(),
        idx.table_count(),
        idx.l0_table_count(),
        recs.table_count(),
        db.compactions_completed(),
        db.journal_count()
    );
    du(dir, "after settle");
    keygen_overhead(l.loaded);

    let lookup = |label: &str, key: &dyn Fn(u64) -> [u8; 17]| {
        let t = Instant::now();
        let mut hits = 0u64;
        for n in 0..LOOKUPS {
            if idx.get(key(n)).unwrap().is_some() {
                hits += 1;
            }
        }
        report_lookup(label, t.elapsed(), hits);
    };
    lookup("existing (direct get)", &|n| hit_key(n, l.loaded));
    lookup("absent   (direct get)", &|n| miss_key(n));
    lookup("existing pass2", &|n| hit_key(n + LOOKUPS, l.loaded));
    lookup("absent   pass2", &|n| miss_key(n + LOOKUPS));

    let t = Instant::now();
    drop(idx);
    drop(recs);
    drop(db);
    println!("close: {:.1}s", t.elapsed().as_secs_f64());
    du(dir, "after close");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let engine = args.get(1).map(String::as_str).unwrap_or("redb").to_string();
    let entries: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let limit = Duration::from_secs(args.get(3).and_then(|s| s.parse().ok()).unwrap_or(480));
    let base = args.get(4).cloned().unwrap_or_else(|| "/tmp/storebench/data".into());
    let cache: usize = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(64) << 20;
    let reopen = engine.ends_with("-reopen");
    let engine = engine.trim_end_matches("-reopen").to_string();
    let dir = Path::new(&base).join(&engine);
    if dir.exists() && !reopen {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    println!("engine={engine} reopen={reopen} cache={} MiB entries={entries} load_limit={limit:?} dir={}", cache >> 20, dir.display());
    let t = Instant::now();
    match engine.as_str() {
        "redb" => run_redb(&dir, entries, limit, cache, reopen),
        "fjall" => run_fjall(&dir, entries, limit, cache, reopen),
        e => panic!("unknown engine {e}"),
    }
    println!("total {:.1}s", t.elapsed().as_secs_f64());
    println!("PEAK RSS (VmHWM): {}   final VmRSS: {}", status("VmHWM:"), status("VmRSS:"));
}
