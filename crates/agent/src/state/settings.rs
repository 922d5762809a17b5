//! Settings changed while running (`settings`).

use std::collections::BTreeMap;

use rusqlite::{Connection, params};

use super::now;

/// The stored settings (key → JSON value).
pub fn settings(c: &Connection) -> rusqlite::Result<BTreeMap<String, serde_json::Value>> {
    let mut statement = c.prepare_cached("SELECT key, value FROM settings ORDER BY key")?;
    let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (key, text) = row?;
        out.insert(key, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)));
    }
    Ok(out)
}

/// Stores a setting (`None`: back to the configuration file's value).
pub fn setting_put(c: &Connection, key: &str, value: Option<&serde_json::Value>, by: &str) -> rusqlite::Result<()> {
    match value {
        Some(value) => c.execute(
            "INSERT INTO settings (key, value, updated, updated_by) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (key) DO UPDATE SET value = ?2, updated = ?3, updated_by = ?4",
            params![key, value.to_string(), now(), by],
        )?,
        None => c.execute("DELETE FROM settings WHERE key = ?1", [key])?,
    };
    Ok(())
}
