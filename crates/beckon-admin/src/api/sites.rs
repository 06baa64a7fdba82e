//! `/api/v1/sites`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::Errors;
use super::extract::{Body, Params, Segments};
use crate::AdminState;
use crate::auth::Actor;
use crate::error::AdminResult;
use crate::manage::sites::{NewSite, SiteChange, SiteView, SiteWithSecret};
use crate::manage::{Page, Paging, sites};

/// The sites the caller belongs to.
#[utoipa::path(get, path = "/api/v1/sites", tag = "sites", params(Paging),
    responses((status = 200, body = Page<SiteView>), Errors))]
pub async fn list(
    State(state): State<AdminState>,
    actor: Actor,
    Params(paging): Params<Paging>,
) -> AdminResult<Json<Page<SiteView>>> {
    let all = sites::list(&state, &actor).await?;
    Ok(Json(paging.apply(all, |s| s.key.clone())?))
}

/// Creates a site; the caller becomes its first member. The answer holds the secret key, once.
#[utoipa::path(post, path = "/api/v1/sites", tag = "sites", request_body = NewSite,
    responses((status = 201, body = SiteWithSecret), Errors))]
pub async fn create(
    State(state): State<AdminState>,
    actor: Actor,
    Body(new): Body<NewSite>,
) -> AdminResult<(StatusCode, Json<SiteWithSecret>)> {
    Ok((
        StatusCode::CREATED,
        Json(sites::create(&state, &actor, new).await?),
    ))
}

/// One site.
#[utoipa::path(get, path = "/api/v1/sites/{site}", tag = "sites",
    params(("site" = String, Path, description = "The site key")),
    responses((status = 200, body = SiteView), Errors))]
pub async fn get(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
) -> AdminResult<Json<SiteView>> {
    Ok(Json(sites::get(&state, &actor, &site).await?))
}

/// Changes a site's name, origins or guardrail policy; takes effect at once.
#[utoipa::path(patch, path = "/api/v1/sites/{site}", tag = "sites", request_body = SiteChange,
    params(("site" = String, Path, description = "The site key")),
    responses((status = 200, body = SiteView), Errors))]
pub async fn update(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
    Body(change): Body<SiteChange>,
) -> AdminResult<Json<SiteView>> {
    Ok(Json(sites::update(&state, &actor, &site, change).await?))
}

/// Replaces the site's secret key; the old one stops working at once. The answer holds the new
/// key, once.
#[utoipa::path(post, path = "/api/v1/sites/{site}/secret", tag = "sites",
    params(("site" = String, Path, description = "The site key")),
    responses((status = 200, body = SiteWithSecret), Errors))]
pub async fn rotate_secret(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
) -> AdminResult<Json<SiteWithSecret>> {
    Ok(Json(sites::rotate_secret(&state, &actor, &site).await?))
}
