//! The spam folder's task: users' moves into and out of it (and `$Junk`/`$NotJunk`).

use super::*;

impl Connected {
    /// The loop of a spam folder: what users put there, what they take
    /// out, and its sub-folders.
    pub(super) async fn run_spam(
        &mut self,
        watcher: &mut Watcher,
        stop: &CancellationToken,
        name: &str,
        create: bool,
    ) -> Result<(), SessionError> {
        let spam = match self.spam_folder(name, create).await? {
            Some(spam) => spam,
            None => {
                // No spam folder, and none to create: look again later.
                tokio::select! {
                    () = stop.cancelled() => return Err(SessionError::Closed),
                    () = tokio::time::sleep(Duration::from_secs(600)) => {}
                    work = watcher.work.recv() => if matches!(work, None | Some(Work::Stop)) {
                        return Err(SessionError::Closed);
                    },
                }
                return Err(SessionError::Lost("no spam folder yet".into()));
            }
        };
        watcher.folder = spam.clone();
        watcher.spam_watch.set_folder(&spam);
        let next = self.select(&spam).await?;
        let mut last = self.start_position(watcher, next).await?;
        if !watcher.existing_asked {
            watcher.existing_asked = true;
            if watcher.processor.wants_existing(&self.mailbox).await {
                existing::read_existing_later(watcher, spam.clone(), last, stop.clone());
            }
        }
        // After a quiet spell without a session: what was known then, so
        // that what left the folder meanwhile is noticed.
        let quiet = watcher.quiet.take().filter(|q| q.validity == self.validity);
        let quiet_after = Duration::from_secs(watcher.server.config.spam_session_quiet_seconds);
        // Nothing has happened yet: a user's move or keyword found below
        // keeps the session a while (someone sorting mail moves one message
        // after another); a wake by the agent's own filing does not.
        let mut news_at =
            tokio::time::Instant::now().checked_sub(quiet_after).unwrap_or_else(tokio::time::Instant::now);
        let (mut present, mut sub_last) = match quiet {
            Some(quiet) => {
                if self.modseq.is_some() && quiet.modseq.is_some() {
                    self.modseq = quiet.modseq;
                }
                self.expunged = true;
                (quiet.present, quiet.sub_last)
            }
            None => {
                let first = last.saturating_sub(PRESENT_MAX as u32) + 1;
                let present = self.message_ids(&format!("{first}:{last}")).await?.into_iter().collect();
                (present, HashMap::new())
            }
        };
        let mut next_poll = tokio::time::Instant::now();
        loop {
            let looked;
            (last, looked) = self.arrivals(watcher, last, &mut present).await?;
            let marked = self.keywords(watcher).await?;
            // The agent's own filings are not news: a user's move, or a
            // keyword set, is.
            if looked || marked {
                news_at = tokio::time::Instant::now();
            }
            let due = tokio::time::Instant::now() >= next_poll;
            // Looking elsewhere takes a second session: this one stays on
            // the spam folder (a server may stop notifying a session that
            // selected another folder meanwhile).
            if self.expunged || due {
                self.expunged = false;
                let gone = self.vanished(&mut present).await?;
                if !gone.is_empty() {
                    news_at = tokio::time::Instant::now();
                    let mut side = self.side(watcher).await?;
                    let result = side.find_elsewhere(watcher, &spam, gone).await;
                    side.logout().await;
                    result?;
                }
            }
            if due {
                let news = self.sub_folder_news(&spam, &mut sub_last).await?;
                if !news.is_empty() {
                    news_at = tokio::time::Instant::now();
                    let mut side = self.side(watcher).await?;
                    let result = side.sub_folders(watcher, news, &mut sub_last).await;
                    side.logout().await;
                    result?;
                }
                next_poll = tokio::time::Instant::now() + SPAM_POLL;
            }
            // Nothing happened for a while and the inbox's session is told
            // of changes here: this session is not needed until one comes.
            let may_rest = !quiet_after.is_zero() && watcher.spam_watch.notifying();
            if may_rest && news_at.elapsed() >= quiet_after {
                tracing::debug!(mailbox = self.mailbox, "nothing happens in the spam folder: its session closes");
                watcher.quiet = Some(Quiet { validity: self.validity, present, sub_last, modseq: self.modseq });
                return Err(SessionError::Quiet);
            }
            let wake_at = if may_rest { next_poll.min(news_at + quiet_after) } else { next_poll };
            match self.wait(watcher, stop, Some(wake_at)).await? {
                Wake::Work(Work::Stop) | Wake::Stopped => return Err(SessionError::Closed),
                _ => {}
            }
        }
    }

