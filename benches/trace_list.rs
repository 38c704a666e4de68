//! The trace-list benchmark: 50 traces with their feedback and 10 eval executions each
//! with its eval, over a workspace of 100,000 traces, on SQLite and PostgreSQL, at
//! concurrency 1 and 32, through the HTTP router (in process, as a client would ask it)
//! beside the same result fetched by hand-written SQL (the baseline).
//!
//! ```sh
//! cargo bench --bench trace_list                       # both backends, defaults
//! BENCH_BACKENDS=sqlite BENCH_TRACES=20000 BENCH_SECONDS=5 cargo bench --bench trace_list
//! ```
//!
//! Settings (environment): `BENCH_BACKENDS` (`sqlite,postgres`), `BENCH_TRACES` (100000),
//! `BENCH_SECONDS` per measurement (10), `BENCH_CONCURRENCY` (`1,32`), `BENCH_DATABASE_URL`
//! for PostgreSQL (default `postgres://postgres@127.0.0.1:5432/test`; a fresh schema is
//! created and dropped).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use common::env_or;
use diesel::sql_types::Text;
use diesel::QueryableByName;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use http_body_util::BodyExt;
use iofold_graph::db::{Backend, Db, DbError, PoolOptions};
use iofold_graph::server::{router, AppState};
use serde_json::{json, Value};
use tower::ServiceExt;

const ADMIN: &str = "bench-admin-secret-0123456789";
const QUERY: &str = "query($ws: ID!) { traces(workspaceId: $ws, first: 50) { nodes { id timestamp inputPreview \
    feedback { rating } evalExecutions(first: 10) { nodes { predictedResult eval { name } } } } } }";

fn timestamp(n: i64) -> String {
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().to_utc();
    (base + chrono::Duration::seconds(n)).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

async fn exec(db: &Db, sql: &str) -> Result<(), DbError> {
    iofold_graph::with_conn!(db, |conn| conn.batch_execute(sql).await?);
    Ok(())
}

/// Loads the data set with multi-row inserts: a workspace, an agent, 10 evals, `traces`
/// traces each with a rating and 10 executions (one per eval).
async fn load(db: &Db, backend: Backend, traces: usize) -> Result<(), DbError> {
    let (t, f) = match backend {
        Backend::Sqlite => ("1", "0"),
        Backend::Postgres => ("true", "false"),
    };
    exec(
        db,
        "INSERT INTO workspaces (id, name) VALUES ('workspace_bench', 'Bench');
         INSERT INTO agents (id, workspace_id, name) VALUES ('agent_bench', 'workspace_bench', 'Bench agent');",
    )
    .await?;
    let evals: Vec<String> = (0..10)
        .map(|e| format!("('eval_bench_{e}', 'agent_bench', {}, 'eval_{e}', 'def f(t): return True')", e + 1))
        .collect();
    exec(db, &format!("INSERT INTO evals (id, agent_id, version, name, code) VALUES {}", evals.join(", "))).await?;
    let steps = r#"[{"input": "How do I reset my password?", "output": "Go to settings.", "error": null}]"#;
    for chunk in (0..traces).collect::<Vec<_>>().chunks(500) {
        let mut sql = String::from("BEGIN;");
        let rows: Vec<String> = chunk
            .iter()
            .map(|i| {
                let ts = timestamp(*i as i64);
                format!(
                    "('trace_bench_{i:08}', 'workspace_bench', 'lf-{i}', 'langfuse', '{ts}', '{steps}', 'How do I reset my password?', 'Go to settings.', 1, {f}, '{ts}')"
                )
            })
            .collect();
        sql += &format!(
            "INSERT INTO traces (id, workspace_id, trace_id, source, timestamp, steps, input_preview, output_preview, step_count, has_errors, imported_at) VALUES {};",
            rows.join(", ")
        );
        let ratings: Vec<String> = chunk
            .iter()
            .map(|i| {
                format!(
                    "('feedback_bench_{i:08}', 'trace_bench_{i:08}', 'agent_bench', '{}', 'workspace_bench')",
                    if i % 3 == 0 { "negative" } else { "positive" }
                )
            })
            .collect();
        sql += &format!(
            "INSERT INTO feedback (id, trace_id, agent_id, rating, workspace_id) VALUES {};",
            ratings.join(", ")
        );
        let executions: Vec<String> = chunk
            .iter()
            .flat_map(|i| {
                (0..10).map(move |e| {
                    format!(
                        "('eval_execution_bench_{i:08}_{e}', 'eval_bench_{e}', 'trace_bench_{i:08}', {}, '{}')",
                        if (i + e) % 4 == 0 { f } else { t },
                        timestamp(*i as i64 + e as i64)
                    )
                })
            })
            .collect();
        sql += &format!(
            "INSERT INTO eval_executions (id, eval_id, trace_id, predicted_result, executed_at) VALUES {};COMMIT;",
            executions.join(", ")
        );
        exec(db, &sql).await?;
    }
    exec(db, "ANALYZE").await?;
    Ok(())
}

/// The same result by hand-written SQL: the page, its ratings, its executions (10 per
/// trace, by window) and their evals: 4 statements.
async fn baseline(db: &Db) -> Result<usize, DbError> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = Text)]
        id: String,
    }
    #[derive(QueryableByName)]
    struct EvalRef {
        #[diesel(sql_type = Text)]
        eval_id: String,
    }
    let ids: Vec<Id> = iofold_graph::with_conn!(db, |conn| diesel::sql_query(
        "SELECT id FROM traces WHERE workspace_id = 'workspace_bench' ORDER BY timestamp DESC, id DESC LIMIT 51"
    )
    .load(conn)
    .await?);
    let list = ids.iter().take(50).map(|i| format!("'{}'", i.id)).collect::<Vec<_>>().join(", ");
    let ratings = format!("SELECT * FROM feedback WHERE trace_id IN ({list})");
    let executions = format!(
        "SELECT * FROM (SELECT e.*, ROW_NUMBER() OVER (PARTITION BY e.trace_id ORDER BY e.created_at DESC, e.id DESC) AS rn \
         FROM eval_executions e WHERE e.trace_id IN ({list})) AS p WHERE rn <= 11"
    );
    let (_, refs): (Vec<iofold_graph::models::feedback::Row>, Vec<EvalRef>) = iofold_graph::with_conn!(db, |conn| {
        let ratings = diesel::sql_query(&ratings).load(conn).await?;
        let refs = diesel::sql_query(&executions).load(conn).await?;
        (ratings, refs)
    });
    let mut eval_ids: Vec<&str> = refs.iter().map(|r| r.eval_id.as_str()).collect();
    eval_ids.sort();
    eval_ids.dedup();
    let evals = format!(
        "SELECT * FROM evals WHERE id IN ({})",
        eval_ids.iter().map(|i| format!("'{i}'")).collect::<Vec<_>>().join(", ")
    );
    let rows: Vec<iofold_graph::models::eval::Row> =
        iofold_graph::with_conn!(db, |conn| diesel::sql_query(&evals).load(conn).await?);
    Ok(refs.len() + rows.len())
}

