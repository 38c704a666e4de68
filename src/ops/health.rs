//! `health`: integrity checks of the database, and the cheap [`quick`] check behind
//! `GET /health`.
//!
//! The full check ([`check`]) reads everything: on SQLite `PRAGMA integrity_check` (then per
//! table, to name the damaged ones) and `PRAGMA foreign_key_check`; on PostgreSQL an orphan
//! query per foreign key of the catalog (`child.fk IS NOT NULL AND NOT EXISTS parent`). It
//! also counts the rows of every table, reports SQLite's journal mode, and compares the
//! applied migrations with the ones this binary carries. Every failure, a query error
//! included, becomes a [`Problem`]; the check itself never fails.

use std::time::Instant;

use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::sqlite::Sqlite;
use serde::Serialize;
use serde_json::{json, Value};

use super::conn::{ident, Conn};
use super::drift::Drift;
use super::maintain::Figures;
use super::wipe::MIGRATIONS_TABLE;
use crate::catalog;
use crate::db::{migrations, Backend, Db, Pool};

/// Something wrong with the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The check that found it: `connection`, `migrations`, `schema`, `integrity`,
    /// `foreign_keys`, `rows`, `drift` or `replica`.
    pub check: &'static str,
    /// The table it concerns, when it concerns one.
    pub table: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.table {
            Some(table) => write!(f, "table {table}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A table's row count, `None` when it could not be counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableRows {
    /// The table.
    pub table: &'static str,
    /// Its rows.
    pub rows: Option<i64>,
}

/// The migrations of the database compared with the binary's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MigrationState {
    /// Applied and known.
    pub applied: Vec<String>,
    /// Known, not applied.
    pub pending: Vec<String>,
    /// Applied, not known to this binary (a newer schema).
    pub unknown: Vec<String>,
}

/// The outcome of [`check`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// No problem found.
    pub ok: bool,
    /// The backend.
    pub backend: Backend,
    /// SQLite's journal mode (`wal` expected); `None` on PostgreSQL.
    pub journal_mode: Option<String>,
    /// `ok`, `failed` or `not run` (the integrity check: SQLite's `integrity_check`; on
    /// PostgreSQL, whose storage has no such check, `not run`).
    pub integrity: &'static str,
    /// `ok`, `failed` or `not run`.
    pub foreign_keys: &'static str,
    /// Applied, pending and unknown migrations.
    pub migrations: MigrationState,
    /// Rows per table, in catalog order.
    pub tables: Vec<TableRows>,
    /// The live schema compared with what its applied migrations define (`None`: not
    /// compared, e.g. by [`check`] alone).
    pub schema: Option<Drift>,
    /// The database's size and index usage (`None`: not read).
    pub database: Option<Figures>,
    /// The read replicas (`DATABASE_READ_URLS`), each polled once: state, lag, replay
    /// position (`None`: none configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<serde_json::Value>,
    /// Everything wrong.
    pub problems: Vec<Problem>,
    /// How long the check took.
    pub elapsed_ms: u128,
}

