//! The import benchmark: 100,000 traces through `importTraces` (1,000 per call, one client,
//! through the HTTP router in process, as a client would send them), then the same 100,000
//! again (every row updated: the idempotent upsert), on SQLite and PostgreSQL; beside the
//! same rows written by hand-written multi-row `INSERT`s (the baseline).
//!
//! ```sh
//! cargo bench --bench import                              # both backends, 100,000 traces
//! IMPORT_BACKENDS=sqlite IMPORT_TRACES=20000 cargo bench --bench import
//! ```
//!
//! Settings (environment): `IMPORT_BACKENDS` (`sqlite,postgres`), `IMPORT_TRACES` (100000,
//! a multiple of 1,000), `IMPORT_DATABASE_URL` for PostgreSQL (default
//! `postgres://postgres@127.0.0.1:5432/test`; fresh schemas are created and dropped).

mod common;

use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use common::env_or;
use diesel_async::SimpleAsyncConnection;
use http_body_util::BodyExt;
use iofold_graph::db::{Db, DbError, PoolOptions};
use iofold_graph::server::{router, AppState};
use serde_json::{json, Value};
use tower::ServiceExt;

const ADMIN: &str = "bench-admin-secret-0123456789";
const BATCH: usize = 1_000;
const IMPORT: &str = "mutation($ws: ID!, $t: [TraceImportInput!]!) { importTraces(workspaceId: $ws, source: LANGFUSE, \
    traces: $t) { imported updated } }";

fn timestamp(n: usize) -> String {
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().to_utc();
    (base + chrono::Duration::seconds(n as i64)).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A realistic trace: three steps (a question, a tool call, an answer), one in ten failing.
fn trace(i: usize) -> Value {
    json!({
        "traceId": format!("lf-{i:08}"),
        "timestamp": timestamp(i),
        "steps": [
            {"input": format!("How do I reset my password? ({i})"), "output": null},
            {"tool": "search_help_center", "input": {"query": "reset password"}, "output": {"article": "reset-password", "steps": 3},
             "error": if i.is_multiple_of(10) { json!("timeout") } else { json!(null) }},
            {"output": "Go to Settings, then Security, then Reset password."}
        ],
        "metadata": {"user": format!("u{}", i % 977), "latency_ms": i % 1500},
    })
}

async fn exec(db: &Db, sql: &str) -> Result<(), DbError> {
    iofold_graph::with_conn!(db, |conn| conn.batch_execute(sql).await?);
    Ok(())
}

/// The baseline: the same rows (previews and counts computed here), 1,000 per multi-row
/// `INSERT`, one transaction each.
async fn raw_insert(db: &Db, traces: usize) -> Result<(), DbError> {
    for start in (0..traces).step_by(BATCH) {
        let rows: Vec<String> = (start..start + BATCH)
            .map(|i| {
                let t = trace(i);
                let steps = t["steps"].to_string().replace('\'', "''");
                let metadata = t["metadata"].to_string();
                format!(
                    "('trace_raw_{i:08}', 'workspace_raw', 'lf-{i:08}', 'langfuse', '{}', '{steps}', '{metadata}', \
                     'How do I reset my password? ({i})', 'Go to Settings, then Security, then Reset password.', 3, {}, '{}')",
                    timestamp(i),
                    if i.is_multiple_of(10) { "TRUE" } else { "FALSE" },
                    timestamp(i)
                )
            })
            .collect();
        let sql = format!(
            "BEGIN; INSERT INTO traces (id, workspace_id, trace_id, source, timestamp, steps, metadata, input_preview, \
             output_preview, step_count, has_errors, imported_at) VALUES {}; COMMIT;",
            rows.join(", ")
        );
        exec(db, &sql).await?;
    }
    Ok(())
}

async fn import(app: &axum::Router, traces: usize) -> (u64, u64) {
    let (mut imported, mut updated) = (0, 0);
    for start in (0..traces).step_by(BATCH) {
        let batch: Vec<Value> = (start..start + BATCH).map(trace).collect();
        let body = json!({"query": IMPORT, "variables": {"ws": "workspace_bench", "t": batch}}).to_string();
        let request = Request::post("/graphql")
            .header("content-type", "application/json")
            .header("x-iofold-admin-secret", ADMIN)
            .body(Body::from(body))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let reply: Value = serde_json::from_slice(&bytes).unwrap();
        let result = &reply["data"]["importTraces"];
        assert!(result.is_object(), "the import failed: {reply}");
        imported += result["imported"].as_u64().unwrap();
        updated += result["updated"].as_u64().unwrap();
    }
    (imported, updated)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let backends = env_or("IMPORT_BACKENDS", "sqlite,postgres");
    let traces: usize = env_or("IMPORT_TRACES", "100000").parse().expect("IMPORT_TRACES is a number");
    assert!(traces.is_multiple_of(BATCH) && traces > 0, "IMPORT_TRACES is a positive multiple of {BATCH}");
    let pg_base = env_or("IMPORT_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test");
    println!(
        "importTraces: {traces} traces of 3 steps, {BATCH} per call, one client, HTTP router in process; machine: {} cores\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!(
        "| backend | first import rows/s | re-import (all updated) rows/s | raw INSERT rows/s | raw / first import |"
    );
    println!("|---|---|---|---|---|");
    for backend in backends.split(',').map(str::trim) {
        let bench_db = common::BenchDb::create(backend, "import", &pg_base).await;
        let url = &bench_db.url;
        let config = bench_db.config(Some(ADMIN), 4);
        let db = Db::connect(url, &PoolOptions { max_size: 4 }).expect("pool");
        exec(
            &db,
            "INSERT INTO workspaces (id, name) VALUES ('workspace_bench', 'Bench'), ('workspace_raw', 'Raw baseline')",
        )
        .await
        .unwrap();
        let app = router(AppState::new(db.clone(), config));

        let started = Instant::now();
        let (imported, updated) = import(&app, traces).await;
        let first = started.elapsed();
        assert_eq!((imported, updated), (traces as u64, 0));
        let started = Instant::now();
        let (imported, updated) = import(&app, traces).await;
        let again = started.elapsed();
        assert_eq!((imported, updated), (0, traces as u64), "the second import updates every row");
        let started = Instant::now();
        raw_insert(&db, traces).await.expect("the baseline inserts");
        let raw = started.elapsed();
        let rate = |d: std::time::Duration| traces as f64 / d.as_secs_f64();
        println!(
            "| {backend} | {:.0} | {:.0} | {:.0} | {:.2} |",
            rate(first),
            rate(again),
            rate(raw),
            first.as_secs_f64() / raw.as_secs_f64()
        );
        eprintln!(
            "  ({backend}: first import {:.1} s, re-import {:.1} s, raw {:.1} s)",
            first.as_secs_f64(),
            again.as_secs_f64(),
            raw.as_secs_f64()
        );
        db.close();
        bench_db.remove().await;
    }
    println!(
        "\nraw / first import: how many times longer the import takes than plain multi-row INSERTs of the same rows."
    );
}
