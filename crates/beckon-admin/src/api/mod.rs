//! The admin REST API under `/api/v1/`: everything the dashboard does, for scripts and servers.
//! Handlers are thin: extract, call [`crate::manage`], answer JSON. Every error is
//! [`crate::error::ErrorBody`]; every list is paged. The OpenAPI document at
//! `/api/openapi.json` is generated from these handlers and types (utoipa), so it cannot drift
//! from them.

mod analytics;
mod conversations;
mod extract;
mod leads;
mod people;
mod rules;
mod schema;
mod sites;

use axum::Json;
use axum::routing::get;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AdminState;
use crate::error::ErrorBody;

pub use extract::Body;
pub use schema::{PolicyDoc, RuleDoc, whole};

/// The API's sign-in (exempt from the CSRF token, not from the origin check).
pub const LOGIN_PATH: &str = "/api/v1/login";

/// The error answers every operation may give, for the document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum Errors {
    /// Not signed in, or the token is unknown or revoked.
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// Signed in, but not allowed (an agent changing rules; a cross-site request).
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such thing, or one the caller may not see.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The change collides with the current state (a stale `base` version, a taken key).
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The body or a parameter is malformed.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// The body is too large.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The input is invalid; `field` and `problems` say where.
    #[response(status = 422)]
    Invalid(ErrorBody),
    /// Too many sign-in attempts.
    #[response(status = 429)]
    Throttled(ErrorBody),
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Beckon admin API",
        description = "Sites, rules, members and tokens of a Beckon installation. Authenticate \
                       with `Authorization: Bearer bk_…` (an API token made in the dashboard) \
                       or with the dashboard's session cookie plus `X-CSRF-Token`.",
        version = "1"
    ),
    modifiers(&Security),
    components(schemas(ErrorBody, crate::error::ErrorDetail, crate::error::FieldProblem)),
    tags(
        (name = "account", description = "Who is asking; API tokens"),
        (name = "sites", description = "Sites and their keys, origins and guardrails"),
        (name = "rules", description = "A site's rules: the same shape as `beckon rules export --json`"),
        (name = "members", description = "Who belongs to a site"),
        (name = "conversations", description = "The agent console: conversations, the desk, chat settings"),
        (name = "leads", description = "Leads, their follow-up and its figures"),
        (name = "analytics", description = "Lift against the holdout, the sample-ratio check, the cost in annoyance and in model use"),
        (name = "destinations", description = "Where leads and conversation events are sent (webhooks, e-mail, team chat), and every delivery"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("bk_…")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::COOKIE))),
        );
        doc.security = Some(vec![
            utoipa::openapi::security::SecurityRequirement::new("token", Vec::<String>::new()),
            utoipa::openapi::security::SecurityRequirement::new("session", Vec::<String>::new()),
        ]);
    }
}

/// The API's routes and its document, built together.
pub fn openapi_router() -> OpenApiRouter<AdminState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(people::login))
        .routes(routes!(people::me))
        .routes(routes!(people::change_password))
        .routes(routes!(people::tokens, people::create_token))
        .routes(routes!(people::revoke_token))
        .routes(routes!(sites::list, sites::create))
        .routes(routes!(sites::get, sites::update))
        .routes(routes!(sites::rotate_secret))
        .routes(routes!(people::members, people::add_member))
        .routes(routes!(people::remove_member))
        .routes(routes!(rules::list))
        .routes(routes!(rules::get, rules::save, rules::delete))
        .routes(routes!(rules::set_status))
        .routes(routes!(rules::history))
        .routes(routes!(rules::restore))
        .routes(routes!(rules::preview))
        .routes(routes!(rules::backtest))
        .routes(routes!(conversations::list, conversations::start))
        .routes(routes!(conversations::get))
        .routes(routes!(conversations::accept))
        .routes(routes!(conversations::reply))
        .routes({
            // A file is larger than the API's other bodies.
            let (schemas, paths, method) = routes!(conversations::send_file);
            let limit = axum::extract::DefaultBodyLimit::max(beckon_agent::files::MAX_FILE_BYTES);
            (schemas, paths, method.layer(limit))
        })
        .routes(routes!(conversations::file))
        .routes(routes!(conversations::close))
        .routes(routes!(conversations::transfer))
        .routes(routes!(conversations::typing))
        .routes(routes!(conversations::read))
        .routes(routes!(conversations::desk))
        .routes(routes!(conversations::availability))
        .routes(routes!(conversations::profile))
        .routes(routes!(
            conversations::settings,
            conversations::save_settings
        ))
        .routes(routes!(leads::list, leads::create))
        .routes(routes!(leads::export))
        .routes(routes!(leads::get, leads::update))
        .routes(routes!(leads::figures))
        .routes(routes!(leads::settings, leads::save_settings))
        .routes(routes!(leads::destinations, leads::create_destination))
        .routes(routes!(
            leads::destination,
            leads::update_destination,
            leads::delete_destination
        ))
        .routes(routes!(leads::rotate_secret))
        .routes(routes!(leads::test_destination))
        .routes(routes!(leads::deliveries))
        .routes(routes!(leads::delivery))
        .routes(routes!(leads::replay))
        .routes(routes!(analytics::get))
        .routes(routes!(analytics::export))
        .routes(routes!(analytics::settings, analytics::save_settings))
}

/// The OpenAPI document.
pub fn document() -> utoipa::openapi::OpenApi {
    openapi_router().split_for_parts().1
}

/// The API router, with `/api/openapi.json`.
pub fn router() -> axum::Router<AdminState> {
    let (router, doc) = openapi_router().split_for_parts();
    let doc = std::sync::Arc::new(doc);
    router.route(
        "/api/openapi.json",
        get(move || {
            let doc = doc.clone();
            async move { Json(doc.as_ref().clone()) }
        }),
    )
}