struct Figures {
    p50: Duration,
    p99: Duration,
    per_second: f64,
    requests: usize,
}

async fn measure<F, Fut>(concurrency: usize, seconds: u64, work: F) -> Figures
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let work = Arc::new(work);
    // Warm up.
    for _ in 0..3 {
        work().await;
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let work = work.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    work().await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Figures { p50: at(0.50), p99: at(0.99), per_second: all.len() as f64 / elapsed.as_secs_f64(), requests: all.len() }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let backends = env_or("BENCH_BACKENDS", "sqlite,postgres");
    let traces: usize = env_or("BENCH_TRACES", "100000").parse().expect("BENCH_TRACES is a number");
    let seconds: u64 = env_or("BENCH_SECONDS", "10").parse().expect("BENCH_SECONDS is a number");
    let levels: Vec<usize> =
        env_or("BENCH_CONCURRENCY", "1,32").split(',').map(|c| c.trim().parse().expect("a concurrency")).collect();
    let pg_base = env_or("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test");
    println!("trace list: 50 traces, each with its feedback and 10 executions with their eval; {traces} traces in the workspace");
    println!(
        "machine: {} cores; {seconds} s per measurement; HTTP router in process\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!("| backend | concurrency | GraphQL p50 | GraphQL p99 | GraphQL req/s | raw SQL req/s | GraphQL / raw |");
    println!("|---|---|---|---|---|---|---|");
    for backend in backends.split(',').map(str::trim) {
        let bench_db = common::BenchDb::create(backend, "bench", &pg_base).await;
        let url = &bench_db.url;
        let config = bench_db.config(Some(ADMIN), 32);
        let db = Db::connect(url, &PoolOptions { max_size: 32 }).expect("pool");
        let loading = Instant::now();
        load(&db, url.backend(), traces).await.expect("load the data set");
        eprintln!(
            "{backend}: loaded {traces} traces, {} executions in {:.1} s",
            traces * 10,
            loading.elapsed().as_secs_f64()
        );
        let state = AppState::new(db.clone(), config);
        let app = router(state);
        let body = json!({"query": QUERY, "variables": {"ws": "workspace_bench"}}).to_string();
        // Check the answer once.
        let check = graphql(&app, &body).await;
        assert_eq!(check["data"]["traces"]["nodes"].as_array().map(Vec::len), Some(50), "{check}");
        assert_eq!(check["data"]["traces"]["nodes"][0]["evalExecutions"]["nodes"].as_array().map(Vec::len), Some(10));
        for &concurrency in &levels {
            let (app, body) = (app.clone(), body.clone());
            let graph = measure(concurrency, seconds, move || {
                let (app, body) = (app.clone(), body.clone());
                async move {
                    graphql(&app, &body).await;
                }
            })
            .await;
            let raw_db = db.clone();
            let raw = measure(concurrency, seconds, move || {
                let db = raw_db.clone();
                async move {
                    baseline(&db).await.expect("baseline");
                }
            })
            .await;
            println!(
                "| {backend} | {concurrency} | {} | {} | {:.0} | {:.0} | {:.2} |",
                ms(graph.p50),
                ms(graph.p99),
                graph.per_second,
                raw.per_second,
                raw.per_second / graph.per_second,
            );
            eprintln!("  ({} GraphQL requests, {} baseline runs)", graph.requests, raw.requests);
        }
        db.close();
        bench_db.remove().await;
    }
    println!("\nGraphQL / raw: how many times longer the GraphQL request takes than the 4 hand-written statements (req/s ratio).");
}

async fn graphql(app: &axum::Router, body: &str) -> Value {
    let request = Request::post("/graphql")
        .header("content-type", "application/json")
        .header("x-iofold-admin-secret", ADMIN)
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}
