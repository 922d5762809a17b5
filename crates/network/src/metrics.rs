//! Prometheus metrics of a node, served on `/metrics` (OpenMetrics text).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The RPC.
    pub method: &'static str,
    /// The gRPC status name.
    pub code: &'static str,
}

/// Labels of an RPC's latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// The RPC.
    pub method: &'static str,
}

/// A class or kind label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabels {
    /// The value.
    pub name: &'static str,
}

/// Every metric of a node.
pub struct Metrics {
    registry: Registry,
    /// Requests by method and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by method, in seconds.
    pub latency: Family<MethodLabels, Histogram>,
    /// Messages checked.
    pub checked: Counter,
    /// Verdicts by class.
    pub verdicts: Family<NameLabels, Counter>,
    /// Matches by the kind of fingerprint behind the verdict.
    pub matches: Family<NameLabels, Counter>,
    /// Reports by class.
    pub reports: Family<NameLabels, Counter>,
    /// Reported messages announced to `Changes` as newly spam or phishing.
    pub announced: Counter,
    /// Entries (reported messages) stored.
    pub entries: Gauge,
    /// Reporters known.
    pub reporters: Gauge,
    /// Index keys stored.
    pub index_keys: Gauge,
    /// Bytes of the store on disk.
    pub store_bytes: Gauge,
    /// Bytes of the in-memory filter.
    pub filter_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("starling_network");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<MethodLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.000_05, 2.0, 16))) as fn() -> Histogram,
        );
        let metrics = Metrics {
            requests: requests.clone(),
            latency: latency.clone(),
            checked: Counter::default(),
            verdicts: Family::default(),
            matches: Family::default(),
            reports: Family::default(),
            announced: Counter::default(),
            entries: Gauge::default(),
            reporters: Gauge::default(),
            index_keys: Gauge::default(),
            store_bytes: Gauge::default(),
            filter_bytes: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("requests", "gRPC requests by method and status", metrics.requests.clone());
        registry.register("request_seconds", "gRPC request latency by method", metrics.latency.clone());
        registry.register("checked_messages", "messages checked", metrics.checked.clone());
        registry.register("verdicts", "verdicts by class", metrics.verdicts.clone());
        registry.register("matches", "matches by the kind of fingerprint behind the verdict", metrics.matches.clone());
        registry.register("reports", "reports received by class", metrics.reports.clone());
        registry.register(
            "announced_messages",
            "reported messages announced to Changes as newly spam or phishing",
            metrics.announced.clone(),
        );
        registry.register("entries", "reported messages stored", metrics.entries.clone());
        registry.register("reporters", "reporters known", metrics.reporters.clone());
        registry.register("index_keys", "index keys stored", metrics.index_keys.clone());
        registry.register("store_bytes", "bytes of the store on disk", metrics.store_bytes.clone());
        registry.register("filter_bytes", "bytes of the in-memory key filter", metrics.filter_bytes.clone());
        Metrics { registry, ..metrics }
    }
}

impl Metrics {
    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