impl Report {
    /// The report as text, one fact a line, problems last.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("backend       {}\n", self.backend.name()));
        if let Some(mode) = &self.journal_mode {
            out.push_str(&format!("journal mode  {mode}\n"));
        }
        out.push_str(&format!(
            "migrations    {} applied, {} pending, {} unknown\n",
            self.migrations.applied.len(),
            self.migrations.pending.len(),
            self.migrations.unknown.len()
        ));
        out.push_str(&format!("integrity     {}\n", self.integrity));
        out.push_str(&format!("foreign keys  {}\n", self.foreign_keys));
        if let Some(schema) = &self.schema {
            let detail = match schema.status {
                "ok" => format!("matches its {} applied migration(s)", schema.migrations.len()),
                "drift" => format!("{} difference(s) from its migrations", schema.differences.len()),
                _ => schema.reason.clone().unwrap_or_default(),
            };
            out.push_str(&format!("schema        {} ({detail})\n", schema.status));
        }
        if let Some(database) = &self.database {
            out.push_str(&format!("size          {} bytes\n", database.size_bytes));
            if database.index_scans_counted {
                let unused: Vec<&str> =
                    database.indexes.iter().filter(|i| i.scans == Some(0)).map(|i| i.index.as_str()).collect();
                out.push_str(&format!(
                    "indexes       {} ({} never scanned since the statistics were reset)\n",
                    database.indexes.len(),
                    unused.len()
                ));
            }
        }
        for replica in self.replicas.as_ref().and_then(|r| r.as_array()).into_iter().flatten() {
            out.push_str(&format!(
                "replica       {} {} (lag {} bytes, replayed to {})\n",
                replica["name"].as_str().unwrap_or_default(),
                replica["state"].as_str().unwrap_or_default(),
                replica["lag_bytes"],
                replica["replay_lsn"].as_str().unwrap_or_default(),
            ));
        }
        out.push_str("rows\n");
        for t in &self.tables {
            let rows = t.rows.map_or("?".to_owned(), |n| n.to_string());
            out.push_str(&format!("  {:<28} {rows:>10}\n", t.table));
        }
        if self.ok {
            out.push_str(&format!("healthy ({} ms)\n", self.elapsed_ms));
        } else {
            out.push_str(&format!("{} problem(s):\n", self.problems.len()));
            for problem in &self.problems {
                out.push_str(&format!("  - {problem}\n"));
            }
        }
        out
    }
}

/// Runs every check. Never fails: what goes wrong is a problem of the report.
pub async fn check(db: &Db) -> Report {
    let started = Instant::now();
    let mut report = Report {
        ok: false,
        backend: db.backend(),
        journal_mode: None,
        integrity: "not run",
        foreign_keys: "not run",
        migrations: MigrationState::default(),
        tables: Vec::new(),
        schema: None,
        database: None,
        replicas: None,
        problems: Vec::new(),
        elapsed_ms: 0,
    };
    let outcome = match &db.pool {
        Pool::Postgres(pool) => match pool.get().await {
            Ok(mut pooled) => {
                run_checks(&mut Conn::Pg(&mut pooled), &mut report).await;
                Ok(())
            }
            Err(e) => Err(e),
        },
        Pool::Sqlite(pool) => match pool.get().await {
            Ok(mut pooled) => {
                run_checks(&mut Conn::Sqlite(&mut pooled), &mut report).await;
                Ok(())
            }
            Err(e) => Err(e),
        },
    };
    if let Err(e) = outcome {
        report.problems.push(Problem {
            check: "connection",
            table: None,
            message: format!("the database does not answer: {e}"),
        });
    }
    report.ok = report.problems.is_empty();
    report.elapsed_ms = started.elapsed().as_millis();
    report
}

impl Report {
    /// Adds the read replicas, polled once: one that is down, not a standby or further
    /// behind than the lag setting is a problem (`check: "replica"`).
    pub async fn add_replicas(&mut self, replicas: &crate::db::replicas::Replicas) {
        replicas.poll_now().await;
        let max = replicas.settings().max_lag_bytes;
        for replica in replicas.list() {
            let state = replica.state();
            let problem = match state {
                crate::db::replicas::ReplicaState::Up if replica.lag_bytes() > max => Some(format!(
                    "read replica {} is {} bytes behind the primary (REPLICA_MAX_LAG_BYTES: {max})",
                    replica.name,
                    replica.lag_bytes()
                )),
                crate::db::replicas::ReplicaState::Up => None,
                _ => Some(format!("read replica {} is {}", replica.name, state.name())),
            };
            if let Some(message) = problem {
                self.problems.push(Problem { check: "replica", table: None, message });
            }
        }
        self.replicas = Some(replicas.report());
        self.ok = self.problems.is_empty();
    }

