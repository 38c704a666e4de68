//! Credentials, roles and memberships on open WebSockets (issue 10): a revoked or expired
//! token, a demotion, a removal or a deleted user take effect on a socket opened before,
//! for its next operations and its running subscriptions, on both protocols; and persisted
//! queries are remembered per caller. Everything through the real router on a real socket.

use std::time::{Duration, Instant};

use iofold_graph::db::{Backend, Db, PoolOptions};
use iofold_graph::server::AppState;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::both_backends;
use crate::support::app::{test_config, TestApp, ADMIN_SECRET};
use crate::support::db::require_postgres;
use crate::support::fixtures::execute;
use crate::support::ws::{bearer, live_subscriptions, Live, Ws, QUIET, WAIT};

/// How long a change announced on the event bus may take to reach an open socket in these
/// tests: generous for "within a second", and shorter than the periodic re-check
/// (`RECHECK_EVERY`), so only the announcement can meet it.
const ANNOUNCED: Duration = Duration::from_secs(3);

const PROTOCOLS: [&str; 2] = ["graphql-transport-ws", "graphql-ws"];

const ME: &str = "{ me { id } }";
const CREATE_TOKEN: &str = "mutation { createApiToken(name: \"x\") { token } }";
const CREATE_WORKSPACE: &str = "mutation { createWorkspace(input: {name: \"w\"}) { workspace { id } } }";
const CREATE_JOB: &str = "mutation($ws: ID!) { createJob(input: {workspaceId: $ws, type: IMPORT}) { job { id } } }";
const CREATE_AGENT: &str =
    "mutation($ws: ID!) { createAgent(input: {workspaceId: $ws, name: \"agent\"}) { agent { id } } }";
const CREATE_INTEGRATION: &str = "mutation($ws: ID!) { createIntegration(input: {workspaceId: $ws, name: \"i\", \
    platform: LANGFUSE, apiKey: \"secret\"}) { integration { id } } }";
const CREATE_TRACE: &str = "mutation($ws: ID!) { createTrace(input: {workspaceId: $ws, traceId: \"t\", \
    source: PLAYGROUND, steps: []}) { trace { id } } }";
const LISTS: &str =
    "query($ws: ID!) { traces(workspaceId: $ws) { totalCount } integrations(workspaceId: $ws) { totalCount } }";
const ADD_MEMBER: &str = "mutation($ws: ID!, $email: String!, $role: WorkspaceMemberRole!) { \
    addWorkspaceMember(workspaceId: $ws, email: $email, role: $role) { workspaceMember { id } } }";
const SET_ROLE: &str = "mutation($id: ID!, $role: WorkspaceMemberRole!) { \
    updateWorkspaceMemberRole(id: $id, role: $role) { workspaceMember { role } } }";
const REMOVE: &str = "mutation($id: ID!) { removeWorkspaceMember(id: $id) { deletedId } }";
const PROGRESS: &str = "mutation($id: ID!, $p: Int) { updateJobProgress(id: $id, progress: $p, status: RUNNING) \
    { job { id } } }";
const JOB_UPDATED: &str = "subscription($ws: ID!, $job: ID) { jobUpdated(workspaceId: $ws, jobId: $job) \
    { id progress workspace { id } } }";

/// An owner and a member of one workspace with a job, each with a token.
struct Team {
    app: TestApp,
    owner: String,
    member: String,
    member_id: String,
    membership: String,
    workspace: String,
    job: String,
}

fn id_at(value: &Value, path: &[&str]) -> String {
    path.iter().fold(value, |v, key| &v[key]).as_str().unwrap_or_else(|| panic!("{path:?} in {value}")).to_owned()
}

async fn team_on(app: TestApp) -> Team {
    let (_, owner) = app.user_with_token("owner@example.com", None, false).await;
    let (member_id, member) = app.user_with_token("member@example.com", None, false).await;
    let created = app.graphql(Some(&owner), CREATE_WORKSPACE, json!({})).await;
    let workspace = id_at(created.data(), &["createWorkspace", "workspace", "id"]);
    let added = app
        .graphql(Some(&owner), ADD_MEMBER, json!({"ws": workspace, "email": "member@example.com", "role": "MEMBER"}))
        .await;
    let membership = id_at(added.data(), &["addWorkspaceMember", "workspaceMember", "id"]);
    let job = app.graphql(Some(&owner), CREATE_JOB, json!({"ws": workspace})).await;
    let job = id_at(job.data(), &["createJob", "job", "id"]);
    Team { app, owner, member, member_id, membership, workspace, job }
}

