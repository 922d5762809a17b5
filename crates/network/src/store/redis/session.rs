//! A batch's session with the cluster: reads answered from what the
//! batch queued and from pipelines, writes queued and sent as one
//! pipeline per master (a report only after its entry and postings).

use super::*;

/// A connection taken from the pool, given back when dropped — unless it
/// failed: a new connection reads the cluster's slots afresh, which is how
/// the store finds a replica promoted after its master died.
pub(super) struct Pooled<'a> {
    pub(super) connection: Option<ClusterConnection>,
    pub(super) store: &'a RedisStore,
    pub(super) broken: bool,
}

impl Pooled<'_> {
    pub(super) fn get(&mut self) -> &mut ClusterConnection {
        self.connection.as_mut().expect("held until dropped")
    }

    /// Runs a command; a failure that is not the command's own marks the
    /// connection for replacement.
    pub(super) fn run<T: FromRedisValue>(&mut self, command: &Cmd) -> Result<T> {
        let result = command.query(self.get());
        result.map_err(|e| self.failed(e))
    }

    pub(super) fn failed(&mut self, e: redis::RedisError) -> StoreError {
        let error = redis_error(e);
        if error.is_transient() {
            self.broken = true;
        }
        error
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if self.broken {
            return;
        }
        if let Some(connection) = self.connection.take() {
            let mut pool = self.store.pool.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < 64 {
                pool.push(connection);
            }
        }
    }
}

/// Reads and writes over one pooled connection.
///
/// Writes are queued and sent as one cluster pipeline when the batch next
/// reads (so it reads its own writes) or commits: a report's twenty-odd
/// writes cost one round trip to each master instead of one each. The
/// counters they change are summed in the session and added at the commit.
pub struct Session<'a> {
    pub(super) connection: RefCell<Pooled<'a>>,
    pub(super) store: &'a RedisStore,
    pub(super) queued: RefCell<Queued>,
    pub(super) counters: RefCell<Vec<(&'static str, i64)>>,
}

/// Writes not sent yet, each with what its answer says for the counters.
#[derive(Default)]
pub(super) struct Queued {
    pub(super) pipe: ClusterPipeline,
    pub(super) effects: Vec<Effect>,
}

/// What a queued write's answer means for a counter.
#[derive(Clone, Copy)]
pub(super) enum Effect {
    /// Nothing counted.
    None,
    /// `SET … GET`: one more when there was no value before.
    NewIfNil(&'static str),
    /// A count of fields added (`HSET`).
    Add(&'static str),
    /// A count of fields or keys removed (`HLEN` before a `DEL`, `DEL`).
    Remove(&'static str),
    /// `ADD_POSTING`: one more index key when it answers 2.
    PostingAdded,
    /// `REMOVE_POSTING`: one index key fewer when it answers -1.
    PostingRemoved,
}

impl Effect {
    /// The counter and the change an answer makes to it.
    pub(super) fn delta(self, answer: &Value) -> Option<(&'static str, i64)> {
        let number = || i64::from_redis_value(answer.clone()).unwrap_or(0);
        match self {
            Effect::None => None,
            Effect::NewIfNil(counter) => matches!(answer, Value::Nil).then_some((counter, 1)),
            Effect::Add(counter) => Some((counter, number())),
            Effect::Remove(counter) => Some((counter, -number())),
            Effect::PostingAdded => (number() == 2).then_some(("index_keys", 1)),
            Effect::PostingRemoved => (number() == -1).then_some(("index_keys", -1)),
        }
    }
}

impl Session<'_> {
    /// Runs a command at once, after the queued writes.
    pub(super) fn query<T: FromRedisValue>(&self, command: &Cmd) -> Result<T> {
        self.flush()?;
        self.connection.borrow_mut().run(command)
    }

    /// Queues a write.
    pub(super) fn queue(&self, command: Cmd, effect: Effect) {
        let mut queued = self.queued.borrow_mut();
        queued.pipe.add_command(command);
        queued.effects.push(effect);
    }

    /// Adds to a counter at the commit.
    pub(super) fn count(&self, counter: &'static str, by: i64) {
        if by == 0 {
            return;
        }
        let mut counters = self.counters.borrow_mut();
        match counters.iter_mut().find(|(name, _)| *name == counter) {
            Some((_, sum)) => *sum += by,
            None => counters.push((counter, by)),
        }
    }

    /// Sends the queued writes: in order on each master, in one round trip
    /// to each.
    pub(super) fn flush(&self) -> Result<()> {
        let Queued { pipe, effects } = std::mem::take(&mut *self.queued.borrow_mut());
        if effects.is_empty() {
            return Ok(());
        }
        let answers: Vec<Value> = {
            let mut connection = self.connection.borrow_mut();
            let result = pipe.query(connection.get());
            result.map_err(|e| connection.failed(e))?
        };
        for (effect, answer) in effects.into_iter().zip(&answers) {
            if let Some((counter, by)) = effect.delta(answer) {
                self.count(counter, by);
            }
        }
        Ok(())
    }

    pub(super) fn record<T: DeserializeOwned>(&self, what: &str, key: &[u8]) -> Result<Option<T>> {
        let bytes: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(key))?;
        bytes.map(|b| decode(what, &b)).transpose()
    }

    /// One command per item in one cluster pipeline: a round trip to each
    /// master holding some of the keys instead of one per item; the
    /// answers in the items' order, after the queued writes.
    pub(super) fn pipelined<I, T: FromRedisValue>(
        &self,
        items: &[I],
        command: impl Fn(&mut ClusterPipeline, &I),
    ) -> Result<Vec<T>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        self.flush()?;
        let mut pipe = ClusterPipeline::with_capacity(items.len());
        for item in items {
            command(&mut pipe, item);
        }
        let mut connection = self.connection.borrow_mut();
        let result = pipe.query(connection.get());
        result.map_err(|e| connection.failed(e))
    }

