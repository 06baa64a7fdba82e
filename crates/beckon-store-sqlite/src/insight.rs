//! [`Insight`] on SQLite: the dashboard's reads of the log and of visitor states.

use async_trait::async_trait;
use beckon_engine::{RuleId, SiteId, Timestamp, VisitorId};
use beckon_store::insight::{Insight, RuleCounts};
use beckon_store::{LoggedBatch, Result, StoreError, VisitorRecord};

use crate::rows::{self, col};
use crate::{SqliteStore, db};

fn corrupt(e: String) -> StoreError {
    StoreError::Corrupt(e)
}

/// The most batches one `IN (…)` list names.
const CHUNK: usize = 500;

#[async_trait]
impl Insight for SqliteStore {
    async fn rule_counts(
        &self,
        site: &SiteId,
        since: Timestamp,
    ) -> Result<Vec<(RuleId, RuleCounts)>> {
        let mut counts: std::collections::BTreeMap<String, RuleCounts> = Default::default();
        let exposures = sqlx::query(
            "SELECT rule_id, arm, count(*) AS n FROM exposures
             WHERE site_id = ? AND at >= ? GROUP BY rule_id, arm",
        )
        .bind(site.as_str())
        .bind(since.as_millis())
        .fetch_all(&self.readers)
        .await
        .map_err(db)?;
        for row in &exposures {
            let rule: String = col(row, "rule_id").map_err(corrupt)?;
            let arm: String = col(row, "arm").map_err(corrupt)?;
            let n: i64 = col(row, "n").map_err(corrupt)?;
            let c = counts.entry(rule).or_default();
            if arm == crate::rows::arm_name(beckon_engine::session::Arm::Holdout) {
                c.ghosts += n as u64;
            } else {
                c.fired += n as u64;
            }
        }
        // Outcomes the engine was fed (a bot's, or a refused claim, are only logged).
        let outcomes = sqlx::query(
            "SELECT json_extract(e.body, '$.rule') AS rule, e.kind, count(*) AS n
             FROM batches b JOIN events e ON e.batch = b.seq
             WHERE b.site_id = ? AND b.at >= ? AND e.applied = 'decided'
               AND e.kind IN ('shown', 'dismissed', 'engaged')
             GROUP BY 1, 2",
        )
        .bind(site.as_str())
        .bind(since.as_millis())
        .fetch_all(&self.readers)
        .await
        .map_err(db)?;
        for row in &outcomes {
            let Some(rule) = col::<Option<String>>(row, "rule").map_err(corrupt)? else {
                continue;
            };
            let kind: String = col(row, "kind").map_err(corrupt)?;
            let n = col::<i64>(row, "n").map_err(corrupt)? as u64;
            let c = counts.entry(rule).or_default();
            match kind.as_str() {
                "shown" => c.shown += n,
                "dismissed" => c.dismissed += n,
                _ => c.engaged += n,
            }
        }
        Ok(counts
            .into_iter()
            .filter_map(|(rule, c)| RuleId::parse(&rule).ok().map(|r| (r, c)))
            .collect())
    }

    async fn visitor_log(
        &self,
        site: &SiteId,
        visitor: &VisitorId,
        limit: usize,
    ) -> Result<Vec<(u64, LoggedBatch)>> {
        let rows = sqlx::query(
            "SELECT seq, site_id, visitor_id, session_id, at, source, user_agent, language,
                    tz_offset, verdict, rules_version, begins
             FROM batches WHERE site_id = ? AND visitor_id = ? ORDER BY seq DESC LIMIT ?",
        )
        .bind(site.as_str())
        .bind(visitor.as_str())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.readers)
        .await
        .map_err(db)?;
        let mut batches = rows
            .iter()
            .map(rows::batch)
            .collect::<Result<Vec<(u64, LoggedBatch)>>>()?;
        batches.reverse();
        let seqs: Vec<i64> = batches.iter().map(|(s, _)| *s as i64).collect();
        for chunk in seqs.chunks(CHUNK) {
            let sql = format!(
                "SELECT batch, key, event_id, kind, body, applied FROM events
                 WHERE batch IN ({}) ORDER BY batch, position",
                crate::placeholders(chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for s in chunk {
                query = query.bind(s);
            }
            for row in query.fetch_all(&self.readers).await.map_err(db)? {
                let (batch, event) = rows::logged_event(&row)?;
                let slot = batches
                    .binary_search_by_key(&batch, |(s, _)| *s)
                    .map_err(|_| corrupt(format!("event of a batch {batch} not read")))?;
                batches[slot].1.events.push(event);
            }
        }
        Ok(batches)
    }

    async fn recent_visitors(
        &self,
        site: &SiteId,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<VisitorRecord>> {
        let rows = sqlx::query(
            "SELECT site_id, visitor_id, schema, profile, session, last_seen, version FROM visitors
             WHERE last_seen >= ? AND +site_id = ? AND session IS NOT NULL
               AND json_extract(session, '$.bot') IS NULL
             ORDER BY last_seen DESC LIMIT ?",
        )
        .bind(since.as_millis())
        .bind(site.as_str())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.readers)
        .await
        .map_err(db)?;
        Ok(rows.iter().filter_map(|r| rows::visitor(r).ok()).collect())
    }
}
