//! Sites: the list and a new one, a site's rules, its install snippet and its settings.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use beckon_engine::Policy;
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Frame, PageError, Viewer, own_page, render};
use crate::AdminState;
use crate::error::AdminError;
use crate::manage::rules;
use crate::manage::sites::{self, NewSite, SiteChange, SiteView};

/// Splits a comma- or line-separated list.
fn list_field(text: &str) -> Vec<String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `GET /dash/`: the first site's rules, or the sites page when there is none.
pub async fn home(State(state): State<AdminState>, viewer: Viewer) -> Result<Response, PageError> {
    let all = sites::list(&state, &viewer.actor).await?;
    Ok(match all.first() {
        Some(site) => Redirect::to(&format!("/dash/sites/{}/rules", site.key)).into_response(),
        None => Redirect::to("/dash/sites").into_response(),
    })
}

/// The site switcher's target.
#[derive(Deserialize)]
pub struct Switch {
    site: String,
}

/// `GET /dash/switch?site=…`.
pub async fn switch(viewer: Viewer, Query(to): Query<Switch>) -> Result<Response, PageError> {
    let site = viewer.actor.site(&to.site)?;
    Ok(Redirect::to(&format!("/dash/sites/{}/rules", site.as_str())).into_response())
}

async fn sites_page(
    state: &AdminState,
    viewer: &Viewer,
    status: StatusCode,
    extra: Value,
) -> Result<Response, PageError> {
    own_page(
        state,
        viewer,
        ("Sites", "sites", "sites.html"),
        status,
        extra,
    )
    .await
}

/// `GET /dash/sites`.
pub async fn list(State(state): State<AdminState>, viewer: Viewer) -> Result<Response, PageError> {
    sites_page(&state, &viewer, StatusCode::OK, context! {}).await
}

/// The new-site form.
#[derive(Deserialize, Serialize)]
pub struct NewSiteForm {
    key: String,
    name: String,
    #[serde(default)]
    origins: String,
    #[serde(default)]
    timezone: String,
}

/// `POST /dash/sites`.
pub async fn create(
    State(state): State<AdminState>,
    viewer: Viewer,
    Form(form): Form<NewSiteForm>,
) -> Result<Response, PageError> {
    let new = NewSite {
        key: form.key.clone(),
        name: form.name.clone(),
        origins: list_field(&form.origins),
        timezone: Some(form.timezone.trim())
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
    };
    match sites::create(&state, &viewer.actor, new).await {
        Ok(created) => {
            // The new site is the viewer's now: draw the page with it in the list.
            let mut viewer = viewer;
            viewer.actor.sites.push(
                beckon_engine::SiteId::parse(&created.site.key)
                    .map_err(|e| AdminError::invalid(e.to_string()))?,
            );
            sites_page(&state, &viewer, StatusCode::CREATED, context! { created }).await
        }
        Err(e) => {
            let status = e.status();
            let error = e.to_string();
            sites_page(&state, &viewer, status, context! { error, form }).await
        }
    }
}

/// The frame of a page about one site.
async fn site_frame(
    state: &AdminState,
    viewer: &Viewer,
    key: &str,
) -> Result<(SiteView, Vec<SiteView>), PageError> {
    let site = sites::get(state, &viewer.actor, key).await?;
    let all = sites::list(state, &viewer.actor).await?;
    Ok((site, all))
}

/// `GET /dash/sites/{site}/rules`.
pub async fn rules(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(key): Path<String>,
) -> Result<Response, PageError> {
    let (site, all) = site_frame(&state, &viewer, &key).await?;
    let view = rules::list(&state, &viewer.actor, &key).await?;
    let frame = Frame {
        viewer: &viewer,
        title: "Rules",
        active: "rules",
        site: Some(&site),
        sites: &all,
    };
    Ok(render(
        StatusCode::OK,
        "rules.html",
        frame.with(context! { rules => view.rules, version => view.version }),
    ))
}

