//! One visitor's visit, as the widget would report it: a page view, then scrolling, activity,
//! hovers and clicks on tracked elements, tab switches, a cart, now and then an exit intent,
//! a custom event, an identify or an order, in batches.
//!
//! The pages and tracked elements are the demo shop's, so that the example rules meet the
//! situations they are written for (a cart and an exit intent, a pricing page with plans
//! compared). Ids follow the protocol: `v_` and `s_` plus 20 base-36 characters, and event ids
//! `session:load:sequence`.

use serde_json::{Value, json};

/// What the widget says about the browser, sent with every HTTP batch and with the first
/// WebSocket frame.
pub fn context() -> Value {
    json!({ "lang": "en-US", "tz_offset": 60, "screen": [1280, 800], "webdriver": false })
}

/// A visitor id and token issued by the server (`identity` in `docs/wire-protocol.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The visitor id to use from now on.
    pub visitor: String,
    /// The token that goes with it.
    pub token: String,
}

impl Identity {
    /// The identity an answer carries: the `identity` member of an HTTP answer, or an
    /// `identity` frame. A server that predates tokens never sends one.
    pub fn of(answer: &Value) -> Option<Identity> {
        let obj = match answer.get("type").and_then(Value::as_str) {
            Some("identity") => answer,
            _ => answer.get("identity")?,
        };
        Some(Identity {
            visitor: obj.get("visitor")?.as_str()?.to_owned(),
            token: obj.get("token")?.as_str()?.to_owned(),
        })
    }
}

/// The events of one batch and their ids, in order.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The wire events.
    pub events: Vec<Value>,
    /// Their ids.
    pub ids: Vec<String>,
}

/// One visitor's visit: the ids it speaks under and where it is on the site.
#[derive(Debug)]
pub struct Visit {
    /// The visitor id: the one drawn here until the server issues another.
    pub visitor: String,
    /// The server's token for [`Visit::visitor`], once issued.
    pub token: Option<String>,
    /// The session id.
    pub session: String,
    /// The browser's user agent.
    pub user_agent: String,
    load: String,
    seq: u64,
    batches_left: u32,
    page: usize,
    depth: u8,
    cart_items: u32,
    visible: bool,
    clock_ms: i64,
}

impl Visit {
    /// A new visitor, on its first page load, who will send `batches` batches.
    pub fn new(rng: &mut fastrand::Rng, batches: u32, user_agent: String) -> Visit {
        let clock_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Visit {
            visitor: format!("v_{}", base36(rng, 20)),
            token: None,
            session: format!("s_{}", base36(rng, 20)),
            user_agent,
            load: base36(rng, 6),
            seq: 0,
            batches_left: batches,
            page: rng.usize(..PAGES.len()),
            depth: 0,
            cart_items: 0,
            visible: true,
            clock_ms,
        }
    }

    /// Whether every batch of the visit has been drawn.
    pub fn is_over(&self) -> bool {
        self.batches_left == 0
    }

    /// Switches to the identity the server issued: later batches and sockets speak for it.
    pub fn adopt(&mut self, identity: Identity) {
        self.visitor = identity.visitor;
        self.token = Some(identity.token);
    }

    /// The next `n` events. The visit's first event is a page view.
    pub fn next_batch(&mut self, rng: &mut fastrand::Rng, n: usize) -> Batch {
        self.batches_left = self.batches_left.saturating_sub(1);
        let mut batch = Batch {
            events: Vec::with_capacity(n),
            ids: Vec::with_capacity(n),
        };
        for _ in 0..n {
            self.seq += 1;
            self.clock_ms += rng.i64(300..4_000);
            let id = format!("{}:{}:{}", self.session, self.load, self.seq);
            let mut event = self.event(rng);
            let obj = event.as_object_mut().expect("events are objects");
            obj.insert("id".into(), Value::String(id.clone()));
            obj.insert("t".into(), Value::from(self.clock_ms));
            batch.events.push(event);
            batch.ids.push(id);
        }
        batch
    }

    /// The body of `POST /v1/events` for `batch`.
    pub fn http_body(&self, site: &str, batch: &Batch) -> Vec<u8> {
        let mut body = json!({
            "site": site,
            "visitor": self.visitor,
            "session": self.session,
            "context": context(),
            "events": batch.events,
        });
        if let Some(token) = &self.token {
            body["token"] = Value::String(token.clone());
        }
        serde_json::to_vec(&body).expect("JSON values serialise")
    }

