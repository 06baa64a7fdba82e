//! Two nodes on one PostgreSQL database, their views of the cluster driven by hand, so that
//! each moment of a takeover happens in a known order: a request reaching the node that does
//! not own its visitor is forwarded to the owner (over HTTP, and a socket relayed); and a node
//! that lost a visitor without knowing it yet is refused by the store's fence, its client's
//! resend then served by the new owner, exactly once.

mod support;

use std::sync::Arc;

use beckon_cluster::View;
use beckon_engine::{Policy, SiteId, VisitorId};
use beckon_server::Options;
use beckon_server::limits::Limits;
use beckon_store::Store;
use beckon_store::cluster::NodeLease;
use beckon_store_postgres::testing::Scratch;
use reqwest::StatusCode;
use serde_json::json;
use support::*;
use tokio::sync::watch;

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
            limits: Limits::unthrottled(),
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

/// The keys of `visitor`'s logged events, in log order.
async fn logged(store: &dyn Store, visitor: &str) -> Vec<String> {
    let site = SiteId::parse("shop").unwrap();
    store
        .log(&site, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, b)| b.visitor.as_str() == visitor)
        .flat_map(|(_, b)| b.events.into_iter().map(|e| e.key))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_a_visitor_without_knowing_it_is_refused_and_the_owner_serves_the_resend()
{
    let scratch = Scratch::new().await;
    let store: Arc<dyn Store> = Arc::new(scratch.migrated().await);
    install(
        store.as_ref(),
        &Site::new("shop", &cart_exit_rule("cart-exit"), Policy::default()),
    )
    .await;
    let (a, to_a) = node(store.clone(), "node-a").await;
    let (b, to_b) = node(Arc::new(scratch.store().await), "node-b").await;
    let (la, lb) = (lease("node-a", &a, 1), lease("node-b", &b, 2));
    to_a.send_replace(view(&la, &[&la, &lb]));
    to_b.send_replace(view(&lb, &[&la, &lb]));
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
    assert_eq!(
        store.visitor_version(&site, &key(&visitor)).await.unwrap(),
        2
    );

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
        3
    );

    a.shutdown().await;
    b.shutdown().await;
    scratch.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_reaches_another_node_is_relayed_to_the_owner_and_closed_when_the_owner_changes()
 {
    let scratch = Scratch::new().await;
    let store: Arc<dyn Store> = Arc::new(scratch.migrated().await);
    install(
        store.as_ref(),
        &Site::new("shop", &cart_exit_rule("cart-exit"), Policy::default()),
    )
    .await;
    let (a, to_a) = node(store.clone(), "node-a").await;
    let (b, to_b) = node(Arc::new(scratch.store().await), "node-b").await;
    let (la, lb) = (lease("node-a", &a, 1), lease("node-b", &b, 2));
    to_a.send_replace(view(&la, &[&la, &lb]));
    to_b.send_replace(view(&lb, &[&la, &lb]));
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
