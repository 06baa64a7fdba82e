//! The desk's story over a real SQLite store: the AI answers from the knowledge, says when it
//! does not know, routes a refund to people, a person accepts and chats, the visitor rates.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use beckon_agent::desk::{AgentRef, Desk, NoContext, Opening, Update, VisitorRef, VisitorWatch};
use beckon_agent::knowledge::Knowledge;
use beckon_agent::responder::{DONT_KNOW, Offline};
use beckon_engine::{Policy, SiteId, Timestamp, VisitorId};
use beckon_store::accounts::{Accounts, NewUser, Role};
use beckon_store::conversations::{Author, Conversations, Status};
use beckon_store::{SecretDigest, SiteRecord, Store};
use beckon_store_sqlite::SqliteStore;

struct World {
    desk: Desk,
    store: Arc<SqliteStore>,
    site: SiteId,
    clock: Arc<AtomicI64>,
    ana: AgentRef,
}

impl World {
    async fn new() -> World {
        let store = Arc::new(SqliteStore::in_memory().await.unwrap());
        store.migrate().await.unwrap();
        let site = SiteId::parse("shop").unwrap();
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
        let user = store
            .create_user(&NewUser {
                email: "ana@shop.test".to_owned(),
                name: "Ana".to_owned(),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
                role: Role::Agent,
                at: Timestamp::from_millis(0),
            })
            .await
            .unwrap();
        let clock = Arc::new(AtomicI64::new(1_780_000_000_000));
        let now = clock.clone();
        let desk = Desk::new(
            store.clone(),
            Arc::new(NoContext),
            Arc::new(move || Timestamp::from_millis(now.load(Ordering::SeqCst))),
        );
        let knowledge = Knowledge::from_files(&[(
            "faq.md".to_owned(),
            "## Do you ship internationally?\n\nYes: we ship to Canada, the UK and the EU in 5–8 \
             business days.\n\n## What is your return policy?\n\nReturns are free within 30 days.\n"
                .to_owned(),
        )])
        .unwrap();
        desk.configure_site(&site, Arc::new(knowledge), Arc::new(Offline), None)
            .await
            .unwrap();
        World {
            desk,
            store,
            site: site.clone(),
            clock,
            ana: AgentRef {
                site,
                user: user.id,
                name: "Ana".to_owned(),
                supervisor: false,
            },
        }
    }

    fn visitor(&self, n: u32) -> VisitorRef {
        VisitorRef {
            site: self.site.clone(),
            visitor: VisitorId::parse(&format!("v_{n:0>20}")).unwrap(),
        }
    }

    fn advance(&self, seconds: i64) {
        self.clock.fetch_add(seconds * 1000, Ordering::SeqCst);
    }
}

/// The next stored message the watch hears from someone other than the visitor.
async fn next_reply(watch: &mut VisitorWatch) -> (Author, String) {
    loop {
        let update = tokio::time::timeout(Duration::from_secs(5), watch.recv())
            .await
            .expect("a reply within 5 s")
            .expect("the watch stays open");
        if let Update::Message { message, .. } = update
            && message.author != Author::Visitor
        {
            return (message.author, message.text);
        }
    }
}

