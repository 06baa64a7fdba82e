//! The analytics' reads: the facts of one site over a period (exposures, reactions,
//! outcomes, visits, model use), and the site's analytics settings. The store only gathers;
//! every figure is computed by `beckon-stats` from what it returns.

use async_trait::async_trait;
use beckon_engine::{SiteId, Timestamp};
use beckon_stats::facts::Facts;
use beckon_stats::settings::Settings;

use crate::Result;

/// A period: from `from` (inclusive) to `to` (exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    /// The first instant.
    pub from: Timestamp,
    /// The first instant after it.
    pub to: Timestamp,
}

/// Where a site's log of a period begins, and how long it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogSpan {
    /// Pass as `after` to [`crate::Store::log`] to read from the period's start (a few
    /// batches before it may come first: filter by time).
    pub after: u64,
    /// The site's batches in the period.
    pub batches: u64,
}

/// The analytics' reads.
#[async_trait]
pub trait Analytics: Send + Sync + 'static {
    /// The facts of `site`: the exposures of `period`, and the reactions, outcomes, visits and
    /// model use from its start until `reach` (the end of the last attribution window and
    /// return horizon, never past now). Only what the engine decided on counts: a bot's
    /// events are only logged, and a refused claim is no reaction. Visits are the browser's
    /// (the server's timer and the merchant's backend make none).
    async fn facts(&self, site: &SiteId, period: Period, reach: Timestamp) -> Result<Facts>;

    /// Where `site`'s log of `period` begins, and how many batches it holds (for a backtest
    /// and its progress bar).
    async fn log_span(&self, site: &SiteId, period: Period) -> Result<LogSpan>;

    /// A site's analytics settings (the defaults when never set).
    async fn analytics_settings(&self, site: &SiteId) -> Result<Settings>;

    /// Replaces a site's analytics settings (checked by the caller).
    async fn put_analytics_settings(&self, site: &SiteId, settings: &Settings) -> Result<()>;
}
