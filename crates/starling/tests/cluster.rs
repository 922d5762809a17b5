//! The network on a real Redis Cluster (three masters, three replicas, from
//! Debian's redis-server): several stateless API nodes share it, any node
//! answers any agent, the verdicts are those of the embedded store, and a
//! master killed mid-load fails over.

use std::time::{Duration, Instant};

use starling_fingerprint::{Fingerprinter, Key};
use starling_network::NodeConfig;
use starling_proto::client::{self, Authorised, Credential, Target};
use starling_proto::v1::admin_client::AdminClient;
use starling_proto::v1::network_client::NetworkClient;
use starling_proto::v1::{self, Class, ReportClass};
use starling_testkit::redis::RedisCluster;
use starling_testkit::{free_port, testdata, with_message_id};

/// One cluster test at a time in this process: each runs six Redis servers.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A node in its own data directory, on the embedded store or a cluster.
struct TestNode {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    url: String,
    running: Option<starling_network::Running>,
}

impl TestNode {
    async fn start(store: &str) -> TestNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("network");
        let mut config = NodeConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], free_port())),
            data_dir: data.clone(),
            ..NodeConfig::default()
        };
        config.store.url = store.to_owned();
        config.trust.threshold = 1.0;
        config.trust.ham_threshold = 1.0;
        config.trust.consensus_organisations = 1;
        let running = starling_network::start(config).await.expect("node");
        let url = format!("http://{}", running.addr);
        TestNode { _dir: dir, data, url, running: Some(running) }
    }

    async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(20), running.stopped).await;
        }
    }

    async fn admin(&self) -> AdminClient<Authorised> {
        let token = starling_network::node::operator_token(&self.data).expect("token");
        let channel = Target::new(&self.url).connect().await.expect("connect");
        client::admin(channel, Credential::new(&token).expect("token"))
    }

    async fn agent(&self, credential: &str) -> NetworkClient<Authorised> {
        let channel = Target::new(&self.url).connect().await.expect("connect");
        client::network(channel, Credential::new(credential).expect("credential"))
    }

    async fn organisation(&self, name: &str) -> String {
        let request =
            v1::CreateOrganisationRequest { name: name.into(), plan: v1::Plan::Subscription.into(), expires_at: 0 };
        self.admin().await.create_organisation(request).await.expect("organisation").into_inner().credential
    }
}

async fn fingerprinter(agent: &mut NetworkClient<Authorised>) -> Fingerprinter {
    let hello = agent.hello(v1::HelloRequest::default()).await.expect("hello").into_inner();
    Fingerprinter::new(&Key::from_bytes(hello.fingerprint_key.try_into().expect("a 32-byte key")))
}

async fn report(
    agent: &mut NetworkClient<Authorised>,
    set: v1::FingerprintSet,
    class: ReportClass,
    reporter: &str,
) -> bool {
    let report = v1::Report { fingerprints: Some(set), class: class.into(), reporter: reporter.into() };
    match agent.report(v1::ReportRequest { reports: vec![report] }).await {
        Ok(answer) => {
            let outcome = answer.into_inner().outcomes.first().cloned().unwrap_or_default();
            if !outcome.recorded {
                eprintln!("report not recorded: {}", outcome.reason);
            }
            outcome.recorded
        }
        Err(status) => {
            eprintln!("report refused: {status:?}");
            false
        }
    }
}

async fn verdict(agent: &mut NetworkClient<Authorised>, set: v1::FingerprintSet) -> (Class, u32) {
    let answer = agent.check(v1::CheckRequest { messages: vec![set] }).await.expect("check").into_inner();
    let v = answer.verdicts.first().cloned().expect("a verdict");
    (v.class(), (v.confidence * 1000.0).round() as u32)
}

