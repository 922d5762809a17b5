//! The organisation's trial or subscription, as this agent enforces it:
//! which activation code is installed, whether filtering may go on, how
//! many mailboxes may be filtered, and the warnings and the one mail to the
//! postmaster before and at the end.
//!
//! Two sources, one rule ([`evaluate`]):
//! - the installed **activation code**, verified offline with the
//!   operator's public key (configured, or pinned at the first contact with
//!   the network), so the agent knows its terms while the network is
//!   unreachable;
//! - what the network said in its last `Hello` (kept in the state database
//!   so a restart knows it too): the organisation's status, its newest code
//!   (a renewal is installed by itself) and which codes are revoked.
//!
//! When filtering stops, the supervisor stops every mailbox task and drops
//! the queued re-checks; mail is left where it is. A new code takes effect
//! at the supervisor's next look at the state database (every two
//! seconds), without a restart. See docs/activation.md.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use starling_proto::activation::{self, Claims, CodeError};
use starling_proto::v1;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{ActivationConfig, NotifyConfig};
use crate::events::{self, Events};
use crate::state::{self, MailboxRow, State};

/// State-database keys (the `meta` table).
const CODE_KEY: &str = "activation_code";
const PINNED_KEY: &str = "activation_key";
const NETWORK_KEY: &str = "activation_network";
const NOTICES_KEY: &str = "activation_notices";

/// The warning mail's text when `[notify] warning_text` is empty.
pub const WARNING_TEXT: &str = "The Starling {plan} of {organisation} ends on {expires}.

When it ends, Starling stops filtering: mail is delivered untouched and
nothing is lost, but spam is no longer filed.

To renew, buy a new activation code at {purchase_url} and enter it in the
console (Subscription) or with `starling activate CODE`. It takes effect at
once, without a restart.
";

/// The mail's text when filtering stopped and `[notify] stopped_text` is
/// empty.
pub const STOPPED_TEXT: &str = "Starling stopped filtering the mail of {organisation}: {reason}.

Mail is delivered untouched and nothing is lost, but spam is no longer
filed.

To resume, buy an activation code at {purchase_url} and enter it in the
console (Subscription) or with `starling activate CODE`. Filtering resumes
at once, without a restart.
";

/// Days before expiry at which a warning (event and mail) is due.
pub const WARNING_DAYS: [i64; 3] = [14, 3, 1];

/// How often the standing is looked at again (expiry, warnings).
const TICK: Duration = Duration::from_secs(30);

/// How long after a failed mail it is tried again.
const MAIL_RETRY: Duration = Duration::from_secs(600);

/// What the network said of the organisation in its last `Hello`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSays {
    /// The organisation's name.
    pub organisation: String,
    /// Not disabled by the operator.
    pub active: bool,
    /// `trial`, `subscription` or `feed`.
    pub plan: String,
    /// Expiry (Unix seconds; 0: never).
    pub expires_at: i64,
    /// Codes with this serial or lower are revoked.
    pub revoked_through: u64,
    /// Mailboxes allowed (0: no limit).
    pub max_mailboxes: u32,
    /// Where to buy or renew.
    pub purchase_url: String,
}

impl NetworkSays {
    fn from_hello(hello: &v1::HelloResponse) -> Option<NetworkSays> {
        let org = hello.organisation.as_ref()?;
        let activation = hello.activation.clone().unwrap_or_default();
        Some(NetworkSays {
            organisation: org.name.clone(),
            active: org.status == v1::OrganisationStatus::Active as i32,
            plan: match v1::Plan::try_from(org.plan) {
                Ok(v1::Plan::Trial) => "trial",
                Ok(v1::Plan::Feed) => "feed",
                _ => "subscription",
            }
            .to_owned(),
            expires_at: org.expires_at,
            revoked_through: activation.revoked_through,
            max_mailboxes: activation.max_mailboxes,
            purchase_url: activation.purchase_url,
        })
    }
}

/// Where the organisation stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Nothing known yet (no code, the network not reached): filtering goes
    /// on, and the network's own checks refuse an expired organisation.
    #[default]
    Unknown,
    /// Within its term.
    Active,
    /// Within 14 days of its expiry.
    Ending,
    /// Past its expiry: filtering stopped.
    Expired,
    /// Its code was revoked: filtering stopped.
    Revoked,
    /// Disabled by the network operator: filtering stopped.
    Disabled,
}

