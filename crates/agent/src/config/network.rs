//! How the agent reaches the network.

use super::*;

/// The network the agent asks for verdicts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// The node's address (`http://…` or `https://…`); several nodes of one
    /// network, separated by commas, are asked in turn: the agent moves to
    /// the next when one does not answer.
    pub url: String,
    /// File holding the organisation's credential. Relative paths are
    /// relative to `state_dir`.
    pub credential_file: PathBuf,
    /// CA certificate (PEM) to trust for an `https://` node, besides the
    /// public roots.
    pub ca_file: Option<PathBuf>,
    /// Time allowed for one request.
    pub timeout_ms: u64,
    /// Messages per Check request.
    pub batch_size: usize,
    /// Ignored since requests go out as soon as a slot is free (kept so
    /// older files still load).
    pub batch_wait_ms: u64,
    /// How often the network is probed while it is unreachable.
    pub retry_seconds: u64,
    /// Messages waiting for a re-check at most; beyond it messages are left
    /// in place unchecked and an event (303) says how many.
    pub recheck_queue_max: u32,
    /// Queued messages older than this are dropped from the re-check queue.
    pub recheck_max_age_hours: u32,
    /// Allow `http://` to a node on another machine (the credential would
    /// cross the network in clear): only on a trusted private network.
    pub allow_plaintext_public: bool,
}

impl NetworkConfig {
    /// The nodes' addresses, in order.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.url.split(',').map(str::trim).filter(|u| !u.is_empty())
    }
}

impl Default for NetworkConfig {
    fn default() -> NetworkConfig {
        NetworkConfig {
            url: "http://127.0.0.1:7890".into(),
            credential_file: PathBuf::from("credential"),
            ca_file: None,
            timeout_ms: 5_000,
            batch_size: 64,
            batch_wait_ms: 10,
            retry_seconds: 30,
            recheck_queue_max: 100_000,
            recheck_max_age_hours: 24,
            allow_plaintext_public: false,
        }
    }
}
