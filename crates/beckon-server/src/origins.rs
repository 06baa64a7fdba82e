//! What the install check shows: per site, the origins its pages' events came from, how many
//! were accepted and refused, and why the refused ones were. Bounded: a few origins per site,
//! the least recent forgotten first, and only sites the server knows.

use std::collections::HashMap;
use std::sync::Mutex;

use beckon_engine::{SiteId, Timestamp};

/// The most origins remembered per site.
pub const ORIGINS_PER_SITE: usize = 16;
/// The longest origin kept, in bytes (a longer one is cut).
pub const MAX_ORIGIN_BYTES: usize = 200;

/// One origin a site's events came from.
#[derive(Clone, Debug, PartialEq)]
pub struct OriginSeen {
    /// The `Origin` header (`(none)` when the request had none).
    pub origin: String,
    /// Requests accepted from it.
    pub accepted: u64,
    /// Requests refused from it.
    pub refused: u64,
    /// When it was last seen.
    pub last: Timestamp,
    /// Why the last refusal was, if any.
    pub reason: Option<String>,
}

/// The origins seen, per site.
#[derive(Default)]
pub struct Origins {
    seen: Mutex<HashMap<SiteId, Vec<OriginSeen>>>,
}

impl Origins {
    /// Counts a request from `origin` for `site`: accepted, or refused for `refused`.
    pub fn record(
        &self,
        site: &SiteId,
        origin: Option<&str>,
        refused: Option<&str>,
        now: Timestamp,
    ) {
        let mut origin = origin.unwrap_or("(none)");
        if origin.len() > MAX_ORIGIN_BYTES {
            let mut cut = MAX_ORIGIN_BYTES;
            while !origin.is_char_boundary(cut) {
                cut -= 1;
            }
            origin = &origin[..cut];
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let list = match seen.get_mut(site) {
            Some(list) => list,
            None => seen.entry(site.clone()).or_default(),
        };
        let entry = match list.iter().position(|o| o.origin == origin) {
            Some(i) => &mut list[i],
            None => {
                if list.len() >= ORIGINS_PER_SITE
                    && let Some(oldest) = list
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, o)| o.last)
                        .map(|(i, _)| i)
                {
                    list.swap_remove(oldest);
                }
                list.push(OriginSeen {
                    origin: origin.to_owned(),
                    accepted: 0,
                    refused: 0,
                    last: now,
                    reason: None,
                });
                list.last_mut().expect("just pushed")
            }
        };
        entry.last = now;
        match refused {
            Some(why) => {
                entry.refused += 1;
                entry.reason = Some(why.to_owned());
            }
            None => entry.accepted += 1,
        }
    }

    /// The origins seen for `site`, most recent first.
    pub fn of(&self, site: &SiteId) -> Vec<OriginSeen> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut list = seen.get(site).cloned().unwrap_or_default();
        list.sort_by_key(|o| std::cmp::Reverse(o.last));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_and_refused_are_counted_per_origin_and_bounded() {
        let o = Origins::default();
        let site = SiteId::parse("shop").unwrap();
        let t = Timestamp::from_millis;
        o.record(&site, Some("https://shop.example"), None, t(1));
        o.record(&site, Some("https://shop.example"), None, t(2));
        o.record(
            &site,
            Some("https://evil.example"),
            Some("not allowed"),
            t(3),
        );
        o.record(&site, None, Some("no Origin"), t(4));
        let seen = o.of(&site);
        assert_eq!(seen[0].origin, "(none)");
        let shop = seen
            .iter()
            .find(|s| s.origin == "https://shop.example")
            .unwrap();
        assert_eq!((shop.accepted, shop.refused), (2, 0));
        let evil = seen
            .iter()
            .find(|s| s.origin == "https://evil.example")
            .unwrap();
        assert_eq!(
            (evil.refused, evil.reason.as_deref()),
            (1, Some("not allowed"))
        );
        for i in 0..100 {
            o.record(
                &site,
                Some(&format!("https://{i}.example")),
                None,
                t(10 + i),
            );
        }
        assert_eq!(o.of(&site).len(), ORIGINS_PER_SITE);
        assert!(o.of(&SiteId::parse("other").unwrap()).is_empty());
        let long = "x".repeat(1000);
        o.record(&site, Some(&long), None, t(1000));
        assert_eq!(o.of(&site)[0].origin.len(), MAX_ORIGIN_BYTES);
    }
}
