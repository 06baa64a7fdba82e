//! Signing in and out.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;

use super::render;
use crate::AdminState;
use crate::auth::{self, AuthSession, Client, Credentials};
use crate::error::AdminError;

/// Where to go after signing in.
#[derive(Deserialize, Default)]
pub struct Next {
    next: Option<String>,
}

/// The sign-in form's fields.
#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    next: String,
}

/// A target on this dashboard, never another site (no open redirect).
fn local(next: &str) -> &str {
    let ok = next.starts_with("/dash/") && !next.starts_with("//") && !next.contains('\\');
    if ok { next } else { "/dash/" }
}

/// `GET /dash/login`.
pub async fn form(session: AuthSession, Query(next): Query<Next>) -> Response {
    let next = local(next.next.as_deref().unwrap_or("/dash/")).to_owned();
    if session.user.is_some() {
        return Redirect::to(&next).into_response();
    }
    render(
        StatusCode::OK,
        "login.html",
        context! { title => "Sign in", next, email => "" },
    )
}

/// `POST /dash/login`.
pub async fn submit(
    State(state): State<AdminState>,
    Client(client): Client,
    mut session: AuthSession,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = local(&form.next).to_owned();
    let email = form.email.clone();
    let creds = Credentials {
        email: form.email,
        password: form.password,
    };
    match auth::sign_in(&state, &mut session, creds, client).await {
        Ok(_) => Redirect::to(&next).into_response(),
        Err(e) => {
            let status = match e {
                AdminError::Throttled => StatusCode::TOO_MANY_REQUESTS,
                AdminError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::UNAUTHORIZED,
            };
            render(
                status,
                "login.html",
                context! { title => "Sign in", next, email, error => e.to_string() },
            )
        }
    }
}

/// `POST /dash/logout`.
pub async fn logout(mut session: AuthSession) -> Response {
    let _ = session.logout().await;
    Redirect::to("/dash/login").into_response()
}

#[cfg(test)]
mod tests {
    use super::local;

    #[test]
    fn only_dashboard_paths_are_followed_after_sign_in() {
        assert_eq!(local("/dash/sites/shop/rules"), "/dash/sites/shop/rules");
        assert_eq!(local("https://evil.test/"), "/dash/");
        assert_eq!(local("//evil.test/dash/"), "/dash/");
        assert_eq!(local("/dash/\\evil"), "/dash/");
    }
}
