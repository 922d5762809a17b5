//! What a mailbox task does to a message: move, delete, tag (with its journal), and the folders it needs.

use super::*;

impl Connected {
    pub(super) async fn list_folders(&mut self) -> Result<(), SessionError> {
        let timeout = self.timeout;
        let session = self.session()?;
        let listing = async {
            let names: Vec<_> = session.list(Some(""), Some("*")).await?.try_collect().await?;
            Ok::<_, async_imap::error::Error>(names)
        };
        let names = tokio::time::timeout(timeout, listing)
            .await
            .map_err(|_| SessionError::Timeout)?
            .map_err(|e| SessionError::Lost(e.to_string()))?;
        self.folders.clear();
        self.noselect.clear();
        for name in &names {
            let folder = name.name().to_owned();
            if self.delimiter.is_none() {
                self.delimiter = name.delimiter().map(str::to_owned);
            }
            for attribute in name.attributes() {
                match attribute {
                    NameAttribute::NoSelect => {
                        self.noselect.insert(folder.clone());
                    }
                    NameAttribute::Junk if self.junk.is_none() => self.junk = Some(folder.clone()),
                    NameAttribute::Trash if self.trash.is_none() => self.trash = Some(folder.clone()),
                    _ => {}
                }
            }
            self.folders.insert(folder);
        }
        Ok(())
    }

    /// The destination folder's name, created when allowed.
    pub(super) async fn destination(&mut self, destination: &Destination, create: bool) -> Result<String, ActionError> {
        let name = match destination {
            Destination::Spam(name) if name.is_empty() => self.junk.clone().unwrap_or_else(|| "Spam".into()),
            Destination::Trash(name) if name.is_empty() => self.trash.clone().unwrap_or_else(|| "Trash".into()),
            Destination::Spam(name) | Destination::Trash(name) | Destination::Existing(name) => name.clone(),
        };
        if let Some(found) = self.existing(&name) {
            return Ok(found);
        }
        if !create {
            // The folder list may be stale: look again before refusing.
            self.list_folders().await.map_err(action_lost)?;
            return self.existing(&name).ok_or(ActionError::FolderMissing(name));
        }
        // Where personal folders live below INBOX (Cyrus's default
        // namespace: `INBOX.Spam`), a top-level name is refused: the same
        // name below INBOX is the user's folder.
        let mut names = vec![name.clone()];
        names.extend(self.below_inbox(&name));
        let mut refused = None;
        for candidate in names {
            let timeout = self.timeout;
            let session = self.session().map_err(action_lost)?;
            match timed_action(timeout, session.create(&candidate)).await {
                Ok(()) => {
                    self.events.emit(events::FOLDER_CREATED, Some(&self.mailbox), format!("Folder: {candidate}."));
                    let session = self.session().map_err(action_lost)?;
                    let _ = timed_action(timeout, session.subscribe(&candidate)).await;
                    self.folders.insert(candidate.clone());
                    return Ok(candidate);
                }
                // Someone else created it meanwhile, or this name is not
                // the user's to create.
                Err(ActionError::Failed(why)) => {
                    self.list_folders().await.map_err(action_lost)?;
                    if let Some(found) = self.existing(&name) {
                        return Ok(found);
                    }
                    refused.get_or_insert(why);
                }
                Err(e) => return Err(e),
            }
        }
        Err(ActionError::Failed(format!("cannot create the folder {name}: {}", refused.unwrap_or_default())))
    }

    /// `name` as the server lists it: itself, or below INBOX (`INBOX.Spam`
    /// where personal folders live there).
    pub(super) fn existing(&self, name: &str) -> Option<String> {
        if self.folders.contains(name) {
            return Some(name.to_owned());
        }
        self.below_inbox(name).filter(|below| self.folders.contains(below))
    }

    /// `INBOX` + the hierarchy separator + `name`, for a name not already
    /// below INBOX.
    pub(super) fn below_inbox(&self, name: &str) -> Option<String> {
        let delimiter = self.delimiter.as_deref()?;
        let inbox = format!("INBOX{delimiter}");
        let already = name.get(..inbox.len()).is_some_and(|start| start.eq_ignore_ascii_case(&inbox));
        (!already && !name.eq_ignore_ascii_case("INBOX")).then(|| format!("{inbox}{name}"))
    }

    pub(super) async fn command(&mut self, command: String) -> Result<(), ActionError> {
        let timeout = self.timeout;
        let session = self.session().map_err(action_lost)?;
        timed_action(timeout, session.run_command_and_check_ok(command)).await
    }

