//! Batched reads. A relation asked of a row is loaded for every row of its [`Group`] (the
//! rows one statement returned) in one statement, whatever the page size: a page of 100
//! traces with their feedback, executions and each execution's eval costs 4 statements.
//! Root lookups by id (`x(id)`, `node(id)`, `me`) go through async-graphql's `DataLoader`,
//! which batches the root fields of one request. Both are created per request and hold the
//! caller's [`Access`], so every statement is scoped to the caller and nothing is shared
//! across callers.
//!
//! [`Group`]: crate::graphql::records::Group

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use futures_util::future::try_join_all;

use crate::catalog::{Scope, Table};
use crate::db::Db;
use crate::error::{AppError, AppResult};
use crate::graphql::access::Access;
use crate::graphql::lists::ListQuery;
use crate::graphql::names::{Link, Relation};
use crate::graphql::records::{self, MemoKey, Record};
use crate::sql::{Columns, Cond, Per, Projection, Select};

/// The per-request reader: the database and the caller.
pub struct GraphLoader {
    /// The database.
    pub db: Db,
    /// The caller.
    pub access: Arc<Access>,
}

/// The visible row of `table` whose `column` (the id) is `value`: the key of root lookups.
#[derive(Debug, Clone)]
pub struct RowKey {
    /// The table.
    pub table: &'static Table,
    /// The column looked up.
    pub column: &'static str,
    /// Its value.
    pub value: String,
    /// The columns to load (the id included).
    pub columns: Columns,
}

impl PartialEq for RowKey {
    fn eq(&self, other: &Self) -> bool {
        self.table.name == other.table.name
            && self.column == other.column
            && self.value == other.value
            && self.columns == other.columns
    }
}
impl Eq for RowKey {}
impl Hash for RowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.table.name, self.column, &self.value, self.columns).hash(state);
    }
}

/// Rows keyed by a text column's value.
fn by_column(rows: Vec<Record>, column: &str) -> HashMap<String, Vec<Record>> {
    let mut out: HashMap<String, Vec<Record>> = HashMap::new();
    for record in rows {
        if let Some(key) = record.text(column) {
            out.entry(key.to_owned()).or_default().push(record);
        }
    }
    out
}

impl Loader<RowKey> for GraphLoader {
    type Value = Record;
    type Error = AppError;

    async fn load(&self, keys: &[RowKey]) -> Result<HashMap<RowKey, Record>, AppError> {
        let mut groups: HashMap<(&str, &str, Columns), Vec<&RowKey>> = HashMap::new();
        for key in keys {
            groups.entry((key.table.name, key.column, key.columns)).or_default().push(key);
        }
        let batches = groups.into_values().map(|keys| async move {
            let (table, column, columns) = (keys[0].table, keys[0].column, keys[0].columns);
            let values: Vec<String> = keys.iter().map(|k| k.value.clone()).collect();
            let rows = self.rows_where(table, column, values, columns.with(table, column)).await?;
            Ok::<_, AppError>(
                rows.into_iter()
                    .filter_map(|record| {
                        let value = record.text(column)?.to_owned();
                        Some((RowKey { table, column, value, columns }, record))
                    })
                    .collect::<Vec<_>>(),
            )
        });
        Ok(try_join_all(batches).await?.into_iter().flatten().collect())
    }
}

impl GraphLoader {
    /// The visible rows of `table` whose `column` is one of `values`.
    async fn rows_where(
        &self,
        table: &'static Table,
        column: &'static str,
        values: Vec<String>,
        columns: Columns,
    ) -> AppResult<Vec<Record>> {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let filter = Cond::all(vec![Cond::InText(column, values), self.access.scope(table)]);
        records::load(&self.db, Select::rows(table, filter).columns(columns)).await
    }

    /// The caller's scope on a child table reached through `column`, unless the parent's
    /// visibility already implies it (the column is the child's own scope key).
    fn child_scope(&self, table: &'static Table, column: &str) -> Cond {
        match table.scope {
            Scope::Parent { column: scope_column, .. } if scope_column == column => Cond::True,
            _ => self.access.scope(table),
        }
    }

    /// The parent a row's foreign key names, if visible.
    pub async fn parent(
        &self,
        record: &Record,
        relation: &'static Relation,
        columns: Columns,
    ) -> AppResult<Option<Record>> {
        let column = relation.column.name;
        let Some(value) = record.text(column) else { return Ok(None) };
        let columns = columns.with(relation.parent, "id");
        let key = MemoKey("parent", relation.parent.name, column, columns, String::new());
        let parents = record
            .group
            .memo(key, || async {
                let rows = self.rows_where(relation.parent, "id", record.group.texts(column), columns).await?;
                Ok(by_column(rows, "id"))
            })
            .await?;
        Ok(parents.get(value).and_then(|rows| rows.first().cloned()))
    }

    /// A row's one child through a unique key (`trace.feedback`), if visible.
    pub async fn only_child(
        &self,
        record: &Record,
        relation: &'static Relation,
        columns: Columns,
    ) -> AppResult<Option<Record>> {
        let column = relation.column.name;
        let columns = columns.with(relation.child, column);
        let key = MemoKey("only", relation.child.name, column, columns, String::new());
        let children = record
            .group
            .memo(key, || async {
                let ids = record.group.texts("id");
                if ids.is_empty() {
                    return Ok(HashMap::new());
                }
                let filter = Cond::all(vec![Cond::InText(column, ids), self.child_scope(relation.child, column)]);
                let select = Select::rows(relation.child, filter).columns(columns);
                Ok(by_column(records::load(&self.db, select).await?, column))
            })
            .await?;
        Ok(children.get(record.id()).and_then(|rows| rows.first().cloned()))
    }

