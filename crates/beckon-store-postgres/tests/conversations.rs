//! The conversations' story, told by PostgreSQL, and what two nodes on one database must agree
//! on: each test on a schema of its own.

use beckon_engine::{Policy, SiteId, Timestamp, VisitorId};
use beckon_store::conversations::{
    Appended, Author, Context, Conversation, ConversationId, Conversations, NewMessage, Origin,
    Status,
};
use beckon_store::{SecretDigest, SiteRecord, Store, StoreError};
use beckon_store_postgres::PgStore;
use beckon_store_postgres::testing::Scratch;
use tokio::task::JoinSet;

#[tokio::test]
async fn postgres_passes_the_conversations_suite() {
    let scratch = Scratch::new().await;
    let store = scratch.migrated().await;
    beckon_store::conversations_suite::run_all(&store, &store, &store).await;
    scratch.drop().await;
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(1_780_000_000_000 + ms)
}

fn id(n: u32) -> ConversationId {
    ConversationId::from_random(&format!("{n:0>20}")).unwrap()
}

async fn site(store: &PgStore) -> SiteId {
    let site = SiteId::parse("race").unwrap();
    store
        .put_site(&SiteRecord {
            id: site.clone(),
            secret: SecretDigest::of("sk"),
            origins: vec![],
            policy: Policy::default(),
            version: 0,
        })
        .await
        .unwrap();
    site
}

fn new_conversation(n: u32, site: &SiteId, visitor: u32) -> Conversation {
    Conversation {
        id: id(n),
        site: site.clone(),
        visitor: VisitorId::parse(&format!("v_{visitor:0>20}")).unwrap(),
        status: Status::Bot,
        department: None,
        assignee: None,
        origin: Origin::Launcher,
        context: Context::default(),
        prechat: None,
        priority: 0,
        handoff: None,
        started_at: at(0),
        updated_at: at(0),
        closed: None,
        rating: None,
        last_seq: 0,
        visitor_read: 0,
        agent_read: 0,
    }
}

/// Two nodes append 20 messages each to one conversation at once, and each node also resends
/// the other's 20 (as a visitor whose request was retried on another node would): every
/// message is stored once, under one seq, and the seqs run 1..=40 without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_appending_at_once_give_gapless_seqs_and_store_a_resend_once() {
    let scratch = Scratch::new().await;
    let a = scratch.migrated().await;
    let b = scratch.store().await;
    let site = site(&a).await;
    let c = id(1);
    a.open_conversation(&new_conversation(1, &site, 1), &[])
        .await
        .unwrap();

    let mut sends = JoinSet::new();
    for own in ["a", "b"] {
        for n in 0..20 {
            for sender in [&a, &b] {
                let (sender, site, c) = (sender.clone(), site.clone(), c.clone());
                let client_id = format!("{own}-{n}");
                let m = NewMessage {
                    client_id: Some(client_id.clone()),
                    author: Author::Visitor,
                    author_id: None,
                    author_name: None,
                    text: format!("message {n} of node {own}"),
                    attachment: None,
                    at: at(i64::from(n)),
                };
                sends.spawn(async move {
                    (
                        client_id,
                        sender.append_message(&site, &c, &m).await.unwrap(),
                    )
                });
            }
        }
    }
    let answers = sends.join_all().await;
    assert_eq!(answers.len(), 80);

    let stored = a.messages(&site, &c, 0, 100).await.unwrap();
    assert_eq!(
        stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=40).collect::<Vec<_>>(),
        "distinct seqs, without gaps"
    );
    let mut clients: Vec<&str> = stored
        .iter()
        .map(|m| m.client_id.as_deref().unwrap())
        .collect();
    clients.sort_unstable();
    clients.dedup();
    assert_eq!(clients.len(), 40, "every message is stored once");
    for m in &stored {
        let client_id = m.client_id.as_deref().unwrap();
        let sends: Vec<&Appended> = answers
            .iter()
            .filter(|(id, _)| id == client_id)
            .map(|(_, appended)| appended)
            .collect();
        assert_eq!(sends.len(), 2);
        assert!(
            sends.iter().all(|s| s.message == *m),
            "both sends of {client_id} are answered with the stored message"
        );
        assert_eq!(
            sends.iter().filter(|s| s.duplicate).count(),
            1,
            "one send of {client_id} stored it, the other is its duplicate"
        );
    }
    let conversation = b.conversation(&site, &c).await.unwrap().unwrap();
    assert_eq!(conversation.last_seq, 40);
    assert_eq!(conversation.updated_at, at(19));
    scratch.drop().await;
}

/// Two nodes open a conversation for one visitor at once: one is stored, the other is refused
/// as a conflict, as when they come one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_opening_at_once_leave_a_visitor_one_open_conversation() {
    let scratch = Scratch::new().await;
    let a = scratch.migrated().await;
    let b = scratch.store().await;
    let site = site(&a).await;
    for visitor in 1..=10 {
        let first = new_conversation(2 * visitor, &site, visitor);
        let second = new_conversation(2 * visitor + 1, &site, visitor);
        let (x, y) = tokio::join!(
            a.open_conversation(&first, &[]),
            b.open_conversation(&second, &[])
        );
        let (stored, refused) = match (x, y) {
            (Ok(()), Err(e)) => (first, e),
            (Err(e), Ok(())) => (second, e),
            other => panic!("exactly one of the two opens succeeds: {other:?}"),
        };
        assert!(matches!(refused, StoreError::Conflict(_)), "{refused:?}");
        let open = a
            .latest_conversation_of(&site, &stored.visitor)
            .await
            .unwrap();
        assert_eq!(open, Some(stored));
    }
    assert_eq!(a.open_conversations().await.unwrap().len(), 10);
    scratch.drop().await;
}
