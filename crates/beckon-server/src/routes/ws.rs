//! `GET /v1/ws`: events up, acknowledgements and interventions down.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use beckon_engine::VisitorId;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::events::header_str;
use crate::AppState;
use crate::error::ApiError;
use crate::intake::{self, Claim, Sender};
use crate::shard::ShardMsg;
use crate::wire::{ClientContext, DownFrame, Identity, MAX_BODY_BYTES, UpFrame};

/// Frames that may wait to be written to one socket.
const OUTBOUND: usize = 64;

/// Who the socket speaks for.
#[derive(Debug, Deserialize)]
pub struct Params {
    site: String,
    #[serde(default)]
    visitor: Option<String>,
    #[serde(default)]
    token: Option<String>,
    session: String,
}

/// Checks the site, origin and ids before upgrading, so a refused socket gets an HTTP error
/// that says why.
pub async fn upgrade(
    State(state): State<AppState>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let site = state
        .sites
        .get(&params.site)
        .ok_or_else(|| ApiError::Forbidden(format!("unknown site key {:?}", params.site)))?;
    let origin = header_str(&headers, header::ORIGIN);
    if !site.allows_origin(origin) {
        return Err(ApiError::Forbidden(format!(
            "origin {:?} is not allowed for this site",
            origin.unwrap_or("(none)")
        )));
    }
    if beckon_engine::SessionId::parse(&params.session).is_err() {
        return Err(ApiError::BadRequest(
            "session must be 1 to 128 characters of [A-Za-z0-9._:-]".to_owned(),
        ));
    }
    // A missing or wrong token makes this socket a new visitor's: it is told so first.
    let (visitor, identity) = intake::identify(
        &state,
        &site,
        params.visitor.as_deref(),
        params.token.as_deref(),
    );
    let token = match &identity {
        Some(i) => i.token.clone(),
        None => params.token.clone().unwrap_or_default(),
    };
    let user_agent = header_str(&headers, header::USER_AGENT)
        .unwrap_or("")
        .to_owned();
    Ok(ws
        .max_message_size(MAX_BODY_BYTES)
        .on_upgrade(move |socket| {
            serve(socket, state, params, visitor, token, identity, user_agent)
        }))
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    socket: WebSocket,
    state: AppState,
    params: Params,
    visitor: VisitorId,
    token: String,
    identity: Option<Identity>,
    user_agent: String,
) {
    let Some(site) = state.sites.get(&params.site) else {
        return;
    };
    let key = (site.record.id.clone(), visitor.clone());
    let visitor_text = visitor.to_string();
    let conn: u64 = rand::random();
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<DownFrame>(OUTBOUND);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            let text = serde_json::to_string(&frame).unwrap_or_default();
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
    });
    if let Some(identity) = identity {
        let _ = tx.send(DownFrame::Identity(identity)).await;
    }
    let mut context = ClientContext::default();
    let mut attached = false;
    let shutdown = state.shutdown.clone();
    loop {
        let msg = tokio::select! {
            msg = stream.next() => msg,
            _ = shutdown.cancelled() => break,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => continue,
        };
        let frame = match serde_json::from_str::<UpFrame>(&text) {
            Ok(f) => f,
            Err(e) => {
                let _ = tx
                    .send(DownFrame::Error {
                        error: format!("malformed frame: {e}"),
                    })
                    .await;
                continue;
            }
        };
        let UpFrame::Events {
            context: ctx,
            events,
        } = frame;
        if let Some(ctx) = ctx {
            context = ctx;
        }
        let from = Sender {
            site: site.clone(),
            claim: Claim::Browser {
                visitor: Some(&visitor_text),
                token: Some(&token),
            },
            session: Some(&params.session),
            user_agent: &user_agent,
            context: &context,
        };
        match intake::submit(&state, from, events).await {
            Ok(submitted) => {
                let reply = submitted.reply;
                if !attached {
                    // The first batch has loaded the session into its shard; from now on the
                    // shard can push timer-driven interventions to this socket.
                    attached = true;
                    let attach = ShardMsg::Attach {
                        key: key.clone(),
                        conn,
                        tx: tx.clone(),
                    };
                    let _ = state.shards.send(&visitor, attach).await;
                }
                let ids = reply.acked.iter().map(|i| i.to_string()).collect();
                let _ = tx.send(DownFrame::Ack { ids }).await;
                for i in reply.interventions {
                    let _ = tx.send(DownFrame::Intervention(i)).await;
                }
            }
            Err(e) => {
                let _ = tx
                    .send(DownFrame::Error {
                        error: crate::error::ApiError::from_intake(e, state.limits.retry_after)
                            .to_string(),
                    })
                    .await;
            }
        }
    }
    if attached {
        let _ = state
            .shards
            .send(&visitor, ShardMsg::Detach { key, conn })
            .await;
    }
    drop(tx);
    let _ = writer.await;
}
