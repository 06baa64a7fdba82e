//! Analytics through the API and the dashboard: a site's exposures and outcomes become each
//! rule's figures in both arms, its lift with its intervals and the sample-ratio check, as
//! JSON, CSV and a page with charts; settings are checked field by field.

mod support;

use beckon_engine::session::Arm;
use beckon_engine::{EventId, RuleId, SessionId, SiteId, Timestamp, VisitorId};
use beckon_store::accounts::Role;
use beckon_store::{
    Applied, BatchContext, Exposure, LoggedBatch, LoggedEvent, Source, Store, Verdict, WriteBatch,
};
use serde_json::{Value, json};
use support::{Admin, rule};

fn event(key: &str, kind: &str, body: Value) -> LoggedEvent {
    LoggedEvent {
        key: key.to_owned(),
        id: EventId::parse(key).unwrap(),
        kind: kind.to_owned(),
        body: body.to_string(),
        applied: Applied::Decided,
    }
}

/// `n` visitors of `arm` triggered by `offer` an hour ago, `k` of whom ordered for 50.
fn arm(site: &SiteId, arm: Arm, n: u32, k: u32, first: u32, bot: bool) -> WriteBatch {
    let now = beckon_admin::clock::now().as_millis();
    let mut w = WriteBatch::default();
    for i in 0..n {
        let v = first + i;
        let visitor = VisitorId::parse(&format!("v_an{v:0>18}")).unwrap();
        let session = SessionId::parse(&format!("s_an{v:0>18}")).unwrap();
        let at = Timestamp::from_millis(now - 3_600_000 + i64::from(v));
        let verdict = if bot {
            Verdict::Bot {
                reason: "user agent".into(),
            }
        } else {
            Verdict::Human
        };
        let mut events = vec![event(&format!("e:{v}:1"), "activity", json!({}))];
        if arm == Arm::Treated {
            events.push(event(
                &format!("e:{v}:2"),
                "shown",
                json!({"rule": "offer", "intervention": format!("i{v}")}),
            ));
        }
        if i < k {
            events.push(event(
                &format!("order:o{v}"),
                "convert",
                json!({"order_id": format!("o{v}"), "value": 50}),
            ));
        }
        w.batches.push(LoggedBatch {
            site: site.clone(),
            visitor: visitor.clone(),
            session: Some(session.clone()),
            at,
            source: Source::Browser,
            context: BatchContext::default(),
            verdict,
            rules_version: 1,
            begins: None,
            events,
        });
        w.exposures.push(Exposure {
            id: format!("i{v}"),
            site: site.clone(),
            visitor,
            session,
            rule: RuleId::parse("offer").unwrap(),
            arm,
            at,
            message: String::new(),
        });
    }
    w
}

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let body =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, body)
}

