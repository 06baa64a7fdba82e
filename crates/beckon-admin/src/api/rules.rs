//! `/api/v1/sites/{site}/rules`.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::Errors;
use super::extract::{Body, Params, Segments};
use crate::AdminState;
use crate::auth::Actor;
use crate::error::AdminResult;
use crate::manage::backtest::{BacktestRequest, BacktestView};
use crate::manage::rules::{
    self, PreviewDrawn, PreviewRequest, Restore, RuleSave, RuleVersion, RuleView, StatusChange,
};
use crate::manage::{Page, Paging};

/// A page of a site's rules, with the rule-set version they are at.
#[derive(Serialize, ToSchema)]
pub struct RulesPage {
    /// The rule-set version: send it back as `base` to save against it.
    pub version: u64,
    /// The rules, in the order the engine tries them.
    pub rules: Page<RuleView>,
}

/// One rule at a version.
#[derive(Serialize, ToSchema)]
pub struct RuleAt {
    /// The rule-set version.
    pub version: u64,
    /// The rule as in a rule file.
    #[schema(value_type = Object)]
    pub rule: beckon_engine::rules::RuleSpec,
}

/// The version a change made.
#[derive(Serialize, ToSchema)]
pub struct Saved {
    /// The new rule-set version; live sessions decide with it from their next event.
    pub version: u64,
}

/// A rule's history.
#[derive(Serialize, ToSchema)]
pub struct History {
    /// Its changes, newest first.
    pub versions: Vec<RuleVersion>,
}

/// The site's rules with their last 7 days' numbers, in the order the engine tries them.
#[utoipa::path(get, path = "/api/v1/sites/{site}/rules", tag = "rules", params(
    ("site" = String, Path, description = "The site key"), Paging),
    responses((status = 200, body = RulesPage), Errors))]
pub async fn list(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
    Params(paging): Params<Paging>,
) -> AdminResult<Json<RulesPage>> {
    let view = rules::list(&state, &actor, &site).await?;
    // The engine's order, keyed for paging by position.
    let indexed: Vec<(usize, RuleView)> = view.rules.into_iter().enumerate().collect();
    let page = paging.apply(indexed, |(i, _)| format!("{i:06}"))?;
    Ok(Json(RulesPage {
        version: view.version,
        rules: Page {
            items: page.items.into_iter().map(|(_, r)| r).collect(),
            next: page.next,
        },
    }))
}

/// One rule.
#[utoipa::path(get, path = "/api/v1/sites/{site}/rules/{rule}", tag = "rules", params(
    ("site" = String, Path, description = "The site key"),
    ("rule" = String, Path, description = "The rule id")),
    responses((status = 200, body = RuleAt), Errors))]
pub async fn get(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, rule)): Segments<(String, String)>,
) -> AdminResult<Json<RuleAt>> {
    let (version, rule) = rules::get(&state, &actor, &site, &rule).await?;
    Ok(Json(RuleAt { version, rule }))
}

/// Creates or replaces a rule. The whole set must compile; errors name the field.
#[utoipa::path(put, path = "/api/v1/sites/{site}/rules/{rule}", tag = "rules",
    request_body = RuleSave, params(
    ("site" = String, Path, description = "The site key"),
    ("rule" = String, Path, description = "The rule id")),
    responses((status = 200, body = Saved), Errors))]
pub async fn save(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, rule)): Segments<(String, String)>,
    Body(body): Body<RuleSave>,
) -> AdminResult<Json<Saved>> {
    let version = rules::save(&state, &actor, &site, &rule, body).await?;
    Ok(Json(Saved { version }))
}

/// Deletes a draft. A rule that ran is archived instead (`POST …/status`).
#[utoipa::path(delete, path = "/api/v1/sites/{site}/rules/{rule}", tag = "rules", params(
    ("site" = String, Path, description = "The site key"),
    ("rule" = String, Path, description = "The rule id")),
    responses((status = 200, body = Saved), Errors))]
pub async fn delete(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, rule)): Segments<(String, String)>,
) -> AdminResult<Json<Saved>> {
    let version = rules::delete(&state, &actor, &site, &rule).await?;
    Ok(Json(Saved { version }))
}

/// Launches, pauses, archives a rule or moves it back to draft; takes effect at once.
#[utoipa::path(post, path = "/api/v1/sites/{site}/rules/{rule}/status", tag = "rules",
    request_body = StatusChange, params(
    ("site" = String, Path, description = "The site key"),
    ("rule" = String, Path, description = "The rule id")),
    responses((status = 200, body = Saved), Errors))]
pub async fn set_status(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, rule)): Segments<(String, String)>,
    Body(body): Body<StatusChange>,
) -> AdminResult<Json<Saved>> {
    let version = rules::set_status(&state, &actor, &site, &rule, body).await?;
    Ok(Json(Saved { version }))
}

/// Every change of a rule: who, when, what, and the rule as it was.
#[utoipa::path(get, path = "/api/v1/sites/{site}/rules/{rule}/history", tag = "rules", params(
    ("site" = String, Path, description = "The site key"),
    ("rule" = String, Path, description = "The rule id")),
    responses((status = 200, body = History), Errors))]
pub async fn history(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, rule)): Segments<(String, String)>,
) -> AdminResult<Json<History>> {
    let versions = rules::history(&state, &actor, &site, &rule).await?;
    Ok(Json(History { versions }))
}

/// Brings back the form a rule had at a version (its status stays as it is).
#[utoipa::path(post, path = "/api/v1/sites/{site}/rules/{rule}/restore", tag = "rules",
    request_body = Restore, params(
    ("site" = String, Path, description = "The site key"),
    ("rule" = String, Path, description = "The rule id")),
    responses((status = 200, body = Saved), Errors))]
pub async fn restore(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, rule)): Segments<(String, String)>,
    Body(body): Body<Restore>,
) -> AdminResult<Json<Saved>> {
    let version = rules::restore(&state, &actor, &site, &rule, body).await?;
    Ok(Json(Saved { version }))
}

/// Draws a draft rule's message for a sample visitor with the real widget, in a frame.
#[utoipa::path(post, path = "/api/v1/sites/{site}/preview", tag = "rules",
    request_body = PreviewRequest,
    params(("site" = String, Path, description = "The site key")),
    responses((status = 200, body = PreviewDrawn), Errors))]
pub async fn preview(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
    Body(body): Body<PreviewRequest>,
) -> AdminResult<Json<PreviewDrawn>> {
    Ok(Json(rules::preview(&state, &actor, &site, body).await?))
}

/// Backtests a draft rule: the last days of the site's traffic replayed with the draft beside
/// the rules in force. How often it would have fired, for whom, on which pages, which live
/// rules it would have displaced and what would have held it back. Writes nothing.
#[utoipa::path(post, path = "/api/v1/sites/{site}/backtest", tag = "rules",
    request_body = BacktestRequest, params(("site" = String, Path, description = "The site key")),
    responses((status = 200, body = BacktestView), Errors))]
pub async fn backtest(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
    Body(body): Body<BacktestRequest>,
) -> AdminResult<Json<BacktestView>> {
    Ok(Json(
        crate::manage::backtest::run(&state, &actor, &site, body).await?,
    ))
}
