//! Read replicas (PostgreSQL streaming replicas) and read-your-writes.
//!
//! [`Replicas`] holds one pool per replica (`DATABASE_READ_URLS`) and what a background
//! poller last saw of each: reachable or not, its replay position
//! (`pg_last_wal_replay_lsn()`) and its lag behind the primary in bytes of WAL
//! (`pg_current_wal_lsn()` on the primary minus the replica's replay position). A
//! [`Route`] is what one request (or one WebSocket operation) reads from: reads
//! (`records.rs`, through [`with_read_conn!`](crate::with_read_conn)) go to a usable
//! replica, the least busy one, and stay on it for the rest of the request; mutations and
//! everything inside a write transaction go to the primary. A replica is usable when the
//! poller found it up, in recovery (a standby) and at most `REPLICA_MAX_LAG_BYTES` behind,
//! and it has replayed at least the request's [`Lsn`] floor (the consistency token the
//! client sent back, the request's own commits). When no replica is usable, or the one
//! tried fails, the read goes to the primary (counted per reason): a replica never makes a
//! read fail.
//!
//! The consistency token is the primary's WAL position after a write transaction's commit
//! (`pg_current_wal_lsn()` read on the same connection right after `COMMIT`): a replica
//! whose replay position is at least that far has replayed the commit record.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use diesel::sql_types::{Bool, Nullable, Text};
use diesel_async::pooled_connection::deadpool as dp;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod};
use diesel_async::{AsyncConnection, AsyncPgConnection};

use super::{PgPool, PoolOptions, Stats};

/// A position in PostgreSQL's write-ahead log (`pg_lsn`), as a number. Its text form is
/// PostgreSQL's (`16/B374D848`): what the consistency token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Lsn(pub u64);

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl std::str::FromStr for Lsn {
    type Err = ();

    /// `X/Y`, each part 1 to 8 hexadecimal digits (either case), as PostgreSQL writes a `pg_lsn`.
    fn from_str(text: &str) -> Result<Self, ()> {
        let (high, low) = text.split_once('/').ok_or(())?;
        let part = |p: &str| {
            if p.is_empty() || p.len() > 8 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(());
            }
            u64::from_str_radix(p, 16).map_err(|_| ())
        };
        Ok(Lsn((part(high)? << 32) | part(low)?))
    }
}

/// The header that carries a consistency token, both ways.
pub const CONSISTENCY_HEADER: &str = "x-iofold-consistency";

/// How long a replica's connection may take to open, and a poll of it to answer: a replica
/// that does not answer is skipped, not waited for.
pub const REPLICA_TIMEOUT: Duration = Duration::from_secs(2);

/// The replica settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSettings {
    /// One URL per replica.
    pub urls: Vec<String>,
    /// The most a replica may lag behind the primary, in bytes of WAL, and still serve
    /// reads without a token.
    pub max_lag_bytes: u64,
    /// How often the poller reads the replicas' replay positions.
    pub poll_interval: Duration,
}

/// What the poller last found of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ReplicaState {
    /// Not polled yet: not used.
    Unknown = 0,
    /// Answers and replays: used while within the lag setting.
    Up = 1,
    /// Does not answer (or its last read failed, until the next poll): skipped.
    Down = 2,
    /// Answers but is not in recovery (a primary, or a promoted replica): never used.
    NotStandby = 3,
}

impl ReplicaState {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Up,
            2 => Self::Down,
            3 => Self::NotStandby,
            _ => Self::Unknown,
        }
    }

    /// `unknown`, `up`, `down` or `not_a_standby`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Up => "up",
            Self::Down => "down",
            Self::NotStandby => "not_a_standby",
        }
    }
}

/// One replica: its pool and what is known of it.
pub struct Replica {
    /// `host:port/database`, without credentials or parameters (logs, `/health`, `/metrics`).
    pub name: String,
    url: String,
    pool: PgPool,
    state: AtomicU8,
    replay: AtomicU64,
    lag: AtomicU64,
    reads: AtomicU64,
    failures: AtomicU64,
}

