//! The chat's entry points against bad and hostile input, over real HTTP and WebSocket against
//! `beckon demo`: every refusal says what is wrong, nothing refused is stored, and files are
//! judged by their content and served only to the conversation's two parties.

mod browser_support;

use std::time::Duration;

use beckon_engine::{SiteId, VisitorId};
use browser_support::Served;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const PNG: &[u8] = &[
    0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R', 0, 0, 0,
    1, 0, 0, 0, 1, 8, 6, 0, 0, 0,
];

struct Visitor {
    id: String,
    token: String,
}

fn visitor(served: &Served, id: &str) -> Visitor {
    let site = SiteId::parse("demo").unwrap();
    let token = served.tokens.issue(&site, &VisitorId::parse(id).unwrap());
    Visitor {
        id: id.to_owned(),
        token,
    }
}

async fn frame(served: &Served, v: &Visitor, frame: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat?site=demo", served.base))
        .header("origin", &served.base)
        .json(&json!({"visitor": v.id, "token": v.token, "frame": frame}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn history(served: &Served, v: &Visitor) -> Vec<Value> {
    let r: Value = reqwest::Client::new()
        .get(format!(
            "{}/v1/chat?site=demo&visitor={}&token={}&after=0&wait=false",
            served.base, v.id, v.token
        ))
        .header("origin", &served.base)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["frames"][0]["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn error_of(answer: &Value) -> String {
    answer["frames"][0]["error"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_messages_are_refused_with_a_reason_and_hostile_ones_are_stored_as_text() {
    let served = Served::demo().await;
    let v = visitor(&served, "v_input_http");
    for (text, why) in [
        ("", "needs some text"),
        ("   \n ", "needs some text"),
        (&"x".repeat(4001)[..], "at most 4000 characters"),
        ("ring\u{7}", "control characters"),
    ] {
        let (status, answer) = frame(
            &served,
            &v,
            json!({"type": "say", "id": "m1", "text": text}),
        )
        .await;
        assert_eq!(status, 200);
        assert!(error_of(&answer).contains(why), "{text:?}: {answer}");
    }
    assert!(
        history(&served, &v).await.is_empty(),
        "nothing refused was stored"
    );

    // 100 KB: over the body limit, refused whole before it is read.
    let (status, answer) = frame(
        &served,
        &v,
        json!({"type": "say", "id": "m1", "text": "x".repeat(100_000)}),
    )
    .await;
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("larger than"),
        "{answer}"
    );

    // A bad id, an unknown frame, a wrong token, a body that is not UTF-8.
    let (_, answer) = frame(
        &served,
        &v,
        json!({"type": "say", "id": "<b>", "text": "hi"}),
    )
    .await;
    assert!(error_of(&answer).contains("message id"), "{answer}");
    let (status, answer) = frame(&served, &v, json!({"type": "format_disk"})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("format_disk"),
        "{answer}"
    );
    let wrong = Visitor {
        id: v.id.clone(),
        token: "forged".to_owned(),
    };
    let (status, _) = frame(
        &served,
        &wrong,
        json!({"type": "say", "id": "m1", "text": "hi"}),
    )
    .await;
    assert_eq!(status, 401, "a forged token speaks for nobody");
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat?site=demo", served.base))
        .header("origin", &served.base)
        .header("content-type", "application/json")
        .body(vec![b'{', 0xff, 0xfe, b'}'])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("malformed"), "{e}");
    assert!(history(&served, &v).await.is_empty());

    // Script and markup are stored and answered as the text they are.
    let hostile = "<script>window.__pwned=1</script><img src=x onerror=alert(1)>";
    let (_, answer) = frame(
        &served,
        &v,
        json!({"type": "say", "id": "m2", "text": hostile}),
    )
    .await;
    assert_eq!(answer["frames"][0]["type"], "said", "{answer}");
    let seen = history(&served, &v).await;
    assert!(seen.iter().any(|m| m["text"] == hostile), "{seen:?}");
    // A resend under the same id is stored once.
    frame(
        &served,
        &v,
        json!({"type": "say", "id": "m2", "text": hostile}),
    )
    .await;
    let seen = history(&served, &v).await;
    assert_eq!(seen.iter().filter(|m| m["text"] == hostile).count(), 1);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn over_the_socket_a_bad_chat_frame_gets_an_error_frame_and_the_socket_stays() {
    let served = Served::demo().await;
    let v = visitor(&served, "v_input_ws");
    let url = format!(
        "{}/v1/ws?site=demo&visitor={}&token={}&session=s_input",
        served.base.replace("http", "ws"),
        v.id,
        v.token
    );
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            url.as_str(),
        )
        .unwrap();
    request
        .headers_mut()
        .insert("origin", served.base.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::text(
        json!({"type": "say", "id": "m1", "text": ""}).to_string(),
    ))
    .await
    .unwrap();
    let answer = read(&mut ws).await;
    assert_eq!(answer["type"], "chat_error");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("needs some text"),
        "{answer}"
    );
    ws.send(Message::text(
        json!({"type": "say", "id": "m1", "text": "Do you ship to Canada?"}).to_string(),
    ))
    .await
    .unwrap();
    let mut said = false;
    let mut answered = false;
    for _ in 0..10 {
        let f = read(&mut ws).await;
        said |= f["type"] == "said" && f["id"] == "m1";
        answered |= f["type"] == "chat"
            && f["from"] == "ai"
            && f["text"].as_str().unwrap_or("").contains("Canada");
        if said && answered {
            break;
        }
    }
    assert!(
        said && answered,
        "the socket stayed open and the answer came down it"
    );
    served.stop().await;
}

async fn read(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

async fn upload(
    served: &Served,
    v: &Visitor,
    id: &str,
    name: &str,
    bytes: Vec<u8>,
) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!(
            "{}/v1/chat/files?site=demo&visitor={}&token={}&id={id}&name={name}",
            served.base, v.id, v.token
        ))
        .header("origin", &served.base)
        .header("content-type", "image/png") // a claim the server does not believe
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn files_are_judged_by_their_content_and_served_only_to_the_two_parties() {
    let served = Served::demo().await;
    let v = visitor(&served, "v_files");
    let (status, answer) = upload(&served, &v, "f1", "receipt.png", PNG.to_vec()).await;
    assert_eq!(
        (status, answer["frames"][0]["type"].as_str()),
        (200, Some("said")),
        "{answer}"
    );
    let message = history(&served, &v)
        .await
        .into_iter()
        .find(|m| m["file"].is_object())
        .expect("the file's message");
    assert_eq!(message["file"]["mime"], "image/png");
    assert_eq!(message["file"]["name"], "receipt.png");
    let file_id = message["file"]["id"].as_str().unwrap().to_owned();

    let fetch = |who: &Visitor| {
        reqwest::Client::new()
            .get(format!(
                "{}/v1/chat/files/{file_id}?site=demo&visitor={}&token={}",
                served.base, who.id, who.token
            ))
            .header("origin", &served.base)
            .send()
    };
    let mine = fetch(&v).await.unwrap();
    assert_eq!(mine.status(), 200);
    assert_eq!(mine.headers()["content-type"], "image/png");
    assert_eq!(mine.headers()["x-content-type-options"], "nosniff");
    assert!(
        mine.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    assert_eq!(mine.bytes().await.unwrap().as_ref(), PNG);
    let stranger = visitor(&served, "v_stranger");
    assert_eq!(
        fetch(&stranger).await.unwrap().status(),
        404,
        "another visitor never gets it"
    );

    // The conversation's person gets it through the admin API.
    let (admin, _) = served.signed_in().await;
    let list: Value = admin
        .get(format!("{}/api/v1/sites/demo/conversations", served.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let conv = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["visitor"] == "v_files")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let theirs = admin
        .get(format!(
            "{}/api/v1/sites/demo/conversations/{conv}/files/{file_id}",
            served.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), 200);
    assert_eq!(theirs.headers()["x-content-type-options"], "nosniff");

    // Wrong types, whatever their names and claims; too large; a large one within the limit.
    for (name, bytes) in [
        (
            "cat.png",
            b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>".to_vec(),
        ),
        (
            "page.png",
            b"<!DOCTYPE html><script>alert(1)</script>".to_vec(),
        ),
        (
            "tool.png",
            b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff".to_vec(),
        ),
    ] {
        let (status, answer) = upload(&served, &v, "f2", name, bytes).await;
        assert_eq!(status, 200);
        assert!(
            error_of(&answer).contains("not accepted"),
            "{name}: {answer}"
        );
    }
    let (status, answer) = upload(&served, &v, "f3", "huge.txt", vec![b'a'; 6 * 1024 * 1024]).await;
    assert_eq!(status, 413, "{answer}");
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.resize(1024 * 1024, b' ');
    let (status, answer) = upload(&served, &v, "f4", "order.pdf", pdf).await;
    assert_eq!(
        (status, answer["frames"][0]["type"].as_str()),
        (200, Some("said")),
        "1 MiB fits: {answer}"
    );
    let files: Vec<_> = history(&served, &v)
        .await
        .into_iter()
        .filter(|m| m["file"].is_object())
        .collect();
    assert_eq!(files.len(), 2, "only the accepted files were stored");
    served.stop().await;
}

async fn events(served: &Served, v: &Visitor, session: &str, events: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{}/v1/events?site=demo", served.base))
        .header("origin", &served.base)
        // A person's browser: a request with no user agent is taken for a bot.
        .header("user-agent", browser_support::HUMAN_UA)
        .json(&json!({"visitor": v.id, "token": v.token, "session": session, "events": events}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until the visitor's log holds an event of `kind` (the desk tells the engine apart from
/// the request that started or ended the conversation).
async fn logged(served: &Served, visitor: &str, kind: &str) {
    let site = SiteId::parse("demo").unwrap();
    let v = VisitorId::parse(visitor).unwrap();
    for _ in 0..100 {
        let log = served.db.insight.visitor_log(&site, &v, 200).await.unwrap();
        if log
            .iter()
            .any(|(_, b)| b.events.iter().any(|e| e.kind == kind))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {kind} event in the log of {visitor}");
}

/// A cart, then the pointer moving and leaving: the demo's cart-exit offer, unless something
/// holds it.
fn leaving(session: &str, n: u32) -> Value {
    json!([
        {"id": format!("{session}:{n}:1"), "type": "page", "t": 0, "url": "http://x/cart.html", "path": "/cart.html", "title": "Cart", "page_type": "cart", "referrer": ""},
        {"id": format!("{session}:{n}:2"), "type": "cart", "t": 0, "value": 129, "currency": "USD", "items": 2},
        {"id": format!("{session}:{n}:3"), "type": "activity", "t": 0},
        {"id": format!("{session}:{n}:4"), "type": "exit_intent", "t": 0},
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_fires_for_a_visitor_while_their_conversation_runs() {
    let served = Served::start_with(beckon_engine::Policy {
        holdout_percent: 0.0,
        ..beckon_engine::Policy::default()
    })
    .await;
    // The baseline: a visitor leaving with a full cart gets the offer.
    let free = visitor(&served, "v_no_chat");
    let answer = events(&served, &free, "s_no_chat", leaving("s_no_chat", 1)).await;
    assert_eq!(
        answer["interventions"][0]["rule"], "cart-exit-offer",
        "{answer}"
    );

    // One who is chatting does not, even with the chat minimised.
    let chatting = visitor(&served, "v_chatting");
    let arrived = events(&served, &chatting, "s_chatting", json!([
        {"id": "s_chatting:0:1", "type": "page", "t": 0, "url": "http://x/", "path": "/", "title": "Home", "page_type": "home", "referrer": ""}
    ]))
    .await;
    assert_eq!(arrived["accepted"], 1, "{arrived}");
    let (_, said) = frame(
        &served,
        &chatting,
        json!({"type": "say", "id": "m1", "text": "Do you ship to Canada?"}),
    )
    .await;
    assert_eq!(said["frames"][0]["type"], "said", "{said}");
    logged(&served, "v_chatting", "conversation_started").await;
    let answer = events(&served, &chatting, "s_chatting", leaving("s_chatting", 1)).await;
    assert_eq!(answer["accepted"], 4, "{answer}");
    assert_eq!(
        answer["interventions"],
        json!([]),
        "no offer over a running conversation"
    );
    let (_, ended) = frame(&served, &chatting, json!({"type": "chat_end"})).await;
    assert_eq!(
        ended["frames"][0]["conversation"]["status"], "closed",
        "{ended}"
    );
    logged(&served, "v_chatting", "conversation_ended").await;
    let answer = events(&served, &chatting, "s_chatting", leaving("s_chatting", 2)).await;
    assert_eq!(
        answer["interventions"][0]["rule"], "cart-exit-offer",
        "the conversation over, the visitor may be offered help again: {answer}"
    );

    // A page cannot claim the server's own conversation events.
    let forged = events(
        &served,
        &free,
        "s_no_chat",
        json!([{"id": "s_no_chat:9", "type": "conversation_started", "t": 0}]),
    )
    .await;
    assert!(
        forged["error"]
            .as_str()
            .unwrap_or("")
            .contains("server's own"),
        "{forged}"
    );
    served.stop().await;
}
