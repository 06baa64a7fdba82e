//! What an intervention says: the message types of PRODUCT.md, validated when a rule is saved.
//!
//! Texts may use templates (`{{ page.title }}`, `{{ cart.value | money }}`); they are parsed
//! here so that a typo is refused at save time, and rendered by the server when a rule fires.
//! The widget renders every field as text, never as HTML.

use serde::{Deserialize, Serialize};

use super::vars;

/// The longest title accepted.
pub const MAX_TITLE: usize = 80;
/// The longest text accepted.
pub const MAX_TEXT: usize = 600;
/// The most buttons a card may carry.
pub const MAX_BUTTONS: usize = 3;
/// The filters a template may use, besides minijinja's built-ins.
pub const TEMPLATE_FILTERS: &[&str] = &["money"];

/// An intervention's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Message {
    /// A line of text.
    Text {
        /// The text (templated).
        text: String,
    },
    /// A card with a title, a body, an optional image and up to three buttons.
    Card {
        /// Title (templated).
        title: String,
        /// Body (templated).
        body: String,
        /// Image URL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image: Option<String>,
        /// Buttons.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        buttons: Vec<Button>,
    },
    /// A coupon the visitor can apply in one tap.
    Offer {
        /// The pitch (templated).
        text: String,
        /// The coupon code.
        code: String,
        /// What the coupon gives.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// When it expires ("2026-12-31").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires: Option<String>,
    },
    /// Two products or plans side by side.
    Comparison {
        /// Title (templated).
        title: String,
        /// Two items, or none to let the widget read the page's `data-beckon-compare` items.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        items: Vec<CompareItem>,
    },
    /// An e-mail capture form that becomes a lead.
    EmailCapture {
        /// The pitch (templated).
        text: String,
        /// Ask for a name too.
        #[serde(default)]
        ask_name: bool,
        /// Ask for a question too.
        #[serde(default)]
        ask_question: bool,
        /// The consent text shown beside the checkbox.
        consent: String,
    },
    /// Opens the chat and answers a starter question right away.
    OpenChat {
        /// The question the conversation starts with (templated).
        question: String,
        /// An optional line shown above the chat.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
}

/// A card button.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Button {
    /// The label.
    pub label: String,
    /// What it does.
    pub action: ButtonAction,
    /// The reply text, URL, question or coupon code, depending on the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// What a button does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ButtonAction {
    /// Sends its label (or value) as the visitor's reply and starts a conversation.
    Reply,
    /// Opens a URL.
    Url,
    /// Starts a chat with `value` as the question.
    Chat,
    /// Applies the coupon `value` through the site's coupon hook.
    Coupon,
}

/// One side of a comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareItem {
    /// Product or plan name.
    pub name: String,
    /// Price as displayed ("$29/mo").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    /// Up to eight short points.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    /// Where "choose" leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The AI-written greeting option: a model writes the greeting from the context, within limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AiGreeting {
    /// Instructions for the model.
    pub prompt: String,
    /// The longest greeting accepted from the model; longer ones fall back to the message.
    #[serde(default = "default_ai_chars")]
    pub max_chars: u32,
}

fn default_ai_chars() -> u32 {
    160
}

