//! Operations and hardening: hostile input, limits, request ids, metrics, the slow-statement
//! log, deadlines, statement timeouts, the rate limit and graceful shutdown.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use diesel_async::SimpleAsyncConnection;
use iofold_graph::config::Config;
use iofold_graph::db::{statement_shape, Backend, Db, DbError, Pool};
use iofold_graph::error::AppError;
use iofold_graph::seed;
use iofold_graph::server::AppState;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::both_backends;
use crate::support::app::{test_config, TestApp, TestResponse, ADMIN_SECRET};
use crate::support::db::{require_postgres, TestDb};

/// Text that must never reach a client: SQL, driver and database names, paths, panics.
const INTERNAL_TEXT: &[&str] = &[
    "SELECT ",
    "INSERT ",
    "UPDATE ",
    "DELETE ",
    " FROM ",
    "sqlite",
    "SQLite",
    "postgres",
    "PostgreSQL",
    "diesel",
    "/tmp/",
    "/work/",
    "/nonexistent",
    ".rs:",
    "panicked",
    "backtrace",
    "127.0.0.1",
    "pool",
];

fn assert_clean(what: &str, response: &TestResponse) {
    let text = response.body.to_string();
    for bad in INTERNAL_TEXT {
        assert!(!text.contains(bad), "{what}: the response shows internal text `{bad}`: {text:.500}");
    }
}

/// The application on `backend` with a configuration changed by `change`.
async fn app_with(backend: Backend, change: impl FnOnce(&mut Config)) -> TestApp {
    let app = TestApp::new(backend).await;
    let mut config = test_config(app.test_db.url.as_str());
    change(&mut config);
    TestApp { state: AppState::new(app.test_db.db.clone(), config), ..app }
}

/// Sends a raw body to `POST /graphql`.
async fn post_raw(app: &TestApp, body: impl Into<Body>, headers: &[(&str, &str)]) -> TestResponse {
    let mut builder = Request::post("/graphql").header("content-type", "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    app.request(builder.body(body.into()).unwrap()).await
}

/// The server still answers a real query for the demo user.
async fn still_answers(app: &TestApp, token: &str) {
    let response = app.graphql(Some(token), "{ me { email } }", json!({})).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.data()["me"]["email"], seed::DEMO_EMAIL);
}

