//! A forwarded request goes straight to the owner's internal address, never through a proxy
//! the process's environment names (`HTTP_PROXY`): the proxy would see the cluster's secret in
//! `x-beckon-forwarded` and the client's address with it.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use beckon_cluster::View;
use beckon_engine::Policy;
use beckon_server::Options;
use beckon_server::limits::Limits;
use beckon_store::Store;
use beckon_store::cluster::NodeLease;
use beckon_store_postgres::testing::Scratch;
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

fn view(me: &NodeLease, nodes: &[&NodeLease]) -> Arc<View> {
    Arc::new(View {
        me: me.clone(),
        nodes: nodes.iter().map(|n| (*n).clone()).collect(),
        changes: 1,
    })
}

/// Starts a clustered node on its own listener; returns its address and view sender.
async fn node(
    store: Arc<dyn Store>,
    name: &str,
) -> (String, beckon_server::AppState, watch::Sender<Arc<View>>) {
    let alone = NodeLease {
        name: name.to_owned(),
        address: String::new(),
        epoch: 0,
    };
    let (tx, rx) = watch::channel(view(&alone, &[&alone]));
    let server = beckon_server::start(
        store,
        Options {
            shards: 1,
            limits: Limits::unthrottled(),
            cluster: Some(rx),
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let state = server.state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(server.serve(listener, std::future::pending()));
    (address, state, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_requests_never_go_through_an_http_proxy() {
    // A proxy that records what reaches it.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    let seen: Arc<Mutex<Option<String>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = proxy.accept().await {
            let mut buf = vec![0u8; 16 * 1024];
            let n = conn.read(&mut buf).await.unwrap_or(0);
            *record.lock().unwrap() = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
            let _ = conn
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });

    let scratch = Scratch::new().await;
    let store: Arc<dyn Store> = Arc::new(scratch.migrated().await);
    install(
        store.as_ref(),
        &Site::new("shop", &cart_exit_rule("cart-exit"), Policy::default()),
    )
    .await;
    let (a_addr, _a, to_a) = node(store.clone(), "node-a").await;
    // The host's environment names a proxy (as many corporate hosts and containers do) when
    // node b starts.
    unsafe {
        std::env::set_var("HTTP_PROXY", format!("http://{proxy_addr}"));
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");
    }
    let (b_addr, b, to_b) = node(Arc::new(scratch.store().await), "node-b").await;
    unsafe {
        std::env::remove_var("HTTP_PROXY");
    }
    let la = NodeLease {
        name: "node-a".to_owned(),
        address: a_addr.clone(),
        epoch: 1,
    };
    let lb = NodeLease {
        name: "node-b".to_owned(),
        address: b_addr.clone(),
        epoch: 2,
    };
    to_a.send_replace(view(&la, &[&la, &lb]));
    to_b.send_replace(view(&lb, &[&la, &lb]));
    let both = [la.clone(), lb.clone()];
    let visitor = (0..)
        .map(|i| format!("v_proxy{i}"))
        .find(|v| beckon_cluster::rendezvous::owner("shop", v, &both) == Some(&la))
        .unwrap();
    let token = b.tokens.issue(
        &beckon_engine::SiteId::parse("shop").unwrap(),
        &beckon_engine::VisitorId::parse(&visitor).unwrap(),
    );

    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let body = json!({
        "site": "shop", "visitor": visitor, "token": token, "session": "s_proxy",
        "events": [{"id": "p1", "type": "activity"}],
    });
    let answer = client
        .post(format!("http://{b_addr}/v1/events?site=shop"))
        .header("origin", ORIGIN)
        .header("user-agent", CHROME)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let captured = seen.lock().unwrap().clone();
    scratch.drop().await;
    assert!(
        captured.is_none(),
        "a forwarded request (answered {status}) went to the HTTP proxy:\n{}",
        captured.unwrap_or_default()
    );
}
