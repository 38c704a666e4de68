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

