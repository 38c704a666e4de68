//! Maintenance and monitoring of the database: planner statistics refreshed on demand
//! (`iofold-graph maintain`) and on a schedule inside the server (`MAINTENANCE_INTERVAL_SECS`),
//! and the database's size and index usage (`GET /metrics`, `health --json`).
//!
//! * **SQLite**: `PRAGMA optimize=0x10002` (every table considered; SQLite analyzes those
//!   whose statistics are missing or stale, within its own analysis limit), run in a write
//!   transaction after the process's other writers (the write turn), so it never meets
//!   `database is locked`. What changed is read back from `sqlite_stat1`.
//! * **PostgreSQL**: `ANALYZE` of the model's tables in the current schema, in a transaction
//!   holding a transaction-level advisory lock keyed by the schema, without the statement
//!   timeout. A scheduled run takes the lock with `pg_try_advisory_xact_lock` and skips when
//!   another instance holds it, or when any instance (or an operator) analyzed the tables
//!   less than 90 % of the interval ago (`pg_stat_user_tables.last_analyze`): with several
//!   server instances on one database, the statistics are refreshed about once per interval,
//!   not once per instance. Running it more often would be harmless anyway (ANALYZE reads a
//!   sample and takes no lock that blocks reads or writes).
//!
//! Figures: the size (SQLite: `page_count * page_size`, plus the free pages, or for
//! `/metrics` the file and WAL sizes from the file system, so a scrape never waits for a
//! lock; PostgreSQL: `pg_database_size`) and per index its scans (PostgreSQL's
//! `pg_stat_user_indexes.idx_scan`; SQLite does not count index use) and size (PostgreSQL:
//! `pg_relation_size`; SQLite: the `dbstat` table, which reads every page, so only
//! `health --json` asks for it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::conn::{ident, Conn};
use crate::catalog;
use crate::db::{Backend, DatabaseUrl, Db, Pool};
use crate::with_tx;

/// Why a maintenance run happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// An operator asked (`iofold-graph maintain`): always runs (waits for another run).
    OnDemand,
    /// The server's schedule, every `interval`: may be skipped (see the module).
    Scheduled(Duration),
}

/// What a maintenance run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The backend.
    pub backend: Backend,
    /// `done` or `skipped`.
    pub status: &'static str,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The statement that ran (`PRAGMA optimize=0x10002`, `ANALYZE …`).
    pub statement: Option<String>,
    /// PostgreSQL: the tables analyzed. SQLite: the tables whose statistics changed.
    pub tables: Vec<String>,
    /// How long it took.
    pub elapsed_ms: u128,
}

/// Refreshes the planner statistics (see the module for what each backend does).
pub async fn run(db: &Db, trigger: Trigger) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let backend = db.backend();
    let mut outcome = with_tx!(db, async |conn| {
        let mut conn = Conn::from(conn);
        match conn.backend() {
            Backend::Sqlite => sqlite_optimize(&mut conn).await,
            Backend::Postgres => pg_analyze(&mut conn, trigger).await,
        }
    })?;
    outcome.backend = backend;
    outcome.elapsed_ms = started.elapsed().as_millis();
    Ok(outcome)
}

fn outcome(status: &'static str) -> Outcome {
    Outcome { backend: Backend::Sqlite, status, reason: None, statement: None, tables: Vec::new(), elapsed_ms: 0 }
}

const SQLITE_STATS: &str = "SELECT json_array(tbl, idx, stat) AS v FROM sqlite_stat1 ORDER BY tbl, idx";

async fn sqlite_optimize(conn: &mut Conn<'_>) -> anyhow::Result<Outcome> {
    let before =
        if conn.relation_exists("sqlite_stat1").await? { conn.texts(SQLITE_STATS, None).await? } else { vec![] };
    let statement = "PRAGMA optimize=0x10002";
    conn.batch(statement).await?;
    let after =
        if conn.relation_exists("sqlite_stat1").await? { conn.texts(SQLITE_STATS, None).await? } else { vec![] };
    let mut tables: Vec<String> = after
        .iter()
        .filter(|row| !before.contains(row))
        .chain(before.iter().filter(|row| !after.contains(row)))
        .flatten()
        .filter_map(|row| serde_json::from_str::<Vec<Value>>(row).ok())
        .filter_map(|row| row.first().and_then(Value::as_str).map(str::to_owned))
        .collect();
    tables.sort();
    tables.dedup();
    Ok(Outcome { statement: Some(statement.to_owned()), tables, ..outcome("done") })
}

