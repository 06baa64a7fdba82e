//! Visitor tokens: proof that a visitor id was issued by this installation to whoever presents
//! it. A token is the HMAC-SHA256 of the site key and the visitor id under the installation's
//! secret key (which the store keeps, so every node shares it), truncated to 128 bits and
//! URL-safe base64 encoded. Nothing is kept per visitor: a token is checked by recomputing it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use beckon_engine::{SiteId, Timestamp, VisitorId};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

/// The bytes of the MAC a token carries.
const TOKEN_BYTES: usize = 16;

/// Issues and checks visitor tokens.
#[derive(Clone)]
pub struct Tokens {
    key: [u8; 32],
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(<secret>)")
    }
}

impl Tokens {
    /// Tokens under `key`.
    pub fn new(key: [u8; 32]) -> Tokens {
        Tokens { key }
    }

    fn mac(&self, site: &SiteId, visitor: &VisitorId) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        // The site key cannot contain NUL, so the pair is unambiguous.
        mac.update(site.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(visitor.as_str().as_bytes());
        mac
    }

    /// The token of `visitor` on `site`.
    pub fn issue(&self, site: &SiteId, visitor: &VisitorId) -> String {
        let tag = self.mac(site, visitor).finalize().into_bytes();
        URL_SAFE_NO_PAD.encode(&tag[..TOKEN_BYTES])
    }

    /// Whether `token` is `visitor`'s on `site` (compared in constant time).
    pub fn verify(&self, site: &SiteId, visitor: &VisitorId, token: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        tag.len() == TOKEN_BYTES && self.mac(site, visitor).verify_truncated_left(&tag).is_ok()
    }

    /// A new visitor: a fresh id and its token. The id is `v_` and 20 base-36 characters: the
    /// first [`TIME_DIGITS`] are the time it was minted, the rest random (about 57 bits), so
    /// that ids sort by age. Every index of the store keyed by visitor then holds the visitors
    /// of the last minutes — those sending nearly all the events — in its last few pages,
    /// instead of one page per visitor anywhere in the tree: a group commit rewrites a few
    /// pages rather than hundreds (the reason UUIDv7 exists). The time is no secret: it is the
    /// visitor's own first visit, in their own browser's storage.
    pub fn mint(&self, site: &SiteId, now: Timestamp) -> (VisitorId, String) {
        let mut rng = rand::rng();
        let mut id = String::with_capacity(22);
        id.push_str("v_");
        let ms = u64::try_from(now.as_millis()).unwrap_or(0);
        for i in (0..TIME_DIGITS).rev() {
            let digit = (ms / 36u64.pow(i)) % 36;
            id.push(char::from_digit(digit as u32, 36).expect("base 36"));
        }
        for _ in TIME_DIGITS..ID_DIGITS {
            id.push(char::from_digit(rng.random_range(0..36), 36).expect("base 36"));
        }
        let visitor = VisitorId::parse(&id).expect("a valid id");
        let token = self.issue(site, &visitor);
        (visitor, token)
    }
}

/// Base-36 characters of a minted visitor id.
const ID_DIGITS: u32 = 20;
/// Of those, the ones that say when it was minted: milliseconds since the epoch, which nine
/// base-36 digits hold for about 3,200 years.
const TIME_DIGITS: u32 = 9;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_proves_one_visitor_on_one_site_under_one_key() {
        let tokens = Tokens::new([7; 32]);
        let shop = SiteId::parse("shop").unwrap();
        let (ada, token) = tokens.mint(&shop, now());
        assert!(tokens.verify(&shop, &ada, &token));
        let bob = VisitorId::parse("v_bob").unwrap();
        assert!(!tokens.verify(&shop, &bob, &token), "another visitor");
        let other = SiteId::parse("other").unwrap();
        assert!(!tokens.verify(&other, &ada, &token), "another site");
        assert!(
            !Tokens::new([8; 32]).verify(&shop, &ada, &token),
            "another installation"
        );
        for forged in ["", "x", "!!!", &token[..token.len() - 1]] {
            assert!(!tokens.verify(&shop, &ada, forged), "{forged:?}");
        }
        assert_ne!(tokens.mint(&shop, now()).0, ada, "ids are random");
    }

    fn now() -> Timestamp {
        Timestamp::from_millis(1_780_000_000_000)
    }

    #[test]
    fn minted_ids_sort_by_the_time_they_were_minted() {
        let tokens = Tokens::new([7; 32]);
        let shop = SiteId::parse("shop").unwrap();
        let mut minted = Vec::new();
        for step in [0, 1, 35, 36, 1_000, 86_400_000, 10 * 365 * 86_400_000] {
            let at = Timestamp::from_millis(now().as_millis() + step);
            let (id, token) = tokens.mint(&shop, at);
            assert!(tokens.verify(&shop, &id, &token));
            assert_eq!(id.as_str().len(), 22, "{id}");
            assert!(
                id.as_str()[2..]
                    .chars()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
            );
            minted.push(id.as_str().to_owned());
        }
        let mut sorted = minted.clone();
        sorted.sort();
        assert_eq!(sorted, minted, "later ids sort after earlier ones");
        let (a, _) = tokens.mint(&shop, now());
        let (b, _) = tokens.mint(&shop, now());
        assert_ne!(a, b, "ids of the same millisecond still differ");
        assert_eq!(a.as_str()[..11], b.as_str()[..11], "and share their time");
    }
}
