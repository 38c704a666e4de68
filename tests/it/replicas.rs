//! Read replicas and read-your-writes (PostgreSQL): reads go to the streaming replica
//! (`TEST_DATABASE_READ_URL`, started by `.ci/replica.sh`), writes to the primary; a
//! mutation's consistency token brings later reads, through any instance, to a replica that
//! has replayed it or to the primary; a replica that is paused beyond the lag setting, down,
//! or failing is skipped and reads go on.
//!
//! The replica is shared by the whole test binary: tests that pause its replay hold
//! [`REPLICA`] (every test here does, so none sees another's pause), and a [`PausedReplay`]
//! resumes replay when dropped, even when the test fails.

use std::time::Duration;

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use iofold_graph::db::replicas::{Lsn, PrimaryReason, ReplicaSettings, ReplicaState};
use iofold_graph::db::{Backend, DatabaseUrl, Db, PoolOptions};
use iofold_graph::server::AppState;
use serde_json::{json, Value};

use crate::support::app::{test_config, TestApp, TestResponse};
use crate::support::db::{pg_base_url, replica_base_url, require_replica, TestDb};

/// Serializes the tests that use the shared replica (pausing its replay affects them all).
static REPLICA: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The header of consistency tokens.
const HEADER: &str = "x-iofold-consistency";

/// The replica's URL for a test database: the test schema's `search_path` on the replica.
fn replica_url_for(test_db: &TestDb, base: &str) -> String {
    let primary = test_db.url.as_str();
    let options = primary.split_once('?').map(|(_, o)| o).unwrap_or_default();
    format!("{base}?{options}")
}

/// A server on `test_db` with the replica at `replica` (lag setting `max_lag_bytes`, polled
/// every 20 ms).
fn app_with_replica(test_db: &TestDb, db: Db, replica: String, max_lag_bytes: u64) -> AppState {
    let mut config = test_config(test_db.url.as_str());
    config.replicas = ReplicaSettings { urls: vec![replica], max_lag_bytes, poll_interval: Duration::from_millis(20) };
    AppState::new(db, config)
}

/// A fresh, migrated PostgreSQL database and a server reading from the shared replica.
async fn replicated(max_lag_bytes: u64) -> TestApp {
    let test_db = TestDb::migrated(Backend::Postgres).await;
    let replica = replica_url_for(&test_db, &replica_base_url());
    let state = app_with_replica(&test_db, test_db.db.clone(), replica, max_lag_bytes);
    TestApp { test_db, state }
}

#[derive(diesel::QueryableByName)]
struct Position {
    #[diesel(sql_type = Text)]
    lsn: String,
}

async fn position(url: &str, sql: &str) -> Lsn {
    let mut conn = AsyncPgConnection::establish(url).await.expect("connect");
    let position: Position = diesel::sql_query(sql).get_result(&mut conn).await.expect("position");
    position.lsn.parse().expect("an LSN")
}

/// Waits until the server's poller has seen the replica up and replayed to where the
/// primary is now (the test's schema and rows are there). Bounded: 30 s, then the test
/// fails.
async fn caught_up(state: &AppState) {
    let target = position(&pg_base_url(), "SELECT pg_current_wal_lsn()::text AS lsn").await;
    let replicas = state.db.replicas.clone().expect("replicas configured");
    for _ in 0..1500 {
        let replica = &replicas.list()[0];
        if replica.state() == ReplicaState::Up && replica.replay() >= target {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the replica did not replay to {target} within 30 s");
}

/// The replica's replay paused while it lives; resumed when dropped (also when the test
/// fails).
struct PausedReplay;

impl PausedReplay {
    async fn new() -> PausedReplay {
        let mut conn = AsyncPgConnection::establish(&replica_base_url()).await.expect("connect to the replica");
        conn.batch_execute("SELECT pg_wal_replay_pause()").await.expect("pause replay");
        PausedReplay
    }
}

impl Drop for PausedReplay {
    fn drop(&mut self) {
        let _ = std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let mut conn = AsyncPgConnection::establish(&replica_base_url()).await.expect("connect to the replica");
                conn.batch_execute("SELECT pg_wal_replay_resume()").await.expect("resume replay");
            });
        })
        .join();
    }
}

