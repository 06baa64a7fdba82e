//! `beckon simulate` against the demo, started in-process on a free port with a fresh
//! database: every persona plays, bots are never shown anything, people are shown every
//! demo rule, the server's log holds the visits, and a large true effect put in is recovered
//! from what the server stored (treated against held-out visitors of the same rule).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use beckon_engine::session::Arm;
use beckon_engine::{Policy, SiteId};
use beckon_simulate::{Config, Persona, SimError, Summary};
use beckon_store::{Applied, Store, Verdict};

/// A demo served on a free port, stopped when dropped.
struct Served {
    base: String,
    /// The demo administrator's address and password.
    login: (String, String),
    store: std::sync::Arc<dyn Store>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _data: tempfile::TempDir,
}

impl Served {
    async fn start(policy: Policy) -> Served {
        let data = tempfile::tempdir().unwrap();
        let db = beckon::open_database(data.path()).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let demo = beckon::start_demo(&db, port, policy).await.unwrap();
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
        let http = reqwest::Client::new();
        for _ in 0..300 {
            match http.get(format!("{base}/readyz")).send().await {
                Ok(r) if r.status().is_success() => break,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        Served {
            base,
            login,
            store: db.store.clone(),
            stop: Some(stop),
            server: Some(server),
            _data: data,
        }
    }

    /// Stops the server, flushing what it accepted.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

/// The site's whole log: every batch, with its visitor, verdict and events.
async fn whole_log(store: &dyn Store) -> Vec<beckon_store::LoggedBatch> {
    let site = SiteId::parse(beckon::DEMO_SITE).unwrap();
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = store.log(&site, after, 1_000).await.unwrap();
        let Some((last, _)) = page.last() else {
            return all;
        };
        after = *last;
        all.extend(page.into_iter().map(|(_, b)| b));
    }
}

/// Half the visitors held out, so both arms of every rule fill; a returning visitor's second
/// session is a new visit however soon it comes (the demo's 30-minute visit gap would make it
/// the same visit).
fn policy() -> Policy {
    Policy {
        holdout_percent: 50.0,
        visit_gap: Duration::ZERO,
        ..Policy::default()
    }
}

const SEED: u64 = 20_251_202;

/// Mostly hesitating buyers, whose offer is given a true effect so large that every one shown
/// it converts (base 20% × (1 + 4) = 100%), while the held-out ones convert at 20%. The
/// conversion is decided with a number drawn in each script, so "every one" is exact, not
/// likely.
fn config(base: &str, visitors: u64) -> Config {
    let mut c = Config {
        url: base.to_owned(),
        visitors,
        concurrency: 400,
        seed: SEED,
        ..Config::default()
    };
    c.mix = [
        (Persona::Browser, 6.0),
        (Persona::HesitatingBuyer, 40.0),
        (Persona::Comparer, 8.0),
        (Persona::ProductDweller, 8.0),
        (Persona::Reader, 8.0),
        (Persona::Returning, 12.0),
        (Persona::Converter, 6.0),
        (Persona::Crawler, 6.0),
        (Persona::Headless, 6.0),
    ]
    .into();
    c.base_rates.insert(Persona::HesitatingBuyer, 0.2);
    // Readers shown the e-mail capture mostly answer it, so that leads are sent.
    c.base_rates.insert(Persona::Reader, 0.7);
    c.effects.insert("cart-exit-offer".to_owned(), 4.0);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_visitors_fill_the_log_and_their_known_effect_is_recovered() {
    let served = Served::start(policy()).await;
    let big = config(&served.base, 400);
    let again = config(&served.base, 40);
    // The replay of the same seed runs beside the main run (its orders and ids are its own).
    let (summary, replay) = tokio::join!(beckon_simulate::run(&big), beckon_simulate::run(&again));
    let (summary, replay): (Summary, Summary) = (summary.unwrap(), replay.unwrap());
    println!("{summary}");

    // The same seed plays the same scripts: the shorter run is the longer one's beginning.
    let scripts = |s: &Summary| -> Vec<(Persona, u64)> {
        s.visits.iter().map(|v| (v.persona, v.digest)).collect()
    };
    assert_eq!(scripts(&replay)[..], scripts(&summary)[..40]);
    assert!(
        summary
            .visits
            .iter()
            .all(|v| v.digest == big.script(v.index).digest())
    );

    // Every persona played, and every visit was played to its end without a refusal.
    for p in Persona::ALL {
        assert!(
            summary.personas.get(&p).is_some_and(|c| c.visitors > 0),
            "{p} never played"
        );
    }
    assert_eq!(summary.failed(), 0, "{summary}");
    assert!(summary.refusals.is_empty(), "{:?}", summary.refusals);

    // Bots are never shown anything; people were shown every demo rule.
    for p in [Persona::Crawler, Persona::Headless] {
        assert_eq!(summary.personas[&p].interventions, 0, "{p}");
    }
    for (rule, _) in beckon_simulate::DEFAULT_EFFECTS {
        assert!(
            summary.rules.get(rule).is_some_and(|r| r.received > 0),
            "nobody was shown {rule}: {summary}"
        );
    }

    // The server's log holds every visit: each visitor the server issued, with the verdict
    // their user agent calls for, and not one outcome (shown, dismissed, engaged, lead) refused.
    let log = whole_log(served.store.as_ref()).await;
    let mut logged: BTreeMap<String, (u64, bool)> = BTreeMap::new();
    for batch in &log {
        let e = logged.entry(batch.visitor.as_str().to_owned()).or_default();
        e.0 += batch.events.len() as u64;
        e.1 |= matches!(batch.verdict, Verdict::Bot { .. });
        for event in &batch.events {
            assert!(
                !matches!(event.applied, Applied::Refused(_)),
                "{}: {} was refused: {:?}",
                batch.visitor,
                event.body,
                event.applied
            );
        }
    }
    for v in &summary.visits {
        let id = v.visitor.as_ref().expect("the server issued an identity");
        let (events, bot) = logged
            .get(id)
            .unwrap_or_else(|| panic!("{} {id} is not in the log", v.persona));
        assert!(*events >= 2, "{id}");
        assert_eq!(*bot, v.persona.is_bot(), "{} {id}", v.persona);
    }
    // Every order and every lead the simulator reported is there, once.
    let ours: HashSet<&str> = summary
        .visits
        .iter()
        .filter_map(|v| v.visitor.as_deref())
        .collect();
    let count = |kind: &str| {
        log.iter()
            .filter(|b| ours.contains(b.visitor.as_str()))
            .flat_map(|b| &b.events)
            .filter(|e| e.kind == kind)
            .count() as u64
    };
    let orders = summary
        .visits
        .iter()
        .filter(|v| v.converted && v.persona.goal() == beckon_simulate::Goal::Order)
        .count() as u64;
    assert_eq!(count("convert"), orders);
    assert_eq!(
        count("lead"),
        summary.rules.values().map(|r| r.leads).sum::<u64>()
    );
    assert!(orders > 0);
    assert!(count("lead") > 0, "no reader left a lead: {summary}");

    // The effect, recovered from what the server stored alone: the cart offer's treated
    // visitors (exposures of the treated arm) all ordered, its held-out visitors (ghost
    // exposures) ordered at the base rate. With some 80 visitors in each arm, a held-out rate
    // above 45% would take a deviation of more than six standard errors from 20%.
    let site = SiteId::parse(beckon::DEMO_SITE).unwrap();
    let exposures = served.store.exposures(&site).await.unwrap();
    let exposed: HashSet<(&str, &str)> = exposures
        .iter()
        .map(|x| (x.visitor.as_str(), x.rule.as_str()))
        .collect();
    // Every script meets the situation of the rule written for its persona: each of those
    // visitors was exposed to it, shown it or held out (the server records both arms when the
    // rule fires, so this does not hang on the holdout's draw).
    for v in &summary.visits {
        if let (Some(rule), Some(id)) = (v.persona.rule(), v.visitor.as_deref()) {
            assert!(
                exposed.contains(&(id, rule)),
                "{} {id} never met {rule}",
                v.persona
            );
        }
    }
    let mut arms: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for x in &exposures {
        assert!(
            !summary
                .visits
                .iter()
                .any(|v| v.persona.is_bot() && v.visitor.as_deref() == Some(x.visitor.as_str())),
            "a bot was exposed to {}",
            x.rule
        );
        if x.rule.as_str() == "cart-exit-offer" && ours.contains(x.visitor.as_str()) {
            let arm = match x.arm {
                Arm::Treated => "treated",
                Arm::Holdout => "held out",
            };
            arms.entry(arm)
                .or_default()
                .insert(x.visitor.as_str().to_owned());
        }
    }
    let ordered: HashSet<&str> = log
        .iter()
        .filter(|b| b.events.iter().any(|e| e.kind == "convert"))
        .map(|b| b.visitor.as_str())
        .collect();
    let rate = |arm: &str| {
        let visitors = &arms[arm];
        let n = visitors
            .iter()
            .filter(|v| ordered.contains(v.as_str()))
            .count();
        (visitors.len(), n as f64 / visitors.len() as f64)
    };
    let (treated_n, treated) = rate("treated");
    let (held_n, held) = rate("held out");
    println!(
        "cart-exit-offer: treated {treated:.2} of {treated_n}, held out {held:.2} of {held_n}"
    );
    assert!(
        treated_n >= 40 && held_n >= 40,
        "{treated_n} treated, {held_n} held out"
    );
    assert!(treated >= 0.95, "treated visitors converted at {treated}");
    assert!(held <= 0.45, "held-out visitors converted at {held}");

    // The simulator's own account says the same.
    let shown = &summary.shown_by_rule["cart-exit-offer"];
    assert_eq!(shown.conversions, shown.visitors, "{shown:?}");

    // The dashboard's numbers, through the admin API: the cart offer's arms are the ones
    // counted above from the exposures, and the lift, its intervals and the sample-ratio check
    // of every rule together are what GrowthBook's gbstats computes on the same counts.
    let analytics = served.analytics().await;
    let cart = analytics["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "cart-exit-offer")
        .expect("the cart offer is analysed");
    // Both runs' visitors, this time: the analytics know no run.
    let everyone = |arm: Arm| -> (u64, u64) {
        let visitors: HashSet<&str> = exposures
            .iter()
            .filter(|x| x.rule.as_str() == "cart-exit-offer" && x.arm == arm)
            .map(|x| x.visitor.as_str())
            .collect();
        let converted = visitors.iter().filter(|v| ordered.contains(*v)).count();
        (visitors.len() as u64, converted as u64)
    };
    for (arm, name) in [(Arm::Treated, "treated"), (Arm::Holdout, "holdout")] {
        let (n, k) = everyone(arm);
        assert_eq!(cart[name]["triggered"], n, "{name}: {cart}");
        assert_eq!(cart[name]["converted"], k, "{name}: {cart}");
    }
    let overall = &analytics["overall"];
    let counts = |arm: &str| {
        let n = overall[arm]["triggered"].as_u64().unwrap();
        let k = overall[arm]["converted"].as_u64().unwrap();
        serde_json::json!({"n": n, "sum": k, "sum_squares": k})
    };
    let (holdout, treated) = (counts("holdout"), counts("treated"));
    let theirs = gbstats::run(&serde_json::json!({
        "cases": [{"metric": "proportion", "control": holdout, "treatment": treated,
                   "alpha": 0.05, "tuning": 5000}],
        "srm": [{"observed": [holdout["n"], treated["n"]], "weights": [0.5, 0.5]}],
    }));
    println!("every rule together: ours {overall:#}\ngbstats {theirs:#}");
    let case = &theirs["cases"][0];
    for (ours, theirs) in [
        (&overall["conversion"]["lift"], &case["fixed"]),
        (&overall["conversion"]["sequential"], &case["sequential"]),
    ] {
        for field in ["relative", "ci_low", "ci_high", "p_value"] {
            let (a, b) = (
                ours[field].as_f64().unwrap(),
                theirs[field].as_f64().unwrap(),
            );
            assert!((a - b).abs() <= 1e-6, "{field}: ours {a}, gbstats {b}");
        }
    }
    let (a, b) = (
        overall["srm_p_value"].as_f64().unwrap(),
        theirs["srm"][0].as_f64().unwrap(),
    );
    assert!((a - b).abs() <= 1e-6, "sample ratio: ours {a}, gbstats {b}");
    served.stop().await;
}

impl Served {
    /// The demo site's analytics of the last day, as the dashboard's API answers them.
    async fn analytics(&self) -> serde_json::Value {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let answer = client
            .post(format!("{}/api/v1/login", self.base))
            .header("origin", &self.base)
            .json(&serde_json::json!({"email": self.login.0, "password": self.login.1}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "the demo administrator signs in");
        let answer = client
            .get(format!("{}/api/v1/sites/demo/analytics?days=1", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        answer.json().await.unwrap()
    }
}

/// GrowthBook's statistics engine, gbstats 0.8.0, through the peer beside beckon-stats' tests.
mod gbstats {
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// Runs the peer on `request` and returns what it printed.
    pub fn run(request: &serde_json::Value) -> serde_json::Value {
        let python = std::env::var("BECKON_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../beckon-stats/tests/peers/gbstats_peer.py");
        let mut child = Command::new(&python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {python}: {e}"));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(request.to_string().as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "the gbstats peer failed under {python}: run ./scripts/test.sh, which installs \
             gbstats 0.8.0 and sets BECKON_PYTHON"
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

#[tokio::test]
async fn a_site_or_origin_the_server_refuses_is_said_so() {
    let served = Served::start(Policy::default()).await;
    let unknown = Config {
        site: "no-such-site".to_owned(),
        visitors: 1,
        ..config(&served.base, 1)
    };
    let e = beckon_simulate::run(&unknown).await.unwrap_err();
    assert!(
        matches!(&e, SimError::SiteRefused { status: 403, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("no-such-site"), "{e}");
    let foreign = Config {
        origin: Some("https://elsewhere.example".to_owned()),
        ..config(&served.base, 1)
    };
    let e = beckon_simulate::run(&foreign).await.unwrap_err();
    assert!(e.to_string().contains("elsewhere.example"), "{e}");
    served.stop().await;
}

/// The command's flags are checked before anything is sent, and a server that is not there
/// is named; each exits non-zero with a message.
#[test]
fn the_command_refuses_bad_flags_and_an_absent_server() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let cases: [(&[&str], &str); 5] = [
        (&["--visitors", "0"], "--visitors"),
        (&["--concurrency", "10001"], "--concurrency"),
        (&["--effect", "cart-exit-offer"], "RULE=REL"),
        (&["--effect", "cart-exit-offer=-2"], "at least -1"),
        (&["--effect", "bad rule=0.1"], "rule id"),
    ];
    for (args, needle) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_beckon"))
            .arg("simulate")
            .args(["--url", &url])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_beckon"))
        .args(["simulate", "--url", &url, "--visitors", "3"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot reach the server") && err.contains(&url),
        "{err}"
    );
}
