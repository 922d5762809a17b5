//! The Starling agent: watches mailboxes over IMAP or in local Maildirs,
//! fingerprints each new message, asks the network, and files spam.
//!
//! The parts, from the outside in:
//!
//! - [`agent`] runs everything: the mailbox list, one task per watched
//!   folder, the re-check queue.
//! - [`imap`] and [`maildir`] are the mail stores: they find new messages,
//!   read them, and carry out actions without ever losing one.
//! - [`process`] and [`pipeline`] turn a batch of messages into actions:
//!   [`facts`] and [`whitelist`], fingerprints, the empty-message rules, the
//!   [`network`]'s verdicts, and [`policy`] — a pure function.
//! - [`activation`] enforces the organisation's trial or subscription
//!   (activation codes, warnings, the mail to the postmaster in [`notify`]).
//! - [`state`] is the SQLite database; [`events`] the catalogue of what the
//!   agent tells its administrator; [`config`] the TOML configuration.

pub mod activation;
pub mod agent;
pub mod config;
pub mod events;
pub mod facts;
pub mod feedback;
pub mod header_tokens;
pub mod imap;
pub mod inline;
pub mod learning;
pub mod live;
pub mod maildir;
pub mod network;
pub mod notify;
pub mod pipeline;
pub mod policy;
pub mod process;
pub mod recent;
pub mod retro;
pub mod schedule;
pub mod settings;
pub mod state;
pub mod tagging;
pub mod users;
pub mod whitelist;

pub use agent::{Options, Work, run};
pub use config::AgentConfig;
