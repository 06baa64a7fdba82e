//! The agent console: the page (its script drives it through the admin API) and the stream of
//! the desk's updates it listens to (server-sent events).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use beckon_agent::desk::Update;
use futures::Stream;
use minijinja::context;
use serde_json::json;

use super::{Frame, PageError, Viewer, render};
use crate::AdminState;
use crate::manage::{conversations, sites, visitors};

/// `GET /dash/sites/{site}/conversations`.
pub async fn page(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(key): Path<String>,
) -> Result<Response, PageError> {
    let site = sites::get(&state, &viewer.actor, &key).await?;
    let all = sites::list(&state, &viewer.actor).await?;
    let live = visitors::live(&state, &viewer.actor, &key).await?;
    let running = state.desk.is_some();
    let frame = Frame {
        viewer: &viewer,
        title: "Conversations",
        active: "conversations",
        site: Some(&site),
        sites: &all,
    };
    Ok(render(
        StatusCode::OK,
        "console.html",
        frame.with(context! { live, running, me => viewer.actor.user.id }),
    ))
}

/// What an update tells a console: only what it needs to redraw (it reads the rest through
/// the API), never more than the site's own.
fn event(update: &Update) -> Event {
    let body = match update {
        Update::Message {
            conversation,
            message,
            ..
        } => json!({
            "kind": "message",
            "conversation": conversation.as_str(),
            "message": conversations::MessageView::from(message),
        }),
        Update::Draft {
            conversation, text, ..
        } => json!({ "kind": "draft", "conversation": conversation.as_str(), "text": text }),
        Update::Typing {
            conversation,
            author,
            on,
            ..
        } => json!({
            "kind": "typing", "conversation": conversation.as_str(),
            "from": author.as_str(), "on": on,
        }),
        Update::Read {
            conversation,
            author,
            seq,
            ..
        } => json!({
            "kind": "read", "conversation": conversation.as_str(),
            "by": author.as_str(), "seq": seq,
        }),
        Update::Changed { conversation } => json!({
            "kind": "changed",
            "conversation": conversations::ConversationView::from(conversation.as_ref()),
        }),
        Update::Board => json!({ "kind": "board" }),
    };
    Event::default().event("update").data(body.to_string())
}

/// `GET /dash/sites/{site}/conversations/events`: the desk's updates as they happen. A
/// console that falls behind is told to reload (`event: stale`).
pub async fn events(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(key): Path<String>,
) -> Result<Response, PageError> {
    let site = viewer.actor.site(&key)?;
    let desk = conversations::desk(&state)?;
    let rx = desk.watch_site(&site);
    // While this stream is open, the person's console is: once none has been for a minute,
    // the desk takes them for away.
    let open = desk.console_open(&conversations::agent(&viewer.actor, &key)?);
    let stream = updates(rx, open);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn updates(
    rx: tokio::sync::broadcast::Receiver<Update>,
    open: beckon_agent::desk::ConsoleOpen,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold((rx, open), |(mut rx, open)| async move {
        use tokio::sync::broadcast::error::RecvError;
        match rx.recv().await {
            Ok(update) => Some((Ok(event(&update)), (rx, open))),
            Err(RecvError::Lagged(_)) => {
                Some((Ok(Event::default().event("stale").data("{}")), (rx, open)))
            }
            Err(RecvError::Closed) => None,
        }
    })
}
