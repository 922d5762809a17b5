//! A real node on loopback, driven through its gRPC API like an agent and an
//! operator would.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use starling_fingerprint::{Fingerprinter, Key};
use starling_network::NodeConfig;
use starling_proto::v1::admin_client::AdminClient;
use starling_proto::v1::network_client::NetworkClient;
use starling_proto::v1::{self, Class, ReportClass};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type Authed = InterceptedService<Channel, Auth>;

#[derive(Clone)]
struct Auth(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

fn auth(secret: &str) -> Auth {
    Auth(starling_proto::bearer(secret).parse().unwrap())
}

struct TestNode {
    dir: tempfile::TempDir,
    running: Option<starling_network::Running>,
    addr: std::net::SocketAddr,
}

impl TestNode {
    async fn start() -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let running = start_in(dir.path(), |_| {}).await;
        TestNode { addr: running.addr, dir, running: Some(running) }
    }

    async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown.cancel();
            tokio::time::timeout(Duration::from_secs(20), running.stopped).await.unwrap().unwrap();
        }
    }

    async fn restart(&mut self) {
        self.stop().await;
        let running = start_in(self.dir.path(), |_| {}).await;
        self.addr = running.addr;
        self.running = Some(running);
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await.unwrap()
    }

    async fn admin(&self) -> AdminClient<Authed> {
        let token = starling_network::node::operator_token(self.dir.path()).unwrap();
        AdminClient::with_interceptor(self.channel().await, auth(&token))
    }

    async fn agent(&self, credential: &str) -> NetworkClient<Authed> {
        NetworkClient::with_interceptor(self.channel().await, auth(credential))
    }

    async fn organisation(&self, name: &str) -> String {
        self.organisation_with(name, v1::Plan::Subscription, 0).await
    }

    async fn organisation_with(&self, name: &str, plan: v1::Plan, expires_at: i64) -> String {
        let request = v1::CreateOrganisationRequest { name: name.into(), plan: plan.into(), expires_at };
        self.admin().await.create_organisation(request).await.unwrap().into_inner().credential
    }
}

async fn start_in(dir: &Path, adjust: impl FnOnce(&mut NodeConfig)) -> starling_network::Running {
    let mut config =
        NodeConfig { listen: "127.0.0.1:0".parse().unwrap(), data_dir: dir.to_path_buf(), ..Default::default() };
    adjust(&mut config);
    starling_network::start(config).await.unwrap()
}

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fingerprint/testdata/corpus").join(name)
}

/// The wire fingerprints of a corpus message under the network's key.
async fn fingerprints(client: &mut NetworkClient<Authed>, name: &str) -> v1::FingerprintSet {
    let hello = client.hello(v1::HelloRequest::default()).await.unwrap().into_inner();
    let key = Key::from_bytes(hello.fingerprint_key.try_into().unwrap());
    let raw = std::fs::read(corpus(name)).unwrap();
    starling_proto::to_wire(&Fingerprinter::new(&key).fingerprint(&raw))
}

async fn report(client: &mut NetworkClient<Authed>, set: &v1::FingerprintSet, class: ReportClass, reporter: &str) {
    let request = v1::ReportRequest {
        reports: vec![v1::Report { fingerprints: Some(set.clone()), class: class.into(), reporter: reporter.into() }],
    };
    let outcomes = client.report(request).await.unwrap().into_inner().outcomes;
    assert!(outcomes[0].recorded, "{:?}", outcomes[0]);
}

async fn verdict(client: &mut NetworkClient<Authed>, set: &v1::FingerprintSet) -> v1::Verdict {
    let request = v1::CheckRequest { messages: vec![set.clone()] };
    client.check(request).await.unwrap().into_inner().verdicts.remove(0)
}

fn class(verdict: &v1::Verdict) -> Class {
    Class::try_from(verdict.class).unwrap()
}

const MESSAGES: [&str; 8] = [
    "spam-1-00001.eml",
    "spam-1-00002.eml",
    "spam-1-00022.eml",
    "spam-1-00024.eml",
    "spam-1-00035.eml",
    "spam-1-00040.eml",
    "spam-1-00074.eml",
    "spam-1-00116.eml",
];

/// Makes `reporter` of `org_a` trusted: four messages reported by them and
/// by a second organisation form four consensuses.
async fn build_trust(a: &mut NetworkClient<Authed>, b: &mut NetworkClient<Authed>, reporter: &str) {
    for name in &MESSAGES[..4] {
        let set = fingerprints(a, name).await;
        report(a, &set, ReportClass::Spam, reporter).await;
        report(b, &set, ReportClass::Spam, "b-user").await;
        assert_eq!(class(&verdict(a, &set).await), Class::Spam);
    }
}

