//! The agent's side of the network: verdicts in batches, failing open.
//!
//! Mailbox tasks and the milter hand fingerprint sets to one batcher, which
//! keeps a few requests in flight: a request goes out as soon as a slot is
//! free, carrying what is queued by then (up to `batch_size`), so a lone
//! in-line check waits for nothing and a burst fills whole batches. When the network cannot be reached,
//! every pending and further check answers [`Unavailable`] at once — mail is
//! left in place and queued for a re-check — and a probe (`Hello`) runs
//! every `retry_seconds` until the network answers again. The network's
//! fingerprint key (from `Hello`) is kept in the state database, so a
//! restart during an outage still fingerprints.

use std::sync::Arc;
use std::time::Duration;

use starling_fingerprint::Key;
use starling_proto::client::{self, Credential, Target};
use starling_proto::v1;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::events::{self, Events};
use crate::policy::{NetworkClass, Verdict};
use crate::state::{self, State};

/// Requests in flight at once.
const IN_FLIGHT: usize = 4;

/// The network could not give a verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the network is unavailable")]
pub struct Unavailable;

/// What the agent knows about the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Not asked yet.
    Unknown,
    /// Answering.
    Up,
    /// Unreachable (the reason).
    Down(String),
    /// Reachable, but the organisation's credential is refused (the reason).
    Rejected(String),
}

/// How to reach the network.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The nodes, in order of preference (several API nodes of one network
    /// sharing a store: the agent moves to the next when one does not
    /// answer).
    pub targets: Vec<Target>,
    /// The organisation's credential.
    pub credential: String,
    /// Messages per request.
    pub batch_size: usize,
    /// Probe interval while down.
    pub retry: Duration,
}

struct Pending {
    set: v1::FingerprintSet,
    reply: oneshot::Sender<Result<Verdict, Unavailable>>,
}

/// What the network said of itself in its last `Hello`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Info {
    /// The node's version.
    pub node_version: String,
    /// The newest agent release announced, when newer than this agent.
    pub new_version: Option<String>,
    /// The organisation: name, plan (`trial`, `subscription`), expiry
    /// (Unix seconds, 0: never).
    pub organisation: Option<(String, String, i64)>,
    /// The release notes of the newest release ("" when none).
    pub release_notes_url: String,
}

/// Round-trip times of recent requests.
#[derive(Debug, Default)]
struct Latency {
    last_ms: Option<f64>,
    mean_ms: Option<f64>,
}

impl Latency {
    fn record(&mut self, elapsed: Duration) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        self.last_ms = Some(ms);
        // An exponential mean over roughly the last 20 requests.
        self.mean_ms = Some(self.mean_ms.map_or(ms, |mean| mean + (ms - mean) / 20.0));
    }
}

/// A handle on the network for the whole agent.
#[derive(Clone)]
pub struct Network {
    timeout: Duration,
    pending: mpsc::Sender<Pending>,
    health: watch::Receiver<Health>,
    key: watch::Receiver<Option<Key>>,
    shared: Arc<Shared>,
}

/// The nodes an agent may ask, and which one it asks now: the next one when
/// a call finds no node answering.
struct Nodes {
    clients: Vec<v1::network_client::NetworkClient<client::Authorised>>,
    /// Channels of their own for the `Changes` long poll (its calls outlast
    /// the checks' timeout).
    changes: Vec<v1::network_client::NetworkClient<client::Authorised>>,
    current: std::sync::atomic::AtomicUsize,
}

impl Nodes {
    fn index(&self) -> usize {
        self.current.load(std::sync::atomic::Ordering::Relaxed) % self.clients.len()
    }

    fn client(&self) -> v1::network_client::NetworkClient<client::Authorised> {
        self.clients[self.index()].clone()
    }

    fn changes(&self) -> v1::network_client::NetworkClient<client::Authorised> {
        self.changes[self.index()].clone()
    }

    /// After a failed call: moves to the next node when the one asked did
    /// not answer (and there is another). Whether it moved.
    fn failed(&self, status: &tonic::Status) -> bool {
        let unanswered =
            matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown);
        if unanswered && self.clients.len() > 1 {
            self.current.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return true;
        }
        false
    }
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").field("health", &*self.health.borrow()).finish_non_exhaustive()
    }
}

