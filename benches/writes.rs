//! The write benchmark: `updateFeedback` by id (rating and note of a different row each time,
//! 64 rows in rotation) in a closed loop against the release server process, at 1, 4, 32 and
//! 64 clients, after 32 clients read a nested trace page for a few seconds (the sequence that
//! froze the server before writes became cancellation-safe). Beside it, in the same run, the
//! **floor**: the same one-row `UPDATE … RETURNING` by a bare diesel-async client with a pool
//! of the same size. On PostgreSQL it then measures `rateTrace` on a workspace while another
//! client imports 5,000 traces into the same workspace in calls of 1,000 (writers of one
//! workspace no longer wait for each other). It also prints the SQL statements one
//! `updateFeedback` costs, from the server's own counter.
//!
//! ```sh
//! cargo bench --bench writes
//! WRITES_BACKENDS=postgres WRITES_SECONDS=5 cargo bench --bench writes
//! ```
//!
//! Settings (environment): `WRITES_BACKENDS` (`sqlite,postgres`), `WRITES_SECONDS` per cell
//! (10), `WRITES_CLIENTS` (`1,4,32,64`), `WRITES_DATABASE_URL` for PostgreSQL (default
//! `postgres://postgres@127.0.0.1:5432/test`; a fresh schema is created and dropped). The
//! server runs with its default settings (`DB_POOL_SIZE` 10) and the admin secret.

mod common;

#[path = "../tests/it/support/http.rs"]
#[allow(dead_code)]
mod http;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use diesel::sql_types::Text;
use iofold_graph::db::sql_types::Timestamp;
use iofold_graph::db::{Backend, Db, PoolOptions};
use serde_json::{json, Value};

use common::{env_or, ms, percentile, Cell, Outcome};
use http::{Client, Server};

const SECRET: &str = "bench-admin-secret-0123456789";
const POOL: usize = iofold_graph::config::defaults::DB_POOL_SIZE as usize;

const UPDATE: &str = "mutation($id: ID!, $r: FeedbackRating!, $n: String!) { updateFeedback(id: $id, \
    patch: {rating: $r, ratingDetail: $n}) { feedback { id rating ratingDetail updatedAt } } }";
const RATE: &str =
    "mutation($t: ID!, $r: FeedbackRating!) { rateTrace(traceId: $t, rating: $r) { feedback { id rating } } }";
const IMPORT: &str = "mutation($ws: ID!, $t: [TraceImportInput!]!) { importTraces(workspaceId: $ws, source: LANGFUSE, \
    traces: $t) { imported } }";
const PAGE: &str = "query($ws: ID!) { traces(workspaceId: $ws, first: 50) { nodes { id timestamp inputPreview \
    feedback { rating } evalExecutions(first: 10) { nodes { predictedResult score eval { name } } } } } }";
const RATINGS: [&str; 3] = ["POSITIVE", "NEGATIVE", "NEUTRAL"];

async fn post(http: &mut Client, body: &Value) -> Result<Value, String> {
    let reply = http
        .post_json("/graphql", &[("x-iofold-admin-secret", SECRET)], &body.to_string())
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let json = reply.json();
    if reply.status == 200 && json.get("errors").is_none() && json["data"].is_object() {
        Ok(json)
    } else {
        Err(format!("{} {}", reply.status, reply.body.chars().take(300).collect::<String>()))
    }
}

