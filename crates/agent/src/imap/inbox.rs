//! The inbox task: new mail, re-checks, rescans, settling implicit ham and learning.

use super::*;

impl Connected {
    /// The loop of an inbox (or shared folder): new mail, keywords,
    /// re-checks and rescans.
    pub(super) async fn run_filter(
        &mut self,
        watcher: &mut Watcher,
        stop: &CancellationToken,
    ) -> Result<(), SessionError> {
        let folder = watcher.folder.clone();
        let next = self.select(&folder).await?;
        let mut recovering = self.recover().await?;
        let mut last = self.start_position(watcher, next).await?;
        loop {
            let newer = self.uids_after(last).await?;
            if recovering && !newer.is_empty() {
                // Perhaps the copy of an interrupted tag.
                recovering = self.recover().await?;
            }
            if let Some(&newest) = newer.iter().max() {
                let handled = self.handle(watcher, newer, Pass::Delivery).await?.0;
                last = handled.max(last);
                if handled < newest {
                    return Err(SessionError::Lost("a batch was interrupted".into()));
                }
                self.save_cursor(last);
            }
            self.keywords(watcher).await?;
            match self.wait(watcher, stop, None).await? {
                Wake::Mail => {}
                Wake::Work(Work::Stop) | Wake::Stopped => return Err(SessionError::Closed),
                Wake::Work(Work::Recheck(locators)) => self.recheck(watcher, locators, Pass::Recheck).await?,
                Wake::Work(Work::Retro(locators)) => self.recheck(watcher, locators, Pass::Retro).await?,
                Wake::Work(Work::Settle { rows, read }) => self.settle(watcher, rows, read).await?,
                Wake::Work(Work::Rescan { id, since }) => self.rescan(watcher, id, since).await?,
                Wake::Work(Work::Arrived(_) | Work::Written(_) | Work::Scan | Work::CatchUp(_) | Work::Moved(..)) => {}
            }
        }
    }

    /// Where to carry on from in the selected folder: the cursor, or on
    /// first sight (or a rebuilt folder) after checking what is young
    /// enough, the newest message.
    pub(super) async fn start_position(&mut self, watcher: &Watcher, next: u32) -> Result<u32, SessionError> {
        let (name, key_folder) = (self.mailbox.clone(), self.selected.clone());
        let cursor = self
            .state
            .call(move |c| state::cursor(c, &name, &key_folder))
            .await
            .map_err(|e| SessionError::Lost(e.to_string()))?;
        match cursor {
            Some(cursor) if cursor.validity == self.validity => Ok(u32::try_from(cursor.position).unwrap_or(0)),
            _ => {
                if watcher.role == Role::Filter {
                    let cutoff = jiff::Timestamp::now().as_second() - i64::from(watcher.first_scan_hours) * 3600;
                    let young =
                        if watcher.first_scan_hours == 0 { Vec::new() } else { self.delivered_since(cutoff).await? };
                    self.handle(watcher, young, Pass::Delivery).await?;
                }
                let last = next.saturating_sub(1);
                self.save_cursor(last);
                Ok(last)
            }
        }
    }

    /// Looks again at messages delivered since `since` (Unix seconds), by
    /// the same policy; a message a user rescued is left alone.
    pub(super) async fn rescan(&mut self, watcher: &Watcher, id: i64, since: i64) -> Result<(), SessionError> {
        let started = std::time::Instant::now();
        let result = self.rescan_inner(watcher, id, since).await;
        let (state, events, mailbox) = (self.state.clone(), self.events.clone(), self.mailbox.clone());
        match result {
            Ok((total, filed)) => {
                let progress = (total, total, filed);
                let _ = state.call(move |c| state::rescan_update(c, id, state::RescanStatus::Done, progress, "")).await;
                events.emit(
                    events::RESCAN_FINISHED,
                    Some(&mailbox),
                    format!(
                        "{total} message(s) looked at again, {filed} filed, in {:.1} s.",
                        started.elapsed().as_secs_f64()
                    ),
                );
                Ok(())
            }
            Err(error) => {
                let detail = error.to_string();
                let text = detail.clone();
                let _ = state
                    .call(move |c| state::rescan_update(c, id, state::RescanStatus::Failed, (0, 0, 0), &text))
                    .await;
                events.emit(events::RESCAN_FAILED, Some(&mailbox), detail);
                Err(error)
            }
        }
    }

