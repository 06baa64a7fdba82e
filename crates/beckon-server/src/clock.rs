//! The server's clock. The engine never reads a clock; the server reads this one and passes
//! the instant in.

use std::time::{SystemTime, UNIX_EPOCH};

use beckon_engine::Timestamp;

/// Now, as a [`Timestamp`].
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Timestamp::from_millis(ms)
}
