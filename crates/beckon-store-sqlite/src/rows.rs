//! Reading rows back into the interface's records.
//!
//! Every column is read with `try_get`, never `get`: a row that someone damaged by hand must
//! give an error the caller can act on (a visitor starts afresh), never a panic.

use beckon_engine::session::Arm;
use beckon_engine::{EventId, RuleId, SessionId, SiteId, Timestamp, VisitorId};
use beckon_store::{
    Applied, BatchContext, Exposure, LoggedBatch, LoggedEvent, Result, SecretDigest, SiteRecord,
    Source, StoreError, StoredEvent, VISITOR_SCHEMA, VisitorRecord,
};
use serde::de::DeserializeOwned;
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Row, Sqlite, Type};

/// One column, or why it could not be read.
pub(crate) fn col<'r, T>(row: &'r SqliteRow, name: &str) -> std::result::Result<T, String>
where
    T: Decode<'r, Sqlite> + Type<Sqlite>,
{
    row.try_get(name).map_err(|e| format!("column {name}: {e}"))
}

/// A JSON column decoded into `T`.
pub(crate) fn json_col<T: DeserializeOwned>(
    row: &SqliteRow,
    name: &str,
) -> std::result::Result<T, String> {
    let text: &str = col(row, name)?;
    serde_json::from_str(text).map_err(|e| format!("column {name}: {e}"))
}

/// A JSON column that may be NULL.
pub(crate) fn opt_json_col<T: DeserializeOwned>(
    row: &SqliteRow,
    name: &str,
) -> std::result::Result<Option<T>, String> {
    let text: Option<&str> = col(row, name)?;
    text.map(|t| serde_json::from_str(t).map_err(|e| format!("column {name}: {e}")))
        .transpose()
}

pub(crate) fn id<T>(
    row: &SqliteRow,
    name: &str,
    parse: impl Fn(&str) -> std::result::Result<T, beckon_engine::IdError>,
) -> std::result::Result<T, String> {
    let text: &str = col(row, name)?;
    parse(text).map_err(|e| format!("column {name}: {text:?} {e}"))
}

fn corrupt(what: &str) -> impl Fn(String) -> StoreError + '_ {
    move |e| StoreError::Corrupt(format!("{what}: {e}"))
}

/// A version number as stored (SQLite integers are signed).
pub(crate) fn version_col(row: &SqliteRow, name: &str) -> std::result::Result<u64, String> {
    let v: i64 = col(row, name)?;
    u64::try_from(v).map_err(|_| format!("column {name}: negative version {v}"))
}

pub(crate) fn site(row: &SqliteRow) -> Result<SiteRecord> {
    let read = || -> std::result::Result<SiteRecord, String> {
        Ok(SiteRecord {
            id: id(row, "id", SiteId::parse)?,
            secret: {
                let text: &str = col(row, "secret")?;
                SecretDigest::parse(text).ok_or("column secret: not a key digest")?
            },
            origins: json_col(row, "origins")?,
            policy: json_col(row, "policy")?,
            version: version_col(row, "version")?,
        })
    };
    read().map_err(corrupt("site"))
}

/// A visitor row: `Undecodable` when it is of another schema version or does not decode.
pub(crate) fn visitor(row: &SqliteRow) -> Result<VisitorRecord> {
    let read = || -> std::result::Result<VisitorRecord, String> {
        let schema: i64 = col(row, "schema")?;
        if schema != i64::from(VISITOR_SCHEMA) {
            return Err(format!(
                "schema version {schema}, this build reads {VISITOR_SCHEMA}"
            ));
        }
        Ok(VisitorRecord {
            site: id(row, "site_id", SiteId::parse)?,
            visitor: id(row, "visitor_id", VisitorId::parse)?,
            profile: json_col(row, "profile")?,
            session: opt_json_col(row, "session")?,
            last_seen: Timestamp::from_millis(col(row, "last_seen")?),
            version: version_col(row, "version")?,
        })
    };
    read().map_err(StoreError::Undecodable)
}

