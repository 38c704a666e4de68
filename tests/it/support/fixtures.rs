//! Catalog-driven fixtures: a valid row in any table of the data model, written by raw SQL on
//! either backend.
//!
//! Everything is read from [`iofold_graph::catalog`]: which columns a table has, their kinds,
//! bounds and foreign keys. A generated row fills every column with a valid value of its kind
//! (the first value of an enum, the lower bound of a range, `{}` for JSON, a timestamp in the
//! fixed-width UTC form both backends accept, a fresh `<id_prefix>_<uuid>` id, unique text,
//! and unique numbers or dates where a unique key needs them). Required (`NOT NULL`) foreign
//! keys get a parent row created first, recursively, inside the given workspace; nullable
//! foreign keys stay NULL unless overridden. `users`, `tools` and `eval_llm_cache` are global:
//! the workspace argument is ignored for them.
//!
//! ```ignore
//! let fx = Fixtures::new(&test_db.db);
//! let ws = fx.workspace().await; // a user, the workspace they created, their membership
//! let trace = fx.insert("traces", &ws, &[("source", "openai".into())]).await;
//! let all = fx.one_of_each(&ws).await; // table name -> id, one row in every table
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};

use diesel::pg::Pg;
use diesel::sqlite::Sqlite;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use iofold_graph::catalog::{self, Column, Kind, Scope, Table};
use iofold_graph::db::{Backend, Db, DbError};

/// A column value of a fixture row, written as a SQL literal of the backend.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `NULL`.
    Null,
    /// Text (also ids, enums, timestamps in `YYYY-MM-DDTHH:MM:SS.ffffffZ` and dates).
    Text(String),
    /// An integer.
    Int(i64),
    /// A double.
    Real(f64),
    /// A boolean: `0`/`1` on SQLite, `TRUE`/`FALSE` on PostgreSQL.
    Bool(bool),
    /// JSON text: stored as is on SQLite, coerced to `jsonb` on PostgreSQL.
    Json(String),
}