#[tokio::test]
async fn a_report_is_visible_to_the_next_check_with_its_evidence() {
    let node = TestNode::start().await;
    let (a, b) = (node.organisation("a").await, node.organisation("b").await);
    let (mut a, mut b) = (node.agent(&a).await, node.agent(&b).await);
    let spam = fingerprints(&mut a, MESSAGES[0]).await;
    let ham = fingerprints(&mut a, "easy-ham-1-00001.eml").await;
    assert_eq!(class(&verdict(&mut a, &spam).await), Class::Clean);
    report(&mut a, &spam, ReportClass::Spam, "alice").await;
    report(&mut b, &spam, ReportClass::Spam, "bob").await;
    let v = verdict(&mut a, &spam).await;
    assert_eq!(class(&v), Class::Spam);
    assert_eq!(v1::Kind::try_from(v.matched_kind).unwrap(), v1::Kind::Text);
    let evidence = v.evidence.unwrap();
    assert_eq!((evidence.reporters, evidence.organisations), (2, 2));
    assert!(evidence.spam >= 2.0 && evidence.first_seen > 0);
    assert_eq!(class(&verdict(&mut a, &ham).await), Class::Clean);
}

#[tokio::test]
async fn a_trusted_reporters_single_report_blocks() {
    let node = TestNode::start().await;
    let (mut a, mut b) =
        (node.agent(&node.organisation("a").await).await, node.agent(&node.organisation("b").await).await);
    build_trust(&mut a, &mut b, "trusted").await;
    let set = fingerprints(&mut a, MESSAGES[5]).await;
    report(&mut a, &set, ReportClass::Spam, "trusted").await;
    assert_eq!(class(&verdict(&mut b, &set).await), Class::Spam, "for everybody");
    // A fresh colleague's single report does not, for the network as a
    // whole; for the colleague's own organisation it does.
    let other = fingerprints(&mut a, MESSAGES[6]).await;
    report(&mut a, &other, ReportClass::Spam, "fresh").await;
    assert_eq!(class(&verdict(&mut b, &other).await), Class::Clean);
    assert_eq!(class(&verdict(&mut a, &other).await), Class::Spam);
}

#[tokio::test]
async fn an_organisations_own_report_blocks_for_it_alone_at_once() {
    let node = TestNode::start().await;
    let (mut a, mut b) =
        (node.agent(&node.organisation("a").await).await, node.agent(&node.organisation("b").await).await);
    let set = fingerprints(&mut a, MESSAGES[7]).await;
    report(&mut a, &set, ReportClass::Spam, "fresh").await;
    let own = verdict(&mut a, &set).await;
    assert_eq!(class(&own), Class::Spam, "the reporter's organisation");
    assert!(own.confidence >= 0.5, "{}", own.confidence);
    assert_eq!(class(&verdict(&mut b, &set).await), Class::Clean, "nobody else");
    // A colleague who says it is not spam takes it back for the organisation.
    report(&mut a, &set, ReportClass::Ham, "colleague").await;
    assert_eq!(class(&verdict(&mut a, &set).await), Class::Clean);
}

#[tokio::test]
async fn fifty_fresh_reporters_of_one_organisation_do_not_block() {
    let node = TestNode::start().await;
    let mut sybil = node.agent(&node.organisation("sybil").await).await;
    let ham = fingerprints(&mut sybil, "easy-ham-1-00001.eml").await;
    for i in 0..50 {
        report(&mut sybil, &ham, ReportClass::Spam, &format!("sock-{i}")).await;
    }
    let mut other = node.agent(&node.organisation("other").await).await;
    let v = verdict(&mut other, &ham).await;
    assert_eq!(class(&v), Class::Clean);
    assert_eq!(v.evidence.unwrap().reporters, 50);
    // The accounts' own organisation gets what it reported.
    assert_eq!(class(&verdict(&mut sybil, &ham).await), Class::Spam);
}

