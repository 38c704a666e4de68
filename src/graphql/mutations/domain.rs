//! Domain mutations: the writes where the model says more than "insert, change or delete a
//! row" (ratings and eval counters, bulk imports and recordings, activations, job and step
//! transitions, alerts, members, tokens, workflow runs). Each runs in one transaction and
//! goes through the same checks, authorization and write paths as the generic mutations.

use std::collections::{HashMap, HashSet};

use async_graphql::dynamic::{
    Field, FieldFuture, InputValue, Object, ObjectAccessor, ResolverContext, SchemaBuilder, TypeRef,
};
use serde_json::{Map, Value};

use super::generic::{self, not_found, reference_not_found, require_role, workspace_of};
use super::input::{self, check};
use super::payload::{self, field, Payload};
use super::policy::{self, MAX_BULK};
use super::rules::{self, changes, now_text, update_row};
use super::store::{eq, one_of, Lock, Stmt, Tx, Upsert};
use crate::catalog::{self, Column, Table};
use crate::crypto::{new_token, token_hash};
use crate::db::sql_types::Timestamp;
use crate::db::Db;
use crate::error::{AppError, AppResult};
use crate::graphql::access::Access;
use crate::graphql::names;
use crate::graphql::records::Record;
use crate::graphql::schema::access;
use crate::in_tx;
use crate::models::WorkspaceMemberRole;
use crate::sql::{Cond, Select};

fn table(name: &str) -> &'static Table {
    catalog::table(name).expect("a table of the catalog")
}

fn column(table: &'static Table, name: &str) -> &'static Column {
    table.column(name).expect("a column of the catalog")
}

/// A resolver from an `async fn(ResolverContext) -> Result<Payload>`; once it returns (its
/// transaction committed), the jobs and executions of its payload are announced to their
/// subscribers ([`super::Announcer`]).
macro_rules! resolver {
    ($f:path) => {
        |ctx: ResolverContext<'_>| {
            FieldFuture::new(async move {
                let announcer = super::Announcer::of(&ctx);
                let payload = $f(ctx).await?;
                announcer.payload(&payload).await;
                payload.done()
            })
        }
    };
}