    /// The `events` frame for `batch`; the context goes with the socket's first frame only,
    /// as the widget sends it.
    pub fn ws_frame(&self, batch: &Batch, first: bool) -> String {
        let mut frame = json!({ "type": "events", "events": batch.events });
        if first {
            frame["context"] = context();
        }
        serde_json::to_string(&frame).expect("JSON values serialise")
    }

    /// The path and query of `GET /v1/ws` for this visitor.
    pub fn ws_path(&self, site: &str) -> String {
        let mut path = format!(
            "/v1/ws?site={}&visitor={}&session={}",
            query_escape(site),
            query_escape(&self.visitor),
            query_escape(&self.session)
        );
        if let Some(token) = &self.token {
            path.push_str("&token=");
            path.push_str(&query_escape(token));
        }
        path
    }

    /// One event after the current state, without id and time.
    fn event(&mut self, rng: &mut fastrand::Rng) -> Value {
        if self.seq == 1 {
            return self.page_view(rng, true);
        }
        let mut pick = rng.u32(..KINDS.iter().map(|(_, w)| w).sum::<u32>());
        let kind = KINDS
            .iter()
            .find(|(_, w)| {
                let hit = pick < *w;
                pick = pick.saturating_sub(*w);
                hit
            })
            .map_or(Kind::Activity, |(k, _)| *k);
        let page = &PAGES[self.page];
        match kind {
            Kind::Page => {
                self.page = rng.usize(..PAGES.len());
                self.page_view(rng, false)
            }
            Kind::Scroll => {
                self.depth = self.depth.saturating_add(rng.u8(5..25)).min(100);
                json!({ "type": "scroll", "depth": self.depth })
            }
            Kind::Activity => json!({ "type": "activity" }),
            Kind::Idle => json!({ "type": "idle" }),
            Kind::ExitIntent => json!({ "type": "exit_intent" }),
            Kind::Visibility => {
                self.visible = !self.visible;
                json!({ "type": "visibility", "visible": self.visible })
            }
            Kind::Hover | Kind::Click => {
                let element = page.elements[rng.usize(..page.elements.len())];
                let mut e = json!({
                    "type": if kind == Kind::Hover { "hover" } else { "click" },
                    "element": element,
                });
                if let Some(item) = page
                    .product
                    .or((element == "plan").then(|| ["starter", "growth", "pro"][rng.usize(..3)]))
                {
                    e["item"] = Value::from(item);
                }
                e
            }
            Kind::Cart => {
                self.cart_items += 1;
                json!({
                    "type": "cart",
                    "value": f64::from(self.cart_items) * 89.0,
                    "currency": "USD",
                    "items": self.cart_items,
                })
            }
            Kind::Track => json!({
                "type": "track",
                "name": "newsletter_viewed",
                "props": { "source": "footer", "position": 3 },
            }),
            Kind::Identify => json!({
                "type": "identify",
                "traits": { "plan": "growth", "returning_customer": true },
            }),
            Kind::Convert => {
                let value = f64::from(self.cart_items) * 89.0;
                self.cart_items = 0;
                json!({
                    "type": "convert",
                    "order_id": format!("o_{}_{}", self.session, self.seq),
                    "value": value,
                })
            }
        }
    }

    fn page_view(&mut self, rng: &mut fastrand::Rng, landing: bool) -> Value {
        self.depth = 0;
        let page = &PAGES[self.page];
        let referrer = if landing {
            ["", "https://www.google.com/", "https://news.example/gear"][rng.usize(..3)].to_owned()
        } else {
            "http://load.test/".to_owned()
        };
        let mut e = json!({
            "type": "page",
            "url": format!("http://load.test{}", page.path),
            "path": page.path,
            "title": page.title,
            "page_type": page.page_type,
            "referrer": referrer,
        });
        if let Some(product) = page.product {
            e["product"] = Value::from(product);
        }
        e
    }
}

/// A page of the demo shop.
struct Page {
    path: &'static str,
    title: &'static str,
    page_type: &'static str,
    product: Option<&'static str>,
    /// Its `data-beckon-track` elements.
    elements: &'static [&'static str],
}