async fn pg_analyze(conn: &mut Conn<'_>, trigger: Trigger) -> anyhow::Result<Outcome> {
    let key = "hashtext('iofold-maintenance:' || current_schema())";
    match trigger {
        Trigger::OnDemand => {
            conn.texts(&format!("SELECT pg_advisory_xact_lock({key})::text AS v"), None).await?;
        }
        Trigger::Scheduled(interval) => {
            let locked = conn.texts(&format!("SELECT pg_try_advisory_xact_lock({key})::text AS v"), None).await?;
            if locked.first().cloned().flatten().as_deref() != Some("true") {
                return Ok(Outcome {
                    reason: Some("another server instance is refreshing the statistics".into()),
                    ..outcome("skipped")
                });
            }
            let ago = conn
                .texts(
                    "SELECT EXTRACT(EPOCH FROM clock_timestamp() - max(last_analyze))::bigint::text AS v \
                     FROM pg_stat_user_tables WHERE schemaname = current_schema()",
                    None,
                )
                .await?;
            if let Some(seconds) = ago.first().cloned().flatten().and_then(|s| s.parse::<u64>().ok()) {
                if Duration::from_secs(seconds) < interval.mul_f64(0.9) {
                    return Ok(Outcome {
                        reason: Some(format!(
                            "the statistics were refreshed {seconds} s ago (by another instance or by hand)"
                        )),
                        ..outcome("skipped")
                    });
                }
            }
        }
    }
    let existing = conn.relations().await?;
    let tables: Vec<String> = catalog::tables()
        .filter(|t| !t.view && existing.iter().any(|e| e == t.name))
        .map(|t| t.name.to_owned())
        .collect();
    if tables.is_empty() {
        return Ok(Outcome { reason: Some("the database has no table of the model".into()), ..outcome("skipped") });
    }
    let statement = format!("ANALYZE {}", tables.iter().map(|t| ident(t)).collect::<Vec<_>>().join(", "));
    conn.batch(&format!("SET LOCAL statement_timeout = 0; {statement}")).await?;
    Ok(Outcome { statement: Some(format!("ANALYZE ({} tables)", tables.len())), tables, ..outcome("done") })
}

/// Counters of the scheduled runs (`iofold_maintenance_runs_total`).
#[derive(Debug, Default)]
pub struct Stats {
    /// Runs that refreshed the statistics.
    pub done: AtomicU64,
    /// Runs skipped (another instance, or a recent run).
    pub skipped: AtomicU64,
    /// Runs that failed (logged).
    pub failed: AtomicU64,
}

/// Runs [`run`] every `interval` (the first run one interval after the start), counting the
/// outcomes and logging failures; `after` runs after each attempt (the server re-checks the
/// schema there). Never ends.
pub async fn schedule<F, Fut>(db: Db, interval: Duration, stats: Arc<Stats>, after: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match run(&db, Trigger::Scheduled(interval)).await {
            Ok(outcome) if outcome.status == "done" => {
                stats.done.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    elapsed_ms = outcome.elapsed_ms as u64,
                    tables = outcome.tables.len(),
                    "maintenance: planner statistics refreshed"
                );
            }
            Ok(outcome) => {
                stats.skipped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(reason = outcome.reason.as_deref().unwrap_or_default(), "maintenance skipped");
            }
            Err(error) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %format!("{error:#}"), "maintenance failed");
            }
        }
        after().await;
    }
}

