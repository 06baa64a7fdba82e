//! Rendering a message from the session: what a visitor sends can never make it fail or grow.

use beckon_engine::rules::Message;
use beckon_engine::rules::message::{MAX_TEXT, render};
use beckon_engine::*;

fn session_with(events: &[Event]) -> (Session, Profile) {
    let engine = Engine::new(
        SiteId::parse("shop").unwrap(),
        Policy::default(),
        RuleSet::default(),
    )
    .unwrap();
    let mut profile = Profile::default();
    let t0 = Timestamp::from_secs(1_800_000_000);
    let mut session = engine.start_session(
        VisitorId::parse("v").unwrap(),
        SessionStart::default(),
        &mut profile,
        t0,
    );
    for e in events {
        engine.decide(&mut session, &mut profile, e, t0);
    }
    (session, profile)
}

fn text(m: &Message) -> &str {
    match m {
        Message::Text { text } => text,
        other => panic!("not a text: {other:?}"),
    }
}

#[test]
fn a_trait_that_is_not_a_number_renders_as_nothing_rather_than_failing() {
    let identify = Event::Identify {
        traits: vec![("budget".into(), AttrValue::Str("abc".into()))],
    };
    let (s, p) = session_with(&[identify]);
    let msg = Message::Text {
        text: "Budget: {{ visitor.traits.budget | money }}, cart {{ cart.value | money }}".into(),
    };
    let out = render(&msg, &s.template_context(&p)).expect("renders");
    assert_eq!(text(&out), "Budget: , cart ");
}

#[test]
fn a_long_value_cannot_make_a_long_message() {
    let view = Event::PageView(PageView {
        title: "x".repeat(10_000),
        ..PageView::default()
    });
    let (s, p) = session_with(&[view]);
    let msg = Message::Text {
        text: "{{ page.title }}{{ page.title }}".into(),
    };
    let out = render(&msg, &s.template_context(&p)).unwrap();
    assert_eq!(text(&out).chars().count(), MAX_TEXT);
}

#[test]
fn a_template_that_fails_to_render_shows_its_text_without_template_syntax() {
    use beckon_engine::rules::message::render_or_plain;
    let (s, p) = session_with(&[]);
    let broken = Message::Text {
        text: "Hi {{ visitor.name | no_such_filter }}, welcome back {% if x %}!".to_owned(),
    };
    let ctx = s.template_context(&p);
    assert!(render(&broken, &ctx).is_err(), "the template is broken");
    let (shown, error) = render_or_plain(&broken, &ctx);
    assert_eq!(text(&shown), "Hi, welcome back!");
    assert!(error.is_some());
    let fine = Message::Text {
        text: "Plain words".to_owned(),
    };
    assert_eq!(render_or_plain(&fine, &ctx), (fine.clone(), None));
}
