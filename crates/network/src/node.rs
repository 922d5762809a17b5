//! Starting and stopping a node: the data directory, the network key, the
//! operator token, the engine, the writer, the listener and the periodic
//! tasks, with an orderly shutdown.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::changes::ChangeLog;
use crate::config::NodeConfig;
use crate::engine::{Engine, EngineConfig};
use crate::model::IndexKey;
use crate::server::{self, Announce, NodeKeys, Shared};
use crate::store::embedded::Embedded;
use crate::store::redis::{RedisOptions, RedisStore};
use crate::store::{Store, StoreError};
use crate::writer::{self, Command, credential_hash, new_secret};
use starling_proto::activation::Signer;

/// The store file in the data directory.
pub const STORE_FILE: &str = "network.redb";
/// The operator token file in the data directory.
pub const OPERATOR_TOKEN_FILE: &str = "operator.token";
/// How often expired entries are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is invalid.
    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Config(Vec<String>),
    /// A file or directory problem.
    #[error("{path}: {error}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {error} (is another process using the port?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        error: std::io::Error,
    },
    /// The TLS files are unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |error| NodeError::Io { path: path.to_path_buf(), error }
}

/// A node that has started: its address and how to stop it.
pub struct Running {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// Cancel to stop.
    pub shutdown: CancellationToken,
    /// Completes when the node has stopped.
    pub stopped: oneshot::Receiver<()>,
}

/// Reads the operator token of a data directory.
pub fn operator_token(data_dir: &Path) -> Result<String, NodeError> {
    let path = data_dir.join(OPERATOR_TOKEN_FILE);
    let token = std::fs::read_to_string(&path).map_err(io(&path))?;
    Ok(token.trim().to_owned())
}

/// Starts a node; returns once it listens.
pub async fn start(config: NodeConfig) -> Result<Running, NodeError> {
    let problems = config.problems();
    if !problems.is_empty() {
        return Err(NodeError::Config(problems));
    }
    let data = &config.data_dir;
    create_private_dir(data)?;
    if config.store.url.is_empty() {
        let store = Embedded::open(&data.join(STORE_FILE), config.store.cache_mb << 20)?;
        return start_on(config, store).await;
    }
    let options = RedisOptions {
        stream_keep: config.store.redis_stream_keep,
        ..RedisOptions::from_url(&config.store.url, config.store.expected_entries, config.store.redis_wait_replicas)?
    };
    let store = tokio::task::spawn_blocking(move || RedisStore::open(&options))
        .await
        .map_err(|e| NodeError::Store(StoreError::transient(e.to_string())))??;
    start_on(config, store).await
}

/// Starts a node on a store.
async fn start_on<S: Store>(config: NodeConfig, store: S) -> Result<Running, NodeError> {
    let data = &config.data_dir;
    // The announcements of other nodes sharing the store are followed from
    // before the filter is warmed, so none falls between the two.
    let mut cursor = String::new();
    let shared_store = store.shared();
    if shared_store {
        store.follow(&mut cursor, Duration::ZERO)?;
    }
    let network_key = network_key(&store, config.network_key_file.as_deref())?;
    let signer = activation_signer(&store)?;
    let operator_hash = credential_hash(&ensure_operator_token(data)?);
    let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
    let engine_config =
        EngineConfig { rule: config.match_rule, trust: config.trust.clone(), store: config.store.clone() };
    let engine = Arc::new(Engine::new(store, engine_config)?);
    let (writer, writer_thread) = writer::spawn(engine.clone());
    let listener =
        TcpListener::bind(config.listen).await.map_err(|error| NodeError::Bind { addr: config.listen, error })?;
    let addr = listener.local_addr().map_err(|error| NodeError::Bind { addr: config.listen, error })?;
    let changes = Arc::new(ChangeLog::new(config.changes.keep));
    let shared = Arc::new(Shared::new(
        engine,
        writer.clone(),
        config.limits.clone(),
        NodeKeys { network_key, operator_hash, signer: Arc::new(signer) },
        Announce {
            latest_agent_version: config.latest_agent_version.clone(),
            release_notes_url: config.release_notes_url.clone(),
            purchase_url: config.purchase_url.clone(),
        },
        changes.clone(),
    ));
    let shutdown = CancellationToken::new();
    // Waiting `Changes` calls answer at once when the node stops, so they do
    // not hold up the graceful shutdown.
    let token = shutdown.clone();
    tokio::spawn(async move {
        token.cancelled().await;
        changes.close();
    });
    let (stopped_tx, stopped) = oneshot::channel();
    let router = server::router(shared.clone());
    let sweeper = tokio::spawn(sweep(writer.clone(), shutdown.clone()));
    if shared_store {
        let (engine, changes, stop) = (shared.engine.clone(), shared.changes.clone(), shutdown.clone());
        std::thread::Builder::new()
            .name("starling-follow".into())
            .spawn(move || follow(&engine, &changes, cursor, &stop))
            .map_err(|error| NodeError::Io { path: data.clone(), error })?;
    }
    let token = shutdown.clone();
    tokio::spawn(async move {
        server::serve(listener, router, tls, token, Duration::from_secs(10)).await;
        sweeper.abort();
        // The writer stops after the commands already queued.
        drop(writer);
        drop(shared);
        let _ = tokio::task::spawn_blocking(move || writer_thread.join()).await;
        tracing::info!("network node stopped");
        let _ = stopped_tx.send(());
    });
    tracing::info!(%addr, tls = config.tls.is_some(), "network node listening");
    Ok(Running { addr, shutdown, stopped })
}

