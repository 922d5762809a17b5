//! The gRPC services (Network for agents, Admin for operators), `/metrics`
//! and `/health`, on one listener, with TLS when configured.
//!
//! Every request is authenticated, bounded and rate-limited before it touches
//! the engine; every refusal says what was wrong and what to do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use starling_fingerprint::{ALGORITHM_VERSION, Kind};
use starling_proto::v1::{self, admin_server::Admin, network_server::Network};
use starling_proto::{
    MAX_CHANGES_KEYS, MAX_CHANGES_WAIT_MS, MAX_REPORTER_BYTES, PROTOCOL_VERSION, Submitted, index_keys, parse_bearer,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use crate::changes::{ChangeLog, Read};
use crate::config::Limits;
use crate::engine::{Assessment, Engine, ReportInput, ReportOutcome};
use crate::metrics::{MethodLabels, Metrics, NameLabels, RequestLabels};
use crate::model::{Class, Organisation, Plan, Status as OrgStatus, now};
use crate::store::{Store, StoreError};
use crate::trust::Outcome;
use crate::writer::{self, AdminError, Command, WriterHandle, credential_hash};
use starling_proto::activation::Signer;

mod admin;

pub use admin::*;

/// A node's secrets.
pub struct NodeKeys {
    /// The network's fingerprint key.
    pub network_key: [u8; 32],
    /// BLAKE3 of the operator token.
    pub operator_hash: [u8; 32],
    /// The operator's key for activation codes.
    pub signer: Arc<Signer>,
}

/// What a node announces to agents in `Hello`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Announce {
    /// The newest agent release ("" = none).
    pub latest_agent_version: String,
    /// Its release notes.
    pub release_notes_url: String,
    /// Where to buy or renew, when a code names none.
    pub purchase_url: String,
}

/// What the services share.
pub struct Shared<S: Store> {
    /// The engine.
    pub engine: Arc<Engine<S>>,
    /// The writer.
    pub writer: WriterHandle,
    /// Request limits.
    pub limits: Limits,
    /// The network's fingerprint key.
    pub network_key: [u8; 32],
    /// BLAKE3 of the operator token.
    pub operator_hash: [u8; 32],
    /// What the node announces to agents.
    pub announce: Announce,
    /// The operator's key for activation codes.
    pub signer: Arc<Signer>,
    /// Metrics.
    pub metrics: Metrics,
    /// The index keys that became spam, for `Changes`.
    pub changes: Arc<ChangeLog>,
    buckets: Mutex<HashMap<(u32, bool), Bucket>>,
}

