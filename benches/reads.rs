//! The read benchmark: three nested reads against the release server process, in a closed
//! loop at 1, 8 and 32 clients over keep-alive HTTP/1.1, on a data set of 10 workspaces,
//! 50 agents, 200 evals, 100,000 traces (6,000 to 15,000 per workspace, 3 to 8 steps and
//! 0.8 to 3 KB of steps each), ratings on 30 % of them and 300,000 eval executions:
//!
//! * **trace page**: the 50 newest traces of the largest workspace, each with its rating and
//!   its 10 newest eval executions with their eval's name;
//! * **trace detail**: one trace by id with its steps, metadata, rating and executions (64
//!   traces with 6 executions each, in rotation);
//! * **agent dashboard**: the 5 newest agents of a workspace (the workspaces in rotation)
//!   with their 10 newest evals and their number of ratings.
//!
//! Beside each cell, in the same run, the **floor**: the same result fetched by a bare
//! diesel-async client over a pool of the server's default size with hand-written, prepared
//! SQL (4, 4 and 3 statements; see [`floor`]), the nested JSON assembled by hand with
//! serde_json and serialized, as the server must. It also prints the SQL statements one
//! request of each read costs, from the server's own counter, and checks once that the
//! floor's JSON is the server's.
//!
//! ```sh
//! cargo bench --bench reads
//! READS_BACKENDS=postgres READS_SECONDS=5 cargo bench --bench reads
//! READS_TRACES=5000 READS_SECONDS=2 READS_WARMUP=1 READS_AUTH=token cargo bench --bench reads
//! ```
//!
//! Settings (environment): `READS_BACKENDS` (`sqlite,postgres`), `READS_TRACES` (100000;
//! ratings and executions scale with it), `READS_CLIENTS` (`1,8,32`), `READS_SECONDS` measured
//! per cell (10) after `READS_WARMUP` seconds (3), `READS_AUTH` (`admin`: the admin secret
//! header; `token`: an API token of a user who is a viewer of every workspace),
//! `READS_DATABASE_URL` for PostgreSQL (default `postgres://postgres@127.0.0.1:5432/test`; a
//! fresh schema is created and dropped). The server runs with its default settings
//! (`DB_POOL_SIZE` 10).
//!
//! `READS_REPLICA_URL` (a streaming replica of `READS_DATABASE_URL`'s server, e.g. the one
//! `.ci/replica.sh` starts, `postgres://postgres@127.0.0.1:5433/test`): on PostgreSQL, the
//! trace page is then measured once more at each client count against a second server
//! process reading from that replica (`DATABASE_READ_URLS`), beside the primary-only server
//! in the same run, with the reads each served (`/metrics`).

mod common;

#[path = "../tests/it/support/http.rs"]
#[allow(dead_code)]
mod http;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_async::SimpleAsyncConnection;
use iofold_graph::db::{Backend, Db, DbError, PoolOptions};
use serde_json::{json, Value};

use common::{env_or, ms, Cell, Outcome};
use http::{Client, Server};

const SECRET: &str = "bench-admin-secret-0123456789";
const POOL: usize = iofold_graph::config::defaults::DB_POOL_SIZE as usize;

const PAGE: &str = "query($ws: ID!) { traces(workspaceId: $ws, first: 50) { nodes { id traceId source timestamp \
    inputPreview outputPreview stepCount hasErrors feedback { rating } evalExecutions(first: 10) { nodes { \
    predictedResult score eval { name } } } } } }";
const DETAIL: &str = "query($id: ID!) { trace(id: $id) { id traceId timestamp steps metadata feedback { rating \
    ratingDetail } evalExecutions(first: 10) { nodes { id predictedResult predictedReason score executedAt eval { \
    id name } } } } }";
const DASHBOARD: &str = "query($ws: ID!) { agents(workspaceId: $ws, first: 5) { nodes { id name status evals(first: \
    10) { nodes { id name version accuracy status } } feedbacks { totalCount } } } }";

/// The share of the traces each workspace holds, in percent (15,000 to 6,000 of 100,000).
const WEIGHTS: [usize; 10] = [15, 13, 12, 11, 10, 9, 9, 8, 7, 6];
/// Agents per workspace, eval versions per agent.
const AGENTS: usize = 5;
const VERSIONS: usize = 4;

/// The three reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    Page,
    Detail,
    Dashboard,
}

impl Read {
    const ALL: [Read; 3] = [Read::Page, Read::Detail, Read::Dashboard];

    fn name(self) -> &'static str {
        match self {
            Read::Page => "trace page",
            Read::Detail => "trace detail",
            Read::Dashboard => "agent dashboard",
        }
    }

    fn document(self) -> &'static str {
        match self {
            Read::Page => PAGE,
            Read::Detail => DETAIL,
            Read::Dashboard => DASHBOARD,
        }
    }
}

/// What the reads read: the workspaces, the largest one, the traces with 6 executions.
struct Targets {
    workspaces: Vec<String>,
    largest: String,
    detail: Vec<String>,
}

impl Targets {
    /// The argument of the `n`-th request of `read` (`ws` or `id`).
    fn argument(&self, read: Read, n: usize) -> &str {
        match read {
            Read::Page => &self.largest,
            Read::Detail => &self.detail[n % self.detail.len()],
            Read::Dashboard => &self.workspaces[n % self.workspaces.len()],
        }
    }

    fn request(&self, read: Read, n: usize) -> Value {
        let variables = match read {
            Read::Detail => json!({"id": self.argument(read, n)}),
            _ => json!({"ws": self.argument(read, n)}),
        };
        json!({"query": read.document(), "variables": variables})
    }
}

/// How the clients authenticate: one header.
struct Auth {
    header: &'static str,
    value: String,
}

