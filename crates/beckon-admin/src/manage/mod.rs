//! What the dashboard and the API do, once: both call these, so both validate the same way and
//! answer with the same errors. Every function takes the [`Actor`](crate::auth::Actor) and
//! checks, first, that it may touch what it names.

pub mod analytics;
pub mod backtest;
pub mod conversations;
pub mod install;
pub mod leads;
pub mod outbox;
pub mod people;
pub mod rules;
pub mod sites;
pub mod visitors;

/// A page of a list: its items and the cursor of the next page, if there is one.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Paging of a list: `?limit=&after=`.
#[derive(Clone, Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// At most this many items (1–200, 50 by default).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
}

impl Paging {
    /// The most items one page holds.
    pub const MAX: usize = 200;

    /// The page size asked for; out of bounds is an error, not a silent clamp.
    pub fn limit(&self) -> crate::error::AdminResult<usize> {
        match self.limit {
            None => Ok(50),
            Some(l) if (1..=Self::MAX as u32).contains(&l) => Ok(l as usize),
            Some(l) => Err(crate::error::AdminError::BadRequest(format!(
                "limit {l} is not between 1 and {}",
                Self::MAX
            ))),
        }
    }

    /// Pages a list sorted by `key`: the items after the cursor, at most `limit`.
    pub fn apply<T>(
        &self,
        items: Vec<T>,
        key: impl Fn(&T) -> String,
    ) -> crate::error::AdminResult<Page<T>> {
        let limit = self.limit()?;
        let mut rest: Vec<T> = match &self.after {
            Some(after) => items.into_iter().filter(|i| key(i) > *after).collect(),
            None => items,
        };
        let next = (rest.len() > limit).then(|| key(&rest[limit - 1]));
        rest.truncate(limit);
        Ok(Page { items: rest, next })
    }
}

/// A list's `limit`: 1 to 1000 when given (out of bounds is an error, not a silent clamp),
/// else `default`.
pub fn limit_of(limit: Option<u32>, default: usize) -> crate::error::AdminResult<usize> {
    match limit {
        None => Ok(default),
        Some(n @ 1..=1000) => Ok(n as usize),
        Some(n) => Err(crate::error::AdminError::BadRequest(format!(
            "limit {n} is not between 1 and 1000"
        ))),
    }
}

/// A random secret: `prefix` and 32 random bytes, URL-safe base64.
pub fn secret(prefix: &str) -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// A millisecond timestamp as RFC 3339 text, for people and JSON.
pub fn rfc3339(t: beckon_engine::Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.as_millis()) * 1_000_000)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_the_cursor_to_the_end() {
        let items: Vec<u32> = (1..=5).collect();
        let key = |i: &u32| format!("{i:03}");
        let paging = Paging {
            limit: Some(2),
            after: None,
        };
        let first = paging.apply(items.clone(), key).unwrap();
        assert_eq!(first.items, vec![1, 2]);
        let second = Paging {
            limit: Some(2),
            after: first.next,
        }
        .apply(items.clone(), key)
        .unwrap();
        assert_eq!(second.items, vec![3, 4]);
        let last = Paging {
            limit: Some(2),
            after: second.next,
        }
        .apply(items.clone(), key)
        .unwrap();
        assert!(
            Paging {
                limit: Some(201),
                after: None
            }
            .apply(items, key)
            .is_err()
        );
        assert_eq!((last.items, last.next), (vec![5], None));
    }
}
