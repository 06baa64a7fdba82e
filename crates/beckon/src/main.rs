//! `beckon`: flags and wiring only.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use beckon::settings::{DEFAULT_CONFIG, Settings};
use beckon_engine::Policy;
use beckon_server::Options;
use beckon_store::SiteRecord;
use clap::{Parser, Subcommand};

/// Beckon: a self-hosted proactive chat engine.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs everything on an embedded database with a sample shop and example rules.
    Demo {
        /// Port to listen on (127.0.0.1).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Folder of the demo's database (created if missing).
        #[arg(long, default_value = "beckon-demo-data")]
        data: PathBuf,
    },
    /// Runs the server from a configuration file (see `beckon default-config`).
    Serve {
        /// The configuration file; without one, defaults and BECKON_ variables apply.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Checks, imports and exports rule files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Creates or upgrades the database schema.
    Migrate {
        /// The configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Prints the configuration file with every default, annotated.
    DefaultConfig,
    /// Copies an installation's embedded database into an empty PostgreSQL database, for the
    /// move to several nodes: every site, rule version, log batch, visitor, account,
    /// conversation, lead and delivery. The copy is one transaction: it is whole or nothing.
    Copy {
        /// The folder of the embedded database.
        #[arg(long, default_value = "beckon-data")]
        from: PathBuf,
        /// The PostgreSQL database's URL, e.g. postgres://beckon@127.0.0.1:5432/beckon.
        #[arg(long)]
        to: String,
    },
    /// Replays the last days of a site's traffic with a draft rule from a file beside the rules
    /// in force: how often it would have fired, for whom, on which pages, which live rules it
    /// would have displaced and what would have held it back. Writes nothing.
    Backtest {
        /// The rule file holding the draft (TOML, or JSON by extension).
        file: PathBuf,
        /// The draft's id, when the file holds several rules.
        #[arg(long)]
        rule: Option<String>,
        /// The site key.
        #[arg(long, default_value = beckon::DEMO_SITE)]
        site: String,
        /// The last this many days of traffic.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// The database folder (for the demo's: `beckon-demo-data`); overrides the
        /// configuration's.
        #[arg(long)]
        data: Option<PathBuf>,
        /// The configuration file (for the database location).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Manages the people who sign in to the dashboard.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Drives a running server with synthetic visitors over its real WebSocket and HTTP
    /// interfaces, with a known true effect of each rule on conversion, and prints a summary.
    Simulate {
        /// The server.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The site key.
        #[arg(long, default_value = beckon::DEMO_SITE)]
        site: String,
        /// Visitors to play.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        visitors: u64,
        /// Visitors played at once.
        #[arg(long, default_value_t = 500,
              value_parser = clap::value_parser!(u32).range(1..=beckon_simulate::MAX_CONCURRENCY as i64))]
        concurrency: u32,
        /// The seed of the visitors' scripts: the same seed plays the same scripts.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The true effect of being shown a rule on conversion, RULE=REL (0.3 is +30%);
        /// repeat for several. Replaces that rule's default.
        #[arg(long = "effect", value_name = "RULE=REL", value_parser = effect_arg)]
        effects: Vec<(String, f64)>,
        /// The Origin of the visitors' pages (default: the URL's own).
        #[arg(long)]
        origin: Option<String>,
        /// Draw the progress even when stderr is not a terminal.
        #[arg(long)]
        progress: bool,
    },
}

fn effect_arg(s: &str) -> Result<(String, f64), String> {
    beckon_simulate::parse_effect(s).map_err(|e| e.to_string())
}