#[tokio::test]
async fn a_not_spam_consensus_unblocks() {
    let node = TestNode::start().await;
    let (mut a, mut b) =
        (node.agent(&node.organisation("a").await).await, node.agent(&node.organisation("b").await).await);
    let (mut c, mut d) =
        (node.agent(&node.organisation("c").await).await, node.agent(&node.organisation("d").await).await);
    let set = fingerprints(&mut a, MESSAGES[0]).await;
    report(&mut a, &set, ReportClass::Spam, "x").await;
    report(&mut b, &set, ReportClass::Spam, "y").await;
    assert_eq!(class(&verdict(&mut a, &set).await), Class::Spam);
    report(&mut c, &set, ReportClass::Ham, "z").await;
    report(&mut d, &set, ReportClass::Ham, "w").await;
    let v = verdict(&mut a, &set).await;
    assert_eq!(class(&v), Class::Clean);
    assert!(v.evidence.unwrap().unblocked);
}

#[tokio::test]
async fn a_revoked_report_stops_counting() {
    let node = TestNode::start().await;
    let (mut a, mut b) =
        (node.agent(&node.organisation("a").await).await, node.agent(&node.organisation("b").await).await);
    build_trust(&mut a, &mut b, "trusted").await;
    let set = fingerprints(&mut a, MESSAGES[5]).await;
    report(&mut a, &set, ReportClass::Spam, "trusted").await;
    assert_eq!(class(&verdict(&mut a, &set).await), Class::Spam);
    let revocation = v1::Revocation { fingerprints: Some(set.clone()), reporter: "trusted".into() };
    let removed = a.revoke(v1::RevokeRequest { revocations: vec![revocation] }).await.unwrap().into_inner().removed;
    assert_eq!(removed, vec![1]);
    assert_eq!(class(&verdict(&mut a, &set).await), Class::Clean);
}

#[tokio::test]
async fn a_mutated_copy_matches_through_the_fuzzy_index() {
    let node = TestNode::start().await;
    let (mut a, mut b) =
        (node.agent(&node.organisation("a").await).await, node.agent(&node.organisation("b").await).await);
    let hello = a.hello(v1::HelloRequest::default()).await.unwrap().into_inner();
    let fingerprinter = Fingerprinter::new(&Key::from_bytes(hello.fingerprint_key.try_into().unwrap()));
    let raw = String::from_utf8_lossy(&std::fs::read(corpus(MESSAGES[1])).unwrap()).into_owned();
    let mutated =
        raw.replacen("\n\n", "\n\nDear Jane Doe,\nlemon river castle jelly window forest quiet orange\n\n", 1);
    let original = starling_proto::to_wire(&fingerprinter.fingerprint(raw.as_bytes()));
    let copy = starling_proto::to_wire(&fingerprinter.fingerprint(mutated.as_bytes()));
    assert_ne!(original.text, copy.text);
    report(&mut a, &original, ReportClass::Spam, "x").await;
    report(&mut b, &original, ReportClass::Spam, "y").await;
    let v = verdict(&mut a, &copy).await;
    assert_eq!(class(&v), Class::Spam);
    assert_eq!(v1::Kind::try_from(v.matched_kind).unwrap(), v1::Kind::Fuzzy);
    assert!(v.evidence.unwrap().similarity > 0.2);
}

#[tokio::test]
async fn credentials_are_checked_with_clear_errors() {
    let node = TestNode::start().await;
    let good = node.organisation("good").await;
    let trial = node.organisation_with("trial", v1::Plan::Trial, 1).await;
    let set = fingerprints(&mut node.agent(&good).await, MESSAGES[0]).await;
    let check = |set: v1::FingerprintSet| v1::CheckRequest { messages: vec![set] };

    let unknown = node.agent("starling_nonsense").await.check(check(set.clone())).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::Unauthenticated);
    assert!(unknown.message().contains("unknown credential"));

    let mut bare = NetworkClient::new(node.channel().await);
    let missing = bare.check(check(set.clone())).await.unwrap_err();
    assert!(missing.message().contains("missing credential"), "{missing:?}");

    let expired = node.agent(&trial).await.check(check(set.clone())).await.unwrap_err();
    assert_eq!(expired.code(), tonic::Code::PermissionDenied);
    assert!(expired.message().contains("expired"), "{expired:?}");
    // Hello still answers, so the agent can tell its administrator.
    let hello = node.agent(&trial).await.hello(v1::HelloRequest::default()).await.unwrap().into_inner();
    assert_eq!(hello.organisation.unwrap().expires_at, 1);

    let request =
        v1::SetOrganisationStatusRequest { name: "good".into(), status: v1::OrganisationStatus::Disabled.into() };
    node.admin().await.set_organisation_status(request).await.unwrap();
    let disabled = node.agent(&good).await.check(check(set.clone())).await.unwrap_err();
    assert_eq!(disabled.code(), tonic::Code::PermissionDenied);
    assert!(disabled.message().contains("disabled"));

    let wrong_operator = AdminClient::with_interceptor(node.channel().await, auth("nope"))
        .list_organisations(v1::ListOrganisationsRequest {})
        .await
        .unwrap_err();
    assert_eq!(wrong_operator.code(), tonic::Code::Unauthenticated);
}

