//! Schema drift: the live database compared with what its migrations define.
//!
//! Nothing is described twice by hand. The expected schema is built by applying the embedded
//! migrations the database has applied (the same versions, in order) to a scratch database of
//! the same backend, and both are read back through the backend's own catalog:
//!
//! * SQLite: the scratch database is in memory. Objects come from `sqlite_master` (tables,
//!   views, indexes, triggers; an index or view by its normalised SQL), columns from
//!   `pragma_table_info` (declared type, `NOT NULL`, default, primary-key position), foreign
//!   keys from `pragma_foreign_key_list` (columns, parent, `ON UPDATE` / `ON DELETE`), unique
//!   constraints from `pragma_index_list` / `pragma_index_info`, and CHECK constraints from
//!   the table's SQL (SQLite exposes them nowhere else: `CONSTRAINT name CHECK (…)`, by name;
//!   an unnamed check by its expression).
//! * PostgreSQL: the scratch schema is created inside a transaction on the same connection
//!   (`CREATE SCHEMA`, `SET LOCAL search_path`), migrated, read and **rolled back**, so
//!   nothing is left behind even if the process dies. Relations and columns come from
//!   `pg_class` / `pg_attribute` (type with modifiers, `NOT NULL`, default, collation),
//!   indexes from `pg_get_indexdef` (those that back no constraint), constraints (primary,
//!   unique, foreign, check, exclusion) from `pg_get_constraintdef`, views from
//!   `pg_get_viewdef`, functions by signature, result, language and a hash of their source,
//!   triggers from `pg_get_triggerdef`. Schema names are removed from the definitions.
//!
//! Every object is keyed by (table, kind, name) and described by one string; the difference
//! is every key missing, extra, or described differently. A missing (or extra) table is one
//! difference, not one per column. Tables named `__new_…` are called out as the leftovers of
//! an interrupted table rebuild. Diesel's `__diesel_schema_migrations` is not compared (the
//! migration check covers it), nor are SQLite's internal `sqlite_…` objects.

use std::collections::BTreeMap;

use anyhow::anyhow;
use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::sql_types::{Nullable, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::AsyncPgConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use serde::Serialize;
use serde_json::Value;

use crate::db::migrations::{self, Harness};
use crate::db::DatabaseUrl;

/// A blocking PostgreSQL connection (diesel-async's wrapper: no libpq).
type PgSync = AsyncConnectionWrapper<AsyncPgConnection>;

/// One object of a schema: the table it belongs to (empty for functions), its kind and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Object {
    /// The table or view it belongs to (the table itself for `table` and `view`).
    pub table: String,
    /// `table`, `view`, `column`, `index`, `primary key`, `unique`, `foreign key`, `check`,
    /// `exclusion`, `trigger` or `function`.
    pub kind: &'static str,
    /// Its name (for a column, the column; for SQLite's unique keys and foreign keys, the
    /// columns).
    pub name: String,
}

/// A schema as its catalog describes it: every object and its description.
pub type Schema = BTreeMap<Object, String>;

/// How the live object differs from the expected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// The migrations define it; the database lacks it.
    Missing,
    /// The database has it; the migrations do not define it.
    Extra,
    /// Both have it, described differently.
    Changed,
}

/// One difference between the live schema and the migrations'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// Missing, extra or changed.
    pub change: Change,
    /// The object's kind (see [`Object::kind`]).
    pub kind: &'static str,
    /// The table or view it belongs to.
    pub table: String,
    /// The object's name.
    pub name: String,
    /// What the migrations define (absent for an extra object).
    pub expected: Option<String>,
    /// What the database has (absent for a missing object).
    pub actual: Option<String>,
}

impl Difference {
    /// A table left over by an interrupted table rebuild (`__new_<table>`).
    pub fn is_leftover(&self) -> bool {
        self.change == Change::Extra && self.kind == "table" && self.name.starts_with("__new_")
    }

