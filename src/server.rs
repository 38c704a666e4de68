//! The HTTP surface: `POST /graphql` (also batches), `GET /graphql` (GraphiQL for browsers,
//! subscriptions over WebSocket, queries for everyone else), `GET /health` and
//! `GET /metrics`, with the limits of the API (body size, batch size, per-request deadline,
//! per-token rate limit; query depth, complexity and aliases in [`guard`]) and a graceful
//! shutdown.
//!
//! GraphQL over HTTP follows the GraphQL Foundation's draft specification:
//!
//! - The response is `application/graphql-response+json` when the `Accept` header names it
//!   (with a q-value at least that of `application/json`), else `application/json` (also
//!   without `Accept`, or with `*/*`); an `Accept` that allows neither is `406`
//!   (`NOT_ACCEPTABLE`).
//! - With `application/graphql-response+json`, a request that was not executed (parse,
//!   validation, variable or operation-resolution errors, limits, a wrong persisted-query
//!   hash) is `400` and its body has no `data`; one that executed is `200`, whatever its
//!   field errors. With `application/json` both are `200` (legacy clients). A persisted
//!   query the server does not know is `200` either way (Apollo's protocol); refusals before
//!   any operation (401, 413, 429, 504) keep their status.
//! - `GET` runs queries only: a mutation or subscription is `405` (`METHOD_NOT_ALLOWED`,
//!   `Allow: POST`). A `POST` body must be `Content-Type: application/json` (else `415`,
//!   `UNSUPPORTED_MEDIA_TYPE`); malformed JSON or parameters are `400` (`BAD_REQUEST`).
//! - Apollo automatic persisted queries ([`PersistedQueries`]) over `POST`, `GET` and
//!   WebSocket.
//!
//! Subscriptions are served on the same path over WebSocket ([`ws`]); GraphiQL and its
//! assets come from the binary ([`graphiql`]).
//!
//! Every route runs inside [`observability::track`]: a request id, a span, a log line and
//! metrics per request. A GraphQL error always carries `extensions.code`; an error without
//! one is an internal error: its detail is logged with the request id and the client gets
//! `INTERNAL_SERVER_ERROR` with `extensions.requestId` only.

pub mod conn;
pub mod graphiql;
pub mod ws;

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_graphql::{ErrorExtensionValues, ServerError};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use futures_util::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::auth::{check_credential, Credential, ADMIN_SECRET_HEADER};
use crate::config::Config;
use crate::db::replicas::{Lsn, CONSISTENCY_HEADER};
use crate::db::Db;
use crate::error::AppError;
use crate::events::EventBus;
use crate::graphql::access::Access;
use crate::graphql::shared_subscriptions::SubscriptionHub;
use crate::graphql::{access_of_credential, build_schema_with, with_request_data, AppSchema};
use crate::observability::{self, Metrics, RequestId, RequestReport, ANONYMOUS_OPERATION, NO_OPERATION};
use guard::{OperationSlot, Transport};

/// What every handler shares: the pool, the schema, the configuration, the metrics, the rate
/// limiter, the event bus of subscriptions, the persisted queries and the shutdown signal.
/// No globals.
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
    /// Committed changes, on their way to subscriptions ([`crate::events`]).
    pub events: EventBus,
    /// The running subscriptions, each execution shared by the subscribers of the same
    /// operation under the same access ([`crate::graphql::shared_subscriptions`]).
    pub hub: SubscriptionHub,
    /// Apollo automatic persisted queries.
    pub persisted: Arc<PersistedQueries>,
    /// Set to `true` when the server shuts down: WebSocket connections close (`1001`).
    pub shutdown: Arc<tokio::sync::watch::Sender<bool>>,
    /// Open connections and unauthenticated WebSockets, per client and in all ([`conn`]).
    pub connections: Arc<conn::Connections>,
    /// The last schema drift check (at start, then after each maintenance run): `GET /health`.
    pub schema_check: Arc<crate::ops::drift::LastCheck>,
    /// The database's size and index usage for `GET /metrics`, read at most every 15 s.
    pub db_figures: Arc<crate::ops::maintain::FiguresCache>,
    /// The scheduled maintenance runs.
    pub maintenance: Arc<crate::ops::maintain::Stats>,
}

impl AppState {
    /// The state for a database and a configuration: builds the schema with the configured
    /// limits, and sets the database's slow-statement threshold and statement timeout.
    ///
    /// With read replicas configured (`DATABASE_READ_URLS`) and a database without them, adds
    /// them; then starts their poller.
    pub fn new(db: Db, config: Config) -> Self {
        let db = if db.replicas.is_none() && !config.replicas.urls.is_empty() {
            let options = crate::db::PoolOptions { max_size: config.db_pool_size };
            db.with_replicas(&config.database_url, &config.replicas, &options)
                .expect("the configuration checked the read replicas (PostgreSQL URLs beside a PostgreSQL primary)")
        } else {
            db
        };
        db.start_replica_poller();
        db.configure(config.slow_statement, config.limits.statement_timeout);
        let rate_limiter = config.limits.rate_limit_per_minute.map(|n| Arc::new(RateLimiter::per_minute(n)));
        let events = EventBus::new(&config.database_url, config.subscriptions.event_capacity);
        Self {
            db,
            schema: build_schema_with(&config.limits),
            hub: SubscriptionHub::new(events.clone(), config.subscriptions.event_capacity),
            events,
            persisted: Arc::new(PersistedQueries::new(&config.persisted_queries)),
            shutdown: Arc::new(tokio::sync::watch::channel(false).0),
            connections: Arc::new(conn::Connections::new(&config.connections)),
            config: Arc::new(config),
            metrics: Arc::new(Metrics::default()),
            rate_limiter,
            schema_check: Arc::default(),
            db_figures: Arc::default(),
            maintenance: Arc::default(),
        }
    }
}

