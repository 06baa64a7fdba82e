//! Password hashing: Argon2id with the library's recommended parameters (OWASP's first
//! choice: 19 MiB, two passes, one lane), in PHC strings that carry their own parameters, so
//! that stronger parameters later still verify old hashes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// The shortest password accepted.
pub const MIN_LEN: usize = 10;
/// The longest password accepted (hashing cost grows with it).
pub const MAX_LEN: usize = 256;

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// Why a password cannot be used.
pub fn check(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(format!("a password needs at least {MIN_LEN} characters"));
    }
    if n > MAX_LEN {
        return Err(format!("a password may have at most {MAX_LEN} characters"));
    }
    Ok(())
}

/// Hashes a password with a fresh random salt.
pub fn hash(password: &str) -> String {
    let mut bytes = [0u8; 16];
    rand::Rng::fill(&mut rand::rng(), &mut bytes);
    let salt = SaltString::encode_b64(&bytes).expect("16 bytes is a valid salt");
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2id with default parameters cannot fail on a bounded password")
        .to_string()
}

/// Whether `password` matches the PHC string `stored` (false for a damaged hash).
pub fn verify(password: &str, stored: &str) -> bool {
    if password.len() > MAX_LEN * 4 {
        return false;
    }
    PasswordHash::new(stored)
        .is_ok_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash that no password matches, verified against when an address is unknown, so that a
/// wrong address takes as long to refuse as a wrong password.
pub fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("not a password anyone has: decoy"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse battery");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterx", &h));
        assert!(!verify("correct horse battery", "not a phc string"));
        assert_ne!(h, hash("correct horse battery"), "salted");
    }

    #[test]
    fn short_and_huge_passwords_are_refused_with_a_reason() {
        assert!(check("short").unwrap_err().contains("at least 10"));
        assert!(check(&"x".repeat(300)).unwrap_err().contains("at most 256"));
        assert!(check("long enough pass").is_ok());
    }
}
