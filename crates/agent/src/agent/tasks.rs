//! Keeping mailbox tasks in step with the users, the settings and the
//! plan: who should be watched, starting and stopping their tasks.

use super::*;

impl Supervisor {
    /// Applies changed settings (from the console or the CLI); true when
    /// something changed. Tasks whose policy changed are restarted by the
    /// next reconcile.
    pub(super) async fn reload_settings(&mut self) -> bool {
        let stored = match self.state.call(|c| state::settings(c)).await {
            Ok(stored) => stored,
            Err(e) => {
                self.events.emit(events::STATE_ERROR, None, e.to_string());
                return false;
            }
        };
        let config = match crate::settings::effective(&self.base, &stored) {
            Ok(config) => config,
            Err(problems) => {
                self.events.emit(events::SETTINGS_REJECTED, None, problems.join("; "));
                return false;
            }
        };
        if config == self.config {
            return false;
        }
        let schedule = if config.rescan.enabled {
            match crate::schedule::Daily::parse(&config.rescan.time, &config.rescan.timezone) {
                Ok(schedule) => Some(schedule),
                Err(e) => {
                    self.events.emit(events::SETTINGS_REJECTED, None, e.to_string());
                    return false;
                }
            }
        } else {
            None
        };
        let changed: Vec<&str> = crate::settings::values(&config)
            .into_iter()
            .zip(crate::settings::values(&self.config))
            .filter(|((_, new), (_, old))| new != old)
            .map(|((key, _), _)| key)
            .collect();
        self.pipeline.set_rules(&config);
        if let Some(inline) = &self.inline {
            inline.configure(&config);
        }
        self.processor.feedback.set_enabled(config.feedback.enabled);
        self.processor.recent.set_enabled(config.retro.enabled);
        self.schedule = schedule;
        self.config = config;
        self.settings_changed = Some(changed.join(", "));
        true
    }

    pub(super) async fn reload_whitelists(&self) {
        match self.state.call(|c| state::whitelist(c, None)).await {
            Ok(rows) => self.pipeline.set_whitelists(Whitelists::build(&self.config.whitelist.entries, &rows)),
            Err(e) => self.events.emit(events::STATE_ERROR, None, e.to_string()),
        }
    }

    /// Reads the user source; false when it failed.
    pub(super) async fn sync_users(&mut self) -> bool {
        match users::list(&self.config).await {
            Ok((mut names, source)) => {
                // An account configured as a shared mailbox is watched as
                // that, with its own action, not also as a user's INBOX.
                let shared = &self.config.shared;
                names.retain(|n| !shared.iter().any(|s| s.account == *n && s.folder.eq_ignore_ascii_case("INBOX")));
                let auto_enable = self.config.users.auto_enable;
                let result =
                    self.state.call(move |c| state::sync_mailboxes(c, &names, "user", source, auto_enable)).await;
                match result {
                    Ok((added, gone)) => {
                        for name in added {
                            let enabled = if auto_enable { "filtered" } else { "not filtered until enabled" };
                            self.events.emit(events::MAILBOX_ADDED, Some(&name), format!("It is {enabled}."));
                        }
                        for name in gone {
                            self.events.emit(events::MAILBOX_GONE, Some(&name), "");
                        }
                        true
                    }
                    Err(e) => {
                        self.events.emit(events::STATE_ERROR, None, e.to_string());
                        false
                    }
                }
            }
            Err(e) => {
                let root_missing = self.config.mail_store == MailStoreKind::Maildir
                    && self.config.users.source == crate::config::UserSource::Maildir
                    && !self.config.maildir.root.is_dir();
                if root_missing {
                    self.events.emit(events::MAILDIR_ROOT_MISSING, None, e);
                } else {
                    self.events.emit(events::USER_SOURCE_FAILED, None, e);
                }
                false
            }
        }
    }

    /// The folders that should be watched now, and the mailboxes disabled;
    /// `None` when the state cannot be read (then nothing changes).
    pub(super) async fn wanted(&mut self) -> Option<(Vec<Wanted>, HashSet<String>)> {
        let rows = match self.state.call(|c| state::mailboxes(c)).await {
            Ok(rows) => rows,
            Err(e) => {
                self.events.emit(events::STATE_ERROR, None, e.to_string());
                return None;
            }
        };
        let standing = self.activation.standing();
        let (rows, beyond) = crate::activation::allowed(&standing, rows);
        self.limit_changed(&standing, beyond).await;
        if let Some(inline) = &self.inline {
            inline.set_mailboxes(&rows);
        }
        if !self.watch_mailboxes {
            return Some((Vec::new(), HashSet::new()));
        }
        let disabled = rows.iter().filter(|row| !row.enabled).map(|row| row.name.clone()).collect();
        let user_policy = pipeline::user_policy(&self.config);
        let global = self.config.feedback.enabled;
        let mut wanted: Vec<Wanted> = rows
            .into_iter()
            .filter(|row| row.enabled && row.present && row.kind == "user")
            .map(|row| Wanted {
                name: row.name.clone(),
                account: row.name,
                folder: "INBOX".to_owned(),
                policy: MailboxPolicy { model: row.model, ..user_policy.clone() },
                feedback: global && row.feedback,
            })
            .collect();
        for shared in &self.config.shared {
            wanted.push(Wanted {
                name: shared_name(shared),
                account: shared.account.clone(),
                folder: shared.folder.clone(),
                policy: pipeline::shared_policy(&self.config, shared),
                feedback: false,
            });
        }
        Some((wanted, disabled))
    }

