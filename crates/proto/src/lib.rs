//! The agent ↔ network API of Starling.
//!
//! - [`v1`]: the gRPC services (`Network` for agents, `Admin` for operators)
//!   and messages, generated from `proto/starling/network/v1/network.proto` by
//!   prost/tonic at build time (protox compiles the schema in pure Rust, so no
//!   `protoc` is needed).
//! - [`Submitted`]: a validated fingerprint set. Every value that arrives from
//!   the wire goes through [`Submitted::from_wire`], which enforces the bounds
//!   below and says precisely what was wrong; the network never handles an
//!   unchecked set.
//! - [`IndexKey`] and [`index_keys`]: the keys under which the network finds
//!   a fingerprint set, in the byte form that `Changes` announces; an agent
//!   computes the same bytes from the sets it stored ([`index_keys_of_wire`]).
//! - [`activation`]: activation codes, signed by the network operator and
//!   verified offline by agents.
//! - Authentication metadata ([`AUTHORIZATION`], [`bearer`]) and the protocol
//!   version.
//!
//! Design decision: only this crate knows the wire encoding. The network
//! converts to and from it at its edge; the fingerprint engine knows nothing
//! of it.
//!
//! ```
//! use starling_fingerprint::{Fingerprinter, Key};
//! use starling_proto::Submitted;
//!
//! let raw = b"Subject: x\r\n\r\nA short note about the garden furniture sale that starts on Monday morning.\r\n";
//! let fingerprints = Fingerprinter::new(&Key::DEVELOPMENT).fingerprint(raw);
//! let wire = starling_proto::to_wire(&fingerprints);
//! let back = Submitted::from_wire(&wire).unwrap();
//! assert_eq!(back.text, fingerprints.text);
//! ```

use std::fmt;

use starling_fingerprint::{ALGORITHM_VERSION, BANDS, DIGEST_VERSION, Digest, Fingerprints, MinHash, SLOTS, limits};

pub mod activation;

/// Generated gRPC code for `starling.network.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("starling.network.v1");
}

/// The version of this API. A node answers `Hello` with its own; agents and
/// nodes of the same major protocol version interoperate.
pub const PROTOCOL_VERSION: u32 = 1;

/// The metadata key that carries credentials.
pub const AUTHORIZATION: &str = "authorization";

/// The `authorization` value for a credential or operator token.
pub fn bearer(secret: &str) -> String {
    format!("Bearer {secret}")
}

/// The secret in an `authorization` value, if it is a bearer token.
pub fn parse_bearer(value: &str) -> Option<&str> {
    value.strip_prefix("Bearer ").map(str::trim).filter(|s| !s.is_empty())
}

/// Longest reporter pseudonym accepted, in bytes.
pub const MAX_REPORTER_BYTES: usize = 128;

/// The longest a node holds a `Changes` call (`wait_ms` above is capped).
pub const MAX_CHANGES_WAIT_MS: u32 = 30_000;

/// The most keys one `ChangesResponse` carries; the rest come with the next
/// call.
pub const MAX_CHANGES_KEYS: usize = 10_000;

/// A fingerprint set as sent, validated: the right sizes, within bounds.
#[derive(Clone, Debug, PartialEq)]
pub struct Submitted {
    /// Algorithm version of the producer.
    pub version: u32,
    /// Text digest.
    pub text: Option<Digest>,
    /// Min-hash signature.
    pub fuzzy: Option<MinHash>,
    /// URL digests.
    pub urls: Vec<Digest>,
    /// Registrable-domain digests.
    pub domains: Vec<Digest>,
    /// Attachment digests.
    pub attachments: Vec<Digest>,
}

impl Submitted {
    /// Whether there is nothing to look up.
    pub fn is_empty(&self) -> bool {
        self.text.is_none()
            && self.fuzzy.is_none()
            && self.urls.is_empty()
            && self.domains.is_empty()
            && self.attachments.is_empty()
    }