async fn eventually<F: std::future::Future<Output = bool>>(
    timeout: Duration,
    mut condition: impl FnMut() -> F,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The test corpus's spam long enough for a text digest (a report of
/// anything shorter is refused).
fn fingerprinted_spam(fingerprinter: &Fingerprinter) -> Vec<Vec<u8>> {
    testdata(true).into_iter().map(|(_, raw)| raw).filter(|raw| fingerprinter.fingerprint(raw).text.is_some()).collect()
}

/// Messages of the test corpus: (name, bytes, is spam).
fn corpus() -> Vec<(String, Vec<u8>, bool)> {
    let spam = testdata(true).into_iter().map(|(n, r)| (n, r, true));
    spam.chain(testdata(false).into_iter().map(|(n, r)| (n, r, false))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_a_cluster_answer_any_agent_alike() {
    let _serial = SERIAL.lock().await;
    let cluster = RedisCluster::start().expect("a Redis Cluster");
    let mut a = TestNode::start(&cluster.url()).await;
    let mut b = TestNode::start(&cluster.url()).await;
    // An organisation created on one node is known to the other.
    let credential = a.organisation("acme").await;
    let mut on_a = a.agent(&credential).await;
    let mut on_b = b.agent(&credential).await;
    assert!(
        eventually(Duration::from_secs(10), || {
            let mut on_b = on_b.clone();
            async move { on_b.hello(v1::HelloRequest::default()).await.is_ok() }
        })
        .await,
        "the other node knows the organisation"
    );
    // One network: the same fingerprint and activation keys.
    let hello_a = on_a.hello(v1::HelloRequest::default()).await.expect("hello").into_inner();
    let hello_b = on_b.hello(v1::HelloRequest::default()).await.expect("hello").into_inner();
    assert_eq!(hello_a.fingerprint_key, hello_b.fingerprint_key);
    assert_eq!(hello_a.activation_key, hello_b.activation_key);

    // A report on one node: the other one's check says spam (its key filter
    // learnt the keys from the cluster), and its Changes announce it.
    let fingerprinter = fingerprinter(&mut on_a).await;
    let raw = &testdata(true)[3].1;
    let set = starling_proto::to_wire(&fingerprinter.fingerprint(raw));
    assert_eq!(verdict(&mut on_b, set.clone()).await.0, Class::Clean);
    let mut changes_b = b.agent(&credential).await;
    let start = client::changes(&mut changes_b, 0, Duration::ZERO).await.expect("changes").cursor;
    assert!(report(&mut on_a, set.clone(), ReportClass::Spam, "u1").await, "recorded");
    let learnt = eventually(Duration::from_secs(5), || {
        let (mut on_b, set) = (on_b.clone(), set.clone());
        async move { verdict(&mut on_b, set).await.0 == Class::Spam }
    })
    .await;
    assert!(learnt, "node B sees the report made on node A");
    let announced = client::changes(&mut changes_b, start, Duration::from_secs(5)).await.expect("changes");
    assert!(!announced.keys.is_empty(), "node B announces the campaign node A learnt");
    // A mutated copy matches through the other node too.
    let mutated = String::from_utf8_lossy(raw).replace("the", "teh").into_bytes();
    let mutated = starling_proto::to_wire(&fingerprinter.fingerprint(&mutated));
    assert_eq!(verdict(&mut on_b, mutated).await.0, Class::Spam);
    // The store's counters are shared too.
    let stats = b.admin().await.stats(v1::StatsRequest {}).await.expect("stats").into_inner();
    assert!(stats.entries >= 1 && stats.reports >= 1, "{stats:?}");
    // A node restarted on the cluster answers from it at once.
    b.stop().await;
    let mut b = TestNode::start(&cluster.url()).await;
    let mut on_b = b.agent(&credential).await;
    assert_eq!(verdict(&mut on_b, set).await.0, Class::Spam);
    a.stop().await;
    b.stop().await;
}

/// The same reports through an embedded node and a cluster node give the
/// same verdicts and confidences on every message of the test corpus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_gives_the_verdicts_of_the_embedded_store() {
    let _serial = SERIAL.lock().await;
    let cluster = RedisCluster::start().expect("a Redis Cluster");
    let mut embedded = TestNode::start("").await;
    let mut clustered = TestNode::start(&cluster.url()).await;
    let mut verdicts = Vec::new();
    for node in [&embedded, &clustered] {
        let credential = node.organisation("acme").await;
        let mut agent = node.agent(&credential).await;
        // Both nodes must fingerprint alike: one key for both.
        let fingerprinter = Fingerprinter::new(&Key::DEVELOPMENT);
        let messages = corpus();
        // Reports: every other spam by three reporters (enough for new
        // reporters' trust), every fifth by one, a third of the ham as not
        // spam, one spam contradicted by a not-spam report.
        for (i, (_, raw, spam)) in messages.iter().enumerate() {
            let set = starling_proto::to_wire(&fingerprinter.fingerprint(&with_message_id(raw, "x@y")));
            if *spam && i % 2 == 0 {
                for reporter in ["r1", "r2", "r5"] {
                    report(&mut agent, set.clone(), ReportClass::Spam, reporter).await;
                }
            }
            if *spam && i % 5 == 1 {
                report(&mut agent, set.clone(), ReportClass::Spam, "r6").await;
            }
            if !*spam && i % 3 == 0 {
                report(&mut agent, set.clone(), ReportClass::Ham, "r3").await;
            }
            if *spam && i == 4 {
                report(&mut agent, set, ReportClass::Ham, "r4").await;
            }
        }
        let mut answers = Vec::new();
        for (name, raw, _) in &messages {
            let set = starling_proto::to_wire(&fingerprinter.fingerprint(raw));
            answers.push((name.clone(), verdict(&mut agent, set).await));
        }
        verdicts.push(answers);
    }
    let spam = verdicts[0].iter().filter(|(_, (class, _))| *class == Class::Spam).count();
    assert!(spam >= 5, "the scenario blocks something: {spam}");
    assert_eq!(verdicts[0], verdicts[1], "embedded and cluster verdicts differ");
    embedded.stop().await;
    clustered.stop().await;
}

/// A master killed while reports arrive: the cluster promotes its replica,
/// the node keeps answering (a report may be refused as unavailable while
/// the slots move, and the reporter retries), and the acknowledged reports
/// the dead master had not yet copied to its replica are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_mid_load_fails_over() {
    let _serial = SERIAL.lock().await;
    let mut cluster = RedisCluster::start().expect("a Redis Cluster");
    let mut node = TestNode::start(&cluster.url()).await;
    let credential = node.organisation("acme").await;
    let mut agent = node.agent(&credential).await;
    let fingerprinter = fingerprinter(&mut agent).await;
    let messages = fingerprinted_spam(&fingerprinter);
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let victim = cluster.masters()[0];
    for i in 0..400 {
        if i == 100 {
            cluster.kill(victim);
        }
        let raw = with_message_id(&messages[i % messages.len()], &format!("{i}@load"));
        // Distinct messages: a text digest of its own each.
        let raw = [raw.as_slice(), format!("\r\nreference {i}\r\n").as_bytes()].concat();
        let set = starling_proto::to_wire(&fingerprinter.fingerprint(&raw));
        let mut tries = 0;
        loop {
            if report(&mut agent, set.clone(), ReportClass::Spam, &format!("u{}", i % 7)).await {
                acknowledged.push(set);
                break;
            }
            refused += 1;
            tries += 1;
            assert!(tries < 200, "the node answers again after the failover");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    cluster.wait_ok(Duration::from_secs(30)).expect("the cluster recovers");
    let mut lost = 0;
    for set in &acknowledged {
        if verdict(&mut agent, set.clone()).await.0 != Class::Spam {
            lost += 1;
        }
    }
    eprintln!(
        "failover: {} reports acknowledged, {refused} refused while the slots moved, {lost} acknowledged but lost",
        acknowledged.len()
    );
    assert_eq!(acknowledged.len(), 400);
    // Redis replicates asynchronously: the writes a master acknowledged in
    // the last instant before it died may be gone. Everything after the
    // failover, and nearly everything before, is kept.
    assert!(lost <= 20, "{lost} acknowledged reports lost");
    node.stop().await;
}

/// Delivers as an MDA does: write to `tmp/`, rename into `new/`.
fn deliver(maildir: &std::path::Path, name: &str, raw: &[u8]) {
    let tmp = maildir.join("tmp").join(name);
    std::fs::write(&tmp, raw).expect("write");
    std::fs::rename(&tmp, maildir.join("new").join(name)).expect("rename");
}

fn filed(maildir: &std::path::Path) -> usize {
    ["new", "cur"]
        .iter()
        .map(|s| std::fs::read_dir(maildir.join(".Spam").join(s)).map(|d| d.count()).unwrap_or(0))
        .sum()
}

/// An agent given two API nodes of one cluster: when the one it uses dies
/// mid-load, it asks the other at once — mail goes on being filed without
/// waiting for a re-check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_node_killed_mid_load_is_invisible_to_the_agent() {
    let _serial = SERIAL.lock().await;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let cluster = RedisCluster::start().expect("a Redis Cluster");
    let mut a = TestNode::start(&cluster.url()).await;
    let b = TestNode::start(&cluster.url()).await;
    let credential = a.organisation("acme").await;
    let mut reporter = a.agent(&credential).await;
    let fingerprinter = fingerprinter(&mut reporter).await;
    let candidates = fingerprinted_spam(&fingerprinter);
    for raw in &candidates {
        report(&mut reporter, starling_proto::to_wire(&fingerprinter.fingerprint(raw)), ReportClass::Spam, "u1").await;
    }
    // Ten the network now calls spam (a few reports join an earlier
    // near-copy's entry, or are short of trust alone).
    let mut spam = Vec::new();
    for raw in candidates {
        if spam.len() < 10
            && verdict(&mut reporter, starling_proto::to_wire(&fingerprinter.fingerprint(&raw))).await.0 == Class::Spam
        {
            spam.push(raw);
        }
    }
    assert_eq!(spam.len(), 10, "enough known spam");
    let dir = tempfile::tempdir().expect("tempdir");
    let maildir = dir.path().join("mail").join("ann");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    let text = format!(
        "state_dir = {:?}\nmail_store = \"maildir\"\n[maildir]\nroot = {:?}\n[network]\nurl = \"{},{}\"\nretry_seconds = 60\n\
         [console]\nenabled = false\n",
        dir.path().join("state").display().to_string(),
        dir.path().join("mail").display().to_string(),
        a.url,
        b.url
    );
    let config = starling_agent::AgentConfig::from_toml(&text).expect("config");
    let stop = tokio_util::sync::CancellationToken::new();
    let options = starling_agent::Options { credential: Some(credential.clone()), ..Default::default() };
    let agent = tokio::spawn(starling_agent::run(config, options, stop.clone()));
    let wait_filed = |n: usize| {
        let maildir = maildir.clone();
        async move { eventually(Duration::from_secs(30), || std::future::ready(filed(&maildir) >= n)).await }
    };
    for (i, raw) in spam[..5].iter().enumerate() {
        deliver(&maildir, &format!("before-{i}"), &with_message_id(raw, &format!("before-{i}@x")));
    }
    assert!(wait_filed(5).await, "filed through node A");
    // Node A goes away; the network retries every minute here, so only
    // moving to node B at once files the rest within the wait.
    a.stop().await;
    let started = Instant::now();
    for (i, raw) in spam[5..].iter().enumerate() {
        deliver(&maildir, &format!("after-{i}"), &with_message_id(raw, &format!("after-{i}@x")));
    }
    let done = wait_filed(10).await;
    if !done {
        let c = starling_agent::state::open(&dir.path().join("state").join(starling_agent::state::FILE_NAME))
            .expect("state");
        for e in starling_agent::state::events(&c, 0, None, 100).expect("events") {
            eprintln!("event {} {}", e.id, e.text);
        }
    }
    assert!(done, "filed through node B");
    eprintln!("filed through the other node {} ms after the first node stopped", started.elapsed().as_millis());
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), agent).await;
    let mut b = b;
    b.stop().await;
}

