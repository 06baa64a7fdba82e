//! The rule editor and its preview frame.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use beckon_engine::PageType;
use beckon_engine::rules::vars::pickables;
use minijinja::context;
use serde::Serialize;
use serde_json::json;

use super::{Frame, PageError, Viewer, render};
use crate::AdminState;
use crate::manage::{rules, sites};

/// One variable of the editor's catalogue.
#[derive(Serialize)]
struct Var {
    name: &'static str,
    kind: &'static str,
    doc: &'static str,
    ops: Vec<&'static str>,
    choices: Vec<&'static str>,
}

/// What the editor's pickers offer: the engine's catalogue, nothing written twice.
fn catalogue() -> serde_json::Value {
    use beckon_engine::rules::Op;
    let vars: Vec<Var> = pickables()
        .into_iter()
        .map(|p| Var {
            name: p.name,
            kind: p.kind,
            doc: p.doc,
            ops: p.ops.iter().map(|o| o.as_str()).collect(),
            choices: p.choices,
        })
        .collect();
    let labels: serde_json::Map<String, serde_json::Value> = Op::ALL
        .iter()
        .map(|o| {
            let label = match o {
                Op::Equals => "is",
                Op::NotEquals => "is not",
                Op::Contains => "contains",
                Op::NotContains => "does not contain",
                Op::StartsWith => "starts with",
                Op::EndsWith => "ends with",
                Op::Matches => "matches the pattern",
                Op::In => "is one of",
                Op::NotIn => "is none of",
                Op::Gt => "is more than",
                Op::Gte => "is at least",
                Op::Lt => "is less than",
                Op::Lte => "is at most",
                Op::Between => "is between",
                Op::Exists => "is set",
                Op::Before => "is before",
                Op::After => "is after",
            };
            (o.as_str().to_owned(), json!(label))
        })
        .collect();
    json!({
        "vars": vars,
        "op_labels": labels,
        "page_types": PageType::ALL.map(PageType::as_str),
        "weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
    })
}

async fn editor(
    state: &AdminState,
    viewer: &Viewer,
    key: &str,
    rule_id: Option<&str>,
) -> Result<Response, PageError> {
    let site = sites::get(state, &viewer.actor, key).await?;
    let all = sites::list(state, &viewer.actor).await?;
    let (version, rule, history) = match rule_id {
        Some(id) => {
            let (version, rule) = rules::get(state, &viewer.actor, key, id).await?;
            let history = rules::history(state, &viewer.actor, key, id).await?;
            (
                version,
                serde_json::to_value(rule).unwrap_or_default(),
                history,
            )
        }
        None => {
            let version = rules::list(state, &viewer.actor, key).await?.version;
            let draft = json!({
                "id": "", "name": "", "status": "draft", "priority": 0,
                "when": {"all": [{"var": "cart.items", "op": "gt", "value": 0}]},
                "message": {"type": "text", "text": ""},
            });
            (version, draft, Vec::new())
        }
    };
    let title = match rule_id {
        Some(_) => "Edit rule",
        None => "New rule",
    };
    let frame = Frame {
        viewer,
        title,
        active: "rules",
        site: Some(&site),
        sites: &all,
    };
    Ok(render(
        StatusCode::OK,
        "rule_editor.html",
        frame.with(context! {
            rule, version, history, is_new => rule_id.is_none(), catalogue => catalogue(),
        }),
    ))
}

/// `GET /dash/sites/{site}/rules/new`.
pub async fn new(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path(key): Path<String>,
) -> Result<Response, PageError> {
    editor(&state, &viewer, &key, None).await
}

/// `GET /dash/sites/{site}/rules/{rule}`.
pub async fn edit(
    State(state): State<AdminState>,
    viewer: Viewer,
    Path((key, rule)): Path<(String, String)>,
) -> Result<Response, PageError> {
    editor(&state, &viewer, &key, Some(&rule)).await
}

/// `GET /dash/preview/{token}`: a sample page with the widget, pointed at the preview. It is
/// loaded in a sandboxed frame (an opaque origin: no cookie, no access to the dashboard).
pub async fn frame(
    State(state): State<AdminState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    if token.len() != 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return (StatusCode::NOT_FOUND, "no such preview").into_response();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".:-[]".contains(&b))
        })
        .unwrap_or("localhost");
    // Over HTTPS (behind a TLS proxy) the widget must come over HTTPS too, or the browser
    // blocks it as mixed content.
    let tls = state.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let (http, ws) = if tls {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    let origin = format!("{http}://{host}");
    let mut response = render(
        StatusCode::OK,
        "preview_frame.html",
        context! { origin => &origin, token },
    );
    let csp = format!(
        "default-src 'none'; script-src {origin}; connect-src {origin} {ws}://{host}; \
         style-src 'unsafe-inline'; img-src * data:; frame-ancestors 'self'"
    );
    if let Ok(v) = csp.parse() {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    response
}
