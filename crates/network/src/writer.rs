//! The single writer: every change to the store goes through one thread,
//! which applies a batch of queued requests in one transaction and answers
//! them only after the commit (group commit). A report that was acknowledged
//! survives a crash; a batch that fails is answered with the error and
//! leaves no trace.

use std::sync::Arc;

use base64::Engine as _;
use tokio::sync::{mpsc, oneshot};

use crate::engine::{Engine, Pending, ReportInput, ReportOutcome};
use crate::model::{ActivationRecord, Organisation, Plan, Status, Timestamp};
use crate::store::{Reads, Store, StoreError, Writes};
use starling_proto::Submitted;
use starling_proto::activation::{Claims, CodePlan, Signer};

/// Requests queued per batch at most.
const MAX_BATCH: usize = 128;
/// Requests waiting before senders wait (backpressure).
const QUEUE: usize = 1024;

/// Why an administrative change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// An organisation of that name exists.
    #[error("an organisation named {0:?} already exists")]
    NameTaken(String),
    /// No organisation of that name.
    #[error("no organisation named {0:?}")]
    UnknownName(String),
    /// A name that cannot be used.
    #[error("organisation names are 1 to 64 characters of letters, digits, '.', '_' and '-', got {0:?}")]
    BadName(String),
    /// An activation that cannot be issued.
    #[error("{0}")]
    Activation(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A change for the writer.
pub enum Command {
    /// Record reports.
    Report {
        /// The reporting organisation.
        org: Organisation,
        /// The reports.
        reports: Vec<ReportInput>,
        /// Outcomes, in order.
        reply: oneshot::Sender<Result<Vec<ReportOutcome>, StoreError>>,
    },
    /// Withdraw reports.
    Revoke {
        /// The organisation.
        org: Organisation,
        /// (fingerprints, reporter pseudonym) pairs.
        revocations: Vec<(Submitted, String)>,
        /// Reports removed per revocation.
        reply: oneshot::Sender<Result<Vec<u32>, StoreError>>,
    },
    /// Create an organisation; answers it and its credential.
    CreateOrganisation {
        /// Unique name.
        name: String,
        /// Plan.
        plan: Plan,
        /// Expiry (0 = never).
        expires_at: Timestamp,
        /// The result.
        reply: oneshot::Sender<Result<(Organisation, String), AdminError>>,
    },
    /// Enable or disable an organisation.
    SetStatus {
        /// Name.
        name: String,
        /// New status.
        status: Status,
        /// The result.
        reply: oneshot::Sender<Result<Organisation, AdminError>>,
    },
    /// Issue an activation code and apply it to the organisation.
    IssueActivation {
        /// The organisation's name.
        name: String,
        /// What the code grants.
        grant: Grant,
        /// The operator's signing key.
        signer: Arc<Signer>,
        /// The organisation as changed, and the code.
        reply: oneshot::Sender<Result<(Organisation, String), AdminError>>,
    },
    /// Revoke every code issued to an organisation so far; it expires now.
    RevokeActivation {
        /// The organisation's name.
        name: String,
        /// The organisation as changed.
        reply: oneshot::Sender<Result<Organisation, AdminError>>,
    },
    /// Forget expired entries.
    Expire {
        /// Now.
        now: Timestamp,
        /// How many were forgotten.
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
}

/// The sending side, cheap to clone.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Command>,
}

impl WriterHandle {
    /// Queues a command; fails only when the writer has stopped.
    pub async fn send(&self, command: Command) -> Result<(), StoreError> {
        self.tx.send(command).await.map_err(|_| StoreError::transient("the node is shutting down"))
    }
}

/// Starts the writer thread. It stops when every handle is dropped, after
/// the queued commands.
pub fn spawn<S: Store>(engine: Arc<Engine<S>>) -> (WriterHandle, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let thread = std::thread::Builder::new()
        .name("starling-writer".into())
        .spawn(move || run(&engine, rx))
        .expect("spawn the writer thread");
    (WriterHandle { tx }, thread)
}

fn run<S: Store>(engine: &Engine<S>, mut rx: mpsc::Receiver<Command>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        apply(engine, batch);
    }
}

