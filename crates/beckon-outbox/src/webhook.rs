//! One try of a signed webhook, to the Standard Webhooks specification: `webhook-id` (the
//! delivery's id, the same on every try), `webhook-timestamp` (this try's, in Unix seconds) and
//! `webhook-signature` (`v1,<base64 HMAC-SHA256 of id.timestamp.body>`, signed by the
//! specification's own library; during a secret's rotation, one signature per secret, space
//! separated). Only a 2xx answer is success; 410 means the endpoint is gone; 429 and 503 may
//! say when to come back.

use std::time::{Duration, Instant};

use beckon_engine::Timestamp;
use beckon_store::outbox::{PreviousSecret, Target};
use standardwebhooks::Webhook;

use crate::schedule::parse_retry_after;

/// How a try ended, before it is settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Taken.
    Delivered,
    /// Not taken: try again (when the receiver asked, after `retry_after`).
    Failed {
        /// What the receiver asked for.
        retry_after: Option<Duration>,
    },
    /// The endpoint is gone for good.
    Gone,
    /// Refused for good (a mail relay's permanent error): no point trying again.
    Refused,
}

/// A try's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tried {
    /// How it ended.
    pub outcome: Outcome,
    /// The status the receiver answered, if it did.
    pub status: Option<u16>,
    /// What went wrong.
    pub error: Option<String>,
    /// How long it took.
    pub took: Duration,
}

impl Tried {
    pub(crate) fn failed(error: String, took: Duration) -> Tried {
        Tried {
            outcome: Outcome::Failed { retry_after: None },
            status: None,
            error: Some(error),
            took,
        }
    }
}

/// The `webhook-signature` header for `body`: one `v1,…` per secret in force.
pub fn signature(
    secret: &str,
    previous: Option<&PreviousSecret>,
    id: &str,
    timestamp: i64,
    body: &str,
    now: Timestamp,
) -> Result<String, String> {
    let mut secrets = vec![secret];
    if let Some(p) = previous.filter(|p| p.until > now) {
        secrets.push(&p.secret);
    }
    let mut out = Vec::with_capacity(secrets.len());
    for s in secrets {
        let hook = Webhook::new(s).map_err(|e| format!("the signing secret is unusable: {e}"))?;
        out.push(
            hook.sign(id, timestamp, body.as_bytes())
                .map_err(|e| format!("cannot sign: {e}"))?,
        );
    }
    Ok(out.join(" "))
}

/// Sends `body` to a webhook target as delivery `id`, at `now`.
pub async fn send(
    client: &reqwest::Client,
    target: &Target,
    id: &str,
    body: &str,
    now: Timestamp,
) -> Tried {
    let began = Instant::now();
    let Target::Webhook {
        url,
        secret,
        previous,
    } = target
    else {
        return Tried::failed("not a webhook".to_owned(), Duration::ZERO);
    };
    let timestamp = now.as_millis().div_euclid(1000);
    let signed = match signature(secret, previous.as_ref(), id, timestamp, body, now) {
        Ok(s) => s,
        Err(e) => return Tried::failed(e, began.elapsed()),
    };
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header(standardwebhooks::HEADER_WEBHOOK_ID, id)
        .header(
            standardwebhooks::HEADER_WEBHOOK_TIMESTAMP,
            timestamp.to_string(),
        )
        .header(standardwebhooks::HEADER_WEBHOOK_SIGNATURE, signed)
        .body(body.to_owned())
        .send()
        .await;
    classify(sent, now, began).await
}

/// Judges an HTTP answer (webhooks and team chat alike).
pub(crate) async fn classify(
    sent: reqwest::Result<reqwest::Response>,
    now: Timestamp,
    began: Instant,
) -> Tried {
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            let why = if e.is_timeout() {
                "timed out".to_owned()
            } else if e.is_connect() {
                format!("cannot connect: {}", root_cause(&e))
            } else {
                format!("request failed: {}", root_cause(&e))
            };
            return Tried::failed(why, began.elapsed());
        }
    };
    let status = response.status();
    let code = status.as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now));
    // The body is not read beyond what arrives with the headers: a receiver's answer says
    // nothing we act on, and a slow one must not hold the worker.
    drop(response);
    let took = began.elapsed();
    if status.is_success() {
        return Tried {
            outcome: Outcome::Delivered,
            status: Some(code),
            error: None,
            took,
        };
    }
    let outcome = match code {
        410 => Outcome::Gone,
        429 | 503 => Outcome::Failed { retry_after },
        _ => Outcome::Failed { retry_after: None },
    };
    Tried {
        outcome,
        status: Some(code),
        error: Some(format!("the endpoint answered {status}")),
        took,
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