    /// Messages that arrived in the spam folder after `last`, looked at as
    /// users' moves; the new last UID, and whether any was not the agent's
    /// own filing. `present` (UID → Message-ID, the newest [`PRESENT_MAX`])
    /// learns them, to tell what later vanished.
    async fn arrivals(
        &mut self,
        watcher: &mut Watcher,
        mut last: u32,
        present: &mut std::collections::BTreeMap<u32, String>,
    ) -> Result<(u32, bool), SessionError> {
        let mut looked = false;
        let newer = self.uids_after(last).await?;
        for chunk in newer.chunks(FETCH_BATCH) {
            // The header first: most arrivals are the agent's own
            // filings, whose bodies need not be fetched again.
            let ids = self.message_ids(&uid_set(chunk)).await?;
            let wanted: Vec<Option<String>> = chunk.iter().map(|uid| ids.get(uid).cloned()).collect();
            let worth = watcher.processor.worth_a_look(&self.mailbox, wanted, Moved::IntoSpam).await;
            let fetch: Vec<u32> = chunk.iter().zip(worth).filter(|(_, w)| *w).map(|(uid, _)| *uid).collect();
            if !fetch.is_empty() {
                looked = true;
                let items = self.fetch_items(&fetch, &HashMap::new()).await?;
                self.meta.clear();
                watcher.processor.moved(&self.mailbox, items, Moved::IntoSpam).await;
            }
            present.extend(ids);
            while present.len() > PRESENT_MAX {
                present.pop_first();
            }
            last = last.max(*chunk.last().unwrap_or(&0));
            self.save_cursor(last);
        }
        Ok((last, looked))
    }

    /// The spam folder's name: the server's `\Junk` folder, else `name`
    /// (created when allowed); `None` when there is none.
    pub(super) async fn spam_folder(&mut self, name: &str, create: bool) -> Result<Option<String>, SessionError> {
        if name.is_empty()
            && let Some(junk) = &self.junk
        {
            return Ok(Some(junk.clone()));
        }
        let name = if name.is_empty() { "Spam" } else { name };
        match self.destination(&Destination::Spam(name.to_owned()), create).await {
            Ok(folder) => Ok(Some(folder)),
            Err(ActionError::Connection(e)) => Err(SessionError::Lost(e)),
            Err(_) => Ok(None),
        }
    }

    /// The Message-IDs of messages in the selected folder (a UID set), by
    /// UID.
    pub(super) async fn message_ids(&mut self, set: &str) -> Result<HashMap<u32, String>, SessionError> {
        let mut ids = HashMap::new();
        if set.ends_with(":0") {
            return Ok(ids);
        }
        let timeout = self.timeout * 4;
        let session = self.session()?;
        let fetch = async {
            let fetches: Vec<Fetch> =
                session.uid_fetch(set, "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])").await?.try_collect().await?;
            Ok::<_, async_imap::error::Error>(fetches)
        };
        let fetches = tokio::time::timeout(timeout, fetch).await.map_err(|_| SessionError::Timeout)?.map_err(lost)?;
        for f in &fetches {
            if let (Some(uid), Some(header)) = (f.uid, f.header().or_else(|| f.body()))
                && let Some(id) = header_message_id(header)
            {
                ids.insert(uid, id);
            }
        }
        Ok(ids)
    }

    /// Messages that left the selected folder since the last look: their
    /// Message-IDs (forgotten from `present`).
    pub(super) async fn vanished(
        &mut self,
        present: &mut std::collections::BTreeMap<u32, String>,
    ) -> Result<Vec<String>, SessionError> {
        if present.is_empty() {
            return Ok(Vec::new());
        }
        let timeout = self.timeout;
        let session = self.session()?;
        let now: HashSet<u32> = tokio::time::timeout(timeout, session.uid_search("ALL"))
            .await
            .map_err(|_| SessionError::Timeout)?
            .map_err(lost)?;
        let mut gone: Vec<String> = Vec::new();
        present.retain(|uid, id| {
            let kept = now.contains(uid);
            if !kept {
                gone.push(id.clone());
            }
            kept
        });
        Ok(gone)
    }

