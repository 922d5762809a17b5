//! Who is asking: administrator accounts (argon2id password hashes), browser
//! sessions (a random cookie, stored hashed, with its CSRF token) and API
//! tokens for scripts (random, stored hashed). Two roles: `admin` may change
//! things, `read-only` may look.
//!
//! Every route but the login page, the login call and the health check
//! passes [`require`]: a valid session cookie or `Authorization: Bearer`
//! token, a CSRF token on anything a cookie-authenticated browser changes
//! (form field `csrf` or header `X-CSRF-Token`), and the admin role for
//! every change.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::App;

/// The session cookie's name.
pub const COOKIE: &str = "starling_session";

/// An account's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// May change everything.
    Admin,
    /// May look at everything, change nothing.
    ReadOnly,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ReadOnly => "read-only",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "read-only" => Some(Role::ReadOnly),
            _ => None,
        }
    }
}

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Account id.
    pub id: i64,
    /// Account name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The session's CSRF token (browser sessions only).
    pub csrf: Option<String>,
}

/// The console's own tables: accounts, their API tokens and browser
/// sessions. They live in the agent's state database (one file to back
/// up) but are the console's: it creates them when it opens the
/// database, and the agent never reads them.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS admins (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password TEXT NOT NULL,
    role TEXT NOT NULL,
    created INTEGER NOT NULL,
    last_login INTEGER
);

CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY,
    admin INTEGER NOT NULL REFERENCES admins (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    hash BLOB NOT NULL UNIQUE,
    created INTEGER NOT NULL,
    last_used INTEGER
);

CREATE TABLE IF NOT EXISTS sessions (
    hash BLOB PRIMARY KEY,
    admin INTEGER NOT NULL REFERENCES admins (id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL
) WITHOUT ROWID;
"#;

/// Creates the console's tables when they are missing (databases made
/// before the console owned them already have them, the same).
pub fn create_tables(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(SCHEMA)
}

/// A new random secret: 32 bytes, URL-safe base64.
pub fn random_secret() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the system's random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A readable random password (20 characters, no look-alikes).
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).expect("the system's random source");
    bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
}

/// Hashes a password (Argon2id, the crate's OWASP defaults, a random salt).
pub fn hash_password(password: &str) -> String {
    argon2::Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).unwrap_or_default()
}

/// Checks a password against a stored hash.
pub fn verify_password(password: &str, stored: &str) -> bool {
    let Ok(hash) = argon2::password_hash::phc::PasswordHash::new(stored) else { return false };
    argon2::Argon2::default().verify_password(password.as_bytes(), &hash).is_ok()
}

/// What is stored of a secret: its BLAKE3 hash (secrets are random, so a
/// fast hash is enough).
fn digest(secret: &str) -> Vec<u8> {
    blake3::hash(secret.as_bytes()).as_bytes().to_vec()
}

/// Checks a new password's length.
pub fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < 10 {
        return Err("a password needs at least 10 characters".into());
    }
    if password.len() > 1024 {
        return Err("a password may have at most 1024 bytes".into());
    }
    Ok(())
}

/// Checks an account name.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_alphanumeric() || "._@-".contains(c)) {
        return Err("an account name has 1 to 64 letters, digits, '.', '_', '@' or '-'".into());
    }
    Ok(())
}

/// An account as listed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Account {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Created (Unix seconds).
    pub created: i64,
    /// Last login (Unix seconds).
    pub last_login: Option<i64>,
}

/// Every account.
pub fn accounts(c: &Connection) -> rusqlite::Result<Vec<Account>> {
    let mut statement = c.prepare_cached("SELECT id, name, role, created, last_login FROM admins ORDER BY name")?;
    statement
        .query_map([], |row| {
            Ok(Account {
                id: row.get(0)?,
                name: row.get(1)?,
                role: Role::parse(&row.get::<_, String>(2)?).unwrap_or(Role::ReadOnly),
                created: row.get(3)?,
                last_login: row.get(4)?,
            })
        })?
        .collect()
}

/// Creates an account; false when the name is taken.
pub fn create_account(c: &Connection, name: &str, password_hash: &str, role: Role) -> rusqlite::Result<bool> {
    Ok(c.execute(
        "INSERT INTO admins (name, password, role, created) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        params![name, password_hash, role.as_str(), now()],
    )? > 0)
}

/// Why an account cannot be removed or demoted.
#[derive(Debug, PartialEq, Eq)]
pub enum AccountChange {
    /// Done.
    Done,
    /// There is no such account.
    Unknown,
    /// It is the last administrator with the admin role.
    LastAdmin,
}

fn admins_besides(c: &Connection, name: &str) -> rusqlite::Result<i64> {
    c.query_row("SELECT count(*) FROM admins WHERE role = 'admin' AND name <> ?1", [name], |row| row.get(0))
}

