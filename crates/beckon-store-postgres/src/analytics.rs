//! [`Analytics`] on PostgreSQL: the facts of a site over a period, read in a handful of
//! queries from the exposures, the log, the leads and the model calls.

use std::time::Duration;

use async_trait::async_trait;
use beckon_engine::session::Arm;
use beckon_engine::{RuleId, SessionId, SiteId, Timestamp, VisitorId};
use beckon_stats::facts::{
    Exposure, Facts, ModelUse, Outcome, OutcomeKind, Reaction, ReactionKind, Tab,
};
use beckon_stats::settings::Settings;
use beckon_store::analytics::{Analytics, LogSpan, Period};
use beckon_store::{Result, StoreError};
use sqlx::postgres::PgRow;

use crate::rows::{col, id};
use crate::{PgStore, db};

/// The log's sequence follows the server's clock closely but not exactly (a group commit
/// numbers the batches of several shards); reads by time start this much earlier in the
/// sequence and filter by time.
const SEQUENCE_MARGIN_MS: i64 = 60_000;

fn corrupt(what: &'static str) -> impl Fn(String) -> StoreError {
    move |e| StoreError::Corrupt(format!("{what}: {e}"))
}

fn millis(row: &PgRow, name: &str) -> std::result::Result<Timestamp, String> {
    col::<i64>(row, name).map(Timestamp::from_millis)
}

fn visitor(row: &PgRow) -> std::result::Result<VisitorId, String> {
    id(row, "visitor_id", VisitorId::parse)
}

fn exposure(row: &PgRow) -> std::result::Result<Exposure, String> {
    Ok(Exposure {
        visitor: visitor(row)?,
        session: id(row, "session_id", SessionId::parse)?,
        rule: id(row, "rule_id", RuleId::parse)?,
        arm: match col::<&str>(row, "arm")? {
            "treated" => Arm::Treated,
            "holdout" => Arm::Holdout,
            other => return Err(format!("column arm: {other:?}")),
        },
        at: millis(row, "at")?,
    })
}

/// A logged event as a reaction or an outcome; `None` for one that is neither (a `track`
/// without a name, a reaction without a rule).
fn logged(row: &PgRow) -> std::result::Result<Option<Fact>, String> {
    let who = visitor(row)?;
    let at = millis(row, "at")?;
    let kind: &str = col(row, "kind")?;
    let reaction = |kind| -> std::result::Result<Option<Fact>, String> {
        let Some(rule) = col::<Option<&str>>(row, "rule")? else {
            return Ok(None);
        };
        let rule = RuleId::parse(rule).map_err(|e| format!("rule {rule:?} {e}"))?;
        Ok(Some(Fact::Reaction(Reaction {
            visitor: who.clone(),
            rule,
            kind,
            at,
        })))
    };
    let outcome = |kind| {
        Fact::Outcome(Outcome {
            visitor: who.clone(),
            kind,
            at,
        })
    };
    Ok(match kind {
        "shown" => reaction(ReactionKind::Shown)?,
        "dismissed" => reaction(ReactionKind::Dismissed)?,
        "engaged" => reaction(ReactionKind::Engaged)?,
        "convert" => {
            let value = col::<Option<f64>>(row, "value")?.filter(|v| v.is_finite());
            Some(outcome(OutcomeKind::Order {
                value: value.unwrap_or(0.0),
            }))
        }
        "track" => col::<Option<String>>(row, "name")?.map(|n| outcome(OutcomeKind::Event(n))),
        _ => None,
    })
}

enum Fact {
    Reaction(Reaction),
    Outcome(Outcome),
}

/// The first sequence number of the log that may hold a batch at `from` or later (the log's
/// end when none does).
async fn first_seq(store: &PgStore, from: Timestamp) -> Result<i64> {
    let first: Option<i64> = sqlx::query_scalar("SELECT min(seq) FROM batches WHERE at >= $1")
        .bind(from.as_millis().saturating_sub(SEQUENCE_MARGIN_MS))
        .fetch_one(&store.pool)
        .await
        .map_err(db)?;
    Ok(first.unwrap_or(i64::MAX))
}

