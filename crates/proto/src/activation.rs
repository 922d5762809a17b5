//! Activation codes: what a network operator gives an organisation for a
//! trial or a subscription, and what its agent verifies offline.
//!
//! A code is a compact, copy-pasteable text, `STARLING1-` followed by the
//! URL-safe base64 (no padding) of a payload and its Ed25519 signature.
//! Whitespace inside a code is ignored, so a code wrapped by a mail client
//! still reads. The payload, big-endian:
//!
//! | bytes | field |
//! | --- | --- |
//! | 1 | format version, 1 |
//! | 8 | serial: increases with every code an organisation is issued |
//! | 8 | issued at (Unix seconds) |
//! | 8 | expires at (Unix seconds; 0: never) |
//! | 4 | organisation id |
//! | 4 | mailboxes allowed (0: no limit) |
//! | 1 | plan: 1 trial, 2 subscription |
//! | 1 + n | organisation name (1–64 bytes of UTF-8) |
//! | 2 + n | purchase URL (0–512 bytes of UTF-8) |
//!
//! then 64 bytes of Ed25519 signature over `starling-activation-v1\0`
//! followed by the payload. The domain prefix keeps a signature over a code
//! from meaning anything else the key might ever sign.
//!
//! Design decision: Ed25519 from `ring` (already in the dependency tree
//! through rustls) over a fixed binary layout, not a JWT: there is exactly
//! one algorithm, so there is nothing to negotiate and no `alg: none` to
//! refuse, and the code stays under 200 characters. The format is
//! versioned by its prefix and first byte.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// What every code starts with.
pub const PREFIX: &str = "STARLING1-";

/// The longest code read, in characters (whitespace included); longer text
/// is refused before it is decoded.
pub const MAX_CODE_CHARS: usize = 4096;

/// The longest organisation name in a code, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// The longest purchase URL in a code, in bytes.
pub const MAX_URL_BYTES: usize = 512;

const VERSION: u8 = 1;
const DOMAIN: &[u8] = b"starling-activation-v1\0";
const SIGNATURE_BYTES: usize = 64;
const FIXED_BYTES: usize = 1 + 8 + 8 + 8 + 4 + 4 + 1;

/// What a code grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodePlan {
    /// A trial.
    Trial,
    /// A subscription.
    Subscription,
}

impl CodePlan {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            CodePlan::Trial => "trial",
            CodePlan::Subscription => "subscription",
        }
    }
}

/// What a code says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// Increases with every code issued to the organisation; a code with a
    /// higher serial replaces one with a lower.
    pub serial: u64,
    /// When it was issued (Unix seconds).
    pub issued_at: i64,
    /// When it expires (Unix seconds; 0: never).
    pub expires_at: i64,
    /// The organisation's id on the network.
    pub organisation_id: u32,
    /// The organisation's name on the network.
    pub organisation: String,
    /// Trial or subscription.
    pub plan: CodePlan,
    /// Mailboxes that may be filtered (0: no limit).
    pub max_mailboxes: u32,
    /// Where to buy or renew ("" when the operator gave none).
    pub purchase_url: String,
}

