//! Maintenance commands: `reset`, `nuke`, `health`, `export`, `import` and `backup`.
//!
//! * [`guard`]: the safeguards of the destructive commands (`--yes`, production,
//!   production-like URLs), checked before any connection is opened.
//! * [`wipe`]: `reset` (delete every row, keep the schema) and `nuke` (drop the schema and
//!   the migration record), each in one transaction.
//! * [`health`]: the full integrity check, and [`health::quick`] for `GET /health`.
//! * [`dump`]: `export` / `import`, a portable, versioned JSON Lines dump that moves data
//!   between SQLite and PostgreSQL.
//! * [`backup`]: a consistent online copy of a SQLite database (`VACUUM INTO`).
//! * [`drift`]: the live schema compared with what its migrations define (`health`,
//!   `migrate --status`, the server at start and after each maintenance run).
//! * [`maintain`]: planner statistics (`maintain`, and on a schedule in the server), the
//!   database's size and index usage.
//!
//! None of them applies migrations, except `import`, which migrates the (empty) target
//! after the export has passed every check.

pub mod backup;
mod codec;
mod conn;
pub mod drift;
pub mod dump;
pub mod guard;
pub mod health;
pub mod maintain;
pub mod wipe;

use std::path::PathBuf;

use clap::Subcommand;

use crate::config::Config;
use crate::db::{migrations, Backend, DatabaseUrl, Db, PoolOptions};

