//! The account page: one's password and tokens, and (administrators)
//! the other accounts.

use super::*;

#[derive(Template)]
#[template(path = "account.html")]
pub(super) struct AccountPage {
    pub(super) title: &'static str,
    pub(super) frame: Frame,
    pub(super) accounts: Vec<(String, &'static str, String)>,
    pub(super) tokens: Vec<TokenLine>,
    pub(super) token: String,
}

pub(super) struct TokenLine {
    pub(super) id: i64,
    pub(super) name: String,
    pub(super) account: String,
    pub(super) created: String,
    pub(super) last_used: String,
}

#[derive(Deserialize)]
pub(super) struct AccountQuery {
    #[serde(default)]
    pub(super) token: String,
    #[serde(flatten)]
    pub(super) flash: Flash,
}

pub(super) async fn account(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<AccountQuery>,
) -> Page {
    let (accounts, tokens) = app.db(|c| Ok((auth::accounts(c)?, auth::tokens(c)?))).await?;
    render(&AccountPage {
        title: "Account",
        frame: Frame::new(&app, &caller, "/account", &q.flash),
        accounts: accounts
            .into_iter()
            .map(|a| (a.name, a.role.as_str(), a.last_login.map(when).unwrap_or_else(|| "never".into())))
            .collect(),
        tokens: tokens
            .into_iter()
            .map(|t| TokenLine {
                id: t.id,
                name: t.name,
                account: t.account,
                created: when(t.created),
                last_used: t.last_used.map(when).unwrap_or_else(|| "never".into()),
            })
            .collect(),
        token: q.token,
    })
}

#[derive(Deserialize)]
pub(super) struct PasswordForm {
    pub(super) current: String,
    pub(super) password: String,
}

pub(super) async fn account_password(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<PasswordForm>,
) -> Page {
    if api::check_login(&app, &caller.name, &form.current).await.is_err() {
        return Ok(back("/account", Err("The current password is wrong.".into())));
    }
    match api::set_password(&app, caller.name.clone(), form.password).await {
        Ok(()) => Ok(back("/login", Ok("Password changed; log in again.".into()))),
        Err(e) => Ok(back("/account", Err(api_message(e)))),
    }
}

#[derive(Deserialize)]
pub(super) struct NewAccountForm {
    pub(super) name: String,
    pub(super) password: String,
    pub(super) role: String,
}

pub(super) async fn account_add(State(app): State<App>, Form(form): Form<NewAccountForm>) -> Page {
    Ok(match api::create_account(&app, &form.name, form.password, &form.role).await {
        Ok(_) => back("/account", Ok(format!("{} added.", form.name))),
        Err(e) => back("/account", Err(api_message(e))),
    })
}

#[derive(Deserialize)]
pub(super) struct RoleForm {
    pub(super) name: String,
    pub(super) role: String,
}

pub(super) async fn account_role(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<RoleForm>,
) -> Page {
    Ok(match api::change_role(&app, &caller, form.name.clone(), &form.role).await {
        Ok(role) => back("/account", Ok(format!("{} is now {}.", form.name, role.as_str()))),
        Err(e) => back("/account", Err(api_message(e))),
    })
}

#[derive(Deserialize)]
pub(super) struct NameForm {
    pub(super) name: String,
}

pub(super) async fn account_remove(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<NameForm>,
) -> Page {
    Ok(match api::remove_account(&app, &caller, form.name.clone()).await {
        Ok(()) => back("/account", Ok(format!("{} removed.", form.name))),
        Err(e) => back("/account", Err(api_message(e))),
    })
}

#[derive(Deserialize)]
pub(super) struct TokenForm {
    pub(super) name: String,
}

pub(super) async fn token_add(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<TokenForm>,
) -> Page {
    let id = caller.id;
    let name: String = form.name.chars().take(100).collect();
    let (_, token) = app.db(move |c| auth::create_token(c, id, &name)).await?;
    Ok(Redirect::to(&format!("/account?token={}", auth::urlencode(&token))).into_response())
}

#[derive(Deserialize)]
pub(super) struct TokenRemoveForm {
    pub(super) id: i64,
}

pub(super) async fn token_remove(State(app): State<App>, Form(form): Form<TokenRemoveForm>) -> Page {
    let removed = app.db(move |c| auth::remove_token(c, form.id)).await?;
    Ok(back("/account", if removed { Ok("Token revoked.".into()) } else { Err("No such token.".into()) }))
}
