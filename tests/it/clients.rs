//! What real clients rely on: subscriptions over a real WebSocket (`graphql-transport-ws` and
//! the legacy `graphql-ws`), events between two server instances on one PostgreSQL
//! database, the GraphQL-over-HTTP rules (media types, statuses, methods), Apollo's
//! automatic persisted queries, and GraphiQL served from the binary.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use futures_util::SinkExt;
use iofold_graph::config::Config;
use iofold_graph::db::{Backend, Db, PoolOptions};
use iofold_graph::events::{Event, EventKind};
use iofold_graph::server::AppState;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::both_backends;
use crate::support::app::{test_config, TestApp, TestResponse, ADMIN_SECRET};
use crate::support::db::require_postgres;
use crate::support::ws::{bearer, live_subscriptions, Live, Ws, QUIET, WAIT};

// ---------------------------------------------------------------------------------------
// Data through the API.

/// Two users, each the owner of a workspace with a job and a workflow.
struct Tenants {
    app: TestApp,
    token_a: String,
    token_b: String,
    workspace_a: String,
    workspace_b: String,
    job_a: String,
    job_b: String,
    workflow_a: String,
}

const CREATE_WORKSPACE: &str = "mutation { createWorkspace(input: {name: \"w\"}) { workspace { id } } }";
const CREATE_JOB: &str = "mutation($ws: ID!) { createJob(input: {workspaceId: $ws, type: IMPORT}) { job { id } } }";
const CREATE_WORKFLOW: &str = "mutation($ws: ID!) { createWorkflow(input: {workspaceId: $ws, name: \"w\", \
    nodes: [{id: \"a\", type: \"start\"}, {id: \"b\", type: \"end\"}], edges: [{id: \"e\", source: \"a\", target: \"b\"}]}) \
    { workflow { id } } }";
const PROGRESS: &str =
    "mutation($id: ID!, $p: Int, $s: JobStatus) { updateJobProgress(id: $id, progress: $p, status: $s) \
    { job { id progress } } }";
const JOB_UPDATED: &str = "subscription($ws: ID!, $job: ID) { jobUpdated(workspaceId: $ws, jobId: $job) \
    { id status progress workspace { id } } }";
const EXECUTION_UPDATED: &str = "subscription($id: ID!) { executionUpdated(executionId: $id) \
    { id status workflow { id name } executionSteps(orderBy: [{field: NODE_ID}]) { nodes { nodeId status } } } }";
const START: &str = "mutation($id: ID!) { startExecution(workflowId: $id) { execution { id } executionSteps { id } } }";
const STEP: &str = "mutation($id: ID!, $s: ExecutionStepStatus!) { updateExecutionStep(id: $id, patch: {status: $s}) \
    { executionStep { id } } }";

async fn tenants_on(app: TestApp) -> Tenants {
    let (_, token_a) = app.user_with_token("a@example.com", None, false).await;
    let (_, token_b) = app.user_with_token("b@example.com", None, false).await;
    let created = |token: String| {
        let app = &app;
        async move {
            let workspace = app.graphql(Some(&token), CREATE_WORKSPACE, json!({})).await.data()["createWorkspace"]
                ["workspace"]["id"]
                .as_str()
                .unwrap()
                .to_owned();
            let job = app.graphql(Some(&token), CREATE_JOB, json!({"ws": workspace})).await.data()["createJob"]["job"]
                ["id"]
                .as_str()
                .unwrap()
                .to_owned();
            let workflow = app.graphql(Some(&token), CREATE_WORKFLOW, json!({"ws": workspace})).await.data()
                ["createWorkflow"]["workflow"]["id"]
                .as_str()
                .unwrap()
                .to_owned();
            (workspace, job, workflow)
        }
    };
    let (workspace_a, job_a, workflow_a) = created(token_a.clone()).await;
    let (workspace_b, job_b, _) = created(token_b.clone()).await;
    Tenants { app, token_a, token_b, workspace_a, workspace_b, job_a, job_b, workflow_a }
}

async fn tenants(backend: Backend) -> Tenants {
    tenants_on(TestApp::new(backend).await).await
}

/// The application with a configuration changed by `change`.
async fn app_with(backend: Backend, change: impl FnOnce(&mut Config)) -> TestApp {
    let app = TestApp::new(backend).await;
    let mut config = test_config(app.test_db.url.as_str());
    change(&mut config);
    TestApp { state: AppState::new(app.test_db.db.clone(), config), ..app }
}

// ---------------------------------------------------------------------------------------
// Subscriptions.

