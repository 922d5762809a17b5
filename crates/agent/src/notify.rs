//! Mail to the postmaster, over plain SMTP to the MTA in `[notify]` (the
//! local MTA by default), with `lettre`: a well-kept SMTP client and message
//! builder (MIT), so headers are encoded and lines folded as RFC 5322 wants.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::NotifyConfig;

/// How long one delivery attempt may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Sends one text message to `[notify] to`.
pub async fn send(config: &NotifyConfig, subject: &str, text: &str) -> Result<(), String> {
    let from = config.from.parse().map_err(|e| format!("notify.from: {e}"))?;
    let to = config.to.parse().map_err(|e| format!("notify.to: {e}"))?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(text.to_owned())
        .map_err(|e| e.to_string())?;
    // Plain SMTP to a local or trusted relay; `builder_dangerous` is
    // lettre's name for "no TLS".
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.smtp_host)
        .port(config.smtp_port)
        .timeout(Some(TIMEOUT))
        .build();
    transport.send(message).await.map(|_| ()).map_err(|e| e.to_string())
}