/// Registers the domain mutations and their input and payload types.
pub fn register(mut mutation: Object, mut builder: SchemaBuilder) -> (Object, SchemaBuilder) {
    fn nn(ty: impl Into<String>) -> TypeRef {
        TypeRef::named_nn(ty)
    }
    fn opt(ty: impl Into<String>) -> TypeRef {
        TypeRef::named(ty)
    }
    let id = || TypeRef::named_nn(TypeRef::ID);
    let rows = |t: &str| TypeRef::named_nn_list_nn(t);
    let enum_of = |t: &str, c: &str| names::enum_type(table(t), column(table(t), c));

    // Bulk inputs: the table's create columns without the parent the mutation names.
    let executions = table("eval_executions");
    let execution_columns = without(policy::create_columns(executions), &["eval_id"]);
    builder = builder.register(input::object_input(
        "EvalExecutionInput",
        "One prediction of an eval on a trace.",
        executions,
        &execution_columns,
        |c| policy::required_on_create(executions, c),
    ));
    let traces = table("traces");
    builder = builder.register(input::object_input(
        "TraceImportInput",
        "One trace from the source platform; re-importing the same `traceId` replaces its content.",
        traces,
        &import_columns(),
        |c| matches!(c.name, "trace_id" | "steps" | "timestamp"),
    ));
    let tasks = table("taskset_tasks");
    let task_columns = without(policy::create_columns(tasks), &["taskset_id"]);
    builder = builder.register(input::object_input(
        "TasksetTaskInput",
        "A task to add to a taskset.",
        tasks,
        &task_columns,
        |c| policy::required_on_create(tasks, c),
    ));

    macro_rules! add {
        ($name:literal, $doc:expr, [$($arg:expr),* $(,)?], [$($field:expr),* $(,)?], $f:path $(,)?) => {{
            let payload_name = format!("{}{}Payload", $name[..1].to_ascii_uppercase(), &$name[1..]);
            builder = builder.register(payload::object(
                &payload_name,
                format!("The result of `{}`.", $name),
                vec![$($field),*],
            ));
            mutation = mutation
                .field(Field::new($name, TypeRef::named_nn(payload_name), resolver!($f)).description($doc)$(.argument($arg))*);
        }};
    }

    add!(
        "rateTrace",
        "Rates a trace: creates its one human rating or changes it, and recomputes the counters of every eval that \
         executed on the trace.",
        [
            InputValue::new("traceId", id()),
            InputValue::new("rating", nn(enum_of("feedback", "rating"))),
            InputValue::new("ratingDetail", opt(TypeRef::STRING)).description("The annotator's notes (null clears)."),
            InputValue::new("agentId", opt(TypeRef::ID)).description("The agent the rating is for (null clears)."),
        ],
        [
            field("feedback", nn("Feedback"), "The trace's rating."),
            field("created", nn(TypeRef::BOOLEAN), "Whether the rating is new."),
        ],
        rate_trace,
    );
    add!(
        "recordEvalExecutions",
        "Records predictions of an eval (at most 1,000) and recomputes its counters.",
        [InputValue::new("evalId", id()), InputValue::new("executions", rows("EvalExecutionInput"))],
        [
            field("eval", nn("Eval"), "The eval, with its counters."),
            field("evalExecutions", rows("EvalExecution"), "The recorded executions, in input order."),
        ],
        record_eval_executions,
    );
    add!(
        "importTraces",
        "Imports traces (at most 1,000) into a workspace, all or nothing: new ones are inserted, those already \
         imported (same workspace, source and `traceId`) are replaced; previews, step counts and errors are \
         computed from the steps.",
        [
            InputValue::new("workspaceId", id()),
            InputValue::new("integrationId", opt(TypeRef::ID)),
            InputValue::new("source", nn(enum_of("traces", "source"))),
            InputValue::new("traces", rows("TraceImportInput")),
        ],
        [
            field("imported", nn(TypeRef::INT), "Traces inserted."),
            field("updated", nn(TypeRef::INT), "Traces that existed and were replaced."),
            field("traces", rows("Trace"), "The traces, in input order."),
        ],
        import_traces,
    );
    add!(
        "addTasksetTasks",
        "Adds tasks (at most 1,000) to a taskset; a task whose content hash the taskset already has is skipped.",
        [InputValue::new("tasksetId", id()), InputValue::new("tasks", rows("TasksetTaskInput"))],
        [
            field("added", nn(TypeRef::INT), "Tasks added."),
            field("skipped", nn(TypeRef::INT), "Duplicates skipped."),
            field("tasksetTasks", rows("TasksetTask"), "The tasks added."),
        ],
        add_taskset_tasks,
    );
    add!(
        "activateEval",
        "Makes an eval its agent's one active eval (the previously active one is archived).",
        [InputValue::new("id", id())],
        [field("eval", nn("Eval"), "The active eval."), field("agent", nn("Agent"), "Its agent.")],
        activate_eval,
    );
    add!(
        "activateAgentVersion",
        "Makes a version its agent's one active version (the previously active one is archived).",
        [InputValue::new("id", id())],
        [field("agentVersion", nn("AgentVersion"), "The active version."), field("agent", nn("Agent"), "Its agent."),],
        activate_agent_version,
    );
    add!(
        "updateJobProgress",
        "Reports a job's progress: status along queued → running → completed | failed | cancelled, progress \
         (0–100) never lower within an attempt, result and error.",
        [
            InputValue::new("id", id()),
            InputValue::new("progress", opt(TypeRef::INT)),
            InputValue::new("status", opt(enum_of("jobs", "status"))),
            InputValue::new("result", opt("JSON")),
            InputValue::new("error", opt(TypeRef::STRING)),
        ],
        [field("job", nn("Job"), "The job.")],
        update_job_progress,
    );
    add!(
        "cancelJob",
        "Cancels a queued or running job.",
        [InputValue::new("id", id())],
        [field("job", nn("Job"), "The job.")],
        cancel_job,
    );
    add!(
        "retryJob",
        "Puts a running job that failed an attempt back in the queue (refused once `retryCount` reaches \
         `maxRetries`), and records the retry.",
        [
            InputValue::new("id", id()),
            InputValue::new("error", nn(TypeRef::STRING)),
            InputValue::new("errorCategory", nn(TypeRef::STRING)),
            InputValue::new("delayMs", nn(TypeRef::INT)),
        ],
        [field("job", nn("Job"), "The job."), field("jobRetry", nn("JobRetry"), "The recorded retry.")],
        retry_job,
    );
    add!(
        "acknowledgeAlert",
        "Acknowledges an alert (stamps `acknowledgedAt` and `acknowledgedBy`; idempotent).",
        [InputValue::new("id", id())],
        [field("performanceAlert", nn("PerformanceAlert"), "The alert.")],
        acknowledge_alert,
    );
    add!(
        "resolveAlert",
        "Resolves an alert (stamps `resolvedAt` and `resolvedBy`, and acknowledges it if it was not; idempotent).",
        [InputValue::new("id", id())],
        [field("performanceAlert", nn("PerformanceAlert"), "The alert.")],
        resolve_alert,
    );
    let role = enum_of("workspace_members", "role");
    add!(
        "addWorkspaceMember",
        "Adds a user (by email; created if new) to a workspace. Needs the admin role; adding an owner needs the \
         owner role.",
        [
            InputValue::new("workspaceId", id()),
            InputValue::new("email", nn(TypeRef::STRING)),
            InputValue::new("role", nn(role.clone()))
                .default_value(async_graphql::Value::Enum(async_graphql::Name::new("MEMBER"))),
        ],
        [field("workspaceMember", nn("WorkspaceMember"), "The membership.")],
        add_workspace_member,
    );
    add!(
        "updateWorkspaceMemberRole",
        "Changes a member's role. Needs the admin role; granting or taking the owner role needs the owner role; the \
         last owner stays an owner.",
        [InputValue::new("id", id()), InputValue::new("role", nn(role))],
        [field("workspaceMember", nn("WorkspaceMember"), "The membership.")],
        update_workspace_member_role,
    );
    add!(
        "removeWorkspaceMember",
        "Removes a member (admins remove others; anyone may leave). The last owner stays.",
        [InputValue::new("id", id())],
        [field("deletedId", id(), "The id of the removed membership.")],
        remove_workspace_member,
    );
    add!(
        "createApiToken",
        "Creates an API token for the caller. The secret is in this payload only: it is stored as a hash.",
        [
            InputValue::new("name", nn(TypeRef::STRING)).description("A label."),
            InputValue::new("expiresAt", opt("DateTime")).description("When it stops working (in the future)."),
        ],
        [
            field("token", nn(TypeRef::STRING), "The secret: send it as `Authorization: Bearer <token>`."),
            field("apiToken", nn("ApiToken"), "The token's record."),
        ],
        create_api_token,
    );
    add!(
        "revokeApiToken",
        "Revokes one of the caller's API tokens (idempotent).",
        [InputValue::new("id", id())],
        [field("apiToken", nn("ApiToken"), "The token's record.")],
        revoke_api_token,
    );
    add!(
        "startExecution",
        "Starts a run of a workflow: an execution (pending, started by the caller) with one pending step per node.",
        [InputValue::new("workflowId", id()), InputValue::new("data", opt("JSON")).description("The input.")],
        [
            field("execution", nn("Execution"), "The execution."),
            field("executionSteps", rows("ExecutionStep"), "Its steps, in the workflow's node order."),
        ],
        start_execution,
    );
    add!(
        "pauseExecution",
        "Pauses a PENDING or RUNNING execution: no step starts until it is resumed (a running step may still \
         finish or fail).",
        [InputValue::new("id", id())],
        [field("execution", nn("Execution"), "The execution, PAUSED.")],
        pause_execution,
    );
    add!(
        "resumeExecution",
        "Resumes a PAUSED execution: RUNNING again when a step had started, PENDING otherwise.",
        [InputValue::new("id", id())],
        [field("execution", nn("Execution"), "The execution.")],
        resume_execution,
    );
    add!(
        "cancelExecution",
        "Cancels a PENDING, RUNNING or PAUSED execution: it becomes CANCELLED, its pending and running steps \
         become SKIPPED with the error `cancelled`, and none of its steps changes afterwards.",
        [InputValue::new("id", id())],
        [
            field("execution", nn("Execution"), "The execution, CANCELLED."),
            field("executionSteps", rows("ExecutionStep"), "The steps the cancel stopped (now SKIPPED), by id."),
        ],
        cancel_execution,
    );
    (mutation, builder)
}

fn without(columns: Vec<&'static Column>, names: &[&str]) -> Vec<&'static Column> {
    columns.into_iter().filter(|c| !names.contains(&c.name)).collect()
}

/// The columns a trace import gives.
fn import_columns() -> Vec<&'static Column> {
    let traces = table("traces");
    [
        "trace_id",
        "timestamp",
        "metadata",
        "steps",
        "spans",
        "total_tokens",
        "total_duration_ms",
        "span_count",
        "raw_data",
    ]
    .iter()
    .map(|name| column(traces, name))
    .collect()
}

// ---------------------------------------------------------------------------------------
// Arguments.

struct Args<'a> {
    ctx: &'a ResolverContext<'a>,
}

impl<'a> Args<'a> {
    fn id(&self, name: &str) -> async_graphql::Result<String> {
        Ok(self.ctx.args.try_get(name)?.string()?.to_owned())
    }

    /// An argument as JSON: `None` when absent, `Some(Null)` when null.
    fn json(&self, name: &str) -> AppResult<Option<Value>> {
        self.ctx.args.get(name).map(|v| input::json(&v)).transpose()
    }

    /// An optional argument checked as a value of a column: absent and `null` are `None`.
    fn present(&self, name: &str, table: &'static Table, column: &str) -> AppResult<Option<Value>> {
        match self.json(name)? {
            None | Some(Value::Null) => Ok(None),
            Some(value) => check(table, self::column(table, column), name, value).map(Some),
        }
    }

