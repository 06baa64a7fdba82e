//! A site's rules, one at a time: written, launched, paused, archived, and restored from
//! history. Every save compiles the whole set with the site's time zone, so a rule the engine
//! would refuse never reaches the store, and each save is checked against the version it was
//! based on, so two people editing at once cannot overwrite each other unknowingly.

use beckon_engine::rules::spec::Status;
use beckon_engine::rules::{RuleFile, RuleSet, RuleSpec};
use beckon_engine::{Engine, SiteId};
use beckon_store::accounts::Change;
use beckon_store::insight::RuleCounts;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AdminState;
use crate::auth::Actor;
use crate::clock::now;
use crate::error::{AdminError, AdminResult};
use crate::manage::rfc3339;

/// How far back the list's counts go.
pub const COUNTS_DAYS: i64 = 7;
/// How many versions of a site's rule set the history of one rule looks through.
pub const HISTORY_DEPTH: usize = 500;

/// A rule with its recent numbers.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RuleView {
    /// The rule as in a rule file (`beckon rules export --json`).
    #[schema(value_type = Object)]
    pub rule: RuleSpec,
    /// The last 7 days' counts.
    pub last_7_days: Counts,
}

/// Exposures and outcomes of a rule.
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
pub struct Counts {
    /// Fired for treated visitors.
    pub fired: u64,
    /// Would have fired for held-out visitors (ghosts).
    pub ghosts: u64,
    /// Reported on screen by the widget.
    pub shown: u64,
    /// Dismissed.
    pub dismissed: u64,
    /// Engaged with.
    pub engaged: u64,
}

impl From<RuleCounts> for Counts {
    fn from(c: RuleCounts) -> Counts {
        Counts {
            fired: c.fired,
            ghosts: c.ghosts,
            shown: c.shown,
            dismissed: c.dismissed,
            engaged: c.engaged,
        }
    }
}

/// A site's rules at one version.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RulesView {
    /// The rule-set version: send it back as `base` to save against it.
    pub version: u64,
    /// The rules, in the order the engine tries them (priority, then id).
    pub rules: Vec<RuleView>,
}

/// A rule to save.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSave {
    /// The rule as in a rule file (`beckon rules export --json`); its `id` must be the one in
    /// the path. Read by the engine, whose refusals name the field (422).
    #[schema(value_type = crate::api::RuleDoc)]
    pub rule: serde_json::Value,
    /// The rule-set version the edit started from; a save is refused (409) when the set has
    /// changed since. Absent: the current version.
    #[serde(default, deserialize_with = "crate::api::whole::option")]
    #[schema(minimum = 0)]
    pub base: Option<u64>,
}

impl RuleSave {
    /// The rule, read as the engine reads rule files.
    pub fn spec(&self) -> AdminResult<RuleSpec> {
        serde_json::from_value(self.rule.clone())
            .map_err(|e| AdminError::field("rule", e.to_string()))
    }
}

/// A rule's new status.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    /// `draft`, `live`, `paused` or `archived`.
    #[schema(pattern = "^(draft|live|paused|archived)$")]
    pub status: String,
    /// As for a save.
    #[serde(default, deserialize_with = "crate::api::whole::option")]
    #[schema(minimum = 0)]
    pub base: Option<u64>,
}

/// A version to restore.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Restore {
    /// The rule-set version whose form of the rule comes back (its status stays as it is now).
    #[serde(deserialize_with = "crate::api::whole::required")]
    #[schema(minimum = 0)]
    pub version: u64,
    /// As for a save.
    #[serde(default, deserialize_with = "crate::api::whole::option")]
    #[schema(minimum = 0)]
    pub base: Option<u64>,
}

/// One change of a rule in its history.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RuleVersion {
    /// The rule-set version the change made.
    pub version: u64,
    /// When (RFC 3339), if recorded.
    pub at: Option<String>,
    /// Who, if recorded.
    pub author: Option<String>,
    /// What, in words.
    pub summary: String,
    /// The rule at that version; absent when the change removed it.
    #[schema(value_type = Option<Object>)]
    pub rule: Option<RuleSpec>,
}

/// The current version and rules of a site.
pub(crate) async fn current(
    state: &AdminState,
    site: &SiteId,
) -> AdminResult<(u64, beckon_engine::Policy, Vec<RuleSpec>)> {
    let record = state
        .store
        .sites()
        .await?
        .into_iter()
        .find(|s| s.id == *site)
        .ok_or_else(|| AdminError::NotFound(format!("no site {:?}", site.as_str())))?;
    let set = state
        .store
        .rule_set(site, record.version)
        .await?
        .ok_or_else(|| AdminError::Store(format!("rule set {} missing", record.version)))?;
    Ok((record.version, set.policy, set.rules))
}

