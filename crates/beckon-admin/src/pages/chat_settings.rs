//! The chat's settings for a site (launcher, pre-chat form, scope, departments, times, canned
//! replies) and the viewer's own desk profile, as dashboard forms.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};

use super::{Frame, PageError, Viewer, render};
use crate::AdminState;
use crate::error::{AdminError, AdminResult};
use crate::manage::conversations::{self, DepartmentView, ProfileView, SettingsView};
use crate::manage::sites;

/// `GET /dash/sites/{site}/chat`.
pub async fn page(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(key): Path<String>,
) -> Result<Response, PageError> {
    let settings = conversations::settings(&state, &viewer.actor, &key).await?;
    draw(
        &state,
        &viewer,
        &key,
        StatusCode::OK,
        &settings,
        context! {},
    )
    .await
}

async fn draw(
    state: &AdminState,
    viewer: &Viewer,
    key: &str,
    status: StatusCode,
    settings: &SettingsView,
    extra: Value,
) -> Result<Response, PageError> {
    let site = sites::get(state, &viewer.actor, key).await?;
    let all = sites::list(state, &viewer.actor).await?;
    let profile = state
        .conversations
        .agent_profiles(&site_id(viewer, key)?)
        .await
        .map_err(AdminError::from)?
        .into_iter()
        .find(|p| p.user == viewer.actor.user.id)
        .unwrap_or_default();
    let departments: Vec<String> = settings
        .departments
        .iter()
        .map(|d| format!("{}: {}", d.id, d.name))
        .collect();
    let canned: Vec<String> = settings
        .canned
        .iter()
        .map(|c| format!("{}: {}", c.shortcut, c.text))
        .collect();
    let frame = Frame {
        viewer,
        title: "Chat settings",
        active: "chat",
        site: Some(&site),
        sites: &all,
    };
    Ok(render(
        status,
        "chat_settings.html",
        frame.with(context! {
            chat => settings,
            departments => departments.join("\n"),
            canned => canned.join("\n"),
            topics => settings.prechat_topics.join(", "),
            profile => context! {
                capacity => if profile.capacity == 0 { 3 } else { profile.capacity },
                departments => profile.departments.join(", "),
                languages => profile.languages.join(", "),
            },
            is_admin => viewer.actor.require_admin().is_ok(),
            ..extra
        }),
    ))
}

fn site_id(viewer: &Viewer, key: &str) -> AdminResult<beckon_engine::SiteId> {
    viewer.actor.site(key)
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// "id: text" lines; a line without ": " is an error naming it.
fn pairs(field: &str, text: &str) -> AdminResult<Vec<(String, String)>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, line)| match line.split_once(':') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                Ok((k.trim().to_owned(), v.trim().to_owned()))
            }
            _ => Err(AdminError::field(
                field,
                format!("line {}: write it as \"key: text\"", i + 1),
            )),
        })
        .collect()
}

fn number(form: &HashMap<String, String>, field: &str) -> AdminResult<u32> {
    let raw = form.get(field).map(|s| s.trim()).unwrap_or("");
    raw.parse()
        .map_err(|_| AdminError::field(field, format!("{raw:?} is not a whole number")))
}

fn from_form(form: &HashMap<String, String>) -> AdminResult<SettingsView> {
    let on = |name: &str| form.get(name).is_some_and(|v| v == "on" || v == "true");
    let text = |name: &str| form.get(name).cloned().unwrap_or_default();
    Ok(SettingsView {
        launcher: on("launcher"),
        title: text("title"),
        welcome: text("welcome"),
        prechat_name: on("prechat_name"),
        prechat_email: on("prechat_email"),
        prechat_topics: list(&text("prechat_topics")),
        presales_only: on("presales_only"),
        departments: pairs("departments", &text("departments"))?
            .into_iter()
            .map(|(id, name)| DepartmentView { id, name })
            .collect(),
        accept_seconds: number(form, "accept_seconds")?,
        wait_seconds: number(form, "wait_seconds")?,
        inactivity_minutes: number(form, "inactivity_minutes")?,
        canned: pairs("canned", &text("canned"))?
            .into_iter()
            .map(|(shortcut, text)| conversations::CannedReply { shortcut, text })
            .collect(),
    })
}

/// `POST /dash/sites/{site}/chat`.
pub async fn save(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(key): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let result = match from_form(&form) {
        Ok(view) => conversations::save_settings(&state, &viewer.actor, &key, view).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/dash/sites/{key}/chat?saved=1")).into_response()),
        Err(e) => {
            let current = conversations::settings(&state, &viewer.actor, &key).await?;
            let (error, error_field) = (e.to_string(), e.field_name().map(str::to_owned));
            draw(
                &state,
                &viewer,
                &key,
                e.status(),
                &current,
                context! { error, error_field },
            )
            .await
        }
    }
}

/// `POST /dash/sites/{site}/chat/profile`.
pub async fn save_profile(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(key): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let result = match number(&form, "capacity") {
        Ok(capacity) => {
            let view = ProfileView {
                capacity,
                departments: list(form.get("departments").map_or("", String::as_str)),
                languages: list(form.get("languages").map_or("", String::as_str))
                    .into_iter()
                    .map(|l| l.to_lowercase())
                    .collect(),
            };
            conversations::save_profile(&state, &viewer.actor, &key, view).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/dash/sites/{key}/chat?saved=1")).into_response()),
        Err(e) => {
            let current = conversations::settings(&state, &viewer.actor, &key).await?;
            let (profile_error, error_field) = (e.to_string(), e.field_name().map(str::to_owned));
            draw(
                &state,
                &viewer,
                &key,
                e.status(),
                &current,
                context! { profile_error, error_field },
            )
            .await
        }
    }
}