    /// Removes exactly these messages (a UID set): flag them deleted, then
    /// `UID EXPUNGE` them (without UIDPLUS they stay flagged: expunging
    /// would remove the user's other deleted messages too).
    pub(super) async fn remove(&mut self, uids: &str) -> Result<(), ActionError> {
        self.command(format!("UID STORE {uids} +FLAGS.SILENT (\\Deleted)")).await?;
        if self.caps.uidplus {
            self.command(format!("UID EXPUNGE {uids}")).await
        } else {
            if !self.told_uidplus {
                self.told_uidplus = true;
                self.events.emit(events::SERVER_LACKS_UIDPLUS, Some(&self.mailbox), "");
            }
            Ok(())
        }
    }

    /// Moves messages (a UID set): `UID MOVE`, or `UID COPY` then removal
    /// of exactly those UIDs.
    pub(super) async fn move_messages(&mut self, uids: &str, destination: &str) -> Result<(), ActionError> {
        let quoted = quote(destination);
        let verb = if self.caps.mv { "MOVE" } else { "COPY" };
        self.command(format!("UID {verb} {uids} {quoted}")).await?;
        // The spam task must see the agent's filings (to notice a rescue
        // of one): a quiet one is woken, as a server need not tell a
        // session of the changes it made itself.
        if self.spam_watch.folder().is_some_and(|spam| self.in_tree(destination, &spam)) {
            self.spam_watch.changed();
        }
        if self.caps.mv { Ok(()) } else { self.remove(uids).await }
    }

