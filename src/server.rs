//! The HTTP surface: `POST /graphql` (also batches), `GET /graphql` (GraphiQL for browsers,
//! queries for everyone else), `GET /health` and `GET /metrics`, with the limits of the API
//! (body size, batch size, per-request deadline, per-token rate limit; query depth,
//! complexity and aliases in [`guard`]) and a graceful shutdown.
//!
//! Every route runs inside [`observability::track`]: a request id, a span, a log line and
//! metrics per request. A GraphQL error always carries `extensions.code`; an error without
//! one is an internal error: its detail is logged with the request id and the client gets
//! `INTERNAL_SERVER_ERROR` with `extensions.requestId` only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::http::GraphiQLSource;
use async_graphql::{BatchResponse, ErrorExtensionValues};
use async_graphql_axum::GraphQLResponse;
use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use futures_util::StreamExt;
use serde_json::json;

use crate::auth::{authenticate, Viewer, ADMIN_SECRET_HEADER};
use crate::config::Config;
use crate::db::Db;
use crate::error::AppError;
use crate::graphql::access::Access;
use crate::graphql::{access_of, build_schema_with, with_request_data, AppSchema};
use crate::observability::{self, Metrics, RequestId, RequestReport, ANONYMOUS_OPERATION, NO_OPERATION};

/// What every handler shares: the pool, the schema, the configuration, the metrics and the
/// rate limiter. No globals.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub db: Db,
    /// The GraphQL schema (with the configured limits).
    pub schema: AppSchema,
    /// The configuration.
    pub config: Arc<Config>,
    /// The server's metrics (`GET /metrics`).
    pub metrics: Arc<Metrics>,
    /// The per-token rate limiter, when a rate limit is set.
    pub rate_limiter: Option<Arc<RateLimiter>>,
}

impl AppState {
    /// The state for a database and a configuration: builds the schema with the configured
    /// limits, and sets the database's slow-statement threshold and statement timeout.
    pub fn new(db: Db, config: Config) -> Self {
        db.configure(config.slow_statement, config.limits.statement_timeout);
        let rate_limiter = config.limits.rate_limit_per_minute.map(|n| Arc::new(RateLimiter::per_minute(n)));
        Self {
            db,
            schema: build_schema_with(&config.limits),
            config: Arc::new(config),
            metrics: Arc::new(Metrics::default()),
            rate_limiter,
        }
    }
}

/// The application's router.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new().route("/graphql", get(graphql_get).post(graphql_post)).route("/health", get(health));
    if state.config.metrics {
        router = router.route("/metrics", get(metrics));
    }
    router.layer(axum::middleware::from_fn_with_state(state.clone(), observability::track)).with_state(state)
}

/// Resolves the caller from the request headers.
async fn viewer(state: &AppState, headers: &HeaderMap) -> Result<Viewer, AppError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    authenticate(
        &state.db,
        state.config.admin_secret.as_deref(),
        header(ADMIN_SECRET_HEADER),
        header(header::AUTHORIZATION.as_str()),
    )
    .await
}

/// A request refused before any operation ran: its status, code and message (the response
/// is `{"errors": [...]}`, counted in the metrics under the operation `(none)`).
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Refusal { status, code, message: message.into(), retry_after: None }
    }

    fn app(status: StatusCode, error: AppError) -> Self {
        Refusal::new(status, error.code(), error.message())
    }

    fn timeout(state: &AppState) -> Self {
        Refusal::new(
            StatusCode::GATEWAY_TIMEOUT,
            "TIMEOUT",
            format!("the request did not finish within {} ms", state.config.limits.request_timeout.as_millis()),
        )
    }

    fn into_response(self, state: &AppState, id: &RequestId) -> Response {
        state.metrics.record_error(NO_OPERATION, self.code);
        let mut extensions = json!({"code": self.code});
        if self.code == "INTERNAL_SERVER_ERROR" {
            extensions["requestId"] = json!(id.as_str());
        }
        let body = json!({"errors": [{"message": self.message, "extensions": extensions}]});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
            .extensions_mut()
            .insert(RequestReport { operations: vec![NO_OPERATION.into()], codes: vec![self.code.into()] });
        response
    }
}

/// Data responses are private to the caller: never cached by shared caches.
fn private(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    headers.insert(header::VARY, HeaderValue::from_static("Authorization"));
    response
}

