//! The conversations' story, the same for every backend: each backend's tests call [`run_all`]
//! with one freshly migrated, empty database seen through its interfaces.

use beckon_engine::{Policy, SiteId, Timestamp, VisitorId};

use crate::accounts::{Accounts, NewUser, Role};
use crate::conversations::{
    AgentProfile, Author, Closer, Context, Conversation, ConversationChange, ConversationId,
    ConversationQuery, Conversations, DeskSettings, Expect, FileRecord, ModelCall, NewMessage,
    Origin, PageSeen, Rating, Spend, Status,
};
use crate::{SecretDigest, SiteRecord, Store, StoreError};

/// Runs every chapter.
pub async fn run_all(store: &dyn Store, accounts: &dyn Accounts, talk: &dyn Conversations) {
    let site = site(store, "talk-a").await;
    let other = site_b(store).await;
    a_visitor_has_one_open_conversation(talk, &site, &other).await;
    messages_are_ordered_and_a_resend_is_stored_once(talk, &site, &other).await;
    changes_keep_to_their_fields_and_a_closed_conversation_is_rated_once(talk, &site).await;
    listing_pages_newest_first(talk, &site).await;
    settings_and_profiles_round_trip(talk, accounts, &site).await;
    model_calls_add_up_per_site_and_since(talk, &site, &other).await;
    files_belong_to_their_conversation_and_site(talk, &site, &other).await;
}

async fn files_belong_to_their_conversation_and_site(
    talk: &dyn Conversations,
    site: &SiteId,
    other: &SiteId,
) {
    let file = FileRecord {
        id: "f_00000000000000000001".to_owned(),
        conversation: id(5),
        name: "receipt.png".to_owned(),
        mime: "image/png".to_owned(),
        size: 4,
        author: Author::Visitor,
        at: at(50),
    };
    talk.put_file(site, &file, &[1, 2, 3, 4]).await.unwrap();
    talk.put_file(site, &file, &[9, 9]).await.unwrap();
    assert_eq!(
        talk.file(site, &file.id).await.unwrap(),
        Some((file.clone(), vec![1, 2, 3, 4]))
    );
    assert_eq!(
        talk.file(other, &file.id).await.unwrap(),
        None,
        "not another site's"
    );
    let elsewhere = FileRecord {
        id: "f_00000000000000000002".to_owned(),
        ..file.clone()
    };
    let refused = talk.put_file(other, &elsewhere, &[1]).await;
    assert!(
        matches!(refused, Err(StoreError::NotFound(_))),
        "a file joins a conversation of its own site only: {refused:?}"
    );
    assert_eq!(talk.file(site, &elsewhere.id).await.unwrap(), None);
}

async fn model_calls_add_up_per_site_and_since(
    talk: &dyn Conversations,
    site: &SiteId,
    other: &SiteId,
) {
    let call = |ms, calls, tokens| ModelCall {
        conversation: Some(id(1)),
        at: at(ms),
        model: "model:test".to_owned(),
        purpose: "answer".to_owned(),
        calls,
        prompt_tokens: tokens,
        completion_tokens: 10,
        latency_ms: 120,
        outcome: "ok".to_owned(),
    };
    talk.record_model_call(site, &call(1000, 1, 90))
        .await
        .unwrap();
    talk.record_model_call(site, &call(2000, 2, 190))
        .await
        .unwrap();
    talk.record_model_call(other, &call(2000, 5, 990))
        .await
        .unwrap();
    assert_eq!(
        talk.model_spend(site, at(0)).await.unwrap(),
        Spend {
            calls: 3,
            tokens: 300
        }
    );
    assert_eq!(
        talk.model_spend(site, at(1500)).await.unwrap(),
        Spend {
            calls: 2,
            tokens: 200
        },
        "only calls since the instant"
    );
    assert_eq!(
        talk.model_spend(site, at(9000)).await.unwrap(),
        Spend::default()
    );
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(1_780_000_000_000 + ms)
}

fn id(n: u32) -> ConversationId {
    ConversationId::from_random(&format!("{n:0>20}")).unwrap()
}

fn visitor(n: u32) -> VisitorId {
    VisitorId::parse(&format!("v_{n:0>20}")).unwrap()
}