impl<S: Store> Shared<S> {
    /// Shared state for the services.
    pub fn new(
        engine: Arc<Engine<S>>,
        writer: WriterHandle,
        limits: Limits,
        keys: NodeKeys,
        announce: Announce,
        changes: Arc<ChangeLog>,
    ) -> Shared<S> {
        Shared {
            engine,
            writer,
            limits,
            network_key: keys.network_key,
            operator_hash: keys.operator_hash,
            announce,
            signer: keys.signer,
            metrics: Metrics::default(),
            changes,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The organisation behind a request's credential. `allow_expired` lets
    /// `Hello` tell an agent that its subscription ran out.
    fn organisation<T>(&self, request: &Request<T>, allow_expired: bool) -> Result<Organisation, Status> {
        let arrived = std::time::Instant::now();
        let secret = bearer(request)?;
        let hash = credential_hash(secret);
        let lookup = || self.engine.organisations().read().by_credential(&hash).cloned();
        // Unknown here may be new on another node sharing the store: read
        // the organisations again before refusing (unless a read began
        // after this request arrived; concurrent misses share one read).
        let found = lookup().or_else(|| {
            if !self.engine.store().shared() {
                return None;
            }
            self.engine.refresh_organisations(arrived);
            lookup()
        });
        let org = found
            .ok_or_else(|| Status::unauthenticated("unknown credential: check the activation code the agent uses"))?;
        if org.status == OrgStatus::Disabled {
            return Err(Status::permission_denied(format!(
                "organisation {:?} is disabled by the network operator",
                org.name
            )));
        }
        if !allow_expired && org.expired(now()) {
            return Err(Status::permission_denied(format!(
                "the {} of organisation {:?} expired at unix time {}; enter a new activation code",
                plan_name(org.plan),
                org.name,
                org.expires_at
            )));
        }
        Ok(org)
    }

    fn operator<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let secret = bearer(request)?;
        if credential_hash(secret) != self.operator_hash {
            return Err(Status::unauthenticated(
                "wrong operator token (see operator.token in the node's data directory)",
            ));
        }
        Ok(())
    }

    /// Spends `n` units of an organisation's check or report rate.
    fn spend(&self, org: &Organisation, reports: bool, n: usize) -> Result<(), Status> {
        let rate = if reports { self.limits.reports_per_second } else { self.limits.checks_per_second };
        let mut buckets = self.buckets.lock();
        let bucket = buckets.entry((org.id, reports)).or_insert_with(|| Bucket::new(rate, self.limits.burst_seconds));
        bucket.take(n as f64).map_err(|wait| {
            Status::resource_exhausted(format!(
                "organisation {:?} exceeded its rate of {rate} {} per second; retry in {} ms",
                org.name,
                if reports { "reports" } else { "checked messages" },
                wait.as_millis().max(1)
            ))
        })
    }

    fn observe(&self, method: &'static str, started: Instant, result: &Result<impl Sized, Status>) {
        self.count(method, result);
        self.metrics.latency.get_or_create(&MethodLabels { method }).observe(started.elapsed().as_secs_f64());
    }

    /// Counts a request by outcome (without latency: a long-poll's is its wait).
    fn count(&self, method: &'static str, result: &Result<impl Sized, Status>) {
        let code = match result {
            Ok(_) => "ok",
            Err(status) => code_name(status.code()),
        };
        self.metrics.requests.get_or_create(&RequestLabels { method, code }).inc();
    }

    /// Whether the current verdict of the network as a whole on each set is
    /// spam or phishing (what Changes announces to every organisation; an
    /// organisation's own reports reach its own agent without it); a store
    /// failure counts as not blocked.
    fn blocked(&self, sets: &[Submitted]) -> Vec<bool> {
        if sets.is_empty() {
            return Vec::new();
        }
        match self.engine.check(sets, now(), None) {
            Ok(assessments) => {
                assessments.iter().map(|a| matches!(a.outcome, Outcome::Spam | Outcome::Phish)).collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not evaluate reported messages for Changes");
                vec![false; sets.len()]
            }
        }
    }
}

fn bearer<T>(request: &Request<T>) -> Result<&str, Status> {
    let value = request.metadata().get(starling_proto::AUTHORIZATION).ok_or_else(|| {
        Status::unauthenticated("missing credential: send `authorization: Bearer <credential>` metadata")
    })?;
    let value = value.to_str().map_err(|_| Status::unauthenticated("the authorization metadata is not text"))?;
    parse_bearer(value)
        .ok_or_else(|| Status::unauthenticated("the authorization metadata is not `Bearer <credential>`"))
}

/// A token bucket.
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64, burst_seconds: f64) -> Bucket {
        let capacity = (rate * burst_seconds).max(1.0);
        Bucket { rate, capacity, tokens: capacity, at: Instant::now() }
    }

    /// Takes `n` tokens, or says how long until there are enough.
    fn take(&mut self, n: f64) -> Result<(), Duration> {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.capacity);
        self.at = now;
        if n <= self.tokens {
            self.tokens -= n;
            return Ok(());
        }
        Err(Duration::from_secs_f64((n.min(self.capacity) - self.tokens) / self.rate))
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "ok",
        tonic::Code::InvalidArgument => "invalid_argument",
        tonic::Code::Unauthenticated => "unauthenticated",
        tonic::Code::PermissionDenied => "permission_denied",
        tonic::Code::ResourceExhausted => "resource_exhausted",
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::NotFound => "not_found",
        tonic::Code::AlreadyExists => "already_exists",
        _ => "internal",
    }
}

fn plan_name(plan: Plan) -> &'static str {
    match plan {
        Plan::Trial => "trial",
        Plan::Subscription => "subscription",
        Plan::Feed => "feed",
    }
}

fn store_status(e: StoreError) -> Status {
    if e.is_transient() { Status::unavailable(e.to_string()) } else { Status::internal(e.to_string()) }
}

