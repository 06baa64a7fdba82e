//! The dashboard under `/dash/`: server-rendered HTML (minijinja templates, escaped by
//! default) with htmx for small partial updates. Handlers are thin like the API's: they call
//! [`crate::manage`] and render. Every page works without JavaScript; every form carries the
//! CSRF token.

mod account;
mod analytics;
pub mod charts;
mod chat_settings;
mod console;
mod docs;
mod editor;
mod leads;
mod login;
mod sites;
mod visitors;

use std::sync::OnceLock;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Router, extract::Path};
use include_dir::{Dir, include_dir};
use minijinja::{Environment, Value, context};
use serde::Serialize;

use crate::AdminState;
use crate::auth::{Actor, AuthSession};
use crate::error::AdminError;
use crate::manage::people::Person;
use crate::manage::sites::SiteView;

/// The sign-in form (exempt from the CSRF token, not from the origin check).
pub const LOGIN_PATH: &str = "/dash/login";

static TEMPLATES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates");
static ASSETS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/assets");

/// The dashboard's templates, compiled once.
pub struct Templates(Environment<'static>);

impl Templates {
    /// Loads every template embedded in the binary.
    pub fn load() -> Templates {
        let mut env = Environment::new();
        // A form drawn for the first time has no values yet: `form.name` is then empty.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        for file in TEMPLATES.files() {
            let name = file.path().to_string_lossy().into_owned();
            let text = file.contents_utf8().expect("templates are UTF-8");
            env.add_template_owned(name, text.to_owned())
                .expect("templates compile (checked by the tests that render every page)");
        }
        Templates(env)
    }

    /// Renders `name` with `ctx`.
    pub fn render(&self, name: &str, ctx: Value) -> Result<String, minijinja::Error> {
        self.0.get_template(name)?.render(ctx)
    }
}

fn templates() -> &'static Templates {
    static T: OnceLock<Templates> = OnceLock::new();
    T.get_or_init(Templates::load)
}

/// Renders a page, or a plain error if a template fails (a bug, logged).
pub fn render(status: StatusCode, name: &str, ctx: Value) -> Response {
    match templates().render(name, ctx) {
        Ok(html) => (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "a dashboard template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be drawn; the error is logged",
            )
                .into_response()
        }
    }
}

/// A dashboard failure, drawn as a page.
pub struct PageError(pub AdminError);

impl From<AdminError> for PageError {
    fn from(e: AdminError) -> Self {
        PageError(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = match self.0.status() {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::TOO_MANY_REQUESTS => "Slow down",
            s if s.is_server_error() => "Something went wrong",
            _ => "That did not work",
        };
        render(
            self.0.status(),
            "error.html",
            context! { title, message => self.0.to_string() },
        )
    }
}

/// A signed-in person looking at the dashboard; anyone else is sent to the sign-in form.
pub struct Viewer {
    /// Who, and their sites.
    pub actor: Actor,
    /// The session's CSRF token, for the forms.
    pub csrf: String,
}

impl FromRequestParts<AdminState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Viewer, Response> {
        let to_login = |uri: &Uri| {
            let next = uri.path_and_query().map_or("/dash/", |p| p.as_str());
            let mut target = String::from("/dash/login?next=");
            target.extend(form_urlencoded::byte_serialize(next.as_bytes()));
            Redirect::to(&target).into_response()
        };
        // Only the cookie: a token is for the API. A request with any `Authorization` is not
        // the dashboard's own (and skipped the CSRF guard if it named a bearer token).
        if parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            return Err(to_login(&parts.uri));
        }
        let session = AuthSession::from_request_parts(parts, state)
            .await
            .map_err(|_| to_login(&parts.uri))?;
        let Some(account) = session.user.clone() else {
            return Err(to_login(&parts.uri));
        };
        let sites = state
            .accounts
            .sites_of(account.0.id)
            .await
            .map_err(|e| PageError(e.into()).into_response())?;
        let csrf = crate::csrf::token(&session.session).await;
        Ok(Viewer {
            actor: Actor {
                user: account.0,
                sites,
                via: crate::auth::Via::Session,
            },
            csrf,
        })
    }
}

/// One entry of the site navigation; without `href`, a place kept for a later feature.
#[derive(Serialize)]
struct NavItem {
    id: &'static str,
    label: &'static str,
    href: Option<String>,
    note: &'static str,
}

fn nav(site: &str) -> Vec<NavItem> {
    let at = |id, label, path: &str| NavItem {
        id,
        label,
        href: Some(format!("/dash/sites/{site}/{path}")),
        note: "",
    };
    let soon = |id, label, note| NavItem {
        id,
        label,
        href: None,
        note,
    };
    vec![
        soon(
            "overview",
            "Overview",
            "Today's traffic, decisions and lift",
        ),
        at("rules", "Rules", "rules"),
        at("visitors", "Visitors", "visitors"),
        at("conversations", "Conversations", "conversations"),
        at("chat", "Chat settings", "chat"),
        at("leads", "Leads", "leads"),
        at("destinations", "Destinations", "destinations"),
        at("analytics", "Analytics", "analytics"),
        at("install", "Install", "install"),
        at("settings", "Settings", "settings"),
    ]
}

