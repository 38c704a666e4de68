//! Configuration: environment variables and command-line flags (a flag wins), validated at
//! start with a clear message for each bad value.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::crypto::{SecretBox, DEVELOPMENT_KEY_HEX};
use crate::db::replicas::ReplicaSettings;
use crate::db::DatabaseUrl;

/// The settings every command shares, as given.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// The database: a SQLite file path (also `sqlite://PATH`) or a `postgres://` URL.
    #[arg(long, env = "DATABASE_URL", default_value = "./iofold.db", global = true)]
    pub database_url: String,

    /// The most database connections open at once.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = defaults::DB_POOL_SIZE, global = true,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool_size: u32,

    /// The address to listen on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1", global = true)]
    pub host: IpAddr,

    /// The port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8080, global = true)]
    pub port: u16,

    /// A server-wide admin secret; requests that send it as `X-Iofold-Admin-Secret` act on
    /// every workspace. At least 16 characters. Unset: no admin access over HTTP.
    #[arg(long, env = "IOFOLD_ADMIN_SECRET", hide_env_values = true, global = true)]
    pub admin_secret: Option<String>,

    /// The key that encrypts integration API keys: 64 hex characters (32 bytes). Required in
    /// production; elsewhere a fixed development key is used, with a warning.
    #[arg(long, env = "IOFOLD_ENCRYPTION_KEY", hide_env_values = true, global = true)]
    pub encryption_key: Option<String>,

    /// The environment; `production` turns on the production safeguards.
    #[arg(long, env = "APP_ENV", global = true)]
    pub app_env: Option<String>,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
}