/// The application's router.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new().route("/graphql", get(graphql_get).post(graphql_post)).route("/health", get(health));
    if state.config.metrics {
        router = router.route("/metrics", get(metrics));
    }
    if state.config.limits.graphiql {
        router = router.route(&format!("{}/{{file}}", graphiql::ASSETS_PATH), get(graphiql::asset));
    }
    router.layer(axum::middleware::from_fn_with_state(state.clone(), observability::track)).with_state(state)
}

/// The media type of a GraphQL response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// `application/graphql-response+json`: statuses tell request errors (400) from executed
    /// requests (200).
    GraphqlResponseJson,
    /// `application/json`: 200 for every GraphQL response (legacy clients).
    Json,
}

impl MediaType {
    /// `application/graphql-response+json`.
    pub const GRAPHQL_RESPONSE_JSON: &'static str = "application/graphql-response+json";

    /// The `Content-Type` of a response.
    pub fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            MediaType::GraphqlResponseJson => "application/graphql-response+json; charset=utf-8",
            MediaType::Json => "application/json",
        })
    }

    /// The response type an `Accept` header asks for: `application/graphql-response+json`
    /// when it is named with a q-value above 0 and at least that of `application/json`;
    /// `application/json` when that (or `*/*`, `application/*`) is acceptable, and when there
    /// is no `Accept`; `None` when neither is acceptable.
    pub fn negotiate(accept: Option<&str>) -> Option<MediaType> {
        let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
            return Some(MediaType::Json);
        };
        let (mut graphql, mut json, mut any) = (None::<f32>, None::<f32>, None::<f32>);
        for range in accept.split(',') {
            let mut params = range.split(';');
            let name = params.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = params
                .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0)
                .clamp(0.0, 1.0);
            let slot = match name.as_str() {
                MediaType::GRAPHQL_RESPONSE_JSON => &mut graphql,
                "application/json" => &mut json,
                "*/*" | "application/*" => &mut any,
                _ => continue,
            };
            *slot = Some(slot.map_or(q, |previous| previous.max(q)));
        }
        let json = json.or(any).unwrap_or(0.0);
        match graphql {
            Some(q) if q > 0.0 && q >= json => Some(MediaType::GraphqlResponseJson),
            _ if json > 0.0 => Some(MediaType::Json),
            _ if graphql.or(any).unwrap_or(0.0) > 0.0 => Some(MediaType::GraphqlResponseJson),
            _ => None,
        }
    }

    fn of(headers: &HeaderMap) -> Result<MediaType, Refusal> {
        let accept = headers.get(header::ACCEPT).map(|v| v.to_str().unwrap_or("\u{fffd}"));
        MediaType::negotiate(accept).ok_or_else(|| {
            Refusal::new(
                StatusCode::NOT_ACCEPTABLE,
                "NOT_ACCEPTABLE",
                "the Accept header allows no response type of this server: accept application/graphql-response+json \
                 or application/json",
            )
        })
    }
}

