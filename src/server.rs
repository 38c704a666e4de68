//! The HTTP surface: `POST /graphql` (also batches), `GET /graphql` (GraphiQL for browsers,
//! queries for everyone else) and `GET /health`.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::http::GraphiQLSource;
use async_graphql::{BatchRequest, Executor};
use async_graphql_axum::{GraphQLBatchRequest, GraphQLResponse};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::auth::{authenticate, Viewer, ADMIN_SECRET_HEADER};
use crate::config::Config;
use crate::db::Db;
use crate::error::AppError;
use crate::graphql::access::Access;
use crate::graphql::{access_of, build_schema, with_request_data, AppSchema};

/// What every handler shares: the pool, the schema and the configuration. No globals.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub db: Db,
    /// The GraphQL schema.
    pub schema: AppSchema,
    /// The configuration.
    pub config: Arc<Config>,
}

impl AppState {
    /// The state for a database and a configuration.
    pub fn new(db: Db, config: Config) -> Self {
        Self { db, schema: build_schema(), config: Arc::new(config) }
    }
}

/// The application's router.
pub fn router(state: AppState) -> Router {
    Router::new().route("/graphql", get(graphql_get).post(graphql_post)).route("/health", get(health)).with_state(state)
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

/// A request-level error in GraphQL's response shape.
fn error_response(status: StatusCode, error: AppError) -> Response {
    let body = json!({"errors": [{"message": error.message(), "extensions": {"code": error.code()}}]});
    (status, Json(body)).into_response()
}

/// Data responses are private to the caller: never cached by shared caches.
fn private(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    headers.insert(header::VARY, HeaderValue::from_static("Authorization"));
    response
}

/// Resolves the caller and what they may see, or the response that refuses them.
async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Option<Arc<Access>>, Response> {
    let viewer = viewer(state, headers).await.map_err(|e| error_response(StatusCode::UNAUTHORIZED, e))?;
    access_of(&state.db, &viewer).await.map_err(|e| error_response(StatusCode::INTERNAL_SERVER_ERROR, e))
}

async fn graphql_post(State(state): State<AppState>, headers: HeaderMap, request: GraphQLBatchRequest) -> Response {
    let access = match caller(&state, &headers).await {
        Ok(access) => access,
        Err(response) => return response,
    };
    let batch = match request.into_inner() {
        BatchRequest::Single(request) => BatchRequest::Single(with_request_data(request, &state.db, access)),
        BatchRequest::Batch(requests) => {
            BatchRequest::Batch(requests.into_iter().map(|r| with_request_data(r, &state.db, access.clone())).collect())
        }
    };
    private(GraphQLResponse::from(state.schema.execute_batch(batch).await).into_response())
}

async fn graphql_get(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let wants_html =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| accept.contains("text/html"));
    let query = query.unwrap_or_default();
    if wants_html || query.is_empty() {
        return Html(GraphiQLSource::build().endpoint("/graphql").title("iofold-graph").finish()).into_response();
    }
    let request = match async_graphql::http::parse_query_string(&query) {
        Ok(request) => request,
        Err(error) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                AppError::bad_input("query", format!("invalid GraphQL GET request: {error}")),
            )
        }
    };
    let access = match caller(&state, &headers).await {
        Ok(access) => access,
        Err(response) => return response,
    };
    let request = with_request_data(request, &state.db, access);
    private(GraphQLResponse::from(state.schema.execute(request).await).into_response())
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

/// Serves until SIGTERM or SIGINT, then stops accepting, lets in-flight requests finish,
/// checkpoints the SQLite WAL and closes the pool.
pub async fn serve(state: AppState) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(state.config.listen).await?;
    let db = state.db.clone();
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
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown_signal()).await?;
    idle.abort();
    if let Err(error) = db.checkpoint().await {
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
    tracing::info!("shutting down: finishing in-flight requests");
}
