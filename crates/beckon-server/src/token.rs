//! Visitor tokens: proof that a visitor id was issued by this installation to whoever presents
//! it. A token is the HMAC-SHA256 of the site key and the visitor id under the installation's
//! secret key (which the store keeps, so every node shares it), truncated to 128 bits and
//! URL-safe base64 encoded. Nothing is kept per visitor: a token is checked by recomputing it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use beckon_engine::{SiteId, VisitorId};
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

    /// A new visitor: a fresh id (`v_` and 20 base-36 characters) and its token.
    pub fn mint(&self, site: &SiteId) -> (VisitorId, String) {
        let mut rng = rand::rng();
        let tail: String = (0..20)
            .map(|_| char::from_digit(rng.random_range(0..36), 36).expect("base 36"))
            .collect();
        let visitor = VisitorId::parse(&format!("v_{tail}")).expect("a valid id");
        let token = self.issue(site, &visitor);
        (visitor, token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_proves_one_visitor_on_one_site_under_one_key() {
        let tokens = Tokens::new([7; 32]);
        let shop = SiteId::parse("shop").unwrap();
        let (ada, token) = tokens.mint(&shop);
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
        assert_ne!(tokens.mint(&shop).0, ada, "ids are random");
    }
}
