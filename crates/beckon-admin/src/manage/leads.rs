//! Leads and their follow-up, as the dashboard and the API see them. Agents and administrators
//! of a site both work its leads (status, owner); only administrators change its follow-up
//! settings.

use beckon_engine::Timestamp;
use beckon_outbox::payload;
use beckon_store::leads::{
    Consent, EmailWording, Lead, LeadChange, LeadContext, LeadId, LeadQuery, LeadSettings,
    LeadSource, LeadStatus, NewLead,
};
use beckon_store::outbox::DeliveryQuery;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AdminState;
use crate::auth::Actor;
use crate::clock::now;
use crate::error::{AdminError, AdminResult};
use crate::manage::conversations::ContextView;
use crate::manage::outbox::DeliveryView;
use crate::manage::rfc3339;

/// One line of a chat transcript.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LineView {
    /// `visitor`, `ai`, `agent` or `system`.
    pub author: String,
    /// What was written.
    pub text: String,
    /// When (RFC 3339).
    pub at: String,
}

/// A lead.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LeadView {
    /// Its id.
    pub id: String,
    /// The visitor it came from.
    pub visitor: Option<String>,
    /// The address.
    pub email: String,
    /// Their name.
    pub name: String,
    /// Their question.
    pub question: String,
    /// The consent wording they agreed to.
    pub consent: String,
    /// When they agreed (RFC 3339).
    pub consent_at: String,
    /// `capture`, `chat` or `api`.
    pub source: String,
    /// `new`, `contacted`, `won` or `lost`.
    pub status: String,
    /// The person following it up.
    pub owner: Option<i64>,
    /// Still new past the site's time limit.
    pub overdue: bool,
    /// When it was captured (RFC 3339).
    pub created_at: String,
    /// When it was first contacted.
    pub contacted_at: Option<String>,
    /// The rule whose message captured it.
    pub rule: Option<String>,
    /// The intervention.
    pub intervention: Option<String>,
    /// The conversation it was left in.
    pub conversation: Option<String>,
    /// The visit.
    pub context: ContextView,
    /// The chat so far.
    pub transcript: Vec<LineView>,
}

impl LeadView {
    /// The view of `l` under a follow-up limit of `limit_minutes`, at `now`.
    pub fn of(l: &Lead, limit_minutes: u32, now: Timestamp) -> LeadView {
        let overdue = l.status == LeadStatus::New
            && now.ms_since(l.created_at) >= i64::from(limit_minutes) * 60_000;
        LeadView {
            id: l.id.to_string(),
            visitor: l.visitor.as_ref().map(|v| v.as_str().to_owned()),
            email: l.email.clone(),
            name: l.name.clone(),
            question: l.question.clone(),
            consent: l.consent.text.clone(),
            consent_at: rfc3339(l.consent.at),
            source: l.source.as_str().to_owned(),
            status: l.status.as_str().to_owned(),
            owner: l.owner,
            overdue,
            created_at: rfc3339(l.created_at),
            contacted_at: l.contacted_at.map(rfc3339),
            rule: l.context.rule.clone(),
            intervention: l.context.intervention.clone(),
            conversation: l.context.conversation.as_ref().map(|c| c.to_string()),
            context: ContextView::from(&l.context.visit),
            transcript: l
                .context
                .transcript
                .iter()
                .map(|line| LineView {
                    author: serde_json::to_value(line.author)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    text: line.text.clone(),
                    at: rfc3339(line.at),
                })
                .collect(),
        }
    }
}

/// A lead with its delivery history.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LeadDetail {
    /// The lead.
    pub lead: LeadView,
    /// Every delivery that announced it, newest first.
    pub deliveries: Vec<DeliveryView>,
}

/// Which leads to list.
#[derive(Clone, Debug, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LeadFilter {
    /// Words in the address, name or question.
    pub q: Option<String>,
    /// `new`, `contacted`, `won` or `lost`.
    #[param(pattern = "^(new|contacted|won|lost)$")]
    pub status: Option<String>,
    /// Only those still new past the site's time limit.
    pub overdue: Option<bool>,
    /// At most this many (1–1000, 100 by default).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Skip this many (at most 100,000).
    #[param(minimum = 0, maximum = 100_000)]
    pub offset: Option<u32>,
}

/// A change of a lead.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadUpdate {
    /// `new`, `contacted`, `won` or `lost`.
    #[schema(pattern = "^(new|contacted|won|lost)$")]
    pub status: Option<String>,
    /// The person following it up (a member's id); `null` for nobody.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1)]
    pub owner: Option<Option<i64>>,
}

