//! `beckon copy`: an installation's embedded SQLite database, copied whole into an empty
//! PostgreSQL database, for the move from one node to several.
//!
//! Both backends keep the same tables with the same columns and store the same bytes (JSON as
//! text), so the copy is table by table and column by column; each value is converted to the
//! PostgreSQL column's type, which the target's catalogue names. The whole copy is one
//! PostgreSQL transaction: a copy that fails leaves the target as empty as it was.

use std::path::Path;

use futures::TryStreamExt;
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{Postgres, Row, Transaction};

use crate::database::{Location, open};

/// The tables, parents before children, and whether each has SQLite's `rowid` (the order rows
/// were written in, which the target's `ord` columns take over).
const TABLES: &[(&str, bool)] = &[
    ("sites", true),
    ("rule_sets", true),
    ("batches", true),
    ("events", true),
    ("orders", true),
    ("exposures", true),
    ("visitors", true),
    ("server_key", true),
    ("users", true),
    ("members", true),
    ("logins", false),
    ("api_tokens", true),
    ("conversations", true),
    ("messages", false),
    ("files", true),
    ("desk_settings", true),
    ("agent_profiles", true),
    ("model_calls", true),
    ("leads", true),
    ("lead_settings", true),
    ("destinations", true),
    ("deliveries", true),
    ("delivery_attempts", false),
    ("analytics_settings", true),
];

/// Rows bound in one statement.
const CHUNK: usize = 1_000;

/// What a copy moved: rows per table, in copy order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Copied {
    /// `(table, rows)`.
    pub tables: Vec<(&'static str, u64)>,
}

impl Copied {
    /// Rows in all.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

/// One target column's values, by the column's PostgreSQL type.
enum Column {
    Int(Vec<Option<i64>>),
    Small(Vec<Option<i16>>),
    Float(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Text(Vec<Option<String>>),
    Bytes(Vec<Option<Vec<u8>>>),
}

impl Column {
    fn new(pg_type: &str) -> Result<Column, String> {
        Ok(match pg_type {
            "bigint" => Column::Int(Vec::new()),
            "smallint" => Column::Small(Vec::new()),
            "double precision" => Column::Float(Vec::new()),
            "boolean" => Column::Bool(Vec::new()),
            "text" => Column::Text(Vec::new()),
            "bytea" => Column::Bytes(Vec::new()),
            other => return Err(format!("no copy for a column of type {other}")),
        })
    }

    fn array_type(&self) -> &'static str {
        match self {
            Column::Int(_) => "bigint[]",
            Column::Small(_) => "smallint[]",
            Column::Float(_) => "double precision[]",
            Column::Bool(_) => "boolean[]",
            Column::Text(_) => "text[]",
            Column::Bytes(_) => "bytea[]",
        }
    }

    /// Appends column `i` of `row` (SQLite keeps booleans as 0 and 1).
    fn push(&mut self, row: &SqliteRow, i: usize) -> Result<(), sqlx::Error> {
        match self {
            Column::Int(v) => v.push(row.try_get(i)?),
            Column::Small(v) => v.push(
                row.try_get::<Option<i64>, _>(i)?
                    .map(|n| i16::try_from(n).unwrap_or(i16::MAX)),
            ),
            Column::Float(v) => v.push(row.try_get(i)?),
            Column::Bool(v) => v.push(row.try_get::<Option<i64>, _>(i)?.map(|n| n != 0)),
            Column::Text(v) => v.push(row.try_get(i)?),
            Column::Bytes(v) => v.push(row.try_get(i)?),
        }
        Ok(())
    }

    fn bind<'q>(
        self,
        query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        match self {
            Column::Int(v) => query.bind(v),
            Column::Small(v) => query.bind(v),
            Column::Float(v) => query.bind(v),
            Column::Bool(v) => query.bind(v),
            Column::Text(v) => query.bind(v),
            Column::Bytes(v) => query.bind(v),
        }
    }

    fn len(&self) -> usize {
        match self {
            Column::Int(v) => v.len(),
            Column::Small(v) => v.len(),
            Column::Float(v) => v.len(),
            Column::Bool(v) => v.len(),
            Column::Text(v) => v.len(),
            Column::Bytes(v) => v.len(),
        }
    }
}

