//! What the running agent is doing right now, for the console's dashboard,
//! its live view and `/metrics`: connections to the mail server, the
//! network's health and latency, messages checked, queued work.
//!
//! Written by the agent's tasks with atomics and short locks; read as a
//! [`Snapshot`]. Nothing here is stored: the history lives in the state
//! database's hourly counters.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use crate::network::{Health, Network};

/// A mailbox task's connection to the mail server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// Connected (logged in and watching).
    pub connected: bool,
    /// Since when (Unix seconds).
    pub since: i64,
    /// Why not, when not.
    pub error: String,
}

/// The live state of the agent.
#[derive(Debug)]
pub struct Live {
    started: i64,
    checked: AtomicU64,
    filed: AtomicU64,
    queued: AtomicU64,
    tasks: AtomicU64,
    held: AtomicU64,
    mail_store: Mutex<String>,
    connections: Mutex<BTreeMap<String, Connection>>,
    network: OnceLock<Network>,
    learning: OnceLock<(Arc<crate::learning::Learner>, Arc<crate::retro::Index>, &'static str)>,
    milter: Mutex<Option<MilterView>>,
    activation: OnceLock<Arc<crate::activation::Activation>>,
    over_limit: Mutex<Vec<String>>,
}

impl Default for Live {
    fn default() -> Live {
        Live {
            started: jiff::Timestamp::now().as_second(),
            checked: AtomicU64::new(0),
            filed: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            tasks: AtomicU64::new(0),
            held: AtomicU64::new(0),
            mail_store: Mutex::new(String::new()),
            connections: Mutex::new(BTreeMap::new()),
            network: OnceLock::new(),
            learning: OnceLock::new(),
            milter: Mutex::new(None),
            activation: OnceLock::new(),
            over_limit: Mutex::new(Vec::new()),
        }
    }
}

/// The in-line filter (milter) as the dashboard and `/metrics` show it,
/// since the agent started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MilterView {
    /// Where it listens.
    pub listen: String,
    /// Mailboxes it knows (enabled or not): mail to anybody else is not
    /// filtered in-line (unless `milter.unknown_recipients`).
    pub mailboxes: u64,
    /// Messages decided in-line (every recipient agreed).
    pub decided: u64,
    /// Of those, spam and phishing.
    pub spam: u64,
    /// Left to the post-delivery agent: recipients' settings disagreed.
    pub left_to_agent: u64,
    /// Delivered unchecked: no verdict within `milter.timeout_ms`, or no
    /// network.
    pub unchecked: u64,
    /// To nobody filtered.
    pub not_filtered: u64,
    /// The mean time to decide over recent messages (milliseconds).
    pub decision_ms: f64,
}

/// How the milter handled one message (its log line, [`Live::milter_count`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MilterOutcome {
    /// Decided in-line for every recipient.
    Decided(crate::policy::Class),
    /// Recipients' settings disagree (or only some are filtered): left to
    /// the post-delivery agent.
    LeftToAgent,
    /// Not checked in time (or the network could not be asked).
    Unchecked,
    /// To nobody filtered.
    NotFiltered,
}

/// The local model and retro-filing as the dashboard shows them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LearningView {
    /// `policy.model` at start: `off`, `suggest` or `file`.
    pub mode: String,
    /// The model's figures.
    #[serde(flatten)]
    pub model: crate::learning::Status,
    /// Messages filed after delivery (retro-filing) since the start.
    pub filed_after_delivery: u64,
    /// Messages the model filed (at delivery or after) since the start.
    pub filed_by_model: u64,
    /// Fingerprint keys of recent deliveries held for retro-filing.
    pub remembered_keys: u64,
}

/// The network as the dashboard shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetworkView {
    /// `unknown`, `up`, `down` or `rejected`.
    pub state: String,
    /// Why it is down or rejected.
    pub detail: String,
    /// The latency of the last request (milliseconds).
    pub latency_ms: Option<f64>,
    /// The mean over recent requests (milliseconds).
    pub latency_avg_ms: Option<f64>,
    /// The node's version.
    pub node_version: String,
    /// The newest agent release the network announces, when newer than
    /// this one.
    pub new_version: Option<String>,
    /// Its release notes ("" when the network names none).
    pub release_notes_url: String,
    /// The organisation's name, plan and expiry (Unix seconds, 0: never).
    pub organisation: Option<(String, String, i64)>,
}

/// Everything at one moment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    /// When the agent started (Unix seconds).
    pub started: i64,
    /// Messages checked since the start.
    pub checked: u64,
    /// Messages filed since the start.
    pub filed: u64,
    /// Work waiting in the mailbox tasks' queues.
    pub queued: u64,
    /// Mailbox tasks running.
    pub tasks: u64,
    /// Messages a state-database failure left in place, to be re-checked
    /// once it takes writes again.
    pub held: u64,
    /// The mail store (`IMAP host:port`, `Maildir /path`).
    pub mail_store: String,
    /// Connections by mailbox (IMAP).
    pub connections: BTreeMap<String, Connection>,
    /// The network.
    pub network: Option<NetworkView>,
    /// The local model and retro-filing.
    pub learning: Option<LearningView>,
    /// The in-line filter, when it runs.
    pub milter: Option<MilterView>,
    /// The organisation's trial or subscription.
    pub activation: Option<ActivationView>,
}

