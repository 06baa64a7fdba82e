//! [`Conversations`] on PostgreSQL. Appends and changes run in transactions that first lock the
//! conversation's row (`SELECT … FOR UPDATE`), so that writers to one conversation, from every
//! node, queue on it: a message's `seq` and the conversation's `last_seq` move together, and a
//! resend waits for the first send to commit and then finds it. A visitor's second open
//! conversation is refused by the partial unique index `conversations_open_per_visitor`.

use async_trait::async_trait;
use beckon_engine::{SiteId, Timestamp, VisitorId};
use beckon_store::conversations::{
    AgentProfile, Appended, Attachment, Author, Closer, Conversation, ConversationChange,
    ConversationId, ConversationQuery, Conversations, DeskSettings, FileRecord, Message, ModelCall,
    NewMessage, Origin, Rating, Spend, Status,
};
use beckon_store::{Result, StoreError};
use sqlx::PgExecutor;
use sqlx::postgres::PgRow;

use crate::leads::insert_lead;
use crate::outbox::fan_out;
use crate::rows::{col, json_col, opt_json_col};
use crate::{PgStore, db, is_unique_violation, json};
use beckon_store::outbox::NewEvent;

fn corrupt(e: String) -> StoreError {
    StoreError::Corrupt(e)
}

const COLUMNS: &str = "id, site_id, visitor_id, status, department, assignee, origin, context,
    prechat, priority, handoff, started_at, updated_at, closed_at, closed_by, rating, rating_text,
    rated_at, last_seq, visitor_read, agent_read";

fn conversation(row: &PgRow) -> Result<Conversation> {
    let text = |name: &str| col::<String>(row, name).map_err(corrupt);
    let millis = |name: &str| {
        col::<i64>(row, name)
            .map_err(corrupt)
            .map(Timestamp::from_millis)
    };
    let seq = |name: &str| {
        col::<i64>(row, name)
            .map_err(corrupt)
            .map(|n| n.max(0) as u64)
    };
    let id = text("id")?;
    let status = text("status")?;
    let closed = match col::<Option<i64>>(row, "closed_at").map_err(corrupt)? {
        None => None,
        Some(at) => {
            let by = text("closed_by")?;
            let by = Closer::parse(&by).ok_or_else(|| corrupt(format!("closed_by {by:?}")))?;
            Some((Timestamp::from_millis(at), by))
        }
    };
    let rating = match col::<Option<i64>>(row, "rating").map_err(corrupt)? {
        None => None,
        Some(score) => Some(Rating {
            score: u8::try_from(score).map_err(|_| corrupt(format!("rating {score}")))?,
            comment: col::<Option<String>>(row, "rating_text")
                .map_err(corrupt)?
                .unwrap_or_default(),
            at: millis("rated_at")?,
        }),
    };
    Ok(Conversation {
        id: ConversationId::parse(&id).ok_or_else(|| corrupt(format!("conversation id {id:?}")))?,
        site: SiteId::parse(&text("site_id")?).map_err(|e| corrupt(format!("site {e}")))?,
        visitor: VisitorId::parse(&text("visitor_id")?)
            .map_err(|e| corrupt(format!("visitor {e}")))?,
        status: Status::parse(&status).ok_or_else(|| corrupt(format!("status {status:?}")))?,
        department: col(row, "department").map_err(corrupt)?,
        assignee: col(row, "assignee").map_err(corrupt)?,
        origin: json_col::<Origin>(row, "origin").map_err(corrupt)?,
        context: json_col(row, "context").map_err(corrupt)?,
        prechat: opt_json_col(row, "prechat").map_err(corrupt)?,
        priority: col(row, "priority").map_err(corrupt)?,
        handoff: col(row, "handoff").map_err(corrupt)?,
        started_at: millis("started_at")?,
        updated_at: millis("updated_at")?,
        closed,
        rating,
        last_seq: seq("last_seq")?,
        visitor_read: seq("visitor_read")?,
        agent_read: seq("agent_read")?,
    })
}

