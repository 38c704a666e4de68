//! Shared subscriptions (issue 12): subscribers that run the same document with the same
//! variables under the same access share one execution, so an event costs one re-read
//! whatever the number of watchers; different accesses never share; the hub forgets an
//! execution when its last subscriber leaves. Through the router, on real sockets.

use std::collections::BTreeMap;
use std::time::Instant;

use futures_util::future::join_all;
use iofold_graph::db::Backend;
use serde_json::{json, Value};

use crate::both_backends;
use crate::support::app::{TestApp, ADMIN_SECRET};
use crate::support::ws::{bearer, live_subscriptions, Live, Ws, QUIET, WAIT};

const CREATE_WORKSPACE: &str = "mutation { createWorkspace(input: {name: \"w\"}) { workspace { id } } }";
const CREATE_AGENT: &str =
    "mutation($ws: ID!) { createAgent(input: {workspaceId: $ws, name: \"agent\"}) { agent { id } } }";
const CREATE_JOB: &str = "mutation($ws: ID!, $agent: ID) { createJob(input: {workspaceId: $ws, type: IMPORT, \
    agentId: $agent}) { job { id } } }";
const ADD_MEMBER: &str = "mutation($ws: ID!, $email: String!) { \
    addWorkspaceMember(workspaceId: $ws, email: $email, role: VIEWER) { workspaceMember { id } } }";
const UPDATE_JOB: &str =
    "mutation($id: ID!, $p: Int) { updateJob(id: $id, patch: {priority: $p}) { job { id priority } } }";
/// A job with its workspace and its agent: three reads per execution.
const JOB_UPDATED: &str = "subscription($ws: ID!, $job: ID) { jobUpdated(workspaceId: $ws, jobId: $job) \
    { id priority workspace { id name } agent { id name } } }";
/// A field whose value depends on the caller: the API tokens of the workspace's members
/// (a user sees only their own; the admin, all).
const JOB_AND_TOKENS: &str = "subscription($ws: ID!, $job: ID) { jobUpdated(workspaceId: $ws, jobId: $job) \
    { id priority workspace { workspaceMembers { nodes { user { email apiTokens { totalCount } } } } } } }";

/// The most statements one event may cost its subscribers, whatever their number: the
/// job's row, its workspace and its agent, read once for all of them.
const STATEMENTS_PER_EVENT: u64 = 3;

/// An owner with a token, their workspace, an agent and two jobs of that agent.
struct Setup {
    app: TestApp,
    token: String,
    workspace: String,
    jobs: [String; 2],
}

fn id_at(value: &Value, path: &[&str]) -> String {
    path.iter().fold(value, |v, key| &v[key]).as_str().unwrap_or_else(|| panic!("{path:?} in {value}")).to_owned()
}

async fn setup(backend: Backend) -> Setup {
    let app = TestApp::new(backend).await;
    let (_, token) = app.user_with_token("owner@example.com", None, false).await;
    let created = app.graphql(Some(&token), CREATE_WORKSPACE, json!({})).await;
    let workspace = id_at(created.data(), &["createWorkspace", "workspace", "id"]);
    let agent = app.graphql(Some(&token), CREATE_AGENT, json!({"ws": workspace})).await;
    let agent = id_at(agent.data(), &["createAgent", "agent", "id"]);
    let mut jobs = Vec::new();
    for _ in 0..2 {
        let job = app.graphql(Some(&token), CREATE_JOB, json!({"ws": workspace, "agent": agent})).await;
        jobs.push(id_at(job.data(), &["createJob", "job", "id"]));
    }
    let jobs = jobs.try_into().unwrap();
    Setup { app, token, workspace, jobs }
}

/// `updateJob` under the admin secret (no token to check or touch): its priority set to `p`.
async fn update_job(app: &TestApp, job: &str, p: i64) {
    let updated = app.graphql_admin(UPDATE_JOB, json!({"id": job, "p": p})).await;
    assert_eq!(updated.data()["updateJob"]["job"]["priority"], p);
}

/// The statements a lone `updateJob` costs, with nobody subscribed.
async fn mutation_statements(app: &TestApp, job: &str) -> u64 {
    let before = app.state.db.stats.statements();
    update_job(app, job, 1).await;
    app.state.db.stats.statements() - before
}