both_backends! {
    async fn hostile_input_gets_clean_errors_and_the_server_keeps_answering(backend: Backend) {
        let (app, token) = TestApp::seeded(backend).await;
        let auth = format!("Bearer {token}");
        let auth = [("authorization", auth.as_str())];
        let started = Instant::now();

        // Malformed JSON, JSON that is no request, an empty body, an empty batch.
        for (body, what) in [
            (r#"{"query": "{ me { id } }""#.to_owned(), "truncated JSON"),
            ("{\"query\": \"{ me }\", }".to_owned(), "trailing comma"),
            ("42".to_owned(), "a number"),
            (r#"{"query": 5}"#.to_owned(), "query not a string"),
            ("".to_owned(), "empty body"),
            ("[]".to_owned(), "empty batch"),
            ("\u{0}\u{1}garbage".to_owned(), "binary garbage"),
            (format!("{}1{}", "[".repeat(200), "]".repeat(200)), "JSON nested 200 deep"),
        ] {
            let response = post_raw(&app, body, &auth).await;
            assert_eq!(response.status, 400, "{what}: {}", response.body);
            assert_eq!(response.error_code(), Some("BAD_REQUEST"), "{what}: {}", response.body);
            assert_clean(what, &response);
        }
        let deep_variables = format!(r#"{{"query": "{{ me {{ id }} }}", "variables": {{"x": {}1{}}}}}"#, "[".repeat(300), "]".repeat(300));
        let response = post_raw(&app, deep_variables, &auth).await;
        assert_eq!(response.error_code(), Some("BAD_REQUEST"), "{}", response.body);
        still_answers(&app, &token).await;

        // Parse and validation errors, with Apollo Server's codes.
        let response = app.graphql(Some(&token), "{ me { id }", json!({})).await;
        assert_eq!(response.error_code(), Some("GRAPHQL_PARSE_FAILED"), "{}", response.body);
        let response = app.graphql(Some(&token), "{ me { noSuchField } }", json!({})).await;
        assert_eq!(response.error_code(), Some("GRAPHQL_VALIDATION_FAILED"), "{}", response.body);
        let response = app.graphql(Some(&token), "query($n: Int) { traces(workspaceId: \"x\", first: $n) { totalCount } }", json!({"n": "many"})).await;
        assert_eq!(response.error_code(), Some("GRAPHQL_VALIDATION_FAILED"), "{}", response.body);
        let response = app.graphql(Some(&token), "{ me { email(\"x\") } }", json!({})).await;
        assert_eq!(response.error_code(), Some("GRAPHQL_PARSE_FAILED"), "{}", response.body);
        assert_clean("validation", &response);

        // An unknown operation name; several operations and none named.
        let response = app
            .post_graphql_with(json!({"query": "query A { me { id } }", "operationName": "B"}), &auth)
            .await;
        assert_eq!(response.error_code(), Some("OPERATION_RESOLUTION_FAILURE"), "{}", response.body);
        assert!(response.body["errors"][0]["message"].as_str().unwrap().contains("\"B\""));
        let response = app
            .post_graphql_with(json!({"query": "query A { me { id } } query B { me { email } }"}), &auth)
            .await;
        assert_eq!(response.error_code(), Some("OPERATION_RESOLUTION_FAILURE"), "{}", response.body);
        let response = app
            .post_graphql_with(json!({"query": "query A { me { id } } query B { me { email } }", "operationName": "B"}), &auth)
            .await;
        assert_eq!(response.data()["me"]["email"], seed::DEMO_EMAIL);
        let response = app
            .post_graphql_with(json!({"query": "{ me { id } }", "operationName": "x\u{0}<script>".repeat(50)}), &auth)
            .await;
        assert_eq!(response.error_code(), Some("OPERATION_RESOLUTION_FAILURE"), "{}", response.body);

        // A query nested 1,000 deep (selections) and 100 deep (an argument); a fragment cycle
        // and a fragment bomb.
        let deep = format!("{{ me {}{} }}", "{ id ".repeat(1000), "}".repeat(1000));
        let response = app.graphql(Some(&token), &deep, json!({})).await;
        assert_eq!(response.status, 200);
        assert_eq!(response.error_code(), Some("QUERY_TOO_COMPLEX"), "{}", response.body);
        let deep_filter = format!(
            "{{ traces(workspaceId: \"{}\", filter: {}{{ id: {{ eq: \"x\" }} }}{}) {{ totalCount }} }}",
            seed::ids::workspace(),
            "{ and: [".repeat(100),
            "] }".repeat(100)
        );
        let response = app.graphql(Some(&token), &deep_filter, json!({})).await;
        assert_eq!(response.error_code(), Some("QUERY_TOO_COMPLEX"), "{}", response.body);
        let moderately_deep = format!("{{ me {}{} }}", "{ id ".repeat(20), "}".repeat(20));
        let response = app.graphql(Some(&token), &moderately_deep, json!({})).await;
        assert_eq!(response.error_code(), Some("QUERY_TOO_COMPLEX"), "{}", response.body);
        let cycle = "query { ...A } fragment A on Query { me { id } ...B } fragment B on Query { ...A }";
        let response = app.graphql(Some(&token), cycle, json!({})).await;
        let code = response.error_code().unwrap_or_default().to_owned();
        assert!(code == "QUERY_TOO_COMPLEX" || code == "GRAPHQL_VALIDATION_FAILED", "{}", response.body);
        let mut bomb = String::from("query { me { ...F40 } } fragment F0 on User { id }");
        for i in 1..=40 {
            bomb.push_str(&format!(" fragment F{i} on User {{ ...F{0} ...F{0} }}", i - 1));
        }
        let response = app.graphql(Some(&token), &bomb, json!({})).await;
        let code = response.error_code().unwrap_or_default().to_owned();
        assert!(code == "QUERY_TOO_COMPLEX", "{}", response.body);
        still_answers(&app, &token).await;

        // Directives piled on one field.
        let piled = format!("{{ me {{ id {} }} }}", "@skip(if: false) ".repeat(40));
        let response = app.graphql(Some(&token), &piled, json!({})).await;
        assert_eq!(response.error_code(), Some("QUERY_TOO_COMPLEX"), "{}", response.body);

        // 10,000 aliases of one field.
        let aliases: String = (0..10_000).map(|i| format!("a{i}: __typename ")).collect();
        let response = app.graphql(Some(&token), &format!("{{ {aliases} }}"), json!({})).await;
        assert_eq!(response.error_code(), Some("QUERY_TOO_COMPLEX"), "{}", response.body.to_string().chars().take(300).collect::<String>());
        assert_clean("aliases", &response);

        // A batch of 10,000 operations.
        let batch: Vec<Value> = (0..10_000).map(|_| json!({"query": "{ me { id } }"})).collect();
        let response = app.post_graphql_with(Value::Array(batch), &auth).await;
        assert_eq!(response.status, 400);
        assert_eq!(response.error_code(), Some("BATCH_TOO_LARGE"), "{}", response.body);
        // A batch within the limit runs.
        let batch: Vec<Value> = (0..3).map(|_| json!({"query": "{ me { email } }"})).collect();
        let response = app.post_graphql_with(Value::Array(batch), &auth).await;
        assert_eq!(response.body.as_array().map(Vec::len), Some(3), "{}", response.body);
        assert_eq!(response.body[2]["data"]["me"]["email"], seed::DEMO_EMAIL);

        // A 50 MiB body, streamed (no length given) and declared.
        let huge = format!(r#"{{"query": "{{ me {{ id }} }}", "variables": {{"x": "{}"}}}}"#, "a".repeat(50 << 20));
        let response = post_raw(&app, huge.clone(), &auth).await;
        assert_eq!(response.status, 413);
        assert_eq!(response.error_code(), Some("PAYLOAD_TOO_LARGE"));
        let length = huge.len().to_string();
        let response = post_raw(&app, huge, &[auth[0], ("content-length", length.as_str())]).await;
        assert_eq!(response.status, 413);
        assert_eq!(response.error_code(), Some("PAYLOAD_TOO_LARGE"));
        still_answers(&app, &token).await;

        // Huge strings and control characters in arguments.
        let query = "query($id: ID!) { workspace(id: $id) { id } }";
        for id in [
            format!("workspace_{}", "x".repeat(10 << 20)),
            "workspace_\u{1}\u{7}\u{1b}[31m\u{7f}\u{2028}\u{fffe}".to_owned(),
            "'; DROP TABLE workspaces; --".to_owned(),
            format!("{}\\", seed::ids::workspace()),
        ] {
            let response = app.graphql(Some(&token), query, json!({"id": id})).await;
            assert_eq!(response.status, 200);
            assert_eq!(response.data()["workspace"], Value::Null);
        }
        let literal = format!("{{ workspace(id: \"workspace_{}\\u0001\\t\") {{ id }} }}", "y".repeat(1 << 20));
        let response = app.graphql(Some(&token), &literal, json!({})).await;
        assert_eq!(response.data()["workspace"], Value::Null);
        // Unescaped control characters (async-graphql's parser takes them).
        let response = app.graphql(Some(&token), "{ workspace(id: \"a\u{1}\u{8}b\") { id } }", json!({})).await;
        assert_eq!(response.data()["workspace"], Value::Null);
        // NUL is refused alike on both backends (PostgreSQL cannot store it).
        let response = app.graphql(Some(&token), query, json!({"id": "workspace_\u{0}"})).await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{}", response.body);
        let filter = "query($ws: ID!, $s: String!) { traces(workspaceId: $ws, filter: { traceId: { eq: $s } }) { totalCount } }";
        let response = app.graphql(Some(&token), filter, json!({"ws": seed::ids::workspace(), "s": "a\u{0}b"})).await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{}", response.body);
        let response = app.graphql(Some(&token), filter, json!({"ws": seed::ids::workspace(), "s": "\u{1}".repeat(100_000)})).await;
        assert_eq!(response.data()["traces"]["totalCount"], 0);
        let response = app
            .graphql(Some(&token), "{ workspace(id: \"workspace_\\u0000\") { id } }", json!({}))
            .await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{}", response.body);
        assert_clean("control characters", &response);

        // Authentication headers that are odd.
        let long = format!("Bearer {}", "t".repeat(100_000));
        let response = app.post_graphql_with(json!({"query": "{ me { id } }"}), &[("authorization", long.as_str())]).await;
        assert_eq!(response.status, 401);
        assert_clean("long token", &response);

        still_answers(&app, &token).await;
        eprintln!("hostile input on {}: {:?}", backend.name(), started.elapsed());
    }
}

both_backends! {
    async fn request_ids_are_sent_back_and_name_internal_errors(backend: Backend) {
        let (app, token) = TestApp::seeded(backend).await;
        let response = app.graphql(Some(&token), "{ me { id } }", json!({})).await;
        let id = response.headers["x-request-id"].to_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        let again = app.graphql(Some(&token), "{ me { id } }", json!({})).await;
        assert_ne!(again.headers["x-request-id"], id.as_str(), "a new id per request");

        let mine = app.post_graphql_with(json!({"query": "{ me { id } }"}), &[("x-request-id", "trace-42.abc")]).await;
        assert_eq!(mine.headers["x-request-id"], "trace-42.abc");
        let insane = app.post_graphql_with(json!({"query": "{ __typename }"}), &[("x-request-id", "bad id with spaces")]).await;
        assert_ne!(insane.headers["x-request-id"], "bad id with spaces");
        for path in ["/health", "/metrics", "/nowhere"] {
            assert!(app.get(path, &[]).await.headers.contains_key("x-request-id"), "{path}");
        }

        // A database that cannot be reached: the client gets INTERNAL_SERVER_ERROR and the
        // request id, nothing else.
        let down_url = match backend {
            Backend::Sqlite => "/nonexistent-dir/iofold/down.db".to_owned(),
            Backend::Postgres => "postgres://postgres@127.0.0.1:1/none".to_owned(),
        };
        let mut config = test_config(&down_url);
        config.limits.request_timeout = Duration::from_secs(30);
        let down = Db::connect(&config.database_url, &iofold_graph::db::PoolOptions { max_size: 2 }).unwrap();
        let down_app = TestApp { state: AppState::new(down, config), ..app };
        let auth = format!("Bearer {token}");
        let response = down_app
            .post_graphql_with(json!({"query": "{ me { id } }"}), &[("authorization", auth.as_str()), ("x-request-id", "req-internal-1")])
            .await;
        assert_eq!(response.status, 500, "{}", response.body);
        assert_eq!(response.error_code(), Some("INTERNAL_SERVER_ERROR"));
        assert_eq!(response.body["errors"][0]["extensions"]["requestId"], "req-internal-1");
        assert_eq!(response.body["errors"][0]["message"], "internal server error");
        assert_clean("internal error", &response);
        // Inside GraphQL execution too (admin: no database for authentication).
        let response = down_app
            .post_graphql_with(json!({"query": "{ workspaces { totalCount } }"}), &[("x-iofold-admin-secret", ADMIN_SECRET), ("x-request-id", "req-internal-2")])
            .await;
        assert_eq!(response.error_code(), Some("INTERNAL_SERVER_ERROR"), "{}", response.body);
        assert_eq!(response.body["errors"][0]["extensions"]["requestId"], "req-internal-2");
        assert_eq!(response.body["errors"][0]["extensions"].as_object().unwrap().len(), 2);
        assert_clean("internal error in a resolver", &response);
    }
}

/// A parsed Prometheus text exposition: `name{labels}` → value, and each family's type.
#[derive(Debug, Default)]
struct Exposition {
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
}

impl Exposition {
    /// Parses the text format (version 0.0.4) strictly: every sample belongs to a declared
    /// family, names and labels are well formed, values are numbers, histograms are
    /// cumulative and end at `+Inf` = `_count`.
    fn parse(text: &str) -> Exposition {
        fn is_name(s: &str) -> bool {
            let mut chars = s.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        }
        let mut out = Exposition::default();
        let mut helped = std::collections::HashSet::new();
        for (n, line) in text.lines().enumerate() {
            let at = |what: &str| format!("line {}: {what}: {line}", n + 1);
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("HELP"), Some(name), Some(_)) => {
                        assert!(is_name(name), "{}", at("bad name"));
                        assert!(helped.insert(name.to_owned()), "{}", at("HELP twice"));
                    }
                    (Some("TYPE"), Some(name), Some(kind)) => {
                        assert!(is_name(name), "{}", at("bad name"));
                        assert!(
                            ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                            "{}",
                            at("bad type")
                        );
                        assert!(out.types.insert(name.to_owned(), kind.to_owned()).is_none(), "{}", at("TYPE twice"));
                    }
                    _ => panic!("{}", at("bad comment")),
                }
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{}", at("no value")));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                v => v.parse().unwrap_or_else(|_| panic!("{}", at("bad value"))),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => {
                    (name, labels.strip_suffix('}').unwrap_or_else(|| panic!("{}", at("unclosed labels"))))
                }
                None => (series, ""),
            };
            assert!(is_name(name), "{}", at("bad metric name"));
            // Labels: name="value" pairs, values with \\ \" \n escapes.
            let mut rest = labels;
            let mut canonical = Vec::new();
            while !rest.is_empty() {
                let (label, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("{}", at("bad label")));
                assert!(is_name(label), "{}", at("bad label name"));
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c @ ('\\' | '"'))) => value.push(c),
                            _ => panic!("{}", at("bad escape")),
                        },
                        Some((i, '"')) => break i,
                        Some((_, c)) => value.push(c),
                        None => panic!("{}", at("unterminated label value")),
                    }
                };
                canonical.push(format!("{label}={value}"));
                rest = &after[end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix).filter(|f| out.types.get(*f).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(name);
            assert!(out.types.contains_key(family), "{}", at("sample of an undeclared family"));
            let key = if canonical.is_empty() { name.to_owned() } else { format!("{name}{{{}}}", canonical.join(",")) };
            assert!(out.samples.insert(key, value).is_none(), "{}", at("duplicate sample"));
        }
        out.check_histograms();
        out
    }

    fn check_histograms(&self) {
        for (family, kind) in &self.types {
            if kind != "histogram" {
                continue;
            }
            let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
            for (key, value) in self.samples.range(format!("{family}_bucket{{")..format!("{family}_bucket|")) {
                let labels = &key[family.len() + "_bucket{".len()..key.len() - 1];
                let (rest, le) = labels.rsplit_once("le=").unwrap();
                let le: f64 = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() };
                series.entry(rest.trim_end_matches(',').to_owned()).or_default().push((le, *value));
            }
            for (labels, mut buckets) in series {
                buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
                assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{family}{{{labels}}}: buckets not cumulative");
                let last = buckets.last().unwrap();
                assert!(last.0.is_infinite(), "{family}{{{labels}}}: no +Inf bucket");
                let count_key =
                    if labels.is_empty() { format!("{family}_count") } else { format!("{family}_count{{{labels}}}") };
                assert_eq!(self.samples.get(&count_key), Some(&last.1), "{family}{{{labels}}}: +Inf bucket != count");
            }
        }
    }

    fn get(&self, key: &str) -> f64 {
        self.samples.get(key).copied().unwrap_or(0.0)
    }
}