/// `GET /dash/sites/{site}/install`.
pub async fn install(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(key): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, PageError> {
    let (site, all) = site_frame(&state, &viewer, &key).await?;
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("YOUR-BECKON");
    let snippet = format!(
        "<script async src=\"//{host}/widget.js\" data-site=\"{}\"></script>",
        site.key
    );
    let seen = crate::manage::install::check(&state, &viewer.actor, &key).await?;
    let frame = Frame {
        viewer: &viewer,
        title: "Install",
        active: "install",
        site: Some(&site),
        sites: &all,
    };
    Ok(render(
        StatusCode::OK,
        "install.html",
        frame.with(context! { snippet, seen }),
    ))
}

/// `GET /dash/sites/{site}/install/check`: the live check alone, which the install page
/// refreshes every few seconds.
pub async fn install_check(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(key): Path<String>,
) -> Result<Response, PageError> {
    let site = sites::get(&state, &viewer.actor, &key).await?;
    let seen = crate::manage::install::check(&state, &viewer.actor, &key).await?;
    Ok(render(
        StatusCode::OK,
        "install_check.html",
        context! { site, seen },
    ))
}

/// One guardrail field of the settings form.
#[derive(Serialize)]
struct Guardrail {
    name: &'static str,
    label: &'static str,
    help: &'static str,
    value: String,
    number: bool,
}

/// The guardrails, each explained in plain words, with the values of `policy`.
fn guardrails(policy: &Policy) -> Vec<Guardrail> {
    let json = serde_json::to_value(policy).unwrap_or_default();
    let text = |name: &str| match &json[name] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    let g = |name, label, help, number| Guardrail {
        name,
        label,
        help,
        value: text(name),
        number,
    };
    vec![
        g(
            "max_per_session",
            "Messages per visit",
            "At most this many messages in one visit, whatever the rules say. Default 2.",
            true,
        ),
        g(
            "max_per_visitor_day",
            "Messages per visitor per day",
            "At most this many in any 24 hours, across visits. Default 3.",
            true,
        ),
        g(
            "dismiss_cooldown",
            "Quiet after a dismissal",
            "After a visitor closes a message, nothing more for this long. Default 10m.",
            false,
        ),
        g(
            "dismissals_before_silence",
            "Dismissals before silence",
            "This many dismissals within the silence period silence the visitor. Default 2.",
            true,
        ),
        g(
            "silence",
            "Silence after repeated dismissals",
            "How long a visitor who keeps dismissing hears nothing. Default 30d.",
            false,
        ),
        g(
            "quiet_after_conversion",
            "Quiet after an order",
            "After an order nothing more that visit; this extends it beyond the visit. Default 0s: the rest of the visit.",
            false,
        ),
        g(
            "arrival_grace",
            "Grace on arrival",
            "Nothing in the first moments of a visit, unless the cart holds items or the visitor is leaving. Default 5s.",
            false,
        ),
        g(
            "visit_gap",
            "Visit gap",
            "Activity within this time of the last continues the same visit (another tab), so a second tab cannot reset the caps. Default 30m.",
            false,
        ),
        g(
            "quiet_page_types",
            "Quiet page types",
            "Nothing is ever shown on these page types, e.g. account, legal. Comma-separated.",
            false,
        ),
        g(
            "quiet_paths",
            "Quiet paths",
            "Nothing is ever shown under these path prefixes, e.g. /account. Comma-separated.",
            false,
        ),
        g(
            "holdout_percent",
            "Holdout share (%)",
            "This share of visitors sees nothing, so that every rule's lift can be measured honestly against them. 0 to 50; default 10.",
            true,
        ),
    ]
}

/// A policy from the settings form: the stored one with the form's values in their place.
fn policy_from_form(
    current: &Policy,
    form: &HashMap<String, String>,
) -> Result<Policy, AdminError> {
    let mut value =
        serde_json::to_value(current).map_err(|e| AdminError::invalid(e.to_string()))?;
    for g in guardrails(current) {
        let Some(raw) = form.get(g.name) else {
            continue;
        };
        let raw = raw.trim();
        let v =
            match g.name {
                "quiet_page_types" | "quiet_paths" => json!(list_field(raw)),
                "holdout_percent" => json!(raw.parse::<f64>().map_err(|_| {
                    AdminError::field(g.name, format!("{raw:?} is not a number"))
                })?),
                _ if g.number => json!(raw.parse::<u32>().map_err(|_| {
                    AdminError::field(g.name, format!("{raw:?} is not a whole number"))
                })?),
                _ => json!(raw),
            };
        value[g.name] = v;
    }
    if let Some(tz) = form.get("timezone") {
        value["timezone"] = json!(tz.trim());
    }
    serde_json::from_value(value).map_err(|e| AdminError::field("policy", e.to_string()))
}

async fn settings_page(
    state: &AdminState,
    viewer: &Viewer,
    key: &str,
    status: StatusCode,
    extra: Value,
) -> Result<Response, PageError> {
    let (site, all) = site_frame(state, viewer, key).await?;
    let guardrails = guardrails(&site.policy);
    let members = crate::manage::people::members(state, &viewer.actor, key).await?;
    let frame = Frame {
        viewer,
        title: "Settings",
        active: "settings",
        site: Some(&site),
        sites: &all,
    };
    Ok(render(
        status,
        "settings.html",
        frame.with(context! { guardrails, members, ..extra }),
    ))
}

/// `GET /dash/sites/{site}/settings`.
pub async fn settings(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(key): Path<String>,
) -> Result<Response, PageError> {
    settings_page(&state, &viewer, &key, StatusCode::OK, context! {}).await
}

/// `POST /dash/sites/{site}/settings`.
pub async fn save_settings(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(key): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let site = sites::get(&state, &viewer.actor, &key).await?;
    let result = async {
        let policy = policy_from_form(&site.policy, &form)?;
        let change = SiteChange {
            name: form.get("name").cloned(),
            origins: form.get("origins").map(|o| list_field(o)),
            policy: Some(
                serde_json::to_value(policy).map_err(|e| AdminError::invalid(e.to_string()))?,
            ),
        };
        sites::update(&state, &viewer.actor, &key, change).await
    }
    .await;
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/dash/sites/{key}/settings?saved=1")).into_response()),
        Err(e) => {
            let status = e.status();
            let (error, error_field) = (e.to_string(), e.field_name().map(str::to_owned));
            settings_page(
                &state,
                &viewer,
                &key,
                status,
                context! { error, error_field },
            )
            .await
        }
    }
}

