//! Schema drift, rollback, backups around migrations, the indexes of 2026-12-06 and
//! maintenance (planner statistics, size and index usage), on both backends, through the
//! binary and the router as an operator and a monitoring system would use them.

use std::path::PathBuf;
use std::time::Duration;

use diesel::sql_types::Text;
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use iofold_graph::db::{migrations, Backend, DatabaseUrl, Db, PoolOptions};
use iofold_graph::ops::maintain::{self, Trigger};
use serde_json::Value;

use crate::both_backends;
use crate::ops::KEY;
use crate::support::app::{test_config, TestApp};
use crate::support::cli::{cmd, failed_with, out, succeeded};
use crate::support::db::TestDb;
use crate::support::fixtures::{self, quote, Fixtures, Value as Cell};
use crate::support::ws::Live;

const BASE: &str = "20261121000001";
const INDEXES: &str = "20261206000001";
const RATINGS: &str = "20261207000001";

#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    v: String,
}

async fn texts(db: &Db, sql: &str) -> Vec<String> {
    fixtures::load::<Line>(db, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).into_iter().map(|l| l.v).collect()
}

/// Runs statements on a connection of its own, outside the pool: SQLite with foreign keys
/// off (a table rebuild), PostgreSQL as is.
async fn by_hand(url: &DatabaseUrl, sql: &str) {
    match url {
        DatabaseUrl::Sqlite(path) => {
            let (path, sql) = (path.clone(), sql.to_owned());
            tokio::task::spawn_blocking(move || {
                use diesel::connection::SimpleConnection;
                use diesel::Connection;
                let mut conn = diesel::SqliteConnection::establish(&path).unwrap();
                conn.batch_execute(&format!("PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = OFF; {sql}"))
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            })
            .await
            .unwrap();
        }
        DatabaseUrl::Postgres(url) => {
            let mut conn = AsyncPgConnection::establish(url).await.unwrap();
            conn.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
}

/// The indexes of a table, by name.
async fn indexes(db: &Db, table: &str) -> Vec<String> {
    let sql = match db.backend() {
        Backend::Sqlite => {
            format!("SELECT name AS v FROM sqlite_master WHERE type = 'index' AND tbl_name = {}", quote(table))
        }
        Backend::Postgres => format!(
            "SELECT indexname::text AS v FROM pg_indexes WHERE schemaname = current_schema() AND tablename = {}",
            quote(table)
        ),
    };
    texts(db, &sql).await
}

/// The columns of a table.
async fn columns(db: &Db, table: &str) -> Vec<String> {
    let sql = match db.backend() {
        Backend::Sqlite => format!("SELECT name AS v FROM pragma_table_info({})", quote(table)),
        Backend::Postgres => format!(
            "SELECT column_name::text AS v FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = {}",
            quote(table)
        ),
    };
    texts(db, &sql).await
}

/// The backup files `migrate` reported (`backup: FILE (…)`), removed when dropped.
struct Backups(Vec<PathBuf>);

impl Backups {
    fn from(output: &str) -> Backups {
        Backups(
            output
                .lines()
                .filter_map(|l| l.strip_prefix("backup: "))
                .filter_map(|l| l.split(" (").next())
                .map(PathBuf::from)
                .collect(),
        )
    }
}

impl Drop for Backups {
    fn drop(&mut self) {
        for file in &self.0 {
            let _ = std::fs::remove_file(file);
        }
    }
}

both_backends! {
    /// After an index, a column and a constraint are dropped by hand (and a table rebuild
    /// was interrupted, and the view replaced), `health` and `migrate --status` name every
    /// difference and exit non-zero; the server's `/health` reports the drift.
    async fn health_names_every_schema_drift(backend: Backend) {
        let test_db = TestDb::migrated(backend).await;
        let url = test_db.url.as_str().to_owned();
        let fx = Fixtures::new(&test_db.db);
        let workspace = fx.workspace().await;
        fx.insert("traces", &workspace, &[]).await;

        let clean = cmd(&url, &["health"], &[]).await;
        succeeded(&clean);
        assert!(out(&clean).contains("schema        ok (matches its 3 applied migration(s))"), "{}", out(&clean));
        let status = cmd(&url, &["migrate", "--status"], &[]).await;
        succeeded(&status);
        assert!(out(&status).contains("schema   matches the 3 applied migration(s)"), "{}", out(&status));

        let drop_check = match backend {
            Backend::Postgres => "ALTER TABLE workspace_members DROP CONSTRAINT workspace_members_role_check;".to_owned(),
            Backend::Sqlite => {
                // SQLite drops a constraint by rebuilding its table.
                let sql = texts(&test_db.db, "SELECT sql AS v FROM sqlite_master WHERE name = 'workspace_members'").await;
                let without = sql[0]
                    .replacen("CREATE TABLE workspace_members", "CREATE TABLE __rebuilt", 1)
                    .replace(" CONSTRAINT workspace_members_role_check CHECK (role IN ('owner', 'admin', 'member', 'viewer'))", "");
                assert!(!without.contains("role_check"), "{without}");
                format!(
                    "{without}; INSERT INTO __rebuilt SELECT * FROM workspace_members; DROP TABLE workspace_members; \
                     ALTER TABLE __rebuilt RENAME TO workspace_members; \
                     CREATE INDEX idx_workspace_members_user_id ON workspace_members (user_id);"
                )
            }
        };
        by_hand(
            &test_db.url,
            &format!(
                "DROP INDEX idx_traces_list; DROP INDEX idx_jobs_pending; ALTER TABLE traces DROP COLUMN raw_data; \
                 {drop_check} CREATE TABLE __new_feedback (id TEXT); \
                 DROP VIEW eval_comparison; CREATE VIEW eval_comparison AS SELECT e.id AS id, e.eval_id AS eval_id FROM eval_executions e;"
            ),
        )
        .await;

        let expected = [
            "missing index idx_traces_list on traces",
            "missing index idx_jobs_pending on jobs",
            "missing column traces.raw_data",
            "missing check workspace_members_role_check on workspace_members",
            "extra table __new_feedback (left over from an interrupted migration",
            "changed view eval_comparison",
            "missing column eval_comparison.is_contradiction",
        ];
        let health = cmd(&url, &["health"], &[]).await;
        failed_with(&health, &expected);
        assert!(out(&health).contains("schema        drift ("), "{}", out(&health));
        let status = cmd(&url, &["migrate", "--status"], &[]).await;
        failed_with(&status, &expected);
        failed_with(&status, &["the schema differs from what its migrations define"]);

        let json = cmd(&url, &["health", "--json"], &[]).await;
        assert!(!json.status.success());
        let report: Value = serde_json::from_slice(&json.stdout).expect("one JSON document");
        assert_eq!(report["ok"], false);
        assert_eq!(report["schema"]["status"], "drift");
        assert_eq!(report["schema"]["migrations"], serde_json::json!([BASE, INDEXES, RATINGS]));
        let differences = report["schema"]["differences"].as_array().unwrap();
        let has = |change: &str, kind: &str, table: &str, name: &str| {
            differences.iter().any(|d| d["change"] == change && d["kind"] == kind && d["table"] == table && d["name"] == name)
        };
        assert!(has("missing", "index", "traces", "idx_traces_list"), "{differences:#?}");
        assert!(has("missing", "index", "jobs", "idx_jobs_pending"), "{differences:#?}");
        assert!(has("missing", "column", "traces", "raw_data"), "{differences:#?}");
        assert!(has("missing", "check", "workspace_members", "workspace_members_role_check"), "{differences:#?}");
        assert!(has("extra", "table", "__new_feedback", "__new_feedback"), "{differences:#?}");
        assert!(has("changed", "view", "eval_comparison", "eval_comparison"), "{differences:#?}");
        let drift_problems = report["problems"].as_array().unwrap().iter().filter(|p| p["check"] == "drift").count();
        assert_eq!(drift_problems, differences.len(), "one problem per difference");
        // Nothing else differs: the rebuilt table, its index and the other columns match.
        assert!(
            !differences.iter().any(|d| d["table"] == "workspace_members" && d["kind"] != "check"),
            "{differences:#?}"
        );
        assert!(!differences.iter().any(|d| d["kind"] == "table" && d["change"] == "missing"), "{differences:#?}");

        // The server checks at start; /health (which never runs the check itself) reports it.
        let live = Live::start(iofold_graph::server::AppState::new(test_db.db.clone(), test_config(&url))).await;
        let mut client = crate::support::http::Client::new(live.address());
        let mut health = Value::Null;
        for _ in 0..200 {
            health = client.get("/health", &[]).await.unwrap().json();
            if health["schema"]["status"] != "pending" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(health["schema"]["status"], "drift", "{health}");
        assert_eq!(health["schema"]["differences"], differences.len(), "{health}");
        assert_eq!(health["status"], "degraded", "{health}");
        assert_eq!(health["database"], "ok", "{health}");

        // A scratch schema of PostgreSQL's check is never left behind.
        if backend == Backend::Postgres {
            let left = texts(&test_db.db, "SELECT nspname::text AS v FROM pg_namespace WHERE nspname LIKE 'iofold\\_drift\\_%'").await;
            assert_eq!(left, Vec::<String>::new());
        }
    }
}

both_backends! {
    /// `migrate --revert [N]` runs the down.sql of the last N migrations; the data stays
    /// where the down allows; `migrate` goes up again. Refused in production without
    /// `--allow-production`, and beyond the applied migrations.
    async fn migrate_revert_goes_down_and_up_again(backend: Backend) {
        let test_db = TestDb::empty(backend).await;
        let url = test_db.url.as_str().to_owned();
        let up = cmd(&url, &["migrate"], &[]).await;
        succeeded(&up);
        assert!(out(&up).contains(&format!("applied  {BASE}")) && out(&up).contains(&format!("applied  {RATINGS}")), "{}", out(&up));
        assert!(!out(&up).contains("backup:") && !out(&up).contains("pg_dump"), "a new database needs no backup: {}", out(&up));
        let fx = Fixtures::new(&test_db.db);
        let workspace = fx.workspace().await;
        let traces = fx.insert_many("traces", &workspace, &vec![Vec::new(); 20]).await;
        let ratings: Vec<Vec<(&str, Cell)>> = traces.iter().take(7).map(|t| vec![("trace_id", Cell::from(t))]).collect();
        fx.insert_many("feedback", &workspace, &ratings).await;
        assert!(indexes(&test_db.db, "eval_executions").await.contains(&"idx_eval_executions_eval_summary".to_owned()));

        let production = [("APP_ENV", "production"), ("IOFOLD_ENCRYPTION_KEY", KEY)];
        failed_with(&cmd(&url, &["migrate", "--revert"], &production).await, &["refused in production", "--allow-production", "Nothing was touched"]);
        failed_with(&cmd(&url, &["migrate", "--revert", "4"], &[]).await, &["only 3 migration(s) are applied", "Nothing was reverted"]);
        failed_with(&cmd(&url, &["migrate", "--revert", "0"], &[]).await, &["0"]);
        assert!(indexes(&test_db.db, "eval_executions").await.contains(&"idx_eval_executions_eval_summary".to_owned()), "the refusals touched nothing");

        let down = cmd(&url, &["migrate", "--revert", "2"], &[]).await;
        succeeded(&down);
        let _backups = Backups::from(&out(&down));
        assert!(out(&down).contains(&format!("reverted {RATINGS}")) && out(&down).contains(&format!("reverted {INDEXES}")), "{}", out(&down));
        assert!(!out(&down).contains(&format!("reverted {BASE}")), "{}", out(&down));
        assert!(!indexes(&test_db.db, "eval_executions").await.contains(&"idx_eval_executions_eval_summary".to_owned()));
        assert!(indexes(&test_db.db, "traces").await.contains(&"idx_traces_list".to_owned()), "the old trace-list index is back");
        assert_eq!(fixtures::count(&test_db.db, "traces", None).await, traces.len() as i64, "the data stays");
        assert_eq!(fixtures::count(&test_db.db, "feedback", None).await, 7, "the ratings stay");
        assert!(!columns(&test_db.db, "feedback").await.contains(&"workspace_id".to_owned()));
        let status = cmd(&url, &["migrate", "--status"], &[]).await;
        succeeded(&status);
        assert!(out(&status).contains(&format!("applied  {BASE}")) && out(&status).contains(&format!("pending  {INDEXES}")), "{}", out(&status));
        assert!(out(&status).contains(&format!("pending  {RATINGS}")), "{}", out(&status));
        assert!(out(&status).contains("schema   matches the 1 applied migration(s)"), "{}", out(&status));

        let again = cmd(&url, &["migrate", "--no-backup"], &[]).await;
        succeeded(&again);
        assert!(out(&again).contains(&format!("applied  {INDEXES}")) && out(&again).contains(&format!("applied  {RATINGS}")), "{}", out(&again));
        assert!(indexes(&test_db.db, "eval_executions").await.contains(&"idx_eval_executions_eval_summary".to_owned()));
        assert_eq!(fixtures::count(&test_db.db, "traces", None).await, traces.len() as i64);
        // Each rating is given its trace's workspace on the way up.
        let in_workspace = format!("workspace_id = {}", fixtures::quote(&workspace));
        assert_eq!(fixtures::count(&test_db.db, "feedback", Some(&in_workspace)).await, 7);
        succeeded(&cmd(&url, &["health"], &[]).await);

        // In production, with the explicit flag.
        let forced = cmd(&url, &["migrate", "--revert", "--allow-production", "--no-backup"], &production).await;
        succeeded(&forced);
        assert!(out(&forced).contains(&format!("reverted {RATINGS}")), "{}", out(&forced));
        succeeded(&cmd(&url, &["migrate", "--no-backup"], &[]).await);

        // Every migration down: the base's down drops the model; up again from nothing.
        let all = cmd(&url, &["migrate", "--revert", "3", "--no-backup"], &[]).await;
        succeeded(&all);
        assert!(out(&all).contains(&format!("reverted {INDEXES}")) && out(&all).contains(&format!("reverted {BASE}")), "{}", out(&all));
        assert!(iofold_graph::db::count_rows(&test_db.db, "traces").await.is_err(), "the tables are gone");
        let status = cmd(&url, &["migrate", "--status"], &[]).await;
        succeeded(&status);
        assert!(out(&status).contains(&format!("pending  {BASE}")), "{}", out(&status));
        succeeded(&cmd(&url, &["migrate"], &[]).await);
        assert_eq!(fixtures::count(&test_db.db, "traces", None).await, 0);
        succeeded(&cmd(&url, &["health"], &[]).await);
    }
}

both_backends! {
    /// `migrate` takes a verified copy of a SQLite database before applying anything (when
    /// something is pending and the database is not new), and says where it is; on
    /// PostgreSQL it prints the pg_dump command first. `--no-backup` opts out.
    async fn migrate_backs_up_before_applying(backend: Backend) {
        let test_db = TestDb::empty(backend).await;
        let url = test_db.url.as_str().to_owned();
        succeeded(&cmd(&url, &["migrate"], &[]).await);
        succeeded(&cmd(&url, &["seed"], &[]).await);
        succeeded(&cmd(&url, &["migrate", "--revert", "--no-backup"], &[]).await);
        let users = fixtures::count(&test_db.db, "users", None).await;
        let traces = fixtures::count(&test_db.db, "traces", None).await;
        assert!(users > 0 && traces > 0);

        let migrate = cmd(&url, &["migrate"], &[]).await;
        succeeded(&migrate);
        let text = out(&migrate);
        let backups = Backups::from(&text);
        let applied_at = text.find(&format!("applied  {RATINGS}")).expect("applied");
        match backend {
            Backend::Sqlite => {
                assert_eq!(backups.0.len(), 1, "{text}");
                let file = &backups.0[0];
                assert!(text.find("backup: ").unwrap() < applied_at, "the backup comes first: {text}");
                assert!(text.contains("integrity_check ok; 2 applied migration(s) recorded"), "{text}");
                assert!(file.exists() && file.to_string_lossy().starts_with(&url), "{file:?} next to {url}");
                // The copy is the database before the migration: same rows, one migration.
                let copy = Db::connect(&DatabaseUrl::Sqlite(file.to_string_lossy().into_owned()), &PoolOptions { max_size: 1 }).unwrap();
                assert_eq!(fixtures::count(&copy, "users", None).await, users);
                assert_eq!(fixtures::count(&copy, "traces", None).await, traces);
                assert_eq!(texts(&copy, "SELECT CAST(version AS TEXT) AS v FROM __diesel_schema_migrations").await, vec![BASE.to_owned(), INDEXES.to_owned()]);
                assert!(!columns(&copy, "feedback").await.contains(&"workspace_id".to_owned()));
                assert_eq!(texts(&copy, "SELECT integrity_check AS v FROM pragma_integrity_check").await, vec!["ok".to_owned()]);
                copy.close();
            }
            Backend::Postgres => {
                assert!(backups.0.is_empty(), "{text}");
                let hint = text.find("pg_dump --format=custom --file=iofold-before-").expect("the pg_dump command");
                assert!(hint < applied_at, "the hint comes first: {text}");
                assert!(text.contains("\"$DATABASE_URL\""), "{text}");
            }
        }
        assert_eq!(fixtures::count(&test_db.db, "users", None).await, users);

        // Opting out.
        succeeded(&cmd(&url, &["migrate", "--revert", "--no-backup"], &[]).await);
        let unbacked = cmd(&url, &["migrate", "--no-backup"], &[]).await;
        succeeded(&unbacked);
        assert!(Backups::from(&out(&unbacked)).0.is_empty(), "{}", out(&unbacked));
        assert!(!out(&unbacked).contains("pg_dump"), "{}", out(&unbacked));
        if backend == Backend::Sqlite {
            assert!(out(&unbacked).contains("--no-backup: no copy of the database was taken"), "{}", out(&unbacked));
        }
        // Nothing pending: nothing to back up.
        let nothing = cmd(&url, &["migrate"], &[]).await;
        assert!(out(&nothing).contains("nothing to migrate") && !out(&nothing).contains("backup") && !out(&nothing).contains("pg_dump"), "{}", out(&nothing));
    }
}

/// The plan of a statement: SQLite's EXPLAIN QUERY PLAN details, PostgreSQL's EXPLAIN text.
async fn plan(db: &Db, query: &str) -> String {
    #[derive(QueryableByName)]
    struct Detail {
        #[diesel(sql_type = Text)]
        detail: String,
    }
    #[derive(QueryableByName)]
    struct PgLine {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        line: String,
    }
    match db.backend() {
        Backend::Sqlite => fixtures::load::<Detail>(db, &format!("EXPLAIN QUERY PLAN {query}"))
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.detail)
            .collect::<Vec<_>>()
            .join("\n"),
        Backend::Postgres => fixtures::load::<PgLine>(db, &format!("EXPLAIN {query}"))
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.line)
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

both_backends! {
    /// The per-eval summary reads `idx_eval_executions_eval_summary` (before the migration:
    /// another index and, on SQLite, a temporary B-tree for the grouping), and the trace
    /// list reads `idx_traces_list`, on SQLite now as a covering index.
    async fn summary_and_trace_list_plans_use_the_new_indexes(backend: Backend) {
        let test_db = TestDb::migrated(backend).await;
        let db = &test_db.db;
        let fx = Fixtures::new(db);
        let workspace = fx.workspace().await;
        let traces = fx.insert_many("traces", &workspace, &vec![Vec::new(); 200]).await;
        for w in 0..3 {
            let ws = fx.workspace().await;
            fx.insert_many("traces", &ws, &vec![Vec::new(); 300 + w]).await;
        }
        let agent = fx.insert("agents", &workspace, &[]).await;
        let mut evals = Vec::new();
        for version in 1..=8i64 {
            let eval = fx.insert("evals", &workspace, &[("agent_id", Cell::from(&agent)), ("version", Cell::Int(version))]).await;
            let rows: Vec<Vec<(&str, Cell)>> = (0..200)
                .map(|i| {
                    vec![
                        ("eval_id", Cell::from(&eval)),
                        ("trace_id", Cell::from(&traces[i])),
                        ("predicted_result", Cell::Bool(i % 3 == 0)),
                        ("execution_time_ms", Cell::Int(i as i64 * 7 % 500)),
                    ]
                })
                .collect();
            fx.insert_many("eval_executions", &workspace, &rows).await;
            evals.push(eval);
        }
        let analyze = match backend {
            Backend::Sqlite => "ANALYZE",
            Backend::Postgres => "VACUUM ANALYZE eval_executions, traces",
        };
        fixtures::execute(db, analyze).await.unwrap();

        let summary = format!(
            "SELECT predicted_result, COUNT(*) AS n, AVG(execution_time_ms) AS avg_ms FROM eval_executions \
             WHERE eval_id = {} GROUP BY predicted_result",
            quote(&evals[3])
        );
        let list = format!(
            "SELECT id, trace_id, source, timestamp, step_count, has_errors, assignment_status, input_preview, \
             output_preview FROM traces WHERE workspace_id = {} ORDER BY timestamp DESC, id DESC LIMIT 50",
            quote(&workspace)
        );
        let summary_plan = plan(db, &summary).await;
        let list_plan = plan(db, &list).await;
        match backend {
            Backend::Sqlite => {
                assert!(summary_plan.contains("USING COVERING INDEX idx_eval_executions_eval_summary"), "{summary_plan}");
                assert!(!summary_plan.contains("TEMP B-TREE"), "{summary_plan}");
                assert!(list_plan.contains("USING COVERING INDEX idx_traces_list"), "{list_plan}");
            }
            Backend::Postgres => {
                // An index scan, index-only scan or bitmap scan of it, as the costs decide.
                assert!(summary_plan.contains("on idx_eval_executions_eval_summary") || summary_plan.contains("using idx_eval_executions_eval_summary"), "{summary_plan}");
                assert!(list_plan.contains("idx_traces_list"), "{list_plan}");
            }
        }
        // The answers are those of the data.
        #[derive(QueryableByName)]
        struct Group {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let groups = fixtures::load::<Group>(db, &summary).await.unwrap();
        assert_eq!(groups.iter().map(|g| g.n).collect::<Vec<_>>().iter().sum::<i64>(), 200);
        assert_eq!(groups.len(), 2);

        // Before the migration (down.sql), the summary had no index of its own.
        let reverted = migrations::revert(&test_db.url, 2, migrations::BackupPolicy::Skip, |_| {}).await.unwrap();
        assert_eq!(reverted, vec![RATINGS.to_owned(), INDEXES.to_owned()]);
        fixtures::execute(db, analyze).await.unwrap();
        let before = plan(db, &summary).await;
        assert!(!before.contains("idx_eval_executions_eval_summary"), "{before}");
        if backend == Backend::Sqlite {
            assert!(before.contains("USE TEMP B-TREE FOR GROUP BY"), "{before}");
            let list_before = plan(db, &list).await;
            assert!(!list_before.contains("COVERING INDEX"), "{list_before}");
        }
    }
}

both_backends! {
    /// `maintain` refreshes the planner statistics; a scheduled run on PostgreSQL is skipped
    /// right after one (whoever ran it) and while another instance runs one.
    async fn maintain_refreshes_planner_statistics(backend: Backend) {
        let test_db = TestDb::migrated(backend).await;
        let url = test_db.url.as_str().to_owned();
        let fx = Fixtures::new(&test_db.db);
        let workspace = fx.workspace().await;
        fx.insert_many("traces", &workspace, &vec![Vec::new(); 300]).await;

        let maintain = cmd(&url, &["maintain"], &[]).await;
        succeeded(&maintain);
        match backend {
            Backend::Sqlite => {
                assert!(out(&maintain).contains("PRAGMA optimize"), "{}", out(&maintain));
                assert!(out(&maintain).contains("new statistics for") && out(&maintain).contains("traces"), "{}", out(&maintain));
                let stats = texts(&test_db.db, "SELECT DISTINCT tbl AS v FROM sqlite_stat1").await;
                assert!(stats.contains(&"traces".to_owned()), "{stats:?}");
            }
            Backend::Postgres => {
                assert!(out(&maintain).contains("ANALYZE (") && out(&maintain).contains("traces"), "{}", out(&maintain));
                let analyzed = texts(
                    &test_db.db,
                    "SELECT relname::text AS v FROM pg_stat_user_tables WHERE schemaname = current_schema() AND last_analyze IS NOT NULL",
                )
                .await;
                assert!(analyzed.contains(&"traces".to_owned()) && analyzed.contains(&"users".to_owned()), "{analyzed:?}");
                let other_schemas = texts(
                    &test_db.db,
                    "SELECT COUNT(*)::text AS v FROM pg_stat_user_tables WHERE schemaname <> current_schema() \
                     AND last_analyze > now() - interval '1 second' AND relname = 'iofold_never'",
                )
                .await;
                assert_eq!(other_schemas, vec!["0".to_owned()]);
            }
        }
        let json = cmd(&url, &["analyze", "--json"], &[]).await;
        succeeded(&json);
        let outcome: Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(outcome["status"], "done");
        assert_eq!(outcome["backend"], backend.name());

        let hourly = Trigger::Scheduled(Duration::from_secs(3600));
        let scheduled = maintain::run(&test_db.db, hourly).await.unwrap();
        match backend {
            Backend::Sqlite => assert_eq!(scheduled.status, "done"),
            Backend::Postgres => {
                assert_eq!(scheduled.status, "skipped", "{scheduled:?}");
                assert!(scheduled.reason.as_deref().unwrap().contains("s ago"), "{scheduled:?}");
                // Another instance holds the lock: skipped, whatever the last run.
                let DatabaseUrl::Postgres(pg) = &test_db.url else { unreachable!() };
                let mut other = AsyncPgConnection::establish(pg).await.unwrap();
                other.batch_execute("BEGIN; SELECT pg_advisory_xact_lock(hashtext('iofold-maintenance:' || current_schema()))").await.unwrap();
                let busy = maintain::run(&test_db.db, Trigger::Scheduled(Duration::from_secs(1))).await.unwrap();
                assert_eq!(busy.status, "skipped", "{busy:?}");
                assert!(busy.reason.as_deref().unwrap().contains("another server instance"), "{busy:?}");
                other.batch_execute("ROLLBACK").await.unwrap();
                tokio::time::sleep(Duration::from_millis(1100)).await;
                let due = maintain::run(&test_db.db, Trigger::Scheduled(Duration::from_secs(1))).await.unwrap();
                assert_eq!(due.status, "done", "{due:?}");
            }
        }
    }
}

both_backends! {
    /// The server runs the maintenance on its schedule (`MAINTENANCE_INTERVAL_SECS`) and
    /// counts it in `/metrics`, with the database's size and, on PostgreSQL, index scans.
    async fn server_schedules_maintenance_and_reports_database_figures(backend: Backend) {
        let app = TestApp::new(backend).await;
        let fx = Fixtures::new(&app.state.db);
        let workspace = fx.workspace().await;
        fx.insert_many("traces", &workspace, &vec![Vec::new(); 50]).await;
        let mut config = test_config(app.test_db.url.as_str());
        config.maintenance_interval = Some(Duration::from_secs(1));
        let state = iofold_graph::server::AppState::new(app.state.db.clone(), config);
        let live = Live::start(state).await;
        let mut client = crate::support::http::Client::new(live.address());
        let mut metrics = String::new();
        for _ in 0..100 {
            metrics = client.get("/metrics", &[]).await.unwrap().body;
            if sample(&metrics, "iofold_maintenance_runs_total{outcome=\"done\"}").unwrap_or(0.0) >= 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(sample(&metrics, "iofold_maintenance_runs_total{outcome=\"done\"}").unwrap_or(0.0) >= 1.0, "{metrics}");
        assert_eq!(sample(&metrics, "iofold_maintenance_runs_total{outcome=\"failed\"}"), Some(0.0), "{metrics}");
        assert!(sample(&metrics, "iofold_db_size_bytes").unwrap() > 0.0, "{metrics}");
        match backend {
            Backend::Sqlite => {
                assert!(sample(&metrics, "iofold_db_wal_bytes").is_some(), "{metrics}");
                assert!(!metrics.contains("iofold_db_index_scans_total{"), "SQLite counts no index use");
                let stats = texts(&app.state.db, "SELECT DISTINCT tbl AS v FROM sqlite_stat1").await;
                assert!(stats.contains(&"traces".to_owned()), "the scheduled run analyzed: {stats:?}");
            }
            Backend::Postgres => {
                assert!(sample(&metrics, "iofold_db_index_scans_total{table=\"traces\",index=\"idx_traces_list\"}").is_some(), "{metrics}");
                assert!(sample(&metrics, "iofold_db_index_size_bytes{table=\"traces\",index=\"idx_traces_list\"}").unwrap() > 0.0, "{metrics}");
            }
        }
    }
}

/// A sample's value in a Prometheus exposition.
fn sample(metrics: &str, key: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(key).and_then(|rest| rest.trim().parse().ok()))
}

both_backends! {
    /// `health --json` gives the size and the indexes: on PostgreSQL each index's scans
    /// (moving when a query uses it), on SQLite each index's size.
    async fn health_reports_size_and_index_usage(backend: Backend) {
        let test_db = TestDb::migrated(backend).await;
        let url = test_db.url.as_str().to_owned();
        let fx = Fixtures::new(&test_db.db);
        let workspace = fx.workspace().await;
        fx.insert_many("traces", &workspace, &vec![Vec::new(); 100]).await;
        let report = |output: std::process::Output| -> Value {
            succeeded(&output);
            serde_json::from_slice(&output.stdout).unwrap()
        };
        let index = |report: &Value, name: &str| -> Value {
            report["database"]["indexes"].as_array().unwrap().iter().find(|i| i["index"] == name).cloned().unwrap_or_else(|| panic!("{name} in {report}"))
        };
        let before = report(cmd(&url, &["health", "--json"], &[]).await);
        assert!(before["database"]["size_bytes"].as_i64().unwrap() > 0, "{before}");
        let list = index(&before, "idx_traces_list");
        assert_eq!(list["table"], "traces");
        assert!(list["size_bytes"].as_i64().unwrap() > 0, "{list}");
        match backend {
            Backend::Sqlite => {
                assert_eq!(before["database"]["index_scans_counted"], false);
                assert_eq!(list["scans"], Value::Null);
                assert!(before["database"]["free_bytes"].as_i64().is_some());
            }
            Backend::Postgres => {
                assert_eq!(before["database"]["index_scans_counted"], true);
                let scans = list["scans"].as_i64().unwrap();
                let DatabaseUrl::Postgres(pg) = &test_db.url else { unreachable!() };
                let mut conn = AsyncPgConnection::establish(pg).await.unwrap();
                conn.batch_execute(&format!(
                    "SET enable_seqscan = off; SET enable_bitmapscan = off; \
                     SELECT id FROM traces WHERE workspace_id = {} ORDER BY timestamp DESC, id DESC LIMIT 5; \
                     SELECT pg_stat_force_next_flush();",
                    quote(&workspace)
                ))
                .await
                .unwrap();
                drop(conn);
                let mut after = scans;
                for _ in 0..50 {
                    let now = report(cmd(&url, &["health", "--json"], &[]).await);
                    after = index(&now, "idx_traces_list")["scans"].as_i64().unwrap();
                    if after > scans {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                assert!(after > scans, "idx_traces_list scans {scans} → {after}");
            }
        }
        let text = cmd(&url, &["health"], &[]).await;
        assert!(out(&text).contains("size          "), "{}", out(&text));
    }
}