/// `starling network migrate`: an embedded store moved to the cluster in
/// two runs (the first stopped by --max-rows), verified, run a third time
/// without effect; a node on the cluster then answers the same credential
/// with the same verdicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_store_migrates_to_the_cluster_resumably_and_verified() {
    let _serial = SERIAL.lock().await;
    let cluster = RedisCluster::start().expect("a Redis Cluster");
    let mut embedded = TestNode::start("").await;
    let credential = embedded.organisation("acme").await;
    let mut agent = embedded.agent(&credential).await;
    let fingerprinter = fingerprinter(&mut agent).await;
    let messages = corpus();
    for (i, (_, raw, spam)) in messages.iter().enumerate() {
        let set = starling_proto::to_wire(&fingerprinter.fingerprint(raw));
        let class = if *spam { ReportClass::Spam } else { ReportClass::Ham };
        for reporter in ["r1", "r2", "r3"].iter().take(1 + i % 3) {
            report(&mut agent, set.clone(), class, reporter).await;
        }
    }
    let mut before = Vec::new();
    for (_, raw, _) in &messages {
        before.push(verdict(&mut agent, starling_proto::to_wire(&fingerprinter.fingerprint(raw))).await);
    }
    assert!(before.iter().any(|(class, _)| *class == Class::Spam));
    embedded.stop().await;

    let migrate = |extra: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_starling"))
            .args(["network", "migrate", "--from"])
            .arg(&embedded.data)
            .args(["--to", &cluster.url()])
            .args(extra)
            .output()
            .expect("starling network migrate");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{text}\n{}", String::from_utf8_lossy(&output.stderr));
        text
    };
    let first = migrate(&["--max-rows", "40"]);
    assert!(first.contains("stopped after --max-rows"), "{first}");
    let second = migrate(&[]);
    assert!(second.contains("verified: row counts equal"), "{second}");
    let third = migrate(&[]);
    assert!(third.contains("verified"), "{third}");
    let copied: Vec<&str> = third.lines().filter(|l| l.contains("copied in this run")).collect();
    assert!(copied.len() == 5 && copied.iter().all(|l| l.contains("rows, 0 copied")), "nothing left to copy: {third}");

    let mut clustered = TestNode::start(&cluster.url()).await;
    let mut agent = clustered.agent(&credential).await;
    let mut after = Vec::new();
    for (_, raw, _) in &messages {
        after.push(verdict(&mut agent, starling_proto::to_wire(&fingerprinter.fingerprint(raw))).await);
    }
    assert_eq!(before, after, "the same verdicts after the migration");
    clustered.stop().await;
}

