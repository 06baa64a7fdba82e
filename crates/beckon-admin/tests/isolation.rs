//! A member of one site tries every API route (all of them, read from the OpenAPI document, so
//! a route added later is tried too) and every dashboard page with another site's keys, rule
//! ids, member ids and token ids — with their session cookie and with their API token. Every
//! answer is 403 or 404, and nothing of the other site appears in any body. A token made for
//! one of a person's sites does not reach their other sites either.

mod support;

use beckon_store::accounts::Role;
use serde_json::{Value, json};
use support::{Admin, rule};

/// What the other site holds that must never be seen.
const SECRETS: &[&str] = &[
    "South Secret Shop",
    "south-hidden-rule",
    "Hidden offer for the south",
    "sk_south_secret",
    "https://south.example",
    "bob@example.test",
    "Hidden chat of the south",
    "south-lead@example.test",
    "https://hooks.south.example",
];

/// The south's lead, its webhook and the delivery between them: `(lead, destination,
/// delivery)` ids.
async fn south_outbox(admin: &Admin, site: &beckon_engine::SiteId) -> (String, String, String) {
    use beckon_store::leads::*;
    use beckon_store::outbox::*;
    let at = beckon_admin::clock::now();
    let destination = Destination {
        id: DestinationId::random(),
        site: site.clone(),
        name: "South CRM".to_owned(),
        target: Target::Webhook {
            url: "https://hooks.south.example/secret".to_owned(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
            previous: None,
        },
        topics: vec![Topic::LeadCreated],
        enabled: true,
        disabled_reason: None,
        created_at: at,
    };
    admin.store.put_destination(&destination).await.unwrap();
    let mut lead = NewLead {
        id: LeadId::random(),
        site: site.clone(),
        visitor: None,
        email: "south-lead@example.test".to_owned(),
        name: String::new(),
        question: "Hidden chat of the south".to_owned(),
        consent: Consent {
            text: "I agree.".to_owned(),
            at,
        },
        source: LeadSource::Api,
        context: LeadContext::default(),
        at,
        announce: Vec::new(),
    };
    lead.announce = vec![beckon_outbox::payload::lead_created(&lead)];
    admin.store.capture_lead(&lead).await.unwrap();
    let delivery = admin
        .store
        .deliveries(site, &DeliveryQuery::default())
        .await
        .unwrap()
        .remove(0);
    (
        lead.id.to_string(),
        destination.id.to_string(),
        delivery.id.to_string(),
    )
}

/// A conversation of the south, with a message nobody else may read.
async fn south_conversation(admin: &Admin, site: &beckon_engine::SiteId) -> String {
    use beckon_store::conversations::*;
    let at = beckon_admin::clock::now();
    let c = Conversation {
        id: ConversationId::from_random("southsouthsouthsouth").unwrap(),
        site: site.clone(),
        visitor: beckon_engine::VisitorId::parse("v_south_visitor").unwrap(),
        status: Status::Queued,
        department: Some("support".to_owned()),
        assignee: None,
        origin: Origin::Launcher,
        context: Context::default(),
        prechat: None,
        priority: 0,
        handoff: Some("asked for a person".to_owned()),
        started_at: at,
        updated_at: at,
        closed: None,
        rating: None,
        last_seq: 0,
        visitor_read: 0,
        agent_read: 0,
    };
    admin.store.open_conversation(&c, &[]).await.unwrap();
    admin
        .store
        .append_message(
            site,
            &c.id,
            &NewMessage {
                client_id: Some("m1".to_owned()),
                author: Author::Visitor,
                author_id: None,
                author_name: None,
                text: "Hidden chat of the south".to_owned(),
                attachment: None,
                at,
            },
        )
        .await
        .unwrap();
    admin
        .store
        .put_file(
            site,
            &FileRecord {
                id: SOUTH_FILE.to_owned(),
                conversation: c.id.clone(),
                name: "Hidden chat of the south.txt".to_owned(),
                mime: "text/plain".to_owned(),
                size: 24,
                author: Author::Visitor,
                at,
            },
            b"Hidden chat of the south",
        )
        .await
        .unwrap();
    c.id.to_string()
}

/// The south's file.
const SOUTH_FILE: &str = "f_00000000000000000005";

/// A concrete URL for a path of the document: the other site's things, and a file to send.
fn concrete(base: &str, path: &str, site: &str, chat: &str, extra: &[(&str, String)]) -> String {
    let mut p = path.to_owned();
    for (k, v) in extra {
        p = p.replace(k, v);
    }
    let p = p
        .replace("{site}", site)
        .replace("{id}", chat)
        .replace("{file}", SOUTH_FILE);
    let query = if path.ends_with("/files") {
        "?id=x1&name=a.txt"
    } else {
        ""
    };
    format!("{base}{p}{query}")
}

fn sample_body(path: &str, method: &str) -> Value {
    match (method, path) {
        (_, p) if p.ends_with("/messages") => json!({"id": "x1", "text": "taken over"}),
        (_, p) if p.ends_with("/transfer") => json!({"department": "sales"}),
        (_, p) if p.ends_with("/typing") => json!({"on": true}),
        (_, p) if p.ends_with("/read") => json!({"seq": 1}),
        (_, p) if p.ends_with("/availability") => json!({"available": true}),
        (_, p) if p.ends_with("/profile") => {
            json!({"capacity": 2, "departments": [], "languages": []})
        }
        (_, p) if p.ends_with("/desk/settings") => json!({"launcher": false, "title": "Taken over",
            "welcome": "", "prechat_name": false, "prechat_email": false, "prechat_topics": [],
            "presales_only": true, "departments": [{"id": "sales", "name": "Sales"}],
            "accept_seconds": 30, "wait_seconds": 60, "inactivity_minutes": 30, "canned": []}),
        ("post", p) if p.ends_with("/conversations") => {
            json!({"visitor": "v_south_visitor", "text": "hi"})
        }
        (_, p) if p.ends_with("/status") => json!({"status": "paused"}),
        (_, p) if p.ends_with("/destinations") || p.ends_with("/destinations/{id}") => {
            json!({"name": "Taken over", "kind": "webhook", "url": "https://taken.example/hook"})
        }
        (_, p) if p.ends_with("/lead-settings") => json!({"follow_up_minutes": 5}),
        (_, p) if p.ends_with("/backtest") => json!({"rule": {"id": "taken", "name": "x",
            "when": {"all": [{"var": "behaviour.exit_intent", "op": "equals", "value": true}]},
            "message": {"type": "text", "text": "x"}}, "days": 1}),
        (_, p) if p.ends_with("/analytics-settings") => json!({"window_hours": 1,
            "min_sample": 2, "auto_pause": true, "prompt_price": 1, "completion_price": 1,
            "currency": "EUR"}),
        ("post", p) if p.ends_with("/leads") => {
            json!({"email": "taken@example.com", "consent": "yes"})
        }
        ("patch", p) if p.contains("/leads/") => json!({"status": "won"}),
        (_, p) if p.ends_with("/restore") => json!({"version": 1}),
        (_, p) if p.ends_with("/members") => json!({"email": "alice@example.test"}),
        ("put", _) => json!({"rule": {"id": "south-hidden-rule", "name": "x",
            "when": {"all": []}, "message": {"type": "text", "text": "x"}}}),
        ("patch", _) => json!({"name": "Taken over"}),
        _ => json!({}),
    }
}

#[tokio::test]
async fn a_member_of_one_site_reaches_nothing_of_another() {
    let admin = Admin::start().await;
    let north = admin
        .site("north", "North Shop", &rule("north-rule", "North offer"))
        .await;
    let south = admin
        .site(
            "south",
            "South Secret Shop",
            &rule("south-hidden-rule", "Hidden offer for the south"),
        )
        .await;
    let third = admin
        .site("third", "Third Shop", &rule("third-rule", "Third offer"))
        .await;
    admin
        .person("alice@example.test", Role::Admin, &[&north, &third])
        .await;
    let bob = admin
        .person("bob@example.test", Role::Admin, &[&south])
        .await;
    let bob_token = admin.token("bob@example.test", &["south"]).await;
    let south_chat = south_conversation(&admin, &south).await;
    let (south_lead, south_destination, south_delivery) = south_outbox(&admin, &south).await;
    let outbox_ids = [
        ("/leads/{id}", format!("/leads/{south_lead}")),
        (
            "/destinations/{id}",
            format!("/destinations/{south_destination}"),
        ),
        ("/deliveries/{id}", format!("/deliveries/{south_delivery}")),
    ];
    let (bob_session, _) = admin.signed_in("bob@example.test").await;
    let bob_token_id = {
        let answer: Value = bob_session
            .get(format!("{}/api/v1/tokens", admin.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["items"][0]["id"].as_i64().unwrap()
    };

    let (alice, csrf) = admin.signed_in("alice@example.test").await;
    // Alice's token covers north only, though she also belongs to the third site.
    let alice_token = admin.token("alice@example.test", &["north"]).await;

    let doc: Value = reqwest::get(format!("{}/api/openapi.json", admin.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut tried = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.contains('{') {
            continue; // lists of the caller's own things: checked below for what they hold
        }
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let url = concrete(
                &admin.base,
                path,
                "south",
                &south_chat,
                &[
                    ("{rule}", "south-hidden-rule".to_owned()),
                    ("{user}", bob.id.to_string()),
                    ("{token}", bob_token_id.to_string()),
                    outbox_ids[0].clone(),
                    outbox_ids[1].clone(),
                    outbox_ids[2].clone(),
                ],
            );
            let concrete = url.trim_start_matches(&admin.base).to_owned();
            let body = sample_body(path, method);
            // As Alice with her cookie, and with her token.
            for via in ["session", "token"] {
                let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let request = match via {
                    "session" => alice
                        .request(m, &url)
                        .header("origin", &admin.base)
                        .header("x-csrf-token", &csrf),
                    _ => reqwest::Client::new()
                        .request(m, &url)
                        .bearer_auth(&alice_token),
                };
                let request = if method == "get" || method == "delete" {
                    request
                } else {
                    request.json(&body)
                };
                let answer = request.send().await.unwrap();
                let status = answer.status().as_u16();
                let text = answer.text().await.unwrap();
                assert!(
                    status == 403 || status == 404,
                    "{} {concrete} via {via}: {status} {text}",
                    method.to_uppercase()
                );
                for secret in SECRETS {
                    assert!(
                        !text.contains(secret),
                        "{method} {concrete} via {via} leaked {secret:?}: {text}"
                    );
                }
                tried += 1;
            }
        }
        // The third site through Alice's north-only token: not found either.
        if path.contains("{site}") && item.get("get").is_some() {
            let url = format!(
                "{}{}",
                admin.base,
                path.replace("{site}", "third")
                    .replace("{rule}", "third-rule")
                    .replace("{user}", "1")
            );
            let answer = reqwest::Client::new()
                .get(&url)
                .bearer_auth(&alice_token)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 404, "GET {url} with a north-only token");
        }
    }
    assert!(tried >= 20, "tried only {tried} route × credential pairs");

    // The south's conversation under Alice's own site: her membership of the north does not
    // reach a conversation of the south by its id.
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.contains("{id}") {
            continue;
        }
        for method in ["get", "post"] {
            if item.get(method).is_none() {
                continue;
            }
            let url = concrete(&admin.base, path, "north", &south_chat, &outbox_ids);
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut request = alice
                .request(m, &url)
                .header("origin", &admin.base)
                .header("x-csrf-token", &csrf);
            if method == "post" {
                request = request.json(&sample_body(path, method));
            }
            let answer = request.send().await.unwrap();
            let status = answer.status().as_u16();
            let text = answer.text().await.unwrap();
            assert_eq!(status, 404, "{method} {url}: {text}");
            for secret in SECRETS {
                assert!(!text.contains(secret), "{url} leaked {secret:?}: {text}");
            }
        }
    }

    // Lists hold only Alice's own sites and tokens.
    for (list, via_token) in [
        ("/api/v1/sites", false),
        ("/api/v1/sites", true),
        ("/api/v1/tokens", false),
        ("/api/v1/me", false),
        ("/api/v1/me", true),
    ] {
        let url = format!("{}{list}", admin.base);
        let answer = if via_token {
            reqwest::Client::new()
                .get(&url)
                .bearer_auth(&alice_token)
                .send()
                .await
                .unwrap()
        } else {
            alice.get(&url).send().await.unwrap()
        };
        assert_eq!(answer.status(), 200, "{list}");
        let text = answer.text().await.unwrap();
        for secret in SECRETS.iter().chain(&["\"south\""]) {
            assert!(!text.contains(secret), "{list} leaked {secret:?}: {text}");
        }
        if via_token && list == "/api/v1/sites" {
            assert!(
                !text.contains("Third Shop"),
                "a north-only token lists the third site: {text}"
            );
            assert!(text.contains("North Shop"));
        }
    }

    // Every dashboard page of a site, for the other site.
    let pages = [
        ("get", "/dash/sites/south/rules"),
        ("get", "/dash/sites/south/rules/new"),
        ("get", "/dash/sites/south/rules/south-hidden-rule"),
        ("get", "/dash/sites/south/visitors"),
        ("get", "/dash/sites/south/visitors/v1"),
        ("get", "/dash/sites/south/conversations"),
        ("get", "/dash/sites/south/conversations/events"),
        ("get", "/dash/sites/south/install"),
        ("get", "/dash/sites/south/settings"),
        ("post", "/dash/sites/south/settings"),
        ("post", "/dash/sites/south/secret"),
        ("post", "/dash/sites/south/members"),
        (
            "post",
            &format!("/dash/sites/south/members/{}/remove", bob.id),
        ),
        ("get", "/dash/switch?site=south"),
        ("get", "/dash/sites/south/leads"),
        ("get", "/dash/sites/south/analytics"),
        ("post", "/dash/sites/south/analytics/settings"),
        ("get", &format!("/dash/sites/south/leads/{south_lead}")),
        ("post", &format!("/dash/sites/south/leads/{south_lead}")),
        ("get", &format!("/dash/sites/north/leads/{south_lead}")),
        ("post", &format!("/dash/sites/north/leads/{south_lead}")),
        ("get", "/dash/sites/south/destinations"),
        ("post", "/dash/sites/south/destinations"),
        ("post", "/dash/sites/south/lead-settings"),
        (
            "post",
            &format!("/dash/sites/south/destinations/{south_destination}/test"),
        ),
        (
            "post",
            &format!("/dash/sites/north/destinations/{south_destination}/rotate"),
        ),
        (
            "post",
            &format!("/dash/sites/north/deliveries/{south_delivery}/replay"),
        ),
        ("post", &format!("/dash/tokens/{bob_token_id}/revoke")),
    ];
    for (method, page) in pages {
        let url = format!("{}{page}", admin.base);
        let request = match method {
            "get" => alice.get(&url),
            _ => alice
                .post(&url)
                .header("origin", &admin.base)
                .form(&[("csrf", csrf.as_str()), ("name", "Taken over")]),
        };
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap();
        assert!(status == 403 || status == 404, "{method} {page}: {status}");
        for secret in SECRETS {
            assert!(!text.contains(secret), "{page} leaked {secret:?}");
        }
    }

    // And nothing of the south changed.
    let bob_view: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/sites/south/rules", admin.base))
        .bearer_auth(&bob_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bob_view["rules"]["items"][0]["rule"]["status"], "live");
    assert_eq!(
        bob_view["rules"]["items"][0]["rule"]["name"],
        "Hidden offer for the south"
    );
    let site: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/sites/south", admin.base))
        .bearer_auth(&bob_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(site["name"], "South Secret Shop");
    let tokens: Value = bob_session
        .get(format!("{}/api/v1/tokens", admin.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        tokens["items"][0]["revoked"].is_null(),
        "bob's token still works"
    );
    let chat: Value = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/sites/south/conversations/{south_chat}",
            admin.base
        ))
        .bearer_auth(&bob_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        chat["conversation"]["status"], "queued",
        "nobody took the south's chat"
    );
    assert_eq!(
        chat["messages"].as_array().map(Vec::len),
        Some(1),
        "nothing was written in it: {chat}"
    );
    let settings: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/sites/south/desk/settings", admin.base))
        .bearer_auth(&bob_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        settings["title"], "Chat with us",
        "the south's chat settings stand"
    );
}