/// Copies the SQLite installation in `data` into the empty PostgreSQL database at `url`. Both
/// are migrated to this version's schema first.
pub async fn sqlite_to_postgres(data: &Path, url: &str) -> Result<Copied, String> {
    if !data.join("beckon.db").exists() {
        return Err(format!("no database in {}", data.display()));
    }
    // Bring both to this version's schema.
    open(&Location::Sqlite(data.to_owned())).await?;
    let target = Location::Postgres(url.to_owned());
    open(&target).await?;

    let source = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(data.join("beckon.db"))
                .read_only(true),
        )
        .await
        .map_err(|e| format!("cannot open the database in {}: {e}", data.display()))?;
    let pg = PgPool::connect(url)
        .await
        .map_err(|e| format!("cannot connect to {target}: {e}"))?;
    let mut tx = pg.begin().await.map_err(|e| e.to_string())?;
    refuse_unless_empty(&mut tx, &target).await?;
    let mut copied = Copied::default();
    for &(table, has_rowid) in TABLES {
        let n = copy_table(&source, &mut tx, table, has_rowid)
            .await
            .map_err(|e| format!("copying {table}: {e}"))?;
        copied.tables.push((table, n));
    }
    carry_counters(&source, &mut tx)
        .await
        .map_err(|e| format!("setting the counters: {e}"))?;
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(copied)
}

async fn refuse_unless_empty(
    tx: &mut Transaction<'_, Postgres>,
    target: &Location,
) -> Result<(), String> {
    for table in ["sites", "batches", "users"] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| e.to_string())?;
        if n > 0 {
            return Err(format!(
                "{target} already holds data ({n} rows in {table}); copy into an empty database"
            ));
        }
    }
    Ok(())
}

/// The target's columns of `table` that take values (not the generated `ord`), with their types.
async fn target_columns(
    tx: &mut Transaction<'_, Postgres>,
    table: &str,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1
           AND NOT (is_identity = 'YES' AND identity_generation = 'ALWAYS')
         ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut **tx)
    .await
}

async fn copy_table(
    source: &SqlitePool,
    tx: &mut Transaction<'_, Postgres>,
    table: &str,
    has_rowid: bool,
) -> Result<u64, String> {
    let columns = target_columns(tx, table).await.map_err(|e| e.to_string())?;
    if columns.is_empty() {
        return Err("the target has no such table".to_owned());
    }
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    let list = names.join(", ");
    let select = format!(
        "SELECT {list} FROM {table}{}",
        if has_rowid { " ORDER BY rowid" } else { "" }
    );
    let unnest: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, t))| Column::new(t).map(|c| format!("${}::{}", i + 1, c.array_type())))
        .collect::<Result<_, _>>()?;
    let insert = format!(
        "INSERT INTO {table} ({list}) SELECT * FROM UNNEST({})",
        unnest.join(", ")
    );
    let fresh = || {
        columns
            .iter()
            .map(|(_, t)| Column::new(t))
            .collect::<Result<Vec<_>, _>>()
    };
    let mut chunk = fresh()?;
    let mut total = 0u64;
    let mut rows = sqlx::query(&select).fetch(source);
    while let Some(row) = rows.try_next().await.map_err(|e| e.to_string())? {
        for (i, column) in chunk.iter_mut().enumerate() {
            column
                .push(&row, i)
                .map_err(|e| format!("column {}: {e}", names[i]))?;
        }
        if chunk[0].len() == CHUNK {
            total += write_chunk(tx, &insert, std::mem::replace(&mut chunk, fresh()?)).await?;
        }
    }
    if chunk[0].len() > 0 {
        total += write_chunk(tx, &insert, chunk).await?;
    }
    Ok(total)
}

async fn write_chunk(
    tx: &mut Transaction<'_, Postgres>,
    insert: &str,
    chunk: Vec<Column>,
) -> Result<u64, String> {
    let mut query = sqlx::query(insert);
    for column in chunk {
        query = column.bind(query);
    }
    query
        .execute(&mut **tx)
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| e.to_string())
}

/// The counters the copied rows imply: the log's last position (never reused, even after the
/// batches that had it were pruned) and the next ids of people and tokens.
async fn carry_counters(
    source: &SqlitePool,
    tx: &mut Transaction<'_, Postgres>,
) -> Result<(), sqlx::Error> {
    let last: i64 = sqlx::query_scalar(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'batches'), 0),
                    coalesce((SELECT max(seq) FROM batches), 0))",
    )
    .fetch_one(source)
    .await?;
    // A sequence cannot be set to 0: an empty log leaves it to start at 1.
    sqlx::query("SELECT setval('batch_positions', $1, $2)")
        .bind(last.max(1))
        .bind(last > 0)
        .execute(&mut **tx)
        .await?;
    for table in ["users", "api_tokens"] {
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                           coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
        ))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