async fn scrape(app: &TestApp) -> Exposition {
    let response = app.get("/metrics", &[]).await;
    assert_eq!(response.status, 200);
    assert!(response.headers["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    Exposition::parse(response.body.as_str().expect("metrics are text"))
}

both_backends! {
    async fn metrics_parse_as_prometheus_text_and_move_with_requests(backend: Backend) {
        let (app, token) = TestApp::seeded(backend).await;
        let before = scrape(&app).await;
        assert_eq!(before.types["iofold_graphql_requests_total"], "counter");
        assert_eq!(before.types["iofold_graphql_request_duration_seconds"], "histogram");
        assert_eq!(before.get("iofold_db_pool_max_connections"), 8.0);
        assert_eq!(before.get(&format!("iofold_info{{version={},backend={}}}", env!("CARGO_PKG_VERSION"), backend.name())), 1.0);
        for gauge in ["iofold_db_pool_connections", "iofold_db_pool_available_connections", "iofold_db_pool_waiters", "iofold_http_requests_in_flight"] {
            assert!(before.samples.contains_key(gauge), "{gauge}");
        }

        let auth = format!("Bearer {token}");
        for _ in 0..3 {
            app.post_graphql_with(json!({"query": "query Me { me { id } }"}), &[("authorization", auth.as_str())]).await.data();
        }
        let anonymous = app.graphql(None, "query Me { me { id } }", json!({})).await;
        assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));
        app.graphql(Some(&token), &format!("{{ me {}{} }}", "{ id ".repeat(30), "}".repeat(30)), json!({})).await;
        app.graphql(Some(&token), "{ __typename }", json!({})).await.data();
        post_raw(&app, "{", &[]).await;
        let batch: Vec<Value> = (0..60).map(|_| json!({"query": "{ __typename }"})).collect();
        app.post_graphql_with(Value::Array(batch), &[]).await;

        let after = scrape(&app).await;
        let delta = |key: &str| after.get(key) - before.get(key);
        assert_eq!(delta("iofold_graphql_requests_total{operation=Me}"), 4.0);
        assert_eq!(delta("iofold_graphql_errors_total{operation=Me,code=UNAUTHENTICATED}"), 1.0);
        assert_eq!(delta("iofold_graphql_errors_total{operation=(invalid),code=QUERY_TOO_COMPLEX}"), 1.0);
        assert_eq!(delta("iofold_graphql_requests_total{operation=(anonymous)}"), 1.0);
        assert_eq!(delta("iofold_graphql_errors_total{operation=(none),code=BAD_REQUEST}"), 1.0);
        assert_eq!(delta("iofold_graphql_errors_total{operation=(none),code=BATCH_TOO_LARGE}"), 1.0);
        assert_eq!(delta("iofold_graphql_request_duration_seconds_count{operation=Me}"), 4.0);
        assert!(delta("iofold_http_requests_total{route=/graphql,status=200}") >= 6.0);
        assert_eq!(delta("iofold_http_requests_total{route=/graphql,status=401}"), 0.0);
        assert_eq!(delta("iofold_http_requests_total{route=/graphql,status=400}"), 2.0);
        assert_eq!(delta("iofold_http_requests_total{route=/metrics,status=200}"), 1.0);
        assert!(delta("iofold_db_statements_total") >= 3.0, "statements: {}", delta("iofold_db_statements_total"));
        assert!(after.get("iofold_http_request_duration_seconds_count{route=/graphql}") >= 8.0);
        assert!(after.get("iofold_db_pool_connections") >= 1.0);
    }
}