fn ordered(rules: &mut [RuleSpec]) {
    rules.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
}

/// The rules of a site with their last 7 days' counts.
pub async fn list(state: &AdminState, actor: &Actor, key: &str) -> AdminResult<RulesView> {
    let site = actor.site(key)?;
    let (version, _, mut rules) = current(state, &site).await?;
    ordered(&mut rules);
    let since = now().plus_ms(-COUNTS_DAYS * 24 * 3600 * 1000);
    let counts = state.insight.rule_counts(&site, since).await?;
    Ok(RulesView {
        version,
        rules: rules
            .into_iter()
            .map(|rule| {
                let last_7_days = counts
                    .iter()
                    .find(|(id, _)| id.as_str() == rule.id)
                    .map(|(_, c)| Counts::from(c.clone()))
                    .unwrap_or_default();
                RuleView { rule, last_7_days }
            })
            .collect(),
    })
}

/// One rule and the version it is at.
pub async fn get(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    id: &str,
) -> AdminResult<(u64, RuleSpec)> {
    let site = actor.site(key)?;
    let (version, _, rules) = current(state, &site).await?;
    let rule = rules
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| AdminError::NotFound(format!("no rule {id:?} in site {key:?}")))?;
    Ok((version, rule))
}

/// Checks that a rule set compiles for a policy, naming every field at fault.
pub fn compile(rules: Vec<RuleSpec>, policy: &beckon_engine::Policy) -> AdminResult<RuleSet> {
    RuleSet::compile(RuleFile { rules }, Engine::timezone(policy)).map_err(AdminError::from_load)
}

/// Applies `edit` to the current rules of the site and saves the result, if it compiles, as a
/// new version based on `base`, described by the summary `edit` returns. Returns the new
/// version.
async fn change(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    base: Option<u64>,
    edit: impl FnOnce(&mut Vec<RuleSpec>) -> AdminResult<String>,
) -> AdminResult<u64> {
    let site = actor.site(key)?;
    actor.require_admin()?;
    let (version, policy, mut rules) = current(state, &site).await?;
    let base = base.unwrap_or(version);
    if base != version {
        return Err(AdminError::Conflict(format!(
            "the rules changed since version {base} (now {version}); reload and apply your edit again"
        )));
    }
    let summary = edit(&mut rules)?;
    compile(rules.clone(), &policy)?;
    let change = Change {
        author: Some(actor.user.id),
        at: now(),
        summary,
    };
    let version = state
        .accounts
        .save_rules(&site, base, &rules, &change)
        .await?;
    state.live.changed().await;
    Ok(version)
}

/// Creates or replaces the rule `id`.
pub async fn save(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    id: &str,
    save: RuleSave,
) -> AdminResult<u64> {
    let rule = save.spec()?;
    if rule.id != id {
        return Err(AdminError::field(
            "rule.id",
            format!(
                "the rule's id {:?} is not the {id:?} of the address",
                rule.id
            ),
        ));
    }
    change(state, actor, key, save.base, |rules| {
        Ok(match rules.iter_mut().find(|r| r.id == rule.id) {
            Some(existing) => {
                *existing = rule;
                format!("edited {id:?}")
            }
            None => {
                rules.push(rule);
                format!("created {id:?}")
            }
        })
    })
    .await
}

/// A rule's new status: launched, paused, archived or back to draft.
pub async fn set_status(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    id: &str,
    to: StatusChange,
) -> AdminResult<u64> {
    let status = parse_status(&to.status)?;
    let verb = match status {
        Status::Live => "launched",
        Status::Paused => "paused",
        Status::Archived => "archived",
        Status::Draft => "moved to draft",
    };
    change(state, actor, key, to.base, |rules| {
        find(rules, key, id)?.status = status;
        Ok(format!("{verb} {id:?}"))
    })
    .await
}

/// Deletes a draft (a rule that ran is archived instead, so that its numbers stay readable).
pub async fn delete(state: &AdminState, actor: &Actor, key: &str, id: &str) -> AdminResult<u64> {
    change(state, actor, key, None, |rules| {
        let rule = find(rules, key, id)?;
        if rule.status != Status::Draft {
            return Err(AdminError::Conflict(format!(
                "{id:?} is {}; only a draft can be deleted — archive it instead",
                rule.status.as_str()
            )));
        }
        rules.retain(|r| r.id != id);
        Ok(format!("deleted draft {id:?}"))
    })
    .await
}