/// The organisation's trial or subscription, as the agent enforces it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationView {
    /// The standing.
    #[serde(flatten)]
    pub standing: crate::activation::Standing,
    /// Enabled mailboxes the plan's limit leaves unfiltered.
    pub over_limit: Vec<String>,
}

impl Live {
    /// Counts a batch's checked and filed messages.
    pub fn count(&self, checked: u64, filed: u64) {
        self.checked.fetch_add(checked, Ordering::Relaxed);
        self.filed.fetch_add(filed, Ordering::Relaxed);
    }

    /// Messages a state-database failure left in place, waiting for it to
    /// take writes again.
    pub fn set_held(&self, held: u64) {
        self.held.store(held, Ordering::Relaxed);
    }

    /// Follows the organisation's activation.
    pub fn set_activation(&self, activation: Arc<crate::activation::Activation>) {
        let _ = self.activation.set(activation);
    }

    /// The mailboxes the plan's limit leaves out.
    pub fn set_over_limit(&self, names: Vec<String>) {
        *self.over_limit.lock().unwrap_or_else(|e| e.into_inner()) = names;
    }

    /// Records a mailbox task's connection state.
    pub fn connection(&self, mailbox: &str, connected: bool, error: &str) {
        let mut map = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        let changed = map.get(mailbox).is_none_or(|c| c.connected != connected || c.error != error);
        if changed {
            map.insert(
                mailbox.to_owned(),
                Connection { connected, since: jiff::Timestamp::now().as_second(), error: error.to_owned() },
            );
        }
    }

    /// Forgets a mailbox task's connection (the task stopped).
    pub fn forget(&self, mailbox: &str) {
        self.connections.lock().unwrap_or_else(|e| e.into_inner()).remove(mailbox);
    }

    /// Records the work waiting and the tasks running.
    pub fn set_load(&self, queued: u64, tasks: u64) {
        self.queued.store(queued, Ordering::Relaxed);
        self.tasks.store(tasks, Ordering::Relaxed);
    }

    /// Describes the mail store.
    pub fn set_mail_store(&self, text: String) {
        *self.mail_store.lock().unwrap_or_else(|e| e.into_inner()) = text;
    }

    /// Attaches the network handle (once).
    pub fn set_network(&self, network: Network) {
        let _ = self.network.set(network);
    }

    /// Attaches the model and the retro-filing index (once).
    pub fn set_learning(
        &self,
        learner: Arc<crate::learning::Learner>,
        index: Arc<crate::retro::Index>,
        mode: crate::config::ModelMode,
    ) {
        let _ = self.learning.set((learner, index, mode.as_str()));
    }

    /// The milter listens on `listen`.
    pub fn set_milter(&self, listen: String) {
        *self.milter.lock().unwrap_or_else(|e| e.into_inner()) = Some(MilterView { listen, ..MilterView::default() });
    }

    /// The milter knows this many mailboxes.
    pub fn set_milter_mailboxes(&self, count: u64) {
        if let Some(view) = self.milter.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            view.mailboxes = count;
        }
    }

    /// Counts one message the milter handled, and the time it took.
    pub fn milter_count(&self, outcome: MilterOutcome, elapsed: std::time::Duration) {
        let mut milter = self.milter.lock().unwrap_or_else(|e| e.into_inner());
        let Some(view) = milter.as_mut() else { return };
        match outcome {
            MilterOutcome::Decided(class) => {
                view.decided += 1;
                view.spam += u64::from(matches!(class, crate::policy::Class::Spam | crate::policy::Class::Phish));
            }
            MilterOutcome::LeftToAgent => view.left_to_agent += 1,
            MilterOutcome::Unchecked => view.unchecked += 1,
            MilterOutcome::NotFiltered => view.not_filtered += 1,
        }
        // A moving mean over about the last hundred messages.
        let ms = elapsed.as_secs_f64() * 1000.0;
        let seen = view.decided + view.left_to_agent + view.unchecked + view.not_filtered;
        view.decision_ms =
            if seen == 1 { ms } else { view.decision_ms + (ms - view.decision_ms) / 100f64.min(seen as f64) };
    }

    /// The state now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            started: self.started,
            checked: self.checked.load(Ordering::Relaxed),
            filed: self.filed.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            tasks: self.tasks.load(Ordering::Relaxed),
            held: self.held.load(Ordering::Relaxed),
            mail_store: self.mail_store.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            connections: self.connections.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            network: self.network.get().map(network_view),
            learning: self.learning.get().map(|(learner, index, mode)| LearningView {
                mode: (*mode).to_owned(),
                model: learner.status(),
                filed_after_delivery: index.filed(),
                filed_by_model: index.filed_by_model(),
                remembered_keys: index.keys() as u64,
            }),
            milter: self.milter.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            activation: self.activation.get().map(|activation| ActivationView {
                standing: activation.standing(),
                over_limit: self.over_limit.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            }),
        }
    }
}

fn network_view(network: &Network) -> NetworkView {
    let (state, detail) = match network.health() {
        Health::Unknown => ("unknown", String::new()),
        Health::Up => ("up", String::new()),
        Health::Down(reason) => ("down", reason),
        Health::Rejected(reason) => ("rejected", reason),
    };
    let info = network.info();
    let (latency_ms, latency_avg_ms) = network.latency();
    NetworkView {
        state: state.to_owned(),
        detail,
        latency_ms,
        latency_avg_ms,
        node_version: info.node_version,
        new_version: info.new_version,
        release_notes_url: info.release_notes_url,
        organisation: info.organisation,
    }
}
