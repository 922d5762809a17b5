//! The network's records: entries (reported messages), reports, reporters,
//! organisations, and the index keys that find entries.
//!
//! Records are small serde structs stored with postcard. Every record lives
//! under one key, and the reports of an entry under keys sharing the entry's
//! prefix, so a Redis Cluster backend can keep each in one hash slot.

use serde::{Deserialize, Serialize};
use starling_fingerprint::{Digest, MinHash, SLOTS};
use starling_proto::Submitted;
/// The index keys live in `starling-proto`, so that agents compute the same
/// bytes the node announces in `Changes`.
pub use starling_proto::{IndexKey, index_keys};

/// Unix seconds.
pub type Timestamp = i64;

/// The current time in unix seconds.
pub fn now() -> Timestamp {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Identifies an entry: derived from its fingerprints so that the same
/// message reported twice lands on the same entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntryId(pub [u8; 16]);

impl EntryId {
    /// The id of a fingerprint set: its text digest, else a digest of its
    /// signature, else of its first attachment, URL or domain.
    pub fn of(set: &Submitted) -> Option<EntryId> {
        if let Some(text) = set.text {
            return Some(EntryId(text.0));
        }
        if let Some(fuzzy) = &set.fuzzy {
            let bytes: Vec<u8> = fuzzy.slots.iter().flat_map(|s| s.to_le_bytes()).collect();
            return Some(EntryId(truncate(blake3::hash(&bytes).as_bytes())));
        }
        let first = set.attachments.first().or(set.urls.first()).or(set.domains.first())?;
        Some(EntryId(truncate(blake3::hash(&first.0).as_bytes())))
    }
}

fn truncate(hash: &[u8; 32]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&hash[..16]);
    out
}

/// What a report says about a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Class {
    /// Spam.
    Spam,
    /// Phishing (counts as spam, and is reported as phishing when it dominates).
    Phish,
    /// Not spam.
    Ham,
}

/// A reported message: its fingerprints and bookkeeping. The reports about it
/// are stored separately, one per reporter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The text digest.
    pub text: Option<Digest>,
    /// The min-hash slots as little-endian bytes (exactly 4 × [`SLOTS`] when
    /// present): postcard would spend five bytes on most random `u32`s.
    pub slots: Vec<u8>,
    /// Distinct shingles behind the slots.
    pub shingles: u32,
    /// Attachment digests.
    pub attachments: Vec<Digest>,
    /// URL digests (evidence only).
    pub urls: Vec<Digest>,
    /// Domain digests (evidence only).
    pub domains: Vec<Digest>,
    /// First report.
    pub first_seen: Timestamp,
    /// Latest report.
    pub last_seen: Timestamp,
    /// Consensus that has already been credited to its reporters.
    pub credited: Credited,
}

/// Which consensus of an entry was credited to its reporters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credited {
    /// Spam or phishing consensus.
    pub bad: bool,
    /// Not-spam consensus.
    pub ham: bool,
}

impl Entry {
    /// A new entry for a fingerprint set.
    pub fn new(set: &Submitted, at: Timestamp) -> Entry {
        Entry {
            text: set.text,
            slots: set
                .fuzzy
                .as_ref()
                .map(|f| f.slots.iter().flat_map(|s| s.to_le_bytes()).collect())
                .unwrap_or_default(),
            shingles: set.fuzzy.as_ref().map_or(0, |f| f.shingles),
            attachments: set.attachments.clone(),
            urls: set.urls.clone(),
            domains: set.domains.clone(),
            first_seen: at,
            last_seen: at,
            credited: Credited::default(),
        }
    }

    /// The min-hash signature, if any.
    pub fn fuzzy(&self) -> Option<MinHash> {
        if self.slots.len() != SLOTS * 4 {
            return None;
        }
        let mut slots = [0u32; SLOTS];
        for (slot, bytes) in slots.iter_mut().zip(self.slots.chunks_exact(4)) {
            *slot = u32::from_le_bytes(bytes.try_into().expect("4 bytes"));
        }
        Some(MinHash { slots, shingles: self.shingles })
    }

    /// The index keys this entry is found by.
    pub fn index_keys(&self) -> Vec<IndexKey> {
        let set = Submitted {
            version: 0,
            text: self.text,
            fuzzy: self.fuzzy(),
            urls: Vec::new(),
            domains: Vec::new(),
            attachments: self.attachments.clone(),
        };
        index_keys(&set)
    }
}

/// Identifies a reporter: a hash of the organisation and the pseudonym the
/// agent sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReporterId(pub [u8; 16]);

impl ReporterId {
    /// The reporter of `pseudonym` in organisation `org`.
    pub fn new(org: u32, pseudonym: &str) -> ReporterId {
        let mut hasher = blake3::Hasher::new_derive_key("starling network reporter id v1");
        hasher.update(&org.to_le_bytes());
        hasher.update(pseudonym.as_bytes());
        ReporterId(truncate(hasher.finalize().as_bytes()))
    }

    /// A short printable form.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

/// One reporter's current report about an entry.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportRecord {
    /// The reporter's organisation.
    pub org: u32,
    /// What they said.
    pub class: Class,
    /// When.
    pub at: Timestamp,
}

/// What the network knows about a reporter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reporter {
    /// Their organisation.
    pub org: u32,
    /// Reports made.
    pub reports: u32,
    /// Reports that consensus later confirmed, made before it formed.
    pub confirmed: u32,
    /// Reports that consensus contradicted.
    pub contradicted: u32,
    /// First report.
    pub first_seen: Timestamp,
}

/// An organisation's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// May use the network.
    Active,
    /// Refused by the operator.
    Disabled,
}

/// How an organisation uses the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Plan {
    /// A trial; expires.
    Trial,
    /// A subscription; may expire.
    Subscription,
    /// An automated feed (spam trap): its reporters carry feed trust.
    Feed,
}

/// What the node keeps of an organisation's activation codes, in the
/// store's metadata under [`ActivationRecord::key`] (a record of its own, so
/// organisations stored before activation codes existed read unchanged).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationRecord {
    /// The newest code's serial (0: none issued).
    pub serial: u64,
    /// The newest code ("" after a revocation).
    pub code: String,
    /// Codes with this serial or lower are revoked.
    pub revoked_through: u64,
    /// Mailboxes allowed (0: no limit).
    pub max_mailboxes: u32,
    /// Where to buy or renew.
    pub purchase_url: String,
}

impl ActivationRecord {
    /// Its metadata key.
    pub fn key(org: u32) -> String {
        format!("activation/{org}")
    }
}

/// A tenant of the network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Organisation {
    /// Numeric id.
    pub id: u32,
    /// Unique name.
    pub name: String,
    /// Active or disabled.
    pub status: Status,
    /// Trial, subscription or feed.
    pub plan: Plan,
    /// Unix seconds; 0 = never.
    pub expires_at: Timestamp,
    /// When it was created.
    pub created_at: Timestamp,
    /// BLAKE3 of its credential.
    pub credential_hash: [u8; 32],
}

impl Organisation {
    /// Whether the subscription has expired at `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        self.expires_at != 0 && now >= self.expires_at
    }
}
