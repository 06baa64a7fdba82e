//! AI-written greetings: a rule may let the site's model write its greeting from the visitor's
//! context, within the rule's limits. A greeting is written once per context (the rule, the
//! page's type and product, the cart's size, the language, a returning visitor or not), cached,
//! and counted against the site's budget; until it is written, or when it breaks a limit, the
//! rule's own text is shown. The decision never waits for a model.

/// What a greeting is written from.
#[derive(Clone, Debug, PartialEq)]
pub struct GreetingAsk {
    /// The rule's instructions.
    pub prompt: String,
    /// The longest greeting accepted.
    pub max_chars: u32,
    /// The rule's own text: the fallback, and the bound on what may be promised.
    pub fixed: String,
    /// The visitor's context, in words.
    pub context: String,
    /// The visitor's language (BCP 47 primary tag), or empty.
    pub language: String,
}

/// Words that promise something; a greeting may use one only when the rule's own text does.
const PROMISES: &[&str] = &[
    "free",
    "discount",
    "off",
    "coupon",
    "code",
    "deal",
    "sale",
    "save",
    "guarantee",
    "refund",
    "return",
    "shipping",
    "delivery",
    "today only",
    "gift",
    "bonus",
    "cheaper",
    "lowest",
];

/// A greeting the model wrote, cleaned, if it keeps to the limits: one line, at most
/// `max_chars`, no link, and no number, currency sign or promise the rule's text does not hold.
pub fn accept(written: &str, ask: &GreetingAsk) -> Option<String> {
    let text = written
        .trim()
        .trim_matches(|c| c == '"' || c == '\u{201c}' || c == '\u{201d}')
        .trim();
    if text.is_empty() || text.contains('\n') || text.chars().count() > ask.max_chars as usize {
        return None;
    }
    let lower = text.to_lowercase();
    let fixed = ask.fixed.to_lowercase();
    if lower.contains("http") || lower.contains("www.") || lower.contains('<') {
        return None;
    }
    let new_sign = text
        .chars()
        .any(|c| (c.is_ascii_digit() || "$€£¥%".contains(c)) && !ask.fixed.contains(c));
    if new_sign {
        return None;
    }
    let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).collect();
    let fixed_words: Vec<&str> = fixed.split(|c: char| !c.is_alphanumeric()).collect();
    let promises = PROMISES.iter().any(|p| {
        let in_text = if p.contains(' ') {
            lower.contains(p)
        } else {
            words.contains(p)
        };
        let in_fixed = if p.contains(' ') {
            fixed.contains(p)
        } else {
            fixed_words.contains(p)
        };
        in_text && !in_fixed
    });
    if promises || text.chars().any(char::is_control) {
        return None;
    }
    Some(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(fixed: &str) -> GreetingAsk {
        GreetingAsk {
            prompt: "Greet them warmly.".to_owned(),
            max_chars: 80,
            fixed: fixed.to_owned(),
            context: String::new(),
            language: "en".to_owned(),
        }
    }

    #[test]
    fn a_greeting_within_the_limits_is_kept() {
        let a = ask("Questions before you buy?");
        assert_eq!(
            accept(
                "\"Eyeing the Ridgeline runners? Happy to help you choose.\"",
                &a
            )
            .as_deref(),
            Some("Eyeing the Ridgeline runners? Happy to help you choose.")
        );
    }

    #[test]
    fn a_greeting_that_promises_more_than_the_rule_or_breaks_a_limit_is_refused() {
        let a = ask("Questions before you buy?");
        for bad in [
            "Get 10% off today!",
            "Free shipping on your order, ask me how.",
            "We can give you a discount right now.",
            "Only $5 more for delivery.",
            "See https://evil.example for more.",
            "Two lines\nof text",
            "",
            &"very long ".repeat(20),
            "<b>Hello</b>",
        ] {
            assert_eq!(accept(bad, &a), None, "{bad:?}");
        }
        let with_offer = ask("Use STAY10 for 10% off your cart.");
        assert!(accept("Still thinking? Your 10% off is waiting.", &with_offer).is_some());
    }
}
