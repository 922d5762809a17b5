//! The store on a Redis Cluster, shared by several stateless API nodes.
//!
//! Crate: `redis` (redis-rs, BSD-3-Clause) with its synchronous cluster
//! client: the [`Store`] trait is synchronous (the writer is a thread; reads
//! are short), redis-rs follows `MOVED`/`ASK` redirections, reconnects and
//! retries across a failover by itself, and its scripts are sent by SHA.
//! `fred` (MIT) is async only and would need a runtime inside the writer.
//!
//! Every operation touches one key, so nothing needs a multi-key
//! transaction and hot keys spread over the slots. The layout (keys are
//! binary; the first byte says what they hold):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `e` + entry id (16 B) | string | the entry (postcard) |
//! | `r` + entry id | hash | reporter id (16 B) → report (postcard) |
//! | `p` + bucket (4 B) | hash | index key → entry ids (16 B each, oldest first) |
//! | `u` + reporter id | string | the reporter (postcard) |
//! | `x` + day (4 B) | set | entries due for an expiry check that day |
//! | `{s}o` | hash | organisation id → organisation |
//! | `{s}n` | hash | organisation name → id (claimed by the node creating it) |
//! | `{s}m` | hash | metadata (network key, activation key, records) |
//! | `{s}c` | hash | counters (entries, reports, reporters, index keys) |
//! | `{s}x` | sorted set | days with expiry checks |
//! | `{s}a` | stream | what each node added, for the others (see below) |
//!
//! Postings live in hashes of a fixed number of buckets (a power of two
//! chosen from `store.expected_entries` at the cluster's first use and kept
//! in the metadata), so that most buckets stay small enough for Redis's
//! compact listpack encoding instead of costing a key each. Appending to a
//! posting list (deduplicated, trimmed to the newest) is one Lua script on
//! one bucket (sent with `EVAL`, which a pipeline can carry to a master
//! that has never seen it).
//!
//! Consistency: a read view is not a snapshot (Redis has none). A write
//! batch queues its writes and sends them as one cluster pipeline when it
//! next reads (so it reads its own writes) or commits, and a batch's reads
//! of one level (posting lists, entries, reports, reporters) go in one
//! pipeline too: a report costs a handful of round trips instead of about
//! forty. A pipeline keeps the order of its commands on each master, not
//! across masters, so a batch cut off by a failure can leave a posting
//! whose entry was not written (reads skip it); a report is queued only
//! after its entry and postings were sent (a barrier), so a report that
//! landed can always be matched, and an unacknowledged report the agent
//! sends again completes whatever was cut off. `commit`
//! adds the batch's counter changes and only waits for replicas when
//! `store.redis_wait_replicas` asks it to. Several nodes write at once:
//! reports of the same message land in different hash fields; the
//! counters of one reporter updated by two
//! nodes in the same instant can lose an increment (trust then grows a
//! report later).
//!
//! Nodes tell each other what they added through the stream `{s}a`: the
//! index keys a write batch created (each node keeps its own in-memory key
//! filter, which would otherwise answer "clean" for a campaign another node
//! learnt) and the keys that became spam (for `Changes`). A node follows it
//! and is at most one poll behind (`docs/network.md`, "Redis Cluster"); the
//! stream keeps `store.redis_stream_keep` entries, and a node that fell
//! further behind is told ([`Announced::gap`]) and warms its filter again.

use std::cell::RefCell;
use std::sync::Mutex;
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterConnection, ClusterPipeline};
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, FromRedisValue, Script, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Announced, Reads, Result, Store, StoreError, StoreStats, Writes};
use crate::model::{Entry, EntryId, IndexKey, Organisation, ReportRecord, Reporter, ReporterId};

mod session;

pub use session::*;

const ORGANISATIONS: &[u8] = b"{s}o";
const META: &[u8] = b"{s}m";
const COUNTERS: &[u8] = b"{s}c";
const EXPIRY_DAYS: &[u8] = b"{s}x";
const ORGANISATION_NAMES: &[u8] = b"{s}n";
const STREAM: &[u8] = b"{s}a";
/// The metadata key of the number of posting buckets.
const BUCKETS_META: &str = "redis_posting_buckets";
/// Stream entries kept by default (`store.redis_stream_keep`; at least, as
/// Redis trims whole nodes of the stream): a node further behind warms its
/// filter from the store again (see [`RedisStore::follow`]).
pub const DEFAULT_STREAM_KEEP: usize = 10_000;
/// Announcements one `XREAD` takes: fewer than any stream keeps, so a node
/// that missed trimmed entries always gets a full page first.
const FOLLOW_PAGE: usize = 1000;