pub(crate) fn arm_name(arm: Arm) -> &'static str {
    match arm {
        Arm::Treated => "treated",
        Arm::Holdout => "holdout",
    }
}

pub(crate) fn exposure(row: &SqliteRow) -> Result<Exposure> {
    let read = || -> std::result::Result<Exposure, String> {
        Ok(Exposure {
            id: col(row, "id")?,
            site: id(row, "site_id", SiteId::parse)?,
            visitor: id(row, "visitor_id", VisitorId::parse)?,
            session: id(row, "session_id", SessionId::parse)?,
            rule: id(row, "rule_id", RuleId::parse)?,
            arm: match col::<&str>(row, "arm")? {
                "treated" => Arm::Treated,
                "holdout" => Arm::Holdout,
                other => return Err(format!("column arm: {other:?}")),
            },
            at: Timestamp::from_millis(col(row, "at")?),
            message: col(row, "message")?,
        })
    };
    read().map_err(corrupt("exposure"))
}

fn opt_session(row: &SqliteRow) -> std::result::Result<Option<SessionId>, String> {
    let text: Option<&str> = col(row, "session_id")?;
    text.map(|s| SessionId::parse(s).map_err(|e| format!("column session_id: {s:?} {e}")))
        .transpose()
}

/// A batch row, without its events (`seq`, the batch's columns).
pub(crate) fn batch(row: &SqliteRow) -> Result<(u64, LoggedBatch)> {
    let read = || -> std::result::Result<(u64, LoggedBatch), String> {
        let source: &str = col(row, "source")?;
        let seq: i64 = col(row, "seq")?;
        Ok((
            seq as u64,
            LoggedBatch {
                site: id(row, "site_id", SiteId::parse)?,
                visitor: id(row, "visitor_id", VisitorId::parse)?,
                session: opt_session(row)?,
                at: Timestamp::from_millis(col(row, "at")?),
                source: Source::parse(source).ok_or_else(|| format!("source {source:?}"))?,
                context: BatchContext {
                    user_agent: col(row, "user_agent")?,
                    language: col(row, "language")?,
                    tz_offset_minutes: col(row, "tz_offset")?,
                },
                verdict: json_col(row, "verdict")?,
                rules_version: version_col(row, "rules_version")?,
                begins: opt_json_col(row, "begins")?,
                events: Vec::new(),
            },
        ))
    };
    read().map_err(corrupt("logged batch"))
}

/// An event row of a batch (`batch`, `key`, `event_id`, `kind`, `body`, `applied`).
pub(crate) fn logged_event(row: &SqliteRow) -> Result<(u64, LoggedEvent)> {
    let read = || -> std::result::Result<(u64, LoggedEvent), String> {
        let batch: i64 = col(row, "batch")?;
        Ok((
            batch as u64,
            LoggedEvent {
                key: col(row, "key")?,
                id: id(row, "event_id", EventId::parse)?,
                kind: col(row, "kind")?,
                body: col(row, "body")?,
                applied: Applied::from_stored(col(row, "applied")?),
            },
        ))
    };
    read().map_err(corrupt("logged event"))
}

/// An event joined with its batch.
pub(crate) fn stored_event(row: &SqliteRow) -> Result<StoredEvent> {
    let read = || -> std::result::Result<StoredEvent, String> {
        Ok(StoredEvent {
            site: id(row, "site_id", SiteId::parse)?,
            visitor: id(row, "visitor_id", VisitorId::parse)?,
            session: opt_session(row)?,
            id: id(row, "event_id", EventId::parse)?,
            key: col(row, "key")?,
            at: Timestamp::from_millis(col(row, "at")?),
            kind: col(row, "kind")?,
            body: col(row, "body")?,
            applied: Applied::from_stored(col(row, "applied")?),
        })
    };
    read().map_err(corrupt("event"))
}
