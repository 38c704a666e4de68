//! The model's rules that are computations rather than data, run by every write path
//! (generic and domain mutations) in the write's transaction:
//!
//! * values the server computes: a trace's step summary, a task's content hash, the next
//!   version of an agent's evals and versions, timestamps left out;
//! * checks on a whole row: GEPA splits, workflow graphs, evals activated only by
//!   `activateEval`;
//! * what follows a write: an eval's `execution_count` and `contradiction_count` recomputed
//!   whenever executions, ratings or traces change (directly or by cascade), a workspace's
//!   first owner, an execution following its steps;
//! * transitions: a workflow step's status.

use serde_json::{Map, Value};

use super::input::check_graph;
use super::store::{eq, one_of, stamp, Lock, Stmt, Tx};
use crate::catalog::{self, Kind, Table};
use crate::db::sql_types::Timestamp;
use crate::domain::{summarize_steps, task_content_hash};
use crate::error::{AppError, AppResult};
use crate::graphql::access::Access;
use crate::graphql::records::Record;
use crate::sql::Cond;

fn table(name: &str) -> AppResult<&'static Table> {
    catalog::table(name).ok_or_else(|| AppError::internal(format!("no table `{name}`")))
}

fn text<'a>(row: &'a Map<String, Value>, column: &str) -> Option<&'a str> {
    row.get(column).and_then(Value::as_str)
}

/// The current time in stored form.
pub fn now_text() -> Value {
    Value::String(Timestamp::now().to_text())
}

/// A trace's computed columns from its steps.
pub fn summarize_into(row: &mut Map<String, Value>) {
    let summary = summarize_steps(row.get("steps").unwrap_or(&Value::Null));
    row.insert("input_preview".into(), summary.input_preview.map_or(Value::Null, Value::String));
    row.insert("output_preview".into(), summary.output_preview.map_or(Value::Null, Value::String));
    row.insert("step_count".into(), summary.step_count.into());
    row.insert("has_errors".into(), summary.has_errors.into());
}

/// A task's content hash from its message and expected output.
pub fn hash_into(row: &mut Map<String, Value>, merged: &Map<String, Value>) {
    let hash = task_content_hash(text(merged, "user_message").unwrap_or_default(), text(merged, "expected_output"));
    row.insert("content_hash".into(), Value::String(hash));
}

/// What a create computes before the insert.
pub async fn before_create(
    tx: &mut Tx<'_>,
    access: &Access,
    table: &'static Table,
    row: &mut Map<String, Value>,
) -> AppResult<()> {
    for column in table.columns {
        let server_time = column.kind == Kind::Timestamp && !column.nullable && !column.has_default;
        if server_time && !row.contains_key(column.name) {
            row.insert(column.name.into(), now_text());
        }
    }
    match table.name {
        "workspaces" => {
            row.insert("user_id".into(), access.user_id().map_or(Value::Null, |u| Value::String(u.to_owned())));
        }
        "traces" => {
            summarize_into(row);
            row.insert("imported_at".into(), now_text());
        }
        "taskset_tasks" => {
            let merged = row.clone();
            hash_into(row, &merged);
        }
        "feedback" => {
            // A rating changes the contradiction counts of the evals that ran on the trace.
            let trace = text(row, "trace_id").unwrap_or_default().to_owned();
            tx.lock(self::table("traces")?, &[trace], Lock::Update).await?;
        }
        "evals" | "agent_versions" if row.get("version").is_none_or(|v| v.is_null()) => {
            let agent = text(row, "agent_id").unwrap_or_default().to_owned();
            let version = next_version(tx, table, &agent).await?;
            row.insert("version".into(), version.into());
        }
        _ => {}
    }
    Ok(())
}

