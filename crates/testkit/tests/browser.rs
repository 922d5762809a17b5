//! The browser harness drives a real headless Chromium against a page served
//! on loopback. Set `STARLING_SKIP_BROWSER` to skip it where Chromium cannot
//! be installed; otherwise a missing Chromium fails the test.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;

use starling_testkit::browser::Browser;

const PAGE: &str = "<!doctype html><html><head><title>Starling</title></head><body>\
<h1>Search</h1><form><label for=q>Query</label><input id=q name=q></form></body></html>";

/// Serves `PAGE` for every request, on a free loopback port, from a thread
/// that lives as long as the test process.
fn serve_page() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PAGE}",
                PAGE.len()
            );
        }
    });
    format!("http://{addr}/")
}

#[tokio::test]
async fn drives_chromium_through_a_form() -> anyhow::Result<()> {
    if std::env::var_os("STARLING_SKIP_BROWSER").is_some() {
        println!("skipped: STARLING_SKIP_BROWSER is set");
        return Ok(());
    }
    let url = serve_page();
    let browser = Browser::start().await?;
    browser.goto(&url).await?;
    assert_eq!(browser.text("label[for=q]").await?, "Query");
    browser.fill("#q", "invoice 2024").await?;
    assert_eq!(browser.value("#q").await?, "invoice 2024");
    browser.fill("#q", "replaced").await?;
    assert_eq!(browser.value("#q").await?, "replaced");
    browser.click("h1").await?;

    let path = browser.screenshot("testkit-form").await?;
    assert_eq!(path.file_name().and_then(|n| n.to_str()), Some("testkit-form.png"));
    let png = std::fs::read(&path)?;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", path.display());

    browser.close().await;
    Ok(())
}
