//! The wall clock jumping under a running `starling serve` — three days
//! forward, then back two, then back thirty (an NTP step, a virtual machine
//! restored from a snapshot, a wrong RTC corrected): mail delivered after
//! each jump is still filed, the service keeps answering, its events are
//! kept. The clock is moved for the service alone with libfaketime (Debian's
//! `faketime`; `scripts/test` installs it); timers run on the monotonic
//! clock, which is left alone, as the kernel does.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use starling_testkit::{testdata, wait_until, with_message_id};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
const WAIT: Duration = Duration::from_secs(60);

fn starling(config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_starling"));
    command.env("STARLING_CONFIG", config).env("STARLING_LOG", "warn");
    command
}

fn deliver(maildir: &Path, id: &str, raw: &[u8]) {
    let tmp = maildir.join("tmp").join(id);
    std::fs::write(&tmp, with_message_id(raw, &format!("{id}@clock"))).expect("write");
    std::fs::rename(&tmp, maildir.join("new").join(id)).expect("deliver");
}

#[test]
fn mail_is_filed_across_clock_jumps_forward_and_back() {
    assert!(Path::new(LIBFAKETIME).exists(), "libfaketime is missing: apt-get install faketime (scripts/test does)");
    let dir = tempfile::tempdir().expect("tempdir");
    let maildir = dir.path().join("mail/alice");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    let state = dir.path().join("state");
    let config = dir.path().join("starling.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\n[maildir]\nroot = {:?}\n[users]\nlist = [\"alice\"]\n[console]\nlisten = \"127.0.0.1:0\"\n\
             [embedded_network]\nlisten = \"127.0.0.1:0\"\n",
            state.display().to_string(),
            dir.path().join("mail").display().to_string()
        ),
    )
    .expect("config");
    let clock = dir.path().join("clock");
    std::fs::write(&clock, "+0\n").expect("clock");
    let mut service = starling(&config)
        .arg("serve")
        .env("LD_PRELOAD", LIBFAKETIME)
        .env("FAKETIME_TIMESTAMP_FILE", &clock)
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let node = state.join("embedded-network.url");
    assert!(wait_until(WAIT, || node.exists() && state.join("cli.token").exists()), "the service started");

    // The campaign is known to the embedded network.
    let spam = &testdata(true)[2].1;
    let file = dir.path().join("spam.eml");
    std::fs::write(&file, spam).expect("spam");
    let address = format!("http://{}", std::fs::read_to_string(&node).expect("address").trim());
    let reported = starling(&config)
        .args(["report", "spam", "--network", &address, "--credential-file"])
        .arg(state.join("embedded-network.credential"))
        .arg(&file)
        .output()
        .expect("report");
    assert!(reported.status.success(), "{}", String::from_utf8_lossy(&reported.stderr));

    let filed = |id: &str| maildir.join(".Spam/new").join(id).exists() || maildir.join(".Spam/cur").join(id).exists();
    for (jump, id) in [("+0", "before"), ("+3d", "forward"), ("+1d", "back-two-days"), ("-30d", "back-a-month")] {
        std::fs::write(&clock, format!("{jump}\n")).expect("jump");
        deliver(&maildir, id, spam);
        assert!(wait_until(WAIT, || filed(id)), "filed after the clock moved to {jump}");
    }
    assert!(service.try_wait().expect("wait").is_none(), "the service is still running");
    let status = starling(&config).arg("status").output().expect("status");
    assert!(String::from_utf8_lossy(&status.stdout).contains("network:   up"), "{status:?}");
    let events = starling(&config).args(["events", "--since", "400d"]).output().expect("events");
    assert!(String::from_utf8_lossy(&events.stdout).contains(" 100 "), "the events are kept: {events:?}");
    let _ = service.kill();
    let _ = service.wait();

    // The service really lived through the jumps: each filing is recorded
    // at the time its clock said.
    let db = starling_agent::state::open(&state.join(starling_agent::state::FILE_NAME)).expect("state");
    let at = |id: &str| -> i64 {
        db.query_row("SELECT at FROM filed WHERE message_id = ?1", [format!("{id}@clock")], |row| row.get(0))
            .expect("a filing")
    };
    let day = 86_400;
    assert!(at("forward") - at("before") > 3 * day - 600, "three days forward");
    assert!(at("forward") - at("back-two-days") > 2 * day - 600, "two days back");
    assert!(at("before") - at("back-a-month") > 30 * day - 600, "a month back");
}
