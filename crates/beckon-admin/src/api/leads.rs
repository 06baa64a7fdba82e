//! `/api/v1/sites/{site}/leads…`, `/destinations…` and `/deliveries…`: leads and their
//! follow-up, where they are sent, and every sending.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::Errors;
use super::extract::{Body, Params, Segments};
use crate::AdminState;
use crate::auth::Actor;
use crate::error::AdminResult;
use crate::manage::leads::{
    self, FiguresView, LeadDetail, LeadFilter, LeadSettingsView, LeadUpdate, LeadView, NewLeadBody,
};
use crate::manage::outbox::{
    self, DeliveryDetail, DeliveryFilter, DeliveryView, DestinationBody, DestinationView,
};

/// A site's leads, newest first; `q` searches the address, name and question.
#[utoipa::path(get, path = "/api/v1/sites/{site}/leads", tag = "leads", params(
    ("site" = String, Path, description = "The site key"), LeadFilter),
    responses((status = 200, body = Vec<LeadView>), Errors))]
pub async fn list(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
    Params(filter): Params<LeadFilter>,
) -> AdminResult<Json<Vec<LeadView>>> {
    Ok(Json(leads::list(&state, &actor, &site, &filter).await?))
}

/// Captures a lead by hand (announced to the site's destinations like any other).
#[utoipa::path(post, path = "/api/v1/sites/{site}/leads", tag = "leads", request_body = NewLeadBody,
    params(("site" = String, Path, description = "The site key")),
    responses((status = 201, body = LeadView), Errors))]
pub async fn create(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
    Body(body): Body<NewLeadBody>,
) -> AdminResult<(StatusCode, Json<LeadView>)> {
    Ok((
        StatusCode::CREATED,
        Json(leads::create(&state, &actor, &site, body).await?),
    ))
}

/// The leads as CSV (the same filter as the list; at most 100,000 rows).
#[utoipa::path(get, path = "/api/v1/sites/{site}/leads.csv", tag = "leads", params(
    ("site" = String, Path, description = "The site key"), LeadFilter),
    responses((status = 200, content_type = "text/csv", body = String), Errors))]
pub async fn export(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
    Params(filter): Params<LeadFilter>,
) -> AdminResult<impl IntoResponse> {
    let text = leads::csv(&state, &actor, &site, &filter).await?;
    let name = format!("attachment; filename=\"leads-{site}.csv\"");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        text,
    ))
}

/// One lead, with every delivery that announced it.
#[utoipa::path(get, path = "/api/v1/sites/{site}/leads/{id}", tag = "leads", params(
    ("site" = String, Path, description = "The site key"),
    ("id" = String, Path, description = "The lead id")),
    responses((status = 200, body = LeadDetail), Errors))]
pub async fn get(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, id)): Segments<(String, String)>,
) -> AdminResult<Json<LeadDetail>> {
    Ok(Json(leads::get(&state, &actor, &site, &id).await?))
}

/// Changes a lead's status or owner (announced as `lead.updated`).
#[utoipa::path(patch, path = "/api/v1/sites/{site}/leads/{id}", tag = "leads", request_body = LeadUpdate,
    params(("site" = String, Path, description = "The site key"),
        ("id" = String, Path, description = "The lead id")),
    responses((status = 200, body = LeadView), Errors))]
pub async fn update(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, id)): Segments<(String, String)>,
    Body(body): Body<LeadUpdate>,
) -> AdminResult<Json<LeadView>> {
    Ok(Json(leads::update(&state, &actor, &site, &id, body).await?))
}

/// The range of the follow-up figures.
#[derive(Debug, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct Days {
    /// The last this many days (1–3650, 30 by default).
    #[param(minimum = 1, maximum = 3650)]
    pub days: Option<u32>,
}

/// How the site follows its leads up: the follow-up rate and the time to first contact.
#[utoipa::path(get, path = "/api/v1/sites/{site}/lead-figures", tag = "leads", params(
    ("site" = String, Path, description = "The site key"), Days),
    responses((status = 200, body = FiguresView), Errors))]
pub async fn figures(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
    Params(days): Params<Days>,
) -> AdminResult<Json<FiguresView>> {
    Ok(Json(
        leads::figures(&state, &actor, &site, days.days.unwrap_or(30)).await?,
    ))
}

/// The site's follow-up settings: its time limit and the e-mails' wording.
#[utoipa::path(get, path = "/api/v1/sites/{site}/lead-settings", tag = "leads", params(
    ("site" = String, Path, description = "The site key")),
    responses((status = 200, body = LeadSettingsView), Errors))]
pub async fn settings(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
) -> AdminResult<Json<LeadSettingsView>> {
    Ok(Json(leads::settings(&state, &actor, &site).await?))
}

/// Replaces the site's follow-up settings (administrators).
#[utoipa::path(put, path = "/api/v1/sites/{site}/lead-settings", tag = "leads",
    request_body = LeadSettingsView, params(("site" = String, Path, description = "The site key")),
    responses((status = 200, body = LeadSettingsView), Errors))]
pub async fn save_settings(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
    Body(body): Body<LeadSettingsView>,
) -> AdminResult<Json<LeadSettingsView>> {
    Ok(Json(
        leads::save_settings(&state, &actor, &site, body).await?,
    ))
}

