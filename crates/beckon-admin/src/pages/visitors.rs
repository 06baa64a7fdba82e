//! Live visitors and the session explorer.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use beckon_engine::Timestamp;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::{Frame, PageError, Viewer, render};
use crate::AdminState;
use crate::manage::visitors::{self, local};
use crate::manage::{rules, sites};

/// `GET /dash/sites/{site}/visitors`.
pub async fn list(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(key): Path<String>,
) -> Result<Response, PageError> {
    let site = sites::get(&state, &viewer.actor, &key).await?;
    let all = sites::list(&state, &viewer.actor).await?;
    let live = visitors::live(&state, &viewer.actor, &key).await?;
    let frame = Frame {
        viewer: &viewer,
        title: "Visitors",
        active: "visitors",
        site: Some(&site),
        sites: &all,
    };
    Ok(render(
        StatusCode::OK,
        "visitors.html",
        frame.with(context! { live, minutes => visitors::LIVE_MINUTES }),
    ))
}

/// The "why didn't it fire?" question.
#[derive(Deserialize)]
pub struct Ask {
    rule: Option<String>,
    at: Option<String>,
}

/// A timeline step, with its times drawn in the site's zone.
#[derive(Serialize)]
struct Drawn {
    at: String,
    step: visitors::TimelineStep,
    decisions: Vec<(String, visitors::DecisionLine)>,
}

/// `GET /dash/sites/{site}/visitors/{visitor}?rule=&at=`.
pub async fn explore(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path((key, visitor)): Path<(String, String)>,
    Query(ask): Query<Ask>,
) -> Result<Response, PageError> {
    let site = sites::get(&state, &viewer.actor, &key).await?;
    let all = sites::list(&state, &viewer.actor).await?;
    let timeline = visitors::timeline(&state, &viewer.actor, &key, &visitor).await?;
    let rule_ids: Vec<String> = rules::list(&state, &viewer.actor, &key)
        .await?
        .rules
        .into_iter()
        .map(|r| r.rule.id)
        .collect();
    let last = timeline.last().map_or(0, |s| s.at_ms);
    let (why, ask_error) = match (&ask.rule, &ask.at) {
        (Some(rule), Some(at)) if !rule.is_empty() && !at.is_empty() => {
            match visitors::parse_local(&site.policy, at, Timestamp::from_millis(last)) {
                Ok(t) => (Some(visitors::why(&timeline, &site.policy, rule, t)), None),
                Err(e) => (None, Some(e.to_string())),
            }
        }
        _ => (None, None),
    };
    let drawn: Vec<Drawn> = timeline
        .into_iter()
        .rev()
        .map(|step| Drawn {
            at: local(&site.policy, Timestamp::from_millis(step.at_ms)),
            decisions: step
                .decisions
                .iter()
                .map(|d| {
                    (
                        local(&site.policy, Timestamp::from_millis(d.at_ms)),
                        d.clone(),
                    )
                })
                .collect(),
            step,
        })
        .collect();
    let frame = Frame {
        viewer: &viewer,
        title: "Session explorer",
        active: "visitors",
        site: Some(&site),
        sites: &all,
    };
    Ok(render(
        StatusCode::OK,
        "explorer.html",
        frame.with(context! {
            visitor, steps => drawn, rule_ids, why, ask_error,
            asked_rule => ask.rule, asked_at => ask.at,
        }),
    ))
}