/// The cluster store's write batch queues its writes and sends them in
/// pipelines: it still reads its own writes before the commit, single and
/// batch reads agree, and the counters come out right after the commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_write_batch_reads_its_queued_writes_and_counts_them() {
    use starling_network::model::{Class as Said, Entry, EntryId, IndexKey, ReportRecord, Reporter, ReporterId};
    use starling_network::store::redis::{RedisOptions, RedisStore};
    use starling_network::store::{Reads, Store, Writes};

    let _serial = SERIAL.lock().await;
    let cluster = RedisCluster::start().expect("a Redis Cluster");
    let store = RedisStore::open(&RedisOptions::from_url(&cluster.url(), 1_000, 0).expect("url")).expect("open");
    let entry = Entry {
        text: None,
        slots: vec![],
        shingles: 0,
        attachments: vec![],
        urls: vec![],
        domains: vec![],
        first_seen: 10,
        last_seen: 10,
        credited: Default::default(),
    };
    let (id, reporter) = (EntryId([7; 16]), ReporterId([8; 16]));
    // Keys on different masters, most likely: several bands.
    let keys: Vec<IndexKey> = (0..8).map(|band| IndexKey::Band(band, 1_000 + u64::from(band))).collect();

    let mut w = store.writer().expect("writer");
    w.put_entry(id, &entry).expect("entry");
    assert_eq!(w.entry(id).expect("read"), Some(entry.clone()), "a batch reads its own queued write");
    for key in &keys {
        w.add_posting(*key, id, 4).expect("posting");
        w.add_posting(*key, id, 4).expect("the same posting again");
    }
    w.put_report(id, reporter, &ReportRecord { org: 1, class: Said::Spam, at: 10 }).expect("report");
    w.put_reporter(reporter, &Reporter { org: 1, reports: 1, ..Reporter::default() }).expect("reporter");
    assert_eq!(w.postings_of(&keys).expect("batch read"), vec![vec![id]; keys.len()]);
    w.commit().expect("commit");

    let r = store.reader().expect("reader");
    assert_eq!(r.entries_of(&[id, EntryId([9; 16])]).expect("entries"), vec![Some(entry), None]);
    assert_eq!(r.reports_of(&[id]).expect("reports")[0].len(), 1);
    assert_eq!(r.reporters_of(&[reporter]).expect("reporters")[0].map(|u| u.reports), Some(1));
    let stats = r.stats().expect("stats");
    assert_eq!((stats.entries, stats.reports, stats.reporters, stats.index_keys), (1, 1, 1, keys.len() as u64));
    drop(r);

    let mut w = store.writer().expect("writer");
    assert!(w.delete_report(id, reporter).expect("delete"), "the report was there");
    for key in &keys {
        w.remove_posting(*key, id).expect("remove posting");
    }
    w.delete_entry(id).expect("delete entry");
    w.commit().expect("commit");
    let r = store.reader().expect("reader");
    assert!(r.postings_of(&keys).expect("postings").iter().all(Vec::is_empty));
    assert_eq!(r.entry(id).expect("entry"), None);
    let stats = r.stats().expect("stats");
    assert_eq!((stats.entries, stats.reports, stats.index_keys), (0, 0, 0));
}

