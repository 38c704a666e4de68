//! The write side of the database, inside one transaction: a [`Tx`] over either backend's
//! connection, statements built as data ([`Stmt`]: SQL text, quoted identifiers and typed
//! bind parameters, rendered by Diesel for both backends), row loads as [`Record`]s, and
//! the one way rows are inserted, updated (with `updated_at` stamped) and deleted.

use std::borrow::Cow;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Nullable, Text, Untyped};
use diesel::sqlite::Sqlite;
use diesel::QueryResult;
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::catalog::{Column, Kind, Table};
use crate::db::sql_types::{Json, Timestamp};
use crate::db::{Backend, SqliteConn};
use crate::error::{AppError, AppResult};
use crate::graphql::records::{self, Record};
use crate::models;
use crate::sql::{Bind, CmpOp, Cond, Prepared, Select};

/// One connection of either backend, inside a transaction, and the row locks the
/// transaction holds (so a row is locked once, whichever rule asks for it again).
pub struct Tx<'a> {
    conn: Conn<'a>,
    locked: Vec<(&'static str, String, Lock)>,
}

enum Conn<'a> {
    Pg(&'a mut AsyncPgConnection),
    Sqlite(&'a mut SqliteConn),
}

/// How many times a write transaction runs before its [`AppError::Busy`] (a deadlock) reaches
/// the client.
pub const MAX_ATTEMPTS: u32 = 10;

/// The pause before attempt `attempt + 1`: random, up to 2 ms doubled per attempt (at most
/// 250 ms), so racing writers spread out.
pub async fn backoff(attempt: u32) {
    let ceiling_us = (2_000u64 << attempt.min(7)).min(250_000);
    let mut bytes = [0u8; 8];
    let random = getrandom::fill(&mut bytes).map(|_| u64::from_le_bytes(bytes)).unwrap_or(ceiling_us / 2);
    tokio::time::sleep(std::time::Duration::from_micros(random % ceiling_us)).await;
}

impl<'a> From<&'a mut AsyncPgConnection> for Tx<'a> {
    fn from(conn: &'a mut AsyncPgConnection) -> Self {
        Tx { conn: Conn::Pg(conn), locked: Vec::new() }
    }
}

impl<'a> From<&'a mut SqliteConn> for Tx<'a> {
    fn from(conn: &'a mut SqliteConn) -> Self {
        Tx { conn: Conn::Sqlite(conn), locked: Vec::new() }
    }
}