/// Resolves the caller from the request headers.
async fn credential(state: &AppState, headers: &HeaderMap) -> Result<Credential, AppError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    check_credential(
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
        self.into_response_as(state, id, MediaType::Json)
    }

    /// The refusal as a response of the negotiated media type.
    fn into_response_as(self, state: &AppState, id: &RequestId, media: MediaType) -> Response {
        state.metrics.record_error(NO_OPERATION, self.code);
        let mut extensions = json!({"code": self.code});
        if self.code == "INTERNAL_SERVER_ERROR" {
            extensions["requestId"] = json!(id.as_str());
        }
        let body = json!({"errors": [{"message": self.message, "extensions": extensions}]});
        let mut response = (self.status, Json(body)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, media.content_type());
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
    let credential = credential(state, headers).await.map_err(|e| match e {
        AppError::Unauthenticated(_) => Refusal::app(StatusCode::UNAUTHORIZED, e),
        AppError::Timeout(_) => Refusal::app(StatusCode::GATEWAY_TIMEOUT, e),
        e => Refusal::app(StatusCode::INTERNAL_SERVER_ERROR, e),
    })?;
    access_of_credential(&state.db, credential).await.map_err(|e| match e {
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

/// One operation's response, and how it came to be.
struct Outcome {
    response: async_graphql::Response,
    /// Whether the operation was executed (parsed, validated and run); a response of one
    /// that was not has no `data`.
    executed: bool,
}

/// Runs the operations one after the other before the deadline; those it does not reach
/// answer `TIMEOUT`. Resolves persisted queries first. Records each in the metrics.
///
/// The operations share one read route ([`Db::for_request`]): their reads go to a replica
/// that has replayed the client's consistency token (`floor`) and the request's own
/// commits, or to the primary. Returns the request's newest commit position too (its
/// consistency token).
async fn execute(
    state: &AppState,
    id: &RequestId,
    requests: Vec<async_graphql::Request>,
    access: Option<Arc<Access>>,
    deadline: tokio::time::Instant,
    transport: Transport,
    floor: Option<Lsn>,
) -> (Vec<Outcome>, RequestReport, bool, Option<Lsn>) {
    let db = state.db.for_request(floor);
    let mut report = RequestReport::default();
    let mut outcomes = Vec::with_capacity(requests.len());
    let mut timed_out = false;
    for mut request in requests {
        let mut label = requested_label(&request);
        let started = Instant::now();
        let slot = Arc::new(OperationSlot::default());
        let mut response = if timed_out {
            None
        } else if let Err(error) = state.persisted.resolve(&mut request, access.as_deref()) {
            Some(async_graphql::Response::from_errors(vec![error]))
        } else {
            let request = with_request_data(request, &db, access.clone()).data(state.events.clone());
            let request = crate::graphql::mutations::with_config(request, &state.config).data(slot.clone());
            let outcome = tokio::time::timeout_at(deadline, state.schema.execute(request.data(transport))).await.ok();
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
        outcomes.push(Outcome { response, executed: slot.executed() });
    }
    (outcomes, report, timed_out, db.commit_token())
}

/// The client's consistency token (`X-Iofold-Consistency`: a mutation's response gave it),
/// the newest when the header is repeated; a malformed one is refused (400,
/// `BAD_USER_INPUT`) rather than ignored, which would silently give up read-your-writes.
fn consistency_floor(headers: &HeaderMap) -> Result<Option<Lsn>, Refusal> {
    let mut floor = None;
    for value in headers.get_all(CONSISTENCY_HEADER) {
        let token = value.to_str().ok().map(str::trim).and_then(|text| text.parse::<Lsn>().ok());
        let Some(token) = token else {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                "the X-Iofold-Consistency header is not a consistency token: send back the value a mutation's response \
                 gave (its X-Iofold-Consistency header or extensions.consistency, like `0/16B3A28`), or no header",
            ));
        };
        floor = floor.max(Some(token));
    }
    Ok(floor)
}

/// The codes of a response's errors.
fn codes(response: &async_graphql::Response) -> impl Iterator<Item = &str> {
    response.errors.iter().filter_map(|e| match e.extensions.as_ref().and_then(|ext| ext.get("code")) {
        Some(async_graphql::Value::String(code)) => Some(code.as_str()),
        _ => None,
    })
}

/// A response's body: without `data` when the operation was not executed.
fn body_of(outcome: &Outcome) -> Value {
    let mut body = serde_json::to_value(&outcome.response).unwrap_or_else(|_| json!({}));
    if !outcome.executed {
        if let Value::Object(fields) = &mut body {
            fields.remove("data");
        }
    }
    body
}

/// The HTTP response to a request's operations, by the GraphQL-over-HTTP rules (see the
/// module's documentation). A batch is always `200`.
fn respond(
    mut outcomes: Vec<Outcome>,
    batch: bool,
    media: MediaType,
    timed_out: bool,
    report: RequestReport,
    token: Option<Lsn>,
) -> Response {
    let (status, body) = if batch {
        (StatusCode::OK, Value::Array(outcomes.iter().map(body_of).collect()))
    } else {
        let outcome = outcomes.pop().unwrap_or(Outcome { response: Default::default(), executed: false });
        let not_allowed = codes(&outcome.response).any(|code| code == "METHOD_NOT_ALLOWED");
        let unknown_query = codes(&outcome.response).any(|code| code.starts_with("PERSISTED_QUERY_"));
        let status = if timed_out {
            StatusCode::GATEWAY_TIMEOUT
        } else if not_allowed {
            StatusCode::METHOD_NOT_ALLOWED
        } else if !outcome.executed && !unknown_query && media == MediaType::GraphqlResponseJson {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        (status, body_of(&outcome))
    };
    let mut response = private((status, Json(body)).into_response());
    response.headers_mut().insert(header::CONTENT_TYPE, media.content_type());
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    if let Some(token) = token.and_then(|t| HeaderValue::from_str(&t.to_string()).ok()) {
        response.headers_mut().insert(CONSISTENCY_HEADER, token);
    }
    response.extensions_mut().insert(report);
    response
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

/// Whether a `Content-Type` is JSON (`application/json`, any parameters).
fn is_json(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

async fn graphql_post(
    State(state): State<AppState>,
    Extension(id): Extension<RequestId>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let media = match MediaType::of(&parts.headers) {
        Ok(media) => media,
        Err(refusal) => return refusal.into_response(&state, &id),
    };
    if !is_json(parts.headers.get(header::CONTENT_TYPE)) {
        return Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "a GraphQL POST body must be JSON: send `Content-Type: application/json`",
        )
        .into_response_as(&state, &id, media);
    }
    let deadline = tokio::time::Instant::now() + state.config.limits.request_timeout;
    let prepared = tokio::time::timeout_at(deadline, async {
        let bytes = read_body(&parts.headers, body, state.config.limits.max_body_bytes).await?;
        let (requests, batch) = parse_operations(&bytes, state.config.limits.max_batch)?;
        drop(bytes);
        check_rate(&state, &parts.headers, requests.len())?;
        let floor = consistency_floor(&parts.headers)?;
        let access = caller(&state, &parts.headers).await?;
        Ok::<_, Refusal>((requests, batch, access, floor))
    })
    .await
    .unwrap_or_else(|_| Err(Refusal::timeout(&state)));
    let (requests, batch, access, floor) = match prepared {
        Ok(prepared) => prepared,
        Err(refusal) => return refusal.into_response_as(&state, &id, media),
    };
    let (outcomes, report, timed_out, token) =
        execute(&state, &id, requests, access, deadline, Transport::HttpPost, floor).await;
    respond(outcomes, batch, media, timed_out && !batch, report, token)
}

/// The parameters of `GET /graphql?query=…&operationName=…&variables=…&extensions=…`
/// (`variables` and `extensions` as JSON text).
#[derive(Debug, serde::Deserialize)]
struct GetParameters {
    #[serde(default)]
    query: Option<String>,
    #[serde(default, rename = "operationName")]
    operation_name: Option<String>,
    #[serde(default)]
    variables: Option<String>,
    #[serde(default)]
    extensions: Option<String>,
}

/// A GraphQL request from a URL's query string, or what is wrong with it.
fn get_request(query: &str) -> Result<async_graphql::Request, String> {
    let parameters: GetParameters =
        url_parameters(query).map_err(|e| format!("the URL's parameters cannot be read: {e}"))?;
    let json = |name: &str, text: Option<String>| -> Result<Option<Value>, String> {
        match text.filter(|t| !t.trim().is_empty()) {
            None => Ok(None),
            Some(text) => match serde_json::from_str::<Value>(&text) {
                Ok(value @ Value::Object(_)) => Ok(Some(value)),
                Ok(Value::Null) => Ok(None),
                Ok(_) => Err(format!("`{name}` must be a JSON object")),
                Err(e) => Err(format!("`{name}` is not valid JSON: {e}")),
            },
        }
    };
    let mut request = async_graphql::Request::new(parameters.query.unwrap_or_default());
    request.operation_name = parameters.operation_name.filter(|name| !name.is_empty());
    if let Some(variables) = json("variables", parameters.variables)? {
        request.variables = async_graphql::Variables::from_json(variables);
    }
    if let Some(Value::Object(extensions)) = json("extensions", parameters.extensions)? {
        for (name, value) in extensions {
            let value = async_graphql::Value::from_json(value).map_err(|e| format!("`extensions`: {e}"))?;
            request.extensions.0.insert(name, value);
        }
    }
    Ok(request)
}

/// Reads URL parameters (`application/x-www-form-urlencoded`) into `T`.
fn url_parameters<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, String> {
    let uri: axum::http::Uri = format!("/?{query}").parse().map_err(|e: axum::http::uri::InvalidUri| e.to_string())?;
    axum::extract::Query::<T>::try_from_uri(&uri).map(|q| q.0).map_err(|e| e.body_text())
}

async fn graphql_get(State(state): State<AppState>, Extension(id): Extension<RequestId>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    if ws::is_upgrade(&parts) {
        return ws::upgrade(state, id, parts).await;
    }
    let headers = &parts.headers;
    let wants_html =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| accept.contains("text/html"));
    let query = parts.uri.query().unwrap_or_default().to_owned();
    if wants_html || query.is_empty() {
        if state.config.limits.graphiql {
            let mut page = Html(graphiql::page("/graphql")).into_response();
            let headers = page.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            headers
                .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(graphiql::CONTENT_SECURITY_POLICY));
            return page;
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
    let media = match MediaType::of(headers) {
        Ok(media) => media,
        Err(refusal) => return refusal.into_response(&state, &id),
    };
    let request = match get_request(&query) {
        Ok(request) => request,
        Err(error) => {
            return Refusal::new(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                format!("invalid GraphQL GET request: {error}"),
            )
            .into_response_as(&state, &id, media)
        }
    };
    let deadline = tokio::time::Instant::now() + state.config.limits.request_timeout;
    let prepared = tokio::time::timeout_at(deadline, async {
        check_rate(&state, headers, 1)?;
        let floor = consistency_floor(headers)?;
        Ok((caller(&state, headers).await?, floor))
    })
    .await
    .unwrap_or_else(|_| Err(Refusal::timeout(&state)));
    let (access, floor) = match prepared {
        Ok(prepared) => prepared,
        Err(refusal) => return refusal.into_response_as(&state, &id, media),
    };
    let (outcomes, report, timed_out, token) =
        execute(&state, &id, vec![request], access, deadline, Transport::HttpGet, floor).await;
    respond(outcomes, false, media, timed_out, report, token)
}

/// `GET /health`: the cheap part of `iofold-graph health` (a database round trip and the
/// migration state), and the last schema drift check (run at start and after each
/// maintenance run, never per request); 503 when the database does not answer within 5 s.
async fn health(State(state): State<AppState>) -> Response {
    let mut report = match tokio::time::timeout(Duration::from_secs(5), crate::ops::health::quick(&state.db)).await {
        Ok(report) => report,
        Err(_) => {
            tracing::warn!("health check: the database did not answer within 5 s");
            json!({"status": "unavailable", "database": "unavailable", "backend": state.db.backend().name()})
        }
    };
    let schema = state.schema_check.json();
    if schema["status"] == "drift" && report["status"] == "ok" {
        report["status"] = json!("degraded");
    }
    report["schema"] = schema;
    if let Some(replicas) = &state.db.replicas {
        let list = replicas.report();
        // A replica that serves no reads degrades the service (reads go to the primary).
        let all_serving = list.as_array().is_some_and(|l| l.iter().all(|r| r["serving"] == true));
        if !all_serving && report["status"] == "ok" {
            report["status"] = json!("degraded");
        }
        report["replicas"] = list;
    }
    let status = if report["database"] == "ok" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(report)).into_response()
}

/// `GET /metrics`: Prometheus text format, with the subscriptions' figures.
async fn metrics(State(state): State<AppState>) -> Response {
    let mut body = state.metrics.render(&state.db);
    let stats = state.events.stats();
    for (name, kind, help, value) in [
        ("iofold_websocket_connections", "gauge", "Open WebSocket connections.", stats.connections() as f64),
        ("iofold_subscriptions_active", "gauge", "Live subscriptions.", stats.subscriptions() as f64),
        (
            "iofold_subscriptions_lagged_total",
            "counter",
            "Subscriptions dropped for falling behind the event bus.",
            stats.lagged() as f64,
        ),
        (
            "iofold_event_listener_connects_total",
            "counter",
            "Connections of the PostgreSQL event listener (more than 1: it reconnected).",
            stats.listener_connects() as f64,
        ),
        (
            "iofold_shared_subscriptions",
            "gauge",
            "Running subscription executions, each shared by the subscribers of one operation under one access.",
            state.hub.stats().executions() as f64,
        ),
        (
            "iofold_shared_subscription_subscribers",
            "gauge",
            "Subscribers of the shared subscription executions.",
            state.hub.stats().subscribers() as f64,
        ),
        (
            "iofold_shared_subscriptions_started_total",
            "counter",
            "Subscription executions started (by a first subscriber, or one whose access changed).",
            state.hub.stats().started() as f64,
        ),
        ("iofold_persisted_queries", "gauge", "Persisted queries remembered.", state.persisted.len() as f64),
    ] {
        body.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
    }
    if let Some(replicas) = &state.db.replicas {
        replicas.render_metrics(&mut body);
    }
    let figures = state.db_figures.get(&state.db, &state.config.database_url).await;
    crate::ops::maintain::render(figures.as_deref(), &state.maintenance, &mut body);
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
    // The schema is compared with its migrations once before the first connection is
    // accepted (so the check's own connection is closed before any client's work), then
    // after each scheduled maintenance run.
    let watch = {
        let (url, schema) = (state.config.database_url.clone(), state.schema_check.clone());
        move || {
            let (url, schema) = (url.clone(), schema.clone());
            async move {
                let checked = tokio::time::timeout(Duration::from_secs(10), crate::ops::drift::check(&url)).await;
                schema.record(checked.unwrap_or_else(|_| Err(anyhow::anyhow!("the check took over 10 s"))))
            }
        }
    };
    watch().await;
    let maintenance = state.config.maintenance_interval.map(|interval| {
        tokio::spawn(crate::ops::maintain::schedule(db.clone(), interval, state.maintenance.clone(), watch))
    });
    tracing::info!(address = %listener.local_addr()?, backend = db.backend().name(), "listening");
    let (stopping, mut stop) = tokio::sync::watch::channel(false);
    let signal = {
        let metrics = metrics.clone();
        let websockets = state.shutdown.clone();
        async move {
            shutdown.await;
            tracing::info!(
                in_flight = metrics.in_flight(),
                grace_ms = grace.as_millis() as u64,
                "shutting down: no new connections; finishing in-flight requests"
            );
            let _ = stopping.send(true);
            // WebSocket connections close (1001): they would not end by themselves.
            websockets.send_replace(true);
        }
    };
    // Connections are served by [`conn::accept_loop`] (header and idle timeouts, caps).
    let (accepting, accept_stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        signal.await;
        let _ = accepting.send(true);
    });
    let connections = state.connections.clone();
    let server = conn::accept_loop(listener, router(state), connections, accept_stop);
    let mut server = std::pin::pin!(server);
    let mut cut_off = false;
    tokio::select! {
        _ = &mut server => {},
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
    if let Some(maintenance) = maintenance {
        maintenance.abort();
    }
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

/// Apollo's automatic persisted queries: the request's `extensions.persistedQuery`
/// (`{"version": 1, "sha256Hash": "<hex>"}`) names its query by the SHA-256 of its text.
///
/// - A hash without a query: the remembered query runs; an unknown hash is the error
///   `PersistedQueryNotFound` (`PERSISTED_QUERY_NOT_FOUND`, HTTP 200), and the client sends
///   the query with its hash.
/// - A hash with a query: the hash must be the query's (`BAD_USER_INPUT` "provided sha does
///   not match query" otherwise); the query is remembered and runs.
///
/// At most `APQ_CACHE_SIZE` queries of at most `APQ_MAX_QUERY_BYTES` are remembered per
/// server instance, the least recently used dropped first; size 0 turns persisted queries
/// off (`PERSISTED_QUERY_NOT_SUPPORTED`).
///
/// Queries are remembered per caller ([`ApqScope`]): a hash finds only a query the same user
/// (or the admin secret, or an anonymous caller) registered, so a hash never tells whether
/// someone else has run that query text.
pub struct PersistedQueries {
    cache: Option<Mutex<ApqCache>>,
    max_query_bytes: usize,
}

impl PersistedQueries {
    /// The cache the settings describe.
    pub fn new(settings: &crate::config::PersistedQueries) -> Self {
        PersistedQueries {
            cache: NonZeroUsize::new(settings.cache_size).map(|size| Mutex::new(lru::LruCache::new(size))),
            max_query_bytes: settings.max_query_bytes,
        }
    }

    /// How many queries are remembered.
    pub fn len(&self) -> usize {
        self.cache.as_ref().map_or(0, |cache| cache.lock().unwrap_or_else(|p| p.into_inner()).len())
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies a request's persisted-query extension for the caller `access` (none:
    /// anonymous): fills in the query of a hash this caller registered, checks and
    /// remembers a new one. The error to answer instead of running it, if any.
    pub fn resolve(&self, request: &mut async_graphql::Request, access: Option<&Access>) -> Result<(), ServerError> {
        let Some(extension) = request.extensions.0.get("persistedQuery") else { return Ok(()) };
        let bad = |message: &str| {
            let mut error = guard::coded_error(message, "BAD_USER_INPUT");
            if let Some(extensions) = error.extensions.as_mut() {
                extensions.set("field", "extensions.persistedQuery");
            }
            error
        };
        let extension = extension.clone().into_json().unwrap_or_default();
        if extension.get("version").and_then(Value::as_i64) != Some(1) {
            return Err(bad("unsupported persisted query version: only version 1 is"));
        }
        let hash = match extension.get("sha256Hash").and_then(Value::as_str) {
            Some(hash) if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => hash.to_ascii_lowercase(),
            _ => return Err(bad("`sha256Hash` must be the 64 hex digits of the query's SHA-256")),
        };
        let Some(cache) = &self.cache else {
            return Err(guard::coded_error("PersistedQueryNotSupported", "PERSISTED_QUERY_NOT_SUPPORTED"));
        };
        let key = (ApqScope::of(access), hash);
        let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
        if request.query.is_empty() {
            return match cache.get(&key) {
                Some(query) => {
                    request.query = query.to_string();
                    Ok(())
                }
                None => Err(guard::coded_error("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")),
            };
        }
        if hex::encode(Sha256::digest(request.query.as_bytes())) != key.1 {
            return Err(bad("provided sha does not match query"));
        }
        if request.query.len() <= self.max_query_bytes {
            cache.put(key, Arc::from(request.query.as_str()));
        }
        Ok(())
    }
}

/// The remembered queries: by caller and hash.
type ApqCache = lru::LruCache<(ApqScope, String), Arc<str>>;

/// Whose persisted queries a request sees: a user's own (whichever of their tokens
/// registered them), the admin secret's, or the anonymous callers' (who can run
/// introspection only).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ApqScope {
    /// No credentials.
    Anonymous,
    /// The admin secret.
    Admin,
    /// A user.
    User(String),
}

impl ApqScope {
    /// The scope of a caller.
    pub fn of(access: Option<&Access>) -> Self {
        match access {
            None => ApqScope::Anonymous,
            Some(Access::Admin) => ApqScope::Admin,
            Some(Access::Member { user_id, .. }) => ApqScope::User(user_id.clone()),
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
/// - The operation must suit its transport ([`Transport`]): `GET` runs queries only (a
///   mutation or subscription is `METHOD_NOT_ALLOWED`, HTTP 405), subscriptions run over
///   WebSocket only (over `POST`: `BAD_REQUEST`).
pub mod guard {
    use std::collections::{HashMap, HashSet};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use async_graphql::dynamic::SchemaBuilder;
    use async_graphql::extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest, NextValidation,
    };
    use async_graphql::parser::types::{
        DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection, SelectionSet,
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

    /// How a request reached the server (request data): what operations it may run.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Transport {
        /// `GET /graphql?query=…`: queries only.
        HttpGet,
        /// `POST /graphql`: queries and mutations (also the default).
        HttpPost,
        /// A WebSocket operation: anything, subscriptions included.
        WebSocket,
    }

    /// Where the guard leaves the operation it resolved (request data), for the log, the
    /// metrics and the HTTP status.
    #[derive(Default)]
    pub struct OperationSlot {
        label: Mutex<Option<String>>,
        kind: Mutex<Option<OperationType>>,
        executed: AtomicBool,
    }

    impl OperationSlot {
        /// The operation's label: its name, `(anonymous)`, or `(invalid)` when the document
        /// was refused; `None` when the guard did not see the request.
        pub fn label(&self) -> Option<String> {
            self.label.lock().unwrap_or_else(|p| p.into_inner()).clone()
        }

        fn set(&self, label: &str) {
            *self.label.lock().unwrap_or_else(|p| p.into_inner()) = Some(label.to_owned());
        }

        /// The kind of the operation (query, mutation, subscription), once resolved.
        pub fn kind(&self) -> Option<OperationType> {
            *self.kind.lock().unwrap_or_else(|p| p.into_inner())
        }

        /// Whether the operation passed every check and began to execute (else the request
        /// failed before: a request error, whose response has no `data`).
        pub fn executed(&self) -> bool {
            self.executed.load(Ordering::Relaxed)
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
        /// Returns the operation's label and kind.
        fn check(
            &self,
            ctx: &ExtensionContext<'_>,
            request: &mut async_graphql::Request,
        ) -> ServerResult<(String, OperationType)> {
            parse(request, &self.limits)?;
            let requested = request.operation_name.clone();
            let variables = request.variables.clone();
            let transport = request
                .data
                .get(&std::any::TypeId::of::<Transport>())
                .and_then(|data| data.downcast_ref::<Transport>())
                .copied()
                .unwrap_or(Transport::HttpPost);
            let document = request.parsed_query().map_err(|error| with_code(error, "GRAPHQL_PARSE_FAILED"))?;
            let (label, operation) = resolve_operation(document, requested.as_deref())?;
            check_transport(operation.ty, transport)?;
            check_variables(operation, &variables)?;
            check_limits(document, &ctx.schema_env.registry, &variables, &self.limits)?;
            check_strings(document, &variables)?;
            crate::graphql::ints::check(document, &ctx.schema_env.registry, &variables)?;
            Ok((label, operation.ty))
        }
    }

    /// Parses the request's document (once: async-graphql reuses it), after checking how deep
    /// its brackets nest.
    fn parse(request: &mut async_graphql::Request, limits: &Limits) -> ServerResult<()> {
        let nesting = nesting_limit(limits.max_depth);
        if bracket_nesting(&request.query) > nesting {
            return Err(coded_error(format!("the query nests deeper than {nesting} levels"), "QUERY_TOO_COMPLEX"));
        }
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
            tokio::task::block_in_place(parse)
        } else {
            parse()
        }
    }

    /// Whether a request runs a subscription: false too when its document does not parse or
    /// names no operation of it (the request then fails as any other).
    pub fn is_subscription(request: &mut async_graphql::Request, limits: &Limits) -> bool {
        if parse(request, limits).is_err() {
            return false;
        }
        let requested = request.operation_name.clone();
        let Ok(document) = request.parsed_query() else { return false };
        resolve_operation(document, requested.as_deref())
            .is_ok_and(|(_, operation)| operation.ty == OperationType::Subscription)
    }

    /// Refuses an operation whose required variables (non-null, without a default) are
    /// missing or null: like a value of the wrong type, a request error
    /// (`GRAPHQL_VALIDATION_FAILED`), before anything runs.
    fn check_variables(operation: &OperationDefinition, variables: &Variables) -> ServerResult<()> {
        for definition in &operation.variable_definitions {
            let definition = &definition.node;
            if definition.var_type.node.nullable || definition.default_value.is_some() {
                continue;
            }
            let name = &definition.name.node;
            let problem = match variables.get(name) {
                None => "was not provided",
                Some(Value::Null) => "must not be null",
                Some(_) => continue,
            };
            let mut error = coded_error(
                format!("Variable \"${name}\" of required type \"{}\" {problem}.", definition.var_type.node),
                "GRAPHQL_VALIDATION_FAILED",
            );
            error.locations = vec![definition.name.pos];
            return Err(error);
        }
        Ok(())
    }

    /// Refuses an operation its transport does not carry.
    fn check_transport(kind: OperationType, transport: Transport) -> ServerResult<()> {
        match (transport, kind) {
            (Transport::HttpGet, OperationType::Mutation | OperationType::Subscription) => Err(coded_error(
                format!("GET runs queries only: send this {kind} with POST (subscriptions: over WebSocket)"),
                "METHOD_NOT_ALLOWED",
            )),
            (Transport::HttpPost, OperationType::Subscription) => Err(coded_error(
                "subscriptions are served over WebSocket at /graphql (protocol graphql-transport-ws or graphql-ws)",
                "BAD_REQUEST",
            )),
            _ => Ok(()),
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
            if let Ok((_, OperationType::Mutation)) = &checked {
                // A mutation reads (its payload) from the primary, like its writes.
                let db = request
                    .data
                    .get(&std::any::TypeId::of::<crate::db::Db>())
                    .and_then(|data| data.downcast_ref::<crate::db::Db>());
                if let Some(db) = db {
                    db.pin_primary();
                }
            }
            if let Some(slot) = slot {
                match &checked {
                    Ok((label, kind)) => {
                        slot.set(label);
                        *slot.kind.lock().unwrap_or_else(|p| p.into_inner()) = Some(*kind);
                    }
                    Err(_) => slot.set(INVALID_OPERATION),
                }
            }
            checked?;
            next.run(ctx, request).await
        }

        async fn execute(
            &self,
            ctx: &ExtensionContext<'_>,
            operation_name: Option<&str>,
            next: NextExecute<'_>,
        ) -> async_graphql::Response {
            if let Some(slot) = ctx.data_opt::<Arc<OperationSlot>>() {
                slot.executed.store(true, Ordering::Relaxed);
            }
            let mut response =
                crate::graphql::subscriptions::execute_with_fresh_loaders(ctx, operation_name, next).await;
            // The newest commit of the request (with read replicas): its consistency token.
            if let Some(token) = ctx.data_opt::<crate::db::Db>().and_then(crate::db::Db::commit_token) {
                response.extensions.insert("consistency".to_owned(), Value::String(token.to_string()));
            }
            response
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

    /// The label and the definition of the operation the request runs, or
    /// `OPERATION_RESOLUTION_FAILURE`.
    fn resolve_operation<'d>(
        document: &'d ExecutableDocument,
        requested: Option<&str>,
    ) -> ServerResult<(String, &'d OperationDefinition)> {
        let unknown = |name: &str| {
            let shown: String = name.chars().take(100).collect();
            coded_error(format!("Unknown operation named \"{shown}\"."), "OPERATION_RESOLUTION_FAILURE")
        };
        match (&document.operations, requested) {
            (DocumentOperations::Single(operation), None) => Ok((ANONYMOUS_OPERATION.to_owned(), &operation.node)),
            (DocumentOperations::Single(_), Some(name)) => Err(unknown(name)),
            (DocumentOperations::Multiple(operations), Some(name)) => match operations.get(name) {
                Some(operation) => Ok((name.to_owned(), &operation.node)),
                None => Err(unknown(name)),
            },
            (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => operations
                .iter()
                .next()
                .map(|(name, operation)| (name.to_string(), &operation.node))
                .ok_or_else(|| unknown("")),
            (DocumentOperations::Multiple(_), None) => Err(coded_error(
                "Must provide operation name if query contains multiple operations.",
                "OPERATION_RESOLUTION_FAILURE",
            )),
        }
    }

    /// Depth, complexity and aliases of a selection.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct Cost {
        /// Nested fields (introspection, under `__schema` and `__type`, counts 1).
        pub depth: usize,
        /// Fields, list fields weighted by their page size.
        pub complexity: u64,
        /// Aliased fields.
        pub aliases: u64,
        /// Nested introspection lists of types' members ([`INTROSPECTION_LISTS`]).
        pub introspection_lists: usize,
    }

    /// The fields of `__Type` that list other types' members: nested deeper than
    /// [`MAX_INTROSPECTION_LISTS`], an introspection query grows exponentially (graphql-js's
    /// `MaxIntrospectionDepthRule`). The standard introspection query nests them once; its
    /// `ofType` chains are deep but linear, so introspection does not count toward the depth
    /// limit, and tools like GraphiQL load the schema under the default limits.
    pub const INTROSPECTION_LISTS: [&str; 4] = ["fields", "inputFields", "interfaces", "possibleTypes"];

    /// How deep [`INTROSPECTION_LISTS`] may nest.
    pub const MAX_INTROSPECTION_LISTS: usize = 3;

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
                        let name = field.name.node.as_str();
                        let introspection = matches!(name, "__schema" | "__type");
                        let member_list = ty == Some("__Type") && INTROSPECTION_LISTS.contains(&name);
                        Cost {
                            depth: if introspection { 1 } else { 1 + children.depth },
                            complexity: 1u64.saturating_add(weight.saturating_mul(children.complexity)),
                            aliases: u64::from(field.alias.is_some()).saturating_add(children.aliases),
                            introspection_lists: children.introspection_lists + usize::from(member_list),
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
                total.introspection_lists = total.introspection_lists.max(cost.introspection_lists);
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
        for (name, fragment) in document.fragments.iter() {
            let mut cost = analyzer.fragment(name.as_str());
            // A fragment on an introspection type (`__Type`…) is introspection: no depth.
            if fragment.node.type_condition.node.on.node.starts_with("__") {
                cost.depth = 0;
            }
            costs.push(cost);
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
            if cost.introspection_lists > MAX_INTROSPECTION_LISTS {
                return Err(coded_error(
                    format!(
                        "the introspection query nests `fields`, `inputFields`, `interfaces` or `possibleTypes` {} deep; \
                         at most {MAX_INTROSPECTION_LISTS} is allowed",
                        cost.introspection_lists
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