#[derive(Subcommand)]
enum UserCommand {
    /// Creates an account. Without --password-stdin a strong password is made and printed once.
    Add {
        /// The address they sign in with.
        #[arg(long)]
        email: String,
        /// Their name, as shown to others.
        #[arg(long, default_value = "")]
        name: String,
        /// admin (manages sites, rules, members) or agent (answers conversations).
        #[arg(long, default_value = "admin")]
        role: String,
        /// A site they join (by key); repeat for several.
        #[arg(long = "site")]
        sites: Vec<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// The configuration file (for the database location).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Checks a rule file (TOML, or JSON by extension) and lists its rules; exits 1 on errors.
    Validate {
        /// The rule file.
        file: PathBuf,
        /// The site's time zone, for dates in schedules and conditions.
        #[arg(long, default_value = "UTC")]
        timezone: String,
    },
    /// Replaces a site's rules with those of a file.
    Import {
        /// The rule file.
        file: PathBuf,
        /// The site key.
        #[arg(long)]
        site: String,
        /// The configuration file (for the database location).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Prints a site's rules as TOML (or JSON).
    Export {
        /// The site key.
        #[arg(long)]
        site: String,
        /// Print JSON instead of TOML.
        #[arg(long)]
        json: bool,
        /// The configuration file (for the database location).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "beckon=info,beckon_server=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse().command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Demo { port, data } => demo(port, data).await,
        Command::Serve { config } => serve(Settings::load(config.as_deref())?).await,
        Command::Migrate { config } => {
            let location = Settings::load(config.as_deref())?.location()?;
            beckon::open(&location).await?;
            println!("{location} is up to date");
            Ok(())
        }
        Command::Copy { from, to } => {
            let to = match beckon::Location::parse(Some(&to), &from)? {
                beckon::Location::Postgres(url) => url,
                beckon::Location::Sqlite(_) => {
                    return Err("--to: the PostgreSQL database's URL (postgres://…)".to_owned());
                }
            };
            let copied = beckon::copy::sqlite_to_postgres(&from, &to).await?;
            for (table, rows) in &copied.tables {
                println!("{table:>20}  {rows}");
            }
            println!(
                "copied {} rows from {} to {}",
                copied.rows(),
                from.display(),
                beckon::database::redact(&to)
            );
            Ok(())
        }
        Command::DefaultConfig => {
            print!("{DEFAULT_CONFIG}");
            Ok(())
        }
        Command::Rules { command } => rules(command).await,
        Command::User { command } => user(command).await,
        Command::Backtest {
            file,
            rule,
            site,
            days,
            data,
            config,
        } => {
            let location = match data {
                Some(d) => beckon::Location::Sqlite(d),
                None => Settings::load(config.as_deref())?.location()?,
            };
            if let beckon::Location::Sqlite(data) = &location
                && !data.join("beckon.db").exists()
            {
                return Err(format!("no database in {}", data.display()));
            }
            let db = beckon::open(&location).await?;
            let bar = progress_bar();
            let report = beckon::backtest::backtest_file(
                &db,
                &site,
                &file,
                rule.as_deref(),
                days,
                &mut |done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                },
            )
            .await;
            bar.finish_and_clear();
            let (name, report) = report?;
            print!("{}", beckon::backtest::describe(&name, days, &report));
            Ok(())
        }
        Command::Simulate {
            url,
            site,
            visitors,
            concurrency,
            seed,
            effects,
            origin,
            progress,
        } => {
            let mut config = beckon_simulate::Config {
                url,
                origin,
                site,
                visitors,
                concurrency: concurrency as usize,
                seed,
                progress: progress || std::io::stderr().is_terminal(),
                ..beckon_simulate::Config::default()
            };
            config.effects.extend(effects);
            simulate(config).await
        }
    }
}

async fn simulate(config: beckon_simulate::Config) -> Result<(), String> {
    let summary = beckon_simulate::run(&config)
        .await
        .map_err(|e| e.to_string())?;
    print!("{summary}");
    match summary.failed() {
        0 => Ok(()),
        n => Err(format!(
            "{n} of {} visits could not be played to their end (the refusals above say why)",
            summary.visitors()
        )),
    }
}

/// A progress bar of batches on stderr, drawn only when stderr is a terminal.
fn progress_bar() -> indicatif::ProgressBar {
    let bar =
        indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} batches ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style);
    }
    bar
}