/// Appends an entry id to a posting list in a bucket: deduplicated, the
/// newest `max` kept. Answers 2 when the index key is new, 1 when added, 0
/// when it was there.
const ADD_POSTING: &str = r"
local list = redis.call('HGET', KEYS[1], ARGV[1])
local created = 0
if not list then list = ''; created = 1 end
for i = 1, #list, 16 do
  if string.sub(list, i, i + 15) == ARGV[2] then return 0 end
end
list = list .. ARGV[2]
local keep = tonumber(ARGV[3]) * 16
if #list > keep then list = string.sub(list, #list - keep + 1) end
redis.call('HSET', KEYS[1], ARGV[1], list)
return 1 + created
";

/// Claims an organisation's name and hands out its id (one slot: both
/// hashes are tagged `{s}`): -1 when the name is taken.
const CLAIM_ORGANISATION: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return -1 end
local id = redis.call('HINCRBY', KEYS[2], 'organisation_ids', 1)
if id < tonumber(ARGV[2]) then
  id = tonumber(ARGV[2])
  redis.call('HSET', KEYS[2], 'organisation_ids', id)
end
redis.call('HSET', KEYS[1], ARGV[1], id)
return id
";

/// Removes an entry id from a posting list; answers -1 when the list is
/// gone, 1 when shortened, 0 when the id was not there.
const REMOVE_POSTING: &str = r"
local list = redis.call('HGET', KEYS[1], ARGV[1])
if not list then return 0 end
local kept = ''
local found = 0
for i = 1, #list, 16 do
  local id = string.sub(list, i, i + 15)
  if id == ARGV[2] then found = 1 else kept = kept .. id end
end
if found == 0 then return 0 end
if #kept == 0 then redis.call('HDEL', KEYS[1], ARGV[1]); return -1 end
redis.call('HSET', KEYS[1], ARGV[1], kept)
return 1
";

/// One stream of an `XREAD` answer: its name, and its entries (id, fields).
type StreamReply = (Vec<u8>, Vec<(String, Vec<(Vec<u8>, Vec<u8>)>)>);

/// A store on a Redis Cluster.
pub struct RedisStore {
    client: ClusterClient,
    pool: Mutex<Vec<ClusterConnection>>,
    buckets: u32,
    wait_replicas: u32,
    stream_keep: usize,
    node: u64,
}

/// Options of the Redis store.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// Seed nodes: `host:port`.
    pub seeds: Vec<String>,
    /// Posting buckets for a new cluster (rounded up to a power of two).
    pub buckets: u32,
    /// Replicas each write batch waits for (0: none).
    pub wait_replicas: u32,
    /// Announcements kept in the stream the nodes follow (at least
    /// [`FOLLOW_PAGE`]).
    pub stream_keep: usize,
    /// How long one command may take.
    pub timeout: Duration,
}

impl RedisOptions {
    /// Options from a `redis://host:port[,host:port…]` address.
    pub fn from_url(url: &str, expected_entries: usize, wait_replicas: u32) -> Result<RedisOptions> {
        let rest = url.strip_prefix("redis://").ok_or_else(|| {
            StoreError::permanent(format!("{url:?}: a Redis Cluster address is redis://host:port[,host:port…]"))
        })?;
        let seeds: Vec<String> =
            rest.trim_end_matches('/').split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        if seeds.is_empty() || seeds.iter().any(|s| !s.contains(':')) {
            return Err(StoreError::permanent(format!("{url:?}: every seed must be host:port")));
        }
        // About 40 index keys per bucket: small enough for listpacks.
        let keys = expected_entries.saturating_mul(2 + starling_fingerprint::BANDS) / 40;
        let buckets = (keys.max(1024) as u32).next_power_of_two().min(1 << 28);
        Ok(RedisOptions {
            seeds,
            buckets,
            wait_replicas,
            stream_keep: DEFAULT_STREAM_KEEP,
            timeout: Duration::from_secs(2),
        })
    }
}

