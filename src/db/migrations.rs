//! Embedded migrations, one set per backend (`migrations/sqlite`, `migrations/postgres`),
//! applied at start-up and by `iofold-graph migrate`.
//!
//! They run on a dedicated synchronous connection on a blocking thread: SQLite's own, and
//! for PostgreSQL diesel-async's `AsyncConnectionWrapper`, so no system libpq is needed.
//! A database that has applied a migration this binary does not know (a newer schema) is
//! refused rather than migrated.

use std::collections::BTreeSet;

use anyhow::{anyhow, bail, Context};
use diesel::backend::Backend as DieselBackend;
use diesel::migration::MigrationSource;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::AsyncPgConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::DatabaseUrl;

/// The SQLite migrations, compiled into the binary.
pub const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
/// The PostgreSQL migrations, compiled into the binary.
pub const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// What a database has applied, compared with what this binary carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// Versions applied in the database and known to this binary.
    pub applied: Vec<String>,
    /// Versions this binary carries that the database has not applied.
    pub pending: Vec<String>,
    /// Versions the database has applied that this binary does not know (a newer schema).
    pub unknown: Vec<String>,
}

/// Applies the pending migrations and returns the versions it applied. Refuses, touching
/// nothing, when the database has applied migrations this binary does not know.
pub async fn run_pending(url: &DatabaseUrl) -> anyhow::Result<Vec<String>> {
    on_blocking_connection(url, apply).await
}

/// The applied, pending and unknown migrations of the database.
pub async fn status(url: &DatabaseUrl) -> anyhow::Result<Status> {
    on_blocking_connection(url, compare).await
}

/// A migration harness of either backend, as the blocking helpers see it.
enum Harness<'a> {
    Sqlite(&'a mut diesel::SqliteConnection),
    Postgres(&'a mut AsyncConnectionWrapper<AsyncPgConnection>),
}

async fn on_blocking_connection<T, F>(url: &DatabaseUrl, work: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce(Harness<'_>) -> anyhow::Result<T> + Send + 'static,
{
    let url = url.clone();
    tokio::task::spawn_blocking(move || match &url {
        DatabaseUrl::Sqlite(path) => {
            let mut conn = super::establish_sqlite_sync(path)
                .with_context(|| format!("cannot open the SQLite database `{path}`"))?;
            work(Harness::Sqlite(&mut conn))
        }
        DatabaseUrl::Postgres(pg) => {
            let mut conn = <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(pg)
                .context("cannot connect to PostgreSQL")?;
            work(Harness::Postgres(&mut conn))
        }
    })
    .await
    .context("the migration task failed")?
}

fn compare(harness: Harness<'_>) -> anyhow::Result<Status> {
    match harness {
        Harness::Sqlite(conn) => compare_with(conn, &SQLITE),
        Harness::Postgres(conn) => compare_with(conn, &POSTGRES),
    }
}

fn apply(harness: Harness<'_>) -> anyhow::Result<Vec<String>> {
    match harness {
        Harness::Sqlite(conn) => apply_with(conn, SQLITE),
        Harness::Postgres(conn) => apply_with(conn, POSTGRES),
    }
}

fn compare_with<DB, H>(harness: &mut H, source: &EmbeddedMigrations) -> anyhow::Result<Status>
where
    DB: DieselBackend,
    H: MigrationHarness<DB>,
    EmbeddedMigrations: MigrationSource<DB>,
{
    let known: BTreeSet<String> = MigrationSource::<DB>::migrations(source)
        .map_err(|e| anyhow!("{e}"))?
        .iter()
        .map(|m| m.name().version().to_string())
        .collect();
    let applied: BTreeSet<String> = harness
        .applied_migrations()
        .map_err(|e| anyhow!("cannot read the applied migrations: {e}"))?
        .iter()
        .map(|v| v.to_string())
        .collect();
    Ok(Status {
        applied: applied.intersection(&known).cloned().collect(),
        pending: known.difference(&applied).cloned().collect(),
        unknown: applied.difference(&known).cloned().collect(),
    })
}

fn apply_with<DB, H>(harness: &mut H, source: EmbeddedMigrations) -> anyhow::Result<Vec<String>>
where
    DB: DieselBackend,
    H: MigrationHarness<DB>,
    EmbeddedMigrations: MigrationSource<DB>,
{
    let status = compare_with(harness, &source)?;
    if !status.unknown.is_empty() {
        bail!(
            "the database has applied migrations this binary does not know ({}): it was migrated by a newer \
             iofold-graph; upgrade the binary instead of running this one against it",
            status.unknown.join(", ")
        );
    }
    let applied = harness.run_pending_migrations(source).map_err(|e| anyhow!("migration failed: {e}"))?;
    Ok(applied.iter().map(|v| v.to_string()).collect())
}
