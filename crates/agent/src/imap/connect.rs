//! Reaching the server: TCP, TLS, the greeting, login through the master
//! user, and what a session can fail with.

use super::*;

/// A connection: plain TCP or TLS.
pub enum Stream {
    /// Plain TCP (loopback only).
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stream::Plain(_) => "Stream::Plain",
            Stream::Tls(_) => "Stream::Tls",
        })
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A logged-in session.
pub type Session = async_imap::Session<Stream>;

/// How to reach and log into the server, shared by every mailbox task.
pub struct Server {
    /// The configuration.
    pub config: ImapConfig,
    /// The admin password.
    pub password: String,
    /// TLS set-up (for `tls` and `starttls`).
    pub tls: Option<tokio_rustls::TlsConnector>,
    /// Logins in progress at once.
    pub logins: Semaphore,
}

impl Server {
    /// Reads the password file and prepares TLS.
    pub fn new(config: ImapConfig, password_file: &std::path::Path) -> anyhow::Result<Server> {
        let password = std::fs::read_to_string(password_file)
            .map_err(|e| anyhow::anyhow!("cannot read the IMAP password file {}: {e}", password_file.display()))?;
        let password = password.trim_end_matches(['\r', '\n']).to_owned();
        let tls = match config.security {
            ImapSecurity::Plain => None,
            ImapSecurity::Tls | ImapSecurity::Starttls => {
                let mut roots = rustls::RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                if let Some(path) = &config.ca_file {
                    let pem = std::fs::read(path)
                        .map_err(|e| anyhow::anyhow!("cannot read the CA file {}: {e}", path.display()))?;
                    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                        roots.add(cert?)?;
                    }
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let tls = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(tokio_rustls::TlsConnector::from(Arc::new(tls)))
            }
        };
        let logins = Semaphore::new(config.max_concurrent_logins);
        Ok(Server { config, password, tls, logins })
    }

    pub(super) fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.timeout_seconds)
    }

    /// Connects and logs in on behalf of `user`.
    pub async fn login(&self, user: &str) -> Result<Session, SessionError> {
        let _permit = self.logins.acquire().await.map_err(|_| SessionError::Closed)?;
        tokio::time::timeout(self.timeout() * 2, self.login_inner(user)).await.map_err(|_| SessionError::Timeout)?
    }

    async fn login_inner(&self, user: &str) -> Result<Session, SessionError> {
        let address = (self.config.host.as_str(), self.config.port());
        let tcp = TcpStream::connect(address).await.map_err(|e| SessionError::Unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(60))
            .with_interval(Duration::from_secs(15))
            .with_retries(4);
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
        let stream = match self.config.security {
            ImapSecurity::Plain => Stream::Plain(tcp),
            ImapSecurity::Tls => Stream::Tls(Box::new(self.handshake(tcp).await?)),
            ImapSecurity::Starttls => {
                let mut client = async_imap::Client::new(tcp);
                greeting(&mut client).await?;
                client.run_command_and_check_ok("STARTTLS", None).await.map_err(refused)?;
                Stream::Tls(Box::new(self.handshake(client.into_inner()).await?))
            }
        };
        let mut client = async_imap::Client::new(stream);
        if self.config.security != ImapSecurity::Starttls {
            greeting(&mut client).await?;
        }
        let admin = &self.config.admin_user;
        let result = match self.config.auth {
            ImapAuth::MasterUser => {
                let login = format!("{user}{}{admin}", self.config.master_separator);
                client.login(login, &self.password).await
            }
            ImapAuth::SaslPlain => {
                let plain =
                    PlainAuth { authzid: user.to_owned(), authcid: admin.clone(), password: self.password.clone() };
                client.authenticate("PLAIN", plain).await
            }
        };
        result.map_err(|(error, _)| match error {
            async_imap::error::Error::No(text) | async_imap::error::Error::Bad(text) => {
                if is_limit(&text) {
                    SessionError::Limit(text)
                } else {
                    SessionError::Auth(text)
                }
            }
            other => SessionError::Unreachable(other.to_string()),
        })
    }

    async fn handshake(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, SessionError> {
        let connector = self.tls.as_ref().ok_or_else(|| SessionError::Unreachable("TLS is not set up".into()))?;
        let name = rustls::pki_types::ServerName::try_from(self.config.host.clone())
            .map_err(|e| SessionError::Unreachable(format!("bad host name: {e}")))?;
        connector.connect(name, tcp).await.map_err(|e| SessionError::Unreachable(format!("TLS: {e}")))
    }
}

pub(super) async fn greeting<T>(client: &mut async_imap::Client<T>) -> Result<(), SessionError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + fmt::Debug + Send,
{
    match client.read_response().await {
        Ok(Some(response)) => {
            if let async_imap::imap_proto::Response::Data { status: async_imap::imap_proto::Status::Bye, outcome } =
                response.parsed()
            {
                let text = outcome.information.as_deref().unwrap_or("").to_owned();
                return Err(if is_limit(&text) { SessionError::Limit(text) } else { SessionError::Unreachable(text) });
            }
            Ok(())
        }
        Ok(None) => Err(SessionError::Unreachable("the server closed the connection".into())),
        Err(e) => Err(SessionError::Unreachable(e.to_string())),
    }
}

pub(super) fn is_limit(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("maximum number of") || text.contains("too many") || text.contains("limit")
}

pub(super) fn refused(error: async_imap::error::Error) -> SessionError {
    SessionError::Unreachable(error.to_string())
}

/// SASL PLAIN (RFC 4616) with an authorisation identity.
struct PlainAuth {
    authzid: String,
    authcid: String,
    password: String,
}

impl async_imap::Authenticator for PlainAuth {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        [self.authzid.as_bytes(), self.authcid.as_bytes(), self.password.as_bytes()].join(&0u8)
    }
}

/// Why a session ended or could not start.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Cannot connect.
    #[error("cannot connect: {0}")]
    Unreachable(String),
    /// Login refused.
    #[error("login refused: {0}")]
    Auth(String),
    /// Too many connections.
    #[error("connection limit: {0}")]
    Limit(String),
    /// A command timed out.
    #[error("the server did not answer in time")]
    Timeout,
    /// The connection broke.
    #[error("connection lost: {0}")]
    Lost(String),
    /// The folder cannot be selected.
    #[error("cannot open the folder: {0}")]
    Folder(String),
    /// Shutting down.
    #[error("stopping")]
    Closed,
    /// A spam folder's session closed because nothing happened there: the
    /// inbox's session is told of changes (IMAP NOTIFY) and wakes it.
    #[error("nothing happening: watched through the inbox's session")]
    Quiet,
}

/// What the server offers.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Capabilities {
    pub(super) mv: bool,
    pub(super) uidplus: bool,
    pub(super) idle: bool,
    pub(super) condstore: bool,
    /// RFC 5465: the session can be told of changes in other folders.
    pub(super) notify: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_plain_response() {
        let mut auth = PlainAuth { authzid: "alice".into(), authcid: "admin".into(), password: "pw".into() };
        assert_eq!(async_imap::Authenticator::process(&mut auth, b""), b"alice\0admin\0pw");
    }
}