    pub(super) async fn rescan_inner(
        &mut self,
        watcher: &Watcher,
        id: i64,
        since: i64,
    ) -> Result<(u64, u64), SessionError> {
        let uids = self.delivered_since(since).await?;
        let total = uids.len() as u64;
        let _ = self
            .state
            .call(move |c| state::rescan_update(c, id, state::RescanStatus::Running, (total, 0, 0), ""))
            .await;
        self.events.emit(
            events::RESCAN_STARTED,
            Some(&self.mailbox),
            format!(
                "{total} message(s) in {} delivered since {}.",
                self.selected,
                jiff::Timestamp::from_second(since).unwrap_or_default()
            ),
        );
        let (mut checked, mut filed) = (0u64, 0u64);
        for chunk in uids.chunks(FETCH_BATCH * 4) {
            let (_, acted) = self.handle(watcher, chunk.to_vec(), Pass::Rescan).await?;
            checked += chunk.len() as u64;
            filed += acted;
            let progress = (total, checked, filed);
            self.state.send(move |c| state::rescan_update(c, id, state::RescanStatus::Running, progress, ""));
        }
        Ok((total, filed))
    }

    /// Capabilities and folders (with their special uses).
    pub(super) async fn learn(&mut self) -> Result<(), SessionError> {
        let timeout = self.timeout;
        let session = self.session()?;
        let caps = tokio::time::timeout(timeout, session.capabilities())
            .await
            .map_err(|_| SessionError::Timeout)?
            .map_err(|e| SessionError::Lost(e.to_string()))?;
        self.caps = Capabilities {
            mv: caps.has_str("MOVE"),
            uidplus: caps.has_str("UIDPLUS"),
            idle: caps.has_str("IDLE"),
            condstore: caps.has_str("CONDSTORE"),
            notify: caps.has_str("NOTIFY"),
        };
        if !self.caps.mv {
            // Told once per connection; the emitter folds the repeats.
            self.events.emit(events::SERVER_LACKS_MOVE, Some(&self.mailbox), "");
        }
        self.list_folders().await
    }

    pub(super) fn save_cursor(&self, last: u32) {
        let (mailbox, folder, validity) = (self.mailbox.clone(), self.selected.clone(), self.validity);
        self.state
            .send(move |c| state::set_cursor(c, &mailbox, &folder, Cursor { validity, position: i64::from(last) }));
    }

