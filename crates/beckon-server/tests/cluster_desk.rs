//! A live chat across two nodes on one PostgreSQL and one Redis, their views driven by hand:
//! the visitor's socket is on its owner, the site's desk (its board, its people, its open
//! conversations' clocks) on the other node. The visitor's frames are carried to the desk's
//! node, what the person there writes reaches the visitor's socket over the bus, exactly once;
//! and when the desk's node leaves the view, the other node picks the conversation up from the
//! store, with the person who held it, and the chat goes on.
//!
//! The bus carries the rest too: a rule saved on one node is in force on the other at once,
//! and a node cut off from Redis is not ready until it is back.
//!
//! Needs PostgreSQL (`BECKON_TEST_POSTGRES`) and Redis (`BECKON_TEST_REDIS`, by default the CI
//! machine's at 127.0.0.1:6379).

mod support;

use std::sync::Arc;
use std::time::Duration;

use beckon_agent::desk::{AgentRef, Desk, NoContext, Update};
use beckon_cluster::{Bus, View};
use beckon_engine::{Policy, SiteId, VisitorId};
use beckon_server::Options;
use beckon_server::limits::Limits;
use beckon_store::Store;
use beckon_store::cluster::NodeLease;
use beckon_store::conversations::{Conversations, Status};
use beckon_store_postgres::testing::Scratch;
use serde_json::{Value, json};
use support::*;
use tokio::sync::watch;

fn redis_url() -> String {
    std::env::var("BECKON_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn view(me: &NodeLease, nodes: &[&NodeLease]) -> Arc<View> {
    Arc::new(View {
        me: me.clone(),
        nodes: nodes.iter().map(|n| (*n).clone()).collect(),
        changes: 1,
    })
}

/// A node with a desk and a bus, alone until its first view is sent.
struct Node {
    server: TestServer,
    conversations: Arc<dyn Conversations>,
    desk: Desk,
    bus: Bus,
    views: watch::Sender<Arc<View>>,
    lease: NodeLease,
}

async fn node(
    store: Arc<dyn Store>,
    conversations: Arc<dyn Conversations>,
    name: &str,
    epoch: u64,
    namespace: &str,
) -> Node {
    node_on(
        store,
        conversations,
        name,
        epoch,
        namespace,
        &redis_url(),
        None,
    )
    .await
}

/// [`node`], reaching Redis at `redis`; with `poll_sites`, asking the store for changed
/// sites that often (else the default).
async fn node_on(
    store: Arc<dyn Store>,
    conversations: Arc<dyn Conversations>,
    name: &str,
    epoch: u64,
    namespace: &str,
    redis: &str,
    poll_sites: Option<Duration>,
) -> Node {
    node_with(
        store,
        conversations,
        name,
        epoch,
        namespace,
        redis,
        poll_sites,
        Limits::unthrottled(),
    )
    .await
}

/// [`node_on`], with `limits`.
#[allow(clippy::too_many_arguments)]
async fn node_with(
    store: Arc<dyn Store>,
    conversations: Arc<dyn Conversations>,
    name: &str,
    epoch: u64,
    namespace: &str,
    redis: &str,
    poll_sites: Option<Duration>,
    limits: Limits,
) -> Node {
    let alone = NodeLease {
        name: name.to_owned(),
        address: String::new(),
        epoch: 0,
    };
    let (views, rx) = watch::channel(view(&alone, &[&alone]));
    let desk = Desk::new(
        conversations.clone(),
        Arc::new(NoContext),
        Arc::new(|| beckon_server::clock::Clock::System.now()),
    );
    let bus = Bus::connect(redis, namespace, name).await.unwrap();
    let server = TestServer::start_with(
        store,
        Options {
            shards: 2,
            limits,
            cluster: Some(rx),
            desk: Some(desk.clone()),
            bus: Some(bus.clone()),
            watch_sites: poll_sites.unwrap_or(beckon_server::sites::WATCH_EVERY),
            ..Options::default()
        },
    )
    .await;
    let lease = NodeLease {
        name: name.to_owned(),
        address: server.base.trim_start_matches("http://").to_owned(),
        epoch,
    };
    Node {
        server,
        conversations,
        desk,
        bus,
        views,
        lease,
    }
}

/// Reads frames until one satisfies `want`; fails the test if none does in time.
async fn until_frame(ws: &mut Ws, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.next_within(left).await {
            Some(f) if want(&f) => return f,
            Some(_) => continue,
            None => panic!("no {what} came"),
        }
    }
}

