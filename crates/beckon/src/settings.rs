//! One `Settings`: defaults in code, then the TOML file, then `BECKON_` environment variables.

use std::fmt;
use std::path::{Path, PathBuf};

use beckon_engine::Policy;
use serde::Deserialize;

/// Everything `beckon serve` needs.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub listen: String,
    /// Folder of the embedded SQLite database.
    pub data: PathBuf,
    /// Engine shards; 0 means one per core.
    pub shards: usize,
    /// The sites served.
    pub sites: Vec<SiteSettings>,
}

/// One site.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSettings {
    /// The public site key, as in the install snippet.
    pub id: String,
    /// The secret key for the merchant's backend.
    pub secret: String,
    /// Origins allowed to send events.
    pub origins: Vec<String>,
    /// A rule file imported at start, replacing the site's rules.
    #[serde(default)]
    pub rules: Option<PathBuf>,
    /// Guardrails.
    #[serde(default)]
    pub policy: Policy,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8080".to_owned(),
            data: PathBuf::from("beckon-data"),
            shards: 0,
            sites: Vec::new(),
        }
    }
}

/// The annotated defaults, printed by `beckon default-config`.
pub const DEFAULT_CONFIG: &str = r#"# Beckon configuration. Every value here is the default; environment variables
# BECKON_LISTEN, BECKON_DATA and BECKON_SHARDS override the file.

# Address to listen on.
listen = "127.0.0.1:8080"
# Folder of the embedded SQLite database.
data = "beckon-data"
# Engine shards; 0 means one per core.
shards = 0

# One table per site.
# [[sites]]
# id = "shop"                                # the data-site key of the install snippet
# secret = "sk_change_me"                    # for POST /v1/conversions and /v1/track
# origins = ["https://shop.example"]         # pages allowed to send events ("*": any)
# rules = "rules.toml"                       # imported at start, replacing the site's rules
# [sites.policy]
# max_per_session = 2                        # interventions per session
# max_per_visitor_day = 3                    # per visitor in any 24 hours
# dismiss_cooldown = "10m"                   # quiet after a dismissal
# dismissals_before_silence = 2              # this many dismissals within `silence`...
# silence = "30days"                         # ...silence the visitor this long
# quiet_after_conversion = "0s"              # beyond the session (always quiet in it)
# arrival_grace = "5s"                       # nothing this early without cart or exit intent
# visit_gap = "30m"                          # a new tab within this of the last activity is the same visit
# quiet_page_types = []                      # e.g. ["checkout"]
# quiet_paths = []                           # e.g. ["/account", "/legal"]
# holdout_percent = 10.0                     # visitors who see nothing, for honest lift
# holdout_salt = "beckon"
# timezone = "UTC"                           # for schedules and business hours
"#;

impl Settings {
    /// Defaults, then `file`, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, String> {
        let mut s = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => Settings::default(),
        };
        if let Ok(v) = std::env::var("BECKON_LISTEN") {
            s.listen = v;
        }
        if let Ok(v) = std::env::var("BECKON_DATA") {
            s.data = PathBuf::from(v);
        }
        if let Ok(v) = std::env::var("BECKON_SHARDS") {
            s.shards = v
                .parse()
                .map_err(|_| format!("BECKON_SHARDS={v:?} is not a number"))?;
        }
        for site in &s.sites {
            site.policy
                .validate()
                .map_err(|e| format!("site {}: {e}", site.id))?;
        }
        Ok(s)
    }
}

impl fmt::Debug for SiteSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SiteSettings")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("origins", &self.origins)
            .field("rules", &self.rules)
            .finish()
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("data", &self.data)
            .field("shards", &self.shards)
            .field("sites", &self.sites)
            .finish()
    }
}
