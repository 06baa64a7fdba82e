//! Sites: created, described, re-keyed, their guardrails changed.

use beckon_engine::{Policy, SiteId};
use beckon_store::accounts::SiteEdit;
use beckon_store::{SecretDigest, SiteRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AdminState;
use crate::auth::Actor;
use crate::error::{AdminError, AdminResult};

/// The most origins one site may allow.
pub const MAX_ORIGINS: usize = 50;

/// A site as the dashboard and the API show it (never its secret key).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SiteView {
    /// The public site key, as in the install snippet.
    pub key: String,
    /// Its name for people.
    pub name: String,
    /// Origins allowed to send events; `*` allows any.
    pub origins: Vec<String>,
    /// The guardrail policy (the same shape as a configuration file's `[sites.policy]`).
    #[schema(value_type = Object)]
    pub policy: Policy,
    /// The current rule-set version.
    pub version: u64,
}

/// An allowed origin: `*`, or a scheme and host with no path.
#[derive(ToSchema)]
#[schema(pattern = "^(\\*|https?://[A-Za-z0-9.:\\[\\]-]{1,253}/?)$")]
#[allow(dead_code)]
pub struct Origin(String);

/// A new site.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSite {
    /// The site key: 1 to 64 characters of letters, digits, `.`, `_`, `:` or `-`.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,64}$")]
    pub key: String,
    /// Its name for people.
    #[schema(min_length = 1, max_length = 80, pattern = "\\S")]
    pub name: String,
    /// Origins allowed to send events (`https://shop.example`).
    #[serde(default)]
    #[schema(max_items = 50, inline, value_type = Vec<Origin>)]
    pub origins: Vec<String>,
    /// The site's time zone (IANA, `Europe/Paris`); UTC when absent.
    #[serde(default)]
    pub timezone: Option<String>,
}

/// A change to a site: every field that is present replaces the stored one.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteChange {
    /// A new name.
    #[schema(min_length = 1, max_length = 80, pattern = "\\S")]
    pub name: Option<String>,
    /// New allowed origins.
    #[schema(max_items = 50, value_type = Option<Vec<Origin>>)]
    pub origins: Option<Vec<String>>,
    /// A new guardrail policy, whole (fields left out take their defaults). Read by the
    /// engine, whose refusals name the field (422).
    #[schema(value_type = Option<crate::api::PolicyDoc>)]
    pub policy: Option<serde_json::Value>,
}

/// A site just made, or re-keyed: the only time its secret key is shown.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SiteWithSecret {
    /// The site.
    pub site: SiteView,
    /// The secret key for the merchant's backend (`Authorization: Bearer …` on
    /// `/v1/conversions` and `/v1/track`). Shown once: store it now.
    pub secret: String,
}

/// Checks a site name.
pub fn check_name(name: &str) -> AdminResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 80 {
        return Err(AdminError::field("name", "a name has 1 to 80 characters"));
    }
    Ok(name.to_owned())
}

/// Checks allowed origins: `*`, or `http(s)://host[:port]` with nothing after.
pub fn check_origins(origins: &[String]) -> AdminResult<Vec<String>> {
    if origins.len() > MAX_ORIGINS {
        return Err(AdminError::field(
            "origins",
            format!("a site may allow at most {MAX_ORIGINS} origins"),
        ));
    }
    let mut out = Vec::with_capacity(origins.len());
    for (i, o) in origins.iter().enumerate() {
        let o = o.trim().trim_end_matches('/');
        let valid = o == "*"
            || o.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https")
                    && !rest.is_empty()
                    && rest.len() <= 253
                    && rest.chars().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')
                    })
            });
        if !valid {
            return Err(AdminError::field(
                format!("origins[{i}]"),
                format!(
                    "{o:?} is not an origin like https://shop.example (scheme and host, no path)"
                ),
            ));
        }
        if !out.iter().any(|x: &String| x == o) {
            out.push(o.to_owned());
        }
    }
    Ok(out)
}

/// Checks a policy, naming the field at fault.
pub fn check_policy(policy: &Policy) -> AdminResult<()> {
    policy
        .validate()
        .map_err(|e| AdminError::field(format!("policy.{}", e.field), e.reason))
}

async fn record(state: &AdminState, site: &SiteId) -> AdminResult<SiteRecord> {
    state
        .store
        .sites()
        .await?
        .into_iter()
        .find(|s| s.id == *site)
        .ok_or_else(|| AdminError::NotFound(format!("no site {:?}", site.as_str())))
}