fn admin_status(e: AdminError) -> Status {
    match e {
        AdminError::NameTaken(_) => Status::already_exists(e.to_string()),
        AdminError::UnknownName(_) => Status::not_found(e.to_string()),
        AdminError::BadName(_) | AdminError::Activation(_) => Status::invalid_argument(e.to_string()),
        AdminError::Store(e) => store_status(e),
    }
}

fn batch_bound(len: usize, max: u32, what: &str) -> Result<(), Status> {
    if len > max as usize {
        return Err(Status::invalid_argument(format!("{len} {what} in one request; at most {max} are accepted")));
    }
    Ok(())
}

fn submitted(index: usize, set: Option<&v1::FingerprintSet>) -> Result<Submitted, Status> {
    let set = set.ok_or_else(|| Status::invalid_argument(format!("item {index}: no fingerprints")))?;
    Submitted::from_wire(set).map_err(|e| Status::invalid_argument(format!("item {index}: {e}")))
}

fn report_class(index: usize, class: i32) -> Result<Class, Status> {
    match v1::ReportClass::try_from(class) {
        Ok(v1::ReportClass::Spam) => Ok(Class::Spam),
        Ok(v1::ReportClass::Phish) => Ok(Class::Phish),
        Ok(v1::ReportClass::Ham) => Ok(Class::Ham),
        _ => Err(Status::invalid_argument(format!("item {index}: the report class must be spam, phish or ham"))),
    }
}

fn reporter(index: usize, pseudonym: &str) -> Result<String, Status> {
    if pseudonym.is_empty() || pseudonym.len() > MAX_REPORTER_BYTES {
        return Err(Status::invalid_argument(format!(
            "item {index}: the reporter pseudonym must be 1 to {MAX_REPORTER_BYTES} bytes"
        )));
    }
    Ok(pseudonym.to_owned())
}

/// The wire form of a verdict.
pub fn verdict(assessment: &Assessment) -> v1::Verdict {
    let class = match assessment.outcome {
        Outcome::Spam => v1::Class::Spam,
        Outcome::Phish => v1::Class::Phish,
        Outcome::Clean | Outcome::Unblocked => v1::Class::Clean,
    };
    let t = &assessment.tally;
    v1::Verdict {
        class: class.into(),
        confidence: assessment.confidence,
        matched_kind: assessment.kind.map_or(v1::Kind::Unspecified, wire_kind).into(),
        evidence: Some(v1::Evidence {
            spam: t.spam,
            phish: t.phish,
            ham: t.ham,
            reporters: t.reporters,
            organisations: t.organisations,
            first_seen: assessment.first_seen,
            last_seen: assessment.last_seen,
            similarity: assessment.similarity.map_or(0.0, |s| s.jaccard),
            containment: assessment.similarity.map_or(0.0, |s| s.containment),
            matched_entries: assessment.matched.len() as u32,
            unblocked: assessment.outcome == Outcome::Unblocked,
        }),
    }
}

fn wire_kind(kind: Kind) -> v1::Kind {
    match kind {
        Kind::Text => v1::Kind::Text,
        Kind::Fuzzy => v1::Kind::Fuzzy,
        Kind::Url => v1::Kind::Url,
        Kind::Domain => v1::Kind::Domain,
        Kind::Attachment => v1::Kind::Attachment,
    }
}

fn wire_org(org: &Organisation) -> v1::Organisation {
    v1::Organisation {
        id: org.id,
        name: org.name.clone(),
        status: match org.status {
            OrgStatus::Active => v1::OrganisationStatus::Active,
            OrgStatus::Disabled => v1::OrganisationStatus::Disabled,
        }
        .into(),
        plan: match org.plan {
            Plan::Trial => v1::Plan::Trial,
            Plan::Subscription => v1::Plan::Subscription,
            Plan::Feed => v1::Plan::Feed,
        }
        .into(),
        expires_at: org.expires_at,
        created_at: org.created_at,
    }
}

fn wire_class(class: Class) -> v1::ReportClass {
    match class {
        Class::Spam => v1::ReportClass::Spam,
        Class::Phish => v1::ReportClass::Phish,
        Class::Ham => v1::ReportClass::Ham,
    }
}

/// The agents' service.
pub struct NetworkService<S: Store>(pub Arc<Shared<S>>);

#[tonic::async_trait]
impl<S: Store> Network for NetworkService<S> {
    async fn hello(&self, request: Request<v1::HelloRequest>) -> Result<Response<v1::HelloResponse>, Status> {
        let started = Instant::now();
        let result = self.hello_inner(&request);
        self.0.observe("hello", started, &result);
        result.map(Response::new)
    }

