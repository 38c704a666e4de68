//! The data model, held to the catalog (`iofold_graph::catalog`) on both backends: the tables
//! and columns each database has, the Diesel schema, the checks, unique keys, foreign keys and
//! their ON DELETE rules, the indexes behind the foreign keys and the trace list, and the
//! migrations. Every test is driven by the catalog or by what the databases report about
//! themselves; rows are written by the catalog-driven [`Fixtures`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::QueryableByName;
use iofold_graph::catalog::{self, Column, Kind, OnDelete, Table};
use iofold_graph::db::{Backend, Db, DbError};

use crate::both_backends;
use crate::support::db::{require_postgres, TestDb};
use crate::support::fixtures::{self, count, execute, exists, ident, load, quote, Fixtures, Value};

// ---------------------------------------------------------------------------------------------
// What each database says about itself.
// ---------------------------------------------------------------------------------------------

/// A column as a database reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DbColumn {
    name: String,
    nullable: bool,
    /// The declared type: `TEXT`/`INTEGER`/`REAL` on SQLite, `information_schema` names on
    /// PostgreSQL.
    ty: String,
}

/// A foreign key as a database reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct DbForeignKey {
    column: String,
    ref_table: String,
    ref_column: String,
    /// `CASCADE`, `SET NULL`, `NO ACTION`, `RESTRICT` or `SET DEFAULT`.
    on_delete: String,
    /// How many columns the key has (the model only has single-column keys).
    columns: i64,
}

/// An index as a database reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DbIndex {
    name: String,
    columns: Vec<String>,
    unique: bool,
    primary: bool,
    partial: bool,
}

/// A table or view as a database reports it.
#[derive(Debug, Clone, Default, PartialEq)]
struct DbTable {
    view: bool,
    columns: Vec<DbColumn>,
    foreign_keys: BTreeSet<DbForeignKey>,
    indexes: Vec<DbIndex>,
}

impl DbTable {
    /// The column lists of the unique indexes other than the primary key.
    fn unique_keys(&self) -> BTreeSet<Vec<String>> {
        self.indexes.iter().filter(|i| i.unique && !i.primary).map(|i| i.columns.clone()).collect()
    }
}

/// Every table and view of a database (without Diesel's migration table).
type DbModel = BTreeMap<String, DbTable>;

#[derive(QueryableByName)]
struct ColumnRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    tbl: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    kind: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    col: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    ty: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    required: i64,
}

#[derive(QueryableByName)]
struct ForeignKeyRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    tbl: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    col: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    ref_table: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    ref_col: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    on_delete: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    ncols: i64,
}

#[derive(QueryableByName)]
struct IndexRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    tbl: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    idx: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    origin: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    uniq: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    partial: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    cols: String,
}

const SQLITE_COLUMNS: &str = "\
    SELECT m.name AS tbl, m.type AS kind, p.name AS col, p.type AS ty, p.\"notnull\" AS required \
    FROM sqlite_schema m JOIN pragma_table_info(m.name) p \
    WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite%' AND m.name <> '__diesel_schema_migrations' \
    ORDER BY m.name, p.cid";

const SQLITE_FOREIGN_KEYS: &str = "\
    SELECT m.name AS tbl, f.\"from\" AS col, f.\"table\" AS ref_table, coalesce(f.\"to\", '') AS ref_col, \
           f.on_delete AS on_delete, \
           (SELECT COUNT(*) FROM pragma_foreign_key_list(m.name) g WHERE g.id = f.id) AS ncols \
    FROM sqlite_schema m JOIN pragma_foreign_key_list(m.name) f \
    WHERE m.type = 'table' AND f.seq = 0";

const SQLITE_INDEXES: &str = "\
    SELECT m.name AS tbl, il.name AS idx, il.origin AS origin, il.\"unique\" AS uniq, il.partial AS partial, \
           (SELECT group_concat(ii.name, ',' ORDER BY ii.seqno) FROM pragma_index_info(il.name) ii) AS cols \
    FROM sqlite_schema m JOIN pragma_index_list(m.name) il \
    WHERE m.type = 'table' AND m.name <> '__diesel_schema_migrations'";

const PG_COLUMNS: &str = "\
    SELECT c.table_name::text AS tbl, \
           CASE WHEN t.table_type = 'VIEW' THEN 'view' ELSE 'table' END AS kind, \
           c.column_name::text AS col, c.data_type::text AS ty, \
           (CASE WHEN c.is_nullable = 'NO' THEN 1 ELSE 0 END)::bigint AS required \
    FROM information_schema.columns c \
    JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
    WHERE c.table_schema = current_schema() AND c.table_name <> '__diesel_schema_migrations' \
    ORDER BY c.table_name, c.ordinal_position";

const PG_FOREIGN_KEYS: &str = "\
    SELECT cl.relname::text AS tbl, a.attname::text AS col, rf.relname::text AS ref_table, ra.attname::text AS ref_col, \
           CASE c.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' WHEN 'a' THEN 'NO ACTION' \
                              WHEN 'r' THEN 'RESTRICT' WHEN 'd' THEN 'SET DEFAULT' END AS on_delete, \
           array_length(c.conkey, 1)::bigint AS ncols \
    FROM pg_constraint c \
    JOIN pg_class cl ON cl.oid = c.conrelid \
    JOIN pg_namespace n ON n.oid = cl.relnamespace \
    JOIN pg_class rf ON rf.oid = c.confrelid \
    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] \
    JOIN pg_attribute ra ON ra.attrelid = c.confrelid AND ra.attnum = c.confkey[1] \
    WHERE c.contype = 'f' AND n.nspname = current_schema()";

const PG_INDEXES: &str = "\
    SELECT t.relname::text AS tbl, i.relname::text AS idx, \
           CASE WHEN x.indisprimary THEN 'pk' \
                WHEN EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid AND k.contype = 'u') THEN 'u' \
                ELSE 'c' END AS origin, \
           (CASE WHEN x.indisunique THEN 1 ELSE 0 END)::bigint AS uniq, \
           (CASE WHEN x.indpred IS NULL THEN 0 ELSE 1 END)::bigint AS partial, \
           (SELECT string_agg(a.attname::text, ',' ORDER BY k.ord) \
              FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
              JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum \
             WHERE k.ord <= x.indnkeyatts) AS cols \
    FROM pg_index x \
    JOIN pg_class t ON t.oid = x.indrelid \
    JOIN pg_class i ON i.oid = x.indexrelid \
    JOIN pg_namespace n ON n.oid = t.relnamespace \
    WHERE n.nspname = current_schema() AND t.relname <> '__diesel_schema_migrations'";

