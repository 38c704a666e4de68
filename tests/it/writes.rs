//! Writers under load, through the HTTP router and a real socket: with the default pool,
//! after a read load that opened every connection, many concurrent writers of one workspace
//! all succeed and lose nothing; clients that abort their connections mid-mutation leave no
//! transaction open, no lock held and nothing half-written.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iofold_graph::config::defaults::DB_POOL_SIZE;
use iofold_graph::db::{Backend, DatabaseUrl, Db, PoolOptions};
use iofold_graph::server::AppState;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::both_backends;
use crate::support::app::{test_config, TestApp};
use crate::support::db::TestDb;
use crate::support::fixtures::{count, load, Fixtures};
use crate::support::http::Client;
use crate::support::ws::Live;

/// A small xorshift generator: the tests' choices vary by client, reproducibly.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn seconds() -> u64 {
    std::env::var("CONCURRENCY_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10).min(5)
}

/// The application with the **default** pool size, on a fresh database. On PostgreSQL its
/// connections carry an `application_name` of their own, so `pg_stat_activity` tells them
/// apart from every other test's.
async fn app_with_default_pool(backend: Backend) -> (TestApp, String) {
    let test_db = TestDb::migrated(backend).await;
    let name = format!("iofold_w_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let url = match &test_db.url {
        DatabaseUrl::Postgres(url) => DatabaseUrl::Postgres(format!("{url}&application_name={name}")),
        sqlite => sqlite.clone(),
    };
    let db = Db::connect(&url, &PoolOptions { max_size: DB_POOL_SIZE as usize }).expect("pool");
    let state = AppState::new(db, test_config(url.as_str()));
    (TestApp { test_db, state }, name)
}

/// What the writers work on: one workspace, its owner's token, an agent with three evals,
/// eight traces each rated once (so each has a feedback row).
struct Scene {
    workspace: String,
    token: String,
    evals: Vec<String>,
    traces: Vec<String>,
    feedback: Vec<String>,
}

const RATE: &str = "mutation($t: ID!, $r: FeedbackRating!) { rateTrace(traceId: $t, rating: $r) { feedback { id } } }";
const UPDATE_FEEDBACK: &str = "mutation($id: ID!, $r: FeedbackRating!, $n: String!) { updateFeedback(id: $id, patch: {rating: $r, ratingDetail: $n}) { feedback { id ratingDetail } } }";
const RECORD: &str = "mutation($e: ID!, $t: ID!, $p: Boolean) { recordEvalExecutions(evalId: $e, executions: [{traceId: $t, predictedResult: $p}]) { eval { id } } }";
const IMPORT: &str = "mutation($w: ID!, $traces: [TraceImportInput!]!) { importTraces(workspaceId: $w, source: LANGFUSE, traces: $traces) { imported } }";
const CREATE_AGENT: &str =
    "mutation($w: ID!, $n: String!) { createAgent(input: {workspaceId: $w, name: $n}) { agent { id } } }";
const PAGE: &str = "query($w: ID!) { traces(workspaceId: $w, first: 50) { nodes { id feedback { rating } evalExecutions(first: 10) { nodes { predictedResult eval { name } } } } } }";

impl Scene {
    async fn new(app: &TestApp) -> Scene {
        let fx = Fixtures::new(&app.state.db);
        let (workspace, owner) = fx.workspace_with_owner().await;
        let token = fx.token_for(&owner).await;
        let agent = fx.insert("agents", &workspace, &[]).await;
        let mut evals = Vec::new();
        for version in 1..=3i64 {
            evals.push(
                fx.insert("evals", &workspace, &[("agent_id", (&agent).into()), ("version", version.into())]).await,
            );
        }
        let (mut traces, mut feedback) = (Vec::new(), Vec::new());
        for _ in 0..8 {
            let trace = fx.insert("traces", &workspace, &[]).await;
            let rated = app.graphql(Some(&token), RATE, json!({"t": trace, "r": "POSITIVE"})).await;
            feedback.push(rated.data()["rateTrace"]["feedback"]["id"].as_str().unwrap().to_owned());
            traces.push(trace);
        }
        Scene { workspace, token, evals, traces, feedback }
    }