async fn team(backend: Backend) -> Team {
    team_on(TestApp::new(backend).await).await
}

/// A second API token of the holder of `token`: (its id, its secret).
async fn second_token(app: &TestApp, token: &str, expires_at: Option<String>) -> (String, String) {
    let created = app
        .graphql(
            Some(token),
            "mutation($at: DateTime) { createApiToken(name: \"second\", expiresAt: $at) { token apiToken { id } } }",
            json!({"at": expires_at}),
        )
        .await;
    let data = created.data();
    (id_at(data, &["createApiToken", "apiToken", "id"]), id_at(data, &["createApiToken", "token"]))
}

/// Asserts that a socket closes with 4403 within `wait`, having sent no data before (at
/// most the end of its subscriptions, `UNAUTHENTICATED`).
async fn closes_forbidden(ws: &mut Ws, wait: Duration) {
    let (code, before) = ws.closed_within(wait).await;
    assert_eq!(code, Some(4403), "{}: {before:?}", ws.protocol);
    for message in &before {
        assert_eq!(message["type"], "error", "{}: {message}", ws.protocol);
        assert_eq!(code_of(message), Some("UNAUTHENTICATED"), "{}: {message}", ws.protocol);
    }
}

/// The code of the first error of an `error` message, or of a result's first error.
fn code_of(answer: &Value) -> Option<&str> {
    let errors = if answer["type"] == "error" { &answer["payload"] } else { &answer["payload"]["errors"] };
    errors[0]["extensions"]["code"].as_str()
}

// ---------------------------------------------------------------------------------------
// Credentials.

both_backends! {
    async fn a_revoked_token_closes_its_open_sockets_and_stops_their_subscriptions(backend: Backend) {
        let t = team(backend).await;
        let live = Live::start(t.app.state.clone()).await;
        let (token_id, token) = second_token(&t.app, &t.member, None).await;
        let mut sockets = Vec::new();
        for protocol in PROTOCOLS {
            let mut ws = Ws::initialised(&live.url(), protocol, bearer(&token)).await;
            let me = ws.run("me", ME, json!({})).await;
            assert_eq!(me["payload"]["data"]["me"]["id"], json!(t.member_id), "{protocol}: {me}");
            ws.start("jobs", json!({"query": JOB_UPDATED, "variables": {"ws": t.workspace}})).await;
            sockets.push(ws);
        }
        live_subscriptions(&t.app.state, 2).await;
        t.app.graphql(Some(&t.owner), PROGRESS, json!({"id": t.job, "p": 10})).await.data();
        for ws in &mut sockets {
            let heard = ws.next(WAIT).await.expect("the subscription works before");
            assert_eq!(heard["payload"]["data"]["jobUpdated"]["progress"], 10, "{heard}");
        }

        // Revoked with another of the user's tokens, through HTTP.
        let revoked = t.app
            .graphql(Some(&t.member), "mutation($id: ID!) { revokeApiToken(id: $id) { apiToken { revokedAt } } }", json!({"id": token_id}))
            .await;
        assert!(revoked.data()["revokeApiToken"]["apiToken"]["revokedAt"].is_string());
        let http = t.app.graphql(Some(&token), ME, json!({})).await;
        assert_eq!((http.status.as_u16(), http.error_code()), (401, Some("UNAUTHENTICATED")));

        // Every socket opened with it closes with 4403, announced: no new operation needed.
        // Nothing it could still send is data.
        for ws in &mut sockets {
            closes_forbidden(ws, ANNOUNCED).await;
        }
        live_subscriptions(&t.app.state, 0).await;
        // The user's other token is untouched.
        let mut other = Ws::initialised(&live.url(), "graphql-transport-ws", bearer(&t.member)).await;
        assert_eq!(other.run("me", ME, json!({})).await["payload"]["data"]["me"]["id"], json!(t.member_id));
    }
}