both_backends! {
    async fn job_changes_reach_their_subscribers_in_order_and_no_one_else(backend: Backend) {
        let t = tenants(backend).await;
        let live = Live::start(t.app.state.clone()).await;
        let mut ws = Ws::initialised(&live.url(), "graphql-transport-ws", bearer(&t.token_a)).await;
        ws.subscribe("one", JOB_UPDATED, json!({"ws": t.workspace_a, "job": t.job_a})).await;
        ws.subscribe("all", JOB_UPDATED, json!({"ws": t.workspace_a})).await;
        live_subscriptions(&t.app.state, 2).await;

        // Each change, as it commits, reaches both subscriptions.
        for (progress, status, expected) in [(10, Some("RUNNING"), "RUNNING"), (50, None, "RUNNING")] {
            let response = t.app.graphql(Some(&t.token_a), PROGRESS, json!({"id": t.job_a, "p": progress, "s": status})).await;
            assert_eq!(response.data()["updateJobProgress"]["job"]["progress"], progress);
            let mut heard = Vec::new();
            for _ in 0..2 {
                let message = ws.next(WAIT).await.unwrap_or_else(|| panic!("the change to {progress}: heard {heard:?}"));
                assert_eq!(message["type"], "next", "{message}");
                let job = &message["payload"]["data"]["jobUpdated"];
                assert_eq!(job["id"], json!(t.job_a));
                assert_eq!((job["progress"].as_i64(), job["status"].as_str()), (Some(progress), Some(expected)));
                assert_eq!(job["workspace"]["id"], json!(t.workspace_a), "relations resolve as in a query");
                heard.push(message["id"].as_str().unwrap().to_owned());
            }
            heard.sort();
            assert_eq!(heard, ["all", "one"]);
        }
        // A burst: each subscriber hears the changes in commit order, ending with the last
        // state, never one twice.
        for progress in [60, 70, 80, 100] {
            let status = (progress == 100).then_some("COMPLETED");
            t.app.graphql(Some(&t.token_a), PROGRESS, json!({"id": t.job_a, "p": progress, "s": status})).await.data();
        }
        let mut heard: std::collections::HashMap<String, Vec<i64>> = Default::default();
        while heard.values().filter(|p| p.last() == Some(&100)).count() < 2 {
            let message = ws.next(WAIT).await.unwrap_or_else(|| panic!("the burst: heard {heard:?}"));
            let job = &message["payload"]["data"]["jobUpdated"];
            let progress = job["progress"].as_i64().unwrap();
            assert_eq!(job["status"], if progress == 100 { "COMPLETED" } else { "RUNNING" });
            heard.entry(message["id"].as_str().unwrap().to_owned()).or_default().push(progress);
        }
        for (id, progress) in &heard {
            assert!(progress.windows(2).all(|w| w[0] < w[1]), "{id}: {progress:?} in order, no repeat");
        }
        assert_eq!(ws.next(QUIET).await, None, "nothing more");

        // A change in another workspace reaches nobody here: the next message is the next
        // change of this workspace's job.
        let response = t.app.graphql(Some(&t.token_b), PROGRESS, json!({"id": t.job_b, "p": 5, "s": "RUNNING"})).await;
        response.data();
        assert_eq!(ws.next(QUIET).await, None, "no event from another workspace");
        let other = t.app.graphql(Some(&t.token_a), CREATE_JOB, json!({"ws": t.workspace_a})).await;
        let other = other.data()["createJob"]["job"]["id"].clone();
        let message = ws.next(WAIT).await.expect("the new job of the workspace");
        assert_eq!((message["id"].as_str(), &message["payload"]["data"]["jobUpdated"]["id"]), (Some("all"), &other));

        // Another workspace's job or workspace is exactly a missing one: NOT_FOUND, no event.
        let missing_workspace = "workspace_00000000-0000-7000-8000-000000000000";
        let missing_job = "job_00000000-0000-7000-8000-000000000000";
        let mut errors = Vec::new();
        for (id, variables) in [
            ("theirs", json!({"ws": t.workspace_b})),
            ("nowhere", json!({"ws": missing_workspace})),
            ("their-job", json!({"ws": t.workspace_a, "job": t.job_b})),
            ("no-job", json!({"ws": t.workspace_a, "job": missing_job})),
        ] {
            ws.subscribe(id, JOB_UPDATED, variables).await;
            let message = ws.next(WAIT).await.expect("an answer");
            assert_eq!((message["type"].as_str(), message["id"].as_str()), (Some("error"), Some(id)), "{message}");
            assert_eq!(message["payload"][0]["extensions"]["code"], "NOT_FOUND", "{message}");
            errors.push(message["payload"][0]["message"].as_str().unwrap().to_owned());
        }
        assert_eq!(errors[0].replace(&t.workspace_b, "X"), errors[1].replace(missing_workspace, "X"));
        assert_eq!(errors[2].replace(&t.job_b, "X"), errors[3].replace(missing_job, "X"));
        assert_eq!(t.app.state.events.stats().subscriptions(), 2, "refused subscriptions are not live");
        t.app.graphql(Some(&t.token_b), PROGRESS, json!({"id": t.job_b, "p": 50})).await.data();
        assert_eq!(ws.next(QUIET).await, None);

        // `complete` stops one subscription; the other goes on.
        ws.send(json!({"type": "complete", "id": "one"})).await;
        live_subscriptions(&t.app.state, 1).await;
        t.app.graphql(Some(&t.token_a), "mutation($id: ID!) { cancelJob(id: $id) { job { id } } }", json!({"id": other})).await.data();
        let message = ws.next(WAIT).await.expect("the cancelled job");
        assert_eq!((message["id"].as_str(), &message["payload"]["data"]["jobUpdated"]["status"]), (Some("all"), &json!("CANCELLED")));
        assert_eq!(ws.next(QUIET).await, None, "nothing for the completed subscription");
    }
}