impl Message {
    /// The type's name, as on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Text { .. } => "text",
            Message::Card { .. } => "card",
            Message::Offer { .. } => "offer",
            Message::Comparison { .. } => "comparison",
            Message::EmailCapture { .. } => "email_capture",
            Message::OpenChat { .. } => "open_chat",
        }
    }

    /// Checks what serde cannot: lengths, counts, URLs and templates. Errors are
    /// `(field, reason)` with the field relative to the message.
    pub(crate) fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let text = |errors: &mut Vec<(String, String)>,
                    field: &str,
                    value: &str,
                    max: usize,
                    required: bool| {
            if required && value.trim().is_empty() {
                errors.push((field.to_owned(), "must not be empty".to_owned()));
            } else if value.chars().count() > max {
                errors.push((field.to_owned(), format!("is longer than {max} characters")));
            } else if let Err(e) = check_template(value) {
                errors.push((field.to_owned(), e));
            }
        };
        match self {
            Message::Text { text: t } => text(&mut errors, "text", t, MAX_TEXT, true),
            Message::Card {
                title,
                body,
                image,
                buttons,
            } => {
                text(&mut errors, "title", title, MAX_TITLE, true);
                text(&mut errors, "body", body, MAX_TEXT, false);
                if let Some(image) = image {
                    check_url("image", image, &mut errors);
                }
                if buttons.len() > MAX_BUTTONS {
                    errors.push((
                        "buttons".to_owned(),
                        format!("has {} buttons; at most {MAX_BUTTONS}", buttons.len()),
                    ));
                }
                for (i, b) in buttons.iter().enumerate() {
                    let field = |f: &str| format!("buttons[{i}].{f}");
                    if b.label.trim().is_empty() || b.label.chars().count() > 40 {
                        errors.push((field("label"), "must be 1 to 40 characters".to_owned()));
                    }
                    match (b.action, b.value.as_deref()) {
                        (ButtonAction::Url, Some(url)) => {
                            check_url(&field("value"), url, &mut errors)
                        }
                        (ButtonAction::Url | ButtonAction::Chat | ButtonAction::Coupon, None) => {
                            errors.push((
                                field("value"),
                                format!("is required for action {:?}", b.action),
                            ))
                        }
                        _ => {}
                    }
                }
            }
            Message::Offer {
                text: t,
                code,
                description,
                expires,
            } => {
                text(&mut errors, "text", t, MAX_TEXT, true);
                if code.is_empty() || code.len() > 64 || !code.chars().all(|c| c.is_ascii_graphic())
                {
                    errors.push((
                        "code".to_owned(),
                        "must be 1 to 64 printable ASCII characters".to_owned(),
                    ));
                }
                if let Some(d) = description {
                    text(&mut errors, "description", d, MAX_TEXT, false);
                }
                if let Some(e) = expires {
                    if chrono::NaiveDate::parse_from_str(e, "%Y-%m-%d").is_err() {
                        errors.push((
                            "expires".to_owned(),
                            format!("{e:?} is not a date such as \"2026-12-31\""),
                        ));
                    }
                }
            }
            Message::Comparison { title, items } => {
                text(&mut errors, "title", title, MAX_TITLE, true);
                if !(items.is_empty() || items.len() == 2) {
                    errors.push((
                        "items".to_owned(),
                        format!("has {} items; a comparison shows exactly 2 (or none, to read them from the page)", items.len()),
                    ));
                }
                for (i, item) in items.iter().enumerate() {
                    if item.name.trim().is_empty() {
                        errors.push((format!("items[{i}].name"), "must not be empty".to_owned()));
                    }
                    if item.features.len() > 8 {
                        errors.push((
                            format!("items[{i}].features"),
                            "has more than 8 points".to_owned(),
                        ));
                    }
                    if let Some(url) = &item.url {
                        check_url(&format!("items[{i}].url"), url, &mut errors);
                    }
                }
            }
            Message::EmailCapture {
                text: t, consent, ..
            } => {
                text(&mut errors, "text", t, MAX_TEXT, true);
                if consent.trim().is_empty() {
                    errors.push((
                        "consent".to_owned(),
                        "must say what the visitor agrees to (an e-mail capture needs consent)"
                            .to_owned(),
                    ));
                }
            }
            Message::OpenChat { question, text: t } => {
                text(&mut errors, "question", question, MAX_TEXT, true);
                if let Some(t) = t {
                    text(&mut errors, "text", t, MAX_TEXT, false);
                }
            }
        }
        errors
    }
}