    /// Looks for messages that left the spam folder in the user's other
    /// folders (not the inbox, which its own task watches, not Trash, not
    /// the spam folder's tree): found, they were taken out of spam.
    pub(super) async fn find_elsewhere(
        &mut self,
        watcher: &Watcher,
        spam: &str,
        mut gone: Vec<String>,
    ) -> Result<(), SessionError> {
        if gone.len() > VANISHED_MAX {
            tracing::debug!(mailbox = self.mailbox, left = gone.len(), "many messages left the spam folder at once");
            gone.truncate(VANISHED_MAX);
        }
        self.list_folders().await?;
        let trash = self.trash.clone().unwrap_or_else(|| "Trash".into());
        let mut folders: Vec<String> = self
            .folders
            .iter()
            .filter(|f| {
                !f.eq_ignore_ascii_case("INBOX")
                    && **f != trash
                    && !self.in_tree(f, spam)
                    && !self.in_tree(f, &trash)
                    && !self.noselect.contains(*f)
            })
            .cloned()
            .collect();
        folders.sort();
        for folder in folders {
            if self.examine(&folder).await.is_err() {
                continue;
            }
            let mut found = Vec::new();
            for id in &gone {
                let timeout = self.timeout;
                let session = self.session()?;
                let hits =
                    tokio::time::timeout(timeout, session.uid_search(format!("HEADER Message-ID {}", quote(id))))
                        .await
                        .map_err(|_| SessionError::Timeout)?
                        .map_err(lost)?;
                found.extend(hits);
            }
            tracing::debug!(mailbox = self.mailbox, folder, ?found, "looked for messages that left the spam folder");
            if found.is_empty() {
                continue;
            }
            found.sort_unstable();
            found.dedup();
            let items = self.fetch_items(&found, &HashMap::new()).await?;
            self.meta.clear();
            gone.retain(|id| !items.iter().any(|i| header_message_id(&i.raw).as_deref() == Some(id.as_str())));
            watcher.processor.moved(&self.mailbox, items, Moved::OutOfSpam).await;
            if gone.is_empty() {
                break;
            }
        }
        Ok(())
    }

    /// Whether `folder` is `root` or below it.
    pub(super) fn in_tree(&self, folder: &str, root: &str) -> bool {
        folder == root
            || self
                .delimiter
                .as_deref()
                .is_some_and(|d| folder.strip_prefix(root).is_some_and(|rest| rest.starts_with(d)))
    }

    /// Opens a folder read-only (for looking, not acting).
    pub(super) async fn examine(&mut self, folder: &str) -> Result<(), SessionError> {
        let timeout = self.timeout;
        let session = self.session()?;
        let mailbox = tokio::time::timeout(timeout, session.examine(folder))
            .await
            .map_err(|_| SessionError::Timeout)?
            .map_err(|e| SessionError::Folder(format!("{folder}: {e}")))?;
        self.selected = folder.to_owned();
        self.validity = mailbox.uid_validity.unwrap_or(0);
        self.modseq = None;
        Ok(())
    }

    /// Another session for the same mailbox, for looking into other
    /// folders.
    pub(super) async fn side(&self, watcher: &Watcher) -> Result<Connected, SessionError> {
        let session = watcher.server.login(&watcher.account).await?;
        let mut side = Connected::new(session, watcher);
        // What it needs of the folder list, it lists itself.
        side.caps = self.caps;
        Ok(side)
    }

