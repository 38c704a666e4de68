//! `export DIR` and `import DIR`: a portable, versioned dump of every table.
//!
//! Layout of DIR:
//!
//! * `<table>.jsonl` for every table of the model: JSON Lines, one object per row (column
//!   name → value), rows in id order. Timestamps are strings in the fixed UTC form
//!   `YYYY-MM-DDTHH:MM:SS.ffffffZ`, JSON columns are JSON values, booleans are booleans,
//!   integers and doubles are numbers (doubles exact; NaN and infinities, which JSON lacks,
//!   as the strings `NaN`, `Infinity`, `-Infinity`), everything else strings, SQL `NULL`
//!   `null`. In a nullable JSON column `null` is SQL `NULL` (a stored JSON `null` there
//!   comes back as SQL `NULL`).
//! * `manifest.json`: `format` (`iofold-graph-export`), `format_version` ([`FORMAT_VERSION`]),
//!   `created_at`, `tool_version`, `source_backend`, `migrations` (the source's applied
//!   versions) and `tables`: per table in import order `name`, `file`, `columns`, `rows` and
//!   `sha256` (of the file's bytes). It is written last: a directory without it is not an
//!   export.
//!
//! Export reads in one snapshot (PostgreSQL: a `REPEATABLE READ READ ONLY` transaction;
//! SQLite: one read transaction, which WAL keeps consistent while writers go on), a page
//! of rows at a time. Import first verifies everything without touching the database: the
//! manifest's format and version, that its migrations are known to this binary, that its
//! tables and columns are the model's, and every file's checksum, row count and rows (each
//! value of its column's kind). Then, in one transaction on an empty migrated database, it
//! inserts every table parents first (foreign keys deferred to the commit: the agents ↔
//! agent_versions/evals cycle; rows of self-referencing tables sorted parents first),
//! checks the foreign keys and the row counts, and commits: all or nothing.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use diesel_async::AsyncConnection;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::codec::{self, Cell, InsertRows};
use super::conn::{ident, Conn};
use super::health::{known_migrations, migration_state};
use crate::catalog::{self, Table};
use crate::db::sql_types::Timestamp;
use crate::db::{Backend, Db, Pool};
use crate::with_tx;

/// The `format` of a manifest.
pub const FORMAT: &str = "iofold-graph-export";
/// The version of the format this binary writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
/// Rows read per query during export.
const PAGE: usize = 1_000;

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written by this binary.
    pub format_version: u32,
    /// When the export was taken.
    pub created_at: String,
    /// The iofold-graph version that wrote it.
    pub tool_version: String,
    /// `sqlite` or `postgres`.
    pub source_backend: String,
    /// The migrations the source had applied.
    pub migrations: Vec<String>,
    /// Every table, in import order (parents first).
    pub tables: Vec<TableEntry>,
}

/// A table of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEntry {
    /// The table.
    pub name: String,
    /// Its file in the export directory (`<name>.jsonl`).
    pub file: String,
    /// Its columns, in order.
    pub columns: Vec<String>,
    /// How many rows (lines) the file holds.
    pub rows: u64,
    /// The SHA-256 of the file's bytes, lower-case hex.
    pub sha256: String,
}

impl Manifest {
    /// Rows in all.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// Exports every table of `db` into `dir` (created if needed; it must be empty) and returns
/// the manifest written there.
pub async fn export(db: &Db, dir: &Path) -> anyhow::Result<Manifest> {
    prepare_dir(dir)?;
    match export_snapshot(db, dir).await {
        Ok((tables, migrations)) => {
            let manifest = Manifest {
                format: FORMAT.to_owned(),
                format_version: FORMAT_VERSION,
                created_at: Timestamp::now().to_text(),
                tool_version: env!("CARGO_PKG_VERSION").to_owned(),
                source_backend: db.backend().name().to_owned(),
                migrations,
                tables,
            };
            let tmp = dir.join(format!("{MANIFEST}.tmp"));
            let text = serde_json::to_string_pretty(&manifest)? + "\n";
            std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, dir.join(MANIFEST))
                .with_context(|| format!("cannot write {}", dir.join(MANIFEST).display()))?;
            Ok(manifest)
        }
        Err(e) => {
            // Leave no partial export behind.
            for table in catalog::tables() {
                let _ = std::fs::remove_file(dir.join(file_name(table)));
            }
            Err(e.context(format!("export to {} failed; its files were removed", dir.display())))
        }
    }
}

fn file_name(table: &Table) -> String {
    format!("{}.jsonl", table.name)
}

fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        if !dir.is_dir() {
            bail!("export: `{}` exists and is not a directory", dir.display());
        }
        let mut entries = std::fs::read_dir(dir).with_context(|| format!("export: cannot read `{}`", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "export: `{}` is not empty; export into a new or empty directory (nothing is overwritten)",
                dir.display()
            );
        }
    } else {
        std::fs::create_dir_all(dir).with_context(|| format!("export: cannot create `{}`", dir.display()))?;
    }
    Ok(())
}

type Exported = (Vec<TableEntry>, Vec<String>);

async fn export_snapshot(db: &Db, dir: &Path) -> anyhow::Result<Exported> {
    match &db.pool {
        Pool::Postgres(pool) => {
            let mut pooled = pool.get().await?;
            pooled
                .build_transaction()
                .repeatable_read()
                .read_only()
                .run(async |conn| {
                    let mut conn = Conn::Pg(conn);
                    conn.batch(codec::PG_READ_SETUP).await?;
                    export_in(&mut conn, dir).await
                })
                .await
        }
        Pool::Sqlite(pool) => {
            let mut pooled = pool.get().await?;
            AsyncConnection::transaction(&mut *pooled, async |conn| export_in(&mut Conn::Sqlite(conn), dir).await).await
        }
    }
}

async fn export_in(conn: &mut Conn<'_>, dir: &Path) -> anyhow::Result<Exported> {
    let state = migration_state(conn).await?;
    if !state.unknown.is_empty() {
        bail!(
            "export: the database was migrated by a newer iofold-graph (migrations {}); export it with that version",
            state.unknown.join(", ")
        );
    }
    if !state.pending.is_empty() {
        bail!(
            "export: the database has pending migrations ({}); run `iofold-graph migrate` first",
            state.pending.join(", ")
        );
    }
    let backend = conn.backend();
    let mut entries = Vec::new();
    for table in catalog::tables() {
        let path = dir.join(file_name(table));
        let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = BufWriter::new(file);
        let mut hasher = Sha256::new();
        let mut rows = 0u64;
        let id_index = id_index(table)?;
        let mut last: Option<String> = None;
        loop {
            let sql = codec::page_sql(backend, table, last.is_some(), PAGE);
            let page = conn.texts(&sql, last.as_deref()).await?;
            let full = page.len() == PAGE;
            for row in page {
                let row = row.ok_or_else(|| anyhow!("{}: a row read as NULL", table.name))?;
                let object = codec::decode(table, &row).map_err(|e| anyhow!(e))?;
                last = object.get(table.columns[id_index].name).and_then(|v| v.as_str()).map(str::to_owned);
                let mut line = serde_json::to_vec(&object)?;
                line.push(b'\n');
                hasher.update(&line);
                out.write_all(&line).with_context(|| format!("cannot write {}", path.display()))?;
                rows += 1;
            }
            if !full {
                break;
            }
        }
        out.flush().with_context(|| format!("cannot write {}", path.display()))?;
        out.into_inner().map_err(|e| anyhow!("cannot write {}: {}", path.display(), e.error()))?.sync_all()?;
        entries.push(TableEntry {
            name: table.name.to_owned(),
            file: file_name(table),
            columns: table.columns.iter().map(|c| c.name.to_owned()).collect(),
            rows,
            sha256: hex::encode(hasher.finalize()),
        });
    }
    Ok((entries, state.applied))
}

fn id_index(table: &Table) -> anyhow::Result<usize> {
    table.columns.iter().position(|c| c.name == "id").ok_or_else(|| anyhow!("{} has no id column", table.name))
}