    /// Adds the drift check: every difference is a problem (`check: "drift"`, naming its
    /// table); a check that could not run is one too.
    pub fn add_drift(&mut self, drift: anyhow::Result<Drift>) {
        match drift {
            Ok(drift) => {
                for difference in &drift.differences {
                    self.problems.push(Problem {
                        check: "drift",
                        table: Some(difference.table.clone()).filter(|t| !t.is_empty()),
                        message: difference.to_string(),
                    });
                }
                self.schema = Some(drift);
            }
            Err(e) => self.problems.push(Problem {
                check: "drift",
                table: None,
                message: format!("the schema could not be compared with the migrations: {e:#}"),
            }),
        }
        self.ok = self.problems.is_empty();
    }

    /// Adds the size and index figures (informative: a failure to read them is logged).
    pub fn add_figures(&mut self, figures: anyhow::Result<Figures>) {
        match figures {
            Ok(figures) => self.database = Some(figures),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "health: cannot read the database figures"),
        }
    }
}

async fn run_checks(conn: &mut Conn<'_>, report: &mut Report) {
    let problems = &mut report.problems;
    // Migrations.
    match migration_state(conn).await {
        Ok(state) => {
            if !state.pending.is_empty() {
                problems.push(Problem {
                    check: "migrations",
                    table: None,
                    message: format!(
                        "{} migration(s) pending ({}): run `iofold-graph migrate`",
                        state.pending.len(),
                        state.pending.join(", ")
                    ),
                });
            }
            if !state.unknown.is_empty() {
                problems.push(Problem {
                    check: "migrations",
                    table: None,
                    message: format!(
                        "the database has applied migrations this binary does not know ({}): it was migrated by a \
                         newer iofold-graph",
                        state.unknown.join(", ")
                    ),
                });
            }
            report.migrations = state;
        }
        Err(e) => problems.push(Problem {
            check: "migrations",
            table: None,
            message: format!("cannot read the applied migrations: {e}"),
        }),
    }
    // The tables and views of the model.
    let existing = match conn.relations().await {
        Ok(existing) => existing,
        Err(e) => {
            problems.push(Problem { check: "schema", table: None, message: format!("cannot list the tables: {e}") });
            Vec::new()
        }
    };
    let present = |name: &str| existing.iter().any(|e| e == name);
    for table in catalog::TABLES.iter().filter(|t| !present(t.name)) {
        problems.push(Problem {
            check: "schema",
            table: Some(table.name.to_owned()),
            message: format!("the {} is missing", if table.view { "view" } else { "table" }),
        });
    }
    let tables: Vec<&'static catalog::Table> = catalog::tables().filter(|t| present(t.name)).collect();

    match conn.backend() {
        Backend::Sqlite => {
            report.journal_mode = match conn.texts("SELECT journal_mode AS v FROM pragma_journal_mode", None).await {
                Ok(rows) => rows.into_iter().flatten().next(),
                Err(e) => {
                    problems.push(Problem {
                        check: "integrity",
                        table: None,
                        message: format!("cannot read the journal mode: {e}"),
                    });
                    None
                }
            };
            report.integrity = sqlite_integrity(conn, &tables, problems).await;
            report.foreign_keys = sqlite_foreign_keys(conn, problems).await;
        }
        Backend::Postgres => {
            report.foreign_keys = pg_orphans(conn, &tables, problems).await;
        }
    }
    // Row counts.
    for table in catalog::tables() {
        let rows = if present(table.name) {
            match conn.count(&format!("SELECT COUNT(*) AS n FROM {}", ident(table.name))).await {
                Ok(n) => Some(n),
                Err(e) => {
                    problems.push(Problem {
                        check: "rows",
                        table: Some(table.name.to_owned()),
                        message: format!("cannot count the rows: {e}"),
                    });
                    None
                }
            }
        } else {
            None
        };
        report.tables.push(TableRows { table: table.name, rows });
    }
}

