//! The connection: [`open`] (WAL, the schema brought up to date) for the
//! CLI, and [`State`], the running agent's single writing thread.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

use crate::events::{Event, EventSink};

use super::{FILE_NAME, insert_event};

/// Opens (creating and migrating) the database at `path`.
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let mut connection = {
        let _serial = OPEN_CLOSE.lock().unwrap_or_else(|e| e.into_inner());
        Connection::open(path)?
    };
    connection.busy_timeout(Duration::from_secs(10))?;
    // Switching to WAL needs the database to itself, and SQLite does not
    // wait for that: retry while another connection is opening it too.
    let mut attempts = 0;
    loop {
        let mode: String = connection.pragma_query_value(None, "journal_mode", |row| row.get(0))?;
        if mode.eq_ignore_ascii_case("wal") {
            break;
        }
        match connection.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && attempts < 100 =>
            {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            other => {
                other?;
                break;
            }
        }
    }
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    super::migrations::migrate(&mut connection)?;
    Ok(connection)
}

/// A unit of work for the state thread.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The running agent's handle on the database: every statement runs on one
/// thread, in the order sent.
#[derive(Clone)]
pub struct State {
    jobs: mpsc::Sender<Job>,
    path: PathBuf,
}

/// Opening a database file while another connection to it closes, in two
/// threads of one process, can deadlock inside SQLite's unix VFS (its
/// global mutex and a file's mutex taken in opposite orders, seen in CI):
/// the state thread's close and every open take this lock.
static OPEN_CLOSE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The state thread is gone or a statement failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// SQLite failed.
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The state thread stopped.
    #[error("the state database thread stopped")]
    Stopped,
}

impl State {
    /// Opens the database in `dir` and starts its thread.
    pub fn open(dir: &Path) -> Result<State, StateError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!("cannot create {}: {e}", dir.display())),
            )
        })?;
        let path = dir.join(FILE_NAME);
        let mut connection = open(&path)?;
        let (jobs, receiver) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("state".into())
            .spawn(move || {
                while let Ok(job) = receiver.recv() {
                    job(&mut connection);
                }
                let _serial = OPEN_CLOSE.lock().unwrap_or_else(|e| e.into_inner());
                drop(connection);
            })
            .map_err(|_| StateError::Stopped)?;
        Ok(State { jobs, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the state thread and waits for its result.
    pub async fn call<R, F>(&self, f: F) -> Result<R, StateError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |connection| {
                let _ = tx.send(f(connection));
            }))
            .map_err(|_| StateError::Stopped)?;
        Ok(rx.await.map_err(|_| StateError::Stopped)??)
    }

    /// Runs `f` on the state thread, blocking this thread until done (for
    /// code outside the async runtime).
    pub fn call_blocking<R, F>(&self, f: F) -> Result<R, StateError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .send(Box::new(move |connection| {
                let _ = tx.send(f(connection));
            }))
            .map_err(|_| StateError::Stopped)?;
        Ok(rx.recv().map_err(|_| StateError::Stopped)??)
    }

    /// Runs `f` on the state thread without waiting; failures are logged.
    pub fn send<F>(&self, f: F)
    where
        F: FnOnce(&mut Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        let _ = self.jobs.send(Box::new(move |connection| {
            if let Err(e) = f(connection) {
                tracing::error!(event_id = 500, "state database: {e}");
            }
        }));
    }
}

impl EventSink for State {
    fn store(&self, event: &Event) {
        let event = event.clone();
        self.send(move |c| insert_event(c, &event));
    }
}