    /// Queues setting a string, counted in `counter` when it is new.
    pub(super) fn set_counted(&self, key: &[u8], value: &[u8], counter: &'static str) {
        self.queue(redis::cmd("SET").arg(key).arg(value).arg("GET").clone(), Effect::NewIfNil(counter));
    }
}

/// The reports of one entry from its hash, by reporter.
pub(super) fn reports_from(fields: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Vec<(ReporterId, ReportRecord)>> {
    let mut out = Vec::with_capacity(fields.len());
    for (reporter, record) in fields {
        let reporter = <[u8; 16]>::try_from(reporter.as_slice())
            .map_err(|_| StoreError::permanent("corrupt reporter id in a report"))?;
        out.push((ReporterId(reporter), decode("report", &record)?));
    }
    out.sort_by_key(|(reporter, _)| *reporter);
    Ok(out)
}

impl Reads for Session<'_> {
    fn postings(&self, index_key: IndexKey) -> Result<Vec<EntryId>> {
        let field = index_key.to_bytes();
        let list: Option<Vec<u8>> = self.query(redis::cmd("HGET").arg(self.store.bucket(&field)).arg(field))?;
        Ok(list.map(|l| ids(&l)).unwrap_or_default())
    }

    fn entry(&self, id: EntryId) -> Result<Option<Entry>> {
        self.record("entry", &key(b'e', &id.0))
    }

    fn reports(&self, id: EntryId) -> Result<Vec<(ReporterId, ReportRecord)>> {
        reports_from(self.query(redis::cmd("HGETALL").arg(key(b'r', &id.0)))?)
    }

    fn reporter(&self, id: ReporterId) -> Result<Option<Reporter>> {
        self.record("reporter", &key(b'u', &id.0))
    }

    fn organisation(&self, id: u32) -> Result<Option<Organisation>> {
        let bytes: Option<Vec<u8>> = self.query(redis::cmd("HGET").arg(ORGANISATIONS).arg(&id.to_be_bytes()[..]))?;
        bytes.map(|b| decode("organisation", &b)).transpose()
    }

    fn organisations(&self) -> Result<Vec<Organisation>> {
        let all: Vec<(Vec<u8>, Vec<u8>)> = self.query(redis::cmd("HGETALL").arg(ORGANISATIONS))?;
        let mut out: Vec<Organisation> = all.iter().map(|(_, b)| decode("organisation", b)).collect::<Result<_>>()?;
        out.sort_by_key(|o| o.id);
        Ok(out)
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.query(redis::cmd("HGET").arg(META).arg(name))
    }

    fn stats(&self) -> Result<StoreStats> {
        let counters: std::collections::HashMap<String, i64> = self.query(redis::cmd("HGETALL").arg(COUNTERS))?;
        let organisations: u64 = self.query(redis::cmd("HLEN").arg(ORGANISATIONS))?;
        let get = |name: &str| counters.get(name).copied().unwrap_or(0).max(0) as u64;
        let mut connection = self.connection.borrow_mut();
        let masters = self.store.masters(connection.get());
        connection.broken |= masters.is_err();
        let bytes = masters?.into_iter().try_fold(0u64, |sum, (host, port)| {
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
            let value =
                connection.get().route_command(redis::cmd("INFO").arg("memory"), routing).map_err(redis_error)?;
            let info = String::from_redis_value(value).map_err(parse_error)?;
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}:")))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            Ok::<u64, StoreError>(
                sum + field("used_memory").unwrap_or(0).saturating_sub(field("used_memory_startup").unwrap_or(0)),
            )
        })?;
        Ok(StoreStats {
            entries: get("entries"),
            reports: get("reports"),
            reporters: get("reporters"),
            index_keys: get("index_keys"),
            organisations,
            bytes,
        })
    }

    fn postings_of(&self, keys: &[IndexKey]) -> Result<Vec<Vec<EntryId>>> {
        let lists: Vec<Option<Vec<u8>>> = self.pipelined(keys, |pipe, index_key| {
            let field = index_key.to_bytes();
            pipe.cmd("HGET").arg(self.store.bucket(&field)).arg(field);
        })?;
        Ok(lists.into_iter().map(|list| list.map(|l| ids(&l)).unwrap_or_default()).collect())
    }

    fn entries_of(&self, ids: &[EntryId]) -> Result<Vec<Option<Entry>>> {
        let records: Vec<Option<Vec<u8>>> = self.pipelined(ids, |pipe, id| {
            pipe.cmd("GET").arg(key(b'e', &id.0));
        })?;
        records.into_iter().map(|bytes| bytes.map(|b| decode("entry", &b)).transpose()).collect()
    }

    fn reports_of(&self, ids: &[EntryId]) -> Result<Vec<Vec<(ReporterId, ReportRecord)>>> {
        let all: Vec<Vec<(Vec<u8>, Vec<u8>)>> = self.pipelined(ids, |pipe, id| {
            pipe.cmd("HGETALL").arg(key(b'r', &id.0));
        })?;
        all.into_iter().map(reports_from).collect()
    }

    fn reporters_of(&self, ids: &[ReporterId]) -> Result<Vec<Option<Reporter>>> {
        let records: Vec<Option<Vec<u8>>> = self.pipelined(ids, |pipe, id| {
            pipe.cmd("GET").arg(key(b'u', &id.0));
        })?;
        records.into_iter().map(|bytes| bytes.map(|b| decode("reporter", &b)).transpose()).collect()
    }

    fn each_index_key(&self, f: &mut dyn FnMut(&[u8])) -> Result<()> {
        self.store.scan(b'p', &mut |connection, bucket| {
            let fields: Vec<Vec<u8>> = redis::cmd("HKEYS").arg(bucket).query(connection).map_err(redis_error)?;
            fields.iter().for_each(|field| f(field));
            Ok(())
        })
    }

    fn each_reporter(&self, f: &mut dyn FnMut(ReporterId, Reporter)) -> Result<()> {
        self.store.scan(b'u', &mut |connection, key| {
            let id = <[u8; 16]>::try_from(&key[1..]).map_err(|_| StoreError::permanent("corrupt reporter key"))?;
            let bytes: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query(connection).map_err(redis_error)?;
            if let Some(bytes) = bytes {
                f(ReporterId(id), decode("reporter", &bytes)?);
            }
            Ok(())
        })
    }
}

