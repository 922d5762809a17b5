//! A node's configuration: one TOML file, every option with a default, and
//! every problem reported at once with its key path.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use starling_fingerprint::MatchRule;

use crate::trust::TrustConfig;

/// Everything a node needs to run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Address of the gRPC API, `/metrics` and `/health`.
    pub listen: SocketAddr,
    /// Directory of the store, the operator token and the network key.
    pub data_dir: PathBuf,
    /// A file with the network's fingerprint key (64 hex digits), for nodes
    /// that must share one (several API nodes of a network, a migration);
    /// without it a node creates a key at its first start.
    pub network_key_file: Option<PathBuf>,
    /// Listen beyond loopback without TLS (credentials would cross the
    /// network in clear text).
    pub allow_plaintext_public: bool,
    /// The newest agent release, announced to agents in `Hello` ("" = none).
    pub latest_agent_version: String,
    /// Its release notes, announced beside it ("" = none).
    pub release_notes_url: String,
    /// Where organisations buy or renew, shown by agents when a code names
    /// no URL of its own ("" = none).
    pub purchase_url: String,
    /// TLS; when absent the node speaks plain HTTP/2.
    pub tls: Option<TlsConfig>,
    /// Request bounds and rates.
    pub limits: Limits,
    /// The store.
    pub store: StoreConfig,
    /// When a fuzzy candidate is a match.
    #[serde(rename = "match")]
    pub match_rule: MatchRule,
    /// The reputation model.
    pub trust: TrustConfig,
    /// The change log behind the `Changes` long-poll.
    pub changes: ChangesConfig,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7890)),
            data_dir: PathBuf::from("starling-network"),
            network_key_file: None,
            allow_plaintext_public: false,
            latest_agent_version: String::new(),
            release_notes_url: String::new(),
            purchase_url: String::new(),
            tls: None,
            limits: Limits::default(),
            store: StoreConfig::default(),
            match_rule: MatchRule::default(),
            trust: TrustConfig::default(),
            changes: ChangesConfig::default(),
        }
    }
}

/// The change log behind `Changes`: the index keys of fingerprint sets that
/// became spam, kept in memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChangesConfig {
    /// Newest keys kept; an agent further behind is told to rescan.
    pub keep: usize,
}

impl Default for ChangesConfig {
    fn default() -> ChangesConfig {
        ChangesConfig { keep: 100_000 }
    }
}

/// TLS certificate and key (PEM files).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain.
    pub certificate: PathBuf,
    /// Private key.
    pub private_key: PathBuf,
}

/// Request bounds and per-organisation rates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Messages in one Check request.
    pub max_check_batch: u32,
    /// Reports (or revocations) in one request.
    pub max_report_batch: u32,
    /// Messages checked per second, per organisation.
    pub checks_per_second: f64,
    /// Reports per second, per organisation.
    pub reports_per_second: f64,
    /// Seconds of rate that may be spent at once.
    pub burst_seconds: f64,
    /// Bytes of one request.
    pub max_request_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_check_batch: 1024,
            max_report_batch: 256,
            checks_per_second: 50_000.0,
            reports_per_second: 1_000.0,
            burst_seconds: 5.0,
            max_request_bytes: 4 << 20,
        }
    }
}

/// The store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Where the store is: empty for the embedded store in `data_dir`, or
    /// `redis://host:port[,host:port…]` for a Redis Cluster that several
    /// nodes share (`docs/network.md`, "Redis Cluster").
    pub url: String,
    /// Redis Cluster: replicas each write batch waits for before reports
    /// are acknowledged (`WAIT`; 0: acknowledged once on the masters).
    pub redis_wait_replicas: u32,
    /// Redis Cluster: announcements (the index keys each write batch
    /// added, for the other nodes' filters) kept in the stream the nodes
    /// follow; a node further behind warms its filter from the store again.
    pub redis_stream_keep: usize,
    /// Page cache of the embedded store, in MiB.
    pub cache_mb: usize,
    /// Reported messages the in-memory key filter is sized for at start-up
    /// (it grows beyond, and is resized to the store at each start).
    pub expected_entries: usize,
    /// Days after its last report when an entry is forgotten.
    pub expire_after_days: u32,
    /// Newest entries kept per index key.
    pub max_postings_per_key: usize,
    /// Reporters kept per entry.
    pub max_reporters_per_entry: usize,
    /// Fuzzy candidates verified per checked message.
    pub max_candidates: usize,
    /// Jaccard similarity at which a report joins an existing entry instead
    /// of creating one.
    pub cluster_jaccard: f32,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            url: String::new(),
            redis_wait_replicas: 0,
            redis_stream_keep: crate::store::redis::DEFAULT_STREAM_KEEP,
            cache_mb: 32,
            expected_entries: 100_000,
            expire_after_days: 90,
            max_postings_per_key: 64,
            max_reporters_per_entry: 256,
            max_candidates: 32,
            cluster_jaccard: 0.8,
        }
    }
}

