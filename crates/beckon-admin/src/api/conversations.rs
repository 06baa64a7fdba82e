//! `/api/v1/sites/{site}/conversations…` and `/api/v1/sites/{site}/desk…`: the agent console's
//! operations, for the console itself and for scripts.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::Errors;
use super::extract::{Body, FileBytes, Params, Segments};
use crate::AdminState;
use crate::auth::Actor;
use crate::error::AdminResult;
use crate::manage::conversations::{
    self, Availability, ConversationView, DeskView, MessageView, ProfileView, Read, Reply,
    SettingsView, Start, Transcript, Transfer, Typing,
};
use crate::manage::{Page, Paging};

/// Which conversations to list.
#[derive(Debug, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct Which {
    /// `open` (the default), `closed` or `all`.
    #[param(pattern = "^(open|closed|all)$")]
    pub state: Option<String>,
    /// At most this many items (1–200, 50 by default).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
}

/// A site's conversations, most recently updated first.
#[utoipa::path(get, path = "/api/v1/sites/{site}/conversations", tag = "conversations", params(
    ("site" = String, Path, description = "The site key"), Which),
    responses((status = 200, body = Page<ConversationView>), Errors))]
pub async fn list(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
    Params(which): Params<Which>,
) -> AdminResult<Json<Page<ConversationView>>> {
    let open = match which.state.as_deref() {
        None | Some("open") => Some(true),
        Some("closed") => Some(false),
        Some("all") => None,
        Some(other) => {
            return Err(crate::error::AdminError::BadRequest(format!(
                "state {other:?} is not open, closed or all"
            )));
        }
    };
    let all = conversations::list(&state, &actor, &site, open).await?;
    let paging = Paging {
        limit: which.limit,
        after: which.after,
    };
    // Newest first; the cursor orders the other way round.
    let keyed: Vec<(usize, ConversationView)> = all.into_iter().enumerate().collect();
    let page = paging.apply(keyed, |(i, _)| format!("{i:06}"))?;
    Ok(Json(Page {
        items: page.items.into_iter().map(|(_, c)| c).collect(),
        next: page.next,
    }))
}

/// Starts a conversation with a visitor on the site now (it is the caller's).
#[utoipa::path(post, path = "/api/v1/sites/{site}/conversations", tag = "conversations",
    request_body = Start, params(("site" = String, Path, description = "The site key")),
    responses((status = 201, body = ConversationView), Errors))]
pub async fn start(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
    Body(body): Body<Start>,
) -> AdminResult<(StatusCode, Json<ConversationView>)> {
    let c = conversations::start(&state, &actor, &site, body).await?;
    Ok((StatusCode::CREATED, Json(c)))
}

/// One conversation with its context and latest messages.
#[utoipa::path(get, path = "/api/v1/sites/{site}/conversations/{id}", tag = "conversations",
    params(("site" = String, Path, description = "The site key"),
        ("id" = String, Path, description = "The conversation id")),
    responses((status = 200, body = Transcript), Errors))]
pub async fn get(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, id)): Segments<(String, String)>,
) -> AdminResult<Json<Transcript>> {
    Ok(Json(conversations::get(&state, &actor, &site, &id).await?))
}

/// Accepts a waiting conversation: offered to the caller, or picked from the queue.
#[utoipa::path(post, path = "/api/v1/sites/{site}/conversations/{id}/accept", tag = "conversations",
    params(("site" = String, Path, description = "The site key"),
        ("id" = String, Path, description = "The conversation id")),
    responses((status = 200, body = ConversationView), Errors))]
pub async fn accept(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, id)): Segments<(String, String)>,
) -> AdminResult<Json<ConversationView>> {
    Ok(Json(
        conversations::accept(&state, &actor, &site, &id).await?,
    ))
}

/// Writes to the visitor (taking the conversation if nobody holds it).
#[utoipa::path(post, path = "/api/v1/sites/{site}/conversations/{id}/messages", tag = "conversations",
    request_body = Reply, params(("site" = String, Path, description = "The site key"),
        ("id" = String, Path, description = "The conversation id")),
    responses((status = 201, body = MessageView), Errors))]
pub async fn reply(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, id)): Segments<(String, String)>,
    Body(body): Body<Reply>,
) -> AdminResult<(StatusCode, Json<MessageView>)> {
    let m = conversations::reply(&state, &actor, &site, &id, body).await?;
    Ok((StatusCode::CREATED, Json(m)))
}

/// How a file is sent.
#[derive(Debug, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct Sending {
    /// The console's id for the message (a resend carries the same).
    #[param(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._:-]+$")]
    pub id: String,
    /// The file's name.
    #[param(max_length = 200)]
    pub name: Option<String>,
}

/// Sends a file to the visitor: the body is the file (at most 5 MiB; PNG, JPEG, GIF, WebP,
/// PDF or plain text, as its content shows).
#[utoipa::path(post, path = "/api/v1/sites/{site}/conversations/{id}/files", tag = "conversations",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    params(("site" = String, Path, description = "The site key"),
        ("id" = String, Path, description = "The conversation id"), Sending),
    responses((status = 201, body = MessageView), Errors))]
pub async fn send_file(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, id)): Segments<(String, String)>,
    Params(sending): Params<Sending>,
    FileBytes(bytes): FileBytes,
) -> AdminResult<(StatusCode, Json<MessageView>)> {
    let name = sending.name.unwrap_or_default();
    let m =
        conversations::send_file(&state, &actor, &site, &id, &sending.id, &name, &bytes).await?;
    Ok((StatusCode::CREATED, Json(m)))
}

