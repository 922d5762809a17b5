//! Backing up and restoring as an administrator does: `starling backup`
//! while `starling serve` runs (the state database and the embedded
//! network's store, copied consistently), `starling restore` refused while
//! it runs and for a damaged backup, then accepted with the service stopped
//! — and the service starts again on the restored state. The same for a
//! network node (`starling network backup` / `restore`).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{ok, serve, spawn_serve, starling};
use starling_testkit::{free_port, wait_until};

fn failed(out: Output) -> String {
    assert!(!out.status.success(), "expected a refusal:\n{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Each mailbox with whether it is filtered.
fn users(config: &Path) -> Vec<(String, bool)> {
    let listed = ok(starling(config, &["users", "list", "--json"]));
    let mut users: Vec<(String, bool)> = listed
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("json"))
        .map(|user| (user["name"].as_str().expect("name").to_owned(), user["enabled"].as_bool().expect("enabled")))
        .collect();
    users.sort();
    users
}

#[test]
fn a_backup_taken_while_serving_restores_the_state_and_the_network() {
    let mut service = serve();
    let config = service.config.clone();
    ok(starling(&config, &["users", "add", "alice", "bob"]));
    ok(starling(&config, &["whitelist", "add", "@partner.example"]));

    let backup = service.dir.path().join("backup");
    let out = ok(starling(&config, &["backup", backup.to_str().expect("path")]));
    assert!(out.contains("backed up"), "{out}");
    // The embedded node, still running, wrote the copy of its store.
    assert!(out.contains("network store: meta"), "{out}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(backup.join("MANIFEST.json")).expect("manifest")).expect("json");
    let files: Vec<&str> =
        manifest["files"].as_array().expect("files").iter().filter_map(|f| f["path"].as_str()).collect();
    for wanted in ["state.sqlite3", "network/network.redb", "network/operator.token", "embedded-network.credential"] {
        assert!(files.contains(&wanted), "{wanted} is not in the backup: {files:?}");
    }
    assert!(!files.iter().any(|f| f.ends_with("console.url")), "{files:?}");
    let again = starling(&config, &["backup", backup.to_str().expect("path")]);
    assert!(failed(again).contains("not empty"));

    let before = users(&config);
    // Life goes on after the backup.
    ok(starling(&config, &["users", "add", "carol"]));
    ok(starling(&config, &["users", "disable", "alice"]));

    let refused = starling(&config, &["restore", backup.to_str().expect("path")]);
    assert!(failed(refused).contains("stop it first"));

    service.child.kill().expect("stop");
    service.child.wait().expect("stopped");

    // A damaged copy is refused before anything is touched.
    let damaged = service.dir.path().join("damaged");
    copy_dir(&backup, &damaged);
    let mut bytes = std::fs::read(damaged.join("state.sqlite3")).expect("db");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(damaged.join("state.sqlite3"), bytes).expect("damage");
    let refused = starling(&config, &["restore", damaged.to_str().expect("path")]);
    assert!(failed(refused).contains("damaged"));

    let out = ok(starling(&config, &["restore", backup.to_str().expect("path")]));
    assert!(out.contains("what was there is in"), "{out}");
    let aside = std::fs::read_dir(service.dir.path().join("state"))
        .expect("state")
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("replaced-"))
        .expect("the replaced state is kept");
    assert!(aside.path().join("state.sqlite3").exists());

    // The service starts on the restored state: the users of the backup,
    // its whitelist, and the embedded network with the organisation's
    // credential.
    std::fs::remove_file(service.dir.path().join("state").join(starling_console::URL_FILE)).expect("old url");
    service.child = spawn_serve(&config);
    let url = service.dir.path().join("state").join(starling_console::URL_FILE);
    assert!(wait_until(Duration::from_secs(60), || url.exists()), "the console did not start again");
    assert_eq!(users(&config), before);
    assert_eq!(before, [("alice".to_owned(), true), ("bob".to_owned(), true)]);
    assert!(ok(starling(&config, &["whitelist", "list"])).contains("@partner.example"));
    assert!(
        wait_until(Duration::from_secs(30), || ok(starling(&config, &["status"])).contains("network:   up")),
        "the restored credential is accepted by the restored network"
    );
}

#[test]
fn a_network_node_is_backed_up_while_running_and_restored_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("node");
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let node = |data: &Path| {
        Command::new(env!("CARGO_BIN_EXE_starling"))
            .args(["network", "serve", "--listen", &address, "--data"])
            .arg(data)
            .env("STARLING_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts")
    };
    let network = |args: &[&str], data: &Path| {
        Command::new(env!("CARGO_BIN_EXE_starling"))
            .arg("network")
            .args(args)
            .args(["--network", &address, "--data"])
            .arg(data)
            .output()
            .expect("starling network runs")
    };
    let mut running = node(&data);
    assert!(
        wait_until(Duration::from_secs(30), || network(&["org", "add", "acme"], &data).status.success()),
        "the node answers"
    );
    let backup = dir.path().join("backup");
    let out = String::from_utf8(
        Command::new(env!("CARGO_BIN_EXE_starling"))
            .args(["network", "backup", "--network", &address, "--data"])
            .arg(&data)
            .arg(&backup)
            .output()
            .expect("backup")
            .stdout,
    )
    .expect("utf-8");
    assert!(out.contains("organisations 1"), "{out}");
    assert!(network(&["org", "add", "later"], &data).status.success());

    let restore = |data: &Path| {
        Command::new(env!("CARGO_BIN_EXE_starling"))
            .args(["network", "restore", "--data"])
            .arg(data)
            .arg(&backup)
            .output()
            .expect("restore")
    };
    assert!(failed(restore(&data)).contains("already open"), "refused while the node runs");
    running.kill().expect("stop");
    running.wait().expect("stopped");
    assert!(restore(&data).status.success());

    let mut running = node(&data);
    assert!(
        wait_until(Duration::from_secs(30), || network(&["org", "list"], &data).status.success()),
        "the restored node answers"
    );
    let listed = String::from_utf8(network(&["org", "list"], &data).stdout).expect("utf-8");
    assert!(listed.contains("acme") && !listed.contains("later"), "{listed}");
    running.kill().expect("stop");
    running.wait().expect("stopped");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("read").filter_map(Result::ok) {
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}