#[tokio::test]
async fn oversized_and_malformed_requests_are_refused() {
    let node = TestNode::start().await;
    let mut agent = node.agent(&node.organisation("a").await).await;
    let set = fingerprints(&mut agent, MESSAGES[0]).await;

    let too_many = v1::CheckRequest { messages: vec![set.clone(); 1025] };
    let error = agent.check(too_many).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(error.message().contains("at most 1024"), "{error:?}");

    let mut bad = set.clone();
    bad.text = vec![1, 2, 3];
    let error = agent.check(v1::CheckRequest { messages: vec![set.clone(), bad] }).await.unwrap_err();
    assert_eq!(error.message(), "item 1: text: a digest is 16 bytes, got 3");

    let no_class = v1::ReportRequest {
        reports: vec![v1::Report { fingerprints: Some(set.clone()), class: 0, reporter: "x".into() }],
    };
    let error = agent.report(no_class).await.unwrap_err();
    assert!(error.message().contains("report class"), "{error:?}");

    let huge = v1::CheckRequest { messages: vec![v1::FingerprintSet { text: vec![0; 5 << 20], ..set.clone() }] };
    let error = agent.check(huge).await.unwrap_err();
    assert!(matches!(error.code(), tonic::Code::OutOfRange | tonic::Code::ResourceExhausted), "{error:?}");

    // The node still answers.
    assert_eq!(class(&verdict(&mut agent, &set).await), Class::Clean);
}

#[tokio::test]
async fn garbage_on_the_port_closes_that_connection_only() {
    let node = TestNode::start().await;
    let mut agent = node.agent(&node.organisation("a").await).await;
    for garbage in [
        &b"\x00\x01\x02garbage\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        &[0xffu8; 4096][..],
    ] {
        let mut stream = tokio::net::TcpStream::connect(node.addr).await.unwrap();
        stream.write_all(garbage).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf))
            .await
            .expect("the node closes or answers");
    }
    let set = fingerprints(&mut agent, MESSAGES[0]).await;
    assert_eq!(class(&verdict(&mut agent, &set).await), Class::Clean);
}

#[tokio::test]
async fn data_and_credentials_survive_a_restart() {
    let mut node = TestNode::start().await;
    let (a, b) = (node.organisation("a").await, node.organisation("b").await);
    let set = {
        let (mut a, mut b) = (node.agent(&a).await, node.agent(&b).await);
        let set = fingerprints(&mut a, MESSAGES[0]).await;
        report(&mut a, &set, ReportClass::Spam, "x").await;
        report(&mut b, &set, ReportClass::Spam, "y").await;
        set
    };
    node.restart().await;
    let mut a = node.agent(&a).await;
    assert_eq!(class(&verdict(&mut a, &set).await), Class::Spam);
    assert_eq!(fingerprints(&mut a, MESSAGES[0]).await, set, "the network key is kept");
    node.stop().await;
}

#[tokio::test]
async fn metrics_and_health_are_served() {
    let node = TestNode::start().await;
    let mut agent = node.agent(&node.organisation("a").await).await;
    let set = fingerprints(&mut agent, MESSAGES[0]).await;
    verdict(&mut agent, &set).await;
    let body = http_get(node.addr, "/metrics").await;
    assert!(body.contains("starling_network_requests_total{method=\"check\",code=\"ok\"} 1"), "{body}");
    assert!(body.contains("starling_network_checked_messages_total 1"), "{body}");
    assert!(http_get(node.addr, "/health").await.ends_with("ok\n"));
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = String::new();
    stream.read_to_string(&mut buf).await.unwrap();
    buf
}

#[tokio::test]
async fn a_public_address_without_tls_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig { listen: "0.0.0.0:0".parse().unwrap(), data_dir: dir.path().into(), ..Default::default() };
    let error = starling_network::start(config).await.err().unwrap();
    assert!(error.to_string().contains("not a loopback address"), "{error}");
}