/// `PRAGMA integrity_check`; when it finds damage, the check again per table to name the
/// damaged tables (a table's check covers its indexes).
async fn sqlite_integrity(
    conn: &mut Conn<'_>,
    tables: &[&'static catalog::Table],
    problems: &mut Vec<Problem>,
) -> &'static str {
    let global = match conn.texts("SELECT integrity_check AS v FROM pragma_integrity_check", None).await {
        Ok(rows) => rows.into_iter().flatten().collect::<Vec<_>>(),
        Err(e) => vec![format!("integrity_check failed: {e}")],
    };
    if global == ["ok"] {
        return "ok";
    }
    let mut named = false;
    for table in tables {
        let sql = "SELECT integrity_check AS v FROM pragma_integrity_check(?)";
        let messages = match conn.texts(sql, Some(table.name)).await {
            Ok(rows) => rows.into_iter().flatten().collect::<Vec<_>>(),
            Err(e) => vec![format!("integrity_check failed: {e}")],
        };
        if messages != ["ok"] {
            named = true;
            problems.push(Problem {
                check: "integrity",
                table: Some(table.name.to_owned()),
                message: format!("damaged: {}", summarize(&messages)),
            });
        }
    }
    if !named {
        problems.push(Problem {
            check: "integrity",
            table: None,
            message: format!("the database file is damaged: {}", summarize(&global)),
        });
    }
    "failed"
}

fn summarize(messages: &[String]) -> String {
    let shown: Vec<&str> = messages.iter().take(3).map(String::as_str).collect();
    let more = messages.len().saturating_sub(shown.len());
    let mut text = shown.join("; ");
    if more > 0 {
        text.push_str(&format!(" (and {more} more)"));
    }
    text
}