/// A piece of a statement.
#[derive(Debug, Clone)]
enum Part {
    Sql(Cow<'static, str>),
    Ident(&'static str),
    Bind(Bind),
    Select(Box<(Prepared<Pg>, Prepared<Sqlite>)>),
}

/// A statement built at run time: SQL text, identifiers (quoted by Diesel) and bind
/// parameters (`$n` on PostgreSQL, `?` on SQLite), never values spliced into the text.
#[derive(Debug, Clone, Default)]
pub struct Stmt {
    parts: Vec<Part>,
    /// Whether the backend may cache the prepared statement (not for bulk statements whose
    /// text varies with the number of rows).
    uncached: bool,
}

impl Stmt {
    /// An empty statement.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends SQL text.
    pub fn sql(mut self, sql: impl Into<Cow<'static, str>>) -> Self {
        self.parts.push(Part::Sql(sql.into()));
        self
    }

    /// Appends a quoted identifier.
    pub fn ident(mut self, name: &'static str) -> Self {
        self.parts.push(Part::Ident(name));
        self
    }

    /// Appends `table.column`.
    pub fn column(self, table: &'static str, column: &'static str) -> Self {
        self.ident(table).sql(".").ident(column)
    }

    /// Appends a bind parameter.
    pub fn bind(mut self, bind: Bind) -> Self {
        self.parts.push(Part::Bind(bind));
        self
    }

    /// Appends a bind parameter, or `NULL`.
    pub fn value(self, value: Option<Bind>) -> Self {
        match value {
            Some(bind) => self.bind(bind),
            None => self.sql("NULL"),
        }
    }

    /// Appends a text bind parameter.
    pub fn text(self, text: impl Into<String>) -> Self {
        self.bind(Bind::Text(text.into()))
    }

    /// Appends `(v1, v2, …)` of text binds (the statement's text then varies with the
    /// number of values: it is not cached).
    pub fn texts<I: IntoIterator<Item = S>, S: Into<String>>(mut self, texts: I) -> Self {
        self.uncached = true;
        self = self.sql("(");
        for (i, text) in texts.into_iter().enumerate() {
            if i > 0 {
                self = self.sql(", ");
            }
            self = self.text(text);
        }
        self.sql(")")
    }

    /// Appends a subquery (rendered by [`Select`]).
    pub fn select(mut self, select: Select) -> Self {
        self.parts.push(Part::Select(Box::new((select.clone().prepare::<Pg>(), select.prepare::<Sqlite>()))));
        self
    }

    /// Appends another statement.
    pub fn append(mut self, other: Stmt) -> Self {
        self.parts.extend(other.parts);
        self.uncached |= other.uncached;
        self
    }

    /// Marks the statement as one whose text varies (bulk inserts): not cached.
    pub fn uncached(mut self) -> Self {
        self.uncached = true;
        self
    }
}

impl QueryId for Stmt {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Stmt {
    type SqlType = Untyped;
}

macro_rules! stmt_fragment {
    ($backend:ty, $index:tt) => {
        impl QueryFragment<$backend> for Stmt {
            fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, $backend>) -> QueryResult<()> {
                if self.uncached {
                    out.unsafe_to_cache_prepared();
                }
                for part in &self.parts {
                    match part {
                        Part::Sql(sql) => out.push_sql(sql),
                        Part::Ident(name) => out.push_identifier(name)?,
                        Part::Bind(bind) => bind.walk_ast(out.reborrow())?,
                        Part::Select(prepared) => prepared.$index.walk_ast(out.reborrow())?,
                    }
                }
                Ok(())
            }
        }
    };
}
stmt_fragment!(Pg, 0);
stmt_fragment!(Sqlite, 1);

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

fn to_maps<R: Serialize>(table: &Table, rows: Vec<R>) -> AppResult<Vec<Map<String, Value>>> {
    rows.into_iter()
        .map(|row| match serde_json::to_value(row) {
            Ok(Value::Object(values)) => Ok(values),
            Ok(_) => Err(AppError::internal(format!("a `{}` row is not an object", table.name))),
            Err(e) => Err(AppError::internal(e)),
        })
        .collect()
}

/// Loads the rows of `$query` into the typed `Row` of `$table`, as maps.
macro_rules! load_rows {
    ($conn:expr, $query:expr, $table:expr) => {
        crate::with_row_model!($table.name, |R| to_maps($table, $query.load::<R>($conn).await?)?,
            else return Err(AppError::internal(format!("no row model for table `{}`", $table.name))))
    };
}

impl Tx<'_> {
    /// The backend.
    pub fn backend(&self) -> Backend {
        match self.conn {
            Conn::Pg(_) => Backend::Postgres,
            Conn::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Runs a select of rows and returns them as records (loaded together, one group).
    pub async fn load(&mut self, select: Select) -> AppResult<Vec<Record>> {
        let table = select.table;
        let load = async {
            Ok::<_, AppError>(match &mut self.conn {
                Conn::Pg(conn) => {
                    let query = select.prepare::<Pg>();
                    load_rows!(&mut **conn, query, table)
                }
                Conn::Sqlite(conn) => {
                    let query = select.prepare::<Sqlite>();
                    load_rows!(&mut **conn, query, table)
                }
            })
        };
        let maps = crate::db::counting_rows(load, Vec::len).await?;
        Ok(records::grouped(table, maps))
    }

    /// The row of `table` with this id that `visible` lets through, if any.
    pub async fn find(&mut self, table: &'static Table, id: &str, visible: Cond) -> AppResult<Option<Record>> {
        let filter = Cond::all(vec![Cond::Cmp("id", CmpOp::Eq, Bind::Text(id.to_owned())), visible]);
        Ok(self.load(Select::rows(table, filter)).await?.into_iter().next())
    }

    /// Runs a `COUNT(*)`-style statement whose one column is named `n`.
    pub async fn count(&mut self, stmt: Stmt) -> AppResult<i64> {
        let row: CountRow = match &mut self.conn {
            Conn::Pg(conn) => stmt.get_result(&mut **conn).await?,
            Conn::Sqlite(conn) => stmt.get_result(&mut **conn).await?,
        };
        Ok(row.n)
    }

    /// How many rows of `table` match `filter`.
    pub async fn count_rows(&mut self, table: &'static Table, filter: Cond) -> AppResult<i64> {
        let select = Select { projection: crate::sql::Projection::Count, ..Select::rows(table, filter) };
        self.count(Stmt::new().select(select)).await
    }

    /// Runs a statement whose one column is text named `v`.
    pub async fn texts(&mut self, stmt: Stmt) -> AppResult<Vec<Option<String>>> {
        let rows: Vec<TextRow> = match &mut self.conn {
            Conn::Pg(conn) => stmt.load(&mut **conn).await?,
            Conn::Sqlite(conn) => stmt.load(&mut **conn).await?,
        };
        Ok(rows.into_iter().map(|r| r.v).collect())
    }

    /// Runs a statement without results; returns the rows it touched.
    pub async fn execute(&mut self, stmt: Stmt) -> AppResult<usize> {
        Ok(match &mut self.conn {
            Conn::Pg(conn) => stmt.execute(&mut **conn).await?,
            Conn::Sqlite(conn) => stmt.execute(&mut **conn).await?,
        })
    }

    /// Inserts one row: the given columns (the rest take their database defaults), a new
    /// server id, and `created_at` = `updated_at` = now. Returns the id.
    pub async fn insert(&mut self, table: &'static Table, values: &Map<String, Value>) -> AppResult<String> {
        let id = models::new_id(table.id_prefix);
        let now = Timestamp::now();
        let mut row = values.clone();
        row.insert("id".into(), Value::String(id.clone()));
        row.insert("created_at".into(), Value::String(now.to_text()));
        row.insert("updated_at".into(), Value::String(now.to_text()));
        self.insert_rows(table, std::slice::from_ref(&row), None).await?;
        Ok(id)
    }

    /// Inserts rows that already carry their ids and timestamps, with the columns of the
    /// first row, chunked under the backends' parameter limits; `upsert` appends an
    /// `ON CONFLICT` clause.
    pub async fn insert_rows(
        &mut self,
        table: &'static Table,
        rows: &[Map<String, Value>],
        upsert: Option<&Upsert>,
    ) -> AppResult<usize> {
        let mut touched = 0;
        for stmt in insert_statements(table, rows, upsert)? {
            touched += self.execute(stmt).await?;
        }
        Ok(touched)
    }

    /// [`Tx::insert_rows`] with an `ON CONFLICT … DO UPDATE`, returning the id of every row
    /// written: a new row's own id, or the id of the row it updated (ids never change). So
    /// the caller tells inserts from updates, and reloads the rows by primary key, without
    /// looking them up by the unique key (a lookup whose plan depends on the table's
    /// statistics, missing on a table that has just grown).
    pub async fn upsert_rows(
        &mut self,
        table: &'static Table,
        rows: &[Map<String, Value>],
        upsert: &Upsert,
    ) -> AppResult<Vec<String>> {
        let mut ids = Vec::with_capacity(rows.len());
        for stmt in insert_statements(table, rows, Some(upsert))? {
            let returning = stmt.sql(" RETURNING ").ident("id").sql(" AS v");
            ids.extend(self.texts(returning).await?.into_iter().flatten());
        }
        Ok(ids)
    }

    /// Updates one row: sets the given columns and stamps `updated_at` (the one place a row
    /// update is written; the stamp is the server's clock, and strictly later than the
    /// row's previous stamp). Returns whether the row was there.
    pub async fn update(
        &mut self,
        table: &'static Table,
        old: &Record,
        changes: &Map<String, Value>,
    ) -> AppResult<bool> {
        let stmt = update_statement(table, old, changes)?;
        Ok(self.execute(stmt).await? == 1)
    }

    /// Deletes one row by id; returns whether it was there.
    pub async fn delete(&mut self, table: &'static Table, id: &str) -> AppResult<bool> {
        let stmt = Stmt::new().sql("DELETE FROM ").ident(table.name).sql(" WHERE ").ident("id").sql(" = ").text(id);
        Ok(self.execute(stmt).await? == 1)
    }

    /// The row of `table` with this id that `visible` lets through, locked until the
    /// transaction ends ([`Tx::load_locked`]).
    pub async fn find_locked(
        &mut self,
        table: &'static Table,
        id: &str,
        visible: Cond,
        strength: Lock,
    ) -> AppResult<Option<Record>> {
        let filter = Cond::all(vec![Cond::Cmp("id", CmpOp::Eq, Bind::Text(id.to_owned())), visible]);
        Ok(self.load_locked(Select::rows(table, filter), strength).await?.into_iter().next())
    }

    /// The rows of a select, locked until the transaction ends: on PostgreSQL `FOR NO KEY
    /// UPDATE` (concurrent writers of the same rows wait, inserts of rows referencing them do
    /// not) or `FOR UPDATE`, so they are read as the last writer left them and changed by no
    /// one else meanwhile. SQLite's write transactions are serial already: a plain read there.
    pub async fn load_locked(&mut self, select: Select, strength: Lock) -> AppResult<Vec<Record>> {
        let Conn::Pg(conn) = &mut self.conn else {
            return self.load(select).await;
        };
        let table = select.table;
        let stmt = Stmt::new().select(select).sql(strength.clause());
        let maps = load_rows!(&mut **conn, stmt, table);
        let rows = records::grouped(table, maps);
        self.locked.extend(rows.iter().map(|row| (table.name, row.id().to_owned(), strength)));
        Ok(rows)
    }

    /// Updates one row like [`Tx::update`] and returns it as it is now (`RETURNING *`), or
    /// `None` when it was not there.
    pub async fn update_returning(
        &mut self,
        table: &'static Table,
        old: &Record,
        changes: &Map<String, Value>,
    ) -> AppResult<Option<Record>> {
        let stmt = update_statement(table, old, changes)?.sql(" RETURNING *");
        let maps = match &mut self.conn {
            Conn::Pg(conn) => load_rows!(&mut **conn, stmt, table),
            Conn::Sqlite(conn) => load_rows!(&mut **conn, stmt, table),
        };
        Ok(records::grouped(table, maps).into_iter().next())
    }

    /// Locks these rows of `table` until the transaction ends, in id order (so two writers
    /// never wait for each other in a cycle), on PostgreSQL; nothing on SQLite, whose write
    /// transactions are serial. `strength` is the row lock: [`Lock::NoKeyUpdate`] for rows
    /// whose columns the transaction recomputes (eval counters, an agent's next version),
    /// [`Lock::Update`] for a trace whose ratings change (it also waits for, and holds off,
    /// transactions inserting rows that reference the trace, such as eval executions).
    pub async fn lock(&mut self, table: &'static Table, ids: &[String], strength: Lock) -> AppResult<()> {
        if self.backend() != Backend::Postgres || ids.is_empty() {
            return Ok(());
        }
        let mut sorted: Vec<&String> = ids.iter().filter(|id| !self.holds(table, id, strength)).collect();
        sorted.sort();
        sorted.dedup();
        for chunk in sorted.chunks(1_000) {
            let stmt = Stmt::new().sql("SELECT ").ident("id").sql(" AS v FROM ").ident(table.name).sql(" WHERE ");
            let stmt = match chunk {
                [one] => stmt.ident("id").sql(" = ").text(one.as_str()),
                _ => stmt.ident("id").sql(" IN ").texts(chunk.iter().map(|id| id.as_str())),
            };
            let stmt = stmt.sql(" ORDER BY ").ident("id").sql(strength.clause());
            self.texts(stmt).await?;
        }
        self.locked.extend(sorted.into_iter().map(|id| (table.name, id.clone(), strength)));
        Ok(())
    }

    /// Records locks a statement of the caller's took (`… ORDER BY id FOR …`), so that
    /// [`Tx::lock`] does not take them again.
    pub fn locked(&mut self, table: &'static Table, ids: &[String], strength: Lock) {
        self.locked.extend(ids.iter().map(|id| (table.name, id.clone(), strength)));
    }

    /// Whether this transaction already holds a lock on the row at least as strong.
    fn holds(&self, table: &Table, id: &str, strength: Lock) -> bool {
        self.locked.iter().any(|(t, i, s)| *t == table.name && i == id && (*s == strength || *s == Lock::Update))
    }
}

/// The strength of a row lock ([`Tx::lock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// `FOR NO KEY UPDATE`: excludes other writers of the row, not inserts referencing it.
    NoKeyUpdate,
    /// `FOR UPDATE`: also excludes inserts (and key changes) of rows referencing it.
    Update,
}

impl Lock {
    fn clause(self) -> &'static str {
        match self {
            Lock::NoKeyUpdate => " FOR NO KEY UPDATE",
            Lock::Update => " FOR UPDATE",
        }
    }
}

/// `UPDATE table SET <changes>, updated_at = <next stamp> WHERE id = <old id>`.
fn update_statement(table: &'static Table, old: &Record, changes: &Map<String, Value>) -> AppResult<Stmt> {
    let mut stmt = Stmt::new().sql("UPDATE ").ident(table.name).sql(" SET ");
    for (column, value) in table.columns.iter().filter_map(|c| changes.get(c.name).map(|v| (c, v))) {
        if matches!(column.name, "id" | "created_at" | "updated_at") {
            continue;
        }
        stmt = stmt.ident(column.name).sql(" = ").value(bind(column, value)?).sql(", ");
    }
    stmt = stamp(stmt, next_stamp(old.text("updated_at")));
    Ok(stmt.sql(" WHERE ").ident("id").sql(" = ").text(old.id()))
}

/// The multi-row `INSERT`s of [`Tx::insert_rows`]: the first row's columns, as many rows per
/// statement as the backends' parameter limits allow.
fn insert_statements(
    table: &'static Table,
    rows: &[Map<String, Value>],
    upsert: Option<&Upsert>,
) -> AppResult<Vec<Stmt>> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let columns: Vec<&'static Column> = table.columns.iter().filter(|c| first.contains_key(c.name)).collect();
    let per_statement = (8_000 / columns.len().max(1)).max(1);
    let mut statements = Vec::with_capacity(rows.len().div_ceil(per_statement));
    for chunk in rows.chunks(per_statement) {
        let mut stmt = Stmt::new().sql("INSERT INTO ").ident(table.name).sql(" (");
        for (i, column) in columns.iter().enumerate() {
            stmt = if i > 0 { stmt.sql(", ") } else { stmt }.ident(column.name);
        }
        stmt = stmt.sql(") VALUES ");
        for (r, row) in chunk.iter().enumerate() {
            stmt = stmt.sql(if r > 0 { ", (" } else { "(" });
            for (i, column) in columns.iter().enumerate() {
                if i > 0 {
                    stmt = stmt.sql(", ");
                }
                stmt = stmt.value(bind(column, row.get(column.name).unwrap_or(&Value::Null))?);
            }
            stmt = stmt.sql(")");
        }
        if let Some(upsert) = upsert {
            stmt = upsert.clause(stmt);
        }
        statements.push(stmt.uncached());
    }
    Ok(statements)
}

