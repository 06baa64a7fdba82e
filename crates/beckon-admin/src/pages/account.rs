//! The viewer's own account: their password and their API tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};

use super::{PageError, Viewer, own_page};
use crate::AdminState;
use crate::manage::people::{self, NewToken};

async fn page(
    state: &AdminState,
    viewer: &Viewer,
    status: StatusCode,
    extra: Value,
) -> Result<Response, PageError> {
    let tokens = people::tokens(state, &viewer.actor).await?;
    let extra = context! { tokens, ..extra };
    own_page(
        state,
        viewer,
        ("API tokens", "tokens", "tokens.html"),
        status,
        extra,
    )
    .await
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

async fn account_page(
    state: &AdminState,
    viewer: &Viewer,
    status: StatusCode,
    extra: Value,
) -> Result<Response, PageError> {
    own_page(
        state,
        viewer,
        ("Your account", "account", "account.html"),
        status,
        extra,
    )
    .await
}

/// `GET /dash/account`.
pub async fn account(
    State(state): State<AdminState>,
    viewer: Viewer,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Response, PageError> {
    let changed = q.contains_key("changed");
    account_page(&state, &viewer, StatusCode::OK, context! { changed }).await
}

/// The password form.
#[derive(serde::Deserialize)]
pub struct PasswordForm {
    current: String,
    new: String,
}

/// `POST /dash/account/password`.
pub async fn change_password(
    State(state): State<AdminState>,
    viewer: Viewer,
    mut session: crate::auth::AuthSession,
    axum::Form(form): axum::Form<PasswordForm>,
) -> Result<Response, PageError> {
    let change = people::PasswordChange {
        current: form.current,
        new: form.new,
    };
    match people::change_password(&state, &viewer.actor, change).await {
        Ok(user) => {
            session
                .login(&crate::auth::Account(user))
                .await
                .map_err(|e| crate::error::AdminError::Store(e.to_string()))?;
            Ok(Redirect::to("/dash/account?changed=1").into_response())
        }
        Err(e) => {
            let status = e.status();
            account_page(&state, &viewer, status, context! { error => e.to_string() }).await
        }
    }
}
