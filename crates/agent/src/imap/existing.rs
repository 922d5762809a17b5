//! The mail a user already has, read once at the mailbox's first sight for
//! the local model to learn (`model.history_messages`).

use super::*;
use crate::learning::Source;
use crate::process::ExistingExample;

/// Reads the mail `watcher`'s mailbox already has for the model, in a task
/// and a session of its own — the spam folder is watched meanwhile, so a
/// user's move is a report as usual — at most
/// [`EXISTING_AT_ONCE`](crate::process::EXISTING_AT_ONCE) mailboxes at a
/// time. `spam` is the spam folder, `up_to` the newest UID in it at first
/// sight (later arrivals are users' moves, not history).
pub(super) fn read_existing_later(watcher: &Watcher, spam: String, up_to: u32, stop: CancellationToken) {
    let (server, account, mailbox) =
        (watcher.server.clone(), watcher.account.clone(), watcher.context.name.to_string());
    let processor = watcher.processor.clone();
    tokio::spawn(async move {
        let Some(_turn) = processor.existing_turn(&mailbox, &stop).await else { return };
        let started = std::time::Instant::now();
        let read = async {
            let session = server.login(&account).await?;
            let mut connected = Connected::of(session, &server, &mailbox, &processor);
            let result = connected.existing_mail(&processor, &spam, up_to).await;
            connected.logout().await;
            result
        };
        // A response the IMAP parser cannot take may make it panic: that
        // ends this look, not the agent.
        let result = tokio::select! {
            result = AssertUnwindSafe(read).catch_unwind() => result.unwrap_or_else(|panic| Err(unreadable(panic.as_ref()))),
            () = stop.cancelled() => return,
        };
        match result {
            Ok(examples) => processor.learn_existing(&mailbox, examples, started).await,
            Err(e) => processor.events.emit(events::MODEL_EXISTING_UNREAD, Some(&mailbox), e.to_string()),
        }
    });
}

impl Connected {
    /// The spam folder's newest messages up to UID `up_to` (the agent's
    /// own filings left out) and, if there were any, the inbox's newest
    /// read messages older than `model.ham_after_minutes`, as examples.
    async fn existing_mail(
        &mut self,
        processor: &Processor,
        spam: &str,
        up_to: u32,
    ) -> Result<Vec<ExistingExample>, SessionError> {
        let most = processor.learning.history_messages as usize;
        self.examine(spam).await?;
        let uids: Vec<u32> = self.uids_after(0).await?.into_iter().filter(|&uid| uid <= up_to).collect();
        let newest = &uids[uids.len().saturating_sub(most)..];
        let mut wanted = Vec::with_capacity(newest.len());
        for chunk in newest.chunks(1000) {
            let ids = self.message_ids(&uid_set(chunk)).await?;
            let listed: Vec<Option<String>> = chunk.iter().map(|uid| ids.get(uid).cloned()).collect();
            let worth = processor.worth_a_look(&self.mailbox, listed, Moved::IntoSpam).await;
            wanted.extend(chunk.iter().zip(worth).filter(|(_, w)| *w).map(|(uid, _)| *uid));
        }
        let mut examples = self.examples_of(processor, &wanted, Source::ExistingSpam).await?;
        if examples.is_empty() {
            return Ok(examples);
        }
        self.examine("INBOX").await?;
        let kept = self.kept_in_inbox(processor).await?;
        examples.extend(self.examples_of(processor, &kept, Source::ExistingHam).await?);
        Ok(examples)
    }

    /// UIDs of the inbox's newest messages (at most
    /// `model.history_messages`) older than `model.ham_after_minutes`, read
    /// where that is asked for, and not marked `$Junk`.
    async fn kept_in_inbox(&mut self, processor: &Processor) -> Result<Vec<u32>, SessionError> {
        let learning = &processor.learning;
        let most = learning.history_messages as usize;
        let before = jiff::Timestamp::now().as_second() - i64::from(learning.ham_after_minutes) * 60;
        let query = if learning.ham_requires_read { "SEEN NOT DELETED" } else { "NOT DELETED" };
        let timeout = self.timeout;
        let session = self.session()?;
        let found = tokio::time::timeout(timeout, session.uid_search(query))
            .await
            .map_err(|_| SessionError::Timeout)?
            .map_err(lost)?;
        let mut candidates: Vec<u32> = found.into_iter().collect();
        // Newest first, until enough are old enough.
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        let mut kept = Vec::new();
        for chunk in candidates.chunks(1000) {
            let set = uid_set(chunk);
            let session = self.session()?;
            let fetch = async {
                let fetches: Vec<Fetch> =
                    session.uid_fetch(set, "(UID INTERNALDATE FLAGS)").await?.try_collect().await?;
                Ok::<_, async_imap::error::Error>(fetches)
            };
            let fetches =
                tokio::time::timeout(timeout, fetch).await.map_err(|_| SessionError::Timeout)?.map_err(lost)?;
            for f in &fetches {
                let old_enough = f.internal_date().is_some_and(|d| d.timestamp() <= before);
                let junk = f.flags().filter_map(|flag| flag_name(&flag)).any(|k| k.eq_ignore_ascii_case("$Junk"));
                if let (Some(uid), true, false) = (f.uid, old_enough, junk) {
                    kept.push(uid);
                }
            }
            if kept.len() >= most {
                break;
            }
        }
        kept.sort_unstable();
        Ok(kept[kept.len().saturating_sub(most)..].to_vec())
    }

    /// The selected folder's messages by UID as examples of `source`, each
    /// dated by its INTERNALDATE; fetched in batches bounded like
    /// deliveries', and only their features kept.
    async fn examples_of(
        &mut self,
        processor: &Processor,
        uids: &[u32],
        source: Source,
    ) -> Result<Vec<ExistingExample>, SessionError> {
        let sizes = self.sizes(uids).await?;
        let mut examples = Vec::with_capacity(uids.len());
        for chunk in fetch_batches(uids, &sizes, self.max_bytes) {
            let items = self.fetch_items(chunk, &sizes).await?;
            self.meta.clear();
            let dated = items.into_iter().map(|item| (item.identity.unwrap_or(0), item)).collect();
            examples.extend(processor.existing_examples(dated, source).await);
        }
        Ok(examples)
    }
}