/// The server's limits and operations settings (`serve`), as given. Every one has the
/// default of the API's contract (`Limits` in api.md).
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The deepest selection nesting a query may have.
    #[arg(long, env = "MAX_QUERY_DEPTH", default_value_t = defaults::MAX_DEPTH, global = true,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_query_depth: u32,

    /// The most a query may cost: each field 1, a list field its page size (`first`/`last`,
    /// default 20) times its selection.
    #[arg(long, env = "MAX_QUERY_COMPLEXITY", default_value_t = defaults::MAX_COMPLEXITY, global = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_query_complexity: u64,

    /// The most aliased fields an operation may have.
    #[arg(long, env = "MAX_QUERY_ALIASES", default_value_t = defaults::MAX_ALIASES, global = true,
          value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub max_query_aliases: u32,

    /// The largest request body, in bytes (larger: 413 `PAYLOAD_TOO_LARGE`).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = defaults::MAX_BODY_BYTES, global = true,
          value_parser = clap::value_parser!(u64).range(1024..=1 << 32))]
    pub max_body_bytes: u64,

    /// The most operations in one batch (a JSON array of operations).
    #[arg(long, env = "MAX_BATCH_SIZE", default_value_t = defaults::MAX_BATCH, global = true,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_batch_size: u32,

    /// The deadline of a request, in milliseconds (over it: `TIMEOUT`).
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = defaults::REQUEST_TIMEOUT_MS, global = true,
          value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub request_timeout_ms: u64,

    /// PostgreSQL's `statement_timeout` for the server's connections, in milliseconds; 0
    /// turns it off. SQLite has none (the request deadline still holds).
    #[arg(long, env = "STATEMENT_TIMEOUT_MS", default_value_t = defaults::STATEMENT_TIMEOUT_MS, global = true,
          value_parser = clap::value_parser!(u64).range(0..=86_400_000))]
    pub statement_timeout_ms: u64,

    /// Statements slower than this many milliseconds are logged (their SQL shape, never
    /// their values) and counted.
    #[arg(long, env = "SLOW_QUERY_MS", default_value_t = defaults::SLOW_QUERY_MS, global = true)]
    pub slow_query_ms: u64,

    /// Whether introspection (`__schema`, `__type`) answers.
    #[arg(long, env = "GRAPHQL_INTROSPECTION", default_value_t = true, global = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub introspection: bool,

    /// Whether `GET /graphql` from a browser serves GraphiQL.
    #[arg(long, env = "GRAPHIQL", default_value_t = true, global = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub graphiql: bool,

    /// Requests a minute per token (a batch counts each operation); 0: no limit.
    #[arg(long, env = "RATE_LIMIT_PER_MINUTE", default_value_t = 0, global = true,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub rate_limit_per_minute: u32,

    /// On SIGTERM or SIGINT, how long in-flight requests may take to finish, in
    /// milliseconds; then the server stops anyway.
    #[arg(long, env = "SHUTDOWN_GRACE_MS", default_value_t = defaults::SHUTDOWN_GRACE_MS, global = true,
          value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub shutdown_grace_ms: u64,

    /// Whether `GET /metrics` (Prometheus text) answers.
    #[arg(long, env = "METRICS_ENABLED", default_value_t = true, global = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub metrics: bool,

    /// The most operations (subscriptions) one WebSocket connection may run at once; one
    /// more is refused with `TOO_MANY_SUBSCRIPTIONS`.
    #[arg(long, env = "MAX_SUBSCRIPTIONS_PER_CONNECTION", default_value_t = defaults::MAX_SUBSCRIPTIONS_PER_CONNECTION,
          global = true, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_subscriptions_per_connection: u32,

    /// How often the server pings an idle WebSocket connection (graphql-transport-ws `ping`,
    /// legacy graphql-ws `ka`), in milliseconds; 0: never.
    #[arg(long, env = "WS_PING_INTERVAL_MS", default_value_t = defaults::WS_PING_INTERVAL_MS, global = true,
          value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub ws_ping_interval_ms: u64,

    /// How many events a subscriber may fall behind before it is dropped
    /// (`SUBSCRIPTION_LAGGED`): the capacity of the in-process event bus.
    #[arg(long, env = "EVENT_BUS_CAPACITY", default_value_t = defaults::EVENT_BUS_CAPACITY, global = true,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub event_bus_capacity: u32,

    /// How many Apollo persisted queries (automatic persisted queries) the server remembers,
    /// least recently used first out; 0 turns persisted queries off.
    #[arg(long, env = "APQ_CACHE_SIZE", default_value_t = defaults::APQ_CACHE_SIZE, global = true,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub apq_cache_size: u32,

    /// The longest query text (bytes) kept as a persisted query; a longer one runs but is not
    /// remembered.
    #[arg(long, env = "APQ_MAX_QUERY_BYTES", default_value_t = defaults::APQ_MAX_QUERY_BYTES, global = true,
          value_parser = clap::value_parser!(u32).range(1..=16_777_216))]
    pub apq_max_query_bytes: u32,

    /// How long a client may take to send a request's headers, in milliseconds, counted
    /// from when the server waits for the request (a new connection, or the next request on
    /// a kept-alive one): a slower or silent client is disconnected.
    #[arg(long, env = "HTTP_HEADER_TIMEOUT_MS", default_value_t = defaults::HTTP_HEADER_TIMEOUT_MS, global = true,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub http_header_timeout_ms: u64,

    /// How long a connection may read and write nothing while no request is handled, in
    /// milliseconds; then it is closed.
    #[arg(long, env = "HTTP_IDLE_TIMEOUT_MS", default_value_t = defaults::HTTP_IDLE_TIMEOUT_MS, global = true,
          value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub http_idle_timeout_ms: u64,

    /// The most connections open at once (WebSockets included); one more is refused (503).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = defaults::MAX_CONNECTIONS, global = true,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// The most connections open at once from one client address; one more is refused (429).
    #[arg(long, env = "MAX_CONNECTIONS_PER_CLIENT", default_value_t = defaults::MAX_CONNECTIONS_PER_CLIENT,
          global = true, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections_per_client: u32,

    /// The most WebSockets waiting for their `connection_init` to be accepted, in all.
    #[arg(long, env = "MAX_UNAUTHENTICATED_WEBSOCKETS", default_value_t = defaults::MAX_UNAUTHENTICATED_WEBSOCKETS,
          global = true, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_unauthenticated_websockets: u32,

    /// The most WebSockets waiting for their `connection_init` to be accepted, per client
    /// address.
    #[arg(long, env = "MAX_UNAUTHENTICATED_WEBSOCKETS_PER_CLIENT",
          default_value_t = defaults::MAX_UNAUTHENTICATED_WEBSOCKETS_PER_CLIENT, global = true,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_unauthenticated_websockets_per_client: u32,

    /// How often the server refreshes the planner statistics (SQLite `PRAGMA optimize`,
    /// PostgreSQL `ANALYZE`) and re-checks the schema against its migrations, in seconds; 0:
    /// never. The first run is one interval after the start.
    #[arg(long, env = "MAINTENANCE_INTERVAL_SECS", default_value_t = defaults::MAINTENANCE_INTERVAL_SECS,
          global = true, value_parser = clap::value_parser!(u64).range(0..=604_800))]
    pub maintenance_interval_secs: u64,

    /// A read replica of the PostgreSQL primary (a streaming standby): queries read from
    /// the replicas, writes go to the primary. Repeat the flag for several, or give a
    /// comma-separated list in `DATABASE_READ_URLS`. PostgreSQL only.
    #[arg(
        long = "database-read-url",
        env = "DATABASE_READ_URLS",
        value_delimiter = ',',
        global = true,
        hide_env_values = true
    )]
    pub database_read_urls: Vec<String>,

    /// The most a replica may lag behind the primary, in bytes of WAL (the primary's
    /// `pg_current_wal_lsn()` minus the replica's `pg_last_wal_replay_lsn()`), and still
    /// serve reads; a replica further behind is skipped until it catches up.
    #[arg(long, env = "REPLICA_MAX_LAG_BYTES", default_value_t = defaults::REPLICA_MAX_LAG_BYTES, global = true)]
    pub replica_max_lag_bytes: u64,

    /// How often the server reads the replicas' replay positions, in milliseconds.
    #[arg(long, env = "REPLICA_POLL_MS", default_value_t = defaults::REPLICA_POLL_MS, global = true,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub replica_poll_ms: u64,
}

