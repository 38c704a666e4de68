//! The per-request data loader: every relation of the graph is read in batches, one SQL
//! statement per relation (and per distinct set of list arguments) per level of the query,
//! whatever the number of parents. It holds the request's [`Access`], so every batch is
//! scoped to the caller; it is created per request and never shared across callers.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use futures_util::future::try_join_all;

use crate::catalog::{Scope, Table};
use crate::db::Db;
use crate::error::AppError;
use crate::graphql::access::Access;
use crate::graphql::lists::ListQuery;
use crate::graphql::records::{self, Record};
use crate::sql::{Bind, Cond, Projection, Select};

/// The loader behind every relation.
pub struct GraphLoader {
    /// The database.
    pub db: Db,
    /// The caller.
    pub access: Arc<Access>,
}

/// The visible row of `table` whose `column` (the id, or a unique key) is `value`.
#[derive(Debug, Clone)]
pub struct RowKey {
    /// The table.
    pub table: &'static Table,
    /// The column looked up.
    pub column: &'static str,
    /// Its value.
    pub value: String,
}

impl PartialEq for RowKey {
    fn eq(&self, other: &Self) -> bool {
        self.table.name == other.table.name
            && self.column == other.column
            && self.value == other.value
    }
}
impl Eq for RowKey {}
impl Hash for RowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.table.name, self.column, &self.value).hash(state);
    }
}

/// A list of children: one page per parent, for one set of list arguments.
#[derive(Clone)]
pub struct ChildrenKey {
    /// The children's key column.
    pub column: &'static str,
    /// The list arguments.
    pub query: Arc<ListQuery>,
    /// Identifies `query`.
    pub fingerprint: Arc<str>,
    /// The parent's id.
    pub parent: String,
}

/// The number of children of a parent matching a filter.
#[derive(Clone)]
pub struct ChildCountKey {
    /// The children's table.
    pub table: &'static Table,
    /// Their key column.
    pub column: &'static str,
    /// The client's filter.
    pub filter: Arc<Cond>,
    /// Identifies the filter.
    pub fingerprint: Arc<str>,
    /// The parent's id.
    pub parent: String,
}

/// The targets of a parent through a link table (`agent.tools`), one page per parent.
#[derive(Clone)]
pub struct LinkedKey {
    /// The link table.
    pub link: &'static Table,
    /// The link column naming the parent.
    pub from_column: &'static str,
    /// The link column naming the target.
    pub to_column: &'static str,
    /// The list arguments over the targets.
    pub query: Arc<ListQuery>,
    /// Identifies the rest.
    pub fingerprint: Arc<str>,
    /// Count instead of page: ignore cursor and limit.
    pub count: bool,
    /// The parent's id.
    pub parent: String,
}

macro_rules! keyed_by_fingerprint {
    ($key:ty) => {
        impl PartialEq for $key {
            fn eq(&self, other: &Self) -> bool {
                self.fingerprint == other.fingerprint && self.parent == other.parent
            }
        }
        impl Eq for $key {}
        impl Hash for $key {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.fingerprint.hash(state);
                self.parent.hash(state);
            }
        }
    };
}
keyed_by_fingerprint!(ChildrenKey);
keyed_by_fingerprint!(ChildCountKey);
keyed_by_fingerprint!(LinkedKey);

/// Groups keys by a shared part.
fn group<'k, K, G: Eq + Hash>(keys: &'k [K], by: impl Fn(&K) -> G) -> HashMap<G, Vec<&'k K>> {
    let mut groups: HashMap<G, Vec<&K>> = HashMap::new();
    for key in keys {
        groups.entry(by(key)).or_default().push(key);
    }
    groups
}

fn texts<'a>(values: impl Iterator<Item = &'a String>) -> Vec<Bind> {
    let mut out: Vec<Bind> = values.map(|v| Bind::Text(v.clone())).collect();
    out.dedup();
    out
}

impl GraphLoader {
    /// The caller's scope on a child table reached through `column`, unless the parent's
    /// visibility already implies it (the column is the child's own scope key).
    fn child_scope(&self, table: &'static Table, column: &str) -> Cond {
        match table.scope {
            Scope::Parent {
                column: scope_column,
                ..
            } if scope_column == column => Cond::True,
            _ => self.access.scope(table),
        }
    }
}

impl Loader<RowKey> for GraphLoader {
    type Value = Record;
    type Error = AppError;

    async fn load(&self, keys: &[RowKey]) -> Result<HashMap<RowKey, Record>, AppError> {
        let batches =
            group(keys, |k| (k.table.name, k.column))
                .into_values()
                .map(|keys| async move {
                    let (table, column) = (keys[0].table, keys[0].column);
                    let filter = Cond::all(vec![
                        Cond::In(column, texts(keys.iter().map(|k| &k.value))),
                        self.access.scope(table),
                    ]);
                    let rows = records::load(&self.db, Select::rows(table, filter)).await?;
                    Ok::<_, AppError>(
                        rows.into_iter()
                            .filter_map(|record| {
                                let value = record.text(column)?.to_owned();
                                Some((
                                    RowKey {
                                        table,
                                        column,
                                        value,
                                    },
                                    record,
                                ))
                            })
                            .collect::<Vec<_>>(),
                    )
                });
        Ok(try_join_all(batches).await?.into_iter().flatten().collect())
    }
}