/// Removes an account (its sessions and tokens go with it), unless it is
/// the last administrator.
pub fn remove_account(c: &Connection, name: &str) -> rusqlite::Result<AccountChange> {
    let Some((_, role, _)) = account_secret(c, name)? else { return Ok(AccountChange::Unknown) };
    if role == Role::Admin && admins_besides(c, name)? == 0 {
        return Ok(AccountChange::LastAdmin);
    }
    c.execute("DELETE FROM admins WHERE name = ?1", [name])?;
    Ok(AccountChange::Done)
}

/// Sets an account's role, unless that demotes the last administrator.
pub fn set_role(c: &Connection, name: &str, role: Role) -> rusqlite::Result<AccountChange> {
    let Some((_, current, _)) = account_secret(c, name)? else { return Ok(AccountChange::Unknown) };
    if current == Role::Admin && role != Role::Admin && admins_besides(c, name)? == 0 {
        return Ok(AccountChange::LastAdmin);
    }
    c.execute("UPDATE admins SET role = ?2 WHERE name = ?1", params![name, role.as_str()])?;
    Ok(AccountChange::Done)
}

/// The id, role and password hash of an account.
pub fn account_secret(c: &Connection, name: &str) -> rusqlite::Result<Option<(i64, Role, String)>> {
    c.query_row("SELECT id, role, password FROM admins WHERE name = ?1", [name], |row| {
        Ok((row.get(0)?, Role::parse(&row.get::<_, String>(1)?).unwrap_or(Role::ReadOnly), row.get(2)?))
    })
    .optional()
}

/// Starts a browser session: (cookie value, CSRF token).
pub fn create_session(c: &Connection, account: i64, hours: u32) -> rusqlite::Result<(String, String)> {
    let (secret, csrf) = (random_secret(), random_secret());
    let now = now();
    c.execute("DELETE FROM sessions WHERE expires < ?1", [now])?;
    c.execute(
        "INSERT INTO sessions (hash, admin, csrf, created, expires) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![digest(&secret), account, csrf, now, now + i64::from(hours) * 3600],
    )?;
    c.execute("UPDATE admins SET last_login = ?2 WHERE id = ?1", params![account, now])?;
    Ok((secret, csrf))
}

/// Ends a browser session.
pub fn end_session(c: &Connection, secret: &str) -> rusqlite::Result<()> {
    c.execute("DELETE FROM sessions WHERE hash = ?1", [digest(secret)])?;
    Ok(())
}

/// Creates an API token for an account; returns (id, the token — shown
/// once, stored only hashed).
pub fn create_token(c: &Connection, account: i64, name: &str) -> rusqlite::Result<(i64, String)> {
    let token = format!("stl_{}", random_secret());
    c.execute(
        "INSERT INTO api_tokens (admin, name, hash, created) VALUES (?1, ?2, ?3, ?4)",
        params![account, name, digest(&token), now()],
    )?;
    Ok((c.last_insert_rowid(), token))
}

/// Revokes a token; false when there is none with this id.
pub fn remove_token(c: &Connection, id: i64) -> rusqlite::Result<bool> {
    Ok(c.execute("DELETE FROM api_tokens WHERE id = ?1", [id])? > 0)
}

/// A token as listed (never the token itself).
#[derive(Clone, Debug, Serialize)]
pub struct TokenRow {
    /// Id.
    pub id: i64,
    /// Its account.
    pub account: String,
    /// Its name.
    pub name: String,
    /// Created (Unix seconds).
    pub created: i64,
    /// Last used, to the hour (Unix seconds).
    pub last_used: Option<i64>,
}

/// Every API token.
pub fn tokens(c: &Connection) -> rusqlite::Result<Vec<TokenRow>> {
    let mut statement = c.prepare_cached(
        "SELECT t.id, a.name, t.name, t.created, t.last_used FROM api_tokens t JOIN admins a ON a.id = t.admin
         ORDER BY t.id",
    )?;
    statement
        .query_map([], |row| {
            Ok(TokenRow {
                id: row.get(0)?,
                account: row.get(1)?,
                name: row.get(2)?,
                created: row.get(3)?,
                last_used: row.get(4)?,
            })
        })?
        .collect()
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The caller behind a session cookie or a bearer token, if valid.
pub fn identify(c: &Connection, session: Option<&str>, bearer: Option<&str>) -> rusqlite::Result<Option<Caller>> {
    let now = now();
    if let Some(token) = bearer {
        let found = c
            .query_row(
                "SELECT a.id, a.name, a.role, t.id, t.last_used FROM api_tokens t JOIN admins a ON a.id = t.admin
                 WHERE t.hash = ?1",
                [digest(token)],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, i64>(3)?,
                        row.get::<_, Option<i64>>(4)?,
                    ))
                },
            )
            .optional()?;
        return Ok(found.map(|(id, name, role, token_id, last_used)| {
            // To the hour: a write per call would wake the agent's
            // settings poll for nothing.
            if last_used.is_none_or(|t| now - t >= 3600) {
                let _ = c.execute("UPDATE api_tokens SET last_used = ?2 WHERE id = ?1", params![token_id, now]);
            }
            Caller { id, name, role: Role::parse(&role).unwrap_or(Role::ReadOnly), csrf: None }
        }));
    }
    let Some(secret) = session else { return Ok(None) };
    c.query_row(
        "SELECT a.id, a.name, a.role, s.csrf FROM sessions s JOIN admins a ON a.id = s.admin
         WHERE s.hash = ?1 AND s.expires > ?2",
        params![digest(secret), now],
        |row| {
            Ok(Caller {
                id: row.get(0)?,
                name: row.get(1)?,
                role: Role::parse(&row.get::<_, String>(2)?).unwrap_or(Role::ReadOnly),
                csrf: Some(row.get(3)?),
            })
        },
    )
    .optional()
}