impl Replica {
    /// What the poller last found.
    pub fn state(&self) -> ReplicaState {
        ReplicaState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// The last replay position seen.
    pub fn replay(&self) -> Lsn {
        Lsn(self.replay.load(Ordering::Relaxed))
    }

    /// Bytes of WAL behind the primary, at the last poll.
    pub fn lag_bytes(&self) -> u64 {
        self.lag.load(Ordering::Relaxed)
    }

    /// Reads this replica served.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Reads that failed on this replica and were run again on the primary.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn set_state(&self, state: ReplicaState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    fn busy(&self) -> usize {
        let status = self.pool.status();
        status.size.saturating_sub(status.available) + status.waiting
    }
}

/// Why a read went to the primary although replicas are configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrimaryReason {
    /// A mutation's reads (its payload), or a read inside a write transaction.
    Write = 0,
    /// No usable replica had replayed the request's consistency floor.
    Behind = 1,
    /// No replica was usable (down, lagging, not a standby, not polled yet).
    Unavailable = 2,
    /// The replica tried failed: the read ran again on the primary.
    Retry = 3,
}

impl PrimaryReason {
    /// Every reason, in order.
    pub const ALL: [PrimaryReason; 4] = [Self::Write, Self::Behind, Self::Unavailable, Self::Retry];

    /// `write`, `behind`, `unavailable`, `retry`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Write => "write",
            Self::Behind => "behind",
            Self::Unavailable => "unavailable",
            Self::Retry => "retry",
        }
    }
}

/// The replicas of a primary, and what the poller knows of them.
pub struct Replicas {
    list: Vec<Replica>,
    settings: ReplicaSettings,
    primary_url: String,
    primary_position: AtomicU64,
    next: AtomicUsize,
    primary_reads: [AtomicU64; 4],
    polls: AtomicU64,
    polling: AtomicBool,
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.list.iter().map(|r| &r.name)).finish()
    }
}

/// `host:port/database` of a PostgreSQL URL: no user, password or parameters.
pub fn display_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    rest.split(['?', '#']).next().unwrap_or_default().to_owned()
}

impl Replicas {
    /// The pools (opened on first use) for the replicas of the primary at `primary_url`.
    /// Their connections record into `stats` like the primary's, refuse writes
    /// (`default_transaction_read_only`) and give up opening after [`REPLICA_TIMEOUT`].
    pub fn new(
        primary_url: &str,
        settings: &ReplicaSettings,
        options: &PoolOptions,
        stats: &Arc<Stats>,
    ) -> Result<Self, dp::BuildError> {
        let list = settings
            .urls
            .iter()
            .map(|url| {
                let mut config = ManagerConfig::<AsyncPgConnection>::default();
                config.recycling_method = RecyclingMethod::Fast;
                let recorded = stats.clone();
                config.custom_setup =
                    Box::new(move |url| Box::pin(establish_replica(url.to_owned(), recorded.clone())));
                let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
                let pool = deadpool::managed::Pool::builder(manager)
                    .max_size(options.max_size)
                    .wait_timeout(Some(super::CONNECT_TIMEOUT))
                    .create_timeout(Some(REPLICA_TIMEOUT))
                    .recycle_timeout(Some(REPLICA_TIMEOUT))
                    .runtime(deadpool::Runtime::Tokio1)
                    .build()?;
                Ok(Replica {
                    name: display_name(url),
                    url: url.clone(),
                    pool,
                    state: AtomicU8::new(ReplicaState::Unknown as u8),
                    replay: AtomicU64::new(0),
                    lag: AtomicU64::new(0),
                    reads: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                })
            })
            .collect::<Result<Vec<_>, dp::BuildError>>()?;
        Ok(Replicas {
            list,
            settings: settings.clone(),
            primary_url: primary_url.to_owned(),
            primary_position: AtomicU64::new(0),
            next: AtomicUsize::new(0),
            primary_reads: Default::default(),
            polls: AtomicU64::new(0),
            polling: AtomicBool::new(false),
        })
    }

    /// The replicas.
    pub fn list(&self) -> &[Replica] {
        &self.list
    }

    /// The settings.
    pub fn settings(&self) -> &ReplicaSettings {
        &self.settings
    }

    /// The primary's WAL position at the last poll.
    pub fn primary_position(&self) -> Lsn {
        Lsn(self.primary_position.load(Ordering::Relaxed))
    }

    /// Reads served by the primary, for this reason.
    pub fn primary_reads(&self, reason: PrimaryReason) -> u64 {
        self.primary_reads[reason as usize].load(Ordering::Relaxed)
    }

