//! The design document's requirements (issue 13), through the HTTP router (and a WebSocket,
//! and the binary for the CLI) on both backends: controlling workflow executions, trace
//! steps checked on every write path, the dashboards' semantics, `Agent.traces`.

use std::collections::HashMap;

use iofold_graph::db::Backend;
use serde_json::{json, Value as Json};

use crate::both_backends;
use crate::support::app::TestApp;
use crate::support::cli::{cmd, out as text};
use crate::support::db::TestDb;
use crate::support::fixtures::{count, execute, quote, Fixtures, Value};
use crate::support::ws::{bearer, live_subscriptions, Live, Ws, QUIET, WAIT};

// ---------------------------------------------------------------------------------------
// Workflow executions: pause, resume, cancel, result.

/// Workspace A (an owner and a viewer) and workspace B (an owner), with a 3-node workflow in A.
struct Runs {
    app: TestApp,
    token_a: String,
    viewer_a: String,
    token_b: String,
    workflow: Json,
}

async fn runs(backend: Backend) -> Runs {
    let app = TestApp::new(backend).await;
    let fx = Fixtures::new(&app.state.db);
    let (ws_a, owner_a) = fx.workspace_with_owner().await;
    let (_, owner_b) = fx.workspace_with_owner().await;
    let viewer = fx.insert("users", "", &[]).await;
    fx.insert("workspace_members", &ws_a, &[("user_id", (&viewer).into()), ("role", "viewer".into())]).await;
    let token_a = fx.token_for(&owner_a).await;
    let viewer_a = fx.token_for(&viewer).await;
    let token_b = fx.token_for(&owner_b).await;
    let created = app
        .graphql(
            Some(&token_a),
            "mutation($ws: ID!) { createWorkflow(input: {workspaceId: $ws, name: \"w\", nodes: [{id: \"a\", type: \"start\"}, \
             {id: \"b\", type: \"llm\"}, {id: \"c\", type: \"end\"}], edges: [{id: \"ab\", source: \"a\", target: \"b\"}, \
             {id: \"bc\", source: \"b\", target: \"c\"}]}) { workflow { id } } }",
            json!({"ws": ws_a}),
        )
        .await;
    let workflow = created.data()["createWorkflow"]["workflow"]["id"].clone();
    Runs { app, token_a, viewer_a, token_b, workflow }
}

const START: &str =
    "mutation($id: ID!) { startExecution(workflowId: $id) { execution { id status } executionSteps { id nodeId } } }";
const PAUSE: &str = "mutation($id: ID!) { pauseExecution(id: $id) { execution { id status } } }";
const RESUME: &str = "mutation($id: ID!) { resumeExecution(id: $id) { execution { id status startedAt } } }";
const CANCEL: &str = "mutation($id: ID!) { cancelExecution(id: $id) { execution { id status completedAt } \
    executionSteps { id nodeId status error completedAt } } }";
const STEP: &str = "mutation($id: ID!, $patch: ExecutionStepPatch!) { updateExecutionStep(id: $id, patch: $patch) \
    { executionStep { id status } } }";
const READ: &str = "query($id: ID!) { execution(id: $id) { status result startedAt completedAt updatedAt \
    executionSteps(orderBy: [{field: NODE_ID}]) { nodes { nodeId status error output updatedAt } } } }";
const WATCH: &str = "subscription($id: ID!) { executionUpdated(executionId: $id) { id status result \
    executionSteps(orderBy: [{field: NODE_ID}]) { nodes { nodeId status } } } }";

impl Runs {
    async fn start(&self) -> (String, HashMap<String, Json>) {
        let started = self.app.graphql(Some(&self.token_a), START, json!({"id": self.workflow})).await;
        let started = started.data()["startExecution"].clone();
        let steps = started["executionSteps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["nodeId"].as_str().unwrap().to_owned(), s["id"].clone()))
            .collect();
        (started["execution"]["id"].as_str().unwrap().to_owned(), steps)
    }

    async fn read(&self, id: &str) -> Json {
        self.app.graphql(Some(&self.token_a), READ, json!({"id": id})).await.data()["execution"].clone()
    }

    async fn step(&self, id: &Json, patch: Json) -> crate::support::app::TestResponse {
        self.app.graphql(Some(&self.token_a), STEP, json!({"id": id, "patch": patch})).await
    }
}

/// Asserts an error's code and field, and that the execution (and its steps) are as they were.
#[track_caller]
fn refused(response: &crate::support::app::TestResponse, code: &str, field: &str) {
    assert_eq!(response.error_code(), Some(code), "{}", response.body);
    assert_eq!(response.body["errors"][0]["extensions"]["field"], json!(field), "{}", response.body);
    assert!(response.body["data"].is_null(), "{}", response.body);
}

/// The next executionUpdated event: (execution status, [(node, step status)]).
async fn event(ws: &mut Ws) -> (String, Vec<(String, String)>) {
    let message = ws.next(WAIT).await.expect("an executionUpdated event");
    let pushed = &message["payload"]["data"]["executionUpdated"];
    assert!(pushed.is_object(), "{message}");
    let steps = pushed["executionSteps"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["nodeId"].as_str().unwrap().to_owned(), s["status"].as_str().unwrap().to_owned()))
        .collect();
    (pushed["status"].as_str().unwrap().to_owned(), steps)
}

