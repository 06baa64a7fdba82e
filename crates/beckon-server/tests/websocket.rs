//! `GET /v1/ws` over a real socket: acknowledgements, interventions in answer to events and
//! pushed by the server's own timers, error frames, the origin check at upgrade, the close
//! codes, pings and the idle timeout, and the per-visitor socket limit.

mod gated;
mod raw_ws;
mod support;

use std::time::{Duration, Instant};

use beckon_engine::{Arm, Policy};
use beckon_server::limits::Limits;
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const SHOP: &str = "shop";

fn ids(frame: &Value) -> Vec<&str> {
    frame["ids"]
        .as_array()
        .unwrap_or_else(|| panic!("an ack: {frame}"))
        .iter()
        .map(|v| v.as_str().expect("an id"))
        .collect()
}

#[tokio::test]
async fn an_events_frame_is_acknowledged_with_its_ids_then_the_intervention_follows() {
    let server = TestServer::with_sites(&[Site::new(SHOP, DEMO_RULES, Policy::default())]).await;
    let visitor = server.treated(SHOP, "v_ws");
    let session = "s_ws";
    let mut ws = server.ws(ORIGIN, SHOP, &visitor, session).await;

    ws.send(&frame(vec![
        page("s_ws:1", "product", "/products/trail-shoe-x"),
        bare("s_ws:2", "activity"),
        cart("s_ws:3", 2, 98.0),
        bare("s_ws:4", "exit_intent"),
    ]))
    .await;
    let ack = ws.next().await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ids(&ack), ["s_ws:1", "s_ws:2", "s_ws:3", "s_ws:4"]);
    let shown = ws.next().await;
    assert_eq!(shown["type"], "intervention", "{shown}");
    assert_eq!(shown["rule"], "cart-exit-offer");
    assert_eq!(shown["message"]["type"], "offer");
    assert_eq!(
        shown["message"]["text"],
        "Before you go: 10% off the 2 items in your cart."
    );

    // Acknowledged means stored.
    assert_eq!(server.events(SHOP, session).await.len(), 4);
    let exposures = server.exposures(SHOP).await;
    assert_eq!(exposures.len(), 1);
    assert_eq!(exposures[0].id, shown["id"].as_str().unwrap());
    assert_eq!(exposures[0].arm, Arm::Treated);

    // A resend over the socket is acknowledged again and fires nothing.
    ws.send(&frame(vec![bare("s_ws:4", "exit_intent")])).await;
    let again = ws.next().await;
    assert_eq!(ids(&again), ["s_ws:4"]);
    assert_eq!(ws.next_within(Duration::from_millis(300)).await, None);
    ws.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_timer_pushes_the_intervention_without_any_further_frame() {
    let rules = rule(
        "product-dwell",
        r#"{ var = "time.on_page", op = "gte", value = 1 }"#,
        r#"pages = ["product"]"#,
    );
    let policy = Policy {
        arrival_grace: Duration::ZERO,
        ..Policy::default()
    };
    let server = TestServer::with_sites(&[Site::new(SHOP, &rules, policy)]).await;
    let visitor = server.treated(SHOP, "v_timer");
    let mut ws = server.ws(ORIGIN, SHOP, &visitor, "s_timer").await;

    let sent = Instant::now();
    ws.send(&frame(vec![
        page("s_timer:1", "product", "/products/tent"),
        bare("s_timer:2", "activity"),
    ]))
    .await;
    let ack = ws.next().await;
    assert_eq!(ids(&ack), ["s_timer:1", "s_timer:2"]);
    // Nothing else is sent: the server wakes the session itself once a second has passed.
    let pushed = ws
        .next_within(Duration::from_secs(5))
        .await
        .expect("the timer's intervention within 5 s");
    let waited = sent.elapsed();
    assert_eq!(pushed["type"], "intervention", "{pushed}");
    assert_eq!(pushed["rule"], "product-dwell");
    assert_eq!(pushed["message"]["text"], "product-dwell says hello");
    assert!(
        waited >= Duration::from_millis(900),
        "fired after {waited:?}, before the page had been seen for a second"
    );
    let exposures = server.exposures(SHOP).await;
    assert_eq!(exposures.len(), 1, "{exposures:?}");
    assert_eq!(exposures[0].id, pushed["id"].as_str().unwrap());
    ws.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_malformed_frame_gets_an_error_frame_and_the_socket_stays_usable() {
    let server = TestServer::with_sites(&[Site::new(SHOP, DEMO_RULES, Policy::default())]).await;
    let visitor = server.treated(SHOP, "v_bad");
    let session = "s_bad";
    let mut ws = server.ws(ORIGIN, SHOP, &visitor, session).await;

    let cases: [(String, &[&str]); 4] = [
        ("{not json".to_owned(), &["malformed frame"]),
        (
            json!({"type": "teleport"}).to_string(),
            &["malformed frame", "teleport"],
        ),
        (
            frame(vec![json!({"id": "s_bad:1", "type": "warp"})]).to_string(),
            &["events[0].type", "warp"],
        ),
        (
            frame(vec![
                page("s_bad:1", "product", "/p"),
                json!({"id": "s_bad:2", "type": "scroll", "depth": "deep"}),
            ])
            .to_string(),
            &["events[1].depth must be a number"],
        ),
    ];
    for (text, words) in cases {
        ws.send_text(text.clone()).await;
        let reply = ws.next().await;
        assert_eq!(reply["type"], "error", "{text}: {reply}");
        let error = reply["error"].as_str().expect("an error text");
        for w in words {
            assert!(error.contains(w), "{text}: {error:?} should name {w:?}");
        }
    }
    assert!(server.events(SHOP, session).await.is_empty());

    // The same socket still works.
    ws.send(&frame(vec![page("s_bad:1", "product", "/p")]))
        .await;
    let ack = ws.next().await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ids(&ack), ["s_bad:1"]);
    assert_eq!(server.events(SHOP, session).await.len(), 1);
    ws.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_disallowed_origin_or_unknown_site_is_refused_at_upgrade() {
    let server = TestServer::with_sites(&[Site::new(SHOP, DEMO_RULES, Policy::default())]).await;
    let visitor = server.treated(SHOP, "v_evil");
    for (origin, site) in [("https://evil.example", SHOP), (ORIGIN, "nosuch")] {
        match server.try_ws(origin, site, &visitor, "s_evil").await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), StatusCode::FORBIDDEN, "{origin} {site}");
                let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or(b""))
                    .expect("a JSON error body");
                assert!(body["error"].is_string(), "{body}");
            }
            Err(e) => panic!("{origin} {site}: refused, but not with an HTTP answer: {e}"),
            Ok(_) => panic!("{origin} {site}: the upgrade was accepted"),
        }
    }
    // The allowed origin upgrades.
    server
        .ws(ORIGIN, SHOP, &visitor, "s_evil")
        .await
        .close()
        .await;
    server.shutdown().await;
}