    fn subject(&self) -> String {
        match self.kind {
            "table" | "view" => format!("{} {}", self.kind, self.name),
            "column" => format!("column {}.{}", self.table, self.name),
            "function" => format!("function {}", self.name),
            _ => format!("{} {} on {}", self.kind, self.name, self.table),
        }
    }
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |text: &Option<String>| {
            let text = text.as_deref().unwrap_or_default();
            if text.chars().count() > 200 {
                format!("{}…", text.chars().take(200).collect::<String>())
            } else {
                text.to_owned()
            }
        };
        match self.change {
            Change::Missing => write!(f, "missing {}", self.subject())?,
            Change::Extra => write!(f, "extra {}", self.subject())?,
            Change::Changed => write!(f, "changed {}", self.subject())?,
        }
        match self.change {
            Change::Missing if !self.expected.as_deref().unwrap_or_default().is_empty() => {
                write!(f, " (the migrations define: {})", shown(&self.expected))
            }
            Change::Extra if self.is_leftover() => write!(
                f,
                " (left over from an interrupted migration that rebuilt {}: check that {} is intact, then drop it)",
                &self.name["__new_".len()..],
                &self.name["__new_".len()..]
            ),
            Change::Extra if !self.actual.as_deref().unwrap_or_default().is_empty() => {
                write!(f, " (not defined by the migrations: {})", shown(&self.actual))
            }
            Change::Changed => write!(f, ": expected {}, found {}", shown(&self.expected), shown(&self.actual)),
            _ => Ok(()),
        }
    }
}

/// The outcome of a drift check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// `ok` (no difference), `drift` (differences) or `not run` (see `reason`).
    pub status: &'static str,
    /// Why the check did not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The migrations the expected schema was built from (those the database has applied).
    pub migrations: Vec<String>,
    /// Every difference, by table.
    pub differences: Vec<Difference>,
}

impl Drift {
    fn not_run(reason: String) -> Drift {
        Drift { status: "not run", reason: Some(reason), migrations: Vec::new(), differences: Vec::new() }
    }
}

/// Compares the database at `url` with what its applied migrations define. Fails only when
/// the database cannot be reached or read; a database migrated by a newer binary is `not
/// run` (its expected schema is unknown).
pub async fn check(url: &DatabaseUrl) -> anyhow::Result<Drift> {
    migrations::on_blocking_connection(url, |harness| match harness {
        Harness::Sqlite(conn) => {
            let status = migrations::compare_with(conn, &migrations::SQLITE)?;
            if !status.unknown.is_empty() {
                return Ok(newer(&status.unknown));
            }
            let expected = sqlite_expected(&status.applied)?;
            let actual = describe_sqlite(conn).map_err(|e| anyhow!("cannot read the schema: {e}"))?;
            Ok(outcome(status.applied, &expected, &actual))
        }
        Harness::Postgres(conn) => {
            let status = migrations::compare_with(conn, &migrations::POSTGRES)?;
            if !status.unknown.is_empty() {
                return Ok(newer(&status.unknown));
            }
            let expected = pg_expected(conn, &status.applied)?;
            let actual = describe_pg(conn).map_err(|e| anyhow!("cannot read the schema: {e}"))?;
            Ok(outcome(status.applied, &expected, &actual))
        }
    })
    .await
}

fn newer(unknown: &[String]) -> Drift {
    Drift::not_run(format!(
        "the database has applied migrations this binary does not know ({}): its expected schema is unknown",
        unknown.join(", ")
    ))
}

fn outcome(applied: Vec<String>, expected: &Schema, actual: &Schema) -> Drift {
    let differences = diff(expected, actual);
    Drift {
        status: if differences.is_empty() { "ok" } else { "drift" },
        reason: None,
        migrations: applied,
        differences,
    }
}