/// The value of a metric's sample (`name{labels}`) in `/metrics`.
async fn metric(app: &TestApp, sample: &str) -> f64 {
    let body = app.get("/metrics", &[]).await.body;
    let text = body.as_str().expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {sample} in /metrics:\n{text}"))
        .trim()
        .parse()
        .expect("a number")
}

const CREATE: &str = "mutation($name: String!) { createWorkspace(input: {name: $name}) { workspace { id name } } }";
const WORKSPACES: &str = "{ workspaces(first: 100) { nodes { id name } } }";

/// The names of the workspaces a response lists.
fn names(response: &TestResponse) -> Vec<String> {
    response.data()["workspaces"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn admin(app: &TestApp, query: &str, variables: Value, headers: &[(&str, &str)]) -> TestResponse {
    let mut all = vec![("x-iofold-admin-secret", crate::support::app::ADMIN_SECRET)];
    all.extend_from_slice(headers);
    app.post_graphql_with(json!({"query": query, "variables": variables}), &all).await
}

/// A mutation's consistency token: in the header and in `extensions.consistency`, equal.
fn token_of(response: &TestResponse) -> String {
    let header = response.headers.get(HEADER).expect("a mutation's response carries the token header");
    let header = header.to_str().unwrap().to_owned();
    assert_eq!(response.body["extensions"]["consistency"], json!(header), "{}", response.body);
    header.parse::<Lsn>().expect("the token is an LSN");
    header
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_land_on_the_replica_and_writes_on_the_primary() {
    if !require_replica("replicas::reads_land_on_the_replica_and_writes_on_the_primary").await {
        return;
    }
    let _serial = REPLICA.lock().await;
    let app = replicated(u64::MAX).await;
    let created = admin(&app, CREATE, json!({"name": "on the primary"}), &[]).await;
    assert_eq!(created.data()["createWorkspace"]["workspace"]["name"], "on the primary");
    let token = token_of(&created);
    caught_up(&app.state).await;

    let replicas = app.state.db.replicas.clone().unwrap();
    let (reads, written) = (replicas.list()[0].reads(), replicas.primary_reads(PrimaryReason::Write));
    let read = admin(&app, WORKSPACES, json!({}), &[]).await;
    assert_eq!(names(&read), ["on the primary"]);
    assert!(read.headers.get(HEADER).is_none(), "a query carries no token");
    assert_eq!(replicas.list()[0].reads(), reads + 1, "the query's one statement ran on the replica");
    let sample = format!("iofold_replica_reads_total{{replica=\"{}\"}}", replicas.list()[0].name);
    assert_eq!(metric(&app, &sample).await, (reads + 1) as f64);
    let name = &replicas.list()[0].name;
    assert!(!name.contains('@') && !name.contains('?') && !name.contains("://"), "{name}");

    // With the token (the replica has it): still the replica.
    let read = admin(&app, WORKSPACES, json!({}), &[(HEADER, &token)]).await;
    assert_eq!(names(&read), ["on the primary"]);
    assert_eq!(replicas.list()[0].reads(), reads + 2);

    // A mutation's payload is read on the primary (it may not be on the replica yet).
    let updated = admin(
        &app,
        "mutation($id: ID!) { updateWorkspace(id: $id, patch: {name: \"renamed\"}) { workspace { name workspaceMembers { totalCount } } } }",
        json!({"id": created.data()["createWorkspace"]["workspace"]["id"]}),
        &[],
    )
    .await;
    assert_eq!(updated.data()["updateWorkspace"]["workspace"]["name"], "renamed");
    assert!(replicas.primary_reads(PrimaryReason::Write) > written, "the payload's relation read on the primary");
    assert_eq!(replicas.list()[0].reads(), reads + 2, "nothing of a mutation ran on the replica");
    assert!(token_of(&updated).parse::<Lsn>().unwrap() > token.parse::<Lsn>().unwrap(), "tokens move forward");

    // /health reports the replica.
    let health = app.get("/health", &[]).await;
    let replica = &health.body["replicas"][0];
    assert_eq!(replica["name"], json!(replicas.list()[0].name));
    assert_eq!((replica["state"].as_str(), replica["reachable"].as_bool()), (Some("up"), Some(true)));
    assert!(replica["reads"].as_u64().unwrap() >= reads + 2 && replica["lag_bytes"].is_u64(), "{replica}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_reads_a_write_that_the_paused_replica_has_not_replayed() {
    if !require_replica("replicas::the_token_reads_a_write_that_the_paused_replica_has_not_replayed").await {
        return;
    }
    let _serial = REPLICA.lock().await;
    let app = replicated(u64::MAX).await;
    caught_up(&app.state).await;
    let replicas = app.state.db.replicas.clone().unwrap();

    let paused = PausedReplay::new().await;
    let created = admin(&app, CREATE, json!({"name": "after the pause"}), &[]).await;
    let token = token_of(&created);

    // Without the token: the replica (within the lag setting), which has not replayed it.
    let reads = replicas.list()[0].reads();
    assert!(names(&admin(&app, WORKSPACES, json!({}), &[]).await).is_empty());
    assert_eq!(replicas.list()[0].reads(), reads + 1);

    // With it: the primary, because the replica is behind the token.
    let behind = replicas.primary_reads(PrimaryReason::Behind);
    let read = admin(&app, WORKSPACES, json!({}), &[(HEADER, &token)]).await;
    assert_eq!(names(&read), ["after the pause"]);
    assert_eq!(replicas.primary_reads(PrimaryReason::Behind), behind + 1);
    assert_eq!(replicas.list()[0].reads(), reads + 1);

    // GET carries the token too; a batch reads its own mutation's write.
    let query = format!("/graphql?query={}", urlencode(WORKSPACES));
    let got = app.get(&query, &[("x-iofold-admin-secret", crate::support::app::ADMIN_SECRET), (HEADER, &token)]).await;
    assert_eq!(names(&got), ["after the pause"]);
    let batch = app
        .post_graphql_with(
            json!([
                {"query": CREATE, "variables": {"name": "in a batch"}},
                {"query": WORKSPACES},
            ]),
            &[("x-iofold-admin-secret", crate::support::app::ADMIN_SECRET)],
        )
        .await;
    let listed = &batch.body[1]["data"]["workspaces"]["nodes"];
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "the batch's read sees its own write: {}", batch.body);
    assert!(batch.headers.get(HEADER).is_some());

    drop(paused);
    caught_up(&app.state).await;
    let reads = replicas.list()[0].reads();
    let read = admin(&app, WORKSPACES, json!({}), &[(HEADER, &token)]).await;
    assert_eq!(names(&read).len(), 2);
    assert_eq!(replicas.list()[0].reads(), reads + 1, "once replayed, the token's reads go to the replica");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_beyond_the_lag_setting_is_skipped() {
    if !require_replica("replicas::a_replica_beyond_the_lag_setting_is_skipped").await {
        return;
    }
    let _serial = REPLICA.lock().await;
    // At most 1 byte behind.
    let app = replicated(1).await;
    let replicas = app.state.db.replicas.clone().unwrap();
    let paused = PausedReplay::new().await;
    let created = admin(&app, CREATE, json!({"name": "while paused"}), &[]).await;
    assert!(created.headers.get(HEADER).is_some());
    // The poller sees the replica fall behind.
    for _ in 0..1500 {
        if replicas.list()[0].lag_bytes() > 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(replicas.list()[0].lag_bytes() > 1);
    let (reads, unavailable) = (replicas.list()[0].reads(), replicas.primary_reads(PrimaryReason::Unavailable));
    // A plain read (no token) is not served by the lagging replica: it sees the write.
    let read = admin(&app, WORKSPACES, json!({}), &[]).await;
    assert_eq!(names(&read), ["while paused"]);
    assert_eq!(replicas.list()[0].reads(), reads);
    assert_eq!(replicas.primary_reads(PrimaryReason::Unavailable), unavailable + 1);
    let health = app.get("/health", &[]).await;
    assert_eq!(health.body["status"], "degraded", "{}", health.body);
    assert_eq!(health.body["replicas"][0]["serving"], false);
    assert_eq!(metric(&app, &format!("iofold_replica_serving{{replica=\"{}\"}}", replicas.list()[0].name)).await, 0.0);
    drop(paused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_or_failing_replica_never_fails_a_read() {
    if !require_replica("replicas::a_down_or_failing_replica_never_fails_a_read").await {
        return;
    }
    let _serial = REPLICA.lock().await;
    let test_db = TestDb::migrated(Backend::Postgres).await;
    // A closed port: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = format!("postgres://postgres@127.0.0.1:{closed}/test");
    let state = app_with_replica(&test_db, test_db.db.clone(), down, u64::MAX);
    let app = TestApp { test_db, state };
    let replicas = app.state.db.replicas.clone().unwrap();
    admin(&app, CREATE, json!({"name": "still readable"}), &[]).await.data();
    for _ in 0..1500 {
        if replicas.polls() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(replicas.list()[0].state(), ReplicaState::Down);
    let read = admin(&app, WORKSPACES, json!({}), &[]).await;
    assert_eq!(names(&read), ["still readable"]);
    let health = app.get("/health", &[]).await;
    assert_eq!(health.status, 200, "the primary serves: {}", health.body);
    assert_eq!(health.body["status"], "degraded");
    assert_eq!(
        (health.body["replicas"][0]["state"].as_str(), health.body["replicas"][0]["reachable"].as_bool()),
        (Some("down"), Some(false))
    );
    assert!(!health.body.to_string().contains("postgres://"), "no URL (or credential) in /health");

    // A replica that answers the poller but fails the read (its search_path names no
    // schema of the model): the read runs again on the primary, counted.
    let test_db = TestDb::migrated(Backend::Postgres).await;
    let failing = format!("{}?options=-csearch_path%3Dno_such_schema", replica_base_url());
    let state = app_with_replica(&test_db, test_db.db.clone(), failing, u64::MAX);
    let app = TestApp { test_db, state };
    admin(&app, CREATE, json!({"name": "retried"}), &[]).await.data();
    caught_up(&app.state).await;
    let replicas = app.state.db.replicas.clone().unwrap();
    let retried = replicas.primary_reads(PrimaryReason::Retry);
    let read = admin(&app, WORKSPACES, json!({}), &[]).await;
    assert_eq!(names(&read), ["retried"]);
    assert_eq!(replicas.primary_reads(PrimaryReason::Retry), retried + 1);
    assert_eq!(replicas.list()[0].failures(), 1);
    let sample = format!("iofold_replica_failed_reads_total{{replica=\"{}\"}}", replicas.list()[0].name);
    assert_eq!(metric(&app, &sample).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_replica_and_the_token() {
    if !require_replica("replicas::two_instances_share_the_replica_and_the_token").await {
        return;
    }
    let _serial = REPLICA.lock().await;
    let one = replicated(u64::MAX).await;
    // A second instance: its own pools on the same primary and replica.
    let url = one.test_db.url.clone();
    let replica = replica_url_for(&one.test_db, &replica_base_url());
    let second_db = Db::connect(&url, &PoolOptions { max_size: 4 }).unwrap();
    let two = TestApp {
        state: app_with_replica(&one.test_db, second_db, replica, u64::MAX),
        test_db: TestDb::migrated(Backend::Sqlite).await,
    };
    assert!(matches!(url, DatabaseUrl::Postgres(_)));
    caught_up(&one.state).await;
    caught_up(&two.state).await;

    let paused = PausedReplay::new().await;
    let created = admin(&one, CREATE, json!({"name": "written through one"}), &[]).await;
    let token = token_of(&created);
    // Instance two, without the token: its replica read misses the write.
    assert!(names(&admin(&two, WORKSPACES, json!({}), &[]).await).is_empty());
    // With it: seen.
    let read = admin(&two, WORKSPACES, json!({}), &[(HEADER, &token)]).await;
    assert_eq!(names(&read), ["written through one"]);
    drop(paused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_token_is_bad_user_input() {
    let app = TestApp::new(Backend::Sqlite).await;
    for bad in ["", "yesterday", "0/", "1/2/3", "123456789/0"] {
        let response = admin(&app, WORKSPACES, json!({}), &[(HEADER, bad)]).await;
        assert_eq!(response.status, 400, "{bad}: {}", response.body);
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"));
        let message = response.body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("X-Iofold-Consistency"), "{message}");
        assert!(response.body.get("data").is_none());
    }
    // A well-formed token is accepted on any backend (there it changes nothing).
    let response = admin(&app, WORKSPACES, json!({}), &[(HEADER, "0/16B3A28")]).await;
    assert_eq!(response.status, 200);
    response.data();
    // Without replicas a mutation carries no token: every read is the primary's anyway.
    let created = admin(&app, CREATE, json!({"name": "x"}), &[]).await;
    created.data();
    assert!(created.headers.get(HEADER).is_none() && created.body.get("extensions").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_reads_the_change_it_was_woken_for_even_from_a_paused_replica() {
    use crate::support::ws::{live_subscriptions, Live, Ws};
    if !require_replica("replicas::a_subscription_reads_the_change_it_was_woken_for_even_from_a_paused_replica").await {
        return;
    }
    let _serial = REPLICA.lock().await;
    let app = replicated(u64::MAX).await;
    let workspace =
        admin(&app, CREATE, json!({"name": "jobs"}), &[]).await.data()["createWorkspace"]["workspace"]["id"].clone();
    let job = admin(
        &app,
        "mutation($ws: ID!) { createJob(input: {workspaceId: $ws, type: IMPORT}) { job { id } } }",
        json!({"ws": workspace}),
        &[],
    )
    .await
    .data()["createJob"]["job"]["id"]
        .clone();
    caught_up(&app.state).await;
    let replicas = app.state.db.replicas.clone().unwrap();

    let live = Live::start(app.state.clone()).await;
    let admin_init = json!({"x-iofold-admin-secret": crate::support::app::ADMIN_SECRET});
    let mut ws = Ws::initialised(&live.url(), "graphql-transport-ws", admin_init).await;
    let reads = replicas.list()[0].reads();
    ws.subscribe(
        "job",
        "subscription($ws: ID!, $job: ID) { jobUpdated(workspaceId: $ws, jobId: $job) { id progress } }",
        json!({"ws": workspace, "job": job}),
    )
    .await;
    live_subscriptions(&app.state, 1).await;
    assert!(replicas.list()[0].reads() > reads, "subscribing read the job on the replica");

    let paused = PausedReplay::new().await;
    let progress = admin(
        &app,
        "mutation($id: ID!) { updateJobProgress(id: $id, progress: 40) { job { progress } } }",
        json!({"id": job}),
        &[],
    )
    .await;
    let token = token_of(&progress);
    let message = ws.next(Duration::from_secs(10)).await.expect("the change is pushed");
    assert_eq!(message["payload"]["data"]["jobUpdated"]["progress"], 40, "{message}");
    // The bus learnt the commit's position from the notification.
    let position =
        std::sync::atomic::AtomicU64::load(&app.state.events.position(), std::sync::atomic::Ordering::Relaxed);
    assert!(position >= token.parse::<Lsn>().unwrap().0);
    drop(paused);
}