impl Claims {
    /// Whether the code has expired at `now` (Unix seconds).
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at != 0 && now >= self.expires_at
    }

    /// Checks that a verified code is for `organisation` and has not expired
    /// at `now`.
    pub fn check(&self, organisation: &str, now: i64) -> Result<(), CodeError> {
        if self.organisation != organisation {
            return Err(CodeError::WrongOrganisation {
                code_for: self.organisation.clone(),
                this: organisation.to_owned(),
            });
        }
        if self.expired(now) {
            return Err(CodeError::Expired { at: self.expires_at });
        }
        Ok(())
    }

    /// The signed payload (the layout above).
    pub fn to_payload(&self) -> Result<Vec<u8>, CodeError> {
        let name = self.organisation.as_bytes();
        let url = self.purchase_url.as_bytes();
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(CodeError::Malformed("the organisation name must have 1 to 64 bytes"));
        }
        if url.len() > MAX_URL_BYTES {
            return Err(CodeError::Malformed("the purchase URL is longer than 512 bytes"));
        }
        let mut out = Vec::with_capacity(FIXED_BYTES + 3 + name.len() + url.len());
        out.push(VERSION);
        out.extend_from_slice(&self.serial.to_be_bytes());
        out.extend_from_slice(&self.issued_at.to_be_bytes());
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        out.extend_from_slice(&self.organisation_id.to_be_bytes());
        out.extend_from_slice(&self.max_mailboxes.to_be_bytes());
        out.push(match self.plan {
            CodePlan::Trial => 1,
            CodePlan::Subscription => 2,
        });
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.extend_from_slice(&(url.len() as u16).to_be_bytes());
        out.extend_from_slice(url);
        Ok(out)
    }

    /// Reads a payload. Only [`verify`] should call this on untrusted
    /// text (after the signature); it is public for the fuzz target.
    pub fn from_payload(payload: &[u8]) -> Result<Claims, CodeError> {
        let mut r = Cursor(payload);
        if r.take(1)?[0] != VERSION {
            return Err(CodeError::Malformed("a code of a newer format: upgrade the agent"));
        }
        let serial = u64::from_be_bytes(r.array()?);
        let issued_at = i64::from_be_bytes(r.array()?);
        let expires_at = i64::from_be_bytes(r.array()?);
        let organisation_id = u32::from_be_bytes(r.array()?);
        let max_mailboxes = u32::from_be_bytes(r.array()?);
        let plan = match r.take(1)?[0] {
            1 => CodePlan::Trial,
            2 => CodePlan::Subscription,
            _ => return Err(CodeError::Malformed("an unknown plan")),
        };
        let name_len = usize::from(r.take(1)?[0]);
        if name_len > MAX_NAME_BYTES {
            return Err(CodeError::Malformed("the organisation name is too long"));
        }
        let organisation = r.text(name_len)?;
        if organisation.is_empty() {
            return Err(CodeError::Malformed("no organisation name"));
        }
        let url_len = usize::from(u16::from_be_bytes(r.array()?));
        if url_len > MAX_URL_BYTES {
            return Err(CodeError::Malformed("the purchase URL is too long"));
        }
        let purchase_url = r.text(url_len)?;
        if !r.0.is_empty() {
            return Err(CodeError::Malformed("bytes after the payload"));
        }
        Ok(Claims { serial, issued_at, expires_at, organisation_id, organisation, plan, max_mailboxes, purchase_url })
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodeError> {
        if self.0.len() < n {
            return Err(CodeError::Malformed("the code is cut short"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn text(&mut self, n: usize) -> Result<String, CodeError> {
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CodeError::Malformed("text that is not UTF-8"))
    }
}

/// Why a code was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// Not a code at all, or damaged in copying.
    #[error("not a valid activation code ({0}); copy the whole code, starting with STARLING1-")]
    Malformed(&'static str),
    /// The signature does not match: forged, altered, or issued by another
    /// network.
    #[error(
        "the activation code's signature does not match this network's key: it was altered, or issued by another network"
    )]
    BadSignature,
    /// Issued for another organisation.
    #[error("the activation code is for organisation {code_for:?}, but this agent belongs to {this:?}")]
    WrongOrganisation {
        /// The code's organisation.
        code_for: String,
        /// This agent's organisation.
        this: String,
    },
    /// Past its expiry.
    #[error("the activation code expired at {}", timestamp(*at))]
    Expired {
        /// Its expiry (Unix seconds).
        at: i64,
    },
    /// Withdrawn by the operator.
    #[error("the network operator revoked this activation code")]
    Revoked,
}

fn timestamp(at: i64) -> String {
    jiff::Timestamp::from_second(at)
        .map_or_else(|_| format!("Unix time {at}"), |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
}

/// Reads a code and checks its signature with `public_key`. The caller
/// then checks the organisation and expiry ([`Claims::check`]).
pub fn verify(code: &str, public_key: &[u8; 32]) -> Result<Claims, CodeError> {
    if code.len() > MAX_CODE_CHARS {
        return Err(CodeError::Malformed("far too long"));
    }
    let compact: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let body = compact.strip_prefix(PREFIX).ok_or(CodeError::Malformed("it does not start with STARLING1-"))?;
    let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| CodeError::Malformed("characters outside base64url"))?;
    if bytes.len() < FIXED_BYTES + 3 + 1 + SIGNATURE_BYTES {
        return Err(CodeError::Malformed("the code is cut short"));
    }
    let (payload, signature) = bytes.split_at(bytes.len() - SIGNATURE_BYTES);
    let mut signed = Vec::with_capacity(DOMAIN.len() + payload.len());
    signed.extend_from_slice(DOMAIN);
    signed.extend_from_slice(payload);
    UnparsedPublicKey::new(&ED25519, public_key).verify(&signed, signature).map_err(|_| CodeError::BadSignature)?;
    Claims::from_payload(payload)
}

/// The operator's signing key.
pub struct Signer {
    key_pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", public_key_text(&self.public_key()))
    }
}