fn steps(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(n, s)| (n.to_string(), s.to_string())).collect()
}

both_backends! {
    async fn executions_pause_resume_and_cancel_along_their_lifecycle(backend: Backend) {
        let r = runs(backend).await;
        let (id, step) = r.start().await;
        let live = Live::start(r.app.state.clone()).await;
        let mut ws = Ws::initialised(&live.url(), "graphql-transport-ws", bearer(&r.token_a)).await;
        ws.subscribe("run", WATCH, json!({"id": id})).await;
        live_subscriptions(&r.app.state, 1).await;

        // pending → paused: no step starts while paused.
        let paused = r.app.graphql(Some(&r.token_a), PAUSE, json!({"id": id})).await;
        assert_eq!(paused.data()["pauseExecution"]["execution"]["status"], "PAUSED");
        assert_eq!(event(&mut ws).await.0, "PAUSED");
        let before = r.read(&id).await;
        refused(&r.step(&step["a"], json!({"status": "RUNNING"})).await, "BAD_USER_INPUT", "status");
        refused(&r.app.graphql(Some(&r.token_a), PAUSE, json!({"id": id})).await, "BAD_USER_INPUT", "id");
        assert_eq!(r.read(&id).await, before, "refusals change nothing");

        // paused → pending (no step had started).
        let resumed = r.app.graphql(Some(&r.token_a), RESUME, json!({"id": id})).await;
        assert_eq!(resumed.data()["resumeExecution"]["execution"]["status"], "PENDING");
        assert_eq!(event(&mut ws).await.0, "PENDING");
        let before = r.read(&id).await;
        refused(&r.app.graphql(Some(&r.token_a), RESUME, json!({"id": id})).await, "BAD_USER_INPUT", "id");
        assert_eq!(r.read(&id).await, before);

        // A step runs; the execution follows; paused while it runs, the step may still finish.
        r.step(&step["a"], json!({"status": "RUNNING"})).await.data();
        assert_eq!(event(&mut ws).await, ("RUNNING".into(), steps(&[("a", "RUNNING"), ("b", "PENDING"), ("c", "PENDING")])));
        let before = r.read(&id).await;
        refused(&r.app.graphql(Some(&r.token_a), RESUME, json!({"id": id})).await, "BAD_USER_INPUT", "id");
        assert_eq!(r.read(&id).await, before, "resuming a running execution changes nothing");
        r.app.graphql(Some(&r.token_a), PAUSE, json!({"id": id})).await.data();
        assert_eq!(event(&mut ws).await.0, "PAUSED");
        r.step(&step["a"], json!({"status": "COMPLETED", "output": {"ok": true}})).await.data();
        // paused → running (a step had started).
        let resumed = r.app.graphql(Some(&r.token_a), RESUME, json!({"id": id})).await;
        assert_eq!(resumed.data()["resumeExecution"]["execution"]["status"], "RUNNING");
        assert!(resumed.data()["resumeExecution"]["execution"]["startedAt"].is_string());
        assert_eq!(event(&mut ws).await, ("RUNNING".into(), steps(&[("a", "COMPLETED"), ("b", "PENDING"), ("c", "PENDING")])));
        r.step(&step["b"], json!({"status": "RUNNING"})).await.data();

        // running → cancelled: the running and pending steps stop (SKIPPED, error `cancelled`).
        let cancelled = r.app.graphql(Some(&r.token_a), CANCEL, json!({"id": id})).await;
        let payload = &cancelled.data()["cancelExecution"];
        assert_eq!(payload["execution"]["status"], "CANCELLED");
        assert!(payload["execution"]["completedAt"].is_string());
        let stopped: Vec<(&str, &str, &str)> = payload["executionSteps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["nodeId"].as_str().unwrap(), s["status"].as_str().unwrap(), s["error"].as_str().unwrap()))
            .collect();
        let mut stopped_sorted = stopped.clone();
        stopped_sorted.sort();
        assert_eq!(stopped_sorted, [("b", "SKIPPED", "cancelled"), ("c", "SKIPPED", "cancelled")]);
        assert_eq!(event(&mut ws).await, ("CANCELLED".into(), steps(&[("a", "COMPLETED"), ("b", "SKIPPED"), ("c", "SKIPPED")])));
        let after_cancel = r.read(&id).await;
        assert_eq!(after_cancel["executionSteps"]["nodes"][0]["error"], json!(null), "a finished step keeps its state");

        // Nothing moves afterwards: no step update (status or not), no pause, resume or cancel.
        refused(&r.step(&step["b"], json!({"status": "COMPLETED"})).await, "BAD_USER_INPUT", "status");
        refused(&r.step(&step["a"], json!({"output": {"late": true}})).await, "BAD_USER_INPUT", "output");
        let late = r.step(&step["c"], json!({"status": "RUNNING"})).await;
        refused(&late, "BAD_USER_INPUT", "status");
        assert!(late.body["errors"][0]["message"].as_str().unwrap().contains("CANCELLED"), "{}", late.body);
        for op in [PAUSE, RESUME, CANCEL] {
            let response = r.app.graphql(Some(&r.token_a), op, json!({"id": id})).await;
            refused(&response, "BAD_USER_INPUT", "id");
            assert!(response.body["errors"][0]["message"].as_str().unwrap().contains("CANCELLED"), "{}", response.body);
        }
        assert_eq!(r.read(&id).await, after_cancel, "the cancelled execution and its steps are as the cancel left them");
        assert_eq!(ws.next(QUIET).await, None, "refusals announce nothing");

        // The result of a run is recorded with updateExecution, and announced.
        let recorded = r.app.graphql(Some(&r.token_a), "mutation($id: ID!) { updateExecution(id: $id, patch: {result: {contradictions: 2}}) { execution { result } } }", json!({"id": id})).await;
        assert_eq!(recorded.data()["updateExecution"]["execution"]["result"], json!({"contradictions": 2}));
        assert_eq!(event(&mut ws).await.0, "CANCELLED");
        assert_eq!(r.read(&id).await["result"], json!({"contradictions": 2}));
        let status = r.app.graphql(Some(&r.token_a), "mutation($id: ID!) { updateExecution(id: $id, patch: {status: COMPLETED}) { execution { id } } }", json!({"id": id})).await;
        assert_eq!(status.error_code(), Some("GRAPHQL_VALIDATION_FAILED"), "the status moves only by the lifecycle");
    }
}

both_backends! {
    async fn finished_executions_and_other_callers_cannot_be_controlled(backend: Backend) {
        let r = runs(backend).await;
        // A completed run cannot be cancelled or paused.
        let (done, step) = r.start().await;
        for node in ["a", "b", "c"] {
            r.step(&step[node], json!({"status": "RUNNING"})).await.data();
            r.step(&step[node], json!({"status": "COMPLETED"})).await.data();
        }
        let before = r.read(&done).await;
        assert_eq!(before["status"], "COMPLETED");
        for op in [CANCEL, PAUSE, RESUME] {
            let response = r.app.graphql(Some(&r.token_a), op, json!({"id": done})).await;
            refused(&response, "BAD_USER_INPUT", "id");
            assert!(response.body["errors"][0]["message"].as_str().unwrap().contains("COMPLETED"), "{}", response.body);
        }
        assert_eq!(r.read(&done).await, before, "nothing changed");
        // A failed run neither.
        let (failed, step) = r.start().await;
        r.step(&step["a"], json!({"status": "RUNNING"})).await.data();
        for _ in 0..4 {
            // max_retries (3) failures go back to pending; the fourth fails the run.
            let response = r.step(&step["a"], json!({"status": "FAILED", "error": "boom"})).await;
            response.data();
            if r.read(&failed).await["status"] == "FAILED" {
                break;
            }
            r.step(&step["a"], json!({"status": "RUNNING"})).await.data();
        }
        assert_eq!(r.read(&failed).await["status"], "FAILED");
        refused(&r.app.graphql(Some(&r.token_a), CANCEL, json!({"id": failed})).await, "BAD_USER_INPUT", "id");

        // Another workspace's execution is exactly a missing one; a viewer may not control it.
        let (id, _) = r.start().await;
        let missing = "execution_00000000-0000-7000-8000-000000000000";
        for op in [PAUSE, RESUME, CANCEL] {
            let theirs = r.app.graphql(Some(&r.token_b), op, json!({"id": id})).await;
            let nowhere = r.app.graphql(Some(&r.token_b), op, json!({"id": missing})).await;
            assert_eq!(theirs.error_code(), Some("NOT_FOUND"), "{}", theirs.body);
            assert_eq!(theirs.body.to_string().replace(&id, "X"), nowhere.body.to_string().replace(missing, "X"));
            let viewer = r.app.graphql(Some(&r.viewer_a), op, json!({"id": id})).await;
            assert_eq!(viewer.error_code(), Some("FORBIDDEN"), "{}", viewer.body);
        }
        let read = r.read(&id).await;
        assert_eq!(read["status"], "PENDING", "still pending");
        assert!(read["executionSteps"]["nodes"].as_array().unwrap().iter().all(|s| s["status"] == "PENDING"));
        // A pending run is cancelled directly; every step was pending.
        let cancelled = r.app.graphql(Some(&r.token_a), CANCEL, json!({"id": id})).await;
        assert_eq!(cancelled.data()["cancelExecution"]["executionSteps"].as_array().unwrap().len(), 3);
        // The admin secret controls every workspace's runs.
        let (other, _) = r.start().await;
        let paused = r.app.graphql_admin(PAUSE, json!({"id": other})).await;
        assert_eq!(paused.data()["pauseExecution"]["execution"]["status"], "PAUSED");
        let cancelled = r.app.graphql_admin(CANCEL, json!({"id": other})).await;
        assert_eq!(cancelled.data()["cancelExecution"]["execution"]["status"], "CANCELLED");
    }
}

both_backends! {
    async fn a_cancel_and_concurrent_step_updates_take_turns(backend: Backend) {
        let r = runs(backend).await;
        let mut outcomes = HashMap::new();
        for round in 0..6 {
            let (id, step) = r.start().await;
            // Three runners drive their steps while a fourth client cancels, all at once.
            let mut clients: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = Vec<Json>> + '_>>> = Vec::new();
            for node in ["a", "b", "c"] {
                let step = step[node].clone();
                let r = &r;
                clients.push(Box::pin(async move {
                    let mut answers = Vec::new();
                    for status in ["RUNNING", "COMPLETED"] {
                        answers.push(r.step(&step, json!({"status": status, "output": {"round": round}})).await.body);
                    }
                    answers
                }));
            }
            let r2 = &r;
            let cancel_id = id.clone();
            clients.push(Box::pin(async move {
                if round % 2 == 1 {
                    tokio::task::yield_now().await;
                }
                vec![r2.app.graphql(Some(&r2.token_a), CANCEL, json!({"id": cancel_id})).await.body]
            }));
            let answers: Vec<Json> = futures_util::future::join_all(clients).await.into_iter().flatten().collect();
            for answer in &answers {
                if let Some(code) = answer["errors"][0]["extensions"]["code"].as_str() {
                    assert_eq!(code, "BAD_USER_INPUT", "only refused moves: {answer}");
                }
            }
            let run = r.read(&id).await;
            let steps = run["executionSteps"]["nodes"].as_array().unwrap();
            match run["status"].as_str().unwrap() {
                "CANCELLED" => {
                    let at = run["completedAt"].as_str().unwrap();
                    for s in steps {
                        match s["status"].as_str().unwrap() {
                            // Finished before the cancel took the execution's lock.
                            "COMPLETED" => assert!(s["updatedAt"].as_str().unwrap() <= at, "{run}"),
                            "SKIPPED" => assert_eq!(s["error"], "cancelled", "{run}"),
                            other => panic!("a {other} step in a cancelled run: {run}"),
                        }
                    }
                }
                "COMPLETED" => assert!(steps.iter().all(|s| s["status"] == "COMPLETED"), "{run}"),
                other => panic!("the run ended {other}: {run}"),
            }
            *outcomes.entry(run["status"].as_str().unwrap().to_owned()).or_insert(0) += 1;
        }
        assert!(outcomes.contains_key("CANCELLED"), "{outcomes:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Trace steps.

const IMPORT: &str = "mutation($ws: ID!, $traces: [TraceImportInput!]!) { importTraces(workspaceId: $ws, \
    source: LANGFUSE, traces: $traces) { imported traces { id stepCount } } }";

fn trace(n: usize, steps: Json) -> Json {
    json!({"traceId": format!("t-{n}"), "timestamp": "2026-01-15T09:00:00Z", "steps": steps})
}

/// A step with every documented field.
fn full_step(n: usize) -> Json {
    json!({
        "step_id": format!("s{n}"),
        "timestamp": "2026-01-15T09:00:01.5+01:00",
        "messages_added": [{"role": "user", "content": "hi"}],
        "tool_calls": [{"name": "search", "arguments": {"q": "x"}}],
        "input": {"q": "x"},
        "output": "answer",
        "error": null,
        "metadata": {"model": "m"}
    })
}

both_backends! {
    async fn trace_steps_are_checked_on_every_write_path(backend: Backend) {
        let app = TestApp::new(backend).await;
        let fx = Fixtures::new(&app.state.db);
        let (ws, owner) = fx.workspace_with_owner().await;
        let token = fx.token_for(&owner).await;
        let traces_in = || count(&app.state.db, "traces", None);

        // Every documented field with its type, or none of them (lenient on absence).
        let good = vec![trace(0, json!([full_step(0), full_step(1)])), trace(1, json!([{"input": "q"}, {}])), trace(2, json!([]))];
        let imported = app.graphql(Some(&token), IMPORT, json!({"ws": ws, "traces": good})).await;
        assert_eq!(imported.data()["importTraces"]["imported"], 3);
        assert_eq!(traces_in().await, 3);

        // Each wrong type is refused, naming the trace (index and traceId), the step and the field.
        let cases = [
            ("timestamp", json!("not a date"), "timestamp"),
            ("timestamp", json!(1736931600), "timestamp"),
            ("step_id", json!(7), "step_id"),
            ("messages_added", json!({"role": "user"}), "messages_added"),
            ("tool_calls", json!("search"), "tool_calls"),
            ("tool_calls", json!([{"name": "ok"}, "search"]), "tool_calls[1]"),
            ("metadata", json!([1]), "metadata"),
            ("error", json!({"code": 1}), "error"),
            ("step_id", json!(null), "step_id"),
        ];
        for (key, value, path) in cases {
            let mut bad = full_step(2);
            bad[key] = value.clone();
            let batch = vec![trace(10, json!([full_step(0)])), trace(11, json!([full_step(0), full_step(1), bad]))];
            let response = app.graphql(Some(&token), IMPORT, json!({"ws": ws, "traces": batch})).await;
            assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{key}: {value}: {}", response.body);
            let field = format!("traces[1].steps[2].{path}");
            assert_eq!(response.body["errors"][0]["extensions"]["field"], json!(field), "{}", response.body);
            let message = response.body["errors"][0]["message"].as_str().unwrap();
            assert!(message.contains(&field) && message.contains("t-11") && message.contains("step 2"), "{message}");
            assert_eq!(traces_in().await, 3, "all or nothing: {key}");
        }
        let not_object = app.graphql(Some(&token), IMPORT, json!({"ws": ws, "traces": [trace(12, json!([full_step(0), "step"]))]})).await;
        assert_eq!(not_object.body["errors"][0]["extensions"]["field"], "traces[0].steps[1]", "{}", not_object.body);

        // createTrace checks the same.
        let create = "mutation($input: CreateTraceInput!) { createTrace(input: $input) { trace { id stepCount } } }";
        let mut input = json!({"workspaceId": ws, "traceId": "c-1", "source": "OPENAI", "timestamp": "2026-01-15T09:00:00Z", "steps": [full_step(0), {"timestamp": "yesterday"}]});
        let refused = app.graphql(Some(&token), create, json!({"input": input})).await;
        assert_eq!(refused.error_code(), Some("BAD_USER_INPUT"));
        assert_eq!(refused.body["errors"][0]["extensions"]["field"], "steps[1].timestamp", "{}", refused.body);
        assert_eq!(traces_in().await, 3);
        input["steps"] = json!([full_step(0), {"timestamp": "2026-01-15T09:00:00Z"}]);
        let created = app.graphql(Some(&token), create, json!({"input": input})).await;
        assert_eq!(created.data()["createTrace"]["trace"]["stepCount"], 2);
        // `steps` is never patched (updateTrace has no such field).
        let patch = app.graphql(Some(&token), "mutation($id: ID!) { updateTrace(id: $id, patch: {steps: []}) { trace { id } } }", json!({"id": created.data()["createTrace"]["trace"]["id"]})).await;
        assert_eq!(patch.error_code(), Some("GRAPHQL_VALIDATION_FAILED"));
    }
}

both_backends! {
    async fn the_cli_import_refuses_invalid_trace_steps(backend: Backend) {
        let source = TestDb::migrated(backend).await;
        let fx = Fixtures::new(&source.db);
        let ws = fx.workspace().await;
        // Written behind the API's back, as an old database may hold it.
        let bad = json!([{"step_id": "s0", "timestamp": "2026-01-15T09:00:00Z"}, {"step_id": "s1", "timestamp": "not a date"}]);
        fx.insert("traces", &ws, &[("trace_id", "bad-trace".into()), ("steps", Value::Json(bad.to_string()))]).await;
        let dir = std::env::temp_dir().join(format!("iofold-steps-{}", uuid::Uuid::new_v4().simple()));
        let export = cmd(source.url.as_str(), &["export", dir.to_str().unwrap()], &[]).await;
        assert!(export.status.success(), "{}", text(&export));
        let target = TestDb::migrated(backend).await;
        let import = cmd(target.url.as_str(), &["import", dir.to_str().unwrap()], &[]).await;
        let out = text(&import);
        assert!(!import.status.success(), "{out}");
        for needle in ["table traces", "bad-trace", "steps[1].timestamp", "not a date", "nothing was imported"] {
            assert!(out.contains(needle), "`{needle}` not in {out}");
        }
        assert_eq!(count(&target.db, "users", None).await, 0, "nothing was written");
        // Fixed, the same export imports.
        execute(&source.db, &format!("UPDATE traces SET steps = {} WHERE trace_id = 'bad-trace'", quote(&json!([{"step_id": "s0"}]).to_string()))).await.unwrap();
        let fixed = dir.with_extension("fixed");
        assert!(cmd(source.url.as_str(), &["export", fixed.to_str().unwrap()], &[]).await.status.success());
        let import = cmd(target.url.as_str(), &["import", fixed.to_str().unwrap()], &[]).await;
        assert!(import.status.success(), "{}", text(&import));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&fixed);
    }
}

// ---------------------------------------------------------------------------------------
// Dashboards.

const DASHBOARD: &str = "query($ws: ID!) { workspace(id: $ws) { evalAccuracyBuckets { bucket count } \
    jobFailureRate { started failed rate } } }";

both_backends! {
    async fn dashboards_count_started_jobs_and_unmeasured_evals(backend: Backend) {
        let app = TestApp::new(backend).await;
        let fx = Fixtures::new(&app.state.db);
        let (ws, owner) = fx.workspace_with_owner().await;
        let token = fx.token_for(&owner).await;
        let empty = app.graphql(Some(&token), DASHBOARD, json!({"ws": ws})).await;
        assert_eq!(empty.data()["workspace"]["jobFailureRate"], json!({"started": 0, "failed": 0, "rate": null}));
        let started = Value::from("2026-01-15T09:00:00.000000Z");
        let job = |status: &'static str, started_at: Value| {
            let fx = &fx;
            let ws = ws.clone();
            async move { fx.insert("jobs", &ws, &[("status", status.into()), ("started_at", started_at)]).await }
        };
        // Started: one failed, one completed, one running, one cancelled while running.
        job("failed", started.clone()).await;
        job("completed", started.clone()).await;
        job("running", started.clone()).await;
        job("cancelled", started.clone()).await;
        // Never started: cancelled or queued (they neither failed nor succeeded).
        for _ in 0..4 {
            job("cancelled", Value::Null).await;
        }
        job("queued", Value::Null).await;
        // Another workspace's failures do not count.
        let other = fx.workspace().await;
        fx.insert("jobs", &other, &[("status", "failed".into()), ("started_at", started.clone())]).await;

        // Evals: one high, one medium, one low, two never measured (they are low).
        let agent = fx.insert("agents", &ws, &[]).await;
        for accuracy in [Value::from(0.95), Value::from(0.85), Value::from(0.5), Value::Null, Value::Null] {
            fx.insert("evals", &ws, &[("agent_id", (&agent).into()), ("accuracy", accuracy)]).await;
        }
        let response = app.graphql(Some(&token), DASHBOARD, json!({"ws": ws})).await;
        let workspace = &response.data()["workspace"];
        assert_eq!(workspace["jobFailureRate"], json!({"started": 4, "failed": 1, "rate": 0.25}));
        assert_eq!(
            workspace["evalAccuracyBuckets"],
            json!([{"bucket": "HIGH", "count": 1}, {"bucket": "MEDIUM", "count": 1}, {"bucket": "LOW", "count": 3}])
        );
        let total: i64 = workspace["evalAccuracyBuckets"].as_array().unwrap().iter().map(|b| b["count"].as_i64().unwrap()).sum();
        assert_eq!(total, count(&app.state.db, "evals", None).await, "every eval is in a band");
    }
}

// ---------------------------------------------------------------------------------------
// Agent.traces.

/// An agent with two versions and traces on each, a trace without version, another agent's
/// traces; workspace B with its own. Returns (app, token A, token B, agent, expected ids in
/// the default order (newest timestamp first), the other agent).
struct Agents {
    app: TestApp,
    token_a: String,
    token_b: String,
    agent: String,
    mine: Vec<(String, String, Option<i64>)>,
    other_agent: String,
}

async fn agents(backend: Backend) -> Agents {
    let app = TestApp::new(backend).await;
    let fx = Fixtures::new(&app.state.db);
    let (ws, owner) = fx.workspace_with_owner().await;
    let (ws_b, owner_b) = fx.workspace_with_owner().await;
    let token_a = fx.token_for(&owner).await;
    let token_b = fx.token_for(&owner_b).await;
    let agent = fx.insert("agents", &ws, &[]).await;
    let other_agent = fx.insert("agents", &ws, &[]).await;
    let version = |agent: String, n: i64| {
        let fx = &fx;
        let ws = ws.clone();
        async move { fx.insert("agent_versions", &ws, &[("agent_id", agent.into()), ("version", n.into())]).await }
    };
    let v1 = version(agent.clone(), 1).await;
    let v2 = version(agent.clone(), 2).await;
    let v3 = version(agent.clone(), 3).await; // no traces
    let _ = v3;
    let w1 = version(other_agent.clone(), 1).await;
    let mut mine = Vec::new();
    for i in 0..7i64 {
        let v = if i % 3 == 0 { &v1 } else { &v2 };
        let tokens = if i == 4 { Value::Null } else { Value::Int(100 * (i + 1)) };
        let at = format!("2026-01-15T09:{:02}:00.000000Z", 10 + (i * 7) % 11);
        let id = fx
            .insert(
                "traces",
                &ws,
                &[("agent_version_id", v.into()), ("timestamp", at.clone().into()), ("total_tokens", tokens.clone())],
            )
            .await;
        mine.push((id, at, if let Value::Int(n) = tokens { Some(n) } else { None }));
    }
    // Not the agent's: no version, the other agent's version.
    fx.insert("traces", &ws, &[]).await;
    fx.insert("traces", &ws, &[("agent_version_id", (&w1).into())]).await;
    // Workspace B's agent and traces.
    let agent_b = fx.insert("agents", &ws_b, &[]).await;
    let vb = fx.insert("agent_versions", &ws_b, &[("agent_id", agent_b.into()), ("version", 1i64.into())]).await;
    fx.insert("traces", &ws_b, &[("agent_version_id", vb.into())]).await;
    // Newest first, the id descending on ties.
    mine.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    Agents { app, token_a, token_b, agent, mine, other_agent }
}

both_backends! {
    async fn agent_traces_reach_the_traces_of_every_version(backend: Backend) {
        let a = agents(backend).await;
        let expected: Vec<&str> = a.mine.iter().map(|(id, ..)| id.as_str()).collect();
        // Page by page with cursors, forwards.
        let page = "query($id: ID!, $n: Int, $after: String) { agent(id: $id) { traces(first: $n, after: $after) { totalCount \
            pageInfo { hasNextPage endCursor } nodes { id agentVersion { agent { id } } } } } }";
        let mut seen = Vec::new();
        let mut after = Json::Null;
        loop {
            let response = a.app.graphql(Some(&a.token_a), page, json!({"id": a.agent, "n": 3, "after": after})).await;
            let traces = &response.data()["agent"]["traces"];
            assert_eq!(traces["totalCount"], 7);
            for node in traces["nodes"].as_array().unwrap() {
                assert_eq!(node["agentVersion"]["agent"]["id"], json!(a.agent));
                seen.push(node["id"].as_str().unwrap().to_owned());
            }
            if traces["pageInfo"]["hasNextPage"] != json!(true) {
                break;
            }
            after = traces["pageInfo"]["endCursor"].clone();
        }
        assert_eq!(seen, expected, "every trace once, newest first");
        // Backwards, ordered by tokens, filtered.
        let last = a.app.graphql(Some(&a.token_a), "query($id: ID!) { agent(id: $id) { traces(last: 2, orderBy: [{field: TOTAL_TOKENS}]) { nodes { totalTokens } } } }", json!({"id": a.agent})).await;
        assert_eq!(last.data()["agent"]["traces"]["nodes"], json!([{"totalTokens": 700}, {"totalTokens": null}]), "NULL last ascending");
        let filtered = a.app.graphql(Some(&a.token_a), "query($id: ID!) { agent(id: $id) { traces(filter: {totalTokens: {gte: 400}}, orderBy: [{field: TOTAL_TOKENS, direction: DESC}]) { totalCount nodes { totalTokens } } } }", json!({"id": a.agent})).await;
        assert_eq!(filtered.data()["agent"]["traces"], json!({"totalCount": 3, "nodes": [{"totalTokens": 700}, {"totalTokens": 600}, {"totalTokens": 400}]}));
        // Aggregates over every matching trace (one NULL among them).
        let tokens: Vec<i64> = a.mine.iter().filter_map(|(_, _, t)| *t).collect();
        let aggregate = a.app.graphql(Some(&a.token_a), "query($id: ID!) { agent(id: $id) { traces(first: 1) { aggregate { count sum { totalTokens } avg { totalTokens } min { totalTokens } max { totalTokens } } } } }", json!({"id": a.agent})).await;
        let aggregate = &aggregate.data()["agent"]["traces"]["aggregate"];
        assert_eq!(aggregate["count"], 7);
        assert_eq!(aggregate["sum"]["totalTokens"].as_f64(), Some(tokens.iter().sum::<i64>() as f64));
        assert_eq!(aggregate["avg"]["totalTokens"].as_f64(), Some(tokens.iter().sum::<i64>() as f64 / tokens.len() as f64));
        assert_eq!(aggregate["min"]["totalTokens"].as_f64(), Some(100.0));
        assert_eq!(aggregate["max"]["totalTokens"].as_f64(), Some(700.0));
        // The other agent has its one trace; another tenant reaches nothing.
        let other = a.app.graphql(Some(&a.token_a), "query($id: ID!) { agent(id: $id) { traces { totalCount } } }", json!({"id": a.other_agent})).await;
        assert_eq!(other.data()["agent"]["traces"]["totalCount"], 1);
        let theirs = a.app.graphql(Some(&a.token_b), "query($id: ID!) { agent(id: $id) { traces { totalCount nodes { id } } } }", json!({"id": a.agent})).await;
        assert_eq!(theirs.data()["agent"], json!(null));
        // Through the workspace's agents, as a list of parents: each gets its own.
        let all = a.app.graphql(Some(&a.token_a), "query($id: ID!) { agent(id: $id) { workspace { agents { nodes { id traces(first: 100) { totalCount nodes { id } } } } } } }", json!({"id": a.agent})).await;
        for node in all.data()["agent"]["workspace"]["agents"]["nodes"].as_array().unwrap() {
            let n = node["traces"]["nodes"].as_array().unwrap().len() as i64;
            assert_eq!(node["traces"]["totalCount"].as_i64(), Some(n));
            assert_eq!(n, if node["id"] == json!(a.agent) { 7 } else { 1 });
        }
    }
}

both_backends! {
    async fn agent_traces_cost_fixed_statements_per_level(backend: Backend) {
        let app = TestApp::new(backend).await;
        let fx = Fixtures::new(&app.state.db);
        let (ws, owner) = fx.workspace_with_owner().await;
        let token = fx.token_for(&owner).await;
        for _ in 0..12 {
            let agent = fx.insert("agents", &ws, &[]).await;
            for n in 1..=2i64 {
                let version = fx.insert("agent_versions", &ws, &[("agent_id", (&agent).into()), ("version", n.into())]).await;
                for _ in 0..4 {
                    let trace = fx.insert("traces", &ws, &[("agent_version_id", (&version).into())]).await;
                    fx.insert("feedback", &ws, &[("trace_id", trace.into())]).await;
                }
            }
        }
        let query = "query($ws: ID!, $n: Int!) { agents(workspaceId: $ws, first: $n) { nodes { id traces(first: 5) \
            { totalCount nodes { id feedback { rating } } } } } }";
        for n in [2, 12] {
            let stats = app.state.db.stats.clone();
            let before = stats.statements();
            let response = app.graphql_admin(query, json!({"ws": ws, "n": n})).await;
            let statements = stats.statements() - before;
            let nodes = response.data()["agents"]["nodes"].as_array().unwrap();
            assert_eq!(nodes.len(), n);
            assert!(nodes.iter().all(|a| a["traces"]["totalCount"] == 8 && a["traces"]["nodes"].as_array().unwrap().len() == 5));
            assert!(nodes.iter().all(|a| a["traces"]["nodes"].as_array().unwrap().iter().all(|t| t["feedback"]["rating"].is_string())));
            assert_eq!(statements, 5, "{n} agents: agents, their versions, the traces, their count, their feedback");
            let before = stats.statements();
            app.graphql(Some(&token), query, json!({"ws": ws, "n": n})).await.data();
            assert_eq!(stats.statements() - before, 5 + 1, "{n} agents as a member: the token with its memberships on top");
        }
    }
}