    /// Sub-folders of the spam folder (users put spam there too) with
    /// messages not looked at yet, by STATUS (looked at every
    /// [`SPAM_POLL`]): (folder, UIDVALIDITY, last UID looked at).
    pub(super) async fn sub_folder_news(
        &mut self,
        spam: &str,
        last: &mut HashMap<String, u32>,
    ) -> Result<Vec<(String, u32, u32)>, SessionError> {
        self.list_folders().await?;
        let subs: Vec<String> = self
            .folders
            .iter()
            .filter(|f| *f != spam && self.in_tree(f, spam) && !self.noselect.contains(*f))
            .cloned()
            .collect();
        let mut news = Vec::new();
        for sub in subs {
            let timeout = self.timeout;
            let session = self.session()?;
            let status = tokio::time::timeout(timeout, session.status(&sub, "(UIDNEXT UIDVALIDITY)"))
                .await
                .map_err(|_| SessionError::Timeout)?
                .map_err(lost)?;
            let next = status.uid_next.unwrap_or(1);
            let validity = status.uid_validity.unwrap_or(0);
            let known = match last.get(&sub) {
                Some(&known) => known,
                None => {
                    let (mailbox, folder) = (self.mailbox.clone(), sub.clone());
                    let cursor = self
                        .state
                        .call(move |c| state::cursor(c, &mailbox, &folder))
                        .await
                        .map_err(|e| SessionError::Lost(e.to_string()))?;
                    let known = match cursor {
                        Some(cursor) if cursor.validity == validity => u32::try_from(cursor.position).unwrap_or(0),
                        // A new sub-folder: what was put there before it was
                        // watched is not reported.
                        _ => {
                            let known = next.saturating_sub(1);
                            let (mailbox, folder) = (self.mailbox.clone(), sub.clone());
                            self.state.send(move |c| {
                                state::set_cursor(c, &mailbox, &folder, Cursor { validity, position: i64::from(known) })
                            });
                            known
                        }
                    };
                    last.insert(sub.clone(), known);
                    known
                }
            };
            if next.saturating_sub(1) > known {
                news.push((sub, validity, known));
            }
        }
        Ok(news)
    }

    /// Reports what arrived in sub-folders of the spam folder.
    pub(super) async fn sub_folders(
        &mut self,
        watcher: &Watcher,
        news: Vec<(String, u32, u32)>,
        last: &mut HashMap<String, u32>,
    ) -> Result<(), SessionError> {
        for (sub, validity, known) in news {
            self.examine(&sub).await?;
            let newer = self.uids_after(known).await?;
            let mut newest = known;
            for chunk in newer.chunks(FETCH_BATCH) {
                let items = self.fetch_items(chunk, &HashMap::new()).await?;
                self.meta.clear();
                watcher.processor.moved(&self.mailbox, items, Moved::IntoSpam).await;
                newest = newest.max(*chunk.last().unwrap_or(&0));
            }
            last.insert(sub.clone(), newest);
            let mailbox = self.mailbox.clone();
            self.state
                .send(move |c| state::set_cursor(c, &mailbox, &sub, Cursor { validity, position: i64::from(newest) }));
        }
        Ok(())
    }

    /// `$Junk` / `$NotJunk` set on messages of the selected folder since
    /// the last look (CONDSTORE): the same as moving them into or out of
    /// the spam folder. Whether there were any.
    pub(super) async fn keywords(&mut self, watcher: &Watcher) -> Result<bool, SessionError> {
        let Some(since) = self.modseq else { return Ok(false) };
        let timeout = self.timeout;
        let session = self.session()?;
        let fetch = async {
            let fetches: Vec<Fetch> =
                session.uid_fetch("1:*", format!("(UID FLAGS) (CHANGEDSINCE {since})")).await?.try_collect().await?;
            Ok::<_, async_imap::error::Error>(fetches)
        };
        let fetches = tokio::time::timeout(timeout, fetch).await.map_err(|_| SessionError::Timeout)?.map_err(lost)?;
        let in_spam = matches!(watcher.role, Role::Spam { .. });
        let mut highest = since;
        let (mut junk, mut not_junk) = (Vec::new(), Vec::new());
        for f in &fetches {
            highest = highest.max(f.modseq.unwrap_or(0));
            let Some(uid) = f.uid else { continue };
            let mut flags = f.flags().filter_map(|flag| flag_name(&flag));
            let (is_junk, is_not_junk) = flags.by_ref().fold((false, false), |(j, n), flag| {
                (j || flag.eq_ignore_ascii_case("$Junk"), n || flag.eq_ignore_ascii_case("$NotJunk"))
            });
            // A client sets one and clears the other; with both, the user's
            // intent is unclear.
            match (is_junk, is_not_junk) {
                (true, false) if !in_spam => junk.push(uid),
                (false, true) => not_junk.push(uid),
                _ => {}
            }
        }
        self.modseq = Some(highest);
        let found = !junk.is_empty() || !not_junk.is_empty();
        for (uids, direction) in [(junk, Moved::IntoSpam), (not_junk, Moved::OutOfSpam)] {
            for chunk in uids.chunks(FETCH_BATCH) {
                let items = self.fetch_items(chunk, &HashMap::new()).await?;
                self.meta.clear();
                watcher.processor.moved(&self.mailbox, items, direction).await;
            }
        }
        Ok(found)
    }
}