/// Log lines written by the global subscriber this module installs (JSON, one a line).
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(tracing_subscriber::EnvFilter::new("iofold_graph=info"))
            .with_writer(move || LogWriter(sink.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        logs
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The captured log lines that mention `needle`.
fn log_lines_with(needle: &str) -> Vec<Value> {
    let logs = captured_logs();
    let logs = logs.lock().unwrap();
    String::from_utf8_lossy(&logs)
        .lines()
        .filter(|line| line.contains(needle))
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

both_backends! {
    async fn each_request_logs_its_id_operation_and_slow_statements_without_values(backend: Backend) {
        captured_logs();
        let app = app_with(backend, |config| config.slow_statement = Duration::ZERO).await;
        let secret_id = "workspace_00000000-0000-7000-8000-00005ec7e7ab";
        let request_id = format!("slow-{}", uuid::Uuid::new_v4().simple());
        let before = app.state.db.stats.slow_statements();
        let response = app
            .post_graphql_with(
                json!({"query": "query Lookup($id: ID!) { workspace(id: $id) { id } }", "variables": {"id": secret_id}}),
                &[("x-iofold-admin-secret", ADMIN_SECRET), ("x-request-id", request_id.as_str())],
            )
            .await;
        assert_eq!(response.data()["workspace"], Value::Null);
        assert!(app.state.db.stats.slow_statements() > before, "every statement is slow at a 0 ms threshold");

        let lines = log_lines_with(&request_id);
        let slow: Vec<&Value> = lines.iter().filter(|l| l["fields"]["message"] == "slow statement").collect();
        assert!(!slow.is_empty(), "a slow-statement line with the request id: {lines:#?}");
        for line in &slow {
            let statement = line["fields"]["statement"].as_str().unwrap();
            assert!(statement.contains("SELECT") && statement.contains("workspaces"), "{statement}");
            assert!(line["fields"]["duration_ms"].is_number());
            assert_eq!(line["fields"]["rows"], 0, "the row count (no such workspace): {line}");
            assert_eq!(line["span"]["id"], request_id.as_str());
        }
        let all = lines.iter().map(Value::to_string).collect::<String>();
        assert!(!all.contains("5ec7e7ab"), "no bind value in the log: {all}");
        let request_line = lines.iter().find(|l| l["fields"]["message"] == "request").expect("the request's line");
        assert_eq!(request_line["fields"]["operation"], "Lookup");
        assert_eq!(request_line["fields"]["status"], 200);
        assert!(request_line["fields"]["duration_ms"].as_f64().is_some());
        assert_eq!(request_line["span"]["route"], "/graphql");

        // An internal error's detail is logged with the request id.
        let down_url = match backend {
            Backend::Sqlite => "/nonexistent-dir/iofold/down.db".to_owned(),
            Backend::Postgres => "postgres://postgres@127.0.0.1:1/none".to_owned(),
        };
        let config = test_config(&down_url);
        let down = Db::connect(&config.database_url, &iofold_graph::db::PoolOptions { max_size: 1 }).unwrap();
        let down_app = TestApp { state: AppState::new(down, config), ..app };
        let failing_id = format!("fail-{}", uuid::Uuid::new_v4().simple());
        down_app
            .post_graphql_with(json!({"query": "{ workspaces { totalCount } }"}), &[("x-iofold-admin-secret", ADMIN_SECRET), ("x-request-id", failing_id.as_str())])
            .await;
        let lines = log_lines_with(&failing_id);
        assert!(
            lines.iter().any(|l| l["level"] == "ERROR" && l["fields"]["message"] == "internal error" && l["fields"]["error"].as_str().is_some_and(|e| !e.is_empty())),
            "{lines:#?}"
        );
    }
}

#[test]
fn statement_shapes_carry_no_values() {
    assert_eq!(
        statement_shape(
            "SELECT \"t\".\"a\" FROM t WHERE a = 'x''y' AND b = 42 AND c = $1 LIMIT 21 -- binds: [\"secret\", 7]"
        ),
        "SELECT \"t\".\"a\" FROM t WHERE a = ? AND b = ? AND c = $1 LIMIT ?"
    );
    assert_eq!(statement_shape("SELECT  *\n  FROM t_9 WHERE x1 = ?  -- binds: []"), "SELECT * FROM t_9 WHERE x1 = ?");
    assert_eq!(statement_shape("SELECT 'unterminated"), "SELECT ?");
    assert!(statement_shape(&"SELECT a, ".repeat(1000)).chars().count() <= 2_001);
}

both_backends! {
    async fn limits_are_configurable(backend: Backend) {
        let app = app_with(backend, |config| {
            config.limits.max_depth = 3;
            config.limits.max_complexity = 30;
            config.limits.max_aliases = 1;
            config.limits.max_batch = 2;
            config.limits.max_body_bytes = 2048;
        })
        .await;
        let admin = [("x-iofold-admin-secret", ADMIN_SECRET)];
        let query = |q: &str| json!({"query": q});
        let ok = app.post_graphql_with(query("{ workspaces(first: 5) { nodes { id } } }"), &admin).await;
        ok.data();
        let deep = app.post_graphql_with(query("{ workspaces(first: 1) { nodes { user { id } } } }"), &admin).await;
        assert_eq!(deep.error_code(), Some("QUERY_TOO_COMPLEX"), "{}", deep.body);
        assert!(deep.body["errors"][0]["message"].as_str().unwrap().contains("4 levels"));
        // The default page size (20) weighs a list: 1 + 20 × (1 + 1) = 41 > 30.
        let complex = app.post_graphql_with(query("{ workspaces { nodes { id } } }"), &admin).await;
        assert_eq!(complex.error_code(), Some("QUERY_TOO_COMPLEX"), "{}", complex.body);
        let variable = app
            .post_graphql_with(json!({"query": "query($n: Int) { workspaces(first: $n) { nodes { id } } }", "variables": {"n": 14}}), &admin)
            .await;
        variable.data();
        let variable = app
            .post_graphql_with(json!({"query": "query($n: Int = 15) { workspaces(first: $n) { nodes { id } } }"}), &admin)
            .await;
        assert_eq!(variable.error_code(), Some("QUERY_TOO_COMPLEX"), "{}", variable.body);
        let aliases = app.post_graphql_with(query("{ a: __typename b: __typename }"), &admin).await;
        assert_eq!(aliases.error_code(), Some("QUERY_TOO_COMPLEX"), "{}", aliases.body);
        app.post_graphql_with(query("{ a: __typename }"), &admin).await.data();
        let batch = app.post_graphql_with(json!([query("{ __typename }"), query("{ __typename }"), query("{ __typename }")]), &admin).await;
        assert_eq!(batch.error_code(), Some("BATCH_TOO_LARGE"));
        let body = app.post_graphql_with(json!({"query": format!("{{ __typename }} # {}", "x".repeat(3000))}), &admin).await;
        assert_eq!(body.status, 413);

        // Introspection, GraphiQL and metrics off.
        let closed = app_with(backend, |config| {
            config.limits.introspection = false;
            config.limits.graphiql = false;
            config.metrics = false;
        })
        .await;
        let response = closed.post_graphql_with(query("{ __schema { queryType { name } } }"), &admin).await;
        assert_eq!(response.error_code(), Some("GRAPHQL_VALIDATION_FAILED"), "{}", response.body);
        let response = closed.post_graphql_with(query("{ __type(name: \"Query\") { name } }"), &admin).await;
        assert_eq!(response.error_code(), Some("GRAPHQL_VALIDATION_FAILED"), "{}", response.body);
        assert_eq!(closed.post_graphql_with(query("{ __typename }"), &admin).await.data()["__typename"], "Query");
        let page = closed.get("/graphql", &[("accept", "text/html")]).await;
        assert_eq!(page.status, 400);
        assert!(!page.body.to_string().contains("graphiql"));
        assert_eq!(closed.get("/metrics", &[]).await.status, 404);
        let open = app.post_graphql_with(query("{ __schema { queryType { name } } }"), &admin).await;
        assert_eq!(open.data()["__schema"]["queryType"]["name"], "Query");
    }
}

/// Takes every connection of the pool, so requests that need one wait.
async fn hold_every_connection(db: &Db, n: usize) -> Vec<Box<dyn std::any::Any + Send>> {
    let mut held: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
    for _ in 0..n {
        match &db.pool {
            Pool::Sqlite(pool) => held.push(Box::new(pool.get().await.unwrap())),
            Pool::Postgres(pool) => held.push(Box::new(pool.get().await.unwrap())),
        }
    }
    held
}

both_backends! {
    async fn the_request_deadline_answers_timeout(backend: Backend) {
        let app = app_with(backend, |config| config.limits.request_timeout = Duration::from_millis(300)).await;
        let admin = [("x-iofold-admin-secret", ADMIN_SECRET)];
        let query = json!({"query": "query Busy { workspaces { totalCount } }"});
        app.post_graphql_with(query.clone(), &admin).await.data();

        let held = hold_every_connection(&app.state.db, 8).await;
        let started = Instant::now();
        let response = app.post_graphql_with(query.clone(), &admin).await;
        let waited = started.elapsed();
        assert_eq!(response.status, 504, "{}", response.body);
        assert_eq!(response.error_code(), Some("TIMEOUT"));
        assert!(waited >= Duration::from_millis(290) && waited < Duration::from_secs(3), "{waited:?}");
        // In a batch, each operation the deadline stops answers TIMEOUT.
        let batch = app.post_graphql_with(json!([{"query": "{ __typename }"}, query.clone()]), &admin).await;
        assert_eq!(batch.status, 200);
        assert_eq!(batch.body[0]["data"]["__typename"], "Query");
        assert_eq!(batch.body[1]["errors"][0]["extensions"]["code"], "TIMEOUT");
        // Authentication by token waits for the database too: the whole request has the deadline.
        let response = app.graphql(Some("no-such-token"), "{ me { id } }", json!({})).await;
        assert_eq!(response.status, 504);
        assert_eq!(response.error_code(), Some("TIMEOUT"));
        let metrics = scrape(&app).await;
        assert_eq!(metrics.get("iofold_graphql_errors_total{operation=Busy,code=TIMEOUT}"), 2.0);
        assert_eq!(metrics.get("iofold_db_pool_waiters"), 0.0);
        drop(held);
        app.post_graphql_with(query, &admin).await.data();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statement_timeout_is_timeout() {
    if !require_postgres("hardening::postgres_statement_timeout_is_timeout").await {
        return;
    }
    let test_db = TestDb::migrated(Backend::Postgres).await;
    let db = &test_db.db;
    db.configure(Duration::from_millis(100), Some(Duration::from_millis(200)));
    let started = Instant::now();
    let result: Result<(), DbError> = async {
        iofold_graph::with_conn!(db, |conn| conn.batch_execute("SELECT pg_sleep(3)").await?);
        Ok(())
    }
    .await;
    let error = AppError::from(result.expect_err("the statement is cancelled"));
    assert_eq!(error.code(), "TIMEOUT");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // Without a timeout the same connection setup runs long statements.
    db.configure(Duration::from_millis(100), None);
    let result: Result<(), DbError> = async {
        iofold_graph::with_conn!(db, |conn| conn.batch_execute("SELECT pg_sleep(0.3)").await?);
        Ok(())
    }
    .await;
    result.expect("no statement timeout");
    assert!(db.stats.slow_statements() >= 1, "the 300 ms statement is slow at 100 ms");
}

both_backends! {
    async fn the_rate_limit_is_per_token_and_off_by_default(backend: Backend) {
        let (app, token) = TestApp::seeded(backend).await;
        for _ in 0..5 {
            app.graphql(Some(&token), "{ me { id } }", json!({})).await.data();
        }
        let limited = app_with(backend, |config| config.limits.rate_limit_per_minute = Some(3)).await;
        let (_, first) = limited.user_with_token("first@example.com", None, false).await;
        let (_, second) = limited.user_with_token("second@example.com", None, false).await;
        for _ in 0..3 {
            limited.graphql(Some(&first), "{ me { id } }", json!({})).await.data();
        }
        let refused = limited.graphql(Some(&first), "{ me { id } }", json!({})).await;
        assert_eq!(refused.status, 429);
        assert_eq!(refused.error_code(), Some("RATE_LIMITED"));
        let retry: u64 = refused.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=20).contains(&retry), "{retry}");
        // Another token has its own budget; a batch counts each operation.
        let batch = json!([{"query": "{ me { id } }"}, {"query": "{ me { id } }"}]);
        let auth = format!("Bearer {second}");
        let response = limited.post_graphql_with(batch.clone(), &[("authorization", auth.as_str())]).await;
        assert_eq!(response.status, 200);
        let response = limited.post_graphql_with(batch, &[("authorization", auth.as_str())]).await;
        assert_eq!(response.error_code(), Some("RATE_LIMITED"));
        // Anonymous callers are not limited by token.
        for _ in 0..5 {
            limited.graphql(None, "{ __typename }", json!({})).await.data();
        }
    }
}

/// The real server as a child process of the test, on an ephemeral port.
struct Server {
    child: Child,
    address: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(url: &str, env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_iofold-graph"));
        command
            .arg("serve")
            .env("DATABASE_URL", url)
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("IOFOLD_ADMIN_SECRET", ADMIN_SECRET)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env_remove("APP_ENV")
            .env_remove("NODE_ENV")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("the server starts");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (found, address) = std::sync::mpsc::channel();
        let lines = BufReader::new(child.stderr.take().unwrap());
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                if let Ok(entry) = serde_json::from_str::<Value>(&line) {
                    if entry["fields"]["message"] == "listening" {
                        let _ = found.send(entry["fields"]["address"].as_str().unwrap_or_default().to_owned());
                    }
                }
                log.lock().unwrap().push(line);
            }
        });
        let address = address.recv_timeout(Duration::from_secs(60)).expect("the server says where it listens");
        Server { child, address: address.parse().unwrap(), stderr }
    }

    fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to end, at most `limit`.
    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < limit, "the server did not stop within {limit:?}: {:#?}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 request; the status and the body, or `None` if the connection ended
/// without a response.
async fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<Option<(u16, String)>> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return Ok(None) };
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            out.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
        out
    } else {
        body.to_owned()
    };
    Ok(Some((status, body)))
}

