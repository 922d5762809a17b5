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
        // An EXISTS that came with an earlier command's reply (mail that
        // arrived after the last look) means there is work already.
        let unsolicited = self.session()?.unsolicited_responses.clone();
        // Messages leaving the spam folder matter to its task only.
        let watch_expunges = matches!(watcher.role, Role::Spam { .. });
        let mut pending = false;
        while let Ok(response) = unsolicited.try_recv() {
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
        while let Ok(response) = unsolicited.try_recv() {
            let expunge = watch_expunges && matches!(response, UnsolicitedResponse::Expunge(_));
            self.expunged |= expunge;
            pending |= expunge || matches!(response, UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_));
        }
        let wake = if pending {
            Wake::Mail
        } else {
            let (waiting, interrupt) = idle.wait_with_timeout(self.idle_time);
            let wake = tokio::select! {
                response = waiting => match response {
                    Ok(IdleResponse::NewData(data)) => {
                        self.expunged |=
                            watch_expunges && matches!(data.parsed(), async_imap::imap_proto::Response::Expunge(_));
                        Wake::Mail
                    }
                    Ok(IdleResponse::Timeout | IdleResponse::ManualInterrupt) => Wake::Mail,
                    Err(e) => return Err(SessionError::Lost(e.to_string())),
                },
                () = stop.cancelled() => Wake::Stopped,
                () = &mut until => Wake::Mail,
                work = watcher.work.recv() => work.map_or(Wake::Stopped, Wake::Work),
            };
            drop(interrupt);
            wake
        };
        let session = match tokio::time::timeout(self.timeout, idle.done()).await {
            Err(_) => return Err(SessionError::Timeout),
            Ok(Err(e)) => return Err(SessionError::Lost(e.to_string())),
            Ok(Ok(session)) => session,
        };
        self.session = Some(session);
        Ok(wake)
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