    /// A random write: (kind, query, variables). Imports carry 100 traces (25 when `small`)
    /// whose ids start with `batch`.
    fn write(&self, rng: &mut Rng, batch: &str, small: bool) -> (usize, &'static str, Value) {
        let rating = ["POSITIVE", "NEGATIVE", "NEUTRAL"][rng.below(3)];
        match rng.below(5) {
            0 => {
                let id = &self.feedback[rng.below(self.feedback.len())];
                (0, UPDATE_FEEDBACK, json!({"id": id, "r": rating, "n": batch}))
            }
            1 => (1, RATE, json!({"t": self.traces[rng.below(self.traces.len())], "r": rating})),
            2 => {
                let predicted = [json!(true), json!(false), Value::Null][rng.below(3)].clone();
                let (e, t) = (&self.evals[rng.below(self.evals.len())], &self.traces[rng.below(self.traces.len())]);
                (2, RECORD, json!({"e": e, "t": t, "p": predicted}))
            }
            3 => {
                let n = if small { 25 } else { 100 };
                let traces: Vec<Value> = (0..n)
                    .map(|i| json!({"traceId": format!("{batch}-{i}"), "timestamp": "2026-01-01T00:00:00Z", "steps": [{"step_id": "s1", "input": "hi"}]}))
                    .collect();
                (3, IMPORT, json!({"w": self.workspace, "traces": traces}))
            }
            _ => (4, CREATE_AGENT, json!({"w": self.workspace, "n": batch})),
        }
    }

    /// Every eval's stored counters equal its rows.
    async fn assert_counts_exact(&self, db: &Db) {
        #[derive(diesel::QueryableByName)]
        struct Counts {
            #[diesel(sql_type = diesel::sql_types::Text)]
            id: String,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            stored_executions: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            executions: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            stored_contradictions: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            contradictions: i64,
        }
        let rows: Vec<Counts> = load(
            db,
            "SELECT e.id, CAST(e.execution_count AS BIGINT) AS stored_executions, \
               (SELECT COUNT(*) FROM eval_executions x WHERE x.eval_id = e.id) AS executions, \
               CAST(e.contradiction_count AS BIGINT) AS stored_contradictions, \
               (SELECT COUNT(*) FROM eval_comparison c WHERE c.eval_id = e.id AND c.is_contradiction = TRUE) AS contradictions \
             FROM evals e",
        )
        .await
        .expect("counters");
        assert_eq!(rows.len(), self.evals.len());
        for row in rows {
            assert_eq!(
                (row.stored_executions, row.stored_contradictions),
                (row.executions, row.contradictions),
                "eval {}: stored (executions, contradictions) equal the rows",
                row.id
            );
        }
    }
}

/// Whether a GraphQL answer is a success.
fn succeeded(status: u16, body: &Value) -> bool {
    (200..300).contains(&status) && body.get("errors").is_none() && body.get("data").is_some_and(|d| !d.is_null())
}

