//! The security review's findings on connections and input (issue 10, items 3–7): header,
//! silent and idle connections closed on a real socket; caps on connections and on
//! unauthenticated WebSockets; bounded input answered `BAD_USER_INPUT` naming the field;
//! identical answers for another tenant's row and a missing one on every mutation taking an
//! id; 32-bit `Int`s and the `BigInt` scalar; emails only the server admin changes.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use iofold_graph::config::ConnectionLimits;
use iofold_graph::db::Backend;
use iofold_graph::server::{serve_on, AppState};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::both_backends;
use crate::support::app::{test_config, TestApp, TestResponse};
use crate::support::db::TestDb;
use crate::support::fixtures::{self, Fixtures};

// ---------------------------------------------------------------------------------------
// A server on a real socket.

/// How long a test waits for something that must happen (far above the timeouts it sets).
const WAIT: Duration = Duration::from_secs(8);

/// The router served on 127.0.0.1 (an ephemeral port) with these connection limits.
struct Live {
    address: SocketAddr,
    state: AppState,
    _db: TestDb,
    task: tokio::task::JoinHandle<()>,
}

impl Live {
    async fn start(backend: Backend, limits: ConnectionLimits) -> Live {
        let test_db = TestDb::migrated(backend).await;
        let mut config = test_config(test_db.url.as_str());
        config.connections = limits;
        let state = AppState::new(test_db.db.clone(), config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let serving = state.clone();
        let task = tokio::spawn(async move {
            let _ = serve_on(listener, serving, std::future::pending()).await;
        });
        Live { address, state, _db: test_db, task }
    }

    /// A TCP connection from the local address `from` (any 127.0.0.0/8 address).
    async fn connect_from(&self, from: &str) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0)).unwrap();
        socket.connect(self.address).await.unwrap()
    }

    /// A token of a new user.
    async fn token(&self) -> String {
        let (_, user) = crate::support::fixtures::Fixtures::new(&self.state.db).workspace_with_owner().await;
        crate::support::fixtures::Fixtures::new(&self.state.db).token_for(&user).await
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn limits() -> ConnectionLimits {
    ConnectionLimits::default()
}

/// Reads until the server closes the connection (EOF or reset); what was read. Panics when
/// it stays open for `WAIT`.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&seen).into_owned(),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the connection stayed open; read so far: {}", String::from_utf8_lossy(&seen)),
        }
    }
}

/// One complete `GET /health` on a kept-alive connection: the response head and body.
async fn health(stream: &mut TcpStream) -> String {
    stream.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf)).await.expect("an answer").unwrap();
        assert!(n > 0, "closed before the response: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
}

/// Waits until the server counts `n` open connections.
async fn open_connections(state: &AppState, n: usize) {
    let started = Instant::now();
    while state.connections.open.held() != n {
        assert!(started.elapsed() < WAIT, "{} open connections, not {n}", state.connections.open.held());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

both_backends! {
    async fn slow_and_silent_headers_are_cut_off(backend: Backend) {
        let live = Live::start(backend, ConnectionLimits { header_timeout: Duration::from_secs(1), ..limits() }).await;

        // A connection that never sends a byte.
        let mut silent = live.connect_from("127.0.0.1").await;
        let started = Instant::now();
        let answer = read_until_closed(&mut silent).await;
        assert!(started.elapsed() >= Duration::from_millis(900), "closed before the timeout: {:?}", started.elapsed());
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");

        // A request whose headers come one byte at a time, forever.
        let mut slow = live.connect_from("127.0.0.1").await;
        slow.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: ").await.unwrap();
        let started = Instant::now();
        let mut closed = false;
        while started.elapsed() < WAIT {
            if slow.write_all(b"a").await.is_err() {
                closed = true;
                break;
            }
            let mut buf = [0u8; 1024];
            match tokio::time::timeout(Duration::from_millis(200), slow.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                Ok(Ok(n)) => assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"), "an answer to a request never finished"),
                Err(_) => {}
            }
        }
        assert!(closed, "a trickling client kept its connection for {WAIT:?}");
        open_connections(&live.state, 0).await;

        // A client that finishes its headers in time is served.
        let mut prompt = live.connect_from("127.0.0.1").await;
        assert!(health(&mut prompt).await.starts_with("HTTP/1.1 200"));
    }
}

both_backends! {
    async fn idle_connections_are_closed(backend: Backend) {
        let live = Live::start(
            backend,
            ConnectionLimits { header_timeout: Duration::from_secs(60), idle_timeout: Duration::from_secs(1), ..limits() },
        )
        .await;
        // Silent from the start.
        let mut silent = live.connect_from("127.0.0.1").await;
        read_until_closed(&mut silent).await;
        // Kept alive after a request, then silent.
        let mut kept = live.connect_from("127.0.0.1").await;
        assert!(health(&mut kept).await.starts_with("HTTP/1.1 200"));
        let started = Instant::now();
        assert_eq!(read_until_closed(&mut kept).await, "");
        assert!(started.elapsed() >= Duration::from_millis(900));
        open_connections(&live.state, 0).await;
    }
}

both_backends! {
    async fn connections_are_capped_per_client_and_in_all(backend: Backend) {
        let live = Live::start(
            backend,
            ConnectionLimits { max_connections: 4, max_connections_per_client: 3, ..limits() },
        )
        .await;
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut stream = live.connect_from("127.0.0.1").await;
            assert!(health(&mut stream).await.starts_with("HTTP/1.1 200"));
            held.push(stream);
        }
        // A fourth from the same address.
        let mut refused = live.connect_from("127.0.0.1").await;
        let answer = read_until_closed(&mut refused).await;
        assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
        assert!(answer.contains("\"TOO_MANY_CONNECTIONS\""), "{answer}");
        // Another address still gets in, up to the cap in all.
        let mut other = live.connect_from("127.0.0.2").await;
        assert!(health(&mut other).await.starts_with("HTTP/1.1 200"));
        let mut third = live.connect_from("127.0.0.3").await;
        let answer = read_until_closed(&mut third).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("\"TOO_MANY_CONNECTIONS\""), "{answer}");
        open_connections(&live.state, 4).await;
        // A closed connection frees its place.
        drop(held.pop());
        open_connections(&live.state, 3).await;
        let mut again = live.connect_from("127.0.0.1").await;
        assert!(health(&mut again).await.starts_with("HTTP/1.1 200"));
    }
}

