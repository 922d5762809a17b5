//! `starling backup` / `restore` (the agent's state directory, with the
//! embedded network's store) and `starling network backup` / `restore` (a
//! node's data directory).
//!
//! A backup is a directory: the state database copied with SQLite's
//! `VACUUM INTO` (a consistent copy while the agent writes), the network
//! store copied by the node itself from one read transaction (the
//! `Snapshot` RPC; when no node runs, read directly), every other file of
//! the state directory (secret, credentials, the model, tokens), and a
//! `MANIFEST.json` with each file's size and BLAKE3. Restoring needs the
//! service stopped: it checks every file against the manifest and the
//! database's integrity first, moves the state it replaces into
//! `replaced-TIME/` beside it (nothing is deleted), gives the files to the
//! owner of the state directory (the service's user), and has the spam
//! folders start afresh (see [`forget_feedback_positions`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use starling_network::store::embedded::Embedded;

use crate::agent_cmd::ConfigArgs;
use crate::operator::OperatorArgs;

/// The manifest's name in a backup.
const MANIFEST: &str = "MANIFEST.json";
/// The manifest's format.
const FORMAT: u32 = 1;
/// Where the embedded network's files go in an agent's backup.
const NETWORK_DIR: &str = "network";
/// Files of a state directory that are not state: written again at start.
const TRANSIENT: &[&str] = &[starling_console::URL_FILE, crate::agent_cmd::EMBEDDED_URL_FILE];

#[derive(Serialize, Deserialize)]
struct Manifest {
    format: u32,
    /// `agent` or `network`.
    kind: String,
    version: String,
    created: String,
    files: Vec<FileEntry>,
    /// Rows per table of the network store, when there is one.
    network_tables: Vec<(String, u64)>,
}

#[derive(Serialize, Deserialize)]
struct FileEntry {
    /// Relative to the backup (and to the state directory).
    path: String,
    bytes: u64,
    blake3: String,
}

#[derive(Args)]
pub(crate) struct BackupArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The directory to write (it must not exist, or be empty).
    dir: PathBuf,
}

#[derive(Args)]
pub(crate) struct RestoreArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// A directory `starling backup` wrote.
    dir: PathBuf,
}

#[derive(Args)]
pub(crate) struct NetworkBackupArgs {
    #[command(flatten)]
    operator: OperatorArgs,
    /// The directory to write (it must not exist, or be empty).
    dir: PathBuf,
}

#[derive(Args)]
pub(crate) struct NetworkRestoreArgs {
    /// The stopped node's data directory.
    #[arg(long, default_value = "starling-network", value_name = "DIR")]
    data: PathBuf,
    /// A directory `starling network backup` wrote.
    dir: PathBuf,
}

/// `starling backup DIR`.
pub(crate) fn backup(args: &BackupArgs) -> anyhow::Result<ExitCode> {
    let (agent, node) = args.config.agent_and_embedded_node()?;
    let state = &agent.state_dir;
    anyhow::ensure!(state.is_dir(), "there is no state directory at {} to back up", state.display());
    create_empty(&args.dir)?;
    let mut manifest = Manifest::new("agent");
    let database = state.join(starling_agent::state::FILE_NAME);
    if database.exists() {
        copy_database(&database, &args.dir.join(starling_agent::state::FILE_NAME))?;
    }
    copy_files(state, &args.dir, &[starling_agent::state::FILE_NAME])?;
    let data = &node.data_dir;
    if data.join(starling_network::node::STORE_FILE).exists() {
        // The running node's address (its port may have been chosen at
        // start), else the configured one.
        let address = std::fs::read_to_string(state.join(crate::agent_cmd::EMBEDDED_URL_FILE))
            .map(|a| a.trim().to_owned())
            .unwrap_or_else(|_| node.listen.to_string());
        let operator = OperatorArgs::for_node(&address, data);
        manifest.network_tables = snapshot_node(&operator, data, &args.dir.join(NETWORK_DIR))?;
    }
    manifest.list(&args.dir)?;
    manifest.write(&args.dir)?;
    report(&args.dir, &manifest);
    Ok(ExitCode::SUCCESS)
}

