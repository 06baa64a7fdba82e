//! [`Accounts`] on PostgreSQL: people, memberships, login sessions, API tokens and rule
//! history.

use std::collections::HashMap;

use async_trait::async_trait;
use beckon_engine::rules::RuleSpec;
use beckon_engine::{SiteId, Timestamp};
use beckon_store::accounts::{
    Accounts, ApiToken, Change, LoginRecord, NewUser, Role, RuleSetEntry, SiteEdit, SiteLabel,
    User, UserId,
};
use beckon_store::{Result, SiteRecord, StoreError};
use sqlx::postgres::PgRow;

use crate::rows::{col, json_col, version_col};
use crate::{PgStore, db, is_unique_violation, json};

fn corrupt(e: String) -> StoreError {
    StoreError::Corrupt(e)
}

fn user(row: &PgRow) -> Result<User> {
    let role: String = col(row, "role").map_err(corrupt)?;
    Ok(User {
        id: col(row, "id").map_err(corrupt)?,
        email: col(row, "email").map_err(corrupt)?,
        name: col(row, "name").map_err(corrupt)?,
        password_hash: col(row, "password_hash").map_err(corrupt)?,
        role: Role::parse(&role).ok_or_else(|| corrupt(format!("role {role:?}")))?,
    })
}

fn digest(row: &PgRow, name: &str) -> Result<[u8; 32]> {
    let bytes: Vec<u8> = col(row, name).map_err(corrupt)?;
    bytes
        .try_into()
        .map_err(|_| corrupt(format!("column {name}: not 32 bytes")))
}

fn token(row: &PgRow) -> Result<ApiToken> {
    let sites: Vec<String> = json_col(row, "sites").map_err(corrupt)?;
    Ok(ApiToken {
        id: col(row, "id").map_err(corrupt)?,
        hash: digest(row, "hash")?,
        prefix: col(row, "prefix").map_err(corrupt)?,
        name: col(row, "name").map_err(corrupt)?,
        owner: col(row, "owner").map_err(corrupt)?,
        sites: sites
            .iter()
            .map(|s| SiteId::parse(s).map_err(|e| corrupt(format!("token site {s:?} {e}"))))
            .collect::<Result<_>>()?,
        created: Timestamp::from_millis(col(row, "created").map_err(corrupt)?),
        revoked: col::<Option<i64>>(row, "revoked")
            .map_err(corrupt)?
            .map(Timestamp::from_millis),
    })
}

fn login(row: &PgRow) -> Result<LoginRecord> {
    Ok(LoginRecord {
        id_hash: digest(row, "id_hash")?,
        data: col(row, "data").map_err(corrupt)?,
        expires: Timestamp::from_millis(col(row, "expires").map_err(corrupt)?),
    })
}

/// Whether `e` is a foreign-key violation: a row refers to a site or person that is not there.
fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_foreign_key_violation())
}

const USER_COLUMNS: &str = "id, email, name, password_hash, role";
const TOKEN_COLUMNS: &str = "id, hash, prefix, name, owner, sites, created, revoked";