/// The defaults of [`ServerArgs`] (the API contract's limits).
pub mod defaults {
    /// Database connections.
    pub const DB_POOL_SIZE: u32 = 10;
    /// Query depth.
    pub const MAX_DEPTH: u32 = 12;
    /// Query complexity.
    pub const MAX_COMPLEXITY: u64 = 50_000;
    /// Aliases per operation.
    pub const MAX_ALIASES: u32 = 100;
    /// Request body: 16 MiB.
    pub const MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
    /// Operations per batch.
    pub const MAX_BATCH: u32 = 50;
    /// Request deadline.
    pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
    /// PostgreSQL statement timeout.
    pub const STATEMENT_TIMEOUT_MS: u64 = 5_000;
    /// Slow-statement threshold.
    pub const SLOW_QUERY_MS: u64 = 100;
    /// Shutdown grace period.
    pub const SHUTDOWN_GRACE_MS: u64 = 20_000;
    /// Operations one WebSocket connection may run at once.
    pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: u32 = 100;
    /// WebSocket keep-alive ping interval.
    pub const WS_PING_INTERVAL_MS: u64 = 15_000;
    /// Events a subscriber may fall behind.
    pub const EVENT_BUS_CAPACITY: u32 = 1024;
    /// Persisted queries remembered.
    pub const APQ_CACHE_SIZE: u32 = 1000;
    /// Longest persisted query: 64 KiB.
    pub const APQ_MAX_QUERY_BYTES: u32 = 64 * 1024;
    /// Request headers must be complete within 10 s.
    pub const HTTP_HEADER_TIMEOUT_MS: u64 = 10_000;
    /// A connection idle for 60 s is closed.
    pub const HTTP_IDLE_TIMEOUT_MS: u64 = 60_000;
    /// Open connections in all.
    pub const MAX_CONNECTIONS: u32 = 4096;
    /// Open connections per client address.
    pub const MAX_CONNECTIONS_PER_CLIENT: u32 = 256;
    /// WebSockets before `connection_init`, in all.
    pub const MAX_UNAUTHENTICATED_WEBSOCKETS: u32 = 256;
    /// WebSockets before `connection_init`, per client address.
    pub const MAX_UNAUTHENTICATED_WEBSOCKETS_PER_CLIENT: u32 = 16;
    /// Planner statistics refreshed hourly.
    pub const MAINTENANCE_INTERVAL_SECS: u64 = 3_600;
    /// Replica lag, in bytes of WAL (one WAL segment).
    pub const REPLICA_MAX_LAG_BYTES: u64 = 16 * 1024 * 1024;
    /// Replica poll interval.
    pub const REPLICA_POLL_MS: u64 = 200;
}