    /// An argument checked as a value of a column.
    fn column(&self, name: &str, table: &'static Table, column: &str) -> AppResult<Option<Value>> {
        let column = self::column(table, column);
        self.json(name)?.map(|value| check(table, column, name, value)).transpose()
    }

    /// Reads each object of a list argument (at most [`MAX_BULK`]).
    fn each<T>(
        &self,
        name: &str,
        mut read: impl FnMut(usize, &ObjectAccessor<'_>) -> AppResult<T>,
    ) -> async_graphql::Result<Vec<T>> {
        let list = self.ctx.args.try_get(name)?.list()?;
        if list.len() > MAX_BULK {
            return Err(AppError::bad_input(name, format!("`{name}` takes at most {MAX_BULK} items")).into());
        }
        let mut out = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            out.push(read(i, &item.object()?)?);
        }
        Ok(out)
    }
}

fn db<'a>(ctx: &ResolverContext<'a>) -> async_graphql::Result<&'a Db> {
    ctx.data::<Db>()
}

/// The workspace of a visible row, with the caller's role there at least `min`.
async fn authorize(
    tx: &mut Tx<'_>,
    access: &Access,
    table: &'static Table,
    row: &Record,
    min: WorkspaceMemberRole,
    what: &str,
) -> AppResult<String> {
    let workspace = workspace_of(tx, table, row).await?.ok_or_else(|| not_found(table, row.id()))?;
    require_role(access, &workspace, min, what)?;
    Ok(workspace)
}

/// Checks that every id of `table` named by `(field, id)` is in the workspace, in few
/// statements: `NOT_FOUND` naming the first field whose row is missing or elsewhere.
async fn all_in_workspace(
    tx: &mut Tx<'_>,
    access: &Access,
    table: &'static Table,
    workspace: &str,
    refs: &[(String, String)],
) -> AppResult<()> {
    let wanted: Vec<String> = refs.iter().map(|(_, id)| id.clone()).collect::<HashSet<_>>().into_iter().collect();
    let mut found = HashSet::new();
    for chunk in wanted.chunks(500) {
        let select =
            Select::ids(table, Cond::all(vec![one_of("id", chunk.to_vec()), access.in_workspace(table, workspace)]));
        let ids =
            tx.texts(Stmt::new().sql("SELECT iofold_ids.id AS v FROM (").select(select).sql(") AS iofold_ids")).await?;
        found.extend(ids.into_iter().flatten());
    }
    match refs.iter().find(|(_, id)| !found.contains(id)) {
        Some((field, id)) => Err(reference_not_found(table, field, id)),
        None => Ok(()),
    }
}

/// Rows of a table by id, in the given order.
async fn rows_in_order(tx: &mut Tx<'_>, table: &'static Table, ids: &[String]) -> AppResult<Vec<Record>> {
    let mut by_id = HashMap::new();
    for chunk in ids.chunks(500) {
        for record in tx.load(Select::rows(table, one_of("id", chunk.to_vec()))).await? {
            by_id.insert(record.id().to_owned(), record);
        }
    }
    ids.iter().map(|id| by_id.remove(id).ok_or_else(|| AppError::internal(format!("{id} vanished")))).collect()
}

/// A new row's id and timestamps.
fn stamped(table: &Table, mut row: Map<String, Value>, now: &Value) -> Map<String, Value> {
    row.insert("id".into(), Value::String(crate::models::new_id(table.id_prefix)));
    row.insert("created_at".into(), now.clone());
    row.insert("updated_at".into(), now.clone());
    row
}

// ---------------------------------------------------------------------------------------
// Ratings and eval executions.

async fn rate_trace(ctx: ResolverContext<'_>) -> async_graphql::Result<Payload> {
    let access = access(&ctx)?;
    let db = db(&ctx)?;
    let args = Args { ctx: &ctx };
    let feedback = table("feedback");
    let trace_id = args.id("traceId")?;
    let mut values = Map::new();
    for (arg, name) in [("rating", "rating"), ("ratingDetail", "rating_detail"), ("agentId", "agent_id")] {
        if let Some(value) = args.column(arg, feedback, name)? {
            values.insert(name.into(), value);
        }
    }
    let result: AppResult<Payload> = in_tx!(db, |tx| rate_trace_in(tx, &access, &trace_id, values.clone()).await);
    Ok(result?)
}

async fn rate_trace_in(
    tx: &mut Tx<'_>,
    access: &Access,
    trace_id: &str,
    mut values: Map<String, Value>,
) -> AppResult<Payload> {
    let (traces, feedback) = (table("traces"), table("feedback"));
    if catalog::table_of_id(trace_id).map(|t| t.name) != Some(traces.name) {
        return Err(not_found(traces, trace_id));
    }
    // Locks in the order every feedback writer takes them: the feedback row (when there is
    // one), then the trace `FOR UPDATE` (a rating changes the contradiction counts of the
    // evals that ran on the trace: see `rules::recount_evals`). The feedback is read again
    // under the trace's lock, in case a concurrent first rating created it meanwhile.
    let mut existing = tx.load_locked(Select::rows(feedback, eq("trace_id", trace_id)), Lock::NoKeyUpdate).await?;
    let trace = generic::visible_locked(tx, access, traces, trace_id, Some(Lock::Update)).await?;
    let workspace = authorize(tx, access, traces, &trace, WorkspaceMemberRole::Member, "rating a trace").await?;
    values.insert("trace_id".into(), Value::String(trace_id.to_owned()));
    if existing.is_empty() && tx.backend() == crate::db::Backend::Postgres {
        existing = tx.load_locked(Select::rows(feedback, eq("trace_id", trace_id)), Lock::NoKeyUpdate).await?;
    }
    let existing = existing.into_iter().next();
    let (record, created) = match existing {
        Some(old) => {
            let mut merged = old.to_map();
            merged.extend(values.clone());
            generic::check_references(tx, access, feedback, Some(&workspace), &values, &merged).await?;
            (generic::apply(tx, access, feedback, &old, &values).await?, false)
        }
        None => {
            generic::insert_checked(tx, access, feedback, Some(&workspace), &mut values).await?;
            let id = values.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
            (generic::reload(tx, feedback, &id).await?, true)
        }
    };
    Ok(Payload::new().row("feedback", record).value("created", created))
}

async fn record_eval_executions(ctx: ResolverContext<'_>) -> async_graphql::Result<Payload> {
    let access = access(&ctx)?;
    let db = db(&ctx)?;
    let args = Args { ctx: &ctx };
    let executions = table("eval_executions");
    let eval_id = args.id("evalId")?;
    let columns = without(policy::create_columns(executions), &["eval_id"]);
    let rows =
        args.each("executions", |i, object| input::read(executions, &columns, object, &format!("executions[{i}].")))?;
    let result: AppResult<Payload> = in_tx!(db, |tx| record_in(tx, &access, &eval_id, &rows).await);
    Ok(result?)
}