struct Shared {
    nodes: Nodes,
    health: watch::Sender<Health>,
    key: watch::Sender<Option<Key>>,
    events: Events,
    state: State,
    batch_size: std::sync::atomic::AtomicUsize,
    info: std::sync::Mutex<Info>,
    latency: std::sync::Mutex<Latency>,
    hello: watch::Sender<Option<Arc<v1::HelloResponse>>>,
    /// Wakes the prober for a `Hello` now.
    wake: tokio::sync::Notify,
}

impl Shared {
    fn record_latency(&self, elapsed: Duration) {
        self.latency.lock().unwrap_or_else(|e| e.into_inner()).record(elapsed);
    }
}

impl Network {
    /// Starts the batcher and the health probe. Never fails on an
    /// unreachable network: that is a state, not an error.
    pub async fn start(settings: Settings, events: Events, state: State) -> anyhow::Result<Network> {
        let credential = Credential::new(&settings.credential).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(!settings.targets.is_empty(), "no network node to ask");
        let mut clients = Vec::new();
        let mut changes = Vec::new();
        for target in &settings.targets {
            clients.push(client::network(target.connect_lazy()?, credential.clone()));
            changes.push(client::network(target.for_changes().connect_lazy()?, credential.clone()));
        }
        let nodes = Nodes { clients, changes, current: 0.into() };
        let cached = state.call(|c| state::meta_get(c, "network_key")).await?;
        let key = cached.and_then(|hex| parse_key(&hex));
        let (health_tx, health) = watch::channel(Health::Unknown);
        let (key_tx, key_rx) = watch::channel(key);
        let shared = Arc::new(Shared {
            nodes,
            health: health_tx,
            key: key_tx,
            events,
            state,
            batch_size: settings.batch_size.max(1).into(),
            info: std::sync::Mutex::new(Info::default()),
            latency: std::sync::Mutex::new(Latency::default()),
            hello: watch::channel(None).0,
            wake: tokio::sync::Notify::new(),
        });
        let (pending, receiver) = mpsc::channel(settings.batch_size.max(1) * IN_FLIGHT * 4);
        tokio::spawn(batcher(shared.clone(), receiver));
        tokio::spawn(prober(shared.clone(), settings.retry));
        let timeout = settings.targets[0].timeout;
        Ok(Network { timeout, pending, health, key: key_rx, shared })
    }

    /// What the network said of itself.
    pub fn info(&self) -> Info {
        self.shared.info.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The last and the mean round-trip time (milliseconds), once measured.
    pub fn latency(&self) -> (Option<f64>, Option<f64>) {
        let latency = self.shared.latency.lock().unwrap_or_else(|e| e.into_inner());
        (latency.last_ms, latency.mean_ms)
    }

    /// The network's fingerprint key, once known.
    pub fn key(&self) -> Option<Key> {
        self.key.borrow().clone()
    }

    /// A receiver that changes when the key does.
    pub fn key_changes(&self) -> watch::Receiver<Option<Key>> {
        self.key.clone()
    }

    /// The current health.
    pub fn health(&self) -> Health {
        self.health.borrow().clone()
    }

    /// Says `Hello` now (while filtering is stopped, the activation asks
    /// this often, so a renewal the operator issued is seen at once).
    pub fn probe_now(&self) {
        self.shared.wake.notify_one();
    }

    /// A receiver that changes with every `Hello` the network answers.
    pub fn hello_changes(&self) -> watch::Receiver<Option<Arc<v1::HelloResponse>>> {
        self.shared.hello.subscribe()
    }

    /// A receiver that changes with the health.
    pub fn health_changes(&self) -> watch::Receiver<Health> {
        self.health.clone()
    }

    /// Verdicts for fingerprint sets, in order.
    pub async fn check(&self, sets: Vec<v1::FingerprintSet>) -> Vec<Result<Verdict, Unavailable>> {
        let mut replies = Vec::with_capacity(sets.len());
        for set in sets {
            let (reply, answer) = oneshot::channel();
            if self.pending.send(Pending { set, reply }).await.is_err() {
                replies.push(None);
            } else {
                replies.push(Some(answer));
            }
        }
        let mut verdicts = Vec::with_capacity(replies.len());
        for reply in replies {
            verdicts.push(match reply {
                Some(answer) => answer.await.unwrap_or(Err(Unavailable)),
                None => Err(Unavailable),
            });
        }
        verdicts
    }
}

impl Network {
    /// Sends users' reports; acknowledged once the network stored them.
    pub async fn report(&self, reports: Vec<v1::Report>) -> Result<Vec<v1::ReportOutcome>, tonic::Status> {
        let request = v1::ReportRequest { reports };
        self.with_failover(|mut client| {
            let request = request.clone();
            async move { client.report(request).await.map(|r| r.into_inner().outcomes) }
        })
        .await
    }

