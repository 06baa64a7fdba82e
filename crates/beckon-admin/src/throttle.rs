//! Sign-in throttling: a few attempts per address per minute, and more per client address, so
//! that guessing a password costs days, not seconds. Kept in the process (governor's keyed
//! limiters); a successful sign-in does not refill the bucket.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Attempts per sign-in address per minute.
pub const PER_EMAIL_PER_MINUTE: u32 = 5;
/// Attempts per client address per minute.
pub const PER_CLIENT_PER_MINUTE: u32 = 20;

/// The limiters.
pub struct LoginThrottle {
    by_email: DefaultKeyedRateLimiter<String>,
    by_client: DefaultKeyedRateLimiter<IpAddr>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).expect("non-zero"));
        LoginThrottle {
            by_email: RateLimiter::keyed(per_minute(PER_EMAIL_PER_MINUTE)),
            by_client: RateLimiter::keyed(per_minute(PER_CLIENT_PER_MINUTE)),
        }
    }
}

impl LoginThrottle {
    /// Counts an attempt; whether it may go ahead.
    pub fn allow(&self, email: &str, client: Option<IpAddr>) -> bool {
        let client_ok = client.is_none_or(|ip| self.by_client.check_key(&ip).is_ok());
        client_ok && self.by_email.check_key(&email.to_owned()).is_ok()
    }

    /// Forgets keys whose buckets are full again (call now and then).
    pub fn sweep(&self) {
        self.by_email.retain_recent();
        self.by_client.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_five_tries_a_minute_and_others_are_unaffected() {
        let t = LoginThrottle::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..PER_EMAIL_PER_MINUTE {
            assert!(t.allow("a@example.test", Some(ip)));
        }
        assert!(!t.allow("a@example.test", Some(ip)));
        assert!(t.allow("b@example.test", Some(ip)));
    }

    #[test]
    fn one_client_cannot_spray_many_addresses() {
        let t = LoginThrottle::default();
        let ip: IpAddr = "192.0.2.2".parse().unwrap();
        let allowed = (0..100)
            .filter(|i| t.allow(&format!("p{i}@example.test"), Some(ip)))
            .count();
        assert_eq!(allowed, PER_CLIENT_PER_MINUTE as usize);
    }
}