async fn user(command: UserCommand) -> Result<(), String> {
    let UserCommand::Add {
        email,
        name,
        role,
        sites,
        password_stdin,
        config,
    } = command;
    let role = beckon_store::accounts::Role::parse(&role)
        .ok_or_else(|| format!("role {role:?} is not admin or agent"))?;
    let (password, made) = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
        (line.trim_end_matches(['\r', '\n']).to_owned(), false)
    } else {
        (beckon::random_password(), true)
    };
    let s = Settings::load(config.as_deref())?;
    let db = beckon::open(&s.location()?).await?;
    let name = if name.trim().is_empty() {
        email.split('@').next().unwrap_or_default().to_owned()
    } else {
        name
    };
    let new = beckon::NewAccount {
        email: email.clone(),
        name,
        role,
        sites,
    };
    beckon::add_user(&db, new, &password).await?;
    println!(
        "created {} ({})",
        email.trim().to_lowercase(),
        role.as_str()
    );
    if made {
        println!("password: {password}");
        println!("(shown once; sign in at /dash/ and keep it in a password manager)");
    }
    Ok(())
}

async fn demo(port: u16, data: PathBuf) -> Result<(), String> {
    let db = beckon::open_database(&data).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let demo = beckon::start_demo(&db, port, Policy::default()).await?;
    let base = format!("http://127.0.0.1:{port}");
    println!(
        "Beckon demo is running on the embedded database in {}",
        data.display()
    );
    println!();
    println!("  Sample shop       {base}/");
    println!("  Product page      {base}/product-ridgeline-trail-runner.html");
    println!("  Pricing (compare) {base}/pricing.html");
    println!("  Long article      {base}/article.html");
    println!("  Widget            {base}/widget.js");
    println!("  Health            {base}/healthz");
    println!();
    println!("  Dashboard         {base}/dash/");
    println!("    sign in as      {}", demo.admin_email);
    println!("    password        {}", demo.admin_password);
    println!("  Admin API         {base}/api/docs");
    println!();
    println!("Five example rules are live (examples/demo-rules.toml). One visitor in ten is held");
    println!("out and sees nothing, by design; a private window is a new visitor. Ctrl-C stops.");
    let stop = shutdown_signal()?;
    demo.server
        .serve_with(listener, demo.admin, stop)
        .await
        .map_err(|e| e.to_string())
}

async fn serve(settings: Settings) -> Result<(), String> {
    let db = beckon::open(&settings.location()?).await?;
    let store = db.store.clone();
    let mut knowledge = Vec::new();
    for site in &settings.sites {
        let record = SiteRecord {
            id: beckon_engine::SiteId::parse(&site.id)
                .map_err(|e| format!("site id {:?} {e}", site.id))?,
            secret: beckon_store::SecretDigest::of(&site.secret),
            origins: site.origins.clone(),
            policy: site.policy.clone(),
            version: 0,
        };
        store.put_site(&record).await.map_err(|e| e.to_string())?;
        knowledge.push(beckon::desk::SiteAgent {
            site: record.id.clone(),
            knowledge: match &site.knowledge {
                Some(dir) => beckon::desk::knowledge_from(dir)?,
                None => Default::default(),
            },
            model: site
                .model
                .as_ref()
                .map(|m| m.to_model(&site.id))
                .transpose()?,
        });
        if let Some(rules) = &site.rules {
            let n = beckon::import_rules(store.as_ref(), &site.id, rules).await?;
            tracing::info!(site = %site.id, rules = n, "imported rules");
        }
    }
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let desk =
        beckon::desk::start_desk(&db, beckon_server::clock::Clock::System, knowledge).await?;
    // The bus first: a node that cannot reach the Redis it shares takes no lease.
    let bus = match &settings.cluster {
        Some(c) => {
            let url = c.redis_url().map_err(|e| format!("[cluster]: {e}"))?;
            let key = store.server_key().await.map_err(|e| e.to_string())?;
            let namespace = beckon_server::news::namespace(&key);
            Some(
                beckon_cluster::Bus::connect(url, &namespace, &c.name)
                    .await
                    .map_err(|e| format!("[cluster]: {e}"))?,
            )
        }
        None => None,
    };
    let cluster = match (&settings.cluster, &db.membership) {
        (Some(c), Some(membership)) => Some(
            beckon_cluster::Cluster::start(membership.clone(), c.to_config())
                .await
                .map_err(|e| format!("[cluster]: {e}"))?,
        ),
        (Some(_), None) => return Err("[cluster] needs a PostgreSQL database".to_owned()),
        (None, _) => None,
    };
    let node = settings
        .cluster
        .as_ref()
        .map_or(beckon::ALONE, |c| c.name.as_str());
    let outbox_kick = beckon::start_outbox(
        &db,
        settings.smtp.as_ref(),
        settings.outbox.allow_private_addresses,
        node,
    )?;
    let mut options = Options {
        limits: settings.limits.to_limits()?,
        desk: Some(desk),
        outbox_kick: Some(outbox_kick),
        cluster: cluster.as_ref().map(|c| c.watch()),
        bus,
        ..Options::default()
    };
    if settings.shards > 0 {
        options.shards = settings.shards;
    }
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = beckon_server::start(store, options)
        .await
        .map_err(|e| e.to_string())?;
    let admin = beckon::admin_router(
        &db,
        &server,
        settings.admin.secure_cookies,
        settings.outbox.allow_private_addresses,
    );
    let stop = shutdown_signal()?;
    // The bound address, not the configured one: with port 0 the system picks the port.
    println!("beckon is serving on http://{addr}");
    if db
        .accounts
        .users()
        .await
        .map_err(|e| e.to_string())?
        .is_empty()
    {
        println!("no one can sign in to the dashboard yet: create the first account with");
        println!("  beckon user add --email you@example.com --site SITE_KEY");
    }
    let served = server
        .serve_with(listener, admin, stop)
        .await
        .map_err(|e| e.to_string());
    // Drained: the other nodes may take this one's visitors at once.
    if let Some(cluster) = cluster
        && let Err(e) = cluster.leave().await
    {
        tracing::warn!(error = %e, "could not end this node's lease; it lapses on its own");
    }
    served
}

