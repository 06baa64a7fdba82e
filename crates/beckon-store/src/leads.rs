//! Leads: a visitor's address left for the site to follow up, with their consent and context.
//!
//! A lead is never only logged. It is written together with what announces it (the outbox's
//! [`NewEvent`]s), in one transaction with the change that captured it: the e-mail capture
//! event (through [`crate::Store::commit`]), the address left in a chat (through the
//! conversation change) or the API (through [`Leads::capture_lead`]). From then on the outbox
//! delivers it, and [`Leads::take_overdue`] makes sure that one nobody contacted in time is
//! announced again, as overdue.

use async_trait::async_trait;
use beckon_engine::{SiteId, Timestamp, VisitorId};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::accounts::UserId;
use crate::conversations::{Author, Context, ConversationId};
use crate::outbox::{NewEvent, has_form, random_chars, random_id};

random_id!(
    /// A lead's id: `l_` and 20 base-36 characters.
    LeadId,
    "l_",
    20
);

/// Where a lead came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadSource {
    /// An e-mail capture message of a rule's.
    Capture,
    /// The chat: the visitor left an address when nobody was free.
    Chat,
    /// The admin API.
    Api,
}

impl LeadSource {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            LeadSource::Capture => "capture",
            LeadSource::Chat => "chat",
            LeadSource::Api => "api",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<LeadSource> {
        match s {
            "capture" => Some(LeadSource::Capture),
            "chat" => Some(LeadSource::Chat),
            "api" => Some(LeadSource::Api),
            _ => None,
        }
    }
}

/// Where the follow-up of a lead stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadStatus {
    /// Nobody has contacted them yet.
    New,
    /// Someone of the site has.
    Contacted,
    /// It became a customer.
    Won,
    /// It did not.
    Lost,
}

impl LeadStatus {
    /// Every status, in the order of the follow-up.
    pub const ALL: [LeadStatus; 4] = [
        LeadStatus::New,
        LeadStatus::Contacted,
        LeadStatus::Won,
        LeadStatus::Lost,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            LeadStatus::New => "new",
            LeadStatus::Contacted => "contacted",
            LeadStatus::Won => "won",
            LeadStatus::Lost => "lost",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<LeadStatus> {
        LeadStatus::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// What the visitor agreed to, in the words they were shown, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// The wording beside the checkbox (or of the chat's offer).
    pub text: String,
    /// When they agreed.
    pub at: Timestamp,
}

/// One line of a chat's transcript, as a lead carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// Who wrote it.
    pub author: Author,
    /// What they wrote.
    pub text: String,
    /// When.
    pub at: Timestamp,
}

/// What the site's people need to follow a lead up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LeadContext {
    /// The visit: pages, cart, device, language, referrer.
    #[serde(default)]
    pub visit: Context,
    /// The rule whose message captured it.
    #[serde(default)]
    pub rule: Option<String>,
    /// The intervention.
    #[serde(default)]
    pub intervention: Option<String>,
    /// The conversation it was left in.
    #[serde(default)]
    pub conversation: Option<ConversationId>,
    /// The chat so far.
    #[serde(default)]
    pub transcript: Vec<Line>,
}

/// A lead to capture.
#[derive(Clone, Debug, PartialEq)]
pub struct NewLead {
    /// Its id, drawn by the caller (the announcements name it).
    pub id: LeadId,
    /// The site.
    pub site: SiteId,
    /// The visitor, when it came from one.
    pub visitor: Option<VisitorId>,
    /// The address, checked.
    pub email: String,
    /// Their name, if given.
    pub name: String,
    /// Their question, if given.
    pub question: String,
    /// Their consent.
    pub consent: Consent,
    /// Where it came from.
    pub source: LeadSource,
    /// Its context.
    pub context: LeadContext,
    /// When it was captured.
    pub at: Timestamp,
    /// What announces it (written in the same transaction).
    pub announce: Vec<NewEvent>,
}

/// A stored lead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lead {
    /// Its id.
    pub id: LeadId,
    /// The site.
    pub site: SiteId,
    /// The visitor, when it came from one.
    pub visitor: Option<VisitorId>,
    /// The address.
    pub email: String,
    /// Their name.
    pub name: String,
    /// Their question.
    pub question: String,
    /// Their consent.
    pub consent: Consent,
    /// Where it came from.
    pub source: LeadSource,
    /// Its context.
    pub context: LeadContext,
    /// Where the follow-up stands.
    pub status: LeadStatus,
    /// Who of the site follows it up.
    pub owner: Option<UserId>,
    /// When it was captured.
    pub created_at: Timestamp,
    /// When it was first marked contacted (or won or lost).
    pub contacted_at: Option<Timestamp>,
    /// When it was announced as overdue.
    pub overdue_at: Option<Timestamp>,
}