/// Something that makes the server's database work wait: SQLite, an exclusive lock on the
/// file (a new connection's pragmas wait for it); PostgreSQL, an exclusive lock on
/// `workspaces`.
enum Blocker {
    Sqlite(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>),
    Postgres(Box<diesel_async::AsyncPgConnection>),
}

impl Blocker {
    async fn hold(test_db: &TestDb) -> Blocker {
        match test_db.backend() {
            Backend::Sqlite => {
                let path = test_db.url.as_str().to_owned();
                let (release, released) = std::sync::mpsc::channel::<()>();
                let (locked, is_locked) = std::sync::mpsc::channel::<()>();
                let thread = std::thread::spawn(move || {
                    use diesel::connection::SimpleConnection;
                    use diesel::Connection;
                    let mut conn = diesel::SqliteConnection::establish(&path).unwrap();
                    conn.batch_execute(
                        "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; DELETE FROM workspaces WHERE id = 'none';",
                    )
                    .unwrap();
                    locked.send(()).unwrap();
                    let _ = released.recv();
                    conn.batch_execute("COMMIT").unwrap();
                    drop(conn);
                });
                is_locked.recv_timeout(Duration::from_secs(10)).unwrap();
                Blocker::Sqlite(release, thread)
            }
            Backend::Postgres => {
                use diesel_async::AsyncConnection;
                let mut conn = diesel_async::AsyncPgConnection::establish(test_db.url.as_str()).await.unwrap();
                conn.batch_execute("BEGIN; LOCK TABLE workspaces IN ACCESS EXCLUSIVE MODE;").await.unwrap();
                Blocker::Postgres(Box::new(conn))
            }
        }
    }

