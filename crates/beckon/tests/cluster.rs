//! Three `beckon serve` nodes on one PostgreSQL database and one Redis, visitors browsing
//! through whichever node a load balancer that knows nothing of visitors hands them, a live
//! chat between a visitor and a person of the site, one node paused past its lease and woken
//! again, and one node killed with SIGKILL in the middle of it all. "Several nodes" in
//! `ARCHITECTURE.md` promises that every visitor is served by its owner (a request reaching
//! another node is forwarded there), that a dead node's visitors move to the others once its
//! lease lapses, and that the store's fences keep a visitor's log whole through the move, so
//! that a node that lost its visitors cannot write over their new owners; so the promises the
//! single node keeps across kills (`crash.rs`: an acknowledged event is in the log exactly
//! once, the guardrails count what was durably decided) must hold across the cluster too. It
//! promises as well that a site's desk runs on one node, which the chat's frames and the
//! person's calls reach from any node, and that when that node dies another picks the open
//! conversations up from the database: the chat goes on.
//!
//! The node killed is the one the site's desk runs on, so the chat crosses its death: the
//! visitor is owned by a survivor and their socket is on the other survivor (relayed), and the
//! person's calls go through a node that does not run the desk, before the kill and after.
//!
//! A killed node writes nothing, so the stale writer is made another way: before the kill, a
//! survivor is paused (SIGSTOP) past its lease with batches of its visitors on their way
//! through it, and its visitors are served by their new owners meanwhile; woken (SIGCONT), it
//! writes what it had decided on with the versions it had read, and the store must refuse
//! those writes.
//!
//! The clients and the checks are `process_support::visitors` (shared with `crash.rs`), the
//! chat's two sides `process_support::chat`, the visitors that wait for the paused node and
//! its pauses `process_support::stale`, the nodes' leases, live list and metrics
//! `process_support::nodes`.
//!
//! Needs PostgreSQL (`BECKON_TEST_POSTGRES`, by default the CI machine's) and Redis
//! (`BECKON_TEST_REDIS`, by default 127.0.0.1:6379): each run gets a scratch schema of its
//! own, dropped when the test passes, and a bus channel of its own.

mod process_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use beckon_cluster::NodeLease;
use beckon_engine::SiteId;
use beckon_store::conversations::{ConversationId, Conversations};
use beckon_store_postgres::testing::Scratch;
use process_support::chat::{
    AfterTheKill, ChatSocket, Person, add_agent, chat_after_the_kill, is_line, person_sees,
    visitor_owned_by,
};
use process_support::nodes::{leases, live_nodes_become, metric, scrape};
use process_support::stale::{Pausing, check_logged_once, pause_until_a_stale_write_is_refused};
use process_support::visitors::{
    Client, LIMITS, Log, POLICY, Stats, check_promises, finish_and_resend, spawn_visitors,
};
use process_support::*;
use reqwest::Method;
use serde_json::json;
use tokio::sync::watch;

