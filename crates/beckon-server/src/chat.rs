//! A visitor's chat frames, carried out at the desk: the same for a socket and for
//! `POST /v1/chat`. The visitor was identified by the caller (a checked token).

use beckon_agent::desk::{Desk, DeskError, Opening, VisitorRef};
use beckon_store::conversations::Prechat;

use crate::sites::SiteRuntime;
use crate::wire_chat::{self, ChatDown, ChatUp};

/// The path of the nodes' own chat route: a chat frame carried to the node of the site's desk.
pub const DESK_FRAME: &str = "/v1/internal/chat";

/// A chat frame, as a node carries it to the node of the site's desk (whose caller checked the
/// visitor's token).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct CarriedFrame {
    /// The site's id (not its public key).
    pub site: String,
    /// The visitor.
    pub visitor: String,
    /// The frame.
    pub frame: ChatUp,
}

/// The frames a chat frame is answered with, as JSON (as they go to the tab).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Frames {
    /// The frames.
    pub frames: Vec<serde_json::Value>,
}

/// What the visitor's tab is answered, from the site's desk wherever it runs: here, or on the
/// node the cluster placed it on (a sync reads only the store, and is answered here).
pub async fn answer(
    state: &crate::AppState,
    desk: &Desk,
    site: &SiteRuntime,
    who: &VisitorRef,
    up: ChatUp,
) -> Vec<serde_json::Value> {
    let node = match state.placement.desk(&who.site) {
        crate::placement::Route::Owner(node) if !matches!(up, ChatUp::ChatSync { .. }) => node,
        _ => return as_json(handle(desk, site, who, up).await),
    };
    let id = match &up {
        ChatUp::Say { id, .. } => Some(id.clone()),
        _ => None,
    };
    let carried = CarriedFrame {
        site: who.site.as_str().to_owned(),
        visitor: who.visitor.as_str().to_owned(),
        frame: up,
    };
    match carry(state, &node, &carried).await {
        Ok(frames) => frames,
        Err((e, transient)) => {
            tracing::warn!(node = %node.name, error = %e, "the desk's node did not answer a chat frame");
            // A message the desk could not take for a moment is kept by the tab and sent
            // again under its id; anything else is the visitor's to try again.
            as_json(vec![ChatDown::ChatError {
                retry: transient && id.is_some(),
                id,
                error: "the chat is unavailable for a moment; try again shortly".to_owned(),
            }])
        }
    }
}

/// Carries a frame to the desk's node; its answer, or why not and whether that may pass (the
/// node did not answer, or the desk is moving).
async fn carry(
    state: &crate::AppState,
    node: &beckon_store::cluster::NodeLease,
    carried: &CarriedFrame,
) -> Result<Vec<serde_json::Value>, (String, bool)> {
    let answer = state
        .forwarder
        .post(format!("http://{}{DESK_FRAME}", node.address))
        .header(crate::placement::FORWARDED, state.placement.secret())
        .json(carried)
        .send()
        .await
        .map_err(|e| (e.to_string(), true))?;
    if !answer.status().is_success() {
        let transient = answer.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE;
        return Err((format!("answered {}", answer.status()), transient));
    }
    crate::metrics::forwarded("chat");
    let frames: Frames = answer.json().await.map_err(|e| (e.to_string(), true))?;
    Ok(frames.frames)
}

/// Frames as they go to the tab.
pub fn as_json(frames: Vec<ChatDown>) -> Vec<serde_json::Value> {
    frames
        .iter()
        .map(|f| serde_json::to_value(f).expect("a chat frame serialises"))
        .collect()
}

/// What the visitor's tab is answered, by the desk on this node.
pub async fn handle(
    desk: &Desk,
    site: &SiteRuntime,
    who: &VisitorRef,
    up: ChatUp,
) -> Vec<ChatDown> {
    let id = match &up {
        ChatUp::Say { id, .. } => Some(id.clone()),
        _ => None,
    };
    match carry_out(desk, site, who, up).await {
        Ok(frames) => frames,
        Err(e) => vec![ChatDown::ChatError {
            id,
            error: match e {
                DeskError::NotFound => "there is no open conversation".to_owned(),
                other => other.to_string(),
            },
            retry: false,
        }],
    }
}

fn opening(
    site: &SiteRuntime,
    rule: Option<String>,
    intervention: Option<String>,
    prechat: Option<Prechat>,
) -> Opening {
    // A rule's department travels with the conversation it started.
    let department = rule.as_deref().and_then(|r| {
        site.engine
            .rules()
            .get(r)
            .and_then(|rule| rule.spec().department.clone())
    });
    Opening {
        intervention: rule.zip(intervention),
        department,
        prechat,
    }
}