const PAGES: &[Page] = &[
    Page {
        path: "/",
        title: "Ridgeline Outfitters",
        page_type: "home",
        product: None,
        elements: &["nav-cart"],
    },
    Page {
        path: "/category.html",
        title: "Trail gear",
        page_type: "category",
        product: None,
        elements: &["sort", "nav-cart"],
    },
    Page {
        path: "/product-ridgeline-trail-runner.html",
        title: "Ridgeline Trail Runner",
        page_type: "product",
        product: Some("ridgeline-trail-runner"),
        elements: &["add-to-cart", "size-guide", "shipping-info", "returns-info"],
    },
    Page {
        path: "/product-drizzle-shell-jacket.html",
        title: "Drizzle Shell Jacket",
        page_type: "product",
        product: Some("drizzle-shell-jacket"),
        elements: &["add-to-cart", "size-guide", "shipping-info", "returns-info"],
    },
    Page {
        path: "/pricing.html",
        title: "Membership plans",
        page_type: "pricing",
        product: None,
        elements: &["plan", "choose-plan", "pricing-faq"],
    },
    Page {
        path: "/article.html",
        title: "How to choose trail shoes",
        page_type: "article",
        product: None,
        elements: &["article-product", "nav-cart"],
    },
    Page {
        path: "/cart.html",
        title: "Your cart",
        page_type: "cart",
        product: None,
        elements: &["coupon", "begin-checkout"],
    },
    Page {
        path: "/checkout.html",
        title: "Checkout",
        page_type: "checkout",
        product: None,
        elements: &["coupon", "place-order"],
    },
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Page,
    Scroll,
    Activity,
    Idle,
    ExitIntent,
    Visibility,
    Hover,
    Click,
    Cart,
    Track,
    Identify,
    Convert,
}

/// How often each kind of event follows the landing page view, in parts of 100: mostly
/// scrolling and activity, as a widget reports them.
const KINDS: &[(Kind, u32)] = &[
    (Kind::Page, 8),
    (Kind::Scroll, 24),
    (Kind::Activity, 20),
    (Kind::Hover, 12),
    (Kind::Click, 6),
    (Kind::Visibility, 8),
    (Kind::Cart, 6),
    (Kind::Idle, 5),
    (Kind::ExitIntent, 3),
    (Kind::Track, 4),
    (Kind::Identify, 2),
    (Kind::Convert, 2),
];

/// `n` random characters of `[0-9a-z]`.
pub fn base36(rng: &mut fastrand::Rng, n: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..n)
        .map(|_| DIGITS[rng.usize(..DIGITS.len())] as char)
        .collect()
}

/// Percent-encodes everything but the unreserved characters of RFC 3986.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_visit_lands_on_a_page_and_numbers_its_events() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut visit = Visit::new(&mut rng, 2, crate::load::CHROME.to_owned());
        let first = visit.next_batch(&mut rng, 10);
        assert_eq!(first.events[0]["type"], "page");
        assert_eq!(first.ids.len(), 10);
        assert!(first.ids[9].ends_with(":10"), "{:?}", first.ids[9]);
        assert!(!visit.is_over());
        let second = visit.next_batch(&mut rng, 10);
        assert!(second.ids[0].ends_with(":11"));
        assert!(visit.is_over());
        let id_ok = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c))
        };
        assert!(first.ids.iter().chain(&second.ids).all(|id| id_ok(id)));
        assert_eq!(visit.visitor.len(), 22);
    }

    #[test]
    fn an_issued_identity_replaces_the_drawn_one() {
        let mut rng = fastrand::Rng::with_seed(1);
        let mut visit = Visit::new(&mut rng, 1, crate::load::CHROME.to_owned());
        let answer = json!({ "accepted": 1, "identity": { "visitor": "v_new", "token": "a+b/c" } });
        visit.adopt(Identity::of(&answer).expect("an identity"));
        assert_eq!(visit.visitor, "v_new");
        let batch = visit.next_batch(&mut rng, 1);
        let body: Value = serde_json::from_slice(&visit.http_body("load", &batch)).unwrap();
        assert_eq!(body["token"], "a+b/c");
        assert!(visit.ws_path("load").ends_with("&token=a%2Bb%2Fc"));
        let frame = json!({ "type": "identity", "visitor": "v_x", "token": "t" });
        assert_eq!(Identity::of(&frame).map(|i| i.visitor), Some("v_x".into()));
        assert_eq!(Identity::of(&json!({ "accepted": 1 })), None);
    }
}