impl Default for ServerArgs {
    fn default() -> Self {
        Self {
            max_query_depth: defaults::MAX_DEPTH,
            max_query_complexity: defaults::MAX_COMPLEXITY,
            max_query_aliases: defaults::MAX_ALIASES,
            max_body_bytes: defaults::MAX_BODY_BYTES,
            max_batch_size: defaults::MAX_BATCH,
            request_timeout_ms: defaults::REQUEST_TIMEOUT_MS,
            statement_timeout_ms: defaults::STATEMENT_TIMEOUT_MS,
            slow_query_ms: defaults::SLOW_QUERY_MS,
            introspection: true,
            graphiql: true,
            rate_limit_per_minute: 0,
            shutdown_grace_ms: defaults::SHUTDOWN_GRACE_MS,
            metrics: true,
            max_subscriptions_per_connection: defaults::MAX_SUBSCRIPTIONS_PER_CONNECTION,
            ws_ping_interval_ms: defaults::WS_PING_INTERVAL_MS,
            event_bus_capacity: defaults::EVENT_BUS_CAPACITY,
            apq_cache_size: defaults::APQ_CACHE_SIZE,
            apq_max_query_bytes: defaults::APQ_MAX_QUERY_BYTES,
            http_header_timeout_ms: defaults::HTTP_HEADER_TIMEOUT_MS,
            http_idle_timeout_ms: defaults::HTTP_IDLE_TIMEOUT_MS,
            max_connections: defaults::MAX_CONNECTIONS,
            max_connections_per_client: defaults::MAX_CONNECTIONS_PER_CLIENT,
            max_unauthenticated_websockets: defaults::MAX_UNAUTHENTICATED_WEBSOCKETS,
            max_unauthenticated_websockets_per_client: defaults::MAX_UNAUTHENTICATED_WEBSOCKETS_PER_CLIENT,
            maintenance_interval_secs: defaults::MAINTENANCE_INTERVAL_SECS,
            database_read_urls: Vec::new(),
            replica_max_lag_bytes: defaults::REPLICA_MAX_LAG_BYTES,
            replica_poll_ms: defaults::REPLICA_POLL_MS,
        }
    }
}

/// Subscriptions over WebSocket and the event bus that feeds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriptions {
    /// The most operations one connection runs at once (`TOO_MANY_SUBSCRIPTIONS` beyond).
    pub max_per_connection: usize,
    /// How often an idle connection is pinged; `None`: never.
    pub ping_interval: Option<Duration>,
    /// How many events a subscriber may fall behind before it is dropped.
    pub event_capacity: usize,
}

impl Default for Subscriptions {
    fn default() -> Self {
        Subscriptions::from_args(&ServerArgs::default())
    }
}

impl Subscriptions {
    fn from_args(args: &ServerArgs) -> Self {
        Subscriptions {
            max_per_connection: args.max_subscriptions_per_connection as usize,
            ping_interval: (args.ws_ping_interval_ms > 0).then(|| Duration::from_millis(args.ws_ping_interval_ms)),
            event_capacity: args.event_bus_capacity as usize,
        }
    }
}

/// Apollo automatic persisted queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistedQueries {
    /// How many queries are remembered (least recently used out first); 0: off.
    pub cache_size: usize,
    /// The longest query text remembered, in bytes.
    pub max_query_bytes: usize,
}

impl Default for PersistedQueries {
    fn default() -> Self {
        PersistedQueries::from_args(&ServerArgs::default())
    }
}

impl PersistedQueries {
    fn from_args(args: &ServerArgs) -> Self {
        PersistedQueries {
            cache_size: args.apq_cache_size as usize,
            max_query_bytes: args.apq_max_query_bytes as usize,
        }
    }
}

