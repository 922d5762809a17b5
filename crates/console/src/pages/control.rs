//! The settings and subscription pages.

use super::*;

pub(super) struct Field {
    pub(super) key: &'static str,
    pub(super) id: String,
    pub(super) label: &'static str,
    pub(super) help: &'static str,
    pub(super) kind: &'static str,
    pub(super) choices: Vec<&'static str>,
    pub(super) value: String,
    pub(super) file_value: String,
    pub(super) stored: bool,
}

#[derive(Template)]
#[template(path = "settings.html")]
pub(super) struct SettingsPage {
    pub(super) title: &'static str,
    pub(super) frame: Frame,
    pub(super) groups: Vec<(&'static str, Vec<Field>)>,
    pub(super) problems: Vec<String>,
}

pub(super) async fn settings_page(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Query(flash): Query<Flash>,
) -> Page {
    let (views, problems) = api::settings_view(&app).await?;
    let mut groups: Vec<(&'static str, Vec<Field>)> = Vec::new();
    for view in views {
        let s = view.setting;
        let (kind, choices) = match s.kind {
            settings::Kind::Bool => ("bool", Vec::new()),
            settings::Kind::Choice(choices) => ("choice", choices.to_vec()),
            _ => ("text", Vec::new()),
        };
        let field = Field {
            key: s.key,
            id: s.key.replace('.', "-"),
            label: s.label,
            help: s.help,
            kind,
            choices,
            value: settings::display(&view.value),
            file_value: settings::display(&view.file_value),
            stored: view.stored,
        };
        match groups.iter_mut().find(|(g, _)| *g == s.group) {
            Some((_, fields)) => fields.push(field),
            None => groups.push((s.group, vec![field])),
        }
    }
    render(&SettingsPage { title: "Settings", frame: Frame::new(&app, &caller, "/settings", &flash), groups, problems })
}

pub(super) async fn settings_form(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Page {
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    // A checkbox sends "false" (hidden) and, when ticked, "true": the last wins.
    let mut changes: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for (key, value) in fields {
        if settings::find(&key).is_some() {
            changes.insert(key, serde_json::Value::String(value));
        }
    }
    match api::change_settings(&app, changes, &caller.name).await {
        Ok(changed) if changed.is_empty() => Ok(back("/settings", Ok("Nothing changed.".into()))),
        Ok(changed) => Ok(back("/settings", Ok(format!("Saved: {}. They apply within seconds.", changed.join(", "))))),
        Err(e) => Ok(back("/settings", Err(api_message(e)))),
    }
}

#[derive(Template)]
#[template(path = "subscription.html")]
pub(super) struct SubscriptionPage {
    pub(super) title: &'static str,
    pub(super) frame: Frame,
    pub(super) view: Option<ActivationView>,
    pub(super) state_text: &'static str,
    pub(super) expires: String,
    pub(super) mailboxes: String,
    pub(super) new_version: Option<String>,
    pub(super) release_notes_url: String,
}

pub(super) async fn subscription(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Query(flash): Query<Flash>,
) -> Page {
    let snapshot = app.live().snapshot();
    let view = snapshot.activation.clone();
    let state_text = match view.as_ref().map(|v| v.standing.state) {
        None | Some(Phase::Unknown) => "Not known yet",
        Some(Phase::Active) => "Active",
        Some(Phase::Ending) => "Ending soon",
        Some(Phase::Expired) => "Expired: filtering stopped",
        Some(Phase::Revoked) => "Revoked: filtering stopped",
        Some(Phase::Disabled) => "Disabled by the network operator: filtering stopped",
    };
    let expires = match view.as_ref().map(|v| (v.standing.expires_at, v.standing.days_left)) {
        None | Some((0, _)) => "never".to_owned(),
        Some((at, Some(days))) => format!("{} ({days} day(s) left)", when(at)),
        Some((at, None)) => when(at),
    };
    let mailboxes = match view.as_ref().map(|v| v.standing.max_mailboxes) {
        None | Some(0) => "no limit".to_owned(),
        Some(n) => format!("up to {n}"),
    };
    let network = snapshot.network.clone();
    render(&SubscriptionPage {
        title: "Subscription",
        frame: Frame::new(&app, &caller, "/subscription", &flash),
        view,
        state_text,
        expires,
        mailboxes,
        new_version: network.as_ref().and_then(|n| n.new_version.clone()),
        release_notes_url: network.map(|n| n.release_notes_url).unwrap_or_default(),
    })
}

#[derive(Deserialize)]
pub(super) struct CodeForm {
    pub(super) code: String,
}

pub(super) async fn subscription_activate(State(app): State<App>, Form(form): Form<CodeForm>) -> Page {
    let config = app.base().activation.clone();
    let result = app.db(move |c| Ok(starling_agent::activation::enter_code(c, &config, &form.code))).await?;
    Ok(back(
        "/subscription",
        result.map(|claims| {
            format!(
                "Activation code installed: a {} for {}. It takes effect within seconds.",
                claims.plan.as_str(),
                claims.organisation
            )
        }),
    ))
}
