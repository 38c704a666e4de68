//! `reset` (delete every row, keep the schema) and `nuke` (drop the schema and the
//! migration record). Each runs in one transaction: it happens entirely or not at all.
//! The safeguards (`--yes`, production) are checked by the caller before the database is
//! opened; see [`super::guard`].

use anyhow::bail;

use super::conn::{ident, Conn};
use crate::catalog;
use crate::db::{Backend, Db};
use crate::with_tx;

/// The table in which Diesel records the applied migrations.
pub const MIGRATIONS_TABLE: &str = "__diesel_schema_migrations";

/// What `reset` deleted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResetOutcome {
    /// Rows deleted per table, in catalog order.
    pub tables: Vec<(String, i64)>,
}

impl ResetOutcome {
    /// Rows deleted in all.
    pub fn rows(&self) -> i64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

/// Deletes every row of every table of the model in one transaction; the schema and the
/// migration record stay. Refused (nothing deleted) when a table of the model is missing.
pub async fn reset(db: &Db) -> anyhow::Result<ResetOutcome> {
    with_tx!(db, async |conn| {
        let mut conn = Conn::from(conn);
        reset_in(&mut conn).await
    })
}

async fn reset_in(conn: &mut Conn<'_>) -> anyhow::Result<ResetOutcome> {
    let existing = conn.relations().await?;
    let missing: Vec<&str> =
        catalog::tables().map(|t| t.name).filter(|name| !existing.iter().any(|e| e == name)).collect();
    if !missing.is_empty() {
        bail!(
            "reset: the database lacks tables of the model ({}); run `iofold-graph migrate` first (or `nuke`). \
             Nothing was deleted",
            missing.join(", ")
        );
    }
    let mut tables = Vec::new();
    for table in catalog::tables() {
        let n = conn.count(&format!("SELECT COUNT(*) AS n FROM {}", ident(table.name))).await?;
        tables.push((table.name.to_owned(), n));
    }
    match conn.backend() {
        Backend::Postgres => {
            // One TRUNCATE of every table: foreign keys among them (the agents cycle too)
            // are no obstacle.
            let names: Vec<String> = catalog::tables().map(|t| ident(t.name)).collect();
            conn.batch(&format!("TRUNCATE {}", names.join(", "))).await?;
        }
        Backend::Sqlite => {
            // Children first, so no ON DELETE action has work left; the agents cycle is
            // deferred to the commit, when every table is empty.
            let mut sql = String::from("PRAGMA defer_foreign_keys = ON;");
            for table in catalog::tables().collect::<Vec<_>>().into_iter().rev() {
                sql.push_str(&format!(" DELETE FROM {};", ident(table.name)));
            }
            conn.batch(&sql).await?;
        }
    }
    Ok(ResetOutcome { tables })
}

/// What `nuke` dropped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NukeOutcome {
    /// The tables, views (and, on PostgreSQL, functions) that existed and were dropped.
    pub dropped: Vec<String>,
    /// Tables and views of the database that are not part of the model, left in place.
    pub left_alone: Vec<String>,
}

/// Drops the view(s), every table of the model, the migration record and (PostgreSQL) the
/// model's `iofold_*` functions, in one transaction, so `migrate` rebuilds from nothing.
/// Tables that are not part of the model are left alone (and reported).
pub async fn nuke(db: &Db) -> anyhow::Result<NukeOutcome> {
    with_tx!(db, async |conn| {
        let mut conn = Conn::from(conn);
        nuke_in(&mut conn).await
    })
}

async fn nuke_in(conn: &mut Conn<'_>) -> anyhow::Result<NukeOutcome> {
    let existing = conn.relations().await?;
    let ours = |name: &str| name == MIGRATIONS_TABLE || catalog::table(name).is_some();
    let mut dropped: Vec<String> = existing.iter().filter(|n| ours(n)).cloned().collect();
    let left_alone: Vec<String> = existing.iter().filter(|n| !ours(n)).cloned().collect();
    let views: Vec<String> = catalog::TABLES.iter().filter(|t| t.view).map(|t| ident(t.name)).collect();
    // Children before parents.
    let mut tables: Vec<String> = catalog::tables().map(|t| ident(t.name)).collect();
    tables.reverse();
    tables.push(ident(MIGRATIONS_TABLE));
    match conn.backend() {
        Backend::Postgres => {
            let functions = conn
                .texts(
                    "SELECT p.oid::regprocedure::text AS v FROM pg_proc p \
                     JOIN pg_namespace n ON n.oid = p.pronamespace \
                     WHERE n.nspname = current_schema() AND p.proname LIKE 'iofold\\_%'",
                    None,
                )
                .await?;
            let mut sql = String::new();
            for view in &views {
                sql.push_str(&format!("DROP VIEW IF EXISTS {view} CASCADE; "));
            }
            sql.push_str(&format!("DROP TABLE IF EXISTS {} CASCADE; ", tables.join(", ")));
            for function in functions.into_iter().flatten() {
                sql.push_str(&format!("DROP FUNCTION IF EXISTS {function} CASCADE; "));
                dropped.push(function);
            }
            conn.batch(&sql).await?;
        }
        Backend::Sqlite => {
            let mut sql = String::from("PRAGMA defer_foreign_keys = ON;");
            for view in &views {
                sql.push_str(&format!(" DROP VIEW IF EXISTS {view};"));
            }
            for table in &tables {
                sql.push_str(&format!(" DROP TABLE IF EXISTS {table};"));
            }
            conn.batch(&sql).await?;
        }
    }
    Ok(NukeOutcome { dropped, left_alone })
}