/// What bounds connections: timeouts and caps ([`crate::server::conn`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long the headers of a request may take (from when the server waits for it).
    pub header_timeout: Duration,
    /// How long a connection may be idle (no request handled, nothing read or written).
    pub idle_timeout: Duration,
    /// Open connections in all.
    pub max_connections: usize,
    /// Open connections per client address.
    pub max_connections_per_client: usize,
    /// WebSockets before an accepted `connection_init`, in all.
    pub max_unauthenticated_websockets: usize,
    /// WebSockets before an accepted `connection_init`, per client address.
    pub max_unauthenticated_websockets_per_client: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits::from_args(&ServerArgs::default())
    }
}

impl ConnectionLimits {
    fn from_args(args: &ServerArgs) -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_millis(args.http_header_timeout_ms),
            idle_timeout: Duration::from_millis(args.http_idle_timeout_ms),
            max_connections: args.max_connections as usize,
            max_connections_per_client: args.max_connections_per_client as usize,
            max_unauthenticated_websockets: args.max_unauthenticated_websockets as usize,
            max_unauthenticated_websockets_per_client: args.max_unauthenticated_websockets_per_client as usize,
        }
    }
}

/// What a request may ask of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The deepest selection nesting (`QUERY_TOO_COMPLEX` beyond).
    pub max_depth: usize,
    /// The highest complexity (`QUERY_TOO_COMPLEX` beyond).
    pub max_complexity: u64,
    /// The most aliased fields in an operation (`QUERY_TOO_COMPLEX` beyond).
    pub max_aliases: usize,
    /// The largest body in bytes (`PAYLOAD_TOO_LARGE`, HTTP 413, beyond).
    pub max_body_bytes: usize,
    /// The most operations in a batch (`BATCH_TOO_LARGE` beyond).
    pub max_batch: usize,
    /// The deadline of a request (`TIMEOUT` after).
    pub request_timeout: Duration,
    /// PostgreSQL's statement timeout (`TIMEOUT` after); `None`: off.
    pub statement_timeout: Option<Duration>,
    /// Whether introspection answers.
    pub introspection: bool,
    /// Whether GraphiQL is served.
    pub graphiql: bool,
    /// Requests a minute per token (`RATE_LIMITED` beyond); `None`: no limit.
    pub rate_limit_per_minute: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_args(&ServerArgs::default())
    }
}