/// An `ON CONFLICT (key) DO UPDATE SET col = excluded.col, …, updated_at = now` clause.
#[derive(Debug, Clone)]
pub struct Upsert {
    /// The unique key's columns.
    pub key: &'static [&'static str],
    /// The columns a conflicting row takes from the new one (`updated_at` is stamped).
    pub update: Vec<&'static str>,
    /// The stamp.
    pub now: Timestamp,
}

impl Upsert {
    fn clause(&self, mut stmt: Stmt) -> Stmt {
        stmt = stmt.sql(" ON CONFLICT (");
        for (i, column) in self.key.iter().enumerate() {
            stmt = if i > 0 { stmt.sql(", ") } else { stmt }.ident(column);
        }
        stmt = stmt.sql(") DO UPDATE SET ");
        for column in &self.update {
            stmt = stmt.ident(column).sql(" = excluded.").ident(column).sql(", ");
        }
        stamp(stmt, self.now)
    }
}

/// Appends `updated_at = <at>` to an `UPDATE … SET` list: the one way every update of this
/// module stamps rows (single rows in [`Tx::update`], upserts in [`Upsert`], counters in
/// [`super::rules::recount_evals`]); never a client's value.
pub fn stamp(stmt: Stmt, at: Timestamp) -> Stmt {
    stmt.ident("updated_at").sql(" = ").bind(Bind::Timestamp(at))
}