/// A lead entered by hand or by a script.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLeadBody {
    /// The address.
    #[schema(min_length = 3, max_length = 254)]
    pub email: String,
    /// Their name.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub name: String,
    /// Their question.
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub question: String,
    /// What they agreed to, in the words they were shown.
    #[schema(min_length = 1, max_length = 2000)]
    pub consent: String,
}

/// A site's follow-up figures.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct FiguresView {
    /// Leads captured in the range.
    pub captured: u64,
    /// Contacted at all.
    pub contacted: u64,
    /// Contacted within the time limit.
    pub contacted_in_time: u64,
    /// Still new past the limit.
    pub overdue: u64,
    /// Won.
    pub won: u64,
    /// Share contacted (0–1).
    pub follow_up_rate: f64,
    /// Median time from capture to first contact, in seconds.
    pub median_contact_secs: Option<i64>,
    /// The range's start (RFC 3339).
    pub from: String,
    /// Its end.
    pub to: String,
}

/// A site's follow-up settings.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadSettingsView {
    /// A lead still new this many minutes after its capture is overdue (0–525600).
    #[schema(maximum = 525_600)]
    #[serde(deserialize_with = "minutes")]
    pub follow_up_minutes: u32,
    /// The e-mails' wording per language (empty: the built-in wording).
    #[serde(default)]
    #[schema(value_type = Vec<WordingDoc>)]
    pub wording: Vec<EmailWording>,
}

/// An e-mail's wording in one language; `{{ email }}`, `{{ name }}`, `{{ question }}`,
/// `{{ page }}`, `{{ cart }}`, `{{ rule }}`, `{{ site }}`, `{{ created_at }}`, `{{ consent }}`
/// and `{{ id }}` are filled in (minijinja).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct WordingDoc {
    /// The language (BCP 47 primary tag).
    #[schema(pattern = "^[A-Za-z0-9-]{2,8}$")]
    language: String,
    /// The team's e-mail: subject.
    #[schema(max_length = 10000)]
    team_subject: String,
    /// The team's e-mail: body.
    #[schema(max_length = 10000)]
    team_body: String,
    /// The visitor's confirmation: subject.
    #[schema(max_length = 10000)]
    visitor_subject: String,
    /// The visitor's confirmation: body.
    #[schema(max_length = 10000)]
    visitor_body: String,
}

/// A field that is present (even as `null`) is `Some`; an absent one stays `None`. A whole
/// number is taken as JSON Schema has it (`7` and `7.0` alike).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    let owner = crate::api::whole::option(d)?;
    owner
        .map(|o| i64::try_from(o).map_err(|_| serde::de::Error::custom("owner is too large")))
        .transpose()
        .map(Some)
}

fn minutes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = crate::api::whole::required(d)?;
    u32::try_from(n).map_err(|_| serde::de::Error::custom(format!("{n} minutes is too many")))
}

fn lead_id(id: &str) -> AdminResult<LeadId> {
    LeadId::parse(id).ok_or_else(|| AdminError::NotFound(format!("no lead {id:?}")))
}

fn status(s: &str) -> AdminResult<LeadStatus> {
    LeadStatus::parse(s).ok_or_else(|| AdminError::Invalid {
        field: Some("status".to_owned()),
        message: format!("status {s:?} is not new, contacted, won or lost"),
    })
}

/// A site's leads, newest first.
pub async fn list(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    filter: &LeadFilter,
) -> AdminResult<Vec<LeadView>> {
    let site = actor.site(key)?;
    let settings = state.leads.lead_settings(&site).await?;
    let now = now();
    let limit = crate::manage::limit_of(filter.limit, 100)?;
    let query = LeadQuery {
        text: filter.q.clone().filter(|q| !q.trim().is_empty()),
        status: filter.status.as_deref().map(status).transpose()?,
        new_before: filter
            .overdue
            .filter(|o| *o)
            .map(|_| now.plus_ms(-i64::from(settings.follow_up_minutes) * 60_000 + 1)),
        limit,
        offset: match filter.offset {
            Some(n) if n > 100_000 => {
                return Err(AdminError::BadRequest(format!(
                    "offset {n} is more than 100000; narrow the search instead"
                )));
            }
            n => n.unwrap_or(0) as usize,
        },
        ..LeadQuery::default()
    };
    let leads = state.leads.leads(&site, &query).await?;
    Ok(leads
        .iter()
        .map(|l| LeadView::of(l, settings.follow_up_minutes, now))
        .collect())
}

/// One lead with its deliveries.
pub async fn get(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    id: &str,
) -> AdminResult<LeadDetail> {
    let site = actor.site(key)?;
    let id = lead_id(id)?;
    let lead = state
        .leads
        .lead(&site, &id)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no lead {id}")))?;
    let settings = state.leads.lead_settings(&site).await?;
    let deliveries = state
        .outbox
        .deliveries(
            &site,
            &DeliveryQuery {
                lead: Some(id),
                ..DeliveryQuery::default()
            },
        )
        .await?;
    Ok(LeadDetail {
        lead: LeadView::of(&lead, settings.follow_up_minutes, now()),
        deliveries: deliveries.iter().map(DeliveryView::from).collect(),
    })
}

