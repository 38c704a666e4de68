//! The database: one [`Db`] over two backends.
//!
//! `Db` is an enum of two deadpool pools, one of diesel-async's `AsyncPgConnection` and one
//! of `SyncConnectionWrapper<SqliteConnection>` (SQLite's synchronous connection run on
//! tokio's blocking threads). A query is written once in Diesel's DSL and [`with_conn!`]
//! expands it once per backend, so both arms are compile-checked and monomorphic: no
//! generic query functions with exploding trait bounds, no trait objects, no runtime SQL
//! translation.

pub mod migrations;
pub mod replicas;
pub mod sql_types;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::{Instrumentation, InstrumentationEvent};

use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;
use diesel_async::pooled_connection::deadpool::{self as dp, BuildError, PoolError};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolableConnection, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

/// A SQLite connection usable from async code.
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection>;
/// The PostgreSQL pool.
pub type PgPool = dp::Pool<AsyncPgConnection>;
/// The SQLite pool.
pub type SqlitePool = dp::Pool<SqliteConn>;

/// How long a request waits for a pooled connection, and how long a new one may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections unused for longer than this are closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long SQLite waits for a lock before it reports `database is locked`.
pub const SQLITE_BUSY_TIMEOUT_MS: u64 = 5_000;

/// Which database a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A SQLite file.
    Sqlite(String),
    /// A PostgreSQL URL (`postgres://` or `postgresql://`).
    Postgres(String),
}

impl DatabaseUrl {
    /// Reads `DATABASE_URL`'s value: `postgres://…` or `postgresql://…` is PostgreSQL;
    /// `sqlite://PATH`, `sqlite:PATH` or a plain path is a SQLite file.
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        if path.is_empty() {
            return Err(
                "DATABASE_URL is empty: leave it unset for ./iofold.db, or give a SQLite path or a postgres:// URL"
                    .into(),
            );
        }
        if path == ":memory:" || path.contains("mode=memory") {
            return Err("DATABASE_URL: an in-memory SQLite database is not supported (every pooled connection would see its own empty database); give a file path".into());
        }
        if let Some((scheme, _)) = path.split_once("://") {
            return Err(format!(
                "DATABASE_URL: unsupported scheme `{scheme}://`; use postgres://, postgresql://, sqlite:// or a file path"
            ));
        }
        Ok(Self::Sqlite(path.to_owned()))
    }

    /// The backend it names.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    /// The URL or path, as given to the driver.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Sqlite(path) | Self::Postgres(path) => path,
        }
    }
}

/// The two backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The embedded SQLite file.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// `sqlite` or `postgres`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// The database: a pool of connections to one of the two backends, and the statistics
/// its connections record. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    /// The connections.
    pub pool: Pool,
    /// What the connections did.
    pub stats: Arc<Stats>,
    /// The write turn on SQLite: the process's write transactions queue here, in arrival
    /// order, before they take a connection and `BEGIN IMMEDIATE`. SQLite runs one writer
    /// at a time anyway; queueing in the process (fair, and free of the busy handler's
    /// sleep-and-retry) keeps a writer from waiting out the busy timeout behind others while
    /// its turn never comes, and leaves the connections to readers meanwhile. The busy
    /// timeout then only covers other processes (the CLI, a backup). Unused on PostgreSQL.
    pub write_turn: Arc<tokio::sync::Mutex<()>>,
    /// The read replicas (PostgreSQL only; `None`: every read goes to the primary).
    pub replicas: Option<Arc<replicas::Replicas>>,
    /// What this request reads from ([`Db::for_request`]); `None` outside requests.
    pub route: Option<Arc<replicas::Route>>,
}

/// A pool of connections to one of the two backends.
#[derive(Clone)]
pub enum Pool {
    /// PostgreSQL.
    Postgres(PgPool),
    /// SQLite.
    Sqlite(SqlitePool),
}

