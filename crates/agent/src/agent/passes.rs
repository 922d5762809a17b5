//! The supervisor's periodic passes: retro-filing (keys from reports and
//! the network, the model becoming sure), implicit ham, model requests,
//! forgetting old deliveries, rescans and the re-check queue.

use super::*;

impl Supervisor {
    /// Delivered copies of what became spam (keys of a report here, or of
    /// the network's changes) are looked at again by their mailbox tasks.
    pub(super) async fn retro_keys(&mut self, keys: Vec<u64>) {
        if !self.config.retro.enabled {
            return;
        }
        let ids = self.processor.recent.candidates(&keys);
        if ids.is_empty() {
            return;
        }
        match self.state.call(move |c| crate::recent::locate(c, &ids)).await {
            Ok(rows) => self.dispatch_retro(rows),
            Err(e) => self.events.emit(events::STATE_ERROR, None, e.to_string()),
        }
    }

    pub(super) fn dispatch_retro(&self, rows: Vec<crate::recent::Located>) {
        for (mailbox, rows) in crate::retro::by_mailbox(rows) {
            let Some(running) = self.running.get(&mailbox) else { continue };
            let locators = rows.into_iter().map(|r| (r.folder, r.locator)).collect();
            // A full queue drops the look; the daily rescan still comes.
            let _ = running.work.try_send(Work::Retro(locators));
        }
    }

    /// When the model learnt something, its linear classifier is fitted
    /// again and the mail it is now sure of is looked at again: once the
    /// model has settled ([`MODEL_SETTLED`], at most
    /// [`MODEL_PASS_MAX_WAIT`]), and at most one pass per ten times its
    /// cost.
    pub(super) async fn model_pass(&mut self) {
        let version = self.learner.version();
        let now = tokio::time::Instant::now();
        if version != self.model_seen.0 {
            self.model_seen = (version, now, self.model_seen.2.or(Some(now)));
        }
        let settled = now.duration_since(self.model_seen.1) >= MODEL_SETTLED
            || self.model_seen.2.is_some_and(|owed| now.duration_since(owed) >= MODEL_PASS_MAX_WAIT);
        if version == self.model_version || !settled || now < self.model_pass_after {
            return;
        }
        // The linear classifier follows what was learnt (whatever the
        // policy: `suggest` reports its opinion too); its fit counts in the
        // pass's cost.
        let started = std::time::Instant::now();
        self.learner.refit().await;
        self.model_seen.2 = None;
        self.model_version = version;
        if !self.config.retro.enabled
            || self.config.policy.model != crate::config::ModelMode::File
            || !self.learner.ready()
        {
            self.model_pass_after = now + (started.elapsed() * 10).max(Duration::from_secs(2));
            return;
        }
        let mut after = 0;
        let mut sure = Vec::new();
        loop {
            let page = match self.state.call(move |c| crate::recent::with_features(c, after, 2000)).await {
                Ok(page) => page,
                Err(e) => {
                    self.events.emit(events::STATE_ERROR, None, e.to_string());
                    return;
                }
            };
            let Some(last) = page.last().map(|(row, _)| row.id) else { break };
            after = last;
            let learner = self.learner.clone();
            let found = tokio::task::spawn_blocking(move || {
                page.into_iter()
                    .filter(|(_, bytes)| {
                        starling_model::Features::from_bytes(bytes).is_some_and(|f| learner.opinion(&f).sure())
                    })
                    .map(|(row, _)| row)
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            sure.extend(found);
        }
        self.model_pass_after = now + (started.elapsed() * 10).max(Duration::from_secs(2));
        if !sure.is_empty() {
            tracing::debug!(messages = sure.len(), "the model is sure of delivered mail");
            self.dispatch_retro(sure);
        }
    }

    /// Mail left in place long enough by users who report spam is asked
    /// about (still there? read?) and learnt as ham.
    pub(super) async fn settle_pass(&mut self) {
        if self.config.policy.model == crate::config::ModelMode::Off {
            return;
        }
        let before = jiff::Timestamp::now().as_second() - i64::from(self.config.model.ham_after_minutes) * 60;
        let rows = self
            .state
            .call(move |c| {
                let rows = crate::recent::unsettled(c, before, 2000)?;
                let reporting = crate::retro::reporting_mailboxes(c)?;
                // Asked once: a task that cannot answer now does not hold
                // the others up.
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                crate::recent::set_status(c, &ids, crate::recent::SETTLED)?;
                Ok(rows.into_iter().filter(|r| reporting.contains(&r.mailbox)).collect::<Vec<_>>())
            })
            .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => return self.events.emit(events::STATE_ERROR, None, e.to_string()),
        };
        let read = self.config.model.ham_requires_read;
        for (mailbox, rows) in crate::retro::by_mailbox(rows) {
            if let Some(running) = self.running.get(&mailbox) {
                let _ = running.work.try_send(Work::Settle { rows, read });
            }
        }
    }

    /// Runs `starling model retrain` requests.
    pub(super) async fn model_requests(&mut self) {
        let Ok(pending) = self.state.call(|c| crate::learning::pending_requests(c)).await else { return };
        for id in pending {
            let detail = match self.learner.rebuild().await {
                Ok(()) => {
                    let status = self.learner.status();
                    format!("rebuilt from {} spam and {} ham examples", status.spam, status.ham)
                }
                Err(e) => format!("failed: {e}"),
            };
            self.events.emit(events::MODEL_REBUILT, None, format!("Asked for: {detail}."));
            self.state.send(move |c| crate::learning::request_done(c, id, &detail));
        }
    }

    /// Forgets deliveries older than `rescan.max_age_hours`, and beyond
    /// `retro.max_messages`.
    pub(super) async fn forget_old_deliveries(&mut self) {
        let before = jiff::Timestamp::now().as_second() - i64::from(self.config.rescan.max_age_hours) * 3600;
        let keep = self.config.retro.max_messages;
        if let Ok(lowest) = self.state.call(move |c| crate::recent::expire(c, before, keep)).await {
            self.processor.recent.forget_below(lowest);
        }
    }

    /// When the next daily rescan is due.
    pub(super) fn next_rescan(&self) -> Option<tokio::time::Instant> {
        let schedule = self.schedule.as_ref()?;
        let now = jiff::Timestamp::now();
        let next = schedule.next_after(now);
        let wait = Duration::try_from(next.duration_since(now)).unwrap_or_default();
        tracing::debug!(%next, "next daily rescan");
        Some(tokio::time::Instant::now() + wait)
    }

    /// Starts the daily rescan of every watched mailbox.
    pub(super) async fn daily_rescan(&mut self) {
        let since = jiff::Timestamp::now().as_second() - i64::from(self.config.rescan.max_age_hours) * 3600;
        let mailboxes: Vec<String> = self.running.keys().cloned().collect();
        let requested = self
            .state
            .call(move |c| {
                mailboxes.iter().map(|m| state::rescan_request(c, m, since, "schedule")).collect::<Result<Vec<_>, _>>()
            })
            .await;
        match requested {
            Ok(_) => self.dispatch_rescans().await,
            Err(e) => self.events.emit(events::STATE_ERROR, None, e.to_string()),
        }
    }

    /// Rescans a stop interrupted cannot finish: they failed.
    pub(super) async fn abandon_stale_rescans(&self) {
        let _ = self
            .state
            .call(|c| {
                for status in [RescanStatus::Queued, RescanStatus::Running] {
                    for row in state::rescans_with_status(c, status)? {
                        state::rescan_update(
                            c,
                            row.id,
                            RescanStatus::Failed,
                            (row.total, row.checked, row.filed),
                            "interrupted: the agent stopped",
                        )?;
                    }
                }
                Ok(())
            })
            .await;
    }

    /// Hands rescans asked for to their mailbox tasks.
    pub(super) async fn dispatch_rescans(&mut self) {
        let Ok(requested) = self.state.call(|c| state::rescans_with_status(c, RescanStatus::Requested)).await else {
            return;
        };
        for row in requested {
            let (id, mailbox) = (row.id, row.mailbox.clone());
            let status = match self.running.get(&row.mailbox) {
                None => Some((RescanStatus::Failed, "the mailbox is not watched (unknown, disabled, or not listed)")),
                Some(running) => match running.work.try_send(Work::Rescan { id, since: row.since }) {
                    Ok(()) => Some((RescanStatus::Queued, "")),
                    // Busy: handed over at the next look.
                    Err(mpsc::error::TrySendError::Full(_)) => None,
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        Some((RescanStatus::Failed, "the mailbox's task stopped"))
                    }
                },
            };
            let Some((status, detail)) = status else { continue };
            if status == RescanStatus::Failed {
                self.events.emit(events::RESCAN_FAILED, Some(&mailbox), detail);
            }
            let _ = self.state.call(move |c| state::rescan_update(c, id, status, (0, 0, 0), detail)).await;
        }
    }

