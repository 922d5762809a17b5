//! Test support for Starling's integration tests and benchmarks: a private
//! Dovecot on loopback ports (its own configuration, temporary directory
//! and master user), a network node on a free port, and the SpamAssassin
//! corpus. Nothing binds a fixed port or a non-loopback address.

use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A headless Chromium under a private chromedriver, for browser tests.
pub mod browser;
/// A private Cyrus IMAP, the second IMAP server the agent is tested against.
pub mod cyrus;
mod node;
/// A private Postfix, for in-line (milter) tests.
pub mod postfix;
pub mod redis;

pub use node::Node;

/// The master user's name in every test Dovecot.
pub const MASTER_USER: &str = "starling";
/// Its password.
pub const MASTER_PASSWORD: &str = "master-secret";

/// A free loopback port (bound and released: a small race, fine in tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Whether this process runs as root (Dovecot then needs an unprivileged
/// mail user).
pub(crate) fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

fn current_user() -> String {
    std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
        let out = Command::new("id").arg("-un").output().expect("id -un");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    })
}

/// Options of a test Dovecot.
#[derive(Clone, Debug, Default)]
pub struct DovecotOptions {
    /// Advertise no MOVE capability (the COPY + EXPUNGE path).
    pub without_move: bool,
    /// Create a `Junk` folder with the `\Junk` special use for every user.
    pub junk_special_use: bool,
    /// Connection limits fit for ten thousand mailboxes (two sessions each).
    pub many_connections: bool,
    /// TLS: STARTTLS on the IMAP port and implicit TLS on `imaps_port`, with
    /// a self-signed certificate for 127.0.0.1 (`certificate()`).
    pub tls: bool,
    /// Users are also reached as `user@domain` (an MTA's LMTP recipients):
    /// the domain is dropped from login and delivery names.
    pub strip_domain: bool,
    /// A Sieve script every LMTP delivery runs first (Pigeonhole's
    /// `sieve_before`; needs the `dovecot-sieve` package).
    pub sieve_before: Option<PathBuf>,
}

/// A private Dovecot: IMAP and LMTP on loopback ports, Maildirs in a
/// temporary directory, users from a passwd file, a master user.
pub struct Dovecot {
    dir: tempfile::TempDir,
    /// IMAP port (plain, loopback).
    pub imap_port: u16,
    /// LMTP port (loopback).
    pub lmtp_port: u16,
    /// IMAPS port (loopback; listening only with `tls`).
    pub imaps_port: u16,
    /// The users.
    pub users: Vec<String>,
    options: DovecotOptions,
    mail_owner: Option<String>,
}

impl Dovecot {
    /// Installs nothing: fails with a clear message when Dovecot is missing.
    pub fn start(users: &[&str], options: DovecotOptions) -> anyhow::Result<Dovecot> {
        if Command::new("dovecot").arg("--version").output().is_err() {
            bail!(
                "dovecot is not installed: run scripts/test (which installs it) or apt-get install dovecot-imapd dovecot-lmtpd"
            );
        }
        let dir = tempfile::Builder::new().prefix("starling-dovecot-").tempdir()?;
        let mail_owner = running_as_root().then(|| "dovecot".to_owned());
        let dovecot = Dovecot {
            dir,
            imap_port: free_port(),
            lmtp_port: free_port(),
            imaps_port: free_port(),
            users: users.iter().map(|u| u.to_string()).collect(),
            options,
            mail_owner,
        };
        dovecot.write_config()?;
        dovecot.launch()?;
        Ok(dovecot)
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The configuration file.
    pub fn config(&self) -> PathBuf {
        self.dir().join("dovecot.conf")
    }

    /// The file holding the master password (for the agent's configuration).
    pub fn password_file(&self) -> PathBuf {
        self.dir().join("master-password")
    }

    /// The self-signed certificate (PEM) of a `tls` instance: the CA file
    /// a client trusts.
    pub fn certificate(&self) -> PathBuf {
        self.dir().join("cert.pem")
    }

    /// A user's Maildir.
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir().join("mail").join(user)
    }