fn redis_error(e: redis::RedisError) -> StoreError {
    let transient = e.is_io_error()
        || e.is_timeout()
        || e.is_cluster_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(e.kind(), redis::ErrorKind::Server(_));
    let message = format!("redis: {e}");
    if transient { StoreError::transient(message) } else { StoreError::permanent(message) }
}

fn parse_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::permanent(format!("redis: an unexpected answer: {e}"))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("records serialise")
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::permanent(format!("corrupt {what} record: {e}")))
}

fn key(kind: u8, id: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + id.len());
    key.push(kind);
    key.extend_from_slice(id);
    key
}

fn ids(bytes: &[u8]) -> Vec<EntryId> {
    bytes.chunks_exact(16).map(|c| EntryId(c.try_into().expect("16 bytes"))).collect()
}

impl RedisStore {
    /// Connects to the cluster and agrees on its layout.
    pub fn open(options: &RedisOptions) -> Result<RedisStore> {
        let seeds: Vec<String> = options.seeds.iter().map(|s| format!("redis://{s}")).collect();
        // Few, short retries: a request that cannot be served while the
        // cluster moves slots fails fast as "unavailable" (agents retry),
        // and the connection is replaced so the next one reads the slots
        // afresh; long retries inside would hold every caller for seconds.
        let client = ClusterClient::builder(seeds)
            .connection_timeout(options.timeout.min(Duration::from_secs(1)))
            .response_timeout(options.timeout)
            .retries(2)
            .min_retry_wait(20)
            .max_retry_wait(200)
            .build()
            .map_err(redis_error)?;
        let mut node = [0u8; 8];
        getrandom::fill(&mut node).expect("the operating system's random source works");
        let store = RedisStore {
            client,
            pool: Mutex::new(Vec::new()),
            buckets: 0,
            wait_replicas: options.wait_replicas,
            stream_keep: options.stream_keep.max(FOLLOW_PAGE),
            node: u64::from_le_bytes(node),
        };
        let wanted = options.buckets.to_be_bytes().to_vec();
        let agreed = store.init_meta(BUCKETS_META, &wanted)?;
        let buckets = <[u8; 4]>::try_from(agreed.as_slice())
            .map(u32::from_be_bytes)
            .map_err(|_| StoreError::permanent("corrupt posting bucket count in the metadata"))?;
        Ok(RedisStore { buckets, ..store })
    }

    /// This process's id in the announcement stream.
    pub fn node_id(&self) -> u64 {
        self.node
    }