fn message(row: &PgRow) -> Result<Message> {
    let author: String = col(row, "author").map_err(corrupt)?;
    Ok(Message {
        seq: col::<i64>(row, "seq").map_err(corrupt)?.max(0) as u64,
        client_id: col(row, "client_id").map_err(corrupt)?,
        author: Author::parse(&author).ok_or_else(|| corrupt(format!("author {author:?}")))?,
        author_id: col(row, "author_id").map_err(corrupt)?,
        author_name: col(row, "author_name").map_err(corrupt)?,
        text: col(row, "text").map_err(corrupt)?,
        attachment: opt_json_col::<Attachment>(row, "attachment").map_err(corrupt)?,
        at: Timestamp::from_millis(col(row, "at").map_err(corrupt)?),
    })
}

fn not_found(id: &ConversationId) -> StoreError {
    StoreError::NotFound(format!("conversation {id}"))
}

/// Whether a read locks the rows it finds until its transaction ends.
#[derive(Clone, Copy)]
enum Lock {
    No,
    ForUpdate,
}

/// One conversation of a site, read on `conn`.
async fn one_conversation(
    conn: impl PgExecutor<'_>,
    site: &SiteId,
    id: &ConversationId,
    lock: Lock,
) -> Result<Option<Conversation>> {
    let lock = match lock {
        Lock::No => "",
        Lock::ForUpdate => "FOR UPDATE",
    };
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM conversations WHERE site_id = $1 AND id = $2 {lock}"
    ))
    .bind(site.as_str())
    .bind(id.as_str())
    .fetch_optional(conn)
    .await
    .map_err(db)?
    .map(|row| conversation(&row))
    .transpose()
}