/// The `updated_at` of an update: now, and always after the previous stamp (two updates in
/// the same microsecond still read as two).
pub fn next_stamp(previous: Option<&str>) -> Timestamp {
    let now = Timestamp::now();
    match previous.and_then(|p| Timestamp::parse(p).ok()) {
        Some(previous) if previous >= now => {
            Timestamp::from_datetime(previous.as_datetime() + chrono::Duration::microseconds(1))
        }
        _ => now,
    }
}

/// A column's value (in the form records hold: enums and timestamps as text, JSON as JSON)
/// as a bind parameter typed by the column's kind; `None` for NULL.
pub fn bind(column: &Column, value: &Value) -> AppResult<Option<Bind>> {
    if value.is_null() && column.kind != Kind::Json {
        return Ok(None);
    }
    let wrong = || AppError::internal(format!("`{}` holds a value of the wrong kind: {value}", column.name));
    Ok(Some(match column.kind {
        Kind::Json if value.is_null() && column.nullable => return Ok(None),
        Kind::Json => Bind::Json(Json(value.clone())),
        Kind::Id | Kind::Text | Kind::Date | Kind::Enum(_) => Bind::Text(value.as_str().ok_or_else(wrong)?.to_owned()),
        Kind::Int => Bind::Int(value.as_i64().ok_or_else(wrong)?),
        Kind::Real => Bind::Real(value.as_f64().ok_or_else(wrong)?),
        Kind::Bool => Bind::Bool(value.as_bool().ok_or_else(wrong)?),
        Kind::Timestamp => Bind::Timestamp(Timestamp::parse(value.as_str().ok_or_else(wrong)?).map_err(|_| wrong())?),
    }))
}

/// `col = 'text'`.
pub fn eq(column: &'static str, text: &str) -> Cond {
    Cond::Cmp(column, CmpOp::Eq, Bind::Text(text.to_owned()))
}

/// `col IN (texts)`.
pub fn one_of(column: &'static str, texts: impl IntoIterator<Item = String>) -> Cond {
    Cond::InText(column, texts.into_iter().collect())
}