/// An export that passed every check of [`verify`].
#[derive(Debug, Clone)]
pub struct Verified {
    /// Its directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

/// Checks an export without touching any database: the manifest (format, version, known
/// migrations, the model's tables and columns, plain file names), then every file's SHA-256,
/// line count and rows.
pub fn verify(dir: &Path) -> anyhow::Result<Verified> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("import: cannot read {} (is `{}` an export directory?)", path.display(), dir.display())
    })?;
    let raw: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("import: {} is not valid JSON", path.display()))?;
    if raw.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        bail!("import: {} is not an iofold-graph export manifest", path.display());
    }
    match raw.get("format_version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        Some(v) => bail!("import: the export has format version {v}; this binary reads version {FORMAT_VERSION}"),
        None => bail!("import: the manifest has no format_version"),
    }
    let manifest: Manifest =
        serde_json::from_value(raw).with_context(|| format!("import: {} is malformed", path.display()))?;
    let known: BTreeSet<String> =
        known_migrations(Backend::Sqlite).into_iter().chain(known_migrations(Backend::Postgres)).collect();
    let unknown: Vec<&String> = manifest.migrations.iter().filter(|v| !known.contains(*v)).collect();
    if !unknown.is_empty() {
        bail!(
            "import: the export comes from a newer schema (migrations {}); import it with a newer iofold-graph",
            unknown.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    for entry in &manifest.tables {
        if catalog::tables().all(|t| t.name != entry.name) {
            bail!("import: the export has a table `{}` that is not part of the model", entry.name);
        }
    }
    for table in catalog::tables() {
        let entries: Vec<&TableEntry> = manifest.tables.iter().filter(|e| e.name == table.name).collect();
        let [entry] = entries[..] else {
            bail!("import: the manifest lists table {} {} times (once expected)", table.name, entries.len());
        };
        if entry.file != file_name(table) {
            bail!("import: table {}: unexpected file name `{}`", table.name, entry.file);
        }
        let columns: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
        if entry.columns != columns {
            bail!(
                "import: table {}: the export's columns ({}) are not this binary's ({})",
                table.name,
                entry.columns.join(", "),
                columns.join(", ")
            );
        }
        check_file(dir, table, entry)?;
    }
    Ok(Verified { dir: dir.to_owned(), manifest })
}

/// Reads a table's file, checking its checksum, its line count and every row; returns
/// nothing but errors, the checksum's first.
fn check_file(dir: &Path, table: &Table, entry: &TableEntry) -> anyhow::Result<()> {
    let mut first_bad_row = None;
    let (rows, sha256) = read_rows(dir, table, |line_no, row| {
        if let Err(e) = row {
            if first_bad_row.is_none() {
                first_bad_row = Some(format!("line {line_no}: {e}"));
            }
        }
        Ok(())
    })?;
    if sha256 != entry.sha256 {
        bail!(
            "import: table {}: the checksum of {} does not match the manifest (the file is damaged or was edited); \
             nothing was imported",
            table.name,
            entry.file
        );
    }
    if rows != entry.rows {
        bail!(
            "import: table {}: the manifest says {} rows, {} holds {rows}; nothing was imported",
            table.name,
            entry.rows,
            entry.file
        );
    }
    if let Some(error) = first_bad_row {
        bail!("import: table {}: {} {error}; nothing was imported", table.name, entry.file);
    }
    Ok(())
}

/// Reads `<table>.jsonl` line by line, hashing its bytes, and hands each row (typed, or why
/// it is not valid) to `each`. Returns the line count and the SHA-256.
fn read_rows(
    dir: &Path,
    table: &Table,
    mut each: impl FnMut(u64, Result<Vec<Cell>, String>) -> anyhow::Result<()>,
) -> anyhow::Result<(u64, String)> {
    let path = dir.join(file_name(table));
    let file = File::open(&path).with_context(|| format!("import: cannot open {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let mut hasher = Sha256::new();
    let mut line = Vec::new();
    let mut rows = 0u64;
    loop {
        line.clear();
        let n =
            reader.read_until(b'\n', &mut line).with_context(|| format!("import: cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&line);
        rows += 1;
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        let row = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body)
            .map_err(|e| format!("not a JSON object: {e}"))
            .and_then(|object| codec::encode(table, object));
        each(rows, row)?;
    }
    Ok((rows, hex::encode(hasher.finalize())))
}

/// What an import wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportOutcome {
    /// Rows per table, in import order.
    pub tables: Vec<(String, u64)>,
}

impl ImportOutcome {
    /// Rows in all.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

/// Imports a verified export into `db`, which must be migrated and empty, in one
/// transaction.
pub async fn import(db: &Db, verified: &Verified) -> anyhow::Result<ImportOutcome> {
    with_tx!(db, async |conn| {
        let mut conn = Conn::from(conn);
        import_in(&mut conn, verified).await
    })
}

async fn import_in(conn: &mut Conn<'_>, verified: &Verified) -> anyhow::Result<ImportOutcome> {
    let manifest = &verified.manifest;
    let state = migration_state(conn).await?;
    if !state.pending.is_empty() || !state.unknown.is_empty() {
        bail!(
            "import: the database is not at this binary's schema (pending: {:?}, unknown: {:?}); run `iofold-graph migrate`",
            state.pending,
            state.unknown
        );
    }
    let missing: Vec<&String> = manifest.migrations.iter().filter(|v| !state.applied.contains(v)).collect();
    if !missing.is_empty() {
        bail!("import: the database has not applied the export's migrations {missing:?}");
    }
    let mut non_empty = Vec::new();
    for table in catalog::tables() {
        let sql = format!("SELECT COUNT(*) AS n FROM (SELECT 1 FROM {} LIMIT 1) AS x", ident(table.name));
        if conn.count(&sql).await? > 0 {
            non_empty.push(table.name);
        }
    }
    if !non_empty.is_empty() {
        bail!(
            "import needs an empty database, and these tables have rows: {}. Import into a fresh database \
             (or empty this one with `iofold-graph reset --yes`); nothing was imported",
            non_empty.join(", ")
        );
    }
    let backend = conn.backend();
    match backend {
        Backend::Sqlite => conn.batch("PRAGMA defer_foreign_keys = ON").await?,
        Backend::Postgres => conn.batch("SET CONSTRAINTS ALL DEFERRED").await?,
    }
    let mut outcome = ImportOutcome { tables: Vec::new() };
    for table in catalog::tables() {
        let entry = manifest
            .tables
            .iter()
            .find(|e| e.name == table.name)
            .ok_or_else(|| anyhow!("import: the manifest lacks table {}", table.name))?;
        let self_referencing = table.foreign_keys().any(|(_, fk)| fk.table == table.name);
        let chunk = codec::rows_per_insert(table);
        let mut pending: Vec<Vec<Cell>> = Vec::new();
        // Rows are read synchronously and inserted between reads, one chunk at a time
        // (every row of a self-referencing table first, to sort them).
        let path = verified.dir.join(file_name(table));
        let file = File::open(&path).with_context(|| format!("import: cannot open {}", path.display()))?;
        let mut reader = BufReader::new(file);
        let mut hasher = Sha256::new();
        let mut line = Vec::new();
        let mut rows = 0u64;
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .with_context(|| format!("import: cannot read {}", path.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&line);
            rows += 1;
            let body = line.strip_suffix(b"\n").unwrap_or(&line);
            let object = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body)
                .map_err(|e| anyhow!("import: table {} line {rows}: not a JSON object: {e}", table.name))?;
            let cells =
                codec::encode(table, object).map_err(|e| anyhow!("import: table {} line {rows}: {e}", table.name))?;
            pending.push(cells);
            if !self_referencing && pending.len() >= chunk {
                insert(conn, table, &pending).await?;
                pending.clear();
            }
        }
        if hex::encode(hasher.finalize()) != entry.sha256 || rows != entry.rows {
            bail!("import: table {}: {} changed during the import; nothing was imported", table.name, entry.file);
        }
        if self_referencing {
            pending = codec::parents_first(table, pending);
        }
        for rows in pending.chunks(chunk) {
            insert(conn, table, rows).await?;
        }
        outcome.tables.push((table.name.to_owned(), rows));
    }
    // Deferred foreign keys: checked now, inside the transaction, so a violation rolls
    // everything back with a message naming the table.
    match backend {
        Backend::Sqlite => {
            let orphans = conn
                .texts("SELECT DISTINCT \"table\" || ' → ' || parent AS v FROM pragma_foreign_key_check", None)
                .await?;
            if !orphans.is_empty() {
                bail!(
                    "import: rows reference rows the export does not have ({}); nothing was imported",
                    orphans.into_iter().flatten().collect::<Vec<_>>().join(", ")
                );
            }
        }
        Backend::Postgres => conn
            .batch("SET CONSTRAINTS ALL IMMEDIATE")
            .await
            .map_err(|e| anyhow!("import: {e}; nothing was imported"))?,
    }
    for (name, expected) in &outcome.tables {
        let n = conn.count(&format!("SELECT COUNT(*) AS n FROM {}", ident(name))).await?;
        if n as u64 != *expected {
            bail!("import: table {name}: {n} rows after the import, {expected} expected; nothing was imported");
        }
    }
    Ok(outcome)
}

async fn insert(conn: &mut Conn<'_>, table: &Table, rows: &[Vec<Cell>]) -> anyhow::Result<()> {
    use diesel_async::RunQueryDsl;
    if rows.is_empty() {
        return Ok(());
    }
    let query = InsertRows { table, rows };
    let result = match conn {
        Conn::Pg(c) => query.execute(&mut **c).await,
        Conn::Sqlite(c) => query.execute(&mut **c).await,
    };
    result.map_err(|e| anyhow!("import: table {}: {e}; nothing was imported", table.name))?;
    Ok(())
}
