//! The harness of the browser tests: `beckon demo` in-process on a fresh database, Debian's
//! Chromium driven through chromedriver (WebDriver), and helpers that read the widget's shadow
//! root the way a site owner's own tests would (through the data attributes of the contract).
//!
//! Nothing a test starts outlives it, pass or fail: see [`Demo`] and [`Browser`].

#![allow(dead_code)]

use std::net::TcpListener as StdListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
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
///
/// Everything it starts ends with it, whether the test passes or panics: every WebDriver
/// session still open is closed (which quits its Chromium), then chromedriver's whole process
/// group is killed (so a Chromium the driver failed to quit dies too), then each browser's
/// profile directory is removed. [`Demo::stop`] also checks that no Chromium of this demo is
/// left running, and fails the test if one is.
pub struct Demo {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The demo administrator's address and password.
    pub login: (String, String),
    /// The demo's database, through each of its interfaces.
    pub db: beckon::Database,
    /// The demo's database.
    pub store: Arc<dyn Store>,
    /// The demo site's engine, for computing visitors' arms.
    pub engine: Engine,
    /// The server's visitor tokens: a test plays a visitor the server issued an id to.
    pub tokens: beckon_server::token::Tokens,
    driver: Driver,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _data: tempfile::TempDir,
}

/// One headless Chromium, driven through its WebDriver session. It dereferences to the
/// fantoccini [`Client`]; dropping it (at the end of the test, or while a panic unwinds) closes
/// the session and removes the browser's profile directory.
pub struct Browser {
    client: Client,
    id: String,
    sessions: Sessions,
}

impl Browser {
    /// Runs `script` in every document this browser loads from now on, before the page's own
    /// scripts (the DevTools command `Page.addScriptToEvaluateOnNewDocument`, which chromedriver
    /// passes on). For what only a page's first microseconds can change, such as taking
    /// `WebSocket` away before the widget looks for it.
    pub async fn before_each_page(&self, script: &str) {
        let url = format!(
            "{}/session/{}/goog/cdp/execute",
            self.sessions.driver_url, self.id
        );
        let answer = reqwest::Client::new()
            .post(url)
            .json(&json!({ "cmd": "Page.addScriptToEvaluateOnNewDocument", "params": { "source": script } }))
            .send()
            .await
            .unwrap();
        assert!(
            answer.status().is_success(),
            "chromedriver refused a DevTools command: {}",
            answer.text().await.unwrap_or_default()
        );
    }
}

impl std::ops::Deref for Browser {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Already closed when the demo was stopped first (the usual order in a test).
        if let Some(open) = self.sessions.take(&self.id) {
            delete_session(&self.sessions.driver_url, &open.id);
        }
    }
}

/// chromedriver, in a process group of its own, and the sessions opened on it.
struct Driver {
    child: Child,
    sessions: Sessions,
}

/// The sessions still open on a driver, shared by the demo and its browsers.
#[derive(Clone)]
struct Sessions {
    driver_url: String,
    open: Arc<Mutex<Vec<OpenSession>>>,
    /// Every profile directory given to a browser of this driver, for the final check.
    profiles: Arc<Mutex<Vec<PathBuf>>>,
}

struct OpenSession {
    id: String,
    client: Client,
    /// Removed when dropped, which is always after the session (and its Chromium) has ended.
    _profile: tempfile::TempDir,
}

impl Sessions {
    fn take(&self, id: &str) -> Option<OpenSession> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let at = open.iter().position(|s| s.id == id)?;
        Some(open.remove(at))
    }

    fn take_all(&self) -> Vec<OpenSession> {
        std::mem::take(&mut *self.open.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Driver {
    fn start() -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that killing the group also ends the Chromium
            // processes it started (they stay in it), not only the driver.
            .process_group(0)
            .spawn()
            .expect("chromedriver is installed (scripts/test.sh installs chromium-driver)");
        Driver {
            child,
            sessions: Sessions {
                driver_url: format!("http://127.0.0.1:{port}"),
                open: Arc::default(),
                profiles: Arc::default(),
            },
        }
    }

    /// Closes what is still open, quitting each browser, then kills the driver's process group.
    /// Safe to call twice.
    fn shutdown(&mut self) {
        for open in self.sessions.take_all() {
            delete_session(&self.sessions.driver_url, &open.id);
            drop(open.client);
        }
        if let Ok(None) = self.child.try_wait() {
            // The driver's pid is its group's id; signalled before it is reaped, so the id
            // cannot have been reused. `kill` rather than libc: no unsafe, no new dependency.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Ends a WebDriver session synchronously (`DELETE /session/ID`; chromedriver answers once the
/// browser has quit), so that it also works from a `Drop` while a panic unwinds, when the
/// test's runtime can no longer be relied on: the request runs on a thread of its own with a
/// runtime of its own.
fn delete_session(driver_url: &str, id: &str) {
    let url = format!("{driver_url}/session/{id}");
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            reqwest::Client::new()
                .delete(&url)
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .ok()
        })
    })
    .join();
}