async fn rules(command: RulesCommand) -> Result<(), String> {
    match command {
        RulesCommand::Validate { file, timezone } => {
            let policy = Policy {
                timezone,
                ..Policy::default()
            };
            policy.validate().map_err(|e| e.to_string())?;
            let text = beckon::read_rule_file(&file)?;
            let rules = beckon::compile_rules(&text, &policy, beckon::is_json(&file))?;
            println!("{}: {} rules, all valid", file.display(), rules.len());
            print!("{rules}");
            Ok(())
        }
        RulesCommand::Import { file, site, config } => {
            let s = Settings::load(config.as_deref())?;
            let store = beckon::open(&s.location()?).await?.store;
            let n = beckon::import_rules(store.as_ref(), &site, &file).await?;
            println!("imported {n} rules into site {site}");
            // The running nodes poll for changes; a cluster's are told at once.
            if let Some(c) = &s.cluster {
                let told = async {
                    let url = c.redis_url()?;
                    let key = store.server_key().await.map_err(|e| e.to_string())?;
                    let namespace = beckon_server::news::namespace(&key);
                    let bus = beckon_cluster::Bus::connect(url, &namespace, "beckon rules import")
                        .await
                        .map_err(|e| e.to_string())?;
                    bus.announce(beckon_server::news::SITES, &serde_json::Value::Null)
                        .await
                };
                if let Err(e) = told.await {
                    eprintln!(
                        "the running nodes could not be told ({e}); they find the rules within \
                         seconds"
                    );
                }
            }
            Ok(())
        }
        RulesCommand::Export { site, json, config } => {
            let s = Settings::load(config.as_deref())?;
            let store = beckon::open(&s.location()?).await?.store;
            let id =
                beckon_engine::SiteId::parse(&site).map_err(|e| format!("site {site:?} {e}"))?;
            let specs = store.rules(&id).await.map_err(|e| e.to_string())?;
            let file = beckon_engine::rules::RuleFile { rules: specs };
            let text = if json {
                serde_json::to_string_pretty(&file).map_err(|e| e.to_string())?
            } else {
                toml::to_string_pretty(&file).map_err(|e| e.to_string())?
            };
            print!("{text}");
            Ok(())
        }
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM (what `docker stop`, systemd and Kubernetes send).
/// The handlers are installed here, before the server says it is serving, so that a signal
/// sent as soon as it answers starts the orderly shutdown instead of killing the process.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle Ctrl-C: {e}"))?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
    })
}