/// The size of the database and the use of its indexes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// SQLite: the main file's pages (`page_count * page_size`, the WAL not included);
    /// PostgreSQL: `pg_database_size` of the whole database.
    pub size_bytes: i64,
    /// SQLite: the bytes of free pages in the file (reclaimable by VACUUM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub free_bytes: Option<i64>,
    /// SQLite, for `/metrics`: the size of the write-ahead log file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_bytes: Option<i64>,
    /// Whether `indexes[].scans` is known (PostgreSQL); SQLite does not count index use.
    pub index_scans_counted: bool,
    /// The indexes of the current schema (SQLite: only with sizes, see [`figures`]).
    pub indexes: Vec<IndexFigures>,
}

/// One index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexFigures {
    /// Its table.
    pub table: String,
    /// Its name.
    pub index: String,
    /// Index scans since the statistics were last reset (PostgreSQL).
    pub scans: Option<i64>,
    /// Its size in bytes.
    pub size_bytes: Option<i64>,
}

/// Reads the figures. `index_sizes` on SQLite walks every page (`dbstat`): for `health`, not
/// for scrapes. On PostgreSQL everything comes from the statistics views and is cheap.
pub async fn figures(db: &Db, index_sizes: bool) -> anyhow::Result<Figures> {
    match &db.pool {
        Pool::Sqlite(pool) => {
            let mut pooled = pool.get().await?;
            let mut conn = Conn::Sqlite(&mut pooled);
            let size =
                conn.count("SELECT page_count * page_size AS n FROM pragma_page_count, pragma_page_size").await?;
            let free = conn
                .count("SELECT freelist_count * page_size AS n FROM pragma_freelist_count, pragma_page_size")
                .await?;
            let mut indexes = Vec::new();
            if index_sizes {
                let rows = conn
                    .texts(
                        "SELECT json_array(m.tbl_name, m.name, s.pgsize) AS v FROM dbstat AS s \
                         JOIN sqlite_master AS m ON m.name = s.name \
                         WHERE s.aggregate = 1 AND m.type = 'index' ORDER BY m.tbl_name, m.name",
                        None,
                    )
                    .await?;
                for row in json_rows(rows) {
                    indexes.push(IndexFigures {
                        table: text(&row, 0),
                        index: text(&row, 1),
                        scans: None,
                        size_bytes: row.get(2).and_then(Value::as_i64),
                    });
                }
            }
            Ok(Figures {
                size_bytes: size,
                free_bytes: Some(free),
                wal_bytes: None,
                index_scans_counted: false,
                indexes,
            })
        }
        Pool::Postgres(pool) => {
            let mut pooled = pool.get().await?;
            let mut conn = Conn::Pg(&mut pooled);
            let size = conn.count("SELECT pg_database_size(current_database()) AS n").await?;
            let rows = conn
                .texts(
                    "SELECT json_build_array(relname, indexrelname, idx_scan, pg_relation_size(indexrelid))::text AS v \
                     FROM pg_stat_user_indexes WHERE schemaname = current_schema() \
                     AND relname <> '__diesel_schema_migrations' ORDER BY relname, indexrelname",
                    None,
                )
                .await?;
            let indexes = json_rows(rows)
                .into_iter()
                .map(|row| IndexFigures {
                    table: text(&row, 0),
                    index: text(&row, 1),
                    scans: row.get(2).and_then(Value::as_i64),
                    size_bytes: row.get(3).and_then(Value::as_i64),
                })
                .collect();
            Ok(Figures { size_bytes: size, free_bytes: None, wal_bytes: None, index_scans_counted: true, indexes })
        }
    }
}

fn json_rows(rows: Vec<Option<String>>) -> Vec<Vec<Value>> {
    rows.into_iter().flatten().filter_map(|row| serde_json::from_str(&row).ok()).collect()
}