/// The agent's highest version of `table` (evals or agent versions) + 1. Concurrent creates
/// for one agent take turns: they lock the agent's row first.
pub async fn next_version(tx: &mut Tx<'_>, table: &'static Table, agent_id: &str) -> AppResult<i64> {
    tx.lock(self::table("agents")?, &[agent_id.to_owned()], Lock::NoKeyUpdate).await?;
    tx.count(
        Stmt::new()
            .sql("SELECT COALESCE(MAX(")
            .ident("version")
            .sql("), 0) + 1 AS n FROM ")
            .ident(table.name)
            .sql(" WHERE ")
            .ident("agent_id")
            .sql(" = ")
            .text(agent_id),
    )
    .await
}

/// Checks on a row as it will be (`changes` says what a write changes; a create changes
/// everything).
pub fn check_row(table: &Table, changes: &Map<String, Value>, merged: &Map<String, Value>) -> AppResult<()> {
    match table.name {
        "gepa_runs" if changes.contains_key("train_split") || changes.contains_key("val_split") => {
            // The database's defaults when left out of a create.
            let train = merged.get("train_split").and_then(Value::as_f64).unwrap_or(0.7);
            let val = merged.get("val_split").and_then(Value::as_f64).unwrap_or(0.3);
            if train + val > 1.0 + 1e-9 {
                let field = if changes.contains_key("val_split") { "valSplit" } else { "trainSplit" };
                return Err(AppError::bad_input(
                    field,
                    format!("`trainSplit` + `valSplit` must be at most 1 (they are {train} and {val})"),
                ));
            }
        }
        "workflows" if changes.contains_key("nodes") || changes.contains_key("edges") => {
            let (nodes, edges) =
                (merged.get("nodes").unwrap_or(&Value::Null), merged.get("edges").unwrap_or(&Value::Null));
            check_graph(nodes, edges).map_err(|e| AppError::bad_input("edges", format!("`edges` {e}")))?;
        }
        "evals" if text(changes, "status") == Some("active") => {
            return Err(AppError::bad_input("status", "an eval becomes ACTIVE only through `activateEval`"));
        }
        _ => {}
    }
    Ok(())
}

/// What follows a create.
pub async fn after_create(
    tx: &mut Tx<'_>,
    access: &Access,
    table: &'static Table,
    id: &str,
    row: &Map<String, Value>,
) -> AppResult<()> {
    match table.name {
        "workspaces" => {
            if let Some(user_id) = access.user_id() {
                let mut member = Map::new();
                member.insert("workspace_id".into(), Value::String(id.to_owned()));
                member.insert("user_id".into(), Value::String(user_id.to_owned()));
                member.insert("role".into(), Value::String("owner".into()));
                tx.insert(self::table("workspace_members")?, &member).await?;
            }
        }
        "eval_executions" => recount_evals(tx, text(row, "eval_id").map(str::to_owned).into_iter().collect()).await?,
        "feedback" => {
            let evals = evals_on_traces(tx, text(row, "trace_id").map(str::to_owned).into_iter().collect()).await?;
            recount_evals(tx, evals).await?;
        }
        _ => {}
    }
    Ok(())
}

/// Updates one row by id with server-made changes (stamped like every update).
pub async fn update_row(
    tx: &mut Tx<'_>,
    table: &'static Table,
    id: &str,
    changes: &Map<String, Value>,
) -> AppResult<Option<Record>> {
    let Some(old) = tx.find(table, id, Cond::True).await? else {
        return Ok(None);
    };
    if changes.iter().any(|(k, v)| old.get(k) != v) {
        return tx.update_returning(table, &old, changes).await;
    }
    Ok(Some(old))
}

/// A map of changes.
pub fn changes<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// What an update computes or refuses before the write.
pub async fn before_update(
    tx: &mut Tx<'_>,
    _access: &Access,
    table: &'static Table,
    old: &Record,
    changes: &mut Map<String, Value>,
) -> AppResult<()> {
    match table.name {
        "taskset_tasks" if changes.contains_key("user_message") || changes.contains_key("expected_output") => {
            let mut merged = old.to_map();
            merged.extend(changes.clone());
            hash_into(changes, &merged);
        }
        "evals" => {
            let leaves_active = old.text("status") == Some("active")
                && text(changes, "status").is_some_and(|status| status != "active");
            if leaves_active {
                clear_active_eval(tx, old).await?;
            }
        }
        "execution_steps" => step_transition(tx, old, changes).await?,
        _ => {}
    }
    Ok(())
}