async fn record_in(tx: &mut Tx<'_>, access: &Access, eval_id: &str, rows: &[Map<String, Value>]) -> AppResult<Payload> {
    let (evals, executions, traces) = (table("evals"), table("eval_executions"), table("traces"));
    // The eval's lock comes last, with its recount: inserting executions waits for the
    // traces' rating writers (who lock the trace, then the evals), never the other way round.
    let eval = generic::visible_locked(tx, access, evals, eval_id, None).await?;
    let workspace =
        authorize(tx, access, evals, &eval, WorkspaceMemberRole::Member, "recording eval executions").await?;
    let refs: Vec<(String, String)> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| (format!("executions[{i}].traceId"), row["trace_id"].as_str().unwrap_or_default().to_owned()))
        .collect();
    all_in_workspace(tx, access, traces, &workspace, &refs).await?;
    let now = now_text();
    let rows: Vec<Map<String, Value>> = rows
        .iter()
        .map(|row| {
            let mut row = stamped(executions, row.clone(), &now);
            row.insert("eval_id".into(), Value::String(eval_id.to_owned()));
            row.entry("executed_at").or_insert_with(|| now.clone());
            complete(executions, row)
        })
        .collect();
    tx.insert_rows(executions, &rows, None).await?;
    rules::recount_evals(tx, vec![eval_id.to_owned()]).await?;
    let ids: Vec<String> = rows.iter().map(|r| r["id"].as_str().unwrap_or_default().to_owned()).collect();
    let recorded = rows_in_order(tx, executions, &ids).await?;
    Ok(Payload::new().row("eval", generic::reload(tx, evals, eval_id).await?).rows("evalExecutions", recorded))
}

/// Gives a row every input column of its table (absent ones as NULL), so rows inserted
/// together share one column list.
fn complete(table: &'static Table, mut row: Map<String, Value>) -> Map<String, Value> {
    for column in policy::create_columns(table) {
        if !column.has_default || column.nullable {
            row.entry(column.name).or_insert(Value::Null);
        }
    }
    row
}

// ---------------------------------------------------------------------------------------
// Trace imports and taskset tasks.

async fn import_traces(ctx: ResolverContext<'_>) -> async_graphql::Result<Payload> {
    let access = access(&ctx)?;
    let db = db(&ctx)?;
    let args = Args { ctx: &ctx };
    let traces = table("traces");
    let workspace_id = args.id("workspaceId")?;
    let integration_id =
        args.column("integrationId", traces, "integration_id")?.and_then(|v| v.as_str().map(str::to_owned));
    let source = args.column("source", traces, "source")?.unwrap_or_default();
    let columns = import_columns();
    let mut seen = HashSet::new();
    let rows = args.each("traces", |i, object| {
        let row = input::read(traces, &columns, object, &format!("traces[{i}].")).map_err(|e| of_trace(e, object))?;
        let trace_id = row.get("trace_id").and_then(Value::as_str).unwrap_or_default().to_owned();
        if !seen.insert(trace_id.clone()) {
            return Err(AppError::bad_input(
                format!("traces[{i}].traceId"),
                format!("`traces[{i}].traceId` repeats `{trace_id}`: each trace is imported once per call"),
            ));
        }
        Ok(row)
    })?;
    let result: AppResult<Payload> =
        in_tx!(db, |tx| import_in(tx, &access, &workspace_id, integration_id.as_deref(), &source, &rows).await);
    Ok(result?)
}

/// An error in a trace's steps also names the trace by its `traceId`.
fn of_trace(error: AppError, object: &ObjectAccessor<'_>) -> AppError {
    match error {
        AppError::BadUserInput { message, field: Some(field) } if field.contains(".steps") => {
            let trace_id = object.get("traceId").and_then(|v| v.string().ok().map(str::to_owned));
            let message = match trace_id {
                Some(trace_id) => format!("{message} (traceId `{trace_id}`)"),
                None => message,
            };
            AppError::BadUserInput { message, field: Some(field) }
        }
        other => other,
    }
}

async fn import_in(
    tx: &mut Tx<'_>,
    access: &Access,
    workspace_id: &str,
    integration_id: Option<&str>,
    source: &Value,
    rows: &[Map<String, Value>],
) -> AppResult<Payload> {
    let (workspaces, traces, integrations) = (table("workspaces"), table("traces"), table("integrations"));
    let exists = generic::workspace_of_id(tx, workspaces, workspace_id).await?.is_some();
    if !exists || access.role(workspace_id).is_none() {
        return Err(reference_not_found(workspaces, "workspaceId", workspace_id));
    }
    require_role(access, workspace_id, WorkspaceMemberRole::Member, "importing traces")?;
    if let Some(integration) = integration_id {
        let refs = [("integrationId".to_owned(), integration.to_owned())];
        all_in_workspace(tx, access, integrations, workspace_id, &refs).await?;
    }
    let trace_ids: Vec<String> = rows.iter().map(|r| r["trace_id"].as_str().unwrap_or_default().to_owned()).collect();
    let now = now_text();
    let prepared: Vec<Map<String, Value>> = rows
        .iter()
        .map(|row| {
            let mut row = stamped(traces, row.clone(), &now);
            for column in import_columns() {
                row.entry(column.name).or_insert(Value::Null);
            }
            row.insert("workspace_id".into(), Value::String(workspace_id.to_owned()));
            row.insert("integration_id".into(), integration_id.map_or(Value::Null, |i| Value::String(i.to_owned())));
            row.insert("source".into(), source.clone());
            row.insert("imported_at".into(), now.clone());
            rules::summarize_into(&mut row);
            row
        })
        .collect();
    let mut update: Vec<&'static str> = import_columns().iter().map(|c| c.name).filter(|c| *c != "trace_id").collect();
    update.extend(["integration_id", "input_preview", "output_preview", "step_count", "has_errors", "imported_at"]);
    let upsert = Upsert { key: &["workspace_id", "source", "trace_id"], update, now: Timestamp::now() };
    let written = tx.upsert_rows(traces, &prepared, &upsert).await?;
    // A row that kept the id made for it is new; one with another id was there already.
    let fresh: HashSet<&str> = prepared.iter().filter_map(|row| row["id"].as_str()).collect();
    let existing = written.iter().filter(|id| !fresh.contains(id.as_str())).count() as i64;
    let mut by_trace_id = HashMap::new();
    for chunk in written.chunks(500) {
        for record in tx.load(Select::rows(traces, one_of("id", chunk.to_vec()))).await? {
            by_trace_id.insert(record.text("trace_id").unwrap_or_default().to_owned(), record);
        }
    }
    let imported: Vec<Record> = trace_ids
        .iter()
        .map(|t| by_trace_id.remove(t).ok_or_else(|| AppError::internal(format!("trace {t} vanished"))))
        .collect::<AppResult<_>>()?;
    Ok(Payload::new()
        .value("imported", rows.len() as i64 - existing)
        .value("updated", existing)
        .rows("traces", imported))
}

async fn add_taskset_tasks(ctx: ResolverContext<'_>) -> async_graphql::Result<Payload> {
    let access = access(&ctx)?;
    let db = db(&ctx)?;
    let args = Args { ctx: &ctx };
    let tasks = table("taskset_tasks");
    let taskset_id = args.id("tasksetId")?;
    let columns = without(policy::create_columns(tasks), &["taskset_id"]);
    let rows = args.each("tasks", |i, object| input::read(tasks, &columns, object, &format!("tasks[{i}].")))?;
    let result: AppResult<Payload> = in_tx!(db, |tx| add_tasks_in(tx, &access, &taskset_id, &rows).await);
    Ok(result?)
}

