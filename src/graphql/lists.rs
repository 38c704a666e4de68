//! Lists: Relay connection arguments, orderings, opaque keyset cursors, and pages.
//!
//! A page is fetched with one more row than asked for, to know whether more follow. The
//! order is the client's `orderBy` (default: traces by `TIMESTAMP DESC`, everything else by
//! `CREATED_AT DESC`, the view by `EXECUTED_AT DESC`) with the id as last tie-breaker in the
//! direction of the last key. A cursor holds the row's values of those keys and the
//! ordering it belongs to (base64url JSON): the next page is `WHERE (keys) > (values)` in
//! the order's sense, never an OFFSET, so pages stay stable while rows are inserted.

use std::sync::Arc;

use async_graphql::Value as GqlValue;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::catalog::{Kind, Table};
use crate::db::sql_types::Timestamp;
use crate::error::{AppError, AppResult};
use crate::graphql::records::Record;
use crate::sql::{Bind, CmpOp, Cond, OrderKey};

/// Rows per page when the client names no size.
pub const DEFAULT_PAGE_SIZE: i64 = 20;
/// The largest page a client may ask for.
pub const MAX_PAGE_SIZE: i64 = 100;

/// What a list field was asked for, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    /// The table listed.
    pub table: &'static Table,
    /// The client's filter.
    pub filter: Cond,
    /// The order, the id last.
    pub order: Vec<OrderKey>,
    /// Rows after (or before) the cursor.
    pub cursor: Cond,
    /// Whether a cursor was given.
    pub has_cursor: bool,
    /// The page size.
    pub limit: i64,
    /// Paging backwards (`last` / `before`).
    pub backward: bool,
}

impl ListQuery {
    /// The order the SQL uses: reversed when paging backwards.
    pub fn sql_order(&self) -> Vec<OrderKey> {
        if self.backward {
            self.order.iter().map(|k| OrderKey { desc: !k.desc, ..*k }).collect()
        } else {
            self.order.clone()
        }
    }

    /// The rows to fetch: one more than the page.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// Turns fetched rows (in SQL order, up to `fetch()`) into a page.
    pub fn page(&self, mut rows: Vec<Record>, total: Total) -> Page {
        let more = rows.len() as i64 > self.limit;
        rows.truncate(self.limit as usize);
        let (has_next, has_prev) = if self.backward {
            rows.reverse();
            (self.has_cursor, more)
        } else {
            (more, self.has_cursor)
        };
        Page { records: rows, has_next, has_prev, order: Arc::new(self.order.clone()), total }
    }

    /// A text that identifies the query (for grouping loader keys).
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{:?}|{:?}|{:?}|{}|{}",
            self.table.name, self.filter, self.order, self.cursor, self.limit, self.backward
        )
    }
}

