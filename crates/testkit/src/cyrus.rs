//! A private Cyrus IMAP (Debian's `cyrus-imapd`): its own `imapd.conf`,
//! `cyrus.conf`, SASL database, spool and sockets in a temporary directory;
//! IMAP and LMTP on loopback ports; an administrator (`starling`) who may
//! act for any user with SASL PLAIN's authorisation identity, and users
//! with their own passwords. Cyrus's default namespace: a user's folders
//! live below INBOX (`INBOX.Spam`), `.` separates levels. `idled` pushes
//! changes to IDLE sessions at once.
//!
//! Cyrus's master runs as root and changes to the `cyrus` user, which owns
//! the directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::{free_port, running_as_root, wait_until};

/// The administrator's name in every test Cyrus.
pub const ADMIN: &str = "starling";
/// Its password.
pub const ADMIN_PASSWORD: &str = "admin-secret";

const BIN: &str = "/usr/lib/cyrus/bin";

/// A Cyrus program: installed, or unpacked from the `cyrus-imapd` package
/// into `target/cyrus` (`scripts/test` does that: the package conflicts with
/// Dovecot's, so `imapd` and `idled` are taken from it without installing).
fn program(name: &str) -> PathBuf {
    let installed = Path::new(BIN).join(name);
    if installed.exists() {
        return installed;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/cyrus/usr/lib/cyrus/bin").join(name)
}

/// A running private Cyrus.
pub struct Cyrus {
    dir: tempfile::TempDir,
    /// IMAP port (plain, loopback).
    pub imap_port: u16,
    /// LMTP port (loopback, pre-authenticated).
    pub lmtp_port: u16,
    /// The users.
    pub users: Vec<String>,
    master: Child,
}

impl Cyrus {
    /// Starts Cyrus with these users (each with an INBOX); fails with a
    /// clear message when Cyrus is missing or this is not root.
    pub fn start(users: &[&str]) -> anyhow::Result<Cyrus> {
        let missing = ["master", "lmtpd", "imapd", "idled"].into_iter().find(|p| !program(p).exists());
        if missing.is_some() || Command::new("saslpasswd2").arg("-v").output().is_err() {
            bail!(
                "Cyrus IMAP is missing ({}): run scripts/test, which installs cyrus-common and sasl2-bin and \
                 unpacks the cyrus-imapd package into target/cyrus",
                missing.unwrap_or("saslpasswd2")
            );
        }
        if !running_as_root() {
            bail!("the test Cyrus needs root: its master changes to the cyrus user");
        }
        let dir = tempfile::Builder::new().prefix("starling-cyrus-").tempdir()?;
        let (imap_port, lmtp_port) = (free_port(), free_port());
        let root = dir.path();
        // `conf/socket` holds each imapd's end of the IDLE notifications.
        for sub in ["conf/socket", "spool", "run/proc", "run/lock", "run/socket", "sieve"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        let path = |p: &str| root.join(p).display().to_string();
        let config = format!(
            "configdirectory: {conf}\nproc_path: {proc}\nmboxname_lockpath: {lock}\n\
             defaultpartition: default\npartition-default: {spool}\n\
             altnamespace: no\nunixhierarchysep: no\nadmins: {ADMIN}\nallowplaintext: yes\n\
             sasl_pwcheck_method: auxprop\nsasl_auxprop_plugin: sasldb\nsasl_sasldb_path: {sasldb}\n\
             sasl_mech_list: PLAIN\nlmtpsocket: {lmtp}\nidlesocket: {idle}\nnotifysocket: {notify}\n\
             sievedir: {sieve}\nsyslog_prefix: starling-test-cyrus\nspecialusealways: 1\n",
            conf = path("conf"),
            proc = path("run/proc"),
            lock = path("run/lock"),
            spool = path("spool"),
            sasldb = path("sasldb2"),
            lmtp = path("run/socket/lmtp"),
            idle = path("run/socket/idle"),
            notify = path("run/socket/notify"),
            sieve = path("sieve"),
        );
        std::fs::write(root.join("imapd.conf"), config)?;
        let imapd_conf = path("imapd.conf");
        let (imapd, idled) = (program("imapd").display().to_string(), program("idled").display().to_string());
        let services = format!(
            "START {{\n  recover cmd=\"ctl_cyrusdb -r -C {imapd_conf}\"\n}}\n\
             SERVICES {{\n  imap cmd=\"{imapd} -C {imapd_conf}\" listen=\"127.0.0.1:{imap_port}\" prefork=1\n  \
             lmtp cmd=\"lmtpd -a -C {imapd_conf}\" listen=\"127.0.0.1:{lmtp_port}\" prefork=0\n}}\n\
             EVENTS {{\n}}\nDAEMON {{\n  idled cmd=\"{idled} -C {imapd_conf}\"\n}}\n"
        );
        std::fs::write(root.join("cyrus.conf"), services)?;
        for user in std::iter::once(ADMIN).chain(users.iter().copied()) {
            set_password(root, user, &password(user))?;
        }
        let status = Command::new("chown").args(["-R", "cyrus:mail"]).arg(root).status()?;
        if !status.success() {
            bail!("cannot give the test Cyrus's directory to the cyrus user");
        }
        let log = std::fs::File::create(root.join("master.log"))?;
        let master = Command::new(program("master"))
            .arg("-C")
            .arg(root.join("imapd.conf"))
            .arg("-M")
            .arg(root.join("cyrus.conf"))
            .arg("-p")
            .arg(root.join("master.pid"))
            .arg("-D")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start Cyrus's master")?;
        let cyrus = Cyrus { dir, imap_port, lmtp_port, users: users.iter().map(|u| u.to_string()).collect(), master };
        let up = wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", imap_port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", lmtp_port)).is_ok()
        });
        if !up {
            bail!("Cyrus did not start: {}", cyrus.log());
        }
        for user in users {
            cyrus.admin(&["create", &format!("user.{user}")])?;
        }
        Ok(cyrus)
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A file holding the administrator's password (for the agent).
    pub fn password_file(&self) -> PathBuf {
        let path = self.dir().join("admin-password");
        if !path.exists() {
            let _ = std::fs::write(&path, ADMIN_PASSWORD);
        }
        path
    }

    /// What Cyrus's master wrote.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("master.log")).unwrap_or_default()
    }

    /// Delivers a message over LMTP, as an MTA would.
    pub fn lmtp_deliver(&self, user: &str, raw: &[u8]) -> anyhow::Result<()> {
        crate::lmtp_deliver(self.lmtp_port, user, raw)
    }

    /// Acts as `user`, logged in with the user's own password, with the
    /// client `Dovecot::imap_user` uses (`move ID FROM TO`, `keyword …`);
    /// returns how many messages matched.
    pub fn imap_user(&self, user: &str, args: &[&str]) -> anyhow::Result<usize> {
        Ok(self.imap_user_output(user, args)?.parse()?)
    }

    /// The same, returning what the client printed (`inventory FOLDER…`
    /// prints the Message-IDs in each folder as JSON).
    pub fn imap_user_output(&self, user: &str, args: &[&str]) -> anyhow::Result<String> {
        crate::imap_user(self.imap_port, user, &password(user), args)
    }

    /// The Message-IDs in a user's folder (without angle brackets; empty
    /// when the folder does not exist).
    pub fn message_ids(&self, user: &str, folder: &str) -> anyhow::Result<Vec<String>> {
        let text = self.imap_user_output(user, &["inventory", folder])?;
        let inventory: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)?;
        Ok(inventory
            .get(folder)
            .and_then(|ids| ids.as_array())
            .map(|ids| ids.iter().filter_map(|id| id.as_str().map(str::to_owned)).collect())
            .unwrap_or_default())
    }

    /// Runs an administrative IMAP command (`create user.NAME`).
    fn admin(&self, args: &[&str]) -> anyhow::Result<()> {
        let script = format!(
            "import imaplib, sys\nm = imaplib.IMAP4('127.0.0.1', {port})\nm.login('{ADMIN}', '{ADMIN_PASSWORD}')\n\
             status, data = m.{command}({argument:?})\nsys.exit(0 if status == 'OK' else f'{{status}} {{data}}')\n",
            port = self.imap_port,
            command = args[0],
            argument = args[1],
        );
        let out = Command::new("python3").args(["-c", &script]).output()?;
        if !out.status.success() {
            bail!("Cyrus admin {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

impl Drop for Cyrus {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its services.
        let _ = Command::new("kill").arg(self.master.id().to_string()).status();
        if !wait_until(Duration::from_secs(10), || self.master.try_wait().ok().flatten().is_some()) {
            let _ = self.master.kill();
        }
        let _ = self.master.wait();
    }
}

/// A user's password in the test Cyrus.
fn password(user: &str) -> String {
    if user == ADMIN { ADMIN_PASSWORD.to_owned() } else { format!("password-of-{user}") }
}

fn set_password(root: &Path, user: &str, password: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut child = Command::new("saslpasswd2")
        .arg("-f")
        .arg(root.join("sasldb2"))
        .args(["-p", "-c", user])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().context("stdin")?.write_all(password.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("saslpasswd2 failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}