    fn write_config(&self) -> anyhow::Result<()> {
        let d = self.dir();
        for sub in ["mail", "run", "state"] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        let (internal, login, uid) = match &self.mail_owner {
            Some(owner) => ("dovecot".to_owned(), "dovenull".to_owned(), owner.clone()),
            None => {
                let me = current_user();
                (me.clone(), me.clone(), me)
            }
        };
        if self.mail_owner.is_some() {
            let status = Command::new("chown").arg(format!("{uid}:{uid}")).arg(d.join("mail")).status()?;
            if !status.success() {
                bail!("cannot chown the test mail directory to {uid}");
            }
        }
        let mut users = String::new();
        for user in &self.users {
            users.push_str(&format!("{user}:{{PLAIN}}password::::::\n"));
        }
        std::fs::write(d.join("users"), users)?;
        std::fs::write(d.join("masters"), format!("{MASTER_USER}:{{PLAIN}}{MASTER_PASSWORD}\n"))?;
        std::fs::write(self.password_file(), format!("{MASTER_PASSWORD}\n"))?;
        let capability = if self.options.without_move {
            "imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ UIDPLUS SPECIAL-USE LIST-EXTENDED NAMESPACE CHILDREN\n"
        } else {
            ""
        };
        let junk = if self.options.junk_special_use {
            "  mailbox Junk {\n    special_use = \\Junk\n    auto = create\n  }\n"
        } else {
            ""
        };
        let limits = if self.options.many_connections {
            // Ten thousand mailboxes are 20,000 sessions: an imap process
            // serves up to 25 of them (IDLE sessions cost it little), so
            // Dovecot runs hundreds of processes, not thousands.
            "default_process_limit = 4000\ndefault_client_limit = 30000\nmail_max_userip_connections = 50\n\
             service imap {\n  process_limit = 4000\n  service_count = 0\n  client_limit = 25\n  vsz_limit = 512M\n}\n\
             service imap-login {\n  service_count = 0\n  process_min_avail = 2\n  client_limit = 4000\n}\n\
             service anvil {\n  client_limit = 30000\n}\n"
        } else {
            ""
        };
        let (ssl, imaps_port) = if self.options.tls {
            let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
            std::fs::write(self.certificate(), certified.cert.pem())?;
            std::fs::write(d.join("key.pem"), certified.signing_key.serialize_pem())?;
            (format!("ssl = yes\nssl_cert = <{0}/cert.pem\nssl_key = <{0}/key.pem\n", d.display()), self.imaps_port)
        } else {
            ("ssl = no\n".to_owned(), 0)
        };
        let sieve = match &self.options.sieve_before {
            Some(script) => {
                // A copy, compiled here (the delivery could not write the
                // binary next to a script in the source tree).
                let copy = d.join("before.sieve");
                std::fs::copy(script, &copy)?;
                let out = Command::new("sievec").arg(&copy).output().context("cannot run sievec (dovecot-sieve)")?;
                if !out.status.success() {
                    bail!("sievec {}: {}", script.display(), String::from_utf8_lossy(&out.stderr));
                }
                format!(
                    "protocol lmtp {{\n  mail_plugins = $mail_plugins sieve\n}}\nplugin {{\n  sieve_before = {}\n}}\n",
                    copy.display()
                )
            }
            None => String::new(),
        };
        let path = d.display();
        let config = format!(
            "base_dir = {path}/run\n\
             state_dir = {path}/state\n\
             log_path = {path}/dovecot.log\n\
             protocols = imap lmtp\n\
             listen = 127.0.0.1\n\
             {ssl}\
             disable_plaintext_auth = no\n\
             auth_mechanisms = plain login\n\
             default_internal_user = {internal}\n\
             default_login_user = {login}\n\
             first_valid_uid = 0\n\
             mail_location = maildir:{path}/mail/%u\n\
             mail_uid = {uid}\n\
             mail_gid = {uid}\n\
             auth_master_user_separator = *\n\
             {strip}\
             {capability}\
             {limits}\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {path}/masters\n  master = yes\n  result_success = continue\n}}\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {path}/users\n}}\n\
             userdb {{\n  driver = passwd-file\n  args = username_format=%u {path}/users\n  default_fields = uid={uid} gid={uid} home={path}/mail/%u\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {imap}\n  }}\n  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {imaps_port}\n  }}\n}}\n\
             service lmtp {{\n  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {lmtp}\n  }}\n}}\n\
             service pop3-login {{\n  inet_listener pop3 {{\n    port = 0\n  }}\n}}\n\
             service submission-login {{\n  inet_listener submission {{\n    port = 0\n  }}\n}}\n\
             namespace inbox {{\n  inbox = yes\n  separator = /\n{junk}}}\n{sieve}{rawlog}",
            // For debugging: every IMAP session's traffic, when asked for.
            rawlog = std::env::var("STARLING_TEST_RAWLOG")
                .map(|dir| format!("protocol imap {{\n  rawlog_dir = {dir}\n}}\n"))
                .unwrap_or_default(),
            imap = self.imap_port,
            lmtp = self.lmtp_port,
            strip = if self.options.strip_domain { "auth_username_format = %Ln\n" } else { "" },
        );
        std::fs::write(self.config(), config)?;
        Ok(())
    }