    /// UIDs above `last`, ascending.
    pub(super) async fn uids_after(&mut self, last: u32) -> Result<Vec<u32>, SessionError> {
        let timeout = self.timeout;
        let session = self.session()?;
        let fetch = async {
            let fetches: Vec<Fetch> =
                session.uid_fetch(format!("{}:*", last + 1), "(UID)").await?.try_collect().await?;
            Ok::<_, async_imap::error::Error>(fetches)
        };
        let fetches = tokio::time::timeout(timeout, fetch).await.map_err(|_| SessionError::Timeout)?.map_err(lost)?;
        let mut uids: Vec<u32> = fetches.iter().filter_map(|f| f.uid).filter(|&uid| uid > last).collect();
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// UIDs of messages of the selected folder delivered since `since`
    /// (Unix seconds, by INTERNALDATE), ascending.
    pub(super) async fn delivered_since(&mut self, since: i64) -> Result<Vec<u32>, SessionError> {
        let cutoff = jiff::Timestamp::from_second(since).unwrap_or_default();
        // SEARCH SINCE has a day's resolution (in the server's time zone):
        // ask from the day before, then keep the young enough.
        let day = (cutoff - jiff::SignedDuration::from_hours(24)).strftime("%d-%b-%Y").to_string();
        let timeout = self.timeout;
        let session = self.session()?;
        let candidates = tokio::time::timeout(timeout, session.uid_search(format!("SINCE {day}")))
            .await
            .map_err(|_| SessionError::Timeout)?
            .map_err(lost)?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let mut candidates: Vec<u32> = candidates.into_iter().collect();
        candidates.sort_unstable();
        let mut young = Vec::new();
        for chunk in candidates.chunks(1000) {
            let set = uid_set(chunk);
            let session = self.session()?;
            let fetch = async {
                let fetches: Vec<Fetch> = session.uid_fetch(set, "(UID INTERNALDATE)").await?.try_collect().await?;
                Ok::<_, async_imap::error::Error>(fetches)
            };
            let fetches =
                tokio::time::timeout(timeout, fetch).await.map_err(|_| SessionError::Timeout)?.map_err(lost)?;
            for f in &fetches {
                let recent = f.internal_date().is_none_or(|d| d.timestamp() >= since);
                if let (Some(uid), true) = (f.uid, recent) {
                    young.push(uid);
                }
            }
        }
        young.sort_unstable();
        Ok(young)
    }

    /// Fetches and handles messages by UID, in batches; returns the highest
    /// UID handled (0 when none) and how many messages were acted on.
    pub(super) async fn handle(
        &mut self,
        watcher: &Watcher,
        uids: Vec<u32>,
        pass: Pass,
    ) -> Result<(u32, u64), SessionError> {
        let recheck = pass == Pass::Recheck;
        let mut highest = 0;
        let mut acted = 0;
        let sizes = self.sizes(&uids).await?;
        for chunk in fetch_batches(&uids, &sizes, self.max_bytes) {
            let items = self.fetch_items(chunk, &sizes).await?;
            let found: HashSet<String> = items.iter().map(|i| i.locator.clone()).collect();
            let outcome = watcher.processor.process(self, &watcher.context, &watcher.folder, items.clone(), pass).await;
            acted += outcome.acted as u64;
            if let Some(stopped) = outcome.stopped_at {
                let done = stopped.checked_sub(1).and_then(|i| items.get(i)).and_then(|i| parse_locator(&i.locator));
                let done = done.map(|(_, uid)| uid);
                return Err(SessionError::Lost(format!("interrupted after UID {}", done.unwrap_or(highest))));
            }
            if recheck {
                // Queued messages that are gone leave the queue.
                let gone: Vec<String> = chunk
                    .iter()
                    .map(|uid| locator(self.validity, &uid.to_string()))
                    .filter(|locator| !found.contains(locator))
                    .collect();
                if !gone.is_empty() {
                    let (mailbox, folder) = (self.mailbox.clone(), self.selected.clone());
                    self.state.send(move |c| state::recheck_done(c, &mailbox, &folder, &gone));
                }
            }
            highest = highest.max(*chunk.last().unwrap_or(&0));
            self.meta.clear();
        }
        Ok((highest, acted))
    }

    pub(super) async fn sizes(&mut self, uids: &[u32]) -> Result<HashMap<u32, u64>, SessionError> {
        let mut sizes = HashMap::with_capacity(uids.len());
        let timeout = self.timeout;
        for chunk in uids.chunks(1000) {
            let set = uid_set(chunk);
            let session = self.session()?;
            let fetch = async {
                let fetches: Vec<Fetch> = session.uid_fetch(set, "(UID RFC822.SIZE)").await?.try_collect().await?;
                Ok::<_, async_imap::error::Error>(fetches)
            };
            let fetches =
                tokio::time::timeout(timeout, fetch).await.map_err(|_| SessionError::Timeout)?.map_err(lost)?;
            for f in &fetches {
                if let Some(uid) = f.uid {
                    sizes.insert(uid, u64::from(f.size.unwrap_or(0)));
                }
            }
        }
        Ok(sizes)
    }

    pub(super) async fn fetch_items(
        &mut self,
        uids: &[u32],
        sizes: &HashMap<u32, u64>,
    ) -> Result<Vec<Item>, SessionError> {
        let timeout = self.timeout;
        let max = self.max_bytes;
        let query = format!("(UID FLAGS INTERNALDATE BODY.PEEK[]<0.{max}>)");
        let session = self.session()?;
        let fetch = async {
            let fetches: Vec<Fetch> = session.uid_fetch(uid_set(uids), &query).await?.try_collect().await?;
            Ok::<_, async_imap::error::Error>(fetches)
        };
        let fetches = tokio::time::timeout(timeout, fetch).await.map_err(|_| SessionError::Timeout)?.map_err(lost)?;
        let mut items = Vec::with_capacity(fetches.len());
        for f in &fetches {
            let (Some(uid), Some(body)) = (f.uid, f.body()) else { continue };
            let flags = f.flags().filter_map(|flag| flag_name(&flag)).collect();
            let internal_date = f.internal_date().map(|d| d.format("%d-%b-%Y %H:%M:%S %z").to_string());
            self.meta.insert(uid, MessageMeta { flags, internal_date });
            let size = sizes.get(&uid).copied().unwrap_or(body.len() as u64);
            let locator = locator(self.validity, &uid.to_string());
            // A move keeps INTERNALDATE; another delivery (of the same
            // Message-ID) has its own.
            let identity = f.internal_date().map(|d| d.timestamp());
            items.push(Item { locator, raw: Arc::from(body), truncated: size > max, identity });
        }
        items.sort_by_key(|i| parse_locator(&i.locator).map_or(0, |(_, uid)| uid));
        Ok(items)
    }

    /// Handles queued (or remembered) messages again.
    pub(super) async fn recheck(
        &mut self,
        watcher: &Watcher,
        locators: Vec<(String, String)>,
        pass: Pass,
    ) -> Result<(), SessionError> {
        let mut uids = Vec::new();
        let mut stale = Vec::new();
        for (folder, locator) in locators {
            if folder != self.selected {
                continue;
            }
            match parse_locator(&locator) {
                Some((validity, uid)) if validity == self.validity => uids.push(uid),
                _ => stale.push(locator),
            }
        }
        if pass == Pass::Retro {
            // Missing messages were moved or deleted meanwhile: nothing
            // to look at.
            uids.sort_unstable();
            uids.dedup();
            return self.handle(watcher, uids, Pass::Retro).await.map(|_| ());
        }
        if !stale.is_empty() {
            let (mailbox, folder) = (self.mailbox.clone(), self.selected.clone());
            self.state.send(move |c| state::recheck_done(c, &mailbox, &folder, &stale));
        }
        uids.sort_unstable();
        uids.dedup();
        self.handle(watcher, uids, Pass::Recheck).await.map(|_| ())
    }

    /// Which remembered messages are still in the selected folder (and
    /// read): those are learnt as ham, the others forgotten.
    pub(super) async fn settle(
        &mut self,
        watcher: &Watcher,
        rows: Vec<crate::recent::Located>,
        read: bool,
    ) -> Result<(), SessionError> {
        let mut asked: HashMap<u32, crate::recent::Located> = HashMap::new();
        let mut gone = Vec::new();
        for row in rows.into_iter().filter(|row| row.folder == self.selected) {
            match parse_locator(&row.locator) {
                Some((validity, uid)) if validity == self.validity => {
                    asked.insert(uid, row);
                }
                _ => gone.push(row),
            }
        }
        let mut uids: Vec<u32> = asked.keys().copied().collect();
        uids.sort_unstable();
        let (mut learn, mut keep) = (Vec::new(), Vec::new());
        let timeout = self.timeout;
        for chunk in uids.chunks(1000) {
            let session = self.session()?;
            let fetch = async {
                let fetches: Vec<Fetch> = session.uid_fetch(uid_set(chunk), "(UID FLAGS)").await?.try_collect().await?;
                Ok::<_, async_imap::error::Error>(fetches)
            };
            let fetches =
                tokio::time::timeout(timeout, fetch).await.map_err(|_| SessionError::Timeout)?.map_err(lost)?;
            for f in &fetches {
                let Some(row) = f.uid.and_then(|uid| asked.remove(&uid)) else { continue };
                let seen = f.flags().any(|flag| matches!(flag, async_imap::types::Flag::Seen));
                let deleted = f.flags().any(|flag| matches!(flag, async_imap::types::Flag::Deleted));
                match (deleted, seen || !read) {
                    (true, _) => gone.push(row),
                    (false, true) => learn.push(row),
                    (false, false) => keep.push(row),
                }
            }
        }
        // What the server did not return is no longer there.
        gone.extend(asked.into_values());
        watcher.processor.settle(&self.mailbox, learn, keep, gone).await;
        Ok(())
    }
}