/// Reads the tables, views, columns, foreign keys and indexes of a database from its own
/// catalog: SQLite's `sqlite_schema` and pragmas, PostgreSQL's `information_schema` and
/// `pg_catalog` (in the test's schema).
async fn introspect(db: &Db) -> DbModel {
    let (columns_sql, fks_sql, indexes_sql) = match db.backend() {
        Backend::Sqlite => (SQLITE_COLUMNS, SQLITE_FOREIGN_KEYS, SQLITE_INDEXES),
        Backend::Postgres => (PG_COLUMNS, PG_FOREIGN_KEYS, PG_INDEXES),
    };
    let mut model = DbModel::new();
    let columns: Vec<ColumnRow> = load(db, columns_sql).await.expect("read the columns");
    for row in columns {
        let table = model.entry(row.tbl).or_default();
        table.view = row.kind == "view";
        table.columns.push(DbColumn { name: row.col, nullable: row.required == 0, ty: row.ty });
    }
    let fks: Vec<ForeignKeyRow> = load(db, fks_sql).await.expect("read the foreign keys");
    for row in fks {
        model.entry(row.tbl).or_default().foreign_keys.insert(DbForeignKey {
            column: row.col,
            ref_table: row.ref_table,
            ref_column: row.ref_col,
            on_delete: row.on_delete,
            columns: row.ncols,
        });
    }
    let indexes: Vec<IndexRow> = load(db, indexes_sql).await.expect("read the indexes");
    for row in indexes {
        model.entry(row.tbl).or_default().indexes.push(DbIndex {
            name: row.idx,
            columns: row.cols.split(',').map(str::to_owned).collect(),
            unique: row.uniq == 1,
            primary: row.origin == "pk",
            partial: row.partial == 1,
        });
    }
    model
}

// ---------------------------------------------------------------------------------------------
// What the catalog expects.
// ---------------------------------------------------------------------------------------------

/// The type a column of that kind is declared with on the backend.
fn expected_type(kind: Kind, backend: Backend) -> &'static str {
    match (backend, kind) {
        (Backend::Sqlite, Kind::Int | Kind::Bool) => "INTEGER",
        (Backend::Sqlite, Kind::Real) => "REAL",
        (Backend::Sqlite, _) => "TEXT",
        (Backend::Postgres, Kind::Int) => "bigint",
        (Backend::Postgres, Kind::Real) => "double precision",
        (Backend::Postgres, Kind::Bool) => "boolean",
        (Backend::Postgres, Kind::Json) => "jsonb",
        (Backend::Postgres, Kind::Timestamp) => "timestamp with time zone",
        (Backend::Postgres, _) => "text",
    }
}

/// The SQL type the Diesel schema declares a column of that kind with (without `Nullable`).
fn expected_diesel_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Id | Kind::Text | Kind::Enum(_) | Kind::Date => "Text",
        Kind::Int => "BigInt",
        Kind::Real => "Double",
        Kind::Bool => "Bool",
        Kind::Json => "JsonValue",
        Kind::Timestamp => "UtcTimestamp",
    }
}

fn on_delete_sql(rule: OnDelete) -> &'static str {
    match rule {
        OnDelete::Cascade => "CASCADE",
        OnDelete::SetNull => "SET NULL",
    }
}

/// The foreign keys the catalog declares on a table.
fn catalog_foreign_keys(table: &Table) -> BTreeSet<DbForeignKey> {
    table
        .foreign_keys()
        .map(|(c, fk)| DbForeignKey {
            column: c.name.to_owned(),
            ref_table: fk.table.to_owned(),
            ref_column: "id".to_owned(),
            on_delete: on_delete_sql(fk.on_delete).to_owned(),
            columns: 1,
        })
        .collect()
}

fn catalog_unique_keys(table: &Table) -> BTreeSet<Vec<String>> {
    table.unique_keys.iter().map(|key| key.iter().map(|c| c.to_string()).collect()).collect()
}

/// The differences between a database and the catalog in tables, views, columns (names and
/// order), nullability (tables only: neither backend records it for a view's columns) and,
/// when `types` is set, declared types (SQLite gives no type to a view's computed columns,
/// so its views are left out).
fn columns_vs_catalog(model: &DbModel, backend: Backend, types: bool) -> Vec<String> {
    let mut wrong = Vec::new();
    let expected: BTreeSet<&str> = catalog::TABLES.iter().map(|t| t.name).collect();
    let actual: BTreeSet<&str> = model.keys().map(String::as_str).collect();
    for missing in expected.difference(&actual) {
        wrong.push(format!("{missing}: missing from the database"));
    }
    for extra in actual.difference(&expected) {
        wrong.push(format!("{extra}: in the database but not in the catalog"));
    }
    for t in catalog::TABLES {
        let Some(db_table) = model.get(t.name) else {
            continue;
        };
        if db_table.view != t.view {
            wrong.push(format!("{}: view in the catalog = {}, in the database = {}", t.name, t.view, db_table.view));
        }
        let expected_names: Vec<&str> = t.columns.iter().map(|c| c.name).collect();
        let actual_names: Vec<&str> = db_table.columns.iter().map(|c| c.name.as_str()).collect();
        if expected_names != actual_names {
            wrong.push(format!("{}: columns {actual_names:?}, the catalog has {expected_names:?}", t.name));
            continue;
        }
        for (c, db_column) in t.columns.iter().zip(&db_table.columns) {
            if !t.view && c.nullable != db_column.nullable {
                wrong.push(format!(
                    "{}.{}: nullable in the catalog = {}, in the database = {}",
                    t.name, c.name, c.nullable, db_column.nullable
                ));
            }
            let skip_type = t.view && backend == Backend::Sqlite;
            if types && !skip_type && db_column.ty != expected_type(c.kind, backend) {
                wrong.push(format!(
                    "{}.{}: type {:?}, expected {:?} for {:?}",
                    t.name,
                    c.name,
                    db_column.ty,
                    expected_type(c.kind, backend),
                    c.kind
                ));
            }
        }
    }
    wrong
}

/// The differences between a database and the catalog in unique keys and foreign keys.
fn keys_vs_catalog(model: &DbModel) -> Vec<String> {
    let mut wrong = Vec::new();
    for t in catalog::tables() {
        let Some(db_table) = model.get(t.name) else {
            continue;
        };
        let (expected, actual) = (catalog_unique_keys(t), db_table.unique_keys());
        if expected != actual {
            wrong.push(format!("{}: unique keys {actual:?}, the catalog has {expected:?}", t.name));
        }
        let (expected, actual) = (catalog_foreign_keys(t), &db_table.foreign_keys);
        for fk in expected.difference(actual) {
            wrong.push(format!("{}: foreign key {fk:?} of the catalog is missing", t.name));
        }
        for fk in actual.difference(&expected) {
            wrong.push(format!("{}: foreign key {fk:?} is not in the catalog", t.name));
        }
    }
    wrong
}

