//! Console accounts and API tokens.

use super::*;

pub(super) async fn accounts(State(app): State<App>) -> Answer<Vec<auth::Account>> {
    Ok(Json(app.db(|c| auth::accounts(c)).await?))
}

#[derive(Deserialize)]
pub(super) struct NewAccount {
    pub(super) name: String,
    pub(super) password: String,
    pub(super) role: String,
}

/// Creates an account after checking its name, password and role.
pub async fn create_account(app: &App, name: &str, password: String, role: &str) -> Result<Role, ApiError> {
    let mut problems: Vec<String> =
        [auth::check_name(name).err(), auth::check_password(&password).err()].into_iter().flatten().collect();
    let role = Role::parse(role);
    if role.is_none() {
        problems.push("role: admin or read-only".into());
    }
    let Some(role) = role.filter(|_| problems.is_empty()) else {
        return Err(ApiError::invalid("account not created", problems));
    };
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password)).await.unwrap_or_default();
    let stored = name.to_owned();
    if !app.db(move |c| auth::create_account(c, &stored, &hash, role)).await? {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("an account {name} exists")));
    }
    app.events().emit(events::ADMIN_CREATED, None, format!("{name} ({})", role.as_str()));
    Ok(role)
}

pub(super) async fn account_add(State(app): State<App>, Json(body): Json<NewAccount>) -> Result<Response, ApiError> {
    let role = create_account(&app, &body.name, body.password, &body.role).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({"name": body.name, "role": role}))).into_response())
}

#[derive(Deserialize)]
pub(super) struct NewPassword {
    pub(super) password: String,
}

/// Sets an account's password.
pub async fn set_password(app: &App, name: String, password: String) -> Result<(), ApiError> {
    auth::check_password(&password).map_err(|e| ApiError::invalid("password not changed", vec![e]))?;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password)).await.unwrap_or_default();
    let changed = app
        .db(move |c| {
            let n = c.execute("UPDATE admins SET password = ?2 WHERE name = ?1", rusqlite::params![name, hash])?;
            // Other sessions of the account end.
            c.execute("DELETE FROM sessions WHERE admin IN (SELECT id FROM admins WHERE name = ?1)", [&name])?;
            Ok(n > 0)
        })
        .await?;
    if changed { Ok(()) } else { Err(ApiError::new(StatusCode::NOT_FOUND, "unknown account")) }
}

pub(super) async fn account_password(
    State(app): State<App>,
    Path(name): Path<String>,
    Json(body): Json<NewPassword>,
) -> Answer<serde_json::Value> {
    set_password(&app, name.clone(), body.password).await?;
    Ok(Json(serde_json::json!({"changed": name})))
}

pub(super) fn account_change(change: auth::AccountChange, what: &str) -> Result<(), ApiError> {
    match change {
        auth::AccountChange::Done => Ok(()),
        auth::AccountChange::Unknown => Err(ApiError::new(StatusCode::NOT_FOUND, "unknown account")),
        auth::AccountChange::LastAdmin => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{what}: it is the last account with the admin role (give another account that role first)"),
        )),
    }
}

/// Removes an account, its sessions and tokens: not the caller's own, not
/// the last administrator.
pub async fn remove_account(app: &App, caller: &Caller, name: String) -> Result<(), ApiError> {
    if caller.name.eq_ignore_ascii_case(&name) {
        return Err(ApiError::new(StatusCode::CONFLICT, "you cannot remove your own account"));
    }
    let lookup = name.clone();
    account_change(app.db(move |c| auth::remove_account(c, &lookup)).await?, "not removed")?;
    app.events().emit(events::ADMIN_CHANGED, None, format!("{name} removed by {}", caller.name));
    Ok(())
}

/// Gives an account another role, unless that leaves no administrator.
pub async fn change_role(app: &App, caller: &Caller, name: String, role: &str) -> Result<Role, ApiError> {
    let role = Role::parse(role)
        .ok_or_else(|| ApiError::invalid("role not changed", vec!["role: admin or read-only".into()]))?;
    let lookup = name.clone();
    account_change(app.db(move |c| auth::set_role(c, &lookup, role)).await?, "not changed")?;
    app.events().emit(events::ADMIN_CHANGED, None, format!("{name} is now {} (by {})", role.as_str(), caller.name));
    Ok(role)
}

#[derive(Deserialize)]
pub(super) struct NewRole {
    pub(super) role: String,
}

pub(super) async fn account_role(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<NewRole>,
) -> Answer<serde_json::Value> {
    let role = change_role(&app, &caller, name.clone(), &body.role).await?;
    Ok(Json(serde_json::json!({"name": name, "role": role})))
}

pub(super) async fn account_remove(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Answer<serde_json::Value> {
    remove_account(&app, &caller, name.clone()).await?;
    Ok(Json(serde_json::json!({"removed": name})))
}

pub(super) async fn tokens(State(app): State<App>) -> Answer<Vec<auth::TokenRow>> {
    Ok(Json(app.db(|c| auth::tokens(c)).await?))
}

#[derive(Deserialize)]
pub(super) struct NewToken {
    pub(super) name: String,
}

pub(super) async fn token_add(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<NewToken>,
) -> Result<Response, ApiError> {
    let id = caller.id;
    let name = body.name.chars().take(100).collect::<String>();
    let (token_id, token) = app.db(move |c| auth::create_token(c, id, &name)).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({"id": token_id, "token": token}))).into_response())
}

pub(super) async fn token_remove(State(app): State<App>, Path(id): Path<i64>) -> Answer<serde_json::Value> {
    if !app.db(move |c| auth::remove_token(c, id)).await? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such token"));
    }
    Ok(Json(serde_json::json!({"removed": id})))
}