impl Phase {
    /// Its name, as shown and serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Unknown => "unknown",
            Phase::Active => "active",
            Phase::Ending => "ending",
            Phase::Expired => "expired",
            Phase::Revoked => "revoked",
            Phase::Disabled => "disabled",
        }
    }
}

/// The organisation's standing, as the console and `starling status` show
/// it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    /// Where it stands.
    pub state: Phase,
    /// Whether mail is filtered.
    pub filtering: bool,
    /// The organisation's name ("" until known).
    pub organisation: String,
    /// `trial`, `subscription` or `feed` ("" until known).
    pub plan: String,
    /// Expiry (Unix seconds; 0: never or unknown).
    pub expires_at: i64,
    /// Whole days left (rounded up), while it has an expiry and runs.
    pub days_left: Option<i64>,
    /// Mailboxes that may be filtered (0: no limit).
    pub max_mailboxes: u32,
    /// Where to buy or renew.
    pub purchase_url: String,
    /// The installed code's serial (0: none).
    pub code_serial: u64,
    /// One sentence for people.
    pub detail: String,
}

/// The one rule: the network's word on status and revocation, the
/// installed code's terms (else the network's), and the clock.
pub fn evaluate(code: Option<&Claims>, network: Option<&NetworkSays>, now: i64) -> Standing {
    let revoked = matches!((code, network), (Some(c), Some(n)) if c.serial <= n.revoked_through);
    let code = code.filter(|_| !revoked);
    let mut standing = Standing {
        organisation: code
            .map(|c| c.organisation.clone())
            .or_else(|| network.map(|n| n.organisation.clone()))
            .unwrap_or_default(),
        plan: code.map(|c| c.plan.as_str().to_owned()).or_else(|| network.map(|n| n.plan.clone())).unwrap_or_default(),
        expires_at: code.map(|c| c.expires_at).or_else(|| network.map(|n| n.expires_at)).unwrap_or(0),
        max_mailboxes: code.map(|c| c.max_mailboxes).or_else(|| network.map(|n| n.max_mailboxes)).unwrap_or(0),
        purchase_url: code
            .map(|c| c.purchase_url.clone())
            .filter(|u| !u.is_empty())
            .or_else(|| network.map(|n| n.purchase_url.clone()))
            .unwrap_or_default(),
        code_serial: code.map_or(0, |c| c.serial),
        ..Standing::default()
    };
    let (state, detail) = if network.is_some_and(|n| !n.active) {
        (Phase::Disabled, "the network operator disabled the organisation".to_owned())
    } else if revoked {
        (Phase::Revoked, "the network operator revoked its activation code".to_owned())
    } else if code.is_none() && network.is_none() {
        (Phase::Unknown, "no activation code is installed and the network has not answered yet".to_owned())
    } else if standing.expires_at != 0 && now >= standing.expires_at {
        (Phase::Expired, format!("its {} expired on {}", standing.plan, day(standing.expires_at)))
    } else if standing.expires_at == 0 {
        (Phase::Active, format!("its {} does not expire", standing.plan))
    } else {
        let days = (standing.expires_at - now + 86_399) / 86_400;
        standing.days_left = Some(days);
        let state = if days <= WARNING_DAYS[0] { Phase::Ending } else { Phase::Active };
        (state, format!("its {} ends on {} ({days} day(s) left)", standing.plan, day(standing.expires_at)))
    };
    standing.filtering = !matches!(state, Phase::Expired | Phase::Revoked | Phase::Disabled);
    standing.state = state;
    standing.detail = detail;
    standing
}

fn day(at: i64) -> String {
    jiff::Timestamp::from_second(at).map_or_else(|_| at.to_string(), |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
}

/// The notice due now: `"14"`, `"3"`, `"1"` (days before expiry) or
/// `"stopped"`; `None` when nothing is due.
pub fn notice_due(standing: &Standing) -> Option<&'static str> {
    if !standing.filtering {
        return Some("stopped");
    }
    let days = standing.days_left?;
    ["1", "3", "14"].into_iter().zip([1, 3, 14]).find(|&(_, limit)| days <= limit).map(|(label, _)| label)
}