async fn site(store: &dyn Store, key: &str) -> SiteId {
    let id = SiteId::parse(key).unwrap();
    store
        .put_site(&SiteRecord {
            id: id.clone(),
            secret: SecretDigest::of("sk"),
            origins: vec![],
            policy: Policy::default(),
            version: 0,
        })
        .await
        .unwrap();
    id
}

async fn site_b(store: &dyn Store) -> SiteId {
    site(store, "talk-b").await
}

fn new_conversation(n: u32, site: &SiteId, who: u32, started: i64) -> Conversation {
    Conversation {
        id: id(n),
        site: site.clone(),
        visitor: visitor(who),
        status: Status::Bot,
        department: Some("sales".to_owned()),
        assignee: None,
        origin: Origin::Intervention {
            rule: "shipping-help".to_owned(),
            intervention: "i_1".to_owned(),
        },
        context: Context {
            pages: vec![PageSeen {
                path: "/p/lamp".to_owned(),
                title: "Lamp".to_owned(),
                page_type: "product".to_owned(),
                at: at(started),
            }],
            language: "en".to_owned(),
            ..Context::default()
        },
        prechat: None,
        priority: 42,
        handoff: None,
        started_at: at(started),
        updated_at: at(started),
        closed: None,
        rating: None,
        last_seq: 0,
        visitor_read: 0,
        agent_read: 0,
    }
}

fn said(client: Option<&str>, author: Author, text: &str, ms: i64) -> NewMessage {
    NewMessage {
        client_id: client.map(str::to_owned),
        author,
        author_id: None,
        author_name: None,
        text: text.to_owned(),
        attachment: None,
        at: at(ms),
    }
}

async fn a_visitor_has_one_open_conversation(
    talk: &dyn Conversations,
    site: &SiteId,
    other: &SiteId,
) {
    let first = new_conversation(1, site, 1, 0);
    talk.open_conversation(&first, &[]).await.unwrap();
    let again = talk
        .open_conversation(&new_conversation(2, site, 1, 5), &[])
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict(_))),
        "a second open conversation for one visitor is refused: {again:?}"
    );
    assert_eq!(
        talk.conversation(site, &id(2)).await.unwrap(),
        None,
        "nothing of it is written"
    );
    // The same visitor id on another site is another visitor.
    talk.open_conversation(&new_conversation(3, other, 1, 0), &[])
        .await
        .unwrap();
    let stored = talk.conversation(site, &id(1)).await.unwrap().unwrap();
    assert_eq!(stored, first, "a conversation reads back as written");
    assert_eq!(
        talk.conversation(other, &id(1)).await.unwrap(),
        None,
        "a conversation is found only under its own site"
    );
    assert_eq!(
        talk.latest_conversation_of(site, &visitor(1))
            .await
            .unwrap()
            .map(|c| c.id),
        Some(id(1))
    );
    let unknown = talk
        .open_conversation(
            &new_conversation(4, &SiteId::parse("nowhere").unwrap(), 9, 0),
            &[],
        )
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(_))),
        "a conversation needs its site: {unknown:?}"
    );
}

async fn messages_are_ordered_and_a_resend_is_stored_once(
    talk: &dyn Conversations,
    site: &SiteId,
    other: &SiteId,
) {
    let c = id(1);
    let a = talk
        .append_message(
            site,
            &c,
            &said(Some("m1"), Author::Visitor, "Do you ship to Canada?", 10),
        )
        .await
        .unwrap();
    assert_eq!((a.message.seq, a.duplicate), (1, false));
    let b = talk
        .append_message(site, &c, &said(None, Author::Ai, "Yes, in 5–8 days.", 11))
        .await
        .unwrap();
    assert_eq!(b.message.seq, 2);
    let resent = talk
        .append_message(
            site,
            &c,
            &said(Some("m1"), Author::Visitor, "changed text", 12),
        )
        .await
        .unwrap();
    assert!(resent.duplicate, "a resend is recognised by its client id");
    assert_eq!(resent.message, a.message, "the stored message is answered");
    let all = talk.messages(site, &c, 0, 100).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|m| (m.seq, m.text.as_str()))
            .collect::<Vec<_>>(),
        vec![(1, "Do you ship to Canada?"), (2, "Yes, in 5–8 days.")]
    );
    assert_eq!(talk.messages(site, &c, 1, 100).await.unwrap().len(), 1);
    assert_eq!(talk.messages(site, &c, 0, 1).await.unwrap().len(), 1);
    assert!(
        talk.messages(other, &c, 0, 100).await.unwrap().is_empty(),
        "another site reads none of them"
    );
    let stored = talk.conversation(site, &c).await.unwrap().unwrap();
    assert_eq!(stored.last_seq, 2);
    assert_eq!(stored.updated_at, at(11));
    // The same client id in another conversation is another message.
    let elsewhere = talk
        .append_message(
            other,
            &id(3),
            &said(Some("m1"), Author::Visitor, "hello", 13),
        )
        .await
        .unwrap();
    assert_eq!((elsewhere.message.seq, elsewhere.duplicate), (1, false));
    let missing = talk
        .append_message(site, &id(99), &said(None, Author::Ai, "x", 0))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    let wrong_site = talk
        .append_message(other, &c, &said(None, Author::Ai, "x", 0))
        .await;
    assert!(
        matches!(wrong_site, Err(StoreError::NotFound(_))),
        "a conversation takes messages only under its site: {wrong_site:?}"
    );
}

