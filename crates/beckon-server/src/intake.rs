//! The domain call behind both event endpoints: validate a visitor's batch and hand it to the
//! shard that owns the visitor.

use std::sync::Arc;

use beckon_engine::{SessionStart, VisitorId};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::AppState;
use crate::edge;
use crate::error::ApiError;
use crate::shard::{BatchJob, BatchReply, ShardMsg};
use crate::sites::SiteRuntime;
use crate::wire::{ClientContext, MAX_BATCH_EVENTS, parse_event};

/// Who is sending, as the edge saw it.
pub struct Sender<'a> {
    /// The site.
    pub site: Arc<SiteRuntime>,
    /// The visitor id as sent.
    pub visitor: &'a str,
    /// The session id as sent.
    pub session: &'a str,
    /// The `User-Agent` header.
    pub user_agent: &'a str,
    /// The widget's context.
    pub context: &'a ClientContext,
    /// The merchant's backend (authenticated with the secret key), not a browser: never
    /// judged a bot.
    pub backend: bool,
}

/// Validates and submits a batch; resolves once it is durable.
pub async fn submit(
    state: &AppState,
    from: Sender<'_>,
    events: Vec<Value>,
) -> Result<BatchReply, ApiError> {
    let visitor =
        VisitorId::parse(from.visitor).map_err(|e| ApiError::BadRequest(format!("visitor {e}")))?;
    if VisitorId::parse(from.session).is_err() {
        return Err(ApiError::BadRequest(
            "session must be 1 to 128 characters of [A-Za-z0-9._:-]".to_owned(),
        ));
    }
    if events.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::TooLarge(format!(
            "{} events in one batch; at most {MAX_BATCH_EVENTS}",
            events.len()
        )));
    }
    let events = events
        .into_iter()
        .enumerate()
        .map(|(i, v)| parse_event(i, v))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::BadRequest)?;
    events
        .iter()
        .for_each(|e| crate::metrics::events_in(&e.kind));
    // Bots are judged before the engine sees anything, and kept out of the log and the numbers.
    if !from.backend && edge::is_bot(from.user_agent, from.context.webdriver.unwrap_or(false)) {
        return Ok(BatchReply {
            acked: events.into_iter().map(|e| e.id).collect(),
            ..BatchReply::default()
        });
    }
    let start = SessionStart {
        device: edge::device(from.user_agent),
        bot: false,
        language: from
            .context
            .lang
            .as_deref()
            .and_then(|l| l.split('-').next())
            .filter(|l| (2..=3).contains(&l.len()) && l.chars().all(|c| c.is_ascii_alphabetic()))
            .map(str::to_ascii_lowercase),
        utc_offset_minutes: from.context.tz_offset.unwrap_or(0).clamp(-14 * 60, 14 * 60) as i16,
    };
    let (reply, answer) = oneshot::channel();
    let job = BatchJob {
        site: from.site,
        visitor: visitor.clone(),
        session: from.session.to_owned(),
        start,
        events,
        reply,
        backend: from.backend,
    };
    // A full shard queue sheds the batch (503, come back later) instead of waiting behind it.
    state
        .shards
        .try_send(&visitor, ShardMsg::Batch(job))
        .map_err(|e| ApiError::shed(e, state.limits.retry_after))?;
    answer
        .await
        .map_err(|_| ApiError::Unavailable("the shard dropped the batch".to_owned()))?
        .map_err(ApiError::Unavailable)
}