async fn clear_active_eval(tx: &mut Tx<'_>, eval: &Record) -> AppResult<()> {
    let agents = table("agents")?;
    let agent_id = eval.text("agent_id").unwrap_or_default();
    if let Some(agent) = tx.find(agents, agent_id, eq("active_eval_id", eval.id())).await? {
        tx.update(agents, &agent, &changes([("active_eval_id", Value::Null)])).await?;
    }
    Ok(())
}

/// A workflow step's status moves pending → running → completed | failed, or pending →
/// skipped; a step that fails with retries left goes back to pending and counts a retry.
/// Steps of a finished execution no longer move; no step of a cancelled execution changes
/// at all; no step of a paused execution starts.
async fn step_transition(tx: &mut Tx<'_>, old: &Record, changes: &mut Map<String, Value>) -> AppResult<()> {
    let executions = table("executions")?;
    // The execution's row lock: steps of one execution change one at a time, so the one
    // that finishes last sees the others finished ([`follow_steps`]), and none changes once
    // a cancel (which takes this lock) has committed.
    let execution_id = old.text("execution_id").unwrap_or_default();
    let execution = tx.find_locked(executions, execution_id, Cond::True, Lock::NoKeyUpdate).await?;
    let execution_status = execution.as_ref().and_then(|e| e.text("status")).unwrap_or_default().to_owned();
    if execution_status == "cancelled" {
        let field = if changes.contains_key("status") {
            "status".to_owned()
        } else {
            changes.keys().next().map(|k| crate::graphql::names::camel(k)).unwrap_or_else(|| "id".to_owned())
        };
        return Err(AppError::bad_input(field, "the step's execution is CANCELLED: its steps no longer change"));
    }
    let Some(new) = text(changes, "status").map(str::to_owned) else {
        return Ok(());
    };
    let from = old.text("status").unwrap_or_default().to_owned();
    if new == from {
        changes.remove("status");
        return Ok(());
    }
    if matches!(execution_status.as_str(), "completed" | "failed") {
        return Err(AppError::bad_input("status", format!("the step's execution is {execution_status}")));
    }
    if execution_status == "paused" && new == "running" {
        return Err(AppError::bad_input(
            "status",
            "the step's execution is PAUSED: no step starts until it is resumed (`resumeExecution`)",
        ));
    }
    match (from.as_str(), new.as_str()) {
        ("pending", "running") => {
            changes.insert("started_at".into(), now_text());
        }
        ("pending", "skipped") | ("running", "completed") => {
            changes.insert("completed_at".into(), now_text());
        }
        ("running", "failed") => {
            let retries = old.get("retry_count").as_i64().unwrap_or(0);
            if retries < old.get("max_retries").as_i64().unwrap_or(0) {
                changes.insert("status".into(), Value::String("pending".into()));
                changes.insert("retry_count".into(), (retries + 1).into());
                changes.insert("started_at".into(), Value::Null);
            } else {
                changes.insert("completed_at".into(), now_text());
            }
        }
        _ => {
            return Err(AppError::bad_input(
                "status",
                format!("a step cannot move from {} to {}", from.to_ascii_uppercase(), new.to_ascii_uppercase()),
            ))
        }
    }
    Ok(())
}

/// What follows an update.
pub async fn after_update(
    tx: &mut Tx<'_>,
    _access: &Access,
    table: &'static Table,
    old: &Record,
    changes: &Map<String, Value>,
) -> AppResult<()> {
    match table.name {
        "feedback" if changes.get("rating").is_some_and(|rating| rating != old.get("rating")) => {
            // Only the rating counts for contradictions: a changed note recounts nothing.
            let trace = old.text("trace_id").unwrap_or_default().to_owned();
            tx.lock(self::table("traces")?, std::slice::from_ref(&trace), Lock::Update).await?;
            let evals = evals_on_traces(tx, vec![trace]).await?;
            recount_evals(tx, evals).await?;
        }
        "execution_steps" if changes.contains_key("status") => follow_steps(tx, old, changes).await?,
        _ => {}
    }
    Ok(())
}

