//! The demo shop's knowledge answers the questions its rules suggest, and knows what it does
//! not know.

use std::path::Path;

use beckon_agent::knowledge::Knowledge;
use beckon_agent::responder::{DONT_KNOW, offline_answer};

fn demo() -> Knowledge {
    Knowledge::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../demo/knowledge"))
        .expect("the demo's knowledge reads")
}

#[test]
fn the_demo_answers_its_common_questions_from_the_right_passage() {
    let k = demo();
    for (question, expect) in [
        ("do you ship to Canada?", "Canada"),
        ("How long does shipping take?", "same business day"),
        ("What is your return policy?", "60 days"),
        ("How does the sizing run?", "true to size"),
        ("can I pay with paypal", "PayPal"),
        ("is the drizzle jacket in stock?", "out of stock"),
        ("how much is the Summit daypack", "89.00 USD"),
    ] {
        let reply = offline_answer(&k, question);
        assert!(reply.known, "{question:?} has an answer");
        assert!(
            reply.text.contains(expect),
            "{question:?} got {:?}",
            reply.text
        );
    }
}

#[test]
fn the_demo_does_not_answer_what_it_does_not_hold() {
    let k = demo();
    for question in [
        "Do you have a shop in Berlin?",
        "What is the warranty on the daypack?",
        "Can I pay in bitcoin?",
        "Who won the game last night?",
    ] {
        let reply = offline_answer(&k, question);
        assert!(!reply.known, "{question:?} got {:?}", reply.text);
        assert_eq!(reply.text, DONT_KNOW);
    }
}
