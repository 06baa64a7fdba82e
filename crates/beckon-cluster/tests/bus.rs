//! The bus between nodes against a real Redis (`BECKON_TEST_REDIS`, by default the CI
//! machine's at 127.0.0.1:6379): a note reaches the other nodes of the installation and no
//! one else, never its sender; and a node whose connection to Redis breaks says it is not
//! healthy, subscribes again once Redis is back, and is told to resync (it may have missed
//! notes). The break is made by a TCP proxy between the node and Redis that the test cuts.

use std::time::Duration;

use beckon_cluster::testing::CutProxy;
use beckon_cluster::{Bus, Heard};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

fn redis_url() -> String {
    std::env::var("BECKON_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A namespace no other run uses.
fn namespace() -> String {
    format!("test{:016x}", rand::random::<u64>())
}

/// The next note heard, skipping nothing; panics after `within`.
async fn next(rx: &mut broadcast::Receiver<Heard>, within: Duration) -> Heard {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("something heard in time")
        .expect("the bus is open")
}

/// Waits until `f` holds, checking every 50 ms; panics after `within`.
async fn until(what: &str, within: Duration, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const SOON: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_reaches_the_other_nodes_of_the_installation_and_only_them() {
    let ns = namespace();
    let a = Bus::connect(&redis_url(), &ns, "node-a").await.unwrap();
    let b = Bus::connect(&redis_url(), &ns, "node-b").await.unwrap();
    let other = Bus::connect(&redis_url(), &namespace(), "node-a")
        .await
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    for bus in [&a, &b, &other] {
        let (bus, stop) = (bus.clone(), stop.clone());
        tokio::spawn(async move { bus.run(stop).await });
    }
    until("every bus subscribed", SOON, || {
        a.healthy() && b.healthy() && other.healthy()
    })
    .await;
    let (mut at_a, mut at_b, mut at_other) = (a.listen(), b.listen(), other.listen());

    for n in 0..20 {
        a.publish("desk", &serde_json::json!({ "n": n }));
    }
    for n in 0..20 {
        match next(&mut at_b, SOON).await {
            Heard::Note(note) => {
                assert_eq!(
                    (note.topic.as_str(), note.from.as_str()),
                    ("desk", "node-a")
                );
                assert_eq!(note.body["n"], n, "in the order they were sent");
            }
            Heard::Resync => panic!("nothing was missed"),
        }
    }
    b.publish("sites", &serde_json::Value::Null);
    match next(&mut at_a, SOON).await {
        Heard::Note(note) => assert_eq!(
            (note.topic.as_str(), note.from.as_str()),
            ("sites", "node-b")
        ),
        Heard::Resync => panic!("nothing was missed"),
    }
    // node-a never hears its own notes, and another installation (even with a node of the
    // same name) hears nothing of this one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(at_a.try_recv().is_err(), "node-a heard only node-b's note");
    assert!(
        at_other.try_recv().is_err(),
        "another installation heard nothing"
    );
    assert_eq!(a.dropped() + b.dropped(), 0);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_redis_is_unhealthy_then_subscribes_again_and_resyncs() {
    let proxy = CutProxy::start(&redis_url()).await;
    let ns = namespace();
    let cut_off = Bus::connect(&proxy.url(), &ns, "node-a").await.unwrap();
    let other = Bus::connect(&redis_url(), &ns, "node-b").await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    for bus in [&cut_off, &other] {
        let (bus, stop) = (bus.clone(), stop.clone());
        tokio::spawn(async move { bus.run(stop).await });
    }
    until("both subscribed", SOON, || {
        cut_off.healthy() && other.healthy()
    })
    .await;
    let mut heard = cut_off.listen();

    proxy.cut().await;
    until("the cut-off node says it is unhealthy", SOON, || {
        !cut_off.healthy()
    })
    .await;
    // What is said meanwhile is missed.
    other.publish("desk", &"said while node-a was cut off");

    proxy.restore();
    until("the node is healthy again", Duration::from_secs(20), || {
        cut_off.healthy()
    })
    .await;
    match next(&mut heard, SOON).await {
        Heard::Resync => {}
        Heard::Note(n) => panic!("a note through a broken subscription: {n:?}"),
    }
    other.publish("desk", &"said once node-a was back");
    match next(&mut heard, SOON).await {
        Heard::Note(n) => assert_eq!(n.body, "said once node-a was back"),
        Heard::Resync => panic!("told to resync twice"),
    }
    stop.cancel();
}

#[tokio::test]
async fn a_redis_that_does_not_answer_is_refused_with_its_address_but_not_its_password() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    let e = Bus::connect(&url, "x", "n").await.unwrap_err().to_string();
    assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    let e = Bus::connect("http://127.0.0.1:1", "x", "n")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Redis URL"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_that_died_without_a_word_is_found_replaced_and_resynced() {
    let proxy = CutProxy::start(&redis_url()).await;
    let ns = namespace();
    let muted = Bus::connect(&proxy.url(), &ns, "node-a").await.unwrap();
    let other = Bus::connect(&redis_url(), &ns, "node-b").await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    for bus in [&muted, &other] {
        let (bus, stop) = (bus.clone(), stop.clone());
        tokio::spawn(async move { bus.run(stop).await });
    }
    until("both subscribed", SOON, || {
        muted.healthy() && other.healthy()
    })
    .await;
    let mut heard = muted.listen();
    other.publish("desk", &"before");
    match next(&mut heard, SOON).await {
        Heard::Note(n) => assert_eq!(n.body, "before"),
        Heard::Resync => panic!("nothing was missed yet"),
    }

    // Every connection open now goes silent, and neither end is told; new ones pass.
    proxy.mute();
    other.publish("desk", &"into the silence");
    // The ping finds the silence, the bus subscribes on a new connection, and says that notes
    // may have been missed.
    match next(&mut heard, SOON).await {
        Heard::Resync => {}
        Heard::Note(n) => panic!("a note through a silent connection: {n:?}"),
    }
    until("healthy on the new connection", SOON, || muted.healthy()).await;
    other.publish("desk", &"after");
    match next(&mut heard, SOON).await {
        Heard::Note(n) => assert_eq!(n.body, "after"),
        Heard::Resync => panic!("told to resync twice"),
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_its_sender_could_not_publish_makes_the_others_resync() {
    let proxy = CutProxy::start(&redis_url()).await;
    let ns = namespace();
    let sender = Bus::connect(&proxy.url(), &ns, "node-a").await.unwrap();
    let other = Bus::connect(&redis_url(), &ns, "node-b").await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    for bus in [&sender, &other] {
        let (bus, stop) = (bus.clone(), stop.clone());
        tokio::spawn(async move { bus.run(stop).await });
    }
    until("both subscribed", SOON, || {
        sender.healthy() && other.healthy()
    })
    .await;
    let mut heard = other.listen();

    proxy.cut().await;
    sender.publish("desk", &"lost");
    until("the note counted as lost", SOON, || sender.dropped() >= 1).await;
    proxy.restore();
    until("the sender is back", Duration::from_secs(20), || {
        sender.healthy()
    })
    .await;
    // Once the sender reaches Redis again, the others are told they may have missed some, and
    // its next note goes through.
    sender.publish("desk", &"next");
    let mut got = Vec::new();
    while got.len() < 2 {
        got.push(match next(&mut heard, SOON).await {
            Heard::Note(n) => format!("note {}", n.body),
            Heard::Resync => "resync".to_owned(),
        });
    }
    // (The resync may come first: the sender also checks every second.)
    got.sort();
    assert_eq!(got, ["note \"next\"", "resync"]);
    stop.cancel();
}