/// `clients` clients each running `request(client, n)` in a closed loop for `seconds`.
async fn closed_loop<F>(addr: std::net::SocketAddr, clients: usize, seconds: u64, request: F) -> Cell
where
    F: Fn(usize, u64) -> Value + Send + Sync + 'static,
{
    let request = Arc::new(request);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<Outcome> = (0..clients)
        .map(|client| {
            let (stop, request) = (stop.clone(), request.clone());
            tokio::spawn(async move {
                let mut http = Client::new(addr);
                let (mut latencies, mut errors) = (Vec::new(), Vec::new());
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let body = request(client, n);
                    let sent = Instant::now();
                    match post(&mut http, &body).await {
                        Ok(_) => latencies.push(sent.elapsed()),
                        Err(e) => errors.push(e),
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    Cell::after(tasks, &stop, started, seconds).await
}

/// The floor: the same one-row update, `UPDATE feedback SET rating, rating_detail,
/// updated_at WHERE id RETURNING *`, by `clients` tasks over a bare pool of the server's size.
async fn floor(db: &Db, feedback: Arc<Vec<String>>, clients: usize, seconds: u64) -> Cell {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    #[allow(dead_code)]
    struct Row {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = Text)]
        rating: String,
    }
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<Outcome> = (0..clients)
        .map(|_| {
            let (db, stop, next, feedback) = (db.clone(), stop.clone(), next.clone(), feedback.clone());
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), Vec::new());
                while !AtomicBool::load(&stop, Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let id = feedback[n % feedback.len()].clone();
                    let rating = RATINGS[n % 3].to_lowercase();
                    let note = format!("floor {n}");
                    let sent = Instant::now();
                    let sql = match db.backend() {
                        Backend::Postgres => "UPDATE feedback SET rating = $1, rating_detail = $2, updated_at = $3 WHERE id = $4 RETURNING id, rating",
                        Backend::Sqlite => "UPDATE feedback SET rating = ?, rating_detail = ?, updated_at = ? WHERE id = ? RETURNING id, rating",
                    };
                    let result: Result<Vec<Row>, iofold_graph::db::DbError> = async {
                        Ok(iofold_graph::with_conn!(&db, |conn| {
                            diesel::sql_query(sql)
                            .bind::<Text, _>(&rating)
                            .bind::<Text, _>(&note)
                            .bind::<iofold_graph::db::sql_types::UtcTimestamp, _>(Timestamp::now())
                            .bind::<Text, _>(&id)
                            .load::<Row>(conn)
                            .await?
                        }))
                    }
                    .await;
                    match result {
                        Ok(rows) if rows.len() == 1 => latencies.push(sent.elapsed()),
                        Ok(rows) => errors.push(format!("{} rows", rows.len())),
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    Cell::after(tasks, &stop, started, seconds).await
}

fn traces_json(prefix: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"traceId": format!("{prefix}-{i}"), "timestamp": "2026-01-01T00:00:00Z",
                "steps": [{"step_id": "s1", "timestamp": "2026-01-01T00:00:00Z", "input": "what is the weather", "output": "sunny"}]})
        })
        .collect()
}

/// The server's statement counter, after a scrape that warms `/metrics`' cache of database
/// figures (see the read benchmark).
async fn statements(http: &mut Client) -> u64 {
    let _ = http.get("/metrics", &[]).await;
    common::statements_total(&http.get("/metrics", &[]).await.map(|r| r.body).unwrap_or_default())
}

async fn run(backend: &str, seconds: u64, client_counts: &[usize], pg_base: &str) -> bool {
    let bench_db = common::BenchDb::create(backend, "writes", pg_base).await;
    let url = bench_db.url.clone();
    let config = bench_db.config(None, 4);
    let setup_db = Db::connect(&url, &PoolOptions { max_size: 4 }).expect("pool");
    iofold_graph::seed::run(&setup_db, &config).await.expect("seed");
    setup_db.close();

    let binary = Path::new(env!("CARGO_BIN_EXE_iofold-graph"));
    let server = Server::start(binary, url.as_str(), &[("IOFOLD_ADMIN_SECRET", SECRET), ("RUST_LOG", "error")]).await;
    let addr = server.addr;
    let workspace = iofold_graph::seed::ids::workspace();
    let mut http = Client::new(addr);

    // 2,000 traces, 64 of them rated (the rows the writers update).
    for batch in 0..2 {
        let body =
            json!({"query": IMPORT, "variables": {"ws": workspace, "t": traces_json(&format!("base{batch}"), 1_000)}});
        post(&mut http, &body).await.expect("import");
    }
    let list = json!({"query": "query($ws: ID!) { traces(workspaceId: $ws, first: 64) { nodes { id } } }",
        "variables": {"ws": workspace}});
    let traces: Vec<String> = post(&mut http, &list).await.unwrap()["data"]["traces"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    let mut feedback = Vec::new();
    for trace in &traces {
        let rated = post(&mut http, &json!({"query": RATE, "variables": {"t": trace, "r": "POSITIVE"}})).await.unwrap();
        feedback.push(rated["data"]["rateTrace"]["feedback"]["id"].as_str().unwrap().to_owned());
    }
    let feedback = Arc::new(feedback);

    // Statements per one-row update, from the server's counter (nothing else runs).
    async fn count_one(http: &mut Client, feedback: &str, patch: Value) -> u64 {
        let body = json!({"query": "mutation($id: ID!, $p: FeedbackPatch!) { updateFeedback(id: $id, patch: $p) { feedback { id } } }",
            "variables": {"id": feedback, "p": patch}});
        let before = statements(http).await;
        post(http, &body).await.expect("updateFeedback");
        statements(http).await - before
    }
    let note_only = count_one(&mut http, &feedback[0], json!({"ratingDetail": "only the note"})).await;
    let rating =
        count_one(&mut http, &feedback[0], json!({"rating": "NEGATIVE", "ratingDetail": "and the rating"})).await;

    println!("\n## {backend}: updateFeedback by id, server with default settings (pool {POOL}), {seconds} s per cell");
    println!(
        "\nSQL statements per `updateFeedback` (server counter): {note_only} changing the note only, {rating} changing \
         the rating (which recounts the contradictions of the evals that ran on the trace)"
    );

    // The read load first (it opens every pooled connection).
    let ws = workspace.clone();
    let reads =
        closed_loop(addr, 32, seconds.min(5), move |_, _| json!({"query": PAGE, "variables": {"ws": ws}})).await;
    println!("\nread load first: 32 clients, trace page: {:.0} req/s, errors {}", reads.rps, reads.errors);

    let floor_db = Db::connect(&url, &PoolOptions { max_size: POOL }).expect("pool");
    println!("\n| clients | server req/s | p50 ms | p99 ms | errors | floor req/s | floor p50 ms | server ÷ floor |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut passed = reads.errors == 0;
    let mut by_clients = Vec::new();
    for &clients in client_counts {
        let rows = feedback.clone();
        let cell = closed_loop(addr, clients, seconds, move |client, n| {
            let i = (client * 7919 + n as usize) % rows.len();
            json!({"query": UPDATE, "variables": {"id": rows[i], "r": RATINGS[(n as usize) % 3], "n": format!("c{client} n{n}")}})
        })
        .await;
        let bare = floor(&floor_db, feedback.clone(), clients, seconds).await;
        println!(
            "| {clients} | {:.0} | {} | {} | {} | {:.0} | {} | {:.2} |",
            cell.rps,
            ms(cell.p50),
            ms(cell.p99),
            cell.errors,
            bare.rps,
            ms(bare.p50),
            cell.rps / bare.rps.max(1.0)
        );
        if let Some(error) = &cell.first_error {
            println!("  first error: {error}");
        }
        passed &= cell.errors == 0 && bare.errors == 0;
        by_clients.push((clients, cell.rps));
    }
    floor_db.close();
    let at = |n: usize| by_clients.iter().find(|(c, _)| *c == n).map(|(_, r)| *r);
    if let (Some(four), Some(many)) = (at(4), at(64)) {
        println!("\n64 clients ÷ 4 clients: {:.2}", many / four.max(1.0));
    }

    if backend == "postgres" {
        // rateTrace on workspace A while one client imports 5,000 traces into A (calls of 1,000).
        let ws = workspace.clone();
        let importing = Arc::new(AtomicBool::new(true));
        let importer = {
            let importing = importing.clone();
            tokio::spawn(async move {
                let mut http = Client::new(addr);
                let started = Instant::now();
                for call in 0..5 {
                    let body = json!({"query": IMPORT, "variables": {"ws": ws, "t": traces_json(&format!("bulk{call}"), 1_000)}});
                    post(&mut http, &body).await.expect("bulk import");
                }
                importing.store(false, Ordering::Relaxed);
                started.elapsed()
            })
        };
        let traces = Arc::new(traces);
        let raters: Vec<_> = (0..4)
            .map(|client| {
                let (importing, traces) = (importing.clone(), traces.clone());
                tokio::spawn(async move {
                    let mut http = Client::new(addr);
                    let (mut latencies, mut errors) = (Vec::new(), 0);
                    let mut n = client;
                    while importing.load(Ordering::Relaxed) {
                        n += 1;
                        let body =
                            json!({"query": RATE, "variables": {"t": traces[n % traces.len()], "r": RATINGS[n % 3]}});
                        let sent = Instant::now();
                        match post(&mut http, &body).await {
                            Ok(_) => latencies.push(sent.elapsed()),
                            Err(_) => errors += 1,
                        }
                    }
                    (latencies, errors)
                })
            })
            .collect();
        let took = importer.await.unwrap();
        let (mut latencies, mut errors) = (Vec::new(), 0);
        for rater in raters {
            let (l, e) = rater.await.unwrap();
            latencies.extend(l);
            errors += e;
        }
        latencies.sort();
        println!(
            "\nrateTrace on workspace A (4 clients) while 5,000 traces are imported into A in 5 calls of 1,000 \
             ({:.1} s): {} ratings, p50 {} ms, p99 {} ms, max {} ms, errors {errors}",
            took.as_secs_f64(),
            latencies.len(),
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            ms(latencies.last().copied().unwrap_or_default())
        );
        passed &= errors == 0;
    }

    server.kill().await;
    bench_db.remove().await;
    passed
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let backends = env_or("WRITES_BACKENDS", "sqlite,postgres");
    let seconds: u64 = env_or("WRITES_SECONDS", "10").parse().expect("WRITES_SECONDS is a number");
    let clients: Vec<usize> = env_or("WRITES_CLIENTS", "1,4,32,64")
        .split(',')
        .map(|c| c.trim().parse().expect("WRITES_CLIENTS: numbers"))
        .collect();
    let pg_base = env_or("WRITES_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test");
    println!(
        "write benchmark: the release server in its own process, closed-loop clients over TCP (keep-alive); \
         machine: {} cores shared by the clients, the server and the database",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let mut passed = true;
    for backend in backends.split(',').map(str::trim) {
        passed &= run(backend, seconds, &clients, &pg_base).await;
    }
    if !passed {
        eprintln!("write benchmark: errors (see above)");
        std::process::exit(1);
    }
}