fn chat_text(f: &Value, from: &str, text: &str) -> bool {
    f["type"] == "chat" && f["from"] == from && f["text"] == text
}

/// Waits until `f` holds, checking every 50 ms; fails the test after [`PATIENCE`].
async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_on_the_desk_s_node_chats_with_a_visitor_whose_socket_is_on_another_and_the_chat_survives_the_desk_moving()
 {
    // The site's desk is on one node; the visitor is owned by the other, and their socket is
    // there.
    let Two {
        scratch,
        home,
        edge,
        both,
    } = two(Limits::unthrottled(), None).await;
    let (home, edge) = (&home, &edge);
    let pg = home.conversations.clone();
    let visitor = (0..)
        .map(|i| format!("v_chat{i}"))
        .find(|v| beckon_cluster::rendezvous::owner("shop", v, &both) == Some(&edge.lease))
        .unwrap();
    let shop = SiteId::parse("shop").unwrap();
    let ana = AgentRef {
        site: shop.clone(),
        user: 7,
        name: "Ana".to_owned(),
        supervisor: false,
    };
    home.desk.set_available(&ana, true).await.unwrap();
    let mut console = home.desk.watch_site(&shop);

    // 1. The visitor writes on the edge node's socket; the frame is carried to the desk.
    let mut ws = edge.server.ws(ORIGIN, "shop", &visitor, "s_chat").await;
    ws.send(&json!({"type": "say", "id": "m1", "text": "Where is my parcel?"}))
        .await;
    let said = until_frame(&mut ws, "said", |f| f["type"] == "said").await;
    assert_eq!(said["id"], "m1");
    ws.send(&json!({"type": "handoff"})).await;
    let c = loop {
        let c = pg
            .latest_conversation_of(&shop, &VisitorId::parse(&visitor).unwrap())
            .await
            .unwrap()
            .expect("the conversation is stored");
        if c.status == Status::Offered {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(c.assignee, Some(7), "offered to Ana, on the desk's board");
    assert!(
        edge.desk.board(&shop).people.is_empty(),
        "the edge node runs no board for the site"
    );

    // 2. Ana accepts and writes on the desk's node; the visitor's socket, on the other node,
    // hears it over the bus, once.
    home.desk.accept(&ana, &c.id).await.unwrap();
    home.desk
        .agent_say(&ana, &c.id, "a1".to_owned(), "Hi, I am Ana. Let me look.")
        .await
        .unwrap();
    let heard = until_frame(&mut ws, "Ana's message", |f| {
        chat_text(f, "agent", "Hi, I am Ana. Let me look.")
    })
    .await;
    assert_eq!(heard["name"], "Ana");
    // 3. The visitor answers on their socket; the console on the desk's node sees it.
    ws.send(&json!({"type": "say", "id": "m2", "text": "Thank you!"}))
        .await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let u = tokio::time::timeout_at(deadline, console.recv())
            .await
            .expect("the console hears the visitor")
            .unwrap();
        if let Update::Message { message, .. } = u
            && message.text == "Thank you!"
        {
            break;
        }
    }
    // Nothing was heard twice (once from the desk's node, once from its own).
    let mut agent_lines = 0;
    while let Some(f) = ws.next_within(Duration::from_millis(500)).await {
        if chat_text(&f, "agent", "Hi, I am Ana. Let me look.") {
            agent_lines += 1;
        }
    }
    assert_eq!(agent_lines, 0, "Ana's message reached the socket once");

    // 4. The desk's node leaves the view: the other node picks the site's desk up from the
    // store, with Ana holding the conversation; the desk's old node lets it go, and its
    // console's stream ends (it reconnects, to the new desk).
    edge.views.send_replace(view(&edge.lease, &[&edge.lease]));
    home.views.send_replace(view(&home.lease, &[&edge.lease]));
    until("the site's desk runs on the other node", || {
        edge.desk
            .board(&shop)
            .people
            .iter()
            .any(|p| p.user == 7 && p.holding == 1)
    })
    .await;
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Err(tokio::sync::broadcast::error::RecvError::Closed) = console.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the old desk's console stream ended");
    assert!(
        home.desk.board(&shop).people.is_empty(),
        "the old desk let the site go"
    );
    edge.desk
        .agent_say(&ana, &c.id, "a2".to_owned(), "Found it: it ships today.")
        .await
        .unwrap();
    until_frame(&mut ws, "Ana's message after the move", |f| {
        chat_text(f, "agent", "Found it: it ships today.")
    })
    .await;
    ws.send(&json!({"type": "say", "id": "m3", "text": "Great"}))
        .await;
    let said = until_frame(&mut ws, "said", |f| f["type"] == "said").await;
    assert_eq!(said["id"], "m3");
    let messages = pg.messages(&shop, &c.id, 0, 100).await.unwrap();
    let texts: Vec<&str> = messages.iter().map(|m| m.text.as_str()).collect();
    for t in [
        "Where is my parcel?",
        "Hi, I am Ana. Let me look.",
        "Thank you!",
        "Found it: it ships today.",
        "Great",
    ] {
        assert_eq!(
            texts.iter().filter(|x| **x == t).count(),
            1,
            "{t:?} stored once: {texts:?}"
        );
    }
    scratch.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_frame_to_a_desk_whose_node_does_not_answer_is_refused_with_a_chat_error() {
    let scratch = Scratch::new().await;
    let pg = Arc::new(scratch.migrated().await);
    let site = Site::new("shop", &cart_exit_rule("cart-exit"), Policy::default());
    install(pg.as_ref(), &site).await;
    let namespace = format!("test{:016x}", rand::random::<u64>());
    let a = node(pg.clone(), pg.clone(), "node-a", 1, &namespace).await;
    // A node that is in the view but does not answer (its port is closed).
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = NodeLease {
        name: "node-gone".to_owned(),
        address: closed.local_addr().unwrap().to_string(),
        epoch: 2,
    };
    drop(closed);
    // A name for the dead node that places the site's desk on it.
    let gone = (0..)
        .map(|i| NodeLease {
            name: format!("node-gone{i}"),
            ..gone.clone()
        })
        .find(|g| {
            beckon_cluster::rendezvous::owner("shop", "#desk", &[a.lease.clone(), g.clone()])
                == Some(g)
        })
        .unwrap();
    let nodes = [a.lease.clone(), gone.clone()];
    a.views
        .send_replace(view(&a.lease, &[&nodes[0], &nodes[1]]));
    let visitor = (0..)
        .map(|i| format!("v_lone{i}"))
        .find(|v| beckon_cluster::rendezvous::owner("shop", v, &nodes) == Some(&a.lease))
        .unwrap();
    let mut ws = a.server.ws(ORIGIN, "shop", &visitor, "s_lone").await;
    ws.send(&json!({"type": "say", "id": "m1", "text": "Hello?"}))
        .await;
    let e = until_frame(&mut ws, "a chat error", |f| f["type"] == "chat_error").await;
    assert_eq!(
        e["id"], "m1",
        "the message it concerns, so the tab sends it again"
    );
    assert_eq!(
        e["retry"], true,
        "nothing wrong with the frame: the tab sends it again"
    );
    assert!(e["error"].as_str().unwrap().contains("try again"), "{e}");
    assert!(
        !e["error"].as_str().unwrap().contains(&gone.address),
        "the node's address is not told: {e}"
    );
    scratch.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_saved_on_one_node_are_in_force_on_the_other_at_once() {
    // Neither node polls the store within the test: only the bus can tell them.
    let Two {
        scratch,
        home: a,
        edge: b,
        ..
    } = two(Limits::unthrottled(), Some(Duration::from_secs(3600))).await;
    let pg = a.server.store.clone();
    let before = b.server.sites.get("shop").unwrap().version();

    // Saved through node a (as the dashboard does): the store, a's engines, then the news.
    let changed = Site::new("shop", &cart_exit_rule("cart-exit-2"), Policy::default());
    install(pg.as_ref(), &changed).await;
    a.server.sites.refresh(pg.as_ref()).await.unwrap();
    beckon_server::news::sites_changed(Some(&a.bus));

    until("node b swapped in the new rules", || {
        let now = b.server.sites.get("shop").unwrap();
        now.version() > before && now.engine.rules().get("cart-exit-2").is_some()
    })
    .await;
    assert!(
        b.server
            .sites
            .get("shop")
            .unwrap()
            .engine
            .rules()
            .get("cart-exit")
            .is_none(),
        "the old rule is gone"
    );
    scratch.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_redis_is_not_ready_until_it_is_back() {
    let scratch = Scratch::new().await;
    let pg = Arc::new(scratch.migrated().await);
    install(
        pg.as_ref(),
        &Site::new("shop", &cart_exit_rule("r"), Policy::default()),
    )
    .await;
    let proxy = beckon_cluster::testing::CutProxy::start(&redis_url()).await;
    let namespace = format!("test{:016x}", rand::random::<u64>());
    let a = node_on(
        pg.clone(),
        pg.clone(),
        "node-a",
        1,
        &namespace,
        &proxy.url(),
        None,
    )
    .await;
    let ready = |a: &Node| {
        let http = a.server.http.clone();
        let url = a.server.url("/readyz");
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(ready(&a).await.0, reqwest::StatusCode::OK);

    proxy.cut().await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let refused = loop {
        let (status, body) = ready(&a).await;
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still ready without Redis"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        refused["error"].as_str().unwrap().contains("Redis"),
        "{refused}"
    );

    proxy.restore();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while ready(&a).await.0 != reqwest::StatusCode::OK {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready again once Redis was back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    scratch.drop().await;
}

/// Two nodes on one new database holding the shop (its rule `cart-exit`), each seeing both,
/// with `limits` and asking the store for changed sites every `poll_sites` (else the default);
/// the site's desk on `home`, the other `edge`.
struct Two {
    scratch: Scratch,
    home: Node,
    edge: Node,
    both: [NodeLease; 2],
}

async fn two(limits: Limits, poll_sites: Option<Duration>) -> Two {
    let scratch = Scratch::new().await;
    let pg = Arc::new(scratch.migrated().await);
    install(
        pg.as_ref(),
        &Site::new("shop", &cart_exit_rule("cart-exit"), Policy::default()),
    )
    .await;
    let namespace = format!("test{:016x}", rand::random::<u64>());
    let a = node_with(
        pg.clone(),
        pg.clone(),
        "node-a",
        1,
        &namespace,
        &redis_url(),
        poll_sites,
        limits.clone(),
    )
    .await;
    let pg_b = Arc::new(scratch.store().await);
    let b = node_with(
        pg_b.clone(),
        pg_b,
        "node-b",
        2,
        &namespace,
        &redis_url(),
        poll_sites,
        limits,
    )
    .await;
    let both = [a.lease.clone(), b.lease.clone()];
    for n in [&a, &b] {
        n.views.send_replace(view(&n.lease, &[&both[0], &both[1]]));
    }
    until("both buses subscribed", || {
        a.bus.healthy() && b.bus.healthy()
    })
    .await;
    let home = beckon_cluster::rendezvous::owner("shop", "#desk", &both)
        .unwrap()
        .clone();
    let (home, edge) = if home == a.lease { (a, b) } else { (b, a) };
    Two {
        scratch,
        home,
        edge,
        both,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carried_chat_frames_are_limited_per_visitor_address_not_per_carrying_node() {
    // One request a second from an address, five at once: three visitors each writing three
    // messages through the edge node are within their own bounds; were the carried frames
    // counted as the edge node's, the desk's node would refuse some.
    let limits = Limits {
        per_ip_per_second: 1,
        per_ip_burst: 5,
        ..Limits::unthrottled()
    };
    let Two {
        scratch,
        home: _home,
        edge,
        both,
    } = two(limits, None).await;
    let mut said = 0;
    for n in 0..3 {
        let visitor = (0..)
            .map(|i| format!("v_rate{n}x{i}"))
            .find(|v| beckon_cluster::rendezvous::owner("shop", v, &both) == Some(&edge.lease))
            .unwrap();
        let mut ws = edge.server.ws(ORIGIN, "shop", &visitor, "s_rate").await;
        for m in 0..3 {
            ws.send(&json!({"type": "say", "id": format!("m{m}"), "text": "hello"}))
                .await;
            let answer = until_frame(&mut ws, "an answer", |f| {
                f["type"] == "said" || f["type"] == "chat_error"
            })
            .await;
            assert_eq!(answer["type"], "said", "{answer}");
            said += 1;
        }
    }
    assert_eq!(said, 9);
    scratch.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_carried_to_a_node_that_is_no_longer_the_desk_is_refused_not_served() {
    let Two {
        scratch,
        home,
        edge,
        both,
    } = two(Limits::unthrottled(), None).await;
    let key = edge.server.store.server_key().await.unwrap();
    let secret = beckon_server::placement::Placement::new(None, &key)
        .secret()
        .to_owned();
    let visitor = (0..)
        .map(|i| format!("v_late{i}"))
        .find(|v| beckon_cluster::rendezvous::owner("shop", v, &both) == Some(&edge.lease))
        .unwrap();
    // What an in-flight frame looks like when it lands on the edge node after the view moved
    // the desk away from it: the nodes' secret, and a frame for a desk the edge does not run.
    let carried = |frame: Value| {
        edge.server
            .http
            .post(edge.server.url("/v1/internal/chat"))
            .header("x-beckon-forwarded", &secret)
            .json(&json!({"site": "shop", "visitor": visitor, "frame": frame}))
            .send()
    };
    let said = carried(json!({"type": "say", "id": "m1", "text": "Hello?"}))
        .await
        .unwrap();
    assert_eq!(said.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert!(said.headers().contains_key("retry-after"));
    assert!(
        edge.desk
            .board(&SiteId::parse("shop").unwrap())
            .people
            .is_empty()
            && pg_conversation(&edge, &visitor).await.is_none(),
        "nothing was opened on the node that is not the desk"
    );
    // Without the nodes' secret, the route answers nothing, and reads nothing.
    let bare = edge
        .server
        .http
        .post(edge.server.url("/v1/internal/chat"))
        .json(&json!({"site": "shop", "visitor": visitor, "frame": {"type": "handoff"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), reqwest::StatusCode::UNAUTHORIZED);
    // The desk's own node serves it.
    let served = home
        .server
        .http
        .post(home.server.url("/v1/internal/chat"))
        .header("x-beckon-forwarded", &secret)
        .json(&json!({"site": "shop", "visitor": visitor, "frame": {"type": "say", "id": "m1", "text": "Hello?"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), reqwest::StatusCode::OK);
    let frames: Value = served.json().await.unwrap();
    assert_eq!(frames["frames"][0]["type"], "said", "{frames}");
    scratch.drop().await;
}

async fn pg_conversation(
    node: &Node,
    visitor: &str,
) -> Option<beckon_store::conversations::Conversation> {
    node.conversations
        .latest_conversation_of(
            &SiteId::parse("shop").unwrap(),
            &VisitorId::parse(visitor).unwrap(),
        )
        .await
        .unwrap()
}