/// What every page of the shell shows: who, which site, the navigation.
pub struct Frame<'a> {
    /// The viewer.
    pub viewer: &'a Viewer,
    /// The page's title.
    pub title: &'a str,
    /// The navigation entry that is current.
    pub active: &'a str,
    /// The site the page is about, if one.
    pub site: Option<&'a SiteView>,
    /// The viewer's sites, for the switcher.
    pub sites: &'a [SiteView],
}

impl Frame<'_> {
    /// The frame's context, with `extra` merged in.
    pub fn with(&self, extra: Value) -> Value {
        context! {
            title => self.title,
            active => self.active,
            csrf => &self.viewer.csrf,
            user => Person::from(&self.viewer.actor.user),
            site => self.site,
            sites => self.sites,
            nav => self.site.map(|s| nav(&s.key)),
            ..extra
        }
    }
}

/// Draws a page of the viewer's own, about no one site (sites, tokens, their account): the
/// frame with their sites, then `template` with `extra`.
pub(crate) async fn own_page(
    state: &AdminState,
    viewer: &Viewer,
    (title, active, template): (&str, &str, &str),
    status: StatusCode,
    extra: Value,
) -> Result<Response, PageError> {
    let all = crate::manage::sites::list(state, &viewer.actor).await?;
    let frame = Frame {
        viewer,
        title,
        active,
        site: None,
        sites: &all,
    };
    Ok(render(status, template, frame.with(extra)))
}

async fn asset(Path(file): Path<String>) -> Response {
    let Some(found) = ASSETS.get_file(&file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let kind = match file.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "text/plain; charset=utf-8",
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        found.contents(),
    )
        .into_response()
}

/// The dashboard's routes.
pub fn router() -> Router<AdminState> {
    Router::new()
        .route("/dash", get(|| async { Redirect::to("/dash/") }))
        .route("/dash/", get(sites::home))
        .route(LOGIN_PATH, get(login::form).post(login::submit))
        .route("/dash/logout", post(login::logout))
        .route("/dash/switch", get(sites::switch))
        .route("/dash/sites", get(sites::list).post(sites::create))
        .route("/dash/sites/{site}/rules", get(sites::rules))
        .route("/dash/sites/{site}/rules/new", get(editor::new))
        .route("/dash/sites/{site}/rules/{rule}", get(editor::edit))
        .route("/dash/preview/{token}", get(editor::frame))
        .route("/dash/sites/{site}/visitors", get(visitors::list))
        .route("/dash/sites/{site}/conversations", get(console::page))
        .route(
            "/dash/sites/{site}/conversations/events",
            get(console::events),
        )
        .route(
            "/dash/sites/{site}/chat",
            get(chat_settings::page).post(chat_settings::save),
        )
        .route(
            "/dash/sites/{site}/chat/profile",
            post(chat_settings::save_profile),
        )
        .route(
            "/dash/sites/{site}/visitors/{visitor}",
            get(visitors::explore),
        )
        .route("/dash/sites/{site}/leads", get(leads::list))
        .route("/dash/sites/{site}/analytics", get(analytics::page))
        .route(
            "/dash/sites/{site}/analytics/settings",
            post(analytics::save_settings),
        )
        .route(
            "/dash/sites/{site}/leads/{id}",
            get(leads::one).post(leads::update),
        )
        .route(
            "/dash/sites/{site}/destinations",
            get(leads::destinations).post(leads::create_destination),
        )
        .route(
            "/dash/sites/{site}/destinations/{id}/{action}",
            post(leads::destination_action),
        )
        .route(
            "/dash/sites/{site}/deliveries/{id}/replay",
            post(leads::replay),
        )
        .route(
            "/dash/sites/{site}/lead-settings",
            post(leads::save_settings),
        )
        .route("/dash/sites/{site}/install", get(sites::install))
        .route(
            "/dash/sites/{site}/install/check",
            get(sites::install_check),
        )
        .route(
            "/dash/sites/{site}/settings",
            get(sites::settings).post(sites::save_settings),
        )
        .route("/dash/sites/{site}/secret", post(sites::rotate_secret))
        .route("/dash/sites/{site}/members", post(sites::add_member))
        .route(
            "/dash/sites/{site}/members/{user}/remove",
            post(sites::remove_member),
        )
        .route(
            "/dash/tokens",
            get(account::tokens).post(account::create_token),
        )
        .route("/dash/tokens/{id}/revoke", post(account::revoke_token))
        .route("/dash/account", get(account::account))
        .route("/dash/account/password", post(account::change_password))
        .route("/dash/assets/{file}", get(asset))
        .route("/api/docs", get(docs::page))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_template_compiles() {
        let t = super::Templates::load();
        assert!(t.0.templates().count() >= 8);
    }

    #[test]
    fn a_form_drawn_without_values_renders_empty_fields() {
        let t = super::Templates::load();
        let user = minijinja::context! { role => "admin", name => "Ada" };
        let html = t
            .render(
                "sites.html",
                minijinja::context! { user, all_sites => Vec::<u8>::new() },
            )
            .unwrap();
        assert!(html.contains("name=\"key\""));
    }
}