/// Counters every pooled connection updates through Diesel's instrumentation, and the
/// settings it reads (the slow-statement threshold, PostgreSQL's statement timeout).
#[derive(Debug)]
pub struct Stats {
    /// SQL statements started.
    pub statements: AtomicU64,
    /// Statements that took longer than the slow-statement threshold.
    pub slow_statements: AtomicU64,
    /// Statements that failed.
    pub failed_statements: AtomicU64,
    /// Write transactions interrupted before they ended (their request was cancelled:
    /// the client went away or the deadline passed); each connection was rolled back and
    /// closed, never returned to the pool ([`Lease`]).
    pub interrupted_transactions: AtomicU64,
    /// The slow-statement threshold, in microseconds.
    slow_threshold_us: AtomicU64,
    /// PostgreSQL's `statement_timeout` for new connections, in milliseconds (0: none).
    statement_timeout_ms: AtomicU64,
    /// While set, the shape of every statement run ([`Stats::capture_shapes`]).
    shapes: std::sync::Mutex<Option<Vec<String>>>,
    capturing: std::sync::atomic::AtomicBool,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            statements: AtomicU64::new(0),
            slow_statements: AtomicU64::new(0),
            failed_statements: AtomicU64::new(0),
            interrupted_transactions: AtomicU64::new(0),
            slow_threshold_us: AtomicU64::new(DEFAULT_SLOW_STATEMENT.as_micros() as u64),
            statement_timeout_ms: AtomicU64::new(0),
            shapes: std::sync::Mutex::new(None),
            capturing: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// Statements slower than this are logged and counted, unless configured otherwise.
pub const DEFAULT_SLOW_STATEMENT: Duration = Duration::from_millis(100);

impl Stats {
    /// Statements started so far.
    pub fn statements(&self) -> u64 {
        AtomicU64::load(&self.statements, Ordering::Relaxed)
    }

    /// Slow statements so far.
    pub fn slow_statements(&self) -> u64 {
        AtomicU64::load(&self.slow_statements, Ordering::Relaxed)
    }

    /// Failed statements so far.
    pub fn failed_statements(&self) -> u64 {
        AtomicU64::load(&self.failed_statements, Ordering::Relaxed)
    }

    /// Write transactions interrupted so far ([`Lease`]).
    pub fn interrupted_transactions(&self) -> u64 {
        AtomicU64::load(&self.interrupted_transactions, Ordering::Relaxed)
    }

    /// Starts keeping the shape ([`statement_shape`]) of every statement run, until
    /// [`Stats::take_shapes`]: how tests see which columns a read fetches.
    pub fn capture_shapes(&self) {
        *self.shapes.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
        self.capturing.store(true, Ordering::Relaxed);
    }

    /// The shapes kept since [`Stats::capture_shapes`], which stops keeping them.
    pub fn take_shapes(&self) -> Vec<String> {
        self.capturing.store(false, Ordering::Relaxed);
        self.shapes.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default()
    }

    /// The slow-statement threshold.
    pub fn slow_threshold(&self) -> Duration {
        Duration::from_micros(AtomicU64::load(&self.slow_threshold_us, Ordering::Relaxed))
    }

