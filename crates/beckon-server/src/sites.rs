//! The sites this server serves: their records and their compiled engines.
//!
//! Engines are immutable; changing a site's rules builds a new engine and swaps it in. Sessions
//! pick up the new engine with their next event.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use beckon_engine::{Engine, RuleSet, SiteId};
use beckon_store::{SiteRecord, Store};

/// A site ready to serve: its record and its engine.
#[derive(Debug)]
pub struct SiteRuntime {
    /// Keys, origins, policy.
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
}

/// Every site, by key.
#[derive(Clone, Default)]
pub struct Sites {
    inner: Arc<RwLock<HashMap<SiteId, Arc<SiteRuntime>>>>,
}

impl Sites {
    /// Loads every site and its rules from the store and compiles them.
    pub async fn load(store: &dyn Store) -> Result<Sites, String> {
        let sites = Sites::default();
        for record in store.sites().await.map_err(|e| e.to_string())? {
            let specs = store.rules(&record.id).await.map_err(|e| e.to_string())?;
            sites.install(record, specs)?;
        }
        Ok(sites)
    }

    /// Compiles `specs` for `record` and makes it the site's engine.
    pub fn install(
        &self,
        record: SiteRecord,
        specs: Vec<beckon_engine::rules::RuleSpec>,
    ) -> Result<(), String> {
        let tz = Engine::timezone(&record.policy);
        let rules = RuleSet::compile(beckon_engine::rules::RuleFile { rules: specs }, tz)
            .map_err(|e| format!("site {}: {e}", record.id))?;
        let engine = Engine::new(record.id.clone(), record.policy.clone(), rules)
            .map_err(|e| format!("site {}: {e}", record.id))?;
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

    /// Whether any site allows `origin` (for CORS preflights, which carry no site key).
    pub fn any_allows(&self, origin: Option<&str>) -> bool {
        self.inner
            .read()
            .expect("sites lock poisoned")
            .values()
            .any(|s| s.allows_origin(origin))
    }

    /// The site with this key.
    pub fn get(&self, id: &str) -> Option<Arc<SiteRuntime>> {
        let key = SiteId::parse(id).ok()?;
        self.inner
            .read()
            .expect("sites lock poisoned")
            .get(&key)
            .cloned()
    }
}