/// Which notices were given for one expiry (kept in the state database, so
/// each is given once across restarts).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Notices {
    /// The expiry (and code) they are about; another resets them.
    about: (i64, u64, String),
    /// Events emitted.
    events: Vec<String>,
    /// Mails sent.
    mails: Vec<String>,
}

/// Reads, checks and keeps the organisation's activation.
pub struct Activation {
    config: ActivationConfig,
    notify: NotifyConfig,
    state: State,
    events: Events,
    standing: watch::Sender<Standing>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    key: Option<[u8; 32]>,
    code: Option<(String, Claims)>,
    network: Option<NetworkSays>,
    notices: Notices,
    mail_after: Option<tokio::time::Instant>,
    key_mismatch_told: bool,
}

impl std::fmt::Debug for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activation").field("standing", &*self.standing.borrow()).finish_non_exhaustive()
    }
}

impl Activation {
    /// Reads what the state database keeps and evaluates at once, so the
    /// first look at the mailboxes already knows whether to filter.
    pub async fn open(
        config: &ActivationConfig,
        notify: &NotifyConfig,
        state: State,
        events: Events,
    ) -> anyhow::Result<Arc<Activation>> {
        let stored = state
            .call(|c| {
                Ok((
                    state::meta_get(c, PINNED_KEY)?,
                    state::meta_get(c, CODE_KEY)?,
                    state::meta_get(c, NETWORK_KEY)?,
                    state::meta_get(c, NOTICES_KEY)?,
                ))
            })
            .await?;
        let (pinned, code, network, notices) = stored;
        let configured = activation::parse_public_key(&config.public_key);
        let key = configured.or_else(|| pinned.as_deref().and_then(activation::parse_public_key));
        let network: Option<NetworkSays> = network.and_then(|n| serde_json::from_str(&n).ok());
        let code = match (code, key) {
            (Some(text), Some(key)) if !text.is_empty() => match activation::verify(&text, &key) {
                Ok(claims) => Some((text, claims)),
                Err(e) => {
                    events.emit(events::ACTIVATION_REFUSED, None, format!("The installed code: {e}."));
                    None
                }
            },
            _ => None,
        };
        let inner = Inner {
            key,
            code,
            network,
            notices: notices.and_then(|n| serde_json::from_str(&n).ok()).unwrap_or_default(),
            ..Inner::default()
        };
        let standing = Self::standing_of(&inner);
        let activation = Activation {
            config: config.clone(),
            notify: notify.clone(),
            state,
            events,
            standing: watch::channel(standing).0,
            inner: Mutex::new(inner),
        };
        Ok(Arc::new(activation))
    }

    fn standing_of(inner: &Inner) -> Standing {
        evaluate(inner.code.as_ref().map(|(_, c)| c), inner.network.as_ref(), jiff::Timestamp::now().as_second())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The standing now.
    pub fn standing(&self) -> Standing {
        self.standing.borrow().clone()
    }

    /// A receiver that changes with the standing.
    pub fn changes(&self) -> watch::Receiver<Standing> {
        self.standing.subscribe()
    }

    /// Follows the network's `Hello`s and the clock until `stop`; while
    /// filtering is stopped, asks the network every `retry`.
    pub async fn run(self: Arc<Self>, network: crate::network::Network, retry: Duration, stop: CancellationToken) {
        let mut hello = network.hello_changes();
        // A `Hello` answered before this started counts too.
        hello.mark_changed();
        // The standing at start is announced once (a stopped agent says so).
        let mut told = None;
        loop {
            self.refresh(&mut told).await;
            tokio::select! {
                () = stop.cancelled() => return,
                changed = hello.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let latest = hello.borrow_and_update().clone();
                    if let Some(latest) = latest {
                        self.on_hello(&latest).await;
                    }
                }
                () = tokio::time::sleep(self.next_look()) => {}
                // While stopped, the network is asked often: a renewal the
                // operator issued resumes filtering within `retry`.
                () = tokio::time::sleep(retry), if !self.standing.borrow().filtering => network.probe_now(),
            }
        }
    }