    /// PostgreSQL's statement timeout for new connections.
    pub fn statement_timeout(&self) -> Option<Duration> {
        match AtomicU64::load(&self.statement_timeout_ms, Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

/// Diesel instrumentation: counts each statement a connection starts and logs the ones
/// slower than the threshold, with the statement's SQL shape and never its values (bind
/// parameters are cut off, literals replaced by `?`: [`statement_shape`]). It runs in the
/// span of the request that uses the connection, so slow-statement lines carry the request
/// id: on PostgreSQL the statement runs in the request's task; SQLite's run on a blocking
/// thread, so its recorder is given the span of the task that checks the connection out.
/// Inside [`counting_rows`], a slow statement's line waits for the number of rows the
/// statement returned, and is written with it.
struct Recorder {
    stats: Arc<Stats>,
    started: Option<std::time::Instant>,
    span: Option<tracing::Span>,
    /// SQLite's: the row report of the task that checked the connection out.
    report: Option<RowReport>,
}

impl Recorder {
    fn new(stats: Arc<Stats>, span: Option<tracing::Span>) -> Self {
        Recorder { stats, started: None, span, report: None }
    }

    /// A recorder for a connection checked out now, by the current task.
    fn checked_out(stats: Arc<Stats>) -> Self {
        let report = ROW_REPORT.try_with(Clone::clone).ok();
        Recorder { stats, started: None, span: Some(tracing::Span::current()), report }
    }
}

/// A slow statement whose line waits for its row count.
struct SlowStatement {
    duration_ms: f64,
    failed: bool,
    statement: String,
    span: tracing::Span,
}

impl SlowStatement {
    /// Writes the line (with the rows, when known).
    fn log(self, rows: Option<usize>) {
        let Self { duration_ms, failed, statement, span } = self;
        match rows {
            Some(rows) => tracing::warn!(
                target: "iofold_graph::slow_statement",
                parent: &span,
                duration_ms,
                failed,
                rows,
                statement = %statement,
                "slow statement"
            ),
            None => tracing::warn!(
                target: "iofold_graph::slow_statement",
                parent: &span,
                duration_ms,
                failed,
                statement = %statement,
                "slow statement"
            ),
        }
    }
}

/// The slow statements of a [`counting_rows`] scope.
#[derive(Clone, Default)]
struct RowReport(Arc<std::sync::Mutex<Vec<SlowStatement>>>);

tokio::task_local! {
    static ROW_REPORT: RowReport;
}

/// Runs `load` (statements that return rows, on connections it checks out itself) and
/// writes the slow-statement lines of its statements when it ends, with the rows `rows`
/// counts in its result (none when it failed). Statements run elsewhere are logged as they
/// finish, without a row count.
pub async fn counting_rows<T, E>(
    load: impl std::future::Future<Output = Result<T, E>>,
    rows: impl FnOnce(&T) -> usize,
) -> Result<T, E> {
    let report = RowReport::default();
    let result = ROW_REPORT.scope(report.clone(), load).await;
    let slow = std::mem::take(&mut *report.0.lock().unwrap_or_else(|e| e.into_inner()));
    if !slow.is_empty() {
        let count = result.as_ref().ok().map(rows);
        for statement in slow {
            statement.log(count);
        }
    }
    result
}

impl Instrumentation for Recorder {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { .. } => {
                self.stats.statements.fetch_add(1, Ordering::Relaxed);
                self.started = Some(std::time::Instant::now());
            }
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                if error.is_some() {
                    self.stats.failed_statements.fetch_add(1, Ordering::Relaxed);
                }
                if std::sync::atomic::AtomicBool::load(&self.stats.capturing, Ordering::Relaxed) {
                    let shape = statement_shape(&query.to_string());
                    if let Some(shapes) = self.stats.shapes.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                        shapes.push(shape);
                    }
                }
                let Some(started) = self.started.take() else { return };
                let elapsed = started.elapsed();
                if elapsed >= self.stats.slow_threshold() {
                    self.stats.slow_statements.fetch_add(1, Ordering::Relaxed);
                    let slow = SlowStatement {
                        duration_ms: elapsed.as_secs_f64() * 1000.0,
                        failed: error.is_some(),
                        statement: statement_shape(&query.to_string()),
                        span: self.span.clone().unwrap_or_else(tracing::Span::current),
                    };
                    // PostgreSQL's statements run in the task (its report is at hand);
                    // SQLite's recorder took the report of the task that checked it out.
                    let report = self.report.clone().or_else(|| ROW_REPORT.try_with(Clone::clone).ok());
                    match report {
                        Some(report) => report.0.lock().unwrap_or_else(|e| e.into_inner()).push(slow),
                        None => slow.log(None),
                    }
                }
            }
            _ => {}
        }
    }
}