/// Applies the given versions of `source`, in version order.
fn apply_versions<DB, H>(harness: &mut H, source: &EmbeddedMigrations, versions: &[String]) -> anyhow::Result<()>
where
    DB: diesel::backend::Backend,
    H: MigrationHarness<DB>,
    EmbeddedMigrations: MigrationSource<DB>,
{
    harness.applied_migrations().map_err(|e| anyhow!("cannot set up the scratch database: {e}"))?;
    let mut all = MigrationSource::<DB>::migrations(source).map_err(|e| anyhow!("{e}"))?;
    all.sort_by_key(|m| m.name().version().to_string());
    for migration in all.iter().filter(|m| versions.contains(&m.name().version().to_string())) {
        harness
            .run_migration(&**migration)
            .map_err(|e| anyhow!("migration {} fails on a scratch database: {e}", migration.name()))?;
    }
    Ok(())
}

fn sqlite_expected(versions: &[String]) -> anyhow::Result<Schema> {
    let mut scratch = SqliteConnection::establish(":memory:")?;
    apply_versions(&mut scratch, &migrations::SQLITE, versions)?;
    describe_sqlite(&mut scratch).map_err(|e| anyhow!("cannot read the scratch schema: {e}"))
}

/// Builds the expected schema in a scratch schema inside a transaction that is rolled back.
fn pg_expected(conn: &mut PgSync, versions: &[String]) -> anyhow::Result<Schema> {
    struct RolledBack;
    impl std::fmt::Debug for RolledBack {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("rolled back")
        }
    }
    impl std::fmt::Display for RolledBack {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("rolled back")
        }
    }
    impl std::error::Error for RolledBack {}

    let scratch = format!("iofold_drift_{}", uuid::Uuid::new_v4().simple());
    let mut described = None;
    let result = conn.transaction::<(), anyhow::Error, _>(|conn| {
        conn.batch_execute(&format!("CREATE SCHEMA {scratch}; SET LOCAL search_path TO {scratch}"))
            .map_err(|e| anyhow!("cannot create a scratch schema (the role needs CREATE on the database): {e}"))?;
        apply_versions(conn, &migrations::POSTGRES, versions)?;
        described = Some(describe_pg(conn).map_err(|e| anyhow!("cannot read the scratch schema: {e}"))?);
        Err(anyhow::Error::new(RolledBack))
    });
    match (result, described) {
        (Err(e), Some(schema)) if e.is::<RolledBack>() => Ok(schema),
        (Err(e), _) => Err(e),
        (Ok(()), _) => Err(anyhow!("the scratch transaction was not rolled back")),
    }
}

/// Every object missing from `actual`, extra in it, or described differently; the objects of
/// a missing or extra table or view are not listed again.
pub fn diff(expected: &Schema, actual: &Schema) -> Vec<Difference> {
    let relation = |schema: &Schema, table: &str| {
        schema.keys().any(|o| o.table == table && (o.kind == "table" || o.kind == "view") && o.name == table)
    };
    let mut out = Vec::new();
    for (object, description) in expected {
        let whole = object.kind == "table" || object.kind == "view";
        match actual.get(object) {
            None if whole || !relation(expected, &object.table) || relation(actual, &object.table) => {
                out.push(difference(Change::Missing, object, Some(description), None))
            }
            None => {}
            Some(found) if found != description => {
                out.push(difference(Change::Changed, object, Some(description), Some(found)))
            }
            Some(_) => {}
        }
    }
    for (object, description) in actual {
        let whole = object.kind == "table" || object.kind == "view";
        if !expected.contains_key(object)
            && (whole || !relation(actual, &object.table) || relation(expected, &object.table))
        {
            out.push(difference(Change::Extra, object, None, Some(description)));
        }
    }
    out.sort_by(|a, b| (&a.table, a.kind, &a.name).cmp(&(&b.table, b.kind, &b.name)));
    out
}

fn difference(change: Change, object: &Object, expected: Option<&String>, actual: Option<&String>) -> Difference {
    Difference {
        change,
        kind: object.kind,
        table: object.table.clone(),
        name: object.name.clone(),
        expected: expected.cloned(),
        actual: actual.cloned(),
    }
}