    /// Withdraws reports made earlier.
    pub async fn revoke(&self, revocations: Vec<v1::Revocation>) -> Result<Vec<u32>, tonic::Status> {
        let request = v1::RevokeRequest { revocations };
        self.with_failover(|mut client| {
            let request = request.clone();
            async move { client.revoke(request).await.map(|r| r.into_inner().removed) }
        })
        .await
    }

    /// A call to the node in use, and once more to the next node when that
    /// one did not answer (reports and revocations are idempotent).
    async fn with_failover<T, F, Fut>(&self, call: F) -> Result<T, tonic::Status>
    where
        F: Fn(v1::network_client::NetworkClient<client::Authorised>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let nodes = &self.shared.nodes;
        let mut attempt = 0;
        loop {
            let result = match tokio::time::timeout(self.timeout * 4, call(nodes.client())).await {
                Ok(result) => result,
                Err(_) => Err(tonic::Status::deadline_exceeded("the network did not answer in time")),
            };
            match result {
                Err(status) if attempt == 0 && nodes.failed(&status) => attempt += 1,
                other => return other,
            }
        }
    }
}

/// How long one `Changes` call may wait at the node.
const CHANGES_WAIT: Duration = Duration::from_secs(25);

/// Follows the network's `Changes` long poll for as long as the agent
/// runs, sending the (hashed) keys of fingerprints that became spam to
/// retro-filing. Starts from now (no history): what became known while
/// the agent was away is the daily rescan's. A node without `Changes` (an
/// older version) is asked again every ten minutes.
pub async fn follow_changes(
    network: Network,
    keys: mpsc::UnboundedSender<Vec<u64>>,
    events: Events,
    stop: CancellationToken,
) {
    let mut cursor = 0;
    let mut failures = 0u32;
    loop {
        let mut client = network.shared.nodes.changes();
        let call = client::changes(&mut client, cursor, CHANGES_WAIT);
        let result = tokio::select! {
            () = stop.cancelled() => return,
            result = call => result,
        };
        let pause = match result {
            Ok(response) => {
                failures = 0;
                if response.reset && cursor != 0 {
                    events.emit(events::RETRO_RESET, None, "");
                }
                cursor = response.cursor;
                if !response.keys.is_empty() {
                    let hashed = response.keys.iter().map(|k| crate::recent::key_hash(k)).collect();
                    if keys.send(hashed).is_err() {
                        return;
                    }
                }
                Duration::ZERO
            }
            Err(status) if status.code() == Code::Unimplemented => Duration::from_secs(600),
            Err(status) => {
                failures += 1;
                // Another node has another change log: start from now there
                // (a reset), as after a node's restart.
                if network.shared.nodes.failed(&status) {
                    cursor = 0;
                    failures = 0;
                }
                tracing::debug!("network changes: {status}");
                Duration::from_secs(u64::from(failures.min(6)) * 5)
            }
        };
        if !pause.is_zero() {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

fn parse_key(hex_key: &str) -> Option<Key> {
    let bytes: [u8; 32] = hex::decode(hex_key.trim()).ok()?.try_into().ok()?;
    Some(Key::from_bytes(bytes))
}

/// Sends checks as soon as a request slot is free, with whatever is queued
/// by then; while every slot is busy, messages gather into the next batch.
/// A lone message (an in-line check) goes out at once, a burst fills
/// batches of `batch_size`.
async fn batcher(shared: Arc<Shared>, mut receiver: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = receiver.recv().await {
        if !matches!(*shared.health.borrow(), Health::Up | Health::Unknown) {
            // Fail fast while down: the prober brings the network back.
            let _ = first.reply.send(Err(Unavailable));
            continue;
        }
        let size = shared.batch_size.load(std::sync::atomic::Ordering::Relaxed).max(1);
        let mut batch = vec![first];
        let permit = loop {
            while batch.len() < size {
                match receiver.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            if let Ok(permit) = slots.clone().try_acquire_owned() {
                break permit;
            }
            let next = if batch.len() < size {
                tokio::select! {
                    biased;
                    permit = slots.clone().acquire_owned() => break match permit { Ok(p) => p, Err(_) => return },
                    next = receiver.recv() => next,
                }
            } else {
                None
            };
            match next {
                Some(next) => batch.push(next),
                None => {
                    break match slots.clone().acquire_owned().await {
                        Ok(p) => p,
                        Err(_) => return,
                    };
                }
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            send_batch(&shared, batch).await;
        });
    }
}

async fn send_batch(shared: &Shared, batch: Vec<Pending>) {
    let (sets, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.set, p.reply)).unzip();
    let request = v1::CheckRequest { messages: sets };
    let started = std::time::Instant::now();
    let mut result = shared.nodes.client().check(request.clone()).await;
    // A node that does not answer: once more on the next one, at once.
    if let Err(status) = &result
        && shared.nodes.failed(status)
    {
        result = shared.nodes.client().check(request).await;
    }
    match result {
        Ok(response) => {
            shared.record_latency(started.elapsed());
            let verdicts = response.into_inner().verdicts;
            for (reply, verdict) in
                replies.into_iter().zip(verdicts.into_iter().map(Some).chain(std::iter::repeat(None)))
            {
                let _ = reply.send(verdict.map(convert).ok_or(Unavailable));
            }
            if *shared.health.borrow() != Health::Up {
                mark_up(shared);
            }
        }
        Err(status) => {
            failed(shared, &status);
            for reply in replies {
                let _ = reply.send(Err(Unavailable));
            }
        }
    }
}

fn convert(verdict: v1::Verdict) -> Verdict {
    let class = match v1::Class::try_from(verdict.class) {
        Ok(v1::Class::Spam) => NetworkClass::Spam,
        Ok(v1::Class::Phish) => NetworkClass::Phish,
        _ => NetworkClass::Clean,
    };
    let vouched = verdict.evidence.as_ref().is_some_and(|e| e.unblocked || e.ham > 0.0);
    Verdict::Answer { class, confidence: verdict.confidence, vouched }
}

fn failed(shared: &Shared, status: &tonic::Status) {
    let reason = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => {
            let changed = shared.health.send_if_modified(|h| {
                let new = Health::Rejected(reason.clone());
                let changed = *h != new;
                *h = new;
                changed
            });
            if changed {
                shared.events.emit(events::NETWORK_CREDENTIAL_REJECTED, None, &reason);
            }
        }
        Code::ResourceExhausted => shared.events.emit(events::NETWORK_RATE_LIMITED, None, &reason),
        Code::InvalidArgument => {
            // A batch the node refuses as a whole (a bound lowered since
            // Hello); smaller batches follow.
            let size = shared.batch_size.load(std::sync::atomic::Ordering::Relaxed);
            shared.batch_size.store((size / 2).max(1), std::sync::atomic::Ordering::Relaxed);
            tracing::warn!("the network refused a batch ({reason}); batches are now smaller");
        }
        _ => {
            let was_up = matches!(*shared.health.borrow(), Health::Up | Health::Unknown);
            shared.health.send_replace(Health::Down(reason.clone()));
            if was_up {
                shared.events.reset(events::NETWORK_UNREACHABLE, None);
                shared.events.emit(events::NETWORK_UNREACHABLE, None, &reason);
            }
        }
    }
}

fn mark_up(shared: &Shared) {
    let previous = shared.health.send_replace(Health::Up);
    if matches!(previous, Health::Down(_) | Health::Rejected(_)) {
        shared.events.reset(events::NETWORK_REACHABLE, None);
        shared.events.emit(events::NETWORK_REACHABLE, None, "");
    }
}

/// Says hello at once, then again every `retry` while the network is not
/// up (and every ten minutes while it is, for the key, the organisation's
/// status and version notices).
async fn prober(shared: Arc<Shared>, retry: Duration) {
    let mut announced_version = String::new();
    // Nodes asked in a row without an answer: each is tried once before the
    // prober waits.
    let mut unanswered = 0;
    loop {
        let mut client = shared.nodes.client();
        let hello = v1::HelloRequest {
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            protocol_version: starling_proto::PROTOCOL_VERSION,
        };
        let started = std::time::Instant::now();
        match client.hello(hello).await {
            Ok(response) => {
                unanswered = 0;
                shared.record_latency(started.elapsed());
                let hello = response.into_inner();
                hello_received(&shared, &hello, &mut announced_version).await;
            }
            Err(status) => {
                unanswered += 1;
                if shared.nodes.failed(&status) && unanswered < shared.nodes.clients.len() {
                    // Ask the next node at once.
                    continue;
                }
                unanswered = 0;
                failed(&shared, &status);
            }
        }
        if *shared.health.borrow() == Health::Up {
            // Sleep long, but wake when a check finds the network down.
            let mut health = shared.health.subscribe();
            tokio::select! {
                _ = tokio::time::timeout(Duration::from_secs(600), health.wait_for(|h| *h != Health::Up)) => {}
                () = shared.wake.notified() => continue,
            }
        }
        tokio::select! {
            () = tokio::time::sleep(retry) => {}
            () = shared.wake.notified() => {}
        }
    }
}

async fn hello_received(shared: &Shared, hello: &v1::HelloResponse, announced_version: &mut String) {
    {
        let latest = hello.latest_agent_version.trim();
        let plan = |plan: i32| match v1::Plan::try_from(plan) {
            Ok(v1::Plan::Trial) => "trial",
            Ok(v1::Plan::Subscription) => "subscription",
            _ => "unknown",
        };
        *shared.info.lock().unwrap_or_else(|e| e.into_inner()) = Info {
            node_version: hello.node_version.clone(),
            new_version: (!latest.is_empty() && newer(latest, env!("CARGO_PKG_VERSION"))).then(|| latest.to_owned()),
            release_notes_url: hello.release_notes_url.clone(),
            organisation: hello.organisation.as_ref().map(|o| (o.name.clone(), plan(o.plan).to_owned(), o.expires_at)),
        };
    }
    shared.hello.send_replace(Some(Arc::new(hello.clone())));
    if let Ok(bytes) = <[u8; 32]>::try_from(hello.fingerprint_key.as_slice()) {
        let key = Key::from_bytes(bytes);
        if shared.key.borrow().as_ref().map(Key::as_bytes) != Some(&bytes) {
            let hex_key = hex::encode(bytes);
            if let Err(e) = shared.state.call(move |c| state::meta_set(c, "network_key", &hex_key)).await {
                shared.events.emit(events::STATE_ERROR, None, e.to_string());
            }
            shared.key.send_replace(Some(key));
        }
    }
    if let Some(limits) = &hello.limits
        && limits.max_check_batch > 0
    {
        let size = shared.batch_size.load(std::sync::atomic::Ordering::Relaxed);
        shared.batch_size.store(size.min(limits.max_check_batch as usize), std::sync::atomic::Ordering::Relaxed);
    }
    let active = hello.organisation.as_ref().is_some_and(|org| {
        org.status == v1::OrganisationStatus::Active as i32
            && (org.expires_at == 0 || org.expires_at > jiff::Timestamp::now().as_second())
    });
    if !active {
        let reason = "the organisation is disabled or its subscription has expired".to_owned();
        let previous = shared.health.send_replace(Health::Rejected(reason.clone()));
        if !matches!(previous, Health::Rejected(_)) {
            shared.events.emit(events::NETWORK_CREDENTIAL_REJECTED, None, reason);
        }
        return;
    }
    mark_up(shared);
    let latest = hello.latest_agent_version.trim();
    if !latest.is_empty() && newer(latest, env!("CARGO_PKG_VERSION")) && latest != announced_version {
        *announced_version = latest.to_owned();
        let notes = match hello.release_notes_url.trim() {
            "" => String::new(),
            url => format!(" Release notes: {url}"),
        };
        // Told once per release (above), so a newer one within the event
        // log's repeat window is not folded into the previous notice.
        shared.events.reset(events::NEW_VERSION, None);
        shared.events.emit(
            events::NEW_VERSION,
            None,
            format!("{latest} (running {}).{notes}", env!("CARGO_PKG_VERSION")),
        );
    }
}

/// Whether version `a` is newer than `b` (dotted numbers; anything else
/// compares as text).
fn newer(a: &str, b: &str) -> bool {
    let parse = |v: &str| v.split(['.', '-']).map(|p| p.parse::<u64>().ok()).collect::<Option<Vec<u64>>>();
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => a > b,
        _ => a != b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(newer("0.10.0", "0.9.1"));
        assert!(!newer("0.1.0", "0.1.0"));
        assert!(!newer("0.1.0", "0.2.0"));
    }
}