/// The shape of a statement as Diesel displays it (`SQL -- binds: [...]`): the SQL without
/// the bind values, with string and number literals replaced by `?` and whitespace
/// collapsed, cut at 2,000 characters. Never contains a value the statement was run with.
pub fn statement_shape(displayed: &str) -> String {
    let sql = displayed.split(" -- binds: ").next().unwrap_or_default();
    let mut out = String::with_capacity(sql.len().min(2_048));
    let mut chars = sql.chars().peekable();
    let mut previous = ' ';
    while let Some(c) = chars.next() {
        if out.len() >= 2_000 {
            out.push('…');
            break;
        }
        match c {
            '\'' => {
                // A string literal ('' escapes a quote): its content is a value.
                while let Some(c) = chars.next() {
                    if c == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
                out.push('?');
                previous = '?';
            }
            '0'..='9' if !(previous.is_alphanumeric() || previous == '_' || previous == '$' || previous == '"') => {
                while chars.peek().is_some_and(|c| c.is_ascii_alphanumeric() || *c == '.') {
                    chars.next();
                }
                out.push('?');
                previous = '?';
            }
            c if c.is_whitespace() => {
                if previous != ' ' {
                    out.push(' ');
                }
                previous = ' ';
            }
            c => {
                out.push(c);
                previous = c;
            }
        }
    }
    out.trim_end().to_owned()
}

/// Runs `$body` with `$conn` bound to a pooled connection of whichever backend `$db` is.
/// The body is expanded once per backend, so one DSL expression serves both. A failure to
/// get a connection is returned with `?` (the caller's error type converts from
/// [`PoolError`]).
#[macro_export]
macro_rules! with_conn {
    ($db:expr, |$conn:ident| $body:expr) => {
        match &($db).pool {
            $crate::db::Pool::Postgres(pool) => {
                let mut pooled = pool.get().await?;
                let $conn: &mut diesel_async::AsyncPgConnection = &mut *pooled;
                $body
            }
            $crate::db::Pool::Sqlite(pool) => {
                let mut pooled = pool.get().await?;
                let $conn: &mut $crate::db::SqliteConn = &mut *pooled;
                $body
            }
        }
    };
}

/// Runs a read: `$body` (a `QueryResult`) with `$conn` bound to a connection of the
/// backend and `$value` (moved into the body; cloned when a replica is tried) and the type
/// alias `$backend` naming the backend (`Pg` or `Sqlite`). With read replicas the read goes
/// to the one the request's route chooses ([`Db::replica_read`]); if it fails there, it runs
/// again on the primary (counted, logged): a replica never makes a read fail. Errors are
/// returned with `?`.
#[macro_export]
macro_rules! with_read_conn {
    ($db:expr, $value:ident, |$conn:ident, $backend:ident| $body:expr) => {{
        let db: &$crate::db::Db = $db;
        match &db.pool {
            $crate::db::Pool::Sqlite(pool) => {
                #[allow(dead_code)]
                type $backend = diesel::sqlite::Sqlite;
                let mut pooled = pool.get().await?;
                let $conn: &mut $crate::db::SqliteConn = &mut *pooled;
                $body?
            }
            $crate::db::Pool::Postgres(primary) => {
                #[allow(dead_code)]
                type $backend = diesel::pg::Pg;
                let mut served = None;
                if let Some(mut read) = db.replica_read().await {
                    let outcome = {
                        let $value = $value.clone();
                        let $conn: &mut diesel_async::AsyncPgConnection = read.connection();
                        $body
                    };
                    match outcome {
                        Ok(value) => {
                            read.served();
                            served = Some(value);
                        }
                        Err(error) => read.failed(&error),
                    }
                }
                match served {
                    Some(value) => value,
                    None => {
                        let mut pooled = primary.get().await?;
                        let $conn: &mut diesel_async::AsyncPgConnection = &mut *pooled;
                        $body?
                    }
                }
            }
        }
    }};
}

/// Runs `$body` (an async closure taking the connection) in one write transaction: on
/// PostgreSQL a plain `BEGIN`, on SQLite `BEGIN IMMEDIATE`, which takes the write lock up
/// front instead of failing with `database is locked` when a read inside the transaction is
/// followed by a write under concurrency. On SQLite the transaction first waits its turn
/// among the process's writers ([`Db::write_turn`]), before it takes a connection.
///
/// The connection is held in a [`Lease`]: when the future is dropped before the transaction
/// ended (the client went away, the deadline passed), the connection never goes back to the
/// pool with a transaction open: it is rolled back and closed in the background, and on
/// SQLite the write turn is released only after that. Cancellation-safe by construction.
#[macro_export]
macro_rules! with_tx {
    ($db:expr, async |$conn:ident| $body:expr) => {
        match &($db).pool {
            $crate::db::Pool::Postgres(pool) => {
                let mut lease = $crate::db::Lease::new(pool.get().await?, &($db).stats, None);
                let result = diesel_async::AsyncConnection::transaction(
                    &mut *lease,
                    async |$conn: &mut diesel_async::AsyncPgConnection| $body,
                )
                .await;
                lease.settle();
                if result.is_ok() {
                    ($db).note_commit(&mut *lease).await;
                }
                result
            }
            $crate::db::Pool::Sqlite(pool) => {
                let turn = ::std::sync::Arc::clone(&($db).write_turn).lock_owned().await;
                let mut lease = $crate::db::Lease::new(pool.get().await?, &($db).stats, Some(turn));
                let result = lease.immediate_transaction(async |$conn: &mut $crate::db::SqliteConn| $body).await;
                lease.settle();
                result
            }
        }
    };
}

/// A pooled connection lent to one write transaction ([`with_tx!`]).
///
/// [`Lease::settle`] marks the transaction as ended (committed or rolled back); the
/// connection then goes back to the pool as usual, unless it is broken. A lease dropped
/// unsettled (its future was cancelled mid-transaction) or settled on a broken connection
/// takes the connection out of the pool, and a background task rolls it back and closes it
/// (holding SQLite's write turn, if any, until then): no other request can ever get a
/// connection with an open transaction or its locks. The pool's recycle check
/// (diesel-async's `is_broken`: an open transaction or an interrupted statement) stays as
/// a second line.
pub struct Lease<M: deadpool::managed::Manager>
where
    M::Type: PoolableConnection + SimpleAsyncConnection + Send + 'static,
{
    object: Option<deadpool::managed::Object<M>>,
    stats: Arc<Stats>,
    turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    settled: bool,
}

impl<M: deadpool::managed::Manager> Lease<M>
where
    M::Type: PoolableConnection + SimpleAsyncConnection + Send + 'static,
{
    /// Leases a pooled connection (with SQLite's write turn, held until the lease ends).
    pub fn new(
        object: deadpool::managed::Object<M>,
        stats: &Arc<Stats>,
        turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    ) -> Self {
        Lease { object: Some(object), stats: stats.clone(), turn, settled: false }
    }

    /// The transaction ended: the connection may go back to the pool.
    pub fn settle(&mut self) {
        self.settled = true;
    }
}

impl<M: deadpool::managed::Manager> std::ops::Deref for Lease<M>
where
    M::Type: PoolableConnection + SimpleAsyncConnection + Send + 'static,
{
    type Target = M::Type;
    fn deref(&self) -> &M::Type {
        self.object.as_deref().expect("a lease holds its connection until dropped")
    }
}

impl<M: deadpool::managed::Manager> std::ops::DerefMut for Lease<M>
where
    M::Type: PoolableConnection + SimpleAsyncConnection + Send + 'static,
{
    fn deref_mut(&mut self) -> &mut M::Type {
        self.object.as_deref_mut().expect("a lease holds its connection until dropped")
    }
}

impl<M: deadpool::managed::Manager> Drop for Lease<M>
where
    M::Type: PoolableConnection + SimpleAsyncConnection + Send + 'static,
{
    fn drop(&mut self) {
        let Some(mut object) = self.object.take() else { return };
        if self.settled && !object.is_broken() {
            return; // back to the pool (the turn is released after it).
        }
        if !self.settled {
            self.stats.interrupted_transactions.fetch_add(1, Ordering::Relaxed);
        }
        let conn = deadpool::managed::Object::take(object);
        let turn = self.turn.take();
        let cleanup = async move {
            let mut conn = conn;
            // Waits for a statement still running, then ends the transaction; closing the
            // connection (below) would roll it back too, this makes it immediate.
            let _ = tokio::time::timeout(CONNECT_TIMEOUT, conn.batch_execute("ROLLBACK")).await;
            drop(conn);
            drop(turn);
        };
        // Without a runtime (never in the server) the future is dropped: so are the
        // connection (closing it rolls back) and the turn.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(cleanup);
        }
        if self.settled {
            tracing::warn!("a write connection was broken after its transaction: closed");
        } else {
            tracing::debug!("a write transaction was interrupted: rolled back and its connection closed");
        }
    }
}

