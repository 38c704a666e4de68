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
pub(crate) enum Harness<'a> {
    /// SQLite's own synchronous connection.
    Sqlite(&'a mut diesel::SqliteConnection),
    /// diesel-async's blocking wrapper around a PostgreSQL connection.
    Postgres(&'a mut AsyncConnectionWrapper<AsyncPgConnection>),
}

pub(crate) async fn on_blocking_connection<T, F>(url: &DatabaseUrl, work: F) -> anyhow::Result<T>
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

pub(crate) fn compare_with<DB, H>(harness: &mut H, source: &EmbeddedMigrations) -> anyhow::Result<Status>
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

/// A verified copy of a SQLite database, taken before migrations change it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Backup {
    /// The copy (next to the database: `<database>.before-<what>-<UTC time>.bak`).
    pub file: std::path::PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// The applied migrations recorded in the copy (the same as in the database).
    pub migrations: Vec<String>,
}

impl std::fmt::Display for Backup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "backup: {} ({} bytes; integrity_check ok; {} applied migration(s) recorded, as in the database)",
            self.file.display(),
            self.bytes,
            self.migrations.len()
        )
    }
}

/// What `migrate` (or `migrate --revert`) should do about a backup before it changes the
/// schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupPolicy {
    /// SQLite: take a verified `VACUUM INTO` copy first (when the database has content);
    /// PostgreSQL: print how to take one with pg_dump.
    Take,
    /// Take none (`--no-backup`).
    Skip,
}

/// Applies the pending migrations like [`run_pending`], after a backup: on SQLite a verified
/// copy ([`Backup`]) when anything is pending and the database is not new (taken and checked
/// before anything is applied; a copy that fails its check stops the migration), on
/// PostgreSQL the pg_dump command to take one. `say` receives what to tell the operator
/// before the migrations run.
pub async fn run_pending_with_backup(
    url: &DatabaseUrl,
    policy: BackupPolicy,
    say: impl Fn(String) + Send + 'static,
) -> anyhow::Result<Vec<String>> {
    let database = url.clone();
    on_blocking_connection(url, move |harness| match harness {
        Harness::Sqlite(conn) => {
            let status = compare_with(conn, &SQLITE)?;
            refuse_newer(&status)?;
            if !status.pending.is_empty() && sqlite_has_content(conn, &status)? {
                let what = format!("migrate-{}", status.pending[0]);
                backup_or_say(conn, &database, &status, policy, &what, &say)?;
            }
            apply_with(conn, SQLITE)
        }
        Harness::Postgres(conn) => {
            let status = compare_with(conn, &POSTGRES)?;
            refuse_newer(&status)?;
            if !status.pending.is_empty() && !status.applied.is_empty() && policy == BackupPolicy::Take {
                say(pg_dump_hint(&format!("applying {} migration(s)", status.pending.len()), &status.pending[0]));
            }
            apply_with(conn, POSTGRES)
        }
    })
    .await
}

/// Reverts the last `n` applied migrations (their `down.sql`, newest first, each in its own
/// transaction) and returns their versions. Refuses, touching nothing, when fewer than `n`
/// are applied or the database has migrations this binary does not know. Backs up first as
/// [`run_pending_with_backup`] does.
pub async fn revert(
    url: &DatabaseUrl,
    n: usize,
    policy: BackupPolicy,
    say: impl Fn(String) + Send + 'static,
) -> anyhow::Result<Vec<String>> {
    let database = url.clone();
    on_blocking_connection(url, move |harness| match harness {
        Harness::Sqlite(conn) => {
            let status = compare_with(conn, &SQLITE)?;
            let last = revertible(&status, n)?;
            backup_or_say(conn, &database, &status, policy, &format!("revert-{last}"), &say)?;
            revert_with(conn, &SQLITE, &status, n)
        }
        Harness::Postgres(conn) => {
            let status = compare_with(conn, &POSTGRES)?;
            let last = revertible(&status, n)?;
            if policy == BackupPolicy::Take {
                say(pg_dump_hint(&format!("reverting {n} migration(s)"), &format!("revert-{last}")));
            }
            revert_with(conn, &POSTGRES, &status, n)
        }
    })
    .await
}

fn refuse_newer(status: &Status) -> anyhow::Result<()> {
    if !status.unknown.is_empty() {
        bail!(
            "the database has applied migrations this binary does not know ({}): it was migrated by a newer \
             iofold-graph; upgrade the binary instead of running this one against it",
            status.unknown.join(", ")
        );
    }
    Ok(())
}

/// Checks that `n` migrations can be reverted; returns the newest applied version.
fn revertible(status: &Status, n: usize) -> anyhow::Result<String> {
    refuse_newer(status)?;
    if n == 0 {
        bail!("migrate --revert: N must be at least 1");
    }
    if n > status.applied.len() {
        bail!(
            "migrate --revert {n}: only {} migration(s) are applied ({}). Nothing was reverted",
            status.applied.len(),
            if status.applied.is_empty() { "none".to_owned() } else { status.applied.join(", ") }
        );
    }
    Ok(status.applied.last().cloned().unwrap_or_default())
}

