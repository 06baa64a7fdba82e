//! A site's destinations (webhooks, e-mail, team chat) and the deliveries made to them. Only
//! administrators manage destinations (a webhook's secret is theirs to see); agents and
//! administrators both read the deliveries and replay a dead one.

use beckon_outbox::payload;
use beckon_store::outbox::{
    Attempt, Delivery, DeliveryId, DeliveryQuery, DeliveryStatus, Destination, DestinationId,
    PreviousSecret, Target, Topic,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AdminState;
use crate::auth::Actor;
use crate::clock::now;
use crate::error::{AdminError, AdminResult};
use crate::manage::rfc3339;

/// How long a rotated-out secret still signs, beside the new one.
pub const ROTATION_OVERLAP_MS: i64 = 24 * 3_600_000;

/// The most destinations a site may have.
pub const MAX_DESTINATIONS: usize = 50;

/// A destination.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DestinationView {
    /// Its id.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// `webhook`, `email` or `slack`.
    pub kind: String,
    /// The webhook's or the team chat's address.
    pub url: Option<String>,
    /// The e-mail addresses.
    pub to: Vec<String>,
    /// Whether the visitor gets a confirmation.
    pub confirm_visitor: bool,
    /// The webhook's signing secret (`whsec_…`).
    pub secret: Option<String>,
    /// Until when the previous secret still signs, during a rotation.
    pub previous_secret_until: Option<String>,
    /// What it takes.
    pub topics: Vec<String>,
    /// Whether it takes anything now.
    pub enabled: bool,
    /// Why the system turned it off.
    pub disabled_reason: Option<String>,
    /// When it was made.
    pub created_at: String,
}

impl From<&Destination> for DestinationView {
    fn from(d: &Destination) -> DestinationView {
        let (url, to, confirm, secret, until) = match &d.target {
            Target::Webhook {
                url,
                secret,
                previous,
            } => (
                Some(url.clone()),
                Vec::new(),
                false,
                Some(secret.clone()),
                previous.as_ref().map(|p| rfc3339(p.until)),
            ),
            Target::Email {
                to,
                confirm_visitor,
            } => (None, to.clone(), *confirm_visitor, None, None),
            Target::Slack { url } => (Some(url.clone()), Vec::new(), false, None, None),
        };
        DestinationView {
            id: d.id.to_string(),
            name: d.name.clone(),
            kind: d.target.kind().to_owned(),
            url,
            to,
            confirm_visitor: confirm,
            secret,
            previous_secret_until: until,
            topics: d.topics.iter().map(|t| t.as_str().to_owned()).collect(),
            enabled: d.enabled,
            disabled_reason: d.disabled_reason.clone(),
            created_at: rfc3339(d.created_at),
        }
    }
}

/// A destination to make, or the new state of one.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationBody {
    /// A name for people.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub name: String,
    /// `webhook`, `email` or `slack` (fixed once made).
    #[schema(pattern = "^(webhook|email|slack)$")]
    pub kind: String,
    /// For a webhook or team chat: its address (https, or http to this machine).
    #[serde(default)]
    pub url: Option<String>,
    /// For e-mail: the team's addresses.
    #[serde(default)]
    pub to: Vec<String>,
    /// For e-mail: also confirm to the visitor.
    #[serde(default)]
    pub confirm_visitor: bool,
    /// What it takes (topic names); empty: every topic its kind can take.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Whether it takes anything (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// A delivery.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// Its id, which is the receiver's idempotency key (`webhook-id`).
    pub id: String,
    /// Where it goes.
    pub destination: String,
    /// What it announces.
    pub topic: String,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    /// Tries so far (since its last replay).
    pub attempts: u32,
    /// When it is next tried, while pending.
    pub next_at: Option<String>,
    /// When it was made.
    pub created_at: String,
    /// When it landed.
    pub delivered_at: Option<String>,
    /// The last try's failure.
    pub last_error: Option<String>,
    /// The lead it announces.
    pub lead: Option<String>,
    /// The visitor's confirmation rather than the team's copy.
    pub to_visitor: bool,
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> DeliveryView {
        DeliveryView {
            id: d.id.to_string(),
            destination: d.destination.to_string(),
            topic: d.topic.as_str().to_owned(),
            status: d.status.as_str().to_owned(),
            attempts: d.attempts,
            next_at: (d.status == DeliveryStatus::Pending).then(|| rfc3339(d.next_at)),
            created_at: rfc3339(d.created_at),
            delivered_at: d.delivered_at.map(rfc3339),
            last_error: d.last_error.clone(),
            lead: d.lead.as_ref().map(|l| l.to_string()),
            to_visitor: d.to_visitor,
        }
    }
}