/// A raw client socket: the tests of close codes send frames the widget never would.
type Raw = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `/v1/ws` for `visitor` as desktop Chrome from the allowed origin.
async fn raw(server: &TestServer, visitor: &str, session: &str) -> Raw {
    raw_at(&server.base, &server.token(SHOP, visitor), visitor, session).await
}

/// [`raw`] on the server at `base` (`http://127.0.0.1:PORT`), presenting `token`.
async fn raw_at(base: &str, token: &str, visitor: &str, session: &str) -> Raw {
    let url = format!(
        "{}/v1/ws?site={SHOP}&visitor={visitor}&token={token}&session={session}",
        base.replacen("http://", "ws://", 1)
    );
    let mut request = url.into_client_request().expect("a WebSocket request");
    let h = request.headers_mut();
    h.insert("origin", ORIGIN.parse().expect("header value"));
    h.insert("user-agent", CHROME.parse().expect("header value"));
    let (stream, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the upgrade is accepted");
    stream
}

/// Sends an events frame and waits for its ack: the server is serving this socket.
async fn round_trip(ws: &mut Raw, id: &str) {
    send_page(ws, id).await;
    let reply = next_json(ws).await;
    assert_eq!(reply["type"], "ack", "{reply}");
}

/// Sends an events frame holding one page view.
async fn send_page(ws: &mut Raw, id: &str) {
    let text = frame(vec![page(id, "home", "/")]).to_string();
    ws.send(Message::Text(text.into())).await.expect("sent");
}

/// The next JSON frame, pings and pongs skipped.
async fn next_json(ws: &mut Raw) -> Value {
    loop {
        match next_message(ws).await {
            Message::Text(t) => return serde_json::from_str(&t).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a JSON frame, got {other:?}"),
        }
    }
}

async fn next_message(ws: &mut Raw) -> Message {
    tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("a message within the bound")
        .expect("the socket is open")
        .expect("no socket error")
}

/// Reads until the server's close frame and returns its code, failing if the socket ends
/// without one or a text frame comes first.
async fn close_code(ws: &mut Raw) -> u16 {
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("the server closes the socket within the bound");
        match msg {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code.into(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// Limits for the socket tests: no rates, the rest as configured by `f`.
fn limits(f: impl FnOnce(&mut Limits)) -> Limits {
    let mut limits = Limits::unthrottled();
    f(&mut limits);
    limits
}

async fn shop_with(limits: Limits) -> TestServer {
    TestServer::with_limits(&[Site::new(SHOP, DEMO_RULES, Policy::default())], limits).await
}

#[tokio::test]
async fn a_binary_frame_closes_the_socket_with_1003() {
    let server = shop_with(Limits::unthrottled()).await;
    let mut ws = raw(&server, "v_bin", "s_bin").await;
    ws.send(Message::Binary(b"{}".to_vec().into()))
        .await
        .expect("sent");
    assert_eq!(close_code(&mut ws).await, 1003);
    server.shutdown().await;
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_closes_the_socket_with_1007() {
    let server = shop_with(Limits::unthrottled()).await;
    let mut ws = raw(&server, "v_utf", "s_utf").await;
    let bad = Frame::message(vec![b'"', 0xff, 0xfe, b'"'], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(bad)).await.expect("sent");
    assert_eq!(close_code(&mut ws).await, 1007);
    server.shutdown().await;
}

#[tokio::test]
async fn a_frame_over_64_kib_closes_the_socket_with_1009_and_one_of_64_kib_is_read() {
    let server = shop_with(Limits::unthrottled()).await;
    let mut ws = raw(&server, "v_big", "s_big").await;
    // Exactly the limit: read, and answered (it is not JSON) with an error frame.
    let at_limit = "x".repeat(64 * 1024);
    ws.send(Message::Text(at_limit.into())).await.expect("sent");
    match next_message(&mut ws).await {
        Message::Text(t) => assert!(t.contains("\"error\""), "{t}"),
        other => panic!("expected an error frame, got {other:?}"),
    }
    let over = "x".repeat(64 * 1024 + 1);
    ws.send(Message::Text(over.into())).await.expect("sent");
    assert_eq!(close_code(&mut ws).await, 1009);
    server.shutdown().await;
}

#[tokio::test]
async fn a_visitor_past_max_sockets_is_closed_with_1008_and_a_closed_socket_frees_its_slot() {
    let server = shop_with(limits(|l| l.max_sockets_per_visitor = 2)).await;
    let mut first = raw(&server, "v_tabs", "s_tabs").await;
    round_trip(&mut first, "s_tabs:1").await;
    let mut second = raw(&server, "v_tabs", "s_tabs").await;
    round_trip(&mut second, "s_tabs:2").await;
    // Another visitor is not counted against this one.
    let mut other = raw(&server, "v_other", "s_other").await;
    round_trip(&mut other, "s_other:1").await;

    let mut third = raw(&server, "v_tabs", "s_tabs").await;
    assert_eq!(close_code(&mut third).await, 1008);

    // Closing a tab frees its slot: once the server has answered the close, a new socket
    // for the visitor is served.
    first.close(None).await.expect("close sent");
    while let Some(Ok(_)) = first.next().await {}
    let mut again = raw(&server, "v_tabs", "s_tabs").await;
    round_trip(&mut again, "s_tabs:3").await;
    round_trip(&mut second, "s_tabs:4").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_node_at_max_sockets_refuses_an_upgrade_with_503_until_a_socket_closes() {
    let server = shop_with(limits(|l| l.max_sockets = 2)).await;
    let mut first = raw(&server, "v_n1", "s_n1").await;
    round_trip(&mut first, "s_n1:1").await;
    let mut second = raw(&server, "v_n2", "s_n2").await;
    round_trip(&mut second, "s_n2:1").await;

    // A third visitor: refused before the upgrade, told when to come back.
    match server.try_ws(ORIGIN, SHOP, "v_n3", "s_n3").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert!(
                response.headers().contains_key("retry-after"),
                "{:?}",
                response.headers()
            );
        }
        Err(e) => panic!("expected a 503, got {e}"),
        Ok(_) => panic!("a third socket was upgraded past max_sockets = 2"),
    }

    // A socket that closes gives its slot back, and the next visitor is served.
    first.close(None).await.expect("close sent");
    while let Some(Ok(_)) = first.next().await {}
    let mut third = raw(&server, "v_n3", "s_n3").await;
    round_trip(&mut third, "s_n3:1").await;
    round_trip(&mut second, "s_n2:2").await;
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_open_sockets_with_1001() {
    let server = shop_with(Limits::unthrottled()).await;
    let mut ws = raw(&server, "v_down", "s_down").await;
    round_trip(&mut ws, "s_down:1").await;
    let (code, ()) = tokio::join!(close_code(&mut ws), server.shutdown());
    assert_eq!(code, 1001);
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed_and_one_that_answers_stays() {
    let server = shop_with(limits(|l| {
        l.ws_ping = Duration::from_millis(100);
        l.ws_idle_timeout = Duration::from_millis(400);
    }))
    .await;
    let mut alive = raw(&server, "v_alive", "s_alive").await;
    round_trip(&mut alive, "s_alive:1").await;
    // `alive` is read all along, so its client answers every ping with a pong; it sends
    // nothing else.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        let mut pings = 0;
        loop {
            tokio::select! {
                _ = &mut stopped => return (alive, pings),
                msg = alive.next() => match msg {
                    Some(Ok(Message::Ping(_))) => pings += 1,
                    other => panic!("the answering socket got {other:?}"),
                },
            }
        }
    });
    // `silent` is opened after `alive` and never answers a ping: a hand-written client that
    // reads without replying.
    let addr = server.base.trim_start_matches("http://").to_owned();
    let token = server.token(SHOP, "v_silent");
    let silent = tokio::task::spawn_blocking(move || {
        let path = format!("/v1/ws?site={SHOP}&visitor=v_silent&token={token}&session=s_silent");
        let mut s = raw_ws::open(&addr, &path, ORIGIN, CHROME, PATIENCE);
        let mut pings = 0;
        loop {
            match raw_ws::read(&mut s) {
                raw_ws::Frame::Ping => pings += 1,
                raw_ws::Frame::Close(code) => return (code, pings),
                other => panic!("the silent socket got {other:?}"),
            }
        }
    });
    // It is pinged, does not answer, and is closed once silent for the idle timeout.
    let (code, pings) = silent.await.expect("the silent client did not panic");
    assert_eq!(code, 1000, "an idle socket is closed normally");
    assert!(
        pings >= 1,
        "the silent socket was pinged before it was closed"
    );
    // `alive` has been silent but for pongs at least as long, and is still served.
    stop.send(()).expect("the reader runs");
    let (mut alive, pings) = reader.await.expect("the reader did not panic");
    assert!(pings >= 1, "the answering socket was pinged");
    round_trip(&mut alive, "s_alive:2").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_batch_shed_by_an_overloaded_shard_closes_the_socket_with_1013() {
    use beckon_engine::hash::fnv1a64;
    use beckon_server::shard::MAX_READS;
    let server = gated::GatedServer::start(
        &[Site::new(SHOP, DEMO_RULES, Policy::default())],
        Limits::unthrottled(),
    )
    .await;
    let token = |v: &str| gated_token(&server, v);
    // Storage hangs. The shard goes on serving, but each new visitor needs a read, and the
    // reads pile up to the shard's bound.
    server.store.close_gate();
    let mut waiting = raw_at(&server.base, &token("v_busy"), "v_busy", "s_busy").await;
    send_page(&mut waiting, "s_busy:1").await;
    let shard_of = |v: &str| fnv1a64(v) % 2;
    let same_shard: Vec<String> = (0..)
        .map(|i| format!("v_fill{i}"))
        .filter(|v| shard_of(v) == shard_of("v_busy"))
        .take(MAX_READS - 1)
        .collect();
    let http = reqwest::Client::new();
    let mut posts = Vec::new();
    for v in &same_shard {
        let body = batch(
            SHOP,
            v,
            &format!("s_{v}"),
            vec![page(&format!("s_{v}:1"), "home", "/")],
        );
        let mut body = body;
        body["token"] = json!(token(v));
        posts.push(tokio::spawn(
            http.post(format!("{}/v1/events?site={SHOP}", server.base))
                .header("origin", ORIGIN)
                .header("user-agent", CHROME)
                .body(body.to_string())
                .send(),
        ));
    }
    eventually("the shard holds as many reads as it may", || async {
        server.store.parked() == MAX_READS
    })
    .await;
    // One more visitor on that shard: shed, and its socket closed with 1013.
    let extra = (0..)
        .map(|i| format!("v_extra{i}"))
        .find(|v| shard_of(v) == shard_of("v_busy"))
        .unwrap();
    let mut shed = raw_at(&server.base, &token(&extra), &extra, "s_extra").await;
    send_page(&mut shed, "s_extra:1").await;
    assert_eq!(close_code(&mut shed).await, 1013);
    // Once storage answers, the waiting batch is stored and acknowledged on its open socket.
    server.store.open_gate();
    let ack = next_json(&mut waiting).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["ids"], json!(["s_busy:1"]));
    for p in posts {
        assert_eq!(p.await.unwrap().unwrap().status(), StatusCode::ACCEPTED);
    }
    server.shutdown().await;
}

/// The token `server` issues to `visitor`.
fn gated_token(server: &gated::GatedServer, visitor: &str) -> String {
    server.state.tokens.issue(
        &beckon_engine::SiteId::parse(SHOP).unwrap(),
        &beckon_engine::VisitorId::parse(visitor).unwrap(),
    )
}

#[tokio::test]
async fn a_storage_error_gets_an_error_frame_and_the_socket_stays_open() {
    let server = gated::GatedServer::start(
        &[Site::new(SHOP, DEMO_RULES, Policy::default())],
        Limits::unthrottled(),
    )
    .await;
    let mut ws = raw_at(
        &server.base,
        &gated_token(&server, "v_disk"),
        "v_disk",
        "s_disk",
    )
    .await;
    server.store.fail_commits(true);
    send_page(&mut ws, "s_disk:1").await;
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("unavailable"),
        "{reply}"
    );
    // The same socket carries the resend once storage works again.
    server.store.fail_commits(false);
    round_trip(&mut ws, "s_disk:1").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_batch_over_the_sites_rate_gets_an_error_frame_and_the_socket_stays_open() {
    let server = shop_with(limits(|l| {
        l.per_site_per_second = 1;
        l.per_site_burst = 1;
    }))
    .await;
    let mut ws = raw(&server, "v_rate", "s_rate").await;
    round_trip(&mut ws, "s_rate:1").await;
    // Three more at once, over a rate of one a second: at least one is refused.
    for i in 2..=4 {
        send_page(&mut ws, &format!("s_rate:{i}")).await;
    }
    let mut refused = Vec::new();
    for _ in 2..=4 {
        let reply = next_json(&mut ws).await;
        if reply["type"] == "error" {
            refused.push(reply["error"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(reply["type"], "ack", "{reply}");
        }
    }
    assert!(!refused.is_empty(), "none of three batches was throttled");
    assert!(refused[0].contains("too many requests"), "{refused:?}");
    // Still open: a frame that is not JSON is answered.
    ws.send(Message::Text("{".into())).await.expect("sent");
    assert_eq!(next_json(&mut ws).await["type"], "error");
    server.shutdown().await;
}
