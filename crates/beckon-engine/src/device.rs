//! The visitor's device, as parsed from the user agent at the edge.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Desktop, tablet or mobile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceType {
    /// A desktop or laptop computer.
    #[default]
    Desktop,
    /// A tablet.
    Tablet,
    /// A phone.
    Mobile,
}

impl DeviceType {
    /// Every device type.
    pub const ALL: [DeviceType; 3] = [DeviceType::Desktop, DeviceType::Tablet, DeviceType::Mobile];

    /// The name used in rules and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::Desktop => "desktop",
            DeviceType::Tablet => "tablet",
            DeviceType::Mobile => "mobile",
        }
    }
}

impl fmt::Display for DeviceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeviceType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!("unknown device type {s:?}; expected one of desktop, tablet, mobile")
            })
    }
}

/// What the edge learned about the device. The engine does not parse user agents itself: that
/// is I/O-free but data-heavy work that belongs to the server, which also judges bots.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// Desktop, tablet or mobile.
    pub kind: DeviceType,
    /// Browser family, e.g. "Chrome", "Firefox", "Safari".
    pub browser: String,
    /// The browser's major version, 0 when unknown.
    pub browser_version: u32,
    /// Operating system family, e.g. "Windows", "macOS", "iOS", "Android".
    pub os: String,
}