/// A node that falls further behind the other nodes' announcements than
/// the stream keeps is told so (it then warms its key filter from the store
/// and tells its `Changes` readers to rescan); a node that keeps up is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_further_behind_than_the_announcements_kept_is_told() {
    use starling_network::store::Store;
    use starling_network::store::redis::{RedisOptions, RedisStore};

    let _serial = SERIAL.lock().await;
    let cluster = RedisCluster::start().expect("a Redis Cluster");
    let options = RedisOptions { stream_keep: 1_000, ..RedisOptions::from_url(&cluster.url(), 1_000, 0).expect("url") };
    let (writer, behind, keeping_up) = (
        RedisStore::open(&options).expect("open"),
        RedisStore::open(&options).expect("open"),
        RedisStore::open(&options).expect("open"),
    );
    let wait = Duration::from_millis(10);
    let (mut far, mut near) = (String::new(), String::new());
    behind.follow(&mut far, wait).expect("start following");
    keeping_up.follow(&mut near, wait).expect("start following");
    let mut seen = 0;
    for round in 0u32..4_000 {
        writer.announce(&[round.to_be_bytes().to_vec()], &[]).expect("announce");
        if round % 100 == 99 {
            let announced = keeping_up.follow(&mut near, wait).expect("follow").expect("shared");
            assert!(!announced.gap, "a node that keeps up misses nothing");
            seen += announced.filter.len();
        }
    }
    assert_eq!(seen, 4_000, "it read every announcement");
    let announced = behind.follow(&mut far, wait).expect("follow").expect("shared");
    assert!(announced.gap, "announcements it never read were trimmed");
    // What is still kept is read on.
    let mut read = announced.filter.len();
    loop {
        let more = behind.follow(&mut far, wait).expect("follow").expect("shared");
        if more.filter.is_empty() {
            break;
        }
        read += more.filter.len();
    }
    assert!((1_000..4_000).contains(&read), "the kept announcements: {read}");
}
