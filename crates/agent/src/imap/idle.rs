//! Waiting for mail: IDLE, or a poll where the server has none.

use super::*;

impl Connected {
    /// Waits in IDLE (or polls) for new mail or a command, or until
    /// `deadline`. The deadline is part of the wait, not a race around it:
    /// a wait given up half-way would leave the session inside IDLE.
    pub(super) async fn wait(
        &mut self,
        watcher: &mut Watcher,
        stop: &CancellationToken,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Wake, SessionError> {
        let until = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(until);
        if !self.caps.idle {
            return tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(30)) => Ok(Wake::Mail),
                () = &mut until => Ok(Wake::Mail),
                () = stop.cancelled() => Ok(Wake::Stopped),
                work = watcher.work.recv() => Ok(work.map_or(Wake::Stopped, Wake::Work)),
            };
        }
        if watcher.role == Role::Filter {
            self.notify_spam_folder().await?;
        }
        // An EXISTS that came with an earlier command's reply (mail that
        // arrived after the last look) means there is work already.
        let unsolicited = self.session()?.unsolicited_responses.clone();
        // Messages leaving the spam folder matter to its task only.
        let watch_expunges = matches!(watcher.role, Role::Spam { .. });
        let mut pending = false;
        for response in self.sort_unsolicited(std::iter::from_fn(|| unsolicited.try_recv().ok()).collect()) {
            pending |= self.worth_waking(response, watch_expunges);
        }
        if pending {
            return Ok(Wake::Mail);
        }
        let session = self.session.take().ok_or(SessionError::Lost("no session".into()))?;
        let mut idle = session.idle();
        match tokio::time::timeout(self.timeout, idle.init()).await {
            Err(_) => return Err(SessionError::Timeout),
            Ok(Err(e)) => return Err(SessionError::Lost(e.to_string())),
            Ok(Ok(())) => {}
        }
        // Mail that arrived while IDLE started was reported before it.
        for response in self.sort_unsolicited(std::iter::from_fn(|| unsolicited.try_recv().ok()).collect()) {
            let expunge = watch_expunges && matches!(response, UnsolicitedResponse::Expunge(_));
            self.expunged |= expunge;
            pending |= expunge || matches!(response, UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_));
        }
        // A filter session without NOTIFY yet wakes when the spam folder
        // becomes known, to ask for it; a spam session that may close when
        // quiet, when a filter session has NOTIFY.
        let spam_watch = self.spam_watch.clone();
        let ask_notify =
            watcher.role == Role::Filter && self.caps.notify && !self.notify_refused && self.notifying.is_none();
        // (Not only when there is none at this instant: one that came
        // since the spam task looked left its wake-up for this wait.)
        let may_close =
            matches!(watcher.role, Role::Spam { .. }) && watcher.server.config.spam_session_quiet_seconds > 0;
        let named = async {
            if ask_notify {
                spam_watch.named.notified().await;
            } else if may_close {
                spam_watch.ready.notified().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(named);
        let wake = if pending {
            Wake::Mail
        } else {
            let idle_until = tokio::time::Instant::now() + self.idle_time;
            loop {
                let left = idle_until.saturating_duration_since(tokio::time::Instant::now());
                let (waiting, interrupt) = idle.wait_with_timeout(left);
                let wake = tokio::select! {
                    response = waiting => match response {
                        Ok(IdleResponse::NewData(data)) => {
                            use async_imap::imap_proto::{MailboxDatum, Response};
                            match data.parsed() {
                                // News of the spam folder is its task's:
                                // this session goes on waiting.
                                Response::MailboxData(MailboxDatum::Status { mailbox, .. }) => {
                                    let mailbox = mailbox.to_string();
                                    self.spam_news(&mailbox);
                                    None
                                }
                                Response::Expunge(_) => {
                                    self.expunged |= watch_expunges;
                                    Some(Wake::Mail)
                                }
                                _ => Some(Wake::Mail),
                            }
                        }
                        Ok(IdleResponse::Timeout | IdleResponse::ManualInterrupt) => Some(Wake::Mail),
                        Err(e) => return Err(SessionError::Lost(e.to_string())),
                    },
                    () = stop.cancelled() => Some(Wake::Stopped),
                    () = &mut until => Some(Wake::Mail),
                    () = &mut named => Some(Wake::Mail),
                    work = watcher.work.recv() => Some(work.map_or(Wake::Stopped, Wake::Work)),
                };
                drop(interrupt);
                if let Some(wake) = wake {
                    break wake;
                }
            }
        };
        let session = match tokio::time::timeout(self.timeout, idle.done()).await {
            Err(_) => return Err(SessionError::Timeout),
            Ok(Err(e)) => return Err(SessionError::Lost(e.to_string())),
            Ok(Ok(session)) => session,
        };
        self.session = Some(session);
        Ok(wake)
    }

    /// In a filter session, where the server has NOTIFY and the spam
    /// folder is known: asks to be told of changes in the spam folder's
    /// tree too (RFC 5465), besides those of the selected folder, which
    /// IDLE reports as before. A refusal only means the spam task keeps
    /// its own session.
    async fn notify_spam_folder(&mut self) -> Result<(), SessionError> {
        if !self.caps.notify || !self.caps.idle || self.notify_refused {
            return Ok(());
        }
        let Some(folder) = self.spam_watch.folder() else { return Ok(()) };
        if self.notifying.as_ref().is_some_and(|n| n.folder == folder) {
            return Ok(());
        }
        let command = format!(
            "NOTIFY SET (selected (MessageNew MessageExpunge FlagChange)) (subtree {} (MessageNew MessageExpunge FlagChange))",
            quote(&folder)
        );
        let timeout = self.timeout;
        let session = self.session()?;
        match tokio::time::timeout(timeout, session.run_command_and_check_ok(&command)).await {
            Err(_) => Err(SessionError::Timeout),
            Ok(Err(async_imap::error::Error::No(text) | async_imap::error::Error::Bad(text))) => {
                tracing::debug!(mailbox = self.mailbox, "NOTIFY refused: {text}");
                self.notify_refused = true;
                Ok(())
            }
            Ok(Err(e)) => Err(lost(e)),
            Ok(Ok(())) => {
                tracing::debug!(mailbox = self.mailbox, folder, "told of changes in the spam folder (NOTIFY)");
                self.notifying = Some(Notifying::new(self.spam_watch.clone(), folder));
                Ok(())
            }
        }
    }

    /// A STATUS response (NOTIFY) about `mailbox`: when it is in the spam
    /// folder's tree, the spam task is told.
    pub(super) fn spam_news(&self, mailbox: &str) {
        if let Some(notifying) = &self.notifying
            && self.in_tree(mailbox, &notifying.folder)
        {
            self.spam_watch.changed();
        }
    }

    /// The unsolicited responses taken since the last look, less the news
    /// of the spam folder (NOTIFY `STATUS`), which goes to its task.
    /// `async-imap` keeps at most [`UNSOLICITED_KEPT`] of them and drops
    /// the rest (a move of many messages is as many EXPUNGEs): after a full
    /// queue, such news may have been among those dropped, so the spam task
    /// looks too.
    pub(super) fn sort_unsolicited(&self, responses: Vec<UnsolicitedResponse>) -> Vec<UnsolicitedResponse> {
        if responses.len() >= UNSOLICITED_KEPT && self.notifying.is_some() {
            self.spam_watch.changed();
        }
        responses
            .into_iter()
            .filter(|response| match response {
                UnsolicitedResponse::Status { mailbox, .. } => {
                    self.spam_news(mailbox);
                    false
                }
                _ => true,
            })
            .collect()
    }

    /// Whether a response that came with an earlier command's reply means
    /// work: new mail, or (with CONDSTORE) changed flags to look at, or a
    /// message leaving the spam folder (noted in `expunged`).
    fn worth_waking(&mut self, response: UnsolicitedResponse, watch_expunges: bool) -> bool {
        match response {
            UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_) => true,
            UnsolicitedResponse::Other(_) => self.modseq.is_some(),
            UnsolicitedResponse::Expunge(_) if watch_expunges => {
                self.expunged = true;
                true
            }
            _ => false,
        }
    }
}