    fn connection(&self) -> Result<Pooled<'_>> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let connection = match pooled {
            Some(connection) => connection,
            None => self.client.get_connection().map_err(redis_error)?,
        };
        Ok(Pooled { connection: Some(connection), store: self, broken: false })
    }

    fn bucket(&self, index_key: &[u8]) -> Vec<u8> {
        let hash = xxhash_rust::xxh3::xxh3_64(index_key);
        let bucket = (hash % u64::from(self.buckets.max(1))) as u32;
        key(b'p', &bucket.to_be_bytes())
    }

    /// The addresses of the masters now.
    fn masters(&self, connection: &mut ClusterConnection) -> Result<Vec<(String, u16)>> {
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
        let value = connection.route_command(redis::cmd("CLUSTER").arg("NODES"), routing).map_err(redis_error)?;
        let text = String::from_redis_value(value).map_err(parse_error)?;
        let mut masters = Vec::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(address), Some(flags)) = (fields.get(1), fields.get(2)) else { continue };
            if !flags.contains("master") || flags.contains("fail") {
                continue;
            }
            let address = address.split('@').next().unwrap_or(address);
            if let Some((host, port)) = address.rsplit_once(':')
                && let Ok(port) = port.parse()
            {
                masters.push((host.to_owned(), port));
            }
        }
        Ok(masters)
    }

    /// Every key starting with `prefix`, master by master (maintenance).
    fn scan(&self, prefix: u8, f: &mut dyn FnMut(&mut ClusterConnection, Vec<u8>) -> Result<()>) -> Result<()> {
        let mut pooled = self.connection()?;
        let result = self.scan_on(pooled.get(), prefix, f);
        pooled.broken |= result.is_err();
        result
    }

    fn scan_on(
        &self,
        connection: &mut ClusterConnection,
        prefix: u8,
        f: &mut dyn FnMut(&mut ClusterConnection, Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        for (host, port) in self.masters(connection)? {
            let mut cursor = 0u64;
            loop {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host: host.clone(), port });
                let mut command = redis::cmd("SCAN");
                command.arg(cursor).arg("MATCH").arg(&[prefix, b'*'][..]).arg("COUNT").arg(1000);
                let value = connection.route_command(&command, routing).map_err(redis_error)?;
                let (next, keys): (u64, Vec<Vec<u8>>) = FromRedisValue::from_redis_value(value).map_err(parse_error)?;
                for key in keys {
                    f(connection, key)?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    /// Sets a metadata value unless one is there; answers the value kept.
    pub fn init_meta(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        let mut pooled = self.connection()?;
        let _: i64 = pooled.run(redis::cmd("HSETNX").arg(META).arg(name).arg(value))?;
        let kept: Option<Vec<u8>> = pooled.run(redis::cmd("HGET").arg(META).arg(name))?;
        kept.ok_or_else(|| StoreError::transient("a metadata value vanished after it was set"))
    }
}

impl Store for RedisStore {
    type Reader<'a> = Session<'a>;
    type Writer<'a> = Session<'a>;

    fn reader(&self) -> Result<Session<'_>> {
        Ok(Session {
            connection: RefCell::new(self.connection()?),
            store: self,
            queued: RefCell::default(),
            counters: RefCell::default(),
        })
    }

    fn writer(&self) -> Result<Session<'_>> {
        self.reader()
    }

    fn init_meta(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        RedisStore::init_meta(self, name, value)
    }

    fn shared(&self) -> bool {
        true
    }

    fn claim_organisation(&self, name: &str, at_least: u32) -> Result<Option<Option<u32>>> {
        let mut pooled = self.connection()?;
        let script = Script::new(CLAIM_ORGANISATION);
        let mut invocation = script.key(ORGANISATION_NAMES);
        invocation.key(COUNTERS).arg(name).arg(at_least);
        let id: i64 = invocation.invoke(pooled.get()).map_err(|e| pooled.failed(e))?;
        Ok(Some(u32::try_from(id).ok()))
    }

    fn announce(&self, filter: &[Vec<u8>], changes: &[Vec<u8>]) -> Result<()> {
        if filter.is_empty() && changes.is_empty() {
            return Ok(());
        }
        let pack = |keys: &[Vec<u8>]| {
            keys.iter().fold(Vec::new(), |mut out, key| {
                out.push(key.len() as u8);
                out.extend_from_slice(key);
                out
            })
        };
        let mut pooled = self.connection()?;
        let command = redis::cmd("XADD")
            .arg(STREAM)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.stream_keep)
            .arg("*")
            .arg("n")
            .arg(self.node)
            .arg("f")
            .arg(pack(filter))
            .arg("c")
            .arg(pack(changes))
            .clone();
        let _: Value = pooled.run(&command)?;
        Ok(())
    }

    fn follow(&self, cursor: &mut String, wait: Duration) -> Result<Option<Announced>> {
        // A connection of its own: XREAD BLOCK holds it.
        let mut connection = self.connection()?;
        if cursor.is_empty() {
            let last: Vec<(String, Value)> =
                connection.run(redis::cmd("XREVRANGE").arg(STREAM).arg("+").arg("-").arg("COUNT").arg(1))?;
            *cursor = last.first().map_or_else(|| "0-0".to_owned(), |(id, _)| id.clone());
            return Ok(Some(Announced::default()));
        }
        let command = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(FOLLOW_PAGE)
            .arg("BLOCK")
            .arg(wait.as_millis() as u64)
            .arg("STREAMS")
            .arg(STREAM)
            .arg(cursor.as_str())
            .clone();
        let read_from = cursor.clone();
        let reply: Option<Vec<StreamReply>> = connection.run(&command)?;
        let mut announced = Announced::default();
        // A full page: this node is behind, perhaps further than the
        // stream keeps. Redis says the newest id it trimmed; past the
        // cursor, announcements were lost.
        if reply.as_ref().is_some_and(|streams| streams.iter().any(|(_, entries)| entries.len() >= FOLLOW_PAGE)) {
            let info: Value = connection.run(redis::cmd("XINFO").arg("STREAM").arg(STREAM))?;
            announced.gap = trimmed_after(&info, &read_from);
        }
        let unpack = |bytes: &[u8], out: &mut Vec<Vec<u8>>| {
            let mut rest = bytes;
            while let Some((&len, tail)) = rest.split_first() {
                let len = usize::from(len).min(tail.len());
                out.push(tail[..len].to_vec());
                rest = &tail[len..];
            }
        };
        for (_, entries) in reply.unwrap_or_default() {
            for (id, fields) in entries {
                cursor.clone_from(&id);
                let from =
                    fields.iter().find(|(k, _)| k == b"n").and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok());
                if from == Some(self.node) {
                    continue;
                }
                for (field, value) in &fields {
                    match field.as_slice() {
                        b"f" => unpack(value, &mut announced.filter),
                        b"c" => unpack(value, &mut announced.changes),
                        _ => {}
                    }
                }
            }
        }
        Ok(Some(announced))
    }
}