    /// Validates a wire set.
    pub fn from_wire(wire: &v1::FingerprintSet) -> Result<Submitted, WireError> {
        // Version 1 differs only in its fuzzy signature, which cannot be
        // compared with this one's: an agent not yet upgraded keeps its
        // exact digests working, and its signatures are left out.
        let current = wire.version == u32::from(ALGORITHM_VERSION);
        if !current && wire.version != u32::from(DIGEST_VERSION) {
            return Err(WireError::Version { got: wire.version });
        }
        let text = if wire.text.is_empty() { None } else { Some(digest("text", &wire.text)?) };
        let fuzzy = match wire.slots.len() {
            0 => None,
            _ if !current => None,
            SLOTS => {
                let mut slots = [0u32; SLOTS];
                slots.copy_from_slice(&wire.slots);
                Some(MinHash { slots, shingles: wire.shingles })
            }
            got => return Err(WireError::Slots { got }),
        };
        Ok(Submitted {
            version: u32::from(ALGORITHM_VERSION),
            text,
            fuzzy,
            urls: digests("urls", &wire.urls, limits::MAX_URLS)?,
            domains: digests("domains", &wire.domains, limits::MAX_URLS)?,
            attachments: digests("attachments", &wire.attachments, limits::MAX_ATTACHMENTS)?,
        })
    }

    /// The wire form.
    pub fn to_wire(&self) -> v1::FingerprintSet {
        v1::FingerprintSet {
            version: self.version,
            text: self.text.map(|d| d.0.to_vec()).unwrap_or_default(),
            slots: self.fuzzy.as_ref().map(|f| f.slots.to_vec()).unwrap_or_default(),
            shingles: self.fuzzy.as_ref().map_or(0, |f| f.shingles),
            urls: self.urls.iter().map(|d| d.0.to_vec()).collect(),
            domains: self.domains.iter().map(|d| d.0.to_vec()).collect(),
            attachments: self.attachments.iter().map(|d| d.0.to_vec()).collect(),
        }
    }
}

impl From<&Fingerprints> for Submitted {
    fn from(fp: &Fingerprints) -> Submitted {
        Submitted {
            version: u32::from(fp.version),
            text: fp.text,
            fuzzy: fp.fuzzy.clone(),
            urls: fp.urls.clone(),
            domains: fp.domains.clone(),
            attachments: fp.attachments.clone(),
        }
    }
}

/// The wire form of a message's fingerprints.
pub fn to_wire(fingerprints: &Fingerprints) -> v1::FingerprintSet {
    Submitted::from(fingerprints).to_wire()
}

/// A fingerprint set as bytes, to keep it (the agent's outbox of users'
/// reports keeps what it will send): its protobuf encoding.
pub fn set_to_bytes(set: &v1::FingerprintSet) -> Vec<u8> {
    prost::Message::encode_to_vec(set)
}

/// A kept fingerprint set read back; `None` when the bytes are not one.
pub fn set_from_bytes(bytes: &[u8]) -> Option<v1::FingerprintSet> {
    <v1::FingerprintSet as prost::Message>::decode(bytes).ok()
}

/// A key of the network's index: which stored messages have this
/// fingerprint. `Changes` announces keys in their [`IndexKey::to_bytes`] form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndexKey {
    /// A text digest.
    Text(Digest),
    /// Band `band` of a min-hash signature has this key.
    Band(u8, u64),
    /// An attachment digest.
    Attachment(Digest),
}

impl IndexKey {
    /// The stored and announced form: a kind byte and the value — `b't'` and
    /// the 16-byte text digest, `b'b'`, the band and the 8-byte big-endian
    /// band key, or `b'a'` and the 16-byte attachment digest.
    pub fn to_bytes(self) -> Vec<u8> {
        match self {
            IndexKey::Text(d) => [&[b't'][..], &d.0].concat(),
            IndexKey::Band(band, key) => [&[b'b', band][..], &key.to_be_bytes()].concat(),
            IndexKey::Attachment(d) => [&[b'a'][..], &d.0].concat(),
        }
    }