/// Accepts `https://…`, `http://…` and site-relative paths; refuses `javascript:` and the
/// like, so that a rule can never smuggle script into a page through a link.
fn check_url(field: &str, url: &str, errors: &mut Vec<(String, String)>) {
    let ok = url.starts_with("https://")
        || url.starts_with("http://")
        || (url.starts_with('/') && !url.starts_with("//"));
    // A backslash is refused too: browsers read "/\\host" as "//host", another site.
    if !ok || url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c == '\\') {
        errors.push((
            field.to_owned(),
            format!("{url:?} must be an http(s) URL or a path starting with '/'"),
        ));
    }
}

/// Parses a template and checks that it names only known variables and filters.
pub(crate) fn check_template(text: &str) -> Result<(), String> {
    if !text.contains("{{") && !text.contains("{%") {
        return Ok(());
    }
    // Only `{{ variable | filter }}` is allowed: no tags (a loop over a long URL nested three
    // deep would render for seconds) and no arithmetic (`page.url * 100000000`).
    if text.contains("{%") {
        return Err(
            "templates may only use {{ variable | filter }} expressions, not {% tags %}".to_owned(),
        );
    }
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}") else {
            break;
        };
        let expr = &rest[open + 2..open + close];
        if !simple_expression().is_match(expr) {
            return Err(format!(
                "{{{{{expr}}}}} is not a variable with filters, such as {{{{ cart.value | money }}}}"
            ));
        }
        rest = &rest[open + close + 2..];
    }
    let env = minijinja::Environment::new();
    let tmpl = env
        .template_from_str(text)
        .map_err(|e| format!("template error: {}", e.detail().unwrap_or("invalid syntax")))?;
    for name in tmpl.undeclared_variables(true) {
        vars::resolve(&name).map_err(|e| format!("template uses {e}"))?;
    }
    for filter in filters_used(text) {
        if !TEMPLATE_FILTERS.contains(&filter) && !BUILTIN_FILTERS.contains(&filter) {
            return Err(format!(
                "template uses unknown filter {filter:?}; available: {}",
                TEMPLATE_FILTERS
                    .iter()
                    .chain(BUILTIN_FILTERS)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(())
}

/// `name.path | filter | filter(arg, 'text')`: a variable and filters with literal arguments.
fn simple_expression() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        let ident = r"[A-Za-z_][A-Za-z0-9_]*";
        let literal = r#"(?:-?[0-9]+(?:\.[0-9]+)?|'[^']*'|"[^"]*"|true|false)"#;
        let args = format!(r"\(\s*{literal}(?:\s*,\s*{literal})*\s*\)");
        regex::Regex::new(&format!(
            r"^\s*{ident}(?:\.{ident})*\s*(?:\|\s*{ident}\s*(?:{args})?\s*)*$"
        ))
        .expect("a valid pattern")
    })
}

/// The built-in filters a message is likely to need; the rest of minijinja's are refused to
/// keep templates simple to read and to render.
const BUILTIN_FILTERS: &[&str] = &[
    "default",
    "upper",
    "lower",
    "title",
    "capitalize",
    "trim",
    "round",
    "int",
    "first",
    "last",
    "length",
    "truncate",
];

/// The filter names used in `{{ … | name }}` expressions and `{% … | name %}` tags; a `|`
/// inside a quoted string is text, not a filter.
fn filters_used(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        let open = match (rest.find("{{"), rest.find("{%")) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => break,
        };
        let close_tag = if rest[open..].starts_with("{{") {
            "}}"
        } else {
            "%}"
        };
        let Some(close) = rest[open + 2..].find(close_tag) else {
            break;
        };
        let expr = &rest[open + 2..open + 2 + close];
        let mut quote: Option<char> = None;
        let mut after_pipe = false;
        for (i, c) in expr.char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '|') => after_pipe = true,
                (None, c) if after_pipe && !c.is_whitespace() => {
                    after_pipe = false;
                    let name = expr[i..]
                        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .next()
                        .unwrap_or("");
                    if !name.is_empty() {
                        out.push(name);
                    }
                }
                _ => {}
            }
        }
        rest = &rest[open + 2 + close + 2..];
    }
    out
}

