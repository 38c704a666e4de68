//! Batched reads of the paths through an intermediate table ([`Through`]): `agent.traces`,
//! the traces whose `agent_version_id` names a version of the agent.
//!
//! Like every relation, a path asked of one row is loaded for its whole [`Group`], whatever
//! the page size and however many rows the group has:
//!
//! * the intermediate rows of the group (`agent_versions WHERE agent_id IN (…)`): one
//!   statement, shared by the page, its `totalCount` and its `aggregate`;
//! * a page: the first rows after the cursor *per intermediate row* (a window function,
//!   as for children), one statement; each parent's page is then the first rows of its
//!   intermediate rows' pages merged in the list's order (the first N of a union are among
//!   the first N of each part);
//! * `totalCount`: the matching rows counted per intermediate row (`GROUP BY`) and summed;
//! * `aggregate`: the aggregates per intermediate row, combined, and for each nullable
//!   numeric column its non-null rows counted per intermediate row (for exact averages).
//!
//! Tenancy as everywhere: the intermediate and target rows are read with the caller's scope.
//!
//! [`Group`]: crate::graphql::records::Group

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::catalog::{Kind, Scope, Table};
use crate::error::AppResult;
use crate::graphql::lists::ListQuery;
use crate::graphql::loader::GraphLoader;
use crate::graphql::names::Through;
use crate::graphql::records::{self, Aggregate, Record};
use crate::sql::{Columns, Cond, OrderKey, Per, Projection, Select};

/// Parent id → the ids of its intermediate rows.
type ViaIds = HashMap<String, Vec<String>>;

/// How two stored values compare in an order key's column, ascending, as both backends
/// order them: NULL after every value, numbers as numbers, text (timestamps included, in
/// their fixed-width UTC form) by code point, false before true.
fn compare_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => x.as_f64().unwrap_or(0.0).total_cmp(&y.as_f64().unwrap_or(0.0)),
        },
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

/// How two rows compare in an order (the id, always its last key, breaks every tie).
pub fn compare_rows(a: &Map<String, Value>, b: &Map<String, Value>, order: &[OrderKey]) -> Ordering {
    compare_by(|c| a.get(c).unwrap_or(&Value::Null), |c| b.get(c).unwrap_or(&Value::Null), order)
}