both_backends! {
    async fn an_operation_on_a_socket_whose_token_was_revoked_does_not_run(backend: Backend) {
        let t = team(backend).await;
        let live = Live::start(t.app.state.clone()).await;
        for protocol in PROTOCOLS {
            let (token_id, token) = second_token(&t.app, &t.member, None).await;
            let mut ws = Ws::initialised(&live.url(), protocol, bearer(&token)).await;
            assert!(ws.run("me", ME, json!({})).await["payload"]["data"]["me"].is_object());
            // Revoked behind the server's back (no announcement): the next operation checks.
            let sql = format!("UPDATE api_tokens SET revoked_at = updated_at WHERE id = '{token_id}'");
            assert_eq!(execute(&t.app.state.db, &sql).await.unwrap(), 1);
            let tokens_before = count_tokens(&t.app).await;
            ws.start("steal", json!({"query": CREATE_TOKEN})).await;
            closes_forbidden(&mut ws, WAIT).await;
            assert_eq!(count_tokens(&t.app).await, tokens_before, "{protocol}: no token was created");
            let http = t.app.graphql(Some(&token), CREATE_TOKEN, json!({})).await;
            assert_eq!(http.status.as_u16(), 401);
        }
    }
}

async fn count_tokens(app: &TestApp) -> i64 {
    crate::support::fixtures::count(&app.state.db, "api_tokens", None).await
}

both_backends! {
    async fn an_expired_token_closes_its_open_sockets(backend: Backend) {
        let t = team(backend).await;
        let live = Live::start(t.app.state.clone()).await;
        let expires = chrono::Utc::now() + chrono::Duration::seconds(3);
        let expires_text = expires.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let (_, token) = second_token(&t.app, &t.member, Some(expires_text)).await;
        let mut sockets = Vec::new();
        for protocol in PROTOCOLS {
            let mut ws = Ws::initialised(&live.url(), protocol, bearer(&token)).await;
            assert!(ws.run("me", ME, json!({})).await["payload"]["data"]["me"].is_object(), "{protocol}");
            ws.start("jobs", json!({"query": JOB_UPDATED, "variables": {"ws": t.workspace, "job": t.job}})).await;
            sockets.push(ws);
        }
        live_subscriptions(&t.app.state, 2).await;
        // At expiry, with nothing announced and no operation sent, the sockets close.
        let left = (expires - chrono::Utc::now()).to_std().unwrap_or_default();
        for ws in &mut sockets {
            closes_forbidden(ws, left + ANNOUNCED).await;
        }
        assert!(chrono::Utc::now() >= expires, "not before the token expired");
        live_subscriptions(&t.app.state, 0).await;
        assert_eq!(t.app.graphql(Some(&token), ME, json!({})).await.status.as_u16(), 401);
    }
}

both_backends! {
    async fn a_deleted_user_loses_their_open_sockets(backend: Backend) {
        let t = team(backend).await;
        let live = Live::start(t.app.state.clone()).await;
        let mut ws = Ws::initialised(&live.url(), "graphql-transport-ws", bearer(&t.member)).await;
        ws.start("jobs", json!({"query": JOB_UPDATED, "variables": {"ws": t.workspace}})).await;
        live_subscriptions(&t.app.state, 1).await;
        let deleted = t.app
            .graphql(Some(&t.member), "mutation($id: ID!) { deleteUser(id: $id) { deletedId } }", json!({"id": t.member_id}))
            .await;
        assert_eq!(deleted.data()["deleteUser"]["deletedId"], json!(t.member_id));
        closes_forbidden(&mut ws, ANNOUNCED).await;
    }
}

// ---------------------------------------------------------------------------------------
// Roles and memberships.

