//! The `beckon` command's wiring: settings, the demo, and the rule commands. `main.rs` only
//! parses flags and calls in here, so tests can start the same demo in-process.

pub mod backtest;
pub mod copy;
pub mod database;
pub mod desk;
pub mod settings;

pub use database::{Database, Location, open, open_database, open_store};

use std::path::Path;
use std::sync::Arc;

use beckon_engine::rules::RuleFile;
use beckon_engine::{Engine, Policy, RuleSet, SiteId};
use beckon_server::limits::Limits;
use beckon_server::{Options, Server};
use beckon_store::accounts::{NewUser, Role};
use beckon_store::{SiteRecord, Store, StoreError};

/// The name of a node that runs alone (its outbox worker's, across restarts).
pub const ALONE: &str = "node-1";

/// The demo's rules: the five moments of the seeds.
pub const DEMO_RULES: &str = include_str!("../../../examples/demo-rules.toml");
/// The demo site's key.
pub const DEMO_SITE: &str = "demo";
/// The demo site's secret key, for trying the merchant's endpoints by hand. Only the demo's
/// secret is known in advance; a real site's is made at random and shown once.
pub const DEMO_SECRET: &str = "sk_demo_secret";

/// Starts the outbox's worker on `db`, with e-mail through `smtp` when configured; returns
/// what wakes it (for the server's writer, after a commit that captured a lead).
pub fn start_outbox(
    db: &Database,
    smtp: Option<&beckon_outbox::email::SmtpSettings>,
    allow_private: bool,
    node: &str,
) -> Result<Arc<tokio::sync::Notify>, String> {
    let mailer = smtp
        .map(beckon_outbox::email::Mailer::new)
        .transpose()
        .map_err(|e| format!("[smtp]: {e}"))?;
    let worker = beckon_outbox::Worker::new(
        db.outbox.clone(),
        db.leads.clone(),
        mailer,
        Arc::new(|| beckon_server::clock::Clock::System.now()),
        beckon_outbox::WorkerConfig {
            // The node's name, the same across its restarts: a restarted node takes its own
            // leases back at once, and each node of a cluster claims under its own.
            name: node.to_owned(),
            allow_private,
            ..beckon_outbox::WorkerConfig::default()
        },
    );
    let kick = worker.kicker();
    tokio::spawn(worker.run());
    Ok(kick)
}

/// Tells the running server's sites about a change the admin side made, so that it takes
/// effect at once rather than at the next poll of the store.
struct LiveSites {
    sites: beckon_server::sites::Sites,
    store: Arc<dyn Store>,
    /// The other nodes are told too.
    bus: Option<beckon_cluster::Bus>,
}

#[async_trait::async_trait]
impl beckon_admin::LiveRules for LiveSites {
    async fn changed(&self) {
        if let Err(e) = self.sites.refresh(self.store.as_ref()).await {
            // The watcher polls again within seconds.
            tracing::warn!(error = %e, "could not reload the sites after a change");
        }
        beckon_server::news::sites_changed(self.bus.as_ref());
    }
}

/// The rule editor's previews, drawn by the running server.
struct ServerPreviews(beckon_server::AppState);

impl beckon_admin::Previewer for ServerPreviews {
    fn preview(
        &self,
        site: &SiteId,
        policy: &Policy,
        rule: beckon_engine::rules::RuleSpec,
        sample: serde_json::Value,
    ) -> Result<String, String> {
        let sample: beckon_server::preview::Sample =
            serde_json::from_value(sample).map_err(|e| format!("sample: {e}"))?;
        let intervention = beckon_server::preview::render(site, policy, rule, &sample)?;
        Ok(self.0.previews.keep(intervention))
    }
}

/// Visitors' timelines, replayed from the log by the server's own replay.
struct ServerReplay {
    store: Arc<dyn Store>,
    insight: Arc<dyn beckon_store::insight::Insight>,
}

