//! A headless Chromium driven over WebDriver, for browser tests.
//!
//! [`Browser::start`] runs a private `chromedriver` on a free loopback port,
//! which starts Chromium headless with a new empty profile in a temporary
//! directory; [`Browser::close`] (or dropping the `Browser`) ends the
//! session and stops both. Nothing is installed here: `scripts/test`
//! installs the `chromium` and `chromium-driver` packages.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let browser = starling_testkit::browser::Browser::start().await?;
//! browser.goto("http://127.0.0.1:8080/").await?;
//! browser.fill("#q", "invoice").await?;
//! browser.click("button[type=submit]").await?;
//! assert_eq!(browser.text("h1").await?, "Results");
//! browser.screenshot("search-results").await?;
//! browser.close().await;
//! # Ok(())
//! # }
//! ```

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fantoccini::elements::Element;
use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder, Locator};

/// How long [`Browser::start`] waits for chromedriver to accept a session.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the element helpers wait for their element to appear.
const ELEMENT_TIMEOUT: Duration = Duration::from_secs(10);
/// The page-load timeout of every session.
const PAGE_LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// The hint given whenever a binary is missing.
const INSTALL_HINT: &str = "install chromium and chromium-driver (scripts/test does)";

/// A headless Chromium under a private chromedriver.
///
/// The helpers take CSS selectors and wait (at most 10 s) for their element;
/// `client` is there for anything they do not cover.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    session_id: Option<String>,
    port: u16,
    chromedriver: Child,
    screenshots: PathBuf,
    /// The Chromium profile and chromedriver's log; removed after both stop.
    dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session (1280×900 window,
    /// 30 s page-load timeout).
    ///
    /// chromedriver is `$STARLING_CHROMEDRIVER`, else `/usr/bin/chromedriver`,
    /// else `chromedriver` on `PATH`; Chromium is `$STARLING_CHROMIUM`, else
    /// `/usr/bin/chromium`. Fails with a clear message when either is missing.
    pub async fn start() -> anyhow::Result<Browser> {
        let chromedriver = chromedriver_path()?;
        let chromium = chromium_path()?;
        let dir = tempfile::Builder::new().prefix("starling-browser-").tempdir()?;
        let profile = dir.path().join("profile");
        std::fs::create_dir(&profile)?;
        let log = dir.path().join("chromedriver.log");

        let mut capabilities = fantoccini::wd::Capabilities::new();
        capabilities.insert("browserName".into(), "chrome".into());
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.display()),
                    "--window-size=1280,900",
                ],
            }),
        );
        let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(capabilities);

        // free_port() releases the port before chromedriver binds it: if
        // another process takes it meanwhile, chromedriver exits; try again.
        let mut attempts = 0;
        let (port, mut child, client) = loop {
            attempts += 1;
            let port = crate::free_port();
            let mut child = spawn_chromedriver(&chromedriver, port, &log)?;
            match connect(&builder, port, &mut child, &log).await {
                Ok(Some(client)) => break (port, child, client),
                Ok(None) if attempts < 3 => {}
                Ok(None) => bail!("chromedriver exited before accepting a session:\n{}", read_log(&log)),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e);
                }
            }
        };

        let session_id = match client.session_id().await {
            Ok(id) => id,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e).context("reading the WebDriver session id");
            }
        };
        let browser = Browser { client, session_id, port, chromedriver: child, screenshots: screenshot_dir(), dir };
        let timeouts =
            TimeoutConfiguration::new(Some(PAGE_LOAD_TIMEOUT), Some(PAGE_LOAD_TIMEOUT), Some(Duration::ZERO));
        browser.client.update_timeouts(timeouts).await.context("setting the WebDriver timeouts")?;
        Ok(browser)
    }

    /// The directory screenshots go to: `$STARLING_TEST_ARTEFACTS` if set,
    /// else `<workspace>/target/test-artefacts/browser`.
    pub fn screenshot_dir(&self) -> &Path {
        &self.screenshots
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client.goto(url).await.with_context(|| format!("opening {url}"))
    }

    /// Waits (at most 10 s) for an element matching the CSS selector.
    pub async fn wait_for(&self, css: &str) -> anyhow::Result<Element> {
        self.client
            .wait()
            .at_most(ELEMENT_TIMEOUT)
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("waiting for `{css}`"))
    }

    /// Clears the field matching `css` and types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let field = self.wait_for(css).await?;
        field.clear().await.with_context(|| format!("clearing `{css}`"))?;
        field.send_keys(text).await.with_context(|| format!("typing into `{css}`"))
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.wait_for(css).await?.click().await.with_context(|| format!("clicking `{css}`"))
    }

    /// The rendered text of the element matching `css`.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        self.wait_for(css).await?.text().await.with_context(|| format!("reading the text of `{css}`"))
    }

    /// Waits (at most 10 s) until the element matching `css` has a text
    /// containing `needle`, and returns that text: for a page that
    /// replaces one with the same elements (a search's results), so what
    /// follows acts on the new page.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + ELEMENT_TIMEOUT;
        loop {
            // The element may be replaced between finding and reading it.
            if let Ok(text) = self.text(css).await
                && text.contains(needle)
            {
                return Ok(text);
            }
            if Instant::now() >= deadline {
                bail!("`{css}` did not come to contain {needle:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The current value of the form field matching `css` (empty if none).
    pub async fn value(&self, css: &str) -> anyhow::Result<String> {
        let value = self.wait_for(css).await?.prop("value").await.with_context(|| format!("reading `{css}`"))?;
        Ok(value.unwrap_or_default())
    }

    /// Saves a screenshot of the window as `<name>.png` in
    /// [`screenshot_dir`](Self::screenshot_dir) (created if needed;
    /// characters other than letters, digits, `-`, `_` and `.` in `name`
    /// become `_`) and returns its path.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await.context("taking a screenshot")?;
        std::fs::create_dir_all(&self.screenshots)
            .with_context(|| format!("creating {}", self.screenshots.display()))?;
        let name: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        let path = self.screenshots.join(format!("{name}.png"));
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Ends the WebDriver session (which closes Chromium) and stops
    /// chromedriver.
    pub async fn close(mut self) {
        let client = self.client.clone();
        if client.close().await.is_ok() {
            self.session_id = None;
        }
        // Drop stops chromedriver (and retries the session's end if needed).
    }

    /// chromedriver's output so far, for failure messages.
    pub fn chromedriver_log(&self) -> String {
        read_log(&self.dir.path().join("chromedriver.log"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The client's own end-of-session request runs on the async runtime,
        // which may be gone (a panicking test): end the session here, so that
        // chromedriver closes Chromium before it is killed.
        if let Some(id) = self.session_id.take() {
            delete_session(self.port, &id);
        }
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
    }
}

/// `DELETE /session/<id>`, blocking and bounded (a few seconds).
fn delete_session(port: u16, id: &str) {
    let Ok(mut stream) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let request = format!(
        "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return;
    }
    // chromedriver keeps the connection open: read just the one response.
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut chunk) {
        response.extend_from_slice(&chunk[..n]);
        if response_complete(&response) {
            break;
        }
    }
}

/// Whether `response` holds a whole HTTP response with a `Content-Length`.
fn response_complete(response: &[u8]) -> bool {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&response[..end]);
    let length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    response.len() >= end + 4 + length
}

fn spawn_chromedriver(chromedriver: &Path, port: u16, log: &Path) -> anyhow::Result<Child> {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {}", chromedriver.display()))
}

/// Connects to chromedriver once it listens, retrying connection failures
/// until [`START_TIMEOUT`]; `None` if chromedriver exited first.
async fn connect(
    builder: &ClientBuilder<hyper_util::client::legacy::connect::HttpConnector>,
    port: u16,
    child: &mut Child,
    log: &Path,
) -> anyhow::Result<Option<Client>> {
    use fantoccini::error::NewSessionError;
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(None);
        }
        match builder.connect(&url).await {
            Ok(client) => return Ok(Some(client)),
            Err(NewSessionError::Failed(_) | NewSessionError::FailedC(_) | NewSessionError::Lost(_))
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                bail!("chromedriver on port {port} gave no session: {e}\nchromedriver's output:\n{}", read_log(log))
            }
        }
    }
}

