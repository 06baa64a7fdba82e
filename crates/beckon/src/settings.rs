//! One `Settings`: defaults in code, then the TOML file, then `BECKON_` environment variables.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use beckon_engine::Policy;
use beckon_server::limits::Limits;
use serde::Deserialize;

/// Everything `beckon serve` needs.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub listen: String,
    /// Folder of the embedded SQLite database.
    pub data: PathBuf,
    /// A PostgreSQL database's URL (`postgres://user@host/db`), for several nodes on one
    /// database; when set, `data` is not used.
    pub database: Option<String>,
    /// Engine shards; 0 means one per core.
    pub shards: usize,
    /// The sites served.
    pub sites: Vec<SiteSettings>,
    /// The server's bounds.
    pub limits: LimitSettings,
    /// The dashboard and the admin API.
    pub admin: AdminSettings,
    /// The mail relay for lead e-mail (none: e-mail deliveries fail, are retried on the
    /// schedule, then die, replayable once one is configured).
    pub smtp: Option<beckon_outbox::email::SmtpSettings>,
    /// Where deliveries may go.
    pub outbox: OutboxSettings,
    /// This node's place among several on one PostgreSQL database (none: it runs alone).
    pub cluster: Option<ClusterSettings>,
}

/// The `[cluster]` table: a node of several sharing one PostgreSQL database.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// The node's name, unique among the live nodes; visitors are spread over names, so a node
    /// restarted under its name gets its visitors back.
    pub name: String,
    /// Where the other nodes reach this one (host:port of its listener on the internal
    /// network), to forward to it the requests of its visitors.
    pub address: String,
    /// How long the node's lease lasts without renewal: its visitors move to the others this
    /// long after it dies.
    #[serde(default = "cluster_lease", with = "beckon_engine::rules::duration")]
    pub lease: Duration,
    /// How often the lease is renewed and the live nodes read.
    #[serde(default = "cluster_heartbeat", with = "beckon_engine::rules::duration")]
    pub heartbeat: Duration,
    /// The Redis every node shares (`redis://host:6379`, or `BECKON_REDIS`): the bus that
    /// carries chat messages, live views and rule changes between nodes, and the per-site rate
    /// limit's counters.
    #[serde(default)]
    pub redis: Option<String>,
}

fn cluster_lease() -> Duration {
    beckon_cluster::DEFAULT_LEASE
}
fn cluster_heartbeat() -> Duration {
    beckon_cluster::DEFAULT_HEARTBEAT
}

impl fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("lease", &self.lease)
            .field("heartbeat", &self.heartbeat)
            .field(
                "redis",
                &self.redis.as_deref().map(beckon_cluster::bus::redact),
            )
            .finish()
    }
}

impl ClusterSettings {
    /// The Redis URL, checked.
    pub fn redis_url(&self) -> Result<&str, String> {
        match self.redis.as_deref() {
            None | Some("") => Err(
                "needs `redis`, the URL of the Redis the nodes share (redis://host:6379)"
                    .to_owned(),
            ),
            Some(url) if url.starts_with("redis://") => Ok(url),
            Some(url) => Err(format!(
                "`redis` must be a redis:// URL (TLS is not built in: reach Redis on a private \
                 network or through a TLS tunnel), not {:?}",
                beckon_cluster::bus::redact(url)
            )),
        }
    }

    /// The cluster crate's configuration.
    pub fn to_config(&self) -> beckon_cluster::ClusterConfig {
        beckon_cluster::ClusterConfig {
            name: self.name.clone(),
            address: self.address.clone(),
            lease: self.lease,
            heartbeat: self.heartbeat,
        }
    }
}

/// The `[outbox]` table.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxSettings {
    /// Whether a site's destinations may be private or local addresses (a relay beside Beckon);
    /// otherwise only https to public hosts.
    pub allow_private_addresses: bool,
}

