//! Beckon's decision engine.
//!
//! Given a live session, its visitor's profile, one event and the current instant, the engine
//! decides whether this is the moment to step in: fire a rule's message, log a ghost exposure
//! for a held-out visitor, or do nothing — and tells the caller the next instant at which a
//! time-based condition could change, so that the server can wake the session then.
//!
//! The engine is pure: no I/O, no clock (time is an argument), no async, no global state. The
//! same inputs always give the same decision, which makes it fast, testable and replayable
//! from the event log.
//!
//! ```
//! use beckon_engine::*;
//!
//! let rules = RuleSet::from_toml(r#"
//!     [[rules]]
//!     id = "cart-exit"
//!     name = "Cart about to be abandoned"
//!     status = "live"
//!     when = { all = [
//!         { var = "cart.items", op = ">", value = 0 },
//!         { var = "behaviour.exit_intent", op = "==", value = true },
//!     ] }
//!     message = { type = "offer", text = "Wait! 10% off your cart", code = "STAY10" }
//! "#, Tz::UTC).unwrap();
//! let policy = Policy { holdout_percent: 0.0, ..Policy::default() };
//! let engine = Engine::new(SiteId::parse("shop").unwrap(), policy, rules).unwrap();
//!
//! let mut profile = Profile::default();
//! let t0 = Timestamp::from_secs(1_800_000_000);
//! let visitor = VisitorId::parse("v-1").unwrap();
//! let mut session = engine.start_session(visitor, SessionStart::default(), &mut profile, t0);
//! // A person moves the pointer: until then nothing is shown.
//! engine.decide(&mut session, &mut profile, &Event::Activity, t0.plus_ms(1_000));
//! let cart = Event::Cart(CartUpdate { value: 80.0, currency: "EUR".into(), items: 2 });
//! engine.decide(&mut session, &mut profile, &cart, t0.plus_ms(20_000));
//! let d = engine.decide(&mut session, &mut profile, &Event::ExitIntent, t0.plus_ms(30_000));
//! assert_eq!(d.outcome.rule().unwrap().id.as_str(), "cart-exit");
//! ```

pub mod device;
pub mod engine;
pub mod event;
pub mod hash;
pub mod ids;
pub mod page;
pub mod policy;
pub mod profile;
pub mod rules;
pub mod session;
pub mod time;
pub mod trace;

/// Time zones, for compiling rules in the site's zone.
pub use chrono_tz::Tz;
pub use device::{Device, DeviceType};
pub use engine::{Decision, Engine, Outcome};
pub use event::{AttrValue, CartUpdate, Event, PageView, Tracked, Utm};
pub use ids::{EventId, IdError, RuleId, SessionId, SiteId, VisitorId};
pub use page::PageType;
pub use policy::Policy;
pub use profile::Profile;
pub use rules::{LoadError, Rule, RuleSet};
pub use session::{Arm, Session, SessionStart};
pub use time::Timestamp;
pub use trace::{Suppression, Trace, Verdict};
