//! Beckon's deliveries: leads and conversation events to the site's destinations — webhooks
//! signed to the Standard Webhooks specification, e-mail to the team and the visitor, alerts
//! to a Slack-compatible team chat — retried with backoff until they land or are marked dead.
//!
//! This crate knows no HTTP server and no widget: it reads the outbox through
//! [`beckon_store::outbox::Outbox`], which the capturing transactions fill, and it owns the
//! payloads' shape ([`payload`]), which the crates that capture call to write them.

pub mod email;
pub mod endpoint;
pub mod payload;
pub mod schedule;
pub mod slack;
pub mod webhook;
pub mod worker;

pub use worker::{Clock, Worker, WorkerConfig};

/// A new webhook signing secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// Checks a lead's address: RFC 5321/5322 form, with a domain that has a dot, at most 254
/// characters. Returns the address trimmed, or what is wrong with it.
pub fn check_email(address: &str) -> Result<String, String> {
    let a = address.trim();
    if a.is_empty() {
        return Err("the e-mail address is empty".to_owned());
    }
    if a.len() > 254 {
        return Err("the e-mail address is longer than 254 characters".to_owned());
    }
    if a.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "{a:?} is not an e-mail address: it holds spaces or control characters"
        ));
    }
    // A bare address: no display name (`Eve <eve@…>` names someone else), no domain literal,
    // and a domain of at least two labels.
    let options = email_address::Options {
        minimum_sub_domains: 2,
        allow_domain_literal: false,
        allow_display_text: false,
        ..email_address::Options::default()
    };
    let parsed = email_address::EmailAddress::parse_with_options(a, options)
        .map_err(|e| format!("{a:?} is not an e-mail address: {e}"))?;
    Ok(parsed.email().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked() {
        assert_eq!(check_email(" ada@example.com ").unwrap(), "ada@example.com");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@localhost",
            "a b@example.com",
            "ada@[127.0.0.1]",
            "Eve <eve@evil.example>",
            "\"a@b.example, c\" <eve@evil.example>",
            "Eve\r\nBcc: x@y.example <eve@evil.example>",
            "=cmd|' /C calc'!A0 <a@b.co>",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?}");
        }
        assert!(check_email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn secrets_are_what_the_specification_asks_for() {
        let s = new_secret();
        assert!(s.starts_with("whsec_"));
        assert!(standardwebhooks::Webhook::new(&s).is_ok());
        assert_ne!(s, new_secret());
    }
}