impl Writes for Session<'_> {
    fn put_entry(&mut self, id: EntryId, entry: &Entry) -> Result<()> {
        self.set_counted(&key(b'e', &id.0), &encode(entry), "entries");
        Ok(())
    }

    fn delete_entry(&mut self, id: EntryId) -> Result<()> {
        self.queue(redis::cmd("HLEN").arg(key(b'r', &id.0)).clone(), Effect::Remove("reports"));
        self.queue(redis::cmd("DEL").arg(key(b'r', &id.0)).clone(), Effect::None);
        self.queue(redis::cmd("DEL").arg(key(b'e', &id.0)).clone(), Effect::Remove("entries"));
        Ok(())
    }

    fn put_report(&mut self, id: EntryId, reporter: ReporterId, report: &ReportRecord) -> Result<()> {
        // A barrier: the entry and its postings are on the masters before
        // the report is, so a report found again (a retry after a failure)
        // always has everything it needs to be matched.
        self.flush()?;
        let command = redis::cmd("HSET").arg(key(b'r', &id.0)).arg(&reporter.0[..]).arg(encode(report)).clone();
        self.queue(command, Effect::Add("reports"));
        Ok(())
    }

    fn delete_report(&mut self, id: EntryId, reporter: ReporterId) -> Result<bool> {
        // Its answer is needed now: sent at once, after what is queued.
        let removed: i64 = self.query(redis::cmd("HDEL").arg(key(b'r', &id.0)).arg(&reporter.0[..]))?;
        self.count("reports", -removed);
        Ok(removed > 0)
    }

    fn add_posting(&mut self, index_key: IndexKey, id: EntryId, max: usize) -> Result<()> {
        let field = index_key.to_bytes();
        let bucket = self.store.bucket(&field);
        // EVAL, not EVALSHA: a pipeline cannot load a script a master does
        // not have (a replica just promoted); the server caches it by hash.
        let mut command = redis::cmd("EVAL");
        command.arg(ADD_POSTING).arg(1).arg(bucket).arg(field).arg(&id.0[..]).arg(max.max(1));
        self.queue(command, Effect::PostingAdded);
        Ok(())
    }

    fn remove_posting(&mut self, index_key: IndexKey, id: EntryId) -> Result<()> {
        let field = index_key.to_bytes();
        let bucket = self.store.bucket(&field);
        let mut command = redis::cmd("EVAL");
        command.arg(REMOVE_POSTING).arg(1).arg(bucket).arg(field).arg(&id.0[..]);
        self.queue(command, Effect::PostingRemoved);
        Ok(())
    }

    fn put_reporter(&mut self, id: ReporterId, reporter: &Reporter) -> Result<()> {
        self.set_counted(&key(b'u', &id.0), &encode(reporter), "reporters");
        Ok(())
    }

    fn put_organisation(&mut self, organisation: &Organisation) -> Result<()> {
        let mut command = redis::cmd("HSET");
        command.arg(ORGANISATIONS).arg(&organisation.id.to_be_bytes()[..]).arg(encode(organisation));
        self.queue(command, Effect::None);
        Ok(())
    }

    fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<()> {
        self.queue(redis::cmd("HSET").arg(META).arg(name).arg(value).clone(), Effect::None);
        Ok(())
    }

    fn schedule_expiry(&mut self, day: u32, id: EntryId) -> Result<()> {
        self.queue(redis::cmd("SADD").arg(key(b'x', &day.to_be_bytes())).arg(&id.0[..]).clone(), Effect::None);
        self.queue(redis::cmd("ZADD").arg(EXPIRY_DAYS).arg(day).arg(&day.to_be_bytes()[..]).clone(), Effect::None);
        Ok(())
    }

    fn take_due_expiries(&mut self, day: u32, limit: usize) -> Result<Vec<EntryId>> {
        let days: Vec<Vec<u8>> = self.query(redis::cmd("ZRANGEBYSCORE").arg(EXPIRY_DAYS).arg("-inf").arg(day))?;
        let mut due = Vec::new();
        for member in days {
            if due.len() >= limit {
                break;
            }
            let set = key(b'x', &member);
            // SPOP is atomic: two nodes never take the same entry.
            let taken: Vec<Vec<u8>> = self.query(redis::cmd("SPOP").arg(&set).arg(limit - due.len()))?;
            due.extend(taken.iter().filter_map(|b| <[u8; 16]>::try_from(b.as_slice()).ok()).map(EntryId));
            let left: i64 = self.query(redis::cmd("SCARD").arg(&set))?;
            if left == 0 {
                let _: i64 = self.query(redis::cmd("ZREM").arg(EXPIRY_DAYS).arg(&member))?;
            }
        }
        Ok(due)
    }

    fn commit(self) -> Result<()> {
        self.flush()?;
        let counters = std::mem::take(&mut *self.counters.borrow_mut());
        if !counters.is_empty() {
            let mut pipe = ClusterPipeline::with_capacity(counters.len());
            for (counter, by) in counters {
                pipe.cmd("HINCRBY").arg(COUNTERS).arg(counter).arg(by);
            }
            let mut connection = self.connection.borrow_mut();
            let result: redis::RedisResult<Vec<Value>> = pipe.query(connection.get());
            result.map_err(|e| connection.failed(e))?;
        }
        if self.store.wait_replicas == 0 {
            return Ok(());
        }
        // Every master this connection wrote to waits until that many
        // replicas have its writes, for at most a second.
        let routing = RoutingInfo::MultiNode((
            MultipleNodeRoutingInfo::AllMasters,
            Some(ResponsePolicy::Aggregate(redis::cluster_routing::AggregateOp::Min)),
        ));
        let command = redis::cmd("WAIT").arg(self.store.wait_replicas).arg(1000).clone();
        let mut connection = self.connection.borrow_mut();
        let value = connection.get().route_command(&command, routing).map_err(|e| connection.failed(e))?;
        let acknowledged = i64::from_redis_value(value).map_err(parse_error)?;
        if acknowledged < i64::from(self.store.wait_replicas) {
            return Err(StoreError::transient(format!(
                "the batch reached {acknowledged} replica(s) of {} asked for within a second",
                self.store.wait_replicas
            )));
        }
        Ok(())
    }
}