/// Resolves the caller and what they may see, or the refusal.
async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Option<Arc<Access>>, Refusal> {
    let viewer = viewer(state, headers).await.map_err(|e| match e {
        AppError::Unauthenticated(_) => Refusal::app(StatusCode::UNAUTHORIZED, e),
        AppError::Timeout(_) => Refusal::app(StatusCode::GATEWAY_TIMEOUT, e),
        e => Refusal::app(StatusCode::INTERNAL_SERVER_ERROR, e),
    })?;
    access_of(&state.db, &viewer).await.map_err(|e| match e {
        AppError::Timeout(_) => Refusal::app(StatusCode::GATEWAY_TIMEOUT, e),
        e => Refusal::app(StatusCode::INTERNAL_SERVER_ERROR, e),
    })
}

/// Reads a body of at most `limit` bytes: a declared or actual larger one is refused
/// (`PAYLOAD_TOO_LARGE`, 413) without reading the rest.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, Refusal> {
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("the request body is larger than {limit} bytes"),
        )
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    if declared.is_some_and(|n: u64| n > limit as u64) {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(declared.map_or(8 * 1024, |n| n as usize));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", "the request body could not be read"))?;
        if bytes.len() + chunk.len() > limit {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The operations of a body: one JSON object, or a JSON array of at most `max_batch`
/// (counted before any is read into memory). Malformed JSON is `BAD_REQUEST` (400); an empty
/// or too large batch is `BATCH_TOO_LARGE` (400) or `BAD_REQUEST`.
fn parse_operations(bytes: &[u8], max_batch: usize) -> Result<(Vec<async_graphql::Request>, bool), Refusal> {
    let bad = |message: String| Refusal::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message);
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'[') => {
            let count = serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(bytes)
                .map_err(|e| bad(format!("the request body is not valid JSON: {e}")))?
                .len();
            if count > max_batch {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "BATCH_TOO_LARGE",
                    format!("a batch may hold at most {max_batch} operations, this one has {count}"),
                ));
            }
            if count == 0 {
                return Err(bad("the batch is empty".into()));
            }
            let requests = serde_json::from_slice::<Vec<async_graphql::Request>>(bytes)
                .map_err(|e| bad(format!("the request body is not a batch of GraphQL requests: {e}")))?;
            Ok((requests, true))
        }
        Some(b'{') => {
            let request = serde_json::from_slice::<async_graphql::Request>(bytes)
                .map_err(|e| bad(format!("the request body is not a GraphQL request: {e}")))?;
            Ok((vec![request], false))
        }
        Some(_) => Err(bad("the request body is not valid JSON: expected a GraphQL request object or a batch".into())),
        None => Err(bad("the request body is empty: expected a GraphQL request".into())),
    }
}

/// The label of an operation before it runs: the requested name when it is a GraphQL name.
fn requested_label(request: &async_graphql::Request) -> String {
    match request.operation_name.as_deref() {
        Some(name) if guard::is_graphql_name(name) => name.to_owned(),
        Some(_) => observability::INVALID_OPERATION.to_owned(),
        None => ANONYMOUS_OPERATION.to_owned(),
    }
}

/// Gives every error of a response a code: one without a code is internal (its message
/// logged, then replaced). Internal errors carry the request id. Returns the codes.
fn finish_errors(response: &mut async_graphql::Response, id: &RequestId) -> Vec<String> {
    let mut codes = Vec::with_capacity(response.errors.len());
    for error in &mut response.errors {
        let code = error.extensions.as_ref().and_then(|ext| ext.get("code")).and_then(|code| match code {
            async_graphql::Value::String(code) => Some(code.clone()),
            _ => None,
        });
        let code = match code {
            Some(code) => code,
            None if error.message == "PersistedQueryNotFound" => {
                error.extensions.get_or_insert_with(Default::default).set("code", "PERSISTED_QUERY_NOT_FOUND");
                "PERSISTED_QUERY_NOT_FOUND".to_owned()
            }
            None => {
                tracing::error!(error = %error.message, path = ?error.path, "internal error");
                "INTERNAL_SERVER_ERROR".to_owned()
            }
        };
        if code == "INTERNAL_SERVER_ERROR" {
            let mut extensions = ErrorExtensionValues::default();
            extensions.set("code", "INTERNAL_SERVER_ERROR");
            extensions.set("requestId", id.as_str());
            error.message = "internal server error".into();
            error.extensions = Some(extensions);
            error.source = None;
        }
        codes.push(code);
    }
    codes
}