/// Posts a GraphQL request; an answer with `errors` (or without `data`) is an error.
async fn post(http: &mut Client, auth: &Auth, body: &Value) -> Result<Value, String> {
    let reply = http
        .post_json("/graphql", &[(auth.header, auth.value.as_str())], &body.to_string())
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let json = reply.json();
    if reply.status == 200 && json.get("errors").is_none() && json["data"].is_object() {
        Ok(json)
    } else {
        Err(format!("{} {}", reply.status, reply.body.chars().take(300).collect::<String>()))
    }
}

/// `clients` clients each sending `read` to the server in a closed loop: `warmup` seconds
/// unmeasured, then `seconds` measured.
async fn server_cell(
    addr: std::net::SocketAddr,
    auth: Arc<Auth>,
    targets: Arc<Targets>,
    read: Read,
    clients: usize,
    (warmup, seconds): (u64, u64),
) -> Cell {
    let stop = Arc::new(AtomicBool::new(false));
    let measured_from = Instant::now() + Duration::from_secs(warmup);
    let tasks: Vec<Outcome> = (0..clients)
        .map(|client| {
            let (stop, auth, targets) = (stop.clone(), auth.clone(), targets.clone());
            tokio::spawn(async move {
                let mut http = Client::new(addr);
                let (mut latencies, mut errors) = (Vec::new(), Vec::new());
                let mut n = client * 7919;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let body = targets.request(read, n);
                    let sent = Instant::now();
                    match post(&mut http, &auth, &body).await {
                        Ok(_) if sent >= measured_from => latencies.push(sent.elapsed()),
                        Ok(_) => {}
                        Err(e) => errors.push(e),
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    Cell::after(tasks, &stop, measured_from, seconds).await
}

/// The same cell for the floor: `clients` tasks over the bare pool.
async fn floor_cell(db: &Db, targets: Arc<Targets>, read: Read, clients: usize, (warmup, seconds): (u64, u64)) -> Cell {
    let stop = Arc::new(AtomicBool::new(false));
    let measured_from = Instant::now() + Duration::from_secs(warmup);
    let tasks: Vec<Outcome> = (0..clients)
        .map(|client| {
            let (db, stop, targets) = (db.clone(), stop.clone(), targets.clone());
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), Vec::new());
                let mut n = client * 7919;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let sent = Instant::now();
                    match floor::run(&db, read, targets.argument(read, n)).await {
                        Ok(body) if body.len() > 20 => {
                            if sent >= measured_from {
                                latencies.push(sent.elapsed());
                            }
                        }
                        Ok(body) => errors.push(format!("empty result {body}")),
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    Cell::after(tasks, &stop, measured_from, seconds).await
}

/// The floor: each read by hand-written SQL over a bare pool, the nested JSON assembled by
/// hand and serialized. One pooled connection per request. Lists of ids go in one text
/// parameter: a PostgreSQL array literal cast to `text[]`, or a JSON array read with
/// SQLite's `json_each` (ids are `[a-z0-9_]`, nothing to escape).
mod floor {
    use std::collections::HashMap;

    use diesel::sql_types::{BigInt, Bool, Double, Nullable, Text};
    use diesel::QueryableByName;
    use diesel_async::RunQueryDsl;
    use iofold_graph::db::sql_types::{Timestamp, UtcTimestamp};
    use iofold_graph::db::{Backend, Db, DbError};
    use serde_json::{json, Value};

    use super::Read;

    /// Runs `read` on `argument` (a workspace or a trace id) and answers the serialized JSON.
    pub async fn run(db: &Db, read: Read, argument: &str) -> Result<String, DbError> {
        let data = match read {
            Read::Page => page(db, argument).await?,
            Read::Detail => detail(db, argument).await?,
            Read::Dashboard => dashboard(db, argument).await?,
        };
        Ok(serde_json::to_string(&json!({ "data": data })).expect("JSON"))
    }

    /// A list of ids as one text parameter for [`in_list`]'s SQL.
    fn id_list<'a>(backend: Backend, ids: impl Iterator<Item = &'a str>) -> String {
        let quoted: Vec<String> = ids.map(|id| format!("\"{id}\"")).collect();
        match backend {
            Backend::Postgres => format!("{{{}}}", quoted.join(",")),
            Backend::Sqlite => format!("[{}]", quoted.join(",")),
        }
    }

    // The statements. PostgreSQL first, SQLite second.

    /// Trace page (a): the page, one more row than asked (for `hasNextPage`).
    const PAGE_TRACES: [&str; 2] = [
        "SELECT id, trace_id, source, timestamp, input_preview, output_preview, step_count, has_errors FROM traces \
         WHERE workspace_id = $1 ORDER BY timestamp DESC, id DESC LIMIT 51",
        "SELECT id, trace_id, source, timestamp, input_preview, output_preview, step_count, has_errors FROM traces \
         WHERE workspace_id = ? ORDER BY timestamp DESC, id DESC LIMIT 51",
    ];
    /// Trace page (b): the ratings of the page.
    const PAGE_RATINGS: [&str; 2] = [
        "SELECT trace_id, rating FROM feedback WHERE trace_id = ANY($1::text[])",
        "SELECT trace_id, rating FROM feedback WHERE trace_id IN (SELECT value FROM json_each(?))",
    ];
    /// Trace page (c): the 11 newest executions of each trace of the page.
    const PAGE_EXECUTIONS: [&str; 2] = [
        "SELECT t.id AS parent, e.id, e.eval_id, e.predicted_result, e.score FROM unnest($1::text[]) AS t(id) \
         CROSS JOIN LATERAL (SELECT id, eval_id, predicted_result, score FROM eval_executions WHERE trace_id = t.id \
         ORDER BY created_at DESC, id DESC LIMIT 11) e",
        "SELECT parent, id, eval_id, predicted_result, score FROM (SELECT trace_id AS parent, id, eval_id, \
         predicted_result, score, ROW_NUMBER() OVER (PARTITION BY trace_id ORDER BY created_at DESC, id DESC) AS n \
         FROM eval_executions WHERE trace_id IN (SELECT value FROM json_each(?))) WHERE n <= 11",
    ];
    /// Trace page (d) and trace detail (d): evals by ids.
    const EVAL_NAMES: [&str; 2] = [
        "SELECT id, name FROM evals WHERE id = ANY($1::text[])",
        "SELECT id, name FROM evals WHERE id IN (SELECT value FROM json_each(?))",
    ];
    /// Trace detail (a): the trace, its JSON as text.
    const DETAIL_TRACE: [&str; 2] = [
        "SELECT id, trace_id, timestamp, steps::text AS steps, metadata::text AS metadata FROM traces WHERE id = $1",
        "SELECT id, trace_id, timestamp, steps, metadata FROM traces WHERE id = ?",
    ];
    /// Trace detail (b): its rating.
    const DETAIL_RATING: [&str; 2] = [
        "SELECT rating, rating_detail FROM feedback WHERE trace_id = $1",
        "SELECT rating, rating_detail FROM feedback WHERE trace_id = ?",
    ];
    /// Trace detail (c): its 11 newest executions.
    const DETAIL_EXECUTIONS: [&str; 2] = [
        "SELECT id, eval_id, predicted_result, predicted_reason, score, executed_at FROM eval_executions \
         WHERE trace_id = $1 ORDER BY created_at DESC, id DESC LIMIT 11",
        "SELECT id, eval_id, predicted_result, predicted_reason, score, executed_at FROM eval_executions \
         WHERE trace_id = ? ORDER BY created_at DESC, id DESC LIMIT 11",
    ];
    /// Agent dashboard (a): the 6 newest agents of the workspace.
    const DASHBOARD_AGENTS: [&str; 2] = [
        "SELECT id, name, status FROM agents WHERE workspace_id = $1 ORDER BY created_at DESC, id DESC LIMIT 6",
        "SELECT id, name, status FROM agents WHERE workspace_id = ? ORDER BY created_at DESC, id DESC LIMIT 6",
    ];
    /// Agent dashboard (b): the 11 newest evals of each agent.
    const DASHBOARD_EVALS: [&str; 2] = [
        "SELECT a.id AS parent, e.id, e.name, e.version, e.accuracy, e.status FROM unnest($1::text[]) AS a(id) \
         CROSS JOIN LATERAL (SELECT id, name, version, accuracy, status FROM evals WHERE agent_id = a.id \
         ORDER BY created_at DESC, id DESC LIMIT 11) e",
        "SELECT parent, id, name, version, accuracy, status FROM (SELECT agent_id AS parent, id, name, version, \
         accuracy, status, ROW_NUMBER() OVER (PARTITION BY agent_id ORDER BY created_at DESC, id DESC) AS n \
         FROM evals WHERE agent_id IN (SELECT value FROM json_each(?))) WHERE n <= 11",
    ];
    /// Agent dashboard (c): the number of ratings of each agent.
    const DASHBOARD_RATINGS: [&str; 2] = [
        "SELECT agent_id, COUNT(*) AS n FROM feedback WHERE agent_id = ANY($1::text[]) GROUP BY agent_id",
        "SELECT agent_id, COUNT(*) AS n FROM feedback WHERE agent_id IN (SELECT value FROM json_each(?)) \
         GROUP BY agent_id",
    ];

    fn pick(backend: Backend, sql: &[&'static str; 2]) -> &'static str {
        match backend {
            Backend::Postgres => sql[0],
            Backend::Sqlite => sql[1],
        }
    }

    /// An enum value as GraphQL spells it.
    fn upper(value: &str) -> String {
        value.to_ascii_uppercase()
    }

    #[derive(QueryableByName)]
    struct PageTrace {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = Text)]
        trace_id: String,
        #[diesel(sql_type = Text)]
        source: String,
        #[diesel(sql_type = UtcTimestamp)]
        timestamp: Timestamp,
        #[diesel(sql_type = Nullable<Text>)]
        input_preview: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        output_preview: Option<String>,
        #[diesel(sql_type = BigInt)]
        step_count: i64,
        #[diesel(sql_type = Bool)]
        has_errors: bool,
    }

    #[derive(QueryableByName)]
    struct TraceRating {
        #[diesel(sql_type = Text)]
        trace_id: String,
        #[diesel(sql_type = Text)]
        rating: String,
    }

    #[derive(QueryableByName)]
    struct PageExecution {
        #[diesel(sql_type = Text)]
        parent: String,
        #[diesel(sql_type = Text)]
        #[allow(dead_code)] // fetched as the server does (it is the cursor's key)
        id: String,
        #[diesel(sql_type = Text)]
        eval_id: String,
        #[diesel(sql_type = Nullable<Bool>)]
        predicted_result: Option<bool>,
        #[diesel(sql_type = Nullable<Double>)]
        score: Option<f64>,
    }

    #[derive(QueryableByName)]
    struct EvalName {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = Text)]
        name: String,
    }

    #[derive(QueryableByName)]
    struct DetailTrace {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = Text)]
        trace_id: String,
        #[diesel(sql_type = UtcTimestamp)]
        timestamp: Timestamp,
        #[diesel(sql_type = Text)]
        steps: String,
        #[diesel(sql_type = Nullable<Text>)]
        metadata: Option<String>,
    }

    #[derive(QueryableByName)]
    struct Rating {
        #[diesel(sql_type = Text)]
        rating: String,
        #[diesel(sql_type = Nullable<Text>)]
        rating_detail: Option<String>,
    }

    #[derive(QueryableByName)]
    struct DetailExecution {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = Text)]
        eval_id: String,
        #[diesel(sql_type = Nullable<Bool>)]
        predicted_result: Option<bool>,
        #[diesel(sql_type = Nullable<Text>)]
        predicted_reason: Option<String>,
        #[diesel(sql_type = Nullable<Double>)]
        score: Option<f64>,
        #[diesel(sql_type = UtcTimestamp)]
        executed_at: Timestamp,
    }

    #[derive(QueryableByName)]
    struct Agent {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Text)]
        status: String,
    }

    #[derive(QueryableByName)]
    struct AgentEval {
        #[diesel(sql_type = Text)]
        parent: String,
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = BigInt)]
        version: i64,
        #[diesel(sql_type = Nullable<Double>)]
        accuracy: Option<f64>,
        #[diesel(sql_type = Text)]
        status: String,
    }

    #[derive(QueryableByName)]
    struct AgentRatings {
        #[diesel(sql_type = Text)]
        agent_id: String,
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    /// Trace page: 4 statements.
    async fn page(db: &Db, workspace: &str) -> Result<Value, DbError> {
        let backend = db.backend();
        let (traces, ratings, executions, evals) = iofold_graph::with_conn!(db, |conn| {
            let mut traces: Vec<PageTrace> =
                diesel::sql_query(pick(backend, &PAGE_TRACES)).bind::<Text, _>(workspace).load(conn).await?;
            traces.truncate(50);
            let ids = id_list(backend, traces.iter().map(|t| t.id.as_str()));
            let ratings: Vec<TraceRating> =
                diesel::sql_query(pick(backend, &PAGE_RATINGS)).bind::<Text, _>(&ids).load(conn).await?;
            let mut executions: Vec<PageExecution> =
                diesel::sql_query(pick(backend, &PAGE_EXECUTIONS)).bind::<Text, _>(&ids).load(conn).await?;
            // The first 10 per trace (the 11th only tells there are more).
            let mut seen: HashMap<String, usize> = HashMap::new();
            executions.retain(|e| {
                let count = seen.entry(e.parent.clone()).or_default();
                *count += 1;
                *count <= 10
            });
            let mut eval_ids: Vec<&str> = executions.iter().map(|e| e.eval_id.as_str()).collect();
            eval_ids.sort_unstable();
            eval_ids.dedup();
            let evals: Vec<EvalName> = diesel::sql_query(pick(backend, &EVAL_NAMES))
                .bind::<Text, _>(id_list(backend, eval_ids.into_iter()))
                .load(conn)
                .await?;
            (traces, ratings, executions, evals)
        });
        let ratings: HashMap<&str, &str> = ratings.iter().map(|r| (r.trace_id.as_str(), r.rating.as_str())).collect();
        let names: HashMap<&str, &str> = evals.iter().map(|e| (e.id.as_str(), e.name.as_str())).collect();
        let mut by_trace: HashMap<&str, Vec<Value>> = HashMap::new();
        for e in &executions {
            by_trace.entry(e.parent.as_str()).or_default().push(json!({
                "predictedResult": e.predicted_result,
                "score": e.score,
                "eval": {"name": names.get(e.eval_id.as_str())},
            }));
        }
        let nodes: Vec<Value> = traces
            .iter()
            .map(|t| {
                json!({
                    "id": t.id,
                    "traceId": t.trace_id,
                    "source": upper(&t.source),
                    "timestamp": t.timestamp.to_text(),
                    "inputPreview": t.input_preview,
                    "outputPreview": t.output_preview,
                    "stepCount": t.step_count,
                    "hasErrors": t.has_errors,
                    "feedback": ratings.get(t.id.as_str()).map(|r| json!({"rating": upper(r)})),
                    "evalExecutions": {"nodes": by_trace.remove(t.id.as_str()).unwrap_or_default()},
                })
            })
            .collect();
        Ok(json!({"traces": {"nodes": nodes}}))
    }

    /// Trace detail: 4 statements.
    async fn detail(db: &Db, id: &str) -> Result<Value, DbError> {
        let backend = db.backend();
        let (trace, rating, mut executions, evals) = iofold_graph::with_conn!(db, |conn| {
            let trace: Vec<DetailTrace> =
                diesel::sql_query(pick(backend, &DETAIL_TRACE)).bind::<Text, _>(id).load(conn).await?;
            let rating: Vec<Rating> =
                diesel::sql_query(pick(backend, &DETAIL_RATING)).bind::<Text, _>(id).load(conn).await?;
            let executions: Vec<DetailExecution> =
                diesel::sql_query(pick(backend, &DETAIL_EXECUTIONS)).bind::<Text, _>(id).load(conn).await?;
            let mut eval_ids: Vec<&str> = executions.iter().take(10).map(|e| e.eval_id.as_str()).collect();
            eval_ids.sort_unstable();
            eval_ids.dedup();
            let evals: Vec<EvalName> = diesel::sql_query(pick(backend, &EVAL_NAMES))
                .bind::<Text, _>(id_list(backend, eval_ids.into_iter()))
                .load(conn)
                .await?;
            (trace, rating, executions, evals)
        });
        let Some(trace) = trace.into_iter().next() else {
            return Ok(json!({"trace": null}));
        };
        executions.truncate(10);
        let names: HashMap<&str, &str> = evals.iter().map(|e| (e.id.as_str(), e.name.as_str())).collect();
        let nodes: Vec<Value> = executions
            .iter()
            .map(|e| {
                json!({
                    "id": e.id,
                    "predictedResult": e.predicted_result,
                    "predictedReason": e.predicted_reason,
                    "score": e.score,
                    "executedAt": e.executed_at.to_text(),
                    "eval": {"id": e.eval_id, "name": names.get(e.eval_id.as_str())},
                })
            })
            .collect();
        let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
        Ok(json!({"trace": {
            "id": trace.id,
            "traceId": trace.trace_id,
            "timestamp": trace.timestamp.to_text(),
            "steps": parse(&trace.steps),
            "metadata": trace.metadata.as_deref().map(parse),
            "feedback": rating.into_iter().next().map(|r| json!({"rating": upper(&r.rating), "ratingDetail": r.rating_detail})),
            "evalExecutions": {"nodes": nodes},
        }}))
    }

    /// Agent dashboard: 3 statements.
    async fn dashboard(db: &Db, workspace: &str) -> Result<Value, DbError> {
        let backend = db.backend();
        let (agents, evals, ratings) = iofold_graph::with_conn!(db, |conn| {
            let mut agents: Vec<Agent> =
                diesel::sql_query(pick(backend, &DASHBOARD_AGENTS)).bind::<Text, _>(workspace).load(conn).await?;
            agents.truncate(5);
            let ids = id_list(backend, agents.iter().map(|a| a.id.as_str()));
            let evals: Vec<AgentEval> =
                diesel::sql_query(pick(backend, &DASHBOARD_EVALS)).bind::<Text, _>(&ids).load(conn).await?;
            let ratings: Vec<AgentRatings> =
                diesel::sql_query(pick(backend, &DASHBOARD_RATINGS)).bind::<Text, _>(&ids).load(conn).await?;
            (agents, evals, ratings)
        });
        let counts: HashMap<&str, i64> = ratings.iter().map(|r| (r.agent_id.as_str(), r.n)).collect();
        let mut by_agent: HashMap<&str, Vec<Value>> = HashMap::new();
        for e in &evals {
            let list = by_agent.entry(e.parent.as_str()).or_default();
            if list.len() < 10 {
                list.push(json!({
                    "id": e.id,
                    "name": e.name,
                    "version": e.version,
                    "accuracy": e.accuracy,
                    "status": upper(&e.status),
                }));
            }
        }
        let nodes: Vec<Value> = agents
            .iter()
            .map(|a| {
                json!({
                    "id": a.id,
                    "name": a.name,
                    "status": upper(&a.status),
                    "evals": {"nodes": by_agent.remove(a.id.as_str()).unwrap_or_default()},
                    "feedbacks": {"totalCount": counts.get(a.id.as_str()).copied().unwrap_or(0)},
                })
            })
            .collect();
        Ok(json!({"agents": {"nodes": nodes}}))
    }
}