fn assert_none(what: &str, wrong: &[String]) {
    assert!(wrong.is_empty(), "{what}: {} problem(s):\n  {}", wrong.len(), wrong.join("\n  "));
}

// ---------------------------------------------------------------------------------------------
// What a failed statement says.
// ---------------------------------------------------------------------------------------------

/// What the database must answer to a statement that breaks a rule.
#[derive(Debug, Clone)]
enum Expect {
    /// A check violation naming one of these constraints.
    Check(Vec<String>),
    /// A unique violation of this key of this table.
    Unique(&'static str, Vec<&'static str>),
    /// A foreign-key violation.
    ForeignKey,
    /// A NOT NULL violation.
    NotNull,
    /// Any database error (the value does not even parse as the column's type).
    Rejected,
}

/// `Ok` when `result` is the failure `expect` describes; otherwise what it was instead.
fn check_failure(result: &Result<String, DbError>, expect: &Expect, backend: Backend) -> Result<(), String> {
    let (kind, info) = match result {
        Ok(id) => return Err(format!("accepted (row {id})")),
        Err(DbError::Query(DieselError::DatabaseError(kind, info))) => (kind, info),
        Err(other) => return Err(format!("failed, but not in the database: {other}")),
    };
    let message = info.message();
    let constraint = info.constraint_name();
    let described = format!("{kind:?}: {message} (constraint {constraint:?})");
    match expect {
        Expect::Rejected => Ok(()),
        Expect::ForeignKey if matches!(kind, DatabaseErrorKind::ForeignKeyViolation) => Ok(()),
        Expect::NotNull if matches!(kind, DatabaseErrorKind::NotNullViolation) => Ok(()),
        Expect::Check(names)
            if matches!(kind, DatabaseErrorKind::CheckViolation)
                && names.iter().any(|name| constraint == Some(name.as_str()) || message.contains(name.as_str())) =>
        {
            Ok(())
        }
        Expect::Unique(table, columns) if matches!(kind, DatabaseErrorKind::UniqueViolation) => {
            let named = match backend {
                Backend::Postgres => constraint == Some(format!("{table}_{}_key", columns.join("_")).as_str()),
                Backend::Sqlite => {
                    let listed: Vec<String> = columns.iter().map(|c| format!("{table}.{c}")).collect();
                    message.ends_with(&format!("UNIQUE constraint failed: {}", listed.join(", ")))
                }
            };
            if named {
                Ok(())
            } else {
                Err(format!("a unique violation, but not of the expected key: {described}"))
            }
        }
        _ => Err(described),
    }
}

