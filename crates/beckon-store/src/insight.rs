//! The dashboard's read side: what the log says about rules and visitors, for people to look
//! at. Reads only; every backend implements it beside [`crate::Store`].

use async_trait::async_trait;
use beckon_engine::{RuleId, SiteId, Timestamp, VisitorId};

use crate::{LoggedBatch, Result, VisitorRecord};

/// How often each rule's interventions were shown, dismissed and engaged with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleCounts {
    /// Exposures of the treated arm (fired).
    pub fired: u64,
    /// Exposures of the holdout arm (ghosts).
    pub ghosts: u64,
    /// Interventions the widget reported shown.
    pub shown: u64,
    /// Dismissed.
    pub dismissed: u64,
    /// Engaged with (accepted, replied, applied a coupon, submitted).
    pub engaged: u64,
}

/// The dashboard's reads.
#[async_trait]
pub trait Insight: Send + Sync + 'static {
    /// Per rule of a site, the exposures and outcomes logged since `since` (bots excluded:
    /// their events are only logged, never decided on).
    async fn rule_counts(
        &self,
        site: &SiteId,
        since: Timestamp,
    ) -> Result<Vec<(RuleId, RuleCounts)>>;

    /// A visitor's last `limit` logged batches, oldest first, each with its position.
    async fn visitor_log(
        &self,
        site: &SiteId,
        visitor: &VisitorId,
        limit: usize,
    ) -> Result<Vec<(u64, LoggedBatch)>>;

    /// The site's visitors active since `since` (with a live session), most recent first, at
    /// most `limit`; undecodable states, and visits judged a bot's (`SessionRecord::bot`), are
    /// left out.
    async fn recent_visitors(
        &self,
        site: &SiteId,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<VisitorRecord>>;
}