#[tokio::test]
async fn the_ai_answers_from_the_knowledge_and_says_when_it_does_not_know() {
    let w = World::new().await;
    let me = w.visitor(1);
    let mut watch = w.desk.watch_visitor(&w.site, &me.visitor);
    let said = w
        .desk
        .say(
            &me,
            "m1".to_owned(),
            "Do you ship to Canada?",
            &Opening::default(),
        )
        .await
        .unwrap();
    assert!(!said.duplicate);
    let (author, welcome) = next_reply(&mut watch).await;
    assert_eq!(author, Author::Ai);
    assert!(
        welcome.starts_with("Hi!"),
        "a launcher chat is welcomed: {welcome}"
    );
    let (author, answer) = next_reply(&mut watch).await;
    assert_eq!(author, Author::Ai);
    assert!(
        answer.contains("Canada") && answer.contains("5–8"),
        "{answer}"
    );

    w.desk
        .say(
            &me,
            "m2".to_owned(),
            "Can I pay with bitcoin?",
            &Opening::default(),
        )
        .await
        .unwrap();
    let (_, unknown) = next_reply(&mut watch).await;
    assert_eq!(unknown, DONT_KNOW, "no guess");

    // A resend is stored once and answered once.
    let again = w
        .desk
        .say(
            &me,
            "m2".to_owned(),
            "Can I pay with bitcoin?",
            &Opening::default(),
        )
        .await
        .unwrap();
    assert!(again.duplicate);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let all = w
        .store
        .messages(&w.site, &said.conversation.id, 0, 100)
        .await
        .unwrap();
    assert_eq!(
        all.iter()
            .filter(|m| m.text == "Can I pay with bitcoin?")
            .count(),
        1
    );
    assert_eq!(all.iter().filter(|m| m.text == DONT_KNOW).count(), 1);
    assert_eq!(
        all.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=all.len() as u64).collect::<Vec<_>>(),
        "in order, without gaps"
    );
}

