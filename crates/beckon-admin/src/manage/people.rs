//! People: who belongs to a site, and the API tokens a person makes.

use beckon_store::accounts::{ApiToken, User, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AdminState;
use crate::auth::{Actor, TOKEN_PREFIX, normalise_email, token_digest};
use crate::clock::now;
use crate::error::{AdminError, AdminResult};
use crate::manage::rfc3339;

/// The most tokens one person may hold at once.
pub const MAX_TOKENS: usize = 50;

/// A person as others see them.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Person {
    /// Their id.
    pub id: i64,
    /// Their sign-in address.
    pub email: String,
    /// Their name.
    pub name: String,
    /// `admin` or `agent`.
    pub role: String,
}

impl From<&User> for Person {
    fn from(u: &User) -> Person {
        Person {
            id: u.id,
            email: u.email.clone(),
            name: u.name.clone(),
            role: u.role.as_str().to_owned(),
        }
    }
}

/// The caller.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Me {
    /// Who.
    pub person: Person,
    /// The sites this request may touch.
    pub sites: Vec<String>,
    /// `session` or `token`.
    pub via: String,
}

/// Who is asking.
pub fn me(actor: &Actor) -> Me {
    Me {
        person: Person::from(&actor.user),
        sites: actor.sites.iter().map(|s| s.as_str().to_owned()).collect(),
        via: match actor.via {
            crate::auth::Via::Session => "session".to_owned(),
            crate::auth::Via::Token(_) => "token".to_owned(),
        },
    }
}

/// A person to add to a site.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    /// The address they sign in with (they need an account: `beckon user add`).
    pub email: String,
}

/// The members of a site.
pub async fn members(state: &AdminState, actor: &Actor, key: &str) -> AdminResult<Vec<Person>> {
    let site = actor.site(key)?;
    Ok(state
        .accounts
        .members(&site)
        .await?
        .iter()
        .map(Person::from)
        .collect())
}

/// Adds a person to a site.
pub async fn add_member(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    new: NewMember,
) -> AdminResult<Person> {
    let site = actor.site(key)?;
    actor.require_admin()?;
    let email = normalise_email(&new.email);
    let user = state.accounts.user_by_email(&email).await?.ok_or_else(|| {
        AdminError::NotFound(format!(
            "nobody signs in as {email:?}; create the account first (beckon user add)"
        ))
    })?;
    state.accounts.add_member(&site, user.id).await?;
    Ok(Person::from(&user))
}

/// Removes a person from a site (not the caller themselves: someone must stay).
pub async fn remove_member(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    user: UserId,
) -> AdminResult<()> {
    let site = actor.site(key)?;
    actor.require_admin()?;
    if user == actor.user.id {
        return Err(AdminError::Conflict(
            "you cannot remove yourself; ask another administrator".to_owned(),
        ));
    }
    if !state.accounts.remove_member(&site, user).await? {
        return Err(AdminError::NotFound(format!(
            "person {user} is not a member of {key:?}"
        )));
    }
    Ok(())
}

/// An API token as listed (never its secret).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TokenView {
    /// Its id.
    pub id: i64,
    /// What it is for.
    pub name: String,
    /// The first characters of its secret.
    pub prefix: String,
    /// The sites it may touch.
    pub sites: Vec<String>,
    /// When it was made (RFC 3339).
    pub created: String,
    /// When it was revoked, if it was.
    pub revoked: Option<String>,
}

impl From<&ApiToken> for TokenView {
    fn from(t: &ApiToken) -> TokenView {
        TokenView {
            id: t.id,
            name: t.name.clone(),
            prefix: t.prefix.clone(),
            sites: t.sites.iter().map(|s| s.as_str().to_owned()).collect(),
            created: rfc3339(t.created),
            revoked: t.revoked.map(rfc3339),
        }
    }
}

/// A site key.
#[derive(ToSchema)]
#[schema(pattern = "^[A-Za-z0-9._:-]{1,64}$")]
#[allow(dead_code)]
pub struct SiteKey(String);

/// A token to make.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What it is for (`CRM sync`).
    #[schema(min_length = 1, max_length = 80, pattern = "\\S")]
    pub name: String,
    /// The sites it may touch: some of the caller's.
    #[schema(min_items = 1, max_items = 200, inline, value_type = Vec<SiteKey>)]
    pub sites: Vec<String>,
}