/// Renders a message's templated fields with `context` (a map of `page`, `cart`, `visitor`,
/// `device`). Fields that are not templates are copied as they are. Rendering cannot run code:
/// templates are parsed when the rule is saved, only known variables and filters are allowed,
/// and minijinja has no access to anything but the context.
pub fn render(message: &Message, context: &minijinja::Value) -> Result<Message, String> {
    let env = environment();
    map_text(message, &mut |t: &String| -> Result<String, String> {
        if !t.contains("{{") && !t.contains("{%") {
            return Ok(t.clone());
        }
        let out = env.render_str(t, context).map_err(|e| e.to_string())?;
        // A long trait or URL must not make a long message.
        Ok(out.chars().take(MAX_TEXT).collect())
    })
}

/// Renders like [`render`]; when that fails, the message's text without its template
/// expressions (`Hi {{ visitor.name }}, welcome` becomes `Hi, welcome`), so a visitor never sees
/// raw template syntax. The error, if any, is returned beside it for the caller to log.
pub fn render_or_plain(message: &Message, context: &minijinja::Value) -> (Message, Option<String>) {
    match render(message, context) {
        Ok(m) => (m, None),
        Err(e) => {
            let plain = map_text(message, &mut |t: &String| Ok::<_, ()>(strip_templates(t)))
                .unwrap_or_else(|()| message.clone());
            (plain, Some(e))
        }
    }
}

/// Text with every `{{ … }}` and `{% … %}` removed, and the spaces and punctuation around a
/// removed expression tidied.
fn strip_templates(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest
        .find('{')
        .filter(|&i| matches!(rest[i + 1..].chars().next(), Some('{' | '%')))
    {
        out.push_str(&rest[..open]);
        let close_tag = if rest[open + 1..].starts_with('{') {
            "}}"
        } else {
            "%}"
        };
        match rest[open + 2..].find(close_tag) {
            Some(close) => rest = &rest[open + 2 + close + 2..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    let words: Vec<&str> = out.split_whitespace().collect();
    let mut tidy = words.join(" ");
    for p in [",", ".", "!", "?", ":", ";"] {
        tidy = tidy.replace(&format!(" {p}"), p);
    }
    tidy.trim_matches(|c: char| c == ',' || c.is_whitespace())
        .to_owned()
}

/// The message with `f` applied to each templated field.
fn map_text<E>(
    message: &Message,
    f: &mut dyn FnMut(&String) -> Result<String, E>,
) -> Result<Message, E> {
    Ok(match message {
        Message::Text { text } => Message::Text { text: f(text)? },
        Message::Card {
            title,
            body,
            image,
            buttons,
        } => Message::Card {
            title: f(title)?,
            body: f(body)?,
            image: image.clone(),
            buttons: buttons.clone(),
        },
        Message::Offer {
            text,
            code,
            description,
            expires,
        } => Message::Offer {
            text: f(text)?,
            code: code.clone(),
            description: description.as_ref().map(&mut *f).transpose()?,
            expires: expires.clone(),
        },
        Message::Comparison { title, items } => Message::Comparison {
            title: f(title)?,
            items: items.clone(),
        },
        Message::EmailCapture {
            text,
            ask_name,
            ask_question,
            consent,
        } => Message::EmailCapture {
            text: f(text)?,
            ask_name: *ask_name,
            ask_question: *ask_question,
            consent: consent.clone(),
        },
        Message::OpenChat { question, text } => Message::OpenChat {
            question: f(question)?,
            text: text.as_ref().map(&mut *f).transpose()?,
        },
    })
}

/// The template environment: minijinja's safe built-ins plus `money`. Auto-escaping is off
/// because the output is text, and the widget renders it as text, never as HTML.
fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    // Lenient: a visitor's trait that is not a number renders as nothing, never as an error
    // (which would leave the template's raw text to show).
    env.add_filter("money", |v: minijinja::Value| match f64::try_from(v) {
        Ok(n) => format!("{n:.2}"),
        Err(_) => String::new(),
    });
    env
}