    /// Polls completed.
    pub fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }

    pub(crate) fn count_primary(&self, reason: PrimaryReason) {
        self.primary_reads[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn usable(&self, replica: &Replica, floor: Lsn) -> bool {
        replica.state() == ReplicaState::Up
            && replica.lag_bytes() <= self.settings.max_lag_bytes
            && replica.replay() >= floor
    }

    /// Starts the poller (once): every poll interval it reads the primary's position and
    /// each replica's, on connections of its own (not counted as the server's statements).
    /// It stops when the replicas are dropped.
    pub fn start(self: &Arc<Self>) {
        if self.polling.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let weak = Arc::downgrade(self);
        runtime.spawn(poll_forever(weak, self.settings.poll_interval));
    }

    /// Polls once now, on fresh connections (what `iofold-graph health` does).
    pub async fn poll_now(&self) {
        let mut connections = Connections::new(self.list.len());
        self.poll(&mut connections).await;
    }

    async fn poll(&self, connections: &mut Connections) {
        if let Some(position) = position(&mut connections.primary, &self.primary_url, PRIMARY_POSITION).await {
            self.primary_position.fetch_max(position.0, Ordering::Relaxed);
        }
        let primary = self.primary_position();
        for (replica, conn) in self.list.iter().zip(connections.replicas.iter_mut()) {
            match standby_position(conn, &replica.url).await {
                Some(Some(replay)) => {
                    replica.replay.fetch_max(replay.0, Ordering::Relaxed);
                    replica.lag.store(primary.0.saturating_sub(replica.replay().0), Ordering::Relaxed);
                    replica.set_state(ReplicaState::Up);
                }
                Some(None) => {
                    if replica.state() != ReplicaState::NotStandby {
                        tracing::warn!(replica = %replica.name, "the read replica is not in recovery (not a standby): it serves no reads");
                    }
                    replica.set_state(ReplicaState::NotStandby);
                }
                None => {
                    if replica.state() != ReplicaState::Down {
                        tracing::warn!(replica = %replica.name, "the read replica does not answer: reads skip it until it does");
                    }
                    replica.set_state(ReplicaState::Down);
                }
            }
        }
        self.polls.fetch_add(1, Ordering::Relaxed);
    }

    /// The replica a read at `floor` goes to: `sticky` (the one the request read from
    /// before) when it is still usable, else the least busy usable one; when every replica
    /// that is up and within the lag setting is known to be behind `floor` only from the
    /// cached position, the least busy of them is asked again on the connection the read
    /// will use. `None`: the primary (counted).
    pub(crate) async fn choose(
        &self,
        floor: Lsn,
        sticky: Option<usize>,
    ) -> Option<(usize, dp::Object<AsyncPgConnection>)> {
        if let Some(index) = sticky.filter(|&i| self.list.get(i).is_some_and(|r| self.usable(r, floor))) {
            return self.checkout(index).await;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.list.len();
        let least_busy = |wanted: &dyn Fn(&Replica) -> bool| {
            (0..n).map(|k| (start + k) % n).filter(|&i| wanted(&self.list[i])).min_by_key(|&i| self.list[i].busy())
        };
        if let Some(index) = least_busy(&|r| self.usable(r, floor)) {
            return self.checkout(index).await;
        }
        let Some(index) = least_busy(&|r| self.usable(r, Lsn(0))) else {
            self.count_primary(PrimaryReason::Unavailable);
            return None;
        };
        // Up and near, but behind the floor as last polled: ask once more.
        use diesel_async::RunQueryDsl;
        let (index, mut conn) = self.checkout(index).await?;
        let replica = &self.list[index];
        let replay = tokio::time::timeout(REPLICA_TIMEOUT, async {
            diesel::sql_query(STANDBY_POSITION).get_result::<StandbyPosition>(&mut *conn).await
        })
        .await;
        match replay {
            Ok(Ok(StandbyPosition { in_recovery: true, replay: Some(replay) })) => {
                if let Ok(replay) = replay.parse::<Lsn>() {
                    replica.replay.fetch_max(replay.0, Ordering::Relaxed);
                }
                if replica.replay() >= floor {
                    return Some((index, conn));
                }
                self.count_primary(PrimaryReason::Behind);
                None
            }
            _ => {
                replica.set_state(ReplicaState::Down);
                replica.failures.fetch_add(1, Ordering::Relaxed);
                self.count_primary(PrimaryReason::Retry);
                None
            }
        }
    }

    async fn checkout(&self, index: usize) -> Option<(usize, dp::Object<AsyncPgConnection>)> {
        let replica = &self.list[index];
        match replica.pool.get().await {
            Ok(conn) => Some((index, conn)),
            Err(error) => {
                tracing::warn!(replica = %replica.name, %error, "no connection to the read replica: the read goes to the primary");
                replica.set_state(ReplicaState::Down);
                replica.failures.fetch_add(1, Ordering::Relaxed);
                self.count_primary(PrimaryReason::Retry);
                None
            }
        }
    }

    /// A read on replica `index` failed: it is skipped until the next poll finds it well,
    /// and the read runs again on the primary.
    pub(crate) fn failed(&self, index: usize, error: &dyn std::fmt::Display) {
        let replica = &self.list[index];
        tracing::warn!(replica = %replica.name, %error, "a read failed on the read replica: run again on the primary");
        replica.set_state(ReplicaState::Down);
        replica.failures.fetch_add(1, Ordering::Relaxed);
        self.count_primary(PrimaryReason::Retry);
    }

    pub(crate) fn served(&self, index: usize) {
        self.list[index].reads.fetch_add(1, Ordering::Relaxed);
    }

    /// Closes the pools.
    pub fn close(&self) {
        for replica in &self.list {
            replica.pool.close();
        }
    }

    /// Each replica as `/health` and `health --json` report it.
    pub fn report(&self) -> serde_json::Value {
        let max = self.settings.max_lag_bytes;
        serde_json::Value::Array(
            self.list
                .iter()
                .map(|r| {
                    let state = r.state();
                    serde_json::json!({
                        "name": r.name,
                        "state": state.name(),
                        "reachable": matches!(state, ReplicaState::Up | ReplicaState::NotStandby),
                        "serving": state == ReplicaState::Up && r.lag_bytes() <= max,
                        "lag_bytes": r.lag_bytes(),
                        "replay_lsn": r.replay().to_string(),
                        "reads": r.reads(),
                        "failed_reads": r.failures(),
                    })
                })
                .collect(),
        )
    }
}

/// A metric family of the replicas: name, kind, help, the value per replica.
type Family<'a> = (&'static str, &'static str, &'static str, &'a dyn Fn(&Replica) -> f64);

impl Replicas {
    /// The replicas' figures in Prometheus' text format (`GET /metrics`).
    pub fn render_metrics(&self, out: &mut String) {
        let label = |name: &str| name.replace('\\', "\\\\").replace('"', "\\\"");
        let families: [Family<'_>; 5] = [
            ("iofold_replica_up", "gauge", "1 when the read replica answered the last poll as a standby.", &|r| {
                f64::from(u8::from(r.state() == ReplicaState::Up))
            }),
            (
                "iofold_replica_serving",
                "gauge",
                "1 when the read replica serves reads (up and within REPLICA_MAX_LAG_BYTES).",
                &|r| f64::from(u8::from(self.usable(r, Lsn(0)))),
            ),
            ("iofold_replica_lag_bytes", "gauge", "Bytes of WAL the replica's replay is behind the primary.", &|r| {
                r.lag_bytes() as f64
            }),
            ("iofold_replica_reads_total", "counter", "Reads the replica served.", &|r| r.reads() as f64),
            (
                "iofold_replica_failed_reads_total",
                "counter",
                "Reads that failed on the replica (or found no connection) and ran on the primary.",
                &|r| r.failures() as f64,
            ),
        ];
        for (name, kind, help, value) in families {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for replica in &self.list {
                out.push_str(&format!("{name}{{replica=\"{}\"}} {}\n", label(&replica.name), value(replica)));
            }
        }
        let name = "iofold_replica_primary_reads_total";
        out.push_str(&format!(
            "# HELP {name} Reads served by the primary although replicas are configured, by reason (write: a mutation; \
             behind: no replica had replayed the consistency token; unavailable: no replica usable; retry: a replica \
             failed).\n# TYPE {name} counter\n"
        ));
        for reason in PrimaryReason::ALL {
            out.push_str(&format!("{name}{{reason=\"{}\"}} {}\n", reason.name(), self.primary_reads(reason)));
        }
    }
}

/// The poller's own connections: one to the primary, one per replica (`None`: to open).
struct Connections {
    primary: Option<AsyncPgConnection>,
    replicas: Vec<Option<AsyncPgConnection>>,
}

impl Connections {
    fn new(replicas: usize) -> Self {
        Connections { primary: None, replicas: (0..replicas).map(|_| None).collect() }
    }
}

async fn poll_forever(replicas: Weak<Replicas>, interval: Duration) {
    let mut connections = match replicas.upgrade() {
        Some(replicas) => Connections::new(replicas.list.len()),
        None => return,
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(replicas) = replicas.upgrade() else { return };
        replicas.poll(&mut connections).await;
    }
}

const PRIMARY_POSITION: &str = "SELECT pg_current_wal_lsn()::text AS lsn";
const STANDBY_POSITION: &str = "SELECT pg_is_in_recovery() AS in_recovery, pg_last_wal_replay_lsn()::text AS replay";

#[derive(diesel::QueryableByName)]
struct Position {
    #[diesel(sql_type = Text)]
    lsn: String,
}

#[derive(diesel::QueryableByName)]
struct StandbyPosition {
    #[diesel(sql_type = Bool)]
    in_recovery: bool,
    #[diesel(sql_type = Nullable<Text>)]
    replay: Option<String>,
}

/// Opens `conn` when needed and runs `f` on it, within [`REPLICA_TIMEOUT`]; a failure
/// closes it (the next poll opens a new one).
async fn on_connection<T>(
    conn: &mut Option<AsyncPgConnection>,
    url: &str,
    f: impl for<'c> FnOnce(
        &'c mut AsyncPgConnection,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = diesel::QueryResult<T>> + Send + 'c>>,
) -> Option<T> {
    let outcome = tokio::time::timeout(REPLICA_TIMEOUT, async {
        if conn.is_none() {
            *conn = Some(AsyncPgConnection::establish(url).await.ok()?);
        }
        f(conn.as_mut()?).await.ok()
    })
    .await;
    match outcome {
        Ok(Some(value)) => Some(value),
        _ => {
            *conn = None;
            None
        }
    }
}

async fn position(conn: &mut Option<AsyncPgConnection>, url: &str, sql: &'static str) -> Option<Lsn> {
    use diesel_async::RunQueryDsl;
    let text = on_connection(conn, url, |c| {
        Box::pin(async move { diesel::sql_query(sql).get_result::<Position>(c).await.map(|p| p.lsn) })
    })
    .await?;
    text.parse().ok()
}

/// `Some(Some(replay))` for a standby, `Some(None)` for a server not in recovery, `None`
/// when it does not answer.
async fn standby_position(conn: &mut Option<AsyncPgConnection>, url: &str) -> Option<Option<Lsn>> {
    use diesel_async::RunQueryDsl;
    let position = on_connection(conn, url, |c| {
        Box::pin(async move { diesel::sql_query(STANDBY_POSITION).get_result::<StandbyPosition>(c).await })
    })
    .await?;
    Some(match position {
        StandbyPosition { in_recovery: true, replay: Some(replay) } => replay.parse().ok(),
        _ => None,
    })
}

/// The primary's WAL position now: read on the connection of a transaction that has just
/// committed, it is at or after that transaction's commit record.
pub async fn commit_position(conn: &mut AsyncPgConnection) -> Option<Lsn> {
    use diesel_async::RunQueryDsl;
    let position = diesel::sql_query(PRIMARY_POSITION).get_result::<Position>(conn).await;
    match position {
        Ok(position) => position.lsn.parse().ok(),
        Err(error) => {
            tracing::warn!(%error, "could not read the commit position: no consistency token for this write");
            None
        }
    }
}

/// Opens a replica connection: recorded like the primary's, with the statement timeout,
/// and read-only (`default_transaction_read_only`): a replica never takes a write.
async fn establish_replica(url: String, stats: Arc<Stats>) -> diesel::ConnectionResult<AsyncPgConnection> {
    use diesel_async::SimpleAsyncConnection;
    let mut conn = super::establish_pg(url, stats).await?;
    conn.batch_execute("SET default_transaction_read_only = on")
        .await
        .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
    Ok(conn)
}

/// What one request (or WebSocket operation) reads from: its consistency floor, whether it
/// writes, the replica it read from, its newest commit.
#[derive(Debug, Default)]
pub struct Route {
    /// The least replay position a replica must have reached to serve this request: the
    /// token the client sent, raised by the request's own commits and by the replica it
    /// read from (so its later reads never go back in time).
    floor: AtomicU64,
    /// A position that moves (subscriptions: the newest commit the event bus delivered).
    follow: Option<Arc<AtomicU64>>,
    /// A mutation: every read goes to the primary.
    primary: AtomicBool,
    /// The replica read from (index + 1; 0: none yet).
    sticky: AtomicUsize,
    /// The newest commit position of the request (0: none).
    committed: AtomicU64,
}

impl Route {
    /// A route whose floor is `floor` (the client's consistency token).
    pub fn new(floor: Option<Lsn>) -> Self {
        Route { floor: AtomicU64::new(floor.map_or(0, |l| l.0)), ..Route::default() }
    }

    /// A route that also follows `position` (raised as events are delivered).
    pub fn following(position: Arc<AtomicU64>) -> Self {
        Route { follow: Some(position), ..Route::default() }
    }

    /// The request writes: its reads go to the primary.
    pub fn pin_primary(&self) {
        self.primary.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_pinned(&self) -> bool {
        self.primary.load(Ordering::Relaxed)
    }

    pub(crate) fn floor(&self) -> Lsn {
        let follow = self.follow.as_ref().map_or(0, |f| f.load(Ordering::Relaxed));
        Lsn(self.floor.load(Ordering::Relaxed).max(follow))
    }

    pub(crate) fn sticky(&self) -> Option<usize> {
        self.sticky.load(Ordering::Relaxed).checked_sub(1)
    }

    pub(crate) fn read_from(&self, index: usize, replay: Lsn) {
        self.sticky.store(index + 1, Ordering::Relaxed);
        self.floor.fetch_max(replay.0, Ordering::Relaxed);
    }

    pub(crate) fn forget_replica(&self) {
        self.sticky.store(0, Ordering::Relaxed);
    }

    pub(crate) fn committed_at(&self, position: Lsn) {
        self.committed.fetch_max(position.0, Ordering::Relaxed);
        self.floor.fetch_max(position.0, Ordering::Relaxed);
    }

    /// The newest commit of the request: its consistency token.
    pub fn commit_token(&self) -> Option<Lsn> {
        match self.committed.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Lsn(n)),
        }
    }
}

/// A read on a replica ([`with_read_conn!`](crate::with_read_conn)): its connection, and
/// what to note when it is done.
pub struct ReplicaRead<'a> {
    replicas: &'a Replicas,
    route: Option<&'a Route>,
    index: usize,
    conn: dp::Object<AsyncPgConnection>,
}