#[async_trait]
impl Conversations for PgStore {
    async fn open_conversation(&self, c: &Conversation, announce: &[NewEvent]) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Two nodes opening one visitor's conversation at once: the second insert waits on the
        // partial unique index until the first commits, then fails as a unique violation.
        let done = sqlx::query(
            "INSERT INTO conversations (id, site_id, visitor_id, status, department, assignee,
                 origin, context, prechat, priority, handoff, started_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(c.id.as_str())
        .bind(c.site.as_str())
        .bind(c.visitor.as_str())
        .bind(c.status.as_str())
        .bind(&c.department)
        .bind(c.assignee)
        .bind(json(&c.origin)?)
        .bind(json(&c.context)?)
        .bind(c.prechat.as_ref().map(json).transpose()?)
        .bind(c.priority)
        .bind(&c.handoff)
        .bind(c.started_at.as_millis())
        .bind(c.updated_at.as_millis())
        .execute(&mut *tx)
        .await;
        match done {
            Ok(_) => {
                fan_out(&mut tx, &c.site, announce, c.started_at).await?;
                tx.commit().await.map_err(db)
            }
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "visitor {} already has an open conversation",
                c.visitor
            ))),
            Err(sqlx::Error::Database(d)) if d.is_foreign_key_violation() => {
                Err(StoreError::NotFound(format!("site {}", c.site)))
            }
            Err(e) => Err(db(e)),
        }
    }

    async fn conversation(
        &self,
        site: &SiteId,
        id: &ConversationId,
    ) -> Result<Option<Conversation>> {
        one_conversation(&self.pool, site, id, Lock::No).await
    }

    async fn latest_conversation_of(
        &self,
        site: &SiteId,
        visitor: &VisitorId,
    ) -> Result<Option<Conversation>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM conversations WHERE site_id = $1 AND visitor_id = $2
             ORDER BY started_at DESC, ord DESC LIMIT 1"
        ))
        .bind(site.as_str())
        .bind(visitor.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .map(|row| conversation(&row))
        .transpose()
    }

    async fn append_message(
        &self,
        site: &SiteId,
        id: &ConversationId,
        m: &NewMessage,
    ) -> Result<Appended> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // The lock is held to the end: appends to this conversation queue here, and each reads
        // the `last_seq` (and the messages) of the one before it.
        let found: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT last_seq, closed_at FROM conversations WHERE site_id = $1 AND id = $2
             FOR UPDATE",
        )
        .bind(site.as_str())
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some((last, closed_at)) = found else {
            return Err(not_found(id));
        };
        if let Some(client_id) = &m.client_id {
            let earlier =
                sqlx::query("SELECT * FROM messages WHERE conversation_id = $1 AND client_id = $2")
                    .bind(id.as_str())
                    .bind(client_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            if let Some(row) = earlier {
                return Ok(Appended {
                    message: message(&row)?,
                    duplicate: true,
                });
            }
        }
        if closed_at.is_some() {
            return Err(StoreError::Conflict(format!("conversation {id} is closed")));
        }
        let seq = last + 1;
        sqlx::query(
            "INSERT INTO messages (conversation_id, seq, client_id, author, author_id, author_name,
                 text, attachment, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id.as_str())
        .bind(seq)
        .bind(&m.client_id)
        .bind(m.author.as_str())
        .bind(m.author_id)
        .bind(&m.author_name)
        .bind(&m.text)
        .bind(m.attachment.as_ref().map(json).transpose()?)
        .bind(m.at.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query(
            "UPDATE conversations SET last_seq = $1, updated_at = GREATEST(updated_at, $2)
             WHERE site_id = $3 AND id = $4",
        )
        .bind(seq)
        .bind(m.at.as_millis())
        .bind(site.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Appended {
            message: Message {
                seq: seq as u64,
                client_id: m.client_id.clone(),
                author: m.author,
                author_id: m.author_id,
                author_name: m.author_name.clone(),
                text: m.text.clone(),
                attachment: m.attachment.clone(),
                at: m.at,
            },
            duplicate: false,
        })
    }

    async fn messages(
        &self,
        site: &SiteId,
        id: &ConversationId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let rows = sqlx::query(
            "SELECT m.* FROM messages m JOIN conversations c ON c.id = m.conversation_id
             WHERE c.site_id = $1 AND m.conversation_id = $2 AND m.seq > $3
             ORDER BY m.seq LIMIT $4",
        )
        .bind(site.as_str())
        .bind(id.as_str())
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(message).collect()
    }

    async fn change_conversation(
        &self,
        site: &SiteId,
        id: &ConversationId,
        change: &ConversationChange,
        at: Timestamp,
    ) -> Result<Conversation> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Locked to the end, so the checks below hold for what is written: no other change or
        // append comes between them.
        let Some(mut c) = one_conversation(&mut *tx, site, id, Lock::ForUpdate).await? else {
            return Err(not_found(id));
        };
        let only_reads = change.status.is_none()
            && change.department.is_none()
            && change.assignee.is_none()
            && change.handoff.is_none()
            && change.priority.is_none()
            && change.context.is_none()
            && change.prechat.is_none()
            && change.closed.is_none();
        if c.status.is_closed() && !only_reads {
            return Err(StoreError::Conflict(format!("conversation {id} is closed")));
        }
        if let Some(expect) = &change.expect
            && !expect.holds(&c)
        {
            return Err(StoreError::Conflict(format!(
                "conversation {id} changed meanwhile (it is {})",
                c.status.as_str()
            )));
        }
        change.apply_to(&mut c, at);
        sqlx::query(
            "UPDATE conversations SET status = $1, department = $2, assignee = $3, handoff = $4,
                 priority = $5, context = $6, prechat = $7, closed_at = $8, closed_by = $9,
                 visitor_read = $10, agent_read = $11, updated_at = $12
             WHERE site_id = $13 AND id = $14",
        )
        .bind(c.status.as_str())
        .bind(&c.department)
        .bind(c.assignee)
        .bind(&c.handoff)
        .bind(c.priority)
        .bind(json(&c.context)?)
        .bind(c.prechat.as_ref().map(json).transpose()?)
        .bind(c.closed.map(|(at, _)| at.as_millis()))
        .bind(c.closed.map(|(_, by)| by.as_str()))
        .bind(c.visitor_read as i64)
        .bind(c.agent_read as i64)
        .bind(c.updated_at.as_millis())
        .bind(site.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if let Some(lead) = &change.lead {
            insert_lead(&mut tx, lead).await?;
        }
        fan_out(&mut tx, site, &change.announce, at).await?;
        tx.commit().await.map_err(db)?;
        Ok(c)
    }

    async fn rate_conversation(
        &self,
        site: &SiteId,
        id: &ConversationId,
        rating: &Rating,
        announce: &[NewEvent],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // The update locks the row; a rating that waited on another re-checks `rating IS NULL`
        // on the row as the other left it, and updates nothing.
        let done = sqlx::query(
            "UPDATE conversations SET rating = $1, rating_text = $2, rated_at = $3
             WHERE site_id = $4 AND id = $5 AND closed_at IS NOT NULL AND rating IS NULL",
        )
        .bind(i64::from(rating.score))
        .bind(&rating.comment)
        .bind(rating.at.as_millis())
        .bind(site.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if done.rows_affected() == 1 {
            fan_out(&mut tx, site, announce, rating.at).await?;
            return tx.commit().await.map_err(db);
        }
        tx.rollback().await.map_err(db)?;
        match self.conversation(site, id).await? {
            None => Err(not_found(id)),
            Some(c) if c.rating.is_some() => Err(StoreError::Conflict(format!(
                "conversation {id} is already rated"
            ))),
            Some(_) => Err(StoreError::Conflict(format!(
                "conversation {id} is not closed yet"
            ))),
        }
    }

    async fn conversations(
        &self,
        site: &SiteId,
        q: &ConversationQuery,
    ) -> Result<Vec<Conversation>> {
        let open = match q.open {
            None => "",
            Some(true) => "AND closed_at IS NULL",
            Some(false) => "AND closed_at IS NOT NULL",
        };
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM conversations
             WHERE site_id = $1 {open} AND ($2::text IS NULL OR visitor_id = $2)
                 AND updated_at < $3
             ORDER BY updated_at DESC, id DESC LIMIT $4"
        ))
        .bind(site.as_str())
        .bind(q.visitor.as_ref().map(|v| v.as_str()))
        .bind(q.before.map_or(i64::MAX, |t| t.as_millis()))
        .bind(i64::try_from(q.limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(conversation).collect()
    }

    async fn open_conversations(&self) -> Result<Vec<Conversation>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM conversations WHERE closed_at IS NULL ORDER BY started_at, ord"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(conversation).collect()
    }

    async fn desk_settings(&self, site: &SiteId) -> Result<DeskSettings> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT settings FROM desk_settings WHERE site_id = $1")
                .bind(site.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        match text {
            None => Ok(DeskSettings::default()),
            Some(t) => serde_json::from_str(&t)
                .map_err(|e| corrupt(format!("desk settings of {site}: {e}"))),
        }
    }

    async fn put_desk_settings(&self, site: &SiteId, settings: &DeskSettings) -> Result<()> {
        sqlx::query(
            "INSERT INTO desk_settings (site_id, settings) VALUES ($1, $2)
             ON CONFLICT (site_id) DO UPDATE SET settings = excluded.settings",
        )
        .bind(site.as_str())
        .bind(json(settings)?)
        .execute(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                StoreError::NotFound(format!("site {site}"))
            }
            _ => db(e),
        })?;
        Ok(())
    }

    async fn agent_profiles(&self, site: &SiteId) -> Result<Vec<AgentProfile>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT user_id, profile FROM agent_profiles WHERE site_id = $1 ORDER BY user_id",
        )
        .bind(site.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|(user, text)| {
                let mut p: AgentProfile = serde_json::from_str(&text)
                    .map_err(|e| corrupt(format!("agent profile {user}: {e}")))?;
                p.user = user;
                Ok(p)
            })
            .collect()
    }

    async fn put_agent_profile(&self, site: &SiteId, profile: &AgentProfile) -> Result<()> {
        sqlx::query(
            "INSERT INTO agent_profiles (site_id, user_id, profile) VALUES ($1, $2, $3)
             ON CONFLICT (site_id, user_id) DO UPDATE SET profile = excluded.profile",
        )
        .bind(site.as_str())
        .bind(profile.user)
        .bind(json(profile)?)
        .execute(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                StoreError::NotFound(format!("site {site} or user {}", profile.user))
            }
            _ => db(e),
        })?;
        Ok(())
    }

    async fn record_model_call(&self, site: &SiteId, call: &ModelCall) -> Result<()> {
        sqlx::query(
            "INSERT INTO model_calls (site_id, conversation_id, at, model, purpose, calls,
                 prompt_tokens, completion_tokens, latency_ms, outcome)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(site.as_str())
        .bind(call.conversation.as_ref().map(|c| c.as_str()))
        .bind(call.at.as_millis())
        .bind(&call.model)
        .bind(&call.purpose)
        .bind(i64::from(call.calls))
        .bind(i64::try_from(call.prompt_tokens).unwrap_or(i64::MAX))
        .bind(i64::try_from(call.completion_tokens).unwrap_or(i64::MAX))
        .bind(i64::try_from(call.latency_ms).unwrap_or(i64::MAX))
        .bind(&call.outcome)
        .execute(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                StoreError::NotFound(format!("site {site}"))
            }
            _ => db(e),
        })?;
        Ok(())
    }

    async fn model_spend(&self, site: &SiteId, since: Timestamp) -> Result<Spend> {
        let (calls, tokens): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(calls), 0)::bigint,
                    COALESCE(SUM(prompt_tokens + completion_tokens), 0)::bigint
             FROM model_calls WHERE site_id = $1 AND at >= $2",
        )
        .bind(site.as_str())
        .bind(since.as_millis())
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(Spend {
            calls: calls.max(0) as u64,
            tokens: tokens.max(0) as u64,
        })
    }

    async fn put_file(&self, site: &SiteId, file: &FileRecord, bytes: &[u8]) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO files (id, site_id, conversation_id, name, mime, size, author, at, bytes)
             SELECT $1, site_id, id, $2, $3, $4, $5, $6, $7 FROM conversations
             WHERE site_id = $8 AND id = $9
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&file.id)
        .bind(&file.name)
        .bind(&file.mime)
        .bind(i64::try_from(file.size).unwrap_or(i64::MAX))
        .bind(file.author.as_str())
        .bind(file.at.as_millis())
        .bind(bytes)
        .bind(site.as_str())
        .bind(file.conversation.as_str())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if done.rows_affected() == 0 {
            // Either the file is there already (a resend: nothing more to write) or the
            // conversation is not the site's.
            let there: Option<String> = sqlx::query_scalar(
                "SELECT conversation_id FROM files WHERE site_id = $1 AND id = $2",
            )
            .bind(site.as_str())
            .bind(&file.id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
            if there.as_deref() != Some(file.conversation.as_str()) {
                return Err(not_found(&file.conversation));
            }
        }
        Ok(())
    }

    async fn file(&self, site: &SiteId, id: &str) -> Result<Option<(FileRecord, Vec<u8>)>> {
        let row = sqlx::query(
            "SELECT id, conversation_id, name, mime, size, author, at, bytes FROM files
             WHERE site_id = $1 AND id = $2",
        )
        .bind(site.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let conversation: String = col(&row, "conversation_id").map_err(corrupt)?;
        let author: String = col(&row, "author").map_err(corrupt)?;
        let record = FileRecord {
            id: col(&row, "id").map_err(corrupt)?,
            conversation: ConversationId::parse(&conversation)
                .ok_or_else(|| corrupt(format!("file conversation {conversation:?}")))?,
            name: col(&row, "name").map_err(corrupt)?,
            mime: col(&row, "mime").map_err(corrupt)?,
            size: col::<i64>(&row, "size").map_err(corrupt)?.max(0) as u64,
            author: Author::parse(&author)
                .ok_or_else(|| corrupt(format!("file author {author:?}")))?,
            at: Timestamp::from_millis(col(&row, "at").map_err(corrupt)?),
        };
        let bytes: Vec<u8> = col(&row, "bytes").map_err(corrupt)?;
        Ok(Some((record, bytes)))
    }
}