    async fn release(self) {
        match self {
            Blocker::Sqlite(release, thread) => {
                release.send(()).unwrap();
                tokio::task::spawn_blocking(move || thread.join().unwrap()).await.unwrap();
            }
            Blocker::Postgres(mut conn) => conn.batch_execute("COMMIT").await.unwrap(),
        }
    }
}

/// Waits until the server has `n` requests in flight besides the one asking.
async fn wait_in_flight(address: SocketAddr, n: usize) {
    let started = Instant::now();
    loop {
        let (_, body) = http(address, "GET", "/metrics", &[], "").await.unwrap().unwrap();
        let metrics = Exposition::parse(&body);
        if metrics.get("iofold_http_requests_in_flight") >= (n + 1) as f64 {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no request in flight");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const SLOW_QUERY: &str = r#"{"query": "query Slow { workspaces { nodes { id } } }"}"#;

both_backends! {
    async fn sigterm_lets_in_flight_requests_finish(backend: Backend) {
        let test_db = TestDb::migrated(backend).await;
        let mut server = Server::start(test_db.url.as_str(), &[("SHUTDOWN_GRACE_MS", "20000")]);
        let address = server.address;
        // (No request before the lock: on SQLite an open connection would keep the test
        // from locking the file.)
        let blocker = Blocker::hold(&test_db).await;
        let slow = tokio::spawn(async move {
            http(address, "POST", "/graphql", &[("content-type", "application/json"), ("x-iofold-admin-secret", ADMIN_SECRET)], SLOW_QUERY).await
        });
        wait_in_flight(address, 1).await;
        let signalled = Instant::now();
        server.terminate();
        // New connections are refused while the slow request finishes.
        let mut refused = false;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(40)).await;
            if tokio::net::TcpStream::connect(address).await.is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused, "the listener closes on SIGTERM");
        assert!(server.child.try_wait().unwrap().is_none(), "the server waits for the request in flight");
        tokio::time::sleep(Duration::from_millis(300)).await;
        blocker.release().await;

        let (status, body) = slow.await.unwrap().unwrap().expect("the in-flight request gets its response");
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["data"]["workspaces"]["nodes"], json!([]), "{body}");
        let exit = tokio::task::spawn_blocking(move || {
            let status = server.wait(Duration::from_secs(15));
            (status, server)
        })
        .await
        .unwrap();
        let (status, server) = exit;
        assert!(status.success(), "{status:?}: {:#?}", server.log());
        let log = server.log().join("\n");
        assert!(log.contains("shutting down") && log.contains("\"stopped\""), "{log}");
        assert!(!log.contains("grace period over"), "{log}");
        eprintln!("shutdown on {} took {:?} after SIGTERM", backend.name(), signalled.elapsed());
    }
}