/// An execution follows its steps: running once a step runs, failed when a step fails for
/// good, completed when every step completed or was skipped.
async fn follow_steps(tx: &mut Tx<'_>, step: &Record, changes: &Map<String, Value>) -> AppResult<()> {
    let executions = table("executions")?;
    let steps = table("execution_steps")?;
    let execution_id = step.text("execution_id").unwrap_or_default();
    let Some(execution) = tx.find(executions, execution_id, Cond::True).await? else {
        return Ok(());
    };
    let status = text(changes, "status").unwrap_or_default();
    let update = match status {
        "running" if execution.text("status") == Some("pending") => {
            Some(self::changes([("status", "running".into()), ("started_at", now_text())]))
        }
        "failed" => Some(self::changes([
            ("status", "failed".into()),
            ("error", text(changes, "error").or(step.text("error")).map_or(Value::Null, |e| e.into())),
            ("completed_at", now_text()),
        ])),
        "completed" | "skipped" => {
            let open = tx
                .count_rows(
                    steps,
                    Cond::all(vec![
                        eq("execution_id", execution_id),
                        Cond::Not(Box::new(one_of("status", ["completed".to_owned(), "skipped".to_owned()]))),
                    ]),
                )
                .await?;
            (open == 0).then(|| {
                let mut done = self::changes([("status", "completed".into()), ("completed_at", now_text())]);
                if execution.get("started_at").is_null() {
                    done.insert("started_at".into(), now_text());
                }
                done
            })
        }
        _ => None,
    };
    if let Some(update) = update {
        tx.update(executions, &execution, &update).await?;
    }
    Ok(())
}

/// What a delete must remember for afterwards: the evals whose counters it changes.
#[derive(Debug, Default)]
pub struct Affected {
    evals: Vec<String>,
}

/// What a delete checks and remembers before the row (and its cascade) goes.
pub async fn before_delete(tx: &mut Tx<'_>, table: &'static Table, old: &Record) -> AppResult<Affected> {
    let traces = self::table("traces")?;
    let evals = match table.name {
        "traces" => {
            // Waits for (and holds off) transactions recording executions on the trace.
            tx.lock(traces, &[old.id().to_owned()], Lock::Update).await?;
            evals_on_traces(tx, vec![old.id().to_owned()]).await?
        }
        "feedback" => {
            let trace = old.text("trace_id").unwrap_or_default().to_owned();
            tx.lock(traces, std::slice::from_ref(&trace), Lock::Update).await?;
            evals_on_traces(tx, vec![trace]).await?
        }
        "eval_executions" => old.text("eval_id").map(str::to_owned).into_iter().collect(),
        "integrations" => {
            let traces = tx
                .texts(
                    Stmt::new()
                        .sql("SELECT ")
                        .ident("id")
                        .sql(" AS v FROM ")
                        .ident("traces")
                        .sql(" WHERE ")
                        .ident("integration_id")
                        .sql(" = ")
                        .text(old.id()),
                )
                .await?;
            let traces: Vec<String> = traces.into_iter().flatten().collect();
            tx.lock(self::table("traces")?, &traces, Lock::Update).await?;
            evals_on_traces(tx, traces).await?
        }
        "users" => {
            refuse_last_owner(tx, old.id()).await?;
            Vec::new()
        }
        _ => Vec::new(),
    };
    Ok(Affected { evals })
}

/// What follows a delete.
pub async fn after_delete(tx: &mut Tx<'_>, affected: Affected) -> AppResult<()> {
    recount_evals(tx, affected.evals).await
}

