//! `/api/docs`: the OpenAPI document, drawn for people.

use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde::Serialize;
use utoipa::openapi::path::{Operation, ParameterIn};

use super::render;

#[derive(Serialize)]
struct Param {
    name: String,
    #[serde(rename = "in")]
    location: &'static str,
    description: String,
}

#[derive(Serialize)]
struct Op {
    id: String,
    method: &'static str,
    path: String,
    summary: String,
    params: Vec<Param>,
    body: Option<String>,
    responses: Vec<String>,
}

fn op(path: &str, method: &'static str, o: &Operation) -> Op {
    let params = o
        .parameters
        .iter()
        .flatten()
        .map(|p| Param {
            name: p.name.clone(),
            location: match p.parameter_in {
                ParameterIn::Path => "path",
                ParameterIn::Query => "query",
                ParameterIn::Header => "header",
                ParameterIn::Cookie => "cookie",
            },
            description: p.description.clone().unwrap_or_default(),
        })
        .collect();
    let body = o.request_body.as_ref().and_then(|b| {
        b.content.get("application/json").map(|c| match &c.schema {
            Some(utoipa::openapi::RefOr::Ref(r)) => r
                .ref_location
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned(),
            _ => "JSON".to_owned(),
        })
    });
    Op {
        id: format!("{method}-{}", path.replace(['/', '{', '}'], "-")),
        method,
        path: path.to_owned(),
        summary: o
            .description
            .clone()
            .or_else(|| o.summary.clone())
            .unwrap_or_default(),
        params,
        body,
        responses: o.responses.responses.keys().cloned().collect(),
    }
}

/// `GET /api/docs`.
pub async fn page() -> Response {
    let doc = crate::api::document();
    let mut operations = Vec::new();
    for (path, item) in &doc.paths.paths {
        let methods = [
            ("get", &item.get),
            ("post", &item.post),
            ("put", &item.put),
            ("patch", &item.patch),
            ("delete", &item.delete),
        ];
        for (method, o) in methods {
            if let Some(o) = o {
                operations.push(op(path, method, o));
            }
        }
    }
    render(
        StatusCode::OK,
        "api_docs.html",
        context! { title => "API reference", doc, operations, csrf => "" },
    )
}