/// Brings back the form a rule had at `version`, keeping its current status.
pub async fn restore(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    id: &str,
    restore: Restore,
) -> AdminResult<u64> {
    let site = actor.site(key)?;
    let old = state
        .accounts
        .rule_history(&site, restore.version.saturating_add(1), 1)
        .await?
        .into_iter()
        .find(|e| e.version == restore.version)
        .and_then(|e| e.rules.into_iter().find(|r| r.id == id))
        .ok_or_else(|| {
            AdminError::NotFound(format!("rule {id:?} is not in version {}", restore.version))
        })?;
    let summary = format!("restored {id:?} to version {}", restore.version);
    change(state, actor, key, restore.base, |rules| {
        match rules.iter_mut().find(|r| r.id == id) {
            Some(current) => {
                let status = current.status;
                *current = RuleSpec { status, ..old };
            }
            None => rules.push(RuleSpec {
                status: Status::Draft,
                ..old
            }),
        }
        Ok(summary)
    })
    .await
}

/// The changes of one rule, newest first: the versions where it differs from the one before.
pub async fn history(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    id: &str,
) -> AdminResult<Vec<RuleVersion>> {
    let site = actor.site(key)?;
    let entries = state
        .accounts
        .rule_history(&site, u64::MAX, HISTORY_DEPTH)
        .await?;
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let this = entry.rules.iter().find(|r| r.id == id);
        let before = entries
            .get(i + 1)
            .and_then(|older| older.rules.iter().find(|r| r.id == id));
        if this == before || (this.is_none() && before.is_none()) {
            continue;
        }
        out.push(RuleVersion {
            version: entry.version,
            at: entry.change.as_ref().map(|c| rfc3339(c.at)),
            author: entry.author_name.clone(),
            summary: entry.change.as_ref().map_or_else(
                || "imported or configured".to_owned(),
                |c| c.summary.clone(),
            ),
            rule: this.cloned(),
        });
    }
    if out.is_empty() {
        // A rule the actor cannot see and a rule that never existed look the same.
        return Err(AdminError::NotFound(format!(
            "no rule {id:?} in site {key:?}"
        )));
    }
    Ok(out)
}

fn find<'a>(rules: &'a mut [RuleSpec], key: &str, id: &str) -> AdminResult<&'a mut RuleSpec> {
    rules
        .iter_mut()
        .find(|r| r.id == id)
        .ok_or_else(|| AdminError::NotFound(format!("no rule {id:?} in site {key:?}")))
}

/// Parses a status name.
pub fn parse_status(s: &str) -> AdminResult<Status> {
    match s {
        "draft" => Ok(Status::Draft),
        "live" => Ok(Status::Live),
        "paused" => Ok(Status::Paused),
        "archived" => Ok(Status::Archived),
        other => Err(AdminError::field(
            "status",
            format!("{other:?} is not one of draft, live, paused, archived"),
        )),
    }
}

/// A preview to draw.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// The draft rule, as in a rule file.
    #[schema(value_type = crate::api::RuleDoc)]
    pub rule: serde_json::Value,
    /// The sample visitor: `page_type`, `path`, `title`, `product`, `cart_items`,
    /// `cart_value`, `currency`, `language`, `device`, `traits` (all optional).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub sample: serde_json::Value,
}

/// A preview drawn.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PreviewDrawn {
    /// The page to load in a sandboxed frame: the real widget shows the message there.
    pub frame: String,
}

/// Renders a draft rule for a sample visitor; the frame to show it in.
pub async fn preview(
    state: &AdminState,
    actor: &Actor,
    key: &str,
    request: PreviewRequest,
) -> AdminResult<PreviewDrawn> {
    let site = actor.site(key)?;
    let previewer = state
        .previewer
        .as_ref()
        .ok_or_else(|| AdminError::Conflict("previews need a running server".to_owned()))?;
    let spec = RuleSave {
        rule: request.rule,
        base: None,
    }
    .spec()?;
    let (_, policy, _) = current(state, &site).await?;
    compile(vec![spec.clone()], &policy)?;
    let sample = if request.sample.is_null() {
        serde_json::json!({})
    } else {
        request.sample
    };
    let token = previewer
        .preview(&site, &policy, spec, sample)
        .map_err(|e| AdminError::field("sample", e))?;
    Ok(PreviewDrawn {
        frame: format!("/dash/preview/{token}"),
    })
}
