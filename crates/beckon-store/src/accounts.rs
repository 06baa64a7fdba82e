//! The accounts concern: people who sign in to the dashboard, the sites they belong to, their
//! login sessions, API tokens for server-to-server use, and who changed a site's rules.
//!
//! Secrets never reach the store in the clear: passwords arrive hashed (Argon2id, by the
//! caller), tokens and session ids as SHA-256 digests. A leaked database therefore signs nobody
//! in.

use async_trait::async_trait;
use beckon_engine::rules::RuleSpec;
use beckon_engine::{SiteId, Timestamp};

use crate::Result;

/// A person's id (assigned by the store).
pub type UserId = i64;

/// What a person may do across the installation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Creates sites, manages members and tokens, edits rules of the sites they belong to.
    Admin,
    /// Answers conversations of the sites they belong to; reads rules, changes nothing.
    Agent,
}

impl Role {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Agent => "agent",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "agent" => Some(Role::Agent),
            _ => None,
        }
    }
}

/// A person to create.
#[derive(Clone, Debug)]
pub struct NewUser {
    /// Their sign-in address, lower-cased by the caller; unique.
    pub email: String,
    /// How they are shown.
    pub name: String,
    /// The PHC string of an Argon2id hash.
    pub password_hash: String,
    /// Their role.
    pub role: Role,
    /// When they were created.
    pub at: Timestamp,
}

/// A person who can sign in.
#[derive(Clone, Debug, PartialEq)]
pub struct User {
    /// Their id.
    pub id: UserId,
    /// Their sign-in address.
    pub email: String,
    /// How they are shown.
    pub name: String,
    /// The PHC string of their password's hash.
    pub password_hash: String,
    /// Their role.
    pub role: Role,
}

/// A login session as stored: the digest of its cookie's id, what it holds and when it ends.
#[derive(Clone, Debug, PartialEq)]
pub struct LoginRecord {
    /// SHA-256 of the session id the cookie carries.
    pub id_hash: [u8; 32],
    /// The session's data, serialised by the session layer.
    pub data: String,
    /// When it expires.
    pub expires: Timestamp,
}

/// An API token: a bearer secret for server-to-server calls, scoped to some sites.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiToken {
    /// Its id (assigned by the store; 0 when creating).
    pub id: i64,
    /// SHA-256 of the secret, the only form ever stored.
    pub hash: [u8; 32],
    /// The first characters of the secret, to recognise it in a list.
    pub prefix: String,
    /// What it is for.
    pub name: String,
    /// Who made it; it acts with their role, and never beyond their sites.
    pub owner: UserId,
    /// The sites it may read and change.
    pub sites: Vec<SiteId>,
    /// When it was made.
    pub created: Timestamp,
    /// When it was revoked, if it was.
    pub revoked: Option<Timestamp>,
}

/// Who changed a site's rule set, when, and how they described it.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The person (none for a change from the command line or a configuration file).
    pub author: Option<UserId>,
    /// When.
    pub at: Timestamp,
    /// What changed, in words (`launched "cart-exit-offer"`).
    pub summary: String,
}

/// One version of a site's rule set in its history.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSetEntry {
    /// The version.
    pub version: u64,
    /// Who changed it, when and what; `None` for versions made before history was kept.
    pub change: Option<Change>,
    /// The author's name, when there was one and they still exist.
    pub author_name: Option<String>,
    /// The rules at that version.
    pub rules: Vec<RuleSpec>,
}

/// What the site records of the dashboard add to the engine's: how people call the site.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteLabel {
    /// The site.
    pub site: SiteId,
    /// Its name for people (`Northwind shop`); the key when none was given.
    pub name: String,
}

/// A change to a site: every field set replaces the stored one, in one transaction, so that
/// two changes at once (a rename and a key rotation) never undo each other.
#[derive(Clone, Debug, Default)]
pub struct SiteEdit {
    /// New allowed origins.
    pub origins: Option<Vec<String>>,
    /// A new policy.
    pub policy: Option<beckon_engine::Policy>,
    /// A new secret key's digest.
    pub secret: Option<crate::SecretDigest>,
    /// A new name for people.
    pub name: Option<String>,
}

