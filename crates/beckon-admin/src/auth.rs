//! Who is asking: a person signed in with a login session (axum-login on tower-sessions), or a
//! server holding an API token. Either way the request acts as one person, on the sites that
//! person belongs to — and a token only on the sites it was made for.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum_login::{AuthUser, AuthnBackend};
use beckon_engine::SiteId;
use beckon_store::StoreError;
use beckon_store::accounts::{Accounts, Role, User};
use sha2::{Digest, Sha256};

use crate::AdminState;
use crate::error::{AdminError, AdminResult};
use crate::passwords;

/// The prefix of every API token, so that a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "bk_";

/// A signed-in person, as axum-login keeps them.
#[derive(Clone)]
pub struct Account(pub User);

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account").field("id", &self.0.id).finish()
    }
}

impl AuthUser for Account {
    type Id = i64;

    fn id(&self) -> i64 {
        self.0.id
    }

    /// The password hash: changing the password ends every other session of the person.
    fn session_auth_hash(&self) -> &[u8] {
        self.0.password_hash.as_bytes()
    }
}

/// What the sign-in form sends.
#[derive(Clone, serde::Deserialize)]
pub struct Credentials {
    /// The address.
    pub email: String,
    /// The password.
    pub password: String,
}

/// axum-login's backend on [`Accounts`].
#[derive(Clone)]
pub struct Backend {
    accounts: Arc<dyn Accounts>,
}

impl Backend {
    /// People kept in `accounts`.
    pub fn new(accounts: Arc<dyn Accounts>) -> Backend {
        Backend { accounts }
    }
}

/// The form in which addresses are stored and compared.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

impl AuthnBackend for Backend {
    type User = Account;
    type Credentials = Credentials;
    type Error = StoreError;

    async fn authenticate(&self, creds: Credentials) -> Result<Option<Account>, StoreError> {
        let user = self
            .accounts
            .user_by_email(&normalise_email(&creds.email))
            .await?;
        // Argon2id is deliberately slow: off the async threads. An unknown address is checked
        // against a decoy so that it is refused in the same time as a wrong password.
        let stored = user.as_ref().map_or_else(
            || passwords::decoy().to_owned(),
            |u| u.password_hash.clone(),
        );
        let password = creds.password;
        let ok = tokio::task::spawn_blocking(move || passwords::verify(&password, &stored))
            .await
            .unwrap_or(false);
        Ok(user.filter(|_| ok).map(Account))
    }

    async fn get_user(&self, id: &i64) -> Result<Option<Account>, StoreError> {
        Ok(self.accounts.user(*id).await?.map(Account))
    }
}

/// The login session type handlers take.
pub type AuthSession = axum_login::AuthSession<Backend>;

/// How the request proved who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// A login session cookie (state-changing requests also pass the CSRF check).
    Session,
    /// An API token, by id.
    Token(i64),
}

/// The person a request acts as, and the sites it may touch.
#[derive(Clone, Debug)]
pub struct Actor {
    /// The person.
    pub user: User,
    /// The sites the request may read and change: the person's, narrowed to a token's.
    pub sites: Vec<SiteId>,
    /// How they proved it.
    pub via: Via,
}

impl Actor {
    /// The site with key `key`, if this actor may see it; otherwise not found (whether it
    /// exists is none of their business).
    pub fn site(&self, key: &str) -> AdminResult<SiteId> {
        self.sites
            .iter()
            .find(|s| s.as_str() == key)
            .cloned()
            .ok_or_else(|| AdminError::NotFound(format!("no site {key:?}")))
    }

    /// Refuses unless the person is an administrator.
    pub fn require_admin(&self) -> AdminResult<()> {
        match self.user.role {
            Role::Admin => Ok(()),
            Role::Agent => Err(AdminError::Forbidden(
                "agents can read this but not change it; ask an administrator".to_owned(),
            )),
        }
    }
}

