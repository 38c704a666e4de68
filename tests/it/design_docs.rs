//! The design document's requirements (issue 13), through the HTTP router (and a WebSocket,
//! and the binary for the CLI) on both backends: controlling workflow executions, trace
//! steps checked on every write path, the dashboards' semantics, `Agent.traces`.

use std::collections::HashMap;
use std::process::{Command, Output};

use iofold_graph::db::Backend;
use serde_json::{json, Value as Json};

use crate::both_backends;
use crate::support::app::TestApp;
use crate::support::db::TestDb;
use crate::support::fixtures::{count, execute, quote, Fixtures, Value};
use crate::support::ws::{bearer, live_subscriptions, Live, Ws, QUIET, WAIT};

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

fn iofold(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iofold-graph"))
        .args(args)
        .env("DATABASE_URL", url)
        .env_remove("APP_ENV")
        .env_remove("NODE_ENV")
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs")
}

async fn binary(url: &str, args: &[&str]) -> Output {
    let url = url.to_owned();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || iofold(&url, &args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
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
        let export = binary(source.url.as_str(), &["export", dir.to_str().unwrap()]).await;
        assert!(export.status.success(), "{}", text(&export));
        let target = TestDb::migrated(backend).await;
        let import = binary(target.url.as_str(), &["import", dir.to_str().unwrap()]).await;
        let out = text(&import);
        assert!(!import.status.success(), "{out}");
        for needle in ["table traces", "bad-trace", "steps[1].timestamp", "not a date", "nothing was imported"] {
            assert!(out.contains(needle), "`{needle}` not in {out}");
        }
        assert_eq!(count(&target.db, "users", None).await, 0, "nothing was written");
        // Fixed, the same export imports.
        execute(&source.db, &format!("UPDATE traces SET steps = {} WHERE trace_id = 'bad-trace'", quote(&json!([{"step_id": "s0"}]).to_string()))).await.unwrap();
        let fixed = dir.with_extension("fixed");
        assert!(binary(source.url.as_str(), &["export", fixed.to_str().unwrap()]).await.status.success());
        let import = binary(target.url.as_str(), &["import", fixed.to_str().unwrap()]).await;
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