both_backends! {
    async fn execution_changes_push_the_execution_and_its_steps(backend: Backend) {
        let t = tenants(backend).await;
        let started = t.app.graphql(Some(&t.token_a), START, json!({"id": t.workflow_a})).await;
        let started = started.data()["startExecution"].clone();
        let execution = started["execution"]["id"].as_str().unwrap().to_owned();
        let step = started["executionSteps"][0]["id"].clone();
        let live = Live::start(t.app.state.clone()).await;
        let mut ws = Ws::initialised(&live.url(), "graphql-transport-ws", bearer(&t.token_a)).await;
        ws.subscribe("run", EXECUTION_UPDATED, json!({"id": execution})).await;
        live_subscriptions(&t.app.state, 1).await;

        t.app.graphql(Some(&t.token_a), STEP, json!({"id": step, "s": "RUNNING"})).await.data();
        let message = ws.next(WAIT).await.expect("the step's change");
        let pushed = &message["payload"]["data"]["executionUpdated"];
        assert_eq!(pushed["id"], json!(execution));
        assert_eq!(pushed["status"], "RUNNING", "the execution follows its step");
        assert_eq!(pushed["workflow"]["id"], json!(t.workflow_a));
        let steps: Vec<(&str, &str)> = pushed["executionSteps"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["nodeId"].as_str().unwrap(), s["status"].as_str().unwrap()))
            .collect();
        assert_eq!(steps, [("a", "RUNNING"), ("b", "PENDING")]);
        assert_eq!(pushed["workflow"]["name"], "w");
        // A generic update of the execution itself; its relations are read afresh for each
        // event (the workflow was renamed in between).
        t.app.graphql(Some(&t.token_a), "mutation($id: ID!) { updateWorkflow(id: $id, patch: {name: \"renamed\"}) { workflow { id } } }", json!({"id": t.workflow_a})).await.data();
        t.app.graphql(Some(&t.token_a), "mutation($id: ID!) { updateExecution(id: $id, patch: {data: {x: 1}}) { execution { id } } }", json!({"id": execution})).await.data();
        let message = ws.next(WAIT).await.expect("the execution's change");
        assert_eq!(message["payload"]["data"]["executionUpdated"]["id"], json!(execution));
        assert_eq!(message["payload"]["data"]["executionUpdated"]["workflow"]["name"], "renamed");

        // Another tenant cannot watch it: NOT_FOUND, as for a missing execution.
        let mut theirs = Ws::initialised(&live.url(), "graphql-transport-ws", bearer(&t.token_b)).await;
        theirs.subscribe("x", EXECUTION_UPDATED, json!({"id": execution})).await;
        let refused = theirs.next(WAIT).await.unwrap();
        assert_eq!((refused["type"].as_str(), refused["payload"][0]["extensions"]["code"].as_str()), (Some("error"), Some("NOT_FOUND")));

        // Deleting the execution ends the subscription.
        t.app.graphql(Some(&t.token_a), "mutation($id: ID!) { deleteExecution(id: $id) { deletedId } }", json!({"id": execution})).await.data();
        assert_eq!(ws.next(WAIT).await.expect("complete"), json!({"type": "complete", "id": "run"}));
        live_subscriptions(&t.app.state, 0).await;
        assert_eq!(theirs.next(QUIET).await, None);
    }
}

both_backends! {
    async fn websocket_credentials_and_protocol_errors_close_with_their_codes(backend: Backend) {
        let t = tenants(backend).await;
        let live = Live::start(t.app.state.clone()).await;
        let url = live.url();
        let init = |payload: Value| json!({"type": "connection_init", "payload": payload});

        // No token, a bad token, a token that is no bearer: 4403.
        for payload in [json!({}), bearer("not-a-token"), json!({"authorization": t.token_a.clone()})] {
            let mut ws = Ws::connect(&url, "graphql-transport-ws").await;
            ws.send(init(payload.clone())).await;
            assert_eq!(ws.closed().await, (Some(4403), vec![]), "{payload}");
        }
        let mut ws = Ws::connect(&url, "graphql-transport-ws").await;
        ws.send(json!({"type": "connection_init"})).await;
        assert_eq!(ws.closed().await.0, Some(4403), "no payload");
        // Keys in any case, also inside `headers`; the admin secret.
        Ws::initialised(&url, "graphql-transport-ws", json!({"Authorization": format!("Bearer {}", t.token_a)})).await;
        Ws::initialised(&url, "graphql-transport-ws", json!({"headers": {"authorization": format!("Bearer {}", t.token_a)}})).await;
        let mut admin = Ws::initialised(&url, "graphql-transport-ws", json!({"X-Iofold-Admin-Secret": ADMIN_SECRET})).await;
        admin.subscribe("1", JOB_UPDATED, json!({"ws": t.workspace_b})).await;
        live_subscriptions(&t.app.state, 1).await;
        t.app.graphql(Some(&t.token_b), PROGRESS, json!({"id": t.job_b, "p": 1, "s": "RUNNING"})).await.data();
        assert_eq!(admin.next(WAIT).await.unwrap()["payload"]["data"]["jobUpdated"]["id"], json!(t.job_b), "the admin sees every workspace");

        // Protocol errors.
        let mut ws = Ws::connect(&url, "graphql-transport-ws").await;
        ws.subscribe("early", JOB_UPDATED, json!({"ws": t.workspace_a})).await;
        assert_eq!(ws.closed().await.0, Some(4401), "subscribe before connection_ack");
        let mut ws = Ws::initialised(&url, "graphql-transport-ws", bearer(&t.token_a)).await;
        ws.send(init(bearer(&t.token_a))).await;
        assert_eq!(ws.closed().await.0, Some(4429), "a second connection_init");
        let mut ws = Ws::initialised(&url, "graphql-transport-ws", bearer(&t.token_a)).await;
        ws.send(json!({"type": "nonsense"})).await;
        assert_eq!(ws.closed().await.0, Some(4400));
        let mut ws = Ws::initialised(&url, "graphql-transport-ws", bearer(&t.token_a)).await;
        ws.socket.send(Message::Text("{not json".into())).await.unwrap();
        assert_eq!(ws.closed().await.0, Some(4400));
        let mut ws = Ws::initialised(&url, "graphql-transport-ws", bearer(&t.token_a)).await;
        ws.subscribe("same", JOB_UPDATED, json!({"ws": t.workspace_a})).await;
        ws.subscribe("same", JOB_UPDATED, json!({"ws": t.workspace_a})).await;
        assert_eq!(ws.closed().await.0, Some(4409), "an id already running");
        let mut ws = Ws::connect(&url, "graphql-transport-ws").await;
        ws.send(json!({"type": "ping"})).await;
        assert_eq!(ws.next(WAIT).await, Some(json!({"type": "pong"})), "ping before init is answered");

        // Only subprotocols this server does not speak: the upgrade is refused. None named:
        // graphql-transport-ws.
        let mut request = url.as_str().into_client_request().unwrap();
        request.headers_mut().insert("sec-websocket-protocol", "mqtt".parse().unwrap());
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 400),
            other => panic!("the upgrade is refused: {other:?}"),
        }
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
        let mut plain = Ws { socket, protocol: "graphql-transport-ws" };
        plain.send(init(bearer(&t.token_a))).await;
        assert_eq!(plain.next(WAIT).await, Some(json!({"type": "connection_ack"})));

        // Queries and mutations run over WebSocket too: one result, then complete.
        let mut ws = Ws::initialised(&url, "graphql-transport-ws", bearer(&t.token_a)).await;
        ws.subscribe("q", "{ me { email } }", json!({})).await;
        let result = ws.next(WAIT).await.unwrap();
        assert_eq!((result["type"].as_str(), &result["payload"]["data"]["me"]["email"]), (Some("next"), &json!("a@example.com")), "{result}");
        assert_eq!(ws.next(WAIT).await, Some(json!({"type": "complete", "id": "q"})));
        ws.subscribe("bad", "{ me { nope } }", json!({})).await;
        let refused = ws.next(WAIT).await.unwrap();
        assert_eq!((refused["type"].as_str(), refused["payload"][0]["extensions"]["code"].as_str()), (Some("error"), Some("GRAPHQL_VALIDATION_FAILED")));

        // No connection_init in time (the request deadline): 4408.
        let hurried = app_with(backend, |config| config.limits.request_timeout = Duration::from_millis(300)).await;
        let hurried = Live::start(hurried.state.clone()).await;
        let mut idle = Ws::connect(&hurried.url(), "graphql-transport-ws").await;
        let waited = Instant::now();
        assert_eq!(idle.closed().await.0, Some(4408));
        assert!(waited.elapsed() >= Duration::from_millis(250), "{:?}", waited.elapsed());

        // The client closes: the server answers its close frame (a clean close, not 1006).
        let mut leaving = Ws::initialised(&url, "graphql-transport-ws", bearer(&t.token_a)).await;
        let goodbye = tokio_tungstenite::tungstenite::protocol::CloseFrame { code: 1000.into(), reason: "bye".into() };
        leaving.socket.send(Message::Close(Some(goodbye))).await.unwrap();
        assert_eq!(leaving.closed().await.0, Some(1000), "the server answers the client's close frame");

        // Shutting the server down closes the connection with 1001.
        let mut live = live;
        live.shut_down();
        assert_eq!(ws.closed().await.0, Some(1001));
        assert_eq!(admin.closed().await.0, Some(1001));
    }
}