#[tokio::test]
async fn tls_serves_agents_and_refuses_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let data = dir.path().join("data");
    let running = start_in(&data, |c| {
        c.tls = Some(starling_network::config::TlsConfig { certificate: cert.clone(), private_key: key.clone() });
    })
    .await;
    let token = starling_network::node::operator_token(&data).unwrap();
    let mut target = starling_proto::client::Target::new(&format!("https://127.0.0.1:{}", running.addr.port()));
    target.ca_pem = Some(certified.cert.pem().into_bytes());
    let channel = target.connect().await.unwrap();
    let mut admin =
        starling_proto::client::admin(channel.clone(), starling_proto::client::Credential::new(&token).unwrap());
    let request =
        v1::CreateOrganisationRequest { name: "a".into(), plan: v1::Plan::Subscription.into(), expires_at: 0 };
    let credential = admin.create_organisation(request).await.unwrap().into_inner().credential;
    let mut agent =
        starling_proto::client::network(channel, starling_proto::client::Credential::new(&credential).unwrap());
    let hello = agent.hello(v1::HelloRequest::default()).await.unwrap().into_inner();
    assert_eq!(hello.fingerprint_key.len(), 32);

    // A plain-text client gets nowhere.
    let plain = tonic::transport::Channel::from_shared(format!("http://{}", running.addr)).unwrap().connect().await;
    if let Ok(channel) = plain {
        let error = NetworkClient::with_interceptor(channel, auth(&credential))
            .hello(v1::HelloRequest::default())
            .await
            .unwrap_err();
        assert_ne!(error.code(), tonic::Code::Ok);
    }
    running.shutdown.cancel();
    running.stopped.await.unwrap();
}

// ----- Changes: the long-poll of fingerprint sets that became spam -----

async fn changes(client: &mut NetworkClient<Authed>, cursor: u64, wait_ms: u32) -> v1::ChangesResponse {
    client.changes(v1::ChangesRequest { cursor, wait_ms }).await.unwrap().into_inner()
}

fn key_set(keys: &[Vec<u8>]) -> std::collections::BTreeSet<Vec<u8>> {
    keys.iter().cloned().collect()
}

#[tokio::test]
async fn a_waiting_changes_call_returns_the_keys_of_a_message_that_became_spam_within_a_second() {
    let node = TestNode::start().await;
    let (mut a, mut b) =
        (node.agent(&node.organisation("a").await).await, node.agent(&node.organisation("b").await).await);
    let mut watcher = node.agent(&node.organisation("watcher").await).await;
    let set = fingerprints(&mut a, MESSAGES[0]).await;
    let start = changes(&mut watcher, 0, 0).await;
    assert!(!start.reset && start.keys.is_empty());

    // One fresh reporter does not block: nothing is announced.
    report(&mut a, &set, ReportClass::Spam, "alice").await;
    let quiet = changes(&mut watcher, start.cursor, 0).await;
    assert!(quiet.keys.is_empty() && !quiet.reset);
    assert_eq!(quiet.cursor, start.cursor);

    let cursor = start.cursor;
    let poll = tokio::spawn(async move {
        let response = changes(&mut watcher, cursor, 10_000).await;
        (response, tokio::time::Instant::now())
    });
    // The call is waiting at the node before the report that blocks.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "the long-poll waits while nothing changes");
    let reported = tokio::time::Instant::now();
    report(&mut b, &set, ReportClass::Spam, "bob").await;
    let acknowledged = tokio::time::Instant::now();
    let (response, returned) = tokio::time::timeout(Duration::from_secs(5), poll).await.unwrap().unwrap();
    let latency = returned.saturating_duration_since(acknowledged);
    assert!(returned > reported, "returned before the report was made");
    assert!(latency < Duration::from_secs(1), "returned {latency:?} after the acknowledgement");
    assert!(!response.reset);
    assert_eq!(key_set(&response.keys), key_set(&starling_proto::index_keys_of_wire(&set)));
    assert_eq!(class(&verdict(&mut a, &set).await), Class::Spam);
    // The keys are announced before the report is answered, so the poll
    // usually returns before the acknowledgement arrives (latency 0).
    eprintln!(
        "Changes returned {latency:?} after the acknowledgement, {:?} after the report was sent",
        returned - reported
    );
}