/// How often a node sharing its store reads the organisations again (an
/// organisation created or changed on another node).
const ORGANISATIONS_EVERY: Duration = Duration::from_secs(2);

/// Follows what the other nodes sharing the store announce: their new index
/// keys join this node's filter, their changes its `Changes` log; and reads
/// the organisations again every [`ORGANISATIONS_EVERY`].
fn follow<S: Store>(engine: &Engine<S>, changes: &ChangeLog, mut cursor: String, stop: &CancellationToken) {
    let mut failing = false;
    while !stop.is_cancelled() {
        match engine.store().follow(&mut cursor, Duration::from_millis(500)) {
            Ok(Some(announced)) => {
                if announced.gap {
                    // What was dropped is unknown: every key again, and
                    // agents following `Changes` here look again by rescan.
                    tracing::warn!("fell behind the other nodes' announcements; warming the key filter from the store");
                    match engine.rewarm() {
                        Ok(keys) => tracing::info!(keys, "key filter warmed from the store"),
                        Err(e) => {
                            tracing::warn!(error = %e, "could not warm the key filter; it catches up at the next start")
                        }
                    }
                    changes.reset();
                }
                engine.adopt(&announced.filter);
                let keys: Vec<IndexKey> = announced.changes.iter().filter_map(|k| IndexKey::from_bytes(k)).collect();
                if !keys.is_empty() {
                    changes.append(keys);
                }
                failing = false;
            }
            Ok(None) => return,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot follow the other nodes sharing the store; retrying");
                }
                failing = true;
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        engine.refresh_organisations(
            std::time::Instant::now().checked_sub(ORGANISATIONS_EVERY).unwrap_or_else(std::time::Instant::now),
        );
    }
}

async fn sweep(writer: writer::WriterHandle, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(SWEEP_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
        let (reply, answer) = oneshot::channel();
        if writer.send(Command::Expire { now: crate::model::now(), reply }).await.is_err() {
            return;
        }
        match answer.await {
            Ok(Ok(n)) if n > 0 => tracing::info!(entries = n, "expired entries forgotten"),
            Ok(Err(e)) => tracing::warn!(error = %e, "expiry sweep failed"),
            _ => {}
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<(), NodeError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    Ok(())
}

/// The network's fingerprint key: the configured one, or the one created at
/// the first start. A store keyed differently from the configured key is an
/// error (its fingerprints would never match).
fn network_key(store: &impl Store, file: Option<&Path>) -> Result<[u8; 32], NodeError> {
    let configured = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(io(path))?;
            let key: starling_fingerprint::Key = text
                .parse()
                .map_err(|e| NodeError::Config(vec![format!("network_key_file: {}: {e}", path.display())]))?;
            Some(*key.as_bytes())
        }
        None => None,
    };
    let new = configured.unwrap_or_else(|| {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the operating system's random source works");
        key
    });
    let kept = store.init_meta("network_key", &new)?;
    let kept = <[u8; 32]>::try_from(kept.as_slice())
        .map_err(|_| NodeError::Config(vec!["the store's network key is damaged".into()]))?;
    if configured.is_some_and(|configured| configured != kept) {
        return Err(NodeError::Config(vec![
            "network_key_file: the store was built with another key; its fingerprints would never match".into(),
        ]));
    }
    Ok(kept)
}

/// The operator's key for activation codes: created at the first start and
/// kept in the store's metadata, so every API node of a network signs with
/// the same key and a backup of the store keeps it.
fn activation_signer(store: &impl Store) -> Result<Signer, NodeError> {
    let invalid = |e: starling_proto::activation::CodeError| NodeError::Config(vec![format!("activation key: {e}")]);
    let (_, document) = Signer::generate().map_err(invalid)?;
    let kept = store.init_meta(ACTIVATION_KEY, &document)?;
    Signer::from_pkcs8(&kept).map_err(invalid)
}

/// The store's metadata key of the activation signing key (PKCS#8).
const ACTIVATION_KEY: &str = "activation_signing_key";

/// The operator token, created (mode 0600) at the first start.
fn ensure_operator_token(data: &Path) -> Result<String, NodeError> {
    let path = data.join(OPERATOR_TOKEN_FILE);
    if path.exists() {
        return operator_token(data);
    }
    let token = new_secret("starling_op_");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).map_err(io(&path))?;
    writeln!(file, "{token}").map_err(io(&path))?;
    file.sync_all().map_err(io(&path))?;
    tracing::info!(path = %path.display(), "created the operator token");
    Ok(token)
}

/// A TLS acceptor for the node's certificate chain and key (PEM files).
pub fn tls_acceptor(tls: &crate::config::TlsConfig) -> Result<tokio_rustls::TlsAcceptor, NodeError> {
    starling_listener::tls_acceptor(&tls.certificate, &tls.private_key).map_err(|e| NodeError::Tls(e.to_string()))
}

/// The store behind a running engine (for tools that open a data directory
/// directly while no node runs).
pub fn open_store(data: &Path, cache_mb: usize) -> Result<impl Store, NodeError> {
    Ok(Embedded::open(&data.join(STORE_FILE), cache_mb << 20)?)
}