#[async_trait]
impl Accounts for PgStore {
    async fn create_user(&self, new: &NewUser) -> Result<User> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (email, name, password_hash, role, created_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(&new.email)
        .bind(&new.name)
        .bind(&new.password_hash)
        .bind(new.role.as_str())
        .bind(new.at.as_millis())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("{} already has an account", new.email))
            } else {
                db(e)
            }
        })?;
        Ok(User {
            id,
            email: new.email.clone(),
            name: new.name.clone(),
            password_hash: new.password_hash.clone(),
            role: new.role,
        })
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE email = $1"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(user)
        .transpose()
    }

    async fn user(&self, id: UserId) -> Result<Option<User>> {
        sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(user)
            .transpose()
    }

    async fn users(&self) -> Result<Vec<User>> {
        sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(user)
            .collect()
    }

    async fn set_password(&self, id: UserId, password_hash: &str) -> Result<()> {
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user {id}")));
        }
        Ok(())
    }

    async fn add_member(&self, site: &SiteId, user: UserId) -> Result<()> {
        sqlx::query(
            "INSERT INTO members (site_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(site.as_str())
        .bind(user)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::NotFound(format!("site {site} or user {user}"))
            } else {
                db(e)
            }
        })?;
        Ok(())
    }

    async fn remove_member(&self, site: &SiteId, user: UserId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM members WHERE site_id = $1 AND user_id = $2")
            .bind(site.as_str())
            .bind(user)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }

    async fn members(&self, site: &SiteId) -> Result<Vec<User>> {
        sqlx::query(
            "SELECT u.id, u.email, u.name, u.password_hash, u.role FROM members m
             JOIN users u ON u.id = m.user_id WHERE m.site_id = $1 ORDER BY u.id",
        )
        .bind(site.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(user)
        .collect()
    }

    async fn sites_of(&self, user: UserId) -> Result<Vec<SiteId>> {
        let keys: Vec<String> =
            sqlx::query_scalar("SELECT site_id FROM members WHERE user_id = $1 ORDER BY site_id")
                .bind(user)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        keys.iter()
            .map(|k| SiteId::parse(k).map_err(|e| corrupt(format!("member site {k:?} {e}"))))
            .collect()
    }

    async fn set_site_name(&self, site: &SiteId, name: &str) -> Result<()> {
        let done = sqlx::query("UPDATE sites SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(site.as_str())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("site {site}")));
        }
        Ok(())
    }

    async fn site_labels(&self, sites: &[SiteId]) -> Result<Vec<SiteLabel>> {
        // One round trip for them all; the labels follow the order asked for.
        let keys: Vec<&str> = sites.iter().map(|s| s.as_str()).collect();
        let names: HashMap<String, Option<String>> =
            sqlx::query_as("SELECT id, name FROM sites WHERE id = ANY($1)")
                .bind(&keys)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?
                .into_iter()
                .collect();
        Ok(sites
            .iter()
            .filter_map(|site| {
                let name = names.get(site.as_str())?;
                Some(SiteLabel {
                    site: site.clone(),
                    name: name.clone().unwrap_or_else(|| site.as_str().to_owned()),
                })
            })
            .collect())
    }

    async fn create_site(&self, site: &SiteRecord, name: &str, creator: UserId) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // A node creating the same key at this moment makes this insert wait for its
        // transaction, then find the key taken.
        let policy = json(&site.policy)?;
        let inserted = sqlx::query(
            "INSERT INTO sites (id, secret, origins, policy, version, name)
             VALUES ($1, $2, $3, $4, 1, $5)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(site.id.as_str())
        .bind(site.secret.as_str())
        .bind(json(&site.origins)?)
        .bind(&policy)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "a site with key {:?} exists; choose another key",
                site.id.as_str()
            )));
        }
        sqlx::query(
            "INSERT INTO rule_sets (site_id, version, policy, rules) VALUES ($1, 1, $2, '[]')",
        )
        .bind(site.id.as_str())
        .bind(&policy)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("INSERT INTO members (site_id, user_id) VALUES ($1, $2)")
            .bind(site.id.as_str())
            .bind(creator)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_foreign_key_violation(&e) {
                    StoreError::NotFound(format!("user {creator}"))
                } else {
                    db(e)
                }
            })?;
        tx.commit().await.map_err(db)
    }

    async fn edit_site(&self, site: &SiteId, edit: &SiteEdit) -> Result<SiteRecord> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // The site's row stays locked to the end: concurrent edits and rule saves queue on it.
        let row = sqlx::query(
            "SELECT id, secret, origins, policy, version FROM sites WHERE id = $1 FOR UPDATE",
        )
        .bind(site.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::NotFound(format!("site {site}")))?;
        let mut record = crate::rows::site(&row)?;
        let before = record.clone();
        if let Some(origins) = &edit.origins {
            record.origins = origins.clone();
        }
        if let Some(policy) = &edit.policy {
            record.policy = policy.clone();
        }
        if let Some(secret) = &edit.secret {
            record.secret = secret.clone();
        }
        if record != before {
            record.version = before.version + 1;
            let policy = json(&record.policy)?;
            sqlx::query(
                "UPDATE sites SET secret = $1, origins = $2, policy = $3, version = $4
                 WHERE id = $5",
            )
            .bind(record.secret.as_str())
            .bind(json(&record.origins)?)
            .bind(&policy)
            .bind(record.version as i64)
            .bind(site.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            // The rules in force carry over to the new version.
            sqlx::query(
                "INSERT INTO rule_sets (site_id, version, policy, rules)
                 SELECT site_id, $1, $2, rules FROM rule_sets WHERE site_id = $3 AND version = $4",
            )
            .bind(record.version as i64)
            .bind(&policy)
            .bind(site.as_str())
            .bind(before.version as i64)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        if let Some(name) = &edit.name {
            sqlx::query("UPDATE sites SET name = $1 WHERE id = $2")
                .bind(name)
                .bind(site.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(record)
    }

    async fn create_login(&self, login: &LoginRecord) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO logins (id_hash, data, expires) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(&login.id_hash[..])
        .bind(&login.data)
        .bind(login.expires.as_millis())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn save_login(&self, login: &LoginRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO logins (id_hash, data, expires) VALUES ($1, $2, $3)
             ON CONFLICT (id_hash) DO UPDATE SET data = excluded.data, expires = excluded.expires",
        )
        .bind(&login.id_hash[..])
        .bind(&login.data)
        .bind(login.expires.as_millis())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn login(&self, id_hash: &[u8; 32], now: Timestamp) -> Result<Option<LoginRecord>> {
        sqlx::query("SELECT id_hash, data, expires FROM logins WHERE id_hash = $1 AND expires > $2")
            .bind(&id_hash[..])
            .bind(now.as_millis())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(login)
            .transpose()
    }

    async fn delete_login(&self, id_hash: &[u8; 32]) -> Result<()> {
        sqlx::query("DELETE FROM logins WHERE id_hash = $1")
            .bind(&id_hash[..])
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn prune_logins(&self, now: Timestamp) -> Result<usize> {
        let done = sqlx::query("DELETE FROM logins WHERE expires <= $1")
            .bind(now.as_millis())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() as usize)
    }

    async fn create_token(&self, t: &ApiToken) -> Result<ApiToken> {
        let sites: Vec<&str> = t.sites.iter().map(|s| s.as_str()).collect();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_tokens (hash, prefix, name, owner, sites, created, revoked)
             VALUES ($1, $2, $3, $4, $5, $6, NULL) RETURNING id",
        )
        .bind(&t.hash[..])
        .bind(&t.prefix)
        .bind(&t.name)
        .bind(t.owner)
        .bind(json(&sites)?)
        .bind(t.created.as_millis())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict("a token with this secret exists".to_owned())
            } else {
                db(e)
            }
        })?;
        Ok(ApiToken {
            id,
            revoked: None,
            ..t.clone()
        })
    }

    async fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiToken>> {
        sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE hash = $1"
        ))
        .bind(&hash[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(token)
        .transpose()
    }

    async fn tokens_of(&self, owner: UserId) -> Result<Vec<ApiToken>> {
        sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE owner = $1 ORDER BY id DESC"
        ))
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(token)
        .collect()
    }

    async fn revoke_token(&self, owner: UserId, id: i64, at: Timestamp) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked = $1 WHERE id = $2 AND owner = $3 AND revoked IS NULL",
        )
        .bind(at.as_millis())
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn save_rules(
        &self,
        site: &SiteId,
        base: u64,
        rules: &[RuleSpec],
        change: &Change,
    ) -> Result<u64> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let version = crate::new_rule_set(&mut tx, site, Some(base), rules, Some(change)).await?;
        tx.commit().await.map_err(db)?;
        Ok(version)
    }

    async fn rule_history(
        &self,
        site: &SiteId,
        before: u64,
        limit: usize,
    ) -> Result<Vec<RuleSetEntry>> {
        let before = i64::try_from(before).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT r.version, r.rules, r.author, r.changed_at, r.summary, u.name AS author_name
             FROM rule_sets r LEFT JOIN users u ON u.id = r.author
             WHERE r.site_id = $1 AND r.version < $2 ORDER BY r.version DESC LIMIT $3",
        )
        .bind(site.as_str())
        .bind(before)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|row| {
                let at: Option<i64> = col(row, "changed_at").map_err(corrupt)?;
                let change = match at {
                    Some(at) => Some(Change {
                        author: col(row, "author").map_err(corrupt)?,
                        at: Timestamp::from_millis(at),
                        summary: col::<Option<String>>(row, "summary")
                            .map_err(corrupt)?
                            .unwrap_or_default(),
                    }),
                    None => None,
                };
                Ok(RuleSetEntry {
                    version: version_col(row, "version").map_err(corrupt)?,
                    change,
                    author_name: col(row, "author_name").map_err(corrupt)?,
                    rules: json_col(row, "rules").map_err(corrupt)?,
                })
            })
            .collect()
    }
}