/// The result of one command, held until the batch commits.
enum Done {
    Report(oneshot::Sender<Result<Vec<ReportOutcome>, StoreError>>, Vec<ReportOutcome>),
    Revoke(oneshot::Sender<Result<Vec<u32>, StoreError>>, Vec<u32>),
    Create(oneshot::Sender<Result<(Organisation, String), AdminError>>, Result<(Organisation, String), AdminError>),
    Status(oneshot::Sender<Result<Organisation, AdminError>>, Result<Organisation, AdminError>),
    Expire(oneshot::Sender<Result<usize, StoreError>>, usize),
}

fn apply<S: Store>(engine: &Engine<S>, batch: Vec<Command>) {
    let now = crate::model::now();
    let mut keys = Pending::default();
    let mut done = Vec::with_capacity(batch.len());
    let mut failure = None;
    let mut writer = match engine.store().writer() {
        Ok(writer) => Some(writer),
        Err(e) => {
            failure = Some(e);
            None
        }
    };
    let mut organisations_changed = Vec::new();
    let mut pending = batch.into_iter();
    if let Some(w) = writer.as_mut() {
        for command in pending.by_ref() {
            match execute(engine, w, command, now, &mut keys, &mut organisations_changed) {
                Ok(result) => done.push(result),
                Err(failed) => {
                    let (e, command) = *failed;
                    failure = Some(e);
                    fail(command, failure.as_ref().expect("just set"));
                    break;
                }
            }
        }
    }
    if failure.is_none()
        && let Some(w) = writer.take()
        && let Err(e) = w.commit()
    {
        failure = Some(e);
    }
    match failure {
        None => {
            engine.publish(&keys);
            let mut organisations = engine.organisations().write();
            for org in organisations_changed {
                organisations.put(org);
            }
            drop(organisations);
            done.into_iter().for_each(answer);
        }
        Some(e) => {
            tracing::error!(error = %e, "a write batch failed; its requests were answered with the error");
            for result in done {
                fail_done(result, &e);
            }
            for command in pending {
                fail(command, &e);
            }
        }
    }
}

fn execute<S: Store, W: Reads + Writes>(
    engine: &Engine<S>,
    w: &mut W,
    command: Command,
    now: Timestamp,
    keys: &mut Pending,
    organisations_changed: &mut Vec<Organisation>,
) -> Result<Done, Box<(StoreError, Command)>> {
    match command {
        Command::Report { org, reports, reply } => {
            let mut outcomes = Vec::with_capacity(reports.len());
            for report in &reports {
                match engine.apply_report(w, &org, report, now, keys) {
                    Ok(outcome) => outcomes.push(outcome),
                    Err(e) => return Err(Box::new((e, Command::Report { org, reports, reply }))),
                }
            }
            Ok(Done::Report(reply, outcomes))
        }
        Command::Revoke { org, revocations, reply } => {
            let mut removed = Vec::with_capacity(revocations.len());
            for (set, pseudonym) in &revocations {
                match engine.apply_revocation(w, &org, set, pseudonym, keys) {
                    Ok(n) => removed.push(n),
                    Err(e) => return Err(Box::new((e, Command::Revoke { org, revocations, reply }))),
                }
            }
            Ok(Done::Revoke(reply, removed))
        }
        Command::CreateOrganisation { name, plan, expires_at, reply } => {
            let result = create_organisation(engine, w, &name, plan, expires_at, now, organisations_changed);
            Ok(Done::Create(reply, result))
        }
        Command::SetStatus { name, status, reply } => {
            let result = set_status(engine, w, &name, status, organisations_changed);
            Ok(Done::Status(reply, result))
        }
        Command::IssueActivation { name, grant, signer, reply } => {
            let result = issue_activation(engine, w, &name, &grant, &signer, now, organisations_changed);
            Ok(Done::Create(reply, result))
        }
        Command::RevokeActivation { name, reply } => {
            let result = revoke_activation(engine, w, &name, now, organisations_changed);
            Ok(Done::Status(reply, result))
        }
        Command::Expire { now, reply } => match engine.expire(w, now, 10_000) {
            Ok(n) => Ok(Done::Expire(reply, n)),
            Err(e) => Err(Box::new((e, Command::Expire { now, reply }))),
        },
    }
}

