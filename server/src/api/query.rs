//! Query strings and the one list convention. [`ApiQuery`] parses a route's query with the
//! standard error shape; [`ListQuery`] does the same for list routes and splits off their
//! paging (`limit`, `cursor`) as a [`Page`], which slices a sorted list (or hands a store
//! query its seek key) and answers the one envelope `{"items": [...], "next": "..." | null}`.
//!
//! A cursor is opaque to clients: the hex of `[scope, key]`, where the key is the sort key
//! of the last item of the page and the scope names the route path and its filters, so a
//! cursor used with another route or other filters is refused (400) instead of silently
//! skipping items. Pages are keyset pages: items added or removed between two requests do not
//! shift the ones after the cursor.

use super::error::ApiError;
use axum::Json;
use axum::extract::{FromRequestParts, Query};
use axum::http::Uri;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Items per page when the request does not say.
pub const DEFAULT_LIMIT: usize = 100;
/// Most items per page; a larger `limit` is refused (400).
pub const MAX_LIMIT: usize = 1000;

/// The query of a route, `T` with `#[serde(deny_unknown_fields)]`; a query that does not
/// decode is a 400 in the standard shape.
pub(super) struct ApiQuery<T>(pub(super) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parse(parts.uri.query().unwrap_or_default()).map(Self)
    }
}

/// Decodes a query string into `T`.
fn parse<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let uri: Uri = format!("/?{query}")
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("the query does not decode: {e}")))?;
    Query::try_from_uri(&uri)
        .map(|Query(t)| t)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

/// The query of a list route: its filters `F` and its [`Page`].
pub(super) struct ListQuery<F> {
    /// The filters (everything but `limit` and `cursor`).
    pub(super) filter: F,
    /// Where the page starts and how long it is.
    pub(super) page: Page,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Paging {
    limit: Option<usize>,
    cursor: Option<String>,
}

impl<S: Send + Sync, F: DeserializeOwned> FromRequestParts<S> for ListQuery<F> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let (paging, mut rest): (Vec<&str>, Vec<&str>) = parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|s| !s.is_empty())
            .partition(|s| {
                let key = s.split('=').next().unwrap_or_default();
                key == "limit" || key == "cursor"
            });
        let filter = parse(&rest.join("&"))?;
        let p: Paging = parse(&paging.join("&"))?;
        let limit = match p.limit.unwrap_or(DEFAULT_LIMIT) {
            n @ 1..=MAX_LIMIT => n,
            n => {
                return Err(ApiError::BadRequest(format!(
                    "limit must be 1 to {MAX_LIMIT}, got {n}"
                )));
            }
        };
        rest.sort_unstable();
        let scope = format!("{}?{}", parts.uri.path(), rest.join("&"));
        Ok(Self {
            filter,
            page: Page {
                limit,
                cursor: p.cursor,
                scope: format!("{:016x}", fnv(&scope)),
            },
        })
    }
}

/// 64-bit FNV-1a: a short, stable name for a cursor's scope.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The filters of a list that has none (yet): any parameter but `limit` and `cursor` is a 400.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NoFilter {}

/// One page of a list: `limit` items after the cursor's key.
#[derive(Debug, Clone)]
pub(super) struct Page {
    /// Items per page (1 to [`MAX_LIMIT`]).
    pub(super) limit: usize,
    cursor: Option<String>,
    scope: String,
}

impl Page {
    /// The sort key of the last item the previous page showed; `None` on the first page.
    ///
    /// # Errors
    /// 400 for a cursor this route with these filters did not make, or whose key is not
    /// a `K`.
    pub(super) fn after<K: DeserializeOwned>(&self) -> Result<Option<K>, ApiError> {
        let Some(c) = &self.cursor else {
            return Ok(None);
        };
        let bad = || {
            ApiError::BadRequest(format!(
                "cursor {c:?} does not belong to this list with these filters; \
                 start again without a cursor"
            ))
        };
        let bytes = hex::decode(c).map_err(|_| bad())?;
        let (scope, key): (String, K) = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if scope != self.scope {
            return Err(bad());
        }
        Ok(Some(key))
    }

    /// The cursor of the page after the one that ends with the item whose sort key is `key`.
    pub(super) fn cursor<K: Serialize>(&self, key: &K) -> String {
        hex::encode(serde_json::to_vec(&(&self.scope, key)).unwrap_or_default())
    }

    /// This page of `items` in the order of `key` (ascending; unique per item), and the
    /// cursor of the next page (`None` on the last). For lists held in memory.
    ///
    /// # Errors
    /// A bad cursor, as [`Page::after`].
    pub(super) fn slice<T, K>(
        &self,
        mut items: Vec<T>,
        key: impl Fn(&T) -> K,
    ) -> Result<(Vec<T>, Option<String>), ApiError>
    where
        K: Ord + Serialize + DeserializeOwned,
    {
        items.sort_by_cached_key(|t| key(t));
        let start = match self.after::<K>()? {
            Some(after) => items.partition_point(|t| key(t) <= after),
            None => 0,
        };
        let more = items.len() > start + self.limit;
        let page: Vec<T> = items.into_iter().skip(start).take(self.limit).collect();
        let next = if more {
            page.last().map(|t| self.cursor(&key(t)))
        } else {
            None
        };
        Ok((page, next))
    }
}

/// The one envelope of every list.
pub(super) fn envelope(items: Vec<Value>, next: Option<String>) -> Json<Value> {
    Json(json!({ "items": items, "next": next }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(limit: usize, cursor: Option<String>) -> Page {
        Page {
            limit,
            cursor,
            scope: "s".into(),
        }
    }

    #[test]
    fn slices_walk_every_item_once_and_survive_inserts() {
        let mut items: Vec<u32> = (0..10).map(|i| i * 2).collect();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let (p, next) = page(3, cursor).slice(items.clone(), |x| *x).unwrap();
            seen.extend(p);
            // An item added before the cursor is not shown again, nor does it shift others.
            items.push(1);
            items.dedup();
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, (0..10).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[test]
    fn cursors_of_other_scopes_or_garbage_are_refused() {
        let c = page(1, None).cursor(&5u32);
        let other = Page {
            limit: 1,
            cursor: Some(c.clone()),
            scope: "t".into(),
        };
        assert!(other.after::<u32>().is_err());
        assert_eq!(page(1, Some(c)).after::<u32>().unwrap(), Some(5));
        assert!(page(1, Some("zz".into())).after::<u32>().is_err());
        let wrong_type = page(1, None).cursor(&"x");
        assert!(page(1, Some(wrong_type)).after::<u32>().is_err());
    }
}
