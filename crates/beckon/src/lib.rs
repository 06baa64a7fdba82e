//! The `beckon` command's wiring: settings, the demo, and the rule commands. `main.rs` only
//! parses flags and calls in here, so tests can start the same demo in-process.

pub mod settings;

use std::path::Path;
use std::sync::Arc;

use beckon_engine::rules::RuleFile;
use beckon_engine::{Engine, Policy, RuleSet, SiteId};
use beckon_server::limits::Limits;
use beckon_server::{Options, Server};
use beckon_store::{SiteRecord, Store};
use beckon_store_sqlite::SqliteStore;

/// The demo's rules: the five moments of the seeds.
pub const DEMO_RULES: &str = include_str!("../../../examples/demo-rules.toml");
/// The demo site's key.
pub const DEMO_SITE: &str = "demo";
/// The demo site's secret key, for trying the merchant's endpoints by hand. Only the demo's
/// secret is known in advance; a real site's is made at random and shown once.
pub const DEMO_SECRET: &str = "sk_demo_secret";

/// Opens (creating if needed) the embedded database in `data` and migrates it.
pub async fn open_store(data: &Path) -> Result<Arc<dyn Store>, String> {
    std::fs::create_dir_all(data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
    let store = SqliteStore::open(&data.join("beckon.db"))
        .await
        .map_err(|e| format!("cannot open the database in {}: {e}", data.display()))?;
    store
        .migrate()
        .await
        .map_err(|e| format!("cannot migrate the database: {e}"))?;
    Ok(Arc::new(store))
}

/// Compiles a rule file for a policy's time zone; the error lists every problem.
pub fn compile_rules(text: &str, policy: &Policy, json: bool) -> Result<RuleSet, String> {
    let tz = Engine::timezone(policy);
    let result = if json {
        RuleSet::from_json(text, tz)
    } else {
        RuleSet::from_toml(text, tz)
    };
    result.map_err(|e| e.to_string())
}

/// The demo site's record for a server reachable at `origins`.
pub fn demo_site(origins: Vec<String>, policy: Policy) -> SiteRecord {
    SiteRecord {
        id: SiteId::parse(DEMO_SITE).expect("valid site key"),
        secret: beckon_store::SecretDigest::of(DEMO_SECRET),
        origins,
        policy,
        version: 0,
    }
}

/// Sets up the demo site with its rules in `store`, and starts the server parts.
pub async fn start_demo(
    store: Arc<dyn Store>,
    port: u16,
    policy: Policy,
) -> Result<Server, String> {
    let origins = vec![
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ];
    let site = demo_site(origins, policy);
    let rules = compile_rules(DEMO_RULES, &site.policy, false)?;
    store.put_site(&site).await.map_err(|e| e.to_string())?;
    store
        .replace_rules(&site.id, &rules.to_file().rules)
        .await
        .map_err(|e| e.to_string())?;
    beckon_server::start(
        store,
        Options {
            demo_shop: true,
            // The demo's one visitor is on this machine, loading the shop's pages, the widget
            // and its events from one address: a per-address limit would only get in the way.
            limits: Limits {
                per_ip_per_second: 0,
                ..Limits::default()
            },
            ..Options::default()
        },
    )
    .await
    .map_err(|e| e.to_string())
}

/// Imports the rule file at `path` for `site`, replacing its rules.
pub async fn import_rules(store: &dyn Store, site: &str, path: &Path) -> Result<usize, String> {
    let id = SiteId::parse(site).map_err(|e| format!("site {site:?} {e}"))?;
    let record = store
        .sites()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| format!("no site {site:?} in this database"))?;
    let text = read_rule_file(path)?;
    let rules = compile_rules(&text, &record.policy, is_json(path))?;
    let specs: RuleFile = rules.to_file();
    store
        .replace_rules(&id, &specs.rules)
        .await
        .map_err(|e| e.to_string())?;
    Ok(specs.rules.len())
}

/// Reads a rule file, refusing what is too large before reading it whole.
pub fn read_rule_file(path: &Path) -> Result<String, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > beckon_engine::rules::MAX_RULE_FILE_BYTES as u64 {
        return Err(format!(
            "{} is {} bytes; a rule file may be at most {}",
            path.display(),
            meta.len(),
            beckon_engine::rules::MAX_RULE_FILE_BYTES
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Whether a rule file is JSON (by extension); TOML otherwise.
pub fn is_json(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
}
