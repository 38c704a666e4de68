//! `backup FILE`: a consistent copy of a SQLite database taken while it is in use.
//!
//! `VACUUM INTO` reads the database in one read transaction (in WAL mode writers carry on)
//! and writes a compact copy, in rollback-journal mode, to a new file. The copy is then
//! opened and checked (`PRAGMA quick_check`, row counts). PostgreSQL is refused: use
//! `pg_dump` (or `export`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use diesel_async::AsyncConnection;

use super::conn::{ident, literal, Conn};
use crate::catalog;
use crate::db::{Db, Pool, SqliteConn};

/// What `backup` wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupOutcome {
    /// The copy.
    pub file: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Rows per table in the copy.
    pub tables: Vec<(String, i64)>,
}

impl BackupOutcome {
    /// Rows in all.
    pub fn rows(&self) -> i64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

/// The refusal on PostgreSQL.
pub fn postgres_refusal() -> anyhow::Error {
    anyhow::anyhow!(
        "backup copies a SQLite database file; on PostgreSQL use pg_dump \
         (e.g. `pg_dump --format=custom --file=iofold.dump \"$DATABASE_URL\"`, restored with pg_restore), \
         or `iofold-graph export DIR` for a portable dump. Nothing was written"
    )
}

/// Copies the SQLite database behind `db` into `file`, which must not exist.
pub async fn backup(db: &Db, file: &Path) -> anyhow::Result<BackupOutcome> {
    let Pool::Sqlite(pool) = &db.pool else {
        return Err(postgres_refusal());
    };
    if file.exists() {
        bail!("backup: `{}` exists already; backup never overwrites a file, choose a new name", file.display());
    }
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            bail!("backup: the directory `{}` does not exist", parent.display());
        }
    }
    let Some(target) = file.to_str() else {
        bail!("backup: the file name `{}` is not valid UTF-8", file.display());
    };
    {
        let mut pooled = pool.get().await?;
        Conn::Sqlite(&mut pooled)
            .batch(&format!("VACUUM INTO {}", literal(target)))
            .await
            .with_context(|| format!("backup into `{}` failed", file.display()))?;
    }
    // Open the copy as it is (no pragmas: it stays in rollback-journal mode) and check it.
    let mut copy = SqliteConn::establish(target)
        .await
        .with_context(|| format!("backup: cannot open the copy `{}`", file.display()))?;
    let mut conn = Conn::Sqlite(&mut copy);
    let check: Vec<String> =
        conn.texts("SELECT quick_check AS v FROM pragma_quick_check", None).await?.into_iter().flatten().collect();
    if check != ["ok"] {
        bail!("backup: the copy `{}` fails its check: {}", file.display(), check.join("; "));
    }
    let mut tables = Vec::new();
    for table in catalog::tables() {
        let n = conn
            .count(&format!("SELECT COUNT(*) AS n FROM {}", ident(table.name)))
            .await
            .with_context(|| format!("backup: the copy has no readable table {}", table.name))?;
        tables.push((table.name.to_owned(), n));
    }
    let bytes = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    Ok(BackupOutcome { file: file.to_owned(), bytes, tables })
}