    /// When to look again: every [`TICK`], and at the expiry itself, so
    /// filtering stops when the term ends, not up to a tick later.
    fn next_look(&self) -> Duration {
        let expires_at = self.standing.borrow().expires_at;
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let until = expires_at.saturating_mul(1000) - now_ms;
        if expires_at != 0 && until > 0 { Duration::from_millis(until.unsigned_abs()).min(TICK) } else { TICK }
    }

    /// Looks at the code the console or the CLI stored, after the state
    /// database changed.
    pub async fn reload(&self) {
        let Ok(Some(text)) = self.state.call(|c| state::meta_get(c, CODE_KEY)).await else { return };
        let installed = self.lock().code.as_ref().map(|(t, _)| t.clone());
        if installed.as_deref() == Some(text.as_str()) || text.is_empty() {
            return;
        }
        match self.accept(&text) {
            Ok(claims) => {
                self.tell(events::ACTIVATION_INSTALLED, describe(&claims, "entered by an administrator"));
                self.lock().code = Some((text, claims));
            }
            Err(e) => {
                self.events.emit(events::ACTIVATION_REFUSED, None, format!("{e}."));
                // Put back the code that stays installed.
                let back = installed.unwrap_or_default();
                let _ = self.state.call(move |c| state::meta_set(c, CODE_KEY, &back)).await;
            }
        }
        self.publish();
    }

    /// Checks a code against the key, the organisation, the clock and the
    /// revoked serials.
    fn accept(&self, text: &str) -> Result<Claims, CodeError> {
        let inner = self.lock();
        let key = inner.key.ok_or(CodeError::Malformed("the network's key is not known yet"))?;
        let claims = activation::verify(text, &key)?;
        let organisation = inner.network.as_ref().map_or(claims.organisation.as_str(), |n| n.organisation.as_str());
        claims.check(organisation, jiff::Timestamp::now().as_second())?;
        if inner.network.as_ref().is_some_and(|n| claims.serial <= n.revoked_through) {
            return Err(CodeError::Revoked);
        }
        Ok(claims)
    }

    async fn on_hello(&self, hello: &v1::HelloResponse) {
        if let Ok(offered) = <[u8; 32]>::try_from(hello.activation_key.as_slice()) {
            self.take_key(offered).await;
        }
        let Some(says) = NetworkSays::from_hello(hello) else { return };
        if self.lock().network.as_ref() != Some(&says) {
            self.lock().network = Some(says.clone());
            let json = serde_json::to_string(&says).unwrap_or_default();
            if let Err(e) = self.state.call(move |c| state::meta_set(c, NETWORK_KEY, &json)).await {
                self.events.emit(events::STATE_ERROR, None, e.to_string());
            }
        }
        // A renewal the operator issued reaches the agent by itself.
        let offered = hello.activation.as_ref().map(|a| a.code.clone()).unwrap_or_default();
        let installed_serial = self.lock().code.as_ref().map_or(0, |(_, c)| c.serial);
        if !offered.is_empty() && self.lock().code.as_ref().is_none_or(|(t, _)| *t != offered) {
            match self.accept(&offered) {
                Ok(claims) if claims.serial > installed_serial => {
                    self.tell(events::ACTIVATION_INSTALLED, describe(&claims, "delivered by the network"));
                    let text = offered.clone();
                    if let Err(e) = self.state.call(move |c| state::meta_set(c, CODE_KEY, &text)).await {
                        self.events.emit(events::STATE_ERROR, None, e.to_string());
                    }
                    self.lock().code = Some((offered, claims));
                }
                Ok(_) => {}
                Err(e) => self.events.emit(events::ACTIVATION_REFUSED, None, format!("The network's code: {e}.")),
            }
        }
        self.publish();
    }