both_backends! {
    async fn mixed_writers_after_a_read_load_all_succeed(backend: Backend) {
        let (app, _) = app_with_default_pool(backend).await;
        let app = Arc::new(app);
        let scene = Arc::new(Scene::new(&app).await);
        let pool = DB_POOL_SIZE as usize;

        // Readers first, until every pooled connection has been opened.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut readers = Vec::new();
        for _ in 0..2 * pool {
            let (app, scene) = (app.clone(), scene.clone());
            readers.push(tokio::spawn(async move {
                while Instant::now() < deadline && app.state.db.pool_status().size < DB_POOL_SIZE as usize {
                    let page = app.graphql(Some(&scene.token), PAGE, json!({"w": scene.workspace})).await;
                    assert_eq!(page.data()["traces"]["nodes"].as_array().map(Vec::len), Some(8));
                }
            }));
        }
        for reader in readers {
            reader.await.unwrap();
        }
        assert_eq!(app.state.db.pool_status().size, pool, "the read load opened every pooled connection");

        // Then 4 × pool-size writers of one workspace.
        let deadline = Instant::now() + Duration::from_secs(seconds());
        let mut writers = Vec::new();
        for client in 0..4 * pool {
            let (app, scene) = (app.clone(), scene.clone());
            writers.push(tokio::spawn(async move {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (client as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
                let mut acknowledged: Vec<(usize, Value)> = Vec::new();
                let mut errors = Vec::new();
                let mut n = 0;
                while Instant::now() < deadline {
                    n += 1;
                    let batch = format!("c{client}-{n}");
                    let (kind, query, variables) = scene.write(&mut rng, &batch, false);
                    let response = app.graphql(Some(&scene.token), query, variables.clone()).await;
                    if succeeded(response.status.as_u16(), &response.body) {
                        acknowledged.push((kind, variables));
                    } else {
                        errors.push(format!("{query}: {} {}", response.status, response.body));
                    }
                }
                (acknowledged, errors)
            }));
        }
        let (mut acknowledged, mut errors) = (Vec::new(), Vec::new());
        for writer in writers {
            let (a, e) = writer.await.unwrap();
            acknowledged.extend(a);
            errors.extend(e);
        }
        let kinds: Vec<usize> = (0..5).map(|k| acknowledged.iter().filter(|(kind, _)| *kind == k).count()).collect();
        eprintln!("{backend:?}: {} writers for {} s: updateFeedback/rateTrace/record/import/createAgent {kinds:?}, errors {}",
            4 * pool, seconds(), errors.len());
        assert!(errors.is_empty(), "{} failed writes, the first: {}", errors.len(), errors.iter().take(3).cloned().collect::<Vec<_>>().join("\n"));
        assert!(kinds.iter().all(|&n| n > 0), "every kind of write ran: {kinds:?}");

        // Every acknowledged write is there.
        let db = &app.state.db;
        let recorded = kinds[2] as i64;
        assert_eq!(count(db, "eval_executions", None).await, recorded, "every acknowledged execution exists");
        assert_eq!(count(db, "traces", None).await, 8 + 100 * kinds[3] as i64, "every acknowledged import is whole");
        assert_eq!(count(db, "agents", None).await, 1 + kinds[4] as i64, "every acknowledged agent exists");
        assert_eq!(count(db, "feedback", None).await, 8, "one feedback row per trace");
        let mut notes: HashMap<String, HashSet<String>> = HashMap::new();
        for (_, variables) in acknowledged.iter().filter(|(kind, _)| *kind == 0) {
            notes.entry(variables["id"].as_str().unwrap().to_owned()).or_default().insert(variables["n"].as_str().unwrap().to_owned());
        }
        let stored = app
            .graphql_admin("query($w: ID!) { feedbacks(workspaceId: $w, first: 100) { nodes { id ratingDetail } } }", json!({"w": scene.workspace}))
            .await;
        for node in stored.data()["feedbacks"]["nodes"].as_array().unwrap() {
            if let Some(written) = notes.get(node["id"].as_str().unwrap()) {
                assert!(written.contains(node["ratingDetail"].as_str().unwrap_or_default()), "feedback {} holds an acknowledged note", node["id"]);
            }
        }
        scene.assert_counts_exact(db).await;
    }
}

/// Sends a mutation on a fresh connection, waits `after`, then resets the connection
/// (`SO_LINGER` 0): the client is gone, whatever the server was doing.
async fn abort_after(address: SocketAddr, token: &str, query: &str, variables: &Value, after: Duration) {
    let body = json!({"query": query, "variables": variables}).to_string();
    let request = format!(
        "POST /graphql HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else { return };
    if stream.write_all(request.as_bytes()).await.is_err() {
        return;
    }
    tokio::time::sleep(after).await;
    // A zero linger never blocks: the close is an immediate reset.
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

both_backends! {
    async fn clients_that_abort_mid_mutation_leave_no_transaction_open(backend: Backend) {
        let (app, application_name) = app_with_default_pool(backend).await;
        let scene = Arc::new(Scene::new(&app).await);
        let live = Live::start(app.state.clone()).await;
        let address = live.address();
        let running = Arc::new(std::sync::atomic::AtomicBool::new(true));

        // Reads and writes that finish, beside the aborted ones.
        let mut steady = Vec::new();
        for client in 0..4u64 {
            let (scene, running) = (scene.clone(), running.clone());
            steady.push(tokio::spawn(async move {
                let mut http = Client::new(address);
                let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ (client + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let authorization = format!("Bearer {}", scene.token);
                let mut n = 0;
                let mut failures = Vec::new();
                while running.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let (query, variables) = if n % 2 == 0 {
                        (PAGE, json!({"w": scene.workspace}))
                    } else {
                        let (_, query, variables) = scene.write(&mut rng, &format!("steady{client}-{n}"), true);
                        (query, variables)
                    };
                    let body = json!({"query": query, "variables": variables}).to_string();
                    match http.post_json("/graphql", &[("authorization", &authorization)], &body).await {
                        Ok(reply) if succeeded(reply.status, &reply.json()) => {}
                        Ok(reply) => failures.push(format!("{} {}", reply.status, reply.body)),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                failures
            }));
        }

        // Hundreds of clients that go away 0–6 ms after sending a mutation.
        let mut aborters = Vec::new();
        for client in 0..8u64 {
            let scene = scene.clone();
            aborters.push(tokio::spawn(async move {
                let mut rng = Rng(0xA076_1D64_78BD_642F ^ (client + 1).wrapping_mul(0xE703_7ED1_A0B4_28DB));
                for n in 0..40 {
                    let (_, query, variables) = scene.write(&mut rng, &format!("abort{client}-{n}"), true);
                    let after = Duration::from_micros(rng.below(6_000) as u64);
                    abort_after(address, &scene.token, query, &variables, after).await;
                }
            }));
        }
        for aborter in aborters {
            aborter.await.unwrap();
        }
        running.store(false, std::sync::atomic::Ordering::Relaxed);
        for client in steady {
            let failures = client.await.unwrap();
            assert!(failures.is_empty(), "requests beside the aborted ones all succeed: {failures:?}");
        }
        let interrupted = app.state.db.stats.interrupted_transactions();
        eprintln!("{backend:?}: 320 aborted clients, {interrupted} transactions interrupted mid-way");

        // Then, with nothing else running (no other request takes a connection from the pool
        // that could notice a bad one), clients that certainly leave mid-transaction: their
        // transaction waits for a lock the test holds (on PostgreSQL an eval's row, which
        // recording executions locks after `BEGIN`; on SQLite the write lock, which `BEGIN
        // IMMEDIATE` waits for), and they go away meanwhile; then the test lets go.
        let before = app.state.db.stats.interrupted_transactions();
        let mut pg_holder = None;
        let mut sqlite_holder = None;
        match backend {
            Backend::Postgres => {
                let iofold_graph::db::Pool::Postgres(pool) = &app.test_db.db.pool else { unreachable!() };
                let mut conn = pool.get().await.unwrap();
                use diesel_async::SimpleAsyncConnection;
                conn.batch_execute(&format!("BEGIN; SELECT id FROM evals WHERE id = '{}' FOR UPDATE", scene.evals[0]))
                    .await
                    .unwrap();
                pg_holder = Some(conn);
            }
            Backend::Sqlite => {
                use diesel::connection::SimpleConnection;
                use diesel::Connection;
                let mut conn = diesel::sqlite::SqliteConnection::establish(app.test_db.url.as_str()).unwrap();
                conn.batch_execute("BEGIN IMMEDIATE").unwrap();
                sqlite_holder = Some(conn);
            }
        }
        let mut leavers = Vec::new();
        for client in 0..4usize {
            let scene = scene.clone();
            leavers.push(tokio::spawn(async move {
                let (e, t) = (&scene.evals[0], &scene.traces[client]);
                let variables = json!({"e": e, "t": t, "p": true});
                abort_after(address, &scene.token, RECORD, &variables, Duration::from_millis(300)).await;
            }));
        }
        for leaver in leavers {
            leaver.await.unwrap();
        }
        if let Some(mut conn) = pg_holder {
            use diesel_async::SimpleAsyncConnection;
            conn.batch_execute("COMMIT").await.unwrap();
        }
        if let Some(mut conn) = sqlite_holder {
            use diesel::connection::SimpleConnection;
            conn.batch_execute("COMMIT").unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let left = app.state.db.stats.interrupted_transactions() - before;
        eprintln!("{backend:?}: {left} of 4 clients left in the middle of a transaction");
        assert!(left > 0, "a client left in the middle of a transaction (else the checks below prove nothing)");

        // Whatever was cut off was rolled back and its connection closed.
        match backend {
            Backend::Postgres => {
                #[derive(diesel::QueryableByName)]
                struct Open {
                    #[diesel(sql_type = diesel::sql_types::BigInt)]
                    n: i64,
                }
                let open: Vec<Open> = load(
                    &app.test_db.db,
                    &format!(
                        "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE application_name = '{application_name}' \
                         AND state LIKE 'idle in transaction%'"
                    ),
                )
                .await
                .unwrap();
                assert_eq!(open[0].n, 0, "no server connection is left idle in a transaction");
            }
            Backend::Sqlite => {
                // Another connection that does not wait at all gets the write lock at once.
                use diesel::connection::SimpleConnection;
                use diesel::Connection;
                let mut conn = diesel::sqlite::SqliteConnection::establish(app.test_db.url.as_str()).unwrap();
                conn.batch_execute("PRAGMA busy_timeout = 0; BEGIN IMMEDIATE; COMMIT;")
                    .expect("no connection of the server holds SQLite's write lock");
            }
        }
        // The server still writes at once, and nothing half-written is visible: each import
        // (25 traces) is there whole or not at all; the counters equal the rows.
        let rated = app
            .graphql(Some(&scene.token), RATE, json!({"t": scene.traces[0], "r": "NEGATIVE"}))
            .await;
        rated.data();
        #[derive(diesel::QueryableByName)]
        struct TraceId {
            #[diesel(sql_type = diesel::sql_types::Text)]
            trace_id: String,
        }
        let ids: Vec<TraceId> =
            load(&app.test_db.db, "SELECT trace_id FROM traces WHERE trace_id LIKE 'abort%'").await.unwrap();
        let mut batches: HashMap<String, usize> = HashMap::new();
        for id in ids {
            *batches.entry(id.trace_id.rsplit_once('-').unwrap().0.to_owned()).or_default() += 1;
        }
        eprintln!("{backend:?}: {} of the aborted imports committed", batches.len());
        for (batch, n) in batches {
            assert_eq!(n, 25, "import {batch} is whole or absent");
        }
        scene.assert_counts_exact(&app.state.db).await;
        drop(live);
    }
}

/// PostgreSQL: writers of other rows of a workspace do not wait for a long write transaction
/// of the same workspace. An import is held in the middle of its transaction (it re-imports a
/// trace whose row the test has locked); meanwhile ratings, feedback updates, executions and
/// new agents of the same workspace all commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_of_one_workspace_do_not_wait_for_each_other_postgres() {
    if !crate::support::db::require_postgres("writes::writers_of_one_workspace_do_not_wait_for_each_other_postgres")
        .await
    {
        return;
    }
    let (app, application_name) = app_with_default_pool(Backend::Postgres).await;
    let scene = Arc::new(Scene::new(&app).await);
    let live = Live::start(app.state.clone()).await;
    let address = live.address();
    let import = |n: usize| {
        let traces: Vec<Value> = (0..n)
            .map(|i| json!({"traceId": format!("held-{i}"), "timestamp": "2026-01-01T00:00:00Z", "steps": [{"step_id": "s1", "input": "hi"}]}))
            .collect();
        json!({"query": IMPORT, "variables": {"w": scene.workspace, "traces": traces}}).to_string()
    };
    let authorization = format!("Bearer {}", scene.token);
    let mut http = Client::new(address);
    let first = http.post_json("/graphql", &[("authorization", &authorization)], &import(1)).await.unwrap();
    assert!(succeeded(first.status, &first.json()), "{}", first.body);

    let iofold_graph::db::Pool::Postgres(pool) = &app.test_db.db.pool else { unreachable!() };
    let mut holder = pool.get().await.unwrap();
    use diesel_async::SimpleAsyncConnection;
    holder.batch_execute("BEGIN; SELECT id FROM traces WHERE trace_id = 'held-0' FOR UPDATE").await.unwrap();
    let importer = {
        let (body, authorization) = (import(100), authorization.clone());
        tokio::spawn(async move {
            Client::new(address).post_json("/graphql", &[("authorization", &authorization)], &body).await
        })
    };
    // Wait until the import's transaction is blocked on the held row.
    #[derive(diesel::QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let waiting_sql = format!(
        "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE application_name = '{application_name}' \
         AND wait_event_type = 'Lock' AND state = 'active'"
    );
    let started = Instant::now();
    while load::<Waiting>(&app.test_db.db, &waiting_sql).await.unwrap()[0].n == 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "the import reached the held row");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Meanwhile, the workspace's other writers commit.
    let writes = [
        (UPDATE_FEEDBACK, json!({"id": scene.feedback[1], "r": "NEGATIVE", "n": "during the import"})),
        (RATE, json!({"t": scene.traces[2], "r": "NEUTRAL"})),
        (RECORD, json!({"e": scene.evals[0], "t": scene.traces[3], "p": false})),
        (CREATE_AGENT, json!({"w": scene.workspace, "n": "during the import"})),
    ];
    for (query, variables) in writes {
        let body = json!({"query": query, "variables": variables}).to_string();
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            http.post_json("/graphql", &[("authorization", &authorization)], &body),
        )
        .await
        .unwrap_or_else(|_| panic!("{query} waited for the import of the same workspace"))
        .unwrap();
        assert!(succeeded(reply.status, &reply.json()), "{query}: {}", reply.body);
    }
    assert!(!importer.is_finished(), "the import is still held");

    holder.batch_execute("COMMIT").await.unwrap();
    let imported = importer.await.unwrap().unwrap();
    assert!(succeeded(imported.status, &imported.json()), "the held import commits: {}", imported.body);
    assert_eq!(imported.json()["data"]["importTraces"]["imported"], 99);
    scene.assert_counts_exact(&app.state.db).await;
    drop(live);
}

both_backends! {
    /// The statements of a one-row update, from the server's own counter: a note is `BEGIN`,
    /// the row read and locked, `UPDATE … RETURNING`, `COMMIT`; a changed rating adds the
    /// trace's lock, the evals that ran on it (found and locked in one statement on
    /// PostgreSQL) and their recount. `rateTrace` locks its trace once, though both it and the
    /// rating's recount ask for the lock. The recounts are exact either way.
    async fn a_one_row_update_costs_only_the_statements_it_needs(backend: Backend) {
        let app = TestApp::new(backend).await;
        let fx = Fixtures::new(&app.state.db);
        let (workspace, _) = fx.workspace_with_owner().await;
        crate::graph::nested_data(&fx, &workspace, 2).await;
        let ids = app
            .graphql_admin(
                "query($ws: ID!) { feedbacks(workspaceId: $ws) { nodes { id rating trace { id } } } }",
                json!({"ws": workspace}),
            )
            .await;
        let rating = ids.data()["feedbacks"]["nodes"][0].clone();
        let (id, trace) = (rating["id"].clone(), rating["trace"]["id"].clone());
        let stats = app.state.db.stats.clone();
        let counted = |update: &'static str, variables: Value| {
            let (app, stats) = (&app, stats.clone());
            async move {
                stats.capture_shapes();
                let before = stats.statements();
                let response = app.graphql_admin(update, variables).await;
                assert!(response.body["errors"].is_null(), "{:?}", response.body);
                let shapes: Vec<String> = stats.take_shapes().into_iter().map(|s| s.replace('`', "\"")).collect();
                (stats.statements() - before, shapes)
            }
        };
        let note = "mutation($id: ID!, $n: String) { updateFeedback(id: $id, patch: {ratingDetail: $n}) { feedback { id ratingDetail } } }";
        let (note, shapes) = counted(note, json!({"id": id, "n": "checked again"})).await;
        assert_eq!(note, 4, "{shapes:#?}");
        let next = if rating["rating"] == "POSITIVE" { "NEGATIVE" } else { "POSITIVE" };
        let change = "mutation($id: ID!, $r: FeedbackRating!) { updateFeedback(id: $id, patch: {rating: $r}) { feedback { id rating } } }";
        let (changed, shapes) = counted(change, json!({"id": id, "r": next})).await;
        let expected = if backend == Backend::Postgres { 7 } else { 6 };
        assert_eq!(changed, expected, "{shapes:#?}");

        // rateTrace: the trace is locked once.
        stats.capture_shapes();
        let back = if next == "POSITIVE" { "NEGATIVE" } else { "POSITIVE" };
        let rate = "mutation($t: ID!, $r: FeedbackRating!) { rateTrace(traceId: $t, rating: $r) { feedback { id rating } } }";
        let response = app.graphql_admin(rate, json!({"t": trace, "r": back})).await;
        assert_eq!(response.data()["rateTrace"]["feedback"]["rating"], back, "{:?}", response.body);
        let shapes: Vec<String> = stats.take_shapes().into_iter().map(|s| s.replace('`', "\"")).collect();
        if backend == Backend::Postgres {
            let trace_locks = shapes.iter().filter(|s| s.contains("FROM \"traces\"") && s.contains("FOR UPDATE")).count();
            assert_eq!(trace_locks, 1, "{shapes:#?}");
        }

        // The counters match the rows after all of it.
        let evals = app
            .graphql_admin(
                "query($ws: ID!) { evals(workspaceId: $ws, first: 100) { nodes { contradictionCount \
                 contradictions: evalComparisons(filter: {isContradiction: {eq: true}}) { totalCount } } } }",
                json!({"ws": workspace}),
            )
            .await;
        for eval in evals.data()["evals"]["nodes"].as_array().unwrap() {
            assert_eq!(eval["contradictionCount"], eval["contradictions"]["totalCount"], "{eval}");
        }
    }
}