/// A user who is the only owner of a workspace stays (delete the workspace or make
/// another owner first).
async fn refuse_last_owner(tx: &mut Tx<'_>, user_id: &str) -> AppResult<()> {
    let sole = tx
        .count(Stmt::new().sql("SELECT COUNT(*) AS n FROM workspace_members m WHERE m.user_id = ").text(user_id).sql(
            " AND m.role = 'owner' AND (SELECT COUNT(*) FROM workspace_members o \
                     WHERE o.workspace_id = m.workspace_id AND o.role = 'owner') = 1",
        ))
        .await?;
    if sole > 0 {
        return Err(AppError::bad_input(
            "id",
            "the user is the last owner of a workspace: make another member owner or delete the workspace first",
        ));
    }
    Ok(())
}

/// The evals that executed on any of these traces; on PostgreSQL locked for their recount
/// ([`recount_evals`]) in the same statement when the traces fit in one (in id order, as
/// [`Tx::lock`] takes them).
pub async fn evals_on_traces(tx: &mut Tx<'_>, traces: Vec<String>) -> AppResult<Vec<String>> {
    if tx.backend() == crate::db::Backend::Postgres && !traces.is_empty() && traces.len() <= 500 {
        let stmt = Stmt::new()
            .sql("SELECT ")
            .ident("id")
            .sql(" AS v FROM ")
            .ident("evals")
            .sql(" WHERE ")
            .ident("id")
            .sql(" IN (SELECT ")
            .ident("eval_id")
            .sql(" FROM ")
            .ident("eval_executions")
            .sql(" WHERE ")
            .ident("trace_id")
            .sql(" IN ")
            .texts(traces)
            .sql(") ORDER BY ")
            .ident("id")
            .sql(" FOR NO KEY UPDATE");
        let evals: Vec<String> = tx.texts(stmt).await?.into_iter().flatten().collect();
        tx.locked(table("evals")?, &evals, Lock::NoKeyUpdate);
        return Ok(evals);
    }
    let mut evals = Vec::new();
    for chunk in traces.chunks(500) {
        let found = tx
            .texts(
                Stmt::new()
                    .sql("SELECT DISTINCT ")
                    .ident("eval_id")
                    .sql(" AS v FROM ")
                    .ident("eval_executions")
                    .sql(" WHERE ")
                    .ident("trace_id")
                    .sql(" IN ")
                    .texts(chunk.iter().cloned()),
            )
            .await?;
        evals.extend(found.into_iter().flatten());
    }
    evals.sort();
    evals.dedup();
    Ok(evals)
}

/// Recomputes the counters of these evals from their executions and the ratings of their
/// traces (`eval_comparison`), stamping the rows whose counters change.
///
/// On PostgreSQL the evals' rows are locked first (in id order), and the recount is a later
/// statement, so under `READ COMMITTED` it sees every transaction that changed these evals'
/// executions or ratings and committed before it got the locks; a writer that commits after
/// recounts after it. So the last recount of an eval always counts every committed row, and
/// writers of other evals never wait. (A transaction that changes ratings holds its trace's
/// `FOR UPDATE` lock, which excludes transactions inserting executions on that trace: neither
/// misses the other's evals.)
pub async fn recount_evals(tx: &mut Tx<'_>, evals: Vec<String>) -> AppResult<()> {
    tx.lock(table("evals")?, &evals, Lock::NoKeyUpdate).await?;
    const EXECUTIONS: &str = "(SELECT COUNT(*) FROM eval_executions x WHERE x.eval_id = evals.id)";
    const CONTRADICTIONS: &str =
        "(SELECT COUNT(*) FROM eval_comparison c WHERE c.eval_id = evals.id AND c.is_contradiction = TRUE)";
    for chunk in evals.chunks(500) {
        let stmt = Stmt::new()
            .sql(format!("UPDATE evals SET execution_count = {EXECUTIONS}, contradiction_count = {CONTRADICTIONS}, "));
        let stmt = stamp(stmt, Timestamp::now())
            .sql(" WHERE evals.id IN ")
            .texts(chunk.iter().cloned())
            .sql(format!(" AND (execution_count <> {EXECUTIONS} OR contradiction_count <> {CONTRADICTIONS})"));
        tx.execute(stmt).await?;
    }
    Ok(())
}
