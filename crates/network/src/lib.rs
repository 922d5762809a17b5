//! The Starling network node: the service every agent asks for verdicts and
//! sends its users' reports to.
//!
//! - [`engine::Engine`] — checks, reports, revocations, explanations: the
//!   fuzzy index (band keys, verified by the match rule) and the reputation
//!   model ([`trust`]) over a [`store::Store`].
//! - [`store::embedded::Embedded`] — the default store: one crash-safe redb
//!   file. Every operation touches one key or one key prefix, so a Redis
//!   Cluster backend can implement the same trait.
//! - [`filter::Filter`] — an in-memory Bloom filter of existing index keys, so
//!   that checking clean mail (nearly all mail) never touches the store.
//! - [`writer`] — the single writer thread with group commit: a report is
//!   acknowledged only after it is on disk.
//! - [`server`] — the gRPC services (`Network` for agents, `Admin` for
//!   operators), `/metrics` and `/health` on one listener, TLS with rustls.
//! - [`changes`] — the in-memory log of index keys that became spam, behind
//!   the `Changes` long-poll.
//! - [`node`] — start-up and orderly shutdown.
//!
//! Design decision: reputation is computed when a message is checked, from
//! the reporters' *current* trust, not frozen into the evidence when reports
//! arrive. A reporter who is later found to be wrong loses influence over
//! everything they ever reported, which is what defeats slow poisoning.

pub mod changes;
pub mod config;
pub mod engine;
pub mod filter;
pub mod metrics;
pub mod migrate;
pub mod model;
pub mod node;
pub mod server;
pub mod store;
pub mod trust;
pub mod writer;

pub use config::NodeConfig;
pub use node::{NodeError, Running, start};
