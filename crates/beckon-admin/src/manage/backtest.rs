//! Backtesting a draft rule from the editor or the API: the running server replays the last
//! days of the site's log with the draft beside the rules in force ([`Backtester`]); this
//! module checks the request and shapes the answer.

use beckon_engine::SiteId;
use beckon_engine::rules::{RuleSpec, Status};
use beckon_store::analytics::Period;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AdminState;
use crate::auth::Actor;
use crate::clock::now;
use crate::error::{AdminError, AdminResult};
use crate::manage::rules::{compile, current};

/// The longest a backtest may look back, in days.
pub const MAX_DAYS: u32 = 90;

/// The most backtests that run at once on one server: a backtest replays up to 90 days of a
/// site's log on the server that answers the site's visitors, so more would take their time.
pub const MAX_RUNNING: usize = 1;

/// The backtests running now.
static RUNNING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_RUNNING);

/// A place for one more backtest, or why there is none.
fn admit() -> AdminResult<tokio::sync::SemaphorePermit<'static>> {
    RUNNING.try_acquire().map_err(|_| {
        AdminError::Conflict(format!(
            "{MAX_RUNNING} backtest already running on this server (the most at once); try again when it ends"
        ))
    })
}

/// The running server's backtest.
#[async_trait::async_trait]
pub trait Backtester: Send + Sync + 'static {
    /// Replays `period` of `site`'s log with `draft` added.
    async fn backtest(
        &self,
        site: &SiteId,
        draft: RuleSpec,
        period: Period,
    ) -> Result<BacktestView, String>;
}

/// A draft to backtest.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BacktestRequest {
    /// The rule as in a rule file; it need not be live (a draft is what this is for).
    #[schema(value_type = crate::api::RuleDoc)]
    pub rule: serde_json::Value,
    /// The last this many days of traffic (1–90; 7 by default).
    #[serde(default, deserialize_with = "crate::api::whole::option")]
    #[schema(minimum = 1, maximum = 90)]
    pub days: Option<u64>,
}

/// A name and how often.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Count {
    /// A page path, a rule id, or a guardrail.
    pub name: String,
    /// How many.
    pub n: u64,
}

/// What a backtest found.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct BacktestView {
    /// The days looked back.
    pub days: u32,
    /// Batches of people replayed.
    pub batches: u64,
    /// Visitors replayed.
    pub visitors: u64,
    /// Times the draft would have fired (shown or, for held-out visitors, ghost).
    pub fired: u64,
    /// Of them, shown.
    pub shown: u64,
    /// Of them, ghosts.
    pub ghosts: u64,
    /// Visitors it would have fired for.
    pub visitors_fired: u64,
    /// The pages it would have fired on, most first.
    pub pages: Vec<Count>,
    /// Firings of live rules it would have taken the place of, by rule.
    pub displaced: Vec<Count>,
    /// What would have held it back when its conditions held (a rule that outranked it, or a
    /// guardrail), and for how many visitors.
    pub blocked_by: Vec<Count>,
    /// Firings of every rule as recorded.
    pub baseline_fired: u64,
    /// Firings of every rule with the draft.
    pub with_draft_fired: u64,
}

/// Backtests a draft over the last days of the site's traffic.
pub async fn run(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    request: BacktestRequest,
) -> AdminResult<BacktestView> {
    let site = actor.site(key)?;
    let days = request.days.unwrap_or(7);
    if !(1..=u64::from(MAX_DAYS)).contains(&days) {
        return Err(AdminError::field(
            "days",
            format!("{days} is not between 1 and {MAX_DAYS}"),
        ));
    }
    let draft: RuleSpec = serde_json::from_value(request.rule)
        .map_err(|e| AdminError::field("rule", e.to_string()))?;
    let (_, policy, _) = current(state, &site).await?;
    compile(
        vec![RuleSpec {
            status: Status::Live,
            ..draft.clone()
        }],
        &policy,
    )?;
    let backtester = state
        .backtester
        .as_ref()
        .ok_or_else(|| AdminError::Conflict("backtests need the running server".to_owned()))?;
    let _running = admit()?;
    let now = now();
    let period = Period {
        from: now.plus_ms(-(days as i64) * 86_400_000),
        to: now.plus_ms(1),
    };
    let mut view = backtester
        .backtest(&site, draft, period)
        .await
        .map_err(AdminError::Store)?;
    view.days = days as u32;
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_more_backtests_run_at_once_than_the_limit() {
        let held: Vec<_> = (0..MAX_RUNNING).map(|_| admit().unwrap()).collect();
        let Err(AdminError::Conflict(why)) = admit() else {
            panic!("a backtest past the limit is refused");
        };
        assert!(why.contains("try again"), "{why}");
        drop(held);
        assert!(admit().is_ok(), "a place frees when a backtest ends");
    }
}