    /// A page of a row's children: the first rows per parent for the whole group, in one
    /// statement (a window function partitioned by the key).
    pub async fn children(
        &self,
        record: &Record,
        relation: &'static Relation,
        query: &ListQuery,
        columns: Columns,
    ) -> AppResult<Vec<Record>> {
        let column = relation.column.name;
        let columns = columns.with(relation.child, column);
        let key = MemoKey("children", relation.child.name, column, columns, query.fingerprint());
        let pages = record
            .group
            .memo(key, || async {
                let keys = record.group.texts("id");
                if keys.is_empty() {
                    return Ok(HashMap::new());
                }
                let filter =
                    Cond::all(vec![query.filter.clone(), query.cursor.clone(), self.child_scope(query.table, column)]);
                let select = Select {
                    order: query.sql_order(),
                    limit: Some(query.fetch()),
                    per: Some(Per { column, keys }),
                    ..Select::rows(query.table, filter).columns(columns)
                };
                Ok(by_column(records::load(&self.db, select).await?, column))
            })
            .await?;
        Ok(pages.get(record.id()).cloned().unwrap_or_default())
    }

    /// How many children of a row match a filter, counted for the whole group at once.
    pub async fn child_count(&self, record: &Record, relation: &'static Relation, filter: &Cond) -> AppResult<i64> {
        let column = relation.column.name;
        let key = MemoKey("count", relation.child.name, column, Columns::none(), format!("{filter:?}"));
        let counts = record
            .group
            .memo(key, || async {
                let ids = record.group.texts("id");
                let filter = Cond::all(vec![
                    Cond::InText(column, ids),
                    filter.clone(),
                    self.child_scope(relation.child, column),
                ]);
                let select = Select { projection: Projection::CountBy(column), ..Select::rows(relation.child, filter) };
                records::count_by(&self.db, select).await
            })
            .await?;
        Ok(counts.get(record.id()).copied().unwrap_or(0))
    }

    /// The aggregates of a row's children matching a filter, for the whole group at once.
    pub async fn child_aggregate(
        &self,
        record: &Record,
        relation: &'static Relation,
        filter: &Cond,
        columns: &[&'static str],
    ) -> AppResult<records::Aggregate> {
        let column = relation.column.name;
        let key = MemoKey("aggregate", relation.child.name, column, Columns::none(), format!("{filter:?}"));
        let all = record
            .group
            .memo(key, || async {
                let ids = record.group.texts("id");
                let filter = Cond::all(vec![
                    Cond::InText(column, ids),
                    filter.clone(),
                    self.child_scope(relation.child, column),
                ]);
                let projection = Projection::Aggregate(Some(column), columns.to_vec());
                records::aggregate_by(&self.db, Select { projection, ..Select::rows(relation.child, filter) }).await
            })
            .await?;
        Ok(all.get(record.id()).cloned().unwrap_or_default())
    }

    /// A row's targets through a link table (`agent.tools`): the page (up to `fetch` rows
    /// after the cursor; every matching row when counting) and how many match. Two statements for the whole group: the
    /// link rows, then the matching targets in order.
    pub async fn linked(
        &self,
        record: &Record,
        link: &'static Link,
        query: &ListQuery,
        count: bool,
        columns: Columns,
    ) -> AppResult<(Vec<Record>, i64)> {
        let columns = columns.with(query.table, "id");
        let key = MemoKey(
            if count { "linked-count" } else { "linked" },
            link.link.name,
            link.from_column,
            columns,
            query.fingerprint(),
        );
        let results = record
            .group
            .memo(key, || async {
                let ids = record.group.texts("id");
                let link_columns = Columns::none().with(link.link, link.from_column).with(link.link, link.to_column);
                let links = self.rows_where(link.link, link.from_column, ids, link_columns).await?;
                let mut targets_of: HashMap<String, Vec<String>> = HashMap::new();
                for row in &links {
                    if let (Some(from), Some(to)) = (row.text(link.from_column), row.text(link.to_column)) {
                        targets_of.entry(from.to_owned()).or_default().push(to.to_owned());
                    }
                }
                let mut all: Vec<String> = targets_of.values().flatten().cloned().collect();
                all.sort();
                all.dedup();
                let mut conds = vec![Cond::InText("id", all), query.filter.clone(), self.access.scope(query.table)];
                if !count {
                    conds.push(query.cursor.clone());
                }
                let select =
                    Select { order: query.sql_order(), ..Select::rows(query.table, Cond::all(conds)).columns(columns) };
                let targets = records::load(&self.db, select).await?;
                let mut out: HashMap<String, (Vec<Record>, i64)> = HashMap::new();
                for (parent, mine) in targets_of {
                    let matching: Vec<Record> =
                        targets.iter().filter(|t| mine.iter().any(|id| id == t.id())).cloned().collect();
                    let total = matching.len() as i64;
                    let page =
                        if count { Vec::new() } else { matching.into_iter().take(query.fetch() as usize).collect() };
                    out.insert(parent, (page, total));
                }
                Ok(out)
            })
            .await?;
        Ok(results.get(record.id()).cloned().unwrap_or_default())
    }
}