both_backends! {
    async fn a_connection_runs_a_bounded_number_of_subscriptions_and_is_kept_alive(backend: Backend) {
        let t = tenants(backend).await;
        let app = TestApp { state: AppState::new(t.app.state.db.clone(), {
            let mut config = test_config(t.app.test_db.url.as_str());
            config.subscriptions.max_per_connection = 2;
            config.subscriptions.ping_interval = Some(Duration::from_millis(100));
            config
        }), ..t.app };
        let live = Live::start(app.state.clone()).await;
        let mut ws = Ws::initialised(&live.url(), "graphql-transport-ws", bearer(&t.token_a)).await;
        ws.subscribe("1", JOB_UPDATED, json!({"ws": t.workspace_a})).await;
        ws.subscribe("2", JOB_UPDATED, json!({"ws": t.workspace_a})).await;
        ws.subscribe("3", JOB_UPDATED, json!({"ws": t.workspace_a})).await;
        let refused = ws.next(WAIT).await.unwrap();
        assert_eq!(refused["type"], "error");
        assert_eq!(refused["id"], "3");
        assert_eq!(refused["payload"][0]["extensions"]["code"], "TOO_MANY_SUBSCRIPTIONS");
        live_subscriptions(&app.state, 2).await;
        // Once one ends, there is room again.
        ws.send(json!({"type": "complete", "id": "1"})).await;
        ws.subscribe("3", JOB_UPDATED, json!({"ws": t.workspace_a, "job": t.job_a})).await;
        live_subscriptions(&app.state, 2).await;
        // Another connection has its own budget.
        let mut other = Ws::initialised(&live.url(), "graphql-transport-ws", bearer(&t.token_a)).await;
        other.subscribe("1", JOB_UPDATED, json!({"ws": t.workspace_a})).await;
        live_subscriptions(&app.state, 3).await;

        // Keep-alive: the server pings (graphql-transport-ws) and the client's pong keeps it open.
        let mut pinged = 0;
        let started = Instant::now();
        while pinged < 2 {
            assert!(started.elapsed() < WAIT, "no keep-alive ping");
            if let Some(message) = ws.raw(WAIT).await {
                if message == json!({"type": "ping"}) {
                    pinged += 1;
                    ws.send(json!({"type": "pong"})).await;
                }
            }
        }
        app.graphql(Some(&t.token_a), PROGRESS, json!({"id": t.job_a, "p": 3, "s": "RUNNING"})).await.data();
        let mut ids = Vec::new();
        while ids.len() < 2 {
            let message = ws.next(WAIT).await.expect("both subscriptions hear the change");
            ids.push(message["id"].as_str().unwrap().to_owned());
        }
        ids.sort();
        assert_eq!(ids, ["2", "3"]);

        // The legacy protocol's keep-alive is `ka`.
        let mut legacy = Ws::connect(&live.url(), "graphql-ws").await;
        legacy.send(json!({"type": "connection_init", "payload": bearer(&t.token_a)})).await;
        assert_eq!(legacy.raw(WAIT).await, Some(json!({"type": "connection_ack"})));
        assert_eq!(legacy.raw(WAIT).await, Some(json!({"type": "ka"})));
        assert_eq!(legacy.raw(WAIT).await, Some(json!({"type": "ka"})), "repeated");
    }
}

