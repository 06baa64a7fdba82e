//! Two nodes on one PostgreSQL database, their views of the cluster driven by hand, so that
//! each moment of a takeover happens in a known order: a request reaching the node that does
//! not own its visitor is forwarded to the owner (over HTTP, and a socket relayed); and a node
//! that lost a visitor without knowing it yet is refused by the store's fence, its client's
//! resend then served by the new owner, exactly once. A node that relays a socket keeps the
//! edge's work for it: it pings the client and closes a silent one as a direct socket is
//! closed, tells the owner who the client is (so the owner limits clients, not nodes), and
//! counts the relay against its own `max_sockets`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use beckon_cluster::View;
use beckon_engine::{Policy, SiteId, VisitorId};
use beckon_server::Options;
use beckon_server::limits::Limits;
use beckon_store::Store;
use beckon_store::cluster::NodeLease;
use beckon_store_postgres::testing::Scratch;
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::json;
use support::*;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn lease(name: &str, server: &TestServer, epoch: u64) -> NodeLease {
    NodeLease {
        name: name.to_owned(),
        address: server.base.trim_start_matches("http://").to_owned(),
        epoch,
    }
}

fn view(me: &NodeLease, nodes: &[&NodeLease]) -> Arc<View> {
    Arc::new(View {
        me: me.clone(),
        nodes: nodes.iter().map(|n| (*n).clone()).collect(),
        changes: 1,
    })
}

/// A node on `store` whose views come from the returned sender; until the first view is
/// sent it sees itself alone, and serves everyone.
async fn node(store: Arc<dyn Store>, name: &str) -> (TestServer, watch::Sender<Arc<View>>) {
    node_with(store, name, Limits::unthrottled()).await
}

/// [`node`], with `limits`.
async fn node_with(
    store: Arc<dyn Store>,
    name: &str,
    limits: Limits,
) -> (TestServer, watch::Sender<Arc<View>>) {
    let alone = NodeLease {
        name: name.to_owned(),
        address: String::new(),
        epoch: 0,
    };
    let (tx, rx) = watch::channel(view(&alone, &[&alone]));
    let server = TestServer::start_with(
        store,
        Options {
            shards: 2,
            limits,
            cluster: Some(rx),
            ..Options::default()
        },
    )
    .await;
    (server, tx)
}

fn batch(visitor: &str, ids: &[&str]) -> serde_json::Value {
    json!({
        "site": "shop",
        "visitor": visitor,
        "session": "s_fence",
        "events": ids.iter().map(|id| json!({"id": id, "type": "activity"})).collect::<Vec<_>>(),
    })
}

