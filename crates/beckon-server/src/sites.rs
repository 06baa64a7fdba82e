//! The sites this server serves: their records and their compiled engines.
//!
//! A site's engine is immutable; changing its rules or policy builds a new engine and swaps it
//! in, in one step. Nothing else keeps an engine: sessions, sockets and queued jobs hold the
//! site's key and read the engine in force at each decision, so none of them can bring an old
//! one back. [`watch`] polls the store so that a change written by another process (`beckon
//! rules import` against a running server's database) takes effect within seconds.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use beckon_engine::{Engine, RuleSet, SiteId};
use beckon_store::{SiteRecord, Store, StoreError};
use tokio_util::sync::CancellationToken;

/// How often [`watch`] asks the store for changed sites.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Why a site could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// Its rules or policy do not compile.
    #[error("site {site}: {reason}")]
    Invalid {
        /// The site.
        site: SiteId,
        /// What is wrong.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A site ready to serve: its record and its engine.
#[derive(Debug)]
pub struct SiteRuntime {
    /// Keys, origins, policy, version.
    pub record: SiteRecord,
    /// The compiled rules under the policy.
    pub engine: Arc<Engine>,
}

impl SiteRuntime {
    /// Whether a request from `origin` may speak for this site.
    pub fn allows_origin(&self, origin: Option<&str>) -> bool {
        let origins = &self.record.origins;
        if origins.iter().any(|o| o == "*") {
            return true;
        }
        origin.is_some_and(|o| {
            origins
                .iter()
                .any(|allowed| allowed.trim_end_matches('/') == o)
        })
    }

    /// The rule-set version this engine was built from.
    pub fn version(&self) -> u64 {
        self.record.version
    }
}

/// Every site, by key.
#[derive(Clone, Default)]
pub struct Sites {
    inner: Arc<RwLock<HashMap<SiteId, Arc<SiteRuntime>>>>,
}

impl Sites {
    /// Loads every site and its rules from the store and compiles them. A site whose rules do
    /// not compile is left out (and logged), so one bad site cannot stop the others.
    pub async fn load(store: &dyn Store) -> Result<Sites, StoreError> {
        let sites = Sites::default();
        for record in store.sites().await? {
            sites.reload(store, record).await;
        }
        Ok(sites)
    }

    async fn reload(&self, store: &dyn Store, record: SiteRecord) {
        let id = record.id.clone();
        // The rules of the record's own version, not whatever is current by now: an import
        // between the two reads must not run under the older version number.
        let result = match store.rule_set(&id, record.version).await {
            Ok(Some(set)) => {
                let record = SiteRecord {
                    policy: set.policy,
                    ..record
                };
                self.install(record, set.rules).map_err(|e| e.to_string())
            }
            Ok(None) => Err(format!(
                "rule-set version {} is not in the store",
                record.version
            )),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = result {
            tracing::error!(site = %id, %error, "site not (re)loaded; the engine in force, if any, stays");
        }
    }

    /// Compiles `specs` for `record` and makes it the site's engine, in one swap.
    pub fn install(
        &self,
        record: SiteRecord,
        specs: Vec<beckon_engine::rules::RuleSpec>,
    ) -> Result<(), SiteError> {
        let invalid = |reason: String| SiteError::Invalid {
            site: record.id.clone(),
            reason,
        };
        let tz = Engine::timezone(&record.policy);
        let rules = RuleSet::compile(beckon_engine::rules::RuleFile { rules: specs }, tz)
            .map_err(|e| invalid(e.to_string()))?;
        let engine = Engine::new(record.id.clone(), record.policy.clone(), rules)
            .map_err(|e| invalid(e.to_string()))?;
        crate::metrics::rules_version(record.id.as_str(), record.version);
        let runtime = Arc::new(SiteRuntime {
            record,
            engine: Arc::new(engine),
        });
        self.inner
            .write()
            .expect("sites lock poisoned")
            .insert(runtime.record.id.clone(), runtime);
        Ok(())
    }

    /// Reloads the sites whose version in the store differs from the one in force.
    pub async fn refresh(&self, store: &dyn Store) -> Result<usize, StoreError> {
        let changed: Vec<SiteId> = store
            .site_versions()
            .await?
            .into_iter()
            .filter(|(id, version)| self.get_id(id).is_none_or(|s| s.version() != *version))
            .map(|(id, _)| id)
            .collect();
        if changed.is_empty() {
            return Ok(0);
        }
        for record in store.sites().await? {
            if changed.contains(&record.id) {
                tracing::info!(site = %record.id, version = record.version, "site changed; new rules in force");
                self.reload(store, record).await;
            }
        }
        Ok(changed.len())
    }

    /// Whether any site allows `origin`.
    pub fn any_allows(&self, origin: Option<&str>) -> bool {
        self.inner
            .read()
            .expect("sites lock poisoned")
            .values()
            .any(|s| s.allows_origin(origin))
    }

    /// The site with this key, as given on the wire.
    pub fn get(&self, id: &str) -> Option<Arc<SiteRuntime>> {
        let key = SiteId::parse(id).ok()?;
        self.get_id(&key)
    }

    /// The site with this id.
    pub fn get_id(&self, id: &SiteId) -> Option<Arc<SiteRuntime>> {
        self.inner
            .read()
            .expect("sites lock poisoned")
            .get(id)
            .cloned()
    }
}

/// Polls the store every `every` and swaps in the sites that changed, until `shutdown`.
pub async fn watch(
    sites: Sites,
    store: Arc<dyn Store>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = sites.refresh(store.as_ref()).await {
                    tracing::warn!(error = %e, "cannot check the sites for changes");
                }
            }
            _ = shutdown.cancelled() => break,
        }
    }
}