    /// Pins the network's key at the first contact; a different key later
    /// is refused (and said once).
    async fn take_key(&self, offered: [u8; 32]) {
        let configured = activation::parse_public_key(&self.config.public_key);
        let current = configured.or(self.lock().key);
        match current {
            Some(key) if key == offered => {}
            Some(_) => {
                let mut inner = self.lock();
                if !inner.key_mismatch_told {
                    inner.key_mismatch_told = true;
                    drop(inner);
                    self.events.emit(
                        events::ACTIVATION_KEY_MISMATCH,
                        None,
                        format!("The network presents {}.", activation::public_key_text(&offered)),
                    );
                }
            }
            None => {
                self.lock().key = Some(offered);
                let text = activation::public_key_text(&offered);
                if let Err(e) = self.state.call(move |c| state::meta_set(c, PINNED_KEY, &text)).await {
                    self.events.emit(events::STATE_ERROR, None, e.to_string());
                }
            }
        }
    }

    /// Records an event that must not be folded into an earlier one of its
    /// kind (each installation, stop and warning is its own news).
    fn tell(&self, kind: &'static events::EventKind, details: impl AsRef<str>) {
        self.events.reset(kind, None);
        self.events.emit(kind, None, details);
    }

    fn publish(&self) {
        let standing = Self::standing_of(&self.lock());
        self.standing.send_if_modified(|current| {
            let changed = *current != standing;
            *current = standing;
            changed
        });
    }

    /// Evaluates with the clock, tells of a change of whether mail is
    /// filtered, and gives the notice due.
    async fn refresh(&self, told: &mut Option<bool>) {
        self.publish();
        let standing = self.standing();
        if *told != Some(standing.filtering) {
            match (*told, standing.filtering) {
                (_, false) => self.tell(events::FILTERING_STOPPED, format!("{}.", capital(&standing.detail))),
                (Some(false), true) => {
                    self.tell(events::FILTERING_RESUMED, format!("{}.", capital(&standing.detail)));
                }
                _ => {}
            }
            *told = Some(standing.filtering);
        }
        self.give_notice(&standing).await;
    }

    async fn give_notice(&self, standing: &Standing) {
        let about = (standing.expires_at, standing.code_serial, format!("{:?}", standing.state));
        let (label, emit, mail) = {
            let mut inner = self.lock();
            // Another expiry, code or state (a renewal, a resumption) starts
            // the notices afresh.
            if inner.notices.about != about {
                inner.notices = Notices { about, ..Notices::default() };
            }
            let Some(label) = notice_due(standing) else { return };
            let emit = !inner.notices.events.iter().any(|l| l == label);
            if emit {
                inner.notices.events.push(label.to_owned());
            }
            let waiting = inner.mail_after.is_some_and(|at| tokio::time::Instant::now() < at);
            let mail = self.notify.enabled && !waiting && !inner.notices.mails.iter().any(|l| l == label);
            (label, emit, mail)
        };
        if emit && label != "stopped" {
            self.tell(
                events::SUBSCRIPTION_ENDING,
                format!("{}. Renew at {}.", capital(&standing.detail), or_vendor(&standing.purchase_url)),
            );
        }
        if mail {
            let (subject, text) = self.notice_text(standing, label);
            match crate::notify::send(&self.notify, &subject, &text).await {
                Ok(()) => {
                    let mut inner = self.lock();
                    inner.notices.mails.push(label.to_owned());
                    inner.mail_after = None;
                }
                Err(e) => {
                    self.lock().mail_after = Some(tokio::time::Instant::now() + MAIL_RETRY);
                    self.events.emit(events::NOTICE_MAIL_FAILED, None, format!("To {}: {e}.", self.notify.to));
                }
            }
        }
        if emit || mail {
            let json = serde_json::to_string(&self.lock().notices).unwrap_or_default();
            if let Err(e) = self.state.call(move |c| state::meta_set(c, NOTICES_KEY, &json)).await {
                self.events.emit(events::STATE_ERROR, None, e.to_string());
            }
        }
    }

    fn notice_text(&self, standing: &Standing, label: &str) -> (String, String) {
        let (subject, text, built_in) = if label == "stopped" {
            (&self.notify.stopped_subject, &self.notify.stopped_text, STOPPED_TEXT)
        } else {
            (&self.notify.warning_subject, &self.notify.warning_text, WARNING_TEXT)
        };
        let text = if text.is_empty() { built_in } else { text.as_str() };
        let fill = |template: &str| {
            template
                .replace("{organisation}", &standing.organisation)
                .replace("{plan}", &standing.plan)
                .replace("{days}", &standing.days_left.unwrap_or(0).to_string())
                .replace(
                    "{expires}",
                    &if standing.expires_at == 0 { "never".to_owned() } else { day(standing.expires_at) },
                )
                .replace("{purchase_url}", or_vendor(&standing.purchase_url))
                .replace("{reason}", &standing.detail)
        };
        (fill(subject), fill(text))
    }
}