async fn add_tasks_in(
    tx: &mut Tx<'_>,
    access: &Access,
    taskset_id: &str,
    rows: &[Map<String, Value>],
) -> AppResult<Payload> {
    let (tasksets, tasks, traces) = (table("tasksets"), table("taskset_tasks"), table("traces"));
    let taskset = generic::visible(tx, access, tasksets, taskset_id).await?;
    let workspace =
        authorize(tx, access, tasksets, &taskset, WorkspaceMemberRole::Member, "adding taskset tasks").await?;
    let refs: Vec<(String, String)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, row)| {
            row.get("source_trace_id")
                .and_then(Value::as_str)
                .map(|t| (format!("tasks[{i}].sourceTraceId"), t.to_owned()))
        })
        .collect();
    all_in_workspace(tx, access, traces, &workspace, &refs).await?;
    let now = now_text();
    let mut hashes = HashSet::new();
    let mut fresh = Vec::new();
    for row in rows {
        let mut row = row.clone();
        let merged = row.clone();
        rules::hash_into(&mut row, &merged);
        if hashes.insert(row["content_hash"].as_str().unwrap_or_default().to_owned()) {
            row.insert("taskset_id".into(), Value::String(taskset_id.to_owned()));
            fresh.push(complete(tasks, stamped(tasks, row, &now)));
        }
    }
    let mut known = HashSet::new();
    let all: Vec<String> = hashes.into_iter().collect();
    for chunk in all.chunks(500) {
        let select = Select {
            projection: crate::sql::Projection::Column("content_hash"),
            ..Select::rows(tasks, Cond::all(vec![eq("taskset_id", taskset_id), one_of("content_hash", chunk.to_vec())]))
        };
        let found = tx.texts(Stmt::new().sql("SELECT h.content_hash AS v FROM (").select(select).sql(") AS h")).await?;
        known.extend(found.into_iter().flatten());
    }
    fresh.retain(|row| !known.contains(row["content_hash"].as_str().unwrap_or_default()));
    tx.insert_rows(tasks, &fresh, None).await?;
    let ids: Vec<String> = fresh.iter().map(|r| r["id"].as_str().unwrap_or_default().to_owned()).collect();
    let added = rows_in_order(tx, tasks, &ids).await?;
    Ok(Payload::new()
        .value("added", added.len() as i64)
        .value("skipped", (rows.len() - added.len()) as i64)
        .rows("tasksetTasks", added))
}

// ---------------------------------------------------------------------------------------
// Activations.

async fn activate_eval(ctx: ResolverContext<'_>) -> async_graphql::Result<Payload> {
    let access = access(&ctx)?;
    let db = db(&ctx)?;
    let id = Args { ctx: &ctx }.id("id")?;
    let result: AppResult<Payload> =
        in_tx!(db, |tx| activate_in(tx, &access, table("evals"), "active_eval_id", "eval", &id).await);
    Ok(result?)
}

async fn activate_agent_version(ctx: ResolverContext<'_>) -> async_graphql::Result<Payload> {
    let access = access(&ctx)?;
    let db = db(&ctx)?;
    let id = Args { ctx: &ctx }.id("id")?;
    let result: AppResult<Payload> =
        in_tx!(db, |tx| activate_in(tx, &access, table("agent_versions"), "active_version_id", "agentVersion", &id)
            .await);
    Ok(result?)
}

/// Makes a row of `table` (evals or agent versions) its agent's one active row: any other
/// active row of the agent is archived, the agent's `pointer` names it.
async fn activate_in(
    tx: &mut Tx<'_>,
    access: &Access,
    table: &'static Table,
    pointer: &'static str,
    field: &str,
    id: &str,
) -> AppResult<Payload> {
    let agents = self::table("agents");
    // The agent's lock first, then its rows' in id order (as every recount takes them):
    // activations of one agent take turns, and never hold one row while waiting for another.
    let row = generic::visible_locked(tx, access, table, id, None).await?;
    let agent_id = row.text("agent_id").unwrap_or_default().to_owned();
    tx.lock(agents, std::slice::from_ref(&agent_id), Lock::NoKeyUpdate).await?;
    authorize(
        tx,
        access,
        table,
        &row,
        WorkspaceMemberRole::Member,
        &format!("activating {}", policy::a(table.type_name)),
    )
    .await?;
    let others = tx
        .load(Select::rows(
            table,
            Cond::all(vec![eq("agent_id", &agent_id), eq("status", "active"), Cond::Not(Box::new(eq("id", id)))]),
        ))
        .await?;
    let mut touched: Vec<String> = others.iter().map(|o| o.id().to_owned()).collect();
    touched.push(id.to_owned());
    tx.lock(table, &touched, Lock::NoKeyUpdate).await?;
    let row = generic::visible_locked(tx, access, table, id, None).await?;
    for other in others {
        tx.update(table, &other, &changes([("status", "archived".into())])).await?;
    }
    let mut activate = changes([("status", "active".into())]);
    if table.name == "evals" && row.text("status") != Some("active") {
        activate.insert("activated_at".into(), now_text());
    }
    let row = update_row(tx, table, id, &activate).await?.ok_or_else(|| not_found(table, id))?;
    let agent = update_row(tx, agents, &agent_id, &changes([(pointer, Value::String(id.to_owned()))]))
        .await?
        .ok_or_else(|| not_found(agents, &agent_id))?;
    Ok(Payload::new().row(field, row).row("agent", agent))
}

// ---------------------------------------------------------------------------------------
// Jobs.

struct JobArgs {
    progress: Option<Value>,
    status: Option<Value>,
    result: Option<Value>,
    error: Option<Value>,
}

async fn update_job_progress(ctx: ResolverContext<'_>) -> async_graphql::Result<Payload> {
    let access = access(&ctx)?;
    let db = db(&ctx)?;
    let args = Args { ctx: &ctx };
    let jobs = table("jobs");
    let id = args.id("id")?;
    let job_args = JobArgs {
        progress: args.present("progress", jobs, "progress")?,
        status: args.present("status", jobs, "status")?,
        result: args.column("result", jobs, "result")?,
        error: args.column("error", jobs, "error")?,
    };
    let result: AppResult<Payload> = in_tx!(db, |tx| job_progress_in(tx, &access, &id, &job_args).await);
    Ok(result?)
}

fn finished(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled")
}