    /// The key of a [`IndexKey::to_bytes`] form; `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<IndexKey> {
        match bytes {
            [b't', rest @ ..] => Some(IndexKey::Text(Digest(rest.try_into().ok()?))),
            [b'a', rest @ ..] => Some(IndexKey::Attachment(Digest(rest.try_into().ok()?))),
            [b'b', band, rest @ ..] => Some(IndexKey::Band(*band, u64::from_be_bytes(rest.try_into().ok()?))),
            _ => None,
        }
    }

    /// A 64-bit hash for the node's in-memory filter.
    pub fn filter_hash(self) -> u64 {
        match self {
            IndexKey::Text(d) => u64::from_le_bytes(d.0[..8].try_into().expect("8 bytes")),
            IndexKey::Band(band, key) => key ^ (u64::from(band) << 56).rotate_left(7),
            IndexKey::Attachment(d) => u64::from_le_bytes(d.0[8..].try_into().expect("8 bytes")).rotate_left(17),
        }
    }
}

/// The index keys of a fingerprint set: its text digest, the band keys of its
/// signature and its attachment digests. URL and domain digests are not
/// indexed: they never decide a match.
pub fn index_keys(set: &Submitted) -> Vec<IndexKey> {
    let mut keys = Vec::with_capacity(1 + BANDS + set.attachments.len());
    keys.extend(set.text.map(IndexKey::Text));
    if let Some(fuzzy) = &set.fuzzy {
        keys.extend(fuzzy.band_keys().into_iter().enumerate().map(|(band, key)| IndexKey::Band(band as u8, key)));
    }
    keys.extend(set.attachments.iter().copied().map(IndexKey::Attachment));
    keys
}

/// The index keys of a wire set, in the byte form `Changes` announces, so an
/// agent can match announced keys against the sets it stored. The set is
/// validated with [`Submitted::from_wire`]; a set that does not pass (another
/// algorithm version, wrong sizes) has no keys: the network could not have
/// announced it either.
pub fn index_keys_of_wire(set: &v1::FingerprintSet) -> Vec<Vec<u8>> {
    match Submitted::from_wire(set) {
        Ok(set) => index_keys(&set).into_iter().map(IndexKey::to_bytes).collect(),
        Err(_) => Vec::new(),
    }
}

fn digest(field: &'static str, bytes: &[u8]) -> Result<Digest, WireError> {
    let array: [u8; 16] = bytes.try_into().map_err(|_| WireError::DigestLength { field, got: bytes.len() })?;
    Ok(Digest(array))
}

fn digests(field: &'static str, values: &[Vec<u8>], max: usize) -> Result<Vec<Digest>, WireError> {
    if values.len() > max {
        return Err(WireError::TooMany { field, got: values.len(), max });
    }
    values.iter().map(|v| digest(field, v)).collect()
}

/// Why a fingerprint set from the wire was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// An algorithm version this node does not speak.
    Version {
        /// The version sent.
        got: u32,
    },
    /// A digest that is not 16 bytes.
    DigestLength {
        /// Which field.
        field: &'static str,
        /// Its length.
        got: usize,
    },
    /// A min-hash without exactly [`SLOTS`] slots.
    Slots {
        /// Slots sent.
        got: usize,
    },
    /// More values than the bound.
    TooMany {
        /// Which field.
        field: &'static str,
        /// Values sent.
        got: usize,
        /// The bound.
        max: usize,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Version { got } => write!(
                f,
                "fingerprint algorithm version {got} is not supported (this node speaks {ALGORITHM_VERSION}); \
                 upgrade the agent or the node"
            ),
            WireError::DigestLength { field, got } => write!(f, "{field}: a digest is 16 bytes, got {got}"),
            WireError::Slots { got } => write!(f, "slots: a min-hash signature has {SLOTS} slots, got {got}"),
            WireError::TooMany { field, got, max } => write!(f, "{field}: {got} values, at most {max} are accepted"),
        }
    }
}