both_backends! {
    async fn a_demoted_member_may_no_longer_write_over_the_open_socket(backend: Backend) {
        let t = team(backend).await;
        let live = Live::start(t.app.state.clone()).await;
        let mut ws = Ws::initialised(&live.url(), "graphql-transport-ws", bearer(&t.member)).await;
        let created = ws.run("1", CREATE_AGENT, json!({"ws": t.workspace})).await;
        assert_eq!(created["type"], "next", "{created}");
        assert!(created["payload"]["data"]["createAgent"]["agent"]["id"].is_string(), "a member writes: {created}");
        ws.start("jobs", json!({"query": JOB_UPDATED, "variables": {"ws": t.workspace}})).await;
        live_subscriptions(&t.app.state, 1).await;

        let demoted = t.app.graphql(Some(&t.owner), SET_ROLE, json!({"id": t.membership, "role": "VIEWER"})).await;
        assert_eq!(demoted.data()["updateWorkspaceMemberRole"]["workspaceMember"]["role"], "VIEWER");

        // The next mutation on the socket is FORBIDDEN, as over HTTP.
        let http = t.app.graphql(Some(&t.member), CREATE_AGENT, json!({"ws": t.workspace})).await;
        assert_eq!(http.error_code(), Some("FORBIDDEN"));
        let refused = ws.run("2", CREATE_AGENT, json!({"ws": t.workspace})).await;
        assert_eq!(code_of(&refused), Some("FORBIDDEN"), "{refused}");
        let agents = t.app.graphql(Some(&t.owner), "query($ws: ID!) { agents(workspaceId: $ws) { totalCount } }", json!({"ws": t.workspace})).await;
        assert_eq!(agents.data()["agents"]["totalCount"], 1, "only the member's first agent");

        // A viewer still reads: queries answer, and the subscription goes on.
        let lists = ws.run("3", LISTS, json!({"ws": t.workspace})).await;
        assert_eq!(lists["type"], "next", "{lists}");
        t.app.graphql(Some(&t.owner), PROGRESS, json!({"id": t.job, "p": 30})).await.data();
        let heard = ws.next(WAIT).await.expect("a viewer's subscription goes on");
        assert_eq!((heard["id"].as_str(), &heard["payload"]["data"]["jobUpdated"]["progress"]), (Some("jobs"), &json!(30)));

        // Promoted back: the socket writes again.
        t.app.graphql(Some(&t.owner), SET_ROLE, json!({"id": t.membership, "role": "MEMBER"})).await.data();
        let created = ws.run("4", CREATE_AGENT, json!({"ws": t.workspace})).await;
        assert!(created["payload"]["data"]["createAgent"]["agent"]["id"].is_string(), "{created}");
    }
}

both_backends! {
    async fn a_removed_member_loses_the_workspace_on_the_open_socket(backend: Backend) {
        let t = team(backend).await;
        let live = Live::start(t.app.state.clone()).await;
        t.app.graphql(Some(&t.owner), CREATE_INTEGRATION, json!({"ws": t.workspace})).await.data();
        t.app.graphql(Some(&t.owner), CREATE_TRACE, json!({"ws": t.workspace})).await.data();
        let mut sockets = Vec::new();
        for protocol in PROTOCOLS {
            let mut ws = Ws::initialised(&live.url(), protocol, bearer(&t.member)).await;
            let lists = ws.run("lists", LISTS, json!({"ws": t.workspace})).await;
            assert_eq!(lists["payload"]["data"], json!({"traces": {"totalCount": 1}, "integrations": {"totalCount": 1}}), "{protocol}");
            ws.start("all", json!({"query": JOB_UPDATED, "variables": {"ws": t.workspace}})).await;
            ws.start("one", json!({"query": JOB_UPDATED, "variables": {"ws": t.workspace, "job": t.job}})).await;
            sockets.push(ws);
        }
        live_subscriptions(&t.app.state, 4).await;
        t.app.graphql(Some(&t.owner), PROGRESS, json!({"id": t.job, "p": 10})).await.data();
        for ws in &mut sockets {
            for _ in 0..2 {
                let heard = ws.next(WAIT).await.expect("the subscriptions work before");
                assert_eq!(heard["payload"]["data"]["jobUpdated"]["progress"], 10, "{heard}");
            }
        }

        let removed = t.app.graphql(Some(&t.owner), REMOVE, json!({"id": t.membership})).await;
        assert_eq!(removed.data()["removeWorkspaceMember"]["deletedId"], json!(t.membership));

        // Announced: each running subscription to the workspace ends with FORBIDDEN.
        let started = Instant::now();
        for ws in &mut sockets {
            let mut ended = Vec::new();
            while ended.len() < 2 {
                let left = ANNOUNCED.saturating_sub(started.elapsed());
                let message = ws.next(left).await.unwrap_or_else(|| panic!("{}: the subscriptions end; {ended:?}", ws.protocol));
                assert_eq!(message["type"], "error", "{}: no data after the removal: {message}", ws.protocol);
                assert_eq!(code_of(&message), Some("FORBIDDEN"), "{message}");
                ended.push(message["id"].as_str().unwrap().to_owned());
            }
            ended.sort();
            assert_eq!(ended, ["all", "one"]);
        }
        live_subscriptions(&t.app.state, 0).await;
        t.app.graphql(Some(&t.owner), PROGRESS, json!({"id": t.job, "p": 20})).await.data();

        for ws in &mut sockets {
            assert_eq!(ws.next(QUIET).await, None, "{}: no job event after the removal", ws.protocol);
            // The socket stays open (the credential holds), but the workspace is gone from it,
            // exactly as over HTTP.
            let lists = ws.run("lists-after", LISTS, json!({"ws": t.workspace})).await;
            let http = t.app.graphql(Some(&t.member), LISTS, json!({"ws": t.workspace})).await;
            assert_eq!(lists["payload"]["data"], http.body["data"], "{}", ws.protocol);
            assert_eq!(lists["payload"]["data"], json!({"traces": {"totalCount": 0}, "integrations": {"totalCount": 0}}));
            let write = ws.run("write", CREATE_AGENT, json!({"ws": t.workspace})).await;
            let http = t.app.graphql(Some(&t.member), CREATE_AGENT, json!({"ws": t.workspace})).await;
            assert!(code_of(&write).is_some(), "{write}");
            assert_eq!(code_of(&write), http.error_code(), "{}: {write}", ws.protocol);
            ws.start("again", json!({"query": JOB_UPDATED, "variables": {"ws": t.workspace}})).await;
            let again = ws.next(WAIT).await.expect("an answer");
            assert_eq!((again["type"].as_str(), code_of(&again)), (Some("error"), Some("NOT_FOUND")), "{again}");
        }
        let agents = t.app.graphql(Some(&t.owner), "query($ws: ID!) { agents(workspaceId: $ws) { totalCount } }", json!({"ws": t.workspace})).await;
        assert_eq!(agents.data()["agents"]["totalCount"], 0);
    }
}