#[tokio::test]
async fn each_rules_lift_interval_and_split_come_back_as_json_csv_and_a_page() {
    let admin = Admin::start().await;
    let shop = admin
        .site("shop", "Shop", &rule("offer", "Exit offer"))
        .await;
    admin
        .person("ada@example.test", Role::Admin, &[&shop])
        .await;
    let token = admin.token("ada@example.test", &["shop"]).await;
    // 10% held out (the default policy): 400 at 10%, 3,600 treated at 20%; and a crawler.
    admin
        .store
        .commit(&arm(&shop, Arm::Holdout, 400, 40, 0, false))
        .await
        .unwrap();
    admin
        .store
        .commit(&arm(&shop, Arm::Treated, 3_600, 720, 400, false))
        .await
        .unwrap();
    admin
        .store
        .commit(&arm(&shop, Arm::Treated, 1, 0, 10_000, true))
        .await
        .unwrap();

    let api = reqwest::Client::new();
    let url = |p: &str| format!("{}/api/v1/sites/shop{p}", admin.base);
    let (status, body) = json_of(
        api.get(url("/analytics?days=7"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let offer = &body["rules"][0];
    assert_eq!(offer["rule"], "offer");
    assert_eq!(offer["name"], "Exit offer");
    assert_eq!(
        offer["treated"]["triggered"], 3_600,
        "the crawler is in no number"
    );
    assert_eq!(offer["treated"]["converted"], 720);
    assert_eq!(offer["treated"]["shown"], 3_600);
    assert_eq!(offer["holdout"]["triggered"], 400);
    assert_eq!(offer["holdout"]["revenue"], 2_000.0);
    let lift = &offer["conversion"]["lift"];
    assert!(
        (lift["relative"].as_f64().unwrap() - 1.0).abs() < 1e-9,
        "{lift}"
    );
    assert!(
        lift["ci_low"].as_f64().unwrap() > 0.0,
        "a clear lift: {lift}"
    );
    let seq = &offer["conversion"]["sequential"];
    assert!(seq["ci_low"].as_f64().unwrap() <= lift["ci_low"].as_f64().unwrap());
    assert!(offer["srm_p_value"].as_f64().unwrap() > 0.5);
    assert_eq!(offer["sample_ratio_mismatch"], false);
    assert_eq!(offer["flags"], json!([]));
    assert!(!offer["series"].as_array().unwrap().is_empty());
    assert_eq!(body["overall"]["treated"]["triggered"], 3_600);
    assert_eq!(body["bots_excluded"], 1);
    assert_eq!(body["holdout_percent"], 10.0);

    // The same as CSV, a row per rule and one for all.
    let csv = api
        .get(url("/analytics.csv?days=7"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = csv.text().await.unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(rows[0].starts_with("rule,name,status,goal"));
    assert!(
        rows[2].starts_with("offer,Exit offer,live,order,"),
        "{}",
        rows[2]
    );

    // Periods that cannot be: refused, the field named.
    for (q, field) in [
        ("days=0", "days"),
        ("from=2026-01-01", "to"),
        ("from=2026-02-01&to=2026-01-01", "to"),
        ("from=2026-13-01&to=2026-12-01", "from"),
        ("days=3&from=2026-01-01&to=2026-01-02", "days"),
    ] {
        let (status, body) = json_of(
            api.get(url(&format!("/analytics?{q}")))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 422, "{q}: {body}");
        assert_eq!(body["error"]["field"], field, "{q}: {body}");
    }

    // Settings: a bad field is named and nothing is kept; a good one is.
    let good = json!({"window_hours": 48, "min_sample": 50, "auto_pause": true,
        "prompt_price": 0.15, "completion_price": 0.6, "currency": "EUR"});
    for (field, value) in [
        ("window_hours", json!(0)),
        ("min_sample", json!(1)),
        ("prompt_price", json!(-1)),
        ("currency", json!("euro")),
    ] {
        let mut bad = good.clone();
        bad[field] = value;
        let (status, body) = json_of(
            api.put(url("/analytics-settings"))
                .bearer_auth(&token)
                .json(&bad)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 422, "{field}: {body}");
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    let (_, kept) = json_of(
        api.get(url("/analytics-settings"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        kept["window_hours"], 168,
        "nothing of the refused saves was kept"
    );
    let (status, _) = json_of(
        api.put(url("/analytics-settings"))
            .bearer_auth(&token)
            .json(&good)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let (_, body) = json_of(
        api.get(url("/analytics?days=7"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body["window_secs"], 48 * 3600);
    assert_eq!(body["min_sample"], 50);

    // A backtest's request is checked before anything runs; without a running server it is
    // refused, not pretended.
    let draft = json!({"id": "d1", "name": "Draft",
        "when": {"all": [{"var": "behaviour.exit_intent", "op": "equals", "value": true}]},
        "message": {"type": "text", "text": "Hi"}});
    for (body, field) in [
        (json!({"rule": draft, "days": 0}), "days"),
        (json!({"rule": {"id": "d1"}}), "rule"),
    ] {
        let (status, answer) = json_of(
            api.post(url("/backtest"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    let (status, answer) = json_of(
        api.post(url("/backtest"))
            .bearer_auth(&token)
            .json(&json!({"rule": draft, "days": 7.0}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 409, "{answer}");

    // The page: the figures, the interval and the lift over time as SVG.
    let (browser, _) = admin.signed_in("ada@example.test").await;
    let page = browser
        .get(format!("{}/dash/sites/shop/analytics", admin.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Exit offer"));
    assert!(html.contains("+100%"), "the lift in words");
    assert!(
        html.contains(r#"class="interval""#),
        "the interval is drawn"
    );
    assert!(
        html.contains(r#"class="band""#),
        "lift over time with its band"
    );
    assert!(!html.contains("NaN"));
}

#[tokio::test]
async fn a_harmful_live_rule_is_paused_where_the_site_asks_for_it_and_only_there() {
    let admin = Admin::start().await;
    let rules = format!(
        "{}\n{}",
        rule("offer", "Exit offer"),
        rule("other", "Other")
    );
    let shop = admin.site("shop", "Shop", &rules).await;
    // The offer drives conversion down: 30% held out against 5% treated.
    admin
        .store
        .commit(&arm(&shop, Arm::Holdout, 400, 120, 0, false))
        .await
        .unwrap();
    admin
        .store
        .commit(&arm(&shop, Arm::Treated, 3_600, 180, 400, false))
        .await
        .unwrap();
    let state = beckon_admin::AdminState::new(support::options(admin.store.clone()));
    let now = beckon_admin::clock::now();
    let live = |rules: Vec<beckon_engine::rules::RuleSpec>| {
        rules
            .into_iter()
            .map(|r| (r.id, r.status.as_str()))
            .collect::<Vec<_>>()
    };

    // Not asked for: flagged, never paused.
    let none = beckon_admin::manage::analytics::auto_pause(&state, &shop, now)
        .await
        .unwrap();
    assert!(none.is_empty());
    assert!(
        live(admin.store.rules(&shop).await.unwrap())
            .iter()
            .all(|(_, s)| *s == "live")
    );

    let settings = beckon_stats::settings::Settings {
        auto_pause: true,
        ..Default::default()
    };
    beckon_store::analytics::Analytics::put_analytics_settings(
        admin.store.as_ref(),
        &shop,
        &settings,
    )
    .await
    .unwrap();
    let paused = beckon_admin::manage::analytics::auto_pause(&state, &shop, now)
        .await
        .unwrap();
    assert_eq!(paused.len(), 1, "{paused:?}");
    assert_eq!(paused[0].0, "offer");
    assert_eq!(paused[0].1, beckon_stats::report::Flag::Harmful);
    let mut after = live(admin.store.rules(&shop).await.unwrap());
    after.sort();
    assert_eq!(
        after,
        vec![("offer".to_owned(), "paused"), ("other".to_owned(), "live")],
        "only the harmful rule is paused"
    );
    let history =
        beckon_store::accounts::Accounts::rule_history(admin.store.as_ref(), &shop, u64::MAX, 1)
            .await
            .unwrap();
    let change = history[0].change.as_ref().expect("the change is recorded");
    assert!(
        change.summary.contains("automatically (harmful)"),
        "{change:?}"
    );
    assert_eq!(change.author, None, "made by nobody");

    // A paused rule is not paused again.
    let again = beckon_admin::manage::analytics::auto_pause(&state, &shop, now)
        .await
        .unwrap();
    assert!(again.is_empty());

    // Someone resumes it after the evidence that paused it: it is judged on what it does from
    // then on, not paused again on that evidence.
    let resume = |at: Timestamp| {
        let admin = &admin;
        let shop = &shop;
        async move {
            let (version, mut rules) = {
                let h = beckon_store::accounts::Accounts::rule_history(
                    admin.store.as_ref(),
                    shop,
                    u64::MAX,
                    1,
                )
                .await
                .unwrap();
                (h[0].version, h[0].rules.clone())
            };
            for r in &mut rules {
                r.status = beckon_engine::rules::Status::Live;
            }
            let change = beckon_store::accounts::Change {
                author: None,
                at,
                summary: "resumed \"offer\"".to_owned(),
            };
            beckon_store::accounts::Accounts::save_rules(
                admin.store.as_ref(),
                shop,
                version,
                &rules,
                &change,
            )
            .await
            .unwrap();
        }
    };
    resume(now.plus_ms(-30 * 60_000)).await;
    let after_resume = beckon_admin::manage::analytics::auto_pause(&state, &shop, now)
        .await
        .unwrap();
    assert!(
        after_resume.is_empty(),
        "resumed after its evidence: {after_resume:?}"
    );
    assert!(
        live(admin.store.rules(&shop).await.unwrap())
            .iter()
            .all(|(_, s)| *s == "live")
    );
    // Evidence after a change still counts: changed again (its text this time) before the
    // visitors came, the rule is paused on them.
    let (version, mut rules) = {
        let h = beckon_store::accounts::Accounts::rule_history(
            admin.store.as_ref(),
            &shop,
            u64::MAX,
            1,
        )
        .await
        .unwrap();
        (h[0].version, h[0].rules.clone())
    };
    for r in &mut rules {
        if r.id == "offer" {
            r.name = "Exit offer, reworded".to_owned();
        }
    }
    let change = beckon_store::accounts::Change {
        author: None,
        at: now.plus_ms(-2 * 3_600_000),
        summary: "reworded \"offer\"".to_owned(),
    };
    beckon_store::accounts::Accounts::save_rules(
        admin.store.as_ref(),
        &shop,
        version,
        &rules,
        &change,
    )
    .await
    .unwrap();
    let paused = beckon_admin::manage::analytics::auto_pause(&state, &shop, now)
        .await
        .unwrap();
    assert_eq!(
        paused.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        ["offer"],
        "the evidence came after its last change"
    );
}