    fn launch(&self) -> anyhow::Result<()> {
        let status = Command::new("dovecot").arg("-c").arg(self.config()).status().context("cannot run dovecot")?;
        if !status.success() {
            bail!("dovecot did not start:\n{}", self.log());
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", self.imap_port)).is_err() {
            if Instant::now() > deadline {
                bail!("dovecot does not listen on {}:\n{}", self.imap_port, self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Dovecot's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("dovecot.log")).unwrap_or_default()
    }

    /// IMAP sessions of `user` logged in right now (`doveadm who`).
    pub fn sessions(&self, user: &str) -> usize {
        let out = self.doveadm().args(["who", "-1"]).output();
        out.map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.split_whitespace().next() == Some(user) && l.contains("imap"))
                .count()
        })
        .unwrap_or(0)
    }

    /// Stops Dovecot (connections are closed).
    pub fn stop(&self) {
        let _ = Command::new("doveadm").arg("-c").arg(self.config()).arg("stop").output();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.imap_port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // The master's pid file goes away when it has exited.
        while self.dir().join("run/master.pid").exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops and starts Dovecot again.
    pub fn restart(&self) -> anyhow::Result<()> {
        self.stop();
        self.launch()
    }

    fn doveadm(&self) -> Command {
        let mut command = Command::new("doveadm");
        command.arg("-c").arg(self.config());
        command
    }

    /// Saves a message into a folder (as a delivery would).
    pub fn save(&self, user: &str, folder: &str, raw: &[u8]) -> anyhow::Result<()> {
        let mut child = self
            .doveadm()
            .args(["save", "-u", user, "-m", folder])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        child.stdin.take().context("stdin")?.write_all(raw)?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("doveadm save failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Creates a folder.
    pub fn create_folder(&self, user: &str, folder: &str) -> anyhow::Result<()> {
        let out = self.doveadm().args(["mailbox", "create", "-u", user, folder]).output()?;
        if !out.status.success() {
            bail!("doveadm mailbox create failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Acts as `user` with a real IMAP client (Python's imaplib, logged in
    /// through the master user): `move ID FROM TO`, `copy ID FROM TO`,
    /// `keyword ID FOLDER KEYWORD`. Returns how many messages matched.
    pub fn imap_user(&self, user: &str, args: &[&str]) -> anyhow::Result<usize> {
        Ok(self.imap_user_output(user, args)?.parse()?)
    }

    /// Acts as `user` with the same client and returns what it printed: for
    /// the commands of a person reading their mail, `round TRUTH_FILE
    /// SPAM_FOLDER`, `inventory FOLDER...` and `spam-folder` (JSON or a
    /// folder name; see `imap_user.py`).
    pub fn imap_user_output(&self, user: &str, args: &[&str]) -> anyhow::Result<String> {
        imap_user(self.imap_port, &format!("{user}*{MASTER_USER}"), MASTER_PASSWORD, args)
    }

    /// Appends a message as `user`'s mail client would, with `flags`
    /// (e.g. `(\\Seen)`, or empty) and an INTERNALDATE `days_ago` days
    /// back: mail the user had long before the agent came.
    pub fn append_old(&self, user: &str, folder: &str, raw: &[u8], flags: &str, days_ago: f64) -> anyhow::Result<()> {
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), raw)?;
        let path = file.path().to_string_lossy().into_owned();
        let days = days_ago.to_string();
        self.imap_user_output(user, &["append", folder, &path, flags, &days]).map(|_| ())
    }

    /// Delivers a message over LMTP, as an MTA would.
    pub fn lmtp_deliver(&self, user: &str, raw: &[u8]) -> anyhow::Result<()> {
        lmtp_deliver(self.lmtp_port, user, raw)
    }

    /// The messages of a folder: (uid, flags, Message-ID, Subject, raw
    /// header text).
    pub fn messages(&self, user: &str, folder: &str) -> anyhow::Result<Vec<Message>> {
        // A message the agent moves while doveadm reads the folder fails
        // the fetch ("Message was expunged"): read again.
        let mut attempt = 0;
        loop {
            match self.messages_once(user, folder) {
                Err(e) if attempt < 5 && e.to_string().contains("was expunged") => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                result => return result,
            }
        }
    }

    fn messages_once(&self, user: &str, folder: &str) -> anyhow::Result<Vec<Message>> {
        let out = self
            .doveadm()
            .args([
                "-f",
                "json",
                "fetch",
                "-u",
                user,
                "uid flags hdr.message-id hdr.subject hdr",
                "mailbox",
                folder,
                "all",
            ])
            .output()?;
        if !out.status.success() {
            let error = String::from_utf8_lossy(&out.stderr);
            if error.contains("doesn't exist") || error.contains("Mailbox doesn't exist") {
                return Ok(Vec::new());
            }
            bail!("doveadm fetch failed: {error}");
        }
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(&text)?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let get = |key: &str| row.get(key).and_then(|v| v.as_str()).unwrap_or("").to_owned();
                Message {
                    uid: get("uid").parse().unwrap_or(0),
                    flags: get("flags").split_whitespace().map(str::to_owned).collect(),
                    message_id: get("hdr.message-id").trim().to_owned(),
                    subject: get("hdr.subject").trim().to_owned(),
                    header: get("hdr"),
                }
            })
            .collect())
    }

    /// The folders of a user.
    pub fn folders(&self, user: &str) -> anyhow::Result<Vec<String>> {
        let out = self.doveadm().args(["mailbox", "list", "-u", user]).output()?;
        Ok(String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_owned()).collect())
    }

