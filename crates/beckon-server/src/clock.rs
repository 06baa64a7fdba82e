//! The server's clock, part of its state. The engine never reads a clock; the server reads this
//! one and passes the instant in. Tests use [`Clock::tokio`], which follows tokio's time, so
//! that timer tests run on paused time instead of waiting on the wall clock.

use std::time::{SystemTime, UNIX_EPOCH};

use beckon_engine::Timestamp;

/// Where "now" comes from.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The system's wall clock.
    #[default]
    System,
    /// `base` at the moment `start` was taken, then advancing with tokio's clock (which a test
    /// may pause and advance).
    Tokio {
        /// The wall-clock instant at `start`.
        base: Timestamp,
        /// tokio's instant at `base`.
        start: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock that follows tokio's time from `base`.
    pub fn tokio(base: Timestamp) -> Clock {
        Clock::Tokio {
            base,
            start: tokio::time::Instant::now(),
        }
    }

    /// Now.
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => {
                let ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                Timestamp::from_millis(ms)
            }
            Clock::Tokio { base, start } => base.plus_ms(start.elapsed().as_millis() as i64),
        }
    }
}
