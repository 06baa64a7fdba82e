//! HTTP and WebSocket handlers: extract, one call into the domain, respond.

pub mod assets;
pub mod chat;
pub mod events;
pub mod health;
pub mod server_events;
pub mod ws;
