//! Observability: logging setup, a request id and a span per request, one log line per
//! request (route, status, GraphQL operations, error codes, duration), and the Prometheus
//! metrics behind `GET /metrics`.
//!
//! The request id comes from a sane incoming `X-Request-Id` (1–128 characters of
//! `A-Z a-z 0-9 . _ - : / + =`) or is generated (a UUID v7), is sent back in `X-Request-Id`,
//! and is a field of the request's span: every log line of the request carries it, the
//! slow-statement lines of its database work included (see `db::Recorder`). Internal errors
//! give it to the client as `extensions.requestId`, so a report can be matched with the log.
//!
//! The metrics are counters and histograms of our own, written out in Prometheus' text format
//! (version 0.0.4) by hand: no metrics crate. Operation names are labels, so their number is
//! capped ([`MAX_OPERATION_LABELS`]); names beyond it count as `(other)`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::FutureExt;
use serde_json::json;
use tracing::Instrument;

use crate::config::LogFormat;
use crate::db::Db;
use crate::server::AppState;

/// The header that carries the request id, both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The most distinct operation names the metrics keep apart.
pub const MAX_OPERATION_LABELS: usize = 200;

/// The upper bounds of the latency histograms' buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The operation label of requests refused before any operation was read (malformed,
/// too large, rate limited, unauthenticated).
pub const NO_OPERATION: &str = "(none)";
/// The operation label of an operation without a name.
pub const ANONYMOUS_OPERATION: &str = "(anonymous)";
/// The operation label of a document that was not run (parse error, too complex, unknown
/// operation name).
pub const INVALID_OPERATION: &str = "(invalid)";
/// The operation label of names beyond [`MAX_OPERATION_LABELS`].
pub const OTHER_OPERATION: &str = "(other)";

/// Installs the global `tracing` subscriber: `RUST_LOG` filter (default `info`), human or
/// JSON lines on stderr; JSON lines carry the request span's fields (`span.id` is the request
/// id).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
    }
}

/// The id of the request being served (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub Arc<str>);

impl RequestId {
    /// The incoming `X-Request-Id` when it is sane, else a new UUID v7.
    pub fn from_headers(headers: &HeaderMap) -> RequestId {
        let incoming = headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).map(str::trim);
        match incoming {
            Some(id) if is_sane_request_id(id) => RequestId(id.into()),
            _ => RequestId(uuid::Uuid::now_v7().to_string().into()),
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// 1–128 characters of `A-Z a-z 0-9 . _ - : / + =`: safe in a header, a log line and a label.
pub fn is_sane_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/' | b'+' | b'='))
}

/// What a handler tells the request log and the metrics about a request (a response
/// extension): the operations it ran and the error codes it answered.
#[derive(Debug, Clone, Default)]
pub struct RequestReport {
    /// Operation labels, one per operation of the request.
    pub operations: Vec<String>,
    /// The `extensions.code` of every error of the response.
    pub codes: Vec<String>,
}

/// Counts a request in flight while it lives.
struct InFlight(Arc<Metrics>);

impl InFlight {
    fn new(metrics: Arc<Metrics>) -> Self {
        metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(metrics)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The middleware around every route: the request id, the request's span, a caught panic
/// (a 500 with the request id, instead of a dropped connection), the request's log line, its
/// metrics and the `X-Request-Id` response header.
pub async fn track(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = RequestId::from_headers(request.headers());
    request.extensions_mut().insert(id.clone());
    let route = request.extensions().get::<MatchedPath>().map_or("(unmatched)", |p| p.as_str()).to_owned();
    let method = request.method().clone();
    let span = tracing::info_span!("request", id = %id.as_str(), method = %method, route = %route);
    let in_flight = InFlight::new(state.metrics.clone());

    let outcome = AssertUnwindSafe(next.run(request)).catch_unwind().instrument(span.clone()).await;
    let mut response = match outcome {
        Ok(response) => response,
        Err(panic) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            tracing::error!(parent: &span, panic = %detail, "internal error: the handler panicked");
            state.metrics.record_error(NO_OPERATION, "INTERNAL_SERVER_ERROR");
            let mut response = internal_error_response(&id);
            response.extensions_mut().insert(RequestReport {
                operations: vec![NO_OPERATION.into()],
                codes: vec!["INTERNAL_SERVER_ERROR".into()],
            });
            response
        }
    };
    drop(in_flight);
    let elapsed = started.elapsed();
    let status = response.status();
    let report = response.extensions_mut().remove::<RequestReport>();
    state.metrics.record_http(&route, status.as_u16(), elapsed);
    let operations = report.as_ref().map(|r| r.operations.join(",")).unwrap_or_default();
    let codes = report.as_ref().map(|r| r.codes.join(",")).unwrap_or_default();
    let duration_ms = (elapsed.as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
    let _entered = span.enter();
    if status.is_server_error() {
        tracing::warn!(status = status.as_u16(), duration_ms, operation = %operations, errors = %codes, "request");
    } else if route == "/graphql" {
        tracing::info!(status = status.as_u16(), duration_ms, operation = %operations, errors = %codes, "request");
    } else {
        tracing::debug!(status = status.as_u16(), duration_ms, "request");
    }
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// The response to an internal error outside GraphQL execution: a 500 naming the request id.
pub fn internal_error_response(id: &RequestId) -> Response {
    let body = json!({"errors": [{
        "message": "internal server error",
        "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": id.as_str()},
    }]});
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}

/// The server's counters, gauges and histograms. Cheap to share (`Arc`); a mutex guards
/// the labelled series (held for a map update, never across an await).
pub struct Metrics {
    started: Instant,
    in_flight: AtomicI64,
    series: Mutex<Series>,
}

#[derive(Default)]
struct Series {
    http_requests: BTreeMap<(String, u16), u64>,
    http_latency: BTreeMap<String, Histogram>,
    operations: BTreeMap<String, u64>,
    errors: BTreeMap<(String, String), u64>,
    operation_latency: BTreeMap<String, Histogram>,
}

#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics { started: Instant::now(), in_flight: AtomicI64::new(0), series: Mutex::default() }
    }
}

impl Metrics {
    /// Requests being served now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn series(&self) -> std::sync::MutexGuard<'_, Series> {
        self.series.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts an HTTP request by route and status, and its duration by route.
    pub fn record_http(&self, route: &str, status: u16, elapsed: Duration) {
        let mut series = self.series();
        *series.http_requests.entry((route.to_owned(), status)).or_default() += 1;
        series.http_latency.entry(route.to_owned()).or_default().observe(elapsed.as_secs_f64());
    }