#[tokio::test]
async fn changes_start_from_now_resume_from_a_cursor_and_skip_what_was_already_blocked() {
    let node = TestNode::start().await;
    let (mut a, mut b) =
        (node.agent(&node.organisation("a").await).await, node.agent(&node.organisation("b").await).await);
    let mut c = node.agent(&node.organisation("c").await).await;
    let first = fingerprints(&mut a, MESSAGES[0]).await;
    let second = fingerprints(&mut a, MESSAGES[1]).await;
    let origin = changes(&mut c, 0, 0).await.cursor;

    report(&mut a, &first, ReportClass::Spam, "x").await;
    report(&mut b, &first, ReportClass::Spam, "y").await;
    // Cursor 0 is "from now": no history.
    let now = changes(&mut c, 0, 0).await;
    assert!(now.keys.is_empty() && !now.reset);
    assert_ne!(now.cursor, origin);

    // A third report on a message already blocked announces nothing.
    report(&mut c, &first, ReportClass::Spam, "z").await;
    assert!(changes(&mut c, now.cursor, 0).await.keys.is_empty());

    report(&mut a, &second, ReportClass::Phish, "x").await;
    report(&mut b, &second, ReportClass::Phish, "y").await;
    let newer = changes(&mut c, now.cursor, 0).await;
    assert_eq!(key_set(&newer.keys), key_set(&starling_proto::index_keys_of_wire(&second)), "only the newer change");
    let both = changes(&mut c, origin, 0).await;
    let mut expected = key_set(&starling_proto::index_keys_of_wire(&first));
    expected.extend(key_set(&starling_proto::index_keys_of_wire(&second)));
    assert_eq!(key_set(&both.keys), expected);
    assert_eq!(both.cursor, newer.cursor);
    // Resuming from the last cursor: nothing new.
    let after = changes(&mut c, newer.cursor, 0).await;
    assert!(after.keys.is_empty() && !after.reset);
}

#[tokio::test]
async fn ham_reports_announce_nothing() {
    let node = TestNode::start().await;
    let (mut a, mut b) =
        (node.agent(&node.organisation("a").await).await, node.agent(&node.organisation("b").await).await);
    let ham = fingerprints(&mut a, "easy-ham-1-00001.eml").await;
    let cursor = changes(&mut a, 0, 0).await.cursor;
    report(&mut a, &ham, ReportClass::Ham, "x").await;
    report(&mut b, &ham, ReportClass::Ham, "y").await;
    let response = changes(&mut a, cursor, 300).await;
    assert!(response.keys.is_empty() && !response.reset);
    assert_eq!(response.cursor, cursor);
}

#[tokio::test]
async fn changes_needs_a_credential() {
    let node = TestNode::start().await;
    let request = v1::ChangesRequest { cursor: 0, wait_ms: 0 };
    let missing = NetworkClient::new(node.channel().await).changes(request).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::Unauthenticated);
    let unknown = node.agent("starling_nonsense").await.changes(request).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::Unauthenticated);
    assert!(unknown.message().contains("unknown credential"), "{unknown:?}");
}

#[tokio::test]
async fn a_cursor_from_before_a_restart_is_reset() {
    let mut node = TestNode::start().await;
    let credential = node.organisation("a").await;
    let old = changes(&mut node.agent(&credential).await, 0, 0).await.cursor;
    node.restart().await;
    let mut agent = node.agent(&credential).await;
    let started = tokio::time::Instant::now();
    let response = changes(&mut agent, old, 10_000).await;
    assert!(response.reset, "{response:?}");
    assert!(started.elapsed() < Duration::from_secs(1), "a reset is answered at once");
    assert!(response.keys.is_empty());
    // The new cursor works.
    let next = changes(&mut agent, response.cursor, 0).await;
    assert!(!next.reset && next.cursor == response.cursor);
    node.stop().await;
}

#[tokio::test]
async fn changes_answers_at_once_with_wait_zero_and_after_the_wait_otherwise() {
    let node = TestNode::start().await;
    let mut agent = node.agent(&node.organisation("a").await).await;
    let cursor = changes(&mut agent, 0, 0).await.cursor;
    let started = tokio::time::Instant::now();
    let response = changes(&mut agent, cursor, 0).await;
    assert!(started.elapsed() < Duration::from_millis(200), "{:?}", started.elapsed());
    assert!(response.keys.is_empty() && !response.reset);

    let started = tokio::time::Instant::now();
    let response = changes(&mut agent, cursor, 400).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(390) && waited < Duration::from_secs(2), "{waited:?}");
    assert_eq!(response.cursor, cursor);
}