/// The maintenance commands (flattened into the command line's commands).
#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// Delete every row of every table, keeping the schema. Needs --yes; refused in
    /// production.
    Reset {
        /// Confirm.
        #[arg(long)]
        yes: bool,
    },
    /// Drop every table, the view and the migration record, so `migrate` rebuilds from
    /// nothing. Needs --yes; refused in production and for URLs containing `prod`, `.com` or
    /// `rds.amazonaws`.
    Nuke {
        /// Confirm.
        #[arg(long)]
        yes: bool,
    },
    /// Check the database: integrity, foreign keys, row counts, journal mode, migrations.
    /// Exits non-zero on any problem.
    Health {
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write every table to DIR (new or empty) as JSON Lines, with manifest.json (format
    /// version, migrations, row counts, SHA-256 checksums). Reads one consistent snapshot.
    Export {
        /// The directory to write.
        dir: PathBuf,
    },
    /// Load an export from DIR into an empty database (migrated first), all or nothing,
    /// after checking the manifest, every checksum, count and row.
    Import {
        /// The export directory.
        dir: PathBuf,
    },
    /// Copy the SQLite database to FILE while it is in use (VACUUM INTO); never overwrites.
    /// On PostgreSQL, use pg_dump.
    Backup {
        /// The new file.
        file: PathBuf,
    },
    /// Refresh the planner statistics now: SQLite `PRAGMA optimize`, PostgreSQL `ANALYZE` of
    /// the model's tables. Also `analyze`.
    #[command(alias = "analyze")]
    Maintain {
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a maintenance command; the error, if any, is printed by `main` (non-zero exit).
pub async fn run(command: OpsCommand, config: &Config) -> anyhow::Result<()> {
    let url = &config.database_url;
    match command {
        OpsCommand::Reset { yes } => {
            let effect = "delete every row of every table (the schema stays)";
            guard::not_in_production("reset", config.production, effect)?;
            guard::confirmed("reset", yes, url, effect)?;
            guard::existing_sqlite("reset", url)?;
            let db = connect(config)?;
            let outcome = wipe::reset(&db).await?;
            db.close();
            println!(
                "reset: deleted {} rows from {} tables; the schema and migrations are unchanged",
                outcome.rows(),
                outcome.tables.len()
            );
        }
        OpsCommand::Nuke { yes } => {
            let effect = "drop every table, the view and the migration record";
            guard::not_in_production("nuke", config.production, effect)?;
            guard::not_production_like("nuke", url)?;
            guard::confirmed("nuke", yes, url, effect)?;
            guard::existing_sqlite("nuke", url)?;
            let db = connect(config)?;
            let outcome = wipe::nuke(&db).await?;
            db.close();
            println!(
                "nuke: dropped {} objects; run `iofold-graph migrate` to rebuild the schema",
                outcome.dropped.len()
            );
            if !outcome.left_alone.is_empty() {
                println!("left alone (not part of the model): {}", outcome.left_alone.join(", "));
            }
        }
        OpsCommand::Health { json } => {
            guard::existing_sqlite("health", url)?;
            let db = connect(config)?;
            let mut report = health::check(&db).await;
            report.add_drift(drift::check(url).await);
            report.add_figures(maintain::figures(&db, true).await);
            let db = db
                .with_replicas(url, &config.replicas, &PoolOptions { max_size: 1 })
                .map_err(|e| anyhow::anyhow!(e))?;
            if let Some(replicas) = &db.replicas {
                report.add_replicas(replicas).await;
            }
            db.close();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
            if !report.ok {
                let first = report.problems.first().map(ToString::to_string).unwrap_or_default();
                anyhow::bail!("health check failed: {} problem(s), first: {first}", report.problems.len());
            }
        }
        OpsCommand::Export { dir } => {
            guard::existing_sqlite("export", url)?;
            let db = connect(config)?;
            let manifest = dump::export(&db, &dir).await?;
            db.close();
            println!(
                "exported {} rows of {} tables to {} (format version {})",
                manifest.rows(),
                manifest.tables.len(),
                dir.display(),
                manifest.format_version
            );
        }
        OpsCommand::Import { dir } => {
            // Everything about the export is checked before the database is touched.
            let verified = dump::verify(&dir)?;
            let applied = migrations::run_pending(url).await?;
            if !applied.is_empty() {
                println!("applied migrations {}", applied.join(", "));
            }
            let db = connect(config)?;
            let outcome = dump::import(&db, &verified).await;
            db.close();
            let outcome = outcome?;
            println!(
                "imported {} rows into {} tables from {} ({} export)",
                outcome.rows(),
                outcome.tables.len(),
                dir.display(),
                verified.manifest.source_backend
            );
        }
        OpsCommand::Maintain { json } => {
            guard::existing_sqlite("maintain", url)?;
            let db = connect(config)?;
            let outcome = maintain::run(&db, maintain::Trigger::OnDemand).await;
            db.close();
            let outcome = outcome?;
            if json {
                println!("{}", serde_json::to_string_pretty(&outcome)?);
            } else if outcome.status == "done" {
                println!(
                    "maintain: {} in {} ms; {}",
                    outcome.statement.as_deref().unwrap_or_default(),
                    outcome.elapsed_ms,
                    match (outcome.backend, outcome.tables.is_empty()) {
                        (Backend::Sqlite, true) => "no table needed new statistics".to_owned(),
                        (Backend::Sqlite, false) => format!("new statistics for {}", outcome.tables.join(", ")),
                        (Backend::Postgres, _) => format!("analyzed {}", outcome.tables.join(", ")),
                    }
                );
            } else {
                println!("maintain: skipped: {}", outcome.reason.as_deref().unwrap_or_default());
            }
        }
        OpsCommand::Backup { file } => {
            if url.backend() == Backend::Postgres {
                return Err(backup::postgres_refusal());
            }
            guard::existing_sqlite("backup", url)?;
            let db = connect(config)?;
            let outcome = backup::backup(&db, &file).await;
            db.close();
            let outcome = outcome?;
            println!(
                "backup written to {} ({} bytes, {} rows in {} tables, quick_check ok)",
                outcome.file.display(),
                outcome.bytes,
                outcome.rows(),
                outcome.tables.len()
            );
        }
    }
    Ok(())
}

/// A pool on the configured database, without applying migrations.
fn connect(config: &Config) -> anyhow::Result<Db> {
    open_unmigrated(&config.database_url, config.db_pool_size)
}

/// A pool on `url`, without applying migrations (a missing SQLite file would be created:
/// callers check with [`guard::existing_sqlite`] first).
pub fn open_unmigrated(url: &DatabaseUrl, pool_size: usize) -> anyhow::Result<Db> {
    Ok(Db::connect(url, &PoolOptions { max_size: pool_size.clamp(1, 4) })?)
}
