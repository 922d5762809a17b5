//! `kill -9` during a burst of reports loses no acknowledged report: a real
//! node process is killed at a random moment while clients report, five
//! times over, and every report it answered is found after a restart.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use starling_proto::client::{self, Credential, Target};
use starling_proto::v1;

/// A node process and its address.
struct Node {
    child: Child,
    addr: String,
}

impl Node {
    fn start(data: &Path) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_starling"))
            .args(["network", "serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .env("STARLING_LOG", "warn")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("the node prints its address").unwrap();
            if let Some(url) = line.strip_prefix("starling network node listening on http://") {
                break url.to_owned();
            }
        };
        // Keep draining stderr so the node never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Node { child, addr }
    }

    fn kill(mut self) {
        // SIGKILL: no shutdown code runs.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

fn message(i: u64) -> v1::FingerprintSet {
    let mix = |mut x: u64| {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    };
    v1::FingerprintSet {
        version: u32::from(starling_fingerprint::ALGORITHM_VERSION),
        text: [mix(i), mix(!i)].iter().flat_map(|w| w.to_le_bytes()).collect(),
        slots: (0..64).map(|s| mix(i * 64 + s) as u32).collect(),
        shingles: 100,
        ..Default::default()
    }
}

#[test]
fn acknowledged_reports_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut credential = None;
    let mut next = 0u64;
    for round in 0..5u64 {
        let node = Node::start(dir.path());
        let channel = runtime.block_on(Target::new(&node.addr).connect()).unwrap();
        let secret = credential.get_or_insert_with(|| {
            let token = std::fs::read_to_string(dir.path().join("operator.token")).unwrap();
            let mut admin = client::admin(channel.clone(), Credential::new(&token).unwrap());
            let request = v1::CreateOrganisationRequest { name: "a".into(), plan: 2, expires_at: 0 };
            runtime.block_on(admin.create_organisation(request)).unwrap().into_inner().credential
        });
        let credential = Credential::new(secret).unwrap();

        // Everything acknowledged before any crash is still there.
        let mut checker = client::network(channel.clone(), credential.clone());
        let expected: Vec<u64> = acked.lock().unwrap().iter().copied().collect();
        for chunk in expected.chunks(512) {
            let messages = chunk.iter().map(|&i| message(i)).collect();
            let verdicts =
                runtime.block_on(checker.check(v1::CheckRequest { messages })).unwrap().into_inner().verdicts;
            for (i, verdict) in chunk.iter().zip(verdicts) {
                let reporters = verdict.evidence.map_or(0, |e| e.reporters);
                assert_eq!(reporters, 1, "acknowledged report {i} was lost in round {round}");
            }
        }

        // A burst of reports from four clients, then kill -9 at a random moment.
        let burst: Vec<_> = (0..4)
            .map(|c| {
                let mut reporter = client::network(channel.clone(), credential.clone());
                let acked = acked.clone();
                let first = next + c * 1_000_000;
                runtime.spawn(async move {
                    for i in first.. {
                        let report = v1::Report {
                            fingerprints: Some(message(i)),
                            class: v1::ReportClass::Spam.into(),
                            reporter: format!("user-{i}"),
                        };
                        match reporter.report(v1::ReportRequest { reports: vec![report] }).await {
                            Ok(reply) if reply.get_ref().outcomes[0].recorded => {
                                acked.lock().unwrap().insert(i);
                            }
                            _ => return,
                        }
                    }
                })
            })
            .collect();
        next += 4_000_000;
        let pause = 200 + (round * 7919 + u64::from(std::process::id())) % 400;
        std::thread::sleep(Duration::from_millis(pause));
        node.kill();
        for task in burst {
            let _ = runtime.block_on(task);
        }
        let count = acked.lock().unwrap().len();
        eprintln!("round {round}: killed after {pause} ms; {count} reports acknowledged so far");
        assert!(count > 0, "no report was acknowledged before the kill");
    }
    // A last check after the final kill.
    let node = Node::start(dir.path());
    let channel = runtime.block_on(Target::new(&node.addr).connect()).unwrap();
    let mut checker = client::network(channel, Credential::new(credential.as_deref().unwrap()).unwrap());
    let expected: Vec<u64> = acked.lock().unwrap().iter().copied().collect();
    for chunk in expected.chunks(512) {
        let messages = chunk.iter().map(|&i| message(i)).collect();
        let verdicts = runtime.block_on(checker.check(v1::CheckRequest { messages })).unwrap().into_inner().verdicts;
        assert!(verdicts.iter().all(|v| v.evidence.as_ref().is_some_and(|e| e.reporters == 1)));
    }
    node.kill();
}