async fn changes_keep_to_their_fields_and_a_closed_conversation_is_rated_once(
    talk: &dyn Conversations,
    site: &SiteId,
) {
    let c = id(1);
    let early = talk
        .rate_conversation(
            site,
            &c,
            &Rating {
                score: 5,
                comment: String::new(),
                at: at(20),
            },
            &[],
        )
        .await;
    assert!(
        matches!(early, Err(StoreError::Conflict(_))),
        "an open conversation cannot be rated: {early:?}"
    );
    let queued = talk
        .change_conversation(
            site,
            &c,
            &ConversationChange {
                status: Some(Status::Queued),
                department: Some(Some("support".to_owned())),
                handoff: Some(Some("asked for a refund".to_owned())),
                agent_read: Some(99),
                ..ConversationChange::default()
            },
            at(21),
        )
        .await
        .unwrap();
    assert_eq!(queued.status, Status::Queued);
    assert_eq!(queued.department.as_deref(), Some("support"));
    assert_eq!(queued.priority, 42, "an untouched field stays");
    assert_eq!(
        queued.agent_read, 2,
        "a read mark never passes the last message"
    );
    let lower = talk
        .change_conversation(
            site,
            &c,
            &ConversationChange {
                agent_read: Some(1),
                ..ConversationChange::default()
            },
            at(22),
        )
        .await
        .unwrap();
    assert_eq!(lower.agent_read, 2, "a read mark never goes back");
    assert_eq!(talk.conversation(site, &c).await.unwrap().unwrap(), lower);
    let stale = talk
        .change_conversation(
            site,
            &c,
            &ConversationChange {
                status: Some(Status::Queued),
                assignee: Some(None),
                expect: Some(Expect {
                    statuses: vec![Status::Offered],
                    assignee: Some(Some(7)),
                }),
                ..ConversationChange::default()
            },
            at(23),
        )
        .await;
    assert!(
        matches!(stale, Err(StoreError::Conflict(_))),
        "a step decided on a stale read does not apply: {stale:?}"
    );
    assert_eq!(
        talk.conversation(site, &c).await.unwrap().unwrap(),
        lower,
        "nothing written"
    );
    let closed = talk
        .change_conversation(
            site,
            &c,
            &ConversationChange {
                closed: Some((at(30), Closer::Visitor)),
                ..ConversationChange::default()
            },
            at(30),
        )
        .await
        .unwrap();
    assert_eq!(closed.status, Status::Closed);
    assert_eq!(closed.closed, Some((at(30), Closer::Visitor)));
    let reopen = talk
        .change_conversation(
            site,
            &c,
            &ConversationChange {
                status: Some(Status::Bot),
                ..ConversationChange::default()
            },
            at(31),
        )
        .await;
    assert!(
        matches!(reopen, Err(StoreError::Conflict(_))),
        "a closed conversation stays closed: {reopen:?}"
    );
    let late = talk
        .append_message(
            site,
            &c,
            &said(Some("late"), Author::Visitor, "one more thing", 32),
        )
        .await;
    assert!(
        matches!(late, Err(StoreError::Conflict(_))),
        "a closed conversation takes no message: {late:?}"
    );
    let resent = talk
        .append_message(
            site,
            &c,
            &said(Some("m1"), Author::Visitor, "Do you ship to Canada?", 33),
        )
        .await
        .unwrap();
    assert!(
        resent.duplicate,
        "a resend of a message it holds is still answered"
    );
    // Closed, the visitor may open a new one.
    talk.open_conversation(&new_conversation(5, site, 1, 40), &[])
        .await
        .unwrap();
    let rating = Rating {
        score: 4,
        comment: "quick answer".to_owned(),
        at: at(41),
    };
    talk.rate_conversation(site, &c, &rating, &[])
        .await
        .unwrap();
    let twice = talk
        .rate_conversation(
            site,
            &c,
            &Rating {
                score: 1,
                ..rating.clone()
            },
            &[],
        )
        .await;
    assert!(
        matches!(twice, Err(StoreError::Conflict(_))),
        "rated once: {twice:?}"
    );
    let stored = talk.conversation(site, &c).await.unwrap().unwrap();
    assert_eq!(stored.rating, Some(rating));
    assert_eq!(
        talk.latest_conversation_of(site, &visitor(1))
            .await
            .unwrap()
            .map(|c| c.id),
        Some(id(5)),
        "the latest conversation is the new one"
    );
}