/// Settings of the pool.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// The most connections open at once.
    pub max_size: usize,
}

impl Db {
    /// Builds the pool. Connections are opened on first use, so this does not fail when the
    /// database is down; [`Db::ping`] tells.
    pub fn connect(url: &DatabaseUrl, options: &PoolOptions) -> Result<Self, BuildError> {
        let stats = Arc::new(Stats::default());
        let pool = match url {
            DatabaseUrl::Postgres(url) => {
                let mut config = ManagerConfig::<AsyncPgConnection>::default();
                config.recycling_method = RecyclingMethod::Fast;
                let recorded = stats.clone();
                config.custom_setup = Box::new(move |url| Box::pin(establish_pg(url.to_owned(), recorded.clone())));
                let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
                Pool::Postgres(build_pool(manager, options)?)
            }
            DatabaseUrl::Sqlite(path) => {
                let mut config = ManagerConfig::<SqliteConn>::default();
                config.recycling_method = RecyclingMethod::Fast;
                let recorded = stats.clone();
                config.custom_setup = Box::new(move |path| {
                    let recorded = recorded.clone();
                    let path = path.to_owned();
                    Box::pin(async move {
                        let mut conn = establish_sqlite(path).await?;
                        conn.set_instrumentation(Recorder::new(recorded, None));
                        Ok(conn)
                    })
                });
                let manager = AsyncDieselConnectionManager::<SqliteConn>::new_with_config(path, config);
                // At every checkout, the recorder takes the span (and the row report) of the
                // task checking out.
                let in_span = |stats: Arc<Stats>| {
                    dp::Hook::sync_fn(move |conn: &mut SqliteConn, _| {
                        conn.set_instrumentation(Recorder::checked_out(stats.clone()));
                        Ok(())
                    })
                };
                let pool = pool_builder(manager, options)
                    .post_create(in_span(stats.clone()))
                    .post_recycle(in_span(stats.clone()))
                    .build()?;
                Pool::Sqlite(pool)
            }
        };
        Ok(Self { pool, stats, write_turn: Arc::default(), replicas: None, route: None })
    }

