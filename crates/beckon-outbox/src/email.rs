//! E-mail: the team's notice of a lead, and the visitor's confirmation, over SMTP (lettre,
//! with STARTTLS or TLS through rustls). The wording is the site's, per language, with
//! `{{ email }}`-style fields filled in from the lead by minijinja; mail is plain text, so
//! nothing a visitor typed can become markup in anyone's mail client.

use std::time::{Duration, Instant};

use beckon_store::leads::{EmailWording, LeadSettings};
use beckon_store::outbox::Topic;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::webhook::{Outcome, Tried};

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (a relay on the same machine or network only).
    None,
    /// STARTTLS, required.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// The installation's mail relay (`[smtp]` in the configuration).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    /// The relay's host name.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// How the connection is secured.
    #[serde(default)]
    pub tls: SmtpTls,
    /// The account, when the relay wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// Its password.
    #[serde(default)]
    pub password: Option<String>,
    /// The sender (`Beckon <leads@shop.example>`).
    pub from: String,
    /// How long one sending may take, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    20
}

/// Sends mail through the relay.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from).finish()
    }
}

impl Mailer {
    /// A mailer for `settings`, or what is wrong with them.
    pub fn new(settings: &SmtpSettings) -> Result<Mailer, String> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| format!("smtp.from {:?}: {e}", settings.from))?;
        let builder = match settings.tls {
            SmtpTls::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            }
            SmtpTls::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host)
                    .map_err(|e| format!("smtp.host {:?}: {e}", settings.host))?
            }
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.host)
                .map_err(|e| format!("smtp.host {:?}: {e}", settings.host))?,
        };
        let mut builder = builder
            .port(settings.port)
            .timeout(Some(Duration::from_secs(settings.timeout_secs.max(1))));
        if let Some(user) = &settings.username {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                settings.password.clone().unwrap_or_default(),
            ));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
        })
    }

    /// Sends one plain-text mail.
    pub async fn send(&self, to: &[String], subject: &str, body: &str) -> Tried {
        let began = Instant::now();
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(one_line(subject))
            .header(ContentType::TEXT_PLAIN);
        for address in to {
            match address.parse::<Mailbox>() {
                Ok(m) => message = message.to(m),
                Err(e) => {
                    return refused(format!("not an address: {address:?}: {e}"), began);
                }
            }
        }
        let message = match message.body(body.to_owned()) {
            Ok(m) => m,
            Err(e) => return refused(format!("cannot build the mail: {e}"), began),
        };
        match self.transport.send(message).await {
            Ok(response) => Tried {
                outcome: Outcome::Delivered,
                status: Some(u16::from(response.code())),
                error: None,
                took: began.elapsed(),
            },
            Err(e) => {
                let status = e.status().map(u16::from);
                let outcome = if e.is_permanent() {
                    Outcome::Refused
                } else {
                    Outcome::Failed { retry_after: None }
                };
                Tried {
                    outcome,
                    status,
                    error: Some(format!("smtp: {e}")),
                    took: began.elapsed(),
                }
            }
        }
    }
}

fn refused(error: String, began: Instant) -> Tried {
    Tried {
        outcome: Outcome::Refused,
        status: None,
        error: Some(error),
        took: began.elapsed(),
    }
}