/// `POST /dash/sites/{site}/secret`.
pub async fn rotate_secret(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(key): Path<String>,
) -> Result<Response, PageError> {
    let rotated = sites::rotate_secret(&state, &viewer.actor, &key).await?;
    settings_page(
        &state,
        &viewer,
        &key,
        StatusCode::OK,
        context! { secret => rotated.secret },
    )
    .await
}

/// The add-member form.
#[derive(Deserialize)]
pub struct MemberForm {
    email: String,
}

/// `POST /dash/sites/{site}/members`.
pub async fn add_member(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(key): Path<String>,
    Form(form): Form<MemberForm>,
) -> Result<Response, PageError> {
    let new = crate::manage::people::NewMember { email: form.email };
    match crate::manage::people::add_member(&state, &viewer.actor, &key, new).await {
        Ok(_) => Ok(Redirect::to(&format!("/dash/sites/{key}/settings#members")).into_response()),
        Err(e) => {
            let status = e.status();
            let member_error = e.to_string();
            settings_page(&state, &viewer, &key, status, context! { member_error }).await
        }
    }
}

/// `POST /dash/sites/{site}/members/{user}/remove`.
pub async fn remove_member(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path((key, user)): Path<(String, i64)>,
) -> Result<Response, PageError> {
    match crate::manage::people::remove_member(&state, &viewer.actor, &key, user).await {
        Ok(()) => Ok(Redirect::to(&format!("/dash/sites/{key}/settings#members")).into_response()),
        Err(e) => {
            let status = e.status();
            let member_error = e.to_string();
            settings_page(&state, &viewer, &key, status, context! { member_error }).await
        }
    }
}
