//! What the benchmarks share: a fresh, migrated database per backend (a temporary SQLite
//! file, or a new schema in a PostgreSQL database), removed afterwards, and the server
//! configuration they run with.

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use iofold_graph::config::{Config, ConfigArgs, LogFormat};
use iofold_graph::db::{migrations, DatabaseUrl};

/// A fresh, migrated database for one benchmark run.
pub struct BenchDb {
    /// Its URL.
    pub url: DatabaseUrl,
    sqlite_file: Option<std::path::PathBuf>,
    pg: Option<(String, String)>,
}

impl BenchDb {
    /// A new database on `backend` (`sqlite` or `postgres`; PostgreSQL under `pg_base`),
    /// named after the benchmark and the process, with every migration applied.
    pub async fn create(backend: &str, name: &str, pg_base: &str) -> BenchDb {
        let tag = format!("{name}_{}", std::process::id());
        let db = match backend {
            "sqlite" => {
                let path = std::env::temp_dir().join(format!("iofold-{tag}.db"));
                let url = DatabaseUrl::Sqlite(path.to_string_lossy().into_owned());
                BenchDb { url, sqlite_file: Some(path), pg: None }
            }
            "postgres" => {
                let mut admin = AsyncPgConnection::establish(pg_base).await.expect("PostgreSQL for the benchmark");
                admin
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {tag} CASCADE; CREATE SCHEMA {tag}"))
                    .await
                    .unwrap();
                let sep = if pg_base.contains('?') { '&' } else { '?' };
                let url = DatabaseUrl::Postgres(format!("{pg_base}{sep}options=-csearch_path%3D{tag}"));
                BenchDb { url, sqlite_file: None, pg: Some((pg_base.to_owned(), tag)) }
            }
            other => panic!("unknown backend {other} (sqlite or postgres)"),
        };
        migrations::run_pending(&db.url).await.expect("migrations");
        db
    }

    /// The server configuration on this database (development settings, the given admin
    /// secret, a pool of `pool_size`).
    #[allow(dead_code)] // not every benchmark seeds through the server's configuration
    pub fn config(&self, admin_secret: Option<&str>, pool_size: u32) -> Config {
        Config::from_args(&ConfigArgs {
            database_url: self.url.as_str().to_owned(),
            db_pool_size: pool_size,
            host: "127.0.0.1".parse().unwrap(),
            port: 0,
            admin_secret: admin_secret.map(str::to_owned),
            encryption_key: None,
            app_env: None,
            log_format: LogFormat::Human,
        })
        .expect("the benchmark's configuration")
    }

    /// Removes the database (the SQLite file and its WAL, or the PostgreSQL schema).
    pub async fn remove(self) {
        if let Some(path) = &self.sqlite_file {
            for suffix in ["", "-wal", "-shm"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
        }
        if let Some((base, schema)) = &self.pg {
            let mut admin = AsyncPgConnection::establish(base).await.unwrap();
            admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await.unwrap();
        }
    }
}

/// An environment variable, or its default.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A duration in milliseconds, two decimals.
#[allow(dead_code)] // not every benchmark reports latencies
pub fn ms(d: std::time::Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// The `q` quantile of sorted durations (zero when there are none).
#[allow(dead_code)]
pub fn percentile(sorted: &[std::time::Duration], q: f64) -> std::time::Duration {
    if sorted.is_empty() {
        return std::time::Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// The server's `iofold_db_statements_total` (SQL statements started) in a `/metrics` page.
#[allow(dead_code)] // not every benchmark reads the server's metrics
pub fn statements_total(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("iofold_db_statements_total"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// A measured cell of a closed-loop benchmark: requests per second, p50, p99, errors.
#[allow(dead_code)] // not every benchmark runs closed-loop cells
pub struct Cell {
    /// Requests answered per second of the measured window.
    pub rps: f64,
    /// The median latency.
    pub p50: std::time::Duration,
    /// The 99th percentile.
    pub p99: std::time::Duration,
    /// Requests that failed.
    pub errors: usize,
    /// The first failure, to show.
    pub first_error: Option<String>,
}

/// What a client task of a cell returns: its latencies (measured window only) and its errors.
#[allow(dead_code)]
pub type Outcome = tokio::task::JoinHandle<(Vec<std::time::Duration>, Vec<String>)>;

#[allow(dead_code)]
impl Cell {
    /// Lets the clients run until `seconds` after `measured_from`, stops them and gathers
    /// what they measured (each client counts only what it sent after `measured_from`).
    pub async fn after(
        tasks: Vec<Outcome>,
        stop: &std::sync::atomic::AtomicBool,
        measured_from: std::time::Instant,
        seconds: u64,
    ) -> Cell {
        tokio::time::sleep_until((measured_from + std::time::Duration::from_secs(seconds)).into()).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let elapsed = measured_from.elapsed();
        let (mut latencies, mut errors) = (Vec::new(), Vec::new());
        for task in tasks {
            let (l, e) = task.await.unwrap();
            latencies.extend(l);
            errors.extend(e);
        }
        latencies.sort();
        Cell {
            rps: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: percentile(&latencies, 0.5),
            p99: percentile(&latencies, 0.99),
            errors: errors.len(),
            first_error: errors.into_iter().next(),
        }
    }
}
