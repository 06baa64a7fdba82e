//! A real admin server on a socket, on an in-memory SQLite database, with people and sites.

#![allow(dead_code)]

use std::sync::Arc;

use beckon_admin::NoLiveRules;
use beckon_engine::rules::RuleFile;
use beckon_engine::{Policy, SiteId};
use beckon_store::accounts::{Accounts, NewUser, Role, User};
use beckon_store::{SecretDigest, SiteRecord, Store};
use beckon_store_sqlite::SqliteStore;

/// A password every test person has.
pub const PASSWORD: &str = "a long enough password";

/// The admin side, serving.
pub struct Admin {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The database.
    pub store: Arc<SqliteStore>,
}

/// The admin side's options over `store`, as [`Admin::start`] serves them.
pub fn options(store: Arc<SqliteStore>) -> beckon_admin::Options {
    beckon_admin::Options {
        store: store.clone(),
        accounts: store.clone(),
        insight: store.clone(),
        conversations: store.clone(),
        leads: store.clone(),
        outbox: store.clone(),
        analytics: store.clone(),
        allow_private_destinations: false,
        desk: Some(beckon_agent::Desk::new(
            store.clone(),
            Arc::new(beckon_agent::desk::NoContext),
            Arc::new(beckon_admin::clock::now),
        )),
        live: Arc::new(NoLiveRules),
        previewer: None,
        backtester: None,
        explainer: None,
        edge: None,
        client_ip: Arc::new(|_, peer| peer.map(|p| p.ip())),
        secure_cookies: false,
    }
}

impl Admin {
    /// Serves the admin router on a fresh database.
    pub async fn start() -> Admin {
        let store = Arc::new(SqliteStore::in_memory().await.unwrap());
        store.migrate().await.unwrap();
        let router = beckon_admin::router(options(store.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Admin { base, store }
    }

    /// A site with `rules` (TOML) and `name`.
    pub async fn site(&self, key: &str, name: &str, rules: &str) -> SiteId {
        let id = SiteId::parse(key).unwrap();
        self.store
            .put_site(&SiteRecord {
                id: id.clone(),
                secret: SecretDigest::of(&format!("sk_{key}_secret")),
                origins: vec![format!("https://{key}.example")],
                policy: Policy::default(),
                version: 0,
            })
            .await
            .unwrap();
        self.store.set_site_name(&id, name).await.unwrap();
        let file: RuleFile = toml::from_str(rules).unwrap();
        self.store.replace_rules(&id, &file.rules).await.unwrap();
        id
    }

    /// A person (password [`PASSWORD`]) belonging to `sites`.
    pub async fn person(&self, email: &str, role: Role, sites: &[&SiteId]) -> User {
        let user = self
            .store
            .create_user(&NewUser {
                email: email.to_owned(),
                name: format!("Name of {email}"),
                password_hash: beckon_admin::passwords::hash(PASSWORD),
                role,
                at: beckon_admin::clock::now(),
            })
            .await
            .unwrap();
        for site in sites {
            self.store.add_member(site, user.id).await.unwrap();
        }
        user
    }

    /// A browser-like client signed in as `email`, and its CSRF token.
    pub async fn signed_in(&self, email: &str) -> (reqwest::Client, String) {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let answer = client
            .post(format!("{}/api/v1/login", self.base))
            .header("origin", &self.base)
            .json(&serde_json::json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "sign-in of {email}");
        let body: serde_json::Value = answer.json().await.unwrap();
        (client, body["csrf"].as_str().unwrap().to_owned())
    }

    /// An API token of `email` (signed in) for `sites`.
    pub async fn token(&self, email: &str, sites: &[&str]) -> String {
        let (client, csrf) = self.signed_in(email).await;
        let answer = client
            .post(format!("{}/api/v1/tokens", self.base))
            .header("origin", &self.base)
            .header("x-csrf-token", csrf)
            .json(&serde_json::json!({"name": "test", "sites": sites}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201);
        let body: serde_json::Value = answer.json().await.unwrap();
        body["secret"].as_str().unwrap().to_owned()
    }
}

/// A live rule with this id and name.
pub fn rule(id: &str, name: &str) -> String {
    format!(
        r#"
        [[rules]]
        id = "{id}"
        name = "{name}"
        status = "live"
        when = {{ all = [{{ var = "behaviour.exit_intent", op = "equals", value = true }}] }}
        message = {{ type = "text", text = "Text of {name}" }}
        "#
    )
}