/// The keys of `visitor`'s logged events, in log order (a timer's ticks left out).
async fn logged(store: &dyn Store, visitor: &str) -> Vec<String> {
    let site = SiteId::parse("shop").unwrap();
    store
        .log(&site, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, b)| b.visitor.as_str() == visitor)
        .flat_map(|(_, b)| b.events.into_iter().map(|e| e.key))
        .filter(|k| !k.starts_with("tick:"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_a_visitor_without_knowing_it_is_refused_and_the_owner_serves_the_resend()
{
    let Pair {
        scratch,
        store,
        a,
        b,
        to_a,
        to_b,
        la,
        lb,
    } = Pair::start(shop(), Limits::unthrottled(), Limits::unthrottled()).await;
    let both = [la.clone(), lb.clone()];
    let visitor = (0..)
        .map(|i| format!("v_fence{i}"))
        .find(|v| beckon_cluster::rendezvous::owner("shop", v, &both) == Some(&la))
        .unwrap();

    // Sent to b, decided by a, its owner.
    let first = b.post_events(&batch(&visitor, &["e1", "e2"])).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    assert_eq!(first.body["accepted"], 2);
    // (Both nodes run in this process, so they share one set of counters.)
    let forwarded = metric(&b, "beckon_forwarded_total{how=\"http\"}").await;
    assert!(forwarded >= 1.0, "the batch was forwarded");
    let key = |v: &str| VisitorId::parse(v).unwrap();
    let site = SiteId::parse("shop").unwrap();
    assert_eq!(
        store.visitor_version(&site, &key(&visitor)).await.unwrap(),
        1
    );

    // b comes to believe a is gone (a's lease lapsed in its view), while a, paused, still
    // believes it owns the visitor and keeps the state it had.
    to_b.send_replace(view(&lb, &[&lb]));
    let taken = b.post_events(&batch(&visitor, &["e3"])).await;
    assert_eq!(taken.status, StatusCode::ACCEPTED, "{}", taken.text);
    // b's takeover of a's visitors may have resumed this one before e3 came (its timers
    // re-armed with a tick, one write more); after e3, nothing more of it is pending.
    let taken_at = store.visitor_version(&site, &key(&visitor)).await.unwrap();
    assert!((2..=3).contains(&taken_at), "version {taken_at}");

    // a decides on its old state: the store refuses the write, whole.
    let stale_before = metric(&a, "beckon_stale_writes_total").await;
    let refused = a.post_events(&batch(&visitor, &["e4"])).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text
    );
    assert!(refused.headers.contains_key("retry-after"));
    assert!(metric(&a, "beckon_stale_writes_total").await > stale_before);
    assert_eq!(logged(store.as_ref(), &visitor).await, ["e1", "e2", "e3"]);

    // a learns it is out; the client's resend reaches b through a, and lands once.
    to_a.send_replace(view(&la, &[&lb]));
    let resent = a.post_events(&batch(&visitor, &["e4"])).await;
    assert_eq!(resent.status, StatusCode::ACCEPTED, "{}", resent.text);
    assert_eq!(resent.body["accepted"], 1);
    let again = b.post_events(&batch(&visitor, &["e4"])).await;
    assert_eq!(again.body["duplicates"], 1, "{}", again.text);
    assert_eq!(
        logged(store.as_ref(), &visitor).await,
        ["e1", "e2", "e3", "e4"]
    );
    assert_eq!(
        store.visitor_version(&site, &key(&visitor)).await.unwrap(),
        taken_at + 1
    );

    a.shutdown().await;
    b.shutdown().await;
    scratch.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_reaches_another_node_is_relayed_to_the_owner_and_closed_when_the_owner_changes()
 {
    let Pair {
        scratch,
        store,
        a,
        b,
        to_a,
        to_b,
        la,
        lb,
    } = Pair::start(shop(), Limits::unthrottled(), Limits::unthrottled()).await;
    let both = [la.clone(), lb.clone()];
    let visitor = (0..)
        .map(|i| format!("v_relay{i}"))
        .find(|v| beckon_cluster::rendezvous::owner("shop", v, &both) == Some(&la))
        .unwrap();

    // The socket opens on b; its frames are answered by a.
    let mut ws = b.ws(ORIGIN, "shop", &visitor, "s_relay").await;
    ws.send_text(
        json!({"type": "events", "events": [{"id": "w1", "type": "activity"}]}).to_string(),
    )
    .await;
    let ack = ws.next().await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(logged(store.as_ref(), &visitor).await, ["w1"]);
    assert!(metric(&b, "beckon_forwarded_total{how=\"socket\"}").await >= 1.0);

    // The visitor moves to b: a lets it go and closes its socket, which b relays to the client
    // as "reconnect".
    to_a.send_replace(view(&la, &[&lb]));
    let code = ws.close_code().await;
    assert_eq!(code, 1012, "the client is told to reconnect");

    to_b.send_replace(view(&lb, &[&lb]));
    a.shutdown().await;
    b.shutdown().await;
    scratch.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_socket_whose_client_went_silent_is_closed_like_a_direct_one() {
    let limits = Limits {
        ws_ping: Duration::from_millis(100),
        ws_idle_timeout: Duration::from_millis(400),
        max_sockets_per_visitor: 1,
        ..Limits::unthrottled()
    };
    let Pair {
        scratch,
        a,
        b,
        to_a: _to_a,
        to_b: _to_b,
        la,
        lb,
        ..
    } = Pair::start(shop(), limits.clone(), limits).await;
    let both = vec![la, lb];

    // Control: a socket straight to the owner whose client stops answering is closed by it,
    // and the visitor's slot is free again.
    let direct = owned_by_a(&both, "v_direct", 0);
    let mut silent = open(&a, &direct, "s_silent", None).await.unwrap();
    assert_eq!(
        try_batch(&mut silent, "d1", Duration::from_secs(5)).await,
        "ack"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await; // the client is gone: no reads
    let mut tab = open(&a, &direct, "s_tab", None).await.unwrap();
    assert_eq!(
        try_batch(&mut tab, "d2", Duration::from_secs(5)).await,
        "ack",
        "control: a direct silent socket is closed after the idle timeout"
    );
    drop((silent, tab));

    // The same through the relay on b.
    let relayed = owned_by_a(&both, "v_relayed", 0);
    let mut silent = open(&b, &relayed, "s_silent", None).await.unwrap();
    assert_eq!(
        try_batch(&mut silent, "r1", Duration::from_secs(5)).await,
        "ack"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await; // the client is gone: no reads
    let mut tab = open(&a, &relayed, "s_tab", None).await.unwrap();
    let answer = try_batch(&mut tab, "r2", Duration::from_secs(5)).await;
    // What the silent client would find if it came back: the relay never closed it.
    let relay_side = first_answer(&mut silent, Duration::from_millis(500)).await;
    a.shutdown().await;
    b.shutdown().await;
    scratch.drop().await;
    assert_eq!(
        answer, "ack",
        "the visitor's new socket after a relayed one went silent (relayed socket: {relay_side})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_sockets_are_limited_per_client_not_per_relaying_node() {
    let limits = Limits {
        per_ip_per_second: 1,
        per_ip_burst: 2,
        trusted_proxy_header: Some("x-forwarded-for".to_owned()),
        ..Limits::unthrottled()
    };
    let Pair {
        scratch,
        a,
        b,
        to_a: _to_a,
        to_b: _to_b,
        la,
        lb,
        ..
    } = Pair::start(shop(), limits.clone(), limits).await;
    let both = vec![la, lb];

    // Control: batches posted to b for a's visitors by three clients are forwarded with the
    // client's address, and each client is within its own rate at a.
    let mut http = Vec::new();
    for i in 0..3 {
        let visitor = owned_by_a(&both, "v_http", i);
        let body = json!({
            "site": "shop", "visitor": visitor, "token": b.token("shop", &visitor),
            "session": "s_http", "events": [{"id": "h1", "type": "activity"}],
        });
        let r = b
            .http
            .post(b.url("/v1/events?site=shop"))
            .header("origin", ORIGIN)
            .header("user-agent", CHROME)
            .header("content-type", "application/json")
            .header("x-forwarded-for", format!("203.0.113.{}", 10 + i))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        http.push(r.status().as_u16());
    }
    assert_eq!(
        http,
        [202, 202, 202],
        "control: forwarded HTTP is limited per client"
    );

    // Three clients, one socket each, all relayed by b to a.
    let mut answers = Vec::new();
    let mut keep = Vec::new();
    for i in 0..3 {
        let visitor = owned_by_a(&both, "v_ws", i);
        let ip = format!("198.51.100.{}", 10 + i);
        match open(&b, &visitor, "s_ws", Some(&ip)).await {
            Ok(mut ws) => {
                answers.push(try_batch(&mut ws, "w1", Duration::from_secs(5)).await);
                keep.push(ws);
            }
            Err(e) => answers.push(format!("refused {e}")),
        }
    }
    a.shutdown().await;
    b.shutdown().await;
    scratch.drop().await;
    assert_eq!(
        answers,
        ["ack", "ack", "ack"],
        "three clients, one socket each, relayed by one node"
    );
}

/// The counterpart of the test above: with the owner unthrottled and b limited as before, the
/// same three relayed sockets are all served (b limits them by the client's address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_sockets_are_served_when_only_the_relaying_node_limits() {
    let limited = Limits {
        per_ip_per_second: 1,
        per_ip_burst: 2,
        trusted_proxy_header: Some("x-forwarded-for".to_owned()),
        ..Limits::unthrottled()
    };
    let Pair {
        scratch,
        a,
        b,
        to_a: _to_a,
        to_b: _to_b,
        la,
        lb,
        ..
    } = Pair::start(shop(), Limits::unthrottled(), limited).await;
    let both = vec![la, lb];
    let mut answers = Vec::new();
    let mut keep = Vec::new();
    for i in 0..3 {
        let visitor = owned_by_a(&both, "v_ws", i);
        let ip = format!("198.51.100.{}", 10 + i);
        let mut ws = open(&b, &visitor, "s_ws", Some(&ip)).await.unwrap();
        answers.push(try_batch(&mut ws, "w1", Duration::from_secs(5)).await);
        keep.push(ws);
    }
    a.shutdown().await;
    b.shutdown().await;
    scratch.drop().await;
    assert_eq!(answers, ["ack", "ack", "ack"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_to_an_unreachable_owner_does_not_tell_the_client_its_address() {
    let scratch = Scratch::new().await;
    let store: Arc<dyn Store> = Arc::new(scratch.migrated().await);
    install(
        store.as_ref(),
        &Site::new("shop", &cart_exit_rule("cart-exit"), Policy::default()),
    )
    .await;
    let (b, to_b) = node(store.clone(), "node-b").await;
    // node-a's lease names an internal address where nothing listens (it died a moment ago).
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let internal = dead.local_addr().unwrap().to_string();
    drop(dead);
    let la = NodeLease {
        name: "node-a".to_owned(),
        address: internal.clone(),
        epoch: 1,
    };
    let lb = lease("node-b", &b, 2);
    to_b.send_replace(view(&lb, &[&la, &lb]));
    let both = vec![la, lb];
    let visitor = owned_by_a(&both, "v_dead", 0);
    let answer = b
        .post_events(&json!({
            "site": "shop", "visitor": visitor, "session": "s_dead",
            "events": [{"id": "x1", "type": "activity"}],
        }))
        .await;
    b.shutdown().await;
    scratch.drop().await;
    assert_eq!(answer.status.as_u16(), 503, "{}", answer.text);
    assert!(
        !answer.text.contains(&internal),
        "the client is told the owner's internal address: {}",
        answer.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_sockets_count_against_the_relaying_node_s_max_sockets() {
    // a, the owner, has room for many sockets; b, which relays, for one.
    let small = Limits {
        max_sockets: 1,
        ..Limits::unthrottled()
    };
    let Pair {
        scratch,
        a,
        b,
        to_a: _to_a,
        to_b: _to_b,
        la,
        lb,
        ..
    } = Pair::start(shop(), Limits::unthrottled(), small).await;
    let both = vec![la, lb];

    // Control: b serves one socket of its own, and refuses the second.
    let mine = (0..)
        .map(|i| format!("v_mine{i}"))
        .filter(|v| beckon_cluster::rendezvous::owner("shop", v, &both) == Some(&both[1]))
        .take(2)
        .collect::<Vec<_>>();
    let mut first = open(&b, &mine[0], "s_m", None).await.unwrap();
    assert_eq!(
        try_batch(&mut first, "m1", Duration::from_secs(5)).await,
        "ack"
    );
    let second = open(&b, &mine[1], "s_m", None).await;
    assert!(second.is_err(), "control: b holds at most one socket");
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // b relays sockets of a's visitors, every one of them live.
    let mut relayed = Vec::new();
    for i in 0..5 {
        let v = owned_by_a(&both, "v_far", i);
        let Ok(mut ws) = open(&b, &v, "s_far", None).await else {
            break;
        };
        if try_batch(&mut ws, "f1", Duration::from_secs(5)).await != "ack" {
            break;
        }
        relayed.push(ws);
    }
    let held = relayed.len();
    drop(relayed);
    a.shutdown().await;
    b.shutdown().await;
    scratch.drop().await;
    assert!(
        held <= 1,
        "b, allowed one socket, holds {held} live relayed sockets"
    );
}

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/v1/ws` on `server` for `visitor` (with its token), as a client at `client_ip`
/// (through the trusted proxy header) when given.
async fn open(
    server: &TestServer,
    visitor: &str,
    session: &str,
    client_ip: Option<&str>,
) -> Result<Stream, String> {
    let token = server.token("shop", visitor);
    let url = format!(
        "{}/v1/ws?site=shop&visitor={visitor}&token={token}&session={session}",
        server.base.replacen("http://", "ws://", 1)
    );
    let mut request = url.into_client_request().unwrap();
    let h = request.headers_mut();
    h.insert("origin", ORIGIN.parse().unwrap());
    h.insert("user-agent", CHROME.parse().unwrap());
    if let Some(ip) = client_ip {
        h.insert("x-forwarded-for", ip.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(s, _)| s)
        .map_err(|e| e.to_string())
}

/// Sends one batch and says what came back first: "ack", "close <code>", or "nothing".
async fn try_batch(ws: &mut Stream, id: &str, within: Duration) -> String {
    let frame = json!({"type": "events", "events": [{"id": id, "type": "activity"}]});
    if ws
        .send(Message::Text(frame.to_string().into()))
        .await
        .is_err()
    {
        return "send failed".to_owned();
    }
    first_answer(ws, within).await
}

async fn first_answer(ws: &mut Stream, within: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return "nothing".to_owned(),
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                return v["type"].as_str().unwrap_or("?").to_owned();
            }
            Ok(Some(Ok(Message::Close(f)))) => {
                return format!("close {}", f.map_or(0, |f| u16::from(f.code)));
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return format!("error {e}"),
            Ok(None) => return "ended".to_owned(),
        }
    }
}

/// The site most tests serve: the cart-exit rule, the default policy.
fn shop() -> Site {
    Site::new("shop", &cart_exit_rule("cart-exit"), Policy::default())
}

/// Two nodes on one new database holding `site`, each seeing both: `a` (`node-a`, epoch 1)
/// with `limits_a`, `b` (`node-b`, epoch 2) on a pool of its own with `limits_b`. Their views
/// go on while `to_a` and `to_b` are kept.
struct Pair {
    scratch: Scratch,
    store: Arc<dyn Store>,
    a: TestServer,
    b: TestServer,
    to_a: watch::Sender<Arc<View>>,
    to_b: watch::Sender<Arc<View>>,
    la: NodeLease,
    lb: NodeLease,
}

impl Pair {
    async fn start(site: Site, limits_a: Limits, limits_b: Limits) -> Pair {
        let scratch = Scratch::new().await;
        let store: Arc<dyn Store> = Arc::new(scratch.migrated().await);
        install(store.as_ref(), &site).await;
        let (a, to_a) = node_with(store.clone(), "node-a", limits_a).await;
        let (b, to_b) = node_with(Arc::new(scratch.store().await), "node-b", limits_b).await;
        let (la, lb) = (lease("node-a", &a, 1), lease("node-b", &b, 2));
        to_a.send_replace(view(&la, &[&la, &lb]));
        to_b.send_replace(view(&lb, &[&la, &lb]));
        Pair {
            scratch,
            store,
            a,
            b,
            to_a,
            to_b,
            la,
            lb,
        }
    }
}

/// The `skip`-th visitor named `prefix<n>` that the first of `both` owns.
fn owned_by_a(both: &[NodeLease], prefix: &str, skip: usize) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|v| beckon_cluster::rendezvous::owner("shop", v, both) == Some(&both[0]))
        .nth(skip)
        .unwrap()
}

/// The value of one metric line of `server`'s `/metrics` (0 when absent).
async fn metric(server: &TestServer, name: &str) -> f64 {
    let text = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
        .next()
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_conversion_that_reaches_another_node_is_decided_by_the_visitor_s_owner() {
    let Pair {
        scratch,
        store,
        a,
        b,
        to_a: _to_a,
        to_b: _to_b,
        la,
        lb,
    } = Pair::start(shop(), Limits::unthrottled(), Limits::unthrottled()).await;
    let both = [la.clone(), lb.clone()];
    let visitor = owned_by_a(&both, "v_backend", 0);

    // The visitor browses on a, its owner.
    let first = a.post_events(&batch(&visitor, &["e1"])).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);

    // The shop's backend reports the order; the load balancer sends it to b.
    let conversion = b
        .backend(
            "/v1/conversions",
            Some("Bearer sk_shop_secret"),
            &json!({"site": "shop", "visitor": visitor, "order_id": "o-1", "value": 10.0}),
        )
        .await;
    assert_eq!(
        conversion.status,
        StatusCode::ACCEPTED,
        "{}",
        conversion.text
    );

    // Nothing changed in the cluster; the visitor's next batch on a must be served.
    let stale_before = metric(&a, "beckon_stale_writes_total").await;
    let next = a.post_events(&batch(&visitor, &["e2"])).await;
    let stale = metric(&a, "beckon_stale_writes_total").await - stale_before;
    let decided_on_b = store
        .log(&SiteId::parse("shop").unwrap(), 0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, b)| b.visitor.as_str() == visitor)
        .map(|(_, b)| format!("{:?}", b.source))
        .collect::<Vec<_>>();
    a.shutdown().await;
    b.shutdown().await;
    scratch.drop().await;
    assert_eq!(
        next.status,
        StatusCode::ACCEPTED,
        "the owner's next batch after a conversion reported to another node \
         ({stale} stale writes; the visitor's log: {decided_on_b:?}): {}",
        next.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_that_takes_over_a_dead_node_s_visitors_re_arms_their_timers() {
    let policy = Policy {
        arrival_grace: Duration::ZERO,
        holdout_percent: 0.0,
        ..Policy::default()
    };
    let site = Site::new("shop", &checkout_hesitation("2s"), policy);
    let Pair {
        scratch,
        store,
        a,
        b,
        to_a,
        to_b,
        la,
        lb,
    } = Pair::start(site, Limits::unthrottled(), Limits::unthrottled()).await;
    let both = [la.clone(), lb.clone()];
    let (control, visitor) = (
        owned_by_a(&both, "v_takeover", 0),
        owned_by_a(&both, "v_takeover", 1),
    );
    let site = SiteId::parse("shop").unwrap();
    let fired_for = |v: String| {
        let store = store.clone();
        let site = site.clone();
        async move {
            store
                .exposures(&site)
                .await
                .unwrap()
                .into_iter()
                .filter(|x| x.visitor.as_str() == v)
                .count()
        }
    };

    // Control: with its owner alive, the hesitation fires 2 s after the checkout page.
    let landed = a
        .post_events(&json!({
            "site": "shop", "visitor": control, "session": "s_c",
            "events": [page("s_c:1", "checkout", "/checkout"), bare("s_c:2", "activity")],
        }))
        .await;
    assert_eq!(landed.status, StatusCode::ACCEPTED, "{}", landed.text);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        fired_for(control.clone()).await,
        1,
        "control: the rule fires on a live owner"
    );

    // A person lands on checkout on a, then does nothing: a's timer is set for 2 s.
    let landed = a
        .post_events(&json!({
            "site": "shop", "visitor": visitor, "session": "s_t",
            "events": [page("s_t:1", "checkout", "/checkout"), bare("s_t:2", "activity")],
        }))
        .await;
    assert_eq!(landed.status, StatusCode::ACCEPTED, "{}", landed.text);

    // a dies at once; b's view loses it and b owns the visitor.
    a.shutdown().await;
    drop(to_a);
    to_b.send_replace(view(&lb, &[&lb]));

    // Well past the 2 s hesitation.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let fired = fired_for(visitor.clone()).await;
    b.shutdown().await;
    scratch.drop().await;
    assert_eq!(
        fired, 1,
        "the hesitation rule fired for the dead node's visitor on its new owner"
    );
}