/// A query whose one text column `v` holds a JSON array per row.
#[derive(QueryableByName)]
struct JsonRow {
    #[diesel(sql_type = Nullable<Text>)]
    v: Option<String>,
}

fn parse_rows(rows: Vec<JsonRow>) -> diesel::QueryResult<Vec<Vec<Value>>> {
    rows.into_iter()
        .flat_map(|r| r.v)
        .map(|text| {
            serde_json::from_str::<Vec<Value>>(&text)
                .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))
        })
        .collect()
}

fn sqlite_rows(conn: &mut SqliteConnection, sql: &str, param: Option<&str>) -> diesel::QueryResult<Vec<Vec<Value>>> {
    let rows: Vec<JsonRow> = match param {
        Some(p) => diesel::sql_query(sql).bind::<Text, _>(p).load(conn)?,
        None => diesel::sql_query(sql).load(conn)?,
    };
    parse_rows(rows)
}

fn pg_rows(conn: &mut PgSync, sql: &str) -> diesel::QueryResult<Vec<Vec<Value>>> {
    let rows: Vec<JsonRow> = diesel::sql_query(sql).load(conn)?;
    parse_rows(rows)
}

/// A JSON value as text (`null` as empty).
fn text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(other) => other.to_string(),
    }
}

/// Whitespace runs collapsed to one space, outside and inside the SQL alike (the catalogs
/// keep statements as written).
pub fn normalize(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn object(table: &str, kind: &'static str, name: &str) -> Object {
    Object { table: table.to_owned(), kind, name: name.to_owned() }
}

/// The schema of a SQLite database, from `sqlite_master` and the pragmas.
pub(crate) fn describe_sqlite(conn: &mut SqliteConnection) -> diesel::QueryResult<Schema> {
    let mut schema = Schema::new();
    let objects = sqlite_rows(
        conn,
        "SELECT json_array(type, name, tbl_name, sql) AS v FROM sqlite_master \
         WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND tbl_name <> '__diesel_schema_migrations' ORDER BY name",
        None,
    )?;
    for row in objects {
        let (kind, name, table, sql) = (text(row.first()), text(row.get(1)), text(row.get(2)), text(row.get(3)));
        match kind.as_str() {
            "table" => {
                schema.insert(object(&name, "table", &name), String::new());
                sqlite_columns(conn, &name, &mut schema)?;
                sqlite_foreign_keys(conn, &name, &mut schema)?;
                let uniques = sqlite_rows(
                    conn,
                    "SELECT json_array(il.name, (SELECT group_concat(x.name, ', ') FROM \
                     (SELECT name FROM pragma_index_info(il.name) ORDER BY seqno) AS x)) AS v \
                     FROM pragma_index_list(?) AS il WHERE il.origin = 'u'",
                    Some(name.as_str()),
                )?;
                for unique in uniques {
                    let columns = text(unique.get(1));
                    schema.insert(object(&name, "unique", &format!("({columns})")), format!("UNIQUE ({columns})"));
                }
                for (check, expression) in sqlite_checks(&sql) {
                    schema.insert(object(&name, "check", &check), expression);
                }
            }
            "view" => {
                schema.insert(object(&name, "view", &name), normalize(&sql));
                // A view whose tables are gone cannot be described: say so.
                if let Err(e) = sqlite_columns(conn, &name, &mut schema) {
                    schema.insert(object(&name, "column", "(unreadable)"), e.to_string());
                }
            }
            "index" if !sql.is_empty() => {
                schema.insert(object(&table, "index", &name), normalize(&sql));
            }
            "trigger" => {
                schema.insert(object(&table, "trigger", &name), normalize(&sql));
            }
            _ => {}
        }
    }
    Ok(schema)
}

fn sqlite_columns(conn: &mut SqliteConnection, table: &str, schema: &mut Schema) -> diesel::QueryResult<()> {
    let columns = sqlite_rows(
        conn,
        "SELECT json_array(name, type, \"notnull\", dflt_value, pk) AS v FROM pragma_table_info(?)",
        Some(table),
    )?;
    for column in columns {
        let mut description = text(column.get(1));
        if column.get(2).and_then(Value::as_i64) == Some(1) {
            description.push_str(" NOT NULL");
        }
        let default = text(column.get(3));
        if !default.is_empty() {
            description.push_str(&format!(" DEFAULT {default}"));
        }
        match column.get(4).and_then(Value::as_i64) {
            Some(0) | None => {}
            Some(position) => description.push_str(&format!(" PRIMARY KEY ({position})")),
        }
        schema.insert(object(table, "column", &text(column.first())), description.trim().to_owned());
    }
    Ok(())
}

fn sqlite_foreign_keys(conn: &mut SqliteConnection, table: &str, schema: &mut Schema) -> diesel::QueryResult<()> {
    let rows = sqlite_rows(
        conn,
        "SELECT json_array(id, \"table\", \"from\", \"to\", on_update, on_delete) AS v \
         FROM pragma_foreign_key_list(?) ORDER BY id, seq",
        Some(table),
    )?;
    // (from columns, parent, to columns, on update, on delete) per constraint id.
    type Key = (Vec<String>, String, Vec<String>, String, String);
    let mut keys: BTreeMap<i64, Key> = BTreeMap::new();
    for row in rows {
        let entry = keys
            .entry(row.first().and_then(Value::as_i64).unwrap_or(-1))
            .or_insert_with(|| (Vec::new(), text(row.get(1)), Vec::new(), text(row.get(4)), text(row.get(5))));
        entry.0.push(text(row.get(2)));
        entry.2.push(text(row.get(3)));
    }
    for (from, parent, to, on_update, on_delete) in keys.into_values() {
        let to = if to.iter().all(String::is_empty) { String::new() } else { format!(" ({})", to.join(", ")) };
        schema.insert(
            object(table, "foreign key", &format!("({})", from.join(", "))),
            format!("REFERENCES {parent}{to} ON UPDATE {on_update} ON DELETE {on_delete}"),
        );
    }
    Ok(())
}

/// The CHECK constraints of a `CREATE TABLE` statement: (name, expression), the name being
/// the constraint's (`CONSTRAINT name CHECK (…)`) or, for an unnamed one, `CHECK (expression)`.
pub fn sqlite_checks(sql: &str) -> Vec<(String, String)> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match c {
            '\'' | '"' | '`' => quote = Some(c),
            '[' => quote = Some(']'),
            _ if starts_word(&chars, i, "CHECK") => {
                let mut j = i + 5;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                if j < chars.len() && chars[j] == '(' {
                    let (expression, end) = balanced(&chars, j);
                    let expression = normalize(&expression);
                    let before: String = chars[..i].iter().collect();
                    let words: Vec<&str> = before.split_whitespace().rev().take(2).collect();
                    let name = match words.as_slice() {
                        [name, keyword] if keyword.eq_ignore_ascii_case("CONSTRAINT") => {
                            name.trim_matches(|c| c == '"' || c == '`' || c == '[' || c == ']').to_owned()
                        }
                        _ => format!("CHECK ({expression})"),
                    };
                    out.push((name, expression));
                    i = end;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn starts_word(chars: &[char], i: usize, word: &str) -> bool {
    let len = word.len();
    if i + len > chars.len() {
        return false;
    }
    let boundary = |c: Option<&char>| c.is_none_or(|c| !(c.is_alphanumeric() || *c == '_'));
    chars[i..i + len].iter().collect::<String>().eq_ignore_ascii_case(word)
        && boundary(if i == 0 { None } else { chars.get(i - 1) })
        && boundary(chars.get(i + len))
}

/// The text inside the parenthesis opening at `open` (quotes respected), and the index after
/// its closing parenthesis.
fn balanced(chars: &[char], open: usize) -> (String, usize) {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    let mut i = open;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
        } else {
            match c {
                '\'' | '"' | '`' => quote = Some(c),
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        return (chars[open + 1..i].iter().collect(), i + 1);
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    (chars[open + 1..].iter().collect(), chars.len())
}

/// The relations of the current schema that are compared (not Diesel's migration table).
const PG_RELATIONS: &str = "n.nspname = current_schema() AND c.relname <> '__diesel_schema_migrations'";

/// The schema of the connection's current PostgreSQL schema, from `pg_catalog`.
pub(crate) fn describe_pg(conn: &mut PgSync) -> diesel::QueryResult<Schema> {
    let mut schema = Schema::new();
    let relations = pg_rows(
        conn,
        &format!(
            "SELECT json_build_array(c.relname, c.relkind::text)::text AS v FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') \
             AND {PG_RELATIONS}"
        ),
    )?;
    for row in relations {
        let name = text(row.first());
        let kind = if matches!(text(row.get(1)).as_str(), "v" | "m") { "view" } else { "table" };
        schema.insert(object(&name, kind, &name), String::new());
    }
    let columns = pg_rows(
        conn,
        &format!(
            "SELECT json_build_array(c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
             pg_get_expr(d.adbin, d.adrelid), CASE WHEN co.collname <> 'default' THEN co.collname END)::text AS v \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             LEFT JOIN pg_collation co ON co.oid = a.attcollation \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped AND {PG_RELATIONS}"
        ),
    )?;
    for row in columns {
        let mut description = text(row.get(2));
        let collation = text(row.get(5));
        if !collation.is_empty() {
            description.push_str(&format!(" COLLATE \"{collation}\""));
        }
        if row.get(3) == Some(&Value::Bool(true)) {
            description.push_str(" NOT NULL");
        }
        let default = text(row.get(4));
        if !default.is_empty() {
            description.push_str(&format!(" DEFAULT {default}"));
        }
        schema.insert(object(&text(row.first()), "column", &text(row.get(1))), description);
    }
    let indexes = pg_rows(
        conn,
        &format!(
            "SELECT json_build_array(c.relname, i.relname, \
             replace(pg_get_indexdef(x.indexrelid), ' ON ' || quote_ident(n.nspname) || '.', ' ON '))::text AS v \
             FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE {PG_RELATIONS} AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid \
             AND k.conrelid = x.indrelid AND k.contype IN ('p', 'u', 'x'))"
        ),
    )?;
    for row in indexes {
        schema.insert(object(&text(row.first()), "index", &text(row.get(1))), normalize(&text(row.get(2))));
    }
    let constraints = pg_rows(
        conn,
        &format!(
            "SELECT json_build_array(c.relname, k.conname, k.contype::text, \
             replace(pg_get_constraintdef(k.oid), ' ' || quote_ident(n.nspname) || '.', ' '))::text AS v \
             FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {PG_RELATIONS}"
        ),
    )?;
    for row in constraints {
        let kind = match text(row.get(2)).as_str() {
            "p" => "primary key",
            "u" => "unique",
            "f" => "foreign key",
            "c" => "check",
            "x" => "exclusion",
            _ => "constraint",
        };
        schema.insert(object(&text(row.first()), kind, &text(row.get(1))), normalize(&text(row.get(3))));
    }
    let views = pg_rows(
        conn,
        &format!(
            "SELECT json_build_array(c.relname, pg_get_viewdef(c.oid, true))::text AS v FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('v', 'm') AND {PG_RELATIONS}"
        ),
    )?;
    for row in views {
        let name = text(row.first());
        schema.insert(object(&name, "view", &name), normalize(&text(row.get(1))));
    }
    let functions = pg_rows(
        conn,
        "SELECT json_build_array(p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', \
         'RETURNS ' || pg_get_function_result(p.oid) || ' LANGUAGE ' || l.lanname || ' source md5 ' || md5(p.prosrc))::text AS v \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang \
         WHERE n.nspname = current_schema()",
    )?;
    for row in functions {
        schema.insert(object("", "function", &text(row.first())), text(row.get(1)));
    }
    let triggers = pg_rows(
        conn,
        &format!(
            "SELECT json_build_array(c.relname, t.tgname, \
             replace(pg_get_triggerdef(t.oid), ' ON ' || quote_ident(n.nspname) || '.', ' ON '))::text AS v \
             FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE NOT t.tgisinternal AND {PG_RELATIONS}"
        ),
    )?;
    for row in triggers {
        schema.insert(object(&text(row.first()), "trigger", &text(row.get(1))), normalize(&text(row.get(2))));
    }
    Ok(schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_are_read_from_create_table() {
        let sql = "CREATE TABLE t (a TEXT CONSTRAINT t_a_check CHECK (a IN ('x(', 'y'))), \
                   b INTEGER CHECK (b >= 0), checked INTEGER, \"CONSTRAINT\" TEXT DEFAULT 'CHECK (1)')";
        assert_eq!(
            sqlite_checks(sql),
            vec![
                ("t_a_check".to_owned(), "a IN ('x(', 'y')".to_owned()),
                ("CHECK (b >= 0)".to_owned(), "b >= 0".to_owned()),
            ]
        );
    }

    #[test]
    fn a_missing_table_is_one_difference() {
        let mut expected = Schema::new();
        expected.insert(object("t", "table", "t"), String::new());
        expected.insert(object("t", "column", "a"), "TEXT".into());
        expected.insert(object("u", "table", "u"), String::new());
        expected.insert(object("u", "column", "b"), "TEXT NOT NULL".into());
        let mut actual = Schema::new();
        actual.insert(object("u", "table", "u"), String::new());
        actual.insert(object("u", "column", "b"), "TEXT".into());
        actual.insert(object("__new_u", "table", "__new_u"), String::new());
        actual.insert(object("__new_u", "column", "b"), "TEXT".into());
        let differences = diff(&expected, &actual);
        let shown: Vec<String> = differences.iter().map(ToString::to_string).collect();
        assert_eq!(differences.len(), 3, "{shown:?}");
        assert!(shown[0].starts_with("extra table __new_u (left over from an interrupted migration"), "{shown:?}");
        assert_eq!(shown[1], "missing table t");
        assert_eq!(shown[2], "changed column u.b: expected TEXT NOT NULL, found TEXT");
    }
}

/// The server's last drift check, for `GET /health` (which never runs one itself: building
/// the expected schema costs a scratch migration).
#[derive(Debug, Default)]
pub struct LastCheck(std::sync::Mutex<Option<Checked>>);

#[derive(Debug, Clone)]
struct Checked {
    status: &'static str,
    differences: usize,
    at: String,
}

impl LastCheck {
    /// Records a check's outcome, logging every difference (warn) or the failure (the
    /// detail stays in the log: `/health` answers anyone).
    pub fn record(&self, result: anyhow::Result<Drift>) {
        let checked = match result {
            Ok(drift) => {
                for difference in &drift.differences {
                    tracing::warn!(table = %difference.table, "schema drift: {difference}");
                }
                if drift.status == "not run" {
                    tracing::info!(reason = drift.reason.as_deref().unwrap_or_default(), "schema drift check not run");
                }
                Checked { status: drift.status, differences: drift.differences.len(), at: now() }
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "schema drift check failed");
                Checked { status: "failed", differences: 0, at: now() }
            }
        };
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(checked);
    }

    /// `{"status": "ok" | "drift" | "not run" | "failed" | "pending", "differences": n,
    /// "checked_at": …}` (`pending`: the first check has not finished).
    pub fn json(&self) -> Value {
        match self.0.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(c) => serde_json::json!({"status": c.status, "differences": c.differences, "checked_at": c.at}),
            None => serde_json::json!({"status": "pending"}),
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
