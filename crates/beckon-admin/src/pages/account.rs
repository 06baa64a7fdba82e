//! The viewer's API tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};

use super::{Frame, PageError, Viewer, render};
use crate::AdminState;
use crate::manage::people::{self, NewToken};
use crate::manage::sites;

async fn page(
    state: &AdminState,
    viewer: &Viewer,
    status: StatusCode,
    extra: Value,
) -> Result<Response, PageError> {
    let all = sites::list(state, &viewer.actor).await?;
    let tokens = people::tokens(state, &viewer.actor).await?;
    let frame = Frame {
        viewer,
        title: "API tokens",
        active: "tokens",
        site: None,
        sites: &all,
    };
    Ok(render(
        status,
        "tokens.html",
        frame.with(context! { tokens, ..extra }),
    ))
}

/// `GET /dash/tokens`.
pub async fn tokens(
    State(state): State<AdminState>,
    viewer: Viewer,
) -> Result<Response, PageError> {
    page(&state, &viewer, StatusCode::OK, context! {}).await
}

/// `POST /dash/tokens`: the form's `name` and any number of `sites`.
pub async fn create_token(
    State(state): State<AdminState>,
    viewer: Viewer,
    body: axum::body::Bytes,
) -> Result<Response, PageError> {
    let mut name = String::new();
    let mut site_keys = Vec::new();
    for (k, v) in form_urlencoded::parse(&body) {
        match k.as_ref() {
            "name" => name = v.into_owned(),
            "sites" => site_keys.push(v.into_owned()),
            _ => {}
        }
    }
    match people::create_token(
        &state,
        &viewer.actor,
        NewToken {
            name,
            sites: site_keys,
        },
    )
    .await
    {
        Ok(created) => page(&state, &viewer, StatusCode::CREATED, context! { created }).await,
        Err(e) => {
            let status = e.status();
            page(&state, &viewer, status, context! { error => e.to_string() }).await
        }
    }
}

/// `POST /dash/tokens/{id}/revoke`.
pub async fn revoke_token(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> Result<Response, PageError> {
    people::revoke_token(&state, &viewer.actor, id).await?;
    Ok(Redirect::to("/dash/tokens").into_response())
}