impl<'a> ReplicaRead<'a> {
    pub(crate) fn new(
        replicas: &'a Replicas,
        route: Option<&'a Route>,
        index: usize,
        conn: dp::Object<AsyncPgConnection>,
    ) -> Self {
        if let Some(route) = route {
            route.read_from(index, replicas.list[index].replay());
        }
        ReplicaRead { replicas, route, index, conn }
    }

    /// The replica's connection.
    pub fn connection(&mut self) -> &mut AsyncPgConnection {
        &mut self.conn
    }

    /// The read succeeded.
    pub fn served(self) {
        self.replicas.served(self.index);
    }

    /// The read failed: the replica is skipped until the next poll, the request reads from
    /// the primary from now on, and the read runs again there.
    pub fn failed(self, error: &dyn std::fmt::Display) {
        self.replicas.failed(self.index, error);
        if let Some(route) = self.route {
            route.forget_replica();
            route.pin_primary();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text_round_trips_and_refuses_anything_else() {
        for text in ["0/0", "0/3000060", "16/B374D848", "FFFFFFFF/FFFFFFFF"] {
            assert_eq!(text.parse::<Lsn>().unwrap().to_string(), text);
        }
        assert_eq!("16/b374d848".parse::<Lsn>(), Ok(Lsn(0x16_B374_D848)));
        assert!("1/2".parse::<Lsn>().unwrap() > "0/FFFFFFFF".parse::<Lsn>().unwrap());
        for bad in ["", "/", "1/", "/1", "12345", "g/1", "1/2/3", "123456789/1", " 1/2", "1/-2", "1/+2"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad}");
        }
    }

    #[test]
    fn display_names_carry_no_credentials() {
        assert_eq!(display_name("postgres://user:secret@db-1:5433/app?sslmode=require"), "db-1:5433/app");
        assert_eq!(display_name("postgresql://db/app"), "db/app");
        assert_eq!(display_name("postgres://u:p@w@h:1/d"), "h:1/d");
    }
}
