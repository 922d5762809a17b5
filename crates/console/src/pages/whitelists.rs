//! The whitelist page: entries, adding, editing, removing, importing.

use super::*;

#[derive(Template)]
#[template(path = "whitelist.html")]
pub(super) struct WhitelistPage {
    pub(super) title: &'static str,
    pub(super) frame: Frame,
    pub(super) scope: String,
    pub(super) scope_q: String,
    pub(super) search: String,
    pub(super) rows: Vec<state::WhitelistRow>,
    /// Entries in the list, and of those matching the search.
    pub(super) total: usize,
    pub(super) matching: usize,
    pub(super) first: usize,
    pub(super) page: usize,
    pub(super) pages: usize,
    pub(super) previous: Option<String>,
    pub(super) next: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ScopeQuery {
    #[serde(default)]
    pub(super) scope: String,
    #[serde(default)]
    pub(super) search: String,
    #[serde(default)]
    pub(super) page: usize,
    #[serde(flatten)]
    pub(super) flash: Flash,
}

/// Whitelist entries on a page (each is a form).
pub(super) const WHITELIST_PAGE_SIZE: usize = 100;

pub(super) async fn whitelist(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ScopeQuery>,
) -> Page {
    let scope = q.scope.clone();
    let rows = app.db(move |c| state::whitelist(c, Some(&scope))).await?;
    let total = rows.len();
    let needle = q.search.trim().to_lowercase();
    let matching: Vec<state::WhitelistRow> = rows
        .into_iter()
        .filter(|r| {
            needle.is_empty() || r.entry.to_lowercase().contains(&needle) || r.comment.to_lowercase().contains(&needle)
        })
        .collect();
    let pages = matching.len().div_ceil(WHITELIST_PAGE_SIZE).max(1);
    let page = q.page.clamp(1, pages);
    let link = |p: usize| {
        format!("/whitelist?scope={}&search={}&page={p}", auth::urlencode(&q.scope), auth::urlencode(&q.search))
    };
    let first = (page - 1) * WHITELIST_PAGE_SIZE;
    render(&WhitelistPage {
        title: "Whitelist",
        frame: Frame::new(&app, &caller, "/whitelist", &q.flash),
        scope_q: auth::urlencode(&q.scope),
        scope: q.scope.clone(),
        search: q.search.clone(),
        total,
        matching: matching.len(),
        first: first + 1,
        rows: matching.into_iter().skip(first).take(WHITELIST_PAGE_SIZE).collect(),
        page,
        pages,
        previous: (page > 1).then(|| link(page - 1)),
        next: (page < pages).then(|| link(page + 1)),
    })
}

pub(super) fn whitelist_back(scope: &str) -> String {
    format!("/whitelist?scope={}", auth::urlencode(scope))
}

#[derive(Deserialize)]
pub(super) struct EntryForm {
    #[serde(default)]
    pub(super) scope: String,
    pub(super) entry: String,
    #[serde(default)]
    pub(super) comment: String,
    #[serde(default)]
    pub(super) old_entry: String,
}

pub(super) async fn whitelist_add(State(app): State<App>, Form(form): Form<EntryForm>) -> Page {
    let to = whitelist_back(&form.scope);
    let entry = match api::parse_entry(&form.entry) {
        Ok(e) => e,
        Err(e) => return Ok(back(&to, Err(api_message(e)))),
    };
    let stored = entry.clone();
    let added = app.db(move |c| state::whitelist_add(c, &form.scope, &stored, &form.comment)).await?;
    Ok(back(&to, Ok(if added { format!("{entry} added.") } else { format!("{entry} was listed already.") })))
}

pub(super) async fn whitelist_edit(State(app): State<App>, Form(form): Form<EntryForm>) -> Page {
    let to = whitelist_back(&form.scope);
    let entry = match api::parse_entry(&form.entry) {
        Ok(e) => e,
        Err(e) => return Ok(back(&to, Err(api_message(e)))),
    };
    let stored = entry.clone();
    let done =
        app.db(move |c| state::whitelist_replace(c, &form.scope, &form.old_entry, &stored, &form.comment)).await?;
    Ok(back(&to, if done { Ok(format!("{entry} saved.")) } else { Err("That entry is no longer listed.".into()) }))
}

pub(super) async fn whitelist_remove(State(app): State<App>, Form(form): Form<EntryForm>) -> Page {
    let to = whitelist_back(&form.scope);
    let entry = form.entry.clone();
    let removed = app.db(move |c| state::whitelist_remove(c, &form.scope, &form.entry)).await?;
    Ok(back(&to, if removed { Ok(format!("{entry} removed.")) } else { Err(format!("{entry} is not listed.")) }))
}

#[derive(Template)]
#[template(path = "import_preview.html")]
pub(super) struct ImportPreviewPage {
    pub(super) title: &'static str,
    pub(super) frame: Frame,
    pub(super) scope: String,
    pub(super) text: String,
    pub(super) preview: api::ImportPreview,
}

/// Largest whitelist import read.
pub(super) const IMPORT_LIMIT: usize = 8 << 20;

pub(super) async fn whitelist_import(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    mut multipart: Multipart,
) -> Page {
    let (mut scope, mut text) = (String::new(), String::new());
    while let Ok(Some(field)) = multipart.next_field().await {
        let name = field.name().unwrap_or_default().to_owned();
        let Ok(bytes) = field.bytes().await else { break };
        if bytes.len() > IMPORT_LIMIT {
            return Ok(back("/whitelist", Err("The file is too large (at most 8 MiB).".into())));
        }
        let value = String::from_utf8_lossy(&bytes).into_owned();
        match name.as_str() {
            "scope" => scope = value,
            "file" | "text" if !value.trim().is_empty() => {
                text.push_str(&value);
                if !text.ends_with('\n') {
                    text.push('\n');
                }
            }
            _ => {}
        }
    }
    if text.trim().is_empty() {
        return Ok(back(&whitelist_back(&scope), Err("Choose a file or paste entries to import.".into())));
    }
    let preview = api::import_whitelist(&app, scope.clone(), &text, true).await?;
    let frame = Frame::new(&app, &caller, "/whitelist", &Flash::default());
    render(&ImportPreviewPage { title: "Import preview", frame, scope, text, preview })
}

#[derive(Deserialize)]
pub(super) struct ApplyForm {
    #[serde(default)]
    pub(super) scope: String,
    pub(super) text: String,
}

pub(super) async fn whitelist_import_apply(State(app): State<App>, Form(form): Form<ApplyForm>) -> Page {
    let to = whitelist_back(&form.scope);
    match api::import_whitelist(&app, form.scope, &form.text, false).await {
        Ok(p) if p.applied => {
            Ok(back(&to, Ok(format!("Imported: {} added, {} comments changed.", p.add.len(), p.update.len()))))
        }
        Ok(p) => Ok(back(&to, Err(format!("Nothing imported: {}", p.errors.join("; "))))),
        Err(e) => Ok(back(&to, Err(api_message(e)))),
    }
}
