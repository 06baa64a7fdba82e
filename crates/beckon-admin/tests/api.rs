//! The admin API's stories: rules written, refused with the field named, launched, paused,
//! restored; sign-in, CSRF and throttling; tokens; sites and their keys.

mod support;

use beckon_store::Store;
use beckon_store::accounts::Role;
use serde_json::{Value, json};
use support::{Admin, PASSWORD, rule};

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let body =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, body)
}

#[tokio::test]
async fn a_rule_is_refused_with_its_field_then_saved_launched_paused_and_restored() {
    let admin = Admin::start().await;
    let shop = admin.site("shop", "Shop", "").await;
    admin
        .person("ada@example.test", Role::Admin, &[&shop])
        .await;
    let token = admin.token("ada@example.test", &["shop"]).await;
    let api = reqwest::Client::new();
    let url = |p: &str| format!("{}/api/v1/sites/shop{p}", admin.base);

    // A rule whose condition names an unknown variable: refused, the field named, nothing kept.
    let bad = json!({"rule": {"id": "exit", "name": "Exit offer",
        "when": {"all": [{"var": "behaviour.exit_intentt", "op": "equals", "value": true}]},
        "message": {"type": "text", "text": "Wait!"}}});
    let (status, body) = json_of(
        api.put(url("/rules/exit"))
            .bearer_auth(&token)
            .json(&bad)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid");
    assert_eq!(body["error"]["field"], "when.all[0].var", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exit_intent"),
        "suggests the near name: {body}"
    );
    assert!(admin.store.rules(&shop).await.unwrap().is_empty());

    // A path id that is not the rule's id.
    let (status, body) = json_of(api.put(url("/rules/other")).bearer_auth(&token)
        .json(&json!({"rule": {"id": "exit", "name": "x", "when": {"all": []}, "message": {"type": "text", "text": "x"}}}))
        .send().await.unwrap()).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("rule.id"))
    );

    // A good one: saved as a draft.
    let good = json!({"rule": {"id": "exit", "name": "Exit offer",
        "when": {"all": [{"var": "behaviour.exit_intent", "op": "equals", "value": true}]},
        "message": {"type": "text", "text": "Wait!"}}});
    let (status, body) = json_of(
        api.put(url("/rules/exit"))
            .bearer_auth(&token)
            .json(&good)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v1 = body["version"].as_u64().unwrap();
    let (_, got) = json_of(
        api.get(url("/rules/exit"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got["rule"]["status"], "draft");
    assert_eq!(got["version"], v1);

    // Launch it against the version it was read at; a second change from that stale version is refused.
    let (status, launched) = json_of(
        api.post(url("/rules/exit/status"))
            .bearer_auth(&token)
            .json(&json!({"status": "live", "base": v1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{launched}");
    let (status, stale) = json_of(
        api.post(url("/rules/exit/status"))
            .bearer_auth(&token)
            .json(&json!({"status": "paused", "base": v1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, stale["error"]["code"].as_str()),
        (409, Some("conflict"))
    );
    assert_eq!(
        admin.store.rules(&shop).await.unwrap()[0].status.as_str(),
        "live"
    );

    // Edit the text, then restore the first version's text; the status stays live.
    let edited = json!({"rule": {"id": "exit", "name": "Exit offer", "status": "live",
        "when": {"all": [{"var": "behaviour.exit_intent", "op": "equals", "value": true}]},
        "message": {"type": "text", "text": "Hold on!"}}});
    let (status, _) = json_of(
        api.put(url("/rules/exit"))
            .bearer_auth(&token)
            .json(&edited)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let (_, history) = json_of(
        api.get(url("/rules/exit/history"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let summaries: Vec<&str> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["summary"].as_str().unwrap())
        .collect();
    assert_eq!(
        summaries,
        ["edited \"exit\"", "launched \"exit\"", "created \"exit\""]
    );
    assert_eq!(history["versions"][2]["author"], "Name of ada@example.test");
    let (status, _) = json_of(
        api.post(url("/rules/exit/restore"))
            .bearer_auth(&token)
            .json(&json!({"version": v1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let now = &admin.store.rules(&shop).await.unwrap()[0];
    assert_eq!(now.status.as_str(), "live", "a restore keeps the status");
    assert_eq!(serde_json::to_value(&now.message).unwrap()["text"], "Wait!");

    // A live rule cannot be deleted, only archived; a draft can.
    let (status, _) = json_of(
        api.delete(url("/rules/exit"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = json_of(
        api.post(url("/rules/exit/status"))
            .bearer_auth(&token)
            .json(&json!({"status": "archived"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = json_of(
        api.post(url("/rules/exit/status"))
            .bearer_auth(&token)
            .json(&json!({"status": "gone"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("status"))
    );

    // Malformed JSON is a JSON error too.
    let answer = api
        .put(url("/rules/exit"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(answer).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let answer = api
        .put(url("/rules/exit"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(vec![b' '; 600 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 413);
}

#[tokio::test]
async fn changes_riding_on_the_cookie_need_the_csrf_token_and_this_origin() {
    let admin = Admin::start().await;
    let shop = admin.site("shop", "Shop", &rule("r1", "Rule one")).await;
    admin
        .person("ada@example.test", Role::Admin, &[&shop])
        .await;
    let (client, csrf) = admin.signed_in("ada@example.test").await;
    let url = format!("{}/api/v1/sites/shop", admin.base);
    let change = json!({"name": "Renamed"});

    let no_token = client
        .patch(&url)
        .header("origin", &admin.base)
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 403);
    let wrong = client
        .patch(&url)
        .header("origin", &admin.base)
        .header("x-csrf-token", "nope")
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let cross = client
        .patch(&url)
        .header("origin", "https://evil.example")
        .header("x-csrf-token", &csrf)
        .json(&change)
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(cross).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("cross_site"))
    );
    let no_origin = client
        .patch(&url)
        .header("x-csrf-token", &csrf)
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(no_origin.status(), 403);
    let site_fetch = client
        .patch(&url)
        .header("origin", &admin.base)
        .header("sec-fetch-site", "cross-site")
        .header("x-csrf-token", &csrf)
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(site_fetch.status(), 403);
    assert_eq!(
        admin
            .store
            .site_labels(std::slice::from_ref(&shop))
            .await
            .unwrap()[0]
            .name,
        "Shop"
    );

    let ok = client
        .patch(&url)
        .header("origin", &admin.base)
        .header("x-csrf-token", &csrf)
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    use beckon_store::accounts::Accounts;
    assert_eq!(
        admin
            .store
            .site_labels(std::slice::from_ref(&shop))
            .await
            .unwrap()[0]
            .name,
        "Renamed"
    );

    // A dashboard form carries the token as a field.
    let form = client
        .post(format!("{}/dash/sites/shop/settings", admin.base))
        .header("origin", &admin.base)
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "From the form"),
            ("origins", "https://shop.example"),
            ("holdout_percent", "5"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 303, "{}", form.text().await.unwrap());
    let site = admin
        .store
        .sites()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id == shop)
        .unwrap();
    assert_eq!(site.policy.holdout_percent, 5.0);
    let forged = client
        .post(format!("{}/dash/sites/shop/settings", admin.base))
        .header("origin", &admin.base)
        .form(&[("csrf", "forged"), ("holdout_percent", "50")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
}

#[tokio::test]
async fn sign_in_is_throttled_and_never_tells_which_half_was_wrong() {
    let admin = Admin::start().await;
    admin.person("ada@example.test", Role::Admin, &[]).await;
    let client = reqwest::Client::new();
    let attempt = |email: &'static str, password: &'static str| {
        client
            .post(format!("{}/api/v1/login", admin.base))
            .header("origin", &admin.base)
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    let (s1, wrong_password) = json_of(
        attempt("ada@example.test", "not the password")
            .await
            .unwrap(),
    )
    .await;
    let (s2, wrong_address) = json_of(
        attempt("eve@example.test", "not the password")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(
        wrong_password["error"]["message"],
        wrong_address["error"]["message"]
    );
    // Five attempts for the address so far, then the sixth.
    for _ in 0..4 {
        attempt("ada@example.test", "still wrong").await.unwrap();
    }
    // The sixth attempt for the address, even with the right password, waits.
    let answer = client
        .post(format!("{}/api/v1/login", admin.base))
        .header("origin", &admin.base)
        .json(&json!({"email": "ADA@example.test ", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 429);
    assert!(answer.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn agents_read_but_do_not_change_and_revoked_tokens_stop_at_once() {
    let admin = Admin::start().await;
    let shop = admin.site("shop", "Shop", &rule("r1", "Rule one")).await;
    admin
        .person("ada@example.test", Role::Admin, &[&shop])
        .await;
    admin
        .person("sam@example.test", Role::Agent, &[&shop])
        .await;
    let agent = admin.token("sam@example.test", &["shop"]).await;
    let api = reqwest::Client::new();
    let (status, _) = json_of(
        api.get(format!("{}/api/v1/sites/shop/rules", admin.base))
            .bearer_auth(&agent)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = json_of(
        api.post(format!("{}/api/v1/sites/shop/rules/r1/status", admin.base))
            .bearer_auth(&agent)
            .json(&json!({"status": "paused"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );

    let token = admin.token("ada@example.test", &["shop"]).await;
    // A token manages no tokens: a leaked one cannot make itself a successor.
    for answer in [
        api.get(format!("{}/api/v1/tokens", admin.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
        api.post(format!("{}/api/v1/tokens", admin.base))
            .bearer_auth(&token)
            .json(&json!({"name": "successor", "sites": ["shop"]}))
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(answer.status(), 403);
    }
    let (ada, csrf) = admin.signed_in("ada@example.test").await;
    let (_, list) = json_of(
        ada.get(format!("{}/api/v1/tokens", admin.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = list["items"][0]["id"].as_i64().unwrap();
    assert!(
        !list.to_string().contains(&token),
        "a token's secret is never listed"
    );
    let by_itself = api
        .delete(format!("{}/api/v1/tokens/{id}", admin.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(by_itself.status(), 403);
    let revoke = ada
        .delete(format!("{}/api/v1/tokens/{id}", admin.base))
        .header("origin", &admin.base)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 204);
    let after = api
        .get(format!("{}/api/v1/me", admin.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    let garbage = api
        .get(format!("{}/api/v1/me", admin.base))
        .bearer_auth("bk_not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 401);
}

#[tokio::test]
async fn a_new_site_shows_its_secret_once_and_a_rotation_stops_the_old_one() {
    let admin = Admin::start().await;
    admin.person("ada@example.test", Role::Admin, &[]).await;
    let (client, csrf) = admin.signed_in("ada@example.test").await;
    let create = |body: Value| {
        client
            .post(format!("{}/api/v1/sites", admin.base))
            .header("origin", &admin.base)
            .header("x-csrf-token", &csrf)
            .json(&body)
            .send()
    };
    let (status, body) = json_of(
        create(json!({"key": "bad key!", "name": "X"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("key"))
    );
    let (status, body) = json_of(
        create(json!({"key": "new", "name": "X", "origins": ["ftp://x"]}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("origins[0]"))
    );
    let (status, body) = json_of(
        create(json!({"key": "new", "name": "X", "timezone": "Mars/Base"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("policy.timezone")),
        "{body}"
    );

    let (status, made) = json_of(
        create(json!({"key": "new", "name": "New shop", "origins": ["https://new.example"]}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sk_") && secret.len() > 40);
    let stored = admin
        .store
        .sites()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id.as_str() == "new")
        .unwrap();
    assert!(stored.secret.matches(&secret));
    assert!(
        !stored.secret.as_str().contains(&secret),
        "only the digest is stored"
    );
    let (_, again) = json_of(
        client
            .get(format!("{}/api/v1/sites/new", admin.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(!again.to_string().contains(&secret), "never shown again");
    let (status, _) = json_of(
        create(json!({"key": "new", "name": "Twice"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 409);

    let (status, rotated) = json_of(
        client
            .post(format!("{}/api/v1/sites/new/secret", admin.base))
            .header("origin", &admin.base)
            .header("x-csrf-token", &csrf)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let stored = admin
        .store
        .sites()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id.as_str() == "new")
        .unwrap();
    assert!(!stored.secret.matches(&secret));
    assert!(stored.secret.matches(rotated["secret"].as_str().unwrap()));
}

#[tokio::test]
async fn another_authorization_scheme_never_rides_on_the_cookie() {
    let admin = Admin::start().await;
    let shop = admin.site("shop", "Shop", &rule("r1", "Rule one")).await;
    admin
        .person("ada@example.test", Role::Admin, &[&shop])
        .await;
    let (client, _) = admin.signed_in("ada@example.test").await;
    // A proxy's Basic auth, say: no CSRF token, a cross-site origin — refused, and nothing changed.
    let forged = client
        .post(format!("{}/api/v1/sites/shop/secret", admin.base))
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert!(
        matches!(forged.status().as_u16(), 401 | 403),
        "{}",
        forged.status()
    );
    let form = client
        .post(format!("{}/dash/sites/shop/settings", admin.base))
        .header("authorization", "x")
        .form(&[("name", "Pwned"), ("origins", "*")])
        .send()
        .await
        .unwrap();
    assert!(
        matches!(form.status().as_u16(), 401 | 403),
        "{}",
        form.status()
    );
    use beckon_store::accounts::Accounts;
    assert_eq!(
        admin
            .store
            .site_labels(std::slice::from_ref(&shop))
            .await
            .unwrap()[0]
            .name,
        "Shop"
    );
    // The scheme's case does not matter for a real token.
    let token = admin.token("ada@example.test", &["shop"]).await;
    let me = reqwest::Client::new()
        .get(format!("{}/api/v1/me", admin.base))
        .header("authorization", format!("bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
}

#[tokio::test]
async fn signing_in_over_a_signed_in_session_gets_a_new_session_and_token() {
    let admin = Admin::start().await;
    let shop = admin.site("shop", "Shop", "").await;
    admin.person("mallory@example.test", Role::Admin, &[]).await;
    admin
        .person("victim@example.test", Role::Admin, &[&shop])
        .await;
    let (client, mallory_csrf) = admin.signed_in("mallory@example.test").await;
    let again = client
        .post(format!("{}/api/v1/login", admin.base))
        .header("origin", &admin.base)
        .json(&json!({"email": "victim@example.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let set_cookie = again
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        set_cookie.is_some_and(|c| c.starts_with("beckon_session=")),
        "a new session id is sent"
    );
    let body: Value = again.json().await.unwrap();
    assert_ne!(
        body["csrf"].as_str().unwrap(),
        mallory_csrf,
        "a new CSRF token"
    );
    let stale = client
        .post(format!("{}/api/v1/sites/shop/secret", admin.base))
        .header("origin", &admin.base)
        .header("x-csrf-token", &mallory_csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 403, "the old token is worthless");
}

#[tokio::test]
async fn two_people_creating_one_key_at_once_get_one_site_and_one_conflict() {
    let admin = Admin::start().await;
    admin.person("ann@example.test", Role::Admin, &[]).await;
    admin.person("ben@example.test", Role::Admin, &[]).await;
    let (ann, ann_csrf) = admin.signed_in("ann@example.test").await;
    let (ben, ben_csrf) = admin.signed_in("ben@example.test").await;
    for round in 0..10 {
        let key = format!("race-{round}");
        let create = |client: &reqwest::Client, csrf: &str| {
            client
                .post(format!("{}/api/v1/sites", admin.base))
                .header("origin", &admin.base)
                .header("x-csrf-token", csrf)
                .json(&json!({"key": key, "name": "Race"}))
                .send()
        };
        let (a, b) = tokio::join!(create(&ann, &ann_csrf), create(&ben, &ben_csrf));
        let mut statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
        statuses.sort();
        assert_eq!(statuses, [201, 409], "round {round}");
    }
}

#[tokio::test]
async fn a_rename_racing_a_rotation_never_brings_the_old_key_back() {
    let admin = Admin::start().await;
    let shop = admin.site("shop", "Shop", "").await;
    admin
        .person("ada@example.test", Role::Admin, &[&shop])
        .await;
    let (client, csrf) = admin.signed_in("ada@example.test").await;
    for round in 0..10 {
        let rotate = client
            .post(format!("{}/api/v1/sites/shop/secret", admin.base))
            .header("origin", &admin.base)
            .header("x-csrf-token", &csrf)
            .send();
        let rename = client
            .patch(format!("{}/api/v1/sites/shop", admin.base))
            .header("origin", &admin.base)
            .header("x-csrf-token", &csrf)
            .json(&json!({"name": format!("Shop {round}")}))
            .send();
        let (rotated, renamed) = tokio::join!(rotate, rename);
        assert_eq!(renamed.unwrap().status(), 200);
        let rotated: Value = rotated.unwrap().json().await.unwrap();
        let stored = admin
            .store
            .sites()
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.id == shop)
            .unwrap();
        assert!(
            stored.secret.matches(rotated["secret"].as_str().unwrap()),
            "round {round}: the rotated key works"
        );
    }
}

#[tokio::test]
async fn every_api_refusal_is_json_even_a_wrong_method() {
    let admin = Admin::start().await;
    let shop = admin.site("shop", "Shop", "").await;
    admin
        .person("ada@example.test", Role::Admin, &[&shop])
        .await;
    let token = admin.token("ada@example.test", &["shop"]).await;
    let api = reqwest::Client::new();
    for (method, path) in [
        ("PUT", "/api/v1/sites"),
        ("GET", "/api/v1/sites/shop/secret"),
        ("DELETE", "/api/v1/sites/shop"),
    ] {
        let answer = api
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{path}", admin.base),
            )
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(answer).await;
        assert_eq!(status, 405, "{method} {path}");
        assert_eq!(body["error"]["code"], "method_not_allowed");
    }
    // A malformed body to another site's route says "not found", not what is wrong with it.
    let answer = api
        .post(format!("{}/api/v1/sites/elsewhere/preview", admin.base))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
}

#[tokio::test]
async fn members_are_added_and_removed_from_the_settings_page() {
    let admin = Admin::start().await;
    let shop = admin.site("shop", "Shop", "").await;
    admin
        .person("ada@example.test", Role::Admin, &[&shop])
        .await;
    let sam = admin.person("sam@example.test", Role::Agent, &[]).await;
    let (client, csrf) = admin.signed_in("ada@example.test").await;
    let add = |email: &'static str| {
        client
            .post(format!("{}/dash/sites/shop/members", admin.base))
            .header("origin", &admin.base)
            .form(&[("csrf", csrf.as_str()), ("email", email)])
            .send()
    };
    assert_eq!(add("SAM@example.test").await.unwrap().status(), 303);
    use beckon_store::accounts::Accounts;
    assert_eq!(
        admin.store.sites_of(sam.id).await.unwrap(),
        vec![shop.clone()]
    );
    let nobody = add("nobody@example.test").await.unwrap();
    assert_eq!(nobody.status(), 404);
    assert!(
        nobody.text().await.unwrap().contains("beckon user add"),
        "says how to make the account"
    );
    let settings = client
        .get(format!("{}/dash/sites/shop/settings", admin.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(settings.contains("sam@example.test"));
    let remove = client
        .post(format!(
            "{}/dash/sites/shop/members/{}/remove",
            admin.base, sam.id
        ))
        .header("origin", &admin.base)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(remove.status(), 303);
    assert!(admin.store.sites_of(sam.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_password_change_keeps_this_session_and_ends_the_others() {
    let admin = Admin::start().await;
    admin.person("ada@example.test", Role::Admin, &[]).await;
    let (here, csrf) = admin.signed_in("ada@example.test").await;
    let (elsewhere, _) = admin.signed_in("ada@example.test").await;
    let change = |current: &str, new: &str| {
        here.post(format!("{}/api/v1/me/password", admin.base))
            .header("origin", &admin.base)
            .header("x-csrf-token", &csrf)
            .json(&json!({"current": current, "new": new}))
            .send()
    };
    let (status, body) = json_of(
        change("wrong password!", "a brand new passphrase")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("current"))
    );
    let (status, body) = json_of(change(PASSWORD, "short").await.unwrap()).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("new"))
    );
    assert_eq!(
        change(PASSWORD, "a brand new passphrase")
            .await
            .unwrap()
            .status(),
        204
    );
    let me = |c: &reqwest::Client| c.get(format!("{}/api/v1/me", admin.base)).send();
    assert_eq!(
        me(&here).await.unwrap().status(),
        200,
        "this session goes on"
    );
    assert_eq!(
        me(&elsewhere).await.unwrap().status(),
        401,
        "the others end"
    );
    let login = |password: &'static str| {
        reqwest::Client::new()
            .post(format!("{}/api/v1/login", admin.base))
            .header("origin", &admin.base)
            .json(&json!({"email": "ada@example.test", "password": password}))
            .send()
    };
    assert_eq!(login(PASSWORD).await.unwrap().status(), 401);
    assert_eq!(login("a brand new passphrase").await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_dashboard_form_with_a_bearer_header_is_not_taken_on_the_cookie() {
    let admin = Admin::start().await;
    let shop = admin.site("shop", "Shop", "").await;
    admin
        .person("ada@example.test", Role::Admin, &[&shop])
        .await;
    let (client, _) = admin.signed_in("ada@example.test").await;
    let forged = client
        .post(format!("{}/dash/sites/shop/settings", admin.base))
        .header("authorization", "Bearer bk_anything")
        .form(&[("name", "Pwned"), ("origins", "*")])
        .send()
        .await
        .unwrap();
    assert!(forged.status().is_redirection() || forged.status().is_client_error());
    assert_ne!(
        forged
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok()),
        Some("/dash/sites/shop/settings?saved=1")
    );
    use beckon_store::accounts::Accounts;
    assert_eq!(
        admin
            .store
            .site_labels(std::slice::from_ref(&shop))
            .await
            .unwrap()[0]
            .name,
        "Shop"
    );
}

#[tokio::test]
async fn the_live_visitors_are_people_and_a_visit_judged_a_bot_is_not_among_them() {
    use beckon_engine::{Engine, Policy, Profile, RuleSet, SessionId, SessionStart, VisitorId};
    use beckon_store::{SessionRecord, VisitorWrite, WriteBatch};
    let admin = Admin::start().await;
    let shop = admin.site("shop", "Shop", "").await;
    admin
        .person("ada@example.test", Role::Admin, &[&shop])
        .await;
    let engine = Engine::new(shop.clone(), Policy::default(), RuleSet::default()).unwrap();
    let now = beckon_admin::clock::now();
    let visit = |v: &str, bot: Option<&str>| {
        let mut profile = Profile::default();
        let id = VisitorId::parse(v).unwrap();
        let mut state =
            engine.start_session(id.clone(), SessionStart::default(), &mut profile, now);
        if bot.is_some() {
            state.mark_bot();
        }
        VisitorWrite {
            site: shop.clone(),
            visitor: id,
            profile: Some(profile),
            session: Some(SessionRecord {
                id: SessionId::parse(&format!("s_{v}")).unwrap(),
                state,
                ended: Vec::new(),
                issued: Vec::new(),
                bot: bot.map(str::to_owned),
            }),
            last_seen: now,
            expect: None,
        }
    };
    admin
        .store
        .commit(&WriteBatch {
            visitors: vec![
                visit("v_person_reading", None),
                visit("v_script_paging", Some("behaviour: 31 pages within 40 s")),
            ],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    let (client, _) = admin.signed_in("ada@example.test").await;
    let page = client
        .get(format!("{}/dash/sites/shop/visitors", admin.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("v_person_reading"), "the person is live");
    assert!(
        !html.contains("v_script_paging"),
        "a bot's visit is in the log, not among the people on the site"
    );
}