impl Limits {
    fn from_args(args: &ServerArgs) -> Self {
        Limits {
            max_depth: args.max_query_depth as usize,
            max_complexity: args.max_query_complexity,
            max_aliases: args.max_query_aliases as usize,
            max_body_bytes: usize::try_from(args.max_body_bytes).unwrap_or(usize::MAX),
            max_batch: args.max_batch_size as usize,
            request_timeout: Duration::from_millis(args.request_timeout_ms),
            statement_timeout: (args.statement_timeout_ms > 0)
                .then(|| Duration::from_millis(args.statement_timeout_ms)),
            introspection: args.introspection,
            graphiql: args.graphiql,
            rate_limit_per_minute: (args.rate_limit_per_minute > 0).then_some(args.rate_limit_per_minute),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object a line.
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The database.
    pub database_url: DatabaseUrl,
    /// Pool size.
    pub db_pool_size: usize,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The admin secret, if any.
    pub admin_secret: Option<String>,
    /// Encrypts integration API keys.
    pub secrets: SecretBox,
    /// Whether the development encryption key is in use.
    pub development_key: bool,
    /// Whether this is production (`APP_ENV` or `NODE_ENV` is `production`).
    pub production: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// What a request may ask of the server.
    pub limits: Limits,
    /// Statements slower than this are logged and counted.
    pub slow_statement: Duration,
    /// How long in-flight requests may take to finish after SIGTERM or SIGINT.
    pub shutdown_grace: Duration,
    /// Whether `GET /metrics` answers.
    pub metrics: bool,
    /// Subscriptions and their event bus.
    pub subscriptions: Subscriptions,
    /// Apollo automatic persisted queries.
    pub persisted_queries: PersistedQueries,
    /// Connection timeouts and caps.
    pub connections: ConnectionLimits,
    /// How often the server refreshes the planner statistics; `None`: never.
    pub maintenance_interval: Option<Duration>,
    /// The read replicas (none: every read goes to the primary).
    pub replicas: ReplicaSettings,
}

impl Config {
    /// Validates the arguments with the default limits, reporting every bad value at once.
    pub fn from_args(args: &ConfigArgs) -> Result<Config, ConfigError> {
        Self::from_all(args, &ServerArgs::default())
    }

    /// Validates the arguments and the server's settings, reporting every bad value at once.
    pub fn from_all(args: &ConfigArgs, server: &ServerArgs) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let production = is_production(args.app_env.as_deref(), std::env::var("NODE_ENV").ok().as_deref());
        let database_url = DatabaseUrl::parse(&args.database_url).map_err(|e| problems.push(e)).ok();
        if let Some(secret) = &args.admin_secret {
            if secret.trim().len() < 16 {
                problems.push("IOFOLD_ADMIN_SECRET must be at least 16 characters long".to_owned());
            }
        }
        let (secrets, development_key) = match args.encryption_key.as_deref().map(str::trim) {
            Some(key) if !key.is_empty() => match SecretBox::from_hex(key) {
                Ok(secret_box) => (Some(secret_box), false),
                Err(e) => {
                    problems.push(format!("IOFOLD_ENCRYPTION_KEY {e}"));
                    (None, false)
                }
            },
            _ if production => {
                problems.push(
                    "IOFOLD_ENCRYPTION_KEY is required in production (64 hex characters; e.g. `openssl rand -hex 32`)"
                        .to_owned(),
                );
                (None, false)
            }
            _ => (SecretBox::from_hex(DEVELOPMENT_KEY_HEX).ok(), true),
        };
        let replicas = ReplicaSettings {
            urls: server.database_read_urls.iter().map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()).collect(),
            max_lag_bytes: server.replica_max_lag_bytes,
            poll_interval: Duration::from_millis(server.replica_poll_ms),
        };
        if !replicas.urls.is_empty() {
            if matches!(database_url, Some(DatabaseUrl::Sqlite(_))) {
                problems.push(
                    "DATABASE_READ_URLS (--database-read-url): read replicas need PostgreSQL, and DATABASE_URL is a \
                     SQLite file; unset DATABASE_READ_URLS"
                        .to_owned(),
                );
            }
            for (i, url) in replicas.urls.iter().enumerate() {
                if !matches!(DatabaseUrl::parse(url), Ok(DatabaseUrl::Postgres(_))) {
                    problems.push(format!(
                        "DATABASE_READ_URLS: read replica {} is not a postgres:// or postgresql:// URL",
                        i + 1
                    ));
                }
            }
        }
        match (database_url, secrets) {
            (Some(database_url), Some(secrets)) if problems.is_empty() => Ok(Config {
                database_url,
                db_pool_size: args.db_pool_size as usize,
                listen: SocketAddr::new(args.host, args.port),
                admin_secret: args.admin_secret.clone(),
                secrets,
                development_key,
                production,
                log_format: args.log_format,
                limits: Limits::from_args(server),
                slow_statement: Duration::from_millis(server.slow_query_ms),
                shutdown_grace: Duration::from_millis(server.shutdown_grace_ms),
                metrics: server.metrics,
                subscriptions: Subscriptions::from_args(server),
                persisted_queries: PersistedQueries::from_args(server),
                connections: ConnectionLimits::from_args(server),
                maintenance_interval: (server.maintenance_interval_secs > 0)
                    .then(|| Duration::from_secs(server.maintenance_interval_secs)),
                replicas,
            }),
            _ => Err(ConfigError(problems)),
        }
    }
}

/// "Production" means `APP_ENV` or `NODE_ENV` is `production`.
pub fn is_production(app_env: Option<&str>, node_env: Option<&str>) -> bool {
    [app_env, node_env].into_iter().flatten().any(|v| v.trim().eq_ignore_ascii_case("production"))
}