    /// Adds read replicas (`DATABASE_READ_URLS`): one pool each, with the primary's
    /// options, recording into the same statistics. PostgreSQL only: on SQLite this is an
    /// error (configuration refuses it before). The poller starts with
    /// [`Db::start_replica_poller`].
    pub fn with_replicas(
        mut self,
        url: &DatabaseUrl,
        settings: &replicas::ReplicaSettings,
        options: &PoolOptions,
    ) -> Result<Self, String> {
        if settings.urls.is_empty() {
            return Ok(self);
        }
        let DatabaseUrl::Postgres(primary) = url else {
            return Err("read replicas (DATABASE_READ_URLS) need PostgreSQL; DATABASE_URL is a SQLite file".into());
        };
        let replicas = replicas::Replicas::new(primary, settings, options, &self.stats).map_err(|e| e.to_string())?;
        self.replicas = Some(Arc::new(replicas));
        Ok(self)
    }

    /// Starts the replicas' poller (nothing without replicas); it ends when the last clone
    /// of this `Db` is gone.
    pub fn start_replica_poller(&self) {
        if let Some(replicas) = &self.replicas {
            replicas.start();
        }
    }

    /// This database for one request: its reads follow a [`replicas::Route`] of their own,
    /// whose floor is the client's consistency token (`None`: any usable replica).
    pub fn for_request(&self, floor: Option<replicas::Lsn>) -> Db {
        Db { route: Some(Arc::new(replicas::Route::new(floor))), ..self.clone() }
    }

