//! The agent's state: one SQLite database (`state.sqlite3` in `state_dir`).
//!
//! Mailboxes and their settings, whitelist entries, cursors (where each
//! mailbox was read up to), the messages the agent filed, users' feedback
//! (and the reports still to send), hourly counters, events, the re-check
//! queue, rescans and the journal of actions in progress.
//!
//! One thread owns the writing connection and runs every statement the
//! running agent issues, in order ([`State::call`]); the CLI opens its own
//! connection ([`open`]). WAL mode lets readers work beside the writer.
//! `synchronous = NORMAL`: a power loss may forget the last moments of
//! counters and events, never corrupt the file; mail safety never depends on
//! this database (see the journal).

/// An enum stored as text: its names (`as_str`, `Display`), `ToSql`, and
/// `FromSql` refusing an unknown name with `what` in the error.
macro_rules! stored_as_text {
    ($type:ident, $what:literal, { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $type {
            /// Its name, as stored and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($type::$variant => $name,)*
                }
            }
        }

        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl rusqlite::types::ToSql for $type {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl rusqlite::types::FromSql for $type {
            fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                match value.as_str()? {
                    $($name => Ok($type::$variant),)*
                    text => Err(rusqlite::types::FromSqlError::Other(format!("unknown {} {text:?}", $what).into())),
                }
            }
        }
    };
}

use stored_as_text;

mod connection;
mod cursors;
mod events;
mod feedback;
mod filed;
mod journal;
mod mailboxes;
mod meta;
mod migrations;
mod outcomes;
mod recheck;
mod rescans;
mod settings;
mod whitelist;

pub use connection::{State, StateError, open};
pub use cursors::*;
pub use events::*;
pub use feedback::*;
pub use filed::*;
pub use journal::*;
pub use mailboxes::*;
pub use meta::*;
pub use outcomes::*;
pub use recheck::*;
pub use rescans::*;
pub use settings::*;
pub use whitelist::*;

