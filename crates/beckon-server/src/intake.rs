//! The domain call behind every event endpoint: establish who is sending, validate the batch,
//! and hand it to the shard that owns the visitor (or, for a bot, straight to the log).

use std::sync::Arc;

use beckon_engine::{SessionId, SessionStart, VisitorId};
use beckon_store::{Applied, BatchContext, LoggedBatch, LoggedEvent, Source, Verdict, WriteBatch};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::AppState;
use crate::edge;
use crate::shard::{BatchError, BatchJob, BatchReply, ShardMsg};
use crate::sites::SiteRuntime;
use crate::visit::SessionRef;
use crate::wire::{ClientContext, Identity, Incoming, MAX_BATCH_EVENTS, parse_event};

/// Event id prefixes only the server makes (orders, the backend's events, timer ticks).
pub const RESERVED_PREFIXES: &[&str] = &["order:", "server:", "tick:"];

/// Why a batch was refused.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// Malformed: the message names the field.
    #[error("{0}")]
    BadRequest(String),
    /// Too many events.
    #[error("{0}")]
    TooLarge(String),
    /// Not stored; the client should resend.
    #[error(transparent)]
    Batch(#[from] BatchError),
}

/// Who claims to be sending, as the request says.
pub enum Claim<'a> {
    /// A browser: the visitor id and token it kept, if any. A missing or wrong token makes it a
    /// new visitor.
    Browser {
        /// The visitor id as sent.
        visitor: Option<&'a str>,
        /// The token as sent.
        token: Option<&'a str>,
    },
    /// The merchant's backend (authenticated with the site's secret key), naming a visitor.
    Backend {
        /// The visitor id as sent.
        visitor: &'a str,
    },
}

/// Who is sending, as the edge saw it.
pub struct Sender<'a> {
    /// The site.
    pub site: Arc<SiteRuntime>,
    /// Who they claim to be.
    pub claim: Claim<'a>,
    /// The session id as sent (`None`: the visitor's current visit, for the backend).
    pub session: Option<&'a str>,
    /// The `User-Agent` header.
    pub user_agent: &'a str,
    /// The client hints the browser sent.
    pub hints: &'a crate::edge::ClientHints,
    /// The widget's context.
    pub context: &'a ClientContext,
}

/// What a submitted batch got.
#[derive(Debug)]
pub struct Submitted {
    /// The shard's answer.
    pub reply: BatchReply,
    /// Set when the sender was made a new visitor: the id and token to keep.
    pub identity: Option<Identity>,
}

/// The visitor a browser speaks for: the claimed one when its token is right, otherwise a new
/// one (with the identity to hand back).
pub fn identify(
    state: &AppState,
    site: &SiteRuntime,
    visitor: Option<&str>,
    token: Option<&str>,
) -> (VisitorId, Option<Identity>) {
    let id = &site.record.id;
    if let (Some(v), Some(t)) = (visitor.and_then(|v| VisitorId::parse(v).ok()), token) {
        if state.tokens.verify(id, &v, t) {
            return (v, None);
        }
    }
    let (visitor, token) = mint_here(state, id);
    let identity = Identity {
        visitor: visitor.to_string(),
        token,
    };
    (visitor, Some(identity))
}

/// The node to forward to when a browser's claim is another node's visitor: the claimed visitor
/// when its token is right and another node owns it. `None`: served here (a new visitor is
/// always made here, see [`identify`]).
pub fn owner_elsewhere(
    state: &AppState,
    site: &SiteRuntime,
    visitor: Option<&str>,
    token: Option<&str>,
) -> Option<beckon_store::cluster::NodeLease> {
    if !state.placement.clustered() {
        return None;
    }
    let id = &site.record.id;
    let visitor = VisitorId::parse(visitor?).ok()?;
    if !state.tokens.verify(id, &visitor, token?) {
        return None;
    }
    match state.placement.route(id, &visitor) {
        crate::placement::Route::Owner(node) => Some(node),
        crate::placement::Route::Here => None,
    }
}

/// A new visitor that this node owns: in a cluster, ids are drawn until one falls to this node
/// (one in as many draws as there are nodes, on average), so that the visitor's first batch is
/// decided where every later one will be.
fn mint_here(state: &AppState, site: &beckon_engine::SiteId) -> (VisitorId, String) {
    let now = state.clock.now();
    let mut minted = state.tokens.mint(site, now);
    for _ in 0..64 {
        if state.placement.is_mine(site, &minted.0) {
            break;
        }
        minted = state.tokens.mint(site, now);
    }
    minted
}