/// `starling network backup DIR`.
pub(crate) fn network_backup(args: &NetworkBackupArgs) -> anyhow::Result<ExitCode> {
    let data = args.operator.data_dir();
    anyhow::ensure!(
        data.join(starling_network::node::STORE_FILE).exists(),
        "there is no node store in {} (pass --data DIR)",
        data.display()
    );
    create_empty(&args.dir)?;
    let mut manifest = Manifest::new("network");
    manifest.network_tables = snapshot_node(&args.operator, data, &args.dir)?;
    manifest.list(&args.dir)?;
    manifest.write(&args.dir)?;
    report(&args.dir, &manifest);
    Ok(ExitCode::SUCCESS)
}

/// `starling restore DIR`.
pub(crate) fn restore(args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let (agent, node) = args.config.agent_and_embedded_node()?;
    let manifest = Manifest::read_verified(&args.dir, "agent")?;
    let state = &agent.state_dir;
    std::fs::create_dir_all(state).with_context(|| format!("cannot create {}", state.display()))?;
    if let Ok(url) = std::fs::read_to_string(state.join(starling_console::URL_FILE))
        && answers(url.trim())
    {
        bail!("the service is running (its console answers at {}): stop it first", url.trim());
    }
    ensure_stopped(&node.data_dir)?;
    let aside = restore_into(&args.dir, state, &manifest)?;
    forget_feedback_positions(&state.join(starling_agent::state::FILE_NAME))?;
    println!(
        "restored {} files from {} into {}{}",
        manifest.files.len(),
        args.dir.display(),
        state.display(),
        aside.map(|a| format!("; what was there is in {}", a.display())).unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// `starling network restore DIR`.
pub(crate) fn network_restore(args: &NetworkRestoreArgs) -> anyhow::Result<ExitCode> {
    let manifest = Manifest::read_verified(&args.dir, "network")?;
    std::fs::create_dir_all(&args.data).with_context(|| format!("cannot create {}", args.data.display()))?;
    ensure_stopped(&args.data)?;
    let aside = restore_into(&args.dir, &args.data, &manifest)?;
    println!(
        "restored {} files from {} into {}{}",
        manifest.files.len(),
        args.dir.display(),
        args.data.display(),
        aside.map(|a| format!("; what was there is in {}", a.display())).unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

impl Manifest {
    fn new(kind: &str) -> Manifest {
        Manifest {
            format: FORMAT,
            kind: kind.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            created: jiff::Timestamp::now().to_string(),
            files: Vec::new(),
            network_tables: Vec::new(),
        }
    }

    /// Lists (and hashes) every file written into the backup.
    fn list(&mut self, dir: &Path) -> anyhow::Result<()> {
        let mut pending = vec![PathBuf::new()];
        while let Some(relative) = pending.pop() {
            for item in std::fs::read_dir(dir.join(&relative))? {
                let item = item?;
                let path = relative.join(item.file_name());
                if item.file_type()?.is_dir() {
                    pending.push(path);
                } else {
                    let (bytes, blake3) = hash(&dir.join(&path))?;
                    self.files.push(FileEntry { path: path.display().to_string(), bytes, blake3 });
                }
            }
        }
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(())
    }

    fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        write_synced(&dir.join(MANIFEST), text.as_bytes())
    }

    /// The manifest of a backup, after checking that every file it lists is
    /// there with its size and hash, and that the database is whole.
    fn read_verified(dir: &Path, kind: &str) -> anyhow::Result<Manifest> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{} is not a backup: cannot read {}", dir.display(), path.display()))?;
        let manifest: Manifest =
            serde_json::from_str(&text).with_context(|| format!("{} is not a valid manifest", path.display()))?;
        anyhow::ensure!(manifest.format == FORMAT, "{} has format {}, not {FORMAT}", path.display(), manifest.format);
        anyhow::ensure!(
            manifest.kind == kind,
            "{} is a backup of {} (use `starling {}restore`)",
            dir.display(),
            if manifest.kind == "agent" { "an agent" } else { "a network node" },
            if manifest.kind == "agent" { "" } else { "network " }
        );
        for file in &manifest.files {
            anyhow::ensure!(
                !file.path.split('/').any(|part| part == ".." || part.is_empty()) && !file.path.starts_with('/'),
                "{} names a file outside the backup: {}",
                path.display(),
                file.path
            );
            let (bytes, blake3) =
                hash(&dir.join(&file.path)).with_context(|| format!("the backup is missing {}", file.path))?;
            anyhow::ensure!(
                bytes == file.bytes && blake3 == file.blake3,
                "{} in the backup is damaged (its size or hash differs from the manifest)",
                file.path
            );
        }
        let database = dir.join(starling_agent::state::FILE_NAME);
        if database.exists() {
            let connection =
                rusqlite::Connection::open_with_flags(&database, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            let verdict: String = connection.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
            anyhow::ensure!(verdict == "ok", "the database in the backup fails its integrity check: {verdict}");
        }
        Ok(manifest)
    }
}

/// Creates `dir` (mode 0700), or accepts it empty.
fn create_empty(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.exists() {
        let empty = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?.next().is_none();
        anyhow::ensure!(empty, "{} exists and is not empty: a backup needs a directory of its own", dir.display());
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// A consistent copy of the live state database (`VACUUM INTO` reads one
/// snapshot; the agent goes on writing meanwhile).
fn copy_database(from: &Path, to: &Path) -> anyhow::Result<()> {
    let connection = rusqlite::Connection::open_with_flags(from, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", from.display()))?;
    connection.busy_timeout(std::time::Duration::from_secs(30))?;
    let target = to.to_str().context("the backup's path is not UTF-8")?;
    connection.execute("VACUUM INTO ?1", [target]).with_context(|| format!("cannot copy {}", from.display()))?;
    Ok(())
}

/// Copies the regular files directly in `from` (not its directories, the
/// database's own files, or what is written again at start).
fn copy_files(from: &Path, to: &Path, database: &[&str]) -> anyhow::Result<()> {
    for item in std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let item = item?;
        let name = item.file_name().to_string_lossy().into_owned();
        let skip = TRANSIENT.contains(&name.as_str())
            || database.iter().any(|db| name == *db || name.starts_with(&format!("{db}-")))
            || name.ends_with(".tmp");
        if skip || !item.file_type()?.is_file() {
            continue;
        }
        let bytes = std::fs::read(item.path()).with_context(|| format!("cannot read {}", item.path().display()))?;
        write_synced(&to.join(&name), &bytes)?;
    }
    Ok(())
}

/// The node's store and files into `to`: the running node writes the
/// snapshot (the store is its alone while it runs); a stopped node's store
/// is read here.
fn snapshot_node(operator: &OperatorArgs, data: &Path, to: &Path) -> anyhow::Result<Vec<(String, u64)>> {
    create_empty(to)?;
    copy_files(data, to, &[starling_network::node::STORE_FILE])?;
    let target = to.join(starling_network::node::STORE_FILE);
    let store = data.join(starling_network::node::STORE_FILE);
    match crate::runtime()?.block_on(ask_for_snapshot(operator)) {
        Ok((path, tables)) => {
            let path = PathBuf::from(path);
            if std::fs::rename(&path, &target).is_err() {
                std::fs::copy(&path, &target)
                    .with_context(|| format!("cannot copy the snapshot {} to {}", path.display(), target.display()))?;
                std::fs::remove_file(&path).ok();
            }
            Ok(tables)
        }
        Err(Unreachable(why)) => {
            let embedded = Embedded::open(&store, 1 << 20).map_err(|e| {
                anyhow::anyhow!("the node does not answer ({why}) and its store cannot be read here: {e}")
            })?;
            let counts = embedded.snapshot_to(&target)?;
            Ok(counts.tables.into_iter().map(|(name, rows)| (name.to_owned(), rows)).collect())
        }
    }
}

/// The node could not be reached: read its store directly.
struct Unreachable(String);

async fn ask_for_snapshot(operator: &OperatorArgs) -> Result<(String, Vec<(String, u64)>), Unreachable> {
    let mut admin = operator.admin().await.map_err(|e| Unreachable(format!("{e:#}")))?;
    let response = admin
        .snapshot(starling_proto::v1::SnapshotRequest {})
        .await
        .map_err(|status| Unreachable(status.message().to_owned()))?
        .into_inner();
    Ok((response.path, response.tables.into_iter().map(|t| (t.name, t.rows)).collect()))
}

/// Refuses to go on while a node holds the store in `data`.
fn ensure_stopped(data: &Path) -> anyhow::Result<()> {
    let store = data.join(starling_network::node::STORE_FILE);
    if store.exists() {
        Embedded::open(&store, 1 << 20)
            .map_err(|e| anyhow::anyhow!("{e}: stop the service (or node) before restoring"))?;
    }
    Ok(())
}

/// The spam folders' positions of a restored database are from the time of
/// the backup: mail the agent filed there since would look like users'
/// reports. Forgetting them makes each folder start from what it holds now
/// (as for a new mailbox); the inboxes keep theirs, so mail that arrived
/// since the backup is checked.
fn forget_feedback_positions(database: &Path) -> anyhow::Result<()> {
    if !database.exists() {
        return Ok(());
    }
    let connection = rusqlite::Connection::open(database)
        .with_context(|| format!("cannot open the restored {}", database.display()))?;
    connection.execute("DELETE FROM cursors WHERE folder <> 'INBOX'", [])?;
    Ok(())
}

/// Moves what `target` holds aside (into `replaced-TIME/`) and puts the
/// backup's files in its place, owned like `target`.
fn restore_into(backup: &Path, target: &Path, manifest: &Manifest) -> anyhow::Result<Option<PathBuf>> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(target)?;
    let aside = target.join(format!("replaced-{}", jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")));
    let mut moved = false;
    for file in &manifest.files {
        let current = target.join(&file.path);
        if current.exists() {
            let parked = aside.join(&file.path);
            std::fs::create_dir_all(parked.parent().unwrap_or(&aside))?;
            std::fs::rename(&current, &parked).with_context(|| format!("cannot move {} aside", current.display()))?;
            moved = true;
        }
        // The database's journal files belong to the database they sit beside.
        for suffix in ["-wal", "-shm"] {
            let journal = target.join(format!("{}{suffix}", file.path));
            if journal.exists() {
                let parked = aside.join(format!("{}{suffix}", file.path));
                std::fs::create_dir_all(parked.parent().unwrap_or(&aside))?;
                std::fs::rename(&journal, &parked)?;
            }
        }
    }
    for file in &manifest.files {
        let to = target.join(&file.path);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
            std::os::unix::fs::chown(parent, Some(owner.uid()), Some(owner.gid())).ok();
        }
        let bytes = std::fs::read(backup.join(&file.path))?;
        write_synced(&to, &bytes)?;
        // Root restores for the service's user; another user keeps its own.
        std::os::unix::fs::chown(&to, Some(owner.uid()), Some(owner.gid())).ok();
    }
    Ok(moved.then_some(aside))
}

/// Writes a file (mode 0600) and syncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

fn hash(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    let bytes = std::io::copy(&mut file, &mut hasher).with_context(|| format!("cannot read {}", path.display()))?;
    Ok((bytes, hasher.finalize().to_hex().to_string()))
}

/// Whether something accepts connections at a console URL.
fn answers(url: &str) -> bool {
    let address = url.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/');
    let Ok(mut addresses) = std::net::ToSocketAddrs::to_socket_addrs(address) else { return false };
    addresses.any(|a| std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)).is_ok())
}

fn report(dir: &Path, manifest: &Manifest) {
    let bytes: u64 = manifest.files.iter().map(|f| f.bytes).sum();
    println!("backed up {} files ({bytes} bytes) into {}", manifest.files.len(), dir.display());
    if !manifest.network_tables.is_empty() {
        let rows: Vec<String> = manifest.network_tables.iter().map(|(t, n)| format!("{t} {n}")).collect();
        println!("network store: {}", rows.join(", "));
    }
}
