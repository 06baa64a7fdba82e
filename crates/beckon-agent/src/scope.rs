//! What a visitor's message is about, read before any responder is asked: the AI agent answers
//! pre-purchase questions; returns, refunds, order and account problems and "talk to a person"
//! go to people.
//!
//! A question *about* a policy ("what is your return policy?") is a pre-purchase question the
//! knowledge answers; a request about the visitor's own purchase ("I want a refund", "my order
//! has not arrived") is support. The patterns are English, French, German and Spanish; a site
//! in another language still has the chat's "talk to a person" button.

use std::sync::LazyLock;

use regex::Regex;

/// What a message asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// A question before buying: the AI agent's scope.
    Presales,
    /// The visitor asks for a person.
    Person,
    /// A problem with something already bought, or with their account.
    Support(Support),
}

/// The kind of support asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// A return, refund, exchange or cancellation.
    Refund,
    /// Where an order is, or what went wrong with it.
    Order,
    /// Signing in, passwords, billing.
    Account,
}

impl Intent {
    /// Why the conversation goes to people, in words for the console.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Intent::Presales => None,
            Intent::Person => Some("asked for a person"),
            Intent::Support(Support::Refund) => Some("asked about a return or refund"),
            Intent::Support(Support::Order) => Some("has a problem with an order"),
            Intent::Support(Support::Account) => Some("has a problem with their account"),
        }
    }
}

fn re(pattern: &str) -> Regex {
    Regex::new(&format!("(?i){pattern}")).expect("the scope patterns compile")
}

static PERSON: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(talk|speak|chat)\s+(to|with)\s+(a\s+|an\s+|some\s*one|somebody|your\s+)?(human|person|people|agent|someone|representative|operator|staff|team|support|real)|\b(real|live)\s+(person|human|agent)\b|\bhuman\b|\bagent\s+please\b|\boperator\b|\bparler\s+à\s+(un|une|quelqu)|\bmit\s+(einem|einer)\s+(menschen|mitarbeiter)|\bhablar\s+con\s+(una?\s+)?(persona|agente|humano)",
    )
});

static REFUND: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\brefund|\bmoney\s+back\b|\bsend\s+(it|this|them)\s+back\b|\breturn(ing)?\s+(my|this|these|it)\b|\bexchange\s+(my|this|it)\b|\bcancel\s+(my|the|an?)\s+order\b|\bremboursement|\brembourser|\brückerstattung|\bgeld\s+zurück|\breembolso|\bdevolver",
    )
});

static ORDER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(my|our)\s+(order|package|parcel|delivery|shipment)\b|\border\s*(#|number|no\.?)\s*\w|\bwhere\s+is\s+my\b|\btracking\s+(number|info)|\b(hasn'?t|has\s+not|never|didn'?t|did\s+not)\s+(arrived?|come|shown\s+up)|\b(wrong|damaged|broken|missing)\s+(item|product|parcel|package|order)\b|\bma\s+commande\b|\bmeine\s+bestellung\b|\bmi\s+pedido\b",
    )
});

static ACCOUNT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\bmy\s+account\b|\b(reset|forgot|change)\s+(my\s+)?password\b|\bcan'?t\s+(log|sign)\s*in\b|\bcannot\s+(log|sign)\s*in\b|\b(charged|billed)\s+(twice|two\s+times|wrong)|\bdouble\s+charged\b|\bmon\s+compte\b|\bmein\s+konto\b|\bmi\s+cuenta\b",
    )
});

/// Reads a message.
pub fn classify(text: &str) -> Intent {
    if PERSON.is_match(text) {
        Intent::Person
    } else if REFUND.is_match(text) {
        Intent::Support(Support::Refund)
    } else if ORDER.is_match(text) {
        Intent::Support(Support::Order)
    } else if ACCOUNT.is_match(text) {
        Intent::Support(Support::Account)
    } else {
        Intent::Presales
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_purchase_questions_stay_with_the_ai() {
        for q in [
            "Do you ship to Canada?",
            "What is your return policy?",
            "How much is the arc lamp?",
            "Is the oak table in stock?",
            "Can I return items within 30 days?",
            "what's the difference between the two plans",
        ] {
            assert_eq!(classify(q), Intent::Presales, "{q}");
        }
    }

    #[test]
    fn requests_for_a_person_and_support_problems_go_to_people() {
        let cases = [
            ("I want a refund", Intent::Support(Support::Refund)),
            (
                "I'd like to return my lamp",
                Intent::Support(Support::Refund),
            ),
            ("please cancel my order", Intent::Support(Support::Refund)),
            ("Where is my order?", Intent::Support(Support::Order)),
            ("my package hasn't arrived", Intent::Support(Support::Order)),
            ("order #1234 came damaged", Intent::Support(Support::Order)),
            ("I forgot my password", Intent::Support(Support::Account)),
            ("I was charged twice", Intent::Support(Support::Account)),
            ("Can I talk to a person?", Intent::Person),
            ("speak with someone please", Intent::Person),
            ("HUMAN", Intent::Person),
            ("je veux un remboursement", Intent::Support(Support::Refund)),
            ("Wo ist meine Bestellung?", Intent::Support(Support::Order)),
        ];
        for (q, want) in cases {
            assert_eq!(classify(q), want, "{q}");
            assert!(want.reason().is_some());
        }
    }
}
