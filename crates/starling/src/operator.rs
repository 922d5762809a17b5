//! How the operator's tools reach a node: its address, the operator token
//! in its data directory, and the CA to trust for https.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use starling_proto::client::{self, Credential, Target};
use starling_proto::v1;

/// How operator tools reach a node.
#[derive(Args, Clone)]
pub(crate) struct OperatorArgs {
    /// The node's address.
    #[arg(long, default_value = "127.0.0.1:7890", value_name = "ADDR")]
    pub(crate) network: String,
    /// The node's data directory (where operator.token is).
    #[arg(long, default_value = "starling-network", value_name = "DIR")]
    data: PathBuf,
    /// File holding the operator token (default: DIR/operator.token).
    #[arg(long, value_name = "FILE")]
    operator_token_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust for an https:// node.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

impl OperatorArgs {
    /// How to reach the node at `address` with the data directory `data`
    /// (the embedded node of `starling serve`).
    pub(crate) fn for_node(address: &str, data: &Path) -> OperatorArgs {
        OperatorArgs {
            network: address.to_owned(),
            data: data.to_owned(),
            operator_token_file: None,
            ca: None,
            json: false,
        }
    }

    /// The node's data directory.
    pub(crate) fn data_dir(&self) -> &Path {
        &self.data
    }

    pub(crate) async fn admin(&self) -> anyhow::Result<v1::admin_client::AdminClient<client::Authorised>> {
        let path = self.operator_token_file.clone().unwrap_or_else(|| self.data.join("operator.token"));
        let token = std::fs::read_to_string(&path).with_context(|| {
            format!("cannot read the operator token {} (pass --data DIR or --operator-token-file)", path.display())
        })?;
        let credential = Credential::new(&token).map_err(anyhow::Error::msg)?;
        let mut target = Target::new(&self.network);
        if let Some(ca) = &self.ca {
            target.ca_pem = Some(std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?);
        }
        let channel = target
            .connect()
            .await
            .with_context(|| format!("cannot reach the node at {} (is it running?)", self.network))?;
        Ok(client::admin(channel, credential))
    }
}