/// How a page's `totalCount` is found, when asked for.
#[derive(Clone)]
pub enum Total {
    /// Known already.
    Known(i64),
    /// A count query to run.
    Count(crate::sql::Select),
    /// The parent's children matching the filter (counted for the parent's whole group).
    Children(Record, &'static crate::graphql::names::Relation, Arc<ListQuery>),
    /// The parent's targets through a link table matching the filter.
    Linked(Record, &'static crate::graphql::names::Link, Arc<ListQuery>),
    /// The parent's targets through an intermediate table matching the filter.
    Through(Record, &'static crate::graphql::names::Through, Arc<ListQuery>),
}

/// One page of a connection.
#[derive(Clone)]
pub struct Page {
    /// The rows, in order.
    pub records: Vec<Record>,
    /// Whether rows follow.
    pub has_next: bool,
    /// Whether rows precede.
    pub has_prev: bool,
    /// The order (for cursors).
    pub order: Arc<Vec<OrderKey>>,
    /// Where `totalCount` comes from.
    pub total: Total,
}

/// The default order of a table's lists.
pub fn default_order(table: &'static Table) -> Vec<(&'static str, bool)> {
    if table.name == "traces" {
        vec![("timestamp", true)]
    } else if table.column("created_at").is_some() {
        vec![("created_at", true)]
    } else {
        vec![("executed_at", true)]
    }
}

/// The order keys for `(column, descending)` pairs: NULL handling from the catalog, the id
/// appended (unless already there) in the direction of the last key.
pub fn order_keys(table: &'static Table, fields: &[(&'static str, bool)]) -> Vec<OrderKey> {
    let mut keys = Vec::new();
    for (column, desc) in fields {
        let Some(col) = table.column(column) else {
            continue;
        };
        if keys.iter().any(|k: &OrderKey| k.column == col.name) {
            continue;
        }
        keys.push(OrderKey { column: col.name, desc: *desc, nullable: col.nullable });
        if col.name == "id" {
            return keys;
        }
    }
    let desc = keys.last().is_some_and(|k| k.desc);
    keys.push(OrderKey { column: "id", desc, nullable: false });
    keys
}

fn order_fingerprint(order: &[OrderKey]) -> String {
    order.iter().map(|k| format!("{}:{}", k.column, if k.desc { "d" } else { "a" })).collect::<Vec<_>>().join(",")
}

/// The opaque cursor of a row in an order.
pub fn encode_cursor(record: &Record, order: &[OrderKey]) -> String {
    let values: Vec<&Value> = order.iter().map(|k| record.get(k.column)).collect();
    URL_SAFE_NO_PAD.encode(json!({"o": order_fingerprint(order), "v": values}).to_string())
}

/// Reads a cursor back into the values of the order's keys (`None` for NULL).
fn decode_cursor(table: &'static Table, order: &[OrderKey], cursor: &str, arg: &str) -> AppResult<Vec<Option<Bind>>> {
    let bad = |why: &str| AppError::bad_input(arg, format!("invalid cursor: {why}"));
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| bad("not a cursor of this API"))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad("not a cursor of this API"))?;
    if value["o"].as_str() != Some(order_fingerprint(order).as_str()) {
        return Err(bad("it belongs to another ordering of this list"));
    }
    let values = value["v"].as_array().filter(|v| v.len() == order.len()).ok_or_else(|| bad("malformed"))?;
    order
        .iter()
        .zip(values)
        .map(|(key, value)| {
            if value.is_null() {
                return Ok(None);
            }
            let kind = table.column(key.column).map(|c| c.kind).ok_or_else(|| bad("unknown column"))?;
            bind_of(kind, value).map(Some).ok_or_else(|| bad("malformed value"))
        })
        .collect()
}

/// A JSON value as a bind of a column kind.
pub fn bind_of(kind: Kind, value: &Value) -> Option<Bind> {
    Some(match kind {
        Kind::Id | Kind::Text | Kind::Date | Kind::Enum(_) => Bind::Text(value.as_str()?.to_owned()),
        Kind::Int => Bind::Int(value.as_i64()?),
        Kind::Real => Bind::Real(value.as_f64()?),
        Kind::Bool => Bind::Bool(value.as_bool()?),
        Kind::Timestamp => Bind::Timestamp(Timestamp::parse_input(value.as_str()?).ok()?),
        Kind::Json => Bind::Json(crate::db::sql_types::Json(value.clone())),
    })
}

/// The keyset condition: rows strictly after (or before) the cursor's position.
fn keyset(order: &[OrderKey], values: Vec<Option<Bind>>, after: bool) -> Cond {
    let mut alternatives = Vec::new();
    let mut equal_so_far = Vec::new();
    for (key, value) in order.iter().zip(values) {
        // Moving towards larger values of this key: paging after an ascending key, or
        // before a descending one. NULLs sort last ascending (after every value) and first
        // descending (before every value).
        let forward = after != key.desc;
        let step = match (&value, forward) {
            (None, true) => Cond::False,
            (None, false) => Cond::IsNull(key.column, false),
            (Some(v), true) => {
                let greater = Cond::Cmp(key.column, CmpOp::Gt, v.clone());
                if key.nullable {
                    Cond::any(vec![greater, Cond::IsNull(key.column, true)])
                } else {
                    greater
                }
            }
            (Some(v), false) => Cond::Cmp(key.column, CmpOp::Lt, v.clone()),
        };
        let mut all = equal_so_far.clone();
        all.push(step);
        alternatives.push(Cond::all(all));
        equal_so_far.push(match value {
            None => Cond::IsNull(key.column, true),
            Some(v) => Cond::Cmp(key.column, CmpOp::Eq, v),
        });
    }
    Cond::any(alternatives)
}

