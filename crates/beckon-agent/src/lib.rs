//! Beckon's conversations: the help desk (`desk`), the site's knowledge (`knowledge`), what a
//! message is about (`scope`), the responders behind one trait (`responder`) and routing to
//! people (`routing`). It knows no HTTP server, no wire shape and no SQL: the server and the
//! admin side translate into its calls, and the store keeps what it says.

pub mod budget;
pub mod desk;
pub mod files;
pub mod greeting;
pub mod knowledge;
pub mod model;
pub mod responder;
pub mod routing;
pub mod scope;

pub use desk::{Desk, DeskError};