/// Every problem found in the configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        server: ServerArgs,
    }

    fn parse(args: &[&str]) -> Result<Config, String> {
        let cli = Cli::try_parse_from(std::iter::once("iofold-graph").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Config::from_all(&cli.config, &cli.server).map_err(|e| e.to_string())
    }

    #[test]
    fn each_bad_value_gets_a_clear_message() {
        let err =
            parse(&["--database-url", "mysql://x", "--admin-secret", "short", "--encryption-key", "zz"]).unwrap_err();
        assert!(err.contains("unsupported scheme `mysql://`"), "{err}");
        assert!(err.contains("IOFOLD_ADMIN_SECRET must be at least 16"), "{err}");
        assert!(err.contains("IOFOLD_ENCRYPTION_KEY must be 64 hexadecimal"), "{err}");
        assert!(parse(&["--db-pool-size", "0"]).unwrap_err().contains("0 is not in 1..=1000"));
        assert!(parse(&["--port", "70000"]).unwrap_err().contains("70000"));
        let err = parse(&["--app-env", "production"]).unwrap_err();
        assert!(err.contains("IOFOLD_ENCRYPTION_KEY is required in production"), "{err}");
    }

    #[test]
    fn read_replicas_need_postgres() {
        let config = parse(&[]).unwrap();
        assert!(config.replicas.urls.is_empty());
        assert_eq!(config.replicas.max_lag_bytes, 16 << 20);
        assert_eq!(config.replicas.poll_interval, Duration::from_millis(200));
        let config = parse(&[
            "--database-url",
            "postgres://u@p/db",
            "--database-read-url",
            "postgres://u@r1/db,postgres://u@r2/db",
            "--database-read-url",
            "postgresql://u@r3/db",
            "--replica-max-lag-bytes",
            "0",
            "--replica-poll-ms",
            "50",
        ])
        .unwrap();
        assert_eq!(config.replicas.urls, ["postgres://u@r1/db", "postgres://u@r2/db", "postgresql://u@r3/db"]);
        assert_eq!((config.replicas.max_lag_bytes, config.replicas.poll_interval), (0, Duration::from_millis(50)));
        let err = parse(&["--database-read-url", "postgres://u@r1/db"]).unwrap_err();
        assert!(err.contains("read replicas need PostgreSQL") && err.contains("SQLite"), "{err}");
        let err =
            parse(&["--database-url", "postgres://u:secret@p/db", "--database-read-url", "mysql://u:secret@r/db"])
                .unwrap_err();
        assert!(err.contains("read replica 1 is not a postgres://") && !err.contains("secret"), "{err}");
        assert!(parse(&["--replica-poll-ms", "1"]).unwrap_err().contains("replica-poll-ms"));
    }

    #[test]
    fn defaults_are_sqlite_with_the_development_key() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.database_url, DatabaseUrl::Sqlite("./iofold.db".into()));
        assert!(config.development_key && !config.production);
        assert_eq!(config.db_pool_size, 10);
        let pg = parse(&["--database-url", "postgresql://u@h/db"]).unwrap();
        assert_eq!(pg.database_url.backend(), crate::db::Backend::Postgres);
    }

    #[test]
    fn limits_default_to_the_contract_and_are_configurable() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.limits, Limits::default());
        let limits = &config.limits;
        assert_eq!((limits.max_depth, limits.max_complexity, limits.max_aliases), (12, 50_000, 100));
        assert_eq!((limits.max_body_bytes, limits.max_batch), (16 << 20, 50));
        assert_eq!(limits.request_timeout, Duration::from_secs(10));
        assert_eq!(limits.statement_timeout, Some(Duration::from_secs(5)));
        assert!(limits.introspection && limits.graphiql && limits.rate_limit_per_minute.is_none());
        assert_eq!(config.slow_statement, Duration::from_millis(100));
        assert!(config.metrics);

        let config = parse(&[
            "--max-query-depth",
            "3",
            "--max-query-complexity",
            "10",
            "--max-query-aliases",
            "0",
            "--max-body-bytes",
            "2048",
            "--max-batch-size",
            "2",
            "--request-timeout-ms",
            "250",
            "--statement-timeout-ms",
            "0",
            "--slow-query-ms",
            "5",
            "--introspection",
            "false",
            "--graphiql",
            "off",
            "--rate-limit-per-minute",
            "60",
            "--shutdown-grace-ms",
            "1500",
            "--metrics",
            "no",
        ])
        .unwrap();
        let limits = &config.limits;
        assert_eq!((limits.max_depth, limits.max_complexity, limits.max_aliases), (3, 10, 0));
        assert_eq!((limits.max_body_bytes, limits.max_batch), (2048, 2));
        assert_eq!(limits.request_timeout, Duration::from_millis(250));
        assert_eq!(limits.statement_timeout, None);
        assert!(!limits.introspection && !limits.graphiql);
        assert_eq!(limits.rate_limit_per_minute, Some(60));
        assert_eq!(config.slow_statement, Duration::from_millis(5));
        assert_eq!(config.shutdown_grace, Duration::from_millis(1500));
        assert!(!config.metrics);

        assert!(parse(&["--max-query-depth", "0"]).unwrap_err().contains("0 is not in 1..=64"));
        assert!(parse(&["--max-body-bytes", "10"]).unwrap_err().contains("max-body-bytes"));
        assert!(parse(&["--introspection", "maybe"]).unwrap_err().contains("introspection"));
    }

    #[test]
    fn subscription_and_persisted_query_settings() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.subscriptions.max_per_connection, 100);
        assert_eq!(config.subscriptions.ping_interval, Some(Duration::from_secs(15)));
        assert_eq!(config.subscriptions.event_capacity, 1024);
        assert_eq!(config.persisted_queries, PersistedQueries { cache_size: 1000, max_query_bytes: 65536 });

        let config = parse(&[
            "--max-subscriptions-per-connection",
            "3",
            "--ws-ping-interval-ms",
            "0",
            "--event-bus-capacity",
            "8",
            "--apq-cache-size",
            "0",
            "--apq-max-query-bytes",
            "100",
        ])
        .unwrap();
        assert_eq!(
            config.subscriptions,
            Subscriptions { max_per_connection: 3, ping_interval: None, event_capacity: 8 }
        );
        assert_eq!(config.persisted_queries, PersistedQueries { cache_size: 0, max_query_bytes: 100 });

        let err = parse(&["--max-subscriptions-per-connection", "0"]).unwrap_err();
        assert!(err.contains("max-subscriptions-per-connection") && err.contains("0 is not in 1..=10000"), "{err}");
        assert!(parse(&["--event-bus-capacity", "0"]).unwrap_err().contains("event-bus-capacity"));
        assert!(parse(&["--ws-ping-interval-ms", "soon"]).unwrap_err().contains("ws-ping-interval-ms"));
        assert!(parse(&["--apq-cache-size", "many"]).unwrap_err().contains("apq-cache-size"));
    }

    #[test]
    fn connection_limits() {
        let config = parse(&[]).unwrap();
        assert_eq!(
            config.connections,
            ConnectionLimits {
                header_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
                max_connections: 4096,
                max_connections_per_client: 256,
                max_unauthenticated_websockets: 256,
                max_unauthenticated_websockets_per_client: 16,
            }
        );
        let config = parse(&[
            "--http-header-timeout-ms",
            "1000",
            "--http-idle-timeout-ms",
            "2000",
            "--max-connections",
            "10",
            "--max-connections-per-client",
            "3",
            "--max-unauthenticated-websockets",
            "5",
            "--max-unauthenticated-websockets-per-client",
            "2",
        ])
        .unwrap();
        assert_eq!(
            config.connections,
            ConnectionLimits {
                header_timeout: Duration::from_secs(1),
                idle_timeout: Duration::from_secs(2),
                max_connections: 10,
                max_connections_per_client: 3,
                max_unauthenticated_websockets: 5,
                max_unauthenticated_websockets_per_client: 2,
            }
        );
        assert!(parse(&["--http-header-timeout-ms", "0"]).unwrap_err().contains("http-header-timeout-ms"));
        assert_eq!(parse(&[]).unwrap().maintenance_interval, Some(Duration::from_secs(3600)));
        assert_eq!(parse(&["--maintenance-interval-secs", "0"]).unwrap().maintenance_interval, None);
        assert_eq!(
            parse(&["--maintenance-interval-secs", "90"]).unwrap().maintenance_interval,
            Some(Duration::from_secs(90))
        );
        assert!(parse(&["--maintenance-interval-secs", "hourly"]).unwrap_err().contains("maintenance-interval-secs"));
        assert!(parse(&["--maintenance-interval-secs", "604801"]).unwrap_err().contains("maintenance-interval-secs"));
        assert!(parse(&["--max-connections", "0"]).unwrap_err().contains("max-connections"));
    }
}