    /// Moves or deletes many messages in one command each.
    pub(super) async fn apply_many(&mut self, items: &[&Item], action: &Action) -> Vec<Result<Applied, ActionError>> {
        let uids: Vec<Result<u32, ActionError>> = items.iter().map(|item| self.uid_of(item)).collect();
        let valid: Vec<u32> = uids.iter().filter_map(|u| u.as_ref().ok().copied()).collect();
        if valid.is_empty() {
            return uids.into_iter().map(|u| u.map(|_| Applied::default())).collect();
        }
        let set = uid_set(&valid);
        let done = match action {
            Action::Move { destination, create, mark_read } => {
                let name = self.destination(destination, *create).await;
                match name {
                    Ok(name) if name == self.selected => Ok(name),
                    Ok(name) => {
                        let seen = if *mark_read {
                            self.command(format!("UID STORE {set} +FLAGS.SILENT (\\Seen)")).await
                        } else {
                            Ok(())
                        };
                        match seen {
                            Ok(()) => self.move_messages(&set, &name).await.map(|()| name),
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            _ => self.remove(&set).await.map(|()| String::new()),
        };
        match done {
            Ok(folder) => uids.into_iter().map(|u| u.map(|_| Applied { folder: folder.clone() })).collect(),
            // One message may be the cause: try them one by one.
            Err(ActionError::Failed(_)) => crate::process::one_by_one(self, items, action).await,
            Err(e) => items.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    pub(super) async fn tag(&mut self, item: &Item, prefix: &str, mark_read: bool) -> Result<(), ActionError> {
        if item.truncated {
            return Err(ActionError::TooLarge);
        }
        let uid = self.uid_of(item)?;
        let meta = self.meta.get(&uid).cloned().unwrap_or_default();
        let mark = self.marker.mark();
        let rewritten = crate::tagging::rewrite(&item.raw, prefix, &mark);
        let (mailbox, folder, original, replacement) =
            (self.mailbox.clone(), self.selected.clone(), item.locator.clone(), mark.clone());
        let journal = self
            .state
            .call(move |c| state::journal_begin(c, &mailbox, &folder, "tag", &original, &replacement))
            .await
            .map_err(|e| ActionError::Failed(format!("cannot journal the tag: {e}")))?;
        let mut flags: Vec<String> = meta.flags.into_iter().filter(|f| f != "\\Recent" && f != "\\Deleted").collect();
        if mark_read && !flags.iter().any(|f| f == "\\Seen") {
            flags.push("\\Seen".into());
        }
        let flags = format!("({})", flags.join(" "));
        let date = meta.internal_date.map(|d| format!("\"{d}\""));
        let selected = self.selected.clone();
        let timeout = self.timeout;
        let session = self.session().map_err(action_lost)?;
        let appended =
            timed_action(timeout, session.append(&selected, Some(&flags), date.as_deref(), &rewritten)).await;
        if let Err(e) = appended {
            // A refused APPEND added nothing. A lost connection may have
            // lost only the answer: the journal stays, and the next
            // session's recovery looks for the copy first.
            if !matches!(e, ActionError::Connection(_)) {
                let _ = self.state.call(move |c| state::journal_end(c, journal)).await;
            }
            return Err(e);
        }
        // Only now is the original removed; a crash before this line leaves
        // both, and the journal tells the restart to remove the original.
        self.remove(&uid.to_string()).await?;
        let _ = self.state.call(move |c| state::journal_end(c, journal)).await;
        Ok(())
    }

    /// The UIDs of messages carrying a tag mark's nonce.
    pub(super) async fn find_tagged(&mut self, nonce: &str) -> Result<Vec<u32>, SessionError> {
        let timeout = self.timeout;
        let session = self.session()?;
        let found = tokio::time::timeout(
            timeout,
            session.uid_search(format!("HEADER {} \"{nonce}\"", crate::facts::TAG_HEADER)),
        )
        .await
        .map_err(|_| SessionError::Timeout)?
        .map_err(lost)?;
        Ok(found.into_iter().collect())
    }

    /// Finishes or undoes tags a stop interrupted in this folder. Whether
    /// some stay pending: see [`RECENT_JOURNAL_SECONDS`].
    pub(super) async fn recover(&mut self) -> Result<bool, SessionError> {
        let mailbox = self.mailbox.clone();
        let entries = self
            .state
            .call(move |c| state::journal(c, &mailbox))
            .await
            .map_err(|e| SessionError::Lost(e.to_string()))?;
        let mut finished = 0;
        let mut pending = false;
        let selected = self.selected.clone();
        for entry in entries.into_iter().filter(|e| e.folder == selected && e.operation == "tag") {
            let original = parse_locator(&entry.original);
            if let (Some((validity, uid)), Some(nonce)) = (original, Marker::nonce(&entry.replacement))
                && validity == self.validity
            {
                let found = self.find_tagged(nonce).await?;
                // A stop in the middle of an APPEND may have left the whole
                // message in the server's socket buffer: the server then
                // completes that APPEND after this session began, and the
                // copy arrives as new mail. A young entry whose copy is not
                // there yet stays, and is looked at again when mail arrives.
                let young = jiff::Timestamp::now().as_second() - entry.at < RECENT_JOURNAL_SECONDS;
                if young && !found.iter().any(|&copy| copy != uid) {
                    pending = true;
                    continue;
                }
                if found.iter().any(|&copy| copy != uid) {
                    match self.remove(&uid.to_string()).await {
                        Ok(()) => {}
                        Err(ActionError::Connection(e)) => return Err(SessionError::Lost(e)),
                        Err(e) => {
                            tracing::warn!(mailbox = self.mailbox, "cannot remove an interrupted tag's original: {e}")
                        }
                    }
                }
            }
            let id = entry.id;
            self.state.call(move |c| state::journal_end(c, id)).await.map_err(|e| SessionError::Lost(e.to_string()))?;
            finished += 1;
        }
        if finished > 0 {
            self.events.emit(
                events::INTERRUPTED_ACTION_FINISHED,
                Some(&self.mailbox),
                format!("{finished} in {}.", self.selected),
            );
        }
        Ok(pending)
    }
}

impl Folder for Connected {
    async fn apply(&mut self, item: &Item, action: &Action) -> Result<Applied, ActionError> {
        let uid = self.uid_of(item)?;
        match action {
            Action::Leave | Action::Defer => Ok(Applied::default()),
            Action::Move { destination, create, mark_read } => {
                let name = self.destination(destination, *create).await?;
                if name == self.selected {
                    return Ok(Applied { folder: name });
                }
                if *mark_read {
                    self.command(format!("UID STORE {uid} +FLAGS.SILENT (\\Seen)")).await?;
                }
                self.move_messages(&uid.to_string(), &name).await?;
                Ok(Applied { folder: name })
            }
            Action::Tag { prefix, mark_read } => {
                self.tag(item, prefix, *mark_read).await?;
                Ok(Applied::default())
            }
            Action::Delete => {
                self.remove(&uid.to_string()).await?;
                Ok(Applied::default())
            }
        }
    }

    async fn apply_batch(&mut self, items: &[&Item], action: &Action) -> Vec<Result<Applied, ActionError>> {
        if items.len() > 1 && matches!(action, Action::Move { .. } | Action::Delete) {
            return self.apply_many(items, action).await;
        }
        crate::process::one_by_one(self, items, action).await
    }
}
