//! The whitelists: listing, adding, editing, removing, importing and
//! exporting entries.

use super::*;

/// A whitelist's scope.
#[derive(Deserialize, Default)]
pub struct Scope {
    /// A mailbox's own list; absent or empty: the server-wide list.
    #[serde(default)]
    pub scope: String,
    /// Every list (listing only).
    #[serde(default)]
    pub all: bool,
}

pub(super) async fn whitelist_list(State(app): State<App>, Query(q): Query<Scope>) -> Answer<Vec<state::WhitelistRow>> {
    let rows = app.db(move |c| state::whitelist(c, if q.all { None } else { Some(&q.scope) })).await?;
    Ok(Json(rows))
}

#[derive(Deserialize)]
pub(super) struct NewEntry {
    #[serde(default)]
    pub(super) scope: String,
    pub(super) entry: String,
    #[serde(default)]
    pub(super) comment: String,
    /// For an edit: the entry being replaced.
    #[serde(default)]
    pub(super) old_entry: Option<String>,
}

/// Parses an entry, with the API's error.
pub fn parse_entry(text: &str) -> Result<String, ApiError> {
    Entry::parse(text)
        .map(|e| e.to_string())
        .map_err(|e| ApiError::invalid(format!("{text:?} is not a whitelist entry"), vec![e]))
}

pub(super) async fn whitelist_add(State(app): State<App>, Json(body): Json<NewEntry>) -> Result<Response, ApiError> {
    let entry = parse_entry(&body.entry)?;
    let stored = entry.clone();
    let added = app.db(move |c| state::whitelist_add(c, &body.scope, &stored, &body.comment)).await?;
    let status = if added { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(serde_json::json!({"entry": entry, "added": added}))).into_response())
}

pub(super) async fn whitelist_edit(State(app): State<App>, Json(body): Json<NewEntry>) -> Answer<serde_json::Value> {
    let Some(old) = body.old_entry.clone() else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "old_entry is required to edit an entry"));
    };
    let entry = parse_entry(&body.entry)?;
    let stored = entry.clone();
    let found = app.db(move |c| state::whitelist_replace(c, &body.scope, &old, &stored, &body.comment)).await?;
    if !found {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "the entry being edited is not listed"));
    }
    Ok(Json(serde_json::json!({"entry": entry})))
}

#[derive(Deserialize)]
pub(super) struct RemoveEntry {
    #[serde(default)]
    pub(super) scope: String,
    pub(super) entry: String,
}

pub(super) async fn whitelist_remove(
    State(app): State<App>,
    Query(q): Query<RemoveEntry>,
) -> Answer<serde_json::Value> {
    let written = Entry::parse(&q.entry).map(|e| e.to_string()).unwrap_or(q.entry);
    let shown = written.clone();
    let removed = app.db(move |c| state::whitelist_remove(c, &q.scope, &written)).await?;
    if !removed {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("{shown} is not listed")));
    }
    Ok(Json(serde_json::json!({"removed": shown})))
}

/// What an import would do (or did).
#[derive(Serialize, Deserialize, Default)]
pub struct ImportPreview {
    /// New entries.
    pub add: Vec<(String, String)>,
    /// Entries whose comment changes.
    pub update: Vec<(String, String)>,
    /// Entries already listed as they are.
    pub unchanged: usize,
    /// Lines that are not entries ("line N: …").
    pub errors: Vec<String>,
    /// Whether it was applied.
    pub applied: bool,
}

/// Previews (and, unless `dry_run` or there are errors, applies) a
/// whitelist import.
pub async fn import_whitelist(app: &App, scope: String, text: &str, dry_run: bool) -> Result<ImportPreview, ApiError> {
    let (entries, errors) = whitelist::parse_file(text);
    let mut preview = ImportPreview { errors, ..ImportPreview::default() };
    let lookup = scope.clone();
    let existing: BTreeMap<String, String> = app
        .db(move |c| state::whitelist(c, Some(&lookup)))
        .await?
        .into_iter()
        .map(|row| (row.entry, row.comment))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for (entry, comment) in entries {
        let entry = entry.to_string();
        if !seen.insert(entry.clone()) {
            continue;
        }
        match existing.get(&entry) {
            None => preview.add.push((entry, comment)),
            Some(old) if *old != comment && !comment.is_empty() => preview.update.push((entry, comment)),
            Some(_) => preview.unchanged += 1,
        }
    }
    if dry_run || !preview.errors.is_empty() {
        return Ok(preview);
    }
    let (add, update) = (preview.add.clone(), preview.update.clone());
    app.db(move |c| {
        let tx = c.transaction()?;
        for (entry, comment) in &add {
            state::whitelist_add(&tx, &scope, entry, comment)?;
        }
        for (entry, comment) in &update {
            state::whitelist_set_comment(&tx, &scope, entry, comment)?;
        }
        tx.commit()
    })
    .await?;
    preview.applied = true;
    Ok(preview)
}

#[derive(Deserialize)]
pub(super) struct ImportQuery {
    #[serde(default)]
    pub(super) scope: String,
    #[serde(default)]
    pub(super) dry_run: bool,
}

pub(super) async fn whitelist_import(
    State(app): State<App>,
    Query(q): Query<ImportQuery>,
    body: String,
) -> Result<Response, ApiError> {
    let preview = import_whitelist(&app, q.scope, &body, q.dry_run).await?;
    let status = if preview.errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    Ok((status, Json(preview)).into_response())
}

#[derive(Deserialize)]
pub(super) struct ExportQuery {
    #[serde(default)]
    pub(super) scope: String,
    #[serde(default)]
    pub(super) format: Option<String>,
}

/// A whitelist as CSV (`entry,comment`) or plain text (one per line).
pub fn export_whitelist(rows: &[state::WhitelistRow], format: &str) -> Result<String, ApiError> {
    match format {
        "csv" => {
            let mut writer = csv::Writer::from_writer(Vec::new());
            let _ = writer.write_record(["entry", "comment"]);
            for row in rows {
                let _ = writer.write_record([&row.entry, &row.comment]);
            }
            Ok(String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default())
        }
        "text" => Ok(rows.iter().map(|r| format!("{}\n", r.entry)).collect()),
        other => Err(ApiError::new(StatusCode::BAD_REQUEST, format!("unknown format {other:?}: csv or text"))),
    }
}

pub(super) async fn whitelist_export(
    State(app): State<App>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let format = q.format.unwrap_or_else(|| "csv".into());
    let scope = q.scope.clone();
    let rows = app.db(move |c| state::whitelist(c, Some(&scope))).await?;
    let body = export_whitelist(&rows, &format)?;
    let (kind, extension) =
        if format == "csv" { ("text/csv; charset=utf-8", "csv") } else { ("text/plain; charset=utf-8", "txt") };
    let name = if q.scope.is_empty() { "whitelist".to_owned() } else { format!("whitelist-{}", safe_name(&q.scope)) };
    Ok((
        [
            (header::CONTENT_TYPE, kind.to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}.{extension}\"")),
        ],
        body,
    )
        .into_response())
}

pub(super) fn safe_name(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect()
}
