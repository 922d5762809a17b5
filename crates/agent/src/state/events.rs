//! The event log (`events`).

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use crate::events::Event;

/// Stores an event.
pub fn insert_event(c: &Connection, event: &Event) -> rusqlite::Result<()> {
    c.prepare_cached("INSERT INTO events (at, code, severity, mailbox, text) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![event.at, event.id, event.severity.as_str(), event.mailbox, event.text])?;
    Ok(())
}

/// A stored event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRow {
    /// Row id (increasing).
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// Catalogue id.
    pub id: u16,
    /// Severity name.
    pub severity: String,
    /// Mailbox concerned.
    pub mailbox: Option<String>,
    /// Text.
    pub text: String,
}

fn event_from(row: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        seq: row.get(0)?,
        at: row.get(1)?,
        id: row.get(2)?,
        severity: row.get(3)?,
        mailbox: row.get(4)?,
        text: row.get(5)?,
    })
}

/// The newest events first, at most `limit`, optionally since a time, for
/// one id.
pub fn events(c: &Connection, since: i64, id: Option<u16>, limit: u32) -> rusqlite::Result<Vec<EventRow>> {
    let mut statement = c.prepare_cached(
        "SELECT id, at, code, severity, mailbox, text FROM events
         WHERE at >= ?1 AND (?2 IS NULL OR code = ?2) ORDER BY id DESC LIMIT ?3",
    )?;
    statement.query_map(params![since, id, limit], event_from)?.collect()
}

/// Which events to list.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// Only this catalogue id.
    pub id: Option<u16>,
    /// Only events at least this severe.
    pub min_severity: Option<crate::events::Severity>,
    /// From (Unix seconds).
    pub since: Option<i64>,
    /// Before (Unix seconds).
    pub until: Option<i64>,
    /// Only for this mailbox.
    pub mailbox: Option<String>,
    /// Only rows older than this row id (paging back).
    pub before_seq: Option<i64>,
}

/// The newest events matching `filter` first, at most `limit`. Only the
/// conditions given are in the statement, so that SQLite can walk the
/// index of the id or mailbox asked for instead of the whole log.
pub fn events_filtered(c: &Connection, filter: &EventFilter, limit: u32) -> rusqlite::Result<Vec<EventRow>> {
    use crate::events::Severity;
    use rusqlite::types::Value;
    let mut conditions: Vec<&str> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let mut add = |condition: &'static str, value: Value| {
        conditions.push(condition);
        values.push(value);
    };
    if let Some(id) = filter.id {
        add("code = ?", Value::Integer(id.into()));
    }
    if let Some(since) = filter.since {
        add("at >= ?", Value::Integer(since));
    }
    if let Some(until) = filter.until {
        add("at < ?", Value::Integer(until));
    }
    if let Some(mailbox) = &filter.mailbox {
        add("mailbox = ?", Value::Text(mailbox.clone()));
    }
    if let Some(seq) = filter.before_seq {
        add("id < ?", Value::Integer(seq));
    }
    if let Some(min) = filter.min_severity.filter(|min| *min > Severity::Info) {
        let severities: Vec<&str> = [Severity::Notice, Severity::Warning, Severity::Error, Severity::Critical]
            .into_iter()
            .filter(|s| *s >= min)
            .map(Severity::as_str)
            .collect();
        add(
            "severity IN (SELECT value FROM json_each(?))",
            Value::Text(serde_json::to_string(&severities).unwrap_or_default()),
        );
    }
    let mut sql = String::from("SELECT id, at, code, severity, mailbox, text FROM events");
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    values.push(Value::Integer(limit.into()));
    let mut statement = c.prepare_cached(&sql)?;
    statement.query_map(rusqlite::params_from_iter(values), event_from)?.collect()
}
