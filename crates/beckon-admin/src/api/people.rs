//! `/api/v1/login`, `/api/v1/me`, `/api/v1/tokens` and `/api/v1/sites/{site}/members`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Errors;
use super::extract::{Body, Params, Segments};
use crate::AdminState;
use crate::auth::{self, Actor, AuthSession, Client, Credentials};
use crate::error::AdminResult;
use crate::manage::people::{
    self, Me, NewMember, NewToken, PasswordChange, Person, TokenView, TokenWithSecret,
};
use crate::manage::{Page, Paging};

/// A sign-in.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The address.
    #[schema(min_length = 1, max_length = 254)]
    pub email: String,
    /// The password.
    #[schema(min_length = 1, max_length = 1024)]
    pub password: String,
}

/// A session just opened.
#[derive(Serialize, ToSchema)]
pub struct LoggedIn {
    /// Who.
    pub person: Person,
    /// Send as `X-CSRF-Token` with every change made with this session's cookie.
    pub csrf: String,
}

/// Opens a login session (a cookie) for scripts that act as a person; servers use tokens.
#[utoipa::path(post, path = "/api/v1/login", tag = "account", request_body = Login,
    security(()), responses((status = 200, body = LoggedIn), Errors))]
pub async fn login(
    State(state): State<AdminState>,
    Client(client): Client,
    mut session: AuthSession,
    Body(login): Body<Login>,
) -> AdminResult<Json<LoggedIn>> {
    let creds = Credentials {
        email: login.email,
        password: login.password,
    };
    let user = auth::sign_in(&state, &mut session, creds, client).await?;
    let csrf = crate::csrf::token(&session.session).await;
    Ok(Json(LoggedIn {
        person: Person::from(&user),
        csrf,
    }))
}

/// Who the request acts as, and the sites it may touch.
#[utoipa::path(get, path = "/api/v1/me", tag = "account",
    responses((status = 200, body = Me), Errors))]
pub async fn me(actor: Actor) -> Json<Me> {
    Json(people::me(&actor))
}

/// The caller's API tokens, newest first (never their secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "account", params(Paging),
    responses((status = 200, body = Page<TokenView>), Errors))]
pub async fn tokens(
    State(state): State<AdminState>,
    actor: Actor,
    Params(paging): Params<Paging>,
) -> AdminResult<Json<Page<TokenView>>> {
    let all = people::tokens(&state, &actor).await?;
    Ok(Json(
        paging.apply(all, |t| format!("{:020}", i64::MAX - t.id))?,
    ))
}

/// Makes an API token for some of the caller's sites. The answer holds its secret, once.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "account", request_body = NewToken,
    responses((status = 201, body = TokenWithSecret), Errors))]
pub async fn create_token(
    State(state): State<AdminState>,
    actor: Actor,
    Body(new): Body<NewToken>,
) -> AdminResult<(StatusCode, Json<TokenWithSecret>)> {
    Ok((
        StatusCode::CREATED,
        Json(people::create_token(&state, &actor, new).await?),
    ))
}

/// Revokes one of the caller's tokens; it stops working at once.
#[utoipa::path(delete, path = "/api/v1/tokens/{token}", tag = "account",
    params(("token" = i64, Path, description = "The token's id")),
    responses((status = 204, description = "Revoked"), Errors))]
pub async fn revoke_token(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(id): Segments<i64>,
) -> AdminResult<StatusCode> {
    people::revoke_token(&state, &actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The members of a site.
#[utoipa::path(get, path = "/api/v1/sites/{site}/members", tag = "members", params(
    ("site" = String, Path, description = "The site key"), Paging),
    responses((status = 200, body = Page<Person>), Errors))]
pub async fn members(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
    Params(paging): Params<Paging>,
) -> AdminResult<Json<Page<Person>>> {
    let all = people::members(&state, &actor, &site).await?;
    Ok(Json(paging.apply(all, |p| format!("{:020}", p.id))?))
}

/// Adds a person (who has an account) to a site.
#[utoipa::path(post, path = "/api/v1/sites/{site}/members", tag = "members",
    request_body = NewMember,
    params(("site" = String, Path, description = "The site key")),
    responses((status = 201, body = Person), Errors))]
pub async fn add_member(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
    Body(new): Body<NewMember>,
) -> AdminResult<(StatusCode, Json<Person>)> {
    Ok((
        StatusCode::CREATED,
        Json(people::add_member(&state, &actor, &site, new).await?),
    ))
}

/// Removes a person from a site.
#[utoipa::path(delete, path = "/api/v1/sites/{site}/members/{user}", tag = "members", params(
    ("site" = String, Path, description = "The site key"),
    ("user" = i64, Path, description = "The person's id")),
    responses((status = 204, description = "Removed"), Errors))]
pub async fn remove_member(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, user)): Segments<(String, i64)>,
) -> AdminResult<StatusCode> {
    people::remove_member(&state, &actor, &site, user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes the caller's password (from a signed-in session). Every other session of theirs ends.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "account", request_body = PasswordChange,
    responses((status = 204, description = "Changed"), Errors))]
pub async fn change_password(
    State(state): State<AdminState>,
    actor: Actor,
    mut session: AuthSession,
    Body(change): Body<PasswordChange>,
) -> AdminResult<StatusCode> {
    let user = people::change_password(&state, &actor, change).await?;
    // This session goes on under the new hash; the others no longer match it.
    session
        .login(&crate::auth::Account(user))
        .await
        .map_err(|e| crate::error::AdminError::Store(e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}