fn state(
    conversation: Option<&beckon_store::conversations::Conversation>,
    messages: Option<Vec<wire_chat::ChatMessage>>,
) -> ChatDown {
    ChatDown::ChatState {
        conversation: conversation.map(wire_chat::conversation),
        messages,
    }
}

async fn carry_out(
    desk: &Desk,
    site: &SiteRuntime,
    who: &VisitorRef,
    up: ChatUp,
) -> Result<Vec<ChatDown>, DeskError> {
    Ok(match up {
        ChatUp::ChatSync { after } => match desk.sync(who, after).await? {
            Some((c, messages)) => {
                let list = messages
                    .iter()
                    .map(|m| wire_chat::message(c.id.as_str(), m))
                    .collect();
                vec![state(Some(&c), Some(list))]
            }
            None => vec![state(None, Some(Vec::new()))],
        },
        ChatUp::ChatStart {
            intervention,
            rule,
            prechat,
        } => {
            let prechat = prechat
                .map(|p| -> Result<Prechat, DeskError> {
                    Ok(Prechat {
                        name: field(&p.name, 100, "name")?,
                        email: field(&p.email, 254, "email")?,
                        topic: field(&p.topic, 100, "topic")?,
                    })
                })
                .transpose()?;
            desk.open(who, &opening(site, rule, intervention, prechat))
                .await?;
            let (c, messages) = desk.sync(who, 0).await?.ok_or(DeskError::NotFound)?;
            let list = messages
                .iter()
                .map(|m| wire_chat::message(c.id.as_str(), m))
                .collect();
            vec![state(Some(&c), Some(list))]
        }
        ChatUp::Say {
            id,
            text,
            intervention,
            rule,
        } => {
            let id = beckon_agent::desk::check_client_id(&id)?;
            let said = desk
                .say(
                    who,
                    id.clone(),
                    &text,
                    &opening(site, rule, intervention, None),
                )
                .await?;
            let mut frames = vec![ChatDown::Said {
                id,
                seq: said.message.seq,
            }];
            if said.conversation.last_seq == 0 {
                // This message opened the conversation: a tab without a socket learns of it
                // here (a socket hears it from the desk too).
                frames.push(state(Some(&said.conversation), None));
            }
            frames
        }
        ChatUp::Typing { on } => {
            desk.visitor_typing(who, on).await?;
            Vec::new()
        }
        ChatUp::Read { seq } => {
            desk.visitor_read(who, seq).await?;
            Vec::new()
        }
        ChatUp::Handoff => {
            let c = desk.ask_person(who).await?;
            vec![state(Some(&c), None)]
        }
        ChatUp::FollowUp { email, name } => {
            let c = desk.leave_email(who, &email, &name).await?;
            vec![state(Some(&c), None)]
        }
        ChatUp::ChatEnd => {
            let c = desk.visitor_close(who).await?;
            vec![state(Some(&c), None)]
        }
        ChatUp::Rate { score, comment } => {
            let c = desk.rate(who, score, &comment).await?;
            vec![state(Some(&c), None)]
        }
    })
}