fn revert_with<DB, H>(
    harness: &mut H,
    source: &EmbeddedMigrations,
    status: &Status,
    n: usize,
) -> anyhow::Result<Vec<String>>
where
    DB: DieselBackend,
    H: MigrationHarness<DB>,
    EmbeddedMigrations: MigrationSource<DB>,
{
    let migrations = MigrationSource::<DB>::migrations(source).map_err(|e| anyhow!("{e}"))?;
    let mut reverted = Vec::new();
    for version in status.applied.iter().rev().take(n) {
        let migration = migrations
            .iter()
            .find(|m| m.name().version().to_string() == *version)
            .ok_or_else(|| anyhow!("migration {version} is not in this binary"))?;
        harness.revert_migration(&**migration).map_err(|e| {
            anyhow!(
                "reverting {} failed: {e} (reverted before it: {})",
                migration.name(),
                if reverted.is_empty() { "none".to_owned() } else { reverted.join(", ") }
            )
        })?;
        reverted.push(version.clone());
    }
    Ok(reverted)
}

/// How to back up a PostgreSQL database before `what`.
fn pg_dump_hint(what: &str, label: &str) -> String {
    format!(
        "PostgreSQL: iofold-graph takes no copy of a PostgreSQL database itself. Before {what}, take one with\n  \
         pg_dump --format=custom --file=iofold-before-{label}-{}.dump \"$DATABASE_URL\"\n\
         (restore with pg_restore --clean --dbname \"$DATABASE_URL\" FILE)",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    )
}

/// Whether a SQLite database holds anything besides the (possibly new) migration record.
fn sqlite_has_content(conn: &mut diesel::SqliteConnection, status: &Status) -> anyhow::Result<bool> {
    if !status.applied.is_empty() {
        return Ok(true);
    }
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count: Count = diesel::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
             AND tbl_name <> '__diesel_schema_migrations'",
        ),
        conn,
    )?;
    Ok(count.n > 0)
}

fn backup_or_say(
    conn: &mut diesel::SqliteConnection,
    database: &DatabaseUrl,
    status: &Status,
    policy: BackupPolicy,
    what: &str,
    say: &dyn Fn(String),
) -> anyhow::Result<()> {
    match policy {
        BackupPolicy::Skip => {
            say("--no-backup: no copy of the database was taken".to_owned());
            Ok(())
        }
        BackupPolicy::Take => {
            let backup = sqlite_backup(conn, database.as_str(), &status.applied, what)?;
            say(backup.to_string());
            Ok(())
        }
    }
}

/// `VACUUM INTO` a new file next to the database, then opens the copy and checks it:
/// `PRAGMA integrity_check` is `ok` and it records the same applied migrations. A copy that
/// fails is removed and the error returned (nothing is migrated).
fn sqlite_backup(
    conn: &mut diesel::SqliteConnection,
    database: &str,
    applied: &[String],
    what: &str,
) -> anyhow::Result<Backup> {
    use diesel::connection::SimpleConnection;
    #[derive(diesel::QueryableByName)]
    struct Text {
        #[diesel(sql_type = diesel::sql_types::Text)]
        v: String,
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let mut file = std::path::PathBuf::from(format!("{database}.before-{what}-{stamp}.bak"));
    let mut n = 1;
    while file.exists() {
        file = std::path::PathBuf::from(format!("{database}.before-{what}-{stamp}-{n}.bak"));
        n += 1;
    }
    let target = file.to_str().ok_or_else(|| anyhow!("the backup path `{}` is not UTF-8", file.display()))?;
    conn.batch_execute(&format!("VACUUM INTO '{}'", target.replace('\'', "''")))
        .with_context(|| format!("backup into `{target}` failed; nothing was migrated (or use --no-backup)"))?;
    let verified = (|| -> anyhow::Result<Backup> {
        let mut copy = <diesel::SqliteConnection as diesel::Connection>::establish(target)?;
        let check: Vec<Text> = diesel::RunQueryDsl::load(
            diesel::sql_query("SELECT integrity_check AS v FROM pragma_integrity_check"),
            &mut copy,
        )?;
        let check: Vec<String> = check.into_iter().map(|r| r.v).collect();
        if check != ["ok"] {
            bail!("integrity_check of the copy: {}", check.join("; "));
        }
        let recorded: Vec<Text> = diesel::RunQueryDsl::load(
            diesel::sql_query("SELECT CAST(version AS TEXT) AS v FROM __diesel_schema_migrations ORDER BY 1"),
            &mut copy,
        )?;
        let recorded: Vec<String> = recorded.into_iter().map(|r| r.v).collect();
        if recorded != applied {
            bail!("the copy records migrations {recorded:?}, the database {applied:?}");
        }
        let bytes = std::fs::metadata(target)?.len();
        Ok(Backup { file: file.clone(), bytes, migrations: recorded })
    })();
    match verified {
        Ok(backup) => Ok(backup),
        Err(e) => {
            let _ = std::fs::remove_file(&file);
            Err(e.context(format!("the backup `{target}` failed its check and was removed; nothing was migrated")))
        }
    }
}
