//! A private network node for tests: started in-process or as the
//! `starling` binary, restarted, announcing a release.

use super::*;

/// A network node on a free loopback port with the single-organisation
/// trust preset (or, with [`Node::start_shared`], the shared-network
/// default), and a credential for one organisation.
pub struct Node {
    /// The running node.
    pub running: Option<starling_network::Running>,
    /// Its data directory.
    pub data: PathBuf,
    /// Its address as a URL.
    pub url: String,
    /// A credential of the organisation `test`.
    pub credential: String,
    _dir: Option<tempfile::TempDir>,
    port: u16,
    shared: bool,
    /// The newest agent release and its release notes the node announces.
    announce: (String, String),
}

impl Node {
    /// Starts a node in a new temporary directory, with the
    /// single-organisation trust preset (one user's report blocks).
    pub async fn start() -> anyhow::Result<Node> {
        Node::start_with(false).await
    }

    /// Starts a node with the shared-network trust default: one fresh
    /// reporter blocks only for their own organisation.
    pub async fn start_shared() -> anyhow::Result<Node> {
        Node::start_with(true).await
    }

    /// Starts a node (as [`Node::start`]) that announces `version` as the
    /// newest agent release, with its release notes at `notes`.
    pub async fn start_announcing(version: &str, notes: &str) -> anyhow::Result<Node> {
        let mut node = Node::start_with(false).await?;
        node.restart_announcing(version, notes).await?;
        Ok(node)
    }

    async fn start_with(shared: bool) -> anyhow::Result<Node> {
        let dir = tempfile::Builder::new().prefix("starling-node-").tempdir()?;
        let data = dir.path().join("network");
        let port = free_port();
        let running = start_node(&data, port, shared, &Default::default()).await?;
        let url = format!("http://{}", running.addr);
        let token = starling_network::node::operator_token(&data)?;
        let channel = starling_proto::client::Target::new(&url).connect().await?;
        let mut admin = starling_proto::client::admin(
            channel,
            starling_proto::client::Credential::new(&token).map_err(anyhow::Error::msg)?,
        );
        let request = starling_proto::v1::CreateOrganisationRequest {
            name: "test".into(),
            plan: starling_proto::v1::Plan::Subscription.into(),
            expires_at: 0,
        };
        let credential = admin.create_organisation(request).await?.into_inner().credential;
        let announce = Default::default();
        Ok(Node { running: Some(running), data, url, credential, _dir: Some(dir), port, shared, announce })
    }

    /// An operator's client of the node.
    pub async fn admin(
        &self,
    ) -> anyhow::Result<starling_proto::v1::admin_client::AdminClient<starling_proto::client::Authorised>> {
        let token = starling_network::node::operator_token(&self.data)?;
        let channel = starling_proto::client::Target::new(&self.url).connect().await?;
        Ok(starling_proto::client::admin(
            channel,
            starling_proto::client::Credential::new(&token).map_err(anyhow::Error::msg)?,
        ))
    }

    /// Issues an activation code to the organisation `test` (a trial when
    /// `expires_at` is not 0, else a subscription without expiry), allowing
    /// `max_mailboxes` (0: any number); answers the code.
    pub async fn activate(&self, expires_at: i64, max_mailboxes: u32) -> anyhow::Result<String> {
        let plan =
            if expires_at == 0 { starling_proto::v1::Plan::Subscription } else { starling_proto::v1::Plan::Trial };
        let request = starling_proto::v1::IssueActivationRequest {
            name: "test".into(),
            plan: plan.into(),
            expires_at,
            extend_seconds: 0,
            max_mailboxes: Some(max_mailboxes),
            purchase_url: "https://shop.example/starling".into(),
        };
        Ok(self.admin().await?.issue_activation(request).await?.into_inner().code)
    }

    /// Creates another organisation; returns its credential.
    pub async fn add_organisation(&self, name: &str) -> anyhow::Result<String> {
        let mut admin = self.admin().await?;
        let request = starling_proto::v1::CreateOrganisationRequest {
            name: name.into(),
            plan: starling_proto::v1::Plan::Subscription.into(),
            expires_at: 0,
        };
        Ok(admin.create_organisation(request).await?.into_inner().credential)
    }