#[async_trait::async_trait]
impl beckon_admin::manage::visitors::Explainer for ServerReplay {
    async fn timeline(
        &self,
        site: &SiteId,
        visitor: &beckon_engine::VisitorId,
    ) -> Result<Vec<beckon_admin::manage::visitors::TimelineStep>, String> {
        use beckon_admin::manage::visitors::{DecisionLine, EventLine, RuleLine, TimelineStep};
        let steps = beckon_server::replay::explain_visitor(
            self.store.as_ref(),
            self.insight.as_ref(),
            site,
            visitor,
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(steps
            .into_iter()
            .map(|step| {
                let b = step.batch;
                TimelineStep {
                    at_ms: b.at.as_millis(),
                    source: b.source.as_str().to_owned(),
                    session: b.session.map(|s| s.as_str().to_owned()),
                    bot: match b.verdict {
                        beckon_store::Verdict::Bot { reason } => Some(reason),
                        beckon_store::Verdict::Human => None,
                    },
                    events: b
                        .events
                        .into_iter()
                        .map(|e| EventLine {
                            kind: e.kind,
                            detail: e.body.chars().take(240).collect(),
                            applied: e.applied.to_stored(),
                        })
                        .collect(),
                    decisions: step
                        .traces
                        .into_iter()
                        .map(|t| DecisionLine {
                            at_ms: t.at.as_millis(),
                            event: t.event.to_owned(),
                            held: t.held.as_ref().map(ToString::to_string),
                            rules: t
                                .rules
                                .iter()
                                .map(|r| RuleLine {
                                    rule: r.rule.as_str().to_owned(),
                                    kind: serde_json::to_value(&r.verdict)
                                        .ok()
                                        .and_then(|v| v["verdict"].as_str().map(str::to_owned))
                                        .unwrap_or_default(),
                                    text: r.verdict.to_string(),
                                })
                                .collect(),
                        })
                        .collect(),
                    fired: step
                        .fired
                        .into_iter()
                        .map(|f| {
                            let arm = match f.arm {
                                beckon_server::replay::ArmName::Treated => "treated",
                                beckon_server::replay::ArmName::Holdout => "holdout",
                            };
                            (f.rule.as_str().to_owned(), arm.to_owned())
                        })
                        .collect(),
                }
            })
            .collect())
    }
}

/// The server's count of the origins each site's events came from.
struct ServerOrigins(beckon_server::AppState);

impl beckon_admin::manage::install::EdgeReport for ServerOrigins {
    fn origins(&self, site: &SiteId) -> Vec<beckon_admin::manage::install::OriginLine> {
        self.0
            .origins
            .of(site)
            .into_iter()
            .map(|o| beckon_admin::manage::install::OriginLine {
                origin: o.origin,
                accepted: o.accepted,
                refused: o.refused,
                last_ms: o.last.as_millis(),
                reason: o.reason,
            })
            .collect()
    }
}

/// The server's backtests, for the rule editor and the API.
struct ServerBacktests {
    store: Arc<dyn Store>,
    analytics: Arc<dyn beckon_store::analytics::Analytics>,
}

#[async_trait::async_trait]
impl beckon_admin::manage::backtest::Backtester for ServerBacktests {
    async fn backtest(
        &self,
        site: &SiteId,
        draft: beckon_engine::rules::RuleSpec,
        period: beckon_store::analytics::Period,
    ) -> Result<beckon_admin::manage::backtest::BacktestView, String> {
        let r = beckon_server::backtest::backtest(
            self.store.as_ref(),
            self.analytics.as_ref(),
            site,
            &draft,
            period,
            &mut |_, _| {},
        )
        .await
        .map_err(|e| e.to_string())?;
        let counts = |v: Vec<(String, u64)>| {
            v.into_iter()
                .map(|(name, n)| beckon_admin::manage::backtest::Count { name, n })
                .collect()
        };
        Ok(beckon_admin::manage::backtest::BacktestView {
            days: 0,
            batches: r.batches,
            visitors: r.visitors,
            fired: r.fired,
            shown: r.shown,
            ghosts: r.ghosts,
            visitors_fired: r.visitors_fired,
            pages: counts(r.pages),
            displaced: counts(r.displaced),
            blocked_by: counts(r.blocked_by),
            baseline_fired: r.baseline_fired,
            with_draft_fired: r.with_draft_fired,
        })
    }
}

/// The admin API and the dashboard for a started server.
pub fn admin_router(
    db: &Database,
    server: &Server,
    secure_cookies: bool,
    allow_private_destinations: bool,
) -> axum::Router {
    beckon_admin::router(beckon_admin::Options {
        store: db.store.clone(),
        accounts: db.accounts.clone(),
        insight: db.insight.clone(),
        conversations: db.conversations.clone(),
        leads: db.leads.clone(),
        outbox: db.outbox.clone(),
        analytics: db.analytics.clone(),
        allow_private_destinations,
        desk: server.state.desk.clone(),
        live: Arc::new(LiveSites {
            sites: server.state.sites.clone(),
            store: db.store.clone(),
            bus: server.state.bus.clone(),
        }),
        previewer: Some(Arc::new(ServerPreviews(server.state.clone()))),
        backtester: Some(Arc::new(ServerBacktests {
            store: db.store.clone(),
            analytics: db.analytics.clone(),
        })),
        edge: Some(Arc::new(ServerOrigins(server.state.clone()))),
        explainer: Some(Arc::new(ServerReplay {
            store: db.store.clone(),
            insight: db.insight.clone(),
        })),
        client_ip: Arc::new(beckon_server::throttle::client_ip_rule(
            &server.state.limits,
        )),
        secure_cookies,
    })
    // The site's people's desk routes are served where the site's desk runs.
    .layer(axum::middleware::from_fn_with_state(
        server.state.clone(),
        beckon_server::to_desk::forward,
    ))
}

/// A new person's sign-in.
pub struct NewAccount {
    /// Their address.
    pub email: String,
    /// Their name.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// Sites they join (by key).
    pub sites: Vec<String>,
}

/// Creates an account with `password` (checked for length), and makes it a member of its sites.
pub async fn add_user(db: &Database, new: NewAccount, password: &str) -> Result<(), String> {
    beckon_admin::passwords::check(password)?;
    let email = beckon_admin::auth::normalise_email(&new.email);
    if !email.contains('@') || email.len() > 254 {
        return Err(format!("{:?} is not an e-mail address", new.email));
    }
    let mut sites = Vec::with_capacity(new.sites.len());
    let known = db.store.sites().await.map_err(|e| e.to_string())?;
    for key in &new.sites {
        let id = SiteId::parse(key).map_err(|e| format!("site {key:?} {e}"))?;
        if !known.iter().any(|s| s.id == id) {
            return Err(format!("no site {key:?} in this database"));
        }
        sites.push(id);
    }
    let hash = beckon_admin::passwords::hash(password);
    let user = db
        .accounts
        .create_user(&NewUser {
            email,
            name: new.name,
            password_hash: hash,
            role: new.role,
            at: beckon_admin::clock::now(),
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => m,
            other => other.to_string(),
        })?;
    for site in sites {
        db.accounts
            .add_member(&site, user.id)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A password for an account made on someone's behalf: 20 random letters and digits.
pub fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The demo's administrator.
pub const DEMO_ADMIN: &str = "admin@beckon.demo";

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

/// A started demo: the server, its dashboard, and how to sign in to it.
pub struct Demo {
    /// The server's parts.
    pub server: Server,
    /// The admin API and the dashboard, to serve beside it.
    pub admin: axum::Router,
    /// The administrator's address.
    pub admin_email: String,
    /// Their password, new at every start.
    pub admin_password: String,
}

/// Makes sure the demo's administrator exists and belongs to the demo site, with a new
/// password; returns it.
async fn demo_admin(db: &Database) -> Result<String, String> {
    let password = random_password();
    match db
        .accounts
        .user_by_email(DEMO_ADMIN)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(user) => {
            db.accounts
                .set_password(user.id, &beckon_admin::passwords::hash(&password))
                .await
                .map_err(|e| e.to_string())?;
            let site = SiteId::parse(DEMO_SITE).expect("valid site key");
            db.accounts
                .add_member(&site, user.id)
                .await
                .map_err(|e| e.to_string())?;
        }
        None => {
            let new = NewAccount {
                email: DEMO_ADMIN.to_owned(),
                name: "Demo admin".to_owned(),
                role: Role::Admin,
                sites: vec![DEMO_SITE.to_owned()],
            };
            add_user(db, new, &password).await?;
        }
    }
    Ok(password)
}

/// Sets up the demo site with its rules and its administrator, and starts the server parts.
pub async fn start_demo(db: &Database, port: u16, policy: Policy) -> Result<Demo, String> {
    start_demo_with(db, port, policy, None).await
}

/// The demo, with its chat answered by a model within a daily budget (none: offline).
pub async fn start_demo_with(
    db: &Database,
    port: u16,
    policy: Policy,
    model: Option<(
        beckon_agent::model::ModelConfig,
        beckon_agent::budget::Budget,
    )>,
) -> Result<Demo, String> {
    let store = db.store.clone();
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
    let desk = desk::start_desk(
        db,
        beckon_server::clock::Clock::System,
        vec![desk::SiteAgent {
            site: site.id.clone(),
            knowledge: desk::demo_knowledge(),
            model,
        }],
    )
    .await?;
    // The demo runs on one machine: its destinations may be too (a receiver beside it).
    let outbox_kick = start_outbox(db, None, true, ALONE)?;
    let server = beckon_server::start(
        store,
        Options {
            desk: Some(desk),
            outbox_kick: Some(outbox_kick),
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
    .map_err(|e| e.to_string())?;
    db.accounts
        .set_site_name(&site.id, "Northwind Outfitters (demo)")
        .await
        .map_err(|e| e.to_string())?;
    let admin_password = demo_admin(db).await?;
    let admin = admin_router(db, &server, false, true);
    Ok(Demo {
        server,
        admin,
        admin_email: DEMO_ADMIN.to_owned(),
        admin_password,
    })
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