/// One try.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AttemptView {
    /// When.
    pub at: String,
    /// The status answered (HTTP or SMTP).
    pub status: Option<u16>,
    /// What went wrong.
    pub error: Option<String>,
    /// How long it took, in milliseconds.
    pub took_ms: u32,
}

impl From<&Attempt> for AttemptView {
    fn from(a: &Attempt) -> AttemptView {
        AttemptView {
            at: rfc3339(a.at),
            status: a.status,
            error: a.error.clone(),
            took_ms: a.took_ms,
        }
    }
}

/// A delivery with its tries and body.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DeliveryDetail {
    /// The delivery.
    pub delivery: DeliveryView,
    /// The body sent (JSON).
    pub payload: String,
    /// Every try, oldest first.
    pub attempts: Vec<AttemptView>,
}

/// The topics a kind of destination can take.
pub fn topics_of(kind: &str) -> &'static [Topic] {
    match kind {
        "email" => &[Topic::LeadCreated, Topic::LeadOverdue],
        "slack" => &[
            Topic::LeadCreated,
            Topic::LeadOverdue,
            Topic::ConversationHandedOff,
        ],
        _ => &[
            Topic::LeadCreated,
            Topic::LeadOverdue,
            Topic::LeadUpdated,
            Topic::ConversationStarted,
            Topic::ConversationHandedOff,
            Topic::ConversationClosed,
            Topic::ConversationRated,
        ],
    }
}

fn invalid(field: &str, message: String) -> AdminError {
    AdminError::Invalid {
        field: Some(field.to_owned()),
        message,
    }
}