both_backends! {
    async fn the_legacy_graphql_ws_protocol_works(backend: Backend) {
        let t = tenants(backend).await;
        let live = Live::start(t.app.state.clone()).await;
        let mut ws = Ws::connect(&live.url(), "graphql-ws").await;
        ws.send(json!({"type": "connection_init", "payload": bearer(&t.token_a)})).await;
        assert_eq!(ws.next(WAIT).await, Some(json!({"type": "connection_ack"})));
        ws.subscribe("7", JOB_UPDATED, json!({"ws": t.workspace_a, "job": t.job_a})).await;
        live_subscriptions(&t.app.state, 1).await;
        t.app.graphql(Some(&t.token_a), PROGRESS, json!({"id": t.job_a, "p": 20, "s": "RUNNING"})).await.data();
        let data = ws.next(WAIT).await.expect("data");
        assert_eq!(data["type"], "data");
        assert_eq!(data["id"], "7");
        assert_eq!(data["payload"]["data"]["jobUpdated"]["progress"], 20);
        ws.send(json!({"type": "stop", "id": "7"})).await;
        assert_eq!(ws.next(WAIT).await, Some(json!({"type": "complete", "id": "7"})));
        live_subscriptions(&t.app.state, 0).await;
        ws.send(json!({"type": "connection_terminate"})).await;
        assert_eq!(ws.closed().await.0, Some(1000));

        // Bad credentials: connection_error, then 4403.
        let mut ws = Ws::connect(&live.url(), "graphql-ws").await;
        ws.send(json!({"type": "connection_init", "payload": {}})).await;
        let (code, before) = ws.closed().await;
        assert_eq!(code, Some(4403));
        assert_eq!(before.len(), 1);
        assert_eq!(before[0]["type"], "connection_error");
        assert_eq!(before[0]["payload"]["extensions"]["code"], "FORBIDDEN");
    }
}

