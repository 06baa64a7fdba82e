//! Where the data lives, and opening it: the embedded SQLite database in a folder (the
//! default), or PostgreSQL for installations that run several nodes.
//!
//! Everything above this module sees the database only through the store interfaces in
//! [`Database`]; which backend is behind them is decided here, once, from the configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use beckon_store::Store;
use beckon_store::accounts::Accounts;
use beckon_store::analytics::Analytics;
use beckon_store::cluster::Membership;
use beckon_store::conversations::Conversations;
use beckon_store::insight::Insight;
use beckon_store::leads::Leads;
use beckon_store::outbox::Outbox;
use beckon_store_postgres::PgStore;
use beckon_store_sqlite::SqliteStore;

/// The database, seen through each of its interfaces.
#[derive(Clone)]
pub struct Database {
    /// Sites, rules, the log and visitor state.
    pub store: Arc<dyn Store>,
    /// People, login sessions, tokens and rule history.
    pub accounts: Arc<dyn Accounts>,
    /// The dashboard's reads of the log.
    pub insight: Arc<dyn Insight>,
    /// Conversations, their messages and the desk's settings.
    pub conversations: Arc<dyn Conversations>,
    /// Leads and their follow-up.
    pub leads: Arc<dyn Leads>,
    /// Destinations and deliveries.
    pub outbox: Arc<dyn Outbox>,
    /// The analytics' facts and settings.
    pub analytics: Arc<dyn Analytics>,
    /// The nodes' leases, on a database several nodes can share (PostgreSQL).
    pub membership: Option<Arc<dyn Membership>>,
}

impl Database {
    /// Every interface, served by one backend.
    fn of<T>(backend: T) -> Database
    where
        T: Store + Accounts + Insight + Conversations + Leads + Outbox + Analytics,
    {
        let backend = Arc::new(backend);
        Database {
            store: backend.clone(),
            accounts: backend.clone(),
            insight: backend.clone(),
            conversations: backend.clone(),
            leads: backend.clone(),
            outbox: backend.clone(),
            analytics: backend,
            membership: None,
        }
    }
}

/// Where the data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// The embedded SQLite database, `beckon.db` in this folder.
    Sqlite(PathBuf),
    /// A PostgreSQL database, by its URL (`postgres://user@host:port/database`).
    Postgres(String),
}

impl Location {
    /// The location a configuration names: `database`, a URL, when set; else the SQLite
    /// database in the `data` folder.
    pub fn parse(database: Option<&str>, data: &Path) -> Result<Location, String> {
        let Some(url) = database.map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(Location::Sqlite(data.to_owned()));
        };
        let scheme = url.split_once("://").map(|(s, _)| s);
        match scheme {
            Some("postgres" | "postgresql") => {
                // Checked here, so that a typo is named at start rather than at first use.
                url.parse::<sqlx::postgres::PgConnectOptions>()
                    .map_err(|e| format!("database = {:?}: {e}", redact(url)))?;
                Ok(Location::Postgres(url.to_owned()))
            }
            _ => Err(format!(
                "database = {:?}: Beckon stores its data in PostgreSQL (postgres://user@host/db) \
                 or, with `database` unset, in the embedded SQLite database in the `data` folder",
                redact(url)
            )),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(dir) => write!(f, "the embedded database in {}", dir.display()),
            Location::Postgres(url) => write!(f, "PostgreSQL at {}", redact(url)),
        }
    }
}

/// `url` without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

/// Opens (creating the SQLite file if needed) the database at `location` and migrates it.
pub async fn open(location: &Location) -> Result<Database, String> {
    match location {
        Location::Sqlite(dir) => open_database(dir).await,
        Location::Postgres(url) => {
            let store = PgStore::connect(url, None)
                .await
                .map_err(|e| format!("cannot connect to {location}: {e}"))?;
            migrate(&store).await?;
            let membership: Arc<dyn Membership> = Arc::new(store.clone());
            Ok(Database {
                membership: Some(membership),
                ..Database::of(store)
            })
        }
    }
}

/// Opens (creating if needed) the embedded database in `data` and migrates it.
pub async fn open_database(data: &Path) -> Result<Database, String> {
    std::fs::create_dir_all(data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
    let store = SqliteStore::open(&data.join("beckon.db"))
        .await
        .map_err(|e| format!("cannot open the database in {}: {e}", data.display()))?;
    migrate(&store).await?;
    Ok(Database::of(store))
}

/// Opens the embedded database in `data`: its log, sites and rules.
pub async fn open_store(data: &Path) -> Result<Arc<dyn Store>, String> {
    Ok(open_database(data).await?.store)
}

async fn migrate(store: &dyn Store) -> Result<(), String> {
    store
        .migrate()
        .await
        .map_err(|e| format!("cannot migrate the database: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_url_chooses_the_backend() {
        let data = Path::new("beckon-data");
        assert_eq!(
            Location::parse(None, data).unwrap(),
            Location::Sqlite(data.to_owned())
        );
        assert_eq!(
            Location::parse(Some("  "), data).unwrap(),
            Location::Sqlite(data.to_owned())
        );
        assert_eq!(
            Location::parse(Some("postgres://beckon@db:5432/beckon"), data).unwrap(),
            Location::Postgres("postgres://beckon@db:5432/beckon".to_owned())
        );
        assert!(matches!(
            Location::parse(Some("postgresql://db/beckon"), data).unwrap(),
            Location::Postgres(_)
        ));
        let wrong = Location::parse(Some("mysql://root:hunter2@db/beckon"), data).unwrap_err();
        assert!(wrong.contains("PostgreSQL"), "{wrong}");
        assert!(
            !wrong.contains("hunter2"),
            "the password is not shown: {wrong}"
        );
        let bad_port = Location::parse(Some("postgres://db:port/beckon"), data).unwrap_err();
        assert!(bad_port.starts_with("database = "), "{bad_port}");
    }

    #[test]
    fn passwords_are_kept_out_of_messages() {
        assert_eq!(
            redact("postgres://beckon:s3cret@db:5432/beckon"),
            "postgres://beckon:***@db:5432/beckon"
        );
        assert_eq!(redact("postgres://db/beckon"), "postgres://db/beckon");
        let shown = Location::Postgres("postgres://u:pw@h/d".to_owned()).to_string();
        assert!(!shown.contains("pw"), "{shown}");
    }
}
