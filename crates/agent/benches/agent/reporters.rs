//! The deployment's users who report: every round they read their new mail
//! and move spam to the spam folder and rescue ham from it by real IMAP
//! moves (`imap_user.py round`).

use super::*;

/// A user's move, as the server confirmed it.
#[derive(Clone, Debug)]
pub(super) struct UserMove {
    pub(super) user: usize,
    pub(super) message_id: String,
    pub(super) at: f64,
    pub(super) to_spam: bool,
}

#[derive(Default)]
pub(super) struct Rounds {
    pub(super) moves: Vec<UserMove>,
    pub(super) rounds: usize,
    pub(super) read: usize,
    pub(super) errors: usize,
    pub(super) longest: f64,
}

/// One round of every reporter: read the new mail, move the spam seen in
/// INBOX to the spam folder, the ham seen in the spam folder back.
pub(super) async fn reporters_round(
    dovecot: &std::sync::Arc<Dovecot>,
    users: &[String],
    reporters: &[usize],
    truth: &Path,
    spam_folder: &str,
    rounds: &std::sync::Mutex<Rounds>,
) {
    let started = Instant::now();
    for &u in reporters {
        let (dovecot, user, truth, folder) =
            (dovecot.clone(), users[u].clone(), truth.display().to_string(), spam_folder.to_owned());
        let result = tokio::task::spawn_blocking(move || -> anyhow::Result<serde_json::Value> {
            let text = dovecot.imap_user_output(&user, &["round", &truth, &folder])?;
            Ok(serde_json::from_str(&text)?)
        })
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r);
        let mut rounds = rounds.lock().unwrap();
        match result {
            Ok(value) => {
                rounds.read += value["read"].as_u64().unwrap_or(0) as usize;
                for (key, to_spam) in [("spam_moved", true), ("ham_rescued", false)] {
                    for item in value[key].as_array().into_iter().flatten() {
                        let message_id = item[0].as_str().unwrap_or("").to_owned();
                        let at = item[1].as_f64().unwrap_or(0.0);
                        rounds.moves.push(UserMove { user: u, message_id, at, to_spam });
                    }
                }
            }
            Err(e) => {
                rounds.errors += 1;
                eprintln!("deploy: reporter {} round failed: {e:#}", users[u]);
            }
        }
    }
    let mut rounds = rounds.lock().unwrap();
    rounds.rounds += 1;
    rounds.longest = rounds.longest.max(started.elapsed().as_secs_f64());
}