#[tokio::test]
async fn the_client_helper_long_polls_and_shutdown_ends_a_wait() {
    let mut node = TestNode::start().await;
    let credential = node.organisation("a").await;
    let target = starling_proto::client::Target::new(&node.addr.to_string()).for_changes();
    assert!(target.timeout > Duration::from_secs(30));
    let channel = target.connect().await.unwrap();
    let mut client =
        starling_proto::client::network(channel, starling_proto::client::Credential::new(&credential).unwrap());
    let start = starling_proto::client::changes(&mut client, 0, Duration::ZERO).await.unwrap();
    let cursor = start.cursor;
    let poll =
        tokio::spawn(
            async move { starling_proto::client::changes(&mut client, cursor, Duration::from_secs(30)).await },
        );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::time::Instant::now();
    node.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(5), "a waiting call held up the shutdown");
    let response = tokio::time::timeout(Duration::from_secs(5), poll).await.unwrap().unwrap().unwrap();
    assert!(response.keys.is_empty() && response.cursor == cursor);
}

fn activation_request(name: &str, plan: v1::Plan, expires_at: i64) -> v1::IssueActivationRequest {
    v1::IssueActivationRequest {
        name: name.into(),
        plan: plan.into(),
        expires_at,
        extend_seconds: 0,
        max_mailboxes: Some(25),
        purchase_url: "https://shop.example/acme".into(),
    }
}