/// The processes whose command line names one of `profiles` as its `--user-data-dir`: the
/// Chromium processes of those browsers, found wherever they were reparented to.
pub fn chromium_processes(profiles: &[PathBuf]) -> Vec<u32> {
    let flags: Vec<Vec<u8>> = profiles
        .iter()
        .map(|p| format!("--user-data-dir={}", p.display()).into_bytes())
        .collect();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            cmdline
                .split(|b| *b == 0)
                .any(|arg| flags.iter().any(|f| arg == f.as_slice()))
        })
        .collect()
}

/// Waits up to `limit` for the browsers of `profiles` to be gone; returns those still there.
pub async fn wait_no_chromium(profiles: &[PathBuf], limit: Duration) -> Vec<u32> {
    let started = std::time::Instant::now();
    loop {
        let left = chromium_processes(profiles);
        if left.is_empty() || started.elapsed() > limit {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A model for the demo's chat, and its daily budget.
pub type Model = (
    beckon_agent::model::ModelConfig,
    beckon_agent::budget::Budget,
);

/// `beckon demo` serving on a port, without a browser (for tests that speak HTTP).
pub struct Served {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The demo administrator's address and password.
    pub login: (String, String),
    /// The demo's database, through each of its interfaces.
    pub db: beckon::Database,
    /// The demo's database.
    pub store: Arc<dyn Store>,
    /// The server's visitor tokens.
    pub tokens: beckon_server::token::Tokens,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _data: tempfile::TempDir,
}

impl Served {
    /// Starts `beckon demo` with the default policy.
    pub async fn demo() -> Served {
        Served::start_with(Policy::default()).await
    }

    /// Starts `beckon demo` (the same code path as the command) with `policy`.
    pub async fn start_with(policy: Policy) -> Served {
        Served::start_full(policy, None).await
    }

    /// The same, with the chat answered by a model within a budget.
    pub async fn start_full(policy: Policy, model: Option<Model>) -> Served {
        let data = tempfile::tempdir().unwrap();
        let db = beckon::open_database(data.path()).await.unwrap();
        let store = db.store.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let demo = beckon::start_demo_with(&db, port, policy, model)
            .await
            .unwrap();
        let tokens = demo.server.state.tokens.clone();
        let login = (demo.admin_email.clone(), demo.admin_password.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            demo.server
                .serve_with(listener, demo.admin, async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(&format!("{base}/readyz")).await;
        Served {
            base,
            login,
            db,
            store,
            tokens,
            stop: Some(stop),
            server: Some(server),
            _data: data,
        }
    }

    /// An HTTP client signed in to the dashboard as the demo's administrator, and the
    /// session's CSRF token.
    pub async fn signed_in(&self) -> (reqwest::Client, String) {
        signed_in(&self.base, &self.login).await
    }
    /// Stops the server, flushing what it accepted.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

/// An HTTP client signed in to the dashboard at `base` with `login`, and the session's CSRF
/// token.
async fn signed_in(base: &str, login: &(String, String)) -> (reqwest::Client, String) {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let login: Value = client
        .post(format!("{base}/api/v1/login"))
        .header("origin", base)
        .json(&json!({"email": login.0, "password": login.1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let csrf = login["csrf"].as_str().expect("signed in").to_owned();
    (client, csrf)
}

impl Demo {
    /// Starts `beckon demo` (the same code path as the command) and a chromedriver.
    pub async fn start() -> Demo {
        Demo::start_with(Policy::default()).await
    }

    /// The same, with the demo site's policy changed.
    pub async fn start_with(policy: Policy) -> Demo {
        Demo::start_full(policy, None).await
    }

    /// The same, with the chat answered by a model within a budget.
    pub async fn start_full(policy: Policy, model: Option<Model>) -> Demo {
        let served = Served::start_full(policy.clone(), model).await;
        let driver = Driver::start();
        wait_ready(&format!("{}/status", driver.sessions.driver_url)).await;

        let site = beckon::demo_site(vec![], policy);
        let rules = RuleSet::from_toml(beckon::DEMO_RULES, beckon_engine::Tz::UTC).unwrap();
        let engine = Engine::new(site.id, site.policy, rules).unwrap();
        Demo {
            base: served.base,
            login: served.login,
            db: served.db,
            store: served.store,
            engine,
            tokens: served.tokens,
            driver,
            stop: served.stop,
            server: served.server,
            _data: served._data,
        }
    }

    /// A new browser, with a profile directory of its own: a person's desktop Chrome, or the
    /// given user agent.
    pub async fn browser(&self, user_agent: &str) -> Browser {
        self.browser_with(user_agent, false).await
    }

    /// A browser sending `user_agent`; `automated`, it says so as chromedriver's browsers do
    /// (`navigator.webdriver` set).
    pub async fn browser_with(&self, user_agent: &str, automated: bool) -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("beckon-chromium-")
            .tempdir()
            .unwrap();
        let mut args = vec![
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
            format!("--user-data-dir={}", profile.path().display()),
            format!("--user-agent={user_agent}"),
        ];
        if !automated {
            // A person's browser does not expose navigator.webdriver.
            args.push("--disable-blink-features=AutomationControlled".to_owned());
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({ "binary": "/usr/bin/chromium", "args": args, "excludeSwitches": ["enable-automation"] }),
        );
        let sessions = self.driver.sessions.clone();
        sessions
            .profiles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(profile.path().to_owned());
        // chromedriver speaks plain HTTP on loopback; no TLS stack is needed.
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&sessions.driver_url)
            .await
            .expect("chromedriver session");
        let id = client.session_id().await.unwrap().expect("a session id");
        sessions
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(OpenSession {
                id: id.clone(),
                client: client.clone(),
                _profile: profile,
            });
        Browser {
            client,
            id,
            sessions,
        }
    }

    /// An HTTP client signed in to the dashboard as the demo's administrator, and the
    /// session's CSRF token.
    pub async fn signed_in(&self) -> (reqwest::Client, String) {
        signed_in(&self.base, &self.login).await
    }

    /// The profile directories of the browsers opened so far.
    pub fn profiles(&self) -> Vec<PathBuf> {
        self.driver
            .sessions
            .profiles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// chromedriver's process id (which is also its process group's).
    pub fn driver_pid(&self) -> u32 {
        self.driver.child.id()
    }
    /// A visitor id that lands in `arm`.
    pub fn visitor_in(&self, arm: Arm, salt: &str) -> String {
        (0..10_000)
            .map(|i| format!("v_{salt}{i}"))
            .find(|v| self.engine.arm(&VisitorId::parse(v).unwrap()) == arm)
            .unwrap()
    }

    /// Opens `path` as the visitor `visitor` (set in first-party storage, with the token the
    /// server issues them, before the widget loads), with a fresh session.
    pub async fn open_as(&self, c: &Client, visitor: &str, path: &str) {
        let token = self.tokens.issue(
            &beckon_engine::SiteId::parse(beckon::DEMO_SITE).unwrap(),
            &VisitorId::parse(visitor).unwrap(),
        );
        self.open_with(c, visitor, Some(&token), path).await;
    }

    /// Opens `path` with `visitor` and `token` (none: no token, as when a script learned the
    /// id alone) in first-party storage, with a fresh session; the person then moves the
    /// pointer over the page.
    pub async fn open_with(&self, c: &Client, visitor: &str, token: Option<&str>, path: &str) {
        self.load_as(c, visitor, token, path).await;
        move_pointer(c).await;
    }

    /// Opens `path` as `visitor`, like [`Demo::open_as`], but nobody touches the page: no
    /// pointer, touch, key or scroll.
    pub async fn open_untouched(&self, c: &Client, visitor: &str, path: &str) {
        let token = self.tokens.issue(
            &beckon_engine::SiteId::parse(beckon::DEMO_SITE).unwrap(),
            &VisitorId::parse(visitor).unwrap(),
        );
        self.load_as(c, visitor, Some(&token), path).await;
    }

    async fn load_as(&self, c: &Client, visitor: &str, token: Option<&str>, path: &str) {
        c.goto(&format!("{}/healthz", self.base)).await.unwrap();
        c.execute(
            "localStorage.clear(); sessionStorage.clear(); localStorage.setItem('beckon:vid', arguments[0]); if (arguments[1]) localStorage.setItem('beckon:vtk', arguments[1]);",
            vec![json!(visitor), json!(token)],
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

    /// Closes the browsers, stops the server (flushing) and the driver, and fails if a Chromium
    /// of this demo is still running or a profile directory is left behind.
    pub async fn stop(mut self) {
        for open in self.driver.sessions.take_all() {
            let OpenSession {
                client, _profile, ..
            } = open;
            let _ = client.close().await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        let profiles = self.profiles();
        self.driver.shutdown();
        let left = wait_no_chromium(&profiles, Duration::from_secs(10)).await;
        assert!(
            left.is_empty(),
            "Chromium processes outlived the test: {left:?}"
        );
        let kept: Vec<_> = profiles.iter().filter(|p| p.exists()).collect();
        assert!(kept.is_empty(), "profile directories left behind: {kept:?}");
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

/// Run before each page (see [`Browser::before_each_page`]): no `WebSocket`, so the widget
/// talks HTTP at once, and every `fetch` and `sendBeacon` is recorded in `window.__posts` as
/// `{url, body}` (the body as text).
pub const HTTP_ONLY_AND_RECORDED: &str = r#"
(function () { // its own scope: another script run before each page may use the same names
  window.__posts = [];
  delete window.WebSocket;
  var fetch0 = window.fetch;
  window.fetch = function (url, init) {
    window.__posts.push({ url: String(url), body: init && typeof init.body == 'string' ? init.body : null, via: 'fetch' });
    return fetch0.apply(this, arguments);
  };
  var beacon0 = navigator.sendBeacon.bind(navigator);
  navigator.sendBeacon = function (url, data) {
    window.__posts.push({ url: String(url), body: null, via: 'beacon' });
    return beacon0(url, data);
  };
})();
"#;

/// Fires an exit intent the way a desktop pointer leaving through the top does.
pub const EXIT_INTENT: &str = "document.dispatchEvent(new MouseEvent('mouseout', {clientX: 400, clientY: -2, relatedTarget: null, bubbles: true}));";

/// The person moves the real pointer across the page (input events, as a mouse makes them):
/// the sign of someone there that the widget reports as `activity`. Until one comes, nothing
/// is shown in a visit.
pub async fn move_pointer(c: &Client) {
    use fantoccini::actions::{InputSource, MouseActions, PointerAction};
    let mut mouse = MouseActions::new("mouse".to_owned());
    for (x, y) in [(120.0, 140.0), (260.0, 220.0), (320.0, 180.0)] {
        mouse = mouse.then(PointerAction::MoveTo {
            duration: Some(Duration::from_millis(60)),
            x,
            y,
        });
    }
    c.perform_actions(mouse).await.unwrap();
}

/// Saves a screenshot of the page as `target/screenshots/NAME.png` (for the README).
pub async fn screenshot(c: &fantoccini::Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{name}.png")),
        c.screenshot().await.unwrap(),
    )
    .unwrap();
}

/// Signs the demo's administrator in to the dashboard.
pub async fn sign_in(demo: &Demo, c: &fantoccini::Client) {
    use fantoccini::Locator;
    c.goto(&format!("{}/dash/login", demo.base)).await.unwrap();
    c.find(Locator::Id("email"))
        .await
        .unwrap()
        .send_keys(&demo.login.0)
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(&demo.login.1)
        .await
        .unwrap();
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually(
        c,
        "location.pathname.indexOf('/dash/login') < 0",
        Duration::from_secs(15),
    )
    .await;
}
