//! Key-value metadata of the agent (`meta`) and SQLite's data version.

use rusqlite::{Connection, OptionalExtension};

/// A value of the `meta` table.
pub fn meta_get(c: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| row.get(0)).optional()
}

/// Sets a value of the `meta` table.
pub fn meta_set(c: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
        [key, value],
    )?;
    Ok(())
}

/// A counter that changes whenever another connection (the CLI, the
/// console) commits: the agent polls it to pick up settings changes.
pub fn data_version(c: &Connection) -> rusqlite::Result<i64> {
    c.pragma_query_value(None, "data_version", |row| row.get(0))
}