both_backends! {
    async fn a_subscription_reads_each_event_with_the_memberships_of_that_moment(backend: Backend) {
        // A removal the bus never announced (made in the database directly): the next event
        // is read with the current memberships, so nothing reaches the removed member.
        let t = team(backend).await;
        let live = Live::start(t.app.state.clone()).await;
        let mut ws = Ws::initialised(&live.url(), "graphql-transport-ws", bearer(&t.member)).await;
        ws.start("jobs", json!({"query": JOB_UPDATED, "variables": {"ws": t.workspace}})).await;
        live_subscriptions(&t.app.state, 1).await;
        let sql = format!("DELETE FROM workspace_members WHERE id = '{}'", t.membership);
        assert_eq!(execute(&t.app.state.db, &sql).await.unwrap(), 1);
        t.app.graphql(Some(&t.owner), PROGRESS, json!({"id": t.job, "p": 40})).await.data();
        if let Some(message) = ws.next(QUIET).await {
            assert_eq!(message["type"], "error", "no data for a removed member: {message}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_instance_closes_sockets_on_another() {
    if !require_postgres("security_ws::a_revocation_on_one_instance_closes_sockets_on_another").await {
        return;
    }
    let t = team(Backend::Postgres).await;
    let url = t.app.test_db.url.clone();
    let other = AppState::new(Db::connect(&url, &PoolOptions { max_size: 4 }).unwrap(), test_config(url.as_str()));
    let live = Live::start(other.clone()).await;
    let (token_id, token) = second_token(&t.app, &t.member, None).await;
    let mut ws = Ws::initialised(&live.url(), "graphql-transport-ws", bearer(&token)).await;
    ws.start("jobs", json!({"query": JOB_UPDATED, "variables": {"ws": t.workspace}})).await;
    let mut member_ws = Ws::initialised(&live.url(), "graphql-ws", bearer(&t.member)).await;
    member_ws.start("jobs", json!({"query": JOB_UPDATED, "variables": {"ws": t.workspace, "job": t.job}})).await;
    live_subscriptions(&other, 2).await;
    // Wait until the other instance listens, so the announcements can reach it.
    t.app.graphql(Some(&t.owner), PROGRESS, json!({"id": t.job, "p": 5})).await.data();
    assert!(ws.next(WAIT).await.is_some());
    assert!(member_ws.next(WAIT).await.is_some());

    // Through this instance: a revocation and a removal reach the other's sockets.
    let revoke = "mutation($id: ID!) { revokeApiToken(id: $id) { apiToken { id } } }";
    t.app.graphql(Some(&t.member), revoke, json!({"id": token_id})).await.data();
    closes_forbidden(&mut ws, ANNOUNCED).await;
    t.app.graphql(Some(&t.owner), REMOVE, json!({"id": t.membership})).await.data();
    let ended = member_ws.next(ANNOUNCED).await.expect("the subscription ends");
    assert_eq!((ended["type"].as_str(), code_of(&ended)), (Some("error"), Some("FORBIDDEN")), "{ended}");
}

// ---------------------------------------------------------------------------------------
// Persisted queries.

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn persisted(hash: &str) -> Value {
    json!({"persistedQuery": {"version": 1, "sha256Hash": hash}})
}

both_backends! {
    async fn persisted_queries_are_remembered_per_caller(backend: Backend) {
        let t = team(backend).await;
        let (_, owner_second) = second_token(&t.app, &t.owner, None).await;
        let query = "query OwnersSecretReport { me { id email } }";
        let hash = sha256(query);
        let by_hash = json!({"extensions": persisted(&hash)});
        let auth = |token: &str| format!("Bearer {token}");

        // Nobody has it; the owner registers it.
        let registered = t.app
            .post_graphql_with(json!({"query": query, "extensions": persisted(&hash)}), &[("authorization", auth(&t.owner).as_str())])
            .await;
        assert!(registered.data()["me"]["id"].is_string());

        // The owner finds it by hash, with any of their tokens.
        for token in [&t.owner, &owner_second] {
            let found = t.app.post_graphql_with(by_hash.clone(), &[("authorization", auth(token).as_str())]).await;
            assert!(found.data()["me"]["email"].as_str().is_some_and(|e| e.starts_with("owner")), "{}", found.body);
        }
        // Anyone else, anonymous and the admin secret included, cannot tell it was ever sent:
        // the same answer as a hash nobody registered.
        let unknown = json!({"extensions": persisted(&sha256("{ me { id } } # never sent"))});
        for headers in [
            vec![("authorization", auth(&t.member))],
            vec![],
            vec![("x-iofold-admin-secret", ADMIN_SECRET.to_owned())],
        ] {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let theirs = t.app.post_graphql_with(by_hash.clone(), &headers).await;
            let never = t.app.post_graphql_with(unknown.clone(), &headers).await;
            assert_eq!(theirs.error_code(), Some("PERSISTED_QUERY_NOT_FOUND"), "{headers:?}: {}", theirs.body);
            assert_eq!((theirs.status, &theirs.body), (never.status, &never.body), "{headers:?}");
        }
        // An anonymous registration is not seen by a user either.
        let anonymous_query = "{ __typename }";
        let anonymous = t.app
            .post_graphql_with(json!({"query": anonymous_query, "extensions": persisted(&sha256(anonymous_query))}), &[])
            .await;
        assert_eq!(anonymous.body["data"]["__typename"], "Query");
        let seen = t.app
            .post_graphql_with(json!({"extensions": persisted(&sha256(anonymous_query))}), &[("authorization", auth(&t.member).as_str())])
            .await;
        assert_eq!(seen.error_code(), Some("PERSISTED_QUERY_NOT_FOUND"));

        // Over WebSocket the same: the member's socket does not find the owner's query; the
        // owner's does.
        let live = Live::start(t.app.state.clone()).await;
        let mut member = Ws::initialised(&live.url(), "graphql-transport-ws", bearer(&t.member)).await;
        member.start("apq", json!({"extensions": persisted(&hash)})).await;
        let answer = member.next(WAIT).await.expect("an answer");
        assert_eq!((answer["type"].as_str(), code_of(&answer)), (Some("error"), Some("PERSISTED_QUERY_NOT_FOUND")), "{answer}");
        let mut owner = Ws::initialised(&live.url(), "graphql-transport-ws", bearer(&t.owner)).await;
        owner.start("apq", json!({"extensions": persisted(&hash)})).await;
        let answer = owner.next(WAIT).await.expect("an answer");
        assert_eq!(answer["type"], "next", "{answer}");
        assert!(answer["payload"]["data"]["me"]["id"].is_string());
    }
}