    /// Tells of the mailboxes a plan's limit leaves out, and drops the
    /// queued re-checks when filtering stops.
    pub(super) async fn limit_changed(&mut self, standing: &crate::activation::Standing, beyond: Vec<String>) {
        if beyond != self.over_limit {
            if !beyond.is_empty() {
                let detail = format!(
                    "{} mailbox(es) beyond the plan's {}: {}.",
                    beyond.len(),
                    standing.max_mailboxes,
                    beyond.iter().take(20).cloned().collect::<Vec<_>>().join(", ")
                );
                self.events.reset(events::MAILBOX_LIMIT, None);
                self.events.emit(events::MAILBOX_LIMIT, None, detail);
            }
            self.live.set_over_limit(beyond.clone());
            self.over_limit = beyond;
        }
        if self.was_filtering
            && !standing.filtering
            && let Err(e) = self.state.call(|c| state::recheck_clear(c)).await
        {
            self.events.emit(events::STATE_ERROR, None, e.to_string());
        }
        self.was_filtering = standing.filtering;
    }

    /// Stops a task (and its spam-folder task, and its watches).
    pub(super) async fn stop_task(&mut self, name: &str) {
        self.live.forget(name);
        for running in [self.running.remove(name), self.spam_running.remove(name)].into_iter().flatten() {
            let _ = running.work.send(Work::Stop).await;
            self.store.unwatch(&running.watched);
        }
    }

    /// Starts and stops tasks to match the wanted folders.
    pub(super) async fn reconcile(&mut self) {
        let Some((wanted, disabled)) = self.wanted().await else { return };
        for name in self.apply_in_place(&wanted) {
            self.stop_task(&name).await;
            if disabled.contains(&name) {
                self.events.emit(events::MAILBOX_DISABLED, Some(&name), "");
            }
        }
        for wanted in wanted {
            if self.running.get(&wanted.name).is_some_and(|r| !r.task.is_finished()) {
                if wanted.feedback && self.store.feedback_tasks() && !self.spam_running.contains_key(&wanted.name) {
                    self.start_spam_task(&wanted);
                }
                continue;
            }
            self.stop_task(&wanted.name).await;
            self.start_task(wanted);
        }
        self.report_load();
    }

    /// Hands a changed policy to the running tasks that can take it in
    /// place; the tasks that must stop (no longer wanted, or watching
    /// something else now).
    fn apply_in_place(&mut self, wanted: &[Wanted]) -> Vec<String> {
        let names: HashMap<&str, (bool, &MailboxPolicy)> =
            wanted.iter().map(|w| (w.name.as_str(), (w.feedback, &w.policy))).collect();
        let mut stopping = Vec::new();
        for (name, running) in &mut self.running {
            match names.get(name.as_str()) {
                Some(&(feedback, policy)) if feedback == running.feedback && *policy == running.policy => {}
                // A new action, tag or switch: the running tasks take it
                // for their next messages, without reconnecting.
                Some(&(feedback, policy)) if feedback == running.feedback && same_watch(&running.policy, policy) => {
                    running.cell.set(policy.clone());
                    running.policy = policy.clone();
                    if let Some(spam) = self.spam_running.get_mut(name) {
                        spam.cell.set(policy.clone());
                        spam.policy = policy.clone();
                    }
                }
                _ => stopping.push(name.clone()),
            }
        }
        stopping
    }

    /// Starts a mailbox's task (IMAP or Maildir), and its spam-folder task
    /// when its users' moves are watched over IMAP.
    fn start_task(&mut self, wanted: Wanted) {
        let cell = PolicyCell::new(wanted.policy.clone());
        let context = MailboxContext { name: Arc::from(wanted.name.as_str()), enabled: true, policy: cell.clone() };
        let (work, receiver) = mpsc::channel(1024);
        let kit = self.kit();
        let (task, watched) = self.store.start_filter(&kit, &wanted, context, receiver);
        let running = Running { work, task, watched, feedback: wanted.feedback, policy: wanted.policy.clone(), cell };
        self.running.insert(wanted.name.clone(), running);
        if wanted.feedback {
            self.start_spam_task(&wanted);
        }
    }

    /// Starts the task that sees a mailbox's users' moves, when the store
    /// has one of its own (IMAP: a session on the spam folder).
    pub(super) fn start_spam_task(&mut self, wanted: &Wanted) {
        let cell = PolicyCell::new(wanted.policy.clone());
        let context = MailboxContext { name: Arc::from(wanted.name.as_str()), enabled: true, policy: cell.clone() };
        let (work, receiver) = mpsc::channel(16);
        let kit = self.kit();
        let Some(task) = self.store.start_feedback(&kit, wanted, context, receiver) else { return };
        let running = Running { work, task, watched: Vec::new(), feedback: true, policy: wanted.policy.clone(), cell };
        self.spam_running.insert(wanted.name.clone(), running);
    }

    /// What a mailbox task is given.
    fn kit(&self) -> TaskKit {
        TaskKit {
            processor: self.processor.clone(),
            marker: self.marker.clone(),
            events: self.events.clone(),
            stop: self.stop.clone(),
            first_scan_hours: self.config.scan.first_scan_hours,
            spam_folder: self.config.policy.spam_folder.clone(),
            trash_folder: self.config.policy.trash_folder.clone(),
        }
    }
}