/// The `[admin]` table.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Mark the login cookie `Secure`: set when people reach Beckon over HTTPS (behind a TLS
    /// proxy), so that the cookie never travels in the clear.
    pub secure_cookies: bool,
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
    /// A folder of the site's knowledge for the chat's AI agent: FAQ and facts in Markdown
    /// (`*.md`), a product catalog in JSON or CSV.
    #[serde(default)]
    pub knowledge: Option<PathBuf>,
    /// Guardrails.
    #[serde(default)]
    pub policy: Policy,
    /// An OpenAI-compatible model for the chat's AI agent (none: the offline responder answers
    /// from the knowledge alone).
    #[serde(default)]
    pub model: Option<ModelSettings>,
}

/// A site's `[sites.model]` table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// The API's base URL, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    /// The model's name.
    pub model: String,
    /// The environment variable that holds the API key (the key never sits in this file).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The longest one answer may take.
    #[serde(default = "model_timeout", with = "beckon_engine::rules::duration")]
    pub timeout: Duration,
    /// Tries again after a failed call.
    #[serde(default = "model_retries")]
    pub retries: u32,
    /// The most tokens one call writes.
    #[serde(default = "model_max_tokens")]
    pub max_tokens: u32,
    /// Model calls per day; past it the offline responder answers.
    #[serde(default = "model_calls_per_day")]
    pub calls_per_day: u64,
    /// Tokens per day; past it the offline responder answers.
    #[serde(default = "model_tokens_per_day")]
    pub tokens_per_day: u64,
    /// The shop's name in the model's instructions.
    #[serde(default)]
    pub shop: Option<String>,
    /// `GET URL?order_id=…` on the merchant's side answers an order's status (the
    /// `order_status` tool); none: the tool is not offered.
    #[serde(default)]
    pub order_status_url: Option<String>,
    /// The environment variable holding the token sent to that URL.
    #[serde(default)]
    pub order_status_token_env: Option<String>,
}

fn model_timeout() -> Duration {
    Duration::from_secs(20)
}
fn model_retries() -> u32 {
    2
}
fn model_max_tokens() -> u32 {
    400
}
fn model_calls_per_day() -> u64 {
    2000
}
fn model_tokens_per_day() -> u64 {
    2_000_000
}

impl ModelSettings {
    /// The model's configuration and budget, the key read from the environment.
    pub fn to_model(
        &self,
        site: &str,
    ) -> Result<
        (
            beckon_agent::model::ModelConfig,
            beckon_agent::budget::Budget,
        ),
        String,
    > {
        let env = |name: &Option<String>, what: &str| -> Result<Option<String>, String> {
            match name {
                None => Ok(None),
                Some(var) => std::env::var(var).map(Some).map_err(|_| {
                    format!("site {site}: the {what} is to be in ${var}, which is not set")
                }),
            }
        };
        if self.timeout.is_zero() {
            return Err(format!("site {site}: model.timeout must be more than 0"));
        }
        let config = beckon_agent::model::ModelConfig {
            base_url: self.base_url.clone(),
            model: self.model.clone(),
            api_key: env(&self.api_key_env, "model's API key")?,
            timeout: self.timeout,
            retries: self.retries.min(5),
            max_tokens: self.max_tokens.clamp(16, 4096),
            shop: self.shop.clone().unwrap_or_else(|| "this shop".to_owned()),
            orders: match &self.order_status_url {
                None => None,
                Some(url) => Some(beckon_agent::model::OrderEndpoint {
                    url: url.clone(),
                    token: env(&self.order_status_token_env, "order-status token")?,
                }),
            },
        };
        let budget = beckon_agent::budget::Budget {
            calls_per_day: self.calls_per_day,
            tokens_per_day: self.tokens_per_day,
        };
        Ok((config, budget))
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8080".to_owned(),
            data: PathBuf::from("beckon-data"),
            database: None,
            shards: 0,
            sites: Vec::new(),
            limits: LimitSettings::default(),
            admin: AdminSettings::default(),
            smtp: None,
            outbox: OutboxSettings::default(),
            cluster: None,
        }
    }
}