async fn view(state: &AdminState, record: SiteRecord) -> AdminResult<SiteView> {
    let name = state
        .accounts
        .site_labels(std::slice::from_ref(&record.id))
        .await?
        .pop()
        .map_or_else(|| record.id.as_str().to_owned(), |l| l.name);
    Ok(SiteView {
        key: record.id.as_str().to_owned(),
        name,
        origins: record.origins,
        policy: record.policy,
        version: record.version,
    })
}

/// The sites the actor may see, by key.
pub async fn list(state: &AdminState, actor: &Actor) -> AdminResult<Vec<SiteView>> {
    let labels = state.accounts.site_labels(&actor.sites).await?;
    let mut records = state.store.sites().await?;
    records.retain(|r| actor.sites.contains(&r.id));
    records.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(records
        .into_iter()
        .map(|r| SiteView {
            name: labels
                .iter()
                .find(|l| l.site == r.id)
                .map_or_else(|| r.id.as_str().to_owned(), |l| l.name.clone()),
            key: r.id.as_str().to_owned(),
            origins: r.origins,
            policy: r.policy,
            version: r.version,
        })
        .collect())
}

/// One site the actor may see.
pub async fn get(state: &AdminState, actor: &Actor, key: &str) -> AdminResult<SiteView> {
    let id = actor.site(key)?;
    view(state, record(state, &id).await?).await
}

/// Creates a site with a fresh secret key; its creator becomes its first member.
pub async fn create(
    state: &AdminState,
    actor: &Actor,
    new: NewSite,
) -> AdminResult<SiteWithSecret> {
    actor.require_admin()?;
    let id = SiteId::parse(new.key.trim())
        .map_err(|e| AdminError::field("key", format!("{:?} {e}", new.key)))?;
    let name = check_name(&new.name)?;
    let origins = check_origins(&new.origins)?;
    let policy = Policy {
        timezone: new.timezone.unwrap_or_else(|| "UTC".to_owned()),
        ..Policy::default()
    };
    check_policy(&policy)?;
    let secret = super::secret("sk_");
    let new = SiteRecord {
        id: id.clone(),
        secret: SecretDigest::of(&secret),
        origins,
        policy,
        version: 0,
    };
    // One transaction: a key taken meanwhile (two people, one double-submitted form) is a
    // conflict, never a second secret over the first or a site shared by two tenants.
    state
        .accounts
        .create_site(&new, &name, actor.user.id)
        .await?;
    state.live.changed().await;
    let site = view(state, record(state, &id).await?).await?;
    Ok(SiteWithSecret { site, secret })
}

/// Changes a site's name, origins or policy.
pub async fn update(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    change: SiteChange,
) -> AdminResult<SiteView> {
    let id = actor.site(key)?;
    actor.require_admin()?;
    let name = change.name.as_deref().map(check_name).transpose()?;
    let origins = change.origins.as_deref().map(check_origins).transpose()?;
    let policy = match change.policy.filter(|p| !p.is_null()) {
        Some(p) => {
            let policy: Policy = serde_json::from_value(p)
                .map_err(|e| AdminError::field("policy", e.to_string()))?;
            check_policy(&policy)?;
            Some(policy)
        }
        None => None,
    };
    // Only what changed is written, in the store's own transaction: a rename racing a key
    // rotation cannot bring the old key back.
    let edit = SiteEdit {
        origins,
        policy,
        name,
        secret: None,
    };
    let record = state.accounts.edit_site(&id, &edit).await?;
    state.live.changed().await;
    view(state, record).await
}

/// Replaces a site's secret key; the old one stops working at once.
pub async fn rotate_secret(
    state: &AdminState,
    actor: &Actor,
    key: &str,
) -> AdminResult<SiteWithSecret> {
    let id = actor.site(key)?;
    actor.require_admin()?;
    let secret = super::secret("sk_");
    let edit = SiteEdit {
        secret: Some(SecretDigest::of(&secret)),
        ..SiteEdit::default()
    };
    let record = state.accounts.edit_site(&id, &edit).await?;
    state.live.changed().await;
    let site = view(state, record).await?;
    Ok(SiteWithSecret { site, secret })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_and_host_only() {
        let ok = check_origins(&[
            "https://shop.example/".to_owned(),
            "http://localhost:8080".to_owned(),
            "*".to_owned(),
            "https://shop.example".to_owned(),
        ])
        .unwrap();
        assert_eq!(ok, ["https://shop.example", "http://localhost:8080", "*"]);
        let bad = check_origins(&[
            "https://a.example".to_owned(),
            "javascript:alert(1)".to_owned(),
        ])
        .unwrap_err();
        assert_eq!(bad.field_name(), Some("origins[1]"));
        assert!(check_origins(&["https://shop.example/path".to_owned()]).is_err());
    }
}