/// One file of the conversation, served so that no browser runs it.
#[utoipa::path(get, path = "/api/v1/sites/{site}/conversations/{id}/files/{file}", tag = "conversations",
    params(("site" = String, Path, description = "The site key"),
        ("id" = String, Path, description = "The conversation id"),
        ("file" = String, Path, description = "The file id")),
    responses((status = 200, description = "The file", content_type = "application/octet-stream"), Errors))]
pub async fn file(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, id, file)): Segments<(String, String, String)>,
) -> AdminResult<axum::response::Response> {
    let (name, mime, bytes) = conversations::file(&state, &actor, &site, &id, &file).await?;
    Ok(serve_file(&name, &mime, bytes))
}

/// A stored file, with the headers [`beckon_agent::files::served_headers`] gives it.
fn serve_file(name: &str, mime: &str, bytes: Vec<u8>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut r = bytes.into_response();
    for (k, v) in beckon_agent::files::served_headers(name, mime) {
        if let Ok(v) = axum::http::HeaderValue::from_str(&v) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

/// Ends the conversation; the visitor is asked for a rating.
#[utoipa::path(post, path = "/api/v1/sites/{site}/conversations/{id}/close", tag = "conversations",
    params(("site" = String, Path, description = "The site key"),
        ("id" = String, Path, description = "The conversation id")),
    responses((status = 200, body = ConversationView), Errors))]
pub async fn close(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, id)): Segments<(String, String)>,
) -> AdminResult<Json<ConversationView>> {
    Ok(Json(
        conversations::close(&state, &actor, &site, &id).await?,
    ))
}

/// Passes the conversation to a department's queue or to a person.
#[utoipa::path(post, path = "/api/v1/sites/{site}/conversations/{id}/transfer", tag = "conversations",
    request_body = Transfer, params(("site" = String, Path, description = "The site key"),
        ("id" = String, Path, description = "The conversation id")),
    responses((status = 200, body = ConversationView), Errors))]
pub async fn transfer(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, id)): Segments<(String, String)>,
    Body(body): Body<Transfer>,
) -> AdminResult<Json<ConversationView>> {
    Ok(Json(
        conversations::transfer(&state, &actor, &site, &id, body).await?,
    ))
}

/// Tells the visitor the caller is typing (or stopped).
#[utoipa::path(post, path = "/api/v1/sites/{site}/conversations/{id}/typing", tag = "conversations",
    request_body = Typing, params(("site" = String, Path, description = "The site key"),
        ("id" = String, Path, description = "The conversation id")),
    responses((status = 204), Errors))]
pub async fn typing(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, id)): Segments<(String, String)>,
    Body(body): Body<Typing>,
) -> AdminResult<StatusCode> {
    conversations::typing(&state, &actor, &site, &id, body.on).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Marks the conversation's messages read up to `seq`.
#[utoipa::path(post, path = "/api/v1/sites/{site}/conversations/{id}/read", tag = "conversations",
    request_body = Read, params(("site" = String, Path, description = "The site key"),
        ("id" = String, Path, description = "The conversation id")),
    responses((status = 204), Errors))]
pub async fn read(
    State(state): State<AdminState>,
    actor: Actor,
    Segments((site, id)): Segments<(String, String)>,
    Body(body): Body<Read>,
) -> AdminResult<StatusCode> {
    conversations::read(&state, &actor, &site, &id, body.seq).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The site's desk: who is there, what waits, the departments and canned replies.
#[utoipa::path(get, path = "/api/v1/sites/{site}/desk", tag = "conversations",
    params(("site" = String, Path, description = "The site key")),
    responses((status = 200, body = DeskView), Errors))]
pub async fn desk(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
) -> AdminResult<Json<DeskView>> {
    Ok(Json(conversations::board(&state, &actor, &site).await?))
}

/// Comes online at the site's desk, or goes away.
#[utoipa::path(put, path = "/api/v1/sites/{site}/desk/availability", tag = "conversations",
    request_body = Availability, params(("site" = String, Path, description = "The site key")),
    responses((status = 200, body = DeskView), Errors))]
pub async fn availability(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
    Body(body): Body<Availability>,
) -> AdminResult<Json<DeskView>> {
    Ok(Json(
        conversations::set_available(&state, &actor, &site, body.available).await?,
    ))
}

/// Sets how the caller takes conversations on the site: capacity, departments, languages.
#[utoipa::path(put, path = "/api/v1/sites/{site}/desk/profile", tag = "conversations",
    request_body = ProfileView, params(("site" = String, Path, description = "The site key")),
    responses((status = 200, body = ProfileView), Errors))]
pub async fn profile(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
    Body(body): Body<ProfileView>,
) -> AdminResult<Json<ProfileView>> {
    Ok(Json(
        conversations::save_profile(&state, &actor, &site, body).await?,
    ))
}

/// The site's chat settings.
#[utoipa::path(get, path = "/api/v1/sites/{site}/desk/settings", tag = "conversations",
    params(("site" = String, Path, description = "The site key")),
    responses((status = 200, body = SettingsView), Errors))]
pub async fn settings(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
) -> AdminResult<Json<SettingsView>> {
    Ok(Json(conversations::settings(&state, &actor, &site).await?))
}

/// Saves the site's chat settings (administrators); they apply at once.
#[utoipa::path(put, path = "/api/v1/sites/{site}/desk/settings", tag = "conversations",
    request_body = SettingsView, params(("site" = String, Path, description = "The site key")),
    responses((status = 200, body = SettingsView), Errors))]
pub async fn save_settings(
    State(state): State<AdminState>,
    actor: Actor,
    Segments(site): Segments<String>,
    Body(body): Body<SettingsView>,
) -> AdminResult<Json<SettingsView>> {
    Ok(Json(
        conversations::save_settings(&state, &actor, &site, body).await?,
    ))
}