    /// Counts a GraphQL operation, its duration and its errors by code.
    pub fn record_operation(&self, operation: &str, elapsed: Duration, codes: &[String]) {
        let mut series = self.series();
        let label = Self::label(&series, operation);
        *series.operations.entry(label.clone()).or_default() += 1;
        series.operation_latency.entry(label.clone()).or_default().observe(elapsed.as_secs_f64());
        for code in codes {
            *series.errors.entry((label.clone(), code.clone())).or_default() += 1;
        }
    }

    /// Counts an error of a request refused before any operation ran.
    pub fn record_error(&self, operation: &str, code: &str) {
        let mut series = self.series();
        let label = Self::label(&series, operation);
        *series.operations.entry(label.clone()).or_default() += 1;
        *series.errors.entry((label, code.to_owned())).or_default() += 1;
    }

    fn label(series: &Series, operation: &str) -> String {
        if series.operations.contains_key(operation) || series.operations.len() < MAX_OPERATION_LABELS {
            operation.to_owned()
        } else {
            OTHER_OPERATION.to_owned()
        }
    }

    /// Everything, in Prometheus' text exposition format.
    pub fn render(&self, db: &Db) -> String {
        let series = self.series();
        let mut out = String::with_capacity(4096);
        family(&mut out, "iofold_info", "gauge", "The server: version and database backend (always 1).");
        sample(
            &mut out,
            "iofold_info",
            &[("version", env!("CARGO_PKG_VERSION")), ("backend", db.backend().name())],
            1.0,
        );
        family(&mut out, "iofold_uptime_seconds", "gauge", "Seconds since the server started.");
        sample(&mut out, "iofold_uptime_seconds", &[], self.started.elapsed().as_secs_f64());
        family(&mut out, "iofold_http_requests_in_flight", "gauge", "HTTP requests being served.");
        sample(&mut out, "iofold_http_requests_in_flight", &[], self.in_flight() as f64);

        family(&mut out, "iofold_http_requests_total", "counter", "HTTP requests by route and status.");
        for ((route, status), n) in &series.http_requests {
            sample(
                &mut out,
                "iofold_http_requests_total",
                &[("route", route), ("status", &status.to_string())],
                *n as f64,
            );
        }
        family(&mut out, "iofold_http_request_duration_seconds", "histogram", "HTTP request latency by route.");
        for (route, histogram) in &series.http_latency {
            write_histogram(&mut out, "iofold_http_request_duration_seconds", ("route", route), histogram);
        }

        family(
            &mut out,
            "iofold_graphql_requests_total",
            "counter",
            "GraphQL operations by operation name ((anonymous), (invalid): not run, (none): refused before reading one).",
        );
        for (operation, n) in &series.operations {
            sample(&mut out, "iofold_graphql_requests_total", &[("operation", operation)], *n as f64);
        }
        family(&mut out, "iofold_graphql_errors_total", "counter", "GraphQL errors by operation name and code.");
        for ((operation, code), n) in &series.errors {
            sample(&mut out, "iofold_graphql_errors_total", &[("operation", operation), ("code", code)], *n as f64);
        }
        family(
            &mut out,
            "iofold_graphql_request_duration_seconds",
            "histogram",
            "GraphQL operation latency by operation name.",
        );
        for (operation, histogram) in &series.operation_latency {
            write_histogram(&mut out, "iofold_graphql_request_duration_seconds", ("operation", operation), histogram);
        }
        drop(series);

        let pool = db.pool_status();
        family(&mut out, "iofold_db_pool_max_connections", "gauge", "The most connections the pool opens.");
        sample(&mut out, "iofold_db_pool_max_connections", &[], pool.max_size as f64);
        family(&mut out, "iofold_db_pool_connections", "gauge", "Connections open now.");
        sample(&mut out, "iofold_db_pool_connections", &[], pool.size as f64);
        family(&mut out, "iofold_db_pool_available_connections", "gauge", "Open connections not in use.");
        sample(&mut out, "iofold_db_pool_available_connections", &[], pool.available as f64);
        family(&mut out, "iofold_db_pool_waiters", "gauge", "Tasks waiting for a connection.");
        sample(&mut out, "iofold_db_pool_waiters", &[], pool.waiting as f64);
        let stats = &db.stats;
        family(&mut out, "iofold_db_statements_total", "counter", "SQL statements started.");
        sample(&mut out, "iofold_db_statements_total", &[], stats.statements() as f64);
        family(
            &mut out,
            "iofold_db_slow_statements_total",
            "counter",
            "SQL statements slower than the slow-statement threshold (SLOW_QUERY_MS).",
        );
        sample(&mut out, "iofold_db_slow_statements_total", &[], stats.slow_statements() as f64);
        family(&mut out, "iofold_db_statement_errors_total", "counter", "SQL statements that failed.");
        sample(&mut out, "iofold_db_statement_errors_total", &[], stats.failed_statements() as f64);
        family(
            &mut out,
            "iofold_db_interrupted_transactions_total",
            "counter",
            "Write transactions cut off by a cancelled request: rolled back, their connection closed.",
        );
        sample(&mut out, "iofold_db_interrupted_transactions_total", &[], stats.interrupted_transactions() as f64);
        family(&mut out, "iofold_db_slow_statement_threshold_seconds", "gauge", "The slow-statement threshold.");
        sample(&mut out, "iofold_db_slow_statement_threshold_seconds", &[], stats.slow_threshold().as_secs_f64());
        out
    }
}

/// Writes a metric family's `# HELP` and `# TYPE` lines.
pub(crate) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", help.replace('\\', "\\\\").replace('\n', "\\n"));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Writes one sample line (labels escaped).
pub(crate) fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label}=\"{}\"", escape_label(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", number(value));
}