async fn job_progress_in(tx: &mut Tx<'_>, access: &Access, id: &str, args: &JobArgs) -> AppResult<Payload> {
    let jobs = table("jobs");
    let job = generic::visible(tx, access, jobs, id).await?;
    authorize(tx, access, jobs, &job, WorkspaceMemberRole::Member, "reporting a job's progress").await?;
    let from = job.text("status").unwrap_or_default().to_owned();
    let to = args.status.as_ref().and_then(Value::as_str).unwrap_or(&from).to_owned();
    if finished(&from) {
        return Err(AppError::bad_input("status", format!("the job is already {}", from.to_ascii_uppercase())));
    }
    let mut update = Map::new();
    if to != from {
        let allowed = matches!(
            (from.as_str(), to.as_str()),
            ("queued", "running" | "cancelled") | ("running", "completed" | "failed" | "cancelled")
        );
        if !allowed {
            let hint = if to == "queued" { " (a retry goes through `retryJob`)" } else { "" };
            return Err(AppError::bad_input(
                "status",
                format!("a job cannot move from {} to {}{hint}", from.to_ascii_uppercase(), to.to_ascii_uppercase()),
            ));
        }
        update.insert("status".into(), Value::String(to.clone()));
        if to == "running" && job.get("started_at").is_null() {
            update.insert("started_at".into(), now_text());
        }
        if finished(&to) {
            update.insert("completed_at".into(), now_text());
        }
        if to == "failed" {
            update.insert("last_error_at".into(), now_text());
        }
        if to == "completed" && args.progress.is_none() {
            update.insert("progress".into(), 100.into());
        }
    }
    if let Some(progress) = &args.progress {
        let current = job.get("progress").as_i64().unwrap_or(0);
        if progress.as_i64().unwrap_or(0) < current {
            return Err(AppError::bad_input(
                "progress",
                format!("`progress` may not go down within an attempt (it is {current})"),
            ));
        }
        update.insert("progress".into(), progress.clone());
    }
    for (name, value) in [("result", &args.result), ("error", &args.error)] {
        if let Some(value) = value {
            update.insert(name.into(), value.clone());
        }
    }
    let job = generic::apply(tx, access, jobs, &job, &update).await?;
    Ok(Payload::new().row("job", job))
}

async fn cancel_job(ctx: ResolverContext<'_>) -> async_graphql::Result<Payload> {
    let access = access(&ctx)?;
    let db = db(&ctx)?;
    let id = Args { ctx: &ctx }.id("id")?;
    let result: AppResult<Payload> = in_tx!(db, |tx| cancel_in(tx, &access, &id).await);
    Ok(result?)
}

async fn cancel_in(tx: &mut Tx<'_>, access: &Access, id: &str) -> AppResult<Payload> {
    let jobs = table("jobs");
    let job = generic::visible(tx, access, jobs, id).await?;
    authorize(tx, access, jobs, &job, WorkspaceMemberRole::Member, "cancelling a job").await?;
    let status = job.text("status").unwrap_or_default();
    if finished(status) {
        return Err(AppError::bad_input("id", format!("the job is already {}", status.to_ascii_uppercase())));
    }
    let update = changes([("status", "cancelled".into()), ("completed_at", now_text())]);
    Ok(Payload::new().row("job", generic::apply(tx, access, jobs, &job, &update).await?))
}

async fn retry_job(ctx: ResolverContext<'_>) -> async_graphql::Result<Payload> {
    let access = access(&ctx)?;
    let db = db(&ctx)?;
    let args = Args { ctx: &ctx };
    let retries = table("job_retry_history");
    let id = args.id("id")?;
    let mut retry = Map::new();
    for (arg, name) in [("error", "error"), ("errorCategory", "error_category"), ("delayMs", "delay_ms")] {
        if let Some(value) = args.column(arg, retries, name)? {
            retry.insert(name.into(), value);
        }
    }
    let result: AppResult<Payload> = in_tx!(db, |tx| retry_in(tx, &access, &id, retry.clone()).await);
    Ok(result?)
}

async fn retry_in(tx: &mut Tx<'_>, access: &Access, id: &str, mut retry: Map<String, Value>) -> AppResult<Payload> {
    let (jobs, retries) = (table("jobs"), table("job_retry_history"));
    let job = generic::visible(tx, access, jobs, id).await?;
    authorize(tx, access, jobs, &job, WorkspaceMemberRole::Member, "retrying a job").await?;
    let status = job.text("status").unwrap_or_default();
    if status != "running" {
        return Err(AppError::bad_input(
            "id",
            format!("only a RUNNING job is retried (this one is {})", status.to_ascii_uppercase()),
        ));
    }
    let count = job.get("retry_count").as_i64().unwrap_or(0);
    let max = job.get("max_retries").as_i64().unwrap_or(0);
    if count >= max {
        return Err(AppError::bad_input("id", format!("the job has used all its {max} retries")));
    }
    let delay = retry.get("delay_ms").and_then(Value::as_i64).unwrap_or(0);
    let next = Timestamp::from_datetime(Timestamp::now().as_datetime() + chrono::Duration::milliseconds(delay));
    let update = changes([
        ("status", "queued".into()),
        ("retry_count", (count + 1).into()),
        ("progress", 0.into()),
        ("error", retry["error"].clone()),
        ("error_category", retry["error_category"].clone()),
        ("last_error_at", now_text()),
        ("next_retry_at", Value::String(next.to_text())),
    ]);
    let job = generic::apply(tx, access, jobs, &job, &update).await?;
    retry.insert("job_id".into(), Value::String(id.to_owned()));
    retry.insert("attempt".into(), (count + 1).into());
    let retry_id = tx.insert(retries, &retry).await?;
    Ok(Payload::new().row("job", job).row("jobRetry", generic::reload(tx, retries, &retry_id).await?))
}

// ---------------------------------------------------------------------------------------
// Alerts.

async fn acknowledge_alert(ctx: ResolverContext<'_>) -> async_graphql::Result<Payload> {
    alert(ctx, &["acknowledged"]).await
}

async fn resolve_alert(ctx: ResolverContext<'_>) -> async_graphql::Result<Payload> {
    alert(ctx, &["acknowledged", "resolved"]).await
}