/// Changes a lead's status or owner, announcing it (`lead.updated`).
pub async fn update(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    id: &str,
    body: LeadUpdate,
) -> AdminResult<LeadView> {
    let site = actor.site(key)?;
    let id = lead_id(id)?;
    let change = LeadChange {
        status: body.status.as_deref().map(status).transpose()?,
        owner: body.owner,
    };
    if change.status.is_none() && change.owner.is_none() {
        return Err(AdminError::Invalid {
            field: None,
            message: "say what changes: a status, an owner or both".to_owned(),
        });
    }
    if let Some(Some(owner)) = change.owner {
        let members = state.accounts.members(&site).await?;
        if !members.iter().any(|m| m.id == owner) {
            return Err(AdminError::Invalid {
                field: Some("owner".to_owned()),
                message: format!("person {owner} is not a member of site {site}"),
            });
        }
    }
    let at = now();
    let current = state
        .leads
        .lead(&site, &id)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no lead {id}")))?;
    // What it will be, announced in the same write as the change.
    let mut after = current.clone();
    if let Some(s) = change.status {
        if s != LeadStatus::New && after.contacted_at.is_none() {
            after.contacted_at = Some(at);
        }
        after.status = s;
    }
    if let Some(o) = change.owner {
        after.owner = o;
    }
    let changed = state
        .leads
        .change_lead(
            &site,
            &id,
            &change,
            at,
            &[payload::lead_updated(&after, at)],
        )
        .await?;
    let settings = state.leads.lead_settings(&site).await?;
    Ok(LeadView::of(&changed, settings.follow_up_minutes, at))
}

/// Captures a lead entered by hand or by a script.
pub async fn create(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    body: NewLeadBody,
) -> AdminResult<LeadView> {
    let site = actor.site(key)?;
    let invalid = |field: &str, message: String| AdminError::Invalid {
        field: Some(field.to_owned()),
        message,
    };
    let email = beckon_outbox::check_email(&body.email).map_err(|e| invalid("email", e))?;
    let consent = body.consent.trim();
    if consent.is_empty() {
        return Err(invalid(
            "consent",
            "say what the person agreed to: a lead is only taken with their consent".to_owned(),
        ));
    }
    for (field, text, longest) in [
        ("name", &body.name, 200),
        ("question", &body.question, 2000),
        ("consent", &body.consent, 2000),
    ] {
        if text.chars().count() > longest {
            return Err(invalid(
                field,
                format!("{field} is longer than {longest} characters"),
            ));
        }
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(invalid(field, format!("{field} holds control characters")));
        }
    }
    let at = now();
    let mut lead = NewLead {
        id: LeadId::random(),
        site: site.clone(),
        visitor: None,
        email,
        name: body.name.trim().to_owned(),
        question: body.question.trim().to_owned(),
        consent: Consent {
            text: consent.to_owned(),
            at,
        },
        source: LeadSource::Api,
        context: LeadContext::default(),
        at,
        announce: Vec::new(),
    };
    lead.announce = vec![payload::lead_created(&lead)];
    let stored = state.leads.capture_lead(&lead).await?;
    let settings = state.leads.lead_settings(&site).await?;
    Ok(LeadView::of(&stored, settings.follow_up_minutes, at))
}

/// The leads of `filter` as CSV: one row each, the context flattened.
pub async fn csv(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    filter: &LeadFilter,
) -> AdminResult<String> {
    // `limit`, when given, caps the rows (checked as the list checks it).
    let cap = crate::manage::limit_of(filter.limit, 100_000)?;
    let mut all = LeadFilter {
        limit: Some(cap.min(1000) as u32),
        ..filter.clone()
    };
    let mut rows = Vec::new();
    loop {
        let page = list(state, actor, key, &all).await?;
        let n = page.len();
        rows.extend(page);
        if n < 1000 || rows.len() >= cap {
            break;
        }
        all.offset = Some(filter.offset.unwrap_or(0) + rows.len() as u32);
    }
    let mut out = csv::Writer::from_writer(Vec::new());
    let header = [
        "id",
        "created_at",
        "status",
        "overdue",
        "owner",
        "email",
        "name",
        "question",
        "source",
        "consent",
        "consent_at",
        "rule",
        "intervention",
        "page",
        "cart_value",
        "cart_currency",
        "language",
        "contacted_at",
        "conversation",
    ];
    let fail = |e: csv::Error| AdminError::Store(format!("cannot write the CSV: {e}"));
    out.write_record(header).map_err(fail)?;
    for l in rows {
        let page = l
            .context
            .pages
            .last()
            .map(|p| p.path.clone())
            .unwrap_or_default();
        let cart = l.context.cart.as_ref();
        let cells = [
            l.id,
            l.created_at,
            l.status,
            l.overdue.to_string(),
            l.owner.map(|o| o.to_string()).unwrap_or_default(),
            l.email,
            l.name,
            l.question,
            l.source,
            l.consent,
            l.consent_at,
            l.rule.unwrap_or_default(),
            l.intervention.unwrap_or_default(),
            page,
            cart.map(|c| c.value.to_string()).unwrap_or_default(),
            cart.map(|c| c.currency.clone()).unwrap_or_default(),
            l.context.language.clone(),
            l.contacted_at.unwrap_or_default(),
            l.conversation.unwrap_or_default(),
        ];
        // Every cell, whoever wrote it: a spreadsheet must run none of them.
        out.write_record(cells.iter().map(|c| defuse(c)))
            .map_err(fail)?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| AdminError::Store(format!("cannot write the CSV: {e}")))?;
    String::from_utf8(bytes).map_err(|e| AdminError::Store(e.to_string()))
}