impl std::error::Error for WireError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire() -> v1::FingerprintSet {
        v1::FingerprintSet { version: u32::from(ALGORITHM_VERSION), text: vec![1; 16], ..Default::default() }
    }

    #[test]
    fn round_trip() {
        let mut w = wire();
        w.slots = (0..64).collect();
        w.shingles = 70;
        w.urls = vec![vec![2; 16]];
        let s = Submitted::from_wire(&w).unwrap();
        assert_eq!(s.to_wire(), w);
    }

    #[test]
    fn bad_sets_are_refused_with_a_reason() {
        let mut w = wire();
        w.text = vec![1; 3];
        assert_eq!(Submitted::from_wire(&w).unwrap_err().to_string(), "text: a digest is 16 bytes, got 3");
        let mut w = wire();
        w.slots = vec![1; 10];
        assert!(Submitted::from_wire(&w).unwrap_err().to_string().contains("got 10"));
        let mut w = wire();
        w.urls = vec![vec![0; 16]; 1000];
        assert!(Submitted::from_wire(&w).unwrap_err().to_string().contains("1000 values"));
        let mut w = wire();
        w.version = 99;
        assert!(Submitted::from_wire(&w).unwrap_err().to_string().contains("version 99"));
    }

    #[test]
    fn a_version_1_set_keeps_its_digests_and_loses_its_signature() {
        let mut w = wire();
        w.version = u32::from(DIGEST_VERSION);
        w.slots = (0..64).collect();
        w.shingles = 70;
        w.urls = vec![vec![2; 16]];
        let s = Submitted::from_wire(&w).unwrap();
        assert!(s.fuzzy.is_none() && s.text.is_some() && s.urls.len() == 1);
        assert_eq!(s.to_wire().version, u32::from(ALGORITHM_VERSION));
        w.slots = vec![1; 10];
        assert!(Submitted::from_wire(&w).is_ok(), "a version 1 signature is not looked at");
    }

    #[test]
    fn index_keys_round_trip_through_their_bytes() {
        let mut w = wire();
        w.slots = (0..64).collect();
        w.shingles = 70;
        w.attachments = vec![vec![3; 16]];
        w.urls = vec![vec![2; 16]];
        let keys = index_keys(&Submitted::from_wire(&w).unwrap());
        assert_eq!(keys.len(), 1 + BANDS + 1, "text, bands, attachment; no URL");
        let bytes = index_keys_of_wire(&w);
        assert_eq!(bytes[0], [&[b't'][..], &[1; 16]].concat());
        assert_eq!(bytes[1].len(), 10);
        assert_eq!(bytes.last().unwrap(), &[&[b'a'][..], &[3; 16]].concat());
        for (key, bytes) in keys.iter().zip(&bytes) {
            assert_eq!(IndexKey::from_bytes(bytes), Some(*key));
        }
        assert_eq!(IndexKey::from_bytes(b"t123"), None);
        assert_eq!(IndexKey::from_bytes(b""), None);
        w.version = 99;
        assert!(index_keys_of_wire(&w).is_empty(), "an invalid set has no keys");
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(parse_bearer(&bearer("abc")), Some("abc"));
        assert_eq!(parse_bearer("Basic abc"), None);
        assert_eq!(parse_bearer("Bearer "), None);
    }
}

pub mod client {
    //! Connecting to a node: a channel (plain or TLS) and the credential on
    //! every call.

    use std::time::Duration;

    use tonic::metadata::{Ascii, MetadataValue};
    use tonic::service::interceptor::InterceptedService;
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

    use crate::v1::admin_client::AdminClient;
    use crate::v1::network_client::NetworkClient;

    /// Adds `authorization: Bearer <secret>` to every request.
    #[derive(Clone)]
    pub struct Credential(MetadataValue<Ascii>);

    impl Credential {
        /// A credential or operator token.
        pub fn new(secret: &str) -> Result<Credential, String> {
            crate::bearer(secret.trim())
                .parse()
                .map(Credential)
                .map_err(|_| "a credential is printable ASCII without line breaks".to_owned())
        }
    }