impl Signer {
    /// A new key; also answers its PKCS#8 document, to be stored.
    pub fn generate() -> Result<(Signer, Vec<u8>), CodeError> {
        let rng = ring::rand::SystemRandom::new();
        let document =
            Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| CodeError::Malformed("no random source for a key"))?;
        let signer = Signer::from_pkcs8(document.as_ref())?;
        Ok((signer, document.as_ref().to_vec()))
    }

    /// A key from its PKCS#8 document.
    pub fn from_pkcs8(document: &[u8]) -> Result<Signer, CodeError> {
        let key_pair =
            Ed25519KeyPair::from_pkcs8(document).map_err(|_| CodeError::Malformed("not an Ed25519 PKCS#8 key"))?;
        Ok(Signer { key_pair })
    }

    /// The public key agents verify codes with.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.key_pair.public_key().as_ref());
        out
    }

    /// A code for `claims`.
    pub fn issue(&self, claims: &Claims) -> Result<String, CodeError> {
        let payload = claims.to_payload()?;
        let mut signed = Vec::with_capacity(DOMAIN.len() + payload.len());
        signed.extend_from_slice(DOMAIN);
        signed.extend_from_slice(&payload);
        let signature = self.key_pair.sign(&signed);
        let mut bytes = payload;
        bytes.extend_from_slice(signature.as_ref());
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }
}

/// A public key as written in configuration and shown to operators: 64
/// hexadecimal digits.
pub fn public_key_text(key: &[u8; 32]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a public key written by [`public_key_text`].
pub fn parse_public_key(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            serial: 1_765_000_000_123,
            issued_at: 1_765_000_000,
            expires_at: 1_767_000_000,
            organisation_id: 7,
            organisation: "example-org".into(),
            plan: CodePlan::Trial,
            max_mailboxes: 25,
            purchase_url: "https://shop.example/renew".into(),
        }
    }

    #[test]
    fn a_code_round_trips_and_is_compact() {
        let (signer, document) = Signer::generate().unwrap();
        let code = signer.issue(&claims()).unwrap();
        assert!(code.starts_with(PREFIX) && code.len() < 200, "{} chars: {code}", code.len());
        assert_eq!(verify(&code, &signer.public_key()).unwrap(), claims());
        let again = Signer::from_pkcs8(&document).unwrap();
        assert_eq!(again.public_key(), signer.public_key());
        // Wrapped by a mail client, with spaces and line breaks.
        let wrapped: String =
            code.chars().enumerate().flat_map(|(i, c)| (i % 40 == 39).then_some('\n').into_iter().chain([c])).collect();
        assert_eq!(verify(&format!("  {wrapped}\r\n"), &signer.public_key()).unwrap(), claims());
    }

    #[test]
    fn forged_altered_and_foreign_codes_are_refused() {
        let (signer, _) = Signer::generate().unwrap();
        let (other, _) = Signer::generate().unwrap();
        let code = signer.issue(&claims()).unwrap();
        assert_eq!(verify(&code, &other.public_key()), Err(CodeError::BadSignature));
        // Every single-character change is refused.
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for i in PREFIX.len()..code.len() {
            let original = code.as_bytes()[i] as char;
            let replacement = alphabet.chars().find(|&c| c != original).unwrap();
            let mut altered = code.clone();
            altered.replace_range(i..=i, &replacement.to_string());
            assert!(verify(&altered, &signer.public_key()).is_err(), "position {i}");
        }
        // Longer expiry, same signature.
        let mut longer = claims();
        longer.expires_at = 0;
        let forged_payload = longer.to_payload().unwrap();
        let genuine = URL_SAFE_NO_PAD.decode(&code[PREFIX.len()..]).unwrap();
        let mut forged = forged_payload;
        forged.extend_from_slice(&genuine[genuine.len() - SIGNATURE_BYTES..]);
        let forged = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(forged));
        assert_eq!(verify(&forged, &signer.public_key()), Err(CodeError::BadSignature));
    }

    #[test]
    fn organisation_and_expiry_are_checked() {
        let c = claims();
        assert_eq!(c.check("example-org", c.expires_at - 1), Ok(()));
        assert!(matches!(c.check("other-org", 0), Err(CodeError::WrongOrganisation { .. })));
        assert_eq!(c.check("example-org", c.expires_at), Err(CodeError::Expired { at: c.expires_at }));
        let never = Claims { expires_at: 0, ..c };
        assert_eq!(never.check("example-org", i64::MAX), Ok(()));
        let message = CodeError::Expired { at: 1_767_000_000 }.to_string();
        assert!(message.contains("2025-12-29"), "{message}");
    }

    #[test]
    fn garbage_is_refused_cheaply() {
        let (signer, _) = Signer::generate().unwrap();
        let key = signer.public_key();
        for text in ["", "STARLING1-", "STARLING1-!!!!", "starling1-AAAA", "STARLING2-AAAA", &"A".repeat(10_000)] {
            assert!(matches!(verify(text, &key), Err(CodeError::Malformed(_))), "{text:.20}");
        }
        let long_name = Claims { organisation: "x".repeat(65), ..claims() };
        assert!(signer.issue(&long_name).is_err());
    }

    #[test]
    fn public_keys_read_back() {
        let (signer, _) = Signer::generate().unwrap();
        let text = public_key_text(&signer.public_key());
        assert_eq!(parse_public_key(&text), Some(signer.public_key()));
        assert_eq!(parse_public_key("zz"), None);
        assert_eq!(parse_public_key(&"é".repeat(32)), None);
    }
}