    /// Writes messages straight into a user's INBOX Maildir (`new/`), far
    /// faster than delivering them one by one; Dovecot indexes them on
    /// first access.
    pub fn fill_maildir(&self, user: &str, messages: &[Vec<u8>]) -> anyhow::Result<()> {
        let maildir = self.maildir(user);
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub))?;
        }
        for (i, raw) in messages.iter().enumerate() {
            std::fs::write(maildir.join("new").join(format!("1700000000.M{i}P1.fill")), raw)?;
        }
        if let Some(owner) = &self.mail_owner {
            let status = Command::new("chown")
                .args(["-R", &format!("{owner}:{owner}")])
                .arg(self.dir().join("mail"))
                .status()?;
            if !status.success() {
                bail!("cannot chown the test mail directory");
            }
        }
        Ok(())
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A message as `doveadm fetch` shows it.
#[derive(Clone, Debug)]
pub struct Message {
    /// UID.
    pub uid: u32,
    /// Flags.
    pub flags: Vec<String>,
    /// Message-ID header.
    pub message_id: String,
    /// Subject header, raw.
    pub subject: String,
    /// The header block.
    pub header: String,
}

impl Message {
    /// Whether it has the `\Seen` flag.
    pub fn seen(&self) -> bool {
        self.flags.iter().any(|f| f == "\\Seen")
    }
}

/// The corpus messages kept in the repository
/// (`crates/fingerprint/testdata/corpus`): (name, bytes), spam first when
/// `spam` is true, else ham. Names are `group-id.eml`.
pub fn testdata(spam: bool) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fingerprint/testdata/corpus");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("the test corpus")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let wanted = name.ends_with(".eml") && name.starts_with("spam") == spam;
            wanted.then(|| Some((name, std::fs::read(e.path()).ok()?))).flatten()
        })
        .collect();
    out.sort();
    out
}

