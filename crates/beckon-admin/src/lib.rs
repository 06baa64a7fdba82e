//! Beckon's admin side: accounts and sign-in, the admin REST API under `/api/v1/` with its
//! OpenAPI document, and the dashboard under `/dash/`. The only crate that knows the admin
//! API's JSON and the dashboard's HTML; it reaches storage through `beckon-store`'s traits and
//! the live server only through [`LiveRules`].

pub mod api;
pub mod auth;
pub mod clock;
pub mod csrf;
pub mod error;
pub mod guard;
pub mod logins;
pub mod manage;
pub mod pages;
pub mod passwords;
pub mod throttle;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;
use axum_login::AuthManagerLayerBuilder;
use beckon_store::Store;
use beckon_store::accounts::Accounts;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

/// The largest admin request body (a rule with its translations fits many times over).
pub const MAX_BODY_BYTES: usize = 512 * 1024;
/// How long a login session lasts without use.
pub const SESSION_IDLE: time::Duration = time::Duration::hours(12);
/// The login cookie's name.
pub const COOKIE: &str = "beckon_session";

/// The running server's side of a change: told when a site's rules or record changed, so that
/// the change takes effect at once instead of at the next poll.
#[async_trait]
pub trait LiveRules: Send + Sync + 'static {
    /// Something changed in the store; reload what is new.
    async fn changed(&self);
}

/// Draws a draft rule's message for a sample visitor through the real widget: the server keeps
/// the rendered message under a token that the preview frame's widget fetches.
pub trait Previewer: Send + Sync + 'static {
    /// Renders `rule` for `sample` (the editor's sample context, as JSON) under the site's
    /// policy; the token to load it with, or what is wrong.
    fn preview(
        &self,
        site: &beckon_engine::SiteId,
        policy: &beckon_engine::Policy,
        rule: beckon_engine::rules::RuleSpec,
        sample: serde_json::Value,
    ) -> Result<String, String>;
}

/// For tests and tools without a running server: nothing to tell.
pub struct NoLiveRules;

#[async_trait]
impl LiveRules for NoLiveRules {
    async fn changed(&self) {}
}

/// Finds a request's client address from its headers and socket peer.
pub type ClientIp = dyn Fn(&HeaderMap, Option<SocketAddr>) -> Option<IpAddr> + Send + Sync;

/// What the admin side is given.
pub struct Options {
    /// The log, the sites and the rules.
    pub store: Arc<dyn Store>,
    /// People, sessions and tokens (the same database).
    pub accounts: Arc<dyn Accounts>,
    /// The dashboard's reads of the log (the same database).
    pub insight: Arc<dyn beckon_store::insight::Insight>,
    /// Conversations and the desk's settings (the same database).
    pub conversations: Arc<dyn beckon_store::conversations::Conversations>,
    /// Leads and their follow-up.
    pub leads: Arc<dyn beckon_store::leads::Leads>,
    /// Destinations and deliveries.
    pub outbox: Arc<dyn beckon_store::outbox::Outbox>,
    /// The analytics' facts and settings.
    pub analytics: Arc<dyn beckon_store::analytics::Analytics>,
    /// Whether a destination may be a private or local address (the operator's choice).
    pub allow_private_destinations: bool,
    /// The live help desk, for the agent console (none: the console says it is not running).
    pub desk: Option<beckon_agent::Desk>,
    /// The live server.
    pub live: Arc<dyn LiveRules>,
    /// The live server's previews (none: previews are refused).
    pub previewer: Option<Arc<dyn Previewer>>,
    /// The live server's backtests of draft rules (none: refused).
    pub backtester: Option<Arc<dyn manage::backtest::Backtester>>,
    /// The live server's replay, for visitors' timelines (none: not available).
    pub explainer: Option<Arc<dyn manage::visitors::Explainer>>,
    /// The live server's count of the origins events came from (none: not available).
    pub edge: Option<Arc<dyn manage::install::EdgeReport>>,
    /// How to find the client's address (the server's trusted-proxy rule).
    pub client_ip: Arc<ClientIp>,
    /// Mark the login cookie `Secure` (Beckon is reached over HTTPS).
    pub secure_cookies: bool,
}

/// How often expired login sessions are deleted and the sign-in throttle forgets quiet keys.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// What every admin handler reaches: one shared pointer.
#[derive(Clone)]
pub struct AdminState(Arc<Inner>);

impl std::ops::Deref for AdminState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The admin side's shared state: what it was given, and the sign-in throttle. The fields of
/// [`Options`] are reached through it (`state.accounts`).
pub struct Inner {
    /// What the admin side was given.
    pub options: Options,
    /// Sign-in throttling.
    pub logins: throttle::LoginThrottle,
}

impl std::ops::Deref for Inner {
    type Target = Options;

    fn deref(&self) -> &Options {
        &self.options
    }
}

impl AdminState {
    /// The state for `options`.
    pub fn new(options: Options) -> AdminState {
        AdminState(Arc::new(Inner {
            options,
            logins: throttle::LoginThrottle::default(),
        }))
    }
}

/// The admin router: the API, its document, the dashboard and its assets, behind login
/// sessions and the CSRF guard. It has no fallback, so that it merges into the server's router.
pub fn router(options: Options) -> Router {
    let state = AdminState::new(options);
    let sessions = SessionManagerLayer::new(logins::Logins::new(state.accounts.clone()))
        .with_name(COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(state.secure_cookies)
        .with_path("/")
        // Saved on every request, so that the idle expiry slides while someone works.
        .with_always_save(true)
        .with_expiry(Expiry::OnInactivity(SESSION_IDLE));
    let auth =
        AuthManagerLayerBuilder::new(auth::Backend::new(state.accounts.clone()), sessions).build();
    tokio::spawn(sweep(std::sync::Arc::downgrade(&state.0)));
    Router::new()
        .merge(api::router())
        .merge(pages::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::sites,
        ))
        .layer(axum::middleware::from_fn(csrf::guard))
        .layer(auth)
        .layer(axum::middleware::from_fn(guard::json_errors))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// How often the rules flagged by their analytics are paused, on sites that ask for it.
pub const AUTO_PAUSE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Deletes expired login sessions and lets the sign-in throttle forget quiet keys, and pauses
/// flagged rules where sites ask for it, until the admin side is dropped.
async fn sweep(state: std::sync::Weak<Inner>) {
    let rounds_per_pause = (AUTO_PAUSE_EVERY.as_secs() / SWEEP_EVERY.as_secs()).max(1);
    let mut round: u64 = 0;
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(inner) = state.upgrade() else { return };
        inner.logins.sweep();
        if let Err(e) = inner.accounts.prune_logins(clock::now()).await {
            tracing::warn!(error = %e, "could not delete expired login sessions");
        }
        round += 1;
        if round % rounds_per_pause == 0 {
            manage::analytics::auto_pause_all(&AdminState(inner), clock::now()).await;
        }
    }
}