/// The `[limits]` table: every bound of [`Limits`], durations as text ("10s", "90days").
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Requests per second from one client address; 0 turns the limit off.
    pub per_ip_per_second: u32,
    /// Requests one address may make at once before the rate applies.
    pub per_ip_burst: u32,
    /// Event batches per second for one site; 0 turns the limit off.
    pub per_site_per_second: u32,
    /// Batches one site may send at once before the rate applies.
    pub per_site_burst: u32,
    /// The header a proxy in front of Beckon sets with the client's address; empty (the
    /// default) believes only the socket's peer.
    pub trusted_proxy_header: String,
    /// Open TCP connections at once.
    pub max_connections: usize,
    /// Live sessions one node holds in memory.
    pub max_live_sessions: usize,
    /// Open WebSockets per visitor.
    pub max_sockets_per_visitor: usize,
    /// Open WebSockets in all.
    pub max_sockets: usize,
    /// How often an open WebSocket is pinged.
    #[serde(with = "beckon_engine::rules::duration")]
    pub ws_ping: Duration,
    /// A WebSocket silent this long is closed.
    #[serde(with = "beckon_engine::rules::duration")]
    pub ws_idle_timeout: Duration,
    /// The longest a request may take, headers to answer.
    #[serde(with = "beckon_engine::rules::duration")]
    pub request_timeout: Duration,
    /// The longest a client may take to send a request's headers.
    #[serde(with = "beckon_engine::rules::duration")]
    pub header_read_timeout: Duration,
    /// The longest a client may pause while sending a request's body.
    #[serde(with = "beckon_engine::rules::duration")]
    pub body_read_timeout: Duration,
    /// How long a shed or throttled client is told to wait.
    #[serde(with = "beckon_engine::rules::duration")]
    pub retry_after: Duration,
    /// How long the raw event log is kept.
    #[serde(with = "beckon_engine::rules::duration")]
    pub retention: Duration,
    /// How long a shutdown waits for the requests in flight.
    #[serde(with = "beckon_engine::rules::duration")]
    pub drain_timeout: Duration,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings::from(&Limits::default())
    }
}

impl From<&Limits> for LimitSettings {
    fn from(l: &Limits) -> Self {
        LimitSettings {
            per_ip_per_second: l.per_ip_per_second,
            per_ip_burst: l.per_ip_burst,
            per_site_per_second: l.per_site_per_second,
            per_site_burst: l.per_site_burst,
            trusted_proxy_header: l.trusted_proxy_header.clone().unwrap_or_default(),
            max_connections: l.max_connections,
            max_live_sessions: l.max_live_sessions,
            max_sockets_per_visitor: l.max_sockets_per_visitor,
            max_sockets: l.max_sockets,
            ws_ping: l.ws_ping,
            ws_idle_timeout: l.ws_idle_timeout,
            request_timeout: l.request_timeout,
            header_read_timeout: l.header_read_timeout,
            body_read_timeout: l.body_read_timeout,
            retry_after: l.retry_after,
            retention: l.retention,
            drain_timeout: l.drain_timeout,
        }
    }
}