/// A copy of a message with a new Message-ID (fingerprints ignore it), so
/// copies can be told apart.
pub fn with_message_id(raw: &[u8], id: &str) -> Vec<u8> {
    with_header(raw, "Message-ID", &format!("<{id}>"))
}

/// A copy of a message whose header `name` (every occurrence, with its
/// folded lines) is replaced by one `name: value` line at the top.
pub fn with_header(raw: &[u8], name: &str, value: &str) -> Vec<u8> {
    let prefix = format!("{name}:");
    let mut out = Vec::with_capacity(raw.len() + 64);
    out.extend_from_slice(format!("{prefix} {value}\n").as_bytes());
    let mut skipping = false;
    let mut in_header = true;
    for line in raw.split_inclusive(|b| *b == b'\n') {
        if in_header {
            if line == b"\n" || line == b"\r\n" {
                in_header = false;
            } else if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                if skipping {
                    continue;
                }
            } else {
                skipping = line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes());
                if skipping {
                    continue;
                }
            }
        }
        out.extend_from_slice(line);
    }
    out
}

/// The corpus directory (`target/corpus`, fetched by
/// `../shared/corpus/fetch-spamassassin`); fails clearly when missing.
pub fn corpus() -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/corpus");
    if !root.join("spam-1").is_dir() {
        bail!("the corpus is not at {}: run scripts/test (which fetches it)", root.display());
    }
    Ok(root)
}

/// The messages of a corpus group, sorted by file name, at most `limit`.
pub fn corpus_messages(group: &str, limit: usize) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let dir = corpus()?.join(group);
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)?.flatten().map(|e| e.path()).collect();
    names.sort();
    names
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .take(limit)
        .map(|p| Ok((p.file_name().unwrap_or_default().to_string_lossy().into_owned(), std::fs::read(&p)?)))
        .collect()
}

/// Runs `imap_user.py` (a mail user with Python's imaplib) against a
/// loopback IMAP port as `login`; answers what it printed.
pub(crate) fn imap_user(port: u16, login: &str, password: &str, args: &[&str]) -> anyhow::Result<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("imap_user.py");
    let out =
        Command::new("python3").arg(&script).args([port.to_string().as_str(), login, password]).args(args).output()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() {
        bail!("imap_user {args:?} as {login} failed ({text}): {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(text)
}

/// Delivers a message to `recipient` over LMTP at a loopback port, as an
/// MTA would.
pub fn lmtp_deliver(port: u16, recipient: &str, raw: &[u8]) -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader};
    let stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    let mut expect = |reader: &mut BufReader<std::net::TcpStream>, code: &str| -> anyhow::Result<()> {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            if !line.starts_with(code) {
                bail!("LMTP: expected {code}, got {line:?}");
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    };
    expect(&mut reader, "220")?;
    writer.write_all(b"LHLO test\r\n")?;
    expect(&mut reader, "250")?;
    writer.write_all(b"MAIL FROM:<sender@example.net>\r\n")?;
    expect(&mut reader, "250")?;
    writer.write_all(format!("RCPT TO:<{recipient}>\r\n").as_bytes())?;
    expect(&mut reader, "250")?;
    writer.write_all(b"DATA\r\n")?;
    expect(&mut reader, "354")?;
    writer.write_all(&smtp_data(raw))?;
    expect(&mut reader, "250")?;
    writer.write_all(b"QUIT\r\n")?;
    Ok(())
}

/// A message as SMTP and LMTP send it after DATA: CRLF line ends, lines
/// starting with a dot doubled, and the closing dot line.
pub(crate) fn smtp_data(raw: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(raw.len() + 64);
    for line in raw.split_inclusive(|b| *b == b'\n') {
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.first() == Some(&b'.') {
            data.push(b'.');
        }
        data.extend_from_slice(content);
        data.extend_from_slice(b"\r\n");
    }
    data.extend_from_slice(b".\r\n");
    data
}

/// Waits until `condition` holds, up to `timeout`.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}