/// The accounts' storage verbs. Every backend implements them beside [`crate::Store`], and
/// [`crate::accounts_suite`] is their story.
#[async_trait]
pub trait Accounts: Send + Sync + 'static {
    /// Creates a person; [`crate::StoreError::Conflict`] when the address is taken.
    async fn create_user(&self, user: &NewUser) -> Result<User>;

    /// A person by sign-in address (as stored: lower-cased).
    async fn user_by_email(&self, email: &str) -> Result<Option<User>>;

    /// A person by id.
    async fn user(&self, id: UserId) -> Result<Option<User>>;

    /// Every person, by id.
    async fn users(&self) -> Result<Vec<User>>;

    /// Replaces a person's password hash.
    async fn set_password(&self, id: UserId, password_hash: &str) -> Result<()>;

    /// Makes a person a member of a site (nothing when they already are).
    async fn add_member(&self, site: &SiteId, user: UserId) -> Result<()>;

    /// Removes a person from a site; whether they were a member.
    async fn remove_member(&self, site: &SiteId, user: UserId) -> Result<bool>;

    /// The members of a site, by id.
    async fn members(&self, site: &SiteId) -> Result<Vec<User>>;

    /// The sites a person belongs to, by key.
    async fn sites_of(&self, user: UserId) -> Result<Vec<SiteId>>;

    /// Names a site for people.
    async fn set_site_name(&self, site: &SiteId, name: &str) -> Result<()>;

    /// Creates a site, named, with `creator` as its first member, at rule-set version 1 with
    /// no rules; [`crate::StoreError::Conflict`] (and nothing written) when the key is taken.
    async fn create_site(
        &self,
        site: &crate::SiteRecord,
        name: &str,
        creator: UserId,
    ) -> Result<()>;

    /// Changes a site in one transaction; its rule-set version goes up when its origins,
    /// policy or secret changed (the rules in force carry over). Returns the site as stored.
    async fn edit_site(&self, site: &SiteId, edit: &SiteEdit) -> Result<crate::SiteRecord>;

    /// The names of these sites (a site without one is named by its key).
    async fn site_labels(&self, sites: &[SiteId]) -> Result<Vec<SiteLabel>>;

    /// Stores a new login session; `false` (and nothing written) when its id is taken.
    async fn create_login(&self, login: &LoginRecord) -> Result<bool>;

    /// Stores a login session, replacing one with the same id.
    async fn save_login(&self, login: &LoginRecord) -> Result<()>;

    /// A login session by the digest of its id, unless it expired before `now`.
    async fn login(&self, id_hash: &[u8; 32], now: Timestamp) -> Result<Option<LoginRecord>>;

    /// Ends a login session.
    async fn delete_login(&self, id_hash: &[u8; 32]) -> Result<()>;

    /// Deletes login sessions that expired before `now`; how many went.
    async fn prune_logins(&self, now: Timestamp) -> Result<usize>;

    /// Stores a new API token; returns it with its id.
    async fn create_token(&self, token: &ApiToken) -> Result<ApiToken>;

    /// A token by the digest of its secret, revoked or not.
    async fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiToken>>;

    /// The tokens a person made, newest first.
    async fn tokens_of(&self, owner: UserId) -> Result<Vec<ApiToken>>;

    /// Revokes one of a person's tokens; whether there was such a live token.
    async fn revoke_token(&self, owner: UserId, id: i64, at: Timestamp) -> Result<bool>;

    /// Replaces a site's rules if its rule-set version is still `base` (else
    /// [`crate::StoreError::Conflict`]: someone changed it meanwhile), recording the change.
    /// Returns the new version.
    async fn save_rules(
        &self,
        site: &SiteId,
        base: u64,
        rules: &[RuleSpec],
        change: &Change,
    ) -> Result<u64>;

    /// A site's rule-set versions, newest first, at most `limit`, before version `before`
    /// (exclusive; `u64::MAX` for the newest).
    async fn rule_history(
        &self,
        site: &SiteId,
        before: u64,
        limit: usize,
    ) -> Result<Vec<RuleSetEntry>>;
}