#[async_trait]
impl Analytics for PgStore {
    async fn facts(&self, site: &SiteId, period: Period, reach: Timestamp) -> Result<Facts> {
        let (from, to) = (period.from.as_millis(), period.to.as_millis());
        let reach = reach.as_millis().max(to);
        let first_seq = first_seq(self, period.from).await?;
        let mut facts = Facts::default();

        let rows = sqlx::query(
            "SELECT visitor_id, session_id, rule_id, arm, at FROM exposures
             WHERE site_id = $1 AND at >= $2 AND at < $3 ORDER BY at, ord",
        )
        .bind(site.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        facts.exposures = rows
            .iter()
            .map(exposure)
            .collect::<std::result::Result<_, _>>()
            .map_err(corrupt("exposure"))?;

        let rows = sqlx::query(
            "SELECT b.visitor_id, b.at, e.kind,
                    (e.body::jsonb ->> 'rule') AS rule,
                    CASE WHEN jsonb_typeof(e.body::jsonb -> 'value') = 'number'
                         THEN (e.body::jsonb ->> 'value')::double precision END AS value,
                    (e.body::jsonb ->> 'name') AS name
             FROM batches b JOIN events e ON e.batch = b.seq
             WHERE b.site_id = $1 AND b.seq >= $2 AND b.at >= $3 AND b.at < $4
               AND e.applied = 'decided'
               AND e.kind IN ('shown', 'dismissed', 'engaged', 'convert', 'track')
             ORDER BY b.seq, e.position",
        )
        .bind(site.as_str())
        .bind(first_seq)
        .bind(from)
        .bind(reach)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        for row in &rows {
            match logged(row).map_err(corrupt("logged event"))? {
                Some(Fact::Reaction(r)) => facts.reactions.push(r),
                Some(Fact::Outcome(o)) => facts.outcomes.push(o),
                None => {}
            }
        }

        // Leads from the form and the chat alike: the leads themselves, not the log's events.
        let rows = sqlx::query(
            "SELECT visitor_id, created_at AS at FROM leads
             WHERE site_id = $1 AND visitor_id IS NOT NULL
               AND created_at >= $2 AND created_at < $3",
        )
        .bind(site.as_str())
        .bind(from)
        .bind(reach)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        for row in &rows {
            let read = || -> std::result::Result<Outcome, String> {
                Ok(Outcome {
                    visitor: visitor(row)?,
                    kind: OutcomeKind::Lead,
                    at: millis(row, "at")?,
                })
            };
            facts.outcomes.push(read().map_err(corrupt("lead"))?);
        }
        facts.outcomes.sort_by_key(|o| o.at);

        let rows = sqlx::query(
            "SELECT visitor_id, session_id, min(at) AS first, max(at) AS last,
                    min(CASE WHEN begins IS NOT NULL THEN at END) AS began,
                    bool_or((verdict::jsonb ->> 'verdict') <> 'human') AS bot
             FROM batches
             WHERE site_id = $1 AND seq >= $2 AND at >= $3 AND at < $4
               AND source = 'browser' AND session_id IS NOT NULL
             GROUP BY visitor_id, session_id",
        )
        .bind(site.as_str())
        .bind(first_seq)
        .bind(from)
        .bind(reach)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut tabs = Vec::with_capacity(rows.len());
        for row in &rows {
            let read = || -> std::result::Result<Tab, String> {
                Ok(Tab {
                    visitor: visitor(row)?,
                    session: id(row, "session_id", SessionId::parse)?,
                    first: millis(row, "first")?,
                    last: millis(row, "last")?,
                    began: col::<Option<i64>>(row, "began")?.map(Timestamp::from_millis),
                    bot: col(row, "bot")?,
                })
            };
            tabs.push(read().map_err(corrupt("visit"))?);
        }
        facts.visits = beckon_stats::facts::visits(tabs);

        let rows = sqlx::query(
            "SELECT m.at, c.visitor_id, m.calls, m.prompt_tokens, m.completion_tokens
             FROM model_calls m LEFT JOIN conversations c ON c.id = m.conversation_id
             WHERE m.site_id = $1 AND m.at >= $2 AND m.at < $3 ORDER BY m.at, m.ord",
        )
        .bind(site.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        for row in &rows {
            let read = || -> std::result::Result<ModelUse, String> {
                let count = |name| col::<i64>(row, name).map(|n| n.max(0) as u64);
                Ok(ModelUse {
                    at: millis(row, "at")?,
                    visitor: col::<Option<&str>>(row, "visitor_id")?
                        .map(|v| VisitorId::parse(v).map_err(|e| format!("visitor {v:?} {e}")))
                        .transpose()?,
                    calls: count("calls")?,
                    prompt_tokens: count("prompt_tokens")?,
                    completion_tokens: count("completion_tokens")?,
                })
            };
            facts.model_use.push(read().map_err(corrupt("model call"))?);
        }
        Ok(facts)
    }

    async fn log_span(&self, site: &SiteId, period: Period) -> Result<LogSpan> {
        let first = first_seq(self, period.from).await?;
        let batches: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM batches
             WHERE site_id = $1 AND seq >= $2 AND at >= $3 AND at < $4",
        )
        .bind(site.as_str())
        .bind(first)
        .bind(period.from.as_millis())
        .bind(period.to.as_millis())
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(LogSpan {
            after: u64::try_from(first.saturating_sub(1)).unwrap_or(0),
            batches: batches.max(0) as u64,
        })
    }

    async fn analytics_settings(&self, site: &SiteId) -> Result<Settings> {
        let row = sqlx::query(
            "SELECT window_secs, min_sample, auto_pause, prompt_price, completion_price, currency
             FROM analytics_settings WHERE site_id = $1",
        )
        .bind(site.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            return Ok(Settings::default());
        };
        let read = || -> std::result::Result<Settings, String> {
            Ok(Settings {
                window: Duration::from_secs(col::<i64>(&row, "window_secs")?.max(0) as u64),
                min_sample: col::<i64>(&row, "min_sample")?.max(0) as u64,
                auto_pause: col(&row, "auto_pause")?,
                prompt_price: col(&row, "prompt_price")?,
                completion_price: col(&row, "completion_price")?,
                currency: col(&row, "currency")?,
            })
        };
        read().map_err(corrupt("analytics settings"))
    }

    async fn put_analytics_settings(&self, site: &SiteId, settings: &Settings) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO analytics_settings (site_id, window_secs, min_sample, auto_pause,
                                             prompt_price, completion_price, currency)
             SELECT id, $1, $2, $3, $4, $5, $6 FROM sites WHERE id = $7
             ON CONFLICT (site_id) DO UPDATE SET
                window_secs = excluded.window_secs, min_sample = excluded.min_sample,
                auto_pause = excluded.auto_pause, prompt_price = excluded.prompt_price,
                completion_price = excluded.completion_price, currency = excluded.currency",
        )
        .bind(i64::try_from(settings.window.as_secs()).unwrap_or(i64::MAX))
        .bind(i64::try_from(settings.min_sample).unwrap_or(i64::MAX))
        .bind(settings.auto_pause)
        .bind(settings.prompt_price)
        .bind(settings.completion_price)
        .bind(&settings.currency)
        .bind(site.as_str())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("site {site}")));
        }
        Ok(())
    }
}
