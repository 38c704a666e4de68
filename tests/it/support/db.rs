//! A fresh, migrated database per test, on either backend.
//!
//! SQLite: a new file in the temp directory, removed afterwards. PostgreSQL: a new schema in
//! the database named by `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`),
//! selected through the connection's `search_path`, dropped afterwards. When PostgreSQL is
//! unreachable its tests say they were skipped, unless `CI` is set: then they fail.

use std::sync::OnceLock;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use iofold_graph::db::{self, Backend, DatabaseUrl, Db, PoolOptions};

/// The PostgreSQL database the tests create their schemas in.
pub fn pg_base_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Whether PostgreSQL answers; asked once per test binary.
pub async fn pg_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    if let Some(available) = AVAILABLE.get() {
        return *available;
    }
    let url = pg_base_url();
    let ok =
        matches!(tokio::time::timeout(Duration::from_secs(5), AsyncPgConnection::establish(&url)).await, Ok(Ok(_)));
    *AVAILABLE.get_or_init(|| ok)
}

/// Decides whether a PostgreSQL test runs: true when PostgreSQL answers; false (the test
/// says it was skipped) when it does not and `CI` is unset; a failure when `CI` is set.
pub async fn require_postgres(test: &str) -> bool {
    if pg_available().await {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: PostgreSQL is unreachable at {} and CI is set: the PostgreSQL tests must run", pg_base_url());
    }
    eprintln!("{test}: skipped: PostgreSQL is unreachable at {}", pg_base_url());
    false
}

/// A fresh database with every migration applied.
pub struct TestDb {
    /// The URL the application uses.
    pub url: DatabaseUrl,
    /// A pool on it.
    pub db: Db,
    cleanup: Cleanup,
}

enum Cleanup {
    SqliteFile(std::path::PathBuf),
    PgSchema(String),
}

impl TestDb {
    /// An empty database, not migrated.
    pub async fn empty(backend: Backend) -> TestDb {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (url, cleanup) = match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("iofold-test-{id}.db"));
                (DatabaseUrl::Sqlite(path.to_string_lossy().into_owned()), Cleanup::SqliteFile(path))
            }
            Backend::Postgres => {
                let schema = format!("t_{id}");
                let mut admin = AsyncPgConnection::establish(&pg_base_url()).await.expect("connect to PostgreSQL");
                admin.batch_execute(&format!("CREATE SCHEMA {schema}")).await.expect("create schema");
                let base = pg_base_url();
                let sep = if base.contains('?') { '&' } else { '?' };
                (
                    DatabaseUrl::Postgres(format!("{base}{sep}options=-csearch_path%3D{schema}")),
                    Cleanup::PgSchema(schema),
                )
            }
        };
        let db = Db::connect(&url, &PoolOptions { max_size: 8 }).expect("pool");
        TestDb { url, db, cleanup }
    }

    /// A database with every migration applied.
    pub async fn migrated(backend: Backend) -> TestDb {
        let test_db = Self::empty(backend).await;
        db::migrations::run_pending(&test_db.url).await.expect("migrations apply");
        test_db
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.url.backend()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.db.close();
        match &self.cleanup {
            Cleanup::SqliteFile(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            Cleanup::PgSchema(schema) => {
                let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                // Drop runs inside the test's runtime: do the async cleanup on a thread of its own.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(async {
                        if let Ok(mut admin) = AsyncPgConnection::establish(&pg_base_url()).await {
                            let _ = admin.batch_execute(&sql).await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// Declares a test that runs once per backend: `name::sqlite` and `name::postgres`, each on
/// a multi-threaded runtime, the body given the backend.
#[macro_export]
macro_rules! both_backends {
    ($(#[$meta:meta])* async fn $name:ident($backend:ident: Backend) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($backend: iofold_graph::db::Backend) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(iofold_graph::db::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::support::db::require_postgres(concat!(module_path!(), "::postgres")).await {
                    run(iofold_graph::db::Backend::Postgres).await
                }
            }
        }
    };
}

/// The read replica of [`pg_base_url`]'s server the replica tests use: `TEST_DATABASE_READ_URL`
/// (what `.ci/replica.sh` prints), else `postgres://postgres@127.0.0.1:5433/test` when it
/// answers as a standby.
pub fn replica_base_url() -> String {
    std::env::var("TEST_DATABASE_READ_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5433/test".into())
}

/// Whether the read replica answers and is in recovery; asked once per test binary.
pub async fn replica_available() -> bool {
    static AVAILABLE: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();
    *AVAILABLE
        .get_or_init(|| async {
            #[derive(diesel::QueryableByName)]
            struct Recovery {
                #[diesel(sql_type = diesel::sql_types::Bool)]
                r: bool,
            }
            let probe = async {
                let mut conn = AsyncPgConnection::establish(&replica_base_url()).await.ok()?;
                let row: Recovery = diesel_async::RunQueryDsl::get_result(
                    diesel::sql_query("SELECT pg_is_in_recovery() AS r"),
                    &mut conn,
                )
                .await
                .ok()?;
                Some(row.r)
            };
            matches!(tokio::time::timeout(Duration::from_secs(5), probe).await, Ok(Some(true)))
        })
        .await
}

/// Decides whether a read-replica test runs: PostgreSQL and its replica answer; when not,
/// the test says it was skipped, unless `CI` is set: then it fails (`.ci/run` starts the
/// replica).
pub async fn require_replica(test: &str) -> bool {
    if pg_available().await && replica_available().await {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{test}: no read replica answers at {} (or PostgreSQL at {}) and CI is set: start one with \
             `bash .ci/replica.sh`",
            replica_base_url(),
            pg_base_url()
        );
    }
    eprintln!("{test}: skipped: no read replica at {} (`bash .ci/replica.sh` starts one)", replica_base_url());
    false
}
