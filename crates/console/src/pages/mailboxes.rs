//! The users page: the list, actions, adding mailboxes, one user's page.

use super::*;

pub(super) struct UserLine {
    pub(super) name: String,
    pub(super) href: String,
    pub(super) enabled: bool,
    pub(super) feedback: bool,
    pub(super) model: bool,
    pub(super) present: bool,
    pub(super) source: String,
    pub(super) checked: u32,
    pub(super) caught: u64,
    pub(super) blocked: u32,
    pub(super) unblocked: u32,
}

#[derive(Template)]
#[template(path = "users.html")]
pub(super) struct UsersPage {
    pub(super) title: &'static str,
    pub(super) frame: Frame,
    pub(super) search: String,
    pub(super) total: u64,
    pub(super) first: u64,
    pub(super) last: u64,
    pub(super) rows: Vec<UserLine>,
    pub(super) page: u64,
    pub(super) pages: u64,
    pub(super) previous: Option<String>,
    pub(super) next: Option<String>,
    pub(super) back: String,
}

#[derive(Deserialize)]
pub(super) struct UsersQuery {
    #[serde(default)]
    pub(super) search: String,
    #[serde(default)]
    pub(super) page: u64,
    #[serde(flatten)]
    pub(super) flash: Flash,
}

pub(super) const PAGE_SIZE: u64 = 50;

pub(super) async fn users(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<UsersQuery>,
) -> Page {
    let page = q.page.max(1);
    let offset = ((page - 1) * PAGE_SIZE).min(u64::from(u32::MAX)) as u32;
    let listing =
        api::users_page(&app, api::UsersQuery { search: q.search.clone(), offset, limit: Some(PAGE_SIZE as u32) })
            .await?;
    let pages = listing.total.div_ceil(PAGE_SIZE).max(1);
    let link = |p: u64| format!("/users?search={}&page={p}", auth::urlencode(&q.search));
    let rows = listing
        .users
        .into_iter()
        .map(|u| UserLine {
            href: auth::urlencode(&u.mailbox.name),
            name: u.mailbox.name,
            enabled: u.mailbox.enabled,
            feedback: u.mailbox.feedback,
            model: u.mailbox.model,
            present: u.mailbox.present,
            source: u.mailbox.source,
            checked: u.last_30_days.checked,
            caught: stats::caught(&u.last_30_days),
            blocked: u.last_30_days.blocked,
            unblocked: u.last_30_days.unblocked,
        })
        .collect::<Vec<_>>();
    let first = if rows.is_empty() { 0 } else { u64::from(offset) + 1 };
    render(&UsersPage {
        title: "Users",
        frame: Frame::new(&app, &caller, "/users", &q.flash),
        last: u64::from(offset) + rows.len() as u64,
        first,
        total: listing.total,
        rows,
        page,
        pages,
        previous: (page > 1).then(|| link(page - 1)),
        next: (page < pages).then(|| link(page + 1)),
        back: link(page),
        search: q.search,
    })
}

pub(super) async fn user_actions(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Page {
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let names: Vec<String> = fields.iter().filter(|(k, _)| k == "names").map(|(_, v)| v.clone()).collect();
    let to = field("back");
    if names.is_empty() {
        return Ok(back(&to, Err("Select at least one mailbox.".into())));
    }
    let action = api::UserActions { names, action: field("action"), hours: None };
    let outcome = match api::apply_user_actions(&app, action.clone(), &caller.name).await {
        Ok(o) => o,
        Err(e) => return Ok(back(&to, Err(api_message(e)))),
    };
    let mut text = format!("{}: {} mailboxes.", action.action, outcome.done.len());
    if !outcome.failed.is_empty() {
        let failed: Vec<String> = outcome.failed.iter().map(|(n, why)| format!("{n} ({why})")).collect();
        text.push_str(&format!(" Not done: {}.", failed.join(", ")));
    }
    Ok(back(&to, Ok(text)))
}

#[derive(Deserialize)]
pub(super) struct AddForm {
    pub(super) csv: String,
}

pub(super) async fn users_add(State(app): State<App>, Form(form): Form<AddForm>) -> Page {
    let (rows, problems) = starling_agent::users::parse_csv(&form.csv);
    if !problems.is_empty() {
        return Ok(back("/users", Err(format!("Nothing added: {}", problems.join("; ")))));
    }
    let count = rows.len();
    let (added, _) = api::add_mailboxes(&app, rows, "console", false).await?;
    Ok(back("/users", Ok(format!("{added} of {count} mailboxes added (the others were known)."))))
}

#[derive(Template)]
#[template(path = "user.html")]
pub(super) struct UserPage {
    pub(super) title: &'static str,
    pub(super) frame: Frame,
    pub(super) detail: api::UserDetail,
    pub(super) href: String,
    pub(super) charts: Vec<(String, String)>,
}

pub(super) async fn user(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(flash): Query<Flash>,
) -> Page {
    let detail = api::user_detail(&app, name.clone()).await?;
    let charts = stats::charts(&detail.days, "last 30 days");
    render(&UserPage {
        title: "User",
        frame: Frame::new(&app, &caller, "/users", &flash),
        href: auth::urlencode(&name),
        detail,
        charts,
    })
}