type Socket = tokio_tungstenite::WebSocketStream<TcpStream>;

/// A WebSocket (graphql-transport-ws) from the local address `from`, or the HTTP status
/// and body of the refused upgrade.
async fn websocket_from(live: &Live, from: &str) -> Result<Socket, (u16, String)> {
    let stream = live.connect_from(from).await;
    let mut request = format!("ws://{}/graphql", live.address).into_client_request().unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    match tokio_tungstenite::client_async(request, stream).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            Err((response.status().as_u16(), body))
        }
        Err(other) => panic!("the upgrade failed: {other}"),
    }
}

/// Sends `connection_init` with the token and waits for the acknowledgement.
async fn init(socket: &mut Socket, token: &str) {
    let init = json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}});
    socket.send(Message::Text(init.to_string().into())).await.unwrap();
    let ack = tokio::time::timeout(WAIT, socket.next()).await.expect("an answer").unwrap().unwrap();
    assert!(ack.to_text().unwrap().contains("connection_ack"), "{ack:?}");
}

both_backends! {
    async fn unauthenticated_websockets_are_capped(backend: Backend) {
        let live = Live::start(
            backend,
            ConnectionLimits { max_unauthenticated_websockets: 3, max_unauthenticated_websockets_per_client: 2, ..limits() },
        )
        .await;
        let token = live.token().await;
        let mut first = websocket_from(&live, "127.0.0.1").await.expect("the first opens");
        let _second = websocket_from(&live, "127.0.0.1").await.expect("the second opens");
        let (status, body) = websocket_from(&live, "127.0.0.1").await.expect_err("a third is refused");
        assert_eq!(status, 429, "{body}");
        assert!(body.contains("TOO_MANY_CONNECTIONS"), "{body}");
        let _other = websocket_from(&live, "127.0.0.2").await.expect("another address opens");
        let (status, body) = websocket_from(&live, "127.0.0.3").await.expect_err("over the cap in all");
        assert_eq!(status, 503, "{body}");

        // Authenticated WebSockets do not count: after its acknowledgement the first one's
        // place is free, and it keeps working.
        init(&mut first, &token).await;
        let mut third = websocket_from(&live, "127.0.0.1").await.expect("a place was freed");
        init(&mut third, &token).await;
        let _fourth = websocket_from(&live, "127.0.0.3").await.expect("a place in all was freed");
        assert_eq!(live.state.connections.unauthenticated_websockets.held(), 3);
        first.send(Message::Text(json!({"type": "ping"}).to_string().into())).await.unwrap();
        let pong = tokio::time::timeout(WAIT, first.next()).await.expect("an answer").unwrap().unwrap();
        assert!(pong.to_text().unwrap().contains("pong"), "{pong:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Input: bounded, checked, never an internal error.

/// Two tenants: `a` (the caller, owner of `workspace_a`) and the rows of another workspace,
/// one in every table (`theirs`).
struct Tenants {
    app: TestApp,
    token_a: String,
    user_a: String,
    workspace_a: String,
    theirs: std::collections::HashMap<&'static str, String>,
}

impl Tenants {
    async fn new(backend: Backend) -> Tenants {
        let app = TestApp::new(backend).await;
        let fx = Fixtures::new(&app.state.db);
        let (workspace_a, user_a) = fx.workspace_with_owner().await;
        let token_a = fx.token_for(&user_a).await;
        let workspace_b = fx.workspace().await;
        let theirs = fx.one_of_each(&workspace_b).await;
        Tenants { app, token_a, user_a, workspace_a, theirs }
    }

    async fn run(&self, query: &str, variables: Value) -> TestResponse {
        self.app.graphql(Some(&self.token_a), query, variables).await
    }
}

/// Asserts `BAD_USER_INPUT` naming `field`.
fn assert_bad_input(response: &TestResponse, field: &str) {
    let error = &response.body["errors"][0];
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{}", response.body);
    assert_eq!(error["extensions"]["field"], field, "{}", response.body);
}

const TRACES: &str =
    "query($ws: ID!, $f: TraceFilter) { traces(workspaceId: $ws, filter: $f, first: 100) { nodes { id } totalCount } }";
const AGENTS: &str =
    "query($ws: ID!, $f: AgentFilter) { agents(workspaceId: $ws, filter: $f, first: 100) { nodes { id name } } }";

both_backends! {
    async fn large_filters_are_bounded_not_internal_errors(backend: Backend) {
        let t = Tenants::new(backend).await;
        let ws = &t.workspace_a;
        let run = |filter: Value| t.run(TRACES, json!({"ws": ws, "f": filter}));

        // An `or` of 998 conditions (SQLite's expression depth) and its empty cousins.
        let many: Vec<Value> = (0..998).map(|i| json!({"id": {"eq": format!("t{i}")}})).collect();
        assert_bad_input(&run(json!({"or": many})).await, "filter.or");
        let nots: Vec<Value> = (0..998).map(|_| json!({"not": {}})).collect();
        assert_bad_input(&run(json!({"or": nots})).await, "filter.or");
        // At the bound it runs.
        let some: Vec<Value> = (0..99).map(|i| json!({"id": {"eq": format!("t{i}")}})).collect();
        assert_eq!(run(json!({"or": some})).await.data()["traces"]["totalCount"], 0);
        // Deep nesting.
        let mut deep = json!({"id": {"eq": "x"}});
        for _ in 0..12 {
            deep = json!({"not": deep});
        }
        let response = run(deep).await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{}", response.body);
        assert!(response.body["errors"][0]["extensions"]["field"].as_str().unwrap().starts_with("filter.not"));

        // `in` lists: SQLite's 32,766 and PostgreSQL's 65,535 bound parameters.
        for n in [32_766usize, 65_535] {
            let ids: Vec<String> = (0..n).map(|i| format!("trace_{i}")).collect();
            assert_bad_input(&run(json!({"id": {"in": ids}})).await, "filter.id.in");
        }
        let ids: Vec<String> = (0..1000).map(|i| format!("trace_{i}")).collect();
        assert_eq!(run(json!({"id": {"notIn": ids.clone()}})).await.data()["traces"]["totalCount"], 0);
        // Many lists at the per-list bound: the filter's bound.
        let lists: Vec<Value> = (0..6).map(|_| json!({"id": {"in": ids.clone()}})).collect();
        let response = run(json!({"or": lists})).await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{}", response.body);
        assert!(response.body["errors"][0]["extensions"]["field"].as_str().unwrap().ends_with(".id.in"));

        // JSON `contains` of 3,000 keys; 150 keys work.
        let object = |n: usize| Value::Object((0..n).map(|i| (format!("k{i}"), json!(i))).collect());
        assert_bad_input(&run(json!({"metadata": {"contains": object(3000)}})).await, "filter.metadata.contains");
        assert_eq!(run(json!({"metadata": {"contains": object(150)}})).await.data()["traces"]["totalCount"], 0);
    }
}

both_backends! {
    async fn like_patterns_ending_in_a_backslash_match_a_backslash(backend: Backend) {
        let t = Tenants::new(backend).await;
        let fx = Fixtures::new(&t.app.state.db);
        fx.insert("agents", &t.workspace_a, &[("name", "back\\".into())]).await;
        fx.insert("agents", &t.workspace_a, &[("name", "Back\\slash".into())]).await;
        fx.insert("agents", &t.workspace_a, &[("name", "back".into())]).await;
        let names = |response: TestResponse| {
            let mut names: Vec<String> = response.data()["agents"]["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["name"].as_str().unwrap().to_owned())
                .collect();
            names.sort();
            names
        };
        let like = |op: &str, pattern: &str| {
            t.run(AGENTS, json!({"ws": t.workspace_a, "f": {"name": {op: pattern}}}))
        };
        assert_eq!(names(like("like", "back\\").await), vec!["back\\"]);
        assert_eq!(names(like("like", "%\\").await), vec!["back\\"]);
        assert_eq!(names(like("ilike", "back\\").await), vec!["back\\"]);
        assert_eq!(names(like("ilike", "BACK\\\\%").await), vec!["Back\\slash", "back\\"]);
        // An escaped backslash is still one backslash; an escaped `%` is literal.
        assert_eq!(names(like("like", "back\\\\").await), vec!["back\\"]);
        assert!(names(like("like", "back\\%").await).is_empty());
    }
}

both_backends! {
    async fn timestamps_outside_years_0000_to_9999_are_refused(backend: Backend) {
        let t = Tenants::new(backend).await;
        for at in ["9999-12-31T23:59:59-01:00", "0000-01-01T00:00:00+00:30"] {
            let response = t.run(TRACES, json!({"ws": t.workspace_a, "f": {"timestamp": {"gt": at}}})).await;
            assert_bad_input(&response, "filter.timestamp.gt");
            let response = t
                .run(
                    "mutation($at: DateTime) { createApiToken(name: \"t\", expiresAt: $at) { apiToken { id } } }",
                    json!({"at": at}),
                )
                .await;
            assert_bad_input(&response, "expiresAt");
        }
        // The edges of the range are fine.
        let response = t.run(TRACES, json!({"ws": t.workspace_a, "f": {"timestamp": {"lt": "9999-12-31T23:59:59.999999Z", "gte": "0000-01-01T00:00:00Z"}}})).await;
        assert_eq!(response.data()["traces"]["totalCount"], 0);
    }
}

both_backends! {
    async fn ints_are_32_bit_and_big_ints_64(backend: Backend) {
        let t = Tenants::new(backend).await;
        let fx = Fixtures::new(&t.app.state.db);
        let job = fx.insert("jobs", &t.workspace_a, &[]).await;
        let update = "mutation($id: ID!, $patch: JobPatch!) { updateJob(id: $id, patch: $patch) { job { priority } } }";
        for priority in [json!(2_147_483_648i64), json!(-2_147_483_649i64), json!(9_223_372_036_854_775_807i64), json!(18_446_744_073_709_551_615u64)] {
            let response = t.run(update, json!({"id": job, "patch": {"priority": priority}})).await;
            assert_bad_input(&response, "patch.priority");
        }
        // As a literal too.
        let literal = format!("mutation {{ updateJob(id: \"{job}\", patch: {{priority: 2147483648}}) {{ job {{ priority }} }} }}");
        assert_bad_input(&t.run(&literal, json!({})).await, "patch.priority");
        let response = t.run("query($ws: ID!) { jobs(workspaceId: $ws, first: 4294967296) { totalCount } }", json!({"ws": t.workspace_a})).await;
        assert_bad_input(&response, "first");
        let response = t.run("query($ws: ID!, $n: Int = 4294967296) { jobs(workspaceId: $ws, first: $n) { totalCount } }", json!({"ws": t.workspace_a})).await;
        assert_bad_input(&response, "first");
        let response = t.run("query($ws: ID!, $f: JobFilter) { jobs(workspaceId: $ws, filter: $f) { totalCount } }",
            json!({"ws": t.workspace_a, "f": {"priority": {"in": [1, 3_000_000_000i64]}}})).await;
        assert_bad_input(&response, "filter.priority.in[1]");
        // Nothing was stored; the bounds themselves are fine.
        for priority in [2_147_483_647i64, -2_147_483_648] {
            let response = t.run(update, json!({"id": job, "patch": {"priority": priority}})).await;
            assert_eq!(response.data()["updateJob"]["job"]["priority"], priority);
        }
        // A value of the wrong type is still a validation error.
        let response = t.run(update, json!({"id": job, "patch": {"priority": "high"}})).await;
        assert_eq!(response.error_code(), Some("GRAPHQL_VALIDATION_FAILED"), "{}", response.body);

        // BigInt: numbers and decimal strings in, numbers out.
        let run = fx.insert("gepa_runs", &t.workspace_a, &[]).await;
        let seed = "mutation($id: ID!, $patch: GepaRunPatch!) { updateGepaRun(id: $id, patch: $patch) { gepaRun { randomSeed } } }";
        let response = t.run(seed, json!({"id": run, "patch": {"randomSeed": "-9223372036854775808"}})).await;
        assert_eq!(response.data()["updateGepaRun"]["gepaRun"]["randomSeed"], json!(i64::MIN));
        let response = t.run(seed, json!({"id": run, "patch": {"randomSeed": 9_007_199_254_740_993i64}})).await;
        assert_eq!(response.data()["updateGepaRun"]["gepaRun"]["randomSeed"], json!(9_007_199_254_740_993i64));
        let response = t.run(seed, json!({"id": run, "patch": {"randomSeed": "9223372036854775808"}})).await;
        assert_bad_input(&response, "patch.randomSeed");
        let response = t.run(seed, json!({"id": run, "patch": {"randomSeed": "seven"}})).await;
        assert_eq!(response.error_code(), Some("GRAPHQL_VALIDATION_FAILED"), "{}", response.body);
        let response = t.run(seed, json!({"id": run, "patch": {"randomSeed": 18_446_744_073_709_551_615u64}})).await;
        assert_bad_input(&response, "patch.randomSeed");
        fx.insert("traces", &t.workspace_a, &[("total_tokens", fixtures::Value::Int(5_000_000_000))]).await;
        for eq in [json!(5_000_000_000i64), json!("5000000000")] {
            let response = t
                .run("query($ws: ID!, $f: TraceFilter) { traces(workspaceId: $ws, filter: $f) { nodes { totalTokens } } }",
                    json!({"ws": t.workspace_a, "f": {"totalTokens": {"eq": eq}}}))
                .await;
            assert_eq!(response.data()["traces"]["nodes"], json!([{"totalTokens": 5_000_000_000i64}]));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Another tenant's row answers exactly like a missing one, on every mutation taking an id.

/// The type reference of introspection as GraphQL text (`[TraceImportInput!]!`).
fn type_text(ty: &Value) -> String {
    match ty["kind"].as_str() {
        Some("NON_NULL") => format!("{}!", type_text(&ty["ofType"])),
        Some("LIST") => format!("[{}]", type_text(&ty["ofType"])),
        _ => ty["name"].as_str().unwrap().to_owned(),
    }
}

/// The named type at the bottom of a type reference.
fn named(ty: &Value) -> &str {
    match ty["name"].as_str() {
        Some(name) => name,
        None => named(&ty["ofType"]),
    }
}

/// A valid-looking value of a type (required input fields filled in).
fn sample(types: &std::collections::HashMap<String, Value>, ty: &Value, depth: usize) -> Value {
    match ty["kind"].as_str() {
        Some("NON_NULL") => sample(types, &ty["ofType"], depth),
        Some("LIST") => json!([]),
        _ => {
            let name = ty["name"].as_str().unwrap();
            let definition = &types[name];
            match definition["kind"].as_str() {
                Some("ENUM") => definition["enumValues"][0]["name"].clone(),
                Some("INPUT_OBJECT") if depth < 4 => Value::Object(
                    definition["inputFields"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|f| f["type"]["kind"] == "NON_NULL" && f["defaultValue"].is_null())
                        .map(|f| {
                            let name = f["name"].as_str().unwrap();
                            let value = match name {
                                // JSON shapes and dates the model checks.
                                "steps" | "nodes" | "edges" => json!([]),
                                _ if name.ends_with("Date") => json!("2030-01-01"),
                                _ => sample(types, &f["type"], depth + 1),
                            };
                            (name.to_owned(), value)
                        })
                        .collect(),
                ),
                Some("INPUT_OBJECT") => json!({}),
                _ => match name {
                    "ID" => json!("workspace_00000000-0000-7000-8000-000000000000"),
                    "String" => json!("someone@example.com"),
                    "Int" | "BigInt" => json!(1),
                    "Float" => json!(0.5),
                    "Boolean" => json!(false),
                    "DateTime" => json!("2030-01-01T00:00:00Z"),
                    "JSON" => json!({}),
                    other => panic!("no sample for {other}"),
                },
            }
        }
    }
}

const INTROSPECTION: &str = "{ __schema { mutationType { name } types { name kind \
    fields { name args { name defaultValue type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } \
    type { kind name ofType { kind name ofType { kind name } } } } \
    inputFields { name defaultValue type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } \
    enumValues { name } } } }";

both_backends! {
    async fn foreign_and_missing_ids_answer_byte_for_byte_alike(backend: Backend) {
        let t = Tenants::new(backend).await;
        let schema = t.app.graphql_admin(INTROSPECTION, json!({})).await;
        let schema = &schema.data()["__schema"];
        let types: std::collections::HashMap<String, Value> = schema["types"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["name"].as_str().unwrap().to_owned(), t.clone()))
            .collect();
        let mutation = &types[schema["mutationType"]["name"].as_str().unwrap()];
        let by_type: std::collections::HashMap<&str, &'static iofold_graph::catalog::Table> =
            iofold_graph::catalog::tables().map(|t| (t.type_name, t)).collect();

        // The table an id argument names: `<type>Id`, or for `id` the row the payload
        // carries (else the type after the verb: `deleteTrace`).
        let table_of = |field: &Value, arg_name: &str| {
            let name = field["name"].as_str().unwrap();
            let table = if let Some(stem) = arg_name.strip_suffix("Id") {
                let type_name = format!("{}{}", stem[..1].to_uppercase(), &stem[1..]);
                by_type.get(type_name.as_str()).copied()
            } else {
                let payload = &types[named(&field["type"])];
                payload["fields"].as_array().unwrap().iter().find_map(|f| by_type.get(named(&f["type"])).copied()).or_else(
                    || {
                        let verb_end = name.find(|c: char| c.is_ascii_uppercase()).unwrap();
                        by_type.get(&name[verb_end..]).copied()
                    },
                )
            };
            table.unwrap_or_else(|| panic!("{name}({arg_name}): which table does the id name?"))
        };
        let fx = Fixtures::new(&t.app.state.db);
        let own = fx.one_of_each(&t.workspace_a).await;

        let mut compared = 0;
        let mut mutations_with_ids = 0;
        for field in mutation["fields"].as_array().unwrap() {
            let name = field["name"].as_str().unwrap();
            let args = field["args"].as_array().unwrap();
            let id_args: Vec<&Value> = args.iter().filter(|a| named(&a["type"]) == "ID").collect();
            if id_args.is_empty() {
                continue;
            }
            mutations_with_ids += 1;
            for arg in &id_args {
                let arg_name = arg["name"].as_str().unwrap();
                let table = table_of(field, arg_name);
                let Some(foreign) = t.theirs.get(table.name) else { panic!("no row of {} to try", table.name) };
                let uuid = uuid::Uuid::now_v7();
                let missing = if foreign.contains('-') {
                    format!("{}_{}", table.id_prefix, uuid)
                } else {
                    format!("{}_{}", table.id_prefix, uuid.simple())
                };
                assert_eq!(foreign.len(), missing.len());

                // Required arguments get valid values: other ids name the caller's own rows.
                let mut variables = serde_json::Map::new();
                for a in args {
                    let a_name = a["name"].as_str().unwrap();
                    if a_name == arg_name || a["type"]["kind"] != "NON_NULL" || !a["defaultValue"].is_null() {
                        continue;
                    }
                    let value = if named(&a["type"]) == "ID" {
                        json!(own[table_of(field, a_name).name])
                    } else {
                        sample(&types, &a["type"], 0)
                    };
                    variables.insert(a_name.to_owned(), value);
                }
                let used: Vec<&Value> = args.iter().filter(|a| a["name"] == arg_name || variables.contains_key(a["name"].as_str().unwrap())).collect();
                let declared: Vec<String> = used.iter().map(|a| format!("${}: {}", a["name"].as_str().unwrap(), type_text(&a["type"]))).collect();
                let passed: Vec<String> = used.iter().map(|a| format!("{0}: ${0}", a["name"].as_str().unwrap())).collect();
                let query = format!("mutation({}) {{ {name}({}) {{ __typename }} }}", declared.join(", "), passed.join(", "));
                let answer = |id: &String| {
                    let mut variables = variables.clone();
                    variables.insert(arg_name.to_owned(), json!(id));
                    t.run(&query, Value::Object(variables))
                };
                let theirs = answer(foreign).await;
                let nothing = answer(&missing).await;
                assert!(theirs.body.get("errors").is_some(), "{name}({arg_name}) on another tenant's row succeeded: {}", theirs.body);
                // The answer is about the id (not an unrelated refusal that would hide it):
                // NOT_FOUND, or FORBIDDEN for the tables only the server admin writes.
                let expected = if matches!(table.name, "tools" | "eval_llm_cache") { "FORBIDDEN" } else { "NOT_FOUND" };
                assert_eq!(theirs.error_code(), Some(expected), "{name}({arg_name}): {}", theirs.body);
                let theirs_text = theirs.body.to_string().replace(foreign.as_str(), "<id>");
                let nothing_text = nothing.body.to_string().replace(missing.as_str(), "<id>");
                assert_eq!(theirs_text, nothing_text, "{name}({arg_name}): another tenant's {} and a missing one differ", table.name);
                assert_eq!(theirs.status, nothing.status, "{name}({arg_name})");
                compared += 1;
            }
        }
        assert!(mutations_with_ids >= 80, "only {mutations_with_ids} mutations take an id");
        assert!(compared >= mutations_with_ids, "{compared} comparisons");

        // Ids inside an input object (`createTrace(input: {workspaceId, agentVersionId})`):
        // the same answer, byte for byte, for another tenant's row and a missing one.
        let mut in_inputs = 0;
        let mut not_found = 0;
        for field in mutation["fields"].as_array().unwrap() {
            let name = field["name"].as_str().unwrap();
            for arg in field["args"].as_array().unwrap() {
                let input = &types[named(&arg["type"])];
                if input["kind"] != "INPUT_OBJECT" || arg["type"]["kind"] == "LIST" || arg["type"]["ofType"]["kind"] == "LIST" {
                    continue;
                }
                let arg_name = arg["name"].as_str().unwrap();
                let fields = input["inputFields"].as_array().unwrap();
                for id_field in fields.iter().filter(|f| named(&f["type"]) == "ID") {
                    let field_name = id_field["name"].as_str().unwrap();
                    let Some(stem) = field_name.strip_suffix("Id") else { continue };
                    let type_name = format!("{}{}", stem[..1].to_uppercase(), &stem[1..]);
                    // `parentVersionId` and the like name a type only through the catalog.
                    let Some(table) = by_type.get(type_name.as_str()).copied() else { continue };
                    // Global rows (tools) are everyone's to reference.
                    if matches!(table.name, "tools" | "eval_llm_cache") {
                        continue;
                    }
                    let foreign = &t.theirs[table.name];
                    let uuid = uuid::Uuid::now_v7();
                    let missing = if foreign.contains('-') {
                        format!("{}_{}", table.id_prefix, uuid)
                    } else {
                        format!("{}_{}", table.id_prefix, uuid.simple())
                    };
                    let mut object = match sample(&types, &arg["type"], 0) {
                        Value::Object(object) => object,
                        _ => continue,
                    };
                    for other in fields.iter().filter(|f| named(&f["type"]) == "ID" && f["type"]["kind"] == "NON_NULL") {
                        let other_name = other["name"].as_str().unwrap();
                        if let Some(other_table) = other_name
                            .strip_suffix("Id")
                            .and_then(|stem| by_type.get(format!("{}{}", stem[..1].to_uppercase(), &stem[1..]).as_str()))
                        {
                            object.insert(other_name.to_owned(), json!(own[other_table.name]));
                        }
                    }
                    let mut variables = serde_json::Map::new();
                    for a in field["args"].as_array().unwrap() {
                        let a_name = a["name"].as_str().unwrap();
                        if a_name != arg_name && a["type"]["kind"] == "NON_NULL" && a["defaultValue"].is_null() {
                            let value = if named(&a["type"]) == "ID" { json!(own[table_of(field, a_name).name]) } else { sample(&types, &a["type"], 0) };
                            variables.insert(a_name.to_owned(), value);
                        }
                    }
                    let used: Vec<&Value> = field["args"].as_array().unwrap().iter().filter(|a| a["name"] == arg_name || variables.contains_key(a["name"].as_str().unwrap())).collect();
                    let declared: Vec<String> = used.iter().map(|a| format!("${}: {}", a["name"].as_str().unwrap(), type_text(&a["type"]))).collect();
                    let passed: Vec<String> = used.iter().map(|a| format!("{0}: ${0}", a["name"].as_str().unwrap())).collect();
                    let query = format!("mutation({}) {{ {name}({}) {{ __typename }} }}", declared.join(", "), passed.join(", "));
                    let answer = |id: &String| {
                        let mut variables = variables.clone();
                        let mut object = object.clone();
                        object.insert(field_name.to_owned(), json!(id));
                        variables.insert(arg_name.to_owned(), Value::Object(object));
                        t.run(&query, Value::Object(variables))
                    };
                    let theirs = answer(foreign).await;
                    let nothing = answer(&missing).await;
                    assert!(theirs.body.get("errors").is_some(), "{name}({arg_name}.{field_name}) with another tenant's row succeeded: {}", theirs.body);
                    let theirs_text = theirs.body.to_string().replace(foreign.as_str(), "<id>");
                    let nothing_text = nothing.body.to_string().replace(missing.as_str(), "<id>");
                    assert_eq!(theirs_text, nothing_text, "{name}({arg_name}.{field_name}): another tenant's {} and a missing one differ", table.name);
                    in_inputs += 1;
                    if theirs.error_code() == Some("NOT_FOUND") {
                        not_found += 1;
                    } else {
                        eprintln!("{name}({arg_name}.{field_name}): {}", theirs.body["errors"][0]);
                    }
                }
            }
        }
        assert!(in_inputs >= 40, "only {in_inputs} ids in inputs");
        assert_eq!(not_found, in_inputs, "every id in an input reaches the reference check (see the lines above)");
        // The caller's own workspace still works (the test did not just refuse everything).
        let own = t.run("mutation($ws: ID!) { addWorkspaceMember(workspaceId: $ws, email: \"new@example.com\") { workspaceMember { role } } }",
            json!({"ws": t.workspace_a})).await;
        assert_eq!(own.data()["addWorkspaceMember"]["workspaceMember"]["role"], "MEMBER");
    }
}

// ---------------------------------------------------------------------------------------
// Emails: only the server admin changes one.

both_backends! {
    async fn an_email_cannot_be_claimed_by_a_user(backend: Backend) {
        let t = Tenants::new(backend).await;
        let fx = Fixtures::new(&t.app.state.db);
        let claim = "mutation($id: ID!, $e: String!) { updateUser(id: $id, patch: {email: $e}) { user { email } } }";
        let app = &t.app;
        let email_of = |id: String| async move {
            app.graphql_admin("query($id: ID!) { user(id: $id) { email } }", json!({"id": id})).await.data()["user"]["email"].clone()
        };
        let before = email_of(t.user_a.clone()).await;

        // An unregistered address and a registered one: the same refusal, nothing changed.
        let registered = fx.insert("users", "", &[("email", "carol@corp.example".into())]).await;
        let mut answers = Vec::new();
        for email in ["bob@corp.example", "carol@corp.example"] {
            let response = t.run(claim, json!({"id": t.user_a, "e": email})).await;
            assert_eq!(response.error_code(), Some("FORBIDDEN"), "{}", response.body);
            answers.push(response.body.to_string().replace(email, "<email>"));
        }
        assert_eq!(answers[0], answers[1], "the answer tells registered addresses apart");
        assert!(!answers[1].contains("users_email_key"), "{}", answers[1]);
        assert_eq!(email_of(t.user_a.clone()).await, before);

        // The owner's invitation goes to the address's own (new) user, not to the claimant.
        let add = "mutation($ws: ID!, $e: String!) { addWorkspaceMember(workspaceId: $ws, email: $e, role: ADMIN) { workspaceMember { user { id email } } } }";
        let fx_owner = fx.workspace_with_owner().await;
        let owner_token = fx.token_for(&fx_owner.1).await;
        let response = t.app.graphql(Some(&owner_token), add, json!({"ws": fx_owner.0, "e": "bob@corp.example"})).await;
        let user = &response.data()["addWorkspaceMember"]["workspaceMember"]["user"];
        assert_eq!(user["email"], "bob@corp.example");
        assert_ne!(user["id"], json!(t.user_a));
        let response = t.app.graphql(Some(&owner_token), add, json!({"ws": fx_owner.0, "e": "carol@corp.example"})).await;
        assert_eq!(response.data()["addWorkspaceMember"]["workspaceMember"]["user"]["id"], json!(registered));

        // The server admin may change an address (and is told of a taken one).
        let response = t.app.graphql_admin(claim, json!({"id": t.user_a, "e": "a.new@corp.example"})).await;
        assert_eq!(response.data()["updateUser"]["user"]["email"], "a.new@corp.example");
        let response = t.app.graphql_admin(claim, json!({"id": t.user_a, "e": "carol@corp.example"})).await;
        assert_eq!(response.error_code(), Some("CONFLICT"), "{}", response.body);
        // Other fields of one's own user stay self-service.
        let response = t.run("mutation($id: ID!) { updateUser(id: $id, patch: {name: \"A\"}) { user { name } } }", json!({"id": t.user_a})).await;
        assert_eq!(response.data()["updateUser"]["user"]["name"], "A");
    }
}
