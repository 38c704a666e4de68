//! One borrowed connection of either backend, with the few untyped queries the maintenance
//! commands need (their SQL is built at run time from the catalog).
//!
//! The operations are written once against [`Conn`]; each method matches on the backend
//! and runs the query on the concrete connection, so the transaction closures of
//! [`with_tx!`](crate::with_tx) only have to wrap their connection in a `Conn`.

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use crate::db::{Backend, SqliteConn};

/// A connection of either backend.
pub(crate) enum Conn<'a> {
    Pg(&'a mut AsyncPgConnection),
    Sqlite(&'a mut SqliteConn),
}

impl<'a> From<&'a mut AsyncPgConnection> for Conn<'a> {
    fn from(conn: &'a mut AsyncPgConnection) -> Self {
        Conn::Pg(conn)
    }
}

impl<'a> From<&'a mut SqliteConn> for Conn<'a> {
    fn from(conn: &'a mut SqliteConn) -> Self {
        Conn::Sqlite(conn)
    }
}

#[derive(QueryableByName)]
struct TextRow {
    #[diesel(sql_type = Nullable<Text>)]
    v: Option<String>,
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl Conn<'_> {
    /// The backend.
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Conn::Pg(_) => Backend::Postgres,
            Conn::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Runs statements without results.
    pub(crate) async fn batch(&mut self, sql: &str) -> diesel::QueryResult<()> {
        match self {
            Conn::Pg(conn) => conn.batch_execute(sql).await,
            Conn::Sqlite(conn) => conn.batch_execute(sql).await,
        }
    }

    /// Runs a query whose one column is text named `v`, with at most one text parameter
    /// (`$1` on PostgreSQL, `?` on SQLite).
    pub(crate) async fn texts(&mut self, sql: &str, param: Option<&str>) -> diesel::QueryResult<Vec<Option<String>>> {
        let rows: Vec<TextRow> = match (self, param) {
            (Conn::Pg(conn), None) => diesel::sql_query(sql).load(&mut **conn).await?,
            (Conn::Pg(conn), Some(p)) => diesel::sql_query(sql).bind::<Text, _>(p).load(&mut **conn).await?,
            (Conn::Sqlite(conn), None) => diesel::sql_query(sql).load(&mut **conn).await?,
            (Conn::Sqlite(conn), Some(p)) => diesel::sql_query(sql).bind::<Text, _>(p).load(&mut **conn).await?,
        };
        Ok(rows.into_iter().map(|r| r.v).collect())
    }

    /// Runs a query whose one row has a 64-bit integer column named `n`.
    pub(crate) async fn count(&mut self, sql: &str) -> diesel::QueryResult<i64> {
        let row: CountRow = match self {
            Conn::Pg(conn) => diesel::sql_query(sql).get_result(&mut **conn).await?,
            Conn::Sqlite(conn) => diesel::sql_query(sql).get_result(&mut **conn).await?,
        };
        Ok(row.n)
    }

    /// Whether a table or view of that name exists (in PostgreSQL's current schema).
    pub(crate) async fn relation_exists(&mut self, name: &str) -> diesel::QueryResult<bool> {
        let sql = match self {
            Conn::Pg(_) => {
                "SELECT COUNT(*)::text AS v FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = $1"
            }
            Conn::Sqlite(_) => {
                "SELECT CAST(COUNT(*) AS TEXT) AS v FROM sqlite_master \
                 WHERE type IN ('table', 'view') AND name = ?"
            }
        };
        let rows = self.texts(sql, Some(name)).await?;
        Ok(rows.into_iter().next().flatten().as_deref() != Some("0"))
    }

    /// The names of the tables and views of the database (PostgreSQL: its current schema),
    /// without SQLite's internal ones.
    pub(crate) async fn relations(&mut self) -> diesel::QueryResult<Vec<String>> {
        let sql = match self {
            Conn::Pg(_) => {
                "SELECT table_name::text AS v FROM information_schema.tables \
                 WHERE table_schema = current_schema() ORDER BY 1"
            }
            Conn::Sqlite(_) => {
                "SELECT name AS v FROM sqlite_master WHERE type IN ('table', 'view') \
                 AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY 1"
            }
        };
        Ok(self.texts(sql, None).await?.into_iter().flatten().collect())
    }
}

/// A quoted identifier (both backends accept the SQL standard's double quotes).
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQL string literal.
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