/// The site's destinations (administrators: they hold the signing secrets).
#[utoipa::path(get, path = "/api/v1/sites/{site}/destinations", tag = "destinations", params(
    ("site" = String, Path, description = "The site key")),
    responses((status = 200, body = Vec<DestinationView>), Errors))]
pub async fn destinations(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
) -> AdminResult<Json<Vec<DestinationView>>> {
    Ok(Json(outbox::list(&state, &actor, &site).await?))
}

/// Makes a destination: a webhook (signed to the Standard Webhooks specification, with a
/// secret of its own), e-mail to the team, or a Slack-compatible team chat.
#[utoipa::path(post, path = "/api/v1/sites/{site}/destinations", tag = "destinations",
    request_body = DestinationBody, params(("site" = String, Path, description = "The site key")),
    responses((status = 201, body = DestinationView), Errors))]
pub async fn create_destination(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
    Body(body): Body<DestinationBody>,
) -> AdminResult<(StatusCode, Json<DestinationView>)> {
    Ok((
        StatusCode::CREATED,
        Json(outbox::create(&state, &actor, &site, body).await?),
    ))
}

/// One destination.
#[utoipa::path(get, path = "/api/v1/sites/{site}/destinations/{id}", tag = "destinations", params(
    ("site" = String, Path, description = "The site key"),
    ("id" = String, Path, description = "The destination id")),
    responses((status = 200, body = DestinationView), Errors))]
pub async fn destination(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, id)): Segments<(String, String)>,
) -> AdminResult<Json<DestinationView>> {
    Ok(Json(outbox::get(&state, &actor, &site, &id).await?))
}

/// Changes a destination (its kind and secret stay).
#[utoipa::path(put, path = "/api/v1/sites/{site}/destinations/{id}", tag = "destinations",
    request_body = DestinationBody, params(("site" = String, Path, description = "The site key"),
        ("id" = String, Path, description = "The destination id")),
    responses((status = 200, body = DestinationView), Errors))]
pub async fn update_destination(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, id)): Segments<(String, String)>,
    Body(body): Body<DestinationBody>,
) -> AdminResult<Json<DestinationView>> {
    Ok(Json(
        outbox::update(&state, &actor, &site, &id, body).await?,
    ))
}

/// Removes a destination; what was pending for it dies.
#[utoipa::path(delete, path = "/api/v1/sites/{site}/destinations/{id}", tag = "destinations",
    params(("site" = String, Path, description = "The site key"),
        ("id" = String, Path, description = "The destination id")),
    responses((status = 204), Errors))]
pub async fn delete_destination(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, id)): Segments<(String, String)>,
) -> AdminResult<StatusCode> {
    outbox::delete(&state, &actor, &site, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new signing secret for a webhook; the old one signs beside it for 24 hours.
#[utoipa::path(post, path = "/api/v1/sites/{site}/destinations/{id}/rotate-secret",
    tag = "destinations", params(("site" = String, Path, description = "The site key"),
        ("id" = String, Path, description = "The destination id")),
    responses((status = 200, body = DestinationView), Errors))]
pub async fn rotate_secret(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, id)): Segments<(String, String)>,
) -> AdminResult<Json<DestinationView>> {
    Ok(Json(
        outbox::rotate_secret(&state, &actor, &site, &id).await?,
    ))
}

/// Sends a signed sample (`test.sample`) to the destination now.
#[utoipa::path(post, path = "/api/v1/sites/{site}/destinations/{id}/test", tag = "destinations",
    params(("site" = String, Path, description = "The site key"),
        ("id" = String, Path, description = "The destination id")),
    responses((status = 202, body = DeliveryView), Errors))]
pub async fn test_destination(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, id)): Segments<(String, String)>,
) -> AdminResult<(StatusCode, Json<DeliveryView>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(outbox::test(&state, &actor, &site, &id).await?),
    ))
}

/// The site's deliveries, newest first.
#[utoipa::path(get, path = "/api/v1/sites/{site}/deliveries", tag = "destinations", params(
    ("site" = String, Path, description = "The site key"), DeliveryFilter),
    responses((status = 200, body = Vec<DeliveryView>), Errors))]
pub async fn deliveries(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
    Params(filter): Params<DeliveryFilter>,
) -> AdminResult<Json<Vec<DeliveryView>>> {
    Ok(Json(
        outbox::deliveries(&state, &actor, &site, &filter).await?,
    ))
}

/// One delivery, with its body and every try.
#[utoipa::path(get, path = "/api/v1/sites/{site}/deliveries/{id}", tag = "destinations", params(
    ("site" = String, Path, description = "The site key"),
    ("id" = String, Path, description = "The delivery id")),
    responses((status = 200, body = DeliveryDetail), Errors))]
pub async fn delivery(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, id)): Segments<(String, String)>,
) -> AdminResult<Json<DeliveryDetail>> {
    Ok(Json(outbox::delivery(&state, &actor, &site, &id).await?))
}

/// Tries a delivery again now (a dead one, by hand), under the same id.
#[utoipa::path(post, path = "/api/v1/sites/{site}/deliveries/{id}/replay", tag = "destinations",
    params(("site" = String, Path, description = "The site key"),
        ("id" = String, Path, description = "The delivery id")),
    responses((status = 200, body = DeliveryView), Errors))]
pub async fn replay(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, id)): Segments<(String, String)>,
) -> AdminResult<Json<DeliveryView>> {
    Ok(Json(outbox::replay(&state, &actor, &site, &id).await?))
}