/// A pre-chat field: text, at most `max` characters.
fn field(value: &str, max: usize, name: &str) -> Result<String, DeskError> {
    let v = value.trim();
    if v.chars().count() > max {
        return Err(DeskError::Invalid(format!(
            "{name} holds at most {max} characters"
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(DeskError::Invalid(format!(
            "{name} may not hold control characters"
        )));
    }
    Ok(v.to_owned())
}

/// Tells the open tabs of each visitor a person started a conversation with to open the chat,
/// through the shard that holds their sockets.
pub async fn invite_tabs(
    desk: Desk,
    shards: crate::shard::Shards,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut invites = desk.watch_invites();
    loop {
        let next = tokio::select! {
            next = invites.recv() => next,
            () = shutdown.cancelled() => return,
        };
        match next {
            Ok((site, visitor)) => {
                let notify = crate::shard::ShardMsg::Notify {
                    key: (site, visitor.clone()),
                    frame: Box::new(crate::wire::DownFrame::ChatInvite),
                };
                let _ = shards.send(&visitor, notify).await;
            }
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        }
    }
}

/// How many lines tell the engine of conversations at once; each visitor's events keep to one
/// line, in order.
const LINES: usize = 16;
/// The longest wait between two tries of telling the engine.
const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);

/// Tells the engine when each conversation begins and ends, as the server's own events of the
/// visitor (`conversation_started`, `conversation_ended`): while one runs, the engine fires
/// nothing for them, whether the chat is open on screen or not. Every start and end is told,
/// and each visitor's in the order they happened: the events are spread over [`LINES`] by
/// visitor, and a line tries its next event again (backing off) until it is stored or the
/// server stops. A later event never passes an earlier one of the same visitor.
pub async fn tell_the_engine(
    state: crate::AppState,
    mut lifecycle: tokio::sync::mpsc::UnboundedReceiver<beckon_agent::desk::Lifecycle>,
) {
    use std::hash::{Hash, Hasher};
    let mut lines = Vec::with_capacity(LINES);
    for _ in 0..LINES {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<beckon_agent::desk::Lifecycle>();
        let state = state.clone();
        tokio::spawn(async move {
            while let Some(l) = rx.recv().await {
                if !tell(&state, &l).await {
                    return; // the server is stopping
                }
            }
        });
        lines.push(tx);
    }
    loop {
        let next = tokio::select! {
            next = lifecycle.recv() => next,
            () = state.shutdown.cancelled() => return,
        };
        let Some(l) = next else {
            return;
        };
        let mut h = std::hash::DefaultHasher::new();
        (&l.site, &l.visitor).hash(&mut h);
        let _ = lines[(h.finish() as usize) % LINES].send(l);
    }
}

/// Tells one event, trying again until it is stored; `false` when the server stops first. In a
/// cluster the event is decided by the visitor's owner: it is sent there when that is another
/// node (whose answer comes once it is stored).
async fn tell(state: &crate::AppState, l: &beckon_agent::desk::Lifecycle) -> bool {
    let Some(site) = state.sites.get_id(&l.site) else {
        return true; // the site is gone: nothing to tell
    };
    let conversation = l.conversation.to_string();
    let mut wait = std::time::Duration::from_millis(100);
    loop {
        // The owner is asked again on every try: it may have changed since the last.
        let told = match state.placement.route(&l.site, &l.visitor) {
            crate::placement::Route::Here => tell_here(
                state,
                site.clone(),
                l.visitor.as_str(),
                &conversation,
                l.running,
            )
            .await
            .map_err(|e| format!("{e:?}")),
            crate::placement::Route::Owner(node) => {
                tell_owner(state, &node, l, &conversation).await
            }
        };
        match told {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(conversation = %l.conversation, error = %e, "telling the engine of a conversation; trying again");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = state.shutdown.cancelled() => return false,
        }
        wait = (wait * 2).min(MAX_BACKOFF);
    }
}

/// Submits a conversation's start (`running`) or end as the server's own event of `visitor`,
/// on this node.
pub async fn tell_here(
    state: &crate::AppState,
    site: std::sync::Arc<SiteRuntime>,
    visitor: &str,
    conversation: &str,
    running: bool,
) -> Result<(), crate::intake::IntakeError> {
    let (kind, end) = if running {
        ("conversation_started", "start")
    } else {
        ("conversation_ended", "end")
    };
    // The same id on every try: a try whose answer was lost is a duplicate, stored once.
    let event = serde_json::json!({
        "id": format!("server:{conversation}:{end}"),
        "type": kind,
    });
    let from = crate::intake::Sender {
        site,
        claim: crate::intake::Claim::Backend { visitor },
        session: None,
        user_agent: "",
        hints: &crate::edge::ClientHints::default(),
        context: &crate::wire::ClientContext::default(),
    };
    crate::intake::submit(state, from, vec![event])
        .await
        .map(|_| ())
}

/// Tells `owner`, the visitor's node, of a conversation's start or end, with the cluster's
/// secret; `Ok` once the owner answered that it stored it.
async fn tell_owner(
    state: &crate::AppState,
    owner: &beckon_store::cluster::NodeLease,
    l: &beckon_agent::desk::Lifecycle,
    conversation: &str,
) -> Result<(), String> {
    use crate::routes::server_events::{CONVERSATION_NEWS, ConversationNews};
    let news = ConversationNews {
        site: l.site.as_str().to_owned(),
        visitor: l.visitor.as_str().to_owned(),
        conversation: conversation.to_owned(),
        running: l.running,
    };
    let body = serde_json::to_vec(&news).map_err(|e| e.to_string())?;
    let answer = state
        .forwarder
        .post(format!("http://{}{CONVERSATION_NEWS}", owner.address))
        .header(crate::placement::FORWARDED, state.placement.secret())
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("node {} did not answer: {e}", owner.name))?;
    if answer.status().is_success() {
        Ok(())
    } else {
        Err(format!("node {} answered {}", owner.name, answer.status()))
    }
}