fn write_histogram(out: &mut String, name: &str, (label, value): (&str, &str), histogram: &Histogram) {
    let bucket = format!("{name}_bucket");
    for (n, bound) in histogram.buckets.iter().zip(LATENCY_BUCKETS) {
        sample(out, &bucket, &[(label, value), ("le", &number(bound))], *n as f64);
    }
    sample(out, &bucket, &[(label, value), ("le", "+Inf")], histogram.count as f64);
    sample(out, &format!("{name}_sum"), &[(label, value)], histogram.sum);
    sample(out, &format!("{name}_count"), &[(label, value)], histogram.count as f64);
}

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_taken_when_sane() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("abc-123_x.y:z"));
        assert_eq!(RequestId::from_headers(&headers).as_str(), "abc-123_x.y:z");
        for bad in ["", "has space", "quote\"", "{json}", &"x".repeat(129)] {
            let mut headers = HeaderMap::new();
            headers.insert(REQUEST_ID_HEADER, HeaderValue::from_str(bad).unwrap());
            let id = RequestId::from_headers(&headers);
            assert_ne!(id.as_str(), bad);
            assert!(uuid::Uuid::parse_str(id.as_str()).is_ok());
        }
    }

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let metrics = Metrics::default();
        metrics.record_operation("A", Duration::from_millis(3), &["NOT_FOUND".into()]);
        metrics.record_operation("A", Duration::from_secs(20), &[]);
        let series = metrics.series();
        let histogram = &series.operation_latency["A"];
        assert_eq!(histogram.count, 2);
        assert_eq!(histogram.buckets[0], 0);
        assert_eq!(histogram.buckets[1], 1);
        assert_eq!(histogram.buckets[LATENCY_BUCKETS.len() - 1], 1);
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
    }
}