/// The last 4 KiB of chromedriver's output.
fn read_log(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let start = text.len().saturating_sub(4096);
    let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
    text[start..].to_owned()
}

fn chromedriver_path() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("STARLING_CHROMEDRIVER") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("STARLING_CHROMEDRIVER={} does not exist", path.display());
        }
        return Ok(path);
    }
    let default = Path::new("/usr/bin/chromedriver");
    if default.is_file() {
        return Ok(default.to_owned());
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("chromedriver")).find(|p| p.is_file()))
        .with_context(|| format!("chromedriver not found: {INSTALL_HINT}, or set STARLING_CHROMEDRIVER"))
}

fn chromium_path() -> anyhow::Result<PathBuf> {
    let (path, origin) = match std::env::var_os("STARLING_CHROMIUM") {
        Some(path) => (PathBuf::from(path), "STARLING_CHROMIUM"),
        None => (PathBuf::from("/usr/bin/chromium"), "the default"),
    };
    if !path.is_file() {
        bail!("Chromium not found at {} ({origin}): {INSTALL_HINT}, or set STARLING_CHROMIUM", path.display());
    }
    Ok(path)
}

/// `$STARLING_TEST_ARTEFACTS`, else `<workspace>/target/test-artefacts/browser`.
fn screenshot_dir() -> PathBuf {
    match std::env::var_os("STARLING_TEST_ARTEFACTS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
            let workspace = crate_dir.parent().and_then(Path::parent).unwrap_or(crate_dir);
            workspace.join("target/test-artefacts/browser")
        }
    }
}
