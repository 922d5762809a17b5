//! The hardened HTTP listener the network node and the agent's console
//! share: HTTP/1.1 and HTTP/2 on one port (with TLS when given), a
//! connection that says nothing closed after [`FIRST_BYTE_TIMEOUT`], header
//! and keep-alive time-outs, and a graceful shutdown. It is its own crate so
//! that the console does not link the network node (its reputation engine,
//! store and gRPC services) for a listener.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A certificate or key that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// A TLS acceptor for a certificate chain and key (PEM files), speaking
/// HTTP/2 and HTTP/1.1.
pub fn tls_acceptor(certificate: &Path, private_key: &Path) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let read = |path: &Path| std::fs::read(path).map_err(|e| TlsError(format!("{}: {e}", path.display())));
    let certs: Vec<_> = rustls_pemfile::certs(&mut read(certificate)?.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("{}: {e}", certificate.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{}: no certificate found", certificate.display())));
    }
    let key = rustls_pemfile::private_key(&mut read(private_key)?.as_slice())
        .map_err(|e| TlsError(format!("{}: {e}", private_key.display())))?
        .ok_or_else(|| TlsError(format!("{}: no private key found", private_key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError(format!("certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` on `listener` (TLS when `tls` is given) until `shutdown`
/// is cancelled, then lets open requests finish (at most `grace`).
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let builder = connection_builder();
            let result = match tls {
                None => {
                    // A client that connects and says nothing holds no
                    // connection for long.
                    let mut first = [0u8; 1];
                    let spoke = tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first)).await;
                    if !matches!(spoke, Ok(Ok(n)) if n > 0) {
                        return tracing::debug!(%peer, "closed a connection that sent nothing");
                    }
                    let io = hyper_util::rt::TokioIo::new(stream);
                    watcher.watch(builder.serve_connection(io, service).into_owned()).await
                }
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(FIRST_BYTE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                    };
                    let io = hyper_util::rt::TokioIo::new(stream);
                    watcher.watch(builder.serve_connection(io, service).into_owned()).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("open connections did not finish within {grace:?}; closing them");
    }
}

/// How long a new connection may stay silent.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/1 and HTTP/2 on one port, with timeouts against idle or slow peers.
fn connection_builder() -> hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(Duration::from_secs(30));
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(60)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(256);
    builder
}