/// A gauge or counter of `GET /metrics`.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let response = app.get("/metrics", &[]).await;
    let body = response.body.as_str().expect("the metrics are text");
    let line = body.lines().find(|line| line.split(' ').next() == Some(name));
    line.and_then(|line| line.split(' ').nth(1)).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{name}"))
}

/// Waits until the hub holds `n` shared executions (as `GET /metrics` reports them).
async fn shared_executions(app: &TestApp, n: f64) {
    let started = Instant::now();
    loop {
        let now = metric(app, "iofold_shared_subscriptions").await;
        if now == n {
            return;
        }
        assert!(started.elapsed() < WAIT, "{now} shared executions, not {n}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Receives `n` messages on each socket; returns, per socket, the payloads by operation id.
async fn receive(sockets: &mut [Ws], n: usize) -> Vec<BTreeMap<String, Vec<Value>>> {
    join_all(sockets.iter_mut().map(|ws| async move {
        let mut heard: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for _ in 0..n {
            let message = ws.next(WAIT).await.expect("every subscriber hears the change");
            assert_eq!(message["type"], "next", "{message}");
            heard.entry(message["id"].as_str().unwrap().to_owned()).or_default().push(message["payload"].clone());
        }
        heard
    }))
    .await
}

/// Opens `sockets` sockets with `payload` and starts `per_socket` subscriptions on each
/// (ids `s0`…), all with the same document and variables.
async fn subscribed(live: &Live, payload: Value, sockets: usize, per_socket: usize, variables: Value) -> Vec<Ws> {
    let mut opened = Vec::new();
    for _ in 0..sockets {
        let mut ws = Ws::initialised(&live.url(), "graphql-transport-ws", payload.clone()).await;
        for i in 0..per_socket {
            ws.subscribe(&format!("s{i}"), JOB_UPDATED, variables.clone()).await;
        }
        opened.push(ws);
    }
    opened
}

fn admin() -> Value {
    json!({"x-iofold-admin-secret": ADMIN_SECRET})
}

both_backends! {
    async fn a_thousand_subscribers_of_one_job_cost_one_read_per_event(backend: Backend) {
        let s = setup(backend).await;
        let job = &s.jobs[0];
        let mutation = mutation_statements(&s.app, job).await;
        let live = Live::start(s.app.state.clone()).await;
        let mut sockets = subscribed(&live, bearer(&s.token), 10, 100, json!({"ws": s.workspace, "job": job})).await;
        live_subscriptions(&s.app.state, 1000).await;
        assert_eq!(metric(&s.app, "iofold_shared_subscriptions").await, 1.0, "one execution for all");
        assert_eq!(metric(&s.app, "iofold_shared_subscription_subscribers").await, 1000.0);

        let stats = &s.app.state.db.stats;
        stats.capture_shapes();
        let before = stats.statements();
        update_job(&s.app, job, 7).await;
        let heard = receive(&mut sockets, 100).await;
        let statements = stats.statements() - before;
        let shapes = stats.take_shapes();

        // Every one of the 1,000 subscribers got the new state, once.
        for per_socket in &heard {
            assert_eq!(per_socket.len(), 100);
            for payloads in per_socket.values() {
                assert_eq!(payloads.len(), 1, "{payloads:?}");
                let job_seen = &payloads[0]["data"]["jobUpdated"];
                assert_eq!(job_seen["priority"], 7, "{job_seen}");
                assert_eq!(job_seen["workspace"]["id"], json!(s.workspace), "{job_seen}");
                assert_eq!(job_seen["agent"]["name"], "agent", "{job_seen}");
            }
        }
        for ws in &mut sockets {
            assert_eq!(ws.next(QUIET).await, None, "exactly one event each");
        }
        // Open sockets re-check their token on their own schedule (every 5 s): not the
        // event's cost.
        let rechecks = shapes.iter().filter(|shape| shape.contains("api_tokens")).count() as u64;
        let for_the_event = statements - mutation - rechecks;
        eprintln!(
            "{backend:?}: updateJob {mutation} statements alone; with 1,000 subscribers {statements} \
             ({rechecks} credential re-checks): {for_the_event} for the event"
        );
        assert!(
            for_the_event <= STATEMENTS_PER_EVENT,
            "{for_the_event} statements for one event to 1,000 subscribers: {shapes:#?}"
        );
    }
}

both_backends! {
    async fn subscribers_under_different_accesses_do_not_share(backend: Backend) {
        let s = setup(backend).await;
        let job = &s.jobs[0];
        let (_, viewer) = s.app.user_with_token("viewer@example.com", None, false).await;
        s.app.graphql(Some(&s.token), ADD_MEMBER, json!({"ws": s.workspace, "email": "viewer@example.com"})).await.data();
        let live = Live::start(s.app.state.clone()).await;
        let variables = json!({"ws": s.workspace, "job": job});
        let mut sockets = Vec::new();
        for payload in [bearer(&s.token), bearer(&viewer), admin()] {
            let mut ws = Ws::initialised(&live.url(), "graphql-transport-ws", payload).await;
            for id in ["a", "b"] {
                ws.subscribe(id, JOB_AND_TOKENS, variables.clone()).await;
            }
            sockets.push(ws);
        }
        live_subscriptions(&s.app.state, 6).await;
        // The owner, the viewer and the admin: three accesses, three executions (each shared
        // by its two subscribers).
        assert_eq!(metric(&s.app, "iofold_shared_subscriptions").await, 3.0);
        assert_eq!(metric(&s.app, "iofold_shared_subscription_subscribers").await, 6.0);

        update_job(&s.app, job, 3).await;
        // Each sees the tokens its own access allows: the owner and the viewer their own, the
        // admin everyone's.
        let expected = [[1, 0], [0, 1], [1, 1]];
        for (per_socket, expected) in receive(&mut sockets, 2).await.into_iter().zip(expected) {
            assert_eq!(per_socket.keys().collect::<Vec<_>>(), ["a", "b"]);
            for payloads in per_socket.values() {
                let job_seen = &payloads[0]["data"]["jobUpdated"];
                assert_eq!(job_seen["priority"], 3, "{job_seen}");
                let mut tokens: Vec<(String, i64)> = job_seen["workspace"]["workspaceMembers"]["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| (id_at(m, &["user", "email"]), m["user"]["apiTokens"]["totalCount"].as_i64().unwrap()))
                    .collect();
                tokens.sort();
                let owner_and_viewer = [tokens[0].1, tokens[1].1];
                assert_eq!(owner_and_viewer, expected, "{tokens:?}");
            }
        }
        for ws in &mut sockets {
            assert_eq!(ws.next(QUIET).await, None, "exactly one event each");
        }
        drop(sockets);
        live_subscriptions(&s.app.state, 0).await;
        shared_executions(&s.app, 0.0).await;
    }
}

both_backends! {
    async fn an_event_costs_reads_only_for_the_subscriptions_watching_its_row(backend: Backend) {
        let s = setup(backend).await;
        let [x, y] = &s.jobs;
        let mutation = mutation_statements(&s.app, x).await;
        let live = Live::start(s.app.state.clone()).await;
        let mut on_x = subscribed(&live, bearer(&s.token), 2, 50, json!({"ws": s.workspace, "job": x})).await;
        let mut on_y = subscribed(&live, bearer(&s.token), 2, 50, json!({"ws": s.workspace, "job": y})).await;
        live_subscriptions(&s.app.state, 200).await;
        assert_eq!(metric(&s.app, "iofold_shared_subscriptions").await, 2.0, "one execution per job");

        let stats = &s.app.state.db.stats;
        stats.capture_shapes();
        let before = stats.statements();
        update_job(&s.app, x, 5).await;
        receive(&mut on_x, 50).await;
        let statements = stats.statements() - before;
        let rechecks = stats.take_shapes().iter().filter(|shape| shape.contains("api_tokens")).count() as u64;
        assert!(statements - mutation - rechecks <= STATEMENTS_PER_EVENT, "{statements} - {mutation} - {rechecks}");
        for ws in &mut on_y {
            assert_eq!(ws.next(QUIET).await, None, "job Y's subscribers hear nothing of job X");
        }
        update_job(&s.app, y, 6).await;
        for per_socket in receive(&mut on_y, 50).await {
            assert!(per_socket.values().all(|p| p.len() == 1 && p[0]["data"]["jobUpdated"]["priority"] == 6));
        }
    }
}

both_backends! {
    async fn the_hub_forgets_an_execution_when_its_last_subscriber_leaves(backend: Backend) {
        let s = setup(backend).await;
        let job = &s.jobs[0];
        let live = Live::start(s.app.state.clone()).await;
        let variables = json!({"ws": s.workspace, "job": job});
        let mut sockets = subscribed(&live, bearer(&s.token), 2, 3, variables.clone()).await;
        live_subscriptions(&s.app.state, 6).await;
        assert_eq!(metric(&s.app, "iofold_shared_subscriptions").await, 1.0);

        // `complete` from one client ends only that client's subscription.
        sockets[0].send(json!({"type": "complete", "id": "s0"})).await;
        live_subscriptions(&s.app.state, 5).await;
        update_job(&s.app, job, 9).await;
        let heard = receive(&mut sockets[..1], 2).await.remove(0);
        assert_eq!(heard.keys().collect::<Vec<_>>(), ["s1", "s2"]);
        let heard = receive(&mut sockets[1..], 3).await.remove(0);
        assert_eq!(heard.keys().collect::<Vec<_>>(), ["s0", "s1", "s2"]);

        // The other socket's subscriptions end one by one; its last leaves the hub empty
        // once the first socket closes too.
        for id in ["s0", "s1", "s2"] {
            sockets[1].send(json!({"type": "complete", "id": id})).await;
        }
        live_subscriptions(&s.app.state, 2).await;
        assert_eq!(metric(&s.app, "iofold_shared_subscriptions").await, 1.0, "the first socket still watches");
        let mut first = sockets.remove(0);
        first.socket.close(None).await.unwrap();
        live_subscriptions(&s.app.state, 0).await;
        shared_executions(&s.app, 0.0).await;
        assert_eq!(metric(&s.app, "iofold_shared_subscription_subscribers").await, 0.0);

        // Subscribing again starts a new execution, which works.
        let mut again = subscribed(&live, bearer(&s.token), 1, 1, variables).await;
        live_subscriptions(&s.app.state, 1).await;
        shared_executions(&s.app, 1.0).await;
        update_job(&s.app, job, 10).await;
        let heard = receive(&mut again, 1).await.remove(0);
        assert_eq!(heard["s0"][0]["data"]["jobUpdated"]["priority"], 10);
    }
}

both_backends! {
    async fn a_removed_member_loses_every_shared_subscription_and_the_others_go_on(backend: Backend) {
        let s = setup(backend).await;
        let job = &s.jobs[0];
        let (_, viewer) = s.app.user_with_token("viewer@example.com", None, false).await;
        let added = s.app.graphql(Some(&s.token), ADD_MEMBER, json!({"ws": s.workspace, "email": "viewer@example.com"})).await;
        let membership = id_at(added.data(), &["addWorkspaceMember", "workspaceMember", "id"]);
        let live = Live::start(s.app.state.clone()).await;
        let variables = json!({"ws": s.workspace, "job": job});
        let mut viewers = subscribed(&live, bearer(&viewer), 2, 10, variables.clone()).await;
        let mut owners = subscribed(&live, bearer(&s.token), 1, 10, variables).await;
        live_subscriptions(&s.app.state, 30).await;
        assert_eq!(metric(&s.app, "iofold_shared_subscriptions").await, 2.0);

        let removed = s.app.graphql(Some(&s.token), "mutation($id: ID!) { removeWorkspaceMember(id: $id) { deletedId } }", json!({"id": membership})).await;
        removed.data();
        // Every one of the viewer's subscriptions ends with FORBIDDEN, nothing before.
        for ws in &mut viewers {
            let mut ended = Vec::new();
            while ended.len() < 10 {
                let message = ws.next(WAIT).await.expect("the viewer's subscriptions end");
                assert_eq!(message["type"], "error", "no data after the removal: {message}");
                assert_eq!(message["payload"][0]["extensions"]["code"], "FORBIDDEN", "{message}");
                ended.push(message["id"].as_str().unwrap().to_owned());
            }
            ended.sort();
            ended.dedup();
            assert_eq!(ended.len(), 10);
        }
        live_subscriptions(&s.app.state, 10).await;
        shared_executions(&s.app, 1.0).await;

        // The owner's go on.
        update_job(&s.app, job, 4).await;
        for per_socket in receive(&mut owners, 10).await {
            assert!(per_socket.values().all(|p| p.len() == 1 && p[0]["data"]["jobUpdated"]["priority"] == 4));
        }
        for ws in &mut viewers {
            assert_eq!(ws.next(QUIET).await, None, "the removed member hears nothing more");
        }
    }
}