    /// Hands queued messages to their mailbox tasks while the network is up.
    pub(super) async fn drain_rechecks(&mut self) {
        // What a failing state database left in place joins the queue once
        // the database takes writes again.
        if !self.processor.unrecorded.is_empty() {
            let max = self.processor.recheck_queue_max;
            match self.processor.unrecorded.flush(&self.state, max).await {
                Ok(queued) => tracing::info!(queued, "messages a state-database failure left in place are queued"),
                Err(e) => tracing::debug!(error = %e, "the state database still refuses writes"),
            }
            self.processor.live.set_held(self.processor.unrecorded.len() as u64);
        }
        if self.network.health() != Health::Up {
            return;
        }
        let max_age = i64::from(self.config.network.recheck_max_age_hours) * 3600;
        let before = jiff::Timestamp::now().as_second() - max_age;
        let queued = self
            .state
            .call(move |c| {
                state::recheck_expire(c, before)?;
                state::recheck_mailboxes(c)
            })
            .await;
        let Ok(queued) = queued else { return };
        for (mailbox, _) in queued {
            let Some(running) = self.running.get(&mailbox) else { continue };
            let name = mailbox.clone();
            let Ok(locators) = self.state.call(move |c| state::recheck_take(c, &name, 256)).await else { continue };
            if !locators.is_empty() {
                let _ = running.work.try_send(Work::Recheck(locators));
            }
        }
    }

    /// Tells the live view how much work waits and how many tasks run.
    pub(super) fn report_load(&self) {
        let queued = self
            .running
            .values()
            .chain(self.spam_running.values())
            .map(|r| (r.work.max_capacity() - r.work.capacity()) as u64)
            .sum();
        self.live.set_load(queued, (self.running.len() + self.spam_running.len()) as u64);
    }
}