/// Whether `XINFO STREAM`'s answer (Redis 7) says announcements after
/// `cursor` were trimmed: the oldest entry kept is newer than the cursor's
/// (or, for a reader that started on an empty stream, anything was ever
/// trimmed). Trimming takes the oldest first, so what follows the cursor
/// went too — unless the cut fell exactly after it, a rare false alarm
/// that costs one warming of the filter.
fn trimmed_after(info: &Value, cursor: &str) -> bool {
    let Value::Array(fields) = info else { return false };
    let field = |wanted: &[u8]| {
        fields.chunks(2).find_map(|pair| match pair {
            [Value::BulkString(name), value] if name == wanted => Some(value),
            _ => None,
        })
    };
    let int = |wanted: &[u8]| match field(wanted) {
        Some(Value::Int(n)) => Some(*n),
        _ => None,
    };
    let first = match field(b"recorded-first-entry-id") {
        Some(Value::BulkString(id)) => std::str::from_utf8(id).ok().and_then(stream_id),
        _ => None,
    };
    let (Some(first), Some(cursor)) = (first, stream_id(cursor)) else { return false };
    if cursor == (0, 0) {
        return int(b"entries-added").zip(int(b"length")).is_some_and(|(added, kept)| added > kept);
    }
    first > cursor
}

/// A stream entry id `ms-seq` as a pair that orders like Redis's.
fn stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod stream_tests {
    use super::*;

    #[test]
    fn entries_trimmed_after_the_cursor_are_a_gap() {
        let info = |first: &str, added: i64, length: i64| {
            Value::Array(vec![
                Value::BulkString(b"length".to_vec()),
                Value::Int(length),
                Value::BulkString(b"max-deleted-entry-id".to_vec()),
                Value::BulkString(b"0-0".to_vec()),
                Value::BulkString(b"entries-added".to_vec()),
                Value::Int(added),
                Value::BulkString(b"recorded-first-entry-id".to_vec()),
                Value::BulkString(first.as_bytes().to_vec()),
            ])
        };
        assert!(trimmed_after(&info("1700000000123-4", 4000, 1000), "1700000000123-3"), "the cursor's entry is gone");
        assert!(trimmed_after(&info("1700000000124-0", 4000, 1000), "1700000000123-9"));
        assert!(!trimmed_after(&info("1700000000123-3", 4000, 1000), "1700000000123-3"), "the cursor's entry is kept");
        assert!(!trimmed_after(&info("1700000000123-3", 4000, 1000), "1700000000125-0"));
        assert!(
            trimmed_after(&info("1700000000123-3", 4000, 1000), "0-0"),
            "from an empty stream, something was trimmed"
        );
        assert!(!trimmed_after(&info("1700000000123-3", 1000, 1000), "0-0"), "from an empty stream, nothing was");
        assert!(!trimmed_after(&Value::Nil, "1-1"), "an answer without the fields says nothing");
        assert_eq!(stream_id("12-3"), Some((12, 3)));
        assert_eq!(stream_id("12"), None);
    }
}
