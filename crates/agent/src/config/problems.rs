//! Checking a configuration: every problem at once, each with its key
//! path, one check per section.

use super::*;

/// The most messages of each class the model learns of a mailbox's
/// existing mail (bounded: it is fetched and read at the mailbox's first
/// sight).
const MAX_HISTORY_MESSAGES: u32 = 5_000;

/// The checks of every section.
impl AgentConfig {
    /// Everything wrong with this configuration, each with its key path.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.state_dir.as_os_str().is_empty() {
            problems.push("state_dir: must not be empty".into());
        }
        self.network_problems(&mut problems);
        self.maildir_problems(&mut problems);
        self.schedules_problems(&mut problems);
        self.console_problems(&mut problems);
        self.model_problems(&mut problems);
        self.notify_problems(&mut problems);
        self.milter_problems(&mut problems);
        self.retention_problems(&mut problems);
        self.imap_problems(&mut problems);
        self.users_problems(&mut problems);
        self.policy_problems(&mut problems);
        problems
    }

    /// The `[network]` section.
    fn network_problems(&self, problems: &mut Vec<String>) {
        let n = &self.network;
        if n.urls().next().is_none() {
            problems.push("network.url: must name a node".into());
        }
        for url in n.urls() {
            if !(url.starts_with("http://") || url.starts_with("https://")) && url.contains("://") {
                problems.push(format!("network.url: must be http:// or https://, got {url}"));
            }
        }
        for host in n.urls().filter_map(plaintext_host) {
            if is_loopback_host(host) || n.allow_plaintext_public {
                continue;
            }
            problems.push(format!(
                "network.url: http:// to {host} would send the organisation's credential in clear; use https:// \
                 (or set network.allow_plaintext_public = true on a trusted private network)"
            ));
        }
        if n.timeout_ms < 100 {
            problems.push(format!("network.timeout_ms: must be at least 100, got {}", n.timeout_ms));
        }
        if n.batch_size == 0 || n.batch_size > 1024 {
            problems.push(format!("network.batch_size: must be 1..=1024, got {}", n.batch_size));
        }
        if n.retry_seconds == 0 {
            problems.push("network.retry_seconds: must be at least 1".into());
        }
    }

    /// The `[maildir]` section, when Maildir is the store.
    fn maildir_problems(&self, problems: &mut Vec<String>) {
        if self.mail_store == MailStoreKind::Maildir {
            let layout = &self.maildir.layout;
            if !(layout.contains("{user}") || (layout.contains("{domain}") && layout.contains("{local}"))) {
                problems.push(format!(
                    "maildir.layout: must contain {{user}}, or both {{domain}} and {{local}}, got {layout:?}"
                ));
            }
            if layout.starts_with('/') || layout.split('/').any(|p| p == "..") {
                problems.push(format!("maildir.layout: must be a relative path without '..', got {layout:?}"));
            }
        }
    }

    /// The rescan and report schedules and the `[reports]` figures.
    fn schedules_problems(&self, problems: &mut Vec<String>) {
        if let Err(e) = crate::schedule::Daily::parse(&self.rescan.time, &self.rescan.timezone) {
            let key = if matches!(e, crate::schedule::ScheduleError::Time(_)) { "time" } else { "timezone" };
            problems.push(format!("rescan.{key}: {e}"));
        }
        if let Err(e) = crate::schedule::Daily::parse(&self.reports.time, &self.rescan.timezone)
            && matches!(e, crate::schedule::ScheduleError::Time(_))
        {
            problems.push(format!("reports.time: {e}"));
        }
        if !(self.reports.hourly_cost.is_finite() && self.reports.hourly_cost >= 0.0) {
            problems.push(format!("reports.hourly_cost: must be 0 or more, got {}", self.reports.hourly_cost));
        }
        if self.reports.seconds_per_spam > 3600 {
            problems.push(format!("reports.seconds_per_spam: must be 0..=3600, got {}", self.reports.seconds_per_spam));
        }
        if (1..31).contains(&self.reports.user_statistics_days) {
            problems.push(format!(
                "reports.user_statistics_days: 0 (keep for ever) or at least 31 (the per-user views show 30 days), got {}",
                self.reports.user_statistics_days
            ));
        }
        if self.reports.currency.chars().count() > 8 || self.reports.currency.chars().any(char::is_control) {
            problems.push("reports.currency: at most 8 characters".into());
        }
    }

    /// The `[console]` section.
    fn console_problems(&self, problems: &mut Vec<String>) {
        if self.console.listen.parse::<std::net::SocketAddr>().is_err() {
            problems.push(format!(
                "console.listen: must be an address and port such as 127.0.0.1:8025, got {:?}",
                self.console.listen
            ));
        }
        if self.console.tls_certificate.as_os_str().is_empty() != self.console.tls_private_key.as_os_str().is_empty() {
            problems.push("console.tls_certificate, console.tls_private_key: give both or neither".into());
        }
        if self.console.session_hours == 0 || self.console.session_hours > 24 * 30 {
            problems.push(format!("console.session_hours: must be 1..=720, got {}", self.console.session_hours));
        }
    }

    /// The `[model]` and `[activation]` sections.
    fn model_problems(&self, problems: &mut Vec<String>) {
        let m = &self.model;
        if !(0.5..1.0).contains(&m.threshold_floor) {
            problems
                .push(format!("model.threshold_floor: must be at least 0.5 and below 1, got {}", m.threshold_floor));
        }
        if !(m.target_false_positive_rate > 0.0 && m.target_false_positive_rate < 0.1) {
            problems.push(format!(
                "model.target_false_positive_rate: must be above 0 and below 0.1, got {}",
                m.target_false_positive_rate
            ));
        }
        if !(16..=26).contains(&m.table_bits) {
            problems.push(format!("model.table_bits: must be 16..=26, got {}", m.table_bits));
        }
        if m.ham_after_minutes == 0 {
            problems.push("model.ham_after_minutes: must be at least 1".into());
        }
        if m.history_messages > MAX_HISTORY_MESSAGES {
            problems.push(format!(
                "model.history_messages: must be at most {MAX_HISTORY_MESSAGES}, got {}",
                m.history_messages
            ));
        }
        if !self.activation.public_key.is_empty()
            && starling_proto::activation::parse_public_key(&self.activation.public_key).is_none()
        {
            problems.push("activation.public_key: must be 64 hexadecimal digits (or empty)".into());
        }
    }

    /// The `[notify]` section.
    fn notify_problems(&self, problems: &mut Vec<String>) {
        let nt = &self.notify;
        if nt.enabled {
            if nt.smtp_host.is_empty() || nt.smtp_port == 0 {
                problems.push("notify.smtp_host, notify.smtp_port: a host and a port are needed".into());
            }
            for (key, value) in [("notify.from", &nt.from), ("notify.to", &nt.to)] {
                if value.parse::<lettre::Address>().is_err() {
                    problems
                        .push(format!("{key}: must be a mail address such as postmaster@example.org, got {value:?}"));
                }
            }
            for (key, value) in
                [("notify.warning_subject", &nt.warning_subject), ("notify.stopped_subject", &nt.stopped_subject)]
            {
                if value.contains(['\r', '\n']) {
                    problems.push(format!("{key}: must be one line"));
                }
            }
        }
    }

    /// The `[milter]` section.
    fn milter_problems(&self, problems: &mut Vec<String>) {
        let mt = &self.milter;
        if let Err(e) = mt.listen_address() {
            problems.push(format!("milter.listen: {e}"));
        }
        if mt.parse_mode().is_none() {
            problems.push(format!("milter.socket_mode: must be an octal mode such as 0660, got {:?}", mt.socket_mode));
        }
        let reply = mt.reject_text.as_bytes();
        if reply.len() < 5
            || reply[0] != b'5'
            || !reply[1..3].iter().all(u8::is_ascii_digit)
            || reply[3] != b' '
            || mt.reject_text.contains(['\r', '\n', '%'])
        {
            problems.push(format!(
                "milter.reject_text: must be one line starting with a 5xx code and a space, without %, got {:?}",
                mt.reject_text
            ));
        }
        if mt.timeout_ms == 0 || mt.timeout_ms > 60_000 {
            problems.push(format!("milter.timeout_ms: must be 1..=60000, got {}", mt.timeout_ms));
        }
        if mt.max_message_bytes < 4096 {
            problems.push(format!("milter.max_message_bytes: must be at least 4096, got {}", mt.max_message_bytes));
        }
        if mt.max_connections == 0 {
            problems.push("milter.max_connections: must be at least 1".into());
        }
    }

    /// What is remembered: `[retro]` and `rescan.max_age_hours`.
    fn retention_problems(&self, problems: &mut Vec<String>) {
        if self.retro.max_messages == 0 {
            problems.push("retro.max_messages: must be at least 1".into());
        }
        if self.rescan.max_age_hours == 0 || self.rescan.max_age_hours > 24 * 30 {
            problems.push(format!("rescan.max_age_hours: must be 1..=720, got {}", self.rescan.max_age_hours));
        }
    }

    /// The `[imap]` section.
    fn imap_problems(&self, problems: &mut Vec<String>) {
        let i = &self.imap;
        if self.mail_store == MailStoreKind::Imap {
            if i.host.is_empty() {
                problems.push("imap.host: must not be empty".into());
            }
            if i.security == ImapSecurity::Plain && !is_loopback_host(&i.host) {
                problems.push(format!(
                    "imap.security: plain is only allowed for a server on this machine, not {}; use tls or starttls",
                    i.host
                ));
            }
            if i.admin_user.is_empty() {
                problems.push("imap.admin_user: must not be empty".into());
            }
            if i.auth == ImapAuth::MasterUser && i.master_separator.is_empty() {
                problems.push("imap.master_separator: must not be empty with auth = \"master-user\"".into());
            }
            if self.users.source == UserSource::Maildir {
                problems.push(
                    "users.source: maildir needs mail_store = \"maildir\"; use doveadm, csv or list with imap".into(),
                );
            }
        }
        if i.timeout_seconds == 0 {
            problems.push("imap.timeout_seconds: must be at least 1".into());
        }
        if i.spam_session_quiet_seconds > 86_400 {
            problems.push(format!(
                "imap.spam_session_quiet_seconds: must be 0..=86400, got {}",
                i.spam_session_quiet_seconds
            ));
        }
        if i.idle_seconds < 60 || i.idle_seconds > 29 * 60 {
            problems.push(format!("imap.idle_seconds: must be 60..=1740, got {}", i.idle_seconds));
        }
        if i.reconnect_min_seconds == 0 || i.reconnect_min_seconds > i.reconnect_max_seconds {
            problems.push(format!(
                "imap.reconnect_min_seconds: must be at least 1 and at most reconnect_max_seconds ({}), got {}",
                i.reconnect_max_seconds, i.reconnect_min_seconds
            ));
        }
        if i.max_concurrent_logins == 0 {
            problems.push("imap.max_concurrent_logins: must be at least 1".into());
        }
        if i.max_message_bytes < 64 << 10 {
            problems.push(format!("imap.max_message_bytes: must be at least 65536, got {}", i.max_message_bytes));
        }
    }

    /// The `[users]` section.
    fn users_problems(&self, problems: &mut Vec<String>) {
        let u = &self.users;
        match u.source {
            UserSource::Doveadm if u.doveadm_command.is_empty() => {
                problems.push("users.doveadm_command: must not be empty with source = \"doveadm\"".into())
            }
            UserSource::Csv if u.csv_file.is_none() => {
                problems.push("users.csv_file: required with source = \"csv\"".into())
            }
            _ => {}
        }
        for (index, user) in u.list.iter().enumerate() {
            if let Err(e) = check_name(user) {
                problems.push(format!("users.list[{index}]: {e}"));
            }
        }
        if u.refresh_minutes == 0 {
            problems.push("users.refresh_minutes: must be at least 1".into());
        }
    }

    /// The `[policy]`, `[whitelist]` and `[[shared]]` sections.
    fn policy_problems(&self, problems: &mut Vec<String>) {
        let p = &self.policy;
        let actions = [
            ("policy.spam_action", Some(p.spam_action)),
            ("policy.phish_action", if let PhishAction::Action(a) = p.phish_action { Some(a) } else { None }),
            ("policy.shared_action", Some(p.shared_action)),
        ];
        for (key, action) in actions {
            if action == Some(ActionKind::Folder) && p.folder.trim().is_empty() {
                problems.push(format!("{key}: the folder action needs policy.folder"));
            }
        }
        for (key, name) in [
            ("policy.spam_folder", &p.spam_folder),
            ("policy.folder", &p.folder),
            ("policy.trash_folder", &p.trash_folder),
        ] {
            if let Err(e) = check_folder_name(name) {
                problems.push(format!("{key}: {e}"));
            }
        }
        if p.tag_prefix.contains(['\r', '\n']) {
            problems.push("policy.tag_prefix: must be one line".into());
        }
        if !(0.0..=1.0).contains(&p.min_confidence) {
            problems.push(format!("policy.min_confidence: must be between 0 and 1, got {}", p.min_confidence));
        }
        for (index, entry) in self.whitelist.entries.iter().enumerate() {
            if let Err(e) = Entry::parse(entry) {
                problems.push(format!("whitelist.entries[{index}]: {e}"));
            }
        }
        if self.whitelist.received_headers > 20 {
            problems.push(format!(
                "whitelist.received_headers: must be at most 20, got {}",
                self.whitelist.received_headers
            ));
        }
        for (index, shared) in self.shared.iter().enumerate() {
            if shared.account.is_empty() || shared.account.contains(['/', '\\']) || shared.account == ".." {
                problems.push(format!("shared[{index}].account: must be an account name, got {:?}", shared.account));
            }
            if let Err(e) = check_folder_name(&shared.folder) {
                problems.push(format!("shared[{index}].folder: {e}"));
            }
            if let Err(e) = check_folder_name(&shared.spam_folder) {
                problems.push(format!("shared[{index}].spam_folder: {e}"));
            }
            if shared.action == Some(ActionKind::Folder) && p.folder.trim().is_empty() {
                problems.push(format!("shared[{index}].action: the folder action needs policy.folder"));
            }
        }
    }
}

/// A folder name must be usable on IMAP and as a Maildir++ folder.
pub(super) fn check_folder_name(name: &str) -> Result<(), String> {
    if name.chars().any(|c| c.is_control()) || name.contains('"') || name.contains('\\') {
        return Err(format!("{name:?} has control characters, quotes or backslashes"));
    }
    if name.split(['/', '.']).any(|p| p == "..") || name.starts_with('/') {
        return Err(format!("{name:?} must not be absolute or contain '..'"));
    }
    Ok(())
}

/// The host of a plain `http://` address (without port or brackets);
/// `None` for anything else. An address without a scheme is plain HTTP.
pub(super) fn plaintext_host(url: &str) -> Option<&str> {
    if url.starts_with("https://") {
        return None;
    }
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next();
    }
    Some(authority.split(':').next().unwrap_or(authority))
}

pub(super) fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