async fn listing_pages_newest_first(talk: &dyn Conversations, site: &SiteId) {
    for n in 10..15 {
        talk.open_conversation(&new_conversation(n, site, n, 100 + i64::from(n)), &[])
            .await
            .unwrap();
    }
    let q = |open, before, limit| ConversationQuery {
        open,
        visitor: None,
        before,
        limit,
    };
    let page = talk
        .conversations(site, &q(Some(true), None, 3))
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        vec![id(14), id(13), id(12)]
    );
    let next = talk
        .conversations(site, &q(Some(true), Some(page[2].updated_at), 10))
        .await
        .unwrap();
    assert_eq!(next.first().map(|c| c.id.clone()), Some(id(11)));
    assert!(next.iter().all(|c| c.closed.is_none()));
    let closed = talk
        .conversations(site, &q(Some(false), None, 10))
        .await
        .unwrap();
    assert_eq!(
        closed.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        vec![id(1)]
    );
    let mine = talk
        .conversations(
            site,
            &ConversationQuery {
                visitor: Some(visitor(1)),
                limit: 10,
                ..ConversationQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(mine.len(), 2, "a visitor's conversations, open and closed");
    let open_everywhere = talk.open_conversations().await.unwrap();
    assert!(open_everywhere.iter().all(|c| c.closed.is_none()));
    assert!(open_everywhere.iter().any(|c| c.site.as_str() == "talk-b"));
}

async fn settings_and_profiles_round_trip(
    talk: &dyn Conversations,
    accounts: &dyn Accounts,
    site: &SiteId,
) {
    assert_eq!(
        talk.desk_settings(site).await.unwrap(),
        DeskSettings::default()
    );
    let settings = DeskSettings {
        launcher: false,
        presales_only: false,
        wait_seconds: 45,
        ..DeskSettings::default()
    };
    talk.put_desk_settings(site, &settings).await.unwrap();
    assert_eq!(talk.desk_settings(site).await.unwrap(), settings);
    let unknown = talk
        .put_desk_settings(&SiteId::parse("nowhere").unwrap(), &settings)
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(_))),
        "{unknown:?}"
    );
    let ana = accounts
        .create_user(&NewUser {
            email: "ana@talk.test".to_owned(),
            name: "Ana".to_owned(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
            role: Role::Agent,
            at: at(0),
        })
        .await
        .unwrap();
    let profile = AgentProfile {
        user: ana.id,
        capacity: 2,
        departments: vec!["support".to_owned()],
        languages: vec!["en".to_owned(), "fr".to_owned()],
    };
    talk.put_agent_profile(site, &profile).await.unwrap();
    talk.put_agent_profile(
        site,
        &AgentProfile {
            capacity: 4,
            ..profile.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        talk.agent_profiles(site).await.unwrap(),
        vec![AgentProfile {
            capacity: 4,
            ..profile
        }]
    );
}