    async fn check(&self, request: Request<v1::CheckRequest>) -> Result<Response<v1::CheckResponse>, Status> {
        let started = Instant::now();
        let result = self.check_inner(&request);
        self.0.observe("check", started, &result);
        result.map(Response::new)
    }

    async fn report(&self, request: Request<v1::ReportRequest>) -> Result<Response<v1::ReportResponse>, Status> {
        let started = Instant::now();
        let result = self.report_inner(&request).await;
        self.0.observe("report", started, &result);
        result.map(Response::new)
    }

    async fn revoke(&self, request: Request<v1::RevokeRequest>) -> Result<Response<v1::RevokeResponse>, Status> {
        let started = Instant::now();
        let result = self.revoke_inner(&request).await;
        self.0.observe("revoke", started, &result);
        result.map(Response::new)
    }

    async fn changes(&self, request: Request<v1::ChangesRequest>) -> Result<Response<v1::ChangesResponse>, Status> {
        let result = self.changes_inner(&request).await;
        self.0.count("changes", &result);
        result.map(Response::new)
    }
}

impl<S: Store> NetworkService<S> {
    fn hello_inner(&self, request: &Request<v1::HelloRequest>) -> Result<v1::HelloResponse, Status> {
        let shared = &self.0;
        let org = shared.organisation(request, true)?;
        let reader = shared.engine.store().reader().map_err(store_status)?;
        let record = writer::activation_record(&reader, org.id).map_err(store_status)?;
        let purchase_url =
            if record.purchase_url.is_empty() { shared.announce.purchase_url.clone() } else { record.purchase_url };
        Ok(v1::HelloResponse {
            protocol_version: PROTOCOL_VERSION,
            node_version: env!("CARGO_PKG_VERSION").to_owned(),
            latest_agent_version: shared.announce.latest_agent_version.clone(),
            release_notes_url: shared.announce.release_notes_url.clone(),
            activation_key: shared.signer.public_key().to_vec(),
            activation: Some(v1::Activation {
                code: record.code,
                revoked_through: record.revoked_through,
                max_mailboxes: record.max_mailboxes,
                purchase_url,
            }),
            organisation: Some(wire_org(&org)),
            fingerprint_key: shared.network_key.to_vec(),
            algorithm_version: u32::from(ALGORITHM_VERSION),
            limits: Some(v1::Limits {
                max_check_batch: shared.limits.max_check_batch,
                max_report_batch: shared.limits.max_report_batch,
                checks_per_second: shared.limits.checks_per_second,
                reports_per_second: shared.limits.reports_per_second,
            }),
        })
    }

    fn check_inner(&self, request: &Request<v1::CheckRequest>) -> Result<v1::CheckResponse, Status> {
        let shared = &self.0;
        let org = shared.organisation(request, false)?;
        let messages = &request.get_ref().messages;
        batch_bound(messages.len(), shared.limits.max_check_batch, "messages")?;
        let sets: Vec<Submitted> =
            messages.iter().enumerate().map(|(i, m)| submitted(i, Some(m))).collect::<Result<_, _>>()?;
        shared.spend(&org, false, sets.len())?;
        // The asking organisation's own reports decide for it where the
        // network as a whole says clean (`trust.own_threshold`).
        let assessments = shared.engine.check(&sets, now(), Some(org.id)).map_err(store_status)?;
        shared.metrics.checked.inc_by(sets.len() as u64);
        let verdicts: Vec<v1::Verdict> = assessments
            .iter()
            .map(|a| {
                let name = match a.outcome {
                    Outcome::Spam => "spam",
                    Outcome::Phish => "phish",
                    Outcome::Unblocked => "unblocked",
                    Outcome::Clean => "clean",
                };
                shared.metrics.verdicts.get_or_create(&NameLabels { name }).inc();
                if matches!(a.outcome, Outcome::Spam | Outcome::Phish)
                    && let Some(kind) = a.kind
                {
                    shared.metrics.matches.get_or_create(&NameLabels { name: kind.as_str() }).inc();
                }
                verdict(a)
            })
            .collect();
        Ok(v1::CheckResponse { verdicts })
    }