/// Visitors browsing at once, each its own client task.
const VISITORS: usize = 30;
/// The seed of the visitors' choices, unless `BECKON_CLUSTER_SEED` gives another.
const SEED: u64 = 0xc105_7e42_2026;
/// The nodes, by name.
const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
/// The node killed with SIGKILL: the site's desk runs there (the rendezvous of the site's
/// desk over these three names places it on node-b, which the test checks), so the chat
/// crosses its death. It is not the first node, which started alone and migrated.
const VICTIM: usize = 1;
/// The node paused past its lease before the kill: it survives the kill, and after it runs
/// the site's desk (node-c again, by the rendezvous of the two survivors), so the desk's new
/// node is one that was once a stale writer.
const PAUSED: usize = 2;
/// The survivor that owns the chat's visitor; their socket is opened on the other survivor,
/// [`PAUSED`], and relayed here.
const OWNER: usize = 0;
/// Each node's lease and heartbeat: short, so that the test sees a dead node's visitors move.
const LEASE: Duration = Duration::from_secs(2);
const HEARTBEAT: Duration = Duration::from_millis(250);
/// The earliest the victim is killed after the visitors start. Visitors arrive over the first
/// three seconds (see `process_support::visitors`); the pause and the chat's start come
/// first, and take longer than this.
const BEFORE_KILL: Duration = Duration::from_millis(2_000);
/// How long the visitors browse on the two survivors after the kill: past the lease, so that
/// the dead node's visitors are served by their new owners for a while.
const AFTER_KILL: Duration = Duration::from_millis(5_000);
/// The longest a dead node's visitor may go unserved: the lease, a few heartbeats for the
/// survivors to see it lapse, and the visitor's reload from the store.
const FAILOVER_BOUND: Duration = Duration::from_millis(6_000);
/// Visitors that wait for the paused node (`process_support::stale`).
const LAGGING: usize = 8;
/// The most times the node is paused to see one of its writes refused: the pause may find
/// nothing decided on and not yet written, and what waited unread the node may take in after
/// it has seen its own lease lapse (then it writes nothing stale), so one pause does not
/// always make a stale writer.
const PAUSES: usize = 5;
/// The chat's lines, in order: each its sender's id for it (the visitor's tab's, or the
/// person's console's) and its text.
const M1: (&str, &str) = ("m1", "Where is my parcel?");
const A1: (&str, &str) = ("a1", "Hi, I am Ana. Let me look.");
const M2: (&str, &str) = ("m2", "Thank you!");
const A2: (&str, &str) = ("a2", "Found it: it ships today.");
const M3: (&str, &str) = ("m3", "Great, thanks");
/// The person.
const EMAIL: &str = "ana@shop.example";
const PASSWORD: &str = "a long enough passphrase";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_run_loses_its_visitors_and_its_desk_to_the_others_and_every_promise_holds()
 {
    let began = Instant::now();
    let seed = std::env::var("BECKON_CLUSTER_SEED")
        .ok()
        .and_then(|s| match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => s.parse().ok(),
        })
        .unwrap_or(SEED);
    let scratch = Scratch::new().await;
    let store = scratch.store().await;
    let dir = tempfile::tempdir().unwrap();
    let settings: Vec<NodeSettings> = NODES
        .iter()
        .zip(free_addrs(NODES.len()))
        .map(|(name, addr)| NodeSettings {
            name: (*name).to_owned(),
            addr,
            lease: LEASE,
            heartbeat: HEARTBEAT,
        })
        .collect();
    // One after another: the first migrates the empty schema.
    let mut nodes = Vec::new();
    let mut configs = Vec::new();
    for node in &settings {
        let config = write_cluster_config(dir.path(), node, &scratch.url(), POLICY, LIMITS);
        nodes.push(Beckon::start(&config).await);
        configs.push(config);
    }
    let bases: Vec<String> = nodes.iter().map(Beckon::base).collect();
    let addrs: Vec<SocketAddr> = settings.iter().map(|n| n.addr).collect();

    // 1. Every node is live before the visitors start, and the site's desk is on the node
    // that will be killed.
    let live = live_nodes_become(&store, NODES.len()).await;
    let names: Vec<&str> = live.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, NODES, "the live nodes");
    for (lease, node) in live.iter().zip(&settings) {
        assert_eq!(
            lease.address,
            node.addr.to_string(),
            "{}'s address",
            lease.name
        );
    }
    let all = leases(&settings, |_| true);
    let survivors = leases(&settings, |i| i != VICTIM);
    assert_eq!(desk_of(&all), NODES[VICTIM], "the site's desk's node");
    assert_eq!(
        desk_of(&survivors),
        NODES[PAUSED],
        "the site's desk's node after the kill"
    );
    // The person of the site, an agent, signs in.
    add_agent(&configs[0], EMAIL, "Ana", PASSWORD).await;
    let person = Person::sign_in(&bases[OWNER], EMAIL, PASSWORD).await;

    // 2. The visitors browse through random nodes.
    let (base_tx, base_rx) = watch::channel(bases.clone());
    let browsing = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    let clients = spawn_visitors(VISITORS, seed, &base_rx, &browsing);

    // 3. A node is paused past its lease and woken; what waited for it, decided on the
    // versions it had read, is refused.
    let pause = pause_until_a_stale_write_is_refused(
        &nodes,
        &settings,
        Pausing {
            node: PAUSED,
            visitors: LAGGING,
            at_most: PAUSES,
        },
        &base_tx,
        &store,
    )
    .await;

    // 4. A live chat, before the kill: the visitor is owned by one node and their socket is
    // on another (relayed), the person calls through a node that does not run the desk, and
    // the desk's node carries it all.
    live_nodes_become(&store, NODES.len()).await;
    let (visitor, token) = visitor_owned_by(&bases[OWNER], NODES[OWNER], &all, HEARTBEAT).await;
    let mut socket = ChatSocket::open(addrs[PAUSED], &visitor, &token, "s_chat").await;
    let through = &bases[PAUSED];
    person
        .call_until(
            200,
            PATIENCE,
            Method::PUT,
            through,
            "desk/availability",
            Some(json!({"available": true})),
        )
        .await
        .unwrap_or_else(|e| panic!("the person comes online: {e}"));
    socket
        .say(M1.0, M1.1, PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("the visitor's first message: {e}"));
    socket.send(json!({"type": "handoff"})).await;
    let waiting = socket
        .until(PATIENCE, |f| {
            f["type"] == "chat_state" && f["conversation"]["status"] == "waiting"
        })
        .await
        .unwrap_or_else(|e| panic!("the visitor waits for a person: {e:?}"));
    let conversation = waiting["conversation"]["id"]
        .as_str()
        .expect("a conversation")
        .to_owned();
    let path = format!("conversations/{conversation}");
    person
        .call_until(
            200,
            PATIENCE,
            Method::POST,
            through,
            &format!("{path}/accept"),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("the person accepts: {e}"));
    person
        .call_until(
            201,
            PATIENCE,
            Method::POST,
            through,
            &format!("{path}/messages"),
            Some(json!({"id": A1.0, "text": A1.1})),
        )
        .await
        .unwrap_or_else(|e| panic!("the person writes: {e}"));
    socket
        .until(PATIENCE, |f| is_line(f, "agent", A1.1))
        .await
        .unwrap_or_else(|e| panic!("the visitor hears the person: {e:?}"));
    socket
        .say(M2.0, M2.1, PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("the visitor answers: {e}"));
    person_sees(&person, through, &path, M2.1).await;

    // 5. The desk's node dies without a word, and the load balancer stops sending to it.
    tokio::time::sleep_until((started + BEFORE_KILL).into()).await;
    let victim_metrics = scrape(&bases[VICTIM]).await;
    let victim = nodes.remove(VICTIM);
    let killed_at = Instant::now();
    victim.sigkill().await;
    base_tx.send_replace(nodes.iter().map(Beckon::base).collect());
    // The chat goes on through the survivors while the test watches the lease lapse.
    let after_kill = tokio::spawn(chat_after_the_kill(
        person,
        socket,
        bases[OWNER].clone(),
        path.clone(),
        killed_at,
        AfterTheKill {
            before: A1.1,
            written: A2,
            answer: M3,
            socket_on: NODES[PAUSED],
            relayed_to: NODES[OWNER],
        },
    ));
    let survivors_seen = live_nodes_become(&store, NODES.len() - 1).await;
    let lapsed = killed_at.elapsed();
    assert!(
        survivors_seen.iter().all(|n| n.name != NODES[VICTIM]),
        "{survivors_seen:?}"
    );
    let chat = after_kill.await.expect("the chat after the kill");
    // The run goes on on two nodes, then the clients finish (every batch they have not had
    // acknowledged is sent again until it is) and send every batch once more: each is
    // answered as all duplicates, by whichever node now owns its visitor.
    tokio::time::sleep_until((killed_at + AFTER_KILL).into()).await;
    browsing.store(false, Ordering::SeqCst);
    let visitors = finish_and_resend(clients).await;

    // 6. What reached a node for another node's visitor, or for the site's desk, was
    // forwarded; what was stale was refused.
    let mut forwarded = Vec::new();
    for node in &nodes {
        forwarded.push(Forwarded::of(&scrape(&node.base()).await));
    }
    let victim_forwarded = Forwarded::of(&victim_metrics);
    for node in nodes {
        node.stop(PATIENCE).await;
    }

    // 7. Every promise of the single node holds over the cluster's log: every acknowledged
    // event in it exactly once, no key twice, the session cap and the cooldown held across
    // the moves, profiles counting what was decided, every intervention sent stored; and
    // every batch the paused node's visitors had acknowledged is in it once.
    let checked = check_promises(&store, &visitors).await;
    let site = SiteId::parse(SITE).unwrap();
    let lagging_events = check_logged_once(&Log::read(&store, &site).await, &pause.visitors);
    let stats = Stats::of(&visitors);

    // 8. The chat's transcript holds each line once, in order, with no gap.
    let id = ConversationId::parse(&conversation).expect("a conversation id");
    let messages = store.messages(&site, &id, 0, 1000).await.unwrap();
    let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=messages.len() as u64).collect::<Vec<_>>(),
        "the transcript's places"
    );
    let lines: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| (m.author.as_str(), m.text.as_str()))
        .filter(|(author, _)| matches!(*author, "visitor" | "agent"))
        .collect();
    assert_eq!(
        lines,
        [
            ("visitor", M1.1),
            ("agent", A1.1),
            ("visitor", M2.1),
            ("agent", A2.1),
            ("visitor", M3.1)
        ],
        "the transcript: {messages:?}"
    );

    // 9. The victim's visitors waited for its lease to lapse, then were served again.
    let failover = Failover::of(&visitors, &settings, killed_at);

    println!(
        "{} acknowledged events checked on {} nodes, {} killed {} ms into the run (seed \
         {seed:#x}): {} batches acknowledged, {} sends unanswered and sent again (of the \
         batches, {} stored by an attempt whose answer was lost), {} resends answered as \
         duplicates; {} interventions to {} visitors, {} dismissals, {} distinct orders",
        checked.events,
        NODES.len(),
        NODES[VICTIM],
        (killed_at - started).as_millis(),
        stats.acked,
        stats.unanswered,
        stats.stored_unanswered,
        stats.resent,
        checked.exposures,
        checked.exposed_sessions,
        checked.dismissals,
        checked.orders,
    );
    println!(
        "{} paused {} time(s) before the kill ({}); of the batches that waited for it, {} \
         refused on waking, {} acknowledged, {} unanswered; it refused \
         {} stale writes and failed {} commits otherwise, the other nodes refused {} stale \
         writes meanwhile ({} events of its {LAGGING} lagging visitors checked in the log once)",
        NODES[PAUSED],
        pause.pauses.len(),
        pause
            .pauses
            .iter()
            .map(|(d, n)| format!("{} ms, {n} stale writes refused", d.as_millis()))
            .collect::<Vec<_>>()
            .join("; "),
        pause.woken.refused,
        pause.woken.acknowledged,
        pause.woken.lost,
        pause.refused,
        pause.failed,
        pause.elsewhere,
        lagging_events,
    );
    for (node, f) in nodes_left().zip(&forwarded) {
        println!(
            "{node}: {} requests forwarded to their visitor's node, {} to a node that did not \
             answer, {} desk calls forwarded, {} chat frames carried to the desk's node, {} \
             stale writes refused",
            f.http, f.unreachable, f.desk, f.chat, f.stale
        );
    }
    println!(
        "{} (until its kill): {} requests forwarded, {} desk calls forwarded, {} chat frames \
         carried, {} stale writes refused",
        NODES[VICTIM],
        victim_forwarded.http,
        victim_forwarded.desk,
        victim_forwarded.chat,
        victim_forwarded.stale
    );
    println!(
        "{}'s lease seen lapsed {} ms after its SIGKILL; {} of its {} visitors waited for it",
        NODES[VICTIM],
        lapsed.as_millis(),
        failover.waited,
        failover.owned,
    );
    println!(
        "failover: {} ms (its first visitor served again after {} ms)",
        failover.last.as_millis(),
        failover.first.as_millis(),
    );
    println!(
        "chat: desk on {}, visitor owned by {} with their socket on {} (relayed), the person \
         through {} then {}; after the kill the desk ran on {}: the person's message \
         was taken {} ms after the kill, the visitor heard it after {} ms (the chat was \
         unavailable for {} ms), their own was stored after {} ms; availability {}; {} messages \
         stored ({}), the visitor's and the person's {} each once and in order",
        NODES[VICTIM],
        NODES[OWNER],
        NODES[PAUSED],
        NODES[PAUSED],
        NODES[OWNER],
        NODES[PAUSED],
        chat.written.as_millis(),
        chat.heard.as_millis(),
        chat.heard.as_millis(),
        chat.said.as_millis(),
        if chat.available_again {
            "set again after the move"
        } else {
            "kept across the move"
        },
        messages.len(),
        messages
            .iter()
            .map(|m| m.author.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        lines.len(),
    );
    println!("the run took {} ms", began.elapsed().as_millis());

    for (node, f) in nodes_left().zip(&forwarded) {
        assert!(f.http > 0, "{node} forwarded nothing over HTTP");
    }
    let survivor = |name: &str| {
        let i = nodes_left().position(|n| n == name).expect("a survivor");
        &forwarded[i]
    };
    assert!(
        victim_forwarded.desk == 0 && survivor(NODES[PAUSED]).desk > 0,
        "the person's calls through {} reached the desk on {}",
        NODES[PAUSED],
        NODES[VICTIM]
    );
    assert!(
        survivor(NODES[OWNER]).desk > 0,
        "the person's calls through {} reached the desk on {}",
        NODES[OWNER],
        NODES[PAUSED]
    );
    assert!(
        survivor(NODES[OWNER]).chat > 0,
        "the visitor's frames were carried from their node to the desk's"
    );
    assert!(
        pause.refused > 0,
        "{} was paused {PAUSES} times and never refused a stale write",
        NODES[PAUSED]
    );
    assert!(
        failover.owned > 0,
        "{} owned none of the visitors",
        NODES[VICTIM]
    );
    assert!(
        failover.waited > 0,
        "none of {}'s visitors had a batch unanswered after its death",
        NODES[VICTIM]
    );
    assert!(
        failover.last < FAILOVER_BOUND,
        "a visitor of the dead node was served again only after {:?}",
        failover.last
    );
    // The run tested something: batches were lost to the kill and sent again, guardrails
    // were reached, orders repeated.
    checked.assert_exercised(&stats);
    scratch.drop().await;
}