impl Value {
    /// The value as a SQL literal for `backend`.
    pub fn sql(&self, backend: Backend) -> String {
        match self {
            Value::Null => "NULL".into(),
            Value::Text(text) | Value::Json(text) => quote(text),
            Value::Int(n) => n.to_string(),
            Value::Real(x) => format!("{x:?}"),
            Value::Bool(b) => match (backend, b) {
                (Backend::Sqlite, true) => "1".into(),
                (Backend::Sqlite, false) => "0".into(),
                (Backend::Postgres, true) => "TRUE".into(),
                (Backend::Postgres, false) => "FALSE".into(),
            },
        }
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Text(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Text(text)
    }
}

impl From<&String> for Value {
    fn from(text: &String) -> Self {
        Value::Text(text.clone())
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Real(x)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

/// A SQL string literal.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A quoted identifier (`type`, `timestamp` and `precision` are column names).
pub fn ident(name: &str) -> String {
    format!("\"{name}\"")
}

/// The table of the catalog of that name; panics on an unknown name.
pub fn table(name: &str) -> &'static Table {
    catalog::table(name).unwrap_or_else(|| panic!("`{name}` is not a table of the catalog"))
}

/// A SQL condition selecting the rows of `table` that belong to workspace `workspace_id`,
/// following the table's [`Scope`] up to the workspace; `None` for the tables whose rows do
/// not belong to a workspace (`users`, `api_tokens`, `tools`, `eval_llm_cache`).
pub fn workspace_rows_filter(table: &Table, workspace_id: &str) -> Option<String> {
    match table.scope {
        Scope::Tenant => Some(format!("id = {}", quote(workspace_id))),
        Scope::Workspace(column) => Some(format!("{} = {}", ident(column), quote(workspace_id))),
        Scope::Parent { column, table: parent } => {
            let inner = workspace_rows_filter(self::table(parent), workspace_id)?;
            Some(format!("{} IN (SELECT id FROM {parent} WHERE {inner})", ident(column)))
        }
        Scope::User(_) | Scope::SharedUsers | Scope::Global | Scope::AdminOnly => None,
    }
}

/// Runs one SQL statement (no bind parameters) and returns the number of rows it touched.
pub async fn execute(db: &Db, sql: &str) -> Result<usize, DbError> {
    Ok(iofold_graph::with_conn!(db, |conn| diesel::sql_query(sql).execute(conn).await?))
}

/// Runs one query and reads its rows by column name.
pub async fn load<T>(db: &Db, sql: &str) -> Result<Vec<T>, DbError>
where
    T: QueryableByName<Pg> + QueryableByName<Sqlite> + Send + 'static,
{
    Ok(iofold_graph::with_conn!(db, |conn| diesel::sql_query(sql).load::<T>(conn).await?))
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// `SELECT COUNT(*) FROM table [WHERE filter]`.
pub async fn count(db: &Db, table: &str, filter: Option<&str>) -> i64 {
    let sql = match filter {
        Some(filter) => format!("SELECT COUNT(*) AS n FROM {table} WHERE {filter}"),
        None => format!("SELECT COUNT(*) AS n FROM {table}"),
    };
    let rows: Vec<Count> = load(db, &sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows[0].n
}

/// Whether `table` has a row with that id.
pub async fn exists(db: &Db, table: &str, id: &str) -> bool {
    count(db, table, Some(&format!("id = {}", quote(id)))).await > 0
}

/// Builds valid rows in any table. Cheap; one per test is enough.
pub struct Fixtures {
    db: Db,
    backend: Backend,
    seq: AtomicI64,
}

impl Fixtures {
    /// Fixtures writing through `db`.
    pub fn new(db: &Db) -> Self {
        Fixtures { db: db.clone(), backend: db.backend(), seq: AtomicI64::new(0) }
    }

    /// The backend the rows are written to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A value as a SQL literal of this backend.
    pub fn literal(&self, value: &Value) -> String {
        value.sql(self.backend)
    }

    fn next(&self) -> i64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// A user, a workspace they created (`user_id`) and their `owner` membership: the
    /// workspace's id.
    pub async fn workspace(&self) -> String {
        self.workspace_with_owner().await.0
    }

    /// Gives an existing user a valid API token (no expiry, just used, so no request turns
    /// into a `last_used_at` write); returns the secret.
    pub async fn token_for(&self, user_id: &str) -> String {
        let token = iofold_graph::crypto::new_token();
        let used = iofold_graph::db::sql_types::Timestamp::now().to_text();
        self.insert(
            "api_tokens",
            "",
            &[
                ("user_id", user_id.into()),
                ("token_hash", iofold_graph::crypto::token_hash(&token).into()),
                ("last_used_at", used.into()),
                ("expires_at", Value::Null),
                ("revoked_at", Value::Null),
            ],
        )
        .await;
        token
    }

    /// Like [`Fixtures::workspace`], returning (workspace id, owner's user id).
    pub async fn workspace_with_owner(&self) -> (String, String) {
        let user = self.insert("users", "", &[]).await;
        let workspace = self.insert("workspaces", "", &[("user_id", (&user).into())]).await;
        self.insert("workspace_members", &workspace, &[("user_id", (&user).into()), ("role", "owner".into())]).await;
        (workspace, user)
    }

    /// A fresh valid value for a column that is not a foreign key (for a foreign key: a text
    /// that names no row).
    pub fn value(&self, table: &Table, column: &Column) -> Value {
        let n = self.next();
        let unique = table.unique_keys.iter().any(|key| key.contains(&column.name));
        let uuid = uuid::Uuid::now_v7().simple().to_string();
        match column.kind {
            Kind::Id => Value::Text(format!("{}_{uuid}", table.id_prefix)),
            Kind::Text if column.name == "email" => Value::Text(format!("user-{uuid}@example.com")),
            Kind::Text => Value::Text(format!("{}-{uuid}", column.name)),
            Kind::Int => {
                let min = column.min.map_or(0, |m| m as i64);
                let value = if unique { min + n } else { min };
                match column.max {
                    Some(max) if value as f64 > max => Value::Int(min),
                    _ => Value::Int(value),
                }
            }
            Kind::Real => Value::Real(column.min.unwrap_or(0.0)),
            Kind::Bool => Value::Bool(false),
            Kind::Json => Value::Json("{}".into()),
            Kind::Timestamp => Value::Text(timestamp(n)),
            Kind::Date => Value::Text(date(n)),
            Kind::Enum(values) => Value::Text(values[0].into()),
        }
    }

    /// Creates the required (`NOT NULL`) foreign-key parents of a row of `table` in the
    /// workspace and returns them as overrides, so several rows can share them.
    pub async fn parents(&self, table: &str, workspace_id: &str) -> Vec<(&'static str, Value)> {
        self.parents_except(self::table(table), workspace_id, &[]).await
    }

    async fn parents_except(&self, table: &Table, workspace_id: &str, given: &[&str]) -> Vec<(&'static str, Value)> {
        let mut parents = Vec::new();
        for (column, fk) in table.foreign_keys() {
            if column.nullable || given.contains(&column.name) {
                continue;
            }
            let id = if fk.table == "workspaces" {
                workspace_id.to_owned()
            } else {
                Box::pin(self.insert(fk.table, workspace_id, &[])).await
            };
            parents.push((column.name, Value::Text(id)));
        }
        parents
    }

    /// Inserts a valid row into `table` in the workspace, creating its required parents, with
    /// `overrides` for some columns; returns its id. Panics when the insert fails.
    pub async fn insert(&self, table: &str, workspace_id: &str, overrides: &[(&str, Value)]) -> String {
        let t = self::table(table);
        let mut values = overrides.to_vec();
        let given: Vec<&str> = overrides.iter().map(|(c, _)| *c).collect();
        values.extend(self.parents_except(t, workspace_id, &given).await);
        let (id, sql) = self.insert_sql(table, workspace_id, &values);
        match execute(&self.db, &sql).await {
            Ok(_) => id,
            Err(e) => panic!("fixture insert into {table} failed: {e}\n{sql}"),
        }
    }

    /// Like [`Fixtures::insert`], but returns the error of the row's own insert (its parents
    /// must still insert cleanly).
    pub async fn try_insert(
        &self,
        table: &str,
        workspace_id: &str,
        overrides: &[(&str, Value)],
    ) -> Result<String, DbError> {
        let t = self::table(table);
        let mut values = overrides.to_vec();
        let given: Vec<&str> = overrides.iter().map(|(c, _)| *c).collect();
        values.extend(self.parents_except(t, workspace_id, &given).await);
        let (id, sql) = self.insert_sql(table, workspace_id, &values);
        execute(&self.db, &sql).await.map(|_| id)
    }

    /// The `INSERT` of one row without running it: (id, SQL). Every required foreign key
    /// other than the workspace must be in `overrides` (see [`Fixtures::parents`]).
    pub fn insert_sql(&self, table: &str, workspace_id: &str, overrides: &[(&str, Value)]) -> (String, String) {
        let t = self::table(table);
        let (id, row) = self.row(t, workspace_id, overrides);
        let (columns, literals): (Vec<String>, Vec<String>) =
            t.columns.iter().zip(row).filter_map(|(c, v)| v.map(|v| (ident(c.name), v))).unzip();
        let sql = format!("INSERT INTO {table} ({}) VALUES ({})", columns.join(", "), literals.join(", "));
        (id, sql)
    }

    /// One literal per column of the table (None: left out, i.e. a nullable foreign key
    /// nobody set), and the row's id.
    fn row(&self, t: &Table, workspace_id: &str, overrides: &[(&str, Value)]) -> (String, Vec<Option<String>>) {
        for (name, _) in overrides {
            assert!(t.column(name).is_some(), "{} has no column {name}", t.name);
        }
        let mut id = None;
        let row = t
            .columns
            .iter()
            .map(|c| {
                let value = match overrides.iter().find(|(name, _)| *name == c.name) {
                    Some((_, value)) => Some(value.clone()),
                    None => match c.references {
                        Some(fk) if fk.table == "workspaces" && !c.nullable => Some(Value::Text(workspace_id.into())),
                        Some(_) if c.nullable => None,
                        Some(fk) => {
                            panic!("{}.{} needs a {} row: pass it or use Fixtures::parents", t.name, c.name, fk.table)
                        }
                        None => Some(self.value(t, c)),
                    },
                };
                if c.kind == Kind::Id {
                    id = Some(match &value {
                        Some(Value::Text(text)) => text.clone(),
                        // An id override that is not text (a test's NULL): the insert will fail.
                        other => format!("{other:?}"),
                    });
                }
                value.map(|v| self.literal(&v))
            })
            .collect();
        (id.expect("every table has an id"), row)
    }

    /// Inserts many rows into `table` with few statements (500 rows each); the required
    /// parents not given in the overrides are created once and shared by every row.
    pub async fn insert_many(&self, table: &str, workspace_id: &str, rows: &[Vec<(&str, Value)>]) -> Vec<String> {
        let t = self::table(table);
        let given: Vec<&str> = t
            .columns
            .iter()
            .filter(|c| rows.iter().all(|row| row.iter().any(|(name, _)| *name == c.name)))
            .map(|c| c.name)
            .collect();
        let shared = self.parents_except(t, workspace_id, &given).await;
        let mut ids = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(500) {
            let built: Vec<(String, Vec<Option<String>>)> = chunk
                .iter()
                .map(|overrides| {
                    let mut values = overrides.clone();
                    for (name, value) in &shared {
                        if !values.iter().any(|(n, _)| n == name) {
                            values.push((name, value.clone()));
                        }
                    }
                    self.row(t, workspace_id, &values)
                })
                .collect();
            let present: Vec<bool> =
                (0..t.columns.len()).map(|i| built.iter().any(|(_, row)| row[i].is_some())).collect();
            let columns: Vec<String> =
                t.columns.iter().zip(&present).filter(|(_, p)| **p).map(|(c, _)| ident(c.name)).collect();
            let tuples: Vec<String> = built
                .iter()
                .map(|(_, row)| {
                    let literals: Vec<&str> = row
                        .iter()
                        .zip(&present)
                        .filter(|(_, p)| **p)
                        .map(|(v, _)| v.as_deref().unwrap_or("NULL"))
                        .collect();
                    format!("({})", literals.join(", "))
                })
                .collect();
            let sql = format!("INSERT INTO {table} ({}) VALUES {}", columns.join(", "), tuples.join(", "));
            if let Err(e) = execute(&self.db, &sql).await {
                panic!("fixture insert of {} rows into {table} failed: {e}", chunk.len());
            }
            ids.extend(built.into_iter().map(|(id, _)| id));
        }
        ids
    }

    /// One row in every table of the catalog for the workspace, linked together: each row's
    /// required parents are the rows of this set, and then every nullable foreign key (other
    /// than a self-reference) is pointed at the set's row of the referenced table. Returns
    /// table name -> id (`workspaces` -> the workspace itself). Also creates one row in each
    /// global table (`users`, `tools`, `eval_llm_cache`); `api_tokens` belongs to that user.
    pub async fn one_of_each(&self, workspace_id: &str) -> HashMap<&'static str, String> {
        let mut ids: HashMap<&'static str, String> = HashMap::new();
        ids.insert("workspaces", workspace_id.to_owned());
        for t in catalog::tables() {
            if ids.contains_key(t.name) {
                continue;
            }
            let overrides: Vec<(&str, Value)> = t
                .foreign_keys()
                .filter(|(c, _)| !c.nullable)
                .filter_map(|(c, fk)| ids.get(fk.table).map(|id| (c.name, Value::Text(id.clone()))))
                .collect();
            let id = self.insert(t.name, workspace_id, &overrides).await;
            ids.insert(t.name, id);
        }
        for t in catalog::tables().filter(|t| t.name != "workspaces") {
            for (c, fk) in t.foreign_keys().filter(|(c, fk)| c.nullable && fk.table != t.name) {
                let sql = format!(
                    "UPDATE {} SET {} = {} WHERE id = {}",
                    t.name,
                    ident(c.name),
                    quote(&ids[fk.table]),
                    quote(&ids[t.name])
                );
                if let Err(e) = execute(&self.db, &sql).await {
                    panic!("linking {}.{} failed: {e}\n{sql}", t.name, c.name);
                }
            }
        }
        ids
    }
}

/// The `n`th fixture timestamp: 2026-01-01T00:00:00.000000Z plus `n` seconds.
pub fn timestamp(n: i64) -> String {
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().to_utc();
    (base + chrono::Duration::seconds(n)).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The `n`th fixture date: 2000-01-01 plus `n` days, `YYYY-MM-DD`.
pub fn date(n: i64) -> String {
    let base = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
    (base + chrono::Duration::days(n)).format("%Y-%m-%d").to_string()
}