    /// This database for one WebSocket operation: its reads never go back before
    /// `position` (the newest commit the event bus delivered, [`crate::events`]).
    pub fn following(&self, position: Arc<AtomicU64>) -> Db {
        Db { route: Some(Arc::new(replicas::Route::following(position))), ..self.clone() }
    }

    /// The request writes (a mutation): its reads go to the primary from now on.
    pub fn pin_primary(&self) {
        if let Some(route) = &self.route {
            route.pin_primary();
        }
    }

    /// The newest commit position of this request's writes, when there are replicas: the
    /// consistency token its response carries.
    pub fn commit_token(&self) -> Option<replicas::Lsn> {
        self.route.as_ref().and_then(|route| route.commit_token())
    }

    /// After a write transaction committed on `conn` (the primary's): with replicas, notes
    /// the commit position for the request's token. A failure is logged (no token).
    pub async fn note_commit(&self, conn: &mut AsyncPgConnection) {
        if let (Some(_), Some(route)) = (&self.replicas, &self.route) {
            if let Some(position) = replicas::commit_position(conn).await {
                route.committed_at(position);
            }
        }
    }

    /// The replica a read goes to ([`with_read_conn!`]), with a connection to it; `None`:
    /// the primary (no replicas, a write, none usable or caught up, or it failed).
    pub async fn replica_read(&self) -> Option<replicas::ReplicaRead<'_>> {
        let replicas = self.replicas.as_deref()?;
        let route = self.route.as_deref();
        if route.is_some_and(|r| r.is_pinned()) {
            replicas.count_primary(replicas::PrimaryReason::Write);
            return None;
        }
        let floor = route.map_or(replicas::Lsn(0), |r| r.floor());
        let (index, conn) = replicas.choose(floor, route.and_then(|r| r.sticky())).await?;
        Some(replicas::ReplicaRead::new(replicas, route, index, conn))
    }

    /// Sets the slow-statement threshold and PostgreSQL's statement timeout (0 or `None`:
    /// none). A changed statement timeout applies to new connections: idle ones are closed.
    pub fn configure(&self, slow_statement: Duration, statement_timeout: Option<Duration>) {
        self.stats.slow_threshold_us.store(slow_statement.as_micros() as u64, Ordering::Relaxed);
        let ms = statement_timeout.map_or(0, |t| t.as_millis().max(1) as u64);
        if self.stats.statement_timeout_ms.swap(ms, Ordering::Relaxed) != ms {
            if let Pool::Postgres(pool) = &self.pool {
                pool.retain(|_, _| false);
            }
        }
    }

    /// The backend behind the pool.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Postgres(_) => Backend::Postgres,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// A database round trip (`SELECT 1`).
    pub async fn ping(&self) -> Result<(), DbError> {
        with_conn!(self, |conn| conn.batch_execute("SELECT 1").await?);
        Ok(())
    }

    /// Pool figures: (open connections, idle connections, tasks waiting, max size).
    pub fn pool_status(&self) -> deadpool::Status {
        match &self.pool {
            Pool::Postgres(pool) => pool.status(),
            Pool::Sqlite(pool) => pool.status(),
        }
    }

    /// Closes connections that have not been used for [`IDLE_TIMEOUT`].
    pub fn close_idle(&self) {
        match &self.pool {
            Pool::Postgres(pool) => {
                pool.retain(|_, metrics| metrics.last_used() < IDLE_TIMEOUT);
            }
            Pool::Sqlite(pool) => {
                pool.retain(|_, metrics| metrics.last_used() < IDLE_TIMEOUT);
            }
        }
    }

    /// Closes the pool: waiting requests fail, open connections close as they come back.
    pub fn close(&self) {
        match &self.pool {
            Pool::Postgres(pool) => pool.close(),
            Pool::Sqlite(pool) => pool.close(),
        }
        if let Some(replicas) = &self.replicas {
            replicas.close();
        }
    }

    /// On SQLite, writes the WAL back into the database file (`wal_checkpoint(TRUNCATE)`);
    /// nothing on PostgreSQL.
    pub async fn checkpoint(&self) -> Result<(), DbError> {
        if let Pool::Sqlite(pool) = &self.pool {
            let mut conn = pool.get().await?;
            conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)").await?;
        }
        Ok(())
    }
}

