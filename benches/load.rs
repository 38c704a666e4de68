//! The bounded load test: the real server binary (a separate process, over TCP) under 64
//! concurrent clients mixing reads and writes for 60 s, on SQLite and on PostgreSQL. It
//! counts every answer, fails on any error but the expected ones (the deliberately bad
//! requests of the mix), and samples the server's resident memory every second to show it
//! stays flat.
//!
//! ```sh
//! cargo bench --bench load                                   # both backends, 64 clients, 60 s
//! LOAD_BACKENDS=sqlite LOAD_SECONDS=20 cargo bench --bench load
//! ```
//!
//! Settings (environment): `LOAD_BACKENDS` (`sqlite,postgres`), `LOAD_CLIENTS` (64),
//! `LOAD_SECONDS` (60), `LOAD_DATABASE_URL` for PostgreSQL (default
//! `postgres://postgres@127.0.0.1:5432/test`; a fresh schema is created and dropped),
//! `LOAD_POOL_SIZE` (the server's `DB_POOL_SIZE`, 16). Exits non-zero on an unexpected error
//! or when memory grows by more than 25 % over the second half of the run.

mod common;

#[path = "../tests/it/support/http.rs"]
#[allow(dead_code)]
mod http;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iofold_graph::db::{Db, PoolOptions};
use serde_json::{json, Value};

use common::{env_or, ms, percentile};
use http::{Client, Server};

/// The operations of the mix: name, weight (of 100), and whether its error code is expected.
const MIX: &[(&str, u32, Option<&str>)] = &[
    ("read: trace list, nested", 30, None),
    ("read: agent with evals", 15, None),
    ("read: me", 10, None),
    ("read: node", 10, None),
    ("write: rateTrace", 13, None),
    ("write: importTraces x10", 10, None),
    ("write: recordEvalExecutions x5", 7, None),
    ("expected: update a missing row", 3, Some("NOT_FOUND")),
    ("expected: steps not an array", 2, Some("BAD_USER_INPUT")),
];

const TRACES: &str = "query($ws: ID!) { traces(workspaceId: $ws, first: 20) { nodes { id timestamp inputPreview \
    feedback { rating } evalExecutions(first: 5) { nodes { predictedResult eval { name } } } } } }";
const AGENT: &str = "query($id: ID!) { agent(id: $id) { id name activeEval { id } evals(first: 10) { nodes { id name \
    executionCount contradictionCount } } feedbackCounts { positive negative total } } }";
const ME: &str = "{ me { id email workspaceMembers(first: 5) { nodes { role workspace { name } } } } }";
const NODE: &str = "query($id: ID!) { node(id: $id) { id ... on Trace { stepCount hasErrors } } }";
const RATE: &str =
    "mutation($t: ID!, $r: FeedbackRating!) { rateTrace(traceId: $t, rating: $r) { feedback { id rating } } }";
const IMPORT: &str = "mutation($ws: ID!, $t: [TraceImportInput!]!) { importTraces(workspaceId: $ws, source: LANGFUSE, \
    traces: $t) { imported } }";
const RECORD: &str =
    "mutation($e: ID!, $x: [EvalExecutionInput!]!) { recordEvalExecutions(evalId: $e, executions: $x) \
    { eval { executionCount } } }";
const MISSING: &str =
    "mutation { updateAgent(id: \"agent_00000000000000000000000000\", patch: {name: \"x\"}) { agent { id } } }";

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % n
    }
}

fn pick(rng: &mut Rng) -> usize {
    let mut roll = rng.below(100) as u32;
    for (i, (_, weight, _)) in MIX.iter().enumerate() {
        if roll < *weight {
            return i;
        }
        roll -= weight;
    }
    0
}