fn create_organisation<S: Store, W: Reads + Writes>(
    engine: &Engine<S>,
    w: &mut W,
    name: &str,
    plan: Plan,
    expires_at: Timestamp,
    now: Timestamp,
    changed: &mut Vec<Organisation>,
) -> Result<(Organisation, String), AdminError> {
    let valid = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid {
        return Err(AdminError::BadName(name.to_owned()));
    }
    let taken = |n: &str| {
        engine.organisations().read().by_name(n).is_some() || changed.iter().any(|o: &Organisation| o.name == n)
    };
    if taken(name) {
        return Err(AdminError::NameTaken(name.to_owned()));
    }
    let local = engine.organisations().read().next_id().max(changed.iter().map(|o| o.id + 1).max().unwrap_or(1));
    // A store other nodes share hands out the id and claims the name for
    // all of them at once; alone, the node's own table decides.
    let id = match engine.store().claim_organisation(name, local)? {
        Some(Some(id)) => id,
        Some(None) => return Err(AdminError::NameTaken(name.to_owned())),
        None => local,
    };
    let credential = new_secret("starling_");
    let org = Organisation {
        id,
        name: name.to_owned(),
        status: Status::Active,
        plan,
        expires_at,
        created_at: now,
        credential_hash: credential_hash(&credential),
    };
    w.put_organisation(&org)?;
    changed.push(org.clone());
    Ok((org, credential))
}

/// The organisation named `name`, as this batch left it.
fn current<S: Store>(engine: &Engine<S>, name: &str, changed: &[Organisation]) -> Result<Organisation, AdminError> {
    changed
        .iter()
        .rev()
        .find(|o| o.name == name)
        .cloned()
        .or_else(|| engine.organisations().read().by_name(name).cloned())
        .ok_or_else(|| AdminError::UnknownName(name.to_owned()))
}

fn set_status<S: Store, W: Reads + Writes>(
    engine: &Engine<S>,
    w: &mut W,
    name: &str,
    status: Status,
    changed: &mut Vec<Organisation>,
) -> Result<Organisation, AdminError> {
    let mut org = current(engine, name, changed)?;
    org.status = status;
    w.put_organisation(&org)?;
    changed.push(org.clone());
    Ok(org)
}

/// What an activation code grants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    /// Trial or subscription; `None` keeps the organisation's plan.
    pub plan: Option<Plan>,
    /// The new expiry (Unix seconds; 0: never), unless `extend_seconds`.
    pub expires_at: Timestamp,
    /// A renewal: the later of now and the current expiry, plus this.
    pub extend_seconds: i64,
    /// Mailboxes allowed (0: no limit); `None` keeps the current limit.
    pub max_mailboxes: Option<u32>,
    /// Where to buy or renew ("": keep the current one).
    pub purchase_url: String,
}

fn issue_activation<S: Store, W: Reads + Writes>(
    engine: &Engine<S>,
    w: &mut W,
    name: &str,
    grant: &Grant,
    signer: &Signer,
    now: Timestamp,
    changed: &mut Vec<Organisation>,
) -> Result<(Organisation, String), AdminError> {
    let mut org = current(engine, name, changed)?;
    let mut record = activation_record(w, org.id)?;
    let plan = match grant.plan.unwrap_or(org.plan) {
        Plan::Trial => Plan::Trial,
        Plan::Subscription => Plan::Subscription,
        Plan::Feed => return Err(AdminError::Activation("a feed organisation needs no activation code".into())),
    };
    let expires_at = if grant.extend_seconds > 0 {
        org.expires_at.max(now).saturating_add(grant.extend_seconds)
    } else {
        grant.expires_at
    };
    if expires_at != 0 && expires_at <= now {
        return Err(AdminError::Activation("the expiry is in the past".into()));
    }
    if plan == Plan::Trial && expires_at == 0 {
        return Err(AdminError::Activation("a trial needs an expiry".into()));
    }
    if let Some(max) = grant.max_mailboxes {
        record.max_mailboxes = max;
    }
    if !grant.purchase_url.is_empty() {
        record.purchase_url.clone_from(&grant.purchase_url);
    }
    // Milliseconds keep serials increasing across restarts; the record
    // keeps them increasing within one.
    let millis = u64::try_from(now).unwrap_or(0).saturating_mul(1000);
    record.serial = millis.max(record.serial + 1).max(record.revoked_through + 1);
    let claims = Claims {
        serial: record.serial,
        issued_at: now,
        expires_at,
        organisation_id: org.id,
        organisation: org.name.clone(),
        plan: if plan == Plan::Trial { CodePlan::Trial } else { CodePlan::Subscription },
        max_mailboxes: record.max_mailboxes,
        purchase_url: record.purchase_url.clone(),
    };
    let code = signer.issue(&claims).map_err(|e| AdminError::Activation(e.to_string()))?;
    record.code.clone_from(&code);
    org.plan = plan;
    org.expires_at = expires_at;
    w.put_organisation(&org)?;
    w.set_meta(&ActivationRecord::key(org.id), &postcard::to_allocvec(&record).expect("records serialise"))?;
    changed.push(org.clone());
    Ok((org, code))
}