/// [`compare_rows`] with the rows' values given by a function of the column.
fn compare_by<'a>(a: impl Fn(&str) -> &'a Value, b: impl Fn(&str) -> &'a Value, order: &[OrderKey]) -> Ordering {
    for key in order {
        let (x, y) = (a(key.column), b(key.column));
        let ordering = compare_values(x, y);
        let ordering = if key.desc { ordering.reverse() } else { ordering };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

impl GraphLoader {
    /// The caller's scope on the intermediate table, unless the parent's visibility implies
    /// it (the key is the intermediate table's own scope key).
    fn via_scope(&self, through: &Through) -> Cond {
        match through.via.scope {
            Scope::Parent { column, .. } if column == through.via_column => Cond::True,
            _ => self.access.scope(through.via),
        }
    }

    /// The intermediate rows of every row of the record's group: one statement, memoised.
    async fn via_ids(&self, record: &Record, through: &'static Through) -> AppResult<Arc<ViaIds>> {
        let key = format!("through|{}|{}", through.via.name, through.via_column);
        record
            .group
            .memo(key, || async {
                let ids = record.group.texts("id");
                if ids.is_empty() {
                    return Ok(ViaIds::new());
                }
                let filter = Cond::all(vec![Cond::InText(through.via_column, ids), self.via_scope(through)]);
                let columns = Columns::none().with(through.via, "id").with(through.via, through.via_column);
                let mut out = ViaIds::new();
                for row in records::load(&self.db, Select::rows(through.via, filter).columns(columns)).await? {
                    if let Some(parent) = row.text(through.via_column) {
                        out.entry(parent.to_owned()).or_default().push(row.id().to_owned());
                    }
                }
                Ok(out)
            })
            .await
    }

    /// The condition on the target table: its key names one of these intermediate rows,
    /// the caller sees it, and the list's filter holds.
    fn through_filter(&self, through: &Through, via: &ViaIds, filter: &Cond) -> Cond {
        Cond::all(vec![Cond::InText(through.to_column, all_via(via)), filter.clone(), self.access.scope(through.to)])
    }

    /// A page of a row's targets through the intermediate table (up to `fetch` rows after
    /// the cursor, in the list's order), for the whole group in two statements.
    pub async fn through(
        &self,
        record: &Record,
        through: &'static Through,
        query: &ListQuery,
        columns: Columns,
    ) -> AppResult<Vec<Record>> {
        let via = self.via_ids(record, through).await?;
        let columns = columns.with(through.to, through.to_column);
        let key = format!("through|page|{}|{}|{columns:?}", through.to_column, query.fingerprint());
        let pages = record
            .group
            .memo(key, || async {
                if via.is_empty() {
                    return Ok(HashMap::new());
                }
                let order = query.sql_order();
                let filter = Cond::all(vec![query.filter.clone(), self.access.scope(through.to), query.cursor.clone()]);
                let select = Select {
                    order: order.clone(),
                    limit: Some(query.fetch()),
                    per: Some(Per { column: through.to_column, keys: all_via(&via) }),
                    ..Select::rows(query.table, filter).columns(columns)
                };
                let rows = records::load(&self.db, select).await?;
                let mut by_via: HashMap<&str, Vec<&Record>> = HashMap::new();
                for row in &rows {
                    if let Some(v) = row.text(through.to_column) {
                        by_via.entry(v).or_default().push(row);
                    }
                }
                // Each parent's page: its intermediate rows' pages merged in order, cut to size.
                let mut parents = Vec::new();
                let mut maps = Vec::new();
                for (parent, vias) in via.iter() {
                    let mut mine: Vec<&Record> =
                        vias.iter().flat_map(|v| by_via.get(v.as_str()).into_iter().flatten().copied()).collect();
                    mine.sort_by(|a, b| compare_by(|c| a.get(c), |c| b.get(c), &order));
                    mine.truncate(query.fetch() as usize);
                    parents.push((parent.clone(), mine.len()));
                    maps.extend(mine.into_iter().map(Record::to_map));
                }
                // The rows shown form the next group (their own relations load for them only).
                let mut shown = records::grouped(query.table, maps).into_iter();
                let mut out: HashMap<String, Vec<Record>> = HashMap::new();
                for (parent, n) in parents {
                    out.insert(parent, shown.by_ref().take(n).collect());
                }
                Ok(out)
            })
            .await?;
        Ok(pages.get(record.id()).cloned().unwrap_or_default())
    }

    /// Counts per intermediate row of the targets matching `filter` (with `extra`), summed
    /// per parent of the group: one statement.
    async fn through_counts(
        &self,
        through: &'static Through,
        via: &ViaIds,
        filter: &Cond,
        extra: Cond,
    ) -> AppResult<HashMap<String, i64>> {
        if via.is_empty() {
            return Ok(HashMap::new());
        }
        let filter = Cond::all(vec![self.through_filter(through, via, filter), extra]);
        let select = Select { projection: Projection::CountBy(through.to_column), ..Select::rows(through.to, filter) };
        let per_via = records::count_by(&self.db, select).await?;
        Ok(via
            .iter()
            .map(|(parent, vias)| (parent.clone(), vias.iter().filter_map(|v| per_via.get(v)).sum()))
            .collect())
    }

    /// How many targets of a row match a filter, counted for the whole group at once.
    pub async fn through_count(&self, record: &Record, through: &'static Through, filter: &Cond) -> AppResult<i64> {
        let via = self.via_ids(record, through).await?;
        let key = format!("through|count|{}|{filter:?}", through.to_column);
        let counts =
            record.group.memo(key, || async { self.through_counts(through, &via, filter, Cond::True).await }).await?;
        Ok(counts.get(record.id()).copied().unwrap_or(0))
    }

    /// The aggregates of a row's targets matching a filter, for the whole group at once: the
    /// aggregates per intermediate row combined (counts, sums, minima and maxima add up;
    /// averages are the summed values over the non-null values counted).
    pub async fn through_aggregate(
        &self,
        record: &Record,
        through: &'static Through,
        filter: &Cond,
        columns: &[&'static str],
    ) -> AppResult<Aggregate> {
        let via = self.via_ids(record, through).await?;
        let key = format!("through|aggregate|{}|{filter:?}", through.to_column);
        let all = record
            .group
            .memo(key, || async {
                if via.is_empty() {
                    return Ok(HashMap::new());
                }
                let select = Select {
                    projection: Projection::Aggregate(Some(through.to_column), columns.to_vec()),
                    ..Select::rows(through.to, self.through_filter(through, &via, filter))
                };
                let per_via = records::aggregate_by(&self.db, select).await?;
                // The non-null values of each nullable column, per parent.
                let mut non_null: HashMap<&'static str, HashMap<String, i64>> = HashMap::new();
                for &column in columns.iter().filter(|c| nullable(through.to, c)) {
                    let counts = self.through_counts(through, &via, filter, Cond::IsNull(column, false)).await?;
                    non_null.insert(column, counts);
                }
                let mut out = HashMap::new();
                for (parent, vias) in via.iter() {
                    let parts: Vec<&Aggregate> = vias.iter().filter_map(|v| per_via.get(v)).collect();
                    let counted = |column: &str| match non_null.get(column) {
                        Some(counts) => counts.get(parent).copied().unwrap_or(0),
                        None => parts.iter().map(|p| p.count).sum(),
                    };
                    out.insert(parent.clone(), combine(&parts, columns, counted));
                }
                Ok(out)
            })
            .await?;
        Ok(all.get(record.id()).cloned().unwrap_or_default())
    }
}

/// Every intermediate row's id, once.
fn all_via(via: &ViaIds) -> Vec<String> {
    let mut all: Vec<String> = via.values().flatten().cloned().collect();
    all.sort_unstable();
    all.dedup();
    all
}

fn nullable(table: &Table, column: &str) -> bool {
    table.column(column).is_some_and(|c| c.nullable && matches!(c.kind, Kind::Int | Kind::Real))
}

/// Aggregates of disjoint parts as one: `counted(column)` is how many non-null values the
/// column has over all parts.
fn combine(parts: &[&Aggregate], columns: &[&'static str], counted: impl Fn(&str) -> i64) -> Aggregate {
    let mut out = Aggregate { count: parts.iter().map(|p| p.count).sum(), ..Aggregate::default() };
    for column in columns {
        let values = |i: usize| parts.iter().filter_map(move |p| p.values[i].get(*column).and_then(Value::as_f64));
        let Some(sum) = values(0).reduce(|a, b| a + b) else {
            continue;
        };
        let min = values(2).fold(f64::INFINITY, f64::min);
        let max = values(3).fold(f64::NEG_INFINITY, f64::max);
        let n = counted(column);
        let avg = if n > 0 { Some(sum / n as f64) } else { None };
        for (slot, value) in out.values.iter_mut().zip([Some(sum), avg, Some(min), Some(max)]) {
            if let Some(value) = value {
                slot.insert((*column).to_owned(), serde_json::json!(value));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(pairs: Value) -> Map<String, Value> {
        pairs.as_object().unwrap().clone()
    }

    #[test]
    fn rows_compare_as_the_databases_order_them() {
        let order = [
            OrderKey { column: "tokens", desc: false, nullable: true },
            OrderKey { column: "id", desc: false, nullable: false },
        ];
        let a = row(json!({"tokens": 2, "id": "b"}));
        let b = row(json!({"tokens": 10, "id": "a"}));
        let c = row(json!({"tokens": null, "id": "a"}));
        assert_eq!(compare_rows(&a, &b, &order), Ordering::Less, "numbers as numbers");
        assert_eq!(compare_rows(&b, &c, &order), Ordering::Less, "NULL last ascending");
        let desc: Vec<OrderKey> = order.iter().map(|k| OrderKey { desc: true, ..*k }).collect();
        assert_eq!(compare_rows(&c, &b, &desc), Ordering::Less, "NULL first descending");
        let x = row(json!({"tokens": 2, "id": "a"}));
        assert_eq!(compare_rows(&x, &a, &order), Ordering::Less, "the id breaks ties");
        let early = row(json!({"at": "2026-01-15T09:00:00.000000Z"}));
        let late = row(json!({"at": "2026-01-15T10:00:00.000000Z"}));
        let by_time = [OrderKey { column: "at", desc: true, nullable: false }];
        assert_eq!(compare_rows(&late, &early, &by_time), Ordering::Less);
    }

    #[test]
    fn parts_combine_into_exact_aggregates() {
        let part = |count, sum: Value, avg: Value, min: Value, max: Value| Aggregate {
            count,
            values: [row(json!({"t": sum})), row(json!({"t": avg})), row(json!({"t": min})), row(json!({"t": max}))],
        };
        // Values [0, 0] (and a NULL) and [6].
        let a = part(3, json!(0), json!(0.0), json!(0), json!(0));
        let b = part(1, json!(6), json!(6.0), json!(6), json!(6));
        let all = combine(&[&a, &b], &["t"], |_| 3);
        assert_eq!(all.count, 4);
        assert_eq!(all.values[0]["t"], json!(6.0));
        assert_eq!(all.values[1]["t"], json!(2.0));
        assert_eq!(all.values[2]["t"], json!(0.0));
        assert_eq!(all.values[3]["t"], json!(6.0));
        let none = combine(&[], &["t"], |_| 0);
        assert_eq!(none.count, 0);
        assert!(none.values[1].is_empty());
    }
}