/// Set-based SQL that generates the data set, in each backend's dialect.
struct Gen {
    backend: Backend,
}

impl Gen {
    /// A row source `s` with one column `g` = 1..=n.
    fn series(&self, n: usize) -> String {
        match self.backend {
            Backend::Postgres => format!("generate_series(1, {n}::bigint) AS s(g)"),
            Backend::Sqlite => {
                format!("(WITH RECURSIVE r(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM r WHERE g < {n}) SELECT g FROM r) AS s")
            }
        }
    }

    /// An integer as zero-padded text.
    fn pad(&self, expr: &str, width: usize) -> String {
        match self.backend {
            Backend::Postgres => format!("lpad(({expr})::text, {width}, '0')"),
            Backend::Sqlite => format!("printf('%0{width}d', {expr})"),
        }
    }

    /// The timestamp `seconds` before 2026-12-01.
    fn ago(&self, seconds: &str) -> String {
        match self.backend {
            Backend::Postgres => format!("(timestamptz '2026-12-01 00:00:00+00' - ({seconds}) * interval '1 second')"),
            Backend::Sqlite => format!(
                "(strftime('%Y-%m-%dT%H:%M:%f', '2026-12-01 00:00:00', '-' || ({seconds}) || ' seconds') || '000Z')"
            ),
        }
    }

