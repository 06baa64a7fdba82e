//! Leads (the list with its follow-up figures, one lead with its context and deliveries) and
//! the destinations they are sent to, as dashboard pages and forms.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};

use super::{Frame, PageError, Viewer, render};
use crate::AdminState;
use crate::error::AdminError;
use crate::manage::leads::{self, LeadFilter, LeadSettingsView, LeadUpdate};
use crate::manage::outbox::{self, DeliveryFilter, DestinationBody};
use crate::manage::sites;

async fn frame_page(
    state: &AdminState,
    viewer: &Viewer,
    key: &str,
    (title, active, template): (&str, &'static str, &str),
    status: StatusCode,
    values: Value,
) -> Result<Response, PageError> {
    let site = sites::get(state, &viewer.actor, key).await?;
    let all = sites::list(state, &viewer.actor).await?;
    let frame = Frame {
        viewer,
        title,
        active,
        site: Some(&site),
        sites: &all,
    };
    Ok(render(status, template, frame.with(values)))
}

/// `GET /dash/sites/{site}/leads`.
pub async fn list(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(key): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let text = |k: &str| {
        query
            .get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let filter = LeadFilter {
        q: text("q"),
        status: text("status"),
        overdue: text("overdue").map(|v| v == "1" || v == "on"),
        limit: Some(200),
        offset: None,
    };
    let found = leads::list(&state, &viewer.actor, &key, &filter).await?;
    let figures = leads::figures(&state, &viewer.actor, &key, 30).await?;
    let settings = leads::settings(&state, &viewer.actor, &key).await?;
    let members = state
        .accounts
        .members(&viewer.actor.site(&key)?)
        .await
        .map_err(AdminError::from)?;
    let names: HashMap<String, String> = members
        .iter()
        .map(|m| (m.id.to_string(), m.name.clone()))
        .collect();
    let pct = |n: u64| (n * 100).checked_div(figures.captured).unwrap_or(0);
    let funnel = vec![
        context! { label => "Captured", n => figures.captured, pct => 100 },
        context! { label => "Contacted", n => figures.contacted, pct => pct(figures.contacted) },
        context! { label => "In time", n => figures.contacted_in_time, pct => pct(figures.contacted_in_time) },
        context! { label => "Won", n => figures.won, pct => pct(figures.won) },
    ];
    let export = {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for k in ["q", "status", "overdue"] {
            if let Some(v) = text(k) {
                q.append_pair(k, &v);
            }
        }
        q.finish()
    };
    frame_page(
        &state,
        &viewer,
        &key,
        ("Leads", "leads", "leads.html"),
        StatusCode::OK,
        context! {
            leads => found,
            figures,
            funnel,
            median => figures.median_contact_secs.map(duration),
            follow_up_rate => format!("{:.0}%", figures.follow_up_rate * 100.0),
            limit => duration(i64::from(settings.follow_up_minutes) * 60),
            names,
            q => text("q").unwrap_or_default(),
            status => text("status").unwrap_or_default(),
            overdue => filter.overdue.unwrap_or(false),
            export,
            statuses => ["new", "contacted", "won", "lost"],
        },
    )
    .await
}

/// Seconds as people say them.
fn duration(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86_400 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s < 86_400 => format!("{:.1} h", s as f64 / 3600.0),
        s if s % 86_400 == 0 => format!("{} days", s / 86_400),
        s => format!("{:.1} days", s as f64 / 86_400.0),
    }
}

/// `GET /dash/sites/{site}/leads/{id}`.
pub async fn one(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path((key, id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    draw_one(&state, &viewer, &key, &id, StatusCode::OK, context! {}).await
}

async fn draw_one(
    state: &AdminState,
    viewer: &Viewer,
    key: &str,
    id: &str,
    status: StatusCode,
    extra: Value,
) -> Result<Response, PageError> {
    let detail = leads::get(state, &viewer.actor, key, id).await?;
    let members = state
        .accounts
        .members(&viewer.actor.site(key)?)
        .await
        .map_err(AdminError::from)?;
    let people: Vec<Value> = members
        .iter()
        .map(|m| context! { id => m.id, name => m.name.clone() })
        .collect();
    let title = format!("Lead: {}", detail.lead.email);
    frame_page(
        state,
        viewer,
        key,
        (&title, "leads", "lead.html"),
        status,
        context! {
            lead => detail.lead,
            deliveries => detail.deliveries,
            people,
            me => viewer.actor.user.id,
            statuses => ["new", "contacted", "won", "lost"],
            ..extra
        },
    )
    .await
}

/// `POST /dash/sites/{site}/leads/{id}`: status and owner.
pub async fn update(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path((key, id)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let owner = match form.get("owner").map(|s| s.trim()) {
        None => None,
        Some("") => Some(None),
        Some(o) => match o.parse::<i64>() {
            Ok(n) => Some(Some(n)),
            Err(_) => Some(Some(-1)),
        },
    };
    let body = LeadUpdate {
        status: form.get("status").cloned(),
        owner,
    };
    match leads::update(&state, &viewer.actor, &key, &id, body).await {
        Ok(_) => Ok(Redirect::to(&format!("/dash/sites/{key}/leads/{id}?saved=1")).into_response()),
        Err(e) => {
            let error = e.to_string();
            draw_one(&state, &viewer, &key, &id, e.status(), context! { error }).await
        }
    }
}

/// `GET /dash/sites/{site}/destinations`.
pub async fn destinations(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(key): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let notice = query.get("done").cloned();
    draw_destinations(&state, &viewer, &key, StatusCode::OK, context! { notice }).await
}

async fn draw_destinations(
    state: &AdminState,
    viewer: &Viewer,
    key: &str,
    status: StatusCode,
    extra: Value,
) -> Result<Response, PageError> {
    let is_admin = viewer.actor.require_admin().is_ok();
    let list = if is_admin {
        outbox::list(state, &viewer.actor, key).await?
    } else {
        Vec::new()
    };
    let names: HashMap<String, String> = list
        .iter()
        .map(|d| (d.id.clone(), d.name.clone()))
        .collect();
    let recent = outbox::deliveries(
        state,
        &viewer.actor,
        key,
        &DeliveryFilter {
            limit: Some(50),
            ..DeliveryFilter::default()
        },
    )
    .await?;
    let dead = outbox::deliveries(
        state,
        &viewer.actor,
        key,
        &DeliveryFilter {
            status: Some("dead".to_owned()),
            limit: Some(100),
            ..DeliveryFilter::default()
        },
    )
    .await?;
    let settings = leads::settings(state, &viewer.actor, key).await?;
    let topics = |kind: &str| -> Vec<&'static str> {
        outbox::topics_of(kind).iter().map(|t| t.as_str()).collect()
    };
    frame_page(
        state,
        viewer,
        key,
        ("Destinations", "destinations", "destinations.html"),
        status,
        context! {
            destinations => list,
            names,
            recent,
            dead,
            is_admin,
            follow_up_minutes => settings.follow_up_minutes,
            webhook_topics => topics("webhook"),
            email_topics => topics("email"),
            slack_topics => topics("slack"),
            ..extra
        },
    )
    .await
}

fn body_of(form: &HashMap<String, String>) -> DestinationBody {
    let kind = form.get("kind").cloned().unwrap_or_default();
    let topics = outbox::topics_of(&kind)
        .iter()
        .map(|t| t.as_str())
        .filter(|t| form.get(&format!("topic:{t}")).is_some())
        .map(str::to_owned)
        .collect();
    DestinationBody {
        name: form.get("name").cloned().unwrap_or_default(),
        kind,
        url: form.get("url").cloned(),
        to: form
            .get("to")
            .map(|t| {
                t.split([',', '\n'])
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        confirm_visitor: form.get("confirm_visitor").is_some(),
        topics,
        enabled: true,
    }
}

/// `POST /dash/sites/{site}/destinations`: a new destination.
pub async fn create_destination(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(key): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, PageError> {
    match outbox::create(&state, &viewer.actor, &key, body_of(&form)).await {
        Ok(d) => Ok(Redirect::to(&format!(
            "/dash/sites/{key}/destinations?done={}#d-{}",
            urlencode(&format!("Added {}.", d.name)),
            d.id
        ))
        .into_response()),
        Err(e) => {
            let (error, error_field) = (e.to_string(), e.field_name().map(str::to_owned));
            let kind = form.get("kind").cloned().unwrap_or_default();
            draw_destinations(
                &state,
                &viewer,
                &key,
                e.status(),
                context! { error, error_field, kind },
            )
            .await
        }
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `POST /dash/sites/{site}/destinations/{id}/{action}`: rotate, test, enable, disable, delete.
pub async fn destination_action(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path((key, id, action)): Path<(String, String, String)>,
) -> Result<Response, PageError> {
    let actor = &viewer.actor;
    let done: Result<String, AdminError> = match action.as_str() {
        "rotate" => outbox::rotate_secret(&state, actor, &key, &id)
            .await
            .map(|d| {
                format!(
                    "{} has a new secret; the old one signs beside it for 24 hours.",
                    d.name
                )
            }),
        "test" => outbox::test(&state, actor, &key, &id)
            .await
            .map(|d| format!("A signed sample is on its way ({}).", d.id)),
        "enable" | "disable" => match outbox::get(&state, actor, &key, &id).await {
            Ok(d) => {
                let body = DestinationBody {
                    name: d.name.clone(),
                    kind: d.kind.clone(),
                    url: d.url.clone(),
                    to: d.to.clone(),
                    confirm_visitor: d.confirm_visitor,
                    topics: d.topics.clone(),
                    enabled: action == "enable",
                };
                outbox::update(&state, actor, &key, &id, body)
                    .await
                    .map(|d| format!("{} is {}.", d.name, if d.enabled { "on" } else { "off" }))
            }
            Err(e) => Err(e),
        },
        "delete" => outbox::delete(&state, actor, &key, &id)
            .await
            .map(|()| "Removed.".to_owned()),
        other => Err(AdminError::NotFound(format!("no action {other:?}"))),
    };
    match done {
        Ok(notice) => Ok(Redirect::to(&format!(
            "/dash/sites/{key}/destinations?done={}",
            urlencode(&notice)
        ))
        .into_response()),
        Err(e) => {
            let error = e.to_string();
            draw_destinations(&state, &viewer, &key, e.status(), context! { error }).await
        }
    }
}

/// `POST /dash/sites/{site}/deliveries/{id}/replay`.
pub async fn replay(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path((key, id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    match outbox::replay(&state, &viewer.actor, &key, &id).await {
        Ok(d) => Ok(Redirect::to(&format!(
            "/dash/sites/{key}/destinations?done={}",
            urlencode(&format!("{} will be tried again now.", d.id))
        ))
        .into_response()),
        Err(e) => {
            let error = e.to_string();
            draw_destinations(&state, &viewer, &key, e.status(), context! { error }).await
        }
    }
}

/// `POST /dash/sites/{site}/lead-settings`: the follow-up time limit.
pub async fn save_settings(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(key): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let raw = form
        .get("follow_up_minutes")
        .map(|s| s.trim())
        .unwrap_or("");
    let result = match raw.parse::<u32>() {
        Ok(minutes) => {
            let current = leads::settings(&state, &viewer.actor, &key).await?;
            leads::save_settings(
                &state,
                &viewer.actor,
                &key,
                LeadSettingsView {
                    follow_up_minutes: minutes,
                    wording: current.wording,
                },
            )
            .await
        }
        Err(_) => Err(AdminError::field(
            "follow_up_minutes",
            format!("{raw:?} is not a whole number of minutes"),
        )),
    };
    match result {
        Ok(_) => Ok(Redirect::to(&format!(
            "/dash/sites/{key}/destinations?done={}",
            urlencode("Saved the follow-up time limit.")
        ))
        .into_response()),
        Err(e) => {
            let (error, error_field) = (e.to_string(), e.field_name().map(str::to_owned));
            draw_destinations(
                &state,
                &viewer,
                &key,
                e.status(),
                context! { error, error_field },
            )
            .await
        }
    }
}
