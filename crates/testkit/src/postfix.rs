//! A private Postfix for in-line (milter) tests and benchmarks: its own
//! configuration directory and queue in a temporary directory, SMTP on a
//! loopback port, mail for `example.org` delivered over LMTP to a test
//! Dovecot, and an optional milter. Postfix's master runs as root (it
//! drops to the `postfix` user): as another user, the tests run Postfix's
//! commands through `sudo -n` (passwordless sudo, as CI machines have).

use std::io::{BufRead, BufReader, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::free_port;

/// The domain the test Postfix delivers to Dovecot.
pub const DOMAIN: &str = "example.org";

/// Options of a test Postfix.
#[derive(Clone, Debug, Default)]
pub struct PostfixOptions {
    /// The milter Postfix asks (`inet:127.0.0.1:PORT` or `unix:/path`);
    /// `None`: no milter.
    pub milter: Option<String>,
    /// Postfix's `milter_default_action` when the milter fails or is down
    /// (`accept` when `None`).
    pub milter_default_action: Option<String>,
}

/// A running private Postfix.
pub struct Postfix {
    dir: tempfile::TempDir,
    /// Its SMTP port (loopback).
    pub smtp_port: u16,
}

/// The services a test instance needs, none chrooted (the queue has no
/// copy of the system files).
const MASTER_CF: &str = "\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
";

impl Postfix {
    /// Starts a Postfix that delivers `example.org` mail to `lmtp_port`.
    pub fn start(lmtp_port: u16, options: PostfixOptions) -> anyhow::Result<Postfix> {
        if !Path::new("/usr/sbin/postfix").exists() {
            bail!("postfix is not installed: run scripts/test (which installs it) or apt-get install postfix");
        }
        if !crate::running_as_root() && !Command::new("sudo").args(["-n", "true"]).status().is_ok_and(|s| s.success()) {
            bail!(
                "a private Postfix needs root or passwordless sudo (its master drops privileges to the postfix user)"
            );
        }
        let dir = tempfile::Builder::new().prefix("starling-postfix-").tempdir()?;
        let postfix = Postfix { dir, smtp_port: free_port() };
        postfix.write_config(lmtp_port, &options)?;
        postfix.launch()?;
        Ok(postfix)
    }

    fn config_dir(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    fn write_config(&self, lmtp_port: u16, options: &PostfixOptions) -> anyhow::Result<()> {
        let d = self.dir.path();
        std::fs::create_dir_all(self.config_dir())?;
        for sub in ["queue", "data"] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        // The queue and data directories belong to the postfix user.
        let status = privileged("chown").arg("postfix:").arg(d.join("data")).status()?;
        if !status.success() {
            bail!("cannot chown the Postfix data directory");
        }
        // The temporary directory is 0700: Postfix's daemons (as postfix)
        // must get through it.
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let milter = match &options.milter {
            Some(milter) => format!(
                "smtpd_milters = {milter}\nnon_smtpd_milters =\nmilter_protocol = 6\n\
                 milter_default_action = {}\nmilter_connect_timeout = 2s\nmilter_command_timeout = 10s\n\
                 milter_content_timeout = 30s\n",
                options.milter_default_action.as_deref().unwrap_or("accept")
            ),
            None => String::new(),
        };
        let main = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {path}/queue\n\
             data_directory = {path}/data\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             maillog_file_prefixes = {path}\n\
             maillog_file = {path}/postfix.log\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             myhostname = mx.starling.test\n\
             mydestination =\n\
             mynetworks = 127.0.0.0/8\n\
             relay_domains = {DOMAIN}\n\
             relay_transport = lmtp:inet:127.0.0.1:{lmtp_port}\n\
             relay_recipient_maps =\n\
             alias_maps =\n\
             alias_database =\n\
             local_recipient_maps =\n\
             smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n\
             smtpd_recipient_restrictions =\n\
             smtputf8_enable = no\n\
             biff = no\n\
             queue_run_delay = 1s\n\
             minimal_backoff_time = 1s\n\
             maximal_backoff_time = 2s\n\
             smtpd_client_connection_count_limit = 0\n\
             smtpd_client_connection_rate_limit = 0\n\
             default_process_limit = 200\n\
             {milter}",
            path = d.display(),
        );
        std::fs::write(self.config_dir().join("main.cf"), main)?;
        let master = format!("127.0.0.1:{} inet n - n - - smtpd\n{MASTER_CF}", self.smtp_port);
        std::fs::write(self.config_dir().join("master.cf"), master)?;
        Ok(())
    }

    fn postfix(&self) -> Command {
        let mut command = privileged("/usr/sbin/postfix");
        command.arg("-c").arg(self.config_dir());
        command
    }

    fn launch(&self) -> anyhow::Result<()> {
        let out = self.postfix().arg("start").output().context("cannot run postfix")?;
        if !out.status.success() {
            bail!(
                "postfix did not start: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.smtp_port)).is_err() {
            if Instant::now() > deadline {
                bail!("postfix does not listen on {}:\n{}", self.smtp_port, self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Postfix's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postfix.log")).unwrap_or_default()
    }

    /// The messages waiting in the queue (held ones included).
    pub fn queued(&self) -> usize {
        self.queue().lines().filter(|l| l.starts_with('{')).count()
    }

    /// The messages in the hold queue (quarantined by a milter).
    pub fn held(&self) -> usize {
        self.queue().lines().filter(|l| l.contains("\"queue_name\": \"hold\"")).count()
    }

    /// The queue as `postqueue -j` lists it (one JSON object per message).
    fn queue(&self) -> String {
        let out = privileged("/usr/sbin/postqueue").arg("-c").arg(self.config_dir()).arg("-j").output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
    }

    /// Sends one message over SMTP from `sender` to `recipients`; the
    /// server's final reply to the message (`250 …` when accepted).
    pub fn send(&self, sender: &str, recipients: &[&str], raw: &[u8]) -> anyhow::Result<String> {
        let mut client = SmtpClient::connect(self.smtp_port)?;
        let reply = client.send(sender, recipients, raw)?;
        client.quit();
        Ok(reply)
    }

    /// A client for sending many messages over one session.
    pub fn client(&self) -> anyhow::Result<SmtpClient> {
        SmtpClient::connect(self.smtp_port)
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = self.postfix().arg("stop").output();
        // The master's pid file goes when it has exited; wait a little so
        // the temporary directory can be removed.
        let pid = self.dir.path().join("queue/pid/master.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        while pid.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A command run as root: directly when this process is root, else
/// through `sudo -n`.
fn privileged(program: &str) -> Command {
    if crate::running_as_root() {
        Command::new(program)
    } else {
        let mut command = Command::new("sudo");
        command.args(["-n", program]);
        command
    }
}

/// A minimal SMTP client (one session, several messages).
pub struct SmtpClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl SmtpClient {
    /// Connects and says EHLO.
    pub fn connect(port: u16) -> anyhow::Result<SmtpClient> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut client = SmtpClient { reader: BufReader::new(stream.try_clone()?), writer: stream };
        client.expect("220")?;
        client.command("EHLO client.starling.test\r\n", "250")?;
        Ok(client)
    }

    fn reply(&mut self) -> anyhow::Result<String> {
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                bail!("SMTP: the server closed the connection");
            }
            reply.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(reply);
            }
        }
    }

    fn expect(&mut self, code: &str) -> anyhow::Result<String> {
        let reply = self.reply()?;
        if !reply.starts_with(code) {
            bail!("SMTP: expected {code}, got {reply:?}");
        }
        Ok(reply)
    }

    fn command(&mut self, line: &str, code: &str) -> anyhow::Result<String> {
        self.writer.write_all(line.as_bytes())?;
        self.expect(code)
    }

    /// Sends one message; the server's reply to its end (`250 …` when
    /// accepted, the refusal otherwise).
    pub fn send(&mut self, sender: &str, recipients: &[&str], raw: &[u8]) -> anyhow::Result<String> {
        self.command(&format!("MAIL FROM:<{sender}>\r\n"), "250")?;
        for recipient in recipients {
            self.command(&format!("RCPT TO:<{recipient}>\r\n"), "250")?;
        }
        self.command("DATA\r\n", "354")?;
        self.writer.write_all(&crate::smtp_data(raw))?;
        let reply = self.reply()?;
        if !reply.starts_with('2') {
            // A refused message leaves the session usable after RSET.
            let _ = self.command("RSET\r\n", "250");
        }
        Ok(reply.trim_end().to_owned())
    }

    /// Ends the session.
    pub fn quit(mut self) {
        let _ = self.command("QUIT\r\n", "221");
    }
}