#[tokio::test]
async fn activation_codes_are_issued_renewed_and_revoked_and_hello_carries_them() {
    use starling_proto::activation::{self, CodeError, CodePlan};
    let node = TestNode::start().await;
    let credential = node.organisation_with("acme", v1::Plan::Trial, now() + 3600).await;
    let mut agent = node.agent(&credential).await;
    let mut admin = node.admin().await;

    // Before any code: the key, no code, the trial's own expiry.
    let hello = agent.hello(v1::HelloRequest::default()).await.unwrap().into_inner();
    let key: [u8; 32] = hello.activation_key.as_slice().try_into().expect("a 32-byte activation key");
    assert_eq!(hello.activation.clone().unwrap_or_default().code, "");

    // A trial code for 14 days: verifiable offline with the Hello's key,
    // applied to the organisation at once, and handed to agents.
    let expires = now() + 14 * 86_400;
    let issued =
        admin.issue_activation(activation_request("acme", v1::Plan::Trial, expires)).await.unwrap().into_inner();
    assert_eq!(issued.public_key, key.to_vec());
    let claims = activation::verify(&issued.code, &key).expect("verifies");
    assert_eq!((claims.organisation.as_str(), claims.plan, claims.expires_at), ("acme", CodePlan::Trial, expires));
    assert_eq!((claims.max_mailboxes, claims.purchase_url.as_str()), (25, "https://shop.example/acme"));
    assert_eq!(issued.organisation.unwrap().expires_at, expires);
    let hello = agent.hello(v1::HelloRequest::default()).await.unwrap().into_inner();
    let offered = hello.activation.unwrap();
    assert_eq!((offered.code.as_str(), offered.max_mailboxes, offered.revoked_through), (issued.code.as_str(), 25, 0));
    assert_eq!(hello.organisation.unwrap().expires_at, expires);

    // A renewal adds to the current expiry, keeps the limit and the URL,
    // and has a higher serial.
    let renew = v1::IssueActivationRequest {
        name: "acme".into(),
        plan: v1::Plan::Subscription.into(),
        expires_at: 0,
        extend_seconds: 30 * 86_400,
        max_mailboxes: None,
        purchase_url: String::new(),
    };
    let renewed = admin.issue_activation(renew).await.unwrap().into_inner();
    let renewed = activation::verify(&renewed.code, &key).unwrap();
    assert_eq!(
        (renewed.expires_at, renewed.plan, renewed.max_mailboxes),
        (expires + 30 * 86_400, CodePlan::Subscription, 25)
    );
    assert_eq!(renewed.purchase_url, "https://shop.example/acme");
    assert!(renewed.serial > claims.serial);

    // Refused: a feed, a trial without expiry, an expiry in the past, an
    // unknown organisation.
    let feed = node.organisation_with("trap", v1::Plan::Feed, 0).await;
    drop(feed);
    let refused = [
        activation_request("trap", v1::Plan::Unspecified, expires),
        activation_request("acme", v1::Plan::Trial, 0),
        activation_request("acme", v1::Plan::Subscription, now() - 10),
    ];
    for request in refused {
        let status = admin.issue_activation(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }
    let status = admin.issue_activation(activation_request("nobody", v1::Plan::Trial, expires)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);

    // Agents cannot issue codes.
    let mut pretender = AdminClient::with_interceptor(node.channel().await, auth(&credential));
    assert!(pretender.issue_activation(activation_request("acme", v1::Plan::Trial, expires)).await.is_err());

    // Revoked: every code so far, and the organisation expires now, so its
    // checks are refused; Hello still answers and says so.
    admin.revoke_activation(v1::RevokeActivationRequest { name: "acme".into() }).await.unwrap();
    let hello = agent.hello(v1::HelloRequest::default()).await.unwrap().into_inner();
    let offered = hello.activation.unwrap();
    assert!(offered.code.is_empty() && offered.revoked_through >= renewed.serial, "{offered:?}");
    let set = fingerprints(&mut agent, MESSAGES[0]).await;
    let status = agent.check(v1::CheckRequest { messages: vec![set] }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

    // A new code reactivates it, with a serial above the revoked ones.
    let again =
        admin.issue_activation(activation_request("acme", v1::Plan::Subscription, 0)).await.unwrap().into_inner();
    let again = activation::verify(&again.code, &key).unwrap();
    assert!(again.serial > offered.revoked_through);
    let set = fingerprints(&mut agent, MESSAGES[0]).await;
    agent.check(v1::CheckRequest { messages: vec![set] }).await.expect("checks are answered again");

    // A code from another node's key does not verify with this one.
    let other = TestNode::start().await;
    let other_credential = other.organisation("acme").await;
    drop(other_credential);
    let foreign =
        other.admin().await.issue_activation(activation_request("acme", v1::Plan::Subscription, 0)).await.unwrap();
    assert_eq!(activation::verify(&foreign.into_inner().code, &key), Err(CodeError::BadSignature));
}

#[tokio::test]
async fn the_activation_key_and_records_survive_a_restart() {
    let mut node = TestNode::start().await;
    let credential = node.organisation("acme").await;
    let issued =
        node.admin().await.issue_activation(activation_request("acme", v1::Plan::Subscription, 0)).await.unwrap();
    let code = issued.into_inner().code;
    node.restart().await;
    let hello = node.agent(&credential).await.hello(v1::HelloRequest::default()).await.unwrap().into_inner();
    let key: [u8; 32] = hello.activation_key.as_slice().try_into().unwrap();
    assert_eq!(hello.activation.unwrap().code, code);
    starling_proto::activation::verify(&code, &key).expect("the same key after a restart");
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Every word of six letters or more in a text, lowercased.
fn long_words(text: &[u8]) -> BTreeSet<Vec<u8>> {
    text.split(|b| !b.is_ascii_alphabetic()).filter(|w| w.len() >= 6).map(<[u8]>::to_ascii_lowercase).collect()
}

#[tokio::test]
async fn the_store_holds_no_word_of_the_mail_reported_to_it() {
    let mut node = TestNode::start().await;
    let credential = node.organisation("acme").await;
    let mut agent = node.agent(&credential).await;
    let mut words = BTreeSet::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fingerprint/testdata/corpus");
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    for (i, name) in names.iter().filter(|n| n.ends_with(".eml")).enumerate() {
        words.extend(long_words(&std::fs::read(dir.join(name)).unwrap()));
        let set = fingerprints(&mut agent, name).await;
        let class = if name.starts_with("spam") { ReportClass::Spam } else { ReportClass::Ham };
        // Reporter pseudonyms as agents send them: opaque; a readable one
        // here would be found below if the node kept it in clear.
        let reporter = format!("pseudonym{i:03}");
        let request =
            v1::ReportRequest { reports: vec![v1::Report { fingerprints: Some(set), class: class.into(), reporter }] };
        // Messages too short to fingerprint are refused; the rest stored.
        agent.report(request).await.unwrap();
    }
    assert!(words.len() > 2_000, "{} words", words.len());
    node.stop().await;
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(node.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            stored.extend(std::fs::read(&path).unwrap());
        }
    }
    let stored = stored.to_ascii_lowercase();
    let found: Vec<String> =
        long_words(&stored).intersection(&words).map(|w| String::from_utf8_lossy(w).into_owned()).collect();
    assert!(found.is_empty(), "words of the mail in the node's files: {found:?}");
    let pseudonyms = long_words(&stored).into_iter().filter(|w| w.starts_with(b"pseudonym")).count();
    assert_eq!(pseudonyms, 0, "reporter pseudonyms are kept only as keyed hashes");
}