fn check(
    body: &DestinationBody,
    existing: Option<&Destination>,
    allow_private: bool,
) -> AdminResult<(Target, Vec<Topic>)> {
    let check_url = |url: &str| {
        beckon_outbox::endpoint::check(url, allow_private)
            .map(|u| u.to_string())
            .map_err(|e| invalid("url", e))
    };
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(invalid("name", "a name of 1 to 100 characters".to_owned()));
    }
    let allowed = topics_of(&body.kind);
    let topics: Vec<Topic> = if body.topics.is_empty() {
        allowed.to_vec()
    } else {
        let mut out = Vec::new();
        for t in &body.topics {
            let topic = Topic::parse(t)
                .filter(|t| allowed.contains(t))
                .ok_or_else(|| {
                    invalid(
                        "topics",
                        format!(
                            "a {} destination takes {}, not {t:?}",
                            body.kind,
                            allowed
                                .iter()
                                .map(|t| t.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
            if !out.contains(&topic) {
                out.push(topic);
            }
        }
        out
    };
    let target = match body.kind.as_str() {
        "webhook" => {
            let url = check_url(body.url.as_deref().unwrap_or(""))?;
            match existing.map(|d| &d.target) {
                Some(Target::Webhook {
                    secret, previous, ..
                }) => Target::Webhook {
                    url,
                    secret: secret.clone(),
                    previous: previous.clone(),
                },
                _ => Target::Webhook {
                    url,
                    secret: beckon_outbox::new_secret(),
                    previous: None,
                },
            }
        }
        "slack" => Target::Slack {
            url: check_url(body.url.as_deref().unwrap_or(""))?,
        },
        "email" => {
            if body.to.is_empty() || body.to.len() > 20 {
                return Err(invalid("to", "one to twenty addresses".to_owned()));
            }
            let to = body
                .to
                .iter()
                .map(|a| beckon_outbox::check_email(a).map_err(|e| invalid("to", e)))
                .collect::<AdminResult<Vec<_>>>()?;
            Target::Email {
                to,
                confirm_visitor: body.confirm_visitor,
            }
        }
        other => {
            return Err(invalid(
                "kind",
                format!("kind {other:?} is not webhook, email or slack"),
            ));
        }
    };
    if let Some(d) = existing
        && d.target.kind() != target.kind()
    {
        return Err(invalid(
            "kind",
            format!(
                "a {} destination stays one; make a new destination",
                d.target.kind()
            ),
        ));
    }
    Ok((target, topics))
}

fn destination_id(id: &str) -> AdminResult<DestinationId> {
    DestinationId::parse(id).ok_or_else(|| AdminError::NotFound(format!("no destination {id:?}")))
}

fn delivery_id(id: &str) -> AdminResult<DeliveryId> {
    DeliveryId::parse(id).ok_or_else(|| AdminError::NotFound(format!("no delivery {id:?}")))
}

async fn one(state: &AdminState, actor: &Actor, key: &str, id: &str) -> AdminResult<Destination> {
    let site = actor.site(key)?;
    let id = destination_id(id)?;
    state
        .outbox
        .destination(&site, &id)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no destination {id}")))
}

/// A site's destinations (administrators only: they hold the signing secrets).
pub async fn list(
    state: &AdminState,
    actor: &Actor,
    key: &str,
) -> AdminResult<Vec<DestinationView>> {
    let site = actor.site(key)?;
    actor.require_admin()?;
    let all = state.outbox.destinations(&site).await?;
    Ok(all.iter().map(DestinationView::from).collect())
}

/// One destination.
pub async fn get(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    id: &str,
) -> AdminResult<DestinationView> {
    actor.require_admin()?;
    Ok(DestinationView::from(&one(state, actor, key, id).await?))
}

/// Makes a destination; a webhook gets its own new secret.
pub async fn create(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    body: DestinationBody,
) -> AdminResult<DestinationView> {
    let site = actor.site(key)?;
    actor.require_admin()?;
    if state.outbox.destinations(&site).await?.len() >= MAX_DESTINATIONS {
        return Err(AdminError::Conflict(format!(
            "a site has at most {MAX_DESTINATIONS} destinations"
        )));
    }
    let (target, topics) = check(&body, None, state.allow_private_destinations)?;
    let d = Destination {
        id: DestinationId::random(),
        site,
        name: body.name.trim().to_owned(),
        target,
        topics,
        enabled: body.enabled,
        disabled_reason: None,
        created_at: now(),
    };
    state.outbox.put_destination(&d).await?;
    Ok(DestinationView::from(&d))
}

/// Changes a destination (its kind stays; a webhook keeps its secret). Turning it on clears
/// why the system turned it off.
pub async fn update(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    id: &str,
    body: DestinationBody,
) -> AdminResult<DestinationView> {
    actor.require_admin()?;
    let current = one(state, actor, key, id).await?;
    let (target, topics) = check(&body, Some(&current), state.allow_private_destinations)?;
    let d = Destination {
        name: body.name.trim().to_owned(),
        target,
        topics,
        enabled: body.enabled,
        disabled_reason: if body.enabled {
            None
        } else {
            current.disabled_reason.clone()
        },
        ..current
    };
    state.outbox.put_destination(&d).await?;
    Ok(DestinationView::from(&d))
}

/// Removes a destination; what was still pending for it dies.
pub async fn delete(state: &AdminState, actor: &Actor, key: &str, id: &str) -> AdminResult<()> {
    actor.require_admin()?;
    let d = one(state, actor, key, id).await?;
    state
        .outbox
        .delete_destination(&d.site, &d.id, now())
        .await?;
    Ok(())
}

/// A new signing secret for a webhook; the old one keeps signing beside it for a day, so
/// receivers can switch over without refusing anything.
pub async fn rotate_secret(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    id: &str,
) -> AdminResult<DestinationView> {
    actor.require_admin()?;
    let mut d = one(state, actor, key, id).await?;
    let Target::Webhook {
        secret, previous, ..
    } = &mut d.target
    else {
        return Err(AdminError::Conflict(format!(
            "only a webhook has a signing secret; {} is a {} destination",
            d.id,
            d.target.kind()
        )));
    };
    *previous = Some(PreviousSecret {
        secret: std::mem::replace(secret, beckon_outbox::new_secret()),
        until: now().plus_ms(ROTATION_OVERLAP_MS),
    });
    state.outbox.put_destination(&d).await?;
    Ok(DestinationView::from(&d))
}

/// Sends a signed sample to one destination now; returns the delivery to follow.
pub async fn test(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    id: &str,
) -> AdminResult<DeliveryView> {
    actor.require_admin()?;
    let d = one(state, actor, key, id).await?;
    if !d.enabled {
        return Err(AdminError::Conflict(format!(
            "{} is turned off; turn it on to test it",
            d.name
        )));
    }
    let at = now();
    let delivery = state
        .outbox
        .enqueue_to(&d.site, &d.id, &payload::sample(at), at)
        .await?;
    let (made, _) = state
        .outbox
        .delivery(&d.site, &delivery)
        .await?
        .ok_or_else(|| AdminError::Store("a delivery just made is gone".to_owned()))?;
    Ok(DeliveryView::from(&made))
}

/// Which deliveries to list.
#[derive(Clone, Debug, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryFilter {
    /// `pending`, `delivered` or `dead`.
    #[param(pattern = "^(pending|delivered|dead)$")]
    pub status: Option<String>,
    /// Only to this destination.
    #[param(pattern = "^d_[0-9a-z]{16}$")]
    pub destination: Option<String>,
    /// At most this many (1–1000, 100 by default).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// A site's deliveries, newest first.
pub async fn deliveries(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    filter: &DeliveryFilter,
) -> AdminResult<Vec<DeliveryView>> {
    let site = actor.site(key)?;
    let status = match filter.status.as_deref() {
        None => None,
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            AdminError::BadRequest(format!("status {s:?} is not pending, delivered or dead"))
        })?),
    };
    let limit = crate::manage::limit_of(filter.limit, 100)?;
    let destination = filter
        .destination
        .as_deref()
        .map(destination_id)
        .transpose()?;
    let found = state
        .outbox
        .deliveries(
            &site,
            &DeliveryQuery {
                status,
                destination,
                lead: None,
                limit,
            },
        )
        .await?;
    Ok(found.iter().map(DeliveryView::from).collect())
}

/// One delivery with its tries.
pub async fn delivery(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    id: &str,
) -> AdminResult<DeliveryDetail> {
    let site = actor.site(key)?;
    let id = delivery_id(id)?;
    let (d, tries) = state
        .outbox
        .delivery(&site, &id)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no delivery {id}")))?;
    Ok(DeliveryDetail {
        delivery: DeliveryView::from(&d),
        payload: d.payload.clone(),
        attempts: tries.iter().map(AttemptView::from).collect(),
    })
}

/// Tries a delivery again now, with a fresh set of tries (a dead one replayed by hand).
pub async fn replay(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    id: &str,
) -> AdminResult<DeliveryView> {
    let site = actor.site(key)?;
    let id = delivery_id(id)?;
    state.outbox.replay(&site, &id, now()).await?;
    Ok(delivery(state, actor, key, id.as_str()).await?.delivery)
}