/// Inserts a row of `table` with `parents` and `column = value`, expects `expect`, and checks
/// the table's row count did not change. `Err` describes what went wrong.
#[allow(clippy::too_many_arguments)]
async fn expect_rejected(
    fx: &Fixtures,
    db: &Db,
    table: &str,
    workspace_id: &str,
    parents: &[(&'static str, Value)],
    column: &str,
    value: Value,
    expect: Expect,
) -> Result<(), String> {
    let before = count(db, table, None).await;
    let mut values: Vec<(&str, Value)> = parents.iter().filter(|(c, _)| *c != column).cloned().collect();
    values.push((column, value.clone()));
    let result = fx.try_insert(table, workspace_id, &values).await;
    let after = count(db, table, None).await;
    if let Ok(id) = &result {
        // Wrongly accepted: take it out again so the next cases start from the same rows.
        execute(db, &format!("DELETE FROM {table} WHERE id = {}", quote(id))).await.expect("delete");
    }
    let outcome = check_failure(&result, &expect, fx.backend());
    let context = format!("{table}.{column} = {}: expected {expect:?}", fx.literal(&value));
    outcome.map_err(|got| format!("{context}, got {got}"))?;
    if after != before {
        return Err(format!("{context}: the row count went from {before} to {after}"));
    }
    Ok(())
}

/// Inserts a row of `table` with `parents` and the given values, expects it to succeed, and
/// deletes it again (so rows sharing parents cannot collide on a unique key).
async fn expect_accepted(
    fx: &Fixtures,
    db: &Db,
    table: &str,
    workspace_id: &str,
    parents: &[(&'static str, Value)],
    values: &[(&str, Value)],
) -> Result<(), String> {
    let mut all: Vec<(&str, Value)> =
        parents.iter().filter(|(c, _)| !values.iter().any(|(v, _)| v == c)).cloned().collect();
    all.extend(values.iter().cloned());
    let described: Vec<String> = values.iter().map(|(c, v)| format!("{c} = {}", fx.literal(v))).collect();
    match fx.try_insert(table, workspace_id, &all).await {
        Ok(id) => {
            execute(db, &format!("DELETE FROM {table} WHERE id = {}", quote(&id))).await.expect("delete");
            Ok(())
        }
        Err(e) => Err(format!("{table} ({}): rejected: {e}", described.join(", "))),
    }
}

fn check_name(table: &Table, column: &Column) -> String {
    format!("{}_{}_check", table.name, column.name)
}

/// The rejection by a column's own check.
fn by_check(table: &Table, column: &Column) -> Expect {
    Expect::Check(vec![check_name(table, column)])
}

// ---------------------------------------------------------------------------------------------
// 1. Tables, views and columns.
// ---------------------------------------------------------------------------------------------

both_backends! {
    /// Every table and the view of the catalog exist, with exactly its columns, in order,
    /// their nullability and the declared type of their kind; nothing else exists.
    async fn tables_and_columns_match_the_catalog(backend: Backend) {
        let test_db = TestDb::migrated(backend).await;
        let model = introspect(&test_db.db).await;
        assert_none(
            &format!("{} vs the catalog", backend.name()),
            &columns_vs_catalog(&model, backend, true),
        );
    }
}

/// The Diesel schema (`schema::DECLARED`) declares exactly the catalog's tables and view, their
/// columns in order, their nullability and the SQL type of each column's kind.
#[test]
fn diesel_schema_matches_the_catalog() {
    let mut wrong = Vec::new();
    let declared: BTreeMap<&str, &[(&str, &str)]> = iofold_graph::schema::DECLARED.iter().copied().collect();
    assert_eq!(declared.len(), iofold_graph::schema::DECLARED.len(), "a table is declared twice");
    let expected: BTreeSet<&str> = catalog::TABLES.iter().map(|t| t.name).collect();
    let actual: BTreeSet<&str> = declared.keys().copied().collect();
    for missing in expected.difference(&actual) {
        wrong.push(format!("{missing}: not declared in the Diesel schema"));
    }
    for extra in actual.difference(&expected) {
        wrong.push(format!("{extra}: declared in the Diesel schema but not in the catalog"));
    }
    for t in catalog::TABLES {
        let Some(columns) = declared.get(t.name) else {
            continue;
        };
        let names: Vec<&str> = columns.iter().map(|(name, _)| name.trim_start_matches("r#")).collect();
        let expected_names: Vec<&str> = t.columns.iter().map(|c| c.name).collect();
        if names != expected_names {
            wrong.push(format!("{}: Diesel declares {names:?}, the catalog has {expected_names:?}", t.name));
            continue;
        }
        for (c, (_, ty)) in t.columns.iter().zip(columns.iter()) {
            let ty: String = ty.chars().filter(|ch| !ch.is_whitespace()).collect();
            let (nullable, inner) = match ty.strip_prefix("Nullable<").and_then(|rest| rest.strip_suffix('>')) {
                Some(inner) => (true, inner.to_owned()),
                None => (false, ty.clone()),
            };
            if nullable != c.nullable {
                wrong.push(format!(
                    "{}.{}: Diesel says {ty}, the catalog says nullable = {}",
                    t.name, c.name, c.nullable
                ));
            }
            if inner != expected_diesel_type(c.kind) {
                wrong.push(format!(
                    "{}.{}: Diesel says {inner}, expected {} for {:?}",
                    t.name,
                    c.name,
                    expected_diesel_type(c.kind),
                    c.kind
                ));
            }
        }
    }
    assert_none("the Diesel schema vs the catalog", &wrong);
}

// ---------------------------------------------------------------------------------------------
// 2. The two backends describe the same model.
// ---------------------------------------------------------------------------------------------

/// SQLite and PostgreSQL, each introspected through its own catalog, have the same tables,
/// views, columns, nullability, unique keys and foreign keys with the same ON DELETE rules, and
/// both agree with the catalog. On PostgreSQL the foreign keys that point forward in creation
/// order (the agents <-> versions/evals cycle) are the deferred ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_describe_the_same_model() {
    if !require_postgres("data_model::both_backends_describe_the_same_model").await {
        return;
    }
    let sqlite_db = TestDb::migrated(Backend::Sqlite).await;
    let pg_db = TestDb::migrated(Backend::Postgres).await;
    let sqlite = introspect(&sqlite_db.db).await;
    let pg = introspect(&pg_db.db).await;

    let mut wrong = Vec::new();
    let names = |m: &DbModel| m.keys().cloned().collect::<BTreeSet<_>>();
    if names(&sqlite) != names(&pg) {
        wrong.push(format!("tables: SQLite {:?}, PostgreSQL {:?}", names(&sqlite), names(&pg)));
    }
    for (name, s) in &sqlite {
        let Some(p) = pg.get(name) else { continue };
        if s.view != p.view {
            wrong.push(format!("{name}: view on SQLite = {}, on PostgreSQL = {}", s.view, p.view));
        }
        let shape = |t: &DbTable| t.columns.iter().map(|c| (c.name.clone(), c.nullable)).collect::<Vec<_>>();
        if shape(s) != shape(p) {
            wrong.push(format!("{name}: columns (name, nullable) SQLite {:?}, PostgreSQL {:?}", shape(s), shape(p)));
        }
        if s.unique_keys() != p.unique_keys() {
            wrong.push(format!("{name}: unique keys SQLite {:?}, PostgreSQL {:?}", s.unique_keys(), p.unique_keys()));
        }
        if s.foreign_keys != p.foreign_keys {
            wrong.push(format!("{name}: foreign keys SQLite {:?}, PostgreSQL {:?}", s.foreign_keys, p.foreign_keys));
        }
    }
    assert_none("SQLite vs PostgreSQL", &wrong);

    for (backend, model) in [(sqlite_db.backend(), &sqlite), (pg_db.backend(), &pg)] {
        let mut wrong = columns_vs_catalog(model, backend, false);
        wrong.extend(keys_vs_catalog(model));
        assert_none(&format!("{} vs the catalog", backend.name()), &wrong);
    }
    let fk_count: usize = catalog::tables().map(|t| t.foreign_keys().count()).sum();
    let pg_fk_count: usize = pg.values().map(|t| t.foreign_keys.len()).sum();
    assert_eq!(pg_fk_count, fk_count, "foreign keys on PostgreSQL");

    // PostgreSQL's deferred foreign keys: exactly the forward references of the catalog.
    #[derive(QueryableByName)]
    struct Deferred {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let deferred: Vec<Deferred> = load(
        &pg_db.db,
        "SELECT cl.relname::text || '.' || a.attname::text AS name \
         FROM pg_constraint c JOIN pg_class cl ON cl.oid = c.conrelid \
         JOIN pg_namespace n ON n.oid = cl.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] \
         WHERE c.contype = 'f' AND c.condeferrable AND c.condeferred AND n.nspname = current_schema()",
    )
    .await
    .expect("read the deferred foreign keys");
    let deferred: BTreeSet<String> = deferred.into_iter().map(|d| d.name).collect();
    let forward: BTreeSet<String> =
        forward_references().into_iter().map(|(t, c, _)| format!("{}.{}", t.name, c.name)).collect();
    assert_eq!(deferred, forward, "PostgreSQL's deferred foreign keys vs the catalog's forward references");
}

// ---------------------------------------------------------------------------------------------
// 3. Checks.
// ---------------------------------------------------------------------------------------------

both_backends! {
    /// Every enum column rejects a value outside the catalog's list (also the first value
    /// upper-cased) with its `<table>_<column>_check`, and accepts every value of the list.
    async fn enum_checks_reject_unknown_values(backend: Backend) {
        let test_db = TestDb::migrated(backend).await;
        let (db, fx) = (&test_db.db, Fixtures::new(&test_db.db));
        let ws = fx.workspace().await;
        let (mut wrong, mut cases) = (Vec::new(), 0);
        for t in catalog::tables() {
            let enums: Vec<(&Column, &[&str])> = t
                .columns
                .iter()
                .filter_map(|c| match c.kind {
                    Kind::Enum(values) => Some((c, values)),
                    _ => None,
                })
                .collect();
            if enums.is_empty() {
                continue;
            }
            let parents = fx.parents(t.name, &ws).await;
            for (c, values) in enums {
                for bad in [values[0].to_uppercase(), format!("not_{}", values[0])] {
                    cases += 1;
                    let expect = by_check(t, c);
                    if let Err(e) =
                        expect_rejected(&fx, db, t.name, &ws, &parents, c.name, bad.into(), expect)
                            .await
                    {
                        wrong.push(e);
                    }
                }
                for good in values {
                    if let Err(e) =
                        expect_accepted(&fx, db, t.name, &ws, &parents, &[(c.name, (*good).into())])
                            .await
                    {
                        wrong.push(e);
                    }
                }
            }
        }
        assert!(cases > 0, "no enum column in the catalog");
        assert_none("enum checks", &wrong);
    }
}

/// A value just outside a bound, and the bound itself.
fn bound_values(column: &Column, bound: f64, below: bool) -> (Value, Value) {
    let step = if below { -1.0 } else { 1.0 };
    match column.kind {
        Kind::Int => (Value::Int((bound + step) as i64), Value::Int(bound as i64)),
        _ => (Value::Real(bound + step * 0.001), Value::Real(bound)),
    }
}

both_backends! {
    /// Every column with a lower or upper bound in the catalog rejects a value just outside
    /// it with its `<table>_<column>_check`, leaving the table unchanged, and accepts the bound.
    async fn range_checks_reject_out_of_range_values(backend: Backend) {
        let test_db = TestDb::migrated(backend).await;
        let (db, fx) = (&test_db.db, Fixtures::new(&test_db.db));
        let ws = fx.workspace().await;
        let (mut wrong, mut cases) = (Vec::new(), 0);
        for t in catalog::tables() {
            let bounded: Vec<&Column> = t
                .columns
                .iter()
                .filter(|c| c.min.is_some() || c.max.is_some())
                .collect();
            if bounded.is_empty() {
                continue;
            }
            let parents = fx.parents(t.name, &ws).await;
            for c in bounded {
                let bounds = [(c.min, true), (c.max, false)];
                for (bound, below) in bounds
                    .into_iter()
                    .filter_map(|(b, below)| b.map(|b| (b, below)))
                {
                    cases += 1;
                    let (outside, at) = bound_values(c, bound, below);
                    let mut names = vec![check_name(t, c)];
                    // A split above 1 also breaks the sum check; either may be reported first.
                    if t.name == "gepa_runs"
                        && !below
                        && matches!(c.name, "train_split" | "val_split")
                    {
                        names.push("gepa_runs_splits_check".into());
                    }
                    let expect = Expect::Check(names);
                    if let Err(e) =
                        expect_rejected(&fx, db, t.name, &ws, &parents, c.name, outside, expect)
                            .await
                    {
                        wrong.push(e);
                    }
                    if let Err(e) =
                        expect_accepted(&fx, db, t.name, &ws, &parents, &[(c.name, at)]).await
                    {
                        wrong.push(e);
                    }
                }
            }
        }
        assert!(cases > 0, "no bounded column in the catalog");
        assert_none("range checks", &wrong);
    }
}

both_backends! {
    /// `gepa_runs`: train_split + val_split may not exceed 1 (`gepa_runs_splits_check`), with
    /// room for the binary rounding of decimal splits such as 0.7 + 0.3.
    async fn gepa_splits_may_not_exceed_one(backend: Backend) {
        let test_db = TestDb::migrated(backend).await;
        let (db, fx) = (&test_db.db, Fixtures::new(&test_db.db));
        let ws = fx.workspace().await;
        let parents = fx.parents("gepa_runs", &ws).await;
        let mut wrong = Vec::new();
        for (train, val) in [(0.7, 0.3), (1.0, 0.0), (0.0, 1.0), (0.1, 0.2)] {
            let values = [
                ("train_split", Value::Real(train)),
                ("val_split", Value::Real(val)),
            ];
            if let Err(e) = expect_accepted(&fx, db, "gepa_runs", &ws, &parents, &values).await {
                wrong.push(e);
            }
        }
        for (train, val) in [(0.6, 0.5), (1.0, 0.01), (0.5, 0.500001)] {
            let mut with_train = parents.clone();
            with_train.push(("train_split", Value::Real(train)));
            let expect = Expect::Check(vec!["gepa_runs_splits_check".into()]);
            let result = expect_rejected(
                &fx,
                db,
                "gepa_runs",
                &ws,
                &with_train,
                "val_split",
                Value::Real(val),
                expect,
            )
            .await;
            if let Err(e) = result {
                wrong.push(e);
            }
        }
        assert_none("gepa split sum", &wrong);
    }
}

both_backends! {
    /// `users.email` must be lower-case and look like an address (`users_email_check`).
    async fn user_emails_are_lower_case_addresses(backend: Backend) {
        let test_db = TestDb::migrated(backend).await;
        let (db, fx) = (&test_db.db, Fixtures::new(&test_db.db));
        let mut wrong = Vec::new();
        for bad in [
            "Alice@example.com",
            "alice",
            "alice@example",
            "@example.com",
            "alice@.com",
        ] {
            let expect = Expect::Check(vec!["users_email_check".into()]);
            if let Err(e) =
                expect_rejected(&fx, db, "users", "", &[], "email", bad.into(), expect).await
            {
                wrong.push(e);
            }
        }
        for good in ["alice@example.com", "a.b+c@mail.example.org"] {
            if let Err(e) =
                expect_accepted(&fx, db, "users", "", &[], &[("email", good.into())]).await
            {
                wrong.push(e);
            }
        }
        assert_none("users.email", &wrong);
    }
}

both_backends! {
    /// Values that are not of the column's kind are rejected, leaving the table unchanged: on
    /// SQLite by each column's `<table>_<column>_check` (invalid JSON in every JSON column,
    /// malformed timestamps in every timestamp column, booleans other than 0/1), on
    /// PostgreSQL by the column types (where the value does not parse). `snapshot_date` must
    /// be a `YYYY-MM-DD` date on both.
    async fn kinds_reject_malformed_values(backend: Backend) {
        let test_db = TestDb::migrated(backend).await;
        let (db, fx) = (&test_db.db, Fixtures::new(&test_db.db));
        let ws = fx.workspace().await;
        let sqlite = backend == Backend::Sqlite;
        let (mut wrong, mut cases) = (Vec::new(), 0);
        for t in catalog::tables() {
            let parents = fx.parents(t.name, &ws).await;
            for c in t.columns {
                let by_check = by_check(t, c);
                let bad: Vec<(Value, Expect)> = match c.kind {
                    Kind::Json => vec![
                        (
                            Value::Json("{\"a\":".into()),
                            if sqlite {
                                by_check.clone()
                            } else {
                                Expect::Rejected
                            },
                        ),
                        (
                            Value::Json("not json".into()),
                            if sqlite { by_check } else { Expect::Rejected },
                        ),
                    ],
                    Kind::Timestamp if sqlite => vec![
                        ("2026-01-01 00:00:00".into(), by_check.clone()),
                        ("2026-13-01T00:00:00.000000Z".into(), by_check.clone()),
                        ("2026-01-01T00:00:00Z".into(), by_check.clone()),
                        ("2026-01-01T00:00:00.000000+01:00".into(), by_check.clone()),
                        ("yesterday".into(), by_check),
                    ],
                    Kind::Timestamp => vec![
                        ("2026-13-01T00:00:00.000000Z".into(), Expect::Rejected),
                        ("not a time".into(), Expect::Rejected),
                    ],
                    Kind::Bool => vec![(
                        Value::Int(2),
                        if sqlite { by_check } else { Expect::Rejected },
                    )],
                    Kind::Date => vec![
                        ("2026-1-01".into(), by_check.clone()),
                        ("20260101".into(), by_check.clone()),
                        ("2026-01-01T00:00:00.000000Z".into(), by_check),
                    ],
                    _ => vec![],
                };
                for (value, expect) in bad {
                    cases += 1;
                    if let Err(e) =
                        expect_rejected(&fx, db, t.name, &ws, &parents, c.name, value, expect).await
                    {
                        wrong.push(e);
                    }
                }
            }
        }
        assert!(
            cases > 0,
            "no JSON, timestamp, boolean or date column in the catalog"
        );
        assert_none("malformed values", &wrong);
    }
}

both_backends! {
    /// Timestamps and dates shaped right but naming no day of the calendar (month 13, 30
    /// February, 31 April) are rejected: on SQLite by each column's check, on PostgreSQL by
    /// `timestamptz` itself; `snapshot_date` by its check on both (a check violation naming
    /// `performance_snapshots_snapshot_date_check`, as for a malformed date).
    async fn timestamps_and_dates_name_real_days(backend: Backend) {
        let test_db = TestDb::migrated(backend).await;
        let (db, fx) = (&test_db.db, Fixtures::new(&test_db.db));
        let ws = fx.workspace().await;
        let (mut wrong, mut cases) = (Vec::new(), 0);
        for t in catalog::tables() {
            let parents = fx.parents(t.name, &ws).await;
            for c in t.columns {
                let bad: &[&str] = match c.kind {
                    Kind::Timestamp => &[
                        "2026-13-01T00:00:00.000000Z",
                        "2026-02-30T00:00:00.000000Z",
                        "2026-04-31T12:00:00.000000Z",
                    ],
                    Kind::Date => &["2026-13-01", "2026-02-30", "2026-04-31", "2026-00-10"],
                    _ => &[],
                };
                for value in bad {
                    cases += 1;
                    let expect = match (backend, c.kind) {
                        (Backend::Postgres, Kind::Timestamp) => Expect::Rejected,
                        _ => by_check(t, c),
                    };
                    let result = expect_rejected(
                        &fx,
                        db,
                        t.name,
                        &ws,
                        &parents,
                        c.name,
                        (*value).into(),
                        expect,
                    )
                    .await;
                    if let Err(e) = result {
                        wrong.push(e);
                    }
                }
            }
        }
        assert!(cases > 0, "no timestamp or date column in the catalog");
        assert_none("impossible days", &wrong);
    }
}

both_backends! {
    /// Every NOT NULL column of the catalog rejects an explicit NULL (defaulted ones too),
    /// leaving the table unchanged.
    async fn not_null_columns_reject_null(backend: Backend) {
        let test_db = TestDb::migrated(backend).await;
        let (db, fx) = (&test_db.db, Fixtures::new(&test_db.db));
        let ws = fx.workspace().await;
        let (mut wrong, mut cases) = (Vec::new(), 0);
        for t in catalog::tables() {
            let parents = fx.parents(t.name, &ws).await;
            for c in t.columns.iter().filter(|c| !c.nullable) {
                cases += 1;
                let expect = Expect::NotNull;
                if let Err(e) =
                    expect_rejected(&fx, db, t.name, &ws, &parents, c.name, Value::Null, expect)
                        .await
                {
                    wrong.push(e);
                }
            }
        }
        assert!(cases > 0, "no NOT NULL column in the catalog");
        assert_none("NOT NULL columns", &wrong);
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Foreign keys.
// ---------------------------------------------------------------------------------------------

both_backends! {
    /// Every foreign key of the catalog rejects a key that names no row, and does what its
    /// ON DELETE rule says when the parent is deleted: Cascade deletes the child, SetNull
    /// empties the key and keeps the child.
    async fn foreign_keys_follow_their_on_delete_rule(backend: Backend) {
        let test_db = TestDb::migrated(backend).await;
        let (db, fx) = (&test_db.db, Fixtures::new(&test_db.db));
        let ws = fx.workspace().await;
        let (mut wrong, mut cases) = (Vec::new(), 0);
        for t in catalog::tables() {
            for (c, fk) in t.foreign_keys() {
                cases += 1;
                let missing = Value::Text(format!(
                    "{}_missing",
                    catalog::table(fk.table).unwrap().id_prefix
                ));
                if let Err(e) = expect_rejected(
                    &fx,
                    db,
                    t.name,
                    &ws,
                    &[],
                    c.name,
                    missing,
                    Expect::ForeignKey,
                )
                .await
                {
                    wrong.push(e);
                }

                let parent = fx.insert(fk.table, &ws, &[]).await;
                let child = fx.insert(t.name, &ws, &[(c.name, (&parent).into())]).await;
                let deleted = execute(
                    db,
                    &format!("DELETE FROM {} WHERE id = {}", fk.table, quote(&parent)),
                )
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "delete the {} parent of {}.{}: {e}",
                        fk.table, t.name, c.name
                    )
                });
                assert_eq!(deleted, 1, "{}: the parent row", fk.table);
                let child_exists = exists(db, t.name, &child).await;
                let key_null = count(
                    db,
                    t.name,
                    Some(&format!(
                        "id = {} AND {} IS NULL",
                        quote(&child),
                        ident(c.name)
                    )),
                )
                .await
                    == 1;
                let rule_followed = match fk.on_delete {
                    OnDelete::Cascade => !child_exists,
                    OnDelete::SetNull => child_exists && key_null,
                };
                if !rule_followed {
                    wrong.push(format!(
                        "{}.{} -> {} ({:?}): after deleting the parent the child exists = {child_exists}, key is NULL = {key_null}",
                        t.name, c.name, fk.table, fk.on_delete
                    ));
                }
            }
        }
        assert!(cases > 0, "no foreign key in the catalog");
        assert_none("foreign keys", &wrong);
    }
}

/// The foreign keys that reference a table created later (in catalog order): they can only
/// be satisfied at commit, so they must be deferred.
fn forward_references() -> Vec<(&'static Table, &'static Column, &'static str)> {
    let position = |name: &str| catalog::tables().position(|t| t.name == name).expect("a table of the catalog");
    catalog::tables()
        .flat_map(|t| t.foreign_keys().map(move |(c, fk)| (t, c, fk.table)))
        .filter(|(t, _, target)| position(target) > position(t.name))
        .collect()
}

/// Runs statements in one transaction (`BEGIN IMMEDIATE` on SQLite).
async fn in_transaction(db: &Db, statements: &[String]) -> Result<(), DbError> {
    use diesel_async::RunQueryDsl;
    iofold_graph::with_tx!(db, async |conn| {
        for sql in statements {
            diesel::sql_query(sql.as_str()).execute(conn).await?;
        }
        Ok::<(), DbError>(())
    })
}

both_backends! {
    /// A foreign key that points forward in creation order (agents.active_version_id,
    /// agents.active_eval_id) is checked at commit: inside one transaction the referencing row
    /// can be written before the row it references.
    async fn forward_references_are_checked_at_commit(backend: Backend) {
        let test_db = TestDb::migrated(backend).await;
        let (db, fx) = (&test_db.db, Fixtures::new(&test_db.db));
        let ws = fx.workspace().await;
        let forward = forward_references();
        assert!(!forward.is_empty(), "the catalog has no forward reference");
        let mut wrong = Vec::new();
        for (t, c, target) in forward {
            let target_table = fixtures::table(target);
            let target_id = match fx.value(target_table, &target_table.columns[0]) {
                Value::Text(id) => id,
                other => panic!("an id: {other:?}"),
            };
            let mut child = fx.parents(t.name, &ws).await;
            child.push((c.name, (&target_id).into()));
            let mut parent = fx.parents(target, &ws).await;
            parent.push(("id", (&target_id).into()));
            let (child_id, child_sql) = fx.insert_sql(t.name, &ws, &child);
            let (_, parent_sql) = fx.insert_sql(target, &ws, &parent);
            match in_transaction(db, &[child_sql, parent_sql]).await {
                Ok(()) => {
                    let linked = format!(
                        "id = {} AND {} = {}",
                        quote(&child_id),
                        ident(c.name),
                        quote(&target_id)
                    );
                    if count(db, t.name, Some(&linked)).await != 1 {
                        wrong.push(format!(
                            "{}.{}: committed, but the row is not linked",
                            t.name, c.name
                        ));
                    }
                }
                Err(e) => wrong.push(format!(
                    "{}.{} -> {target}: written before its target, refused: {e}",
                    t.name, c.name
                )),
            }
        }
        assert_none("forward references", &wrong);
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Deleting a workspace.
// ---------------------------------------------------------------------------------------------

both_backends! {
    /// Deleting a workspace deletes every row that belongs to it (by the tables' scopes) in
    /// every table, and nothing else: another workspace's rows and the rows that belong to no
    /// workspace (users, their API tokens, tools, the LLM cache) stay.
    async fn deleting_a_workspace_removes_everything_under_it(backend: Backend) {
        let test_db = TestDb::migrated(backend).await;
        let (db, fx) = (&test_db.db, Fixtures::new(&test_db.db));
        let ws_a = fx.workspace().await;
        let rows_a = fx.one_of_each(&ws_a).await;
        let ws_b = fx.workspace().await;
        let rows_b = fx.one_of_each(&ws_b).await;
        let mut extra_b = HashMap::new();
        for t in catalog::tables().filter(|t| t.name != "workspaces") {
            extra_b.insert(t.name, fx.insert(t.name, &ws_b, &[]).await);
        }

        struct Counts {
            total: i64,
            in_a: Option<i64>,
            in_b: Option<i64>,
        }
        async fn counts(db: &Db, t: &Table, a: &str, b: &str) -> Counts {
            let filter_a = fixtures::workspace_rows_filter(t, a);
            let filter_b = fixtures::workspace_rows_filter(t, b);
            Counts {
                total: count(db, t.name, None).await,
                in_a: match filter_a {
                    Some(f) => Some(count(db, t.name, Some(&f)).await),
                    None => None,
                },
                in_b: match filter_b {
                    Some(f) => Some(count(db, t.name, Some(&f)).await),
                    None => None,
                },
            }
        }
        let mut before = HashMap::new();
        for t in catalog::tables() {
            before.insert(t.name, counts(db, t, &ws_a, &ws_b).await);
        }
        let deleted = execute(
            db,
            &format!("DELETE FROM workspaces WHERE id = {}", quote(&ws_a)),
        )
        .await
        .expect("delete A");
        assert_eq!(deleted, 1);

        let mut wrong = Vec::new();
        for t in catalog::tables() {
            let (was, now) = (&before[t.name], counts(db, t, &ws_a, &ws_b).await);
            match (was.in_a, was.in_b) {
                (Some(in_a), Some(in_b)) => {
                    if in_a < 1 {
                        wrong.push(format!("{}: workspace A had no row to delete", t.name));
                    }
                    if now.total != was.total - in_a {
                        wrong.push(format!(
                            "{}: {} rows, {} of them A's; {} left, expected {}",
                            t.name,
                            was.total,
                            in_a,
                            now.total,
                            was.total - in_a
                        ));
                    }
                    if now.in_b != Some(in_b) {
                        wrong.push(format!("{}: B had {in_b} rows, now {:?}", t.name, now.in_b));
                    }
                    if exists(db, t.name, &rows_a[t.name]).await {
                        wrong.push(format!("{}: A's row {} survived", t.name, rows_a[t.name]));
                    }
                }
                _ => {
                    if now.total != was.total {
                        wrong.push(format!(
                            "{}: belongs to no workspace, yet went from {} to {} rows",
                            t.name, was.total, now.total
                        ));
                    }
                    if !exists(db, t.name, &rows_a[t.name]).await {
                        wrong.push(format!(
                            "{}: the row {} made with workspace A is gone",
                            t.name, rows_a[t.name]
                        ));
                    }
                }
            }
            let mut b_ids = vec![&rows_b[t.name]];
            b_ids.extend(extra_b.get(t.name));
            for id in b_ids {
                if !exists(db, t.name, id).await {
                    wrong.push(format!("{}: B's row {id} is gone", t.name));
                }
            }
        }
        assert_none("deleting workspace A", &wrong);
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Unique keys.
// ---------------------------------------------------------------------------------------------

both_backends! {
    /// Every unique key of the catalog rejects a second row with the same values (a unique
    /// violation of `<table>_<columns>_key`), leaving the table unchanged, and accepts a row
    /// that differs in the key's last column.
    async fn unique_keys_reject_duplicates(backend: Backend) {
        let test_db = TestDb::migrated(backend).await;
        let (db, fx) = (&test_db.db, Fixtures::new(&test_db.db));
        let ws = fx.workspace().await;

        // A value for a key column: a new parent for a foreign key, a fresh value otherwise
        // (the second value of an enum when `other`, so it differs from the default first).
        async fn key_value(fx: &Fixtures, t: &Table, c: &Column, ws: &str, other: bool) -> Value {
            match (c.references, c.kind) {
                (Some(fk), _) if fk.table == "workspaces" && !other => ws.into(),
                (Some(fk), _) => fx.insert(fk.table, ws, &[]).await.into(),
                (None, Kind::Enum(values)) if other => values[1].into(),
                _ => fx.value(t, c),
            }
        }

        let (mut wrong, mut cases) = (Vec::new(), 0);
        for t in catalog::tables() {
            for key in t.unique_keys {
                cases += 1;
                let mut values: Vec<(&str, Value)> = Vec::new();
                for name in key.iter() {
                    let c = t
                        .column(name)
                        .unwrap_or_else(|| panic!("{}: key column {name}", t.name));
                    values.push((c.name, key_value(&fx, t, c, &ws, false).await));
                }
                fx.insert(t.name, &ws, &values).await;
                let (last, last_value) = values.pop().expect("a key has columns");
                let expect = Expect::Unique(t.name, key.to_vec());
                if let Err(e) =
                    expect_rejected(&fx, db, t.name, &ws, &values, last, last_value, expect).await
                {
                    wrong.push(e);
                }
                let c = t.column(last).unwrap();
                values.push((last, key_value(&fx, t, c, &ws, true).await));
                if let Err(e) = expect_accepted(&fx, db, t.name, &ws, &[], &values).await {
                    wrong.push(format!("{}: a row differing in {last} only: {e}", t.name));
                }
            }
        }
        assert!(cases > 0, "no unique key in the catalog");
        assert_none("unique keys", &wrong);
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Indexes.
// ---------------------------------------------------------------------------------------------

both_backends! {
    /// Every foreign key the database has is the first column of one of that table's
    /// (non-partial) indexes, as the database's own catalog reports them.
    async fn every_foreign_key_is_indexed(backend: Backend) {
        let test_db = TestDb::migrated(backend).await;
        let model = introspect(&test_db.db).await;
        let (mut wrong, mut checked) = (Vec::new(), 0);
        for (name, t) in &model {
            for fk in &t.foreign_keys {
                checked += 1;
                let covered = t
                    .indexes
                    .iter()
                    .any(|i| !i.partial && i.columns.first() == Some(&fk.column));
                if !covered {
                    let indexes: Vec<(&str, &[String])> = t
                        .indexes
                        .iter()
                        .map(|i| (i.name.as_str(), &i.columns[..]))
                        .collect();
                    wrong.push(format!(
                        "{name}.{} has no index starting with it; indexes: {indexes:?}",
                        fk.column
                    ));
                }
            }
        }
        let expected: usize = catalog::tables().map(|t| t.foreign_keys().count()).sum();
        assert_eq!(checked, expected, "foreign keys reported by the database");
        assert_none("foreign-key indexes", &wrong);
    }
}

#[derive(QueryableByName)]
struct SqlitePlanRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    detail: String,
}

#[derive(QueryableByName)]
struct PgPlanRow {
    #[diesel(column_name = "QUERY PLAN", sql_type = diesel::sql_types::Text)]
    plan: String,
}

/// Every `Index Name` in a PostgreSQL JSON plan.
fn pg_index_names(plan: &serde_json::Value, names: &mut Vec<String>) {
    match plan {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("Index Name", serde_json::Value::String(name)) => names.push(name.clone()),
                    _ => pg_index_names(value, names),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| pg_index_names(item, names)),
        _ => {}
    }
}

both_backends! {
    /// The trace list (a workspace's traces, newest first, 50 at a time) is read through
    /// `idx_traces_list` once the planner has statistics over a few thousand traces in
    /// several workspaces.
    async fn trace_list_uses_its_index(backend: Backend) {
        let test_db = TestDb::migrated(backend).await;
        let (db, fx) = (&test_db.db, Fixtures::new(&test_db.db));
        let mut workspaces = Vec::new();
        for _ in 0..4 {
            let ws = fx.insert("workspaces", "", &[]).await;
            fx.insert_many("traces", &ws, &vec![Vec::new(); 1000]).await;
            workspaces.push(ws);
        }
        assert_eq!(count(db, "traces", None).await, 4000);
        execute(
            db,
            if backend == Backend::Sqlite {
                "ANALYZE"
            } else {
                "ANALYZE traces"
            },
        )
        .await
        .expect("analyze");

        let query = format!(
            "SELECT id, trace_id, source, timestamp, step_count, has_errors, assignment_status, input_preview, \
             output_preview FROM traces WHERE workspace_id = {} ORDER BY timestamp DESC, id DESC LIMIT 50",
            quote(&workspaces[1])
        );
        let (indexes, plan) = match backend {
            Backend::Sqlite => {
                let rows: Vec<SqlitePlanRow> = load(db, &format!("EXPLAIN QUERY PLAN {query}"))
                    .await
                    .expect("explain");
                let details: Vec<String> = rows.into_iter().map(|r| r.detail).collect();
                let indexes = details
                    .iter()
                    .filter_map(|d| d.split(" USING ").nth(1))
                    .filter_map(|rest| {
                        rest.split_whitespace()
                            .find(|w| w.starts_with("idx_") || w.starts_with("sqlite_"))
                    })
                    .map(str::to_owned)
                    .collect::<Vec<_>>();
                (indexes, details.join("\n"))
            }
            Backend::Postgres => {
                let rows: Vec<PgPlanRow> = load(db, &format!("EXPLAIN (FORMAT JSON) {query}"))
                    .await
                    .expect("explain");
                let plan: serde_json::Value =
                    serde_json::from_str(&rows[0].plan).expect("a JSON plan");
                let mut indexes = Vec::new();
                pg_index_names(&plan, &mut indexes);
                (indexes, serde_json::to_string_pretty(&plan).unwrap())
            }
        };
        assert!(
            indexes.iter().any(|i| i == "idx_traces_list"),
            "the trace list does not use idx_traces_list:\n{plan}"
        );

        #[derive(QueryableByName)]
        struct Listed {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let listed: Vec<Listed> = load(db, &format!("SELECT COUNT(*) AS n FROM ({query}) page"))
            .await
            .expect("list");
        assert_eq!(listed[0].n, 50, "a page of traces");
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Migrations.
// ---------------------------------------------------------------------------------------------

both_backends! {
    /// Running the migrations on a migrated database applies nothing and keeps its rows; the
    /// status then shows every migration applied and none pending or unknown.
    async fn migrating_twice_is_a_no_op(backend: Backend) {
        let test_db = TestDb::migrated(backend).await;
        let fx = Fixtures::new(&test_db.db);
        let ws = fx.workspace().await;
        let trace = fx.insert("traces", &ws, &[]).await;

        let applied = iofold_graph::db::migrations::run_pending(&test_db.url)
            .await
            .expect("migrate again");
        assert!(applied.is_empty(), "the second run applied {applied:?}");
        let status = iofold_graph::db::migrations::status(&test_db.url)
            .await
            .expect("status");
        assert!(
            status.pending.is_empty(),
            "pending after migrating: {:?}",
            status.pending
        );
        assert!(
            status.unknown.is_empty(),
            "unknown after migrating: {:?}",
            status.unknown
        );
        assert!(!status.applied.is_empty(), "nothing applied");
        assert!(
            exists(&test_db.db, "traces", &trace).await,
            "the trace survived"
        );
        assert_eq!(introspect(&test_db.db).await.len(), catalog::TABLES.len());
    }
}