both_backends! {
    async fn a_subscriber_that_falls_behind_is_dropped(backend: Backend) {
        let t = tenants(backend).await;
        let started = t.app.graphql(Some(&t.token_a), START, json!({"id": t.workflow_a})).await;
        let execution = started.data()["startExecution"]["execution"]["id"].as_str().unwrap().to_owned();
        let app = TestApp { state: AppState::new(t.app.state.db.clone(), {
            let mut config = test_config(t.app.test_db.url.as_str());
            config.subscriptions.event_capacity = 2;
            config
        }), ..t.app };
        let live = Live::start(app.state.clone()).await;
        let mut ws = Ws::initialised(&live.url(), "graphql-transport-ws", bearer(&t.token_a)).await;
        ws.subscribe("slow", EXECUTION_UPDATED, json!({"id": execution})).await;
        live_subscriptions(&app.state, 1).await;
        // A burst: each event costs the subscriber a read, the bus holds 2.
        for _ in 0..1000 {
            app.state.events.deliver(Event { kind: EventKind::Execution, workspace_id: None, id: execution.clone() });
        }
        let mut dropped = None;
        let mut delivered = 0;
        while dropped.is_none() {
            let message = ws.next(WAIT).await.expect("the subscriber hears it fell behind");
            match message["type"].as_str() {
                Some("next") => delivered += 1,
                Some("error") => dropped = Some(message),
                _ => panic!("{message}"),
            }
        }
        let dropped = dropped.unwrap();
        assert!(delivered < 1000, "{delivered}");
        assert_eq!(dropped["payload"][0]["extensions"]["code"], "SUBSCRIPTION_LAGGED", "{dropped}");
        assert!(app.state.events.stats().lagged() >= 1);
        // The subscription is gone, the connection is fine.
        live_subscriptions(&app.state, 0).await;
        ws.send(json!({"type": "ping"})).await;
        assert_eq!(ws.next(WAIT).await, Some(json!({"type": "pong"})));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_database_share_events() {
    if !require_postgres("clients::two_instances_on_one_postgres_database_share_events").await {
        return;
    }
    let t = tenants(Backend::Postgres).await;
    let url = t.app.test_db.url.clone();
    let a = t.app.state.clone();
    let b = AppState::new(Db::connect(&url, &PoolOptions { max_size: 4 }).unwrap(), test_config(url.as_str()));
    assert!(a.events.is_postgres() && b.events.is_postgres());
    let started = t.app.graphql(Some(&t.token_a), START, json!({"id": t.workflow_a})).await;
    let started = started.data()["startExecution"].clone();
    let execution = started["execution"]["id"].clone();
    let step = started["executionSteps"][1]["id"].clone();

    let live_a = Live::start(a.clone()).await;
    let live_b = Live::start(b.clone()).await;
    let mut on_b = Ws::initialised(&live_b.url(), "graphql-transport-ws", bearer(&t.token_a)).await;
    on_b.subscribe("job", JOB_UPDATED, json!({"ws": t.workspace_a, "job": t.job_a})).await;
    on_b.subscribe("run", EXECUTION_UPDATED, json!({"id": execution})).await;
    let mut on_a = Ws::initialised(&live_a.url(), "graphql-transport-ws", bearer(&t.token_a)).await;
    on_a.subscribe("job", JOB_UPDATED, json!({"ws": t.workspace_a, "job": t.job_a})).await;
    live_subscriptions(&b, 2).await;
    live_subscriptions(&a, 1).await;

    // A mutation through instance A reaches the subscriber on instance B within a second.
    let sent = Instant::now();
    t.app.graphql(Some(&t.token_a), PROGRESS, json!({"id": t.job_a, "p": 40, "s": "RUNNING"})).await.data();
    let message = on_b.next(Duration::from_secs(1)).await.expect("the change reaches instance B within 1 s");
    assert_eq!(message["id"], "job");
    assert_eq!(message["payload"]["data"]["jobUpdated"]["progress"], 40);
    eprintln!("A → B in {:?}", sent.elapsed());
    // Instance A's own subscriber hears it once (PostgreSQL delivers it; nothing is sent twice).
    assert_eq!(on_a.next(WAIT).await.expect("A's subscriber")["payload"]["data"]["jobUpdated"]["progress"], 40);
    assert_eq!(on_a.next(QUIET).await, None, "once");
    assert_eq!(on_b.next(QUIET).await, None, "once");

    // Executions: a step changed through A.
    t.app.graphql(Some(&t.token_a), STEP, json!({"id": step, "s": "SKIPPED"})).await.data();
    let message = on_b.next(Duration::from_secs(1)).await.expect("the step's change reaches instance B");
    assert_eq!(message["id"], "run");
    let steps = &message["payload"]["data"]["executionUpdated"]["executionSteps"]["nodes"];
    assert_eq!(steps[1], json!({"nodeId": "b", "status": "SKIPPED"}));
    assert_eq!(b.events.stats().listener_connects(), 1);
}

// ---------------------------------------------------------------------------------------
// GraphQL over HTTP.

/// `POST /graphql` with a raw body and headers (no default content type).
async fn post(app: &TestApp, body: &str, headers: &[(&str, &str)]) -> TestResponse {
    let mut builder = Request::post("/graphql");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    app.request(builder.body(Body::from(body.to_owned())).unwrap()).await
}

const JSON: (&str, &str) = ("content-type", "application/json");
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

fn content_type(response: &TestResponse) -> &str {
    response.headers.get("content-type").map(|v| v.to_str().unwrap()).unwrap_or_default()
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

both_backends! {
    async fn http_follows_the_graphql_over_http_rules(backend: Backend) {
        let t = tenants(backend).await;
        let app = &t.app;
        let auth = format!("Bearer {}", t.token_a);
        let auth = ("authorization", auth.as_str());
        let accept_graphql = ("accept", GRAPHQL_RESPONSE);
        let body = |query: &str| json!({"query": query}).to_string();

        // application/graphql-response+json: request errors are 400 without data, executed
        // requests 200 (field errors included).
        let ok = post(app, &body("{ me { email } }"), &[JSON, accept_graphql, auth]).await;
        assert_eq!((ok.status.as_u16(), content_type(&ok)), (200, "application/graphql-response+json; charset=utf-8"));
        assert_eq!(ok.data()["me"]["email"], "a@example.com");
        assert_eq!(ok.headers["cache-control"], "private, no-store");
        assert_eq!(ok.headers["vary"], "Authorization");
        for (query, variables, code) in [
            ("{ me { email }", json!({}), "GRAPHQL_PARSE_FAILED"),
            ("{ me { nope } }", json!({}), "GRAPHQL_VALIDATION_FAILED"),
            ("query($n: Int!) { workspaces(first: $n) { totalCount } }", json!({"n": "many"}), "GRAPHQL_VALIDATION_FAILED"),
            ("query($n: Int!) { workspaces(first: $n) { totalCount } }", json!({}), "GRAPHQL_VALIDATION_FAILED"),
            ("query A { me { id } } query B { me { id } }", json!({}), "OPERATION_RESOLUTION_FAILURE"),
            ("subscription { jobUpdated(workspaceId: \"x\") { id } }", json!({}), "BAD_REQUEST"),
        ] {
            let request = json!({"query": query, "variables": variables}).to_string();
            let refused = post(app, &request, &[JSON, accept_graphql, auth]).await;
            assert_eq!(refused.status, 400, "{query}: {}", refused.body);
            assert_eq!(refused.error_code(), Some(code), "{query}: {}", refused.body);
            assert!(refused.body.get("data").is_none(), "{query}: no data in a request error: {}", refused.body);
            assert_eq!(content_type(&refused), "application/graphql-response+json; charset=utf-8");
            // application/json: the legacy 200, still without data.
            let legacy = post(app, &request, &[JSON, ("accept", "application/json"), auth]).await;
            assert_eq!((legacy.status.as_u16(), legacy.error_code()), (200, Some(code)), "{query}");
            assert_eq!(content_type(&legacy), "application/json");
            assert!(legacy.body.get("data").is_none());
        }
        let anonymous = post(app, &body("{ __typename me { id } }"), &[JSON, accept_graphql]).await;
        assert_eq!(anonymous.status, 200, "executed, with a field error: {}", anonymous.body);
        assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));
        assert_eq!(anonymous.body["data"]["__typename"], "Query");
        let bad_token = post(app, &body("{ me { id } }"), &[JSON, accept_graphql, ("authorization", "Bearer nope")]).await;
        assert_eq!((bad_token.status.as_u16(), bad_token.error_code()), (401, Some("UNAUTHENTICATED")));
        assert_eq!(content_type(&bad_token), "application/graphql-response+json; charset=utf-8");

        // Accept negotiation.
        for (accept, expected) in [
            (None, Some("application/json")),
            (Some("*/*"), Some("application/json")),
            (Some("application/json"), Some("application/json")),
            (Some("application/*"), Some("application/json")),
            (Some("application/json, application/graphql-response+json"), Some(GRAPHQL_RESPONSE)),
            (Some("application/graphql-response+json;q=0.9, application/json"), Some("application/json")),
            (Some("application/graphql-response+json, application/json;q=0.9"), Some(GRAPHQL_RESPONSE)),
            (Some("text/html, application/graphql-response+json;q=0.8"), Some(GRAPHQL_RESPONSE)),
            (Some("text/plain"), None),
            (Some("application/json;q=0"), None),
        ] {
            let mut headers = vec![JSON, auth];
            if let Some(accept) = accept {
                headers.push(("accept", accept));
            }
            let response = post(app, &body("{ __typename }"), &headers).await;
            match expected {
                Some(media) => {
                    assert_eq!(response.status, 200, "{accept:?}");
                    assert!(content_type(&response).starts_with(media), "{accept:?}: {}", content_type(&response));
                }
                None => {
                    assert_eq!((response.status.as_u16(), response.error_code()), (406, Some("NOT_ACCEPTABLE")), "{accept:?}");
                }
            }
        }

        // A POST body must be JSON: 415; malformed JSON: 400.
        for content in [None, Some("text/plain"), Some("application/graphql"), Some("application/x-www-form-urlencoded")] {
            let headers: Vec<(&str, &str)> = content.map(|c| ("content-type", c)).into_iter().chain([auth]).collect();
            let response = post(app, &body("{ __typename }"), &headers).await;
            assert_eq!((response.status.as_u16(), response.error_code()), (415, Some("UNSUPPORTED_MEDIA_TYPE")), "{content:?}");
        }
        let charset = post(app, &body("{ __typename }"), &[("content-type", "Application/JSON; charset=utf-8"), auth]).await;
        assert_eq!(charset.data()["__typename"], "Query");
        let malformed = post(app, "{\"query\": ", &[JSON, accept_graphql, auth]).await;
        assert_eq!((malformed.status.as_u16(), malformed.error_code()), (400, Some("BAD_REQUEST")));

        // GET: queries only. A mutation is 405 with `Allow: POST`, and does not run.
        let get = |query: &str, more: &str| format!("/graphql?query={}{more}", url_encode(query));
        let response = app.get(&get("{ workspaces { totalCount } }", ""), &[auth, accept_graphql]).await;
        assert_eq!(response.status, 200);
        assert_eq!(response.data()["workspaces"]["totalCount"], 1);
        assert_eq!(response.headers["cache-control"], "private, no-store");
        assert_eq!(response.headers["vary"], "Authorization");
        let mutation = app.get(&get(CREATE_WORKSPACE, ""), &[auth]).await;
        assert_eq!(mutation.status, 405, "{}", mutation.body);
        assert_eq!(mutation.headers["allow"], "POST");
        assert_eq!(mutation.error_code(), Some("METHOD_NOT_ALLOWED"));
        let after = app.get(&get("{ workspaces { totalCount } }", ""), &[auth]).await;
        assert_eq!(after.data()["workspaces"]["totalCount"], 1, "the mutation did not run");
        let subscription = app.get(&get("subscription { jobUpdated(workspaceId: \"x\") { id } }", ""), &[auth]).await;
        assert_eq!((subscription.status.as_u16(), subscription.error_code()), (405, Some("METHOD_NOT_ALLOWED")));
        // operationName and variables in the URL.
        let named = get(
            "query A { me { id } } query B($n: Int) { workspaces(first: $n) { nodes { id } } }",
            &format!("&operationName=B&variables={}", url_encode("{\"n\": 1}")),
        );
        let response = app.get(&named, &[auth]).await;
        assert_eq!(response.data()["workspaces"]["nodes"][0]["id"], json!(t.workspace_a));
        let bad = app.get(&get("{ __typename }", "&variables=%7Bnope"), &[auth]).await;
        assert_eq!((bad.status.as_u16(), bad.error_code()), (400, Some("BAD_REQUEST")));
        let refused = app.get(&get("{ __typename }", ""), &[auth, ("accept", "text/plain")]).await;
        assert_eq!(refused.status, 406);
        let parse = app.get(&get("{ me", ""), &[auth, accept_graphql]).await;
        assert_eq!((parse.status.as_u16(), parse.error_code()), (400, Some("GRAPHQL_PARSE_FAILED")));
    }
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn persisted(hash: &str) -> Value {
    json!({"persistedQuery": {"version": 1, "sha256Hash": hash}})
}

both_backends! {
    async fn apollo_persisted_queries_are_remembered_within_a_bound(backend: Backend) {
        let app = app_with(backend, |config| config.persisted_queries.cache_size = 2).await;
        let (_, token) = app.user_with_token("apq@example.com", None, false).await;
        let auth = format!("Bearer {token}");
        let auth = [("authorization", auth.as_str())];
        let queries = ["{ me { email } }", "{ me { id } }", "{ me { email id } }"];

        // An unknown hash: PersistedQueryNotFound (200, whatever the media type).
        for accept in ["application/json", GRAPHQL_RESPONSE] {
            let response = app
                .post_graphql_with(json!({"extensions": persisted(&sha256(queries[0]))}), &[auth[0], ("accept", accept)])
                .await;
            assert_eq!(response.status, 200, "{accept}");
            assert_eq!(response.body["errors"][0]["message"], "PersistedQueryNotFound");
            assert_eq!(response.error_code(), Some("PERSISTED_QUERY_NOT_FOUND"));
        }
        // Registered with its query; then by hash alone, over POST and GET.
        let registered = app
            .post_graphql_with(json!({"query": queries[0], "extensions": persisted(&sha256(queries[0]))}), &auth)
            .await;
        assert_eq!(registered.data()["me"]["email"], "apq@example.com");
        let by_hash = app.post_graphql_with(json!({"extensions": persisted(&sha256(queries[0]))}), &auth).await;
        assert_eq!(by_hash.data()["me"]["email"], "apq@example.com");
        let extensions = url_encode(&persisted(&sha256(queries[0])).to_string());
        let get = app.get(&format!("/graphql?extensions={extensions}"), &auth).await;
        assert_eq!(get.data()["me"]["email"], "apq@example.com");
        assert_eq!(app.state.persisted.len(), 1);

        // A hash that is not the query's.
        let wrong = app
            .post_graphql_with(json!({"query": queries[1], "extensions": persisted(&sha256(queries[0]))}), &auth)
            .await;
        assert_eq!(wrong.error_code(), Some("BAD_USER_INPUT"));
        assert_eq!(wrong.body["errors"][0]["message"], "provided sha does not match query");
        let unsupported = app
            .post_graphql_with(json!({"extensions": {"persistedQuery": {"version": 2, "sha256Hash": sha256(queries[0])}}}), &auth)
            .await;
        assert_eq!(unsupported.error_code(), Some("BAD_USER_INPUT"));

        // At most 2: the third pushes out the least recently used.
        for query in &queries[1..] {
            app.post_graphql_with(json!({"query": query, "extensions": persisted(&sha256(query))}), &auth).await.data();
        }
        assert_eq!(app.state.persisted.len(), 2);
        let first = app.post_graphql_with(json!({"extensions": persisted(&sha256(queries[0]))}), &auth).await;
        assert_eq!(first.error_code(), Some("PERSISTED_QUERY_NOT_FOUND"), "the first is gone");
        for query in &queries[1..] {
            let response = app.post_graphql_with(json!({"extensions": persisted(&sha256(query))}), &auth).await;
            assert!(response.data()["me"].is_object(), "{query}");
        }

        // Turned off: PERSISTED_QUERY_NOT_SUPPORTED.
        let off = app_with(backend, |config| config.persisted_queries.cache_size = 0).await;
        let response = off.post_graphql_with(json!({"query": queries[0], "extensions": persisted(&sha256(queries[0]))}), &[]).await;
        assert_eq!(response.error_code(), Some("PERSISTED_QUERY_NOT_SUPPORTED"));
    }
}

/// The `src` and `href` URLs of a page.
fn referenced(page: &str) -> Vec<String> {
    let mut urls = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (i, _) in page.match_indices(attribute) {
            let rest = &page[i + attribute.len()..];
            urls.push(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    urls
}

both_backends! {
    async fn graphiql_is_served_from_the_binary(backend: Backend) {
        let (app, token) = TestApp::seeded(backend).await;
        let page = app.get("/graphql", &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")]).await;
        assert_eq!(page.status, 200);
        assert!(content_type(&page).starts_with("text/html"));
        let policy = page.headers["content-security-policy"].to_str().unwrap();
        assert!(policy.starts_with("default-src 'self'") && policy.contains("connect-src 'self'"), "{policy}");
        let html = page.body.as_str().unwrap();
        assert!(!html.contains("http://") && !html.contains("https://"), "no asset from elsewhere");
        assert!(!html.contains(&token), "no token in the page");
        assert!(html.contains("<paste token>") || html.contains("&lt;paste token&gt;"));
        assert!(html.contains("subscriptionUrl") && html.contains("'wss:' : 'ws:'"), "subscriptions over ws(s)://<host>/graphql");
        let urls = referenced(html);
        let assets: Vec<&String> = urls.iter().filter(|u| !u.starts_with("data:")).collect();
        assert_eq!(assets.len(), 4, "{urls:?}");
        for url in assets {
            assert!(url.starts_with("/graphiql/assets/"), "{url}");
            let asset = app.get(url, &[]).await;
            assert_eq!(asset.status, 200, "{url}");
            let expected = if url.ends_with(".css") { "text/css" } else { "text/javascript" };
            assert!(content_type(&asset).starts_with(expected), "{url}: {}", content_type(&asset));
            assert!(asset.headers["cache-control"].to_str().unwrap().contains("immutable"));
            assert!(asset.body.as_str().is_some_and(|text| text.len() > 1000), "{url}");
        }
        let graphiql = app.get("/graphiql/assets/graphiql-3.8.3.min.js", &[]).await;
        assert!(graphiql.body.as_str().unwrap().contains("createGraphiQLFetcher"));
        assert_eq!(app.get("/graphiql/assets/nope.js", &[]).await.status, 404);

        // Turned off: neither the page nor the assets.
        let closed = app_with(backend, |config| config.limits.graphiql = false).await;
        assert_eq!(closed.get("/graphql", &[("accept", "text/html")]).await.status, 400);
        for url in referenced(html).iter().filter(|u| u.starts_with('/')) {
            assert_eq!(closed.get(url, &[]).await.status, 404, "{url}");
        }
    }
}

/// graphql-js 16's `getIntrospectionQuery({ inputValueDeprecation: true })`: what GraphiQL,
/// Apollo's and graphql-js's tooling send.
const INTROSPECTION: &str = "query IntrospectionQuery { __schema { queryType { name kind } mutationType { name kind } \
    subscriptionType { name kind } types { ...FullType } directives { name description locations \
    args(includeDeprecated: true) { ...InputValue } } } } \
    fragment FullType on __Type { kind name description fields(includeDeprecated: true) { name description \
    args(includeDeprecated: true) { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason } \
    inputFields(includeDeprecated: true) { ...InputValue } interfaces { ...TypeRef } \
    enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason } possibleTypes { ...TypeRef } } \
    fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue isDeprecated deprecationReason } \
    fragment TypeRef on __Type { kind name ofType { name kind ofType { name kind ofType { name kind ofType { name kind \
    ofType { name kind ofType { name kind ofType { name kind ofType { name kind ofType { name kind } } } } } } } } } }";

both_backends! {
    async fn schema_tools_introspect_under_the_default_limits(backend: Backend) {
        let app = TestApp::new(backend).await;
        // 15 levels deep: introspection does not count toward the depth limit (12).
        let response = post(&app, &json!({"query": INTROSPECTION}).to_string(), &[JSON, ("accept", GRAPHQL_RESPONSE)]).await;
        assert_eq!(response.status, 200, "{}", response.body.to_string().chars().take(500).collect::<String>());
        let schema = &response.data()["__schema"];
        assert_eq!(schema["subscriptionType"]["name"], "Subscription");
        let subscription = schema["types"].as_array().unwrap().iter().find(|t| t["name"] == "Subscription").unwrap();
        let fields: Vec<&str> = subscription["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(fields, ["jobUpdated", "executionUpdated"]);

        // Lists of members nested deeper than 3 grow exponentially: refused.
        let nested = "{ __type(name: \"Query\") { fields { type { fields { type { fields { type { fields { name } } } } } } } } }";
        let refused = post(&app, &json!({"query": nested}).to_string(), &[JSON, ("accept", GRAPHQL_RESPONSE)]).await;
        assert_eq!((refused.status.as_u16(), refused.error_code()), (400, Some("QUERY_TOO_COMPLEX")), "{}", refused.body);
        let three = "{ __type(name: \"Query\") { fields { type { fields { type { fields { name } } } } } } }";
        let allowed = post(&app, &json!({"query": three}).to_string(), &[JSON]).await;
        assert!(allowed.data()["__type"]["fields"].is_array());
        // The depth limit still holds for data.
        let deep = format!("{{ me {}{} }}", "{ workspaces { nodes ".repeat(6), "} } ".repeat(6));
        let refused = post(&app, &json!({"query": deep}).to_string(), &[JSON]).await;
        assert_eq!(refused.error_code(), Some("QUERY_TOO_COMPLEX"), "{}", refused.body);
    }
}