    /// Text as the JSON column type.
    fn json(&self, text: &str) -> String {
        match self.backend {
            Backend::Postgres => format!("({text})::jsonb"),
            Backend::Sqlite => text.to_owned(),
        }
    }

    /// `text` repeated `n` times.
    fn repeat(&self, text: &str, n: &str) -> String {
        match self.backend {
            Backend::Postgres => format!("repeat({text}, ({n})::int)"),
            Backend::Sqlite => format!("replace(hex(zeroblob({n})), '00', {text})"),
        }
    }
}

/// The traces of each workspace for `total` traces.
fn traces_per_workspace(total: usize) -> Vec<usize> {
    WEIGHTS.iter().map(|w| (total * w / 100).max(1)).collect()
}

/// The statements that load the data set: every table but the small ones set-based, per
/// workspace.
fn load_statements(backend: Backend, total: usize, token_hash: &str) -> Vec<String> {
    let gen = Gen { backend };
    let day = |d: usize| format!("'2026-01-{:02}T00:00:00.000000Z'", d % 28 + 1);
    let mut sql = Vec::new();
    let workspaces: Vec<String> =
        (1..=WEIGHTS.len()).map(|w| format!("('workspace_w{w:02}', 'Workspace {w}', {})", day(w))).collect();
    sql.push(format!("INSERT INTO workspaces (id, name, created_at) VALUES {}", workspaces.join(", ")));
    let mut agents = Vec::new();
    let mut evals = Vec::new();
    for w in 1..=WEIGHTS.len() {
        for a in 0..AGENTS {
            let status = if a % 2 == 0 { "confirmed" } else { "discovered" };
            agents.push(format!(
                "('agent_w{w:02}_{a}', 'workspace_w{w:02}', 'Support agent {w}-{a}', 'Answers customer questions', \
                 '{status}', {})",
                day(a)
            ));
            for v in 1..=VERSIONS {
                let status = match v {
                    VERSIONS => "active",
                    3 => "testing",
                    _ => "archived",
                };
                evals.push(format!(
                    "('eval_w{w:02}_a{a}_v{v}', 'agent_w{w:02}_{a}', {v}, 'answer quality {w}-{a}', \
                     'def evaluate(trace):\n    return len(trace.output) > 0', {:.2}, '{status}', {})",
                    0.6 + 0.08 * v as f64,
                    day(a * VERSIONS + v)
                ));
            }
        }
    }
    sql.push(format!(
        "INSERT INTO agents (id, workspace_id, name, description, status, created_at) VALUES {}",
        agents.join(", ")
    ));
    sql.push(format!(
        "INSERT INTO evals (id, agent_id, version, name, code, accuracy, status, created_at) VALUES {}",
        evals.join(", ")
    ));

    // 1,500 executions per eval for 100,000 traces; windows of the workspace's traces that
    // start every ceil(E / 6) traces, so a trace is in at most 6 windows and many are in 6.
    let per_eval = (total * 15 / 1000).max(6);
    let stride = per_eval.div_ceil(6);
    let evals_per_workspace = AGENTS * VERSIONS;
    for (i, &count) in traces_per_workspace(total).iter().enumerate() {
        let w = format!("w{:02}", i + 1);
        let ts = gen.ago(&format!("(g * 104729 + {i}) % 31536000"));
        let step =
            "'{\"step_id\": \"step\", \"timestamp\": \"2026-01-01T00:00:00Z\", \"input\": \"Customer ' || g || ' asks \
             where the order placed last week is; the agent looks it up in the order system\", \"output\": \"Order ' \
             || g || ' left the warehouse; the carrier delivers it within two business days.\", \"tool_calls\": \
             [{\"name\": \"lookup_order\", \"arguments\": {\"order_id\": \"' || g || '\"}}], \"error\": null}'";
        let steps =
            gen.json(&format!("'[' || {step} || {} || ']'", gen.repeat(&format!("',' || {step}"), "2 + g % 6")));
        let metadata = gen.json(
            "'{\"user_id\": \"user-' || (g % 997) || '\", \"environment\": \"production\", \"model\": \"gpt-4o-mini\", \
             \"tags\": [\"bench\", \"reads\"]}'",
        );
        sql.push(format!(
            "INSERT INTO traces (id, workspace_id, trace_id, source, timestamp, metadata, steps, input_preview, \
             output_preview, step_count, has_errors, imported_at, created_at, updated_at) \
             SELECT 'trace_{w}_' || {id}, 'workspace_{w}', 'ext-{w}-' || g, \
             CASE g % 3 WHEN 0 THEN 'langfuse' WHEN 1 THEN 'langsmith' ELSE 'openai' END, ts, {metadata}, {steps}, \
             'Customer ' || g || ': where is my order and when will it arrive?', \
             'Order ' || g || ' ships tomorrow and arrives within two business days.', \
             3 + g % 6, (g % 17 = 0), ts, ts, ts \
             FROM (SELECT g, {ts} AS ts FROM {series}) AS t",
            id = gen.pad("g", 7),
            series = gen.series(count),
        ));
        sql.push(format!(
            "INSERT INTO feedback (id, trace_id, agent_id, rating, rating_detail, created_at, updated_at, workspace_id) \
             SELECT 'feedback_{w}_' || {id}, 'trace_{w}_' || {id}, 'agent_{w}_' || (g % {AGENTS}), \
             CASE (g / 10) % 3 WHEN 0 THEN 'positive' WHEN 1 THEN 'negative' ELSE 'neutral' END, \
             'Reviewed answer ' || g, ts, ts, 'workspace_{w}' \
             FROM (SELECT g, {ts} AS ts FROM {series}) AS t WHERE g % 10 IN (0, 3, 7)",
            id = gen.pad("g", 7),
            series = gen.series(count),
        ));
        // A multiplier coprime with the count spreads each window over the workspace.
        let spread = [7919, 7907, 7901].into_iter().find(|p| count % p != 0).unwrap();
        sql.push(format!(
            "INSERT INTO eval_executions (id, eval_id, trace_id, predicted_result, predicted_reason, \
             execution_time_ms, score, success, executed_at, created_at, updated_at) \
             SELECT 'eval_execution_{w}_' || {id}, 'eval_{w}_a' || (j / {VERSIONS}) || '_v' || (j % {VERSIONS} + 1), \
             'trace_{w}_' || {trace}, ((k + j) % 4 <> 0), 'The answer ' || k || ' addresses the question', \
             50 + k % 400, ((k * 37 + j * 11) % 101) / 100.0, (k % 50 <> 0), ts, ts, ts \
             FROM (SELECT g, (g - 1) / {per_eval} AS j, (g - 1) % {per_eval} AS k, {ets} AS ts FROM {series}) AS t",
            id = gen.pad("g", 8),
            trace = gen.pad(&format!("((j * {stride} + k) * {spread}) % {count} + 1"), 7),
            ets = gen.ago("(g * 7919) % 31536000"),
            series = gen.series(evals_per_workspace * per_eval),
        ));
    }

    // A user who is a viewer of every workspace, with an API token (for READS_AUTH=token).
    sql.push(
        "INSERT INTO users (id, email, name) VALUES ('user_bench', 'reader@bench.example', 'Bench reader')".into(),
    );
    let members: Vec<String> = (1..=WEIGHTS.len())
        .map(|w| format!("('workspace_member_w{w:02}', 'workspace_w{w:02}', 'user_bench', 'viewer')"))
        .collect();
    sql.push(format!("INSERT INTO workspace_members (id, workspace_id, user_id, role) VALUES {}", members.join(", ")));
    sql.push(format!(
        "INSERT INTO api_tokens (id, user_id, name, token_hash) VALUES ('api_token_bench', 'user_bench', 'reads bench', \
         '{token_hash}')"
    ));
    sql
}