impl LimitSettings {
    /// Checks every bound, naming the field of the first one that cannot work; `Limits` on
    /// success.
    pub fn to_limits(&self) -> Result<Limits, String> {
        let at_least_one = [
            (
                "per_ip_burst",
                self.per_ip_burst as usize,
                self.per_ip_per_second > 0,
            ),
            (
                "per_site_burst",
                self.per_site_burst as usize,
                self.per_site_per_second > 0,
            ),
            ("max_connections", self.max_connections, true),
            ("max_live_sessions", self.max_live_sessions, true),
            (
                "max_sockets_per_visitor",
                self.max_sockets_per_visitor,
                true,
            ),
            ("max_sockets", self.max_sockets, true),
        ];
        for (field, value, applies) in at_least_one {
            if applies && value == 0 {
                return Err(format!("limits.{field} must be at least 1"));
            }
        }
        if self.max_connections > u32::MAX as usize {
            return Err(format!(
                "limits.max_connections must be at most {}",
                u32::MAX
            ));
        }
        let positive = [
            ("ws_ping", self.ws_ping),
            ("ws_idle_timeout", self.ws_idle_timeout),
            ("request_timeout", self.request_timeout),
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
            ("retry_after", self.retry_after),
            ("retention", self.retention),
            ("drain_timeout", self.drain_timeout),
        ];
        for (field, value) in positive {
            if value.is_zero() {
                return Err(format!("limits.{field} must be longer than 0s"));
            }
        }
        if self.ws_idle_timeout <= self.ws_ping {
            return Err(format!(
                "limits.ws_idle_timeout ({:?}) must be longer than limits.ws_ping ({:?}), or a \
                 quiet socket is closed before its pong can come back",
                self.ws_idle_timeout, self.ws_ping
            ));
        }
        let header = self.trusted_proxy_header.trim().to_ascii_lowercase();
        if !header.is_empty() && !is_header_name(&header) {
            return Err(format!(
                "limits.trusted_proxy_header {:?} is not a header name",
                self.trusted_proxy_header
            ));
        }
        Ok(Limits {
            per_ip_per_second: self.per_ip_per_second,
            per_ip_burst: self.per_ip_burst,
            per_site_per_second: self.per_site_per_second,
            per_site_burst: self.per_site_burst,
            trusted_proxy_header: (!header.is_empty()).then_some(header),
            max_connections: self.max_connections,
            max_live_sessions: self.max_live_sessions,
            max_sockets_per_visitor: self.max_sockets_per_visitor,
            max_sockets: self.max_sockets,
            ws_ping: self.ws_ping,
            ws_idle_timeout: self.ws_idle_timeout,
            request_timeout: self.request_timeout,
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            retry_after: self.retry_after,
            retention: self.retention,
            drain_timeout: self.drain_timeout,
        })
    }
}

/// Whether `name` is a valid HTTP header name: token characters only.
fn is_header_name(name: &str) -> bool {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    name.chars().all(token)
}

/// The annotated defaults, printed by `beckon default-config`.
pub const DEFAULT_CONFIG: &str = r#"# Beckon configuration. Every value here is the default; environment variables
# BECKON_LISTEN, BECKON_DATA, BECKON_DATABASE, BECKON_REDIS (with [cluster]) and BECKON_SHARDS
# override the file.

# Address to listen on.
listen = "127.0.0.1:8080"
# Folder of the embedded SQLite database.
data = "beckon-data"
# PostgreSQL instead, for several nodes on one database (`data` is then not used):
# database = "postgres://beckon@127.0.0.1:5432/beckon"
# Engine shards; 0 means one per core.
shards = 0

# One of several nodes on one PostgreSQL database (needs `database`): each visitor is served
# by one node, and requests reaching another are forwarded to it.
# [cluster]
# name = "node-1"                 # unique among the live nodes
# address = "10.0.0.11:8080"      # where the other nodes reach this one
# lease = "5s"                    # a dead node's visitors move this long after it stops
# heartbeat = "1s"
# redis = "redis://10.0.0.5:6379" # the Redis the nodes share: chat, live views, rule changes

# The server's bounds; each has a default that is safe on the open internet.
[limits]
per_ip_per_second = 20          # requests per second from one client address (0: no limit)
per_ip_burst = 100              # requests one address may make at once before that rate applies
per_site_per_second = 5000      # event batches per second for one site, all visitors (0: no limit)
per_site_burst = 10000          # batches a site may send at once before that rate applies
trusted_proxy_header = ""       # behind a proxy: the header with the client's address, e.g.
                                # "x-forwarded-for" (its last entry counts); "": the socket's peer