    async fn report_inner(&self, request: &Request<v1::ReportRequest>) -> Result<v1::ReportResponse, Status> {
        let shared = &self.0;
        let org = shared.organisation(request, false)?;
        let reports = &request.get_ref().reports;
        batch_bound(reports.len(), shared.limits.max_report_batch, "reports")?;
        let inputs: Vec<ReportInput> = reports
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Ok(ReportInput {
                    set: submitted(i, r.fingerprints.as_ref())?,
                    class: report_class(i, r.class)?,
                    reporter: reporter(i, &r.reporter)?,
                })
            })
            .collect::<Result<_, Status>>()?;
        shared.spend(&org, true, inputs.len())?;
        // Spam and phishing reports may block their message: remember which
        // were blocked already, so that only a change is announced.
        let bad: Vec<(usize, Submitted)> = inputs
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r.class, Class::Spam | Class::Phish))
            .map(|(i, r)| (i, r.set.clone()))
            .collect();
        let bad_sets: Vec<Submitted> = bad.iter().map(|(_, set)| set.clone()).collect();
        let before = shared.blocked(&bad_sets);
        for input in &inputs {
            let name = match input.class {
                Class::Spam => "spam",
                Class::Phish => "phish",
                Class::Ham => "ham",
            };
            shared.metrics.reports.get_or_create(&NameLabels { name }).inc();
        }
        let (reply, answer) = oneshot::channel();
        shared.writer.send(Command::Report { org, reports: inputs, reply }).await.map_err(store_status)?;
        // Announcing runs in a task of its own: a caller that goes away after
        // the command was queued does not keep a committed change unannounced.
        let announcer = shared.clone();
        let outcomes = tokio::spawn(async move {
            let outcomes = answer.await.map_err(|_| Status::unavailable("the node is shutting down"))?;
            let outcomes = outcomes.map_err(store_status)?;
            announce(&announcer, &bad, &before, &outcomes);
            Ok::<_, Status>(outcomes)
        })
        .await
        .map_err(|_| Status::internal("announcing the reports' changes failed"))??;
        Ok(v1::ReportResponse {
            outcomes: outcomes
                .into_iter()
                .map(|o| match o {
                    ReportOutcome::Recorded => v1::ReportOutcome { recorded: true, reason: String::new() },
                    ReportOutcome::Ignored(why) => v1::ReportOutcome { recorded: false, reason: why.to_owned() },
                })
                .collect(),
        })
    }

    async fn changes_inner(&self, request: &Request<v1::ChangesRequest>) -> Result<v1::ChangesResponse, Status> {
        let shared = &self.0;
        let org = shared.organisation(request, false)?;
        shared.spend(&org, false, 1)?;
        let r = request.get_ref();
        let wait = Duration::from_millis(u64::from(r.wait_ms.min(MAX_CHANGES_WAIT_MS)));
        let deadline = tokio::time::Instant::now() + wait;
        let log = &shared.changes;
        // Subscribed before the first read: an append in between wakes us.
        let mut head = log.subscribe();
        let mut cursor = r.cursor;
        loop {
            match log.read(cursor, MAX_CHANGES_KEYS) {
                Read::Reset { cursor } => return Ok(v1::ChangesResponse { cursor, keys: Vec::new(), reset: true }),
                Read::Keys { keys, cursor: next } => {
                    // Cursor 0 is "from now": later reads start here.
                    cursor = next;
                    if !keys.is_empty() || log.is_closed() || tokio::time::Instant::now() >= deadline {
                        let keys = keys.into_iter().map(|k| k.to_bytes()).collect();
                        return Ok(v1::ChangesResponse { cursor, keys, reset: false });
                    }
                }
            }
            tokio::select! {
                changed = head.changed() => {
                    if changed.is_err() {
                        return Ok(v1::ChangesResponse { cursor, keys: Vec::new(), reset: false });
                    }
                }
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    async fn revoke_inner(&self, request: &Request<v1::RevokeRequest>) -> Result<v1::RevokeResponse, Status> {
        let shared = &self.0;
        let org = shared.organisation(request, false)?;
        let revocations = &request.get_ref().revocations;
        batch_bound(revocations.len(), shared.limits.max_report_batch, "revocations")?;
        let items: Vec<(Submitted, String)> = revocations
            .iter()
            .enumerate()
            .map(|(i, r)| Ok((submitted(i, r.fingerprints.as_ref())?, reporter(i, &r.reporter)?)))
            .collect::<Result<_, Status>>()?;
        shared.spend(&org, true, items.len())?;
        let (reply, answer) = oneshot::channel();
        shared.writer.send(Command::Revoke { org, revocations: items, reply }).await.map_err(store_status)?;
        let removed =
            answer.await.map_err(|_| Status::unavailable("the node is shutting down"))?.map_err(store_status)?;
        Ok(v1::RevokeResponse { removed })
    }
}

/// After the commit: appends the index keys of every reported set that is
/// now spam or phishing and was not before to the change log — before the
/// report is answered, so a `Changes` call made after the answer sees it.
fn announce<S: Store>(shared: &Shared<S>, bad: &[(usize, Submitted)], before: &[bool], outcomes: &[ReportOutcome]) {
    let recorded: Vec<(&Submitted, bool)> = bad
        .iter()
        .zip(before)
        .filter(|((i, _), _)| outcomes.get(*i) == Some(&ReportOutcome::Recorded))
        .map(|((_, set), before)| (set, *before))
        .collect();
    let sets: Vec<Submitted> = recorded.iter().map(|(set, _)| (*set).clone()).collect();
    let after = shared.blocked(&sets);
    let mut announced = 0;
    let mut told = Vec::new();
    for ((set, before), after) in recorded.into_iter().zip(after) {
        if after && !before {
            let keys = index_keys(set);
            told.extend(keys.iter().map(|k| k.to_bytes()));
            shared.changes.append(keys);
            announced += 1;
        }
    }
    if announced > 0 {
        shared.metrics.announced.inc_by(announced);
        if let Err(e) = shared.engine.store().announce(&[], &told) {
            tracing::warn!(error = %e, "could not tell the other nodes of a change");
        }
    }
}

fn stats<S: Store>(shared: &Shared<S>) -> Result<v1::StatsResponse, StoreError> {
    use crate::store::Reads;
    let stats = shared.engine.store().reader()?.stats()?;
    Ok(v1::StatsResponse {
        entries: stats.entries,
        reporters: stats.reporters,
        organisations: stats.organisations,
        index_keys: stats.index_keys,
        store_bytes: stats.bytes,
        fingerprint_key: shared.network_key.to_vec(),
        filter_bytes: shared.engine.filter_bytes() as u64,
        reports: stats.reports,
    })
}

/// Refreshes the size gauges.
pub fn refresh_gauges<S: Store>(shared: &Shared<S>) {
    if let Ok(stats) = stats(shared) {
        let m = &shared.metrics;
        m.entries.set(stats.entries as i64);
        m.reporters.set(stats.reporters as i64);
        m.index_keys.set(stats.index_keys as i64);
        m.store_bytes.set(stats.store_bytes as i64);
    }
    shared.metrics.filter_bytes.set(shared.engine.filter_bytes() as i64);
}

/// The HTTP router: both gRPC services, `/metrics` and `/health`.
pub fn router<S: Store>(shared: Arc<Shared<S>>) -> axum::Router {
    let max = shared.limits.max_request_bytes;
    let network = v1::network_server::NetworkServer::new(NetworkService(shared.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max * 4);
    let admin = v1::admin_server::AdminServer::new(AdminService(shared.clone())).max_decoding_message_size(max);
    let metrics = shared.clone();
    tonic::service::Routes::new(network)
        .add_service(admin)
        .into_axum_router()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let shared = metrics.clone();
                async move {
                    refresh_gauges(&shared);
                    (
                        [(http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                        shared.metrics.encode(),
                    )
                }
            }),
        )
        .route("/health", axum::routing::get(|| async { "ok\n" }))
}

/// Serves a router: the listener the node and the console share.
pub use starling_listener::serve;

/// The local address a listener is bound to.
pub fn local_addr(listener: &TcpListener) -> std::io::Result<SocketAddr> {
    listener.local_addr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_over_time_and_say_how_long_to_wait() {
        let mut bucket = Bucket::new(10.0, 1.0);
        assert!(bucket.take(10.0).is_ok());
        let wait = bucket.take(5.0).unwrap_err();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500), "{wait:?}");
    }

    #[test]
    fn timestamps_are_plausible() {
        let t: crate::model::Timestamp = now();
        assert!(t > 1_700_000_000);
    }
}