/// The names of the nodes still running, in order.
fn nodes_left() -> impl Iterator<Item = &'static str> {
    NODES
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != VICTIM)
        .map(|(_, n)| *n)
}

/// The node of `nodes` that runs the site's desk.
fn desk_of(nodes: &[NodeLease]) -> &str {
    beckon_cluster::rendezvous::owner(SITE, "#desk", nodes)
        .expect("a node")
        .name
        .as_str()
}

/// What a node forwarded, and refused as stale, as its `/metrics` count them.
struct Forwarded {
    http: u64,
    unreachable: u64,
    desk: u64,
    chat: u64,
    stale: u64,
}

impl Forwarded {
    fn of(metrics: &str) -> Forwarded {
        let count = |name: &str| metric(metrics, name).unwrap_or(0.0) as u64;
        Forwarded {
            http: count(r#"beckon_forwarded_total{how="http"}"#),
            unreachable: count(r#"beckon_forwarded_total{how="unreachable"}"#),
            desk: count(r#"beckon_forwarded_total{how="desk"}"#),
            chat: count(r#"beckon_forwarded_total{how="chat"}"#),
            stale: count("beckon_stale_writes_total"),
        }
    }
}

/// What the victim's visitors went through.
struct Failover {
    /// Visitors known before the kill whose owner was the victim.
    owned: usize,
    /// Of those, how many had a batch unanswered after the kill and acknowledged later.
    waited: usize,
    /// From the kill to the first acknowledgement, after it, of a batch sent after it: for the
    /// first of them to be served again, and for the last.
    first: Duration,
    last: Duration,
}

impl Failover {
    fn of(visitors: &[Client], nodes: &[NodeSettings], killed_at: Instant) -> Failover {
        // The owners as every node saw them while the three were live.
        let leases = leases(nodes, |_| true);
        let mut failover = Failover {
            owned: 0,
            waited: 0,
            first: Duration::MAX,
            last: Duration::ZERO,
        };
        for v in visitors {
            let id = v.visitor();
            let owner = beckon_cluster::rendezvous::owner(SITE, &id, &leases).expect("an owner");
            let known = v.attempts.iter().any(|a| a.acked && a.ended < killed_at);
            if owner.name != NODES[VICTIM] || !known {
                continue;
            }
            failover.owned += 1;
            let served = v
                .attempts
                .iter()
                .position(|a| a.acked && a.sent >= killed_at)
                .unwrap_or_else(|| panic!("{id} was never served after the kill"));
            let took = v.attempts[served].ended - killed_at;
            failover.first = failover.first.min(took);
            failover.last = failover.last.max(took);
            if v.attempts[..served]
                .iter()
                .any(|a| !a.acked && a.sent >= killed_at)
            {
                failover.waited += 1;
            }
        }
        failover
    }
}