fn timestamp(n: u64) -> String {
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().to_utc();
    (base + chrono::Duration::milliseconds(n as i64)).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The request body of operation `kind` for client `client`'s `n`th request.
fn body(kind: usize, client: usize, n: u64, rng: &mut Rng, ids: &Ids) -> String {
    let trace = &ids.traces[rng.below(ids.traces.len() as u64) as usize];
    let body = match kind {
        0 => json!({"query": TRACES, "variables": {"ws": ids.workspace}}),
        1 => json!({"query": AGENT, "variables": {"id": ids.agent}}),
        2 => json!({"query": ME}),
        3 => json!({"query": NODE, "variables": {"id": trace}}),
        4 => {
            let rating = ["positive", "negative", "neutral"][rng.below(3) as usize].to_uppercase();
            json!({"query": RATE, "variables": {"t": trace, "r": rating}})
        }
        5 | 8 => {
            let traces: Vec<Value> = (0..10)
                .map(|i| {
                    let steps = if kind == 8 { json!("not an array") } else { json!([{"input": "q", "output": "a"}]) };
                    json!({"traceId": format!("load-{client}-{n}-{i}"), "timestamp": timestamp(n * 10 + i), "steps": steps})
                })
                .collect();
            json!({"query": IMPORT, "variables": {"ws": ids.workspace, "t": traces}})
        }
        6 => {
            let executions: Vec<Value> = (0..5)
                .map(|_| {
                    let trace = &ids.traces[rng.below(ids.traces.len() as u64) as usize];
                    json!({"traceId": trace, "predictedResult": rng.below(2) == 0})
                })
                .collect();
            json!({"query": RECORD, "variables": {"e": ids.eval, "x": executions}})
        }
        _ => json!({"query": MISSING}),
    };
    body.to_string()
}

struct Ids {
    workspace: String,
    agent: String,
    eval: String,
    traces: Vec<String>,
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Vec<Duration>>,
    expected_errors: u64,
    unexpected: Vec<String>,
}

/// The resident memory of a process, in KiB (Linux `/proc`).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// Runs the load against one backend; returns whether it passed.
async fn run(backend: &str, clients: usize, seconds: u64, pool_size: &str, pg_base: &str) -> bool {
    let bench_db = common::BenchDb::create(backend, "load", pg_base).await;
    let url = &bench_db.url;
    let config = bench_db.config(None, 4);
    let db = Db::connect(url, &PoolOptions { max_size: 4 }).expect("pool");
    let token = iofold_graph::seed::run(&db, &config).await.expect("seed").new_token.expect("the demo token");
    db.close();

    let binary = Path::new(env!("CARGO_BIN_EXE_iofold-graph"));
    let server = Server::start(binary, url.as_str(), &[("DB_POOL_SIZE", pool_size), ("RUST_LOG", "error")]).await;
    let pid = server.pid();
    let authorization = format!("Bearer {token}");
    let mut setup = Client::new(server.addr);
    let list = json!({"query": "query($ws: ID!) { traces(workspaceId: $ws, first: 100) { nodes { id } } }",
        "variables": {"ws": iofold_graph::seed::ids::workspace()}});
    let reply = setup.post_json("/graphql", &[("authorization", &authorization)], &list.to_string()).await.unwrap();
    let traces: Vec<String> = reply.json()["data"]["traces"]["nodes"]
        .as_array()
        .expect("the demo traces")
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    let ids = Arc::new(Ids {
        workspace: iofold_graph::seed::ids::workspace(),
        agent: iofold_graph::seed::ids::agent(),
        eval: iofold_graph::seed::ids::eval(),
        traces,
    });

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (stop, ids, authorization) = (stop.clone(), ids.clone(), authorization.clone());
            let addr = server.addr;
            tokio::spawn(async move {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((client as u64 + 1) * 0x1234_5678_9ABC_DEF1));
                let mut http = Client::new(addr);
                let mut tally = Tally { latencies: vec![Vec::new(); MIX.len()], ..Tally::default() };
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let kind = pick(&mut rng);
                    let body = body(kind, client, n, &mut rng, &ids);
                    let sent = Instant::now();
                    let reply = http.post_json("/graphql", &[("authorization", &authorization)], &body).await;
                    let elapsed = sent.elapsed();
                    let reply = match reply {
                        Ok(reply) => reply,
                        Err(error) => {
                            tally.unexpected.push(format!("{}: transport: {error}", MIX[kind].0));
                            continue;
                        }
                    };
                    let json = reply.json();
                    let code = json["errors"][0]["extensions"]["code"].as_str();
                    match (MIX[kind].2, code) {
                        (None, None) if reply.status == 200 && json["data"].is_object() => {
                            tally.latencies[kind].push(elapsed);
                        }
                        (Some(expected), Some(code)) if expected == code => {
                            tally.expected_errors += 1;
                            tally.latencies[kind].push(elapsed);
                        }
                        _ => tally.unexpected.push(format!("{}: {} {}", MIX[kind].0, reply.status, reply.body)),
                    }
                }
                tally
            })
        })
        .collect();

    // Memory, once a second.
    let mut samples = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(kib) = rss_kib(pid) {
            samples.push((started.elapsed().as_secs(), kib));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally { latencies: vec![Vec::new(); MIX.len()], ..Tally::default() };
    for task in tasks {
        let tally = task.await.unwrap();
        for (all, mine) in total.latencies.iter_mut().zip(tally.latencies) {
            all.extend(mine);
        }
        total.expected_errors += tally.expected_errors;
        total.unexpected.extend(tally.unexpected);
    }
    let elapsed = started.elapsed();
    let metrics = setup.get("/metrics", &[]).await.map(|r| r.body).unwrap_or_default();
    server.kill().await;

    // Report.
    let requests: usize = total.latencies.iter().map(Vec::len).sum();
    println!("\n## {backend}: {clients} clients, {} s, server pool {pool_size}", elapsed.as_secs());
    println!("\n| operation | requests | req/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    for (i, (name, _, _)) in MIX.iter().enumerate() {
        let mut sorted = total.latencies[i].clone();
        sorted.sort();
        println!(
            "| {name} | {} | {:.0} | {} | {} |",
            sorted.len(),
            sorted.len() as f64 / elapsed.as_secs_f64(),
            ms(percentile(&sorted, 0.5)),
            ms(percentile(&sorted, 0.99))
        );
    }
    let mut all: Vec<Duration> = total.latencies.iter().flatten().copied().collect();
    all.sort();
    println!(
        "| **all** | {requests} | {:.0} | {} | {} |",
        requests as f64 / elapsed.as_secs_f64(),
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99))
    );
    println!("\nexpected errors: {}; unexpected errors: {}", total.expected_errors, total.unexpected.len());
    for error in total.unexpected.iter().take(5) {
        println!("  unexpected: {}", error.chars().take(400).collect::<String>());
    }
    let locked = metrics.lines().filter(|l| l.contains("database is locked")).count();
    let mut by_second = BTreeMap::new();
    for (second, kib) in &samples {
        by_second.insert(*second, *kib);
    }
    let at = |fraction: f64| {
        let target = (seconds as f64 * fraction) as u64;
        by_second.range(target..).next().map(|(_, kib)| *kib).unwrap_or(0)
    };
    let (first, half, last) =
        (samples.first().map(|s| s.1).unwrap_or(0), at(0.5), samples.last().map(|s| s.1).unwrap_or(0));
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
    println!(
        "server memory (RSS): {:.1} MiB after 1 s, {:.1} MiB at half time, {:.1} MiB at the end, peak {:.1} MiB",
        first as f64 / 1024.0,
        half as f64 / 1024.0,
        last as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    let growth = if half > 0 { (last as f64 - half as f64) / half as f64 } else { 0.0 };
    println!("growth over the second half: {:+.1} %", growth * 100.0);
    if locked > 0 {
        println!("\"database is locked\" in the metrics: {locked} lines");
    }

    bench_db.remove().await;
    total.unexpected.is_empty() && growth <= 0.25 && requests > 0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let backends = env_or("LOAD_BACKENDS", "sqlite,postgres");
    let clients: usize = env_or("LOAD_CLIENTS", "64").parse().expect("LOAD_CLIENTS is a number");
    let seconds: u64 = env_or("LOAD_SECONDS", "60").parse().expect("LOAD_SECONDS is a number");
    let pool_size = env_or("LOAD_POOL_SIZE", "16");
    let pg_base = env_or("LOAD_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test");
    println!(
        "load test: the server binary in its own process, {clients} clients over TCP (keep-alive), {seconds} s per backend; \
         machine: {} cores",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!("mix (weight of 100): {}", MIX.iter().map(|(n, w, _)| format!("{n} {w}")).collect::<Vec<_>>().join(", "));
    let mut passed = true;
    for backend in backends.split(',').map(str::trim) {
        passed &= run(backend, clients, seconds, &pool_size, &pg_base).await;
    }
    if !passed {
        eprintln!("load test FAILED: unexpected errors or growing memory (see above)");
        std::process::exit(1);
    }
    println!("\nload test passed: no unexpected error, memory flat");
}