/// Validates and submits a batch; resolves once it is durable.
pub async fn submit(
    state: &AppState,
    from: Sender<'_>,
    events: Vec<Value>,
) -> Result<Submitted, IntakeError> {
    let session = match from.session {
        Some(s) => SessionRef::Id(
            SessionId::parse(s).map_err(|e| IntakeError::BadRequest(format!("session {e}")))?,
        ),
        None => SessionRef::Current,
    };
    if events.len() > MAX_BATCH_EVENTS {
        return Err(IntakeError::TooLarge(format!(
            "{} events in one batch; at most {MAX_BATCH_EVENTS}",
            events.len()
        )));
    }
    let events = events
        .into_iter()
        .enumerate()
        .map(|(i, v)| parse_event(i, v))
        .collect::<Result<Vec<_>, _>>()
        .map_err(IntakeError::BadRequest)?;
    for e in &events {
        crate::metrics::events_in(e.kind);
    }
    let (visitor, identity, source) = match from.claim {
        Claim::Browser { visitor, token } => {
            // The server's own keys live under these prefixes (an order counts once per site,
            // whoever reports it): a page must not claim one by naming an event after it.
            if let Some((i, e)) = events.iter().enumerate().find(|(_, e)| {
                RESERVED_PREFIXES
                    .iter()
                    .any(|p| e.id.as_str().starts_with(p))
            }) {
                return Err(IntakeError::BadRequest(format!(
                    "events[{i}].id {:?}: ids starting with {} are reserved",
                    e.id.as_str(),
                    RESERVED_PREFIXES.join(", ")
                )));
            }
            // The desk, not the page, says when a conversation runs.
            if let Some((i, e)) = events
                .iter()
                .enumerate()
                .find(|(_, e)| matches!(e.kind, "conversation_started" | "conversation_ended"))
            {
                return Err(IntakeError::BadRequest(format!(
                    "events[{i}].type {:?} is the server's own",
                    e.kind
                )));
            }
            // A malformed id is an error to report, not merely an unknown visitor.
            if let Some(v) = visitor {
                VisitorId::parse(v).map_err(|e| IntakeError::BadRequest(format!("visitor {e}")))?;
            }
            let (v, identity) = identify(state, &from.site, visitor, token);
            (v, identity, Source::Browser)
        }
        Claim::Backend { visitor } => (
            VisitorId::parse(visitor)
                .map_err(|e| IntakeError::BadRequest(format!("visitor {e}")))?,
            None,
            Source::Backend,
        ),
    };
    let language = edge::language(
        from.context.lang.as_deref(),
        from.hints.accept_language.as_deref(),
    );
    let tz = from.context.tz_offset.unwrap_or(0).clamp(-14 * 60, 14 * 60) as i16;
    let context = BatchContext {
        user_agent: from
            .user_agent
            .chars()
            .take(crate::edge::MAX_USER_AGENT_CHARS)
            .collect(),
        language: language.clone(),
        tz_offset_minutes: tz,
    };
    // Bots are judged before the engine sees anything: logged for the operator, never decided
    // on, kept out of every number.
    let seen = edge::seen(from.user_agent, from.hints);
    if source == Source::Browser {
        let sid = match &session {
            SessionRef::Id(s) => Some(s),
            SessionRef::Current => None,
        };
        let verdict = seen.bot_reason(from.context.automation());
        if let Some(reason) = edge::session_verdict(&from.site.record.id, sid, verdict) {
            if let Some(session) = sid.filter(|_| identity.is_none()) {
                // A visit that began as a person's and now shows automation: marked where it
                // lives, so that nothing it set up fires. Best effort: a full queue drops it.
                let _ = state.shards.try_send(
                    &visitor,
                    ShardMsg::MarkBot {
                        key: (from.site.record.id.clone(), visitor.clone()),
                        session: session.clone(),
                        reason: reason.clone(),
                    },
                );
            }
            let reply =
                log_bot(state, &from.site, visitor, session, context, reason, events).await?;
            return Ok(Submitted { reply, identity });
        }
    }
    let start = SessionStart {
        device: seen.device.clone(),
        bot: false,
        language,
        utc_offset_minutes: tz,
    };
    let (reply, answer) = oneshot::channel();
    let job = BatchJob {
        site: from.site.record.id.clone(),
        visitor: visitor.clone(),
        session,
        source,
        start,
        context,
        events,
        reply,
    };
    state.shards.try_send(&visitor, ShardMsg::Batch(job))?;
    let reply = answer.await.map_err(|_| BatchError::Stopped)??;
    Ok(Submitted { reply, identity })
}

/// Logs a bot's batch without deciding anything, and acknowledges it once durable.
async fn log_bot(
    state: &AppState,
    site: &SiteRuntime,
    visitor: VisitorId,
    session: SessionRef,
    context: BatchContext,
    reason: String,
    events: Vec<Incoming>,
) -> Result<BatchReply, BatchError> {
    let acked = events.iter().map(|e| e.id.clone()).collect();
    let batch = LoggedBatch {
        site: site.record.id.clone(),
        visitor,
        session: match session {
            SessionRef::Id(s) => Some(s),
            SessionRef::Current => None,
        },
        at: state.clock.now(),
        source: Source::Browser,
        context,
        verdict: Verdict::Bot { reason },
        rules_version: site.version(),
        begins: None,
        events: events
            .into_iter()
            .map(|e| LoggedEvent {
                key: e.key,
                id: e.id,
                kind: e.kind.to_owned(),
                body: e.body,
                applied: Applied::Logged,
            })
            .collect(),
    };
    let write = WriteBatch {
        batches: vec![batch],
        ..WriteBatch::default()
    };
    state.writer.enqueue(write, Vec::new()).await.await?;
    Ok(BatchReply {
        acked,
        ..BatchReply::default()
    })
}