    /// Stops the node (its data stays).
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown.cancel();
            let _ = running.stopped.await;
        }
    }

    /// Starts it again on the same port with the same data.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        self.running = Some(start_node(&self.data, self.port, self.shared, &self.announce).await?);
        Ok(())
    }

    /// Restarts it announcing `version` as the newest agent release, with
    /// its release notes at `notes` (kept for later restarts).
    pub async fn restart_announcing(&mut self, version: &str, notes: &str) -> anyhow::Result<()> {
        self.announce = (version.to_owned(), notes.to_owned());
        self.restart().await
    }

    /// Reports messages as one reporter of the organisation would, with
    /// the node's own fingerprint key; returns how many were recorded.
    pub async fn report(&self, class: starling_proto::v1::ReportClass, messages: &[&[u8]]) -> anyhow::Result<usize> {
        let mut client = self.client().await?;
        let hello = client.hello(starling_proto::v1::HelloRequest::default()).await?.into_inner();
        let key: [u8; 32] = hello.fingerprint_key.try_into().map_err(|_| anyhow::anyhow!("the node sent no key"))?;
        let fingerprinter = starling_fingerprint::Fingerprinter::new(&starling_fingerprint::Key::from_bytes(key));
        let reports = messages
            .iter()
            .map(|raw| starling_proto::v1::Report {
                fingerprints: Some(starling_proto::to_wire(&fingerprinter.fingerprint(raw))),
                class: class.into(),
                reporter: "tester".into(),
            })
            .collect();
        let outcomes = client.report(starling_proto::v1::ReportRequest { reports }).await?.into_inner().outcomes;
        Ok(outcomes.iter().filter(|o| o.recorded).count())
    }

    /// The node's verdict class for a message, as an agent of the
    /// organisation `test` would ask.
    pub async fn verdict(&self, raw: &[u8]) -> anyhow::Result<starling_proto::v1::Class> {
        self.verdict_as(&self.credential, raw).await
    }

    /// The node's verdict class for a message, as an agent holding
    /// `credential` (another organisation's: [`Node::add_organisation`])
    /// would ask.
    pub async fn verdict_as(&self, credential: &str, raw: &[u8]) -> anyhow::Result<starling_proto::v1::Class> {
        let channel = starling_proto::client::Target::new(&self.url).connect().await?;
        let mut client = starling_proto::client::network(
            channel,
            starling_proto::client::Credential::new(credential).map_err(anyhow::Error::msg)?,
        );
        let hello = client.hello(starling_proto::v1::HelloRequest::default()).await?.into_inner();
        let key: [u8; 32] = hello.fingerprint_key.try_into().map_err(|_| anyhow::anyhow!("the node sent no key"))?;
        let fingerprinter = starling_fingerprint::Fingerprinter::new(&starling_fingerprint::Key::from_bytes(key));
        let messages = vec![starling_proto::to_wire(&fingerprinter.fingerprint(raw))];
        let verdicts = client.check(starling_proto::v1::CheckRequest { messages }).await?.into_inner().verdicts;
        Ok(verdicts.first().map(|v| v.class()).unwrap_or(starling_proto::v1::Class::Unspecified))
    }

    /// Waits, up to `timeout`, until the node's verdict on `raw` is
    /// `class` (a report takes effect asynchronously); whether it did.
    pub async fn verdict_becomes(&self, raw: &[u8], class: starling_proto::v1::Class, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.verdict(raw).await.is_ok_and(|verdict| verdict == class) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client for the organisation.
    pub async fn client(
        &self,
    ) -> anyhow::Result<starling_proto::v1::network_client::NetworkClient<starling_proto::client::Authorised>> {
        let channel = starling_proto::client::Target::new(&self.url).connect().await?;
        Ok(starling_proto::client::network(
            channel,
            starling_proto::client::Credential::new(&self.credential).map_err(anyhow::Error::msg)?,
        ))
    }
}

pub(crate) async fn start_node(
    data: &Path,
    port: u16,
    shared: bool,
    (latest_agent_version, release_notes_url): &(String, String),
) -> anyhow::Result<starling_network::Running> {
    let mut config = starling_network::NodeConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        data_dir: data.to_owned(),
        latest_agent_version: latest_agent_version.clone(),
        release_notes_url: release_notes_url.clone(),
        ..starling_network::NodeConfig::default()
    };
    if !shared {
        config.trust.threshold = 1.0;
        config.trust.ham_threshold = 1.0;
        config.trust.consensus_organisations = 1;
    }
    Ok(starling_network::start(config).await?)
}
