//! The harness of the browser tests: `beckon demo` in-process on a fresh database, Debian's
//! Chromium driven through chromedriver (WebDriver), and helpers that read the widget's shadow
//! root the way a site owner's own tests would (through the data attributes of the contract).

#![allow(dead_code)]

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use beckon_engine::session::Arm;
use beckon_engine::{Engine, Policy, RuleSet, VisitorId};
use beckon_store::Store;
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

/// What a desktop Chrome on Linux says it is. Tests that play a person use it, so that the
/// headless browser does not announce itself as HeadlessChrome.
pub const HUMAN_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
/// A crawler.
pub const BOT_UA: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

/// A running demo and a chromedriver.
pub struct Demo {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The demo's database.
    pub store: Arc<dyn Store>,
    /// The demo site's engine, for computing visitors' arms.
    pub engine: Engine,
    driver: Child,
    driver_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _data: tempfile::TempDir,
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Demo {
    /// Starts `beckon demo` (the same code path as the command) and a chromedriver.
    pub async fn start() -> Demo {
        Demo::start_with(Policy::default()).await
    }

    /// The same, with the demo site's policy changed.
    pub async fn start_with(policy: Policy) -> Demo {
        let data = tempfile::tempdir().unwrap();
        let store = beckon::open_store(data.path()).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = beckon::start_demo(store.clone(), port, policy.clone())
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            server
                .serve(listener, async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(&format!("{base}/readyz")).await;

        let driver_port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (scripts/test.sh installs chromium-driver)");
        let driver_url = format!("http://127.0.0.1:{driver_port}");
        wait_ready(&format!("{driver_url}/status")).await;

        let site = beckon::demo_site(vec![], policy);
        let rules = RuleSet::from_toml(beckon::DEMO_RULES, beckon_engine::Tz::UTC).unwrap();
        let engine = Engine::new(site.id, site.policy, rules).unwrap();
        Demo {
            base,
            store,
            engine,
            driver,
            driver_url,
            stop: Some(stop),
            server: Some(server),
            _data: data,
        }
    }

    /// A new browser: a person's desktop Chrome, or the given user agent.
    pub async fn browser(&self, user_agent: &str) -> Client {
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--window-size=1280,900".to_owned(),
            // A person's browser does not expose navigator.webdriver.
            "--disable-blink-features=AutomationControlled".to_owned(),
            format!("--user-agent={user_agent}"),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({ "binary": "/usr/bin/chromium", "args": args, "excludeSwitches": ["enable-automation"] }),
        );
        // chromedriver speaks plain HTTP on loopback; no TLS stack is needed.
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.driver_url)
            .await
            .expect("chromedriver session")
    }

    /// A visitor id that lands in `arm`.
    pub fn visitor_in(&self, arm: Arm, salt: &str) -> String {
        (0..10_000)
            .map(|i| format!("v_{salt}{i}"))
            .find(|v| self.engine.arm(&VisitorId::parse(v).unwrap()) == arm)
            .unwrap()
    }

    /// Opens `path` as the visitor `visitor` (set in first-party storage before the widget
    /// loads), with a fresh session.
    pub async fn open_as(&self, c: &Client, visitor: &str, path: &str) {
        c.goto(&format!("{}/healthz", self.base)).await.unwrap();
        c.execute(
            "localStorage.clear(); sessionStorage.clear(); localStorage.setItem('beckon:vid', arguments[0]);",
            vec![json!(visitor)],
        )
        .await
        .unwrap();
        c.goto(&format!("{}{path}", self.base)).await.unwrap();
        self.wait_widget(c).await;
    }

    /// Waits until the widget has finished its setup: its host element is the last thing it
    /// creates, after its listeners and its connection.
    pub async fn wait_widget(&self, c: &Client) {
        eventually(
            c,
            "window.beckon && window.beckon.version && !!window.beckon.visitor() && !!document.getElementById('beckon-root')",
            Duration::from_secs(10),
        )
        .await;
    }

    /// Stops the server (flushing) and the driver.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        let _ = self.driver.kill();
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

async fn wait_ready(url: &str) {
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never became ready");
}

/// The intervention on screen, if any: `{rule, type, text}` read through the contract.
pub const READ_INTERVENTION: &str = r#"
  var root = document.getElementById('beckon-root');
  var el = root && root.shadowRoot && root.shadowRoot.querySelector('[data-beckon-rule]');
  if (!el) return null;
  return { rule: el.getAttribute('data-beckon-rule'), text: el.textContent };
"#;

/// Polls `script` (a JS expression) until it is truthy or `limit` passes; returns its value.
pub async fn eventually(c: &Client, script: &str, limit: Duration) -> Value {
    let started = std::time::Instant::now();
    loop {
        let v = c
            .execute(&format!("return ({script});"), vec![])
            .await
            .unwrap();
        if !(v.is_null() || v == json!(false)) {
            return v;
        }
        if started.elapsed() > limit {
            panic!("{script} did not become true within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The intervention that appears within `limit`, or a panic naming the wait.
pub async fn intervention_within(c: &Client, limit: Duration) -> Value {
    eventually(c, &format!("(function(){{{READ_INTERVENTION}}})()"), limit).await
}

/// Asserts that no intervention is on screen for the whole of `period`.
pub async fn no_intervention_for(c: &Client, period: Duration) {
    let started = std::time::Instant::now();
    while started.elapsed() < period {
        let v = c
            .execute(
                &format!("return (function(){{{READ_INTERVENTION}}})();"),
                vec![],
            )
            .await
            .unwrap();
        assert!(v.is_null(), "an intervention appeared: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Fires an exit intent the way a desktop pointer leaving through the top does.
pub const EXIT_INTENT: &str = "document.dispatchEvent(new MouseEvent('mouseout', {clientX: 400, clientY: -2, relatedTarget: null, bubbles: true}));";
