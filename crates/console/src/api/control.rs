//! Settings, rescans, the local model and the subscription.

use super::*;

/// A setting with its value.
#[derive(Serialize)]
pub struct SettingView {
    /// The definition.
    #[serde(flatten)]
    pub setting: settings::Setting,
    /// In effect.
    pub value: settings::Value,
    /// The configuration file's value.
    pub file_value: settings::Value,
    /// Changed in the console (stored), not from the file.
    pub stored: bool,
}

/// Every setting with its value.
pub async fn settings_view(app: &App) -> Result<(Vec<SettingView>, Vec<String>), ApiError> {
    let stored = app.db(|c| state::settings(c)).await?;
    let (config, problems) = app.config().await;
    let values = settings::values(&config);
    let file = settings::values(app.base());
    let views = settings::EDITABLE
        .iter()
        .map(|s| SettingView {
            setting: *s,
            value: values[s.key].clone(),
            file_value: file[s.key].clone(),
            stored: stored.contains_key(s.key),
        })
        .collect();
    Ok((views, problems))
}

pub(super) async fn settings_get(State(app): State<App>) -> Answer<serde_json::Value> {
    let (views, problems) = settings_view(&app).await?;
    Ok(Json(serde_json::json!({"settings": views, "problems": problems})))
}

/// Checks and stores changed settings (key → text or JSON value), all or
/// none; the keys that changed.
pub async fn change_settings(
    app: &App,
    changes: BTreeMap<String, serde_json::Value>,
    by: &str,
) -> Result<Vec<String>, ApiError> {
    let mut parsed = BTreeMap::new();
    let mut problems = Vec::new();
    for (key, value) in changes {
        let Some(setting) = settings::find(&key) else {
            problems.push(format!("{key}: not a setting that can be changed here"));
            continue;
        };
        let value = match value {
            serde_json::Value::String(text) => settings::parse(setting, &text),
            other => settings::parse(setting, &settings::display(&other)),
        };
        match value {
            Ok(value) => {
                parsed.insert(key, value);
            }
            Err(e) => problems.push(e),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid("settings not changed", problems));
    }
    let mut stored = app.db(|c| state::settings(c)).await?;
    let (current, _) = app.config().await;
    let current = settings::values(&current);
    let changed: Vec<String> =
        parsed.iter().filter(|(k, v)| current.get(k.as_str()) != Some(*v)).map(|(k, _)| k.clone()).collect();
    stored.extend(parsed.clone());
    if let Err(problems) = settings::effective(app.base(), &stored) {
        return Err(ApiError::invalid("settings not changed", problems));
    }
    let by = by.to_owned();
    app.db(move |c| {
        let tx = c.transaction()?;
        for (key, value) in &parsed {
            state::setting_put(&tx, key, Some(value), &by)?;
        }
        tx.commit()
    })
    .await?;
    Ok(changed)
}

pub(super) async fn settings_put(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<BTreeMap<String, serde_json::Value>>,
) -> Answer<serde_json::Value> {
    let changed = change_settings(&app, body, &caller.name).await?;
    Ok(Json(serde_json::json!({"changed": changed})))
}

pub(super) async fn settings_reset(State(app): State<App>, Path(key): Path<String>) -> Answer<serde_json::Value> {
    if settings::find(&key).is_none() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("{key}: not a setting")));
    }
    let reset = key.clone();
    app.db(move |c| state::setting_put(c, &reset, None, "")).await?;
    Ok(Json(serde_json::json!({"reset": key})))
}

#[derive(Deserialize)]
pub(super) struct Limit {
    pub(super) limit: Option<u32>,
}

pub(super) async fn rescans(State(app): State<App>, Query(q): Query<Limit>) -> Answer<Vec<state::RescanRow>> {
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    Ok(Json(app.db(move |c| state::rescans(c, limit)).await?))
}