/// Runs the operations one after the other before the deadline; those it does not reach
/// answer `TIMEOUT`. Records each in the metrics.
async fn execute(
    state: &AppState,
    id: &RequestId,
    requests: Vec<async_graphql::Request>,
    access: Option<Arc<Access>>,
    deadline: tokio::time::Instant,
) -> (Vec<async_graphql::Response>, RequestReport, bool) {
    let mut report = RequestReport::default();
    let mut responses = Vec::with_capacity(requests.len());
    let mut timed_out = false;
    for request in requests {
        let mut label = requested_label(&request);
        let started = Instant::now();
        let mut response = if timed_out {
            None
        } else {
            let slot = Arc::new(guard::OperationSlot::default());
            let request = with_request_data(request, &state.db, access.clone());
            let request = crate::graphql::mutations::with_config(request, &state.config).data(slot.clone());
            let request = crate::graphql::mutations::with_config(request, &state.config);
            let outcome = tokio::time::timeout_at(deadline, state.schema.execute(request)).await.ok();
            if let Some(resolved) = slot.label() {
                label = resolved;
            }
            outcome
        };
        if response.is_none() {
            timed_out = true;
            let error = guard::coded_error(
                format!("the request did not finish within {} ms", state.config.limits.request_timeout.as_millis()),
                "TIMEOUT",
            );
            response = Some(async_graphql::Response::from_errors(vec![error]));
        }
        let mut response = response.unwrap_or_default();
        let codes = finish_errors(&mut response, id);
        let elapsed = started.elapsed();
        tracing::debug!(operation = %label, duration_ms = elapsed.as_secs_f64() * 1000.0, errors = %codes.join(","), "operation");
        state.metrics.record_operation(&label, elapsed, &codes);
        report.operations.push(label);
        report.codes.extend(codes);
        responses.push(response);
    }
    (responses, report, timed_out)
}

/// Checks the per-token rate limit (`cost` operations), if one is set.
fn check_rate(state: &AppState, headers: &HeaderMap, cost: usize) -> Result<(), Refusal> {
    let Some(limiter) = &state.rate_limiter else { return Ok(()) };
    let credential =
        headers.get(header::AUTHORIZATION).or_else(|| headers.get(ADMIN_SECRET_HEADER)).map(|v| v.as_bytes());
    let Some(credential) = credential else { return Ok(()) };
    limiter.check(credential, cost).map_err(|retry_after| Refusal {
        retry_after: Some(retry_after.as_secs().max(1)),
        ..Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!("rate limit exceeded: at most {} requests a minute per token", limiter.per_minute),
        )
    })
}

async fn graphql_post(
    State(state): State<AppState>,
    Extension(id): Extension<RequestId>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let deadline = tokio::time::Instant::now() + state.config.limits.request_timeout;
    let prepared = tokio::time::timeout_at(deadline, async {
        let bytes = read_body(&parts.headers, body, state.config.limits.max_body_bytes).await?;
        let (requests, batch) = parse_operations(&bytes, state.config.limits.max_batch)?;
        drop(bytes);
        check_rate(&state, &parts.headers, requests.len())?;
        let access = caller(&state, &parts.headers).await?;
        Ok::<_, Refusal>((requests, batch, access))
    })
    .await
    .unwrap_or_else(|_| Err(Refusal::timeout(&state)));
    let (requests, batch, access) = match prepared {
        Ok(prepared) => prepared,
        Err(refusal) => return refusal.into_response(&state, &id),
    };
    let (mut responses, report, timed_out) = execute(&state, &id, requests, access, deadline).await;
    let response = if batch {
        BatchResponse::Batch(responses)
    } else {
        BatchResponse::Single(responses.pop().unwrap_or_default())
    };
    let mut response = private(GraphQLResponse::from(response).into_response());
    if timed_out && !batch {
        *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
    }
    response.extensions_mut().insert(report);
    response
}

async fn graphql_get(
    State(state): State<AppState>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let wants_html =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| accept.contains("text/html"));
    let query = query.unwrap_or_default();
    if wants_html || query.is_empty() {
        if state.config.limits.graphiql {
            return Html(GraphiQLSource::build().endpoint("/graphql").title("iofold-graph").finish()).into_response();
        }
        if query.is_empty() {
            return Refusal::new(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "GraphiQL is turned off; send a GraphQL query (`?query=…`) or POST one",
            )
            .into_response(&state, &id);
        }
    }
    let request = match async_graphql::http::parse_query_string(&query) {
        Ok(request) => request,
        Err(error) => {
            return Refusal::new(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                format!("invalid GraphQL GET request: {error}"),
            )
            .into_response(&state, &id)
        }
    };
    let deadline = tokio::time::Instant::now() + state.config.limits.request_timeout;
    let prepared = tokio::time::timeout_at(deadline, async {
        check_rate(&state, &headers, 1)?;
        caller(&state, &headers).await
    })
    .await
    .unwrap_or_else(|_| Err(Refusal::timeout(&state)));
    let access = match prepared {
        Ok(access) => access,
        Err(refusal) => return refusal.into_response(&state, &id),
    };
    let (mut responses, report, timed_out) = execute(&state, &id, vec![request], access, deadline).await;
    let mut response =
        private(GraphQLResponse::from(BatchResponse::Single(responses.pop().unwrap_or_default())).into_response());
    if timed_out {
        *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
    }
    response.extensions_mut().insert(report);
    response
}