fn or_vendor(url: &str) -> &str {
    if url.is_empty() { "your vendor" } else { url }
}

fn capital(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn describe(claims: &Claims, how: &str) -> String {
    let expiry =
        if claims.expires_at == 0 { "no expiry".to_owned() } else { format!("until {}", day(claims.expires_at)) };
    let limit = if claims.max_mailboxes == 0 {
        "any number of mailboxes".to_owned()
    } else {
        format!("up to {} mailboxes", claims.max_mailboxes)
    };
    format!("A {} for {}, {expiry}, {limit} ({how}).", claims.plan.as_str(), claims.organisation)
}

/// What the console and `starling activate` do with a code an
/// administrator entered: checked at once with what the agent keeps (the
/// pinned or configured key, the organisation), then stored for the agent,
/// which checks it again and takes it at its next look (≤ 2 s).
pub fn enter_code(c: &rusqlite::Connection, config: &ActivationConfig, code: &str) -> Result<Claims, String> {
    let configured = activation::parse_public_key(&config.public_key);
    let pinned = state::meta_get(c, PINNED_KEY).map_err(|e| e.to_string())?;
    let key = configured.or_else(|| pinned.as_deref().and_then(activation::parse_public_key)).ok_or_else(|| {
        "the network's key is not known yet: start the agent so it reaches the network once, or set [activation] public_key"
            .to_owned()
    })?;
    let claims = activation::verify(code, &key).map_err(|e| e.to_string())?;
    let network: Option<NetworkSays> =
        state::meta_get(c, NETWORK_KEY).map_err(|e| e.to_string())?.and_then(|n| serde_json::from_str(&n).ok());
    let organisation = network.as_ref().map_or(claims.organisation.as_str(), |n| n.organisation.as_str());
    claims.check(organisation, jiff::Timestamp::now().as_second()).map_err(|e| e.to_string())?;
    if network.is_some_and(|n| claims.serial <= n.revoked_through) {
        return Err(CodeError::Revoked.to_string());
    }
    let compact: String = code.chars().filter(|ch| !ch.is_whitespace()).collect();
    state::meta_set(c, CODE_KEY, &compact).map_err(|e| e.to_string())?;
    Ok(claims)
}

/// The mailboxes as the standing allows them: none enabled while filtering
/// is stopped; under a mailbox limit, the enabled user mailboxes beyond it
/// (the newest) disabled. Also answers the names the limit left out.
pub fn allowed(standing: &Standing, mut rows: Vec<MailboxRow>) -> (Vec<MailboxRow>, Vec<String>) {
    if !standing.filtering {
        rows.iter_mut().for_each(|row| row.enabled = false);
        return (rows, Vec::new());
    }
    let enabled = rows
        .iter()
        .filter(|r| r.enabled && r.present && r.kind == "user")
        .map(|r| (r.first_seen, r.name.clone()))
        .collect();
    let (_, beyond) = within_limit(enabled, standing.max_mailboxes);
    for row in &mut rows {
        if beyond.contains(&row.name) {
            row.enabled = false;
        }
    }
    (rows, beyond)
}

/// The mailboxes that may be filtered under a limit of `max` (0: all): the
/// first enabled ones, by when they were first seen (then by name). The
/// names beyond it are answered second.
pub fn within_limit(mut enabled: Vec<(i64, String)>, max: u32) -> (Vec<String>, Vec<String>) {
    enabled.sort();
    let names: Vec<String> = enabled.into_iter().map(|(_, name)| name).collect();
    if max == 0 || names.len() <= max as usize {
        return (names, Vec::new());
    }
    let mut kept = names;
    let beyond = kept.split_off(max as usize);
    (kept, beyond)
}

#[cfg(test)]
mod tests;