/// A change to a lead.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeadChange {
    /// A new status (leaving `new` for the first time sets `contacted_at`).
    pub status: Option<LeadStatus>,
    /// A new owner.
    pub owner: Option<Option<UserId>>,
}

/// Which leads to list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeadQuery {
    /// Words found in the address, name or question.
    pub text: Option<String>,
    /// Only these.
    pub status: Option<LeadStatus>,
    /// Only those still new and captured before this instant (the overdue ones).
    pub new_before: Option<Timestamp>,
    /// Captured at or after.
    pub from: Option<Timestamp>,
    /// Captured before.
    pub to: Option<Timestamp>,
    /// At most this many, newest first (0: a default of 100).
    pub limit: usize,
    /// Skip this many.
    pub offset: usize,
}

/// An e-mail's wording in one language. `{{ name }}`-style fields are filled in from the lead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailWording {
    /// The language (BCP 47 primary tag).
    pub language: String,
    /// The team's e-mail: subject.
    pub team_subject: String,
    /// The team's e-mail: body (plain text).
    pub team_body: String,
    /// The visitor's confirmation: subject.
    pub visitor_subject: String,
    /// The visitor's confirmation: body (plain text).
    pub visitor_body: String,
}

/// A site's follow-up settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadSettings {
    /// A lead still new this many minutes after its capture is overdue.
    pub follow_up_minutes: u32,
    /// The e-mails' wording per language; the first is used for a language not listed. None:
    /// the built-in wording.
    #[serde(default)]
    pub wording: Vec<EmailWording>,
}

impl Default for LeadSettings {
    fn default() -> Self {
        LeadSettings {
            follow_up_minutes: 4 * 60,
            wording: Vec::new(),
        }
    }
}

/// How a site follows its leads up, over a range of capture times.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LeadFigures {
    /// Leads captured.
    pub captured: u64,
    /// Of those, contacted (or won or lost) at all.
    pub contacted: u64,
    /// Of those, within the site's time limit.
    pub contacted_in_time: u64,
    /// Still new past the time limit.
    pub overdue: u64,
    /// Won.
    pub won: u64,
    /// The median time from capture to first contact, in seconds.
    pub median_contact_secs: Option<i64>,
}

impl LeadFigures {
    /// The share contacted at all (0 when none were captured).
    pub fn follow_up_rate(&self) -> f64 {
        if self.captured == 0 {
            0.0
        } else {
            self.contacted as f64 / self.captured as f64
        }
    }
}

/// Writes the announcement of an overdue lead (the outbox's payload, which the store does not
/// know).
pub trait AnnounceOverdue: Send + Sync {
    /// The announcement of `lead`.
    fn announce(&self, lead: &Lead) -> NewEvent;
}

/// The leads' storage.
#[async_trait]
pub trait Leads: Send + Sync + 'static {
    /// Captures a lead and its announcements in one transaction; a lead with an id already
    /// stored is a [`crate::StoreError::Conflict`] and writes nothing.
    async fn capture_lead(&self, lead: &NewLead) -> Result<Lead>;

    /// One lead of a site's.
    async fn lead(&self, site: &SiteId, id: &LeadId) -> Result<Option<Lead>>;

    /// A site's leads.
    async fn leads(&self, site: &SiteId, query: &LeadQuery) -> Result<Vec<Lead>>;

    /// Changes a lead, announcing `announce` in the same transaction.
    async fn change_lead(
        &self,
        site: &SiteId,
        id: &LeadId,
        change: &LeadChange,
        now: Timestamp,
        announce: &[NewEvent],
    ) -> Result<Lead>;

    /// A site's follow-up settings (the defaults when never set).
    async fn lead_settings(&self, site: &SiteId) -> Result<LeadSettings>;

    /// Replaces a site's follow-up settings.
    async fn put_lead_settings(&self, site: &SiteId, settings: &LeadSettings) -> Result<()>;

    /// Leads of any site still new past their site's time limit and not yet announced as
    /// overdue, up to `limit`: for each, `announce.announce(lead)` is enqueued and the lead marked
    /// overdue in one transaction, so that each is announced once.
    async fn take_overdue(
        &self,
        now: Timestamp,
        limit: usize,
        announce: &dyn AnnounceOverdue,
    ) -> Result<Vec<Lead>>;

    /// A site's follow-up figures for leads captured in `[from, to)`, as of `now`.
    async fn lead_figures(
        &self,
        site: &SiteId,
        from: Timestamp,
        to: Timestamp,
        now: Timestamp,
    ) -> Result<LeadFigures>;
}