fn revoke_activation<S: Store, W: Reads + Writes>(
    engine: &Engine<S>,
    w: &mut W,
    name: &str,
    now: Timestamp,
    changed: &mut Vec<Organisation>,
) -> Result<Organisation, AdminError> {
    let mut org = current(engine, name, changed)?;
    let mut record = activation_record(w, org.id)?;
    record.revoked_through = record.revoked_through.max(record.serial);
    record.code.clear();
    if org.expires_at == 0 || org.expires_at > now {
        org.expires_at = now;
    }
    w.put_organisation(&org)?;
    w.set_meta(&ActivationRecord::key(org.id), &postcard::to_allocvec(&record).expect("records serialise"))?;
    changed.push(org.clone());
    Ok(org)
}

/// An organisation's activation record (a default one before its first
/// code).
pub fn activation_record(reads: &impl Reads, org: u32) -> Result<ActivationRecord, StoreError> {
    match reads.meta(&ActivationRecord::key(org))? {
        Some(bytes) => postcard::from_bytes(&bytes)
            .map_err(|e| StoreError::permanent(format!("corrupt activation record of organisation {org}: {e}"))),
        None => Ok(ActivationRecord::default()),
    }
}

/// A new random secret: a prefix and 32 random bytes in URL-safe base64.
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What the node stores of a credential.
pub fn credential_hash(credential: &str) -> [u8; 32] {
    *blake3::hash(credential.as_bytes()).as_bytes()
}

fn answer(done: Done) {
    // A requester that went away is not an error of the batch.
    match done {
        Done::Report(reply, outcomes) => drop(reply.send(Ok(outcomes))),
        Done::Revoke(reply, removed) => drop(reply.send(Ok(removed))),
        Done::Create(reply, result) => drop(reply.send(result)),
        Done::Status(reply, result) => drop(reply.send(result)),
        Done::Expire(reply, n) => drop(reply.send(Ok(n))),
    }
}

fn copy(e: &StoreError) -> StoreError {
    if e.is_transient() { StoreError::transient(e.to_string()) } else { StoreError::permanent(e.to_string()) }
}

fn fail_done(done: Done, e: &StoreError) {
    match done {
        Done::Report(reply, _) => drop(reply.send(Err(copy(e)))),
        Done::Revoke(reply, _) => drop(reply.send(Err(copy(e)))),
        Done::Create(reply, _) => drop(reply.send(Err(AdminError::Store(copy(e))))),
        Done::Status(reply, _) => drop(reply.send(Err(AdminError::Store(copy(e))))),
        Done::Expire(reply, _) => drop(reply.send(Err(copy(e)))),
    }
}

fn fail(command: Command, e: &StoreError) {
    match command {
        Command::Report { reply, .. } => drop(reply.send(Err(copy(e)))),
        Command::Revoke { reply, .. } => drop(reply.send(Err(copy(e)))),
        Command::CreateOrganisation { reply, .. } => drop(reply.send(Err(AdminError::Store(copy(e))))),
        Command::SetStatus { reply, .. } | Command::RevokeActivation { reply, .. } => {
            drop(reply.send(Err(AdminError::Store(copy(e)))));
        }
        Command::IssueActivation { reply, .. } => drop(reply.send(Err(AdminError::Store(copy(e))))),
        Command::Expire { reply, .. } => drop(reply.send(Err(copy(e)))),
    }
}