/// Connection arguments as given.
#[derive(Debug, Default, Clone)]
pub struct ListArgs {
    /// `first`
    pub first: Option<i64>,
    /// `after`
    pub after: Option<String>,
    /// `last`
    pub last: Option<i64>,
    /// `before`
    pub before: Option<String>,
    /// `filter`
    pub filter: Option<GqlValue>,
    /// `orderBy`
    pub order_by: Option<GqlValue>,
}

impl ListArgs {
    /// Checks the arguments and builds the query.
    pub fn parse(self, table: &'static Table) -> AppResult<ListQuery> {
        let check = |name: &str, size: Option<i64>| match size {
            Some(n) if !(0..=MAX_PAGE_SIZE).contains(&n) => {
                Err(AppError::bad_input(name, format!("`{name}` must be between 0 and {MAX_PAGE_SIZE}, got {n}")))
            }
            other => Ok(other),
        };
        let first = check("first", self.first)?;
        let last = check("last", self.last)?;
        if first.is_some() && last.is_some() {
            return Err(AppError::bad_input("last", "give `first` or `last`, not both"));
        }
        if self.after.is_some() && self.before.is_some() {
            return Err(AppError::bad_input("before", "give `after` or `before`, not both"));
        }
        let backward = last.is_some() || (first.is_none() && self.before.is_some());
        let limit = if backward { last } else { first }.unwrap_or(DEFAULT_PAGE_SIZE);
        let filter = match &self.filter {
            Some(filter) => crate::graphql::filter::parse(table, filter, "filter")?,
            None => Cond::True,
        };
        let order = order_keys(table, &parse_order(table, self.order_by.as_ref())?);
        let (cursor, has_cursor) = match (&self.after, &self.before) {
            (Some(after), _) => (keyset(&order, decode_cursor(table, &order, after, "after")?, true), true),
            (_, Some(before)) => (keyset(&order, decode_cursor(table, &order, before, "before")?, false), true),
            _ => (Cond::True, false),
        };
        Ok(ListQuery { table, filter, order, cursor, has_cursor, limit, backward })
    }
}

/// `orderBy: [{field, direction}]` → `(column, descending)` pairs, or the default order.
fn parse_order(table: &'static Table, value: Option<&GqlValue>) -> AppResult<Vec<(&'static str, bool)>> {
    let items = match value {
        Some(GqlValue::List(items)) if !items.is_empty() => items,
        Some(GqlValue::Object(_)) => std::slice::from_ref(value.unwrap_or(&GqlValue::Null)),
        _ => return Ok(default_order(table)),
    };
    items
        .iter()
        .map(|item| {
            let GqlValue::Object(fields) = item else {
                return Err(AppError::bad_input("orderBy", "each ordering is an object {field, direction}"));
            };
            let field = match fields.get("field") {
                Some(GqlValue::Enum(name)) => name.as_str().to_ascii_lowercase(),
                Some(GqlValue::String(name)) => name.to_ascii_lowercase(),
                _ => return Err(AppError::bad_input("orderBy.field", "an ordering needs a field")),
            };
            let column = table
                .columns
                .iter()
                .find(|c| c.name == field && c.kind != Kind::Json)
                .ok_or_else(|| AppError::bad_input("orderBy.field", format!("cannot order by `{field}`")))?;
            let desc = match fields.get("direction") {
                Some(GqlValue::Enum(d)) => d.as_str() == "DESC",
                Some(GqlValue::String(d)) => d == "DESC",
                _ => false,
            };
            Ok((column.name, desc))
        })
        .collect()
}
