//! The install check: whether a site's events arrive, and from which origins; refused ones
//! with the reason.

use beckon_engine::{SiteId, Timestamp};
use serde::Serialize;

use crate::AdminState;
use crate::auth::Actor;
use crate::error::AdminResult;

/// One origin a site's events came from, as the edge counted it.
#[derive(Clone, Debug, Serialize)]
pub struct OriginLine {
    /// The `Origin` header (`(none)` without one).
    pub origin: String,
    /// Requests accepted from it.
    pub accepted: u64,
    /// Requests refused from it.
    pub refused: u64,
    /// When it was last seen (milliseconds since the epoch).
    pub last_ms: i64,
    /// Why the last refusal was, if one was.
    pub reason: Option<String>,
}

/// The running server's count of origins, since it started.
pub trait EdgeReport: Send + Sync + 'static {
    /// The origins seen for `site`, most recent first.
    fn origins(&self, site: &SiteId) -> Vec<OriginLine>;
}

/// An origin as the install page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Seen {
    /// The counts.
    #[serde(flatten)]
    pub line: OriginLine,
    /// When it was last seen, in the site's time zone.
    pub last: String,
}

/// What the edge has seen of the site's pages since the server started.
pub async fn check(state: &AdminState, actor: &Actor, key: &str) -> AdminResult<Vec<Seen>> {
    let site = actor.site(key)?;
    let Some(report) = state.edge.as_ref() else {
        return Ok(Vec::new());
    };
    let policy = crate::manage::sites::get(state, actor, key).await?.policy;
    Ok(report
        .origins(&site)
        .into_iter()
        .map(|line| Seen {
            last: crate::manage::visitors::local(&policy, Timestamp::from_millis(line.last_ms)),
            line,
        })
        .collect())
}