/// A cookie's value from the request headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// Whether a request changes something.
pub fn is_change(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Routes anyone may call.
pub fn is_public(path: &str) -> bool {
    matches!(path, "/login" | "/health" | "/api/v1/health" | "/api/v1/login")
}

/// The authentication and authorisation layer.
pub async fn require(AxumState(app): AxumState<App>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if is_public(&path) {
        return next.run(request).await;
    }
    let api = path.starts_with("/api/") || path == "/metrics";
    let headers = request.headers();
    let session = cookie(headers, COOKIE).map(str::to_owned);
    let token = bearer(headers).map(str::to_owned);
    let had_credentials = session.is_some() || token.is_some();
    let caller = app.db(move |c| identify(c, session.as_deref(), token.as_deref())).await.ok().flatten();
    let Some(caller) = caller else {
        if had_credentials {
            app.events().emit(
                starling_agent::events::LOGIN_FAILED,
                None,
                format!("expired or unknown credentials for {path}"),
            );
        }
        return if api {
            crate::error::error(
                StatusCode::UNAUTHORIZED,
                "authentication required: log in, or send `Authorization: Bearer <token>`",
            )
        } else {
            let next = urlencode(&path);
            Redirect::to(&format!("/login?next={next}")).into_response()
        };
    };
    if is_change(request.method()) && path != "/logout" {
        if let Some(expected) = caller.csrf.clone() {
            // A browser session: the change must carry the session's CSRF
            // token — header `X-CSRF-Token`, query `csrf`, or form field
            // `csrf`.
            let (ok, rebuilt) = carries_csrf(request, &expected).await;
            request = rebuilt;
            if !ok {
                return crate::error::error(StatusCode::FORBIDDEN, "missing or wrong CSRF token (X-CSRF-Token)");
            }
        }
        if caller.role != Role::Admin {
            return crate::error::error(StatusCode::FORBIDDEN, "this account is read-only");
        }
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Largest form body the CSRF check reads.
const FORM_LIMIT: usize = 16 << 20;

/// Whether a request carries the CSRF token; the request is rebuilt when
/// its body had to be read.
async fn carries_csrf(request: Request, expected: &str) -> (bool, Request) {
    let header_token = request.headers().get("x-csrf-token").and_then(|v| v.to_str().ok());
    if header_token == Some(expected) {
        return (true, request);
    }
    let query = request.uri().query().unwrap_or("");
    if form_field(query.as_bytes(), "csrf").as_deref() == Some(expected) {
        return (true, request);
    }
    let form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return (false, request);
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, FORM_LIMIT).await else {
        return (false, Request::from_parts(parts, axum::body::Body::empty()));
    };
    let ok = form_field(&bytes, "csrf").as_deref() == Some(expected);
    (ok, Request::from_parts(parts, axum::body::Body::from(bytes)))
}

/// A field of a URL-encoded form or query.
pub fn form_field(bytes: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Percent-encodes a path for a query value.
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_makes_its_own_tables_and_the_agent_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let c = starling_agent::state::open(&dir.path().join(starling_agent::state::FILE_NAME)).unwrap();
        let tables = |c: &Connection| -> Vec<String> {
            c.prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('admins', 'api_tokens', 'sessions')",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
        };
        assert!(tables(&c).is_empty(), "the agent's schema has none of the console's tables");
        create_tables(&c).unwrap();
        create_tables(&c).unwrap();
        assert_eq!(tables(&c), ["admins", "api_tokens", "sessions"]);
        assert!(create_account(&c, "admin", &hash_password("x"), Role::Admin).unwrap());
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse battery");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=1; starling_session=abc; b=2".parse().expect("header"));
        assert_eq!(cookie(&headers, COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn names_and_passwords_are_checked() {
        assert!(check_name("admin").is_ok());
        assert!(check_name("a b").is_err());
        assert!(check_password("short").is_err());
        assert!(check_password("long enough password").is_ok());
        assert_eq!(random_password().len(), 20);
    }
}
