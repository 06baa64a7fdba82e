//! `/api/v1/sites/{site}/analytics…`: lift against the holdout per rule and overall, the
//! sample-ratio check, the cost in annoyance and in model use, as JSON and CSV; and the site's
//! analytics settings.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::Errors;
use super::extract::{Body, Params, Segments};
use crate::AdminState;
use crate::auth::Actor;
use crate::error::AdminResult;
use crate::manage::analytics::{self, AnalyticsSettingsView, AnalyticsView, PeriodQuery};

/// A site's analytics over a period (the last 30 days by default): each rule's and every
/// rule's figures in both arms, the relative lift with its 95% interval (fixed-horizon and
/// always-valid), the sample-ratio check, the guardrail metrics, the flags, lift over time and
/// what the model cost. Automated visitors are in no number.
#[utoipa::path(get, path = "/api/v1/sites/{site}/analytics", tag = "analytics", params(
    ("site" = String, Path, description = "The site key"), PeriodQuery),
    responses((status = 200, body = AnalyticsView), Errors))]
pub async fn get(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
    Params(query): Params<PeriodQuery>,
) -> AdminResult<Json<AnalyticsView>> {
    Ok(Json(analytics::get(&state, &actor, &site, &query).await?))
}

/// The same analytics as CSV: one row per rule and one (`*`) for every rule together.
#[utoipa::path(get, path = "/api/v1/sites/{site}/analytics.csv", tag = "analytics", params(
    ("site" = String, Path, description = "The site key"), PeriodQuery),
    responses((status = 200, content_type = "text/csv", body = String), Errors))]
pub async fn export(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
    Params(query): Params<PeriodQuery>,
) -> AdminResult<impl IntoResponse> {
    let view = analytics::get(&state, &actor, &site, &query).await?;
    let text = analytics::csv(&view)?;
    let name = format!("attachment; filename=\"analytics-{site}.csv\"");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        text,
    ))
}

/// The site's analytics settings: the attribution window, the sample before flags, the
/// automatic pause and the model's prices.
#[utoipa::path(get, path = "/api/v1/sites/{site}/analytics-settings", tag = "analytics", params(
    ("site" = String, Path, description = "The site key")),
    responses((status = 200, body = AnalyticsSettingsView), Errors))]
pub async fn settings(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
) -> AdminResult<Json<AnalyticsSettingsView>> {
    Ok(Json(analytics::settings(&state, &actor, &site).await?))
}

/// Replaces the site's analytics settings (administrators).
#[utoipa::path(put, path = "/api/v1/sites/{site}/analytics-settings", tag = "analytics",
    request_body = AnalyticsSettingsView, params(("site" = String, Path, description = "The site key")),
    responses((status = 200, body = AnalyticsSettingsView), Errors))]
pub async fn save_settings(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
    Body(body): Body<AnalyticsSettingsView>,
) -> AdminResult<Json<AnalyticsSettingsView>> {
    Ok(Json(
        analytics::save_settings(&state, &actor, &site, body).await?,
    ))
}