#[tokio::test]
async fn a_refund_goes_to_a_person_who_accepts_and_chats_then_the_visitor_rates() {
    let w = World::new().await;
    w.desk.set_available(&w.ana, true).await.unwrap();
    let me = w.visitor(2);
    let mut watch = w.desk.watch_visitor(&w.site, &me.visitor);
    let mut console = w.desk.watch_site(&w.site);
    let said = w
        .desk
        .say(
            &me,
            "m1".to_owned(),
            "I want a refund for my lamp",
            &Opening::default(),
        )
        .await
        .unwrap();
    let id = said.conversation.id.clone();
    let (author, line) = next_reply(&mut watch).await;
    assert_eq!(author, Author::Ai, "the welcome");
    assert!(line.starts_with("Hi!"));
    let (author, line) = next_reply(&mut watch).await;
    assert_eq!(author, Author::System);
    assert!(line.contains("Support"), "{line}");
    // The AI never answered the refund.
    let c = w.store.conversation(&w.site, &id).await.unwrap().unwrap();
    assert_eq!(c.status, Status::Offered, "offered to Ana");
    assert_eq!(c.assignee, Some(w.ana.user));
    assert_eq!(c.department.as_deref(), Some("support"));
    assert_eq!(c.handoff.as_deref(), Some("asked about a return or refund"));
    assert!(
        std::iter::from_fn(|| console.try_recv().ok()).any(|u| matches!(u, Update::Changed { .. })),
        "the console heard of it"
    );

    let accepted = w.desk.accept(&w.ana, &id).await.unwrap();
    assert_eq!(accepted.status, Status::Active);
    assert_eq!(next_reply(&mut watch).await.1, "Ana joined the chat.");
    w.desk
        .agent_say(
            &w.ana,
            &id,
            "a1".to_owned(),
            "Sorry to hear that! Which order?",
        )
        .await
        .unwrap();
    assert_eq!(
        next_reply(&mut watch).await,
        (Author::Agent, "Sorry to hear that! Which order?".to_owned())
    );
    // While a person holds the chat, the AI keeps quiet.
    w.desk
        .say(
            &me,
            "m2".to_owned(),
            "Do you ship to Canada?",
            &Opening::default(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let all = w.store.messages(&w.site, &id, 0, 100).await.unwrap();
    assert!(!all.iter().any(|m| m.text.contains("5–8")), "{all:?}");

    let early = w.desk.rate(&me, 5, "").await;
    assert!(early.is_err(), "rated only once closed");
    w.desk.agent_close(&w.ana, &id).await.unwrap();
    let rated = w.desk.rate(&me, 5, "Quick and kind").await.unwrap();
    assert_eq!(rated.rating.unwrap().score, 5);
    assert!(w.desk.rate(&me, 4, "").await.is_err(), "once");
    assert_eq!(
        w.desk.board(&w.site).people[0].holding,
        0,
        "Ana is free again"
    );
}

#[tokio::test]
async fn with_nobody_online_the_visitor_is_offered_a_follow_up_at_once_and_waits_time_out() {
    let w = World::new().await;
    let me = w.visitor(3);
    let mut watch = w.desk.watch_visitor(&w.site, &me.visitor);
    w.desk
        .say(
            &me,
            "m1".to_owned(),
            "Can I talk to a person?",
            &Opening::default(),
        )
        .await
        .unwrap();
    next_reply(&mut watch).await; // welcome
    // Nobody is online: no "connecting you" and no wait, the follow-up is offered at once.
    let (_, missed) = next_reply(&mut watch).await;
    assert!(missed.contains("e-mail"), "{missed}");
    let bad = w.desk.leave_email(&me, "not an address", "").await;
    assert!(bad.is_err());
    let left = w
        .desk
        .leave_email(&me, "jo@example.com", "Jo")
        .await
        .unwrap();
    assert_eq!(left.status, Status::Missed);
    assert_eq!(left.prechat.unwrap().email, "jo@example.com");

    // Ana is online but does not accept: the offer moves on, then the wait is missed.
    w.desk.set_available(&w.ana, true).await.unwrap();
    let other = w.visitor(4);
    let mut watch = w.desk.watch_visitor(&w.site, &other.visitor);
    let said = w
        .desk
        .say(
            &other,
            "m1".to_owned(),
            "talk to a human please",
            &Opening::default(),
        )
        .await
        .unwrap();
    next_reply(&mut watch).await;
    next_reply(&mut watch).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let c = w
        .store
        .conversation(&w.site, &said.conversation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.status, Status::Offered);
    w.advance(30);
    w.desk.tick().await;
    let c = w
        .store
        .conversation(&w.site, &said.conversation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.status, Status::Queued, "the offer was withdrawn");
    w.advance(90);
    w.desk.tick().await;
    let c = w
        .store
        .conversation(&w.site, &said.conversation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.status, Status::Missed);
    assert!(next_reply(&mut watch).await.1.contains("e-mail"));
}

#[tokio::test]
async fn bad_input_is_refused_with_a_reason_and_an_idle_chat_closes() {
    let w = World::new().await;
    let me = w.visitor(5);
    for (text, why) in [
        ("", "some text"),
        ("   ", "some text"),
        (&"x".repeat(4001)[..], "at most 4000"),
        ("bell\u{7}", "control characters"),
    ] {
        let e = w
            .desk
            .say(&me, "m".to_owned(), text, &Opening::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(why), "{text:?}: {e}");
    }
    let script = "<script>alert(1)</script>";
    let said = w
        .desk
        .say(&me, "m1".to_owned(), script, &Opening::default())
        .await
        .unwrap();
    assert_eq!(said.message.text, script, "stored as text, shown as text");
    w.advance(31 * 60);
    w.desk.tick().await;
    let c = w
        .store
        .conversation(&w.site, &said.conversation.id)
        .await
        .unwrap()
        .unwrap();
    assert!(c.status.is_closed(), "closed after 30 idle minutes");
}

#[tokio::test]
async fn a_rules_department_travels_with_the_conversation_and_support_problems_go_to_support() {
    let w = World::new().await;
    w.desk.set_available(&w.ana, true).await.unwrap();
    let from_rule = Opening {
        intervention: Some(("plan-compare".to_owned(), "i_1".to_owned())),
        department: Some("sales".to_owned()),
        prechat: None,
    };
    let me = w.visitor(6);
    let said = w
        .desk
        .say(&me, "m1".to_owned(), "Can I talk to a person?", &from_rule)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = w
        .store
        .conversation(&w.site, &said.conversation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        c.department.as_deref(),
        Some("sales"),
        "the rule's department"
    );
    assert_eq!(
        c.origin,
        beckon_store::conversations::Origin::Intervention {
            rule: "plan-compare".to_owned(),
            intervention: "i_1".to_owned()
        }
    );
    assert_eq!(c.status, Status::Offered);
    let other = w.visitor(7);
    let said = w
        .desk
        .say(&other, "m1".to_owned(), "Where is my order?", &from_rule)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = w
        .store
        .conversation(&w.site, &said.conversation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        c.department.as_deref(),
        Some("support"),
        "an order problem is support's"
    );
    assert_eq!(c.handoff.as_deref(), Some("has a problem with an order"));
}

#[tokio::test]
async fn a_conversation_is_transferred_to_a_department_or_a_person_and_survives_a_restart() {
    let w = World::new().await;
    let bo = w
        .store
        .create_user(&NewUser {
            email: "bo@shop.test".to_owned(),
            name: "Bo".to_owned(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
            role: Role::Agent,
            at: Timestamp::from_millis(0),
        })
        .await
        .unwrap();
    let bo = AgentRef {
        site: w.site.clone(),
        user: bo.id,
        name: "Bo".to_owned(),
        supervisor: false,
    };
    w.desk.set_available(&w.ana, true).await.unwrap();
    w.desk.set_available(&bo, true).await.unwrap();
    let me = w.visitor(8);
    let mut watch = w.desk.watch_visitor(&w.site, &me.visitor);
    let said = w
        .desk
        .say(
            &me,
            "m1".to_owned(),
            "Can I talk to a person?",
            &Opening::default(),
        )
        .await
        .unwrap();
    let id = said.conversation.id.clone();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let offered = w
        .store
        .conversation(&w.site, &id)
        .await
        .unwrap()
        .unwrap()
        .assignee
        .unwrap();
    let (holder, other) = if offered == w.ana.user {
        (&w.ana, &bo)
    } else {
        (&bo, &w.ana)
    };
    w.desk.accept(holder, &id).await.unwrap();
    let moved = w
        .desk
        .transfer(holder, &id, &beckon_agent::desk::Target::Person(other.user))
        .await
        .unwrap();
    assert_eq!(
        (moved.status, moved.assignee),
        (Status::Active, Some(other.user))
    );
    let passed = loop {
        let (_, text) = next_reply(&mut watch).await;
        if text.contains("passed the chat") {
            break text;
        }
    };
    assert!(passed.contains(&other.name), "{passed}");
    assert!(
        w.desk
            .agent_say(holder, &id, "x1".to_owned(), "still me?")
            .await
            .is_err(),
        "the first no longer holds it"
    );
    let queued = w
        .desk
        .transfer(
            other,
            &id,
            &beckon_agent::desk::Target::Department("sales".to_owned()),
        )
        .await
        .unwrap();
    assert_eq!(queued.department.as_deref(), Some("sales"));
    assert!(
        matches!(queued.status, Status::Queued | Status::Offered),
        "{:?}",
        queued.status
    );
    let unknown = w
        .desk
        .transfer(
            other,
            &id,
            &beckon_agent::desk::Target::Department("nope".to_owned()),
        )
        .await;
    assert!(unknown.is_err());

    // A new desk over the same store picks the open conversation up and routes it again,
    // even when another visitor reached it first (as one does on a node that just became the
    // site's desk): the conversation already running there is left as it is.
    let desk = Desk::new(
        w.store.clone(),
        Arc::new(NoContext),
        Arc::new(|| Timestamp::from_millis(1_780_000_100_000)),
    );
    desk.say(&w.visitor(99), "o1".to_owned(), "Hi", &Opening::default())
        .await
        .unwrap();
    assert_eq!(desk.resume().await.unwrap(), 1);
    assert_eq!(desk.board(&w.site).queue.len(), 1, "waiting again");
    let again = desk
        .say(&me, "m2".to_owned(), "Hello?", &Opening::default())
        .await
        .unwrap();
    assert_eq!(again.conversation.id, id, "the same conversation goes on");
    assert_eq!(
        again.message.seq,
        w.store
            .conversation(&w.site, &id)
            .await
            .unwrap()
            .unwrap()
            .last_seq
    );
}

/// Found in review: a person taking a conversation offered to someone else must keep it.
#[tokio::test]
async fn a_person_taking_a_conversation_offered_to_another_keeps_it() {
    let w = World::new().await;
    let bo = w.person("bo@shop.test", "Bo").await;
    w.desk.set_available(&w.ana, true).await.unwrap();
    w.desk.set_available(&bo, true).await.unwrap();
    for how in ["accept", "write", "transfer"] {
        let me = w.visitor(match how {
            "accept" => 20,
            "write" => 21,
            _ => 22,
        });
        let said = w
            .desk
            .say(
                &me,
                "m1".to_owned(),
                "talk to a person",
                &Opening::default(),
            )
            .await
            .unwrap();
        let id = said.conversation.id.clone();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let c = w.store.conversation(&w.site, &id).await.unwrap().unwrap();
        assert_eq!(c.status, Status::Offered);
        let (offered, taker) = if c.assignee == Some(w.ana.user) {
            (&w.ana, &bo)
        } else {
            (&bo, &w.ana)
        };
        match how {
            "accept" => {
                w.desk.accept(taker, &id).await.unwrap();
            }
            "write" => {
                w.desk
                    .agent_say(taker, &id, "a1".to_owned(), "I'll take this")
                    .await
                    .unwrap();
            }
            _ => {
                w.desk.accept(offered, &id).await.unwrap();
                w.desk
                    .transfer(
                        offered,
                        &id,
                        &beckon_agent::desk::Target::Person(taker.user),
                    )
                    .await
                    .unwrap();
            }
        }
        let c = w.store.conversation(&w.site, &id).await.unwrap().unwrap();
        assert_eq!(
            (c.status, c.assignee),
            (Status::Active, Some(taker.user)),
            "{how}: the taker holds it"
        );
        w.desk.agent_close(taker, &id).await.unwrap();
    }
}

impl World {
    async fn person(&self, email: &str, name: &str) -> AgentRef {
        let user = self
            .store
            .create_user(&NewUser {
                email: email.to_owned(),
                name: name.to_owned(),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
                role: Role::Agent,
                at: Timestamp::from_millis(0),
            })
            .await
            .unwrap();
        AgentRef {
            site: self.site.clone(),
            user: user.id,
            name: name.to_owned(),
            supervisor: false,
        }
    }
}

/// Found in review: races between tabs, and a message after the end.
#[tokio::test]
async fn two_tabs_asking_for_a_person_hand_off_once_and_a_message_after_the_end_starts_a_new_chat()
{
    let w = World::new().await;
    w.desk.set_available(&w.ana, true).await.unwrap();
    let me = w.visitor(30);
    let said = w
        .desk
        .say(&me, "m1".to_owned(), "hello", &Opening::default())
        .await
        .unwrap();
    let id = said.conversation.id.clone();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (a, b) = tokio::join!(w.desk.ask_person(&me), w.desk.ask_person(&me));
    a.unwrap();
    b.unwrap();
    let all = w.store.messages(&w.site, &id, 0, 100).await.unwrap();
    assert_eq!(
        all.iter()
            .filter(|m| m.text.contains("connecting you"))
            .count(),
        1,
        "{all:?}"
    );

    w.desk.visitor_close(&me).await.unwrap();
    let after = w
        .desk
        .say(
            &me,
            "m9".to_owned(),
            "one more question",
            &Opening::default(),
        )
        .await
        .unwrap();
    assert_ne!(after.conversation.id, id, "a new conversation");
    let old = w.store.messages(&w.site, &id, 0, 100).await.unwrap();
    assert!(
        !old.iter().any(|m| m.text == "one more question"),
        "nothing after the end of the old one"
    );
}

/// Found in review: a file resent under its id is stored once.
#[tokio::test]
async fn a_file_resent_under_its_id_is_stored_once() {
    let w = World::new().await;
    let me = w.visitor(31);
    let png = [
        0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R',
    ];
    let first = w
        .desk
        .visitor_file(&me, "f1".to_owned(), "a.png", &png)
        .await
        .unwrap();
    let again = w
        .desk
        .visitor_file(&me, "f1".to_owned(), "a.png", &png)
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message.seq, first.message.seq);
    let file = first.message.attachment.unwrap();
    assert_eq!(
        again.message.attachment.unwrap().id,
        file.id,
        "the same file"
    );
}

/// Found in review: only the holder (or an administrator) ends or passes on a held chat; a
/// person whose consoles have all closed for a minute is taken for away.
#[tokio::test]
async fn a_held_chat_is_the_holders_and_a_person_without_a_console_goes_away() {
    let w = World::new().await;
    let bo = w.person("bo2@shop.test", "Bo").await;
    w.desk.set_available(&w.ana, true).await.unwrap();
    let me = w.visitor(32);
    let said = w
        .desk
        .say(
            &me,
            "m1".to_owned(),
            "talk to a person",
            &Opening::default(),
        )
        .await
        .unwrap();
    let id = said.conversation.id.clone();
    tokio::time::sleep(Duration::from_millis(150)).await;
    w.desk.accept(&w.ana, &id).await.unwrap();
    assert!(
        w.desk.agent_close(&bo, &id).await.is_err(),
        "not Bo's to end"
    );
    assert!(
        w.desk
            .transfer(
                &bo,
                &id,
                &beckon_agent::desk::Target::Department("sales".to_owned())
            )
            .await
            .is_err()
    );
    let boss = AgentRef {
        supervisor: true,
        ..bo.clone()
    };
    w.desk.agent_close(&boss, &id).await.unwrap();

    let console = w.desk.console_open(&w.ana);
    w.advance(120);
    w.desk.tick().await;
    assert!(w.desk.is_available(&w.ana), "a console is open");
    drop(console);
    w.advance(30);
    w.desk.tick().await;
    assert!(w.desk.is_available(&w.ana), "not a minute yet");
    w.advance(31);
    w.desk.tick().await;
    assert!(
        !w.desk.is_available(&w.ana),
        "no console for a minute: away"
    );
}

/// Found in review: a tab resending, after the chat ended, a message it never heard stored
/// gets the stored one back instead of a new conversation.
#[tokio::test]
async fn a_resend_after_the_end_is_a_duplicate_not_a_new_conversation() {
    let w = World::new().await;
    let me = w.visitor(40);
    let first = w
        .desk
        .say(
            &me,
            "m1".to_owned(),
            "Do you ship to Canada?",
            &Opening::default(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    w.desk.visitor_close(&me).await.unwrap();
    let again = w
        .desk
        .say(
            &me,
            "m1".to_owned(),
            "Do you ship to Canada?",
            &Opening::default(),
        )
        .await
        .unwrap();
    assert!(again.duplicate, "the stored message");
    assert_eq!(again.conversation.id, first.conversation.id);
    assert_eq!(again.message.seq, first.message.seq);
    let latest = w
        .store
        .latest_conversation_of(&w.site, &me.visitor)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        latest.id, first.conversation.id,
        "no new conversation was opened"
    );
    // A new message after the end does start one.
    let next = w
        .desk
        .say(
            &me,
            "m2".to_owned(),
            "Another question",
            &Opening::default(),
        )
        .await
        .unwrap();
    assert_ne!(next.conversation.id, first.conversation.id);
}

#[tokio::test]
async fn an_address_left_in_a_chat_is_a_lead_and_the_conversation_is_announced() {
    use beckon_store::leads::{LeadQuery, LeadSource, Leads};
    use beckon_store::outbox::{DeliveryQuery, Destination, DestinationId, Outbox, Target, Topic};
    let w = World::new().await;
    w.store
        .put_destination(&Destination {
            id: DestinationId::random(),
            site: w.site.clone(),
            name: "CRM".to_owned(),
            target: Target::Webhook {
                url: "https://crm.example/hook".to_owned(),
                secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
                previous: None,
            },
            topics: Topic::ALL.to_vec(),
            enabled: true,
            disabled_reason: None,
            created_at: beckon_engine::Timestamp::from_millis(0),
        })
        .await
        .unwrap();
    let me = w.visitor(8);
    let mut watch = w.desk.watch_visitor(&w.site, &me.visitor);
    w.desk
        .say(
            &me,
            "m1".to_owned(),
            "Can I talk to a person about a bulk order?",
            &Opening::default(),
        )
        .await
        .unwrap();
    next_reply(&mut watch).await;
    next_reply(&mut watch).await; // nobody is online: the follow-up is offered
    let early = w.visitor(9);
    w.desk
        .say(&early, "m1".to_owned(), "Hello?", &Opening::default())
        .await
        .unwrap();
    assert!(
        w.desk
            .leave_email(&early, "jo@example.com", "Jo")
            .await
            .is_err(),
        "no address before the follow-up is offered"
    );
    let c = w
        .desk
        .leave_email(&me, " jo@example.com ", "Jo")
        .await
        .unwrap();
    assert!(
        w.desk
            .leave_email(&me, "again@example.com", "Jo")
            .await
            .is_err(),
        "once per chat"
    );
    let leads = w.store.leads(&w.site, &LeadQuery::default()).await.unwrap();
    assert_eq!(leads.len(), 1);
    let lead = &leads[0];
    assert_eq!(lead.email, "jo@example.com");
    assert_eq!(lead.name, "Jo");
    assert_eq!(lead.source, LeadSource::Chat);
    assert_eq!(lead.question, "Can I talk to a person about a bulk order?");
    assert!(lead.consent.text.contains("Leave your e-mail address"));
    assert_eq!(lead.context.conversation.as_ref(), Some(&c.id));
    assert!(
        lead.context
            .transcript
            .iter()
            .any(|l| l.text == "Can I talk to a person about a bulk order?"),
        "{:?}",
        lead.context.transcript
    );
    let sent = w
        .store
        .deliveries(&w.site, &DeliveryQuery::default())
        .await
        .unwrap();
    let topics: std::collections::HashSet<Topic> = sent.iter().map(|d| d.topic).collect();
    for t in [
        Topic::ConversationStarted,
        Topic::ConversationHandedOff,
        Topic::LeadCreated,
    ] {
        assert!(topics.contains(&t), "{t:?} announced: {topics:?}");
    }
    let handed: serde_json::Value = serde_json::from_str(
        &sent
            .iter()
            .find(|d| d.topic == Topic::ConversationHandedOff)
            .unwrap()
            .payload,
    )
    .unwrap();
    assert_eq!(handed["data"]["conversation"]["status"], "queued");
    assert!(
        handed["data"]["transcript"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["text"] == "Can I talk to a person about a bulk order?"),
        "{handed}"
    );
    // Closed and rated: both announced, with the transcript.
    w.desk.visitor_close(&me).await.unwrap();
    w.desk.rate(&me, 4, "Fine").await.unwrap();
    let sent = w
        .store
        .deliveries(&w.site, &DeliveryQuery::default())
        .await
        .unwrap();
    let rated: serde_json::Value = serde_json::from_str(
        &sent
            .iter()
            .find(|d| d.topic == Topic::ConversationRated)
            .expect("the rating is announced")
            .payload,
    )
    .unwrap();
    assert_eq!(rated["data"]["conversation"]["rating"]["score"], 4);
    assert!(sent.iter().any(|d| d.topic == Topic::ConversationClosed));
}