#[derive(Deserialize)]
pub(super) struct RescanRequest {
    #[serde(default)]
    pub(super) names: Vec<String>,
    #[serde(default)]
    pub(super) all: bool,
    pub(super) hours: Option<u32>,
}

pub(super) async fn rescan_start(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<RescanRequest>,
) -> Answer<Outcomes> {
    let names = if body.all {
        app.db(|c| state::mailboxes(c)).await?.into_iter().filter(|m| m.enabled && m.present).map(|m| m.name).collect()
    } else {
        body.names
    };
    if names.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "name mailboxes, or ask for all"));
    }
    let actions = UserActions { names, action: "rescan".into(), hours: body.hours };
    Ok(Json(apply_user_actions(&app, actions, &caller.name).await?))
}

/// The local model: what it learnt, and what it and retro-filing did.
#[derive(Serialize)]
pub struct ModelStatus {
    /// The running agent's view (absent when the agent has not attached
    /// its model yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<starling_agent::live::LearningView>,
    /// Stored examples: (label, source, count).
    pub examples: Vec<(String, String, u64)>,
}

pub(super) async fn model_status(State(app): State<App>) -> Answer<ModelStatus> {
    let examples = app.db(|c| starling_agent::learning::example_counts(c)).await?;
    Ok(Json(ModelStatus { live: app.live().snapshot().learning, examples }))
}

pub(super) async fn model_retrain(State(app): State<App>) -> Answer<serde_json::Value> {
    let id = app.db(|c| starling_agent::learning::request_retrain(c)).await?;
    Ok(Json(serde_json::json!({"id": id, "status": "pending"})))
}

pub(super) async fn model_retrain_status(State(app): State<App>, Path(id): Path<i64>) -> Answer<serde_json::Value> {
    match app.db(move |c| starling_agent::learning::request_status(c, id)).await? {
        Some((status, detail)) => Ok(Json(serde_json::json!({"id": id, "status": status, "detail": detail}))),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no retrain request {id}"))),
    }
}

/// The organisation's trial or subscription.
#[derive(Serialize, Deserialize)]
pub struct ActivationStatus {
    /// As the running agent enforces it (`null` before it started).
    pub activation: Option<starling_agent::live::ActivationView>,
    /// The newest agent release, when newer than this one.
    pub new_version: Option<String>,
    /// Its release notes.
    pub release_notes_url: String,
}

pub(super) async fn activation_get(State(app): State<App>) -> Answer<ActivationStatus> {
    let snapshot = app.live().snapshot();
    let network = snapshot.network;
    Ok(Json(ActivationStatus {
        activation: snapshot.activation,
        new_version: network.as_ref().and_then(|n| n.new_version.clone()),
        release_notes_url: network.map(|n| n.release_notes_url).unwrap_or_default(),
    }))
}

/// An activation code to install.
#[derive(Deserialize)]
pub struct CodeInput {
    /// The code, `STARLING1-…`.
    pub code: String,
}

pub(super) async fn activation_enter(State(app): State<App>, Json(input): Json<CodeInput>) -> Answer<Installed> {
    let config = app.base().activation.clone();
    let claims = app
        .db(move |c| Ok(starling_agent::activation::enter_code(c, &config, &input.code)))
        .await?
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    Ok(Json(Installed {
        installed: true,
        organisation: claims.organisation,
        plan: claims.plan.as_str().to_owned(),
        expires_at: claims.expires_at,
        max_mailboxes: claims.max_mailboxes,
        serial: claims.serial,
    }))
}

/// A code installed (`POST /api/v1/activation`).
#[derive(Serialize, Deserialize)]
pub struct Installed {
    /// Always true (a refused code is an error answer).
    pub installed: bool,
    /// The organisation it names.
    pub organisation: String,
    /// `trial` or `subscription`.
    pub plan: String,
    /// When it ends (Unix seconds; 0: never).
    pub expires_at: i64,
    /// Mailboxes it allows (0: any number).
    pub max_mailboxes: u32,
    /// Its serial number.
    pub serial: u64,
}
