//! The tools a model may call: the catalog's products and stock, and an order's status through
//! the merchant's endpoint. Their answers are JSON texts for the model; a tool never fails the
//! answer, it tells the model what went wrong.

use std::time::Duration;

use serde_json::{Value, json};

use crate::knowledge::Knowledge;

/// The most products a lookup answers.
const MAX_PRODUCTS: usize = 5;
/// The longest the merchant's order endpoint may take.
const ORDER_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of the merchant's answer passed on to the model.
const MAX_ORDER_ANSWER: usize = 4000;

/// Where the merchant answers order questions.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderEndpoint {
    /// `GET {url}?order_id=…` answers the order's status as JSON.
    pub url: String,
    /// Sent as `Authorization: Bearer …`, so the merchant knows it is Beckon asking.
    pub token: Option<String>,
}

/// The tools' descriptions, in the wire format.
pub fn definitions(orders: bool) -> Vec<Value> {
    let mut tools = vec![json!({
        "type": "function",
        "function": {
            "name": "lookup_product",
            "description": "Finds products of the shop's catalog by name, kind or SKU, with their price, stock and page.",
            "parameters": {
                "type": "object",
                "properties": { "query": { "type": "string", "description": "What to look for, e.g. \"rain jacket\" or a SKU." } },
                "required": ["query"]
            }
        }
    })];
    if orders {
        tools.push(json!({
            "type": "function",
            "function": {
                "name": "order_status",
                "description": "The status of one of the visitor's orders, by its order number.",
                "parameters": {
                    "type": "object",
                    "properties": { "order_id": { "type": "string", "description": "The order number the visitor gave." } },
                    "required": ["order_id"]
                }
            }
        }));
    }
    tools
}

fn argument(arguments: &str, name: &str) -> Option<String> {
    let v: Value = serde_json::from_str(arguments).ok()?;
    let s = v.get(name)?.as_str()?.trim();
    (!s.is_empty() && s.len() <= 200).then(|| s.to_owned())
}

/// Runs a call; its answer for the model.
pub async fn run(
    name: &str,
    arguments: &str,
    knowledge: &Knowledge,
    orders: Option<&OrderEndpoint>,
    http: &reqwest::Client,
) -> String {
    match name {
        "lookup_product" => match argument(arguments, "query") {
            Some(q) => {
                let found: Vec<Value> = knowledge
                    .find_products(&q, MAX_PRODUCTS)
                    .into_iter()
                    .map(|p| {
                        json!({
                            "sku": p.sku, "name": p.name, "price": p.price, "currency": p.currency,
                            "in_stock": p.stock.map(|n| n > 0), "stock": p.stock, "url": p.url,
                            "description": p.description,
                        })
                    })
                    .collect();
                json!({ "products": found }).to_string()
            }
            None => json!({ "error": "give a query" }).to_string(),
        },
        "order_status" => match (orders, argument(arguments, "order_id")) {
            (None, _) => {
                json!({ "error": "order status is not available; offer a person" }).to_string()
            }
            (_, None) => json!({ "error": "give an order_id" }).to_string(),
            (Some(endpoint), Some(id)) => order_status(endpoint, &id, http).await,
        },
        other => json!({ "error": format!("there is no tool {other:?}") }).to_string(),
    }
}

async fn order_status(endpoint: &OrderEndpoint, id: &str, http: &reqwest::Client) -> String {
    let mut request = http
        .get(&endpoint.url)
        .query(&[("order_id", id)])
        .timeout(ORDER_TIMEOUT);
    if let Some(token) = &endpoint.token {
        request = request.bearer_auth(token);
    }
    match request.send().await {
        Ok(r) if r.status().is_success() => match r.text().await {
            Ok(body) => body.chars().take(MAX_ORDER_ANSWER).collect(),
            Err(e) => {
                json!({ "error": format!("the shop's answer could not be read: {e}") }).to_string()
            }
        },
        Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
            json!({ "error": "no such order" }).to_string()
        }
        Ok(r) => json!({ "error": format!("the shop answered {}", r.status()) }).to_string(),
        Err(e) => json!({ "error": format!("the shop could not be reached: {e}") }).to_string(),
    }
}