fn build_pool<M: deadpool::managed::Manager>(
    manager: M,
    options: &PoolOptions,
) -> Result<deadpool::managed::Pool<M>, BuildError> {
    pool_builder(manager, options).build()
}

fn pool_builder<M: deadpool::managed::Manager>(manager: M, options: &PoolOptions) -> deadpool::managed::PoolBuilder<M> {
    deadpool::managed::Pool::builder(manager)
        .max_size(options.max_size)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .runtime(deadpool::Runtime::Tokio1)
}

/// Opens a PostgreSQL connection that records its statements, with the configured
/// `statement_timeout` (PostgreSQL then cancels a longer statement: `TIMEOUT`).
async fn establish_pg(url: String, stats: Arc<Stats>) -> diesel::ConnectionResult<AsyncPgConnection> {
    let mut conn = AsyncPgConnection::establish(&url).await?;
    if let Some(timeout) = stats.statement_timeout() {
        conn.batch_execute(&format!("SET statement_timeout = {}", timeout.as_millis()))
            .await
            .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
    }
    conn.set_instrumentation(Recorder::new(stats, None));
    Ok(conn)
}

/// Opens a SQLite connection and sets, every time: the busy timeout first (so the next
/// pragmas wait for a lock instead of failing), WAL journal, `synchronous=NORMAL` (durable
/// at checkpoints, safe with WAL) and foreign keys on.
pub async fn establish_sqlite(path: String) -> diesel::ConnectionResult<SqliteConn> {
    let mut conn = SqliteConn::establish(&path).await?;
    conn.batch_execute(&sqlite_pragmas()).await.map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
    Ok(conn)
}

/// The pragmas every SQLite connection runs when it opens.
pub fn sqlite_pragmas() -> String {
    format!(
        "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA journal_mode = WAL; \
         PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
    )
}

/// Opens a synchronous SQLite connection with the same pragmas (migrations and CLI tasks).
pub fn establish_sqlite_sync(path: &str) -> diesel::ConnectionResult<SqliteConnection> {
    use diesel::Connection;
    let mut conn = SqliteConnection::establish(path)?;
    conn.batch_execute(&sqlite_pragmas()).map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
    Ok(conn)
}

/// A database failure below the API: a pool that gives no connection, or a query error.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had from the pool.
    #[error("database connection unavailable: {0}")]
    Pool(#[from] PoolError),
    /// A query failed.
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

/// Counts the rows of a table or view (used by CLI reports and tests).
pub async fn count_rows(db: &Db, table: &str) -> Result<i64, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    if !crate::catalog::TABLES.iter().any(|t| t.name == table) {
        return Err(DbError::Query(diesel::result::Error::NotFound));
    }
    let sql = format!("SELECT COUNT(*) AS n FROM {table}");
    let count: Count = with_conn!(db, |conn| diesel::sql_query(&sql).get_result(conn).await?);
    Ok(count.n)
}

#[allow(unused_imports)]
use AsyncConnection as _;