async fn alert(ctx: ResolverContext<'_>, stamps: &'static [&'static str]) -> async_graphql::Result<Payload> {
    let access = access(&ctx)?;
    let db = db(&ctx)?;
    let id = Args { ctx: &ctx }.id("id")?;
    let result: AppResult<Payload> = in_tx!(db, |tx| alert_in(tx, &access, &id, stamps).await);
    Ok(result?)
}

async fn alert_in(tx: &mut Tx<'_>, access: &Access, id: &str, stamps: &[&str]) -> AppResult<Payload> {
    let alerts = table("performance_alerts");
    let alert = generic::visible(tx, access, alerts, id).await?;
    authorize(tx, access, alerts, &alert, WorkspaceMemberRole::Member, "handling an alert").await?;
    let by = access.user_id().map_or(Value::Null, |u| Value::String(u.to_owned()));
    let mut update = Map::new();
    for stamp in stamps {
        if alert.get(&format!("{stamp}_at")).is_null() {
            update.insert(format!("{stamp}_at"), now_text());
            update.insert(format!("{stamp}_by"), by.clone());
        }
    }
    Ok(Payload::new().row("performanceAlert", generic::apply(tx, access, alerts, &alert, &update).await?))
}

// ---------------------------------------------------------------------------------------
// Members and tokens.

async fn add_workspace_member(ctx: ResolverContext<'_>) -> async_graphql::Result<Payload> {
    let access = access(&ctx)?;
    let db = db(&ctx)?;
    let args = Args { ctx: &ctx };
    let workspace_id = args.id("workspaceId")?;
    let email = args.column("email", table("users"), "email")?.unwrap_or_default();
    let role = args.column("role", table("workspace_members"), "role")?.unwrap_or_else(|| "member".into());
    let result: AppResult<Payload> = in_tx!(db, |tx| add_member_in(tx, &access, &workspace_id, &email, &role).await);
    Ok(result?)
}

fn role_of(value: &Value) -> WorkspaceMemberRole {
    value.as_str().and_then(|r| r.parse().ok()).unwrap_or(WorkspaceMemberRole::Viewer)
}

async fn add_member_in(
    tx: &mut Tx<'_>,
    access: &Access,
    workspace_id: &str,
    email: &Value,
    role: &Value,
) -> AppResult<Payload> {
    let (workspaces, users, members) = (table("workspaces"), table("users"), table("workspace_members"));
    // Another tenant's workspace answers exactly like a missing one.
    if access.role(workspace_id).is_none() || generic::workspace_of_id(tx, workspaces, workspace_id).await?.is_none() {
        return Err(reference_not_found(workspaces, "workspaceId", workspace_id));
    }
    // One membership change of a workspace at a time (the last-owner rule counts owners).
    tx.lock(workspaces, &[workspace_id.to_owned()], Lock::NoKeyUpdate).await?;
    let min = if role_of(role) == WorkspaceMemberRole::Owner {
        WorkspaceMemberRole::Owner
    } else {
        WorkspaceMemberRole::Admin
    };
    require_role(access, workspace_id, min, "adding this member")?;
    let email_text = email.as_str().unwrap_or_default();
    let user_id = match tx.load(Select::rows(users, eq("email", email_text))).await?.into_iter().next() {
        Some(user) => user.id().to_owned(),
        None => tx.insert(users, &changes([("email", email.clone())])).await?,
    };
    let member = changes([
        ("workspace_id", Value::String(workspace_id.to_owned())),
        ("user_id", Value::String(user_id)),
        ("role", role.clone()),
    ]);
    let id = tx.insert(members, &member).await?;
    Ok(Payload::new().row("workspaceMember", generic::reload(tx, members, &id).await?))
}

/// How many owners a workspace has, with the workspace's row locked until the transaction
/// ends: two owners demoting each other at once cannot leave it without one.
async fn owners(tx: &mut Tx<'_>, workspace_id: &str) -> AppResult<i64> {
    tx.lock(table("workspaces"), &[workspace_id.to_owned()], Lock::NoKeyUpdate).await?;
    tx.count_rows(table("workspace_members"), Cond::all(vec![eq("workspace_id", workspace_id), eq("role", "owner")]))
        .await
}

async fn update_workspace_member_role(ctx: ResolverContext<'_>) -> async_graphql::Result<Payload> {
    let access = access(&ctx)?;
    let db = db(&ctx)?;
    let args = Args { ctx: &ctx };
    let id = args.id("id")?;
    let role = args.column("role", table("workspace_members"), "role")?.unwrap_or_default();
    let result: AppResult<Payload> = in_tx!(db, |tx| member_role_in(tx, &access, &id, &role).await);
    Ok(result?)
}

async fn member_role_in(tx: &mut Tx<'_>, access: &Access, id: &str, role: &Value) -> AppResult<Payload> {
    let members = table("workspace_members");
    let member = generic::visible(tx, access, members, id).await?;
    let workspace_id = member.text("workspace_id").unwrap_or_default().to_owned();
    let was_owner = member.text("role") == Some("owner");
    let min = if was_owner || role_of(role) == WorkspaceMemberRole::Owner {
        WorkspaceMemberRole::Owner
    } else {
        WorkspaceMemberRole::Admin
    };
    require_role(access, &workspace_id, min, "changing this member's role")?;
    if was_owner && role_of(role) != WorkspaceMemberRole::Owner && owners(tx, &workspace_id).await? <= 1 {
        return Err(AppError::bad_input("role", "the last owner stays an owner: make another member owner first"));
    }
    let member = generic::apply(tx, access, members, &member, &changes([("role", role.clone())])).await?;
    Ok(Payload::new().row("workspaceMember", member))
}

async fn remove_workspace_member(ctx: ResolverContext<'_>) -> async_graphql::Result<Payload> {
    let access = access(&ctx)?;
    let db = db(&ctx)?;
    let id = Args { ctx: &ctx }.id("id")?;
    let result: AppResult<Payload> = in_tx!(db, |tx| remove_member_in(tx, &access, &id).await);
    Ok(result?)
}

async fn remove_member_in(tx: &mut Tx<'_>, access: &Access, id: &str) -> AppResult<Payload> {
    let members = table("workspace_members");
    let member = generic::visible(tx, access, members, id).await?;
    let workspace_id = member.text("workspace_id").unwrap_or_default().to_owned();
    let is_owner = member.text("role") == Some("owner");
    let leaving = access.user_id().is_some_and(|u| Some(u) == member.text("user_id"));
    if !leaving {
        let min = if is_owner { WorkspaceMemberRole::Owner } else { WorkspaceMemberRole::Admin };
        require_role(access, &workspace_id, min, "removing this member")?;
    }
    if is_owner && owners(tx, &workspace_id).await? <= 1 {
        return Err(AppError::bad_input("id", "the last owner stays: make another member owner first"));
    }
    tx.delete(members, id).await?;
    // The removed membership rides along (no field shows it), so the member's open WebSocket
    // connections hear of it ([`crate::events::Event::of_record`]).
    Ok(Payload::new().value("deletedId", id.to_owned()).row("removedMember", member))
}

async fn create_api_token(ctx: ResolverContext<'_>) -> async_graphql::Result<Payload> {
    let access = access(&ctx)?;
    let db = db(&ctx)?;
    let args = Args { ctx: &ctx };
    let tokens = table("api_tokens");
    let user_id = access
        .user_id()
        .ok_or_else(|| AppError::Forbidden("the admin secret has no user to own a token: use the CLI".into()))?
        .to_owned();
    let name = args.column("name", tokens, "name")?.unwrap_or_default();
    let expires_at = args.column("expiresAt", tokens, "expires_at")?.unwrap_or(Value::Null);
    if expires_at.as_str().is_some_and(|at| at <= Timestamp::now().to_text().as_str()) {
        return Err(AppError::bad_input("expiresAt", "`expiresAt` must be in the future").into());
    }
    let secret = new_token();
    let row = changes([
        ("user_id", Value::String(user_id)),
        ("name", name),
        ("token_hash", Value::String(token_hash(&secret))),
        ("expires_at", expires_at),
    ]);
    let result: AppResult<Record> = in_tx!(db, |tx| {
        let id = tx.insert(tokens, &row).await?;
        generic::reload(tx, tokens, &id).await
    });
    Ok(Payload::new().value("token", secret).row("apiToken", result?))
}

async fn revoke_api_token(ctx: ResolverContext<'_>) -> async_graphql::Result<Payload> {
    let access = access(&ctx)?;
    let db = db(&ctx)?;
    let id = Args { ctx: &ctx }.id("id")?;
    let result: AppResult<Record> = in_tx!(db, |tx| {
        let tokens = table("api_tokens");
        let token = generic::visible(tx, &access, tokens, &id).await?;
        let update = if token.get("revoked_at").is_null() { changes([("revoked_at", now_text())]) } else { Map::new() };
        generic::apply(tx, &access, tokens, &token, &update).await
    });
    Ok(Payload::new().row("apiToken", result?))
}

// ---------------------------------------------------------------------------------------
// Workflow runs.

async fn start_execution(ctx: ResolverContext<'_>) -> async_graphql::Result<Payload> {
    let access = access(&ctx)?;
    let db = db(&ctx)?;
    let args = Args { ctx: &ctx };
    let workflow_id = args.id("workflowId")?;
    let data = args.column("data", table("executions"), "data")?.unwrap_or(Value::Null);
    let result: AppResult<Payload> = in_tx!(db, |tx| start_in(tx, &access, &workflow_id, &data).await);
    Ok(result?)
}

async fn start_in(tx: &mut Tx<'_>, access: &Access, workflow_id: &str, data: &Value) -> AppResult<Payload> {
    let (workflows, executions, steps) = (table("workflows"), table("executions"), table("execution_steps"));
    let workflow = generic::visible(tx, access, workflows, workflow_id).await?;
    authorize(tx, access, workflows, &workflow, WorkspaceMemberRole::Member, "starting a workflow").await?;
    let execution = changes([
        ("workflow_id", Value::String(workflow_id.to_owned())),
        ("user_id", access.user_id().map_or(Value::Null, |u| Value::String(u.to_owned()))),
        ("data", data.clone()),
    ]);
    let execution_id = tx.insert(executions, &execution).await?;
    let now = now_text();
    let rows: Vec<Map<String, Value>> = workflow
        .get("nodes")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|node| node.get("id").and_then(Value::as_str))
        .map(|node_id| {
            stamped(
                steps,
                changes([
                    ("execution_id", Value::String(execution_id.clone())),
                    ("node_id", Value::String(node_id.to_owned())),
                ]),
                &now,
            )
        })
        .collect();
    tx.insert_rows(steps, &rows, None).await?;
    let ids: Vec<String> = rows.iter().map(|r| r["id"].as_str().unwrap_or_default().to_owned()).collect();
    let step_records = rows_in_order(tx, steps, &ids).await?;
    Ok(Payload::new()
        .row("execution", generic::reload(tx, executions, &execution_id).await?)
        .rows("executionSteps", step_records))
}