/// A subject on one line, whatever was filled into it.
fn one_line(s: &str) -> String {
    s.split(['\r', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The built-in wording, in the languages Beckon ships.
pub fn built_in() -> Vec<EmailWording> {
    let w = |language: &str, ts: &str, tb: &str, vs: &str, vb: &str| EmailWording {
        language: language.to_owned(),
        team_subject: ts.to_owned(),
        team_body: tb.to_owned(),
        visitor_subject: vs.to_owned(),
        visitor_body: vb.to_owned(),
    };
    const TEAM: &str = "{{ email }}{% if name %} ({{ name }}){% endif %} left their address on {{ site }}.\n\
{% if question %}\nTheir question:\n{{ question }}\n{% endif %}\n\
Page: {{ page }}\nRule: {{ rule }}\nCart: {{ cart }}\nCaptured: {{ created_at }}\n\
Consent: \"{{ consent }}\"\n\nLead {{ id }}: mark it contacted once you have written back.\n";
    vec![
        w(
            "en",
            "New lead: {{ email }}",
            TEAM,
            "We got your message",
            "Hello{% if name %} {{ name }}{% endif %},\n\nThank you for getting in touch. \
We have your message and will write back to {{ email }} soon.\n\
{% if question %}\nYou asked:\n{{ question }}\n{% endif %}",
        ),
        w(
            "fr",
            "Nouveau contact : {{ email }}",
            TEAM,
            "Nous avons bien reçu votre message",
            "Bonjour{% if name %} {{ name }}{% endif %},\n\nMerci de nous avoir écrit. \
Nous vous répondrons bientôt à {{ email }}.\n\
{% if question %}\nVotre question :\n{{ question }}\n{% endif %}",
        ),
        w(
            "de",
            "Neuer Kontakt: {{ email }}",
            TEAM,
            "Wir haben Ihre Nachricht erhalten",
            "Hallo{% if name %} {{ name }}{% endif %},\n\ndanke für Ihre Nachricht. \
Wir antworten Ihnen bald an {{ email }}.\n\
{% if question %}\nIhre Frage:\n{{ question }}\n{% endif %}",
        ),
        w(
            "es",
            "Nuevo contacto: {{ email }}",
            TEAM,
            "Hemos recibido tu mensaje",
            "Hola{% if name %} {{ name }}{% endif %}:\n\nGracias por escribirnos. \
Te responderemos pronto a {{ email }}.\n\
{% if question %}\nTu pregunta:\n{{ question }}\n{% endif %}",
        ),
    ]
}

/// Checks that a wording's templates compile, naming the first that does not.
pub fn check(wording: &EmailWording) -> Result<(), String> {
    let env = environment();
    for (field, text) in [
        ("team_subject", &wording.team_subject),
        ("team_body", &wording.team_body),
        ("visitor_subject", &wording.visitor_subject),
        ("visitor_body", &wording.visitor_body),
    ] {
        env.template_from_str(text)
            .map_err(|e| format!("{field} ({}): {e}", wording.language))?;
    }
    // And it renders, within its bounds, for a lead with every field filled in.
    let sample = serde_json::json!({"data": {"lead": {
        "id": "l_00000000000000000000", "email": "ada@example.com", "name": "Ada",
        "question": "Do you ship to Canada?", "consent": {"text": "I agree."},
        "created_at": "2026-01-01T00:00:00.000Z",
        "context": {"rule": "rule", "visit": {"pages": [{"path": "/"}],
            "cart": {"value": 1.0, "currency": "EUR", "items": 1}}},
    }}});
    for to_visitor in [false, true] {
        render(wording, Topic::LeadCreated, "site", &sample, to_visitor)?;
    }
    Ok(())
}

/// The most a wording may cost to render, in minijinja's fuel (about one unit per
/// instruction): a mail's worth of fields and conditions takes a few hundred; a loop written to
/// stall the worker runs out.
const FUEL: u64 = 20_000;

fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    // Plain text: nothing to escape, and a missing field is empty rather than an error.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    env.set_fuel(Some(FUEL));
    env
}

/// Longest a rendered subject or body may be.
const MAX_RENDERED: usize = 100_000;

/// Picks the wording for `language` among the site's (else the built-in ones): that
/// language's, else the first.
pub fn wording_for(settings: &LeadSettings, language: &str) -> EmailWording {
    let list = if settings.wording.is_empty() {
        built_in()
    } else {
        settings.wording.clone()
    };
    list.iter()
        .find(|w| w.language == language)
        .or(list.first())
        .cloned()
        .unwrap_or_else(|| built_in().remove(0))
}

/// The fields a template can use, from an event's payload.
fn fields(site: &str, payload: &Value) -> Value {
    let lead = &payload["data"]["lead"];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let ctx = &lead["context"];
    let page = ctx["visit"]["pages"]
        .as_array()
        .and_then(|p| p.last())
        .map(|p| s(&p["path"]))
        .unwrap_or_default();
    let cart = ctx["visit"]["cart"]
        .as_object()
        .map(|c| {
            format!(
                "{} {} ({} items)",
                c.get("value").and_then(Value::as_f64).unwrap_or(0.0),
                c.get("currency").and_then(Value::as_str).unwrap_or(""),
                c.get("items").and_then(Value::as_u64).unwrap_or(0)
            )
        })
        .unwrap_or_else(|| "empty".to_owned());
    serde_json::json!({
        "id": s(&lead["id"]),
        "email": s(&lead["email"]),
        "name": s(&lead["name"]),
        "question": s(&lead["question"]),
        "consent": s(&lead["consent"]["text"]),
        "created_at": s(&lead["created_at"]),
        "rule": ctx["rule"].as_str().unwrap_or("none"),
        "page": page,
        "cart": cart,
        "site": site,
    })
}

/// The subject and body of the mail for an event: the team's, or the visitor's confirmation.
pub fn render(
    wording: &EmailWording,
    topic: Topic,
    site: &str,
    payload: &Value,
    to_visitor: bool,
) -> Result<(String, String), String> {
    let env = environment();
    let values = fields(site, payload);
    let fill = |text: &str| {
        let out = env
            .render_str(text, &values)
            .map_err(|e| format!("the wording ({}) does not render: {e}", wording.language))?;
        if out.len() > MAX_RENDERED {
            return Err(format!(
                "the wording ({}) renders longer than {MAX_RENDERED} bytes",
                wording.language
            ));
        }
        Ok(out)
    };
    if to_visitor {
        return Ok((
            fill(&wording.visitor_subject)?,
            fill(&wording.visitor_body)?,
        ));
    }
    let (subject, body) = (fill(&wording.team_subject)?, fill(&wording.team_body)?);
    Ok(match topic {
        Topic::LeadOverdue => (
            format!("Overdue: {subject}"),
            format!("Nobody has marked this lead contacted yet.\n\n{body}"),
        ),
        Topic::TestSample => (
            "A test from Beckon".to_owned(),
            "This address receives Beckon's lead notices.\n".to_owned(),
        ),
        _ => (subject, body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> Value {
        serde_json::json!({"type": "lead.created", "data": {"lead": {
            "id": "l_1", "email": "ada@example.com", "name": "Ada", "question": "Do you ship\nto Canada?",
            "consent": {"text": "I agree."}, "created_at": "2026-12-02T05:00:00.000Z",
            "context": {"rule": "article-capture", "visit": {"language": "fr",
                "pages": [{"path": "/blog/lamps"}], "cart": {"value": 42.5, "currency": "EUR", "items": 2}}},
        }}})
    }

    #[test]
    fn the_team_and_the_visitor_get_their_own_wording() {
        let settings = LeadSettings::default();
        let (subject, body) = render(
            &wording_for(&settings, "en"),
            Topic::LeadCreated,
            "shop",
            &payload(),
            false,
        )
        .unwrap();
        assert_eq!(subject, "New lead: ada@example.com");
        assert!(body.contains("ada@example.com (Ada) left their address on shop."));
        assert!(body.contains("Page: /blog/lamps"));
        assert!(body.contains("Cart: 42.5 EUR (2 items)"));
        assert!(body.contains("Consent: \"I agree.\""));
        let (subject, body) = render(
            &wording_for(&settings, "fr"),
            Topic::LeadCreated,
            "shop",
            &payload(),
            true,
        )
        .unwrap();
        assert_eq!(subject, "Nous avons bien reçu votre message");
        assert!(body.starts_with("Bonjour Ada,"));
        assert!(body.contains("Do you ship\nto Canada?"));
        // A language not written falls back to the first.
        assert_eq!(wording_for(&settings, "pt").language, "en");
    }

    #[test]
    fn a_wording_written_to_stall_the_worker_is_refused() {
        let mut w = built_in().remove(0);
        w.team_body =
            "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}"
                .to_owned();
        let e = check(&w).unwrap_err();
        assert!(e.contains("does not render"), "{e}");
        // The built-in ones pass.
        for w in built_in() {
            check(&w).unwrap();
        }
    }

    #[test]
    fn a_subject_stays_on_one_line_and_bad_templates_are_named() {
        assert_eq!(one_line("New lead:\r\nBcc: x@y\n"), "New lead: Bcc: x@y");
        let mut w = built_in().remove(0);
        w.visitor_body = "{% if %}".to_owned();
        let e = check(&w).unwrap_err();
        assert!(e.starts_with("visitor_body (en)"), "{e}");
    }
}