/// The database file's name in `state_dir`.
pub const FILE_NAME: &str = "state.sqlite3";

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rusqlite::Connection;

    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let c = open(&dir.path().join(FILE_NAME)).unwrap();
        (dir, c)
    }

    #[test]
    fn mailboxes_sync_adds_and_marks_gone() {
        let (_dir, mut c) = db();
        let names = vec!["alice".to_owned(), "bob".to_owned()];
        let (added, gone) = sync_mailboxes(&mut c, &names, "user", "maildir", true).unwrap();
        assert_eq!(added, names);
        assert!(gone.is_empty());
        let (added, gone) = sync_mailboxes(&mut c, &names[..1], "user", "maildir", true).unwrap();
        assert!(added.is_empty());
        assert_eq!(gone, ["bob"]);
        let rows = mailboxes(&c).unwrap();
        assert!(rows[0].present && rows[0].enabled && !rows[1].present);
        assert!(set_enabled(&c, "alice", false).unwrap());
        assert!(!mailboxes(&c).unwrap()[0].enabled);
        assert!(!set_enabled(&c, "nobody", false).unwrap());
        // Re-listing keeps the admin's choice.
        sync_mailboxes(&mut c, &names, "user", "maildir", true).unwrap();
        assert!(!mailboxes(&c).unwrap()[0].enabled);
    }

    #[test]
    fn recheck_queue_is_bounded() {
        let (_dir, mut c) = db();
        let locators: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert_eq!(recheck_enqueue(&mut c, "alice", "INBOX", &locators, 6).unwrap(), 4);
        assert_eq!(recheck_count(&c).unwrap(), 6);
        assert_eq!(recheck_mailboxes(&c).unwrap(), [("alice".to_owned(), 6)]);
        let taken = recheck_take(&c, "alice", 4).unwrap();
        assert_eq!(taken.len(), 4);
        let done: Vec<String> = taken.into_iter().map(|(_, l)| l).collect();
        recheck_done(&mut c, "alice", "INBOX", &done).unwrap();
        assert_eq!(recheck_count(&c).unwrap(), 2);
    }

    #[test]
    fn counters_accumulate() {
        let (_dir, mut c) = db();
        let mut batch = BTreeMap::new();
        batch.insert((3600, "alice".to_owned()), Counters { checked: 2, spam: 1, ..Counters::default() });
        record_batch(&mut c, &batch).unwrap();
        record_batch(&mut c, &batch).unwrap();
        let rows = hourly(&c, 0, None).unwrap();
        assert_eq!(rows, [(3600, "alice".to_owned(), Counters { checked: 4, spam: 2, ..Counters::default() })]);
    }

    #[test]
    fn every_counter_keeps_its_own_column_in_every_statement() {
        let (_dir, mut c) = db();
        // Distinct values: a column out of order in any statement shows.
        let n = Counters {
            checked: 1,
            spam: 2,
            phish: 3,
            whitelisted: 4,
            empty: 5,
            errors: 6,
            blocked: 7,
            unblocked: 8,
            rescanned: 9,
            rescan_filed: 10,
        };
        assert_eq!(n.values(), (1..=10).collect::<Vec<u32>>(), "the fields are the columns, in order");
        let batch = BTreeMap::from([((3600, "alice".to_owned()), n)]);
        record_batch(&mut c, &batch).unwrap();
        record_batch(&mut c, &batch).unwrap();
        let mut twice = n;
        twice.add(&n);
        assert_eq!(hourly(&c, 0, None).unwrap(), [(3600, "alice".to_owned(), twice)]);
        assert_eq!(hourly_of(&c, "alice", 0, 7200).unwrap(), [(3600, twice)]);
        assert_eq!(hourly_totals(&c, 0, 7200).unwrap(), [(3600, twice)]);
        assert_eq!(mailbox_totals(&c, &["alice".to_owned()], 0).unwrap()["alice"], twice);
    }

    #[test]
    fn a_filing_is_found_by_message_id_with_its_typed_action() {
        let (_dir, mut c) = db();
        let filed = |id: &str, action| Filed {
            mailbox: "alice".into(),
            message_id: Some(id.into()),
            fingerprint: None,
            class: "spam".into(),
            reason: "network".into(),
            action,
            folder: String::new(),
            pass: "delivery",
            delivered: Some(7),
        };
        let all = [
            FiledAction::SpamFolder,
            FiledAction::Folder,
            FiledAction::Trash,
            FiledAction::Tag,
            FiledAction::Delete,
            FiledAction::Inline,
        ];
        let rows: Vec<Filed> = all.iter().enumerate().map(|(i, a)| filed(&format!("<{i}@x>"), *a)).collect();
        let ids = insert_filed(&mut c, &rows).unwrap();
        set_filed_folders(&mut c, &[(ids[0], "Junk".into())]).unwrap();
        for (i, action) in all.iter().enumerate() {
            let found = filed_lookup(&c, "alice", Some(&format!("<{i}@x>")), None).unwrap().unwrap();
            assert_eq!(found.0, *action);
        }
        assert_eq!(
            filed_lookup(&c, "alice", Some("<0@x>"), None).unwrap(),
            Some((FiledAction::SpamFolder, "Junk".into(), Some(7)))
        );
        filed_inline_arrived(&c, "alice", &["<5@x>".to_owned()]).unwrap();
        assert_eq!(filed_lookup(&c, "alice", Some("<5@x>"), None).unwrap().unwrap().0, FiledAction::InlineFiled);
        // A name this version does not know is an error, not a guess.
        c.execute("UPDATE filed SET action = 'teleported' WHERE message_id = '<1@x>'", []).unwrap();
        let error = filed_lookup(&c, "alice", Some("<1@x>"), None).unwrap_err();
        assert!(error.to_string().contains("unknown filed action \"teleported\""), "{error}");
    }

    #[test]
    fn old_hourly_counters_go_an_hour_at_a_time_and_totals_stay() {
        let (_dir, mut c) = db();
        let mut batch = BTreeMap::new();
        for hour in [0, 3600, 7200] {
            for mailbox in ["alice", "bob"] {
                batch.insert((hour, mailbox.to_owned()), Counters { checked: 1, ..Counters::default() });
            }
        }
        record_batch(&mut c, &batch).unwrap();
        assert_eq!(hourly_expire_step(&c, 7200).unwrap(), 2);
        assert_eq!(hourly_expire_step(&c, 7200).unwrap(), 2);
        assert_eq!(hourly_expire_step(&c, 7200).unwrap(), 0);
        let left: Vec<i64> = hourly(&c, 0, None).unwrap().into_iter().map(|(hour, _, _)| hour).collect();
        assert_eq!(left, [7200, 7200]);
        assert_eq!(hourly_totals(&c, 0, 10_800).unwrap().len(), 3);
    }

    #[test]
    fn events_filter_by_each_condition_through_their_indexes() {
        use crate::events::{self, Event, Severity};
        let (_dir, c) = db();
        let kinds = [events::AGENT_STARTED, events::STATE_ERROR, events::AGENT_STARTED, events::STATE_ERROR];
        for (i, kind) in kinds.into_iter().enumerate() {
            let event = Event {
                at: 1000 + i as i64,
                id: kind.id,
                name: kind.name,
                severity: kind.severity,
                mailbox: (i % 2 == 1).then(|| "alice".to_owned()),
                text: format!("event {i}"),
            };
            insert_event(&c, &event).unwrap();
        }
        let texts = |filter: EventFilter| -> Vec<String> {
            events_filtered(&c, &filter, 10).unwrap().into_iter().map(|e| e.text).collect()
        };
        assert_eq!(texts(EventFilter::default()), ["event 3", "event 2", "event 1", "event 0"]);
        assert_eq!(
            texts(EventFilter { id: Some(events::AGENT_STARTED.id), ..Default::default() }),
            ["event 2", "event 0"]
        );
        assert_eq!(texts(EventFilter { mailbox: Some("alice".into()), ..Default::default() }), ["event 3", "event 1"]);
        assert_eq!(
            texts(EventFilter { min_severity: Some(Severity::Error), since: Some(1002), ..Default::default() }),
            ["event 3"]
        );
        assert_eq!(
            texts(EventFilter { before_seq: Some(3), until: Some(1002), ..Default::default() }),
            ["event 1", "event 0"]
        );
        for (condition, index) in [("code = 1", "events_by_code"), ("mailbox = 'alice'", "events_by_mailbox")] {
            let plan: String = c
                .query_row(
                    &format!("EXPLAIN QUERY PLAN SELECT id FROM events WHERE {condition} ORDER BY id DESC LIMIT 100"),
                    [],
                    |r| r.get(3),
                )
                .unwrap();
            assert!(plan.contains(index), "{condition}: {plan}");
        }
    }

    #[test]
    fn schema_5_mailboxes_get_the_model_switch_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        {
            let c = open(&path).unwrap();
            // The table as schema 5 had it, with a row.
            c.execute_batch(
                "DROP TABLE mailboxes;
                 CREATE TABLE mailboxes (name TEXT PRIMARY KEY, kind TEXT NOT NULL DEFAULT 'user',
                     enabled INTEGER NOT NULL, feedback INTEGER NOT NULL DEFAULT 1, source TEXT NOT NULL,
                     present INTEGER NOT NULL DEFAULT 1, first_seen INTEGER NOT NULL,
                     last_seen INTEGER NOT NULL) WITHOUT ROWID;
                 INSERT INTO mailboxes (name, enabled, feedback, source, first_seen, last_seen)
                     VALUES ('alice', 1, 0, 'list', 1, 2);
                 PRAGMA user_version = 5;",
            )
            .unwrap();
        }
        let c = open(&path).unwrap();
        let alice = mailbox(&c, "alice").unwrap().unwrap();
        assert!(alice.model && alice.enabled && !alice.feedback, "{alice:?}");
        assert!(set_model(&c, "alice", false).unwrap());
        assert!(!mailbox(&c, "alice").unwrap().unwrap().model);
        assert!(!set_model(&c, "nobody", false).unwrap());
    }

    #[test]
    fn schema_3_counters_move_to_the_mailbox_first_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        {
            let c = open(&path).unwrap();
            // The table as schema 3 had it, with a row.
            c.execute_batch(
                "DROP TABLE hourly;
                 CREATE TABLE hourly (hour INTEGER NOT NULL, mailbox TEXT NOT NULL,
                     checked INTEGER NOT NULL DEFAULT 0, spam INTEGER NOT NULL DEFAULT 0,
                     phish INTEGER NOT NULL DEFAULT 0, whitelisted INTEGER NOT NULL DEFAULT 0,
                     empty INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0,
                     blocked INTEGER NOT NULL DEFAULT 0, unblocked INTEGER NOT NULL DEFAULT 0,
                     rescanned INTEGER NOT NULL DEFAULT 0, rescan_filed INTEGER NOT NULL DEFAULT 0,
                     PRIMARY KEY (hour, mailbox)) WITHOUT ROWID;
                 CREATE INDEX hourly_mailbox ON hourly (mailbox, hour);
                 INSERT INTO hourly (hour, mailbox, checked, spam, unblocked) VALUES (3600, 'alice', 5, 2, 1);
                 PRAGMA user_version = 3;",
            )
            .unwrap();
        }
        let c = open(&path).unwrap();
        let rows = hourly(&c, 0, None).unwrap();
        assert_eq!(
            rows,
            [(3600, "alice".to_owned(), Counters { checked: 5, spam: 2, unblocked: 1, ..Counters::default() })]
        );
        let plan: String = c
            .query_row("EXPLAIN QUERY PLAN SELECT checked FROM hourly WHERE mailbox = 'alice' AND hour >= 0", [], |r| {
                r.get(3)
            })
            .unwrap();
        assert!(plan.contains("PRIMARY KEY (mailbox=? AND hour>?)"), "{plan}");
    }
}