/// A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, carriage return)
/// gets a leading apostrophe: what a visitor typed never runs in the site owner's spreadsheet.
pub(crate) fn defuse(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_owned()
    }
}

/// A site's follow-up figures over the last `days` days.
pub async fn figures(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    days: u32,
) -> AdminResult<FiguresView> {
    let site = actor.site(key)?;
    if !(1..=3650).contains(&days) {
        return Err(AdminError::BadRequest(format!(
            "days {days} is not between 1 and 3650"
        )));
    }
    let to = now();
    let from = to.plus_ms(-i64::from(days) * 86_400_000);
    let f = state
        .leads
        .lead_figures(&site, from, to.plus_ms(1), to)
        .await?;
    Ok(FiguresView {
        captured: f.captured,
        contacted: f.contacted,
        contacted_in_time: f.contacted_in_time,
        overdue: f.overdue,
        won: f.won,
        follow_up_rate: f.follow_up_rate(),
        median_contact_secs: f.median_contact_secs,
        from: rfc3339(from),
        to: rfc3339(to),
    })
}

/// A site's follow-up settings.
pub async fn settings(
    state: &AdminState,
    actor: &Actor,
    key: &str,
) -> AdminResult<LeadSettingsView> {
    let site = actor.site(key)?;
    let s = state.leads.lead_settings(&site).await?;
    Ok(LeadSettingsView {
        follow_up_minutes: s.follow_up_minutes,
        wording: if s.wording.is_empty() {
            beckon_outbox::email::built_in()
        } else {
            s.wording
        },
    })
}

/// Saves a site's follow-up settings (administrators only).
pub async fn save_settings(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    body: LeadSettingsView,
) -> AdminResult<LeadSettingsView> {
    let site = actor.site(key)?;
    actor.require_admin()?;
    if body.follow_up_minutes > 525_600 {
        return Err(AdminError::Invalid {
            field: Some("follow_up_minutes".to_owned()),
            message: "follow_up_minutes is at most 525600 (a year)".to_owned(),
        });
    }
    let mut languages = std::collections::HashSet::new();
    for w in &body.wording {
        let ok = (2..=8).contains(&w.language.len())
            && w.language
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok || !languages.insert(w.language.clone()) {
            return Err(AdminError::Invalid {
                field: Some("wording".to_owned()),
                message: format!(
                    "language {:?} is not a language tag, or is listed twice",
                    w.language
                ),
            });
        }
        for text in [
            &w.team_subject,
            &w.team_body,
            &w.visitor_subject,
            &w.visitor_body,
        ] {
            if text.chars().count() > 10_000 {
                return Err(AdminError::Invalid {
                    field: Some("wording".to_owned()),
                    message: "a wording is longer than 10000 characters".to_owned(),
                });
            }
        }
        beckon_outbox::email::check(w).map_err(|message| AdminError::Invalid {
            field: Some("wording".to_owned()),
            message,
        })?;
    }
    let settings = LeadSettings {
        follow_up_minutes: body.follow_up_minutes,
        wording: body.wording,
    };
    state.leads.put_lead_settings(&site, &settings).await?;
    self::settings(state, actor, key).await
}

#[cfg(test)]
mod tests {
    use super::defuse;

    #[test]
    fn cells_a_spreadsheet_would_run_are_defused() {
        for cell in [
            "=HYPERLINK(\"http://evil.example\")",
            "+1",
            "-2",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            assert!(defuse(cell).starts_with('\''), "{cell}");
        }
        assert_eq!(defuse("ada@example.com"), "ada@example.com");
    }
}