both_backends! {
    async fn the_shutdown_grace_period_bounds_the_wait(backend: Backend) {
        let test_db = TestDb::migrated(backend).await;
        let mut server = Server::start(test_db.url.as_str(), &[("SHUTDOWN_GRACE_MS", "300")]);
        let address = server.address;
        let blocker = Blocker::hold(&test_db).await;
        let slow = tokio::spawn(async move {
            http(address, "POST", "/graphql", &[("content-type", "application/json"), ("x-iofold-admin-secret", ADMIN_SECRET)], SLOW_QUERY).await
        });
        wait_in_flight(address, 1).await;
        let signalled = Instant::now();
        server.terminate();
        let (status, server) = tokio::task::spawn_blocking(move || {
            let status = server.wait(Duration::from_secs(10));
            (status, server)
        })
        .await
        .unwrap();
        let stopped_after = signalled.elapsed();
        assert!(status.success(), "{status:?}: {:#?}", server.log());
        assert!(stopped_after < Duration::from_secs(3), "stopped {stopped_after:?} after SIGTERM");
        let log = server.log().join("\n");
        assert!(log.contains("grace period over"), "{log}");
        // The cut-off request ends without a response.
        let outcome = slow.await.unwrap();
        assert!(!matches!(outcome, Ok(Some((200, _)))), "{outcome:?}");
        blocker.release().await;
    }
}

#[test]
fn flags_and_environment_set_the_limits() {
    use clap::Parser;
    let cli = iofold_graph::cli::Cli::try_parse_from([
        "iofold-graph",
        "serve",
        "--max-query-depth",
        "5",
        "--max-batch-size",
        "7",
        "--request-timeout-ms",
        "1234",
        "--graphiql",
        "false",
    ])
    .unwrap();
    let config = Config::from_all(&cli.config, &cli.server).unwrap();
    assert_eq!((config.limits.max_depth, config.limits.max_batch), (5, 7));
    assert_eq!(config.limits.request_timeout, Duration::from_millis(1234));
    assert!(!config.limits.graphiql && config.limits.introspection);
    let _ = std::io::stderr().flush();
}