/// Loads the data set in one transaction, then analyzes (PostgreSQL: `VACUUM ANALYZE`, so
/// index-only scans see an all-visible table, as autovacuum would leave it).
async fn load(db: &Db, total: usize, token_hash: &str) -> Result<(), DbError> {
    let statements = load_statements(db.backend(), total, token_hash);
    iofold_graph::with_conn!(db, |conn| {
        conn.batch_execute("BEGIN").await?;
        for statement in &statements {
            conn.batch_execute(statement).await?;
        }
        conn.batch_execute("COMMIT").await?;
        match db.backend() {
            Backend::Postgres => conn.batch_execute("VACUUM ANALYZE").await?,
            Backend::Sqlite => conn.batch_execute("ANALYZE").await?,
        }
    });
    Ok(())
}

/// One-row text results of an ad-hoc query.
async fn texts(db: &Db, sql: &str) -> Vec<String> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        v: String,
    }
    let rows: Result<Vec<Row>, DbError> =
        async { Ok(iofold_graph::with_conn!(db, |conn| diesel::sql_query(sql).load::<Row>(conn).await?)) }.await;
    rows.expect(sql).into_iter().map(|r| r.v).collect()
}

/// The server's statement counter. `/metrics` reads the database's size and index figures
/// itself when its 15 s cache is cold: a first scrape warms it, so that the difference of
/// two readings counts the request's statements only.
/// The server's `/metrics` page (after a first request that warms it).
async fn metrics_page(http: &mut Client) -> String {
    let _ = http.get("/metrics", &[]).await;
    match http.get("/metrics", &[]).await {
        Ok(reply) => reply.body,
        Err(error) => {
            println!("  /metrics: {error}");
            String::new()
        }
    }
}