/// A token just made: the only time its secret is shown.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TokenWithSecret {
    /// The token.
    pub token: TokenView,
    /// Send as `Authorization: Bearer …`. Shown once: store it now.
    pub secret: String,
}

/// Tokens are managed by a person signed in, never by a token: a leaked token must not be
/// able to outlive its own revocation by making another, or reach the owner's other tokens.
fn require_session(actor: &Actor) -> AdminResult<()> {
    match actor.via {
        crate::auth::Via::Session => Ok(()),
        crate::auth::Via::Token(_) => Err(AdminError::Forbidden(
            "API tokens are managed from a signed-in session, not with a token".to_owned(),
        )),
    }
}

/// The caller's tokens, newest first.
pub async fn tokens(state: &AdminState, actor: &Actor) -> AdminResult<Vec<TokenView>> {
    require_session(actor)?;
    Ok(state
        .accounts
        .tokens_of(actor.user.id)
        .await?
        .iter()
        .map(TokenView::from)
        .collect())
}

/// Makes a token for some of the caller's sites.
pub async fn create_token(
    state: &AdminState,
    actor: &Actor,
    new: NewToken,
) -> AdminResult<TokenWithSecret> {
    require_session(actor)?;
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 80 {
        return Err(AdminError::field(
            "name",
            "a token's name has 1 to 80 characters",
        ));
    }
    if new.sites.is_empty() {
        return Err(AdminError::field(
            "sites",
            "a token needs at least one site",
        ));
    }
    let mut sites = Vec::with_capacity(new.sites.len());
    for (i, key) in new.sites.iter().enumerate() {
        let site = actor
            .site(key)
            .map_err(|_| AdminError::NotFound(format!("sites[{i}]: no site {key:?}")))?;
        if !sites.contains(&site) {
            sites.push(site);
        }
    }
    let live = state
        .accounts
        .tokens_of(actor.user.id)
        .await?
        .iter()
        .filter(|t| t.revoked.is_none())
        .count();
    if live >= MAX_TOKENS {
        return Err(AdminError::Conflict(format!(
            "you hold {live} live tokens, the most allowed; revoke one first"
        )));
    }
    let secret = super::secret(TOKEN_PREFIX);
    let token = state
        .accounts
        .create_token(&ApiToken {
            id: 0,
            hash: token_digest(&secret),
            prefix: secret.chars().take(TOKEN_PREFIX.len() + 4).collect(),
            name: name.to_owned(),
            owner: actor.user.id,
            sites,
            created: now(),
            revoked: None,
        })
        .await?;
    Ok(TokenWithSecret {
        token: TokenView::from(&token),
        secret,
    })
}

/// Revokes one of the caller's tokens.
pub async fn revoke_token(state: &AdminState, actor: &Actor, id: i64) -> AdminResult<()> {
    require_session(actor)?;
    if state
        .accounts
        .revoke_token(actor.user.id, id, now())
        .await?
    {
        Ok(())
    } else {
        Err(AdminError::NotFound(format!("no live token {id} of yours")))
    }
}

/// A password change.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password now.
    #[schema(min_length = 1, max_length = 1024)]
    pub current: String,
    /// The new one (10 to 256 characters).
    #[schema(min_length = 10, max_length = 256)]
    pub new: String,
}

/// Changes the caller's password, after checking the current one. Every other session of the
/// person ends (their sessions carry a digest of the old hash); the caller's own is renewed by
/// the handler.
pub async fn change_password(
    state: &AdminState,
    actor: &Actor,
    change: PasswordChange,
) -> AdminResult<User> {
    require_session(actor)?;
    crate::passwords::check(&change.new).map_err(|e| AdminError::field("new", e))?;
    let stored = actor.user.password_hash.clone();
    let current = change.current;
    let ok = tokio::task::spawn_blocking(move || crate::passwords::verify(&current, &stored))
        .await
        .unwrap_or(false);
    if !ok {
        return Err(AdminError::field(
            "current",
            "the current password is wrong",
        ));
    }
    let new = change.new;
    let hash = tokio::task::spawn_blocking(move || crate::passwords::hash(&new))
        .await
        .map_err(|e| AdminError::Store(e.to_string()))?;
    state.accounts.set_password(actor.user.id, &hash).await?;
    Ok(User {
        password_hash: hash,
        ..actor.user.clone()
    })
}