/// `GET /health`: the cheap part of `iofold-graph health` (a database round trip and the
/// migration state); 503 when the database does not answer within 5 s.
async fn health(State(state): State<AppState>) -> Response {
    let report = match tokio::time::timeout(Duration::from_secs(5), crate::ops::health::quick(&state.db)).await {
        Ok(report) => report,
        Err(_) => {
            tracing::warn!("health check: the database did not answer within 5 s");
            json!({"status": "unavailable", "database": "unavailable", "backend": state.db.backend().name()})
        }
    };
    let status = if report["database"] == "ok" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(report)).into_response()
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.metrics.render(&state.db);
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))], body)
        .into_response()
}

/// Serves until SIGTERM or SIGINT, then stops accepting, lets in-flight requests finish for
/// at most the grace period (`SHUTDOWN_GRACE_MS`), checkpoints the SQLite WAL and closes the
/// pool.
pub async fn serve(state: AppState) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(state.config.listen).await?;
    serve_on(listener, state, shutdown_signal()).await
}

/// [`serve`] on a bound listener, stopping when `shutdown` completes.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let db = state.db.clone();
    let metrics = state.metrics.clone();
    let grace = state.config.shutdown_grace;
    let idle = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                db.close_idle();
            }
        })
    };
    tracing::info!(address = %listener.local_addr()?, backend = db.backend().name(), "listening");
    let (stopping, mut stop) = tokio::sync::watch::channel(false);
    let signal = {
        let metrics = metrics.clone();
        async move {
            shutdown.await;
            tracing::info!(
                in_flight = metrics.in_flight(),
                grace_ms = grace.as_millis() as u64,
                "shutting down: no new connections; finishing in-flight requests"
            );
            let _ = stopping.send(true);
        }
    };
    let server =
        std::future::IntoFuture::into_future(axum::serve(listener, router(state)).with_graceful_shutdown(signal));
    let mut server = std::pin::pin!(server);
    let mut cut_off = false;
    tokio::select! {
        result = &mut server => result?,
        _ = async {
            let _ = stop.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(grace).await;
        } => {
            cut_off = true;
            tracing::warn!(
                in_flight = metrics.in_flight(),
                grace_ms = grace.as_millis() as u64,
                "shutdown grace period over: stopping with requests still in flight"
            );
        }
    }
    idle.abort();
    if cut_off {
        // Requests still hold connections: a checkpoint would wait for them. SQLite
        // replays the WAL when the database is next opened.
        tracing::info!("skipping the WAL checkpoint: requests were cut off");
    } else if let Err(error) = db.checkpoint().await {
        tracing::warn!(%error, "could not checkpoint the SQLite WAL");
    }
    db.close();
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// A per-credential token bucket: `per_minute` requests a minute, in bursts of as many. Keys
/// are hashes of the credential (never the credential itself); the table is bounded.
pub struct RateLimiter {
    per_minute: u32,
    hasher: std::collections::hash_map::RandomState,
    buckets: std::sync::Mutex<std::collections::HashMap<u64, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The most credentials the rate limiter tracks at once; beyond, full buckets are dropped.
const MAX_BUCKETS: usize = 100_000;

impl RateLimiter {
    /// A limiter of `per_minute` requests a minute per credential.
    pub fn per_minute(per_minute: u32) -> Self {
        RateLimiter { per_minute, hasher: Default::default(), buckets: Default::default() }
    }

    /// Takes `cost` requests from the credential's bucket, or says how long to wait.
    pub fn check(&self, credential: &[u8], cost: usize) -> Result<(), Duration> {
        use std::hash::BuildHasher;
        let key = self.hasher.hash_one(credential);
        let capacity = f64::from(self.per_minute);
        let rate = capacity / 60.0;
        let cost = (cost as f64).min(capacity);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&key) {
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < capacity);
        }
        let bucket = buckets.entry(key).or_insert(Bucket { tokens: capacity, at: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(capacity);
        bucket.at = now;
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((cost - bucket.tokens) / rate))
        }
    }
}