fn text(row: &[Value], i: usize) -> String {
    row.get(i).and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// The figures for `/metrics`. SQLite: the sizes of the database file and its WAL, from the
/// file system (a scrape never waits for a database lock); PostgreSQL: [`figures`] without
/// asking for anything expensive.
async fn scrape_figures(db: &Db, url: &DatabaseUrl) -> anyhow::Result<Figures> {
    match url {
        DatabaseUrl::Sqlite(path) => {
            let size = |path: String| std::fs::metadata(path).map(|m| m.len() as i64);
            Ok(Figures {
                size_bytes: size(path.clone())?,
                free_bytes: None,
                wal_bytes: Some(size(format!("{path}-wal")).unwrap_or(0)),
                index_scans_counted: false,
                indexes: Vec::new(),
            })
        }
        DatabaseUrl::Postgres(_) => figures(db, false).await,
    }
}

/// The figures for `/metrics`, read at most once per `ttl` (scrapes in between get the last
/// reading), each reading bounded by a 2 s timeout.
pub struct FiguresCache {
    ttl: Duration,
    last: tokio::sync::Mutex<Option<(Instant, Arc<Figures>)>>,
}

/// How long `/metrics` reuses a reading of the database figures.
pub const FIGURES_TTL: Duration = Duration::from_secs(15);

impl Default for FiguresCache {
    fn default() -> Self {
        FiguresCache::new(FIGURES_TTL)
    }
}

impl FiguresCache {
    /// A cache keeping a reading for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        FiguresCache { ttl, last: tokio::sync::Mutex::new(None) }
    }

    /// The current figures (a fresh reading when the last is older than the TTL); the last
    /// reading, or none, when the database does not answer (logged).
    pub async fn get(&self, db: &Db, url: &DatabaseUrl) -> Option<Arc<Figures>> {
        let mut last = self.last.lock().await;
        if let Some((at, figures)) = last.as_ref() {
            if at.elapsed() < self.ttl {
                return Some(figures.clone());
            }
        }
        match tokio::time::timeout(Duration::from_secs(2), scrape_figures(db, url)).await {
            Ok(Ok(figures)) => {
                let figures = Arc::new(figures);
                *last = Some((Instant::now(), figures.clone()));
                Some(figures)
            }
            Ok(Err(error)) => {
                tracing::warn!(error = %format!("{error:#}"), "metrics: cannot read the database figures");
                last.as_ref().map(|(_, f)| f.clone())
            }
            Err(_) => {
                tracing::warn!("metrics: reading the database figures took over 2 s");
                last.as_ref().map(|(_, f)| f.clone())
            }
        }
    }
}

/// The figures and the maintenance counters in Prometheus' text format.
pub fn render(figures: Option<&Figures>, stats: &Stats, out: &mut String) {
    use crate::observability::{family, sample};
    if let Some(figures) = figures {
        family(
            out,
            "iofold_db_size_bytes",
            "gauge",
            "Size of the database (SQLite: the database file; PostgreSQL: pg_database_size).",
        );
        sample(out, "iofold_db_size_bytes", &[], figures.size_bytes as f64);
        if let Some(wal) = figures.wal_bytes {
            family(out, "iofold_db_wal_bytes", "gauge", "SQLite: size of the write-ahead log file.");
            sample(out, "iofold_db_wal_bytes", &[], wal as f64);
        }
        if figures.index_scans_counted {
            family(
                out,
                "iofold_db_index_scans_total",
                "counter",
                "PostgreSQL: scans of each index since the statistics were reset (pg_stat_user_indexes.idx_scan).",
            );
            for index in &figures.indexes {
                if let Some(scans) = index.scans {
                    sample(
                        out,
                        "iofold_db_index_scans_total",
                        &[("table", &index.table), ("index", &index.index)],
                        scans as f64,
                    );
                }
            }
            family(out, "iofold_db_index_size_bytes", "gauge", "PostgreSQL: size of each index.");
            for index in &figures.indexes {
                if let Some(bytes) = index.size_bytes {
                    sample(
                        out,
                        "iofold_db_index_size_bytes",
                        &[("table", &index.table), ("index", &index.index)],
                        bytes as f64,
                    );
                }
            }
        }
    }
    family(
        out,
        "iofold_maintenance_runs_total",
        "counter",
        "Scheduled maintenance runs (planner statistics) by outcome: done, skipped, failed.",
    );
    for (outcome, counter) in [("done", &stats.done), ("skipped", &stats.skipped), ("failed", &stats.failed)] {
        sample(out, "iofold_maintenance_runs_total", &[("outcome", outcome)], counter.load(Ordering::Relaxed) as f64);
    }
}