impl NodeConfig {
    /// Parses a TOML file's text; unknown keys and bad values are errors.
    pub fn from_toml(text: &str) -> Result<NodeConfig, Vec<String>> {
        let config: NodeConfig = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        let problems = config.problems();
        if problems.is_empty() { Ok(config) } else { Err(problems) }
    }

    /// Every problem with the values, by key path.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let public = !self.listen.ip().is_loopback();
        if public && self.tls.is_none() && !self.allow_plaintext_public {
            problems.push(format!(
                "listen: {} is not a loopback address; configure [tls] or set allow_plaintext_public = true",
                self.listen
            ));
        }
        if !self.store.url.is_empty() && !self.store.url.starts_with("redis://") {
            problems.push(format!(
                "store.url: must be empty (the embedded store) or redis://host:port[,host:port…], got {:?}",
                self.store.url
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            problems.push("data_dir: must not be empty".into());
        }
        if let Some(path) = &self.network_key_file
            && !path.is_file()
        {
            problems.push(format!("network_key_file: {} is not a readable file", path.display()));
        }
        if let Some(tls) = &self.tls {
            for (key, path) in [("tls.certificate", &tls.certificate), ("tls.private_key", &tls.private_key)] {
                if !path.is_file() {
                    problems.push(format!("{key}: {} is not a readable file", path.display()));
                }
            }
        }
        let l = &self.limits;
        if l.max_check_batch == 0 || l.max_check_batch > 100_000 {
            problems.push(format!("limits.max_check_batch: must be 1..=100000, got {}", l.max_check_batch));
        }
        if l.max_report_batch == 0 || l.max_report_batch > 10_000 {
            problems.push(format!("limits.max_report_batch: must be 1..=10000, got {}", l.max_report_batch));
        }
        for (key, value) in [
            ("limits.checks_per_second", l.checks_per_second),
            ("limits.reports_per_second", l.reports_per_second),
            ("limits.burst_seconds", l.burst_seconds),
        ] {
            if !(value.is_finite() && value > 0.0) {
                problems.push(format!("{key}: must be a positive number, got {value}"));
            }
        }
        if l.max_request_bytes < 64 << 10 {
            problems.push(format!("limits.max_request_bytes: must be at least 65536, got {}", l.max_request_bytes));
        }
        let s = &self.store;
        if s.cache_mb == 0 {
            problems.push("store.cache_mb: must be at least 1".into());
        }
        if s.expire_after_days == 0 {
            problems.push("store.expire_after_days: must be at least 1".into());
        }
        for (key, value) in [
            ("store.max_postings_per_key", s.max_postings_per_key),
            ("store.max_reporters_per_entry", s.max_reporters_per_entry),
            ("store.max_candidates", s.max_candidates),
        ] {
            if value == 0 {
                problems.push(format!("{key}: must be at least 1"));
            }
        }
        if !(0.0..=1.0).contains(&s.cluster_jaccard) {
            problems.push(format!("store.cluster_jaccard: must be between 0 and 1, got {}", s.cluster_jaccard));
        }
        let m = &self.match_rule;
        for (key, value) in [
            ("match.jaccard", m.jaccard),
            ("match.containment", m.containment),
            ("match.containment_jaccard", m.containment_jaccard),
        ] {
            if !(0.0..=1.0).contains(&value) {
                problems.push(format!("{key}: must be between 0 and 1, got {value}"));
            }
        }
        if !(1_000..=100_000_000).contains(&self.changes.keep) {
            problems.push(format!("changes.keep: must be 1000..=100000000, got {}", self.changes.keep));
        }
        problems.extend(self.trust.problems("trust"));
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(NodeConfig::default().problems(), Vec::<String>::new());
        assert_eq!(NodeConfig::from_toml("").unwrap(), NodeConfig::default());
    }

    #[test]
    fn all_problems_are_reported_at_once_with_their_keys() {
        let text = r#"
            listen = "0.0.0.0:7890"
            [limits]
            max_check_batch = 0
            [store]
            cluster_jaccard = 3.0
            [trust]
            threshold = -1
        "#;
        let problems = NodeConfig::from_toml(text).unwrap_err();
        for key in ["listen:", "limits.max_check_batch", "store.cluster_jaccard", "trust.threshold"] {
            assert!(problems.iter().any(|p| p.starts_with(key)), "{key} missing from {problems:?}");
        }
    }

    #[test]
    fn unknown_keys_are_errors() {
        let problems = NodeConfig::from_toml("[store]\ncache_gb = 3\n").unwrap_err();
        assert!(problems[0].contains("cache_gb"), "{problems:?}");
    }
}
