//! The maintenance commands (`reset`, `nuke`, `health`, `export`, `import`, `backup`), run
//! through the binary as an operator would, on both backends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use diesel::sql_types::{BigInt, Bool, Double, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use iofold_graph::catalog::{self, Kind};
use iofold_graph::db::sql_types::{Json, JsonValue, Timestamp, UtcTimestamp};
use iofold_graph::db::{count_rows, Backend, DatabaseUrl, Db, PoolOptions};
use serde_json::{json, Value};

use crate::both_backends;
use crate::support::cli::{cmd, failed_with, out, succeeded};
use crate::support::db::{require_postgres, TestDb};
use crate::support::fixtures::{self, ident, quote, Fixtures};

/// A valid encryption key, so production runs reach the command's own refusal.
pub(crate) const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// A directory in the temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("iofold-ops-{label}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn str(&self, name: &str) -> String {
        self.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Rows of every table of the model, in catalog order.
async fn counts(db: &Db) -> Vec<(&'static str, i64)> {
    let mut counts = Vec::new();
    for table in catalog::tables() {
        let n = count_rows(db, table.name).await.unwrap_or_else(|e| panic!("count {}: {e}", table.name));
        counts.push((table.name, n));
    }
    counts
}

fn total(counts: &[(&'static str, i64)]) -> i64 {
    counts.iter().map(|(_, n)| n).sum()
}

/// The ids of the rows with awkward values written by [`populated`].
struct Awkward {
    trace: String,
    eval: String,
    child_version: String,
    parent_version: String,
}

/// A migrated database with the demo data, one row in every table of a second workspace,
/// and awkward values: exotic text, nested JSON, a timestamp with microseconds, a boolean,
/// an integer beyond 2^53, doubles that need 17 digits, and an agent version whose parent
/// sorts after it by id.
async fn populated(backend: Backend) -> (TestDb, Awkward) {
    let test_db = TestDb::migrated(backend).await;
    succeeded(&cmd(test_db.url.as_str(), &["seed"], &[]).await);
    let fx = Fixtures::new(&test_db.db);
    let workspace = fx.workspace().await;
    let ids = fx.one_of_each(&workspace).await;
    let trace = ids["traces"].clone();
    let eval = ids["evals"].clone();
    let bool_true = fx.literal(&true.into());
    let updates = [
        format!(
            "UPDATE traces SET metadata = {}, input_preview = {}, {} = {}, has_errors = {bool_true}, \
             total_tokens = 9007199254740993 WHERE id = {}",
            quote(r#"{"b":[1,2.5,{"x":null}],"a":"é\n\"q\"","n":12345678901234,"f":0.1,"t":true}"#),
            quote("it's \"quoted\"\nline 2 — ünïcødé 🎉"),
            ident("timestamp"),
            quote("2026-03-04T05:06:07.123456Z"),
            quote(&trace)
        ),
        format!(
            "UPDATE evals SET accuracy = 0.30000000000000004, total_cost_usd = {:?}, avg_duration_ms = 1e300 \
             WHERE id = {}",
            1.0f64 / 3.0,
            quote(&eval)
        ),
    ];
    for sql in &updates {
        fixtures::execute(&test_db.db, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let agent = ids["agents"].clone();
    let parent_version = format!("agent_version_ffffffff-{}", uuid::Uuid::new_v4().simple());
    let child_version = format!("agent_version_00000000-{}", uuid::Uuid::new_v4().simple());
    fx.insert(
        "agent_versions",
        &workspace,
        &[("id", parent_version.clone().into()), ("agent_id", agent.clone().into()), ("version", 100i64.into())],
    )
    .await;
    fx.insert(
        "agent_versions",
        &workspace,
        &[
            ("id", child_version.clone().into()),
            ("agent_id", agent.into()),
            ("version", 101i64.into()),
            ("parent_version_id", parent_version.clone().into()),
        ],
    )
    .await;
    (test_db, Awkward { trace, eval, child_version, parent_version })
}

macro_rules! typed_cell {
    ($name:ident, $sql:ty, $rust:ty) => {
        #[derive(QueryableByName)]
        struct $name {
            #[diesel(sql_type = Text)]
            id: String,
            #[diesel(sql_type = Nullable<$sql>)]
            v: Option<$rust>,
        }
    };
}
typed_cell!(TextCell, Text, String);
typed_cell!(IntCell, BigInt, i64);
typed_cell!(RealCell, Double, f64);
typed_cell!(BoolCell, Bool, bool);
typed_cell!(TimeCell, UtcTimestamp, Timestamp);
typed_cell!(JsonCell, JsonValue, Json);

/// (table, id, column) → value: every value of every table, read with the application's
/// own typed SQL types (independently of the export code), in canonical form: JSON as
/// values, timestamps as fixed-width UTC text at microseconds, doubles exact.
type Snapshot = BTreeMap<(&'static str, String, &'static str), Value>;

async fn snapshot(db: &Db) -> Snapshot {
    let mut all = Snapshot::new();
    for table in catalog::tables() {
        for column in table.columns {
            let sql = format!("SELECT id, {} AS v FROM {}", ident(column.name), table.name);
            let cells: Vec<(String, Value)> = match column.kind {
                Kind::Int => load::<IntCell>(db, &sql).await.into_iter().map(|c| (c.id, c.v.into())).collect(),
                Kind::Real => load::<RealCell>(db, &sql).await.into_iter().map(|c| (c.id, c.v.into())).collect(),
                Kind::Bool => load::<BoolCell>(db, &sql).await.into_iter().map(|c| (c.id, c.v.into())).collect(),
                Kind::Timestamp => load::<TimeCell>(db, &sql)
                    .await
                    .into_iter()
                    .map(|c| (c.id, c.v.map(|t| t.to_text()).into()))
                    .collect(),
                Kind::Json => load::<JsonCell>(db, &sql)
                    .await
                    .into_iter()
                    .map(|c| (c.id, c.v.map(|j| j.0).unwrap_or(Value::Null)))
                    .collect(),
                Kind::Id | Kind::Text | Kind::Date | Kind::Enum(_) => {
                    load::<TextCell>(db, &sql).await.into_iter().map(|c| (c.id, c.v.into())).collect()
                }
            };
            for (id, value) in cells {
                all.insert((table.name, id, column.name), value);
            }
        }
    }
    all
}

async fn load<T>(db: &Db, sql: &str) -> Vec<T>
where
    T: QueryableByName<diesel::pg::Pg> + QueryableByName<diesel::sqlite::Sqlite> + Send + 'static,
{
    fixtures::load(db, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Compares two snapshots table by table, naming the first difference.
#[track_caller]
fn assert_same(expected: &Snapshot, actual: &Snapshot, what: &str) {
    for table in catalog::tables() {
        let rows = |s: &Snapshot| -> Vec<(String, &'static str, Value)> {
            s.iter()
                .filter(|((t, _, _), _)| *t == table.name)
                .map(|((_, id, c), v)| (id.clone(), *c, v.clone()))
                .collect()
        };
        let (want, got) = (rows(expected), rows(actual));
        if want != got {
            let first = want
                .iter()
                .zip(&got)
                .find(|(a, b)| a != b)
                .map(|(a, b)| format!("expected {a:?}, got {b:?}"))
                .unwrap_or_else(|| format!("{} values expected, {} found", want.len(), got.len()));
            panic!("{what}: table {} differs: {first}", table.name);
        }
    }
    assert_eq!(expected.len(), actual.len(), "{what}");
}

/// Every table of the model and the view answer, with no rows.
async fn assert_empty_schema(db: &Db) {
    for (table, n) in counts(db).await {
        assert_eq!(n, 0, "{table} is empty");
    }
    for view in catalog::TABLES.iter().filter(|t| t.view) {
        assert_eq!(fixtures::count(db, view.name, None).await, 0, "{}", view.name);
    }
}

/// A URL naming the same database that contains `prod`: a symlink on SQLite, an
/// application name on PostgreSQL.
fn prod_like_url(test_db: &TestDb, dir: &TempDir) -> String {
    match &test_db.url {
        DatabaseUrl::Sqlite(path) => {
            let link = dir.join("prod-copy.db");
            std::os::unix::fs::symlink(path, &link).unwrap();
            link.to_string_lossy().into_owned()
        }
        DatabaseUrl::Postgres(url) => format!("{url}&application_name=prod_guard"),
    }
}

both_backends! {
    async fn reset_and_nuke_are_guarded_and_work(backend: Backend) {
        let (test_db, _) = populated(backend).await;
        let url = test_db.url.as_str().to_owned();
        let before = counts(&test_db.db).await;
        assert!(before.iter().all(|(_, n)| *n > 0), "every table has rows: {before:?}");
        let production = [("APP_ENV", "production"), ("IOFOLD_ENCRYPTION_KEY", KEY)];
        let node_production = [("NODE_ENV", "production"), ("IOFOLD_ENCRYPTION_KEY", KEY)];
        let dir = TempDir::new("guard");
        let prod_url = prod_like_url(&test_db, &dir);

        failed_with(&cmd(&url, &["reset"], &[]).await, &["--yes", "Nothing was touched"]);
        failed_with(&cmd(&url, &["nuke"], &[]).await, &["--yes", "Nothing was touched"]);
        failed_with(&cmd(&url, &["reset", "--yes"], &production).await, &["refused in production"]);
        failed_with(&cmd(&url, &["reset", "--yes"], &node_production).await, &["refused in production"]);
        failed_with(&cmd(&url, &["nuke", "--yes"], &production).await, &["refused in production"]);
        failed_with(&cmd(&url, &["nuke", "--yes"], &node_production).await, &["refused in production"]);
        failed_with(&cmd(&prod_url, &["nuke", "--yes"], &[]).await, &["contains `prod`", "Nothing was touched"]);
        failed_with(
            &cmd("postgres://app:secret@db.example.com/iofold", &["nuke", "--yes"], &[]).await,
            &["contains `.com`"],
        );
        failed_with(
            &cmd("postgres://app@x.abc.eu-west-1.rds.amazonaws.net/iofold", &["nuke", "--yes"], &[]).await,
            &["contains `rds.amazonaws`"],
        );
        assert_eq!(counts(&test_db.db).await, before, "the refusals touched nothing");

        let reset = cmd(&url, &["reset", "--yes"], &[]).await;
        succeeded(&reset);
        assert!(out(&reset).contains(&format!("deleted {} rows", total(&before))), "{}", out(&reset));
        assert_empty_schema(&test_db.db).await;
        let status = cmd(&url, &["migrate"], &[]).await;
        assert!(out(&status).contains("nothing to migrate"), "reset keeps the migrations: {}", out(&status));

        succeeded(&cmd(&url, &["seed"], &[]).await);
        assert!(count_rows(&test_db.db, "users").await.unwrap() > 0);
        let nuke = cmd(&url, &["nuke", "--yes"], &[]).await;
        succeeded(&nuke);
        assert!(
            count_rows(&test_db.db, "users").await.is_err(),
            "the tables are gone"
        );
        let status = cmd(&url, &["migrate", "--status"], &[]).await;
        assert!(out(&status).contains("pending  20261121000001"), "{}", out(&status));
        let migrate = cmd(&url, &["migrate"], &[]).await;
        succeeded(&migrate);
        assert!(out(&migrate).contains("applied  20261121000001"), "{}", out(&migrate));
        assert_empty_schema(&test_db.db).await;
        succeeded(&cmd(&url, &["health"], &[]).await);
        succeeded(&cmd(&url, &["seed"], &[]).await);
    }
}

both_backends! {
    async fn migrate_refuses_a_newer_schema(backend: Backend) {
        let test_db = TestDb::empty(backend).await;
        let url = test_db.url.as_str().to_owned();
        fixtures::execute(
            &test_db.db,
            "CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL, \
             run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)",
        )
        .await
        .unwrap();
        fixtures::execute(&test_db.db, "INSERT INTO __diesel_schema_migrations (version) VALUES ('29991231000000')")
            .await
            .unwrap();

        failed_with(&cmd(&url, &["migrate"], &[]).await, &["29991231000000", "newer"]);
        failed_with(&cmd(&url, &["migrate", "--status"], &[]).await, &["UNKNOWN  29991231000000"]);
        failed_with(&cmd(&url, &["health"], &[]).await, &["29991231000000", "newer"]);
        assert!(count_rows(&test_db.db, "users").await.is_err(), "no migration was applied");
        assert_eq!(fixtures::count(&test_db.db, "__diesel_schema_migrations", None).await, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_import_move_every_row_between_backends() {
    if !require_postgres("ops::export_and_import_move_every_row_between_backends").await {
        return;
    }
    let (source, awkward) = populated(Backend::Sqlite).await;
    let expected = snapshot(&source.db).await;
    let dir = TempDir::new("roundtrip");

    // SQLite → PostgreSQL (an empty database: import migrates it).
    let export = cmd(source.url.as_str(), &["export", &dir.str("from-sqlite")], &[]).await;
    succeeded(&export);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("from-sqlite/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["format"], "iofold-graph-export");
    assert_eq!(manifest["format_version"], 1);
    assert_eq!(manifest["source_backend"], "sqlite");
    assert_eq!(manifest["migrations"], serde_json::json!(["20261121000001", "20261206000001", "20261207000001"]));
    let tables = manifest["tables"].as_array().unwrap();
    assert_eq!(tables.len(), catalog::tables().count());
    for (entry, (name, n)) in tables.iter().zip(counts(&source.db).await) {
        assert_eq!(entry["name"], name);
        assert_eq!(entry["rows"], n, "{name}");
        assert_eq!(entry["sha256"].as_str().unwrap().len(), 64);
    }
    // The exact forms of the format.
    let traces = std::fs::read_to_string(dir.join("from-sqlite/traces.jsonl")).unwrap();
    let trace: Value = traces
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|row| row["id"] == awkward.trace.as_str())
        .unwrap();
    assert_eq!(trace["timestamp"], "2026-03-04T05:06:07.123456Z");
    assert_eq!(trace["has_errors"], true);
    assert_eq!(trace["total_tokens"], 9007199254740993i64);
    assert_eq!(trace["metadata"]["b"], serde_json::json!([1, 2.5, {"x": null}]));
    assert_eq!(trace["input_preview"], "it's \"quoted\"\nline 2 — ünïcødé 🎉");

    let pg = TestDb::empty(Backend::Postgres).await;
    let import = cmd(pg.url.as_str(), &["import", &dir.str("from-sqlite")], &[]).await;
    succeeded(&import);
    let on_pg = snapshot(&pg.db).await;
    assert_same(&expected, &on_pg, "SQLite → PostgreSQL");
    let key = |table: &'static str, id: &str, column: &'static str| (table, id.to_owned(), column);
    assert_eq!(on_pg[&key("evals", &awkward.eval, "accuracy")], Value::from(0.30000000000000004));
    assert_eq!(on_pg[&key("evals", &awkward.eval, "total_cost_usd")], Value::from(1.0f64 / 3.0));
    assert_eq!(
        on_pg[&key("agent_versions", &awkward.child_version, "parent_version_id")],
        Value::from(awkward.parent_version.clone())
    );

    // PostgreSQL → a fresh SQLite.
    succeeded(&cmd(pg.url.as_str(), &["export", &dir.str("from-postgres")], &[]).await);
    let sqlite = TestDb::empty(Backend::Sqlite).await;
    succeeded(&cmd(sqlite.url.as_str(), &["import", &dir.str("from-postgres")], &[]).await);
    assert_same(&expected, &snapshot(&sqlite.db).await, "PostgreSQL → SQLite");
    succeeded(&cmd(sqlite.url.as_str(), &["health"], &[]).await);
    succeeded(&cmd(pg.url.as_str(), &["health"], &[]).await);

    // Both exports hold the same bytes: the format does not depend on the backend.
    let pg_manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("from-postgres/manifest.json")).unwrap()).unwrap();
    assert_eq!(pg_manifest["source_backend"], "postgres");
    assert_eq!(pg_manifest["tables"], manifest["tables"], "same files, same checksums");
}

both_backends! {
    async fn import_verifies_before_writing_and_is_all_or_nothing(backend: Backend) {
        let (source, _) = populated(backend).await;
        let dir = TempDir::new("damaged");
        succeeded(&cmd(source.url.as_str(), &["export", &dir.str("good")], &[]).await);
        let target = TestDb::migrated(backend).await;
        let url = target.url.as_str().to_owned();
        let variant = |name: &str| {
            let path = dir.join(name);
            copy_dir(&dir.join("good"), &path);
            path
        };
        let manifest_of = |path: &Path| -> Value {
            serde_json::from_slice(&std::fs::read(path.join("manifest.json")).unwrap()).unwrap()
        };
        let write_manifest = |path: &Path, manifest: &Value| {
            std::fs::write(path.join("manifest.json"), serde_json::to_vec_pretty(manifest).unwrap()).unwrap();
        };
        let table_entry = |manifest: &Value, table: &str| -> usize {
            manifest["tables"].as_array().unwrap().iter().position(|t| t["name"] == table).unwrap()
        };

        // One flipped byte in one file.
        let flipped = variant("flipped");
        let mut bytes = std::fs::read(flipped.join("traces.jsonl")).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(flipped.join("traces.jsonl"), bytes).unwrap();
        failed_with(
            &cmd(&url, &["import", flipped.to_str().unwrap()], &[]).await,
            &["table traces", "checksum", "nothing was imported"],
        );

        // A row count that does not match.
        let miscounted = variant("miscounted");
        let mut manifest = manifest_of(&miscounted);
        let i = table_entry(&manifest, "feedback");
        let rows = manifest["tables"][i]["rows"].as_u64().unwrap();
        manifest["tables"][i]["rows"] = (rows + 1).into();
        write_manifest(&miscounted, &manifest);
        failed_with(
            &cmd(&url, &["import", miscounted.to_str().unwrap()], &[]).await,
            &["table feedback", "rows", "nothing was imported"],
        );

        // A format this binary does not read.
        let future = variant("future");
        let mut manifest = manifest_of(&future);
        manifest["format_version"] = 2.into();
        write_manifest(&future, &manifest);
        failed_with(&cmd(&url, &["import", future.to_str().unwrap()], &[]).await, &["format version 2"]);

        // A consistent export (checksums fixed) whose last table references a missing row:
        // it passes verification and fails inside the transaction, after the other tables
        // were inserted.
        let orphan = variant("orphan");
        let last = catalog::tables().last().unwrap();
        let (column, fk) = last.foreign_keys().find(|(c, _)| !c.nullable).unwrap();
        let text = std::fs::read_to_string(orphan.join(format!("{}.jsonl", last.name))).unwrap();
        let mut lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(!lines.is_empty(), "{} has rows", last.name);
        lines[0][column.name] = format!("{}_missing", fk.table).into();
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(orphan.join(format!("{}.jsonl", last.name)), &text).unwrap();
        let mut manifest = manifest_of(&orphan);
        let i = table_entry(&manifest, last.name);
        manifest["tables"][i]["sha256"] = sha256_hex(text.as_bytes()).into();
        write_manifest(&orphan, &manifest);
        failed_with(
            &cmd(&url, &["import", orphan.to_str().unwrap()], &[]).await,
            &[last.name, "nothing was imported"],
        );

        assert_empty_schema(&target.db).await;

        // The good export imports; a second import into the now full database is refused.
        succeeded(&cmd(&url, &["import", &dir.str("good")], &[]).await);
        assert_eq!(counts(&target.db).await, counts(&source.db).await);
        failed_with(&cmd(&url, &["import", &dir.str("good")], &[]).await, &["empty database", "users"]);
        assert_eq!(counts(&target.db).await, counts(&source.db).await);
        // Export refuses a non-empty directory.
        failed_with(&cmd(&url, &["export", &dir.str("good")], &[]).await, &["not empty"]);
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Writes with foreign keys off: a dedicated SQLite connection (`foreign_keys` is off
/// unless set), or a PostgreSQL session that skips the foreign-key triggers.
async fn without_foreign_keys(test_db: &TestDb, sql: &str) {
    match &test_db.url {
        DatabaseUrl::Sqlite(path) => {
            let (path, sql) = (path.clone(), sql.to_owned());
            tokio::task::spawn_blocking(move || {
                use diesel::connection::SimpleConnection;
                use diesel::Connection;
                let mut conn = diesel::SqliteConnection::establish(&path).unwrap();
                conn.batch_execute(&format!("PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = OFF; {sql}")).unwrap();
            })
            .await
            .unwrap();
        }
        DatabaseUrl::Postgres(url) => {
            let mut conn = AsyncPgConnection::establish(url).await.unwrap();
            conn.batch_execute(&format!("SET session_replication_role = replica; {sql}")).await.unwrap();
        }
    }
}

both_backends! {
    async fn health_passes_clean_databases_and_names_orphans(backend: Backend) {
        let (test_db, awkward) = populated(backend).await;
        let url = test_db.url.as_str().to_owned();

        let clean = cmd(&url, &["health"], &[]).await;
        succeeded(&clean);
        assert!(out(&clean).contains("healthy"), "{}", out(&clean));
        let json = cmd(&url, &["health", "--json"], &[]).await;
        succeeded(&json);
        let report: Value = serde_json::from_slice(&json.stdout).expect("one JSON document");
        assert_eq!(report["ok"], true);
        assert_eq!(report["backend"], backend.name());
        assert_eq!(report["problems"], serde_json::json!([]));
        assert_eq!(report["migrations"]["pending"], serde_json::json!([]));
        assert_eq!(report["tables"].as_array().unwrap().len(), catalog::tables().count());
        assert_eq!(report["tables"][0]["table"], "users");
        assert_eq!(report["tables"][0]["rows"], counts(&test_db.db).await[0].1);
        if backend == Backend::Sqlite {
            assert_eq!(report["journal_mode"], "wal");
            assert_eq!(report["integrity"], "ok");
        }
        let quick = iofold_graph::ops::health::quick(&test_db.db).await;
        assert_eq!(quick["status"], "ok", "{quick}");
        assert_eq!(quick["database"], "ok");
        assert_eq!(quick["backend"], backend.name());
        assert_eq!(quick["migrations"]["pending"], 0);

        without_foreign_keys(
            &test_db,
            &format!("UPDATE traces SET integration_id = 'integration_gone' WHERE id = {}", quote(&awkward.trace)),
        )
        .await;
        failed_with(&cmd(&url, &["health"], &[]).await, &["table traces", "integration_id", "integrations"]);
        let json = cmd(&url, &["health", "--json"], &[]).await;
        assert!(!json.status.success());
        let report: Value = serde_json::from_slice(&json.stdout).expect("one JSON document");
        assert_eq!(report["ok"], false);
        assert_eq!(report["foreign_keys"], "failed");
        assert_eq!(
            report["problems"],
            serde_json::json!([{
                "check": "foreign_keys",
                "table": "traces",
                "message": "1 row(s) whose integration_id names no row of integrations (orphaned foreign key)",
            }])
        );
    }
}

#[derive(QueryableByName)]
struct Number {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_the_table_of_a_damaged_sqlite_page() {
    let (test_db, _) = populated(Backend::Sqlite).await;
    let url = test_db.url.as_str().to_owned();
    let root: Vec<Number> = load(&test_db.db, "SELECT rootpage AS n FROM sqlite_master WHERE name = 'traces'").await;
    let page_size: Vec<Number> = load(&test_db.db, "SELECT page_size AS n FROM pragma_page_size").await;
    let pages: Vec<Number> = load(&test_db.db, "SELECT page_count AS n FROM pragma_page_count").await;
    let (root, page_size, pages) = (root[0].n, page_size[0].n, pages[0].n);
    assert!(root > 1 && root < pages, "the traces root page {root} is inside the file of {pages} pages");
    test_db.db.checkpoint().await.unwrap();
    test_db.db.close();

    // Garbage over the table's root page, in the middle of the closed file.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = std::fs::OpenOptions::new().write(true).open(test_db.url.as_str()).unwrap();
        file.seek(SeekFrom::Start(((root - 1) * page_size) as u64)).unwrap();
        file.write_all(&vec![0xA5; page_size as usize]).unwrap();
        file.sync_all().unwrap();
    }
    let damaged = cmd(&url, &["health"], &[]).await;
    failed_with(&damaged, &["table traces", "damaged"]);
    let json = cmd(&url, &["health", "--json"], &[]).await;
    let report: Value = serde_json::from_slice(&json.stdout).expect("one JSON document");
    assert_eq!(report["integrity"], "failed");
    assert!(
        report["problems"].as_array().unwrap().iter().any(|p| p["table"] == "traces" && p["check"] == "integrity"),
        "{report}"
    );
}

both_backends! {
    async fn backup_copies_a_live_sqlite_database(backend: Backend) {
        let (test_db, _) = populated(backend).await;
        let url = test_db.url.as_str().to_owned();
        let dir = TempDir::new("backup");
        let file = dir.str("copy.db");
        if backend == Backend::Postgres {
            failed_with(&cmd(&url, &["backup", &file], &[]).await, &["pg_dump"]);
            assert!(!dir.join("copy.db").exists());
            return;
        }
        let committed = counts(&test_db.db).await;

        // A writer holds an uncommitted transaction while the copy is taken.
        let path = url.clone();
        let writer = tokio::task::spawn_blocking(move || {
            use diesel::connection::SimpleConnection;
            let mut conn = iofold_graph::db::establish_sqlite_sync(&path).unwrap();
            conn.batch_execute(
                "BEGIN IMMEDIATE; INSERT INTO users (id, email) VALUES ('user_uncommitted', 'live@example.com');",
            )
            .unwrap();
            conn
        })
        .await
        .unwrap();
        let backup = cmd(&url, &["backup", &file], &[]).await;
        succeeded(&backup);
        assert!(out(&backup).contains("quick_check ok"), "{}", out(&backup));
        tokio::task::spawn_blocking(move || {
            use diesel::connection::SimpleConnection;
            let mut writer = writer;
            writer.batch_execute("ROLLBACK").unwrap();
        })
        .await
        .unwrap();

        let copy = Db::connect(&DatabaseUrl::Sqlite(file.clone()), &PoolOptions { max_size: 1 }).unwrap();
        assert_eq!(counts(&copy).await, committed, "the copy holds the committed rows");
        copy.close();

        failed_with(&cmd(&url, &["backup", &file], &[]).await, &["exists already"]);
        let missing_dir = dir.str("no/such/dir/copy.db");
        failed_with(&cmd(&url, &["backup", &missing_dir], &[]).await, &["does not exist"]);
        assert!(dir.path().join("copy.db").exists());
    }
}

/// A pause of 300–1,500 ms, different each time.
fn random_pause() -> std::time::Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    std::time::Duration::from_millis(300 + u64::from(nanos) % 1_200)
}

both_backends! {
    async fn acknowledged_writes_survive_sigkill(backend: Backend) {
        use crate::support::http::{Client, Server};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;

        let test_db = TestDb::migrated(backend).await;
        let fx = Fixtures::new(&test_db.db);
        let (workspace, owner) = fx.workspace_with_owner().await;
        let token = fx.token_for(&owner).await;
        let url = test_db.url.as_str().to_owned();
        let binary = Path::new(env!("CARGO_BIN_EXE_iofold-graph"));
        let authorization = format!("Bearer {token}");
        let create = "mutation($ws: ID!, $n: String!) { createAgent(input: {workspaceId: $ws, name: $n}) { agent { id } } }";
        let import = "mutation($ws: ID!, $t: [TraceImportInput!]!) { importTraces(workspaceId: $ws, source: LANGFUSE, traces: $t) { traces { id } } }";
        let (mut agents, mut traces) = (Vec::<String>::new(), Vec::<String>::new());

        for round in 0..3 {
            let server = Server::start(binary, &url, &[("RUST_LOG", "error")]).await;
            let stop = Arc::new(AtomicBool::new(false));
            // Four writers: two create agents one at a time, two import 20 traces at a time.
            let writers: Vec<_> = (0..4)
                .map(|writer| {
                    let (stop, authorization, workspace) = (stop.clone(), authorization.clone(), workspace.clone());
                    let addr = server.addr;
                    tokio::spawn(async move {
                        let mut client = Client::new(addr);
                        let mut acknowledged = Vec::new();
                        for n in 0.. {
                            let body = if writer < 2 {
                                json!({"query": create, "variables": {"ws": workspace, "n": format!("r{round} w{writer} n{n}")}})
                            } else {
                                let batch: Vec<Value> = (0..20)
                                    .map(|i| json!({"traceId": format!("r{round}-w{writer}-n{n}-{i}"), "timestamp": fixtures::timestamp(i), "steps": [{"input": "q", "output": "a"}]}))
                                    .collect();
                                json!({"query": import, "variables": {"ws": workspace, "t": batch}})
                            };
                            let headers = [("authorization", authorization.as_str())];
                            match client.post_json("/graphql", &headers, &body.to_string()).await {
                                Ok(reply) => {
                                    let reply = reply.json();
                                    assert!(reply.get("errors").is_none(), "writer {writer}: {reply}");
                                    if writer < 2 {
                                        acknowledged.push(reply["data"]["createAgent"]["agent"]["id"].as_str().unwrap().to_owned());
                                    } else {
                                        let ids = reply["data"]["importTraces"]["traces"].as_array().unwrap();
                                        assert_eq!(ids.len(), 20);
                                        acknowledged.extend(ids.iter().map(|t| t["id"].as_str().unwrap().to_owned()));
                                    }
                                }
                                // The server is gone: what was not acknowledged may or may not exist.
                                Err(_) if stop.load(Ordering::SeqCst) => break,
                                Err(error) => panic!("writer {writer}: the server failed before the kill: {error}"),
                            }
                        }
                        (writer, acknowledged)
                    })
                })
                .collect();
            tokio::time::sleep(random_pause()).await;
            stop.store(true, Ordering::SeqCst);
            server.kill().await;
            let mut acknowledged_this_round = 0;
            for writer in writers {
                let (writer, acknowledged) = writer.await.unwrap();
                acknowledged_this_round += acknowledged.len();
                if writer < 2 { agents.extend(acknowledged) } else { traces.extend(acknowledged) }
            }
            assert!(acknowledged_this_round > 0, "round {round}: the writers made progress before the kill");

            // Every acknowledged write is there (read through a fresh connection), and the
            // database is healthy; the next round restarts the server on it.
            let db = Db::connect(&test_db.url, &PoolOptions { max_size: 1 }).unwrap();
            for (table, ids) in [("agents", &agents), ("traces", &traces)] {
                for chunk in ids.chunks(500) {
                    let list = chunk.iter().map(|id| quote(id)).collect::<Vec<_>>().join(", ");
                    let found = fixtures::count(&db, table, Some(&format!("id IN ({list})"))).await;
                    assert_eq!(found, chunk.len() as i64, "round {round}: acknowledged {table} rows are missing after SIGKILL");
                }
            }
            db.close();
            let health = cmd(&url, &["health"], &[]).await;
            succeeded(&health);
            eprintln!("{backend:?} round {round}: {acknowledged_this_round} acknowledged writes survived SIGKILL ({} agents, {} traces in all)", agents.len(), traces.len());
        }
    }
}