/// What `pauseExecution`, `resumeExecution` and `cancelExecution` do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Pause,
    Resume,
    Cancel,
}

async fn pause_execution(ctx: ResolverContext<'_>) -> async_graphql::Result<Payload> {
    control_execution(ctx, Control::Pause).await
}

async fn resume_execution(ctx: ResolverContext<'_>) -> async_graphql::Result<Payload> {
    control_execution(ctx, Control::Resume).await
}

async fn cancel_execution(ctx: ResolverContext<'_>) -> async_graphql::Result<Payload> {
    control_execution(ctx, Control::Cancel).await
}

async fn control_execution(ctx: ResolverContext<'_>, control: Control) -> async_graphql::Result<Payload> {
    let access = access(&ctx)?;
    let db = db(&ctx)?;
    let id = Args { ctx: &ctx }.id("id")?;
    let result: AppResult<Payload> = in_tx!(db, |tx| control_in(tx, &access, &id, control).await);
    Ok(result?)
}

/// The execution lifecycle's controls: pending | running → paused → pending | running, and
/// pending | running | paused → cancelled. Any other move is `BAD_USER_INPUT` on `id`, and
/// nothing changes.
async fn control_in(tx: &mut Tx<'_>, access: &Access, id: &str, control: Control) -> AppResult<Payload> {
    let (executions, steps) = (table("executions"), table("execution_steps"));
    let what = match control {
        Control::Pause => "pausing an execution",
        Control::Resume => "resuming an execution",
        Control::Cancel => "cancelling an execution",
    };
    // Locks in the order step updates take them (the step, then its execution): a cancel
    // locks the execution's steps (in id order) before the execution itself, so it never
    // waits in a cycle with a step update.
    let execution = generic::visible_locked(tx, access, executions, id, None).await?;
    authorize(tx, access, executions, &execution, WorkspaceMemberRole::Member, what).await?;
    if control == Control::Cancel {
        let ids = tx
            .texts(
                Stmt::new()
                    .sql("SELECT ")
                    .ident("id")
                    .sql(" AS v FROM ")
                    .ident("execution_steps")
                    .sql(" WHERE ")
                    .ident("execution_id")
                    .sql(" = ")
                    .text(id),
            )
            .await?;
        let ids: Vec<String> = ids.into_iter().flatten().collect();
        tx.lock(steps, &ids, Lock::NoKeyUpdate).await?;
    }
    // Read again under the execution's lock: as the last writer left it.
    let execution = generic::visible(tx, access, executions, id).await?;
    let status = execution.text("status").unwrap_or_default().to_owned();
    let shown = status.to_ascii_uppercase();
    let now = now_text();
    let update = match (control, status.as_str()) {
        (Control::Pause, "pending" | "running") => changes([("status", "paused".into())]),
        (Control::Pause, _) => {
            return Err(AppError::bad_input(
                "id",
                format!("only a PENDING or RUNNING execution is paused (this one is {shown})"),
            ))
        }
        (Control::Resume, "paused") => {
            let next = if execution.get("started_at").is_null() { "pending" } else { "running" };
            changes([("status", next.into())])
        }
        (Control::Resume, _) => {
            return Err(AppError::bad_input("id", format!("only a PAUSED execution is resumed (this one is {shown})")))
        }
        (Control::Cancel, "pending" | "running" | "paused") => {
            changes([("status", "cancelled".into()), ("completed_at", now.clone())])
        }
        (Control::Cancel, _) => {
            return Err(AppError::bad_input(
                "id",
                format!("the execution is already {shown}: only a PENDING, RUNNING or PAUSED execution is cancelled"),
            ))
        }
    };
    let mut stopped = Vec::new();
    if control == Control::Cancel {
        let open = tx
            .load(Select {
                order: vec![crate::sql::OrderKey { column: "id", desc: false, nullable: false }],
                ..Select::rows(
                    steps,
                    Cond::all(vec![
                        eq("execution_id", id),
                        one_of("status", ["pending".to_owned(), "running".to_owned()]),
                    ]),
                )
            })
            .await?;
        let cancelled =
            changes([("status", "skipped".into()), ("error", "cancelled".into()), ("completed_at", now.clone())]);
        for step in open {
            let step = tx
                .update_returning(steps, &step, &cancelled)
                .await?
                .ok_or_else(|| AppError::internal(format!("execution step {} vanished", step.id())))?;
            stopped.push(step);
        }
    }
    let execution = generic::apply(tx, access, executions, &execution, &update).await?;
    let payload = Payload::new().row("execution", execution);
    Ok(if control == Control::Cancel { payload.rows("executionSteps", stopped) } else { payload })
}