max_connections = 16384         # open TCP connections; more wait in the kernel's backlog
max_live_sessions = 200000      # live sessions in memory; past it the longest idle is dropped
max_sockets_per_visitor = 8     # open WebSockets per visitor (tabs); one more is closed with 1008
max_sockets = 100000            # open WebSockets in all; past it an upgrade gets 503 + Retry-After
ws_ping = "30s"                 # how often an open WebSocket is pinged
ws_idle_timeout = "1m 15s"      # a WebSocket that sends nothing, not even a pong, this long is closed
request_timeout = "15s"         # the longest a request may take, headers to answer (then 408)
header_read_timeout = "10s"     # the longest a client may take to send its headers (then closed)
body_read_timeout = "10s"       # the longest a client may pause while sending a body (then 408)
retry_after = "2s"              # Retry-After of a 429 or 503
retention = "90days"            # how long the raw event log is kept
drain_timeout = "10s"           # on shutdown, how long requests in flight may take to finish

[admin]
secure_cookies = false          # true when people reach the dashboard over HTTPS (a TLS proxy)

# Where a site's webhooks and team-chat alerts may send: https to public hosts only, unless the
# operator allows private and local addresses too (a receiver beside Beckon).
[outbox]
allow_private_addresses = false

# The mail relay for lead e-mail (the team's notice, the visitor's confirmation). Without one,
# e-mail deliveries fail and are retried on the schedule (about three days), then die and can be
# replayed once a relay is configured. Webhooks and team chat need none.
# [smtp]
# host = "smtp.example.com"
# port = 587
# tls = "starttls"                           # "starttls", "tls" (port 465) or "none" (a local relay)
# username = "beckon"
# password = "…"
# from = "Shop leads <leads@shop.example>"
# timeout_secs = 20

# Sites are made in the dashboard (or with the admin API); a site listed here is created or
# updated at start, its secret and origins as written. One table per site.
# [[sites]]
# id = "shop"                                # the data-site key of the install snippet
# secret = "sk_change_me"                    # for POST /v1/conversions and /v1/track
# origins = ["https://shop.example"]         # pages allowed to send events ("*": any)
# rules = "rules.toml"                       # imported at start, replacing the site's rules
# knowledge = "knowledge"                  # the chat AI's FAQ (*.md) and catalog (*.json, *.csv)
# [sites.model]                              # an OpenAI-compatible model (none: offline answers)
# base_url = "https://api.openai.com/v1"
# model = "gpt-4o-mini"
# api_key_env = "OPENAI_API_KEY"             # the key is read from this variable
# timeout = "20s"                            # one answer, tool calls and retries included
# calls_per_day = 2000                       # past either budget the offline responder answers
# tokens_per_day = 2000000
# order_status_url = "https://shop.example/beckon/order"  # GET ?order_id=…, for the order tool
# order_status_token_env = "SHOP_ORDER_TOKEN"
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
        if let Ok(v) = std::env::var("BECKON_DATABASE") {
            s.database = Some(v);
        }
        if let (Ok(v), Some(cluster)) = (std::env::var("BECKON_REDIS"), s.cluster.as_mut()) {
            cluster.redis = Some(v);
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
        s.limits.to_limits()?;
        let location = s.location()?;
        if let Some(cluster) = &s.cluster {
            cluster
                .to_config()
                .check()
                .map_err(|e| format!("[cluster]: {e}"))?;
        }
        if s.cluster.is_some() && !matches!(location, crate::Location::Postgres(_)) {
            return Err(
                "[cluster]: several nodes share one PostgreSQL database; set `database` to its \
                 URL (postgres://…)"
                    .to_owned(),
            );
        }
        if let Some(cluster) = &s.cluster {
            cluster.redis_url().map_err(|e| format!("[cluster]: {e}"))?;
        }
        Ok(s)
    }

    /// Where the data lives: `database` when set, else the SQLite database in `data`.
    pub fn location(&self) -> Result<crate::Location, String> {
        crate::Location::parse(self.database.as_deref(), &self.data)
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
            .field(
                "database",
                &self.database.as_deref().map(crate::database::redact),
            )
            .field("shards", &self.shards)
            .field("sites", &self.sites)
            .field("limits", &self.limits)
            .finish()
    }
}
