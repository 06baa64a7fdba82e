//! The admin side's time: the system clock, as the engine's timestamps.

use beckon_engine::Timestamp;

/// Now.
pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Timestamp::from_millis(ms)
}