async fn statements(http: &mut Client) -> u64 {
    let _ = http.get("/metrics", &[]).await;
    common::statements_total(&http.get("/metrics", &[]).await.map(|r| r.body).unwrap_or_default())
}

/// The first place where two JSON values differ, if any.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                first_difference(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                )
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (p, q))| first_difference(p, q, &format!("{path}[{i}]")))
        }
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
        _ if a == b => None,
        _ => Some(format!(
            "{path}: server {} / floor {}",
            a.to_string().chars().take(120).collect::<String>(),
            b.to_string().chars().take(120).collect::<String>()
        )),
    }
}

struct Settings {
    traces: usize,
    clients: Vec<usize>,
    warmup: u64,
    seconds: u64,
    auth: String,
    pg_base: String,
    replica: Option<String>,
}

async fn run(backend: &str, settings: &Settings) -> bool {
    let bench_db = common::BenchDb::create(backend, "reads", &settings.pg_base).await;
    let url = bench_db.url.clone();
    let token = iofold_graph::crypto::new_token();
    let setup_db = Db::connect(&url, &PoolOptions { max_size: 1 }).expect("pool");
    let started = Instant::now();
    load(&setup_db, settings.traces, &iofold_graph::crypto::token_hash(&token)).await.expect("load");
    let loaded = started.elapsed();
    let counts = texts(
        &setup_db,
        "SELECT (SELECT COUNT(*) FROM traces) || ' traces, ' || (SELECT COUNT(*) FROM feedback) || ' ratings, ' || \
         (SELECT COUNT(*) FROM eval_executions) || ' eval executions, ' || (SELECT CAST(AVG(LENGTH(CAST(steps AS TEXT))) \
         AS INTEGER) FROM traces) || ' bytes of steps per trace on average' AS v",
    )
    .await;
    let detail = texts(
        &setup_db,
        "SELECT trace_id AS v FROM eval_executions GROUP BY trace_id HAVING COUNT(*) = 6 \
         ORDER BY substr(trace_id, 11), trace_id LIMIT 64",
    )
    .await;
    setup_db.close();
    assert!(!detail.is_empty(), "no trace has 6 executions");
    let workspaces: Vec<String> = (1..=WEIGHTS.len()).map(|w| format!("workspace_w{w:02}")).collect();
    let largest = WEIGHTS.iter().enumerate().max_by_key(|(i, w)| (**w, usize::MAX - i)).unwrap().0;
    let targets = Arc::new(Targets { largest: workspaces[largest].clone(), workspaces, detail });

    println!(
        "\n## {backend}: {}, server with default settings (pool {POOL}), auth {}, {} s measured per cell after {} s \
         of warm-up",
        counts.join(""),
        settings.auth,
        settings.seconds,
        settings.warmup
    );
    println!(
        "\nloaded in {:.1} s (set-based INSERT … SELECT, then {})",
        loaded.as_secs_f64(),
        if backend == "postgres" { "VACUUM ANALYZE" } else { "ANALYZE" }
    );

    let binary = Path::new(env!("CARGO_BIN_EXE_iofold-graph"));
    let server = Server::start(binary, url.as_str(), &[("IOFOLD_ADMIN_SECRET", SECRET), ("RUST_LOG", "error")]).await;
    let addr = server.addr;
    let auth = Arc::new(match settings.auth.as_str() {
        "token" => Auth { header: "authorization", value: format!("Bearer {token}") },
        _ => Auth { header: "x-iofold-admin-secret", value: SECRET.to_owned() },
    });
    let floor_db = Db::connect(&url, &PoolOptions { max_size: POOL }).expect("pool");

    // Each read once: it answers data, the floor answers the same JSON, and what it costs
    // in statements by the server's counter (nothing else runs).
    let mut http = Client::new(addr);
    let mut passed = true;
    let mut costs = Vec::new();
    for read in Read::ALL {
        let body = targets.request(read, 0);
        if let Err(e) = post(&mut http, &auth, &body).await {
            println!("\n{}: the server answers an error: {e}", read.name());
            passed = false;
            continue;
        }
        let before = statements(&mut http).await;
        let answer = post(&mut http, &auth, &body).await.unwrap_or_default();
        costs.push(format!("{} {}", read.name(), statements(&mut http).await - before));
        let floor: Value =
            serde_json::from_str(&floor::run(&floor_db, read, targets.argument(read, 0)).await.expect("floor"))
                .unwrap();
        let rows = match read {
            Read::Page => answer["data"]["traces"]["nodes"].as_array().map_or(0, Vec::len),
            Read::Detail => answer["data"]["trace"]["evalExecutions"]["nodes"].as_array().map_or(0, Vec::len),
            Read::Dashboard => answer["data"]["agents"]["nodes"].as_array().map_or(0, Vec::len),
        };
        if rows == 0 {
            println!(
                "\n{}: the server answers no rows: {}",
                read.name(),
                answer.to_string().chars().take(300).collect::<String>()
            );
            passed = false;
        }
        if let Some(difference) = first_difference(&answer["data"], &floor["data"], "data") {
            println!("\n{}: the floor's JSON differs from the server's at {difference}", read.name());
        }
    }
    println!("\nSQL statements per request (server counter): {}", costs.join(", "));

    println!(
        "\n| read | clients | server req/s | p50 ms | p99 ms | floor req/s | floor p50 ms | server ÷ floor | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let timing = (settings.warmup, settings.seconds);
    for read in Read::ALL {
        for &clients in &settings.clients {
            let cell = server_cell(addr, auth.clone(), targets.clone(), read, clients, timing).await;
            let bare = floor_cell(&floor_db, targets.clone(), read, clients, timing).await;
            println!(
                "| {} | {clients} | {:.0} | {} | {} | {:.0} | {} | {:.2} | {} |",
                read.name(),
                cell.rps,
                ms(cell.p50),
                ms(cell.p99),
                bare.rps,
                ms(bare.p50),
                cell.rps / bare.rps.max(1.0),
                cell.errors + bare.errors
            );
            for error in [&cell.first_error, &bare.first_error].into_iter().flatten() {
                println!("  first error: {error}");
            }
            passed &= cell.errors == 0 && bare.errors == 0;
        }
    }
    floor_db.close();
    if let (Some(replica), "postgres") = (&settings.replica, backend) {
        passed &= replica_cells(addr, &url, replica, auth.clone(), targets.clone(), settings).await;
    }
    server.kill().await;
    bench_db.remove().await;
    passed
}

/// The trace page against the primary-only server (`primary`) and against a second server
/// process reading from the replica at `replica` (the bench schema's `search_path` added),
/// once the replica has replayed the loaded data.
async fn replica_cells(
    primary: std::net::SocketAddr,
    url: &iofold_graph::db::DatabaseUrl,
    replica: &str,
    auth: Arc<Auth>,
    targets: Arc<Targets>,
    settings: &Settings,
) -> bool {
    let options = url.as_str().split_once('?').map(|(_, o)| o).unwrap_or_default();
    let sep = if replica.contains('?') { '&' } else { '?' };
    let replica_url = format!("{replica}{sep}{options}");
    // Caught up: the replica has replayed the primary's position after the load.
    let primary_db = Db::connect(url, &PoolOptions { max_size: 1 }).expect("pool");
    let target = texts(&primary_db, "SELECT pg_current_wal_lsn()::text AS v").await;
    primary_db.close();
    let replica_db =
        Db::connect(&iofold_graph::db::DatabaseUrl::Postgres(replica_url.clone()), &PoolOptions { max_size: 1 })
            .expect("pool");
    let started = Instant::now();
    loop {
        let sql = format!("SELECT (pg_last_wal_replay_lsn() >= '{}'::pg_lsn)::text AS v", target[0]);
        if texts(&replica_db, &sql).await == ["true"] {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "the replica did not catch up with the load");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    replica_db.close();
    println!(
        "
replica caught up {:.1} s after the measurements above",
        started.elapsed().as_secs_f64()
    );

    let binary = Path::new(env!("CARGO_BIN_EXE_iofold-graph"));
    let server = Server::start(
        binary,
        url.as_str(),
        &[("IOFOLD_ADMIN_SECRET", SECRET), ("RUST_LOG", "error"), ("DATABASE_READ_URLS", &replica_url)],
    )
    .await;
    // The poller finds the replica up within its first polls (200 ms apart).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut http = Client::new(server.addr);
    let served = |metrics: &str, prefix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    println!(
        "
| trace page | clients | primary alone req/s | p50 ms | p99 ms | primary + 1 replica req/s | p50 ms | p99 ms | \
         reads on the replica | on the primary | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let timing = (settings.warmup, settings.seconds);
    let mut passed = true;
    for &clients in &settings.clients {
        let alone = server_cell(primary, auth.clone(), targets.clone(), Read::Page, clients, timing).await;
        let before = metrics_page(&mut http).await;
        let replicated = server_cell(server.addr, auth.clone(), targets.clone(), Read::Page, clients, timing).await;
        let after = metrics_page(&mut http).await;
        let on_replica = served(&after, "iofold_replica_reads_total") - served(&before, "iofold_replica_reads_total");
        let on_primary = served(&after, "iofold_replica_primary_reads_total")
            - served(&before, "iofold_replica_primary_reads_total");
        println!(
            "| trace page | {clients} | {:.0} | {} | {} | {:.0} | {} | {} | {on_replica:.0} | {on_primary:.0} | {} |",
            alone.rps,
            ms(alone.p50),
            ms(alone.p99),
            replicated.rps,
            ms(replicated.p50),
            ms(replicated.p99),
            alone.errors + replicated.errors
        );
        for error in [&alone.first_error, &replicated.first_error].into_iter().flatten() {
            println!("  first error: {error}");
        }
        passed &= alone.errors == 0 && replicated.errors == 0 && on_replica > 0.0;
    }
    server.kill().await;
    passed
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let backends = env_or("READS_BACKENDS", "sqlite,postgres");
    let settings = Settings {
        traces: env_or("READS_TRACES", "100000").parse().expect("READS_TRACES is a number"),
        clients: env_or("READS_CLIENTS", "1,8,32")
            .split(',')
            .map(|c| c.trim().parse().expect("READS_CLIENTS: numbers"))
            .collect(),
        warmup: env_or("READS_WARMUP", "3").parse().expect("READS_WARMUP is a number"),
        seconds: env_or("READS_SECONDS", "10").parse().expect("READS_SECONDS is a number"),
        auth: env_or("READS_AUTH", "admin"),
        pg_base: env_or("READS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"),
        replica: std::env::var("READS_REPLICA_URL").ok().filter(|u| !u.is_empty()),
    };
    assert!(["admin", "token"].contains(&settings.auth.as_str()), "READS_AUTH: admin or token");
    println!(
        "read benchmark: the release server in its own process, closed-loop clients over TCP (keep-alive); machine: \
         {} cores (nproc) shared by the clients, the server and the database",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!(
        "settings: READS_BACKENDS={backends} READS_TRACES={} READS_CLIENTS={} READS_WARMUP={} READS_SECONDS={} \
         READS_AUTH={}",
        settings.traces,
        settings.clients.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
        settings.warmup,
        settings.seconds,
        settings.auth
    );
    let mut passed = true;
    for backend in backends.split(',').map(str::trim) {
        passed &= run(backend, &settings).await;
    }
    if !passed {
        eprintln!("read benchmark: errors (see above)");
        std::process::exit(1);
    }
}