impl Loader<ChildrenKey> for GraphLoader {
    type Value = Vec<Record>;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[ChildrenKey],
    ) -> Result<HashMap<ChildrenKey, Vec<Record>>, AppError> {
        let batches = group(keys, |k| k.fingerprint.clone())
            .into_values()
            .map(|keys| async move {
                let first = keys[0];
                let query = &first.query;
                let column = first.column;
                let filter = Cond::all(vec![
                    Cond::In(column, texts(keys.iter().map(|k| &k.parent))),
                    query.filter.clone(),
                    query.cursor.clone(),
                    self.child_scope(query.table, column),
                ]);
                let select = Select {
                    order: query.sql_order(),
                    limit: Some(query.fetch()),
                    per: Some(column),
                    ..Select::rows(query.table, filter)
                };
                let rows = records::load(&self.db, select).await?;
                let mut by_parent: HashMap<String, Vec<Record>> = HashMap::new();
                for record in rows {
                    if let Some(parent) = record.text(column) {
                        by_parent.entry(parent.to_owned()).or_default().push(record);
                    }
                }
                Ok::<_, AppError>(
                    keys.into_iter()
                        .map(|key| {
                            (
                                key.clone(),
                                by_parent.remove(&key.parent).unwrap_or_default(),
                            )
                        })
                        .collect::<Vec<_>>(),
                )
            });
        Ok(try_join_all(batches).await?.into_iter().flatten().collect())
    }
}

impl Loader<ChildCountKey> for GraphLoader {
    type Value = i64;
    type Error = AppError;

    async fn load(&self, keys: &[ChildCountKey]) -> Result<HashMap<ChildCountKey, i64>, AppError> {
        let batches = group(keys, |k| k.fingerprint.clone())
            .into_values()
            .map(|keys| async move {
                let first = keys[0];
                let filter = Cond::all(vec![
                    Cond::In(first.column, texts(keys.iter().map(|k| &k.parent))),
                    (*first.filter).clone(),
                    self.child_scope(first.table, first.column),
                ]);
                let select = Select {
                    projection: Projection::CountBy(first.column),
                    ..Select::rows(first.table, filter)
                };
                let counts = records::count_by(&self.db, select).await?;
                Ok::<_, AppError>(
                    keys.into_iter()
                        .map(|key| (key.clone(), counts.get(&key.parent).copied().unwrap_or(0)))
                        .collect::<Vec<_>>(),
                )
            });
        Ok(try_join_all(batches).await?.into_iter().flatten().collect())
    }
}

impl Loader<LinkedKey> for GraphLoader {
    type Value = (Vec<Record>, i64);
    type Error = AppError;

    /// Two statements per batch: the link rows of every parent, then the matching targets
    /// in order; each parent's page is its targets in that order.
    async fn load(
        &self,
        keys: &[LinkedKey],
    ) -> Result<HashMap<LinkedKey, (Vec<Record>, i64)>, AppError> {
        let batches = group(keys, |k| k.fingerprint.clone())
            .into_values()
            .map(|keys| async move {
                let first = keys[0];
                let links = records::load(
                    &self.db,
                    Select::rows(
                        first.link,
                        Cond::all(vec![
                            Cond::In(first.from_column, texts(keys.iter().map(|k| &k.parent))),
                            self.access.scope(first.link),
                        ]),
                    ),
                )
                .await?;
                let mut targets_of: HashMap<String, Vec<String>> = HashMap::new();
                for link in &links {
                    if let (Some(from), Some(to)) =
                        (link.text(first.from_column), link.text(first.to_column))
                    {
                        targets_of
                            .entry(from.to_owned())
                            .or_default()
                            .push(to.to_owned());
                    }
                }
                let query = &first.query;
                let all_targets: Vec<Bind> = {
                    let mut ids: Vec<&String> = targets_of.values().flatten().collect();
                    ids.sort();
                    ids.dedup();
                    ids.into_iter().map(|id| Bind::Text(id.clone())).collect()
                };
                let mut conds = vec![
                    Cond::In("id", all_targets),
                    query.filter.clone(),
                    self.access.scope(query.table),
                ];
                if !first.count {
                    conds.push(query.cursor.clone());
                }
                let select = Select {
                    order: query.sql_order(),
                    ..Select::rows(query.table, Cond::all(conds))
                };
                let targets = records::load(&self.db, select).await?;
                Ok::<_, AppError>(
                    keys.into_iter()
                        .map(|key| {
                            let mine = targets_of.get(&key.parent).cloned().unwrap_or_default();
                            let matching: Vec<Record> = targets
                                .iter()
                                .filter(|t| mine.iter().any(|id| id == t.id()))
                                .cloned()
                                .collect();
                            let total = matching.len() as i64;
                            let page = if key.count {
                                Vec::new()
                            } else {
                                matching.into_iter().take(query.fetch() as usize).collect()
                            };
                            (key.clone(), (page, total))
                        })
                        .collect::<Vec<_>>(),
                )
            });
        Ok(try_join_all(batches).await?.into_iter().flatten().collect())
    }
}
