//! Beckon's statistics. Pure: no I/O, no storage, no clock; every number the dashboard shows
//! about lift, its interval, the sample-ratio check and the cost in annoyance is computed here
//! from counts the store hands over.

pub mod attribution;
pub mod cost;
pub mod facts;
pub mod lift;
pub mod moments;
pub mod report;
pub mod sequential;
pub mod settings;
pub mod srm;
mod student_t;

pub use lift::{Lift, relative_lift};
pub use moments::{Metric, Moments};
pub use sequential::{DEFAULT_TUNING, sequential_lift};
pub use srm::{SRM_THRESHOLD, srm_p_value};