/// `PRAGMA foreign_key_check`, grouped per table, key column and parent table.
async fn sqlite_foreign_keys(conn: &mut Conn<'_>, problems: &mut Vec<Problem>) -> &'static str {
    let sql = "SELECT json_array(fk.\"table\", COALESCE(l.\"from\", '?'), fk.parent, COUNT(*)) AS v \
               FROM pragma_foreign_key_check AS fk \
               LEFT JOIN pragma_foreign_key_list(fk.\"table\") AS l ON l.id = fk.fkid \
               GROUP BY fk.\"table\", l.\"from\", fk.parent ORDER BY 1";
    match conn.texts(sql, None).await {
        Ok(rows) => {
            let before = problems.len();
            for row in rows.into_iter().flatten() {
                let (table, column, parent, n): (String, String, String, i64) = match serde_json::from_str(&row) {
                    Ok(parsed) => parsed,
                    Err(e) => {
                        problems.push(Problem {
                            check: "foreign_keys",
                            table: None,
                            message: format!("unreadable foreign_key_check row `{row}`: {e}"),
                        });
                        continue;
                    }
                };
                problems.push(orphans(table, &column, &parent, n));
            }
            if problems.len() == before {
                "ok"
            } else {
                "failed"
            }
        }
        Err(e) => {
            problems.push(Problem {
                check: "foreign_keys",
                table: None,
                message: format!("foreign_key_check failed: {e}"),
            });
            "failed"
        }
    }
}

fn orphans(table: String, column: &str, parent: &str, n: i64) -> Problem {
    Problem {
        check: "foreign_keys",
        table: Some(table),
        message: format!("{n} row(s) whose {column} names no row of {parent} (orphaned foreign key)"),
    }
}

/// One orphan query per foreign key of the catalog.
async fn pg_orphans(
    conn: &mut Conn<'_>,
    tables: &[&'static catalog::Table],
    problems: &mut Vec<Problem>,
) -> &'static str {
    let mut failed = false;
    for table in tables {
        for (column, fk) in table.foreign_keys() {
            if !tables.iter().any(|t| t.name == fk.table) {
                continue; // reported as a missing table
            }
            let sql = format!(
                "SELECT COUNT(*) AS n FROM {child} AS c WHERE c.{col} IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM {parent} AS p WHERE p.{id} = c.{col})",
                child = ident(table.name),
                col = ident(column.name),
                parent = ident(fk.table),
                id = ident("id"),
            );
            match conn.count(&sql).await {
                Ok(0) => {}
                Ok(n) => {
                    failed = true;
                    problems.push(orphans(table.name.to_owned(), column.name, fk.table, n));
                }
                Err(e) => {
                    failed = true;
                    problems.push(Problem {
                        check: "foreign_keys",
                        table: Some(table.name.to_owned()),
                        message: format!("cannot check {}: {e}", column.name),
                    });
                }
            }
        }
    }
    if failed {
        "failed"
    } else {
        "ok"
    }
}

/// The migration versions this binary carries for `backend`.
pub fn known_migrations(backend: Backend) -> Vec<String> {
    let versions = match backend {
        Backend::Sqlite => MigrationSource::<Sqlite>::migrations(&migrations::SQLITE)
            .map(|ms| ms.iter().map(|m| m.name().version().to_string()).collect::<Vec<_>>()),
        Backend::Postgres => MigrationSource::<Pg>::migrations(&migrations::POSTGRES)
            .map(|ms| ms.iter().map(|m| m.name().version().to_string()).collect::<Vec<_>>()),
    };
    let mut versions = versions.unwrap_or_default();
    versions.sort();
    versions
}

/// The versions recorded in the migration table (none when it does not exist).
pub(crate) async fn applied_migrations(conn: &mut Conn<'_>) -> diesel::QueryResult<Vec<String>> {
    if !conn.relation_exists(MIGRATIONS_TABLE).await? {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT CAST(version AS TEXT) AS v FROM {} ORDER BY 1", ident(MIGRATIONS_TABLE));
    Ok(conn.texts(&sql, None).await?.into_iter().flatten().collect())
}

pub(crate) async fn migration_state(conn: &mut Conn<'_>) -> diesel::QueryResult<MigrationState> {
    let known = known_migrations(conn.backend());
    let applied = applied_migrations(conn).await?;
    Ok(MigrationState {
        pending: known.iter().filter(|v| !applied.contains(v)).cloned().collect(),
        unknown: applied.iter().filter(|v| !known.contains(v)).cloned().collect(),
        applied: applied.into_iter().filter(|v| known.contains(v)).collect(),
    })
}

/// A cheap check for `GET /health`: one pooled connection, two small queries (no table
/// scans). Never fails. `status` is `ok`; `degraded` when migrations are pending or the
/// database is newer than the binary; `unavailable` when the database does not answer
/// (then `database` is `unavailable`; the error is logged, not returned). Also: `backend`, `version`
/// (this binary's), `migrations` (`applied`, `pending`, `unknown` counts), `latency_ms`.
pub async fn quick(db: &Db) -> Value {
    let started = Instant::now();
    let backend = db.backend();
    let state = async {
        let state = match &db.pool {
            Pool::Postgres(pool) => migration_state(&mut Conn::Pg(&mut *pool.get().await?)).await?,
            Pool::Sqlite(pool) => migration_state(&mut Conn::Sqlite(&mut *pool.get().await?)).await?,
        };
        Ok::<_, anyhow::Error>(state)
    }
    .await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match state {
        Ok(state) => {
            let status = if state.pending.is_empty() && state.unknown.is_empty() { "ok" } else { "degraded" };
            json!({
                "status": status,
                "database": "ok",
                "backend": backend.name(),
                "version": env!("CARGO_PKG_VERSION"),
                "migrations": {
                    "applied": state.applied.len(),
                    "pending": state.pending.len(),
                    "unknown": state.unknown.len(),
                },
                "latency_ms": (latency_ms * 10.0).round() / 10.0,
            })
        }
        Err(error) => {
            // The details stay in the log: /health answers anyone.
            tracing::warn!(error = %error, "health check: the database does not answer");
            json!({
                "status": "unavailable",
                "database": "unavailable",
                "backend": backend.name(),
                "version": env!("CARGO_PKG_VERSION"),
            })
        }
    }
}