/// The SHA-256 of a token's secret: its only stored form.
pub fn token_digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The bearer token of `Authorization`, if it holds one (the scheme in any case).
pub fn bearer_of(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The bearer token of a request, if it sends one.
pub fn bearer(parts: &Parts) -> Option<&str> {
    bearer_of(&parts.headers)
}

async fn from_token(state: &AdminState, secret: &str) -> AdminResult<Actor> {
    if !secret.starts_with(TOKEN_PREFIX) || secret.len() > 128 {
        return Err(AdminError::Unauthenticated);
    }
    let token = state
        .accounts
        .token_by_hash(&token_digest(secret))
        .await?
        .filter(|t| t.revoked.is_none())
        .ok_or(AdminError::Unauthenticated)?;
    let user = state
        .accounts
        .user(token.owner)
        .await?
        .ok_or(AdminError::Unauthenticated)?;
    let own = state.accounts.sites_of(user.id).await?;
    let sites = token
        .sites
        .into_iter()
        .filter(|s| own.contains(s))
        .collect();
    Ok(Actor {
        user,
        sites,
        via: Via::Token(token.id),
    })
}

impl FromRequestParts<AdminState> for Actor {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> AdminResult<Actor> {
        // Already found by the site guard for this request.
        if let Some(actor) = parts.extensions.get::<Actor>() {
            return Ok(actor.clone());
        }
        if let Some(secret) = bearer(parts) {
            let secret = secret.to_owned();
            return from_token(state, &secret).await;
        }
        // Some other credential (a proxy's Basic auth): never fall back to the cookie, which
        // the CSRF guard has not checked for such a request.
        if parts.headers.contains_key(AUTHORIZATION) {
            return Err(AdminError::Unauthenticated);
        }
        let session = AuthSession::from_request_parts(parts, state)
            .await
            .map_err(|_| AdminError::Unauthenticated)?;
        let user = session.user.ok_or(AdminError::Unauthenticated)?.0;
        let sites = state.accounts.sites_of(user.id).await?;
        Ok(Actor {
            user,
            sites,
            via: Via::Session,
        })
    }
}

/// The client's address, as the wiring's rule finds it (the socket's peer, or a trusted
/// proxy's header); `None` for a request without a socket (a test calling the router).
pub struct Client(pub Option<std::net::IpAddr>);

impl FromRequestParts<AdminState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<Client, std::convert::Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        Ok(Client((state.client_ip)(&parts.headers, peer)))
    }
}

/// Signs a person in: throttled per address and per client, then the password checked, then
/// a new session id (so that an id planted before sign-in is worthless) with a fresh CSRF
/// token. Wrong address and wrong password are refused alike.
pub async fn sign_in(
    state: &AdminState,
    session: &mut AuthSession,
    creds: Credentials,
    client: Option<std::net::IpAddr>,
) -> AdminResult<User> {
    let email = normalise_email(&creds.email);
    if email.is_empty() || email.len() > 254 || creds.password.len() > 4 * passwords::MAX_LEN {
        return Err(AdminError::BadCredentials);
    }
    if !state.logins.allow(&email, client) {
        return Err(AdminError::Throttled);
    }
    let account = session
        .authenticate(Credentials {
            email: email.clone(),
            password: creds.password,
        })
        .await
        .map_err(|e| match e {
            axum_login::Error::Backend(e) => AdminError::from(e),
            axum_login::Error::Session(e) => AdminError::Store(e.to_string()),
        })?
        .ok_or(AdminError::BadCredentials)?;
    // A session that was already signed in (perhaps planted, perhaps another person's) keeps
    // neither its id nor its CSRF token: axum-login changes the id only for a first sign-in.
    if session.user.is_some() {
        session
            .logout()
            .await
            .map_err(|e| AdminError::Store(e.to_string()))?;
    }
    session
        .session
        .cycle_id()
        .await
        .map_err(|e| AdminError::Store(e.to_string()))?;
    let _ = session.session.remove::<String>(crate::csrf::KEY).await;
    session
        .login(&account)
        .await
        .map_err(|e| AdminError::Store(e.to_string()))?;
    Ok(account.0)
}