/// What a GraphQL request may ask: an async-graphql extension that checks every document
/// before it is validated, and gives parse and validation errors their codes.
///
/// - The document's bracket nesting is measured before parsing (a parser recurses: a query
///   nested thousands deep must not reach it) and bounded with async-graphql's recursion
///   depth: beyond either, `QUERY_TOO_COMPLEX`.
/// - Every operation and fragment is measured: depth (nested fields), complexity (each field
///   1, a list field — one with `first`/`last` arguments — its page size times its
///   selection: `first`/`last` from the literal or the variable, else 20, at most 100) and
///   aliased fields, fragments expanded (memoised). Over a limit: `QUERY_TOO_COMPLEX`.
/// - The operation to run is resolved: an unknown or missing operation name is
///   `OPERATION_RESOLUTION_FAILURE` (Apollo Server's code).
/// - Strings with a NUL character (arguments or variables) are `BAD_USER_INPUT`: PostgreSQL
///   cannot store them and both backends must behave alike.
/// - Parse errors are `GRAPHQL_PARSE_FAILED`, validation errors `GRAPHQL_VALIDATION_FAILED`.
pub mod guard {
    use std::collections::{HashMap, HashSet};
    use std::sync::{Arc, Mutex};

    use async_graphql::dynamic::SchemaBuilder;
    use async_graphql::extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextValidation,
    };
    use async_graphql::parser::types::{
        DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
    };
    use async_graphql::registry::{MetaTypeName, Registry};
    use async_graphql::{ErrorExtensionValues, ServerError, ServerResult, ValidationResult, Value, Variables};

    use crate::config::Limits;
    use crate::graphql::lists::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
    use crate::observability::{ANONYMOUS_OPERATION, INVALID_OPERATION};

    /// Adds the guard and the schema-level switches (introspection) to a schema.
    pub fn install(builder: SchemaBuilder, limits: &Limits) -> SchemaBuilder {
        let nesting = nesting_limit(limits.max_depth);
        let mut builder = builder
            .extension(QueryGuard { limits: Arc::new(limits.clone()) })
            .limit_recursive_depth(nesting)
            .limit_directives(MAX_DIRECTIVES);
        if !limits.introspection {
            builder = builder.disable_introspection();
        }
        builder
    }

    /// Queries longer than this (bytes) are parsed with `block_in_place`.
    const LARGE_QUERY: usize = 64 * 1024;

    /// The most directives on one field.
    pub const MAX_DIRECTIVES: usize = 16;

    /// How deep brackets (`{[(`) may nest in a document, and fields, fragments and inline
    /// fragments in an operation: generous next to the depth limit, small for a parser's
    /// stack.
    pub fn nesting_limit(max_depth: usize) -> usize {
        (2 * max_depth + 16).max(64)
    }

    /// A GraphQL name: `[_A-Za-z][_0-9A-Za-z]*`, at most 128 characters here.
    pub fn is_graphql_name(name: &str) -> bool {
        let mut bytes = name.bytes();
        name.len() <= 128
            && bytes.next().is_some_and(|b| b == b'_' || b.is_ascii_alphabetic())
            && bytes.all(|b| b == b'_' || b.is_ascii_alphanumeric())
    }

    /// An error with `extensions.code`.
    pub fn coded_error(message: impl Into<String>, code: &str) -> ServerError {
        let mut error = ServerError::new(message, None);
        let mut extensions = ErrorExtensionValues::default();
        extensions.set("code", code);
        error.extensions = Some(extensions);
        error
    }

    fn with_code(mut error: ServerError, code: &str) -> ServerError {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", code);
        }
        error
    }

    /// Where the guard leaves the operation it resolved (request data), for the log and the
    /// metrics.
    #[derive(Default)]
    pub struct OperationSlot(Mutex<Option<String>>);

    impl OperationSlot {
        /// The operation's label: its name, `(anonymous)`, or `(invalid)` when the document
        /// was refused; `None` when the guard did not see the request.
        pub fn label(&self) -> Option<String> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
        }

        fn set(&self, label: &str) {
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(label.to_owned());
        }
    }

    struct QueryGuard {
        limits: Arc<Limits>,
    }

    impl ExtensionFactory for QueryGuard {
        fn create(&self) -> Arc<dyn Extension> {
            Arc::new(Guard { limits: self.limits.clone() })
        }
    }

    struct Guard {
        limits: Arc<Limits>,
    }

    impl Guard {
        /// Parses the request's document (once: async-graphql reuses it) and checks it.
        /// Returns the operation's label.
        fn check(&self, ctx: &ExtensionContext<'_>, request: &mut async_graphql::Request) -> ServerResult<String> {
            let nesting = nesting_limit(self.limits.max_depth);
            if bracket_nesting(&request.query) > nesting {
                return Err(coded_error(format!("the query nests deeper than {nesting} levels"), "QUERY_TOO_COMPLEX"));
            }
            let requested = request.operation_name.clone();
            let variables = request.variables.clone();
            // Parsing a large document takes a while: off the async worker, when possible.
            let large = request.query.len() > LARGE_QUERY;
            let mut parse = || {
                request.parsed_query().map(|_| ()).map_err(|error| {
                    let code = if is_too_deep(&error.message) { "QUERY_TOO_COMPLEX" } else { "GRAPHQL_PARSE_FAILED" };
                    with_code(error, code)
                })
            };
            let multi_thread = tokio::runtime::Handle::try_current()
                .is_ok_and(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            if large && multi_thread {
                tokio::task::block_in_place(parse)?;
            } else {
                parse()?;
            }
            let document = request.parsed_query().map_err(|error| with_code(error, "GRAPHQL_PARSE_FAILED"))?;
            let label = resolve_operation(document, requested.as_deref())?;
            check_limits(document, &ctx.schema_env.registry, &variables, &self.limits)?;
            check_strings(document, &variables)?;
            Ok(label)
        }
    }

    #[async_graphql::async_trait::async_trait]
    impl Extension for Guard {
        async fn prepare_request(
            &self,
            ctx: &ExtensionContext<'_>,
            mut request: async_graphql::Request,
            next: NextPrepareRequest<'_>,
        ) -> ServerResult<async_graphql::Request> {
            let slot = request
                .data
                .get(&std::any::TypeId::of::<Arc<OperationSlot>>())
                .and_then(|data| data.downcast_ref::<Arc<OperationSlot>>())
                .cloned();
            let checked = self.check(ctx, &mut request);
            if let Some(slot) = slot {
                slot.set(checked.as_deref().unwrap_or(INVALID_OPERATION));
            }
            checked?;
            next.run(ctx, request).await
        }

        async fn parse_query(
            &self,
            ctx: &ExtensionContext<'_>,
            query: &str,
            variables: &Variables,
            next: NextParseQuery<'_>,
        ) -> ServerResult<ExecutableDocument> {
            next.run(ctx, query, variables).await.map_err(|error| {
                let code = if is_too_deep(&error.message) { "QUERY_TOO_COMPLEX" } else { "GRAPHQL_PARSE_FAILED" };
                with_code(error, code)
            })
        }

        async fn validation(
            &self,
            ctx: &ExtensionContext<'_>,
            next: NextValidation<'_>,
        ) -> Result<ValidationResult, Vec<ServerError>> {
            next.run(ctx).await.map_err(|errors| {
                errors.into_iter().map(|error| with_code(error, "GRAPHQL_VALIDATION_FAILED")).collect()
            })
        }
    }

    /// async-graphql's own nesting limits, in the parser and after it.
    fn is_too_deep(message: &str) -> bool {
        message.starts_with("recursion limit exceeded")
            || message.starts_with("The recursion depth of the query cannot be greater than")
            || message.starts_with("The number of directives on the field")
    }

    /// The deepest nesting of `{`, `[` and `(` outside strings and comments.
    pub fn bracket_nesting(query: &str) -> usize {
        let bytes = query.as_bytes();
        let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
        while i < bytes.len() {
            match bytes[i] {
                b'#' => {
                    while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                        i += 1;
                    }
                }
                b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                    i += 3;
                    while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                        i += if bytes[i..].starts_with(b"\\\"\"\"") { 4 } else { 1 };
                    }
                    i += 2;
                }
                b'"' => {
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                }
                b'{' | b'[' | b'(' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                b'}' | b']' | b')' => depth = depth.saturating_sub(1),
                _ => {}
            }
            i += 1;
        }
        deepest
    }

    /// The label of the operation the request runs, or `OPERATION_RESOLUTION_FAILURE`.
    fn resolve_operation(document: &ExecutableDocument, requested: Option<&str>) -> ServerResult<String> {
        let unknown = |name: &str| {
            let shown: String = name.chars().take(100).collect();
            coded_error(format!("Unknown operation named \"{shown}\"."), "OPERATION_RESOLUTION_FAILURE")
        };
        match (&document.operations, requested) {
            (DocumentOperations::Single(_), None) => Ok(ANONYMOUS_OPERATION.to_owned()),
            (DocumentOperations::Single(_), Some(name)) => Err(unknown(name)),
            (DocumentOperations::Multiple(operations), Some(name)) => {
                if operations.contains_key(name) {
                    Ok(name.to_owned())
                } else {
                    Err(unknown(name))
                }
            }
            (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
                Ok(operations.keys().next().map(|n| n.to_string()).unwrap_or_default())
            }
            (DocumentOperations::Multiple(_), None) => Err(coded_error(
                "Must provide operation name if query contains multiple operations.",
                "OPERATION_RESOLUTION_FAILURE",
            )),
        }
    }

    /// Depth, complexity and aliases of a selection.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct Cost {
        /// Nested fields.
        pub depth: usize,
        /// Fields, list fields weighted by their page size.
        pub complexity: u64,
        /// Aliased fields.
        pub aliases: u64,
    }

    struct Analyzer<'a> {
        document: &'a ExecutableDocument,
        registry: &'a Registry,
        variables: &'a Variables,
        defaults: HashMap<&'a str, Value>,
        memo: HashMap<&'a str, Cost>,
        visiting: HashSet<&'a str>,
        /// Nested selection sets and fragment spreads now, and the most allowed: a chain of
        /// fragments is shallow text but deep recursion.
        level: usize,
        max_level: usize,
        too_deep: bool,
    }

    impl<'a> Analyzer<'a> {
        fn new(
            document: &'a ExecutableDocument,
            registry: &'a Registry,
            variables: &'a Variables,
            defaults: HashMap<&'a str, Value>,
            max_level: usize,
        ) -> Self {
            Analyzer {
                document,
                registry,
                variables,
                defaults,
                memo: HashMap::new(),
                visiting: HashSet::new(),
                level: 0,
                max_level,
                too_deep: false,
            }
        }

        fn selection_set(&mut self, set: &'a SelectionSet, ty: Option<&'a str>) -> Cost {
            if self.level >= self.max_level {
                self.too_deep = true;
                return Cost::default();
            }
            self.level += 1;
            let cost = self.selection_set_inner(set, ty);
            self.level -= 1;
            cost
        }

        fn selection_set_inner(&mut self, set: &'a SelectionSet, ty: Option<&'a str>) -> Cost {
            let mut total = Cost::default();
            for item in &set.items {
                let cost = match &item.node {
                    Selection::Field(field) => {
                        let field = &field.node;
                        let meta = ty
                            .and_then(|ty| self.registry.types.get(ty))
                            .and_then(|ty| ty.field_by_name(field.name.node.as_str()));
                        let child_type = meta.map(|m| MetaTypeName::concrete_typename(m.ty.as_str()));
                        let children = self.selection_set(&field.selection_set.node, child_type);
                        let is_list = meta.is_some_and(|m| m.args.contains_key("first") || m.args.contains_key("last"));
                        let weight = if is_list { self.page_size(field) } else { 1 };
                        Cost {
                            depth: 1 + children.depth,
                            complexity: 1u64.saturating_add(weight.saturating_mul(children.complexity)),
                            aliases: u64::from(field.alias.is_some()).saturating_add(children.aliases),
                        }
                    }
                    Selection::InlineFragment(fragment) => {
                        let fragment = &fragment.node;
                        let ty = fragment.type_condition.as_ref().map(|c| c.node.on.node.as_str()).or(ty);
                        self.selection_set(&fragment.selection_set.node, ty)
                    }
                    Selection::FragmentSpread(spread) => self.fragment(spread.node.fragment_name.node.as_str()),
                };
                total.depth = total.depth.max(cost.depth);
                total.complexity = total.complexity.saturating_add(cost.complexity);
                total.aliases = total.aliases.saturating_add(cost.aliases);
            }
            total
        }

        fn fragment(&mut self, name: &'a str) -> Cost {
            if let Some(cost) = self.memo.get(name) {
                return *cost;
            }
            let Some((key, fragment)) = self.document.fragments.get_key_value(name) else { return Cost::default() };
            if !self.visiting.insert(key.as_str()) {
                return Cost::default(); // a cycle: validation reports it
            }
            let fragment = &fragment.node;
            let cost =
                self.selection_set(&fragment.selection_set.node, Some(fragment.type_condition.node.on.node.as_str()));
            self.visiting.remove(key.as_str());
            self.memo.insert(key.as_str(), cost);
            cost
        }

        /// The page size of a list field: `first` or `last` (the larger), from a literal, a
        /// variable or its default; else the default page size; within 0..=MAX_PAGE_SIZE.
        fn page_size(&self, field: &async_graphql::parser::types::Field) -> u64 {
            let mut size = None;
            for (name, value) in &field.arguments {
                if name.node != "first" && name.node != "last" {
                    continue;
                }
                let value = value.node.clone().into_const_with(|variable| {
                    Ok::<_, ()>(
                        self.variables
                            .get(&variable)
                            .or_else(|| self.defaults.get(variable.as_str()))
                            .cloned()
                            .unwrap_or(Value::Null),
                    )
                });
                if let Ok(Value::Number(n)) = value {
                    let n = n.as_i64().unwrap_or(MAX_PAGE_SIZE).clamp(0, MAX_PAGE_SIZE) as u64;
                    size = Some(size.map_or(n, |s: u64| s.max(n)));
                }
            }
            size.unwrap_or(DEFAULT_PAGE_SIZE as u64)
        }
    }

    /// Measures every operation and fragment of the document against the limits.
    pub fn check_limits(
        document: &ExecutableDocument,
        registry: &Registry,
        variables: &Variables,
        limits: &Limits,
    ) -> ServerResult<()> {
        let max_level = nesting_limit(limits.max_depth);
        let mut too_deep = false;
        let mut costs = Vec::new();
        for (_, operation) in document.operations.iter() {
            let operation = &operation.node;
            let root = match operation.ty {
                OperationType::Query => Some(registry.query_type.as_str()),
                OperationType::Mutation => registry.mutation_type.as_deref(),
                OperationType::Subscription => registry.subscription_type.as_deref(),
            };
            let defaults = operation
                .variable_definitions
                .iter()
                .filter_map(|d| d.node.default_value.as_ref().map(|v| (d.node.name.node.as_str(), v.node.clone())))
                .collect();
            let mut analyzer = Analyzer::new(document, registry, variables, defaults, max_level);
            costs.push(analyzer.selection_set(&operation.selection_set.node, root));
            too_deep |= analyzer.too_deep;
        }
        let mut analyzer = Analyzer::new(document, registry, variables, HashMap::new(), max_level);
        for name in document.fragments.keys() {
            costs.push(analyzer.fragment(name.as_str()));
        }
        if too_deep || analyzer.too_deep {
            return Err(coded_error(
                format!("the query nests fields and fragments deeper than {max_level} levels"),
                "QUERY_TOO_COMPLEX",
            ));
        }
        for cost in costs {
            if cost.depth > limits.max_depth {
                return Err(coded_error(
                    format!("the query is {} levels deep; at most {} are allowed", cost.depth, limits.max_depth),
                    "QUERY_TOO_COMPLEX",
                ));
            }
            if cost.complexity > limits.max_complexity {
                return Err(coded_error(
                    format!(
                        "the query's complexity is {}; at most {} is allowed (a list field counts its page size, \
                         `first`/`last` or 20, times its selection)",
                        cost.complexity, limits.max_complexity
                    ),
                    "QUERY_TOO_COMPLEX",
                ));
            }
            if cost.aliases > limits.max_aliases as u64 {
                return Err(coded_error(
                    format!("the query has {} aliases; at most {} are allowed", cost.aliases, limits.max_aliases),
                    "QUERY_TOO_COMPLEX",
                ));
            }
        }
        Ok(())
    }

    /// Refuses NUL characters in variables and in the document's argument values.
    fn check_strings(document: &ExecutableDocument, variables: &Variables) -> ServerResult<()> {
        fn has_nul(value: &Value) -> bool {
            match value {
                Value::String(s) => s.contains('\0'),
                Value::List(items) => items.iter().any(has_nul),
                Value::Object(fields) => fields.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
                _ => false,
            }
        }
        fn set_has_nul(set: &SelectionSet) -> bool {
            set.items.iter().any(|item| match &item.node {
                Selection::Field(field) => {
                    field.node.arguments.iter().any(|(_, value)| {
                        value.node.clone().into_const_with(|_| Ok::<_, ()>(Value::Null)).is_ok_and(|v| has_nul(&v))
                    }) || set_has_nul(&field.node.selection_set.node)
                }
                Selection::InlineFragment(fragment) => set_has_nul(&fragment.node.selection_set.node),
                Selection::FragmentSpread(_) => false,
            })
        }
        let in_variables = variables.iter().any(|(_, v)| has_nul(v));
        let in_document = document.operations.iter().any(|(_, op)| set_has_nul(&op.node.selection_set.node))
            || document.fragments.values().any(|f| set_has_nul(&f.node.selection_set.node));
        if in_variables || in_document {
            return Err(coded_error("a string value contains a NUL (U+0000) character", "BAD_USER_INPUT"));
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn nesting_ignores_strings_and_comments() {
            assert_eq!(bracket_nesting("{ a { b(x: [1, {c: 2}]) } }"), 5);
            assert_eq!(bracket_nesting("{ a(s: \"{{{{{\") # {{{{{\n }"), 2);
            assert_eq!(bracket_nesting("{ a(s: \"\"\" {{{ \\\"\"\" {{ \"\"\") }"), 2);
            assert_eq!(bracket_nesting(&"{a".repeat(1000)), 1000);
        }

        #[test]
        fn names() {
            assert!(is_graphql_name("GetMe_2") && is_graphql_name("_x"));
            assert!(!is_graphql_name("") && !is_graphql_name("2x") && !is_graphql_name("a-b"));
        }
    }
}