    impl tonic::service::Interceptor for Credential {
        fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
            request.metadata_mut().insert(crate::AUTHORIZATION, self.0.clone());
            Ok(request)
        }
    }

    /// A client channel with the credential attached.
    pub type Authorised = InterceptedService<Channel, Credential>;

    /// Where and how to reach a node.
    #[derive(Clone, Debug)]
    pub struct Target {
        /// `http://host:port` or `https://host:port` (a bare `host:port` means http).
        pub url: String,
        /// PEM of a CA to trust beyond the system's roots (self-signed nodes).
        pub ca_pem: Option<Vec<u8>>,
        /// Per-call timeout.
        pub timeout: Duration,
    }

    impl Target {
        /// A target with the default timeout (10 s).
        pub fn new(address: &str) -> Target {
            let url = if address.contains("://") { address.to_owned() } else { format!("http://{address}") };
            Target { url, ca_pem: None, timeout: Duration::from_secs(10) }
        }

        /// The same node, with a per-call timeout long enough for a
        /// [`changes`] long-poll of up to [`crate::MAX_CHANGES_WAIT_MS`]
        /// (the channel's timeout also bounds every call made on it, so a
        /// long-poll needs a channel of its own, or a wait shorter than
        /// [`Target::timeout`] less [`CHANGES_MARGIN`]).
        pub fn for_changes(&self) -> Target {
            let longest = Duration::from_millis(u64::from(crate::MAX_CHANGES_WAIT_MS)) + CHANGES_MARGIN;
            Target { timeout: self.timeout.max(longest), ..self.clone() }
        }

        /// Connects.
        pub async fn connect(&self) -> Result<Channel, tonic::transport::Error> {
            self.endpoint()?.connect().await
        }

        /// A channel that connects on first use and reconnects after
        /// failures (for long-running clients that must start while the
        /// node is down).
        pub fn connect_lazy(&self) -> Result<Channel, tonic::transport::Error> {
            Ok(self.endpoint()?.connect_lazy())
        }

        fn endpoint(&self) -> Result<Endpoint, tonic::transport::Error> {
            let mut endpoint = Endpoint::from_shared(self.url.clone())?
                .timeout(self.timeout)
                .connect_timeout(Duration::from_secs(5))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_while_idle(true);
            if self.url.starts_with("https://") {
                let mut tls = ClientTlsConfig::new().with_webpki_roots();
                if let Some(pem) = &self.ca_pem {
                    tls = tls.ca_certificate(Certificate::from_pem(pem));
                }
                endpoint = endpoint.tls_config(tls)?;
            }
            Ok(endpoint)
        }
    }

    /// An agent's client.
    pub fn network(channel: Channel, credential: Credential) -> NetworkClient<Authorised> {
        NetworkClient::with_interceptor(channel, credential).max_decoding_message_size(64 << 20)
    }

    /// How much longer than its wait a [`changes`] call may take before the
    /// client gives up on it (the node answers at the end of the wait).
    pub const CHANGES_MARGIN: Duration = Duration::from_secs(5);

    /// One `Changes` long-poll: the keys of fingerprint sets that became spam
    /// or phishing since `cursor` (0 = from now on), waiting up to `wait`
    /// (capped by the node at [`crate::MAX_CHANGES_WAIT_MS`]) when there are
    /// none yet. Pass the response's `cursor` to the next call; on `reset`
    /// changes may have been missed (the node restarted, or the caller fell
    /// behind what it keeps) and the caller should rescan.
    ///
    /// The call's deadline is `wait` plus [`CHANGES_MARGIN`]; the channel's
    /// own timeout applies too (see [`Target::for_changes`]).
    pub async fn changes(
        client: &mut NetworkClient<Authorised>,
        cursor: u64,
        wait: Duration,
    ) -> Result<crate::v1::ChangesResponse, tonic::Status> {
        let wait_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX).min(crate::MAX_CHANGES_WAIT_MS);
        let mut request = tonic::Request::new(crate::v1::ChangesRequest { cursor, wait_ms });
        request.set_timeout(Duration::from_millis(u64::from(wait_ms)) + CHANGES_MARGIN);
        client.changes(request).await.map(tonic::Response::into_inner)
    }

    /// An operator's client.
    pub fn admin(channel: Channel, token: Credential) -> AdminClient<Authorised> {
        AdminClient::with_interceptor(channel, token)
    }
}
